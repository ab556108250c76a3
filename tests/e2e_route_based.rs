//! End-to-end: route-based connections (issue 15). A connection with `tun = "ss0"` and
//! 0.0.0.0/0 selectors on both ends gets its own TUN device with its link address and
//! no routes from esprit; what the test routes into that device (as a routing daemon
//! would) crosses that connection's SA only, and comes out of the peer's device. A
//! policy-based connection in the same daemons keeps working through `[tun]`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use engine::status::Status;
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{ping, tcp_transfer, wait_ok, Netns, Topology};

const SETUP: Duration = Duration::from_secs(20);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

/// One side's configuration: `policy` (10.97.x.0/24, through esprit0) and `cloud`
/// (route-based on ss0, 0.0.0.0/0 both ways).
fn config(dir: &Path, me: IpAddr, peer: IpAddr, side: u8, start: &str) -> String {
    let other = 3 - side;
    format!(
        r#"
[daemon]
control_socket = "{sock}"
keepalive = "0s"
[tun]
name = "esprit0"
mtu = 1400

[connections.policy]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.policy.local]
auth = "psk"
id = "policy.{side}"
[connections.policy.remote]
auth = "psk"
id = "policy.{other}"
[connections.policy.children.net]
local_ts = ["10.97.{side}.0/24"]
remote_ts = ["10.97.{other}.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "{start}"

[connections.cloud]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
tun = "ss0"
tun_addrs = ["169.254.100.{side}/30"]
tun_mtu = 1380
[connections.cloud.local]
auth = "psk"
id = "cloud.{side}"
[connections.cloud.remote]
auth = "psk"
id = "cloud.{other}"
[connections.cloud.children.vti]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
esp_proposals = ["aes256gcm16"]
start_action = "{start}"

[secrets.ike-all]
secret = "route-based test secret, long enough"
"#,
        sock = dir.join("esprit.sock").display(),
    )
}

fn start(ns: &Netns, dir: &Path, toml: &str) -> Daemon {
    Daemon::start_toml(exe(), ns, dir, toml).expect("esprit")
}

fn child<'a>(s: &'a Status, conn: &str) -> Option<&'a engine::status::ChildSaStatus> {
    s.ike_sas
        .iter()
        .filter(|sa| sa.conn == conn && sa.state == "ESTABLISHED")
        .flat_map(|sa| sa.children.iter())
        .next()
}

fn wait_both(d: &Daemon) -> Status {
    wait_ok(
        "both connections' child SAs",
        SETUP,
        Duration::from_millis(50),
        || {
            let s = d.status()?;
            if child(&s, "policy").is_some() && child(&s, "cloud").is_some() {
                Ok(s)
            } else {
                Err(std::io::Error::other(format!("not yet: {s}")))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- log ---\n{}", d.log()))
}

#[test]
fn route_based_connection_carries_what_is_routed_into_its_device() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());
    let da = topo.dir().join("a");
    let db = topo.dir().join("b");
    let mut dmn_b = start(
        b,
        &db,
        &config(&db, topo.b_addr(), topo.a_addr(), 2, "none"),
    );
    // Every notice of an address change in a, from before its esprit makes ss0.
    std::fs::create_dir_all(&da).expect("dir");
    let notices = da.join("ip-monitor.log");
    let _monitor = a
        .spawn(&["ip", "monitor", "address"], &[], &notices)
        .expect("ip monitor");
    let mut dmn_a = start(
        a,
        &da,
        &config(&da, topo.a_addr(), topo.b_addr(), 1, "start"),
    );
    wait_both(&dmn_a);
    wait_both(&dmn_b);

    // esprit made ss0 with its link address and MTU, and routed nothing through it but
    // the kernel's own prefix route.
    let link = a
        .ip(&["-o", "addr", "show", "dev", "ss0"])
        .expect("ip addr");
    assert!(link.contains("169.254.100.1/30"), "{link}");
    let mtu = a
        .ip(&["-o", "link", "show", "dev", "ss0"])
        .expect("ip link");
    assert!(mtu.contains("mtu 1380") && mtu.contains(",UP"), "{mtu}");
    let routes = a.ip(&["route", "show", "dev", "ss0"]).expect("ip route");
    assert_eq!(
        routes.trim(),
        "169.254.100.0/30 proto kernel scope link src 169.254.100.1",
        "esprit must install no routes on a route-based device"
    );

    // The kernel announced the link address again after the device was made (for
    // routing daemons that missed the first notice): two notices or more, of which at
    // most one is the address being added.
    wait_ok(
        "ss0's address announced again",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || {
            let log = std::fs::read_to_string(&notices)?;
            let n = log.matches("inet 169.254.100.1/30").count();
            if n >= 2 {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("{n} notice(s):\n{log}")))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The link addresses reach each other through the tunnel.
    let b_link: IpAddr = "169.254.100.2".parse().unwrap();
    assert!(
        ping(a, b_link, 3, Duration::from_secs(5)),
        "ping 169.254.100.2 over ss0 failed\n{}",
        dmn_a.log()
    );
    // The routing daemon's part: b's subnet via a's ss0, and back.
    a.ip(&[
        "route",
        "add",
        "10.96.2.0/24",
        "dev",
        "ss0",
        "src",
        "10.96.1.1",
    ])
    .expect("route a");
    b.ip(&[
        "route",
        "add",
        "10.96.1.0/24",
        "dev",
        "ss0",
        "src",
        "10.96.2.1",
    ])
    .expect("route b");
    let before = child(&dmn_a.status().expect("status"), "cloud")
        .expect("cloud child")
        .clone();
    let t = tcp_transfer(
        a,
        b,
        "10.96.2.1".parse().unwrap(),
        5201,
        20_000_000,
        Duration::from_secs(60),
    )
    .expect("transfer over ss0");
    assert!(t.intact(), "{t:?}");
    let s = dmn_a.status().expect("status");
    let after = child(&s, "cloud").expect("cloud child");
    assert_eq!(after.spi_in, before.spi_in);
    assert!(
        after.bytes_out >= before.bytes_out + 20_000_000,
        "the transfer did not go through the route-based SA: {before:?} -> {after:?}"
    );
    // The policy-based connection beside it works through esprit0, and its traffic
    // does not touch the route-based SA.
    let cloud_out = after.bytes_out;
    let policy_before = child(&s, "policy").expect("policy child").bytes_out;
    assert!(
        ping(a, "10.97.2.1".parse().unwrap(), 3, Duration::from_secs(5)),
        "policy-based ping failed\n{}",
        dmn_a.log()
    );
    let s = dmn_a.status().expect("status");
    assert!(child(&s, "policy").expect("policy").bytes_out > policy_before);
    assert!(
        child(&s, "cloud").expect("cloud").bytes_out < cloud_out + 1000,
        "policy-based traffic leaked into the route-based SA"
    );

    // A stopped daemon takes its device with it.
    dmn_a.proc.stop().expect("stop a");
    wait_ok(
        "ss0 gone",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || match a.ip(&["-o", "link", "show", "dev", "ss0"]) {
            Ok(s) if !s.trim().is_empty() => Err(format!("still there: {s}")),
            _ => Ok(()),
        },
    )
    .expect("ss0 removed");
    dmn_b.proc.stop().expect("stop b");
}
