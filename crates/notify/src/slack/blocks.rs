//! Block Kit messages and the reason modal.
//!
//! Limits Slack enforces are kept here: a section's text at most 3,000 characters, a header
//! 150, at most 50 blocks. Long payloads are cut with a link to the full text; every text from
//! outside (payload, justification, reasons, ids) is escaped so it cannot form links or mentions.

use super::interaction::{
    APPROVE_ACTION, DENY_ACTION, MAX_REASON_CHARS, ModalMetadata, REASON_BLOCK, REASON_CALLBACK,
    REASON_INPUT,
};
use crate::render;
use countersign_core::{ApprovalRequest, RequestStatus, Timestamp};
use serde_json::{Value, json};

/// Longest payload shown in a message; the rest is behind the review link.
pub const MAX_PAYLOAD_CHARS: usize = 2_500;
const MAX_SECTION_CHARS: usize = 3_000;

/// Escapes the three characters Slack's mrkdwn gives meaning to.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: &str) -> Value {
    let (text, _) = render::truncate(text, MAX_SECTION_CHARS);
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn header(text: &str) -> Value {
    let (text, _) = render::truncate(text, 150);
    json!({"type": "header", "text": {"type": "plain_text", "text": text}})
}

fn context(text: &str) -> Value {
    let (text, _) = render::truncate(text, MAX_SECTION_CHARS);
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

/// The facts of a request: who asks, what, on what, the exact payload, why, under which policy.
fn facts(request: &ApprovalRequest, review_url: &str) -> Vec<Value> {
    let a = &request.attempt;
    let mut who = format!(
        "*Requested by:* {}\n*Action:* `{}`\n*Resources:* {}",
        escape(&render::requester(request)),
        escape(a.action.as_str()),
        escape(&render::resources(request).join(", "))
    );
    who.push_str(&format!(
        "\n*Policy:* {}",
        escape(&request.policy_ids.join(", "))
    ));
    let (payload, cut) = render::truncate(&render::payload_text(&a.payload), MAX_PAYLOAD_CHARS);
    let mut payload_block = format!("*Payload:*\n```{}```", escape(&payload));
    if cut {
        payload_block.push_str(&format!(
            "\n_…truncated; <{review_url}|full text in the console>_"
        ));
    }
    let why = match &a.justification {
        Some(j) => format!("*Justification:* {}", escape(j)),
        None => "*Justification:* _none given_".into(),
    };
    vec![section(&who), section(&payload_block), section(&why)]
}

fn votes_block(request: &ApprovalRequest) -> Option<Value> {
    if request.votes.is_empty() {
        return None;
    }
    let lines: Vec<String> = request
        .votes
        .iter()
        .map(|v| format!("• {}", escape(&render::vote_line(v))))
        .collect();
    Some(section(&format!("*Votes:*\n{}", lines.join("\n"))))
}

fn footer(request: &ApprovalRequest) -> Value {
    context(&format!(
        "request `{}` · payload digest `{}`",
        escape(&request.id),
        &request.digest.to_hex()[..16]
    ))
}

/// The message asking for review: facts, votes so far, time left, Approve / Deny and a link
/// to the console. `heading` replaces the default title (escalations, break-glass alerts).
pub fn review_message(
    request: &ApprovalRequest,
    review_url: &str,
    now: Timestamp,
    heading: Option<&str>,
) -> Value {
    let title = heading.map_or_else(
        || format!("Approval needed: {}", request.attempt.action.as_str()),
        str::to_owned,
    );
    let mut blocks = vec![header(&title)];
    blocks.extend(facts(request, review_url));
    blocks.extend(votes_block(request));
    let quorum: Vec<String> = request
        .requirements
        .rules
        .iter()
        .map(|r| {
            let groups: Vec<&str> = r.groups.iter().map(String::as_str).collect();
            format!("{} of {}", r.quorum, groups.join(", "))
        })
        .collect();
    blocks.push(section(&format!(
        "*Needs:* {} · *Time left:* {} (expires <!date^{}^{{date_short_pretty}} {{time}}|{}>)",
        escape(&quorum.join("; ")),
        render::time_left(request.expires_at, now),
        request.expires_at.millis() / 1000,
        request.expires_at.to_rfc3339()
    )));
    blocks.push(json!({
        "type": "actions",
        "block_id": "countersign_review",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "style": "primary",
             "action_id": APPROVE_ACTION, "value": request.id,
             "confirm": {"title": {"type": "plain_text", "text": "Approve this request?"},
                         "text": {"type": "mrkdwn", "text": "Approving issues a grant for exactly this action."},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "text": {"type": "plain_text", "text": "Deny"}, "style": "danger",
             "action_id": DENY_ACTION, "value": request.id},
            {"type": "button", "text": {"type": "plain_text", "text": "Review in console"},
             "action_id": "countersign_open", "url": review_url}
        ]
    }));
    blocks.push(footer(request));
    json!({
        // The notification text is mrkdwn too: escaped like the blocks.
        "text": escape(&format!("{title}: {} wants `{}` on {}", render::requester(request),
                        request.attempt.action.as_str(), render::resources(request).join(", "))),
        "blocks": blocks,
    })
}

/// `Approved by bob@example.com, carol@example.com at …` and the like.
pub fn outcome_line(request: &ApprovalRequest) -> String {
    let when = request
        .settled_at
        .map_or_else(|| "-".to_owned(), Timestamp::to_rfc3339);
    let deciders: Vec<&str> = request
        .votes
        .iter()
        .filter(|v| match request.status {
            RequestStatus::Approved => v.decision == countersign_core::Decision::Approve,
            RequestStatus::Denied => v.decision == countersign_core::Decision::Deny,
            _ => false,
        })
        .map(|v| v.voter.id.as_str())
        .collect();
    let word = render::status_word(request.status);
    match request.status {
        RequestStatus::Approved | RequestStatus::Denied => {
            let glass = if request.broke_glass() {
                " (BREAK-GLASS)"
            } else {
                ""
            };
            format!("{word}{glass} by {} at {when}", deciders.join(", "))
        }
        RequestStatus::Cancelled => format!(
            "{word} by {} at {when}",
            request
                .cancelled_by
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.id.clone())
        ),
        RequestStatus::Expired => format!("{word} without a decision at {when}"),
        RequestStatus::Pending => word.to_owned(),
    }
}

/// The review message once settled: the outcome, who decided, when and why; no buttons.
pub fn outcome_message(request: &ApprovalRequest, review_url: &str) -> Value {
    let line = outcome_line(request);
    let mut blocks = vec![header(&format!(
        "{}: {}",
        render::status_word(request.status),
        request.attempt.action.as_str()
    ))];
    blocks.push(section(&format!("*{}*", escape(&line))));
    if request.broke_glass() {
        blocks.push(section(
            ":rotating_light: *Break-glass:* the requester approved their own request. It is listed for review after the fact.",
        ));
    }
    blocks.extend(facts(request, review_url));
    blocks.extend(votes_block(request));
    blocks.push(footer(request));
    json!({"text": escape(&line), "blocks": blocks})
}

/// What a requester is told when their request settles.
pub fn requester_notice(request: &ApprovalRequest, review_url: &str) -> Value {
    let line = outcome_line(request);
    let mut blocks = vec![section(&format!(
        "Your request for `{}` on {}: *{}*",
        escape(request.attempt.action.as_str()),
        escape(&render::resources(request).join(", ")),
        escape(&line)
    ))];
    blocks.extend(votes_block(request));
    blocks.push(context(&format!(
        "<{review_url}|request {}>",
        escape(&request.id)
    )));
    json!({"text": escape(&format!("Your request {}: {line}", request.id)), "blocks": blocks})
}

/// A reply in a review message's thread.
pub fn thread_reply(thread_ts: &str, conversation: &str, text: &str) -> Value {
    json!({"channel": conversation, "thread_ts": thread_ts, "text": text})
}

/// An explanation only the clicking user sees, through the interaction's `response_url`.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "replace_original": false, "text": text})
}

/// The modal that asks for a reason to deny request `request_id`.
pub fn reason_modal(request_id: &str, response_url: Option<&str>) -> Value {
    let metadata = json!(ModalMetadata {
        request_id: request_id.to_owned(),
        response_url: response_url.map(str::to_owned),
    });
    json!({
        "type": "modal",
        "callback_id": REASON_CALLBACK,
        "private_metadata": metadata.to_string(),
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input",
            "block_id": REASON_BLOCK,
            "label": {"type": "plain_text", "text": "Why is this denied? The requester will see it."},
            "element": {"type": "plain_text_input", "action_id": REASON_INPUT, "multiline": true,
                        "min_length": 1, "max_length": MAX_REASON_CHARS}
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::{
        Action, ApprovalRule, Attempt, Decision, GrantShape, PayloadDigest, PrincipalRef,
        Requirements, Resource, Vote,
    };

    fn request(payload: serde_json::Value) -> ApprovalRequest {
        let action = Action::parse("exec").unwrap();
        let resources = vec![Resource::new("Host", "build-1")];
        ApprovalRequest {
            id: "r-1".into(),
            digest: PayloadDigest::compute(&action, &resources, &payload),
            attempt: Attempt {
                principal: PrincipalRef::agent("ci"),
                on_behalf_of: Some("alice@example.com".into()),
                action,
                resources,
                payload,
                justification: Some("<!channel> deploy & <http://evil|click>".into()),
                context: Default::default(),
            },
            requirements: Requirements::new(
                vec![ApprovalRule {
                    policy_id: "p".into(),
                    groups: ["reviewers".to_string()].into(),
                    quorum: 2,
                    break_glass: false,
                }],
                GrantShape::Once,
                3_600_000,
            ),
            policy_version: "v".into(),
            policy_ids: vec!["p".into()],
            status: RequestStatus::Pending,
            created_at: Timestamp(0),
            expires_at: Timestamp(3_600_000),
            settled_at: None,
            cancelled_by: None,
            votes: Vec::new(),
            escalations_fired: 0,
        }
    }

    fn all_text(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn review_message_has_the_facts_and_the_buttons() {
        let mut r = request(json!(["echo", "hi"]));
        r.attempt.resources[0].id = "<!here>".into();
        let m = review_message(&r, "http://gw/v1/requests/r-1", Timestamp(60_000), None);
        let text = all_text(&m);
        for needle in [
            "Agent::\\\"ci\\\" on behalf of alice@example.com",
            "Host::\\\"&lt;!here&gt;\\\"",
            "echo hi",
            "59 min",
            "2 of reviewers",
            "http://gw/v1/requests/r-1",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let actions = m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        assert_eq!(actions["elements"][0]["action_id"], APPROVE_ACTION);
        assert_eq!(actions["elements"][0]["value"], "r-1");
        assert_eq!(actions["elements"][1]["action_id"], DENY_ACTION);
        // Text from outside cannot mention, link or break out, in the blocks or the fallback.
        assert!(!text.contains("<!channel>"));
        assert!(!text.contains("<!here>"), "{text}");
        assert!(text.contains("&lt;!channel&gt; deploy &amp; &lt;http://evil|click&gt;"));
    }

    #[test]
    fn long_payloads_are_cut_with_a_link() {
        let long = "x".repeat(10_000);
        let m = review_message(&request(json!(long)), "http://gw/r", Timestamp(0), None);
        let text = all_text(&m);
        assert!(text.contains("full text in the console"));
        for block in m["blocks"].as_array().unwrap() {
            if let Some(t) = block.pointer("/text/text").and_then(Value::as_str) {
                assert!(t.chars().count() <= 3_000);
            }
        }
    }

    #[test]
    fn outcome_names_who_when_and_why_without_buttons() {
        let mut r = request(json!("ls"));
        for (who, at) in [("bob@example.com", 10_000), ("carol@example.com", 20_000)] {
            r.votes.push(Vote {
                id: who.into(),
                voter: PrincipalRef::user(who),
                voter_groups: Default::default(),
                decision: Decision::Approve,
                reason: Some(format!("ok from {who}")),
                channel: "slack".into(),
                cast_at: Timestamp(at),
                break_glass: false,
            });
        }
        r.status = RequestStatus::Approved;
        r.settled_at = Some(Timestamp(20_000));
        let m = outcome_message(&r, "http://gw/r");
        let text = all_text(&m);
        assert!(
            text.contains("Approved by bob@example.com, carol@example.com at 1970-01-01T00:00:20")
        );
        assert!(text.contains("ok from carol@example.com"));
        assert!(!text.contains("\"actions\""));
    }

    #[test]
    fn the_modal_carries_the_request() {
        let v = reason_modal("r-1", Some("https://hooks.slack.com/x"));
        assert_eq!(v["callback_id"], REASON_CALLBACK);
        let meta: ModalMetadata =
            serde_json::from_str(v["private_metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta.request_id, "r-1");
    }
}
