//! esprit's relay through the mediation server (private use, esprit to esprit): when
//! the connectivity checks find no path within [`RELAY_AFTER`](super::checks::RELAY_AFTER)
//! (both NATs symmetric), each peer asks its server with an INFORMATIONAL carrying
//! ESPRIT_RELAY_REQUEST; once both asked, the server's engine opens a relay port and
//! the server tells each peer with ESPRIT_RELAY_READY (port and bind token). Each peer
//! then sends a bind datagram to the relay from its NAT-T socket, and the initiator
//! starts the direct IKE SA to the relay address. Only peers that announced
//! ESPRIT_RELAY in the mediation SA's IKE_AUTH ever see these notifies.

use std::net::SocketAddr;

use super::event::{Event, MediationFailure};
use super::ike_sa::{IkeSa, Pending, Task};
use super::mediation::RelayAsk;
use super::payloads::{error_notify, find_notify, notify_payload};
use super::{Ctx, SaEffect, Transmit};
use crate::iana::{exchange, notify};
use crate::wire::mediation::ConnectId;
use crate::wire::relay::{RelayReady, RelayToken, TOKEN_LEN};
use crate::wire::{Header, Payload};

/// Copies of each bind datagram (they are tiny; one lost would stall the relay until
/// the next retransmission of the IKE_SA_INIT).
const BIND_COPIES: usize = 2;

impl IkeSa {
    /// Peer: queues the relay request for attempt `cid` (only when the server
    /// announced ESPRIT_RELAY).
    pub(crate) fn queue_relay_request(&mut self, ctx: &mut Ctx<'_>, cid: ConnectId) {
        if self.me.as_ref().is_some_and(|m| m.relay) {
            self.queue(ctx, Task::RelayRequest(cid));
        }
    }

    /// Server: queues ESPRIT_RELAY_READY for this SA's peer.
    pub(crate) fn queue_relay_ready(&mut self, ctx: &mut Ctx<'_>, ready: RelayReady) {
        self.queue(ctx, Task::RelayReady(Box::new(ready)));
    }

    pub(crate) fn start_relay_request(&mut self, ctx: &mut Ctx<'_>, cid: ConnectId) {
        let n = notify_payload(notify::ESPRIT_RELAY_REQUEST, cid.as_bytes().to_vec());
        self.send_request(
            ctx,
            exchange::INFORMATIONAL,
            vec![n],
            Pending::RelayRequest(cid),
        );
    }

    pub(crate) fn start_relay_ready(&mut self, ctx: &mut Ctx<'_>, ready: RelayReady) {
        let n = notify_payload(notify::ESPRIT_RELAY_READY, ready.to_bytes());
        self.send_request(ctx, exchange::INFORMATIONAL, vec![n], Pending::RelayReady);
    }

    /// Peer: the server refused to relay `cid`: the initiator's attempt ends with a
    /// clear reason (a charon peer never asks, so waiting longer would not help).
    pub(crate) fn relay_request_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        cid: ConnectId,
        payloads: Vec<Payload>,
    ) {
        if error_notify(&payloads).is_some() {
            fail_attempt(ctx, &cid);
        }
    }

    /// An INFORMATIONAL request on a mediation SA: handles ESPRIT_RELAY_REQUEST (server)
    /// or ESPRIT_RELAY_READY (peer) and answers it. False when it carries neither.
    pub(crate) fn respond_relay(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        from: SocketAddr,
        payloads: &[Payload],
    ) -> bool {
        let relay = self.me.as_ref().is_some_and(|m| m.relay);
        if let Some(n) = find_notify(payloads, notify::ESPRIT_RELAY_REQUEST) {
            let registered = self.me.as_ref().is_some_and(|m| m.registered.is_some());
            let out = match ConnectId::new(&n.data) {
                Ok(cid) if relay && registered => self.relay_asked(ctx, cid),
                _ => vec![notify_payload(notify::ESPRIT_RELAY_REFUSED, Vec::new())],
            };
            self.send_response(ctx, exchange::INFORMATIONAL, h.message_id, out, from);
            return true;
        }
        if let Some(n) = find_notify(payloads, notify::ESPRIT_RELAY_READY) {
            self.send_response(ctx, exchange::INFORMATIONAL, h.message_id, Vec::new(), from);
            match RelayReady::parse(&n.data) {
                Ok(ready) if relay => self.relay_ready(ctx, ready),
                _ => ctx.stats.unexpected += 1,
            }
            return true;
        }
        false
    }

    /// Server: notes the request; the second of the pair makes the engine open a relay.
    fn relay_asked(&mut self, ctx: &mut Ctx<'_>, cid: ConnectId) -> Vec<Payload> {
        let mut t = [[0u8; TOKEN_LEN]; 2];
        ctx.rng.fill(&mut t[0]);
        ctx.rng.fill(&mut t[1]);
        let tokens = [RelayToken(t[0]), RelayToken(t[1])];
        match ctx.mediation.ask_relay(&cid, self.id, tokens) {
            RelayAsk::Refuse => vec![notify_payload(notify::ESPRIT_RELAY_REFUSED, Vec::new())],
            RelayAsk::Waiting => Vec::new(),
            RelayAsk::Both => {
                if let Some((tokens, ids)) = ctx.mediation.session_tokens(&cid) {
                    let [a, b] = ids.map(|i| super::me_connect::identity_string(&i));
                    ctx.events.push_back(Event::RelayWanted {
                        connect_id: cid,
                        local: self.local.ip(),
                        peers: [a, b],
                        tokens,
                    });
                }
                Vec::new()
            }
        }
    }

    /// Peer: the relay for one of our attempts is open: bind our side and let the
    /// endpoint start (initiator) or expect (responder) the direct IKE SA through it.
    fn relay_ready(&mut self, ctx: &mut Ctx<'_>, ready: RelayReady) {
        let Some(list) = ctx.mediation.checklists.get(&ready.connect_id) else {
            return; // the checks succeeded after all, or the attempt is over
        };
        if list.via != Some(self.id) {
            return;
        }
        if ready.port == 0 {
            fail_attempt(ctx, &ready.connect_id);
            return;
        }
        let relay = SocketAddr::new(self.remote.ip(), ready.port);
        let local = self.local;
        for _ in 0..BIND_COPIES {
            ctx.transmits.push_back(Transmit {
                local,
                remote: relay,
                data: ready.token.bind_datagram(),
            });
        }
        ctx.effects.push(SaEffect::Relayed {
            connect_id: ready.connect_id,
            local,
            relay,
            token: ready.token,
        });
    }
}

impl IkeSa {
    /// Initiator of a relayed mediated IKE SA: a re-check found the pair `local` -
    /// `remote`: the SA and its children move there (the engine's NAT-rebinding path,
    /// [`Event::PeerAddressChanged`]), and a liveness check sent on the pair moves the
    /// peer's side too (RFC 7296 2.23: it follows authenticated messages).
    pub(crate) fn move_direct(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr) {
        if !self.is_established() {
            return;
        }
        let Some(conn) = self.conn.and_then(|c| ctx.connections.get(c)) else {
            return;
        };
        let conn = conn.name.clone();
        self.local = local;
        self.remote = remote;
        ctx.events.push_back(Event::PeerAddressChanged {
            ike: self.id,
            remote,
        });
        ctx.events.push_back(Event::MediatedPath {
            conn,
            ike: self.id,
            local,
            remote,
            relayed: false,
        });
        self.queue(ctx, Task::Dpd);
    }
}

/// Ends the initiator's attempt `cid` with [`MediationFailure::RelayRefused`]; a
/// responder's checklist runs on until it expires.
fn fail_attempt(ctx: &mut Ctx<'_>, cid: &ConnectId) {
    let initiator = ctx
        .mediation
        .checklists
        .get(cid)
        .is_some_and(|l| l.initiator);
    if !initiator {
        return;
    }
    let Some(list) = ctx.mediation.checklists.remove(cid) else {
        return;
    };
    let conn = list
        .conn
        .and_then(|(ci, _)| ctx.connections.get(ci))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    ctx.events.push_back(Event::MediationFailed {
        conn,
        peer: super::me_connect::identity_string(&list.peer),
        reason: MediationFailure::RelayRefused,
    });
}
