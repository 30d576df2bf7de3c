//! The signed audit log on both backends: checkpoint cadence, restarts, proofs, key rotation,
//! and tampering done directly in the database.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_audit::merkle;
use countersign_audit::note::{Checkpoint, SigningKey};
use countersign_core::{Action, Attempt, Principal, PrincipalKind, Resource};
use countersign_engine::{AuditSigning, CheckOutcome, Engine, EngineConfig, audit_io};
use countersign_policy::LoadedPolicies;
use countersign_store::testing::TestDb;
use countersign_store::{Backend, Store};
use std::time::Duration;

countersign_store::both_backends!(
    checkpoints_follow_count_and_clock,
    the_tree_survives_a_restart,
    proofs_verify_against_the_signed_root,
    rotation_is_announced_under_the_old_key,
    direct_database_tampering_is_caught,
);

const ORIGIN: &str = "audit.test/countersign";

fn policies() -> LoadedPolicies {
    LoadedPolicies::from_sources(&[(
        "p.cedar",
        r#"@id("reads") permit (principal, action == Action::"db.read", resource);"#,
    )])
    .unwrap()
}

async fn start(db: &TestDb, key: &SigningKey, every_events: u64, every: Duration) -> Engine {
    let mut audit = AuditSigning::new(ORIGIN, key.clone(), None);
    audit.every_events = every_events;
    audit.every = every;
    Engine::start(
        Store::open(&db.url).await.unwrap(),
        policies(),
        EngineConfig {
            public_url: "http://x".into(),
            audit,
            journal: None,
        },
    )
    .await
    .unwrap()
}

async fn read(engine: &Engine, n: usize) {
    let agent = Principal::new(PrincipalKind::Agent, "etl", ["agents"]);
    for i in 0..n {
        let attempt = Attempt {
            principal: agent.reference(),
            on_behalf_of: None,
            action: Action::parse("db.read").unwrap(),
            resources: vec![Resource::new("Database", "prod")],
            payload: serde_json::json!(format!("SELECT {i}")),
            justification: None,
            context: Default::default(),
        };
        assert!(matches!(
            engine.check(&agent, attempt, "api").await,
            CheckOutcome::Allow { .. }
        ));
    }
}

fn key() -> SigningKey {
    SigningKey::generate(ORIGIN).unwrap()
}

async fn checkpoints_follow_count_and_clock(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = key();
    let engine = start(&db, &key, 10, Duration::from_millis(300)).await;
    // The policy load is record 0; 24 reads make 25 records.
    read(&engine, 24).await;
    let (size, note) = engine.latest_checkpoint().await.unwrap().unwrap();
    assert!(
        (10..=25).contains(&size),
        "count-based checkpoint, got {size}"
    );
    let checkpoint = Checkpoint::open(&note, &key.verifier(), Some(ORIGIN)).unwrap();
    assert_eq!(checkpoint.size, size);
    // No more traffic: the clock signs the rest on its own.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (size, _) = engine.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(size, 25, "time-based checkpoint covers every record");
    // And then it stays quiet: nothing new, no new checkpoint.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(engine.latest_checkpoint().await.unwrap().unwrap().0, 25);
    let summary = engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events, 25);
    assert!(summary.checkpoints >= 3, "{summary:?}");
}

async fn the_tree_survives_a_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = key();
    let engine = start(&db, &key, 1000, Duration::from_secs(60)).await;
    read(&engine, 7).await;
    // A crash: nothing signed the last records.
    drop(engine);
    let engine = start(&db, &key, 1000, Duration::from_secs(60)).await;
    read(&engine, 5).await;
    engine.checkpoint().await.unwrap();
    let (size, _) = engine.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(size, 14, "two policy loads and twelve reads");
    let summary = engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events, 14);
}

async fn proofs_verify_against_the_signed_root(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = key();
    let engine = start(&db, &key, 1000, Duration::from_secs(60)).await;
    read(&engine, 40).await;
    engine.checkpoint().await.unwrap();
    let (_, note) = engine.latest_checkpoint().await.unwrap().unwrap();
    let signed = Checkpoint::open(&note, &key.verifier(), Some(ORIGIN)).unwrap();
    for seq in [0, 1, 17, 40] {
        let p = engine.inclusion_proof(seq).await.unwrap();
        assert_eq!(p.tree_size, 41);
        assert_eq!(p.leaf_hash, merkle::leaf_hash(p.event_json.as_bytes()));
        merkle::verify_inclusion(seq, 41, &p.leaf_hash, &p.path, &signed.root).unwrap();
    }
    assert!(engine.inclusion_proof(41).await.is_err(), "not yet signed");
    // Consistency from an earlier tree to the signed one.
    let records = engine.audit_records(0, 100).await.unwrap();
    let mut old = merkle::Frontier::new();
    for r in &records[..13] {
        old.push(r.leaf_hash);
    }
    let proof = engine.consistency_proof(13, 41).await.unwrap();
    merkle::verify_consistency(13, 41, &old.root(), &signed.root, &proof).unwrap();
}

async fn rotation_is_announced_under_the_old_key(backend: Backend) {
    let db = TestDb::new(backend).await;
    let old = key();
    let engine = start(&db, &old, 1000, Duration::from_secs(60)).await;
    read(&engine, 3).await;
    let admin = Principal::new(PrincipalKind::User, "root", ["admins"]);
    let new = engine.rotate_audit_key(&admin).await.unwrap();
    assert_eq!(engine.verifier_key(), new);
    let (size, note) = engine.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(size, 5, "the announcement is signed at once");
    Checkpoint::open(&note, &old.verifier(), None).unwrap();
    read(&engine, 2).await;
    engine.checkpoint().await.unwrap();
    let (_, note) = engine.latest_checkpoint().await.unwrap().unwrap();
    Checkpoint::open(&note, &new, None).unwrap();
    assert!(Checkpoint::open(&note, &old.verifier(), None).is_err());
    // An auditor holding only the old key follows the announced rotation.
    let summary = engine
        .verify_log(vec![old.verifier()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events, 7);
    // One holding only the new key cannot vouch for what the old key signed.
    assert!(engine.verify_log(vec![new]).await.unwrap().is_err());
}

async fn direct_database_tampering_is_caught(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = key();
    let engine = start(&db, &key, 1000, Duration::from_secs(60)).await;
    read(&engine, 20).await;
    engine.checkpoint().await.unwrap();
    engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap();
    // Someone with database access removes the guards first.
    let store = Store::open(&db.url).await.unwrap();
    let unguard = match backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete"
        }
        Backend::Postgres => "DROP TRIGGER audit_events_append_only ON audit_events",
    };
    store.exec_for_tests(unguard).await.unwrap();

    store
        .exec_for_tests(
            "UPDATE audit_events SET event = replace(event, 'SELECT 7', 'SELECT 8') WHERE seq = 8",
        )
        .await
        .unwrap();
    let err = engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.seq, Some(8), "{err}");
    assert!(err.to_string().contains("alter"), "{err}");

    store
        .exec_for_tests(
            "UPDATE audit_events SET event = replace(event, 'SELECT 8', 'SELECT 7') WHERE seq = 8",
        )
        .await
        .unwrap();
    engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap();
    store
        .exec_for_tests("DELETE FROM audit_events WHERE seq = 12")
        .await
        .unwrap();
    let err = engine
        .verify_log(vec![key.verifier()])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.seq, Some(12), "{err}");
    // An export of the damaged log stops at the gap instead of skipping it.
    let mut out = Vec::new();
    let exported = audit_io::write_export(&store, ORIGIN, 0, None, &mut out, |_| {}).await;
    assert!(
        matches!(exported, Err(audit_io::AuditIoError::Missing(12))),
        "{exported:?}"
    );
}
