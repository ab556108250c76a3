//! AUTH payload (RFC 7296 3.8).
//!
//! ```text
//! | Auth Method   |                RESERVED                       |
//! ~                      Authentication Data                      ~
//! ```

use super::cursor::Reader;
use super::{Authentication, WireError};

impl Authentication {
    /// Decodes an AUTH payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let method = r.u8("AUTH payload")?;
        r.take(3, "AUTH payload")?;
        Ok(Authentication {
            method,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.method, 0, 0, 0]);
        out.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::auth;

    #[test]
    fn parse_and_emit() {
        let bytes = [0x02, 0, 0, 0, 1, 2, 3, 4, 5];
        let a = Authentication {
            method: auth::SHARED_KEY_MIC,
            data: vec![1, 2, 3, 4, 5],
        };
        assert_eq!(Authentication::parse(&bytes), Ok(a.clone()));
        let mut out = Vec::new();
        a.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(a.buffer_len(), bytes.len());
        for n in 0..4 {
            assert!(Authentication::parse(&bytes[..n]).is_err());
        }
    }
}
