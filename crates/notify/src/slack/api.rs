//! The Slack Web API methods countersign calls, with Slack's error conventions: HTTP 200 with
//! `{"ok": false, "error": "…"}` for refusals, HTTP 429 with `Retry-After` for rate limits.

use crate::retry::{Backoff, retry_after};
use crate::secret::Secret;
use serde_json::{Value, json};
use std::time::Duration;

/// Why a Web API call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("rate limited by Slack (retry after {0:?})")]
    RateLimited(Option<Duration>),
    #[error("Slack refused {method}: {error}")]
    Api { method: String, error: String },
    #[error("Slack answered {method} with HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("cannot reach Slack for {method}: {detail}")]
    Transport { method: String, detail: String },
    #[error("Slack's answer to {method} is not what its documentation says: {detail}")]
    BadResponse { method: String, detail: String },
    #[error("response_url `{0}` is not Slack's; nothing sent")]
    ForeignResponseUrl(String),
}

impl SlackError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            SlackError::RateLimited(_) | SlackError::Transport { .. } => true,
            SlackError::Http { status, .. } => *status >= 500,
            SlackError::Api { error, .. } => matches!(
                error.as_str(),
                "ratelimited"
                    | "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout"
            ),
            SlackError::BadResponse { .. } | SlackError::ForeignResponseUrl(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited(d) => *d,
            _ => None,
        }
    }
}

/// A posted message: where it is and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// A Slack user as `users.info` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackUser {
    pub id: String,
    pub team_id: Option<String>,
    pub email: Option<String>,
    pub deleted: bool,
    pub is_bot: bool,
}

/// A client of one workspace's Web API, with the bot token.
#[derive(Clone, Debug)]
pub struct SlackApi {
    client: reqwest::Client,
    base: String,
    token: Secret,
}

impl SlackApi {
    pub fn new(api_url: &str, token: Secret) -> Result<SlackApi, SlackError> {
        let client =
            crate::http_client(Duration::from_secs(10)).map_err(|e| SlackError::Transport {
                method: "client".into(),
                detail: e.to_string(),
            })?;
        Ok(SlackApi {
            client,
            base: api_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let transport = |e: reqwest::Error| SlackError::Transport {
            method: method.to_owned(),
            detail: e.to_string(),
        };
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(SlackError::RateLimited(retry_after(response.headers())));
        }
        if !status.is_success() {
            return Err(SlackError::Http {
                method: method.to_owned(),
                status: status.as_u16(),
            });
        }
        let body: Value = response.json().await.map_err(|e| SlackError::BadResponse {
            method: method.to_owned(),
            detail: e.to_string(),
        })?;
        match body.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(body),
            Some(false) => Err(SlackError::Api {
                method: method.to_owned(),
                error: body
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error")
                    .to_owned(),
            }),
            None => Err(SlackError::BadResponse {
                method: method.to_owned(),
                detail: "no `ok` member".into(),
            }),
        }
    }

    async fn post_json(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self
            .client
            .post(format!("{}/{method}", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(body.to_string());
        self.send(method, request).await
    }

    async fn get(&self, method: &str, query: &[(&str, &str)]) -> Result<Value, SlackError> {
        let request = self
            .client
            .get(format!("{}/{method}", self.base))
            .query(query);
        self.send(method, request).await
    }

    /// `chat.postMessage` to `channel` (a channel id, or a user id for a direct message).
    pub async fn post_message(&self, channel: &str, message: &Value) -> Result<Posted, SlackError> {
        let mut body = message.clone();
        body["channel"] = json!(channel);
        let answer = self.post_json("chat.postMessage", &body).await?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| SlackError::BadResponse {
                    method: "chat.postMessage".into(),
                    detail: format!("no `{name}`"),
                })
        };
        Ok(Posted {
            channel: field("channel")?,
            ts: field("ts")?,
        })
    }

    /// `chat.update` of the message `ts` in `channel` with `message`'s text and blocks.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Value,
    ) -> Result<(), SlackError> {
        let mut body = message.clone();
        body["channel"] = json!(channel);
        body["ts"] = json!(ts);
        self.post_json("chat.update", &body).await.map(drop)
    }

    /// `users.info`: the user with the e-mail address Slack holds for them.
    pub async fn user_info(&self, user_id: &str) -> Result<SlackUser, SlackError> {
        let answer = self.get("users.info", &[("user", user_id)]).await?;
        let user = answer.get("user").ok_or_else(|| SlackError::BadResponse {
            method: "users.info".into(),
            detail: "no `user`".into(),
        })?;
        let s = |p: &str| user.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let b = |p: &str| user.pointer(p).and_then(Value::as_bool).unwrap_or(false);
        Ok(SlackUser {
            id: s("/id").unwrap_or_else(|| user_id.to_owned()),
            team_id: s("/team_id"),
            email: s("/profile/email"),
            deleted: b("/deleted"),
            is_bot: b("/is_bot"),
        })
    }

    /// `users.lookupByEmail`: the user id for an address, `None` when nobody has it.
    pub async fn lookup_by_email(&self, email: &str) -> Result<Option<String>, SlackError> {
        match self.get("users.lookupByEmail", &[("email", email)]).await {
            Ok(answer) => Ok(answer
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(str::to_owned)),
            Err(SlackError::Api { error, .. }) if error == "users_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `views.open`: shows `view` to the user whose interaction gave `trigger_id`.
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.post_json(
            "views.open",
            &json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
        .map(drop)
    }

    /// Posts `message` to an interaction's `response_url` (no token: the URL is the
    /// credential). It answers plain `ok`, not the Web API's JSON.
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), SlackError> {
        let response = self
            .client
            .post(response_url)
            .json(message)
            .send()
            .await
            .map_err(|e| SlackError::Transport {
                method: "response_url".into(),
                detail: e.to_string(),
            })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            reqwest::StatusCode::TOO_MANY_REQUESTS => {
                Err(SlackError::RateLimited(retry_after(response.headers())))
            }
            s => Err(SlackError::Http {
                method: "response_url".into(),
                status: s.as_u16(),
            }),
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or `backoff` has no attempt left; waits as
/// Slack's `Retry-After` says when rate limited.
pub async fn retrying<T, F, Fut>(backoff: &Backoff, what: &str, mut op: F) -> Result<T, SlackError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SlackError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => match backoff.wait_after(attempt, e.retry_after()) {
                Some(wait) => {
                    tracing::warn!(error = %e, attempt, ?wait, what, "Slack call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}
