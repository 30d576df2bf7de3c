//! `POST /v1/executions`: how an approved action went when it ran, for the audit log.

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

const MAX_DETAIL: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionBody {
    /// The grant the attempt was allowed by.
    grant_id: String,
    /// `succeeded` or `failed`.
    outcome: String,
    /// Exit status, command tag, error text.
    #[serde(default)]
    detail: Option<String>,
}

pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<ExecutionBody>,
) -> ApiResult<Json<Value>> {
    let succeeded = match body.outcome.as_str() {
        "succeeded" => true,
        "failed" => false,
        other => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("outcome must be `succeeded` or `failed`, not `{other}`"),
            ));
        }
    };
    if body.detail.as_ref().is_some_and(|d| d.len() > MAX_DETAIL) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("detail is longer than {MAX_DETAIL} bytes"),
        ));
    }
    state
        .engine
        .record_execution(&caller.principal, &body.grant_id, succeeded, body.detail)
        .await?;
    Ok(Json(json!({"recorded": true})))
}
