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
    let (mut a, mut b) = psk_net(&topo, "start");
    a.keepalive = "1s".into();
    b.keepalive = "1s".into();
    let bench = Bench::up(topo, a, b, "net");

    let s = bench.status(Who::A);
    let sa = &s.ike_sas[0];
    assert!(sa.nat_local, "a sees the NAT in front of itself: {s}");
    assert!(sa.nat_fake, "a fakes one too, to force encapsulation: {s}");
    assert_eq!(sa.local_addr, format!("{a_addr}[4500]"), "{s}");
    assert_eq!(sa.remote_addr, format!("{b_addr}[4500]"), "{s}");
    assert!(sa.children[0].encap);
    let sb = bench.status(Who::B);
    let sa = &sb.ike_sas[0];
    assert!(sa.nat_remote, "b sees the NAT in front of a: {sb}");
    assert!(!sa.nat_local, "b has no NAT in front of it: {sb}");
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
    // b is not behind a NAT: in the same two seconds and more, with the same 1 s
    // interval, it sends none (the NAT it fakes has no mapping to keep, as with charon).
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
    let (mut a, mut b) = psk_net(&topo, "start");
    assert!(b.remote_addr.is_none(), "b answers %any");
    // The proxy translates both ways, so each side sees a NAT in front of itself; a
    // with keepalives off, b with a 1 s interval.
    a.keepalive = "0s".into();
    b.keepalive = "1s".into();
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

    // keepalive = "0s" means none (it once meant one on every loop pass), even with
    // the NAT that makes b send them.
    bench.wait_status(
        Who::B,
        "two keepalives sent",
        Duration::from_secs(10),
        |s| (s.counters.keepalives_sent >= 2).then_some(()),
    );
    for who in [Who::A, Who::B] {
        let s = bench.status(who);
        assert!(s.ike_sas[0].nat_local, "{who:?} is behind the proxy: {s}");
    }
    assert_eq!(bench.status(Who::A).counters.keepalives_sent, 0);
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
    a.keepalive = "1s".into();
    b.keepalive = "1s".into();
    let bench = Bench::up(topo, a, b, "net");
    let sa = &bench.status(Who::A).ike_sas[0];
    assert_eq!(sa.remote_addr, format!("{b6}[4500]"), "{sa:?}");
    ping_and_transfer(&bench, 5103);

    // No NAT on the path: each side fakes one (and so sees one in front of the other),
    // detects none in front of itself, and sends no keepalives, even with a 1 s
    // interval and the SAs 3 s old.
    for who in [Who::A, Who::B] {
        let s = bench.wait_status(who, "the IKE SA 3 s old", Duration::from_secs(10), |s| {
            (s.ike_sas.first()?.established_secs? >= 3).then(|| s.clone())
        });
        let sa = &s.ike_sas[0];
        assert!(
            sa.nat_fake && sa.nat_remote && !sa.nat_local,
            "{who:?}: {s}"
        );
        assert_eq!(s.counters.keepalives_sent, 0, "{who:?}: {s}");
    }
}
