//! End-to-end IKE mediation (seed 001's setup): an esprit mediation server on a public
//! segment, two esprit peers each behind its own NAT router with a stateful firewall.
//! Both peers register; a's mediated connection asks the server for b, the
//! connectivity checks punch through both NATs, and the direct tunnel carries ping and
//! a checked TCP transfer peer to peer, past the server, and outlives it.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

#[allow(dead_code, unreachable_pub)]
#[path = "interop/charon.rs"]
mod charon;

use charon::Charon;
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{
    http_get, ping, tcp_transfer, tools, wait_ok, KeyKind, MediationTopology, Netns, Pki,
};

/// The esprit binary under test.
fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

const SETUP: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const TRANSFER: u64 = 10_000_000;

fn dn(cn: &str) -> String {
    format!("C=CN, O=Local Cluster, CN={cn}")
}

fn header(dir: &Path) -> String {
    format!(
        "[daemon]\ncontrol_socket = {:?}\nkeepalive = \"2s\"\nretransmit_timeout = \"1s\"\n\
         retransmit_tries = 3\n[tun]\nname = \"esprit0\"\nmtu = 1400\n",
        dir.join("esprit.sock").to_string_lossy()
    )
}

fn server_toml(dir: &Path, addr: IpAddr) -> String {
    format!(
        "{}[connections.medsrv]\nlocal_addrs = [\"{addr}\"]\nmediation = true\n\
         [connections.medsrv.local]\nauth = \"psk\"\nid = {:?}\n\
         [connections.medsrv.remote]\nauth = \"psk\"\n\
         [secrets.ike-med]\nsecret = \"med secret\"\n",
        header(dir),
        dn("medsrv")
    )
}

/// A peer: "medsrv" registers at the server, "peer" is mediated by it.
fn peer_toml(
    dir: &Path,
    addr: IpAddr,
    server: IpAddr,
    (me, other): (&str, &str),
    (ours, theirs): (&str, &str),
    start: &str,
) -> String {
    format!(
        "{h}[connections.medsrv]\nlocal_addrs = [\"{addr}\"]\nremote_addrs = [\"{server}\"]\n\
         mediation = true\n\
         [connections.medsrv.local]\nauth = \"psk\"\nid = {me:?}\n\
         [connections.medsrv.remote]\nauth = \"psk\"\nid = {srv:?}\n\
         [connections.peer]\nlocal_addrs = [\"{addr}\"]\nmediated_by = \"medsrv\"\n\
         dpd_delay = \"2s\"\n\
         [connections.peer.local]\nauth = \"psk\"\nid = {me:?}\n\
         [connections.peer.remote]\nauth = \"psk\"\nid = {other:?}\n\
         [connections.peer.children.net]\nlocal_ts = [\"{ours}\"]\nremote_ts = [\"{theirs}\"]\n\
         start_action = \"{start}\"\ndpd_action = \"{dpd}\"\n\
         [secrets.ike-med]\nid = [{me:?}, {srv:?}]\nsecret = \"med secret\"\n\
         [secrets.ike-peer]\nid = [{me:?}, {other:?}]\nsecret = \"peer secret\"\n",
        h = header(dir),
        dpd = if start == "start" { "restart" } else { "clear" },
        me = dn(me),
        other = dn(other),
        srv = dn("medsrv"),
    )
}

fn start(ns: &Netns, dir: &Path, toml: String) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("esprit.toml");
    std::fs::write(&config, toml).unwrap();
    Daemon::start_with(exe(), ns, &config, dir).expect("daemon starts")
}

fn logs(daemons: &[(&str, &Daemon)]) -> String {
    let mut out = String::new();
    for (name, d) in daemons {
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        out.push_str(&format!("--- {name} ---\n"));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// esprit as the mediation server in `topo` (with `[metrics]` if `metrics`).
fn esprit_server(topo: &MediationTopology, metrics: bool) -> Daemon {
    let dir = topo.dir().join("s");
    let toml = server_toml(&dir, topo.s_addr());
    start(
        topo.s(),
        &dir,
        if metrics { with_metrics(toml) } else { toml },
    )
}

/// esprit peer b ("edge2"), which waits to be called (`start_action` "none").
fn esprit_b(topo: &MediationTopology) -> Daemon {
    let dir = topo.dir().join("b");
    let toml = peer_toml(
        &dir,
        topo.b_addr(),
        topo.s_addr(),
        ("edge2", "edge1"),
        ("10.96.2.0/24", "10.96.1.0/24"),
        "none",
    );
    start(topo.b(), &dir, toml)
}

/// esprit peer a ("edge1"), which starts the mediated tunnel to b (with `[metrics]`
/// if `metrics`).
fn esprit_a(topo: &MediationTopology, metrics: bool) -> Daemon {
    let dir = topo.dir().join("a");
    let toml = peer_toml(
        &dir,
        topo.a_addr(),
        topo.s_addr(),
        ("edge1", "edge2"),
        ("10.96.1.0/24", "10.96.2.0/24"),
        "start",
    );
    start(
        topo.a(),
        &dir,
        if metrics { with_metrics(toml) } else { toml },
    )
}

/// Waits until `server` has `n` peers registered; on time-out panics with the logs
/// of `all`.
fn wait_registered(server: &Daemon, n: usize, all: &[(&str, &Daemon)]) {
    wait_ok("the peers registered at the server", SETUP, POLL, || {
        let s = server.status()?;
        (s.mediation.registered_peers.len() == n)
            .then_some(())
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(all)));
}

/// Bytes the server's link received so far.
fn server_rx(topo: &MediationTopology) -> u64 {
    let s = topo
        .s()
        .run_stdout(&["cat", "/sys/class/net/eth0/statistics/rx_bytes"])
        .unwrap();
    s.trim().parse().unwrap()
}

#[test]
fn esprit_in_all_three_roles_punches_through_two_nats() {
    let topo = MediationTopology::new().expect("topology");
    let server = esprit_server(&topo, false);
    let b = esprit_b(&topo);
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let a = esprit_a(&topo, false);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let started = std::time::Instant::now();
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    eprintln!(
        "a: mediated tunnel up {:?} after start\n{status}",
        started.elapsed()
    );

    // Registrations and the chosen pair: b's public address, on the NAT-T port.
    let s = server.status().unwrap();
    let mut ids: Vec<String> = s
        .mediation
        .registered_peers
        .iter()
        .map(|p| p.id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, [dn("edge1"), dn("edge2")], "{s}");
    let path = &status.mediation.paths;
    assert_eq!(path.len(), 1, "{status}");
    assert_eq!(path[0].conn, "peer");
    assert_eq!(
        path[0].remote_addr,
        format!("{}[4500]", topo.b_public()),
        "{status}"
    );
    let med = status
        .ike_sas
        .iter()
        .find(|sa| sa.conn == "medsrv")
        .unwrap();
    assert!(med.mediation, "{status}");
    assert_eq!(
        med.server_reflexive.as_deref(),
        Some(format!("{}[4500]", topo.a_public()).as_str()),
        "{status}"
    );
    let direct = status.ike_sas.iter().find(|sa| sa.conn == "peer").unwrap();
    assert_eq!(direct.remote_addr, format!("{}[4500]", topo.b_public()));
    let sb = b.status().unwrap();
    let direct_b = sb
        .ike_sas
        .iter()
        .find(|sa| sa.conn == "peer")
        .expect("b has the SA");
    assert_eq!(
        direct_b.remote_addr,
        format!("{}[4500]", topo.a_public()),
        "{sb}"
    );
    // b knows the pair too, and shows it.
    assert_eq!(sb.mediation.paths.len(), 1, "{sb}");
    assert_eq!(
        sb.mediation.paths[0].remote_addr,
        format!("{}[4500]", topo.a_public())
    );

    // Ping and a checked transfer between the subnets, peer to peer: the server's link
    // sees a few keepalives, not the transfer.
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping {to}\n{}",
        logs(&all)
    );
    let rx_before = server_rx(&topo);
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5101,
        TRANSFER,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer: {e}\n{}", logs(&all)));
    assert_eq!(t.sent_sha256, t.recv_sha256);
    assert_eq!(t.bytes, TRANSFER);
    let rx = server_rx(&topo) - rx_before;
    assert!(
        rx < 100_000,
        "the server's link received {rx} bytes during the transfer"
    );

    // The server goes away; the direct tunnel does not need it.
    drop(server);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping after the server left\n{}",
        logs(&[("a", &a), ("b", &b)])
    );
    let s = a.status().unwrap();
    assert!(
        s.ike_sas
            .iter()
            .any(|sa| sa.conn == "peer" && sa.state == "ESTABLISHED"),
        "{s}"
    );
}

/// Who plays a role in the interop cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Esprit,
    Charon,
}

/// A running node of either kind.
enum Node {
    Esprit(Daemon),
    Charon(Charon),
}

impl Node {
    fn log(&self) -> String {
        match self {
            Node::Esprit(d) => d.log(),
            Node::Charon(c) => c.log(),
        }
    }
}

const IKE: &str = "aes128gcm16-prfsha256-x25519";

fn charon_conn(local: IpAddr) -> charon::Conn {
    charon::Conn {
        local_addr: local,
        remote_addr: None,
        proposals: IKE.into(),
        local_id: String::new(),
        remote_id: String::new(),
        auth: charon::Auth::Psk(String::new()),
        dpd_delay: None,
        retransmit_tries: 3,
        children: Vec::new(),
    }
}

fn charon_server_conf(addr: IpAddr) -> String {
    format!(
        "connections {{\n  medsrv {{\n    version = 2\n    local_addrs = {addr}\n    \
         proposals = {IKE}\n    mediation = yes\n    local {{\n      auth = psk\n      \
         id = \"{}\"\n    }}\n    remote {{\n      auth = psk\n    }}\n  }}\n}}\n\
         secrets {{\n  ike-1 {{\n    secret = \"med secret\"\n  }}\n}}\n",
        dn("medsrv")
    )
}

/// charon 5.9.8 crashes loading a mediated connection without `mediation_peer`
/// (vici reads the remote auth round as the wrong type; strongSwan #1569, fixed in
/// 5.9.11), so it is always given.
fn charon_peer_conf(
    addr: IpAddr,
    server: IpAddr,
    (me, other): (&str, &str),
    (ours, theirs): (&str, &str),
) -> String {
    let (me, other, srv) = (dn(me), dn(other), dn("medsrv"));
    format!(
        "connections {{\n  medsrv {{\n    version = 2\n    local_addrs = {addr}\n    \
         remote_addrs = {server}\n    proposals = {IKE}\n    mediation = yes\n    \
         local {{\n      auth = psk\n      id = \"{me}\"\n    }}\n    \
         remote {{\n      auth = psk\n      id = \"{srv}\"\n    }}\n  }}\n  \
         peer {{\n    version = 2\n    local_addrs = {addr}\n    proposals = {IKE}\n    \
         mediated_by = medsrv\n    mediation_peer = \"{other}\"\n    \
         local {{\n      auth = psk\n      id = \"{me}\"\n    }}\n    \
         remote {{\n      auth = psk\n      id = \"{other}\"\n    }}\n    children {{\n      \
         net {{\n        local_ts = {ours}\n        remote_ts = {theirs}\n        \
         esp_proposals = aes128gcm16\n      }}\n    }}\n  }}\n}}\n\
         secrets {{\n  ike-1 {{\n    id-1 = \"{me}\"\n    id-2 = \"{srv}\"\n    \
         secret = \"med secret\"\n  }}\n  ike-2 {{\n    id-1 = \"{me}\"\n    id-2 = \"{other}\"\n    \
         secret = \"peer secret\"\n  }}\n}}\n"
    )
}

/// Starts the server in its role.
fn start_server(topo: &MediationTopology, who: Impl) -> Node {
    let dir = topo.dir().join("s");
    match who {
        Impl::Esprit => Node::Esprit(start(topo.s(), &dir, server_toml(&dir, topo.s_addr()))),
        Impl::Charon => Node::Charon(
            Charon::start_conf(
                topo.s(),
                &dir,
                &charon_conn(topo.s_addr()),
                &charon_server_conf(topo.s_addr()),
                "",
            )
            .expect("charon server"),
        ),
    }
}

/// Starts peer a (`initiator`) or b and registers it; esprit registers by itself.
fn start_peer(topo: &MediationTopology, who: Impl, initiator: bool) -> Node {
    let (name, ns, addr, ids, nets) = if initiator {
        (
            "a",
            topo.a(),
            topo.a_addr(),
            ("edge1", "edge2"),
            ("10.96.1.0/24", "10.96.2.0/24"),
        )
    } else {
        (
            "b",
            topo.b(),
            topo.b_addr(),
            ("edge2", "edge1"),
            ("10.96.2.0/24", "10.96.1.0/24"),
        )
    };
    let dir = topo.dir().join(name);
    match who {
        Impl::Esprit => {
            let start_action = if initiator { "start" } else { "none" };
            Node::Esprit(start(
                ns,
                &dir,
                peer_toml(&dir, addr, topo.s_addr(), ids, nets, start_action),
            ))
        }
        Impl::Charon => {
            let c = Charon::start_conf(
                ns,
                &dir,
                &charon_conn(addr),
                &charon_peer_conf(addr, topo.s_addr(), ids, nets),
                "",
            )
            .expect("charon peer");
            if !initiator {
                c.swanctl("--initiate --ike medsrv --timeout 20")
                    .unwrap_or_else(|e| panic!("charon b registers: {e}\n{}", c.log()));
            }
            Node::Charon(c)
        }
    }
}

/// Server, then b registered, then a initiating; the tunnel must carry ping both ways
/// and a checked transfer.
fn interop(server_impl: Impl, a_impl: Impl, b_impl: Impl) {
    let topo = MediationTopology::new().expect("topology");
    let server = start_server(&topo, server_impl);
    let b = start_peer(&topo, b_impl, false);
    if let Node::Esprit(server) = &server {
        wait_ok("b registered at the server", SETUP, POLL, || {
            let s = server.status()?;
            if s.mediation.registered_peers.len() == 1 {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("{s}")))
            }
        })
        .unwrap_or_else(|e| panic!("{e}\n--- b ---\n{}", b.log()));
    } else {
        // charon lists no registrations; give an esprit b its registration round trip.
        std::thread::sleep(Duration::from_secs(2));
    }
    let a = start_peer(&topo, a_impl, true);
    let dump = |what: &str| {
        format!(
            "{what}\n--- s ---\n{}\n--- a ---\n{}\n--- b ---\n{}",
            server.log(),
            a.log(),
            b.log()
        )
    };
    let started = std::time::Instant::now();
    match &a {
        Node::Esprit(d) => {
            d.wait_child("net", SETUP)
                .unwrap_or_else(|e| panic!("{}", dump(&e.to_string())));
        }
        Node::Charon(c) => {
            c.swanctl("--initiate --child net --timeout 30")
                .unwrap_or_else(|e| panic!("{}", dump(&e)));
        }
    }
    let up = started.elapsed();
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    // A charon b's libipsec installs its routes a moment after the SA.
    let pinged = (0..10).any(|_| ping(topo.a(), to, 1, Duration::from_secs(1)));
    assert!(pinged, "{}", dump(&format!("ping {to}")));
    eprintln!(
        "{server_impl:?} server, {a_impl:?} a, {b_impl:?} b: tunnel up after {up:?}, \
         first ping answered after {:?}",
        started.elapsed()
    );
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5102,
        2_000_000,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{}", dump(&format!("transfer: {e}"))));
    assert_eq!(t.sent_sha256, t.recv_sha256);
    // ESPRIT_MEDIATION_CAPTURE=DIR keeps the logs (with ESPRIT_CHARON_LOG_LEVELS, the
    // raw material of ike/tests/data/charon/mediation).
    if let Some(keep) = std::env::var_os("ESPRIT_MEDIATION_CAPTURE") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for (name, node) in [("server", &server), ("a", &a), ("b", &b)] {
            std::fs::write(keep.join(format!("{name}.log")), node.log()).unwrap();
        }
    }
}

/// charon alone, for the timing beside esprit's in the README.
#[test]
fn charon_in_all_three_roles_for_reference() {
    interop(Impl::Charon, Impl::Charon, Impl::Charon);
}

#[test]
fn esprit_in_all_three_roles_timed_like_the_others() {
    interop(Impl::Esprit, Impl::Esprit, Impl::Esprit);
}

#[test]
fn charon_server_mediates_two_esprit_peers() {
    interop(Impl::Charon, Impl::Esprit, Impl::Esprit);
}

#[test]
fn esprit_server_mediates_two_charon_peers() {
    interop(Impl::Esprit, Impl::Charon, Impl::Charon);
}

#[test]
fn esprit_initiator_charon_responder() {
    interop(Impl::Esprit, Impl::Esprit, Impl::Charon);
}

#[test]
fn charon_initiator_esprit_responder() {
    interop(Impl::Esprit, Impl::Charon, Impl::Esprit);
}

/// The peer asked for is not registered: ME_CONNECT_FAILED, and a's status says so.
#[test]
fn unregistered_peer_is_a_clear_error_in_status() {
    let topo = MediationTopology::new().expect("topology");
    let server = esprit_server(&topo, false);
    let a = esprit_a(&topo, false);
    let status = wait_ok("a's mediation failure in status", SETUP, POLL, || {
        let s = a.status()?;
        let err = s
            .connections
            .iter()
            .find(|c| c.name == "peer")
            .and_then(|c| c.last_error.clone())
            .unwrap_or_default();
        if err.contains("not registered") {
            Ok(s)
        } else {
            Err(std::io::Error::other(format!("{s}")))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[("s", &server), ("a", &a)])));
    let text = status.to_string();
    assert!(
        text.contains(&format!(
            "peer: last error: mediation with '{}' failed: peer is not registered at the mediation server",
            dn("edge2")
        )),
        "{text}"
    );
    // Registered itself, and still is: the next attempt can succeed.
    assert!(status
        .ike_sas
        .iter()
        .any(|sa| sa.conn == "medsrv" && sa.mediation));
}

/// b dies without a word and comes back: a's DPD notices, and its restart goes back
/// through the server and punches again.
#[test]
fn a_restarted_responder_is_mediated_again() {
    let topo = MediationTopology::new().expect("topology");
    let dir = topo.dir().to_path_buf();
    let server = esprit_server(&topo, false);
    let b_toml = peer_toml(
        &dir.join("b"),
        topo.b_addr(),
        topo.s_addr(),
        ("edge2", "edge1"),
        ("10.96.2.0/24", "10.96.1.0/24"),
        "none",
    );
    let mut b = start(topo.b(), &dir.join("b"), b_toml.clone());
    wait_ok("b registered", SETUP, POLL, || {
        let s = server.status()?;
        (s.mediation.registered_peers.len() == 1)
            .then_some(())
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap();
    let a = esprit_a(&topo, false);
    let first = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[("s", &server), ("a", &a), ("b", &b)])));
    let first_id = first
        .ike_sas
        .iter()
        .find(|sa| sa.conn == "peer")
        .unwrap()
        .id;

    b.proc.signal(libc::SIGKILL).unwrap();
    b.proc.wait_exit(Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_file(dir.join("b").join("esprit.sock"));
    let b = start(topo.b(), &dir.join("b"), b_toml);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let again = wait_ok(
        "a's tunnel through mediation again",
        Duration::from_secs(60),
        POLL,
        || {
            let s = a.status()?;
            let fresh = s.ike_sas.iter().any(|sa| {
                sa.conn == "peer"
                    && sa.id != first_id
                    && sa.state == "ESTABLISHED"
                    && sa.children.iter().any(|c| c.name == "net")
            });
            fresh
                .then_some(s.clone())
                .ok_or_else(|| std::io::Error::other(format!("{s}")))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    assert!(
        again
            .mediation
            .paths
            .iter()
            .any(|p| p.remote_addr == format!("{}[4500]", topo.b_public())),
        "{again}"
    );
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "{}",
        logs(&all)
    );
}

/// A connection section authenticated by RSA certificates under one CA.
fn cert_conn(name: &str, me: &str, other: Option<&str>, pki: (&Path, &Path)) -> String {
    let (cert, ca) = pki;
    let remote_id = other.map_or(String::new(), |o| format!("id = {:?}\n", dn(o)));
    format!(
        "[connections.{name}.local]\nauth = \"pubkey\"\nid = {:?}\ncerts = [{:?}]\n\
         [connections.{name}.remote]\nauth = \"pubkey\"\n{remote_id}cacerts = [{:?}]\n",
        dn(me),
        cert.to_string_lossy(),
        ca.to_string_lossy()
    )
}

/// Seed 001 with RSA certificates and DN identities: esprit in all three roles.
#[test]
fn rsa_certificates_and_dn_identities_as_in_the_seed() {
    let topo = MediationTopology::new().expect("topology");
    let dir = topo.dir().to_path_buf();
    let pki = Pki::new(KeyKind::Rsa2048).expect("pki");
    let ca = pki.write_ca(&dir).unwrap();
    let mut files = Vec::new();
    for (who, cn) in [("s", "cloud-connector"), ("a", "proxy"), ("b", "remote")] {
        let d = dir.join(who);
        std::fs::create_dir_all(&d).unwrap();
        let leaf = pki.issue(cn, cn).unwrap();
        files.push((d.clone(), leaf.write(&d, cn).unwrap()));
    }
    let key_secret =
        |key: &Path| format!("[secrets.private.me]\nfile = {:?}\n", key.to_string_lossy());
    let (s_dir, (s_cert, s_key)) = &files[0];
    let server_cfg = format!(
        "{}[connections.medsrv]\nlocal_addrs = [\"{}\"]\nmediation = true\n{}{}",
        header(s_dir),
        topo.s_addr(),
        cert_conn("medsrv", "cloud-connector", None, (s_cert, &ca)),
        key_secret(s_key)
    );
    let peer_cfg = |d: &Path,
                    cert: &Path,
                    key: &Path,
                    addr: IpAddr,
                    me: &str,
                    other: &str,
                    ours: &str,
                    theirs: &str,
                    start: &str| {
        format!(
            "{}[connections.medsrv]\nlocal_addrs = [\"{addr}\"]\nremote_addrs = [\"{}\"]\n\
             mediation = true\n{}[connections.peer]\nlocal_addrs = [\"{addr}\"]\n\
             mediated_by = \"medsrv\"\n{}[connections.peer.children.net]\n\
             local_ts = [\"{ours}\"]\nremote_ts = [\"{theirs}\"]\nstart_action = \"{start}\"\n{}",
            header(d),
            topo.s_addr(),
            cert_conn("medsrv", me, Some("cloud-connector"), (cert, &ca)),
            cert_conn("peer", me, Some(other), (cert, &ca)),
            key_secret(key)
        )
    };
    let server = start(topo.s(), s_dir, server_cfg);
    let (b_dir, (b_cert, b_key)) = &files[2];
    let b = start(
        topo.b(),
        b_dir,
        peer_cfg(
            b_dir,
            b_cert,
            b_key,
            topo.b_addr(),
            "remote",
            "proxy",
            "10.96.2.0/24",
            "10.96.1.0/24",
            "none",
        ),
    );
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let (a_dir, (a_cert, a_key)) = &files[1];
    let a = start(
        topo.a(),
        a_dir,
        peer_cfg(
            a_dir,
            a_cert,
            a_key,
            topo.a_addr(),
            "proxy",
            "remote",
            "10.96.1.0/24",
            "10.96.2.0/24",
            "start",
        ),
    );
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    let direct = status.ike_sas.iter().find(|sa| sa.conn == "peer").unwrap();
    assert_eq!(direct.remote_id, dn("remote"));
    assert_eq!(direct.remote_addr, format!("{}[4500]", topo.b_public()));
    let s = server.status().unwrap();
    let mut ids: Vec<String> = s
        .mediation
        .registered_peers
        .iter()
        .map(|p| p.id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, [dn("proxy"), dn("remote")], "{s}");
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "{}",
        logs(&all)
    );
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5103,
        2_000_000,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer: {e}\n{}", logs(&all)));
    assert_eq!(t.sent_sha256, t.recv_sha256);
}

/// Runs the esprit CLI (it reaches the daemon through the control socket named in
/// `config`, a pathname socket, so from outside the namespace) with a bound.
/// Where a daemon serves `[metrics]`, on its own namespace's loopback.
const METRICS: &str = "127.0.0.1:9108";

/// `[metrics]` for a daemon's configuration.
fn with_metrics(toml: String) -> String {
    format!("{toml}[metrics]\nlisten = {METRICS:?}\n")
}

/// `/metrics` of the daemon in `ns`, once it answers 200.
fn scrape(ns: &Netns) -> String {
    wait_ok("metrics served", SETUP, POLL, || {
        let (code, body) = http_get(ns, METRICS, "/metrics")?;
        (code == 200)
            .then_some(body)
            .ok_or_else(|| std::io::Error::other(format!("HTTP {code}")))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the series `series` (name and labels as written) in a scrape.
fn metric(text: &str, series: &str) -> u64 {
    let found: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{series} in:\n{text}");
    found[0]
}

/// `promtool check metrics` accepts `text` (a missing promtool fails, naming its
/// Debian package).
fn promtool_check(text: &str) {
    tools::promtool_check(text).unwrap_or_else(|e| panic!("{e}"));
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe())
        .args(args)
        .output()
        .expect("esprit CLI runs")
}

/// Both NATs symmetric (MASQUERADE `--random-fully`): every flow gets a new port, so
/// no pair passes the checks. After RELAY_AFTER both esprit peers ask the esprit
/// server for a relay; the tunnel comes up through it, carries ping and a checked
/// transfer, and the server only forwarded ciphertext: its relay counted the bytes,
/// its `/metrics` moved by at least what went through, and it holds no SA of the
/// tunnel.
#[test]
fn symmetric_nats_relay_esprit_peers_through_the_server() {
    let topo = MediationTopology::symmetric().expect("topology");
    let dir = topo.dir().to_path_buf();
    let server = esprit_server(&topo, true);
    let b = esprit_b(&topo);
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let a = esprit_a(&topo, true);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let started = std::time::Instant::now();
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    let up = started.elapsed();
    eprintln!("symmetric NATs: relayed tunnel up {up:?} after start\n{status}");

    // Both peers show the relayed path, to the server's relay port.
    let relay_prefix = format!("{}[", topo.s_addr());
    let path = &status.mediation.paths;
    assert_eq!(path.len(), 1, "{status}");
    assert_eq!(path[0].path, "relayed", "{status}");
    assert!(path[0].remote_addr.starts_with(&relay_prefix), "{status}");
    assert!(
        status.to_string().contains("peer: relayed path "),
        "{status}"
    );
    let sb = b.status().unwrap();
    assert_eq!(sb.mediation.paths.len(), 1, "{sb}");
    assert_eq!(sb.mediation.paths[0].path, "relayed", "{sb}");
    assert!(sb.mediation.paths[0].remote_addr.starts_with(&relay_prefix));
    // status --json says the same.
    let cfg = dir.join("a").join("esprit.toml");
    let out = cli(&["status", "--json", "-c", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["mediation"]["paths"][0]["path"], "relayed", "{json}");
    // So does a's /metrics.
    let am = scrape(topo.a());
    promtool_check(&am);
    assert_eq!(
        metric(&am, "esprit_mediated_connections{path=\"relayed\"}"),
        1
    );
    assert_eq!(
        metric(&am, "esprit_mediated_connections{path=\"direct\"}"),
        0
    );

    // Ping and a checked transfer between the subnets, through the relay, between
    // two scrapes of the server's /metrics.
    let before = scrape(topo.s());
    promtool_check(&before);
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping {to}\n{}",
        logs(&all)
    );
    const RELAYED: u64 = 4_000_000;
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5103,
        RELAYED,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer: {e}\n{}", logs(&all)));
    assert_eq!(t.sent_sha256, t.recv_sha256);
    assert_eq!(t.bytes, RELAYED);

    // The server's relay carried it, and the server never had the tunnel's keys: its
    // only IKE SAs are the two registrations, without child SAs.
    let ss = server.status().unwrap();
    let relays = &ss.mediation.relays;
    assert_eq!(relays.len(), 1, "{ss}");
    assert!(relays[0].bytes > RELAYED, "{ss}");
    assert!(relays[0].binds >= 2, "{ss}");
    assert!(relays[0].bound.iter().all(|b| !b.is_empty()), "{ss}");
    assert!(ss.ike_sas.iter().all(|sa| sa.conn == "medsrv"), "{ss}");
    assert!(ss.ike_sas.iter().all(|sa| sa.children.is_empty()), "{ss}");
    eprintln!(
        "server relay: {} bytes, {} packets, dropped {} unbound, {} over rate",
        relays[0].bytes, relays[0].packets, relays[0].dropped_unbound, relays[0].dropped_over_rate
    );

    // The server's /metrics counted the transfer: at least its payload in bytes (ESP
    // only adds to it), and at least one datagram per inner packet of at most the
    // TUN's 1400 bytes; the relay is the only one, opened once, both sides bound.
    let after = scrape(topo.s());
    promtool_check(&after);
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    let bytes = moved("esprit_relay_bytes_total");
    let datagrams = moved("esprit_relay_datagrams_total");
    assert!(
        bytes >= RELAYED,
        "{bytes} relayed bytes for {RELAYED}\n{after}"
    );
    assert!(
        datagrams >= RELAYED / 1400,
        "{datagrams} relayed datagrams for {RELAYED} bytes\n{after}"
    );
    assert_eq!(metric(&after, "esprit_relays"), 1, "{after}");
    assert_eq!(metric(&after, "esprit_relays_opened_total"), 1, "{after}");
    assert!(metric(&after, "esprit_relay_binds_total") >= 2, "{after}");
    // The status taken before this scrape saw no more than it.
    assert!(metric(&after, "esprit_relay_bytes_total") >= relays[0].bytes);
    for reason in ["limit", "socket_error"] {
        let series = format!("esprit_relays_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&after, &series), 0, "{after}");
    }
    eprintln!("server relay metrics: {bytes} bytes, {datagrams} datagrams during the transfer");
}

/// A relayed tunnel whose peer's NAT gives it a new public port mid-tunnel (a's
/// router forgets its mappings): the relay forwards only from and to the address that
/// bound, so a's peer binds again with its keepalives; the relay follows a to its new
/// port, and the same IKE SA carries ping again through the same relay.
#[test]
fn a_relayed_peer_whose_nat_port_changes_keeps_its_tunnel() {
    let topo = MediationTopology::symmetric().expect("topology");
    let server = esprit_server(&topo, false);
    let b = esprit_b(&topo);
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let a = esprit_a(&topo, false);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    assert_eq!(status.mediation.paths[0].path, "relayed", "{status}");
    let tunnel = status.mediation.paths[0].ike;
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping {to}\n{}",
        logs(&all)
    );
    // a's side of the relay: the address its bind came from.
    let a_side = |s: &engine::status::Status| {
        let r = &s.mediation.relays[0];
        let k = r
            .peers
            .iter()
            .position(|p| *p == dn("edge1"))
            .expect("a's side");
        r.bound[k].clone()
    };
    let ss = server.status().unwrap();
    assert_eq!(ss.mediation.relays.len(), 1, "{ss}");
    let before = a_side(&ss);
    assert!(before.starts_with(&topo.a_public().to_string()), "{ss}");

    topo.forget_a_mappings(SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    let after = wait_ok("a bound again from a new port", SETUP, POLL, || {
        let s = server.status()?;
        let now = a_side(&s);
        (now != before && !now.is_empty())
            .then_some(now)
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    eprintln!("a's side of the relay: {before} -> {after}");
    assert!(after.starts_with(&topo.a_public().to_string()), "{after}");
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(10)),
        "ping {to} after a's new port\n{}",
        logs(&all)
    );
    // The same IKE SA, through the same and only relay.
    let sa = a.status().unwrap();
    assert_eq!(sa.mediation.paths[0].ike, tunnel, "{sa}");
    assert_eq!(sa.mediation.paths[0].path, "relayed", "{sa}");
    assert_eq!(server.status().unwrap().mediation.relays.len(), 1);
}

/// The direct path is blocked (at the core router, between the two NATs) when the
/// tunnel comes up, so it comes up relayed; once the path opens, the initiator's next
/// re-check (every 30 s) finds a pair and both sides move the same SAs to it (the NAT
/// rebinding path): the transfer after that no longer passes the server.
#[test]
fn a_relayed_tunnel_moves_to_the_direct_path_when_it_opens() {
    let topo = MediationTopology::new().expect("topology");
    topo.block_direct(true).expect("block");
    let server = esprit_server(&topo, false);
    let b = esprit_b(&topo);
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let a = esprit_a(&topo, false);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    assert_eq!(status.mediation.paths[0].path, "relayed", "{status}");
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 2, Duration::from_secs(5)),
        "{}",
        logs(&all)
    );
    let opened = std::time::Instant::now();
    topo.block_direct(false).expect("unblock");
    let direct = format!("{}[4500]", topo.b_public());
    let status = wait_ok(
        "a moves to the direct path",
        Duration::from_secs(50),
        POLL,
        || {
            let s = a.status()?;
            let p = s.mediation.paths.first();
            if p.is_some_and(|p| p.path == "direct" && p.remote_addr == direct) {
                Ok(s)
            } else {
                Err(std::io::Error::other(format!("{s}")))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    eprintln!(
        "moved to the direct path {:?} after it opened\n{status}",
        opened.elapsed()
    );
    // The same IKE SA, now direct, on both sides.
    let sa = status.ike_sas.iter().find(|sa| sa.conn == "peer").unwrap();
    assert_eq!(sa.remote_addr, direct, "{status}");
    assert_eq!(
        status.ike_sas.iter().filter(|sa| sa.conn == "peer").count(),
        1
    );
    let a_direct = format!("{}[4500]", topo.a_public());
    wait_ok("b moves too", Duration::from_secs(10), POLL, || {
        let s = b.status()?;
        let p = s.mediation.paths.first();
        if p.is_some_and(|p| p.path == "direct" && p.remote_addr == a_direct) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("{s}")))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    assert!(
        ping(topo.a(), to, 2, Duration::from_secs(5)),
        "{}",
        logs(&all)
    );
    let relayed_before = server.status().unwrap().mediation.relays[0].bytes;
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5104,
        2_000_000,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer: {e}\n{}", logs(&all)));
    assert_eq!(t.sent_sha256, t.recv_sha256);
    let relayed = server.status().unwrap().mediation.relays[0].bytes - relayed_before;
    assert!(
        relayed < 10_000,
        "the relay carried {relayed} bytes after the move"
    );
}

/// Host candidates: a and b share a LAN the server does not know of (and their NATs
/// are symmetric, so nothing else would pass). Every local address is a candidate, so
/// the checks find the LAN pair and the tunnel runs there, neither relayed nor through
/// the NATs.
#[test]
fn peers_on_a_shared_lan_find_it_through_host_candidates() {
    let topo = MediationTopology::symmetric().expect("topology");
    topo.lan_link().expect("LAN link");
    let dir = topo.dir().to_path_buf();
    let server = esprit_server(&topo, false);
    // The mediated connections name no local address, so that their IKE SAs may
    // run from any (with `local_addrs`, only those are candidates).
    let any_local = |toml: String, addr: IpAddr| {
        toml.replace(
            &format!("[connections.peer]\nlocal_addrs = [\"{addr}\"]\n"),
            "[connections.peer]\n",
        )
    };
    let b = start(
        topo.b(),
        &dir.join("b"),
        any_local(
            peer_toml(
                &dir.join("b"),
                topo.b_addr(),
                topo.s_addr(),
                ("edge2", "edge1"),
                ("10.96.2.0/24", "10.96.1.0/24"),
                "none",
            ),
            topo.b_addr(),
        ),
    );
    wait_registered(&server, 1, &[("s", &server), ("b", &b)]);
    let a = start(
        topo.a(),
        &dir.join("a"),
        any_local(
            peer_toml(
                &dir.join("a"),
                topo.a_addr(),
                topo.s_addr(),
                ("edge1", "edge2"),
                ("10.96.1.0/24", "10.96.2.0/24"),
                "start",
            ),
            topo.a_addr(),
        ),
    );
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let started = std::time::Instant::now();
    let status = a
        .wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    eprintln!(
        "shared LAN: tunnel up {:?} after start\n{status}",
        started.elapsed()
    );
    let p = &status.mediation.paths[0];
    assert_eq!(p.path, "direct", "{status}");
    assert_eq!(p.local_addr, "10.3.0.1[4500]", "{status}");
    assert_eq!(p.remote_addr, "10.3.0.2[4500]", "{status}");
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping {to}\n{}",
        logs(&all)
    );
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        to,
        5105,
        2_000_000,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("transfer: {e}\n{}", logs(&all)));
    assert_eq!(t.sent_sha256, t.recv_sha256);
    let lan_rx: u64 = topo
        .b()
        .run_stdout(&["cat", "/sys/class/net/lan/statistics/rx_bytes"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(lan_rx > 2_000_000, "b's LAN link received {lan_rx} bytes");
    assert!(server.status().unwrap().mediation.relays.is_empty());
}

/// ME_CALLBACK from an esprit peer: `esprit initiate` of a connection with no start
/// action fails at once (b is not registered), and nothing retries it; when b
/// registers, the server calls a back and a's attempt runs again by itself.
#[test]
fn esprit_peer_is_called_back_when_its_peer_registers() {
    let topo = MediationTopology::new().expect("topology");
    let dir = topo.dir().to_path_buf();
    let server = esprit_server(&topo, false);
    let a = start(
        topo.a(),
        &dir.join("a"),
        peer_toml(
            &dir.join("a"),
            topo.a_addr(),
            topo.s_addr(),
            ("edge1", "edge2"),
            ("10.96.1.0/24", "10.96.2.0/24"),
            "none",
        ),
    );
    wait_ok("a registered", SETUP, POLL, || {
        let s = server.status()?;
        (s.mediation.registered_peers.len() == 1)
            .then_some(())
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[("s", &server), ("a", &a)])));
    let cfg = dir.join("a").join("esprit.toml");
    let out = cli(&[
        "initiate",
        "peer",
        "-c",
        cfg.to_str().unwrap(),
        "--timeout",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not registered"), "{stderr}");
    let b = esprit_b(&topo);
    let all = [("s", &server), ("a", &a), ("b", &b)];
    let started = std::time::Instant::now();
    a.wait_child("net", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&all)));
    eprintln!(
        "called back: tunnel up {:?} after b started",
        started.elapsed()
    );
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    assert!(
        ping(topo.a(), to, 3, Duration::from_secs(5)),
        "ping {to}\n{}",
        logs(&all)
    );
}

/// A charon peer behind a symmetric NAT cannot use esprit's relay: the esprit server
/// refuses it, and `esprit initiate` at the esprit peer ends with a clear error within
/// seconds (the checks' 60 s are not waited for).
#[test]
fn charon_peer_behind_symmetric_nats_is_a_clear_error() {
    let topo = MediationTopology::symmetric().expect("topology");
    let server = start_server(&topo, Impl::Esprit);
    let b = start_peer(&topo, Impl::Charon, false);
    let Node::Esprit(srv) = &server else {
        unreachable!()
    };
    wait_ok("charon b registered", SETUP, POLL, || {
        let s = srv.status()?;
        (s.mediation.registered_peers.len() == 1)
            .then_some(())
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap_or_else(|e| panic!("{e}\n--- b ---\n{}", b.log()));
    let dir = topo.dir().join("a");
    let a = start(
        topo.a(),
        &dir,
        peer_toml(
            &dir,
            topo.a_addr(),
            topo.s_addr(),
            ("edge1", "edge2"),
            ("10.96.1.0/24", "10.96.2.0/24"),
            "none",
        ),
    );
    wait_ok("a registered", SETUP, POLL, || {
        let s = srv.status()?;
        (s.mediation.registered_peers.len() == 2)
            .then_some(())
            .ok_or_else(|| std::io::Error::other(format!("{s}")))
    })
    .unwrap_or_else(|e| panic!("{e}\n--- a ---\n{}", a.log()));
    let cfg = dir.join("esprit.toml");
    let started = std::time::Instant::now();
    let out = cli(&[
        "initiate",
        "peer",
        "-c",
        cfg.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dump = || {
        format!(
            "--- s ---\n{}\n--- a ---\n{}\n--- b ---\n{}",
            server.log(),
            a.log(),
            b.log()
        )
    };
    assert!(!out.status.success(), "initiate succeeded?\n{}", dump());
    assert!(
        stderr.contains("the mediation server will not relay"),
        "{stderr}\n{}",
        dump()
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("esprit initiate with a charon peer behind symmetric NATs: {took:?}: {stderr}");
    let s = srv.status().unwrap();
    assert!(s.mediation.relays.is_empty(), "{s}");
}

/// ME_CALLBACK: charon asks an esprit server for a peer that is not registered yet
/// (charon always sets ME_CALLBACK); the server answers ME_CONNECT_FAILED and remembers
/// the request; when the esprit peer registers, the server calls charon back and charon
/// mediates again.
#[test]
fn charon_is_called_back_when_the_peer_registers() {
    let topo = MediationTopology::new().expect("topology");
    let server = start_server(&topo, Impl::Esprit);
    let a = start_peer(&topo, Impl::Charon, true);
    let Node::Charon(charon_a) = &a else {
        unreachable!()
    };
    let started = std::time::Instant::now();
    let initiated = std::thread::scope(|scope| {
        let initiate = scope.spawn(|| charon_a.swanctl("--initiate --child net --timeout 40"));
        // Let charon's request meet an empty registry first.
        std::thread::sleep(Duration::from_secs(3));
        let b = start_peer(&topo, Impl::Esprit, false);
        let result = initiate.join().unwrap();
        (result, b)
    });
    let (result, b) = initiated;
    let dump = || {
        format!(
            "--- s ---\n{}\n--- a ---\n{}\n--- b ---\n{}",
            server.log(),
            a.log(),
            b.log()
        )
    };
    result.unwrap_or_else(|e| panic!("{e}\n{}", dump()));
    assert!(started.elapsed() >= Duration::from_secs(3));
    let charon_log = a.log();
    assert!(
        charon_log.contains("received ME_CONNECT_FAILED"),
        "{}",
        dump()
    );
    assert!(charon_log.contains("received ME_CALLBACK"), "{}", dump());
    let to = IpAddr::V4(topo.b_inner().v4[0]);
    let pinged = (0..10).any(|_| ping(topo.a(), to, 1, Duration::from_secs(1)));
    assert!(pinged, "{}", dump());
}
