//! NAT-T (RFC 3948): UDP-encapsulated ESP end to end, and the port-4500 demultiplexer.

use esp::natt::{
    self, prepend_non_esp_marker, prepend_udp_header, MalformedDatagram, UdpHeader, NAT_KEEPALIVE,
    NAT_T_PORT, UDP_HEADER_LEN,
};
use esp::{classify_4500, Aead, Datagram4500, DropReason, SaConfig, Sad};

use crate::common::*;

#[test]
fn esp_in_udp_end_to_end() {
    let (mut tx, rx) = pair(Aead::AesGcm128, &SaConfig::default());
    let mut sad = Sad::new();
    sad.insert(rx);
    let inner = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 100);
    // Room for UDP + ESP header in front.
    let head = UDP_HEADER_LEN + tx.head_len();
    let mut buf = vec![0u8; UDP_HEADER_LEN + tx.packet_len(inner.len())];
    buf[head..head + inner.len()].copy_from_slice(&inner);
    let esp = tx
        .encapsulate(&mut buf, head..head + inner.len())
        .unwrap()
        .packet;
    let datagram = prepend_udp_header(&mut buf, esp, 4500, NAT_T_PORT).unwrap();
    assert_eq!(datagram, 0..buf.len());

    // Receive side: parse UDP, classify, decapsulate in place.
    let (udp, payload) = UdpHeader::parse(&buf).unwrap();
    assert_eq!(
        (udp.dst_port, udp.checksum, usize::from(udp.length)),
        (4500, 0, buf.len())
    );
    let Datagram4500::Esp(esp) = classify_4500(payload) else {
        panic!("not classified as ESP");
    };
    assert_eq!(esp.len(), payload.len(), "ESP is the whole payload");
    let range = UDP_HEADER_LEN..UDP_HEADER_LEN + esp.len();
    let got = sad.decapsulate(&mut buf, range).unwrap();
    assert_eq!(&buf[got.inner], &inner[..]);
}

#[test]
fn ike_behind_marker_and_keepalive() {
    let ike = [0x11u8; 28];
    let mut buf = vec![0u8; UDP_HEADER_LEN + 4 + ike.len()];
    buf[12..].copy_from_slice(&ike);
    let end = buf.len();
    let payload = prepend_non_esp_marker(&mut buf, 12..end).unwrap();
    let datagram = prepend_udp_header(&mut buf, payload, 4500, 4500).unwrap();
    let (_, payload) = UdpHeader::parse(&buf[datagram]).unwrap();
    assert_eq!(classify_4500(payload), Datagram4500::Ike(&ike[..]));
    assert_eq!(natt::strip_non_esp_marker(payload), Some(&ike[..]));
    assert_eq!(classify_4500(&NAT_KEEPALIVE), Datagram4500::Keepalive);
}

#[test]
fn garbage_on_4500() {
    let cases: &[(&[u8], Datagram4500<'_>)] = &[
        (&[], Datagram4500::Malformed(MalformedDatagram::Empty)),
        (&[0], Datagram4500::Malformed(MalformedDatagram::TooShort)),
        (
            &[0xff, 0xff],
            Datagram4500::Malformed(MalformedDatagram::TooShort),
        ),
        (
            &[0, 0, 0, 0],
            Datagram4500::Malformed(MalformedDatagram::IkeTooShort),
        ),
        (
            &[1, 2, 3, 4, 5, 6, 7, 8],
            Datagram4500::Malformed(MalformedDatagram::EspTooShort),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(classify_4500(bytes), *want, "{bytes:?}");
    }
    // ESP-sized garbage with an unknown SPI: classified ESP, dropped by the SAD.
    let mut junk = vec![0x42u8; 64];
    assert!(matches!(classify_4500(&junk), Datagram4500::Esp(_)));
    assert_eq!(
        Sad::new().decapsulate(&mut junk, 0..64),
        Err(DropReason::UnknownSpi)
    );
}
