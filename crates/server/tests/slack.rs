//! Reviewer channels through the real HTTP server on both backends: Slack clicks signed as
//! Slack signs them against a loopback fake of the Slack Web API, every refusal of bad input,
//! the deny-reason modal, and break-glass through the API with its notices.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_core::{Principal, PrincipalKind, RequestStatus};
use countersign_engine::{Engine, EngineConfig};
use countersign_notify::Backoff;
use countersign_notify::slack::interaction::{APPROVE_ACTION, DENY_ACTION, form_body};
use countersign_notify::slack::{Slack, SlackConfig, signature};
use countersign_notify::testing::{FakeSlack, FakeUser, WebhookReceiver, eventually, send_raw};
use countersign_notify::webhook::{Webhook, WebhookSecret};
use countersign_policy::LoadedPolicies;
use countersign_server::{ConfiguredPrincipal, ServerConfig};
use countersign_store::Backend;
use countersign_store::testing::TestDb;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const POLICIES: &str = r#"
@id("exec-needs-two")
@approval("reviewers")
@quorum("2")
permit (principal in Group::"agents", action == Action::"exec", resource);

@id("deploys-need-a-reason-to-deny")
@approval("reviewers")
@require_reason("deny")
permit (principal in Group::"agents", action == Action::"deploy", resource);

@id("emergency-exports")
@approval("reviewers")
@quorum("2")
@break_glass("true")
permit (principal in Group::"oncall", action == Action::"db.export", resource);
"#;

countersign_store::both_backends!(
    clicks_from_two_reviewers_settle_and_the_message_shows_them,
    bad_input_never_becomes_a_vote,
    a_deny_that_needs_a_reason_opens_a_modal,
    break_glass_through_the_api_is_flagged_listed_and_told,
);

const WAIT: Duration = Duration::from_secs(10);
const TEAM: &str = "T0TEST";
const AGENT: &str = "agent-token";
const ALICE: &str = "alice-token";
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Rig {
    url: String,
    engine: Engine,
    fake: FakeSlack,
    hook: WebhookReceiver,
    http: reqwest::Client,
    _db: TestDb,
}

fn principal(kind: PrincipalKind, id: &str, groups: &[&str], token: &str) -> ConfiguredPrincipal {
    ConfiguredPrincipal {
        principal: Principal::new(kind, id, groups.iter().copied()),
        token_sha256: Sha256::digest(token.as_bytes()).into(),
    }
}

async fn rig(backend: Backend) -> Rig {
    let db = TestDb::new(backend).await;
    let store = countersign_store::Store::open(&db.url).await.unwrap();
    let engine = Engine::start(
        store,
        LoadedPolicies::from_sources(&[("p.cedar", POLICIES)]).unwrap(),
        EngineConfig {
            public_url: "http://gateway.test".into(),
            audit: countersign_engine::AuditSigning::ephemeral("test.example/countersign").unwrap(),
            journal: None,
        },
    )
    .await
    .unwrap();
    let fake = FakeSlack::start(TEAM).await;
    // Bob is known by the e-mail Slack reports; Carol by the explicit mapping only.
    fake.add_user("U0BOB", Some("bob@example.com"));
    fake.add_user("U0ALICE", Some("alice@example.com"));
    fake.add_user("U0EVE", Some("eve@example.com"));
    fake.add_user("U0STRANGER", Some("stranger@example.com"));
    fake.add_user("U0CAROL", None);
    fake.add_user_full(
        "U0VISITOR",
        FakeUser {
            email: Some("bob@example.com".into()),
            team_id: "T0OTHER".into(),
            deleted: false,
            is_bot: false,
        },
    );
    let slack = Arc::new(
        Slack::new(
            SlackConfig {
                users: BTreeMap::from([("U0CAROL".into(), "carol@example.com".into())]),
                ..fake.config("C0REVIEWS")
            },
            Backoff::default(),
        )
        .unwrap(),
    );
    use PrincipalKind::{Agent, User};
    let principals = vec![
        principal(Agent, "ci", &["agents"], AGENT),
        principal(User, "alice@example.com", &["reviewers", "oncall"], ALICE),
        principal(User, "bob@example.com", &["reviewers"], "bob-token"),
        principal(User, "carol@example.com", &["reviewers"], "carol-token"),
        principal(User, "eve@example.com", &["interns"], "eve-token"),
        principal(User, "audra@example.com", &["auditors"], "audra-token"),
    ];
    let hook = WebhookReceiver::start(HOOK_SECRET).await;
    countersign_server::channels::start(
        &engine,
        &principals,
        std::slice::from_ref(&slack),
        vec![Webhook {
            url: hook.url.clone(),
            secret: WebhookSecret::parse(HOOK_SECRET).unwrap(),
        }],
        Backoff::default(),
    )
    .unwrap();
    let config = ServerConfig {
        principals,
        auditor_groups: ["auditors".to_string()].into(),
        admin_groups: ["admins".to_string()].into(),
        max_body_bytes: 64 * 1024,
        policy_source: Arc::new(|| LoadedPolicies::from_sources(&[("p.cedar", POLICIES)])),
        slack: vec![slack],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(countersign_server::serve(
        listener,
        countersign_server::router(engine.clone(), config),
        std::future::pending(),
    ));
    Rig {
        url,
        engine,
        fake,
        hook,
        http: {
            countersign_notify::install_crypto_provider();
            reqwest::Client::new()
        },
        _db: db,
    }
}

impl Rig {
    async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The agent asks for `action` on behalf of Alice; the id of the held request, once its
    /// review message is in Slack, with that message's ts.
    async fn held(&self, action: &str, payload: &str) -> (String, String) {
        let (status, v) = self
            .api(
                "POST",
                "/v1/attempts",
                AGENT,
                Some(
                    json!({"action": action, "resource": {"type": "Host", "id": "build-1"},
                            "payload": payload, "on_behalf_of": "alice@example.com",
                            "justification": "release"}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["outcome"], "pending", "{v}");
        let id = v["request_id"].as_str().unwrap().to_owned();
        let mut ts = None;
        eventually("the review message", WAIT, || {
            ts = self
                .fake
                .messages_in("C0REVIEWS")
                .into_iter()
                .find(|(_, m)| m.to_string().contains(&id))
                .map(|(ts, _)| ts);
            ts.is_some()
        })
        .await;
        (id, ts.unwrap())
    }

    async fn click(&self, user: &str, action: &str, id: &str, ts: &str) -> (u16, String) {
        let payload = self.fake.click(user, action, id, "C0REVIEWS", ts);
        self.fake.deliver(&self.http, &self.url, &payload).await
    }

    async fn votes(&self, id: &str) -> usize {
        self.engine.request(id).await.unwrap().votes.len()
    }

    /// Waits for the `n`th explanation sent to a response URL, and returns its text.
    async fn explanation(&self, n: usize) -> String {
        eventually("an ephemeral explanation", WAIT, || {
            self.fake.responses().len() >= n
        })
        .await;
        let (_, body) = self.fake.responses().remove(n - 1);
        assert_eq!(body["response_type"], "ephemeral");
        body["text"].as_str().unwrap().to_owned()
    }
}

async fn clicks_from_two_reviewers_settle_and_the_message_shows_them(backend: Backend) {
    let rig = rig(backend).await;
    let (id, ts) = rig.held("exec", "deploy.sh --prod").await;
    let waiter = {
        let engine = rig.engine.clone();
        let id = id.clone();
        tokio::spawn(async move { engine.wait(&id, WAIT).await.unwrap() })
    };
    assert_eq!(
        rig.click("U0BOB", APPROVE_ACTION, &id, &ts).await,
        (200, String::new())
    );
    eventually("bob's vote", WAIT, || {
        rig.fake.calls("chat.update").len() == 1
    })
    .await;
    assert_eq!(rig.votes(&id).await, 1);
    assert_eq!(rig.click("U0CAROL", APPROVE_ACTION, &id, &ts).await.0, 200);
    let settled = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(settled.status, RequestStatus::Approved);
    let voters: Vec<(&str, &str)> = settled
        .votes
        .iter()
        .map(|v| (v.voter.id.as_str(), v.channel.as_str()))
        .collect();
    assert_eq!(
        voters,
        [("bob@example.com", "slack"), ("carol@example.com", "slack")]
    );
    eventually("the outcome in Slack", WAIT, || {
        rig.fake.message("C0REVIEWS", &ts).is_some_and(|m| {
            m.to_string()
                .contains("Approved by bob@example.com, carol@example.com")
        })
    })
    .await;
    let message = rig.fake.message("C0REVIEWS", &ts).unwrap().to_string();
    assert!(
        !message.contains(APPROVE_ACTION),
        "buttons are gone: {message}"
    );
    // Alice, for whom the agent acted, is told; the references were kept by the engine.
    eventually("the requester's notice", WAIT, || {
        rig.fake
            .calls("chat.postMessage")
            .iter()
            .any(|c| c.body["channel"] == "U0ALICE")
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while rig.engine.channel_messages(&id).await.unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the notice's reference was not kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every event went to the webhook, signed.
    eventually("the webhook events", WAIT, || {
        rig.hook.received().len() >= 4
    })
    .await;
    let kinds: Vec<String> = rig
        .hook
        .received()
        .iter()
        .map(|r| r.body["type"].as_str().unwrap().to_owned())
        .collect();
    for kind in [
        "request.created",
        "request.voted",
        "request.settled",
        "grant.issued",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert!(rig.hook.received().iter().all(|r| r.verified.is_ok()));
    // Each attempt is recorded through the engine once the receiver has answered.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let recorded = rig.engine.delivery_attempts(Some(&id), 100).await.unwrap();
        if recorded.len() >= 4 {
            assert!(
                recorded.iter().all(|d| d.outcome == "delivered"),
                "{recorded:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery records: {recorded:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bad_input_never_becomes_a_vote(backend: Backend) {
    let rig = rig(backend).await;
    let (id, ts) = rig.held("exec", "rm -rf /srv/cache").await;
    let click = rig
        .fake
        .click("U0BOB", APPROVE_ACTION, &id, "C0REVIEWS", &ts);
    let now = countersign_engine::now().millis() / 1000;
    let send = |body: String, headers: Vec<(&'static str, String)>| {
        let (http, url) = (rig.http.clone(), rig.url.clone());
        async move { send_raw(&http, &url, body, &headers).await }
    };
    let code = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap()["error"]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Refused before anything is done: bad signature, stale and future timestamps, a body
    // altered after signing, no signature at all.
    let (body, mut headers) = rig.fake.signed(&click, now);
    headers[2].1 = signature::sign("not-the-secret", &now.to_string(), body.as_bytes());
    let (status, text) = send(body, headers).await;
    assert_eq!((status, code(&text)), (401, "bad_signature".into()));
    // Well past the 300 s limit either way, so a second ticking by cannot matter.
    for when in [now - 360, now + 360] {
        let (body, headers) = rig.fake.signed(&click, when);
        let (status, text) = send(body, headers).await;
        assert_eq!(status, 401);
        assert!(text.contains("away from now"), "{text}");
    }
    let (body, headers) = rig.fake.signed(&click, now);
    let altered = body.replace("U0BOB", "U0CAR");
    assert_eq!(send(altered, headers).await.0, 401);
    let (body, _) = rig.fake.signed(&click, now);
    assert_eq!(send(body, Vec::new()).await.0, 401);

    // Signed correctly but not a usable payload: not JSON, lacking fields.
    for payload_text in [
        "{not json",
        "{\"type\":\"block_actions\",\"team\":{\"id\":\"T0TEST\"}}",
    ] {
        let body = format!(
            "payload={}",
            payload_text
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
        );
        let stamp = now.to_string();
        let sig = signature::sign(&rig.fake.signing_secret, &stamp, body.as_bytes());
        let (status, text) = send(
            body,
            vec![
                ("x-slack-request-timestamp", stamp),
                ("x-slack-signature", sig),
            ],
        )
        .await;
        assert_eq!(
            (status, code(&text)),
            (400, "invalid_payload".into()),
            "{payload_text}"
        );
    }
    let empty = form_body(&json!({}));
    let stamp = now.to_string();
    let sig = signature::sign(&rig.fake.signing_secret, &stamp, empty.as_bytes());
    assert_eq!(
        send(
            empty,
            vec![
                ("x-slack-request-timestamp", stamp),
                ("x-slack-signature", sig)
            ]
        )
        .await
        .0,
        400
    );

    // Another workspace's click, signed with our secret (the app installed twice).
    let mut foreign = click.clone();
    foreign["team"]["id"] = json!("T0OTHER");
    foreign["user"]["team_id"] = json!("T0OTHER");
    let (status, text) = rig.fake.deliver(&rig.http, &rig.url, &foreign).await;
    assert_eq!((status, code(&text)), (403, "wrong_workspace".into()));
    assert_eq!(rig.votes(&id).await, 0);

    // Accepted as interactions, refused as votes, each explained to the clicker alone.
    let cases = [
        ("U0NOBODY", "user_not_found"),     // Slack does not know them
        ("U0VISITOR", "another workspace"), // a user of another workspace
        ("U0STRANGER", "not a countersign reviewer"), // known to Slack, not to countersign
        ("U0ALICE", "own request"),         // the requester clicking Approve
        ("U0EVE", "not in a reviewer group"), // an ineligible user
    ];
    for (n, (user, why)) in cases.iter().enumerate() {
        assert_eq!(
            rig.click(user, APPROVE_ACTION, &id, &ts).await.0,
            200,
            "{user}"
        );
        let text = rig.explanation(n + 1).await;
        assert!(text.contains(why), "{user}: {text}");
    }
    assert_eq!(rig.votes(&id).await, 0);

    // A replayed body (Slack's retry, or an attacker's copy) is the same delivery: one vote.
    let approve = rig
        .fake
        .click("U0BOB", APPROVE_ACTION, &id, "C0REVIEWS", &ts);
    let (body, headers) = rig.fake.signed(&approve, now);
    assert_eq!(send(body.clone(), headers.clone()).await.0, 200);
    assert_eq!(send(body, headers).await.0, 200);
    eventually("bob's vote", WAIT, || {
        rig.fake.calls("chat.update").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rig.votes(&id).await, 1);
    assert_eq!(
        rig.fake.responses().len(),
        cases.len(),
        "the replay was not even answered as a duplicate"
    );

    // A click on a settled request.
    rig.click("U0CAROL", APPROVE_ACTION, &id, &ts).await;
    eventually("settlement", WAIT, || {
        rig.fake.calls("chat.update").len() == 2
    })
    .await;
    // Someone who may not vote learns nothing of the state; a reviewer hears it is settled.
    assert_eq!(rig.click("U0EVE", DENY_ACTION, &id, &ts).await.0, 200);
    assert!(
        rig.explanation(cases.len() + 1)
            .await
            .contains("not in a reviewer group")
    );
    assert_eq!(rig.click("U0BOB", DENY_ACTION, &id, &ts).await.0, 200);
    let text = rig.explanation(cases.len() + 2).await;
    assert!(text.contains("already approved"), "{text}");
    let r = rig.engine.request(&id).await.unwrap();
    assert_eq!(r.votes.len(), 2);
    assert_eq!(r.status, RequestStatus::Approved);
}

async fn a_deny_that_needs_a_reason_opens_a_modal(backend: Backend) {
    let rig = rig(backend).await;
    let (id, ts) = rig.held("deploy", "v2.3.1").await;
    assert_eq!(rig.click("U0BOB", DENY_ACTION, &id, &ts).await.0, 200);
    eventually("the modal", WAIT, || {
        rig.fake
            .calls("views.open")
            .iter()
            .any(|c| c.answer == "ok")
    })
    .await;
    assert_eq!(rig.votes(&id).await, 0, "no deny without its reason");
    let view = rig.fake.calls("views.open")[0].body["view"].clone();
    let submission = rig
        .fake
        .submit_reason("U0BOB", &view, "not during the change freeze");
    assert_eq!(
        rig.fake.deliver(&rig.http, &rig.url, &submission).await.0,
        200
    );
    let r = rig.engine.wait(&id, WAIT).await.unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
    assert_eq!(
        r.votes[0].reason.as_deref(),
        Some("not during the change freeze")
    );
    eventually("the outcome with its reason", WAIT, || {
        rig.fake.message("C0REVIEWS", &ts).is_some_and(|m| {
            let m = m.to_string();
            m.contains("Denied by bob@example.com") && m.contains("not during the change freeze")
        })
    })
    .await;
    // An ineligible user is told so at once rather than shown a form.
    let (id2, ts2) = rig.held("deploy", "v2.3.2").await;
    assert_eq!(rig.click("U0EVE", DENY_ACTION, &id2, &ts2).await.0, 200);
    assert!(rig.explanation(1).await.contains("not in a reviewer group"));
    assert_eq!(rig.fake.calls("views.open").len(), 1);
}

async fn break_glass_through_the_api_is_flagged_listed_and_told(backend: Backend) {
    let rig = rig(backend).await;
    // Alice (on call) exports herself; the policy allows break-glass.
    let (status, v) = rig
        .api("POST", "/v1/attempts", ALICE, Some(json!({"action": "db.export",
            "resource": {"type": "Database", "id": "prod"}, "payload": "COPY incidents TO STDOUT"})))
        .await;
    assert_eq!(
        (status, v["outcome"].as_str()),
        (200, Some("pending")),
        "{v}"
    );
    let id = v["request_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/requests/{id}/votes");
    let vote = |body: Value| rig.api("POST", &path, ALICE, Some(body));
    // A plain self-approval stays refused; a short reason and a break-glass deny too.
    let (status, v) =
        vote(json!({"decision": "approve", "reason": "incident 4711 needs the data now"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("self_approval"))
    );
    let (status, v) =
        vote(json!({"decision": "approve", "reason": "urgent", "break_glass": true})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("break_glass_refused"))
    );
    let (status, _) = vote(json!({"decision": "deny", "reason": "incident 4711 needs the data now", "break_glass": true})).await;
    assert_eq!(status, 400);
    let (status, v) = vote(json!({"decision": "approve", "reason": "incident 4711 needs the data now", "break_glass": true})).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    assert_eq!(v["break_glass"], true);
    // Listed for review after the fact.
    let (_, list) = rig
        .api(
            "GET",
            "/v1/requests?break_glass=true&status=all",
            "audra-token",
            None,
        )
        .await;
    let ids: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, others) = rig
        .api("GET", "/v1/requests?break_glass=false", "audra-token", None)
        .await;
    assert!(others["requests"].as_array().unwrap().is_empty());
    // Every eligible reviewer but Alice is told at once, directly.
    eventually("direct alerts", WAIT, || {
        let dms: Vec<String> = rig
            .fake
            .calls("chat.postMessage")
            .iter()
            .filter_map(|c| {
                c.body["channel"]
                    .as_str()
                    .filter(|ch| ch.starts_with('U'))
                    .map(str::to_owned)
            })
            .collect();
        dms.contains(&"U0BOB".to_string()) && dms.contains(&"U0CAROL".to_string())
    })
    .await;
    let alert = rig
        .fake
        .calls("chat.postMessage")
        .into_iter()
        .find(|c| c.body["channel"] == "U0BOB")
        .unwrap();
    assert!(alert.body.to_string().contains("BREAK-GLASS"));
    eventually("the webhook", WAIT, || {
        rig.hook
            .received()
            .iter()
            .any(|r| r.body["type"] == "request.settled" && r.body["data"]["break_glass"] == true)
    })
    .await;
}
