//! Key exchange methods (transform type 4): Curve25519 (RFC 8031), the random ECP
//! groups of RFC 5903 (256, 384 and 521 bits) and the MODP groups 2, 14, 15, 16 and 24
//! (`modp.rs`).

use std::fmt;

use zeroize::Zeroizing;

use super::modp::{self, Refused};
use super::{CryptoError, Rng, SecretBytes};
use crate::iana::{dh as id, transform};
use crate::wire::Transform;

/// A Diffie-Hellman group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dh {
    /// Curve25519 (group 31, RFC 8031).
    Curve25519,
    /// 256-bit random ECP group (group 19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group (group 20, RFC 5903).
    Ecp384,
    /// 521-bit random ECP group (group 21, RFC 5903).
    Ecp521,
    /// 1024-bit MODP group (group 2, RFC 2409): weak, only when configured by name.
    Modp1024,
    /// 2048-bit MODP group (group 14, RFC 3526).
    Modp2048,
    /// 3072-bit MODP group (group 15, RFC 3526).
    Modp3072,
    /// 4096-bit MODP group (group 16, RFC 3526).
    Modp4096,
    /// 2048-bit MODP group with a 256-bit subgroup (group 24, RFC 5114): doubtful
    /// provenance, only when configured by name.
    Modp2048s256,
}

impl Dh {
    /// All supported groups.
    pub const ALL: [Dh; 9] = [
        Dh::Curve25519,
        Dh::Ecp256,
        Dh::Ecp384,
        Dh::Ecp521,
        Dh::Modp1024,
        Dh::Modp2048,
        Dh::Modp3072,
        Dh::Modp4096,
        Dh::Modp2048s256,
    ];

    /// Groups esprit accepts only when a configuration names them, as charon does, and
    /// `esprit check` warns about: MODP-1024 is too small, and RFC 8247 deprecates the
    /// RFC 5114 group for its unexplained parameters.
    pub fn is_weak(self) -> bool {
        matches!(self, Dh::Modp1024 | Dh::Modp2048s256)
    }

    fn modp(self) -> Option<modp::Group> {
        Some(match self {
            Dh::Modp1024 => modp::MODP_1024,
            Dh::Modp2048 => modp::MODP_2048,
            Dh::Modp3072 => modp::MODP_3072,
            Dh::Modp4096 => modp::MODP_4096,
            Dh::Modp2048s256 => modp::MODP_2048_256,
            _ => return None,
        })
    }

    /// Bytes of a private key: the scalar of a curve, the exponent of a MODP group.
    pub fn private_len(self) -> usize {
        match self {
            Dh::Curve25519 | Dh::Ecp256 => 32,
            Dh::Ecp384 => 48,
            Dh::Ecp521 => 66,
            _ => self.modp().map_or(32, |g| g.exponent_len),
        }
    }

    /// The group for an IANA number, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.id() == id)
    }

    /// The group a wire transform names (type DH, no attributes), if supported.
    pub fn from_transform(t: &Transform) -> Option<Self> {
        if t.kind != transform::DH || t.key_length.is_some() {
            return None;
        }
        Self::from_id(t.id)
    }

    /// IANA group number, as in the KE payload.
    pub fn id(self) -> u16 {
        match self {
            Dh::Curve25519 => id::CURVE25519,
            Dh::Ecp256 => id::ECP_256,
            Dh::Ecp384 => id::ECP_384,
            Dh::Ecp521 => id::ECP_521,
            Dh::Modp1024 => id::MODP_1024,
            Dh::Modp2048 => id::MODP_2048,
            Dh::Modp3072 => id::MODP_3072,
            Dh::Modp4096 => id::MODP_4096,
            Dh::Modp2048s256 => id::MODP_2048_256,
        }
    }

    /// The wire transform.
    pub fn transform(self) -> Transform {
        Transform {
            kind: transform::DH,
            id: self.id(),
            key_length: None,
        }
    }

    /// Length of the public value in the KE payload: 32 (RFC 8031 2), x | y with a
    /// field element's bytes each (RFC 5903 7), or the modulus length (RFC 7296 3.4).
    pub fn public_len(self) -> usize {
        match self {
            Dh::Curve25519 => 32,
            Dh::Ecp256 => 64,
            Dh::Ecp384 => 96,
            Dh::Ecp521 => 132,
            _ => self.modp().map_or(0, |g| g.len),
        }
    }

    /// strongSwan's proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Dh::Curve25519 => "x25519",
            Dh::Ecp256 => "ecp256",
            Dh::Ecp384 => "ecp384",
            Dh::Ecp521 => "ecp521",
            Dh::Modp1024 => "modp1024",
            Dh::Modp2048 => "modp2048",
            Dh::Modp3072 => "modp3072",
            Dh::Modp4096 => "modp4096",
            Dh::Modp2048s256 => "modp2048s256",
        }
    }
}

impl fmt::Display for Dh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Our half of a key exchange: a private key and the public value for the KE payload.
pub struct DhKeyPair {
    group: Dh,
    private: Private,
    public: Vec<u8>,
}

enum Private {
    /// X25519 and the NIST curves: aws-lc's key, built from our own random bytes.
    Curve(aws_lc_rs::agreement::PrivateKey),
    /// A MODP group's exponent.
    Modp(modp::Group, Zeroizing<Vec<u8>>),
}

/// aws-lc's agreement algorithm for an elliptic-curve group.
fn curve(group: Dh) -> Option<&'static aws_lc_rs::agreement::Algorithm> {
    use aws_lc_rs::agreement::{ECDH_P256, ECDH_P384, ECDH_P521, X25519};
    match group {
        Dh::Curve25519 => Some(&X25519),
        Dh::Ecp256 => Some(&ECDH_P256),
        Dh::Ecp384 => Some(&ECDH_P384),
        Dh::Ecp521 => Some(&ECDH_P521),
        _ => None,
    }
}

/// SEC1 uncompressed form is 0x04 | x | y; IKE carries x | y (RFC 5903 7).
fn strip_sec1(point: &[u8]) -> Vec<u8> {
    point.get(1..).unwrap_or_default().to_vec()
}

/// x | y from a KE payload as a SEC1 uncompressed point.
fn sec1(xy: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(xy.len() + 1);
    v.push(0x04);
    v.extend_from_slice(xy);
    v
}

impl DhKeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate(group: Dh, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; group.private_len()]);
        // For the NIST curves a random string of the order's length is a valid scalar
        // (0 < d < n) except with probability below 2^-32, so a few attempts are plenty.
        for _ in 0..8 {
            rng.fill(&mut bytes[..]);
            if group == Dh::Ecp521 {
                // 521 bits: the top seven bits of 66 bytes stay clear.
                bytes[0] &= 0x01;
            }
            match Self::from_private(group, &bytes[..]) {
                Ok(pair) => return Ok(pair),
                Err(CryptoError::InvalidPublicValue(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CryptoError::KeyGeneration)
    }

    /// A key pair from a given private key ([`Dh::private_len`] bytes): for
    /// known-answer tests and for replaying another implementation's logged keys.
    pub fn from_private(group: Dh, private: &[u8]) -> Result<Self, CryptoError> {
        if private.len() != group.private_len() {
            return Err(CryptoError::KeyLength {
                len: private.len(),
                expected: group.private_len(),
            });
        }
        if let Some(alg) = curve(group) {
            // X25519 clamps the scalar inside the multiplication (RFC 7748 5); for the
            // NIST curves a scalar of 0 or not below the order is refused here, and
            // `generate` draws again.
            let private = aws_lc_rs::agreement::PrivateKey::from_private_key(alg, private)
                .map_err(|_| CryptoError::InvalidPublicValue(group.id()))?;
            let public = private
                .compute_public_key()
                .map_err(|_| CryptoError::KeyGeneration)?;
            let public = if group == Dh::Curve25519 {
                public.as_ref().to_vec()
            } else {
                strip_sec1(public.as_ref())
            };
            return Ok(Self {
                group,
                private: Private::Curve(private),
                public,
            });
        }
        let Some(g) = group.modp() else {
            return Err(CryptoError::InvalidPublicValue(group.id()));
        };
        // An exponent of 0 or 1 would make a trivial public value.
        if private.iter().rev().skip(1).all(|b| *b == 0) && private[private.len() - 1] < 2 {
            return Err(CryptoError::InvalidPublicValue(group.id()));
        }
        let x = Zeroizing::new(private.to_vec());
        let public = g.public(&x);
        Ok(Self {
            group,
            private: Private::Modp(g, x),
            public,
        })
    }

    /// The group.
    pub fn group(&self) -> Dh {
        self.group
    }

    /// The public value for our KE payload.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir from the peer's KE payload data. Checks the length, that
    /// an ECP point lies on the curve (RFC 5903 7 and 9) and that an X25519 result is
    /// not all zeros (RFC 8031 2.3).
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<SecretBytes, CryptoError> {
        let group = self.group;
        if peer_public.len() != group.public_len() {
            return Err(CryptoError::PublicValueLength {
                group: group.id(),
                len: peer_public.len(),
                expected: group.public_len(),
            });
        }
        match &self.private {
            Private::Curve(private) => {
                // RFC 5903 7: an ECP shared secret is the x coordinate only; aws-lc
                // refuses a point not on the curve (RFC 5903 9) and an all-zero X25519
                // result (RFC 8031 2.3), the only way X25519 can fail here.
                let peer = if group == Dh::Curve25519 {
                    peer_public.to_vec()
                } else {
                    sec1(peer_public)
                };
                let Some(alg) = curve(group) else {
                    return Err(CryptoError::InvalidPublicValue(group.id()));
                };
                let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(alg, peer);
                let refused = if group == Dh::Curve25519 {
                    CryptoError::ZeroSharedSecret
                } else {
                    CryptoError::InvalidPublicValue(group.id())
                };
                aws_lc_rs::agreement::agree(private, peer, refused, |z| {
                    Ok(SecretBytes::from_slice(z))
                })
            }
            Private::Modp(g, x) => match g.shared(x, peer_public) {
                Ok(z) => Ok(SecretBytes::from_slice(&z)),
                Err(Refused::OutOfRange | Refused::NotInSubgroup) => {
                    Err(CryptoError::InvalidPublicValue(group.id()))
                }
            },
        }
    }
}

impl fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("group", &self.group)
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{hex, SeededRng};

    // RFC 7748 6.1.
    #[test]
    fn rfc7748_x25519() {
        let a = DhKeyPair::from_private(
            Dh::Curve25519,
            &hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
        )
        .unwrap();
        let b = DhKeyPair::from_private(
            Dh::Curve25519,
            &hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
        )
        .unwrap();
        assert_eq!(
            a.public_value(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            b.public_value(),
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(a.shared_secret(b.public_value()).unwrap().as_bytes(), k);
        assert_eq!(b.shared_secret(a.public_value()).unwrap().as_bytes(), k);
    }

    // RFC 5903 8.1.
    #[test]
    fn rfc5903_ecp256() {
        let i = DhKeyPair::from_private(
            Dh::Ecp256,
            &hex("c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433"),
        )
        .unwrap();
        let r = DhKeyPair::from_private(
            Dh::Ecp256,
            &hex("c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53"),
        )
        .unwrap();
        assert_eq!(
            i.public_value(),
            hex(
                "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180\
                 5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3"
            )
        );
        assert_eq!(
            r.public_value(),
            hex(
                "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63\
                 56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab"
            )
        );
        let girx = hex("d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de");
        assert_eq!(i.shared_secret(r.public_value()).unwrap().as_bytes(), girx);
        assert_eq!(r.shared_secret(i.public_value()).unwrap().as_bytes(), girx);
    }

    fn kat(group: Dh, di: &str, gi: &str, dr: &str, gr: &str, z: &str) {
        let i = DhKeyPair::from_private(group, &hex(di)).unwrap();
        let r = DhKeyPair::from_private(group, &hex(dr)).unwrap();
        assert_eq!(i.public_value(), hex(gi), "{group} initiator public value");
        assert_eq!(r.public_value(), hex(gr), "{group} responder public value");
        assert_eq!(
            i.shared_secret(r.public_value()).unwrap().as_bytes(),
            hex(z)
        );
        assert_eq!(
            r.shared_secret(i.public_value()).unwrap().as_bytes(),
            hex(z)
        );
    }

    /// ecp384: values computed independently with Python (`cryptography` for the curves,
    /// built-in `pow` over RFC 3526's prime for MODP), from fixed private keys.
    #[test]
    fn independent_kat_ecp384() {
        kat(
            Dh::Ecp384,
            "11304f6e8daccbea0928476685a4c3e201203f5e7d9cbbdaf91837567594b3d2\
             f1102f4e6d8cabcae90827466584a3c2",
            "f5b8f0246d80e0ab32858c16cf133e62bca712a1acdc63129559d9b4ea72a907\
             7d4c7f2830cd1614066840a00dd9059dcd0b8a95815ce5f26bc15b37a95bfe26\
             34a59576065c72a0dde367b0437b4763898fcc45c45975463313c7e36175845a",
            "2241607f9ebddcfb1a39587796b5d4f31231506f8eadcceb0a29486786a5c4e3\
             0221405f7e9dbcdbfa1938577695b4d3",
            "04186088033a42a339c7a9809531fb4cbf15e27a47e977e41f45f26ca531a169\
             bbfffa234e14c25e303a3136469853821390bf21e9beb8564b2f91811400eb10\
             5c966720b9b886e26bbe465a1af386fa4488e69756687beb79e6558ea4116e0e",
            "916fbc6a68b87aa7c60c28024c04c95afae02c029f9fa14bd77961d2991c6b83\
             f427361cc5346e8b8863376d89bb755c",
        );
    }
    /// ecp521: values computed independently with Python (`cryptography` for the curves,
    /// built-in `pow` over RFC 3526's prime for MODP), from fixed private keys.
    #[test]
    fn independent_kat_ecp521() {
        kat(
            Dh::Ecp521,
            "00104f6e8daccbea0928476685a4c3e201203f5e7d9cbbdaf91837567594b3d2\
             f41a8e4fe80b5b536980c319b5786f9924902af569baf7187d75c86d5618dc85\
             491f",
            "01ea9eaaee431399372591bb47c884b14486fc08f3ff4fba1a3d01a4436b6865\
             f0b496fcbe5ca63c5dd64932bab3585615a00abc1cf86a10c55a9bf365a2cc55\
             d3c101d20df8baff3196f9f7131f1de670a39194175b069edfd80c405098ccff\
             eb50fd2db03272173288c0c4e92a8afc8e044d7f608ea597ba232854f617bdd8\
             6a7e2d1c",
            "0001607f9ebddcfb1a39587796b5d4f31231506f8eadcceb0a29486786a5c4e3\
             0835fe62739b1becfb0a6ffe167d4c80793147bd870a638731048ab567ce3668\
             d05f",
            "00d5cb842e49e4bc288f39016056e6a83f717dbe96c58394914921a60c64608d\
             565a802b868dba26ad10cef7d8be6e9cdd431bc37a256f12b7ef098ee31889fa\
             ee310083026c190c61de1d8ce6e7ff2cf405af7bcf661b47a7a8c43fefa42586\
             2239dfcf36b3e3a3ce1c4524c56f9d90a4f9814fe60894d855675cdd910317b6\
             cc26a0db",
            "008c53fe909424003a15b1ea9954d4c0d73ff2e2703fc418392ecdc01261e7e8\
             13455ee0aa6cdb02fe858cd5aaa9b971d48e02508c276222711bba9d9063c81e\
             f70f",
        );
    }
    /// modp2048: values computed independently with Python (`cryptography` for the curves,
    /// built-in `pow` over RFC 3526's prime for MODP), from fixed private keys.
    #[test]
    fn independent_kat_modp2048() {
        kat(
            Dh::Modp2048,
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\
             2122232425262728292a2b2c2d2e2f30",
            "9cfc875d28c50e49c8b19ce7ee7e4d56c75229955bdb2a8a83f1d24153ed7271\
             b34bd3ed791b27eb60ee0f5be49ef7422f363cbb713f2e86b6febe29e55376e6\
             0ed446bd5e45f9618c1e4f2c179d6c9b16e7fc7169de7a10e68cd36bfe0d654e\
             21b123d11dba85184877ed46654fcc7036f56b084def2b993328535e3f384447\
             77c6ce90fd69afe5258f801183403c57989d277e32ad4c50530221d37ef921cb\
             6a3d3f76d73b51f25eee77ed7a6b82a11d9e8d0d3e8139790b8973ba42caf496\
             be818af4cd79c6ab1c7a722c0be115916d5c55dc4b46ea1200a801685c3d9346\
             ba4b94e3b7fa755e7f120b75250017614d9a5d85d3a6f9bcb9d532f58560091e",
            "65666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f8081828384\
             85868788898a8b8c8d8e8f9091929394",
            "7902a3624078427538f62f362c995c1440e2f097efdd0e52e21c0c4e8930efe4\
             38f8c5cfa3c0c51aa1dcc90d7573350f5b98ee4c0083b6543de5bd51eb0e2649\
             b87e0b743e8fcd69db0228cea2c7cf3abcf4b52c7d117b801223557a9e8747d8\
             07a9f7fea3f5425d44dc74ae453fba555f2e368119d83894b62811af9ec939b2\
             142a63ff759dedb11186489baac04f9261c89a911dccf684bc540f741df6cc82\
             994c8a52994ebdfa2336846e780a31397e10840d1d48036ae4e0741b9b8bd0b7\
             50490f470122735db5469aceb3080e0ba55805a274cf6d61589ed386402a38b2\
             cc7f9f1baa4dc96acd37d79edf25ede2faeb8f3249370a59d89a8d907a25c47e",
            "39c9c967e785fa99185cbb45b194989b1f683f938b281709a4d938a3a427be35\
             89fd493e1b03bc6bf0c4a1caab8a6d2ede922caa791095ab724372f18fa9d7ab\
             20e6a9cbd30755c626fe8d371e93d41647bdb99e820cf63d704ee7668e245ca4\
             84e88bc5109cfb41544ef100452600b0e206286938bbb6e676746e7f0ec1fe1c\
             376e0de0f3cb720e1bff329cf92fd02684f1006a36d6dd9fc81ba9f476ae1679\
             978b98fd8781f8423fcff6d0efc400f5606ccb0af2e95050a1647d2d0e47ab57\
             af656d499d7cf3623bd534dee9459ec6bbfea644c0d194871db1fb5ab2f97997\
             fb2eb763c9b425c70995081ecf2d13814c2c3c46a08c7de81d3bef6f831bef80",
        );
    }

    #[test]
    fn rejects_bad_peer_values() {
        let mut rng = SeededRng::new(3);
        let x = DhKeyPair::generate(Dh::Curve25519, &mut rng).unwrap();
        assert!(matches!(
            x.shared_secret(&[1; 31]),
            Err(CryptoError::PublicValueLength {
                group: 31,
                len: 31,
                expected: 32
            })
        ));
        // The all-zero point (and other small-order points) give an all-zero secret.
        assert_eq!(
            x.shared_secret(&[0; 32]).unwrap_err(),
            CryptoError::ZeroSharedSecret
        );

        let e = DhKeyPair::generate(Dh::Ecp256, &mut rng).unwrap();
        assert!(matches!(
            e.shared_secret(&[1; 65]),
            Err(CryptoError::PublicValueLength { .. })
        ));
        assert!(matches!(
            e.shared_secret(&[]),
            Err(CryptoError::PublicValueLength { .. })
        ));
        // Not on the curve: (1, 1), and x = y = 0xff.. (outside the field).
        let mut off = [0u8; 64];
        off[31] = 1;
        off[63] = 1;
        assert_eq!(
            e.shared_secret(&off).unwrap_err(),
            CryptoError::InvalidPublicValue(19)
        );
        assert_eq!(
            e.shared_secret(&[0xff; 64]).unwrap_err(),
            CryptoError::InvalidPublicValue(19)
        );
    }

    #[test]
    fn generated_pairs_agree() {
        let mut rng = SeededRng::new(9);
        for group in Dh::ALL {
            let a = DhKeyPair::generate(group, &mut rng).unwrap();
            let b = DhKeyPair::generate(group, &mut rng).unwrap();
            assert_eq!(a.public_value().len(), group.public_len());
            assert_eq!(
                a.shared_secret(b.public_value()).unwrap().as_bytes(),
                b.shared_secret(a.public_value()).unwrap().as_bytes()
            );
            assert!(!format!("{a:?}").contains("private"));
        }
    }

    #[test]
    fn modp_refuses_out_of_range_and_off_subgroup_values() {
        let mut rng = SeededRng::new(5);
        for group in [Dh::Modp1024, Dh::Modp2048, Dh::Modp2048s256] {
            let me = DhKeyPair::generate(group, &mut rng).unwrap();
            let len = group.public_len();
            let num = |v: u8| {
                let mut b = vec![0u8; len];
                b[len - 1] = v;
                b
            };
            // 0 and 1 (RFC 6989 2.1; p - 1 in modp.rs), and all-ones (above p).
            for bad in [num(0), num(1), vec![0xff; len]] {
                assert_eq!(
                    me.shared_secret(&bad).unwrap_err(),
                    CryptoError::InvalidPublicValue(group.id()),
                    "{group}"
                );
            }
        }
        // 2 generates the whole group mod the RFC 5114 prime, not the order-q subgroup.
        let g24 = DhKeyPair::generate(Dh::Modp2048s256, &mut rng).unwrap();
        let mut two = vec![0u8; 256];
        two[255] = 2;
        assert_eq!(
            g24.shared_secret(&two).unwrap_err(),
            CryptoError::InvalidPublicValue(24)
        );
        // 2 is fine in a safe-prime group.
        let g14 = DhKeyPair::generate(Dh::Modp2048, &mut rng).unwrap();
        assert!(g14.shared_secret(&two).is_ok());
    }

    #[test]
    fn private_key_checks() {
        assert!(DhKeyPair::from_private(Dh::Ecp256, &[0; 32]).is_err());
        assert!(DhKeyPair::from_private(Dh::Ecp256, &[0xff; 32]).is_err());
        assert!(DhKeyPair::from_private(Dh::Curve25519, &[1; 31]).is_err());
    }
}
