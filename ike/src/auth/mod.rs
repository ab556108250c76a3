//! Authentication: identities (RFC 7296 3.5), X.509 certificate chains (RFC 5280),
//! signing keys and AUTH signatures (RFC 7296 2.15, RFC 4754, RFC 7427).

mod asn1;
mod chain;
mod dn;
mod identity;
mod key;
mod sigalg;
#[cfg(test)]
mod tests;

pub use chain::{TrustStore, VerifiedPeer};
pub use identity::Identity;
pub use key::{certificate_public_key, PrivateKey};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The hashes announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427 4): every one of them is
/// verified with RSA PKCS#1 v1.5, RSA-PSS and ECDSA on P-256 and P-384 (a peer may pick
/// any; libreswan picks the strongest), which `tests::every_announced_hash_verifies`
/// walks.
pub const ANNOUNCED_HASHES: [u16; 3] = [
    crate::iana::hash::SHA2_256,
    crate::iana::hash::SHA2_384,
    crate::iana::hash::SHA2_512,
];

/// Why a key, identity, certificate chain or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate's notAfter lies before now.
    #[error("certificate '{subject}' expired at unix time {not_after}")]
    Expired {
        /// The certificate's subject DN.
        subject: String,
        /// notAfter, seconds since the epoch.
        not_after: u64,
    },
    /// A certificate's notBefore lies after now.
    #[error("certificate '{subject}' is not valid before unix time {not_before}")]
    NotYetValid {
        /// The certificate's subject DN.
        subject: String,
        /// notBefore, seconds since the epoch.
        not_before: u64,
    },
    /// No trusted CA or supplied intermediate issued this certificate.
    #[error("certificate '{subject}' has no trusted issuer '{issuer}'")]
    UnknownIssuer {
        /// The certificate's subject DN.
        subject: String,
        /// The issuer DN we could not find.
        issuer: String,
    },
    /// A signature did not verify.
    #[error("bad signature on {0}")]
    BadSignature(String),
    /// An issuing certificate lacks basicConstraints cA=true.
    #[error("issuer certificate '{subject}' is not a CA")]
    NotACa {
        /// The issuer's subject DN.
        subject: String,
    },
    /// The chain exceeds the depth limit.
    #[error("certificate chain longer than {0}")]
    ChainTooLong(usize),
    /// A signature or key algorithm we do not implement.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// Bytes that do not parse.
    #[error("malformed {0}")]
    Malformed(String),
    /// A private key that cannot be loaded or used.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// An identity string or payload that does not parse.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// RSA needs RFC 7427 (we cannot sign SHA-1), and the peer did not announce it.
    #[error("peer did not announce RFC 7427 signature hash algorithms")]
    NoSignatureHashes,
}

/// Every CERTIFICATE block of a PEM file, as DER.
pub fn load_certs_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Malformed(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Malformed("PEM: no CERTIFICATE block".into()));
    }
    Ok(certs)
}
