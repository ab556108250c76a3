//! The selector fields of an inner IP packet (RFC 4301 4.4.1.1): addresses, next layer
//! protocol and ports, read without copying and without trusting any length field.
//!
//! Ports are the transport ports for TCP, UDP, SCTP and UDP-Lite. For ICMP and ICMPv6
//! the 16-bit value type << 8 | code stands in for both ports (RFC 7296 3.13.1; RFC 4301
//! leaves the side open, so, as strongSwan does, a selector may carry it on either
//! side). Non-first fragments, protocols without ports and transport headers cut short
//! give OPAQUE ports (`None`), which only full-range selectors match (RFC 4301 4.4.1.1).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers this module looks at.
pub mod proto {
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = 1;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 Hop-by-Hop Options header.
    pub const IPV6_HOPOPTS: u8 = 0;
    /// IPv6 Destination Options header.
    pub const IPV6_DSTOPTS: u8 = 60;
    /// Stream Control Transmission Protocol.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

/// Extension headers walked before giving up (no legitimate packet needs more).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Address family of a flow or selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4: 32-bit addresses.
    V4,
    /// IPv6: 128-bit addresses.
    V6,
}

impl Family {
    /// Address width in bits.
    pub const fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// Why an inner packet's header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Version nibble is neither 4 nor 6.
    #[error("not an IP packet")]
    NotIp,
    /// Header or length fields run past the buffer.
    #[error("truncated IP header")]
    Truncated,
    /// More than [`MAX_IPV6_EXT_HEADERS`] IPv6 extension headers.
    #[error("too many IPv6 extension headers")]
    TooManyExtensionHeaders,
}

/// Selector-relevant fields of an IP packet. Addresses are kept as integers (IPv4 in
/// the low 32 bits) so that masking is one AND.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub(crate) family: Family,
    pub(crate) src: u128,
    pub(crate) dst: u128,
    pub(crate) proto: u8,
    pub(crate) src_port: Option<u16>,
    pub(crate) dst_port: Option<u16>,
    pub(crate) ip_len: usize,
}

impl Flow {
    /// Reads the IPv4 or IPv6 header (walking IPv6 extension headers) of `packet`.
    pub fn parse(packet: &[u8]) -> Result<Flow, FlowError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => parse_v4(packet),
            Some(6) => parse_v6(packet),
            _ => Err(FlowError::NotIp),
        }
    }

    /// Address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        to_ip(self.family, self.src)
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        to_ip(self.family, self.dst)
    }

    /// Next layer protocol (after IPv6 extension headers).
    pub fn ip_proto(&self) -> u8 {
        self.proto
    }

    /// Source port or ICMP type/code; `None` when OPAQUE.
    pub fn src_port(&self) -> Option<u16> {
        self.src_port
    }

    /// Destination port or ICMP type/code; `None` when OPAQUE.
    pub fn dst_port(&self) -> Option<u16> {
        self.dst_port
    }

    /// Length of the IP packet according to its header (never more than the buffer).
    pub fn ip_len(&self) -> usize {
        self.ip_len
    }
}

pub(crate) fn to_ip(family: Family, a: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(a as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(a)),
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at + 2)? {
        &[x, y] => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

#[inline]
fn be_addr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Ports of a first fragment's transport header; `None` (OPAQUE) when absent or cut short.
#[inline]
fn ports(proto: u8, transport: &[u8]) -> (Option<u16>, Option<u16>) {
    match proto {
        proto::TCP | proto::UDP | proto::SCTP | proto::UDPLITE => {
            match (be16(transport, 0), be16(transport, 2)) {
                (Some(s), Some(d)) => (Some(s), Some(d)),
                _ => (None, None),
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            let tc = be16(transport, 0);
            (tc, tc)
        }
        _ => (None, None),
    }
}

fn parse_v4(p: &[u8]) -> Result<Flow, FlowError> {
    let ihl = usize::from(p.first().ok_or(FlowError::Truncated)? & 0x0f) * 4;
    let total = usize::from(be16(p, 2).ok_or(FlowError::Truncated)?);
    if ihl < 20 || total < ihl || total > p.len() {
        return Err(FlowError::Truncated);
    }
    let frag_offset = be16(p, 6).ok_or(FlowError::Truncated)? & 0x1fff;
    let proto = *p.get(9).ok_or(FlowError::Truncated)?;
    let src = be_addr::<4>(p, 12).ok_or(FlowError::Truncated)?;
    let dst = be_addr::<4>(p, 16).ok_or(FlowError::Truncated)?;
    let (src_port, dst_port) = if frag_offset != 0 {
        (None, None)
    } else {
        ports(proto, p.get(ihl..total).unwrap_or(&[]))
    };
    Ok(Flow {
        family: Family::V4,
        src: u128::from(u32::from_be_bytes(src)),
        dst: u128::from(u32::from_be_bytes(dst)),
        proto,
        src_port,
        dst_port,
        ip_len: total,
    })
}

fn parse_v6(p: &[u8]) -> Result<Flow, FlowError> {
    const FIXED: usize = 40;
    let payload_len = usize::from(be16(p, 4).ok_or(FlowError::Truncated)?);
    let mut next = *p.get(6).ok_or(FlowError::Truncated)?;
    let src = be_addr::<16>(p, 8).ok_or(FlowError::Truncated)?;
    let dst = be_addr::<16>(p, 24).ok_or(FlowError::Truncated)?;
    // Payload Length 0 with a Hop-by-Hop header is a jumbogram (RFC 2675): take the buffer.
    let total = if payload_len == 0 && next == proto::IPV6_HOPOPTS {
        p.len()
    } else {
        FIXED + payload_len
    };
    let p = p.get(..total).ok_or(FlowError::Truncated)?;
    let mut off = FIXED;
    let mut non_first_fragment = false;
    let mut walked = 0;
    loop {
        let hdr_len = match next {
            proto::IPV6_HOPOPTS | proto::IPV6_ROUTE | proto::IPV6_DSTOPTS => {
                (usize::from(*p.get(off + 1).ok_or(FlowError::Truncated)?) + 1) * 8
            }
            // RFC 4302 2.2: AH's length is in 4-byte units, minus 2.
            proto::AH => (usize::from(*p.get(off + 1).ok_or(FlowError::Truncated)?) + 2) * 4,
            proto::IPV6_FRAG => {
                let offset = be16(p, off + 2).ok_or(FlowError::Truncated)? >> 3;
                non_first_fragment |= offset != 0;
                8
            }
            _ => break,
        };
        if walked == MAX_IPV6_EXT_HEADERS {
            return Err(FlowError::TooManyExtensionHeaders);
        }
        walked += 1;
        next = *p.get(off).ok_or(FlowError::Truncated)?;
        off += hdr_len;
        if off > p.len() {
            return Err(FlowError::Truncated);
        }
        if non_first_fragment {
            // The rest of the chain is in the first fragment; `next` is the protocol.
            break;
        }
    }
    let (src_port, dst_port) = if non_first_fragment {
        (None, None)
    } else {
        ports(next, p.get(off..).unwrap_or(&[]))
    };
    Ok(Flow {
        family: Family::V6,
        src: u128::from_be_bytes(src),
        dst: u128::from_be_bytes(dst),
        proto: next,
        src_port,
        dst_port,
        ip_len: total,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal IPv4 packet: header plus `l4` as payload.
    pub(crate) fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    /// A minimal IPv6 packet: header, extension headers already in `payload`.
    pub(crate) fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut p = vec![0x60, 0, 0, 0, (n >> 8) as u8, n as u8, next, 64];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_udp_ports() {
        let p = v4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            proto::UDP,
            &[0x12, 0x34, 0, 53, 0, 8, 0, 0],
        );
        let f = Flow::parse(&p).unwrap();
        assert_eq!(f.src(), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(f.dst(), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (f.ip_proto(), f.src_port(), f.dst_port()),
            (17, Some(0x1234), Some(53))
        );
        assert_eq!(f.ip_len(), 28);
    }

    #[test]
    fn ipv4_icmp_type_code_and_fragments() {
        let p = v4([1, 1, 1, 1], [2, 2, 2, 2], proto::ICMP, &[8, 0, 0, 0]);
        let f = Flow::parse(&p).unwrap();
        assert_eq!((f.src_port(), f.dst_port()), (Some(0x0800), Some(0x0800)));
        let mut frag = v4([1, 1, 1, 1], [2, 2, 2, 2], proto::TCP, &[0, 80, 0, 81]);
        frag[7] = 10; // fragment offset 10: ports are not in this packet
        let f = Flow::parse(&frag).unwrap();
        assert_eq!((f.src_port(), f.dst_port()), (None, None));
        // Transport header cut short: OPAQUE, not an error.
        let short = v4([1, 1, 1, 1], [2, 2, 2, 2], proto::TCP, &[0, 80]);
        assert_eq!(Flow::parse(&short).unwrap().src_port(), None);
    }

    #[test]
    fn ipv4_rejects_bad_lengths() {
        let mut p = v4([1, 1, 1, 1], [2, 2, 2, 2], proto::UDP, &[0; 8]);
        assert!(Flow::parse(&p[..19]).is_err());
        p[3] = 200;
        assert_eq!(Flow::parse(&p), Err(FlowError::Truncated));
        p[3] = 28;
        p[0] = 0x44;
        assert_eq!(Flow::parse(&p), Err(FlowError::Truncated));
        assert_eq!(Flow::parse(&[]), Err(FlowError::NotIp));
        assert_eq!(Flow::parse(&[0x50]), Err(FlowError::NotIp));
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> TCP.
        let mut payload = vec![proto::IPV6_DSTOPTS, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(&[proto::TCP, 1]);
        payload.extend_from_slice(&[0; 14]);
        payload.extend_from_slice(&[0x01, 0xbb, 0xc0, 0x00]);
        let p = v6(a, b, proto::IPV6_HOPOPTS, &payload);
        let f = Flow::parse(&p).unwrap();
        assert_eq!(f.family(), Family::V6);
        assert_eq!(f.src(), IpAddr::V6(a));
        assert_eq!(
            (f.ip_proto(), f.src_port(), f.dst_port()),
            (6, Some(443), Some(0xc000))
        );
        // ICMPv6 echo request.
        let p = v6(a, b, proto::ICMPV6, &[128, 0, 0, 0]);
        assert_eq!(Flow::parse(&p).unwrap().src_port(), Some(128 << 8));
        // Non-first fragment: protocol known, ports OPAQUE.
        let p = v6(
            a,
            b,
            proto::IPV6_FRAG,
            &[proto::UDP, 0, 0, 0x10, 0, 0, 0, 1, 0, 0],
        );
        let f = Flow::parse(&p).unwrap();
        assert_eq!((f.ip_proto(), f.src_port()), (17, None));
        // First fragment: ports read.
        let p = v6(
            a,
            b,
            proto::IPV6_FRAG,
            &[proto::UDP, 0, 0, 1, 0, 0, 0, 1, 0, 7, 0, 9],
        );
        assert_eq!(Flow::parse(&p).unwrap().dst_port(), Some(9));
    }

    #[test]
    fn ipv6_bounds() {
        let a: Ipv6Addr = "::1".parse().unwrap();
        // A loop of destination-options headers longer than the bound.
        let mut payload = Vec::new();
        for _ in 0..=MAX_IPV6_EXT_HEADERS {
            payload.extend_from_slice(&[proto::IPV6_DSTOPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let p = v6(a, a, proto::IPV6_DSTOPTS, &payload);
        assert_eq!(Flow::parse(&p), Err(FlowError::TooManyExtensionHeaders));
        // Extension header claiming more bytes than present.
        let p = v6(
            a,
            a,
            proto::IPV6_DSTOPTS,
            &[proto::TCP, 3, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(Flow::parse(&p), Err(FlowError::Truncated));
        // Payload length past the buffer.
        let mut p = v6(a, a, proto::UDP, &[0; 8]);
        p[5] = 9;
        assert_eq!(Flow::parse(&p), Err(FlowError::Truncated));
        assert_eq!(Flow::parse(&p[..39]), Err(FlowError::Truncated));
    }
}
