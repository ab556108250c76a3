//! IKE mediation (draft-brunner-ikev2-mediation) decoders fed directly, without the
//! IKE header and message framing `ike_decode` needs first: an ME_ENDPOINT body, and a
//! payload chain (the first byte names its first payload) read as ME_CONNECT contents
//! and, under a connectivity check's header, as a check (esprit's relay records have
//! their own target, `relay_decode`). Nothing panics; what parses re-encodes to the
//! same representation.
#![no_main]

use ike::iana::{exchange, PayloadType};
use ike::wire::mediation::{ConnectivityCheck, Endpoint, MeConnect};
use ike::wire::message::parse_chain;
use ike::wire::{Flags, Header, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Endpoint::parse(data) {
        assert_eq!(e.to_bytes(), data, "endpoints parse only in canonical form");
        assert_eq!(e.buffer_len(), data.len());
        let _ = e.to_notify();
    }
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    let Ok(payloads) = parse_chain(PayloadType(first), chain, 0, false) else {
        return;
    };
    if let Ok(me) = MeConnect::from_payloads(&payloads) {
        let _ = me.peer();
        assert_eq!(MeConnect::from_payloads(&me.to_payloads()), Ok(me));
    }
    for response in [false, true] {
        let header = Header {
            spi_i: 0,
            spi_r: 0,
            next_payload: PayloadType(0),
            version: 0x20,
            exchange: exchange::INFORMATIONAL,
            flags: Flags {
                initiator: !response,
                response,
                version: false,
            },
            message_id: u32::from(first),
            length: 0,
        };
        let msg = Message::new(header, payloads.clone());
        if let Ok(check) = ConnectivityCheck::from_message(&msg) {
            let back = ConnectivityCheck::from_message(&check.to_message());
            assert_eq!(back.as_ref(), Ok(&check));
            let bytes = check.to_message().to_bytes();
            assert_eq!(
                Message::parse(&bytes).map(|m| ConnectivityCheck::from_message(&m)),
                Ok(Ok(check))
            );
        }
    }
});
