//! IKE message decode: any bytes parse or fail cleanly; what parses re-encodes to a
//! message that parses back to the same representation.
#![no_main]

use ike::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.to_bytes();
        let again = Message::parse(&bytes).expect("our own encoding must parse");
        assert_eq!(again, m);
    }
});
