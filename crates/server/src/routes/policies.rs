//! `/v1/policies`: the policy set in force, and reloading it.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::{ApiState, reload_policies};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_engine::ReloadError;
use countersign_policy::LoadedPolicies;
use serde_json::{Value, json};

fn describe(p: &LoadedPolicies) -> Value {
    json!({
        "version": p.version(),
        "files": p.files(),
        "policy_count": p.policy_count(),
        "policy_ids": p.policies().map(|i| i.id.clone()).collect::<Vec<_>>(),
        "actions": p.actions(),
        "resource_types": p.resource_types(),
    })
}

pub async fn show(State(state): State<ApiState>, _caller: Caller) -> Json<Value> {
    Json(describe(&state.engine.policies()))
}

pub async fn reload(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    if !caller.is_admin {
        return Err(ApiError::forbidden(
            "only administrators may reload policies",
        ));
    }
    match reload_policies(&state.engine, &state.config.policy_source).await {
        Ok(p) => Ok(Json(describe(&p))),
        Err(ReloadError::Refused(e)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("policy set refused; the previous set stays in force: {e}"),
        )),
        Err(ReloadError::Engine(e)) => Err(e.into()),
    }
}
