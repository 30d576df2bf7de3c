//! The decision order, as a pure function over what policy said and whether a grant covers
//! the attempt.
//!
//! 1. a `forbid` matched → deny (nothing overrides a forbid);
//! 2. a live grant covers the attempt → allow;
//! 3. a matching `permit` carries approval annotations → approval;
//! 4. a plain `permit` matched → allow;
//! 5. otherwise → deny.
//!
//! An evaluation that failed is a deny before anything else: the system fails closed.

use crate::grant::GrantShape;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One policy's approval requirement: `quorum` distinct people from `groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    pub policy_id: String,
    pub groups: BTreeSet<String>,
    pub quorum: u32,
    /// `@break_glass("true")`: the requester may approve past this rule alone, with a written
    /// reason (see `ApprovalRequest::cast_vote`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
}

/// `@escalate("30m:security-oncall")`: when a request is still pending `after_ms` after it was
/// made, `groups` are asked too, and count towards the quorum of the policy that escalated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub policy_id: String,
    pub after_ms: u64,
    pub groups: BTreeSet<String>,
}

/// Everything an approval request needs to settle: every rule must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    pub rules: Vec<ApprovalRule>,
    pub grant: GrantShape,
    /// How long the request may stay pending, from its creation.
    pub timeout_ms: u64,
    /// Further groups asked when no decision came in time, earliest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
    /// Reviewers are reminded this long before the request expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_before_ms: Option<u64>,
    /// `@require_reason("deny")`: a deny must say why.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_reason_required: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Requirements {
    /// Plain requirements: no escalation, reminder or reason rule.
    pub fn new(rules: Vec<ApprovalRule>, grant: GrantShape, timeout_ms: u64) -> Requirements {
        Requirements {
            rules,
            grant,
            timeout_ms,
            escalations: Vec::new(),
            remind_before_ms: None,
            deny_reason_required: false,
        }
    }

    /// Combines the requirements of several matching policies: all rules must hold, the
    /// narrowest grant and the shortest timeout apply; every escalation stays (earliest first),
    /// the earliest reminder applies, and any policy can demand a reason for a deny.
    pub fn combine(parts: impl IntoIterator<Item = Requirements>) -> Option<Requirements> {
        parts.into_iter().reduce(|mut acc, next| {
            acc.rules.extend(next.rules);
            acc.grant = acc.grant.narrowest(next.grant);
            acc.timeout_ms = acc.timeout_ms.min(next.timeout_ms);
            acc.escalations.extend(next.escalations);
            acc.escalations.sort_by_key(|e| e.after_ms);
            acc.remind_before_ms = acc.remind_before_ms.max(next.remind_before_ms);
            acc.deny_reason_required |= next.deny_reason_required;
            acc
        })
    }

    /// Whether every rule lets the requester break glass: one rule without it keeps its quorum.
    pub fn break_glass_allowed(&self) -> Result<(), String> {
        match self.rules.iter().find(|r| !r.break_glass) {
            None if !self.rules.is_empty() => Ok(()),
            None => Err("no approval rule allows break-glass".into()),
            Some(rule) => Err(format!(
                "policy `{}` does not allow break-glass (@break_glass(\"true\")); its reviewers must approve",
                rule.policy_id
            )),
        }
    }

    /// Every group whose members may review.
    pub fn eligible_groups(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .flat_map(|r| r.groups.iter().cloned())
            .collect()
    }
}

/// What policy evaluation found for an attempt, before grants are considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// One or more `forbid` policies matched.
    Forbid { policy_ids: Vec<String> },
    /// Permits matched and at least one carries approval annotations.
    Approval {
        policy_ids: Vec<String>,
        requirements: Requirements,
    },
    /// Only plain permits matched.
    Permit { policy_ids: Vec<String> },
    /// Nothing matched.
    NoMatch,
    /// Evaluation could not be completed (unknown action, an erroring policy, no policy set).
    Error { reason: String },
}

/// What the gateway does with an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Allow {
        policy_ids: Vec<String>,
        /// The grant the allow rests on, when it was a grant and not a plain permit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant_id: Option<String>,
        reason: String,
    },
    Deny {
        policy_ids: Vec<String>,
        reason: String,
    },
    Approval {
        policy_ids: Vec<String>,
        requirements: Requirements,
        reason: String,
    },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Allow { .. } => "allow",
            Verdict::Deny { .. } => "deny",
            Verdict::Approval { .. } => "approval",
        }
    }

    pub fn policy_ids(&self) -> &[String] {
        match self {
            Verdict::Allow { policy_ids, .. }
            | Verdict::Deny { policy_ids, .. }
            | Verdict::Approval { policy_ids, .. } => policy_ids,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Allow { reason, .. }
            | Verdict::Deny { reason, .. }
            | Verdict::Approval { reason, .. } => reason,
        }
    }

    /// A deny for an internal failure: the fail-closed answer.
    pub fn failure(reason: impl Into<String>) -> Verdict {
        Verdict::Deny {
            policy_ids: Vec::new(),
            reason: reason.into(),
        }
    }
}

/// Applies the decision order. `live_grant` is the id of a grant that covers the attempt, if any;
/// callers look it up only when the outcome is not a forbid or an error (see
/// [`PolicyOutcome::grant_may_apply`]) and must consume a single-use grant atomically before
/// acting on an allow that names it.
pub fn decide(outcome: &PolicyOutcome, live_grant: Option<&str>) -> Verdict {
    match outcome {
        PolicyOutcome::Error { reason } => Verdict::failure(format!("denied: {reason}")),
        PolicyOutcome::Forbid { policy_ids } => Verdict::Deny {
            policy_ids: policy_ids.clone(),
            reason: format!("forbidden by policy {}", policy_ids.join(", ")),
        },
        _ if live_grant.is_some() => Verdict::Allow {
            policy_ids: outcome_policy_ids(outcome),
            grant_id: live_grant.map(str::to_owned),
            reason: format!("allowed by grant {}", live_grant.unwrap_or_default()),
        },
        PolicyOutcome::Approval {
            policy_ids,
            requirements,
        } => Verdict::Approval {
            policy_ids: policy_ids.clone(),
            requirements: requirements.clone(),
            reason: format!("approval required by policy {}", policy_ids.join(", ")),
        },
        PolicyOutcome::Permit { policy_ids } => Verdict::Allow {
            policy_ids: policy_ids.clone(),
            grant_id: None,
            reason: format!("permitted by policy {}", policy_ids.join(", ")),
        },
        PolicyOutcome::NoMatch => Verdict::Deny {
            policy_ids: Vec::new(),
            reason: "no policy permits this action (default deny)".into(),
        },
    }
}

fn outcome_policy_ids(outcome: &PolicyOutcome) -> Vec<String> {
    match outcome {
        PolicyOutcome::Approval { policy_ids, .. } | PolicyOutcome::Permit { policy_ids } => {
            policy_ids.clone()
        }
        PolicyOutcome::Forbid { .. } | PolicyOutcome::NoMatch | PolicyOutcome::Error { .. } => {
            Vec::new()
        }
    }
}

impl PolicyOutcome {
    /// Whether step 2 of the decision order can be reached: a forbid or a failure ends the
    /// decision before any grant is looked at (and before a single-use grant is spent).
    pub fn grant_may_apply(&self) -> bool {
        !matches!(
            self,
            PolicyOutcome::Forbid { .. } | PolicyOutcome::Error { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(group: &str, quorum: u32, grant: GrantShape, timeout_ms: u64) -> Requirements {
        Requirements::new(
            vec![ApprovalRule {
                policy_id: format!("needs-{group}"),
                groups: [group.to_owned()].into(),
                quorum,
                break_glass: false,
            }],
            grant,
            timeout_ms,
        )
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn approval() -> PolicyOutcome {
        PolicyOutcome::Approval {
            policy_ids: ids(&["a"]),
            requirements: reqs("owners", 1, GrantShape::Once, 1000),
        }
    }

    #[test]
    fn step1_forbid_beats_everything_including_a_grant() {
        let forbid = PolicyOutcome::Forbid {
            policy_ids: ids(&["no-prod"]),
        };
        assert!(!forbid.grant_may_apply());
        for grant in [None, Some("g1")] {
            let v = decide(&forbid, grant);
            assert_eq!(v.label(), "deny");
            assert_eq!(v.policy_ids(), ids(&["no-prod"]).as_slice());
        }
    }

    #[test]
    fn failure_denies_even_with_a_grant() {
        let err = PolicyOutcome::Error {
            reason: "store unreachable".into(),
        };
        assert!(!err.grant_may_apply());
        for grant in [None, Some("g1")] {
            let v = decide(&err, grant);
            assert_eq!(v.label(), "deny");
            assert!(v.reason().contains("store unreachable"));
        }
    }

    #[test]
    fn step2_grant_allows_before_approval_permit_and_default() {
        for outcome in [
            approval(),
            PolicyOutcome::Permit {
                policy_ids: ids(&["p"]),
            },
            PolicyOutcome::NoMatch,
        ] {
            assert!(outcome.grant_may_apply());
            match decide(&outcome, Some("g1")) {
                Verdict::Allow { grant_id, .. } => assert_eq!(grant_id.as_deref(), Some("g1")),
                other => panic!("expected allow by grant, got {other:?}"),
            }
        }
    }

    #[test]
    fn step3_approval_annotations_require_approval() {
        match decide(&approval(), None) {
            Verdict::Approval { requirements, .. } => assert_eq!(requirements.rules.len(), 1),
            other => panic!("expected approval, got {other:?}"),
        }
    }

    #[test]
    fn step4_plain_permit_allows() {
        let v = decide(
            &PolicyOutcome::Permit {
                policy_ids: ids(&["reads"]),
            },
            None,
        );
        assert_eq!(
            v,
            Verdict::Allow {
                policy_ids: ids(&["reads"]),
                grant_id: None,
                reason: "permitted by policy reads".into()
            }
        );
    }

    #[test]
    fn step5_default_deny() {
        let v = decide(&PolicyOutcome::NoMatch, None);
        assert_eq!(v.label(), "deny");
        assert!(v.policy_ids().is_empty());
    }

    #[test]
    fn combined_requirements_take_all_rules_narrowest_grant_shortest_timeout() {
        let a = reqs("owners", 1, GrantShape::Window { ms: 60_000 }, 3_600_000);
        let b = reqs("security", 2, GrantShape::Window { ms: 30_000 }, 600_000);
        let c = Requirements::combine([a.clone(), b]).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.grant, GrantShape::Window { ms: 30_000 });
        assert_eq!(c.timeout_ms, 600_000);
        assert_eq!(
            c.eligible_groups(),
            ["owners".to_string(), "security".to_string()].into()
        );
        let once = reqs("x", 1, GrantShape::Once, 10);
        assert_eq!(
            Requirements::combine([a, once]).unwrap().grant,
            GrantShape::Once
        );
        assert_eq!(Requirements::combine(Vec::new()), None);
    }

    #[test]
    fn combined_escalations_reminders_and_reason_rules() {
        let mut a = reqs("owners", 1, GrantShape::Once, 3_600_000);
        a.escalations.push(Escalation {
            policy_id: "a".into(),
            after_ms: 1_800_000,
            groups: ["oncall".to_string()].into(),
        });
        a.remind_before_ms = Some(60_000);
        let mut b = reqs("security", 1, GrantShape::Once, 3_600_000);
        b.escalations.push(Escalation {
            policy_id: "b".into(),
            after_ms: 600_000,
            groups: ["cso".to_string()].into(),
        });
        b.remind_before_ms = Some(300_000);
        b.deny_reason_required = true;
        let c = Requirements::combine([a, b]).unwrap();
        assert_eq!(
            c.escalations.iter().map(|e| e.after_ms).collect::<Vec<_>>(),
            [600_000, 1_800_000]
        );
        assert_eq!(c.remind_before_ms, Some(300_000));
        assert!(c.deny_reason_required);
    }

    #[test]
    fn break_glass_needs_every_rule_to_allow_it() {
        let mut a = reqs("owners", 2, GrantShape::Once, 10);
        assert!(a.break_glass_allowed().is_err());
        a.rules[0].break_glass = true;
        assert_eq!(a.break_glass_allowed(), Ok(()));
        let b = reqs("security", 1, GrantShape::Once, 10);
        let c = Requirements::combine([a, b]).unwrap();
        let err = c.break_glass_allowed().unwrap_err();
        assert!(err.contains("needs-security"), "{err}");
        assert!(
            Requirements::new(Vec::new(), GrantShape::Once, 1)
                .break_glass_allowed()
                .is_err()
        );
    }
}
