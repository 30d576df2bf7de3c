//! The decision order through `evaluate`, one step at a time, and multi-resource combining.

use crate::common::*;
use countersign_core::{Classification, GrantShape, PolicyOutcome};
use countersign_policy::LoadedPolicies;

const POLICIES: &str = r#"
@id("p-read")
permit (principal in Group::"agents", action == Action::"db.read", resource);

@id("f-restricted")
forbid (principal, action, resource)
when { resource has classification && resource.classification == "restricted" };

@id("a-export")
@approval("owners")
@quorum("2")
@grant("15m")
@timeout("2h")
permit (principal in Group::"agents", action == Action::"db.export", resource);

@id("a-export-prod")
@approval("security, owners")
@grant("5m")
@timeout("30m")
permit (principal in Group::"agents", action == Action::"db.export", resource in Database::"prod");

@id("p-export-tables")
permit (principal in Group::"agents", action == Action::"db.export", resource is Table);

@id("p-write-tables")
permit (principal in Group::"agents", action == Action::"db.write", resource is Table);

@id("count-check")
permit (principal, action == Action::"deploy", resource)
when { context.resource_count * 9223372036854775807 > 0 };

@id("ddl-with-ticket")
permit (principal, action == Action::"db.ddl", resource)
when { context.has_justification && context has ticket && context.ticket like "CHG-*" };

@id("on-behalf-of-alice")
permit (principal is Agent, action == Action::"db.unknown", resource)
when { context has on_behalf_of && context.on_behalf_of == User::"alice" };
"#;

fn set() -> LoadedPolicies {
    load(&[("main.cedar", POLICIES)]).expect("test policies load")
}

fn etl() -> countersign_core::Principal {
    agent("etl", &["agents"])
}

#[test]
fn step1_forbid_beats_a_matching_permit() {
    let p = set();
    let a = attempt(
        &etl(),
        "db.read",
        vec![classified("Table", "salaries", Classification::Restricted)],
    );
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Forbid {
            policy_ids: ids(&["f-restricted"])
        }
    );
}

#[test]
fn step3_approval_carries_the_annotations() {
    let p = set();
    let a = attempt(&etl(), "db.export", vec![res("Database", "dev")]);
    let PolicyOutcome::Approval {
        policy_ids,
        requirements,
    } = p.evaluate(&etl(), &a)
    else {
        panic!("expected approval");
    };
    assert_eq!(policy_ids, ids(&["a-export"]));
    assert_eq!(requirements.rules.len(), 1);
    assert_eq!(requirements.rules[0].policy_id, "a-export");
    assert_eq!(requirements.rules[0].quorum, 2);
    assert_eq!(requirements.rules[0].groups, ["owners".to_string()].into());
    assert_eq!(requirements.grant, GrantShape::Window { ms: 900_000 });
    assert_eq!(requirements.timeout_ms, 7_200_000);
}

#[test]
fn step3_several_approval_policies_combine_and_plain_permits_do_not_dilute() {
    let p = set();
    // A table in prod: a-export, a-export-prod and the plain p-export-tables all match.
    let a = attempt(
        &etl(),
        "db.export",
        vec![child("Table", "orders", "Database", "prod")],
    );
    let PolicyOutcome::Approval {
        policy_ids,
        requirements,
    } = p.evaluate(&etl(), &a)
    else {
        panic!("expected approval");
    };
    assert_eq!(policy_ids, ids(&["a-export", "a-export-prod"]));
    let rules: Vec<(&str, u32)> = requirements
        .rules
        .iter()
        .map(|r| (r.policy_id.as_str(), r.quorum))
        .collect();
    assert_eq!(rules, vec![("a-export", 2), ("a-export-prod", 1)]);
    assert_eq!(
        requirements.rules[1].groups,
        ["owners".to_string(), "security".to_string()].into()
    );
    assert_eq!(requirements.grant, GrantShape::Window { ms: 300_000 });
    assert_eq!(requirements.timeout_ms, 1_800_000);
}

#[test]
fn step4_plain_permit() {
    let p = set();
    let a = attempt(&etl(), "db.read", vec![res("Database", "dev")]);
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Permit {
            policy_ids: ids(&["p-read"])
        }
    );
}

#[test]
fn step5_no_match_is_default_deny() {
    let p = set();
    let a = attempt(&etl(), "http.request", vec![res("Endpoint", "api")]);
    assert_eq!(p.evaluate(&etl(), &a), PolicyOutcome::NoMatch);
    // The same read by someone outside `agents` matches nothing either.
    let eve = user("eve", &["interns"]);
    let a = attempt(&eve, "db.read", vec![res("Database", "dev")]);
    assert_eq!(p.evaluate(&eve, &a), PolicyOutcome::NoMatch);
}

#[test]
fn evaluation_error_fails_closed_and_names_the_policy() {
    let p = set();
    // One resource: 1 * i64::MAX does not overflow, the permit holds.
    let one = attempt(&etl(), "deploy", vec![res("Service", "web")]);
    assert_eq!(
        p.evaluate(&etl(), &one),
        PolicyOutcome::Permit {
            policy_ids: ids(&["count-check"])
        }
    );
    // Two resources: the multiplication overflows at run time; never a permit.
    let two = attempt(
        &etl(),
        "deploy",
        vec![res("Service", "web"), res("Service", "api")],
    );
    match p.evaluate(&etl(), &two) {
        PolicyOutcome::Error { reason } => {
            assert!(reason.contains("count-check"), "{reason}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn unknown_action_and_resource_type_are_errors() {
    let p = set();
    let a = attempt(&etl(), "payments.refund", vec![res("Database", "dev")]);
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error {
            reason: "unknown action `payments.refund`".into()
        }
    );
    let a = attempt(&etl(), "db.read", vec![res("Account", "a1")]);
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error {
            reason: "unknown resource type `Account`".into()
        }
    );
    // Known to the schema, but not a resource type: principals are not acted on.
    let a = attempt(&etl(), "db.read", vec![res("User", "alice")]);
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error { .. }
    ));
    assert!(p.is_known_action("db.read"));
    assert!(!p.is_known_action("payments.refund"));
    assert!(p.is_known_resource_type("Tool"));
    assert!(!p.is_known_resource_type("User"));
    assert!(!p.is_known_resource_type("Account"));
}

#[test]
fn malformed_attempts_are_errors() {
    let p = set();
    // A parent the schema does not allow.
    let a = attempt(&etl(), "db.read", vec![child("Table", "t", "Host", "h")]);
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error { .. }
    ));
    // No resource at all.
    let a = attempt(&etl(), "db.read", vec![]);
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error { .. }
    ));
    // The attempt names someone else than the evaluated principal.
    let a = attempt(
        &agent("other", &[]),
        "db.read",
        vec![res("Database", "dev")],
    );
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error { .. }
    ));
    // A Bool attribute tag that is not a Bool.
    let a = attempt(
        &etl(),
        "db.read",
        vec![tagged(res("Tool", "t"), &["readOnlyHint=maybe"])],
    );
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Error { .. }
    ));
}

#[test]
fn several_resources_combine() {
    let p = set();
    let restricted = || classified("Table", "salaries", Classification::Restricted);
    // Any forbid wins, with every forbidding id.
    let a = attempt(
        &etl(),
        "db.read",
        vec![res("Database", "dev"), restricted()],
    );
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Forbid {
            policy_ids: ids(&["f-restricted"])
        }
    );
    // Forbid also beats a resource nothing permits.
    let a = attempt(
        &etl(),
        "db.write",
        vec![res("Database", "dev"), restricted()],
    );
    assert!(matches!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Forbid { .. }
    ));
    // One resource nothing permits denies the whole attempt.
    let a = attempt(
        &etl(),
        "db.write",
        vec![res("Table", "a"), res("Database", "dev")],
    );
    assert_eq!(p.evaluate(&etl(), &a), PolicyOutcome::NoMatch);
    // Permits on every resource: a permit naming each policy once.
    let a = attempt(
        &etl(),
        "db.write",
        vec![res("Table", "a"), res("Table", "b")],
    );
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Permit {
            policy_ids: ids(&["p-write-tables"])
        }
    );
    // Approval on one, approval and plain permit on another: approval, rules deduplicated.
    let a = attempt(
        &etl(),
        "db.export",
        vec![
            res("Database", "dev"),
            child("Table", "orders", "Database", "prod"),
            res("Table", "x"),
        ],
    );
    let PolicyOutcome::Approval {
        policy_ids,
        requirements,
    } = p.evaluate(&etl(), &a)
    else {
        panic!("expected approval");
    };
    assert_eq!(policy_ids, ids(&["a-export", "a-export-prod"]));
    let rule_ids: Vec<&str> = requirements
        .rules
        .iter()
        .map(|r| r.policy_id.as_str())
        .collect();
    assert_eq!(rule_ids, vec!["a-export", "a-export-prod"]);
}

#[test]
fn context_comes_from_the_attempt_and_cannot_be_spoofed() {
    let p = set();
    let mut a = attempt(&etl(), "db.ddl", vec![res("Database", "dev")]);
    a.justification = Some("add index for report".into());
    a.context.insert("ticket".into(), "CHG-42".into());
    a.context.insert("undeclared".into(), "ignored".into());
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Permit {
            policy_ids: ids(&["ddl-with-ticket"])
        }
    );
    // No justification: the context map cannot claim one.
    let mut b = a.clone();
    b.justification = Some("   ".into());
    b.context.insert("has_justification".into(), "true".into());
    b.context.insert("justification".into(), "forged".into());
    assert_eq!(p.evaluate(&etl(), &b), PolicyOutcome::NoMatch);
    // Wrong ticket shape.
    let mut c = a.clone();
    c.context.insert("ticket".into(), "whatever".into());
    assert_eq!(p.evaluate(&etl(), &c), PolicyOutcome::NoMatch);
}

#[test]
fn on_behalf_of_is_a_user_in_context() {
    let p = set();
    let mut a = attempt(&etl(), "db.unknown", vec![res("Database", "dev")]);
    assert_eq!(p.evaluate(&etl(), &a), PolicyOutcome::NoMatch);
    a.on_behalf_of = Some("alice".into());
    assert_eq!(
        p.evaluate(&etl(), &a),
        PolicyOutcome::Permit {
            policy_ids: ids(&["on-behalf-of-alice"])
        }
    );
    a.on_behalf_of = Some("mallory".into());
    assert_eq!(p.evaluate(&etl(), &a), PolicyOutcome::NoMatch);
}

#[test]
fn loaded_policies_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<LoadedPolicies>();
}

/// A principal and what it attempts.
type Asked = (countersign_core::Principal, countersign_core::Attempt);

/// Remembered outcomes (see `memo.rs`) are shared only by attempts that evaluation cannot tell
/// apart: for each pair below, differing in one thing evaluation reads, the outcomes differ,
/// and asking one policy set for both, in turns and repeatedly, gives each its own outcome as a
/// fresh set gives it. Attempts that differ only in their payload share one.
#[test]
fn remembered_outcomes_never_cross_attempts_evaluation_tells_apart() {
    let read = |p: &countersign_core::Principal, r| attempt(p, "db.read", vec![r]);
    let ddl = |justification: Option<&str>, ticket: &str| {
        let mut a = attempt(&etl(), "db.ddl", vec![res("Database", "dev")]);
        a.justification = justification.map(str::to_owned);
        a.context.insert("ticket".into(), ticket.into());
        a
    };
    let on_behalf = |who: &str| {
        let mut a = attempt(&etl(), "db.unknown", vec![res("Database", "dev")]);
        a.on_behalf_of = Some(who.into());
        a
    };
    let export = |db: &str| {
        attempt(
            &etl(),
            "db.export",
            vec![child("Table", "t", "Database", db)],
        )
    };
    let lone_etl = agent("etl", &[]);
    let etl_user = user("etl", &["agents"]);
    let mut alice_agent = on_behalf("alice");
    alice_agent.principal = etl_user.reference();
    let pairs: Vec<(&str, Asked, Asked)> = vec![
        (
            "groups",
            (etl(), read(&etl(), res("Database", "dev"))),
            (lone_etl.clone(), read(&lone_etl, res("Database", "dev"))),
        ),
        (
            "classification",
            (etl(), read(&etl(), res("Database", "dev"))),
            (
                etl(),
                read(
                    &etl(),
                    classified("Database", "dev", Classification::Restricted),
                ),
            ),
        ),
        (
            "justification",
            (etl(), ddl(Some("add an index"), "CHG-1")),
            (etl(), ddl(None, "CHG-1")),
        ),
        (
            "context",
            (etl(), ddl(Some("add an index"), "CHG-1")),
            (etl(), ddl(Some("add an index"), "OPS-1")),
        ),
        (
            "on behalf of",
            (etl(), on_behalf("alice")),
            (etl(), on_behalf("bob")),
        ),
        (
            "principal kind",
            (etl(), on_behalf("alice")),
            (etl_user, alice_agent),
        ),
        (
            "parent",
            (etl(), export("prod")),
            (etl(), export("staging")),
        ),
    ];
    let shared = set();
    for (what, a, b) in &pairs {
        let fresh_a = set().evaluate(&a.0, &a.1);
        let fresh_b = set().evaluate(&b.0, &b.1);
        assert_ne!(fresh_a, fresh_b, "{what}: the pair must decide differently");
        for _ in 0..3 {
            assert_eq!(shared.evaluate(&a.0, &a.1), fresh_a, "{what}");
            assert_eq!(shared.evaluate(&b.0, &b.1), fresh_b, "{what}");
        }
    }
    // The payload is not read: another statement of the same shape gets the same outcome.
    let mut other = read(&etl(), res("Database", "dev"));
    other.payload = serde_json::json!("SELECT 2");
    assert_eq!(
        shared.evaluate(&etl(), &other),
        set().evaluate(&etl(), &read(&etl(), res("Database", "dev")))
    );
}
