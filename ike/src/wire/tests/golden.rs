//! A hand-built IKE_SA_INIT request, checked field by field.

use crate::iana::{dh, encr, exchange, notify, payload, prf, protocol, transform};
use crate::wire::{
    Flags, Header, KeyExchange, Message, Notify, Payload, Proposal, Transform, WireError,
};

const SPI_I: u64 = 0x0011_2233_4455_6677;

fn ke_data() -> Vec<u8> {
    (0x40..0x60).collect()
}

fn nonce() -> Vec<u8> {
    (0x80..0xa0).collect()
}

fn nat_src() -> Vec<u8> {
    (0xc0..0xd4).collect()
}

fn nat_dst() -> Vec<u8> {
    (0xe0..0xf4).collect()
}

/// The request as bytes, built field by field after RFC 7296 3.1-3.10.
fn golden_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    // IKE header (3.1), 28 bytes.
    b.extend_from_slice(&SPI_I.to_be_bytes()); // SPIi
    b.extend_from_slice(&[0; 8]); // SPIr: zero in the first request
    b.push(33); // next payload: SA
    b.push(0x20); // version 2.0
    b.push(34); // IKE_SA_INIT
    b.push(0x08); // flags: Initiator
    b.extend_from_slice(&[0, 0, 0, 0]); // message ID 0
    b.extend_from_slice(&[0, 0, 0, 200]); // length
                                          // SA payload (3.3): generic header then one proposal.
    b.extend_from_slice(&[34, 0, 0, 40]); // next KE, length 4 + 36
    b.extend_from_slice(&[0, 0, 0, 36]); // last proposal, length 36
    b.extend_from_slice(&[1, 1, 0, 3]); // #1, IKE, SPI size 0, 3 transforms
    b.extend_from_slice(&[3, 0, 0, 12, 1, 0, 0, 20]); // ENCR AES-GCM-16
    b.extend_from_slice(&[0x80, 14, 1, 0]); // Key Length (TV) 256
    b.extend_from_slice(&[3, 0, 0, 8, 2, 0, 0, 5]); // PRF HMAC-SHA2-256
    b.extend_from_slice(&[0, 0, 0, 8, 4, 0, 0, 31]); // DH Curve25519, last
                                                     // KE payload (3.4).
    b.extend_from_slice(&[40, 0, 0, 40]); // next Nonce, length 4 + 4 + 32
    b.extend_from_slice(&[0, 31, 0, 0]); // group 31, reserved
    b.extend_from_slice(&ke_data());
    // Nonce payload (3.9).
    b.extend_from_slice(&[41, 0, 0, 36]); // next Notify, length 4 + 32
    b.extend_from_slice(&nonce());
    // Notify NAT_DETECTION_SOURCE_IP (3.10, 2.23).
    b.extend_from_slice(&[41, 0, 0, 28]); // next Notify, length 4 + 4 + 20
    b.extend_from_slice(&[0, 0, 0x40, 0x04]); // no protocol, no SPI, type 16388
    b.extend_from_slice(&nat_src());
    // Notify NAT_DETECTION_DESTINATION_IP.
    b.extend_from_slice(&[0, 0, 0, 28]); // last payload
    b.extend_from_slice(&[0, 0, 0x40, 0x05]); // type 16389
    b.extend_from_slice(&nat_dst());
    b
}

fn golden_message() -> Message {
    let header = Header {
        spi_i: SPI_I,
        spi_r: 0,
        next_payload: payload::SA,
        version: 0x20,
        exchange: exchange::IKE_SA_INIT,
        flags: Flags {
            initiator: true,
            response: false,
            version: false,
        },
        message_id: 0,
        length: 200,
    };
    let proposal = Proposal {
        number: 1,
        protocol: protocol::IKE,
        spi: vec![],
        transforms: vec![
            Transform::with_key_length(transform::ENCR, encr::AES_GCM_16, 256),
            Transform::new(transform::PRF, prf::HMAC_SHA2_256),
            Transform::new(transform::DH, dh::CURVE25519),
        ],
    };
    Message {
        header,
        payloads: vec![
            Payload::Sa(vec![proposal]),
            Payload::Ke(KeyExchange {
                group: dh::CURVE25519,
                data: ke_data(),
            }),
            Payload::Nonce(nonce()),
            Payload::Notify(Notify::new(notify::NAT_DETECTION_SOURCE_IP, nat_src())),
            Payload::Notify(Notify::new(notify::NAT_DETECTION_DESTINATION_IP, nat_dst())),
        ],
    }
}

#[test]
fn ike_sa_init_request_parses() {
    let bytes = golden_bytes();
    assert_eq!(bytes.len(), 200);
    let msg = Message::parse(&bytes);
    assert_eq!(msg, Ok(golden_message()));
}

#[test]
fn ike_sa_init_request_emits() {
    let msg = golden_message();
    assert_eq!(msg.buffer_len(), 200);
    assert_eq!(msg.to_bytes(), golden_bytes());
    // `Message::new` derives next payload and length from the payloads.
    let mut header = msg.header;
    header.next_payload = crate::iana::payload::NONE;
    header.length = 0;
    assert_eq!(Message::new(header, msg.payloads.clone()), msg);
}

#[test]
fn ike_sa_init_request_fields() {
    let b = golden_bytes();
    // Header.
    assert_eq!(&b[0..8], &SPI_I.to_be_bytes());
    assert_eq!(b[16], payload::SA.0);
    assert_eq!(b[17] >> 4, 2);
    assert_eq!(b[18], exchange::IKE_SA_INIT.0);
    assert_eq!(b[19], 0x08);
    assert_eq!(u32::from_be_bytes([b[24], b[25], b[26], b[27]]), 200);
    // Payload chain: offsets and next payload types.
    let chain = [
        (28, payload::KE, 40),
        (68, payload::NONCE, 40),
        (108, payload::NOTIFY, 36),
        (144, payload::NOTIFY, 28),
        (172, payload::NONE, 28),
    ];
    for (at, next, len) in chain {
        assert_eq!(b[at], next.0, "next payload at {at}");
        assert_eq!(b[at + 1], 0, "critical bit at {at}");
        assert_eq!(usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]])), len);
    }
    assert_eq!(172 + 28, b.len());
    // Transform IDs.
    assert_eq!(b[44], transform::ENCR);
    assert_eq!(u16::from_be_bytes([b[46], b[47]]), encr::AES_GCM_16);
    assert_eq!(u16::from_be_bytes([b[50], b[51]]), 256);
    assert_eq!(b[64], transform::DH);
    assert_eq!(u16::from_be_bytes([b[66], b[67]]), dh::CURVE25519);
    // KE group and notify types.
    assert_eq!(u16::from_be_bytes([b[72], b[73]]), dh::CURVE25519);
    assert_eq!(
        u16::from_be_bytes([b[150], b[151]]),
        notify::NAT_DETECTION_SOURCE_IP.0
    );
    assert_eq!(
        u16::from_be_bytes([b[178], b[179]]),
        notify::NAT_DETECTION_DESTINATION_IP.0
    );
}

#[test]
fn every_prefix_is_an_error() {
    let bytes = golden_bytes();
    for n in 0..bytes.len() {
        assert!(Message::parse(&bytes[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn every_prefix_with_patched_length_is_an_error() {
    // With the length field matching the cut, the payload parsers see the truncation.
    let bytes = golden_bytes();
    for n in Header::LEN..bytes.len() {
        let mut cut = bytes[..n].to_vec();
        cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
        assert!(Message::parse(&cut).is_err(), "prefix {n}");
    }
}

#[test]
fn header_only_checks() {
    let mut bytes = golden_bytes();
    bytes[17] = 0x30;
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::UnsupportedVersion(3))
    );
    // The header still parses, so INVALID_MAJOR_VERSION can be answered.
    assert_eq!(Header::parse(&bytes).map(|h| h.spi_i), Ok(SPI_I));
    let mut bytes = golden_bytes();
    bytes.push(0);
    assert_eq!(Message::parse(&bytes), Err(WireError::BadLength("message")));
    let mut bytes = golden_bytes();
    bytes[27] = 20;
    assert_eq!(Message::parse(&bytes), Err(WireError::BadLength("message")));
}
