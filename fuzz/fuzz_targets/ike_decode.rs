//! IKE message decode: any bytes parse or fail cleanly; what parses re-encodes to a
//! message that parses back to the same representation. The mediation records read
//! from a parsed message (a connectivity check, an ME_CONNECT's contents) and an
//! ME_ENDPOINT read from the raw bytes round-trip the same way.
#![no_main]

use ike::wire::mediation::{ConnectivityCheck, Endpoint, MeConnect};
use ike::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.to_bytes();
        let again = Message::parse(&bytes).expect("our own encoding must parse");
        assert_eq!(again, m);
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
