//! The combined-mode algorithms ESP runs (RFC 4106 AES-GCM-16, RFC 7634
//! ChaCha20-Poly1305) and the per-SA key that holds their expanded key schedule.
//!
//! ring does AES-GCM with 128- and 256-bit keys and ChaCha20-Poly1305; it has no
//! AES-192, so AES-GCM-16 with a 192-bit key runs on RustCrypto's `aes-gcm` (the `aes`
//! crate's AES-NI and `ghash`'s CLMUL, picked at run time).

use core::fmt;

use aes::Aes192;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{AesGcm, KeyInit};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::SaError;
use crate::wipe::Wiped;

/// Bytes of salt at the end of KEYMAT (RFC 4106 8.1, RFC 7634 4).
pub const SALT_LEN: usize = 4;
/// Bytes of explicit IV carried in every packet (RFC 4106 3.1, RFC 7634 2).
pub const IV_LEN: usize = 8;
/// Bytes of ICV: every supported combined-mode algorithm uses a 16-byte tag.
pub const ICV_LEN: usize = 16;

/// AES-192-GCM with the 12-byte nonce of RFC 4106 4.
type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;

/// An ESP combined-mode algorithm (IKEv2 transform type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Aead {
    /// ENCR_AES_GCM_16 with a 128-bit key (RFC 4106).
    AesGcm128,
    /// ENCR_AES_GCM_16 with a 192-bit key (RFC 4106).
    AesGcm192,
    /// ENCR_AES_GCM_16 with a 256-bit key (RFC 4106).
    AesGcm256,
    /// ENCR_CHACHA20_POLY1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl Aead {
    /// IKEv2 transform ID for ENCR_AES_GCM_16 (RFC 5282 / IANA).
    pub const ENCR_AES_GCM_16: u16 = 20;
    /// IKEv2 transform ID for ENCR_CHACHA20_POLY1305 (RFC 7634 3).
    pub const ENCR_CHACHA20_POLY1305: u16 = 28;

    /// Maps an IKEv2 encryption transform (ID, Key Length attribute in bits) to an algorithm.
    pub const fn from_transform(id: u16, key_bits: Option<u16>) -> Option<Aead> {
        match (id, key_bits) {
            (Self::ENCR_AES_GCM_16, Some(128)) => Some(Aead::AesGcm128),
            (Self::ENCR_AES_GCM_16, Some(192)) => Some(Aead::AesGcm192),
            (Self::ENCR_AES_GCM_16, Some(256)) => Some(Aead::AesGcm256),
            // RFC 7634 3: no Key Length attribute.
            (Self::ENCR_CHACHA20_POLY1305, None) => Some(Aead::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// IKEv2 transform ID of this algorithm.
    pub const fn transform_id(self) -> u16 {
        match self {
            Aead::AesGcm128 | Aead::AesGcm192 | Aead::AesGcm256 => Self::ENCR_AES_GCM_16,
            Aead::ChaCha20Poly1305 => Self::ENCR_CHACHA20_POLY1305,
        }
    }

    /// Key Length attribute in bits, if the transform carries one.
    pub const fn key_bits(self) -> Option<u16> {
        match self {
            Aead::AesGcm128 => Some(128),
            Aead::AesGcm192 => Some(192),
            Aead::AesGcm256 => Some(256),
            Aead::ChaCha20Poly1305 => None,
        }
    }

    /// Bytes of cipher key.
    pub const fn key_len(self) -> usize {
        match self {
            Aead::AesGcm128 => 16,
            Aead::AesGcm192 => 24,
            Aead::AesGcm256 | Aead::ChaCha20Poly1305 => 32,
        }
    }

    /// Bytes of KEYMAT to draw per direction: key || 4-byte salt (RFC 4106 8.1).
    pub const fn keymat_len(self) -> usize {
        self.key_len() + SALT_LEN
    }

    /// Bytes of ICV.
    pub const fn icv_len(self) -> usize {
        ICV_LEN
    }
}

/// The expanded key: ring's for everything ring does, RustCrypto's for AES-192.
// The ring key stays inline: it is the hot path, one pointer chase fewer per packet.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    /// Wiped on drop: ring offers no zeroization of its key schedules.
    Ring(Wiped<LessSafeKey>),
    /// Boxed (it is several times ring's size and rare); the `zeroize` feature of
    /// `aes-gcm` wipes the AES schedule and the GHASH key on drop.
    Gcm192(Box<Aes192Gcm>),
}

/// One direction's key: the expanded AEAD key schedule plus the salt.
///
/// Zeroized on drop, schedule included, and never printed.
pub(crate) struct AeadKey {
    aead: Aead,
    cipher: Cipher,
    salt: Zeroizing<[u8; SALT_LEN]>,
}

impl AeadKey {
    /// Splits KEYMAT into key and salt (RFC 4106 8.1, RFC 7634 4) and expands the key once.
    pub(crate) fn new(aead: Aead, keymat: &[u8]) -> Result<Self, SaError> {
        let expected = aead.keymat_len();
        if keymat.len() != expected {
            return Err(SaError::KeymatLength {
                expected,
                actual: keymat.len(),
            });
        }
        let (key_bytes, salt_bytes) = keymat.split_at(aead.key_len());
        let mut salt = Zeroizing::new([0u8; SALT_LEN]);
        salt.copy_from_slice(salt_bytes);
        let ring_alg = match aead {
            Aead::AesGcm128 => &aead::AES_128_GCM,
            Aead::AesGcm256 => &aead::AES_256_GCM,
            Aead::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            Aead::AesGcm192 => {
                let key = Aes192Gcm::new_from_slice(key_bytes).map_err(|_| SaError::Key)?;
                return Ok(AeadKey {
                    aead,
                    cipher: Cipher::Gcm192(Box::new(key)),
                    salt,
                });
            }
        };
        let unbound = UnboundKey::new(ring_alg, key_bytes).map_err(|_| SaError::Key)?;
        Ok(AeadKey {
            aead,
            cipher: Cipher::Ring(Wiped::new(LessSafeKey::new(unbound))),
            salt,
        })
    }

    /// The algorithm this key is for.
    pub(crate) fn aead(&self) -> Aead {
        self.aead
    }

    /// Nonce = salt || IV (RFC 4106 4, RFC 7634 2).
    #[inline]
    fn nonce(&self, iv: &[u8; IV_LEN]) -> [u8; aead::NONCE_LEN] {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt[..]);
        n[SALT_LEN..].copy_from_slice(iv);
        n
    }

    /// Encrypts `in_out` in place and returns the ICV.
    #[inline]
    pub(crate) fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Option<[u8; ICV_LEN]> {
        let nonce = self.nonce(iv);
        let mut icv = [0u8; ICV_LEN];
        match &self.cipher {
            Cipher::Ring(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        in_out,
                    )
                    .ok()?;
                icv.copy_from_slice(tag.as_ref());
            }
            Cipher::Gcm192(key) => {
                let tag = key
                    .encrypt_in_place_detached(&nonce.into(), aad, in_out)
                    .ok()?;
                icv.copy_from_slice(&tag);
            }
        }
        Some(icv)
    }

    /// Verifies and decrypts `ciphertext || ICV` in place; returns the plaintext length.
    #[inline]
    pub(crate) fn open(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Option<usize> {
        let nonce = self.nonce(iv);
        match &self.cipher {
            Cipher::Ring(key) => key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
                .ok()
                .map(|p| p.len()),
            Cipher::Gcm192(key) => {
                let ct_len = in_out.len().checked_sub(ICV_LEN)?;
                let (ct, tag) = in_out.split_at_mut(ct_len);
                // aes-gcm checks the tag (in constant time) before it decrypts.
                key.decrypt_in_place_detached(&nonce.into(), aad, ct, (&*tag).into())
                    .ok()?;
                Some(ct_len)
            }
        }
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key or the salt.
        f.debug_struct("AeadKey")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Aead; 4] = [
        Aead::AesGcm128,
        Aead::AesGcm192,
        Aead::AesGcm256,
        Aead::ChaCha20Poly1305,
    ];

    fn hex(s: &str) -> Vec<u8> {
        let d: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        d.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    #[test]
    fn keymat_lengths() {
        assert_eq!(Aead::AesGcm128.keymat_len(), 20);
        assert_eq!(Aead::AesGcm192.keymat_len(), 28);
        assert_eq!(Aead::AesGcm256.keymat_len(), 36);
        assert_eq!(Aead::ChaCha20Poly1305.keymat_len(), 36);
        assert_eq!(
            AeadKey::new(Aead::AesGcm128, &[0u8; 16]).err(),
            Some(SaError::KeymatLength {
                expected: 20,
                actual: 16
            })
        );
        assert!(AeadKey::new(Aead::AesGcm256, &[7u8; 36]).is_ok());
        assert!(AeadKey::new(Aead::AesGcm192, &[7u8; 28]).is_ok());
    }

    #[test]
    fn transform_mapping_round_trips() {
        for a in ALL {
            assert_eq!(
                Aead::from_transform(a.transform_id(), a.key_bits()),
                Some(a)
            );
        }
        assert_eq!(Aead::from_transform(20, Some(64)), None);
        assert_eq!(Aead::from_transform(12, Some(128)), None);
    }

    #[test]
    fn debug_hides_key_and_salt() {
        let keymat: Vec<u8> = (0xA0..0xA0 + 20).collect();
        let k = AeadKey::new(Aead::AesGcm128, &keymat).unwrap();
        let s = format!("{k:?} {k:#?}");
        assert!(s.contains("AesGcm128"));
        assert!(!s.to_lowercase().contains("a0a1"));
        assert!(!s.contains("160"), "decimal key byte leaked: {s}");
    }

    // Reads the bytes the Drop of `Wiped` left behind, which only unsafe code can see.
    #[allow(unsafe_code)]
    #[test]
    fn drop_wipes_schedule_and_salt() {
        use core::mem::{offset_of, size_of, MaybeUninit};
        for aead in [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305] {
            let mut slot = MaybeUninit::<AeadKey>::uninit();
            slot.write(AeadKey::new(aead, &vec![0x5c; aead.keymat_len()]).unwrap());
            // SAFETY: initialized just above, dropped once; afterwards only the bytes
            // that Drop wrote (with volatile zeroes, padding included) are read.
            let (cipher, salt) = unsafe {
                core::ptr::drop_in_place(slot.as_mut_ptr());
                let base = slot.as_ptr().cast::<u8>();
                (
                    core::slice::from_raw_parts(
                        base.add(offset_of!(AeadKey, cipher)),
                        size_of::<Cipher>(),
                    ),
                    core::slice::from_raw_parts(base.add(offset_of!(AeadKey, salt)), SALT_LEN),
                )
            };
            // The enum tag sits somewhere in `Cipher`; everything else is the key.
            assert!(
                cipher.iter().filter(|&&b| b != 0).count() <= 1,
                "{aead:?} key schedule left in memory"
            );
            assert!(salt.iter().all(|&b| b == 0), "{aead:?} salt left in memory");
        }
    }

    #[test]
    fn seal_open_round_trip() {
        for aead in ALL {
            let k = AeadKey::new(aead, &vec![9u8; aead.keymat_len()]).unwrap();
            let iv = 5u64.to_be_bytes();
            let mut buf = *b"hello esp payload!!!\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
            let tag = k.seal(&iv, b"aad", &mut buf[..20]).unwrap();
            buf[20..].copy_from_slice(&tag);
            let mut bad = buf;
            bad[35] ^= 1;
            assert_eq!(k.open(&iv, b"aad", &mut bad), None, "{aead:?}");
            assert_eq!(k.open(&iv, b"aad", &mut buf), Some(20), "{aead:?}");
            assert_eq!(&buf[..20], b"hello esp payload!!!");
        }
    }

    // The GCM specification (McGrew and Viega, "The Galois/Counter Mode of Operation",
    // revised, Appendix B) test cases 8 and 9, the 192-bit keys with no AAD. Their IVs
    // are 96 bits, split here as salt || explicit IV the way RFC 4106 4 builds them.
    #[test]
    fn aes_gcm_192_matches_gcm_spec_cases_8_and_9() {
        let cases = [
            (
                "000000000000000000000000000000000000000000000000",
                "000000000000000000000000",
                "00000000000000000000000000000000",
                "98e7247c07f0fe411c267e4384b0f600",
                "2ff58d80033927ab8ef4d4587514f0fb",
            ),
            (
                "feffe9928665731c6d6a8f9467308308feffe9928665731c",
                "cafebabefacedbaddecaf888",
                "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                 1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
                "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c
                 7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256",
                "9924a7c8587336bfb118024db8674a14",
            ),
        ];
        for (key, nonce, pt, ct, tag) in cases {
            let nonce = hex(nonce);
            let mut km = hex(key);
            km.extend_from_slice(&nonce[..SALT_LEN]);
            let k = AeadKey::new(Aead::AesGcm192, &km).unwrap();
            let iv: [u8; IV_LEN] = nonce[SALT_LEN..].try_into().unwrap();
            let mut buf = hex(pt);
            let icv = k.seal(&iv, &[], &mut buf).unwrap();
            assert_eq!(buf, hex(ct));
            assert_eq!(icv.to_vec(), hex(tag));
            buf.extend_from_slice(&icv);
            assert_eq!(k.open(&iv, &[], &mut buf), Some(hex(pt).len()));
            assert_eq!(&buf[..hex(pt).len()], &hex(pt)[..]);
        }
    }
}
