//! Integrity transforms: HMAC-SHA1-96 (RFC 2404), HMAC-SHA2 truncated (RFC 4868) and
//! AES-XCBC-MAC-96 (RFC 3566),
//! plus the AES-XCBC-MAC core that the AES128_XCBC PRF (RFC 4434) shares.

use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Block};
use ring::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::CryptoError;
use crate::iana::{integ as id, transform};
use crate::wire::Transform;

/// An integrity algorithm (transform type 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (RFC 2404): 20-byte key, 12-byte ICV; what AWS's and many
    /// firewalls' sample configurations still start from.
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868): 32-byte key, 16-byte ICV.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868): 48-byte key, 24-byte ICV.
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868): 64-byte key, 32-byte ICV.
    HmacSha512_256,
    /// AUTH_AES_XCBC_96 (RFC 3566): 16-byte key, 12-byte ICV.
    AesXcbc96,
}

impl Integ {
    /// All supported integrity algorithms.
    pub const ALL: [Integ; 5] = [
        Integ::HmacSha1_96,
        Integ::HmacSha256_128,
        Integ::HmacSha384_192,
        Integ::HmacSha512_256,
        Integ::AesXcbc96,
    ];

    /// The algorithm for an IANA transform ID, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.id() == id)
    }

    /// The algorithm a wire transform names (type INTEG, no attributes), if supported.
    pub fn from_transform(t: &Transform) -> Option<Self> {
        if t.kind != transform::INTEG || t.key_length.is_some() {
            return None;
        }
        Self::from_id(t.id)
    }

    /// IANA transform ID.
    pub fn id(self) -> u16 {
        match self {
            Integ::HmacSha1_96 => id::HMAC_SHA1_96,
            Integ::HmacSha256_128 => id::HMAC_SHA2_256_128,
            Integ::HmacSha384_192 => id::HMAC_SHA2_384_192,
            Integ::HmacSha512_256 => id::HMAC_SHA2_512_256,
            Integ::AesXcbc96 => id::AES_XCBC_96,
        }
    }

    /// The wire transform.
    pub fn transform(self) -> Transform {
        Transform {
            kind: transform::INTEG,
            id: self.id(),
            key_length: None,
        }
    }

    /// Key length in bytes: the length of SK_ai/SK_ar (RFC 4868 2.1.1: the hash output
    /// size; RFC 3566: 128 bits).
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 20,
            Integ::HmacSha256_128 => 32,
            Integ::HmacSha384_192 => 48,
            Integ::HmacSha512_256 => 64,
            Integ::AesXcbc96 => 16,
        }
    }

    /// Length of the truncated ICV in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            Integ::HmacSha1_96 => 12,
            Integ::HmacSha256_128 => 16,
            Integ::HmacSha384_192 => 24,
            Integ::HmacSha512_256 => 32,
            Integ::AesXcbc96 => 12,
        }
    }

    /// strongSwan's proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Integ::HmacSha1_96 => "sha1",
            Integ::HmacSha256_128 => "sha256",
            Integ::HmacSha384_192 => "sha384",
            Integ::HmacSha512_256 => "sha512",
            Integ::AesXcbc96 => "aesxcbc",
        }
    }

    /// The truncated ICV over the concatenation of `parts`.
    pub fn sign(self, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        let key = IntegKey::new(self, key)?;
        let mut out = vec![0; self.icv_len()];
        key.sign(parts, &mut out);
        Ok(out)
    }

    /// Checks a truncated ICV in constant time.
    pub fn verify(self, key: &[u8], parts: &[&[u8]], icv: &[u8]) -> Result<bool, CryptoError> {
        Ok(IntegKey::new(self, key)?.verify(parts, icv))
    }
}

impl fmt::Display for Integ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A prepared integrity key, kept by the SK cipher for the life of the IKE SA.
pub(crate) struct IntegKey {
    alg: Integ,
    key: IntegKeyInner,
}

enum IntegKeyInner {
    Hmac(hmac::Key),
    Xcbc(Box<XcbcKey>),
}

impl IntegKey {
    /// Prepares `key`, which must have exactly the algorithm's key length.
    pub(crate) fn new(alg: Integ, key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != alg.key_len() {
            return Err(CryptoError::KeyLength {
                len: key.len(),
                expected: alg.key_len(),
            });
        }
        let key = match alg {
            Integ::HmacSha1_96 => {
                IntegKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key))
            }
            Integ::HmacSha256_128 => IntegKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA256, key)),
            Integ::HmacSha384_192 => IntegKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA384, key)),
            Integ::HmacSha512_256 => IntegKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA512, key)),
            Integ::AesXcbc96 => {
                let mut k = [0u8; 16];
                k.copy_from_slice(key);
                let k = Zeroizing::new(k);
                IntegKeyInner::Xcbc(Box::new(XcbcKey::new(&k)))
            }
        };
        Ok(Self { alg, key })
    }

    /// The algorithm.
    pub(crate) fn alg(&self) -> Integ {
        self.alg
    }

    /// Writes the truncated ICV over `parts` to `out` (`out.len()` is the ICV length).
    pub(crate) fn sign(&self, parts: &[&[u8]], out: &mut [u8]) {
        let full = self.full_tag(parts);
        let n = out.len().min(full.len());
        out[..n].copy_from_slice(&full[..n]);
    }

    /// Computes the full tag and compares its prefix with `icv` in constant time
    /// (RFC 4868 2.1: the ICV is the leftmost bits of the HMAC output).
    pub(crate) fn verify(&self, parts: &[&[u8]], icv: &[u8]) -> bool {
        if icv.len() != self.alg.icv_len() {
            return false;
        }
        let full = self.full_tag(parts);
        full[..icv.len()].ct_eq(icv).into()
    }

    fn full_tag(&self, parts: &[&[u8]]) -> Vec<u8> {
        match &self.key {
            IntegKeyInner::Hmac(k) => {
                let mut ctx = hmac::Context::with_key(k);
                for p in parts {
                    ctx.update(p);
                }
                ctx.sign().as_ref().to_vec()
            }
            IntegKeyInner::Xcbc(k) => k.mac(parts).to_vec(),
        }
    }
}

/// AES-XCBC-MAC (RFC 3566 4): the three derived keys.
pub(crate) struct XcbcKey {
    k1: Aes128,
    k2: Zeroizing<[u8; 16]>,
    k3: Zeroizing<[u8; 16]>,
}

impl XcbcKey {
    /// Derives K1, K2, K3 from the 128-bit key K (RFC 3566 4, step 1).
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        let k = Aes128::new(key.into());
        let derive = |byte: u8| {
            let mut b = Block::from([byte; 16]);
            k.encrypt_block(&mut b);
            let mut out = Zeroizing::new([0u8; 16]);
            out.copy_from_slice(&b);
            out
        };
        let k1 = derive(0x01);
        Self {
            k1: Aes128::new((&*k1).into()),
            k2: derive(0x02),
            k3: derive(0x03),
        }
    }

    /// The full 128-bit MAC over the concatenation of `parts` (RFC 3566 4, steps 2-3).
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut e = Block::default();
        // The last block is treated specially, so a full block is only processed once
        // more data is known to follow it.
        let mut buf = [0u8; 16];
        let mut used = 0;
        for part in parts {
            for &byte in *part {
                if used == 16 {
                    for (x, y) in e.iter_mut().zip(buf.iter()) {
                        *x ^= y;
                    }
                    self.k1.encrypt_block(&mut e);
                    used = 0;
                }
                buf[used] = byte;
                used += 1;
            }
        }
        // Step 3: a complete last block is XORed with K2; an incomplete one (including
        // the empty message) is padded with 0x80 00.. and XORed with K3.
        let last_key = if used == 16 {
            &self.k2
        } else {
            buf[used] = 0x80;
            buf[used + 1..].fill(0);
            &self.k3
        };
        for ((x, y), k) in e.iter_mut().zip(buf.iter()).zip(last_key.iter()) {
            *x ^= y ^ k;
        }
        self.k1.encrypt_block(&mut e);
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    fn seq(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    // RFC 3566 4.6, test cases 1-5 (key 000102..0f); the ICV is the first 96 bits.
    #[test]
    fn rfc3566_aes_xcbc_mac_96() {
        let key = seq(16);
        let cases = [
            (0, "75f0251d528ac01c4573dfd5"),
            (3, "5b376580ae2f19afe7219cee"),
            (16, "d2a246fa349b68a79998a439"),
            (20, "47f51b4564966215b8985c63"),
            (32, "f54f0ec8d2b9f3d36807734b"),
        ];
        for (len, icv) in cases {
            let msg = seq(len);
            assert_eq!(
                Integ::AesXcbc96.sign(&key, &[&msg]).unwrap(),
                hex(icv),
                "len {len}"
            );
            assert!(Integ::AesXcbc96.verify(&key, &[&msg], &hex(icv)).unwrap());
        }
    }

    #[test]
    fn xcbc_streaming_matches_one_shot() {
        let key = XcbcKey::new(&[7u8; 16]);
        let msg: Vec<u8> = (0..100).collect();
        for split in [0, 1, 15, 16, 17, 32, 99, 100] {
            let (a, b) = msg.split_at(split);
            assert_eq!(key.mac(&[a, b]), key.mac(&[&msg]), "split {split}");
        }
    }

    // RFC 4868 2.7.2.2 (authentication test cases 1 and 2, key sized to the hash output).
    #[test]
    fn rfc4868_hmac_sha2_truncated() {
        let hi = b"Hi There".as_slice();
        let what = b"what do ya want for nothing?".as_slice();
        let cases: [(Integ, Vec<u8>, &[u8], &str); 6] = [
            (
                Integ::HmacSha256_128,
                vec![0x0b; 32],
                hi,
                "198a607eb44bfbc69903a0f1cf2bbdc5",
            ),
            (
                Integ::HmacSha384_192,
                vec![0x0b; 48],
                hi,
                "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
            ),
            (
                Integ::HmacSha512_256,
                vec![0x0b; 64],
                hi,
                "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
            ),
            (
                Integ::HmacSha256_128,
                b"Jefe".repeat(8),
                what,
                "167f928588c5cc2eef8e3093caa0e87c",
            ),
            (
                Integ::HmacSha384_192,
                b"Jefe".repeat(12),
                what,
                "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d",
            ),
            (
                Integ::HmacSha512_256,
                b"Jefe".repeat(16),
                what,
                "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454",
            ),
        ];
        for (alg, key, data, icv) in cases {
            assert_eq!(alg.sign(&key, &[data]).unwrap(), hex(icv), "{alg:?}");
            assert!(alg.verify(&key, &[data], &hex(icv)).unwrap());
            let mut bad = hex(icv);
            bad[0] ^= 1;
            assert!(!alg.verify(&key, &[data], &bad).unwrap());
            assert!(!alg.verify(&key, &[data], &hex(icv)[1..]).unwrap());
        }
    }

    #[test]
    fn wrong_key_length_is_an_error() {
        assert!(Integ::HmacSha256_128.sign(&[0; 16], &[b"x"]).is_err());
        assert!(Integ::AesXcbc96.sign(&[0; 32], &[b"x"]).is_err());
    }

    #[test]
    fn transform_round_trip() {
        for i in Integ::ALL {
            assert_eq!(Integ::from_transform(&i.transform()), Some(i));
        }
        assert_eq!(Integ::from_id(0), None);
    }
}
