//! Trusted CAs, certificate path building and validation (RFC 5280 6, reduced to what
//! IKE peers need), and the verified peer that checks AUTH (RFC 7296 2.15).

use der::{Decode, Encode};
use ring::digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};
use x509_cert::Certificate;

use super::asn1::{self, tag};
use super::dn::Dn;
use super::identity::Identity;
use super::sigalg::{PublicKey, SigAlg};
use super::Error;
use crate::iana::{auth, cert, id};
use crate::wire::{Authentication, Certificate as CertPayload};

/// The longest chain we build, end entity and trust anchor included.
const MAX_DEPTH: usize = 8;

/// A certificate decoded once, with what path building needs.
struct Parsed {
    cert: Certificate,
    /// The raw tbsCertificate, as signed.
    tbs: Vec<u8>,
    subject: Dn,
    issuer: Dn,
    key: Result<PublicKey, Error>,
}

impl Parsed {
    fn new(der: &[u8]) -> Result<Parsed, Error> {
        let cert = Certificate::from_der(der)
            .map_err(|e| Error::Malformed(format!("certificate: {e}")))?;
        let tbs = asn1::expect(der, tag::SEQUENCE)
            .and_then(|c| asn1::expect(c.value, tag::SEQUENCE))
            .ok_or_else(|| Error::Malformed("certificate".into()))?
            .whole
            .to_vec();
        let t = &cert.tbs_certificate;
        Ok(Parsed {
            subject: Dn::from_name(&t.subject),
            issuer: Dn::from_name(&t.issuer),
            key: PublicKey::from_spki(&t.subject_public_key_info),
            tbs,
            cert,
        })
    }

    /// Checks that `issuer` signed this certificate.
    fn signed_by(&self, issuer: &Parsed) -> Result<(), Error> {
        let alg = SigAlg::from_alg_id(&self.cert.signature_algorithm)?;
        let signature = self
            .cert
            .signature
            .as_bytes()
            .ok_or_else(|| Error::Malformed("certificate signature".into()))?;
        issuer.key.clone()?.verify(
            alg,
            &self.tbs,
            signature,
            &format!("certificate '{}'", self.subject),
        )
    }

    /// notBefore <= now <= notAfter.
    fn check_time(&self, now: u64) -> Result<(), Error> {
        let v = &self.cert.tbs_certificate.validity;
        let not_before = v.not_before.to_unix_duration().as_secs();
        let not_after = v.not_after.to_unix_duration().as_secs();
        let subject = || self.subject.to_string();
        if now < not_before {
            return Err(Error::NotYetValid {
                subject: subject(),
                not_before,
            });
        }
        if now > not_after {
            return Err(Error::Expired {
                subject: subject(),
                not_after,
            });
        }
        Ok(())
    }

    /// basicConstraints cA=true (RFC 5280 4.2.1.9).
    fn check_ca(&self) -> Result<(), Error> {
        match self.cert.tbs_certificate.get::<BasicConstraints>() {
            Ok(Some((_, bc))) if bc.ca => Ok(()),
            _ => Err(Error::NotACa {
                subject: self.subject.to_string(),
            }),
        }
    }

    /// Checks this certificate as the issuer of `child`: name, signature, CA, time.
    fn issued(&self, child: &Parsed, now: u64) -> Result<(), Error> {
        child.signed_by(self)?;
        self.check_ca()?;
        self.check_time(now)
    }
}

/// Trusted CA certificates.
#[derive(Default)]
pub struct TrustStore {
    anchors: Vec<Parsed>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.anchors.iter().map(|a| a.subject.to_string()))
            .finish()
    }
}

impl TrustStore {
    /// A store of every CERTIFICATE block in `pem`.
    pub fn from_pem(pem: &[u8]) -> Result<TrustStore, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Malformed(format!("PEM: {e}")))?;
        TrustStore::from_der(certs)
    }

    /// A store of DER certificates.
    pub fn from_der(certs: Vec<Vec<u8>>) -> Result<TrustStore, Error> {
        let mut store = TrustStore::default();
        for c in certs {
            store.add(&c)?;
        }
        Ok(store)
    }

    /// Adds a trusted CA certificate (DER).
    pub fn add(&mut self, der: &[u8]) -> Result<(), Error> {
        self.anchors.push(Parsed::new(der)?);
        Ok(())
    }

    /// The CERTREQ payload naming our CAs: SHA-1 hashes of their SubjectPublicKeyInfo
    /// (RFC 7296 3.7).
    pub fn certreq(&self) -> Option<CertPayload> {
        let mut data = Vec::new();
        for a in &self.anchors {
            if let Ok(spki) = a.cert.tbs_certificate.subject_public_key_info.to_der() {
                data.extend_from_slice(
                    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &spki).as_ref(),
                );
            }
        }
        (!data.is_empty()).then_some(CertPayload {
            encoding: cert::X509_SIGNATURE,
            data,
        })
    }

    /// Verifies the peer's chain at `unix_now`: `ee` up through `rest` (intermediates,
    /// any order) to one of our CAs.
    pub fn verify_chain(
        &self,
        ee: &[u8],
        rest: &[&[u8]],
        unix_now: u64,
    ) -> Result<VerifiedPeer, Error> {
        let leaf = Parsed::new(ee)?;
        leaf.check_time(unix_now)?;
        let pool = rest
            .iter()
            .map(|c| Parsed::new(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cur = &leaf;
        for _ in 1..MAX_DEPTH {
            let mut last = None;
            for anchor in self.anchors.iter().filter(|a| a.subject == cur.issuer) {
                match anchor.issued(cur, unix_now) {
                    Ok(()) => return VerifiedPeer::new(leaf),
                    Err(e) => last = Some(e),
                }
            }
            let next = pool
                .iter()
                .filter(|p| p.subject == cur.issuer && p.tbs != cur.tbs)
                .find(|p| match p.issued(cur, unix_now) {
                    Ok(()) => true,
                    Err(e) => {
                        last = Some(e);
                        false
                    }
                });
            match next {
                Some(n) => cur = n,
                None => {
                    return Err(last.unwrap_or_else(|| Error::UnknownIssuer {
                        subject: cur.subject.to_string(),
                        issuer: cur.issuer.to_string(),
                    }))
                }
            }
        }
        Err(Error::ChainTooLong(MAX_DEPTH))
    }
}

/// A peer certificate that chained up to a trusted CA.
#[derive(Debug)]
pub struct VerifiedPeer {
    subject: Dn,
    alt_names: Vec<GeneralName>,
    key: PublicKey,
}

impl VerifiedPeer {
    fn new(leaf: Parsed) -> Result<VerifiedPeer, Error> {
        let alt_names = match leaf.cert.tbs_certificate.get::<SubjectAltName>() {
            Ok(Some((_, san))) => san.0,
            Ok(None) => Vec::new(),
            Err(e) => return Err(Error::Malformed(format!("subjectAltName: {e}"))),
        };
        Ok(VerifiedPeer {
            key: leaf.key?,
            subject: leaf.subject,
            alt_names,
        })
    }

    /// True when the identity is the certificate's subject or one of its altNames
    /// (dNSName, rfc822Name, iPAddress, directoryName).
    pub fn matches_id(&self, ident: &Identity) -> bool {
        let Identity::Id { id_type, data } = ident else {
            return false;
        };
        if let Some(dn) = ident.dn() {
            return dn == self.subject
                || self.alt_names.iter().any(|n| match n {
                    GeneralName::DirectoryName(d) => Dn::from_name(d) == dn,
                    _ => false,
                });
        }
        self.alt_names.iter().any(|n| match (*id_type, n) {
            (id::FQDN, GeneralName::DnsName(s)) => s.as_bytes().eq_ignore_ascii_case(data),
            (id::RFC822_ADDR, GeneralName::Rfc822Name(s)) => {
                s.as_bytes().eq_ignore_ascii_case(data)
            }
            (id::IPV4_ADDR | id::IPV6_ADDR, GeneralName::IpAddress(a)) => a.as_bytes() == data,
            _ => false,
        })
    }

    /// Checks the AUTH payload against the certificate's key: methods 1 (RSA SHA-1),
    /// 9, 10 and 11 (ECDSA P-256, P-384, P-521, RFC 4754) and 14 (RFC 7427).
    pub fn verify_auth(&self, auth_p: &Authentication, octets: &[u8]) -> Result<(), Error> {
        let what = "AUTH payload";
        match auth_p.method {
            auth::RSA_SIGNATURE => self.key.verify(
                SigAlg::RsaPkcs1(super::sigalg::Hash::Sha1),
                octets,
                &auth_p.data,
                what,
            ),
            auth::ECDSA_SHA256_P256 => {
                self.key
                    .verify(SigAlg::EcdsaP256Fixed, octets, &auth_p.data, what)
            }
            auth::ECDSA_SHA384_P384 => {
                self.key
                    .verify(SigAlg::EcdsaP384Fixed, octets, &auth_p.data, what)
            }
            auth::ECDSA_SHA512_P521 => {
                self.key
                    .verify(SigAlg::EcdsaP521Fixed, octets, &auth_p.data, what)
            }
            auth::DIGITAL_SIGNATURE => {
                let malformed = || Error::Malformed("RFC 7427 AUTH data".into());
                let (&len, rest) = auth_p.data.split_first().ok_or_else(malformed)?;
                let len = usize::from(len);
                if rest.len() < len {
                    return Err(malformed());
                }
                let (alg_id, signature) = rest.split_at(len);
                self.key
                    .verify(SigAlg::from_der(alg_id)?, octets, signature, what)
            }
            m => Err(Error::UnsupportedAlgorithm(format!("auth method {m}"))),
        }
    }
}
