//! `/v1/mcp/tools`: the MCP tool definitions the gates pinned, and accepting a changed one
//! (administrators), which unblocks its calls.

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use axum::Json;
use axum::extract::State;
use countersign_core::{KnownTool, ToolFingerprint};
use serde::Deserialize;
use serde_json::{Value, json};

fn view(tool: &KnownTool) -> Value {
    json!({
        "gate": tool.gate,
        "tool": tool.tool,
        "status": if tool.changed.is_some() { "changed" } else { "pinned" },
        "fingerprint": tool.accepted.fingerprint.to_hex(),
        "definition": tool.accepted.definition,
        "changed_fingerprint": tool.changed.as_ref().map(|c| c.fingerprint.to_hex()),
        "changed_definition": tool.changed.as_ref().map(|c| c.definition.clone()),
        "first_seen": tool.first_seen.to_rfc3339(),
        "updated_at": tool.updated_at.to_rfc3339(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    gate: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> ApiResult<Json<Value>> {
    if !caller.is_admin && !caller.is_auditor {
        return Err(ApiError::forbidden(
            "only administrators and auditors may list pinned MCP tools",
        ));
    }
    let tools: Vec<Value> = state
        .engine
        .known_tools(q.gate.as_deref())
        .iter()
        .map(view)
        .collect();
    Ok(Json(json!({"tools": tools})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    gate: String,
    tool: String,
    /// The changed definition's fingerprint, as reviewed: accepting is bound to it.
    fingerprint: ToolFingerprint,
}

pub async fn accept(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<AcceptBody>,
) -> ApiResult<Json<Value>> {
    if !caller.is_admin {
        return Err(ApiError::forbidden(
            "only administrators may accept changed MCP tools",
        ));
    }
    let tool = state
        .engine
        .accept_tool(&caller.principal, &body.gate, &body.tool, body.fingerprint)
        .await?;
    Ok(Json(view(&tool)))
}
