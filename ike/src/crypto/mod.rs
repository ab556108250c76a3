//! IKE cryptography: transforms, prf+, SKEYSEED and key derivation (RFC 7296 2.13-2.18), Diffie-Hellman, the SK payload cipher.
//!
//! Each transform type is a small enum ([`Encr`], [`Integ`], [`Prf`], [`Dh`]) that maps
//! to and from its IANA number and knows its key and output lengths. Derivation
//! ([`keys`]) is a set of pure functions from nonces, SPIs and shared secrets to keys, so
//! it can be checked against the keys another implementation logs. [`IkeCipher`]
//! implements [`crate::wire::SkCipher`] for the SK and SKF payloads.
//!
//! Every secret lives in a [`SecretBytes`], which zeroizes on drop and whose `Debug`
//! prints only its length.

pub mod dh;
pub mod encr;
pub mod integ;
pub mod keys;
pub mod mediation;
mod modp;
pub mod prf;
pub mod rng;
pub mod sk;
pub mod suite;

pub use dh::{Dh, DhKeyPair};
pub use encr::Encr;
pub use integ::Integ;
pub use keys::{skeyseed, skeyseed_rekey, ChildKeys, IkeKeys};
pub use prf::{prf_plus, Prf};
pub use rng::{Rng, SeededRng, SystemRng};
pub use sk::IkeCipher;
pub use suite::{EspSuite, IkeSuite};

use std::fmt;
use zeroize::Zeroizing;

/// Error from a cryptographic operation; the peer-triggered ones map to RFC 7296 notifies
/// (a bad KE payload to INVALID_SYNTAX, say) in the state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A KE payload's public value has the wrong length for its group.
    #[error("public value of {len} bytes for DH group {group}, expected {expected}")]
    PublicValueLength {
        /// DH group number.
        group: u16,
        /// Length received.
        len: usize,
        /// Length the group defines.
        expected: usize,
    },
    /// A public value is not a valid point of its group (RFC 5903 / RFC 8031).
    #[error("invalid public value for DH group {0}")]
    InvalidPublicValue(u16),
    /// The X25519 shared secret is all zeros (RFC 8031 2.3: abort the exchange).
    #[error("all-zero X25519 shared secret")]
    ZeroSharedSecret,
    /// A key has the wrong length for its algorithm.
    #[error("key of {len} bytes, expected {expected}")]
    KeyLength {
        /// Length given.
        len: usize,
        /// Length the algorithm needs.
        expected: usize,
    },
    /// prf+ was asked for more than 255 blocks of output (RFC 7296 2.13).
    #[error("prf+ cannot produce {0} bytes")]
    PrfPlusTooLong(usize),
    /// An encryption algorithm was combined with an integrity algorithm it cannot use
    /// (an AEAD with one, a plain cipher without one).
    #[error("encryption and integrity algorithms do not fit together")]
    MismatchedIntegrity,
    /// The random generator gave no valid private key after several attempts.
    #[error("could not generate a private key")]
    KeyGeneration,
    /// A DH group number we do not implement.
    #[error("unsupported DH group {0}")]
    UnsupportedGroup(u16),
}

/// Secret bytes (keys, shared secrets, SKEYSEED): zeroized on drop, never printed.
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the secret holds no bytes (SK_a with an AEAD cipher).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// Hex decoding for the known-answer tests.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}
