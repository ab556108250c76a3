//! IKEv2 wire formats (RFC 7296 section 3, RFC 7383): views over bytes and owned
//! representations with `parse` and `emit`, in the shape of smoltcp's `wire` module.
//!
//! The representation types below are the contract between the codec and the state
//! machine: the codec parses bytes into them and emits them back; the state machine
//! only ever sees these types.
//!
//! The cipher is not implemented here: an SK payload is parsed into an [`Encrypted`]
//! that holds IV, ciphertext and ICV, and [`SkCipher`] (implemented by `crate::crypto`)
//! seals and opens it. The framing around the cipher is here: [`encrypt_message`] and
//! [`decrypt_message`] for SK (RFC 7296 3.14), [`encrypt_fragments`] and [`Reassembler`]
//! for SKF (RFC 7383).

use std::net::IpAddr;

use crate::iana::{ExchangeType, NotifyType, PayloadType};

mod cursor;

pub mod auth;
pub mod cert;
pub mod cp;
pub mod delete;
pub mod eap;
pub mod fragment;
pub mod header;
pub mod id;
pub mod ke;
pub mod mediation;
pub mod message;
pub mod nonce;
pub mod notify;
pub mod payload;
pub mod relay;
pub mod sa;
pub mod sk;
pub mod ts;
pub mod vendor;

#[cfg(test)]
mod tests;

pub use fragment::{
    decrypt_fragment, encrypt_fragments, Fragment, Reassembler, Reassembly, ReassemblyError,
};
pub use header::HeaderPacket;
pub use payload::PayloadPacket;
pub use sk::{decrypt_message, encrypt_message, DecryptError, SkParts};

/// Most payloads accepted in one message, and separately inside one SK payload.
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most transforms accepted in one proposal.
pub const MAX_TRANSFORMS: usize = 64;
/// Most traffic selectors accepted in one TS payload.
pub const MAX_TRAFFIC_SELECTORS: usize = 64;
/// Most SPIs accepted in one Delete payload.
pub const MAX_DELETE_SPIS: usize = 64;
/// Most attributes accepted in one CP payload.
pub const MAX_CP_ATTRIBUTES: usize = 64;

/// Error decoding a message or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before a length field says it should.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length field is smaller than the fixed part of its structure or too large.
    #[error("bad length in {0}")]
    BadLength(&'static str),
    /// A field holds a value this version of the protocol does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The major version is not 2 (RFC 7296 2.5: answer INVALID_MAJOR_VERSION).
    #[error("unsupported major version {0}")]
    UnsupportedVersion(u8),
    /// A payload we do not know has the critical bit set (RFC 7296 2.5).
    #[error("unsupported critical payload type {0}")]
    UnsupportedCritical(PayloadType),
    /// More payloads, proposals, transforms or selectors than we are willing to hold.
    #[error("too many {0}")]
    TooMany(&'static str),
}

/// Flags of the IKE header (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// I: set by the original initiator of the IKE SA.
    pub initiator: bool,
    /// R: the message is a response.
    pub response: bool,
    /// V: the sender speaks a higher major version.
    pub version: bool,
}

/// The fixed 28-byte IKE header (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (high nibble) and minor version (low nibble); 0x20 for IKEv2.
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Header flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Total length of the message including the header.
    pub length: u32,
}

/// A whole IKE message: header plus payloads in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; `next_payload` and `length` are computed on emit.
    pub header: Header,
    /// Payloads in wire order. An SK/SKF payload, if present, is the last one.
    pub payloads: Vec<Payload>,
}

/// One payload (RFC 7296 3.2 onwards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// SA payload: proposals.
    Sa(Vec<Proposal>),
    /// KE payload.
    Ke(KeyExchange),
    /// IDi payload.
    IdI(Identification),
    /// IDr payload.
    IdR(Identification),
    /// ID_PEER payload of ME_CONNECT: the identity asked for or relayed
    /// (draft-brunner-ikev2-mediation 4.4), with the body of an IDi/IDr.
    IdPeer(Identification),
    /// CERT payload.
    Cert(Certificate),
    /// CERTREQ payload: encoding and concatenated SHA-1 hashes of CA public keys.
    CertReq(Certificate),
    /// AUTH payload.
    Auth(Authentication),
    /// Nonce payload (16 to 256 bytes).
    Nonce(Vec<u8>),
    /// Notify payload.
    Notify(Notify),
    /// Delete payload.
    Delete(Delete),
    /// Vendor ID payload.
    VendorId(Vec<u8>),
    /// TSi payload.
    TsI(Vec<TrafficSelector>),
    /// TSr payload.
    TsR(Vec<TrafficSelector>),
    /// CP payload.
    Cp(Configuration),
    /// EAP payload, kept opaque.
    Eap(Vec<u8>),
    /// SK payload, still encrypted.
    Sk(Encrypted),
    /// SKF payload (RFC 7383), still encrypted.
    Skf(EncryptedFragment),
    /// A non-critical payload we do not understand, kept so it can be skipped.
    Unknown {
        /// Payload type.
        kind: PayloadType,
        /// Payload body.
        data: Vec<u8>,
    },
}

/// A proposal in an SA payload (RFC 7296 3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number, starting at 1.
    pub number: u8,
    /// Protocol ID (`crate::iana::protocol`).
    pub protocol: u8,
    /// SPI: empty in IKE_SA_INIT, 8 bytes for IKE rekeys, 4 for ESP.
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

/// A transform in a proposal (RFC 7296 3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// Transform type (`crate::iana::transform`).
    pub kind: u8,
    /// Transform ID.
    pub id: u16,
    /// Key Length attribute in bits, if present.
    pub key_length: Option<u16>,
}

/// KE payload (RFC 7296 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchange {
    /// Diffie-Hellman group.
    pub group: u16,
    /// Public value.
    pub data: Vec<u8>,
}

/// IDi/IDr payload (RFC 7296 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// ID type (`crate::iana::id`).
    pub id_type: u8,
    /// Identification data as on the wire (DER for a DN).
    pub data: Vec<u8>,
}

/// CERT and CERTREQ payloads (RFC 7296 3.6, 3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Encoding (`crate::iana::cert`).
    pub encoding: u8,
    /// Certificate data, or for CERTREQ the concatenated CA key hashes.
    pub data: Vec<u8>,
}

/// AUTH payload (RFC 7296 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Auth method (`crate::iana::auth`).
    pub method: u8,
    /// Authentication data (for method 14, the RFC 7427 ASN.1 length-prefixed
    /// AlgorithmIdentifier followed by the signature).
    pub data: Vec<u8>,
}

/// Notify payload (RFC 7296 3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Protocol ID, zero when no SPI.
    pub protocol: u8,
    /// SPI, possibly empty.
    pub spi: Vec<u8>,
    /// Notify message type.
    pub kind: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

/// Delete payload (RFC 7296 3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Protocol ID: IKE (no SPIs) or ESP (4-byte SPIs).
    pub protocol: u8,
    /// SPIs to delete, each `spi_size` bytes on the wire.
    pub spis: Vec<Vec<u8>>,
}

/// One traffic selector (RFC 7296 3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficSelector {
    /// IP protocol, 0 for any.
    pub ip_proto: u8,
    /// First port (or ICMP type/code) of the range.
    pub start_port: u16,
    /// Last port of the range.
    pub end_port: u16,
    /// First address; its family gives the TS type (7 or 8).
    pub start_addr: IpAddr,
    /// Last address, same family as `start_addr`.
    pub end_addr: IpAddr,
}

/// CP payload (RFC 7296 3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// CFG type (`crate::iana::cfg`).
    pub cfg_type: u8,
    /// Attributes: type (without the reserved bit) and value.
    pub attributes: Vec<(u16, Vec<u8>)>,
}

/// An SK payload as received (RFC 7296 3.14): the first inner payload type and the
/// encrypted body. `iv`, `ciphertext` and `icv` split `body` once the cipher's IV and
/// ICV lengths are known, see [`Encrypted::split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first payload inside.
    pub next_payload: PayloadType,
    /// IV || ciphertext || ICV as on the wire.
    pub body: Vec<u8>,
    /// Offset of the SK payload's generic header in the whole message: the AAD is
    /// `message[..aad_end]` for AEAD ciphers, and integrity covers `message[..icv_start]`.
    pub header_offset: usize,
}

/// An SKF payload as received (RFC 7383 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragment {
    /// Type of the first inner payload (only meaningful in fragment 1, else NONE).
    pub next_payload: PayloadType,
    /// Fragment number, from 1.
    pub number: u16,
    /// Total number of fragments.
    pub total: u16,
    /// IV || ciphertext || ICV.
    pub body: Vec<u8>,
    /// Offset of the SKF payload's generic header in the whole message.
    pub header_offset: usize,
}

/// The cipher that protects SK and SKF payloads, implemented by `crate::crypto` for
/// AES-GCM (RFC 5282) and AES-CBC with HMAC-SHA2 (RFC 7296 3.14, RFC 4868).
pub trait SkCipher {
    /// Length of the IV that precedes the ciphertext.
    fn iv_len(&self) -> usize;
    /// Length of the integrity checksum that follows the ciphertext.
    fn icv_len(&self) -> usize;
    /// The plaintext (payloads, padding and pad length byte) is padded to a multiple of
    /// this (16 for AES-CBC, 1 for AES-GCM).
    fn block_len(&self) -> usize;
    /// Fills `iv` with a fresh IV that never repeats under this key.
    fn next_iv(&mut self, iv: &mut [u8]);
    /// Encrypts `body` in place and writes the ICV. `aad` is the message from the IKE
    /// header to the end of the SK/SKF payload header (for CBC+HMAC the integrity check
    /// covers `aad || iv || ciphertext`).
    fn seal(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &mut [u8]);
    /// Checks the ICV and decrypts `body` in place; `false` if integrity fails.
    fn open(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &[u8]) -> bool;
}
