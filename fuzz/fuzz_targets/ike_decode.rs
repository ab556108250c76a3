//! IKE message decode: any bytes parse or fail cleanly; what parses re-encodes to a
//! message that parses back to the same representation when it has the input's length
//! (the codec drops transform attributes other than Key Length, see
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
        if bytes.len() == data.len() {
            assert_eq!(again, m);
        } else {
            // Skipped attributes shorten the message, and with it the header's length
            // and an SK payload's offset: only the payload kinds must stay.
            let kinds = |m: &Message| m.payloads.iter().map(|p| p.kind()).collect::<Vec<_>>();
            assert_eq!(kinds(&again), kinds(&m));
        }
        let third = Message::parse(&again.to_bytes()).expect("our own encoding must parse");
        assert_eq!(third, again, "re-encoding is a fixed point");
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
