//! The demo binary negotiates a tunnel and carries checked traffic through it.

use std::process::Command;

/// The demo runs on a machine with nothing but the binary and the kernel: its PATH here
/// is an empty folder, so no `ip`, `ping`, `iperf3` or shell could be found.
#[test]
fn demo_builds_a_tunnel_carries_traffic_and_cleans_up() {
    let empty = std::env::temp_dir().join(format!("esprit-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["demo", "--seconds", "1"])
        .env_clear()
        .env("PATH", &empty)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run esprit demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": #1, ESTABLISHED, IKEv2"), "{stdout}");
    assert!(stdout.contains("net: INSTALLED, TUNNEL-in-UDP"), "{stdout}");
    assert_eq!(stdout.matches("3/3 answered, rtt").count(), 2, "{stdout}");
    for probe in ["bare veth:", "esprit (AES-GCM):"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(probe))
            .unwrap_or_else(|| panic!("no {probe} line: {stdout}"));
        let rate: f64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {line}"));
        assert!(rate > 0.0, "{line}");
    }
    let line = stdout
        .lines()
        .find(|l| l.contains("child SA counters: out"))
        .expect("counter line");
    let packets: u64 = line
        .split_whitespace()
        .nth(4)
        .and_then(|n| n.parse().ok())
        .expect("packet count");
    assert!(packets > 1000, "{line}");
    // Everything the demo made is gone: its namespaces carry its PID in their names.
    let left: Vec<_> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("-{pid}-")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&empty).unwrap();
}

/// Without root the demo says what it needs instead of failing half-way.
#[test]
fn demo_without_root_says_so() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_esprit"))
        .arg("demo")
        .output()
        .expect("setpriv (util-linux) runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn check_reports_the_file_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("esprit-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[tun]\nmtu = \"big\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.toml: tun.mtu:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
