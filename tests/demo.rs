//! The demo binary negotiates a tunnel and carries checked traffic through it.

use std::process::Command;

#[test]
fn demo_negotiates_and_carries_traffic() {
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .args(["demo", "--seconds", "1"])
        .output()
        .expect("run esprit demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches(": ESTABLISHED, IKEv2").count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("INSTALLED, TUNNEL").count(), 2, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("packets,"))
        .expect("traffic line");
    let packets: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(packets > 0, "{line}");
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
