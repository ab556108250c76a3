//! The hub: one IKE SA, its state, message-ID windows, retransmission, task queue and
//! timers. The exchanges live in their own files (`ike_sa_init.rs`, `ike_auth.rs`,
//! `create_child_sa.rs`, `rekey_ike.rs`, `informational.rs`), which import this one; the
//! hub calls them by method and imports only leaves.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::child_sa::{ChildRequest, ChildSa, ChildState, IkeRekeyRequest};
use super::event::{ChildStatus, DownReason, Event, IkeSaInfo};
use zeroize::Zeroize;

use super::keys::{Dh, IkeKeys};
use super::mediation::{MeConnectRequest, MeSa};
use super::timer::{Timer, TimerTable};
use super::{backoff, Ctx, Dropped, IkeSaId};
use crate::auth::Identity;
use crate::config::Connection;
use crate::iana::{exchange, payload, ExchangeType};
use crate::nat::NatState;
use crate::proposal::IkeSuite;
use crate::wire::mediation::{ConnectId, MeConnect};
use crate::wire::relay::{RelayReady, RelayToken};
use crate::wire::{self, Flags, Header, Message, Payload};

/// Retransmissions of the DELETE that retires a rekeyed IKE SA before it is dropped
/// unanswered (silently: a rekeyed SA's end is not reported as down).
const REKEYED_DELETE_TRIES: u32 = 2;

/// Retransmission timeouts a rekeyed IKE SA waits, after the last message heard on it,
/// for the peer to delete it before deleting it itself: longer than the peer's DELETE
/// with its [`REKEYED_DELETE_TRIES`] retransmissions takes (1 + 2 + 4).
const REKEYED_RETIRE_TIMEOUTS: u32 = 8;

/// What only the handshake needs (RFC 7296 1.2, 2.15): the DH key pair, COOKIE, both
/// nonces and both IKE_SA_INIT messages. One box, dropped when IKE_AUTH completes, so an
/// established SA is smaller and keeps no stale secret (the buffers are zeroized).
pub(crate) struct Handshake {
    /// Our DH key pair: the initiator's, until the IKE_SA_INIT response.
    pub(crate) dh: Option<Dh>,
    /// COOKIE the responder asked for (RFC 7296 2.6).
    pub(crate) cookie: Option<Vec<u8>>,
    /// Ni.
    pub(crate) ni: Vec<u8>,
    /// Nr.
    pub(crate) nr: Vec<u8>,
    /// IKE_SA_INIT request as sent, for the AUTH signed octets.
    pub(crate) init_request: Vec<u8>,
    /// IKE_SA_INIT response as sent; a responder also resends it for a retransmitted
    /// request.
    pub(crate) init_response: Vec<u8>,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 4).
    pub(crate) peer_hashes: Vec<u16>,
    /// COOKIE and INVALID_KE_PAYLOAD round trips made so far.
    pub(crate) init_retries: u32,
    /// The ME_CONNECTID a mediated IKE SA's initiator names in IKE_SA_INIT.
    pub(crate) connect_id: Option<ConnectId>,
}

impl Handshake {
    /// The handshake of an SA whose Ni is `ni`.
    pub(crate) fn new(ni: Vec<u8>) -> Self {
        Handshake {
            dh: None,
            cookie: None,
            ni,
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            peer_hashes: Vec::new(),
            init_retries: 0,
            connect_id: None,
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        // The DH secret zeroizes itself; the rest fed SKEYSEED and AUTH.
        self.ni.zeroize();
        self.nr.zeroize();
        self.cookie.zeroize();
        self.init_request.zeroize();
        self.init_response.zeroize();
    }
}

/// The IKE SA's keys and handshake data, by phase: keys exist from the IKE_SA_INIT
/// response on and the handshake data until IKE_AUTH completes.
pub(crate) enum Phase {
    /// Initiator, IKE_SA_INIT in flight: no keys yet.
    Init(Box<Handshake>),
    /// Keys derived (RFC 7296 2.14), IKE_AUTH under way.
    Auth(IkeKeys, Box<Handshake>),
    /// IKE_AUTH done, or created by a rekey: keys only.
    Up(IkeKeys),
    /// Dead: keys and handshake data dropped.
    Closed,
}

impl Phase {
    /// The keys, from the IKE_SA_INIT response on.
    pub(crate) fn keys(&self) -> Option<&IkeKeys> {
        match self {
            Phase::Auth(k, _) | Phase::Up(k) => Some(k),
            Phase::Init(_) | Phase::Closed => None,
        }
    }

    fn keys_mut(&mut self) -> Option<&mut IkeKeys> {
        match self {
            Phase::Auth(k, _) | Phase::Up(k) => Some(k),
            Phase::Init(_) | Phase::Closed => None,
        }
    }

    /// The handshake data, until IKE_AUTH completes.
    pub(crate) fn handshake(&self) -> Option<&Handshake> {
        match self {
            Phase::Init(h) | Phase::Auth(_, h) => Some(h),
            Phase::Up(_) | Phase::Closed => None,
        }
    }

    /// The handshake data, mutable.
    pub(crate) fn handshake_mut(&mut self) -> Option<&mut Handshake> {
        match self {
            Phase::Init(h) | Phase::Auth(_, h) => Some(h),
            Phase::Up(_) | Phase::Closed => None,
        }
    }
}

/// Where an IKE SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitReplied,
    /// IKE_AUTH done.
    Established,
    /// Replaced by a rekeyed IKE SA, waiting for the old one's delete.
    Rekeyed,
    /// Our delete is in flight.
    Deleting,
    /// Gone: the endpoint removes it.
    Dead,
}

/// The exchange our outstanding request belongs to, with what its response needs.
pub(crate) enum Pending {
    /// IKE_SA_INIT request.
    Init,
    /// IKE_AUTH request; the first child's config and our inbound SPI.
    Auth(Option<ChildRequest>),
    /// CREATE_CHILD_SA for a new or rekeyed child SA.
    CreateChild(ChildRequest),
    /// CREATE_CHILD_SA rekeying this IKE SA.
    RekeyIke(IkeRekeyRequest),
    /// INFORMATIONAL with deletes of these child SAs (inbound SPIs).
    DeleteChildren(Vec<u32>),
    /// INFORMATIONAL deleting this IKE SA.
    DeleteIke,
    /// Empty INFORMATIONAL: liveness check.
    Dpd,
    /// ME_CONNECT (draft-brunner-ikev2-mediation 4.3), sent or relayed.
    MeConnect(MeConnectRequest),
    /// INFORMATIONAL with ESPRIT_RELAY_REQUEST for this attempt.
    RelayRequest(ConnectId),
    /// INFORMATIONAL with ESPRIT_RELAY_READY.
    RelayReady,
}

/// Work waiting for the request window (one outstanding request, RFC 7296 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// Create the child with this config index.
    CreateChild(usize),
    /// Rekey the child with this inbound SPI.
    RekeyChild(u32),
    /// Rekey the IKE SA.
    RekeyIke,
    /// Ask again for a new child SA with this config, refused `temp_failures` times
    /// with TEMPORARY_FAILURE so far (RFC 7296 2.25).
    RetryChild {
        /// The child config index.
        cfg: usize,
        /// TEMPORARY_FAILURE answers so far.
        temp_failures: u32,
    },
    /// Delete the child with this inbound SPI.
    DeleteChild(u32),
    /// Delete the IKE SA.
    DeleteIke,
    /// Liveness check.
    Dpd,
    /// Send this ME_CONNECT request.
    MeConnect(Box<MeConnect>),
    /// Ask the server to relay this attempt.
    RelayRequest(ConnectId),
    /// Tell a peer where its relay is.
    RelayReady(Box<RelayReady>),
}

/// Our outstanding request.
pub(crate) struct Outstanding {
    pub(crate) message_id: u32,
    pub(crate) datagrams: Vec<Vec<u8>>,
    pub(crate) tries: u32,
    pub(crate) deadline: Instant,
    pub(crate) pending: Pending,
}

/// One IKE SA.
pub(crate) struct IkeSa {
    pub(crate) id: IkeSaId,
    /// Connection index; a responder learns it at IKE_AUTH.
    pub(crate) conn: Option<usize>,
    /// Connection whose proposals a responder used in IKE_SA_INIT.
    pub(crate) init_conn: Option<usize>,
    /// We are the original initiator (the I flag).
    pub(crate) initiator: bool,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) state: State,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) nat: NatState,
    pub(crate) suite: Option<IkeSuite>,
    /// Keys and handshake-only data.
    pub(crate) phase: Phase,
    pub(crate) peer_fragmentation: bool,
    pub(crate) local_id: Option<Identity>,
    pub(crate) remote_id: Option<Identity>,
    /// Our next request's message ID.
    pub(crate) next_request_id: u32,
    /// The peer's next request's message ID.
    pub(crate) expected_request_id: u32,
    /// Our last response (datagrams, fragmented or not) for retransmitted requests.
    pub(crate) last_response: Option<(u32, Vec<Vec<u8>>)>,
    pub(crate) outstanding: Option<Outstanding>,
    pub(crate) tasks: VecDeque<Task>,
    pub(crate) children: Vec<ChildSa>,
    /// New child SAs the peer answered TEMPORARY_FAILURE: when to ask again, the child
    /// config and the answers so far (RFC 7296 2.25).
    pub(crate) child_retries: Vec<(Instant, usize, u32)>,
    /// Children queued at initiation, created in IKE_AUTH (first) and CREATE_CHILD_SA.
    pub(crate) fragments: wire::Reassembler,
    pub(crate) created: Instant,
    pub(crate) established: Option<Instant>,
    pub(crate) rekey_at: Option<Instant>,
    pub(crate) last_heard: Instant,
    /// Nonces of an IKE rekey we answered, for collision resolution (RFC 7296 2.8.2).
    pub(crate) answered_ike_rekey: Option<(Vec<u8>, Vec<u8>, IkeSaId)>,
    /// Made by answering a peer's IKE rekey that crossed ours, before our own rekey's
    /// answer tells which of the two SAs survives (RFC 7296 2.8.2). A DELETE of it by
    /// the peer then means the peer lost and drops its redundant SA before we learned
    /// so: it is ignored (strongSwan has not even registered such an SA yet), because
    /// this SA holds the children until our answer moves them to the winner.
    pub(crate) collision_pending: bool,
    /// Why the SA died, reported once.
    pub(crate) down_reason: Option<DownReason>,
    /// The IKE SA this one replaced by a rekey.
    pub(crate) rekeyed_from: Option<IkeSaId>,
    /// The deadline the endpoint's heap holds for this SA.
    pub(crate) armed: Option<Instant>,
    /// One of the endpoint's paced deletes (`Endpoint::terminate_all`) is under way.
    pub(crate) paced_delete: bool,
    /// Responder, half-open: the address its IKE_SA_INIT came from, the endpoint's
    /// half-open key with SPIi.
    pub(crate) half_open_from: Option<SocketAddr>,
    /// Responder: the address its IKE_SA_INIT came from, kept for the SA's life (the
    /// endpoint's `by_init` key with SPIi).
    pub(crate) init_from: Option<SocketAddr>,
    /// Initiator: send INITIAL_CONTACT in IKE_AUTH (RFC 7296 2.4), decided by the
    /// endpoint: no other IKE SA with the same identities is up.
    pub(crate) initial_contact: bool,
    /// Why we are deleting this SA, when not a plain `terminate` (reported on its end).
    pub(crate) closing: Option<DownReason>,
    /// IKE mediation: set on an SA of a mediation connection, on either side.
    pub(crate) me: Option<Box<MeSa>>,
    /// A mediated SA set up through the server's relay: the relay's address and our
    /// bind token, sent again by [`Endpoint::send_relay_binds`](super::Endpoint::send_relay_binds)
    /// while the SA's peer is that relay.
    pub(crate) relay_bind: Option<(SocketAddr, RelayToken)>,
    /// Initiator: the virtual IPs the peer assigned us (RFC 7296 3.15).
    pub(crate) own_vips: Vec<IpAddr>,
    /// Initiator: the DNS servers the peer sent with them.
    pub(crate) dns: Vec<IpAddr>,
    /// Responder: the virtual IPs leased to the peer from our pools.
    pub(crate) peer_vips: Vec<IpAddr>,
}

impl IkeSa {
    /// A fresh SA with defaults; the exchange constructors fill in the rest.
    pub(crate) fn blank(
        now: Instant,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        phase: Phase,
    ) -> IkeSa {
        IkeSa {
            id: IkeSaId(0),
            conn: None,
            init_conn: None,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: if initiator {
                State::InitSent
            } else {
                State::InitReplied
            },
            local,
            remote,
            nat: NatState::default(),
            suite: None,
            phase,
            peer_fragmentation: false,
            local_id: None,
            remote_id: None,
            next_request_id: 0,
            expected_request_id: 0,
            last_response: None,
            outstanding: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            child_retries: Vec::new(),
            fragments: wire::Reassembler::new(),
            created: now,
            established: None,
            rekey_at: None,
            last_heard: now,
            answered_ike_rekey: None,
            collision_pending: false,
            down_reason: None,
            rekeyed_from: None,
            armed: None,
            paced_delete: false,
            half_open_from: None,
            init_from: None,
            initial_contact: false,
            closing: None,
            me: None,
            relay_bind: None,
            own_vips: Vec::new(),
            dns: Vec::new(),
            peer_vips: Vec::new(),
        }
    }

    pub(crate) fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.state == State::Dead
    }

    /// (our identity, the peer's identity) once IKE_AUTH set both.
    pub(crate) fn identities(&self) -> Option<(Identity, Identity)> {
        Some((self.local_id.clone()?, self.remote_id.clone()?))
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(
            self.state,
            State::Established | State::Rekeyed | State::Deleting
        )
    }

    /// Connecting or established, and not on its way out: takes new work (queued until
    /// IKE_AUTH completes).
    pub(crate) fn is_usable(&self) -> bool {
        matches!(
            self.state,
            State::InitSent | State::AuthSent | State::Established
        )
    }

    pub(crate) fn has_child(&self, spi_in: u32) -> bool {
        self.children.iter().any(|c| c.spi_in == spi_in)
    }

    pub(crate) fn connection<'c>(&self, conns: &'c [Connection]) -> Option<&'c Connection> {
        self.conn.and_then(|i| conns.get(i))
    }

    /// The state as status shows it: one of [`super::STATE_NAMES`].
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            State::InitSent | State::AuthSent | State::InitReplied => "CONNECTING",
            State::Established
                if self
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| matches!(o.pending, Pending::RekeyIke(_))) =>
            {
                "REKEYING"
            }
            State::Established => "ESTABLISHED",
            State::Rekeyed => "REKEYED",
            State::Deleting | State::Dead => "DELETING",
        }
    }

    /// Child SAs not yet deleted.
    pub(crate) fn live_children(&self) -> usize {
        self.children
            .iter()
            .filter(|c| c.state != ChildState::Deleted)
            .count()
    }

    /// Status snapshot.
    pub(crate) fn info(&self, conns: &[Connection]) -> IkeSaInfo {
        let conn = self.connection(conns);
        IkeSaInfo {
            id: self.id,
            conn: conn.map(|c| c.name.clone()).unwrap_or_default(),
            state: self.state_name(),
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local: self.local,
            remote: self.remote,
            local_id: self
                .local_id
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_default(),
            remote_id: self
                .remote_id
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_default(),
            suite: self.suite,
            established: self.established,
            rekey_at: self.rekey_at,
            nat: self.nat,
            busy: self.outstanding.is_some() || !self.tasks.is_empty(),
            mediation: self.me.as_ref().map(|m| m.server_reflexive),
            local_vips: self.own_vips.clone(),
            remote_vips: self.peer_vips.clone(),
            dns: self.dns.clone(),
            children: self
                .children
                .iter()
                .filter(|c| c.state != ChildState::Deleted)
                .map(|c| ChildStatus {
                    name: conn
                        .and_then(|cn| cn.children.get(c.cfg))
                        .map(|ch| ch.name.clone())
                        .unwrap_or_default(),
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    suite: c.suite,
                    local_ts: c.local_ts.clone(),
                    remote_ts: c.remote_ts.clone(),
                    established: c.established,
                    rekey_at: c.rekey_at,
                })
                .collect(),
        }
    }

    /// Marks the SA dead, reporting every child and the SA itself as down.
    pub(crate) fn die(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        if self.state == State::Dead {
            return;
        }
        let was_up = self.established.is_some();
        if !was_up {
            ctx.stats.handshake_failures[reason.as_index()] += 1;
        }
        if reason == DownReason::DpdTimeout {
            ctx.stats.dpd_timeouts += 1;
        }
        for c in self.children.drain(..) {
            if c.state != ChildState::Deleted {
                ctx.events.push_back(Event::ChildDown {
                    ike: self.id,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    reason: reason.clone(),
                });
            }
        }
        // A rekeyed (or redundant) SA handed its children over: not "down" for the user.
        // A responder's half-open SA that expired was never anything to the user either.
        let silent = !was_up && !self.initiator && reason == DownReason::HalfOpenExpired;
        if self.state != State::Rekeyed && !silent {
            ctx.events.push_back(Event::IkeDown {
                id: self.id,
                conn: self
                    .connection(ctx.connections)
                    .or_else(|| self.init_conn.and_then(|i| ctx.connections.get(i)))
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                reason: reason.clone(),
            });
        }
        self.down_reason = Some(reason);
        self.state = State::Dead;
        self.phase = Phase::Closed;
        self.outstanding = None;
        self.tasks.clear();
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

    fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: payload::NONE,
            version: 0x20,
            exchange,
            flags: Flags {
                initiator: self.initiator,
                response,
                version: false,
            },
            message_id,
            length: 0,
        }
    }

    /// Encrypts payloads into one SK message, or SKF fragments when it would not fit and
    /// the peer supports fragmentation (RFC 7383 2.5).
    fn seal(&mut self, ctx: &Ctx<'_>, header: Header, payloads: &[Payload]) -> Vec<Vec<u8>> {
        let frag_ok = self.peer_fragmentation
            && self
                .connection(ctx.connections)
                .is_none_or(|c| c.fragmentation);
        let Some(keys) = self.phase.keys_mut() else {
            return Vec::new();
        };
        let one = wire::encrypt_message(&header, payloads, keys.cipher_out.as_mut());
        if one.len() > ctx.config.fragment_size && frag_ok {
            wire::encrypt_fragments(
                &header,
                payloads,
                keys.cipher_out.as_mut(),
                ctx.config.fragment_size,
            )
        } else {
            vec![one]
        }
    }

    fn send(&self, ctx: &mut Ctx<'_>, datagrams: &[Vec<u8>], to: SocketAddr) {
        for d in datagrams {
            ctx.transmits.push_back(super::Transmit {
                local: self.local,
                remote: to,
                data: d.clone(),
            });
        }
    }

    /// Sends an encrypted request and arms its retransmission timer.
    pub(crate) fn send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        pending: Pending,
    ) {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let header = self.header(exchange, id, false);
        let datagrams = self.seal(ctx, header, &payloads);
        self.send(ctx, &datagrams, self.remote);
        self.outstanding = Some(Outstanding {
            message_id: id,
            datagrams,
            tries: 0,
            deadline: ctx.now + ctx.config.retransmit_timeout,
            pending,
        });
    }

    /// Whether our outstanding request is of the kind `f` picks.
    pub(crate) fn outstanding_is(&self, f: impl Fn(&Pending) -> bool) -> bool {
        self.outstanding.as_ref().is_some_and(|o| f(&o.pending))
    }

    /// Sends an encrypted request once, expecting no answer: the last word of an SA that
    /// is about to go (RFC 7296 2.21.2).
    pub(crate) fn send_final_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
    ) {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let header = self.header(exchange, id, false);
        let datagrams = self.seal(ctx, header, &payloads);
        self.send(ctx, &datagrams, self.remote);
    }

    /// Sends an unencrypted request (IKE_SA_INIT) and arms its retransmission timer.
    pub(crate) fn send_plain_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        bytes: Vec<u8>,
        pending: Pending,
    ) {
        let datagrams = vec![bytes];
        self.send(ctx, &datagrams, self.remote);
        self.outstanding = Some(Outstanding {
            message_id: 0,
            datagrams,
            tries: 0,
            deadline: ctx.now + ctx.config.retransmit_timeout,
            pending,
        });
    }

    /// Sends an encrypted response to the request with `message_id`, caching it for
    /// retransmitted requests.
    pub(crate) fn send_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        message_id: u32,
        payloads: Vec<Payload>,
        to: SocketAddr,
    ) {
        let header = self.header(exchange, message_id, true);
        let datagrams = self.seal(ctx, header, &payloads);
        self.send(ctx, &datagrams, to);
        self.last_response = Some((message_id, datagrams));
    }

    /// Answers a retransmitted IKE_SA_INIT request with the same response.
    /// Responder, half-open: the IKE_SA_INIT request this SA was built from.
    pub(crate) fn init_request(&self) -> Option<&[u8]> {
        self.phase
            .handshake()
            .filter(|_| !self.initiator)
            .map(|h| h.init_request.as_slice())
    }

    pub(crate) fn retransmit_init_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        _request: &[u8],
    ) -> Result<(), Dropped> {
        let Some(hs) = self
            .phase
            .handshake()
            .filter(|h| !h.init_response.is_empty())
        else {
            return Err(Dropped::Unexpected);
        };
        ctx.transmits.push_back(super::Transmit {
            local: self.local,
            remote: self.remote,
            data: hs.init_response.clone(),
        });
        Ok(())
    }

    /// Entry point for every message of this SA after IKE_SA_INIT's request.
    pub(crate) fn handle(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) -> Result<(), Dropped> {
        let h = msg.header;
        if self.is_dead() {
            return Err(Dropped::Unexpected);
        }
        if h.exchange == exchange::IKE_SA_INIT {
            if h.flags.response && self.state == State::InitSent {
                return self.handle_init_response(ctx, local, remote, raw, &msg);
            }
            return Err(Dropped::Unexpected);
        }
        if h.flags.response {
            let Some(out) = self.outstanding.as_ref() else {
                return Err(Dropped::Unexpected);
            };
            if out.message_id != h.message_id {
                return Err(Dropped::Unexpected);
            }
            if is_invalid_spi_hint(&msg) {
                return self.invalid_spi_hint(ctx, remote);
            }
            let Some(payloads) = self.open(raw, &msg)? else {
                return Ok(()); // more fragments to come
            };
            self.heard_from(ctx, local, remote);
            let Some(out) = self.outstanding.take() else {
                return Err(Dropped::Unexpected);
            };
            self.dispatch_response(ctx, h, out.pending, payloads);
            self.run_tasks(ctx);
            return Ok(());
        }
        // A request from the peer.
        if h.message_id.wrapping_add(1) == self.expected_request_id {
            if let Some((id, datagrams)) = &self.last_response {
                if *id == h.message_id {
                    // RFC 7296 2.1: a retransmitted request gets the cached response,
                    // once per request (for fragments: on the first fragment only).
                    if is_first_fragment_or_whole(&msg) {
                        let datagrams = datagrams.clone();
                        self.send(ctx, &datagrams, remote);
                    }
                    return Ok(());
                }
            }
            return Err(Dropped::Unexpected);
        }
        if h.message_id != self.expected_request_id {
            return Err(Dropped::Unexpected);
        }
        let Some(payloads) = self.open(raw, &msg)? else {
            return Ok(());
        };
        self.heard_from(ctx, local, remote);
        self.expected_request_id = self.expected_request_id.wrapping_add(1);
        self.dispatch_request(ctx, h, remote, payloads);
        self.run_tasks(ctx);
        Ok(())
    }

    /// An unprotected INVALID_IKE_SPI answered our outstanding request: the peer says it
    /// does not know this SA (it restarted, most likely). RFC 7296 2.21.4: such a
    /// message may be forged, so it changes no SA; it is a hint to check liveness, and
    /// the request outstanding *is* a liveness check. So: send the request once more
    /// now and let it be the last try, waiting [`HINT_WAIT`] (or the retransmission
    /// timeout, if shorter) for its answer. A live peer
    /// answers that within a round trip and nothing changes; one that restarted gets
    /// the SA declared dead (DPD action) seconds earlier than the full schedule. Only
    /// the first hint per request counts, and only from the peer's current address.
    fn invalid_spi_hint(&mut self, ctx: &mut Ctx<'_>, remote: SocketAddr) -> Result<(), Dropped> {
        if remote != self.remote || !self.is_established() {
            return Err(Dropped::Unexpected);
        }
        let last = ctx.config.retransmit_tries;
        let Some(o) = self.outstanding.as_mut() else {
            return Err(Dropped::Unexpected);
        };
        if o.tries >= last {
            return Ok(());
        }
        o.tries = last;
        o.deadline = ctx.now + ctx.config.retransmit_timeout.min(HINT_WAIT);
        ctx.stats.invalid_spi_hints += 1;
        ctx.stats.retransmits += 1;
        let datagrams = o.datagrams.clone();
        self.send(ctx, &datagrams, self.remote);
        Ok(())
    }

    /// Decrypts an SK message, or collects an SKF fragment: `Ok(None)` until complete.
    fn open(&mut self, raw: &[u8], msg: &Message) -> Result<Option<Vec<Payload>>, Dropped> {
        let Some(keys) = self.phase.keys() else {
            return Err(Dropped::Unexpected);
        };
        let frag = msg.payloads.iter().any(|p| matches!(p, Payload::Skf(_)));
        if frag {
            return match self
                .fragments
                .insert_message(raw, msg, keys.cipher_in.as_ref())
            {
                Ok(wire::Reassembly::Complete(payloads)) => Ok(Some(payloads)),
                Ok(_) => Ok(None),
                Err(wire::ReassemblyError::Decrypt(wire::DecryptError::Integrity)) => {
                    Err(Dropped::Integrity)
                }
                Err(_) => Err(Dropped::Malformed),
            };
        }
        match wire::decrypt_message(raw, msg, keys.cipher_in.as_ref()) {
            Ok(p) => Ok(Some(p)),
            Err(wire::DecryptError::Integrity) => Err(Dropped::Integrity),
            Err(_) => Err(Dropped::Malformed),
        }
    }

    /// An authenticated message arrived: note liveness and follow NAT rebinding.
    fn heard_from(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr) {
        self.last_heard = ctx.now;
        if local.port() == ctx.config.port_nat_t && self.local.port() != ctx.config.port_nat_t {
            self.local.set_port(ctx.config.port_nat_t);
        }
        if remote != self.remote {
            // RFC 7296 2.23: behind a NAT, follow the address authenticated messages
            // come from.
            let moved = self.remote.ip() != remote.ip() || self.remote.port() != remote.port();
            self.remote = remote;
            if moved && self.is_established() {
                ctx.events.push_back(Event::PeerAddressChanged {
                    ike: self.id,
                    remote,
                });
            }
        }
    }

    fn dispatch_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        from: SocketAddr,
        payloads: Vec<Payload>,
    ) {
        match (h.exchange, self.state) {
            (exchange::IKE_AUTH, State::InitReplied) => self.respond_auth(ctx, h, from, payloads),
            (exchange::CREATE_CHILD_SA, s) if s != State::InitReplied => {
                self.respond_create_child(ctx, h, from, payloads)
            }
            (exchange::INFORMATIONAL, s) if s != State::InitReplied => {
                self.respond_informational(ctx, h, from, payloads)
            }
            (exchange::ME_CONNECT, State::Established) => {
                self.respond_me_connect(ctx, h, from, payloads)
            }
            _ => {
                ctx.stats.unexpected += 1;
            }
        }
    }

    fn dispatch_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        h: Header,
        pending: Pending,
        payloads: Vec<Payload>,
    ) {
        match pending {
            Pending::Init => {}
            Pending::Auth(child) => self.auth_response(ctx, h, child, payloads),
            Pending::CreateChild(req) => self.create_child_response(ctx, req, payloads),
            Pending::RekeyIke(req) => self.rekey_ike_response(ctx, req, payloads),
            Pending::DeleteChildren(spis) => self.delete_children_response(ctx, spis, payloads),
            Pending::DeleteIke => {
                let why = self.closing.take().unwrap_or(DownReason::Terminated);
                self.die(ctx, why)
            }
            Pending::Dpd => {}
            Pending::MeConnect(req) => self.me_connect_response(ctx, req, payloads),
            Pending::RelayRequest(cid) => self.relay_request_response(ctx, cid, payloads),
            Pending::RelayReady => {}
        }
    }

    /// Starts queued work when no request is outstanding.
    pub(crate) fn run_tasks(&mut self, ctx: &mut Ctx<'_>) {
        while self.outstanding.is_none() && self.state != State::Dead {
            if !matches!(self.state, State::Established | State::Rekeyed) {
                return;
            }
            let Some(task) = self.tasks.pop_front() else {
                return;
            };
            if self.state == State::Rekeyed && task != Task::DeleteIke {
                continue;
            }
            match task {
                Task::CreateChild(cfg) => self.start_create_child(ctx, cfg, None),
                Task::RetryChild { cfg, temp_failures } => {
                    self.start_create_child(ctx, cfg, None);
                    if let Some(Outstanding {
                        pending: Pending::CreateChild(req),
                        ..
                    }) = self.outstanding.as_mut()
                    {
                        req.temp_failures = temp_failures;
                    }
                }
                Task::RekeyChild(spi) => {
                    if let Some(i) = self
                        .children
                        .iter()
                        .position(|c| c.spi_in == spi && c.state == ChildState::Installed)
                    {
                        let cfg = self.children[i].cfg;
                        self.children[i].state = ChildState::Rekeying;
                        self.start_create_child(ctx, cfg, Some(spi));
                    }
                }
                Task::RekeyIke => self.start_rekey_ike(ctx),
                Task::DeleteChild(spi) => self.start_delete_children(ctx, vec![spi]),
                Task::DeleteIke => {
                    // A rekeyed SA stays "Rekeyed" so its end is not reported as down.
                    if self.state != State::Rekeyed {
                        self.state = State::Deleting;
                    }
                    let del = Payload::Delete(wire::Delete {
                        protocol: crate::iana::protocol::IKE,
                        spis: Vec::new(),
                    });
                    self.send_request(ctx, exchange::INFORMATIONAL, vec![del], Pending::DeleteIke);
                }
                Task::Dpd => {
                    ctx.stats.dpd_checks += 1;
                    self.send_request(ctx, exchange::INFORMATIONAL, Vec::new(), Pending::Dpd)
                }
                Task::MeConnect(req) => self.start_me_connect(ctx, *req),
                Task::RelayRequest(cid) => self.start_relay_request(ctx, cid),
                Task::RelayReady(ready) => self.start_relay_ready(ctx, *ready),
            }
        }
    }

    pub(crate) fn queue(&mut self, ctx: &mut Ctx<'_>, task: Task) {
        if !self.tasks.contains(&task) {
            self.tasks.push_back(task);
        }
        self.run_tasks(ctx);
    }

    pub(crate) fn queue_create_child(&mut self, ctx: &mut Ctx<'_>, cfg: usize) {
        self.queue(ctx, Task::CreateChild(cfg));
    }

    pub(crate) fn queue_rekey_child(&mut self, ctx: &mut Ctx<'_>, spi_in: u32) {
        self.queue(ctx, Task::RekeyChild(spi_in));
    }

    pub(crate) fn queue_delete_child(&mut self, ctx: &mut Ctx<'_>, spi_in: u32) {
        self.queue(ctx, Task::DeleteChild(spi_in));
    }

    pub(crate) fn queue_rekey_ike(&mut self, ctx: &mut Ctx<'_>) {
        self.queue(ctx, Task::RekeyIke);
    }

    pub(crate) fn queue_dpd(&mut self, ctx: &mut Ctx<'_>) {
        self.queue(ctx, Task::Dpd);
    }

    pub(crate) fn queue_delete_ike(&mut self, ctx: &mut Ctx<'_>) {
        if self.is_established() {
            // Deleting the IKE SA supersedes everything else queued (RFC 7296 1.4.1).
            self.tasks.retain(|t| *t == Task::DeleteIke);
            self.queue(ctx, Task::DeleteIke);
        } else {
            let why = self.closing.take().unwrap_or(DownReason::Terminated);
            self.die(ctx, why);
        }
    }

    /// When a rekeyed SA that nobody deletes deletes itself.
    fn retire_at(&self, config: &crate::config::Config) -> Instant {
        self.last_heard + config.retransmit_timeout * REKEYED_RETIRE_TIMEOUTS
    }

    /// The armed timers of this SA.
    pub(crate) fn timers(
        &self,
        config: &crate::config::Config,
        conns: &[Connection],
    ) -> TimerTable {
        let mut t = TimerTable::default();
        if self.is_dead() {
            return t;
        }
        if let Some(o) = &self.outstanding {
            t.set(Timer::Retransmit, o.deadline);
        }
        if self.state == State::InitReplied {
            t.set(Timer::HalfOpen, self.created + config.half_open_timeout);
        }
        if self.state == State::Rekeyed && self.outstanding.is_none() {
            t.set(Timer::Retire, self.retire_at(config));
        }
        if self.state == State::Established {
            if let Some(r) = self.rekey_at {
                t.set(Timer::RekeyIke, r);
            }
            if let Some(r) = self
                .children
                .iter()
                .filter(|c| c.state == ChildState::Installed)
                .filter_map(|c| c.rekey_at)
                .min()
            {
                t.set(Timer::RekeyChild, r);
            }
            if let Some(r) = self.child_retries.iter().map(|r| r.0).min() {
                t.set(Timer::RetryChild, r);
            }
            if let Some(d) = self.connection(conns).and_then(|c| c.dpd_delay) {
                if self.outstanding.is_none() {
                    t.set(Timer::Dpd, self.last_heard + d);
                }
            }
        }
        t
    }

    /// The earliest timer of this SA.
    pub(crate) fn next_timeout(
        &self,
        config: &crate::config::Config,
        conns: &[Connection],
    ) -> Option<Instant> {
        self.timers(config, conns).next()
    }

    /// Runs whatever timers are due.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if self.state == State::InitReplied && now >= self.created + ctx.config.half_open_timeout {
            self.die(ctx, DownReason::HalfOpenExpired);
            return;
        }
        if let Some(o) = self.outstanding.as_mut() {
            if now >= o.deadline {
                // The DELETE of an IKE SA we rekeyed away (RFC 7296 1.3.2) gets fewer
                // tries: the SA carries nothing any more, and when the answer is lost the
                // peer has already forgotten the SA and cannot answer a retransmission,
                // so the full schedule (1+2+4+8+16+32 s by default) only kept a dead SA
                // in the status for a minute (found at 5% loss, tests/e2e_impaired.rs).
                let tries =
                    if self.state == State::Rekeyed && matches!(o.pending, Pending::DeleteIke) {
                        ctx.config.retransmit_tries.min(REKEYED_DELETE_TRIES)
                    } else {
                        ctx.config.retransmit_tries
                    };
                if o.tries >= tries {
                    let reason = if matches!(o.pending, Pending::Dpd) {
                        DownReason::DpdTimeout
                    } else {
                        DownReason::Timeout
                    };
                    self.die(ctx, reason);
                    return;
                }
                o.tries += 1;
                o.deadline = now + backoff(ctx.config, o.tries);
                ctx.stats.retransmits += 1;
                let datagrams = o.datagrams.clone();
                self.send(ctx, &datagrams, self.remote);
            }
        }
        if self.state == State::Rekeyed
            && self.outstanding.is_none()
            && now >= self.retire_at(ctx.config)
        {
            // The peer rekeyed this SA away but its DELETE never came (lost every
            // time, now that it gives up after two retransmissions): delete it here,
            // or it would stay for good, childless and without timers.
            self.last_heard = now;
            self.queue(ctx, Task::DeleteIke);
            return;
        }
        if self.state != State::Established {
            return;
        }
        if self.rekey_at.is_some_and(|r| now >= r) {
            self.rekey_at = None;
            self.queue_rekey_ike(ctx);
        }
        let due: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.state == ChildState::Installed && c.rekey_at.is_some_and(|r| now >= r))
            .map(|c| c.spi_in)
            .collect();
        for spi in due {
            if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi) {
                c.rekey_at = None;
            }
            self.queue_rekey_child(ctx, spi);
        }
        let (due, later): (Vec<_>, Vec<_>) = self.child_retries.drain(..).partition(|r| now >= r.0);
        self.child_retries = later;
        for (_, cfg, temp_failures) in due {
            self.queue(ctx, Task::RetryChild { cfg, temp_failures });
        }
        if let Some(d) = self.connection(ctx.connections).and_then(|c| c.dpd_delay) {
            if self.outstanding.is_none() && now >= self.last_heard + d {
                // Re-arm from now so an unanswered check is left to the retransmit
                // schedule rather than queued again.
                self.last_heard = now;
                self.queue_dpd(ctx);
            }
        }
    }

    /// Reports a freshly spawned (rekeyed) IKE SA.
    pub(crate) fn announce_rekey(&self, events: &mut VecDeque<Event>) {
        if let Some(old) = self.rekeyed_from {
            events.push_back(Event::IkeRekeyed { old, new: self.id });
        }
    }
}

fn is_first_fragment_or_whole(msg: &Message) -> bool {
    match msg.payloads.last() {
        Some(Payload::Skf(f)) => f.number == 1,
        _ => true,
    }
}

/// How long the last try after an INVALID_IKE_SPI hint waits: many round trips, so a
/// live peer answers in time, and short enough that a restarted peer's tunnel comes
/// back within two DPD delays of a second or more.
const HINT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// An unprotected message whose only payload is an INVALID_IKE_SPI notify (RFC 7296
/// 1.5): what a peer that lost its state answers a request with.
fn is_invalid_spi_hint(msg: &Message) -> bool {
    matches!(
        msg.payloads.as_slice(),
        [Payload::Notify(n)] if n.kind == crate::iana::notify::INVALID_IKE_SPI
    )
}
