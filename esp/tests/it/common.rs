//! Shared builders: SA pairs, valid inner IP packets, buffers with head- and tailroom.

use core::ops::Range;

use esp::{Aead, Algorithm, InboundSa, OutboundSa, SaConfig, SaSelectors};

pub(crate) const SPI: u32 = 0x0c0f_fee0;

/// Deterministic KEYMAT for an algorithm (key || salt, or encryption || integrity key).
pub(crate) fn keymat(alg: impl Into<Algorithm>) -> Vec<u8> {
    (0..alg.into().keymat_len())
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(0x5a))
        .collect()
}

/// An outbound/inbound pair sharing one key and SPI, accepting any inner traffic.
pub(crate) fn pair(alg: impl Into<Algorithm>, config: &SaConfig) -> (OutboundSa, InboundSa) {
    pair_with(alg, config, SaSelectors::any())
}

/// Like [`pair`] with explicit inbound selectors.
pub(crate) fn pair_with(
    alg: impl Into<Algorithm>,
    config: &SaConfig,
    selectors: SaSelectors,
) -> (OutboundSa, InboundSa) {
    let alg = alg.into();
    let km = keymat(alg);
    let tx = OutboundSa::new(SPI, alg, &km, config).unwrap();
    let rx = InboundSa::new(SPI, alg, &km, config, selectors).unwrap();
    (tx, rx)
}

pub(crate) fn esn() -> SaConfig {
    SaConfig {
        esn: true,
        ..SaConfig::default()
    }
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid IPv4/UDP packet with `payload` bytes of UDP payload.
pub(crate) fn ipv4_udp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: usize,
) -> Vec<u8> {
    let total = 20 + 8 + payload;
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let ulen = (8 + payload) as u16;
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&ulen.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend((0..payload).map(|i| (i * 7 + 3) as u8));
    p
}

/// A valid IPv4 packet with `payload` bytes after the header (protocol 253, testing).
pub(crate) fn ipv4(payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        253,
        0,
        0,
    ];
    p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let c = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend((0..payload).map(|i| (i * 13 + 1) as u8));
    p
}

/// A valid IPv6 packet with `payload` bytes after the fixed header (next header 59).
pub(crate) fn ipv6(payload: usize) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, (payload >> 8) as u8, payload as u8, 59, 64];
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend((0..payload).map(|i| (i * 31 + 5) as u8));
    p
}

/// A buffer holding `inner` with exactly the head- and tailroom encapsulation needs.
pub(crate) fn slot(inner: &[u8]) -> (Vec<u8>, Range<usize>) {
    let mut buf = vec![0xeeu8; OutboundSa::encapsulated_len(inner.len())];
    let at = OutboundSa::HEADROOM..OutboundSa::HEADROOM + inner.len();
    buf[at.clone()].copy_from_slice(inner);
    (buf, at)
}

/// A buffer holding `inner` with exactly the room `tx` needs: the ESP packet fills it.
pub(crate) fn exact_slot(tx: &OutboundSa, inner: &[u8]) -> (Vec<u8>, Range<usize>) {
    let mut buf = vec![0xeeu8; tx.packet_len(inner.len())];
    let at = tx.head_len()..tx.head_len() + inner.len();
    buf[at.clone()].copy_from_slice(inner);
    (buf, at)
}

/// Encapsulates `inner` and returns just the ESP packet bytes.
pub(crate) fn seal(tx: &mut OutboundSa, inner: &[u8]) -> Vec<u8> {
    let (mut buf, at) = slot(inner);
    let out = tx.encapsulate(&mut buf, at).unwrap();
    buf[out.packet].to_vec()
}

/// Builds an ESP packet by hand with ring, bypassing `OutboundSa`, so tests can make
/// authentic packets with arbitrary (bad) trailers. `plaintext` includes the trailer.
pub(crate) fn forge(aead: Aead, spi: u32, seq: u64, esn: bool, plaintext: &[u8]) -> Vec<u8> {
    use ring::aead::{self as r, Aad, LessSafeKey, Nonce, UnboundKey};
    let km = keymat(aead);
    let alg = match aead {
        Aead::AesGcm128 => &r::AES_128_GCM,
        Aead::AesGcm256 => &r::AES_256_GCM,
        _ => &r::CHACHA20_POLY1305,
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, &km[..aead.key_len()]).unwrap());
    let iv = seq.to_be_bytes();
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&km[aead.key_len()..]);
    nonce[4..].copy_from_slice(&iv);
    let mut aad = spi.to_be_bytes().to_vec();
    if esn {
        aad.extend_from_slice(&seq.to_be_bytes());
    } else {
        aad.extend_from_slice(&(seq as u32).to_be_bytes());
    }
    let mut out = spi.to_be_bytes().to_vec();
    out.extend_from_slice(&(seq as u32).to_be_bytes());
    out.extend_from_slice(&iv);
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
