//! Connection definitions: plain structs that the engine fills from its configuration
//! file. Names follow swanctl.conf (local_addrs, remote_ts, esp_proposals, ...).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use crate::auth::{Identity, PrivateKey, TrustStore};
use crate::proposal::ProposalSet;
use crate::wire::TrafficSelector;

/// Endpoint-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Port of the IKE socket (500).
    pub port: u16,
    /// Port of the NAT-T socket (4500).
    pub port_nat_t: u16,
    /// First retransmission timeout; doubles each time (RFC 7296 2.1).
    pub retransmit_timeout: Duration,
    /// Retransmissions before giving up on a request.
    pub retransmit_tries: u32,
    /// Upper bound of a single retransmission interval.
    pub retransmit_max_interval: Duration,
    /// Half-open IKE SAs above which a responder asks for cookies (RFC 7296 2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs above which new IKE_SA_INIT requests are dropped.
    pub max_half_open: usize,
    /// Half-open IKE SAs one source address may hold; its further IKE_SA_INIT requests
    /// are dropped. Keep it above `cookie_threshold`: below the threshold no cookie
    /// proves the source, so a spoofer using a victim's address could fill its share.
    pub max_half_open_per_source: usize,
    /// Half-open responder SAs are forgotten after this long without IKE_AUTH.
    pub half_open_timeout: Duration,
    /// Largest IKE datagram we send before fragmenting (RFC 7383), IKE header included.
    pub fragment_size: usize,
    /// Most IKE SAs (established or not) this endpoint holds.
    pub max_ike_sas: usize,
    /// Deleting every IKE SA (shutdown, terminate all): at most this many deletes
    /// outstanding at once, the next starting as one finishes (or goes unanswered for
    /// `retransmit_timeout`), so peers holding tens of thousands are not sent them in
    /// one burst that their queues would drop and we would retransmit.
    pub delete_window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 500,
            port_nat_t: 4500,
            retransmit_timeout: Duration::from_secs(2),
            retransmit_tries: 5,
            retransmit_max_interval: Duration::from_secs(30),
            cookie_threshold: 64,
            max_half_open: 4096,
            max_half_open_per_source: 128,
            half_open_timeout: Duration::from_secs(30),
            fragment_size: 1280,
            max_ike_sas: 100_000,
            delete_window: 4096,
        }
    }
}

/// How this end proves its identity.
#[derive(Clone)]
pub enum LocalAuth {
    /// Pre-shared key (RFC 7296 2.15).
    Psk(Arc<zeroize::Zeroizing<Vec<u8>>>),
    /// A private key, with our certificate chain (end entity first, DER).
    Pubkey {
        /// Signing key.
        key: Arc<PrivateKey>,
        /// Certificates sent in CERT payloads, end entity first.
        certs: Vec<Vec<u8>>,
    },
}

impl std::fmt::Debug for LocalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalAuth::Psk(_) => f.write_str("Psk(..)"),
            LocalAuth::Pubkey { certs, .. } => write!(f, "Pubkey({} certs)", certs.len()),
        }
    }
}

/// How the peer must prove its identity.
#[derive(Clone)]
pub enum RemoteAuth {
    /// Pre-shared key.
    Psk(Arc<zeroize::Zeroizing<Vec<u8>>>),
    /// A certificate chaining up to one of these CAs.
    Pubkey(Arc<TrustStore>),
}

impl std::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAuth::Psk(_) => f.write_str("Psk(..)"),
            RemoteAuth::Pubkey(_) => f.write_str("Pubkey(..)"),
        }
    }
}

/// One IKE connection (a `connections.<name>` section of swanctl.conf).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Connection name.
    pub name: String,
    /// Our addresses; empty means any.
    pub local_addrs: Vec<IpAddr>,
    /// The peer's addresses; empty means any (a responder-only connection).
    pub remote_addrs: Vec<IpAddr>,
    /// The peer's IKE port (500, or the port of a proxy in front of it).
    pub remote_port: u16,
    /// IKE proposals, most preferred first.
    pub proposals: ProposalSet,
    /// Our identity.
    pub local_id: Identity,
    /// How we authenticate.
    pub local_auth: LocalAuth,
    /// The identity the peer must present (`Identity::Any` for any).
    pub remote_id: Identity,
    /// How the peer authenticates.
    pub remote_auth: RemoteAuth,
    /// Force UDP encapsulation even without a NAT (fakes NAT detection, RFC 7296 2.23).
    pub encap: bool,
    /// Send a liveness check when nothing was heard from the peer for this long.
    pub dpd_delay: Option<Duration>,
    /// Rekey the IKE SA after this long (zero: never).
    pub rekey_time: Duration,
    /// Offer and accept IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Child SAs negotiated under this connection.
    pub children: Vec<ChildConfig>,
    /// What to do with other IKE SAs between the same two identities (swanctl's
    /// `unique`).
    pub unique: UniquePolicy,
    /// The connection's part in IKE mediation (draft-brunner-ikev2-mediation).
    pub mediation: Mediation,
    /// Initiator: virtual IPs to ask for in a CFG_REQUEST (RFC 7296 3.15); an
    /// unspecified address (0.0.0.0, ::) asks for any of that family (swanctl's `vips`).
    pub vips: Vec<IpAddr>,
    /// Responder: names of the pools that answer the peer's CFG_REQUEST (swanctl's
    /// `pools`), tried in order.
    pub pools: Vec<String>,
}

/// The uniqueness policy of a connection, with swanctl.conf's names and charon's
/// semantics: duplicates are IKE SAs with the same local and remote identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UniquePolicy {
    /// Keep duplicates, except that an INITIAL_CONTACT from the peer (RFC 7296 2.4: it
    /// lost its state) removes every older IKE SA with its identity (swanctl's default).
    #[default]
    No,
    /// Keep duplicates, even on INITIAL_CONTACT.
    Never,
    /// Keep the established IKE SA of this connection and delete the new one.
    Keep,
    /// Delete the older IKE SAs of this connection once a new one is established.
    Replace,
}

/// A connection's part in IKE mediation, in swanctl.conf's words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mediation {
    /// An ordinary connection.
    #[default]
    Off,
    /// `mediation = yes`: a connection to a mediation server (initiator) or, on the
    /// server, from the peers it mediates (responder). It carries no child SA.
    Mediation,
    /// `mediated_by = CONN`: set up through the mediation connection `by` instead of
    /// `remote_addrs`, asking the server for `peer` (`mediation_peer`; `None`: the
    /// remote id).
    MediatedBy {
        /// Name of the mediation connection.
        by: String,
        /// The identity to ask the server for.
        peer: Option<Identity>,
    },
}

impl Connection {
    /// Whether this connection admits an IKE SA between these addresses: empty address
    /// lists and an unspecified local address admit any.
    pub(crate) fn admits(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        (self.local_addrs.is_empty()
            || local.ip().is_unspecified()
            || self.local_addrs.contains(&local.ip()))
            && (self.remote_addrs.is_empty() || self.remote_addrs.contains(&remote.ip()))
    }
}

/// One child SA definition (a `children.<name>` section).
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// Child name.
    pub name: String,
    /// Our side's selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side's selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP proposals, most preferred first (with a DH group for PFS on rekeys).
    pub esp_proposals: ProposalSet,
    /// Rekey the child SA after this long (zero: never).
    pub rekey_time: Duration,
}
