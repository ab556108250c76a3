//! The demo binary negotiates a tunnel and carries checked traffic through it.

use std::process::Command;

#[test]
fn demo_builds_a_tunnel_carries_traffic_and_cleans_up() {
    let child = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["demo", "--seconds", "1"])
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
    assert_eq!(stdout.matches("3/3 answered").count(), 2, "{stdout}");
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
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&format!("-{pid}-")), "left behind: {list}");
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
