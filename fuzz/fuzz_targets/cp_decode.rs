//! CP payload (RFC 7296 3.15) decode: any bytes parse or fail cleanly, as a payload body
//! and as a payload chain starting with a CP payload; what parses re-encodes to the
//! same representation, and a body re-encodes to its own bytes but for the reserved
//! octets and the reserved bit of each attribute type.
#![no_main]

use ike::iana::payload;
use ike::wire::message::{emit_chain, parse_chain};
use ike::wire::{Configuration, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Configuration::parse(data) {
        let mut out = Vec::new();
        c.emit(&mut out);
        assert_eq!(out.len(), c.buffer_len());
        assert_eq!(out.len(), data.len());
        assert_eq!(out[0], data[0], "CFG Type");
        assert_eq!(Configuration::parse(&out), Ok(c.clone()));
        for (kind, _) in &c.attributes {
            // Each value is found under its type (the R bit is not part of it).
            assert!(c.values(*kind).next().is_some());
            assert_eq!(kind & 0x8000, 0);
        }
    }
    if let Ok(payloads) = parse_chain(payload::CP, data, 0, false) {
        assert!(matches!(payloads.first(), Some(Payload::Cp(_))));
        let mut out = Vec::new();
        emit_chain(&payloads, &mut out);
        let again = parse_chain(payload::CP, &out, 0, false).expect("our own chain parses");
        assert_eq!(again, payloads);
    }
});
