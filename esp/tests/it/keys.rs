//! Keys never show in Debug output.

use esp::{Aead, AesCbc, Algorithm, InboundSa, Integ, OutboundSa, SaConfig, SaSelectors, Sad};

/// Renderings a key could leak in: hex (both cases), Debug of a byte slice.
fn leaks(s: &str, key: &[u8]) -> bool {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let decimal = format!("{:?}", &key[..4]);
    let inner = decimal.trim_matches(|c| c == '[' || c == ']').to_string();
    s.to_lowercase().contains(&hex[..8]) || s.contains(&inner) || s.contains(&decimal)
}

#[test]
fn debug_never_prints_key_material() {
    for (aead, name) in [
        (Algorithm::from(Aead::AesGcm128), "AesGcm128"),
        (Aead::AesGcm192.into(), "AesGcm192"),
        (Aead::AesGcm256.into(), "AesGcm256"),
        (Aead::ChaCha20Poly1305.into(), "ChaCha20Poly1305"),
        (
            Algorithm::AesCbc(AesCbc::Aes128, Integ::HmacSha1_96),
            "Aes128HmacSha1_96",
        ),
        (
            Algorithm::AesCbc(AesCbc::Aes256, Integ::HmacSha512_256),
            "Aes256HmacSha512_256",
        ),
    ] {
        // Distinctive bytes, so any rendering of them would be found.
        let keymat: Vec<u8> = (0..aead.keymat_len())
            .map(|i| 0xc1 + (i % 60) as u8)
            .collect();
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
            assert!(
                s.replace([',', ' ', '\n'], "").contains(name),
                "algorithm shown: {s}"
            );
            for window in keymat.windows(4) {
                assert!(!leaks(&s, window), "key bytes leaked: {s}");
            }
            let salt = &keymat[keymat.len() - 4..];
            assert!(!leaks(&s, salt), "salt leaked: {s}");
        }
    }
}
