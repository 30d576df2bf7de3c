//! Route handlers, one module per resource of the API.

pub mod attempts;
pub mod audit;
pub mod executions;
pub mod grants;
pub mod mcp;
pub mod ops;
pub mod policies;
pub mod requests;
pub mod slack;
