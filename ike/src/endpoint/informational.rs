//! INFORMATIONAL (RFC 7296 1.4): deletes of child and IKE SAs, liveness checks.

use std::net::SocketAddr;

use super::child_sa::ChildState;
use super::error::AuthFailure;
use super::event::DownReason;
use super::ike_sa::{IkeSa, Pending, State};
use super::payloads::find_notify;
use super::Ctx;
use crate::iana::{exchange, notify, protocol};
use crate::wire::{Delete, Header, Payload};

impl IkeSa {
    /// Sends a Delete for these child SAs (our inbound SPIs, RFC 7296 1.4.1).
    pub(crate) fn start_delete_children(&mut self, ctx: &mut Ctx<'_>, spis: Vec<u32>) {
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
                            continue;
                        };
                        let spi_in = c.spi_in;
                        // RFC 7296 1.4.1: when our own delete crossed this one, the
                        // response carries no Delete for it.
                        if c.state != ChildState::Deleting {
                            ours.push(spi_in.to_be_bytes().to_vec());
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
