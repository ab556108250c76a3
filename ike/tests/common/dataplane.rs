//! What the engine would do with an endpoint's events, to check that a scenario loses no
//! packet: `engine/src/daemon/sas.rs` installs a child's inbound SA at `ChildUp`, keeps
//! sending on the old outbound SA of a rekeyed child until that old SA's `ChildDown` (the
//! new one waits as its route's successor), and keeps a deleted inbound SA for a grace
//! period; it stops sending on the redundant SA of a rekey collision at `ChildRedundant`.
//! [`DpModel`] replays those rules; [`check`] says, at one instant, whether each
//! side's outbound SAs are accepted by the other side.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ike::endpoint::Event;

/// How long the engine keeps a deleted inbound SA (`engine`'s linger time).
pub const INBOUND_GRACE: Duration = Duration::from_secs(2);

/// One route: a child's chain of SAs, the one sending first, then its successors from
/// the oldest to the newest.
#[derive(Debug, Clone, Default)]
struct Route {
    /// (spi_in, spi_out) of each SA of the chain: the sending one, then its successors.
    chain: Vec<(u32, u32)>,
    /// The route began with a new child SA, not a rekey: its first SA may be used before
    /// the peer has it (the peer's first packets can race its IKE_AUTH or
    /// CREATE_CHILD_SA response; no SA was replaced, so nothing is broken).
    fresh: bool,
}

/// The engine's SA tables of one side, driven by its events.
#[derive(Debug, Default)]
pub struct DpModel {
    /// How many of the node's events were applied.
    pub applied: usize,
    routes: Vec<Route>,
    /// Inbound SPIs installed.
    inbound: HashMap<u32, ()>,
    /// Inbound SPIs deleted, kept until the instant.
    lingering: HashMap<u32, Instant>,
    /// Every inbound SPI ever installed.
    ever: HashSet<u32>,
}

impl DpModel {
    /// Applies one event at `now`.
    pub fn apply(&mut self, now: Instant, ev: &Event) {
        self.applied += 1;
        match ev {
            Event::ChildUp(c) => {
                self.inbound.insert(c.spi_in, ());
                self.ever.insert(c.spi_in);
                self.lingering.remove(&c.spi_in);
                let old = c.rekeys.and_then(|o| {
                    self.routes
                        .iter_mut()
                        .find(|r| r.chain.iter().any(|&(i, _)| i == o))
                });
                match old {
                    Some(r) => r.chain.push((c.spi_in, c.spi_out)),
                    None => self.routes.push(Route {
                        chain: vec![(c.spi_in, c.spi_out)],
                        fresh: true,
                    }),
                }
            }
            Event::ChildRedundant { spi_in, .. } => {
                // The engine stops sending on the redundant SA of a collision at once
                // (its inbound SA stays until its ChildDown).
                for r in &mut self.routes {
                    if r.chain.len() > 1 {
                        r.chain.retain(|&(i, _)| i != *spi_in);
                    }
                }
            }
            Event::ChildDown { spi_in, .. } => {
                if self.inbound.remove(spi_in).is_some() {
                    self.lingering.insert(*spi_in, now + INBOUND_GRACE);
                }
                for r in &mut self.routes {
                    let before = r.chain.len();
                    if before > 1 && r.chain[0].0 == *spi_in {
                        // The newest successor takes over (`remove_sa` in
                        // engine/src/dataplane/outbound.rs), not the oldest.
                        let newest = r.chain.pop().unwrap_or_default();
                        r.chain[0] = newest;
                    }
                    r.chain.retain(|&(i, _)| i != *spi_in);
                    if r.chain.len() != before && before > 1 {
                        r.fresh = false;
                    }
                }
                self.routes.retain(|r| !r.chain.is_empty());
            }
            _ => {}
        }
    }

    /// The outbound SPIs this side sends on now: the first SA of each route, and
    /// whether it is the first SA of a new route.
    pub fn sending(&self) -> Vec<(u32, bool)> {
        self.routes
            .iter()
            .map(|r| (r.chain[0].1, r.fresh))
            .collect()
    }

    /// Whether this inbound SPI was ever installed.
    pub fn ever_had(&self, spi: u32) -> bool {
        self.ever.contains(&spi)
    }

    /// Whether an ESP packet with this SPI arriving at `now` is accepted.
    pub fn accepts(&self, spi: u32, now: Instant) -> bool {
        self.inbound.contains_key(&spi) || self.lingering.get(&spi).is_some_and(|&t| now <= t)
    }

    /// Number of routes (children as the engine sees them).
    pub fn routes(&self) -> usize {
        self.routes.len()
    }
}

/// Whether `from`'s outbound SAs all reach `to` at `now`; the SPIs that would be lost.
/// The first SA of a new route counts only once `to` has installed it.
pub fn check(from: &DpModel, to: &DpModel, now: Instant) -> Vec<u32> {
    from.sending()
        .into_iter()
        .filter(|&(spi, fresh)| !to.accepts(spi, now) && (!fresh || to.ever_had(spi)))
        .map(|(spi, _)| spi)
        .collect()
}
