//! ESP (RFC 4303) dataplane, sans-IO: security associations, in-place encapsulation and
//! decapsulation, anti-replay, NAT-T framing, SAD and SPD.
//!
//! Tunnel mode only, with the combined-mode algorithms AES-GCM-16 (RFC 4106, 128-, 192-
//! and 256-bit keys) and ChaCha20-Poly1305 (RFC 7634), or AES-CBC (RFC 3602, 128/192/256)
//! with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2-256-128/-384-192/-512-256 (RFC 4868),
//! encrypt-then-MAC ([`Algorithm`]). No clock, no socket, no allocation per packet: the
//! engine owns the buffers and the IO and counts what comes back.
//!
//! Outbound: [`Spd::lookup`] picks the SA for an inner packet, then
//! [`OutboundSa::encapsulate`] turns `buf[inner]` into an ESP packet in place, using the
//! [`OutboundSa::head_len`] bytes before and [`OutboundSa::tail_len`] bytes after it
//! ([`OutboundSa::HEADROOM`] and [`OutboundSa::tailroom`] fit every algorithm);
//! [`natt::prepend_udp_header`] adds UDP when the caller builds raw datagrams.
//!
//! Inbound: [`natt::classify_4500`] demultiplexes port 4500, [`Sad::decapsulate`] finds
//! the SA by SPI and [`InboundSa::decapsulate`] checks replay, opens in place, moves the
//! window (AES-CBC: verifies the HMAC, moves the window, then decrypts) and checks the
//! inner packet against the SA's traffic selectors; every drop is
//! a [`DropReason`] to count in [`DropCounters`].
//!
//! Keys are zeroized on drop (expanded schedule included) and never printed.
//!
//! ```
//! use esp::{Aead, InboundSa, OutboundSa, SaConfig, SaSelectors};
//!
//! let keymat = [7u8; 20]; // from the CHILD_SA's KEYMAT: key || salt
//! let config = SaConfig::default();
//! let mut tx = OutboundSa::new(0x1000, Aead::AesGcm128, &keymat, &config).unwrap();
//! let mut rx = InboundSa::new(0x1000, Aead::AesGcm128, &keymat, &config, SaSelectors::any())
//!     .unwrap();
//!
//! // An IPv4 header (20 bytes, no payload) with room around it.
//! let inner = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
//! let mut buf = [0u8; OutboundSa::HEADROOM + 20 + OutboundSa::TAILROOM];
//! let at = OutboundSa::HEADROOM..OutboundSa::HEADROOM + 20;
//! buf[at.clone()].copy_from_slice(&inner);
//!
//! let out = tx.encapsulate(&mut buf, at).unwrap();
//! let got = rx.decapsulate(&mut buf, out.packet).unwrap();
//! assert_eq!(&buf[got.inner], &inner);
//! ```

// Only the key-wiping Drop of `wipe::Wiped` may use unsafe code, and says so there.
#![deny(unsafe_code)]

mod aead;
mod algorithm;
mod cbc;
mod error;
mod flow;
mod hash;
mod inbound;
mod lifetime;
pub mod natt;
mod outbound;
pub mod packet;
mod replay;
mod sad;
mod selector;
mod spd;
mod wipe;

#[cfg(test)]
mod kat;

pub use aead::{Aead, ICV_LEN, IV_LEN, SALT_LEN};
pub use algorithm::Algorithm;
pub use cbc::{AesCbc, Integ, AES_BLOCK_LEN, MAX_ICV_LEN};
pub use error::{DropCounters, DropReason, EncapError, MalformedReason, ReplayKind, SaError};
pub use flow::{proto, Family, Flow, FlowError, MAX_IPV6_EXT_HEADERS};
pub use inbound::{Decapsulated, InboundSa};
pub use lifetime::{LifetimeLimits, LifetimeState, SaConfig, SaStats};
pub use natt::{classify_4500, Datagram4500};
pub use outbound::{Encapsulated, InnerKind, OutboundSa};
pub use replay::{DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW};
pub use sad::Sad;
pub use selector::{SaSelectors, SelectorError, TrafficSelector};
pub use spd::{Spd, SpdError, MAX_ENTRIES_PER_PAIR};
