//! IKE mediation between in-memory endpoints (draft-brunner-ikev2-mediation, as
//! strongSwan does it): a mediation server on the public segment and two peers, each
//! behind its own NAT router with a stateful firewall. Every exchange gets a test:
//! registration (ME_MEDIATION, the server-reflexive ME_ENDPOINT), ME_CONNECT relayed
//! and answered, ME_CONNECT_FAILED, the connectivity checks and the direct IKE SA.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::mesh::{Mesh, Router};
use common::*;
use ike::config::{Config, Identity, Mediation};
use ike::endpoint::{CommandError, DownReason, Event, MediationFailure, PeerMisbehaved};
use ike::iana;
use ike::wire::mediation::ConnectivityCheck;
use ike::wire::Message;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";
const SERVER: [u8; 4] = [198, 51, 100, 1];
const A_PRIV: [u8; 4] = [10, 1, 0, 2];
const B_PRIV: [u8; 4] = [10, 2, 0, 2];
const A_PUB: [u8; 4] = [203, 0, 113, 1];
const B_PUB: [u8; 4] = [203, 0, 113, 2];

/// Indexes of the three hosts.
const S: usize = 0;
const A: usize = 1;
const B: usize = 2;

fn server_conn() -> ike::config::Connection {
    let mut c = psk_conn(
        "medsrv",
        SERVER,
        None,
        "medsrv",
        "x",
        "med secret",
        IKE,
        Vec::new(),
    );
    c.remote_id = Identity::Any;
    c.mediation = Mediation::Mediation;
    c
}

/// A peer's connections: "medsrv" to the server, and "peer", mediated by it, to
/// `other_cn` with child "net" between the two subnets.
fn peer_conns(
    ip: [u8; 4],
    cn: &str,
    other_cn: &str,
    ours: &str,
    theirs: &str,
) -> Vec<ike::config::Connection> {
    let mut med = psk_conn(
        "medsrv",
        ip,
        Some(SERVER),
        cn,
        "medsrv",
        "med secret",
        IKE,
        Vec::new(),
    );
    med.mediation = Mediation::Mediation;
    let mut peer = psk_conn(
        "peer",
        ip,
        None,
        cn,
        other_cn,
        "peer secret",
        IKE,
        vec![child("net", &[ours], &[theirs], ESP)],
    );
    peer.mediation = Mediation::MediatedBy {
        by: "medsrv".into(),
        peer: None,
    };
    vec![med, peer]
}

/// Server, edge1 behind router A, edge2 behind router B; `symmetric` NATs if asked.
fn mesh(symmetric: bool) -> Mesh {
    let mut m = Mesh::new();
    m.add(Config::default(), 0x5e5e, SERVER, None);
    m.add(
        Config::default(),
        0xaaaa,
        A_PRIV,
        Some(Router::new(A_PUB, symmetric)),
    );
    m.add(
        Config::default(),
        0xbbbb,
        B_PRIV,
        Some(Router::new(B_PUB, symmetric)),
    );
    m.node(S).ep.add_connection(server_conn());
    for c in peer_conns(A_PRIV, "edge1", "edge2", "10.96.1.0/24", "10.96.2.0/24") {
        m.node(A).ep.add_connection(c);
    }
    for c in peer_conns(B_PRIV, "edge2", "edge1", "10.96.2.0/24", "10.96.1.0/24") {
        m.node(B).ep.add_connection(c);
    }
    m
}

fn register(m: &mut Mesh, hosts: &[usize]) {
    for &h in hosts {
        let now = m.now;
        m.node(h).ep.initiate(now, "medsrv", None).unwrap();
    }
    let n = hosts.len();
    assert!(
        m.run_until(Duration::from_secs(10), |m| m.hosts[S]
            .node
            .ep
            .mediation_peers()
            .len()
            == n
            && hosts.iter().all(|&h| m.hosts[h].node.established() == 1)),
        "peers did not register"
    );
}

fn sa(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn registration_carries_me_mediation_and_the_server_reflexive_address() {
    let mut m = mesh(false);
    register(&mut m, &[A, B]);
    let peers = m.hosts[S].node.ep.mediation_peers();
    let names: Vec<&str> = peers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "C=CN, O=Local Cluster, CN=edge1",
            "C=CN, O=Local Cluster, CN=edge2"
        ]
    );
    // The IKE_SA_INIT exchange named ME_MEDIATION both ways; IKE_AUTH went over 4500.
    let mut me_mediation = 0;
    for (_, _, t) in &m.delivered {
        let msg = Message::parse(&t.data).unwrap();
        if msg.header.exchange == iana::exchange::IKE_SA_INIT {
            assert_eq!(msg.notifies(iana::notify::ME_MEDIATION).count(), 1);
            me_mediation += 1;
        }
        if msg.header.exchange == iana::exchange::IKE_AUTH {
            assert_eq!(t.remote.port().min(t.local.port()), 4500);
        }
    }
    assert_eq!(me_mediation, 4, "two requests, two responses");
    // The mediation SAs carry no child SA.
    for h in [S, A, B] {
        assert!(m.hosts[h].node.children.is_empty());
    }
    // The server's registry follows the SAs: a peer that leaves is forgotten.
    let now = m.now;
    m.node(A).ep.terminate(now, "medsrv").unwrap();
    assert!(m.run_until(Duration::from_secs(10), |m| m.hosts[S]
        .node
        .ep
        .mediation_peers()
        .len()
        == 1));
}

#[test]
fn mediated_peers_punch_through_both_nats_and_talk_directly() {
    let mut m = mesh(false);
    register(&mut m, &[A, B]);
    let before = m.delivered.len();
    let now = m.now;
    let med = m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(m.hosts[A]
        .node
        .ep
        .ike_sas()
        .iter()
        .any(|s| s.id == med && s.conn == "medsrv"));
    let start = m.now;
    assert!(
        m.run_until(Duration::from_secs(30), |m| m.hosts[A].node.children.len()
            == 1
            && m.hosts[B].node.children.len() == 1),
        "the mediated tunnel did not come up"
    );
    let took = m.now - start;
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // A chose B's server-reflexive address (B's host address is unreachable).
    let path = m.hosts[A].node.events.iter().find_map(|e| match e {
        Event::MediatedPath {
            conn,
            local,
            remote,
            ..
        } => Some((conn.clone(), *local, *remote)),
        _ => None,
    });
    assert_eq!(
        path,
        Some(("peer".into(), sa(A_PRIV, 4500), sa(B_PUB, 4500)))
    );

    // The responder learns the pair too, once the direct SA is up.
    let path_b = m.hosts[B].node.events.iter().find_map(|e| match e {
        Event::MediatedPath {
            conn,
            local,
            remote,
            ..
        } => Some((conn.clone(), *local, *remote)),
        _ => None,
    });
    assert_eq!(
        path_b,
        Some(("peer".into(), sa(B_PRIV, 4500), sa(A_PUB, 4500)))
    );

    // The direct SA runs between the two NATs' public addresses, not via the server.
    let direct_a = m.hosts[A]
        .node
        .ep
        .ike_sas()
        .into_iter()
        .find(|s| s.conn == "peer")
        .unwrap();
    assert_eq!(direct_a.remote, sa(B_PUB, 4500));
    let direct_b = m.hosts[B]
        .node
        .ep
        .ike_sas()
        .into_iter()
        .find(|s| s.conn == "peer")
        .unwrap();
    assert_eq!(direct_b.remote, sa(A_PUB, 4500));
    assert!(direct_b.nat.local_behind && direct_b.nat.remote_behind);

    // What went where: ME_CONNECT both ways through the server, checks and the IKE SA
    // straight between the peers, and a ME_CONNECTID in the direct IKE_SA_INIT.
    let mut me_connect = [0usize; 3];
    let mut checks = 0;
    let mut direct_init = None;
    for (from, to, t) in &m.delivered[before..] {
        let msg = Message::parse(&t.data).unwrap();
        if msg.header.exchange == iana::exchange::ME_CONNECT {
            assert!(*from == S || *to == S, "ME_CONNECT only with the server");
            me_connect[*to] += 1;
        }
        if ConnectivityCheck::is_check(&msg.header) {
            assert!(*from != S && *to != S);
            checks += 1;
        }
        if msg.header.exchange == iana::exchange::IKE_SA_INIT && !msg.header.flags.response {
            assert_eq!((*from, *to), (A, B));
            direct_init = Some(msg.notifies(iana::notify::ME_CONNECTID).count());
        }
    }
    // A -> S request, S -> A response; S -> B relayed request, B -> S response; B -> S
    // its own answer (ME_RESPONSE), S -> B response; S -> A relayed answer, A -> S.
    assert_eq!(me_connect, [4, 2, 2]);
    assert!(checks >= 4, "checks: {checks}");
    assert_eq!(direct_init, Some(1));
    m.run_for(Duration::from_secs(1));
    let a = &m.hosts[A].node;
    let b = &m.hosts[B].node;
    for (spi_in, ca) in &a.children {
        let cb = &b.children[&ca.spi_out];
        assert_eq!(cb.spi_out, *spi_in);
        assert_eq!(*ca.key_in, *cb.key_out);
    }
}

#[test]
fn the_direct_tunnel_outlives_the_server() {
    let mut m = mesh(false);
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(
        m.run_until(Duration::from_secs(30), |m| m.hosts[B].node.children.len()
            == 1)
    );
    // The server disappears: drop everything to and from it from now on.
    let server = m.public_ip(S);
    m.hosts[S].node.ip = std::net::IpAddr::from([192, 0, 2, 99]);
    let now = m.now;
    let direct = m.hosts[A]
        .node
        .ep
        .ike_sas()
        .into_iter()
        .find(|s| s.conn == "peer")
        .unwrap();
    m.node(A).ep.dpd(now, direct.id).unwrap();
    m.run_for(Duration::from_secs(5));
    assert_ne!(server, m.public_ip(S));
    assert_eq!(m.hosts[A].node.children.len(), 1);
    assert!(
        m.hosts[A].node.ike_down.is_empty(),
        "{:?}",
        m.hosts[A].node.ike_down
    );
}

#[test]
fn unregistered_peer_gets_me_connect_failed() {
    let mut m = mesh(false);
    register(&mut m, &[A]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(m.run_until(Duration::from_secs(10), |m| m.hosts[A]
        .node
        .events
        .iter()
        .any(|e| matches!(e, Event::MediationFailed { .. }))));
    let failed = m.hosts[A].node.events.iter().find_map(|e| match e {
        Event::MediationFailed { conn, peer, reason } => {
            Some((conn.clone(), peer.clone(), reason.clone()))
        }
        _ => None,
    });
    assert_eq!(
        failed,
        Some((
            "peer".into(),
            "C=CN, O=Local Cluster, CN=edge2".into(),
            MediationFailure::PeerNotRegistered
        ))
    );
    // The mediation SA stays up for the next attempt.
    assert_eq!(m.hosts[A].node.established(), 1);
    // A asked for ME_CALLBACK: once B registers, the server calls A back and A's
    // attempt runs again by itself, up to the tunnel.
    register_more(&mut m, B, 2);
    assert!(
        m.run_until(Duration::from_secs(10), |m| m.hosts[A].node.children.len()
            == 1
            && m.hosts[B].node.children.len() == 1),
        "the callback did not bring the tunnel up"
    );
}

/// Registers `h` while others are registered already (`n` in all).
fn register_more(m: &mut Mesh, h: usize, n: usize) {
    let now = m.now;
    m.node(h).ep.initiate(now, "medsrv", None).unwrap();
    assert!(m.run_until(Duration::from_secs(10), |m| m.hosts[S]
        .node
        .ep
        .mediation_peers()
        .len()
        == n));
}

#[test]
fn mediated_connection_needs_its_mediation_sa() {
    let mut m = mesh(false);
    let now = m.now;
    assert_eq!(
        m.node(A).ep.initiate(now, "peer", None),
        Err(CommandError::MediationNotUp("medsrv".into()))
    );
    let mut c = peer_conns(A_PRIV, "edge1", "edge2", "10.96.1.0/24", "10.96.2.0/24").remove(1);
    c.name = "anyone".into();
    c.remote_id = Identity::Any;
    m.node(A).ep.add_connection(c);
    assert_eq!(
        m.node(A).ep.initiate(now, "anyone", None),
        Err(CommandError::NoMediationPeer("anyone".into()))
    );
}

#[test]
fn a_server_without_mediation_is_refused() {
    let mut m = mesh(false);
    let mut plain = server_conn();
    plain.mediation = Mediation::Off;
    m.node(S).ep.add_connection(plain);
    let now = m.now;
    m.node(A).ep.initiate(now, "medsrv", None).unwrap();
    assert!(m.run_until(Duration::from_secs(10), |m| !m.hosts[A]
        .node
        .ike_down
        .is_empty()));
    assert_eq!(
        m.hosts[A].node.ike_down,
        [DownReason::PeerMisbehaved(PeerMisbehaved::NoMediation)]
    );
}

#[test]
fn symmetric_nats_fail_the_checks_with_a_clear_reason() {
    let mut m = mesh(true);
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(
        m.run_until(Duration::from_secs(120), |m| m.hosts[A]
            .node
            .events
            .iter()
            .any(|e| matches!(e, Event::MediationFailed { .. }))),
        "no failure reported"
    );
    assert!(m.hosts[A].node.events.iter().any(|e| matches!(
        e,
        Event::MediationFailed {
            reason: MediationFailure::NoPath,
            ..
        }
    )));
    assert!(m.hosts[A].node.children.is_empty());
    assert!(m.dropped > 0, "the firewalls dropped the checks");
}

#[test]
fn symmetric_nats_relay_through_an_esprit_server() {
    let mut m = mesh(true);
    m.relay = true;
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    let start = m.now;
    assert!(
        m.run_until(Duration::from_secs(30), |m| m.hosts[A].node.children.len()
            == 1
            && m.hosts[B].node.children.len() == 1),
        "the relayed tunnel did not come up"
    );
    let took = m.now - start;
    // The relay is asked for after RELAY_AFTER (4 s) without a successful check.
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    assert_eq!(m.relays.len(), 1, "one relay for the attempt");
    let relay = m.relays[0].addr;
    assert_eq!(relay.ip(), m.public_ip(S));
    assert!(m.relays[0].bound.iter().all(Option::is_some));
    assert!(
        m.relays[0].forwarded >= 4,
        "IKE_SA_INIT and IKE_AUTH, both ways"
    );
    for (host, local) in [(A, A_PRIV), (B, B_PRIV)] {
        let path = m.hosts[host].node.events.iter().find_map(|e| match e {
            Event::MediatedPath {
                local,
                remote,
                relayed,
                ..
            } => Some((*local, *remote, *relayed)),
            _ => None,
        });
        assert_eq!(path, Some((sa(local, 4500), relay, true)), "host {host}");
    }
    // The server holds no child SA: it only forwarded ciphertext.
    assert!(m.hosts[S].node.children.is_empty());
    assert!(m.hosts[A].node.children.values().all(|c| c.remote == relay));
}

/// A relayed tunnel whose peer's NAT gives it a new public port: the relay forwards
/// only from and to the address that bound, so what the peer sends from the new port
/// is dropped until its bind datagram, sent again with the keepalives
/// (`Endpoint::send_relay_binds`), moves its side of the relay; then IKE runs again.
#[test]
fn a_relayed_peer_whose_nat_port_changes_binds_again() {
    let mut m = mesh(true);
    m.relay = true;
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(
        m.run_until(Duration::from_secs(30), |m| m.hosts[A].node.children.len()
            == 1
            && m.hosts[B].node.children.len() == 1),
        "the relayed tunnel did not come up"
    );
    let a_pub = m.public_ip(A);
    let side = m.relays[0]
        .bound
        .iter()
        .position(|b| b.is_some_and(|b| b.ip() == a_pub))
        .expect("a bound");
    let old = m.relays[0].bound[side];
    let ike = m.hosts[A]
        .node
        .ep
        .ike_sas()
        .into_iter()
        .find(|s| s.conn == "peer")
        .unwrap()
        .id;
    // Answers to a's liveness checks: datagrams the relay delivered to a.
    let answers = |m: &Mesh| {
        m.delivered
            .iter()
            .filter(|(f, t, _)| (*f, *t) == (S, A))
            .count()
    };

    // a's NAT forgets its mappings: its check leaves from a new port, the relay drops
    // it, and nothing comes back.
    m.hosts[A].router.as_mut().unwrap().rebind();
    let (forwarded, heard) = (m.relays[0].forwarded, answers(&m));
    let now = m.now;
    m.node(A).ep.dpd(now, ike).unwrap();
    m.run_for(Duration::from_millis(500));
    assert_eq!(
        m.relays[0].forwarded, forwarded,
        "forwarded from an unbound port"
    );
    assert_eq!(answers(&m), heard);
    assert_eq!(m.relays[0].bound[side], old);

    // The next keepalive tick sends the bind again: a's side follows it, and the
    // check's retransmission goes through and is answered.
    m.node(A).ep.send_relay_binds();
    assert!(
        m.run_until(Duration::from_secs(10), |m| answers(m) > heard),
        "the check was not answered after the bind"
    );
    let new = m.relays[0].bound[side].expect("a bound");
    assert_ne!(Some(new), old, "a's side moved to its new port");
    assert_eq!(new.ip(), a_pub);
    assert!(
        m.relays[0].forwarded >= forwarded + 2,
        "the check and its answer"
    );
    // Neither SA went down.
    for h in [A, B] {
        assert!(
            !m.hosts[h]
                .node
                .events
                .iter()
                .any(|e| matches!(e, Event::IkeDown { .. })),
            "host {h}"
        );
    }
    // Each peer binds its one relayed IKE SA, the server (no relayed SA) nothing.
    for (h, want) in [(A, 1), (B, 1), (S, 0)] {
        let node = m.node(h);
        node.ep.send_relay_binds();
        let mut binds = 0;
        while let Some(t) = node.ep.poll_transmit() {
            binds += usize::from(ike::wire::relay::RelayToken::from_bind(&t.data).is_some());
        }
        assert_eq!(binds, want, "host {h}");
    }
}

#[test]
fn without_a_relay_port_the_symmetric_attempt_fails_clearly() {
    let mut m = mesh(true);
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    // Both peers asked; the server's engine answers that it has no relay to spare.
    assert!(m.run_until(Duration::from_secs(10), |m| m.hosts[S]
        .node
        .events
        .iter()
        .any(|e| matches!(e, Event::RelayWanted { .. }))));
    let cid = m.hosts[S]
        .node
        .events
        .iter()
        .find_map(|e| match e {
            Event::RelayWanted { connect_id, .. } => Some(connect_id.clone()),
            _ => None,
        })
        .unwrap();
    let now = m.now;
    m.node(S).ep.relay_allocated(now, &cid, None);
    assert!(m.run_until(Duration::from_secs(5), |m| m.hosts[A]
        .node
        .events
        .iter()
        .any(|e| matches!(
            e,
            Event::MediationFailed {
                reason: MediationFailure::RelayRefused,
                ..
            }
        ))));
}

#[test]
fn a_relayed_tunnel_moves_to_the_direct_path_when_a_recheck_passes() {
    // Ordinary NATs, but the path between them is blocked: the checks fail, the
    // tunnel comes up relayed.
    let mut m = mesh(false);
    m.relay = true;
    let (a_pub, b_pub) = (m.public_ip(A), m.public_ip(B));
    m.block = Some((a_pub, b_pub));
    register(&mut m, &[A, B]);
    let now = m.now;
    m.node(A).ep.initiate(now, "peer", None).unwrap();
    assert!(
        m.run_until(Duration::from_secs(30), |m| m.hosts[A].node.children.len()
            == 1
            && m.hosts[B].node.children.len() == 1)
    );
    let relay = m.relays[0].addr;
    let ike = m.hosts[A]
        .node
        .ep
        .ike_sas()
        .into_iter()
        .find(|s| s.conn == "peer")
        .unwrap()
        .id;
    // Still blocked: a re-check changes nothing.
    let now = m.now;
    m.node(A).ep.recheck_mediated(now, ike).unwrap();
    m.run_for(Duration::from_secs(70));
    let moved = |m: &Mesh, h: usize| {
        m.hosts[h]
            .node
            .events
            .iter()
            .filter(|e| matches!(e, Event::PeerAddressChanged { .. }))
            .count()
    };
    assert_eq!((moved(&m, A), moved(&m, B)), (0, 0));
    assert!(m.hosts[A].node.children.values().all(|c| c.remote == relay));
    // The path opens: the next re-check moves both sides to it, keeping the SAs.
    m.block = None;
    let now = m.now;
    m.node(A).ep.recheck_mediated(now, ike).unwrap();
    assert!(
        m.run_until(Duration::from_secs(10), |m| moved(m, A) == 1
            && moved(m, B) == 1),
        "no move"
    );
    let to = |m: &Mesh, h: usize| {
        m.hosts[h].node.events.iter().rev().find_map(|e| match e {
            Event::PeerAddressChanged { remote, .. } => Some(*remote),
            _ => None,
        })
    };
    assert_eq!(to(&m, A), Some(sa(B_PUB, 4500)));
    assert_eq!(to(&m, B), Some(sa(A_PUB, 4500)));
    assert!(m.hosts[A]
        .node
        .events
        .iter()
        .any(|e| matches!(e, Event::MediatedPath { relayed: false, .. })));
    assert_eq!(m.hosts[A].node.children.len(), 1);
    assert_eq!(m.hosts[B].node.children.len(), 1);
    // The relay carries nothing more; the SA answers directly.
    let forwarded = m.relays[0].forwarded;
    let now = m.now;
    m.node(A).ep.dpd(now, ike).unwrap();
    m.run_for(Duration::from_secs(5));
    assert_eq!(m.relays[0].forwarded, forwarded);
    assert!(m.hosts[A]
        .node
        .ep
        .ike_sas()
        .iter()
        .any(|s| s.id == ike && s.remote == sa(B_PUB, 4500)));
}
