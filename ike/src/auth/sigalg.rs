//! Signature algorithms: X.509 and RFC 7427 AlgorithmIdentifiers mapped onto ring's
//! verification algorithms, and the public keys they verify with.

use der::asn1::ObjectIdentifier;
use der::Decode;
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::asn1::{self, tag};
use super::Error;

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const MGF1: &str = "1.2.840.113549.1.1.8";
const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

/// RFC 7427 Appendix A: sha256WithRSAEncryption with NULL parameters.
pub(crate) const ALG_ID_SHA256_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// RFC 7427 Appendix A: ecdsa-with-SHA256, no parameters.
pub(crate) const ALG_ID_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// RFC 7427 Appendix A: ecdsa-with-SHA384, no parameters.
pub(crate) const ALG_ID_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
/// RFC 7427 Appendix A: ecdsa-with-SHA512, no parameters.
pub(crate) const ALG_ID_ECDSA_SHA512: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
];

/// RFC 7427 Appendix A: sha384WithRSAEncryption with NULL parameters.
pub(crate) const ALG_ID_SHA384_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
/// RFC 7427 Appendix A: sha512WithRSAEncryption with NULL parameters.
pub(crate) const ALG_ID_SHA512_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];

/// A digest paired with a signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// A signature scheme as named by an AlgorithmIdentifier or an IKE auth method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigAlg {
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS, MGF1 with the same hash, salt as long as the hash.
    RsaPss(Hash),
    /// ECDSA with a DER (r, s) signature.
    Ecdsa(Hash),
    /// RFC 4754: ECDSA P-256 SHA-256 with r || s.
    EcdsaP256Fixed,
    /// RFC 4754: ECDSA P-384 SHA-384 with r || s.
    EcdsaP384Fixed,
    /// RFC 4754: ECDSA P-521 SHA-512 with r || s.
    EcdsaP521Fixed,
}

/// A certificate's public key, in the form ring takes.
#[derive(Debug, Clone)]
pub(crate) enum PublicKey {
    /// RSAPublicKey DER.
    Rsa(Vec<u8>),
    /// Uncompressed point on P-256.
    P256(Vec<u8>),
    /// Uncompressed point on P-384.
    P384(Vec<u8>),
    /// Uncompressed point on P-521.
    P521(Vec<u8>),
}

fn oid_is(oid: &ObjectIdentifier, s: &str) -> bool {
    oid.to_string() == s
}

fn hash_of(oid: &ObjectIdentifier) -> Option<Hash> {
    match oid.to_string().as_str() {
        SHA256 => Some(Hash::Sha256),
        SHA384 => Some(Hash::Sha384),
        SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

impl SigAlg {
    /// The scheme an AlgorithmIdentifier names.
    pub(crate) fn from_alg_id(alg: &AlgorithmIdentifierOwned) -> Result<SigAlg, Error> {
        let unsupported = || Error::UnsupportedAlgorithm(alg.oid.to_string());
        Ok(match alg.oid.to_string().as_str() {
            SHA256_WITH_RSA => SigAlg::RsaPkcs1(Hash::Sha256),
            SHA384_WITH_RSA => SigAlg::RsaPkcs1(Hash::Sha384),
            SHA512_WITH_RSA => SigAlg::RsaPkcs1(Hash::Sha512),
            ECDSA_SHA256 => SigAlg::Ecdsa(Hash::Sha256),
            ECDSA_SHA384 => SigAlg::Ecdsa(Hash::Sha384),
            ECDSA_SHA512 => SigAlg::Ecdsa(Hash::Sha512),
            RSASSA_PSS => {
                let params = alg.parameters.as_ref().ok_or_else(unsupported)?;
                SigAlg::RsaPss(
                    pss_hash(params.value()).ok_or_else(|| {
                        Error::UnsupportedAlgorithm("RSASSA-PSS parameters".into())
                    })?,
                )
            }
            _ => return Err(unsupported()),
        })
    }

    /// The scheme a DER AlgorithmIdentifier (as in RFC 7427 AUTH data) names.
    pub(crate) fn from_der(der: &[u8]) -> Result<SigAlg, Error> {
        let alg = AlgorithmIdentifierOwned::from_der(der)
            .map_err(|e| Error::Malformed(format!("AlgorithmIdentifier: {e}")))?;
        SigAlg::from_alg_id(&alg)
    }
}

/// RFC 4055 3.1 RSASSA-PSS-params (the SEQUENCE contents): the hash, when MGF1 uses
/// the same hash and the salt is as long as the digest (all ring verifies).
fn pss_hash(mut params: &[u8]) -> Option<Hash> {
    let (mut hash, mut mgf_hash, mut salt) = (None, None, 20usize);
    while !params.is_empty() {
        let field = asn1::read(params)?;
        params = field.rest;
        let inner = || asn1::expect(field.value, tag::SEQUENCE);
        match field.tag {
            0xa0 => hash = hash_of(&alg_oid(inner()?.value)?),
            0xa1 => {
                let inner = inner()?;
                if !oid_is(&alg_oid(inner.value)?, MGF1) {
                    return None;
                }
                let oid = asn1::expect(inner.value, tag::OID)?;
                let mgf_alg = asn1::expect(oid.rest, tag::SEQUENCE)?;
                mgf_hash = hash_of(&alg_oid(mgf_alg.value)?);
            }
            0xa2 => {
                let n = asn1::expect(field.value, tag::INTEGER)?.value;
                if n.len() > 2 {
                    return None;
                }
                salt = n.iter().fold(0, |a, &b| (a << 8) | usize::from(b));
            }
            0xa3 => {
                if asn1::expect(field.value, tag::INTEGER)?.value != [1] {
                    return None;
                }
            }
            _ => return None,
        }
    }
    let hash = hash?;
    let len = match hash {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
        Hash::Sha1 => return None,
    };
    (mgf_hash == Some(hash) && salt == len).then_some(hash)
}

/// The OID at the start of AlgorithmIdentifier contents.
fn alg_oid(contents: &[u8]) -> Option<ObjectIdentifier> {
    ObjectIdentifier::from_bytes(asn1::expect(contents, tag::OID)?.value).ok()
}

impl PublicKey {
    /// The key of a SubjectPublicKeyInfo: RSA, or EC on P-256/P-384/P-521.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, Error> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Malformed("public key bit string".into()))?
            .to_vec();
        let alg = &spki.algorithm;
        if oid_is(&alg.oid, RSA_ENCRYPTION) {
            return Ok(PublicKey::Rsa(bits));
        }
        if oid_is(&alg.oid, EC_PUBLIC_KEY) {
            let curve = alg
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .map(|o| o.to_string());
            return match curve.as_deref() {
                Some(P256) => Ok(PublicKey::P256(bits)),
                Some(P384) => Ok(PublicKey::P384(bits)),
                Some(P521) => Ok(PublicKey::P521(bits)),
                c => Err(Error::UnsupportedAlgorithm(format!("EC curve {c:?}"))),
            };
        }
        Err(Error::UnsupportedAlgorithm(format!("key type {}", alg.oid)))
    }

    /// Verifies `signature` over `msg` with scheme `alg`.
    pub(crate) fn verify(
        &self,
        alg: SigAlg,
        msg: &[u8],
        signature: &[u8],
        what: &str,
    ) -> Result<(), Error> {
        use Hash::*;
        let (ring_alg, key): (&'static dyn VerificationAlgorithm, &[u8]) = match (self, alg) {
            (PublicKey::Rsa(k), SigAlg::RsaPkcs1(h)) => (
                match h {
                    Sha1 => &sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                    Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                },
                k,
            ),
            (PublicKey::Rsa(k), SigAlg::RsaPss(h)) => (
                match h {
                    Sha256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Sha384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Sha512 => &sig::RSA_PSS_2048_8192_SHA512,
                    Sha1 => return Err(Error::UnsupportedAlgorithm("PSS with SHA-1".into())),
                },
                k,
            ),
            (PublicKey::P256(k), SigAlg::Ecdsa(Sha256)) => (&sig::ECDSA_P256_SHA256_ASN1, k),
            (PublicKey::P256(k), SigAlg::Ecdsa(Sha384)) => (&sig::ECDSA_P256_SHA384_ASN1, k),
            (PublicKey::P384(k), SigAlg::Ecdsa(Sha256)) => (&sig::ECDSA_P384_SHA256_ASN1, k),
            (PublicKey::P384(k), SigAlg::Ecdsa(Sha384)) => (&sig::ECDSA_P384_SHA384_ASN1, k),
            (PublicKey::P256(k), SigAlg::EcdsaP256Fixed) => (&sig::ECDSA_P256_SHA256_FIXED, k),
            (PublicKey::P384(k), SigAlg::EcdsaP384Fixed) => (&sig::ECDSA_P384_SHA384_FIXED, k),
            (PublicKey::P256(k) | PublicKey::P384(k), SigAlg::Ecdsa(Sha512)) => {
                return self.verify_ecdsa_sha512(k, msg, signature, what);
            }
            (PublicKey::P521(k), SigAlg::Ecdsa(h @ (Sha256 | Sha384 | Sha512))) => {
                return verify_p521(k, h, false, msg, signature, what);
            }
            (PublicKey::P521(k), SigAlg::EcdsaP521Fixed) => {
                return verify_p521(k, Sha512, true, msg, signature, what);
            }
            (key, alg) => {
                let kind = match key {
                    PublicKey::Rsa(_) => "RSA",
                    PublicKey::P256(_) => "P-256",
                    PublicKey::P384(_) => "P-384",
                    PublicKey::P521(_) => "P-521",
                };
                return Err(Error::UnsupportedAlgorithm(format!(
                    "{alg:?} with a {kind} key"
                )));
            }
        };
        UnparsedPublicKey::new(ring_alg, key)
            .verify(msg, signature)
            .map_err(|_| Error::BadSignature(what.to_string()))
    }

    /// ECDSA with SHA-512 and a DER signature on P-256 or P-384, which ring does not
    /// verify: the digest from ring, the curve arithmetic from the RustCrypto crates
    /// (FIPS 186-4 6.4: a digest longer than the curve order is cut to its leftmost bits).
    fn verify_ecdsa_sha512(
        &self,
        point: &[u8],
        msg: &[u8],
        signature: &[u8],
        what: &str,
    ) -> Result<(), Error> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let digest = ring::digest::digest(&ring::digest::SHA512, msg);
        let bad = |_| Error::BadSignature(what.to_string());
        let bad_key = |_| Error::Malformed("EC public key".into());
        match self {
            PublicKey::P256(_) => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_key)?;
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(bad)?;
                key.verify_prehash(digest.as_ref(), &sig).map_err(bad)
            }
            PublicKey::P384(_) => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_key)?;
                let sig = p384::ecdsa::Signature::from_der(signature).map_err(bad)?;
                key.verify_prehash(digest.as_ref(), &sig).map_err(bad)
            }
            PublicKey::Rsa(_) | PublicKey::P521(_) => Err(Error::UnsupportedAlgorithm(
                "ECDSA SHA-512 on this key type".into(),
            )),
        }
    }
}

/// ECDSA on P-521, which ring does not do: the digest from ring, the curve arithmetic
/// from the p521 crate; `fixed` is RFC 4754's r || s (66 bytes each), else DER.
fn verify_p521(
    point: &[u8],
    hash: Hash,
    fixed: bool,
    msg: &[u8],
    signature: &[u8],
    what: &str,
) -> Result<(), Error> {
    use p521::ecdsa::signature::hazmat::PrehashVerifier;
    let alg = match hash {
        Hash::Sha256 => &ring::digest::SHA256,
        Hash::Sha384 => &ring::digest::SHA384,
        Hash::Sha512 => &ring::digest::SHA512,
        Hash::Sha1 => return Err(Error::UnsupportedAlgorithm("ECDSA with SHA-1".into())),
    };
    let digest = p521_prehash(ring::digest::digest(alg, msg).as_ref());
    let bad = |_| Error::BadSignature(what.to_string());
    let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(point)
        .map_err(|_| Error::Malformed("EC public key".into()))?;
    let sig = if fixed {
        p521::ecdsa::Signature::from_slice(signature).map_err(bad)?
    } else {
        p521::ecdsa::Signature::from_der(signature).map_err(bad)?
    };
    key.verify_prehash(&digest, &sig).map_err(bad)
}

/// A digest as the p521 crate takes it: at least half the field's 66 bytes. A shorter
/// one (SHA-256) gets leading zeros, which leave its value, the integer ECDSA signs
/// (FIPS 186-4 6.4), unchanged.
pub(crate) fn p521_prehash(digest: &[u8]) -> Vec<u8> {
    let mut z = vec![0u8; 33usize.saturating_sub(digest.len())];
    z.extend_from_slice(digest);
    z
}
