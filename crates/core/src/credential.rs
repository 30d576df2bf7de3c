//! Principals as the configuration knows them: who they are and the SHA-256 of their token.
//!
//! Tokens are never stored: the configuration holds their SHA-256, and an incoming token is
//! hashed and compared against every principal's hash in constant time, so neither the match
//! nor its position leaks through timing. The HTTP API and every gate authenticate through
//! [`authenticate`].

use crate::principal::Principal;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A principal that may authenticate with a bearer token.
#[derive(Clone, Debug)]
pub struct ConfiguredPrincipal {
    pub principal: Principal,
    pub token_sha256: [u8; 32],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrincipalKind;

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
