//! `/v1/grants`: list grants and revoke them.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{OptionalJsonBody, Params};
use crate::{ApiState, views};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Administrators and auditors see every grant; everyone else their own.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<Value>> {
    let me = caller.principal.reference();
    let owner = (!caller.is_admin && !caller.is_auditor).then_some(&me);
    let grants = state
        .engine
        .grants(
            owner,
            params.active.unwrap_or(false),
            params.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(json!({
        "grants": grants.iter().map(views::grant).collect::<Vec<_>>()
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Administrators may revoke any grant; a principal may give up its own.
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<RevokeBody>,
) -> ApiResult<Json<Value>> {
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    let grant = state
        .engine
        .revoke(&caller.principal, &id, caller.is_admin, reason)
        .await?;
    Ok(Json(views::grant(&grant)))
}
