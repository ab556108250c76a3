//! Notify payload (RFC 7296 3.10).
//!
//! ```text
//! |  Protocol ID  |   SPI Size    |      Notify Message Type      |
//! ~                Security Parameter Index (SPI)                 ~
//! ~                       Notification Data                       ~
//! ```

use super::cursor::{count8, put_u16, Reader};
use super::{Notify, WireError};
use crate::iana::NotifyType;

impl Notify {
    /// A notification about the IKE SA: no protocol, no SPI.
    pub fn new(kind: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            kind,
            data,
        }
    }

    /// True for error types (below 16384, RFC 7296 3.10.1).
    pub fn is_error(&self) -> bool {
        self.kind.is_error()
    }

    /// Decodes a Notify payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let protocol = r.u8("Notify payload")?;
        let spi_size = r.u8("Notify payload")?;
        let kind = NotifyType(r.u16("Notify payload")?);
        let spi = r.take(usize::from(spi_size), "Notify SPI")?.to_vec();
        Ok(Notify {
            protocol,
            spi,
            kind,
            data: r.rest().to_vec(),
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spi.len() + self.data.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.protocol);
        out.push(count8(self.spi.len()));
        put_u16(out, self.kind.0);
        out.extend_from_slice(&self.spi);
        out.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::{notify, protocol};

    #[test]
    fn parse_and_emit_with_spi() {
        // REKEY_SA for ESP SPI 0x01020304, no data.
        let bytes = [3, 4, 0x40, 0x09, 1, 2, 3, 4];
        let n = Notify {
            protocol: protocol::ESP,
            spi: vec![1, 2, 3, 4],
            kind: notify::REKEY_SA,
            data: vec![],
        };
        assert_eq!(Notify::parse(&bytes), Ok(n.clone()));
        let mut out = Vec::new();
        n.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(n.buffer_len(), bytes.len());
        assert!(!n.is_error());
        for len in 0..bytes.len() {
            assert!(Notify::parse(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn error_type_with_data() {
        let n = Notify::new(notify::INVALID_KE_PAYLOAD, vec![0, 19]);
        assert!(n.is_error());
        let mut out = Vec::new();
        n.emit(&mut out);
        assert_eq!(out, [0, 0, 0, 17, 0, 19]);
        assert_eq!(Notify::parse(&out), Ok(n));
    }
}
