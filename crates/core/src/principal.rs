//! Who acts: agents (workloads) and users (people), with the groups they belong to.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Whether a principal is a workload or a person. Only people review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Agent,
    User,
}

impl PrincipalKind {
    /// The Cedar entity type name of this kind.
    pub fn entity_type(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "Agent",
            PrincipalKind::User => "User",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "agent",
            PrincipalKind::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<PrincipalKind> {
        match text {
            "agent" => Some(PrincipalKind::Agent),
            "user" => Some(PrincipalKind::User),
            _ => None,
        }
    }
}

/// A reference to a principal: kind and id, e.g. `Agent::"etl-nightly"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PrincipalRef {
    // In name order, as the canonical encoding writes them.
    pub id: String,
    pub kind: PrincipalKind,
}

impl PrincipalRef {
    pub fn user(id: impl Into<String>) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::User,
            id: id.into(),
        }
    }

    pub fn agent(id: impl Into<String>) -> PrincipalRef {
        PrincipalRef {
            kind: PrincipalKind::Agent,
            id: id.into(),
        }
    }
}

impl fmt::Display for PrincipalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.kind.entity_type(), self.id)
    }
}

/// An authenticated principal with its group memberships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub id: String,
    pub groups: BTreeSet<String>,
}

impl Principal {
    pub fn new(
        kind: PrincipalKind,
        id: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Principal {
        Principal {
            kind,
            id: id.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    pub fn reference(&self) -> PrincipalRef {
        PrincipalRef {
            kind: self.kind,
            id: self.id.clone(),
        }
    }

    pub fn in_any(&self, groups: &BTreeSet<String>) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}
