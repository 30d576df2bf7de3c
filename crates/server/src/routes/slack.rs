//! `POST /v1/channels/slack/interactions`: Slack's callback for clicks on review messages and
//! for the deny-reason modal.
//!
//! The request is verified (signature, age, workspace) and parsed before anything else; then
//! it is answered at once (Slack wants an answer within three seconds) and the work happens
//! after: the clicking user is mapped to a principal from what Slack reports, and the click
//! becomes [`countersign_engine::Engine::vote`] like any API vote, channel `slack`. A refused
//! click is explained to that user alone. Slack's repeated deliveries of one interaction (and
//! replays of a signed body) are recognised and do nothing.

use crate::ApiState;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_core::{Decision, Principal, same_person};
use countersign_notify::slack::interaction::{Click, Interaction};
use countersign_notify::slack::{Refusal, Slack};
use std::sync::Arc;

pub async fn interactions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (timestamp, signature) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    );
    let now = countersign_notify::unix_now();
    let mut refusal = None;
    let mut accepted = None;
    for slack in &state.config.slack {
        match slack.accept(timestamp, signature, &body, now) {
            Ok(interaction) => {
                accepted = Some((slack.clone(), interaction));
                break;
            }
            // Perhaps signed for another configured workspace: try the next secret.
            Err(Refusal::Signature(e)) => {
                refusal.get_or_insert(Refusal::Signature(e));
            }
            // Signed for this workspace: its verdict stands.
            Err(other) => {
                refusal = Some(other);
                break;
            }
        }
    }
    let Some((slack, interaction)) = accepted else {
        let error = match refusal {
            None => ApiError::not_found("no Slack channel is configured"),
            Some(r @ Refusal::Signature(_)) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", r.to_string())
            }
            Some(r @ Refusal::Payload(_)) => {
                ApiError::bad_request("invalid_payload", r.to_string())
            }
            Some(r @ Refusal::WrongWorkspace { .. }) => {
                ApiError::new(StatusCode::FORBIDDEN, "wrong_workspace", r.to_string())
            }
        };
        tracing::warn!(code = error.code, message = %error.message, "Slack interaction refused");
        crate::metrics::slack_interaction(error.code);
        return error.into_response();
    };
    if !slack.first_delivery(&interaction) {
        crate::metrics::slack_interaction("repeated");
        return StatusCode::OK.into_response();
    }
    crate::metrics::slack_interaction("accepted");
    tokio::spawn(act(state, slack, interaction));
    StatusCode::OK.into_response()
}

/// Does what an accepted interaction asks, explaining any refusal to the clicking user.
async fn act(state: ApiState, slack: Arc<Slack>, interaction: Interaction) {
    let response_url = match &interaction {
        Interaction::Click(c) => Some(c.response_url.clone()),
        Interaction::Reason(r) => r.response_url.clone(),
    };
    if let Err(why) = decide(&state, &slack, interaction).await {
        tracing::info!(reason = %why, "Slack vote refused");
        match response_url {
            Some(url) => {
                if let Err(e) = slack.explain(&url, &why).await {
                    tracing::warn!(error = %e, "cannot explain a refused click");
                }
            }
            None => tracing::warn!("a refused modal submission carried no response URL"),
        }
    }
}

/// The vote the interaction stands for; `Err` is what to tell the user.
async fn decide(state: &ApiState, slack: &Slack, interaction: Interaction) -> Result<(), String> {
    let voter = principal_of(state, slack, &interaction.by().user_id).await?;
    let (request_id, decision, reason) = match interaction {
        Interaction::Click(click) if click.decision == Decision::Deny => {
            if ask_reason(state, slack, &voter, &click).await? {
                return Ok(());
            }
            (click.request_id, Decision::Deny, None)
        }
        Interaction::Click(click) => (click.request_id, click.decision, None),
        Interaction::Reason(r) => (r.request_id, Decision::Deny, Some(r.reason)),
    };
    state
        .engine
        .vote(&voter, &request_id, decision, reason, "slack")
        .await
        .map(drop)
        .map_err(|e| format!("Your vote was not recorded: {e}."))
}

/// Opens the reason modal when policy wants a reason for a deny and the user could vote;
/// returns whether it did (the deny then comes with the modal's submission).
async fn ask_reason(
    state: &ApiState,
    slack: &Slack,
    voter: &Principal,
    click: &Click,
) -> Result<bool, String> {
    let request = state
        .engine
        .request(&click.request_id)
        .await
        .map_err(|e| format!("Your vote was not recorded: {e}."))?;
    if !request.requirements.deny_reason_required {
        return Ok(false);
    }
    request
        .may_vote(voter, countersign_engine::now())
        .map_err(|e| format!("Your vote was not recorded: {e}."))?;
    slack
        .ask_reason(&click.trigger_id, &click.request_id, &click.response_url)
        .await
        .map_err(|e| format!("A deny needs a reason, and the form for it could not be opened ({e}); deny from the console or the CLI."))?;
    Ok(true)
}

/// The configured principal the Slack user is, by the mapping or the address Slack reports.
async fn principal_of(state: &ApiState, slack: &Slack, user_id: &str) -> Result<Principal, String> {
    let id = slack
        .identify(user_id)
        .await
        .map_err(|e| format!("Your vote was not recorded: {e}."))?;
    state
        .config
        .principals
        .iter()
        .map(|c| &c.principal)
        .find(|p| same_person(&p.id, &id))
        .cloned()
        .ok_or_else(|| format!("Your vote was not recorded: {id} is not a countersign reviewer."))
}
