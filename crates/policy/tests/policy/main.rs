//! Integration tests of countersign-policy: loading, evaluation, schema extensions and the
//! example policies. One test binary, so the slow-to-link Cedar crate is linked once.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod differential;
mod evaluate;
mod examples;
mod extension;
mod load;
