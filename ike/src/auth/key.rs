//! Our signing key and the AUTH payloads it produces (RFC 7296 2.15, RFC 4754,
//! RFC 7427).

use der::Decode;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::asn1::{self, tag};
use super::sigalg::{
    ALG_ID_ECDSA_SHA256, ALG_ID_ECDSA_SHA384, ALG_ID_ECDSA_SHA512, ALG_ID_SHA256_RSA,
    ALG_ID_SHA384_RSA, ALG_ID_SHA512_RSA,
};
use super::Error;
use crate::iana::{auth, hash};
use crate::wire::Authentication;

/// id-ecPublicKey and prime256v1, DER, for wrapping SEC1 keys into PKCS#8.
const EC_P256_ALG_ID: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// id-ecPublicKey and secp384r1, DER.
const EC_P384_ALG_ID: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

/// The subjectPublicKey bits of a DER certificate (what [`PrivateKey::matches_public_key`]
/// compares), or `None` if it does not parse.
pub fn certificate_public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    spki.subject_public_key.as_bytes().map(<[u8]>::to_vec)
}

/// A signing key for certificate authentication: ECDSA P-256, P-384 or P-521, or RSA.
pub struct PrivateKey(Inner);

enum Inner {
    /// The same key for RFC 4754 (r || s) and RFC 7427 (DER) signatures: P-256 with
    /// SHA-256, P-384 with SHA-384 (the hash ring pairs with each curve for signing).
    Ecdsa {
        fixed: Box<EcdsaKeyPair>,
        asn1: Box<EcdsaKeyPair>,
        /// The curve's hash (IKEv2 hash number), its RFC 7427 AlgorithmIdentifier and
        /// its RFC 4754 method.
        hash: u16,
        alg_id: &'static [u8],
        method: u8,
    },
    /// P-521 with SHA-512, by the p521 crate (ring has no P-521); deterministic nonces
    /// (RFC 6979).
    EcdsaP521(Box<p521::SecretKey>),
    Rsa(Box<RsaKeyPair>),
}

/// Loads a ring ECDSA key pair for both signature encodings of one curve.
fn ring_ecdsa(der: &[u8], p384: bool) -> Option<Inner> {
    let rng = SystemRandom::new();
    let (fixed, asn1, hash, alg_id, method) = if p384 {
        (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
            hash::SHA2_384,
            ALG_ID_ECDSA_SHA384,
            auth::ECDSA_SHA384_P384,
        )
    } else {
        (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            hash::SHA2_256,
            ALG_ID_ECDSA_SHA256,
            auth::ECDSA_SHA256_P256,
        )
    };
    let fixed = EcdsaKeyPair::from_pkcs8(fixed, der, &rng).ok()?;
    let asn1 = EcdsaKeyPair::from_pkcs8(asn1, der, &rng).ok()?;
    Some(Inner::Ecdsa {
        fixed: Box::new(fixed),
        asn1: Box::new(asn1),
        hash,
        alg_id,
        method,
    })
}

impl PrivateKey {
    /// Loads a PEM key: PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC
    /// PRIVATE KEY".
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, Error> {
        match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => PrivateKey::from_pkcs8(k.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(k)) => PrivateKey::from_pkcs1(k.secret_pkcs1_der()),
            Ok(PrivateKeyDer::Sec1(k)) => PrivateKey::from_sec1(k.secret_sec1_der()),
            Ok(_) => Err(Error::InvalidKey("unknown PEM key type".into())),
            Err(e) => Err(Error::InvalidKey(format!("PEM: {e}"))),
        }
    }

    /// Loads a DER key in PKCS#8, PKCS#1 (RSA) or SEC1 (P-256, P-384, P-521) form.
    pub fn from_der(der: &[u8]) -> Result<PrivateKey, Error> {
        PrivateKey::from_pkcs8(der)
            .or_else(|_| PrivateKey::from_pkcs1(der))
            .or_else(|_| PrivateKey::from_sec1(der))
            .map_err(|_| Error::InvalidKey("neither PKCS#8, PKCS#1 nor SEC1 P-256/384/521".into()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, Error> {
        if let Some(k) = ring_ecdsa(der, false).or_else(|| ring_ecdsa(der, true)) {
            return Ok(PrivateKey(k));
        }
        {
            use p521::pkcs8::DecodePrivateKey;
            if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
                return Ok(PrivateKey(Inner::EcdsaP521(Box::new(k))));
            }
        }
        RsaKeyPair::from_pkcs8(der)
            .map(|k| PrivateKey(Inner::Rsa(Box::new(k))))
            .map_err(|e| Error::InvalidKey(format!("PKCS#8: {e}")))
    }

    fn from_pkcs1(der: &[u8]) -> Result<PrivateKey, Error> {
        RsaKeyPair::from_der(der)
            .map(|k| PrivateKey(Inner::Rsa(Box::new(k))))
            .map_err(|e| Error::InvalidKey(format!("PKCS#1: {e}")))
    }

    /// RFC 5915 ECPrivateKey: P-256 and P-384 wrapped into a PKCS#8 PrivateKeyInfo for
    /// ring (which checks the key against the curve named), P-521 for the p521 crate.
    fn from_sec1(der: &[u8]) -> Result<PrivateKey, Error> {
        for alg_id in [EC_P256_ALG_ID, EC_P384_ALG_ID] {
            let mut info = asn1::encode(tag::INTEGER, &[0]);
            info.extend_from_slice(alg_id);
            info.extend(asn1::encode(tag::OCTET_STRING, der));
            if let Ok(k) = PrivateKey::from_pkcs8(&asn1::encode(tag::SEQUENCE, &info)) {
                return Ok(k);
            }
        }
        p521::SecretKey::from_sec1_der(der)
            .map(|k| PrivateKey(Inner::EcdsaP521(Box::new(k))))
            .map_err(|_| Error::InvalidKey("SEC1: not a P-256, P-384 or P-521 key".into()))
    }

    /// True when the X.509 certificate `cert_der` carries this key's public half, so
    /// that it is the certificate to send with our signatures.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> bool {
        certificate_public_key(cert_der).is_some_and(|theirs| self.matches_public_key(&theirs))
    }

    /// Whether this key's public half is `public`, the subjectPublicKey bits of a
    /// certificate ([`certificate_public_key`]): parse the certificate once when
    /// matching it against many keys.
    pub fn matches_public_key(&self, public: &[u8]) -> bool {
        // ring's public key is what the subjectPublicKey BIT STRING holds: the
        // uncompressed point for ECDSA (RFC 5480 2.2), RSAPublicKey DER for RSA
        // (RFC 3279 2.3.1).
        match &self.0 {
            Inner::Ecdsa { fixed, .. } => fixed.public_key().as_ref() == public,
            Inner::EcdsaP521(k) => {
                use p521::elliptic_curve::sec1::ToEncodedPoint;
                k.public_key().to_encoded_point(false).as_bytes() == public
            }
            Inner::Rsa(k) => k.public_key().as_ref() == public,
        }
    }

    /// Signs `octets` into an AUTH payload: RFC 7427 with the first of SHA2-256,
    /// SHA2-384, SHA2-512 that the peer announced in SIGNATURE_HASH_ALGORITHMS and this
    /// key can sign with (RSA: all three, PKCS#1 v1.5; ECDSA: its curve's hash, P-256
    /// SHA2-256, P-384 SHA2-384, P-521 SHA2-512), else RFC 4754 for ECDSA (methods 9,
    /// 10, 11).
    pub fn sign_auth(&self, peer_hashes: &[u16], octets: &[u8]) -> Result<Authentication, Error> {
        let rng = SystemRandom::new();
        let failed = |_| Error::InvalidKey("signing failed".into());
        let offered = |h: u16| peer_hashes.contains(&h);
        match &self.0 {
            Inner::Ecdsa {
                fixed,
                asn1,
                hash,
                alg_id,
                method,
            } => {
                if offered(*hash) {
                    let s = asn1.sign(&rng, octets).map_err(failed)?;
                    Ok(digital_signature(alg_id, s.as_ref()))
                } else {
                    let s = fixed.sign(&rng, octets).map_err(failed)?;
                    Ok(Authentication {
                        method: *method,
                        data: s.as_ref().to_vec(),
                    })
                }
            }
            Inner::EcdsaP521(k) => {
                use p521::ecdsa::signature::hazmat::RandomizedPrehashSigner;
                let digest = ring::digest::digest(&ring::digest::SHA512, octets);
                let signer = p521::ecdsa::SigningKey::from_bytes(&k.to_bytes())
                    .map_err(|_| Error::InvalidKey("P-521 key".into()))?;
                let mut nonces = RingRng::default();
                let s: p521::ecdsa::Signature = signer
                    .sign_prehash_with_rng(&mut nonces, digest.as_ref())
                    .map_err(|_| Error::InvalidKey("signing failed".into()))?;
                if nonces.failed {
                    return Err(Error::InvalidKey("no randomness for the signature".into()));
                }
                if offered(hash::SHA2_512) {
                    Ok(digital_signature(
                        ALG_ID_ECDSA_SHA512,
                        s.to_der().as_bytes(),
                    ))
                } else {
                    Ok(Authentication {
                        method: auth::ECDSA_SHA512_P521,
                        data: s.to_bytes().to_vec(),
                    })
                }
            }
            Inner::Rsa(k) => {
                let (scheme, alg_id): (&'static dyn sig::RsaEncoding, _) =
                    if offered(hash::SHA2_256) {
                        (&sig::RSA_PKCS1_SHA256, ALG_ID_SHA256_RSA)
                    } else if offered(hash::SHA2_384) {
                        (&sig::RSA_PKCS1_SHA384, ALG_ID_SHA384_RSA)
                    } else if offered(hash::SHA2_512) {
                        (&sig::RSA_PKCS1_SHA512, ALG_ID_SHA512_RSA)
                    } else {
                        // Method 1 would need SHA-1 signatures, which ring does not make.
                        return Err(Error::NoSignatureHashes);
                    };
                let mut s = vec![0; k.public().modulus_len()];
                k.sign(scheme, &rng, octets, &mut s).map_err(failed)?;
                Ok(digital_signature(alg_id, &s))
            }
        }
    }
}

/// ring's system RNG as the `rand_core` RNG the p521 crate draws ECDSA nonces from; a
/// failed draw is remembered so the signature made with it is thrown away.
struct RingRng {
    rng: SystemRandom,
    failed: bool,
}

impl Default for RingRng {
    fn default() -> Self {
        RingRng {
            rng: SystemRandom::new(),
            failed: false,
        }
    }
}

impl p521::elliptic_curve::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        if self.rng.fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p521::elliptic_curve::rand_core::Error> {
        self.fill_bytes(dest);
        if self.failed {
            let code = core::num::NonZeroU32::new(1).unwrap_or(core::num::NonZeroU32::MIN);
            return Err(code.into());
        }
        Ok(())
    }
}

impl p521::elliptic_curve::rand_core::CryptoRng for RingRng {}

/// RFC 7427 3: length of the AlgorithmIdentifier, the AlgorithmIdentifier, the
/// signature.
fn digital_signature(alg_id: &[u8], signature: &[u8]) -> Authentication {
    let mut data = Vec::with_capacity(1 + alg_id.len() + signature.len());
    data.push(alg_id.len() as u8);
    data.extend_from_slice(alg_id);
    data.extend_from_slice(signature);
    Authentication {
        method: auth::DIGITAL_SIGNATURE,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::PrivateKey;
    use crate::auth::load_certs_pem;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/data/auth/", $name)).as_slice()
        };
    }

    fn cert(pem: &[u8]) -> Vec<u8> {
        load_certs_pem(pem).unwrap().remove(0)
    }

    #[test]
    fn a_key_matches_its_own_certificate_only() {
        let edge1 = PrivateKey::from_pem(fixture!("edge1.key")).unwrap();
        assert!(edge1.matches_certificate(&cert(fixture!("edge1.crt"))));
        assert!(!edge1.matches_certificate(&cert(fixture!("edge2.crt"))));
        assert!(!edge1.matches_certificate(&cert(fixture!("rogue.crt"))));
        assert!(!edge1.matches_certificate(&cert(fixture!("cloud-connector.crt"))));

        let sec1 = PrivateKey::from_pem(fixture!("edge2.key")).unwrap();
        assert!(sec1.matches_certificate(&cert(fixture!("edge2.crt"))));

        for pem in [
            fixture!("cloud-connector.key"),
            fixture!("cloud-connector.pkcs8.key"),
        ] {
            let rsa = PrivateKey::from_pem(pem).unwrap();
            assert!(rsa.matches_certificate(&cert(fixture!("cloud-connector.crt"))));
            assert!(!rsa.matches_certificate(&cert(fixture!("rsa-int.crt"))));
            assert!(!rsa.matches_certificate(&cert(fixture!("edge1.crt"))));
        }

        assert!(!edge1.matches_certificate(b"not a certificate"));
    }
}
