//! What a principal tries to do: an action kind on resources with an exact payload.

use crate::principal::PrincipalRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The built-in action kinds of the Cedar vocabulary. Operators may declare more in a
/// `.cedarschema` extension; whether an action exists is the policy schema's call.
pub const BUILTIN_ACTIONS: &[&str] = &[
    "db.read",
    "db.write",
    "db.ddl",
    "db.privilege",
    "db.export",
    "db.destructive",
    "db.unknown",
    "mcp.call",
    "http.request",
    "exec",
    "deploy",
];

/// Longest accepted action name, resource type or id part, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// An action kind such as `db.export`: lowercase ASCII letters, digits, `.`, `_` and `-`,
/// starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Action(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("action name is empty")]
    Empty,
    #[error("action name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error(
        "action `{0}` is malformed: use lowercase letters, digits, `.`, `_` or `-`, starting with a letter"
    )]
    Malformed(String),
}

impl Action {
    pub fn parse(text: &str) -> Result<Action, ActionError> {
        if text.is_empty() {
            return Err(ActionError::Empty);
        }
        if text.len() > MAX_NAME_LEN {
            return Err(ActionError::TooLong);
        }
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok {
            Ok(Action(text.to_owned()))
        } else {
            Err(ActionError::Malformed(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Action {
    type Error = ActionError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Action::parse(&value)
    }
}

impl From<Action> for String {
    fn from(value: Action) -> String {
        value.0
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Data classification of a resource, from least to most sensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }
}

/// A reference to a resource entity: its Cedar type and id, e.g. `Database::"prod"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.kind, self.id)
    }
}

/// A resource an attempt touches, with the attributes policy may look at.
///
/// Fields are declared in the canonical encoding's order (`type` last), as in [`ResourceRef`],
/// so digests and audit records write them without reordering.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    pub id: String,
    /// The resource this one lives in, e.g. the `Database` of a `Table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ResourceRef>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Resource {
        Resource {
            kind: kind.into(),
            id: id.into(),
            parent: None,
            classification: None,
            tags: BTreeSet::new(),
        }
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.clone(),
            id: self.id.clone(),
        }
    }
}

/// Whether two principal ids name the same person: equal after trimming and ASCII case
/// folding. Identity providers and chat tools disagree about the case of e-mail addresses, so
/// the rules that keep people from approving their own requests must not.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The form of a principal id under which [`same_person`] ids are equal: for counting people.
pub fn person_key(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// One concrete action a principal tries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub principal: PrincipalRef,
    /// The user an agent acts for. That user counts as a requester too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    pub action: Action,
    /// Every resource the attempt touches; never empty.
    pub resources: Vec<Resource>,
    /// The exact payload: SQL text, tool name and arguments, a command line, any JSON.
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Free-form context: gate, source address, ticket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
}

impl Attempt {
    /// Whether `who` is one of the people who asked: the acting principal, or the user an agent
    /// acts for. Such a person may cancel but never approve.
    ///
    /// Ids are compared as [`same_person`] does, so `Alice@Example.com ` cannot approve what
    /// `alice@example.com` asked for, and a user cannot approve the request of an agent that
    /// bears their id.
    pub fn is_requester(&self, who: &PrincipalRef) -> bool {
        same_person(&who.id, &self.principal.id)
            || self
                .on_behalf_of
                .as_deref()
                .is_some_and(|user| same_person(&who.id, user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_syntax() {
        for ok in BUILTIN_ACTIONS {
            assert!(Action::parse(ok).is_ok());
        }
        assert_eq!(Action::parse(""), Err(ActionError::Empty));
        assert!(matches!(
            Action::parse("DB.read"),
            Err(ActionError::Malformed(_))
        ));
        assert!(matches!(
            Action::parse("1db"),
            Err(ActionError::Malformed(_))
        ));
        assert!(matches!(
            Action::parse("db read"),
            Err(ActionError::Malformed(_))
        ));
        assert_eq!(Action::parse(&"a".repeat(300)), Err(ActionError::TooLong));
    }

    #[test]
    fn requesters_are_principal_and_on_behalf_of_user() {
        let attempt = Attempt {
            principal: PrincipalRef::agent("etl"),
            on_behalf_of: Some("alice".into()),
            action: Action::parse("db.export").unwrap(),
            resources: vec![Resource::new("Database", "prod")],
            payload: serde_json::json!("COPY t TO STDOUT"),
            justification: None,
            context: BTreeMap::new(),
        };
        assert!(attempt.is_requester(&PrincipalRef::agent("etl")));
        assert!(attempt.is_requester(&PrincipalRef::user("alice")));
        assert!(!attempt.is_requester(&PrincipalRef::user("bob")));
        // Case, surrounding space and kind do not make another person.
        for same in ["Alice", "ALICE ", " alice"] {
            assert!(attempt.is_requester(&PrincipalRef::user(same)), "{same}");
        }
        assert!(attempt.is_requester(&PrincipalRef::agent("alice")));
        assert!(attempt.is_requester(&PrincipalRef::user("ETL")));
    }
}
