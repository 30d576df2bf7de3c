//! The JSON shapes the API answers with. Kept apart from the domain types so that the wire
//! format is a deliberate contract, not a side effect of a refactoring.

use countersign_core::{ApprovalRequest, Grant, Timestamp};
use serde_json::{Value, json};

/// RFC 3339 in UTC with milliseconds.
pub fn time(t: Timestamp) -> String {
    t.to_rfc3339()
}

pub fn request(r: &ApprovalRequest, review_url: &str, grant: Option<&Grant>) -> Value {
    let rules: Vec<Value> = r
        .requirements
        .rules
        .iter()
        .map(|rule| {
            let counted = r.rule_groups(rule);
            json!({
                "policy_id": rule.policy_id,
                "groups": rule.groups,
                "escalated_groups": counted.difference(&rule.groups).collect::<Vec<_>>(),
                "quorum": rule.quorum,
                "approvals": r.approvals_for(&counted),
                "break_glass": rule.break_glass,
            })
        })
        .collect();
    let votes: Vec<Value> = r
        .votes
        .iter()
        .map(|v| {
            json!({
                "id": v.id,
                "voter": v.voter,
                "decision": v.decision,
                "reason": v.reason,
                "channel": v.channel,
                "cast_at": time(v.cast_at),
                "break_glass": v.break_glass,
            })
        })
        .collect();
    json!({
        "id": r.id,
        "status": r.status,
        "principal": r.attempt.principal,
        "on_behalf_of": r.attempt.on_behalf_of,
        "action": r.attempt.action,
        "resources": r.attempt.resources,
        "payload": r.attempt.payload,
        "payload_digest": r.digest,
        "justification": r.attempt.justification,
        "context": r.attempt.context,
        "requirements": {
            "rules": rules,
            "grant": r.requirements.grant,
            "timeout_seconds": r.requirements.timeout_ms / 1000,
            "escalations": r.requirements.escalations.iter().map(|e| json!({
                "policy_id": e.policy_id,
                "after_seconds": e.after_ms / 1000,
                "groups": e.groups,
            })).collect::<Vec<_>>(),
            "escalations_fired": r.escalations_fired,
            "deny_reason_required": r.requirements.deny_reason_required,
        },
        "policy_version": r.policy_version,
        "policy_ids": r.policy_ids,
        "votes": votes,
        "created_at": time(r.created_at),
        "expires_at": time(r.expires_at),
        "settled_at": r.settled_at.map(time),
        "cancelled_by": r.cancelled_by,
        "grant_id": grant.map(|g| g.id.clone()),
        "review_url": review_url,
        "break_glass": r.broke_glass(),
    })
}

pub fn grant(g: &Grant) -> Value {
    json!({
        "id": g.id,
        "request_id": g.request_id,
        "principal": g.principal,
        "on_behalf_of": g.on_behalf_of,
        "action": g.action,
        "resources": g.resources,
        "payload_digest": g.digest,
        "shape": g.shape,
        "status": g.status,
        "issued_at": time(g.issued_at),
        "expires_at": time(g.expires_at),
        "ended_at": g.ended_at.map(time),
    })
}
