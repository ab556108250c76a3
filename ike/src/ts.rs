//! Traffic selector arithmetic: intersection and narrowing (RFC 7296 2.9).

use std::net::IpAddr;

use crate::wire::TrafficSelector;

/// A selector that matches every IPv4 address, protocol and port.
pub fn any_v4() -> TrafficSelector {
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: IpAddr::from([0, 0, 0, 0]),
        end_addr: IpAddr::from([255, 255, 255, 255]),
    }
}

/// A selector covering one CIDR prefix, any protocol and port.
pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Option<TrafficSelector> {
    let (start, end) = match addr {
        IpAddr::V4(a) => {
            if prefix_len > 32 {
                return None;
            }
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            (
                IpAddr::from((bits & mask).to_be_bytes()),
                IpAddr::from((bits | !mask).to_be_bytes()),
            )
        }
        IpAddr::V6(a) => {
            if prefix_len > 128 {
                return None;
            }
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            (
                IpAddr::from((bits & mask).to_be_bytes()),
                IpAddr::from((bits | !mask).to_be_bytes()),
            )
        }
    };
    Some(TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: start,
        end_addr: end,
    })
}

/// Parses "10.1.0.0/24", "10.1.0.1" (a host), "fd00::/64" into a selector.
pub fn parse_cidr(s: &str) -> Option<TrafficSelector> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (
            a.trim().parse::<IpAddr>().ok()?,
            l.trim().parse::<u8>().ok()?,
        ),
        None => {
            let a = s.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    from_prefix(addr, len)
}

fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The intersection of two selectors, if any.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if !same_family(&a.start_addr, &b.start_addr) {
        return None;
    }
    let ip_proto = match (a.ip_proto, b.ip_proto) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    // RFC 4301 OPAQUE ports (start 65535, end 0) only meet themselves.
    if start_port > end_port {
        return None;
    }
    let start_addr = a.start_addr.max(b.start_addr);
    let end_addr = a.end_addr.min(b.end_addr);
    if start_addr > end_addr {
        return None;
    }
    Some(TrafficSelector {
        ip_proto,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// True when `inner` lies entirely within `outer`.
pub fn contains(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    same_family(&outer.start_addr, &inner.start_addr)
        && (outer.ip_proto == 0 || outer.ip_proto == inner.ip_proto)
        && outer.start_port <= inner.start_port
        && inner.end_port <= outer.end_port
        && outer.start_addr <= inner.start_addr
        && inner.end_addr <= outer.end_addr
}

/// RFC 7296 2.9: narrows what the peer proposed to what our policy allows. Each
/// proposed selector is intersected with each configured one; duplicates are removed.
pub fn narrow(
    proposed: &[TrafficSelector],
    configured: &[TrafficSelector],
) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for c in configured {
        for p in proposed {
            if let Some(ts) = intersect(p, c) {
                if !out.iter().any(|o| contains(o, &ts)) {
                    out.retain(|o| !contains(&ts, o));
                    out.push(ts);
                }
            }
        }
    }
    out
}

/// True when every selector in `answer` lies within one of `offered`: an initiator
/// accepts only a narrowing of what it proposed.
pub fn is_narrowing(answer: &[TrafficSelector], offered: &[TrafficSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|a| offered.iter().any(|o| contains(o, a)))
}

/// strongSwan-style rendering: "10.1.0.0/24", or "a-b" for a range that is no prefix,
/// with "[proto/port]" when restricted.
pub fn display(ts: &TrafficSelector) -> String {
    let mut s = match prefix_len(ts) {
        Some(len) => format!("{}/{}", ts.start_addr, len),
        None => format!("{}..{}", ts.start_addr, ts.end_addr),
    };
    if ts.ip_proto != 0 || ts.start_port != 0 || ts.end_port != 65535 {
        let port = if ts.start_port == 0 && ts.end_port == 65535 {
            String::new()
        } else if ts.start_port == ts.end_port {
            format!("/{}", ts.start_port)
        } else {
            format!("/{}-{}", ts.start_port, ts.end_port)
        };
        s.push_str(&format!("[{}{}]", ts.ip_proto, port));
    }
    s
}

/// The prefix length when the address range is exactly one CIDR prefix.
pub fn prefix_len(ts: &TrafficSelector) -> Option<u8> {
    let (start, end, bits) = match (ts.start_addr, ts.end_addr) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return None,
    };
    let host = start ^ end;
    // The varying low bits must be all ones, the start all zeros there.
    if host & host.wrapping_add(1) != 0 || start & host != 0 {
        return None;
    }
    Some(bits - (128 - host.leading_zeros()) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        parse_cidr(s).unwrap()
    }

    #[test]
    fn narrowing_picks_the_overlap() {
        let proposed = [ts("10.0.0.0/8")];
        let configured = [ts("10.1.0.0/24"), ts("10.2.0.0/24"), ts("192.168.0.0/16")];
        let n = narrow(&proposed, &configured);
        assert_eq!(n, vec![ts("10.1.0.0/24"), ts("10.2.0.0/24")]);
        assert!(is_narrowing(&n, &proposed));
        assert!(!is_narrowing(&[ts("11.0.0.0/8")], &proposed));
    }

    #[test]
    fn families_and_ports_do_not_mix() {
        assert!(intersect(&ts("10.0.0.0/8"), &ts("fd00::/8")).is_none());
        let mut tcp = ts("10.0.0.0/8");
        tcp.ip_proto = 6;
        let mut udp = tcp;
        udp.ip_proto = 17;
        assert!(intersect(&tcp, &udp).is_none());
        assert_eq!(intersect(&tcp, &ts("10.1.0.0/16")).unwrap().ip_proto, 6);
    }

    #[test]
    fn prefix_lengths_and_display() {
        assert_eq!(prefix_len(&ts("10.96.0.0/12")), Some(12));
        assert_eq!(prefix_len(&ts("0.0.0.0/0")), Some(0));
        assert_eq!(prefix_len(&ts("10.1.2.3")), Some(32));
        assert_eq!(prefix_len(&ts("fd00::/64")), Some(64));
        assert_eq!(display(&ts("10.96.0.0/12")), "10.96.0.0/12");
        let mut odd = ts("10.0.0.1");
        odd.end_addr = "10.0.0.5".parse().unwrap();
        assert_eq!(prefix_len(&odd), None);
        assert_eq!(display(&odd), "10.0.0.1..10.0.0.5");
    }
}
