//! What the gate does with tools: `tools/call` becomes an attempt (allowed calls are forwarded,
//! denied ones answered with a tool error the model can read, held ones wait for reviewers
//! with progress notifications), and `tools/list` pins every definition and leaves out what
//! this principal may never call or what changed since it was pinned.

use crate::session::{Ctx, forward};
use crate::upstream::Listed;
use crate::{jsonrpc, protocol};
use countersign_core::{
    Action, Attempt, PinnedDefinition, PolicyOutcome, RequestStatus, ToolStanding, tool_definition,
};
use countersign_engine::{ActionOutcome, CheckOutcome, Engine, tool_resource};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a held call tells the client it is still waiting.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The MCP tool annotations policies see, as `Tool` attributes.
const HINTS: &[&str] = &[
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

/// The attempt a call of `tool` with `arguments` is.
fn attempt(ctx: &Ctx<'_>, tool: &Map<String, Value>, name: &str, arguments: Value) -> Attempt {
    let gate = &ctx.gate.config.name;
    let mut resource = tool_resource(gate, name);
    if let Some(annotations) = tool.get("annotations").and_then(Value::as_object) {
        for hint in HINTS {
            if let Some(b) = annotations.get(*hint).and_then(Value::as_bool) {
                resource.tags.insert(format!("{hint}={b}"));
            }
        }
    }
    let mut context = BTreeMap::new();
    context.insert("gate".to_owned(), gate.clone());
    if !ctx.peer.is_empty() {
        context.insert("source".to_owned(), ctx.peer.clone());
    }
    Attempt {
        principal: ctx.session.principal.reference(),
        on_behalf_of: None,
        action: Action::parse("mcp.call").expect("mcp.call is a built-in action"),
        resources: vec![resource],
        payload: json!({"name": name, "arguments": arguments}),
        justification: None,
        context,
    }
}

/// A tool result the model reads as a failure, with `text` saying why.
fn tool_error(id: &Value, text: &str) -> Value {
    jsonrpc::result(
        id,
        json!({"content": [{"type": "text", "text": text}], "isError": true}),
    )
}

/// Answers `tools/list` with the upstream's tools, pinned, minus those this principal may
/// never call and those whose definition changed since it was pinned.
pub(crate) async fn list_tools(ctx: &Ctx<'_>, id: &Value, params: Option<Value>) -> Value {
    let first_page = params.as_ref().and_then(|p| p.get("cursor")).is_none();
    let mut answer = forward(ctx, id, "tools/list", params).await;
    let Some(tools) = answer
        .get("result")
        .and_then(|r| r.get("tools"))
        .and_then(Value::as_array)
        .cloned()
    else {
        return answer;
    };
    let upstream = &ctx.session.upstream;
    let twice = upstream.remember_tools(&tools, first_page);
    let gate = &ctx.gate.config.name;
    if !twice.is_empty() {
        tracing::warn!(gate = %gate, tools = ?twice, "the server lists tools more than once; every copy is hidden and their calls refused");
    }
    // What is shown is exactly what is checked against the pins: these entries, not a cache.
    let entries: Vec<(String, Map<String, Value>)> = tools
        .into_iter()
        .filter_map(|t| match t {
            Value::Object(obj) => Some((obj.get("name")?.as_str()?.to_owned(), obj)),
            _ => None,
        })
        .filter(|(name, _)| !twice.contains(name))
        .collect();
    let pinned: Vec<(String, PinnedDefinition)> = entries
        .iter()
        .map(|(name, obj)| (name.clone(), PinnedDefinition::new(tool_definition(obj))))
        .collect();
    let standings = match ctx.gate.engine.observe_tools(gate, pinned).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(gate = %gate, error = %e, "tool definitions could not be recorded");
            return jsonrpc::error(
                id,
                jsonrpc::INTERNAL_ERROR,
                &format!("the gate could not record the tools' definitions, so it lists none: {e}"),
            );
        }
    };
    let mut visible = Vec::with_capacity(entries.len());
    for ((name, tool), standing) in entries.into_iter().zip(standings) {
        if let ToolStanding::Changed { accepted, seen } = standing {
            tracing::warn!(gate = %gate, tool = %name, %accepted, %seen, "tool definition changed since it was pinned; hidden and blocked until accepted");
            continue;
        }
        let probe = attempt(ctx, &tool, &name, json!({}));
        match ctx.gate.engine.evaluate(&ctx.session.principal, &probe) {
            PolicyOutcome::Forbid { .. } | PolicyOutcome::Error { .. } => continue,
            _ => visible.push(Value::Object(tool)),
        }
    }
    if let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) {
        result.insert("tools".into(), Value::Array(visible));
    }
    answer
}

/// Finds tool `name`, listing the server's tools once if the gate has not seen it.
async fn find_tool(ctx: &Ctx<'_>, name: &str) -> Result<Option<Listed>, Value> {
    let upstream = &ctx.session.upstream;
    if let Some(tool) = upstream.tool(name) {
        return Ok(Some(tool));
    }
    upstream.refresh_tools().await?;
    Ok(upstream.tool(name))
}

/// Answers `tools/call`: the call is an attempt, and only an allowed one reaches the server.
pub(crate) async fn call_tool(ctx: &Ctx<'_>, id: &Value, params: Option<Value>) -> Value {
    let Some(p) = params.as_ref().and_then(Value::as_object) else {
        return jsonrpc::error(id, jsonrpc::INVALID_PARAMS, "tools/call needs params");
    };
    let Some(name) = p.get("name").and_then(Value::as_str) else {
        return jsonrpc::error(
            id,
            jsonrpc::INVALID_PARAMS,
            "tools/call needs a string `name`",
        );
    };
    let arguments = match p.get("arguments") {
        None => Value::Null,
        Some(a) if a.is_object() => a.clone(),
        Some(_) => {
            return jsonrpc::error(id, jsonrpc::INVALID_PARAMS, "`arguments` must be an object");
        }
    };
    let token = protocol::meta(params.as_ref())
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let engine = &ctx.gate.engine;
    let gate = ctx.gate.config.name.as_str();
    let principal = &ctx.session.principal;
    let tool = match find_tool(ctx, name).await {
        Ok(Some(Listed::Once(t))) => t,
        Ok(Some(Listed::Twice)) => {
            let reason = format!(
                "the MCP server lists tool `{name}` more than once, so which definition a call would run is unknown; calls are refused"
            );
            let attempt = attempt(ctx, &Map::new(), name, arguments);
            engine
                .refuse(principal, attempt, gate, reason.clone())
                .await;
            return tool_error(id, &format!("countersign refused this tool call: {reason}"));
        }
        Ok(None) => {
            return jsonrpc::error(
                id,
                jsonrpc::INVALID_PARAMS,
                &format!("unknown tool `{name}`"),
            );
        }
        Err(e) => {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream could not list its tools");
            return jsonrpc::error(id, jsonrpc::UPSTREAM_UNAVAILABLE, message);
        }
    };
    let attempt = attempt(ctx, &tool, name, arguments);
    let pinned = PinnedDefinition::new(tool_definition(&tool));
    let standing = match engine.tool_standing(gate, name, &pinned) {
        Some(s) => Ok(s),
        None => engine
            .observe_tools(gate, vec![(name.to_owned(), pinned.clone())])
            .await
            .map(|mut s| s.pop().unwrap_or(ToolStanding::Trusted)),
    };
    match standing {
        Ok(ToolStanding::Trusted) => {}
        Ok(ToolStanding::Changed { accepted, seen }) => {
            let reason = format!(
                "tool `{name}` changed since it was approved for use (definition {seen}, pinned {accepted}); calls are refused until an administrator reviews it (`countersign mcp tools`) and accepts it with `countersign mcp accept {gate} {name} {seen}`"
            );
            engine
                .refuse(principal, attempt, gate, reason.clone())
                .await;
            return tool_error(id, &format!("countersign refused this tool call: {reason}"));
        }
        Err(e) => {
            let reason = format!("the tool's definition could not be checked ({e})");
            engine
                .refuse(principal, attempt, gate, reason.clone())
                .await;
            return tool_error(id, &format!("countersign refused this tool call: {reason}"));
        }
    }
    // An approval is spent by deciding again; a lost race for the grant holds again.
    for _ in 0..3 {
        match engine.check(principal, attempt.clone(), gate).await {
            CheckOutcome::Allow {
                grant_id, digest, ..
            } => {
                let answer = forward(ctx, id, "tools/call", params).await;
                let (succeeded, detail) = match (answer.get("result"), answer.get("error")) {
                    (Some(r), _) => {
                        let failed = r.get("isError").and_then(Value::as_bool) == Some(true);
                        (!failed, format!("tool result, isError={failed}"))
                    }
                    (_, e) => (false, format!("error: {}", e.unwrap_or(&Value::Null))),
                };
                let outcome = ActionOutcome {
                    attempt: &attempt,
                    digest: &digest,
                    grant_id: grant_id.as_deref(),
                    succeeded,
                    detail,
                };
                engine.record_outcome(principal, gate, outcome);
                return answer;
            }
            CheckOutcome::Deny { reason, .. } => {
                return tool_error(id, &format!("countersign denied this tool call: {reason}"));
            }
            CheckOutcome::Pending {
                request,
                review_url,
                ..
            } => {
                if let Some(refusal) = hold(ctx, id, &request.id, &review_url, token.as_ref()).await
                {
                    return refusal;
                }
            }
        }
    }
    tool_error(
        id,
        "countersign refused this tool call: the approval could not be used (another call took it first)",
    )
}

/// Withdraws a hold whose waiter went away (the client cancelled or disconnected).
struct HoldGuard<'a> {
    engine: &'a Engine,
    principal: &'a countersign_core::Principal,
    request_id: &'a str,
    armed: bool,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let (engine, principal, id) = (
                self.engine.clone(),
                self.principal.clone(),
                self.request_id.to_owned(),
            );
            tokio::spawn(async move {
                match engine.cancel(&principal, &id, false).await {
                    Ok(_) => {
                        tracing::info!(request = %id, "held tool call withdrawn: the client went away")
                    }
                    Err(e) => {
                        tracing::debug!(request = %id, error = %e, "withdrawing a held tool call")
                    }
                }
            });
        }
    }
}

/// Waits for request `request_id` to settle, telling the client where to review it. `None`
/// once approved (decide again to spend the grant), else the tool error to answer with.
async fn hold(
    ctx: &Ctx<'_>,
    id: &Value,
    request_id: &str,
    review_url: &str,
    token: Option<&Value>,
) -> Option<Value> {
    let engine = &ctx.gate.engine;
    let mut guard = HoldGuard {
        engine,
        principal: &ctx.session.principal,
        request_id,
        armed: true,
    };
    let started = std::time::Instant::now();
    let mut progress = 0u64;
    loop {
        if let Some(token) = token {
            progress += 1;
            let message = format!(
                "Waiting for approval ({}s): review at {review_url} (request {request_id})",
                started.elapsed().as_secs()
            );
            let note = jsonrpc::notification(
                "notifications/progress",
                Some(json!({"progressToken": token, "progress": progress, "message": message})),
            );
            let _ = ctx.out.send(note).await;
        }
        let request = match engine.wait(request_id, HEARTBEAT).await {
            Ok(r) => r,
            Err(e) => {
                guard.armed = false;
                return Some(tool_error(
                    id,
                    &format!(
                        "countersign refused this tool call: its approval request could not be followed ({e})"
                    ),
                ));
            }
        };
        let why = match request.status {
            RequestStatus::Pending => continue,
            RequestStatus::Approved => {
                guard.armed = false;
                return None;
            }
            RequestStatus::Denied => {
                let reason = request
                    .votes
                    .iter()
                    .rev()
                    .find(|v| v.decision == countersign_core::Decision::Deny)
                    .map(|v| {
                        format!(
                            "denied by {}{}",
                            v.voter.id,
                            v.reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| "denied".into());
                format!("{reason} (request {request_id})")
            }
            RequestStatus::Expired => {
                format!("the approval request {request_id} expired before anyone decided")
            }
            RequestStatus::Cancelled => format!("the approval request {request_id} was cancelled"),
        };
        guard.armed = false;
        return Some(tool_error(
            id,
            &format!("countersign denied this tool call: {why}"),
        ));
    }
}
