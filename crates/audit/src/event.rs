//! The audit event: one step the gateway took, with who, what, why, the verdict and the policy
//! version behind it.

use countersign_core::{PrincipalRef, Resource, Timestamp};
use serde::{Deserialize, Serialize};

/// What kind of step an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An attempt and the verdict it got (allow, deny or approval).
    #[serde(rename = "attempt")]
    Attempt,
    #[serde(rename = "request.created")]
    RequestCreated,
    #[serde(rename = "vote.cast")]
    VoteCast,
    /// A vote the rules refused (self-approval, ineligible, duplicate, too late).
    #[serde(rename = "vote.refused")]
    VoteRefused,
    /// A request reached `approved`, `denied`, `expired` or `cancelled` (see `outcome`).
    #[serde(rename = "request.settled")]
    RequestSettled,
    /// A pending request reached an `@escalate` deadline; `reason` names the groups now asked.
    #[serde(rename = "request.escalated")]
    RequestEscalated,
    /// Reviewers were reminded of a request about to expire.
    #[serde(rename = "request.reminded")]
    RequestReminded,
    #[serde(rename = "grant.issued")]
    GrantIssued,
    #[serde(rename = "grant.used")]
    GrantUsed,
    #[serde(rename = "grant.expired")]
    GrantExpired,
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    #[serde(rename = "policy.loaded")]
    PolicyLoaded,
    /// A policy reload that was refused; the previous set stays in force.
    #[serde(rename = "policy.rejected")]
    PolicyRejected,
    /// What happened when an allowed action ran, as reported by the gate or client.
    #[serde(rename = "execution")]
    Execution,
    /// The log's checkpoint signing key changed; `outcome` is `new verifier key: <vkey>` (see
    /// [`crate::export`] for when a verifier starts trusting the new key).
    #[serde(rename = "audit.key_rotated")]
    KeyRotated,
    /// An MCP gate saw a tool for the first time; its definition is pinned (`payload` holds it,
    /// `payload_digest` its fingerprint).
    #[serde(rename = "mcp.tool_first_seen")]
    McpToolFirstSeen,
    /// An MCP tool's definition differs from the pinned one; calls are refused until accepted.
    #[serde(rename = "mcp.tool_changed")]
    McpToolChanged,
    /// An administrator accepted a changed MCP tool definition; it is the pinned one from now.
    #[serde(rename = "mcp.tool_accepted")]
    McpToolAccepted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Attempt => "attempt",
            EventKind::RequestCreated => "request.created",
            EventKind::VoteCast => "vote.cast",
            EventKind::VoteRefused => "vote.refused",
            EventKind::RequestSettled => "request.settled",
            EventKind::RequestEscalated => "request.escalated",
            EventKind::RequestReminded => "request.reminded",
            EventKind::GrantIssued => "grant.issued",
            EventKind::GrantUsed => "grant.used",
            EventKind::GrantExpired => "grant.expired",
            EventKind::GrantRevoked => "grant.revoked",
            EventKind::PolicyLoaded => "policy.loaded",
            EventKind::PolicyRejected => "policy.rejected",
            EventKind::Execution => "execution",
            EventKind::KeyRotated => "audit.key_rotated",
            EventKind::McpToolFirstSeen => "mcp.tool_first_seen",
            EventKind::McpToolChanged => "mcp.tool_changed",
            EventKind::McpToolAccepted => "mcp.tool_accepted",
        }
    }
}

/// One audit event. Fields that do not apply to a kind are left out of the encoding.
///
/// Fields are declared in the order the canonical encoding writes them (by name), so encoding
/// a record never has to reorder its members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Who took this step: the voter, the canceller, the administrator. Absent for the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<PrincipalRef>,
    /// Set on the vote and the settlement of a requester's break-glass approval, so such
    /// requests stand out for review after the fact.
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// Where the step came from: `api`, `cli`, `slack`, a gate name, `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// How the step ended: a request's final status, an execution's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Whose attempt the step concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    pub time: Timestamp,
    /// `allow`, `deny` or `approval` for attempts; `approve` or `deny` for votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_id: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl AuditEvent {
    pub fn new(kind: EventKind, time: Timestamp) -> AuditEvent {
        AuditEvent {
            time,
            kind,
            actor: None,
            principal: None,
            on_behalf_of: None,
            action: None,
            resources: Vec::new(),
            payload_digest: None,
            payload: None,
            justification: None,
            verdict: None,
            reason: None,
            policy_version: None,
            policy_ids: Vec::new(),
            request_id: None,
            grant_id: None,
            vote_id: None,
            channel: None,
            outcome: None,
            break_glass: false,
        }
    }
}
