//! The daemon's IKE mediation records (a leaf: `sas.rs` holds one, `mediation.rs`
//! works on it through `Sas`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use ike::endpoint::IkeSaId;

use super::relay::Relays;

/// The daemon's mediation bookkeeping.
#[derive(Default)]
pub(crate) struct MediationBook {
    /// Mediated children, as (connection, child), waiting for their mediation
    /// connection's IKE SA.
    pub(crate) waiting: Vec<(String, String)>,
    /// Mediated connections with an attempt in flight (ME_CONNECT, checks, IKE SA).
    pub(crate) attempts: HashSet<String>,
    /// The pair the checks chose for each mediated connection: (direct IKE SA, our
    /// address, the peer's, whether that is the mediation server's relay).
    pub(crate) paths: HashMap<String, (IkeSaId, SocketAddr, SocketAddr, bool)>,
    /// As a mediation server: the relays open.
    pub(crate) relays: Relays,
    /// When the relayed paths are checked again for a direct one.
    pub(crate) next_recheck: Option<Instant>,
}

impl MediationBook {
    /// An attempt for mediated connection `conn` is under way.
    pub(crate) fn attempting(&self, conn: &str) -> bool {
        self.attempts.contains(conn)
    }

    /// Notes an attempt for `conn`.
    pub(crate) fn attempt(&mut self, conn: &str) {
        self.attempts.insert(conn.to_string());
    }
}
