//! Downstream sessions and the handling of one client request.
//!
//! A client of the 2025 revisions gets a session at `initialize` (its `Mcp-Session-Id`), bound
//! to its principal and to an upstream connection of its own (for a stdio upstream, a process
//! of its own). A 2026-07-28 client has no session: its requests run on one upstream connection
//! per principal, which the gate opens on first use. Sessions and connections idle longer than
//! the gate's `session_idle_timeout` end, and a stdio upstream ends with them.
//!
//! [`handle`] answers one request: a few methods the gate acts on (`tools/call`, `tools/list`,
//! `server/discover`, `ping`), the other client requests of the specification passed through
//! with ids and progress tokens mapped, and every other method refused (-32601). What it sends (progress, then the response) goes to the request's own channel, and
//! it stops when that channel closes (the client went away) or the client cancels.

use crate::upstream::{Negotiated, Upstream};
use crate::{Gate, GateConfig, calls, jsonrpc, lock, protocol};
use countersign_core::Principal;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::{Notify, mpsc};

/// Most messages kept for a session of the 2025 revisions while no stream is open to take them.
const BACKLOG: usize = 256;

/// One downstream session (or, for 2026-07-28, one principal's connection).
#[derive(Debug)]
pub(crate) struct Session {
    pub id: String,
    pub principal: Principal,
    /// The downstream revision: negotiated by `initialize`, or 2026-07-28.
    pub version: &'static str,
    pub upstream: Arc<Upstream>,
    in_flight: Mutex<HashMap<String, Arc<Notify>>>,
    streams: Mutex<Streams>,
    last_used: Mutex<Instant>,
    /// Counts this session against the caps until it is gone.
    _slot: Slot,
}

/// Live sessions, in total and per principal, for the caps.
#[derive(Debug, Default)]
struct Census {
    total: usize,
    by_principal: HashMap<String, usize>,
}

/// One session's place under the caps; given back when dropped (the session is gone).
#[derive(Debug)]
struct Slot {
    census: Arc<Mutex<Census>>,
    principal: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut census = lock(&self.census);
        census.total = census.total.saturating_sub(1);
        if let Some(n) = census.by_principal.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                census.by_principal.remove(&self.principal);
            }
        }
    }
}

/// Why no session was opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The gate has `max_sessions` open.
    GateFull(usize),
    /// This principal has `max_sessions_per_principal` open.
    PrincipalFull(usize),
    /// The upstream could not be reached or negotiated with.
    Upstream(String),
}

impl OpenError {
    pub(crate) fn message(&self) -> String {
        match self {
            OpenError::GateFull(n) => format!(
                "the gate has its maximum of {n} MCP sessions open; try again when one ends"
            ),
            OpenError::PrincipalFull(n) => format!(
                "you have the maximum of {n} MCP sessions open at this gate; end one (HTTP DELETE with its Mcp-Session-Id) or let it idle out"
            ),
            OpenError::Upstream(e) => format!("cannot reach the upstream MCP server: {e}"),
        }
    }

    pub(crate) fn code(&self) -> i64 {
        match self {
            OpenError::GateFull(_) | OpenError::PrincipalFull(_) => jsonrpc::TOO_MANY_SESSIONS,
            OpenError::Upstream(_) => jsonrpc::UPSTREAM_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Default)]
struct Streams {
    get: Option<mpsc::Sender<Value>>,
    /// Weak, so that a POST's stream ends when its request does.
    posts: Vec<mpsc::WeakSender<Value>>,
    backlog: VecDeque<Value>,
}

impl Session {
    pub(crate) fn modern(&self) -> bool {
        self.version == protocol::V2026_07_28
    }

    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    fn idle_for(&self) -> std::time::Duration {
        lock(&self.last_used).elapsed()
    }

    fn busy(&self) -> bool {
        !lock(&self.in_flight).is_empty()
            || lock(&self.streams)
                .get
                .as_ref()
                .is_some_and(|s| !s.is_closed())
    }

    /// Registers a request as in flight under `key` (its id, in a session; something unique
    /// for a 2026-07-28 request); `None` if a request with that key already is.
    pub(crate) fn begin(&self, key: String) -> Option<Arc<Notify>> {
        self.touch();
        let mut in_flight = lock(&self.in_flight);
        if in_flight.contains_key(&key) {
            return None;
        }
        let cancel = Arc::new(Notify::new());
        in_flight.insert(key, cancel.clone());
        Some(cancel)
    }

    pub(crate) fn end(&self, key: &str) {
        lock(&self.in_flight).remove(key);
        self.touch();
    }

    /// The client's `notifications/cancelled` for request `id`.
    pub(crate) fn cancel(&self, id: &Value) {
        if let Some(c) = lock(&self.in_flight).get(&id.to_string()) {
            c.notify_one();
        }
    }

    fn cancel_all(&self) {
        for c in lock(&self.in_flight).values() {
            c.notify_one();
        }
    }

    /// Opens the GET stream of a session of the 2025 revisions; `None` if one is open already.
    pub(crate) fn open_get_stream(&self) -> Option<mpsc::Receiver<Value>> {
        let mut streams = lock(&self.streams);
        if streams.get.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(BACKLOG);
        while let Some(m) = streams.backlog.pop_front() {
            let _ = tx.try_send(m);
        }
        streams.get = Some(tx);
        Some(rx)
    }

    /// Offers the streams of open POSTs to what the server sends on its own.
    pub(crate) fn add_post_stream(&self, tx: &mpsc::Sender<Value>) {
        let mut streams = lock(&self.streams);
        streams.posts.retain(|s| s.strong_count() > 0);
        streams.posts.push(tx.downgrade());
    }

    /// Delivers a message the server sent on its own: on the GET stream, else on an open POST
    /// stream (the server's requests mostly come while a call it needs them for is open), else
    /// kept until a stream opens.
    fn deliver(&self, message: Value) {
        let mut streams = lock(&self.streams);
        let mut message = Some(message);
        if let Some(get) = &streams.get
            && let Some(m) = message.take()
            && let Err(e) = get.try_send(m)
        {
            message = Some(e.into_inner());
        }
        for post in streams
            .posts
            .iter()
            .rev()
            .filter_map(mpsc::WeakSender::upgrade)
        {
            let Some(m) = message.take() else { break };
            if let Err(e) = post.try_send(m) {
                message = Some(e.into_inner());
            }
        }
        if let Some(m) = message {
            if streams.backlog.len() == BACKLOG {
                streams.backlog.pop_front();
                tracing::warn!(session = %self.id, "session backlog full; dropped the oldest message from the upstream");
            }
            streams.backlog.push_back(m);
        }
    }

    fn close(&self, why: &str) {
        self.cancel_all();
        self.upstream.close(why);
    }
}

/// The gate's sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
    /// 2026-07-28 clients, one connection per principal; creation is serialised so that
    /// concurrent first requests start one upstream, not several.
    by_principal: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    principal_index: Mutex<HashMap<String, Arc<Session>>>,
    census: Arc<Mutex<Census>>,
}

impl Sessions {
    /// Takes a place for a new session of `principal`, unless a cap is reached. Checked and
    /// counted under one lock, so concurrent `initialize`s cannot overshoot.
    fn reserve(&self, principal: &str, config: &GateConfig) -> Result<Slot, OpenError> {
        let mut census = lock(&self.census);
        if census.total >= config.max_sessions {
            return Err(OpenError::GateFull(config.max_sessions));
        }
        let mine = census.by_principal.entry(principal.to_owned()).or_default();
        if *mine >= config.max_sessions_per_principal {
            return Err(OpenError::PrincipalFull(config.max_sessions_per_principal));
        }
        *mine += 1;
        census.total += 1;
        Ok(Slot {
            census: self.census.clone(),
            principal: principal.to_owned(),
        })
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.by_id).len() + lock(&self.principal_index).len()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = lock(&self.by_id)
            .values()
            .chain(lock(&self.principal_index).values())
            .filter(|s| s.upstream.closed_reason().is_none())
            .filter_map(|s| s.upstream.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.by_id).get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str, why: &str) {
        if let Some(s) = lock(&self.by_id).remove(id) {
            s.close(why);
        }
    }

    pub(crate) fn close_all(&self, why: &str) {
        for (_, s) in lock(&self.by_id).drain() {
            s.close(why);
        }
        for (_, s) in lock(&self.principal_index).drain() {
            s.close(why);
        }
    }
}

/// Starts a session of the 2025 revisions for `principal`: connects upstream on the client's
/// behalf and answers its `initialize`. Returns the session and the result.
pub(crate) async fn initialize(
    gate: &Arc<Gate>,
    principal: Principal,
    params: Option<&Value>,
) -> Result<(Arc<Session>, Value), OpenError> {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or("");
    // The client's revision if the gate speaks it, else the newest the handshake knows; the
    // client decides whether it can live with that.
    let version = protocol::HANDSHAKE_REVISIONS
        .iter()
        .copied()
        .find(|v| *v == requested)
        .unwrap_or(protocol::V2025_11_25);
    let capabilities = params
        .and_then(|p| p.get("capabilities"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let client_info = params
        .and_then(|p| p.get("clientInfo"))
        .cloned()
        .unwrap_or_else(gate_client_info);
    let slot = gate
        .sessions
        .reserve(&principal.reference().to_string(), &gate.config)?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let session = open(
        gate,
        id.clone(),
        principal,
        version,
        capabilities,
        client_info,
        slot,
    )
    .await
    .map_err(OpenError::Upstream)?;
    let negotiated = session
        .upstream
        .negotiated()
        .cloned()
        .ok_or_else(|| OpenError::Upstream("upstream not negotiated".into()))?;
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": negotiated.capabilities,
        "serverInfo": negotiated.server_info,
    });
    if let Some(i) = negotiated.instructions {
        result["instructions"] = i;
    }
    lock(&gate.sessions.by_id).insert(id, session.clone());
    Ok((session, result))
}

/// The connection of `principal` for 2026-07-28 requests, opened on first use.
pub(crate) async fn for_principal(
    gate: &Arc<Gate>,
    principal: &Principal,
) -> Result<Arc<Session>, OpenError> {
    let key = principal.reference().to_string();
    let mut pool = gate.sessions.by_principal.lock().await;
    if let Some(s) = pool.get(&key) {
        if s.upstream.closed_reason().is_none() {
            s.touch();
            return Ok(s.clone());
        }
        pool.remove(&key);
        lock(&gate.sessions.principal_index).remove(&key);
    }
    let slot = gate.sessions.reserve(&key, &gate.config)?;
    // The gate declares no client capabilities upstream: a 2026-07-28 client has no channel
    // for requests from the server, so none should be invited.
    let session = open(
        gate,
        String::new(),
        principal.clone(),
        protocol::V2026_07_28,
        json!({}),
        gate_client_info(),
        slot,
    )
    .await
    .map_err(OpenError::Upstream)?;
    pool.insert(key.clone(), session.clone());
    lock(&gate.sessions.principal_index).insert(key, session.clone());
    Ok(session)
}

fn gate_client_info() -> Value {
    json!({"name": "countersign", "version": env!("CARGO_PKG_VERSION")})
}

async fn open(
    gate: &Arc<Gate>,
    id: String,
    principal: Principal,
    version: &'static str,
    capabilities: Value,
    client_info: Value,
    slot: Slot,
) -> Result<Arc<Session>, String> {
    let (tx, mut rx) = mpsc::channel::<Value>(BACKLOG);
    let upstream = Upstream::connect(&gate.config, capabilities, client_info, tx).await?;
    let session = Arc::new(Session {
        id,
        principal,
        version,
        upstream,
        in_flight: Mutex::default(),
        streams: Mutex::default(),
        last_used: Mutex::new(Instant::now()),
        _slot: slot,
    });
    let weak = Arc::downgrade(&session);
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let Some(session) = weak.upgrade() else {
                return;
            };
            unsolicited(&session, message).await;
        }
    });
    Ok(session)
}

/// What the server sent on its own: to the client of a 2025 session; for a 2026-07-28
/// connection, which has no client to ask, `ping` is answered and other requests refused.
async fn unsolicited(session: &Arc<Session>, message: Value) {
    if !session.modern() {
        session.deliver(message);
        return;
    }
    let (Some(id), Some(method)) = (
        message.get("id"),
        message.get("method").and_then(Value::as_str),
    ) else {
        return;
    };
    let answer = if method == "ping" {
        jsonrpc::result(id, json!({}))
    } else {
        jsonrpc::error(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            "the gate's 2026-07-28 clients take no requests from the server",
        )
    };
    let _ = session.upstream.send_raw(answer).await;
}

/// Ends sessions that have been idle too long.
pub(crate) async fn reap_idle(gate: Weak<Gate>) {
    loop {
        let Some(g) = gate.upgrade() else { return };
        let idle = g.config.session_idle_timeout;
        let tick = (idle / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(30),
        );
        let stale = |s: &Arc<Session>| {
            (s.idle_for() >= idle && !s.busy()) || s.upstream.closed_reason().is_some()
        };
        let ended: Vec<Arc<Session>> = {
            let mut by_id = lock(&g.sessions.by_id);
            let ids: Vec<String> = by_id
                .iter()
                .filter(|(_, s)| stale(s))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| by_id.remove(k)).collect()
        };
        let ended_pool: Vec<Arc<Session>> = {
            let mut pool = g.sessions.by_principal.lock().await;
            let keys: Vec<String> = pool
                .iter()
                .filter(|(_, s)| stale(s))
                .map(|(k, _)| k.clone())
                .collect();
            let mut index = lock(&g.sessions.principal_index);
            keys.iter()
                .filter_map(|k| {
                    index.remove(k);
                    pool.remove(k)
                })
                .collect()
        };
        for s in ended.iter().chain(ended_pool.iter()) {
            s.close("the session was idle too long");
        }
        drop(g);
        tokio::time::sleep(tick).await;
    }
}

/// What one request needs to know about where it runs.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub gate: &'a Arc<Gate>,
    pub session: &'a Arc<Session>,
    pub peer: String,
    pub out: &'a mpsc::Sender<Value>,
}

/// Answers request `id` on `session`: sends progress and then the response to `out`, unless
/// the client cancels (`cancel`) or goes away (`out` closes), in which case nothing is sent and
/// whatever the request started is withdrawn.
pub(crate) struct Incoming {
    pub key: String,
    pub id: Value,
    pub method: String,
    pub params: Option<Value>,
    pub cancel: Arc<Notify>,
}

pub(crate) async fn handle(
    gate: Arc<Gate>,
    session: Arc<Session>,
    peer: String,
    request: Incoming,
    out: mpsc::Sender<Value>,
) {
    let Incoming {
        key,
        id,
        method,
        params,
        cancel,
    } = request;
    let ctx = Ctx {
        gate: &gate,
        session: &session,
        peer,
        out: &out,
    };
    let answer = tokio::select! {
        answer = dispatch(&ctx, &id, &method, params) => Some(answer),
        () = out.closed() => None,
        () = cancel.notified() => None,
    };
    session.end(&key);
    if let Some(mut answer) = answer {
        answer["id"] = id;
        let _ = out.send(finish(answer, &method, session.modern())).await;
    }
}

async fn dispatch(ctx: &Ctx<'_>, id: &Value, method: &str, params: Option<Value>) -> Value {
    if let Some(why) = ctx.session.upstream.closed_reason() {
        return jsonrpc::error(id, jsonrpc::UPSTREAM_UNAVAILABLE, &why);
    }
    match method {
        "tools/call" => calls::call_tool(ctx, id, params).await,
        "tools/list" => calls::list_tools(ctx, id, params).await,
        "ping" => jsonrpc::result(id, json!({})),
        "server/discover" if ctx.session.modern() => discover(ctx, id),
        "initialize" => jsonrpc::error(
            id,
            jsonrpc::INVALID_REQUEST,
            if ctx.session.modern() {
                "2026-07-28 has no initialize; send server/discover"
            } else {
                "this session is already initialized"
            },
        ),
        m if protocol::is_pass_through(m) => forward(ctx, id, method, params).await,
        _ => {
            tracing::info!(gate = %ctx.gate.config.name, %method, "refused a method the gate does not pass through");
            jsonrpc::error(
                id,
                jsonrpc::METHOD_NOT_FOUND,
                &format!("method `{method}` is not one the gate passes to the MCP server"),
            )
        }
    }
}

fn discover(ctx: &Ctx<'_>, id: &Value) -> Value {
    let negotiated: Option<&Negotiated> = ctx.session.upstream.negotiated();
    let mut result = json!({
        "supportedVersions": protocol::ALL_REVISIONS,
        "capabilities": negotiated.map_or(json!({}), |n| n.capabilities.clone()),
        "serverInfo": negotiated.map_or(json!({}), |n| n.server_info.clone()),
    });
    if let Some(i) = negotiated.and_then(|n| n.instructions.clone()) {
        result["instructions"] = i;
    }
    jsonrpc::result(id, result)
}

/// Passes request `method` upstream and relays its progress and answer.
pub(crate) async fn forward(
    ctx: &Ctx<'_>,
    id: &Value,
    method: &str,
    params: Option<Value>,
) -> Value {
    let token = params
        .as_ref()
        .and_then(|p| protocol::meta(Some(p)))
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let upstream = &ctx.session.upstream;
    let mut call = match upstream.call(method, params, token).await {
        Ok(c) => c,
        Err(e) => return jsonrpc::error(id, jsonrpc::UPSTREAM_UNAVAILABLE, &e),
    };
    let deadline = tokio::time::sleep(upstream.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            message = call.next() => match message {
                Some(m) if m.get("method").is_some() => {
                    let _ = ctx.out.send(m).await;
                }
                Some(m) => return m,
                None => return jsonrpc::error(id, jsonrpc::UPSTREAM_UNAVAILABLE, "the upstream connection ended"),
            },
            () = &mut deadline => return crate::upstream::timeout_error(id, upstream.timeout),
        }
    }
}

/// Fits an answer to the client's revision: 2026-07-28 results say `resultType` and lists say
/// how they may be cached (private: the gate filters per principal); older clients get neither,
/// and cannot be given an `input_required` result.
fn finish(mut answer: Value, method: &str, modern: bool) -> Value {
    let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) else {
        return answer;
    };
    if modern {
        result
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        if method.ends_with("/list") || method == "server/discover" {
            result.entry("ttlMs").or_insert_with(|| Value::from(0));
            if method == "tools/list" {
                result.insert("cacheScope".into(), Value::from("private"));
            } else {
                result
                    .entry("cacheScope")
                    .or_insert_with(|| Value::from("private"));
            }
        }
        return answer;
    }
    if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        let id = answer.get("id").cloned().unwrap_or(Value::Null);
        return jsonrpc::error(
            &id,
            jsonrpc::INTERNAL_ERROR,
            "the upstream server asked for more input (a 2026-07-28 input_required result), which the gate cannot relay to a client of an older revision",
        );
    }
    for key in ["resultType", "ttlMs", "cacheScope"] {
        result.remove(key);
    }
    answer
}
