//! Route-based tunnel between esprit and charon 5.9.8 (kernel-libipsec), with BGP over it.
//!
//! charon with kernel-libipsec has one TUN device, `ipsec0`, for all its child SAs: what
//! is written into it is matched against libipsec's own policies (the child SAs'
//! selectors), and what it decrypts comes out of it. So ipsec0 can serve as the tunnel
//! device of a route-based peer, and the test puts the link address 169.254.100.2/30 on
//! it (charon never addresses it), as one would on a VTI.
//!
//! The catch: kernel-libipsec 5.9.8 ignores `charon.install_routes` (only the XFRM
//! backend reads it) and always routes each child's remote selector into ipsec0 in
//! charon's routing table, with a `throw` route for the IKE peer; for 0.0.0.0/0 that
//! is `default dev ipsec0`, and with charon's rule at its usual priority 220 it would
//! take every packet before the main table. The honest route-based equivalent here moves
//! that table behind the main one (`routing_table = 221`, `routing_table_prio = 40000`,
//! after main's 32766): the routes in main, i.e. the connected routes and what zebra
//! installs from BGP, decide; charon's catch-all only gets what main has no route for.
//!
//! What libipsec cannot give: a second route-based tunnel in the same charon. Every
//! child SA shares ipsec0 and libipsec has no marks or interface IDs (`if_id_in/out`
//! need XFRM interfaces), so two 0/0 children would overlap in one SPD; one charon
//! (one ipsec0) is one route-based peer.
//!
//! FRR's bgpd on both ends peers over the link addresses (esprit side AS 65001, charon
//! side AS 65002) and each announces its inner subnet; ping and a checked TCP transfer
//! between 10.96.1.1 and 10.96.2.1 follow the routes zebra installed.

#[allow(dead_code, unreachable_pub)]
#[path = "interop/charon.rs"]
mod charon;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use charon::{Auth, Charon, Child, Conn};
use engine::status::{ChildSaStatus, Status};
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{ping, tcp_transfer, tools, wait_ok, Frr, FrrConfig, Netns, Topology};

const SECRET: &str = "esprit-charon route-based test secret";
const SETUP: Duration = Duration::from_secs(30);
const BYTES: u64 = 10_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn esprit_config(dir: &Path, me: IpAddr, peer: IpAddr) -> String {
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
tun_addrs = ["169.254.100.1/30"]
[connections.cloud.local]
auth = "psk"
id = "esprit.test"
[connections.cloud.remote]
auth = "psk"
id = "charon.test"
[connections.cloud.children.vti]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
esp_proposals = ["aes128gcm16"]
start_action = "start"

[secrets.ike-all]
secret = "{SECRET}"
"#,
        sock = dir.join("esprit.sock").display(),
    )
}

fn child(s: &Status) -> Option<&ChildSaStatus> {
    s.ike_sas
        .iter()
        .filter(|sa| sa.conn == "cloud" && sa.state == "ESTABLISHED")
        .flat_map(|sa| sa.children.iter())
        .next()
}

fn wait_route(ns: &Netns, prefix: &str, expect: &str) -> String {
    wait_ok(
        &format!("kernel route {prefix} {expect}"),
        SETUP,
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
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn esprit_and_charon_route_based_with_bgp() {
    tools::require_strongswan().unwrap_or_else(|e| panic!("{e}"));
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());
    for (ns, side) in [(a, 1), (b, 2)] {
        ns.ip(&["route", "add", "blackhole", &format!("10.96.{side}.0/24")])
            .expect("anchor route");
    }
    let conn = Conn {
        local_addr: topo.b_addr(),
        remote_addr: Some(topo.a_addr()),
        proposals: "aes128gcm16-prfsha256-x25519".into(),
        local_id: "charon.test".into(),
        remote_id: "esprit.test".into(),
        auth: Auth::Psk(SECRET.into()),
        dpd_delay: None,
        retransmit_tries: 3,
        children: vec![Child {
            name: "vti".into(),
            local_ts: vec!["0.0.0.0/0".into()],
            remote_ts: vec!["0.0.0.0/0".into()],
            esp_proposals: "aes128gcm16".into(),
        }],
    };
    let sw = Charon::start_conf(
        b,
        &topo.dir().join("charon"),
        &conn,
        &conn.swanctl_conf(),
        "routing_table = 221\nrouting_table_prio = 40000",
    )
    .expect("charon");
    // kernel-libipsec made ipsec0 when it loaded; it becomes the link of the tunnel.
    b.ip(&["addr", "add", "169.254.100.2/30", "dev", "ipsec0"])
        .expect("link address on ipsec0");
    let frr_a = Frr::start(a, &topo.dir().join("frr-a"), &FrrConfig::two_sites(1)).expect("frr a");
    let frr_b = Frr::start(b, &topo.dir().join("frr-b"), &FrrConfig::two_sites(2)).expect("frr b");

    let da = topo.dir().join("esprit");
    std::fs::create_dir_all(&da).expect("dir");
    let cfg = da.join("esprit.toml");
    std::fs::write(&cfg, esprit_config(&da, topo.a_addr(), topo.b_addr())).expect("config");
    let mut dmn =
        Daemon::start_with(Path::new(env!("CARGO_BIN_EXE_esprit")), a, &cfg, &da).expect("esprit");
    wait_ok(
        "the route-based child SA",
        SETUP,
        Duration::from_millis(50),
        || {
            let s = dmn.status()?;
            child(&s)
                .map(|_| ())
                .ok_or_else(|| std::io::Error::other(format!("not yet: {s}")))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- esprit ---\n{}\n--- charon ---\n{}",
            dmn.log(),
            sw.log()
        )
    });

    // charon's catch-all sits behind the main table.
    let t221 = b.ip(&["route", "show", "table", "221"]).expect("table 221");
    assert!(t221.contains("default dev ipsec0"), "{t221}");
    let rules = b.ip(&["rule", "show"]).expect("ip rule");
    assert!(rules.contains("40000:\tfrom all lookup 221"), "{rules}");

    frr_a
        .wait_established(ip("169.254.100.2"), SETUP)
        .unwrap_or_else(|e| panic!("{e}\n--- charon ---\n{}", sw.log()));
    frr_b
        .wait_established(ip("169.254.100.1"), SETUP)
        .expect("charon side's session");
    let ra = wait_route(a, "10.96.2.0/24", "via 169.254.100.2 dev ss0 proto bgp");
    assert!(ra.contains("src 10.96.1.1"), "{ra}");
    let rb = wait_route(b, "10.96.1.0/24", "via 169.254.100.1 dev ipsec0 proto bgp");
    assert!(rb.contains("src 10.96.2.1"), "{rb}");

    let before = child(&dmn.status().expect("status"))
        .expect("child")
        .clone();
    assert!(
        ping(a, ip("10.96.2.1"), 3, Duration::from_secs(5)),
        "ping 10.96.2.1 through charon's ipsec0 failed\n{}",
        sw.log()
    );
    for (from, to, addr) in [(a, b, "10.96.2.1"), (b, a, "10.96.1.1")] {
        let t = tcp_transfer(from, to, ip(addr), 5301, BYTES, Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("TCP to {addr}: {e}"));
        assert!(t.intact(), "{t:?}");
    }
    let after = child(&dmn.status().expect("status"))
        .expect("child")
        .clone();
    assert!(
        after.bytes_out >= before.bytes_out + BYTES && after.bytes_in >= before.bytes_in + BYTES,
        "the transfers did not cross the route-based SA: {before:?} -> {after:?}"
    );
    dmn.proc.stop().expect("stop esprit");
    drop((frr_a, frr_b, sw));
}
