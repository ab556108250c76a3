//! Keys never show in Debug output.

use esp::{Aead, InboundSa, OutboundSa, SaConfig, SaSelectors, Sad};

/// Renderings a key could leak in: hex (both cases), Debug of a byte slice.
fn leaks(s: &str, key: &[u8]) -> bool {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let decimal = format!("{:?}", &key[..4]);
    let inner = decimal.trim_matches(|c| c == '[' || c == ']').to_string();
    s.to_lowercase().contains(&hex[..8]) || s.contains(&inner) || s.contains(&decimal)
}

#[test]
fn debug_never_prints_key_material() {
    for aead in [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305] {
        // Distinctive bytes, so any rendering of them would be found.
        let keymat: Vec<u8> = (0..aead.keymat_len()).map(|i| 0xc1 + i as u8).collect();
        let tx = OutboundSa::new(0xabcd, aead, &keymat, &SaConfig::default()).unwrap();
        let rx = InboundSa::new(
            0xabcd,
            aead,
            &keymat,
            &SaConfig::default(),
            SaSelectors::any(),
        )
        .unwrap();
        let mut sad = Sad::new();
        let rx2 = InboundSa::new(
            0xabce,
            aead,
            &keymat,
            &SaConfig::default(),
            SaSelectors::any(),
        )
        .unwrap();
        sad.insert(rx2);
        for s in [
            format!("{tx:?}"),
            format!("{tx:#?}"),
            format!("{rx:?}"),
            format!("{rx:#?}"),
            format!("{sad:?}"),
        ] {
            assert!(s.contains("0x0000abc"), "SPI shown: {s}");
            assert!(s.contains(&format!("{aead:?}")), "algorithm shown: {s}");
            for window in keymat.windows(4) {
                assert!(!leaks(&s, window), "key bytes leaked: {s}");
            }
            let salt = &keymat[keymat.len() - 4..];
            assert!(!leaks(&s, salt), "salt leaked: {s}");
        }
    }
}
