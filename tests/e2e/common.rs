//! Shared helpers of the end-to-end tests (`tests/e2e_*.rs`): two esprit daemons on a
//! [`Topology`], their configurations, bounded waits on their status and logs.
//!
//! Everything a [`Bench`] made goes away when it drops, on the panic path too: the
//! daemons are stopped by PID, then the topology removes its namespaces and files. A
//! failing test prints the tail of both daemons' logs.

// Each test file uses its own subset of these helpers, which are `pub` for the test
// files that include this module (the workspace lints flag `pub` in a test crate).
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use engine::status::{ChildSaStatus, IkeSaStatus, Status};
use esprit::testbed::esprit::{Auth, Child, Daemon, Side};
use esprit::testbed::{tcp_transfer, wait_ok, Inner, KeyKind, Pki, Topology};

/// How long a tunnel may take to come up (generous: tests share two cores).
pub const SETUP: Duration = Duration::from_secs(20);
/// Poll interval of the waits on status and logs.
pub const POLL: Duration = Duration::from_millis(50);
/// The size of the checked TCP transfers: at least 50 MB (issue 4).
pub const TRANSFER: u64 = 50_000_000;
/// Bound on one checked TCP transfer through the tunnel.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of each daemon's log printed when a test fails.
const LOG_TAIL: usize = 150;

/// The esprit binary under test.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

/// One of the two sides of a [`Bench`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The initiator's side, in the topology's host a.
    A,
    /// The responder's side, in host b.
    B,
}

impl Who {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Who::A => "a",
            Who::B => "b",
        }
    }
}

/// An IPv4 or IPv6 address as a /24 (IPv4) or /48 (IPv6) selector.
pub fn net(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// A child between `me` and `peer` covering the given inner addresses of each side
/// (`pick` chooses them from an [`Inner`]), with `start_action = none`.
pub fn child(name: &str, me: Inner, peer: Inner, pick: fn(Inner) -> Vec<IpAddr>) -> Child {
    let l: Vec<String> = pick(me).into_iter().map(net).collect();
    let r: Vec<String> = pick(peer).into_iter().map(net).collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    let r: Vec<&str> = r.iter().map(String::as_str).collect();
    Child::new(name, &l, &r)
}

/// The first IPv4 subnet (10.96.x.0/24).
pub fn v4_first(i: Inner) -> Vec<IpAddr> {
    vec![i.v4[0].into()]
}

/// The second IPv4 subnet (10.97.x.0/24).
pub fn v4_second(i: Inner) -> Vec<IpAddr> {
    vec![i.v4[1].into()]
}

/// The first IPv4 subnet and the IPv6 one (fd00:96:x::/48).
pub fn v4_first_and_v6(i: Inner) -> Vec<IpAddr> {
    vec![i.v4[0].into(), i.v6.into()]
}

/// Every inner subnet: 10.96.x.0/24, 10.97.x.0/24 and fd00:96:x::/48.
pub fn all_inner(i: Inner) -> Vec<IpAddr> {
    vec![i.v4[0].into(), i.v4[1].into(), i.v6.into()]
}

/// The two sides' configurations, a initiating to b (`b_addr_for_a`), b answering any
/// peer, with pre-shared keys `secret_a` and `secret_b`, and no children yet.
pub fn psk_sides(topo: &Topology, secret_a: &str, secret_b: &str) -> (Side, Side) {
    let a = Side::new(
        topo.a_addr(),
        Some(topo.b_addr_for_a()),
        "a.esprit.test",
        Auth::Psk(secret_a.into()),
    );
    let b = Side::new(
        topo.b_addr(),
        None,
        "b.esprit.test",
        Auth::Psk(secret_b.into()),
    );
    (a, b)
}

/// [`psk_sides`] with the child `net` (10.96.x.0/24) on both sides; a's child has
/// `start_action`, b only answers.
pub fn psk_net(topo: &Topology, start_action: &str) -> (Side, Side) {
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (mut a, mut b) = psk_sides(topo, "e2e secret", "e2e secret");
    let mut c = child("net", ai, bi, v4_first);
    c.start_action = start_action.into();
    a.children.push(c);
    b.children.push(child("net", bi, ai, v4_first));
    (a, b)
}

/// Like [`psk_sides`] with certificates of `kind` from one CA that both sides trust,
/// DN identities (`C=CN, O=Local Cluster, CN=site-a` and `CN=site-b`), and no children
/// yet. With `untrusted`, that side's certificate comes from a second CA, one its peer
/// does not trust.
pub fn cert_sides(
    topo: &Topology,
    kind: KeyKind,
    untrusted: Option<Who>,
) -> io::Result<(Side, Side)> {
    let dir = topo.dir();
    let pki = Pki::new(kind)?;
    let ca = pki.write_ca(dir)?;
    let rogue = match untrusted {
        Some(_) => Some(Pki::new(kind)?),
        None => None,
    };
    let mut sides = Vec::new();
    for (who, local, remote) in [
        (Who::A, topo.a_addr(), Some(topo.b_addr_for_a())),
        (Who::B, topo.b_addr(), None),
    ] {
        let issuer = match &rogue {
            Some(r) if untrusted == Some(who) => r,
            _ => &pki,
        };
        let name = format!("site-{}", who.name());
        let leaf = issuer.issue(&name, &name)?;
        let (cert, key) = leaf.write(dir, &name)?;
        let auth = Auth::Cert {
            cert,
            key,
            ca: ca.clone(),
        };
        sides.push(Side::new(local, remote, &leaf.dn, auth));
    }
    let b = sides.pop().expect("two sides");
    let a = sides.pop().expect("two sides");
    Ok((a, b))
}

/// Two esprit daemons on a topology, stopped (then the topology torn down) on drop.
pub struct Bench {
    // Drop order is field order: the daemons go before their namespaces.
    daemons: [Option<Daemon>; 2],
    sides: [Side; 2],
    dirs: [PathBuf; 2],
    /// The network the daemons run on.
    pub topo: Topology,
}

impl Bench {
    /// Writes both configurations; starts nothing yet.
    pub fn new(topo: Topology, a: Side, b: Side) -> io::Result<Bench> {
        let dirs = [topo.dir().join("a"), topo.dir().join("b")];
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        Ok(Bench {
            daemons: [None, None],
            sides: [a, b],
            dirs,
            topo,
        })
    }

    /// [`Bench::new`], then starts b and a (the responder first, so that a's first
    /// message finds it listening) and waits until `child` is installed on both sides.
    pub fn up(topo: Topology, a: Side, b: Side, child: &str) -> Bench {
        let mut bench = Bench::new(topo, a, b).expect("bench");
        bench.start(Who::B);
        bench.start(Who::A);
        bench.wait_child(Who::A, child);
        bench.wait_child(Who::B, child);
        bench
    }

    /// Starts `who`'s daemon on its configuration (again, after [`Bench::kill`]).
    pub fn start(&mut self, who: Who) {
        let i = who.index();
        let ns = match who {
            Who::A => self.topo.a(),
            Who::B => self.topo.b(),
        };
        let d = Daemon::start(exe(), ns, &self.sides[i], &self.dirs[i])
            .unwrap_or_else(|e| panic!("starting esprit on {}: {e}", who.name()));
        self.daemons[i] = Some(d);
    }

    /// Starts `who`'s daemon on its configuration with `RUST_LOG=rust_log`.
    pub fn start_logged(&mut self, who: Who, rust_log: &str) {
        let i = who.index();
        let ns = match who {
            Who::A => self.topo.a(),
            Who::B => self.topo.b(),
        };
        let config = self.write_config(who, "");
        let d = Daemon::start_logged(exe(), ns, &config, &self.dirs[i], rust_log)
            .unwrap_or_else(|e| panic!("starting esprit on {}: {e}", who.name()));
        self.daemons[i] = Some(d);
    }

    /// Starts `who`'s daemon on its configuration with `extra` TOML (more
    /// connections) appended.
    pub fn start_extra(&mut self, who: Who, extra: &str) {
        let i = who.index();
        let ns = match who {
            Who::A => self.topo.a(),
            Who::B => self.topo.b(),
        };
        let config = self.write_config(who, extra);
        let d = Daemon::start_with(exe(), ns, &config, &self.dirs[i])
            .unwrap_or_else(|e| panic!("starting esprit on {}: {e}", who.name()));
        self.daemons[i] = Some(d);
    }

    /// Writes `who`'s configuration file with `extra` TOML appended; returns its path.
    pub fn write_config(&self, who: Who, extra: &str) -> PathBuf {
        let i = who.index();
        let config = self.config(who);
        let text = format!("{}{extra}", self.sides[i].toml(&self.dirs[i]));
        std::fs::write(&config, text).expect("writing the configuration");
        config
    }

    /// The running daemon of `who`.
    pub fn daemon(&self, who: Who) -> &Daemon {
        self.daemons[who.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("esprit on {} is not running", who.name()))
    }

    /// The daemon of `who`, mutable (to signal its process).
    pub fn daemon_mut(&mut self, who: Who) -> &mut Daemon {
        self.daemons[who.index()]
            .as_mut()
            .unwrap_or_else(|| panic!("esprit on {} is not running", who.name()))
    }

    /// `who`'s configuration file.
    pub fn config(&self, who: Who) -> PathBuf {
        self.dirs[who.index()].join("esprit.toml")
    }

    /// `who`'s status.
    /// Sends [`TRANSFER`] bytes over TCP from a to `to` through the tunnel and checks
    /// that all arrived with the same SHA-256.
    pub fn transfer(&self, to: IpAddr, port: u16) {
        let t = tcp_transfer(
            self.topo.a(),
            self.topo.b(),
            to,
            port,
            TRANSFER,
            TRANSFER_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("TCP transfer to {to}: {e}"));
        assert_eq!(t.bytes, TRANSFER, "bytes received from {to}");
        assert!(t.intact(), "sha256 differs for the transfer to {to}");
        eprintln!(
            "{} MB to {to} in {:?} ({:.2} Gbit/s)",
            TRANSFER / 1_000_000,
            t.elapsed,
            t.gbit_per_s()
        );
    }

    pub fn status(&self, who: Who) -> Status {
        self.daemon(who)
            .status()
            .unwrap_or_else(|e| panic!("status of {}: {e}", who.name()))
    }

    /// Waits until `child` is installed at `who`.
    pub fn wait_child(&self, who: Who, child: &str) -> Status {
        self.daemon(who)
            .wait_child(child, SETUP)
            .unwrap_or_else(|e| panic!("{}: {e}", who.name()))
    }

    /// Waits at most `timeout` until `check` accepts `who`'s status; `what` names it.
    pub fn wait_status<T>(
        &self,
        who: Who,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Status) -> Option<T>,
    ) -> T {
        let d = self.daemon(who);
        wait_ok(&format!("{} ({})", what, who.name()), timeout, POLL, || {
            let s = d.status()?;
            check(&s).ok_or_else(|| io::Error::other(s.to_string().trim().to_string()))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits at most `timeout` until `who`'s log has a line containing `needle`;
    /// returns that line.
    pub fn wait_log(&self, who: Who, needle: &str, timeout: Duration) -> String {
        let d = self.daemon(who);
        let what = format!("{needle:?} in the log of {}", who.name());
        wait_ok(&what, timeout, POLL, || {
            d.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
                .ok_or("not yet")
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGKILLs `who`'s daemon and reaps it; its log stays for [`Bench::start`] to
    /// append to.
    pub fn kill(&mut self, who: Who) {
        let mut d = self.daemons[who.index()]
            .take()
            .unwrap_or_else(|| panic!("esprit on {} is not running", who.name()));
        d.proc.signal(libc::SIGKILL).expect("SIGKILL");
        d.proc
            .wait_exit(Duration::from_secs(5))
            .expect("killed daemon exits");
    }

    /// Runs the esprit CLI with `args` (outside the namespaces: the control socket is a
    /// file), bounded by `timeout`.
    pub fn cli(&self, args: &[&str], timeout: Duration) -> Output {
        cli(args, timeout)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for who in [Who::A, Who::B] {
            let log = std::fs::read_to_string(self.dirs[who.index()].join("esprit.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- esprit log of {} (last {} lines) ---\n{}",
                who.name(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Runs `esprit ARGS` and waits at most `timeout` for it.
pub fn cli(args: &[&str], timeout: Duration) -> Output {
    let child = Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("esprit CLI");
    let pid = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        if start.elapsed() > timeout {
            // SAFETY: kill(2) on the PID of our own unreaped child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = waiter.join();
            panic!("esprit {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().expect("waiter").expect("esprit CLI output")
}

/// The IKE SAs of the connection in `s` that are established.
pub fn established(s: &Status) -> Vec<&IkeSaStatus> {
    s.ike_sas
        .iter()
        .filter(|sa| sa.state == "ESTABLISHED")
        .collect()
}

/// The child SAs named `name` in `s`, on every IKE SA (a rekey shows two for a while).
pub fn children<'a>(s: &'a Status, name: &str) -> Vec<&'a ChildSaStatus> {
    s.ike_sas
        .iter()
        .flat_map(|sa| sa.children.iter())
        .filter(|c| c.name == name)
        .collect()
}

/// Bytes in and out of the child SAs named `name`, summed.
pub fn child_bytes(s: &Status, name: &str) -> (u64, u64) {
    children(s, name)
        .iter()
        .fold((0, 0), |(i, o), c| (i + c.bytes_in, o + c.bytes_out))
}

/// A numeric counter of the inbound dataplane (`counters.inbound.NAME`).
pub fn inbound_counter(s: &Status, name: &str) -> u64 {
    s.counters.inbound[name].as_u64().unwrap_or(0)
}

/// A numeric counter of the outbound dataplane (`counters.outbound.NAME`).
pub fn outbound_counter(s: &Status, name: &str) -> u64 {
    s.counters.outbound[name].as_u64().unwrap_or(0)
}

/// How many lines of `log` contain `needle`.
pub fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}
