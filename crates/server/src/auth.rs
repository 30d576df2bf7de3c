//! Bearer-token authentication against the configured principals, and the roles that decide
//! who may do what.
//!
//! Tokens are matched by `countersign_core::authenticate`, which every gate shares.

use crate::ApiState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use countersign_core::ConfiguredPrincipal;
use countersign_core::{Principal, authenticate};
use std::collections::BTreeSet;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub is_admin: bool,
    pub is_auditor: bool,
}

fn in_any(principal: &Principal, groups: &BTreeSet<String>) -> bool {
    principal.groups.iter().any(|g| groups.contains(g))
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthenticated("missing `Authorization: Bearer <token>` header")
            })?;
        let text = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("Authorization header is not valid text"))?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated("Authorization header must be `Bearer <token>`")
            })?;
        let configured = authenticate(&state.config.principals, token)
            .ok_or_else(|| ApiError::unauthenticated("unknown or revoked token"))?;
        let principal = configured.principal.clone();
        Ok(Caller {
            is_admin: in_any(&principal, &state.config.admin_groups),
            is_auditor: in_any(&principal, &state.config.auditor_groups),
            principal,
        })
    }
}
