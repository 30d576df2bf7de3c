//! The example policies in `examples/policies`: they load from disk and embedded alike, and
//! give the verdicts their README promises.

use crate::common::*;
use countersign_core::{Classification, GrantShape, PolicyOutcome, Principal};
use countersign_policy::LoadedPolicies;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

fn demo() -> Principal {
    agent("demo-agent", &["agents"])
}

fn outcome(
    p: &LoadedPolicies,
    action: &str,
    resource: countersign_core::Resource,
) -> PolicyOutcome {
    p.evaluate(&demo(), &attempt(&demo(), action, vec![resource]))
}

/// (policy ids, [(policy id, quorum)], grant, timeout) of an approval.
fn approval(o: PolicyOutcome) -> (Vec<String>, Vec<(String, u32)>, GrantShape, u64) {
    match o {
        PolicyOutcome::Approval {
            policy_ids,
            requirements,
        } => {
            for rule in &requirements.rules {
                assert_eq!(rule.groups, ["reviewers".to_string()].into());
            }
            (
                policy_ids,
                requirements
                    .rules
                    .iter()
                    .map(|r| (r.policy_id.clone(), r.quorum))
                    .collect(),
                requirements.grant,
                requirements.timeout_ms,
            )
        }
        other => panic!("expected approval, got {other:?}"),
    }
}

#[test]
fn examples_load_from_disk_and_embedded_alike() {
    let disk = LoadedPolicies::load_dir(dir()).unwrap();
    let embedded = LoadedPolicies::examples().unwrap();
    assert_eq!(
        disk.files(),
        embedded.files(),
        "EXAMPLE_POLICIES must list every example file"
    );
    assert_eq!(disk.version(), embedded.version());
    assert!(disk.warnings().is_empty(), "{:?}", disk.warnings());
    assert_eq!(
        disk.groups_named_in_approvals(),
        ["reviewers".to_string()].into()
    );
}

#[test]
fn examples_give_every_verdict() {
    let p = LoadedPolicies::load_dir(dir()).unwrap();
    use Classification::*;

    // allow
    assert_eq!(
        outcome(&p, "db.read", res("Database", "prod")),
        PolicyOutcome::Permit {
            policy_ids: ids(&["agents-read"])
        }
    );
    assert_eq!(
        outcome(&p, "db.write", classified("Table", "orders", Internal)),
        PolicyOutcome::Permit {
            policy_ids: ids(&["agents-write-unrestricted"])
        }
    );
    assert_eq!(
        outcome(
            &p,
            "mcp.call",
            tagged(res("Tool", "search"), &["readOnlyHint=true"])
        ),
        PolicyOutcome::Permit {
            policy_ids: ids(&["mcp-read-only-tools"])
        }
    );

    // approval
    let once = GrantShape::Once;
    let hour = 3_600_000;
    assert_eq!(
        approval(outcome(
            &p,
            "db.write",
            classified("Table", "salaries", Restricted)
        )),
        (
            ids(&["restricted-writes-need-review"]),
            vec![("restricted-writes-need-review".into(), 1)],
            once,
            hour
        )
    );
    assert_eq!(
        approval(outcome(&p, "db.export", res("Database", "prod"))),
        (
            ids(&["exports-need-review"]),
            vec![("exports-need-review".into(), 1)],
            once,
            hour
        )
    );
    assert_eq!(
        approval(outcome(
            &p,
            "db.export",
            classified("Table", "customers", Confidential)
        ))
        .1,
        vec![
            ("exports-need-review".into(), 1),
            ("sensitive-exports-need-two-reviewers".into(), 2)
        ]
    );
    for action in ["db.ddl", "db.unknown"] {
        assert_eq!(
            approval(outcome(&p, action, res("Database", "prod"))).1,
            vec![("ddl-and-unknown-need-review".into(), 1)]
        );
    }
    assert_eq!(
        approval(outcome(
            &p,
            "db.destructive",
            classified("Table", "logs", Internal)
        ))
        .1,
        vec![("destructive-needs-review".into(), 1)]
    );
    assert_eq!(
        approval(outcome(&p, "db.privilege", res("Database", "staging"))).1,
        vec![("privilege-needs-two-reviewers".into(), 2)]
    );
    assert_eq!(
        approval(outcome(&p, "exec", res("Host", "build-1"))),
        (
            ids(&["exec-on-hosts-needs-two-reviewers"]),
            vec![("exec-on-hosts-needs-two-reviewers".into(), 2)],
            once,
            hour
        )
    );
    let (_, _, grant, timeout) = approval(outcome(&p, "deploy", res("Service", "web")));
    assert_eq!(grant, GrantShape::Window { ms: 900_000 });
    assert_eq!(timeout, 1_800_000);
    assert_eq!(
        approval(outcome(&p, "mcp.call", res("Tool", "delete_repo"))).1,
        vec![("mcp-other-tools-need-review".into(), 1)]
    );

    // deny: forbid
    assert_eq!(
        outcome(
            &p,
            "db.destructive",
            classified("Table", "salaries", Restricted)
        ),
        PolicyOutcome::Forbid {
            policy_ids: ids(&["no-destroying-restricted-data"])
        }
    );
    assert_eq!(
        outcome(
            &p,
            "db.privilege",
            child("Table", "users", "Database", "prod")
        ),
        PolicyOutcome::Forbid {
            policy_ids: ids(&["no-agent-privilege-changes-on-prod"])
        }
    );

    // deny: nothing matches
    assert_eq!(
        outcome(&p, "http.request", res("Endpoint", "billing")),
        PolicyOutcome::NoMatch
    );
    assert_eq!(
        outcome(&p, "exec", res("Service", "web")),
        PolicyOutcome::NoMatch
    );
    let alice = user("alice@example.com", &["reviewers"]);
    assert_eq!(
        p.evaluate(
            &alice,
            &attempt(&alice, "db.read", vec![res("Database", "prod")])
        ),
        PolicyOutcome::NoMatch
    );

    // error: an action the schema does not know
    assert!(matches!(
        outcome(&p, "payments.refund", res("Database", "prod")),
        PolicyOutcome::Error { .. }
    ));
}
