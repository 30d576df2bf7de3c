//! Plain-text renderings of log values (times, durations, principals, resources, payloads,
//! grant terms) shared by the HTML and CSV output.

use countersign_core::{PrincipalRef, Resource, Timestamp};

/// `2026-11-01 12:03:04` (UTC).
pub(super) fn when(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system_time())
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// RFC 3339 with milliseconds, for machine-readable output.
pub(super) fn when_ms(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// `42s`, `3m 12s`, `2h 05m`, `3d 4h`.
pub(super) fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 if ms < 1000 => format!("{}ms", ms.max(0)),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

pub(super) fn who(p: &PrincipalRef) -> String {
    format!("{} {}", p.kind.as_str(), p.id)
}

pub(super) fn resource_text(r: &Resource) -> String {
    let mut text = format!("{}::{:?}", r.kind, r.id);
    if let Some(parent) = &r.parent {
        text.push_str(&format!(" in {parent}"));
    }
    if let Some(c) = r.classification {
        text.push_str(&format!(" [{}]", c.as_str()));
    }
    if !r.tags.is_empty() {
        let tags: Vec<&str> = r.tags.iter().map(String::as_str).collect();
        text.push_str(&format!(" {{{}}}", tags.join(",")));
    }
    text
}

pub(super) fn payload_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `shape` and end of a `grant.issued` outcome (`once grant until <millis>`).
pub(super) fn grant_terms(outcome: Option<&str>) -> String {
    let Some(o) = outcome else {
        return String::new();
    };
    match o.split_once(" grant until ") {
        Some((shape, until)) => match until.trim().parse::<i64>() {
            Ok(ms) => format!("{}, until {}", shape_text(shape), when(Timestamp(ms))),
            Err(_) => o.to_owned(),
        },
        None => o.to_owned(),
    }
}

/// `once`, or a window (`3600s`) as `1h window`.
fn shape_text(shape: &str) -> String {
    let Some(secs) = shape.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) else {
        return shape.to_owned();
    };
    let span = match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    format!("{span} window")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_grant_terms() {
        assert_eq!(duration(450), "450ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(7_500_000), "2h 05m");
        assert_eq!(duration(100_000_000), "1d 3h");
        assert_eq!(
            grant_terms(Some("once grant until 86400000")),
            "once, until 1970-01-02 00:00:00"
        );
        assert_eq!(
            grant_terms(Some("900s grant until 0")),
            "15m window, until 1970-01-01 00:00:00"
        );
    }
}
