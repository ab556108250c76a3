//! The esprit runtime: configuration, tasks and the control socket, wiring `ike`, `esp`
//! and `tun-io` together.
//!
//! Empty until the daemon lands (see ARCHITECTURE.md).
