//! IKE message decode: any bytes parse or fail cleanly; what parses re-encodes to a
//! message that parses back to the same representation (but for the header's length:
//! the codec drops transform attributes other than Key Length, see
//! ike/tests/fuzz_regressions.rs), and that encoding is a fixed point. The mediation
//! records read from a parsed message (a connectivity check, an ME_CONNECT's contents)
//! and an ME_ENDPOINT read from the raw bytes round-trip the same way.
#![no_main]

use ike::wire::mediation::{ConnectivityCheck, Endpoint, MeConnect};
use ike::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.to_bytes();
        let again = Message::parse(&bytes).expect("our own encoding must parse");
        assert_eq!(again.payloads, m.payloads);
        assert_eq!(again.header.length as usize, bytes.len());
        let mut header = again.header;
        header.length = m.header.length;
        assert_eq!(header, m.header);
        assert_eq!(again.to_bytes(), bytes, "re-encoding is a fixed point");
        if let Ok(check) = ConnectivityCheck::from_message(&m) {
            let back = ConnectivityCheck::from_message(&check.to_message());
            assert_eq!(back.as_ref(), Ok(&check));
        }
        if let Ok(me) = MeConnect::from_payloads(&m.payloads) {
            assert_eq!(MeConnect::from_payloads(&me.to_payloads()), Ok(me));
        }
    }
    if let Ok(e) = Endpoint::parse(data) {
        assert_eq!(e.to_bytes(), data, "endpoints parse only in canonical form");
    }
});
