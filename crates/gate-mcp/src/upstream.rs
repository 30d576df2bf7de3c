//! One connection to the upstream MCP server, negotiated on its own terms: the gate probes
//! `server/discover` (2026-07-28) and falls back to `initialize` (2025-11-25, 2025-06-18),
//! whatever the downstream client speaks.
//!
//! Requests the gate forwards get ids of the gate's own (and progress tokens to match), so
//! answers and progress find their way back to the right downstream request, and requests the
//! gate makes itself (`tools/list` to learn a tool's annotations) never collide with the
//! client's. Everything the server sends that answers nothing of ours (its own requests, its
//! notifications) goes to the owner's `unsolicited` channel. When the connection ends, every
//! request still waiting is answered with an error at once, and a stdio server is killed.

use crate::config::{GateConfig, UpstreamProtocol, UpstreamTarget};
use crate::jsonrpc::{self, Message};
use crate::link::{HttpLink, Inbound, StdioLink};
use crate::protocol;
use serde_json::{Map, Value, json};
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long the `server/discover` probe waits before the gate tries `initialize` instead.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most pages of `tools/list` the gate reads when it lists tools itself.
const MAX_TOOL_PAGES: usize = 100;

/// What the upstream said about itself.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub version: &'static str,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<Value>,
}

impl Negotiated {
    pub(crate) fn modern(&self) -> bool {
        self.version == protocol::V2026_07_28
    }
}

#[derive(Debug)]
enum Link {
    Stdio {
        tx: mpsc::Sender<Vec<u8>>,
        kill: Mutex<Option<oneshot::Sender<()>>>,
    },
    Http {
        link: Arc<HttpLink>,
        /// The POSTs in flight by request id, aborted when their request is abandoned (for
        /// 2026-07-28 closing the stream is the cancellation).
        posts: Mutex<HashMap<i64, tokio::task::AbortHandle>>,
    },
}

/// A live connection to the upstream server.
#[derive(Debug)]
pub(crate) struct Upstream {
    gate: String,
    link: Link,
    sink: mpsc::Sender<Inbound>,
    next_id: AtomicI64,
    routes: Mutex<HashMap<i64, mpsc::UnboundedSender<Value>>>,
    closed: watch::Sender<Option<String>>,
    negotiated: OnceLock<Negotiated>,
    client_capabilities: Value,
    client_info: Value,
    /// Tools by name, as the server last listed them.
    tools: Mutex<HashMap<String, Listed>>,
    pub(crate) timeout: Duration,
    pub(crate) pid: Option<u32>,
}

/// A request sent upstream, waiting for its answer. Dropped unanswered, it is cancelled
/// upstream.
#[derive(Debug)]
pub(crate) struct Call {
    id: i64,
    rx: mpsc::UnboundedReceiver<Value>,
    upstream: Arc<Upstream>,
    /// The client's progress token, restored in progress notifications.
    client_token: Option<Value>,
    done: bool,
}

impl Call {
    /// The next message for this request: progress notifications (with the client's token),
    /// then the response (with the gate's id; the caller restores the client's).
    pub(crate) async fn next(&mut self) -> Option<Value> {
        let mut msg = self.rx.recv().await?;
        if msg.get("method").is_some() {
            if let (Some(token), Some(params)) = (
                &self.client_token,
                msg.get_mut("params").and_then(Value::as_object_mut),
            ) {
                params.insert("progressToken".into(), token.clone());
            }
        } else {
            self.done = true;
        }
        Some(msg)
    }

    /// Waits for the response alone, dropping progress, within the upstream's timeout.
    pub(crate) async fn response(mut self) -> Value {
        let timeout = self.upstream.timeout;
        let id = Value::from(self.id);
        let answer = tokio::time::timeout(timeout, async {
            loop {
                match self.next().await {
                    Some(m) if m.get("method").is_none() => return m,
                    Some(_) => {}
                    None => {
                        return jsonrpc::error(
                            &id,
                            jsonrpc::UPSTREAM_UNAVAILABLE,
                            "the upstream connection ended",
                        );
                    }
                }
            }
        })
        .await;
        answer.unwrap_or_else(|_| timeout_error(&id, timeout))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.upstream.forget(self.id);
        if !self.done {
            // Abandoned (the client cancelled or went away, or the gate gave up): tell the
            // server, so it stops working on it.
            let upstream = self.upstream.clone();
            let id = self.id;
            // Dropped outside a runtime (at shutdown) there is nobody left to tell.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(async move {
                let _ = upstream
                    .notify(
                        "notifications/cancelled",
                        json!({"requestId": id, "reason": "cancelled by the client or the gate"}),
                    )
                    .await;
            });
        }
    }
}

/// The error a request gets when the upstream did not answer within `timeout`.
pub(crate) fn timeout_error(id: &Value, timeout: Duration) -> Value {
    jsonrpc::error(
        id,
        jsonrpc::UPSTREAM_TIMEOUT,
        &format!(
            "the upstream MCP server did not answer within {}s",
            timeout.as_secs_f64()
        ),
    )
}

/// What the server's latest tool listing says about one name.
#[derive(Debug, Clone)]
pub(crate) enum Listed {
    Once(Map<String, Value>),
    /// Listed more than once in one listing: which definition a call would run is unknown, so
    /// the tool counts as changed (hidden, calls refused).
    Twice,
}

impl Upstream {
    /// Connects to the configured upstream and negotiates a revision. `client_capabilities`
    /// and `client_info` are what the gate declares upstream (the downstream client's, for a
    /// session of the 2025 revisions). Messages the server sends on its own go to `unsolicited`.
    pub(crate) async fn connect(
        config: &GateConfig,
        client_capabilities: Value,
        client_info: Value,
        unsolicited: mpsc::Sender<Value>,
    ) -> Result<Arc<Upstream>, String> {
        let (sink, inbound) = mpsc::channel::<Inbound>(256);
        let (link, pid) = match &config.upstream {
            UpstreamTarget::Command(cmd) => {
                let StdioLink { tx, kill, pid } = StdioLink::spawn(
                    &config.name,
                    cmd,
                    &config.upstream_env,
                    config.max_message_bytes,
                    sink.clone(),
                )
                .map_err(|e| format!("cannot start `{}`: {e}", cmd.join(" ")))?;
                (
                    Link::Stdio {
                        tx,
                        kill: Mutex::new(Some(kill)),
                    },
                    pid,
                )
            }
            UpstreamTarget::Url(url) => (
                Link::Http {
                    link: Arc::new(HttpLink::new(url, None, config.max_message_bytes)?),
                    posts: Mutex::default(),
                },
                None,
            ),
        };
        let upstream = Arc::new(Upstream {
            gate: config.name.clone(),
            link,
            sink,
            next_id: AtomicI64::new(1),
            routes: Mutex::default(),
            closed: watch::channel(None).0,
            negotiated: OnceLock::new(),
            client_capabilities,
            client_info,
            tools: Mutex::default(),
            timeout: config.request_timeout,
            pid,
        });
        tokio::spawn(dispatch_loop(
            Arc::downgrade(&upstream),
            inbound,
            unsolicited,
        ));
        if let Err(e) = upstream.negotiate(config.upstream_protocol).await {
            upstream.close(&e);
            return Err(e);
        }
        Ok(upstream)
    }

    pub(crate) fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.get()
    }

    /// Why the connection ended, if it did.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    async fn negotiate(self: &Arc<Self>, wanted: UpstreamProtocol) -> Result<(), String> {
        let (probe, handshake) = match wanted {
            UpstreamProtocol::Auto => {
                (Some(PROBE_TIMEOUT.min(self.timeout)), protocol::V2025_11_25)
            }
            UpstreamProtocol::Pinned(v) if v == protocol::V2026_07_28 => (Some(self.timeout), ""),
            UpstreamProtocol::Pinned(v) => (None, v),
        };
        if let Some(wait) = probe {
            let call = self.start("server/discover", None, None, true).await?;
            let answer = tokio::time::timeout(wait, call.response()).await;
            if let Ok(answer) = &answer
                && let Some(result) = answer.get("result")
                && result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|v| v == protocol::V2026_07_28))
            {
                self.settle(Negotiated {
                    version: protocol::V2026_07_28,
                    capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
                    server_info: result.get("serverInfo").cloned().unwrap_or(json!({})),
                    instructions: result.get("instructions").cloned(),
                });
                return Ok(());
            }
            if handshake.is_empty() {
                return Err(format!(
                    "the upstream server does not speak {}: {}",
                    protocol::V2026_07_28,
                    match answer {
                        Ok(a) => a.to_string(),
                        Err(_) => "no answer to server/discover".into(),
                    }
                ));
            }
        }
        let params = json!({
            "protocolVersion": handshake,
            "capabilities": self.client_capabilities,
            "clientInfo": self.client_info,
        });
        let answer = self
            .start("initialize", Some(params), None, false)
            .await?
            .response()
            .await;
        let result = answer.get("result").ok_or_else(|| {
            format!(
                "the upstream server refused initialize: {}",
                answer.get("error").unwrap_or(&answer)
            )
        })?;
        let offered = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = protocol::HANDSHAKE_REVISIONS
            .iter()
            .find(|v| **v == offered)
            .filter(|v| matches!(wanted, UpstreamProtocol::Auto) || **v == handshake)
            .ok_or_else(|| {
                format!("the upstream server answered initialize with revision `{offered}`, which the gate does not speak")
            })?;
        self.settle(Negotiated {
            version,
            capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(json!({})),
            instructions: result.get("instructions").cloned(),
        });
        if let Link::Http { link, .. } = &self.link {
            link.set_version(version);
        }
        self.notify("notifications/initialized", Value::Null)
            .await?;
        if let Link::Http { link, .. } = &self.link {
            // The stream for what the server sends on its own (2025 revisions only).
            let (link, sink) = (link.clone(), self.sink.clone());
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                if let Err(e) = link.listen(&sink).await
                    && weak.upgrade().is_some()
                {
                    tracing::debug!(error = %e, "the upstream's GET stream ended");
                }
            });
        }
        Ok(())
    }

    fn settle(&self, negotiated: Negotiated) {
        tracing::info!(gate = %self.gate, version = negotiated.version, "upstream MCP server connected");
        let _ = self.negotiated.set(negotiated);
    }

    /// Sends request `method` upstream. `client_token` is the client's progress token, if it
    /// asked for progress.
    pub(crate) async fn call(
        self: &Arc<Self>,
        method: &str,
        params: Option<Value>,
        client_token: Option<Value>,
    ) -> Result<Call, String> {
        let modern = self.negotiated().is_some_and(Negotiated::modern);
        self.start(method, params, client_token, modern).await
    }

    async fn start(
        self: &Arc<Self>,
        method: &str,
        mut params: Option<Value>,
        client_token: Option<Value>,
        envelope: bool,
    ) -> Result<Call, String> {
        if let Some(why) = self.closed_reason() {
            return Err(why);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        crate::lock(&self.routes).insert(id, tx);
        if let Some(p) = params.as_mut() {
            protocol::strip_envelope(p);
        }
        if client_token.is_some()
            && let Some(obj) = params.get_or_insert_with(|| json!({})).as_object_mut()
        {
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("progressToken".into(), Value::from(id));
            }
        }
        if envelope {
            protocol::add_envelope(&mut params, &self.client_capabilities, &self.client_info);
        }
        let mut call = Call {
            id,
            rx,
            upstream: self.clone(),
            client_token,
            done: false,
        };
        if let Err(e) = self
            .send(id, jsonrpc::request(&Value::from(id), method, params))
            .await
        {
            call.done = true;
            return Err(e);
        }
        Ok(call)
    }

    /// Sends a notification upstream.
    pub(crate) async fn notify(
        self: &Arc<Self>,
        method: &str,
        params: Value,
    ) -> Result<(), String> {
        let modern = self.negotiated().is_some_and(Negotiated::modern);
        if modern && matches!(self.link, Link::Http { .. }) {
            // 2026-07-28 over HTTP has no client notifications: closing a stream cancels.
            return Ok(());
        }
        let params = (!params.is_null()).then_some(params);
        self.send(0, jsonrpc::notification(method, params)).await
    }

    /// Passes a message from the client on as it is (a response to a server's request).
    pub(crate) async fn send_raw(self: &Arc<Self>, message: Value) -> Result<(), String> {
        self.send(0, message).await
    }

    /// Sends `message`; for HTTP, `id` (non-zero for requests) names the POST so that it can
    /// be abandoned, and a POST that fails answers the request with the failure.
    async fn send(self: &Arc<Self>, id: i64, message: Value) -> Result<(), String> {
        if let Some(why) = self.closed_reason() {
            return Err(why);
        }
        match &self.link {
            Link::Stdio { tx, .. } => {
                let bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
                tx.send(bytes)
                    .await
                    .map_err(|_| "the upstream server's stdin is closed".to_owned())
            }
            Link::Http { link, posts } => {
                let (link, sink) = (link.clone(), self.sink.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) = link.post(&message, &sink).await
                        && let Some(req_id) = message
                            .get("id")
                            .filter(|_| message.get("method").is_some())
                    {
                        let _ = sink
                            .send(Ok(jsonrpc::error(
                                req_id,
                                jsonrpc::UPSTREAM_UNAVAILABLE,
                                &e,
                            )))
                            .await;
                    }
                });
                if id != 0 {
                    crate::lock(posts).insert(id, task.abort_handle());
                }
                Ok(())
            }
        }
    }

    fn forget(&self, id: i64) {
        crate::lock(&self.routes).remove(&id);
        if let Link::Http { posts, .. } = &self.link
            && let Some(task) = crate::lock(posts).remove(&id)
        {
            task.abort();
        }
    }

    /// Ends the connection: every waiting request is answered with `why`, a stdio server is
    /// killed, an HTTP session is ended.
    pub(crate) fn close(&self, why: &str) {
        let first = self.closed.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(why.to_owned());
            true
        });
        if !first {
            return;
        }
        tracing::info!(gate = %self.gate, reason = why, "upstream connection closed");
        let routes: Vec<_> = crate::lock(&self.routes).drain().collect();
        for (id, tx) in routes {
            let _ = tx.send(jsonrpc::error(
                &Value::from(id),
                jsonrpc::UPSTREAM_UNAVAILABLE,
                why,
            ));
        }
        match &self.link {
            Link::Stdio { kill, .. } => {
                if let Some(kill) = crate::lock(kill).take() {
                    let _ = kill.send(());
                }
            }
            Link::Http { link, posts } => {
                for (_, task) in crate::lock(posts).drain() {
                    task.abort();
                }
                let link = link.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { link.close().await });
                }
            }
        }
    }

    fn route(&self, id: i64, message: Value) {
        if let Some(tx) = crate::lock(&self.routes).get(&id) {
            let _ = tx.send(message);
        }
    }

    /// Remembers tools as the server listed them; `replace` for a first page (a later page
    /// belongs to the same listing). Returns the names this page lists more than once, or that
    /// an earlier page of the listing already listed: those are remembered as [`Listed::Twice`].
    pub(crate) fn remember_tools(&self, tools: &[Value], replace: bool) -> BTreeSet<String> {
        let mut cache = crate::lock(&self.tools);
        if replace {
            cache.clear();
        }
        let mut twice = BTreeSet::new();
        for tool in tools {
            if let Some(obj) = tool.as_object()
                && let Some(name) = obj.get("name").and_then(Value::as_str)
            {
                match cache.entry(name.to_owned()) {
                    Entry::Vacant(e) => {
                        e.insert(Listed::Once(obj.clone()));
                    }
                    Entry::Occupied(mut e) => {
                        e.insert(Listed::Twice);
                        twice.insert(name.to_owned());
                    }
                }
            }
        }
        twice
    }

    pub(crate) fn tool(&self, name: &str) -> Option<Listed> {
        crate::lock(&self.tools).get(name).cloned()
    }

    /// Lists every tool of the server (all pages) and remembers them.
    pub(crate) async fn refresh_tools(self: &Arc<Self>) -> Result<(), Value> {
        let mut cursor: Option<Value> = None;
        for page in 0..MAX_TOOL_PAGES {
            let params = cursor.take().map(|c| json!({"cursor": c}));
            let answer = self
                .call("tools/list", params, None)
                .await
                .map_err(|e| json!({"code": jsonrpc::UPSTREAM_UNAVAILABLE, "message": e}))?
                .response()
                .await;
            let Some(result) = answer.get("result") else {
                return Err(answer.get("error").cloned().unwrap_or(answer));
            };
            let tools = result
                .get("tools")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let twice = self.remember_tools(&tools, page == 0);
            if !twice.is_empty() {
                tracing::warn!(gate = %self.gate, tools = ?twice, "the server lists tools more than once; their calls are refused");
            }
            match result.get("nextCursor") {
                Some(c) if !c.is_null() => cursor = Some(c.clone()),
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.close("the session ended");
    }
}

/// Routes what the server sends: answers and progress to the requests that wait for them,
/// everything else to `unsolicited`. A message that is not JSON-RPC ends the connection.
async fn dispatch_loop(
    upstream: Weak<Upstream>,
    mut inbound: mpsc::Receiver<Inbound>,
    unsolicited: mpsc::Sender<Value>,
) {
    while let Some(item) = inbound.recv().await {
        let Some(up) = upstream.upgrade() else {
            return;
        };
        let value = match item {
            Ok(v) => v,
            Err(why) => {
                up.close(&why);
                return;
            }
        };
        let forward = match jsonrpc::classify(value) {
            Ok(Message::Response { id, message }) => {
                if let Some(id) = id.as_i64() {
                    up.route(id, message);
                }
                None
            }
            Ok(Message::Notification { method, params }) => {
                let token = params
                    .as_ref()
                    .and_then(|p| p.get("progressToken"))
                    .and_then(Value::as_i64);
                match (method.as_str(), token) {
                    ("notifications/progress", Some(token)) => {
                        up.route(token, jsonrpc::notification(&method, params));
                        None
                    }
                    _ => {
                        if method == "notifications/tools/list_changed" {
                            crate::lock(&up.tools).clear();
                        }
                        Some(jsonrpc::notification(&method, params))
                    }
                }
            }
            Ok(Message::Request { id, method, params }) => {
                Some(jsonrpc::request(&id, &method, params))
            }
            Err(refusal) => {
                up.close(&format!(
                    "the upstream server sent a message that is not valid JSON-RPC ({})",
                    refusal.message
                ));
                return;
            }
        };
        if let Some(message) = forward
            && unsolicited.try_send(message).is_err()
        {
            tracing::warn!(gate = %up.gate, "dropped a message from the upstream server: nobody is reading");
        }
    }
}
