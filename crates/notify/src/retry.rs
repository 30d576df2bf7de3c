//! Retries with exponential backoff, for deliveries to Slack and webhook receivers.

use std::time::Duration;

/// How often and how patiently a delivery is retried: attempt `n` (from 1) waits
/// `base · 2^(n-1)`, at most `max`, before the next; a receiver's `Retry-After` overrides the
/// wait (capped at `max_retry_after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    /// Eight attempts over about four minutes: 1 s, 2 s, 4 s, … 64 s apart.
    fn default() -> Backoff {
        Backoff {
            attempts: 8,
            base: Duration::from_secs(1),
            max: Duration::from_secs(64),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based), or `None` when none is left.
    pub fn wait_after(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.attempts {
            return None;
        }
        Some(match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                self.base.saturating_mul(factor).min(self.max)
            }
        })
    }
}

/// Parses a `Retry-After` header given in seconds (the form Slack and most receivers use).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stops_after_the_last_attempt() {
        let b = Backoff {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(2),
        };
        let waits: Vec<_> = (1..=5).map(|n| b.wait_after(n, None)).collect();
        assert_eq!(
            waits,
            [
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(500)),
                None
            ]
        );
        assert_eq!(
            b.wait_after(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            b.wait_after(1, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(b.wait_after(40, None), None);
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
