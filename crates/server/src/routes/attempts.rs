//! `POST /v1/attempts`: ask whether an action may run.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::{ApiState, metrics, views};
use axum::Json;
use axum::extract::State;
use countersign_core::attempt::MAX_NAME_LEN;
use countersign_core::{Action, Attempt, Resource};
use countersign_engine::CheckOutcome;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const MAX_RESOURCES: usize = 64;
const MAX_JUSTIFICATION: usize = 4096;
const MAX_CONTEXT_ENTRIES: usize = 32;
/// Deepest nesting of arrays and objects accepted in a payload. Stored requests wrap the
/// payload in a few more levels, and everything must stay well inside what JSON readers
/// accept (128 for serde_json), or a request could be written that can never be read back.
const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deeply `value` nests arrays and objects (a scalar is 0).
fn depth(value: &Value) -> usize {
    // Iterative, so a hostile payload cannot exhaust the stack here either.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptBody {
    action: String,
    #[serde(default)]
    resource: Option<Resource>,
    /// Several resources at once (a statement touching several tables); instead of `resource`.
    #[serde(default)]
    resources: Option<Vec<Resource>>,
    payload: Value,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    on_behalf_of: Option<String>,
    #[serde(default)]
    context: BTreeMap<String, String>,
}

pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<AttemptBody>,
) -> ApiResult<Json<Value>> {
    let started = std::time::Instant::now();
    let attempt = validate(&state, &caller, body)?;
    let outcome = state.engine.check(&caller.principal, attempt, "api").await;
    metrics::decision(outcome.label(), started.elapsed().as_secs_f64());
    Ok(Json(match outcome {
        CheckOutcome::Allow {
            reason,
            policy_ids,
            grant_id,
            ..
        } => {
            json!({"outcome": "allow", "reason": reason, "policy_ids": policy_ids, "grant_id": grant_id})
        }
        CheckOutcome::Deny { reason, policy_ids } => {
            json!({"outcome": "deny", "reason": reason, "policy_ids": policy_ids})
        }
        CheckOutcome::Pending {
            request,
            review_url,
            reason,
        } => json!({
            "outcome": "pending",
            "request_id": request.id,
            "reason": reason,
            "policy_ids": request.policy_ids,
            "review_url": review_url,
            "expires_at": views::time(request.expires_at),
        }),
    }))
}

fn validate(state: &ApiState, caller: &Caller, body: AttemptBody) -> ApiResult<Attempt> {
    let policies = state.engine.policies();
    let action = Action::parse(&body.action)
        .map_err(|e| ApiError::bad_request("invalid_action", e.to_string()))?;
    if !policies.is_known_action(action.as_str()) {
        return Err(ApiError::bad_request(
            "unknown_action",
            format!(
                "unknown action `{action}`; known actions: {}",
                policies
                    .actions()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let resources = match (body.resource, body.resources) {
        (Some(r), None) => vec![r],
        (None, Some(rs)) if !rs.is_empty() => rs,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "`resources` is empty",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "missing field `resource`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give either `resource` or `resources`, not both",
            ));
        }
    };
    if resources.len() > MAX_RESOURCES {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("at most {MAX_RESOURCES} resources per attempt"),
        ));
    }
    for r in &resources {
        let refs =
            std::iter::once((&r.kind, &r.id)).chain(r.parent.as_ref().map(|p| (&p.kind, &p.id)));
        for (kind, id) in refs {
            if !policies.is_known_resource_type(kind) {
                return Err(ApiError::bad_request(
                    "unknown_resource_type",
                    format!(
                        "unknown resource type `{kind}`; known types: {}",
                        policies
                            .resource_types()
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if id.is_empty() || id.len() > MAX_NAME_LEN {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("resource id must be 1 to {MAX_NAME_LEN} bytes"),
                ));
            }
        }
    }
    if body
        .justification
        .as_ref()
        .is_some_and(|j| j.len() > MAX_JUSTIFICATION)
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("justification is longer than {MAX_JUSTIFICATION} bytes"),
        ));
    }
    if depth(&body.payload) > MAX_PAYLOAD_DEPTH {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
        ));
    }
    if body.context.len() > MAX_CONTEXT_ENTRIES {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("at most {MAX_CONTEXT_ENTRIES} context entries"),
        ));
    }
    let on_behalf_of = body.on_behalf_of.map(|u| u.trim().to_owned());
    if on_behalf_of.as_ref().is_some_and(|u| {
        u.is_empty()
            || u.len() > MAX_NAME_LEN
            || u.chars().any(|c| c.is_whitespace() || c.is_control())
    }) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("on_behalf_of must be a user id of 1 to {MAX_NAME_LEN} bytes without spaces"),
        ));
    }
    Ok(Attempt {
        principal: caller.principal.reference(),
        on_behalf_of,
        action,
        resources,
        payload: body.payload,
        justification: body.justification.filter(|j| !j.trim().is_empty()),
        context: body.context,
    })
}
