//! ESP wire format (RFC 4303 2, RFC 4106 3, RFC 3602 3): a smoltcp-style view over the
//! header and the helpers for the trailer (padding, Pad Length, Next Header).
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |               Security Parameters Index (SPI)                 |
//! |                      Sequence Number                          |
//! |  Explicit IV (8 bytes AEAD, RFC 4106; 16 bytes AES-CBC)       |
//! ~     Payload | Padding (0-255) | Pad Length | Next Header      ~  encrypted
//! ~  ICV (16 bytes AEAD; 12-32 bytes truncated HMAC with CBC)     ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! With AES-CBC the ICV is an HMAC over everything before it, computed after
//! encryption (RFC 4303 3.3.2.1); with AEAD the tag covers SPI and Sequence Number as
//! AAD (RFC 4106 5).

use crate::aead::{ICV_LEN, IV_LEN};

/// Byte ranges of the ESP header fields.
pub mod field {
    use core::ops::Range;

    /// Security Parameters Index.
    pub const SPI: Range<usize> = 0..4;
    /// Sequence Number (low 32 bits with ESN).
    pub const SEQ: Range<usize> = 4..8;
    /// Explicit IV of the combined-mode algorithms (RFC 4106 3.1, RFC 7634 2).
    pub const IV: Range<usize> = 8..16;
    /// First byte of the ciphertext.
    pub const PAYLOAD: usize = 16;
}

/// Bytes of SPI + Sequence Number.
pub const HEADER_LEN: usize = 8;
/// Bytes before the ciphertext: header + explicit IV.
pub const OVERHEAD_HEAD: usize = HEADER_LEN + IV_LEN;
/// Bytes of Pad Length + Next Header.
pub const TRAILER_LEN: usize = 2;
/// Most padding the encapsulation adds with AEAD: the ciphertext ends on a 4-byte
/// boundary (RFC 4303 2.4). With AES-CBC it is up to 15, to the block (RFC 3602 2.4).
pub const MAX_PAD: usize = 3;
/// Shortest datagram that can carry ESP with a combined-mode algorithm: header, IV, ICV.
pub const MIN_ESP_LEN: usize = OVERHEAD_HEAD + ICV_LEN;
/// Shortest well-formed ESP packet: the ciphertext holds at least the 4-byte-aligned trailer.
pub const MIN_VALID_ESP_LEN: usize = MIN_ESP_LEN + 4;

/// Next Header: IPv4 in tunnel mode (RFC 4303 2.6).
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next Header: IPv6 in tunnel mode.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next Header: "no next header", a dummy / TFC packet to discard (RFC 4303 2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// A read-only view of an ESP packet whose length was checked once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer after checking it holds header, IV and ICV.
    pub fn new_checked(buffer: T) -> Option<Self> {
        if buffer.as_ref().len() < MIN_ESP_LEN {
            return None;
        }
        Some(EspPacket { buffer })
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SPI.start)
    }

    /// Sequence Number as carried (the low 32 bits with ESN).
    pub fn seq(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ.start)
    }

    /// The explicit IV.
    pub fn iv(&self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        if let Some(src) = self.buffer.as_ref().get(field::IV) {
            iv.copy_from_slice(src);
        }
        iv
    }

    /// Ciphertext followed by the ICV.
    pub fn ciphertext_and_icv(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// Reads the SPI of a datagram that may be ESP, without further checks.
pub fn peek_spi(datagram: &[u8]) -> Option<u32> {
    let b = datagram.get(field::SPI)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Padding so that payload + trailer end on a multiple of `align`: 4 bytes for AEAD
/// (RFC 4303 2.4; the IV is 8 bytes, so the ciphertext start is aligned too), the
/// 16-byte block for AES-CBC (RFC 3602 2.4). `align` is a power of two, so a mask
/// does what `%` would (no division per packet: `align` is not a constant here).
#[inline]
pub(crate) const fn pad_len(payload_len: usize, align: usize) -> usize {
    let mask = align - 1;
    (align - ((payload_len + TRAILER_LEN) & mask)) & mask
}

/// Writes the RFC 4303 2.4 default padding 1, 2, 3, ... then Pad Length and Next Header.
#[inline]
pub(crate) fn write_trailer(out: &mut [u8], next_header: u8) {
    let pad = out.len().saturating_sub(TRAILER_LEN);
    for (i, b) in out.iter_mut().take(pad).enumerate() {
        *b = i as u8 + 1;
    }
    if let [.., pl, nh] = out {
        *pl = pad as u8;
        *nh = next_header;
    }
}

/// Parses the trailer at the end of a decrypted payload: returns (data length, Next Header).
///
/// The padding must be 1, 2, 3, ...: RFC 4303 2.4 says the receiver SHOULD check it.
#[inline]
pub(crate) fn parse_trailer(plaintext: &[u8]) -> Result<(usize, u8), crate::MalformedReason> {
    let [.., pad_len, next_header] = plaintext else {
        return Err(crate::MalformedReason::TooShort);
    };
    let data_len = plaintext
        .len()
        .checked_sub(TRAILER_LEN + usize::from(*pad_len))
        .ok_or(crate::MalformedReason::BadPadLength)?;
    let padding = plaintext
        .get(data_len..plaintext.len() - TRAILER_LEN)
        .ok_or(crate::MalformedReason::BadPadLength)?;
    if padding
        .iter()
        .enumerate()
        .any(|(i, &b)| b != (i as u8).wrapping_add(1))
    {
        return Err(crate::MalformedReason::BadPadding);
    }
    Ok((data_len, *next_header))
}

#[inline]
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MalformedReason;

    static PACKET: [u8; 36] = [
        0x00, 0x00, 0x43, 0x21, 0x87, 0x65, 0x43, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0xaa, 0xbb, 0xcc,
        0xdd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn view_reads_fields() {
        let p = EspPacket::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.spi(), 0x4321);
        assert_eq!(p.seq(), 0x8765_4321);
        assert_eq!(p.iv(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.ciphertext_and_icv().len(), 20);
        assert!(EspPacket::new_checked(&PACKET[..31]).is_none());
        assert_eq!(peek_spi(&PACKET[..4]), Some(0x4321));
        assert_eq!(peek_spi(&PACKET[..3]), None);
    }

    #[test]
    fn padding_aligns_to_four() {
        for len in 0..64 {
            let p = pad_len(len, 4);
            assert!(p <= MAX_PAD);
            assert_eq!((len + p + TRAILER_LEN) % 4, 0);
            let p = pad_len(len, 16);
            assert!(p < 16);
            assert_eq!((len + p + TRAILER_LEN) % 16, 0);
        }
    }

    #[test]
    fn trailer_round_trip_and_checks() {
        let mut buf = [0u8; 9];
        buf[..4].copy_from_slice(b"data");
        write_trailer(&mut buf[4..], 41);
        assert_eq!(&buf[4..], &[1, 2, 3, 3, 41]);
        assert_eq!(parse_trailer(&buf), Ok((4, 41)));
        buf[5] = 9;
        assert_eq!(parse_trailer(&buf), Err(MalformedReason::BadPadding));
        assert_eq!(
            parse_trailer(&[0, 7, 4]),
            Err(MalformedReason::BadPadLength)
        );
        assert_eq!(parse_trailer(&[4]), Err(MalformedReason::TooShort));
        assert_eq!(parse_trailer(&[0, 4]), Ok((0, 4)));
    }
}
