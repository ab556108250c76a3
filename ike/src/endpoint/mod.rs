//! The IKEv2 endpoint: a sans-IO state machine in the shape of quinn-proto's `Endpoint`.
//!
//! The caller feeds datagrams with [`Endpoint::handle`], drains what to send with
//! [`Endpoint::poll_transmit`] and what happened with [`Endpoint::poll_event`], and
//! drives timers with [`Endpoint::poll_timeout`] / [`Endpoint::handle_timeout`]. Time is
//! always passed in; nothing here reads a clock or touches a socket.

pub(crate) mod authn;
mod checks;
mod child_sa;
mod config_payload;
mod create_child_sa;
mod error;
mod event;
mod ike_auth;
mod ike_sa;
mod ike_sa_init;
mod informational;
mod keys;
mod me_connect;
mod mediation;
mod payloads;
mod pool;
mod rekey_ike;
mod relay;
mod timer;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

pub use error::{AuthFailure, PeerMisbehaved};
pub use event::{ChildSaInfo, ChildStatus, DownReason, Event, IkeSaInfo, MediationFailure};
pub use pool::{LeaseInfo, Pool, PoolError, MAX_POOL_SIZE};

use crate::auth::Identity;
use crate::config::{Config, Connection, Mediation, UniquePolicy};
use crate::crypto::Rng;
use crate::wire::mediation::{ConnectId, ConnectivityCheck, MeConnect};
use crate::wire::relay::RelayToken;
use crate::wire::{Header, Message, Payload, WireError};
use checks::Outcome;
use ike_sa::IkeSa;
use mediation::MediationState;
use pool::Pools;
use timer::Deadlines;

/// A stable handle for an IKE SA, unchanged by IKE rekeying... of the SA itself; a
/// rekeyed IKE SA gets a new handle and an [`Event::IkeRekeyed`] links the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// A datagram to send. The engine sends it from the socket whose port is `local.port()`;
/// when that is the NAT-T port it prepends the 4-byte non-ESP marker (RFC 3948 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address (the IP may be unspecified: let the kernel choose).
    pub local: SocketAddr,
    /// Destination.
    pub remote: SocketAddr,
    /// The IKE message, without any non-ESP marker.
    pub data: Vec<u8>,
}

/// Why a received datagram was dropped without an answer; counted in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped {
    /// Not a well-formed IKEv2 message.
    Malformed,
    /// No IKE SA has this SPI.
    UnknownSpi,
    /// The SK payload's integrity check failed.
    Integrity,
    /// A message ID outside the window, or an unexpected exchange in this state.
    Unexpected,
    /// Too many half-open SAs.
    Overloaded,
    /// Too many half-open SAs from this source address.
    SourceLimit,
    /// A new IKE SA asked for while the endpoint shuts down ([`Endpoint::shutdown`]).
    ShuttingDown,
}

/// Counters of dropped input and of SA lifecycle events, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Malformed datagrams.
    pub malformed: u64,
    /// Datagrams for unknown IKE SPIs.
    pub unknown_spi: u64,
    /// Integrity check failures.
    pub integrity: u64,
    /// Out-of-window or out-of-state messages.
    pub unexpected: u64,
    /// IKE_SA_INIT requests refused for load.
    pub overloaded: u64,
    /// IKE_SA_INIT requests refused because their source address holds
    /// `max_half_open_per_source` half-open SAs.
    pub source_limited: u64,
    /// IKE_SA_INIT requests answered with a COOKIE (RFC 7296 2.6).
    pub cookies_sent: u64,
    /// Retransmissions we sent.
    pub retransmits: u64,
    /// IKE SAs removed for a newer one with the same identities (INITIAL_CONTACT or the
    /// `unique` policy).
    pub replaced: u64,
    /// IKE_SA_INIT requests left unanswered because the endpoint shuts down.
    pub refused_closing: u64,
    /// IKE SAs that completed IKE_AUTH (either role).
    pub handshakes: u64,
    /// IKE SAs that ended before IKE_AUTH completed, by [`DownReason::as_index`].
    pub handshake_failures: [u64; DownReason::NAMES.len()],
    /// IKE SAs created by a rekey (RFC 7296 2.8.2), either side's; the redundant SA of a
    /// collision is not counted.
    pub ike_rekeys: u64,
    /// Child SAs created by a rekey (RFC 7296 2.8), either side's; both SAs of a
    /// collision count, since both were negotiated.
    pub child_rekeys: u64,
    /// Liveness checks (empty INFORMATIONAL requests, RFC 7296 2.4) sent.
    pub dpd_checks: u64,
    /// IKE SAs closed because a liveness check went unanswered.
    pub dpd_timeouts: u64,
    /// Requests for an IKE SA we do not know answered with an unprotected
    /// INVALID_IKE_SPI (RFC 7296 1.5, 2.21.4): what a restarted peer tells its old peers.
    pub invalid_spi_sent: u64,
    /// Unprotected INVALID_IKE_SPI answers to one of our outstanding requests: the peer
    /// may have restarted, so that request's liveness check ends after one more try.
    pub invalid_spi_hints: u64,
}

impl Stats {
    fn count(&mut self, d: Dropped) {
        match d {
            Dropped::Malformed => self.malformed += 1,
            Dropped::UnknownSpi => self.unknown_spi += 1,
            Dropped::Integrity => self.integrity += 1,
            Dropped::Unexpected => self.unexpected += 1,
            Dropped::Overloaded => self.overloaded += 1,
            Dropped::SourceLimit => self.source_limited += 1,
            Dropped::ShuttingDown => self.refused_closing += 1,
        }
    }
}

/// The states [`IkeSaInfo::state`] and [`Census`] use, in the order of a handshake.
pub const STATE_NAMES: [&str; 5] = [
    "CONNECTING",
    "ESTABLISHED",
    "REKEYING",
    "REKEYED",
    "DELETING",
];

/// How many SAs the endpoint holds ([`Endpoint::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// IKE SAs per state, indexed like [`STATE_NAMES`].
    pub ike_sas: [usize; STATE_NAMES.len()],
    /// Child SAs of all IKE SAs.
    pub child_sas: usize,
}

/// What [`Endpoint::connection_state`] tells about one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionState {
    /// An IKE SA of it is being negotiated (IKE_SA_INIT or IKE_AUTH under way).
    pub connecting: bool,
    /// An IKE SA of it is established.
    pub established: bool,
}

/// Errors of the commands (initiate, terminate, rekey).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No connection of that name.
    #[error("no connection named {0:?}")]
    UnknownConnection(String),
    /// No child of that name under the connection.
    #[error("no child {child:?} in connection {conn:?}")]
    UnknownChild {
        /// Connection name.
        conn: String,
        /// Child name.
        child: String,
    },
    /// The connection has no remote address to initiate to.
    #[error("connection {0:?} has no remote address to initiate to")]
    NoRemoteAddress(String),
    /// No IKE SA or child SA with that handle.
    #[error("no such SA")]
    UnknownSa,
    /// A mediated connection's mediation connection has no established IKE SA.
    #[error("mediation connection {0:?} is not up")]
    MediationNotUp(String),
    /// A mediated connection names no peer to ask the server for (no
    /// `mediation_peer`, and the remote id matches any).
    #[error("connection {0:?} names no peer to ask the mediation server for")]
    NoMediationPeer(String),
    /// Too many IKE SAs.
    #[error("IKE SA limit reached")]
    TooManySas,
}

/// What an IKE SA's handlers share with the endpoint: configuration, randomness, and the
/// queues they write to.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) unix_now: u64,
    pub(crate) config: &'a Config,
    pub(crate) connections: &'a [Connection],
    pub(crate) rng: &'a mut dyn Rng,
    pub(crate) transmits: &'a mut VecDeque<Transmit>,
    pub(crate) events: &'a mut VecDeque<Event>,
    pub(crate) stats: &'a mut Stats,
    /// IKE mediation: the server's registry and both peers' checklists.
    pub(crate) mediation: &'a mut MediationState,
    /// The virtual IP pools a responder leases from.
    pub(crate) pools: &'a mut Pools,
    /// What the handler did to other IKE SAs, applied in order by the endpoint after
    /// it returns (a handler only ever holds its own SA).
    pub(crate) effects: Vec<SaEffect>,
    next_id: &'a mut u64,
}

/// An effect of one IKE SA's handler on the endpoint's other IKE SAs, in the manner of
/// quinn-proto's `EndpointEvent`: named, so that each cross-SA path is one variant.
pub(crate) enum SaEffect {
    /// Insert an IKE SA created by a rekey (RFC 7296 2.18), announce it and run its
    /// queued tasks.
    Spawn(Box<IkeSa>),
    /// Move the child SAs of `from` to `to`, and mark `from` rekeyed: `from` is the
    /// redundant SA of a simultaneous IKE rekey, deleted by its creator (RFC 7296 2.8.2).
    MoveChildren {
        /// The redundant IKE SA.
        from: IkeSaId,
        /// The surviving IKE SA.
        to: IkeSaId,
    },
    /// The IKE rekey collision that made `id` (by answering the peer's rekey) is
    /// resolved: a DELETE of it is a real one again (see `IkeSa::collision_pending`),
    /// and when it `survives` its rekey is announced and counted now, so that each
    /// side reports exactly one `IkeRekeyed`, to the SA that stays (RFC 7296 2.8.2).
    SettleCollision {
        /// The SA made by answering the peer's rekey.
        id: IkeSaId,
        /// It is the SA that stays.
        survives: bool,
    },
    /// A mediation server relays an ME_CONNECT to the SA of the peer it names
    /// (draft-brunner-ikev2-mediation 4.3): queued on `to` within the same `handle`.
    RelayMeConnect {
        /// The mediation SA of the peer asked for (or called back).
        to: IkeSaId,
        /// The request to send there.
        request: Box<MeConnect>,
    },
    /// A peer's relay for attempt `connect_id` is open at `relay` (esprit's relay
    /// through the mediation server): the initiator starts the direct IKE SA there
    /// from `local`, the responder expects it from there.
    Relayed {
        /// The attempt.
        connect_id: ConnectId,
        /// Our NAT-T address (the mediation SA's).
        local: SocketAddr,
        /// The server's relay port.
        relay: SocketAddr,
        /// Our bind token there.
        token: RelayToken,
    },
    /// IKE SA `id` was just established: index it by its identities and apply the
    /// uniqueness rules to the other IKE SAs between the same identities (RFC 7296 2.4
    /// INITIAL_CONTACT, received by the responder, and the connection's `unique`).
    Unique {
        /// The new IKE SA.
        id: IkeSaId,
        /// The peer sent INITIAL_CONTACT in its IKE_AUTH request.
        initial_contact: bool,
    },
}

/// Drops `id` from connection `conn`'s index entry.
fn unindex_conn(by_conn: &mut HashMap<usize, BTreeSet<IkeSaId>>, conn: usize, id: IkeSaId) {
    if let Some(ids) = by_conn.get_mut(&conn) {
        ids.remove(&id);
        if ids.is_empty() {
            by_conn.remove(&conn);
        }
    }
}

/// Drops `id` from the identity index entry `key`.
fn unindex_peer(
    by_peer: &mut HashMap<(Identity, Identity), Vec<IkeSaId>>,
    key: &(Identity, Identity),
    id: IkeSaId,
) {
    if let Some(ids) = by_peer.get_mut(key) {
        ids.retain(|i| *i != id);
        if ids.is_empty() {
            by_peer.remove(key);
        }
    }
}

impl Ctx<'_> {
    /// A handle for a new IKE SA.
    pub(crate) fn alloc_id(&mut self) -> IkeSaId {
        let id = IkeSaId(*self.next_id);
        *self.next_id += 1;
        id
    }

    /// A random non-zero value for an SPI.
    pub(crate) fn random_u64(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let v = u64::from_be_bytes(b);
            if v != 0 {
                return v;
            }
        }
    }

    /// A random ESP SPI; values below 256 are reserved (RFC 4303 2.1).
    pub(crate) fn random_esp_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let v = u32::from_be_bytes(b);
            if v >= 256 {
                return v;
            }
        }
    }

    /// A fresh nonce of 32 bytes (RFC 7296 2.10: at least half the PRF key size).
    pub(crate) fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill(&mut n);
        n
    }
}

/// Everything the IKE SAs share: configuration, randomness, output queues, counters.
struct Shared {
    config: Config,
    connections: Vec<Connection>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: Box<dyn Rng + Send>,
    clock_anchor: (Instant, SystemTime),
    stats: Stats,
    mediation: MediationState,
    pools: Pools,
}

impl Shared {
    fn unix_time(&self, now: Instant) -> u64 {
        let (i, s) = self.clock_anchor;
        let t = if now >= i {
            s + (now - i)
        } else {
            s - (i - now)
        };
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The context a handler runs in at `now`.
    fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            now,
            unix_now: self.unix_time(now),
            config: &self.config,
            connections: &self.connections,
            rng: &mut *self.rng,
            transmits: &mut self.transmits,
            events: &mut self.events,
            stats: &mut self.stats,
            mediation: &mut self.mediation,
            pools: &mut self.pools,
            effects: Vec::new(),
            next_id: &mut self.next_id,
        }
    }
}

/// The IKEv2 endpoint: all IKE SAs of one daemon.
pub struct Endpoint {
    shared: Shared,
    sas: HashMap<IkeSaId, Box<IkeSa>>,
    /// Our IKE SPI -> SA.
    by_spi: HashMap<u64, IkeSaId>,
    /// Responder side: (peer address, peer's SPIi) -> half-open SA, to spot retransmitted
    /// IKE_SA_INIT requests (RFC 7296 2.1).
    half_open: HashMap<(SocketAddr, u64), IkeSaId>,
    /// Half-open responder SAs per source address (the `half_open` entries by IP).
    half_open_by_ip: HashMap<IpAddr, usize>,
    /// Responder side: (peer address, peer's SPIi) -> every SA we built from an
    /// IKE_SA_INIT, half-open or not, so a late retransmission of a request we already
    /// completed makes no new half-open SA.
    by_init: HashMap<(SocketAddr, u64), IkeSaId>,
    /// Inbound child SPI -> the IKE SA holding that child.
    by_child: HashMap<u32, IkeSaId>,
    /// (our identity, the peer's identity) -> the established IKE SAs between them, for
    /// INITIAL_CONTACT and `unique` without a scan over every SA.
    by_peer: HashMap<(Identity, Identity), Vec<IkeSaId>>,
    /// Connection index -> its IKE SAs (once the SA knows its connection), so that
    /// per-connection questions never scan every SA. A set: one `%any` connection may
    /// hold 100,000 SAs, and a list's membership test on every message made a burst of
    /// handshakes quadratic (issue 22).
    by_conn: HashMap<usize, BTreeSet<IkeSaId>>,
    /// Connection name -> its index in `shared.connections`: commands name connections,
    /// and a daemon with 25,000 of them must not search the list per command.
    conn_by_name: HashMap<String, usize>,
    /// Shutting down: no new IKE SA, and any that completes meanwhile is deleted.
    closing: bool,
    /// Every IKE SA's earliest timer.
    deadlines: Deadlines,
    cookie_secret: [u8; 32],
    challenged: ike_sa_init::Challenged,
    /// Every IKE_SA_INIT must carry a cookie until then: `challenged` overflowed.
    cookies_until: Option<Instant>,
    /// IKE SAs to delete, started `config.delete_window` at a time.
    delete_queue: VecDeque<IkeSaId>,
    /// Paced deletes under way (started, SA alive, not yet overdue).
    deletes_in_flight: usize,
    /// Paced deletes in the order they started (some finished or released since).
    deletes_started: VecDeque<(Instant, IkeSaId)>,
    /// INVALID_IKE_SPI answers sent in the current second (start, count): bounded, so
    /// that spoofed requests cannot make us a reflector.
    invalid_spi_budget: (Option<Instant>, u32),
}

/// At most this many INVALID_IKE_SPI answers a second.
const INVALID_SPI_PER_SECOND: u32 = 64;

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.shared.connections.len())
            .field("ike_sas", &self.sas.len())
            .field("stats", &self.shared.stats)
            .finish()
    }
}

impl Endpoint {
    /// Creates an endpoint. `clock_anchor` ties the monotonic `now` values passed in to
    /// wall-clock time, which certificate validity checks need.
    pub fn new(
        config: Config,
        mut rng: Box<dyn Rng + Send>,
        clock_anchor: (Instant, SystemTime),
    ) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        Endpoint {
            shared: Shared {
                config,
                connections: Vec::new(),
                next_id: 1,
                transmits: VecDeque::new(),
                events: VecDeque::new(),
                rng,
                clock_anchor,
                stats: Stats::default(),
                mediation: MediationState::default(),
                pools: Pools::default(),
            },
            sas: HashMap::new(),
            by_spi: HashMap::new(),
            half_open: HashMap::new(),
            half_open_by_ip: HashMap::new(),
            by_init: HashMap::new(),
            by_child: HashMap::new(),
            by_peer: HashMap::new(),
            by_conn: HashMap::new(),
            conn_by_name: HashMap::new(),
            closing: false,
            deadlines: Deadlines::default(),
            cookie_secret,
            challenged: ike_sa_init::Challenged::default(),
            cookies_until: None,
            delete_queue: VecDeque::new(),
            deletes_in_flight: 0,
            deletes_started: VecDeque::new(),
            invalid_spi_budget: (None, 0),
        }
    }

    /// Indexes the newly established IKE SA `id` by its identities and applies the
    /// uniqueness rules to the other established IKE SAs with the same identities, as
    /// charon does: the peer's INITIAL_CONTACT drops all of them at once (no DELETE: the
    /// peer has lost their state, RFC 7296 2.4) unless the policy is `never`; otherwise
    /// `replace` deletes those of the same connection at the peer, and `keep` deletes
    /// the new one instead.
    fn enforce_unique(&mut self, now: Instant, id: IkeSaId, initial_contact: bool) {
        if self.closing {
            // Completed after shutdown began (its IKE_SA_INIT was answered before):
            // delete it at the peer like the rest.
            self.with_sa(now, id, |sa, ctx| sa.queue_delete_ike(ctx));
            return;
        }
        let Some(sa) = self.sas.get(&id) else {
            return;
        };
        let Some(key) = sa.identities() else {
            return;
        };
        let conn = sa.conn;
        let policy = sa
            .connection(&self.shared.connections)
            .map(|c| c.unique)
            .unwrap_or_default();
        let others: Vec<IkeSaId> = self
            .by_peer
            .get(&key)
            .into_iter()
            .flatten()
            .copied()
            .filter(|o| *o != id)
            .filter(|o| self.sas.get(o).is_some_and(|s| s.is_usable()))
            .collect();
        self.by_peer.entry(key).or_default().push(id);
        if others.is_empty() || policy == UniquePolicy::Never {
            return;
        }
        if initial_contact {
            for o in others {
                self.shared.stats.replaced += 1;
                self.with_sa(now, o, |sa, ctx| {
                    sa.die(
                        ctx,
                        DownReason::Replaced {
                            initial_contact: true,
                        },
                    )
                });
            }
            return;
        }
        let same_conn: Vec<IkeSaId> = others
            .into_iter()
            .filter(|o| self.sas.get(o).is_some_and(|s| s.conn == conn))
            .collect();
        let doomed = match policy {
            UniquePolicy::Replace => same_conn,
            UniquePolicy::Keep if !same_conn.is_empty() => vec![id],
            _ => Vec::new(),
        };
        for d in doomed {
            self.shared.stats.replaced += 1;
            self.with_sa(now, d, |sa, ctx| {
                sa.closing = Some(DownReason::Replaced {
                    initial_contact: false,
                });
                sa.queue_delete_ike(ctx);
            });
        }
    }

    /// Adds a connection definition; a later one with the same name replaces it.
    pub fn add_connection(&mut self, conn: Connection) {
        if let Some(&ci) = self.conn_by_name.get(&conn.name) {
            self.shared.connections[ci] = conn;
            // Its DPD delay may have changed: re-arm the SAs (a rare, O(n) command).
            let ids: Vec<IkeSaId> = self.sas.keys().copied().collect();
            for id in ids {
                self.rearm(id);
            }
            self.settle_deadlines();
        } else {
            self.conn_by_name
                .insert(conn.name.clone(), self.shared.connections.len());
            self.shared.connections.push(conn);
        }
    }

    /// The index of connection `name`, O(1).
    fn conn_index(&self, name: &str) -> Result<usize, CommandError> {
        self.conn_by_name
            .get(name)
            .copied()
            .ok_or_else(|| CommandError::UnknownConnection(name.to_string()))
    }

    /// Adds a virtual IP pool for connections that name it in `pools`; one of the same
    /// name is replaced (its leases kept when its range is unchanged).
    pub fn add_pool(&mut self, pool: Pool) {
        self.shared.pools.insert(pool);
    }

    /// Removes the pools whose names are not in `keep` (a reload dropped them).
    pub fn retain_pools(&mut self, keep: &[&str]) {
        self.shared.pools.retain(keep);
    }

    /// The virtual IP pools with their leases, for status output.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.shared.pools.iter()
    }

    /// The configured connections.
    pub fn connections(&self) -> &[Connection] {
        &self.shared.connections
    }

    /// Drop counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    /// A snapshot of every IKE SA, for status output.
    pub fn ike_sas(&self) -> Vec<IkeSaInfo> {
        let mut v: Vec<IkeSaInfo> = self
            .sas
            .values()
            .map(|sa| sa.info(&self.shared.connections))
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// The handles of every IKE SA, in order: with [`Endpoint::ike_sa`], a report
    /// that takes one SA at a time instead of [`Endpoint::ike_sas`]'s whole snapshot.
    pub fn ike_sa_ids(&self) -> Vec<IkeSaId> {
        let mut v: Vec<IkeSaId> = self.sas.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// One IKE SA's status, if it still exists.
    pub fn ike_sa(&self, id: IkeSaId) -> Option<IkeSaInfo> {
        self.sas
            .get(&id)
            .map(|sa| sa.info(&self.shared.connections))
    }

    /// The name of connection `ci` (empty if there is none).
    fn conn_name(&self, ci: usize) -> String {
        self.shared
            .connections
            .get(ci)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    /// The oldest established mediation IKE SA of connection `by`.
    fn mediation_sa(&self, by: &str) -> Result<IkeSaId, CommandError> {
        self.conn_by_name
            .get(by)
            .and_then(|ci| self.by_conn.get(ci))
            .and_then(|ids| {
                ids.iter().copied().find(|id| {
                    self.sas
                        .get(id)
                        .is_some_and(|sa| sa.me.is_some() && sa.state == ike_sa::State::Established)
                })
            })
            .ok_or_else(|| CommandError::MediationNotUp(by.to_string()))
    }

    fn with_sa<R>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let sa = self.sas.get_mut(&id)?;
        let children: Vec<u32> = sa.children.iter().map(|c| c.spi_in).collect();
        let mut ctx = self.shared.ctx(now);
        let r = f(sa, &mut ctx);
        let effects = std::mem::take(&mut ctx.effects);
        self.after(now, id, &children, effects);
        Some(r)
    }

    /// Points the child index at `id` for each of its children.
    fn index_children(&mut self, id: IkeSaId) {
        if let Some(sa) = self.sas.get(&id) {
            for c in &sa.children {
                self.by_child.insert(c.spi_in, id);
            }
        }
    }

    /// Puts `id`'s earliest deadline into the heap when it changed.
    fn rearm(&mut self, id: IkeSaId) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let next = sa.next_timeout(&self.shared.config, &self.shared.connections);
        if next != sa.armed {
            sa.armed = next;
            if let Some(at) = next {
                self.deadlines.push(at, id);
            }
        }
    }

    /// Restores the heap's invariant: its top is a live deadline.
    fn settle_deadlines(&mut self) {
        let sas = &self.sas;
        self.deadlines.settle(sas.len(), |at, id| {
            sas.get(&id).is_some_and(|sa| sa.armed == Some(at))
        });
    }

    /// Book-keeping after a handler ran on `id`, which held `children` before: SPI and
    /// child indexes, timers, dead SAs, and the handler's effects on other SAs.
    fn after(&mut self, now: Instant, id: IkeSaId, children: &[u32], effects: Vec<SaEffect>) {
        if let Some(sa) = self.sas.get_mut(&id) {
            for spi in children {
                if !sa.has_child(*spi) && self.by_child.get(spi) == Some(&id) {
                    self.by_child.remove(spi);
                }
            }
            let spi = sa.our_spi();
            if spi != 0 {
                self.by_spi.insert(spi, id);
            }
            if sa.is_dead() || sa.is_established() {
                if let Some(from) = sa.half_open_from.take() {
                    self.half_open.remove(&(from, sa.spi_i));
                    if let Entry::Occupied(mut n) = self.half_open_by_ip.entry(from.ip()) {
                        *n.get_mut() -= 1;
                        if *n.get() == 0 {
                            n.remove();
                        }
                    }
                }
            }
            if sa.is_dead() {
                if let Some(peer) = sa.me.as_ref().and_then(|m| m.registered.as_ref()) {
                    self.shared.mediation.unregister(peer, id);
                }
                // Its virtual IPs go offline, kept for the peer's identity.
                self.shared.pools.release(&sa.peer_vips, id);
                self.by_spi.remove(&spi);
                if let Some(from) = sa.init_from {
                    if self.by_init.get(&(from, sa.spi_i)) == Some(&id) {
                        self.by_init.remove(&(from, sa.spi_i));
                    }
                }
                if let Some(key) = sa.identities() {
                    unindex_peer(&mut self.by_peer, &key, id);
                }
                if let Some(c) = sa.conn {
                    unindex_conn(&mut self.by_conn, c, id);
                }
                if sa.paced_delete {
                    self.deletes_in_flight -= 1;
                }
                self.sas.remove(&id);
            } else if let Some(c) = sa.conn {
                // A responder learns its connection in IKE_AUTH.
                self.by_conn.entry(c).or_default().insert(id);
            }
        }
        self.index_children(id);
        self.rearm(id);
        let mut kick = Vec::new();
        let mut relays = Vec::new();
        let mut relayed = Vec::new();
        for effect in effects {
            match effect {
                SaEffect::Spawn(new) => {
                    if new.rekeyed_from.is_some() && !new.collision_pending {
                        self.shared.stats.ike_rekeys += 1;
                        new.announce_rekey(&mut self.shared.events);
                    }
                    self.by_spi.insert(new.our_spi(), new.id);
                    if !new.tasks.is_empty() {
                        kick.push(new.id);
                    }
                    let new_id = new.id;
                    if let Some(old) = new.rekeyed_from {
                        self.shared.pools.transfer(&new.peer_vips, old, new_id);
                    }
                    if let Some(key) = new.identities() {
                        self.by_peer.entry(key).or_default().push(new_id);
                    }
                    if let Some(c) = new.conn {
                        self.by_conn.entry(c).or_default().insert(new_id);
                    }
                    self.sas.insert(new_id, new);
                    self.index_children(new_id);
                    self.rearm(new_id);
                }
                SaEffect::MoveChildren { from, to } => {
                    let Some(src) = self.sas.get_mut(&from) else {
                        continue;
                    };
                    let children = std::mem::take(&mut src.children);
                    src.state = ike_sa::State::Rekeyed;
                    self.shared.pools.transfer(&src.peer_vips, from, to);
                    if let Some(dst) = self.sas.get_mut(&to) {
                        dst.children.extend(children);
                    }
                    self.index_children(to);
                    self.rearm(from);
                    self.rearm(to);
                }
                SaEffect::SettleCollision { id, survives } => {
                    if let Some(sa) = self.sas.get_mut(&id) {
                        if sa.collision_pending && survives {
                            self.shared.stats.ike_rekeys += 1;
                            sa.announce_rekey(&mut self.shared.events);
                        }
                        sa.collision_pending = false;
                    }
                }
                SaEffect::Unique {
                    id,
                    initial_contact,
                } => self.enforce_unique(now, id, initial_contact),
                SaEffect::RelayMeConnect { to, request } => {
                    relays.push((to, *request));
                }
                SaEffect::Relayed {
                    connect_id,
                    local,
                    relay,
                    token,
                } => relayed.push((connect_id, local, relay, token)),
            }
        }
        self.settle_deadlines();
        for id in kick {
            self.with_sa(now, id, |sa, ctx| sa.run_tasks(ctx));
        }
        for (to, request) in relays {
            self.with_sa(now, to, |sa, ctx| sa.queue_me_connect(ctx, request));
        }
        for (cid, local, relay, token) in relayed {
            self.relayed(now, &cid, local, relay, token);
        }
    }

    /// Processes one datagram received on `local` from `remote` (the non-ESP marker
    /// already stripped when it came in on the NAT-T port).
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        if let Err(d) = self.handle_inner(now, local, remote, data) {
            self.shared.stats.count(d);
        }
        self.pace_deletes(now);
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), Dropped> {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(WireError::UnsupportedVersion(_)) | Err(_) => return Err(Dropped::Malformed),
        };
        let h = msg.header;
        if ConnectivityCheck::is_check(&h) {
            return self.handle_check(now, local, remote, &msg);
        }
        if h.exchange == crate::iana::exchange::IKE_SA_INIT && !h.flags.response && h.spi_r == 0 {
            return self.handle_init_request(now, local, remote, data, msg);
        }
        // The original initiator sets the I flag; our SPI is the other one.
        let our_spi = if h.flags.initiator { h.spi_r } else { h.spi_i };
        let Some(&id) = self.by_spi.get(&our_spi) else {
            self.answer_unknown_spi(now, local, remote, &h);
            return Err(Dropped::UnknownSpi);
        };
        self.with_sa(now, id, |sa, ctx| sa.handle(ctx, local, remote, data, msg))
            .unwrap_or(Err(Dropped::UnknownSpi))
    }

    /// RFC 7296 1.5 / 2.21.4: a request for an IKE SA we do not know (we restarted, say)
    /// may be answered with an unprotected INVALID_IKE_SPI, sent back with the request's
    /// SPIs, exchange and message ID and the response flag. Never for a response (so
    /// two nodes cannot answer each other forever) nor an IKE_SA_INIT, and at most
    /// [`INVALID_SPI_PER_SECOND`] a second.
    fn answer_unknown_spi(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        h: &Header,
    ) {
        if h.flags.response || h.exchange == crate::iana::exchange::IKE_SA_INIT {
            return;
        }
        let (start, count) = &mut self.invalid_spi_budget;
        if start.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *start = Some(now);
            *count = 0;
        }
        if *count >= INVALID_SPI_PER_SECOND {
            return;
        }
        *count += 1;
        let header = Header {
            flags: crate::wire::Flags {
                initiator: !h.flags.initiator,
                response: true,
                version: false,
            },
            ..*h
        };
        let notify = Payload::Notify(crate::wire::Notify {
            protocol: 0,
            spi: Vec::new(),
            kind: crate::iana::notify::INVALID_IKE_SPI,
            data: Vec::new(),
        });
        let mut data = Vec::new();
        Message {
            header,
            payloads: vec![notify],
        }
        .emit(&mut data);
        self.shared.stats.invalid_spi_sent += 1;
        self.shared.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    fn handle_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: Message,
    ) -> Result<(), Dropped> {
        let h: Header = msg.header;
        if self.closing {
            // Not answered at all: a peer retries elsewhere or later, and no SA can
            // come up that shutdown would leave behind.
            return Err(Dropped::ShuttingDown);
        }
        if let Some(&id) = self.half_open.get(&(remote, h.spi_i)) {
            let stored = self.sas.get(&id).and_then(|sa| sa.init_request());
            if stored.is_none_or(|r| r == data) {
                // A retransmitted IKE_SA_INIT: answer from the cached response.
                return self
                    .with_sa(now, id, |sa, ctx| sa.retransmit_init_response(ctx, data))
                    .unwrap_or(Err(Dropped::Unexpected));
            }
            if !ike_sa_init::carries_cookie(&msg) {
                // A late copy of an earlier request of this initiator (one we answered
                // with a COOKIE, say): the half-open SA answers its newer request.
                return Err(Dropped::Unexpected);
            }
            // RFC 7296 2.6: the initiator started over with our cookie after we built a
            // half-open SA from a stale copy of its first request. It signs the request
            // it sent last (2.15), so that one must make the SA: drop the stale one.
            self.with_sa(now, id, |sa, ctx| sa.die(ctx, DownReason::HalfOpenExpired));
        } else if self.by_init.contains_key(&(remote, h.spi_i)) {
            // A late retransmission of a request whose SA is past IKE_SA_INIT (seen at
            // thousands of SAs): a new half-open SA would only linger until it expires.
            return Err(Dropped::Unexpected);
        }
        if self.half_open.len() >= self.shared.config.max_half_open
            || self.sas.len() >= self.shared.config.max_ike_sas
        {
            return Err(Dropped::Overloaded);
        }
        let from_ip = self.half_open_by_ip.get(&remote.ip()).copied();
        if from_ip.unwrap_or(0) >= self.shared.config.max_half_open_per_source {
            return Err(Dropped::SourceLimit);
        }
        let key = (remote, h.spi_i);
        let required = self.half_open.len() >= self.shared.config.cookie_threshold
            || self.challenged.contains(now, &key)
            || self.cookies_until.is_some_and(|t| now < t);
        let cookies_sent = self.shared.stats.cookies_sent;
        let mut ctx = self.shared.ctx(now);
        let cookie = ike_sa_init::CookieJar {
            secret: &self.cookie_secret,
            required,
        };
        let sa = IkeSa::respond_init(&mut ctx, &cookie, local, remote, data, &msg)?;
        if ctx.stats.cookies_sent != cookies_sent && self.challenged.insert(now, key) {
            self.cookies_until = Some(now + ike_sa_init::Challenged::TTL);
        }
        let Some(mut sa) = sa else { return Ok(()) };
        let id = ctx.alloc_id();
        sa.id = id;
        sa.half_open_from = Some(remote);
        sa.init_from = Some(remote);
        self.half_open.insert((remote, h.spi_i), id);
        *self.half_open_by_ip.entry(remote.ip()).or_default() += 1;
        self.by_init.insert((remote, h.spi_i), id);
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, Box::new(sa));
        self.rearm(id);
        self.settle_deadlines();
        Ok(())
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.shared.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.shared.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next: the top of the deadline
    /// heap, O(1). Call it again after every call that takes `&mut self` (`handle`,
    /// `handle_timeout`, the commands), since each may arm or move a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sas = self.deadlines.peek().map(|(at, _)| at);
        match (sas, self.shared.mediation.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every timer that is due at `now`: retransmissions, rekeys, liveness checks,
    /// half-open expiry. O(log n) per due SA; an SA whose timer is re-armed at or before
    /// `now` runs again on the next call.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some((at, id)) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(sa) = self.sas.get_mut(&id).filter(|sa| sa.armed == Some(at)) {
                // Disarmed while it runs, so that `after` arms its next deadline.
                sa.armed = None;
                due.push(id);
            }
        }
        for id in due {
            self.with_sa(now, id, |sa, ctx| sa.on_timeout(ctx));
        }
        self.pace_deletes(now);
        self.settle_deadlines();
        let lists: Vec<ConnectId> = self
            .shared
            .mediation
            .checklists
            .iter()
            .filter(|(_, l)| l.next_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for cid in lists {
            let shared = &mut self.shared;
            let Some(list) = shared.mediation.checklists.get_mut(&cid) else {
                continue;
            };
            let outcome = list.on_timeout(now, &mut shared.transmits);
            let ask = list.relay_due(now).then_some(list.via).flatten();
            self.checklist_outcome(now, &cid, outcome);
            if let Some(via) = ask {
                self.with_sa(now, via, |sa, ctx| sa.queue_relay_request(ctx, cid));
            }
        }
    }

    /// Sends each IKE SA that runs through a mediation server's relay its bind datagram
    /// again (call it with the NAT-T keepalives): when our NAT gives our flow a new
    /// public port mid-tunnel, the relay only forwards from and to the address that
    /// bound last, and the bind token is what proves that address is ours. O(IKE SAs).
    pub fn send_relay_binds(&mut self) {
        for sa in self.sas.values() {
            let Some((relay, token)) = sa.relay_bind else {
                continue;
            };
            if sa.remote == relay && sa.is_established() {
                self.shared.transmits.push_back(Transmit {
                    local: sa.local,
                    remote: relay,
                    data: token.bind_datagram(),
                });
            }
        }
    }

    /// Mediation server: the engine opened the relay port `port` for attempt
    /// `connect_id` ([`Event::RelayWanted`]), or could not (`None`); each peer learns
    /// its port and bind token.
    pub fn relay_allocated(&mut self, now: Instant, connect_id: &ConnectId, port: Option<u16>) {
        let Some(sides) = self.shared.mediation.take_session(connect_id) else {
            return;
        };
        for (sa, token) in sides {
            let ready = crate::wire::relay::RelayReady {
                port: port.unwrap_or(0),
                token,
                connect_id: connect_id.clone(),
            };
            self.with_sa(now, sa, |sa, ctx| sa.queue_relay_ready(ctx, ready));
        }
        self.settle_deadlines();
    }

    /// A peer's relay for `cid` is open: the checks are over; the initiator sets the
    /// direct IKE SA up through it, the responder notes it.
    fn relayed(
        &mut self,
        now: Instant,
        cid: &ConnectId,
        local: SocketAddr,
        relay: SocketAddr,
        token: RelayToken,
    ) {
        let Some(list) = self.shared.mediation.checklists.remove(cid) else {
            return;
        };
        match list.conn {
            Some((ci, children)) if list.initiator => {
                self.start_mediated(now, cid, ci, children, local, relay, Some(token));
            }
            _ => self
                .shared
                .mediation
                .note_relayed(cid.clone(), relay, token),
        }
    }

    /// Starts mediated connection `ci`'s direct IKE SA from `local` to `remote`, with
    /// ME_CONNECTID `cid` in its IKE_SA_INIT; `relay_token` when `remote` is the
    /// server's relay.
    #[allow(clippy::too_many_arguments)]
    fn start_mediated(
        &mut self,
        now: Instant,
        cid: &ConnectId,
        ci: usize,
        children: Vec<usize>,
        local: SocketAddr,
        remote: SocketAddr,
        relay_token: Option<RelayToken>,
    ) {
        let relayed = relay_token.is_some();
        let conn = self.conn_name(ci);
        if self.sas.len() >= self.shared.config.max_ike_sas {
            self.shared.events.push_back(Event::MediationFailed {
                conn,
                peer: String::new(),
                reason: MediationFailure::NoPath,
            });
            return;
        }
        let mut ctx = self.shared.ctx(now);
        let id = ctx.alloc_id();
        let mut sa = IkeSa::initiate(&mut ctx, id, ci, children, local, remote, Some(cid.clone()));
        sa.relay_bind = relay_token.map(|t| (remote, t));
        ctx.events.push_back(Event::MediatedPath {
            conn,
            ike: id,
            local,
            remote,
            relayed,
        });
        self.by_spi.insert(sa.our_spi(), id);
        self.by_conn.entry(ci).or_default().insert(id);
        self.sas.insert(id, Box::new(sa));
        self.rearm(id);
        self.settle_deadlines();
    }

    /// The IKE SA holding the child SA with inbound SPI `spi_in`, O(1).
    fn sa_of_child(&self, spi_in: u32) -> Result<IkeSaId, CommandError> {
        self.by_child
            .get(&spi_in)
            .copied()
            .filter(|id| self.sas.get(id).is_some_and(|sa| sa.has_child(spi_in)))
            .ok_or(CommandError::UnknownSa)
    }

    /// Starts an IKE SA for connection `conn`, with its child `child` (or all of its
    /// children when `None`). Returns the new SA's handle.
    pub fn initiate(
        &mut self,
        now: Instant,
        conn: &str,
        child: Option<&str>,
    ) -> Result<IkeSaId, CommandError> {
        let ci = self.conn_index(conn)?;
        let c = &self.shared.connections[ci];
        let children: Vec<usize> = match child {
            Some(name) => vec![c
                .children
                .iter()
                .position(|ch| ch.name == name)
                .ok_or_else(|| CommandError::UnknownChild {
                    conn: conn.to_string(),
                    child: name.to_string(),
                })?],
            None => (0..c.children.len()).collect(),
        };
        // An established IKE SA of this connection takes new children directly.
        let usable = self
            .conn_sas(ci)
            .find(|(_, sa)| sa.is_usable())
            .map(|(id, _)| id);
        if let Some(id) = usable {
            self.with_sa(now, id, |sa, ctx| {
                for ch in children {
                    sa.queue_create_child(ctx, ch);
                }
            });
            return Ok(id);
        }
        if let Mediation::MediatedBy { by, peer } = &c.mediation {
            let peer = match peer {
                Some(p) => p.to_wire(),
                None if !c.remote_id.is_any() => c.remote_id.to_wire(),
                None => return Err(CommandError::NoMediationPeer(conn.to_string())),
            };
            let by = by.clone();
            return self.initiate_mediated(now, ci, children, &by, peer);
        }
        let remote_ip = *c
            .remote_addrs
            .first()
            .ok_or_else(|| CommandError::NoRemoteAddress(conn.to_string()))?;
        if self.sas.len() >= self.shared.config.max_ike_sas {
            return Err(CommandError::TooManySas);
        }
        let local_ip = c
            .local_addrs
            .first()
            .copied()
            .unwrap_or(if remote_ip.is_ipv4() {
                std::net::IpAddr::from([0, 0, 0, 0])
            } else {
                std::net::IpAddr::from([0u16; 8])
            });
        let local = SocketAddr::new(local_ip, self.shared.config.port);
        let remote = SocketAddr::new(remote_ip, c.remote_port);
        // RFC 7296 2.4: INITIAL_CONTACT only when no IKE SA with this peer is up (and
        // its identity is known: with %any a peer might be any of several).
        let initial_contact = !c.remote_id.is_any()
            && !self
                .by_peer
                .get(&(c.local_id.clone(), c.remote_id.clone()))
                .is_some_and(|ids| ids.iter().any(|i| self.sas.contains_key(i)));
        let mut ctx = self.shared.ctx(now);
        let id = ctx.alloc_id();
        let mut sa = IkeSa::initiate(&mut ctx, id, ci, children, local, remote, None);
        sa.initial_contact = initial_contact;
        self.by_conn.entry(ci).or_default().insert(id);
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, Box::new(sa));
        self.rearm(id);
        self.settle_deadlines();
        Ok(id)
    }

    /// Sets connection `ci` up through mediation connection `by`: asks the server for
    /// `peer` on `by`'s established IKE SA; the direct IKE SA follows the checks
    /// ([`Event::MediatedPath`]) or the attempt fails ([`Event::MediationFailed`]).
    /// Returns the mediation IKE SA's handle, which carries the request.
    fn initiate_mediated(
        &mut self,
        now: Instant,
        ci: usize,
        children: Vec<usize>,
        by: &str,
        peer: crate::wire::Identification,
    ) -> Result<IkeSaId, CommandError> {
        let med = self.mediation_sa(by)?;
        // An attempt in flight (one the server's callback started) serves this one.
        let in_flight = self
            .shared
            .mediation
            .checklists
            .values()
            .any(|l| l.recheck.is_none() && l.conn.as_ref().is_some_and(|(c, _)| *c == ci));
        if in_flight {
            return Ok(med);
        }
        self.with_sa(now, med, |sa, ctx| {
            sa.start_mediation(ctx, ci, children, peer)
        })
        .flatten()
        .ok_or_else(|| CommandError::MediationNotUp(by.to_string()))?;
        Ok(med)
    }

    /// Our host addresses for mediated connections' candidates, besides each
    /// mediation SA's own (draft-brunner-ikev2-mediation 5.1: every local address is
    /// a host candidate; the engine leaves out loopback and tunnel devices). The first
    /// [`mediation::MAX_HOSTS`] are kept; call again when addresses change.
    pub fn set_host_addresses(&mut self, mut addrs: Vec<IpAddr>) {
        addrs.retain(|a| !a.is_loopback() && !a.is_unspecified() && !a.is_multicast());
        addrs.dedup();
        addrs.truncate(mediation::MAX_HOSTS);
        self.shared.mediation.hosts = addrs;
    }

    /// Runs the connectivity checks again for the relayed mediated IKE SA `id` (ours,
    /// as initiator): ME_CONNECT through the server and checks, without asking for a
    /// relay; when a pair passes, the SA moves there ([`Event::PeerAddressChanged`],
    /// [`Event::MediatedPath`] with `relayed` false). Nothing is reported when none
    /// does. The engine calls this periodically while a path is relayed.
    pub fn recheck_mediated(&mut self, now: Instant, id: IkeSaId) -> Result<(), CommandError> {
        let sa = self.sas.get(&id).ok_or(CommandError::UnknownSa)?;
        if !sa.initiator || !sa.is_established() {
            return Err(CommandError::UnknownSa);
        }
        let ci = sa.conn.ok_or(CommandError::UnknownSa)?;
        let c = &self.shared.connections[ci];
        let Mediation::MediatedBy { by, peer } = &c.mediation else {
            return Err(CommandError::UnknownSa);
        };
        let peer = match peer {
            Some(p) => p.to_wire(),
            None if !c.remote_id.is_any() => c.remote_id.to_wire(),
            None => return Err(CommandError::NoMediationPeer(c.name.clone())),
        };
        let by = by.clone();
        let med = self.mediation_sa(&by)?;
        let cid = self
            .with_sa(now, med, |sa, ctx| {
                sa.start_mediation(ctx, ci, Vec::new(), peer)
            })
            .flatten()
            .ok_or(CommandError::MediationNotUp(by))?;
        if let Some(list) = self.shared.mediation.checklists.get_mut(&cid) {
            list.relay_at = None;
            list.recheck = Some(id);
        }
        Ok(())
    }

    /// A connectivity check arrived (an unencrypted INFORMATIONAL with zero SPIs).
    fn handle_check(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message,
    ) -> Result<(), Dropped> {
        let check = ConnectivityCheck::from_message(msg).map_err(|_| Dropped::Malformed)?;
        let shared = &mut self.shared;
        let list = shared
            .mediation
            .checklists
            .get_mut(&check.connect_id)
            .ok_or(Dropped::Unexpected)?;
        let (verified, outcome) =
            list.handle_check(now, local, remote, &check, &mut shared.transmits);
        if !verified {
            return Err(Dropped::Integrity);
        }
        self.checklist_outcome(now, &check.connect_id, outcome);
        Ok(())
    }

    /// Acts on a checklist's outcome: the initiator sets the direct IKE SA up on the
    /// chosen pair, with ME_CONNECTID in its IKE_SA_INIT; a failure is reported; a
    /// responder's finished checklist is dropped.
    fn checklist_outcome(&mut self, now: Instant, cid: &ConnectId, outcome: Outcome) {
        let finished = match outcome {
            Outcome::Pending => self
                .shared
                .mediation
                .checklists
                .get(cid)
                .is_some_and(|l| l.is_done()),
            _ => true,
        };
        if !finished {
            return;
        }
        let Some(list) = self.shared.mediation.checklists.remove(cid) else {
            return;
        };
        if let Some(relayed) = list.recheck {
            if let Outcome::Chosen { local, remote } = outcome {
                self.with_sa(now, relayed, |sa, ctx| sa.move_direct(ctx, local, remote));
            }
            return;
        }
        let Some((ci, children)) = list.conn.clone() else {
            return;
        };
        let conn = self.conn_name(ci);
        match outcome {
            Outcome::Chosen { local, remote }
                if self.sas.len() < self.shared.config.max_ike_sas =>
            {
                self.start_mediated(now, cid, ci, children, local, remote, None);
            }
            _ => {
                self.shared.events.push_back(Event::MediationFailed {
                    conn,
                    peer: me_connect::identity_string(&list.peer),
                    reason: MediationFailure::NoPath,
                });
            }
        }
    }

    /// Peers registered at this mediation server: (identity, their mediation IKE SA).
    pub fn mediation_peers(&self) -> Vec<(String, IkeSaId)> {
        let mut v: Vec<(String, IkeSaId)> = self
            .shared
            .mediation
            .registered()
            .map(|(id, sa)| (me_connect::identity_string(id), sa))
            .collect();
        v.sort();
        v
    }

    /// How many peers are registered at this mediation server (no allocation).
    pub fn mediation_peer_count(&self) -> usize {
        self.shared.mediation.registered().count()
    }

    /// Deletes every IKE SA of connection `conn` (and so their child SAs) at the peer.
    pub fn terminate(&mut self, now: Instant, conn: &str) -> Result<(), CommandError> {
        let ci = self.conn_index(conn)?;
        let ids: Vec<IkeSaId> = self.conn_sas(ci).map(|(id, _)| id).collect();
        for id in ids {
            self.with_sa(now, id, |sa, ctx| sa.queue_delete_ike(ctx));
        }
        Ok(())
    }

    /// The IKE SAs of connection index `ci` (every state), from the index.
    fn conn_sas(&self, ci: usize) -> impl Iterator<Item = (IkeSaId, &IkeSa)> {
        self.by_conn
            .get(&ci)
            .into_iter()
            .flatten()
            .filter_map(move |id| {
                self.sas
                    .get(id)
                    .filter(|sa| sa.conn == Some(ci))
                    .map(|sa| (*id, &**sa))
            })
    }

    /// How many IKE SAs exist (every state), O(1).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// IKE SAs by state and the child SAs they hold, counted without the per-SA
    /// snapshot [`Endpoint::ike_sas`] makes (no allocation per SA), for metrics.
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        for sa in self.sas.values() {
            let name = sa.state_name();
            if let Some(i) = STATE_NAMES.iter().position(|n| *n == name) {
                c.ike_sas[i] += 1;
            }
            c.child_sas += sa.live_children();
        }
        c
    }

    /// Whether connection `conn` has an IKE SA being negotiated and one established,
    /// from the per-connection index (no scan over every SA).
    pub fn connection_state(&self, conn: &str) -> ConnectionState {
        let mut st = ConnectionState::default();
        if let Ok(ci) = self.conn_index(conn) {
            for (_, sa) in self.conn_sas(ci) {
                st.connecting |= matches!(
                    sa.state,
                    ike_sa::State::InitSent | ike_sa::State::AuthSent | ike_sa::State::InitReplied
                );
                st.established |= sa.state == ike_sa::State::Established;
            }
        }
        st
    }

    /// Begins a shutdown: deletes every IKE SA at its peer, leaves new IKE_SA_INIT
    /// requests unanswered ([`Dropped::ShuttingDown`]) and deletes any IKE SA whose
    /// negotiation completes meanwhile, so none is left behind. Keep calling `handle`
    /// and `handle_timeout` until [`Endpoint::ike_sas`] is empty or a grace time ends.
    pub fn shutdown(&mut self, now: Instant) {
        self.closing = true;
        self.terminate_all(now);
    }

    /// Deletes every IKE SA at its peer, `config.delete_window` at a time (the next
    /// starts as one finishes, from [`Endpoint::handle`] and
    /// [`Endpoint::handle_timeout`]).
    pub fn terminate_all(&mut self, now: Instant) {
        let mut ids: Vec<IkeSaId> = self.sas.keys().copied().collect();
        // Oldest first: a stable order, whatever the map's.
        ids.sort_unstable();
        self.delete_queue.extend(ids);
        self.pace_deletes(now);
    }

    /// Starts queued deletes while fewer than `config.delete_window` are under way. A
    /// delete unanswered for `retransmit_timeout` gives its place up (it goes on being
    /// retransmitted), so dead peers at the front of the queue hold the others back
    /// by that much at most.
    fn pace_deletes(&mut self, now: Instant) {
        if self.delete_queue.is_empty() && self.deletes_started.is_empty() {
            return;
        }
        let window = self.shared.config.delete_window.max(1);
        let patience = self.shared.config.retransmit_timeout;
        let mut started = false;
        loop {
            // The oldest started deletes: drop the finished, release the overdue.
            while let Some(&(at, id)) = self.deletes_started.front() {
                match self.sas.get_mut(&id) {
                    Some(sa) if sa.paced_delete => {
                        if self.deletes_in_flight < window
                            || now.saturating_duration_since(at) < patience
                        {
                            break;
                        }
                        sa.paced_delete = false;
                        self.deletes_in_flight -= 1;
                    }
                    _ => {}
                }
                self.deletes_started.pop_front();
            }
            if self.deletes_in_flight >= window {
                break;
            }
            let Some(id) = self.delete_queue.pop_front() else {
                break;
            };
            match self.sas.get_mut(&id) {
                Some(sa) if !sa.paced_delete && !sa.is_dead() => {
                    sa.paced_delete = true;
                    self.deletes_in_flight += 1;
                }
                _ => continue,
            }
            self.deletes_started.push_back((now, id));
            self.with_sa(now, id, |sa, ctx| sa.queue_delete_ike(ctx));
            started = true;
        }
        if started {
            self.settle_deadlines();
        }
    }

    /// Rekeys the child SA whose inbound SPI is `spi_in` (e.g. when esp reports its soft
    /// lifetime), make-before-break.
    pub fn rekey_child(&mut self, now: Instant, spi_in: u32) -> Result<(), CommandError> {
        let id = self.sa_of_child(spi_in)?;
        self.with_sa(now, id, |sa, ctx| sa.queue_rekey_child(ctx, spi_in));
        Ok(())
    }

    /// Rekeys an IKE SA (RFC 7296 2.18).
    pub fn rekey_ike(&mut self, now: Instant, id: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, id, |sa, ctx| sa.queue_rekey_ike(ctx))
            .ok_or(CommandError::UnknownSa)
    }

    /// Sends a liveness check on an IKE SA now.
    pub fn dpd(&mut self, now: Instant, id: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, id, |sa, ctx| sa.queue_dpd(ctx))
            .ok_or(CommandError::UnknownSa)
    }

    /// Deletes one child SA at the peer.
    pub fn delete_child(&mut self, now: Instant, spi_in: u32) -> Result<(), CommandError> {
        let id = self.sa_of_child(spi_in)?;
        self.with_sa(now, id, |sa, ctx| sa.queue_delete_child(ctx, spi_in));
        Ok(())
    }
}

/// `base * 2^tries`, capped: the retransmission schedule (RFC 7296 2.1).
pub(crate) fn backoff(config: &Config, tries: u32) -> Duration {
    let factor = 1u32.checked_shl(tries.min(16)).unwrap_or(u32::MAX);
    config
        .retransmit_timeout
        .saturating_mul(factor)
        .min(config.retransmit_max_interval)
}
