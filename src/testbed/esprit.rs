//! esprit daemons on the test bench: a configuration per side, written as the TOML a
//! user would write, a daemon started in a namespace, and its status read over the
//! control socket.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::control::{request, Request, Response};
use engine::status::Status;

use super::netns::Netns;
use super::proc::Proc;
use super::wait::wait_ok;

/// How a side authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Both sides share this key.
    Psk(String),
    /// Our certificate and key files, and the CA that must have signed the peer's.
    Cert {
        /// End-entity certificate (PEM).
        cert: PathBuf,
        /// Its private key (PEM).
        key: PathBuf,
        /// CA certificate (PEM).
        ca: PathBuf,
    },
}

/// One child SA of a side.
#[derive(Debug, Clone)]
pub struct Child {
    /// Name.
    pub name: String,
    /// Our subnets.
    pub local_ts: Vec<String>,
    /// The peer's subnets.
    pub remote_ts: Vec<String>,
    /// ESP proposals.
    pub esp_proposals: String,
    /// none, trap or start.
    pub start_action: String,
    /// clear, restart or trap.
    pub dpd_action: String,
    /// Rekey interval ("1h").
    pub rekey_time: Option<String>,
    /// The updown command.
    pub updown: Option<String>,
}

impl Child {
    /// A child with `start_action = none`, `dpd_action = clear`, AES-GCM-128.
    pub fn new(name: &str, local_ts: &[&str], remote_ts: &[&str]) -> Child {
        Child {
            name: name.into(),
            local_ts: local_ts.iter().map(|s| s.to_string()).collect(),
            remote_ts: remote_ts.iter().map(|s| s.to_string()).collect(),
            esp_proposals: "aes128gcm16".into(),
            start_action: "none".into(),
            dpd_action: "clear".into(),
            rekey_time: None,
            updown: None,
        }
    }
}

/// One side's configuration file, with one connection named `peer`.
#[derive(Debug, Clone)]
pub struct Side {
    /// Our address.
    pub local_addr: IpAddr,
    /// The peer's address (None: a responder for any peer).
    pub remote_addr: Option<IpAddr>,
    /// Our identity.
    pub local_id: String,
    /// The identity we require of the peer.
    pub remote_id: Option<String>,
    /// Authentication of both directions.
    pub auth: Auth,
    /// IKE proposals.
    pub proposals: String,
    /// DPD interval.
    pub dpd_delay: Option<String>,
    /// IKE rekey interval.
    pub rekey_time: Option<String>,
    /// NAT-T keepalive interval.
    pub keepalive: String,
    /// First retransmission timeout and retransmissions before giving up.
    pub retransmit: (String, u32),
    /// Child SAs.
    pub children: Vec<Child>,
}

/// The daemons' log filter unless a test asks for another.
const DEFAULT_LOG: &str = "info,engine=debug";

/// The name of the connection in every generated configuration.
pub const CONN: &str = "peer";

impl Side {
    /// A side with test-friendly timers (1 s first retransmission, 3 retries).
    pub fn new(
        local_addr: IpAddr,
        remote_addr: Option<IpAddr>,
        local_id: &str,
        auth: Auth,
    ) -> Side {
        Side {
            local_addr,
            remote_addr,
            local_id: local_id.into(),
            remote_id: None,
            auth,
            proposals: "aes128gcm16-prfsha256-x25519".into(),
            dpd_delay: None,
            rekey_time: None,
            keepalive: "20s".into(),
            retransmit: ("1s".into(), 3),
            children: Vec::new(),
        }
    }

    /// The TOML text, with the control socket and files in `dir`.
    pub fn toml(&self, dir: &Path) -> String {
        let q = |s: &str| format!("{s:?}");
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut t = String::new();
        let _ = writeln!(t, "[daemon]");
        let _ = writeln!(
            t,
            "control_socket = {}",
            q(&dir.join("esprit.sock").to_string_lossy())
        );
        let _ = writeln!(t, "keepalive = {}", q(&self.keepalive));
        let _ = writeln!(t, "retransmit_timeout = {}", q(&self.retransmit.0));
        let _ = writeln!(t, "retransmit_tries = {}", self.retransmit.1);
        let _ = writeln!(t, "[tun]\nname = \"esprit0\"\nmtu = 1400");
        let _ = writeln!(t, "[connections.{CONN}]");
        let _ = writeln!(t, "local_addrs = [{}]", q(&self.local_addr.to_string()));
        let remote = self
            .remote_addr
            .map_or("%any".to_string(), |a| a.to_string());
        let _ = writeln!(t, "remote_addrs = [{}]", q(&remote));
        let _ = writeln!(t, "proposals = [{}]", q(&self.proposals));
        if let Some(d) = &self.dpd_delay {
            let _ = writeln!(t, "dpd_delay = {}", q(d));
        }
        if let Some(r) = &self.rekey_time {
            let _ = writeln!(t, "rekey_time = {}", q(r));
        }
        let kind = match self.auth {
            Auth::Psk(_) => "psk",
            Auth::Cert { .. } => "pubkey",
        };
        let _ = writeln!(t, "[connections.{CONN}.local]\nauth = \"{kind}\"");
        let _ = writeln!(t, "id = {}", q(&self.local_id));
        if let Auth::Cert { cert, .. } = &self.auth {
            let _ = writeln!(t, "certs = [{}]", q(&cert.to_string_lossy()));
        }
        let _ = writeln!(t, "[connections.{CONN}.remote]\nauth = \"{kind}\"");
        if let Some(id) = &self.remote_id {
            let _ = writeln!(t, "id = {}", q(id));
        }
        if let Auth::Cert { ca, .. } = &self.auth {
            let _ = writeln!(t, "cacerts = [{}]", q(&ca.to_string_lossy()));
        }
        for c in &self.children {
            let _ = writeln!(t, "[connections.{CONN}.children.{}]", c.name);
            let _ = writeln!(t, "local_ts = {}", list(&c.local_ts));
            let _ = writeln!(t, "remote_ts = {}", list(&c.remote_ts));
            let _ = writeln!(t, "esp_proposals = [{}]", q(&c.esp_proposals));
            let _ = writeln!(t, "start_action = {}", q(&c.start_action));
            let _ = writeln!(t, "dpd_action = {}", q(&c.dpd_action));
            if let Some(r) = &c.rekey_time {
                let _ = writeln!(t, "rekey_time = {}", q(r));
            }
            if let Some(u) = &c.updown {
                let _ = writeln!(t, "updown = {}", q(u));
            }
        }
        match &self.auth {
            Auth::Psk(secret) => {
                let _ = writeln!(t, "[secrets.ike-test]\nsecret = {}", q(secret));
            }
            Auth::Cert { key, .. } => {
                let _ = writeln!(
                    t,
                    "[secrets.private.me]\nfile = {}",
                    q(&key.to_string_lossy())
                );
            }
        }
        t
    }
}

/// A running esprit daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub proc: Proc,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Writes `side`'s configuration into `dir` (which must exist) and starts
    /// `exe run -c FILE` in `ns`, logging to `dir/esprit.log`; returns once the control
    /// socket answers.
    pub fn start(exe: &Path, ns: &Netns, side: &Side, dir: &Path) -> io::Result<Daemon> {
        let config = dir.join("esprit.toml");
        std::fs::write(&config, side.toml(dir))?;
        Self::start_with(exe, ns, &config, dir)
    }

    /// Writes `toml` to `dir/esprit.toml` (creating `dir`) and starts a daemon on it.
    pub fn start_toml(exe: &Path, ns: &Netns, dir: &Path, toml: &str) -> io::Result<Daemon> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("esprit.toml");
        std::fs::write(&config, toml)?;
        Self::start_with(exe, ns, &config, dir)
    }

    /// Starts a daemon on an existing configuration file.
    pub fn start_with(exe: &Path, ns: &Netns, config: &Path, dir: &Path) -> io::Result<Daemon> {
        Self::start_wrapped(&[], exe, ns, config, dir)
    }

    /// Starts a daemon through a wrapper command (`wrapper... exe run -c CONFIG`), e.g.
    /// `setpriv` to drop capabilities.
    pub fn start_wrapped(
        wrapper: &[&str],
        exe: &Path,
        ns: &Netns,
        config: &Path,
        dir: &Path,
    ) -> io::Result<Daemon> {
        Self::spawn(wrapper, exe, ns, config, dir, DEFAULT_LOG)
    }

    /// Starts a daemon on an existing configuration file with `RUST_LOG=rust_log`.
    pub fn start_logged(
        exe: &Path,
        ns: &Netns,
        config: &Path,
        dir: &Path,
        rust_log: &str,
    ) -> io::Result<Daemon> {
        Self::spawn(&[], exe, ns, config, dir, rust_log)
    }

    fn spawn(
        wrapper: &[&str],
        exe: &Path,
        ns: &Netns,
        config: &Path,
        dir: &Path,
        rust_log: &str,
    ) -> io::Result<Daemon> {
        let exe = exe.to_string_lossy();
        let cfg = config.to_string_lossy();
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend([&*exe, "run", "-c", &*cfg]);
        let proc = ns.spawn(&argv, &[("RUST_LOG", rust_log)], &dir.join("esprit.log"))?;
        Self::adopt(proc, config, dir)
    }

    /// Takes over a daemon started some other way (say, with an inherited descriptor)
    /// whose control socket is `dir/esprit.sock`; returns once the socket answers.
    pub fn adopt(mut proc: Proc, config: &Path, dir: &Path) -> io::Result<Daemon> {
        let socket = dir.join("esprit.sock");
        // A configuration of tens of thousands of connections (tests/e2e_scale.rs)
        // takes seconds to parse and start on shared cores: 5 s more per MiB of it.
        let mib = std::fs::metadata(config).map_or(0, |m| m.len()) >> 20;
        let up = wait_ok(
            "the esprit control socket",
            Duration::from_secs(10 + 5 * mib),
            Duration::from_millis(20),
            || request(&socket, &Request::Summary, Duration::from_secs(2)).map(|_| ()),
        );
        if let Err(e) = up {
            let log = proc.log();
            let _ = proc.stop();
            return Err(io::Error::other(format!("{e}\n--- esprit log ---\n{log}")));
        }
        Ok(Daemon {
            proc,
            config: config.to_path_buf(),
            socket,
        })
    }

    /// The daemon's status.
    pub fn status(&self) -> io::Result<Status> {
        match request(&self.socket, &Request::Status, Duration::from_secs(5))? {
            Response::Status(s) => Ok(*s),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// The bytes of one `status` answer as they come off the control socket, up to the
    /// daemon's close (the streamed report, unparsed).
    pub fn status_bytes(&self, timeout: Duration) -> io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        let mut sock = std::os::unix::net::UnixStream::connect(&self.socket)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        let mut line = serde_json::to_vec(&Request::Status)?;
        line.push(b'\n');
        sock.write_all(&line)?;
        let mut bytes = Vec::new();
        sock.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The daemon's counters and SA counts, without the SA list (`{"cmd":"summary"}`).
    pub fn summary(&self) -> io::Result<Status> {
        match request(&self.socket, &Request::Summary, Duration::from_secs(5))? {
            Response::Status(s) => Ok(*s),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends a command; an error answer is an error.
    pub fn command(&self, req: &Request) -> io::Result<String> {
        match request(&self.socket, req, Duration::from_secs(5))? {
            Response::Ok { message } => Ok(message),
            Response::Error { message } => Err(io::Error::other(message)),
            Response::Status(_) => Ok(String::new()),
        }
    }

    /// Waits until `child` of the connection is installed; returns the status then.
    pub fn wait_child(&self, child: &str, timeout: Duration) -> io::Result<Status> {
        let what = format!("child SA {CONN}.{child} installed");
        wait_ok(&what, timeout, Duration::from_millis(20), || {
            let s = self.status()?;
            if s.ike_sas
                .iter()
                .any(|sa| sa.state == "ESTABLISHED" && sa.children.iter().any(|c| c.name == child))
            {
                Ok(s)
            } else {
                Err(io::Error::other(format!(
                    "not yet: {}",
                    s.to_string().trim()
                )))
            }
        })
        .map_err(|e| io::Error::other(format!("{e}\n--- esprit log ---\n{}", self.proc.log())))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}
