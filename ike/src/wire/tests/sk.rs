//! SK payload encryption framing (RFC 7296 3.14) with the toy cipher.

use super::cipher::ToyCipher;
use super::messages::{every_payload, header};
use crate::iana::{exchange, payload};
use crate::wire::payload::emit_generic_header;
use crate::wire::{
    decrypt_message, encrypt_message, DecryptError, Header, Message, Payload, SkCipher, WireError,
};

fn round_trip(cipher: &mut ToyCipher, inner: &[Payload]) -> Vec<u8> {
    let h = header(exchange::IKE_AUTH, 1);
    let raw = encrypt_message(&h, inner, cipher);
    let msg = Message::parse(&raw).expect("encrypted message parses");
    assert_eq!(msg.header.length as usize, raw.len());
    assert_eq!(msg.header.next_payload, payload::SK);
    assert_eq!(msg.header.message_id, 1);
    assert_eq!(msg.payloads.len(), 1);
    let sk = msg.encrypted().expect("SK payload");
    assert_eq!(sk.header_offset, Header::LEN);
    assert_eq!(
        sk.next_payload,
        inner.first().map_or(payload::NONE, Payload::kind)
    );
    let parts = sk.split(cipher.iv_len(), cipher.icv_len()).expect("splits");
    assert_eq!(parts.iv.len(), cipher.iv_len());
    assert_eq!(parts.icv.len(), cipher.icv_len());
    assert_eq!(parts.ciphertext.len() % cipher.block_len(), 0);
    assert_eq!(
        parts.ciphertext.len() + cipher.iv_len() + cipher.icv_len(),
        sk.body.len()
    );
    assert_eq!(decrypt_message(&raw, &msg, cipher), Ok(inner.to_vec()));
    raw
}

#[test]
fn gcm_shaped_round_trip() {
    let mut c = ToyCipher::gcm(1);
    let raw = round_trip(&mut c, &every_payload());
    // No padding with a block length of 1: just the Pad Length byte.
    let inner_len: usize = every_payload().iter().map(Payload::buffer_len).sum();
    assert_eq!(raw.len(), Header::LEN + 4 + 8 + inner_len + 1 + 16);
}

#[test]
fn cbc_shaped_round_trip_pads_to_blocks() {
    let mut c = ToyCipher::cbc(2);
    round_trip(&mut c, &every_payload());
    // Every padding length from 0 to 15.
    for n in 16..32 {
        round_trip(&mut c, &[Payload::Nonce(vec![3; n])]);
    }
}

#[test]
fn empty_inner_round_trips() {
    // An INFORMATIONAL liveness check carries an empty SK payload (RFC 7296 1.4).
    round_trip(&mut ToyCipher::gcm(3), &[]);
    round_trip(&mut ToyCipher::cbc(3), &[]);
}

#[test]
fn any_flipped_byte_fails() {
    let mut c = ToyCipher::cbc(4);
    let inner = vec![Payload::Notify(crate::wire::Notify::new(
        crate::iana::NotifyType(16384),
        vec![],
    ))];
    let raw = encrypt_message(&header(exchange::INFORMATIONAL, 9), &inner, &mut c);
    for at in 0..raw.len() {
        let mut bad = raw.clone();
        bad[at] ^= 0x01;
        let result = Message::parse(&bad)
            .map_err(DecryptError::from)
            .and_then(|msg| decrypt_message(&bad, &msg, &c));
        assert!(result.is_err(), "flip at {at}");
        // Past the header fields that steer parsing, it is the integrity check.
        if !(16..20).contains(&at) && !(24..32).contains(&at) {
            assert_eq!(result, Err(DecryptError::Integrity), "flip at {at}");
        }
    }
    // A different key.
    let msg = Message::parse(&raw).expect("parses");
    assert_eq!(
        decrypt_message(&raw, &msg, &ToyCipher::cbc(5)),
        Err(DecryptError::Integrity)
    );
}

/// An SK message whose decrypted body is exactly `plain` (inner payloads, padding
/// and Pad Length as given), sealed with the cipher directly.
fn seal_exact(
    plain: &[u8],
    next_payload: crate::iana::PayloadType,
    cipher: &mut ToyCipher,
) -> Vec<u8> {
    let body_len = cipher.iv_len() + plain.len() + cipher.icv_len();
    let mut h = header(exchange::INFORMATIONAL, 3);
    h.next_payload = payload::SK;
    h.length = (Header::LEN + 4 + body_len) as u32;
    let mut raw = Vec::new();
    h.emit(&mut raw);
    emit_generic_header(next_payload, body_len, &mut raw);
    let aad = raw.clone();
    let mut iv = vec![0; cipher.iv_len()];
    cipher.next_iv(&mut iv);
    let mut body = plain.to_vec();
    let mut icv = vec![0; cipher.icv_len()];
    cipher.seal(&aad, &iv, &mut body, &mut icv);
    raw.extend_from_slice(&iv);
    raw.extend_from_slice(&body);
    raw.extend_from_slice(&icv);
    raw
}

fn open_exact(
    plain: &[u8],
    next_payload: crate::iana::PayloadType,
) -> Result<Vec<Payload>, DecryptError> {
    let mut c = ToyCipher::gcm(6);
    let raw = seal_exact(plain, next_payload, &mut c);
    let msg = Message::parse(&raw).expect("parses");
    decrypt_message(&raw, &msg, &c)
}

#[test]
fn padding_and_inner_errors_are_malformed() {
    // Any padding content and length that fits is accepted (RFC 7296 3.14).
    assert_eq!(open_exact(&[0xee, 0xff, 2], payload::NONE), Ok(vec![]));
    assert_eq!(
        open_exact(&[0, 5], payload::NONE),
        Err(DecryptError::Malformed(WireError::Invalid("pad length")))
    );
    assert_eq!(
        open_exact(&[1, 2, 3, 0], payload::NONE),
        Err(DecryptError::Malformed(WireError::BadLength(
            "payload chain"
        )))
    );
    assert_eq!(
        open_exact(&[0, 0, 0, 40, 0], payload::VENDOR_ID),
        Err(DecryptError::Malformed(WireError::Truncated("payload")))
    );
    assert_eq!(
        open_exact(&[0, 0x80, 0, 4, 0], crate::iana::PayloadType(222)),
        Err(DecryptError::Malformed(WireError::UnsupportedCritical(
            crate::iana::PayloadType(222)
        )))
    );
}

#[test]
fn framing_errors() {
    let c = ToyCipher::cbc(8);
    // No SK payload at all.
    let plain = Message::new(
        header(exchange::INFORMATIONAL, 0),
        vec![Payload::VendorId(vec![1])],
    );
    let raw = plain.to_bytes();
    assert_eq!(
        decrypt_message(&raw, &plain, &c),
        Err(DecryptError::NotEncrypted)
    );
    // Ciphertext not a whole number of blocks.
    let sk = Payload::Sk(crate::wire::Encrypted {
        next_payload: crate::iana::payload::NONE,
        body: vec![0; 16 + 17 + 16],
        header_offset: Header::LEN,
    });
    let msg = Message::new(header(exchange::INFORMATIONAL, 0), vec![sk]);
    let raw = msg.to_bytes();
    assert_eq!(
        decrypt_message(&raw, &msg, &c),
        Err(DecryptError::Malformed(WireError::BadLength(
            "encrypted payload"
        )))
    );
    // Shorter than IV and ICV.
    let sk = Payload::Sk(crate::wire::Encrypted {
        next_payload: crate::iana::payload::NONE,
        body: vec![0; 20],
        header_offset: Header::LEN,
    });
    let msg = Message::new(header(exchange::INFORMATIONAL, 0), vec![sk]);
    let raw = msg.to_bytes();
    assert!(matches!(
        decrypt_message(&raw, &msg, &c),
        Err(DecryptError::Malformed(WireError::Truncated(_)))
    ));
}

#[test]
fn nested_encrypted_payload_is_refused() {
    let mut c = ToyCipher::gcm(9);
    let inner = vec![Payload::Sk(crate::wire::Encrypted {
        next_payload: crate::iana::payload::NONE,
        body: vec![1; 30],
        header_offset: 0,
    })];
    let raw = encrypt_message(&header(exchange::IKE_AUTH, 1), &inner, &mut c);
    let msg = Message::parse(&raw).expect("parses");
    assert_eq!(
        decrypt_message(&raw, &msg, &c),
        Err(DecryptError::Malformed(WireError::Invalid(
            "nested encrypted payload"
        )))
    );
}
