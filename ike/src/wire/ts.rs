//! TSi and TSr payloads (RFC 7296 3.13) and traffic selectors (3.13.1).
//!
//! ```text
//! | Number of TSs |                 RESERVED                      |
//! ~                       <Traffic Selectors>                     ~
//!
//! |   TS Type     |IP Protocol ID |       Selector Length         |
//! |           Start Port          |           End Port            |
//! ~                         Starting Address                      ~
//! ~                         Ending Address                        ~
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::{count8, put_u16, Reader};
use super::{TrafficSelector, WireError, MAX_TRAFFIC_SELECTORS};
use crate::iana::ts;

/// Selector length of a TS_IPV4_ADDR_RANGE.
pub const IPV4_SELECTOR_LEN: usize = 16;
/// Selector length of a TS_IPV6_ADDR_RANGE.
pub const IPV6_SELECTOR_LEN: usize = 40;

impl TrafficSelector {
    /// Every address of one family (IPv6 if `v6`), every protocol and every port.
    pub fn any(v6: bool) -> Self {
        let (start_addr, end_addr) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            )
        };
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
            start_addr,
            end_addr,
        }
    }

    /// TS type on the wire, from the family of `start_addr`.
    pub fn ts_type(&self) -> u8 {
        match self.start_addr {
            IpAddr::V4(_) => ts::IPV4_ADDR_RANGE,
            IpAddr::V6(_) => ts::IPV6_ADDR_RANGE,
        }
    }

    /// Decodes one selector that fills `buf` exactly.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let ts_type = r.u8("traffic selector")?;
        let ip_proto = r.u8("traffic selector")?;
        let len = usize::from(r.u16("traffic selector")?);
        let start_port = r.u16("traffic selector")?;
        let end_port = r.u16("traffic selector")?;
        let expected = match ts_type {
            ts::IPV4_ADDR_RANGE => IPV4_SELECTOR_LEN,
            ts::IPV6_ADDR_RANGE => IPV6_SELECTOR_LEN,
            // RFC 7296 3.13.1 defines only the two address ranges; a selector we cannot
            // represent must not be silently widened or dropped.
            _ => return Err(WireError::Invalid("traffic selector type")),
        };
        if len != expected || buf.len() != expected {
            return Err(WireError::BadLength("traffic selector"));
        }
        let (start_addr, end_addr) = if ts_type == ts::IPV4_ADDR_RANGE {
            let s = r.array::<4>("traffic selector")?;
            let e = r.array::<4>("traffic selector")?;
            (IpAddr::from(s), IpAddr::from(e))
        } else {
            let s = r.array::<16>("traffic selector")?;
            let e = r.array::<16>("traffic selector")?;
            (IpAddr::from(s), IpAddr::from(e))
        };
        Ok(TrafficSelector {
            ip_proto,
            start_port,
            end_port,
            start_addr,
            end_addr,
        })
    }

    /// Length of the selector.
    pub fn buffer_len(&self) -> usize {
        match self.start_addr {
            IpAddr::V4(_) => IPV4_SELECTOR_LEN,
            IpAddr::V6(_) => IPV6_SELECTOR_LEN,
        }
    }

    /// Appends the selector. The family of `start_addr` decides; an `end_addr` of the
    /// other family (a caller's bug) is mapped into it, or becomes all-ones.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.ts_type());
        out.push(self.ip_proto);
        put_u16(out, self.buffer_len() as u16);
        put_u16(out, self.start_port);
        put_u16(out, self.end_port);
        match (self.start_addr, self.end_addr) {
            (IpAddr::V4(s), end) => {
                let e = match end {
                    IpAddr::V4(e) => e,
                    IpAddr::V6(e) => e.to_ipv4_mapped().unwrap_or(Ipv4Addr::BROADCAST),
                };
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&e.octets());
            }
            (IpAddr::V6(s), end) => {
                let e = match end {
                    IpAddr::V6(e) => e,
                    IpAddr::V4(e) => e.to_ipv6_mapped(),
                };
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&e.octets());
            }
        }
    }
}

/// Decodes a TSi/TSr payload body.
pub fn parse(body: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    let mut r = Reader::new(body);
    let count = usize::from(r.u8("TS payload")?);
    r.take(3, "TS payload")?;
    if count > MAX_TRAFFIC_SELECTORS {
        return Err(WireError::TooMany("traffic selectors"));
    }
    let mut selectors = Vec::with_capacity(count);
    while !r.is_empty() {
        if selectors.len() >= count {
            return Err(WireError::Invalid("number of TSs"));
        }
        let sub = r.sub(2, 8, "traffic selector")?;
        selectors.push(TrafficSelector::parse(sub)?);
    }
    if selectors.len() != count {
        return Err(WireError::Invalid("number of TSs"));
    }
    Ok(selectors)
}

/// Length of a TSi/TSr body.
pub fn buffer_len(selectors: &[TrafficSelector]) -> usize {
    4 + selectors
        .iter()
        .map(TrafficSelector::buffer_len)
        .sum::<usize>()
}

/// Appends a TSi/TSr body.
pub fn emit(selectors: &[TrafficSelector], out: &mut Vec<u8>) {
    out.extend_from_slice(&[count8(selectors.len()), 0, 0, 0]);
    for s in selectors {
        s.emit(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static V4_BODY: [u8; 20] = [
        1, 0, 0, 0, // one TS
        7, 6, 0, 16, // IPv4 range, TCP, length 16
        0, 80, 0, 80, // port 80
        10, 0, 0, 0, // 10.0.0.0
        10, 0, 255, 255, // 10.0.255.255
    ];

    fn v4() -> TrafficSelector {
        TrafficSelector {
            ip_proto: 6,
            start_port: 80,
            end_port: 80,
            start_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
            end_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 255, 255)),
        }
    }

    #[test]
    fn v4_golden() {
        assert_eq!(parse(&V4_BODY), Ok(vec![v4()]));
        let mut out = Vec::new();
        emit(&[v4()], &mut out);
        assert_eq!(out, V4_BODY);
        assert_eq!(buffer_len(&[v4()]), V4_BODY.len());
        for n in 0..V4_BODY.len() {
            assert!(parse(&V4_BODY[..n]).is_err());
        }
    }

    #[test]
    fn mixed_round_trip() {
        let sels = vec![
            v4(),
            TrafficSelector::any(true),
            TrafficSelector::any(false),
        ];
        let mut out = Vec::new();
        emit(&sels, &mut out);
        assert_eq!(out.len(), 4 + 16 + 40 + 16);
        assert_eq!(out.len(), buffer_len(&sels));
        assert_eq!(parse(&out), Ok(sels));
    }

    #[test]
    fn rejects_bad_selectors() {
        let mut wrong_len = V4_BODY;
        wrong_len[7] = 20;
        assert!(parse(&wrong_len).is_err());
        let mut wrong_type = V4_BODY;
        wrong_type[4] = 9;
        assert_eq!(
            parse(&wrong_type),
            Err(WireError::Invalid("traffic selector type"))
        );
        let mut wrong_count = V4_BODY;
        wrong_count[0] = 2;
        assert!(parse(&wrong_count).is_err());
        wrong_count[0] = 0;
        assert!(parse(&wrong_count).is_err());
        let mut many = vec![65, 0, 0, 0];
        for _ in 0..65 {
            many.extend_from_slice(&V4_BODY[4..]);
        }
        assert_eq!(parse(&many), Err(WireError::TooMany("traffic selectors")));
    }

    #[test]
    fn mismatched_family_is_mapped() {
        let mut s = v4();
        s.end_addr = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        let mut out = Vec::new();
        s.emit(&mut out);
        assert_eq!(&out[12..], &[10, 1, 2, 3]);
    }
}
