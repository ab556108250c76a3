//! End-to-end at scale (issue 22): one responder with a single `%any` connection and
//! four initiator daemons (on their own IKE ports) starting 500 connections each, all
//! at once, over real UDP in namespaces. Every IKE SA and child comes up, no IKE message
//! is dropped inside the daemons (their counters prove it), no authentication fails
//! (the cookie exchanges of a loaded responder included), and a SIGTERM deletes every
//! SA at its peer within the grace time.
//!
//! `ESPRIT_SCALE_N` changes the number of connections per initiator (default 500; four
//! initiators, since one daemon starting 50,000 connections at once is itself the
//! bottleneck on two shared cores). `ESPRIT_SCALE_AUTH=ecdsa` authenticates with ECDSA
//! P-256 certificates under one CA (one certificate per initiator daemon) instead of
//! the PSK.

#[path = "e2e/common.rs"]
mod common;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{count_lines, exe};
use esprit::testbed::certs::{subject_dn, KeyKind, Pki};
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{wait_for, Topology};

const SECRET: &str = "one secret for every edge site";
/// Four initiator daemons, each on its own IKE and NAT-T ports.
const INITIATORS: [(u16, u16); 4] = [(500, 4500), (1500, 5500), (2500, 6500), (3500, 7500)];

/// How the hub and the sites authenticate.
enum Auth {
    Psk,
    /// ECDSA P-256 certificates under one CA, one per connection (each site its own
    /// identity: sites sharing one would replace each other's SAs by INITIAL_CONTACT).
    Ecdsa {
        pki: Box<Pki>,
        ca: PathBuf,
        dir: PathBuf,
    },
}

impl Auth {
    /// PSK unless `ESPRIT_SCALE_AUTH=ecdsa`: then a CA written to `dir`, where the
    /// certificates go too.
    fn from_env(dir: &Path) -> Auth {
        if std::env::var("ESPRIT_SCALE_AUTH").as_deref() != Ok("ecdsa") {
            return Auth::Psk;
        }
        std::fs::create_dir_all(dir).unwrap();
        let pki = Pki::new(KeyKind::EcdsaP256).expect("pki");
        let ca = pki.write_ca(dir).unwrap();
        Auth::Ecdsa {
            pki: Box::new(pki),
            ca,
            dir: dir.to_path_buf(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Auth::Psk => "PSK",
            Auth::Ecdsa { .. } => "ECDSA P-256",
        }
    }

    /// Connection `name`'s local and remote sections and the secret they need, for
    /// the identity `me` (a PSK identity, or the common name of a fresh certificate)
    /// and the peer's (`None`: any that authenticates).
    fn sections(&self, name: &str, me: &str, peer: Option<&str>) -> (String, String) {
        match self {
            Auth::Psk => {
                let remote_id = peer.map_or(String::new(), |p| format!("id = \"{p}\"\n"));
                let conns = format!(
                    "[connections.{name}.local]\nauth = \"psk\"\nid = \"{me}\"\n\
                     [connections.{name}.remote]\nauth = \"psk\"\n{remote_id}"
                );
                (
                    conns,
                    format!("[secrets.ike-{name}]\nsecret = \"{SECRET}\"\n"),
                )
            }
            Auth::Ecdsa { pki, ca, dir } => {
                let leaf = pki.issue(me, me).unwrap();
                let (cert, key) = leaf.write(dir, me).unwrap();
                let remote_id =
                    peer.map_or(String::new(), |p| format!("id = {:?}\n", subject_dn(p)));
                let conns = format!(
                    "[connections.{name}.local]\nauth = \"pubkey\"\nid = {:?}\ncerts = [{:?}]\n\
                     [connections.{name}.remote]\nauth = \"pubkey\"\n{remote_id}cacerts = [{:?}]\n",
                    leaf.dn,
                    cert.to_string_lossy(),
                    ca.to_string_lossy()
                );
                let secret = format!(
                    "[secrets.private.{name}]\nfile = {:?}\n",
                    key.to_string_lossy()
                );
                (conns, secret)
            }
        }
    }
}

fn per_initiator() -> usize {
    std::env::var("ESPRIT_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn daemon_section(dir: &Path, ports: (u16, u16), tun: &str) -> String {
    let buffer = (per_initiator() * INITIATORS.len() * 4096).max(8 << 20);
    format!(
        "[daemon]\nport = {}\nport_nat_t = {}\ncontrol_socket = \"{}\"\n\
         keepalive = \"0s\"\nsocket_buffer = {buffer}\n[tun]\nname = \"{tun}\"\n",
        ports.0,
        ports.1,
        dir.join("esprit.sock").display()
    )
}

/// The hub: one connection for every edge site (any identity, the same PSK), remote
/// selectors narrowed to each site's /32.
fn responder(dir: &Path, total: usize, auth: &Auth) -> String {
    let mut t = daemon_section(dir, (500, 4500), "esprit-hub");
    // Every site may be half-open at once: the documented limit, raised past the
    // default 4,096 for the larger bench runs, so nothing is refused as overloaded.
    // All sites share the initiators' one address, so the per-source share too.
    let half_open = total.max(4096);
    // The responder finishes the handshakes it started before it reads new
    // IKE_SA_INIT requests, so a burst waits in port 500's socket buffer, with the
    // initiators' retransmissions: sized for it (about 4 KiB of kernel memory per peer
    // starting at once), nothing is lost there. The initiators get the same.
    // Cookies at the default threshold up to the CI size; past it the bench measures
    // throughput without them unless `ESPRIT_SCALE_COOKIES` sets the threshold.
    let cookies = std::env::var("ESPRIT_SCALE_COOKIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if total > 4000 { total } else { 64 });
    let max_sas = (total + total / 10).max(100_000);
    t = t.replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\nmax_half_open = {half_open}\nmax_half_open_per_source = {half_open}\n\
             cookie_threshold = {cookies}\nmax_ike_sas = {max_sas}\n"
        ),
        1,
    );
    t.push_str(
        "[connections.sites]\nlocal_addrs = [\"192.0.2.2\"]\nremote_addrs = [\"%any\"]\n\
         proposals = [\"aes128gcm16-prfsha256-x25519\"]\n",
    );
    let (conns, secret) = auth.sections("sites", "hub.example", None);
    t.push_str(&conns);
    t.push_str(
        "[connections.sites.children.net]\nlocal_ts = [\"10.96.2.0/24\"]\n\
         remote_ts = [\"10.128.0.0/9\"]\nesp_proposals = [\"aes128gcm16\"]\n",
    );
    t.push_str(&secret);
    t
}

/// Initiator `i`: `n` connections, each its own identity and /32 behind it.
fn initiator(dir: &Path, i: usize, n: usize, auth: &Auth) -> String {
    let mut t = daemon_section(dir, INITIATORS[i], &format!("esprit-e{i}"));
    let mut secrets = String::new();
    for k in 0..n {
        let name = format!("e{i}-{k}");
        let (conns, secret) =
            auth.sections(&name, &format!("{name}.edge.example"), Some("hub.example"));
        if k == 0 || matches!(auth, Auth::Ecdsa { .. }) {
            secrets.push_str(&secret);
        }
        // 10.128.0.0/9 has room for millions of sites.
        let inner = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + (i * n + k) as u32);
        writeln!(
            t,
            "[connections.{name}]\nlocal_addrs = [\"192.0.2.1\"]\nremote_addrs = [\"192.0.2.2\"]\n\
             proposals = [\"aes128gcm16-prfsha256-x25519\"]\n{conns}\
             [connections.{name}.children.net]\nlocal_ts = [\"{inner}/32\"]\n\
             remote_ts = [\"10.96.2.0/24\"]\nesp_proposals = [\"aes128gcm16\"]\n\
             start_action = \"start\""
        )
        .unwrap();
    }
    t.push_str(&secrets);
    t
}

fn start(ns: &esprit::testbed::Netns, dir: &Path, toml: String) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("esprit.toml");
    std::fs::write(&config, toml).unwrap();
    Daemon::start_with(exe(), ns, &config, dir).expect("daemon starts")
}

fn counter(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

#[test]
fn thousands_of_sas_come_up_with_nothing_dropped_and_go_on_sigterm() {
    let n = per_initiator();
    let total = n * INITIATORS.len();
    let topo = Topology::direct(false).expect("topology");
    let auth = Auth::from_env(&topo.dir().join("pki"));
    let hub_dir = topo.dir().join("hub");
    let mut hub = start(topo.b(), &hub_dir, responder(&hub_dir, total, &auth));
    let hub_pid = hub.proc.pid();
    let (rss0, cpu0) = (rss_kib(hub_pid), cpu_secs(hub_pid));
    let started = Instant::now();
    let edges: Vec<Daemon> = (0..INITIATORS.len())
        .map(|i| {
            let dir = topo.dir().join(format!("edge{i}"));
            start(topo.a(), &dir, initiator(&dir, i, n, &auth))
        })
        .collect();
    let up = wait_for(
        "every child SA installed at the hub",
        Duration::from_secs(240),
        Duration::from_millis(500),
        || {
            // The summary counts without listing: polling it costs the hub nothing
            // that grows with the SAs it holds.
            let s = hub.summary().ok()?.summary;
            (s.established == total && s.child_sas == total).then_some(())
        },
    );
    if let Err(e) = up {
        let s = hub.summary().map(|s| s.summary).unwrap_or_default();
        panic!("{e}: at the hub {s:?}\n{}", tail(&hub.proc.log()));
    }
    let took = started.elapsed();
    let (rss1, cpu1) = (rss_kib(hub_pid), cpu_secs(hub_pid));
    // The whole report, streamed: its bytes are one JSON line naming every SA. Ten
    // calls must give the memory they take back (the report is never whole in the
    // hub; issue 22: four calls once left 12 MB behind for good).
    let t = Instant::now();
    let bytes = hub.status_bytes(Duration::from_secs(60)).expect("status");
    let status_time = t.elapsed();
    assert_eq!(bytes.last(), Some(&b'\n'), "one line, ended");
    let s = match serde_json::from_slice(&bytes).expect("status is valid JSON") {
        engine::control::Response::Status(s) => *s,
        other => panic!("unexpected answer {other:?}"),
    };
    drop(bytes);
    for _ in 0..9 {
        hub.status_bytes(Duration::from_secs(60)).expect("status");
    }
    let rss10 = rss_kib(hub_pid);
    eprintln!(
        "scale: status is {} IKE SAs; hub RSS {rss1} KiB before, {rss10} KiB after 10 calls",
        s.ike_sas.len()
    );
    let idle = Duration::from_secs(3);
    let before_idle = cpu_secs(hub_pid);
    std::thread::sleep(idle);
    let idle_cpu = (cpu_secs(hub_pid) - before_idle) / idle.as_secs_f64();
    eprintln!(
        "scale: {total} IKE SAs with one child each ({}) up in {:.1} s ({:.0}/s); hub: {:.1} KiB \
         RSS per SA, {:.0} us CPU per handshake, status {:.0} ms, idle {:.1}% of a core",
        auth.name(),
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        (rss1.saturating_sub(rss0)) as f64 / total as f64,
        (cpu1 - cpu0) * 1e6 / total as f64,
        status_time.as_secs_f64() * 1e3,
        idle_cpu * 100.0
    );
    let mut states = std::collections::BTreeMap::<&str, usize>::new();
    for sa in &s.ike_sas {
        *states.entry(sa.state.as_str()).or_default() += 1;
    }
    let json = serde_json::to_value(&s.counters).unwrap();
    assert_eq!(
        s.ike_sas.len(),
        total,
        "no duplicates, no half-open SA left: {states:?}; {}",
        json["ike"]
    );
    for d in &edges {
        let e = d.status().expect("edge status");
        let up = e
            .ike_sas
            .iter()
            .filter(|sa| sa.state == "ESTABLISHED" && sa.children.len() == 1)
            .count();
        assert_eq!(up, n, "every connection of the edge daemon is up");
    }
    // Nothing dropped inside the daemons; no authentication failed, cookies or not.
    for path in [
        &["inbound", "ike_dropped_queue_full"][..],
        &["inbound", "ike_dropped_closed"],
        &["ike", "overloaded"],
        &["udp_rcvbuf_errors"],
    ] {
        assert_eq!(counter(&json, path), 0, "hub counter {path:?}: {json}");
    }
    eprintln!(
        "scale: hub waited for room in its IKE queue {} times, sent {} COOKIEs",
        counter(&json, &["inbound", "ike_backpressure"]),
        counter(&json, &["ike", "cookies_sent"])
    );
    // No NAT on these paths, so no keepalives (and `keepalive = "0s"` besides; that
    // it means none with a NAT is checked behind the proxy in e2e_paths).
    assert_eq!(counter(&json, &["keepalives_sent"]), 0, "{json}");
    for (who, log) in
        std::iter::once(("hub", hub.proc.log())).chain(edges.iter().map(|d| ("edge", d.proc.log())))
    {
        assert_eq!(
            count_lines(&log, "authentication failed"),
            0,
            "{who}: {}",
            tail(&log)
        );
    }
    // SIGTERM: the hub deletes every SA at its peers and none is left unconfirmed.
    let t0 = Instant::now();
    hub.proc.signal(libc::SIGTERM).expect("SIGTERM");
    // The hub's own grace: 3 s and 3 s per 10,000 SAs (`[daemon] shutdown_grace`).
    let grace = Duration::from_secs(3) + Duration::from_millis(total as u64 * 3 / 10);
    wait_for(
        "the hub to exit",
        grace + Duration::from_secs(10),
        Duration::from_millis(50),
        || hub.proc.try_status().ok().flatten(),
    )
    .expect("hub exits");
    let log = hub.proc.log();
    eprintln!(
        "scale: SIGTERM to exit with {total} SAs deleted at their peers: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        !log.contains("not confirmed deleted"),
        "every delete confirmed: {}",
        tail(&log)
    );
}

/// Resident memory of `pid`, KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) `pid` has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / hz
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
