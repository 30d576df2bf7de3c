//! The audit log as pure functions: the record format, its Merkle tree, signed checkpoints and the
//! offline verifier of exports.
//!
//! Every step the gateway takes (an attempt and its verdict, a request, a vote, a settlement, a
//! grant issued, used, expired or revoked, a policy load, a key rotation) becomes an
//! [`AuditEvent`]. [`encode`] numbers it and writes its canonical JSON; those exact bytes are a
//! leaf of an RFC 6962 Merkle tree ([`merkle`]). The log periodically signs the tree head as a
//! C2SP checkpoint ([`note`]), so anyone holding the verifier key can check that a record is in the
//! log (inclusion proof), that the log only ever grew (consistency proof), or that a whole export
//! is intact ([`export`]). Changing, removing, reordering or inserting a record changes every root
//! computed over it, which no longer matches the signed checkpoints.
//!
//! `docs/audit-format.md` describes the formats for implementers of other verifiers.

pub mod event;
pub mod export;
pub mod merkle;
pub mod note;

pub use event::{AuditEvent, EventKind};

use countersign_core::canonical::{CanonicalError, to_canonical_string_with};
use merkle::Hash;

/// One stored record: `event_json` is the canonical JSON of the event including its `"seq"`
/// field; the exact bytes hashed into the leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub event_json: String,
    /// `merkle::leaf_hash(event_json)`.
    pub leaf_hash: Hash,
}

/// Numbers `event` as `seq` and encodes it canonically (`countersign_core::canonical`): the bytes
/// of the leaf.
pub fn encode(seq: u64, event: &AuditEvent) -> Result<AuditRecord, CanonicalError> {
    let event_json = to_canonical_string_with(event, "seq", seq)?;
    let leaf_hash = merkle::leaf_hash(event_json.as_bytes());
    Ok(AuditRecord {
        seq,
        event_json,
        leaf_hash,
    })
}

/// What the `outcome` of an [`EventKind::KeyRotated`] event starts with; the verifier key text
/// follows (`new verifier key: <name>+<hex key id>+<base64 key>`).
pub const KEY_ROTATION_PREFIX: &str = "new verifier key: ";

/// The event announcing that checkpoints will from now on be signed by `new_key`.
pub fn key_rotation_event(
    time: countersign_core::Timestamp,
    new_key: &note::VerifierKey,
) -> AuditEvent {
    let mut event = AuditEvent::new(EventKind::KeyRotated, time);
    event.outcome = Some(format!("{KEY_ROTATION_PREFIX}{new_key}"));
    event.channel = Some("system".into());
    event
}

/// The key announced by a key-rotation event's `outcome`.
pub fn parse_key_rotation(outcome: &str) -> Result<note::VerifierKey, note::NoteError> {
    let text = outcome.strip_prefix(KEY_ROTATION_PREFIX).ok_or_else(|| {
        note::NoteError::MalformedKey(format!(
            "a key rotation's outcome must start with `{KEY_ROTATION_PREFIX}`"
        ))
    })?;
    note::VerifierKey::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::Timestamp;

    #[test]
    fn encode_numbers_and_hashes_the_canonical_bytes() {
        let mut e = AuditEvent::new(EventKind::PolicyLoaded, Timestamp(1_700_000_000_000));
        e.policy_version = Some("v7".into());
        let r = encode(42, &e).unwrap();
        assert_eq!(r.seq, 42);
        assert_eq!(
            r.event_json,
            r#"{"kind":"policy.loaded","policy_version":"v7","seq":42,"time":1700000000000}"#
        );
        assert_eq!(r.leaf_hash, merkle::leaf_hash(r.event_json.as_bytes()));
        // Different numbers, different leaves.
        assert_ne!(encode(43, &e).unwrap().leaf_hash, r.leaf_hash);
    }

    fn event_with_every_field() -> AuditEvent {
        use countersign_core::{Classification, PrincipalRef, Resource, ResourceRef};
        let mut e = AuditEvent::new(EventKind::Attempt, Timestamp(-3));
        e.actor = Some(PrincipalRef::user("ré\"viewer"));
        e.principal = Some(PrincipalRef::user("agent\n1"));
        e.on_behalf_of = Some("😀".into());
        e.action = Some("db.read".into());
        e.resources = vec![Resource {
            parent: Some(ResourceRef {
                kind: "Database".into(),
                id: "prod".into(),
            }),
            classification: Some(Classification::Restricted),
            tags: ["pii".to_owned(), "eu".to_owned()].into(),
            ..Resource::new("Table", "prod/users")
        }];
        e.payload_digest = Some("ab".repeat(32));
        e.payload = Some(
            serde_json::json!({"sql": "SELECT 1", "params": [1, 2.5, null, {"z": 1, "a": [true]}]}),
        );
        e.justification = Some("\u{1}".into());
        e.verdict = Some("allow".into());
        e.reason = Some("r".into());
        e.policy_version = Some("v".into());
        e.policy_ids = vec!["b".into(), "a".into()];
        e.request_id = Some("req".into());
        e.grant_id = Some("g".into());
        e.vote_id = Some("v1".into());
        e.channel = Some("prod".into());
        e.outcome = Some("SELECT 1".into());
        e.break_glass = true;
        e
    }

    #[test]
    fn every_field_encodes_as_its_json_value_does() {
        let e = event_with_every_field();
        let mut value = serde_json::to_value(&e).unwrap();
        value
            .as_object_mut()
            .unwrap()
            .insert("seq".into(), 9.into());
        let mut expected = Vec::new();
        countersign_core::canonical::write_value(&value, &mut expected);
        assert_eq!(encode(9, &e).unwrap().event_json.as_bytes(), expected);
    }

    #[test]
    fn members_are_declared_in_the_order_they_are_encoded() {
        // serde_json writes members in declaration order; the canonical form in name order.
        // Equal output means encoding an event (its principals and resources included) never
        // reorders members, which is what keeps it cheap.
        let mut e = event_with_every_field();
        // A JSON payload keeps the order its members were given in (with serde_json's
        // `preserve_order`) or name order; given in name order, it is the same either way.
        e.payload = Some(serde_json::json!({"params": [{"a": [true], "z": 1}], "sql": "SELECT 1"}));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            countersign_core::canonical::to_canonical_string(&e).unwrap()
        );
    }

    #[test]
    fn key_rotation_round_trips() {
        let key = note::SigningKey::generate("log.example/audit").expect("valid name");
        let e = key_rotation_event(Timestamp(5), &key.verifier());
        assert_eq!(e.kind.as_str(), "audit.key_rotated");
        let outcome = e.outcome.clone().unwrap_or_default();
        assert_eq!(parse_key_rotation(&outcome).ok(), Some(key.verifier()));
        assert!(parse_key_rotation("new key: x").is_err());
        assert!(
            encode(0, &e)
                .unwrap()
                .event_json
                .contains(r#""kind":"audit.key_rotated""#)
        );
    }
}
