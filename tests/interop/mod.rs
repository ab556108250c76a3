//! Helpers of the interop matrix (tests/interop_matrix.rs).

pub mod charon;
pub mod lab;
pub mod pki;
pub mod report;
pub mod traffic;
