//! charon (strongSwan 5.9, kernel-libipsec) as the peer of a matrix case: its swanctl.conf
//! written from a [`Conn`], the daemon started in a namespace with the recipe of
//! `tests/strongswan/lib.sh`, driven and read through `swanctl`.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use esprit::testbed::{Netns, Proc};

/// The shell library that knows how to run charon in a namespace.
pub const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/strongswan/lib.sh");
/// Debian's charon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// The connection name in every generated swanctl.conf.
pub const CONN: &str = "peer";

/// Runs `script` after sourcing lib.sh, with `env` set; stdout and stderr on success,
/// both as the error otherwise.
pub fn sh(script: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; source {LIB}; {script}"))
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("bash: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{script}` failed: {}", text.trim()))
    }
}

/// `/usr/lib/ipsec/charon --version`, e.g. "Linux strongSwan 5.9.8".
pub fn version() -> String {
    Command::new(CHARON)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// How charon authenticates (both directions the same way).
#[derive(Debug, Clone)]
pub enum Auth {
    /// A pre-shared key.
    Psk(String),
    /// Our certificate and key, the root CA (the only trust anchor), and the
    /// intermediate CAs of our own chain: loaded as plain certificates, not trusted,
    /// so that charon sends them and still needs the peer's intermediates from its
    /// IKE_AUTH.
    Cert {
        /// End-entity certificate (PEM).
        cert: PathBuf,
        /// Its private key (PEM, any format `pki` writes).
        key: PathBuf,
        /// The root CA certificate.
        root: PathBuf,
        /// Intermediate CA certificates.
        intermediates: Vec<PathBuf>,
    },
}

/// One child of the connection.
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
}

/// charon's one connection, named [`CONN`], and the daemon's timers.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Our address.
    pub local_addr: IpAddr,
    /// The peer's address; `None` answers anyone (`%any`).
    pub remote_addr: Option<IpAddr>,
    /// IKE proposals.
    pub proposals: String,
    /// Our identity.
    pub local_id: String,
    /// The identity we require of the peer.
    pub remote_id: String,
    /// Authentication.
    pub auth: Auth,
    /// DPD interval, e.g. "2s".
    pub dpd_delay: Option<String>,
    /// Retransmissions before charon gives up on a request (1 s first timeout).
    pub retransmit_tries: u32,
    /// Child SAs.
    pub children: Vec<Child>,
}

impl Conn {
    /// The swanctl.conf text; certificate files are named as [`Charon::start`] copies them.
    pub fn swanctl_conf(&self) -> String {
        let remote = self
            .remote_addr
            .map_or_else(|| "%any".to_string(), |a| a.to_string());
        let (kind, certs) = match &self.auth {
            Auth::Psk(_) => ("psk", String::new()),
            Auth::Cert { .. } => ("pubkey", "            certs = own.pem\n".to_string()),
        };
        let mut t = String::new();
        let _ = writeln!(t, "connections {{\n    {CONN} {{");
        let _ = writeln!(t, "        version = 2");
        let _ = writeln!(t, "        local_addrs = {}", self.local_addr);
        let _ = writeln!(t, "        remote_addrs = {remote}");
        let _ = writeln!(t, "        proposals = {}", self.proposals);
        let _ = writeln!(t, "        fragmentation = yes");
        if let Some(d) = &self.dpd_delay {
            let _ = writeln!(t, "        dpd_delay = {d}");
        }
        let _ = writeln!(
            t,
            "        local {{\n            auth = {kind}\n            id = \"{}\"\n{certs}        }}",
            self.local_id
        );
        let _ = writeln!(
            t,
            "        remote {{\n            auth = {kind}\n            id = \"{}\"\n        }}",
            self.remote_id
        );
        let _ = writeln!(t, "        children {{");
        for c in &self.children {
            let _ = writeln!(t, "            {} {{", c.name);
            let _ = writeln!(t, "                local_ts = {}", c.local_ts.join(","));
            let _ = writeln!(t, "                remote_ts = {}", c.remote_ts.join(","));
            let _ = writeln!(t, "                esp_proposals = {}", c.esp_proposals);
            let _ = writeln!(t, "                start_action = none");
            let _ = writeln!(t, "                dpd_action = clear");
            let _ = writeln!(t, "            }}");
        }
        let _ = writeln!(t, "        }}\n    }}\n}}");
        if let Auth::Psk(secret) = &self.auth {
            let _ = writeln!(
                t,
                "secrets {{\n    ike-1 {{\n        id-1 = \"{}\"\n        id-2 = \"{}\"\n        secret = \"{secret}\"\n    }}\n}}",
                self.local_id, self.remote_id
            );
        }
        t
    }
}

/// A running charon; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Charon {
    dir: PathBuf,
    proc: Proc,
}

/// The filelog levels: `ike = 2` prints the exchanges' payload lists ("parsed
/// CREATE_CHILD_SA request 2 [ N(REKEY_SA) SA No KE TSi TSr ]"), which the lifecycle
/// cases read as evidence.
const LOG_LEVELS: &str = "default = 1\nike = 2\ncfg = 2\nchd = 1\nnet = 1\nenc = 1";

impl Charon {
    /// Writes the instance in `dir` (strongswan.conf, swanctl.conf, credentials), starts
    /// charon in `ns` and loads the configuration.
    pub fn start(ns: &Netns, dir: &Path, conn: &Conn) -> Result<Charon, String> {
        Self::start_conf(ns, dir, conn, &conn.swanctl_conf(), "")
    }

    /// [`Charon::start`] with this swanctl.conf text instead of `conn`'s (which still
    /// gives the credentials and timers), and `charon_extra` inside strongswan.conf's
    /// `charon { }`: for settings `Conn` does not model, such as pools and virtual IPs.
    pub fn start_conf(
        ns: &Netns,
        dir: &Path,
        conn: &Conn,
        swanctl_conf: &str,
        charon_extra: &str,
    ) -> Result<Charon, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = dir.to_string_lossy().into_owned();
        // Short retransmissions: the DPD case waits for charon to give up on a peer.
        let extra = format!(
            "retransmit_timeout = 1.0\nretransmit_tries = {}\n{charon_extra}",
            conn.retransmit_tries
        );
        // ESPRIT_CHARON_LOG_LEVELS overrides the filelog levels (captures for golden
        // tests want `net = 3` packet dumps and `ike = 4` keys).
        let levels = std::env::var("ESPRIT_CHARON_LOG_LEVELS")
            .map(|l| l.replace(';', "\n"))
            .unwrap_or_else(|_| LOG_LEVELS.to_string());
        sh(
            "sw_write_strongswan_conf \"$D\" \"$LEVELS\" \"$EXTRA\"",
            &[("D", &d), ("LEVELS", &levels), ("EXTRA", &extra)],
        )?;
        let swanctl = dir.join("swanctl");
        let copy = |from: &Path, sub: &str, name: &str| {
            fs::copy(from, swanctl.join(sub).join(name))
                .map(drop)
                .map_err(|e| format!("{}: {e}", from.display()))
        };
        if let Auth::Cert {
            cert,
            key,
            root,
            intermediates,
        } = &conn.auth
        {
            copy(cert, "x509", "own.pem")?;
            copy(key, "private", "own.key")?;
            copy(root, "x509ca", "root.pem")?;
            for (i, ca) in intermediates.iter().enumerate() {
                copy(ca, "x509", &format!("intermediate{i}.pem"))?;
            }
        }
        fs::write(swanctl.join("swanctl.conf"), swanctl_conf).map_err(|e| e.to_string())?;
        let conf = dir.join("strongswan.conf");
        // charon hard-codes /run/charon.pid: give it its own /run (lib.sh's recipe;
        // `ip netns exec` already runs in a private mount namespace).
        let proc = ns
            .spawn(
                &[
                    "sh",
                    "-c",
                    "mount --bind \"$1/run\" /run && exec \"$2\"",
                    "sh",
                    &d,
                    CHARON,
                ],
                &[("STRONGSWAN_CONF", &conf.to_string_lossy())],
                &dir.join("charon.out"),
            )
            .map_err(|e| e.to_string())?;
        fs::write(dir.join("charon.pid"), format!("{}\n", proc.pid()))
            .map_err(|e| e.to_string())?;
        let charon = Charon {
            dir: dir.to_path_buf(),
            proc,
        };
        sh("sw_wait_vici \"$D\" 15 && sw_load \"$D\"", &[("D", &d)])?;
        Ok(charon)
    }

    fn dir_env(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// `swanctl ARGS` against this instance.
    pub fn swanctl(&self, args: &str) -> Result<String, String> {
        sh(
            &format!("sw_swanctl \"$D\" {args}"),
            &[("D", &self.dir_env())],
        )
    }

    /// Initiates `child` (and the IKE SA, or reuses it); returns when charon is done.
    pub fn initiate(&self, child: &str) -> Result<(), String> {
        sh(
            &format!("sw_initiate \"$D\" {child} '' 20"),
            &[("D", &self.dir_env())],
        )
        .map(drop)
    }

    /// Starts a rekey of the child SA `child`.
    pub fn rekey_child(&self, child: &str) -> Result<(), String> {
        sh(
            &format!("sw_rekey \"$D\" --child {child}"),
            &[("D", &self.dir_env())],
        )
        .map(drop)
    }

    /// Starts a rekey of the IKE SA.
    pub fn rekey_ike(&self) -> Result<(), String> {
        sh(
            &format!("sw_rekey \"$D\" --ike {CONN}"),
            &[("D", &self.dir_env())],
        )
        .map(drop)
    }

    /// Deletes the IKE SA (and its children) at the peer; returns when done.
    pub fn terminate(&self) -> Result<(), String> {
        sh(
            &format!("sw_terminate \"$D\" {CONN} 10"),
            &[("D", &self.dir_env())],
        )
        .map(drop)
    }

    /// The SAs as `swanctl --list-sas` shows them.
    pub fn sas(&self) -> Result<Vec<IkeSa>, String> {
        self.swanctl("--list-sas").map(|t| parse_list_sas(&t))
    }

    /// Kills charon with SIGKILL: it vanishes without a DELETE, for the DPD case.
    pub fn kill(&mut self) -> Result<(), String> {
        self.proc
            .signal(libc::SIGKILL)
            .and_then(|()| self.proc.wait_exit(Duration::from_secs(5)).map(drop))
            .map_err(|e| format!("killing charon: {e}"))
    }

    /// charon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

/// An IKE SA in `swanctl --list-sas`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkeSa {
    /// Connection name.
    pub name: String,
    /// ESTABLISHED, REKEYING, DELETING, ...
    pub state: String,
    /// Initiator SPI (hex).
    pub spi_i: String,
    /// Responder SPI (hex).
    pub spi_r: String,
    /// The peer's address and port as charon sees them, e.g. "192.0.2.1[4500]".
    pub remote_addr: String,
    /// Negotiated algorithms, e.g. "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519".
    pub proposal: String,
    /// Child SAs.
    pub children: Vec<ChildSa>,
}

/// A child SA in `swanctl --list-sas`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSa {
    /// Child name.
    pub name: String,
    /// INSTALLED, REKEYED, DELETING, ...
    pub state: String,
    /// ESP algorithms, e.g. "AES_GCM_16-128" or "AES_GCM_16-256/ECP_256".
    pub proposal: String,
    /// Inbound SPI (hex).
    pub spi_in: String,
    /// Outbound SPI (hex).
    pub spi_out: String,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// Parses `swanctl --list-sas` text.
pub fn parse_list_sas(text: &str) -> Vec<IkeSa> {
    let mut sas: Vec<IkeSa> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 && t.contains(", IKEv2, ") {
            // "peer: #1, ESTABLISHED, IKEv2, 0123..._i* 4567..._r"
            let (name, rest) = t.split_once(": ").unwrap_or((t, ""));
            let fields: Vec<&str> = rest.split(", ").collect();
            let spis: Vec<&str> = fields.get(3).map_or(vec![], |s| s.split(' ').collect());
            let spi = |i: usize, suffix: &str| {
                spis.get(i)
                    .map(|s| s.trim_end_matches('*').trim_end_matches(suffix).to_string())
                    .unwrap_or_default()
            };
            sas.push(IkeSa {
                name: name.to_string(),
                state: fields.get(1).unwrap_or(&"").to_string(),
                spi_i: spi(0, "_i"),
                spi_r: spi(1, "_r"),
                ..IkeSa::default()
            });
            continue;
        }
        let Some(sa) = sas.last_mut() else { continue };
        if indent == 2 && t.contains(", reqid ") {
            // "net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128"
            let (name, rest) = t.split_once(": ").unwrap_or((t, ""));
            let fields: Vec<&str> = rest.split(", ").collect();
            sa.children.push(ChildSa {
                name: name.to_string(),
                state: fields.get(2).unwrap_or(&"").to_string(),
                proposal: rest
                    .split_once("ESP:")
                    .map_or("", |(_, p)| p.trim())
                    .to_string(),
                ..ChildSa::default()
            });
        } else if indent == 2 && t.starts_with("remote ") {
            // "remote 'site-a' @ 192.0.2.1[4500]"
            sa.remote_addr = t.rsplit(" @ ").next().unwrap_or("").to_string();
        } else if indent == 2 && !t.contains(' ') && t.contains('/') {
            sa.proposal = t.to_string();
        } else if indent == 4 && (t.starts_with("in ") || t.starts_with("out ")) {
            let Some(child) = sa.children.last_mut() else {
                continue;
            };
            // "in  c122f842, 1348365 bytes, 16057 packets, 0s ago"
            let mut words = t.split_whitespace();
            let dir = words.next().unwrap_or("");
            let spi = words
                .next()
                .unwrap_or("")
                .trim_end_matches(',')
                .split('(')
                .next()
                .unwrap_or("")
                .to_string();
            let bytes = t
                .split(", ")
                .find_map(|f| f.trim().strip_suffix(" bytes"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if dir == "in" {
                child.spi_in = spi;
                child.bytes_in = bytes;
            } else {
                child.spi_out = spi;
                child.bytes_out = bytes;
            }
        }
    }
    sas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_sas_parses() {
        let text = "\
peer: #2, ESTABLISHED, IKEv2, e2326b99f4d0669c_i e2f390ece69821c5_r*
  local  'site-b' @ 192.0.2.2[4500]
  remote 'site-a' @ 192.0.2.1[4500]
  AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519
  established 3s ago, rekeying in 13721s
  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256/ECP_256
    installed 3s ago, rekeying in 3237s, expires in 3957s
    in  ebcbc3e1,   1348365 bytes, 16057 packets,     0s ago
    out df8d56bc,      0 bytes,     0 packets
    local  10.96.2.0/24
    remote 10.96.1.0/24
";
        let sas = parse_list_sas(text);
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(
            (sa.name.as_str(), sa.state.as_str()),
            ("peer", "ESTABLISHED")
        );
        assert_eq!(
            (sa.spi_i.as_str(), sa.spi_r.as_str()),
            ("e2326b99f4d0669c", "e2f390ece69821c5")
        );
        assert_eq!(sa.proposal, "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519");
        assert_eq!(sa.remote_addr, "192.0.2.1[4500]");
        let c = &sa.children[0];
        assert_eq!(
            (c.name.as_str(), c.state.as_str(), c.proposal.as_str()),
            ("net", "INSTALLED", "AES_GCM_16-256/ECP_256")
        );
        assert_eq!((c.spi_in.as_str(), c.bytes_in), ("ebcbc3e1", 1_348_365));
        assert_eq!((c.spi_out.as_str(), c.bytes_out), ("df8d56bc", 0));
    }
}
