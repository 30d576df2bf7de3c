//! Local fakes of what channels talk to, for tests and benchmarks: the Slack Web API and
//! Slack's interaction callbacks ([`FakeSlack`]), and a Standard Webhooks receiver
//! ([`WebhookReceiver`]). Both are real HTTP servers on loopback that follow the published
//! contracts: Slack's bearer tokens, request shapes, `{"ok": false, "error": …}` bodies and
//! HTTP 429 with `Retry-After`; the Standard Webhooks signature.

use crate::lock;
use crate::slack::{interaction, signature};
use crate::webhook::WebhookSecret;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn serve(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A user the fake workspace knows.
#[derive(Clone, Debug)]
pub struct FakeUser {
    pub email: Option<String>,
    pub team_id: String,
    pub deleted: bool,
    pub is_bot: bool,
}

/// A scripted answer to the next call of a method.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// HTTP 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// HTTP 200 with `{"ok": false, "error": <error>}`.
    Error(String),
}

/// One call the fake answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The JSON body, or the query parameters as an object.
    pub body: Value,
    /// What the fake answered: `ok`, or the error.
    pub answer: String,
}

#[derive(Default)]
struct SlackState {
    team_id: String,
    calls: Vec<Call>,
    users: HashMap<String, FakeUser>,
    /// (conversation, ts) → the message as last posted or updated.
    messages: HashMap<(String, String), Value>,
    scripted: HashMap<String, VecDeque<Scripted>>,
    triggers: HashMap<String, Instant>,
    responses: Vec<(String, Value)>,
    next_ts: u64,
}

/// The fake Slack: Web API under `{url}/api`, response URLs under `{url}/respond/…`.
#[derive(Clone)]
pub struct FakeSlack {
    /// The base to configure as `api_url`.
    pub api_url: String,
    base: String,
    pub token: String,
    pub signing_secret: String,
    pub team_id: String,
    state: Arc<Mutex<SlackState>>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

type Shared = (Arc<Mutex<SlackState>>, String);

impl FakeSlack {
    /// Starts a fake workspace `team_id` on a free loopback port.
    pub async fn start(team_id: &str) -> FakeSlack {
        let state = Arc::new(Mutex::new(SlackState {
            team_id: team_id.to_owned(),
            next_ts: 1,
            ..SlackState::default()
        }));
        let token = format!("xoxb-{}-test", team_id.to_ascii_lowercase());
        let shared: Shared = (state.clone(), token.clone());
        let router = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update_message))
            .route("/api/users.info", get(users_info))
            .route("/api/users.lookupByEmail", get(lookup_by_email))
            .route("/api/views.open", post(views_open))
            .route("/respond/{id}", post(respond))
            .with_state(shared);
        let addr = serve(router).await;
        let base = format!("http://{addr}");
        FakeSlack {
            api_url: format!("{base}/api"),
            base,
            token,
            signing_secret: format!("signing-secret-of-{team_id}"),
            team_id: team_id.to_owned(),
            state,
        }
    }

    pub fn add_user(&self, id: &str, email: Option<&str>) {
        self.add_user_full(
            id,
            FakeUser {
                email: email.map(str::to_owned),
                team_id: self.team_id.clone(),
                deleted: false,
                is_bot: false,
            },
        );
    }

    pub fn add_user_full(&self, id: &str, user: FakeUser) {
        lock(&self.state).users.insert(id.to_owned(), user);
    }

    /// A workspace configuration pointing at this fake, posting reviews to `channel`.
    pub fn config(&self, channel: &str) -> crate::slack::SlackConfig {
        crate::slack::SlackConfig {
            api_url: self.api_url.clone(),
            bot_token: crate::Secret::new(self.token.clone()),
            signing_secret: crate::Secret::new(self.signing_secret.clone()),
            team_id: self.team_id.clone(),
            channel: channel.to_owned(),
            group_channels: Default::default(),
            users: Default::default(),
            dm_reviewers: false,
        }
    }

    /// Makes the next call of `method` answer as `answer`.
    pub fn script(&self, method: &str, answer: Scripted) {
        lock(&self.state)
            .scripted
            .entry(method.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Every call of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The message `ts` in `conversation` as it stands now.
    pub fn message(&self, conversation: &str, ts: &str) -> Option<Value> {
        lock(&self.state)
            .messages
            .get(&(conversation.to_owned(), ts.to_owned()))
            .cloned()
    }

    /// Every message in `conversation`, as they stand now, with their ts.
    pub fn messages_in(&self, conversation: &str) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = lock(&self.state)
            .messages
            .iter()
            .filter(|((c, _), _)| c == conversation)
            .map(|((_, ts), m)| (ts.clone(), m.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// What was posted to response URLs: (the URL's id, the body).
    pub fn responses(&self) -> Vec<(String, Value)> {
        lock(&self.state).responses.clone()
    }

    /// A `block_actions` payload for `user` clicking `action_id` (Approve or Deny) on the
    /// message `ts` in `channel` about `request_id`, with a fresh trigger and response URL.
    pub fn click(
        &self,
        user: &str,
        action_id: &str,
        request_id: &str,
        channel: &str,
        ts: &str,
    ) -> Value {
        let n = self.next_id();
        let trigger = format!("{n}.{}.trigger", 1000 + n);
        lock(&self.state)
            .triggers
            .insert(trigger.clone(), Instant::now());
        json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_ascii_lowercase(), "name": user.to_ascii_lowercase(), "team_id": self.team_id},
            "api_app_id": "A0COUNTERSIGN",
            "token": "deprecated-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": trigger,
            "team": {"id": self.team_id, "domain": "example"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": channel, "name": "reviews"},
            "message": {"type": "message", "ts": ts, "text": "", "blocks": []},
            "state": {"values": {}},
            "response_url": format!("{}/respond/{n}", self.base),
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "countersign_review",
                "text": {"type": "plain_text", "text": "Approve"}, "value": request_id,
                "action_ts": format!("{}.{n:06}", crate::unix_now())
            }]
        })
    }

    /// A `view_submission` of the reason modal the gateway opened with `view` (as recorded
    /// from `views.open`), by `user`, giving `reason`.
    pub fn submit_reason(&self, user: &str, view: &Value, reason: &str) -> Value {
        let n = self.next_id();
        let mut view = view.clone();
        view["id"] = json!(format!("V{n:08}"));
        view["hash"] = json!(format!("{n}.hash"));
        view["state"] = json!({"values": {interaction::REASON_BLOCK: {interaction::REASON_INPUT: {"type": "plain_text_input", "value": reason}}}});
        json!({
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "example"},
            "user": {"id": user, "username": user.to_ascii_lowercase(), "name": user.to_ascii_lowercase(), "team_id": self.team_id},
            "api_app_id": "A0COUNTERSIGN",
            "token": "deprecated-verification-token",
            "trigger_id": format!("{n}.trigger"),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": false
        })
    }

    fn next_id(&self) -> u64 {
        let mut s = lock(&self.state);
        s.next_ts += 1;
        s.next_ts
    }

    /// The form body and headers Slack would send for `payload` at `timestamp`.
    pub fn signed(&self, payload: &Value, timestamp: i64) -> (String, Vec<(&'static str, String)>) {
        let body = interaction::form_body(payload);
        let ts = timestamp.to_string();
        let sig = signature::sign(&self.signing_secret, &ts, body.as_bytes());
        let headers = vec![
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("x-slack-request-timestamp", ts),
            ("x-slack-signature", sig),
        ];
        (body, headers)
    }

    /// Delivers `payload` to the gateway's interaction route as Slack does, signed now.
    pub async fn deliver(
        &self,
        client: &reqwest::Client,
        gateway: &str,
        payload: &Value,
    ) -> (u16, String) {
        let (body, headers) = self.signed(payload, crate::unix_now());
        send_raw(client, gateway, body, &headers).await
    }
}

/// POSTs `body` with `headers` to `{gateway}/v1/channels/slack/interactions`.
pub async fn send_raw(
    client: &reqwest::Client,
    gateway: &str,
    body: String,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut request = client.post(format!(
        "{}/v1/channels/slack/interactions",
        gateway.trim_end_matches('/')
    ));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn slack_json(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn slack_error(error: &str) -> Response {
    slack_json(json!({"ok": false, "error": error}))
}

/// Checks the bearer token and runs a scripted answer; `Some` is the refusal to send back.
fn gate(state: &Shared, method: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let (state, token) = state;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refusal = match auth {
        None => Some("not_authed"),
        Some(a) if a != format!("Bearer {token}") || !token.starts_with("xoxb-") => {
            Some("invalid_auth")
        }
        Some(_) => None,
    };
    let mut s = lock(state);
    let scripted = match refusal {
        Some(e) => Some(Scripted::Error(e.to_owned())),
        None => s.scripted.get_mut(method).and_then(VecDeque::pop_front),
    };
    let (answer, response) = match scripted? {
        Scripted::RateLimited(seconds) => (
            "ratelimited".to_owned(),
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response(),
        ),
        Scripted::Error(e) => (e.clone(), slack_error(&e)),
    };
    s.calls.push(Call {
        method: method.to_owned(),
        body: body.clone(),
        answer,
    });
    Some(response)
}

/// Records the call as refused with Slack's `error`, and answers so.
fn refused(state: &Shared, method: &str, body: &Value, error: &str) -> Response {
    answered(state, method, body, error);
    slack_error(error)
}

fn answered(state: &Shared, method: &str, body: &Value, answer: &str) {
    lock(&state.0).calls.push(Call {
        method: method.to_owned(),
        body: body.clone(),
        answer: answer.to_owned(),
    });
}

/// A JSON body, as Slack requires for these methods (`Content-Type: application/json`).
fn json_body(headers: &HeaderMap, bytes: &Bytes) -> Result<Value, &'static str> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err("invalid_form_data");
    }
    serde_json::from_slice(bytes).map_err(|_| "invalid_json")
}

/// The JSON body of a call of `method`, once it passed [`gate`]; `Err` is the answer.
fn json_call(
    state: &Shared,
    method: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<Value, Box<Response>> {
    let body = json_body(headers, bytes).map_err(|e| {
        answered(state, method, &json!(null), e);
        Box::new(slack_error(e))
    })?;
    match gate(state, method, headers, &body) {
        Some(refusal) => Err(Box::new(refusal)),
        None => Ok(body),
    }
}

/// Slack's Block Kit limits that matter here; `Err` names the first violation.
pub fn check_blocks(blocks: &Value) -> Result<(), String> {
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.len() > 50 {
        return Err(format!("{} blocks, at most 50", blocks.len()));
    }
    let text_len = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .map(|t| t.chars().count())
    };
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("header") => {
                if b.pointer("/text/type") != Some(&json!("plain_text"))
                    || text_len(b, "/text/text").is_none_or(|n| n > 150)
                {
                    return Err("header needs plain_text of at most 150 characters".into());
                }
            }
            Some("section") => {
                if text_len(b, "/text/text").is_none_or(|n| n == 0 || n > 3000) {
                    return Err("section text must be 1 to 3000 characters".into());
                }
            }
            Some("context") => {
                let ok = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty() && e.len() <= 10);
                if !ok {
                    return Err("context needs 1 to 10 elements".into());
                }
            }
            Some("actions") => {
                let elements = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .ok_or("actions without elements")?;
                if elements.is_empty() || elements.len() > 25 {
                    return Err("actions needs 1 to 25 elements".into());
                }
                for e in elements {
                    if e.get("type") != Some(&json!("button")) {
                        continue;
                    }
                    let ok = e.pointer("/text/type") == Some(&json!("plain_text"))
                        && text_len(e, "/text/text").is_some_and(|n| n <= 75)
                        && text_len(e, "/action_id").is_some_and(|n| n <= 255)
                        && text_len(e, "/value").is_none_or(|n| n <= 2000)
                        && text_len(e, "/url").is_none_or(|n| n <= 3000)
                        && e.get("style")
                            .is_none_or(|s| s == "primary" || s == "danger");
                    if !ok {
                        return Err(format!("malformed button {e}"));
                    }
                }
            }
            Some("divider") | Some("input") => {}
            other => return Err(format!("unknown block type {other:?}")),
        }
    }
    Ok(())
}

async fn post_message(State(state): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    const M: &str = "chat.postMessage";
    let body = match json_call(&state, M, &headers, &bytes) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let error = |e: &str| {
        answered(&state, M, &body, e);
        slack_error(e)
    };
    let Some(channel) = body
        .get("channel")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        return error("channel_not_found");
    };
    if body
        .get("text")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && body.get("blocks").is_none()
    {
        return error("no_text");
    }
    if body.get("blocks").is_some_and(|b| check_blocks(b).is_err()) {
        return error("invalid_blocks");
    }
    let mut s = lock(&state.0);
    // A user id opens (or reuses) the app's direct message with that user.
    let conversation = if s.users.contains_key(channel) {
        format!("D{channel}")
    } else if channel.starts_with(['C', 'G', 'D']) {
        channel.to_owned()
    } else {
        drop(s);
        return error("channel_not_found");
    };
    s.next_ts += 1;
    let ts = format!("1700000000.{:06}", s.next_ts);
    let mut message = json!({"type": "message", "ts": ts, "text": body.get("text"), "blocks": body.get("blocks")});
    if let Some(thread) = body.get("thread_ts") {
        message["thread_ts"] = thread.clone();
    }
    s.messages
        .insert((conversation.clone(), ts.clone()), message.clone());
    s.calls.push(Call {
        method: M.into(),
        body: body.clone(),
        answer: "ok".into(),
    });
    slack_json(json!({"ok": true, "channel": conversation, "ts": ts, "message": message}))
}

async fn update_message(State(state): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    const M: &str = "chat.update";
    let body = match json_call(&state, M, &headers, &bytes) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let error = |e: &str| {
        answered(&state, M, &body, e);
        slack_error(e)
    };
    let (Some(channel), Some(ts)) = (
        body.get("channel").and_then(Value::as_str),
        body.get("ts").and_then(Value::as_str),
    ) else {
        return error("invalid_arguments");
    };
    if body.get("blocks").is_some_and(|b| check_blocks(b).is_err()) {
        return error("invalid_blocks");
    }
    let mut s = lock(&state.0);
    let key = (channel.to_owned(), ts.to_owned());
    let Some(message) = s.messages.get_mut(&key) else {
        drop(s);
        return error("message_not_found");
    };
    if let Some(text) = body.get("text") {
        message["text"] = text.clone();
    }
    // Omitted blocks are kept; `[]` removes them.
    if let Some(blocks) = body.get("blocks") {
        message["blocks"] = blocks.clone();
    }
    message["edited"] =
        json!({"user": "B0COUNTERSIGN", "ts": format!("{}.000000", crate::unix_now())});
    let text = message["text"].clone();
    s.calls.push(Call {
        method: M.into(),
        body: body.clone(),
        answer: "ok".into(),
    });
    slack_json(json!({"ok": true, "channel": channel, "ts": ts, "text": text}))
}

async fn users_info(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    const M: &str = "users.info";
    let body = json!(q);
    if let Some(r) = gate(&state, M, &headers, &body) {
        return r;
    }
    let Some(id) = q.get("user") else {
        return refused(&state, M, &body, "invalid_arguments");
    };
    let user = lock(&state.0).users.get(id).cloned();
    let Some(user) = user else {
        return refused(&state, M, &body, "user_not_found");
    };
    answered(&state, M, &body, "ok");
    let mut profile = json!({"real_name": id, "display_name": id});
    if let Some(email) = &user.email {
        profile["email"] = json!(email);
    }
    slack_json(json!({"ok": true, "user": {
        "id": id, "team_id": user.team_id, "name": id.to_ascii_lowercase(),
        "deleted": user.deleted, "is_bot": user.is_bot, "profile": profile
    }}))
}

async fn lookup_by_email(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    const M: &str = "users.lookupByEmail";
    let body = json!(q);
    if let Some(r) = gate(&state, M, &headers, &body) {
        return r;
    }
    let Some(email) = q.get("email") else {
        return refused(&state, M, &body, "invalid_arguments");
    };
    let s = lock(&state.0);
    // Only this workspace's members: the token is the workspace's.
    let found = s
        .users
        .iter()
        .find(|(_, u)| {
            !u.deleted
                && u.team_id == s.team_id
                && u.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .map(|(id, u)| (id.clone(), u.team_id.clone()));
    drop(s);
    match found {
        Some((id, team)) => {
            answered(&state, M, &body, "ok");
            slack_json(
                json!({"ok": true, "user": {"id": id, "team_id": team, "profile": {"email": email}}}),
            )
        }
        None => {
            answered(&state, M, &body, "users_not_found");
            slack_error("users_not_found")
        }
    }
}

async fn views_open(State(state): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Response {
    const M: &str = "views.open";
    let body = match json_call(&state, M, &headers, &bytes) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let trigger = body
        .get("trigger_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let issued = lock(&state.0).triggers.remove(trigger);
    let answer = match issued {
        None => "invalid_trigger_id",
        Some(at) if at.elapsed() > Duration::from_secs(3) => "expired_trigger_id",
        Some(_) => {
            let view = &body["view"];
            let valid = view["type"] == "modal"
                && view.pointer("/title/type") == Some(&json!("plain_text"))
                && view.get("blocks").is_some_and(|b| check_blocks(b).is_ok());
            if valid { "ok" } else { "invalid_arguments" }
        }
    };
    answered(&state, M, &body, answer);
    if answer != "ok" {
        return slack_error(answer);
    }
    let mut view = body["view"].clone();
    view["id"] = json!("V0MODAL");
    slack_json(json!({"ok": true, "view": view}))
}

async fn respond(State(state): State<Shared>, Path(id): Path<String>, bytes: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(body) => {
            lock(&state.0).responses.push((id, body));
            (StatusCode::OK, "ok").into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
    }
}

/// One delivery a [`WebhookReceiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub body: Value,
    /// Whether the Standard Webhooks signature verified, and if not why.
    pub verified: Result<(), String>,
    /// The status it answered.
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Statuses to answer next (with a `Retry-After` for 429), before answering 204.
    script: VecDeque<(u16, Option<u64>)>,
}

/// A webhook endpoint that verifies Standard Webhooks signatures, as a receiver must.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookReceiver {
    /// Starts a receiver that trusts `secret` (`whsec_…`).
    pub async fn start(secret: &str) -> WebhookReceiver {
        let secret = WebhookSecret::parse(secret).expect("a valid whsec_ secret");
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = (state.clone(), Arc::new(secret));
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(shared);
        let addr = serve(router).await;
        WebhookReceiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    /// Answers the next deliveries with `status` (and `Retry-After` when given).
    pub fn answer_next(&self, status: u16, retry_after: Option<u64>) {
        lock(&self.state).script.push_back((status, retry_after));
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }
}

type ReceiverShared = (Arc<Mutex<ReceiverState>>, Arc<WebhookSecret>);

async fn receive(
    State((state, secret)): State<ReceiverShared>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let verified = secret
        .verify(
            h("webhook-id").as_deref(),
            h("webhook-timestamp").as_deref(),
            h("webhook-signature").as_deref(),
            &bytes,
            crate::unix_now(),
        )
        .map_err(|e| e.to_string());
    let mut s = lock(&state);
    let (status, retry_after) = match (&verified, s.script.pop_front()) {
        (Err(_), _) => (401, None),
        (Ok(()), Some(scripted)) => scripted,
        (Ok(()), None) => (204, None),
    };
    s.received.push(Received {
        id: h("webhook-id").unwrap_or_default(),
        timestamp: h("webhook-timestamp").unwrap_or_default(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        verified,
        answered: status,
    });
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match retry_after {
        Some(secs) => (code, [(header::RETRY_AFTER, secs.to_string())]).into_response(),
        None => code.into_response(),
    }
}

/// Waits until `check` holds, polling every 20 ms; panics naming `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
