//! The JSONL export of the audit log, and a streaming verifier that checks one offline.
//!
//! # Format (version 1)
//!
//! An export is UTF-8 text, one JSON object per line, each line ending with `\n`. It covers the
//! records with sequence numbers `[from, to)`.
//!
//! 1. Header, always first:
//!    `{"countersign_audit_export":1,"origin":"<log origin>","from":F,"to":T}`.
//! 2. Prefix, second, present exactly when `F > 0`:
//!    `{"prefix":{"size":F,"subtrees":["<hex>",…]}}` — the [`Frontier`] of the tree at size `F`
//!    (one 64-digit lowercase hex hash per set bit of `F`, largest subtree first), so the roots of
//!    later checkpoints can be computed without the earlier records. It is not trusted: the first
//!    checkpoint's root covers it.
//! 3. One line per record, in sequence order:
//!    `{"event":<event JSON>,"leaf":"<hex leaf hash>"}` where `<event JSON>` is the record's
//!    canonical event JSON exactly as stored (including its `"seq"`), and the leaf hash is
//!    `SHA-256(0x00 ‖ event JSON bytes)`. The line is written byte for byte in this shape, so a
//!    verifier takes the bytes between the fixed prefix `{"event":` and the fixed 75-byte suffix
//!    `,"leaf":"<64 hex>"}` as the leaf data without re-encoding anything.
//! 4. Checkpoints, each placed right after the record that completes its size (a checkpoint of
//!    size `S` follows record `S − 1`; one of size `F` may directly follow the prefix):
//!    `{"checkpoint":"<signed note, JSON-escaped>"}` (see [`crate::note`]).
//!
//! Writers use [`header_line`], [`prefix_line`], [`event_line`] and [`checkpoint_line`]; each
//! returns the line *without* its terminating newline.
//!
//! # What the verifier checks
//!
//! [`ExportVerifier`] reads the lines in order, in O(log n) memory, and stops at the first
//! problem, naming its line and, where one is to blame, the record:
//!
//! * each record's leaf hash is recomputed from the raw event bytes and compared with the line's
//!   `leaf` (`record N altered`);
//! * each event's own `seq` must be the next number from `F` (missing, reordered, duplicated or
//!   inserted records are named by the first number out of place) and below `T`;
//! * the records are appended to a Merkle tree; at each checkpoint the note must carry a valid
//!   signature by the trusted key for the header's origin, its size must equal the number of
//!   records so far, and its root must equal the recomputed root — so a record altered *together
//!   with* its `leaf` is caught by the next checkpoint, which names the range it lies in;
//! * consecutive checkpoints must not shrink, and an RFC 9162 consistency proof between them is
//!   built and verified. The roots come from one append-only tree, so consistency already
//!   follows from both roots matching; the proof is a cross-check of the proof code on real data
//!   and costs nothing: it needs only the two frontiers plus one retained node per level (the
//!   right siblings of the old tree's last leaf's path), so memory stays O(log n);
//! * at the end: the records must run up to `T`, there must be at least one checkpoint, and the
//!   last checkpoint must cover the last record (otherwise those records are not signed).
//!
//! The event bytes are not checked to be canonical JSON: the verifier never re-encodes an event
//! (the leaf hash binds the exact bytes the log wrote, and re-canonicalising every record would
//! dominate the cost). Events are only scanned for their top-level `seq`, `kind` and, for key
//! rotations, `outcome`.
//!
//! # Cost
//!
//! One pass, single-threaded: per record one SHA-256 over the event bytes, a table hex decode,
//! a top-level scan and about one node hash for the tree; per checkpoint one Ed25519
//! verification. A million ~420-byte records with a checkpoint every thousand verify in about
//! 0.9 s here (`cargo bench -p countersign-audit`), SHA-256 being the largest share. Hashing in a
//! worker thread would save perhaps a third, but would make "report the first error in file
//! order" need a hand-off protocol between the threads; at this speed it is not worth it.
//!
//! # Key rotation
//!
//! [`ExportVerifier::new`] takes the trusted key first. A record of kind `audit.key_rotated`
//! announces the next key in its `outcome`: `new verifier key: <vkey>` (see
//! [`crate::KEY_ROTATION_PREFIX`]). Once a checkpoint signed by the currently trusted key covers
//! that record (its size is greater than the record's `seq`), the announced key becomes the
//! trusted key for later checkpoints and the old one is retired: a stolen old key cannot sign
//! checkpoints after the rotation. Further keys given to `new` are only used to explain a
//! rejection (a checkpoint signed by a known key whose rotation has not been covered yet).

use crate::AuditRecord;
use crate::merkle::{self, Frontier, Hash, NodeId, ProofError};
use crate::note::{Checkpoint, NoteError, VerifierKey};
use serde::Deserialize;
use std::io::BufRead;

/// The export format version this module writes and reads.
pub const FORMAT_VERSION: u64 = 1;

const EVENT_PREFIX: &[u8] = b"{\"event\":";
const LEAF_PREFIX: &[u8] = b",\"leaf\":\"";
/// `,"leaf":"` + 64 hex digits + `"}`.
const EVENT_SUFFIX_LEN: usize = LEAF_PREFIX.len() + 64 + 2;

fn json_string(s: &str) -> String {
    // Serialising a `str` cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

/// The header line: `{"countersign_audit_export":1,"origin":…,"from":F,"to":T}` (`to`
/// exclusive).
pub fn header_line(origin: &str, from: u64, to: u64) -> String {
    format!(
        "{{\"countersign_audit_export\":{FORMAT_VERSION},\"origin\":{},\"from\":{from},\"to\":{to}}}",
        json_string(origin)
    )
}

/// The prefix line for a partial export starting at `frontier.size()`:
/// `{"prefix":{"size":F,"subtrees":["<hex>",…]}}`.
pub fn prefix_line(frontier: &Frontier) -> String {
    let subtrees: Vec<String> = frontier
        .subtrees()
        .iter()
        .map(|h| format!("\"{}\"", hex::encode(h)))
        .collect();
    format!(
        "{{\"prefix\":{{\"size\":{},\"subtrees\":[{}]}}}}",
        frontier.size(),
        subtrees.join(",")
    )
}

/// One record's line: `{"event":<event_json as stored>,"leaf":"<hex leaf hash as stored>"}`.
pub fn event_line(record: &AuditRecord) -> String {
    let mut line = String::with_capacity(record.event_json.len() + EVENT_PREFIX.len() + 76);
    line.push_str("{\"event\":");
    line.push_str(&record.event_json);
    line.push_str(",\"leaf\":\"");
    line.push_str(&hex::encode(record.leaf_hash));
    line.push_str("\"}");
    line
}

/// A checkpoint's line: `{"checkpoint":"<signed note, JSON-escaped>"}`.
pub fn checkpoint_line(note: &str) -> String {
    format!("{{\"checkpoint\":{}}}", json_string(note))
}

/// Where and why an export stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct VerifyError {
    /// The 1-based line at fault (for problems found at the end, the last line read).
    pub line: u64,
    /// The record to blame, when there is one.
    pub seq: Option<u64>,
    pub what: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// Records checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The first and last record's sequence numbers (`None` for an export of no records).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last checkpoint, which covers every record.
    pub last_checkpoint: Option<Checkpoint>,
    pub origin: String,
    /// Key rotations that took effect.
    pub key_rotations: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    countersign_audit_export: u64,
    origin: String,
    from: u64,
    to: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixLine {
    prefix: PrefixBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixBody {
    size: u64,
    subtrees: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
}

/// The state of the tree at the last verified checkpoint (or the prefix), kept to build a
/// consistency proof to the next checkpoint.
#[derive(Debug)]
struct Anchor {
    size: u64,
    root: Hash,
    /// The frontier's complete nodes at `size`.
    nodes: Vec<(NodeId, Hash)>,
    /// The size of the last *signed* checkpoint, if any (the prefix is unsigned).
    checkpoint_size: Option<u64>,
}

#[derive(Debug)]
enum Stage {
    Header,
    Prefix,
    Body,
}

/// Verifies an export line by line (see the module documentation for what is checked).
#[derive(Debug)]
pub struct ExportVerifier {
    trusted: Option<VerifierKey>,
    known: Vec<VerifierKey>,
    retired: Vec<VerifierKey>,
    /// Announced keys not yet covered by a checkpoint: (seq of the announcing record, key).
    pending: Vec<(u64, VerifierKey)>,
    stage: Stage,
    origin: String,
    from: u64,
    to: u64,
    frontier: Frontier,
    anchor: Anchor,
    /// Nodes completed since the anchor that a consistency proof from it may need: right
    /// siblings of the path to the anchor's last leaf, at most one per level.
    siblings: Vec<(NodeId, Hash)>,
    next_seq: u64,
    events: u64,
    checkpoints: u64,
    key_rotations: u64,
    last_checkpoint: Option<Checkpoint>,
    last_line: u64,
    failed: Option<VerifyError>,
}

impl ExportVerifier {
    /// A verifier trusting `keys[0]`; further keys become trusted only through a key rotation
    /// record covered by a checkpoint (see the module documentation).
    pub fn new(keys: Vec<VerifierKey>) -> ExportVerifier {
        ExportVerifier {
            trusted: keys.first().cloned(),
            known: keys,
            retired: Vec::new(),
            pending: Vec::new(),
            stage: Stage::Header,
            origin: String::new(),
            from: 0,
            to: 0,
            frontier: Frontier::new(),
            anchor: Anchor {
                size: 0,
                root: merkle::empty_root(),
                nodes: Vec::new(),
                checkpoint_size: None,
            },
            siblings: Vec::new(),
            next_seq: 0,
            events: 0,
            checkpoints: 0,
            key_rotations: 0,
            last_checkpoint: None,
            last_line: 0,
            failed: None,
        }
    }

    /// Checks the next line (`line_no` is 1-based; `line` is without its `\n`, a trailing `\r`
    /// is tolerated). After the first error every later call returns that error again.
    pub fn line(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.last_line = line_no;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let result = self.dispatch(line_no, line);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Ends the export: checks that nothing is missing at the end and that every record is
    /// covered by a signed checkpoint.
    pub fn finish(self) -> Result<VerifySummary, VerifyError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let line = self.last_line;
        let fail = |seq: Option<u64>, what: String| Err(VerifyError { line, seq, what });
        match self.stage {
            Stage::Header => return fail(None, "empty export: no header line".into()),
            Stage::Prefix => {
                return fail(
                    None,
                    format!(
                        "export ends before the prefix line its header (from = {}) requires",
                        self.from
                    ),
                );
            }
            Stage::Body => {}
        }
        if self.next_seq != self.to {
            return fail(
                Some(self.next_seq),
                format!(
                    "the export ends before record {} but its header says it runs to {}: \
                     records [{}, {}) are missing (truncated)",
                    self.next_seq, self.to, self.next_seq, self.to
                ),
            );
        }
        let Some(last) = &self.last_checkpoint else {
            return fail(
                None,
                "no checkpoint: nothing in this export is covered by a signature".into(),
            );
        };
        if last.size < self.frontier.size() {
            return fail(
                Some(last.size),
                format!(
                    "events after the last checkpoint (size {}) are not covered by a signature: \
                     records [{}, {}) are unverified",
                    last.size,
                    last.size,
                    self.frontier.size()
                ),
            );
        }
        Ok(VerifySummary {
            events: self.events,
            checkpoints: self.checkpoints,
            first_seq: (self.events > 0).then_some(self.from),
            last_seq: self.next_seq.checked_sub(1).filter(|_| self.events > 0),
            last_checkpoint: self.last_checkpoint,
            origin: self.origin,
            key_rotations: self.key_rotations,
        })
    }

    fn dispatch(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let fail = |seq: Option<u64>, what: String| {
            Err(VerifyError {
                line: line_no,
                seq,
                what,
            })
        };
        match self.stage {
            Stage::Header => return self.header(line_no, line),
            Stage::Prefix => return self.prefix(line_no, line),
            Stage::Body => {}
        }
        if line.starts_with(EVENT_PREFIX) {
            self.event(line_no, line)
        } else if line.starts_with(b"{\"checkpoint\":") {
            self.checkpoint(line_no, line)
        } else if line.is_empty() {
            fail(Some(self.next_seq), "empty line".into())
        } else {
            fail(
                Some(self.next_seq),
                format!(
                    "not an event or checkpoint line: {}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                ),
            )
        }
    }

    fn header(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let fail = |what: String| {
            Err(VerifyError {
                line: line_no,
                seq: None,
                what,
            })
        };
        if !line.starts_with(b"{\"countersign_audit_export\":") {
            return fail(
                "not a countersign audit export: the first line must be the header \
                 {\"countersign_audit_export\":1,…}"
                    .into(),
            );
        }
        let header: Header = match serde_json::from_slice(line) {
            Ok(h) => h,
            Err(e) => return fail(format!("malformed export header: {e}")),
        };
        if header.countersign_audit_export != FORMAT_VERSION {
            return fail(format!(
                "unsupported export format version {} (this verifier reads version {FORMAT_VERSION})",
                header.countersign_audit_export
            ));
        }
        if header.origin.is_empty() {
            return fail("export header has an empty origin".into());
        }
        if header.from > header.to {
            return fail(format!(
                "export header's range is backwards: from {} > to {}",
                header.from, header.to
            ));
        }
        self.origin = header.origin;
        self.from = header.from;
        self.to = header.to;
        self.next_seq = header.from;
        self.stage = if header.from > 0 {
            Stage::Prefix
        } else {
            Stage::Body
        };
        Ok(())
    }

    fn prefix(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let fail = |what: String| {
            Err(VerifyError {
                line: line_no,
                seq: None,
                what,
            })
        };
        let prefix: PrefixLine = match serde_json::from_slice(line) {
            Ok(p) => p,
            Err(e) => {
                return fail(format!(
                    "expected the prefix line (the export starts at record {}): {e}",
                    self.from
                ));
            }
        };
        let PrefixBody { size, subtrees } = prefix.prefix;
        if size != self.from {
            return fail(format!(
                "prefix is of size {size} but the export starts at record {}",
                self.from
            ));
        }
        let mut hashes = Vec::with_capacity(subtrees.len());
        for text in &subtrees {
            match decode_hash(text.as_bytes()) {
                Some(h) => hashes.push(h),
                None => {
                    return fail(format!(
                        "prefix subtree {text:?} is not a 64-digit hex hash"
                    ));
                }
            }
        }
        let frontier = match Frontier::from_parts(size, hashes) {
            Ok(f) => f,
            Err(e) => return fail(format!("malformed prefix: {e}")),
        };
        self.frontier = frontier;
        self.anchor = Anchor {
            size,
            root: self.frontier.root(),
            nodes: frontier_nodes(&self.frontier),
            checkpoint_size: None,
        };
        self.stage = Stage::Body;
        Ok(())
    }

    fn event(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let expected = self.next_seq;
        let fail = |what: String| {
            Err(VerifyError {
                line: line_no,
                seq: Some(expected),
                what,
            })
        };
        let Some((event, leaf)) = split_event_line(line) else {
            return fail(format!(
                "malformed event line for record {expected}: expected {{\"event\":…,\"leaf\":\"<64 hex>\"}}"
            ));
        };
        if merkle::leaf_hash(event) != leaf {
            return fail(format!(
                "record {expected} altered: its content does not match its leaf hash"
            ));
        }
        let fields = match top_level_fields(event) {
            Ok(f) => f,
            Err(why) => {
                return fail(format!(
                    "record {expected}: event is not a JSON object ({why})"
                ));
            }
        };
        let Some(seq) = fields.seq.and_then(parse_seq) else {
            return fail(format!("record {expected}: event has no valid \"seq\""));
        };
        if seq != expected {
            return fail(if seq > expected {
                format!(
                    "record {expected} is missing or out of order (found record {seq} in its place)"
                )
            } else {
                format!("record {seq} is out of order or duplicated (expected record {expected})")
            });
        }
        if seq >= self.to {
            return fail(format!(
                "record {seq} is past the end of the export its header declares (to = {})",
                self.to
            ));
        }
        if fields.kind == Some(KEY_ROTATED_KIND) {
            let key = fields
                .outcome
                .and_then(|raw| serde_json::from_slice::<String>(raw).ok())
                .ok_or_else(|| NoteError::MalformedKey("the key rotation has no outcome".into()))
                .and_then(|outcome| crate::parse_key_rotation(&outcome));
            match key {
                Ok(key) => self.pending.push((seq, key)),
                Err(e) => return fail(format!("record {seq}: malformed key rotation: {e}")),
            }
        }
        let anchor_size = self.anchor.size;
        let siblings = &mut self.siblings;
        self.frontier.push_with(leaf, |id, hash| {
            if is_path_sibling(anchor_size, id) {
                siblings.push((id, hash));
            }
        });
        self.next_seq += 1;
        self.events += 1;
        Ok(())
    }

    fn checkpoint(&mut self, line_no: u64, line: &[u8]) -> Result<(), VerifyError> {
        let size_now = self.frontier.size();
        let fail = |seq: Option<u64>, what: String| {
            Err(VerifyError {
                line: line_no,
                seq,
                what,
            })
        };
        let note = match serde_json::from_slice::<CheckpointLine>(line) {
            Ok(c) => c.checkpoint,
            Err(e) => return fail(None, format!("malformed checkpoint line: {e}")),
        };
        let checkpoint = match self.open(&note) {
            Ok(c) => c,
            Err(what) => return fail(None, what),
        };
        let size = checkpoint.size;
        if let Some(prev) = self.anchor.checkpoint_size
            && size < prev
        {
            return fail(
                None,
                format!("checkpoint sizes decrease: size {size} after size {prev}"),
            );
        }
        if size > size_now {
            return fail(
                Some(size_now),
                format!(
                    "checkpoint at size {size} claims more records than precede it ({size_now}): \
                     records [{size_now}, {size}) were removed"
                ),
            );
        }
        if size < size_now {
            return fail(
                None,
                format!(
                    "checkpoint at size {size} is out of place: it must directly follow record {}, \
                     not record {}",
                    size.saturating_sub(1),
                    size_now - 1
                ),
            );
        }
        if checkpoint.root != self.frontier.root() {
            let since = self.anchor.checkpoint_size.unwrap_or(self.from);
            let prefix_note = if self.anchor.checkpoint_size.is_none() && self.from > 0 {
                ", or the prefix does not match the log"
            } else {
                ""
            };
            return fail(
                None,
                format!(
                    "checkpoint at size {size} does not match the events before it: a record in \
                     [{since}, {size}) was altered, inserted or removed{prefix_note}"
                ),
            );
        }
        if let Err(e) = self.check_consistency(&checkpoint) {
            return fail(
                None,
                format!(
                    "checkpoint at size {size} is not consistent with the tree at size {}: {e}",
                    self.anchor.size
                ),
            );
        }
        // Rotations this checkpoint covers take effect now, in log order.
        let (covered, still_pending): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(seq, _)| *seq < size);
        self.pending = still_pending;
        for (_, key) in covered {
            if self.trusted.as_ref() != Some(&key) {
                if let Some(old) = self.trusted.replace(key) {
                    self.retired.push(old);
                }
                self.key_rotations += 1;
            }
        }
        self.anchor = Anchor {
            size,
            root: checkpoint.root,
            nodes: frontier_nodes(&self.frontier),
            checkpoint_size: Some(size),
        };
        self.siblings.clear();
        self.checkpoints += 1;
        self.last_checkpoint = Some(checkpoint);
        Ok(())
    }

    /// Opens a checkpoint note with the trusted key; on failure, explains it.
    fn open(&self, note: &str) -> Result<Checkpoint, String> {
        let Some(trusted) = &self.trusted else {
            return Err("no trusted key was given to verify checkpoints".into());
        };
        match Checkpoint::open(note, trusted, Some(&self.origin)) {
            Ok(c) => Ok(c),
            Err(NoteError::NotSignedByKey { signers, .. }) => {
                let by = |keys: &[VerifierKey]| {
                    keys.iter()
                        .find(|k| Checkpoint::open(note, k, None).is_ok())
                        .map(VerifierKey::label)
                };
                if let Some(k) = by(&self.retired) {
                    Err(format!(
                        "checkpoint is signed by the retired key {k}; after the key rotation only \
                         {} is trusted",
                        trusted.label()
                    ))
                } else if let Some(k) = by(&self.known) {
                    Err(format!(
                        "checkpoint is signed by key {k}, which is not trusted yet: no key \
                         rotation to it is covered by an earlier checkpoint"
                    ))
                } else {
                    Err(format!(
                        "checkpoint is not signed by the trusted key {} (unknown key; signed by: \
                         {signers})",
                        trusted.label()
                    ))
                }
            }
            Err(NoteError::BadSignature { name, key_id }) => Err(format!(
                "checkpoint signature by {name}+{key_id} does not verify: the checkpoint was \
                 forged or altered"
            )),
            Err(NoteError::WrongOrigin { expected, found }) => Err(format!(
                "checkpoint is for origin {found:?}, but this export is of {expected:?}"
            )),
            Err(e) => Err(format!("invalid checkpoint: {e}")),
        }
    }

    /// Builds the consistency proof from the anchor to `checkpoint` out of the retained nodes and
    /// verifies it.
    fn check_consistency(&self, checkpoint: &Checkpoint) -> Result<(), ProofError> {
        let current = frontier_nodes(&self.frontier);
        let lookup = |id: NodeId| {
            self.anchor
                .nodes
                .iter()
                .chain(&self.siblings)
                .chain(&current)
                .find(|(i, _)| *i == id)
                .map(|(_, h)| *h)
        };
        let proof = merkle::consistency_proof(self.anchor.size, checkpoint.size, &lookup)?;
        merkle::verify_consistency(
            self.anchor.size,
            checkpoint.size,
            &self.anchor.root,
            &checkpoint.root,
            &proof,
        )
    }
}

/// Whether a consistency proof from a tree of `old_size` to any larger size could need node `id`
/// without it being on either frontier: `id` is a right child whose left sibling holds leaf
/// `old_size − 1`. The proof's other hashes are the old frontier's nodes and, for the right
/// edge, the new frontier's nodes.
fn is_path_sibling(old_size: u64, id: NodeId) -> bool {
    if old_size == 0 || id.index & 1 == 0 {
        return false;
    }
    let sibling_start = (id.index - 1) << id.level;
    sibling_start < old_size && old_size <= id.start()
}

fn frontier_nodes(frontier: &Frontier) -> Vec<(NodeId, Hash)> {
    frontier
        .node_ids()
        .into_iter()
        .zip(frontier.subtrees().iter().copied())
        .collect()
}

/// Lowercase hex digit values; 0xff marks every other byte. Uppercase is refused: the writer
/// emits lowercase, and one spelling per hash keeps lines byte-exact.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes 64 lowercase hex digits. A table lookup per digit, because this runs once per record
/// and a general-purpose decoder was a quarter of the verifier's time.
fn decode_hash(text: &[u8]) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let hi = HEX_VALUE[usize::from(pair[0])];
        let lo = HEX_VALUE[usize::from(pair[1])];
        invalid |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// Splits `{"event":<E>,"leaf":"<64 hex>"}` into the raw bytes of `<E>` and the leaf hash.
fn split_event_line(line: &[u8]) -> Option<(&[u8], Hash)> {
    let rest = line.strip_prefix(EVENT_PREFIX)?;
    if rest.len() < EVENT_SUFFIX_LEN + 2 {
        return None;
    }
    let (event, suffix) = rest.split_at(rest.len() - EVENT_SUFFIX_LEN);
    let hex_part = suffix.strip_prefix(LEAF_PREFIX)?.strip_suffix(b"\"}")?;
    Some((event, decode_hash(hex_part)?))
}

const KEY_ROTATED_KIND: &[u8] = b"\"audit.key_rotated\"";

/// The raw values of the top-level members the verifier reads.
#[derive(Debug, Default)]
struct TopLevel<'a> {
    seq: Option<&'a [u8]>,
    kind: Option<&'a [u8]>,
    outcome: Option<&'a [u8]>,
}

/// Scans a JSON object's top level for `seq`, `kind` and `outcome` without parsing the values
/// (nested objects may hold members of the same names, so a plain substring search would not
/// do). It checks the object's structure, not every token: the leaf hash already binds the bytes.
fn top_level_fields(json: &[u8]) -> Result<TopLevel<'_>, &'static str> {
    let mut out = TopLevel::default();
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return Err("does not start with `{`");
    }
    i = skip_ws(json, i + 1);
    if json.get(i) == Some(&b'}') {
        return if skip_ws(json, i + 1) == json.len() {
            Ok(out)
        } else {
            Err("trailing bytes")
        };
    }
    loop {
        if json.get(i) != Some(&b'"') {
            return Err("expected a member name");
        }
        let key_end = string_end(json, i).ok_or("unterminated string")?;
        let key = &json[i + 1..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return Err("expected `:`");
        }
        let start = skip_ws(json, i + 1);
        let end = value_end(json, start).ok_or("malformed value")?;
        let value = &json[start..end];
        match key {
            b"seq" => out.seq = Some(value),
            b"kind" => out.kind = Some(value),
            b"outcome" => out.outcome = Some(value),
            _ => {}
        }
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b'}') => {
                return if skip_ws(json, i + 1) == json.len() {
                    Ok(out)
                } else {
                    Err("trailing bytes")
                };
            }
            _ => return Err("expected `,` or `}`"),
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `json[start]` is `"`; returns the index just past the closing quote.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let offset = memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        i += offset;
        if json[i] == b'"' {
            return Some(i + 1);
        }
        // A backslash escapes the next byte (for `\uXXXX` the rest are plain hex digits).
        i += 2;
    }
}

/// The index just past the JSON value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            // A number or a literal: runs to the next delimiter.
            let len = json[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(json.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

/// A canonical unsigned decimal: digits only, no leading zeros.
fn parse_seq(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 20 || (raw.len() > 1 && raw[0] == b'0') {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Verifies a whole export from `reader` (see [`ExportVerifier`]); also refuses an export whose
/// last line has no terminating newline (cut off mid-line).
pub fn verify_reader(
    keys: Vec<VerifierKey>,
    mut reader: impl BufRead,
) -> Result<VerifySummary, VerifyError> {
    let mut verifier = ExportVerifier::new(keys);
    // Lines are checked where they lie in the reader's buffer; only a line split across two
    // buffer fills is copied (into `carry`).
    let mut carry: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(VerifyError {
                    line: line_no + 1,
                    seq: None,
                    what: format!("cannot read the export: {e}"),
                });
            }
        };
        if chunk.is_empty() {
            break;
        }
        let mut at = 0;
        while let Some(offset) = memchr::memchr(b'\n', &chunk[at..]) {
            let end = at + offset + 1;
            line_no += 1;
            if carry.is_empty() {
                verifier.line(line_no, &chunk[at..end])?;
            } else {
                carry.extend_from_slice(&chunk[at..end]);
                verifier.line(line_no, &carry)?;
                carry.clear();
            }
            at = end;
        }
        carry.extend_from_slice(&chunk[at..]);
        let len = chunk.len();
        reader.consume(len);
    }
    if !carry.is_empty() {
        line_no += 1;
        // Check what came before first: an earlier problem is the one to report.
        verifier.line(line_no, &carry).map_err(|mut e| {
            e.what
                .push_str(" (and the export is truncated: it ends mid-line)");
            e
        })?;
        return Err(VerifyError {
            line: line_no,
            seq: None,
            what: "the export ends mid-line: its last line has no newline (truncated)".into(),
        });
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::SigningKey;
    use crate::{AuditEvent, EventKind, encode};
    use countersign_core::{PrincipalRef, Timestamp};

    const ORIGIN: &str = "countersign.test/audit";

    fn event(i: u64) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Attempt, Timestamp(1_700_000_000_000 + i as i64));
        e.principal = Some(PrincipalRef::agent(format!("agent-{}", i % 7)));
        e.action = Some("db.query".into());
        e.verdict = Some("allow".into());
        // A nested "seq" must not confuse the top-level scan.
        e.payload = Some(
            serde_json::json!({"seq": 99, "sql": "select \"seq\" from t", "n": [1, {"seq": 3}]}),
        );
        e
    }

    struct Log {
        records: Vec<AuditRecord>,
        /// Frontier after each size, index = size.
        roots: Vec<Hash>,
        frontiers: Vec<Frontier>,
    }

    fn log_of(events: Vec<AuditEvent>) -> Log {
        let mut f = Frontier::new();
        let mut log = Log {
            records: Vec::new(),
            roots: vec![f.root()],
            frontiers: vec![f.clone()],
        };
        for (i, e) in events.iter().enumerate() {
            let r = encode(i as u64, e).unwrap();
            f.push(r.leaf_hash);
            log.records.push(r);
            log.roots.push(f.root());
            log.frontiers.push(f.clone());
        }
        log
    }

    fn log(n: u64) -> Log {
        log_of((0..n).map(event).collect())
    }

    fn signed(log: &Log, size: u64, key: &SigningKey) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: log.roots[size as usize],
        }
        .sign(key)
        .expect("signs")
    }

    /// An export of records [from, to) with a checkpoint after every size in `at`.
    fn export_with(
        log: &Log,
        from: u64,
        to: u64,
        at: &[u64],
        signer: &dyn Fn(u64) -> SigningKey,
    ) -> Vec<String> {
        let mut lines = vec![header_line(ORIGIN, from, to)];
        if from > 0 {
            lines.push(prefix_line(&log.frontiers[from as usize]));
        }
        if at.contains(&from) {
            lines.push(checkpoint_line(&signed(log, from, &signer(from))));
        }
        for seq in from..to {
            lines.push(event_line(&log.records[seq as usize]));
            if at.contains(&(seq + 1)) {
                lines.push(checkpoint_line(&signed(log, seq + 1, &signer(seq + 1))));
            }
        }
        lines
    }

    fn export(log: &Log, every: u64, key: &SigningKey) -> Vec<String> {
        let n = log.records.len() as u64;
        let at: Vec<u64> = (1..=n).filter(|s| s % every == 0 || *s == n).collect();
        export_with(log, 0, n, &at, &|_| key.clone())
    }

    fn verify(lines: &[String], keys: Vec<VerifierKey>) -> Result<VerifySummary, VerifyError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify_reader(keys, text.as_bytes())
    }

    fn key() -> SigningKey {
        SigningKey::generate(ORIGIN).expect("valid name")
    }

    /// The line number (1-based) of record `seq` in `lines`.
    fn line_of(lines: &[String], seq: u64) -> u64 {
        let needle = format!("\"seq\":{seq},\"time\"");
        lines
            .iter()
            .position(|l| l.starts_with("{\"event\":") && l.contains(&needle))
            .map(|i| i as u64 + 1)
            .expect("record present")
    }

    #[test]
    fn intact_export_verifies() {
        let k = key();
        let log = log(50);
        let lines = export(&log, 10, &k);
        let s = verify(&lines, vec![k.verifier()]).expect("verifies");
        assert_eq!(s.events, 50);
        assert_eq!(s.checkpoints, 5);
        assert_eq!((s.first_seq, s.last_seq), (Some(0), Some(49)));
        assert_eq!(s.origin, ORIGIN);
        let last = s.last_checkpoint.expect("checkpoint");
        assert_eq!((last.size, last.root), (50, log.roots[50]));
    }

    #[test]
    fn line_shapes_are_exact() {
        let log = log(3);
        let line = event_line(&log.records[1]);
        assert!(line.starts_with("{\"event\":{"));
        assert!(line.ends_with(&format!(
            ",\"leaf\":\"{}\"}}",
            hex::encode(log.records[1].leaf_hash)
        )));
        // The line is JSON too, for tools that don't slice bytes.
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["event"]["seq"], 1);
        assert_eq!(
            header_line("o\"x", 2, 5),
            r#"{"countersign_audit_export":1,"origin":"o\"x","from":2,"to":5}"#
        );
        assert_eq!(
            prefix_line(&Frontier::new()),
            r#"{"prefix":{"size":0,"subtrees":[]}}"#
        );
        let cp = checkpoint_line("a\nb\n\n\u{2014} k x\n");
        assert_eq!(cp, "{\"checkpoint\":\"a\\nb\\n\\n\u{2014} k x\\n\"}");
    }

    #[test]
    fn top_level_scan_ignores_nested_members() {
        let r = encode(7, &event(7)).unwrap();
        let f = top_level_fields(r.event_json.as_bytes()).expect("object");
        assert_eq!(f.seq, Some(&b"7"[..]));
        assert_eq!(f.kind, Some(&b"\"attempt\""[..]));
        let f = top_level_fields(br#"{"a":{"seq":1},"b":"x\"seq\":2","seq":3}"#).expect("object");
        assert_eq!(f.seq, Some(&b"3"[..]));
        assert!(top_level_fields(br#"{"seq":3"#).is_err());
        assert!(top_level_fields(br#"[1]"#).is_err());
        assert!(top_level_fields(br#"{"seq":3}x"#).is_err());
        assert_eq!(parse_seq(b"0"), Some(0));
        assert_eq!(parse_seq(b"012"), None);
        assert_eq!(parse_seq(b"18446744073709551616"), None);
    }

    #[test]
    fn altered_record_is_named() {
        let k = key();
        let log = log(30);
        let mut lines = export(&log, 10, &k);
        let at = line_of(&lines, 13);
        lines[at as usize - 1] = lines[at as usize - 1].replace("agent-6", "agent-0");
        let err = verify(&lines, vec![k.verifier()]).expect_err("altered");
        assert_eq!((err.line, err.seq), (at, Some(13)), "{err}");
        assert!(err.what.contains("record 13 altered"), "{err}");
    }

    #[test]
    fn altered_record_with_fixed_leaf_fails_at_the_next_checkpoint() {
        let k = key();
        let log = log(30);
        let mut lines = export(&log, 10, &k);
        let at = line_of(&lines, 13) as usize - 1;
        let mut forged = log.records[13].clone();
        forged.event_json = forged.event_json.replace("agent-6", "agent-0");
        forged.leaf_hash = merkle::leaf_hash(forged.event_json.as_bytes());
        lines[at] = event_line(&forged);
        let err = verify(&lines, vec![k.verifier()]).expect_err("altered");
        let checkpoint_20 = line_of(&lines, 19) + 1;
        assert_eq!(err.line, checkpoint_20, "{err}");
        assert!(
            err.what
                .contains("checkpoint at size 20 does not match the events before it")
                && err.what.contains("[10, 20)"),
            "{err}"
        );
    }

    #[test]
    fn deleted_reordered_and_inserted_records_are_named() {
        let k = key();
        let log = log(30);
        let lines = export(&log, 10, &k);

        let mut deleted = lines.clone();
        let at = line_of(&deleted, 13) as usize - 1;
        deleted.remove(at);
        let err = verify(&deleted, vec![k.verifier()]).expect_err("deleted");
        assert_eq!((err.line, err.seq), (at as u64 + 1, Some(13)));
        assert!(err.what.contains("record 13 is missing"), "{err}");

        let mut swapped = lines.clone();
        let a = line_of(&swapped, 4) as usize - 1;
        swapped.swap(a, a + 1);
        let err = verify(&swapped, vec![k.verifier()]).expect_err("reordered");
        assert_eq!((err.line, err.seq), (a as u64 + 1, Some(4)));
        assert!(err.what.contains("found record 5"), "{err}");

        let mut duplicated = lines.clone();
        let a = line_of(&duplicated, 4) as usize - 1;
        duplicated.insert(a + 1, duplicated[a].clone());
        let err = verify(&duplicated, vec![k.verifier()]).expect_err("duplicated");
        assert_eq!((err.line, err.seq), (a as u64 + 2, Some(5)));
        assert!(
            err.what.contains("record 4 is out of order or duplicated"),
            "{err}"
        );

        // An inserted record renumbered to fit: the later records no longer fit their numbers.
        let mut inserted = lines.clone();
        let a = line_of(&inserted, 4) as usize - 1;
        let forged = encode(5, &event(1000)).unwrap();
        inserted.insert(a + 1, event_line(&forged));
        let err = verify(&inserted, vec![k.verifier()]).expect_err("inserted");
        assert_eq!(err.seq, Some(6), "{err}");
    }

    #[test]
    fn forged_resigned_and_foreign_checkpoints_are_refused() {
        let k = key();
        let log = log(20);
        let lines = export(&log, 10, &k);
        let cp = line_of(&lines, 9) as usize; // index of the checkpoint after record 9

        let mut forged = lines.clone();
        let note = signed(&log, 10, &k);
        // Well inside the signature bytes (the first characters are the key id).
        let sig_at = note.len() - 10;
        let mut bytes = note.into_bytes();
        bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
        forged[cp] = checkpoint_line(&String::from_utf8(bytes).expect("utf8"));
        let err = verify(&forged, vec![k.verifier()]).expect_err("forged");
        assert_eq!(err.line, cp as u64 + 1);
        assert!(err.what.contains("does not verify"), "{err}");

        let mut resigned = lines.clone();
        let other = key();
        resigned[cp] = checkpoint_line(&signed(&log, 10, &other));
        let err = verify(&resigned, vec![k.verifier()]).expect_err("other key");
        assert_eq!(err.line, cp as u64 + 1);
        assert!(err.what.contains("not signed by the trusted key"), "{err}");

        let mut foreign = lines.clone();
        let note = Checkpoint {
            origin: "elsewhere.example/log".into(),
            size: 10,
            root: log.roots[10],
        }
        .sign(&k)
        .expect("signs");
        foreign[cp] = checkpoint_line(&note);
        let err = verify(&foreign, vec![k.verifier()]).expect_err("origin");
        assert!(err.what.contains("origin"), "{err}");

        let mut too_big = lines.clone();
        too_big[cp] = checkpoint_line(&signed(&log, 12, &k));
        let err = verify(&too_big, vec![k.verifier()]).expect_err("size");
        assert_eq!((err.line, err.seq), (cp as u64 + 1, Some(10)));
        assert!(err.what.contains("claims more records"), "{err}");

        let mut shrinking = lines.clone();
        shrinking.push(checkpoint_line(&signed(&log, 10, &k)));
        let err = verify(&shrinking, vec![k.verifier()]).expect_err("decreasing");
        assert!(err.what.contains("decrease"), "{err}");

        let mut misplaced = lines.clone();
        misplaced.insert(cp + 3, checkpoint_line(&signed(&log, 11, &k)));
        let err = verify(&misplaced, vec![k.verifier()]).expect_err("misplaced");
        assert!(err.what.contains("out of place"), "{err}");
    }

    #[test]
    fn truncation_is_refused() {
        let k = key();
        let log = log(25);
        let lines = export(&log, 10, &k);

        // Cut after the checkpoint at 20: the header still says 25.
        let cut = line_of(&lines, 19) as usize + 1;
        let err = verify(&lines[..cut], vec![k.verifier()]).expect_err("truncated");
        assert!(err.what.contains("records [20, 25) are missing"), "{err}");

        // Records after the last checkpoint are not covered, even if the header agrees.
        let at: Vec<u64> = vec![10, 20];
        let uncovered = export_with(&log, 0, 25, &at, &|_| k.clone());
        let err = verify(&uncovered, vec![k.verifier()]).expect_err("uncovered");
        assert!(
            err.what.contains(
                "events after the last checkpoint (size 20) are not covered by a signature"
            ),
            "{err}"
        );

        let none = export_with(&log, 0, 25, &[], &|_| k.clone());
        let err = verify(&none, vec![k.verifier()]).expect_err("unsigned");
        assert!(err.what.contains("no checkpoint"), "{err}");

        // Cut mid-line.
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let err = verify_reader(vec![k.verifier()], &text.as_bytes()[..text.len() - 1])
            .expect_err("mid-line");
        assert!(err.what.contains("ends mid-line"), "{err}");
        let err = verify_reader(vec![k.verifier()], &text.as_bytes()[..text.len() - 40])
            .expect_err("mid-line");
        assert!(err.what.contains("mid-line"), "{err}");
    }

    #[test]
    fn garbage_empty_and_headerless_exports_are_refused() {
        let k = key();
        let log = log(5);
        let lines = export(&log, 5, &k);

        let err = verify(&[], vec![k.verifier()]).expect_err("empty");
        assert!(err.what.contains("empty export"), "{err}");

        let err = verify(&lines[1..], vec![k.verifier()]).expect_err("no header");
        assert_eq!(err.line, 1);
        assert!(err.what.contains("first line must be the header"), "{err}");

        let mut v2 = lines.clone();
        v2[0] = v2[0].replace(":1,", ":2,");
        let err = verify(&v2, vec![k.verifier()]).expect_err("version");
        assert!(
            err.what.contains("unsupported export format version 2"),
            "{err}"
        );

        for garbage in [
            "hello",
            "{\"event\":{\"seq\":2}}",
            "{}",
            "",
            "{\"checkpoint\":3}",
        ] {
            let mut bad = lines.clone();
            bad.insert(3, garbage.to_string());
            let err = verify(&bad, vec![k.verifier()]).expect_err(garbage);
            assert_eq!(err.line, 4, "{garbage}: {err}");
        }

        let mut upper = lines.clone();
        upper[1] = upper[1].to_uppercase();
        assert!(verify(&upper, vec![k.verifier()]).is_err());
    }

    #[test]
    fn errors_are_sticky() {
        let k = key();
        let log = log(5);
        let lines = export(&log, 5, &k);
        let mut v = ExportVerifier::new(vec![k.verifier()]);
        assert!(v.line(1, b"nonsense").is_err());
        let again = v.line(2, lines[1].as_bytes()).expect_err("still failed");
        assert_eq!(again.line, 1);
        assert_eq!(v.finish().expect_err("failed").line, 1);
    }

    #[test]
    fn partial_export_verifies_with_its_prefix() {
        let k = key();
        let log = log(100);
        let at: Vec<u64> = vec![37, 50, 64, 77, 100];
        let lines = export_with(&log, 37, 100, &at, &|_| k.clone());
        let s = verify(&lines, vec![k.verifier()]).expect("verifies");
        assert_eq!((s.events, s.checkpoints), (63, 5));
        assert_eq!((s.first_seq, s.last_seq), (Some(37), Some(99)));

        // A wrong prefix is caught by the first checkpoint.
        let mut bad = export_with(&log, 37, 100, &[50, 100], &|_| k.clone());
        bad[1] = prefix_line(&log.frontiers[36]).replace("\"size\":36", "\"size\":37");
        let err = verify(&bad, vec![k.verifier()]).expect_err("bad prefix");
        assert!(err.what.contains("prefix"), "{err}");
        let mut bad = export_with(&log, 37, 100, &[50, 100], &|_| k.clone());
        bad[1] = prefix_line(&log.frontiers[38]).replace("\"size\":38", "\"size\":37");
        let err = verify(&bad, vec![k.verifier()]).expect_err("bad prefix");
        assert!(err.what.contains("prefix"), "{err}");

        // No prefix at all.
        let mut missing = lines.clone();
        missing.remove(1);
        let err = verify(&missing, vec![k.verifier()]).expect_err("no prefix");
        assert_eq!(err.line, 2);
        assert!(err.what.contains("expected the prefix line"), "{err}");
    }

    #[test]
    fn consistency_holds_for_any_checkpoint_placement() {
        let k = key();
        let log = log(140);
        for seed in 0..40u64 {
            let from = (seed * 7) % 60;
            let mut at = vec![140];
            let mut s = from;
            let mut step = seed % 13 + 1;
            while s < 140 {
                at.push(s);
                s += step;
                step = (step * 5 + 3) % 17 + 1;
            }
            let lines = export_with(&log, from, 140, &at, &|_| k.clone());
            verify(&lines, vec![k.verifier()])
                .unwrap_or_else(|e| panic!("seed {seed} (from {from}, at {at:?}): {e}"));
        }
    }

    fn rotation_log(k2: &SigningKey) -> Log {
        let mut events: Vec<AuditEvent> = (0..30).map(event).collect();
        events[12] = crate::key_rotation_event(Timestamp(5), &k2.verifier());
        log_of(events)
    }

    #[test]
    fn key_rotation_is_accepted_once_covered() {
        let k1 = key();
        let k2 = key();
        let log = rotation_log(&k2);
        let at = [10, 20, 30];
        let signer = |size: u64| if size <= 20 { k1.clone() } else { k2.clone() };
        let lines = export_with(&log, 0, 30, &at, &signer);
        let s = verify(&lines, vec![k1.verifier()]).expect("rotation covered by 20");
        assert_eq!(s.key_rotations, 1);

        // After the rotation the old key is retired.
        let stale = export_with(&log, 0, 30, &at, &|_| k1.clone());
        let err = verify(&stale, vec![k1.verifier()]).expect_err("retired key");
        assert!(err.what.contains("retired key"), "{err}");

        // Signing with the new key before a checkpoint by the old key covers the announcement.
        let early = export_with(&log, 0, 30, &at, &|s| {
            if s <= 10 { k1.clone() } else { k2.clone() }
        });
        let err = verify(&early, vec![k1.verifier(), k2.verifier()]).expect_err("not covered");
        assert!(err.what.contains("not trusted yet"), "{err}");
    }

    #[test]
    fn unannounced_key_is_refused() {
        let k1 = key();
        let k2 = key();
        let log = log(30);
        let lines = export_with(&log, 0, 30, &[10, 20, 30], &|s| {
            if s <= 10 { k1.clone() } else { k2.clone() }
        });
        let err = verify(&lines, vec![k1.verifier(), k2.verifier()]).expect_err("unannounced");
        assert!(err.what.contains("not trusted yet"), "{err}");
        let err = verify(&lines, vec![k1.verifier()]).expect_err("unknown");
        assert!(err.what.contains("unknown key"), "{err}");
    }

    #[test]
    fn malformed_key_rotation_is_refused() {
        let k = key();
        let mut events: Vec<AuditEvent> = (0..5).map(event).collect();
        events[2].kind = EventKind::KeyRotated;
        events[2].outcome = Some("new verifier key: garbage".into());
        let log = log_of(events);
        let err = verify(&export(&log, 5, &k), vec![k.verifier()]).expect_err("bad rotation");
        assert_eq!(err.seq, Some(2));
        assert!(err.what.contains("malformed key rotation"), "{err}");
    }
}
