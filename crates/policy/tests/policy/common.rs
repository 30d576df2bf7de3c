//! Helpers shared by the test modules.

use countersign_core::{
    Action, Attempt, Classification, Principal, PrincipalKind, Resource, ResourceRef,
};
use countersign_policy::{LoadedPolicies, PolicyLoadError};
use std::collections::BTreeMap;
use std::path::Path;

pub fn agent(id: &str, groups: &[&str]) -> Principal {
    Principal::new(PrincipalKind::Agent, id, groups.iter().copied())
}

pub fn user(id: &str, groups: &[&str]) -> Principal {
    Principal::new(PrincipalKind::User, id, groups.iter().copied())
}

pub fn res(kind: &str, id: &str) -> Resource {
    Resource::new(kind, id)
}

pub fn classified(kind: &str, id: &str, c: Classification) -> Resource {
    let mut r = Resource::new(kind, id);
    r.classification = Some(c);
    r
}

pub fn child(kind: &str, id: &str, parent_kind: &str, parent_id: &str) -> Resource {
    let mut r = Resource::new(kind, id);
    r.parent = Some(ResourceRef {
        kind: parent_kind.into(),
        id: parent_id.into(),
    });
    r
}

pub fn tagged(mut r: Resource, tags: &[&str]) -> Resource {
    r.tags = tags.iter().map(|t| t.to_string()).collect();
    r
}

pub fn attempt(principal: &Principal, action: &str, resources: Vec<Resource>) -> Attempt {
    Attempt {
        principal: principal.reference(),
        on_behalf_of: None,
        action: Action::parse(action).expect("valid action syntax"),
        resources,
        payload: serde_json::json!("payload"),
        justification: None,
        context: BTreeMap::new(),
    }
}

/// Writes `files` into a fresh directory and loads it.
pub fn load(files: &[(&str, &str)]) -> Result<LoadedPolicies, PolicyLoadError> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_all(dir.path(), files);
    LoadedPolicies::load_dir(dir.path())
}

pub fn write_all(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write policy file");
    }
}

pub fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
