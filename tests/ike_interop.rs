//! The IKEv2 negotiator against a real strongSwan: our `ike::Endpoint`, driven over UDP
//! sockets inside one network namespace, and charon 5.9 (kernel-libipsec) in another,
//! both directions, with GCM and CBC+HMAC suites. Passes only when both sides report the
//! child SA: our `ChildUp` event with the keys, charon's `INSTALLED`.
//!
//! Needs root and Debian's strongSwan packages (`.ci/run` installs them).

use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike::auth::{load_certs_pem, PrivateKey, TrustStore};
use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::crypto::SystemRng;
use ike::endpoint::{ChildSaInfo, Endpoint, Event};
use ike::proposal::ProposalSet;

const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/strongswan/lib.sh");
const PSK: &str = "esprit-interop-psk-0123456789";
const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ike/tests/data/auth/");

/// How both sides authenticate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// A pre-shared key, FQDN identities.
    Psk,
    /// ECDSA P-256 certificates from one CA, DN identities (we are edge1, charon edge2).
    Ecdsa,
}

impl Auth {
    fn ids(self) -> (&'static str, &'static str) {
        match self {
            Auth::Psk => ("site-a.example", "site-b.example"),
            Auth::Ecdsa => ("C=CN, O=Local Cluster, CN=edge1", "CN=edge2"),
        }
    }
}

fn cert_file(name: &str) -> Vec<u8> {
    fs::read(format!("{CERTS}{name}")).unwrap()
}

fn sh(script: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; source {LIB}; {script}"))
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Two namespaces (us: 192.0.2.1, charon: 192.0.2.2) and a charon; torn down on drop,
/// also when the test panics.
struct Lab {
    ns_us: String,
    ns_charon: String,
    dir: PathBuf,
}

impl Lab {
    fn new(ike: &str, esp: &str, auth: Auth) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            ns_us: format!("ei-us-{tag}"),
            ns_charon: format!("ei-sw-{tag}"),
            dir: std::env::temp_dir().join(format!("esprit-interop-{tag}")),
        };
        let d = lab.dir.display();
        sh(&format!(
            "sw_ns_pair {} {}; sw_write_strongswan_conf {d}",
            lab.ns_us, lab.ns_charon
        ))
        .expect("namespaces");
        let (ours, theirs) = auth.ids();
        let conf = match auth {
            Auth::Psk => format!(
                "{}\n{}",
                sh(&format!("sw_conn_conf net 192.0.2.2 192.0.2.1 {ike} {esp} psk '{theirs}' '{ours}' 10.96.2.0/24 10.96.1.0/24")).unwrap(),
                sh(&format!("sw_psk_secret {PSK} '{ours}' '{theirs}'")).unwrap()
            ),
            Auth::Ecdsa => {
                for (file, sub) in [("edge2.crt", "x509"), ("ecdsa-ca.crt", "x509ca"), ("edge2.key", "ecdsa")] {
                    fs::write(lab.dir.join("swanctl").join(sub).join(file), cert_file(file)).unwrap();
                }
                sh(&format!(
                    "sw_conn_conf net 192.0.2.2 192.0.2.1 {ike} {esp} pubkey '{theirs}' '{ours}' 10.96.2.0/24 10.96.1.0/24 '' 'certs = edge2.crt' '' 'cacerts = ecdsa-ca.crt'"
                ))
                .unwrap()
            }
        };
        fs::write(lab.dir.join("swanctl/swanctl.conf"), conf).unwrap();
        sh(&format!(
            "sw_start_charon {} {d}; sw_wait_vici {d} 15; sw_load {d}",
            lab.ns_charon
        ))
        .expect("charon starts");
        lab
    }

    fn swanctl(&self, args: &str) -> Result<String, String> {
        sh(&format!("sw_swanctl {} {args}", self.dir.display()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "sw_stop_charon {}; sw_netns_del {} {}",
            self.dir.display(),
            self.ns_us,
            self.ns_charon
        ));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn connection(ike: &str, esp: &str, auth: Auth) -> Connection {
    let (ours, theirs) = auth.ids();
    let (local_auth, remote_auth) = match auth {
        Auth::Psk => {
            let psk = Arc::new(zeroize::Zeroizing::new(PSK.as_bytes().to_vec()));
            (LocalAuth::Psk(psk.clone()), RemoteAuth::Psk(psk))
        }
        Auth::Ecdsa => (
            LocalAuth::Pubkey {
                key: Arc::new(PrivateKey::from_pem(&cert_file("edge1.key")).unwrap()),
                certs: load_certs_pem(&cert_file("edge1.crt")).unwrap(),
            },
            RemoteAuth::Pubkey(Arc::new(
                TrustStore::from_pem(&cert_file("ecdsa-ca.crt")).unwrap(),
            )),
        ),
    };
    Connection {
        name: "net".into(),
        local_addrs: vec![IpAddr::from([192, 0, 2, 1])],
        remote_addrs: vec![IpAddr::from([192, 0, 2, 2])],
        remote_port: 500,
        proposals: ProposalSet::parse_ike(ike).unwrap(),
        local_id: Identity::parse(ours).unwrap(),
        local_auth,
        remote_id: Identity::parse(theirs).unwrap(),
        remote_auth,
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        unique: Default::default(),
        mediation: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ike::ts::parse_cidr("10.96.1.0/24").unwrap()],
            remote_ts: vec![ike::ts::parse_cidr("10.96.2.0/24").unwrap()],
            esp_proposals: ProposalSet::parse_esp(esp).unwrap(),
            rekey_time: Duration::ZERO,
        }],
    }
}

/// Runs our endpoint over UDP 500/4500 in `ns` until a child SA is up (or 20 s pass).
/// `initiate`: we start the exchange.
fn run_endpoint(
    ns: &str,
    ike: &str,
    esp: &str,
    auth: Auth,
    initiate: bool,
) -> Result<ChildSaInfo, String> {
    let netns = fs::File::open(Path::new("/run/netns").join(ns)).map_err(|e| e.to_string())?;
    // SAFETY: setns on this thread only moves this thread into the namespace; the fd is
    // a valid open network namespace file.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    let ike_sock = UdpSocket::bind("192.0.2.1:500").map_err(|e| e.to_string())?;
    let natt = UdpSocket::bind("192.0.2.1:4500").map_err(|e| e.to_string())?;
    ike_sock.set_nonblocking(true).unwrap();
    natt.set_nonblocking(true).unwrap();
    let mut ep = Endpoint::new(
        Config::default(),
        Box::new(SystemRng::new()),
        (Instant::now(), SystemTime::now()),
    );
    ep.add_connection(connection(ike, esp, auth));
    if initiate {
        ep.initiate(Instant::now(), "net", None)
            .map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        let now = Instant::now();
        for (sock, port) in [(&ike_sock, 500u16), (&natt, 4500)] {
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let data = &buf[..n];
                // RFC 3948 2.2: IKE on 4500 carries a 4-byte zero non-ESP marker.
                let data = if port == 4500 {
                    match data.strip_prefix(&[0, 0, 0, 0]) {
                        Some(d) => d,
                        None => continue, // ESP or keepalive: not for the negotiator
                    }
                } else {
                    data
                };
                ep.handle(
                    now,
                    SocketAddr::new(IpAddr::from([192, 0, 2, 1]), port),
                    from,
                    data,
                );
            }
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(t) = ep.poll_transmit() {
            let r = if t.local.port() == 4500 {
                let mut d = vec![0u8; 4];
                d.extend_from_slice(&t.data);
                natt.send_to(&d, t.remote)
            } else {
                ike_sock.send_to(&t.data, t.remote)
            };
            r.map_err(|e| e.to_string())?;
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::ChildUp(c) => return Ok(*c),
                Event::IkeDown { reason, .. } => return Err(format!("IKE SA down: {reason}")),
                Event::ChildFailed { reason, .. } => return Err(format!("child failed: {reason}")),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err("no child SA within 20 s".into())
}

fn case(ike: &str, esp: &str, auth: Auth, we_initiate: bool) {
    if let Err(e) = esprit::testbed::tools::require_strongswan() {
        panic!("{e}");
    }
    let lab = Lab::new(ike, esp, auth);
    let ns = lab.ns_us.clone();
    let (ike_s, esp_s) = (ike.to_string(), esp.to_string());
    let ours = std::thread::spawn(move || run_endpoint(&ns, &ike_s, &esp_s, auth, we_initiate));
    if !we_initiate {
        // Give our sockets a moment to bind: retry the initiation until it succeeds.
        let mut tries = 0;
        while let Err(e) = lab.swanctl("--initiate --child net --timeout 10") {
            tries += 1;
            assert!(tries < 3, "charon could not initiate: {e}");
        }
    }
    let child = ours.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "{ike} {esp} we_initiate={we_initiate}: {e}\n{}",
            fs::read_to_string(lab.dir.join("charon.log")).unwrap_or_default()
        )
    });
    let sas = lab.swanctl("--list-sas").unwrap();
    assert!(sas.contains("INSTALLED"), "charon has no child SA:\n{sas}");
    // charon names SPIs as seen from its side: its inbound is our outbound.
    assert!(
        sas.contains(&format!("in  {:08x}", child.spi_out)),
        "SPIs disagree: {sas}\nours {child:?}"
    );
    assert!(
        sas.contains(&format!("out {:08x}", child.spi_in)),
        "SPIs disagree: {sas}\nours {child:?}"
    );
    assert!(
        child.encap,
        "charon with kernel-libipsec always UDP-encapsulates (fake NAT-D)"
    );
}

#[test]
fn esprit_initiates_to_charon_gcm() {
    case(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        Auth::Psk,
        true,
    );
}

#[test]
fn charon_initiates_to_esprit_gcm() {
    case(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16",
        Auth::Psk,
        false,
    );
}

#[test]
fn esprit_initiates_to_charon_cbc_ecp256() {
    case("aes128-sha256-ecp256", "aes256gcm16", Auth::Psk, true);
}

#[test]
fn charon_initiates_to_esprit_cbc_ecp256() {
    case("aes256-sha512-x25519", "aes256gcm16", Auth::Psk, false);
}

#[test]
fn esprit_initiates_to_charon_ecdsa_certificates() {
    case(
        "aes256gcm16-prfsha384-ecp256",
        "aes128gcm16",
        Auth::Ecdsa,
        true,
    );
}

#[test]
fn charon_initiates_to_esprit_ecdsa_certificates() {
    case(
        "aes256gcm16-prfsha384-ecp256",
        "aes128gcm16",
        Auth::Ecdsa,
        false,
    );
}
