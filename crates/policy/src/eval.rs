//! Evaluation: one attempt by one principal → a [`PolicyOutcome`], failing closed.
//!
//! Each resource the attempt touches is one Cedar request. Per resource: a matching `forbid`
//! gives Forbid (its ids), no matching policy gives NoMatch, matching permits give Permit, or
//! Approval when any of them carries `@approval`. Across resources: any evaluation error →
//! Error; else any Forbid → Forbid (every forbidding id); else any NoMatch → NoMatch (default
//! deny); else any Approval → Approval (the requirements of every approval policy that matched,
//! combined); else Permit. Id lists are sorted and deduplicated. An Approval names only the
//! policies that carry approval annotations; a Permit every permit that matched.
//!
//! # Speed
//!
//! The set is sliced at load time by request environment — (principal type, action, resource
//! type) — using Cedar's typechecker (`Policy::get_valid_request_envs`): a slice holds only the
//! policies that are not trivially false in that environment, so a request evaluates a handful
//! of policies instead of all. Leaving a policy out cannot change a decision: Cedar types it
//! `False` there, so it could never be satisfied (at most it could error, and an erroring
//! policy is never satisfied either). This needs the request data to honour the schema, which
//! evaluation ensures by construction: principal and resource types are checked against the
//! action's `appliesTo`, parents against the declared membership, attributes and context are
//! filled only with their declared types. That is also why entities and requests are built
//! without Cedar's schema validation, which would add a few microseconds to every request.
//!
//! Building the entities and the context and running Cedar for each resource still costs
//! tens of microseconds a decision (about 30 µs for a table read through the PostgreSQL gate),
//! so outcomes are remembered per policy set (`memo.rs`): a hit costs a hash of the attempt
//! without its payload, a short lock and a comparison.

use crate::load::LoadedPolicies;
use crate::schema::{ActionVocab, AttrType, EntityVocab, RESERVED_CONTEXT, Vocabulary};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicySet, Request, RestrictedExpression,
};
use countersign_core::{Attempt, PolicyOutcome, Principal, PrincipalKind, Requirements, Resource};
use std::collections::{BTreeSet, HashMap, HashSet};

/// The policy set cut by request environment.
#[derive(Debug, Default)]
pub(crate) struct Slices {
    /// action → [Agent, User] → resource type → the policies that may match there.
    by_action: HashMap<String, [HashMap<String, PolicySet>; 2]>,
}

fn kind_index(kind: PrincipalKind) -> usize {
    match kind {
        PrincipalKind::Agent => 0,
        PrincipalKind::User => 1,
    }
}

impl Slices {
    pub(crate) fn build<'a>(
        vocab: &Vocabulary,
        policies: impl Iterator<Item = &'a Policy>,
    ) -> Result<Slices, String> {
        let mut slices = Slices::default();
        let kind_of = |principal_type: &str| match principal_type {
            "Agent" => Some(0),
            "User" => Some(1),
            _ => None,
        };
        // Every environment gets a slice, empty ones included: an empty slice is NoMatch,
        // a missing one means the schema does not allow the combination.
        for env in vocab.schema.request_envs() {
            let Some(k) = kind_of(&env.principal().to_string()) else {
                continue;
            };
            slices
                .by_action
                .entry(env.action().id().unescaped().to_owned())
                .or_default()[k]
                .entry(env.resource().to_string())
                .or_default();
        }
        for policy in policies {
            for env in policy.get_valid_request_envs(&vocab.schema) {
                let Some(k) = kind_of(&env.principal().to_string()) else {
                    continue;
                };
                let set = slices
                    .by_action
                    .get_mut(env.action().id().unescaped())
                    .and_then(|per_kind| per_kind[k].get_mut(&env.resource().to_string()));
                if let Some(set) = set {
                    // Ids are unique, so this cannot fail; if it did, a slice would silently
                    // lack a policy (perhaps a forbid), so the whole set is refused instead.
                    set.add(policy.clone())
                        .map_err(|e| format!("policy `{}`: {e}", policy.id()))?;
                }
            }
        }
        Ok(slices)
    }

    fn get(&self, action: &str, kind: PrincipalKind, resource_type: &str) -> Option<&PolicySet> {
        self.by_action.get(action)?[kind_index(kind)].get(resource_type)
    }
}

/// What one resource's request found.
enum One {
    Forbid(Vec<String>),
    NoMatch,
    Permit(Vec<String>),
}

impl LoadedPolicies {
    /// Evaluates `attempt` by `principal` (the authenticated principal with its groups).
    ///
    /// Never panics and never permits on failure: an unknown action or resource type, a
    /// request the schema does not allow, or a policy that errors gives
    /// [`PolicyOutcome::Error`] with the reason.
    ///
    /// Outcomes are remembered for attempts that evaluation cannot tell apart (see `memo`).
    pub fn evaluate(&self, principal: &Principal, attempt: &Attempt) -> PolicyOutcome {
        self.memo.outcome(principal, attempt, || {
            match self.try_evaluate(principal, attempt) {
                Ok(outcome) => outcome,
                Err(reason) => PolicyOutcome::Error { reason },
            }
        })
    }

    fn try_evaluate(
        &self,
        principal: &Principal,
        attempt: &Attempt,
    ) -> Result<PolicyOutcome, String> {
        if attempt.principal != principal.reference() {
            return Err(format!(
                "attempt names principal {} but was evaluated for {}",
                attempt.principal,
                principal.reference()
            ));
        }
        if attempt.resources.is_empty() {
            return Err("the attempt touches no resource".into());
        }
        let action_name = attempt.action.as_str();
        let action = self
            .vocab
            .actions
            .get(action_name)
            .ok_or_else(|| format!("unknown action `{action_name}`"))?;
        if action.principal_types.is_empty() || action.resource_types.is_empty() {
            return Err(format!(
                "action `{action_name}` applies to nothing in the schema (an action group?)"
            ));
        }
        let principal_type = principal.kind.entity_type();
        if !action.principal_types.contains(principal_type) {
            return Err(format!(
                "action `{action_name}` does not apply to principal type `{principal_type}`"
            ));
        }
        let principal_entity = self.principal_entity(principal)?;
        let principal_uid = principal_entity.uid();
        let context = context(&self.names, action, attempt)?;

        let mut forbids = BTreeSet::new();
        let mut permits = BTreeSet::new();
        let mut no_match = false;
        for resource in &attempt.resources {
            let rtype = self.resource_vocab(resource)?;
            let slice = self
                .slices
                .get(action_name, principal.kind, &resource.kind)
                .ok_or_else(|| {
                    format!(
                        "action `{action_name}` does not apply to resource type `{}` (it applies to {})",
                        resource.kind,
                        crate::schema::list(&action.resource_types)
                    )
                })?;
            let resource_entity = self.resource_entity(rtype, resource)?;
            let resource_uid = resource_entity.uid();
            let mut entities = vec![principal_entity.clone(), resource_entity];
            if let Some(action_entity) = &action.entity {
                entities.push(action_entity.clone());
            }
            let entities = entity_store(entities)
                .map_err(|e| format!("cannot build entities for {resource_uid}: {e}"))?;
            let request = Request::new(
                principal_uid.clone(),
                action.uid.clone(),
                resource_uid.clone(),
                context.clone(),
                None,
            )
            .map_err(|e| format!("cannot build the request for {resource_uid}: {e}"))?;
            match evaluate_one(&self.authorizer, &request, slice, &entities, &resource_uid)? {
                One::Forbid(ids) => forbids.extend(ids),
                One::NoMatch => no_match = true,
                One::Permit(ids) => permits.extend(ids),
            }
        }

        if !forbids.is_empty() {
            return Ok(PolicyOutcome::Forbid {
                policy_ids: forbids.into_iter().collect(),
            });
        }
        if no_match {
            return Ok(PolicyOutcome::NoMatch);
        }
        let approvals: Vec<(&String, &Requirements)> = permits
            .iter()
            .filter_map(|id| {
                let r = self.policies.get(id)?.requirements.as_ref()?;
                Some((id, r))
            })
            .collect();
        if approvals.is_empty() {
            return Ok(PolicyOutcome::Permit {
                policy_ids: permits.into_iter().collect(),
            });
        }
        let policy_ids = approvals.iter().map(|(id, _)| (*id).clone()).collect();
        match Requirements::combine(approvals.into_iter().map(|(_, r)| r.clone())) {
            Some(requirements) => Ok(PolicyOutcome::Approval {
                policy_ids,
                requirements,
            }),
            None => Err("internal error: approval policies without requirements".into()),
        }
    }

    fn resource_vocab(&self, resource: &Resource) -> Result<&EntityVocab, String> {
        if !self.vocab.resource_types.contains(&resource.kind) {
            return Err(format!("unknown resource type `{}`", resource.kind));
        }
        self.vocab
            .entity_types
            .get(&resource.kind)
            .ok_or_else(|| format!("unknown resource type `{}`", resource.kind))
    }

    fn principal_entity(&self, principal: &Principal) -> Result<Entity, String> {
        let types = &self.names;
        let ty = match principal.kind {
            PrincipalKind::Agent => &types.agent,
            PrincipalKind::User => &types.user,
        };
        let uid = EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(&principal.id));
        let parents: HashSet<EntityUid> = principal
            .groups
            .iter()
            .map(|g| EntityUid::from_type_name_and_id(types.group.clone(), EntityId::new(g)))
            .collect();
        Ok(Entity::new_no_attrs(uid, parents))
    }

    fn resource_entity(&self, vocab: &EntityVocab, resource: &Resource) -> Result<Entity, String> {
        let uid = EntityUid::from_type_name_and_id(vocab.name.clone(), EntityId::new(&resource.id));
        let mut parents = HashSet::new();
        if let Some(parent) = &resource.parent {
            if !vocab.ancestors.contains(&parent.kind) {
                return Err(format!(
                    "{} cannot be in {}: the schema does not let `{}` be a member of `{}`",
                    resource.reference(),
                    parent,
                    resource.kind,
                    parent.kind
                ));
            }
            let parent_type = self
                .vocab
                .entity_types
                .get(&parent.kind)
                .ok_or_else(|| format!("unknown entity type `{}`", parent.kind))?;
            parents.insert(EntityUid::from_type_name_and_id(
                parent_type.name.clone(),
                EntityId::new(&parent.id),
            ));
        }
        let mut attrs = HashMap::new();
        for attr in &vocab.attrs {
            let value = match (attr.name.as_str(), &attr.ty) {
                ("classification", AttrType::String) => resource
                    .classification
                    .map(|c| RestrictedExpression::new_string(c.as_str().to_owned())),
                ("tags", AttrType::SetOfString) => Some(RestrictedExpression::new_set(
                    resource
                        .tags
                        .iter()
                        .map(|t| RestrictedExpression::new_string(t.clone())),
                )),
                ("classification" | "tags", _) => None,
                (name, ty) => attribute_tag(resource, name)
                    .map(|text| typed(text, ty))
                    .transpose()
                    .map_err(|e| format!("{}: tag `{name}=…`: {e}", resource.reference()))?
                    .flatten(),
            };
            if let Some(value) = value {
                attrs.insert(attr.name.clone(), value);
            }
        }
        Entity::new(uid, attrs, parents)
            .map_err(|e| format!("cannot build entity {}: {e}", resource.reference()))
    }
}

/// The entity store of one request.
///
/// Cedar's public constructor recomputes the transitive closure of the hierarchy, which costs
/// more than evaluating a slice (about 5 µs of a 12 µs decision). Our stores never need it: they
/// hold the principal, the resource and possibly the action, and none of them is another's
/// parent (parents are groups, a resource's container and action groups, none of which is in
/// the store), so every ancestor set is already complete. That is checked here, and a store
/// that does not meet it goes through the public constructor instead.
///
/// This uses `cedar-policy-core` and two `#[doc(hidden)]` conversions of `cedar-policy`; were
/// they to go away in an upgrade, `Entities::from_entities(entities, None)` is the drop-in
/// replacement.
fn entity_store(entities: Vec<Entity>) -> Result<Entities, String> {
    let closed = entities.iter().all(|e| {
        let inner: &cedar_policy_core::ast::Entity = e.as_ref();
        inner.ancestors().all(|a| {
            entities
                .iter()
                .all(|other| AsRef::<cedar_policy_core::ast::Entity>::as_ref(other).uid() != a)
        })
    });
    if !closed {
        return Entities::from_entities(entities, None).map_err(|e| e.to_string());
    }
    cedar_policy_core::entities::Entities::from_entities(
        entities
            .iter()
            .map(|e| AsRef::<cedar_policy_core::ast::Entity>::as_ref(e).clone()),
        None::<&cedar_policy_core::entities::NoEntitiesSchema>,
        cedar_policy_core::entities::TCComputation::AssumeAlreadyComputed,
        cedar_policy_core::extensions::Extensions::all_available(),
    )
    .map(Entities::from)
    .map_err(|e| e.to_string())
}

/// Runs one request and sorts out what matched.
fn evaluate_one(
    authorizer: &Authorizer,
    request: &Request,
    slice: &PolicySet,
    entities: &Entities,
    resource: &EntityUid,
) -> Result<One, String> {
    let response = authorizer.is_authorized(request, slice, entities);
    let diagnostics = response.diagnostics();
    if let Some(error) = diagnostics.errors().next() {
        // Fail closed: an erroring policy might have been a forbid.
        return Err(format!("policy evaluation failed on {resource}: {error}"));
    }
    let mut ids: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
    ids.sort();
    Ok(match response.decision() {
        Decision::Deny if ids.is_empty() => One::NoMatch,
        Decision::Deny => One::Forbid(ids),
        Decision::Allow => One::Permit(ids),
    })
}

/// The value of the `name=value` tag of `resource`, if any.
fn attribute_tag<'r>(resource: &'r Resource, name: &str) -> Option<&'r str> {
    resource
        .tags
        .iter()
        .find_map(|t| t.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// `text` as a value of type `ty`; `Ok(None)` for types never filled from text.
fn typed(text: &str, ty: &AttrType) -> Result<Option<RestrictedExpression>, String> {
    Ok(Some(match ty {
        AttrType::String => RestrictedExpression::new_string(text.to_owned()),
        AttrType::Long => RestrictedExpression::new_long(
            text.trim()
                .parse::<i64>()
                .map_err(|_| format!("`{text}` is not a whole number"))?,
        ),
        AttrType::Bool => RestrictedExpression::new_bool(match text.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(format!("`{text}` is not `true` or `false`")),
        }),
        AttrType::SetOfString | AttrType::Entity(_) | AttrType::Other => return Ok(None),
    }))
}

/// The request context, filled per the action's declared context type (see the `schema`
/// module docs).
fn context(names: &Names, action: &ActionVocab, attempt: &Attempt) -> Result<Context, String> {
    let justification = attempt
        .justification
        .as_deref()
        .filter(|j| !j.trim().is_empty());
    let mut pairs = Vec::with_capacity(action.context.len());
    for attr in &action.context {
        let value = match (attr.name.as_str(), &attr.ty) {
            ("has_justification", AttrType::Bool) => {
                Some(RestrictedExpression::new_bool(justification.is_some()))
            }
            ("justification", AttrType::String) => {
                justification.map(|j| RestrictedExpression::new_string(j.to_owned()))
            }
            ("on_behalf_of", AttrType::Entity(ty)) if ty == "User" => {
                attempt.on_behalf_of.as_ref().map(|user| {
                    RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                        names.user.clone(),
                        EntityId::new(user),
                    ))
                })
            }
            ("resource_count", AttrType::Long) => Some(RestrictedExpression::new_long(
                i64::try_from(attempt.resources.len()).unwrap_or(i64::MAX),
            )),
            (name, _) if RESERVED_CONTEXT.contains(&name) => None,
            (name, ty) => attempt
                .context
                .get(name)
                .map(|text| typed(text, ty))
                .transpose()
                .map_err(|e| format!("context `{name}`: {e}"))?
                .flatten(),
        };
        match value {
            Some(value) => pairs.push((attr.name.clone(), value)),
            None if attr.required => {
                return Err(format!(
                    "the schema requires context attribute `{}` for action `{}`, and the attempt does not provide it",
                    attr.name, attempt.action
                ));
            }
            None => {}
        }
    }
    Context::from_pairs(pairs).map_err(|e| format!("cannot build the request context: {e}"))
}

/// Parsed entity type names used on every request.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub agent: EntityTypeName,
    pub user: EntityTypeName,
    pub group: EntityTypeName,
}

impl Names {
    pub(crate) fn new() -> Option<Names> {
        Some(Names {
            agent: crate::schema::type_name("Agent")?,
            user: crate::schema::type_name("User")?,
            group: crate::schema::type_name("Group")?,
        })
    }
}
