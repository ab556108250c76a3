//! Traffic selectors (RFC 7296 3.13.1, RFC 4301 4.4.1): an address range of one family,
//! an IP protocol (0 = any) and a port range, plus the per-SA selector sets that
//! decapsulation checks inner packets against (RFC 4301 5.2).

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use crate::flow::{to_ip, Family, Flow};

/// Why a traffic selector could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// Start and end address are of different families.
    #[error("start and end address of different families")]
    FamilyMismatch,
    /// The start address is above the end address.
    #[error("start address above end address")]
    EmptyRange,
    /// The start port is above the end port (and the pair is not OPAQUE 65535..0).
    #[error("start port above end port")]
    EmptyPortRange,
    /// Prefix length longer than the address.
    #[error("prefix length too long")]
    PrefixLength,
    /// The text is not "address", "address/len" or "start-end".
    #[error("cannot parse selector text")]
    Syntax,
}

/// A traffic selector: start..=end addresses, IP protocol (0 = any), start..=end ports.
///
/// Ports hold ICMP type << 8 | code for ICMP and ICMPv6 (RFC 7296 3.13.1). The RFC 7296
/// OPAQUE encoding (start 65535, end 0) is accepted; it matches only packets whose ports
/// are OPAQUE, as does the full range 0..=65535 (RFC 4301 4.4.1.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    family: Family,
    start: u128,
    end: u128,
    ip_proto: u8,
    start_port: u16,
    end_port: u16,
}

/// An address prefix, the unit of the SPD index (address already masked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Prefix {
    pub(crate) addr: u128,
    pub(crate) len: u8,
}

/// The all-ones value of a family's address width.
#[inline]
pub(crate) const fn full(family: Family) -> u128 {
    match family {
        Family::V4 => u32::MAX as u128,
        Family::V6 => u128::MAX,
    }
}

/// Network mask of `len` bits for `family` (len clamped to the width).
#[inline]
pub(crate) const fn mask(family: Family, len: u8) -> u128 {
    let w = family.bits() as u32;
    let len = if (len as u32) > w { w } else { len as u32 };
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len)) >> (128 - w)
    }
}

fn split(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

impl TrafficSelector {
    /// A selector from its RFC 7296 3.13.1 fields.
    pub fn new(
        start_addr: IpAddr,
        end_addr: IpAddr,
        ip_proto: u8,
        start_port: u16,
        end_port: u16,
    ) -> Result<Self, SelectorError> {
        let (family, start) = split(start_addr);
        let (end_family, end) = split(end_addr);
        if family != end_family {
            return Err(SelectorError::FamilyMismatch);
        }
        if start > end {
            return Err(SelectorError::EmptyRange);
        }
        if start_port > end_port && !(start_port == u16::MAX && end_port == 0) {
            return Err(SelectorError::EmptyPortRange);
        }
        Ok(TrafficSelector {
            family,
            start,
            end,
            ip_proto,
            start_port,
            end_port,
        })
    }

    /// Any protocol and port between two addresses.
    pub fn from_range(start_addr: IpAddr, end_addr: IpAddr) -> Result<Self, SelectorError> {
        Self::new(start_addr, end_addr, 0, 0, u16::MAX)
    }

    /// Any protocol and port in `addr/len` (host bits are ignored).
    pub fn from_prefix(addr: IpAddr, len: u8) -> Result<Self, SelectorError> {
        let (family, a) = split(addr);
        if len > family.bits() {
            return Err(SelectorError::PrefixLength);
        }
        let m = mask(family, len);
        let start = a & m;
        let end = start | (full(family) & !m);
        Self::from_range(to_ip(family, start), to_ip(family, end))
    }

    /// Parses "10.96.0.0/12", "2001:db8::/32", a bare address, or "start-end".
    pub fn from_cidr(s: &str) -> Result<Self, SelectorError> {
        let s = s.trim();
        if let Some((a, len)) = s.split_once('/') {
            let addr = IpAddr::from_str(a.trim()).map_err(|_| SelectorError::Syntax)?;
            let len = len
                .trim()
                .parse::<u8>()
                .map_err(|_| SelectorError::Syntax)?;
            return Self::from_prefix(addr, len);
        }
        if let Some((a, b)) = s.split_once('-') {
            let a = IpAddr::from_str(a.trim()).map_err(|_| SelectorError::Syntax)?;
            let b = IpAddr::from_str(b.trim()).map_err(|_| SelectorError::Syntax)?;
            return Self::from_range(a, b);
        }
        let addr = IpAddr::from_str(s).map_err(|_| SelectorError::Syntax)?;
        Self::from_range(addr, addr)
    }

    /// Every IPv4 address, protocol and port.
    pub const fn any_v4() -> Self {
        Self::any(Family::V4)
    }

    /// Every IPv6 address, protocol and port.
    pub const fn any_v6() -> Self {
        Self::any(Family::V6)
    }

    /// Every address of a family, any protocol and port.
    pub const fn any(family: Family) -> Self {
        TrafficSelector {
            family,
            start: 0,
            end: full(family),
            ip_proto: 0,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// The same addresses restricted to one IP protocol (0 = any).
    pub fn with_proto(mut self, ip_proto: u8) -> Self {
        self.ip_proto = ip_proto;
        self
    }

    /// The same addresses and protocol restricted to a port (or ICMP type/code) range.
    pub fn with_ports(mut self, start_port: u16, end_port: u16) -> Result<Self, SelectorError> {
        if start_port > end_port && !(start_port == u16::MAX && end_port == 0) {
            return Err(SelectorError::EmptyPortRange);
        }
        self.start_port = start_port;
        self.end_port = end_port;
        Ok(self)
    }

    /// Address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// First address.
    pub fn start_addr(&self) -> IpAddr {
        to_ip(self.family, self.start)
    }

    /// Last address.
    pub fn end_addr(&self) -> IpAddr {
        to_ip(self.family, self.end)
    }

    /// IP protocol, 0 for any.
    pub fn ip_proto(&self) -> u8 {
        self.ip_proto
    }

    /// First port (or ICMP type/code).
    pub fn start_port(&self) -> u16 {
        self.start_port
    }

    /// Last port (or ICMP type/code).
    pub fn end_port(&self) -> u16 {
        self.end_port
    }

    /// Whether the port range is 0..=65535.
    pub fn is_any_port(&self) -> bool {
        self.start_port == 0 && self.end_port == u16::MAX
    }

    /// Whether `addr` lies in the address range.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        let (f, a) = split(addr);
        f == self.family && self.start <= a && a <= self.end
    }

    /// Ports spanned, for the SPD's "narrower wins" rule (OPAQUE counts as narrowest).
    pub(crate) fn port_span(&self) -> u32 {
        u32::from(self.end_port.saturating_sub(self.start_port))
    }

    #[inline]
    pub(crate) fn proto_matches(&self, proto: u8) -> bool {
        self.ip_proto == 0 || self.ip_proto == proto
    }

    #[inline]
    pub(crate) fn addr_matches(&self, family: Family, a: u128) -> bool {
        family == self.family && self.start <= a && a <= self.end
    }

    /// Whether a flow's source (`remote = true`) or destination side matches.
    #[inline]
    pub(crate) fn matches_side(&self, flow: &Flow, src_side: bool) -> bool {
        let (a, port) = if src_side {
            (flow.src, flow.src_port)
        } else {
            (flow.dst, flow.dst_port)
        };
        self.addr_matches(flow.family, a)
            && self.proto_matches(flow.proto)
            && port_matches(self.start_port, self.end_port, port)
    }

    /// The minimal list of prefixes covering the address range, largest first in
    /// address order (at most 2 * width - 2 of them).
    pub(crate) fn prefixes(&self) -> Vec<Prefix> {
        decompose(self.family, self.start, self.end)
    }
}

/// RFC 4301 4.4.1.1: a port range matches a known port inside it; OPAQUE ports match
/// only the full range (ANY) and the OPAQUE encoding 65535..0.
#[inline]
pub(crate) fn port_matches(start: u16, end: u16, port: Option<u16>) -> bool {
    match port {
        Some(p) => start <= p && p <= end,
        None => (start == 0 && end == u16::MAX) || (start == u16::MAX && end == 0),
    }
}

/// Splits start..=end into aligned prefixes: at each step take the largest block that is
/// aligned at the cursor and does not pass `end`.
fn decompose(family: Family, start: u128, end: u128) -> Vec<Prefix> {
    let w = u32::from(family.bits());
    let mut out = Vec::new();
    let mut cur = start;
    loop {
        let mut k = if cur == 0 {
            w
        } else {
            cur.trailing_zeros().min(w)
        };
        // Block of 2^k addresses: last offset 2^k - 1 must stay within end - cur.
        while k > 0 && span(k) > end - cur {
            k -= 1;
        }
        out.push(Prefix {
            addr: cur,
            len: (w - k) as u8,
        });
        let last = cur + span(k);
        if last >= end {
            return out;
        }
        cur = last + 1;
    }
}

#[inline]
const fn span(k: u32) -> u128 {
    if k >= 128 {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

impl FromStr for TrafficSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_cidr(s)
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefixes = self.prefixes();
        match prefixes.as_slice() {
            [p] => write!(f, "{}/{}", self.start_addr(), p.len)?,
            _ => write!(f, "{}-{}", self.start_addr(), self.end_addr())?,
        }
        if self.ip_proto != 0 || !self.is_any_port() {
            write!(f, "[{}", self.ip_proto)?;
            if !self.is_any_port() {
                write!(f, "/{}-{}", self.start_port, self.end_port)?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrafficSelector({self})")
    }
}

/// The selector sets of one child SA: TSi/TSr seen from this end.
///
/// Outbound traffic goes from `local` to `remote`; inbound inner packets must come from
/// one of `remote` and go to one of `local` (RFC 4301 5.2), each side's protocol and
/// port range applying to that side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaSelectors {
    /// Our side (TSi on the initiator, TSr on the responder).
    pub local: Vec<TrafficSelector>,
    /// The peer's side.
    pub remote: Vec<TrafficSelector>,
}

impl SaSelectors {
    /// Selector sets from both sides.
    pub fn new(local: Vec<TrafficSelector>, remote: Vec<TrafficSelector>) -> Self {
        SaSelectors { local, remote }
    }

    /// Any IPv4 and IPv6 traffic on both sides.
    pub fn any() -> Self {
        let both = vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()];
        SaSelectors {
            local: both.clone(),
            remote: both,
        }
    }

    /// RFC 4301 5.2: the decrypted inner packet of an inbound SA.
    #[inline]
    pub(crate) fn admits_inbound(&self, flow: &Flow) -> bool {
        self.remote.iter().any(|ts| ts.matches_side(flow, true))
            && self.local.iter().any(|ts| ts.matches_side(flow, false))
    }

    /// Whether an outbound packet fits (the SPD normally decides; this is for checks).
    pub fn admits_outbound(&self, flow: &Flow) -> bool {
        self.local.iter().any(|ts| ts.matches_side(flow, true))
            && self.remote.iter().any(|ts| ts.matches_side(flow, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_and_ranges() {
        let t = ts("10.96.0.0/12");
        assert_eq!(t.start_addr(), "10.96.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(t.end_addr(), "10.111.255.255".parse::<IpAddr>().unwrap());
        assert_eq!(t.to_string(), "10.96.0.0/12");
        assert_eq!(ts("10.1.2.3/24").start_addr().to_string(), "10.1.2.0");
        assert_eq!(ts("0.0.0.0/0"), TrafficSelector::any_v4());
        assert_eq!(ts("::/0"), TrafficSelector::any_v6());
        assert_eq!(
            ts("2001:db8::/32").end_addr().to_string(),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(
            ts("192.0.2.7").prefixes(),
            vec![Prefix {
                addr: 0xc000_0207,
                len: 32
            }]
        );
        assert_eq!(
            TrafficSelector::from_cidr("10.0.0.0/33"),
            Err(SelectorError::PrefixLength)
        );
        assert_eq!(
            TrafficSelector::from_cidr("10.0.0.x/8"),
            Err(SelectorError::Syntax)
        );
        assert_eq!(
            TrafficSelector::from_cidr("10.0.0.9-10.0.0.1"),
            Err(SelectorError::EmptyRange)
        );
        assert_eq!(
            TrafficSelector::from_cidr("10.0.0.1-::1"),
            Err(SelectorError::FamilyMismatch)
        );
        assert!(ts("10.0.0.0/8").with_ports(10, 9).is_err());
        assert!(ts("10.0.0.0/8").with_ports(u16::MAX, 0).is_ok(), "OPAQUE");
        assert_eq!(ts("10.0.0.1-10.0.0.6").to_string(), "10.0.0.1-10.0.0.6");
        let udp = ts("10.0.0.0/8").with_proto(17).with_ports(53, 53).unwrap();
        assert_eq!(udp.to_string(), "10.0.0.0/8[17/53-53]");
    }

    #[test]
    fn decomposition_is_minimal_and_exact() {
        let p = ts("10.0.0.1-10.0.0.6").prefixes();
        let want = [
            (0x0a00_0001, 32),
            (0x0a00_0002, 31),
            (0x0a00_0004, 31),
            (0x0a00_0006, 32),
        ];
        assert_eq!(p.iter().map(|p| (p.addr, p.len)).collect::<Vec<_>>(), want);
        assert_eq!(
            TrafficSelector::any_v6().prefixes(),
            vec![Prefix { addr: 0, len: 0 }]
        );
        // Worst case: 1 .. 2^32 - 2 needs 62 prefixes.
        assert_eq!(ts("0.0.0.1-255.255.255.254").prefixes().len(), 62);
        assert_eq!(
            ts("::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")
                .prefixes()
                .len(),
            254
        );
        // Exhaustive cover check on a small awkward range.
        let t = ts("10.0.0.3-10.0.1.17");
        let ps = t.prefixes();
        for a in 0x0a00_0000u128..0x0a00_0200 {
            let covered = ps
                .iter()
                .filter(|p| a & mask(Family::V4, p.len) == p.addr)
                .count();
            let inside = (0x0a00_0003..=0x0a00_0111).contains(&a);
            assert_eq!(covered, usize::from(inside), "addr {a:x}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(mask(Family::V4, 0), 0);
        assert_eq!(mask(Family::V4, 8), 0xff00_0000);
        assert_eq!(mask(Family::V4, 32), 0xffff_ffff);
        assert_eq!(mask(Family::V6, 128), u128::MAX);
        assert_eq!(mask(Family::V6, 1), 1 << 127);
    }

    #[test]
    fn port_semantics() {
        assert!(port_matches(0, u16::MAX, None));
        assert!(port_matches(u16::MAX, 0, None));
        assert!(!port_matches(u16::MAX, 0, Some(5)));
        assert!(!port_matches(80, 80, None));
        assert!(port_matches(80, 80, Some(80)));
    }
}
