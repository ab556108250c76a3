//! End-to-end: BGP over a route-based esprit tunnel (issue 15). Two esprit daemons join
//! their `ss0` devices (169.254.100.1/30 <-> .2) with 0.0.0.0/0 selectors; FRR's bgpd on
//! each end peers with the other over those link addresses (eBGP, AS 65001 and 65002)
//! and advertises its side's inner subnet; zebra installs what it learns into the kernel
//! via ss0 with the side's inner address as source. esprit itself installs no route: the
//! traffic between the subnets follows BGP's routes into the tunnel. When b's esprit
//! stops the route goes; when it starts again a's `close_action = "start"` brings the
//! tunnel back and BGP the route.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use engine::status::{ChildSaStatus, Status};
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{ping, tcp_transfer, wait_ok, Frr, FrrConfig, Netns, Topology};

const SETUP: Duration = Duration::from_secs(20);
/// BGP comes up once the tunnel carries its TCP session; with `timers connect 1` the
/// first retry after the tunnel is up is at most a second away.
const BGP_UP: Duration = Duration::from_secs(30);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

/// One side's esprit configuration: the route-based connection `cloud` on ss0.
fn esprit_config(dir: &Path, me: IpAddr, peer: IpAddr, side: u8, start: &str) -> String {
    let other = 3 - side;
    format!(
        r#"
[daemon]
control_socket = "{sock}"
keepalive = "0s"

[connections.cloud]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
tun = "ss0"
tun_addrs = ["169.254.100.{side}/30"]
[connections.cloud.local]
auth = "psk"
id = "cloud.{side}"
[connections.cloud.remote]
auth = "psk"
id = "cloud.{other}"
[connections.cloud.children.vti]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
esp_proposals = ["aes128gcm16"]
start_action = "{start}"
close_action = "{start}"

[secrets.ike-all]
secret = "bgp over esprit test secret, long enough"
"#,
        sock = dir.join("esprit.sock").display(),
    )
}

fn start(ns: &Netns, dir: &Path, toml: &str) -> Daemon {
    Daemon::start_toml(exe(), ns, dir, toml).expect("esprit")
}

fn child(s: &Status) -> Option<&ChildSaStatus> {
    s.ike_sas
        .iter()
        .filter(|sa| sa.conn == "cloud" && sa.state == "ESTABLISHED")
        .flat_map(|sa| sa.children.iter())
        .next()
}

fn wait_child(d: &Daemon) {
    wait_ok(
        "the route-based child SA",
        SETUP,
        Duration::from_millis(50),
        || {
            let s = d.status()?;
            child(&s)
                .map(|_| ())
                .ok_or_else(|| std::io::Error::other(format!("not yet: {s}")))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- log ---\n{}", d.log()));
}

/// Waits until the kernel routes `prefix` the way `expect` says (a substring of `ip
/// route show PREFIX`), i.e. zebra installed BGP's route.
fn wait_kernel_route(ns: &Netns, prefix: &str, expect: &str, frr: &Frr) -> String {
    wait_ok(
        &format!("kernel route {prefix} {expect}"),
        BGP_UP,
        Duration::from_millis(100),
        || {
            let r = ns.ip(&["route", "show", prefix])?;
            if r.contains(expect) {
                Ok(r)
            } else {
                Err(std::io::Error::other(format!("route now: {r:?}")))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- zebra ---\n{}", frr.log("zebra")))
}

#[test]
fn bgp_over_a_route_based_tunnel_routes_the_subnets_through_it() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());
    // Each side's subnet is anchored by a blackhole route (its own address 10.96.x.1 is
    // on lo), which `network 10.96.x.0/24` needs in the RIB to announce it.
    for (ns, side) in [(a, 1), (b, 2)] {
        ns.ip(&["route", "add", "blackhole", &format!("10.96.{side}.0/24")])
            .expect("anchor route");
    }
    let frr_a = Frr::start(a, &topo.dir().join("frr-a"), &FrrConfig::two_sites(1)).expect("frr a");
    let frr_b = Frr::start(b, &topo.dir().join("frr-b"), &FrrConfig::two_sites(2)).expect("frr b");
    let (da, db) = (topo.dir().join("a"), topo.dir().join("b"));
    let mut dmn_b = start(
        b,
        &db,
        &esprit_config(&db, topo.b_addr(), topo.a_addr(), 2, "none"),
    );
    let mut dmn_a = start(
        a,
        &da,
        &esprit_config(&da, topo.a_addr(), topo.b_addr(), 1, "start"),
    );
    wait_child(&dmn_a);
    wait_child(&dmn_b);

    let (link_a, link_b): (IpAddr, IpAddr) = (
        "169.254.100.1".parse().unwrap(),
        "169.254.100.2".parse().unwrap(),
    );
    frr_a.wait_established(link_b, BGP_UP).expect("a's session");
    frr_b.wait_established(link_a, BGP_UP).expect("b's session");
    // Each bgpd learnt the other's subnet with the peer's link address as next hop ...
    frr_a
        .wait_bgp_nexthop("10.96.2.0/24", link_b, BGP_UP)
        .expect("a learnt b's subnet");
    frr_b
        .wait_bgp_nexthop("10.96.1.0/24", link_a, BGP_UP)
        .expect("b learnt a's subnet");
    // ... and zebra put it into the kernel through ss0 (esprit routes nothing itself).
    let ra = wait_kernel_route(
        a,
        "10.96.2.0/24",
        "via 169.254.100.2 dev ss0 proto bgp",
        &frr_a,
    );
    assert!(ra.contains("src 10.96.1.1"), "{ra}");
    wait_kernel_route(
        b,
        "10.96.1.0/24",
        "via 169.254.100.1 dev ss0 proto bgp",
        &frr_b,
    );

    let before = child(&dmn_a.status().expect("status"))
        .expect("child")
        .clone();
    assert!(
        ping(a, "10.96.2.1".parse().unwrap(), 3, Duration::from_secs(5)),
        "ping 10.96.2.1 along the BGP route failed\n{}",
        dmn_a.log()
    );
    let t = tcp_transfer(
        a,
        b,
        "10.96.2.1".parse().unwrap(),
        5201,
        10_000_000,
        Duration::from_secs(60),
    )
    .expect("transfer along the BGP route");
    assert!(t.intact(), "{t:?}");
    let s = dmn_a.status().expect("status");
    let after = child(&s).expect("child");
    assert!(
        after.bytes_out >= before.bytes_out + 10_000_000,
        "the transfer did not cross the tunnel's SA: {before:?} -> {after:?}"
    );
    // The session was up the whole time: the transfer did not disturb BGP.
    assert_eq!(
        frr_a.peer_state(link_b).unwrap().as_deref(),
        Some("Established")
    );

    // When b's tunnel end goes away, b's bgpd loses its next hop's interface at once and
    // drops the session (fast external failover); a's hold timer (9 s) ends a's side and
    // zebra takes the route out of a's kernel.
    dmn_b.proc.stop().expect("stop b");
    wait_ok(
        "a's BGP route to 10.96.2.0/24 withdrawn",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let r = a.ip(&["route", "show", "10.96.2.0/24"])?;
            if r.trim().is_empty() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("still {r:?}")))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- bgpd a ---\n{}", frr_a.log("bgpd")));

    // b comes back: a's `close_action = "start"` (b's shutdown deleted the SAs) has a
    // negotiating again, BGP reconnects over the new child SA and the route returns.
    let mut dmn_b = start(
        b,
        &db,
        &esprit_config(&db, topo.b_addr(), topo.a_addr(), 2, "none"),
    );
    wait_child(&dmn_a);
    frr_a
        .wait_established(link_b, BGP_UP)
        .expect("a's session again");
    wait_kernel_route(
        a,
        "10.96.2.0/24",
        "via 169.254.100.2 dev ss0 proto bgp",
        &frr_a,
    );
    assert!(
        ping(a, "10.96.2.1".parse().unwrap(), 3, Duration::from_secs(5)),
        "ping after b's restart failed\n{}",
        dmn_a.log()
    );
    dmn_b.proc.stop().expect("stop b");
    dmn_a.proc.stop().expect("stop a");
    drop((frr_a, frr_b));
}
