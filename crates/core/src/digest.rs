//! The payload digest: what binds an approval to exactly the action that was reviewed.
//!
//! `PayloadDigest = SHA-256("countersign.payload.v2" ‖ 0x00 ‖ canonical JSON of
//! {"action": A, "payload": P, "resources": [R, …]})`, with the canonical JSON of
//! [`crate::canonical`] and each `R` the whole resource as the attempt describes it: type, id,
//! and, when present, parent, classification and tags. Everything policy can look at is inside
//! the digest, so the same text aimed at another table, at a table of another database, at data
//! of another classification, or sent as another action kind is a new attempt.
//! Justification and context are outside it: a different reason for the same action is the same
//! action.

use crate::attempt::{Action, Resource};
use crate::canonical::write_canonical;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"countersign.payload.v2\0";

/// Gives a SHA-256 newtype (`struct Name([u8; 32])`) its text form: 64 lowercase hex digits
/// for `to_hex`, `Display`, `Debug` and serde, parsed back by `parse_hex`.
macro_rules! sha256_hex_text {
    ($name:ident, $what:literal) => {
        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn parse_hex(text: &str) -> Result<$name, String> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(text, &mut out).map_err(|e| {
                    format!(concat!($what, " `{}` is not 64 hex digits: {}"), text, e)
                })?;
                Ok($name(out))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse_hex(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_hex()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}
pub(crate) use sha256_hex_text;

/// SHA-256 of an attempt's canonical action, resources and payload; shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PayloadDigest([u8; 32]);

impl PayloadDigest {
    pub fn compute(
        action: &Action,
        resources: &[Resource],
        payload: &serde_json::Value,
    ) -> PayloadDigest {
        // Fields in name order, as the canonical form writes them.
        #[derive(Serialize)]
        struct Digested<'a> {
            action: &'a str,
            payload: &'a serde_json::Value,
            resources: &'a [Resource],
        }
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(DOMAIN);
        let digested = Digested {
            action: action.as_str(),
            payload,
            resources,
        };
        if let Err(e) = write_canonical(&digested, &mut bytes) {
            unreachable!("strings, string sets and a JSON value always encode: {e}");
        }
        PayloadDigest(Sha256::digest(&bytes).into())
    }
}

sha256_hex_text!(PayloadDigest, "payload digest");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db(id: &str) -> Vec<Resource> {
        vec![Resource::new("Database", id)]
    }

    fn export() -> Action {
        Action::parse("db.export").unwrap()
    }

    #[test]
    fn known_vector() {
        // Pinned so that a change of encoding is a deliberate, visible decision.
        let d = PayloadDigest::compute(&export(), &db("prod"), &json!("COPY t TO STDOUT"));
        let mut bytes = DOMAIN.to_vec();
        bytes.extend_from_slice(
            br#"{"action":"db.export","payload":"COPY t TO STDOUT","resources":[{"id":"prod","type":"Database"}]}"#,
        );
        assert_eq!(d.to_hex(), hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn binds_action_resource_and_payload() {
        let base = PayloadDigest::compute(&export(), &db("prod"), &json!("SELECT 1"));
        assert_ne!(
            base,
            PayloadDigest::compute(&export(), &db("prod"), &json!("SELECT 2"))
        );
        assert_ne!(
            base,
            PayloadDigest::compute(&export(), &db("staging"), &json!("SELECT 1"))
        );
        assert_ne!(
            base,
            PayloadDigest::compute(
                &Action::parse("db.read").unwrap(),
                &db("prod"),
                &json!("SELECT 1")
            )
        );
    }

    #[test]
    fn binds_parent_classification_and_tags() {
        use crate::attempt::{Classification, ResourceRef};
        let payload = json!("DELETE FROM users");
        let table = |parent: &str| Resource {
            parent: Some(ResourceRef {
                kind: "Database".into(),
                id: parent.into(),
            }),
            ..Resource::new("Table", "public.users")
        };
        let del = Action::parse("db.destructive").unwrap();
        let staging = PayloadDigest::compute(&del, &[table("staging")], &payload);
        assert_ne!(
            staging,
            PayloadDigest::compute(&del, &[table("prod")], &payload)
        );
        let restricted = Resource {
            classification: Some(Classification::Restricted),
            ..table("staging")
        };
        assert_ne!(
            staging,
            PayloadDigest::compute(&del, &[restricted], &payload)
        );
        let tagged = Resource {
            tags: ["pii".to_string()].into(),
            ..table("staging")
        };
        assert_ne!(staging, PayloadDigest::compute(&del, &[tagged], &payload));
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = serde_json::from_str::<serde_json::Value>(r#"{"x":1,"y":[true]}"#).unwrap();
        let b = serde_json::from_str::<serde_json::Value>(r#"{ "y" : [true], "x" : 1 }"#).unwrap();
        assert_eq!(
            PayloadDigest::compute(&export(), &db("p"), &a),
            PayloadDigest::compute(&export(), &db("p"), &b)
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let d = PayloadDigest::compute(&export(), &db("p"), &json!(null));
        assert_eq!(PayloadDigest::parse_hex(&d.to_hex()), Ok(d));
        assert!(PayloadDigest::parse_hex("zz").is_err());
        assert!(PayloadDigest::parse_hex(&"ab".repeat(31)).is_err());
    }
}
