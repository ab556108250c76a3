//! CREATE_CHILD_SA for child SAs (RFC 7296 1.3.1, 1.3.3): new child SAs, child rekeys
//! with and without PFS, and simultaneous child rekeys (2.8.1); the responder side of a
//! child negotiation, shared with IKE_AUTH. IKE SA rekeys are in `rekey_ike.rs`.

use std::net::SocketAddr;

use super::child_sa::{ChildRequest, ChildSa, ChildState};
use super::config_payload::narrow_to;
use super::error::PeerMisbehaved;
use super::event::{ChildSaInfo, DownReason, Event};
use super::ike_sa::{IkeSa, Pending, State, Task};
use super::keys::Dh;
use super::payloads::{
    error_notify, find_notify, ke_of, min_nonce, nonce_of, notify_payload, sa_of, spi_u32, ts_of,
};
use super::Ctx;
use crate::config::Connection;
use crate::iana::{exchange, notify, payload, protocol, NotifyType};
use crate::ts;
use crate::wire::{KeyExchange, Payload};

/// TEMPORARY_FAILURE answers after which a new child SA is given up (RFC 7296 2.25: the
/// requester "MAY retry the request one or more times over a period of several
/// minutes").
const CHILD_TEMP_FAILURE_TRIES: u32 = 5;

impl IkeSa {
    /// Responder side of a child negotiation (IKE_AUTH or CREATE_CHILD_SA): selects a
    /// child config by narrowing the selectors, a proposal, and derives the keys.
    /// Returns the response payloads, or the error notify to send.
    pub(crate) fn respond_child(
        &self,
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        req: &[Payload],
        rekeys: Option<&ChildSa>,
        create_child: bool,
    ) -> Result<(Vec<Payload>, ChildSa, Box<ChildSaInfo>), NotifyType> {
        let (Some(tsi), Some(tsr)) = ts_of(req) else {
            return Err(notify::TS_UNACCEPTABLE);
        };
        let offered = sa_of(req).ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        // RFC 7296 2.9: narrow TSi against the peer's side, TSr against ours.
        let mut chosen = None;
        for (i, child) in conn.children.iter().enumerate() {
            if rekeys.is_some_and(|old| old.cfg != i) {
                continue;
            }
            // Narrowed further to the virtual IPs of each side (RFC 7296 3.15): a
            // client's selectors are its address, whatever it proposes.
            let n_i = narrow_to(ts::narrow(tsi, &child.remote_ts), &self.peer_vips);
            let n_r = narrow_to(ts::narrow(tsr, &child.local_ts), &self.own_vips);
            if !n_i.is_empty() && !n_r.is_empty() {
                chosen = Some((i, n_i, n_r));
                break;
            }
        }
        let (cfg, n_i, n_r) = chosen.ok_or(notify::TS_UNACCEPTABLE)?;
        let child = &conn.children[cfg];
        let ke = if create_child { ke_of(req) } else { None };
        // RFC 7296 1.2: IKE_AUTH has no KE, so no PFS group takes part there.
        let ours = if create_child {
            child.esp_proposals.clone()
        } else {
            child.esp_proposals.without_dh()
        };
        let selected = ours
            .select_esp(offered, ke.map(|k| k.group))
            .map_err(|_| notify::NO_PROPOSAL_CHOSEN)?;
        let suite = selected.suite;
        let spi_out = spi_u32(&selected.peer_spi).ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        let spi_in = ctx.random_esp_spi();
        let answer = selected.reply(&spi_in.to_be_bytes());
        let keys = self.phase.keys().ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        let mut out = vec![Payload::Sa(vec![answer])];
        let (ni, nr, shared) = if create_child {
            let ni = nonce_of(req).ok_or(notify::INVALID_SYNTAX)?.to_vec();
            let nr = ctx.nonce();
            out.push(Payload::Nonce(nr.clone()));
            let shared = match (suite.dh.map(|d| d.id()), ke) {
                (Some(g), Some(ke)) if ke.group == g => {
                    let dh = Dh::generate(g, ctx.rng).map_err(|_| notify::NO_PROPOSAL_CHOSEN)?;
                    let s = dh.agree(&ke.data).map_err(|_| notify::INVALID_SYNTAX)?;
                    out.push(Payload::Ke(KeyExchange {
                        group: g,
                        data: dh.public_key().to_vec(),
                    }));
                    Some(s)
                }
                (Some(_), _) => return Err(notify::INVALID_KE_PAYLOAD),
                (None, _) => None,
            };
            (ni, nr, shared)
        } else {
            // RFC 7296 2.17: the IKE_AUTH child takes the IKE_SA_INIT nonces.
            let hs = self.phase.handshake().ok_or(notify::NO_PROPOSAL_CHOSEN)?;
            (hs.ni.clone(), hs.nr.clone(), None)
        };
        out.push(Payload::TsI(n_i.clone()));
        out.push(Payload::TsR(n_r.clone()));
        // The peer initiated this exchange: its direction (i->r) is our inbound.
        let (key_i, key_r) = keys
            .child_keys(&suite, shared.as_ref().map(|s| s.as_bytes()), &ni, &nr)
            .map_err(|_| notify::NO_PROPOSAL_CHOSEN)?;
        let c = ChildSa {
            cfg,
            spi_in,
            spi_out,
            suite,
            local_ts: n_r.clone(),
            remote_ts: n_i.clone(),
            state: ChildState::Installed,
            established: ctx.now,
            rekey_at: (!child.rekey_time.is_zero()).then(|| ctx.now + child.rekey_time),
            collision: None,
            replaced: false,
        };
        let info = Box::new(ChildSaInfo {
            ike: self.id,
            conn: conn.name.clone(),
            child: child.name.clone(),
            spi_in,
            spi_out,
            suite,
            key_in: key_i,
            key_out: key_r,
            local_ts: n_r,
            remote_ts: n_i,
            local: self.local,
            remote: self.remote,
            encap: self.nat.any(),
            rekeys: rekeys.map(|o| o.spi_in),
            established: ctx.now,
        });
        Ok((out, c, info))
    }

    /// Starts CREATE_CHILD_SA for config `cfg`, rekeying `rekeys` if given.
    pub(crate) fn start_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        cfg: usize,
        rekeys: Option<u32>,
    ) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        let old = rekeys
            .and_then(|s| self.children.iter().find(|c| c.spi_in == s))
            .cloned();
        let req = match ChildRequest::new(ctx, &conn, cfg, old.as_ref(), true) {
            Ok(mut r) if old.is_none() => {
                // A new child after IKE_AUTH: our side is our virtual IP, the peer's
                // its own (a rekey keeps the old SA's selectors).
                r.local_ts = narrow_to(r.local_ts, &self.own_vips);
                r.remote_ts = narrow_to(r.remote_ts, &self.peer_vips);
                r
            }
            Ok(r) => r,
            Err(e) => {
                if let Some(c) =
                    rekeys.and_then(|s| self.children.iter_mut().find(|c| c.spi_in == s))
                {
                    c.state = ChildState::Installed;
                }
                ctx.events.push_back(Event::ChildFailed {
                    ike: self.id,
                    conn: conn.name.clone(),
                    child: conn
                        .children
                        .get(cfg)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    reason: e,
                });
                return;
            }
        };
        let payloads = req.request_payloads(true);
        self.send_request(
            ctx,
            exchange::CREATE_CHILD_SA,
            payloads,
            Pending::CreateChild(req),
        );
    }

    /// Initiator side of a child negotiation, once the response is in: reports the new
    /// child SA (or the failure). `in_auth` when it came with IKE_AUTH.
    pub(crate) fn finish_child_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: ChildRequest,
        payloads: &[Payload],
        in_auth: bool,
    ) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        let child_name = conn
            .children
            .get(req.cfg)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let fail = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, reason: DownReason| {
            if let Some(old) = req.rekeys {
                if sa.abort_child_rekey(ctx, old) {
                    // Try again later, as charon does: the SA still expires, and the
                    // peer's refusal may pass (a reload, a pool).
                    if let Some(c) = sa.children.iter_mut().find(|c| c.spi_in == old) {
                        c.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout * 4);
                    }
                }
            }
            ctx.events.push_back(Event::ChildFailed {
                ike: sa.id,
                conn: conn.name.clone(),
                child: child_name.clone(),
                reason,
            });
        };
        if let Some(n) = error_notify(payloads) {
            let reason = match n.kind {
                notify::NO_PROPOSAL_CHOSEN => DownReason::NoProposalChosen,
                notify::TS_UNACCEPTABLE => DownReason::TsUnacceptable,
                k => DownReason::PeerError(k),
            };
            fail(self, ctx, reason);
            return;
        }
        let (Some(sa_p), (Some(tsi), Some(tsr))) = (sa_of(payloads), ts_of(payloads)) else {
            if !in_auth || sa_of(payloads).is_some() {
                let missing = match (sa_of(payloads), ts_of(payloads)) {
                    (None, _) => payload::SA,
                    (_, (None, _)) => payload::TSI,
                    _ => payload::TSR,
                };
                let why = PeerMisbehaved::MissingPayload(missing);
                fail(self, ctx, DownReason::PeerMisbehaved(why));
            }
            return;
        };
        let suite = match sa_p {
            [one] => req
                .offered
                .check_esp_reply(one)
                .ok()
                .and_then(|s| spi_u32(&one.spi).map(|spi| (s, spi))),
            _ => None,
        };
        let Some((suite, spi_out)) = suite else {
            fail(
                self,
                ctx,
                DownReason::PeerMisbehaved(PeerMisbehaved::UnofferedProposal),
            );
            return;
        };
        if !ts::is_narrowing(tsi, &req.local_ts) || !ts::is_narrowing(tsr, &req.remote_ts) {
            fail(self, ctx, DownReason::TsUnacceptable);
            return;
        }
        let Some(keys) = self.phase.keys() else {
            return;
        };
        let (ni, nr, shared) = if in_auth {
            // RFC 7296 2.17: the IKE_AUTH child takes the IKE_SA_INIT nonces.
            let Some(hs) = self.phase.handshake() else {
                return;
            };
            (hs.ni.clone(), hs.nr.clone(), None)
        } else {
            let Some(nr) = nonce_of(payloads) else {
                fail(
                    self,
                    ctx,
                    DownReason::PeerMisbehaved(PeerMisbehaved::MissingPayload(payload::NONCE)),
                );
                return;
            };
            let shared = match (&req.dh, ke_of(payloads)) {
                (Some(dh), Some(ke)) if ke.group == dh.group() => match dh.agree(&ke.data) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        fail(
                            self,
                            ctx,
                            DownReason::PeerMisbehaved(PeerMisbehaved::BadKe(e)),
                        );
                        return;
                    }
                },
                (None, None) => None,
                _ => {
                    fail(
                        self,
                        ctx,
                        DownReason::PeerMisbehaved(PeerMisbehaved::KeGroupMismatch),
                    );
                    return;
                }
            };
            (req.ni.clone(), nr.to_vec(), shared)
        };
        // We initiated this exchange: i->r is our outbound direction.
        let (key_i, key_r) =
            match keys.child_keys(&suite, shared.as_ref().map(|s| s.as_bytes()), &ni, &nr) {
                Ok(k) => k,
                Err(e) => {
                    fail(self, ctx, DownReason::Crypto(e));
                    return;
                }
            };
        let child_cfg = conn.children.get(req.cfg);
        let c = ChildSa {
            cfg: req.cfg,
            spi_in: req.spi_in,
            spi_out,
            suite,
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            state: ChildState::Installed,
            established: ctx.now,
            rekey_at: child_cfg
                .filter(|c| !c.rekey_time.is_zero())
                .map(|c| ctx.now + c.rekey_time),
            collision: None,
            replaced: false,
        };
        if req.rekeys.is_some() {
            ctx.stats.child_rekeys += 1;
        }
        ctx.events.push_back(Event::ChildUp(Box::new(ChildSaInfo {
            ike: self.id,
            conn: conn.name.clone(),
            child: child_name.clone(),
            spi_in: req.spi_in,
            spi_out,
            suite,
            key_in: key_r,
            key_out: key_i,
            local_ts: tsi.to_vec(),
            remote_ts: tsr.to_vec(),
            local: self.local,
            remote: self.remote,
            encap: self.nat.any(),
            rekeys: req.rekeys,
            established: ctx.now,
        })));
        let new_spi = c.spi_in;
        self.children.push(c);
        if let Some(old_spi) = req.rekeys {
            let our_min = min_nonce(&ni, &nr).to_vec();
            self.resolve_child_rekey(ctx, old_spi, new_spi, our_min, req.collision);
        }
        if req.deleted_early.contains(&spi_out) {
            // RFC 7296 2.25.1: the peer deleted this SA before its answer reached us.
            // Reported up and down, as charon does, so a rekey still retires the old
            // SA (which we delete).
            self.remove_child(ctx, new_spi, DownReason::DeletedByPeer);
        }
    }

    /// After our rekey of `old_spi` completed: delete the old SA, unless a collision
    /// (RFC 7296 2.8.1) makes our new SA the redundant one.
    fn resolve_child_rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        old_spi: u32,
        new_spi: u32,
        our_min: Vec<u8>,
        stashed: Option<(Vec<u8>, u32)>,
    ) {
        let (peer_deleted, collision) = match self.children.iter_mut().find(|c| c.spi_in == old_spi)
        {
            Some(old) => {
                let peer_deleted = old.state == ChildState::RekeyingDeleted;
                old.state = ChildState::Rekeyed;
                old.replaced = true;
                (peer_deleted, old.collision.take())
            }
            // The peer's crossing rekey replaced the old SA already.
            None if stashed.is_some() => (true, stashed),
            None => return,
        };
        let redundant = match collision {
            // Our exchange holds the lowest nonce: the SA we created is redundant and
            // ours to delete; the peer deletes the old one.
            Some((their_min, _)) if our_min < their_min => {
                // Nothing more goes out on it: the peer may drop it as soon as our
                // DELETE arrives, before its answer lets us report it down.
                if let Some(c) = self.children.iter().find(|c| c.spi_in == new_spi) {
                    ctx.events.push_back(Event::ChildRedundant {
                        ike: self.id,
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                    });
                }
                self.tasks.push_back(Task::DeleteChild(new_spi));
                Some(new_spi)
            }
            // The peer's exchange holds it: the SA we created answering it is the
            // redundant one, the peer's to delete; the old one is ours.
            Some((_, theirs)) => Some(theirs),
            None => None,
        };
        if let Some(c) = redundant.and_then(|s| self.children.iter_mut().find(|c| c.spi_in == s)) {
            c.replaced = true;
        }
        if !peer_deleted && redundant != Some(new_spi) {
            self.tasks.push_back(Task::DeleteChild(old_spi));
        }
        if peer_deleted {
            // The peer deleted the old SA before our rekey's answer came in: replaced
            // now, and nothing is left to delete.
            self.remove_child(ctx, old_spi, DownReason::Rekeyed);
        }
    }

    /// Our rekey of `old_spi` ended without a new SA. The old SA carries on, unless the
    /// peer deleted it meanwhile (RFC 7296 2.25.1) or replaced it by its own rekey that
    /// crossed ours (2.8.1). Returns whether it carries on as before.
    pub(crate) fn abort_child_rekey(&mut self, ctx: &mut Ctx<'_>, old_spi: u32) -> bool {
        let Some(old) = self.children.iter_mut().find(|c| c.spi_in == old_spi) else {
            return false;
        };
        match old.state {
            ChildState::RekeyingDeleted => {
                self.remove_child(ctx, old_spi, DownReason::DeletedByPeer);
                false
            }
            ChildState::Rekeying if old.collision.take().is_some() => {
                // The peer's rekey of it, which we answered, replaced it: the peer
                // deletes it.
                old.state = ChildState::Rekeyed;
                old.replaced = true;
                false
            }
            ChildState::Rekeying => {
                old.state = ChildState::Installed;
                true
            }
            _ => false,
        }
    }

    /// Response to our CREATE_CHILD_SA.
    pub(crate) fn create_child_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut req: ChildRequest,
        payloads: Vec<Payload>,
    ) {
        if let Some(n) = find_notify(&payloads, notify::INVALID_KE_PAYLOAD) {
            let group = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let (true, Some(g)) = (req.ke_retry, group) {
                if let Ok(dh) = Dh::generate(g, ctx.rng) {
                    req.ke_retry = false;
                    req.dh = Some(dh);
                    req.ni = ctx.nonce();
                    let payloads = req.request_payloads(true);
                    self.send_request(
                        ctx,
                        exchange::CREATE_CHILD_SA,
                        payloads,
                        Pending::CreateChild(req),
                    );
                    return;
                }
            }
        }
        if let Some(n) = error_notify(&payloads) {
            if let (notify::TEMPORARY_FAILURE, Some(old)) = (n.kind, req.rekeys) {
                // RFC 7296 2.25: try again a little later, unless the SA was deleted
                // or replaced meanwhile.
                if self.abort_child_rekey(ctx, old) {
                    if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old) {
                        c.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout);
                    }
                }
                return;
            }
            if n.kind == notify::TEMPORARY_FAILURE
                && req.rekeys.is_none()
                && req.temp_failures < CHILD_TEMP_FAILURE_TRIES
            {
                // RFC 7296 2.25: not at once; 2, 4, 8, 16, 32 s with the defaults.
                let wait = ctx.config.retransmit_timeout * (1 << req.temp_failures);
                self.child_retries
                    .push((ctx.now + wait, req.cfg, req.temp_failures + 1));
                return;
            }
            if let (notify::CHILD_SA_NOT_FOUND, Some(old)) = (n.kind, req.rekeys) {
                self.remove_child(ctx, old, DownReason::DeletedByPeer);
                return;
            }
        }
        self.finish_child_request(ctx, req, &payloads, false);
    }

    /// Responder: CREATE_CHILD_SA request (new child, child rekey or IKE rekey).
    pub(crate) fn respond_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: crate::wire::Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        let reply_err = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, kind: NotifyType, data: Vec<u8>| {
            sa.send_response(
                ctx,
                exchange::CREATE_CHILD_SA,
                h.message_id,
                vec![notify_payload(kind, data)],
                from,
            );
        };
        if self.state != State::Established {
            reply_err(self, ctx, notify::TEMPORARY_FAILURE, Vec::new());
            return;
        }
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            reply_err(self, ctx, notify::NO_PROPOSAL_CHOSEN, Vec::new());
            return;
        };
        let is_ike = sa_of(&payloads)
            .and_then(|s| s.first())
            .is_some_and(|p| p.protocol == protocol::IKE);
        if is_ike {
            self.respond_rekey_ike(ctx, h, from, &conn, &payloads);
            return;
        }
        let rekey = find_notify(&payloads, notify::REKEY_SA).map(|n| spi_u32(&n.spi));
        // RFC 7296 2.25: a child rekey or creation that crosses our IKE SA rekey would
        // land on an SA about to be replaced; the peer retries after the IKE rekey
        // (strongSwan does the same).
        if self.outstanding_is(|p| matches!(p, Pending::RekeyIke(_))) {
            reply_err(self, ctx, notify::TEMPORARY_FAILURE, Vec::new());
            return;
        }
        let old = match rekey {
            // The notify carries the sender's inbound SPI, our outbound one.
            Some(Some(spi)) => match self.children.iter().find(|c| c.spi_out == spi) {
                Some(c) if matches!(c.state, ChildState::Installed | ChildState::Rekeying) => {
                    Some(c.clone())
                }
                Some(_) => {
                    reply_err(self, ctx, notify::TEMPORARY_FAILURE, Vec::new());
                    return;
                }
                None => {
                    reply_err(self, ctx, notify::CHILD_SA_NOT_FOUND, Vec::new());
                    return;
                }
            },
            Some(None) => {
                reply_err(self, ctx, notify::INVALID_SYNTAX, Vec::new());
                return;
            }
            None => None,
        };
        match self.respond_child(ctx, &conn, &payloads, old.as_ref(), true) {
            Ok((out, c, info)) => {
                let peer_ni = nonce_of(&payloads).unwrap_or_default().to_vec();
                let our_nr = out
                    .iter()
                    .find_map(|p| match p {
                        Payload::Nonce(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let new_spi = c.spi_in;
                self.send_response(ctx, exchange::CREATE_CHILD_SA, h.message_id, out, from);
                if let Some(old) =
                    old.and_then(|o| self.children.iter_mut().find(|c| c.spi_in == o.spi_in))
                {
                    if old.state == ChildState::Rekeying {
                        old.collision = Some((min_nonce(&peer_ni, &our_nr).to_vec(), new_spi));
                    } else {
                        old.state = ChildState::Rekeyed;
                        old.replaced = true;
                    }
                }
                if info.rekeys.is_some() {
                    ctx.stats.child_rekeys += 1;
                }
                self.children.push(c);
                ctx.events.push_back(Event::ChildUp(info));
            }
            Err(kind) => {
                let data = if kind == notify::INVALID_KE_PAYLOAD {
                    let cfg = old.map(|o| o.cfg).unwrap_or(0);
                    let g = conn
                        .children
                        .get(cfg)
                        .and_then(|c| c.esp_proposals.preferred_dh())
                        .map_or(0, |d| d.id());
                    g.to_be_bytes().to_vec()
                } else {
                    Vec::new()
                };
                reply_err(self, ctx, kind, data);
            }
        }
    }
}
