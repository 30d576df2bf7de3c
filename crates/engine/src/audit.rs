//! How the engine's steps are described as audit events.

use crate::writer::DecisionJob;
use countersign_audit::{AuditEvent, EventKind};
use countersign_core::{ApprovalRequest, Grant, Timestamp, Verdict};

/// The event for an attempt and its verdict.
pub(crate) fn attempt_event(d: &DecisionJob, now: Timestamp) -> AuditEvent {
    let mut event = AuditEvent::new(EventKind::Attempt, now);
    event.actor = Some(d.attempt.principal.clone());
    event.principal = Some(d.attempt.principal.clone());
    event.on_behalf_of = d.attempt.on_behalf_of.clone();
    event.action = Some(d.attempt.action.as_str().to_owned());
    event.resources = d.attempt.resources.clone();
    event.payload_digest = Some(d.digest.to_hex());
    event.payload = d.record_payload.then(|| d.attempt.payload.clone());
    event.justification = d.attempt.justification.clone();
    event.verdict = Some(d.verdict.label().to_owned());
    event.reason = Some(d.verdict.reason().to_owned());
    event.policy_version = Some(d.policy_version.clone());
    event.policy_ids = d.verdict.policy_ids().to_vec();
    if let Verdict::Allow { grant_id, .. } = &d.verdict {
        event.grant_id = grant_id.clone();
    }
    event.channel = Some(d.channel.clone());
    event
}

/// The skeleton of an event about a request: whose attempt, what, under which policy.
pub(crate) fn request_event(
    kind: EventKind,
    request: &ApprovalRequest,
    now: Timestamp,
) -> AuditEvent {
    let mut event = AuditEvent::new(kind, now);
    event.principal = Some(request.attempt.principal.clone());
    event.on_behalf_of = request.attempt.on_behalf_of.clone();
    event.action = Some(request.attempt.action.as_str().to_owned());
    event.resources = request.attempt.resources.clone();
    event.payload_digest = Some(request.digest.to_hex());
    event.justification = request.attempt.justification.clone();
    event.policy_version = Some(request.policy_version.clone());
    event.policy_ids = request.policy_ids.clone();
    event.request_id = Some(request.id.clone());
    event
}

/// An event about a grant: whose, for what, and where it now stands.
pub(crate) fn grant_event(kind: EventKind, grant: &Grant, now: Timestamp) -> AuditEvent {
    let mut event = AuditEvent::new(kind, now);
    event.principal = Some(grant.principal.clone());
    event.on_behalf_of = grant.on_behalf_of.clone();
    event.action = Some(grant.action.as_str().to_owned());
    event.resources = grant.resources.clone();
    event.payload_digest = Some(grant.digest.to_hex());
    event.request_id = Some(grant.request_id.clone());
    event.grant_id = Some(grant.id.clone());
    event.outcome = Some(grant.status.as_str().to_owned());
    event
}
