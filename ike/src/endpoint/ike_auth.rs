//! IKE_AUTH (RFC 7296 1.2, 2.15): identities, certificates, AUTH, and the first child
//! SA.

use std::net::SocketAddr;

use super::authn as auth;
use super::child_sa::ChildRequest;
use super::config_payload::CpAnswer;
use super::error::{AuthFailure, PeerMisbehaved};
use super::event::{DownReason, Event};
use super::ike_sa::{Handshake, IkeSa, Pending, Phase, State, Task};
use super::keys::IkeKeys;
use super::payloads::{error_notify, find_notify, notify_payload};
use super::{Ctx, SaEffect};
use crate::auth::Identity;
use crate::config::{Connection, LocalAuth, RemoteAuth};
use crate::iana::{exchange, notify, payload};
use crate::wire::{Authentication, Certificate, Header, Identification, Payload};

/// What AUTH signs: RealMessage | Nonce | prf(SK_p, ID') (RFC 7296 2.15).
fn signed_octets(
    initiator: bool,
    keys: &IkeKeys,
    hs: &Handshake,
    ours: bool,
    id: &Identification,
) -> Vec<u8> {
    // The initiator signs its IKE_SA_INIT request and the responder's nonce; the
    // responder signs its response and the initiator's nonce.
    let signer_is_i = ours == initiator;
    let (message, nonce) = if signer_is_i {
        (&hs.init_request, &hs.nr)
    } else {
        (&hs.init_response, &hs.ni)
    };
    let sk_p = if signer_is_i {
        keys.sk_pi()
    } else {
        keys.sk_pr()
    };
    auth::signed_octets(&|k, d| keys.prf(k, d), message, nonce, sk_p, id)
}

fn payload_id_i(p: &[Payload]) -> Option<&Identification> {
    p.iter().find_map(|x| match x {
        Payload::IdI(i) => Some(i),
        _ => None,
    })
}

fn payload_id_r(p: &[Payload]) -> Option<&Identification> {
    p.iter().find_map(|x| match x {
        Payload::IdR(i) => Some(i),
        _ => None,
    })
}

fn payload_auth(p: &[Payload]) -> Option<&Authentication> {
    p.iter().find_map(|x| match x {
        Payload::Auth(a) => Some(a),
        _ => None,
    })
}

fn certs(p: &[Payload]) -> Vec<&[u8]> {
    p.iter()
        .filter_map(|x| match x {
            Payload::Cert(c) if c.encoding == crate::iana::cert::X509_SIGNATURE => {
                Some(c.data.as_slice())
            }
            _ => None,
        })
        .collect()
}

impl IkeSa {
    /// Our AUTH payload and the CERT payloads that go before it.
    fn our_auth(
        &self,
        (keys, hs): (&IkeKeys, &Handshake),
        conn: &Connection,
        id: &Identification,
    ) -> Result<(Vec<Payload>, Authentication), AuthFailure> {
        let octets = signed_octets(self.initiator, keys, hs, true, id);
        match &conn.local_auth {
            LocalAuth::Psk(psk) => Ok((
                Vec::new(),
                Authentication {
                    method: crate::iana::auth::SHARED_KEY_MIC,
                    data: auth::psk_auth(&|k, d| keys.prf(k, d), psk, &octets),
                },
            )),
            LocalAuth::Pubkey { key, certs } => {
                let auth = key
                    .sign_auth(&hs.peer_hashes, &octets)
                    .map_err(AuthFailure::OwnAuth)?;
                let cert_payloads = certs
                    .iter()
                    .map(|c| {
                        Payload::Cert(Certificate {
                            encoding: crate::iana::cert::X509_SIGNATURE,
                            data: c.clone(),
                        })
                    })
                    .collect();
                Ok((cert_payloads, auth))
            }
        }
    }

    /// Checks the peer's AUTH payload against `conn`'s remote auth; returns the peer's
    /// identity.
    fn verify_peer(
        &self,
        ctx: &Ctx<'_>,
        (keys, hs): (&IkeKeys, &Handshake),
        conn: &Connection,
        id: &Identification,
        auth_p: &Authentication,
        payloads: &[Payload],
    ) -> Result<Identity, AuthFailure> {
        let peer = Identity::from_wire(id).map_err(AuthFailure::BadIdentity)?;
        if !conn.remote_id.matches(&peer) {
            return Err(AuthFailure::IdentityMismatch {
                peer,
                configured: conn.remote_id.clone(),
            });
        }
        let octets = signed_octets(self.initiator, keys, hs, false, id);
        match &conn.remote_auth {
            RemoteAuth::Psk(psk) => {
                if auth_p.method != crate::iana::auth::SHARED_KEY_MIC {
                    return Err(AuthFailure::MethodMismatch(auth_p.method));
                }
                if auth::psk_verify(&|k, d| keys.prf(k, d), psk, &octets, &auth_p.data) {
                    Ok(peer)
                } else {
                    Err(AuthFailure::PskMismatch)
                }
            }
            RemoteAuth::Pubkey(trust) => {
                let chain = certs(payloads);
                let Some((ee, rest)) = chain.split_first() else {
                    return Err(AuthFailure::NoCertificate);
                };
                let verified = trust
                    .verify_chain(ee, rest, ctx.unix_now)
                    .map_err(AuthFailure::Untrusted)?;
                if !verified.matches_id(&peer) {
                    return Err(AuthFailure::IdentityNotInCertificate(peer));
                }
                verified
                    .verify_auth(auth_p, &octets)
                    .map_err(AuthFailure::BadSignature)?;
                Ok(peer)
            }
        }
    }

    /// Initiator: sends IKE_AUTH with the first queued child SA.
    pub(crate) fn start_auth(&mut self, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        let Phase::Auth(keys, hs) = &self.phase else {
            return;
        };
        let id = conn.local_id.to_wire();
        let (cert_payloads, auth_p) = match self.our_auth((keys, hs), &conn, &id) {
            Ok(x) => x,
            Err(e) => {
                self.die(ctx, DownReason::AuthenticationFailed(e));
                return;
            }
        };
        let mut payloads = vec![Payload::IdI(id)];
        payloads.extend(cert_payloads);
        if self.initial_contact {
            payloads.push(notify_payload(notify::INITIAL_CONTACT, Vec::new()));
        }
        if let RemoteAuth::Pubkey(trust) = &conn.remote_auth {
            if let Some(req) = trust.certreq() {
                payloads.push(Payload::CertReq(req));
            }
        }
        if !conn.remote_id.is_any() {
            payloads.push(Payload::IdR(conn.remote_id.to_wire()));
        }
        payloads.push(Payload::Auth(auth_p));
        payloads.extend(self.me_auth_request());
        payloads.extend(IkeSa::cfg_request(&conn));
        self.local_id = Some(conn.local_id.clone());
        let first = match self.tasks.front() {
            Some(Task::CreateChild(c)) => Some(*c),
            _ => None,
        };
        let child = first.and_then(|cfg| {
            self.tasks.pop_front();
            // RFC 7296 1.2: no KE in IKE_AUTH, so no PFS group in its proposals.
            ChildRequest::new(ctx, &conn, cfg, None, false).ok()
        });
        if let Some(req) = &child {
            payloads.extend(req.request_payloads(false));
        }
        self.send_request(ctx, exchange::IKE_AUTH, payloads, Pending::Auth(child));
    }

    /// Initiator: the IKE_AUTH response.
    pub(crate) fn auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        _h: Header,
        child: Option<ChildRequest>,
        payloads: Vec<Payload>,
    ) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        if find_notify(&payloads, notify::AUTHENTICATION_FAILED).is_some() {
            self.die(
                ctx,
                DownReason::AuthenticationFailed(AuthFailure::RejectedByPeer),
            );
            return;
        }
        let (Some(id), Some(auth_p)) = (payload_id_r(&payloads), payload_auth(&payloads)) else {
            let missing = if payload_id_r(&payloads).is_none() {
                payload::IDR
            } else {
                payload::AUTH
            };
            let reason = match error_notify(&payloads) {
                Some(n) => DownReason::PeerError(n.kind),
                None => DownReason::PeerMisbehaved(PeerMisbehaved::MissingPayload(missing)),
            };
            self.die(ctx, reason);
            return;
        };
        let Phase::Auth(keys, hs) = &self.phase else {
            return;
        };
        match self.verify_peer(ctx, (keys, hs), &conn, id, auth_p, &payloads) {
            Ok(peer) => self.remote_id = Some(peer),
            Err(why) => {
                // RFC 7296 2.21.2: the responder thinks the SA is up; tell it in a
                // separate INFORMATIONAL, sent once (no SA is left to retransmit it).
                let failed = vec![notify_payload(notify::AUTHENTICATION_FAILED, Vec::new())];
                self.send_final_request(ctx, exchange::INFORMATIONAL, failed);
                self.die(ctx, DownReason::AuthenticationFailed(why));
                return;
            }
        }
        self.me_auth_response(&payloads);
        self.take_cfg_reply(&payloads);
        self.established(ctx, &conn);
        ctx.effects.push(SaEffect::Unique {
            id: self.id,
            initial_contact: false,
        });
        if let Some(req) = child {
            self.finish_child_request(ctx, req, &payloads, true);
        }
        self.end_handshake();
        if !conn.vips.is_empty() && self.own_vips.is_empty() {
            // We asked for virtual IPs and got none (RFC 7296 3.10.1
            // INTERNAL_ADDRESS_FAILURE): this IKE SA carries nothing for us.
            let why = error_notify(&payloads)
                .map(|n| n.kind)
                .unwrap_or(notify::INTERNAL_ADDRESS_FAILURE);
            self.closing = Some(DownReason::PeerError(why));
            self.queue_delete_ike(ctx);
        }
        self.run_tasks(ctx);
    }

    /// Marks the IKE SA established and reports it.
    fn established(&mut self, ctx: &mut Ctx<'_>, conn: &Connection) {
        self.state = State::Established;
        self.established = Some(ctx.now);
        self.last_heard = ctx.now;
        if !conn.rekey_time.is_zero() {
            self.rekey_at = Some(ctx.now + conn.rekey_time);
        }
        ctx.stats.handshakes += 1;
        ctx.events
            .push_back(Event::IkeUp(Box::new(self.info(ctx.connections))));
    }

    /// IKE_AUTH is complete: drops the handshake data (zeroized on drop), keeping the
    /// keys.
    fn end_handshake(&mut self) {
        self.phase = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Auth(keys, _handshake) => Phase::Up(keys),
            other => other,
        };
    }

    /// Responder: IKE_AUTH request.
    pub(crate) fn respond_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        let fail = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, why: AuthFailure| {
            sa.send_response(
                ctx,
                exchange::IKE_AUTH,
                h.message_id,
                vec![notify_payload(notify::AUTHENTICATION_FAILED, Vec::new())],
                from,
            );
            sa.die(ctx, DownReason::AuthenticationFailed(why));
        };
        let (Some(idi), Some(auth_p)) = (payload_id_i(&payloads), payload_auth(&payloads)) else {
            let missing = if payload_id_i(&payloads).is_none() {
                payload::IDI
            } else {
                payload::AUTH
            };
            fail(self, ctx, AuthFailure::MissingPayload(missing));
            return;
        };
        let peer = match Identity::from_wire(idi) {
            Ok(p) => p,
            Err(e) => {
                fail(self, ctx, AuthFailure::BadIdentity(e));
                return;
            }
        };
        let wanted_local = payload_id_r(&payloads).and_then(|i| Identity::from_wire(i).ok());
        // Pick the connection by the identities (RFC 7296 2.15 leaves the policy
        // lookup to us; strongSwan does the same): addresses, peer ID, our ID.
        let candidates: Vec<usize> = ctx
            .connections
            .iter()
            .enumerate()
            .filter(|(_, c)| c.admits(self.local, self.remote) || c.admits(self.local, from))
            .filter(|(_, c)| c.remote_id.matches(&peer))
            .filter(|(_, c)| {
                wanted_local
                    .as_ref()
                    .is_none_or(|w| w.matches(&c.local_id) || c.local_id.matches(w))
            })
            .filter(|(_, c)| match c.remote_auth {
                RemoteAuth::Psk(_) => auth_p.method == crate::iana::auth::SHARED_KEY_MIC,
                RemoteAuth::Pubkey(_) => auth_p.method != crate::iana::auth::SHARED_KEY_MIC,
            })
            .map(|(i, _)| i)
            .collect();
        let Some(&ci) = candidates.first() else {
            fail(self, ctx, AuthFailure::NoConnection(peer));
            return;
        };
        let conn = ctx.connections[ci].clone();
        self.conn = Some(ci);
        let Phase::Auth(keys, hs) = &self.phase else {
            return;
        };
        let checked = self
            .verify_peer(ctx, (keys, hs), &conn, idi, auth_p, &payloads)
            .and_then(|_| self.our_auth((keys, hs), &conn, &conn.local_id.to_wire()));
        let (cert_payloads, our_auth) = match checked {
            Ok(x) => x,
            Err(why) => {
                fail(self, ctx, why);
                return;
            }
        };
        self.remote_id = Some(peer);
        self.local_id = Some(conn.local_id.clone());
        let idr = conn.local_id.to_wire();
        let mut out = vec![Payload::IdR(idr)];
        out.extend(cert_payloads);
        out.push(Payload::Auth(our_auth));
        let mediation = self.me_respond_auth(ctx, &conn, idi, from, &payloads);
        let wants_child = payloads.iter().any(|p| matches!(p, Payload::Sa(_)));
        if let Some(me) = mediation {
            out.extend(me);
            // A mediation connection carries no child SA (charon's server neither).
            if wants_child {
                out.push(notify_payload(notify::NO_ADDITIONAL_SAS, Vec::new()));
            }
        }
        let child = if self.me.is_some() {
            None
        } else {
            match self.answer_cfg_request(ctx, &conn, &payloads) {
                CpAnswer::Refuse(kind) => {
                    // RFC 7296 3.10.1: no child SA in this IKE_AUTH.
                    out.push(notify_payload(kind, Vec::new()));
                    None
                }
                answer => {
                    if let CpAnswer::Reply(cp) = answer {
                        out.push(cp);
                    }
                    wants_child.then(|| self.respond_child(ctx, &conn, &payloads, None, false))
                }
            }
        };
        let mut new_child = None;
        if let Some(result) = child {
            match result {
                Ok((resp, c, info)) => {
                    out.extend(resp);
                    new_child = Some((c, info));
                }
                Err(kind) => out.push(notify_payload(kind, Vec::new())),
            }
        }
        self.send_response(ctx, exchange::IKE_AUTH, h.message_id, out, from);
        self.established(ctx, &conn);
        ctx.effects.push(SaEffect::Unique {
            id: self.id,
            initial_contact: find_notify(&payloads, notify::INITIAL_CONTACT).is_some(),
        });
        self.me_mediated_up(ctx, &conn);
        self.end_handshake();
        if let Some((c, info)) = new_child {
            self.children.push(c);
            ctx.events.push_back(Event::ChildUp(info));
        }
    }
}
