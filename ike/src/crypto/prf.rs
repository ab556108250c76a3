//! Pseudorandom functions (transform type 2) and prf+ (RFC 7296 2.13).

use std::fmt;

use ring::hmac;
use zeroize::Zeroizing;

use super::integ::XcbcKey;
use super::{CryptoError, SecretBytes};
use crate::iana::{prf as id, transform};
use crate::wire::Transform;

/// A pseudorandom function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (RFC 2104), for peers that still propose it.
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (RFC 4868).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (RFC 4868).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (RFC 4868).
    HmacSha512,
    /// PRF_AES128_XCBC (RFC 4434).
    Aes128Xcbc,
}

impl Prf {
    /// All supported PRFs.
    pub const ALL: [Prf; 5] = [
        Prf::HmacSha1,
        Prf::HmacSha256,
        Prf::HmacSha384,
        Prf::HmacSha512,
        Prf::Aes128Xcbc,
    ];

    /// The PRF for an IANA transform ID, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.id() == id)
    }

    /// The PRF a wire transform names (type PRF, no attributes), if supported.
    pub fn from_transform(t: &Transform) -> Option<Self> {
        if t.kind != transform::PRF || t.key_length.is_some() {
            return None;
        }
        Self::from_id(t.id)
    }

    /// IANA transform ID.
    pub fn id(self) -> u16 {
        match self {
            Prf::HmacSha1 => id::HMAC_SHA1,
            Prf::HmacSha256 => id::HMAC_SHA2_256,
            Prf::HmacSha384 => id::HMAC_SHA2_384,
            Prf::HmacSha512 => id::HMAC_SHA2_512,
            Prf::Aes128Xcbc => id::AES128_XCBC,
        }
    }

    /// The wire transform.
    pub fn transform(self) -> Transform {
        Transform {
            kind: transform::PRF,
            id: self.id(),
            key_length: None,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
            Prf::Aes128Xcbc => 16,
        }
    }

    /// Preferred key length in bytes: the length of SK_d, SK_pi and SK_pr (RFC 7296
    /// 2.13; RFC 4868 2.1.2: the output size; RFC 4434: 128 bits).
    pub fn key_len(self) -> usize {
        self.output_len()
    }

    /// strongSwan's proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Prf::HmacSha1 => "prfsha1",
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
            Prf::Aes128Xcbc => "prfaesxcbc",
        }
    }

    /// `prf(key, data)`; keys of any length are accepted (RFC 2104 for HMAC, RFC 4434 2
    /// for AES-XCBC-PRF-128).
    pub fn compute(self, key: &[u8], data: &[u8]) -> SecretBytes {
        PrfKey::new(self, key).compute(&[data])
    }

    /// `prf(key, parts[0] | parts[1] | ...)` without concatenating the parts first.
    pub fn compute_parts(self, key: &[u8], parts: &[&[u8]]) -> SecretBytes {
        PrfKey::new(self, key).compute(parts)
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PRF keyed once and used for many blocks (prf+).
pub(crate) struct PrfKey(PrfKeyInner);

enum PrfKeyInner {
    Hmac(hmac::Key),
    Xcbc(Box<XcbcKey>),
}

impl PrfKey {
    pub(crate) fn new(prf: Prf, key: &[u8]) -> Self {
        let key = match prf {
            Prf::HmacSha1 => {
                PrfKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key))
            }
            Prf::HmacSha256 => PrfKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA256, key)),
            Prf::HmacSha384 => PrfKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA384, key)),
            Prf::HmacSha512 => PrfKeyInner::Hmac(hmac::Key::new(hmac::HMAC_SHA512, key)),
            Prf::Aes128Xcbc => PrfKeyInner::Xcbc(Box::new(XcbcKey::new(&xcbc_prf_key(key)))),
        };
        Self(key)
    }

    pub(crate) fn compute(&self, parts: &[&[u8]]) -> SecretBytes {
        match &self.0 {
            PrfKeyInner::Hmac(k) => {
                let mut ctx = hmac::Context::with_key(k);
                for p in parts {
                    ctx.update(p);
                }
                SecretBytes::from_slice(ctx.sign().as_ref())
            }
            PrfKeyInner::Xcbc(k) => SecretBytes::from_slice(&Zeroizing::new(k.mac(parts))[..]),
        }
    }
}

/// RFC 4434 2: a key shorter than 128 bits is padded with zeros on the right; a longer
/// one is replaced by AES-XCBC-PRF-128 of it under the all-zero key.
fn xcbc_prf_key(key: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut k = Zeroizing::new([0u8; 16]);
    match key.len() {
        16 => k.copy_from_slice(key),
        n if n < 16 => k[..n].copy_from_slice(key),
        _ => k.copy_from_slice(&XcbcKey::new(&[0; 16]).mac(&[key])),
    }
    k
}

/// prf+ (RFC 7296 2.13): `T1 | T2 | ...` truncated to `len`, where
/// `T1 = prf(K, S | 0x01)` and `Tn = prf(K, Tn-1 | S | n)`. The counter is one octet,
/// so at most 255 blocks can be produced.
pub fn prf_plus(prf: Prf, key: &[u8], seed: &[u8], len: usize) -> Result<SecretBytes, CryptoError> {
    let block = prf.output_len();
    if len > 255 * block {
        return Err(CryptoError::PrfPlusTooLong(len));
    }
    let key = PrfKey::new(prf, key);
    let mut out = Zeroizing::new(Vec::with_capacity(len + block));
    let mut prev = SecretBytes::default();
    let mut n: u8 = 1;
    while out.len() < len {
        let t = key.compute(&[prev.as_bytes(), seed, &[n]]);
        out.extend_from_slice(t.as_bytes());
        prev = t;
        n = n.wrapping_add(1);
    }
    out.truncate(len);
    Ok(SecretBytes::new(std::mem::take(&mut *out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    fn seq(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    // RFC 4868 2.7.1, PRF test cases 1, 3, 4 and 5 (20-, 25- and 131-byte keys).
    #[test]
    fn rfc4868_prf_hmac_sha2() {
        let long_key = vec![0xaa; 131];
        let cases: [(Prf, Vec<u8>, Vec<u8>, &str); 9] = [
            (
                Prf::HmacSha256,
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                Prf::HmacSha384,
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6",
            ),
            (
                Prf::HmacSha512,
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                Prf::HmacSha256,
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                Prf::HmacSha384,
                (1..=25).collect(),
                vec![0xcd; 50],
                "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                 6801dd23c4a7d679ccf8a386c674cffb",
            ),
            (
                Prf::HmacSha512,
                vec![0xaa; 20],
                vec![0xdd; 50],
                "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                 bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
            ),
            (
                Prf::HmacSha256,
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                Prf::HmacSha384,
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                 0c2ef6ab4030fe8296248df163f44952",
            ),
            (
                Prf::HmacSha512,
                long_key,
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ),
        ];
        for (prf, key, data, out) in cases {
            assert_eq!(prf.compute(&key, &data).as_bytes(), hex(out), "{prf:?}");
        }
    }

    // RFC 4434 2.1: AES-XCBC-PRF-128 with 16-, 10- and 18-byte keys (20-byte input),
    // and RFC 3566 4.6 cases as full 128-bit PRF outputs.
    #[test]
    fn rfc4434_aes_xcbc_prf_128() {
        let msg20 = seq(20);
        let mut key18 = seq(16);
        key18.extend_from_slice(&[0xed, 0xcb]);
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (seq(16), seq(20), "47f51b4564966215b8985c63055ed308"),
            (seq(10), msg20.clone(), "0fa087af7d866e7653434e602fdde835"),
            (key18, msg20, "8cd3c93ae598a9803006ffb67c40e9e4"),
            (seq(16), seq(0), "75f0251d528ac01c4573dfd584d79f29"),
            (seq(16), seq(3), "5b376580ae2f19afe7219ceef172756f"),
            (seq(16), seq(16), "d2a246fa349b68a79998a4394ff7a263"),
            (seq(16), seq(32), "f54f0ec8d2b9f3d36807734bd5283fd4"),
        ];
        for (key, data, out) in cases {
            let got = Prf::Aes128Xcbc.compute(&key, &data);
            assert_eq!(got.as_bytes(), hex(out), "key {} bytes", key.len());
        }
    }

    /// prf+ written out as RFC 7296 2.13 states it, with ring's HMAC directly.
    fn reference_prf_plus(alg: hmac::Algorithm, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let key = hmac::Key::new(alg, key);
        let (mut out, mut t) = (Vec::new(), Vec::new());
        for n in 1u8..=255 {
            let mut input = t.clone();
            input.extend_from_slice(seed);
            input.push(n);
            t = hmac::sign(&key, &input).as_ref().to_vec();
            out.extend_from_slice(&t);
            if out.len() >= len {
                break;
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn prf_plus_matches_reference() {
        let key = seq(37);
        let seed = b"Ni | Nr | SPIi | SPIr".repeat(3);
        for (prf, alg) in [
            (Prf::HmacSha256, hmac::HMAC_SHA256),
            (Prf::HmacSha384, hmac::HMAC_SHA384),
            (Prf::HmacSha512, hmac::HMAC_SHA512),
        ] {
            for len in [0, 1, 31, 32, 33, 200, 255 * prf.output_len()] {
                let got = prf_plus(prf, &key, &seed, len).unwrap();
                assert_eq!(
                    got.as_bytes(),
                    reference_prf_plus(alg, &key, &seed, len),
                    "{prf:?} {len}"
                );
            }
        }
    }

    #[test]
    fn prf_plus_xcbc_blocks_chain() {
        let (key, seed) = (seq(16), seq(40));
        let out = prf_plus(Prf::Aes128Xcbc, &key, &seed, 40).unwrap();
        let t1 = Prf::Aes128Xcbc.compute_parts(&key, &[&seed, &[1]]);
        let t2 = Prf::Aes128Xcbc.compute_parts(&key, &[t1.as_bytes(), &seed, &[2]]);
        let t3 = Prf::Aes128Xcbc.compute_parts(&key, &[t2.as_bytes(), &seed, &[3]]);
        assert_eq!(&out.as_bytes()[..16], t1.as_bytes());
        assert_eq!(&out.as_bytes()[16..32], t2.as_bytes());
        assert_eq!(&out.as_bytes()[32..], &t3.as_bytes()[..8]);
    }

    #[test]
    fn prf_plus_is_bounded() {
        assert_eq!(
            prf_plus(Prf::HmacSha256, b"k", b"s", 255 * 32 + 1).unwrap_err(),
            CryptoError::PrfPlusTooLong(255 * 32 + 1)
        );
    }

    #[test]
    fn transform_round_trip() {
        for p in Prf::ALL {
            assert_eq!(Prf::from_transform(&p.transform()), Some(p));
        }
    }
}
