//! End-to-end: esprit clients get virtual IPs from an esprit hub's pools (RFC 7296
//! 3.15), IPv4 and IPv6: the address is on the client's TUN device and the source of
//! its traffic, pods reach the hub and each other through it (seed 003), a client gets
//! its address back when it reconnects or restarts, and a pool smaller than its clients
//! fails only the extra one.

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/hub.rs"]
mod hub;

use std::net::IpAddr;
use std::time::Duration;

use common::cli;
use engine::control::Request;
use esprit::testbed::{ping, tcp_transfer};
use hub::{command, wait_status, Lab, CONN, HUB_V4, HUB_V6};

const PING_WAIT: Duration = Duration::from_secs(5);
/// A checked TCP transfer's size (smaller than the tunnel tests': three per run here).
const BYTES: u64 = 20_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn transfer(lab: &Lab, from: usize, to: Option<usize>, addr: IpAddr, port: u16) {
    let dst = match to {
        Some(i) => lab.star.client(i),
        None => lab.star.hub(),
    };
    let t = tcp_transfer(
        lab.star.client(from),
        dst,
        addr,
        port,
        BYTES,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("TCP from client {from} to {addr}: {e}"));
    assert_eq!(t.bytes, BYTES, "bytes to {addr}");
    assert!(t.intact(), "sha256 differs for the transfer to {addr}");
}

#[test]
fn ipv4_and_ipv6_vips_from_pools_and_pod_to_pod_through_the_hub() {
    let mut lab = Lab::new(2, "10.173.0.0/24", Some("fd00:173::/120"));
    lab.start_client(0, &["0.0.0.0", "::"]);
    let v0 = lab.wait_vips(0, 2);
    lab.start_client(1, &["0.0.0.0", "::"]);
    let v1 = lab.wait_vips(1, 2);
    assert_eq!(v0, [ip("10.173.0.1"), ip("fd00:173::1")]);
    assert_eq!(v1, [ip("10.173.0.2"), ip("fd00:173::2")]);

    // On the TUN device, DNS in status, leases on the hub.
    let addrs = lab.tun_addrs(0);
    assert!(addrs.contains("10.173.0.1/32"), "{addrs}");
    assert!(addrs.contains("fd00:173::1/128"), "{addrs}");
    let s = lab.client(0).status().unwrap();
    assert_eq!(s.ike_sas[0].dns, ["10.173.0.53", "fd00:173::53"]);
    assert!(s.to_string().contains("local-vip 10.173.0.1"), "{s}");
    assert_eq!((lab.leases("pods"), lab.leases("pods6")), ((2, 0), (2, 0)));
    let hub_s = lab.hub().status().unwrap();
    let pods = hub_s.pools.iter().find(|p| p.name == "pods").unwrap();
    assert_eq!(pods.size, 254);
    assert!(
        pods.leases[0].identity.contains("pod0.esprit.test"),
        "{hub_s}"
    );
    // `esprit status` as a user runs it, text and JSON.
    let cfg = lab.hub_config();
    let text = cli(
        &["status", "-c", cfg.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("pods ") && text.contains(" 2 / 0 / 254"),
        "{text}"
    );
    assert!(text.contains("remote-vip 10.173.0.2"), "{text}");
    let json = cli(
        &["status", "--json", "-c", cfg.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    assert_eq!(v["pools"][1]["online"], 2, "{v}");

    // From the VIP to the hub, and from pod to pod through the hub.
    for addr in [ip(HUB_V4), ip(HUB_V6), v1[0], v1[1]] {
        assert!(ping(lab.star.client(0), addr, 2, PING_WAIT), "ping {addr}");
    }
    assert!(ping(lab.star.client(1), v0[1], 2, PING_WAIT), "ping back");
    transfer(&lab, 0, None, ip(HUB_V4), 5001);
    transfer(&lab, 0, Some(1), v1[0], 5002);
    transfer(&lab, 1, Some(0), v0[1], 5003);

    // An IKE rekey and a child rekey keep the address on the device and in use.
    let first = lab.client(0).status().unwrap().ike_sas[0].id;
    for ike in [true, false] {
        command(
            lab.client(0),
            Request::Rekey {
                conn: CONN.into(),
                child: None,
                ike,
            },
        );
    }
    wait_status(lab.client(0), "client 0's IKE SA rekeyed", |s| {
        (s.ike_sas.len() == 1 && s.ike_sas[0].id != first && s.ike_sas[0].local_vips.len() == 2)
            .then_some(())
    });
    assert!(lab.tun_addrs(0).contains("10.173.0.1/32"), "VIP kept");
    assert_eq!(lab.leases("pods"), (2, 0));
    assert!(
        ping(lab.star.client(0), v1[0], 2, PING_WAIT),
        "after rekeys"
    );

    // Gone and back: the lease waits offline for the same identity.
    command(lab.client(0), Request::Terminate { conn: CONN.into() });
    lab.wait_leases("pods", (1, 1));
    wait_status(lab.client(0), "client 0's VIP off the TUN", |_| {
        (!lab.tun_addrs(0).contains("10.173.0.1/32")).then_some(())
    });
    command(
        lab.client(0),
        Request::Initiate {
            conn: CONN.into(),
            child: None,
        },
    );
    assert_eq!(lab.wait_vips(0, 2), v0, "same VIPs after reconnecting");

    // A restart: the new daemon's INITIAL_CONTACT takes the old lease back.
    lab.kill_client(1);
    lab.start_client(1, &["0.0.0.0", "::"]);
    assert_eq!(lab.wait_vips(1, 2), v1, "same VIPs after a restart");
    lab.wait_leases("pods", (2, 0));
    assert!(
        ping(lab.star.client(0), v1[0], 3, PING_WAIT),
        "pod to pod again"
    );
}

#[test]
fn a_pool_smaller_than_its_clients_fails_only_the_extra_one() {
    let mut lab = Lab::new(3, "10.173.0.1-10.173.0.2", None);
    lab.start_client(0, &["0.0.0.0"]);
    let v0 = lab.wait_vips(0, 1);
    lab.start_client(1, &["0.0.0.0"]);
    let v1 = lab.wait_vips(1, 1);
    lab.start_client(2, &["0.0.0.0"]);
    wait_status(lab.client(2), "client 2 refused", |s| {
        let e = s.connections.iter().find_map(|c| c.last_error.clone())?;
        e.contains("INTERNAL_ADDRESS_FAILURE").then_some(())
    });
    let hub_log = lab.hub().log();
    assert!(
        hub_log.contains("no virtual IP for 'CN=pod2.esprit.test'")
            || hub_log.contains("no virtual IP for 'pod2.esprit.test'"),
        "{hub_log}"
    );
    assert_eq!(lab.leases("pods"), (2, 0));
    assert!(
        !lab.tun_addrs(2).contains("10.173.0."),
        "client 2 has no VIP"
    );
    // The others are not disturbed.
    assert_eq!(lab.wait_vips(0, 1), v0);
    assert!(ping(lab.star.client(0), v1[0], 2, PING_WAIT), "pod to pod");
    assert!(
        ping(lab.star.client(1), ip(HUB_V4), 2, PING_WAIT),
        "to the hub"
    );
}

/// Bit 12 of the capability sets is CAP_NET_ADMIN.
fn has_net_admin(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(eff, 16).unwrap() & (1 << 12) != 0
}

/// A client on a TUN device prepared for it, without CAP_NET_ADMIN: it cannot put its
/// address on the device, so it says so, shows it in status and hands it to its updown
/// script as PLUTO_MY_SOURCEIP (which could configure it).
#[test]
fn a_client_without_cap_net_admin_reports_its_vip() {
    let mut lab = Lab::new(1, "10.173.0.0/24", None);
    let ns = lab.star.client(0);
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "esprit0"])
        .unwrap();
    ns.ip(&["link", "set", "esprit0", "up"]).unwrap();
    let d = hub::dir(&lab.star, "c0");
    let seen = d.join("updown.out");
    let updown = format!(
        "updown = \"echo $PLUTO_VERB $PLUTO_MY_SOURCEIP >> {}\"\n",
        seen.display()
    );
    let toml = hub::client_toml(&d, &lab.star, 0, &["0.0.0.0"]).replace(
        "start_action = \"start\"\n",
        &format!("start_action = \"start\"\n{updown}"),
    );
    let config = d.join("esprit.toml");
    std::fs::write(&config, toml).unwrap();
    let daemon = esprit::testbed::esprit::Daemon::start_wrapped(
        &[
            "setpriv",
            "--bounding-set",
            "-net_admin",
            "--inh-caps",
            "-net_admin",
        ],
        common::exe(),
        ns,
        &config,
        &d,
    )
    .unwrap();
    assert!(
        !has_net_admin(daemon.proc.pid()),
        "setpriv left CAP_NET_ADMIN"
    );
    lab.clients[0] = Some(daemon);
    assert_eq!(lab.wait_vips(0, 1), [ip("10.173.0.1")]);
    let log = lab.client(0).log();
    assert!(
        log.contains("cannot put virtual IP 10.173.0.1 on esprit0"),
        "{log}"
    );
    assert!(
        !lab.tun_addrs(0).contains("10.173.0.1"),
        "not on the device"
    );
    let out = wait_status(lab.client(0), "the updown script ran", |_| {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|s| !s.is_empty())
    });
    // One call per selector pair (the remote side has an IPv6 subnet too); each one
    // names the address.
    assert!(out.lines().all(|l| l == "up-client 10.173.0.1"), "{out}");
}
