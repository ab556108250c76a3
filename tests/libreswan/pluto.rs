//! libreswan 4.10's `pluto` as a test peer, run from Debian's package unpacked (not
//! installed: it conflicts with the strongSwan packages) by `test.sh` into a cache folder.
//!
//! Each instance has its own folder: `ipsec.conf` (one connection, [`CONN`]),
//! `ipsec.secrets`, an NSS database with the CA and our certificate and key, the run
//! folder with the control socket `pluto.ctl`, and `pluto.log`. pluto runs with
//! `--nofork` inside the peer's namespace; it insists on running
//! `/usr/libexec/ipsec/addconn` to load the connection, so the child first bind-mounts the
//! unpacked `usr/libexec` there (the namespace's command has a private mount namespace,
//! so the mount stays its own). `whack` drives it from outside over the control socket.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use esprit::testbed::netns::run_checked;
use esprit::testbed::{tools, wait_ok, Netns, Proc};

/// Where `test.sh` unpacks libreswan when `ESPRIT_LIBRESWAN_DIR` is not set.
pub const DEFAULT_DIR: &str = "/var/cache/esprit-tests/libreswan";
/// Overrides [`DEFAULT_DIR`] (test.sh honours it too).
pub const DIR_ENV: &str = "ESPRIT_LIBRESWAN_DIR";
/// The connection name in every generated ipsec.conf.
pub const CONN: &str = "peer";
/// How long pluto may take to start and load its connection.
const START: Duration = Duration::from_secs(15);
/// Bound on one `whack` command.
const WHACK: Duration = Duration::from_secs(20);

/// The folder `test.sh` unpacked Debian's libreswan package into (`root/` inside).
pub fn cache_dir() -> PathBuf {
    std::env::var_os(DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
}

/// The unpacked tree (`<cache>/root`, as `dpkg -x` made it), checked: pluto, whack and
/// addconn are there and run, and NSS's `certutil` and `pk12util` are installed. The
/// error says what to run.
pub fn root() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let root = dir.join("root");
    let fix = format!(
        "run `sudo ./test.sh --test libreswan_interop` once: it fetches Debian's libreswan \
         4.10 (`apt-get download libreswan`), unpacks it with `dpkg -x` into {} (or \
         ${DIR_ENV}) and installs its libraries (libnss3-tools, libldns3, \
         libevent-pthreads-2.1-7, libunbound8, libcurl3-nss ...)",
        dir.display()
    );
    for prog in ["pluto", "whack", "addconn"] {
        let p = root.join("usr/libexec/ipsec").join(prog);
        if !p.is_file() {
            return Err(format!(
                "libreswan's {prog} is missing ({} does not exist): {fix}",
                p.display()
            ));
        }
    }
    let pluto = root.join("usr/libexec/ipsec/pluto");
    let out = Command::new(&pluto)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}: {fix}", pluto.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed ({}: {}): its libraries are probably missing: {fix}",
            pluto.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    for prog in ["certutil", "pk12util"] {
        tools::require(prog).map_err(|e| format!("{e}: {fix}"))?;
    }
    Ok(root)
}

/// `pluto --version`, e.g. "Libreswan 4.10".
pub fn version(root: &Path) -> String {
    Command::new(root.join("usr/libexec/ipsec/pluto"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .take(2)
                .map(str::to_string)
                .reduce(|a, b| format!("{a} {b}"))
        })
        .unwrap_or_else(|| "libreswan (unknown version)".into())
}

/// How pluto authenticates (both directions the same way).
#[derive(Debug, Clone)]
pub enum Auth {
    /// A pre-shared key; identities are FQDNs.
    Psk(String),
    /// Certificates: ours and its key (PEM) and the CA (PEM); `ecdsa` picks
    /// `authby=ecdsa`, else `authby=rsasig`.
    Cert {
        /// Our certificate.
        cert_pem: String,
        /// Its private key (PKCS#8).
        key_pem: String,
        /// The CA that signed both sides' certificates.
        ca_pem: String,
        /// ECDSA (else RSA).
        ecdsa: bool,
    },
}

/// pluto's one connection, [`CONN`].
#[derive(Debug, Clone)]
pub struct Conn {
    /// Our address (`left`).
    pub local_addr: IpAddr,
    /// The peer's address (`right`).
    pub remote_addr: IpAddr,
    /// Our identity: an FQDN for PSK ("pluto.example"); with certificates the subject is
    /// used (`%fromcert`).
    pub local_id: String,
    /// The peer's identity: an FQDN or a DN in strongSwan's notation.
    pub remote_id: String,
    /// Authentication.
    pub auth: Auth,
    /// `ike=`, e.g. "aes_gcm128-sha2_256-dh31".
    pub ike: String,
    /// `esp=`, e.g. "aes_gcm128".
    pub esp: String,
    /// Our subnet.
    pub local_subnet: String,
    /// The peer's subnet.
    pub remote_subnet: String,
    /// More `key=value` lines for the connection, e.g. "initial-contact=yes".
    pub extra: Vec<String>,
}

impl Conn {
    /// The ipsec.conf text for an instance in `dir`.
    pub fn ipsec_conf(&self, dir: &Path) -> String {
        let d = dir.display();
        let id = |s: &str| {
            if s.contains('=') {
                format!("\"{s}\"")
            } else {
                format!("@{s}")
            }
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "config setup\n    logfile={d}/pluto.log\n    dumpdir={d}/run"
        );
        let _ = writeln!(t, "    plutodebug=none\n    uniqueids=yes\n");
        let _ = writeln!(t, "conn {CONN}");
        let _ = writeln!(t, "    ikev2=insist");
        let _ = writeln!(t, "    left={}", self.local_addr);
        let _ = writeln!(t, "    leftsubnet={}", self.local_subnet);
        let _ = writeln!(t, "    right={}", self.remote_addr);
        let _ = writeln!(t, "    rightsubnet={}", self.remote_subnet);
        let _ = writeln!(t, "    rightid={}", id(&self.remote_id));
        match &self.auth {
            Auth::Psk(_) => {
                let _ = writeln!(t, "    leftid={}", id(&self.local_id));
                let _ = writeln!(t, "    authby=secret");
            }
            Auth::Cert { ecdsa, .. } => {
                let _ = writeln!(
                    t,
                    "    leftid=%fromcert\n    leftcert=own\n    rightca=%same"
                );
                let by = if *ecdsa { "ecdsa" } else { "rsasig" };
                let _ = writeln!(t, "    authby={by}");
            }
        }
        let _ = writeln!(t, "    ike={}\n    esp={}", self.ike, self.esp);
        // Short retransmissions: a test waits seconds, not minutes.
        let _ = writeln!(t, "    retransmit-interval=500\n    retransmit-timeout=10s");
        for line in &self.extra {
            let _ = writeln!(t, "    {line}");
        }
        let _ = writeln!(t, "    auto=add");
        t
    }

    /// The ipsec.secrets text (empty with certificates: keys live in NSS).
    pub fn ipsec_secrets(&self) -> String {
        match &self.auth {
            Auth::Psk(secret) => format!(
                "@{} @{} : PSK \"{secret}\"\n",
                self.local_id, self.remote_id
            ),
            Auth::Cert { .. } => String::new(),
        }
    }
}

/// A running pluto; stopped (SIGTERM, then SIGKILL, by PID) on drop.
#[derive(Debug)]
pub struct Pluto {
    root: PathBuf,
    dir: PathBuf,
    proc: Proc,
}

impl Pluto {
    /// Writes the instance into `dir` (created), starts pluto in `ns` and waits until it
    /// listens with the connection loaded.
    pub fn start(root: &Path, ns: &Netns, dir: &Path, conn: &Conn) -> Result<Pluto, String> {
        let err = |what: &str, e: &dyn std::fmt::Display| format!("pluto {what}: {e}");
        for sub in ["run", "nss", "ipsec.d"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| err("folder", &e))?;
        }
        fs::write(dir.join("ipsec.conf"), conn.ipsec_conf(dir)).map_err(|e| err("conf", &e))?;
        fs::write(dir.join("ipsec.secrets"), conn.ipsec_secrets())
            .map_err(|e| err("secrets", &e))?;
        nss_db(dir, &conn.auth).map_err(|e| err("NSS database", &e))?;
        let d = |sub: &str| dir.join(sub).to_string_lossy().into_owned();
        let libexec = root.join("usr/libexec").to_string_lossy().into_owned();
        let pluto = root
            .join("usr/libexec/ipsec/pluto")
            .to_string_lossy()
            .into_owned();
        let argv = [
            "sh",
            "-c",
            "mount --bind \"$1\" /usr/libexec && shift && exec \"$@\"",
            "sh",
            &libexec,
            &pluto,
            "--nofork",
            "--config",
            &d("ipsec.conf"),
            "--rundir",
            &d("run"),
            "--nssdir",
            &d("nss"),
            "--secretsfile",
            &d("ipsec.secrets"),
            "--ipsecdir",
            &d("ipsec.d"),
            "--logfile",
            &d("pluto.log"),
        ];
        let proc = ns
            .spawn(&argv, &[], &dir.join("pluto.out"))
            .map_err(|e| err("start", &e))?;
        let mut pluto = Pluto {
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            proc,
        };
        let ready = wait_ok(
            "pluto to listen with its connection loaded",
            START,
            Duration::from_millis(50),
            || {
                if !pluto.proc.is_running() {
                    return Ok(Err("pluto exited"));
                }
                let log = pluto.log();
                let ctl = pluto.dir.join("run/pluto.ctl").exists();
                if ctl
                    && log.contains("listening for IKE messages")
                    && log.contains(&format!("\"{CONN}\": added IKEv2 connection"))
                {
                    Ok(Ok(()))
                } else {
                    Err("not yet")
                }
            },
        );
        match ready {
            Ok(Ok(())) => Ok(pluto),
            Ok(Err(e)) => Err(format!("{e}\n{}", pluto.dump())),
            Err(e) => Err(format!("{e}\n{}", pluto.dump())),
        }
    }

    /// `whack --ctlsocket RUN/pluto.ctl ARGS`, bounded; its output, or an error with it.
    pub fn whack(&self, args: &[&str]) -> Result<String, String> {
        let whack = self.root.join("usr/libexec/ipsec/whack");
        let ctl = self.dir.join("run/pluto.ctl");
        let mut cmd = Command::new("timeout");
        cmd.arg(WHACK.as_secs().to_string())
            .arg(&whack)
            .arg("--ctlsocket")
            .arg(&ctl)
            .args(args);
        run_checked(&mut cmd)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| e.to_string())
    }

    /// Starts an initiation of [`CONN`] and returns at once (`--asynchronous`).
    pub fn initiate(&self) -> Result<(), String> {
        self.whack(&["--name", CONN, "--initiate", "--asynchronous"])
            .map(drop)
    }

    /// Deletes the connection's SAs and stops pluto from reviving it.
    pub fn terminate(&self) -> Result<(), String> {
        self.whack(&["--name", CONN, "--terminate"]).map(drop)
    }

    /// The states `whack --status` lists, e.g. `#2: "peer":4500
    /// STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); ...`.
    pub fn states(&self) -> Result<Vec<String>, String> {
        Ok(self
            .whack(&["--status"])?
            .lines()
            .filter_map(|l| l.strip_prefix("000 #"))
            .map(|l| format!("#{l}"))
            .collect())
    }

    /// Whether pluto is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// pluto's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pluto.log")).unwrap_or_default()
    }

    /// The log (without debug lines) and stdout, for an error message.
    pub fn dump(&self) -> String {
        let text = self.log();
        let log: Vec<&str> = text.lines().filter(|l| !l.contains(": | ")).collect();
        let tail = &log[log.len().saturating_sub(60)..];
        format!(
            "--- pluto.log (last {} lines) ---\n{}\n--- pluto stdout/stderr ---\n{}",
            tail.len(),
            tail.join("\n"),
            fs::read_to_string(self.dir.join("pluto.out")).unwrap_or_default()
        )
    }
}

/// What pluto's log says about the IKE and child SAs of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogView {
    /// "initiator established IKE SA; authenticated peer ..." or the responder's line,
    /// from "established" on, one per IKE SA.
    pub established: Vec<String>,
    /// The IKE algorithms, e.g. "cipher=AES_GCM_16_128 integ=n/a prf=HMAC_SHA2_256
    /// group=DH31".
    pub ike_algs: Option<String>,
    /// Outbound ESP SPIs pluto tried to install (`Add SA esp.SPI@ADDR`), with the
    /// kernel's answer: the SPIs the peer chose for its inbound SA.
    pub add_sa: Vec<(u32, String)>,
    /// The ESP proposal pluto chose as responder, e.g. "AES_GCM_C_128-DISABLED".
    pub esp_chosen: Option<String>,
    /// Lines that report a failure (rejected by peer, fatal error, notifications).
    pub failures: Vec<String>,
}

/// Reads pluto's log (debug lines skipped).
pub fn parse_log(log: &str) -> LogView {
    let mut v = LogView::default();
    for line in log.lines().filter(|l| !l.contains(": | ")) {
        if let Some(i) = line.find(" established IKE SA; ") {
            let start = line[..i].rfind(' ').map_or(0, |s| s + 1);
            v.established.push(line[start..].to_string());
        }
        if let Some((_, rest)) = line
            .split_once("sent IKE_AUTH request {")
            .or_else(|| line.split_once("sent IKE_SA_INIT reply {"))
        {
            v.ike_algs = Some(rest.trim_end_matches('}').to_string());
        }
        if let Some((_, rest)) = line.split_once("Add SA esp.") {
            let (spi, after) = rest.split_once('@').unwrap_or((rest, ""));
            if let Ok(spi) = u32::from_str_radix(spi, 16) {
                let answer = after.split_once(": ").map_or("", |(_, a)| a);
                v.add_sa.push((spi, answer.to_string()));
            }
        }
        if let Some((_, rest)) = line.split_once(": proposal 1:ESP=") {
            v.esp_chosen = rest.split_whitespace().next().map(str::to_string);
        }
        if [
            "rejected by peer",
            "fatal error",
            "failed with error notification",
            "AUTHENTICATION_FAILED",
            "NO_PROPOSAL_CHOSEN",
            "no acceptable",
        ]
        .iter()
        .any(|p| line.contains(p))
        {
            let text = line.split_once(": \"").map_or(line, |(_, r)| r);
            v.failures.push(format!("\"{text}"));
        }
    }
    v
}

/// Creates the NSS database of an instance; with certificates imports the CA (trusted
/// for peers) and our certificate with its key (nickname `own`, via PKCS#12).
fn nss_db(dir: &Path, auth: &Auth) -> Result<(), String> {
    let db = format!("sql:{}", dir.join("nss").display());
    let run = |cmd: &mut Command| run_checked(cmd).map(drop).map_err(|e| e.to_string());
    run(Command::new("certutil").args(["-N", "-d", &db, "--empty-password"]))?;
    let Auth::Cert {
        cert_pem,
        key_pem,
        ca_pem,
        ..
    } = auth
    else {
        return Ok(());
    };
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        fs::write(&p, text).map(|()| p).map_err(|e| e.to_string())
    };
    let ca = file("ca.pem", ca_pem)?;
    let cert = file("own.pem", cert_pem)?;
    let key = file("own-key.pem", key_pem)?;
    let p12 = dir.join("own.p12");
    run(Command::new("certutil")
        .args(["-A", "-d", &db, "-n", "ca", "-t", "CT,,", "-a", "-i"])
        .arg(&ca))?;
    run(Command::new("openssl")
        .args([
            "pkcs12", "-export", "-name", "own", "-passout", "pass:", "-in",
        ])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12))?;
    run(Command::new("pk12util")
        .args(["-d", &db, "-W", "", "-i"])
        .arg(&p12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_and_secrets_render() {
        let mut conn = Conn {
            local_addr: IpAddr::from([192, 0, 2, 2]),
            remote_addr: IpAddr::from([192, 0, 2, 1]),
            local_id: "pluto.example".into(),
            remote_id: "esprit.example".into(),
            auth: Auth::Psk("s3cret".into()),
            ike: "aes_gcm128-sha2_256-dh31".into(),
            esp: "aes_gcm128".into(),
            local_subnet: "10.96.2.0/24".into(),
            remote_subnet: "10.96.1.0/24".into(),
            extra: vec!["initial-contact=yes".into()],
        };
        let conf = conn.ipsec_conf(Path::new("/d"));
        for line in [
            "logfile=/d/pluto.log",
            "conn peer",
            "left=192.0.2.2",
            "right=192.0.2.1",
            "leftid=@pluto.example",
            "rightid=@esprit.example",
            "authby=secret",
            "ike=aes_gcm128-sha2_256-dh31",
            "initial-contact=yes",
            "auto=add",
        ] {
            assert!(conf.lines().any(|l| l.trim() == line), "{line}:\n{conf}");
        }
        assert_eq!(
            conn.ipsec_secrets(),
            "@pluto.example @esprit.example : PSK \"s3cret\"\n"
        );
        conn.remote_id = "C=CN, O=Local Cluster, CN=esprit".into();
        conn.auth = Auth::Cert {
            cert_pem: String::new(),
            key_pem: String::new(),
            ca_pem: String::new(),
            ecdsa: true,
        };
        let conf = conn.ipsec_conf(Path::new("/d"));
        for line in [
            "rightid=\"C=CN, O=Local Cluster, CN=esprit\"",
            "leftid=%fromcert",
            "leftcert=own",
            "rightca=%same",
            "authby=ecdsa",
        ] {
            assert!(conf.lines().any(|l| l.trim() == line), "{line}:\n{conf}");
        }
        assert_eq!(conn.ipsec_secrets(), "");
    }

    #[test]
    fn log_parses() {
        let log = r#"Dec  7 02:40:51.202326: "peer" #8: sent IKE_SA_INIT reply {cipher=AES_GCM_16_128 integ=n/a prf=HMAC_SHA2_256 group=DH31}
Dec  7 02:40:51.203343: | some debug line established IKE SA; x
Dec  7 02:40:51.203390: "peer" #8: responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@esprit.example'
Dec  7 02:40:51.203486: "peer" #9: proposal 1:ESP=AES_GCM_C_128-DISABLED SPI=63eb1258 chosen from remote proposals 1:ESP:ENCR=AES_GCM_C_128;ESN=DISABLED[first-match]
Dec  7 02:40:51.207723: ERROR: "peer" #9: netlink response for Add SA esp.aa9289c@192.0.2.1: Function not implemented (errno 38)
Dec  7 02:41:24.565907: "peer" #3: IKE SA authentication request rejected by peer: AUTHENTICATION_FAILED
"#;
        let v = parse_log(log);
        assert_eq!(
            v.established,
            vec!["responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@esprit.example'"]
        );
        assert_eq!(
            v.ike_algs.as_deref(),
            Some("cipher=AES_GCM_16_128 integ=n/a prf=HMAC_SHA2_256 group=DH31")
        );
        assert_eq!(
            v.add_sa,
            vec![(
                0x0aa9_289c,
                "Function not implemented (errno 38)".to_string()
            )]
        );
        assert_eq!(v.esp_chosen.as_deref(), Some("AES_GCM_C_128-DISABLED"));
        assert_eq!(
            v.failures,
            vec!["\"peer\" #3: IKE SA authentication request rejected by peer: AUTHENTICATION_FAILED"]
        );
    }
}
