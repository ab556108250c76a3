//! ESP dataplane benchmarks: encap/decap next to ring's raw AEAD on the same key and
//! sizes, in the same run, AES-CBC + HMAC beside AES-GCM at 1400 bytes, plus SAD and SPD
//! lookups from 10 to 10,000 SAs.
//!
//! `cargo bench --bench esp -- --warm-up-time 1 --measurement-time 3`
//!
//! The goal: encap + decap of a 1400-byte packet within 1.15x of raw seal + open.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use esp::{
    Aead, AesCbc, Algorithm, InboundSa, Integ, OutboundSa, SaConfig, SaSelectors, Sad, Spd,
    TrafficSelector,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

const SIZES: [usize; 4] = [64, 512, 1400, 8192];
/// AES-CBC suites measured beside AES-GCM, at 1400 bytes.
const CBC: [(&str, Algorithm); 2] = [
    (
        "aes128cbc_sha256",
        Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha256_128),
    ),
    (
        "aes256cbc_sha1",
        Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha1_96),
    ),
];
const CBC_LEN: usize = 1400;
const SPI: u32 = 0x1234_5678;
const TAG_LEN: usize = 16;

fn keymat() -> [u8; 20] {
    let mut k = [0u8; 20];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(71).wrapping_add(3);
    }
    k
}

/// The raw baseline: the same AES-128-GCM key, expanded once, as the SAs use.
fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &keymat()[..16]).unwrap())
}

fn nonce(counter: u64) -> Nonce {
    let k = keymat();
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&k[16..]);
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(counter: u64) -> [u8; 8] {
    let mut a = [0u8; 8];
    a[..4].copy_from_slice(&SPI.to_be_bytes());
    a[4..].copy_from_slice(&(counter as u32).to_be_bytes());
    a
}

fn sa_pair() -> (OutboundSa, InboundSa) {
    let config = SaConfig::default();
    let tx = OutboundSa::new(SPI, Aead::AesGcm128, &keymat(), &config).unwrap();
    let rx = InboundSa::new(SPI, Aead::AesGcm128, &keymat(), &config, SaSelectors::any()).unwrap();
    (tx, rx)
}

/// A pair for any algorithm, with KEYMAT of its length.
fn alg_pair(alg: Algorithm) -> (OutboundSa, InboundSa) {
    let km: Vec<u8> = (0..alg.keymat_len())
        .map(|i| (i as u8).wrapping_mul(71).wrapping_add(3))
        .collect();
    let config = SaConfig::default();
    let tx = OutboundSa::new(SPI, alg, &km, &config).unwrap();
    let rx = InboundSa::new(SPI, alg, &km, &config, SaSelectors::any()).unwrap();
    (tx, rx)
}

/// A valid IPv4/UDP packet of `len` bytes in total.
fn inner_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..20].copy_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ]);
    p[20..24].copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    p
}

/// A buffer with the inner packet and the SA's exact head- and tailroom, as the
/// engine lays it out (the ESP packet starts at offset 0).
fn slot(tx: &OutboundSa, len: usize) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut buf = vec![0u8; tx.packet_len(len)];
    let at = tx.head_len()..tx.head_len() + len;
    buf[at.clone()].copy_from_slice(&inner_packet(len));
    (buf, at)
}

fn encap(c: &mut Criterion) {
    let mut g = c.benchmark_group("encap");
    for &len in &SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("esp", len), &len, |b, &len| {
            let (mut tx, _) = sa_pair();
            let (mut buf, at) = slot(&tx, len);
            b.iter(|| {
                // The previous iteration encrypted the inner packet; put its version
                // nibble back so that it still reads as IPv4.
                buf[at.start] = 0x45;
                black_box(tx.encapsulate(&mut buf, at.clone()).unwrap());
            });
        });
        g.bench_with_input(BenchmarkId::new("raw_seal", len), &len, |b, &len| {
            let key = raw_key();
            let mut buf = inner_packet(len);
            let mut counter = 0u64;
            b.iter(|| {
                counter += 1;
                key.seal_in_place_separate_tag(nonce(counter), Aad::from(aad(counter)), &mut buf)
                    .unwrap()
            });
        });
    }
    for (name, alg) in CBC {
        g.bench_with_input(BenchmarkId::new(name, CBC_LEN), &CBC_LEN, |b, &len| {
            let (mut tx, _) = alg_pair(alg);
            let (mut buf, at) = slot(&tx, len);
            b.iter(|| {
                buf[at.start] = 0x45;
                black_box(tx.encapsulate(&mut buf, at.clone()).unwrap());
            });
        });
    }
    g.finish();
}

fn decap(c: &mut Criterion) {
    let mut g = c.benchmark_group("decap");
    for &len in &SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("esp", len), &len, |b, &len| {
            // One long-lived pair: every prepared packet carries a fresh sequence number.
            let (mut tx, mut rx) = sa_pair();
            let (template, at) = slot(&tx, len);
            b.iter_batched_ref(
                || {
                    let mut buf = template.clone();
                    let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
                    (buf, out.packet)
                },
                |(buf, packet)| black_box(rx.decapsulate(buf, packet.clone()).unwrap()),
                BatchSize::SmallInput,
            );
        });
        g.bench_with_input(BenchmarkId::new("raw_open", len), &len, |b, &len| {
            let key = raw_key();
            let plain = inner_packet(len);
            let mut counter = 0u64;
            b.iter_batched_ref(
                || {
                    counter += 1;
                    let mut buf = plain.clone();
                    key.seal_in_place_append_tag(nonce(counter), Aad::from(aad(counter)), &mut buf)
                        .unwrap();
                    (buf, counter)
                },
                |(buf, n)| {
                    let pt = key
                        .open_in_place(nonce(*n), Aad::from(aad(*n)), buf)
                        .unwrap();
                    black_box(pt.len())
                },
                BatchSize::SmallInput,
            );
        });
    }
    for (name, alg) in CBC {
        g.bench_with_input(BenchmarkId::new(name, CBC_LEN), &CBC_LEN, |b, &len| {
            let (mut tx, mut rx) = alg_pair(alg);
            let (template, at) = slot(&tx, len);
            b.iter_batched_ref(
                || {
                    let mut buf = template.clone();
                    let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
                    (buf, out.packet)
                },
                |(buf, packet)| black_box(rx.decapsulate(buf, packet.clone()).unwrap()),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    for &len in &SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("esp_encap_decap", len), &len, |b, &len| {
            let (mut tx, mut rx) = sa_pair();
            let (mut buf, at) = slot(&tx, len);
            b.iter(|| {
                // Decapsulation leaves the inner packet where it was: loop in place.
                let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
                black_box(rx.decapsulate(&mut buf, out.packet).unwrap());
            });
        });
        g.bench_with_input(BenchmarkId::new("raw_seal_open", len), &len, |b, &len| {
            let key = raw_key();
            let mut buf = inner_packet(len);
            buf.resize(len + TAG_LEN, 0);
            let mut counter = 0u64;
            b.iter(|| {
                counter += 1;
                let (data, tag_out) = buf.split_at_mut(len);
                let tag = key
                    .seal_in_place_separate_tag(nonce(counter), Aad::from(aad(counter)), data)
                    .unwrap();
                tag_out.copy_from_slice(tag.as_ref());
                let pt = key
                    .open_in_place(nonce(counter), Aad::from(aad(counter)), &mut buf)
                    .unwrap();
                black_box(pt.len());
            });
        });
    }
    g.finish();
}

const SA_COUNTS: [u32; 4] = [10, 100, 1000, 10_000];

/// Spreads `i` over the 32-bit space, like random SPI allocation.
fn scatter(i: u32) -> u32 {
    i.wrapping_mul(0x9e37_79b9) | 1
}

fn sad_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("sad_lookup");
    for &n in &SA_COUNTS {
        let mut sad = Sad::new();
        for i in 0..n {
            let spi = scatter(i);
            let sa = InboundSa::new(
                spi,
                Aead::AesGcm128,
                &keymat(),
                &SaConfig::default(),
                SaSelectors::any(),
            )
            .unwrap();
            sad.insert(sa);
        }
        let probes: Vec<u32> = (0..1024u32)
            .map(|k| scatter(k.wrapping_mul(7919) % n))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut k = 0usize;
            b.iter(|| {
                k = (k + 1) & 1023;
                black_box(sad.get(black_box(probes[k])).map(InboundSa::spi))
            });
        });
    }
    g.finish();
}

fn spd_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("spd_lookup");
    let any = TrafficSelector::any_v4();
    for &n in &SA_COUNTS {
        // Half site-to-site /24 subnets, half remote-access /32 virtual IPs, a default.
        let mut spd = Spd::new();
        let mut dsts = Vec::new();
        for i in 0..n {
            let (ts, dst) = if i % 2 == 0 {
                let net = Ipv4Addr::from(0x0a00_0000 + (i << 8));
                let ts = TrafficSelector::from_prefix(net.into(), 24).unwrap();
                (ts, u32::from(net) + 7)
            } else {
                let ip = Ipv4Addr::from(0x6440_0000 + i);
                (
                    TrafficSelector::from_range(ip.into(), ip.into()).unwrap(),
                    u32::from(ip),
                )
            };
            spd.insert(&any, &ts, i).unwrap();
            dsts.push(dst);
        }
        spd.insert(&any, &any, u32::MAX).unwrap();
        let packets: Vec<Vec<u8>> = (0..1024usize)
            .map(|k| {
                let mut p = inner_packet(64);
                let dst = dsts[k.wrapping_mul(7919) % dsts.len()];
                p[16..20].copy_from_slice(&dst.to_be_bytes());
                p
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut k = 0usize;
            b.iter(|| {
                k = (k + 1) & 1023;
                black_box(spd.lookup(black_box(&packets[k])))
            });
        });
    }
    g.finish();
}

criterion_group!(dataplane, encap, decap, round_trip);
criterion_group!(tables, sad_lookup, spd_lookup);
criterion_main!(dataplane, tables);
