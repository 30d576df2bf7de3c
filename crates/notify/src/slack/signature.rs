//! Slack's request signatures: `X-Slack-Signature: v0=<hex HMAC-SHA256>` over
//! `v0:{X-Slack-Request-Timestamp}:{raw body}` with the app's signing secret.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far a request's timestamp may be from now, either way (Slack's own advice).
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Why a request is not from Slack, or not from now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature header")]
    Missing,
    #[error("X-Slack-Request-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("request timestamp is {0} s away from now (at most {MAX_SKEW_SECONDS} s accepted)")]
    Stale(i64),
    #[error("X-Slack-Signature is not `v0=` followed by 64 hex digits")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

/// The `X-Slack-Signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks that `body` was signed with `secret` at `timestamp`, within [`MAX_SKEW_SECONDS`] of
/// `now` (Unix seconds). The comparison is constant-time over the raw signature bytes.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(sent);
    if skew.saturating_abs() > MAX_SKEW_SECONDS {
        return Err(SignatureError::Stale(skew));
    }
    let hex_part = signature
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut given).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"payload=%7B%22type%22%3A%22block_actions%22%7D";

    #[test]
    fn slack_documented_example() {
        // The worked example of Slack's "Verifying requests from Slack" guide.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(SECRET, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn accepts_a_fresh_correct_signature() {
        let sig = sign(SECRET, "1000", BODY);
        assert_eq!(verify(SECRET, Some("1000"), Some(&sig), BODY, 1000), Ok(()));
        assert_eq!(verify(SECRET, Some("1000"), Some(&sig), BODY, 1300), Ok(()));
        assert_eq!(verify(SECRET, Some("1000"), Some(&sig), BODY, 700), Ok(()));
    }

    #[test]
    fn every_way_to_fool_it_is_refused() {
        let sig = sign(SECRET, "1000", BODY);
        let check = |ts: Option<&str>, s: Option<&str>, body: &[u8], now: i64| {
            verify(SECRET, ts, s, body, now)
        };
        assert_eq!(
            check(None, Some(&sig), BODY, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(Some("1000"), None, BODY, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(Some("1e3"), Some(&sig), BODY, 1000),
            Err(SignatureError::BadTimestamp)
        );
        // Stale, and from the future.
        assert_eq!(
            check(Some("1000"), Some(&sig), BODY, 1301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check(Some("1000"), Some(&sig), BODY, 699),
            Err(SignatureError::Stale(-301))
        );
        // The body altered after signing, by one byte.
        let mut altered = BODY.to_vec();
        altered[10] ^= 1;
        assert_eq!(
            check(Some("1000"), Some(&sig), &altered, 1000),
            Err(SignatureError::Mismatch)
        );
        // A signature moved to another timestamp.
        assert_eq!(
            check(Some("1001"), Some(&sig), BODY, 1000),
            Err(SignatureError::Mismatch)
        );
        // Another secret.
        assert_eq!(
            verify("another", Some("1000"), Some(&sig), BODY, 1000),
            Err(SignatureError::Mismatch)
        );
        // Wrong version, truncated, not hex, upper-case prefix.
        for bad in [
            sig.replacen("v0=", "v1=", 1),
            sig[..sig.len() - 2].to_owned(),
            format!("v0={}", "zz".repeat(32)),
            sig.replacen("v0=", "V0=", 1),
            String::new(),
        ] {
            assert_eq!(
                check(Some("1000"), Some(&bad), BODY, 1000),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
