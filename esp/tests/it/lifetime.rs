//! Soft and hard lifetimes (RFC 4301 4.4.2.1): packets, bytes, sequence numbers.

use esp::{Aead, DropReason, EncapError, LifetimeLimits, LifetimeState, SaConfig};

use crate::common::*;

fn limited(lifetime: LifetimeLimits) -> SaConfig {
    SaConfig {
        lifetime,
        ..SaConfig::default()
    }
}

#[test]
fn packet_limits_on_both_sides() {
    let config = limited(LifetimeLimits {
        soft_packets: 3,
        hard_packets: 5,
        ..LifetimeLimits::UNLIMITED
    });
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &config);
    let mut soft_tx = Vec::new();
    let mut soft_rx = Vec::new();
    for _ in 0..5 {
        let (mut buf, at) = slot(&ipv4(10));
        let out = tx.encapsulate(&mut buf, at).unwrap();
        soft_tx.push(out.soft_limit_crossed);
        let got = rx.decapsulate(&mut buf, out.packet).unwrap();
        soft_rx.push(got.soft_limit_crossed);
    }
    // The flag rises exactly once, on the packet that reached the soft limit.
    assert_eq!(soft_tx, [false, false, true, false, false]);
    assert_eq!(soft_rx, [false, false, true, false, false]);
    assert_eq!(tx.lifetime(), LifetimeState::HardExpired);
    assert_eq!(rx.lifetime(), LifetimeState::HardExpired);
    let (mut buf, at) = slot(&ipv4(10));
    assert_eq!(
        tx.encapsulate(&mut buf, at),
        Err(EncapError::LifetimeExpired)
    );
    // A sixth packet from a sender without limits is dropped unopened.
    let (mut other, _) = pair(Aead::AesGcm128, &SaConfig::default());
    other.advance_seq(5);
    let mut p = seal(&mut other, &ipv4(10));
    let n = p.len();
    assert_eq!(
        rx.decapsulate(&mut p, 0..n),
        Err(DropReason::LifetimeExpired)
    );
    assert_eq!(rx.stats().packets, 5);
}

#[test]
fn byte_limits() {
    // Inner packets of 100 bytes: soft after 3, hard after 5 (the limit is reached, not
    // exceeded, by the packet that crosses it).
    let config = limited(LifetimeLimits {
        soft_bytes: 250,
        hard_bytes: 500,
        ..LifetimeLimits::UNLIMITED
    });
    let (mut tx, _) = pair(Aead::AesGcm256, &config);
    let states: Vec<_> = (0..5)
        .map(|_| {
            seal(&mut tx, &ipv4(80));
            tx.lifetime()
        })
        .collect();
    use LifetimeState::*;
    assert_eq!(
        states,
        [Valid, Valid, SoftExpired, SoftExpired, HardExpired]
    );
    assert_eq!(tx.stats().bytes, 500);
    let (mut buf, at) = slot(&ipv4(80));
    assert_eq!(
        tx.encapsulate(&mut buf, at),
        Err(EncapError::LifetimeExpired)
    );
}

#[test]
fn sequence_soft_limit() {
    let config = SaConfig {
        seq_soft_limit: Some(10),
        ..SaConfig::default()
    };
    let (mut tx, _) = pair(Aead::AesGcm128, &config);
    let flags: Vec<bool> = (0..12)
        .map(|_| {
            let (mut buf, at) = slot(&ipv4(1));
            tx.encapsulate(&mut buf, at).unwrap().soft_limit_crossed
        })
        .collect();
    assert_eq!(flags.iter().position(|&f| f), Some(9), "seq 10 crosses");
    assert_eq!(flags.iter().filter(|&&f| f).count(), 1);
    assert_eq!(tx.lifetime(), LifetimeState::SoftExpired);
}

#[test]
fn defaults_are_valid_and_unlimited() {
    let (tx, rx) = pair(Aead::AesGcm128, &SaConfig::default());
    assert_eq!(tx.lifetime(), LifetimeState::Valid);
    assert_eq!(rx.lifetime(), LifetimeState::Valid);
    assert!(LifetimeState::Valid < LifetimeState::SoftExpired);
    assert!(LifetimeState::SoftExpired < LifetimeState::HardExpired);
}
