//! Cancel keys. The gate hands each client its own process id and secret key, never the
//! upstream's, and keeps the map from one to the other here. A CancelRequest that names a
//! session holding a statement for approval withdraws the request; otherwise it is passed on
//! to the upstream backend that runs the session's statement.

use crate::config::Upstream;
use crate::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

/// What a session registers so that a cancel can reach it.
#[derive(Debug)]
pub struct CancelTarget {
    key: Vec<u8>,
    upstream: Arc<Upstream>,
    upstream_pid: u32,
    upstream_key: Vec<u8>,
    /// Set while the session holds a statement for approval; a cancel then withdraws it.
    holding: Mutex<Option<Arc<Notify>>>,
}

impl CancelTarget {
    /// Marks the session as holding; the returned notify fires on a cancel.
    pub fn hold(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        *lock(&self.holding) = Some(notify.clone());
        notify
    }

    pub fn release(&self) {
        *lock(&self.holding) = None;
    }
}

/// The gate's cancel keys, by the process id handed to the client.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<u32, Arc<CancelTarget>>>,
}

/// Removes its session's key from the registry when the session ends.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: u32,
    pub target: Arc<CancelTarget>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.sessions).remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Registers a session with a fresh random process id and a key of `key_len` bytes (4 for
    /// protocol 3.0, 32 for 3.2).
    pub fn register(
        self: &Arc<Self>,
        key_len: usize,
        upstream: Arc<Upstream>,
        upstream_pid: u32,
        upstream_key: Vec<u8>,
    ) -> Registration {
        let key: Vec<u8> = (0..key_len).map(|_| rand::random::<u8>()).collect();
        let target = Arc::new(CancelTarget {
            key,
            upstream,
            upstream_pid,
            upstream_key,
            holding: Mutex::new(None),
        });
        let mut sessions = lock(&self.sessions);
        let pid = loop {
            // Positive 31-bit ids, as clients store them in a signed int.
            let pid = rand::random::<u32>() >> 1;
            if pid != 0 && !sessions.contains_key(&pid) {
                break pid;
            }
        };
        sessions.insert(pid, target.clone());
        Registration {
            registry: self.clone(),
            pid,
            target,
        }
    }

    /// The key handed to the client of `registration`.
    pub fn key(registration: &Registration) -> &[u8] {
        &registration.target.key
    }

    /// Handles a CancelRequest: withdraws a held statement or cancels the upstream query. A
    /// wrong key does nothing, as in PostgreSQL, and takes the same path as a right one up to
    /// the comparison.
    pub async fn cancel(&self, pid: u32, key: &[u8]) {
        let target = lock(&self.sessions).get(&pid).cloned();
        let Some(target) = target else {
            tracing::debug!(pid, "cancel request for an unknown session");
            return;
        };
        if target.key.len() != key.len() || !bool::from(target.key.ct_eq(key)) {
            tracing::warn!(pid, "cancel request with a wrong key ignored");
            return;
        }
        let held = lock(&target.holding).clone();
        match held {
            Some(notify) => notify.notify_one(),
            None => {
                if let Err(e) = crate::upstream::cancel(
                    &target.upstream,
                    target.upstream_pid,
                    &target.upstream_key,
                )
                .await
                {
                    tracing::warn!(error = %e, "passing a cancel request upstream failed");
                }
            }
        }
    }
}
