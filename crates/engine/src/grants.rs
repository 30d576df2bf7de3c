//! The in-memory index of live grants, so the decision path finds a covering grant without a
//! database round trip. The database stays authoritative: a single-use grant is only spent by
//! the conditional update in the writer, and the index follows what the writer committed.

use countersign_core::{Grant, GrantScope, PrincipalRef, Timestamp};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(crate) struct GrantIndex {
    by_principal: Mutex<HashMap<PrincipalRef, Vec<Grant>>>,
}

impl GrantIndex {
    pub fn load(grants: Vec<Grant>) -> GrantIndex {
        let index = GrantIndex::default();
        for g in grants {
            index.insert(g);
        }
        index
    }

    pub fn insert(&self, grant: Grant) {
        let mut map = self.lock();
        map.entry(grant.principal.clone()).or_default().push(grant);
    }

    pub fn remove(&self, principal: &PrincipalRef, grant_id: &str) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(principal) {
            list.retain(|g| g.id != grant_id);
            if list.is_empty() {
                map.remove(principal);
            }
        }
    }

    /// A live grant covering `scope`, preferring a window (which is not spent by use) over a
    /// single-use grant, and skipping `exclude`d ids (grants a concurrent attempt just took).
    pub fn find(
        &self,
        scope: &GrantScope<'_>,
        now: Timestamp,
        exclude: &[String],
    ) -> Option<Grant> {
        let map = self.lock();
        let list = map.get(scope.principal)?;
        let mut covering = list
            .iter()
            .filter(|g| !exclude.contains(&g.id) && g.covers(scope, now));
        let first = covering.next()?;
        if !first.is_single_use() {
            return Some(first.clone());
        }
        Some(
            covering
                .find(|g| !g.is_single_use())
                .unwrap_or(first)
                .clone(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PrincipalRef, Vec<Grant>>> {
        // A panic while holding the lock cannot leave the map half-updated (every mutation is
        // a single push or retain), so a poisoned lock is safe to reuse.
        self.by_principal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
