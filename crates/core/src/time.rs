//! Wall-clock instants as Unix milliseconds, and the duration syntax used in policy annotations.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, in milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are precise enough for deadlines and portable across SQLite and PostgreSQL as a
/// plain 64-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `ms` milliseconds, saturating instead of overflowing.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

/// The last instant RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const LAST_WRITABLE_MS: u64 = 253_402_300_799_999;

impl Timestamp {
    /// As a `SystemTime`, clamped to what RFC 3339 can write (1970 to the year 9999).
    pub fn to_system_time(self) -> std::time::SystemTime {
        let ms = u64::try_from(self.0).unwrap_or(0).min(LAST_WRITABLE_MS);
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T05:00:00.000Z`. Never fails:
    /// instants the format cannot write are clamped to its range.
    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses the duration syntax of `@timeout`, window grants and intervals in the configuration:
/// a sequence of `<number><unit>` with units `ms`, `s`, `m`, `h`, `d` (for example `500ms`,
/// `90s`, `15m`, `1h30m`, `7d`), into milliseconds.
///
/// Zero durations are refused: a request that expires at once or a grant that never lives is
/// always a configuration mistake. So are durations beyond [`MAX_DURATION_MS`] (a year): no
/// approval should stand that long, and deadlines stay far from any calendar's end.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "duration `{text}`: expected a number at `{rest}` (e.g. `15m`, `1h30m`, `500ms`)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "duration `{text}`: number without a unit (use ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d, e.g. `15m`)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
    }
    if total == 0 {
        return Err(format!("duration `{text}` is zero"));
    }
    if total > MAX_DURATION_MS {
        return Err(format!("duration `{text}` is longer than a year (366d)"));
    }
    Ok(total)
}

/// The longest accepted duration: 366 days.
pub const MAX_DURATION_MS: u64 = 366 * 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sequences() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms(" 7d "), Ok(604_800_000));
        assert_eq!(parse_duration_ms("366d"), Ok(MAX_DURATION_MS));
        assert_eq!(parse_duration_ms("200ms"), Ok(200));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1s500ms"), Ok(1_500));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "",
            "15",
            "m",
            "1x",
            "0s",
            "-5m",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn rfc3339_is_total() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_500).to_rfc3339(), "1970-01-01T00:00:01.500Z");
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(-5).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn plus_saturates() {
        assert_eq!(Timestamp(i64::MAX - 1).plus_ms(10), Timestamp(i64::MAX));
        assert_eq!(Timestamp(5).plus_ms(10), Timestamp(15));
    }
}
