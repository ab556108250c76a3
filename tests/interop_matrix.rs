//! The interop matrix (issue 5): the esprit daemon against strongSwan's charon 5.9
//! (kernel-libipsec) in network namespaces, every case both ways, passing only when
//! traffic crossed the tunnel (ping, and TCP whose SHA-256 matches on the far side).
//! It prints the table and, with `ESPRIT_WRITE_INTEROP=1`, writes docs/interop.md:
//!
//! ```sh
//! ESPRIT_WRITE_INTEROP=1 cargo test --release --test interop_matrix -- --nocapture
//! ```
//!
//! Needs root and Debian's strongSwan packages (`.ci/run` installs them). Cases run in
//! parallel, each in its own namespaces; `ESPRIT_INTEROP_JOBS` sets how many at once,
//! `ESPRIT_INTEROP_ONLY=name,name` picks some.

mod interop;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use esprit::testbed::Scratch;
use interop::charon;
use interop::lab::{AuthKind, Case, Dir, Lab, Life, PathKind, Who};
use interop::pki::Certs;
use interop::report::{markdown, Meta, Row, Verdict};

/// The command documented at the top of docs/interop.md.
const COMMAND: &str =
    "ESPRIT_WRITE_INTEROP=1 cargo test --release --test interop_matrix -- --nocapture";
/// How many runs at once by default: most of a run is waiting on timers.
const JOBS: usize = 4;

const GCM128_X25519: &str = "aes128gcm16-prfsha256-x25519";
const GCM256_ECP256: &str = "aes256gcm16-prfsha384-ecp256";
const CBC_SHA256: &str = "aes128-sha256-ecp256";
const CBC_SHA512: &str = "aes256-sha512-x25519";
const CBC_XCBC: &str = "aes128-aesxcbc-ecp256";

/// The covering set: every value of every dimension at least once, each case both ways.
const CASES: &[Case] = &[
    Case {
        name: "psk-gcm128-x25519",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "PSK, FQDN identities; IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16; direct",
    },
    Case {
        name: "rsa-gcm256-ecp256",
        auth: AuthKind::Rsa,
        ike: GCM256_ECP256,
        esp: "aes256gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "RSA 2048 certificates by `pki`, DN identities; IKE aes256gcm16-prfsha384-ecp256, ESP aes256gcm16",
    },
    Case {
        name: "ecdsa-cbc-sha256-ecp256",
        auth: AuthKind::Ecdsa,
        ike: CBC_SHA256,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "ECDSA P-256 certificates by `pki`, DN identities; IKE aes128-sha256-ecp256",
    },
    Case {
        name: "psk-cbc-sha512-x25519",
        auth: AuthKind::Psk,
        ike: CBC_SHA512,
        esp: "aes256gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "IKE aes256-sha512-x25519, ESP aes256gcm16",
    },
    Case {
        name: "psk-cbc-aesxcbc-ecp256",
        auth: AuthKind::Psk,
        ike: CBC_XCBC,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "IKE aes128-aesxcbc-ecp256 (AES-XCBC integrity and PRF)",
    },
    Case {
        name: "ecdsa-default-proposals",
        auth: AuthKind::Ecdsa,
        ike: "default",
        esp: "default",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "`proposals = default` and `esp_proposals = default` on both sides: charon's default list against esprit's",
    },
    Case {
        name: "rsa-nat",
        auth: AuthKind::Rsa,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Nat,
        life: Life::Plain,
        what: "the initiator behind a masquerading NAT router with a stateful firewall (NAT-T)",
    },
    Case {
        name: "fabedge-proxy-3-children",
        auth: AuthKind::Ecdsa,
        ike: "aes128-sha256-prfaesxcbc-ecp256",
        esp: "aes128gcm16",
        path: PathKind::Proxy,
        life: Life::ThreeChildren,
        what: "seed 000: through an nginx UDP proxy (the initiator dials the proxy; the responder sees one proxy port for 500, another for 4500), IKE AES_CBC-128/HMAC_SHA2_256_128/PRF_AES128_XCBC/ECP_256 as in the seed, children p2p, n2p and p2n each carrying traffic",
    },
    Case {
        name: "psk-3-children",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes256gcm16",
        path: PathKind::Direct,
        life: Life::ThreeChildren,
        what: "three child SAs with different selectors under one IKE SA (p2p, n2p, p2n), direct",
    },
    Case {
        name: "child-rekey-by-esprit-pfs-ecp256",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes256gcm16-ecp256",
        path: PathKind::Direct,
        life: Life::ChildRekey(Who::Esprit),
        what: "esprit's child rekey_time = 6s; ESP aes256gcm16-ecp256: the rekey must carry KE (PFS)",
    },
    Case {
        name: "child-rekey-by-charon-pfs-x25519",
        auth: AuthKind::Ecdsa,
        ike: CBC_SHA512,
        esp: "aes128gcm16-x25519",
        path: PathKind::Direct,
        life: Life::ChildRekey(Who::Charon),
        what: "`swanctl --rekey --child`; ESP aes128gcm16-x25519: the rekey must carry KE (PFS)",
    },
    Case {
        name: "child-rekey-by-esprit-nat",
        auth: AuthKind::Psk,
        ike: CBC_SHA256,
        esp: "aes128gcm16",
        path: PathKind::Nat,
        life: Life::ChildRekey(Who::Esprit),
        what: "child rekey without PFS started by esprit, through the NAT",
    },
    Case {
        name: "child-rekey-by-charon-proxy",
        auth: AuthKind::Psk,
        ike: GCM256_ECP256,
        esp: "aes256gcm16",
        path: PathKind::Proxy,
        life: Life::ChildRekey(Who::Charon),
        what: "child rekey without PFS started by charon, through the nginx proxy",
    },
    Case {
        name: "ike-rekey-by-esprit",
        auth: AuthKind::Psk,
        ike: CBC_XCBC,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::IkeRekey(Who::Esprit),
        what: "esprit's IKE rekey_time = 6s: new IKE SPIs, children kept",
    },
    Case {
        name: "ike-rekey-by-charon",
        auth: AuthKind::Ecdsa,
        ike: GCM256_ECP256,
        esp: "aes256gcm16",
        path: PathKind::Direct,
        life: Life::IkeRekey(Who::Charon),
        what: "`swanctl --rekey --ike`: new IKE SPIs, children kept",
    },
    Case {
        name: "delete-by-esprit",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Delete(Who::Esprit),
        what: "terminate over esprit's control socket: DELETE for the IKE SA",
    },
    Case {
        name: "delete-by-charon",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Delete(Who::Charon),
        what: "`swanctl --terminate --ike`",
    },
    Case {
        name: "dpd-charon-vanishes",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Nat,
        life: Life::Dpd(Who::Charon),
        what: "charon SIGKILLed (no DELETE); esprit dpd_delay = 2s must close the IKE SA; through the NAT",
    },
    Case {
        name: "dpd-esprit-vanishes",
        auth: AuthKind::Psk,
        ike: GCM128_X25519,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Dpd(Who::Esprit),
        what: "esprit SIGKILLed; charon dpd_delay = 2s must notice",
    },
    Case {
        name: "ecdsa384-cbc-sha384-modp2048",
        auth: AuthKind::EcdsaP384,
        ike: "aes256-sha384-modp2048",
        esp: "aes256gcm16-modp2048",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "issue 21: ECDSA P-384 certificates (RFC 7427 with SHA-384); IKE aes256-sha384-modp2048; ESP aes256gcm16 with MODP-2048 for PFS on later child SAs",
    },
    Case {
        name: "ecdsa521-gcm-ecp384",
        auth: AuthKind::EcdsaP521,
        ike: "aes256gcm16-prfsha384-ecp384",
        esp: "aes256gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "issue 21: ECDSA P-521 certificates (SHA-512); IKE aes256gcm16-prfsha384-ecp384 (Azure's ECP384 policy)",
    },
    Case {
        name: "psk-modp4096-ecp521-pfs",
        auth: AuthKind::Psk,
        ike: "aes256-sha512-modp4096",
        esp: "aes256gcm16-ecp521",
        path: PathKind::Direct,
        life: Life::ChildRekey(Who::Esprit),
        what: "issue 21: IKE with MODP-4096; the child rekey carries an ECP-521 KE (PFS)",
    },
    Case {
        name: "psk-aws-cbc-sha1-modp2048",
        auth: AuthKind::Psk,
        ike: "aes128-sha1-modp2048",
        esp: "aes128-sha1-modp2048",
        path: PathKind::Direct,
        life: Life::ChildRekey(Who::Charon),
        what: "issue 21, AWS Site-to-Site VPN's sample start (group 14 as in GovCloud): IKE aes128-sha1-modp2048, ESP AES-128-CBC + HMAC-SHA1-96 with MODP-2048 PFS on the rekey charon starts",
    },
    Case {
        name: "psk-firewall-cbc-sha256-modp2048",
        auth: AuthKind::Psk,
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "issue 21, a typical firewall site: IKE and ESP aes256-sha256, MODP-2048",
    },
    Case {
        name: "ecdsa384-azure-cbc-ecp384",
        auth: AuthKind::EcdsaP384,
        ike: "aes256-sha384-ecp384",
        esp: "aes256-sha256",
        path: PathKind::Direct,
        life: Life::ChildRekey(Who::Esprit),
        what: "issue 21, an Azure VPN gateway custom policy: IKE aes256-sha384-ecp384, ESP AES-256-CBC + HMAC-SHA2-256, P-384 certificates, child rekeyed by esprit",
    },
    Case {
        name: "psk-gcm192-ecp384",
        auth: AuthKind::Psk,
        ike: "aes192gcm16-prfsha384-ecp384",
        esp: "aes192gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "issue 21: AES-GCM-16 with a 192-bit key for IKE and ESP (Azure's GCMAES192), ECP-384",
    },
    Case {
        name: "fragmentation-rsa4096-chain",
        auth: AuthKind::RsaChain,
        ike: GCM256_ECP256,
        esp: "aes128gcm16",
        path: PathKind::Direct,
        life: Life::Plain,
        what: "RSA 4096 leaf under an RSA 4096 intermediate; each side's only trust anchor is the root and each sends leaf + intermediate (CERT CERT), so IKE_AUTH is about 3.5 kB; charon `fragmentation = yes` (fragment_size 1280); charon's log must show it split its IKE_AUTH and reassembled esprit's",
    },
];

/// Runs that fail because of strongSwan, not esprit: (case, direction, the limit and its
/// evidence). Such a failure is reported but does not fail the test.
const STRONGSWAN_LIMITS: &[(&str, Dir, &str)] = &[];

fn limit(case: &str, dir: Dir) -> Option<&'static str> {
    STRONGSWAN_LIMITS
        .iter()
        .find(|(c, d, _)| *c == case && *d == dir)
        .map(|(_, _, why)| *why)
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(case: &Case, dir: Dir, certs: &Certs) -> Row {
    let exe = Path::new(env!("CARGO_BIN_EXE_esprit"));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut lab = match Lab::new(case, dir, certs, exe) {
            Ok(lab) => lab,
            Err(e) => return (Err(format!("setup: {e}")), Vec::new(), None),
        };
        let r = lab.exercise();
        let logs = r.is_err().then(|| lab.logs());
        (r, std::mem::take(&mut lab.notes), logs)
    }));
    let (result, notes, logs) = outcome.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        (Err(format!("panic: {msg}")), Vec::new(), None)
    });
    match result {
        Ok(establish) => Row {
            case: case.name.into(),
            direction: dir.label().into(),
            verdict: Verdict::Pass,
            establish: Some(establish),
            notes: notes.join("; "),
            evidence: None,
        },
        Err(e) => {
            let (charon_log, esprit_log) = logs.unwrap_or_default();
            let evidence = format!(
                "{e}\n--- charon log (last 40 lines) ---\n{}\n--- esprit log (last 40 lines) ---\n{}",
                tail(&charon_log, 40),
                tail(&esprit_log, 40)
            );
            let verdict = match limit(case.name, dir) {
                Some(why) => Verdict::StrongswanLimit(why.into()),
                None => Verdict::Fail,
            };
            let first = e.lines().next().unwrap_or_default();
            let mut notes = notes;
            notes.push(format!("failed: {first}"));
            Row {
                case: case.name.into(),
                direction: dir.label().into(),
                verdict,
                establish: None,
                notes: notes.join("; "),
                evidence: Some(evidence),
            }
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[test]
fn interop_matrix() {
    if let Err(e) = esprit::testbed::tools::require_strongswan() {
        panic!("{e}");
    }
    // SAFETY: plain syscall without arguments.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the matrix needs root");
    let only: Vec<String> = std::env::var("ESPRIT_INTEROP_ONLY")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let jobs = std::env::var("ESPRIT_INTEROP_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(JOBS)
        .max(1);
    let started = Instant::now();
    let scratch = Scratch::new("esprit-interop-pki").expect("scratch dir");
    let certs = Certs::make(scratch.path()).expect("certificates by pki");
    eprintln!(
        "interop: certificates made in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The slow runs (timers) first, so that the quick ones fill the gaps at the end.
    let mut runs: Vec<(usize, &Case, Dir)> = CASES
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
        .flat_map(|c| [(c, Dir::EspritInitiates), (c, Dir::CharonInitiates)])
        .enumerate()
        .map(|(i, (c, d))| (i, c, d))
        .collect();
    assert!(
        !runs.is_empty(),
        "no case matches ESPRIT_INTEROP_ONLY={only:?}"
    );
    let slow = |c: &Case| !matches!(c.life, Life::Plain | Life::ThreeChildren | Life::Delete(_));
    runs.sort_by_key(|(i, c, _)| (!slow(c), *i));
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new(vec![None; runs.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(runs.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, case, dir)) = runs.get(k) else {
                    break;
                };
                let t0 = Instant::now();
                let row = run(case, dir, &certs);
                eprintln!(
                    "interop: {:<34} {:<16} {:<5} {:5.1} s  {}",
                    case.name,
                    dir.label(),
                    if row.verdict == Verdict::Pass {
                        "pass"
                    } else {
                        "FAIL"
                    },
                    t0.elapsed().as_secs_f64(),
                    row.notes
                );
                if let Some(ev) = &row.evidence {
                    eprintln!("{ev}\n");
                }
                rows.lock().unwrap()[i] = Some(row);
            });
        }
    });
    let rows: Vec<Row> = rows.into_inner().unwrap().into_iter().flatten().collect();
    let elapsed = started.elapsed();
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = command_line("uname", &["-r"]);
    let version = charon::version();
    let meta = Meta {
        date: &date,
        charon: &version,
        kernel: &kernel,
        command: COMMAND,
        elapsed,
        jobs,
    };
    let legend: Vec<(&str, &str)> = CASES.iter().map(|c| (c.name, c.what)).collect();
    let doc = markdown(&meta, &rows, &legend);
    println!("{doc}");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop.md");
    let _ = std::fs::write(&out, &doc);
    let write = std::env::var("ESPRIT_WRITE_INTEROP").is_ok_and(|v| !v.is_empty() && v != "0");
    if write && only.is_empty() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/interop.md");
        std::fs::write(&docs, &doc).expect("writing docs/interop.md");
        eprintln!("interop: wrote {}", docs.display());
    } else {
        eprintln!("interop: table in {}", out.display());
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| format!("{} ({}): {}", r.case, r.direction, r.notes))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} runs failed in {:.0} s:\n{}",
        failed.len(),
        rows.len(),
        elapsed.as_secs_f64(),
        failed.join("\n")
    );
}
