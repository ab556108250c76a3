//! End-to-end: child and IKE SAs rekeyed under continuous traffic without losing or
//! duplicating a packet. A counted UDP stream (1000 datagrams a second) crosses the
//! tunnel while a's status is sampled for the SPIs in use; the daemons' logs count the
//! rekeys.

#[path = "e2e/common.rs"]
mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{children, count_lines, established, psk_net, Bench, Who, SETUP};
use engine::status::Status;
use esprit::testbed::{ping, udp_counted, Topology};

const PING_WAIT: Duration = Duration::from_secs(5);

/// The counted UDP stream: 1000 datagrams a second for 9 s (twice that where said).
const UDP_COUNT: u64 = 9000;
const UDP_INTERVAL: Duration = Duration::from_millis(1);

/// Streams the counted UDP probe from a to b's inner address while a second thread
/// records every child SPI and IKE SPI pair a's status shows; returns (missing sequence
/// numbers, duplicates, child SPIs seen, IKE SAs seen).
fn counted_stream_watching_spis(
    bench: &Bench,
    port: u16,
    datagrams: u64,
) -> (Vec<u64>, u64, usize, usize) {
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    let done = AtomicBool::new(false);
    let (count, spis) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut child_spis, mut ike_spis) = (HashSet::new(), HashSet::new());
            while !done.load(Ordering::Relaxed) {
                if let Ok(st) = bench.daemon(Who::A).status() {
                    for sa in &st.ike_sas {
                        ike_spis.insert((sa.spi_i.clone(), sa.spi_r.clone()));
                        for c in &sa.children {
                            child_spis.insert(c.spi_out.clone());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (child_spis.len(), ike_spis.len())
        });
        let count = udp_counted(
            bench.topo.a(),
            bench.topo.b(),
            to,
            port,
            datagrams,
            UDP_INTERVAL,
        );
        done.store(true, Ordering::Relaxed);
        (count, watcher.join().expect("status watcher"))
    });
    let c = count.expect("counted UDP stream");
    eprintln!(
        "udp_counted: sent {} received {} missing {} duplicates {} send errors {}",
        c.sent,
        c.received,
        c.missing_seqs.len(),
        c.duplicates,
        c.send_errors
    );
    assert_eq!(c.sent, datagrams, "{c:?}");
    (c.missing_seqs, c.duplicates, spis.0, spis.1)
}

/// The first numbers of a list, for assertion messages.
fn head(v: &[u64]) -> &[u64] {
    &v[..v.len().min(20)]
}

/// a rekeys its child SA every 2 s while 9000 datagrams cross at 1000/s: every one
/// arrives exactly once, and the SPIs changed at least three times meanwhile.
#[test]
fn child_rekeys_under_traffic_lose_nothing() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, b) = psk_net(&topo, "start");
    a.children[0].rekey_time = Some("2s".into());
    let bench = Bench::up(topo, a, b, "net");
    assert!(ping(
        bench.topo.a(),
        bench.topo.b_inner().v4[0].into(),
        1,
        PING_WAIT
    ));

    let (missing, duplicates, child_spis, _) =
        counted_stream_watching_spis(&bench, 4700, UDP_COUNT);
    let log = bench.daemon(Who::A).log();
    let rekeys = count_lines(&log, "child SA rekeyed");
    eprintln!("{rekeys} child rekeys, {child_spis} outbound SPIs seen");
    assert!(
        missing.is_empty(),
        "lost {} datagrams: {:?}...",
        missing.len(),
        head(&missing)
    );
    assert_eq!(duplicates, 0);
    assert!(rekeys >= 3, "only {rekeys} child rekeys in the log");
    assert!(child_spis >= 4, "only {child_spis} outbound SPIs seen");
    // b took part: it logged the same rekeys as the responder.
    let b_rekeys = count_lines(&bench.daemon(Who::B).log(), "child SA rekeyed");
    assert!(b_rekeys >= 3, "b logged {b_rekeys} child rekeys");
    // The old SAs are retired: one child SA left on each side.
    for who in [Who::A, Who::B] {
        bench.wait_status(who, "one child SA left", SETUP, |s| {
            (children(s, "net").len() == 1).then_some(())
        });
    }
    // No rekey left the old SA's packets behind: no ESP drop at b.
    let sb = bench.status(Who::B);
    let drops = &sb.counters.inbound["drops"];
    assert!(
        drops.as_array().is_none_or(|d| d.is_empty()),
        "ESP drops at b: {drops}"
    );
}

/// a rekeys its IKE SA every 3 s while b rekeys the child SA every 2 s, under the same
/// stream: the child moves to each new IKE SA, and when b's child rekey crosses a's IKE
/// rekey one of them is answered TEMPORARY_FAILURE and retried (RFC 7296 2.25). Nothing
/// is lost and nothing is left behind. The stream runs 18 s: a refused rekey is retried
/// four retransmission timeouts later (4 s here), so a window of 9 s could hold a single
/// IKE rekey when the first one crossed a child rekey.
#[test]
fn ike_and_child_rekeys_lose_nothing() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, mut b) = psk_net(&topo, "start");
    a.rekey_time = Some("3s".into());
    b.children[0].rekey_time = Some("2s".into());
    let bench = Bench::up(topo, a, b, "net");
    assert!(ping(
        bench.topo.a(),
        bench.topo.b_inner().v4[0].into(),
        1,
        PING_WAIT
    ));

    let (missing, duplicates, child_spis, ike_spis) =
        counted_stream_watching_spis(&bench, 4701, 2 * UDP_COUNT);
    let la = bench.daemon(Who::A).log();
    let ike_rekeys = count_lines(&la, " rekeyed as #");
    let child_rekeys = count_lines(&la, "child SA rekeyed");
    eprintln!(
        "{ike_rekeys} IKE rekeys ({ike_spis} IKE SPI pairs seen), {child_rekeys} child rekeys \
         ({child_spis} child SPIs seen)"
    );
    assert!(
        missing.is_empty(),
        "lost {} datagrams: {:?}...",
        missing.len(),
        head(&missing)
    );
    assert_eq!(duplicates, 0);
    assert!(ike_rekeys >= 2, "only {ike_rekeys} IKE rekeys in a's log");
    assert!(ike_spis >= 3, "only {ike_spis} IKE SAs seen");
    assert!(
        child_rekeys >= 3,
        "only {child_rekeys} child rekeys in a's log"
    );
    assert!(child_spis >= 4, "only {child_spis} child SPIs seen");
    // Nothing piles up: one IKE SA at the end on each side, the child on it, once the
    // rekey under way (if any) is done.
    for who in [Who::A, Who::B] {
        bench.wait_status(who, "one IKE SA with one child", SETUP, |s| {
            (s.ike_sas.len() == 1 && children(s, "net").len() == 1).then_some(())
        });
    }
}

/// Both sides rekey the child every 2 s from timers started at the same moment, so
/// their CREATE_CHILD_SA requests often cross (RFC 7296 2.8.1): both new SAs come up,
/// the redundant one is deleted at once, and still nothing is lost.
#[test]
fn child_rekeys_from_both_sides_collide_and_lose_nothing() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, mut b) = psk_net(&topo, "start");
    a.children[0].rekey_time = Some("2s".into());
    b.children[0].rekey_time = Some("2s".into());
    let bench = Bench::up(topo, a, b, "net");
    assert!(ping(
        bench.topo.a(),
        bench.topo.b_inner().v4[0].into(),
        1,
        PING_WAIT
    ));

    let (missing, duplicates, child_spis, _) =
        counted_stream_watching_spis(&bench, 4702, UDP_COUNT);
    let (la, lb) = (bench.daemon(Who::A).log(), bench.daemon(Who::B).log());
    let rekeys = count_lines(&la, "child SA rekeyed");
    // Each collision deletes one of the two new SAs: "terminated locally" at the side
    // that deletes it, "rekeyed" at the other.
    let collisions =
        count_lines(&la, "down: terminated locally") + count_lines(&lb, "down: terminated locally");
    eprintln!("{rekeys} child SAs made by rekeys, {collisions} rekey collisions");
    assert!(
        missing.is_empty(),
        "lost {} datagrams: {:?}...",
        missing.len(),
        head(&missing)
    );
    assert_eq!(duplicates, 0);
    assert!(rekeys >= 3, "only {rekeys} child rekeys in a's log");
    assert!(child_spis >= 3, "only {child_spis} outbound SPIs seen");
    for who in [Who::A, Who::B] {
        bench.wait_status(who, "one child SA left", SETUP, |s| {
            (established(s).len() == 1 && children(s, "net").len() == 1).then_some(())
        });
    }
}

/// The (inbound child SPI, IKE SPIi) pairs of the established IKE SAs in `s` carrying
/// child `name`.
fn spis(s: &Status, name: &str) -> Vec<(String, String)> {
    established(s)
        .iter()
        .flat_map(|sa| {
            sa.children
                .iter()
                .filter(|c| c.name == name)
                .map(|c| (c.spi_in.clone(), sa.spi_i.clone()))
        })
        .collect()
}

/// `esprit rekey peer` and then `esprit rekey peer --ike` on a while a counted UDP
/// stream crosses: each command gives new SPIs (child, then IKE), no datagram is lost
/// or duplicated, and a rekey of an unknown connection or child is refused by name.
#[test]
fn rekey_command_gives_new_spis_without_loss() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "start");
    let bench = Bench::up(topo, a, b, "net");
    let socket = bench.daemon(Who::A).socket.to_string_lossy().into_owned();
    let before = spis(&bench.status(Who::A), "net");
    assert_eq!(before.len(), 1, "{before:?}");
    let (child0, ike0) = before[0].clone();

    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    let count = std::thread::scope(|s| {
        let stream =
            s.spawn(|| udp_counted(bench.topo.a(), bench.topo.b(), to, 4703, 6000, UDP_INTERVAL));
        std::thread::sleep(Duration::from_secs(1));
        let out = bench.cli(&["rekey", "peer", "--socket", &socket], SETUP);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "rekey: {said} {out:?}");
        assert!(said.contains("rekeying child SA net"), "{said}");
        let child1 = bench.wait_status(Who::A, "a new child SA alone", SETUP, |s| {
            let now = spis(s, "net");
            (now.len() == 1 && children(s, "net").len() == 1 && now[0].0 != child0)
                .then(|| now[0].0.clone())
        });
        let out = bench.cli(&["rekey", "peer", "--ike", "--socket", &socket], SETUP);
        assert!(out.status.success(), "rekey --ike: {out:?}");
        bench.wait_status(Who::A, "the child on a new IKE SA", SETUP, |s| {
            let now = spis(s, "net");
            (s.ike_sas.len() == 1 && now.len() == 1 && now[0].1 != ike0 && now[0].0 == child1)
                .then_some(())
        });
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
        "lost {} datagrams: {:?}...",
        c.missing_seqs.len(),
        head(&c.missing_seqs)
    );
    assert_eq!(c.duplicates, 0);
    let la = bench.daemon(Who::A).log();
    assert!(
        count_lines(&la, "child SA rekeyed") >= 1,
        "no child rekey logged"
    );
    assert!(
        count_lines(&la, " rekeyed as #") >= 1,
        "no IKE rekey logged"
    );

    for (args, want) in [
        (vec!["rekey", "nosuch"], "no connection named \"nosuch\""),
        (
            vec!["rekey", "peer", "--child", "nosuch"],
            "has no child \"nosuch\"",
        ),
    ] {
        let mut args = args;
        args.extend(["--socket", &socket]);
        let out = bench.cli(&args, SETUP);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
