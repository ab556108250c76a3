//! The state machine's view of authentication: identities, PSK AUTH (RFC 7296 2.15) and
//! the signed octets. Certificate authentication plugs in through [`PrivateKey`] and
//! [`TrustStore`].

use std::fmt;
use std::net::IpAddr;

use crate::iana;
use crate::wire::{Authentication, Certificate, Identification};

/// An IKE identity as configured or received.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// "%any": matches every identity (remote side only).
    Any,
    /// A concrete identity: ID type and data as on the wire.
    Id {
        /// ID type (`crate::iana::id`).
        id_type: u8,
        /// Identification data.
        data: Vec<u8>,
    },
}

impl Identity {
    /// Parses a configured identity: "%any", an IP address, "@fqdn", "user@domain",
    /// or anything else as an FQDN.
    pub fn parse(s: &str) -> Result<Identity, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty identity".into());
        }
        if s == "%any" {
            return Ok(Identity::Any);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(match ip {
                IpAddr::V4(a) => Identity::Id {
                    id_type: iana::id::IPV4_ADDR,
                    data: a.octets().to_vec(),
                },
                IpAddr::V6(a) => Identity::Id {
                    id_type: iana::id::IPV6_ADDR,
                    data: a.octets().to_vec(),
                },
            });
        }
        if let Some(f) = s.strip_prefix('@') {
            return Ok(Identity::Id {
                id_type: iana::id::FQDN,
                data: f.as_bytes().to_vec(),
            });
        }
        let id_type = if s.contains('@') {
            iana::id::RFC822_ADDR
        } else {
            iana::id::FQDN
        };
        Ok(Identity::Id {
            id_type,
            data: s.as_bytes().to_vec(),
        })
    }

    /// True for "%any".
    pub fn is_any(&self) -> bool {
        matches!(self, Identity::Any)
    }

    /// True when `other` satisfies this (configured) identity.
    pub fn matches(&self, other: &Identity) -> bool {
        self.is_any() || self == other
    }

    /// The IDi/IDr payload body.
    pub fn to_wire(&self) -> Identification {
        match self {
            Identity::Any => Identification {
                id_type: iana::id::FQDN,
                data: Vec::new(),
            },
            Identity::Id { id_type, data } => Identification {
                id_type: *id_type,
                data: data.clone(),
            },
        }
    }

    /// An identity from a received IDi/IDr payload.
    pub fn from_wire(id: &Identification) -> Result<Identity, String> {
        Ok(Identity::Id {
            id_type: id.id_type,
            data: id.data.clone(),
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Any => f.write_str("%any"),
            Identity::Id { id_type, data } => match *id_type {
                iana::id::IPV4_ADDR if data.len() == 4 => {
                    write!(f, "{}", IpAddr::from([data[0], data[1], data[2], data[3]]))
                }
                _ => f.write_str(&String::from_utf8_lossy(data)),
            },
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

/// A signing key for certificate authentication.
pub struct PrivateKey(());

impl PrivateKey {
    /// Signs `octets` into an AUTH payload, given the peer's SIGNATURE_HASH_ALGORITHMS.
    pub fn sign_auth(
        &self,
        _peer_hashes: &[u16],
        _octets: &[u8],
    ) -> Result<Authentication, String> {
        Err("certificate authentication is not available yet".into())
    }
}

/// Trusted CA certificates.
pub struct TrustStore(());

/// A peer certificate that chained up to a trusted CA.
pub struct VerifiedPeer(());

impl TrustStore {
    /// The CERTREQ payload naming our CAs.
    pub fn certreq(&self) -> Option<Certificate> {
        None
    }

    /// Verifies the peer's chain at `unix_now`.
    pub fn verify_chain(
        &self,
        _ee: &[u8],
        _rest: &[&[u8]],
        _unix_now: u64,
    ) -> Result<VerifiedPeer, String> {
        Err("certificate authentication is not available yet".into())
    }
}

impl VerifiedPeer {
    /// True when the identity is the certificate's subject or one of its altNames.
    pub fn matches_id(&self, _id: &Identity) -> bool {
        false
    }

    /// Checks the AUTH payload against the certificate's key.
    pub fn verify_auth(&self, _auth: &Authentication, _octets: &[u8]) -> Result<(), String> {
        Err("unavailable".into())
    }
}

/// The negotiated PRF as a function of (key, data).
pub(crate) type PrfFn<'a> = &'a dyn Fn(&[u8], &[u8]) -> Vec<u8>;

/// RFC 7296 2.15: AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
pub(crate) fn psk_auth(prf: PrfFn<'_>, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    prf(&prf(psk, b"Key Pad for IKEv2"), octets)
}

/// Checks a PSK AUTH value in constant time.
pub(crate) fn psk_verify(prf: PrfFn<'_>, psk: &[u8], octets: &[u8], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let want = psk_auth(prf, psk, octets);
    want.len() == got.len() && bool::from(want.ct_eq(got))
}

/// RFC 7296 2.15: RealMessage | Nonce | prf(SK_p, RestOfIDPayload).
pub(crate) fn signed_octets(
    prf: PrfFn<'_>,
    message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id: &Identification,
) -> Vec<u8> {
    let mut rest = vec![id.id_type, 0, 0, 0];
    rest.extend_from_slice(&id.data);
    let mut out = Vec::with_capacity(message.len() + nonce.len() + 64);
    out.extend_from_slice(message);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&prf(sk_p, &rest));
    out
}
