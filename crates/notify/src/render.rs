//! Plain-text descriptions of a request shared by every channel: who asks, what, on what,
//! how long is left, who voted.

use countersign_core::{ApprovalRequest, Decision, RequestStatus, Timestamp, Vote};
use serde_json::Value;

/// The exact payload as a reviewer should read it: SQL as written, a command line quoted as a
/// shell would need it, a tool call as its name and JSON arguments, anything else as JSON.
/// An object's fields the SQL or tool-call reading does not cover are listed after it, so no
/// field of what is approved stays out of sight.
pub fn payload_text(payload: &Value) -> String {
    match payload {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" "),
        Value::Object(map) => {
            let tool_key = if map.contains_key("tool") {
                "tool"
            } else {
                "name"
            };
            let (head, shown): (String, [&str; 2]) =
                if let Some(sql) = map.get("sql").and_then(Value::as_str) {
                    let head = match map.get("params") {
                        Some(p) => format!("{sql}\n-- parameters: {p}"),
                        None => sql.to_owned(),
                    };
                    (head, ["sql", "params"])
                } else if let (Some(tool), Some(args)) = (
                    map.get(tool_key).and_then(Value::as_str),
                    map.get("arguments"),
                ) {
                    (format!("{tool}({})", pretty(args)), [tool_key, "arguments"])
                } else {
                    return pretty(payload);
                };
            let rest: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !shown.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if rest.is_empty() {
                head
            } else {
                format!("{head}\n-- other fields: {}", pretty(&Value::Object(rest)))
            }
        }
        other => pretty(other),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// `text` cut to at most `max` characters, and whether it was cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (text[..at].to_owned(), true),
        None => (text.to_owned(), false),
    }
}

/// `Agent::"etl" on behalf of alice@example.com`.
pub fn requester(request: &ApprovalRequest) -> String {
    match &request.attempt.on_behalf_of {
        Some(user) => format!("{} on behalf of {user}", request.attempt.principal),
        None => request.attempt.principal.to_string(),
    }
}

/// One line per resource: `Table::"prod/users" (confidential)`.
pub fn resources(request: &ApprovalRequest) -> Vec<String> {
    request
        .attempt
        .resources
        .iter()
        .map(|r| match r.classification {
            Some(c) => format!("{} ({})", r.reference(), c.as_str()),
            None => r.reference().to_string(),
        })
        .collect()
}

/// `59 min`, `2 h 5 min`, `40 s`; `expired` once `expires_at` has passed.
pub fn time_left(expires_at: Timestamp, now: Timestamp) -> String {
    let ms = u64::try_from(expires_at.millis().saturating_sub(now.millis())).unwrap_or(0);
    if ms == 0 {
        return "expired".into();
    }
    let secs = ms.div_ceil(1000);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs.div_ceil(60)),
        _ => {
            let minutes = secs / 60;
            format!("{} h {} min", minutes / 60, minutes % 60)
        }
    }
}

pub fn status_word(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Pending => "Pending",
        RequestStatus::Approved => "Approved",
        RequestStatus::Denied => "Denied",
        RequestStatus::Expired => "Expired",
        RequestStatus::Cancelled => "Cancelled",
    }
}

/// `bob@example.com approved at 2026-01-01T10:00:00Z (slack): looks right`.
pub fn vote_line(vote: &Vote) -> String {
    let verb = match (vote.decision, vote.break_glass) {
        (Decision::Approve, true) => "approved by BREAK-GLASS",
        (Decision::Approve, false) => "approved",
        (Decision::Deny, _) => "denied",
    };
    let mut line = format!(
        "{} {verb} at {} ({})",
        vote.voter.id,
        vote.cast_at.to_rfc3339(),
        vote.channel
    );
    if let Some(reason) = &vote.reason {
        line.push_str(": ");
        line.push_str(reason);
    }
    line
}

/// The people a request belongs to: the requesting user, and the user an agent acts for.
pub fn requesting_people(request: &ApprovalRequest) -> Vec<String> {
    let mut people = Vec::new();
    if request.attempt.principal.kind == countersign_core::PrincipalKind::User {
        people.push(request.attempt.principal.id.clone());
    }
    if let Some(user) = &request.attempt.on_behalf_of
        && !people
            .iter()
            .any(|p| countersign_core::same_person(p, user))
    {
        people.push(user.clone());
    }
    people
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_read_as_what_will_run() {
        assert_eq!(payload_text(&json!("DROP TABLE t")), "DROP TABLE t");
        assert_eq!(
            payload_text(&json!(["rm", "-rf", "/tmp/my dir", "it's"])),
            "rm -rf '/tmp/my dir' 'it'\\''s'"
        );
        assert_eq!(
            payload_text(&json!({"sql": "SELECT $1", "params": ["x"]})),
            "SELECT $1\n-- parameters: [\"x\"]"
        );
        assert_eq!(
            payload_text(&json!({"tool": "delete_user", "arguments": {"id": 7}})),
            "delete_user({\n  \"id\": 7\n})"
        );
    }

    #[test]
    fn fields_beside_sql_or_a_tool_call_are_shown_too() {
        let text = payload_text(&json!({"sql": "SELECT 1", "command": "rm -rf /srv/data"}));
        assert!(text.starts_with("SELECT 1\n-- other fields: "), "{text}");
        assert!(text.contains("\"command\": \"rm -rf /srv/data\""), "{text}");
        let text = payload_text(
            &json!({"tool": "read", "name": "drop_db", "arguments": {}, "then": "wipe"}),
        );
        assert!(text.starts_with("read({})\n-- other fields: "), "{text}");
        for field in ["\"name\": \"drop_db\"", "\"then\": \"wipe\""] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 3), ("hél".into(), true));
        assert_eq!(truncate("hé", 3), ("hé".into(), false));
    }

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(time_left(Timestamp(1_000), Timestamp(1_000)), "expired");
        assert_eq!(time_left(Timestamp(40_000), Timestamp(0)), "40 s");
        assert_eq!(time_left(Timestamp(3_540_000), Timestamp(0)), "59 min");
        assert_eq!(time_left(Timestamp(7_500_000), Timestamp(0)), "2 h 5 min");
    }
}
