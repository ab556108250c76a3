//! Distinguished names: strongSwan's string form ("C=CN, O=Local Cluster, CN=edge1"),
//! DER (RFC 5280 4.1.2.4) and semantic comparison.

use std::fmt;

use der::asn1::ObjectIdentifier;
use der::{Decode, Tag, Tagged};
use x509_cert::name::RdnSequence;

use super::asn1::{self, tag};
use super::Error;

/// Attribute names strongSwan understands, with their OIDs.
const NAMES: &[(&str, &str)] = &[
    ("C", "2.5.4.6"),
    ("ST", "2.5.4.8"),
    ("L", "2.5.4.7"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("CN", "2.5.4.3"),
    ("E", "1.2.840.113549.1.9.1"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("serialNumber", "2.5.4.5"),
];

/// One attribute: its type and its value as text, whatever string type carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ava {
    oid: ObjectIdentifier,
    value: String,
}

/// A DN as a sequence of RDNs (each a set of attributes), in DER order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dn(Vec<Vec<Ava>>);

impl Dn {
    /// Parses "C=CN, O=Local Cluster, CN=edge1".
    pub(crate) fn parse(s: &str) -> Result<Dn, Error> {
        let mut rdns = Vec::new();
        // strongSwan also takes the OpenSSL "/C=CN/O=..." form.
        let sep = if s.trim_start().starts_with('/') {
            '/'
        } else {
            ','
        };
        for part in s.split(sep).map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| Error::InvalidIdentity(format!("'{part}' has no '='")))?;
            let name = name.trim();
            let known = NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or(name, |(_, o)| o);
            // Otherwise a dotted OID ("2.5.4.3"). const-oid does not check its arcs for
            // overflow: one past u32 wraps, or panics with overflow checks on.
            let oid = known
                .split('.')
                .all(|arc| arc.parse::<u32>().is_ok())
                .then(|| ObjectIdentifier::new(known).ok())
                .flatten()
                .ok_or_else(|| Error::InvalidIdentity(format!("unknown DN attribute '{name}'")))?;
            rdns.push(vec![Ava {
                oid,
                value: value.trim().to_string(),
            }]);
        }
        if rdns.is_empty() {
            return Err(Error::InvalidIdentity(format!("empty DN '{s}'")));
        }
        Ok(Dn(rdns))
    }

    /// Decodes an RDNSequence.
    pub(crate) fn from_der(der: &[u8]) -> Result<Dn, Error> {
        let seq = RdnSequence::from_der(der).map_err(|e| Error::Malformed(format!("DN: {e}")))?;
        Ok(Dn::from_name(&seq))
    }

    /// Converts a decoded name.
    pub(crate) fn from_name(name: &RdnSequence) -> Dn {
        Dn(name
            .0
            .iter()
            .map(|rdn| {
                rdn.0
                    .iter()
                    .map(|atv| Ava {
                        oid: atv.oid,
                        value: value_text(atv.value.tag(), atv.value.value()),
                    })
                    .collect()
            })
            .collect())
    }

    /// Encodes as DER the way strongSwan does: PrintableString when the value fits its
    /// alphabet, UTF8String otherwise (checked against charon's IDi/IDr bytes in
    /// `tests/golden.rs`).
    pub(crate) fn to_der(&self) -> Vec<u8> {
        let mut rdns = Vec::new();
        for rdn in &self.0 {
            let mut set = Vec::new();
            for ava in rdn {
                let t = if is_printable(&ava.value) {
                    tag::PRINTABLE_STRING
                } else {
                    tag::UTF8_STRING
                };
                let mut atv = asn1::encode(tag::OID, ava.oid.as_bytes());
                atv.extend(asn1::encode(t, ava.value.as_bytes()));
                set.extend(asn1::encode(tag::SEQUENCE, &atv));
            }
            rdns.extend(asn1::encode(tag::SET, &set));
        }
        asn1::encode(tag::SEQUENCE, &rdns)
    }

    /// True when `other` has the same attributes in the same order; a configured value
    /// of "*" matches any value of its attribute type.
    pub(crate) fn matches(&self, other: &Dn) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.oid == y.oid && (x.value == "*" || x.value == y.value))
            })
    }
}

/// The text of a directory string; other types show as hex.
fn value_text(t: Tag, v: &[u8]) -> String {
    match t {
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String | Tag::TeletexString => {
            String::from_utf8_lossy(v).into_owned()
        }
        Tag::BmpString => {
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => format!("#{}", hex(v)),
    }
}

/// Lowercase hex.
pub(crate) fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 5280 PrintableString alphabet.
fn is_printable(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for ava in self.0.iter().flatten() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            let oid = ava.oid.to_string();
            match NAMES.iter().find(|(_, o)| *o == oid) {
                Some((name, _)) => write!(f, "{name}={}", ava.value)?,
                None => write!(f, "{oid}={}", ava.value)?,
            }
        }
        Ok(())
    }
}
