//! Grants: what an approval yields, and exactly which later attempts they cover.

use crate::attempt::{Action, Resource};
use crate::digest::PayloadDigest;
use crate::principal::PrincipalRef;
use crate::time::{Timestamp, parse_duration_ms};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The shape of grant a policy asks for in `@grant`.
///
/// `once` (the default) covers exactly one execution of the reviewed payload. A window such as
/// `15m` covers every attempt by the same principal with the same action on the same resources,
/// whatever the payload, for that long after approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GrantShape {
    Once,
    Window { ms: u64 },
}

impl GrantShape {
    pub fn parse(text: &str) -> Result<GrantShape, String> {
        match text.trim() {
            "once" => Ok(GrantShape::Once),
            other => parse_duration_ms(other)
                .map(|ms| GrantShape::Window { ms })
                .map_err(|e| format!("grant must be `once` or a window like `15m`: {e}")),
        }
    }

    /// The more restrictive of two shapes: `once` over any window, else the shorter window.
    pub fn narrowest(self, other: GrantShape) -> GrantShape {
        match (self, other) {
            (GrantShape::Once, _) | (_, GrantShape::Once) => GrantShape::Once,
            (GrantShape::Window { ms: a }, GrantShape::Window { ms: b }) => {
                GrantShape::Window { ms: a.min(b) }
            }
        }
    }
}

impl fmt::Display for GrantShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantShape::Once => f.write_str("once"),
            GrantShape::Window { ms } if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            GrantShape::Window { ms } => write!(f, "{ms}ms"),
        }
    }
}

impl TryFrom<String> for GrantShape {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        GrantShape::parse(&value)
    }
}

impl From<GrantShape> for String {
    fn from(value: GrantShape) -> String {
        value.to_string()
    }
}

/// Where a grant is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    Active,
    /// A `once` grant that has been consumed by its one execution.
    Used,
    Expired,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Used => "used",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<GrantStatus> {
        match text {
            "active" => Some(GrantStatus::Active),
            "used" => Some(GrantStatus::Used),
            "expired" => Some(GrantStatus::Expired),
            "revoked" => Some(GrantStatus::Revoked),
            _ => None,
        }
    }
}

/// What an attempt is matched against when looking for a grant that covers it.
#[derive(Clone, Copy, Debug)]
pub struct GrantScope<'a> {
    pub principal: &'a PrincipalRef,
    pub on_behalf_of: Option<&'a str>,
    pub action: &'a Action,
    pub resources: &'a [Resource],
    pub digest: &'a PayloadDigest,
}

/// A just-in-time permission issued by an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub request_id: String,
    pub principal: PrincipalRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub action: Action,
    /// The resources as reviewed, attributes included: a window covers exactly these.
    pub resources: Vec<Resource>,
    /// The reviewed payload's digest; binding for `once` grants, informative for windows.
    pub digest: PayloadDigest,
    pub shape: GrantShape,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub status: GrantStatus,
    /// When the grant left `active` (used, expired or revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

impl Grant {
    /// Whether the grant is active and not past its expiry at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.status == GrantStatus::Active && now < self.expires_at
    }

    /// Whether this grant allows the attempt described by `scope` at `now`.
    pub fn covers(&self, scope: &GrantScope<'_>, now: Timestamp) -> bool {
        if !self.is_live(now)
            || self.principal != *scope.principal
            || self.on_behalf_of.as_deref() != scope.on_behalf_of
            || self.action != *scope.action
        {
            return false;
        }
        match self.shape {
            GrantShape::Once => self.digest == *scope.digest,
            GrantShape::Window { .. } => same_set(&self.resources, scope.resources),
        }
    }

    pub fn is_single_use(&self) -> bool {
        self.shape == GrantShape::Once
    }
}

fn same_set(a: &[Resource], b: &[Resource]) -> bool {
    let mut a: Vec<&Resource> = a.iter().collect();
    let mut b: Vec<&Resource> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(id: &str) -> Vec<Resource> {
        vec![Resource::new("Database", id)]
    }

    fn grant(shape: GrantShape) -> Grant {
        let action = Action::parse("db.export").unwrap();
        Grant {
            id: "g1".into(),
            request_id: "r1".into(),
            principal: PrincipalRef::agent("etl"),
            on_behalf_of: None,
            digest: PayloadDigest::compute(&action, &res("prod"), &json!("COPY a TO STDOUT")),
            action,
            resources: res("prod"),
            shape,
            issued_at: Timestamp(1_000),
            expires_at: Timestamp(2_000),
            status: GrantStatus::Active,
            ended_at: None,
        }
    }

    fn check(g: &Grant, principal: &PrincipalRef, payload: &str, db: &str, now: i64) -> bool {
        let action = Action::parse("db.export").unwrap();
        let resources = res(db);
        let digest = PayloadDigest::compute(&action, &resources, &json!(payload));
        g.covers(
            &GrantScope {
                principal,
                on_behalf_of: None,
                action: &action,
                resources: &resources,
                digest: &digest,
            },
            Timestamp(now),
        )
    }

    #[test]
    fn once_grant_binds_the_exact_payload() {
        let g = grant(GrantShape::Once);
        let etl = PrincipalRef::agent("etl");
        assert!(check(&g, &etl, "COPY a TO STDOUT", "prod", 1_500));
        assert!(!check(&g, &etl, "COPY b TO STDOUT", "prod", 1_500));
        assert!(!check(&g, &etl, "COPY a TO STDOUT", "staging", 1_500));
        assert!(!check(
            &g,
            &PrincipalRef::agent("other"),
            "COPY a TO STDOUT",
            "prod",
            1_500
        ));
    }

    #[test]
    fn window_grant_covers_any_payload_on_the_same_resources() {
        let g = grant(GrantShape::Window { ms: 1_000 });
        let etl = PrincipalRef::agent("etl");
        assert!(check(&g, &etl, "COPY b TO STDOUT", "prod", 1_999));
        assert!(!check(&g, &etl, "COPY b TO STDOUT", "staging", 1_500));
    }

    #[test]
    fn window_grant_does_not_cover_other_attributes() {
        let g = grant(GrantShape::Window { ms: 1_000 });
        let action = Action::parse("db.export").unwrap();
        let restricted = vec![Resource {
            classification: Some(crate::attempt::Classification::Restricted),
            ..Resource::new("Database", "prod")
        }];
        let digest = PayloadDigest::compute(&action, &restricted, &json!("x"));
        let scope = GrantScope {
            principal: &PrincipalRef::agent("etl"),
            on_behalf_of: None,
            action: &action,
            resources: &restricted,
            digest: &digest,
        };
        assert!(!g.covers(&scope, Timestamp(1_500)));
    }

    #[test]
    fn expiry_and_status_end_a_grant() {
        let etl = PrincipalRef::agent("etl");
        let g = grant(GrantShape::Once);
        assert!(!check(&g, &etl, "COPY a TO STDOUT", "prod", 2_000));
        for status in [
            GrantStatus::Used,
            GrantStatus::Expired,
            GrantStatus::Revoked,
        ] {
            let mut g = grant(GrantShape::Once);
            g.status = status;
            assert!(!check(&g, &etl, "COPY a TO STDOUT", "prod", 1_500));
        }
    }

    #[test]
    fn on_behalf_of_must_match() {
        let mut g = grant(GrantShape::Once);
        g.on_behalf_of = Some("alice".into());
        assert!(!check(
            &g,
            &PrincipalRef::agent("etl"),
            "COPY a TO STDOUT",
            "prod",
            1_500
        ));
    }

    #[test]
    fn shapes_parse_and_narrow() {
        assert_eq!(GrantShape::parse("once"), Ok(GrantShape::Once));
        assert_eq!(
            GrantShape::parse("15m"),
            Ok(GrantShape::Window { ms: 900_000 })
        );
        assert!(GrantShape::parse("forever").is_err());
        let w = |ms| GrantShape::Window { ms };
        assert_eq!(w(5).narrowest(w(3)), w(3));
        assert_eq!(w(5).narrowest(GrantShape::Once), GrantShape::Once);
    }
}
