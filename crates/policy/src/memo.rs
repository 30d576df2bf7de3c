//! Outcomes remembered per policy set: a gate repeats the same few attempts (one principal,
//! one statement shape, the same tables) thousands of times a second, and evaluating them
//! costs tens of microseconds each.
//!
//! Remembering is exact, not approximate. An outcome is a function of the policy set and of
//! what evaluation reads: the principal (kind, id, groups) and everything of the attempt but
//! its payload (action, resources with their attributes and parents, on-behalf-of user,
//! justification, context map). The Cedar request is built from nothing else, and no
//! evaluation reads a clock or anything random. The key is all of that, compared field by field
//! on every hit, so two attempts share an outcome only if evaluation could not tell them apart.
//! The memo lives in its [`crate::LoadedPolicies`], so a reload starts afresh.

use countersign_core::{
    Action, Attempt, PolicyOutcome, Principal, PrincipalKind, PrincipalRef, Resource,
};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

/// Most outcomes remembered; past it the memo starts over (attempts that vary without end,
/// such as one table per tenant, then cost an evaluation each, as without a memo).
const CAPACITY: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Memo {
    hasher: RandomState,
    entries: Mutex<HashMap<u64, (Key, PolicyOutcome)>>,
}

/// Everything an outcome depends on besides the policy set.
#[derive(Debug)]
struct Key {
    kind: PrincipalKind,
    id: String,
    groups: BTreeSet<String>,
    named: PrincipalRef,
    action: Action,
    resources: Vec<Resource>,
    on_behalf_of: Option<String>,
    justification: Option<String>,
    context: BTreeMap<String, String>,
}

impl Key {
    fn of(principal: &Principal, attempt: &Attempt) -> Key {
        Key {
            kind: principal.kind,
            id: principal.id.clone(),
            groups: principal.groups.clone(),
            named: attempt.principal.clone(),
            action: attempt.action.clone(),
            resources: attempt.resources.clone(),
            on_behalf_of: attempt.on_behalf_of.clone(),
            justification: attempt.justification.clone(),
            context: attempt.context.clone(),
        }
    }

    fn is(&self, principal: &Principal, attempt: &Attempt) -> bool {
        self.kind == principal.kind
            && self.id == principal.id
            && self.groups == principal.groups
            && self.named == attempt.principal
            && self.action == attempt.action
            && self.resources == attempt.resources
            && self.on_behalf_of == attempt.on_behalf_of
            && self.justification == attempt.justification
            && self.context == attempt.context
    }
}

impl Memo {
    fn hash(&self, principal: &Principal, attempt: &Attempt) -> u64 {
        let mut h = self.hasher.build_hasher();
        principal.kind.hash(&mut h);
        principal.id.hash(&mut h);
        principal.groups.hash(&mut h);
        attempt.principal.hash(&mut h);
        attempt.action.hash(&mut h);
        attempt.resources.hash(&mut h);
        attempt.on_behalf_of.hash(&mut h);
        attempt.justification.hash(&mut h);
        attempt.context.hash(&mut h);
        h.finish()
    }

    /// The outcome for `attempt` by `principal`: remembered, or from `evaluate` (and then
    /// remembered, unless it is an error).
    pub fn outcome(
        &self,
        principal: &Principal,
        attempt: &Attempt,
        evaluate: impl FnOnce() -> PolicyOutcome,
    ) -> PolicyOutcome {
        let hash = self.hash(principal, attempt);
        if let Some((key, outcome)) = self.lock().get(&hash)
            && key.is(principal, attempt)
        {
            return outcome.clone();
        }
        let outcome = evaluate();
        if !matches!(outcome, PolicyOutcome::Error { .. }) {
            let mut entries = self.lock();
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            // A different key under the same hash is replaced: the memo holds one per hash.
            entries.insert(hash, (Key::of(principal, attempt), outcome.clone()));
        }
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Key, PolicyOutcome)>> {
        // Every critical section is one map operation; a poisoned lock holds consistent data.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
