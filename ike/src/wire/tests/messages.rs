//! Whole-message round trips, the payload chain walk and robustness on hostile input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::iana::{auth, cert, cfg, dh, exchange, id, notify, payload, protocol};
use crate::wire::{
    Authentication, Certificate, Configuration, Delete, Encrypted, EncryptedFragment, Flags,
    Header, Identification, KeyExchange, Message, Notify, Payload, TrafficSelector, WireError,
    MAX_PAYLOADS,
};

pub(super) fn header(exchange: crate::iana::ExchangeType, message_id: u32) -> Header {
    Header::new(
        0x1122_3344_5566_7788,
        0x99aa_bbcc_ddee_ff00,
        exchange,
        Flags {
            initiator: true,
            ..Flags::default()
        },
        message_id,
    )
}

/// One payload of every type that can sit inside an SK payload.
pub(super) fn every_payload() -> Vec<Payload> {
    let ts = TrafficSelector {
        ip_proto: 17,
        start_port: 500,
        end_port: 4500,
        start_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        end_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    vec![
        Payload::IdI(Identification {
            id_type: id::RFC822_ADDR,
            data: b"alice@example.org".to_vec(),
        }),
        Payload::Cert(Certificate {
            encoding: cert::X509_SIGNATURE,
            data: vec![0x30; 300],
        }),
        Payload::CertReq(Certificate {
            encoding: cert::X509_SIGNATURE,
            data: vec![0xab; 40],
        }),
        Payload::Notify(Notify::new(notify::INITIAL_CONTACT, vec![])),
        Payload::IdR(Identification {
            id_type: id::IPV4_ADDR,
            data: vec![192, 0, 2, 1],
        }),
        Payload::Auth(Authentication {
            method: auth::DIGITAL_SIGNATURE,
            data: vec![7; 70],
        }),
        Payload::Cp(Configuration {
            cfg_type: cfg::REQUEST,
            attributes: vec![(cfg::INTERNAL_IP6_ADDRESS, vec![])],
        }),
        Payload::Sa(vec![crate::wire::Proposal {
            number: 1,
            protocol: protocol::ESP,
            spi: vec![1, 2, 3, 4],
            transforms: vec![crate::wire::Transform::new(4, dh::ECP_256)],
        }]),
        Payload::Ke(KeyExchange {
            group: dh::ECP_256,
            data: vec![4; 64],
        }),
        Payload::Nonce(vec![9; 32]),
        Payload::TsI(vec![TrafficSelector::any(false), ts]),
        Payload::TsR(vec![TrafficSelector {
            start_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            end_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            ..TrafficSelector::any(false)
        }]),
        Payload::Delete(Delete::esp([0xdead_beef])),
        Payload::VendorId(b"esprit".to_vec()),
        Payload::Eap(vec![2, 1, 0, 6, 1, b'x']),
        Payload::Unknown {
            kind: crate::iana::PayloadType(200),
            data: vec![1, 2, 3],
        },
    ]
}

#[test]
fn every_payload_round_trips() {
    let msg = Message::new(header(exchange::IKE_AUTH, 1), every_payload());
    let bytes = msg.to_bytes();
    assert_eq!(bytes.len(), msg.buffer_len());
    assert_eq!(Message::parse(&bytes), Ok(msg.clone()));
    // Each payload alone, too.
    for p in every_payload() {
        let msg = Message::new(header(exchange::INFORMATIONAL, 2), vec![p]);
        assert_eq!(Message::parse(&msg.to_bytes()), Ok(msg));
    }
}

#[test]
fn every_prefix_of_a_long_message_is_an_error() {
    let good = Message::new(header(exchange::IKE_AUTH, 1), every_payload()).to_bytes();
    for n in 0..good.len() {
        assert!(Message::parse(&good[..n]).is_err(), "prefix {n}");
        if n >= Header::LEN {
            let mut cut = good[..n].to_vec();
            cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            assert!(Message::parse(&cut).is_err(), "patched prefix {n}");
        }
    }
}

#[test]
fn encrypted_payloads_round_trip_and_record_offsets() {
    let vid = Payload::VendorId(vec![1; 10]);
    let sk = Payload::Sk(Encrypted {
        next_payload: payload::IDI,
        body: vec![0x5a; 40],
        header_offset: Header::LEN + 14,
    });
    let msg = Message::new(header(exchange::IKE_AUTH, 1), vec![vid.clone(), sk]);
    let bytes = msg.to_bytes();
    assert_eq!(bytes[Header::LEN + 14], payload::IDI.0);
    let parsed = Message::parse(&bytes);
    assert_eq!(parsed, Ok(msg.clone()));
    assert_eq!(
        msg.encrypted().map(Encrypted::aad_end),
        Some(Header::LEN + 18)
    );

    let skf = Payload::Skf(EncryptedFragment {
        next_payload: crate::iana::payload::NONE,
        number: 2,
        total: 3,
        body: vec![0x5a; 40],
        header_offset: Header::LEN,
    });
    let msg = Message::new(header(exchange::IKE_AUTH, 1), vec![skf]);
    let parsed = Message::parse(&msg.to_bytes());
    assert_eq!(parsed, Ok(msg.clone()));
    assert_eq!(msg.fragment().map(EncryptedFragment::aad_end), Some(36));
}

#[test]
fn encrypted_payload_must_be_last() {
    let sk = Payload::Sk(Encrypted {
        next_payload: crate::iana::payload::NONE,
        body: vec![0; 24],
        header_offset: Header::LEN,
    });
    let msg = Message::new(header(exchange::IKE_AUTH, 1), vec![sk]);
    let mut bytes = msg.to_bytes();
    // Append a Vendor ID after the SK payload and fix the header length.
    bytes.extend_from_slice(&[0, 0, 0, 5, 1]);
    let len = bytes.len() as u32;
    bytes[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::Invalid("payload after encrypted payload"))
    );
}

#[test]
fn unknown_payloads() {
    let vid = Payload::VendorId(vec![1, 2]);
    let msg = Message::new(
        header(exchange::INFORMATIONAL, 0),
        vec![
            Payload::Unknown {
                kind: crate::iana::PayloadType(150),
                data: vec![1, 2, 3],
            },
            vid.clone(),
        ],
    );
    let mut bytes = msg.to_bytes();
    let parsed = Message::parse(&bytes).map(|m| m.payloads);
    assert_eq!(
        parsed,
        Ok(vec![
            Payload::Unknown {
                kind: crate::iana::PayloadType(150),
                data: vec![1, 2, 3]
            },
            vid
        ])
    );
    // The same payload with its critical bit set fails the whole message.
    bytes[Header::LEN + 1] = 0x80;
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::UnsupportedCritical(crate::iana::PayloadType(
            150
        )))
    );
    // The critical bit of a known payload changes nothing.
    bytes[Header::LEN + 1] = 0;
    bytes[Header::LEN + 8] = 0x80;
    assert!(Message::parse(&bytes).is_ok());
}

#[test]
fn payload_count_is_bounded() {
    let many = vec![Payload::VendorId(vec![]); MAX_PAYLOADS + 1];
    let msg = Message::new(header(exchange::INFORMATIONAL, 0), many);
    assert_eq!(
        Message::parse(&msg.to_bytes()),
        Err(WireError::TooMany("payloads"))
    );
    let ok = vec![Payload::VendorId(vec![]); MAX_PAYLOADS];
    let msg = Message::new(header(exchange::INFORMATIONAL, 0), ok);
    assert!(Message::parse(&msg.to_bytes()).is_ok());
}

#[test]
fn chain_and_length_disagreements() {
    let msg = Message::new(
        header(exchange::INFORMATIONAL, 0),
        vec![Payload::VendorId(vec![1, 2, 3])],
    );
    let good = msg.to_bytes();
    // Trailing bytes after the last payload, inside the header's length.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    trailing[27] += 2;
    assert_eq!(
        Message::parse(&trailing),
        Err(WireError::BadLength("payload chain"))
    );
    // Payload length below the generic header.
    let mut short = good.clone();
    short[Header::LEN + 3] = 3;
    assert_eq!(
        Message::parse(&short),
        Err(WireError::BadLength("payload header"))
    );
    // Payload length beyond the message.
    let mut long = good;
    long[Header::LEN + 3] = 9;
    assert_eq!(Message::parse(&long), Err(WireError::Truncated("payload")));
}

/// A small deterministic generator for mutation tests.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_messages_never_panic() {
    let msg = Message::new(header(exchange::IKE_AUTH, 1), every_payload());
    let good = msg.to_bytes();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..20_000 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        let _ = Message::parse(&bytes);
        // Also with the length field patched to every cut.
        let cut = Header::LEN + rng.below(bytes.len() - Header::LEN);
        bytes.truncate(cut);
        bytes[24..28].copy_from_slice(&(cut as u32).to_be_bytes());
        let _ = Message::parse(&bytes);
    }
    // Random garbage with a plausible header.
    for _ in 0..5_000 {
        let len = rng.below(200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= Header::LEN {
            bytes[17] = 0x20;
            bytes[24..28].copy_from_slice(&(len as u32).to_be_bytes());
        }
        let _ = Message::parse(&bytes);
    }
}

#[test]
fn every_payload_body_prefix_is_handled() {
    // Each body cut short, with the lengths around it kept consistent.
    for p in every_payload() {
        let mut body = Vec::new();
        p.emit_body(&mut body);
        for n in 0..body.len() {
            let mut bytes = Vec::new();
            let mut h = header(exchange::INFORMATIONAL, 0);
            h.next_payload = p.kind();
            h.length = (Header::LEN + 4 + n) as u32;
            h.emit(&mut bytes);
            bytes.extend_from_slice(&[0, 0]);
            bytes.extend_from_slice(&((4 + n) as u16).to_be_bytes());
            bytes.extend_from_slice(&body[..n]);
            let _ = Message::parse(&bytes);
        }
    }
}
