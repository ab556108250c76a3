//! The SAD: SPI lookup and replacement.

use esp::{Aead, DropReason, MalformedReason, SaConfig, SaSelectors, Sad};

use crate::common::*;

#[test]
fn insert_lookup_replace_remove() {
    let km = keymat(Aead::AesGcm128);
    let mk = |spi| {
        esp::InboundSa::new(
            spi,
            Aead::AesGcm128,
            &km,
            &SaConfig::default(),
            SaSelectors::any(),
        )
        .unwrap()
    };
    let mut sad = Sad::new();
    assert!(sad.is_empty());
    for spi in 1..=100 {
        assert!(sad.insert(mk(spi)).is_none());
    }
    assert_eq!(sad.len(), 100);
    assert!(sad.insert(mk(7)).is_some(), "same SPI replaces");
    assert_eq!(sad.get(7).map(|s| s.spi()), Some(7));
    assert!(sad.contains(100) && !sad.contains(101));
    assert_eq!(sad.remove(7).map(|s| s.spi()), Some(7));
    assert!(sad.get(7).is_none());
    assert_eq!(sad.iter().count(), 99);
}

#[test]
fn decapsulate_dispatches_by_spi() {
    let (mut tx, rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let mut sad = Sad::new();
    sad.insert(rx);
    let mut p = seal(&mut tx, &ipv4(5));
    let n = p.len();
    let got = sad.decapsulate(&mut p, 0..n).unwrap();
    assert_eq!(got.spi, SPI);
    assert_eq!(sad.get(SPI).unwrap().stats().packets, 1);
    assert_eq!(
        sad.decapsulate(&mut p, 0..3),
        Err(DropReason::Malformed(MalformedReason::TooShort))
    );
    assert_eq!(
        sad.decapsulate(&mut p, 0..n + 1),
        Err(DropReason::Malformed(MalformedReason::BadRange))
    );
    sad.get_mut(SPI).unwrap().advance_window(1000);
    assert_eq!(sad.get(SPI).unwrap().stats().seq, 1000);
}
