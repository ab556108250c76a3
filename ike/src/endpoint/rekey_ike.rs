//! CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 1.3.2, 2.18), and simultaneous IKE SA
//! rekeys (2.8.2): the SA created by the exchange with the lowest nonce is redundant.

use std::net::SocketAddr;

use super::child_sa::{ChildState, IkeRekeyRequest};
use super::ike_sa::{IkeSa, Pending, Phase, State, Task};
use super::keys::{Dh, IkeKeys};
use super::payloads::{
    error_notify, find_notify, ke_of, min_nonce, nonce_of, notify_payload, sa_of, spi_u64,
};
use super::{Ctx, Event, SaEffect};
use crate::config::Connection;
use crate::iana::{exchange, notify};
use crate::proposal::IkeSuite;
use crate::wire::{KeyExchange, Payload};

impl IkeSa {
    /// Starts rekeying this IKE SA (RFC 7296 1.3.2).
    pub(crate) fn start_rekey_ike(&mut self, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        // The KE payload's group must be one we propose (RFC 7296 1.3.2): the IKE SA's
        // group while the proposals still name it, else the first configured one
        // (charon's `prefer_previous_dh_group`).
        let current = self.suite.as_ref().map(|s| s.dh);
        let Some(group) = current
            .filter(|g| conn.proposals.accepts_dh(*g))
            .or_else(|| conn.proposals.preferred_dh())
        else {
            return;
        };
        self.send_rekey_ike(ctx, &conn, group.id(), true);
    }

    /// Sends the CREATE_CHILD_SA request rekeying this IKE SA with a KE of `group`;
    /// `ke_retry` while an INVALID_KE_PAYLOAD answer may still be followed.
    fn send_rekey_ike(&mut self, ctx: &mut Ctx<'_>, conn: &Connection, group: u16, ke_retry: bool) {
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
            Pending::RekeyIke(IkeRekeyRequest {
                spi,
                ni,
                dh,
                ke_retry,
            }),
        );
    }

    /// Builds the IKE SA that replaces this one, moving the children over.
    fn spawn_rekeyed(
        &mut self,
        ctx: &mut Ctx<'_>,
        suite: IkeSuite,
        keys: IkeKeys,
        spi_i: u64,
        spi_r: u64,
        initiator: bool,
    ) -> IkeSa {
        let mut new = IkeSa::blank(ctx.now, initiator, self.local, self.remote, Phase::Up(keys));
        new.id = ctx.alloc_id();
        new.conn = self.conn;
        new.spi_i = spi_i;
        new.spi_r = spi_r;
        new.state = State::Established;
        new.nat = self.nat;
        new.suite = Some(suite);
        new.peer_fragmentation = self.peer_fragmentation;
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
        new.child_retries = std::mem::take(&mut self.child_retries);
        // Work queued on the old SA carries over (except what concerns the old SA).
        new.tasks = self
            .tasks
            .drain(..)
            .filter(|t| !matches!(t, Task::RekeyIke | Task::DeleteIke))
            .collect();
        new.rekeyed_from = Some(self.id);
        // The virtual IPs stay with the rekeyed SA (the endpoint moves the leases).
        new.own_vips = self.own_vips.clone();
        new.dns = self.dns.clone();
        new.peer_vips = self.peer_vips.clone();
        // A relayed SA's rekeyed successor runs through the same relay.
        new.relay_bind = self.relay_bind;
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
        if let Some(n) = find_notify(&payloads, notify::INVALID_KE_PAYLOAD) {
            // RFC 7296 1.3.2, 2.7: retry once with the group the responder names, when
            // we propose it.
            let group = n.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            let proposed = group
                .and_then(crate::crypto::Dh::from_id)
                .is_some_and(|g| conn.proposals.accepts_dh(g));
            if let (true, true, Some(g)) = (req.ke_retry, proposed, group) {
                // A collision answered meanwhile stays recorded for the retry's answer.
                self.send_rekey_ike(ctx, &conn, g, false);
                return;
            }
        }
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
        let Some((suite, one)) = (match sa_p {
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
        let Some(old_keys) = self.phase.keys() else {
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
        if let Some((their_min, _, answered)) = &collided {
            let lost = our_min.as_slice() < their_min.as_slice();
            ctx.effects.push(SaEffect::SettleCollision {
                id: *answered,
                survives: lost,
            });
            if lost {
                // RFC 7296 2.8.2: our new SA is the redundant one; the peer's (which we
                // answered, and which took the children) survives and the peer deletes
                // this old SA. Bring ours up only to delete it.
                let mut new = self.spawn_rekeyed(ctx, suite, keys, req.spi, peer_spi, true);
                ctx.events.push_back(Event::IkeRekeyCollision {
                    old: self.id,
                    kept: *answered,
                    redundant: new.id,
                });
                new.tasks.clear();
                new.tasks.push_back(Task::DeleteIke);
                new.rekeyed_from = None;
                new.state = State::Rekeyed;
                ctx.effects.push(SaEffect::Spawn(Box::new(new)));
                self.state = State::Rekeyed;
                return;
            }
        }
        let new = self.spawn_rekeyed(ctx, suite, keys, req.spi, peer_spi, true);
        let new_id = new.id;
        ctx.effects.push(SaEffect::Spawn(Box::new(new)));
        if let Some((_, _, answered)) = collided {
            // We won the collision: the children went to the SA we answered; bring them
            // to ours. The peer deletes the one it created.
            ctx.events.push_back(Event::IkeRekeyCollision {
                old: self.id,
                kept: new_id,
                redundant: answered,
            });
            ctx.effects.push(SaEffect::MoveChildren {
                from: answered,
                to: new_id,
            });
        }
        // The rekey initiator deletes the old IKE SA (RFC 7296 1.3.2).
        self.state = State::Rekeyed;
        self.tasks.clear();
        self.tasks.push_back(Task::DeleteIke);
    }

    /// Responder: the peer rekeys this IKE SA.
    pub(crate) fn respond_rekey_ike(
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
        // RFC 7296 2.25: while our CREATE_CHILD_SA or our Delete for a child is
        // outstanding, its answer must find this IKE SA and the child it concerns; the
        // peer retries its IKE rekey later (charon: "a child is half-open").
        let half_open = self
            .outstanding_is(|p| matches!(p, Pending::CreateChild(_) | Pending::DeleteChildren(_)))
            || self
                .children
                .iter()
                .any(|c| matches!(c.state, ChildState::Rekeying | ChildState::Deleting));
        if half_open {
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
        let Some(old_keys) = self.phase.keys() else {
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
        let mut new = self.spawn_rekeyed(ctx, suite, keys, peer_spi, our_spi, false);
        // Announced (and counted) once the collision is settled, if it survives.
        new.collision_pending = colliding;
        if colliding {
            self.answered_ike_rekey = Some((min_nonce(ni, &nr).to_vec(), Vec::new(), new.id));
        } else {
            self.state = State::Rekeyed;
        }
        ctx.effects.push(SaEffect::Spawn(Box::new(new)));
    }
}
