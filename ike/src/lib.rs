//! IKEv2 (RFC 7296) negotiator, sans-IO: no sockets, no async runtime, no clock reads.

pub mod auth;
pub mod crypto;
pub mod iana;
pub mod proposal;
pub mod wire;
