//! End-to-end: the life of a tunnel. A peer killed and restarted, noticed by DPD, the
//! tunnel back; a trap policy that starts the negotiation on the first packet and
//! delivers it; `esprit initiate` / `terminate` over the control socket; graceful
//! shutdown.

#[path = "e2e/common.rs"]
mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{children, established, outbound_counter, psk_net, Bench, Who, SETUP};
use engine::status::Status;
use esprit::testbed::{ping, udp_counted, Topology};

const PING_WAIT: Duration = Duration::from_secs(5);

/// b is SIGKILLed and started again on the same configuration. a's DPD (1 s) notices
/// the silence, and `dpd_action = restart` brings the tunnel back.
#[test]
fn peer_killed_and_restarted_dpd_restores_the_tunnel() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, b) = psk_net(&topo, "start");
    a.dpd_delay = Some("1s".into());
    a.retransmit = ("1s".into(), 2);
    a.children[0].dpd_action = "restart".into();
    let mut bench = Bench::up(topo, a, b, "net");
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    assert!(ping(bench.topo.a(), to, 1, PING_WAIT));
    let old_spi = bench.status(Who::A).ike_sas[0].spi_i.clone();

    bench.kill(Who::B);
    let killed = Instant::now();
    bench.start(Who::B);
    // DPD: 1 s of silence, then a request retransmitted twice (1 s, 2 s, 4 s).
    let line = bench.wait_log(Who::A, "dead peer detected", Duration::from_secs(20));
    eprintln!("DPD after {:?}: {line}", killed.elapsed());
    bench.wait_status(Who::A, "a new IKE SA with the child", SETUP, |s| {
        established(s)
            .iter()
            .any(|sa| sa.spi_i != old_spi && sa.children.iter().any(|c| c.name == "net"))
            .then_some(())
    });
    bench.wait_child(Who::B, "net");
    assert!(ping(bench.topo.a(), to, 2, PING_WAIT), "ping after restart");
    eprintln!("tunnel back {:?} after the kill", killed.elapsed());
    let s = bench.status(Who::A);
    assert_eq!(s.ike_sas.len(), 1, "the dead SA is gone: {s}");
    assert_eq!(children(&s, "net").len(), 1, "{s}");
}

/// b stays down longer than a's first attempt to restart after DPD: a keeps retrying,
/// and the tunnel comes back once b is started again.
#[test]
fn peer_down_past_the_dpd_restart_comes_back_when_restarted() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, b) = psk_net(&topo, "start");
    a.dpd_delay = Some("1s".into());
    a.retransmit = ("1s".into(), 1);
    a.children[0].dpd_action = "restart".into();
    let mut bench = Bench::up(topo, a, b, "net");
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    assert!(ping(bench.topo.a(), to, 1, PING_WAIT));

    bench.kill(Who::B);
    let killed = Instant::now();
    bench.wait_log(Who::A, "dead peer detected", Duration::from_secs(15));
    // The restart's IKE_SA_INIT goes unanswered too; a schedules another attempt.
    let line = bench.wait_log(Who::A, "did not answer", Duration::from_secs(15));
    bench.wait_log(Who::A, "retrying in 2s", Duration::from_secs(5));
    eprintln!("{:?} after the kill: {line}", killed.elapsed());
    bench.start(Who::B);
    bench.wait_child(Who::A, "net");
    bench.wait_child(Who::B, "net");
    assert!(ping(bench.topo.a(), to, 2, PING_WAIT), "ping after restart");
    eprintln!("tunnel back {:?} after the kill", killed.elapsed());
}

/// With `start_action = trap` nothing is negotiated until a packet for the remote
/// subnet arrives; that packet starts the negotiation, is held meanwhile, and is
/// delivered: a single echo request with no retry gets its answer.
#[test]
fn trap_negotiates_on_the_first_packet_and_delivers_it() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "trap");
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    bench.start(Who::A);
    bench.wait_log(Who::A, "trap policy installed", SETUP);
    for who in [Who::A, Who::B] {
        let s = bench.status(who);
        assert!(s.ike_sas.is_empty(), "no SA before traffic: {s}");
    }
    let to = bench.topo.b_inner().v4[0].to_string();
    let out = bench
        .topo
        .a()
        .command("ping")
        .args(["-n", "-c", "1", "-W", "10", &to])
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "the first echo request was not answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = bench.wait_child(Who::A, "net");
    assert!(outbound_counter(&s, "trap_held") >= 1, "{s}");
    assert_eq!(outbound_counter(&s, "trap_dropped"), 0, "{s}");
    bench.wait_child(Who::B, "net");
    bench.wait_log(Who::A, "traffic hit the trap", PING_WAIT);
}

/// A burst sent into a trap before any SA exists: the datagrams the trap holds (up to
/// its 32) are all delivered once the SA is up, each once.
#[test]
fn trap_releases_a_held_burst() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "trap");
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    bench.start(Who::A);
    bench.wait_log(Who::A, "trap policy installed", SETUP);
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    // 20 datagrams at once: all of them are sent before the negotiation can finish.
    let c = udp_counted(bench.topo.a(), bench.topo.b(), to, 4702, 20, Duration::ZERO)
        .expect("counted UDP burst");
    let s = bench.wait_child(Who::A, "net");
    assert!(c.missing_seqs.is_empty(), "{c:?}\n{s}");
    assert_eq!(c.duplicates, 0, "{c:?}");
    // Held while the SA was negotiated (all 20 unless the sender was descheduled).
    let held = outbound_counter(&s, "trap_held");
    assert!((1..=20).contains(&held), "{held} held: {s}");
    assert_eq!(outbound_counter(&s, "trap_dropped"), 0, "{s}");
}

/// `esprit initiate peer -c FILE` brings the connection up and says so; `esprit
/// terminate` removes it at both sides; `esprit status --json` reports it all.
#[test]
fn cli_initiate_and_terminate_over_the_control_socket() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "none");
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    bench.start(Who::A);
    let cfg = bench.config(Who::A);
    let cfg = cfg.to_str().expect("utf-8 path");
    assert!(bench.status(Who::A).ike_sas.is_empty());

    let out = bench.cli(&["initiate", "peer", "-c", cfg, "--timeout", "20"], SETUP);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "initiate: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("peer: established"), "{stdout}");
    let json = bench.cli(&["status", "--json", "-c", cfg], SETUP);
    assert!(json.status.success());
    let s: Status = serde_json::from_slice(&json.stdout).expect("status JSON");
    assert_eq!(established(&s).len(), 1, "{s}");
    assert_eq!(children(&s, "net").len(), 1, "{s}");
    bench.wait_child(Who::B, "net");
    assert!(ping(
        bench.topo.a(),
        bench.topo.b_inner().v4[0].into(),
        1,
        PING_WAIT
    ));

    let out = bench.cli(&["terminate", "peer", "-c", cfg], SETUP);
    assert!(
        out.status.success(),
        "terminate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for who in [Who::A, Who::B] {
        bench.wait_status(who, "no IKE SA left", Duration::from_secs(10), |s| {
            s.ike_sas.is_empty().then_some(())
        });
    }
    // The route through the tunnel went with the child.
    let net = common::net(bench.topo.b_inner().v4[0].into());
    let routes = bench
        .topo
        .a()
        .ip(&["route", "show", &net])
        .expect("ip route");
    assert!(routes.trim().is_empty(), "route left: {routes}");
    // Terminated stays down: no automatic restart.
    assert!(!ping(
        bench.topo.a(),
        bench.topo.b_inner().v4[0].into(),
        1,
        Duration::from_secs(1)
    ));
    assert!(bench.status(Who::A).ike_sas.is_empty());
    // A connection that does not exist is refused with a message.
    let out = bench.cli(&["initiate", "nosuch", "-c", cfg, "--timeout", "2"], SETUP);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}

/// SIGTERM to a: it deletes its SAs at b before it exits, so b shows no IKE SA.
#[test]
fn sigterm_deletes_the_sas_at_the_peer() {
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "start");
    let mut bench = Bench::up(topo, a, b, "net");
    let start = Instant::now();
    bench
        .daemon_mut(Who::A)
        .proc
        .signal(libc::SIGTERM)
        .expect("SIGTERM");
    bench.wait_status(
        Who::B,
        "b's IKE SA deleted by a",
        Duration::from_secs(5),
        |s| s.ike_sas.is_empty().then_some(()),
    );
    let status = bench
        .daemon_mut(Who::A)
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("a exits after SIGTERM");
    assert!(status.success(), "a's exit: {status:?}");
    eprintln!("a gone and b clean {:?} after SIGTERM", start.elapsed());
    let log = bench.daemon(Who::A).log();
    assert!(log.contains("SIGTERM: deleting SAs"), "{log}");
    assert!(log.contains("esprit stopped"), "{log}");
    assert!(!log.contains("not confirmed deleted"), "{log}");
    // Nothing remains in a's namespace: no TUN, no routes through it.
    let links = bench.topo.a().ip(&["-o", "link"]).expect("ip link");
    assert!(!links.contains("esprit0"), "{links}");
}
