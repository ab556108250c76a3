//! The per-packet paths allocate nothing: a counting global allocator watches
//! encapsulation, SAD decapsulation, drops and SPD lookups. Only the test's own thread
//! is counted: the harness's main thread may allocate at any moment meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use esp::{
    Aead, AesCbc, Algorithm, InboundSa, Integ, OutboundSa, SaConfig, SaSelectors, Sad, Spd,
    TrafficSelector,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread whose allocations count; const-initialized, so reading it
    /// never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn dataplane_allocates_nothing_per_packet() {
    COUNTED.with(|c| c.set(true));
    for alg in [
        Algorithm::from(Aead::AesGcm256),
        Aead::AesGcm192.into(),
        Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha512_256),
        Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha1_96),
    ] {
        no_allocation_with(alg);
    }
    // The counter does count on this thread.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(vec![1u8; 10]));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 1);
}

fn no_allocation_with(alg: Algorithm) {
    let km = vec![3u8; alg.keymat_len()];
    let config = SaConfig {
        esn: true,
        ..SaConfig::default()
    };
    let mut tx = OutboundSa::new(9, alg, &km, &config).unwrap();
    let rx = InboundSa::new(9, alg, &km, &config, SaSelectors::any()).unwrap();
    let mut sad = Sad::new();
    sad.insert(rx);
    let mut spd = Spd::new();
    let any = TrafficSelector::any_v4();
    spd.insert(&any, &"10.0.0.0/8".parse().unwrap(), 1u32)
        .unwrap();

    let inner = [
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let mut buf = vec![0u8; 2048];
    let at = OutboundSa::HEADROOM..OutboundSa::HEADROOM + inner.len();
    buf[at.clone()].copy_from_slice(&inner);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert_eq!(spd.lookup(&buf[at.clone()]), Some(1));
        let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
        let got = sad.decapsulate(&mut buf, out.packet.clone()).unwrap();
        assert_eq!(got.inner, at);
        // The drop path too: a tampered packet.
        let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
        buf[out.packet.end - 1] ^= 1;
        assert!(sad.decapsulate(&mut buf, out.packet.clone()).is_err());
        buf[at.clone()].copy_from_slice(&inner);
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        0,
        "{alg:?} allocated"
    );
}
