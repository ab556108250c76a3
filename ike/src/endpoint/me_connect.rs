//! IKE mediation on a mediation IKE SA (draft-brunner-ikev2-mediation 4, as charon's
//! `ike_me.c` does it): ME_MEDIATION in IKE_SA_INIT, the server-reflexive ME_ENDPOINT in
//! IKE_AUTH, registration at the server, and the ME_CONNECT exchange in its roles: a
//! peer asking for another, the server relaying (or answering ME_CONNECT_FAILED), the
//! asked peer answering with ME_RESPONSE.

use std::net::SocketAddr;

use super::checks::{Checklist, RELAY_AFTER};
use super::error::PeerMisbehaved;
use super::event::{DownReason, Event, MediationFailure};
use super::ike_sa::{IkeSa, Pending, Task};
use super::mediation::MeConnectRequest;
use super::payloads::{error_notify, find_notify, notify_payload};
use super::{Ctx, SaEffect};
use crate::config::{Connection, Mediation};
use crate::iana::{exchange, notify};
use crate::wire::mediation::{ConnectId, ConnectKey, Endpoint, EndpointKind, MeConnect};
use crate::wire::{Header, Identification, Payload};

/// Length of the connect IDs and keys we make (what charon makes).
const CONNECT_ID_LEN: usize = 4;
const CONNECT_KEY_LEN: usize = 16;

/// The ME_ENDPOINT notifies in `payloads`, in order; ones that do not parse are
/// skipped, as charon skips them.
fn endpoints(payloads: &[Payload]) -> impl Iterator<Item = Endpoint> + '_ {
    payloads.iter().filter_map(|p| match p {
        Payload::Notify(n) if n.kind == notify::ME_ENDPOINT => Endpoint::parse(&n.data).ok(),
        _ => None,
    })
}

impl IkeSa {
    /// Initiator, IKE_SA_INIT request: a mediation connection announces ME_MEDIATION.
    pub(crate) fn me_init_request(&self, conn: &Connection) -> Option<Payload> {
        (conn.mediation == Mediation::Mediation)
            .then(|| notify_payload(notify::ME_MEDIATION, Vec::new()))
    }

    /// Initiator, IKE_SA_INIT response: a mediation server must echo ME_MEDIATION;
    /// the SA then uses the NAT-T port even without a NAT, as charon does
    /// (`float_ports`), so the server-reflexive address is the one checks use. False
    /// when the SA died.
    pub(crate) fn me_init_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        local: SocketAddr,
        payloads: &[Payload],
    ) -> bool {
        if conn.mediation != Mediation::Mediation {
            return true;
        }
        if find_notify(payloads, notify::ME_MEDIATION).is_none() {
            self.die(ctx, DownReason::PeerMisbehaved(PeerMisbehaved::NoMediation));
            return false;
        }
        self.me = Some(Box::default());
        // Our host candidate and the checks' base need the address the server reached
        // us at, not the wildcard an unbound connection starts from.
        if self.local.ip().is_unspecified() && !local.ip().is_unspecified() {
            self.local.set_ip(local.ip());
        }
        self.local.set_port(ctx.config.port_nat_t);
        if self.remote.port() == ctx.config.port {
            self.remote.set_port(ctx.config.port_nat_t);
        }
        true
    }

    /// Responder, IKE_SA_INIT: echo ME_MEDIATION when asked for it and some
    /// connection of ours is a mediation one (charon's `build_r_ms`).
    pub(crate) fn me_respond_init(
        &mut self,
        ctx: &Ctx<'_>,
        request: &[Payload],
    ) -> Option<Payload> {
        let serves = ctx
            .connections
            .iter()
            .any(|c| c.mediation == Mediation::Mediation);
        if !serves || find_notify(request, notify::ME_MEDIATION).is_none() {
            return None;
        }
        self.me = Some(Box::default());
        Some(notify_payload(notify::ME_MEDIATION, Vec::new()))
    }

    /// Initiator, IKE_AUTH request: behind a NAT, ask the server for our
    /// server-reflexive address with an empty ME_ENDPOINT (charon's `build_i`).
    /// Also announces ESPRIT_RELAY, which charon ignores (an unknown status notify,
    /// RFC 7296 3.10.1) and an esprit server answers in kind.
    pub(crate) fn me_auth_request(&self) -> Vec<Payload> {
        let mut out = Vec::new();
        if self.me.is_none() {
            return out;
        }
        // Also when we only fake a NAT: the answer costs nothing and shows where the
        // server sees us.
        if self.nat.local_behind || self.nat.fake {
            out.push(Payload::Notify(
                Endpoint::new(EndpointKind::ServerReflexive, None).to_notify(),
            ));
        }
        out.push(notify_payload(notify::ESPRIT_RELAY, Vec::new()));
        out
    }

    /// Initiator, IKE_AUTH response: note the server-reflexive address, and whether
    /// the server relays.
    pub(crate) fn me_auth_response(&mut self, payloads: &[Payload]) {
        let Some(me) = self.me.as_deref_mut() else {
            return;
        };
        me.relay = find_notify(payloads, notify::ESPRIT_RELAY).is_some();
        if let Some(e) = endpoints(payloads).next() {
            if e.kind == EndpointKind::ServerReflexive {
                me.server_reflexive = e.addr;
            }
        }
    }

    /// Responder, IKE_AUTH of a mediation SA on `conn`: registers the peer and
    /// answers a server-reflexive request with the address the request came from.
    /// Returns the payloads to add; `None` if this is no mediation SA after all (the
    /// connection chosen by identity is an ordinary one).
    pub(crate) fn me_respond_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        peer: &Identification,
        from: SocketAddr,
        request: &[Payload],
    ) -> Option<Vec<Payload>> {
        self.me.as_ref()?;
        if conn.mediation != Mediation::Mediation {
            self.me = None;
            return None;
        }
        let mut out = Vec::new();
        if endpoints(request)
            .next()
            .is_some_and(|e| e.kind == EndpointKind::ServerReflexive)
        {
            let seen = Endpoint::new(EndpointKind::ServerReflexive, Some(from));
            out.push(Payload::Notify(seen.to_notify()));
        }
        let relay = find_notify(request, notify::ESPRIT_RELAY).is_some();
        if relay {
            // Only a peer that announced it ever hears of the relay.
            out.push(notify_payload(notify::ESPRIT_RELAY, Vec::new()));
            ctx.mediation.relay_capable(self.id);
        }
        if let Some(me) = self.me.as_deref_mut() {
            me.registered = Some(peer.clone());
            me.relay = relay;
        }
        for requester in ctx.mediation.register(peer.clone(), self.id) {
            ctx.effects.push(SaEffect::RelayMeConnect {
                to: requester,
                request: Box::new(MeConnect::Callback { peer: peer.clone() }),
            });
        }
        Some(out)
    }

    /// Peer: asks the server for `peer`, to set up connection `conn` with `children`
    /// directly once the checks found a path. Returns the attempt's connect ID.
    pub(crate) fn start_mediation(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: usize,
        children: Vec<usize>,
        peer: Identification,
    ) -> Option<ConnectId> {
        let me = self.me.as_deref()?;
        ctx.mediation.forget_awaiting(conn);
        let mut id = [0u8; CONNECT_ID_LEN];
        ctx.rng.fill(&mut id);
        let connect_id = ConnectId::new(&id).ok()?;
        let key = fresh_key(ctx)?;
        let mut list = Checklist::new(
            ctx.now,
            connect_id.clone(),
            true,
            peer.clone(),
            key.clone(),
            me.candidates(self.local, &host_candidates(ctx)),
        );
        list.conn = Some((conn, children));
        list.via = Some(self.id);
        if me.relay {
            list.relay_at = Some(ctx.now + RELAY_AFTER);
        }
        let request = MeConnect::Connect {
            peer,
            connect_id: connect_id.clone(),
            connect_key: key,
            endpoints: list.our_endpoints(),
            response: false,
            // As charon: the caller learns at once that the peer is not registered
            // (and retries as its start action says), and the server calls us back
            // when it registers.
            callback: true,
        };
        ctx.mediation.checklists.insert(connect_id.clone(), list);
        self.queue(ctx, Task::MeConnect(Box::new(request)));
        Some(connect_id)
    }

    /// Responder of a mediated IKE SA (its IKE_SA_INIT named an ME_CONNECTID of ours),
    /// now established: the checks are over, so our checklist goes, and the engine
    /// learns the path the initiator chose.
    pub(crate) fn me_mediated_up(&mut self, ctx: &mut Ctx<'_>, conn: &Connection) {
        if self.initiator {
            return;
        }
        let Some(cid) = self.phase.handshake().and_then(|h| h.connect_id.clone()) else {
            return;
        };
        if ctx
            .mediation
            .checklists
            .get(&cid)
            .is_some_and(|l| !l.initiator)
        {
            ctx.mediation.checklists.remove(&cid);
        }
        let relay = ctx
            .mediation
            .relayed
            .remove(&cid)
            .filter(|(r, _)| *r == self.remote);
        let relayed = relay.is_some();
        self.relay_bind = relay;
        ctx.events.push_back(Event::MediatedPath {
            conn: conn.name.clone(),
            ike: self.id,
            local: self.local,
            remote: self.remote,
            relayed,
        });
    }

    /// Queues an ME_CONNECT request (a relayed one, on the server).
    pub(crate) fn queue_me_connect(&mut self, ctx: &mut Ctx<'_>, request: MeConnect) {
        self.queue(ctx, Task::MeConnect(Box::new(request)));
    }

    /// Sends an ME_CONNECT request from the task queue.
    pub(crate) fn start_me_connect(&mut self, ctx: &mut Ctx<'_>, request: MeConnect) {
        let attempt = match &request {
            MeConnect::Connect {
                connect_id,
                response: false,
                ..
            } if self.me.as_ref().is_some_and(|m| m.registered.is_none()) => {
                Some(connect_id.clone())
            }
            _ => None,
        };
        let pending = MeConnectRequest {
            peer: request.peer().clone(),
            attempt,
        };
        self.send_request(
            ctx,
            exchange::ME_CONNECT,
            request.to_payloads(),
            Pending::MeConnect(pending),
        );
    }

    /// An ME_CONNECT request from the peer of this SA.
    pub(crate) fn respond_me_connect(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        let answer = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, out: Vec<Payload>| {
            sa.send_response(ctx, exchange::ME_CONNECT, h.message_id, out, from);
        };
        let invalid = vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())];
        let Some(me) = self.me.as_deref() else {
            answer(self, ctx, invalid);
            return;
        };
        let Ok(request) = MeConnect::from_payloads(&payloads) else {
            answer(self, ctx, invalid);
            return;
        };
        match me.registered.clone() {
            Some(requester) => self.relay(ctx, requester, request, answer),
            None => {
                answer(self, ctx, Vec::new());
                self.mediated(ctx, request);
            }
        }
    }

    /// Server: relays a peer's ME_CONNECT to the peer it names, with ID_PEER naming
    /// the requester, or answers ME_CONNECT_FAILED (charon's `build_r_ms`).
    fn relay(
        &mut self,
        ctx: &mut Ctx<'_>,
        requester: Identification,
        request: MeConnect,
        answer: impl Fn(&mut IkeSa, &mut Ctx<'_>, Vec<Payload>),
    ) {
        let MeConnect::Connect {
            peer,
            connect_id,
            connect_key,
            endpoints,
            response,
            callback,
        } = request
        else {
            // Only a server calls back.
            answer(
                self,
                ctx,
                vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        let Some(target) = ctx.mediation.lookup(&peer) else {
            if callback {
                ctx.mediation.add_callback(peer, self.id);
            }
            answer(
                self,
                ctx,
                vec![notify_payload(notify::ME_CONNECT_FAILED, Vec::new())],
            );
            return;
        };
        answer(self, ctx, Vec::new());
        if !response {
            ctx.mediation
                .note_session(ctx.now, connect_id.clone(), self.id, target);
        }
        ctx.effects.push(SaEffect::RelayMeConnect {
            to: target,
            request: Box::new(MeConnect::Connect {
                peer: requester,
                connect_id,
                connect_key,
                endpoints,
                response,
                callback: false,
            }),
        });
    }

    /// Peer: the server relayed an attempt by another peer (we answer with our own
    /// candidates and start checking), or the answer to ours (we start checking).
    fn mediated(&mut self, ctx: &mut Ctx<'_>, request: MeConnect) {
        let MeConnect::Connect {
            peer,
            connect_id,
            connect_key,
            endpoints,
            response,
            ..
        } = request
        else {
            // The server calls back: the peer we asked for registered. Attempts that
            // wait for it start again (none when a retry got there first).
            let MeConnect::Callback { peer } = request else {
                return;
            };
            for a in ctx.mediation.take_callbacks(&peer, self.id) {
                let in_flight = ctx
                    .mediation
                    .checklists
                    .values()
                    .any(|l| l.conn.as_ref().is_some_and(|(c, _)| *c == a.conn));
                if !in_flight {
                    self.start_mediation(ctx, a.conn, a.children, peer.clone());
                }
            }
            return;
        };
        if response {
            if let Some(list) = ctx
                .mediation
                .checklists
                .get_mut(&connect_id)
                .filter(|l| l.initiator && l.peer == peer)
            {
                list.set_peer(ctx.now, connect_key, endpoints);
            }
            return;
        }
        if ctx.mediation.checklists.contains_key(&connect_id) {
            return; // a relayed retransmission
        }
        let Some(me) = self.me.as_deref() else { return };
        let Some(key) = fresh_key(ctx) else { return };
        let mut list = Checklist::new(
            ctx.now,
            connect_id.clone(),
            false,
            peer.clone(),
            key.clone(),
            me.candidates(self.local, &host_candidates(ctx)),
        );
        list.set_peer(ctx.now, connect_key, endpoints);
        list.via = Some(self.id);
        if me.relay {
            list.relay_at = Some(ctx.now + RELAY_AFTER);
        }
        let reply = MeConnect::Connect {
            peer,
            connect_id: connect_id.clone(),
            connect_key: key,
            endpoints: list.our_endpoints(),
            response: true,
            callback: false,
        };
        ctx.mediation.checklists.insert(connect_id, list);
        // Sent by the task queue once our answer to this request is out.
        self.tasks.push_back(Task::MeConnect(Box::new(reply)));
    }

    /// The response to our ME_CONNECT. For our own attempt, ME_CONNECT_FAILED (the
    /// peer is not registered) or another error ends it.
    pub(crate) fn me_connect_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        request: MeConnectRequest,
        payloads: Vec<Payload>,
    ) {
        let Some(attempt) = request.attempt else {
            return;
        };
        let Some(n) = error_notify(&payloads) else {
            return;
        };
        let reason = if n.kind == notify::ME_CONNECT_FAILED {
            MediationFailure::PeerNotRegistered
        } else {
            MediationFailure::Refused(n.kind)
        };
        let Some(list) = ctx.mediation.checklists.remove(&attempt) else {
            return;
        };
        if list.recheck.is_some() {
            return; // the relayed path stays
        }
        if let (MediationFailure::PeerNotRegistered, Some((ci, children))) =
            (&reason, list.conn.clone())
        {
            // We asked for ME_CALLBACK: the server calls back when the peer registers.
            ctx.mediation
                .await_callback(&request.peer, self.id, ci, children);
        }
        let conn = list
            .conn
            .and_then(|(ci, _)| ctx.connections.get(ci))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        ctx.events.push_back(Event::MediationFailed {
            conn,
            peer: identity_string(&request.peer),
            reason,
        });
    }
}

/// The engine's host addresses a mediated connection may use: a connection's IKE SA
/// must be able to run from the chosen base, so when every mediated connection names
/// `local_addrs`, only those.
fn host_candidates(ctx: &Ctx<'_>) -> Vec<std::net::IpAddr> {
    let mut mediated = ctx
        .connections
        .iter()
        .filter(|c| matches!(c.mediation, Mediation::MediatedBy { .. }));
    if mediated.clone().any(|c| c.local_addrs.is_empty()) {
        return ctx.mediation.hosts.clone();
    }
    ctx.mediation
        .hosts
        .iter()
        .filter(|ip| mediated.any(|c| c.local_addrs.contains(ip)))
        .copied()
        .collect()
}

/// A fresh ME_CONNECTKEY.
fn fresh_key(ctx: &mut Ctx<'_>) -> Option<ConnectKey> {
    let mut key = [0u8; CONNECT_KEY_LEN];
    ctx.rng.fill(&mut key);
    ConnectKey::new(&key).ok()
}

/// An identity as status and logs print it.
pub(crate) fn identity_string(id: &Identification) -> String {
    crate::auth::Identity::from_wire(id)
        .map(|i| i.to_string())
        .unwrap_or_else(|_| format!("ID type {}", id.id_type))
}
