//! End-to-end: esprit peers across the middle boxes of the field. Behind a masquerading
//! NAT router (NAT detected, IKE floated to 4500, UDP-encapsulated ESP, NAT-T
//! keepalives), and through an nginx `stream` UDP proxy that relays 500 and 4500 to the
//! responder (the initiator dials the proxy; the responder sees the proxy as its peer).

#[path = "e2e/common.rs"]
mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{child_bytes, inbound_counter, psk_net, Bench, Who, TRANSFER};
use esprit::testbed::{ping, Kind, Topology};

const PING_WAIT: Duration = Duration::from_secs(5);

/// Ping and a checked 50 MB transfer from a to b's inner address; both show in the
/// child's counters at a (out) and b (in).
fn ping_and_transfer(bench: &Bench, port: u16) {
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    assert!(ping(bench.topo.a(), to, 2, PING_WAIT), "ping {to}");
    let before = (
        child_bytes(&bench.status(Who::A), "net").1,
        child_bytes(&bench.status(Who::B), "net").0,
    );
    bench.transfer(to, port);
    let after = (
        child_bytes(&bench.status(Who::A), "net").1,
        child_bytes(&bench.status(Who::B), "net").0,
    );
    assert!(
        after.0 - before.0 >= TRANSFER,
        "a's out: {before:?} -> {after:?}"
    );
    assert!(
        after.1 - before.1 >= TRANSFER,
        "b's in: {before:?} -> {after:?}"
    );
}

/// a behind a masquerading router with a stateful firewall: both sides detect the NAT
/// in front of a, IKE moves from 500 to 4500, ESP in UDP carries ping and 50 MB, and
/// a's 1 s keepalives reach b.
#[test]
fn nat_is_detected_ike_floats_and_keepalives_flow() {
    let topo = Topology::nat().expect("topology");
    assert_eq!(topo.kind(), Kind::Nat);
    let (a_addr, a_for_b, b_addr) = (topo.a_addr(), topo.a_addr_for_b(), topo.b_addr());
    let (mut a, b) = psk_net(&topo, "start");
    a.keepalive = "1s".into();
    let bench = Bench::up(topo, a, b, "net");

    let s = bench.status(Who::A);
    let sa = &s.ike_sas[0];
    assert!(sa.nat_local, "a sees the NAT in front of itself: {s}");
    assert_eq!(sa.local_addr, format!("{a_addr}[4500]"), "{s}");
    assert_eq!(sa.remote_addr, format!("{b_addr}[4500]"), "{s}");
    assert!(sa.children[0].encap);
    let sb = bench.status(Who::B);
    let sa = &sb.ike_sas[0];
    assert!(sa.nat_remote, "b sees the NAT in front of a: {sb}");
    assert_eq!(sa.local_addr, format!("{b_addr}[4500]"), "{sb}");
    // b sees the router's outer address, on the port the NAT mapped a's 4500 to.
    assert!(
        sa.remote_addr.starts_with(&format!("{a_for_b}[")),
        "b's peer is the router: {sb}"
    );

    ping_and_transfer(&bench, 5101);

    // Keepalives: a sends them every second, b counts them on its 4500 socket.
    let first = inbound_counter(&bench.status(Who::B), "keepalives");
    let n = bench.wait_status(
        Who::B,
        "two more NAT-T keepalives received",
        Duration::from_secs(10),
        |s| {
            let n = inbound_counter(s, "keepalives");
            (n >= first + 2).then_some(n)
        },
    );
    eprintln!("b received {n} keepalives");
    assert!(bench.status(Who::A).counters.keepalives_sent >= 2);
    // b is not behind a NAT: it sends none.
    assert_eq!(bench.status(Who::B).counters.keepalives_sent, 0);
}

/// The FabEdge shape: a dials the nginx proxy's address; b answers any peer and sees
/// the proxy's address, with one ephemeral port for 500 and another for 4500.
#[test]
fn nginx_udp_proxy_between_the_peers() {
    let topo = Topology::proxy().expect("topology");
    assert_eq!(topo.kind(), Kind::Proxy);
    let (proxy_for_a, proxy_for_b) = (topo.b_addr_for_a(), topo.a_addr_for_b());
    assert_ne!(proxy_for_a, topo.b_addr(), "a dials the proxy, not b");
    let (a, b) = psk_net(&topo, "start");
    assert!(b.remote_addr.is_none(), "b answers %any");
    let bench = Bench::up(topo, a, b, "net");

    let s = bench.status(Who::A);
    assert!(
        s.ike_sas[0]
            .remote_addr
            .starts_with(&format!("{proxy_for_a}[")),
        "a's peer is the proxy: {s}"
    );
    let sb = bench.status(Who::B);
    assert!(
        sb.ike_sas[0]
            .remote_addr
            .starts_with(&format!("{proxy_for_b}[")),
        "b's peer is the proxy's address on b's side: {sb}"
    );
    ping_and_transfer(&bench, 5102);
    // Replies went back to the proxy's 4500 relay: a received ESP on the child.
    let s = bench.status(Who::A);
    assert!(s.ike_sas[0].children[0].packets_in > 0, "{s}");
}

/// IKE and ESP over IPv6 outer addresses (fd00:0:2::1 <-> fd00:0:2::2), carrying IPv4
/// and IPv6 inner traffic: the daemon's IPv6 sockets on 500 and 4500.
#[test]
fn ipv6_outer_addresses_carry_the_tunnel() {
    let topo = Topology::direct(true).expect("topology");
    let (a6, b6) = (
        IpAddr::V6(topo.a_addr6().expect("v6")),
        IpAddr::V6(topo.b_addr6().expect("v6")),
    );
    let (mut a, mut b) = psk_net(&topo, "start");
    a.local_addr = a6;
    a.remote_addr = Some(b6);
    b.local_addr = b6;
    let bench = Bench::up(topo, a, b, "net");
    let sa = &bench.status(Who::A).ike_sas[0];
    assert_eq!(sa.remote_addr, format!("{b6}[4500]"), "{sa:?}");
    ping_and_transfer(&bench, 5103);
}
