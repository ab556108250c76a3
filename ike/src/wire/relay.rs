//! esprit's relay through a mediation server (private use, esprit to esprit only):
//! the ESPRIT_RELAY_REQUEST and ESPRIT_RELAY_READY notify data, and the bind datagram
//! a peer sends to its relay port so that the server learns the address (behind the
//! peer's NAT) to forward the other peer's datagrams to.
//!
//! ESPRIT_RELAY_REQUEST data is the attempt's ME_CONNECTID data. ESPRIT_RELAY_READY:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Relay Port           |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! ~                    Bind Token (16 bytes)                      ~
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! ~                 Connect ID (4 to 16 bytes)                    ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Port 0 means the server could not open a relay after all. The relay port is on the
//! server's address of the mediation SA.
//!
//! A bind datagram is [`BIND_MAGIC`] followed by the 16-byte token, sent from the
//! peer's NAT-T socket (so after the non-ESP marker, like IKE) to the relay port. The
//! server never forwards it.

use super::mediation::ConnectId;
use super::WireError;

/// Length of a bind token.
pub const TOKEN_LEN: usize = 16;
/// What a bind datagram starts with (after the non-ESP marker).
pub const BIND_MAGIC: [u8; 8] = *b"esprRLY1";
/// Length of a bind datagram (after the non-ESP marker).
pub const BIND_LEN: usize = BIND_MAGIC.len() + TOKEN_LEN;

/// The secret that lets one peer claim its side of a relay.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelayToken(pub [u8; TOKEN_LEN]);

impl std::fmt::Debug for RelayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayToken(..)")
    }
}

impl RelayToken {
    /// The bind datagram for this token (without the non-ESP marker).
    pub fn bind_datagram(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BIND_LEN);
        out.extend_from_slice(&BIND_MAGIC);
        out.extend_from_slice(&self.0);
        out
    }

    /// The token of a bind datagram (without the non-ESP marker), if it is one.
    pub fn from_bind(data: &[u8]) -> Option<RelayToken> {
        if data.len() != BIND_LEN || data[..BIND_MAGIC.len()] != BIND_MAGIC {
            return None;
        }
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&data[BIND_MAGIC.len()..]);
        Some(RelayToken(t))
    }
}

/// ESPRIT_RELAY_READY data: where and with what a peer binds its side of a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayReady {
    /// The relay's UDP port on the server (0: no relay after all).
    pub port: u16,
    /// This peer's bind token.
    pub token: RelayToken,
    /// The attempt relayed.
    pub connect_id: ConnectId,
}

impl RelayReady {
    /// Parses the notify data.
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        if data.len() < 2 + TOKEN_LEN {
            return Err(WireError::Truncated("ESPRIT_RELAY_READY"));
        }
        let port = u16::from_be_bytes([data[0], data[1]]);
        let mut t = [0u8; TOKEN_LEN];
        t.copy_from_slice(&data[2..2 + TOKEN_LEN]);
        let connect_id = ConnectId::new(&data[2 + TOKEN_LEN..])?;
        Ok(RelayReady {
            port,
            token: RelayToken(t),
            connect_id,
        })
    }

    /// The notify data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + TOKEN_LEN + self.connect_id.as_bytes().len());
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.token.0);
        out.extend_from_slice(self.connect_id.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    static READY: [u8; 22] = [
        0x11, 0x94,                                     // port 4500
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // token
        0xde, 0xad, 0xbe, 0xef,                         // connect ID
    ];

    #[test]
    fn ready_round_trips_and_every_truncation_fails() {
        let r = RelayReady::parse(&READY).unwrap();
        assert_eq!(r.port, 4500);
        assert_eq!(r.token.0[15], 16);
        assert_eq!(r.connect_id.as_bytes(), [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(r.to_bytes(), READY);
        for n in 0..READY.len() {
            assert!(RelayReady::parse(&READY[..n]).is_err(), "length {n}");
        }
        // A connect ID longer than charon accepts.
        let mut long = READY.to_vec();
        long.extend_from_slice(&[0; 13]);
        assert!(RelayReady::parse(&long).is_err());
    }

    #[test]
    fn bind_datagrams() {
        let t = RelayToken([7; TOKEN_LEN]);
        let b = t.bind_datagram();
        assert_eq!(b.len(), BIND_LEN);
        assert_eq!(RelayToken::from_bind(&b), Some(t));
        assert_eq!(RelayToken::from_bind(&b[..BIND_LEN - 1]), None);
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert_eq!(RelayToken::from_bind(&bad), None);
        assert_eq!(format!("{t:?}"), "RelayToken(..)");
    }
}
