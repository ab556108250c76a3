//! IKE identities (RFC 7296 3.5) parsed and printed the way strongSwan does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dn::{hex, Dn};
use super::Error;
use crate::iana::id;
use crate::wire::Identification;

/// An IKE identity as configured or received.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// "%any": matches every identity (remote side only).
    Any,
    /// A concrete identity: ID type and data as on the wire.
    Id {
        /// ID type (`crate::iana::id`).
        id_type: u8,
        /// Identification data (DER for a DN).
        data: Vec<u8>,
    },
}

impl Identity {
    /// Parses a configured identity like strongSwan: "%any", a DN ("C=CN, CN=x"), an IP
    /// address, "@fqdn", "@#hex" (key ID), "user@domain", or a bare name as an FQDN.
    pub fn parse(s: &str) -> Result<Identity, Error> {
        let s = s.trim();
        let id = |id_type, data: Vec<u8>| Ok(Identity::Id { id_type, data });
        if s.is_empty() {
            return Err(Error::InvalidIdentity("empty identity".into()));
        }
        if s == "%any" {
            return Ok(Identity::Any);
        }
        if let Some(h) = s.strip_prefix("@#") {
            return id(id::KEY_ID, unhex(h)?);
        }
        if let Some(f) = s.strip_prefix('@') {
            return id(id::FQDN, f.as_bytes().to_vec());
        }
        if s.contains('=') {
            return id(id::DER_ASN1_DN, Dn::parse(s)?.to_der());
        }
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => id(id::IPV4_ADDR, a.octets().to_vec()),
            Ok(IpAddr::V6(a)) => id(id::IPV6_ADDR, a.octets().to_vec()),
            Err(_) if s.contains('@') => id(id::RFC822_ADDR, s.as_bytes().to_vec()),
            Err(_) => id(id::FQDN, s.as_bytes().to_vec()),
        }
    }

    /// True for "%any".
    pub fn is_any(&self) -> bool {
        matches!(self, Identity::Any)
    }

    /// True when `other` satisfies this (configured) identity: DNs compare by attribute
    /// types and values, names case-insensitively, everything else byte for byte.
    pub fn matches(&self, other: &Identity) -> bool {
        let (
            Identity::Id { id_type, data },
            Identity::Id {
                id_type: t,
                data: d,
            },
        ) = (self, other)
        else {
            return self.is_any();
        };
        if id_type != t {
            return false;
        }
        match *id_type {
            id::DER_ASN1_DN => match (Dn::from_der(data), Dn::from_der(d)) {
                (Ok(a), Ok(b)) => a.matches(&b),
                _ => false,
            },
            id::FQDN | id::RFC822_ADDR => data.eq_ignore_ascii_case(d),
            _ => data == d,
        }
    }

    /// The IDi/IDr payload body.
    pub fn to_wire(&self) -> Identification {
        match self {
            Identity::Any => Identification {
                id_type: id::FQDN,
                data: Vec::new(),
            },
            Identity::Id { id_type, data } => Identification {
                id_type: *id_type,
                data: data.clone(),
            },
        }
    }

    /// An identity from a received IDi/IDr payload; addresses and DNs must be well
    /// formed.
    pub fn from_wire(wire: &Identification) -> Result<Identity, Error> {
        let ok = match wire.id_type {
            id::IPV4_ADDR => wire.data.len() == 4,
            id::IPV6_ADDR => wire.data.len() == 16,
            id::DER_ASN1_DN => Dn::from_der(&wire.data).is_ok(),
            _ => true,
        };
        if !ok {
            return Err(Error::InvalidIdentity(format!(
                "malformed ID type {} ({} bytes)",
                wire.id_type,
                wire.data.len()
            )));
        }
        Ok(Identity::Id {
            id_type: wire.id_type,
            data: wire.data.clone(),
        })
    }

    /// The DN, for DER_ASN1_DN identities.
    pub(crate) fn dn(&self) -> Option<Dn> {
        match self {
            Identity::Id {
                id_type: id::DER_ASN1_DN,
                data,
            } => Dn::from_der(data).ok(),
            _ => None,
        }
    }
}

/// Decodes hex digits (for "@#" key IDs).
fn unhex(h: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::InvalidIdentity(format!("bad key ID hex '{h}'"));
    if h.len() % 2 != 0 || h.is_empty() {
        return Err(bad());
    }
    (0..h.len())
        .step_by(2)
        .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Identity::Id { id_type, data } = self else {
            return f.write_str("%any");
        };
        match *id_type {
            id::IPV4_ADDR => match <[u8; 4]>::try_from(data.as_slice()) {
                Ok(a) => write!(f, "{}", Ipv4Addr::from(a)),
                Err(_) => write!(f, "(bad IPv4) {}", hex(data)),
            },
            id::IPV6_ADDR => match <[u8; 16]>::try_from(data.as_slice()) {
                Ok(a) => write!(f, "{}", Ipv6Addr::from(a)),
                Err(_) => write!(f, "(bad IPv6) {}", hex(data)),
            },
            id::DER_ASN1_DN => match Dn::from_der(data) {
                Ok(dn) => write!(f, "{dn}"),
                Err(_) => write!(f, "(bad DN) {}", hex(data)),
            },
            id::KEY_ID => write!(f, "@#{}", hex(data)),
            id::FQDN | id::RFC822_ADDR => f.write_str(&String::from_utf8_lossy(data)),
            t => write!(f, "(ID type {t}) {}", hex(data)),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}
