//! Reviewer channels: where people learn about approval requests and decide on them.
//!
//! - [`slack`]: review messages with Approve / Deny buttons (Block Kit), verified interaction
//!   callbacks, identities from what Slack reports, modals for reasons, updates after
//!   settlement, direct messages to reviewers and requesters.
//! - [`webhook`]: every request event POSTed as JSON, signed per Standard Webhooks.
//! - [`dispatch`]: turns the engine's committed notices into deliveries, queued and retried.
//!
//! This crate never decides anything and never reads the store: a click becomes a vote only
//! through the engine (the server's callback route does that), and what a channel keeps
//! (message references, delivery attempts) goes through [`ChannelState`], which the gateway
//! implements on the engine's writer.

pub mod directory;
pub mod dispatch;
pub mod render;
pub mod retry;
pub mod secret;
pub mod slack;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

pub use directory::Directory;
pub use dispatch::{ChannelState, Dispatcher};
pub use retry::Backoff;
pub use secret::Secret;

/// Installs ring, the one TLS crypto provider of the build, as the process default. With this
/// crate in a build, `reqwest` speaks HTTPS through rustls without a provider of its own, so
/// every `reqwest::Client` of the process (this crate's, the CLI's, tests') needs this called
/// first, or building the client panics. Idempotent.
pub fn install_crypto_provider() {
    // Already installed (by this or another part of the process) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP(S) client with `timeout` per request.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
}

/// Takes a lock; every critical section here is one map or list operation, so a lock poisoned
/// by a panic elsewhere still holds consistent data.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Now, in milliseconds, for the records channels keep.
pub(crate) fn now() -> countersign_core::Timestamp {
    countersign_core::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// Seconds since the Unix epoch, as Slack and Standard Webhooks count them.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
