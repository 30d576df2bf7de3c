//! The store against both backends: SQLite in a temporary file and a fresh PostgreSQL database.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_audit::{AuditEvent, EventKind, encode, merkle};
use countersign_core::{
    Action, ApprovalRequest, ApprovalRule, Attempt, Decision, Grant, GrantShape, GrantStatus,
    PayloadDigest, PrincipalRef, RequestStatus, Requirements, Resource, Timestamp, Vote,
};
use countersign_store::testing::TestDb;
use countersign_store::{Backend, RequestFilter, Store, StoreError, StoreOptions};
use std::collections::BTreeMap;

countersign_store::both_backends!(
    migrations_are_idempotent,
    request_round_trip_with_votes_and_settlement,
    grant_ends_exactly_once,
    audit_tree_is_stored_and_append_only,
    listing_filters,
    deadlines_and_due_items,
    escalations_reminders_and_break_glass,
    channel_messages_and_deliveries,
    rolled_back_step_leaves_nothing,
);

fn request(id: &str, principal: &str, payload: &str, expires_at: i64) -> ApprovalRequest {
    let action = Action::parse("db.export").unwrap();
    let resources = vec![Resource::new("Database", "prod")];
    let payload = serde_json::json!(payload);
    ApprovalRequest {
        id: id.into(),
        digest: PayloadDigest::compute(&action, &resources, &payload),
        attempt: Attempt {
            principal: PrincipalRef::agent(principal),
            on_behalf_of: None,
            action,
            resources,
            payload,
            justification: Some("report".into()),
            context: BTreeMap::new(),
        },
        requirements: Requirements::new(
            vec![ApprovalRule {
                policy_id: "p".into(),
                groups: ["owners".to_string()].into(),
                quorum: 1,
                break_glass: false,
            }],
            GrantShape::Once,
            1000,
        ),
        policy_version: "v1".into(),
        policy_ids: vec!["p".into()],
        status: RequestStatus::Pending,
        created_at: Timestamp(expires_at - 1000),
        expires_at: Timestamp(expires_at),
        settled_at: None,
        cancelled_by: None,
        votes: Vec::new(),
        escalations_fired: 0,
        payload_withheld: false,
    }
}

fn grant(id: &str, request: &ApprovalRequest, expires_at: i64) -> Grant {
    Grant {
        id: id.into(),
        request_id: request.id.clone(),
        principal: request.attempt.principal.clone(),
        on_behalf_of: None,
        action: request.attempt.action.clone(),
        resources: request.attempt.resources.clone(),
        digest: request.digest,
        shape: GrantShape::Once,
        issued_at: Timestamp(0),
        expires_at: Timestamp(expires_at),
        status: GrantStatus::Active,
        ended_at: None,
    }
}

async fn open(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend(), backend);
    (db, store)
}

async fn migrations_are_idempotent(backend: Backend) {
    let (db, store) = open(backend).await;
    store.close().await;
    let again = Store::open(&db.url).await.unwrap();
    assert_eq!(again.audit_size().await.unwrap(), 0);
}

async fn request_round_trip_with_votes_and_settlement(backend: Backend) {
    let (_db, store) = open(backend).await;
    let r = request("r1", "etl", "COPY a TO STDOUT", 10_000);
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&r).await.unwrap();
    let vote = Vote {
        id: "v1".into(),
        voter: PrincipalRef::user("bob"),
        voter_groups: ["owners".to_string()].into(),
        decision: Decision::Approve,
        reason: Some("ok".into()),
        channel: "api".into(),
        cast_at: Timestamp(9_500),
        break_glass: false,
    };
    tx.insert_vote("r1", &vote).await.unwrap();
    assert!(
        tx.settle_request("r1", RequestStatus::Approved, Timestamp(9_500), None)
            .await
            .unwrap()
    );
    assert!(
        !tx.settle_request("r1", RequestStatus::Denied, Timestamp(9_600), None)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    let loaded = store.request("r1").await.unwrap().unwrap();
    assert_eq!(loaded.status, RequestStatus::Approved);
    assert_eq!(loaded.settled_at, Some(Timestamp(9_500)));
    assert_eq!(loaded.votes, vec![vote.clone()]);
    assert_eq!(loaded.attempt, r.attempt);
    assert_eq!(loaded.digest, r.digest);
    assert!(store.request("nope").await.unwrap().is_none());

    // A second vote by the same person is refused by the database too.
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_vote(
            "r1",
            &Vote {
                id: "v2".into(),
                ..vote
            }
        )
        .await
        .is_err()
    );
}

async fn grant_ends_exactly_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let r = request("r1", "etl", "x", 10_000);
    let g = grant("g1", &r, 20_000);
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&r).await.unwrap();
    tx.insert_grant(&g).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.end_grant("g1", GrantStatus::Used, Timestamp(5))
            .await
            .unwrap()
    );
    assert!(
        !tx.end_grant("g1", GrantStatus::Used, Timestamp(6))
            .await
            .unwrap()
    );
    assert!(
        !tx.end_grant("g1", GrantStatus::Revoked, Timestamp(6))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let loaded = store.grant("g1").await.unwrap().unwrap();
    assert_eq!(loaded.status, GrantStatus::Used);
    assert_eq!(loaded.ended_at, Some(Timestamp(5)));
    assert!(store.grants(None, true, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .grants(Some(&PrincipalRef::agent("etl")), false, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .grants(Some(&PrincipalRef::agent("x")), false, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn audit_tree_is_stored_and_append_only(backend: Backend) {
    let (_db, store) = open(backend).await;
    assert_eq!(store.audit_size().await.unwrap(), 0);
    let mut frontier = store.audit_frontier().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for i in 0..13 {
        let mut e = AuditEvent::new(EventKind::Attempt, Timestamp(i));
        e.verdict = Some("allow".into());
        let record = encode(frontier.size(), &e).unwrap();
        let inner: Vec<_> = frontier
            .push(record.leaf_hash)
            .into_iter()
            .filter(|(id, _)| id.level > 0)
            .collect();
        tx.append_audit(&record, e.kind.as_str(), e.time, None, None)
            .await
            .unwrap();
        tx.insert_nodes(&inner).await.unwrap();
    }
    tx.insert_checkpoint(13, Timestamp(99), "note")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.audit_size().await.unwrap(), 13);
    // The right edge comes back from stored nodes alone, as after a restart.
    assert_eq!(store.audit_frontier().await.unwrap(), frontier);
    let records = store.audit_records(0, 100).await.unwrap();
    assert_eq!(records.len(), 13);
    for r in &records {
        assert_eq!(r.leaf_hash, merkle::leaf_hash(r.event_json.as_bytes()));
    }
    assert_eq!(store.audit_records(10, 100).await.unwrap().len(), 3);
    let ids = merkle::inclusion_nodes(5, 13).unwrap();
    let nodes = store.audit_nodes(&ids).await.unwrap();
    assert_eq!(nodes.len(), ids.len(), "every node a proof needs is stored");
    let path = merkle::inclusion_proof(5, 13, &|id| nodes.get(&id).copied()).unwrap();
    merkle::verify_inclusion(5, 13, &records[5].leaf_hash, &path, &frontier.root()).unwrap();
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some((13, "note".to_string()))
    );
    assert_eq!(store.checkpoints(1, 12).await.unwrap(), vec![]);

    for tamper in [
        "UPDATE audit_events SET kind = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "UPDATE audit_nodes SET hash = 'x'",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = store.exec_for_tests(tamper).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{tamper}: {err}");
    }
    if backend == Backend::Postgres {
        let err = store
            .exec_for_tests("TRUNCATE audit_events, audit_nodes, audit_checkpoints")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(store.audit_records(0, 100).await.unwrap(), records);
}

async fn listing_filters(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&request("r1", "etl", "a", 1_000))
        .await
        .unwrap();
    tx.insert_request(&request("r2", "etl", "b", 2_000))
        .await
        .unwrap();
    tx.insert_request(&request("r3", "other", "c", 3_000))
        .await
        .unwrap();
    tx.settle_request("r2", RequestStatus::Denied, Timestamp(5), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let ids = |v: Vec<ApprovalRequest>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = RequestFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(ids(store.requests(&all).await.unwrap()), ["r3", "r2", "r1"]);
    let pending = RequestFilter {
        status: Some(RequestStatus::Pending),
        ..all.clone()
    };
    assert_eq!(ids(store.requests(&pending).await.unwrap()), ["r3", "r1"]);
    let mine = RequestFilter {
        requester: Some(PrincipalRef::agent("etl")),
        ..all.clone()
    };
    assert_eq!(ids(store.requests(&mine).await.unwrap()), ["r2", "r1"]);
    let owners = RequestFilter {
        reviewable_by: Some(vec!["owners".into()]),
        ..all.clone()
    };
    assert_eq!(store.requests(&owners).await.unwrap().len(), 3);
    let strangers = RequestFilter {
        reviewable_by: Some(vec!["x".into(), "y".into()]),
        ..all.clone()
    };
    assert!(store.requests(&strangers).await.unwrap().is_empty());
    let nobody = RequestFilter {
        reviewable_by: Some(vec![]),
        ..all
    };
    assert!(store.requests(&nobody).await.unwrap().is_empty());

    let mut tx = store.begin().await.unwrap();
    let r1 = request("r1", "etl", "a", 1_000);
    let found = tx
        .pending_request_for(&PrincipalRef::agent("etl"), None, &r1.digest, Timestamp(0))
        .await
        .unwrap();
    assert_eq!(found.map(|r| r.id).as_deref(), Some("r1"));
    let r2 = request("r2", "etl", "b", 2_000);
    assert!(
        tx.pending_request_for(&PrincipalRef::agent("etl"), None, &r2.digest, Timestamp(0))
            .await
            .unwrap()
            .is_none()
    );
    // Past its deadline a request is only waiting for the sweep: nothing joins it.
    assert!(
        tx.pending_request_for(
            &PrincipalRef::agent("etl"),
            None,
            &r1.digest,
            Timestamp(1_000)
        )
        .await
        .unwrap()
        .is_none()
    );
}

async fn deadlines_and_due_items(backend: Backend) {
    let (_db, store) = open(backend).await;
    assert_eq!(store.next_deadline().await.unwrap(), None);
    let r1 = request("r1", "etl", "a", 5_000);
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&r1).await.unwrap();
    tx.insert_request(&request("r2", "etl", "b", 9_000))
        .await
        .unwrap();
    tx.insert_grant(&grant("g1", &r1, 4_000)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(Timestamp(4_000)));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.due_requests(Timestamp(5_000)).await.unwrap(), ["r1"]);
    assert_eq!(
        tx.due_grants(Timestamp(3_999)).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(tx.due_grants(Timestamp(4_000)).await.unwrap(), ["g1"]);
}

async fn escalations_reminders_and_break_glass(backend: Backend) {
    let (_db, store) = open(backend).await;
    // Created at 4_000, expires at 5_000: reminded at 4_800, escalated at 4_300.
    let mut r = request("r1", "etl", "a", 5_000);
    r.requirements.remind_before_ms = Some(200);
    r.requirements.escalations = vec![countersign_core::Escalation {
        policy_id: "p".into(),
        after_ms: 300,
        groups: ["oncall".to_string()].into(),
    }];
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&r).await.unwrap();
    tx.insert_request(&request("r2", "etl", "b", 9_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(Timestamp(4_300)));
    let oncall = RequestFilter {
        reviewable_by: Some(vec!["oncall".into()]),
        limit: 10,
        ..RequestFilter::default()
    };
    assert!(store.requests(&oncall).await.unwrap().is_empty());

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.due_escalations(Timestamp(4_299))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(tx.due_escalations(Timestamp(4_300)).await.unwrap(), ["r1"]);
    let mut loaded = tx.request("r1").await.unwrap().unwrap();
    assert_eq!(loaded.escalate_if_due(Timestamp(4_300)).len(), 1);
    tx.record_escalation(&loaded).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(Timestamp(4_800)));
    assert_eq!(
        store
            .request("r1")
            .await
            .unwrap()
            .unwrap()
            .escalations_fired,
        1
    );
    assert_eq!(store.requests(&oncall).await.unwrap().len(), 1);

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.due_reminders(Timestamp(4_800)).await.unwrap(), ["r1"]);
    tx.clear_reminder("r1").await.unwrap();
    assert!(tx.due_reminders(Timestamp(4_900)).await.unwrap().is_empty());
    let vote = Vote {
        id: "v1".into(),
        voter: PrincipalRef::user("alice"),
        voter_groups: Default::default(),
        decision: Decision::Approve,
        reason: Some("the on-call pager is broken again".into()),
        channel: "api".into(),
        cast_at: Timestamp(4_900),
        break_glass: true,
    };
    tx.insert_vote("r2", &vote).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), Some(Timestamp(5_000)));
    let flagged = |flag| RequestFilter {
        break_glass: Some(flag),
        limit: 10,
        ..RequestFilter::default()
    };
    let glass = store.requests(&flagged(true)).await.unwrap();
    assert_eq!(glass.len(), 1);
    assert_eq!(glass[0].id, "r2");
    assert!(glass[0].broke_glass());
    let others = store.requests(&flagged(false)).await.unwrap();
    assert_eq!(
        others.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1"]
    );
}

async fn channel_messages_and_deliveries(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&request("r1", "etl", "a", 5_000))
        .await
        .unwrap();
    let message = countersign_core::ChannelMessage {
        request_id: "r1".into(),
        channel: "slack:T1".into(),
        conversation: "C1".into(),
        message_ts: "1503435956.000247".into(),
        purpose: "review".into(),
        created_at: Timestamp(4_100),
    };
    tx.insert_channel_message(&message).await.unwrap();
    // The same message twice (a retried post recorded again) is kept once.
    tx.insert_channel_message(&message).await.unwrap();
    let attempt = |n: u32, outcome: &str| countersign_core::DeliveryAttempt {
        message_id: "msg_1".into(),
        url: "http://hooks.example/x".into(),
        event_kind: "request.created".into(),
        request_id: Some("r1".into()),
        attempt: n,
        attempted_at: Timestamp(4_100 + i64::from(n)),
        status_code: (n > 1).then_some(200),
        error: (n == 1).then(|| "connection refused".to_string()),
        outcome: outcome.into(),
    };
    tx.insert_delivery_attempt("d1", &attempt(1, "retrying"))
        .await
        .unwrap();
    tx.insert_delivery_attempt("d2", &attempt(2, "delivered"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.channel_messages("r1").await.unwrap(), vec![message]);
    assert!(store.channel_messages("r2").await.unwrap().is_empty());
    assert_eq!(
        store.delivery_attempts(Some("r1"), 10).await.unwrap(),
        vec![attempt(1, "retrying"), attempt(2, "delivered")]
    );
    assert_eq!(store.delivery_attempts(None, 10).await.unwrap().len(), 2);
}

async fn rolled_back_step_leaves_nothing(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_request(&request("keep", "etl", "a", 5_000))
        .await
        .unwrap();
    tx.savepoint().await.unwrap();
    tx.insert_request(&request("drop", "etl", "b", 5_000))
        .await
        .unwrap();
    // A duplicate id fails; the savepoint undoes the whole step, not the batch.
    assert!(
        tx.insert_request(&request("drop", "etl", "b", 5_000))
            .await
            .is_err()
    );
    tx.rollback_to_savepoint().await.unwrap();
    tx.record_policy_version("abc", &["a.cedar".into()], 3)
        .await
        .unwrap();
    tx.record_policy_version("abc", &["a.cedar".into()], 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store.request("keep").await.unwrap().is_some());
    assert!(store.request("drop").await.unwrap().is_none());
    let versions = store.policy_versions(10).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].files, ["a.cedar"]);
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    assert!(matches!(
        Store::open("mysql://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}

#[tokio::test]
async fn unreachable_database_is_unavailable() {
    let opts = StoreOptions {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let err = Store::open_with("postgres://nobody@127.0.0.1:1/none", &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
