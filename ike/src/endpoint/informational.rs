//! INFORMATIONAL (RFC 7296 1.4): deletes of child and IKE SAs, liveness checks.

use std::net::SocketAddr;

use super::child_sa::{ChildState, DELETED_EARLY_MAX};
use super::error::AuthFailure;
use super::event::DownReason;
use super::ike_sa::{IkeSa, Outstanding, Pending, State};
use super::payloads::find_notify;
use super::{Ctx, SaEffect};
use crate::iana::{exchange, notify, protocol};
use crate::wire::{Delete, Header, Payload};

impl IkeSa {
    /// Sends a Delete for these child SAs (our inbound SPIs, RFC 7296 1.4.1).
    pub(crate) fn start_delete_children(&mut self, ctx: &mut Ctx<'_>, mut spis: Vec<u32>) {
        // Deleting the SA that won a rekey collision (RFC 7296 2.8.1) deletes the child:
        // its redundant twin, left for the peer to delete, goes in the same request, or
        // traffic would move onto it before the peer may have it.
        let twins: Vec<u32> = self
            .children
            .iter()
            .filter(|c| spis.contains(&c.spi_in) && c.state == ChildState::Installed && !c.replaced)
            .flat_map(|w| {
                self.children.iter().filter(move |t| {
                    t.cfg == w.cfg && t.replaced && t.state == ChildState::Installed
                })
            })
            .map(|t| t.spi_in)
            .collect();
        spis.extend(twins);
        let mut live = Vec::new();
        for c in self
            .children
            .iter_mut()
            .filter(|c| spis.contains(&c.spi_in))
        {
            if c.state != ChildState::Deleted {
                c.state = ChildState::Deleting;
                live.push(c.spi_in);
            }
        }
        if live.is_empty() {
            return;
        }
        let del = Payload::Delete(Delete {
            protocol: protocol::ESP,
            spis: live.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        });
        self.send_request(
            ctx,
            exchange::INFORMATIONAL,
            vec![del],
            Pending::DeleteChildren(live),
        );
    }

    /// Moves the collision record of child `spi_in` into our outstanding rekey of it.
    fn stash_collision(&mut self, spi_in: u32) {
        let collision = self
            .children
            .iter_mut()
            .find(|c| c.spi_in == spi_in)
            .and_then(|c| c.collision.take());
        if let Some(Outstanding {
            pending: Pending::CreateChild(req),
            ..
        }) = self.outstanding.as_mut()
        {
            if req.rekeys == Some(spi_in) {
                req.collision = collision;
            }
        }
    }

    /// The peer deleted an SA we do not know: maybe the one its answer to our
    /// outstanding CREATE_CHILD_SA request creates, the answer being late.
    fn note_deleted_early(&mut self, spi_out: u32) {
        if let Some(Outstanding {
            pending: Pending::CreateChild(req),
            ..
        }) = self.outstanding.as_mut()
        {
            if req.deleted_early.len() < DELETED_EARLY_MAX {
                req.deleted_early.push(spi_out);
            }
        }
    }

    /// The peer confirmed our child deletes.
    pub(crate) fn delete_children_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        spis: Vec<u32>,
        _payloads: Vec<Payload>,
    ) {
        for spi in spis {
            let reason = if self
                .children
                .iter()
                .any(|c| c.spi_in == spi && c.superseded(&self.children))
            {
                DownReason::Rekeyed
            } else {
                DownReason::Terminated
            };
            self.remove_child(ctx, spi, reason);
        }
    }

    /// Responder: INFORMATIONAL request.
    pub(crate) fn respond_informational(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        // RFC 7296 2.21.2: the initiator rejected our AUTH after we had completed the SA.
        if find_notify(&payloads, notify::AUTHENTICATION_FAILED).is_some() {
            self.send_response(ctx, exchange::INFORMATIONAL, h.message_id, Vec::new(), from);
            self.die(
                ctx,
                DownReason::AuthenticationFailed(AuthFailure::RejectedByPeer),
            );
            return;
        }
        let deletes_ike = payloads
            .iter()
            .any(|p| matches!(p, Payload::Delete(d) if d.protocol == protocol::IKE));
        if deletes_ike && self.collision_pending {
            // The peer lost a rekey collision and deletes its redundant SA, which holds
            // our children until our own rekey's answer (see `collision_pending`). Left
            // unanswered and unconsumed: a retransmission after that answer is served.
            self.expected_request_id = h.message_id;
            ctx.stats.unexpected += 1;
            return;
        }
        if self.me.is_some() && self.respond_relay(ctx, h, from, &payloads) {
            return;
        }
        let mut out = Vec::new();
        let mut delete_ike = false;
        for p in &payloads {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                protocol::IKE => delete_ike = true,
                protocol::ESP => {
                    let mut ours = Vec::new();
                    for spi in &d.spis {
                        let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                            continue;
                        };
                        // The peer names its inbound SPI: our outbound one.
                        let spi_out = u32::from_be_bytes(b);
                        let Some(c) = self.children.iter().find(|c| c.spi_out == spi_out) else {
                            self.note_deleted_early(spi_out);
                            continue;
                        };
                        let spi_in = c.spi_in;
                        // RFC 7296 1.4.1: when our own delete crossed this one, the
                        // response carries no Delete for it.
                        if c.state != ChildState::Deleting {
                            ours.push(spi_in.to_be_bytes().to_vec());
                        }
                        // RFC 7296 2.8.1: the peer deletes the old SA of a collision
                        // once its own rekey, which we answered, replaced it: that SA
                        // takes over now, and our rekey's answer is settled against the
                        // collision's nonces when it comes.
                        if c.state == ChildState::Rekeying && c.collision.is_some() {
                            self.stash_collision(spi_in);
                            self.remove_child(ctx, spi_in, DownReason::Rekeyed);
                            continue;
                        }
                        // RFC 7296 2.25.1: the peer deleted an SA our rekey is about to
                        // replace. Answer as usual, but keep sending on it until the
                        // rekey's answer: a rekey then, or its end (a DELETE that beat a
                        // late CREATE_CHILD_SA answer).
                        if matches!(c.state, ChildState::Rekeying | ChildState::RekeyingDeleted) {
                            if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
                                c.state = ChildState::RekeyingDeleted;
                            }
                            continue;
                        }
                        let reason = if c.superseded(&self.children) {
                            DownReason::Rekeyed
                        } else {
                            DownReason::DeletedByPeer
                        };
                        self.remove_child(ctx, spi_in, reason);
                    }
                    if !ours.is_empty() {
                        out.push(Payload::Delete(Delete {
                            protocol: protocol::ESP,
                            spis: ours,
                        }));
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(ctx, exchange::INFORMATIONAL, h.message_id, Vec::new(), from);
            if let Some((_, _, answered)) = self.answered_ike_rekey.take() {
                // We answered the peer's rekey of this SA while ours was in flight, and
                // the peer deletes it: it won, or never saw our request (RFC 7296 2.8.2).
                // Its SA, which took the children, is the one that stays; ours, if the
                // peer made it, is its to retire.
                self.state = State::Rekeyed;
                ctx.effects.push(SaEffect::SettleCollision {
                    id: answered,
                    survives: true,
                });
            }
            let reason = if self.state == State::Rekeyed {
                DownReason::Rekeyed
            } else {
                DownReason::DeletedByPeer
            };
            self.die(ctx, reason);
            return;
        }
        self.send_response(ctx, exchange::INFORMATIONAL, h.message_id, out, from);
    }
}
