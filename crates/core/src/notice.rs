//! Notices: what reviewer channels are told about a request once a change to it is committed.
//!
//! The engine publishes one [`RequestNotice`] per committed step; channels (Slack, webhooks)
//! render them. A notice carries the request as it stands after the step, so a channel never
//! has to read the store.

use crate::grant::Grant;
use crate::principal::PrincipalRef;
use crate::request::ApprovalRequest;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which step a notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NoticeKind {
    #[serde(rename = "request.created")]
    Created,
    /// A vote was recorded and the request stays pending.
    #[serde(rename = "request.voted")]
    Voted,
    /// The request reached `approved`, `denied`, `expired` or `cancelled`.
    #[serde(rename = "request.settled")]
    Settled,
    #[serde(rename = "request.escalated")]
    Escalated,
    /// The request will expire soon with no decision.
    #[serde(rename = "request.reminded")]
    Reminder,
    #[serde(rename = "grant.issued")]
    GrantIssued,
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    #[serde(rename = "grant.expired")]
    GrantExpired,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Created => "request.created",
            NoticeKind::Voted => "request.voted",
            NoticeKind::Settled => "request.settled",
            NoticeKind::Escalated => "request.escalated",
            NoticeKind::Reminder => "request.reminded",
            NoticeKind::GrantIssued => "grant.issued",
            NoticeKind::GrantRevoked => "grant.revoked",
            NoticeKind::GrantExpired => "grant.expired",
        }
    }
}

/// One committed step of a request's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestNotice {
    pub kind: NoticeKind,
    pub at: Timestamp,
    /// The request after the step.
    pub request: ApprovalRequest,
    /// Who took the step (the voter, the canceller); absent for the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<PrincipalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// The groups an escalation asked.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

impl RequestNotice {
    pub fn new(kind: NoticeKind, at: Timestamp, request: ApprovalRequest) -> RequestNotice {
        RequestNotice {
            kind,
            at,
            request,
            actor: None,
            grant: None,
            groups: BTreeSet::new(),
        }
    }
}

/// A message a channel posted about a request, kept so it can be updated later (after a
/// restart too): a Slack message is `(conversation id, ts)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    pub request_id: String,
    /// Which configured channel posted it, e.g. `slack:T0123ABCD`.
    pub channel: String,
    /// The conversation (channel or direct message) it is in.
    pub conversation: String,
    /// The message's id within the conversation (Slack's `ts`).
    pub message_ts: String,
    /// `review` (carries the buttons) or `notice` (an outcome told to the requester).
    pub purpose: String,
    pub created_at: Timestamp,
}

/// How one attempt to deliver a webhook went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The `webhook-id`, the same for every attempt of one message.
    pub message_id: String,
    pub url: String,
    pub event_kind: String,
    pub request_id: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub attempted_at: Timestamp,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// `delivered`, `retrying` or `failed` (no attempt left, or a refusal not worth retrying).
    pub outcome: String,
}
