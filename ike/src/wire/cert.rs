//! CERT and CERTREQ payloads (RFC 7296 3.6, 3.7): both are a one-byte encoding followed
//! by data (a certificate, or for CERTREQ concatenated SHA-1 hashes of CA public keys).
//!
//! ```text
//! | Cert Encoding |                                               |
//! +-+-+-+-+-+-+-+-+                                               |
//! ~                       Certificate Data                        ~
//! ```

use super::cursor::Reader;
use super::{Certificate, WireError};

/// Length of one CA key hash in a CERTREQ for X.509 encodings (RFC 7296 3.7).
pub const CA_HASH_LEN: usize = 20;

impl Certificate {
    /// Decodes a CERT or CERTREQ payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let encoding = r.u8("CERT payload")?;
        Ok(Certificate {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        1 + self.data.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.encoding);
        out.extend_from_slice(&self.data);
    }

    /// For a CERTREQ: the CA key hashes; a trailing partial hash is ignored.
    pub fn ca_hashes(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks_exact(CA_HASH_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::cert;

    #[test]
    fn parse_and_emit() {
        let mut bytes = vec![cert::X509_SIGNATURE];
        bytes.extend_from_slice(&[0x30, 0x82, 0x01, 0x00]);
        let c = Certificate {
            encoding: cert::X509_SIGNATURE,
            data: vec![0x30, 0x82, 0x01, 0x00],
        };
        assert_eq!(Certificate::parse(&bytes), Ok(c.clone()));
        let mut out = Vec::new();
        c.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(c.buffer_len(), bytes.len());
        assert!(Certificate::parse(&[]).is_err());
    }

    #[test]
    fn ca_hashes() {
        let req = Certificate {
            encoding: cert::X509_SIGNATURE,
            data: (0..45).collect(),
        };
        let hashes: Vec<&[u8]> = req.ca_hashes().collect();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[1][0], 20);
    }
}
