//! libreswan 4.10's pluto as a second independent IKEv2 peer (issue 20), IKE level: each
//! case establishes the IKE SA on both sides and negotiates the child on the wire (this
//! kernel has no XFRM ESP, so pluto's kernel refuses the child; esprit must cope).
//! PSK, ECDSA P-256 and RSA-2048 certificates, each side initiating, X25519 and ECP-256.
//!
//! pluto runs from Debian's package unpacked by `test.sh` (it conflicts with the
//! strongSwan packages): without it every case fails and names the command to run.
//! `tests/libreswan/case.rs` says what a case checks. The table in
//! docs/interop-libreswan.md comes from the ignored `report` test:
//!
//! ```sh
//! ESPRIT_WRITE_LIBRESWAN=1 cargo test --test libreswan_interop -- --ignored --exact report --nocapture
//! ```

mod libreswan;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use esprit::testbed::wait_for;
use libreswan::case::{check, exe, run, AuthKind, Case, Dh, Initiator, Lab};
use libreswan::pluto::{self, parse_log};

/// The command that regenerates docs/interop-libreswan.md.
const COMMAND: &str =
    "ESPRIT_WRITE_LIBRESWAN=1 cargo test --test libreswan_interop -- --ignored --exact report --nocapture";

fn case(auth: AuthKind, initiator: Initiator, dh: Dh) -> Case {
    Case {
        auth,
        initiator,
        dh,
    }
}

#[test]
fn psk_esprit_initiates_x25519() {
    check(case(AuthKind::Psk, Initiator::Esprit, Dh::X25519));
}

#[test]
fn psk_esprit_initiates_ecp256() {
    check(case(AuthKind::Psk, Initiator::Esprit, Dh::Ecp256));
}

#[test]
fn psk_pluto_initiates_x25519() {
    check(case(AuthKind::Psk, Initiator::Pluto, Dh::X25519));
}

#[test]
fn psk_pluto_initiates_ecp256() {
    check(case(AuthKind::Psk, Initiator::Pluto, Dh::Ecp256));
}

#[test]
fn ecdsa_esprit_initiates_x25519() {
    check(case(AuthKind::Ecdsa, Initiator::Esprit, Dh::X25519));
}

#[test]
fn ecdsa_esprit_initiates_ecp256() {
    check(case(AuthKind::Ecdsa, Initiator::Esprit, Dh::Ecp256));
}

#[test]
#[ignore = "issue 20 fault 1: esprit cannot verify ecdsa-with-SHA512, which pluto picks"]
fn ecdsa_pluto_initiates_x25519() {
    check(case(AuthKind::Ecdsa, Initiator::Pluto, Dh::X25519));
}

#[test]
#[ignore = "issue 20 fault 1: esprit cannot verify ecdsa-with-SHA512, which pluto picks"]
fn ecdsa_pluto_initiates_ecp256() {
    check(case(AuthKind::Ecdsa, Initiator::Pluto, Dh::Ecp256));
}

#[test]
fn rsa_esprit_initiates_x25519() {
    check(case(AuthKind::Rsa, Initiator::Esprit, Dh::X25519));
}

#[test]
fn rsa_esprit_initiates_ecp256() {
    check(case(AuthKind::Rsa, Initiator::Esprit, Dh::Ecp256));
}

#[test]
fn rsa_pluto_initiates_x25519() {
    check(case(AuthKind::Rsa, Initiator::Pluto, Dh::X25519));
}

#[test]
fn rsa_pluto_initiates_ecp256() {
    check(case(AuthKind::Rsa, Initiator::Pluto, Dh::Ecp256));
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs every case one after the other (including the ignored ones) and prints the table
/// of docs/interop-libreswan.md; writes the file with `ESPRIT_WRITE_LIBRESWAN=1`.
#[test]
#[ignore = "the documentation's table: runs every case, see COMMAND"]
fn report() {
    let root = pluto::root().unwrap_or_else(|e| panic!("{e}"));
    let version = pluto::version(&root);
    let started = Instant::now();
    let mut rows = String::new();
    let (mut passed, mut total) = (0, 0);
    let mut unexpected = Vec::new();
    for case in Case::all() {
        total += 1;
        let (result, notes) = match run(&case) {
            Ok(notes) => {
                passed += 1;
                if case.known_fault().is_some() {
                    unexpected.push(format!(
                        "{} {} passes: un-ignore it",
                        case.name(),
                        case.direction()
                    ));
                }
                ("pass".to_string(), notes)
            }
            Err(f) => {
                eprintln!("{} {}: {f}", case.name(), case.direction());
                match case.known_fault() {
                    Some(fault) => (
                        format!("fail ({})", fault.split(':').next().unwrap_or(fault)),
                        f.reason,
                    ),
                    None => {
                        unexpected.push(format!(
                            "{} {} fails: {}",
                            case.name(),
                            case.direction(),
                            f.reason
                        ));
                        ("**fail**".to_string(), f.reason)
                    }
                }
            }
        };
        let _ = writeln!(
            rows,
            "| {} | {} | {result} | {} |",
            case.name(),
            case.direction(),
            notes.replace('|', "\\|")
        );
    }
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = command_line("uname", &["-r"]);
    let mut doc = String::new();
    let _ = writeln!(doc, "# Interoperability with libreswan\n");
    let _ = writeln!(
        doc,
        "Generated by `tests/libreswan_interop.rs` on {date} against {version} (`pluto` from \
         Debian's `libreswan` package, unpacked by `test.sh`), kernel {kernel}, in network \
         namespaces on one machine. Regenerate it (as root, after `./test.sh` fetched \
         libreswan) with:\n\n```sh\n{COMMAND}\n```\n"
    );
    let _ = writeln!(
        doc,
        "Each case is also a test of its own in `cargo test --test libreswan_interop`; a case \
         that fails because of a known esprit fault is `#[ignore]`d there with the fault's \
         number (issue 20), to be un-ignored with the fix.\n"
    );
    let _ = writeln!(
        doc,
        "IKE level only: this kernel has no XFRM ESP, so pluto negotiates the child SA and \
         then fails to install it (`netlink response for Add SA esp.SPI: Function not \
         implemented`). A case passes when the IKE SA is established on both sides (esprit's \
         status; pluto's log line \"initiator/responder established IKE SA; authenticated \
         peer ...\" and, when esprit initiated, `whack --status`), the child was negotiated on \
         the wire (pluto tried to install the SPI esprit installed, or chose an ESP proposal \
         and refused the child to esprit), and esprit kept running. One connection, child \
         10.96.1.0/24 <-> 10.96.2.0/24, IKE AES-GCM-128 with PRF SHA2-256, ESP AES-GCM-128. \
         As initiator pluto drops its IKE SA without a DELETE when its kernel refuses the \
         child and re-initiates (see issue 20 fault 3).\n"
    );
    let _ = writeln!(
        doc,
        "Result: **{passed} of {total} cases passed**; the run took {:.0} s.\n",
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        doc,
        "| case | direction | result | notes |\n|---|---|---|---|"
    );
    doc.push_str(&rows);
    let _ = writeln!(
        doc,
        "\n## esprit faults pluto shows (issue 20)\n\n\
         Reproduced by tests of `tests/libreswan_interop.rs` that are `#[ignore]`d until the \
         fix (run them with `cargo test --test libreswan_interop -- --ignored NAME`):\n\n\
         | fault | test | seen today |\n|---|---|---|\n\
         | 1: ECDSA signatures with SHA2-512 | `ecdsa_pluto_initiates_x25519`, `ecdsa_pluto_initiates_ecp256` | esprit announces SHA2-512 in SIGNATURE_HASH_ALGORITHMS, pluto signs with ecdsa-with-SHA512, esprit: \"signature check failed: unsupported algorithm: 1.2.840.10045.4.3.4\", pluto: AUTHENTICATION_FAILED |\n\
         | 2: shutdown | `sigterm_under_reinitiation_leaves_no_sa` | after SIGTERM (\"deleting SAs at the peers and stopping\") esprit still answers pluto's new IKE_SA_INIT and establishes the IKE SA and its child |\n\
         | 3: stale duplicates | `a_reinitiating_peer_leaves_no_stale_ike_sas` | pluto (initial-contact=yes) drops its IKE SA silently when its kernel refuses the child and re-initiates; esprit keeps every old IKE SA (3 of 3 after 5 s) |\n\
         | 4: refused child | `initiate_reports_a_refused_child_at_once` | `esprit initiate` waits out its whole timeout (15 s) after pluto's N(TS_UNACCEPTABLE), then says only \"not established after 15s\" |"
    );
    println!("{doc}");
    if std::env::var_os("ESPRIT_WRITE_LIBRESWAN").is_some() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/interop-libreswan.md");
        std::fs::write(&out, &doc).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        eprintln!("wrote {}", out.display());
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}

// Faults of issue 20 that pluto shows, each reproduced here and ignored until its fix.

/// How long the fault reproductions wait for pluto and esprit.
const FAULT_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn established_count(lab: &Lab) -> usize {
    lab.status()
        .map(|s| {
            s.ike_sas
                .iter()
                .filter(|sa| sa.state == "ESTABLISHED")
                .count()
        })
        .unwrap_or(0)
}

fn lab(case: Case, pluto_extra: &[&str]) -> Lab {
    Lab::start_with(&case, pluto_extra).unwrap_or_else(|e| panic!("setup: {e}"))
}

/// Fault 4: pluto establishes the IKE SA and refuses the child (N(TS_UNACCEPTABLE) in
/// IKE_AUTH, as its kernel cannot install it); `esprit initiate` must print that reason
/// at once and exit non-zero, not wait out its timeout.
#[test]
#[ignore = "issue 20 fault 4: `esprit initiate` waits out its timeout when the peer refuses the child"]
fn initiate_reports_a_refused_child_at_once() {
    let lab = lab(case(AuthKind::Psk, Initiator::Esprit, Dh::X25519), &[]);
    let started = Instant::now();
    let out = Command::new(exe())
        .args(["initiate", "peer", "--timeout", "15", "--socket"])
        .arg(&lab.esprit.socket)
        .output()
        .expect("esprit initiate runs");
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let details = || format!("{text}\n{}", lab.details());
    assert!(!out.status.success(), "exit {}: {}", out.status, details());
    assert!(
        took < Duration::from_secs(5),
        "`esprit initiate` took {took:?} (its timeout is 15 s): {}",
        details()
    );
    assert!(
        text.contains("TS_UNACCEPTABLE") || text.contains("traffic selectors unacceptable"),
        "the peer's reason is not printed: {}",
        details()
    );
}

/// Fault 3: pluto drops its IKE SA without a DELETE (its kernel refused the child) and
/// re-initiates, with INITIAL_CONTACT; esprit must not keep the old IKE SAs (RFC 7296
/// 2.4), so it holds at most one IKE SA with pluto however often pluto comes back.
#[test]
#[ignore = "issue 20 fault 3: esprit keeps every stale IKE SA of a re-initiating peer (INITIAL_CONTACT ignored)"]
fn a_reinitiating_peer_leaves_no_stale_ike_sas() {
    let lab = lab(
        case(AuthKind::Psk, Initiator::Pluto, Dh::X25519),
        &["initial-contact=yes"],
    );
    lab.pluto.initiate().expect("whack --initiate");
    // pluto revives the connection by itself after each failure; three IKE SAs made.
    let made = wait_for("pluto to establish 3 IKE SAs", FAULT_WAIT, POLL, || {
        let n = parse_log(&lab.pluto.log()).established.len();
        (n >= 3).then_some(n)
    });
    if made.is_err() {
        // Not every revival comes quickly: initiate again by hand.
        for _ in 0..2 {
            let _ = lab.pluto.initiate();
            let _ = wait_for("one more IKE SA", FAULT_WAIT, POLL, || {
                (parse_log(&lab.pluto.log()).established.len() >= 3).then_some(())
            });
        }
    }
    let n = parse_log(&lab.pluto.log()).established.len();
    assert!(
        n >= 3,
        "pluto established only {n} IKE SAs: {}",
        lab.details()
    );
    let settled = wait_for(
        "esprit to hold at most one IKE SA",
        Duration::from_secs(5),
        POLL,
        || (established_count(&lab) <= 1).then_some(()),
    );
    let _ = lab.pluto.terminate();
    assert!(
        settled.is_ok(),
        "pluto made {n} IKE SAs, esprit still holds {} of them: {}",
        established_count(&lab),
        lab.details()
    );
}

/// Fault 2: SIGTERM while the peer re-initiates. Once stopping, esprit must refuse new
/// IKE SAs (no answer or TEMPORARY_FAILURE) and delete the SAs it has: no IKE SA is set
/// up after the SIGTERM, and none is left at pluto. (esprit's DELETEs for IKE SAs pluto
/// already dropped silently go unanswered: "not confirmed deleted" is not checked.)
#[test]
#[ignore = "issue 20 fault 2: a stopping esprit still accepts new IKE SAs"]
fn sigterm_under_reinitiation_leaves_no_sa() {
    let mut lab = lab(case(AuthKind::Psk, Initiator::Pluto, Dh::X25519), &[]);
    lab.pluto.initiate().expect("whack --initiate");
    wait_for("esprit's first IKE SA", FAULT_WAIT, POLL, || {
        (established_count(&lab) >= 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", lab.details()));
    lab.esprit.proc.signal(libc::SIGTERM).expect("SIGTERM");
    // pluto comes back while esprit is deleting its SAs.
    let _ = lab.pluto.initiate();
    let exit = lab.esprit.proc.wait_exit(FAULT_WAIT);
    let log = lab.esprit.log();
    assert!(exit.is_ok(), "esprit did not exit after SIGTERM: {log}");
    let after = log.split_once("SIGTERM").map_or("", |(_, a)| a);
    assert!(
        !after.contains(" established with "),
        "esprit set up a new IKE SA after SIGTERM:\n{log}\n{}",
        lab.pluto.dump()
    );
    let _ = lab.pluto.terminate();
    let states = lab.pluto.states().unwrap_or_default();
    assert!(
        !states.iter().any(|s| s.contains("ESTABLISHED")),
        "pluto still has {states:?}\n{}",
        lab.pluto.dump()
    );
}
