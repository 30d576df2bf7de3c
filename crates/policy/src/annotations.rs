//! Approval annotations on Cedar policies: `@approval`, `@quorum`, `@grant`, `@timeout`, and
//! for reviewer channels `@escalate`, `@remind`, `@require_reason`, `@break_glass`.
//!
//! ```cedar
//! @id("prod-exports-need-data-owner")
//! @approval("data-owners, security")  // eligible reviewer groups, comma separated
//! @quorum("2")                        // distinct approvers, default 1, at most 100
//! @grant("15m")                       // "once" (default) or a window
//! @timeout("1h")                      // pending request lifetime, default 1h
//! @escalate("30m:security-oncall")    // still pending after 30m: ask these groups too
//! @remind("10m")                      // remind this long before expiry; default a fifth
//!                                     // of the timeout, "off" for none
//! @require_reason("deny")             // a deny must say why
//! @break_glass("true")                // the requesting person may approve alone, with a
//!                                     // written reason (default "false")
//! permit (...);
//! ```
//!
//! `@audit_payload("withhold")` on any policy behind a verdict keeps the payload text out of
//! the audit log (its digest is still recorded); `"record"` is the default.
//!
//! Other annotations are kept verbatim for later features and never rejected.

use countersign_core::{ApprovalRule, Escalation, GrantShape, Requirements, parse_duration_ms};
use std::collections::{BTreeMap, BTreeSet};

pub const APPROVAL: &str = "approval";
pub const QUORUM: &str = "quorum";
pub const GRANT: &str = "grant";
pub const TIMEOUT: &str = "timeout";
pub const AUDIT_PAYLOAD: &str = "audit_payload";
pub const ESCALATE: &str = "escalate";
pub const REMIND: &str = "remind";
pub const REQUIRE_REASON: &str = "require_reason";
pub const BREAK_GLASS: &str = "break_glass";

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
        let stray: Vec<String> = [
            QUORUM,
            GRANT,
            TIMEOUT,
            ESCALATE,
            REMIND,
            REQUIRE_REASON,
            BREAK_GLASS,
        ]
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
    let escalations = get(ESCALATE)
        .map(|text| parse_escalation(policy_id, text, timeout_ms))
        .transpose()?
        .into_iter()
        .collect();
    let remind_before_ms = match get(REMIND).map(str::trim) {
        None => Some(timeout_ms / 5).filter(|ms| *ms > 0),
        Some("off") => None,
        Some(text) => {
            let ms = parse_duration_ms(text).map_err(|e| format!("@remind(\"{text}\"): {e}"))?;
            if ms >= timeout_ms {
                return Err(format!(
                    "@remind(\"{text}\"): a reminder this long before expiry would come before the request exists; use less than the @timeout"
                ));
            }
            Some(ms)
        }
    };
    let deny_reason_required = match get(REQUIRE_REASON).map(str::trim) {
        None => false,
        Some("deny") => true,
        Some(other) => {
            return Err(format!(
                "@require_reason(\"{other}\"): the only accepted value is \"deny\""
            ));
        }
    };
    let break_glass = match get(BREAK_GLASS).map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "@break_glass(\"{other}\"): use \"true\" or \"false\""
            ));
        }
    };
    Ok(Some(Requirements {
        escalations,
        remind_before_ms,
        deny_reason_required,
        ..Requirements::new(
            vec![ApprovalRule {
                policy_id: policy_id.to_owned(),
                groups,
                quorum,
                break_glass,
            }],
            grant,
            timeout_ms,
        )
    }))
}

/// `"30m:security-oncall, cso"`: after how long, then which groups.
fn parse_escalation(policy_id: &str, text: &str, timeout_ms: u64) -> Result<Escalation, String> {
    let Some((after, groups)) = text.split_once(':') else {
        return Err(format!(
            "@escalate(\"{text}\"): expected \"DURATION:GROUP[, GROUP…]\", e.g. \"30m:security-oncall\""
        ));
    };
    let after_ms =
        parse_duration_ms(after.trim()).map_err(|e| format!("@escalate(\"{text}\"): {e}"))?;
    if after_ms >= timeout_ms {
        return Err(format!(
            "@escalate(\"{text}\"): the request expires (@timeout) before it would escalate"
        ));
    }
    let groups = parse_groups(groups).map_err(|e| e.replace("@approval", "@escalate"))?;
    Ok(Escalation {
        policy_id: policy_id.to_owned(),
        after_ms,
        groups,
    })
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
        assert_eq!(r.remind_before_ms, Some(DEFAULT_TIMEOUT_MS / 5));
        assert!(r.escalations.is_empty());
        assert!(!r.deny_reason_required);
        assert!(!r.rules[0].break_glass);
        let r = requirements(
            "p",
            false,
            &ann(&[
                ("approval", " a , b "),
                ("quorum", "2"),
                ("grant", "15m"),
                ("timeout", "30m"),
                ("escalate", "10m: security-oncall , cso"),
                ("remind", "5m"),
                ("require_reason", "deny"),
                ("break_glass", "true"),
                ("unrelated", "whatever"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.rules[0].groups, ["a".to_string(), "b".to_string()].into());
        assert_eq!(r.rules[0].quorum, 2);
        assert_eq!(r.rules[0].policy_id, "p");
        assert_eq!(r.grant, GrantShape::Window { ms: 900_000 });
        assert_eq!(r.timeout_ms, 1_800_000);
        assert_eq!(
            r.escalations,
            vec![Escalation {
                policy_id: "p".into(),
                after_ms: 600_000,
                groups: ["cso".to_string(), "security-oncall".to_string()].into(),
            }]
        );
        assert_eq!(r.remind_before_ms, Some(300_000));
        assert!(r.deny_reason_required);
        assert!(r.rules[0].break_glass);
        let off = requirements("p", false, &ann(&[("approval", "a"), ("remind", "off")]));
        assert_eq!(off.unwrap().unwrap().remind_before_ms, None);
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
            ("escalate", "30m"),
            ("escalate", "soon:oncall"),
            ("escalate", "30m:"),
            ("escalate", "2h:oncall"),
            ("escalate", "1h:oncall"),
            ("remind", "2h"),
            ("remind", "never"),
            ("require_reason", "always"),
            ("break_glass", "yes"),
            ("break_glass", "TRUE"),
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
        for key in [
            "quorum",
            "grant",
            "timeout",
            "escalate",
            "remind",
            "require_reason",
            "break_glass",
        ] {
            let err = requirements("p", false, &ann(&[(key, "1")])).unwrap_err();
            assert!(err.contains("without @approval"), "{err}");
        }
    }
}
