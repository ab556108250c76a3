//! The SK payload cipher (RFC 7296 3.14): AES-GCM-16 as RFC 5282 specifies for IKEv2,
//! or AES-CBC with a separate integrity algorithm. One [`IkeCipher`] serves one
//! direction of an IKE SA.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::KeyInit;
use ring::aead;

use super::encr::{cbc_decrypt, cbc_encrypt, GCM_SALT_LEN};
use super::integ::IntegKey;
use super::{CryptoError, Encr, Integ, Rng, SecretBytes, SystemRng};
use crate::wire::SkCipher;

/// Protects SK/SKF payloads in one direction, built from that direction's SK_e and SK_a.
pub struct IkeCipher {
    encr: Encr,
    mode: Mode,
    /// GCM: the next explicit IV, a per-key counter (RFC 5282 3.1: must not repeat).
    counter: u64,
    /// CBC: the source of unpredictable IVs (RFC 7296 3.14).
    rng: Box<dyn Rng + Send + Sync>,
}

enum Mode {
    Gcm {
        key: Box<aead::LessSafeKey>,
        salt: [u8; GCM_SALT_LEN],
    },
    /// AES-GCM with a 192-bit key, which ring lacks: RustCrypto's `aes-gcm`.
    Gcm192 {
        key: Box<aes_gcm::AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>>,
        salt: [u8; GCM_SALT_LEN],
    },
    Cbc {
        key: SecretBytes,
        integ: IntegKey,
    },
}

impl IkeCipher {
    /// A cipher from SK_e (for GCM the key followed by the 4-byte salt, RFC 5282 7.1)
    /// and SK_a (empty for GCM). CBC IVs come from the OS generator.
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        sk_e: &[u8],
        sk_a: &[u8],
    ) -> Result<Self, CryptoError> {
        if sk_e.len() != encr.key_len() {
            return Err(CryptoError::KeyLength {
                len: sk_e.len(),
                expected: encr.key_len(),
            });
        }
        let mode = match (encr.is_aead(), integ) {
            (true, None) if encr == Encr::AesGcm16_192 => {
                let (key, salt_bytes) = sk_e.split_at(encr.aes_key_len());
                let key =
                    aes_gcm::AesGcm::new_from_slice(key).map_err(|_| CryptoError::KeyLength {
                        len: key.len(),
                        expected: 24,
                    })?;
                let mut salt = [0u8; GCM_SALT_LEN];
                salt.copy_from_slice(salt_bytes);
                Mode::Gcm192 {
                    key: Box::new(key),
                    salt,
                }
            }
            (true, None) => {
                let (key, salt_bytes) = sk_e.split_at(encr.aes_key_len());
                let alg = match encr {
                    Encr::AesGcm16_128 => &aead::AES_128_GCM,
                    _ => &aead::AES_256_GCM,
                };
                let key = aead::UnboundKey::new(alg, key).map_err(|_| CryptoError::KeyLength {
                    len: key.len(),
                    expected: alg.key_len(),
                })?;
                let mut salt = [0u8; GCM_SALT_LEN];
                salt.copy_from_slice(salt_bytes);
                Mode::Gcm {
                    key: Box::new(aead::LessSafeKey::new(key)),
                    salt,
                }
            }
            (false, Some(integ)) => Mode::Cbc {
                key: SecretBytes::from_slice(sk_e),
                integ: IntegKey::new(integ, sk_a)?,
            },
            _ => return Err(CryptoError::MismatchedIntegrity),
        };
        Ok(Self {
            encr,
            mode,
            counter: 0,
            rng: Box::new(SystemRng::new()),
        })
    }

    /// Replaces the generator for CBC IVs (deterministic tests).
    pub fn with_rng(mut self, rng: Box<dyn Rng + Send + Sync>) -> Self {
        self.rng = rng;
        self
    }

    /// The encryption algorithm.
    pub fn encr(&self) -> Encr {
        self.encr
    }

    fn gcm_nonce(salt: &[u8; GCM_SALT_LEN], iv: &[u8]) -> Option<aead::Nonce> {
        // RFC 5282 4: nonce = salt (4 octets) | IV (8 octets).
        let mut nonce = [0u8; aead::NONCE_LEN];
        if iv.len() != nonce.len() - GCM_SALT_LEN {
            return None;
        }
        nonce[..GCM_SALT_LEN].copy_from_slice(salt);
        nonce[GCM_SALT_LEN..].copy_from_slice(iv);
        Some(aead::Nonce::assume_unique_for_key(nonce))
    }
}

impl SkCipher for IkeCipher {
    fn iv_len(&self) -> usize {
        self.encr.iv_len()
    }

    fn icv_len(&self) -> usize {
        match &self.mode {
            Mode::Gcm { .. } | Mode::Gcm192 { .. } => aead::AES_128_GCM.tag_len(),
            Mode::Cbc { integ, .. } => integ.alg().icv_len(),
        }
    }

    fn block_len(&self) -> usize {
        self.encr.block_len()
    }

    fn next_iv(&mut self, iv: &mut [u8]) {
        match &self.mode {
            Mode::Gcm { .. } | Mode::Gcm192 { .. } => {
                // Message IDs are 32 bits, so a 64-bit counter cannot wrap within one SA.
                let c = self.counter.to_be_bytes();
                let n = iv.len().min(c.len());
                iv.fill(0);
                iv[..n].copy_from_slice(&c[c.len() - n..]);
                self.counter = self.counter.wrapping_add(1);
            }
            Mode::Cbc { .. } => self.rng.fill(iv),
        }
    }

    /// A caller bug (wrong IV or ICV length, CBC body not whole blocks) zeroes the body
    /// and ICV rather than send plaintext; debug builds assert.
    fn seal(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &mut [u8]) {
        let ok = icv.len() == self.icv_len()
            && match &self.mode {
                Mode::Gcm { key, salt } => Self::gcm_nonce(salt, iv)
                    .and_then(|nonce| {
                        key.seal_in_place_separate_tag(nonce, aead::Aad::from(aad), body)
                            .ok()
                    })
                    .map(|tag| icv.copy_from_slice(tag.as_ref()))
                    .is_some(),
                Mode::Gcm192 { key, salt } => Self::gcm_nonce(salt, iv)
                    .and_then(|nonce| {
                        key.encrypt_in_place_detached(nonce.as_ref().into(), aad, body)
                            .ok()
                    })
                    .map(|tag| icv.copy_from_slice(tag.as_slice()))
                    .is_some(),
                Mode::Cbc { key, integ } => {
                    // RFC 7296 3.14: the checksum covers the message from the IKE
                    // header through the encrypted content.
                    cbc_encrypt(key.as_bytes(), iv, body) && {
                        integ.sign(&[aad, iv, body], icv);
                        true
                    }
                }
            };
        if !ok {
            debug_assert!(false, "SK seal called with inconsistent lengths");
            body.fill(0);
            icv.fill(0);
        }
    }

    fn open(&self, aad: &[u8], iv: &[u8], body: &mut [u8], icv: &[u8]) -> bool {
        if icv.len() != self.icv_len() {
            return false;
        }
        match &self.mode {
            Mode::Gcm { key, salt } => {
                let (Some(nonce), Ok(tag)) = (Self::gcm_nonce(salt, iv), aead::Tag::try_from(icv))
                else {
                    return false;
                };
                key.open_in_place_separate_tag(nonce, aead::Aad::from(aad), tag, body, 0..)
                    .is_ok()
            }
            Mode::Gcm192 { key, salt } => {
                let Some(nonce) = Self::gcm_nonce(salt, iv) else {
                    return false;
                };
                if icv.len() != 16 {
                    return false;
                }
                key.decrypt_in_place_detached(nonce.as_ref().into(), aad, body, icv.into())
                    .is_ok()
            }
            Mode::Cbc { key, integ } => {
                // Integrity first: nothing is decrypted unless the ICV is right.
                integ.verify(&[aad, iv, body], icv) && cbc_decrypt(key.as_bytes(), iv, body)
            }
        }
    }
}

impl fmt::Debug for IkeCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let integ = match &self.mode {
            Mode::Gcm { .. } | Mode::Gcm192 { .. } => None,
            Mode::Cbc { integ, .. } => Some(integ.alg()),
        };
        f.debug_struct("IkeCipher")
            .field("encr", &self.encr)
            .field("integ", &integ)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, SeededRng};

    const PLAIN: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

    /// McGrew & Viega GCM test cases 4 and 16 (96-bit IV split as 4-byte salt and 8-byte
    /// explicit IV, the layout of RFC 5282 and strongSwan's IKE test vectors).
    #[test]
    fn gcm_known_answer() {
        let cases = [
            (
                Encr::AesGcm16_128,
                "feffe9928665731c6d6a8f9467308308cafebabe",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                 21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                "5bc94fbc3221a5db94fae95ae7121a47",
            ),
            (
                Encr::AesGcm16_256,
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308cafebabe",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                 8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        for (encr, key, ct, tag) in cases {
            let c = IkeCipher::new(encr, None, &hex(key), &[]).unwrap();
            let iv = hex("facedbaddecaf888");
            let mut body = hex(PLAIN);
            let mut icv = [0u8; 16];
            c.seal(&hex(AAD), &iv, &mut body, &mut icv);
            assert_eq!(body, hex(ct), "{encr:?}");
            assert_eq!(icv.to_vec(), hex(tag));
            assert!(c.open(&hex(AAD), &iv, &mut body, &icv));
            assert_eq!(body, hex(PLAIN));
        }
    }

    fn suites() -> Vec<(Encr, Option<Integ>)> {
        let mut v = vec![(Encr::AesGcm16_128, None), (Encr::AesGcm16_256, None)];
        for encr in [Encr::AesCbc128, Encr::AesCbc192, Encr::AesCbc256] {
            v.extend(Integ::ALL.into_iter().map(|i| (encr, Some(i))));
        }
        v
    }

    fn cipher(encr: Encr, integ: Option<Integ>, seed: u8) -> IkeCipher {
        let sk_e: Vec<u8> = (0..encr.key_len() as u8).map(|b| b ^ seed).collect();
        let sk_a = vec![seed; integ.map_or(0, Integ::key_len)];
        IkeCipher::new(encr, integ, &sk_e, &sk_a)
            .unwrap()
            .with_rng(Box::new(SeededRng::new(u64::from(seed))))
    }

    #[test]
    fn round_trip_and_tamper_every_suite() {
        let aad = b"IKE header .. SK payload header";
        for (encr, integ) in suites() {
            let mut tx = cipher(encr, integ, 7);
            let rx = cipher(encr, integ, 7);
            let plain = vec![0x5a; 4 * tx.block_len()];
            let mut iv = vec![0; tx.iv_len()];
            tx.next_iv(&mut iv);
            let mut body = plain.clone();
            let mut icv = vec![0; tx.icv_len()];
            tx.seal(aad, &iv, &mut body, &mut icv);
            assert_ne!(body, plain, "{encr:?}");

            let mut b = body.clone();
            assert!(rx.open(aad, &iv, &mut b, &icv), "{encr:?} {integ:?}");
            assert_eq!(b, plain);

            let flip = |v: &[u8], i: usize| {
                let mut v = v.to_vec();
                v[i] ^= 0x80;
                v
            };
            assert!(!rx.open(&flip(aad, 3), &iv, &mut body.clone(), &icv));
            assert!(!rx.open(aad, &flip(&iv, 0), &mut body.clone(), &icv));
            assert!(!rx.open(aad, &iv, &mut flip(&body, body.len() - 1), &icv));
            assert!(!rx.open(aad, &iv, &mut body.clone(), &flip(&icv, 0)));
            assert!(!rx.open(aad, &iv, &mut body.clone(), &icv[1..]));
            assert!(!cipher(encr, integ, 8).open(aad, &iv, &mut body.clone(), &icv));
        }
    }

    #[test]
    fn peer_garbage_is_rejected_without_panic() {
        for (encr, integ) in suites() {
            let rx = cipher(encr, integ, 1);
            let icv = vec![0; rx.icv_len()];
            assert!(!rx.open(b"", &[], &mut [], &icv));
            assert!(!rx.open(b"", &[0; 3], &mut [1, 2, 3], &icv));
            assert!(!rx.open(b"", &vec![0; rx.iv_len()], &mut [0; 17], &icv));
        }
    }

    #[test]
    fn gcm_ivs_count_and_cbc_ivs_vary() {
        let mut g = cipher(Encr::AesGcm16_128, None, 1);
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        g.next_iv(&mut a);
        g.next_iv(&mut b);
        assert_eq!((a, b), ([0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]));
        let mut c = cipher(Encr::AesCbc128, Some(Integ::HmacSha256_128), 1);
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        c.next_iv(&mut x);
        c.next_iv(&mut y);
        assert_ne!(x, y);
    }

    #[test]
    fn construction_errors() {
        assert!(IkeCipher::new(Encr::AesGcm16_128, None, &[0; 16], &[]).is_err());
        assert!(matches!(
            IkeCipher::new(
                Encr::AesGcm16_128,
                Some(Integ::HmacSha256_128),
                &[0; 20],
                &[0; 32]
            ),
            Err(CryptoError::MismatchedIntegrity)
        ));
        assert!(IkeCipher::new(Encr::AesCbc128, None, &[0; 16], &[]).is_err());
        assert!(IkeCipher::new(
            Encr::AesCbc128,
            Some(Integ::HmacSha256_128),
            &[0; 16],
            &[0; 31]
        )
        .is_err());
        let c = cipher(Encr::AesCbc256, Some(Integ::HmacSha512_256), 2);
        assert!(!format!("{c:?}").contains("key"));
    }
}
