//! CPU seconds per GB of inner packets that ESP with AES-128-GCM costs on one core:
//! encapsulate then decapsulate 1400-byte packets through esp's own SAs for about a
//! second and a half, and print the figure. `bench/tunnel.sh` adds it to the cost of its
//! TUN <-> UDP copy loop (no crypto) to get the floor a userspace tunnel cannot beat.
//!
//! `cargo run --release -p esp --example seal_open_cost [LEN]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use esp::{Aead, InboundSa, OutboundSa, SaConfig, SaSelectors};

fn main() {
    let len: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1400);
    let km: Vec<u8> = (0..20u8)
        .map(|i| i.wrapping_mul(71).wrapping_add(3))
        .collect();
    let config = SaConfig::default();
    let mut tx = OutboundSa::new(0x1234_5678, Aead::AesGcm128, &km, &config).expect("SA");
    let mut rx = InboundSa::new(
        0x1234_5678,
        Aead::AesGcm128,
        &km,
        &config,
        SaSelectors::any(),
    )
    .expect("SA");
    // An IPv4 header (UDP, no options, 10.96.1.1 -> 10.96.2.1) and a payload.
    let mut inner = vec![0xa5u8; len];
    inner[..20].fill(0);
    inner[0] = 0x45;
    inner[2..4].copy_from_slice(&u16::try_from(len).expect("an IP packet").to_be_bytes());
    inner[6] = 0x40;
    inner[8] = 64;
    inner[9] = 17;
    inner[12..16].copy_from_slice(&[10, 96, 1, 1]);
    inner[16..20].copy_from_slice(&[10, 96, 2, 1]);
    let at = tx.head_len()..tx.head_len() + len;
    let mut buf = vec![0u8; tx.packet_len(len)];
    let (mut bytes, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_millis(1500) {
        for _ in 0..1000 {
            buf[at.clone()].copy_from_slice(&inner);
            let out = tx.encapsulate(&mut buf, at.clone()).expect("encapsulate");
            black_box(rx.decapsulate(&mut buf, out.packet).expect("decapsulate"));
            bytes += len as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{:.3}", secs / (bytes as f64 / 1e9));
}
