//! The writer's side of the audit log: the Merkle tree's right edge, the records and subtree
//! hashes linked into it but not yet inserted, and the signing of checkpoints.
//!
//! Events are numbered and hashed the moment a job appends them, so sequence order is job
//! order; their rows are inserted together at the end of the batch, in multi-row statements,
//! because a round trip per event was what limited the decisions a batch could take. A job that
//! is undone drops what it appended ([`Tree::rollback`]).

use crate::EngineError;
use countersign_audit::merkle::{Frontier, Hash, NodeId};
use countersign_audit::note::{Checkpoint, SigningKey};
use countersign_audit::{AuditEvent, AuditRecord, encode};
use countersign_core::Timestamp;
use countersign_store::StoreTx;
use std::time::{Duration, Instant};

/// How checkpoints are signed and how often.
#[derive(Debug)]
pub struct AuditSigning {
    /// The log's origin line, e.g. `audit.example.com/countersign`.
    pub origin: String,
    pub key: SigningKey,
    /// Sign once this many events are unsigned…
    pub every_events: u64,
    /// …or once the oldest unsigned event is this old, whichever comes first.
    pub every: Duration,
    /// Where the key lives, so a rotation can replace it; `None` keeps keys in memory only.
    pub key_file: Option<std::path::PathBuf>,
}

impl AuditSigning {
    /// Signing with a fresh key that lives only in memory (tests, throw-away gateways).
    pub fn ephemeral(origin: &str) -> Result<AuditSigning, crate::keyfile::KeyFileError> {
        Ok(AuditSigning::new(
            origin,
            crate::keyfile::generate(origin)?,
            None,
        ))
    }

    /// Signing with `key` at the default cadence: every 1,000 events or 1 second.
    pub fn new(
        origin: impl Into<String>,
        key: SigningKey,
        key_file: Option<std::path::PathBuf>,
    ) -> AuditSigning {
        AuditSigning {
            origin: origin.into(),
            key,
            every_events: 1_000,
            every: Duration::from_secs(1),
            key_file,
        }
    }
}

struct Unsaved {
    record: AuditRecord,
    kind: &'static str,
    time: Timestamp,
    request_id: Option<String>,
    grant_id: Option<String>,
}

/// Where a job started, to undo its appends.
pub(crate) struct Mark {
    frontier: Frontier,
    records: usize,
    nodes: usize,
}

pub(crate) struct Tree {
    frontier: Frontier,
    records: Vec<Unsaved>,
    nodes: Vec<(NodeId, Hash)>,
    signing: AuditSigning,
    /// Size of the newest checkpoint, and when the tree last grew past it unsigned.
    signed_size: u64,
    unsigned_since: Option<Instant>,
    /// A key that takes over once the current batch's checkpoint, signed by the old key, is
    /// committed.
    next_key: Option<SigningKey>,
    /// Sign at the end of this batch whatever the count and the clock say.
    requested: bool,
}

impl Tree {
    pub fn new(frontier: Frontier, signed_size: u64, signing: AuditSigning) -> Tree {
        let unsigned_since = (frontier.size() > signed_size).then(Instant::now);
        Tree {
            frontier,
            records: Vec::new(),
            nodes: Vec::new(),
            signing,
            signed_size,
            unsigned_since,
            next_key: None,
            requested: false,
        }
    }

    /// Numbers, encodes and links `event`; its row is inserted by [`Tree::flush`].
    pub fn append(&mut self, event: &AuditEvent) -> Result<(), EngineError> {
        let record = encode(self.frontier.size(), event)
            .map_err(|e| EngineError::NotRecorded(e.to_string()))?;
        let nodes = &mut self.nodes;
        self.frontier.push_with(record.leaf_hash, |id, hash| {
            // Leaf hashes are stored with their events; only inner nodes go to `audit_nodes`.
            if id.level > 0 {
                nodes.push((id, hash));
            }
        });
        self.records.push(Unsaved {
            record,
            kind: event.kind.as_str(),
            time: event.time,
            request_id: event.request_id.clone(),
            grant_id: event.grant_id.clone(),
        });
        if self.unsigned_since.is_none() {
            self.unsigned_since = Some(Instant::now());
        }
        Ok(())
    }

    pub fn mark(&self) -> Mark {
        Mark {
            frontier: self.frontier.clone(),
            records: self.records.len(),
            nodes: self.nodes.len(),
        }
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.frontier = mark.frontier;
        self.records.truncate(mark.records);
        self.nodes.truncate(mark.nodes);
    }

    /// Forgets a batch that did not commit: back to `mark`, taken when it began, with no
    /// pending rotation or checkpoint request. Nothing of it reaches a later batch.
    pub fn abandon(&mut self, mark: Mark) {
        self.rollback(mark);
        self.next_key = None;
        self.requested = false;
        // The checkpoint that failed waits a full interval before it is tried again, instead of
        // falling due at once, again and again, while the store is down.
        if self.unsigned_since.is_some() {
            self.unsigned_since = Some(Instant::now());
        }
        self.settle_clock();
    }

    /// With nothing unsigned, no checkpoint is waiting: stop the clock (else the writer would
    /// wake for a checkpoint with nothing to sign, again and again).
    fn settle_clock(&mut self) {
        if self.frontier.size() <= self.signed_size {
            self.unsigned_since = None;
        }
    }

    /// Asks for a checkpoint at the end of the current batch.
    pub fn request_checkpoint(&mut self) {
        self.requested = true;
    }

    /// Inserts what was appended, and a checkpoint when one is due or requested. Called once per
    /// batch, just before the commit.
    pub async fn flush(
        &mut self,
        tx: &mut StoreTx,
        now: Timestamp,
    ) -> Result<Option<u64>, EngineError> {
        if !self.records.is_empty() {
            let rows: Vec<_> = self
                .records
                .iter()
                .map(|u| {
                    (
                        &u.record,
                        u.kind,
                        u.time,
                        u.request_id.as_deref(),
                        u.grant_id.as_deref(),
                    )
                })
                .collect();
            tx.append_audits(&rows).await?;
            tx.insert_nodes(&self.nodes).await?;
            self.records.clear();
            self.nodes.clear();
        }
        let unsigned = self.frontier.size() - self.signed_size;
        let due = unsigned >= self.signing.every_events
            || self
                .unsigned_since
                .is_some_and(|t| t.elapsed() >= self.signing.every);
        let forced = std::mem::take(&mut self.requested) || self.next_key.is_some();
        if unsigned == 0 || !(due || forced) {
            return Ok(None);
        }
        let size = self.frontier.size();
        let note = Checkpoint {
            origin: self.signing.origin.clone(),
            size,
            root: self.frontier.root(),
        }
        .sign(&self.signing.key)
        .map_err(|e| EngineError::NotRecorded(format!("cannot sign a checkpoint: {e}")))?;
        tx.insert_checkpoint(size, now, &note).await?;
        Ok(Some(size))
    }

    /// Called after the commit of a batch whose flush signed `signed`.
    pub fn committed(&mut self, signed: Option<u64>) {
        if let Some(size) = signed {
            self.signed_size = size;
        }
        self.settle_clock();
        if let Some(key) = self.next_key.take() {
            self.signing.key = key;
        }
    }

    /// When the next time-based checkpoint is due, if events are waiting for one.
    pub fn deadline(&self) -> Option<Instant> {
        self.unsigned_since.map(|t| t + self.signing.every)
    }

    /// Switches to `key` for every checkpoint after the current batch's, which the old key
    /// signs (so the rotation event is vouched for by the key it replaces).
    pub fn rotate_key(&mut self, key: SigningKey) {
        self.next_key = Some(key);
    }
}
