//! Operator schema extensions: new actions and resource types, their own context records,
//! action groups, and broken schema files.

use crate::common::*;
use countersign_core::PolicyOutcome;
use countersign_policy::{PolicyLoadError, ProblemKind};

const SCHEMA: &str = r#"
// Payments vocabulary.
entity Account = { region?: String, tags?: Set<String>, limit?: Long };

action "payments";
action "payments.refund" in ["payments"]
  appliesTo { principal: [User, Agent], resource: [Account], context: Context };
action "payments.payout" in ["payments"]
  appliesTo {
    principal: [Agent],
    resource: [Account],
    context: { amount: Long, has_justification: Bool, currency?: String },
  };
"#;

const POLICIES: &str = r#"
@id("eu-refunds-need-finance")
@approval("finance")
permit (principal in Group::"agents", action == Action::"payments.refund", resource is Account)
when { resource has region && resource.region == "eu" };

@id("small-payouts")
permit (principal in Group::"agents", action == Action::"payments.payout", resource)
when { context.amount < 1000 && context has currency && context.currency == "EUR" };

@id("no-payments-on-frozen")
forbid (principal, action in Action::"payments", resource)
when { resource has tags && resource.tags.contains("frozen") };
"#;

fn etl() -> countersign_core::Principal {
    agent("etl", &["agents"])
}

#[test]
fn new_action_and_resource_type_load_and_evaluate() {
    let p = load(&[
        ("payments.cedar", POLICIES),
        ("payments.cedarschema", SCHEMA),
    ])
    .unwrap();
    assert!(p.is_known_action("payments.refund"));
    assert!(p.is_known_action("db.read"));
    // An action group is not something an attempt can do.
    assert!(!p.is_known_action("payments"));
    assert!(p.actions().contains("payments.payout"));
    assert!(!p.actions().contains("payments"));
    assert!(matches!(
        p.evaluate(
            &etl(),
            &attempt(&etl(), "payments", vec![res("Account", "a")])
        ),
        PolicyOutcome::Error { .. }
    ));
    assert!(p.is_known_resource_type("Account"));
    assert_eq!(p.files(), ["payments.cedar", "payments.cedarschema"]);

    let eu = tagged(res("Account", "acme"), &["region=eu"]);
    match p.evaluate(
        &etl(),
        &attempt(&etl(), "payments.refund", vec![eu.clone()]),
    ) {
        PolicyOutcome::Approval {
            policy_ids,
            requirements,
        } => {
            assert_eq!(policy_ids, ids(&["eu-refunds-need-finance"]));
            assert_eq!(
                requirements.eligible_groups(),
                ["finance".to_string()].into()
            );
        }
        other => panic!("expected approval, got {other:?}"),
    }
    let us = tagged(res("Account", "acme"), &["region=us"]);
    assert_eq!(
        p.evaluate(&etl(), &attempt(&etl(), "payments.refund", vec![us])),
        PolicyOutcome::NoMatch
    );
    // The action group reaches the refund through `action in Action::"payments"`.
    let frozen = tagged(res("Account", "acme"), &["region=eu", "frozen"]);
    assert_eq!(
        p.evaluate(&etl(), &attempt(&etl(), "payments.refund", vec![frozen])),
        PolicyOutcome::Forbid {
            policy_ids: ids(&["no-payments-on-frozen"])
        }
    );
    // Built-in actions do not apply to the new type, and vice versa.
    assert!(matches!(
        p.evaluate(&etl(), &attempt(&etl(), "db.read", vec![eu.clone()])),
        PolicyOutcome::Error { .. }
    ));
    assert!(matches!(
        p.evaluate(
            &etl(),
            &attempt(&etl(), "payments.refund", vec![res("Database", "d")])
        ),
        PolicyOutcome::Error { .. }
    ));
    // A Long attribute tag that does not parse fails closed.
    let bad = tagged(res("Account", "acme"), &["limit=lots"]);
    assert!(matches!(
        p.evaluate(&etl(), &attempt(&etl(), "payments.refund", vec![bad])),
        PolicyOutcome::Error { .. }
    ));
}

#[test]
fn an_operator_context_record_is_filled_from_the_attempt() {
    let p = load(&[
        ("payments.cedar", POLICIES),
        ("payments.cedarschema", SCHEMA),
    ])
    .unwrap();
    let payout = |amount: Option<&str>| {
        let mut a = attempt(&etl(), "payments.payout", vec![res("Account", "acme")]);
        if let Some(amount) = amount {
            a.context.insert("amount".into(), amount.into());
        }
        a.context.insert("currency".into(), "EUR".into());
        a
    };
    assert_eq!(
        p.evaluate(&etl(), &payout(Some("500"))),
        PolicyOutcome::Permit {
            policy_ids: ids(&["small-payouts"])
        }
    );
    assert_eq!(
        p.evaluate(&etl(), &payout(Some("5000"))),
        PolicyOutcome::NoMatch
    );
    // Not a number, or missing although required: fail closed.
    for bad in [payout(Some("five")), payout(None)] {
        match p.evaluate(&etl(), &bad) {
            PolicyOutcome::Error { reason } => assert!(reason.contains("amount"), "{reason}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    // Payouts are for agents only.
    let alice = user("alice", &["agents"]);
    let mut a = payout(Some("1"));
    a.principal = alice.reference();
    assert!(matches!(
        p.evaluate(&alice, &a),
        PolicyOutcome::Error { .. }
    ));
}

#[test]
fn broken_schema_files_are_refused_with_their_name() {
    let e = load(&[
        ("a.cedar", POLICIES),
        ("good.cedarschema", SCHEMA),
        ("typo.cedarschema", "\nentity Ledger = { owner: Strng };\n"),
    ])
    .unwrap_err();
    let p = &e.problems()[0];
    assert_eq!(p.kind, ProblemKind::Schema, "{e}");
    assert_eq!(p.file, "typo.cedarschema", "{e}");
    assert_eq!(p.line, Some(2), "{e}");

    let e = load(&[("a.cedar", POLICIES), ("bad.cedarschema", "entity ;")]).unwrap_err();
    let p = &e.problems()[0];
    assert_eq!(p.kind, ProblemKind::Schema);
    assert_eq!(p.file, "bad.cedarschema");
    assert_eq!(p.line, Some(1));

    let e = load(&[
        ("a.cedar", POLICIES),
        ("ns.cedarschema", "namespace Pay { entity Account; }"),
    ])
    .unwrap_err();
    assert_eq!(e.problems()[0].file, "ns.cedarschema");

    // Redeclaring a built-in type conflicts with the built-in schema.
    let e = load(&[
        (
            "a.cedar",
            "@id(\"r\") permit (principal, action == Action::\"db.read\", resource);",
        ),
        ("dup.cedarschema", "entity Database;"),
    ])
    .unwrap_err();
    assert!(matches!(e, PolicyLoadError::Invalid(_)));
    assert_eq!(e.problems()[0].kind, ProblemKind::Schema);
    assert!(e.to_string().contains("dup.cedarschema"), "{e}");

    // Policies using the vocabulary of a refused schema are not silently accepted.
    assert!(load(&[("a.cedar", POLICIES)]).is_err());
}

#[test]
fn a_resource_inside_the_principal_sees_the_principals_groups() {
    // The resource's parent is the principal itself, so the hierarchy is two levels deep
    // inside one request: evaluation must close it (Vault in Agent in Group).
    let schema = r#"
entity Vault in [Agent];
action "vault.open" appliesTo { principal: [Agent], resource: [Vault], context: Context };
"#;
    let policy = r#"
@id("own-team-vaults")
permit (principal, action == Action::"vault.open", resource in Group::"ops");
"#;
    let p = load(&[("v.cedar", policy), ("v.cedarschema", schema)]).unwrap();
    let a = agent("robot", &["ops"]);
    let inside = child("Vault", "v1", "Agent", "robot");
    assert_eq!(
        p.evaluate(&a, &attempt(&a, "vault.open", vec![inside])),
        PolicyOutcome::Permit {
            policy_ids: ids(&["own-team-vaults"])
        }
    );
    let elsewhere = child("Vault", "v2", "Agent", "someone-else");
    assert_eq!(
        p.evaluate(&a, &attempt(&a, "vault.open", vec![elsewhere])),
        PolicyOutcome::NoMatch
    );
}
