//! The IKE endpoint at scale: one responder holding 1k, 10k and 100k established IKE
//! SAs (one child SA each, with IKE rekey, child rekey and DPD timers armed), and what
//! a timer round (`poll_timeout` + `handle_timeout`) and one more handshake cost there.
//! Both should stay flat as the SA count grows. A counting allocator also prints the
//! responder's heap bytes per established IKE SA with one child at each size.
//!
//! `ESPRIT_SCALE_SIZES=1000,10000` picks other sizes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::crypto::SeededRng;
use ike::endpoint::Endpoint;
use ike::proposal::ProposalSet;
use ike::ts;

/// The system allocator, counting live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter
// is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const RESPONDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const IKE: &str = "aes128gcm16-prfsha256-x25519";

/// The initiator address of handshake number `n`: one per SA, as from many peers.
fn peer_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff))
}

fn psk() -> (LocalAuth, RemoteAuth) {
    let psk = Arc::new(zeroize::Zeroizing::new(b"a long random secret".to_vec()));
    (LocalAuth::Psk(psk.clone()), RemoteAuth::Psk(psk))
}

fn conn(name: &str, local: IpAddr, remote: Option<IpAddr>, me: &str, peer: &str) -> Connection {
    let (local_auth, remote_auth) = psk();
    Connection {
        name: name.into(),
        local_addrs: vec![local],
        remote_addrs: remote.into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike(IKE).unwrap(),
        local_id: Identity::parse(me).unwrap(),
        local_auth,
        remote_id: Identity::parse(peer).unwrap(),
        remote_auth,
        encap: false,
        // Timers on every SA: IKE rekey, child rekey, liveness.
        dpd_delay: Some(Duration::from_secs(30)),
        rekey_time: Duration::from_secs(4 * 3600),
        fragmentation: true,
        unique: Default::default(),
        mediation: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ts::parse_cidr("10.96.0.0/16").unwrap()],
            remote_ts: vec![ts::parse_cidr("10.97.0.0/16").unwrap()],
            esp_proposals: ProposalSet::parse_esp("aes128gcm16").unwrap(),
            rekey_time: Duration::from_secs(3600),
        }],
    }
}

/// A responder that accepts any initiator, sized for the largest run.
fn responder(now: Instant) -> Endpoint {
    let config = Config {
        max_ike_sas: 1_000_000,
        ..Config::default()
    };
    let mut r = Endpoint::new(
        config,
        Box::new(SeededRng::new(7)),
        (now, SystemTime::now()),
    );
    r.add_connection(conn(
        "peers",
        IpAddr::V4(RESPONDER),
        None,
        "gw.example",
        "%any",
    ));
    r
}

/// A fresh initiator for handshake number `n`.
fn initiator(now: Instant, n: u32) -> Endpoint {
    let mut i = Endpoint::new(
        Config::default(),
        Box::new(SeededRng::new(u64::from(n) + 1000)),
        (now, SystemTime::now()),
    );
    i.add_connection(conn(
        "gw",
        IpAddr::V4(peer_ip(n)),
        Some(IpAddr::V4(RESPONDER)),
        // Each site its own identity: with one shared, every INITIAL_CONTACT would
        // replace the SAs before it.
        &format!("peer{n}.example"),
        "gw.example",
    ));
    i
}

/// Moves datagrams both ways until both are quiet; returns the time `r` spent in
/// `handle`.
fn exchange(now: Instant, i: &mut Endpoint, r: &mut Endpoint, n: u32) -> Duration {
    let mut spent = Duration::ZERO;
    loop {
        let mut moved = false;
        while let Some(t) = i.poll_transmit() {
            moved = true;
            let local = SocketAddr::new(IpAddr::V4(RESPONDER), t.remote.port());
            let remote = SocketAddr::new(IpAddr::V4(peer_ip(n)), t.local.port());
            let start = Instant::now();
            r.handle(now, local, remote, &t.data);
            spent += start.elapsed();
        }
        while let Some(t) = r.poll_transmit() {
            moved = true;
            let local = SocketAddr::new(IpAddr::V4(peer_ip(n)), t.remote.port());
            let remote = SocketAddr::new(IpAddr::V4(RESPONDER), t.local.port());
            i.handle(now, local, remote, &t.data);
        }
        if !moved {
            return spent;
        }
    }
}

/// One IKE SA with one child from a new initiator; returns the responder's time.
fn handshake(now: Instant, r: &mut Endpoint, n: u32) -> (Endpoint, Duration) {
    let mut i = initiator(now, n);
    i.initiate(now, "gw", None).unwrap();
    let spent = exchange(now, &mut i, r, n);
    while r.poll_event().is_some() {}
    (i, spent)
}

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn sizes() -> Vec<u32> {
    std::env::var("ESPRIT_SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("ike_scale");
    for size in sizes() {
        let mut r = responder(now);
        let before = live_bytes();
        for n in 0..size {
            handshake(now, &mut r, n);
        }
        let per_sa = (live_bytes() - before) / size as isize;
        assert_eq!(r.ike_sas().len(), size as usize);
        println!(
            "ike_scale/{size}: {per_sa} heap bytes per established IKE SA with one child \
             (responder)"
        );
        // Nothing is due: what every wakeup of an idle daemon costs.
        g.bench_with_input(BenchmarkId::new("timer_round", size), &size, |b, _| {
            b.iter(|| {
                let t = r.poll_timeout().unwrap();
                r.handle_timeout(t.min(now + Duration::from_secs(1)));
            })
        });
        // One more IKE SA and child (responder time only); the initiator then deletes
        // it, untimed, so the responder stays at `size` SAs.
        let mut n = size;
        g.bench_with_input(BenchmarkId::new("handshake", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (mut i, spent) = handshake(now, &mut r, n);
                    total += spent;
                    i.terminate(now, "gw").unwrap();
                    exchange(now, &mut i, &mut r, n);
                    while r.poll_event().is_some() {}
                    n += 1;
                }
                total
            })
        });
        assert_eq!(r.ike_sas().len(), size as usize);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
