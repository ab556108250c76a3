//! Soak (issue 16 item 7): two esprit peers carry mixed traffic for a long time while
//! their child SAs rekey every `child lifetime` and the IKE SA now and then: a counted
//! UDP stream (1,000 datagrams/s), SHA-256-checked TCP transfers on fresh connections
//! one after another, and a second of full-speed TCP every ten seconds. Every sample
//! records each daemon's RSS, open file descriptors, threads and SA counts; at the end
//! the SA counts are one IKE SA and one child SA per side, the descriptors and threads
//! are what they were after the warm-up, RSS grew by less than 8 MiB, no datagram was
//! lost and every transfer arrived intact.
//!
//! CI runs the short form (40 s, 5 s child lifetimes). The long form is
//! `bench/soak.sh` (an hour, 1-minute child lifetimes): `ESPRIT_SOAK_SECS`,
//! `ESPRIT_SOAK_CHILD_LIFETIME`, `ESPRIT_SOAK_IKE_LIFETIME`.

#[path = "e2e/common.rs"]
mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{children, count_lines, established, psk_net, Bench, Who};
use esprit::testbed::{tcp_transfer, throughput, udp_counted, Topology};

const UDP_INTERVAL: Duration = Duration::from_millis(1);
/// Bytes of each checked transfer.
const TRANSFER: u64 = 4 << 20;
/// RSS growth allowed between the warm-up and the end.
const RSS_SLACK_KIB: u64 = 8 << 10;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// What /proc says of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ProcSample {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn proc_sample(pid: u32) -> ProcSample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    ProcSample {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
    }
}

/// One sample of both daemons.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    procs: [ProcSample; 2],
    /// (IKE SAs, child SAs) in each daemon's status.
    sas: [(usize, usize); 2],
}

fn sample(bench: &Bench, start: Instant) -> Sample {
    let mut procs = [ProcSample::default(); 2];
    let mut sas = [(0, 0); 2];
    for (i, who) in [Who::A, Who::B].into_iter().enumerate() {
        procs[i] = proc_sample(bench.daemon(who).proc.pid());
        if let Ok(s) = bench.daemon(who).status() {
            sas[i] = (s.ike_sas.len(), children(&s, "net").len());
        }
    }
    Sample {
        at: start.elapsed(),
        procs,
        sas,
    }
}

#[test]
fn mixed_traffic_across_many_rekeys_leaves_resources_flat() {
    let secs: u64 = env_or("ESPRIT_SOAK_SECS", "40")
        .parse()
        .expect("ESPRIT_SOAK_SECS");
    let child_life = env_or("ESPRIT_SOAK_CHILD_LIFETIME", "5s");
    let ike_life = env_or("ESPRIT_SOAK_IKE_LIFETIME", "17s");
    let duration = Duration::from_secs(secs);
    let topo = Topology::direct(false).expect("topology");
    let (mut a, mut b) = psk_net(&topo, "start");
    a.children[0].rekey_time = Some(child_life.clone());
    b.children[0].rekey_time = Some(child_life.clone());
    a.rekey_time = Some(ike_life.clone());
    let bench = Bench::up(topo, a, b, "net");
    let to = IpAddr::V4(bench.topo.b_inner().v4[0]);
    for ns in [bench.topo.a(), bench.topo.b()] {
        // As in e2e_rekey_load: the bursts must not overflow the TUN's queue, a
        // congestion loss that is not what this test looks for.
        ns.ip(&["link", "set", "esprit0", "txqueuelen", "10000"])
            .expect("txqueuelen");
    }

    let start = Instant::now();
    let done = AtomicBool::new(false);
    let every = (duration / 20).max(Duration::from_secs(1));
    let (count, transfers, bursts, samples) = std::thread::scope(|s| {
        let udp = s.spawn(|| {
            let n = duration.as_millis() as u64;
            let r = udp_counted(bench.topo.a(), bench.topo.b(), to, 5401, n, UDP_INTERVAL);
            done.store(true, Ordering::Relaxed);
            r
        });
        let tcp = s.spawn(|| {
            let mut results = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let port = 5402 + (results.len() % 50) as u16;
                results.push(tcp_transfer(
                    bench.topo.b(),
                    bench.topo.a(),
                    IpAddr::V4(bench.topo.a_inner().v4[0]),
                    port,
                    TRANSFER,
                    Duration::from_secs(60),
                ));
            }
            results
        });
        let burst = s.spawn(|| {
            let mut rates = Vec::new();
            let mut next = Instant::now() + Duration::from_secs(5);
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let port = 5460 + (rates.len() % 20) as u16;
                    rates.push(throughput(
                        bench.topo.a(),
                        bench.topo.b(),
                        to,
                        port,
                        Duration::from_secs(1),
                    ));
                    next += Duration::from_secs(10);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            rates
        });
        let mut samples = Vec::new();
        let mut next = Instant::now();
        while !done.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                samples.push(sample(&bench, start));
                next += every;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (
            udp.join().expect("udp thread"),
            tcp.join().expect("tcp thread"),
            burst.join().expect("burst thread"),
            samples,
        )
    });
    let c = count.expect("counted UDP stream");

    // A rekey may be under way at the last datagram: let it finish, then the SA counts
    // must be exactly one of each on both sides.
    for who in [Who::A, Who::B] {
        bench.wait_status(
            who,
            "one IKE SA and one child",
            Duration::from_secs(15),
            |s| {
                (s.ike_sas.len() == 1 && established(s).len() == 1 && children(s, "net").len() == 1)
                    .then_some(())
            },
        );
    }
    let last = sample(&bench, start);

    eprintln!("soak: {secs} s, child lifetime {child_life}, IKE lifetime {ike_life}");
    eprintln!("  t(s)  a RSS KiB  fds thr  SAs    | b RSS KiB  fds thr  SAs");
    for s in samples.iter().chain(std::iter::once(&last)) {
        eprintln!(
            "  {:>4}  {:>9}  {:>3} {:>3}  {}/{}    | {:>9}  {:>3} {:>3}  {}/{}",
            s.at.as_secs(),
            s.procs[0].rss_kib,
            s.procs[0].fds,
            s.procs[0].threads,
            s.sas[0].0,
            s.sas[0].1,
            s.procs[1].rss_kib,
            s.procs[1].fds,
            s.procs[1].threads,
            s.sas[1].0,
            s.sas[1].1,
        );
    }
    let log_a = bench.daemon(Who::A).log();
    let log_b = bench.daemon(Who::B).log();
    let child_rekeys = count_lines(&log_a, "child SA rekeyed");
    let ike_rekeys = count_lines(&log_a, "rekeyed as #") + count_lines(&log_b, "rekeyed as #");
    let intact = transfers
        .iter()
        .filter(|t| t.as_ref().is_ok_and(|t| t.intact()))
        .count();
    let rates: Vec<String> = bursts
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("error: {e}")))
        .collect();
    let mut ok: Vec<f64> = bursts
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    ok.sort_by(f64::total_cmp);
    let burst_summary = match ok.as_slice() {
        [] => "none".to_string(),
        v => format!(
            "{} of 1 s, median {:.2} Gbit/s (min {:.2}, max {:.2})",
            v.len(),
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        ),
    };
    eprintln!(
        "  udp: sent {} received {} missing {} duplicates {}; transfers {} ({} intact, {} MiB \
         each); bursts {burst_summary}; child rekeys {child_rekeys} (a's log), IKE rekeys \
         {ike_rekeys}",
        c.sent,
        c.received,
        c.missing_seqs.len(),
        c.duplicates,
        transfers.len(),
        intact,
        TRANSFER >> 20,
    );

    // Resources after the warm-up (a tenth of the run) against the end.
    let warm = samples
        .iter()
        .find(|s| s.at >= duration / 10)
        .unwrap_or(&samples[0]);
    for i in 0..2 {
        let (w, l) = (warm.procs[i], last.procs[i]);
        assert_eq!(l.fds, w.fds, "side {i}: open descriptors changed");
        assert_eq!(l.threads, w.threads, "side {i}: threads changed");
        assert!(
            l.rss_kib <= w.rss_kib + RSS_SLACK_KIB,
            "side {i}: RSS grew from {} to {} KiB",
            w.rss_kib,
            l.rss_kib
        );
    }
    assert_eq!(c.sent, duration.as_millis() as u64, "{c:?}");
    assert!(
        c.missing_seqs.is_empty(),
        "lost {} datagrams: {:?}",
        c.missing_seqs.len(),
        &c.missing_seqs[..c.missing_seqs.len().min(20)]
    );
    assert!(
        !transfers.is_empty() && intact == transfers.len(),
        "{transfers:?}"
    );
    assert!(rates.is_empty(), "{rates:?}");
    let child_life_secs: u64 = child_life.trim_end_matches('s').parse().unwrap_or(60);
    assert!(
        child_rekeys as u64 >= secs / child_life_secs / 2,
        "only {child_rekeys} child rekeys in {secs} s"
    );
}
