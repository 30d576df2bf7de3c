//! A gateway for the MCP gate's tests and benchmark: a store, the engine, the HTTP API (for
//! approvals) and one MCP gate, all on loopback, plus a small Streamable HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use countersign_core::{ConfiguredPrincipal, Principal, PrincipalKind};
use countersign_engine::{AuditSigning, Engine, EngineConfig};
use countersign_gate_mcp::{Gate, GateConfig, McpGateSection};
use countersign_policy::LoadedPolicies;
use countersign_server::{PolicySource, ServerConfig};
use countersign_store::Store;
use countersign_store::testing::TestDb;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;

pub const AGENT: &str = "agent-token";
pub const AGENT2: &str = "agent2-token";
pub const ALICE: &str = "alice-token";
pub const ADMIN: &str = "root-token";

/// The shipped MCP example policies, plus a hard limit to show forbidden tools are hidden.
pub const POLICIES: &str = concat!(
    include_str!("../../../../examples/policies/mcp-tools.cedar"),
    r#"
@id("no-disk-formatting")
forbid (principal, action == Action::"mcp.call", resource == Tool::"tools/format_disk");
"#
);

pub fn test_server() -> String {
    env!("CARGO_BIN_EXE_countersign-test-mcp-server").to_owned()
}

fn principal(kind: PrincipalKind, id: &str, groups: &[&str], token: &str) -> ConfiguredPrincipal {
    ConfiguredPrincipal {
        principal: Principal::new(kind, id, groups.iter().copied()),
        token_sha256: sha2::Sha256::digest(token.as_bytes()).into(),
    }
}

pub struct Harness {
    pub engine: Engine,
    pub gate: Arc<Gate>,
    pub mcp_url: String,
    pub api_url: String,
    pub http: reqwest::Client,
    _db: TestDb,
}

/// How the gate under test is configured: `section` gets `name`, `listen` filled in.
pub fn section(upstream: Value) -> Value {
    let mut s = json!({"name": "tools", "listen": "127.0.0.1:0", "request_timeout": "2s"});
    for (k, v) in upstream.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

pub async fn harness(section_json: Value) -> Harness {
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let source: PolicySource =
        Arc::new(|| LoadedPolicies::from_sources(&[("mcp.cedar", POLICIES)]));
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", api_listener.local_addr().unwrap());
    let engine = Engine::start(
        store,
        source().unwrap(),
        EngineConfig {
            public_url: api_url.clone(),
            audit: AuditSigning::ephemeral("test.example/countersign").unwrap(),
            journal: None,
        },
    )
    .await
    .unwrap();
    use PrincipalKind::{Agent, User};
    let principals = vec![
        principal(Agent, "agent-1", &["agents"], AGENT),
        principal(Agent, "agent-2", &["agents"], AGENT2),
        principal(User, "alice", &["reviewers"], ALICE),
        principal(User, "root", &["admins"], ADMIN),
    ];
    let router = countersign_server::router(
        engine.clone(),
        ServerConfig {
            principals: principals.clone(),
            auditor_groups: ["auditors".to_string()].into(),
            admin_groups: ["admins".to_string()].into(),
            max_body_bytes: 64 * 1024,
            policy_source: source,
            slack: Vec::new(),
        },
    );
    tokio::spawn(countersign_server::serve(
        api_listener,
        router,
        std::future::pending(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut section_json = section_json;
    section_json["listen"] = json!(addr.to_string());
    let section: McpGateSection = serde_json::from_value(section_json).unwrap();
    let config: GateConfig = section.resolve().unwrap();
    let gate = Gate::new(config, engine.clone(), principals);
    tokio::spawn(gate.clone().serve(listener));
    Harness {
        engine,
        gate,
        mcp_url: format!("http://{addr}/mcp"),
        api_url,
        http: http(),
        _db: db,
    }
}

/// What one POST brought back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Value>,
    pub sse: bool,
}

impl Answer {
    /// The response message (the last message with an id and no method).
    pub fn response(&self) -> &Value {
        self.messages
            .iter()
            .rev()
            .find(|m| m.get("method").is_none())
            .unwrap_or_else(|| panic!("no response in {self:?}"))
    }

    pub fn error_code(&self) -> Option<i64> {
        self.response()["error"]["code"].as_i64()
    }

    pub fn text(&self) -> String {
        self.response()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn is_error(&self) -> bool {
        self.response()["result"]["isError"] == json!(true)
    }
}

fn parse_sse(text: &str) -> Vec<Value> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// A Streamable HTTP client of either era, raw enough to send anything.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    pub version: Option<String>,
}

impl Client {
    pub fn new(url: &str, token: &str) -> Client {
        Client {
            http: http(),
            url: url.to_owned(),
            token: Some(token.to_owned()),
            session: None,
            version: None,
        }
    }

    pub fn request(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = &self.version {
            req = req.header("mcp-protocol-version", v);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }

    pub async fn raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        let resp = self.request(body, headers).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let sse = headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        let messages = if sse {
            parse_sse(&text)
        } else if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}))]
        };
        Answer {
            status,
            headers,
            messages,
            sse,
        }
    }

    pub async fn send(&self, message: &Value, headers: &[(&str, &str)]) -> Answer {
        self.raw(serde_json::to_vec(message).unwrap(), headers)
            .await
    }

    /// `initialize` at `version`, then `notifications/initialized`.
    pub async fn initialize(&mut self, version: &str) -> Value {
        let answer = self
            .send(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": version, "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"}}}),
                &[],
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        self.session = Some(
            answer.headers["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let result = answer.response()["result"].clone();
        self.version = Some(result["protocolVersion"].as_str().unwrap().to_owned());
        let ack = self
            .send(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &[],
            )
            .await;
        assert_eq!(ack.status, 202);
        result
    }

    /// A request of the session's era (2026-07-28 when the client has no session).
    pub async fn call(&self, id: i64, method: &str, params: Value) -> Answer {
        if self.session.is_some() {
            return self
                .send(
                    &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
                    &[],
                )
                .await;
        }
        let (message, headers) = modern(id, method, params);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.send(&message, &headers).await
    }

    pub async fn tool(&self, id: i64, name: &str, arguments: Value) -> Answer {
        self.call(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    pub async fn delete(&self) -> u16 {
        let mut req = self.http.delete(&self.url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

/// A 2026-07-28 request and the headers that go with it.
pub fn modern(id: i64, method: &str, mut params: Value) -> (Value, Vec<(&'static str, String)>) {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        headers.push(("mcp-name", name.to_owned()));
    }
    (
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        headers,
    )
}

impl Harness {
    /// Waits for the single pending request and returns its id.
    pub async fn pending_request(&self) -> String {
        for _ in 0..500 {
            let pending = self
                .engine
                .requests(&countersign_engine::RequestFilter {
                    status: Some(countersign_core::RequestStatus::Pending),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            if let Some(r) = pending.first() {
                return r.id.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no request was held");
    }

    /// Votes on request `id` through the HTTP API as alice.
    pub async fn vote(&self, id: &str, decision: &str, reason: &str) -> u16 {
        self.http
            .post(format!("{}/v1/requests/{id}/votes", self.api_url))
            .bearer_auth(ALICE)
            .json(&json!({"decision": decision, "reason": reason}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Audit events of `kind`, parsed.
    pub async fn events(&self, kind: &str) -> Vec<Value> {
        self.engine
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.event_json).unwrap())
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

/// An HTTP client for the gate and the API. Built with rustls when the reviewer channels are in
/// the build, so the one crypto provider is installed first.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
