//! Child SAs and CREATE_CHILD_SA (RFC 7296 1.3): new child SAs, child rekeys with and
//! without PFS, IKE SA rekeys, and simultaneous-rekey collisions (2.8.1, 2.8.2).

use std::net::SocketAddr;
use std::time::Instant;

use super::event::{ChildSaInfo, DownReason, Event};
use super::init::{error_notify, find_notify, notify_payload};
use super::keys::Dh;
use super::keys::IkeKeys;
use super::sa::{IkeSa, Pending, State, Task};
use super::Ctx;
use crate::config::Connection;
use crate::iana::{exchange, notify, protocol};
use crate::proposal::{EspSuite, IkeSuite, ProposalSet};
use crate::ts;
use crate::wire::{KeyExchange, Notify, Payload, TrafficSelector};

/// Where a child SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Carrying traffic.
    Installed,
    /// Our rekey of it is in flight.
    Rekeying,
    /// Replaced by a newer child SA; deleted soon by whoever initiated the rekey.
    Rekeyed,
    /// Our delete is in flight.
    Deleting,
    /// Gone.
    Deleted,
}

/// A child SA as the IKE SA tracks it; keys went to the engine in `ChildUp`.
#[derive(Debug, Clone)]
pub(crate) struct ChildSa {
    pub(crate) cfg: usize,
    pub(crate) spi_in: u32,
    pub(crate) spi_out: u32,
    pub(crate) suite: EspSuite,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    pub(crate) state: ChildState,
    pub(crate) established: Instant,
    pub(crate) rekey_at: Option<Instant>,
    /// A peer rekey of this SA we answered while ours was in flight: the smaller nonce
    /// of that exchange and the inbound SPI of the SA it created (RFC 7296 2.8.1).
    pub(crate) collision: Option<(Vec<u8>, u32)>,
}

/// A CREATE_CHILD_SA (or IKE_AUTH) child request in flight.
pub(crate) struct ChildRequest {
    pub(crate) cfg: usize,
    pub(crate) spi_in: u32,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: Option<Dh>,
    /// What we offered (without DH groups in IKE_AUTH).
    pub(crate) offered: ProposalSet,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    /// Inbound SPI of the child SA being rekeyed.
    pub(crate) rekeys: Option<u32>,
    /// INVALID_KE_PAYLOAD retries left.
    pub(crate) ke_retry: bool,
}

/// An IKE SA rekey in flight.
pub(crate) struct IkeRekeyRequest {
    pub(crate) spi: u64,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: Dh,
}

impl ChildRequest {
    /// Prepares a child request for config `cfg`; `pfs` includes the DH group (and a KE).
    pub(crate) fn new(
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        cfg: usize,
        rekeys: Option<&ChildSa>,
        pfs: bool,
    ) -> Result<ChildRequest, String> {
        let child = conn.children.get(cfg).ok_or("no such child config")?;
        let spi_in = ctx.random_esp_spi();
        let offered = if pfs {
            child.esp_proposals.clone()
        } else {
            child.esp_proposals.without_dh()
        };
        let dh = match offered.preferred_dh() {
            Some(g) if pfs => Some(Dh::generate(g.id(), ctx.rng)?),
            _ => None,
        };
        let (local_ts, remote_ts) = match rekeys {
            Some(old) => (old.local_ts.clone(), old.remote_ts.clone()),
            None => (child.local_ts.clone(), child.remote_ts.clone()),
        };
        Ok(ChildRequest {
            cfg,
            spi_in,
            ni: ctx.nonce(),
            dh,
            offered,
            local_ts,
            remote_ts,
            rekeys: rekeys.map(|c| c.spi_in),
            ke_retry: true,
        })
    }

    /// SA, (Nonce, KE,) TSi, TSr for the request; `with_nonce` for CREATE_CHILD_SA.
    pub(crate) fn request_payloads(&self, with_nonce: bool) -> Vec<Payload> {
        let mut p = Vec::new();
        if let Some(old) = self.rekeys {
            p.push(Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: old.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: Vec::new(),
            }));
        }
        p.push(Payload::Sa(
            self.offered.to_wire(&self.spi_in.to_be_bytes()),
        ));
        if with_nonce {
            p.push(Payload::Nonce(self.ni.clone()));
            if let Some(dh) = &self.dh {
                p.push(Payload::Ke(KeyExchange {
                    group: dh.group(),
                    data: dh.public_key().to_vec(),
                }));
            }
        }
        p.push(Payload::TsI(self.local_ts.clone()));
        p.push(Payload::TsR(self.remote_ts.clone()));
        p
    }
}

fn ts_of(p: &[Payload]) -> (Option<&Vec<TrafficSelector>>, Option<&Vec<TrafficSelector>>) {
    let tsi = p.iter().find_map(|x| match x {
        Payload::TsI(t) => Some(t),
        _ => None,
    });
    let tsr = p.iter().find_map(|x| match x {
        Payload::TsR(t) => Some(t),
        _ => None,
    });
    (tsi, tsr)
}

fn sa_of(p: &[Payload]) -> Option<&Vec<crate::wire::Proposal>> {
    p.iter().find_map(|x| match x {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

fn nonce_of(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|x| match x {
        Payload::Nonce(n) if (16..=256).contains(&n.len()) => Some(n.as_slice()),
        _ => None,
    })
}

fn ke_of(p: &[Payload]) -> Option<&KeyExchange> {
    p.iter().find_map(|x| match x {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

fn spi_u32(spi: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(spi.try_into().ok()?))
}

fn spi_u64(spi: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(spi.try_into().ok()?))
}

/// The lower of two nonces, compared as big-endian numbers (RFC 7296 2.8.1).
fn min_nonce<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if cmp_nonce(a, b).is_le() {
        a
    } else {
        b
    }
}

fn cmp_nonce(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.cmp(b)
}

impl ChildSa {
    /// Responder side of a child negotiation (IKE_AUTH or CREATE_CHILD_SA): selects a
    /// child config by narrowing the selectors, a proposal, and derives the keys.
    /// Returns the response payloads, or the error notify to send.
    pub(crate) fn respond(
        sa: &IkeSa,
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        req: &[Payload],
        rekeys: Option<&ChildSa>,
        create_child: bool,
    ) -> Result<(Vec<Payload>, ChildSa, Box<ChildSaInfo>), u16> {
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
            let n_i = ts::narrow(tsi, &child.remote_ts);
            let n_r = ts::narrow(tsr, &child.local_ts);
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
        let keys = sa.keys.as_ref().ok_or(notify::NO_PROPOSAL_CHOSEN)?;
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
            (sa.ni.clone(), sa.nr.clone(), None)
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
        };
        let info = Box::new(ChildSaInfo {
            ike: sa.id,
            conn: conn.name.clone(),
            child: child.name.clone(),
            spi_in,
            spi_out,
            suite,
            key_in: key_i,
            key_out: key_r,
            local_ts: n_r,
            remote_ts: n_i,
            local: sa.local,
            remote: sa.remote,
            encap: sa.nat.any(),
            rekeys: rekeys.map(|o| o.spi_in),
            established: ctx.now,
        });
        Ok((out, c, info))
    }
}

impl IkeSa {
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
                    reason: DownReason::Protocol(e),
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
            if let Some(old) = req
                .rekeys
                .and_then(|s| sa.children.iter_mut().find(|c| c.spi_in == s))
            {
                if old.state == ChildState::Rekeying {
                    old.state = ChildState::Installed;
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
                fail(
                    self,
                    ctx,
                    DownReason::Protocol("child SA response incomplete".into()),
                );
            }
            return;
        };
        let suite = match sa_p.as_slice() {
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
                DownReason::Protocol("responder chose an ESP proposal we did not offer".into()),
            );
            return;
        };
        if !ts::is_narrowing(tsi, &req.local_ts) || !ts::is_narrowing(tsr, &req.remote_ts) {
            fail(self, ctx, DownReason::TsUnacceptable);
            return;
        }
        let Some(keys) = self.keys.as_ref() else {
            return;
        };
        let (ni, nr, shared) = if in_auth {
            (self.ni.clone(), self.nr.clone(), None)
        } else {
            let Some(nr) = nonce_of(payloads) else {
                fail(
                    self,
                    ctx,
                    DownReason::Protocol("CREATE_CHILD_SA response without nonce".into()),
                );
                return;
            };
            let shared = match (&req.dh, ke_of(payloads)) {
                (Some(dh), Some(ke)) if ke.group == dh.group() => match dh.agree(&ke.data) {
                    Ok(s) => Some(s),
                    Err(_) => {
                        fail(
                            self,
                            ctx,
                            DownReason::Protocol("bad KE in CREATE_CHILD_SA".into()),
                        );
                        return;
                    }
                },
                (None, None) => None,
                _ => {
                    fail(
                        self,
                        ctx,
                        DownReason::Protocol("KE mismatch in CREATE_CHILD_SA".into()),
                    );
                    return;
                }
            };
            (req.ni.clone(), nr.to_vec(), shared)
        };
        // We initiated this exchange: i->r is our outbound direction.
        let Ok((key_i, key_r)) =
            keys.child_keys(&suite, shared.as_ref().map(|s| s.as_bytes()), &ni, &nr)
        else {
            fail(
                self,
                ctx,
                DownReason::Protocol("child key derivation failed".into()),
            );
            return;
        };
        let child_cfg = conn.children.get(req.cfg);
        let c = ChildSa {
            cfg: req.cfg,
            spi_in: req.spi_in,
            spi_out,
            suite,
            local_ts: tsi.clone(),
            remote_ts: tsr.clone(),
            state: ChildState::Installed,
            established: ctx.now,
            rekey_at: child_cfg
                .filter(|c| !c.rekey_time.is_zero())
                .map(|c| ctx.now + c.rekey_time),
            collision: None,
        };
        ctx.events.push_back(Event::ChildUp(Box::new(ChildSaInfo {
            ike: self.id,
            conn: conn.name.clone(),
            child: child_name.clone(),
            spi_in: req.spi_in,
            spi_out,
            suite,
            key_in: key_r,
            key_out: key_i,
            local_ts: tsi.clone(),
            remote_ts: tsr.clone(),
            local: self.local,
            remote: self.remote,
            encap: self.nat.any(),
            rekeys: req.rekeys,
            established: ctx.now,
        })));
        let new_spi = c.spi_in;
        self.children.push(c);
        if let Some(old_spi) = req.rekeys {
            self.resolve_child_rekey(old_spi, new_spi, min_nonce(&ni, &nr).to_vec());
        }
    }

    /// After our rekey of `old_spi` completed: delete the old SA, unless a collision
    /// (RFC 7296 2.8.1) makes our new SA the redundant one.
    fn resolve_child_rekey(&mut self, old_spi: u32, new_spi: u32, our_min: Vec<u8>) {
        let Some(old) = self.children.iter_mut().find(|c| c.spi_in == old_spi) else {
            return;
        };
        match old.collision.take() {
            Some((their_min, _)) if cmp_nonce(&our_min, &their_min).is_lt() => {
                // Our exchange holds the lowest nonce: the SA we created is redundant
                // and ours to delete; the peer deletes the old one.
                old.state = ChildState::Rekeyed;
                self.tasks.push_back(Task::DeleteChild(new_spi));
            }
            _ => {
                old.state = ChildState::Rekeyed;
                self.tasks.push_back(Task::DeleteChild(old_spi));
            }
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
                // RFC 7296 2.25: try again a little later.
                if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old) {
                    c.state = ChildState::Installed;
                    c.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout);
                }
                return;
            }
            if let (notify::CHILD_SA_NOT_FOUND, Some(old)) = (n.kind, req.rekeys) {
                self.remove_child(ctx, old, DownReason::DeletedByPeer);
                return;
            }
        }
        self.finish_child_request(ctx, req, &payloads, false);
    }

    /// Reports a child SA as gone and forgets it.
    pub(crate) fn remove_child(&mut self, ctx: &mut Ctx<'_>, spi_in: u32, reason: DownReason) {
        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(i);
            ctx.events.push_back(Event::ChildDown {
                ike: self.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason,
            });
        }
    }

    /// Responder: CREATE_CHILD_SA request (new child, child rekey or IKE rekey).
    pub(crate) fn respond_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: crate::wire::Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        let reply_err = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, kind: u16, data: Vec<u8>| {
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
        // RFC 7296 2.25: a child rekey that crosses our IKE SA rekey would land on an SA
        // about to be replaced; the peer retries after the IKE rekey (strongSwan does
        // the same).
        if rekey.is_some() && self.outstanding_is(|p| matches!(p, Pending::RekeyIke(_))) {
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
        match ChildSa::respond(self, ctx, &conn, &payloads, old.as_ref(), true) {
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
                    }
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

    /// Starts rekeying this IKE SA (RFC 7296 1.3.2).
    pub(crate) fn start_rekey_ike(&mut self, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        let Some(group) = self.suite.as_ref().map(|s| s.dh.id()) else {
            return;
        };
        let Ok(dh) = Dh::generate(group, ctx.rng) else {
            return;
        };
        let spi = ctx.random_u64();
        let ni = ctx.nonce();
        let payloads = vec![
            Payload::Sa(conn.proposals.to_wire(&spi.to_be_bytes())),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KeyExchange {
                group: dh.group(),
                data: dh.public_key().to_vec(),
            }),
        ];
        self.send_request(
            ctx,
            exchange::CREATE_CHILD_SA,
            payloads,
            Pending::RekeyIke(IkeRekeyRequest { spi, ni, dh }),
        );
    }

    /// Builds the IKE SA that replaces this one, moving the children over.
    #[allow(clippy::too_many_arguments)]
    fn spawn_rekeyed(
        &mut self,
        ctx: &mut Ctx<'_>,
        suite: IkeSuite,
        keys: IkeKeys,
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
        ni: Vec<u8>,
        nr: Vec<u8>,
    ) -> IkeSa {
        let mut new = IkeSa::blank(ctx.now, initiator, self.local, self.remote);
        new.id = ctx.alloc_id();
        new.conn = self.conn;
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.state = State::Established;
        new.nat = self.nat;
        new.suite = Some(suite);
        new.keys = Some(keys);
        new.ni = ni;
        new.nr = nr;
        new.peer_fragmentation = self.peer_fragmentation;
        new.peer_hashes = self.peer_hashes.clone();
        new.local_id = self.local_id.clone();
        new.remote_id = self.remote_id.clone();
        new.next_request_id = 0;
        new.expected_request_id = 0;
        new.established = Some(ctx.now);
        new.last_heard = ctx.now;
        new.rekey_at = self
            .connection(ctx.connections)
            .filter(|c| !c.rekey_time.is_zero())
            .map(|c| ctx.now + c.rekey_time);
        new.children = std::mem::take(&mut self.children);
        // Work queued on the old SA carries over (except what concerns the old SA).
        new.tasks = self
            .tasks
            .drain(..)
            .filter(|t| !matches!(t, Task::RekeyIke | Task::DeleteIke))
            .collect();
        new.rekeyed_from = Some(self.id);
        new
    }

    /// Response to our IKE rekey.
    pub(crate) fn rekey_ike_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: IkeRekeyRequest,
        payloads: Vec<Payload>,
    ) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        if error_notify(&payloads).is_some() {
            // TEMPORARY_FAILURE, NO_PROPOSAL_CHOSEN, ...: keep the old SA, retry later.
            self.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout * 4);
            return;
        }
        let (Some(sa_p), Some(nr), Some(ke)) =
            (sa_of(&payloads), nonce_of(&payloads), ke_of(&payloads))
        else {
            self.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout * 4);
            return;
        };
        let Some((suite, one)) = (match sa_p.as_slice() {
            [one] => conn.proposals.check_ike_reply(one).ok().map(|s| (s, one)),
            _ => None,
        }) else {
            self.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout * 4);
            return;
        };
        let (Some(peer_spi), Ok(shared)) = (spi_u64(&one.spi), req.dh.agree(&ke.data)) else {
            self.rekey_at = Some(ctx.now + ctx.config.retransmit_timeout * 4);
            return;
        };
        let Some(old_keys) = self.keys.as_ref() else {
            return;
        };
        let Ok(keys) = old_keys.rekey(
            &suite,
            shared.as_bytes(),
            &req.ni,
            nr,
            req.spi,
            peer_spi,
            true,
        ) else {
            return;
        };
        let our_min = min_nonce(&req.ni, nr).to_vec();
        let collided = self.answered_ike_rekey.take();
        if let Some((their_min, _, _)) = &collided {
            if cmp_nonce(&our_min, their_min).is_lt() {
                // RFC 7296 2.8.2: our new SA is the redundant one; the peer's (which we
                // answered, and which took the children) survives and the peer deletes
                // this old SA. Bring ours up only to delete it.
                let mut new = self.spawn_rekeyed(
                    ctx,
                    suite,
                    keys,
                    req.spi,
                    peer_spi,
                    true,
                    req.ni.clone(),
                    nr.to_vec(),
                );
                new.tasks.clear();
                new.tasks.push_back(Task::DeleteIke);
                new.rekeyed_from = None;
                new.state = State::Rekeyed;
                ctx.spawned.push(new);
                self.state = State::Rekeyed;
                return;
            }
        }
        let new = self.spawn_rekeyed(
            ctx,
            suite,
            keys,
            req.spi,
            peer_spi,
            true,
            req.ni.clone(),
            nr.to_vec(),
        );
        if let Some((_, _, answered)) = collided {
            // We won the collision: the children went to the SA we answered; bring them
            // to ours. The peer deletes the one it created.
            ctx.moves.push((answered, new.id));
        }
        ctx.spawned.push(new);
        // The rekey initiator deletes the old IKE SA (RFC 7296 1.3.2).
        self.state = State::Rekeyed;
        self.tasks.clear();
        self.tasks.push_back(Task::DeleteIke);
    }

    /// Responder: the peer rekeys this IKE SA.
    fn respond_rekey_ike(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: crate::wire::Header,
        from: SocketAddr,
        conn: &Connection,
        payloads: &[Payload],
    ) {
        let reply = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, out: Vec<Payload>| {
            sa.send_response(ctx, exchange::CREATE_CHILD_SA, h.message_id, out, from)
        };
        // RFC 7296 2.25: while our CREATE_CHILD_SA for a child is outstanding, its
        // answer must find this IKE SA; the peer retries its IKE rekey later.
        if self.outstanding_is(|p| matches!(p, Pending::CreateChild(_))) {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::TEMPORARY_FAILURE, Vec::new())],
            );
            return;
        }
        let (Some(sa_p), Some(ni), Some(ke)) =
            (sa_of(payloads), nonce_of(payloads), ke_of(payloads))
        else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        let Ok(selected) = conn.proposals.select_ike(sa_p, Some(ke.group)) else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return;
        };
        let suite = selected.suite;
        if suite.dh.id() != ke.group {
            reply(
                self,
                ctx,
                vec![notify_payload(
                    notify::INVALID_KE_PAYLOAD,
                    suite.dh.id().to_be_bytes().to_vec(),
                )],
            );
            return;
        }
        let Some(peer_spi) = spi_u64(&selected.peer_spi) else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        let Ok(dh) = Dh::generate(suite.dh.id(), ctx.rng) else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return;
        };
        let Ok(shared) = dh.agree(&ke.data) else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())],
            );
            return;
        };
        let our_spi = ctx.random_u64();
        let nr = ctx.nonce();
        let answer = selected.reply(&our_spi.to_be_bytes());
        let Some(old_keys) = self.keys.as_ref() else {
            return;
        };
        let Ok(keys) = old_keys.rekey(&suite, shared.as_bytes(), ni, &nr, peer_spi, our_spi, false)
        else {
            reply(
                self,
                ctx,
                vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return;
        };
        reply(
            self,
            ctx,
            vec![
                Payload::Sa(vec![answer]),
                Payload::Nonce(nr.clone()),
                Payload::Ke(KeyExchange {
                    group: dh.group(),
                    data: dh.public_key().to_vec(),
                }),
            ],
        );
        let colliding = self
            .outstanding
            .as_ref()
            .is_some_and(|o| matches!(o.pending, Pending::RekeyIke(_)));
        let new = self.spawn_rekeyed(
            ctx,
            suite,
            keys,
            peer_spi,
            our_spi,
            false,
            ni.to_vec(),
            nr.clone(),
        );
        if colliding {
            self.answered_ike_rekey = Some((min_nonce(ni, &nr).to_vec(), Vec::new(), new.id));
        } else {
            self.state = State::Rekeyed;
        }
        ctx.spawned.push(new);
    }
}
