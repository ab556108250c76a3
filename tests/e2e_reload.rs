//! End-to-end: `esprit reload` and SIGHUP. A reload that removes one connection and
//! adds another leaves the SAs of the unchanged connection alone (same SPIs, a counted
//! UDP stream across it loses nothing), deletes the removed connection's SAs at the peer
//! and brings the new one up; a configuration file with an error is refused with its
//! file, key and reason, and everything keeps running.

#[path = "e2e/common.rs"]
mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{child, children, established, psk_net, v4_second, Bench, Who, SETUP};
use engine::status::Status;
use esprit::testbed::{udp_counted, Topology};

/// A second connection from a to b for the 10.97.x.0/24 subnets, with its own
/// identity (b's responder connection accepts any), started at once.
fn extra_conn(bench: &Bench, name: &str, child: &str, id: &str) -> String {
    format!(
        r#"
[connections.{name}]
local_addrs = ["{a}"]
remote_addrs = ["{b}"]
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.{name}.local]
auth = "psk"
id = "{id}"
[connections.{name}.remote]
auth = "psk"
[connections.{name}.children.{child}]
local_ts = ["10.97.1.0/24"]
remote_ts = ["10.97.2.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "start"
"#,
        a = bench.topo.a_addr(),
        b = bench.topo.b_addr_for_a(),
    )
}

/// (connection, IKE SPIi, child, inbound child SPI) of every established child in `s`.
fn sas(s: &Status) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = established(s)
        .iter()
        .flat_map(|sa| {
            sa.children.iter().map(|c| {
                (
                    sa.conn.clone(),
                    sa.spi_i.clone(),
                    c.name.clone(),
                    c.spi_in.clone(),
                )
            })
        })
        .collect();
    v.sort();
    v
}

/// The entries of [`sas`] for connection `conn`.
fn of(s: &Status, conn: &str) -> Vec<(String, String, String, String)> {
    sas(s).into_iter().filter(|e| e.0 == conn).collect()
}

/// b answers both subnets under its one connection; a starts `peer.net` and, from the
/// extra TOML, `old.second`.
fn bench_with_old() -> Bench {
    let topo = Topology::direct(false).expect("topology");
    let (a, mut b) = psk_net(&topo, "start");
    b.children
        .push(child("second", topo.b_inner(), topo.a_inner(), v4_second));
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    let extra = extra_conn(&bench, "old", "second", "old.a.esprit.test");
    bench.start_extra(Who::A, &extra);
    bench.wait_child(Who::A, "net");
    bench.wait_child(Who::A, "second");
    bench
}

#[test]
fn reload_swaps_connections_and_leaves_the_others_untouched() {
    let bench = bench_with_old();
    let socket = bench.daemon(Who::A).socket.to_string_lossy().into_owned();
    let a0 = bench.status(Who::A);
    let peer0 = of(&a0, "peer");
    let old0 = of(&a0, "old");
    assert_eq!((peer0.len(), old0.len()), (1, 1), "{a0}");
    let b0 = bench.status(Who::B);
    assert_eq!(established(&b0).len(), 2, "{b0}");

    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    let count = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            udp_counted(
                bench.topo.a(),
                bench.topo.b(),
                to,
                4710,
                6000,
                Duration::from_millis(1),
            )
        });
        std::thread::sleep(Duration::from_secs(1));
        // `old` goes, `new` comes; `peer` stays as it was.
        let extra = extra_conn(&bench, "new", "third", "new.a.esprit.test");
        bench.write_config(Who::A, &extra);
        let out = bench.cli(&["reload", "--socket", &socket], SETUP);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "reload: {said} {out:?}");
        assert!(
            said.contains("added new, removed old, replaced -, unchanged peer"),
            "{said}"
        );
        bench.wait_status(Who::A, "old gone, new up", SETUP, |s| {
            (of(s, "old").is_empty() && s.ike_sas.iter().all(|sa| sa.conn != "old"))
                .then_some(())
                .and_then(|()| (children(s, "third").len() == 1).then_some(()))
        });
        // A file with an error: refused by name, nothing changes.
        let broken = std::fs::read_to_string(bench.config(Who::A))
            .expect("config")
            .replace("start_action = \"start\"", "start_action = \"sometimes\"");
        std::fs::write(bench.config(Who::A), broken).expect("write");
        let out = bench.cli(&["reload", "--socket", &socket], SETUP);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "a broken reload succeeded: {out:?}");
        let want = format!(
            "{}: connections.new.children.third.start_action: unknown variant `sometimes`",
            bench.config(Who::A).display()
        );
        assert!(err.contains(&want), "{err}");
        assert!(err.contains("the running configuration stays"), "{err}");
        stream.join().expect("stream thread")
    });
    let c = count.expect("counted UDP stream");
    eprintln!(
        "udp_counted: sent {} received {} missing {} duplicates {}",
        c.sent,
        c.received,
        c.missing_seqs.len(),
        c.duplicates
    );
    assert_eq!(c.sent, 6000, "{c:?}");
    assert!(
        c.missing_seqs.is_empty(),
        "lost {} datagrams across the reload: {:?}",
        c.missing_seqs.len(),
        &c.missing_seqs[..c.missing_seqs.len().min(20)]
    );
    assert_eq!(c.duplicates, 0);

    // peer's IKE SA and child SA are the very same ones.
    let a1 = bench.status(Who::A);
    assert_eq!(of(&a1, "peer"), peer0, "{a1}");
    assert_eq!(of(&a1, "new").len(), 1, "{a1}");
    let names: Vec<&str> = a1.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["new", "peer"], "{a1}");
    // b was told: the old IKE SA was deleted by its peer, and b holds peer's and new's.
    let old_ike = &old0[0].1;
    bench.wait_status(Who::B, "old's IKE SA deleted at b", SETUP, |s| {
        let spis: Vec<&String> = s.ike_sas.iter().map(|sa| &sa.spi_i).collect();
        (!spis.contains(&old_ike) && established(s).len() == 2).then_some(())
    });
    bench.wait_log(Who::B, "closed (deleted by peer)", SETUP);
    // The broken file changed nothing.
    assert_eq!(sas(&bench.status(Who::A)), sas(&a1));
}

#[test]
fn sighup_reloads_and_a_broken_file_changes_nothing() {
    let bench = {
        let topo = Topology::direct(false).expect("topology");
        let (a, mut b) = psk_net(&topo, "start");
        b.children
            .push(child("second", topo.b_inner(), topo.a_inner(), v4_second));
        Bench::up(topo, a, b, "net")
    };
    let mut bench = bench;
    let peer0 = of(&bench.status(Who::A), "peer");
    assert_eq!(peer0.len(), 1);

    let extra = extra_conn(&bench, "more", "second", "more.a.esprit.test");
    bench.write_config(Who::A, &extra);
    bench
        .daemon_mut(Who::A)
        .proc
        .signal(libc::SIGHUP)
        .expect("SIGHUP");
    bench.wait_log(Who::A, "SIGHUP: reloaded", SETUP);
    bench.wait_child(Who::A, "second");

    let broken = std::fs::read_to_string(bench.config(Who::A))
        .expect("config")
        .replace(
            "[connections.more.remote]",
            "[connections.more.remote]\nmystery = 1",
        );
    std::fs::write(bench.config(Who::A), broken).expect("write");
    bench
        .daemon_mut(Who::A)
        .proc
        .signal(libc::SIGHUP)
        .expect("SIGHUP");
    let line = bench.wait_log(Who::A, "SIGHUP: reload rejected", SETUP);
    let want = format!(
        "{}: connections.more.remote.mystery: unknown field `mystery`",
        bench.config(Who::A).display()
    );
    assert!(line.contains(&want), "{line}");
    let s = bench.status(Who::A);
    assert_eq!(of(&s, "peer"), peer0, "{s}");
    let more0 = of(&s, "more");
    assert_eq!(more0.len(), 1, "{s}");

    // A changed connection is renegotiated from its new definition; peer stays put.
    let changed = extra.replace(
        "start_action = \"start\"",
        "start_action = \"start\"\nrekey_time = \"30m\"",
    );
    bench.write_config(Who::A, &changed);
    bench
        .daemon_mut(Who::A)
        .proc
        .signal(libc::SIGHUP)
        .expect("SIGHUP");
    bench.wait_log(Who::A, "replaced more, unchanged peer", SETUP);
    bench.wait_status(Who::A, "more on a new IKE SA", SETUP, |s| {
        let now = of(s, "more");
        (now.len() == 1 && now[0].1 != more0[0].1 && s.ike_sas.len() == 2).then_some(())
    });
    assert_eq!(of(&bench.status(Who::A), "peer"), peer0);
}
