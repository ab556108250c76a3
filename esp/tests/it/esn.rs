//! Extended sequence numbers (RFC 4303 2.2.1, Appendix A2) across the 2^32 boundary.

use esp::{Aead, DropReason, EncapError, LifetimeState, ReplayKind, SaConfig};

use crate::common::*;

fn deliver(rx: &mut esp::InboundSa, pkt: &[u8]) -> Result<u64, DropReason> {
    let mut b = pkt.to_vec();
    let n = b.len();
    rx.decapsulate(&mut b, 0..n).map(|d| d.seq)
}

#[test]
fn both_sides_cross_2_pow_32() {
    let (mut tx, mut rx) = pair(Aead::AesGcm256, &esn());
    let start = (1u64 << 32) - 10;
    assert!(tx.advance_seq(start));
    rx.advance_window(start);
    let mut sent = Vec::new();
    for _ in 0..20 {
        let p = seal(&mut tx, &ipv6(30));
        sent.push(p);
    }
    // On the wire only the low half travels: it wraps to 0 after 0xffffffff.
    assert_eq!(&sent[8][4..8], &[0xff; 4]);
    assert_eq!(&sent[9][4..8], &[0, 0, 0, 0]);
    assert_eq!(&sent[10][4..8], &[0, 0, 0, 1]);
    for (i, p) in sent.iter().enumerate() {
        assert_eq!(deliver(&mut rx, p), Ok(start + 1 + i as u64), "packet {i}");
    }
    assert_eq!(rx.stats().seq, start + 20);
    assert!(tx.lifetime() == LifetimeState::Valid);
}

#[test]
fn reordering_across_the_boundary() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &esn());
    let start = (1u64 << 32) - 4;
    tx.advance_seq(start);
    rx.advance_window(start);
    let p: Vec<_> = (0..8).map(|_| seal(&mut tx, &ipv4(0))).collect();
    // Seqs: 2^32-3 .. 2^32+4. Deliver the post-boundary ones first (Case B afterwards).
    for i in [7, 5, 4, 6, 1, 3, 0, 2] {
        assert_eq!(
            deliver(&mut rx, &p[i]),
            Ok(start + 1 + i as u64),
            "packet {i}"
        );
    }
    for q in &p {
        assert_eq!(
            deliver(&mut rx, q),
            Err(DropReason::Replay(ReplayKind::Duplicate))
        );
    }
}

#[test]
fn high_bits_are_authenticated() {
    // The receiver still believes it is in subspace 0: it infers the wrong high half,
    // and the AAD (RFC 4106 5) makes that an ICV failure instead of a wrong accept.
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &esn());
    tx.advance_seq((1 << 32) + 100);
    let p = seal(&mut tx, &ipv4(10));
    assert_eq!(deliver(&mut rx, &p), Err(DropReason::IcvMismatch));
    assert_eq!(rx.stats().seq, 0);
    // A non-ESN receiver of an ESN sender also fails the ICV (12- vs 8-byte AAD).
    let (mut tx, _) = pair(Aead::AesGcm128, &esn());
    let (_, mut rx32) = pair(Aead::AesGcm128, &SaConfig::default());
    let p = seal(&mut tx, &ipv4(10));
    assert_eq!(deliver(&mut rx32, &p), Err(DropReason::IcvMismatch));
}

#[test]
fn sequence_exhaustion_without_esn() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    assert!(tx.advance_seq(u64::from(u32::MAX) - 3));
    assert!(!tx.advance_seq(5), "never backwards");
    assert!(
        !tx.advance_seq(u64::from(u32::MAX) + 1),
        "never past the end"
    );
    rx.advance_window(u64::from(u32::MAX) - 3);
    for _ in 0..2 {
        let p = seal(&mut tx, &ipv4(1));
        assert!(deliver(&mut rx, &p).is_ok());
    }
    assert_eq!(tx.lifetime(), LifetimeState::SoftExpired);
    let p = seal(&mut tx, &ipv4(1));
    assert_eq!(deliver(&mut rx, &p), Ok(u64::from(u32::MAX)));
    assert_eq!(tx.lifetime(), LifetimeState::HardExpired);
    let (mut buf, at) = slot(&ipv4(1));
    assert_eq!(
        tx.encapsulate(&mut buf, at),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(tx.stats().seq, u64::from(u32::MAX));
}

#[test]
fn sequence_exhaustion_with_esn() {
    let (mut tx, mut rx) = pair(Aead::ChaCha20Poly1305, &esn());
    tx.advance_seq(u64::MAX - 1);
    rx.advance_window(u64::MAX - 1);
    let p = seal(&mut tx, &ipv4(1));
    assert_eq!(deliver(&mut rx, &p), Ok(u64::MAX));
    let (mut buf, at) = slot(&ipv4(1));
    assert_eq!(
        tx.encapsulate(&mut buf, at),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(tx.lifetime(), LifetimeState::HardExpired);
}

#[test]
fn zero_sequence_number_is_never_valid() {
    let (_, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let p = forge(Aead::AesGcm128, SPI, 0, false, &[0x45, 0, 0, 20, 0, 0, 4]);
    assert_eq!(
        deliver(&mut rx, &p),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
}
