//! packaging/: the systemd unit passes `systemd-analyze verify` and its sandbox rates
//! "OK" or better in `systemd-analyze security`; the container entrypoint
//! (packaging/docker-entrypoint.sh) is run as a plain process in a network namespace,
//! with and without CAP_NET_ADMIN (dropped by `setpriv`), since docker itself is not
//! available to the tests: each way it starts the daemon when it can and says exactly
//! what is missing when it cannot.
//!
//! Needs root (namespaces, TUN, setpriv), systemd-analyze (package systemd) and setpriv
//! (util-linux).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use esprit::testbed::esprit::{Auth, Daemon, Side};
use esprit::testbed::{Netns, Scratch};

const EXE: &str = env!("CARGO_BIN_EXE_esprit");

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing: apt-get install {package}");
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    need("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(packaging("esprit.service")).expect("unit");
    for line in [
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "DeviceAllow=/dev/net/tun rw",
        "ExecStart=/usr/bin/esprit run -c /etc/esprit/esprit.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} missing");
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let scratch = Scratch::new("unit").expect("scratch");
    let copy = scratch.join("esprit.service");
    std::fs::write(&copy, unit.replace("/usr/bin/esprit", EXE)).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    assert!(out.status.success(), "verify: {}", text(&out));
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let report = text(&out);
    let level = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for esprit.service: ")
                .nth(1)
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(level <= 3.0, "exposure {level} is above OK:\n{report}");
}

/// A configuration that only answers (no peer to reach), with its control socket in
/// `dir`.
fn config(dir: &Path) -> PathBuf {
    let side = Side::new(
        "192.0.2.1".parse().expect("address"),
        None,
        "entry.example",
        Auth::Psk("entrypoint test secret".into()),
    );
    let path = dir.join("esprit.toml");
    std::fs::write(&path, side.toml(dir)).expect("config");
    path
}

const NO_NET_ADMIN: &[&str] = &[
    "setpriv",
    "--bounding-set",
    "-net_admin",
    "--inh-caps",
    "-net_admin",
];

/// Runs the entrypoint with `args` in `ns` (behind `wrapper`), waiting for it.
fn entrypoint(ns: &Netns, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
    let script = packaging("docker-entrypoint.sh");
    let script = script.to_string_lossy();
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend(["sh", &*script]);
    argv.extend(args);
    let (program, rest) = argv.split_first().expect("argv");
    ns.command(program)
        .args(rest)
        .env("ESPRIT_BIN", EXE)
        .envs(env.iter().copied())
        .output()
        .expect("entrypoint")
}

/// Starts the entrypoint's `run` in `ns` as the daemon would be in a container; returns
/// once the control socket answers.
fn start(ns: &Netns, wrapper: &[&str], dir: &Path, cfg: &Path) -> Daemon {
    let script = packaging("docker-entrypoint.sh");
    let script = script.to_string_lossy();
    let cfg_s = cfg.to_string_lossy();
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend(["sh", &*script, "run", "-c", &*cfg_s]);
    let proc = ns
        .spawn(
            &argv,
            &[("ESPRIT_BIN", EXE), ("RUST_LOG", "info")],
            &dir.join("esprit.log"),
        )
        .expect("spawn");
    Daemon::adopt(proc, cfg, dir).expect("daemon through the entrypoint")
}

#[test]
fn the_entrypoint_starts_esprit_or_says_what_is_missing() {
    need("setpriv", "util-linux");
    let scratch = Scratch::new("entrypoint").expect("scratch");
    let ns = Netns::new("esprit-entry").expect("netns");
    let cfg = config(scratch.path());
    let cfg_s = cfg.to_string_lossy().into_owned();

    // Not `run`: straight to esprit.
    let out = entrypoint(&ns, &[], &["check", "-c", &cfg_s], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok (1 connection(s))"),
        "{}",
        text(&out)
    );

    // A configuration that does not load: its error, and no start.
    let bad = scratch.join("bad.toml");
    std::fs::write(&bad, "[tun]\nmtu = 10\n").expect("write");
    let out = entrypoint(&ns, &[], &["run", "-c", &bad.to_string_lossy()], &[]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("bad.toml: tun.mtu: 10 is below"), "{said}");
    assert!(said.contains("does not load; not starting"), "{said}");

    // No /dev/net/tun in the container.
    let out = entrypoint(
        &ns,
        &[],
        &["run", "-c", &cfg_s],
        &[("ESPRIT_TUN_DEV", "/nonexistent/tun")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/nonexistent/tun is missing: give the container the TUN device"),
        "{}",
        text(&out)
    );

    // Without NET_ADMIN and no device prepared: exactly that.
    let out = entrypoint(&ns, NO_NET_ADMIN, &["run", "-c", &cfg_s], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no CAP_NET_ADMIN, and no TUN device esprit0 prepared"),
        "{}",
        text(&out)
    );

    // With NET_ADMIN: esprit makes its own device.
    let d = start(&ns, &[], scratch.path(), &cfg);
    assert!(d.log().contains("TUN esprit0"), "{}", d.log());
    assert!(d.log().contains("routes on"), "{}", d.log());
    drop(d);
    wait_gone(&ns, "esprit0");

    // Without NET_ADMIN on a device an init step made: esprit attaches to it.
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "esprit0"])
        .expect("tuntap");
    std::fs::remove_file(scratch.join("esprit.log")).expect("fresh log");
    let d = start(&ns, NO_NET_ADMIN, scratch.path(), &cfg);
    assert!(d.log().contains("TUN esprit0"), "{}", d.log());
    assert!(d.log().contains("routes off"), "{}", d.log());
}

/// Waits until the daemon's own device is gone with it.
fn wait_gone(ns: &Netns, dev: &str) {
    esprit::testbed::wait_ok(
        "the TUN device removed",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || match ns.ip(&["link", "show", dev]) {
            Ok(_) => Err("still there"),
            Err(_) => Ok(()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
