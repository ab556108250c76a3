//! Why an SA failed, as data (in the manner of rustls' `error/mod.rs`): what the peer
//! did wrong, and why authentication failed. A leaf.

use crate::auth::{self, Identity};
use crate::iana::PayloadType;

/// A protocol violation by the peer: its message was well-formed but not an acceptable
/// answer to ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A payload the exchange requires is missing (RFC 7296 1.2, 1.3).
    #[error("response without {0} payload")]
    MissingPayload(PayloadType),
    /// The responder chose a proposal or transform we did not offer (RFC 7296 2.7).
    #[error("responder chose a proposal we did not offer")]
    UnofferedProposal,
    /// The KE payload's group is not the chosen one, or a KE came where none was
    /// offered (RFC 7296 1.3, 3.4).
    #[error("KE group differs from the chosen one")]
    KeGroupMismatch,
    /// The KE payload's public value is unusable (RFC 7296 3.4).
    #[error("bad KE payload: {0}")]
    BadKe(crate::crypto::CryptoError),
    /// A mediation connection's IKE_SA_INIT response lacks ME_MEDIATION: the peer is
    /// no mediation server (draft-brunner-ikev2-mediation 4.1).
    #[error("peer is no mediation server (no ME_MEDIATION in IKE_SA_INIT)")]
    NoMediation,
}

/// Why authentication failed, ours or the peer's (RFC 7296 2.15).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The peer answered AUTHENTICATION_FAILED (RFC 7296 2.21.2).
    #[error("the peer rejected our authentication")]
    RejectedByPeer,
    /// The IKE_AUTH message lacks an ID or AUTH payload.
    #[error("IKE_AUTH without {0} payload")]
    MissingPayload(PayloadType),
    /// The peer's ID payload does not parse.
    #[error("bad identity payload: {0}")]
    BadIdentity(auth::Error),
    /// No connection accepts the peer's identity with its addresses and method.
    #[error("no connection accepts peer identity '{0}'")]
    NoConnection(Identity),
    /// The peer's identity is not the one the connection wants.
    #[error("peer identity '{peer}' is not the configured '{configured}'")]
    IdentityMismatch {
        /// What the peer presented.
        peer: Identity,
        /// What the connection wants.
        configured: Identity,
    },
    /// The peer used a signature where a PSK is configured (auth method number).
    #[error("peer used auth method {0} where a PSK is configured")]
    MethodMismatch(u8),
    /// The PSK AUTH value is wrong.
    #[error("pre-shared key mismatch")]
    PskMismatch,
    /// Certificate authentication without a CERT payload.
    #[error("peer sent no certificate")]
    NoCertificate,
    /// The peer's certificate chain did not verify.
    #[error("certificate not trusted: {0}")]
    Untrusted(auth::Error),
    /// The identity is not among the certificate's subject and alternative names.
    #[error("identity '{0}' is not in the peer's certificate")]
    IdentityNotInCertificate(Identity),
    /// The AUTH signature did not verify.
    #[error("signature check failed: {0}")]
    BadSignature(auth::Error),
    /// We could not sign our own AUTH.
    #[error("cannot build our AUTH: {0}")]
    OwnAuth(auth::Error),
}
