//! The channels against the local fakes: Slack's Web API (bearer token, request shapes,
//! documented errors, 429 with Retry-After) and a webhook receiver that verifies signatures.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_core::{
    Action, ApprovalRequest, ApprovalRule, Attempt, ChannelMessage, Decision, DeliveryAttempt,
    GrantShape, NoticeKind, PayloadDigest, Principal, PrincipalKind, PrincipalRef, RequestNotice,
    RequestStatus, Requirements, Resource, Timestamp, Vote,
};
use countersign_notify::slack::api::SlackError;
use countersign_notify::slack::{IdentityError, Slack, SlackConfig};
use countersign_notify::testing::{FakeSlack, FakeUser, Scripted, WebhookReceiver, eventually};
use countersign_notify::webhook::{Webhook, WebhookSecret};
use countersign_notify::{Backoff, ChannelState, Directory, Dispatcher, Secret};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(10);
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct MemoryState {
    messages: Mutex<Vec<ChannelMessage>>,
    deliveries: Mutex<Vec<DeliveryAttempt>>,
}

/// The state as the dispatcher sees it, shared with the test.
#[derive(Clone, Default)]
struct State(Arc<MemoryState>);

impl ChannelState for State {
    async fn record_message(&self, message: ChannelMessage) -> Result<(), String> {
        self.0.messages.lock().unwrap().push(message);
        Ok(())
    }
    async fn messages(&self, request_id: &str) -> Result<Vec<ChannelMessage>, String> {
        Ok(self
            .0
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.request_id == request_id)
            .cloned()
            .collect())
    }
    async fn record_delivery(&self, attempt: DeliveryAttempt) -> Result<(), String> {
        self.0.deliveries.lock().unwrap().push(attempt);
        Ok(())
    }
    fn review_url(&self, request_id: &str) -> String {
        format!("http://gateway.test/v1/requests/{request_id}")
    }
}

fn fast() -> Backoff {
    Backoff {
        attempts: 4,
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    }
}

fn config(fake: &FakeSlack) -> SlackConfig {
    SlackConfig {
        group_channels: BTreeMap::from([("security".into(), "C0SECURITY".into())]),
        users: BTreeMap::from([("U0MAPPED".into(), "dora@example.com".into())]),
        ..fake.config("C0REVIEWS")
    }
}

fn directory() -> Directory {
    let user =
        |id: &str, groups: &[&str]| Principal::new(PrincipalKind::User, id, groups.iter().copied());
    Directory::new([
        user("alice@example.com", &["reviewers"]),
        user("bob@example.com", &["reviewers"]),
        user("carol@example.com", &["reviewers", "security"]),
        Principal::new(PrincipalKind::Agent, "ci", ["reviewers"]),
    ])
}

fn request() -> ApprovalRequest {
    let action = Action::parse("exec").unwrap();
    let resources = vec![Resource::new("Host", "build-1")];
    let payload = serde_json::json!(["systemctl", "restart", "api"]);
    ApprovalRequest {
        id: "r-1".into(),
        digest: PayloadDigest::compute(&action, &resources, &payload),
        attempt: Attempt {
            principal: PrincipalRef::agent("ci"),
            on_behalf_of: Some("alice@example.com".into()),
            action,
            resources,
            payload,
            justification: Some("rolling restart".into()),
            context: Default::default(),
        },
        requirements: Requirements::new(
            vec![ApprovalRule {
                policy_id: "p".into(),
                groups: ["reviewers".to_string()].into(),
                quorum: 2,
                break_glass: true,
            }],
            GrantShape::Once,
            3_600_000,
        ),
        policy_version: "v".into(),
        policy_ids: vec!["p".into()],
        status: RequestStatus::Pending,
        created_at: Timestamp(1_000),
        expires_at: Timestamp(3_601_000),
        settled_at: None,
        cancelled_by: None,
        votes: Vec::new(),
        escalations_fired: 0,
        payload_withheld: false,
    }
}

fn vote(r: &mut ApprovalRequest, who: &str, at: i64, break_glass: bool) {
    r.votes.push(Vote {
        id: format!("v-{who}"),
        voter: PrincipalRef::user(who),
        voter_groups: ["reviewers".to_string()].into(),
        decision: Decision::Approve,
        reason: Some(format!("checked by {who}")),
        channel: "slack".into(),
        cast_at: Timestamp(at),
        break_glass,
    });
}

fn notice(kind: NoticeKind, r: &ApprovalRequest) -> Arc<RequestNotice> {
    Arc::new(RequestNotice::new(kind, Timestamp(2_000), r.clone()))
}

struct Rig {
    fake: FakeSlack,
    state: State,
    tx: broadcast::Sender<Arc<RequestNotice>>,
}

async fn rig(dm: bool, hooks: Vec<Webhook>) -> Rig {
    let fake = FakeSlack::start("T0TEST").await;
    for (id, email) in [
        ("U0ALICE", "alice@example.com"),
        ("U0BOB", "bob@example.com"),
        ("U0CAROL", "carol@example.com"),
    ] {
        fake.add_user(id, Some(email));
    }
    let state = State::default();
    let tx = broadcast::channel(64).0;
    start(&fake, &state, &tx, dm, hooks);
    Rig { fake, state, tx }
}

fn start(
    fake: &FakeSlack,
    state: &State,
    tx: &broadcast::Sender<Arc<RequestNotice>>,
    dm: bool,
    hooks: Vec<Webhook>,
) {
    let mut c = config(fake);
    c.dm_reviewers = dm;
    let slack = Arc::new(Slack::new(c, fast()).unwrap());
    let mut d = Dispatcher::new(state.clone(), directory()).with_slack(slack);
    for h in hooks {
        d = d.with_webhook(h, fast());
    }
    d.spawn(tx.subscribe()).unwrap();
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn a_request_is_posted_updated_with_votes_then_with_the_outcome() {
    let rig = rig(true, Vec::new()).await;
    let mut r = request();
    rig.tx.send(notice(NoticeKind::Created, &r)).unwrap();
    eventually("the review message and the DMs", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 3
    })
    .await;
    let posts = rig.fake.calls("chat.postMessage");
    let targets: Vec<&str> = posts
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap())
        .collect();
    // The channel, then every eligible reviewer but the requester (alice), never the agent.
    assert_eq!(targets, ["C0REVIEWS", "U0BOB", "U0CAROL"]);
    assert!(posts.iter().all(|c| c.answer == "ok"));
    let review = text_of(&posts[0].body);
    assert!(review.contains("systemctl restart api") && review.contains("countersign_approve"));
    // A reference is kept once Slack answered its post, a moment after the fake counted it.
    eventually("the three message references kept", WAIT, || {
        rig.state.0.messages.lock().unwrap().len() == 3
    })
    .await;
    let refs = rig.state.0.messages.lock().unwrap().clone();
    assert_eq!(refs[1].conversation, "DU0BOB");

    vote(&mut r, "bob@example.com", 1_500, false);
    rig.tx.send(notice(NoticeKind::Voted, &r)).unwrap();
    eventually("updates with the vote", WAIT, || {
        rig.fake.calls("chat.update").len() == 3
    })
    .await;
    let (ts, msg) = rig.fake.messages_in("C0REVIEWS").remove(0);
    assert!(text_of(&msg).contains("checked by bob@example.com"));
    assert!(
        text_of(&msg).contains("countersign_approve"),
        "buttons stay while pending"
    );

    vote(&mut r, "carol@example.com", 1_800, false);
    r.status = RequestStatus::Approved;
    r.settled_at = Some(Timestamp(1_800));
    rig.tx.send(notice(NoticeKind::Settled, &r)).unwrap();
    eventually(
        "the outcome everywhere and the requester's notice",
        WAIT,
        || {
            rig.fake.calls("chat.update").len() == 6
                && rig.fake.calls("chat.postMessage").len() == 4
        },
    )
    .await;
    let settled = rig.fake.message("C0REVIEWS", &ts).unwrap();
    let text = text_of(&settled);
    assert!(
        text.contains("Approved by bob@example.com, carol@example.com"),
        "{text}"
    );
    assert!(!text.contains("countersign_approve"), "buttons gone");
    let notice_post = rig.fake.calls("chat.postMessage").pop().unwrap();
    assert_eq!(notice_post.body["channel"], "U0ALICE");
    assert!(text_of(&notice_post.body).contains("Your request"));
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_refusals_are_not_retried() {
    let rig = rig(false, Vec::new()).await;
    rig.fake
        .script("chat.postMessage", Scripted::RateLimited(1));
    let started = Instant::now();
    rig.tx
        .send(notice(NoticeKind::Created, &request()))
        .unwrap();
    eventually("the post after the rate limit", WAIT, || {
        rig.fake
            .calls("chat.postMessage")
            .iter()
            .any(|c| c.answer == "ok")
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let answers: Vec<String> = rig
        .fake
        .calls("chat.postMessage")
        .into_iter()
        .map(|c| c.answer)
        .collect();
    assert_eq!(answers, ["ratelimited", "ok"]);

    // A documented refusal is final: one call, nothing recorded.
    rig.fake.script(
        "chat.postMessage",
        Scripted::Error("channel_not_found".into()),
    );
    let mut other = request();
    other.id = "r-2".into();
    rig.tx.send(notice(NoticeKind::Created, &other)).unwrap();
    eventually("the refused post", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.fake.calls("chat.postMessage").len(), 3);
    assert!(
        rig.state
            .0
            .messages
            .lock()
            .unwrap()
            .iter()
            .all(|m| m.request_id == "r-1")
    );
    // Transient errors are retried with backoff.
    rig.fake
        .script("chat.postMessage", Scripted::Error("internal_error".into()));
    let mut third = request();
    third.id = "r-3".into();
    rig.tx.send(notice(NoticeKind::Created, &third)).unwrap();
    eventually("the retried post", WAIT, || {
        rig.state
            .0
            .messages
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.request_id == "r-3")
    })
    .await;
}

#[tokio::test]
async fn messages_are_updated_after_a_restart() {
    let rig = rig(false, Vec::new()).await;
    let mut r = request();
    rig.tx.send(notice(NoticeKind::Created, &r)).unwrap();
    eventually("the post", WAIT, || {
        !rig.state.0.messages.lock().unwrap().is_empty()
    })
    .await;
    // A new dispatcher over the same kept state, as after a restart of the gateway.
    let tx = broadcast::channel(8).0;
    start(&rig.fake, &rig.state, &tx, false, Vec::new());
    r.status = RequestStatus::Expired;
    r.settled_at = Some(Timestamp(3_601_000));
    tx.send(notice(NoticeKind::Settled, &r)).unwrap();
    eventually("the update", WAIT, || {
        !rig.fake.calls("chat.update").is_empty()
    })
    .await;
    let (_, msg) = rig.fake.messages_in("C0REVIEWS").remove(0);
    assert!(text_of(&msg).contains("Expired without a decision"));
}

#[tokio::test]
async fn break_glass_tells_every_eligible_reviewer_at_once() {
    let rig = rig(false, Vec::new()).await;
    let mut r = request();
    rig.tx.send(notice(NoticeKind::Created, &r)).unwrap();
    eventually("the post", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 1
    })
    .await;
    vote(&mut r, "alice@example.com", 1_200, true);
    r.status = RequestStatus::Approved;
    r.settled_at = Some(Timestamp(1_200));
    rig.tx.send(notice(NoticeKind::Settled, &r)).unwrap();
    // The channel again, bob and carol directly (not alice, the requester), then alice's notice.
    eventually("the alerts", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 5
    })
    .await;
    let targets: Vec<String> = rig
        .fake
        .calls("chat.postMessage")
        .iter()
        .map(|c| c.body["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        targets,
        ["C0REVIEWS", "C0REVIEWS", "U0BOB", "U0CAROL", "U0ALICE"]
    );
    assert!(text_of(&rig.fake.calls("chat.postMessage")[2].body).contains("BREAK-GLASS"));
}

#[tokio::test]
async fn escalations_go_to_the_group_channel_and_reminders_to_the_thread() {
    let rig = rig(false, Vec::new()).await;
    let r = request();
    rig.tx.send(notice(NoticeKind::Created, &r)).unwrap();
    eventually("the post", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 1
    })
    .await;
    let mut escalated = RequestNotice::new(NoticeKind::Escalated, Timestamp(2_000), r.clone());
    escalated.groups = ["security".to_string()].into();
    rig.tx.send(Arc::new(escalated)).unwrap();
    rig.tx.send(notice(NoticeKind::Reminder, &r)).unwrap();
    eventually("escalation and reminders", WAIT, || {
        rig.fake.calls("chat.postMessage").len() == 4
    })
    .await;
    let posts = rig.fake.calls("chat.postMessage");
    assert_eq!(posts[1].body["channel"], "C0SECURITY");
    assert!(text_of(&posts[1].body).contains("Escalated to security"));
    // The reminder goes to both review messages' threads.
    for p in &posts[2..] {
        assert!(p.body["thread_ts"].is_string());
        assert!(text_of(&p.body).contains("Reminder"));
    }
}

#[tokio::test]
async fn identities_come_only_from_slack_or_the_mapping() {
    let fake = FakeSlack::start("T0TEST").await;
    fake.add_user("U0BOB", Some("bob@example.com"));
    fake.add_user("U0NOMAIL", None);
    let other = |deleted, is_bot, team: &str| FakeUser {
        email: Some("x@example.com".into()),
        team_id: team.into(),
        deleted,
        is_bot,
    };
    fake.add_user_full("U0GONE", other(true, false, "T0TEST"));
    fake.add_user_full("U0BOT", other(false, true, "T0TEST"));
    fake.add_user_full("U0ELSEWHERE", other(false, false, "T0OTHER"));
    let slack = Slack::new(config(&fake), fast()).unwrap();
    assert_eq!(slack.identify("U0BOB").await.unwrap(), "bob@example.com");
    // The explicit mapping wins without asking Slack.
    assert_eq!(
        slack.identify("U0MAPPED").await.unwrap(),
        "dora@example.com"
    );
    assert_eq!(fake.calls("users.info").len(), 1);
    // A second click within a minute asks Slack no more.
    slack.identify("U0BOB").await.unwrap();
    assert_eq!(fake.calls("users.info").len(), 1);
    assert_eq!(
        slack.identify("U0NOMAIL").await,
        Err(IdentityError::NoEmail)
    );
    assert_eq!(
        slack.identify("U0GONE").await,
        Err(IdentityError::NotAPerson)
    );
    assert_eq!(
        slack.identify("U0BOT").await,
        Err(IdentityError::NotAPerson)
    );
    assert_eq!(
        slack.identify("U0ELSEWHERE").await,
        Err(IdentityError::OtherWorkspace)
    );
    assert!(matches!(
        slack.identify("U0NOBODY").await,
        Err(IdentityError::Slack(SlackError::Api { error, .. })) if error == "user_not_found"
    ));
    // Reverse lookups for direct messages.
    assert_eq!(
        slack
            .user_id_of("BOB@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("U0BOB")
    );
    assert_eq!(
        slack
            .user_id_of("dora@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("U0MAPPED")
    );
    assert_eq!(slack.user_id_of("nobody@example.com").await.unwrap(), None);
    assert_eq!(slack.user_id_of("ci").await.unwrap(), None);

    // A wrong bot token is refused the way Slack refuses it.
    let mut bad = config(&fake);
    bad.bot_token = Secret::new("xoxb-wrong");
    let slack = Slack::new(bad, fast()).unwrap();
    assert!(matches!(
        slack.identify("U0BOB").await,
        Err(IdentityError::Slack(SlackError::Api { error, .. })) if error == "invalid_auth"
    ));
}

#[tokio::test]
async fn explanations_go_only_to_slack_response_urls() {
    let fake = FakeSlack::start("T0TEST").await;
    let slack = Slack::new(config(&fake), fast()).unwrap();
    let click = fake.click("U0BOB", "countersign_approve", "r-1", "C0REVIEWS", "1.1");
    let url = click["response_url"].as_str().unwrap();
    slack.explain(url, "not for you").await.unwrap();
    let responses = fake.responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].1["response_type"], "ephemeral");
    assert_eq!(responses[0].1["text"], "not for you");
    for foreign in [
        "http://169.254.169.254/latest/meta-data",
        "https://hooks.slack.com.evil.test/x",
        "http://hooks.slack.com/x",
    ] {
        assert!(matches!(
            slack.explain(foreign, "x").await,
            Err(SlackError::ForeignResponseUrl(_))
        ));
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_every_attempt_recorded() {
    let receiver = WebhookReceiver::start(HOOK_SECRET).await;
    receiver.answer_next(503, None);
    receiver.answer_next(429, Some(1));
    let hook = Webhook {
        url: receiver.url.clone(),
        secret: WebhookSecret::parse(HOOK_SECRET).unwrap(),
    };
    let rig = rig(false, vec![hook]).await;
    let mut r = request();
    rig.tx.send(notice(NoticeKind::Created, &r)).unwrap();
    eventually("three attempts", WAIT, || {
        rig.state.0.deliveries.lock().unwrap().len() == 3
    })
    .await;
    let attempts = rig.state.0.deliveries.lock().unwrap().clone();
    let outcomes: Vec<(u32, Option<u16>, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.status_code, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Some(503), "retrying"),
            (2, Some(429), "retrying"),
            (3, Some(204), "delivered")
        ]
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.message_id == attempts[0].message_id
                && a.request_id.as_deref() == Some("r-1"))
    );
    assert!(
        attempts[2].attempted_at.millis() - attempts[1].attempted_at.millis() >= 1_000,
        "Retry-After was honoured"
    );
    let got = receiver.received();
    assert!(got.iter().all(|d| d.verified.is_ok()), "{got:?}");
    assert!(got.iter().all(|d| d.id == attempts[0].message_id));
    assert_eq!(got[2].body["type"], "request.created");
    assert_eq!(got[2].body["data"]["request_id"], "r-1");
    assert_eq!(got[2].body["data"]["on_behalf_of"], "alice@example.com");
    assert!(
        got[2].body["data"].get("payload").is_none(),
        "the payload text stays out"
    );

    vote(&mut r, "alice@example.com", 1_200, true);
    r.status = RequestStatus::Approved;
    r.settled_at = Some(Timestamp(1_200));
    rig.tx.send(notice(NoticeKind::Settled, &r)).unwrap();
    eventually("the settlement", WAIT, || receiver.received().len() == 4).await;
    let settled = &receiver.received()[3].body;
    assert_eq!(settled["type"], "request.settled");
    assert_eq!(settled["data"]["break_glass"], true);
    assert_eq!(settled["data"]["status"], "approved");
}

#[tokio::test]
async fn a_receiver_that_never_accepts_is_given_up_on() {
    // Signed with another secret: the receiver refuses (401) every attempt.
    let receiver = WebhookReceiver::start(HOOK_SECRET).await;
    let hook = Webhook {
        url: receiver.url.clone(),
        secret: WebhookSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
    };
    let rig = rig(false, vec![hook]).await;
    rig.tx
        .send(notice(NoticeKind::Created, &request()))
        .unwrap();
    eventually("every attempt", WAIT, || {
        rig.state
            .0
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.outcome == "failed")
    })
    .await;
    let attempts = rig.state.0.deliveries.lock().unwrap().clone();
    assert_eq!(attempts.len(), 4);
    assert!(
        receiver
            .received()
            .iter()
            .all(|d| d.verified.is_err() && d.answered == 401)
    );
}
