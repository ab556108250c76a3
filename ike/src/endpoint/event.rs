//! What the endpoint tells its driver: SAs up, rekeyed and down.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::error::{AuthFailure, PeerMisbehaved};
use super::IkeSaId;
use crate::crypto::CryptoError;
use crate::iana::NotifyType;
use crate::proposal::{EspSuite, IkeSuite};
use crate::wire::mediation::ConnectId;
use crate::wire::relay::RelayToken;
use crate::wire::TrafficSelector;

/// Something the engine must act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// An IKE SA finished IKE_AUTH.
    IkeUp(Box<IkeSaInfo>),
    /// An IKE SA was replaced by a rekeyed one (RFC 7296 2.18); its child SAs moved over.
    IkeRekeyed {
        /// The old SA.
        old: IkeSaId,
        /// Its successor.
        new: IkeSaId,
    },
    /// Both peers rekeyed the IKE SA `old` at once (RFC 7296 2.8.2): of the two new SAs,
    /// `kept` carries on and `redundant` (the exchange with the lowest nonce) is deleted
    /// by the peer that created it. Informational: `IkeRekeyed` and `IkeDown` still come.
    IkeRekeyCollision {
        /// The SA both peers rekeyed.
        old: IkeSaId,
        /// The new SA that stays.
        kept: IkeSaId,
        /// The new SA that goes.
        redundant: IkeSaId,
    },
    /// An IKE SA is gone, with all its child SAs (each also reported as `ChildDown`).
    IkeDown {
        /// The SA.
        id: IkeSaId,
        /// Its connection's name.
        conn: String,
        /// Why.
        reason: DownReason,
    },
    /// A child SA is negotiated: install the inbound SA, then the outbound one. When
    /// `rekeys` names an older child SA, keep that one's inbound SA until its
    /// `ChildDown` so that no packet in flight is lost.
    ChildUp(Box<ChildSaInfo>),
    /// Our new child SA lost a simultaneous rekey (RFC 7296 2.8.1): it is redundant and
    /// about to be deleted. Send nothing more on it (the other new SA takes over when
    /// the old one goes); keep its inbound SA until its `ChildDown`.
    ChildRedundant {
        /// Its IKE SA.
        ike: IkeSaId,
        /// Its inbound SPI.
        spi_in: u32,
        /// Its outbound SPI.
        spi_out: u32,
    },
    /// A child SA is deleted: remove both directions.
    ChildDown {
        /// Its IKE SA.
        ike: IkeSaId,
        /// Its inbound SPI.
        spi_in: u32,
        /// Its outbound SPI.
        spi_out: u32,
        /// Why.
        reason: DownReason,
    },
    /// A child SA could not be negotiated (the IKE SA may still be up).
    ChildFailed {
        /// Its IKE SA.
        ike: IkeSaId,
        /// Connection name.
        conn: String,
        /// Child name.
        child: String,
        /// Why.
        reason: DownReason,
    },
    /// A responder could not assign any of the virtual IPs the peer asked for (its
    /// pools are exhausted or of the other family): the peer got INTERNAL_ADDRESS_FAILURE
    /// and no child SA.
    NoVirtualIp {
        /// The IKE SA.
        ike: IkeSaId,
        /// Connection name.
        conn: String,
        /// The peer's identity, displayed.
        remote_id: String,
        /// What it asked for (unspecified: any address of the family).
        requested: Vec<IpAddr>,
        /// The connection's pools.
        pools: Vec<String>,
    },
    /// The peer's address changed (a NAT rebinding, RFC 7296 2.23): send ESP there now.
    PeerAddressChanged {
        /// The IKE SA.
        ike: IkeSaId,
        /// The new address (port 4500 side when encapsulating).
        remote: SocketAddr,
    },
    /// The connectivity checks of a mediated connection chose a pair of addresses; the
    /// direct IKE SA `ike` is being set up on it (draft-brunner-ikev2-mediation 5). The
    /// responder reports it when that IKE SA is established.
    MediatedPath {
        /// The mediated connection.
        conn: String,
        /// The direct IKE SA.
        ike: IkeSaId,
        /// Our address of the pair (the engine sends from its NAT-T socket).
        local: SocketAddr,
        /// The peer's address of the pair (the server's relay port when relayed).
        remote: SocketAddr,
        /// The path goes through the mediation server's relay (esprit only).
        relayed: bool,
    },
    /// Mediation server: two registered peers both asked to relay attempt
    /// `connect_id`. Open a UDP relay port on `local`, forward datagrams between the
    /// two addresses that bind with `tokens`, and answer with
    /// [`Endpoint::relay_allocated`](super::Endpoint::relay_allocated).
    RelayWanted {
        /// The attempt.
        connect_id: ConnectId,
        /// The server's address both mediation SAs use.
        local: IpAddr,
        /// The two peers' identities, displayed.
        peers: [String; 2],
        /// Their bind tokens, in the same order.
        tokens: [RelayToken; 2],
    },
    /// A mediated connection could not be set up.
    MediationFailed {
        /// The mediated connection.
        conn: String,
        /// The peer asked for.
        peer: String,
        /// Why.
        reason: MediationFailure,
    },
}

/// Why a mediated connection could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediationFailure {
    /// The server does not know the peer: it is not registered (ME_CONNECT_FAILED).
    #[error("peer is not registered at the mediation server")]
    PeerNotRegistered,
    /// The server refused the ME_CONNECT with another error notify.
    #[error("mediation server refused with {0}")]
    Refused(NotifyType),
    /// No candidate pair passed the connectivity checks (or the other peer never
    /// answered through the server).
    #[error("no address pair passed the connectivity checks")]
    NoPath,
    /// No pair passed the checks within a few seconds (both NATs symmetric?) and the
    /// mediation server will not relay: the other peer cannot (it is not esprit), or
    /// the server has no relay to spare.
    #[error(
        "no address pair passed the connectivity checks and the mediation server will \
         not relay (the peer cannot, e.g. it is not esprit, or no relay is free)"
    )]
    RelayRefused,
}

/// Why an SA went down or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// We deleted it (terminate, shutdown).
    Terminated,
    /// The peer deleted it.
    DeletedByPeer,
    /// Replaced by a rekeyed SA.
    Rekeyed,
    /// The peer did not answer after all retransmissions.
    Timeout,
    /// A liveness check (DPD) went unanswered.
    DpdTimeout,
    /// Authentication failed, ours or the peer's.
    AuthenticationFailed(AuthFailure),
    /// No acceptable proposal.
    NoProposalChosen,
    /// Traffic selectors unacceptable.
    TsUnacceptable,
    /// The peer answered with another error notify.
    PeerError(NotifyType),
    /// A protocol violation by the peer.
    PeerMisbehaved(PeerMisbehaved),
    /// A cryptographic operation failed on our side (an unsupported DH group in the
    /// configuration, key derivation).
    Crypto(CryptoError),
    /// The connection no longer has the child config the request was made for (the
    /// configuration was replaced meanwhile).
    UnknownChildConfig,
    /// The half-open SA expired before IKE_AUTH arrived.
    HalfOpenExpired,
    /// Another IKE SA with the same identities took its place: the peer sent
    /// INITIAL_CONTACT (RFC 7296 2.4), or the connection's `unique` policy.
    Replaced {
        /// By the peer's INITIAL_CONTACT rather than by our policy.
        initial_contact: bool,
    },
}

impl DownReason {
    /// A name per kind of reason, in snake case, indexed by [`DownReason::as_index`]: the
    /// label values of counters by reason (the details, such as which notify or which
    /// authentication check, are left out so the set stays small and fixed).
    pub const NAMES: [&'static str; 14] = [
        "terminated",
        "deleted_by_peer",
        "rekeyed",
        "timeout",
        "dpd_timeout",
        "authentication_failed",
        "no_proposal_chosen",
        "ts_unacceptable",
        "peer_error",
        "peer_misbehaved",
        "crypto",
        "unknown_child_config",
        "half_open_expired",
        "replaced",
    ];

    /// The position of this reason's kind in [`DownReason::NAMES`].
    pub fn as_index(&self) -> usize {
        match self {
            DownReason::Terminated => 0,
            DownReason::DeletedByPeer => 1,
            DownReason::Rekeyed => 2,
            DownReason::Timeout => 3,
            DownReason::DpdTimeout => 4,
            DownReason::AuthenticationFailed(_) => 5,
            DownReason::NoProposalChosen => 6,
            DownReason::TsUnacceptable => 7,
            DownReason::PeerError(_) => 8,
            DownReason::PeerMisbehaved(_) => 9,
            DownReason::Crypto(_) => 10,
            DownReason::UnknownChildConfig => 11,
            DownReason::HalfOpenExpired => 12,
            DownReason::Replaced { .. } => 13,
        }
    }

    /// The snake-case name of this reason's kind (see [`DownReason::NAMES`]).
    pub fn kind_name(&self) -> &'static str {
        Self::NAMES[self.as_index()]
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::Terminated => f.write_str("terminated locally"),
            DownReason::DeletedByPeer => f.write_str("deleted by peer"),
            DownReason::Rekeyed => f.write_str("rekeyed"),
            DownReason::Timeout => f.write_str("peer did not answer (retransmits exhausted)"),
            DownReason::DpdTimeout => f.write_str("dead peer detected"),
            DownReason::AuthenticationFailed(why) => write!(f, "authentication failed: {why}"),
            DownReason::NoProposalChosen => f.write_str("no proposal chosen"),
            DownReason::TsUnacceptable => f.write_str("traffic selectors unacceptable"),
            DownReason::PeerError(n) => write!(f, "peer sent error notify {n}"),
            DownReason::PeerMisbehaved(why) => write!(f, "protocol error: {why}"),
            DownReason::Crypto(e) => write!(f, "local crypto failure: {e}"),
            DownReason::UnknownChildConfig => f.write_str("child config no longer exists"),
            DownReason::HalfOpenExpired => f.write_str("half-open SA expired"),
            DownReason::Replaced {
                initial_contact: true,
            } => f.write_str("replaced: the peer sent INITIAL_CONTACT on a new IKE SA"),
            DownReason::Replaced {
                initial_contact: false,
            } => f.write_str("replaced by a newer IKE SA (unique policy)"),
        }
    }
}

/// A negotiated child SA, with everything the dataplane needs.
pub struct ChildSaInfo {
    /// Its IKE SA.
    pub ike: IkeSaId,
    /// Connection name.
    pub conn: String,
    /// Child name.
    pub child: String,
    /// SPI the peer puts on packets to us.
    pub spi_in: u32,
    /// SPI we put on packets to the peer.
    pub spi_out: u32,
    /// The negotiated ESP transforms.
    pub suite: EspSuite,
    /// KEYMAT for the inbound SA (for AES-GCM: key || 4-byte salt).
    pub key_in: zeroize::Zeroizing<Vec<u8>>,
    /// KEYMAT for the outbound SA.
    pub key_out: zeroize::Zeroizing<Vec<u8>>,
    /// Our side's selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side's selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Our IKE address (the ESP source).
    pub local: SocketAddr,
    /// The peer's address: with `encap`, the UDP destination of ESP.
    pub remote: SocketAddr,
    /// UDP-encapsulate ESP (RFC 3948): a NAT was detected or encapsulation forced.
    pub encap: bool,
    /// Inbound SPI of the child SA this one replaces, when it is a rekey.
    pub rekeys: Option<u32>,
    /// When it was negotiated.
    pub established: Instant,
}

impl fmt::Debug for ChildSaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSaInfo")
            .field("ike", &self.ike)
            .field("conn", &self.conn)
            .field("child", &self.child)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("suite", &self.suite)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("remote", &self.remote)
            .field("encap", &self.encap)
            .field("rekeys", &self.rekeys)
            .finish_non_exhaustive()
    }
}

/// A snapshot of an IKE SA for status output.
#[derive(Debug, Clone)]
pub struct IkeSaInfo {
    /// Handle.
    pub id: IkeSaId,
    /// Connection name (empty while a responder has not picked one yet).
    pub conn: String,
    /// State name: CONNECTING, ESTABLISHED, REKEYING, DELETING.
    pub state: &'static str,
    /// We initiated it.
    pub initiator: bool,
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI.
    pub spi_r: u64,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Our identity, displayed.
    pub local_id: String,
    /// The peer's identity, displayed.
    pub remote_id: String,
    /// Negotiated IKE transforms.
    pub suite: Option<IkeSuite>,
    /// When IKE_AUTH completed.
    pub established: Option<Instant>,
    /// When the next IKE rekey is due.
    pub rekey_at: Option<Instant>,
    /// What NAT detection found, and whether we fake a NAT.
    pub nat: crate::nat::NatState,
    /// A request of ours is outstanding or queued.
    pub busy: bool,
    /// A mediation SA: on a peer, the address the server saw us at (`Some(None)`
    /// before it told us or when we are not behind a NAT); `None` for other SAs.
    pub mediation: Option<Option<SocketAddr>>,
    /// Initiator: the virtual IPs the peer assigned us (RFC 7296 3.15).
    pub local_vips: Vec<IpAddr>,
    /// Responder: the virtual IPs leased to the peer.
    pub remote_vips: Vec<IpAddr>,
    /// Initiator: DNS servers the peer sent.
    pub dns: Vec<IpAddr>,
    /// Child SAs: (child name, inbound SPI, outbound SPI, suite, local_ts, remote_ts,
    /// established, rekey due).
    pub children: Vec<ChildStatus>,
}

/// A snapshot of a child SA for status output.
#[derive(Debug, Clone)]
pub struct ChildStatus {
    /// Child name.
    pub name: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// ESP transforms.
    pub suite: EspSuite,
    /// Our selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// When negotiated.
    pub established: Instant,
    /// When the next rekey is due.
    pub rekey_at: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::{notify, payload};

    #[test]
    fn reasons_print_registry_names() {
        // What the daemon's logs and `esprit status` show (both use Display).
        let peer = DownReason::PeerError(notify::TS_UNACCEPTABLE);
        assert_eq!(peer.to_string(), "peer sent error notify TS_UNACCEPTABLE");
        let missing = DownReason::PeerMisbehaved(PeerMisbehaved::MissingPayload(payload::NONCE));
        assert_eq!(
            missing.to_string(),
            "protocol error: response without NONCE payload"
        );
        let auth = DownReason::AuthenticationFailed(AuthFailure::MissingPayload(payload::IDI));
        assert_eq!(
            auth.to_string(),
            "authentication failed: IKE_AUTH without IDI payload"
        );
        assert_eq!(auth.kind_name(), "authentication_failed");
        assert_eq!(peer.kind_name(), "peer_error");
    }

    #[test]
    fn reason_names_are_distinct_label_values() {
        let mut names = DownReason::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DownReason::NAMES.len());
        for n in DownReason::NAMES {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
        }
        let r = DownReason::Replaced {
            initial_contact: true,
        };
        assert_eq!(r.kind_name(), "replaced");
        assert_eq!(DownReason::HalfOpenExpired.kind_name(), "half_open_expired");
    }
}
