//! The esprit runtime: configuration, the daemon's tasks and threads, and the control
//! socket, wiring `ike`, `esp` and `tun-io` together.

pub mod config;
pub mod control;
pub mod daemon;
mod dataplane;
pub mod import;
pub mod install;
pub mod metrics;
pub mod netstack;
pub mod status;

pub use dataplane::{InStats, OutStats};
