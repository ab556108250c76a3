//! Key exchange methods (transform type 4): Curve25519 (RFC 8031) and the 256-bit
//! random ECP group (RFC 5903).

use std::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::Zeroizing;

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
}

impl Dh {
    /// All supported groups.
    pub const ALL: [Dh; 2] = [Dh::Curve25519, Dh::Ecp256];

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

    /// Length of the public value in the KE payload: 32 (RFC 8031 2), or x | y with 32
    /// bytes each (RFC 5903 7).
    pub fn public_len(self) -> usize {
        match self {
            Dh::Curve25519 => 32,
            Dh::Ecp256 => 64,
        }
    }

    /// strongSwan's proposal keyword.
    pub fn name(self) -> &'static str {
        match self {
            Dh::Curve25519 => "x25519",
            Dh::Ecp256 => "ecp256",
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
    X25519(x25519_dalek::StaticSecret),
    Ecp256(p256::SecretKey),
}

impl DhKeyPair {
    /// A fresh key pair from `rng`.
    pub fn generate(group: Dh, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        // For P-256 a random 32-byte string is a valid scalar (0 < d < n) except with
        // probability below 2^-32, so a few attempts are plenty.
        for _ in 0..8 {
            rng.fill(&mut bytes[..]);
            match Self::from_private(group, &bytes[..]) {
                Ok(pair) => return Ok(pair),
                Err(CryptoError::InvalidPublicValue(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CryptoError::KeyGeneration)
    }

    /// A key pair from a given private key (32 bytes for both groups): for known-answer
    /// tests and for replaying another implementation's logged keys.
    pub fn from_private(group: Dh, private: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; 32] = private.try_into().map_err(|_| CryptoError::KeyLength {
            len: private.len(),
            expected: 32,
        })?;
        let bytes = Zeroizing::new(bytes);
        match group {
            Dh::Curve25519 => {
                // RFC 7748 5: the scalar is clamped inside the scalar multiplication.
                let secret = x25519_dalek::StaticSecret::from(*bytes);
                let public = x25519_dalek::PublicKey::from(&secret).as_bytes().to_vec();
                Ok(Self {
                    group,
                    private: Private::X25519(secret),
                    public,
                })
            }
            Dh::Ecp256 => {
                let secret = p256::SecretKey::from_bytes(&(*bytes).into())
                    .map_err(|_| CryptoError::InvalidPublicValue(group.id()))?;
                let point = secret.public_key().to_encoded_point(false);
                // SEC1 uncompressed form is 0x04 | x | y; IKE carries x | y (RFC 5903 7).
                let public = point.as_bytes().get(1..).unwrap_or_default().to_vec();
                Ok(Self {
                    group,
                    private: Private::Ecp256(secret),
                    public,
                })
            }
        }
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
            Private::X25519(secret) => {
                let mut peer = [0u8; 32];
                peer.copy_from_slice(peer_public);
                let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
                if !shared.was_contributory() {
                    return Err(CryptoError::ZeroSharedSecret);
                }
                Ok(SecretBytes::from_slice(shared.as_bytes()))
            }
            Private::Ecp256(secret) => {
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[1..].copy_from_slice(peer_public);
                let peer = p256::PublicKey::from_sec1_bytes(&sec1)
                    .map_err(|_| CryptoError::InvalidPublicValue(group.id()))?;
                let shared =
                    p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                // RFC 5903 7: the shared secret is the x coordinate only.
                Ok(SecretBytes::from_slice(shared.raw_secret_bytes()))
            }
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
    fn private_key_checks() {
        assert!(DhKeyPair::from_private(Dh::Ecp256, &[0; 32]).is_err());
        assert!(DhKeyPair::from_private(Dh::Ecp256, &[0xff; 32]).is_err());
        assert!(DhKeyPair::from_private(Dh::Curve25519, &[1; 31]).is_err());
    }
}
