//! The authenticator of a mediation connectivity check (ME_CONNECTAUTH): SHA-1 over the
//! Message ID, the connect ID, the ME_ENDPOINT data and the sending peer's connect key,
//! as strongSwan's `connect_manager.c` computes it. SHA-1 is what charon checks, so it
//! is what interoperates; the key is fresh per connection attempt.

use ring::digest;

use crate::wire::mediation::{
    ConnectId, ConnectKey, ConnectivityCheck, Endpoint, CONNECT_AUTH_LEN,
};

/// The ME_CONNECTAUTH value of a check with these fields, sent by the holder of `key`.
pub fn connect_auth(
    message_id: u32,
    connect_id: &ConnectId,
    endpoint: &Endpoint,
    key: &ConnectKey,
) -> [u8; CONNECT_AUTH_LEN] {
    let signed = ConnectivityCheck::signed_data(message_id, connect_id, endpoint, key);
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &signed);
    let mut out = [0; CONNECT_AUTH_LEN];
    out.copy_from_slice(hash.as_ref());
    out
}

/// True if `check` carries the authenticator of the peer holding `key`; compared in
/// constant time.
pub fn verify(check: &ConnectivityCheck, key: &ConnectKey) -> bool {
    use subtle::ConstantTimeEq;
    let expected = connect_auth(check.message_id, &check.connect_id, &check.endpoint, key);
    bool::from(expected.ct_eq(&check.auth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mediation::EndpointKind;
    use crate::wire::Message;

    // Digests computed apart from this code (Python's hashlib) over the fields below.
    const REQUEST_AUTH: &str = "dceedef4dc85e934e6ead23ca51309618f7c5f85";
    const RESPONSE_AUTH: &str = "adceac1d2df57270a340ae83d157a8d33979d1d4";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn request_and_response_authenticators() {
        let cid = ConnectId::new(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
        let key_i = ConnectKey::new(&(1..=16).collect::<Vec<u8>>()).unwrap();
        let key_r = ConnectKey::new(&(0x11..=0x20).collect::<Vec<u8>>()).unwrap();
        let empty = Endpoint::new(EndpointKind::PeerReflexive, None);
        assert_eq!(hex(&connect_auth(1, &cid, &empty, &key_i)), REQUEST_AUTH);

        let seen = Endpoint::new(
            EndpointKind::PeerReflexive,
            Some("198.51.100.7:4500".parse().unwrap()),
        );
        let auth = connect_auth(1, &cid, &seen, &key_r);
        assert_eq!(hex(&auth), RESPONSE_AUTH);

        let check = ConnectivityCheck {
            message_id: 1,
            response: true,
            connect_id: cid,
            endpoint: seen,
            auth,
        };
        // Through the wire and back, then verified with the sender's key only.
        let back = ConnectivityCheck::from_message(
            &Message::parse(&check.to_message().to_bytes()).unwrap(),
        )
        .unwrap();
        assert!(verify(&back, &key_r));
        assert!(!verify(&back, &key_i));
        let mut other_mid = back;
        other_mid.message_id = 2;
        assert!(!verify(&other_mid, &key_r));
    }
}
