//! The people channels may contact: the configured users and their groups.

use countersign_core::{Principal, PrincipalKind, same_person};
use std::collections::BTreeSet;

/// The configured principals, for finding who reviews what and who a user is.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    principals: Vec<Principal>,
}

impl Directory {
    pub fn new(principals: impl IntoIterator<Item = Principal>) -> Directory {
        Directory {
            principals: principals.into_iter().collect(),
        }
    }

    /// Users in any of `groups`, except the people in `except`.
    pub fn members_of<'a>(
        &'a self,
        groups: &'a BTreeSet<String>,
        except: &'a [String],
    ) -> impl Iterator<Item = &'a Principal> + 'a {
        self.principals.iter().filter(move |p| {
            p.kind == PrincipalKind::User
                && p.in_any(groups)
                && !except.iter().any(|e| same_person(e, &p.id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_exclude_agents_and_the_requester() {
        let d = Directory::new([
            Principal::new(PrincipalKind::User, "alice@x", ["reviewers"]),
            Principal::new(PrincipalKind::User, "bob@x", ["reviewers"]),
            Principal::new(PrincipalKind::Agent, "ci", ["reviewers"]),
            Principal::new(PrincipalKind::User, "eve@x", ["interns"]),
        ]);
        let groups = ["reviewers".to_string()].into();
        let except = ["ALICE@x ".to_string()];
        let ids: Vec<&str> = d
            .members_of(&groups, &except)
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(ids, ["bob@x"]);
    }
}
