//! The IKE header (RFC 7296 3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::{Flags, Header, WireError};
use crate::iana::{ExchangeType, PayloadType};

/// Byte ranges of the IKE header fields.
pub mod field {
    use std::ops::Range;

    /// Initiator's SPI.
    pub const SPI_I: Range<usize> = 0..8;
    /// Responder's SPI.
    pub const SPI_R: Range<usize> = 8..16;
    /// Next payload type.
    pub const NEXT_PAYLOAD: usize = 16;
    /// Major and minor version.
    pub const VERSION: usize = 17;
    /// Exchange type.
    pub const EXCHANGE: usize = 18;
    /// Flags.
    pub const FLAGS: usize = 19;
    /// Message ID.
    pub const MESSAGE_ID: Range<usize> = 20..24;
    /// Length of the whole message.
    pub const LENGTH: Range<usize> = 24..28;
}

/// IKEv2 version byte: major 2, minor 0.
pub const VERSION_2_0: u8 = 0x20;

// RFC 7296 3.1: flags are |X|X|R|V|I|X|X|X| from the most significant bit.
const FLAG_R: u8 = 0x20;
const FLAG_V: u8 = 0x10;
const FLAG_I: u8 = 0x08;

/// A read-only view of an IKE header at the front of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    /// Wraps a buffer without checking its length; accessors may panic if it is short.
    pub fn new_unchecked(buffer: T) -> Self {
        HeaderPacket { buffer }
    }

    /// Wraps a buffer that holds at least the 28-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < Header::LEN {
            return Err(WireError::Truncated("IKE header"));
        }
        Ok(HeaderPacket { buffer })
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn u64_at(&self, at: usize) -> u64 {
        (u64::from(self.u32_at(at)) << 32) | u64::from(self.u32_at(at + 4))
    }

    /// Initiator's SPI.
    pub fn spi_i(&self) -> u64 {
        self.u64_at(field::SPI_I.start)
    }

    /// Responder's SPI.
    pub fn spi_r(&self) -> u64 {
        self.u64_at(field::SPI_R.start)
    }

    /// Type of the first payload.
    pub fn next_payload(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_PAYLOAD]
    }

    /// Version byte (major in the high nibble).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Exchange type.
    pub fn exchange(&self) -> u8 {
        self.buffer.as_ref()[field::EXCHANGE]
    }

    /// Raw flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Message ID.
    pub fn message_id(&self) -> u32 {
        self.u32_at(field::MESSAGE_ID.start)
    }

    /// Length field: the whole message in bytes.
    pub fn length(&self) -> u32 {
        self.u32_at(field::LENGTH.start)
    }
}

impl Flags {
    /// Decodes the flags byte; reserved bits are ignored (RFC 7296 3.1).
    pub fn from_byte(b: u8) -> Self {
        Flags {
            initiator: b & FLAG_I != 0,
            response: b & FLAG_R != 0,
            version: b & FLAG_V != 0,
        }
    }

    /// Encodes the flags byte with reserved bits cleared.
    pub fn to_byte(self) -> u8 {
        let mut b = 0;
        if self.initiator {
            b |= FLAG_I;
        }
        if self.response {
            b |= FLAG_R;
        }
        if self.version {
            b |= FLAG_V;
        }
        b
    }
}

impl Header {
    /// Length of the IKE header.
    pub const LEN: usize = 28;

    /// A version 2.0 header; `next_payload` and `length` are filled in on emit.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Header {
            spi_i,
            spi_r,
            next_payload: crate::iana::payload::NONE,
            version: VERSION_2_0,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    /// Major version (high nibble of the version byte).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// Decodes the header at the front of `buf` without judging the version or length,
    /// so a caller can still answer INVALID_MAJOR_VERSION (RFC 7296 2.5).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let p = HeaderPacket::new_checked(buf)?;
        Ok(Header {
            spi_i: p.spi_i(),
            spi_r: p.spi_r(),
            next_payload: PayloadType(p.next_payload()),
            version: p.version(),
            exchange: ExchangeType(p.exchange()),
            flags: Flags::from_byte(p.flags()),
            message_id: p.message_id(),
            length: p.length(),
        })
    }

    /// Bytes taken by the header.
    pub fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Appends the header exactly as its fields say.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.to_byte());
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::{exchange, payload};

    static BYTES: [u8; 28] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // SPIi
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // SPIr
        0x21, // next payload: SA
        0x20, // version 2.0
        0x22, // IKE_SA_INIT
        0x28, // flags: R | I
        0x00, 0x00, 0x00, 0x07, // message ID
        0x00, 0x00, 0x01, 0x00, // length 256
    ];

    fn repr() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: payload::SA,
            version: VERSION_2_0,
            exchange: exchange::IKE_SA_INIT,
            flags: Flags {
                initiator: true,
                response: true,
                version: false,
            },
            message_id: 7,
            length: 256,
        }
    }

    #[test]
    fn parse_and_emit() {
        assert_eq!(Header::parse(&BYTES), Ok(repr()));
        let mut out = Vec::new();
        repr().emit(&mut out);
        assert_eq!(out, BYTES);
        assert_eq!(repr().buffer_len(), out.len());
    }

    #[test]
    fn check_len() {
        for n in 0..Header::LEN {
            assert_eq!(
                Header::parse(&BYTES[..n]),
                Err(WireError::Truncated("IKE header"))
            );
        }
    }

    #[test]
    fn reserved_flags_ignored() {
        let f = Flags::from_byte(0xff);
        assert_eq!(f.to_byte(), 0x38);
        assert_eq!(Flags::from_byte(0x08).to_byte(), 0x08);
    }
}
