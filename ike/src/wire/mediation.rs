//! IKE mediation (draft-brunner-ikev2-mediation) as strongSwan's charon puts it on the
//! wire: the ME_ENDPOINT notify data, the ME_CONNECTID/ME_CONNECTKEY/ME_CONNECTAUTH
//! values, the contents of an ME_CONNECT request, and the connectivity check message.
//!
//! ME_ENDPOINT notification data (one address candidate):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Priority                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Family    |      Type     |              Port             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                 IP Address (0, 4 or 16 bytes)                 ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Family 0 carries no address and port 0: a peer asks for its server-reflexive
//! address with one in IKE_AUTH, and a check request carries one (charon's
//! `endpoint_notify_create_from_host(PEER_REFLEXIVE, NULL, NULL)`).
//!
//! A connectivity check is an unencrypted INFORMATIONAL message with both SPIs zero,
//! the I flag on requests and the R flag on responses, the checked pair's number as
//! Message ID, and three notifies in this order: ME_CONNECTID, ME_ENDPOINT,
//! ME_CONNECTAUTH. The authenticator is `SHA-1(Message ID | connect ID | ME_ENDPOINT
//! data | sender's connect key)` (charon's `connect_manager.c` `build_signature`),
//! computed in `crate::crypto::mediation`; [`ConnectivityCheck::signed_data`] gives the
//! bytes it covers.
//!
//! Parsing is strict where charon is strict (`notify_payload.c` checks the lengths of
//! ME_ENDPOINT, ME_CONNECTID and ME_CONNECTKEY) and canonical everywhere else: an
//! endpoint that parses emits back to the same bytes, so a check's authenticator can
//! be verified over re-emitted data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use super::cursor::Reader;
use super::{Flags, Header, Identification, Message, Notify, Payload, WireError};
use crate::iana::{exchange, notify, payload as pt};

/// Lengths of ME_CONNECTID data that charon accepts; it sends 4.
pub const CONNECT_ID_LEN: RangeInclusive<usize> = 4..=16;
/// Lengths of ME_CONNECTKEY data that charon accepts; it sends 16.
pub const CONNECT_KEY_LEN: RangeInclusive<usize> = 16..=32;
/// Length of ME_CONNECTAUTH data: a SHA-1 digest.
pub const CONNECT_AUTH_LEN: usize = 20;
/// Most ME_ENDPOINT notifies accepted in one ME_CONNECT.
pub const MAX_ENDPOINTS: usize = 32;

/// Kind of an address candidate (charon's `me_endpoint_type_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// An address of a local interface.
    Host,
    /// An address a peer saw our check come from.
    PeerReflexive,
    /// An address the mediation server saw our IKE messages come from.
    ServerReflexive,
    /// An address on a relay (defined by the draft, never sent by charon).
    Relayed,
}

impl EndpointKind {
    /// The type byte on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            EndpointKind::Host => 1,
            EndpointKind::PeerReflexive => 2,
            EndpointKind::ServerReflexive => 3,
            EndpointKind::Relayed => 4,
        }
    }

    /// Decodes the type byte; 0 and values above 4 are invalid, as in charon.
    pub fn from_wire(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(EndpointKind::Host),
            2 => Ok(EndpointKind::PeerReflexive),
            3 => Ok(EndpointKind::ServerReflexive),
            4 => Ok(EndpointKind::Relayed),
            _ => Err(WireError::Invalid("ME_ENDPOINT type")),
        }
    }

    /// The priority charon gives a fresh candidate of this kind: its type preference
    /// (host 255, peer-reflexive 128, server-reflexive 64, relayed 0) times 2^16, plus
    /// a local preference of 65535 (`endpoint_notify_create_from_host`; seen on the
    /// wire as 0x0080ffff in charon's check requests).
    pub fn default_priority(self) -> u32 {
        let preference: u32 = match self {
            EndpointKind::Host => 255,
            EndpointKind::PeerReflexive => 128,
            EndpointKind::ServerReflexive => 64,
            EndpointKind::Relayed => 0,
        };
        (preference << 16) + 65535
    }
}

// Address family bytes (charon's `me_endpoint_family_t`).
const FAMILY_NONE: u8 = 0;
const FAMILY_IPV4: u8 = 1;
const FAMILY_IPV6: u8 = 2;

/// ME_ENDPOINT notification data: one address candidate of a mediated peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Priority; pairs are ordered by the priorities of both ends.
    pub priority: u32,
    /// Kind of candidate.
    pub kind: EndpointKind,
    /// Address and port; `None` (family 0) in a request for the server-reflexive
    /// address and in a check request.
    pub addr: Option<SocketAddr>,
}

impl Endpoint {
    /// A candidate with the default priority of its kind.
    pub fn new(kind: EndpointKind, addr: Option<SocketAddr>) -> Self {
        Endpoint {
            priority: kind.default_priority(),
            kind,
            addr,
        }
    }

    /// Decodes ME_ENDPOINT data. Only the three lengths charon accepts (8, 12, 24),
    /// each with its family, and family 0 only with port 0.
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(data);
        let priority = u32::from_be_bytes(r.array::<4>("ME_ENDPOINT")?);
        let family = r.u8("ME_ENDPOINT")?;
        let kind = EndpointKind::from_wire(r.u8("ME_ENDPOINT")?)?;
        let port = r.u16("ME_ENDPOINT")?;
        let addr = match family {
            FAMILY_NONE if port == 0 => None,
            FAMILY_NONE => return Err(WireError::Invalid("ME_ENDPOINT port without address")),
            FAMILY_IPV4 => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(r.array::<4>("ME_ENDPOINT address")?)),
                port,
            )),
            FAMILY_IPV6 => Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(r.array::<16>("ME_ENDPOINT address")?)),
                port,
            )),
            _ => return Err(WireError::Invalid("ME_ENDPOINT family")),
        };
        if !r.is_empty() {
            return Err(WireError::BadLength("ME_ENDPOINT"));
        }
        Ok(Endpoint {
            priority,
            kind,
            addr,
        })
    }

    /// Length of the data.
    pub fn buffer_len(&self) -> usize {
        8 + match self.addr {
            None => 0,
            Some(SocketAddr::V4(_)) => 4,
            Some(SocketAddr::V6(_)) => 16,
        }
    }

    /// Appends the data.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.priority.to_be_bytes());
        let family = match self.addr {
            None => FAMILY_NONE,
            Some(SocketAddr::V4(_)) => FAMILY_IPV4,
            Some(SocketAddr::V6(_)) => FAMILY_IPV6,
        };
        out.push(family);
        out.push(self.kind.to_wire());
        out.extend_from_slice(&self.addr.map_or(0, |a| a.port()).to_be_bytes());
        match self.addr.map(|a| a.ip()) {
            None => {}
            Some(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Some(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
        }
    }

    /// The data as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }

    /// The ME_ENDPOINT notify carrying this candidate.
    pub fn to_notify(&self) -> Notify {
        Notify::new(notify::ME_ENDPOINT, self.to_bytes())
    }
}

/// ME_CONNECTID data: names one mediated connection attempt, chosen by the peer that
/// asks for the connection and kept by everyone that relays or answers it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectId(Vec<u8>);

impl ConnectId {
    /// Wraps an ID of an accepted length ([`CONNECT_ID_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, WireError> {
        if !CONNECT_ID_LEN.contains(&bytes.len()) {
            return Err(WireError::BadLength("ME_CONNECTID"));
        }
        Ok(ConnectId(bytes.to_vec()))
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// ME_CONNECTKEY data: the key one peer authenticates its connectivity checks with.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectKey(Vec<u8>);

impl ConnectKey {
    /// Wraps a key of an accepted length ([`CONNECT_KEY_LEN`]).
    pub fn new(bytes: &[u8]) -> Result<Self, WireError> {
        if !CONNECT_KEY_LEN.contains(&bytes.len()) {
            return Err(WireError::BadLength("ME_CONNECTKEY"));
        }
        Ok(ConnectKey(bytes.to_vec()))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ConnectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectKey({} bytes)", self.0.len())
    }
}

/// What an ME_CONNECT request carries. The peer that wants a connection sends a
/// `Connect` to the server (`callback` set by charon); the server relays it to the
/// requested peer with `peer` rewritten to the requester; the requested peer answers
/// with its own `Connect` marked `response`, which the server relays back. A
/// `Callback` tells a peer that the identity it asked for earlier is now registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeConnect {
    /// A connection attempt, or the answer to one.
    Connect {
        /// ID_PEER: the identity asked for, or in a relayed request the requester.
        peer: Identification,
        /// ME_CONNECTID.
        connect_id: ConnectId,
        /// ME_CONNECTKEY: the sender's check key (a relay keeps the original).
        connect_key: ConnectKey,
        /// ME_ENDPOINT candidates of the peer that made the attempt or answer.
        endpoints: Vec<Endpoint>,
        /// ME_RESPONSE: this answers an attempt.
        response: bool,
        /// ME_CALLBACK: call me back when `peer` registers, if it has not yet.
        callback: bool,
    },
    /// A server's callback: `peer` has registered since it was asked for.
    Callback {
        /// ID_PEER: the identity that registered.
        peer: Identification,
    },
}

impl MeConnect {
    /// Reads an ME_CONNECT request from the payloads of its SK payload. A request
    /// without ID_PEER, or a connect without ID, key or any endpoint, is INVALID_SYNTAX
    /// (charon's `process_r`), and so is an endpoint that does not parse.
    pub fn from_payloads(payloads: &[Payload]) -> Result<Self, WireError> {
        let mut peer = None;
        let mut connect_id = None;
        let mut connect_key = None;
        let mut endpoints = Vec::new();
        let (mut response, mut callback) = (false, false);
        for p in payloads {
            match p {
                Payload::IdPeer(id) => peer = Some(id.clone()),
                Payload::Notify(n) => match n.kind {
                    notify::ME_CONNECTID => connect_id = Some(ConnectId::new(&n.data)?),
                    notify::ME_CONNECTKEY => connect_key = Some(ConnectKey::new(&n.data)?),
                    notify::ME_ENDPOINT => {
                        if endpoints.len() >= MAX_ENDPOINTS {
                            return Err(WireError::TooMany("ME_ENDPOINT notifies"));
                        }
                        endpoints.push(Endpoint::parse(&n.data)?);
                    }
                    notify::ME_RESPONSE => response = true,
                    notify::ME_CALLBACK => callback = true,
                    _ => {}
                },
                _ => {}
            }
        }
        let peer = peer.ok_or(WireError::Invalid("ME_CONNECT without ID_PEER"))?;
        // A callback carries nothing but ID_PEER and ME_CALLBACK (charon's build_i_ms).
        if callback && connect_id.is_none() && connect_key.is_none() && endpoints.is_empty() {
            return Ok(MeConnect::Callback { peer });
        }
        let connect_id = connect_id.ok_or(WireError::Invalid("ME_CONNECT without ME_CONNECTID"))?;
        let connect_key =
            connect_key.ok_or(WireError::Invalid("ME_CONNECT without ME_CONNECTKEY"))?;
        if endpoints.is_empty() {
            return Err(WireError::Invalid("ME_CONNECT without ME_ENDPOINT"));
        }
        Ok(MeConnect::Connect {
            peer,
            connect_id,
            connect_key,
            endpoints,
            response,
            callback,
        })
    }

    /// The payloads of the request, in charon's order: notifies (ME_RESPONSE, ID, key,
    /// ME_CALLBACK, endpoints), then ID_PEER (`message.c`'s `me_connect_i_order`).
    pub fn to_payloads(&self) -> Vec<Payload> {
        let mut out = Vec::new();
        let peer = match self {
            MeConnect::Connect {
                peer,
                connect_id,
                connect_key,
                endpoints,
                response,
                callback,
            } => {
                if *response {
                    out.push(flag(notify::ME_RESPONSE));
                }
                out.push(Payload::Notify(Notify::new(
                    notify::ME_CONNECTID,
                    connect_id.as_bytes().to_vec(),
                )));
                out.push(Payload::Notify(Notify::new(
                    notify::ME_CONNECTKEY,
                    connect_key.as_bytes().to_vec(),
                )));
                if *callback {
                    out.push(flag(notify::ME_CALLBACK));
                }
                out.extend(endpoints.iter().map(|e| Payload::Notify(e.to_notify())));
                peer
            }
            MeConnect::Callback { peer } => {
                out.push(flag(notify::ME_CALLBACK));
                peer
            }
        };
        out.push(Payload::IdPeer(peer.clone()));
        out
    }

    /// The identity in ID_PEER.
    pub fn peer(&self) -> &Identification {
        match self {
            MeConnect::Connect { peer, .. } | MeConnect::Callback { peer } => peer,
        }
    }
}

fn flag(kind: crate::iana::NotifyType) -> Payload {
    Payload::Notify(Notify::new(kind, Vec::new()))
}

/// A connectivity check, request or response (charon's `connect_manager.c`
/// `send_check`): sent outside any IKE SA, straight from one candidate to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectivityCheck {
    /// The number of the checked pair; a response echoes the request's.
    pub message_id: u32,
    /// A response (R flag) rather than a request (I flag).
    pub response: bool,
    /// ME_CONNECTID of the mediated connection.
    pub connect_id: ConnectId,
    /// ME_ENDPOINT: empty (family 0, peer-reflexive) in a request; in a response the
    /// address the request came from, as the responder saw it.
    pub endpoint: Endpoint,
    /// ME_CONNECTAUTH: SHA-1 over [`ConnectivityCheck::signed_data`] with the
    /// sender's connect key.
    pub auth: [u8; CONNECT_AUTH_LEN],
}

impl ConnectivityCheck {
    /// The bytes the authenticator covers: Message ID, connect ID, ME_ENDPOINT data
    /// and the sender's connect key.
    pub fn signed_data(
        message_id: u32,
        connect_id: &ConnectId,
        endpoint: &Endpoint,
        key: &ConnectKey,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + connect_id.as_bytes().len() + endpoint.buffer_len() + key.as_bytes().len(),
        );
        out.extend_from_slice(&message_id.to_be_bytes());
        out.extend_from_slice(connect_id.as_bytes());
        endpoint.emit(&mut out);
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// True if `msg` looks like a check (unencrypted INFORMATIONAL with zero SPIs), so
    /// it goes to the check state rather than to an IKE SA (charon's
    /// `process_message_job`).
    pub fn is_check(header: &Header) -> bool {
        header.exchange == exchange::INFORMATIONAL
            && header.spi_i == 0
            && header.spi_r == 0
            && header.next_payload != pt::SK
    }

    /// Reads a check from a parsed message. Other payloads are ignored, as charon does;
    /// a missing or repeated ME_CONNECTID, ME_ENDPOINT or ME_CONNECTAUTH fails.
    pub fn from_message(msg: &Message) -> Result<Self, WireError> {
        if !Self::is_check(&msg.header) {
            return Err(WireError::Invalid("connectivity check header"));
        }
        if msg.header.flags.response == msg.header.flags.initiator {
            return Err(WireError::Invalid("connectivity check flags"));
        }
        let one = |kind| {
            let mut it = msg.notifies(kind);
            match (it.next(), it.next()) {
                (Some(n), None) => Ok(n),
                (None, _) => Err(WireError::Invalid("connectivity check notify missing")),
                (Some(_), Some(_)) => Err(WireError::Invalid("connectivity check notify twice")),
            }
        };
        let connect_id = ConnectId::new(&one(notify::ME_CONNECTID)?.data)?;
        let endpoint = Endpoint::parse(&one(notify::ME_ENDPOINT)?.data)?;
        let auth = one(notify::ME_CONNECTAUTH)?
            .data
            .as_slice()
            .try_into()
            .map_err(|_| WireError::BadLength("ME_CONNECTAUTH"))?;
        Ok(ConnectivityCheck {
            message_id: msg.header.message_id,
            response: msg.header.flags.response,
            connect_id,
            endpoint,
            auth,
        })
    }

    /// The check as a message: zero SPIs, the I flag on a request, the R flag on a
    /// response (charon builds it with an IKE SA ID whose initiator bit is `request`).
    pub fn to_message(&self) -> Message {
        let flags = Flags {
            initiator: !self.response,
            response: self.response,
            version: false,
        };
        let header = Header::new(0, 0, exchange::INFORMATIONAL, flags, self.message_id);
        Message::new(
            header,
            vec![
                Payload::Notify(Notify::new(
                    notify::ME_CONNECTID,
                    self.connect_id.as_bytes().to_vec(),
                )),
                Payload::Notify(self.endpoint.to_notify()),
                Payload::Notify(Notify::new(notify::ME_CONNECTAUTH, self.auth.to_vec())),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::id;

    // A check request as charon's send_check builds it: pair 1, connect ID de ad be ef,
    // an empty peer-reflexive endpoint, authenticated with key 01..10. The digest was
    // computed apart from this code (Python's hashlib).
    #[rustfmt::skip]
    static CHECK_REQUEST: [u8; 84] = [
        0, 0, 0, 0, 0, 0, 0, 0, // SPIi 0
        0, 0, 0, 0, 0, 0, 0, 0, // SPIr 0
        41, 0x20, 37, 0x08, // Notify first, IKEv2, INFORMATIONAL, I flag
        0, 0, 0, 1, // Message ID 1 (the pair's number)
        0, 0, 0, 84, // length
        41, 0, 0, 12, 0, 0, 0xa0, 0x05, 0xde, 0xad, 0xbe, 0xef, // ME_CONNECTID
        41, 0, 0, 16, 0, 0, 0xa0, 0x03, // ME_ENDPOINT
        0, 0x80, 0xff, 0xff, 0, 2, 0, 0, // priority (128 << 16) + 65535, no family,
                                         // PEER_REFLEXIVE, port 0
        0, 0, 0, 28, 0, 0, 0xa0, 0x07, // ME_CONNECTAUTH
        0xdc, 0xee, 0xde, 0xf4, 0xdc, 0x85, 0xe9, 0x34, 0xe6, 0xea,
        0xd2, 0x3c, 0xa5, 0x13, 0x09, 0x61, 0x8f, 0x7c, 0x5f, 0x85,
    ];

    // A server-reflexive IPv4 candidate 198.51.100.7:4500.
    #[rustfmt::skip]
    static ENDPOINT_V4: [u8; 12] = [
        0, 0x40, 0xff, 0xff, // priority (64 << 16) + 65535
        1, 3, 0x11, 0x94, // IPv4, SERVER_REFLEXIVE, port 4500
        198, 51, 100, 7,
    ];

    // A host IPv6 candidate [2001:db8::1]:4500.
    #[rustfmt::skip]
    static ENDPOINT_V6: [u8; 24] = [
        0, 0xff, 0xff, 0xff, // priority (255 << 16) + 65535
        2, 1, 0x11, 0x94, // IPv6, HOST, port 4500
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];

    fn cid() -> ConnectId {
        ConnectId::new(&[0xde, 0xad, 0xbe, 0xef]).unwrap()
    }

    fn key() -> ConnectKey {
        ConnectKey::new(&(1..=16).collect::<Vec<u8>>()).unwrap()
    }

    #[test]
    fn endpoint_golden_at_every_length() {
        let v4 = Endpoint::new(
            EndpointKind::ServerReflexive,
            Some("198.51.100.7:4500".parse().unwrap()),
        );
        let v6 = Endpoint::new(
            EndpointKind::Host,
            Some("[2001:db8::1]:4500".parse().unwrap()),
        );
        for (e, bytes) in [(v4, &ENDPOINT_V4[..]), (v6, &ENDPOINT_V6[..])] {
            assert_eq!(Endpoint::parse(bytes), Ok(e));
            assert_eq!(e.to_bytes(), bytes);
            assert_eq!(e.buffer_len(), bytes.len());
            for n in 0..bytes.len() {
                assert!(Endpoint::parse(&bytes[..n]).is_err(), "length {n}");
            }
        }
        let empty = Endpoint::new(EndpointKind::PeerReflexive, None);
        assert_eq!(empty.to_bytes(), CHECK_REQUEST[48..56]);
        assert_eq!(Endpoint::parse(&CHECK_REQUEST[48..56]), Ok(empty));
    }

    #[test]
    fn endpoint_rejects_what_charon_rejects_or_cannot_round_trip() {
        let mut bad = ENDPOINT_V4;
        bad[5] = 0;
        assert_eq!(
            Endpoint::parse(&bad),
            Err(WireError::Invalid("ME_ENDPOINT type"))
        );
        bad[5] = 5;
        assert!(Endpoint::parse(&bad).is_err());
        let mut bad = ENDPOINT_V4;
        bad[4] = 3;
        assert_eq!(
            Endpoint::parse(&bad),
            Err(WireError::Invalid("ME_ENDPOINT family"))
        );
        // Trailing bytes: charon would ignore them, but the authenticator covers the
        // data as sent, so only the canonical form is accepted.
        let mut long = ENDPOINT_V4.to_vec();
        long.push(0);
        assert_eq!(
            Endpoint::parse(&long),
            Err(WireError::BadLength("ME_ENDPOINT"))
        );
        let no_family_with_port = [0, 0x80, 0, 0, 0, 2, 0x11, 0x94];
        assert!(Endpoint::parse(&no_family_with_port).is_err());
    }

    #[test]
    fn default_priorities_are_charons() {
        assert_eq!(EndpointKind::Host.default_priority(), 255 * 65536 + 65535);
        assert_eq!(EndpointKind::PeerReflexive.default_priority(), 0x0080_ffff);
        assert_eq!(
            EndpointKind::ServerReflexive.default_priority(),
            64 * 65536 + 65535
        );
        assert_eq!(EndpointKind::Relayed.default_priority(), 65535);
    }

    #[test]
    fn id_and_key_lengths() {
        assert!(ConnectId::new(&[0; 3]).is_err());
        assert!(ConnectId::new(&[0; 4]).is_ok());
        assert!(ConnectId::new(&[0; 16]).is_ok());
        assert!(ConnectId::new(&[0; 17]).is_err());
        assert!(ConnectKey::new(&[0; 15]).is_err());
        assert!(ConnectKey::new(&[0; 16]).is_ok());
        assert!(ConnectKey::new(&[0; 32]).is_ok());
        assert!(ConnectKey::new(&[0; 33]).is_err());
        assert_eq!(format!("{:?}", key()), "ConnectKey(16 bytes)");
    }

    #[test]
    fn check_request_golden() {
        let msg = Message::parse(&CHECK_REQUEST).unwrap();
        assert!(ConnectivityCheck::is_check(&msg.header));
        let check = ConnectivityCheck::from_message(&msg).unwrap();
        assert_eq!(check.message_id, 1);
        assert!(!check.response);
        assert_eq!(check.connect_id, cid());
        assert_eq!(
            check.endpoint,
            Endpoint::new(EndpointKind::PeerReflexive, None)
        );
        assert_eq!(check.to_message().to_bytes(), CHECK_REQUEST);
        let signed = ConnectivityCheck::signed_data(1, &cid(), &check.endpoint, &key());
        assert_eq!(&signed[..4], &[0, 0, 0, 1]);
        assert_eq!(&signed[4..8], cid().as_bytes());
        assert_eq!(&signed[8..16], &CHECK_REQUEST[48..56]);
        assert_eq!(&signed[16..], key().as_bytes());
        for n in 0..CHECK_REQUEST.len() {
            let parsed = Message::parse(&CHECK_REQUEST[..n]);
            assert!(
                parsed.is_err() || ConnectivityCheck::from_message(&parsed.unwrap()).is_err(),
                "length {n}"
            );
        }
    }

    #[test]
    fn check_response_round_trip_and_flags() {
        let response = ConnectivityCheck {
            message_id: 3,
            response: true,
            connect_id: cid(),
            endpoint: Endpoint::parse(&ENDPOINT_V4).unwrap(),
            auth: [7; CONNECT_AUTH_LEN],
        };
        let msg = response.to_message();
        assert!(msg.header.flags.response);
        assert!(!msg.header.flags.initiator);
        let bytes = msg.to_bytes();
        let back = ConnectivityCheck::from_message(&Message::parse(&bytes).unwrap());
        assert_eq!(back, Ok(response.clone()));

        let mut both = msg.clone();
        both.header.flags.initiator = true;
        assert!(ConnectivityCheck::from_message(&both).is_err());
        let mut twice = msg.clone();
        twice.payloads.push(twice.payloads[0].clone());
        assert!(ConnectivityCheck::from_message(&twice).is_err());
        let mut keyed = msg.clone();
        keyed.header.spi_i = 1;
        assert!(!ConnectivityCheck::is_check(&keyed.header));
        let mut short_auth = msg;
        short_auth.payloads[2] = Payload::Notify(Notify::new(notify::ME_CONNECTAUTH, vec![0; 19]));
        assert_eq!(
            ConnectivityCheck::from_message(&short_auth),
            Err(WireError::BadLength("ME_CONNECTAUTH"))
        );
    }

    fn dn(name: &[u8]) -> Identification {
        Identification {
            id_type: id::FQDN,
            data: name.to_vec(),
        }
    }

    #[test]
    fn me_connect_request_in_charons_order() {
        let req = MeConnect::Connect {
            peer: dn(b"edge2"),
            connect_id: cid(),
            connect_key: key(),
            endpoints: vec![
                Endpoint::parse(&ENDPOINT_V6).unwrap(),
                Endpoint::parse(&ENDPOINT_V4).unwrap(),
            ],
            response: false,
            callback: true,
        };
        let payloads = req.to_payloads();
        let kinds: Vec<_> = payloads
            .iter()
            .map(|p| match p {
                Payload::Notify(n) => n.kind.to_string(),
                other => other.kind().to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ME_CONNECTID",
                "ME_CONNECTKEY",
                "ME_CALLBACK",
                "ME_ENDPOINT",
                "ME_ENDPOINT",
                "ID_PEER"
            ]
        );
        assert_eq!(MeConnect::from_payloads(&payloads), Ok(req.clone()));
        assert_eq!(req.peer(), &dn(b"edge2"));

        // Through the whole payload chain, ID_PEER's body included.
        let mut chain = Vec::new();
        super::super::message::emit_chain(&payloads, &mut chain);
        let first = payloads[0].kind();
        let back = super::super::message::parse_chain(first, &chain, 0, false).unwrap();
        assert_eq!(MeConnect::from_payloads(&back), Ok(req));
    }

    #[test]
    fn me_connect_relayed_response_and_callback() {
        let resp = MeConnect::Connect {
            peer: dn(b"edge1"),
            connect_id: cid(),
            connect_key: key(),
            endpoints: vec![Endpoint::parse(&ENDPOINT_V4).unwrap()],
            response: true,
            callback: false,
        };
        let payloads = resp.to_payloads();
        assert!(matches!(&payloads[0], Payload::Notify(n) if n.kind == notify::ME_RESPONSE));
        assert_eq!(MeConnect::from_payloads(&payloads), Ok(resp));

        let cb = MeConnect::Callback { peer: dn(b"edge2") };
        let payloads = cb.to_payloads();
        assert_eq!(payloads.len(), 2);
        assert_eq!(MeConnect::from_payloads(&payloads), Ok(cb));
    }

    #[test]
    fn me_connect_invalid_syntax() {
        let full = MeConnect::Connect {
            peer: dn(b"edge2"),
            connect_id: cid(),
            connect_key: key(),
            endpoints: vec![Endpoint::parse(&ENDPOINT_V4).unwrap()],
            response: false,
            callback: false,
        }
        .to_payloads();
        // Each required part missing in turn: ID, key, endpoint, ID_PEER.
        for missing in 0..full.len() {
            let mut p = full.clone();
            p.remove(missing);
            assert!(MeConnect::from_payloads(&p).is_err(), "without {missing}");
        }
        let mut bad_key = full.clone();
        bad_key[1] = Payload::Notify(Notify::new(notify::ME_CONNECTKEY, vec![0; 8]));
        assert_eq!(
            MeConnect::from_payloads(&bad_key),
            Err(WireError::BadLength("ME_CONNECTKEY"))
        );
        let mut many = full.clone();
        let ep = full[2].clone();
        many.extend(std::iter::repeat_n(ep, MAX_ENDPOINTS));
        assert_eq!(
            MeConnect::from_payloads(&many),
            Err(WireError::TooMany("ME_ENDPOINT notifies"))
        );
    }

    #[test]
    fn id_peer_payload_golden() {
        // ID_PEER (128) carrying FQDN "edge2", as the last payload of a chain.
        let bytes = [0, 0, 0, 13, 2, 0, 0, 0, b'e', b'd', b'g', b'e', b'2'];
        let chain = super::super::message::parse_chain(pt::ID_PEER, &bytes, 0, false).unwrap();
        assert_eq!(chain, vec![Payload::IdPeer(dn(b"edge2"))]);
        let mut out = Vec::new();
        super::super::message::emit_chain(&chain, &mut out);
        assert_eq!(out, bytes);
        for n in 0..bytes.len() {
            assert!(
                super::super::message::parse_chain(pt::ID_PEER, &bytes[..n], 0, false).is_err()
            );
        }
    }
}
