//! Helpers of the libreswan interop tests (tests/libreswan_interop.rs): pluto as a peer
//! ([`pluto`]) and one case run against it ([`case`]).

// `pub` for tests/libreswan_interop.rs (the workspace lints flag `pub` in a test crate).
#![allow(unreachable_pub)]

pub mod case;
pub mod pluto;
