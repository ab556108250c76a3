//! The combined-mode algorithms ESP runs (RFC 4106 AES-GCM-16, RFC 7634
//! ChaCha20-Poly1305) and the per-SA key that holds their expanded key schedule.

use core::fmt;
use core::mem::{ManuallyDrop, MaybeUninit};

use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroizing;

use crate::error::SaError;

/// Bytes of salt at the end of KEYMAT (RFC 4106 8.1, RFC 7634 4).
pub const SALT_LEN: usize = 4;
/// Bytes of explicit IV carried in every packet (RFC 4106 3.1, RFC 7634 2).
pub const IV_LEN: usize = 8;
/// Bytes of ICV: every supported algorithm uses a 16-byte tag.
pub const ICV_LEN: usize = 16;

/// An ESP combined-mode algorithm (IKEv2 transform type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Aead {
    /// ENCR_AES_GCM_16 with a 128-bit key (RFC 4106).
    AesGcm128,
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
            (Self::ENCR_AES_GCM_16, Some(256)) => Some(Aead::AesGcm256),
            // RFC 7634 3: no Key Length attribute.
            (Self::ENCR_CHACHA20_POLY1305, None) => Some(Aead::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// IKEv2 transform ID of this algorithm.
    pub const fn transform_id(self) -> u16 {
        match self {
            Aead::AesGcm128 | Aead::AesGcm256 => Self::ENCR_AES_GCM_16,
            Aead::ChaCha20Poly1305 => Self::ENCR_CHACHA20_POLY1305,
        }
    }

    /// Key Length attribute in bits, if the transform carries one.
    pub const fn key_bits(self) -> Option<u16> {
        match self {
            Aead::AesGcm128 => Some(128),
            Aead::AesGcm256 => Some(256),
            Aead::ChaCha20Poly1305 => None,
        }
    }

    /// Bytes of cipher key.
    pub const fn key_len(self) -> usize {
        match self {
            Aead::AesGcm128 => 16,
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

    fn ring_algorithm(self) -> &'static aead::Algorithm {
        match self {
            Aead::AesGcm128 => &aead::AES_128_GCM,
            Aead::AesGcm256 => &aead::AES_256_GCM,
            Aead::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's key: the expanded AEAD key schedule plus the salt.
///
/// Zeroized on drop, schedule included, and never printed.
pub(crate) struct SaKey {
    aead: Aead,
    /// `ManuallyDrop` so that `Drop` can wipe the schedule ring keeps inline.
    key: ManuallyDrop<LessSafeKey>,
    salt: Zeroizing<[u8; SALT_LEN]>,
}

impl SaKey {
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
        let unbound =
            UnboundKey::new(aead.ring_algorithm(), key_bytes).map_err(|_| SaError::Key)?;
        Ok(SaKey {
            aead,
            key: ManuallyDrop::new(LessSafeKey::new(unbound)),
            salt,
        })
    }

    /// The algorithm this key is for.
    pub(crate) fn aead(&self) -> Aead {
        self.aead
    }

    /// Nonce = salt || IV (RFC 4106 4, RFC 7634 2).
    #[inline]
    fn nonce(&self, iv: &[u8; IV_LEN]) -> Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt[..]);
        n[SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `in_out` in place and returns the ICV.
    #[inline]
    pub(crate) fn seal(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Option<Tag> {
        self.key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), in_out)
            .ok()
    }

    /// Verifies and decrypts `ciphertext || ICV` in place; returns the plaintext length.
    #[inline]
    pub(crate) fn open(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Option<usize> {
        self.key
            .open_in_place(self.nonce(iv), Aad::from(aad), in_out)
            .ok()
            .map(|p| p.len())
    }
}

// The crate's one unsafe block: ring offers no way to wipe a key schedule.
#[allow(unsafe_code)]
impl Drop for SaKey {
    fn drop(&mut self) {
        let key: *mut ManuallyDrop<LessSafeKey> = &mut self.key;
        // SAFETY: `self.key` is dropped exactly once, here, and never touched again:
        // `SaKey` is being dropped and `ManuallyDrop` has no drop glue of its own.
        // ring 0.17's `LessSafeKey` owns no heap memory (the AES or ChaCha key schedule
        // lives inline, next to a `&'static Algorithm`), so after its (no-op) drop the
        // bytes are all that is left of the key. We wipe them as a
        // `MaybeUninit<LessSafeKey>`: all-zero is a valid `MaybeUninit` (it has no
        // validity invariant), so the zeroed `&'static` inside is never observed as a
        // reference. `ManuallyDrop<T>` and `MaybeUninit<T>` both have `T`'s layout.
        unsafe {
            ManuallyDrop::drop(&mut *key);
            zeroize::zeroize_flat_type(key.cast::<MaybeUninit<LessSafeKey>>());
        }
    }
}

impl fmt::Debug for SaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key or the salt.
        f.debug_struct("SaKey")
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keymat_lengths() {
        assert_eq!(Aead::AesGcm128.keymat_len(), 20);
        assert_eq!(Aead::AesGcm256.keymat_len(), 36);
        assert_eq!(Aead::ChaCha20Poly1305.keymat_len(), 36);
        assert_eq!(
            SaKey::new(Aead::AesGcm128, &[0u8; 16]).err(),
            Some(SaError::KeymatLength {
                expected: 20,
                actual: 16
            })
        );
        assert!(SaKey::new(Aead::AesGcm256, &[7u8; 36]).is_ok());
    }

    #[test]
    fn transform_mapping_round_trips() {
        for a in [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305] {
            assert_eq!(
                Aead::from_transform(a.transform_id(), a.key_bits()),
                Some(a)
            );
        }
        assert_eq!(Aead::from_transform(20, Some(192)), None);
        assert_eq!(Aead::from_transform(12, Some(128)), None);
    }

    #[test]
    fn debug_hides_key_and_salt() {
        let keymat: Vec<u8> = (0xA0..0xA0 + 20).collect();
        let k = SaKey::new(Aead::AesGcm128, &keymat).unwrap();
        let s = format!("{k:?} {k:#?}");
        assert!(s.contains("AesGcm128"));
        assert!(!s.to_lowercase().contains("a0a1"));
        assert!(!s.contains("160"), "decimal key byte leaked: {s}");
    }

    // Reads the bytes the Drop above left behind, which only unsafe code can see.
    #[allow(unsafe_code)]
    #[test]
    fn drop_wipes_schedule_and_salt() {
        use core::mem::{offset_of, size_of};
        for aead in [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305] {
            let mut slot = MaybeUninit::<SaKey>::uninit();
            slot.write(SaKey::new(aead, &vec![0x5c; aead.keymat_len()]).unwrap());
            // SAFETY: initialized just above, dropped once; afterwards only the bytes
            // that Drop wrote (with volatile zeroes, padding included) are read.
            let (key, salt) = unsafe {
                core::ptr::drop_in_place(slot.as_mut_ptr());
                let base = slot.as_ptr().cast::<u8>();
                (
                    core::slice::from_raw_parts(
                        base.add(offset_of!(SaKey, key)),
                        size_of::<ManuallyDrop<LessSafeKey>>(),
                    ),
                    core::slice::from_raw_parts(base.add(offset_of!(SaKey, salt)), SALT_LEN),
                )
            };
            assert!(
                key.iter().all(|&b| b == 0),
                "{aead:?} key schedule left in memory"
            );
            assert!(salt.iter().all(|&b| b == 0), "{aead:?} salt left in memory");
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let k = SaKey::new(Aead::ChaCha20Poly1305, &[9u8; 36]).unwrap();
        let iv = 5u64.to_be_bytes();
        let mut buf = *b"hello esp payload!!!\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let tag = k.seal(&iv, b"aad", &mut buf[..20]).unwrap();
        buf[20..].copy_from_slice(tag.as_ref());
        assert_eq!(k.open(&iv, b"aad", &mut buf), Some(20));
        assert_eq!(&buf[..20], b"hello esp payload!!!");
    }
}
