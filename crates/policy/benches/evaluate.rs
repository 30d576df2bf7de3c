//! Decision latency with 100 generated policies: `LoadedPolicies::evaluate` against a naive
//! Cedar call (one unsliced policy set, schema-validated request and entities built per call).
//!
//! Run with `cargo bench -p countersign-policy`; prints median and p99 per decision.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
    Schema,
};
use countersign_core::{
    Action, Attempt, Classification, Principal, PrincipalKind, Resource, ResourceRef,
};
use countersign_policy::{BUILTIN_SCHEMA, LoadedPolicies};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

const ACTIONS: &[&str] = countersign_core::attempt::BUILTIN_ACTIONS;
const POLICIES: usize = 100;
const DECISIONS: usize = 100_000;

fn generate(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let forbid = i % 10 == 9;
        out.push_str(&format!("@id(\"p{i}\")\n"));
        if !forbid && i % 3 == 0 {
            out.push_str(&format!(
                "@approval(\"reviewers, g{}\")\n@quorum(\"{}\")\n@grant(\"{}\")\n",
                i % 4,
                1 + i % 2,
                if i % 2 == 0 { "once" } else { "15m" }
            ));
        }
        let principal = match i % 3 {
            0 => format!("principal in Group::\"g{}\"", i % 7),
            1 => "principal is Agent".to_owned(),
            _ => "principal".to_owned(),
        };
        let action = if i % 13 == 12 {
            format!(
                "action in [Action::\"{}\", Action::\"{}\"]",
                ACTIONS[i % ACTIONS.len()],
                ACTIONS[(i + 3) % ACTIONS.len()]
            )
        } else {
            format!("action == Action::\"{}\"", ACTIONS[i % ACTIONS.len()])
        };
        let resource = match i % 4 {
            0 => "resource".to_owned(),
            1 => format!("resource in Database::\"db{}\"", i % 5),
            2 => "resource is Table".to_owned(),
            _ => "resource is Host".to_owned(),
        };
        let condition = match i % 5 {
            0 => "",
            1 => {
                "when { resource has classification && resource.classification == \"restricted\" }"
            }
            2 => "when { context.has_justification }",
            3 => "when { resource has tags && resource.tags.contains(\"pii\") }",
            _ => "unless { context has ticket && context.ticket like \"CHG-*\" }",
        };
        let effect = if forbid { "forbid" } else { "permit" };
        out.push_str(&format!(
            "{effect} ({principal}, {action}, {resource})\n{condition};\n\n"
        ));
    }
    out
}

fn attempts() -> Vec<(Principal, Attempt)> {
    let mut out = Vec::new();
    for i in 0..64usize {
        let kind = if i % 4 == 3 {
            PrincipalKind::User
        } else {
            PrincipalKind::Agent
        };
        let principal = Principal::new(
            kind,
            format!("principal-{i}"),
            [format!("g{}", i % 7), "agents".to_owned()],
        );
        let mut resource = match i % 3 {
            0 => Resource::new("Table", format!("t{i}")),
            1 => Resource::new("Database", format!("db{}", i % 5)),
            _ => Resource::new("Host", format!("h{i}")),
        };
        if resource.kind == "Table" {
            resource.parent = Some(ResourceRef {
                kind: "Database".into(),
                id: format!("db{}", i % 5),
            });
        }
        resource.classification = match i % 4 {
            0 => Some(Classification::Restricted),
            1 => Some(Classification::Internal),
            _ => None,
        };
        if i % 5 == 0 {
            resource.tags.insert("pii".into());
        }
        let mut context = BTreeMap::new();
        if i % 2 == 0 {
            context.insert("ticket".to_owned(), format!("CHG-{i}"));
        }
        context.insert("gate".to_owned(), "pg".to_owned());
        let attempt = Attempt {
            principal: principal.reference(),
            on_behalf_of: None,
            action: Action::parse(ACTIONS[(i * 7) % ACTIONS.len()]).expect("action"),
            resources: vec![resource],
            payload: serde_json::json!("SELECT 1"),
            justification: (i % 3 == 0).then(|| "because".to_owned()),
            context,
        };
        out.push((principal, attempt));
    }
    out
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<44} median {:>8.2} µs   p99 {:>8.2} µs   ({} decisions)",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

/// A naive decision: the whole policy set, request and entities validated against the
/// schema on every call.
fn naive(
    schema: &Schema,
    set: &PolicySet,
    authorizer: &Authorizer,
    principal: &Principal,
    attempt: &Attempt,
) -> bool {
    let puid = EntityUid::from_str(&format!(
        "{}::\"{}\"",
        principal.kind.entity_type(),
        principal.id
    ))
    .expect("principal uid");
    let parents: HashSet<EntityUid> = principal
        .groups
        .iter()
        .map(|g| EntityUid::from_str(&format!("Group::\"{g}\"")).expect("group uid"))
        .collect();
    let r = &attempt.resources[0];
    let ruid = EntityUid::from_str(&format!("{}::\"{}\"", r.kind, r.id)).expect("resource uid");
    let mut rparents = HashSet::new();
    if let Some(p) = &r.parent {
        rparents.insert(EntityUid::from_str(&format!("{}::\"{}\"", p.kind, p.id)).expect("uid"));
    }
    let mut attrs = HashMap::new();
    if let Some(c) = r.classification {
        attrs.insert(
            "classification".to_owned(),
            RestrictedExpression::new_string(c.as_str().to_owned()),
        );
    }
    attrs.insert(
        "tags".to_owned(),
        RestrictedExpression::new_set(
            r.tags
                .iter()
                .map(|t| RestrictedExpression::new_string(t.clone())),
        ),
    );
    let entities = Entities::from_entities(
        [
            Entity::new_no_attrs(puid.clone(), parents),
            Entity::new(ruid.clone(), attrs, rparents).expect("entity"),
        ],
        Some(schema),
    )
    .expect("entities");
    let action = EntityUid::from_str(&format!("Action::\"{}\"", attempt.action)).expect("action");
    let mut ctx = vec![
        (
            "has_justification".to_owned(),
            RestrictedExpression::new_bool(attempt.justification.is_some()),
        ),
        (
            "resource_count".to_owned(),
            RestrictedExpression::new_long(1),
        ),
    ];
    if let Some(t) = attempt.context.get("ticket") {
        ctx.push((
            "ticket".to_owned(),
            RestrictedExpression::new_string(t.clone()),
        ));
    }
    let context = Context::from_pairs(ctx).expect("context");
    let request = Request::new(puid, action, ruid, context, Some(schema)).expect("request");
    authorizer
        .is_authorized(&request, set, &entities)
        .decision()
        == cedar_policy::Decision::Allow
}

fn main() {
    let text = generate(POLICIES);
    let started = Instant::now();
    let loaded =
        LoadedPolicies::from_sources(&[("generated.cedar", &text)]).expect("generated policies");
    println!(
        "load + validate + slice {} policies: {:.1} ms",
        loaded.policy_count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let attempts = attempts();

    // Sanity: the generated mix produces every kind of outcome.
    let mut kinds = BTreeMap::new();
    for (p, a) in &attempts {
        let label = match loaded.evaluate(p, a) {
            countersign_core::PolicyOutcome::Forbid { .. } => "forbid",
            countersign_core::PolicyOutcome::Approval { .. } => "approval",
            countersign_core::PolicyOutcome::Permit { .. } => "permit",
            countersign_core::PolicyOutcome::NoMatch => "no match",
            countersign_core::PolicyOutcome::Error { .. } => "error",
        };
        *kinds.entry(label).or_insert(0) += 1;
    }
    println!("outcomes over the {} attempts: {kinds:?}", attempts.len());

    // Warm up, then measure each decision on its own.
    for (p, a) in attempts.iter().cycle().take(10_000) {
        black_box(loaded.evaluate(p, a));
    }
    let mut samples = Vec::with_capacity(DECISIONS);
    for (p, a) in attempts.iter().cycle().take(DECISIONS) {
        let t = Instant::now();
        black_box(loaded.evaluate(black_box(p), black_box(a)));
        samples.push(t.elapsed());
    }
    stats("LoadedPolicies::evaluate (sliced)", samples);

    let schema = Schema::from_str(BUILTIN_SCHEMA).expect("schema");
    let set = PolicySet::from_str(&text).expect("policy set");
    let authorizer = Authorizer::new();
    for (p, a) in attempts.iter().cycle().take(5_000) {
        black_box(naive(&schema, &set, &authorizer, p, a));
    }
    let mut samples = Vec::with_capacity(DECISIONS);
    for (p, a) in attempts.iter().cycle().take(DECISIONS) {
        let t = Instant::now();
        black_box(naive(
            &schema,
            &set,
            &authorizer,
            black_box(p),
            black_box(a),
        ));
        samples.push(t.elapsed());
    }
    stats("naive: unsliced set, schema-validated", samples);
}
