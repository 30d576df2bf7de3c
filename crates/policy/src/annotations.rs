//! Approval annotations on Cedar policies: `@approval`, `@quorum`, `@grant`, `@timeout`.
//!
//! ```cedar
//! @id("prod-exports-need-data-owner")
//! @approval("data-owners, security")  // eligible reviewer groups, comma separated
//! @quorum("2")                        // distinct approvers, default 1, at most 100
//! @grant("15m")                       // "once" (default) or a window
//! @timeout("1h")                      // pending request lifetime, default 1h
//! permit (...);
//! ```
//!
//! `@audit_payload("withhold")` on any policy behind a verdict keeps the payload text out of
//! the audit log (its digest is still recorded); `"record"` is the default.
//!
//! Other annotations are kept verbatim for later features and never rejected.

use countersign_core::{ApprovalRule, GrantShape, Requirements, parse_duration_ms};
use std::collections::{BTreeMap, BTreeSet};

pub const APPROVAL: &str = "approval";
pub const QUORUM: &str = "quorum";
pub const GRANT: &str = "grant";
pub const TIMEOUT: &str = "timeout";
pub const AUDIT_PAYLOAD: &str = "audit_payload";

/// Whether a policy keeps the payload text out of the audit log (`@audit_payload`).
pub fn withholds_payload(annotations: &BTreeMap<String, String>) -> Result<bool, String> {
    match annotations.get(AUDIT_PAYLOAD).map(|v| v.trim()) {
        None | Some("record") => Ok(false),
        Some("withhold") => Ok(true),
        Some(other) => Err(format!(
            "@audit_payload(\"{other}\"): use \"record\" (the default) or \"withhold\""
        )),
    }
}

/// Highest accepted `@quorum`: beyond it a request could never realistically settle.
pub const MAX_QUORUM: u32 = 100;
/// Pending requests expire after this unless `@timeout` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_600_000;

/// Reads the approval requirements of one policy. `Ok(None)` for a plain policy.
///
/// `is_forbid` refuses approval annotations on a `forbid`: nothing can approve past a forbid,
/// so such an annotation is a misunderstanding worth stopping at load time.
pub fn requirements(
    policy_id: &str,
    is_forbid: bool,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<Requirements>, String> {
    let get = |key: &str| annotations.get(key).map(String::as_str);
    let Some(approval) = get(APPROVAL) else {
        let stray: Vec<String> = [QUORUM, GRANT, TIMEOUT]
            .into_iter()
            .filter(|k| annotations.contains_key(*k))
            .map(|k| format!("@{k}"))
            .collect();
        if stray.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "{} without @approval: say which groups approve (e.g. @approval(\"reviewers\"))",
            stray.join(", ")
        ));
    };
    if is_forbid {
        return Err(
            "@approval on a forbid policy: a forbid cannot be approved past; use a permit".into(),
        );
    }
    let groups = parse_groups(approval)?;
    let quorum = get(QUORUM).map_or(Ok(1), parse_quorum)?;
    let grant = get(GRANT).map_or(Ok(GrantShape::Once), |text| {
        GrantShape::parse(text).map_err(|e| format!("@grant(\"{text}\"): {e}"))
    })?;
    let timeout_ms = get(TIMEOUT).map_or(Ok(DEFAULT_TIMEOUT_MS), |text| {
        parse_duration_ms(text).map_err(|e| format!("@timeout(\"{text}\"): {e}"))
    })?;
    Ok(Some(Requirements {
        rules: vec![ApprovalRule {
            policy_id: policy_id.to_owned(),
            groups,
            quorum,
        }],
        grant,
        timeout_ms,
    }))
}

fn parse_groups(text: &str) -> Result<BTreeSet<String>, String> {
    let mut groups = BTreeSet::new();
    for part in text.split(',') {
        let group = part.trim();
        if group.is_empty() {
            return Err(format!(
                "@approval(\"{text}\"): expected comma-separated group names, found an empty one"
            ));
        }
        groups.insert(group.to_owned());
    }
    Ok(groups)
}

fn parse_quorum(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_QUORUM).contains(&n) => Ok(n),
        _ => Err(format!(
            "@quorum(\"{text}\"): expected a whole number from 1 to {MAX_QUORUM}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_full_form() {
        let r = requirements("p", false, &ann(&[("approval", "reviewers")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.rules[0].quorum, 1);
        assert_eq!(r.grant, GrantShape::Once);
        assert_eq!(r.timeout_ms, DEFAULT_TIMEOUT_MS);
        let r = requirements(
            "p",
            false,
            &ann(&[
                ("approval", " a , b "),
                ("quorum", "2"),
                ("grant", "15m"),
                ("timeout", "30m"),
                ("escalate", "whatever"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.rules[0].groups, ["a".to_string(), "b".to_string()].into());
        assert_eq!(r.rules[0].quorum, 2);
        assert_eq!(r.rules[0].policy_id, "p");
        assert_eq!(r.grant, GrantShape::Window { ms: 900_000 });
        assert_eq!(r.timeout_ms, 1_800_000);
    }

    #[test]
    fn plain_policies_have_no_requirements() {
        assert_eq!(requirements("p", false, &ann(&[("other", "x")])), Ok(None));
        assert_eq!(requirements("p", true, &ann(&[])), Ok(None));
    }

    #[test]
    fn malformed_values_are_refused() {
        for (key, value) in [
            ("approval", ""),
            ("approval", "a,,b"),
            ("quorum", "0"),
            ("quorum", "abc"),
            ("quorum", "101"),
            ("quorum", "-1"),
            ("grant", "forever"),
            ("grant", "0s"),
            ("timeout", "0s"),
            ("timeout", "soon"),
        ] {
            let mut a = ann(&[("approval", "reviewers")]);
            a.insert(key.into(), value.into());
            assert!(
                requirements("p", false, &a).is_err(),
                "@{key}(\"{value}\") should be refused"
            );
        }
    }

    #[test]
    fn misplaced_annotations_are_refused() {
        let err = requirements("p", true, &ann(&[("approval", "reviewers")])).unwrap_err();
        assert!(err.contains("forbid"), "{err}");
        for key in ["quorum", "grant", "timeout"] {
            let err = requirements("p", false, &ann(&[(key, "1")])).unwrap_err();
            assert!(err.contains("without @approval"), "{err}");
        }
    }
}
