//! IKE_SA_INIT (RFC 7296 1.2): proposals, KE, nonces, NAT detection, COOKIE (2.6) and
//! INVALID_KE_PAYLOAD (1.3).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::digest;

use super::error::PeerMisbehaved;
use super::event::DownReason;
use super::ike_sa::{Handshake, IkeSa, Pending, Phase, State, Task};
use super::keys::Dh;
use super::keys::IkeKeys;
use super::payloads::{error_notify, find_notify, ke_of, nonce_of, notify_payload, sa_of};
use super::{Ctx, Dropped, IkeSaId};
use crate::config::RemoteAuth;
use crate::iana::{exchange, notify, payload};
use crate::nat::{self, NatState};
use crate::wire::{Flags, Header, KeyExchange, Message, Payload};

/// Most COOKIE and INVALID_KE round trips an initiator makes before giving up.
const MAX_INIT_RETRIES: u32 = 4;

/// Responder-side cookie state (RFC 7296 2.6).
pub(crate) struct CookieJar<'a> {
    pub(crate) secret: &'a [u8; 32],
    /// Too many half-open SAs: every IKE_SA_INIT must carry a valid cookie.
    pub(crate) required: bool,
}

impl CookieJar<'_> {
    /// Cookie = SHA-256(secret | Ni | IPi | SPIi): stateless and unguessable.
    fn cookie(&self, ni: &[u8], peer: SocketAddr, spi_i: u64) -> Vec<u8> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.secret);
        ctx.update(ni);
        match peer.ip() {
            std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
            std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        ctx.finish().as_ref().to_vec()
    }
}

/// Initiators lately answered with a COOKIE, by (address, SPIi). A cookieless
/// IKE_SA_INIT from one of them is a stale copy of the request it has since retried
/// with the cookie (it retransmitted while our answer was on its way): it gets the
/// COOKIE again even when we are below the threshold by then. An SA built from the
/// copy would be verified over a request the initiator does not sign (RFC 7296 2.15),
/// and the initiator cannot tell that answer from the one to its retry.
///
/// Bounded in size and age, so a flood of spoofed requests costs at most
/// [`Challenged::MAX`] entries. When an entry younger than [`Challenged::TTL`] has to
/// make room, [`Challenged::insert`] says so and the endpoint asks every initiator for
/// a cookie until that much time has passed: no stale copy is answered with an SA,
/// whoever it was pushed out for.
#[derive(Default)]
pub(crate) struct Challenged {
    at: HashMap<(SocketAddr, u64), Instant>,
    /// Insertion order, for eviction (an entry whose time no longer matches `at` was
    /// refreshed later and is skipped).
    order: VecDeque<(Instant, (SocketAddr, u64))>,
}

impl Challenged {
    const MAX: usize = 16_384;
    /// Longer than an initiator's retransmissions of one IKE_SA_INIT.
    pub(crate) const TTL: Duration = Duration::from_secs(60);

    /// Remembers `key`; true if an entry still within [`Challenged::TTL`] was pushed
    /// out to make room.
    pub(crate) fn insert(&mut self, now: Instant, key: (SocketAddr, u64)) -> bool {
        let mut pushed_out = false;
        while let Some(&(t, k)) = self.order.front() {
            let live = now.saturating_duration_since(t) < Self::TTL;
            if self.order.len() < Self::MAX && live {
                break;
            }
            self.order.pop_front();
            if self.at.get(&k) == Some(&t) {
                self.at.remove(&k);
                pushed_out |= live;
            }
        }
        self.at.insert(key, now);
        self.order.push_back((now, key));
        pushed_out
    }

    pub(crate) fn contains(&self, now: Instant, key: &(SocketAddr, u64)) -> bool {
        self.at
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < Self::TTL)
    }
}

/// Hash algorithms we can sign and verify with (RFC 7427 4).
fn signature_hashes() -> Vec<u8> {
    let mut d = Vec::new();
    for h in crate::auth::ANNOUNCED_HASHES {
        d.extend_from_slice(&h.to_be_bytes());
    }
    d
}

/// Whether an IKE_SA_INIT request carries a COOKIE notify (RFC 7296 2.6).
pub(crate) fn carries_cookie(msg: &Message) -> bool {
    find_notify(&msg.payloads, notify::COOKIE).is_some()
}

fn parse_hashes(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn nat_payloads(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    fake: bool,
) -> [Payload; 2] {
    let src = if fake {
        nat::fake_hash(spi_i, spi_r)
    } else {
        nat::detection_hash(spi_i, spi_r, local)
    };
    [
        notify_payload(notify::NAT_DETECTION_SOURCE_IP, src),
        notify_payload(
            notify::NAT_DETECTION_DESTINATION_IP,
            nat::detection_hash(spi_i, spi_r, remote),
        ),
    ]
}

fn detect_nat(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    payloads: &[Payload],
) -> NatState {
    let sources: Vec<&[u8]> = payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) if n.kind == notify::NAT_DETECTION_SOURCE_IP => {
                Some(n.data.as_slice())
            }
            _ => None,
        })
        .collect();
    let dest =
        find_notify(payloads, notify::NAT_DETECTION_DESTINATION_IP).map(|n| n.data.as_slice());
    NatState::detect(spi_i, spi_r, local, remote, &sources, dest).unwrap_or_default()
}

fn emit(header: Header, payloads: Vec<Payload>) -> Vec<u8> {
    let mut out = Vec::new();
    Message { header, payloads }.emit(&mut out);
    out
}

impl IkeSa {
    /// Starts an IKE SA as initiator: sends IKE_SA_INIT.
    pub(crate) fn initiate(
        ctx: &mut Ctx<'_>,
        id: IkeSaId,
        conn: usize,
        children: Vec<usize>,
        local: SocketAddr,
        remote: SocketAddr,
        connect_id: Option<crate::wire::mediation::ConnectId>,
    ) -> IkeSa {
        // SPIi first, then Ni: the order the random values were always drawn in.
        let spi_i = ctx.random_u64();
        let mut handshake = Handshake::new(ctx.nonce());
        handshake.connect_id = connect_id;
        let mut sa = IkeSa::blank(
            ctx.now,
            true,
            local,
            remote,
            Phase::Init(Box::new(handshake)),
        );
        sa.id = id;
        sa.conn = Some(conn);
        sa.spi_i = spi_i;
        for c in children {
            sa.tasks.push_back(Task::CreateChild(c));
        }
        let group = ctx.connections[conn]
            .proposals
            .preferred_dh()
            .map_or(crate::iana::dh::CURVE25519, |d| d.id());
        match Dh::generate(group, ctx.rng) {
            Ok(dh) => {
                if let Some(hs) = sa.phase.handshake_mut() {
                    hs.dh = Some(dh);
                }
                sa.send_init(ctx);
            }
            Err(e) => sa.die(ctx, DownReason::Crypto(e)),
        }
        sa
    }

    fn send_init(&mut self, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return;
        };
        let Some(hs) = self.phase.handshake() else {
            return;
        };
        let Some(dh) = hs.dh.as_ref() else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &hs.cookie {
            // RFC 7296 2.6: the COOKIE notify comes first.
            payloads.push(notify_payload(notify::COOKIE, c.clone()));
        }
        payloads.push(Payload::Sa(conn.proposals.to_wire(&[])));
        payloads.push(Payload::Ke(KeyExchange {
            group: dh.group(),
            data: dh.public_key().to_vec(),
        }));
        payloads.push(Payload::Nonce(hs.ni.clone()));
        payloads.extend(nat_payloads(
            self.spi_i,
            0,
            self.local,
            self.remote,
            conn.encap,
        ));
        if conn.fragmentation {
            payloads.push(notify_payload(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        payloads.push(notify_payload(
            notify::SIGNATURE_HASH_ALGORITHMS,
            signature_hashes(),
        ));
        payloads.extend(self.me_init_request(&conn));
        if let Some(id) = &hs.connect_id {
            // A mediated IKE SA names the mediation attempt it comes from (charon's
            // ike_init adds ME_CONNECTID; its responder does not need it).
            payloads.push(notify_payload(notify::ME_CONNECTID, id.as_bytes().to_vec()));
        }
        let header = Header {
            spi_i: self.spi_i,
            spi_r: 0,
            next_payload: payload::NONE,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: Flags {
                initiator: true,
                response: false,
                version: false,
            },
            message_id: 0,
            length: 0,
        };
        let bytes = emit(header, payloads);
        if let Some(hs) = self.phase.handshake_mut() {
            hs.init_request = bytes.clone();
        }
        self.send_plain_request(ctx, bytes, Pending::Init);
    }

    /// Initiator: the IKE_SA_INIT response arrived.
    pub(crate) fn handle_init_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: &Message,
    ) -> Result<(), Dropped> {
        if msg.header.message_id != 0 {
            return Err(Dropped::Unexpected);
        }
        let Some(conn) = self.connection(ctx.connections).cloned() else {
            return Err(Dropped::Unexpected);
        };
        let p = &msg.payloads;
        let Some(hs) = self.phase.handshake_mut() else {
            return Err(Dropped::Unexpected);
        };
        if let Some(c) = find_notify(p, notify::COOKIE) {
            if hs.cookie.as_ref() == Some(&c.data) {
                // The answer to a stale copy of our first request: the retry with this
                // cookie is already in flight (and retransmitted on its timer).
                return Err(Dropped::Unexpected);
            }
            if hs.init_retries >= MAX_INIT_RETRIES || c.data.is_empty() || c.data.len() > 64 {
                return Err(Dropped::Unexpected);
            }
            hs.init_retries += 1;
            hs.cookie = Some(c.data.clone());
            self.send_init(ctx);
            return Ok(());
        }
        if let Some(n) = error_notify(p) {
            if n.kind == notify::INVALID_KE_PAYLOAD {
                let group = parse_hashes(&n.data).first().copied().unwrap_or(0);
                let offered =
                    crate::crypto::Dh::from_id(group).is_some_and(|g| conn.proposals.accepts_dh(g));
                if !offered
                    || hs.init_retries >= MAX_INIT_RETRIES
                    || hs.dh.as_ref().is_some_and(|d| d.group() == group)
                {
                    self.die(ctx, DownReason::NoProposalChosen);
                    return Ok(());
                }
                hs.init_retries += 1;
                match Dh::generate(group, ctx.rng) {
                    Ok(dh) => hs.dh = Some(dh),
                    Err(_) => {
                        self.die(ctx, DownReason::NoProposalChosen);
                        return Ok(());
                    }
                }
                self.send_init(ctx);
                return Ok(());
            }
            let reason = if n.kind == notify::NO_PROPOSAL_CHOSEN {
                DownReason::NoProposalChosen
            } else {
                DownReason::PeerError(n.kind)
            };
            self.die(ctx, reason);
            return Ok(());
        }
        let h = msg.header;
        let (Some(sa), Some(ke), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return Err(Dropped::Malformed);
        };
        if h.spi_r == 0 {
            return Err(Dropped::Malformed);
        }
        let suite = match sa {
            [one] if conn.proposals.check_ike_reply(one).is_ok() => {
                match conn.proposals.check_ike_reply(one) {
                    Ok(s) => s,
                    Err(_) => return Err(Dropped::Unexpected),
                }
            }
            _ => {
                self.die(
                    ctx,
                    DownReason::PeerMisbehaved(PeerMisbehaved::UnofferedProposal),
                );
                return Ok(());
            }
        };
        let Some(dh) = self.phase.handshake_mut().and_then(|hs| hs.dh.take()) else {
            return Err(Dropped::Unexpected);
        };
        if dh.group() != ke.group || suite.dh.id() != ke.group {
            self.die(
                ctx,
                DownReason::PeerMisbehaved(PeerMisbehaved::KeGroupMismatch),
            );
            return Ok(());
        }
        let shared = match dh.agree(&ke.data) {
            Ok(s) => s,
            Err(e) => {
                self.die(ctx, DownReason::PeerMisbehaved(PeerMisbehaved::BadKe(e)));
                return Ok(());
            }
        };
        self.spi_r = h.spi_r;
        let Phase::Init(mut hs) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return Err(Dropped::Unexpected);
        };
        hs.nr = nr.to_vec();
        let keys = match IkeKeys::derive(
            &suite,
            &hs.ni,
            &hs.nr,
            shared.as_bytes(),
            self.spi_i,
            self.spi_r,
            true,
        ) {
            Ok(k) => k,
            Err(e) => {
                self.die(ctx, DownReason::Crypto(e));
                return Ok(());
            }
        };
        if let Some(n) = find_notify(p, notify::SIGNATURE_HASH_ALGORITHMS) {
            hs.peer_hashes = parse_hashes(&n.data);
        }
        hs.init_response = raw.to_vec();
        self.phase = Phase::Auth(keys, hs);
        self.suite = Some(suite);
        self.nat = detect_nat(self.spi_i, self.spi_r, local, remote, p);
        self.nat.fake = conn.encap;
        self.peer_fragmentation = find_notify(p, notify::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        self.outstanding = None;
        self.next_request_id = 1;
        if !self.me_init_response(ctx, &conn, local, p) {
            return Ok(());
        }
        if self.nat.any() {
            // RFC 7296 2.23: float to the NAT-T port for everything after IKE_SA_INIT.
            self.local.set_port(ctx.config.port_nat_t);
            if self.remote.port() == ctx.config.port || self.remote.port() == 500 {
                self.remote.set_port(4500);
            }
        }
        self.state = State::AuthSent;
        self.start_auth(ctx);
        Ok(())
    }

    /// Responder: a new IKE_SA_INIT request. Returns the half-open SA, or `None` when
    /// it was answered statelessly (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN).
    pub(crate) fn respond_init(
        ctx: &mut Ctx<'_>,
        cookies: &CookieJar<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: &Message,
    ) -> Result<Option<IkeSa>, Dropped> {
        let h = msg.header;
        if h.message_id != 0 || h.spi_i == 0 {
            return Err(Dropped::Malformed);
        }
        let p = &msg.payloads;
        let (Some(sa), Some(ke), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return Err(Dropped::Malformed);
        };
        let reply = |ctx: &mut Ctx<'_>, payloads: Vec<Payload>| {
            let header = Header {
                spi_i: h.spi_i,
                spi_r: 0,
                next_payload: payload::NONE,
                version: 0x20,
                exchange: exchange::IKE_SA_INIT,
                flags: Flags {
                    initiator: false,
                    response: true,
                    version: false,
                },
                message_id: 0,
                length: 0,
            };
            ctx.transmits.push_back(super::Transmit {
                local,
                remote,
                data: emit(header, payloads),
            });
        };
        if cookies.required {
            let want = cookies.cookie(ni, remote, h.spi_i);
            let got = match p.first() {
                Some(Payload::Notify(n)) if n.kind == notify::COOKIE => Some(n.data.as_slice()),
                _ => None,
            };
            if got != Some(want.as_slice()) {
                ctx.stats.cookies_sent += 1;
                reply(ctx, vec![notify_payload(notify::COOKIE, want)]);
                return Ok(None);
            }
        }
        // Among the connections that admit these addresses, the first whose proposals
        // accept the initiator's, preferring one that accepts the KE it sent: two
        // connections to one gateway may differ only in their proposals (IKE_AUTH picks
        // again by identity).
        let mut fallback = None;
        let mut found = None;
        for (i, c) in ctx.connections.iter().enumerate() {
            if !c.admits(local, remote) {
                continue;
            }
            if let Ok(sel) = c.proposals.select_ike(sa, Some(ke.group)) {
                if sel.suite.dh.id() == ke.group {
                    found = Some((i, sel));
                    break;
                }
                fallback.get_or_insert((i, sel));
            }
        }
        let Some((ci, selected)) = found.or(fallback) else {
            reply(
                ctx,
                vec![notify_payload(notify::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            return Ok(None);
        };
        let conn = &ctx.connections[ci];
        let suite = selected.suite;
        let chosen = selected.reply(&[]);
        if suite.dh.id() != ke.group {
            // RFC 7296 1.3: tell the initiator which group we want.
            reply(
                ctx,
                vec![notify_payload(
                    notify::INVALID_KE_PAYLOAD,
                    suite.dh.id().to_be_bytes().to_vec(),
                )],
            );
            return Ok(None);
        }
        let dh = Dh::generate(suite.dh.id(), ctx.rng).map_err(|_| Dropped::Unexpected)?;
        let shared = match dh.agree(&ke.data) {
            Ok(s) => s,
            Err(_) => {
                reply(
                    ctx,
                    vec![notify_payload(notify::INVALID_SYNTAX, Vec::new())],
                );
                return Ok(None);
            }
        };
        let spi_r = ctx.random_u64();
        let mut hs = Handshake::new(ni.to_vec());
        hs.nr = ctx.nonce();
        hs.init_request = raw.to_vec();
        hs.connect_id = find_notify(p, notify::ME_CONNECTID)
            .and_then(|n| crate::wire::mediation::ConnectId::new(&n.data).ok());
        let keys = IkeKeys::derive(
            &suite,
            &hs.ni,
            &hs.nr,
            shared.as_bytes(),
            h.spi_i,
            spi_r,
            false,
        )
        .map_err(|_| Dropped::Unexpected)?;
        if let Some(n) = find_notify(p, notify::SIGNATURE_HASH_ALGORITHMS) {
            hs.peer_hashes = parse_hashes(&n.data);
        }
        let mut sa = IkeSa::blank(ctx.now, false, local, remote, Phase::Closed);
        sa.init_conn = Some(ci);
        sa.spi_i = h.spi_i;
        sa.spi_r = spi_r;
        // RFC 7296 2.23: the request's hashes were made with SPIr still zero.
        sa.nat = detect_nat(sa.spi_i, 0, local, remote, p);
        sa.nat.fake = conn.encap;
        sa.peer_fragmentation = find_notify(p, notify::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let mut out = vec![
            Payload::Sa(vec![chosen]),
            Payload::Ke(KeyExchange {
                group: dh.group(),
                data: dh.public_key().to_vec(),
            }),
            Payload::Nonce(hs.nr.clone()),
        ];
        out.extend(nat_payloads(sa.spi_i, sa.spi_r, local, remote, conn.encap));
        if sa.peer_fragmentation && conn.fragmentation {
            out.push(notify_payload(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        if !hs.peer_hashes.is_empty() {
            out.push(notify_payload(
                notify::SIGNATURE_HASH_ALGORITHMS,
                signature_hashes(),
            ));
        }
        out.extend(sa.me_respond_init(ctx, p));
        if let RemoteAuth::Pubkey(trust) = &conn.remote_auth {
            if let Some(req) = trust.certreq() {
                out.push(Payload::CertReq(req));
            }
        }
        sa.suite = Some(suite);
        let header = Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            next_payload: payload::NONE,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: Flags {
                initiator: false,
                response: true,
                version: false,
            },
            message_id: 0,
            length: 0,
        };
        hs.init_response = emit(header, out);
        ctx.transmits.push_back(super::Transmit {
            local,
            remote,
            data: hs.init_response.clone(),
        });
        sa.phase = Phase::Auth(keys, Box::new(hs));
        sa.expected_request_id = 1;
        sa.next_request_id = 0;
        Ok(Some(sa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> (SocketAddr, u64) {
        ("192.0.2.1:500".parse().unwrap(), i)
    }

    #[test]
    fn challenged_initiators_are_bounded_in_number_and_age() {
        let t0 = Instant::now();
        let mut c = Challenged::default();
        assert!(!c.insert(t0, key(0)));
        assert!(c.contains(t0 + Duration::from_secs(59), &key(0)));
        assert!(!c.contains(t0 + Challenged::TTL, &key(0)));
        assert!(!c.contains(t0, &key(1)));
        // A flood: the oldest entries make room, the size stays at the bound.
        let pushed_out = (1..=Challenged::MAX as u64 + 10)
            .filter(|i| c.insert(t0, key(*i)))
            .count();
        assert_eq!(pushed_out, 11);
        assert_eq!(c.at.len(), Challenged::MAX);
        assert!(!c.contains(t0, &key(5)));
        assert!(c.contains(t0, &key(Challenged::MAX as u64 + 10)));
        // Old entries go as new ones come, and that is no loss.
        assert!(!c.insert(t0 + Challenged::TTL, key(0)));
        assert_eq!(c.at.len(), 1);
        assert_eq!(c.order.len(), 1);
        // One initiator challenged over and over holds one entry's worth of room.
        for _ in 0..3 * Challenged::MAX {
            c.insert(t0 + Challenged::TTL, key(0));
        }
        assert!(c.order.len() <= Challenged::MAX);
        assert!(c.contains(t0 + Challenged::TTL, &key(0)));
    }
}
