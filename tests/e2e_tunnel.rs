//! End-to-end: two esprit peers on a direct veth, with pre-shared keys and with ECDSA and
//! RSA certificates, carry pings and checked 50 MB TCP transfers between their inner
//! subnets, IPv4 and IPv6, on several subnets per side; the status counters grow on the
//! child SA the traffic took. One child runs ESP AES-CBC with HMAC-SHA2-256.

#[path = "e2e/common.rs"]
mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{
    all_inner, child, child_bytes, children, psk_sides, v4_first, v4_first_and_v6, v4_second,
    Bench, Who, TRANSFER,
};
use esprit::testbed::{ping, KeyKind, Topology};

const PING_WAIT: Duration = Duration::from_secs(5);

/// Inner bytes (in at b, out at a) of child `name`, summed over its SAs.
fn flow(bench: &Bench, name: &str) -> (u64, u64) {
    let a_out = child_bytes(&bench.status(Who::A), name).1;
    let b_in = child_bytes(&bench.status(Who::B), name).0;
    (a_out, b_in)
}

/// Two children per side: `net` with 10.96.x.0/24 and fd00:96:x::/48, `net2` with
/// 10.97.x.0/24. Each subnet answers pings; 50 MB crosses on each IPv4 subnet and over
/// IPv6, and each transfer shows in the counters of its own child only.
#[test]
fn psk_two_children_carry_ipv4_and_ipv6_on_their_own_sa() {
    let topo = Topology::direct(true).expect("topology");
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (mut a, mut b) = psk_sides(&topo, "e2e shared secret", "e2e shared secret");
    for (name, pick) in [
        ("net", v4_first_and_v6 as fn(_) -> _),
        ("net2", v4_second as fn(_) -> _),
    ] {
        let mut c = child(name, ai, bi, pick);
        c.start_action = "start".into();
        a.children.push(c);
        b.children.push(child(name, bi, ai, pick));
    }
    let bench = Bench::up(topo, a, b, "net");
    bench.wait_child(Who::A, "net2");
    bench.wait_child(Who::B, "net2");
    let s = bench.status(Who::A);
    assert_eq!(s.ike_sas.len(), 1, "both children on one IKE SA: {s}");
    assert!(s.ike_sas[0].initiator);
    assert!(s.ike_sas[0].remote_id.contains("b.esprit.test"), "{s}");

    for addr in [bi.v4[0].into(), bi.v4[1].into(), IpAddr::V6(bi.v6)] {
        assert!(ping(bench.topo.a(), addr, 2, PING_WAIT), "ping {addr}");
    }
    let (net, net2) = (
        children(&s, "net")[0].clone(),
        children(&s, "net2")[0].clone(),
    );
    assert_ne!(net.spi_out, net2.spi_out, "two distinct child SAs");

    // 10.97.x: the second child carries it, the first does not.
    let (net_before, net2_before) = (flow(&bench, "net"), flow(&bench, "net2"));
    bench.transfer(bi.v4[1].into(), 5001);
    let (net_after, net2_after) = (flow(&bench, "net"), flow(&bench, "net2"));
    assert!(net2_after.0 - net2_before.0 >= TRANSFER, "a's net2 out");
    assert!(net2_after.1 - net2_before.1 >= TRANSFER, "b's net2 in");
    assert!(net_after.0 - net_before.0 < TRANSFER / 10, "a's net out");

    // 10.96.x and fd00:96:x::: the first child.
    for (addr, port) in [(IpAddr::V4(bi.v4[0]), 5002), (IpAddr::V6(bi.v6), 5003)] {
        let (before, other_before) = (flow(&bench, "net"), flow(&bench, "net2"));
        bench.transfer(addr, port);
        let (after, other_after) = (flow(&bench, "net"), flow(&bench, "net2"));
        assert!(after.0 - before.0 >= TRANSFER, "a's net out ({addr})");
        assert!(after.1 - before.1 >= TRANSFER, "b's net in ({addr})");
        assert!(
            other_after.0 - other_before.0 < TRANSFER / 10,
            "a's net2 out ({addr})"
        );
    }
    // The acknowledgements came back on the same child: a received on it too.
    let s = bench.status(Who::A);
    assert!(children(&s, "net")[0].packets_in > 0, "{s}");
    assert!(children(&s, "net2")[0].packets_in > 0, "{s}");
}

/// ECDSA certificates with DN identities; one child with three selectors per side
/// (10.96.x.0/24, 10.97.x.0/24, fd00:96:x::/48): traffic crosses on each of them.
#[test]
fn ecdsa_certificates_one_child_with_several_subnets() {
    let topo = Topology::direct(true).expect("topology");
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (mut a, mut b) = common::cert_sides(&topo, KeyKind::EcdsaP256, None).expect("certs");
    let mut c = child("net", ai, bi, all_inner);
    c.start_action = "start".into();
    a.children.push(c);
    b.children.push(child("net", bi, ai, all_inner));
    let bench = Bench::up(topo, a, b, "net");
    let s = bench.status(Who::A);
    assert!(
        s.ike_sas[0].remote_id.contains("CN=site-b"),
        "b authenticated by its certificate's DN: {s}"
    );
    let sb = bench.status(Who::B);
    assert!(sb.ike_sas[0].remote_id.contains("CN=site-a"), "{sb}");
    let net = &children(&s, "net")[0];
    assert_eq!(net.local_ts.len(), 3, "{s}");
    assert_eq!(net.remote_ts.len(), 3, "{s}");

    for addr in [bi.v4[0].into(), bi.v4[1].into(), IpAddr::V6(bi.v6)] {
        assert!(ping(bench.topo.a(), addr, 2, PING_WAIT), "ping {addr}");
    }
    let before = flow(&bench, "net");
    bench.transfer(bi.v4[1].into(), 5011);
    bench.transfer(IpAddr::V6(bi.v6), 5012);
    let after = flow(&bench, "net");
    assert!(after.0 - before.0 >= 2 * TRANSFER, "a's out");
    assert!(after.1 - before.1 >= 2 * TRANSFER, "b's in");
}

/// RSA 2048 certificates (PKCS#1 v1.5 signatures): ping and 50 MB.
#[test]
fn rsa_certificates_carry_a_checked_transfer() {
    let topo = Topology::direct(false).expect("topology");
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (mut a, mut b) = common::cert_sides(&topo, KeyKind::Rsa2048, None).expect("certs");
    let mut c = child("net", ai, bi, v4_first);
    c.start_action = "start".into();
    a.children.push(c);
    b.children.push(child("net", bi, ai, v4_first));
    let bench = Bench::up(topo, a, b, "net");
    assert!(ping(bench.topo.a(), bi.v4[0].into(), 2, PING_WAIT));
    // And the other way: b reaches a through the same child.
    assert!(ping(bench.topo.b(), ai.v4[0].into(), 2, PING_WAIT));
    let before = flow(&bench, "net");
    bench.transfer(bi.v4[0].into(), 5021);
    let after = flow(&bench, "net");
    assert!(after.0 - before.0 >= TRANSFER, "a's out");
    assert!(after.1 - before.1 >= TRANSFER, "b's in");
}

/// `esp_proposals = ["aes128-sha256"]` on both sides: the child SA runs ESP AES-128-CBC
/// with HMAC-SHA2-256-128 and carries pings both ways and a checked 50 MB transfer.
#[test]
fn aes_cbc_hmac_sha256_child_carries_a_checked_transfer() {
    let topo = Topology::direct(false).expect("topology");
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (mut a, mut b) = psk_sides(&topo, "cbc shared secret", "cbc shared secret");
    let mut c = child("net", ai, bi, v4_first);
    c.start_action = "start".into();
    c.esp_proposals = "aes128-sha256".into();
    a.children.push(c);
    let mut c = child("net", bi, ai, v4_first);
    c.esp_proposals = "aes128-sha256".into();
    b.children.push(c);
    let bench = Bench::up(topo, a, b, "net");
    for who in [Who::A, Who::B] {
        let s = bench.status(who);
        let net = &children(&s, "net")[0];
        assert!(
            net.proposal.starts_with("aes128-sha256"),
            "AES-CBC + HMAC-SHA2-256 negotiated: {s}"
        );
    }
    assert!(ping(bench.topo.a(), bi.v4[0].into(), 2, PING_WAIT));
    assert!(ping(bench.topo.b(), ai.v4[0].into(), 2, PING_WAIT));
    let before = flow(&bench, "net");
    bench.transfer(bi.v4[0].into(), 5031);
    let after = flow(&bench, "net");
    assert!(after.0 - before.0 >= TRANSFER, "a's out");
    assert!(after.1 - before.1 >= TRANSFER, "b's in");
}
