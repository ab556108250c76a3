//! The negotiated suites: one transform of each type for an IKE SA or a child SA
//! (RFC 7296 3.3.2). Key derivation sizes its keys from them; `crate::proposal`
//! negotiates them and converts them to and from transforms.

use std::fmt;

use super::{Dh, Encr, Integ, Prf};

/// The negotiated IKE SA transforms, one per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    /// Encryption.
    pub encr: Encr,
    /// Integrity; `None` with an AEAD cipher.
    pub integ: Option<Integ>,
    /// PRF.
    pub prf: Prf,
    /// Key exchange method.
    pub dh: Dh,
}

impl fmt::Display for IkeSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        if let Some(i) = self.integ {
            write!(f, "-{i}")?;
        }
        write!(f, "-{}-{}", self.prf, self.dh)
    }
}

/// The negotiated ESP transforms, one per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspSuite {
    /// Encryption: AES-GCM, or AES-CBC with `integ`.
    pub encr: Encr,
    /// Integrity; `None` with an AEAD cipher.
    pub integ: Option<Integ>,
    /// PFS group of a CREATE_CHILD_SA exchange, if any.
    pub dh: Option<Dh>,
    /// Extended sequence numbers.
    pub esn: bool,
}

impl fmt::Display for EspSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encr)?;
        if let Some(i) = self.integ {
            write!(f, "-{i}")?;
        }
        if let Some(d) = self.dh {
            write!(f, "-{d}")?;
        }
        f.write_str(if self.esn { "-esn" } else { "-noesn" })
    }
}
