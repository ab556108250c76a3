//! The control socket's request line (engine/src/control.rs): any text gives a request
//! or an error the daemon answers with, never a panic; a request it accepts
//! re-encodes to one that parses back the same.
#![no_main]

use engine::control::{parse_request, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = parse_request(line) {
        let again = serde_json::to_string(&req).expect("a request encodes");
        assert_eq!(parse_request(&again).ok(), Some(req.clone()));
        if let Request::Initiate { conn, .. } | Request::Terminate { conn } = &req {
            assert!(again.contains("\"conn\""), "{again} names {conn:?}");
        }
    }
});
