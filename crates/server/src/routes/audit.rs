//! `/v1/audit`: the audit log, for auditors.

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

fn require_auditor(caller: &Caller) -> ApiResult<()> {
    if caller.is_auditor {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only members of the auditor groups may read the audit log",
        ))
    }
}

/// Records from `from` (default 0), oldest first, with their chain hashes.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<Value>> {
    require_auditor(&caller)?;
    let limit = params.limit.unwrap_or(1000).clamp(1, 10_000);
    let records = state
        .engine
        .audit_records(params.from.unwrap_or(0), limit)
        .await?;
    let next = records.last().map(|r| r.seq + 1);
    let events: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "event": serde_json::from_str::<Value>(&r.event_json).unwrap_or(Value::Null),
                "prev_hash": hex::encode(r.prev_hash),
                "hash": hex::encode(r.hash),
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// The head of the hash chain: how many records there are and the last record's hash.
pub async fn checkpoint(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    require_auditor(&caller)?;
    let head = state.engine.audit_head().await?;
    Ok(Json(json!({
        "size": head.next_seq,
        "head_hash": hex::encode(head.hash),
    })))
}
