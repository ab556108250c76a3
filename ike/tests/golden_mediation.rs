//! Connectivity checks charon 5.9.8 sent to charon in a mediated setup
//! (`tests/data/charon/mediation`, see its README): esprit parses each one, emits it
//! back byte for byte, and verifies its ME_CONNECTAUTH with the sending peer's connect
//! key as charon's server logged it, and with no other key.

use std::fs;
use std::path::PathBuf;

use ike::crypto::mediation::verify;
use ike::wire::mediation::{ConnectId, ConnectKey, ConnectivityCheck, EndpointKind};
use ike::wire::Message;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/charon/mediation")
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn keys() -> (ConnectId, ConnectKey, ConnectKey) {
    let text = fs::read_to_string(dir().join("keys.txt")).unwrap();
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(hex))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    (
        ConnectId::new(&get("connect_id ")).unwrap(),
        ConnectKey::new(&get("key_a ")).unwrap(),
        ConnectKey::new(&get("key_b ")).unwrap(),
    )
}

#[test]
fn charons_checks_parse_round_trip_and_verify() {
    let (cid, key_a, key_b) = keys();
    let mut files: Vec<PathBuf> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".hex"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "a request and a response each way");
    let (mut requests, mut responses) = (0, 0);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = hex(&fs::read_to_string(&f).unwrap());
        let msg = Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ConnectivityCheck::is_check(&msg.header), "{name}");
        let check = ConnectivityCheck::from_message(&msg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(check.connect_id, cid, "{name}");
        assert_eq!(
            check.to_message().to_bytes(),
            bytes,
            "{name}: re-emitted bytes differ"
        );
        // NN-<receiver>-from-<sender>-check-<req|resp>.hex
        let (sender_key, other_key) = if name.contains("-from-a-") {
            (&key_a, &key_b)
        } else {
            (&key_b, &key_a)
        };
        assert!(verify(&check, sender_key), "{name}: authenticator");
        assert!(
            !verify(&check, other_key),
            "{name}: verifies with the wrong key"
        );
        assert_eq!(check.response, name.contains("-resp"), "{name}");
        assert_eq!(check.endpoint.kind, EndpointKind::PeerReflexive, "{name}");
        if check.response {
            // The address the request came from, as the responder saw it.
            assert!(check.endpoint.addr.is_some(), "{name}");
            responses += 1;
        } else {
            assert_eq!(check.endpoint.addr, None, "{name}");
            assert_eq!(
                check.endpoint.priority,
                EndpointKind::PeerReflexive.default_priority()
            );
            requests += 1;
        }
    }
    assert_eq!((requests, responses), (2, 2));
}
