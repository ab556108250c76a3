//! KE payload (RFC 7296 3.4).
//!
//! ```text
//! |   Diffie-Hellman Group Num    |           RESERVED            |
//! ~                       Key Exchange Data                       ~
//! ```

use super::cursor::{put_u16, Reader};
use super::{KeyExchange, WireError};

impl KeyExchange {
    /// Decodes a KE payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let group = r.u16("KE payload")?;
        r.take(2, "KE payload")?;
        Ok(KeyExchange {
            group,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.group);
        put_u16(out, 0);
        out.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::dh;

    static BYTES: [u8; 8] = [0x00, 0x1f, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xdd];

    #[test]
    fn parse_and_emit() {
        let ke = KeyExchange {
            group: dh::CURVE25519,
            data: vec![0xaa, 0xbb, 0xcc, 0xdd],
        };
        assert_eq!(KeyExchange::parse(&BYTES), Ok(ke.clone()));
        let mut out = Vec::new();
        ke.emit(&mut out);
        assert_eq!(out, BYTES);
        assert_eq!(ke.buffer_len(), BYTES.len());
        for n in 0..4 {
            assert!(KeyExchange::parse(&BYTES[..n]).is_err());
        }
    }
}
