//! `/v1/requests`: list, read (with long-poll), vote on and cancel approval requests.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{ApiState, metrics, views};
use axum::Json;
use axum::extract::{Path, State};
use countersign_core::{ApprovalRequest, Decision, RequestStatus};
use countersign_engine::RequestFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest long-poll a client may ask for; proxies commonly cut idle connections after this.
const MAX_WAIT_SECONDS: u64 = 120;
const MAX_REASON: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    status: Option<String>,
    /// Only requests settled by a break-glass approval (`true`), or only the others.
    #[serde(default)]
    break_glass: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Whether `caller` may see `request`: its requester, an eligible reviewer, an auditor or an
/// administrator.
fn may_see(caller: &Caller, request: &ApprovalRequest) -> bool {
    caller.is_admin
        || caller.is_auditor
        || request.attempt.is_requester(&caller.principal.reference())
        || caller.principal.in_any(&request.eligible_groups())
}

/// Fails with `not_found`, exactly as for a request that does not exist, unless `caller` may
/// see request `id`.
async fn visible(state: &ApiState, caller: &Caller, id: &str) -> ApiResult<()> {
    let request = state.engine.request(id).await?;
    if may_see(caller, &request) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("request `{id}` not found")))
    }
}

async fn render(state: &ApiState, request: &ApprovalRequest) -> ApiResult<Value> {
    let grant = if request.status == RequestStatus::Approved {
        state.engine.grant_for_request(&request.id).await?
    } else {
        None
    };
    Ok(views::request(
        request,
        &state.engine.review_url(&request.id),
        grant.as_ref(),
    ))
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> ApiResult<Json<Value>> {
    let status = match params.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(RequestStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                format!(
                    "unknown status `{s}`; use pending, approved, denied, expired, cancelled or all"
                ),
            )
        })?),
    };
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let base = RequestFilter {
        status,
        break_glass: params.break_glass,
        limit,
        ..RequestFilter::default()
    };
    let mut requests = if caller.is_admin || caller.is_auditor {
        state.engine.requests(&base).await?
    } else {
        let mut mine = state
            .engine
            .requests(&RequestFilter {
                requester: Some(caller.principal.reference()),
                ..base.clone()
            })
            .await?;
        let reviewable = state
            .engine
            .requests(&RequestFilter {
                reviewable_by: Some(caller.principal.groups.iter().cloned().collect()),
                ..base
            })
            .await?;
        for r in reviewable {
            if !mine.iter().any(|m| m.id == r.id) {
                mine.push(r);
            }
        }
        mine.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        mine.truncate(limit as usize);
        mine
    };
    requests.retain(|r| may_see(&caller, r));
    let mut items = Vec::with_capacity(requests.len());
    for r in &requests {
        items.push(render(&state, r).await?);
    }
    Ok(Json(json!({ "requests": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    /// Seconds to wait for the request to settle before answering.
    #[serde(default)]
    wait: Option<u64>,
}

pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(params): Params<ShowParams>,
) -> ApiResult<Json<Value>> {
    let request = state.engine.request(&id).await?;
    if !may_see(&caller, &request) {
        // As for a request that does not exist: outsiders learn nothing, not even that.
        return Err(ApiError::not_found(format!("request `{id}` not found")));
    }
    let wait = params.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("wait is at most {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    let request = if wait > 0 && !request.status.is_settled() {
        state.engine.wait(&id, Duration::from_secs(wait)).await?
    } else {
        request
    };
    Ok(Json(render(&state, &request).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    /// The requester's own approval under a break-glass policy.
    #[serde(default)]
    break_glass: bool,
}

pub async fn vote(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<VoteBody>,
) -> ApiResult<Json<Value>> {
    let decision = Decision::parse(&body.decision).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "decision must be `approve` or `deny`, not `{}`",
                body.decision
            ),
        )
    })?;
    // Someone who may not even read the request learns nothing from voting on it.
    visible(&state, &caller, &id).await?;
    let reason = body.reason.filter(|r| !r.trim().is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("reason is longer than {MAX_REASON} bytes"),
        ));
    }
    let voted = if body.break_glass {
        if decision != Decision::Approve {
            return Err(ApiError::bad_request(
                "invalid_request",
                "break_glass goes with `approve`; to withdraw a request, cancel it",
            ));
        }
        // The engine checks the reason's length with every other break-glass rule.
        state
            .engine
            .break_glass(&caller.principal, &id, reason.unwrap_or_default(), "api")
            .await
    } else {
        state
            .engine
            .vote(&caller.principal, &id, decision, reason, "api")
            .await
    };
    match voted {
        Ok(request) => {
            metrics::vote("recorded");
            Ok(Json(render(&state, &request).await?))
        }
        Err(e) => {
            metrics::vote("refused");
            Err(e.into())
        }
    }
}

pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &caller, &id).await?;
    let request = state
        .engine
        .cancel(&caller.principal, &id, caller.is_admin)
        .await?;
    Ok(Json(render(&state, &request).await?))
}
