//! Differential test: the sliced evaluator against a plain Cedar call on the whole set (with
//! schema-validated request and entities and Cedar's own transitive closure). Slicing and the
//! entity-store shortcut must never change a decision or the policies behind it.

use crate::common::*;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema,
};
use countersign_core::{Attempt, Classification, PolicyOutcome, Principal, Resource};
use countersign_policy::{BUILTIN_SCHEMA, LoadedPolicies};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

const ACTIONS: &[&str] = countersign_core::attempt::BUILTIN_ACTIONS;

fn policies() -> String {
    let principals = [
        "principal",
        "principal in Group::\"agents\"",
        "principal in Group::\"ops\"",
        "principal is Agent",
        "principal is User in Group::\"ops\"",
        "principal == User::\"alice\"",
    ];
    let resources = [
        "resource",
        "resource in Database::\"prod\"",
        "resource is Table",
        "resource is Table in Database::\"dev\"",
        "resource == Host::\"build-1\"",
        "resource is Tool",
        "resource is Endpoint",
    ];
    let conditions = [
        "",
        "when { resource has classification && resource.classification == \"restricted\" }",
        "when { context.has_justification }",
        "unless { context has ticket }",
        "when { resource has tags && resource.tags.contains(\"pii\") }",
        "when { context has on_behalf_of && context.on_behalf_of == User::\"alice\" }",
        "when { context.resource_count > 0 && principal in Group::\"agents\" }",
    ];
    let mut out = String::new();
    for i in 0..80 {
        let action = match i % 6 {
            0 => "action".to_owned(),
            1 => format!(
                "action in [Action::\"{}\", Action::\"{}\"]",
                ACTIONS[i % ACTIONS.len()],
                ACTIONS[(i + 5) % ACTIONS.len()]
            ),
            _ => format!("action == Action::\"{}\"", ACTIONS[i % ACTIONS.len()]),
        };
        let effect = if i % 7 == 3 { "forbid" } else { "permit" };
        let approval = if effect == "permit" && i % 3 == 1 {
            format!("@approval(\"g{}\")\n", i % 4)
        } else {
            String::new()
        };
        let condition = if i % 11 == 5 {
            "when { resource has readOnlyHint && resource.readOnlyHint }"
        } else if i % 6 == 0 {
            // Policies for every action always carry a condition, so that some requests
            // match nothing.
            conditions[1 + i % (conditions.len() - 1)]
        } else {
            conditions[i % conditions.len()]
        };
        // `resource is Tool` with the hint condition only makes sense together.
        let resource = if i % 11 == 5 {
            "resource is Tool"
        } else {
            resources[(i / 2) % resources.len()]
        };
        out.push_str(&format!(
            "@id(\"p{i}\")\n{approval}{effect} ({}, {action}, {resource})\n{condition};\n\n",
            principals[(i / 3) % principals.len()],
        ));
    }
    out
}

fn resources() -> Vec<Resource> {
    let mut out = vec![
        res("Database", "prod"),
        res("Database", "dev"),
        child("Table", "orders", "Database", "prod"),
        child("Table", "scratch", "Database", "dev"),
        res("Table", "loose"),
        res("Host", "build-1"),
        res("Host", "build-2"),
        child("Tool", "search", "McpServer", "tools"),
        tagged(res("Tool", "read"), &["readOnlyHint=true"]),
        tagged(res("Tool", "write"), &["readOnlyHint=false", "pii"]),
        res("Endpoint", "api"),
        res("Service", "web"),
    ];
    let extra: Vec<Resource> = out
        .iter()
        .take(5)
        .map(|r| {
            let mut r = tagged(r.clone(), &["pii"]);
            r.classification = Some(Classification::Restricted);
            r
        })
        .collect();
    out.extend(extra);
    out
}

fn principals() -> Vec<Principal> {
    vec![
        agent("etl", &["agents"]),
        agent("ops-bot", &["agents", "ops"]),
        agent("lonely", &[]),
        user("alice", &["ops"]),
        user("bob", &["reviewers"]),
    ]
}

/// What a plain Cedar call on the whole set says, in `PolicyOutcome` terms.
fn reference(
    schema: &Schema,
    set: &PolicySet,
    loaded: &LoadedPolicies,
    principal: &Principal,
    attempt: &Attempt,
) -> PolicyOutcome {
    let uid = |t: &str, id: &str| EntityUid::from_str(&format!("{t}::{id:?}")).expect("uid");
    let puid = uid(principal.kind.entity_type(), &principal.id);
    let groups: HashSet<EntityUid> = principal.groups.iter().map(|g| uid("Group", g)).collect();
    let r = &attempt.resources[0];
    let ruid = uid(&r.kind, &r.id);
    let parents: HashSet<EntityUid> = r.parent.iter().map(|p| uid(&p.kind, &p.id)).collect();
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
    for t in &r.tags {
        if let Some(v) = t.strip_prefix("readOnlyHint=") {
            attrs.insert(
                "readOnlyHint".to_owned(),
                RestrictedExpression::new_bool(v == "true"),
            );
        }
    }
    let entities = Entities::from_entities(
        [
            Entity::new_no_attrs(puid.clone(), groups),
            Entity::new(ruid.clone(), attrs, parents).expect("resource entity"),
        ],
        Some(schema),
    )
    .expect("entities conform to the schema");
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
    if let Some(j) = &attempt.justification {
        ctx.push((
            "justification".to_owned(),
            RestrictedExpression::new_string(j.clone()),
        ));
    }
    if let Some(u) = &attempt.on_behalf_of {
        ctx.push((
            "on_behalf_of".to_owned(),
            RestrictedExpression::new_entity_uid(uid("User", u)),
        ));
    }
    for key in ["ticket", "gate", "source"] {
        if let Some(v) = attempt.context.get(key) {
            ctx.push((key.to_owned(), RestrictedExpression::new_string(v.clone())));
        }
    }
    let action = uid("Action", attempt.action.as_str());
    let request = Request::new(
        puid,
        action,
        ruid,
        Context::from_pairs(ctx).expect("context"),
        Some(schema),
    )
    .expect("request conforms to the schema");
    let response = Authorizer::new().is_authorized(&request, set, &entities);
    assert_eq!(response.diagnostics().errors().count(), 0);
    let ids: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(|id| {
            // The reference set keeps Cedar's `policyN` ids; map them to the `@id`s.
            set.policy(id)
                .and_then(|p| p.annotation("id"))
                .expect("every generated policy has an @id")
                .to_owned()
        })
        .collect();
    let ids: Vec<String> = ids.into_iter().collect();
    match response.decision() {
        Decision::Deny if ids.is_empty() => PolicyOutcome::NoMatch,
        Decision::Deny => PolicyOutcome::Forbid { policy_ids: ids },
        Decision::Allow => {
            let approvals: Vec<String> = ids
                .iter()
                .filter(|id| loaded.policy(id).is_some_and(|p| p.requirements.is_some()))
                .cloned()
                .collect();
            if approvals.is_empty() {
                PolicyOutcome::Permit { policy_ids: ids }
            } else {
                // Requirements are compared separately below; only ids matter here.
                PolicyOutcome::Approval {
                    policy_ids: approvals,
                    requirements: countersign_core::Requirements::new(
                        Vec::new(),
                        countersign_core::GrantShape::Once,
                        0,
                    ),
                }
            }
        }
    }
}

fn strip_requirements(o: PolicyOutcome) -> PolicyOutcome {
    match o {
        PolicyOutcome::Approval {
            policy_ids,
            requirements,
        } => {
            let rule_ids: Vec<&str> = requirements
                .rules
                .iter()
                .map(|r| r.policy_id.as_str())
                .collect();
            assert_eq!(rule_ids, policy_ids, "one rule per approval policy");
            PolicyOutcome::Approval {
                policy_ids,
                requirements: countersign_core::Requirements::new(
                    Vec::new(),
                    countersign_core::GrantShape::Once,
                    0,
                ),
            }
        }
        other => other,
    }
}

#[test]
fn sliced_evaluation_agrees_with_plain_cedar() {
    let text = policies();
    let loaded = LoadedPolicies::from_sources(&[("gen.cedar", &text)]).unwrap();
    let schema = Schema::from_str(BUILTIN_SCHEMA).unwrap();
    let set = PolicySet::from_str(&text).unwrap();
    let mut seen = BTreeSet::new();
    let mut checked = 0;
    for principal in principals() {
        for action in ACTIONS {
            for resource in resources() {
                for variant in 0..4 {
                    let mut a = attempt(&principal, action, vec![resource.clone()]);
                    if variant & 1 == 1 {
                        a.justification = Some("why".into());
                        a.context.insert("ticket".into(), "CHG-1".into());
                    }
                    if variant & 2 == 2 {
                        a.on_behalf_of = Some("alice".into());
                    }
                    let ours = strip_requirements(loaded.evaluate(&principal, &a));
                    let theirs = reference(&schema, &set, &loaded, &principal, &a);
                    assert_eq!(
                        ours, theirs,
                        "{principal:?} {action} {resource:?} {variant}"
                    );
                    seen.insert(match ours {
                        PolicyOutcome::Forbid { .. } => "forbid",
                        PolicyOutcome::Approval { .. } => "approval",
                        PolicyOutcome::Permit { .. } => "permit",
                        PolicyOutcome::NoMatch => "no match",
                        PolicyOutcome::Error { .. } => "error",
                    });
                    checked += 1;
                }
            }
        }
    }
    // The generated mix must exercise every verdict, or the comparison proves little.
    assert_eq!(
        seen,
        ["approval", "forbid", "no match", "permit"]
            .into_iter()
            .collect()
    );
    assert!(checked > 3000, "{checked}");
}
