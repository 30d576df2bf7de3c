//! Policy for countersign: the Cedar schema it ships, loading and validating a policy
//! directory, and evaluating an attempt into a [`countersign_core::PolicyOutcome`].
//!
//! ```no_run
//! # use countersign_policy::LoadedPolicies;
//! let policies = LoadedPolicies::load_dir("/etc/countersign/policies")?;
//! println!("policy version {} ({} policies)", policies.version(), policies.policy_count());
//! # Ok::<(), countersign_policy::PolicyLoadError>(())
//! ```
//!
//! - [`schema`]: the built-in vocabulary and how attempts fill entities and context;
//! - [`load`]: files, `@id`s, the version hash;
//! - [`annotations`]: `@approval`, `@quorum`, `@grant`, `@timeout`;
//! - [`eval`]: the decision for one attempt, and how it is kept fast;
//! - `memo`: outcomes remembered per policy set, for attempts evaluation cannot tell apart;
//! - [`examples`]: the embedded example policies of the development default.

pub mod annotations;
pub mod error;
pub mod eval;
pub mod examples;
pub mod load;
mod memo;
pub mod schema;

pub use error::{PolicyLoadError, Position, Problem, ProblemKind};
pub use examples::EXAMPLE_POLICIES;
pub use load::{LoadedPolicies, PolicyEffect, PolicyInfo};
pub use schema::BUILTIN_SCHEMA;
