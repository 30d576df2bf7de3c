//! Outgoing webhooks signed per the Standard Webhooks specification.
//!
//! Every request event is POSTed as JSON `{"type", "timestamp", "data"}` with the headers
//! `webhook-id` (one per message, the same on every retry), `webhook-timestamp` (Unix seconds
//! of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//! keyed with the bytes of the `whsec_…` secret. The payload text itself is left out (a
//! policy may keep it out of the audit log); its digest and the review link are in.

use crate::render;
use crate::retry::{Backoff, retry_after};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use countersign_core::{DeliveryAttempt, RequestNotice, Timestamp};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far a receiver lets a timestamp be from now (the specification's suggestion).
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook secret must be `whsec_` followed by base64 of 24 to 64 random bytes")]
    BadSecret,
    #[error("missing webhook-id, webhook-timestamp or webhook-signature header")]
    Missing,
    #[error("webhook-timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now")]
    Stale(i64),
    #[error("no `v1` signature in webhook-signature matches the body")]
    Mismatch,
}

/// A Standard Webhooks signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<WebhookSecret, WebhookError> {
        let key = text
            .trim()
            .strip_prefix("whsec_")
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(WebhookError::BadSecret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookError::BadSecret);
        }
        Ok(WebhookSecret(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value.
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    /// Verifies a delivery as a receiver must: a fresh timestamp and, among the
    /// space-separated signatures, one `v1` that matches (compared in constant time).
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
            return Err(WebhookError::Missing);
        };
        let sent: i64 = timestamp.parse().map_err(|_| WebhookError::BadTimestamp)?;
        let skew = now.saturating_sub(sent);
        if skew.saturating_abs() > TOLERANCE_SECONDS {
            return Err(WebhookError::Stale(skew));
        }
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| STANDARD.decode(b).ok())
            .any(|given| self.mac(id, timestamp, body).verify_slice(&given).is_ok());
        if matches {
            Ok(())
        } else {
            Err(WebhookError::Mismatch)
        }
    }
}

/// One `[[channels.webhook]]`.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    pub secret: WebhookSecret,
}

/// The JSON body of the event for `notice`.
pub fn event_body(notice: &RequestNotice, review_url: &str) -> Value {
    let r = &notice.request;
    let mut data = json!({
        "request_id": r.id,
        "status": r.status,
        "principal": r.attempt.principal,
        "on_behalf_of": r.attempt.on_behalf_of,
        "action": r.attempt.action.as_str(),
        "resources": r.attempt.resources,
        "payload_digest": r.digest.to_hex(),
        "justification": r.attempt.justification,
        "policy_ids": r.policy_ids,
        "policy_version": r.policy_version,
        "created_at": r.created_at.to_rfc3339(),
        "expires_at": r.expires_at.to_rfc3339(),
        "settled_at": r.settled_at.map(Timestamp::to_rfc3339),
        "votes": r.votes.iter().map(|v| json!({
            "voter": v.voter, "decision": v.decision, "reason": v.reason,
            "channel": v.channel, "cast_at": v.cast_at.to_rfc3339(), "break_glass": v.break_glass,
        })).collect::<Vec<_>>(),
        "break_glass": r.broke_glass(),
        "review_url": review_url,
    });
    if let Some(actor) = &notice.actor {
        data["actor"] = json!(actor);
    }
    if let Some(g) = &notice.grant {
        data["grant"] = json!({
            "id": g.id, "status": g.status.as_str(), "shape": g.shape.to_string(),
            "expires_at": g.expires_at.to_rfc3339(),
        });
    }
    if !notice.groups.is_empty() {
        data["escalated_to"] = json!(notice.groups);
    }
    if r.status.is_settled() {
        data["outcome"] = json!(crate::slack::blocks::outcome_line(r));
    } else {
        data["time_left"] = json!(render::time_left(r.expires_at, notice.at));
    }
    json!({
        "type": notice.kind.as_str(),
        "timestamp": notice.at.to_rfc3339(),
        "data": data,
    })
}

/// What one attempt to deliver came to.
fn attempt_result(
    response: Result<reqwest::Response, reqwest::Error>,
) -> (Option<u16>, Option<String>, Option<Duration>) {
    match response {
        Ok(r) => {
            let status = r.status();
            let wait = (status == reqwest::StatusCode::TOO_MANY_REQUESTS)
                .then(|| retry_after(r.headers()))
                .flatten();
            (Some(status.as_u16()), None, wait)
        }
        Err(e) => (None, Some(e.to_string()), None),
    }
}

/// One event to deliver.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The `webhook-id`: the same on every attempt.
    pub id: &'a str,
    pub event_kind: &'a str,
    pub request_id: Option<&'a str>,
    pub body: &'a [u8],
}

/// Delivers `message` to `hook`, retrying with `backoff` until a 2xx answer; `record` is told
/// of every attempt. Returns whether it was delivered.
pub async fn deliver<F, Fut>(
    client: &reqwest::Client,
    hook: &Webhook,
    message: Message<'_>,
    backoff: &Backoff,
    record: F,
) -> bool
where
    F: Fn(DeliveryAttempt) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Message {
        id: message_id,
        event_kind,
        request_id,
        body,
    } = message;
    let mut attempt = 1;
    loop {
        let timestamp = crate::unix_now().to_string();
        let response = client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", &timestamp)
            .header(
                "webhook-signature",
                hook.secret.sign(message_id, &timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await;
        let (status, error, retry_after) = attempt_result(response);
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        let wait = if delivered {
            None
        } else {
            backoff.wait_after(attempt, retry_after)
        };
        let outcome = match (delivered, wait) {
            (true, _) => "delivered",
            (false, Some(_)) => "retrying",
            (false, None) => "failed",
        };
        record(DeliveryAttempt {
            message_id: message_id.to_owned(),
            url: hook.url.clone(),
            event_kind: event_kind.to_owned(),
            request_id: request_id.map(str::to_owned),
            attempt,
            attempted_at: crate::now(),
            status_code: status,
            error,
            outcome: outcome.to_owned(),
        })
        .await;
        match wait {
            _ if delivered => return true,
            Some(wait) => {
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            None => {
                tracing::error!(url = %hook.url, message_id, attempts = attempt, "webhook delivery failed for good");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks reference implementations' test suites.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn signs_like_the_reference_implementations() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(
            secret.sign(ID, TS, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verification_refuses_every_forgery() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let sig = secret.sign(ID, TS, BODY);
        let now = 1614265330;
        assert_eq!(
            secret.verify(Some(ID), Some(TS), Some(&sig), BODY, now),
            Ok(())
        );
        // Among several signatures (key rotation), one matching is enough.
        let several = format!("v1,bm90IGl0 {sig}");
        assert_eq!(
            secret.verify(Some(ID), Some(TS), Some(&several), BODY, now),
            Ok(())
        );
        assert_eq!(
            secret.verify(None, Some(TS), Some(&sig), BODY, now),
            Err(WebhookError::Missing)
        );
        assert_eq!(
            secret.verify(
                Some(ID),
                Some(TS),
                Some(&sig),
                b"{\"test\": 2432232315}",
                now
            ),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            secret.verify(Some("msg_other"), Some(TS), Some(&sig), BODY, now),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            secret.verify(Some(ID), Some(TS), Some(&sig), BODY, now + 301),
            Err(WebhookError::Stale(301))
        );
        assert_eq!(
            secret.verify(
                Some(ID),
                Some(TS),
                Some(&sig.replace("v1,", "v2,")),
                BODY,
                now
            ),
            Err(WebhookError::Mismatch)
        );
        let other = WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            other.verify(Some(ID), Some(TS), Some(&sig), BODY, now),
            Err(WebhookError::Mismatch)
        );
    }

    #[test]
    fn secrets_must_be_well_formed() {
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad),
                Err(WebhookError::BadSecret),
                "{bad}"
            );
        }
        assert_eq!(
            format!("{:?}", WebhookSecret::parse(SECRET).unwrap()),
            "WebhookSecret(***)"
        );
    }
}
