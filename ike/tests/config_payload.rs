//! Virtual IPs through the configuration payload (RFC 7296 2.19, 3.15): clients (the
//! connections of endpoint A, one identity each) ask a hub (B) with pools for addresses.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use ike::config::{Config, Identity};
use ike::endpoint::{DownReason, Event, Pool};
use ike::iana::notify;
use ike::ts;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A hub with pools `v4` (and `v6` when given), and `n` clients asking for `vips`.
fn hub(v4: &str, v6: Option<&str>, n: usize, vips: &[&str]) -> Pair {
    let mut p = Pair::new(Config::default());
    for i in 0..n {
        let mut c = psk_conn(
            &format!("c{i}"),
            A_IP,
            Some(B_IP),
            &format!("client{i}"),
            "hub",
            "a long random secret",
            IKE,
            vec![child(
                "pod",
                &["0.0.0.0/0", "::/0"],
                &["10.173.0.0/16", "fd00:173::/64"],
                ESP,
            )],
        );
        c.vips = vips.iter().map(|v| ip(v)).collect();
        p.a.ep.add_connection(c);
    }
    let mut h = psk_conn(
        "hub",
        B_IP,
        None,
        "hub",
        "hub",
        "a long random secret",
        IKE,
        vec![child(
            "pods",
            &["10.173.0.0/16", "fd00:173::/64"],
            &["0.0.0.0/0", "::/0"],
            ESP,
        )],
    );
    h.remote_id = Identity::Any;
    h.pools = vec!["v4".into()];
    p.b.ep.add_pool(
        Pool::parse("v4", v4)
            .unwrap()
            .with_dns(vec![ip("10.173.0.53")]),
    );
    if let Some(v6) = v6 {
        h.pools.push("v6".into());
        p.b.ep.add_pool(
            Pool::parse("v6", v6)
                .unwrap()
                .with_dns(vec![ip("fd00:173::53")]),
        );
    }
    p.b.ep.add_connection(h);
    p
}

fn initiate(p: &mut Pair, conn: &str) {
    let now = p.now;
    p.a.ep.initiate(now, conn, None).unwrap();
    p.settle();
}

/// The virtual IPs the hub assigned to client connection `conn`, from its IKE SA.
fn vips_of(p: &Pair, conn: &str) -> Vec<IpAddr> {
    p.a.ep
        .ike_sas()
        .into_iter()
        .filter(|s| s.conn == conn && s.state == "ESTABLISHED")
        .flat_map(|s| s.local_vips)
        .collect()
}

/// (online, offline) leases of the hub's pool `name`.
fn leases(p: &Pair, name: &str) -> (usize, usize) {
    let pool = p.b.ep.pools().find(|x| x.name() == name).unwrap();
    (pool.online(), pool.offline())
}

#[test]
fn ipv4_and_ipv6_addresses_and_dns_narrow_the_selectors() {
    let mut p = hub(
        "10.173.0.0/24",
        Some("fd00:173::/120"),
        1,
        &["0.0.0.0", "::"],
    );
    initiate(&mut p, "c0");
    p.assert_children_match();
    let vips = [ip("10.173.0.1"), ip("fd00:173::1")];
    let up =
        p.a.events
            .iter()
            .find_map(|e| match e {
                Event::IkeUp(i) => Some((**i).clone()),
                _ => None,
            })
            .expect("IkeUp");
    assert_eq!(up.local_vips, vips, "IkeUp carries the addresses");
    assert_eq!(up.dns, [ip("10.173.0.53"), ip("fd00:173::53")]);
    assert_eq!(p.b.ep.ike_sas()[0].remote_vips, vips);
    // The client's side of the child SA is its address, whatever it proposed.
    let c = p.a.children.values().next().unwrap();
    let hosts: Vec<_> = vips
        .iter()
        .map(|a| ts::from_prefix(*a, if a.is_ipv4() { 32 } else { 128 }).unwrap())
        .collect();
    assert_eq!(c.local_ts, hosts);
    assert_eq!((leases(&p, "v4"), leases(&p, "v6")), ((1, 0), (1, 0)));
    // A child created later is narrowed the same way, from either side.
    let now = p.now;
    p.a.ep.initiate(now, "c0", Some("pod")).unwrap();
    p.settle();
    p.assert_children_match();
    assert_eq!(p.a.children.len(), 2);
    assert!(p.a.children.values().all(|c| c.local_ts == hosts));
}

#[test]
fn reconnect_and_rekey_keep_the_address() {
    let mut p = hub("10.173.0.0/24", None, 2, &["0.0.0.0"]);
    initiate(&mut p, "c0");
    initiate(&mut p, "c1");
    let (v0, v1) = (vips_of(&p, "c0"), vips_of(&p, "c1"));
    assert_eq!(
        (v0.clone(), v1.clone()),
        (vec![ip("10.173.0.1")], vec![ip("10.173.0.2")])
    );
    assert_eq!(leases(&p, "v4"), (2, 0));

    // An IKE rekey from either side moves the lease to the new IKE SA.
    for side in [Side::A, Side::B] {
        let id = p
            .node(side)
            .ep
            .ike_sas()
            .into_iter()
            .find(|s| s.conn == "c0" || (side == Side::B && s.remote_vips == v0))
            .unwrap()
            .id;
        let now = p.now;
        p.node(side).ep.rekey_ike(now, id).unwrap();
        p.settle();
        assert_eq!(leases(&p, "v4"), (2, 0), "rekey by {side:?}");
        assert_eq!(vips_of(&p, "c0"), v0);
    }

    // Gone: the lease goes offline but stays the identity's.
    let now = p.now;
    p.a.ep.terminate(now, "c0").unwrap();
    p.settle();
    assert_eq!(leases(&p, "v4"), (1, 1));
    initiate(&mut p, "c0");
    assert_eq!(vips_of(&p, "c0"), v0, "same identity, same address");
    assert_eq!(leases(&p, "v4"), (2, 0));
    let pool = p.b.ep.pools().next().unwrap();
    let who: Vec<_> = pool
        .leases()
        .iter()
        .map(|l| l.identity.to_string())
        .collect();
    assert_eq!(who.len(), 2);
    assert!(who[0].ends_with("CN=client0"), "{who:?}");
}

#[test]
fn exhausted_pool_fails_only_the_extra_client() {
    let mut p = hub("10.173.0.1-10.173.0.2", None, 3, &["0.0.0.0"]);
    for c in ["c0", "c1", "c2"] {
        initiate(&mut p, c);
    }
    assert_eq!(vips_of(&p, "c0"), [ip("10.173.0.1")]);
    assert_eq!(vips_of(&p, "c1"), [ip("10.173.0.2")]);
    assert!(vips_of(&p, "c2").is_empty());
    assert_eq!(p.a.children.len(), 2, "c0 and c1 keep their tunnels");
    assert_eq!(p.b.children.len(), 2);
    let refused = DownReason::PeerError(notify::INTERNAL_ADDRESS_FAILURE);
    assert!(
        p.a.events.iter().any(|e| matches!(e,
            Event::ChildFailed { conn, reason, .. } if conn == "c2" && *reason == refused)),
        "c2's child failed with INTERNAL_ADDRESS_FAILURE"
    );
    assert_eq!(p.a.ike_down, [refused], "c2 closed its useless IKE SA");
    assert!(p.b.events.iter().any(|e| matches!(e,
        Event::NoVirtualIp { remote_id, pools, .. }
            if remote_id.ends_with("CN=client2") && pools == &["v4".to_string()])));
    assert_eq!(leases(&p, "v4"), (2, 0));
    assert_eq!(p.a.established(), 2);
    assert_eq!(p.b.established(), 2);

    // When one leaves, its offline lease goes to the waiting client.
    let now = p.now;
    p.a.ep.terminate(now, "c0").unwrap();
    p.settle();
    initiate(&mut p, "c2");
    assert_eq!(vips_of(&p, "c2"), [ip("10.173.0.1")]);
}

#[test]
fn client_without_request_gets_failed_cp_required() {
    let mut p = hub("10.173.0.0/24", None, 1, &[]);
    initiate(&mut p, "c0");
    assert!(p.a.children.is_empty());
    assert!(p.a.events.iter().any(|e| matches!(e,
        Event::ChildFailed { reason, .. }
            if *reason == DownReason::PeerError(notify::FAILED_CP_REQUIRED))));
    assert_eq!(leases(&p, "v4"), (0, 0));
    // The request with an address of the other family only: nothing to assign.
    let mut p = hub("10.173.0.0/24", None, 1, &["::"]);
    initiate(&mut p, "c0");
    assert!(p.a.children.is_empty());
    assert_eq!(
        p.a.ike_down,
        [DownReason::PeerError(notify::INTERNAL_ADDRESS_FAILURE)]
    );
}

#[test]
fn lost_client_reclaims_its_address_with_initial_contact() {
    let mut p = hub("10.173.0.0/24", None, 1, &["0.0.0.0"]);
    initiate(&mut p, "c0");
    let v0 = vips_of(&p, "c0");
    // The client restarts: a fresh endpoint with the same configuration, which sends
    // INITIAL_CONTACT while the hub still holds the old IKE SA.
    let conns: Vec<_> = p.a.ep.connections().to_vec();
    p.a.ep = ike::endpoint::Endpoint::new(
        Config::default(),
        Box::new(ike::crypto::SeededRng::new(99)),
        (p.now, wall_clock()),
    );
    for c in conns {
        p.a.ep.add_connection(c);
    }
    initiate(&mut p, "c0");
    p.run_for(Duration::from_secs(1));
    assert_eq!(vips_of(&p, "c0"), v0);
    assert_eq!(
        p.b.established(),
        1,
        "INITIAL_CONTACT replaced the old IKE SA"
    );
    assert_eq!(leases(&p, "v4"), (1, 0));
}

#[test]
fn one_address_per_family_however_many_are_asked_for() {
    let mut p = hub("10.173.0.0/24", Some("fd00:173::/120"), 1, &[]);
    let mut c = p.a.ep.connections()[0].clone();
    c.vips = vec![ip("0.0.0.0"); 5];
    c.vips.extend([ip("::"), ip("::")]);
    p.a.ep.add_connection(c);
    initiate(&mut p, "c0");
    assert_eq!(vips_of(&p, "c0"), [ip("10.173.0.1"), ip("fd00:173::1")]);
    assert_eq!((leases(&p, "v4"), leases(&p, "v6")), ((1, 0), (1, 0)));
}
