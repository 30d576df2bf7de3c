//! Bearer-token authentication against the configured principals, and the roles that decide
//! who may do what.
//!
//! Tokens are never stored: the configuration holds their SHA-256, and an incoming token is
//! hashed and compared against every principal's hash in constant time, so neither the match
//! nor its position leaks through timing.

use crate::ApiState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use countersign_core::Principal;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use subtle::ConstantTimeEq;

/// A principal that may authenticate with a bearer token.
#[derive(Clone, Debug)]
pub struct ConfiguredPrincipal {
    pub principal: Principal,
    pub token_sha256: [u8; 32],
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub is_admin: bool,
    pub is_auditor: bool,
}

/// The principal whose token hash equals SHA-256(`token`), if any.
pub fn authenticate<'a>(
    principals: &'a [ConfiguredPrincipal],
    token: &str,
) -> Option<&'a ConfiguredPrincipal> {
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for p in principals {
        if bool::from(p.token_sha256.ct_eq(&presented)) && found.is_none() {
            found = Some(p);
        }
    }
    found
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

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_core::PrincipalKind;

    fn configured(id: &str, token: &str) -> ConfiguredPrincipal {
        ConfiguredPrincipal {
            principal: Principal::new(PrincipalKind::User, id, ["g"]),
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    #[test]
    fn matches_only_the_exact_token() {
        let ps = vec![
            configured("a", "alpha-token"),
            configured("b", "beta-token"),
        ];
        assert_eq!(
            authenticate(&ps, "beta-token").map(|p| p.principal.id.as_str()),
            Some("b")
        );
        assert!(authenticate(&ps, "beta-toke").is_none());
        assert!(authenticate(&ps, "beta-token ").is_none());
        assert!(authenticate(&ps, "").is_none());
        // The hash itself is not a token.
        let hash = hex::encode(Sha256::digest(b"alpha-token"));
        assert!(authenticate(&ps, &hash).is_none());
    }
}
