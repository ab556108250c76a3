//! The OS boundary of esprit: TUN devices, UDP sockets, routes and batched IO.
//!
//! Empty until the daemon lands (see ARCHITECTURE.md); `esp` and `ike` never depend on it.
