//! Operational endpoints: liveness, readiness, metrics, and who the caller is.

use crate::ApiState;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and the decision writer runs.
pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    match state.engine.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": e.to_string()})),
        ),
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({
        "kind": caller.principal.kind,
        "id": caller.principal.id,
        "groups": caller.principal.groups,
        "admin": caller.is_admin,
        "auditor": caller.is_auditor,
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}
