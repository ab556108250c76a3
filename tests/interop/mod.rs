//! Helpers of the interop matrix (tests/interop_matrix.rs).

// `pub` for tests/interop_matrix.rs (the workspace lints flag `pub` in a test crate).
#![allow(unreachable_pub)]

pub mod charon;
pub mod lab;
pub mod pki;
pub mod report;
pub mod traffic;
