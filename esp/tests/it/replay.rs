//! Anti-replay (RFC 4303 3.4.3): duplicates, too old, far ahead, reordering, and the
//! check-before / update-after rule.

use esp::{Aead, DropReason, ReplayKind, SaConfig, SaError};

use crate::common::*;

fn packets(n: usize, config: &SaConfig) -> (Vec<Vec<u8>>, esp::InboundSa) {
    let (mut tx, rx) = pair(Aead::AesGcm128, config);
    let v = (0..n).map(|i| seal(&mut tx, &ipv4(i % 50))).collect();
    (v, rx)
}

fn deliver(rx: &mut esp::InboundSa, pkt: &[u8]) -> Result<u64, DropReason> {
    let mut b = pkt.to_vec();
    let n = b.len();
    rx.decapsulate(&mut b, 0..n).map(|d| d.seq)
}

#[test]
fn duplicate_is_rejected() {
    let (p, mut rx) = packets(3, &SaConfig::default());
    assert_eq!(deliver(&mut rx, &p[0]), Ok(1));
    assert_eq!(
        deliver(&mut rx, &p[0]),
        Err(DropReason::Replay(ReplayKind::Duplicate))
    );
    assert_eq!(deliver(&mut rx, &p[2]), Ok(3));
    assert_eq!(deliver(&mut rx, &p[1]), Ok(2));
    assert_eq!(
        deliver(&mut rx, &p[1]),
        Err(DropReason::Replay(ReplayKind::Duplicate))
    );
}

#[test]
fn reordered_inside_window_too_old_outside() {
    let config = SaConfig {
        replay_window: 64,
        ..SaConfig::default()
    };
    let (p, mut rx) = packets(200, &config);
    assert_eq!(deliver(&mut rx, &p[199]), Ok(200));
    // 137..=199 are inside (200 - 64, 200], in any order.
    for i in (136..199).rev() {
        assert_eq!(deliver(&mut rx, &p[i]), Ok(i as u64 + 1));
    }
    assert_eq!(
        deliver(&mut rx, &p[135]),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
    assert_eq!(
        deliver(&mut rx, &p[0]),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
}

#[test]
fn default_window_is_1024_and_far_ahead_jumps() {
    let (p, mut rx) = packets(3000, &SaConfig::default());
    assert_eq!(rx.replay_window(), 1024);
    assert_eq!(deliver(&mut rx, &p[0]), Ok(1));
    assert_eq!(
        deliver(&mut rx, &p[2999]),
        Ok(3000),
        "far ahead is accepted"
    );
    assert_eq!(
        deliver(&mut rx, &p[3000 - 1024]),
        Ok(3000 - 1024 + 1),
        "left edge"
    );
    assert_eq!(
        deliver(&mut rx, &p[3000 - 1025]),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
    assert_eq!(
        deliver(&mut rx, &p[1]),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
}

#[test]
fn window_size_is_configurable() {
    let config = SaConfig {
        replay_window: 4096,
        ..SaConfig::default()
    };
    let (p, mut rx) = packets(5000, &config);
    assert_eq!(deliver(&mut rx, &p[4999]), Ok(5000));
    assert_eq!(deliver(&mut rx, &p[5000 - 4096]), Ok(5000 - 4096 + 1));
    assert_eq!(
        deliver(&mut rx, &p[5000 - 4097]),
        Err(DropReason::Replay(ReplayKind::TooOld))
    );
    for bad in [0, 63, 1000, 1 << 21] {
        let config = SaConfig {
            replay_window: bad,
            ..SaConfig::default()
        };
        let km = keymat(Aead::AesGcm128);
        let r = esp::InboundSa::new(1, Aead::AesGcm128, &km, &config, esp::SaSelectors::any());
        assert_eq!(r.err(), Some(SaError::ReplayWindow(bad)));
    }
}

#[test]
fn forged_packet_does_not_move_the_window() {
    let (p, mut rx) = packets(5000, &SaConfig::default());
    assert_eq!(deliver(&mut rx, &p[0]), Ok(1));
    // A forgery with a valid, far-ahead sequence number and a broken ICV.
    let mut forged = p[4999].clone();
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(deliver(&mut rx, &forged), Err(DropReason::IcvMismatch));
    assert_eq!(rx.stats().seq, 1, "window top unchanged");
    // Had it moved, 2 would now be too old; and 5000 is still fresh.
    assert_eq!(deliver(&mut rx, &p[1]), Ok(2));
    assert_eq!(deliver(&mut rx, &p[4999]), Ok(5000));
    // A forged duplicate of a fresh packet inside the window must not mark it either.
    let mut forged = p[4000].clone();
    forged[20] ^= 0x80;
    assert_eq!(deliver(&mut rx, &forged), Err(DropReason::IcvMismatch));
    assert_eq!(deliver(&mut rx, &p[4000]), Ok(4001));
}

#[test]
fn replay_check_happens_before_decryption() {
    // A replayed packet with a broken ICV reports Replay, not IcvMismatch: the AEAD
    // never ran on it.
    let (p, mut rx) = packets(2, &SaConfig::default());
    assert_eq!(deliver(&mut rx, &p[0]), Ok(1));
    let mut broken = p[0].clone();
    *broken.last_mut().unwrap() ^= 1;
    assert_eq!(
        deliver(&mut rx, &broken),
        Err(DropReason::Replay(ReplayKind::Duplicate))
    );
}
