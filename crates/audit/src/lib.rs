//! The audit log's record format and its hash chain, as pure functions.
//!
//! Every step the gateway takes (an attempt and its verdict, a request, a vote, a settlement, a
//! grant issued, used, expired or revoked, a policy load) becomes an [`AuditEvent`]. Events are
//! numbered from 0 and chained: each record's hash covers the previous record's hash and the
//! canonical JSON of the event (see [`record_hash`]), so changing, removing, reordering or
//! inserting a record breaks every hash after it. [`verify_chain`] finds the first such break.

pub mod event;

pub use event::{AuditEvent, EventKind};

use countersign_core::canonical::write_canonical;
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"countersign.audit.v1\0";

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The end of the chain: the sequence number the next record gets, and the hash it links to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub next_seq: u64,
    pub hash: [u8; 32],
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        next_seq: 0,
        hash: GENESIS,
    };
}

/// One link of the chain, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    /// The canonical JSON of the event, including its `seq`; the exact bytes that were hashed.
    pub event_json: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// `SHA-256("countersign.audit.v1" ‖ 0x00 ‖ prev_hash ‖ event_json)`.
pub fn record_hash(prev_hash: &[u8; 32], event_json: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(prev_hash);
    h.update(event_json.as_bytes());
    h.finalize().into()
}

/// Appends `event` after `head`: numbers it, encodes it canonically and links it. Returns the
/// record and the new head.
pub fn link(head: ChainHead, event: &AuditEvent) -> (AuditRecord, ChainHead) {
    let mut doc = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut doc {
        map.insert("seq".into(), serde_json::Value::from(head.next_seq));
    }
    let mut bytes = Vec::with_capacity(512);
    write_canonical(&doc, &mut bytes);
    let event_json = String::from_utf8(bytes).unwrap_or_default();
    let hash = record_hash(&head.hash, &event_json);
    let record = AuditRecord {
        seq: head.next_seq,
        event_json,
        prev_hash: head.hash,
        hash,
    };
    let next = ChainHead {
        next_seq: head.next_seq + 1,
        hash,
    };
    (record, next)
}

/// Where and why a chain stopped verifying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {reason}")]
pub struct ChainError {
    pub seq: u64,
    pub reason: String,
}

/// Checks records in order from the genesis: consecutive sequence numbers, each `prev_hash` the
/// previous record's hash, each hash recomputed from the stored event bytes, and each event's own
/// `seq` field equal to its position. Returns the head after the last record.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<ChainHead, ChainError> {
    let mut head = ChainHead::EMPTY;
    for record in records {
        let fail = |reason: String| ChainError {
            seq: record.seq,
            reason,
        };
        if record.seq != head.next_seq {
            return Err(ChainError {
                seq: head.next_seq,
                reason: format!("missing or reordered: found record {} instead", record.seq),
            });
        }
        if record.prev_hash != head.hash {
            return Err(fail("does not link to the previous record".into()));
        }
        if record_hash(&record.prev_hash, &record.event_json) != record.hash {
            return Err(fail("content does not match its hash (altered)".into()));
        }
        let embedded = serde_json::from_str::<serde_json::Value>(&record.event_json)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        if embedded != Some(record.seq) {
            return Err(fail("event's own sequence number disagrees".into()));
        }
        head = ChainHead {
            next_seq: record.seq + 1,
            hash: record.hash,
        };
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::Timestamp;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut head = ChainHead::EMPTY;
        (0..n)
            .map(|i| {
                let mut e = AuditEvent::new(EventKind::PolicyLoaded, Timestamp(i as i64));
                e.policy_version = Some(format!("v{i}"));
                let (r, h) = link(head, &e);
                head = h;
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        let head = verify_chain(&records).unwrap();
        assert_eq!(head.next_seq, 5);
        assert_eq!(head.hash, records[4].hash);
        assert!(records[2].event_json.contains("\"seq\":2"));
    }

    #[test]
    fn altered_event_is_caught() {
        let mut records = chain(5);
        records[2].event_json = records[2].event_json.replace("v2", "vX");
        assert_eq!(verify_chain(&records).unwrap_err().seq, 2);
    }

    #[test]
    fn deleted_record_is_caught() {
        let mut records = chain(5);
        records.remove(3);
        assert_eq!(verify_chain(&records).unwrap_err().seq, 3);
    }

    #[test]
    fn reordered_records_are_caught() {
        let mut records = chain(5);
        records.swap(1, 2);
        assert_eq!(verify_chain(&records).unwrap_err().seq, 1);
    }

    #[test]
    fn rehashed_forgery_breaks_the_next_link() {
        let mut records = chain(5);
        records[2].event_json = records[2].event_json.replace("v2", "vX");
        records[2].hash = record_hash(&records[2].prev_hash, &records[2].event_json);
        assert_eq!(verify_chain(&records).unwrap_err().seq, 3);
    }
}
