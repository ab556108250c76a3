use super::*;
use crate::flow::proto;
use crate::flow::tests::{v4, v6};
use core::net::Ipv6Addr;

fn ts(s: &str) -> TrafficSelector {
    s.parse().unwrap()
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = sport.to_be_bytes().to_vec();
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&[0, 8, 0, 0]);
    v4(src, dst, proto::UDP, &l4)
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = sport.to_be_bytes().to_vec();
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&[0; 16]);
    v4(src, dst, proto::TCP, &l4)
}

#[test]
fn longest_destination_wins() {
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    spd.insert(&any, &ts("10.0.0.0/8"), 1u32).unwrap();
    spd.insert(&any, &ts("10.1.0.0/16"), 2).unwrap();
    spd.insert(&any, &ts("10.1.2.3/32"), 3).unwrap();
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 9, 9, 9], 1, 2)),
        Some(1)
    );
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 1, 9, 9], 1, 2)),
        Some(2)
    );
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 1, 2, 3], 1, 2)),
        Some(3)
    );
    assert_eq!(spd.lookup(&udp4([1, 1, 1, 1], [11, 1, 2, 3], 1, 2)), None);
    assert_eq!((spd.len(), spd.entries()), (3, 3));
}

#[test]
fn sum_of_prefix_lengths_decides() {
    let mut spd = Spd::new();
    // 8 + 24 = 32 against 32 + 16 = 48: the second is more specific.
    spd.insert(&ts("10.0.0.0/8"), &ts("192.168.1.0/24"), 1u32)
        .unwrap();
    spd.insert(&ts("10.1.1.1"), &ts("192.168.0.0/16"), 2)
        .unwrap();
    assert_eq!(
        spd.lookup(&udp4([10, 1, 1, 1], [192, 168, 1, 5], 1, 2)),
        Some(2)
    );
    assert_eq!(
        spd.lookup(&udp4([10, 1, 1, 2], [192, 168, 1, 5], 1, 2)),
        Some(1)
    );
    assert_eq!(
        spd.lookup(&udp4([10, 1, 1, 1], [192, 168, 2, 5], 1, 2)),
        Some(2)
    );
    assert_eq!(
        spd.lookup(&udp4([11, 1, 1, 1], [192, 168, 1, 5], 1, 2)),
        None
    );
}

#[test]
fn protocol_then_ports_then_insertion_order() {
    let mut spd = Spd::new();
    let src = TrafficSelector::any_v4();
    let dst = ts("10.0.0.0/8");
    spd.insert(&src, &dst, 1u32).unwrap();
    spd.insert(&src, &dst.with_proto(proto::TCP), 2).unwrap();
    spd.insert(
        &src,
        &dst.with_proto(proto::TCP).with_ports(443, 443).unwrap(),
        3,
    )
    .unwrap();
    spd.insert(
        &src,
        &dst.with_proto(proto::TCP).with_ports(1000, 2000).unwrap(),
        4,
    )
    .unwrap();
    // Same rank as 1 but later: never chosen.
    spd.insert(&src, &dst, 5).unwrap();
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 443)),
        Some(1)
    );
    assert_eq!(
        spd.lookup(&tcp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 80)),
        Some(2)
    );
    assert_eq!(
        spd.lookup(&tcp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 443)),
        Some(3)
    );
    assert_eq!(
        spd.lookup(&tcp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 1500)),
        Some(4)
    );
    // A longer prefix still beats a given protocol.
    spd.insert(&src, &ts("10.0.0.1"), 6).unwrap();
    assert_eq!(
        spd.lookup(&tcp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 443)),
        Some(6)
    );
}

#[test]
fn source_ports_and_proto_agreement() {
    let mut spd = Spd::new();
    let src = TrafficSelector::any_v4()
        .with_proto(proto::UDP)
        .with_ports(53, 53)
        .unwrap();
    spd.insert(&src, &ts("10.0.0.0/8"), 7u32).unwrap();
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 0, 0, 1], 53, 999)),
        Some(7)
    );
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 0, 0, 1], 54, 999)),
        None
    );
    assert_eq!(
        spd.lookup(&tcp4([1, 1, 1, 1], [10, 0, 0, 1], 53, 999)),
        None
    );
    let tcp = ts("10.0.0.0/8").with_proto(proto::TCP);
    assert_eq!(spd.insert(&src, &tcp, 8), Err(SpdError::ProtoMismatch));
    assert_eq!(
        spd.insert(&src, &TrafficSelector::any_v6(), 8),
        Err(SpdError::FamilyMismatch)
    );
}

#[test]
fn icmp_type_code() {
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    // Echo request only: type 8, any code.
    let echo = ts("10.0.0.0/8")
        .with_proto(proto::ICMP)
        .with_ports(0x0800, 0x08ff)
        .unwrap();
    spd.insert(&any, &echo, 1u32).unwrap();
    let request = v4(
        [1, 1, 1, 1],
        [10, 0, 0, 1],
        proto::ICMP,
        &[8, 0, 0, 0, 0, 0, 0, 0],
    );
    let reply = v4(
        [1, 1, 1, 1],
        [10, 0, 0, 1],
        proto::ICMP,
        &[0, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(spd.lookup(&request), Some(1));
    assert_eq!(spd.lookup(&reply), None);
    // ICMPv6 echo request (128) on the source side of the selector pair.
    let mut spd6 = Spd::new();
    let src = TrafficSelector::any_v6()
        .with_proto(proto::ICMPV6)
        .with_ports(128 << 8, 128 << 8)
        .unwrap();
    spd6.insert(&src, &ts("2001:db8::/32"), 2u32).unwrap();
    let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        spd6.lookup(&v6(a, a, proto::ICMPV6, &[128, 0, 0, 0])),
        Some(2)
    );
    assert_eq!(spd6.lookup(&v6(a, a, proto::ICMPV6, &[129, 0, 0, 0])), None);
}

#[test]
fn opaque_ports_match_only_full_ranges() {
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    let web = ts("10.0.0.0/8")
        .with_proto(proto::TCP)
        .with_ports(80, 80)
        .unwrap();
    spd.insert(&any, &web, 1u32).unwrap();
    spd.insert(&any, &ts("10.0.0.0/8").with_proto(proto::TCP), 2)
        .unwrap();
    let mut frag = tcp4([1, 1, 1, 1], [10, 0, 0, 1], 5, 80);
    frag[7] = 100; // non-first fragment
    assert_eq!(spd.lookup(&frag), Some(2));
    // A protocol without ports (GRE) matches only the full-range selector.
    let mut spd = Spd::new();
    spd.insert(&any, &ts("10.0.0.0/8").with_ports(0, 1023).unwrap(), 1u32)
        .unwrap();
    let gre = v4([1, 1, 1, 1], [10, 0, 0, 1], 47, &[0; 8]);
    assert_eq!(spd.lookup(&gre), None);
    spd.insert(&any, &ts("10.0.0.0/8").with_ports(u16::MAX, 0).unwrap(), 2)
        .unwrap();
    assert_eq!(spd.lookup(&gre), Some(2), "OPAQUE selector");
}

#[test]
fn ipv6_prefixes() {
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v6();
    spd.insert(&any, &ts("2001:db8::/32"), 1u32).unwrap();
    spd.insert(&any, &ts("2001:db8:1::/48"), 2).unwrap();
    spd.insert(&TrafficSelector::any_v4(), &TrafficSelector::any_v4(), 9)
        .unwrap();
    let src: Ipv6Addr = "fd00::1".parse().unwrap();
    let udp = [0, 1, 0, 2, 0, 8, 0, 0];
    let to = |d: &str| v6(src, d.parse().unwrap(), proto::UDP, &udp);
    assert_eq!(spd.lookup(&to("2001:db8:2::1")), Some(1));
    assert_eq!(spd.lookup(&to("2001:db8:1::1")), Some(2));
    assert_eq!(
        spd.lookup(&to("2001:db9::1")),
        None,
        "v4 policy must not leak"
    );
}

#[test]
fn ranges_that_are_not_prefixes() {
    let mut spd = Spd::new();
    spd.insert(&TrafficSelector::any_v4(), &ts("10.0.0.1-10.0.0.6"), 1u32)
        .unwrap();
    assert_eq!(spd.entries(), 4);
    for last in 0..=8u8 {
        let want = (1..=6).contains(&last).then_some(1);
        assert_eq!(
            spd.lookup(&udp4([1, 1, 1, 1], [10, 0, 0, last], 1, 2)),
            want,
            ".{last}"
        );
    }
    // Both sides ranges: the cross product of their prefixes.
    spd.insert(&ts("192.168.0.3-192.168.0.4"), &ts("10.0.0.3-10.0.0.4"), 2)
        .unwrap();
    assert_eq!(
        spd.lookup(&udp4([192, 168, 0, 4], [10, 0, 0, 3], 1, 2)),
        Some(2)
    );
    assert_eq!(
        spd.lookup(&udp4([192, 168, 0, 5], [10, 0, 0, 3], 1, 2)),
        Some(1)
    );
    let huge = ts("::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
    assert_eq!(spd.insert(&huge, &huge, 3), Err(SpdError::TooManyPrefixes));
}

#[test]
fn remove_falls_back_and_cleans_up() {
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    spd.insert(&any, &ts("10.0.0.0/8"), 1u32).unwrap();
    spd.insert_sa(
        2,
        &[any, TrafficSelector::any_v6()],
        &[ts("10.1.0.0/16"), ts("10.2.0.0/16")],
    )
    .unwrap();
    assert_eq!(spd.entries(), 3, "v6 x v4 pairs are skipped");
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 2, 0, 1], 1, 2)),
        Some(2)
    );
    assert!(spd.remove(2));
    assert!(!spd.remove(2));
    assert_eq!(
        spd.lookup(&udp4([1, 1, 1, 1], [10, 2, 0, 1], 1, 2)),
        Some(1)
    );
    assert!(spd.remove(1));
    assert!(spd.is_empty());
    assert_eq!(spd.entries(), 0);
    assert!(spd.v4.levels.is_empty());
    assert_eq!(spd.v4.max_src_len, 0);
}

#[test]
fn ten_thousand_sas() {
    // A remote-access gateway: one /32 virtual IP per client, plus a site policy.
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    for i in 0..10_000u32 {
        let ip = core::net::Ipv4Addr::from(0x6440_0000 + i);
        spd.insert(
            &any,
            &TrafficSelector::from_range(ip.into(), ip.into()).unwrap(),
            i,
        )
        .unwrap();
    }
    spd.insert(&any, &ts("100.64.0.0/10"), u32::MAX).unwrap();
    for i in (0..10_000u32).step_by(97) {
        let d = (0x6440_0000 + i).to_be_bytes();
        assert_eq!(spd.lookup(&udp4([10, 0, 0, 1], d, 1, 2)), Some(i));
    }
    let d = (0x6440_0000u32 + 20_000).to_be_bytes();
    assert_eq!(spd.lookup(&udp4([10, 0, 0, 1], d, 1, 2)), Some(u32::MAX));
    assert_eq!(spd.v4.levels.len(), 2, "two destination lengths present");
}

#[test]
fn unparsable_packets_have_no_policy() {
    let mut spd = Spd::new();
    spd.insert(&TrafficSelector::any_v4(), &TrafficSelector::any_v4(), 1u32)
        .unwrap();
    assert_eq!(spd.lookup(&[]), None);
    assert_eq!(spd.lookup(&[0x45, 0, 0]), None);
}
