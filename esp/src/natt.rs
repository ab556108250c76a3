//! UDP encapsulation of ESP for NAT traversal (RFC 3948): the UDP header for callers
//! that build raw datagrams, the non-ESP marker that tells IKE from ESP on port 4500,
//! the NAT keepalive, and the one demultiplexer for port 4500.
//!
//! ```text
//! port 4500:  | UDP | 0x00000000 | IKE message |     (RFC 3948 2.2, non-ESP marker)
//!             | UDP | SPI != 0 | seq | ... ESP |     (RFC 3948 2.1)
//!             | UDP | 0xFF |                         (RFC 3948 2.3, NAT keepalive)
//! ```

use core::ops::Range;

use crate::packet::MIN_ESP_LEN;

/// IKE's port (RFC 7296 2).
pub const IKE_PORT: u16 = 500;
/// IKE and UDP-encapsulated ESP after NAT detection (RFC 3948 2, RFC 7296 2.23).
pub const NAT_T_PORT: u16 = 4500;
/// The non-ESP marker: four zero bytes where an ESP packet has its (never zero) SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT keepalive payload (RFC 3948 2.3).
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];
/// Bytes of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes of the fixed IKE header (RFC 7296 3.1), the least a marked datagram must carry.
pub const IKE_HEADER_LEN: usize = 28;

/// Byte ranges of the UDP header (RFC 768).
pub mod field {
    use core::ops::Range;

    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length of header plus payload.
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum (zero for UDP-encapsulated ESP over IPv4, RFC 3948 2.1).
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Why a UDP/NAT-T framing operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum NattError {
    /// Shorter than a UDP header.
    #[error("shorter than a UDP header")]
    TooShort,
    /// The UDP Length field is below 8 or beyond the datagram.
    #[error("bad UDP length")]
    BadLength,
    /// Not enough bytes before the payload to prepend a header or marker.
    #[error("not enough headroom")]
    NoHeadroom,
    /// The payload range lies outside the buffer or does not fit in a UDP length.
    #[error("bad payload range")]
    BadRange,
}

/// A UDP header (RFC 768).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length of header plus payload.
    pub length: u16,
    /// Checksum; 0 means none.
    pub checksum: u16,
}

impl UdpHeader {
    /// Parses a UDP datagram: returns the header and the payload bounded by Length.
    pub fn parse(datagram: &[u8]) -> Result<(UdpHeader, &[u8]), NattError> {
        let h = datagram.get(..UDP_HEADER_LEN).ok_or(NattError::TooShort)?;
        let word = |r: Range<usize>| match h.get(r) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        };
        let header = UdpHeader {
            src_port: word(field::SRC_PORT),
            dst_port: word(field::DST_PORT),
            length: word(field::LENGTH),
            checksum: word(field::CHECKSUM),
        };
        let len = usize::from(header.length);
        if len < UDP_HEADER_LEN {
            return Err(NattError::BadLength);
        }
        let payload = datagram
            .get(UDP_HEADER_LEN..len)
            .ok_or(NattError::BadLength)?;
        Ok((header, payload))
    }

    /// Writes the header into the first 8 bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), NattError> {
        let h = out.get_mut(..UDP_HEADER_LEN).ok_or(NattError::TooShort)?;
        h[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        h[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        h[field::LENGTH].copy_from_slice(&self.length.to_be_bytes());
        h[field::CHECKSUM].copy_from_slice(&self.checksum.to_be_bytes());
        Ok(())
    }
}

/// Writes a UDP header in the 8 bytes before `buf[payload]`; returns the datagram's range.
///
/// The checksum is zero: RFC 3948 2.1 for IPv4. Over IPv6 a zero checksum needs RFC
/// 6935/6936 support on the path; callers that cannot rely on it must fill it in.
pub fn prepend_udp_header(
    buf: &mut [u8],
    payload: Range<usize>,
    src_port: u16,
    dst_port: u16,
) -> Result<Range<usize>, NattError> {
    if payload.start > payload.end || payload.end > buf.len() {
        return Err(NattError::BadRange);
    }
    let start = payload
        .start
        .checked_sub(UDP_HEADER_LEN)
        .ok_or(NattError::NoHeadroom)?;
    let length = u16::try_from(payload.end - start).map_err(|_| NattError::BadRange)?;
    let header = UdpHeader {
        src_port,
        dst_port,
        length,
        checksum: 0,
    };
    header.emit(buf.get_mut(start..).ok_or(NattError::BadRange)?)?;
    Ok(start..payload.end)
}

/// Writes the non-ESP marker before the IKE message at `buf[ike]` (RFC 3948 2.2);
/// returns the range of the UDP payload.
pub fn prepend_non_esp_marker(
    buf: &mut [u8],
    ike: Range<usize>,
) -> Result<Range<usize>, NattError> {
    if ike.start > ike.end || ike.end > buf.len() {
        return Err(NattError::BadRange);
    }
    let start = ike
        .start
        .checked_sub(NON_ESP_MARKER.len())
        .ok_or(NattError::NoHeadroom)?;
    buf.get_mut(start..ike.start)
        .ok_or(NattError::BadRange)?
        .copy_from_slice(&NON_ESP_MARKER);
    Ok(start..ike.end)
}

/// The IKE message behind a non-ESP marker, or `None` if the payload does not start
/// with one.
pub fn strip_non_esp_marker(payload: &[u8]) -> Option<&[u8]> {
    payload.strip_prefix(&NON_ESP_MARKER[..])
}

/// Whether a UDP payload is a NAT keepalive (RFC 3948 2.3).
pub fn is_keepalive(payload: &[u8]) -> bool {
    payload == NAT_KEEPALIVE
}

/// What a UDP payload received on port 4500 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datagram4500<'a> {
    /// An IKE message, the non-ESP marker already stripped.
    Ike(&'a [u8]),
    /// An ESP packet: always the whole payload, so in-place decapsulation takes the
    /// payload's range unchanged.
    Esp(&'a [u8]),
    /// A NAT keepalive, to be ignored (RFC 3948 2.3).
    Keepalive,
    /// Nothing valid; drop and count.
    Malformed(MalformedDatagram),
}

/// Why a port-4500 payload is garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedDatagram {
    /// Empty payload.
    #[error("empty datagram")]
    Empty,
    /// Too short to hold a marker or an SPI, and not a keepalive.
    #[error("too short for a marker or an SPI")]
    TooShort,
    /// A non-ESP marker followed by less than an IKE header.
    #[error("non-ESP marker without an IKE header")]
    IkeTooShort,
    /// A nonzero SPI followed by less than sequence number, IV and ICV.
    #[error("shorter than ESP header, IV and ICV")]
    EspTooShort,
}

/// Classifies a UDP payload that arrived on port 4500 (RFC 3948 2).
///
/// A zero SPI is the marker, so anything classified as ESP has a nonzero SPI.
#[inline]
pub fn classify_4500(payload: &[u8]) -> Datagram4500<'_> {
    match payload {
        [] => Datagram4500::Malformed(MalformedDatagram::Empty),
        [0xff] => Datagram4500::Keepalive,
        [0, 0, 0, 0, ike @ ..] => {
            if ike.len() < IKE_HEADER_LEN {
                Datagram4500::Malformed(MalformedDatagram::IkeTooShort)
            } else {
                Datagram4500::Ike(ike)
            }
        }
        p if p.len() < NON_ESP_MARKER.len() => Datagram4500::Malformed(MalformedDatagram::TooShort),
        p if p.len() < MIN_ESP_LEN => Datagram4500::Malformed(MalformedDatagram::EspTooShort),
        p => Datagram4500::Esp(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_header_round_trip() {
        let mut buf = [0u8; 8 + 5];
        buf[8..].copy_from_slice(b"hello");
        let r = prepend_udp_header(&mut buf, 8..13, 4500, 4501).unwrap();
        assert_eq!(r, 0..13);
        assert_eq!(&buf[..8], &[0x11, 0x94, 0x11, 0x95, 0, 13, 0, 0]);
        let (h, payload) = UdpHeader::parse(&buf).unwrap();
        assert_eq!(
            (h.src_port, h.dst_port, h.length, h.checksum),
            (4500, 4501, 13, 0)
        );
        assert_eq!(payload, b"hello");
        assert_eq!(
            prepend_udp_header(&mut buf, 7..13, 1, 2),
            Err(NattError::NoHeadroom)
        );
        assert_eq!(
            prepend_udp_header(&mut buf, 8..14, 1, 2),
            Err(NattError::BadRange)
        );
    }

    #[test]
    fn udp_parse_rejects_bad_lengths() {
        assert_eq!(UdpHeader::parse(&[0; 7]), Err(NattError::TooShort));
        assert_eq!(
            UdpHeader::parse(&[0, 1, 0, 2, 0, 7, 0, 0]),
            Err(NattError::BadLength)
        );
        assert_eq!(
            UdpHeader::parse(&[0, 1, 0, 2, 0, 9, 0, 0]),
            Err(NattError::BadLength)
        );
        // Trailing bytes beyond Length are ignored.
        let (_, p) = UdpHeader::parse(&[0, 1, 0, 2, 0, 9, 0, 0, 7, 8]).unwrap();
        assert_eq!(p, &[7]);
    }

    #[test]
    fn marker_prepend_strip() {
        let mut buf = [9u8; 4 + 28];
        let r = prepend_non_esp_marker(&mut buf, 4..32).unwrap();
        assert_eq!(r, 0..32);
        assert_eq!(
            strip_non_esp_marker(&buf[r.clone()]).map(<[u8]>::len),
            Some(28)
        );
        assert!(matches!(classify_4500(&buf[r]), Datagram4500::Ike(m) if m.len() == 28));
        assert_eq!(
            prepend_non_esp_marker(&mut buf, 3..32),
            Err(NattError::NoHeadroom)
        );
        assert_eq!(strip_non_esp_marker(&[0, 0, 0, 1]), None);
    }

    #[test]
    fn demux_4500() {
        assert_eq!(classify_4500(&[0xff]), Datagram4500::Keepalive);
        assert!(is_keepalive(&NAT_KEEPALIVE));
        assert_eq!(
            classify_4500(&[]),
            Datagram4500::Malformed(MalformedDatagram::Empty)
        );
        assert_eq!(
            classify_4500(&[0xfe]),
            Datagram4500::Malformed(MalformedDatagram::TooShort)
        );
        assert_eq!(
            classify_4500(&[1, 2, 3]),
            Datagram4500::Malformed(MalformedDatagram::TooShort)
        );
        assert_eq!(
            classify_4500(&[0, 0, 0, 0, 1]),
            Datagram4500::Malformed(MalformedDatagram::IkeTooShort)
        );
        assert_eq!(
            classify_4500(&[0; 3]),
            Datagram4500::Malformed(MalformedDatagram::TooShort)
        );
        let mut esp = [0u8; MIN_ESP_LEN];
        esp[3] = 1;
        assert_eq!(classify_4500(&esp), Datagram4500::Esp(&esp[..]));
        assert_eq!(
            classify_4500(&esp[..MIN_ESP_LEN - 1]),
            Datagram4500::Malformed(MalformedDatagram::EspTooShort)
        );
        // 0xff followed by more bytes is an SPI starting with 0xff, not a keepalive.
        let mut ffspi = [0u8; MIN_ESP_LEN];
        ffspi[0] = 0xff;
        assert_eq!(classify_4500(&ffspi), Datagram4500::Esp(&ffspi[..]));
    }
}
