//! The port-4500 demultiplexer and every parser a peer's bytes reach before any key:
//! UDP header, non-ESP marker, ESP header view, inner IP header (SPD lookup), and the
//! traffic selector text parser.
#![no_main]

use std::sync::OnceLock;

use esp::natt::{self, UdpHeader};
use esp::packet::{peek_spi, EspPacket};
use esp::{classify_4500, Datagram4500, Flow, Spd, TrafficSelector};
use libfuzzer_sys::fuzz_target;

fn spd() -> &'static Spd<u32> {
    static SPD: OnceLock<Spd<u32>> = OnceLock::new();
    SPD.get_or_init(|| {
        let ts = |s: &str| s.parse::<TrafficSelector>().unwrap();
        let mut spd = Spd::new();
        spd.insert(&TrafficSelector::any_v4(), &ts("10.0.0.0/8"), 1)
            .unwrap();
        spd.insert(
            &ts("10.0.0.3-10.0.0.17"),
            &ts("10.1.0.0/16").with_proto(6),
            2,
        )
        .unwrap();
        spd.insert(
            &TrafficSelector::any_v6(),
            &ts("2001:db8::/32").with_proto(58),
            3,
        )
        .unwrap();
        spd.insert(&TrafficSelector::any_v6(), &TrafficSelector::any_v6(), 4)
            .unwrap();
        spd
    })
}

fuzz_target!(|data: &[u8]| {
    match classify_4500(data) {
        Datagram4500::Ike(msg) => {
            assert_eq!(msg.len() + 4, data.len());
            assert_eq!(natt::strip_non_esp_marker(data), Some(msg));
        }
        Datagram4500::Esp(p) => {
            assert_eq!(p.len(), data.len());
            assert_ne!(peek_spi(p), Some(0));
            let view = EspPacket::new_checked(p).unwrap();
            let _ = (
                view.spi(),
                view.seq(),
                view.iv(),
                view.ciphertext_and_icv().len(),
            );
        }
        Datagram4500::Keepalive => assert!(natt::is_keepalive(data)),
        Datagram4500::Malformed(_) => {}
    }

    if let Ok((header, payload)) = UdpHeader::parse(data) {
        assert_eq!(payload.len() + 8, usize::from(header.length));
        let mut out = [0u8; 8];
        header.emit(&mut out).unwrap();
        assert_eq!(&out[..], &data[..8]);
        // Re-frame the payload in place with the marker and a fresh UDP header.
        let mut buf = vec![0u8; 12 + payload.len()];
        buf[12..].copy_from_slice(payload);
        let end = buf.len();
        let marked = natt::prepend_non_esp_marker(&mut buf, 12..end).unwrap();
        let framed = natt::prepend_udp_header(&mut buf, marked, 4500, 4500).unwrap();
        assert_eq!(framed, 0..end);
    }

    if let Ok(flow) = Flow::parse(data) {
        assert!(flow.ip_len() <= data.len());
    }
    let _ = spd().lookup(data);

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ts) = text.parse::<TrafficSelector>() {
            // Display of a text-parsed selector (any protocol and port) parses back.
            assert_eq!(ts.to_string().parse::<TrafficSelector>(), Ok(ts));
        }
    }
});
