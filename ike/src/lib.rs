//! IKEv2 (RFC 7296) negotiator, sans-IO: no sockets, no async runtime, no clock reads.
//!
//! [`endpoint::Endpoint`] is the state machine the engine drives; [`config`] holds the
//! connection definitions it negotiates; [`wire`] is the message codec, [`crypto`] the
//! transforms and key derivation, [`auth`] PSK and certificate authentication.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod crypto;
pub mod endpoint;
pub mod iana;
pub mod nat;
pub mod proposal;
pub mod ts;
pub mod wire;
