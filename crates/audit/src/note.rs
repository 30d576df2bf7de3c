//! Signed notes and tree-head checkpoints, per the C2SP `signed-note` and `tlog-checkpoint`
//! specifications, with Ed25519 keys.
//!
//! A checkpoint commits to the log's Merkle tree at one size:
//!
//! ```text
//! countersign.example/audit
//! 1000
//! 5dnaeacGWamtVZy3Ad7Zoqudgjqtl0lgz+Nw7/RgQyg=
//!
//! — countersign.example/audit Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5…
//! ```
//!
//! The body is the origin, the decimal size and the base64 root, one per line; extension lines
//! may follow (accepted and ignored here). After a blank line come signature lines: an em dash
//! (U+2014), a space, the key name, a space and `base64(key id ‖ Ed25519 signature)`, where the
//! signature covers the body including its final newline. The 4-byte key id is the first four
//! bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)`.
//!
//! Keys are written as in Go's `golang.org/x/mod/sumdb/note`, so keys and notes interoperate with
//! the Go tooling (and its published test vector is checked below):
//! a verifier key is `<name>+<hex key id>+<base64(0x01 ‖ public key)>` and a private key is
//! `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ 32-byte seed)>`.
//!
//! Opening a note follows the signed-note rules: lines by keys other than the expected one (name
//! *and* id) are ignored, a line by the expected key that does not verify rejects the whole note,
//! and a note with no verified line by the expected key is rejected.

use crate::merkle::Hash;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};
use std::fmt;

/// The signature type byte of Ed25519 in signed-note key ids and key encodings.
const ALG_ED25519: u8 = 0x01;
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
const SIGNATURE_DASH: &str = "\u{2014} ";
/// Verifiers must accept at least 16 signatures; more than this is treated as garbage rather than
/// spending time verifying an attacker's padding.
const MAX_SIGNATURES: usize = 100;

/// Why a key, note or checkpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error(
        "invalid key name {0:?}: a name must be non-empty, without spaces, `+` or control characters"
    )]
    InvalidKeyName(String),
    #[error("malformed key text: {0}")]
    MalformedKey(String),
    #[error(
        "key id {found} in the key text of {name} does not match the key (its id is {expected})"
    )]
    KeyIdMismatch {
        name: String,
        found: String,
        expected: String,
    },
    #[error("cannot sign this text: {0}")]
    InvalidText(String),
    #[error("malformed note: {0}")]
    MalformedNote(String),
    #[error("malformed signature line {line}: {reason}")]
    MalformedSignature { line: usize, reason: String },
    #[error("note has no signature by key {name}+{key_id} (signed by: {signers})")]
    NotSignedByKey {
        name: String,
        key_id: String,
        signers: String,
    },
    #[error(
        "signature by key {name}+{key_id} does not verify: the note was altered or the signature forged"
    )]
    BadSignature { name: String, key_id: String },
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::InvalidKeyName(name.to_string()));
    }
    Ok(())
}

/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4]`, per signed-note.
fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let digest: [u8; 32] = h.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Decodes `base64(0x01 ‖ 32 bytes)`, the key material of both key texts.
fn decode_key_material(b64: &str) -> Result<[u8; 32], NoteError> {
    let bytes = BASE64
        .decode(b64)
        .map_err(|e| NoteError::MalformedKey(format!("key material is not base64: {e}")))?;
    match bytes.split_first() {
        Some((&ALG_ED25519, rest)) => <[u8; 32]>::try_from(rest).map_err(|_| {
            NoteError::MalformedKey(format!(
                "an Ed25519 key is 32 bytes, this one is {}",
                rest.len()
            ))
        }),
        Some((alg, _)) => Err(NoteError::MalformedKey(format!(
            "unsupported signature type 0x{alg:02x} (only Ed25519, 0x01, is supported)"
        ))),
        None => Err(NoteError::MalformedKey("empty key material".into())),
    }
}

fn encode_key_material(key: &[u8; 32]) -> String {
    let mut bytes = [0u8; 33];
    bytes[0] = ALG_ED25519;
    bytes[1..].copy_from_slice(key);
    BASE64.encode(bytes)
}

fn parse_key_id(name: &str, text: &str, expected: [u8; 4]) -> Result<(), NoteError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey(format!(
            "key id {text:?} is not 8 hexadecimal digits"
        )));
    }
    if !text.eq_ignore_ascii_case(&hex::encode(expected)) {
        return Err(NoteError::KeyIdMismatch {
            name: name.to_string(),
            found: text.to_string(),
            expected: hex::encode(expected),
        });
    }
    Ok(())
}

/// A named Ed25519 signing key for notes.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    verifier: VerifierKey,
}

impl fmt::Debug for SigningKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.verifier.name)
            .field("key_id", &hex::encode(self.verifier.id))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key named `name` (non-empty, no whitespace, no `+`).
    pub fn generate(name: &str) -> Result<SigningKey, NoteError> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let key = SigningKey::from_seed(name, &seed);
        // Best effort: the key itself zeroizes on drop; don't leave the seed on the stack too.
        seed.fill(0);
        Ok(key)
    }

    fn from_seed(name: &str, seed: &[u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = key.verifying_key();
        let verifier = VerifierKey {
            name: name.to_string(),
            id: key_id(name, public.as_bytes()),
            key: public,
        };
        SigningKey { key, verifier }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 ‖ 32-byte seed)>` (surrounding
    /// whitespace ignored), checking that the key id matches.
    pub fn from_private_text(text: &str) -> Result<SigningKey, NoteError> {
        let rest = text.trim().strip_prefix(PRIVATE_PREFIX).ok_or_else(|| {
            NoteError::MalformedKey(format!("a private key starts with `{PRIVATE_PREFIX}`"))
        })?;
        // The name and the id cannot contain `+`; the base64 part can.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey(
                "expected PRIVATE+KEY+<name>+<key id>+<key>".into(),
            ));
        };
        check_name(name)?;
        let mut seed = decode_key_material(material)?;
        let key = SigningKey::from_seed(name, &seed);
        seed.fill(0);
        parse_key_id(name, id, key.verifier.id)?;
        Ok(key)
    }

    /// The private key text (see [`SigningKey::from_private_text`]). Keep it secret.
    pub fn to_private_text(&self) -> String {
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.verifier.name,
            hex::encode(self.verifier.id),
            encode_key_material(self.key.as_bytes())
        )
    }

    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    /// The matching public key.
    pub fn verifier(&self) -> VerifierKey {
        self.verifier.clone()
    }

    /// Signs `body` (which must end with a newline and hold no control characters but newlines)
    /// and returns the signed note: `body ‖ "\n" ‖ "— <name> <base64(key id ‖ signature)>\n"`.
    pub fn sign_note(&self, body: &str) -> Result<String, NoteError> {
        if !body.ends_with('\n') {
            return Err(NoteError::InvalidText(
                "a note's text must end with a newline".into(),
            ));
        }
        if body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::InvalidText(
                "a note's text must not contain control characters other than newline".into(),
            ));
        }
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.verifier.id);
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{body}\n{SIGNATURE_DASH}{} {}\n",
            self.verifier.name,
            BASE64.encode(blob)
        ))
    }
}

/// A named Ed25519 public key for verifying notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<hex8 key id>+<base64(0x01 ‖ 32-byte public key)>` (surrounding whitespace
    /// ignored), checking that the key id matches.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        if text.starts_with(PRIVATE_PREFIX) {
            // Refuse loudly: a private key pasted where a public one belongs is a leak to fix.
            return Err(NoteError::MalformedKey(
                "this is a private key; give the verifier key (name+id+key) instead".into(),
            ));
        }
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey(
                "expected <name>+<key id>+<key>".into(),
            ));
        };
        check_name(name)?;
        let public = decode_key_material(material)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key".into()))?;
        if key.is_weak() {
            // A small-order key lets one signature verify for many messages.
            return Err(NoteError::MalformedKey(
                "weak (small-order) Ed25519 public key".into(),
            ));
        }
        let expected = key_id(name, &public);
        parse_key_id(name, id, expected)?;
        Ok(VerifierKey {
            name: name.to_string(),
            id: expected,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4]`.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }

    /// `name+hexid`: how messages name this key (without the key material).
    pub fn label(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.id))
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            encode_key_material(self.key.as_bytes())
        )
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<VerifierKey, NoteError> {
        VerifierKey::parse(s)
    }
}

/// Splits a signed note into its text and checks that `key` signed it (signed-note rules).
/// Returns the text, including its final newline.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, NoteError> {
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::MalformedNote(
            "contains control characters other than newline".into(),
        ));
    }
    if !note.ends_with('\n') {
        return Err(NoteError::MalformedNote(
            "does not end with a newline (truncated?)".into(),
        ));
    }
    // The text is separated from the signatures by the note's last blank line.
    let Some(split) = note.rfind("\n\n") else {
        return Err(NoteError::MalformedNote(
            "no blank line between the text and the signatures".into(),
        ));
    };
    let text = &note[..=split];
    let signatures = &note[split + 2..];
    if signatures.is_empty() {
        return Err(NoteError::MalformedNote("no signature lines".into()));
    }
    let mut verified = false;
    let mut signers = Vec::new();
    for (i, line) in signatures.trim_end_matches('\n').split('\n').enumerate() {
        let line_no = i + 1;
        if line_no > MAX_SIGNATURES {
            return Err(NoteError::MalformedNote(format!(
                "more than {MAX_SIGNATURES} signatures"
            )));
        }
        let malformed = |reason: &str| NoteError::MalformedSignature {
            line: line_no,
            reason: reason.to_string(),
        };
        let body = line
            .strip_prefix(SIGNATURE_DASH)
            .ok_or_else(|| malformed("does not start with an em dash and a space"))?;
        let (name, b64) = body
            .rsplit_once(' ')
            .ok_or_else(|| malformed("expected `— <key name> <signature>`"))?;
        check_name(name).map_err(|_| malformed("invalid key name"))?;
        let blob = BASE64
            .decode(b64)
            .map_err(|_| malformed("signature is not base64"))?;
        if blob.len() < 5 {
            return Err(malformed("signature too short to hold a key id"));
        }
        let (id, signature) = blob.split_at(4);
        signers.push(format!("{name}+{}", hex::encode(id)));
        // Lines by other keys, even sharing the name or the id (but not both), are ignored.
        if name != key.name || id != key.id {
            continue;
        }
        let ok = ed25519_dalek::Signature::from_slice(signature)
            .ok()
            .is_some_and(|sig| key.key.verify_strict(text.as_bytes(), &sig).is_ok());
        if !ok {
            return Err(NoteError::BadSignature {
                name: key.name.clone(),
                key_id: hex::encode(key.id),
            });
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NotSignedByKey {
            name: key.name.clone(),
            key_id: hex::encode(key.id),
            signers: signers.join(", "),
        });
    }
    Ok(text)
}

/// A signed tree head: the log `origin` had `size` leaves with Merkle root `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// The signed checkpoint note.
    pub fn sign(&self, key: &SigningKey) -> Result<String, NoteError> {
        if self.origin.is_empty() || self.origin.chars().any(char::is_control) {
            return Err(NoteError::InvalidText(
                "a checkpoint origin must be a non-empty single line".into(),
            ));
        }
        key.sign_note(&self.body())
    }

    /// Parses a signed checkpoint note and verifies it: a signature line by `key` (name and key id)
    /// that verifies (other signers' lines are ignored), the body's shape, and the origin when
    /// `origin` is given. Extension lines after the root are accepted and ignored.
    pub fn open(
        note: &str,
        key: &VerifierKey,
        origin: Option<&str>,
    ) -> Result<Checkpoint, NoteError> {
        let text = open_note(note, key)?;
        let checkpoint = Checkpoint::parse_body(text)?;
        if let Some(expected) = origin
            && checkpoint.origin != expected
        {
            return Err(NoteError::WrongOrigin {
                expected: expected.to_string(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }

    /// Parses a checkpoint body (unverified: only for text [`open_note`] returned).
    fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = |what: &str| NoteError::MalformedCheckpoint(what.to_string());
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text does not end with a newline"))?
            .split('\n')
            .collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(bad("expected origin, size and root hash lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        // Decimal, no sign, no leading zeros: one text per size, as tlog-checkpoint requires.
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(&format!("tree size {size:?} is not a plain decimal")));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad(&format!("tree size {size} is too large")))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|b| <Hash>::try_from(b).ok())
            .ok_or_else(|| bad("root hash is not the base64 of 32 bytes"))?;
        if extensions.iter().any(|l| l.is_empty()) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: (*origin).to_string(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key and note of Go's golang.org/x/mod/sumdb/note tests.
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn key(name: &str) -> SigningKey {
        SigningKey::generate(name).expect("valid name")
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "countersign.example/audit".into(),
            size: 1234,
            root: crate::merkle::leaf_hash(b"root"),
        }
    }

    #[test]
    fn go_reference_vector() {
        let v = VerifierKey::parse(GO_VKEY).expect("parses");
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(hex::encode(v.key_id()), "c74f20a3");
        assert_eq!(v.to_string(), GO_VKEY);
        let s = SigningKey::from_private_text(GO_SKEY).expect("parses");
        assert_eq!(s.verifier(), v);
        assert_eq!(s.to_private_text(), GO_SKEY);
        // Ed25519 is deterministic, so signing reproduces the published note byte for byte.
        let note = s.sign_note(GO_TEXT).expect("signs");
        assert_eq!(note, format!("{GO_TEXT}\n{GO_SIG}"));
        assert_eq!(open_note(&note, &v).expect("opens"), GO_TEXT);
    }

    #[test]
    fn key_id_is_sha256_of_name_newline_type_and_key() {
        let s = key("log.example/k1");
        let v = s.verifier();
        let mut h = Sha256::new();
        h.update(b"log.example/k1\n\x01");
        h.update(v.key.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        assert_eq!(v.key_id(), digest[..4]);
        assert_eq!(VerifierKey::parse(&v.to_string()).expect("round trip"), v);
        let again = SigningKey::from_private_text(&s.to_private_text()).expect("round trip");
        assert_eq!(again.verifier(), v);
        assert!(!format!("{s:?}").contains(&s.to_private_text()[30..]));
    }

    #[test]
    fn sign_and_open_round_trip() {
        let s = key("countersign.example/audit");
        let c = checkpoint();
        let note = c.sign(&s).expect("signs");
        assert!(note.starts_with(&c.body()));
        assert_eq!(c.body().lines().count(), 3);
        let opened = Checkpoint::open(&note, &s.verifier(), Some(&c.origin)).expect("opens");
        assert_eq!(opened, c);
        assert_eq!(
            Checkpoint::open(&note, &s.verifier(), None).expect("opens"),
            c
        );
    }

    #[test]
    fn tampered_body_is_a_bad_signature() {
        let s = key("k");
        let note = checkpoint()
            .sign(&s)
            .expect("signs")
            .replace("1234", "1235");
        assert!(matches!(
            Checkpoint::open(&note, &s.verifier(), None),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn tampered_signature_is_a_bad_signature() {
        let s = key("k");
        let note = checkpoint().sign(&s).expect("signs");
        let sig_start = note.rfind(' ').expect("signature line") + 1;
        let blob = BASE64.decode(note[sig_start..].trim_end()).expect("base64");
        for byte in [4, 30, 67] {
            let mut bad = blob.clone();
            bad[byte] ^= 0x20;
            let forged = format!("{}{}\n", &note[..sig_start], BASE64.encode(&bad));
            assert!(
                matches!(
                    Checkpoint::open(&forged, &s.verifier(), None),
                    Err(NoteError::BadSignature { .. })
                ),
                "byte {byte}"
            );
        }
        // A different key id is another key's line, so ours is missing.
        let mut other_id = blob.clone();
        other_id[0] ^= 1;
        let forged = format!("{}{}\n", &note[..sig_start], BASE64.encode(&other_id));
        assert!(matches!(
            Checkpoint::open(&forged, &s.verifier(), None),
            Err(NoteError::NotSignedByKey { .. })
        ));
    }

    #[test]
    fn other_key_same_name_is_not_ours() {
        let ours = key("countersign.example/audit");
        let theirs = key("countersign.example/audit");
        let note = checkpoint().sign(&theirs).expect("signs");
        let err = Checkpoint::open(&note, &ours.verifier(), None).expect_err("refused");
        assert!(matches!(err, NoteError::NotSignedByKey { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&hex::encode(theirs.verifier().key_id()))
        );

        // Our id and a valid signature under another name: another key's line, so ignored.
        let note = checkpoint().sign(&ours).expect("signs").replace(
            "\u{2014} countersign.example/audit ",
            "\u{2014} countersign.example/other ",
        );
        assert!(matches!(
            Checkpoint::open(&note, &ours.verifier(), None),
            Err(NoteError::NotSignedByKey { .. })
        ));
    }

    #[test]
    fn wrong_origin_is_refused() {
        let s = key("k");
        let note = checkpoint().sign(&s).expect("signs");
        assert!(matches!(
            Checkpoint::open(&note, &s.verifier(), Some("other.example/log")),
            Err(NoteError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn multiple_signatures_one_ours() {
        let ours = key("ours");
        let witness = key("witness.example");
        let stranger = key("stranger");
        let c = checkpoint();
        let line = |k: &SigningKey| {
            let n = k.sign_note(&c.body()).expect("signs");
            n[c.body().len() + 1..].to_string()
        };
        let note = format!(
            "{}\n{}{}{}",
            c.body(),
            line(&witness),
            line(&ours),
            line(&stranger)
        );
        assert_eq!(
            Checkpoint::open(&note, &ours.verifier(), None).expect("opens"),
            c
        );
        assert_eq!(
            Checkpoint::open(&note, &witness.verifier(), None).expect("opens"),
            c
        );
        // A garbled line from an unrelated signer is still a malformed note.
        let garbled = format!("{}\n{}\u{2014} x !!!\n", c.body(), line(&ours));
        assert!(matches!(
            Checkpoint::open(&garbled, &ours.verifier(), None),
            Err(NoteError::MalformedSignature { line: 2, .. })
        ));
    }

    #[test]
    fn extension_lines_are_accepted() {
        let s = key("k");
        let c = checkpoint();
        let note = s
            .sign_note(&format!("{}ext one\next two\n", c.body()))
            .expect("signs");
        assert_eq!(
            Checkpoint::open(&note, &s.verifier(), None).expect("opens"),
            c
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        let s = key("k");
        let v = s.verifier();
        let good = checkpoint().sign(&s).expect("signs");
        let sig_line = &good[checkpoint().body().len() + 1..];
        let cases: Vec<(String, &str)> = vec![
            (checkpoint().body(), "no signatures at all"),
            (
                format!("{}\n", checkpoint().body()),
                "blank line, no signatures",
            ),
            (good.trim_end().to_string(), "missing final newline"),
            (good.replace('\u{2014}', "-"), "hyphen instead of em dash"),
            (good.replace("audit\n", "audit\r\n"), "carriage return"),
            (format!("{}\n{}", "\n1\nAAAA\n", sig_line), "bad body"),
        ];
        for (note, what) in cases {
            let err = Checkpoint::open(&note, &v, None).expect_err(what);
            assert!(
                matches!(
                    err,
                    NoteError::MalformedNote(_)
                        | NoteError::MalformedSignature { .. }
                        | NoteError::BadSignature { .. }
                ),
                "{what}: {err}"
            );
        }
        // Bodies that are signed but are not checkpoints.
        for body in [
            "origin\n1234\n",
            "\n1234\nAAAA\n",
            "origin\n01234\nAAAA\n",
            "origin\n-1\nAAAA\n",
            "origin\n99999999999999999999\nAAAA\n",
            "origin\n12\nAAAA\n",
            "origin\n12\nnot base64!\n",
        ] {
            let note = s.sign_note(body).expect("signs");
            assert!(
                matches!(
                    Checkpoint::open(&note, &v, None),
                    Err(NoteError::MalformedCheckpoint(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn key_text_garbage_is_refused() {
        let v = key("log.example/k").verifier().to_string();
        let s = key("log.example/k").to_private_text();
        for bad in [
            "",
            "nonsense",
            "a+b",
            "a+b+c",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            GO_SKEY,
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            VerifierKey::parse(
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        // Every single-character change of a valid key is caught.
        let bytes = v.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            // Not a hex digit of either case, so a changed key id can't be a case variant.
            b[i] = if b[i] == b'Q' { b'R' } else { b'Q' };
            if let Ok(text) = String::from_utf8(b) {
                assert!(
                    VerifierKey::parse(&text).is_err(),
                    "changed byte {i}: {text}"
                );
            }
        }
        for bad in [
            GO_VKEY.to_string(),
            s.replacen("PRIVATE+KEY+", "PRIVATE+KEY+x", 1),
            s.replace("+KEY+", "+KYE+"),
            s[..s.len() - 4].to_string(),
        ] {
            assert!(SigningKey::from_private_text(&bad).is_err(), "{bad:?}");
        }
        for name in ["", "a b", "a+b", "a\nb", "a\u{2003}b"] {
            assert!(
                matches!(
                    SigningKey::generate(name),
                    Err(NoteError::InvalidKeyName(_))
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn sign_refuses_text_that_cannot_round_trip() {
        let s = key("k");
        assert!(s.sign_note("no newline").is_err());
        assert!(s.sign_note("tab\there\n").is_err());
        let c = Checkpoint {
            origin: "two\nlines".into(),
            ..checkpoint()
        };
        assert!(c.sign(&s).is_err());
    }
}
