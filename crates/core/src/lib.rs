//! The domain of countersign: who acts, what they attempt, what policy says about it, and the
//! pure rules that govern approval requests, votes and grants.
//!
//! Nothing here performs IO or reads a clock: time is always passed in as a [`Timestamp`], so
//! every rule can be tested exhaustively and every caller decides the same way.

pub mod attempt;
pub mod canonical;
pub mod credential;
pub mod decision;
pub mod digest;
pub mod grant;
pub mod notice;
pub mod principal;
pub mod request;
pub mod time;
pub mod tool;

pub use attempt::{
    Action, ActionError, Attempt, Classification, Resource, ResourceRef, person_key, same_person,
};
pub use credential::{ConfiguredPrincipal, authenticate};
pub use decision::{ApprovalRule, Escalation, PolicyOutcome, Requirements, Verdict, decide};
pub use digest::PayloadDigest;
pub use grant::{Grant, GrantScope, GrantShape, GrantStatus};
pub use notice::{ChannelMessage, DeliveryAttempt, NoticeKind, RequestNotice};
pub use principal::{Principal, PrincipalKind, PrincipalRef};
pub use request::{
    ApprovalRequest, BREAK_GLASS_MIN_REASON, CancelError, Decision, RequestStatus, Vote, VoteError,
    VoteOutcome,
};
pub use time::{Timestamp, parse_duration_ms};
pub use tool::{KnownTool, PinnedDefinition, ToolFingerprint, ToolStanding, tool_definition};
