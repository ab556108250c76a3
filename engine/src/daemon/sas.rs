//! The control task's bookkeeping: it turns ike's events into dataplane commands and
//! carries out `start_action`, `dpd_action`, trap acquires and retries.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ike::endpoint::{DownReason, Endpoint, Event, IkeSaId};
use ipnet::IpNet;

use super::devices::ConnDevices;
use super::mediation_book::MediationBook;
use super::pools::Vips;
use super::routes::OsRoutes;
use super::updown::{ChildEnv, Updown, Verb};
use crate::config::{CloseAction, ConnectionPlan, DpdAction, StartAction};
use crate::dataplane::{Dataplane, InCmd, OutCmd, OutSa, Policies, RouteId, TrapId, MAIN_DEV};
use crate::install;

/// First retry delay of a connection that should be up; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long a rekeyed child's inbound SA still accepts packets after its deletion, for
/// packets the peer sent just before it switched.
const INBOUND_GRACE: Duration = Duration::from_secs(2);

/// A removed connection as ike keeps it: ike refers to connections by position, so the
/// slot stays (a connection of that name loaded later takes it over), but it matches no
/// peer any more (no address equals the unspecified one), has no children, and never
/// rekeys or checks liveness while its last SAs are deleted.
fn retired(conn: &ike::config::Connection) -> ike::config::Connection {
    let mut c = conn.clone();
    c.remote_addrs = vec![IpAddr::from([0, 0, 0, 0])];
    c.children.clear();
    c.dpd_delay = None;
    c.rekey_time = Duration::ZERO;
    c
}

/// (connection, child) names.
pub(crate) type ChildKey = (String, String);

/// An installed child SA.
struct Child {
    key: ChildKey,
    ike: IkeSaId,
    spi_out: u32,
    route: RouteId,
    /// The inbound SPI of the child SA that rekeyed this one.
    successor: Option<u32>,
    nets: Vec<IpNet>,
    /// What its updown scripts are told, when the child has one.
    env: Option<ChildEnv>,
}

/// A retry (or first attempt) of a connection at a given time.
struct Retry {
    /// None once fired: the backoff is kept for the next failure.
    at: Option<Instant>,
    backoff: Duration,
}

/// State of the control task beside the ike endpoint.
pub(crate) struct Sas {
    pub(crate) ep: Endpoint,
    pub(crate) plans: Vec<ConnectionPlan>,
    pub(crate) dp: Dataplane,
    pub(crate) routes: OsRoutes,
    /// Route-based connections' own devices.
    pub(crate) devices: ConnDevices,
    children: HashMap<u32, Box<Child>>,
    /// How many installed child SAs each (connection, child) has: "is it up?" without a
    /// scan over every child SA (issue 22).
    installed: HashMap<ChildKey, usize>,
    /// Connection name -> index in `plans`.
    plan_index: HashMap<String, usize>,
    /// Dataplane route -> the child SAs on it (a child and its rekeyed successors), so a
    /// child going down finds its siblings without a scan over every child SA.
    by_route: HashMap<u64, Vec<u32>>,
    next_id: u64,
    traps: HashMap<ChildKey, TrapId>,
    trap_owner: HashMap<TrapId, (ChildKey, Vec<IpNet>)>,
    /// Children whose negotiation is under way.
    pending: HashSet<ChildKey>,
    /// Children to start once their connection's IKE SA is up.
    deferred: Vec<ChildKey>,
    retries: HashMap<String, Retry>,
    /// Inbound SAs to remove later (rekeyed ones).
    removals: Vec<(Instant, u32)>,
    /// Last failure per connection.
    pub(crate) failures: HashMap<String, String>,
    /// Connections the user terminated: no automatic restart until initiated again.
    stopped: HashSet<String>,
    /// Shutting down: no restarts.
    pub(crate) closing: bool,
    /// Connections replaced by a reload whose old IKE SAs are being deleted: started
    /// anew once the last one is gone.
    replaced: HashSet<String>,
    /// The TUN device's name (`PLUTO_INTERFACE`).
    pub(crate) tun_name: String,
    pub(crate) updown: Updown,
    /// IKE mediation: waiting children, attempts, chosen paths (`mediation.rs`).
    pub(crate) med: MediationBook,
    /// Virtual IPs the peers assigned us, on the TUN device.
    pub(crate) vips: Vips,
    /// The userspace stack in place of the TUN device, if configured.
    pub(crate) netstack: Option<crate::netstack::NetstackHandle>,
    /// `[daemon] shutdown_grace`.
    pub(crate) shutdown_grace: Duration,
}

/// What a reload did, by connection name.
#[derive(Debug, Default)]
pub(crate) struct ReloadSummary {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) replaced: Vec<String>,
    pub(crate) unchanged: Vec<String>,
}

impl Sas {
    pub(crate) fn new(
        ep: Endpoint,
        plans: Vec<ConnectionPlan>,
        dp: Dataplane,
        routes: OsRoutes,
        tun_name: String,
    ) -> Sas {
        let plan_index = index_plans(&plans);
        Sas {
            ep,
            plans,
            dp,
            routes,
            devices: ConnDevices::new(),
            children: HashMap::new(),
            installed: HashMap::new(),
            plan_index,
            by_route: HashMap::new(),
            next_id: 1,
            traps: HashMap::new(),
            trap_owner: HashMap::new(),
            pending: HashSet::new(),
            deferred: Vec::new(),
            retries: HashMap::new(),
            removals: Vec::new(),
            failures: HashMap::new(),
            stopped: HashSet::new(),
            closing: false,
            replaced: HashSet::new(),
            vips: Vips::new(&tun_name),
            tun_name,
            updown: Updown::start(),
            med: MediationBook::default(),
            netstack: None,
            shutdown_grace: Duration::from_secs(3),
        }
    }

    fn alloc(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn plan(&self, conn: &str) -> Option<&ConnectionPlan> {
        self.plan_index.get(conn).and_then(|i| self.plans.get(*i))
    }

    /// Whether a child SA of `key` is installed, O(1).
    fn is_installed(&self, key: &ChildKey) -> bool {
        self.installed.get(key).is_some_and(|n| *n > 0)
    }

    /// `start_action` at startup: traps installed, `start` connections initiated.
    pub(crate) fn start(&mut self, now: Instant) {
        let names: Vec<String> = self.plans.iter().map(|p| p.conn.name.clone()).collect();
        for name in names {
            self.start_conn(now, &name);
        }
    }

    /// `start_action` of one connection's children.
    fn start_conn(&mut self, now: Instant, conn: &str) {
        let mut starts = Vec::new();
        let mut traps = Vec::new();
        if let Some(p) = self.plan(conn) {
            for c in &p.children {
                let key = (p.conn.name.clone(), c.name.clone());
                match c.start_action {
                    StartAction::Start => starts.push(key),
                    StartAction::Trap => traps.push(key),
                    StartAction::None => {}
                }
            }
        }
        for key in traps {
            self.install_trap(&key);
        }
        // Only this connection: starting every mediation connection here made
        // starting n connections quadratic (issue 22: an initiator with 15,000
        // connections did not answer its control socket for 10 s).
        let peer_mediation = self.plan(conn).is_some_and(|p| {
            p.conn.mediation == ike::config::Mediation::Mediation && !p.conn.remote_addrs.is_empty()
        });
        if peer_mediation {
            if let Err(e) = self.start_mediation_conn(now, conn) {
                tracing::warn!("{conn}: cannot register at the mediation server: {e}");
            }
        }
        for (conn, child) in starts {
            if let Err(e) = self.initiate(now, &conn, Some(&child)) {
                tracing::warn!("{conn}.{child}: cannot initiate: {e}");
            }
        }
    }

    /// Starts negotiating children of `conn` (all of them when `child` is None) unless
    /// they are up or on their way.
    pub(crate) fn initiate(
        &mut self,
        now: Instant,
        conn: &str,
        child: Option<&str>,
    ) -> Result<(), String> {
        let plan = self
            .plan(conn)
            .ok_or_else(|| format!("no connection named {conn:?}"))?;
        if plan.conn.mediation == ike::config::Mediation::Mediation && child.is_none() {
            self.stopped.remove(conn);
            return self.start_mediation_conn(now, conn);
        }
        let names: Vec<String> = match child {
            Some(c) => {
                if !plan.children.iter().any(|p| p.name == c) {
                    return Err(format!("connection {conn:?} has no child {c:?}"));
                }
                vec![c.to_string()]
            }
            None => plan.children.iter().map(|c| c.name.clone()).collect(),
        };
        if names.is_empty() {
            return Err(format!("connection {conn:?} has no children"));
        }
        if self.devices.dev_of(plan).is_none() {
            return Err(format!(
                "connection {conn:?} has no route-based device (it could not be made)"
            ));
        }
        self.stopped.remove(conn);
        self.failures.remove(conn);
        // From ike's per-connection index: a full snapshot here made starting 5,000
        // connections quadratic (issue 22).
        let state = self.ep.connection_state(conn);
        let (mut connecting, up) = (
            state.connecting || self.med.attempting(conn),
            state.established,
        );
        for name in names {
            let key = (conn.to_string(), name);
            if self.pending.contains(&key) || self.is_installed(&key) {
                continue;
            }
            if connecting && !up {
                // IKE_AUTH carries one child; the others follow as CREATE_CHILD_SA.
                if !self.deferred.contains(&key) {
                    self.deferred.push(key);
                }
                continue;
            }
            match self.ep.initiate(now, conn, Some(&key.1)) {
                Ok(_) => {}
                Err(ike::endpoint::CommandError::MediationNotUp(by)) => {
                    self.wait_for_mediation(now, &by, key)?;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            }
            if !up
                && matches!(
                    self.mediation_of(conn),
                    ike::config::Mediation::MediatedBy { .. }
                )
            {
                self.med.attempt(conn);
            }
            self.pending.insert(key);
            connecting |= !up;
        }
        Ok(())
    }

    /// Deletes a connection at the peer; it stays down until initiated again.
    pub(crate) fn terminate(&mut self, now: Instant, conn: &str) -> Result<(), String> {
        self.stopped.insert(conn.to_string());
        self.retries.remove(conn);
        self.deferred.retain(|k| k.0 != conn);
        self.ep.terminate(now, conn).map_err(|e| e.to_string())
    }

    /// Applies a reloaded configuration: connections not in `plans` are unloaded and
    /// their SAs deleted at the peer; those named in `changed` are unloaded the same way
    /// and started anew from their new definition once their old IKE SAs are gone; new
    /// ones are added and started. The others keep their SAs untouched, and only get
    /// their credentials refreshed for future negotiations.
    pub(crate) fn reload(
        &mut self,
        now: Instant,
        plans: Vec<ConnectionPlan>,
        changed: &HashSet<String>,
    ) -> ReloadSummary {
        let mut sum = ReloadSummary::default();
        let old: Vec<String> = self.plans.iter().map(|p| p.conn.name.clone()).collect();
        for name in &old {
            if !plans.iter().any(|p| &p.conn.name == name) {
                self.unload(now, name);
                if let Some(conn) = self.ep.connections().iter().find(|c| &c.name == name) {
                    let retired = retired(conn);
                    self.ep.add_connection(retired);
                }
                tracing::info!("{name}: connection unloaded");
                sum.removed.push(name.clone());
            }
        }
        for plan in &plans {
            let name = plan.conn.name.clone();
            if !old.contains(&name) {
                sum.added.push(name);
            } else if changed.contains(&name) {
                let busy = self.ep.ike_sas().iter().any(|sa| sa.conn == name);
                self.unload(now, &name);
                if busy {
                    self.replaced.insert(name.clone());
                }
                tracing::info!("{name}: connection changed, replacing its SAs");
                sum.replaced.push(name);
            } else {
                sum.unchanged.push(name);
            }
        }
        // ike refers to connections by position: an unchanged one is updated in place,
        // so its SAs never notice.
        for plan in &plans {
            self.ep.add_connection(plan.conn.clone());
        }
        self.plan_index = index_plans(&plans);
        self.plans = plans;
        let starts: Vec<String> = sum
            .added
            .iter()
            .chain(sum.replaced.iter())
            .filter(|n| !self.replaced.contains(*n))
            .cloned()
            .collect();
        for name in starts {
            self.start_conn(now, &name);
        }
        sum
    }

    /// Forgets what the engine does for `conn` (traps, retries, deferred children) and
    /// deletes its IKE SAs at the peer.
    fn unload(&mut self, now: Instant, conn: &str) {
        self.retries.remove(conn);
        self.failures.remove(conn);
        self.stopped.remove(conn);
        self.replaced.remove(conn);
        self.deferred.retain(|k| k.0 != conn);
        self.pending.retain(|k| k.0 != conn);
        let traps: Vec<(ChildKey, TrapId)> = self
            .traps
            .iter()
            .filter(|(k, _)| k.0 == conn)
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        for (key, trap) in traps {
            self.traps.remove(&key);
            if let Some((_, nets)) = self.trap_owner.remove(&trap) {
                self.routes.release(&nets);
            }
            self.dp.out.send(OutCmd::RemoveTrap { trap });
        }
        if let Err(e) = self.ep.terminate(now, conn) {
            tracing::debug!("{conn}: {e}");
        }
    }

    /// Rekeys, make-before-break, the installed child SAs of `conn` (those of `child`
    /// only, when given), or with `ike` its established IKE SAs (RFC 7296 2.8, 2.18).
    /// Returns what was started.
    pub(crate) fn rekey(
        &mut self,
        now: Instant,
        conn: &str,
        child: Option<&str>,
        ike: bool,
    ) -> Result<String, String> {
        let plan = self
            .plan(conn)
            .ok_or_else(|| format!("no connection named {conn:?}"))?;
        if let Some(c) = child {
            if !plan.children.iter().any(|p| p.name == c) {
                return Err(format!("connection {conn:?} has no child {c:?}"));
            }
        }
        if ike {
            let ids: Vec<IkeSaId> = self
                .ep
                .ike_sas()
                .into_iter()
                .filter(|sa| sa.conn == conn && sa.state == "ESTABLISHED")
                .map(|sa| sa.id)
                .collect();
            if ids.is_empty() {
                return Err(format!("{conn}: no established IKE SA to rekey"));
            }
            for id in &ids {
                self.ep.rekey_ike(now, *id).map_err(|e| e.to_string())?;
            }
            let list: Vec<String> = ids.iter().map(|id| format!("#{}", id.0)).collect();
            return Ok(format!("{conn}: rekeying IKE SA {}", list.join(" ")));
        }
        // A child already replaced by a rekey is on its way out; its successor counts.
        let mut spis: Vec<(u32, String)> = self
            .children
            .iter()
            .filter(|(_, c)| c.key.0 == conn && c.successor.is_none())
            .filter(|(_, c)| child.is_none_or(|n| c.key.1 == n))
            .map(|(spi, c)| (*spi, c.key.1.clone()))
            .collect();
        if spis.is_empty() {
            let what = child.map_or(String::new(), |c| format!(".{c}"));
            return Err(format!("{conn}{what}: no installed child SA to rekey"));
        }
        spis.sort();
        for (spi, _) in &spis {
            self.ep.rekey_child(now, *spi).map_err(|e| e.to_string())?;
        }
        let list: Vec<String> = spis
            .iter()
            .map(|(spi, name)| format!("{name} {spi:08x}_i"))
            .collect();
        Ok(format!("{conn}: rekeying child SA {}", list.join(", ")))
    }

    fn install_trap(&mut self, key: &ChildKey) {
        if self.traps.contains_key(key) {
            return;
        }
        let Some(plan) = self.plan(&key.0) else {
            return;
        };
        let Some(child) = plan.conn.children.iter().find(|c| c.name == key.1) else {
            return;
        };
        let Some(dev) = self.devices.dev_of(plan) else {
            tracing::warn!("{}.{}: no trap: no route-based device", key.0, key.1);
            return;
        };
        let mut policies: Policies = Vec::new();
        for l in &child.local_ts {
            for r in &child.remote_ts {
                if let (Ok(l), Ok(r)) = (install::convert(l), install::convert(r)) {
                    policies.push((l, r));
                }
            }
        }
        let peer = plan
            .conn
            .remote_addrs
            .first()
            .copied()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        // Route-based: the routing daemon routes into the connection's device.
        let nets = if dev == MAIN_DEV {
            OsRoutes::nets_for(&child.remote_ts, peer)
        } else {
            Vec::new()
        };
        let local_ts = child.local_ts.clone();
        self.routes.acquire(&nets, &local_ts);
        let id = self.alloc();
        self.traps.insert(key.clone(), id);
        self.trap_owner.insert(id, (key.clone(), nets));
        self.dp.out.send(OutCmd::AddTrap {
            dev,
            trap: id,
            policies,
        });
        tracing::info!(
            event = "trap",
            conn = %key.0,
            child = %key.1,
            "{}.{}: trap policy installed",
            key.0,
            key.1
        );
    }

    /// A packet hit a trap: negotiate its child.
    pub(crate) fn on_acquire(&mut self, now: Instant, trap: TrapId) {
        let Some((key, _)) = self.trap_owner.get(&trap) else {
            return;
        };
        let key = key.clone();
        if self.pending.contains(&key) || self.is_installed(&key) {
            return;
        }
        tracing::info!("{}.{}: traffic hit the trap, initiating", key.0, key.1);
        if let Err(e) = self.initiate(now, &key.0, Some(&key.1)) {
            tracing::warn!("{}.{}: cannot initiate: {e}", key.0, key.1);
        }
    }

    /// esp reports a soft lifetime: rekey that child.
    pub(crate) fn on_soft_expired(&mut self, now: Instant, spi: u32, inbound: bool) {
        let spi_in = if inbound {
            Some(spi)
        } else {
            self.children
                .iter()
                .find(|(_, c)| c.spi_out == spi)
                .map(|(s, _)| *s)
        };
        if let Some(spi_in) = spi_in {
            if self
                .children
                .get(&spi_in)
                .is_some_and(|c| c.successor.is_none())
            {
                let _ = self.ep.rekey_child(now, spi_in);
            }
        }
    }

    /// Handles everything the endpoint has to say.
    pub(crate) fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            self.on_event(now, ev);
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::IkeUp(info) => {
                tracing::info!(
                    event = "ike_up",
                    conn = %info.conn,
                    ike = info.id.0,
                    "{}: IKE SA #{} established with {} ({}), {}",
                    info.conn,
                    info.id.0,
                    info.remote,
                    info.remote_id,
                    info.suite.map(|s| s.to_string()).unwrap_or_default()
                );
                self.vips.up(&info);
                self.retries.remove(&info.conn);
                self.failures.remove(&info.conn);
                self.mediation_ike_up(now, &info);
                let deferred: Vec<ChildKey> = self
                    .deferred
                    .iter()
                    .filter(|k| k.0 == info.conn)
                    .cloned()
                    .collect();
                self.deferred.retain(|k| k.0 != info.conn);
                for k in deferred {
                    if !self.pending.contains(&k) && !self.is_installed(&k) {
                        self.pending.insert(k.clone());
                        let _ = self.ep.initiate(now, &k.0, Some(&k.1));
                    }
                }
            }
            Event::IkeRekeyed { old, new } => {
                tracing::info!(
                    event = "ike_rekeyed",
                    ike = new.0,
                    ike_old = old.0,
                    "IKE SA #{} rekeyed as #{}",
                    old.0,
                    new.0
                );
                self.vips.rekeyed(old, new);
                for c in self.children.values_mut().filter(|c| c.ike == old) {
                    c.ike = new;
                    if let Some(env) = c.env.as_mut() {
                        env.unique_id = new.0;
                    }
                }
            }
            Event::IkeRekeyCollision {
                old,
                kept,
                redundant,
            } => {
                tracing::info!(
                    event = "ike_rekey_collision",
                    ike = kept.0,
                    ike_old = old.0,
                    "IKE SA rekey collision: #{} rekeyed by both peers; #{} stays, #{} goes",
                    old.0,
                    kept.0,
                    redundant.0
                );
            }
            Event::ChildUp(info) => self.child_up(now, &info),
            Event::ChildRedundant {
                spi_in, spi_out, ..
            } => {
                // Scenario (tests/interop_rekey_collisions.rs): esprit lost a child
                // rekey collision with charon. The peer's DELETE of the old SA arrives
                // a round trip before the answer to our DELETE of the redundant SA, and
                // the route used to move to its newest successor, the redundant SA, for
                // that round trip: traffic on an SA the peer is deleting. The route now
                // never takes it; its inbound SA stays until its ChildDown.
                tracing::debug!(
                    "child SA {spi_in:08x} redundant: no more traffic out on {spi_out:08x}"
                );
                self.dp.out.post(OutCmd::RemoveSa { spi: spi_out });
            }
            Event::ChildDown {
                spi_in,
                spi_out,
                reason,
                ..
            } => self.child_down(now, spi_in, spi_out, &reason),
            Event::ChildFailed {
                conn,
                child,
                reason,
                ..
            } => {
                tracing::warn!(
                    event = "child_failed",
                    conn = %conn,
                    child = %child,
                    "{conn}.{child}: child SA failed: {reason}"
                );
                self.failures.insert(conn.clone(), reason.to_string());
                let key = (conn, child);
                self.pending.remove(&key);
                if let Some(t) = self.traps.get(&key) {
                    self.dp.out.send(OutCmd::TrapFailed { trap: *t });
                }
            }
            Event::IkeDown { id, conn, reason } => {
                self.mediation_ike_down(now, id, &conn, &reason);
                self.vips.down(id);
                self.ike_down(now, id, &conn, &reason)
            }
            Event::NoVirtualIp {
                ike,
                conn,
                remote_id,
                requested,
                pools,
            } => {
                let asked: Vec<String> = requested.iter().map(|a| a.to_string()).collect();
                tracing::warn!(
                    event = "vip_failed",
                    conn = %conn,
                    ike = ike.0,
                    "{conn}: no virtual IP for '{remote_id}' (requested {}) in pools {}: \
                     exhausted or of the other family; sent INTERNAL_ADDRESS_FAILURE",
                    asked.join(" "),
                    pools.join(" ")
                );
            }
            Event::PeerAddressChanged { ike, remote } => {
                tracing::info!(
                    event = "peer_moved",
                    ike = ike.0,
                    "IKE SA #{}: peer moved to {remote}",
                    ike.0
                );
                self.dp.out.post(OutCmd::PeerMoved { ike, dst: remote });
                self.mediated_peer_moved(ike, remote);
            }
            ev @ (Event::MediatedPath { .. }
            | Event::MediationFailed { .. }
            | Event::RelayWanted { .. }) => self.mediation_event(now, ev),
            _ => {}
        }
    }

    fn child_up(&mut self, now: Instant, info: &ike::endpoint::ChildSaInfo) {
        let key = (info.conn.clone(), info.child.clone());
        self.pending.remove(&key);
        let Some(dev) = self.plan(&key.0).and_then(|p| self.devices.dev_of(p)) else {
            tracing::error!(
                "{}.{}: child SA refused: its route-based device could not be made",
                key.0,
                key.1
            );
            let _ = self.ep.delete_child(now, info.spi_in);
            return;
        };
        let inst = match install::child_sas(info) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("{}.{}: cannot install child SA: {e}", key.0, key.1);
                let _ = self.ep.delete_child(now, info.spi_in);
                return;
            }
        };
        // Posted, not woken for: the inbound thread applies it before it processes
        // the next datagram it reads, and the peer can only use the SA after the IKE
        // message queued after this.
        self.dp.inb.post(InCmd::AddSa {
            sa: Box::new(inst.inbound),
            dev,
        });
        let src = Some(info.local.ip()).filter(|ip| !ip.is_unspecified());
        let out = Box::new(OutSa {
            sa: inst.outbound,
            dst: info.remote,
            src,
            ike: info.ike,
        });
        let old = info
            .rekeys
            .and_then(|o| self.children.get_mut(&o).map(|c| (o, c)));
        let (route, nets, how) = match old {
            Some((old_spi, old)) => {
                if let Some(first) = old.successor {
                    // RFC 7296 2.8.1: both peers rekeyed the same SA at once; ike deletes
                    // the redundant one of the two (the lowest nonce's) right away.
                    tracing::info!(
                        event = "child_rekey_collision",
                        conn = %key.0,
                        child = %key.1,
                        "{}.{}: child SA rekey collision: {old_spi:08x} rekeyed by both \
                         peers, as {first:08x} and {:08x}",
                        key.0,
                        key.1,
                        info.spi_in
                    );
                }
                old.successor = Some(info.spi_in);
                let route = old.route;
                self.dp.out.post(OutCmd::AddSuccessor { route, sa: out });
                (route, old.nets.clone(), "rekeyed")
            }
            None => {
                let route = self.alloc();
                let cmd = OutCmd::AddRoute {
                    dev,
                    route,
                    sa: out,
                    policies: inst.policies,
                };
                // The outbound thread applies it before the next packet it reads; only
                // packets a trap holds need it woken now, to release them.
                if self.traps.is_empty() {
                    self.dp.out.post(cmd);
                } else {
                    self.dp.out.send(cmd);
                }
                let nets = if dev == MAIN_DEV {
                    OsRoutes::nets_for(&info.remote_ts, info.remote.ip())
                } else {
                    Vec::new()
                };
                self.routes.acquire(&nets, &info.local_ts);
                (route, nets, "established")
            }
        };
        let show = |ts: &[ike::wire::TrafficSelector]| {
            ts.iter()
                .map(ike::ts::display)
                .collect::<Vec<_>>()
                .join(" ")
        };
        tracing::info!(
            event = if how == "rekeyed" { "child_rekeyed" } else { "child_up" },
            conn = %key.0,
            child = %key.1,
            ike = info.ike.0,
            spi_in = %format_args!("{:08x}", info.spi_in),
            spi_out = %format_args!("{:08x}", info.spi_out),
            "{}.{}: child SA {how}, SPIs {:08x}_i {:08x}_o, {}, {} === {}",
            key.0,
            key.1,
            info.spi_in,
            info.spi_out,
            info.suite,
            show(&info.local_ts),
            show(&info.remote_ts)
        );
        self.failures.remove(&key.0);
        let env = self.child_env(info, route);
        if let Some(env) = &env {
            let verb = if how == "rekeyed" {
                Verb::Rekey
            } else {
                Verb::Up
            };
            self.updown.call(env, verb);
        }
        *self.installed.entry(key.clone()).or_default() += 1;
        self.by_route.entry(route).or_default().push(info.spi_in);
        self.children.insert(
            info.spi_in,
            Box::new(Child {
                key,
                ike: info.ike,
                spi_out: info.spi_out,
                route,
                successor: None,
                nets,
                env,
            }),
        );
    }

    /// The updown environment of a child SA just negotiated, if its child has a script.
    fn child_env(&self, info: &ike::endpoint::ChildSaInfo, route: RouteId) -> Option<ChildEnv> {
        let command = self
            .plan(&info.conn)?
            .children
            .iter()
            .find(|c| c.name == info.child)?
            .updown
            .clone()?;
        let ike = self.ep.ike_sas().into_iter().find(|sa| sa.id == info.ike);
        let (my_id, peer_id) = ike
            .map(|sa| (sa.local_id, sa.remote_id))
            .unwrap_or_default();
        Some(ChildEnv {
            command,
            conn: info.conn.clone(),
            child: info.child.clone(),
            interface: self.tun_name.clone(),
            unique_id: info.ike.0,
            reqid: route,
            me: info.local,
            peer: info.remote,
            my_id,
            peer_id,
            local_ts: info.local_ts.clone(),
            remote_ts: info.remote_ts.clone(),
            sources: {
                // Our virtual IPs when they could not go on the device (no
                // CAP_NET_ADMIN): the hook may configure them.
                let found = OsRoutes::source_for(&info.local_ts);
                if found.is_empty() {
                    self.vips.of(info.ike).to_vec()
                } else {
                    found
                }
            },
            spi_in: info.spi_in,
            spi_out: info.spi_out,
        })
    }

    fn child_down(&mut self, now: Instant, spi_in: u32, spi_out: u32, reason: &DownReason) {
        self.dp.out.post(OutCmd::RemoveSa { spi: spi_out });
        let Some(c) = self.children.remove(&spi_in) else {
            self.dp.inb.post(InCmd::RemoveSa { spi: spi_in });
            return;
        };
        if let Some(n) = self.installed.get_mut(&c.key) {
            *n -= 1;
            if *n == 0 {
                self.installed.remove(&c.key);
            }
        }
        if let Some(spis) = self.by_route.get_mut(&c.route) {
            spis.retain(|s| *s != spi_in);
            if spis.is_empty() {
                self.by_route.remove(&c.route);
            }
        }
        if c.successor.is_some() {
            // Replaced: its inbound SA lingers for packets already on their way.
            self.removals.push((now + INBOUND_GRACE, spi_in));
            tracing::debug!("{}.{}: old child SA {spi_in:08x} retired", c.key.0, c.key.1);
            return;
        }
        tracing::info!(
            event = "child_down",
            conn = %c.key.0,
            child = %c.key.1,
            spi_in = %format_args!("{spi_in:08x}"),
            spi_out = %format_args!("{spi_out:08x}"),
            "{}.{}: child SA {spi_in:08x}_i {spi_out:08x}_o down: {reason}",
            c.key.0,
            c.key.1
        );
        let siblings: Vec<u32> = self.by_route.get(&c.route).cloned().unwrap_or_default();
        // A predecessor whose successor this was keeps the route, handed on to the
        // other new SA of a rekey collision if there is one.
        for spi in &siblings {
            if let Some(other) = self.children.get_mut(spi) {
                if other.successor == Some(spi_in) {
                    other.successor = siblings.iter().copied().find(|s| s != spi);
                }
            }
        }
        if siblings.is_empty() {
            self.dp.inb.post(InCmd::RemoveSa { spi: spi_in });
            self.routes.release(&c.nets);
            // The child is down for good (a collision's redundant SA is not).
            if let Some(env) = &c.env {
                self.updown.call(env, Verb::Down);
            }
        } else {
            // RFC 7296 2.8.1: the redundant SA of a rekey collision is deleted as soon as
            // both are up, and the peer's outbound route may have moved onto it already:
            // its inbound SA lingers like a retired one.
            self.removals.push((now + INBOUND_GRACE, spi_in));
        }
    }

    fn ike_down(&mut self, now: Instant, id: IkeSaId, conn: &str, reason: &DownReason) {
        match reason {
            DownReason::AuthenticationFailed(why) => {
                tracing::error!(
                    event = "ike_down",
                    conn = %conn,
                    ike = id.0,
                    "{conn}: IKE SA #{} failed: authentication failed: {why}",
                    id.0
                )
            }
            // The rekey was logged as one event ("rekeyed as #N") already.
            DownReason::Rekeyed => {
                tracing::debug!("{conn}: IKE SA #{} closed ({reason})", id.0)
            }
            DownReason::Terminated | DownReason::DeletedByPeer => {
                tracing::info!(
                    event = "ike_down",
                    conn = %conn,
                    ike = id.0,
                    "{conn}: IKE SA #{} closed ({reason})",
                    id.0
                )
            }
            _ => tracing::warn!(
                event = "ike_down",
                conn = %conn,
                ike = id.0,
                "{conn}: IKE SA #{} down: {reason}",
                id.0
            ),
        }
        if !matches!(
            reason,
            DownReason::Terminated | DownReason::Rekeyed | DownReason::DeletedByPeer
        ) {
            self.failures.insert(conn.to_string(), reason.to_string());
        }
        if matches!(reason, DownReason::Rekeyed) {
            return;
        }
        if self.replaced.contains(conn) {
            if !self.ep.ike_sas().iter().any(|sa| sa.conn == conn) {
                self.replaced.remove(conn);
                self.start_conn(now, conn);
            }
            return;
        }
        let Some(plan) = self.plan(conn) else {
            // A responder SA that never matched a connection.
            return;
        };
        let children: Vec<(String, StartAction, DpdAction, CloseAction)> = plan
            .children
            .iter()
            .map(|c| (c.name.clone(), c.start_action, c.dpd_action, c.close_action))
            .collect();
        let mut restart = false;
        for (name, start, dpd, close) in children {
            let key = (conn.to_string(), name);
            let was_pending = self.pending.remove(&key);
            if let Some(t) = self.traps.get(&key) {
                self.dp.out.send(OutCmd::TrapFailed { trap: *t });
            }
            if self.closing || self.stopped.contains(conn) {
                continue;
            }
            match reason {
                DownReason::DpdTimeout => match dpd {
                    DpdAction::Restart => restart = true,
                    DpdAction::Trap => self.install_trap(&key),
                    DpdAction::Clear => {}
                },
                // A peer that deleted the IKE SA is restarting or going away for a
                // while: close_action "start" asks for it again after the backoff (a
                // route-based tunnel must come back without anyone initiating by hand).
                DownReason::DeletedByPeer => match close {
                    CloseAction::Start => restart = true,
                    CloseAction::Trap => self.install_trap(&key),
                    CloseAction::None => {}
                },
                // "start" keeps trying until the peer answers; so does a restart after
                // DPD or the peer's delete that has not reached the peer yet.
                DownReason::Timeout | DownReason::HalfOpenExpired
                    if start == StartAction::Start
                        || (was_pending
                            && (dpd == DpdAction::Restart || close == CloseAction::Start)) =>
                {
                    restart = true;
                }
                // One failed exchange (a peer mid-restart, a lost or crossed message)
                // must not leave a "start" connection down for good: retry with the
                // same backoff, as charon's keyingtries do.
                DownReason::AuthenticationFailed(_) if start == StartAction::Start => {
                    restart = true;
                }
                _ => {}
            }
        }
        if restart {
            let backoff = self
                .retries
                .get(conn)
                .map_or(FIRST_BACKOFF, |r| (r.backoff * 2).min(MAX_BACKOFF));
            let delay = if matches!(reason, DownReason::DpdTimeout) {
                Duration::ZERO
            } else {
                backoff
            };
            tracing::info!("{conn}: retrying in {}s", delay.as_secs());
            self.retries.insert(
                conn.to_string(),
                Retry {
                    at: Some(now + delay),
                    backoff,
                },
            );
        }
    }

    /// Tries `conn` again after its backoff (doubling up to [`MAX_BACKOFF`]).
    pub(crate) fn retry_later(&mut self, now: Instant, conn: &str) {
        if self.stopped.contains(conn) {
            return;
        }
        let backoff = self
            .retries
            .get(conn)
            .map_or(FIRST_BACKOFF, |r| (r.backoff * 2).min(MAX_BACKOFF));
        tracing::info!("{conn}: retrying in {}s", backoff.as_secs());
        self.retries.insert(
            conn.to_string(),
            Retry {
                at: Some(now + backoff),
                backoff,
            },
        );
    }

    /// Forgets the negotiations under way for `conn`'s children.
    pub(crate) fn forget_pending(&mut self, conn: &str) {
        self.pending.retain(|k| k.0 != conn);
        self.deferred.retain(|k| k.0 != conn);
    }

    /// The earliest timer of ours (retries, delayed removals).
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let r = self.retries.values().filter_map(|r| r.at).min();
        let d = self.removals.iter().map(|(t, _)| *t).min();
        [r, d, self.med.next_recheck].into_iter().flatten().min()
    }

    /// Runs due retries, removals and re-checks of relayed paths.
    pub(crate) fn run_timers(&mut self, now: Instant) {
        self.recheck_relayed(now);
        let due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, r)| r.at.is_some_and(|at| at <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for conn in due {
            if let Some(r) = self.retries.get_mut(&conn) {
                r.at = None;
            }
            let children: Vec<String> = self
                .plan(&conn)
                .map(|p| {
                    p.children
                        .iter()
                        .filter(|c| {
                            c.start_action == StartAction::Start
                                || c.dpd_action == DpdAction::Restart
                                || c.close_action == CloseAction::Start
                        })
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            // An automatic retry keeps the last error on show until something succeeds.
            let last_error = self.failures.get(&conn).cloned();
            for child in children {
                if let Err(e) = self.initiate(now, &conn, Some(&child)) {
                    tracing::warn!("{conn}.{child}: retry failed: {e}");
                }
            }
            if self.mediation_of(&conn) == ike::config::Mediation::Mediation {
                if let Err(e) = self.start_mediation_conn(now, &conn) {
                    tracing::warn!("{conn}: registering again failed: {e}");
                }
            }
            if let Some(e) = last_error {
                self.failures.entry(conn).or_insert(e);
            }
        }
        let (due, keep): (Vec<_>, Vec<_>) = self.removals.drain(..).partition(|(t, _)| *t <= now);
        self.removals = keep;
        for (_, spi) in due {
            self.dp.inb.post(InCmd::RemoveSa { spi });
        }
    }

    /// Child SA handles by inbound SPI for status: (key, state).
    pub(crate) fn child_state(&self, spi_in: u32) -> &'static str {
        match self.children.get(&spi_in) {
            Some(c) if c.successor.is_some() => "REKEYED",
            _ => "INSTALLED",
        }
    }

    /// Installed child SAs (rekeyed ones still draining included) as (connection,
    /// child), inbound SPI, outbound SPI; for metrics.
    pub(crate) fn installed_children(&self) -> impl Iterator<Item = (&ChildKey, u32, u32)> {
        self.children
            .iter()
            .map(|(spi_in, c)| (&c.key, *spi_in, c.spi_out))
    }

    /// Number of IKE SAs left (for shutdown).
    pub(crate) fn ike_count(&self) -> usize {
        self.ep.ike_sa_count()
    }

    /// The peers to send a NAT-T keepalive to: those of SAs with a real NAT in front of
    /// us (RFC 3948 4), as charon: the NAT we fake to force encapsulation has no
    /// mapping to keep.
    pub(crate) fn keepalive_targets(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.ep
            .ike_sas()
            .into_iter()
            .filter(|sa| sa.nat.local_behind && sa.state != "CONNECTING")
            .map(|sa| (sa.local, sa.remote))
            .collect()
    }
}

/// Connection name -> position in `plans`.
fn index_plans(plans: &[ConnectionPlan]) -> HashMap<String, usize> {
    plans
        .iter()
        .enumerate()
        .map(|(i, p)| (p.conn.name.clone(), i))
        .collect()
}
