//! Every exchange run between two in-memory endpoints on a virtual clock.

mod common;

use std::time::Duration;

use common::*;
use ike::config::Config;
use ike::endpoint::{CommandError, DownReason, Event};
use ike::iana;
use ike::nat::NatState;
use ike::wire::Message;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

fn exchange_of(t: &ike::endpoint::Transmit) -> (ike::iana::ExchangeType, bool) {
    let m = Message::parse(&t.data).unwrap();
    (m.header.exchange, m.header.flags.response)
}

#[test]
fn psk_handshake_with_every_ike_suite() {
    for ike in [
        "aes128gcm16-prfsha256-x25519",
        "aes256gcm16-prfsha384-ecp256",
        "aes128-sha256-ecp256",
        "aes256-sha512-x25519",
        "aes128-aesxcbc-ecp256",
        "aes256-sha384-ecp256",
        "aes128-sha1-modp2048",
        "aes256-sha256-modp3072",
        "aes256gcm16-prfsha384-ecp384",
        "aes256-sha512-ecp521",
        "aes128-sha1-modp1024",
        "aes256-sha256-modp2048s256",
        "aes192gcm16-prfsha256-x25519",
    ] {
        for esp in [
            "aes128gcm16",
            "aes256gcm16",
            "aes256gcm16-esn",
            "aes192gcm16",
        ] {
            let mut p = psk_pair(ike, esp);
            up(&mut p);
            let c = p.a.children.values().next().unwrap();
            let expect_len = match &esp[..6] {
                "aes128" => 20,
                "aes192" => 28,
                _ => 36,
            };
            assert_eq!(c.key_in.len(), expect_len, "{ike} {esp}");
            assert!(
                p.a.children
                    .values()
                    .chain(p.b.children.values())
                    .all(|c| !c.encap),
                "no NAT here"
            );
        }
    }
}

/// Two connections between the same addresses with different IKE proposals (a
/// policy-based and a route-based one to the same gateway, say): the responder takes
/// the first connection whose proposals accept the initiator's, not just the first by
/// address, and prefers one that accepts the KE it was sent.
#[test]
fn responder_picks_the_connection_whose_proposals_match() {
    let mut p = Pair::new(Config::default());
    p.a.ep
        .add_connection(psk_a_conn("aes128-sha256-modp2048", ESP));
    let mut other = psk_b_conn("aes256gcm16-prfsha384-ecp384", ESP);
    other.name = "other".into();
    other.remote_id = ike::config::Identity::parse("C=CN, O=Local Cluster, CN=nobody").unwrap();
    p.b.ep.add_connection(other);
    p.b.ep
        .add_connection(psk_b_conn("aes128-sha256-modp2048", ESP));
    up(&mut p);
    let sa = &p.b.ep.ike_sas()[0];
    assert_eq!(sa.conn, "site-a");
    assert_eq!(
        sa.suite.map(|s| s.to_string()).as_deref(),
        Some("aes128-sha256-prfsha256-modp2048")
    );
}

#[test]
fn handshake_survives_loss_duplication_and_reordering() {
    for (name, fate) in [
        ("drop the first copy of every datagram", Fate::Drop),
        ("duplicate", Fate::Duplicate),
        ("reorder", Fate::Delay(Duration::from_millis(50))),
    ] {
        let mut p = psk_pair(IKE, ESP);
        let mut seen = std::collections::HashSet::new();
        // Retransmissions are byte-identical: each datagram suffers once, then passes.
        p.filter = Some(Box::new(move |_, t| {
            if seen.insert(t.data.clone()) {
                fate
            } else {
                Fate::Deliver
            }
        }));
        p.a.ep.initiate(p.now, "site-b", None).unwrap();
        assert!(
            p.run_until(Duration::from_secs(120), |p| p.a.children.len() == 1
                && p.b.children.len() == 1),
            "{name}"
        );
        p.settle();
        p.assert_children_match();
        assert_eq!(p.a.ike_up, 1, "{name}");
        assert_eq!(p.b.ike_up, 1, "{name}");
    }
}

#[test]
fn responder_answers_retransmits_from_cache() {
    let mut p = psk_pair(IKE, ESP);
    // Lose the first IKE_AUTH response: a retransmits, b answers from its cache without
    // processing the request twice.
    p.filter = Some(Box::new(|_, t| {
        if exchange_of(t) == (iana::exchange::IKE_AUTH, true) {
            static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    }));
    up(&mut p);
    assert_eq!(p.b.children.len(), 1, "b created the child once");
    assert!(p.a.ep.stats().retransmits >= 1);
}

#[test]
fn gives_up_after_retransmits() {
    let mut p = psk_pair(IKE, ESP);
    p.filter = Some(Box::new(|_, _| Fate::Drop));
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    assert!(p.run_until(Duration::from_secs(600), |p| !p.a.ike_down.is_empty()));
    assert_eq!(p.a.ike_down, vec![DownReason::Timeout]);
    let sends = p.sent;
    assert_eq!(sends, 1 + Config::default().retransmit_tries as usize);
}

#[test]
fn cookie_on_demand() {
    let cfg = Config {
        cookie_threshold: 0,
        ..Config::default()
    };
    let mut p = Pair::new(cfg);
    let base = psk_pair(IKE, ESP);
    for c in base.a.ep.connections() {
        p.a.ep.add_connection(c.clone());
    }
    for c in base.b.ep.connections() {
        p.b.ep.add_connection(c.clone());
    }
    let inits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = inits.clone();
    p.filter = Some(Box::new(move |_, t| {
        if exchange_of(t) == (iana::exchange::IKE_SA_INIT, false) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Fate::Deliver
    }));
    up(&mut p);
    // The first IKE_SA_INIT was answered with a COOKIE only; the retry echoed it.
    assert_eq!(inits.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(p.b.ep.stats().cookies_sent, 1);
}

/// Issue 16 item 3: one source address holds at most `max_half_open_per_source`
/// half-open SAs; its further IKE_SA_INIT requests go unanswered and are counted, other
/// sources are still answered, and the source gets its share back once its SAs finish
/// IKE_AUTH.
#[test]
fn half_open_limit_per_source() {
    let config = Config {
        max_half_open_per_source: 3,
        ..Config::default()
    };
    let now = std::time::Instant::now();
    let mut b = ike::endpoint::Endpoint::new(
        config,
        Box::new(ike::crypto::SeededRng::new(0xb0b)),
        (now, wall_clock()),
    );
    b.add_connection(ike::config::Connection {
        unique: ike::config::UniquePolicy::Never,
        ..psk_b_conn(IKE, ESP)
    });
    // Five initiators behind one address (192.0.2.1, a NAT say) start at once.
    let mut inits: Vec<ike::endpoint::Endpoint> = (0..5u64)
        .map(|i| {
            let mut a = ike::endpoint::Endpoint::new(
                Config::default(),
                Box::new(ike::crypto::SeededRng::new(i)),
                (now, wall_clock()),
            );
            a.add_connection(psk_a_conn(IKE, ESP));
            a.initiate(now, "site-b", None).unwrap();
            a
        })
        .collect();
    // b's answers go to every initiator; the ones that do not know the SPI drop them.
    let exchange = |t: std::time::Instant,
                    b: &mut ike::endpoint::Endpoint,
                    inits: &mut [ike::endpoint::Endpoint]| {
        for _ in 0..10 {
            for a in inits.iter_mut() {
                deliver_all(t, a, b);
            }
            while let Some(r) = b.poll_transmit() {
                for a in inits.iter_mut() {
                    a.handle(t, r.remote, r.local, &r.data);
                }
            }
        }
    };
    for a in inits.iter_mut() {
        deliver_all(now, a, &mut b);
    }
    let mut answered = 0;
    while let Some(t) = b.poll_transmit() {
        assert_eq!(exchange_of(&t), (iana::exchange::IKE_SA_INIT, true));
        answered += 1;
    }
    assert_eq!(answered, 3, "three half-open SAs, two requests refused");
    assert_eq!(b.stats().source_limited, 2);
    assert_eq!(b.stats().overloaded, 0);
    assert_eq!(b.ike_sas().len(), 3);
    // Another source is not held back by 192.0.2.1's share.
    let mut c = ike::endpoint::Endpoint::new(
        Config::default(),
        Box::new(ike::crypto::SeededRng::new(0xc)),
        (now, wall_clock()),
    );
    c.add_connection(psk_conn(
        "site-b",
        [192, 0, 2, 3],
        Some(B_IP),
        "site-c",
        "site-b",
        "a long random secret",
        IKE,
        vec![],
    ));
    c.initiate(now, "site-b", None).unwrap();
    deliver_all(now, &mut c, &mut b);
    assert!(b.poll_transmit().is_some(), "c is answered");
    while b.poll_transmit().is_some() {}
    assert_eq!(b.stats().source_limited, 2);
    // Lost answers are redone: the initiators retransmit. b's three half-open SAs
    // need one retransmission of their IKE_SA_INIT answered, then finish IKE_AUTH and
    // give the share back, so the two refused initiators get in on the next round.
    let established = |ep: &ike::endpoint::Endpoint| {
        ep.ike_sas()
            .iter()
            .filter(|s| s.state == "ESTABLISHED")
            .count()
    };
    let mut t = now;
    for _ in 0..4 {
        t += Duration::from_secs(5);
        for a in inits.iter_mut() {
            a.handle_timeout(t);
        }
        exchange(t, &mut b, &mut inits);
    }
    assert_eq!(established(&b), 5, "{:?}", b.ike_sas());
    assert_eq!(inits.iter().map(established).sum::<usize>(), 5);
}

#[test]
fn invalid_ke_then_retry_with_requested_group() {
    let mut p = Pair::new(Config::default());
    // a guesses x25519 first; b only takes ecp256.
    p.a.ep.add_connection(psk_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        "site-a",
        "site-b",
        "s3cret-s3cret",
        "aes128gcm16-prfsha256-x25519-ecp256",
        vec![child("net", &["10.96.1.0/24"], &["10.96.2.0/24"], ESP)],
    ));
    p.b.ep.add_connection(psk_conn(
        "site-a",
        B_IP,
        None,
        "site-b",
        "site-a",
        "s3cret-s3cret",
        "aes128gcm16-prfsha256-ecp256",
        vec![child("net", &["10.96.2.0/24"], &["10.96.1.0/24"], ESP)],
    ));
    up(&mut p);
    let sa = &p.a.ep.ike_sas()[0];
    assert_eq!(sa.suite.as_ref().unwrap().dh.id(), iana::dh::ECP_256);
}

#[test]
fn ike_proposal_mismatch_fails_cleanly() {
    let mut p = Pair::new(Config::default());
    p.a.ep.add_connection(psk_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        "site-a",
        "site-b",
        "s3cret-s3cret",
        "aes128gcm16-prfsha256-x25519",
        vec![child("net", &["10.96.1.0/24"], &["10.96.2.0/24"], ESP)],
    ));
    p.b.ep.add_connection(psk_conn(
        "site-a",
        B_IP,
        None,
        "site-b",
        "site-a",
        "s3cret-s3cret",
        "aes256-sha512-ecp256",
        vec![child("net", &["10.96.2.0/24"], &["10.96.1.0/24"], ESP)],
    ));
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    p.settle();
    assert_eq!(p.a.ike_down, vec![DownReason::NoProposalChosen]);
    assert!(p.b.ep.ike_sas().is_empty(), "responder kept no state");
}

#[test]
fn esp_proposal_and_ts_mismatch_keep_ike_sa() {
    for (esp_b, remote_b, want) in [
        ("aes256gcm16", "10.96.1.0/24", DownReason::NoProposalChosen),
        (ESP, "10.99.0.0/16", DownReason::TsUnacceptable),
    ] {
        let mut p = Pair::new(Config::default());
        p.a.ep.add_connection(psk_conn(
            "site-b",
            A_IP,
            Some(B_IP),
            "site-a",
            "site-b",
            "s3cret-s3cret",
            IKE,
            vec![child(
                "net",
                &["10.96.1.0/24"],
                &["10.96.2.0/24"],
                "aes128gcm16",
            )],
        ));
        p.b.ep.add_connection(psk_conn(
            "site-a",
            B_IP,
            None,
            "site-b",
            "site-a",
            "s3cret-s3cret",
            IKE,
            vec![child("net", &["10.96.2.0/24"], &[remote_b], esp_b)],
        ));
        p.a.ep.initiate(p.now, "site-b", None).unwrap();
        p.settle();
        assert_eq!(p.a.ike_up, 1);
        assert!(p.a.children.is_empty());
        let failed: Vec<&DownReason> =
            p.a.events
                .iter()
                .filter_map(|e| match e {
                    Event::ChildFailed { reason, .. } => Some(reason),
                    _ => None,
                })
                .collect();
        assert_eq!(failed, vec![&want]);
    }
}

#[test]
fn traffic_selectors_are_narrowed() {
    let mut p = Pair::new(Config::default());
    // a asks for all of 10.0.0.0/8 behind b; b allows two subnets of it. Several
    // subnets per side, like seed 000's p2p child.
    p.a.ep.add_connection(psk_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        "site-a",
        "site-b",
        "s3cret-s3cret",
        IKE,
        vec![child("net", &["192.168.2.0/24"], &["10.0.0.0/8"], ESP)],
    ));
    p.b.ep.add_connection(psk_conn(
        "site-a",
        B_IP,
        None,
        "site-b",
        "site-a",
        "s3cret-s3cret",
        IKE,
        vec![child(
            "net",
            &["10.96.0.0/12", "10.1.0.0/24", "172.16.0.0/16"],
            &["192.168.0.0/16"],
            ESP,
        )],
    ));
    up(&mut p);
    let c = p.a.children.values().next().unwrap();
    let shown: Vec<String> = c.remote_ts.iter().map(ike::ts::display).collect();
    assert_eq!(shown, vec!["10.96.0.0/12", "10.1.0.0/24"]);
    let shown: Vec<String> = c.local_ts.iter().map(ike::ts::display).collect();
    assert_eq!(shown, vec!["192.168.2.0/24"]);
}

#[test]
fn wrong_psk_is_authentication_failed_on_both_sides() {
    let mut p = Pair::new(Config::default());
    p.a.ep.add_connection(psk_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        "site-a",
        "site-b",
        "the right secret",
        IKE,
        vec![child("net", &["10.96.1.0/24"], &["10.96.2.0/24"], ESP)],
    ));
    p.b.ep.add_connection(psk_conn(
        "site-a",
        B_IP,
        None,
        "site-b",
        "site-a",
        "the wrong secret",
        IKE,
        vec![child("net", &["10.96.2.0/24"], &["10.96.1.0/24"], ESP)],
    ));
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    p.settle();
    assert!(
        matches!(&p.b.ike_down[..], [DownReason::AuthenticationFailed(why)] if why.to_string().contains("pre-shared key")),
        "{:?}",
        p.b.ike_down
    );
    assert!(
        matches!(&p.a.ike_down[..], [DownReason::AuthenticationFailed(_)]),
        "{:?}",
        p.a.ike_down
    );
    assert!(p.a.children.is_empty() && p.b.children.is_empty());
    // Both count one failed handshake under its reason, and no completed one.
    let auth = DownReason::NAMES
        .iter()
        .position(|n| *n == "authentication_failed")
        .unwrap();
    for n in [&p.a, &p.b] {
        let s = n.ep.stats();
        assert_eq!(s.handshakes, 0);
        assert_eq!(s.handshake_failures[auth], 1, "{s:?}");
        assert_eq!(s.handshake_failures.iter().sum::<u64>(), 1, "{s:?}");
    }
}

#[test]
fn several_children_under_one_ike_sa() {
    let mut p = Pair::new(Config::default());
    // The p2p / n2p / p2n shape of seed 000.
    let a_children = vec![
        child(
            "p2p",
            &["192.168.2.0/24"],
            &["10.96.0.0/12", "192.168.0.0/24", "192.168.1.0/24"],
            ESP,
        ),
        child(
            "p2n",
            &["192.168.2.0/24"],
            &["10.20.8.23/32", "10.20.8.24/32"],
            ESP,
        ),
        child(
            "n2p",
            &["10.20.8.6/32"],
            &["10.96.0.0/12", "192.168.0.0/24", "192.168.1.0/24"],
            ESP,
        ),
    ];
    let b_children = vec![
        child(
            "p2p",
            &["10.96.0.0/12", "192.168.0.0/24", "192.168.1.0/24"],
            &["192.168.2.0/24"],
            ESP,
        ),
        child(
            "n2p",
            &["10.20.8.23/32", "10.20.8.24/32"],
            &["192.168.2.0/24"],
            ESP,
        ),
        child(
            "p2n",
            &["10.96.0.0/12", "192.168.0.0/24", "192.168.1.0/24"],
            &["10.20.8.6/32"],
            ESP,
        ),
    ];
    p.a.ep.add_connection(psk_conn(
        "cloud",
        A_IP,
        Some(B_IP),
        "edge1",
        "cloud",
        "s3cret-s3cret",
        IKE,
        a_children,
    ));
    p.b.ep.add_connection(psk_conn(
        "edge1",
        B_IP,
        None,
        "cloud",
        "edge1",
        "s3cret-s3cret",
        IKE,
        b_children,
    ));
    p.a.ep.initiate(p.now, "cloud", None).unwrap();
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.children.len() == 3
            && p.b.children.len() == 3)
    );
    p.settle();
    p.assert_children_match();
    let mut names: Vec<String> = p.b.children.values().map(|c| c.child.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["n2p", "p2n", "p2p"]);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
}

fn rekey_child(side: Side, esp: &str) {
    let mut p = psk_pair(IKE, esp);
    up(&mut p);
    let old = p.node(side).child_spis()[0];
    let now = p.now;
    p.node(side).ep.rekey_child(now, old.0).unwrap();
    p.settle();
    p.assert_children_match();
    assert_eq!(p.a.children.len(), 1);
    let new = p.node(side).child_spis()[0];
    assert_ne!(new, old);
    // make-before-break: the new SA was reported up before the old one down.
    let ev = &p.node(side).events;
    let up_at = ev
        .iter()
        .position(
            |e| matches!(e, Event::ChildUp(c) if c.spi_in == new.0 && c.rekeys == Some(old.0)),
        )
        .expect("ChildUp for the rekey");
    let down_at = ev.iter().position(|e| matches!(e, Event::ChildDown { spi_in, reason: DownReason::Rekeyed, .. } if *spi_in == old.0)).expect("old child down as rekeyed");
    assert!(up_at < down_at);
    p.assert_no_loss();
    for n in [&p.a, &p.b] {
        let s = n.ep.stats();
        assert_eq!((s.handshakes, s.child_rekeys, s.ike_rekeys), (1, 1, 0));
    }
}

#[test]
fn child_rekey_from_initiator_without_pfs() {
    rekey_child(Side::A, "aes128gcm16");
}

#[test]
fn child_rekey_from_responder_with_pfs() {
    rekey_child(Side::B, "aes128gcm16-x25519");
}

#[test]
fn child_rekey_with_pfs_from_initiator() {
    rekey_child(Side::A, "aes256gcm16-ecp256");
}

#[test]
fn child_rekey_on_timer() {
    let mut p = psk_pair(IKE, ESP);
    for node in [&mut p.a, &mut p.b] {
        let mut c = node.ep.connections()[0].clone();
        c.children[0].rekey_time = Duration::from_secs(3600);
        node.ep.add_connection(c);
    }
    up(&mut p);
    let first = p.a.child_spis();
    p.run_for(Duration::from_secs(3600 + 30));
    p.settle();
    p.assert_children_match();
    assert_eq!(p.a.children.len(), 1);
    assert_ne!(p.a.child_spis(), first);
}

#[test]
fn simultaneous_child_rekey_leaves_exactly_one_pair() {
    for seed_order in [false, true] {
        let mut p = psk_pair(IKE, "aes128gcm16-x25519");
        up(&mut p);
        let (a_in, b_in) = (p.a.child_spis()[0].0, p.b.child_spis()[0].0);
        let now = p.now;
        if seed_order {
            p.b.ep.rekey_child(now, b_in).unwrap();
            p.a.ep.rekey_child(now, a_in).unwrap();
        } else {
            p.a.ep.rekey_child(now, a_in).unwrap();
            p.b.ep.rekey_child(now, b_in).unwrap();
        }
        p.settle();
        p.assert_children_match();
        assert_eq!(
            p.a.children.len(),
            1,
            "collision left {:?} / {:?}",
            p.a.child_spis(),
            p.b.child_spis()
        );
        assert!(!p.a.children.contains_key(&a_in));
        p.assert_no_loss();
        // The side whose new SA lost says so before deleting it, and only that side.
        let mut redundant: Vec<(Side, u32)> = Vec::new();
        for (side, node) in [(Side::A, &p.a), (Side::B, &p.b)] {
            for e in &node.events {
                if let Event::ChildRedundant { spi_in, .. } = e {
                    redundant.push((side, *spi_in));
                }
            }
        }
        assert_eq!(redundant.len(), 1, "{redundant:?}");
        let (side, spi) = redundant[0];
        let ev = &p.node(side).events;
        let said = ev
            .iter()
            .position(|e| matches!(e, Event::ChildRedundant { spi_in, .. } if *spi_in == spi));
        let down = ev
            .iter()
            .position(|e| matches!(e, Event::ChildDown { spi_in, .. } if *spi_in == spi));
        assert!(said < down && down.is_some(), "{said:?} {down:?}");
        assert!(!p.node(side).children.contains_key(&spi));
    }
}

fn rekey_ike(side: Side) {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let children = p.a.child_spis();
    let old = p.node(side).ep.ike_sas()[0].id;
    let now = p.now;
    p.node(side).ep.rekey_ike(now, old).unwrap();
    p.settle();
    for n in [&p.a, &p.b] {
        let sas = n.ep.ike_sas();
        assert_eq!(sas.len(), 1, "old IKE SA deleted");
        assert_eq!(sas[0].state, "ESTABLISHED");
        assert_eq!(sas[0].children.len(), 1, "children moved to the new IKE SA");
        assert!(
            n.ike_down.is_empty(),
            "a rekey is not a down: {:?}",
            n.ike_down
        );
    }
    assert_eq!(p.a.child_spis(), children, "child SAs untouched");
    for n in [&p.a, &p.b] {
        let s = n.ep.stats();
        assert_eq!((s.ike_rekeys, s.child_rekeys), (1, 0), "{s:?}");
        assert_eq!(s.handshake_failures.iter().sum::<u64>(), 0, "{s:?}");
    }
    // The new IKE SA works: rekey a child through it.
    let now = p.now;
    p.a.ep.rekey_child(now, children[0].0).unwrap();
    p.settle();
    p.assert_children_match();
    assert_ne!(p.a.child_spis(), children);
}

#[test]
fn ike_rekey_from_initiator() {
    rekey_ike(Side::A);
}

#[test]
fn ike_rekey_from_responder() {
    rekey_ike(Side::B);
}

/// Every copy of the DELETE that should retire the rekeyed IKE SA is lost: the
/// initiator drops its old SA after two retransmissions, and the responder, which waits
/// eight retransmission timeouts after the last message on it, deletes its own (to a
/// peer that no longer knows it) instead of keeping it for good.
#[test]
fn ike_rekey_with_every_old_sa_delete_lost() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let old = p.a.ep.ike_sas()[0].id;
    let t = Config::default().retransmit_timeout;
    let base = p.sent;
    // After the rekey's request and answer, nothing a sends arrives.
    p.filter = Some(Box::new(move |i, tx| {
        if i >= base + 2 && tx.local.ip() == std::net::IpAddr::from(A_IP) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    let now = p.now;
    p.a.ep.rekey_ike(now, old).unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.b.ep.ike_sas().len(), 2, "{:?}", p.b.ep.ike_sas());
    assert!(
        p.run_until(20 * t, |p| p.a.ep.ike_sas().len() == 1
            && p.b.ep.ike_sas().len() == 1),
        "a: {:?}\nb: {:?}",
        p.a.ep.ike_sas(),
        p.b.ep.ike_sas()
    );
    for n in [&p.a, &p.b] {
        let sas = n.ep.ike_sas();
        assert_eq!(sas[0].state, "ESTABLISHED");
        assert_eq!(sas[0].children.len(), 1);
        assert!(
            n.ike_down.is_empty(),
            "a rekey is not a down: {:?}",
            n.ike_down
        );
    }
    p.filter = None;
    p.assert_children_match();
}

/// The answer to the DELETE that retires the rekeyed IKE SA is lost. The peer forgot
/// that SA when it answered, so retransmissions go unanswered: the old SA goes silently
/// after two of them (7 retransmission timeouts: 1 + 2 + 4), not after the whole
/// schedule (63 of them, capped at 30 s each), which kept it in the status for a minute
/// at 5% loss (tests/e2e_impaired.rs).
#[test]
fn ike_rekey_with_the_old_sa_delete_answer_lost() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let old = p.a.ep.ike_sas()[0].id;
    let t = Config::default().retransmit_timeout;
    // After the rekey's request and answer, a's DELETE (base + 2) and b's answer.
    let base = p.sent;
    p.filter = Some(Box::new(move |i, _| {
        if i == base + 3 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    let now = p.now;
    p.a.ep.rekey_ike(now, old).unwrap();
    let start = p.now;
    // The rekey completes (two IKE SAs for a moment), then the old one waits for the
    // answer to its DELETE.
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.a.ep.ike_sas().len(), 2, "{:?}", p.a.ep.ike_sas());
    assert!(
        p.run_until(8 * t, |p| p.a.ep.ike_sas().len() == 1),
        "old IKE SA still there: {:?} {:?} sent {}",
        p.a.ep.ike_sas()[0].state,
        p.a.ep.stats(),
        p.sent - base
    );
    assert!(p.now - start <= 7 * t + Duration::from_millis(200));
    assert!(p.a.ep.stats().retransmits >= 2);
    for n in [&p.a, &p.b] {
        let sas = n.ep.ike_sas();
        assert_eq!(sas.len(), 1, "{sas:?}");
        assert_eq!(sas[0].state, "ESTABLISHED");
        assert_eq!(sas[0].children.len(), 1);
        assert!(
            n.ike_down.is_empty(),
            "a rekey is not a down: {:?}",
            n.ike_down
        );
    }
    p.assert_children_match();
}

#[test]
fn simultaneous_ike_rekey_leaves_one_ike_sa() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let (ia, ib) = (p.a.ep.ike_sas()[0].id, p.b.ep.ike_sas()[0].id);
    let now = p.now;
    p.a.ep.rekey_ike(now, ia).unwrap();
    p.b.ep.rekey_ike(now, ib).unwrap();
    p.settle();
    for n in [&p.a, &p.b] {
        let sas = n.ep.ike_sas();
        assert_eq!(
            sas.len(),
            1,
            "{:?}",
            sas.iter()
                .map(|s| (s.spi_i, s.spi_r, s.state))
                .collect::<Vec<_>>()
        );
        assert_eq!(sas[0].children.len(), 1);
    }
    assert_eq!(
        (p.a.ep.ike_sas()[0].spi_i, p.a.ep.ike_sas()[0].spi_r),
        (p.b.ep.ike_sas()[0].spi_i, p.b.ep.ike_sas()[0].spi_r)
    );
    p.assert_children_match();
    // Each side reports the collision once, naming the SA that stayed.
    for (n, old) in [(&p.a, ia), (&p.b, ib)] {
        let seen: Vec<_> = n
            .events
            .iter()
            .filter_map(|e| match e {
                Event::IkeRekeyCollision {
                    old: o,
                    kept,
                    redundant,
                } => Some((*o, *kept, *redundant)),
                _ => None,
            })
            .collect();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (o, kept, redundant) = seen[0];
        assert_eq!(o, old);
        assert_eq!(kept, n.ep.ike_sas()[0].id);
        assert_ne!(redundant, kept);
    }
}

/// The endpoint's child index follows child SAs to the IKE SA that holds them, also
/// when the redundant SA of a simultaneous IKE rekey hands them over (RFC 7296 2.8.2):
/// commands by inbound SPI keep finding them, and a deleted child's SPI is unknown.
#[test]
fn child_commands_find_children_after_simultaneous_ike_rekey() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let (ia, ib) = (p.a.ep.ike_sas()[0].id, p.b.ep.ike_sas()[0].id);
    let now = p.now;
    p.a.ep.rekey_ike(now, ia).unwrap();
    p.b.ep.rekey_ike(now, ib).unwrap();
    p.settle();
    for side in [Side::A, Side::B] {
        let old = p.node(side).child_spis()[0].0;
        let now = p.now;
        p.node(side).ep.rekey_child(now, old).unwrap();
        p.settle();
        p.assert_children_match();
        assert_ne!(p.node(side).child_spis()[0].0, old);
    }
    let spi = p.a.child_spis()[0].0;
    let now = p.now;
    p.a.ep.delete_child(now, spi).unwrap();
    p.settle();
    assert!(p.a.children.is_empty() && p.b.children.is_empty());
    let now = p.now;
    assert_eq!(p.a.ep.rekey_child(now, spi), Err(CommandError::UnknownSa));
    assert_eq!(p.a.ep.delete_child(now, spi), Err(CommandError::UnknownSa));
}

/// An IKE rekey and a child rekey from the other side cross (RFC 7296 2.25): one side
/// answers TEMPORARY_FAILURE, the other retries, and both end with one IKE SA holding
/// one child SA whose SPIs match, in either order of the two requests.
#[test]
fn ike_rekey_crossing_a_child_rekey_settles_on_one_pair() {
    for ike_first in [true, false] {
        let mut p = psk_pair(IKE, ESP);
        up(&mut p);
        let ia = p.a.ep.ike_sas()[0].id;
        let b_in = p.b.child_spis()[0].0;
        let now = p.now;
        if ike_first {
            p.a.ep.rekey_ike(now, ia).unwrap();
            p.b.ep.rekey_child(now, b_in).unwrap();
        } else {
            p.b.ep.rekey_child(now, b_in).unwrap();
            p.a.ep.rekey_ike(now, ia).unwrap();
        }
        p.run_for(Duration::from_secs(60));
        p.settle();
        for n in [&p.a, &p.b] {
            let sas = n.ep.ike_sas();
            assert_eq!(sas.len(), 1, "ike_first {ike_first}");
            assert_eq!(sas[0].children.len(), 1, "ike_first {ike_first}: {sas:?}");
            assert!(!sas[0].busy, "ike_first {ike_first}: {sas:?}");
        }
        assert_ne!(
            p.b.child_spis()[0].0,
            b_in,
            "the child was rekeyed in the end"
        );
        p.assert_children_match();
    }
}

#[test]
fn delete_child_and_ike_from_either_side() {
    for side in [Side::A, Side::B] {
        let mut p = psk_pair(IKE, ESP);
        up(&mut p);
        let spi = p.node(side).child_spis()[0].0;
        let now = p.now;
        p.node(side).ep.delete_child(now, spi).unwrap();
        p.settle();
        assert!(p.a.children.is_empty() && p.b.children.is_empty());
        assert_eq!(p.a.ep.ike_sas().len(), 1, "IKE SA stays");
        let now = p.now;
        let conn = p.node(side).ep.connections()[0].name.clone();
        p.node(side).ep.terminate(now, &conn).unwrap();
        p.settle();
        assert!(p.a.ep.ike_sas().is_empty() && p.b.ep.ike_sas().is_empty());
        let other = if side == Side::A { &p.b } else { &p.a };
        assert_eq!(other.ike_down, vec![DownReason::DeletedByPeer]);
    }
}

#[test]
fn dpd_detects_a_dead_peer() {
    let mut p = psk_pair(IKE, ESP);
    let mut c = p.a.ep.connections()[0].clone();
    c.dpd_delay = Some(Duration::from_secs(30));
    p.a.ep.add_connection(c);
    up(&mut p);
    // Liveness checks are answered while b lives.
    p.run_for(Duration::from_secs(100));
    assert!(p.a.ike_down.is_empty());
    let before = p.a.ep.stats();
    assert!(before.dpd_checks >= 2, "{before:?}");
    assert_eq!(before.dpd_timeouts, 0);
    // b vanishes.
    p.filter = Some(Box::new(|_, _| Fate::Drop));
    assert!(p.run_until(Duration::from_secs(600), |p| !p.a.ike_down.is_empty()));
    assert_eq!(p.a.ike_down, vec![DownReason::DpdTimeout]);
    assert!(p.a.children.is_empty(), "children reported down");
    let after = p.a.ep.stats();
    assert_eq!(after.dpd_timeouts, 1);
    assert!(after.dpd_checks > before.dpd_checks);
    // The SA was up: a dead peer is not a failed handshake.
    assert_eq!(after.handshake_failures.iter().sum::<u64>(), 0);
}

/// b restarts (a fresh endpoint, same address, no memory of the SA) while a's liveness
/// checks run every `dpd`: returns when a declared the SA dead, and a's stats.
fn restarted_peer(p: &mut Pair) -> Duration {
    let config = p.b.ep.connections()[0].clone();
    let now = p.now;
    let mut ep = ike::endpoint::Endpoint::new(
        Config::default(),
        Box::new(ike::crypto::SeededRng::new(99)),
        (now, wall_clock()),
    );
    ep.add_connection(config);
    p.b = Node::new(ep, p.b.ip);
    let start = p.now;
    assert!(p.run_until(Duration::from_secs(600), |p| !p.a.ike_down.is_empty()));
    assert_eq!(p.a.ike_down, vec![DownReason::DpdTimeout]);
    p.now - start
}

#[test]
fn restarted_peer_answers_invalid_ike_spi_and_the_liveness_check_ends_early() {
    // RFC 7296 2.21.4. Without the hint a's check would run the whole schedule (2 s
    // timeout, 5 tries: 2+4+8+16+32+30 s after the DPD delay).
    let dpd = Duration::from_secs(10);
    let mut p = psk_pair(IKE, ESP);
    let mut c = p.a.ep.connections()[0].clone();
    c.dpd_delay = Some(dpd);
    p.a.ep.add_connection(c);
    up(&mut p);
    let took = restarted_peer(&mut p);
    assert!(
        took <= dpd + Duration::from_millis(1100),
        "dead after {took:?}"
    );
    assert_eq!(
        p.b.ep.stats().invalid_spi_sent,
        2,
        "the check and its last try"
    );
    let s = p.a.ep.stats();
    assert_eq!((s.invalid_spi_hints, s.dpd_timeouts), (1, 1), "{s:?}");
}

#[test]
fn forged_invalid_ike_spi_does_not_end_a_live_sa() {
    // Anyone who saw the SPIs can forge the unprotected answer; the real peer answers the
    // last try, so the SA lives on.
    let dpd = Duration::from_secs(10);
    let mut p = psk_pair(IKE, ESP);
    let mut c = p.a.ep.connections()[0].clone();
    c.dpd_delay = Some(dpd);
    p.a.ep.add_connection(c);
    up(&mut p);
    let dropped = std::rc::Rc::new(std::cell::Cell::new(None));
    let seen = dropped.clone();
    // b's first answer to a's liveness check is lost and a forged INVALID_IKE_SPI
    // arrives in its place.
    p.filter = Some(Box::new(move |_, t| {
        let m = msg::info(t).unwrap();
        if m.exchange == msg::INFORMATIONAL && m.response && seen.get().is_none() {
            seen.set(Some(m));
            return Fate::Drop;
        }
        Fate::Deliver
    }));
    p.run_until(Duration::from_secs(60), |_| dropped.get().is_some());
    let m = dropped.get().unwrap();
    let mut data = Vec::new();
    ike::wire::Message {
        header: ike::wire::Header {
            spi_i: m.spi_i,
            spi_r: m.spi_r,
            next_payload: Default::default(),
            version: 0x20,
            exchange: iana::exchange::INFORMATIONAL,
            flags: ike::wire::Flags {
                initiator: false,
                response: true,
                version: false,
            },
            message_id: m.msg_id,
            length: 0,
        },
        payloads: vec![ike::wire::Payload::Notify(ike::wire::Notify {
            protocol: 0,
            spi: Vec::new(),
            kind: iana::notify::INVALID_IKE_SPI,
            data: Vec::new(),
        })],
    }
    .emit(&mut data);
    let now = p.now;
    p.a.ep
        .handle(now, (p.a.ip, 500).into(), (p.b.ip, 500).into(), &data);
    p.run_for(Duration::from_secs(120));
    assert!(p.a.ike_down.is_empty(), "{:?}", p.a.ike_down);
    let s = p.a.ep.stats();
    assert_eq!((s.invalid_spi_hints, s.dpd_timeouts), (1, 0), "{s:?}");
    assert_eq!(p.a.established(), 1);
}

#[test]
fn nat_is_detected_and_ike_floats_to_4500() {
    let mut p = psk_pair(IKE, ESP);
    p.nat = Some(Nat {
        public: "198.51.100.1".parse().unwrap(),
        next_port: 40000,
        map: Default::default(),
    });
    up(&mut p);
    let ca = p.a.children.values().next().unwrap();
    let cb = p.b.children.values().next().unwrap();
    assert!(ca.encap && cb.encap);
    assert_eq!(ca.remote.port(), 4500);
    assert_eq!(ca.local.port(), 4500);
    assert_eq!(cb.remote.ip().to_string(), "198.51.100.1");
    assert_eq!(
        cb.remote.port(),
        40002,
        "b sends ESP to the NAT's 4500 mapping"
    );
    let sa = &p.b.ep.ike_sas()[0];
    let nat = |local_behind, remote_behind| NatState {
        local_behind,
        remote_behind,
        fake: false,
    };
    assert_eq!(sa.nat, nat(false, true));
    assert_eq!(p.a.ep.ike_sas()[0].nat, nat(true, false));
}

#[test]
fn forced_encapsulation_without_nat() {
    let mut p = psk_pair(IKE, ESP);
    let mut c = p.a.ep.connections()[0].clone();
    c.encap = true;
    p.a.ep.add_connection(c);
    up(&mut p);
    assert!(p.a.children.values().all(|c| c.encap));
    assert!(p.b.children.values().all(|c| c.encap));
    // a fakes a NAT (charon's nat-fake) but detects none; b takes a to be behind one.
    let a = p.a.ep.ike_sas()[0].nat;
    assert!(a.fake && !a.local_behind && !a.remote_behind, "{a:?}");
    let b = p.b.ep.ike_sas()[0].nat;
    assert!(!b.fake && !b.local_behind && b.remote_behind, "{b:?}");
    assert_eq!(
        p.a.ep.ike_sas()[0].local.port(),
        4500,
        "IKE floated all the same"
    );
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let now = p.now;
    let local = "192.0.2.2:500".parse().unwrap();
    let remote = "192.0.2.1:500".parse().unwrap();
    let mut junk = vec![0u8; 28];
    for i in 0..2000u32 {
        let len = (i as usize * 7) % 200;
        junk.resize(len, 0);
        for (j, b) in junk.iter_mut().enumerate() {
            *b = (i as usize * 31 + j * 17) as u8;
        }
        p.b.ep.handle(now, local, remote, &junk);
    }
    let s = p.b.ep.stats();
    assert!(s.malformed + s.unknown_spi > 0);
    p.assert_children_match();
}

#[test]
fn initiating_twice_while_connecting_uses_one_ike_sa() {
    let mut p = psk_pair(IKE, ESP);
    let now = p.now;
    let first = p.a.ep.initiate(now, "site-b", None).unwrap();
    let again = p.a.ep.initiate(now, "site-b", None).unwrap();
    assert_eq!(first, again);
    p.settle();
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_eq!(p.b.ep.ike_sas().len(), 1);
    p.assert_children_match();
}

/// A's endpoint replaced by a fresh one (a restarted peer that lost its state), with
/// `unique` on B's connection set to `policy`.
fn restart_a(p: &mut Pair) {
    p.a.ep = ike::endpoint::Endpoint::new(
        Config::default(),
        Box::new(ike::crypto::SeededRng::new(0x5eed_0002)),
        (p.now, wall_clock()),
    );
    p.a.ep.add_connection(psk_a_conn(IKE, ESP));
    p.a.children.clear();
    p.a.ike_up = 0;
}

fn with_unique(p: &mut Pair, policy: ike::config::UniquePolicy) {
    let mut c = psk_b_conn(IKE, ESP);
    c.unique = policy;
    p.b.ep.add_connection(c);
}

/// Issue 20 fault 3: a peer that lost its state and comes back sends INITIAL_CONTACT
/// (RFC 7296 2.4); its old IKE SA (and child) at the responder goes at once, without a
/// DELETE the peer could not read, whatever the default `unique` says.
#[test]
fn initial_contact_from_a_restarted_peer_replaces_its_old_ike_sa() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    let old = p.b.child_spis();
    restart_a(&mut p);
    let sent_before = p.sent;
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    assert!(
        p.run_until(Duration::from_secs(30), |p| p.a.children.len() == 1
            && p.b.ep.stats().replaced == 1),
        "the new IKE SA did not replace the old one"
    );
    p.settle();
    assert_eq!(p.b.established(), 1, "{:?}", p.b.ep.ike_sas());
    assert_eq!(p.b.children.len(), 1);
    assert_ne!(p.b.child_spis(), old);
    p.assert_children_match();
    assert!(p.b.ike_down.contains(&DownReason::Replaced {
        initial_contact: true
    }));
    // IKE_SA_INIT and IKE_AUTH, both ways: no DELETE for the old SA.
    assert_eq!(p.sent - sent_before, 4);
}

/// A second IKE SA between the same identities, started while the first is up (no
/// INITIAL_CONTACT then): `no` keeps both, `replace` deletes the old one at the peer,
/// `keep` deletes the new one, `never` keeps both.
#[test]
fn unique_policy_decides_between_duplicates() {
    use ike::config::UniquePolicy;
    for (policy, expect_b, expect_replaced) in [
        (UniquePolicy::No, 2, 0),
        (UniquePolicy::Never, 2, 0),
        (UniquePolicy::Replace, 1, 1),
        (UniquePolicy::Keep, 1, 1),
    ] {
        let mut p = psk_pair(IKE, ESP);
        with_unique(&mut p, policy);
        up(&mut p);
        let first = p.b.ep.ike_sas()[0].id;
        // A second connection on A to the same peer, so A starts another IKE SA while
        // the first is up (and so sends no INITIAL_CONTACT).
        p.a.ep.add_connection(psk_conn(
            "site-b-again",
            A_IP,
            Some(B_IP),
            "site-a",
            "site-b",
            "a long random secret",
            IKE,
            vec![child("net2", &["10.96.1.0/24"], &["10.96.2.0/24"], ESP)],
        ));
        p.a.ep.initiate(p.now, "site-b-again", None).unwrap();
        p.run_for(Duration::from_secs(10));
        p.settle();
        let ids: Vec<_> = p.b.ep.ike_sas().iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), expect_b, "{policy:?}: {:?}", p.b.ep.ike_sas());
        assert_eq!(p.b.ep.stats().replaced, expect_replaced, "{policy:?}");
        assert_eq!(p.a.established(), expect_b, "{policy:?}: both sides agree");
        match policy {
            UniquePolicy::Replace => assert!(!ids.contains(&first), "{policy:?}"),
            UniquePolicy::Keep => assert_eq!(ids, vec![first], "{policy:?}"),
            _ => {}
        }
        if expect_replaced > 0 {
            assert!(p.b.ike_down.contains(&DownReason::Replaced {
                initial_contact: false
            }));
        }
    }
}

/// Issue 20 fault 2: once shutting down, an endpoint answers no new IKE_SA_INIT and
/// deletes what it had, so nothing is left behind when it exits.
#[test]
fn shutdown_refuses_new_ike_sas_and_deletes_the_rest() {
    let mut p = psk_pair(IKE, ESP);
    up(&mut p);
    p.b.ep.shutdown(p.now);
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.b.ep.ike_sas().is_empty()
            && p.a.ep.ike_sas().is_empty()),
        "the SA was not deleted at the peer"
    );
    assert!(p.a.ike_down.contains(&DownReason::DeletedByPeer));
    // A new negotiation is left unanswered and fails on our side's retransmit limit,
    // never establishing anything at the closing peer.
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    p.run_for(Duration::from_secs(120));
    assert_eq!(p.b.established(), 0);
    assert!(p.b.ep.ike_sas().is_empty(), "{:?}", p.b.ep.ike_sas());
    assert!(p.b.ep.stats().refused_closing >= 1);
    assert!(
        p.a.ike_down.contains(&DownReason::Timeout),
        "{:?}",
        p.a.ike_down
    );
}

/// Moves every datagram queued by `from` into `to` (addresses swapped for the receiver).
fn deliver_all(
    now: std::time::Instant,
    from: &mut ike::endpoint::Endpoint,
    to: &mut ike::endpoint::Endpoint,
) -> usize {
    let mut n = 0;
    while let Some(t) = from.poll_transmit() {
        to.handle(now, t.remote, t.local, &t.data);
        n += 1;
    }
    n
}

/// Issue 22 fault 2's set-up: b (cookie threshold 1) has its one half-open slot taken
/// by a third initiator, so a's first IKE_SA_INIT (`first`, kept: the stale copy)
/// gets a COOKIE and a retries with it (`retry`, not delivered yet); then the third
/// initiator's half-open SA expires and b is below its threshold again at `later`.
struct CookieRace {
    p: Pair,
    b: ike::endpoint::Endpoint,
    first: ike::endpoint::Transmit,
    retry: ike::endpoint::Transmit,
    later: std::time::Instant,
}

fn cookie_race() -> CookieRace {
    let config = Config {
        cookie_threshold: 1,
        ..Config::default()
    };
    let mut p = psk_pair(IKE, ESP);
    let mut b = ike::endpoint::Endpoint::new(
        config,
        Box::new(ike::crypto::SeededRng::new(0xb0b)),
        (p.now, wall_clock()),
    );
    b.add_connection(psk_b_conn(IKE, ESP));
    let now = p.now;
    let mut c = ike::endpoint::Endpoint::new(
        Config::default(),
        Box::new(ike::crypto::SeededRng::new(0xc)),
        (now, wall_clock()),
    );
    c.add_connection(psk_conn(
        "site-b",
        [192, 0, 2, 3],
        Some(B_IP),
        "site-c",
        "site-b",
        "a long random secret",
        IKE,
        vec![],
    ));
    c.initiate(now, "site-b", None).unwrap();
    deliver_all(now, &mut c, &mut b);
    while b.poll_transmit().is_some() {}
    p.a.ep.initiate(now, "site-b", None).unwrap();
    let first = p.a.ep.poll_transmit().expect("IKE_SA_INIT");
    b.handle(now, first.remote, first.local, &first.data);
    assert_eq!(deliver_all(now, &mut b, &mut p.a.ep), 1, "the COOKIE reply");
    let retry = p.a.ep.poll_transmit().expect("IKE_SA_INIT with the cookie");
    assert_ne!(retry.data, first.data);
    let later = now + Duration::from_secs(40);
    b.handle_timeout(later);
    assert!(b.ike_sas().is_empty(), "{:?}", b.ike_sas());
    CookieRace {
        p,
        b,
        first,
        retry,
        later,
    }
}

/// Both ends of `r` have one ESTABLISHED IKE SA, and b nothing else.
fn assert_cookie_race_ends_up(r: &mut CookieRace) {
    for _ in 0..10 {
        deliver_all(r.later, &mut r.b, &mut r.p.a.ep);
        deliver_all(r.later, &mut r.p.a.ep, &mut r.b);
    }
    let up = |ep: &ike::endpoint::Endpoint| {
        ep.ike_sas()
            .iter()
            .filter(|s| s.state == "ESTABLISHED")
            .count()
    };
    assert_eq!(up(&r.p.a.ep), 1, "a: {:?}", r.p.a.ep.ike_sas());
    assert_eq!(up(&r.b), 1, "b: {:?}", r.b.ike_sas());
    assert_eq!(r.b.ike_sas().len(), 1, "b: {:?}", r.b.ike_sas());
}

/// Issue 22 fault 2, in the order seen at 5,000 SAs: a stale copy of a's first
/// request (a retransmission still in flight) reaches b once b is below its cookie
/// threshold, and b's answer to it is lost; then a's cookie retry arrives. b must
/// build the SA from the request a signs (RFC 7296 2.6, 2.15): the one with the
/// cookie. Before the fix b answered the cookie request from the stale SA's cache and
/// both sides failed with "pre-shared key mismatch".
#[test]
fn a_stale_request_without_cookie_does_not_hijack_the_cookie_retry() {
    let mut r = cookie_race();
    let (first, retry, later) = (r.first.clone(), r.retry.clone(), r.later);
    r.b.handle(later, first.remote, first.local, &first.data);
    while r.b.poll_transmit().is_some() {}
    r.b.handle(later, retry.remote, retry.local, &retry.data);
    assert_cookie_race_ends_up(&mut r);
}

/// Issue 22 fault 2, the order the first fix missed: b's answer to the stale copy
/// reaches a before a's cookie retry reaches b. Had b built an SA from the stale copy,
/// a (which moved on to its cookie retry, and signs that one) would take the answer
/// and both sides would fail authentication. b remembers whom it challenged: the
/// stale copy gets the COOKIE again, a keeps its retry in flight, and the SA comes up
/// from the retry alone.
#[test]
fn a_stale_request_answered_before_the_cookie_retry_gets_the_cookie_again() {
    let mut r = cookie_race();
    let (first, retry, later) = (r.first.clone(), r.retry.clone(), r.later);
    r.b.handle(later, first.remote, first.local, &first.data);
    assert!(
        r.b.ike_sas().is_empty(),
        "an SA from the stale copy: {:?}",
        r.b.ike_sas()
    );
    assert_eq!(r.b.stats().cookies_sent, 2);
    deliver_all(later, &mut r.b, &mut r.p.a.ep);
    // a does not start over for a cookie it already sends (no new request).
    assert!(r.p.a.ep.poll_transmit().is_none());
    r.b.handle(later, retry.remote, retry.local, &retry.data);
    assert_cookie_race_ends_up(&mut r);
}

/// Issue 22 fault 5: a retransmitted IKE_SA_INIT that arrives after its SA completed
/// IKE_AUTH makes no new half-open SA (they lingered by the hundred at 10,000 SAs).
#[test]
fn a_late_init_retransmission_makes_no_half_open_sa() {
    let mut p = psk_pair(IKE, ESP);
    let now = p.now;
    p.a.ep.initiate(now, "site-b", None).unwrap();
    let first = p.a.ep.poll_transmit().expect("IKE_SA_INIT");
    p.b.ep.handle(now, first.remote, first.local, &first.data);
    for _ in 0..10 {
        deliver_all(now, &mut p.b.ep, &mut p.a.ep);
        deliver_all(now, &mut p.a.ep, &mut p.b.ep);
    }
    assert_eq!(p.b.established(), 1);
    p.b.ep.handle(now, first.remote, first.local, &first.data);
    assert_eq!(p.b.ep.ike_sas().len(), 1, "{:?}", p.b.ep.ike_sas());
    assert!(p.b.ep.poll_transmit().is_none(), "nothing to answer");
}

#[test]
fn census_counts_sas_by_state() {
    use ike::endpoint::STATE_NAMES;
    let mut p = psk_pair(IKE, ESP);
    let now = p.now;
    p.a.ep.initiate(now, "site-b", None).unwrap();
    let connecting = STATE_NAMES.iter().position(|n| *n == "CONNECTING").unwrap();
    let established = STATE_NAMES
        .iter()
        .position(|n| *n == "ESTABLISHED")
        .unwrap();
    assert_eq!(p.a.ep.census().ike_sas[connecting], 1);
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.children.len() == 1
            && p.b.children.len() == 1),
        "tunnel did not come up"
    );
    p.settle();
    for n in [&p.a, &p.b] {
        let c = n.ep.census();
        assert_eq!(c.ike_sas[established], 1, "{c:?}");
        assert_eq!(c.ike_sas.iter().sum::<usize>(), 1, "{c:?}");
        assert_eq!(c.child_sas, 1, "{c:?}");
        assert_eq!(n.ep.stats().handshakes, 1);
    }
}

/// A responder with `delete_window` and ten IKE SAs up, one from each of ten
/// initiators behind one address.
fn ten_sas(delete_window: usize) -> (ike::endpoint::Endpoint, Vec<ike::endpoint::Endpoint>) {
    let now = std::time::Instant::now();
    let config = Config {
        delete_window,
        ..Config::default()
    };
    let mut b = ike::endpoint::Endpoint::new(
        config,
        Box::new(ike::crypto::SeededRng::new(0xb0b)),
        (now, wall_clock()),
    );
    b.add_connection(ike::config::Connection {
        unique: ike::config::UniquePolicy::Never,
        ..psk_b_conn(IKE, ESP)
    });
    let mut inits: Vec<ike::endpoint::Endpoint> = (0..10u64)
        .map(|i| {
            let mut a = ike::endpoint::Endpoint::new(
                Config::default(),
                Box::new(ike::crypto::SeededRng::new(100 + i)),
                (now, wall_clock()),
            );
            a.add_connection(psk_a_conn(IKE, ESP));
            a.initiate(now, "site-b", None).unwrap();
            a
        })
        .collect();
    for _ in 0..10 {
        route_round(now, &mut b, &mut inits, 0);
    }
    let established = b
        .ike_sas()
        .iter()
        .filter(|s| s.state == "ESTABLISHED")
        .count();
    assert_eq!(established, 10, "{:?}", b.ike_sas());
    (b, inits)
}

/// One round between `b` and initiators sharing one address: theirs to b, then each of
/// b's datagrams to the initiator whose SA has its SPIi, except the first `dead`
/// initiators, which hear nothing. Returns how many datagrams b sent.
fn route_round(
    now: std::time::Instant,
    b: &mut ike::endpoint::Endpoint,
    inits: &mut [ike::endpoint::Endpoint],
    dead: usize,
) -> usize {
    for a in inits.iter_mut() {
        deliver_all(now, a, b);
    }
    let mut sent = 0;
    while let Some(r) = b.poll_transmit() {
        sent += 1;
        let spi_i = u64::from_be_bytes(r.data[..8].try_into().unwrap());
        for a in inits.iter_mut().skip(dead) {
            if a.ike_sas().iter().any(|s| s.spi_i == spi_i) {
                a.handle(now, r.remote, r.local, &r.data);
            }
        }
    }
    sent
}

/// Issue 22: a responder deleting all its IKE SAs at shutdown keeps at most
/// `delete_window` deletes outstanding, starting the next as each is answered (at
/// 100,000 SAs one burst of deletes overran the peers and came back as retransmits).
#[test]
fn shutdown_paces_its_deletes() {
    let (mut b, mut inits) = ten_sas(3);
    let now = std::time::Instant::now();
    b.shutdown(now);
    let mut deletes = Vec::new();
    loop {
        let sent = route_round(now, &mut b, &mut inits, 0);
        if sent == 0 {
            break;
        }
        deletes.push(sent);
    }
    assert!(b.ike_sas().is_empty(), "{:?}", b.ike_sas());
    assert_eq!(inits.iter().map(|a| a.ike_sas().len()).sum::<usize>(), 0);
    // Three at a time: 3 + 3 + 3 + 1, each round started by the previous answers.
    assert_eq!(deletes, vec![3, 3, 3, 1]);
}

/// Peers that never answer hold a paced delete's place for one retransmission
/// timeout, not until they time out: the live peers behind them are deleted next.
#[test]
fn dead_peers_do_not_hold_up_the_paced_deletes() {
    let (mut b, mut inits) = ten_sas(3);
    let mut now = std::time::Instant::now();
    b.shutdown(now);
    // The first three SAs' peers are gone.
    assert_eq!(route_round(now, &mut b, &mut inits, 3), 3);
    assert_eq!(
        route_round(now, &mut b, &mut inits, 3),
        0,
        "the window is full"
    );
    now += Config::default().retransmit_timeout;
    b.handle_timeout(now);
    for _ in 0..10 {
        route_round(now, &mut b, &mut inits, 3);
    }
    // Every live peer's SA is deleted at both ends; the dead ones' deletes retransmit.
    assert_eq!(
        inits
            .iter()
            .skip(3)
            .map(|a| a.ike_sas().len())
            .sum::<usize>(),
        0
    );
    assert_eq!(b.ike_sas().len(), 3, "{:?}", b.ike_sas());
}
