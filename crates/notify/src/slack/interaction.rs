//! Interaction payloads Slack POSTs to the gateway: a click on a review message's button
//! (`block_actions`) and the reason modal's submission (`view_submission`).
//!
//! The body is `application/x-www-form-urlencoded` with one field, `payload`, holding JSON. It
//! is parsed only after its signature was verified; anything unexpected is refused with a
//! precise error and never becomes a vote.

use countersign_core::Decision;
use serde::Deserialize;
use serde_json::Value;

/// `action_id` of the review message's buttons; the button's `value` is the request id.
pub const APPROVE_ACTION: &str = "countersign_approve";
pub const DENY_ACTION: &str = "countersign_deny";
/// `callback_id` of the modal that asks for a reason to deny.
pub const REASON_CALLBACK: &str = "countersign_deny_reason";
/// Where the modal's text input lives in `view.state.values`.
pub const REASON_BLOCK: &str = "reason";
pub const REASON_INPUT: &str = "reason_input";

/// Longest reason accepted from the modal (the input's own limit is set to this too).
pub const MAX_REASON_CHARS: usize = 3000;

/// Why an interaction body is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body has no `payload` form field")]
    NoPayload,
    #[error("`payload` is not JSON: {0}")]
    NotJson(String),
    #[error("`payload` lacks {0}")]
    Missing(&'static str),
    #[error("interaction type `{0}` is not one countersign handles")]
    UnsupportedType(String),
    #[error("action `{0}` is not a countersign review button")]
    UnknownAction(String),
    #[error("modal `{0}` is not countersign's")]
    UnknownView(String),
}

/// Who clicked, in which workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clicker {
    pub user_id: String,
    /// The workspace of the user and of the payload; both must be the configured one.
    pub team_id: String,
}

/// A click on Approve or Deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    pub by: Clicker,
    pub request_id: String,
    pub decision: Decision,
    pub trigger_id: String,
    pub response_url: String,
    /// The message clicked on, when it was one (channel, ts).
    pub message: Option<(String, String)>,
    /// Slack's `action_ts`: with the user and action it names one click, so a repeated
    /// delivery is recognised.
    pub action_ts: String,
}

/// The reason modal, submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonSubmission {
    pub by: Clicker,
    pub request_id: String,
    pub reason: String,
    /// Where the refusal of the deny, if any, is explained (carried through the modal).
    pub response_url: Option<String>,
    pub view_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interaction {
    Click(Click),
    Reason(ReasonSubmission),
}

impl Interaction {
    pub fn by(&self) -> &Clicker {
        match self {
            Interaction::Click(c) => &c.by,
            Interaction::Reason(r) => &r.by,
        }
    }

    /// A key naming this delivery: Slack's retries of one interaction share it.
    pub fn delivery_key(&self) -> String {
        match self {
            Interaction::Click(c) => format!(
                "click:{}:{}:{}:{}:{}",
                c.by.team_id,
                c.by.user_id,
                c.action_ts,
                c.decision.as_str(),
                c.request_id
            ),
            Interaction::Reason(r) => {
                format!("view:{}:{}:{}", r.by.team_id, r.by.user_id, r.view_id)
            }
        }
    }
}

/// What the reason modal carries from the click to its submission.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct ModalMetadata {
    pub request_id: String,
    #[serde(default)]
    pub response_url: Option<String>,
}

/// Parses a verified interaction body.
pub fn parse(body: &[u8]) -> Result<Interaction, PayloadError> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(PayloadError::NoPayload)?;
    let v: Value =
        serde_json::from_str(&payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let kind = text(&v, "/type", "`type`")?;
    let by = clicker(&v)?;
    match kind {
        "block_actions" => {
            let action = v
                .pointer("/actions/0")
                .ok_or(PayloadError::Missing("`actions[0]`"))?;
            let action_id = text(action, "/action_id", "`actions[0].action_id`")?;
            let decision = match action_id {
                APPROVE_ACTION => Decision::Approve,
                DENY_ACTION => Decision::Deny,
                other => return Err(PayloadError::UnknownAction(other.to_owned())),
            };
            let request_id = non_empty(
                text(action, "/value", "`actions[0].value`")?,
                "`actions[0].value`",
            )?;
            let message = match (
                v.pointer("/container/channel_id").and_then(Value::as_str),
                v.pointer("/container/message_ts").and_then(Value::as_str),
            ) {
                (Some(c), Some(ts)) => Some((c.to_owned(), ts.to_owned())),
                _ => None,
            };
            Ok(Interaction::Click(Click {
                by,
                request_id: request_id.to_owned(),
                decision,
                trigger_id: text(&v, "/trigger_id", "`trigger_id`")?.to_owned(),
                response_url: text(&v, "/response_url", "`response_url`")?.to_owned(),
                message,
                action_ts: text(action, "/action_ts", "`actions[0].action_ts`")?.to_owned(),
            }))
        }
        "view_submission" => {
            let view = v.get("view").ok_or(PayloadError::Missing("`view`"))?;
            let callback = text(view, "/callback_id", "`view.callback_id`")?;
            if callback != REASON_CALLBACK {
                return Err(PayloadError::UnknownView(callback.to_owned()));
            }
            let meta: ModalMetadata =
                serde_json::from_str(text(view, "/private_metadata", "`view.private_metadata`")?)
                    .map_err(|_| PayloadError::Missing("a request id in `view.private_metadata`"))?;
            let pointer = format!("/state/values/{REASON_BLOCK}/{REASON_INPUT}/value");
            let reason = view
                .pointer(&pointer)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .ok_or(PayloadError::Missing("a reason in `view.state.values`"))?;
            Ok(Interaction::Reason(ReasonSubmission {
                by,
                request_id: non_empty(&meta.request_id, "a request id")?.to_owned(),
                reason: reason.chars().take(MAX_REASON_CHARS).collect(),
                response_url: meta.response_url,
                view_id: text(view, "/id", "`view.id`")?.to_owned(),
            }))
        }
        other => Err(PayloadError::UnsupportedType(other.to_owned())),
    }
}

fn clicker(v: &Value) -> Result<Clicker, PayloadError> {
    let user_id = text(v, "/user/id", "`user.id`")?.to_owned();
    let team_id = text(v, "/team/id", "`team.id`")?;
    // The user's own workspace, where Slack reports it, must be the payload's too.
    if let Some(user_team) = v.pointer("/user/team_id").and_then(Value::as_str)
        && user_team != team_id
    {
        return Err(PayloadError::Missing("a `user.team_id` equal to `team.id`"));
    }
    Ok(Clicker {
        user_id,
        team_id: team_id.to_owned(),
    })
}

fn text<'a>(v: &'a Value, pointer: &str, what: &'static str) -> Result<&'a str, PayloadError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(PayloadError::Missing(what))
}

fn non_empty<'a>(s: &'a str, what: &'static str) -> Result<&'a str, PayloadError> {
    if s.trim().is_empty() {
        Err(PayloadError::Missing(what))
    } else {
        Ok(s)
    }
}

/// The form body Slack sends for `payload`: what the fake and the benchmarks post.
pub fn form_body(payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn click(action_id: &str, value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "bob", "name": "bob", "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy",
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C1", "is_ephemeral": false},
            "trigger_id": "123.456.abc",
            "team": {"id": "T1", "domain": "example"},
            "channel": {"id": "C1", "name": "reviews"},
            "message": {"ts": "1.2", "blocks": []},
            "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1700000000.1"}]
        })
    }

    #[test]
    fn a_click_is_read_whole() {
        let i = parse(form_body(&click(APPROVE_ACTION, "r-1")).as_bytes()).unwrap();
        let Interaction::Click(c) = &i else {
            panic!("{i:?}")
        };
        assert_eq!(c.request_id, "r-1");
        assert_eq!(c.decision, Decision::Approve);
        assert_eq!(
            c.by,
            Clicker {
                user_id: "U1".into(),
                team_id: "T1".into()
            }
        );
        assert_eq!(c.message, Some(("C1".into(), "1.2".into())));
        assert_eq!(c.trigger_id, "123.456.abc");
        assert_eq!(i.delivery_key(), "click:T1:U1:1700000000.1:approve:r-1");
    }

    #[test]
    fn a_reason_submission_is_read_whole() {
        let v = json!({
            "type": "view_submission",
            "team": {"id": "T1", "domain": "example"},
            "user": {"id": "U1", "name": "bob", "team_id": "T1"},
            "view": {
                "id": "V1", "callback_id": REASON_CALLBACK, "hash": "h",
                "private_metadata": json!({"request_id": "r-1", "response_url": "https://hooks.slack.com/x"}).to_string(),
                "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": "  not during the freeze  "}}}}
            }
        });
        let Interaction::Reason(r) = parse(form_body(&v).as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(r.request_id, "r-1");
        assert_eq!(r.reason, "not during the freeze");
        assert_eq!(r.response_url.as_deref(), Some("https://hooks.slack.com/x"));
    }

    #[test]
    fn malformed_payloads_are_refused_precisely() {
        assert_eq!(parse(b"token=x"), Err(PayloadError::NoPayload));
        assert!(matches!(
            parse(b"payload=%7Bnot"),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            parse(form_body(&json!({"type": "block_actions"})).as_bytes()),
            Err(PayloadError::Missing("`user.id`"))
        );
        let mut no_actions = click(APPROVE_ACTION, "r");
        no_actions["actions"] = json!([]);
        assert_eq!(
            parse(form_body(&no_actions).as_bytes()),
            Err(PayloadError::Missing("`actions[0]`"))
        );
        assert_eq!(
            parse(form_body(&click("something_else", "r")).as_bytes()),
            Err(PayloadError::UnknownAction("something_else".into()))
        );
        assert_eq!(
            parse(form_body(&click(APPROVE_ACTION, " ")).as_bytes()),
            Err(PayloadError::Missing("`actions[0].value`"))
        );
        let mut other_team_user = click(APPROVE_ACTION, "r");
        other_team_user["user"]["team_id"] = json!("T2");
        assert!(parse(form_body(&other_team_user).as_bytes()).is_err());
        let mut shortcut = click(APPROVE_ACTION, "r");
        shortcut["type"] = json!("shortcut");
        assert_eq!(
            parse(form_body(&shortcut).as_bytes()),
            Err(PayloadError::UnsupportedType("shortcut".into()))
        );
        let empty_reason = json!({
            "type": "view_submission",
            "team": {"id": "T1"}, "user": {"id": "U1"},
            "view": {"id": "V", "callback_id": REASON_CALLBACK,
                     "private_metadata": "{\"request_id\":\"r\"}",
                     "state": {"values": {"reason": {"reason_input": {"value": "   "}}}}}
        });
        assert!(matches!(
            parse(form_body(&empty_reason).as_bytes()),
            Err(PayloadError::Missing(_))
        ));
    }
}
