//! Encapsulate then decapsulate: every inner size, every algorithm, batch strides.

use esp::{
    Aead, DropReason, EncapError, InnerKind, MalformedReason, OutboundSa, SaConfig, SaSelectors,
    TrafficSelector,
};

use crate::common::*;

const ALL: [Aead; 4] = [
    Aead::AesGcm128,
    Aead::AesGcm192,
    Aead::AesGcm256,
    Aead::ChaCha20Poly1305,
];

fn round_trip_all_sizes(aead: Aead, config: &SaConfig) {
    let (mut tx, mut rx) = pair(aead, config);
    let mut seq = 0;
    for payload in 0..=1500 {
        for (inner, kind) in [
            (ipv4(payload), InnerKind::Ipv4),
            (ipv6(payload), InnerKind::Ipv6),
        ] {
            // Exactly this SA's head- and tailroom.
            let mut buf = vec![0xee; tx.packet_len(inner.len())];
            let at = tx.head_len()..tx.head_len() + inner.len();
            buf[at.clone()].copy_from_slice(&inner);
            let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
            seq += 1;
            assert_eq!(out.seq, seq);
            assert_eq!(out.packet, 0..buf.len(), "exact room is enough");
            let esp = &buf[out.packet.clone()];
            assert_eq!(&esp[..4], &SPI.to_be_bytes());
            assert_eq!(&esp[4..8], &(seq as u32).to_be_bytes());
            assert_eq!(&esp[8..16], &seq.to_be_bytes(), "IV is the sequence number");
            assert_eq!((esp.len() - 32) % 4, 0, "ciphertext 4-byte aligned");
            assert!(esp.len() - inner.len() <= OutboundSa::HEADROOM + OutboundSa::TAILROOM);
            if inner.len() >= 16 {
                assert_ne!(&esp[16..32], &inner[..16], "encrypted");
            }
            let got = rx.decapsulate(&mut buf, out.packet).unwrap();
            assert_eq!((got.kind, got.seq, got.spi), (kind, seq, SPI));
            assert_eq!(got.inner, at, "inner stays in place");
            assert_eq!(&buf[got.inner], &inner[..], "{aead:?} payload {payload}");
        }
    }
    assert_eq!(tx.stats().packets, 3002);
    assert_eq!(rx.stats().packets, 3002);
    assert_eq!(rx.stats().bytes, tx.stats().bytes);
}

#[test]
fn every_size_aes_gcm_128() {
    round_trip_all_sizes(Aead::AesGcm128, &SaConfig::default());
}

#[test]
fn every_size_aes_gcm_256_esn() {
    round_trip_all_sizes(Aead::AesGcm256, &esn());
}

#[test]
fn every_size_aes_gcm_192() {
    round_trip_all_sizes(Aead::AesGcm192, &SaConfig::default());
}

#[test]
fn every_size_chacha20_poly1305() {
    round_trip_all_sizes(Aead::ChaCha20Poly1305, &SaConfig::default());
}

#[test]
fn batch_buffer_at_fixed_stride() {
    // GSO-style: one buffer, equal-size slots; each packet is encapsulated in its slot.
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let inner = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 2000, 1372);
    let stride = tx.packet_len(inner.len());
    let n = 16;
    let mut batch = vec![0u8; stride * n];
    let mut packets = Vec::new();
    for i in 0..n {
        let at = i * stride + tx.head_len()..i * stride + tx.head_len() + inner.len();
        batch[at.clone()].copy_from_slice(&inner);
        let out = tx.encapsulate(&mut batch, at).unwrap();
        assert_eq!(
            out.packet,
            i * stride..(i + 1) * stride,
            "slots stay equal-size"
        );
        packets.push(out.packet);
    }
    // Decapsulate in reverse: reordering inside the window is fine.
    for r in packets.into_iter().rev() {
        let got = rx.decapsulate(&mut batch, r).unwrap();
        assert_eq!(&batch[got.inner], &inner[..]);
    }
}

#[test]
fn every_algorithm_interoperates_only_with_itself() {
    for a in ALL {
        for b in ALL {
            let (mut tx, _) = pair(a, &SaConfig::default());
            let (_, mut rx) = pair(b, &SaConfig::default());
            let mut pkt = seal(&mut tx, &ipv4(40));
            let n = pkt.len();
            let r = rx.decapsulate(&mut pkt, 0..n);
            assert_eq!(r.is_ok(), a == b, "{a:?} -> {b:?}");
        }
    }
}

#[test]
fn tfc_padding_after_inner_packet_is_trimmed() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let inner = ipv4(100);
    let mut padded = inner.clone();
    padded.extend_from_slice(&[0u8; 37]); // RFC 4303 2.7 TFC padding
    let (mut buf, at) = slot(&padded);
    let out = tx.encapsulate(&mut buf, at.clone()).unwrap();
    let got = rx.decapsulate(&mut buf, out.packet).unwrap();
    assert_eq!(got.inner, at.start..at.start + inner.len());
    assert_eq!(&buf[got.inner], &inner[..]);
}

#[test]
fn dummy_packets_are_returned_as_such() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let (mut buf, at) = slot(&[0xab; 33]);
    let out = tx.encapsulate_as(&mut buf, at, InnerKind::Dummy).unwrap();
    let got = rx.decapsulate(&mut buf, out.packet).unwrap();
    assert_eq!(got.kind, InnerKind::Dummy);
    assert_eq!(got.inner.len(), 33);
    // Even an empty dummy.
    let (mut buf, at) = slot(&[]);
    let out = tx.encapsulate_as(&mut buf, at, InnerKind::Dummy).unwrap();
    assert_eq!(out.packet.len(), 16 + 2 + 2 + 16);
    assert_eq!(
        rx.decapsulate(&mut buf, out.packet).unwrap().kind,
        InnerKind::Dummy
    );
}

#[test]
fn encap_checks_room_and_ip_version() {
    let (mut tx, _) = pair(Aead::AesGcm128, &SaConfig::default());
    let inner = ipv4(10);
    let (mut buf, at) = exact_slot(&tx, &inner);
    let short = buf.len() - 1;
    assert_eq!(
        tx.encapsulate(&mut buf[..short], at.clone()),
        Err(EncapError::NoTailroom)
    );
    assert_eq!(
        tx.encapsulate(&mut buf[1..], at.start - 1..at.end - 1),
        Err(EncapError::NoHeadroom)
    );
    let past = buf.len() + 1;
    assert_eq!(
        tx.encapsulate(&mut buf, at.start..past),
        Err(EncapError::BadRange)
    );
    let (mut junk, at) = slot(&[0x50; 30]);
    assert_eq!(
        tx.encapsulate(&mut junk, at.clone()),
        Err(EncapError::NotIp)
    );
    assert_eq!(
        tx.encapsulate(&mut junk, at.start..at.start),
        Err(EncapError::NotIp)
    );
    assert_eq!(
        tx.stats().seq,
        0,
        "refused packets consume no sequence number"
    );
}

#[test]
fn inner_version_must_match_next_header() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let (mut buf, at) = slot(&ipv4(10));
    let out = tx.encapsulate_as(&mut buf, at, InnerKind::Ipv6).unwrap();
    assert_eq!(
        rx.decapsulate(&mut buf, out.packet),
        Err(DropReason::Malformed(MalformedReason::InnerVersion))
    );
    let (mut buf, at) = slot(&[0x45, 0, 0, 99]);
    let out = tx.encapsulate(&mut buf, at).unwrap();
    assert_eq!(
        rx.decapsulate(&mut buf, out.packet),
        Err(DropReason::Malformed(MalformedReason::InnerHeader))
    );
}

#[test]
fn inbound_selectors_are_enforced() {
    let ts = |s: &str| s.parse::<TrafficSelector>().unwrap();
    // We are 10.0.0.0/24, the peer is 10.1.0.0/24 and only UDP to our port 53.
    let selectors = SaSelectors::new(
        vec![ts("10.0.0.0/24").with_proto(17).with_ports(53, 53).unwrap()],
        vec![ts("10.1.0.0/24")],
    );
    let (mut tx, mut rx) = pair_with(Aead::AesGcm128, &SaConfig::default(), selectors);
    let mut try_inner = |inner: Vec<u8>| {
        let mut pkt = seal(&mut tx, &inner);
        let n = pkt.len();
        rx.decapsulate(&mut pkt, 0..n).map(|d| d.kind)
    };
    assert_eq!(
        try_inner(ipv4_udp([10, 1, 0, 9], [10, 0, 0, 1], 999, 53, 10)),
        Ok(InnerKind::Ipv4)
    );
    assert_eq!(
        try_inner(ipv4_udp([10, 2, 0, 9], [10, 0, 0, 1], 999, 53, 10)),
        Err(DropReason::SelectorMismatch),
        "spoofed source"
    );
    assert_eq!(
        try_inner(ipv4_udp([10, 1, 0, 9], [10, 0, 1, 1], 999, 53, 10)),
        Err(DropReason::SelectorMismatch),
        "destination outside"
    );
    assert_eq!(
        try_inner(ipv4_udp([10, 1, 0, 9], [10, 0, 0, 1], 999, 54, 10)),
        Err(DropReason::SelectorMismatch),
        "port outside"
    );
    assert_eq!(
        try_inner(ipv6(10)),
        Err(DropReason::SelectorMismatch),
        "family outside"
    );
}
