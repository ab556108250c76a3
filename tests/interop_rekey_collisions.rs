//! Simultaneous rekeys against charon 5.9.8 (issue 19 item 4): esprit and charon
//! (kernel-libipsec) each start a rekey of the same SA at the same moment, 20 times for
//! the child SA and 20 times for the IKE SA, while numbered UDP datagrams cross the
//! tunnel both ways.
//!
//! The peers talk through the testbed's userspace relay ([`Topology::impaired`]) with a
//! fixed delay of [`DELAY`] each way and nothing else: two requests sent less than that
//! apart are both on the wire before either is answered, so each side receives the
//! other's request while its own is outstanding (RFC 7296 2.8.1, 2.8.2). A repetition
//! counts as a real collision only when both logs say so: charon's "CHILD_SA rekey
//! collision won/lost" (or "IKE_SA ..."), and esprit's "child SA rekey collision" (or
//! "IKE SA ..."). The test fails if fewer than [`MIN_COLLISIONS`] of [`REPEATS`] were
//! real collisions, if a datagram is lost (see below), or if a repetition does not end
//! with exactly one IKE SA and one child SA on each side, their SPIs matching.
//!
//! A third test crosses an IKE rekey with a child rekey (RFC 7296 2.25): each side
//! refuses the other's request with TEMPORARY_FAILURE, retries, and both complete.
//!
//! A datagram toward charon may only be missing if charon's own NAT-T socket dropped at
//! least as many for a full receive buffer meanwhile (libipsec reads it in one thread,
//! which the builds sharing a test machine starve now and then): that loss is charon's
//! and is printed. esprit's socket and the relay's must drop nothing, and nothing
//! toward esprit may be missing.
//!
//! The child case, the IKE case and the crossed test run at once, each in its own
//! namespaces.

#[allow(dead_code, unreachable_pub)]
#[path = "interop/charon.rs"]
mod charon;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use charon::{Auth, Charon, Conn, IkeSa};
use engine::control::Request;
use engine::status::Status;
use esprit::testbed::esprit::{Auth as EAuth, Child, Daemon, Side, CONN};
use esprit::testbed::{tools, udp_counted, wait_ok, wait_until, Impairment, Topology, UdpCount};

/// Added by the relay to every datagram, each way: the window in which two rekeys
/// started together cross (the `swanctl` process takes some tens of ms to send its).
const DELAY: Duration = Duration::from_millis(250);
/// Repetitions of each case.
const REPEATS: usize = 20;
/// Real collisions required of [`REPEATS`].
const MIN_COLLISIONS: usize = 15;
/// Each repetition's counted stream, each way: one datagram per ms for 3 s, the rekeys
/// started [`LEAD`] into it.
const STREAM: u64 = 3000;
const INTERVAL: Duration = Duration::from_millis(1);
const LEAD: Duration = Duration::from_millis(300);
/// Bound on one repetition settling (both rekeys, the deletes, charon's
/// delete_rekeyed_delay of 1 s).
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const PSK: &str = "esprit-rekey-collision-psk-0123456789";
const E_ID: &str = "esprit.test";
const C_ID: &str = "charon.test";
const CHILD: &str = "net";

/// Which SA both sides rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Child,
    Ike,
}

/// esprit in a, charon in b, the delaying relay between. Fields drop in order: the
/// daemons before the namespaces.
struct Lab {
    esprit: Daemon,
    charon: Charon,
    topo: Topology,
    kind: Kind,
}

impl Lab {
    fn up(kind: Kind) -> Lab {
        let topo = Topology::impaired(Impairment {
            delay: DELAY,
            ..Impairment::NONE
        })
        .expect("topology");
        let (a_net, b_net) = ("10.96.1.0/24", "10.96.2.0/24");
        let conn = Conn {
            local_addr: topo.b_addr(),
            remote_addr: None,
            proposals: "aes128gcm16-prfsha256-x25519".into(),
            local_id: C_ID.into(),
            remote_id: E_ID.into(),
            auth: Auth::Psk(PSK.into()),
            dpd_delay: None,
            retransmit_tries: 3,
            children: vec![charon::Child {
                name: CHILD.into(),
                local_ts: vec![b_net.into()],
                remote_ts: vec![a_net.into()],
                esp_proposals: "aes128gcm16".into(),
            }],
        };
        // Rekeyed inbound SAs go 1 s after the delete (5 s by default), so that a
        // repetition settles sooner; the relay's delay is far shorter.
        let charon = Charon::start_conf(
            topo.b(),
            &topo.dir().join("charon"),
            &conn,
            &conn.swanctl_conf(),
            "delete_rekeyed_delay = 1",
        )
        .unwrap_or_else(|e| panic!("charon: {e}"));
        let mut side = Side::new(
            topo.a_addr(),
            Some(topo.b_addr_for_a()),
            E_ID,
            EAuth::Psk(PSK.into()),
        );
        side.remote_id = Some(C_ID.into());
        side.children.push(Child::new(CHILD, &[a_net], &[b_net]));
        let edir = topo.dir().join("esprit");
        std::fs::create_dir_all(&edir).expect("esprit dir");
        let exe = Path::new(env!("CARGO_BIN_EXE_esprit"));
        let esprit = Daemon::start(exe, topo.a(), &side, &edir).expect("esprit");
        let lab = Lab {
            esprit,
            charon,
            topo,
            kind,
        };
        lab.esprit
            .command(&Request::Initiate {
                conn: CONN.into(),
                child: None,
            })
            .expect("initiate");
        lab.settled("the tunnel up", |_, _| true)
            .unwrap_or_else(|e| panic!("{e}"));
        // The TUN's queue toward esprit holds 10 s of the streams (as in
        // e2e_rekey_load): a daemon the scheduler holds back must not lose datagrams at
        // the device queue, a loss of the machine, not of the rekeys. Counted anyway.
        lab.topo
            .a()
            .ip(&["link", "set", "esprit0", "txqueuelen", "10000"])
            .expect("txqueuelen");
        lab
    }

    /// Waits until each side has exactly one established IKE SA with one installed
    /// child, the two sides' SPIs matching, and `also` holds; returns both views.
    fn settled(
        &self,
        what: &str,
        mut also: impl FnMut(&Status, &IkeSa) -> bool,
    ) -> Result<(Status, IkeSa), String> {
        self.settled_within(what, SETTLE, &mut also)
    }

    /// [`Lab::settled`] with its own bound.
    fn settled_within(
        &self,
        what: &str,
        timeout: Duration,
        also: &mut dyn FnMut(&Status, &IkeSa) -> bool,
    ) -> Result<(Status, IkeSa), String> {
        wait_ok(what, timeout, POLL, || {
            let st = self.esprit.status().map_err(|e| e.to_string())?;
            let sas = self.charon.sas()?;
            let ok = st.ike_sas.len() == 1
                && sas.len() == 1
                && st.ike_sas[0].state == "ESTABLISHED"
                && sas[0].state == "ESTABLISHED"
                && st.ike_sas[0].spi_i == sas[0].spi_i
                && st.ike_sas[0].spi_r == sas[0].spi_r
                && st.ike_sas[0].children.len() == 1
                && sas[0].children.len() == 1
                && st.ike_sas[0].children[0].state == "INSTALLED"
                && sas[0].children[0].state == "INSTALLED"
                && st.ike_sas[0].children[0].spi_in == sas[0].children[0].spi_out
                && st.ike_sas[0].children[0].spi_out == sas[0].children[0].spi_in
                && also(&st, &sas[0]);
            if ok {
                Ok((st, sas[0].clone()))
            } else {
                Err(format!("esprit:\n{st}charon: {sas:?}"))
            }
        })
        .map_err(|e| e.to_string())
    }

    /// Starts the rekey on both sides at once; returns how long esprit's command and
    /// `swanctl --rekey` took (the second is most of the skew between the two requests).
    fn rekey_both(&self) -> (Duration, Duration) {
        let go = Barrier::new(2);
        thread::scope(|s| {
            let charon = s.spawn(|| {
                go.wait();
                let t = Instant::now();
                match self.kind {
                    Kind::Child => self.charon.rekey_child(CHILD),
                    Kind::Ike => self.charon.rekey_ike(),
                }
                .map(|()| t.elapsed())
            });
            go.wait();
            let t = Instant::now();
            self.esprit
                .command(&Request::Rekey {
                    conn: CONN.into(),
                    child: (self.kind == Kind::Child).then(|| CHILD.into()),
                    ike: self.kind == Kind::Ike,
                })
                .expect("esprit rekey");
            let esprit = t.elapsed();
            let swanctl = charon
                .join()
                .expect("swanctl thread")
                .unwrap_or_else(|e| panic!("swanctl --rekey: {e}"));
            (esprit, swanctl)
        })
    }

    /// A numbered stream each way through the tunnel while `during` runs.
    fn counted<T: Send>(&self, port: u16, during: impl FnOnce() -> T + Send) -> (T, [UdpCount; 2]) {
        self.counted_n(port, STREAM, during)
    }

    /// [`Lab::counted`] with `count` datagrams each way.
    fn counted_n<T: Send>(
        &self,
        port: u16,
        count: u64,
        during: impl FnOnce() -> T + Send,
    ) -> (T, [UdpCount; 2]) {
        let (a, b) = (self.topo.a(), self.topo.b());
        let (to_b, to_a): (IpAddr, IpAddr) = (
            self.topo.b_inner().v4[0].into(),
            self.topo.a_inner().v4[0].into(),
        );
        thread::scope(|s| {
            let ab = s.spawn(|| udp_counted(a, b, to_b, port, count, INTERVAL));
            let ba = s.spawn(|| udp_counted(b, a, to_a, port + 1, count, INTERVAL));
            let out = during();
            let ab = ab.join().expect("stream thread").expect("stream a->b");
            let ba = ba.join().expect("stream thread").expect("stream b->a");
            (out, [ab, ba])
        })
    }

    /// Every datagram of `streams` arrived, or, toward charon, no more went missing
    /// than charon's own NAT-T socket dropped for a full receive buffer since `drops0`
    /// (libipsec reads it in one thread, which the builds sharing a test machine can
    /// starve; that loss is charon's, not the rekeys'). esprit's socket and the relay's
    /// must drop nothing, and the relay must have sent all it received.
    fn check_streams(
        &self,
        what: &str,
        streams: &[UdpCount; 2],
        count: u64,
        drops0: [(&str, u64); 4],
    ) {
        let drops = self.drops();
        let grew = |who: &str| {
            let at = |d: &[(&str, u64); 4]| d.iter().find(|x| x.0 == who).map_or(0, |x| x.1);
            at(&drops) - at(&drops0)
        };
        let (e, r, c) = (grew("esprit"), grew("relay"), grew("charon"));
        let tun = grew("esprit0");
        // What the relay still holds back (the delay) leaves within DELAY.
        let relay = || self.topo.relay().map(|r| r.counters()).unwrap_or_default();
        let all_sent = |c: &esprit::testbed::RelayCounters| {
            c.a_to_b.received == c.a_to_b.sent && c.b_to_a.received == c.b_to_a.sent
        };
        let relay = wait_until(DELAY * 8, POLL, || Some(relay()).filter(all_sent))
            .unwrap_or_else(|_| relay());
        let [ab, ba] = streams;
        if !ab.missing_seqs.is_empty() {
            eprintln!(
                "{what}: {} datagrams toward charon missing, {c} dropped at charon's socket",
                ab.missing_seqs.len()
            );
        }
        assert_eq!(
            (e, tun, r),
            (0, 0, 0),
            "{what}: esprit's socket, esprit's TUN queue or the relay's sockets dropped"
        );
        assert!(
            all_sent(&relay),
            "{what}: the relay lost datagrams: {relay}"
        );
        assert!(
            ab.sent == count && ab.missing_seqs.len() as u64 <= c,
            "{what}: a->b lost {} of {} datagrams, charon's socket dropped {c}: {:?}",
            ab.missing_seqs.len(),
            ab.sent,
            &ab.missing_seqs[..ab.missing_seqs.len().min(20)]
        );
        assert!(
            ba.sent == count && ba.missing_seqs.is_empty(),
            "{what}: b->a lost {} of {} datagrams: {:?}",
            ba.missing_seqs.len(),
            ba.sent,
            &ba.missing_seqs[..ba.missing_seqs.len().min(20)]
        );
    }

    /// Datagrams dropped for a full receive buffer at the NAT-T sockets of esprit,
    /// charon and the relay between them, and at esprit's TUN queue.
    fn drops(&self) -> [(&'static str, u64); 4] {
        let relay = self.topo.middle().map_or(0, |m| socket_drops(m, 4500));
        [
            ("esprit", socket_drops(self.topo.a(), 4500)),
            ("esprit0", tx_dropped(self.topo.a(), "esprit0")),
            ("relay", relay),
            ("charon", socket_drops(self.topo.b(), 4500)),
        ]
    }

    fn logs(&self) -> (String, String) {
        (self.esprit.log(), self.charon.log())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let (e, c) = self.logs();
        for (who, log) in [("esprit", e), ("charon", c)] {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!(
                "--- {:?} case: {who}'s log (last {} lines) ---\n{}",
                self.kind,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Whether esprit's log, from a repetition's start, shows the collision: "child SA
/// rekey collision: 6f1ba859 rekeyed by both peers, as ... and ..." or "IKE SA rekey
/// collision: #8 rekeyed by both peers; #10 stays, #11 goes".
fn esprit_saw_collision(kind: Kind, log: &str) -> bool {
    let needle = match kind {
        Kind::Child => "child SA rekey collision",
        Kind::Ike => "IKE SA rekey collision",
    };
    count(log, needle) == 1
}

/// The outcome of one repetition.
#[derive(Debug)]
struct Rep {
    /// charon's collision line ("won, deleting old child net{5}", ...) if it logged one.
    charon: Option<String>,
    /// Whether esprit's log shows the collision too ([`esprit_saw_collision`]).
    esprit: bool,
    /// The streams a->b and b->a.
    streams: [UdpCount; 2],
    /// How long `swanctl --rekey` took to return, the whole repetition.
    swanctl: Duration,
    took: Duration,
}

impl Rep {
    fn collided(&self) -> bool {
        self.charon.is_some() && self.esprit
    }
}

/// Lines of charon's log that tell what a repetition without a collision did instead.
fn charon_story(log: &str) -> String {
    log.lines()
        .filter(|l| {
            [
                "CREATE_CHILD_SA",
                "INFORMATIONAL",
                "rekey",
                "collision",
                "vici client",
            ]
            .iter()
            .any(|n| l.contains(n))
                && !l.contains("list-sa")
                && !l.contains("connected")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(kind: Kind) -> Vec<Rep> {
    let lab = Lab::up(kind);
    let needle = match kind {
        Kind::Child => "CHILD_SA rekey collision",
        Kind::Ike => "IKE_SA rekey collision",
    };
    let mut reps = Vec::new();
    for i in 0..REPEATS {
        let t0 = Instant::now();
        let (st0, c0) = lab
            .settled("the SAs before the rekey", |_, _| true)
            .unwrap_or_else(|e| panic!("{kind:?} repetition {i}: {e}"));
        let (e_log, c_log) = lab.logs();
        let (e_from, c_from) = (e_log.len(), c_log.len());
        let (old_child, old_spi_i) = (
            st0.ike_sas[0].children[0].spi_in.clone(),
            st0.ike_sas[0].spi_i.clone(),
        );
        let port = 6000 + 2 * i as u16;
        let drops0 = lab.drops();
        let ((_, swanctl), streams) = lab.counted(port, || {
            // The rekeys start once the streams run; the settling wait below checks
            // that the new SAs carry them.
            thread::sleep(LEAD);
            let took = lab.rekey_both();
            let done = lab.settled("one rekeyed SA pair again", |st, c| {
                let e = &st.ike_sas[0];
                let rekeyed = match kind {
                    Kind::Child => e.children[0].spi_in != old_child,
                    Kind::Ike => {
                        e.spi_i != old_spi_i
                            && e.children[0].spi_in == old_child
                            && c.children[0].spi_in == c0.children[0].spi_in
                    }
                };
                // A collision's loser logs its line when its own exchange completes:
                // wait for it (or give up on it after a while: no collision).
                rekeyed
                    && (count(&lab.charon.log()[c_from..], needle) > 0 || t0.elapsed() > SETTLE / 2)
            });
            done.unwrap_or_else(|e| panic!("{kind:?} repetition {i}: {e}"));
            took
        });
        let (e_log, c_log) = lab.logs();
        let (e_log, c_log) = (&e_log[e_from..], &c_log[c_from..]);
        let line = c_log
            .lines()
            .find_map(|l| l.split_once(needle))
            .map(|(_, r)| r.trim().to_string());
        let rep = Rep {
            charon: line,
            esprit: esprit_saw_collision(kind, e_log),
            streams,
            swanctl,
            took: t0.elapsed(),
        };
        eprintln!(
            "{kind:?} {i:2}: {} in {:.1} s (swanctl {} ms); charon: {}; esprit: {}; a->b {}/{} b->a {}/{}",
            if rep.collided() { "COLLISION" } else { "no collision" },
            rep.took.as_secs_f64(),
            rep.swanctl.as_millis(),
            rep.charon.as_deref().unwrap_or("-"),
            if rep.esprit { "collision" } else { "-" },
            rep.streams[0].received,
            rep.streams[0].sent,
            rep.streams[1].received,
            rep.streams[1].sent,
        );
        if !rep.collided() {
            eprintln!("charon's log meanwhile:\n{}", charon_story(c_log));
        }
        lab.check_streams(
            &format!("{kind:?} repetition {i}"),
            &rep.streams,
            STREAM,
            drops0,
        );
        reps.push(rep);
    }
    let (st, c) = lab
        .settled("one SA pair at the end", |_, _| true)
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    eprintln!("{kind:?}: at the end esprit:\n{st}charon: {c:?}");
    let real = reps.iter().filter(|r| r.collided()).count();
    assert!(
        real >= MIN_COLLISIONS,
        "{kind:?}: only {real} of {REPEATS} repetitions were real collisions: {reps:?}"
    );
    reps
}

#[test]
fn simultaneous_rekeys_with_charon_lose_nothing() {
    tools::require_strongswan().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let (child, ike) = thread::scope(|s| {
        let child = s.spawn(|| run(Kind::Child));
        let ike = s.spawn(|| run(Kind::Ike));
        (child.join(), ike.join())
    });
    let (child, ike) = match (child, ike) {
        (Ok(c), Ok(i)) => (c, i),
        (Err(p), _) | (_, Err(p)) => std::panic::resume_unwind(p),
    };
    for (kind, reps) in [(Kind::Child, &child), (Kind::Ike, &ike)] {
        let real = reps.iter().filter(|r| r.collided()).count();
        let sent: u64 = reps.iter().flat_map(|r| &r.streams).map(|s| s.sent).sum();
        let missing: usize = reps
            .iter()
            .flat_map(|r| &r.streams)
            .map(|s| s.missing_seqs.len())
            .sum();
        let won = reps
            .iter()
            .filter(|r| r.charon.as_deref().is_some_and(|l| l.starts_with("won")))
            .count();
        eprintln!(
            "{kind:?}: {real} of {REPEATS} real collisions (charon won {won}), {sent} datagrams, {missing} missing (each within charon's socket drops)"
        );
    }
    eprintln!("wall time {:.0} s", t0.elapsed().as_secs_f64());
}

/// Repetitions of the crossed case, alternating which side rekeys what.
const CROSSED_REPEATS: usize = 4;
/// Its stream, each way: 20 s at one datagram per ms, long enough for charon's retry of
/// a child rekey refused with TEMPORARY_FAILURE (5 to 15 s later).
const CROSSED_STREAM: u64 = 20_000;

/// An IKE rekey and a child rekey cross (RFC 7296 2.25): in even repetitions esprit
/// rekeys the IKE SA while charon rekeys the child, in odd ones the other way round.
/// Each side refuses the request that crosses its own with TEMPORARY_FAILURE (charon's
/// log shows the one it sent and the one it got) and tries again later; both rekeys
/// complete, one matching SA pair remains on each side, no datagram is lost.
#[test]
fn crossing_ike_and_child_rekeys_with_charon_settle() {
    tools::require_strongswan().unwrap_or_else(|e| panic!("{e}"));
    let lab = Lab::up(Kind::Child);
    let mut crossed = 0;
    for i in 0..CROSSED_REPEATS {
        let t0 = Instant::now();
        let esprit_ike = i % 2 == 0;
        let (st0, _) = lab
            .settled("the SAs before the rekeys", |_, _| true)
            .unwrap_or_else(|e| panic!("crossed repetition {i}: {e}"));
        let c_from = lab.charon.log().len();
        let old_child = st0.ike_sas[0].children[0].spi_in.clone();
        let old_spi_i = st0.ike_sas[0].spi_i.clone();
        let port = 7000 + 2 * i as u16;
        let drops0 = lab.drops();
        let ((), streams) = lab.counted_n(port, CROSSED_STREAM, || {
            thread::sleep(LEAD);
            let go = Barrier::new(2);
            thread::scope(|s| {
                let charon = s.spawn(|| {
                    go.wait();
                    if esprit_ike {
                        lab.charon.rekey_child(CHILD)
                    } else {
                        lab.charon.rekey_ike()
                    }
                });
                go.wait();
                lab.esprit
                    .command(&Request::Rekey {
                        conn: CONN.into(),
                        child: (!esprit_ike).then(|| CHILD.into()),
                        ike: esprit_ike,
                    })
                    .expect("esprit rekey");
                charon
                    .join()
                    .expect("swanctl thread")
                    .unwrap_or_else(|e| panic!("swanctl --rekey: {e}"));
            });
            lab.settled_within("both rekeys done", Duration::from_secs(40), &mut |st, _| {
                let e = &st.ike_sas[0];
                e.spi_i != old_spi_i && e.children[0].spi_in != old_child
            })
            .unwrap_or_else(|e| panic!("crossed repetition {i}: {e}"));
        });
        let c_log = lab.charon.log()[c_from..].to_string();
        let got = c_log
            .lines()
            .filter(|l| l.contains("parsed CREATE_CHILD_SA response") && l.contains("N(TEMP_FAIL)"))
            .count();
        let gave = c_log
            .lines()
            .filter(|l| {
                l.contains("generating CREATE_CHILD_SA response") && l.contains("N(TEMP_FAIL)")
            })
            .count();
        let real = got > 0 && gave > 0;
        crossed += usize::from(real);
        eprintln!(
            "crossed {i}: esprit rekeyed the {}, charon the {}; {} in {:.1} s (TEMPORARY_FAILURE sent by charon {gave}, by esprit {got}); a->b {}/{} b->a {}/{}",
            if esprit_ike { "IKE SA" } else { "child SA" },
            if esprit_ike { "child SA" } else { "IKE SA" },
            if real { "CROSSED" } else { "not crossed" },
            t0.elapsed().as_secs_f64(),
            streams[0].received,
            streams[0].sent,
            streams[1].received,
            streams[1].sent,
        );
        if !real {
            eprintln!("charon's log meanwhile:\n{}", charon_story(&c_log));
        }
        lab.check_streams(
            &format!("crossed repetition {i}"),
            &streams,
            CROSSED_STREAM,
            drops0,
        );
    }
    assert!(
        crossed * 2 >= CROSSED_REPEATS,
        "only {crossed} of {CROSSED_REPEATS} repetitions crossed"
    );
}

/// Datagrams the kernel dropped for a full receive buffer at the UDP sockets bound to
/// local `port` in `ns` (the `drops` column of /proc/net/udp).
fn socket_drops(ns: &esprit::testbed::Netns, port: u16) -> u64 {
    let table = ns.run_stdout(&["cat", "/proc/net/udp"]).unwrap_or_default();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&port))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .and_then(|d| d.parse::<u64>().ok())
        })
        .sum()
}

/// A device's "TX dropped" from `ip -s link`.
fn tx_dropped(ns: &esprit::testbed::Netns, dev: &str) -> u64 {
    let text = ns.ip(&["-s", "link", "show", dev]).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .iter()
        .position(|l| l.starts_with("TX:"))
        .and_then(|i| lines.get(i + 1))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
