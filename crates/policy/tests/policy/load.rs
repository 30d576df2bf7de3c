//! Loading: broken files are refused with their location, ids and annotations are checked,
//! and the version hash names exactly the files loaded.

use crate::common::*;
use countersign_policy::{LoadedPolicies, PolicyEffect, PolicyLoadError, Problem, ProblemKind};
use sha2::{Digest, Sha256};

const GOOD: &str = r#"
@id("agents-read")
permit (principal in Group::"agents", action == Action::"db.read", resource);
"#;

fn problems(result: Result<LoadedPolicies, PolicyLoadError>) -> Vec<Problem> {
    match result {
        Ok(_) => panic!("the set should have been refused"),
        Err(e) => {
            // Every refusal prints something an operator can act on.
            assert!(!e.to_string().is_empty());
            e.problems().to_vec()
        }
    }
}

fn only(result: Result<LoadedPolicies, PolicyLoadError>) -> Problem {
    let mut all = problems(result);
    assert_eq!(all.len(), 1, "expected exactly one problem: {all:?}");
    all.remove(0)
}

#[test]
fn syntax_error_names_file_and_line() {
    let bad = "// a comment\n@id(\"x\")\npermit (principal, action, resource) when { 1 + };\n";
    let p = only(load(&[("a-good.cedar", GOOD), ("b-bad.cedar", bad)]));
    assert_eq!(p.kind, ProblemKind::Syntax);
    assert_eq!(p.file, "b-bad.cedar");
    assert_eq!(p.line, Some(3));
    assert!(p.column.is_some());
    assert!(p.to_string().starts_with("b-bad.cedar:3:"), "{p}");
}

#[test]
fn validation_errors_name_file_policy_and_line() {
    let unknown_attr = "\n\n@id(\"owner-check\")\npermit (principal, action, resource)\nwhen { resource.owner == \"me\" };\n";
    let p = only(load(&[("a.cedar", GOOD), ("owner.cedar", unknown_attr)]));
    assert_eq!(p.kind, ProblemKind::Validation);
    assert_eq!(p.file, "owner.cedar");
    assert_eq!(p.policy_id.as_deref(), Some("owner-check"));
    assert_eq!(p.line, Some(5));

    let unknown_type = "@id(\"bucket\")\npermit (principal, action, resource == Bucket::\"b\");\n";
    let p = only(load(&[("bucket.cedar", unknown_type)]));
    assert_eq!(p.kind, ProblemKind::Validation);
    assert_eq!(p.file, "bucket.cedar");
    assert_eq!(p.policy_id.as_deref(), Some("bucket"));
    assert_eq!(p.line, Some(2));
    assert!(p.message.contains("Bucket"), "{}", p.message);

    // Strict validation refuses optional attributes read without `has`.
    let unguarded = "@id(\"unguarded\")\npermit (principal, action, resource)\nwhen { resource.classification == \"public\" };\n";
    let p = only(load(&[("u.cedar", unguarded)]));
    assert_eq!(p.kind, ProblemKind::Validation);
    assert_eq!(p.policy_id.as_deref(), Some("unguarded"));
}

#[test]
fn ids_are_required_and_unique() {
    let p = only(load(&[(
        "a.cedar",
        "permit (principal, action == Action::\"db.read\", resource);",
    )]));
    assert_eq!(p.kind, ProblemKind::MissingId);
    assert_eq!(p.line, Some(1));

    let p = only(load(&[(
        "a.cedar",
        "@id(\"has space\")\npermit (principal, action, resource);",
    )]));
    assert_eq!(p.kind, ProblemKind::MissingId);

    let second =
        "\n\n@id(\"agents-read\")\npermit (principal, action == Action::\"db.write\", resource);\n";
    let p = only(load(&[("a.cedar", GOOD), ("b.cedar", second)]));
    assert_eq!(p.kind, ProblemKind::DuplicateId);
    assert_eq!(p.file, "b.cedar");
    assert_eq!(p.line, Some(3));
    assert!(p.message.contains("a.cedar:2:1"), "{}", p.message);
}

#[test]
fn bad_annotations_are_refused_with_policy_and_line() {
    let cases = [
        ("@approval(\"r\") @quorum(\"0\")", "@quorum"),
        ("@approval(\"r\") @quorum(\"abc\")", "@quorum"),
        ("@approval(\"r\") @grant(\"forever\")", "@grant"),
        ("@approval(\"r\") @timeout(\"0s\")", "@timeout"),
        ("@approval(\" , \")", "@approval"),
        ("@quorum(\"2\")", "without @approval"),
        ("@approval(\"r\") @timeout(\"400d\")", "@timeout"),
        ("@audit_payload(\"maybe\")", "@audit_payload"),
    ];
    for (annotations, expect) in cases {
        let text = format!(
            "{GOOD}\n@id(\"bad\")\n{annotations}\npermit (principal, action == Action::\"exec\", resource);\n"
        );
        let p = only(load(&[("x.cedar", &text)]));
        assert_eq!(p.kind, ProblemKind::Annotation, "{annotations}");
        assert_eq!(p.policy_id.as_deref(), Some("bad"), "{annotations}");
        assert_eq!(p.line, Some(5), "{annotations}");
        assert!(p.message.contains(expect), "{annotations}: {}", p.message);
    }
    let forbid = "@id(\"f\")\n@approval(\"reviewers\")\nforbid (principal, action, resource);";
    let p = only(load(&[("f.cedar", forbid)]));
    assert_eq!(p.kind, ProblemKind::Annotation);
    assert!(p.message.contains("forbid"), "{}", p.message);
}

#[test]
fn every_broken_file_is_reported() {
    let all = problems(load(&[
        ("a.cedar", "permit (principal, action, resource"),
        (
            "b.cedar",
            "@id(\"b\") @quorum(\"1\") permit (principal, action, resource);",
        ),
        ("c.cedar", GOOD),
    ]));
    let files: Vec<&str> = all.iter().map(|p| p.file.as_str()).collect();
    assert!(
        files.contains(&"a.cedar") && files.contains(&"b.cedar"),
        "{all:?}"
    );
}

#[test]
fn templates_are_refused() {
    let p = only(load(&[(
        "t.cedar",
        "@id(\"t\")\npermit (principal == ?principal, action, resource);",
    )]));
    assert_eq!(p.kind, ProblemKind::Template);
}

#[test]
fn empty_directory_and_unrelated_files() {
    assert!(matches!(load(&[]), Err(PolicyLoadError::NoPolicies { .. })));
    assert!(matches!(
        load(&[("only-comments.cedar", "// nothing here yet\n")]),
        Err(PolicyLoadError::NoPolicies { .. })
    ));
    assert!(matches!(
        load(&[("README.md", "# nothing"), ("x.cedarschema", "entity Foo;")]),
        Err(PolicyLoadError::NoPolicies { .. })
    ));
    let p = load(&[
        ("a.cedar", GOOD),
        ("README.md", "not cedar at all"),
        (".#a.cedar", "garbage that would not parse"),
        ("notes.cedar.bak", "garbage"),
    ])
    .unwrap();
    assert_eq!(p.files(), ["a.cedar".to_string()]);
    assert!(matches!(
        LoadedPolicies::load_dir("/nonexistent/countersign/policies"),
        Err(PolicyLoadError::Io { .. })
    ));
}

#[test]
fn listing_annotations_and_groups() {
    let text = r#"
@id("exports")
@approval("owners, security")
@escalate("30m:oncall")
permit (principal, action == Action::"db.export", resource);

@id("deploys")
@approval("release-managers")
permit (principal, action == Action::"deploy", resource);

@id("no-drop")
forbid (principal, action == Action::"db.destructive", resource);
"#;
    let p = load(&[("a.cedar", GOOD), ("b.cedar", text)]).unwrap();
    assert_eq!(p.policy_count(), 4);
    assert_eq!(p.files(), ["a.cedar".to_string(), "b.cedar".to_string()]);
    assert_eq!(
        p.groups_named_in_approvals(),
        ["oncall", "owners", "release-managers", "security"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let ann = p.annotations("exports").unwrap();
    assert_eq!(ann.get("escalate").map(String::as_str), Some("30m:oncall"));
    assert_eq!(ann.get("id").map(String::as_str), Some("exports"));
    let info = p.policy("no-drop").unwrap();
    assert_eq!(info.effect, PolicyEffect::Forbid);
    assert_eq!(info.file, "b.cedar");
    assert_eq!(info.line, 11);
    assert!(info.requirements.is_none());
    assert_eq!(p.policy("exports").unwrap().line, 2);
}

#[test]
fn version_hash_follows_the_documented_encoding() {
    let schema = "entity Account;";
    let p = load(&[("a.cedar", GOOD), ("ext.cedarschema", schema)]).unwrap();
    let mut h = Sha256::new();
    for (name, bytes) in [("a.cedar", GOOD), ("ext.cedarschema", schema)] {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes.as_bytes());
    }
    assert_eq!(p.version(), hex::encode(h.finalize()));
}

#[test]
fn version_hash_is_stable_and_changes_with_any_file() {
    let other = "@id(\"w\")\npermit (principal, action == Action::\"db.write\", resource);";
    let schema = "entity Account;";
    let base = [
        ("a.cedar", GOOD),
        ("b.cedar", other),
        ("x.cedarschema", schema),
    ];
    let v = load(&base).unwrap().version().to_owned();
    assert_eq!(v.len(), 64);
    // Same files in another directory, or given in memory: same version.
    assert_eq!(load(&base).unwrap().version(), v);
    assert_eq!(LoadedPolicies::from_sources(&base).unwrap().version(), v);
    // Unrelated files do not count.
    let mut with_readme = base.to_vec();
    with_readme.push(("README.md", "hello"));
    assert_eq!(load(&with_readme).unwrap().version(), v);

    let changed_policy = [
        ("a.cedar", GOOD),
        ("b.cedar", &format!("{other} ")[..]),
        ("x.cedarschema", schema),
    ];
    let changed_schema = [
        ("a.cedar", GOOD),
        ("b.cedar", other),
        ("x.cedarschema", "entity Account;\n"),
    ];
    let renamed = [
        ("a.cedar", GOOD),
        ("c.cedar", other),
        ("x.cedarschema", schema),
    ];
    let fewer = [("a.cedar", GOOD), ("b.cedar", other)];
    for files in [&changed_policy[..], &changed_schema, &renamed, &fewer] {
        assert_ne!(load(files).unwrap().version(), v, "{files:?}");
    }
}

#[test]
fn warnings_do_not_refuse() {
    // A policy that can never match (a Host is never in a Database) validates with a warning.
    let text = "@id(\"never\")\npermit (principal, action, resource is Host)\nwhen { resource in Database::\"prod\" };";
    let p = load(&[("a.cedar", GOOD), ("w.cedar", text)]).unwrap();
    assert_eq!(p.policy_count(), 2);
    assert_eq!(p.warnings().len(), 1, "{:?}", p.warnings());
    let w = &p.warnings()[0];
    assert_eq!(w.file, "w.cedar");
    assert_eq!(w.policy_id.as_deref(), Some("never"));
    assert!(w.message.contains("impossible"), "{}", w.message);
}
