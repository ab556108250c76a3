//! End-to-end: the log an operator follows. With `--log-format json` every line of
//! `esprit run` is one JSON object, and each SA event (IKE SA up, child SA up, rekeyed,
//! down, IKE SA rekeyed, closed) is exactly one line at info carrying `event`, `conn`, `child`
//! and the SPIs as fields; the text format has the same lines.

#[path = "e2e/common.rs"]
mod common;

use std::time::Duration;

use common::{exe, psk_net, Bench, Who, SETUP};
use esprit::testbed::esprit::Daemon;
use esprit::testbed::Topology;
use serde_json::Value;

/// The log's lines as JSON objects; every line must be one.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

#[test]
fn json_logs_have_one_info_line_per_sa_event() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "start");
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    // a runs `esprit run -c FILE --log-format json`, its config written as usual.
    bench.start(Who::A);
    let config = bench.config(Who::A);
    let dir = config.parent().expect("dir").to_path_buf();
    bench.kill(Who::A);
    std::fs::remove_file(dir.join("esprit.log")).expect("fresh log");
    let a = Daemon::start_wrapped(
        &["sh", "-c", "exec \"$0\" \"$@\" --log-format json"],
        exe(),
        bench.topo.a(),
        &config,
        &dir,
    )
    .expect("esprit with JSON logs");
    let s = a.wait_child("net", SETUP).expect("child up");
    let child = &s.ike_sas[0].children[0];
    let socket = a.socket.to_string_lossy().into_owned();
    let out = bench.cli(&["rekey", "peer", "--socket", &socket], SETUP);
    assert!(out.status.success(), "{out:?}");
    esprit::testbed::wait_ok(
        "the rekey in the log",
        SETUP,
        Duration::from_millis(50),
        || {
            a.log()
                .contains("\"event\":\"child_rekeyed\"")
                .then_some(())
                .ok_or("not yet")
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = bench.cli(&["rekey", "peer", "--ike", "--socket", &socket], SETUP);
    assert!(out.status.success(), "{out:?}");
    esprit::testbed::wait_ok(
        "the IKE rekey in the log",
        SETUP,
        Duration::from_millis(50),
        || {
            a.log()
                .contains("\"event\":\"ike_rekeyed\"")
                .then_some(())
                .ok_or("not yet")
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = bench.cli(&["terminate", "peer", "--socket", &socket], SETUP);
    assert!(out.status.success(), "{out:?}");
    esprit::testbed::wait_ok(
        "the IKE SA closed",
        SETUP,
        Duration::from_millis(50),
        || {
            a.log()
                .contains("\"event\":\"ike_down\"")
                .then_some(())
                .ok_or("not yet")
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let log = a.log();
    let lines = json_lines(&log);
    for l in &lines {
        for k in ["timestamp", "level", "target", "message"] {
            assert!(l[k].is_string(), "{k} missing: {l}");
        }
    }
    let one = |event: &str| -> &Value {
        let found = events(&lines, event);
        assert_eq!(found.len(), 1, "{event}: {found:?}\n{log}");
        assert_eq!(found[0]["level"], "INFO", "{}", found[0]);
        found[0]
    };
    let up = one("child_up");
    assert_eq!(up["conn"], "peer");
    assert_eq!(up["child"], "net");
    assert_eq!(up["spi_in"], child.spi_in.as_str());
    assert_eq!(up["spi_out"], child.spi_out.as_str());
    assert!(up["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("peer.net: child SA established")));
    let rekeyed = one("child_rekeyed");
    assert_ne!(rekeyed["spi_in"], up["spi_in"]);
    let down = one("child_down");
    assert_eq!(
        down["spi_in"], rekeyed["spi_in"],
        "the rekeyed SA goes down"
    );
    assert_eq!(one("ike_up")["conn"], "peer");
    // An IKE rekey is one event: the old SA's closing is not another.
    let rekeyed = one("ike_rekeyed");
    let down = one("ike_down");
    assert_eq!(down["conn"], "peer");
    assert_eq!(
        down["ike"], rekeyed["ike"],
        "the new IKE SA is the one closed"
    );
    let ts = up["timestamp"].as_str().unwrap_or_default();
    assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");

    // The text log of b has the same events, one line each, with the same fields.
    let lb = bench.daemon(Who::B).log();
    let text: Vec<&str> = lb
        .lines()
        .filter(|l| l.contains("event=\"child_up\""))
        .collect();
    // (two: b also answered a's first daemon, killed above)
    assert!(!text.is_empty(), "{lb}");
    eprintln!("text: {}", text[0]);
    assert!(text[0].contains(" INFO ") && text[0].contains("peer.net: child SA established"));
    drop(a);
}
