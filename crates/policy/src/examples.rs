//! The example policies of `examples/policies`, embedded: the policy set of the no-config
//! development default (`countersign serve` without `--config`).

use crate::{LoadedPolicies, PolicyLoadError};

/// `(file name, content)` of every example policy file.
pub const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    (
        "approvals.cedar",
        include_str!("../../../examples/policies/approvals.cedar"),
    ),
    (
        "forbids.cedar",
        include_str!("../../../examples/policies/forbids.cedar"),
    ),
    (
        "mcp-tools.cedar",
        include_str!("../../../examples/policies/mcp-tools.cedar"),
    ),
    (
        "reads-and-writes.cedar",
        include_str!("../../../examples/policies/reads-and-writes.cedar"),
    ),
];

impl LoadedPolicies {
    /// The embedded example policies, loaded and validated like any directory.
    pub fn examples() -> Result<LoadedPolicies, PolicyLoadError> {
        LoadedPolicies::from_sources(EXAMPLE_POLICIES)
    }
}
