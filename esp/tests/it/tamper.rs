//! Tampered packets: every bit the sender wrote is covered by the ICV (RFC 4106 5)
//! except the SPI, which selects the SA.

use esp::{Aead, DropReason, MalformedReason, SaConfig, Sad};

use crate::common::*;

fn deliver(rx: &mut esp::InboundSa, pkt: &[u8]) -> Result<u64, DropReason> {
    let mut b = pkt.to_vec();
    let n = b.len();
    rx.decapsulate(&mut b, 0..n).map(|d| d.seq)
}

#[test]
fn tampered_icv_payload_iv_and_seq() {
    for config in [SaConfig::default(), esn()] {
        let (mut tx, mut rx) = pair(Aead::AesGcm128, &config);
        tx.advance_seq(100);
        let good = seal(&mut tx, &ipv4(64));
        let n = good.len();
        let flips: &[(usize, &str)] = &[
            (n - 1, "ICV last byte"),
            (n - 16, "ICV first byte"),
            (16, "first ciphertext byte"),
            (n - 17, "Next Header (encrypted)"),
            (40, "payload"),
            (8, "IV"),
            (15, "IV"),
            (7, "sequence number (still fresh: passes the replay check)"),
        ];
        for &(at, what) in flips {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                deliver(&mut rx, &bad),
                Err(DropReason::IcvMismatch),
                "{what}"
            );
        }
        assert_eq!(deliver(&mut rx, &good), Ok(101), "original still fine");
    }
}

#[test]
fn tampered_spi_is_unknown() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let mut sad = Sad::new();
    let km = keymat(Aead::AesGcm128);
    let second = esp::InboundSa::new(
        SPI ^ 1,
        Aead::AesGcm128,
        &km,
        &SaConfig::default(),
        esp::SaSelectors::any(),
    )
    .unwrap();
    sad.insert(second);
    let mut bad = seal(&mut tx, &ipv4(8));
    bad[2] ^= 0x40;
    let n = bad.len();
    assert_eq!(
        sad.decapsulate(&mut bad.clone(), 0..n),
        Err(DropReason::UnknownSpi)
    );
    assert_eq!(
        deliver(&mut rx, &bad),
        Err(DropReason::UnknownSpi),
        "direct call checks too"
    );
    // An SPI that does name another SA with the same key still fails: SPI is in the AAD.
    let mut other = seal(&mut tx, &ipv4(8));
    other[3] ^= 1;
    assert_eq!(
        sad.decapsulate(&mut other, 0..n),
        Err(DropReason::IcvMismatch)
    );
}

#[test]
fn truncated_and_out_of_range() {
    let (mut tx, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let good = seal(&mut tx, &ipv4(0));
    for len in 0..good.len() {
        let r = deliver(&mut rx, &good[..len]);
        assert!(
            matches!(
                r,
                Err(DropReason::Malformed(MalformedReason::TooShort) | DropReason::IcvMismatch)
            ),
            "len {len}: {r:?}"
        );
    }
    let mut b = good.clone();
    let n = b.len();
    assert_eq!(
        rx.decapsulate(&mut b, 1..n + 1),
        Err(DropReason::Malformed(MalformedReason::BadRange))
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..1;
    assert_eq!(
        rx.decapsulate(&mut b, backwards),
        Err(DropReason::Malformed(MalformedReason::BadRange))
    );
}

#[test]
fn authentic_but_malformed_trailers() {
    let (_, mut rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let inner = ipv4(2); // 22 bytes
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        // Padding 1, 3 instead of 1, 2.
        (
            [&inner[..], &[1, 3, 2, 4]].concat(),
            DropReason::Malformed(MalformedReason::BadPadding),
        ),
        // Pad Length longer than the payload.
        (
            [&inner[..], &[200, 4]].concat(),
            DropReason::Malformed(MalformedReason::BadPadLength),
        ),
        // Next Header 6 (TCP: transport mode) is not tunnel mode.
        (
            [&inner[..], &[0, 6]].concat(),
            DropReason::Malformed(MalformedReason::BadNextHeader),
        ),
        // Next Header 41 with an IPv4 packet.
        (
            [&inner[..], &[0, 41]].concat(),
            DropReason::Malformed(MalformedReason::InnerVersion),
        ),
    ];
    for (seq, (plaintext, want)) in cases.into_iter().enumerate() {
        let p = forge(Aead::AesGcm128, SPI, seq as u64 + 1, false, &plaintext);
        assert_eq!(deliver(&mut rx, &p), Err(want));
    }
    // Longer RFC 4303 padding (up to 255 bytes) is accepted when monotonic.
    let pad: Vec<u8> = (1..=254).collect();
    let plaintext = [&inner[..], &pad[..], &[254, 4]].concat();
    let p = forge(Aead::AesGcm128, SPI, 10, false, &plaintext);
    assert_eq!(deliver(&mut rx, &p), Ok(10));
}
