//! End-to-end: what the daemon lets out and whom it lets in (issue 16 item 5).
//!
//! Secrets: a full run (PSK, a child SA, traffic, a child and an IKE rekey) with
//! `RUST_LOG=trace` on both daemons, then both logs and both `esprit status --json`
//! outputs are searched for the pre-shared key as text, as hex (either case) and as
//! base64. The negotiated keys (SK_*, KEYMAT) are not visible to a test: neither `ike`
//! nor the engine has a hook that hands them out, and `ChildSaInfo`'s `Debug` leaves them
//! out. So the logs are also searched for what a leaked key would look like: a run of 32
//! or more hex digits (an AES-128 key is 32, with its salt 40; the longest identifier
//! logged, an IKE SPI, is 16).
//!
//! The control socket: a caller that is not root is refused, by the socket file's mode
//! and, with that mode loosened, by the daemon's own `SO_PEERCRED` check; requests that
//! are not one JSON line get an error answer and the daemon carries on.

#[path = "e2e/common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{exe, psk_sides, Bench, Who, SETUP};
use esprit::testbed::{ping, Topology};

/// A pre-shared key distinctive enough that no log line holds it by chance.
const PSK: &str = "esprit-issue16-Zebra-PSK-7f3a";

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = [0u8; 3];
        n[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from(n[0]) << 16 | u32::from(n[1]) << 8 | u32::from(n[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The longest run of hex digits in `text`, and where it starts.
fn longest_hex_run(text: &str) -> (usize, usize) {
    let (mut best, mut at, mut run) = (0, 0, 0);
    for (i, c) in text.char_indices() {
        if c.is_ascii_hexdigit() {
            run += 1;
            if run > best {
                best = run;
                at = i + 1 - run;
            }
        } else {
            run = 0;
        }
    }
    (best, at)
}

/// PSK, trace logs, a rekey: the secret appears nowhere a user or a log shipper sees.
#[test]
fn secrets_stay_out_of_trace_logs_and_status() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, mut b) = psk_sides(&topo, PSK, PSK);
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let mut c = common::child("net", ai, bi, common::v4_first);
    c.start_action = "start".into();
    c.rekey_time = Some("2s".into());
    a.children.push(c);
    a.rekey_time = Some("4s".into());
    b.children
        .push(common::child("net", bi, ai, common::v4_first));
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start_logged(Who::B, "trace");
    bench.start_logged(Who::A, "trace");
    bench.wait_child(Who::A, "net");
    bench.wait_child(Who::B, "net");
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    assert!(ping(bench.topo.a(), to, 3, Duration::from_secs(5)));
    bench.wait_log(Who::A, "child SA rekeyed", SETUP);
    bench.wait_log(Who::A, " rekeyed as #", SETUP);
    assert!(ping(bench.topo.a(), to, 3, Duration::from_secs(5)));

    // The key is where it belongs: in the configuration files.
    for who in [Who::A, Who::B] {
        let cfg = std::fs::read_to_string(bench.config(who)).expect("configuration");
        assert!(cfg.contains(PSK), "the needle is wrong");
    }
    let needles = [
        PSK.to_string(),
        hex(PSK.as_bytes(), false),
        hex(PSK.as_bytes(), true),
        base64(PSK.as_bytes()),
    ];
    let mut places = Vec::new();
    for who in [Who::A, Who::B] {
        let log = bench.daemon(who).log();
        let trace_lines = log.lines().filter(|l| l.contains("TRACE")).count();
        eprintln!(
            "{who:?}: {} log lines ({trace_lines} at TRACE)",
            log.lines().count()
        );
        assert!(
            log.contains("child SA rekeyed"),
            "{who:?}'s log is not the full run"
        );
        let cfg = bench.config(who);
        let json = bench.cli(
            &["status", "--json", "-c", cfg.to_str().expect("utf-8")],
            SETUP,
        );
        assert!(json.status.success(), "status --json: {json:?}");
        let json = String::from_utf8_lossy(&json.stdout).into_owned();
        assert!(json.contains("\"spi_in\""), "{json}");
        places.push((format!("{who:?}'s log"), log));
        places.push((format!("{who:?}'s status --json"), json));
    }
    for (place, text) in &places {
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{place} holds {needle:?}");
        }
        let (run, at) = longest_hex_run(text);
        let end = text.len().min(at + run + 20);
        assert!(
            run < 32,
            "{place} holds a {run}-digit hex run, key-sized: {}",
            &text[at.saturating_sub(40)..end]
        );
        eprintln!("{place}: no PSK, longest hex run {run} digits");
    }
}

/// Runs `esprit status --socket SOCKET` as user and group 65534 with no groups.
fn status_as_nobody(socket: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe())
        .args(["status", "--socket"])
        .arg(socket)
        .output()
        .expect("setpriv")
}

/// Sends `bytes` on a fresh connection to `socket` and returns the answer line.
fn raw_request(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The daemon may answer (and close) before it has read everything: a write error
    // then is fine, the answer is what counts.
    let _ = s.write_all(bytes);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// An answer line that is a JSON error; returns its message.
fn error_message(answer: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{answer:?}: {e}"));
    assert_eq!(v["result"], "error", "{answer}");
    v["message"].as_str().expect("message").to_string()
}

/// Only root commands the daemon; garbage on the socket gets an error, not a crash.
#[test]
fn control_socket_refuses_other_users_and_survives_garbage() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_sides(&topo, PSK, PSK);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::A);
    let socket = bench.daemon(Who::A).socket.clone();
    // Let user 65534 walk up to the socket, so that only the socket itself refuses.
    for dir in socket.ancestors().skip(1) {
        if dir.starts_with(bench.topo.dir()) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod dir");
        }
    }
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // 1. The file mode: the kernel refuses the connection.
    let out = status_as_nobody(&socket);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got a status: {out:?}");
    assert!(
        err.contains("Permission denied") && err.contains("only root may command esprit"),
        "{err}"
    );
    eprintln!("as uid 65534, mode 0600: {}", err.trim());

    // 2. The mode loosened by hand: the daemon's SO_PEERCRED check refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = status_as_nobody(&socket);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got a status: {out:?}");
    assert!(err.contains("uid 65534 may not command esprit"), "{err}");
    eprintln!("as uid 65534, mode 0666: {}", err.trim());
    bench.wait_log(Who::A, "refused a caller with uid 65534", SETUP);

    // 3. Garbage, each on its own connection: an error answer every time.
    let mut random = vec![0u8; 512];
    let mut x: u32 = 0x1234_5678;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    random.push(b'\n');
    let mut oversized = vec![b'x'; 100 * 1024];
    oversized.push(b'\n');
    let cases: [(&str, &[u8], &str); 5] = [
        ("random bytes", &random, ""),
        ("an oversized line", &oversized, "longer than 65536 bytes"),
        ("bad JSON", b"{\"cmd\": \"status\"\n", "bad request"),
        (
            "an unknown command",
            b"{\"cmd\":\"explode\"}\n",
            "bad request",
        ),
        ("nothing within 5 s", b"", "no request line within"),
    ];
    for (what, bytes, want) in cases {
        let answer = raw_request(&socket, bytes);
        let message = error_message(&answer);
        assert!(message.contains(want), "{what}: {message}");
        eprintln!("{what}: {message}");
    }
    assert!(
        bench.daemon_mut(Who::A).proc.is_running(),
        "the daemon died"
    );
    let s = bench.status(Who::A);
    assert!(s.ike_sas.is_empty(), "{s}");
}
