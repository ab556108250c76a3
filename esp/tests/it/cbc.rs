//! AES-CBC with HMAC through the public API: every key size and integrity algorithm,
//! every inner size, ICV placement, tampering, ESN, and the per-SA head- and tailroom.

use esp::{
    AesCbc, Algorithm, DropReason, InboundSa, InnerKind, Integ, MalformedReason, OutboundSa,
    ReplayKind, SaConfig, SaSelectors,
};

use crate::common::*;

const CIPHERS: [AesCbc; 3] = [AesCbc::Aes128, AesCbc::Aes192, AesCbc::Aes256];
const INTEGS: [Integ; 4] = [
    Integ::HmacSha1_96,
    Integ::HmacSha256_128,
    Integ::HmacSha384_192,
    Integ::HmacSha512_256,
];

fn all() -> impl Iterator<Item = Algorithm> {
    CIPHERS
        .into_iter()
        .flat_map(|c| INTEGS.into_iter().map(move |i| Algorithm::AesCbc(c, i)))
}

fn round_trip(alg: Algorithm, config: &SaConfig, sizes: impl Iterator<Item = usize>) {
    let (mut tx, mut rx) = pair(alg, config);
    let mut seq = 0;
    let mut ivs = std::collections::HashSet::new();
    for payload in sizes {
        for (inner, kind) in [
            (ipv4(payload), InnerKind::Ipv4),
            (ipv6(payload), InnerKind::Ipv6),
        ] {
            // Exactly this SA's room: the ESP packet starts at offset 0.
            let head = tx.head_len();
            let mut buf = vec![0xee; tx.packet_len(inner.len())];
            let at = head..head + inner.len();
            buf[at.clone()].copy_from_slice(&inner);
            let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
            seq += 1;
            assert_eq!(out.packet, 0..buf.len(), "{alg:?}: exact room is enough");
            let esp = &buf[out.packet.clone()];
            assert_eq!(&esp[..4], &SPI.to_be_bytes());
            assert_eq!(&esp[4..8], &(seq as u32).to_be_bytes());
            let ct_len = esp.len() - 24 - alg.icv_len();
            assert_eq!(ct_len % 16, 0, "whole blocks");
            assert!(ct_len - inner.len() - 2 < 16, "minimal padding");
            assert!(ivs.insert(esp[8..24].to_vec()), "IV repeated");
            assert!(esp.len() - inner.len() <= OutboundSa::HEADROOM + OutboundSa::TAILROOM);
            if inner.len() >= 16 {
                assert_ne!(&esp[24..40], &inner[..16], "encrypted");
            }
            let got = rx.decapsulate(&mut buf, out.packet).unwrap();
            assert_eq!((got.kind, got.seq, got.spi), (kind, seq, SPI));
            assert_eq!(got.inner, at, "inner stays in place");
            assert_eq!(&buf[got.inner], &inner[..], "{alg:?} payload {payload}");
        }
    }
    assert_eq!(rx.stats().bytes, tx.stats().bytes);
}

#[test]
fn every_size_aes128_sha256() {
    round_trip(
        Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha256_128),
        &SaConfig::default(),
        0..=1500,
    );
}

#[test]
fn every_size_aes256_sha1_esn() {
    round_trip(
        Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha1_96),
        &esn(),
        0..=1500,
    );
}

#[test]
fn every_combination_round_trips() {
    for alg in all() {
        round_trip(alg, &SaConfig::default(), (0..40).chain([1400, 1500]));
        round_trip(alg, &esn(), [0, 13, 14, 15, 16, 17, 1400].into_iter());
    }
}

#[test]
fn static_room_covers_every_algorithm() {
    for alg in all() {
        let (tx, _) = pair(alg, &SaConfig::default());
        assert!(tx.head_len() <= OutboundSa::HEADROOM);
        for n in 0..100 {
            assert!(tx.tail_len(n) <= OutboundSa::tailroom(n));
            assert_eq!(tx.packet_len(n), tx.head_len() + n + tx.tail_len(n));
        }
    }
    // The AEAD path keeps its 16-byte head: the engine puts inner packets there.
    let (gcm, _) = pair(esp::Aead::AesGcm128, &SaConfig::default());
    assert_eq!(gcm.head_len(), 16);
    assert_eq!(gcm.packet_len(20), 16 + 20 + 2 + 2 + 16);
}

#[test]
fn tampered_bytes_fail_the_icv_and_nothing_is_decrypted() {
    for config in [SaConfig::default(), esn()] {
        let alg = Algorithm::AesCbc(AesCbc::Aes192, Integ::HmacSha384_192);
        let (mut tx, mut rx) = pair(alg, &config);
        tx.advance_seq(100);
        let good = seal(&mut tx, &ipv4(64));
        let n = good.len();
        for at in [4, 7, 8, 23, 24, 40, n - 25, n - 24, n - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            let mut buf = bad.clone();
            assert_eq!(
                rx.decapsulate(&mut buf, 0..n),
                Err(DropReason::IcvMismatch),
                "byte {at}"
            );
            assert_eq!(buf, bad, "byte {at}: decrypted before the ICV was checked");
        }
        let mut buf = good.clone();
        assert_eq!(rx.decapsulate(&mut buf, 0..n).unwrap().seq, 101);
        let mut buf = good.clone();
        assert_eq!(
            rx.decapsulate(&mut buf, 0..n),
            Err(DropReason::Replay(ReplayKind::Duplicate))
        );
    }
}

#[test]
fn truncated_or_unaligned_packets_are_malformed() {
    let alg = Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha1_96);
    let (mut tx, mut rx) = pair(alg, &SaConfig::default());
    let good = seal(&mut tx, &ipv4(40));
    // One byte short of a block: not a whole number of blocks.
    let mut buf = good[..good.len() - 1].to_vec();
    let n = buf.len();
    assert_eq!(
        rx.decapsulate(&mut buf, 0..n),
        Err(DropReason::Malformed(MalformedReason::NotBlockAligned))
    );
    // Shorter than header + IV + one block + ICV.
    let mut buf = good[..24 + 16 + 12 - 1].to_vec();
    let n = buf.len();
    assert_eq!(
        rx.decapsulate(&mut buf, 0..n),
        Err(DropReason::Malformed(MalformedReason::TooShort))
    );
    let counters = {
        let mut c = esp::DropCounters::new();
        c.record(DropReason::Malformed(MalformedReason::NotBlockAligned));
        c
    };
    assert_eq!(
        counters.iter().find(|(_, n)| *n == 1).map(|(name, _)| name),
        Some("malformed_not_block_aligned")
    );
}

#[test]
fn an_aead_sa_and_a_cbc_sa_do_not_understand_each_other() {
    let cbc = Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha256_128);
    let (mut tx, _) = pair(cbc, &SaConfig::default());
    let km = keymat(esp::Aead::AesGcm128);
    let mut rx = InboundSa::new(
        SPI,
        esp::Aead::AesGcm128,
        &km,
        &SaConfig::default(),
        SaSelectors::any(),
    )
    .unwrap();
    let mut buf = seal(&mut tx, &ipv4(100));
    let n = buf.len();
    assert_eq!(rx.decapsulate(&mut buf, 0..n), Err(DropReason::IcvMismatch));
}

#[test]
fn keymat_lengths_and_algorithm_accessors() {
    for alg in all() {
        let Algorithm::AesCbc(c, i) = alg else {
            unreachable!()
        };
        assert_eq!(alg.keymat_len(), c.key_len() + i.key_len());
        let km = keymat(alg);
        let tx = OutboundSa::new(1, alg, &km, &SaConfig::default()).unwrap();
        assert_eq!(tx.algorithm(), alg);
        assert!(OutboundSa::new(1, alg, &km[1..], &SaConfig::default()).is_err());
        assert!(
            InboundSa::new(1, alg, &km[1..], &SaConfig::default(), SaSelectors::any()).is_err()
        );
    }
}
