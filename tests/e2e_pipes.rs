//! End-to-end: pipes (issue 12). Side a runs esprit as an ordinary user (uid 65534, no
//! capabilities) with `[netstack]` and pipes only: no TUN, IKE on ports 5500/5501. Side
//! b runs a normal esprit with a TUN (its connection to a uses `remote_port`) and the
//! services: an HTTP server, a hashing sink, an echo server (TCP and UDP) on its inner
//! address 10.96.2.1. Through a's pipes: a page, 100 MB checked by SHA-256, 100
//! concurrent echo connections, checked UDP datagrams; and b reaches a host TCP server
//! and a host UDP echo server in a's namespace through reverse pipes. The reverse TCP
//! pipe's `remote` is a name (`localhost:7777`), resolved by a's host resolver at
//! each connection. The per-pipe counters match what was sent.
//!
//! Needs root (namespaces, b's TUN, dropping to uid 65534 with `setpriv`).

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use engine::netstack::PipeStats;
use engine::status::Status;
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{http_get, wait_ok, Netns, Topology};
use ring::digest::{digest, Context, SHA256};

const SETUP: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const BULK: u64 = 100_000_000;
const PAGE: &str = "<html><body>esprit pipe test page</body></html>\n";
/// a's netstack address.
const A_STACK: &str = "10.96.1.5";
/// b's inner address (on its lo).
const B_INNER: &str = "10.96.2.1";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

fn config_a(dir: &Path, me: IpAddr, peer: IpAddr) -> String {
    format!(
        r#"
[daemon]
port = 5500
port_nat_t = 5501
control_socket = "{sock}"
keepalive = "0s"

[metrics]
listen = "127.0.0.1:9100"

[netstack]
addrs = ["{A_STACK}"]

[pipes.web]
listen = "127.0.0.1:8080"
remote = "{B_INNER}:80"
[pipes.bulk]
listen = "127.0.0.1:8081"
remote = "{B_INNER}:5201"
[pipes.echo]
listen = "127.0.0.1:8082"
remote = "{B_INNER}:7000"
[pipes.back]
reverse = true
listen = "{A_STACK}:2222"
remote = "localhost:7777"
[pipes.dns]
proto = "udp"
listen = "127.0.0.1:5353"
remote = "{B_INNER}:5300"
[pipes.dns-back]
proto = "udp"
reverse = true
listen = "{A_STACK}:5354"
remote = "127.0.0.1:7778"

[connections.b]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.b.local]
auth = "psk"
id = "a.example"
[connections.b.remote]
auth = "psk"
id = "b.example"
[connections.b.children.net]
local_ts = ["{A_STACK}/32"]
remote_ts = ["10.96.2.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "start"

[secrets.ike-all]
secret = "pipes test secret, long enough"
"#,
        sock = dir.join("esprit.sock").display(),
    )
}

fn config_b(dir: &Path, me: IpAddr, peer: IpAddr) -> String {
    format!(
        r#"
[daemon]
control_socket = "{sock}"
keepalive = "0s"
[tun]
name = "esprit0"

[connections.a]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
remote_port = 5500
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.a.local]
auth = "psk"
id = "b.example"
[connections.a.remote]
auth = "psk"
id = "a.example"
[connections.a.children.net]
local_ts = ["10.96.2.0/24"]
remote_ts = ["{A_STACK}/32"]
esp_proposals = ["aes128gcm16"]

[secrets.ike-all]
secret = "pipes test secret, long enough"
"#,
        sock = dir.join("esprit.sock").display(),
    )
}

/// Deterministic bytes for stream `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The namespace's non-zero TCP counters (for a failure's report).
fn tcp_counters(ns: &Netns) -> String {
    ns.run_stdout(&["nstat", "-az"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Tcp") && l.split_whitespace().nth(1) != Some("0"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Binds a TCP listener inside `ns`.
fn listen(ns: &Netns, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.enter(|| TcpListener::bind(addr)).unwrap().unwrap()
}

/// Connects from inside `ns`.
fn connect(ns: &Netns, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = ns
        .enter(|| TcpStream::connect_timeout(&addr, IO_TIMEOUT))
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// A UDP echo server inside `ns`.
fn udp_echo_in(ns: &Netns, addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let sock = ns.enter(|| UdpSocket::bind(addr)).unwrap().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
}

/// Sends `count` datagrams of 1000 bytes from `ns` to `to`, each until its echo came
/// back (at most 10 tries); returns the bytes sent, retries included.
fn udp_echoes(ns: &Netns, to: &str, count: u64, seed: u64) -> u64 {
    let u = ns.enter(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0u64;
    for i in 0..count {
        let d = pattern(seed + i, 1000);
        let mut got = false;
        for _ in 0..10 {
            u.send_to(&d, to).unwrap();
            sent += d.len() as u64;
            let mut buf = [0u8; 2048];
            if let Ok((n, _)) = u.recv_from(&mut buf) {
                assert_eq!(&buf[..n], &d[..], "datagram {i} to {to} differs");
                got = true;
                break;
            }
        }
        assert!(got, "datagram {i} to {to} never came back");
    }
    sent
}

/// Serves each connection on its own thread.
fn serve(l: TcpListener, handler: fn(TcpStream)) {
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            thread::spawn(move || handler(s));
        }
    });
}

/// HTTP/1.1: reads the request head, answers with the page, closes.
fn http(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
        PAGE.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

/// Reads to EOF, answers with the SHA-256 of what it read and the byte count.
fn hash_sink(mut s: TcpStream) {
    let mut ctx = Context::new(&SHA256);
    let mut total = 0u64;
    let mut b = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&b[..n]);
                total += n as u64;
            }
            Err(_) => return,
        }
    }
    let mut out = ctx.finish().as_ref().to_vec();
    out.extend_from_slice(&total.to_be_bytes());
    let _ = s.write_all(&out);
}

/// Echoes until EOF, then closes.
fn echo(mut s: TcpStream) {
    let mut b = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&b[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Sends `data` (half-closing after it) to a hash sink and checks its answer.
fn send_hashed(mut s: TcpStream, data: &[u8]) {
    let want = digest(&SHA256, data);
    let writer = {
        let mut w = s.try_clone().unwrap();
        let data = data.to_vec();
        thread::spawn(move || {
            for c in data.chunks(1 << 20) {
                w.write_all(c).expect("send through the pipe");
            }
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("the sink's answer");
    writer.join().unwrap();
    assert_eq!(answer.len(), 40, "sink answered {answer:?}");
    assert_eq!(
        u64::from_be_bytes(answer[32..].try_into().unwrap()),
        data.len() as u64
    );
    assert_eq!(&answer[..32], want.as_ref(), "SHA-256 differs");
}

fn pipe<'a>(s: &'a Status, name: &str) -> &'a PipeStats {
    s.pipes
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pipe {name} in {s}"))
}

fn has_no_caps(pid: u32) -> (bool, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let ok = field("CapEff:") == "0000000000000000"
        && field("CapPrm:") == "0000000000000000"
        && field("Uid:").split_whitespace().all(|u| u == "65534");
    (ok, status)
}

/// Starts esprit in a's namespace as uid 65534 with no capabilities, on the
/// configuration `toml` makes for directory `dir`; checks that it is unprivileged.
fn start_unprivileged(topo: &Topology, dir: &Path, toml: impl Fn(&Path) -> String) -> Daemon {
    // A directory and a copy of the binary that uid 65534 can use.
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(topo.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A hard link where it can be (a debug binary is large), else a copy.
    let bin = dir.join("esprit");
    if std::fs::hard_link(exe(), &bin).is_err() {
        std::fs::copy(exe(), &bin).unwrap();
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.join("esprit.toml");
    std::fs::write(&cfg, toml(dir)).unwrap();
    let d = Daemon::start_wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
        ],
        &bin,
        topo.a(),
        &cfg,
        dir,
    )
    .expect("esprit a, unprivileged");
    let (ok, proc_status) = has_no_caps(d.proc.pid());
    assert!(ok, "a is not unprivileged:\n{proc_status}");
    d
}

#[test]
fn pipes_through_an_unprivileged_netstack() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());

    // b: services on its inner address, then its daemon (root, TUN).
    serve(listen(b, &format!("{B_INNER}:80")), http);
    serve(listen(b, &format!("{B_INNER}:5201")), hash_sink);
    serve(listen(b, &format!("{B_INNER}:7000")), echo);
    udp_echo_in(b, &format!("{B_INNER}:5300"));
    // a: the host servers the reverse pipes forward to.
    serve(listen(a, "127.0.0.1:7777"), hash_sink);
    udp_echo_in(a, "127.0.0.1:7778");

    let db = topo.dir().join("b");
    std::fs::create_dir_all(&db).unwrap();
    let cfg_b = db.join("esprit.toml");
    std::fs::write(&cfg_b, config_b(&db, topo.b_addr(), topo.a_addr())).unwrap();
    let dmn_b = Daemon::start_with(exe(), b, &cfg_b, &db).expect("esprit b");

    let da = topo.dir().join("a");
    let dmn_a = start_unprivileged(&topo, &da, |d| config_a(d, topo.a_addr(), topo.b_addr()));

    dmn_a.wait_child("net", SETUP).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- a ---\n{}\n--- b ---\n{}",
            dmn_a.log(),
            dmn_b.log()
        )
    });
    let log = dmn_a.log();
    assert!(log.contains("netstack (no TUN)"), "{log}");
    let links = a.ip(&["-o", "link", "show"]).unwrap();
    assert!(
        !links.contains("esprit0") && !links.contains("tun0"),
        "{links}"
    );

    // A page through the forward pipe.
    let mut s = connect(a, "127.0.0.1:8080");
    s.write_all(b"GET / HTTP/1.1\r\nHost: nginx\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("the page");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with(PAGE), "{resp}");
    drop(s);

    // 100 MB, checked by SHA-256 on the far side (the FIN crosses the pipe too).
    let data = pattern(1, BULK as usize);
    let t = Instant::now();
    send_hashed(connect(a, "127.0.0.1:8081"), &data);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "100 MB through the pipe in {secs:.2} s ({:.2} Gbit/s)",
        BULK as f64 * 8.0 / secs / 1e9
    );
    drop(data);

    // 100 concurrent connections, each echoing its own 64 KiB.
    let mut clients = Vec::new();
    let mut echoed = 0u64;
    for i in 0..100u64 {
        let mut s = connect(a, "127.0.0.1:8082");
        let data = pattern(100 + i, 64 * 1024);
        echoed += data.len() as u64;
        clients.push(thread::spawn(move || {
            let mut w = s.try_clone().unwrap();
            let out = data.clone();
            let writer = thread::spawn(move || {
                w.write_all(&out).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            });
            let mut back = Vec::new();
            s.read_to_end(&mut back).expect("echo");
            writer.join().unwrap();
            assert!(
                back == data,
                "connection {i}: echo differs ({} bytes back)",
                back.len()
            );
        }));
    }
    let failed = clients.into_iter().filter_map(|c| c.join().err()).count();
    if failed > 0 {
        panic!(
            "{failed} echo connections failed; pipes: {:?}\n--- a ---\n{}\n--- b ---\n{}\n\
             --- b's TCP counters ---\n{}\n--- a's TCP counters ---\n{}",
            dmn_a.status().map(|s| s.pipes),
            dmn_a.log(),
            dmn_b.log(),
            tcp_counters(b),
            tcp_counters(a),
        );
    }

    // UDP: datagrams echoed through the UDP pipe, each checked; and from b through
    // the reverse UDP pipe to an echo server on a's host.
    let udp_sent = udp_echoes(a, "127.0.0.1:5353", 50, 1000);
    let udp_back_sent = udp_echoes(b, &format!("{A_STACK}:5354"), 50, 2000);

    // Reverse: b connects to a's netstack address; a host server in a's namespace
    // hashes what arrives.
    let back = pattern(7, 1 << 20);
    send_hashed(connect(b, &format!("{A_STACK}:2222")), &back);

    // The counters: what was sent, and every connection closed again.
    let s = wait_ok(
        "every pipe connection closed",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let s = dmn_a.status()?;
            if s.pipes.iter().all(|p| p.proto == "udp" || p.active == 0) {
                Ok(s)
            } else {
                Err(std::io::Error::other(format!("{:?}", s.pipes)))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", dmn_a.log()));
    let web = pipe(&s, "web");
    assert_eq!((web.opened, web.failed, web.refused), (1, 0, 0), "{web:?}");
    assert_eq!(web.bytes_down as usize, resp.len(), "{web:?}");
    let bulk = pipe(&s, "bulk");
    assert_eq!(
        (bulk.opened, bulk.bytes_up, bulk.bytes_down),
        (1, BULK, 40),
        "{bulk:?}"
    );
    let e = pipe(&s, "echo");
    assert_eq!((e.opened, e.failed, e.refused), (100, 0, 0), "{e:?}");
    assert_eq!((e.bytes_up, e.bytes_down), (echoed, echoed), "{e:?}");
    let r = pipe(&s, "back");
    assert_eq!(
        (r.opened, r.bytes_up, r.bytes_down),
        (1, 1 << 20, 40),
        "{r:?}"
    );
    for (name, sent) in [("dns", udp_sent), ("dns-back", udp_back_sent)] {
        let d = pipe(&s, name);
        assert_eq!(d.opened, 1, "{d:?}");
        assert_eq!(d.bytes_up, sent, "{d:?}");
        assert!(d.bytes_down >= 50_000 && d.bytes_down <= sent, "{d:?}");
    }
    let text = s.to_string();
    assert!(
        text.contains("pipe back: reverse tcp 10.96.1.5:2222 -> localhost:7777"),
        "{text}"
    );

    // The same figures in /metrics, served by the unprivileged daemon.
    let (code, metrics) = http_get(a, "127.0.0.1:9100", "/metrics").expect("scrape");
    assert_eq!(code, 200, "{metrics}");
    for line in [
        format!("esprit_pipe_bytes_total{{pipe=\"bulk\",direction=\"up\"}} {BULK}"),
        "esprit_pipe_connections_opened_total{pipe=\"echo\"} 100".to_string(),
        "esprit_pipe_connections{pipe=\"web\"} 0".to_string(),
        format!(
            "esprit_pipe_bytes_total{{pipe=\"back\",direction=\"up\"}} {}",
            1 << 20
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
}

/// b is a hub with a pool; a's netstack has no addresses of its own and takes the
/// virtual IP b assigns: a forward pipe leaves from it, a reverse pipe listens on it.
#[test]
fn a_netstack_on_a_virtual_ip() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());
    serve(listen(b, &format!("{B_INNER}:7000")), echo);
    serve(listen(a, "127.0.0.1:7777"), hash_sink);
    let db = topo.dir().join("b");
    std::fs::create_dir_all(&db).unwrap();
    let cfg_b = db.join("esprit.toml");
    std::fs::write(
        &cfg_b,
        format!(
            r#"
[daemon]
control_socket = "{sock}"
[tun]
name = "esprit0"
[pools.pods]
addrs = "10.173.0.0/24"
[connections.a]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
remote_port = 5500
pools = ["pods"]
[connections.a.local]
auth = "psk"
id = "b.example"
[connections.a.remote]
auth = "psk"
id = "a.example"
[connections.a.children.net]
local_ts = ["10.96.2.0/24"]
esp_proposals = ["aes128gcm16"]
[secrets.ike-all]
secret = "pipes test secret, long enough"
"#,
            sock = db.join("esprit.sock").display(),
            me = topo.b_addr(),
            peer = topo.a_addr(),
        ),
    )
    .unwrap();
    let dmn_b = Daemon::start_with(exe(), b, &cfg_b, &db).expect("esprit b");
    let da = topo.dir().join("a");
    let dmn_a = start_unprivileged(&topo, &da, |d| {
        format!(
            r#"
[daemon]
port = 5500
port_nat_t = 5501
control_socket = "{sock}"
[netstack]
[pipes.echo]
listen = "127.0.0.1:8082"
remote = "{B_INNER}:7000"
[pipes.back]
reverse = true
listen = "0.0.0.0:2222"
remote = "127.0.0.1:7777"
[connections.b]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
vips = ["0.0.0.0"]
[connections.b.local]
auth = "psk"
id = "a.example"
[connections.b.remote]
auth = "psk"
id = "b.example"
[connections.b.children.net]
remote_ts = ["10.96.2.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "start"
[secrets.ike-all]
secret = "pipes test secret, long enough"
"#,
            sock = d.join("esprit.sock").display(),
            me = topo.a_addr(),
            peer = topo.b_addr(),
        )
    });
    let s = dmn_a.wait_child("net", SETUP).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- a ---\n{}\n--- b ---\n{}",
            dmn_a.log(),
            dmn_b.log()
        )
    });
    let vip = s.ike_sas[0]
        .local_vips
        .first()
        .cloned()
        .expect("a virtual IP");
    assert!(vip.starts_with("10.173.0."), "{vip}");

    let mut c = connect(a, "127.0.0.1:8082");
    let data = pattern(3, 256 * 1024);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert!(
        back == data,
        "echo through the VIP differs ({} bytes)",
        back.len()
    );

    send_hashed(connect(b, &format!("{vip}:2222")), &pattern(4, 1 << 20));
    let s = dmn_a.status().unwrap();
    assert_eq!(pipe(&s, "back").bytes_up, 1 << 20, "{s}");
    let log = dmn_a.log();
    assert!(log.contains(&format!("netstack: address {vip}")), "{log}");
}
