//! The API's error body, `{"error": {"code": "...", "message": "..."}}`, and how every failure
//! maps to a status and a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countersign_core::{CancelError, VoteError};
use countersign_engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"countersign\""),
            );
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        use StatusCode as S;
        let message = e.to_string();
        let (status, code) = match &e {
            EngineError::RequestNotFound(_)
            | EngineError::GrantNotFound(_)
            | EngineError::ToolNotFound { .. } => (S::NOT_FOUND, "not_found"),
            EngineError::ToolUnchanged { .. } => (S::CONFLICT, "tool_unchanged"),
            EngineError::ToolChangedAgain { .. } => (S::CONFLICT, "tool_changed_again"),
            EngineError::Vote(v) => match v {
                VoteError::AlreadySettled(_) => (S::CONFLICT, "already_settled"),
                VoteError::Expired => (S::CONFLICT, "expired"),
                VoteError::SelfApproval => (S::FORBIDDEN, "self_approval"),
                VoteError::NotEligible(_) => (S::FORBIDDEN, "not_eligible"),
                VoteError::DuplicateVote(_) => (S::CONFLICT, "duplicate_vote"),
                VoteError::ReasonRequired => (S::BAD_REQUEST, "reason_required"),
                VoteError::BreakGlass(_) => (S::FORBIDDEN, "break_glass_refused"),
            },
            EngineError::Cancel(c) => match c {
                CancelError::AlreadySettled(_) => (S::CONFLICT, "already_settled"),
                CancelError::NotRequester => (S::FORBIDDEN, "not_requester"),
            },
            EngineError::GrantNotActive(_) => (S::CONFLICT, "grant_not_active"),
            EngineError::NotYourGrant(_) => (S::FORBIDDEN, "forbidden"),
            EngineError::Store(_)
            | EngineError::Journal(_)
            | EngineError::NotRecorded(_)
            | EngineError::Stopped
            | EngineError::GrantLost(_) => {
                tracing::error!(error = %e, "engine failure");
                (S::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        ApiError::new(status, code, message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
