//! The HTTP API over real loopback HTTP, on both store backends: authentication, roles, every
//! error code, self-approval by every route, long-poll, reload and failure handling.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use countersign_audit::merkle::{self, Frontier};
use countersign_audit::note::{Checkpoint, VerifierKey};
use countersign_core::{Principal, PrincipalKind};
use countersign_engine::{Engine, EngineConfig};
use countersign_policy::LoadedPolicies;
use countersign_server::{ConfiguredPrincipal, PolicySource, ServerConfig};
use countersign_store::testing::TestDb;
use countersign_store::{Backend, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLICIES: &str = r#"
@id("reads")
permit (principal in Group::"agents", action == Action::"db.read", resource);

@id("exports")
@approval("owners")
permit (principal in Group::"agents", action == Action::"db.export", resource);

@id("exports-by-owners")
@approval("owners")
permit (principal in Group::"owners", action == Action::"db.export", resource);
"#;

countersign_store::both_backends!(
    authentication_is_required_and_exact,
    malformed_and_hostile_bodies_get_precise_errors,
    approval_flow_and_grant_consumption,
    self_approval_is_refused_on_every_route,
    request_visibility_follows_roles,
    long_poll_answers_within_milliseconds,
    cancel_and_revoke_follow_roles,
    audit_log_is_for_auditors_and_verifies,
    broken_reload_is_refused_and_the_old_set_stays,
    store_failure_denies_and_readiness_fails,
    operational_endpoints,
);

struct Gateway {
    url: String,
    engine: Engine,
    http: reqwest::Client,
    store: Store,
    policy_text: Arc<Mutex<String>>,
    _db: TestDb,
}

const AGENT: &str = "agent-token";
const ALICE: &str = "alice-token"; // owner
const BOB: &str = "bob-token"; // owner
const EVE: &str = "eve-token"; // no groups
const AUDITOR: &str = "auditor-token";
const ADMIN: &str = "admin-token";

fn principal(kind: PrincipalKind, id: &str, groups: &[&str], token: &str) -> ConfiguredPrincipal {
    ConfiguredPrincipal {
        principal: Principal::new(kind, id, groups.iter().copied()),
        token_sha256: Sha256::digest(token.as_bytes()).into(),
    }
}

async fn gateway(backend: Backend) -> Gateway {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    let policy_text = Arc::new(Mutex::new(POLICIES.to_string()));
    let source: PolicySource = {
        let text = policy_text.clone();
        Arc::new(move || {
            let text = text.lock().unwrap().clone();
            LoadedPolicies::from_sources(&[("policies.cedar", text.as_str())])
        })
    };
    let engine = Engine::start(
        store.clone(),
        source().unwrap(),
        EngineConfig {
            public_url: "http://gateway.test".into(),
            audit: countersign_engine::AuditSigning::ephemeral("test.example/countersign").unwrap(),
            journal: None,
        },
    )
    .await
    .unwrap();
    use PrincipalKind::{Agent, User};
    let config = ServerConfig {
        principals: vec![
            principal(Agent, "etl", &["agents"], AGENT),
            principal(User, "alice", &["owners"], ALICE),
            principal(User, "bob", &["owners"], BOB),
            principal(User, "eve", &[], EVE),
            principal(User, "audra", &["auditors"], AUDITOR),
            principal(User, "root", &["admins"], ADMIN),
        ],
        auditor_groups: ["auditors".to_string()].into(),
        admin_groups: ["admins".to_string()].into(),
        max_body_bytes: 16 * 1024,
        policy_source: source,
        slack: Vec::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = countersign_server::router(engine.clone(), config);
    tokio::spawn(countersign_server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    Gateway {
        url,
        engine,
        http: {
            countersign_notify::install_crypto_provider();
            reqwest::Client::new()
        },
        store,
        policy_text,
        _db: db,
    }
}

impl Gateway {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    async fn attempt(&self, token: &str, body: Value) -> Value {
        let (status, v) = self.post("/v1/attempts", token, body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }
}

fn export(sql: &str) -> Value {
    json!({"action": "db.export", "resource": {"type": "Database", "id": "prod"}, "payload": sql, "justification": "report"})
}

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

async fn authentication_is_required_and_exact(backend: Backend) {
    let g = gateway(backend).await;
    let body = Some(export("COPY t TO STDOUT"));
    let (s, v) = g.call("POST", "/v1/attempts", None, body.clone()).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    for token in [
        "wrong",
        "agent-token2",
        "agent-toke",
        &hex::encode(Sha256::digest(AGENT.as_bytes())),
    ] {
        let (s, v) = g
            .call("POST", "/v1/attempts", Some(token), body.clone())
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{token}"
        );
    }
    let resp = g
        .http
        .get(format!("{}/v1/requests", g.url))
        .header("Authorization", format!("Basic {AGENT}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let (s, v) = g.get("/v1/whoami", AGENT).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], "etl");
}

async fn malformed_and_hostile_bodies_get_precise_errors(backend: Backend) {
    let g = gateway(backend).await;
    let raw = |body: &'static str, ct: &'static str| {
        g.http
            .post(format!("{}/v1/attempts", g.url))
            .bearer_auth(AGENT)
            .header("content-type", ct)
            .body(body)
    };
    let r = raw("{\"action\":", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&r.json().await.unwrap()), "malformed_json");
    let r = raw("{}", "text/plain").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = "x".repeat(64 * 1024);
    let (s, v) = g.post("/v1/attempts", AGENT, export(&big)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let cases = [
        (
            json!({"action": "db.read", "payload": 1}),
            "invalid_request",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}}),
            "invalid_request",
        ),
        (
            json!({"action": "DB READ", "resource": {"type": "Database", "id": "p"}, "payload": 1}),
            "invalid_action",
        ),
        (
            json!({"action": "db.teleport", "resource": {"type": "Database", "id": "p"}, "payload": 1}),
            "unknown_action",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Spaceship", "id": "p"}, "payload": 1}),
            "unknown_resource_type",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Table", "id": "t", "parent": {"type": "Nope", "id": "p"}}, "payload": 1}),
            "unknown_resource_type",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": ""}, "payload": 1}),
            "invalid_request",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "resources": [], "payload": 1}),
            "invalid_request",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p", "classification": "secret"}, "payload": 1}),
            "invalid_request",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": 1, "admin": true}),
            "invalid_request",
        ),
        (
            json!({"action": 5, "resource": {"type": "Database", "id": "p"}, "payload": 1}),
            "invalid_request",
        ),
    ];
    let mut deep = json!("x");
    for _ in 0..65 {
        deep = json!([deep]);
    }
    let cases = cases.into_iter().chain([
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": deep}),
            "invalid_request",
        ),
        (
            json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": 1, "on_behalf_of": "a b"}),
            "invalid_request",
        ),
    ]);
    for (body, expected) in cases {
        let (s, v) = g.post("/v1/attempts", AGENT, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert_eq!(code(&v), expected, "{body} → {v}");
    }
    // Nothing of the above reached the audit log, and the gateway still serves.
    assert_eq!(
        g.store.audit_size().await.unwrap(),
        1,
        "only the policy load"
    );
    let v = g.attempt(AGENT, json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": "SELECT 1"})).await;
    assert_eq!(v["outcome"], "allow");
}

async fn approval_flow_and_grant_consumption(backend: Backend) {
    let g = gateway(backend).await;
    let v = g.attempt(AGENT, export("COPY t TO STDOUT")).await;
    assert_eq!(v["outcome"], "pending", "{v}");
    let id = v["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["review_url"],
        format!("http://gateway.test/v1/requests/{id}")
    );
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    // Default deny for anything no policy permits.
    let d = g.attempt(AGENT, json!({"action": "deploy", "resource": {"type": "Service", "id": "api"}, "payload": "v2"})).await;
    assert_eq!(d["outcome"], "deny");

    let (s, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            ALICE,
            json!({"decision": "maybe"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            ALICE,
            json!({"decision": "approve", "reason": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "approved");
    let grant_id = v["grant_id"].as_str().unwrap().to_owned();
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            BOB,
            json!({"decision": "deny", "reason": "late"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "already_settled"));
    let (s, v) = g
        .post("/v1/requests/nope/votes", BOB, json!({"decision": "deny"}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));

    let v = g.attempt(AGENT, export("COPY t TO STDOUT")).await;
    assert_eq!(v["outcome"], "allow");
    assert_eq!(v["grant_id"], grant_id.as_str());
    let v = g.attempt(AGENT, export("COPY t TO STDOUT")).await;
    assert_eq!(v["outcome"], "pending", "a once grant is spent");

    // The outcome of the execution is the grant holder's to report, and it is logged.
    let report = |outcome: &str| json!({"grant_id": grant_id, "outcome": outcome, "detail": "exit status 0"});
    let (s, v) = g.post("/v1/executions", ALICE, report("succeeded")).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = g.post("/v1/executions", AGENT, report("maybe")).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, v) = g
        .post(
            "/v1/executions",
            AGENT,
            json!({"grant_id": "nope", "outcome": "failed"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = g.post("/v1/executions", AGENT, report("succeeded")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let records = g.store.audit_records(0, 100).await.unwrap();
    let last: Value = serde_json::from_str(&records.last().unwrap().event_json).unwrap();
    assert_eq!(last["kind"], "execution");
    assert_eq!(last["outcome"], "succeeded");
    assert_eq!(last["grant_id"], grant_id.as_str());
    assert_eq!(last["request_id"], id.as_str());
}

async fn self_approval_is_refused_on_every_route(backend: Backend) {
    let g = gateway(backend).await;
    // The requester's own token.
    let v = g.attempt(ALICE, export("COPY mine TO STDOUT")).await;
    let id = v["request_id"].as_str().unwrap().to_owned();
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            ALICE,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "self_approval"));
    // The user an agent acts for.
    let mut body = export("COPY theirs TO STDOUT");
    body["on_behalf_of"] = json!("bob");
    let v = g.attempt(AGENT, body).await;
    let id2 = v["request_id"].as_str().unwrap().to_owned();
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id2}/votes"),
            BOB,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "self_approval"));
    // The agent itself, an outsider, an auditor and an admin outside the reviewer groups.
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id2}/votes"),
            AGENT,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "self_approval"));
    for token in [AUDITOR, ADMIN] {
        let (s, v) = g
            .post(
                &format!("/v1/requests/{id2}/votes"),
                token,
                json!({"decision": "approve"}),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::FORBIDDEN, "not_eligible"),
            "{token}"
        );
    }
    // Someone who may not even read the request learns nothing, not even that it exists.
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id2}/votes"),
            EVE,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = g
        .post(&format!("/v1/requests/{id2}/cancel"), EVE, json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    for id in [&id, &id2] {
        let (_, v) = g.get(&format!("/v1/requests/{id}"), AUDITOR).await;
        assert_eq!(v["status"], "pending");
        assert_eq!(v["votes"], json!([]));
    }
    // Duplicate votes are refused.
    let (s, _) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            BOB,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            BOB,
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "already_settled"));
}

async fn request_visibility_follows_roles(backend: Backend) {
    let g = gateway(backend).await;
    let v = g.attempt(AGENT, export("COPY v TO STDOUT")).await;
    let id = v["request_id"].as_str().unwrap().to_owned();
    for token in [AGENT, ALICE, AUDITOR, ADMIN] {
        let (s, v) = g.get(&format!("/v1/requests/{id}"), token).await;
        assert_eq!(s, StatusCode::OK, "{token}: {v}");
        assert_eq!(v["payload"], "COPY v TO STDOUT");
    }
    let (s, v) = g.get(&format!("/v1/requests/{id}"), EVE).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (_, v) = g.get("/v1/requests?status=pending", ALICE).await;
    assert_eq!(v["requests"].as_array().unwrap().len(), 1);
    let (_, v) = g.get("/v1/requests?status=pending", EVE).await;
    assert_eq!(v["requests"], json!([]));
    let (s, v) = g.get("/v1/requests?status=bogus", ALICE).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, v) = g.get(&format!("/v1/requests/{id}?wait=9999"), ALICE).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (s, v) = g.get(&format!("/v1/requests/{id}?wait=abc"), ALICE).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_request"));
}

async fn long_poll_answers_within_milliseconds(backend: Backend) {
    let g = Arc::new(gateway(backend).await);
    let v = g.attempt(AGENT, export("COPY lp TO STDOUT")).await;
    let id = v["request_id"].as_str().unwrap().to_owned();
    let poll = {
        let g = g.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (s, v) = g.get(&format!("/v1/requests/{id}?wait=30"), AGENT).await;
            (s, v, started.elapsed(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            ALICE,
            json!({"decision": "approve"}),
        )
        .await;
    let voted = Instant::now();
    assert_eq!(s, StatusCode::OK);
    let (s, v, waited, answered) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "approved");
    assert!(
        waited >= Duration::from_millis(250),
        "the poll must have waited"
    );
    let lag = answered.saturating_duration_since(voted);
    assert!(
        lag < Duration::from_millis(100),
        "long-poll answered {lag:?} after the vote"
    );
}

async fn cancel_and_revoke_follow_roles(backend: Backend) {
    let g = gateway(backend).await;
    let v = g.attempt(AGENT, export("COPY c TO STDOUT")).await;
    let id = v["request_id"].as_str().unwrap().to_owned();
    let (s, v) = g
        .post(&format!("/v1/requests/{id}/cancel"), ALICE, json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_requester"));
    let (s, v) = g
        .post(&format!("/v1/requests/{id}/cancel"), AGENT, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "cancelled");
    let (s, v) = g
        .post(&format!("/v1/requests/{id}/cancel"), AGENT, json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "already_settled"));

    let v = g.attempt(AGENT, export("COPY r TO STDOUT")).await;
    let id = v["request_id"].as_str().unwrap().to_owned();
    let (_, v) = g
        .post(
            &format!("/v1/requests/{id}/votes"),
            ALICE,
            json!({"decision": "approve"}),
        )
        .await;
    let grant = v["grant_id"].as_str().unwrap().to_owned();
    let (_, v) = g.get("/v1/grants", AGENT).await;
    assert_eq!(v["grants"].as_array().unwrap().len(), 1);
    let (_, v) = g.get("/v1/grants", EVE).await;
    assert_eq!(v["grants"], json!([]));
    let (s, v) = g
        .post(&format!("/v1/grants/{grant}/revoke"), BOB, json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = g
        .post(
            &format!("/v1/grants/{grant}/revoke"),
            ADMIN,
            json!({"reason": "incident"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked");
    let (s, v) = g
        .post(&format!("/v1/grants/{grant}/revoke"), ADMIN, json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "grant_not_active"));
    let v = g.attempt(AGENT, export("COPY r TO STDOUT")).await;
    assert_eq!(v["outcome"], "pending", "a revoked grant allows nothing");
}

async fn audit_log_is_for_auditors_and_verifies(backend: Backend) {
    let g = gateway(backend).await;
    g.attempt(AGENT, json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": "SELECT 1"})).await;
    for token in [AGENT, ALICE, ADMIN] {
        let (s, v) = g.get("/v1/audit", token).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let (s, v) = g.get("/v1/audit?from=0&limit=100", AUDITOR).await;
    assert_eq!(s, StatusCode::OK);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"]["kind"], "policy.loaded");
    let attempt = &events[1]["event"];
    assert_eq!(attempt["kind"], "attempt");
    assert_eq!(attempt["verdict"], "allow");
    assert_eq!(attempt["policy_ids"], json!(["reads"]));
    assert_eq!(
        attempt["policy_version"],
        events[0]["event"]["policy_version"]
    );
    // Sign what is there, then check the checkpoint, an inclusion and a consistency proof
    // exactly as a third party would: with nothing but the verifier key.
    g.engine.checkpoint().await.unwrap();
    let (s, cp) = g.get("/v1/audit/checkpoint", AUDITOR).await;
    assert_eq!(s, StatusCode::OK, "{cp}");
    assert_eq!(cp["size"], 2);
    let key = VerifierKey::parse(cp["verifier_key"].as_str().unwrap()).unwrap();
    let (_, pk) = g.get("/v1/audit/public-key", AGENT).await;
    assert_eq!(pk["verifier_key"], cp["verifier_key"]);
    let checkpoint = Checkpoint::open(
        cp["note"].as_str().unwrap(),
        &key,
        Some("test.example/countersign"),
    )
    .unwrap();
    let records = g.store.audit_records(0, 100).await.unwrap();
    let mut frontier = Frontier::new();
    for r in &records {
        assert_eq!(r.leaf_hash, merkle::leaf_hash(r.event_json.as_bytes()));
        frontier.push(r.leaf_hash);
    }
    assert_eq!(checkpoint.root, frontier.root());
    assert_eq!(events[1]["leaf_hash"], hex::encode(records[1].leaf_hash));

    let (s, p) = g.get("/v1/audit/proof/1", AUDITOR).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let path: Vec<merkle::Hash> = p["path"].as_array().unwrap().iter().map(b64).collect();
    let leaf = merkle::leaf_hash(p["event"].as_str().unwrap().as_bytes());
    merkle::verify_inclusion(1, 2, &leaf, &path, &checkpoint.root).unwrap();
    assert!(merkle::verify_inclusion(0, 2, &leaf, &path, &checkpoint.root).is_err());

    let (s, c) = g.get("/v1/audit/consistency?from=1", AUDITOR).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let proof: Vec<merkle::Hash> = c["proof"].as_array().unwrap().iter().map(b64).collect();
    let mut first = Frontier::new();
    first.push(records[0].leaf_hash);
    merkle::verify_consistency(1, 2, &first.root(), &checkpoint.root, &proof).unwrap();

    for (path, status, expected) in [
        (
            "/v1/audit/proof/99",
            StatusCode::CONFLICT,
            "not_checkpointed",
        ),
        (
            "/v1/audit/proof/abc",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/audit/consistency?from=0",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/audit/consistency?from=3&to=2",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ] {
        let (s, v) = g.get(path, AUDITOR).await;
        assert_eq!((s, code(&v)), (status, expected), "{path}: {v}");
    }
    let (s, v) = g.get("/v1/audit/proof/1", AGENT).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));

    // Rotation: administrators only; the old key signs the announcement, the new key what follows.
    let (s, v) = g.post("/v1/audit/rotate-key", ALICE, json!({})).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = g.post("/v1/audit/rotate-key", ADMIN, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_key = VerifierKey::parse(v["verifier_key"].as_str().unwrap()).unwrap();
    assert_ne!(new_key, key);
    let (_, cp) = g.get("/v1/audit/checkpoint", AUDITOR).await;
    assert_eq!(cp["size"], 3, "the rotation event is covered at once");
    Checkpoint::open(cp["note"].as_str().unwrap(), &key, None).unwrap();
    g.attempt(AGENT, json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": "SELECT 2"})).await;
    g.engine.checkpoint().await.unwrap();
    let (_, cp) = g.get("/v1/audit/checkpoint", AUDITOR).await;
    assert_eq!(cp["size"], 4);
    Checkpoint::open(cp["note"].as_str().unwrap(), &new_key, None).unwrap();
    assert!(Checkpoint::open(cp["note"].as_str().unwrap(), &key, None).is_err());
}

fn b64(v: &Value) -> merkle::Hash {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

async fn broken_reload_is_refused_and_the_old_set_stays(backend: Backend) {
    let g = gateway(backend).await;
    let (_, before) = g.get("/v1/policies", AGENT).await;
    let (s, v) = g.post("/v1/policies/reload", ALICE, json!({})).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    *g.policy_text.lock().unwrap() =
        "@id(\"x\") permit (principal, action == Action::\"db.read\", resource".into();
    let (s, v) = g.post("/v1/policies/reload", ADMIN, json!({})).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policies.cedar"),
        "{v}"
    );
    let (_, after) = g.get("/v1/policies", AGENT).await;
    assert_eq!(after["version"], before["version"]);
    let v = g.attempt(AGENT, export("COPY t TO STDOUT")).await;
    assert_eq!(
        v["outcome"], "pending",
        "the previous set is still in force"
    );
    *g.policy_text.lock().unwrap() =
        r#"@id("only-reads") permit (principal, action == Action::"db.read", resource);"#.into();
    let (s, v) = g.post("/v1/policies/reload", ADMIN, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_ne!(v["version"], before["version"]);
    assert_eq!(
        g.attempt(AGENT, export("COPY t2 TO STDOUT")).await["outcome"],
        "deny"
    );
}

async fn store_failure_denies_and_readiness_fails(backend: Backend) {
    let g = gateway(backend).await;
    let (s, _) = g.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    g.store.close().await;
    for body in [
        json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": "SELECT 1"}),
        export("COPY t TO STDOUT"),
    ] {
        let v = g.attempt(AGENT, body).await;
        assert_eq!(v["outcome"], "deny", "{v}");
    }
    let (s, v) = g.call("GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let (s, v) = g.get("/v1/requests", ALICE).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let (s, _) = g.call("GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK, "the process keeps serving");
}

async fn operational_endpoints(backend: Backend) {
    let g = gateway(backend).await;
    let (s, v) = g.call("DELETE", "/v1/attempts", Some(AGENT), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let big = "x".repeat(64 * 1024);
    let (s, v) = g
        .post("/v1/grants/none/revoke", ADMIN, json!({ "reason": big }))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    drop(g);
    let g = gateway(backend).await;
    g.attempt(AGENT, json!({"action": "db.read", "resource": {"type": "Database", "id": "p"}, "payload": "SELECT 1"})).await;
    let (s, v) = g.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
    for path in [
        "/v1/attempts",
        "/v1/requests/{id}",
        "/v1/requests/{id}/votes",
        "/v1/grants/{id}/revoke",
        "/v1/audit",
    ] {
        assert!(
            v["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let metrics = g
        .http
        .get(format!("{}/metrics", g.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("countersign_decisions_total"), "{metrics}");
    let (s, v) = g.call("GET", "/nowhere", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}
