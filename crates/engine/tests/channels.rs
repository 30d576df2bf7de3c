//! What the engine offers reviewer channels, on both backends: notices of committed steps,
//! break-glass, escalations and reminders from the deadline task, and channel state kept
//! through the writer.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_core::{
    Action, Attempt, ChannelMessage, Decision, DeliveryAttempt, NoticeKind, Principal,
    PrincipalKind, RequestNotice, RequestStatus, Resource, Timestamp, VoteError,
};
use countersign_engine::{AuditSigning, CheckOutcome, Engine, EngineConfig, EngineError};
use countersign_policy::LoadedPolicies;
use countersign_store::testing::TestDb;
use countersign_store::{Backend, RequestFilter, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

const POLICIES: &str = r#"
@id("exports")
@approval("owners")
@quorum("2")
@remind("off")
permit (principal, action == Action::"db.export", resource);

@id("glass")
@approval("owners")
@quorum("2")
@break_glass("true")
@remind("off")
permit (principal, action == Action::"deploy", resource);

@id("glass-too")
@approval("owners")
@break_glass("true")
@remind("off")
permit (principal, action == Action::"deploy", resource == Service::"both");

@id("no-glass")
@approval("security")
@remind("off")
permit (principal, action == Action::"deploy", resource == Service::"both");

@id("secret")
@approval("owners")
@quorum("2")
@audit_payload("withhold")
@remind("off")
permit (principal, action == Action::"db.write", resource);

@id("escalating")
@approval("owners")
@timeout("4s")
@escalate("700ms:oncall")
@remind("2500ms")
permit (principal, action == Action::"exec", resource);
"#;

countersign_store::both_backends!(
    notices_follow_commits_in_order,
    break_glass_is_flagged_listed_and_hard_to_abuse,
    escalation_and_reminder_come_from_the_deadline_task,
    channel_state_goes_through_the_writer,
    a_payload_policy_withholds_is_withheld_from_channels_too,
);

async fn start(db: &TestDb) -> (Store, Engine) {
    let store = Store::open(&db.url).await.unwrap();
    let engine = Engine::start(
        store.clone(),
        LoadedPolicies::from_sources(&[("test.cedar", POLICIES)]).unwrap(),
        EngineConfig {
            public_url: "http://review.test".into(),
            audit: AuditSigning::ephemeral("test.example/countersign").unwrap(),
            journal: None,
        },
    )
    .await
    .unwrap();
    (store, engine)
}

fn agent() -> Principal {
    Principal::new(PrincipalKind::Agent, "etl", ["agents"])
}

fn user(id: &str, groups: &[&str]) -> Principal {
    Principal::new(PrincipalKind::User, id, groups.iter().copied())
}

fn attempt(action: &str, resource: Resource, payload: &str) -> Attempt {
    Attempt {
        principal: agent().reference(),
        on_behalf_of: Some("alice".into()),
        action: Action::parse(action).unwrap(),
        resources: vec![resource],
        payload: serde_json::json!(payload),
        justification: Some("test".into()),
        context: BTreeMap::new(),
    }
}

/// `attempt` as alice makes it herself, not through an agent.
fn alices_own(mut attempt: Attempt) -> Attempt {
    attempt.principal = user("alice", &[]).reference();
    attempt.on_behalf_of = None;
    attempt
}

async fn hold(engine: &Engine, attempt: Attempt) -> String {
    hold_as(engine, &agent(), attempt).await
}

async fn hold_as(engine: &Engine, who: &Principal, attempt: Attempt) -> String {
    match engine.check(who, attempt, "api").await {
        CheckOutcome::Pending { request, .. } => request.id,
        other => panic!("expected pending, got {other:?}"),
    }
}

async fn next(rx: &mut broadcast::Receiver<Arc<RequestNotice>>) -> Arc<RequestNotice> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notice in time")
        .expect("no notice lost")
}

/// Every audit event as JSON.
async fn events(engine: &Engine) -> Vec<serde_json::Value> {
    engine
        .audit_records(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.event_json).unwrap())
        .collect()
}

async fn notices_follow_commits_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, engine) = start(&db).await;
    let mut rx = engine.subscribe();
    let id = hold(
        &engine,
        attempt("db.export", Resource::new("Database", "prod"), "COPY t"),
    )
    .await;
    let created = next(&mut rx).await;
    assert_eq!(created.kind, NoticeKind::Created);
    assert_eq!(created.request.id, id);
    // The notice's request is the committed one.
    assert_eq!(engine.request(&id).await.unwrap(), created.request);

    let bob = user("bob", &["owners"]);
    engine
        .vote(&bob, &id, Decision::Approve, None, "slack")
        .await
        .unwrap();
    let voted = next(&mut rx).await;
    assert_eq!(voted.kind, NoticeKind::Voted);
    assert_eq!(voted.actor, Some(bob.reference()));
    assert_eq!(voted.request.votes.len(), 1);
    assert_eq!(voted.request.votes[0].channel, "slack");

    // A refused vote changes nothing and tells nobody.
    assert!(
        engine
            .vote(
                &user("alice", &["owners"]),
                &id,
                Decision::Approve,
                None,
                "slack"
            )
            .await
            .is_err()
    );
    let carol = user("carol", &["owners"]);
    engine
        .vote(&carol, &id, Decision::Approve, Some("fine".into()), "api")
        .await
        .unwrap();
    let settled = next(&mut rx).await;
    assert_eq!(settled.kind, NoticeKind::Settled);
    assert_eq!(settled.request.status, RequestStatus::Approved);
    assert_eq!(settled.actor, Some(carol.reference()));
    let issued = next(&mut rx).await;
    assert_eq!(issued.kind, NoticeKind::GrantIssued);
    let grant = issued.grant.clone().unwrap();
    engine
        .revoke(&user("root", &[]), &grant.id, true, Some("done".into()))
        .await
        .unwrap();
    let revoked = next(&mut rx).await;
    assert_eq!(revoked.kind, NoticeKind::GrantRevoked);
    assert_eq!(revoked.request.id, id);
    assert!(rx.try_recv().is_err(), "nothing else was told");

    // Nothing committed, nothing told: with the store gone, the attempt is denied in silence.
    store.close().await;
    let outcome = engine
        .check(
            &agent(),
            attempt("db.export", Resource::new("Database", "prod"), "COPY u"),
            "api",
        )
        .await;
    assert_eq!(outcome.label(), "deny");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        rx.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

const REASON: &str = "prod is down and the on-call reviewers are unreachable";

async fn break_glass_is_flagged_listed_and_hard_to_abuse(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_store, engine) = start(&db).await;
    let mut rx = engine.subscribe();
    let alice = user("alice", &[]);
    let service = || Resource::new("Service", "api");

    // A policy without the annotation: refused, logged, nothing settles.
    let plain = hold_as(
        &engine,
        &alice,
        alices_own(attempt(
            "db.export",
            Resource::new("Database", "prod"),
            "COPY t",
        )),
    )
    .await;
    let refusal = engine
        .break_glass(&alice, &plain, REASON.into(), "api")
        .await;
    assert!(matches!(
        refusal,
        Err(EngineError::Vote(VoteError::BreakGlass(_)))
    ));
    // Another rule's quorum: two policies match, one without break-glass.
    let both = hold_as(
        &engine,
        &alice,
        alices_own(attempt("deploy", Resource::new("Service", "both"), "v2")),
    )
    .await;
    assert!(matches!(
        engine.break_glass(&alice, &both, REASON.into(), "api").await,
        Err(EngineError::Vote(VoteError::BreakGlass(m))) if m.contains("no-glass")
    ));
    // The user an agent names as `on_behalf_of`: the agent made that up, so alice may not
    // approve alone what the agent asked in her name.
    let named = hold(&engine, attempt("deploy", service(), "v1")).await;
    assert!(matches!(
        engine.break_glass(&alice, &named, REASON.into(), "api").await,
        Err(EngineError::Vote(VoteError::BreakGlass(m))) if m.contains("agent acts for")
    ));
    let id = hold_as(
        &engine,
        &alice,
        alices_own(attempt("deploy", service(), "v1")),
    )
    .await;
    // A short reason; the agent approving for itself; a reviewer skipping the quorum.
    for (who, request, reason) in [
        (&alice, &id, "too short"),
        (&agent(), &named, REASON),
        (&user("bob", &["owners"]), &id, REASON),
    ] {
        assert!(matches!(
            engine.break_glass(who, request, reason.into(), "api").await,
            Err(EngineError::Vote(VoteError::BreakGlass(_)))
        ));
    }
    // The plain self-approval stays refused.
    assert!(matches!(
        engine
            .vote(&alice, &id, Decision::Approve, Some(REASON.into()), "api")
            .await,
        Err(EngineError::Vote(VoteError::SelfApproval))
    ));
    for r in [&plain, &both, &named, &id] {
        let r = engine.request(r).await.unwrap();
        assert_eq!(r.status, RequestStatus::Pending);
        assert!(r.votes.is_empty());
    }

    let approved = engine
        .break_glass(&alice, &id, REASON.into(), "api")
        .await
        .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    let kinds: Vec<NoticeKind> = [
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ]
    .iter()
    .map(|n| n.kind)
    .collect();
    assert_eq!(
        kinds,
        [
            NoticeKind::Created,
            NoticeKind::Created,
            NoticeKind::Created,
            NoticeKind::Created,
            NoticeKind::Settled,
            NoticeKind::GrantIssued
        ]
    );
    // Listed for review after the fact, and only it.
    let listed = engine
        .requests(&RequestFilter {
            break_glass: Some(true),
            limit: 10,
            ..RequestFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|r| &r.id).collect::<Vec<_>>(), [&id]);
    // The audit log flags the vote and the settlement; the refused tries are logged too.
    let events = events(&engine).await;
    let flagged: Vec<&str> = events
        .iter()
        .filter(|e| e["break_glass"] == true && e["request_id"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        flagged,
        [
            "vote.refused",
            "vote.refused",
            "vote.cast",
            "request.settled"
        ]
    );
    let refused = events
        .iter()
        .filter(|e| e["kind"] == "vote.refused")
        .count();
    assert_eq!(refused, 7);
}

async fn escalation_and_reminder_come_from_the_deadline_task(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_store, engine) = start(&db).await;
    let mut rx = engine.subscribe();
    let id = hold(&engine, attempt("exec", Resource::new("Host", "h1"), "ls")).await;
    assert_eq!(next(&mut rx).await.kind, NoticeKind::Created);
    let sam = user("sam", &["oncall"]);
    // Before the escalation the on-call group may not vote, nor list the request.
    assert!(matches!(
        engine.vote(&sam, &id, Decision::Approve, None, "api").await,
        Err(EngineError::Vote(VoteError::NotEligible(_)))
    ));
    let oncall = RequestFilter {
        reviewable_by: Some(vec!["oncall".into()]),
        limit: 10,
        ..RequestFilter::default()
    };
    assert!(engine.requests(&oncall).await.unwrap().is_empty());

    let escalated = next(&mut rx).await;
    assert_eq!(escalated.kind, NoticeKind::Escalated);
    assert_eq!(escalated.groups, ["oncall".to_string()].into());
    let waited = escalated.at.millis() - escalated.request.created_at.millis();
    assert!(
        (700..2_000).contains(&waited),
        "escalated after {waited} ms"
    );
    assert_eq!(engine.requests(&oncall).await.unwrap().len(), 1);

    let reminder = next(&mut rx).await;
    assert_eq!(reminder.kind, NoticeKind::Reminder);
    let early = reminder.request.expires_at.millis() - reminder.at.millis();
    assert!(
        (1_000..=2_500).contains(&early),
        "reminded {early} ms early"
    );

    // Now the on-call reviewer counts.
    let r = engine
        .vote(&sam, &id, Decision::Approve, None, "api")
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let kinds: Vec<String> = events(&engine)
        .await
        .iter()
        .filter(|e| e["request_id"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "attempt",
            "request.created",
            "vote.refused",
            "request.escalated",
            "request.reminded",
            "vote.cast",
            "request.settled",
            "grant.issued"
        ]
    );
}

async fn channel_state_goes_through_the_writer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_store, engine) = start(&db).await;
    let id = hold(
        &engine,
        attempt("db.export", Resource::new("Database", "prod"), "COPY t"),
    )
    .await;
    let message = |request_id: &str| ChannelMessage {
        request_id: request_id.into(),
        channel: "slack:T1".into(),
        conversation: "C1".into(),
        message_ts: "1.000100".into(),
        purpose: "review".into(),
        created_at: Timestamp(1),
    };
    engine.record_channel_message(message(&id)).await.unwrap();
    // A message about a request that does not exist is refused, and nothing else is lost.
    assert!(
        engine
            .record_channel_message(message("no-such-request"))
            .await
            .is_err()
    );
    assert_eq!(
        engine.channel_messages(&id).await.unwrap(),
        vec![message(&id)]
    );
    let attempt = DeliveryAttempt {
        message_id: "msg_1".into(),
        url: "http://hooks.test/".into(),
        event_kind: "request.created".into(),
        request_id: Some(id.clone()),
        attempt: 1,
        attempted_at: Timestamp(2),
        status_code: Some(503),
        error: None,
        outcome: "retrying".into(),
    };
    engine
        .record_delivery_attempt(attempt.clone())
        .await
        .unwrap();
    assert_eq!(
        engine.delivery_attempts(Some(&id), 10).await.unwrap(),
        vec![attempt]
    );
    assert!(engine.ready().await.is_ok());
}

async fn a_payload_policy_withholds_is_withheld_from_channels_too(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, engine) = start(&db).await;
    let mut rx = engine.subscribe();
    let prod = || Resource::new("Database", "prod");
    let secret = hold(
        &engine,
        attempt("db.write", prod(), "UPDATE users SET password = 'hunter2'"),
    )
    .await;
    let plain = hold(&engine, attempt("db.export", prod(), "COPY t")).await;
    // The notices channels render say which payload they must not show.
    for (id, withheld) in [(&secret, true), (&plain, false)] {
        let n = next(&mut rx).await;
        assert_eq!((&n.request.id, n.request.payload_withheld), (id, withheld));
    }
    // Kept with the request, so notices built later from the store say it too.
    let owner = user("olga", &["owners"]);
    engine
        .vote(&owner, &secret, Decision::Approve, None, "api")
        .await
        .unwrap();
    let voted = next(&mut rx).await;
    assert_eq!(voted.kind, NoticeKind::Voted);
    assert!(voted.request.payload_withheld);
    assert!(
        store
            .request(&secret)
            .await
            .unwrap()
            .unwrap()
            .payload_withheld
    );
    assert!(
        !store
            .request(&plain)
            .await
            .unwrap()
            .unwrap()
            .payload_withheld
    );
}
