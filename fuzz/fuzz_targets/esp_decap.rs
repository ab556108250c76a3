//! Arbitrary bytes against live inbound SAs, with and without ESN.
//!
//! Input: one mode byte (ESN, algorithm, window size), an 8-byte initial window top,
//! then records `[tag][len][bytes]`. An even tag feeds `bytes` as a raw ESP packet; an
//! odd tag takes the first 8 bytes as a sequence number and seals the rest as an
//! authentic plaintext (trailer included) with the SA's key, so that everything behind
//! the ICV (replay window, padding, Next Header, inner header, selectors) is reached.
#![no_main]

use esp::{Aead, InboundSa, InnerKind, SaConfig, SaSelectors, TrafficSelector};
use libfuzzer_sys::fuzz_target;
use ring::aead::{self as r, Aad, LessSafeKey, Nonce, UnboundKey};

const SPI: u32 = 0x0102_0304;

fn keymat(aead: Aead) -> Vec<u8> {
    (0..aead.keymat_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0xa5)
        .collect()
}

fn forge(aead: Aead, esn: bool, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let km = keymat(aead);
    let alg = match aead {
        Aead::AesGcm128 => &r::AES_128_GCM,
        Aead::AesGcm256 => &r::AES_256_GCM,
        _ => &r::CHACHA20_POLY1305,
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, &km[..aead.key_len()]).unwrap());
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&km[aead.key_len()..]);
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let mut aad = SPI.to_be_bytes().to_vec();
    if esn {
        aad.extend_from_slice(&seq.to_be_bytes());
    } else {
        aad.extend_from_slice(&(seq as u32).to_be_bytes());
    }
    let mut out = SPI.to_be_bytes().to_vec();
    out.extend_from_slice(&(seq as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad),
        &mut body,
    )
    .unwrap();
    out.extend_from_slice(&body);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let esn = mode & 1 != 0;
    let aead = match (mode >> 1) % 3 {
        0 => Aead::AesGcm128,
        1 => Aead::AesGcm256,
        _ => Aead::ChaCha20Poly1305,
    };
    let config = SaConfig {
        esn,
        replay_window: 64 << ((mode >> 3) & 3),
        ..SaConfig::default()
    };
    // Narrow selectors on one side, so that the check can fail both ways.
    let selectors = SaSelectors::new(
        vec![
            "10.0.0.0/8".parse::<TrafficSelector>().unwrap(),
            TrafficSelector::any_v6()
                .with_proto(17)
                .with_ports(0, 1023)
                .unwrap(),
        ],
        vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
    );
    let mut sa = InboundSa::new(SPI, aead, &keymat(aead), &config, selectors).unwrap();
    let Some((top, mut rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let top = u64::from_be_bytes(*top);
    sa.advance_window(if esn { top } else { top & 0xffff_ffff });

    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let packet = if tag & 1 == 0 {
            body.to_vec()
        } else {
            let Some((seq, plaintext)) = body.split_first_chunk::<8>() else {
                continue;
            };
            forge(aead, esn, u64::from_be_bytes(*seq), plaintext)
        };
        // Some head- and tailroom around the packet, as in a real receive buffer.
        let mut buf = vec![0u8; packet.len() + 64];
        buf[32..32 + packet.len()].copy_from_slice(&packet);
        let range = 32..32 + packet.len();
        let before = sa.stats();
        match sa.decapsulate(&mut buf, range.clone()) {
            Ok(d) => {
                assert!(range.start + 16 <= d.inner.start && d.inner.end <= range.end);
                assert!(d.seq > 0);
                let after = sa.stats();
                assert_eq!(after.packets, before.packets + 1);
                assert!(after.seq >= before.seq && after.seq >= d.seq);
                if d.kind != InnerKind::Dummy {
                    let flow = esp::Flow::parse(&buf[d.inner.clone()]).unwrap();
                    assert_eq!(flow.ip_len(), d.inner.len());
                }
                // The same packet again is always a replay.
                buf[32..32 + packet.len()].copy_from_slice(&packet);
                assert!(matches!(
                    sa.decapsulate(&mut buf, range),
                    Err(esp::DropReason::Replay(_))
                ));
            }
            Err(reason) => {
                assert!(reason.as_index() < esp::DropReason::COUNT);
            }
        }
    }
});
