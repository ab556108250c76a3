//! Address operations over netlink, in a namespace of our own.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tun_io::netlink::Netlink;
use tun_io::{Tun, TunConfig};

/// rtnetlink multicast groups of address changes (linux/rtnetlink.h).
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// The addresses of the `RTM_NEWADDR` notices `mon` receives within `wait`.
fn new_addr_notices(mon: &mut Socket, wait: Duration) -> Vec<IpNet> {
    let mut seen = Vec::new();
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        let n = match mon.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => panic!("monitor: {e}"),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).expect("notice");
            rest = &rest[(m.header.length as usize).clamp(1, rest.len())..];
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) = m.payload {
                for attr in &a.attributes {
                    if let AddressAttribute::Address(ip) = attr {
                        seen.push(IpNet::new(*ip, a.header.prefix_len).expect("prefix"));
                    }
                }
            }
        }
    }
    seen
}

#[test]
fn addresses_are_announced_again_only_on_the_same_link() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("nl");
    let v4: IpNet = "169.254.100.1/30".parse().unwrap();
    let v6: IpNet = "fd00:100::1/64".parse().unwrap();
    let absent: IpNet = "169.254.200.1/30".parse().unwrap();
    let (announced, stale, notices) = ns.run(move || {
        let tun = Tun::create(&TunConfig::new().name("tio0")).unwrap();
        let mut nl = Netlink::open().unwrap();
        nl.add_address("tio0", v4).unwrap();
        nl.add_address("tio0", v6).unwrap();
        let index = nl.link_state("tio0").unwrap().index;
        // Listening from here on: only the announcements can be heard.
        let mut mon = Socket::new(NETLINK_ROUTE).unwrap();
        mon.bind(&SocketAddr::new(0, 0)).unwrap();
        mon.add_membership(RTNLGRP_IPV4_IFADDR).unwrap();
        mon.add_membership(RTNLGRP_IPV6_IFADDR).unwrap();
        mon.set_non_blocking(true).unwrap();
        let announced = nl
            .reannounce_addresses("tio0", index, &[v4, v6, absent])
            .unwrap();
        // Another link under the same name: nothing is announced or added.
        drop(tun);
        let _again = Tun::create(&TunConfig::new().name("tio0")).unwrap();
        let stale = nl.reannounce_addresses("tio0", index, &[v4]).unwrap();
        (
            announced,
            stale,
            new_addr_notices(&mut mon, Duration::from_secs(1)),
        )
    });
    assert_eq!((announced, stale), (2, 0));
    // (The kernel's own link-local addresses may come and go meanwhile.)
    let ours: Vec<IpNet> = notices
        .into_iter()
        .filter(|n| !matches!(n, IpNet::V6(v6) if v6.addr().is_unicast_link_local()))
        .collect();
    assert_eq!(ours, vec![v4, v6], "RTM_NEWADDR notices");
    // The address the link did not have was not added by the announcement.
    assert!(!ns.ip(&["addr", "show"]).contains("169.254.200.1"));
}
