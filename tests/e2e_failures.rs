//! End-to-end: negotiations that must fail, and say why. A pre-shared key that differs
//! between the peers, and a peer certificate from a CA the initiator does not trust:
//! no SA comes up, the daemons' logs carry a line naming the reason, and `esprit
//! status` shows it as the connection's last error.

#[path = "e2e/common.rs"]
mod common;

use std::time::Duration;

use common::{child, psk_sides, v4_first, Bench, Who, SETUP};
use esprit::testbed::esprit::{Side, CONN};
use esprit::testbed::{ping, KeyKind, Topology};

/// Gives both sides the child `net` (10.96.x.0/24), a initiating at start.
fn with_net(topo: &Topology, (mut a, mut b): (Side, Side)) -> (Side, Side) {
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let mut c = child("net", ai, bi, v4_first);
    c.start_action = "start".into();
    a.children.push(c);
    b.children.push(child("net", bi, ai, v4_first));
    (a, b)
}

/// Starts b then a, and waits until a's status reports a last error for the
/// connection; returns it.
fn failed(bench: &mut Bench) -> String {
    bench.start(Who::B);
    bench.start(Who::A);
    bench.wait_status(Who::A, "the connection's last error", SETUP, |s| {
        s.connections
            .iter()
            .find(|c| c.name == CONN)
            .and_then(|c| c.last_error.clone())
    })
}

/// Asserts that no child SA is up at `sides` and that no traffic crosses.
fn nothing_up(bench: &Bench, sides: &[Who]) {
    for who in sides {
        let s = bench.status(*who);
        assert!(
            s.ike_sas.iter().all(|sa| sa.children.is_empty()),
            "no child SA may be up at {who:?}: {s}"
        );
    }
    let to = bench.topo.b_inner().v4[0].into();
    assert!(!ping(bench.topo.a(), to, 1, Duration::from_secs(1)));
}

/// Different secrets: b rejects a's AUTH, a learns it from b's AUTHENTICATION_FAILED
/// notify; both logs say "authentication failed".
#[test]
fn bad_psk_fails_with_a_clear_log_line() {
    let topo = Topology::direct(false).expect("topology");
    let sides = psk_sides(&topo, "the right secret", "a different secret");
    let (a, b) = with_net(&topo, sides);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    let error = failed(&mut bench);
    assert!(
        error.contains("authentication failed"),
        "last error: {error}"
    );
    let la = bench.wait_log(Who::A, "authentication failed", Duration::from_secs(5));
    let lb = bench.wait_log(Who::B, "authentication failed", Duration::from_secs(5));
    eprintln!("a: {la}\nb: {lb}");
    nothing_up(&bench, &[Who::A, Who::B]);
    // The CLI shows the reason too.
    let cfg = bench.config(Who::A);
    let out = bench.cli(&["status", "-c", cfg.to_str().expect("utf-8")], SETUP);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("peer: last error: authentication failed"),
        "{text}"
    );
}

/// a's certificate comes from a CA b does not trust: b refuses it and names the
/// reason, and tells a, which logs that its authentication was rejected.
#[test]
fn untrusted_initiator_certificate_fails_with_a_clear_log_line() {
    let topo = Topology::direct(false).expect("topology");
    let sides = common::cert_sides(&topo, KeyKind::EcdsaP256, Some(Who::A)).expect("certs");
    let (a, b) = with_net(&topo, sides);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    let error = failed(&mut bench);
    assert!(
        error.contains("authentication failed"),
        "last error: {error}"
    );
    let lb = bench.wait_log(Who::B, "certificate not trusted", Duration::from_secs(5));
    assert!(lb.contains("authentication failed"), "{lb}");
    assert!(
        lb.contains("CN=site-a"),
        "the line names the certificate: {lb}"
    );
    let la = bench.wait_log(Who::A, "authentication failed", Duration::from_secs(5));
    eprintln!("a: {la}\nb: {lb}");
    nothing_up(&bench, &[Who::A, Who::B]);
}

/// b's certificate comes from a CA a does not trust: a refuses it in b's IKE_AUTH
/// response, with a log line and a last error naming the reason, and installs nothing.
#[test]
fn untrusted_responder_certificate_fails_with_a_clear_log_line() {
    let topo = Topology::direct(false).expect("topology");
    let sides = common::cert_sides(&topo, KeyKind::EcdsaP256, Some(Who::B)).expect("certs");
    let (a, b) = with_net(&topo, sides);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    let error = failed(&mut bench);
    assert!(
        error.contains("authentication failed: certificate not trusted"),
        "last error: {error}"
    );
    assert!(
        error.contains("CN=site-b"),
        "names the certificate: {error}"
    );
    let la = bench.wait_log(Who::A, "certificate not trusted", Duration::from_secs(5));
    assert!(la.contains("authentication failed"), "{la}");
    eprintln!("a: {la}");
    nothing_up(&bench, &[Who::A]);
    // start_action = start retries an authentication failure (with backoff), so a
    // retry may be under way; none gets past the same refusal.
    let s = bench.status(Who::A);
    assert!(s.ike_sas.iter().all(|sa| sa.state != "ESTABLISHED"), "{s}");
}

/// RFC 7296 2.21.2: an initiator that rejects the responder's AUTH tells it so in a
/// separate INFORMATIONAL exchange, and the responder deletes the SA it had completed.
#[test]
fn responder_forgets_the_sa_the_initiator_rejected() {
    let topo = Topology::direct(false).expect("topology");
    let sides = common::cert_sides(&topo, KeyKind::EcdsaP256, Some(Who::B)).expect("certs");
    let (a, b) = with_net(&topo, sides);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    failed(&mut bench);
    bench.wait_status(Who::B, "no IKE SA left at b", Duration::from_secs(5), |s| {
        s.ike_sas.is_empty().then_some(())
    });
    let lb = bench.wait_log(Who::B, "authentication failed", Duration::from_secs(5));
    eprintln!("b: {lb}");
    nothing_up(&bench, &[Who::A, Who::B]);
}

/// Issue 20 fault 4: the IKE SA comes up but the peer refuses the child
/// (N(TS_UNACCEPTABLE) in IKE_AUTH): `esprit initiate` prints the peer's reason at once
/// and exits non-zero instead of waiting out its timeout.
#[test]
fn initiate_reports_a_refused_child_at_once() {
    let topo = Topology::direct(false).expect("topology");
    let (mut a, mut b) = psk_sides(&topo, "a shared secret", "a shared secret");
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    a.children.push(child("net", ai, bi, v4_first));
    // b only admits the other subnets: a's proposal has no overlap.
    b.children.push(child("net", bi, ai, common::v4_second));
    let mut bench = Bench::new(topo, a, b).expect("bench");
    bench.start(Who::B);
    bench.start(Who::A);
    let cfg = bench.config(Who::A);
    let started = std::time::Instant::now();
    let out = bench.cli(
        &[
            "initiate",
            CONN,
            "--timeout",
            "60",
            "-c",
            cfg.to_str().expect("utf-8"),
        ],
        Duration::from_secs(90),
    );
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("traffic selectors unacceptable"), "{err}");
    assert!(
        took < Duration::from_secs(30),
        "initiate waited {took:?} for a child the peer had refused: {err}"
    );
}

/// Issue 22 fault 2: an authentication failure does not leave a `start` connection down
/// for good. b first holds a different secret; once b reloads with the right one, a's
/// retry (with backoff) brings the tunnel up without anyone touching a.
#[test]
fn start_retries_after_an_authentication_failure() {
    let topo = Topology::direct(false).expect("topology");
    let sides = psk_sides(&topo, "the right secret", "a different secret");
    let (a, b) = with_net(&topo, sides);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    let error = failed(&mut bench);
    assert!(error.contains("authentication failed"), "{error}");
    let cfg = bench.config(Who::B);
    let text = std::fs::read_to_string(&cfg).expect("b's configuration");
    assert!(text.contains("a different secret"), "{text}");
    std::fs::write(&cfg, text.replace("a different secret", "the right secret"))
        .expect("rewriting b's configuration");
    bench
        .daemon_mut(Who::B)
        .proc
        .signal(libc::SIGHUP)
        .expect("SIGHUP to b");
    bench.wait_status(
        Who::A,
        "the child after a retry",
        Duration::from_secs(60),
        |s| {
            s.ike_sas
                .iter()
                .any(|sa| sa.children.iter().any(|c| c.name == "net"))
                .then_some(())
        },
    );
    let to = bench.topo.b_inner().v4[0].into();
    assert!(ping(bench.topo.a(), to, 2, Duration::from_secs(5)));
}
