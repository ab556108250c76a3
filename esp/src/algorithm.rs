//! The transforms an ESP SA runs, combined-mode or AES-CBC with HMAC, and the per-SA
//! key that dispatches to either once per packet.

use crate::aead::{Aead, AeadKey};
use crate::cbc::{AesCbc, CbcKey, Integ, AES_BLOCK_LEN};
use crate::error::SaError;
use crate::packet::HEADER_LEN;

/// What protects an ESP SA: a combined-mode algorithm, or AES-CBC with an integrity
/// algorithm (IKEv2 transform types 1 and 3, RFC 7296 3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-GCM-16 (RFC 4106) or ChaCha20-Poly1305 (RFC 7634).
    Aead(Aead),
    /// ENCR_AES_CBC (RFC 3602) and an HMAC, encrypt-then-MAC (RFC 4303 3.3.2.1).
    AesCbc(AesCbc, Integ),
}

impl From<Aead> for Algorithm {
    fn from(aead: Aead) -> Self {
        Algorithm::Aead(aead)
    }
}

impl Algorithm {
    /// Maps negotiated IKEv2 transforms to an algorithm: the encryption transform (ID,
    /// Key Length attribute in bits) and the integrity transform ID, absent (or NONE,
    /// 0) with a combined-mode cipher (RFC 7296 3.3.3).
    pub const fn from_transform(
        encr_id: u16,
        key_bits: Option<u16>,
        integ_id: Option<u16>,
    ) -> Option<Algorithm> {
        match (encr_id, key_bits, integ_id) {
            (AesCbc::ENCR_AES_CBC, Some(bits), Some(integ)) => {
                match (AesCbc::from_key_bits(bits), Integ::from_transform(integ)) {
                    (Some(c), Some(i)) => Some(Algorithm::AesCbc(c, i)),
                    _ => None,
                }
            }
            (_, _, None | Some(0)) => match Aead::from_transform(encr_id, key_bits) {
                Some(a) => Some(Algorithm::Aead(a)),
                None => None,
            },
            _ => None,
        }
    }

    /// Bytes of KEYMAT per direction: key || salt for AEAD (RFC 4106 8.1), encryption
    /// key || integrity key for CBC (RFC 7296 2.17).
    pub const fn keymat_len(self) -> usize {
        match self {
            Algorithm::Aead(a) => a.keymat_len(),
            Algorithm::AesCbc(c, i) => c.key_len() + i.key_len(),
        }
    }

    /// Bytes of explicit IV in every packet: 8 (RFC 4106 3.1) or one AES block (RFC 3602 3).
    pub const fn iv_len(self) -> usize {
        match self {
            Algorithm::Aead(_) => crate::aead::IV_LEN,
            Algorithm::AesCbc(..) => AES_BLOCK_LEN,
        }
    }

    /// Bytes of ICV.
    pub const fn icv_len(self) -> usize {
        match self {
            Algorithm::Aead(a) => a.icv_len(),
            Algorithm::AesCbc(_, i) => i.icv_len(),
        }
    }

    /// The payload, padding, Pad Length and Next Header end on a multiple of this:
    /// 4 for the stream-like AEADs (RFC 4303 2.4), the block size for CBC (RFC 3602 2.4).
    pub const fn align(self) -> usize {
        match self {
            Algorithm::Aead(_) => 4,
            Algorithm::AesCbc(..) => AES_BLOCK_LEN,
        }
    }

    /// Bytes before the ciphertext: SPI, Sequence Number, IV.
    pub const fn head_len(self) -> usize {
        HEADER_LEN + self.iv_len()
    }

    /// Shortest well-formed packet: header, IV, one aligned trailer, ICV.
    pub(crate) const fn min_len(self) -> usize {
        self.head_len() + self.align() + self.icv_len()
    }
}

/// One direction's keys, expanded once, zeroized on drop and never printed.
// The AEAD key (ring's schedule) stays inline for the hot path; the CBC key keeps its
// big AES schedules boxed, so an SA is no larger than an AEAD one.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SaKey {
    Aead(AeadKey),
    Cbc(CbcKey),
}

impl SaKey {
    /// Splits KEYMAT for `algorithm` and expands the keys.
    pub(crate) fn new(algorithm: Algorithm, keymat: &[u8]) -> Result<Self, SaError> {
        match algorithm {
            Algorithm::Aead(a) => AeadKey::new(a, keymat).map(SaKey::Aead),
            Algorithm::AesCbc(c, i) => CbcKey::new(c, i, keymat).map(SaKey::Cbc),
        }
    }

    /// The algorithm this key is for.
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            SaKey::Aead(k) => Algorithm::Aead(k.aead()),
            SaKey::Cbc(k) => Algorithm::AesCbc(k.cipher(), k.integ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_mapping() {
        let gcm = AesCbc::ENCR_AES_CBC + 8; // ENCR_AES_GCM_16 = 20
        assert_eq!(
            Algorithm::from_transform(gcm, Some(192), None),
            Some(Algorithm::Aead(Aead::AesGcm192))
        );
        assert_eq!(
            Algorithm::from_transform(gcm, Some(128), Some(0)),
            Some(Algorithm::Aead(Aead::AesGcm128))
        );
        // A combined-mode cipher with an integrity algorithm is no valid suite.
        assert_eq!(Algorithm::from_transform(gcm, Some(128), Some(12)), None);
        assert_eq!(
            Algorithm::from_transform(12, Some(128), Some(12)),
            Some(Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha256_128))
        );
        assert_eq!(
            Algorithm::from_transform(12, Some(256), Some(2)),
            Some(Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha1_96))
        );
        // CBC needs an integrity algorithm here (no ESP without integrity, RFC 8221 5).
        assert_eq!(Algorithm::from_transform(12, Some(128), None), None);
        // AUTH_AES_XCBC_96 is not offered.
        assert_eq!(Algorithm::from_transform(12, Some(128), Some(5)), None);
        assert_eq!(Algorithm::from_transform(12, None, Some(12)), None);
    }

    #[test]
    fn sizes() {
        let cbc = Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha512_256);
        assert_eq!(cbc.keymat_len(), 32 + 64);
        assert_eq!((cbc.head_len(), cbc.icv_len(), cbc.align()), (24, 32, 16));
        assert_eq!(cbc.min_len(), 24 + 16 + 32);
        let gcm = Algorithm::from(Aead::AesGcm192);
        assert_eq!(gcm.keymat_len(), 28);
        assert_eq!((gcm.head_len(), gcm.icv_len(), gcm.align()), (16, 16, 4));
        assert_eq!(gcm.min_len(), crate::packet::MIN_VALID_ESP_LEN);
    }
}
