//! `/v1/audit`: the audit log, for auditors.

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use countersign_engine::EngineError;
use countersign_engine::audit_io::AuditIoError;
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
                "leaf_hash": hex::encode(r.leaf_hash),
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

fn b64(hash: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

fn proof_error(e: AuditIoError) -> ApiError {
    match e {
        AuditIoError::NotCovered { .. } | AuditIoError::NoCheckpoint => {
            ApiError::new(StatusCode::CONFLICT, "not_checkpointed", e.to_string())
        }
        AuditIoError::OutOfRange { .. } | AuditIoError::Proof(_) => {
            ApiError::bad_request("invalid_request", e.to_string())
        }
        AuditIoError::Missing(_) => ApiError::not_found(e.to_string()),
        AuditIoError::Store(s) => EngineError::Store(s).into(),
        AuditIoError::Io(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

/// The newest signed checkpoint, with the key that verifies it.
pub async fn checkpoint(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    require_auditor(&caller)?;
    let (size, note) = state
        .engine
        .latest_checkpoint()
        .await?
        .ok_or_else(|| proof_error(AuditIoError::NoCheckpoint))?;
    Ok(Json(json!({
        "origin": state.engine.audit_origin(),
        "size": size,
        "note": note,
        "verifier_key": state.engine.verifier_key().to_string(),
    })))
}

/// An inclusion proof of record `seq` against the newest checkpoint.
pub async fn proof(
    State(state): State<ApiState>,
    caller: Caller,
    Path(seq): Path<String>,
) -> ApiResult<Json<Value>> {
    require_auditor(&caller)?;
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::bad_request("invalid_request", format!("`{seq}` is not a record number"))
    })?;
    let p = state
        .engine
        .inclusion_proof(seq)
        .await
        .map_err(proof_error)?;
    Ok(Json(json!({
        "seq": p.seq,
        "tree_size": p.tree_size,
        "leaf_hash": b64(&p.leaf_hash),
        "path": p.path.iter().map(b64).collect::<Vec<_>>(),
        "event": p.event_json,
        "checkpoint": p.checkpoint,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: u64,
    #[serde(default)]
    to: Option<u64>,
}

/// A consistency proof between the trees of `from` and `to` records (`to`: the newest
/// checkpoint).
pub async fn consistency(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<ConsistencyParams>,
) -> ApiResult<Json<Value>> {
    require_auditor(&caller)?;
    let to = match params.to {
        Some(to) => to,
        None => {
            state
                .engine
                .latest_checkpoint()
                .await?
                .ok_or_else(|| proof_error(AuditIoError::NoCheckpoint))?
                .0
        }
    };
    let proof = state
        .engine
        .consistency_proof(params.from, to)
        .await
        .map_err(proof_error)?;
    Ok(Json(json!({
        "from": params.from,
        "to": to,
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    })))
}

/// The verifier key of the newest checkpoints; anyone authenticated may fetch it.
pub async fn public_key(State(state): State<ApiState>, _caller: Caller) -> Json<Value> {
    Json(json!({
        "origin": state.engine.audit_origin(),
        "verifier_key": state.engine.verifier_key().to_string(),
    }))
}

/// Rotates the audit signing key (administrators).
pub async fn rotate_key(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    if !caller.is_admin {
        return Err(ApiError::forbidden(
            "only administrators may rotate the audit key",
        ));
    }
    let verifier = state.engine.rotate_audit_key(&caller.principal).await?;
    Ok(Json(json!({ "verifier_key": verifier.to_string() })))
}
