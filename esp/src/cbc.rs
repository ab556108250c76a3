//! AES-CBC (RFC 3602) with an HMAC integrity algorithm (RFC 2404, RFC 4868), composed
//! encrypt-then-MAC as RFC 4303 3.3.2.1 and 3.4.4.1 order it, and the per-SA key that
//! holds both expanded keys.
//!
//! The block cipher and the CBC mode are RustCrypto's `aes` (AES-NI picked at run time)
//! and `cbc`, already in the tree for IKE; ring has no raw AES or CBC. HMAC-SHA2 is
//! ring's, on the SHA-NI/AVX cores ring uses everywhere else; HMAC-SHA1 is RustCrypto's
//! `hmac` + `sha1` (SHA-NI picked at run time), as ring's SHA-1 is portable Rust.

use ::hmac::{Hmac, Mac};
use aes::cipher::consts::U16;
use aes::cipher::inout::InOutBuf;
use aes::cipher::{
    BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, BlockSizeUser,
    InnerIvInit, KeyInit,
};
use aes::{Aes128, Aes128Enc, Aes192, Aes256};
use ring::hmac;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::error::SaError;
use crate::wipe::Wiped;

/// Bytes of one AES block, and so of the explicit IV of AES-CBC (RFC 3602 3).
pub const AES_BLOCK_LEN: usize = 16;
/// Bytes of the longest ICV any integrity algorithm here produces (HMAC-SHA2-512-256).
pub const MAX_ICV_LEN: usize = 32;

/// An ESP integrity algorithm (IKEv2 transform type 3), used with AES-CBC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (RFC 2404).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    HmacSha512_256,
}

impl Integ {
    /// IKEv2 transform ID of AUTH_HMAC_SHA1_96 (RFC 7296 3.3.2).
    pub const AUTH_HMAC_SHA1_96: u16 = 2;
    /// IKEv2 transform ID of AUTH_HMAC_SHA2_256_128 (RFC 4868 4).
    pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
    /// IKEv2 transform ID of AUTH_HMAC_SHA2_384_192 (RFC 4868 4).
    pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
    /// IKEv2 transform ID of AUTH_HMAC_SHA2_512_256 (RFC 4868 4).
    pub const AUTH_HMAC_SHA2_512_256: u16 = 14;

    /// Maps an IKEv2 integrity transform ID to an algorithm.
    pub const fn from_transform(id: u16) -> Option<Integ> {
        match id {
            Self::AUTH_HMAC_SHA1_96 => Some(Integ::HmacSha1_96),
            Self::AUTH_HMAC_SHA2_256_128 => Some(Integ::HmacSha256_128),
            Self::AUTH_HMAC_SHA2_384_192 => Some(Integ::HmacSha384_192),
            Self::AUTH_HMAC_SHA2_512_256 => Some(Integ::HmacSha512_256),
            _ => None,
        }
    }

    /// IKEv2 transform ID of this algorithm.
    pub const fn transform_id(self) -> u16 {
        match self {
            Integ::HmacSha1_96 => Self::AUTH_HMAC_SHA1_96,
            Integ::HmacSha256_128 => Self::AUTH_HMAC_SHA2_256_128,
            Integ::HmacSha384_192 => Self::AUTH_HMAC_SHA2_384_192,
            Integ::HmacSha512_256 => Self::AUTH_HMAC_SHA2_512_256,
        }
    }

    /// Bytes of key: 160 bits for SHA-1 (RFC 2404 3), the hash length for SHA-2
    /// (RFC 4868 2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 20,
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
        }
    }

    /// Bytes of ICV: the HMAC truncated to 96 bits (RFC 2404 2) or to half the hash
    /// (RFC 4868 2.3).
    pub const fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 12,
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
        }
    }
}

/// The AES key size of ENCR_AES_CBC (RFC 3602; the Key Length attribute, RFC 7296 3.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AesCbc {
    /// AES-128-CBC.
    Aes128,
    /// AES-192-CBC.
    Aes192,
    /// AES-256-CBC.
    Aes256,
}

impl AesCbc {
    /// IKEv2 transform ID of ENCR_AES_CBC (RFC 3602 5).
    pub const ENCR_AES_CBC: u16 = 12;

    /// The key size for a Key Length attribute in bits.
    pub const fn from_key_bits(bits: u16) -> Option<AesCbc> {
        match bits {
            128 => Some(AesCbc::Aes128),
            192 => Some(AesCbc::Aes192),
            256 => Some(AesCbc::Aes256),
            _ => None,
        }
    }

    /// Key Length attribute in bits.
    pub const fn key_bits(self) -> u16 {
        match self {
            AesCbc::Aes128 => 128,
            AesCbc::Aes192 => 192,
            AesCbc::Aes256 => 256,
        }
    }

    /// Bytes of cipher key.
    pub const fn key_len(self) -> usize {
        self.key_bits() as usize / 8
    }
}

/// An expanded AES key: both schedules, since one `CbcKey` type serves both directions.
/// The `aes` crate's `zeroize` feature wipes them on drop.
enum AesKey {
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
}

/// A keyed HMAC: the inner and outer hash states after the key, computed once.
enum MacKey {
    /// HMAC-SHA2 on ring.
    Ring(Wiped<hmac::Key>),
    /// HMAC-SHA1 on RustCrypto (RFC 2404's use of SHA-1 is not collision-bound).
    Sha1(Wiped<Hmac<Sha1>>),
}

/// One direction's AES-CBC + HMAC keys, split from KEYMAT (RFC 7296 2.17: encryption
/// key first, then integrity key) and expanded once.
pub(crate) struct CbcKey {
    cipher: AesCbc,
    integ: Integ,
    /// Boxed: both schedules of AES-256 are over a kilobyte, and every SA would pay it.
    aes: Box<AesKey>,
    mac: MacKey,
}

impl CbcKey {
    /// Splits `keymat` (exactly `cipher.key_len() + integ.key_len()` bytes).
    pub(crate) fn new(cipher: AesCbc, integ: Integ, keymat: &[u8]) -> Result<Self, SaError> {
        let expected = cipher.key_len() + integ.key_len();
        if keymat.len() != expected {
            return Err(SaError::KeymatLength {
                expected,
                actual: keymat.len(),
            });
        }
        let (ek, ik) = keymat.split_at(cipher.key_len());
        let aes = match cipher {
            AesCbc::Aes128 => AesKey::Aes128(Aes128::new_from_slice(ek).map_err(|_| SaError::Key)?),
            AesCbc::Aes192 => AesKey::Aes192(Aes192::new_from_slice(ek).map_err(|_| SaError::Key)?),
            AesCbc::Aes256 => AesKey::Aes256(Aes256::new_from_slice(ek).map_err(|_| SaError::Key)?),
        };
        let ring_mac = |alg| MacKey::Ring(Wiped::new(hmac::Key::new(alg, ik)));
        let mac = match integ {
            Integ::HmacSha1_96 => MacKey::Sha1(Wiped::new(
                <Hmac<Sha1> as Mac>::new_from_slice(ik).map_err(|_| SaError::Key)?,
            )),
            Integ::HmacSha256_128 => ring_mac(hmac::HMAC_SHA256),
            Integ::HmacSha384_192 => ring_mac(hmac::HMAC_SHA384),
            Integ::HmacSha512_256 => ring_mac(hmac::HMAC_SHA512),
        };
        Ok(CbcKey {
            cipher,
            integ,
            aes: Box::new(aes),
            mac,
        })
    }

    pub(crate) fn cipher(&self) -> AesCbc {
        self.cipher
    }

    pub(crate) fn integ(&self) -> Integ {
        self.integ
    }

    /// CBC-encrypts `blocks` (a whole number of AES blocks) in place (RFC 3602 2.3).
    #[inline]
    pub(crate) fn encrypt(&self, iv: &[u8; AES_BLOCK_LEN], blocks: &mut [u8]) {
        debug_assert_eq!(blocks.len() % AES_BLOCK_LEN, 0);
        match &*self.aes {
            AesKey::Aes128(k) => cbc_encrypt(k, iv, blocks),
            AesKey::Aes192(k) => cbc_encrypt(k, iv, blocks),
            AesKey::Aes256(k) => cbc_encrypt(k, iv, blocks),
        }
    }

    /// CBC-decrypts `blocks` (a whole number of AES blocks) in place, several blocks
    /// at a time (CBC decryption is parallel).
    #[inline]
    pub(crate) fn decrypt(&self, iv: &[u8; AES_BLOCK_LEN], blocks: &mut [u8]) {
        debug_assert_eq!(blocks.len() % AES_BLOCK_LEN, 0);
        match &*self.aes {
            AesKey::Aes128(k) => cbc_decrypt(k, iv, blocks),
            AesKey::Aes192(k) => cbc_decrypt(k, iv, blocks),
            AesKey::Aes256(k) => cbc_decrypt(k, iv, blocks),
        }
    }

    /// The untruncated HMAC over `authenticated` (ESP header, IV, ciphertext), followed
    /// with ESN by the high 32 bits of the sequence number, which are not sent
    /// (RFC 4303 2.2.1, 3.3.2.1). Returns the buffer and the HMAC's length in it.
    #[inline]
    fn mac(&self, authenticated: &[u8], seq_hi: Option<u32>) -> ([u8; 64], usize) {
        let mut out = [0u8; 64];
        let hi = seq_hi.map(u32::to_be_bytes);
        let len = match &self.mac {
            MacKey::Ring(key) => {
                let mut ctx = hmac::Context::with_key(key);
                ctx.update(authenticated);
                if let Some(hi) = &hi {
                    ctx.update(hi);
                }
                let tag = ctx.sign();
                out[..tag.as_ref().len()].copy_from_slice(tag.as_ref());
                tag.as_ref().len()
            }
            MacKey::Sha1(key) => {
                let mut ctx = Hmac::<Sha1>::clone(key);
                ctx.update(authenticated);
                if let Some(hi) = &hi {
                    ctx.update(hi);
                }
                let tag = ctx.finalize().into_bytes();
                out[..tag.len()].copy_from_slice(&tag);
                tag.len()
            }
        };
        (out, len)
    }

    /// Writes the truncated HMAC into `icv` (exactly `integ.icv_len()` bytes).
    #[inline]
    pub(crate) fn sign(&self, authenticated: &[u8], seq_hi: Option<u32>, icv: &mut [u8]) {
        let (tag, _) = self.mac(authenticated, seq_hi);
        icv.copy_from_slice(&tag[..icv.len()]);
    }

    /// Whether `icv` is the truncated HMAC of the packet, compared in constant time
    /// (RFC 4303 3.4.4.1: before any decryption).
    #[inline]
    pub(crate) fn verify(&self, authenticated: &[u8], seq_hi: Option<u32>, icv: &[u8]) -> bool {
        let (tag, _) = self.mac(authenticated, seq_hi);
        let want = &tag[..self.integ.icv_len()];
        bool::from(want.ct_eq(icv))
    }
}

#[inline]
fn cbc_encrypt<C>(key: &C, iv: &[u8; AES_BLOCK_LEN], buf: &mut [u8])
where
    C: BlockCipher + BlockEncrypt + BlockSizeUser<BlockSize = U16>,
{
    // `&C` is a block cipher too: the mode borrows the expanded key, no copy per packet.
    let mut enc = cbc::Encryptor::<&C>::inner_iv_init(key, iv.into());
    let (blocks, _) = InOutBuf::from(buf).into_chunks::<U16>();
    enc.encrypt_blocks_inout_mut(blocks);
}

#[inline]
fn cbc_decrypt<C>(key: &C, iv: &[u8; AES_BLOCK_LEN], buf: &mut [u8])
where
    C: BlockCipher + BlockDecrypt + BlockSizeUser<BlockSize = U16>,
{
    let mut dec = cbc::Decryptor::<&C>::inner_iv_init(key, iv.into());
    let (blocks, _) = InOutBuf::from(buf).into_chunks::<U16>();
    dec.decrypt_blocks_inout_mut(blocks);
}

/// Explicit IVs for an outbound AES-CBC SA: AES-128 under a random key of its own,
/// applied to the 64-bit sequence number.
///
/// RFC 3602 2.3 and RFC 4303 3.3.2 want the IV unpredictable to an attacker, not just
/// unique. NIST SP 800-38A Appendix C gives the standard construction: encrypt a nonce
/// with a block cipher. The sequence number is our nonce (never repeated under one SA,
/// RFC 4303 3.3.3), and the IV key is drawn from the system RNG when the SA is built,
/// separate from the data key, so that no IV is ever an encryption of data-key
/// chaining values. One RNG call per SA, none per packet, no allocation.
pub(crate) struct IvGenerator {
    key: Aes128Enc,
}

impl IvGenerator {
    /// A generator with a fresh random key.
    pub(crate) fn random() -> Result<Self, SaError> {
        let mut key = zeroize::Zeroizing::new([0u8; 16]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key[..])
            .map_err(|_| SaError::Random)?;
        Ok(IvGenerator {
            key: Aes128Enc::new(key.as_ref().into()),
        })
    }

    /// The IV of the packet with sequence number `seq`.
    #[inline]
    pub(crate) fn iv(&self, seq: u64) -> [u8; AES_BLOCK_LEN] {
        let mut block = [0u8; AES_BLOCK_LEN];
        block[..8].copy_from_slice(&seq.to_be_bytes());
        self.key.encrypt_block((&mut block).into());
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let d: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        d.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    /// A CbcKey whose integrity key is `ik` (AES part irrelevant).
    fn with_integ(integ: Integ, ik: &[u8]) -> CbcKey {
        let mut km = vec![0u8; 16];
        km.extend_from_slice(ik);
        CbcKey::new(AesCbc::Aes128, integ, &km).unwrap()
    }

    fn icv(k: &CbcKey, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; k.integ().icv_len()];
        k.sign(data, None, &mut out);
        out
    }

    // RFC 2202 test cases 1 and 5 (HMAC-SHA-1; case 5 is the truncation test that
    // RFC 2404 refers to), RFC 4868 2.7.2.1-2.7.2.3 authentication test case 1.
    #[test]
    fn hmac_truncations_match_rfc_vectors() {
        let cases: [(Integ, &[u8], &[u8], &str); 5] = [
            (
                Integ::HmacSha1_96,
                &[0x0b; 20],
                b"Hi There",
                "b617318655057264e28bc0b6",
            ),
            (
                Integ::HmacSha1_96,
                &[0x0c; 20],
                b"Test With Truncation",
                "4c1a03424b55e07fe7f27be1",
            ),
            (
                Integ::HmacSha256_128,
                &[0x0b; 32],
                b"Hi There",
                "198a607eb44bfbc69903a0f1cf2bbdc5",
            ),
            (
                Integ::HmacSha384_192,
                &[0x0b; 48],
                b"Hi There",
                "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
            ),
            (
                Integ::HmacSha512_256,
                &[0x0b; 64],
                b"Hi There",
                "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
            ),
        ];
        for (integ, key, data, want) in cases {
            let k = with_integ(integ, key);
            let want = hex(want);
            assert_eq!(icv(&k, data), want, "{integ:?}");
            assert!(k.verify(data, None, &want));
            let mut bad = want.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(!k.verify(data, None, &bad));
            // A longer or shorter ICV never verifies.
            assert!(!k.verify(data, None, &want[..want.len() - 1]));
        }
    }

    #[test]
    fn esn_high_bits_are_appended_to_the_mac_input() {
        let k = with_integ(Integ::HmacSha256_128, &[7; 32]);
        let mut with_hi = [0u8; 16];
        k.sign(b"header", Some(0x0102_0304), &mut with_hi);
        let mut appended = [0u8; 16];
        k.sign(b"header\x01\x02\x03\x04", None, &mut appended);
        assert_eq!(with_hi, appended);
        assert!(!k.verify(b"header", Some(0x0102_0305), &with_hi));
    }

    // RFC 3602 4, cases 1 and 2: AES-128-CBC, one and two blocks.
    #[test]
    fn aes_cbc_matches_rfc3602_cases_1_and_2() {
        let cases = [
            (
                "06a9214036b8a15b512e03d534120006",
                "3dafba429d9eb430b422da802c9fac41",
                b"Single block msg".to_vec(),
                "e353779c1079aeb82708942dbe77181a",
            ),
            (
                "c286696d887c9aa0611bbb3e2025a45a",
                "562e17996d093d28ddb3ba695a2e6f58",
                (0u8..32).collect(),
                "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1",
            ),
        ];
        for (key, iv, pt, ct) in cases {
            let mut km = hex(key);
            km.extend_from_slice(&[0; 20]);
            let k = CbcKey::new(AesCbc::Aes128, Integ::HmacSha1_96, &km).unwrap();
            let iv: [u8; 16] = hex(iv).try_into().unwrap();
            let mut buf = pt.clone();
            k.encrypt(&iv, &mut buf);
            assert_eq!(buf, hex(ct));
            k.decrypt(&iv, &mut buf);
            assert_eq!(buf, pt);
        }
    }

    #[test]
    fn keymat_is_encryption_key_then_integrity_key() {
        for (cipher, integ) in [
            (AesCbc::Aes128, Integ::HmacSha1_96),
            (AesCbc::Aes192, Integ::HmacSha384_192),
            (AesCbc::Aes256, Integ::HmacSha512_256),
        ] {
            let n = cipher.key_len() + integ.key_len();
            assert!(CbcKey::new(cipher, integ, &vec![1; n]).is_ok());
            assert_eq!(
                CbcKey::new(cipher, integ, &vec![1; n - 1]).err(),
                Some(SaError::KeymatLength {
                    expected: n,
                    actual: n - 1
                })
            );
        }
        // The integrity key is the tail: changing only the tail changes the ICV and
        // leaves the ciphertext alone.
        let mut a = vec![3u8; 16 + 32];
        let ka = CbcKey::new(AesCbc::Aes128, Integ::HmacSha256_128, &a).unwrap();
        a[16] ^= 1;
        let kb = CbcKey::new(AesCbc::Aes128, Integ::HmacSha256_128, &a).unwrap();
        assert_ne!(icv(&ka, b"x"), icv(&kb, b"x"));
        let (mut ca, mut cb) = ([9u8; 32], [9u8; 32]);
        ka.encrypt(&[0; 16], &mut ca);
        kb.encrypt(&[0; 16], &mut cb);
        assert_eq!(ca, cb);
    }

    #[test]
    fn ivs_are_distinct_per_sequence_number_and_per_sa() {
        let g = IvGenerator::random().unwrap();
        let h = IvGenerator::random().unwrap();
        let ivs: std::collections::HashSet<[u8; 16]> = (1..1000).map(|s| g.iv(s)).collect();
        assert_eq!(ivs.len(), 999);
        assert_ne!(g.iv(1), h.iv(1));
        assert_eq!(g.iv(5), g.iv(5));
    }

    #[test]
    fn transform_ids() {
        for i in [
            Integ::HmacSha1_96,
            Integ::HmacSha256_128,
            Integ::HmacSha384_192,
            Integ::HmacSha512_256,
        ] {
            assert_eq!(Integ::from_transform(i.transform_id()), Some(i));
            assert!(i.icv_len() <= MAX_ICV_LEN);
        }
        assert_eq!(Integ::from_transform(5), None); // AUTH_AES_XCBC_96
        for c in [AesCbc::Aes128, AesCbc::Aes192, AesCbc::Aes256] {
            assert_eq!(AesCbc::from_key_bits(c.key_bits()), Some(c));
        }
        assert_eq!(AesCbc::from_key_bits(64), None);
    }
}
