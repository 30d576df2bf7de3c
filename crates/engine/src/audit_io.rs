//! The audit log as auditors reach it: inclusion and consistency proofs from stored subtree
//! hashes, JSONL exports, and verification of the live store.
//!
//! These read the store directly and never write, so the CLI can run them next to a running
//! gateway (`countersign audit export|verify --store|prove`).

use countersign_audit::export::{
    ExportVerifier, VerifyError, VerifySummary, checkpoint_line, event_line, header_line,
    prefix_line,
};
use countersign_audit::merkle::{self, Hash, ProofError};
use countersign_audit::note::VerifierKey;
use countersign_store::{Store, StoreError};
use std::io::Write;

/// Records read from the store per query while exporting or verifying.
const PAGE: u32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditIoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit proof: {0}")]
    Proof(#[from] ProofError),
    #[error(
        "record {seq} is not covered by a signed checkpoint yet (the latest covers {size} records)"
    )]
    NotCovered { seq: u64, size: u64 },
    #[error("the audit log has no signed checkpoint yet")]
    NoCheckpoint,
    #[error("the range {from}..{to} is not within the log's {size} records")]
    OutOfRange { from: u64, to: u64, size: u64 },
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored audit record {0} is missing")]
    Missing(u64),
}

/// Everything needed to check, offline, that one record is in the signed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub path: Vec<Hash>,
    /// The canonical event, exactly the bytes of the leaf.
    pub event_json: String,
    /// The signed checkpoint note the path leads to.
    pub checkpoint: String,
}

/// Proves record `seq` against the latest signed checkpoint.
pub async fn inclusion_proof(store: &Store, seq: u64) -> Result<InclusionProof, AuditIoError> {
    let (size, checkpoint) = store
        .latest_checkpoint()
        .await?
        .ok_or(AuditIoError::NoCheckpoint)?;
    if seq >= size {
        return Err(AuditIoError::NotCovered { seq, size });
    }
    let ids = merkle::inclusion_nodes(seq, size)?;
    let nodes = store.audit_nodes(&ids).await?;
    let path = merkle::inclusion_proof(seq, size, &|id| nodes.get(&id).copied())?;
    let record = store
        .audit_records(seq, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.seq == seq)
        .ok_or(AuditIoError::Missing(seq))?;
    Ok(InclusionProof {
        seq,
        tree_size: size,
        leaf_hash: record.leaf_hash,
        path,
        event_json: record.event_json,
        checkpoint,
    })
}

/// Proves that the tree of `to` records extends the tree of `from` records.
pub async fn consistency_proof(
    store: &Store,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, AuditIoError> {
    let size = store.audit_size().await?;
    if from == 0 || from > to || to > size {
        return Err(AuditIoError::OutOfRange { from, to, size });
    }
    let ids = merkle::consistency_nodes(from, to)?;
    let nodes = store.audit_nodes(&ids).await?;
    Ok(merkle::consistency_proof(from, to, &|id| {
        nodes.get(&id).copied()
    })?)
}

/// The root of the tree of the first `size` records, from stored nodes.
pub async fn root_at(store: &Store, size: u64) -> Result<Hash, AuditIoError> {
    let ids = merkle::frontier_nodes(size);
    let nodes = store.audit_nodes(&ids).await?;
    Ok(merkle::root_from_nodes(size, &|id| {
        nodes.get(&id).copied()
    })?)
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub from: u64,
    pub to: u64,
    pub checkpoints: usize,
}

/// Writes records `from..to` (to: the latest checkpoint when `None`) with every checkpoint whose
/// size falls in `(from, to]`, each right after the record that completes it, as JSONL.
pub async fn write_export(
    store: &Store,
    origin: &str,
    from: u64,
    to: Option<u64>,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<ExportSummary, AuditIoError> {
    // The checkpoint before the size: on a live log both grow, and a checkpoint committed
    // between the two reads would otherwise look larger than the log.
    let signed = store.latest_checkpoint().await?.map_or(0, |(s, _)| s);
    let size = store.audit_size().await?;
    let to = to.unwrap_or(signed);
    if from > to || to > size {
        return Err(AuditIoError::OutOfRange { from, to, size });
    }
    writeln!(out, "{}", header_line(origin, from, to))?;
    if from > 0 {
        writeln!(
            out,
            "{}",
            prefix_line(&store.audit_frontier_at(from).await?)
        )?;
    }
    let checkpoints = if to > from {
        store.checkpoints(from + 1, to).await?
    } else {
        Vec::new()
    };
    let mut pending = checkpoints.iter().peekable();
    let mut next = from;
    while next < to {
        let page = store.audit_records(next, PAGE).await?;
        if page.is_empty() {
            return Err(AuditIoError::Missing(next));
        }
        for record in page.iter().take_while(|r| r.seq < to) {
            // A gap would otherwise be skipped (or, just before `to`, never left).
            if record.seq != next {
                return Err(AuditIoError::Missing(next));
            }
            writeln!(out, "{}", event_line(record))?;
            next = record.seq + 1;
            while let Some((_, note)) = pending.next_if(|(s, _)| *s == next) {
                writeln!(out, "{}", checkpoint_line(note))?;
            }
        }
        progress(next - from);
    }
    out.flush()?;
    Ok(ExportSummary {
        from,
        to,
        checkpoints: checkpoints.len(),
    })
}

/// Verifies the live store exactly as an export of everything signed so far would be verified:
/// recomputing every leaf and the tree, checking every checkpoint's signature, origin and root.
/// A row changed or deleted directly in the database is caught and named.
///
/// Records newer than the latest checkpoint are not signed yet (the writer signs them within
/// its checkpoint interval, and at shutdown), so they are left out rather than reported as
/// unverifiable: on a running gateway there nearly always are some. Compare the summary's last
/// checkpoint with [`Store::audit_size`] to see how many.
pub async fn verify_store(
    store: &Store,
    origin: &str,
    keys: Vec<VerifierKey>,
    mut progress: impl FnMut(u64),
) -> Result<Result<VerifySummary, VerifyError>, AuditIoError> {
    // The checkpoints are read once, first; everything is checked up to the newest of them.
    // Records appended while this runs (and checkpoints signed meanwhile) are not part of it.
    let checkpoints = store.checkpoints(1, u64::MAX >> 1).await?;
    let size = checkpoints.last().map_or(0, |(s, _)| *s);
    let mut verifier = ExportVerifier::new(keys);
    let mut line_no = 1;
    let mut feed = |verifier: &mut ExportVerifier, line: String| {
        let r = verifier.line(line_no, line.as_bytes());
        line_no += 1;
        r
    };
    if let Err(e) = feed(&mut verifier, header_line(origin, 0, size)) {
        return Ok(Err(e));
    }
    let mut pending = checkpoints.iter().peekable();
    let mut next = 0;
    while next < size {
        let page = store.audit_records(next, PAGE).await?;
        let start = next;
        for record in page.iter().take_while(|r| r.seq < size) {
            if let Err(e) = feed(&mut verifier, event_line(record)) {
                return Ok(Err(e));
            }
            next = record.seq + 1;
            while let Some((_, note)) = pending.next_if(|(s, _)| *s <= next) {
                if let Err(e) = feed(&mut verifier, checkpoint_line(note)) {
                    return Ok(Err(e));
                }
            }
        }
        if next == start {
            // No more records below the newest checkpoint: the rest were removed.
            break;
        }
        progress(next);
    }
    // Checkpoints beyond the last record mean records were removed from the end.
    for (_, note) in pending {
        if let Err(e) = feed(&mut verifier, checkpoint_line(note)) {
            return Ok(Err(e));
        }
    }
    Ok(verifier.finish())
}
