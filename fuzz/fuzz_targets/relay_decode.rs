//! esprit's relay records (`ike::wire::relay`), fed directly and inside a payload
//! chain (the first byte names its first payload) the way a mediation SA's
//! INFORMATIONAL handler reads them: ESPRIT_RELAY_REQUEST's connect ID and
//! ESPRIT_RELAY_READY from their notifies, and the bind datagram as a relay port
//! receives it (behind the non-ESP marker, RFC 3948 2.2). Nothing panics; what parses
//! re-encodes to the bytes it came from, and the chain of the relay notifies found
//! re-encodes to a chain that parses back to them.
#![no_main]

use ike::iana::{notify, payload, PayloadType};
use ike::wire::mediation::ConnectId;
use ike::wire::message::{emit_chain, parse_chain};
use ike::wire::relay::{RelayReady, RelayToken, BIND_LEN};
use ike::wire::Payload;
use libfuzzer_sys::fuzz_target;

/// RFC 3948 2.2: what precedes IKE (and esprit's bind datagram) on port 4500.
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// ESPRIT_RELAY_READY data and a bind datagram, each only in its canonical form.
fn records(data: &[u8]) {
    if let Ok(r) = RelayReady::parse(data) {
        assert_eq!(
            r.to_bytes(),
            data,
            "ESPRIT_RELAY_READY parses only canonically"
        );
        assert_eq!(RelayReady::parse(&r.to_bytes()), Ok(r));
    }
    if let Some(t) = RelayToken::from_bind(data) {
        assert_eq!(data.len(), BIND_LEN);
        assert_eq!(t.bind_datagram(), data);
    }
}

fuzz_target!(|data: &[u8]| {
    records(data);
    if let Some(rest) = data.strip_prefix(&NON_ESP_MARKER) {
        records(rest);
    }
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    let Ok(payloads) = parse_chain(PayloadType(first), chain, 0, false) else {
        return;
    };
    let relay: Vec<Payload> = payloads
        .into_iter()
        .filter(|p| {
            let Payload::Notify(n) = p else {
                return false;
            };
            match n.kind {
                notify::ESPRIT_RELAY_REQUEST => {
                    if let Ok(cid) = ConnectId::new(&n.data) {
                        assert_eq!(cid.as_bytes(), &n.data[..]);
                    }
                }
                notify::ESPRIT_RELAY_READY => records(&n.data),
                // Announcement and refusal: their data is never read.
                notify::ESPRIT_RELAY | notify::ESPRIT_RELAY_REFUSED => {}
                _ => return false,
            }
            true
        })
        .collect();
    if relay.is_empty() {
        return;
    }
    let mut out = Vec::new();
    emit_chain(&relay, &mut out);
    let again = parse_chain(payload::NOTIFY, &out, 0, false).expect("our own chain parses");
    assert_eq!(again, relay);
});
