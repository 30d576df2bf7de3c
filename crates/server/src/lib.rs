//! The HTTP API of the gateway: `/v1` (attempts, requests, votes, grants, audit, policies, MCP
//! tool pins), the reviewer channels' callbacks (`/v1/channels/slack/interactions`),
//! `/v1/openapi.json`, and the operational endpoints `/healthz`, `/readyz` and `/metrics`.
//!
//! Handlers are thin: they authenticate the caller, check the caller's role for the route,
//! translate JSON to domain types and back, and leave every decision to the engine.

mod auth;
pub mod channels;
mod error;
mod extract;
mod metrics;
mod openapi;
mod routes;
mod views;

pub use auth::{Caller, ConfiguredPrincipal};
pub use error::ApiError;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use countersign_engine::Engine;
use countersign_policy::{LoadedPolicies, PolicyLoadError};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

/// Produces a fresh policy set from wherever the gateway's policies live (a directory, or the
/// embedded examples), for reloads.
pub type PolicySource = Arc<dyn Fn() -> Result<LoadedPolicies, PolicyLoadError> + Send + Sync>;

/// What the API needs to know beyond the engine.
#[derive(Clone)]
pub struct ServerConfig {
    pub principals: Vec<ConfiguredPrincipal>,
    /// Members may read the whole audit log and every request.
    pub auditor_groups: BTreeSet<String>,
    /// Members may revoke grants, cancel any request and reload policies.
    pub admin_groups: BTreeSet<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    pub policy_source: PolicySource,
    /// Slack workspaces whose interaction callbacks this gateway takes.
    pub slack: Vec<Arc<countersign_notify::slack::Slack>>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("principals", &self.principals.len())
            .field("auditor_groups", &self.auditor_groups)
            .field("admin_groups", &self.admin_groups)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("slack", &self.slack.len())
            .finish_non_exhaustive()
    }
}

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub engine: Engine,
    pub config: Arc<ServerConfig>,
    metrics: metrics::Metrics,
}

/// The gateway's HTTP routes.
pub fn router(engine: Engine, config: ServerConfig) -> Router {
    let max_body = config.max_body_bytes;
    let state = ApiState {
        engine,
        config: Arc::new(config),
        metrics: metrics::Metrics::install(),
    };
    Router::new()
        .route("/v1/attempts", post(routes::attempts::create))
        .route("/v1/executions", post(routes::executions::create))
        .route("/v1/requests", get(routes::requests::list))
        .route("/v1/requests/{id}", get(routes::requests::show))
        .route("/v1/requests/{id}/votes", post(routes::requests::vote))
        .route("/v1/requests/{id}/cancel", post(routes::requests::cancel))
        .route("/v1/grants", get(routes::grants::list))
        .route("/v1/grants/{id}/revoke", post(routes::grants::revoke))
        .route("/v1/audit", get(routes::audit::list))
        .route("/v1/audit/checkpoint", get(routes::audit::checkpoint))
        .route("/v1/audit/proof/{seq}", get(routes::audit::proof))
        .route("/v1/audit/consistency", get(routes::audit::consistency))
        .route("/v1/audit/public-key", get(routes::audit::public_key))
        .route("/v1/audit/rotate-key", post(routes::audit::rotate_key))
        .route("/v1/policies", get(routes::policies::show))
        .route("/v1/policies/reload", post(routes::policies::reload))
        .route(
            "/v1/channels/slack/interactions",
            post(routes::slack::interactions),
        )
        .route("/v1/mcp/tools", get(routes::mcp::list))
        .route("/v1/mcp/tools/accept", post(routes::mcp::accept))
        .route("/v1/whoami", get(routes::ops::whoami))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Reloads the policies from `source` through `engine`; what SIGHUP and the reload route share.
pub async fn reload_policies(
    engine: &Engine,
    source: &PolicySource,
) -> Result<Arc<LoadedPolicies>, countersign_engine::ReloadError> {
    let loaded = source();
    engine.reload(loaded).await
}
