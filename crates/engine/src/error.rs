//! What can go wrong when asking the engine to do something.

use countersign_core::{CancelError, GrantStatus, VoteError};
use countersign_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("request `{0}` not found")]
    RequestNotFound(String),
    #[error("grant `{0}` not found")]
    GrantNotFound(String),
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error(transparent)]
    Cancel(#[from] CancelError),
    #[error("grant `{0}` belongs to another principal")]
    NotYourGrant(String),
    #[error("grant is already {}", .0.as_str())]
    GrantNotActive(GrantStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit journal could not be opened or read back at start-up.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The batch holding this step failed to commit and was rolled back; nothing was written.
    #[error("not recorded: {0}")]
    NotRecorded(String),
    /// The writer is gone (shutting down or crashed); nothing was written.
    #[error("the engine is not running")]
    Stopped,
    #[error("MCP gate `{gate}` has never seen a tool named `{tool}`")]
    ToolNotFound { gate: String, tool: String },
    #[error("tool `{tool}` of MCP gate `{gate}` has no changed definition to accept")]
    ToolUnchanged { gate: String, tool: String },
    /// The changed definition is no longer the one the administrator reviewed (the server
    /// switched again between review and accept); nothing was accepted.
    #[error(
        "tool `{tool}` of MCP gate `{gate}` changed again: its changed definition is now {current}, not {expected}; review it again (countersign mcp tools) and accept that one"
    )]
    ToolChangedAgain {
        gate: String,
        tool: String,
        expected: String,
        current: String,
    },
    /// A single-use grant chosen for an attempt was taken by a concurrent attempt first.
    #[error("grant `{0}` was used by a concurrent attempt")]
    GrantLost(String),
}
