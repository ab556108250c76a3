//! Arbitrary bytes against live AES-CBC + HMAC inbound SAs, with and without ESN.
//!
//! Input: one mode byte (ESN, AES key size, integrity algorithm, window size), an 8-byte
//! initial window top, then records `[tag][len][bytes]`. An even tag feeds `bytes` as a
//! raw ESP packet; an odd tag takes the first 8 bytes as a sequence number and the rest,
//! cut to whole AES blocks, as a plaintext (trailer included) that is CBC-encrypted and
//! given a correct ICV here, independently of esp's sender, so that everything behind
//! the ICV (replay window, decryption, padding, Next Header, inner header, selectors)
//! is reached.
#![no_main]

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use esp::{AesCbc, Algorithm, InboundSa, InnerKind, Integ, SaConfig, SaSelectors, TrafficSelector};
use libfuzzer_sys::fuzz_target;
use ring::hmac;

const SPI: u32 = 0x0a0b_0c0d;

fn keymat(alg: Algorithm) -> Vec<u8> {
    (0..alg.keymat_len() as u8)
        .map(|i| i.wrapping_mul(53) ^ 0x3c)
        .collect()
}

fn cbc_encrypt<C>(key: &[u8], iv: &[u8; 16], buf: &mut [u8])
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + aes::cipher::KeyInit,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let mut enc = cbc::Encryptor::<C>::new_from_slices(key, iv).unwrap();
    for block in buf.chunks_exact_mut(16) {
        enc.encrypt_block_mut(block.into());
    }
}

fn forge(cipher: AesCbc, integ: Integ, esn: bool, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let km = keymat(Algorithm::AesCbc(cipher, integ));
    let (ek, ik) = km.split_at(cipher.key_len());
    // Any IV will do for the receiver; derive it from the number.
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&seq.to_le_bytes());
    let mut body = plaintext[..plaintext.len() / 16 * 16].to_vec();
    match cipher {
        AesCbc::Aes128 => cbc_encrypt::<aes::Aes128>(ek, &iv, &mut body),
        AesCbc::Aes192 => cbc_encrypt::<aes::Aes192>(ek, &iv, &mut body),
        _ => cbc_encrypt::<aes::Aes256>(ek, &iv, &mut body),
    }
    let mut out = SPI.to_be_bytes().to_vec();
    out.extend_from_slice(&(seq as u32).to_be_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&body);
    let alg = match integ {
        Integ::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Integ::HmacSha256_128 => hmac::HMAC_SHA256,
        Integ::HmacSha384_192 => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(alg, ik));
    ctx.update(&out);
    if esn {
        ctx.update(&((seq >> 32) as u32).to_be_bytes());
    }
    out.extend_from_slice(&ctx.sign().as_ref()[..integ.icv_len()]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let esn = mode & 1 != 0;
    let cipher = match (mode >> 1) % 3 {
        0 => AesCbc::Aes128,
        1 => AesCbc::Aes192,
        _ => AesCbc::Aes256,
    };
    let integ = match (mode >> 3) & 3 {
        0 => Integ::HmacSha1_96,
        1 => Integ::HmacSha256_128,
        2 => Integ::HmacSha384_192,
        _ => Integ::HmacSha512_256,
    };
    let alg = Algorithm::AesCbc(cipher, integ);
    let config = SaConfig {
        esn,
        replay_window: 64 << ((mode >> 5) & 3),
        ..SaConfig::default()
    };
    // Narrow selectors on one side, so that the check can fail both ways.
    let selectors = SaSelectors::new(
        vec![
            "10.0.0.0/8".parse::<TrafficSelector>().unwrap(),
            TrafficSelector::any_v6(),
        ],
        vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
    );
    let mut sa = InboundSa::new(SPI, alg, &keymat(alg), &config, selectors).unwrap();
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
            forge(cipher, integ, esn, u64::from_be_bytes(*seq), plaintext)
        };
        let mut buf = vec![0u8; packet.len() + 64];
        buf[32..32 + packet.len()].copy_from_slice(&packet);
        let range = 32..32 + packet.len();
        let before = sa.stats();
        match sa.decapsulate(&mut buf, range.clone()) {
            Ok(d) => {
                assert!(range.start + 24 <= d.inner.start && d.inner.end <= range.end);
                assert!(d.seq > 0);
                let after = sa.stats();
                assert_eq!(after.packets, before.packets + 1);
                assert!(after.seq >= before.seq && after.seq >= d.seq);
                if d.kind != InnerKind::Dummy {
                    let flow = esp::Flow::parse(&buf[d.inner.clone()]).unwrap();
                    assert_eq!(flow.ip_len(), d.inner.len());
                }
                buf[32..32 + packet.len()].copy_from_slice(&packet);
                assert!(matches!(
                    sa.decapsulate(&mut buf, range),
                    Err(esp::DropReason::Replay(_))
                ));
            }
            Err(esp::DropReason::IcvMismatch) => {
                // A forgery changes nothing: not the window, not the buffer.
                assert_eq!(sa.stats(), before);
                assert_eq!(&buf[range], &packet[..]);
            }
            Err(reason) => {
                assert!(reason.as_index() < esp::DropReason::COUNT);
            }
        }
    }
});
