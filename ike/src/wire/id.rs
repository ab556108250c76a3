//! IDi and IDr payloads (RFC 7296 3.5).
//!
//! ```text
//! |   ID Type     |                 RESERVED                      |
//! ~                   Identification Data                         ~
//! ```

use super::cursor::Reader;
use super::{Identification, WireError};

impl Identification {
    /// Decodes an IDi/IDr payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let id_type = r.u8("ID payload")?;
        // RFC 7296 3.5: reserved bytes are ignored on receipt. AUTH signs them too (2.15),
        // and a re-emitted ID has them zero, as every sender must.
        r.take(3, "ID payload")?;
        Ok(Identification {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body; this is also the `IDi'`/`IDr'` that AUTH signs (RFC 7296 2.15).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.id_type, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::id;

    #[test]
    fn parse_and_emit() {
        let bytes = b"\x02\x00\x00\x00vpn.example.org";
        let ident = Identification {
            id_type: id::FQDN,
            data: b"vpn.example.org".to_vec(),
        };
        assert_eq!(Identification::parse(bytes), Ok(ident.clone()));
        let mut out = Vec::new();
        ident.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(ident.buffer_len(), bytes.len());
        for n in 0..4 {
            assert!(Identification::parse(&bytes[..n]).is_err());
        }
    }
}
