//! The esprit runtime: configuration, tasks and the control socket, wiring `ike`, `esp`
//! and `tun-io` together.

pub mod config;
pub mod install;
