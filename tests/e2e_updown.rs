//! End-to-end: updown hooks. a's child runs a script that records its environment on
//! up, rekey and down; the values are checked against what strongSwan's updown plugin
//! would pass (PLUTO_VERB, PLUTO_CONNECTION, PLUTO_ME, PLUTO_PEER, PLUTO_MY_CLIENT, ...).
//! b's script prints a line, sleeps and fails: that is logged and holds up nothing.

#[path = "e2e/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{psk_net, Bench, Who, POLL, SETUP};
use esprit::testbed::{udp_counted, wait_ok, Topology};

/// One recorded invocation: its variables.
type Call = BTreeMap<String, String>;

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The invocations recorded in `file` so far.
fn calls(file: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur: Option<Call> = None;
    for line in text.lines() {
        match line {
            "BEGIN" => cur = Some(Call::new()),
            "END" => out.extend(cur.take()),
            l => {
                if let (Some(c), Some((k, v))) = (cur.as_mut(), l.split_once('=')) {
                    c.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    out
}

/// Waits for the first call with `PLUTO_VERB=verb`.
fn wait_call(file: &Path, verb: &str) -> Call {
    wait_ok(&format!("an updown {verb} call"), SETUP, POLL, || {
        calls(file)
            .into_iter()
            .find(|c| c.get("PLUTO_VERB").map(String::as_str) == Some(verb))
            .ok_or_else(|| format!("calls so far: {:?}", calls(file)))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn var<'a>(c: &'a Call, k: &str) -> &'a str {
    c.get(k)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{k} missing in {c:?}"))
}

#[test]
fn updown_scripts_get_strongswans_environment_on_up_rekey_and_down() {
    let topo = Topology::direct(false).expect("topology");
    let dir = topo.dir().to_path_buf();
    let record = dir.join("record.sh");
    let env_file = dir.join("updown.env");
    // The argument shows the command goes through the shell, as with charon.
    script(
        &record,
        "{ echo BEGIN; env | grep -E '^(PLUTO|ESPRIT)_' | sort; echo END; } >> \"$1\"",
    );
    let failing = dir.join("fail.sh");
    script(&failing, "echo boom from $PLUTO_VERB; sleep 2; exit 3");
    let (mut a, mut b) = psk_net(&topo, "start");
    a.children[0].updown = Some(format!("{} {}", record.display(), env_file.display()));
    b.children[0].updown = Some(failing.display().to_string());
    let bench = Bench::up(topo, a, b, "net");
    let socket = bench.daemon(Who::A).socket.to_string_lossy().into_owned();

    let up = wait_call(&env_file, "up-client");
    let s = bench.status(Who::A);
    let sa = &s.ike_sas[0];
    let c = &sa.children[0];
    let (ai, bi) = (bench.topo.a_inner(), bench.topo.b_inner());
    for (k, want) in [
        ("PLUTO_VERSION", "1.1".to_string()),
        ("PLUTO_CONNECTION", "net".into()),
        ("PLUTO_INTERFACE", "esprit0".into()),
        ("PLUTO_PROTO", "esp".into()),
        ("PLUTO_UNIQUEID", sa.id.to_string()),
        ("PLUTO_ME", bench.topo.a_addr().to_string()),
        ("PLUTO_PEER", bench.topo.b_addr_for_a().to_string()),
        ("PLUTO_MY_ID", "a.esprit.test".into()),
        ("PLUTO_PEER_ID", "b.esprit.test".into()),
        ("PLUTO_MY_CLIENT", common::net(ai.v4[0].into())),
        ("PLUTO_PEER_CLIENT", common::net(bi.v4[0].into())),
        ("PLUTO_MY_SOURCEIP", ai.v4[0].to_string()),
        ("PLUTO_MY_PORT", "0".into()),
        ("PLUTO_PEER_PROTOCOL", "0".into()),
        ("PLUTO_UDP_ENC", "4500".into()),
        ("ESPRIT_IKE_CONNECTION", "peer".into()),
        ("ESPRIT_SPI_IN", c.spi_in.clone()),
        ("ESPRIT_SPI_OUT", c.spi_out.clone()),
    ] {
        assert_eq!(var(&up, k), want, "{k} in {up:?}");
    }
    let reqid = var(&up, "PLUTO_REQID").to_string();

    // b's failing script was logged, and b went on: the tunnel carries traffic while
    // the script still sleeps.
    bench.wait_log(Who::B, "updown: boom from up-client", SETUP);
    let to = IpAddr::V4(bi.v4[0]);
    let n = udp_counted(
        bench.topo.a(),
        bench.topo.b(),
        to,
        4720,
        200,
        Duration::from_millis(2),
    )
    .expect("udp");
    assert!(n.missing_seqs.is_empty(), "{n:?}");
    let line = bench.wait_log(Who::B, "failed: exit status: 3", SETUP);
    assert!(line.contains("peer.net up-client"), "{line}");

    // A rekey: the same child and route, new SPIs.
    let out = bench.cli(&["rekey", "peer", "--socket", &socket], SETUP);
    assert!(out.status.success(), "{out:?}");
    let rekey = wait_call(&env_file, "rekey-client");
    assert_eq!(var(&rekey, "PLUTO_REQID"), reqid);
    assert_eq!(var(&rekey, "PLUTO_CONNECTION"), "net");
    assert_ne!(var(&rekey, "ESPRIT_SPI_IN"), c.spi_in);
    let new_spi = var(&rekey, "ESPRIT_SPI_IN").to_string();

    // Down: the values of the child as it was.
    let out = bench.cli(&["terminate", "peer", "--socket", &socket], SETUP);
    assert!(out.status.success(), "{out:?}");
    let down = wait_call(&env_file, "down-client");
    for k in [
        "PLUTO_CONNECTION",
        "PLUTO_INTERFACE",
        "PLUTO_ME",
        "PLUTO_PEER",
        "PLUTO_MY_ID",
        "PLUTO_PEER_ID",
        "PLUTO_MY_CLIENT",
        "PLUTO_PEER_CLIENT",
        "PLUTO_MY_SOURCEIP",
        "PLUTO_REQID",
    ] {
        assert_eq!(var(&down, k), var(&up, k), "{k}");
    }
    assert_eq!(var(&down, "ESPRIT_SPI_IN"), new_spi);
    bench.wait_log(Who::B, "updown: boom from down-client", SETUP);
    // Exactly one call per event, nothing else.
    let verbs: Vec<String> = calls(&env_file)
        .iter()
        .map(|c| var(c, "PLUTO_VERB").to_string())
        .collect();
    assert_eq!(verbs, ["up-client", "rekey-client", "down-client"]);
}
