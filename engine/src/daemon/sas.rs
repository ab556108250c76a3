//! The control task's bookkeeping: it turns ike's events into dataplane commands and
//! carries out `start_action`, `dpd_action`, trap acquires and retries.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ike::endpoint::{DownReason, Endpoint, Event, IkeSaId};
use ipnet::IpNet;

use super::mediation_book::MediationBook;
use super::routes::OsRoutes;
use crate::config::{ConnectionPlan, DpdAction, StartAction};
use crate::dataplane::{Dataplane, InCmd, OutCmd, OutSa, Policies, RouteId, TrapId};
use crate::install;

/// First retry delay of a connection that should be up; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long a rekeyed child's inbound SA still accepts packets after its deletion, for
/// packets the peer sent just before it switched.
const INBOUND_GRACE: Duration = Duration::from_secs(2);

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
    children: HashMap<u32, Child>,
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
    /// IKE mediation: waiting children, attempts, chosen paths (`mediation.rs`).
    pub(crate) med: MediationBook,
}

impl Sas {
    pub(crate) fn new(
        ep: Endpoint,
        plans: Vec<ConnectionPlan>,
        dp: Dataplane,
        routes: OsRoutes,
    ) -> Sas {
        Sas {
            ep,
            plans,
            dp,
            routes,
            children: HashMap::new(),
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
            med: MediationBook::default(),
        }
    }

    fn alloc(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn plan(&self, conn: &str) -> Option<&ConnectionPlan> {
        self.plans.iter().find(|p| p.conn.name == conn)
    }

    /// `start_action` at startup: traps installed, `start` connections initiated.
    pub(crate) fn start(&mut self, now: Instant) {
        let mut starts = Vec::new();
        let mut traps = Vec::new();
        for p in &self.plans {
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
        self.start_mediation(now);
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
        self.stopped.remove(conn);
        self.failures.remove(conn);
        let sas = self.ep.ike_sas();
        let mut connecting = sas
            .iter()
            .any(|sa| sa.conn == conn && sa.state == "CONNECTING")
            || self.med.attempting(conn);
        let up = sas
            .iter()
            .any(|sa| sa.conn == conn && sa.state == "ESTABLISHED");
        for name in names {
            let key = (conn.to_string(), name);
            if self.pending.contains(&key) || self.children.values().any(|c| c.key == key) {
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
        let nets = OsRoutes::nets_for(&child.remote_ts, peer);
        let sources = OsRoutes::source_for(&child.local_ts);
        self.routes.acquire(&nets, &sources);
        let id = self.alloc();
        self.traps.insert(key.clone(), id);
        self.trap_owner.insert(id, (key.clone(), nets));
        self.dp.out.send(OutCmd::AddTrap { trap: id, policies });
        tracing::info!("{}.{}: trap policy installed", key.0, key.1);
    }

    /// A packet hit a trap: negotiate its child.
    pub(crate) fn on_acquire(&mut self, now: Instant, trap: TrapId) {
        let Some((key, _)) = self.trap_owner.get(&trap) else {
            return;
        };
        let key = key.clone();
        if self.pending.contains(&key) || self.children.values().any(|c| c.key == key) {
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
                    "{}: IKE SA #{} established with {} ({}), {}",
                    info.conn,
                    info.id.0,
                    info.remote,
                    info.remote_id,
                    info.suite.map(|s| s.to_string()).unwrap_or_default()
                );
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
                    if !self.pending.contains(&k) && !self.children.values().any(|c| c.key == k) {
                        self.pending.insert(k.clone());
                        let _ = self.ep.initiate(now, &k.0, Some(&k.1));
                    }
                }
            }
            Event::IkeRekeyed { old, new } => {
                tracing::info!("IKE SA #{} rekeyed as #{}", old.0, new.0);
                for c in self.children.values_mut().filter(|c| c.ike == old) {
                    c.ike = new;
                }
            }
            Event::ChildUp(info) => self.child_up(now, &info),
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
                tracing::warn!("{conn}.{child}: child SA failed: {reason}");
                self.failures.insert(conn.clone(), reason.to_string());
                let key = (conn, child);
                self.pending.remove(&key);
                if let Some(t) = self.traps.get(&key) {
                    self.dp.out.send(OutCmd::TrapFailed { trap: *t });
                }
            }
            Event::IkeDown { id, conn, reason } => {
                self.mediation_ike_down(now, id, &conn, &reason);
                self.ike_down(now, id, &conn, &reason)
            }
            Event::PeerAddressChanged { ike, remote } => {
                tracing::info!("IKE SA #{}: peer moved to {remote}", ike.0);
                self.dp.out.send(OutCmd::PeerMoved { ike, dst: remote });
            }
            ev @ (Event::MediatedPath { .. } | Event::MediationFailed { .. }) => {
                self.mediation_event(now, ev)
            }
            _ => {}
        }
    }

    fn child_up(&mut self, now: Instant, info: &ike::endpoint::ChildSaInfo) {
        let key = (info.conn.clone(), info.child.clone());
        self.pending.remove(&key);
        let inst = match install::child_sas(info) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("{}.{}: cannot install child SA: {e}", key.0, key.1);
                let _ = self.ep.delete_child(now, info.spi_in);
                return;
            }
        };
        self.dp.inb.send(InCmd::AddSa(Box::new(inst.inbound)));
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
            Some((_, old)) => {
                old.successor = Some(info.spi_in);
                let route = old.route;
                self.dp.out.send(OutCmd::AddSuccessor { route, sa: out });
                (route, old.nets.clone(), "rekeyed")
            }
            None => {
                let route = self.alloc();
                self.dp.out.send(OutCmd::AddRoute {
                    route,
                    sa: out,
                    policies: inst.policies,
                });
                let nets = OsRoutes::nets_for(&info.remote_ts, info.remote.ip());
                let sources = OsRoutes::source_for(&info.local_ts);
                self.routes.acquire(&nets, &sources);
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
        self.children.insert(
            info.spi_in,
            Child {
                key,
                ike: info.ike,
                spi_out: info.spi_out,
                route,
                successor: None,
                nets,
            },
        );
    }

    fn child_down(&mut self, now: Instant, spi_in: u32, spi_out: u32, reason: &DownReason) {
        self.dp.out.send(OutCmd::RemoveSa { spi: spi_out });
        let Some(c) = self.children.remove(&spi_in) else {
            self.dp.inb.send(InCmd::RemoveSa { spi: spi_in });
            return;
        };
        if c.successor.is_some() {
            // Replaced: its inbound SA lingers for packets already on their way.
            self.removals.push((now + INBOUND_GRACE, spi_in));
            tracing::debug!("{}.{}: old child SA {spi_in:08x} retired", c.key.0, c.key.1);
            return;
        }
        tracing::info!(
            "{}.{}: child SA {spi_in:08x}_i {spi_out:08x}_o down: {reason}",
            c.key.0,
            c.key.1
        );
        let siblings: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, o)| o.route == c.route)
            .map(|(s, _)| *s)
            .collect();
        // A predecessor whose successor this was keeps the route, handed on to the
        // other new SA of a rekey collision if there is one.
        for (spi, other) in self.children.iter_mut() {
            if other.successor == Some(spi_in) {
                other.successor = siblings.iter().copied().find(|s| s != spi);
            }
        }
        if siblings.is_empty() {
            self.dp.inb.send(InCmd::RemoveSa { spi: spi_in });
            self.routes.release(&c.nets);
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
                    "{conn}: IKE SA #{} failed: authentication failed: {why}",
                    id.0
                )
            }
            DownReason::Terminated | DownReason::Rekeyed | DownReason::DeletedByPeer => {
                tracing::info!("{conn}: IKE SA #{} closed ({reason})", id.0)
            }
            _ => tracing::warn!("{conn}: IKE SA #{} down: {reason}", id.0),
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
        let Some(plan) = self.plan(conn) else {
            // A responder SA that never matched a connection.
            return;
        };
        let children: Vec<(String, StartAction, DpdAction)> = plan
            .children
            .iter()
            .map(|c| (c.name.clone(), c.start_action, c.dpd_action))
            .collect();
        let mut restart = false;
        for (name, start, dpd) in children {
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
                // "start" keeps trying until the peer answers; so does a restart after
                // DPD that has not reached the peer yet.
                DownReason::Timeout | DownReason::HalfOpenExpired
                    if start == StartAction::Start
                        || (was_pending && dpd == DpdAction::Restart) =>
                {
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
        [r, d].into_iter().flatten().min()
    }

    /// Runs due retries and removals.
    pub(crate) fn run_timers(&mut self, now: Instant) {
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
                        })
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default();
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
        }
        let (due, keep): (Vec<_>, Vec<_>) = self.removals.drain(..).partition(|(t, _)| *t <= now);
        self.removals = keep;
        for (_, spi) in due {
            self.dp.inb.send(InCmd::RemoveSa { spi });
        }
    }

    /// Child SA handles by inbound SPI for status: (key, state).
    pub(crate) fn child_state(&self, spi_in: u32) -> &'static str {
        match self.children.get(&spi_in) {
            Some(c) if c.successor.is_some() => "REKEYED",
            _ => "INSTALLED",
        }
    }

    /// Number of IKE SAs left (for shutdown).
    pub(crate) fn ike_count(&self) -> usize {
        self.ep.ike_sas().len()
    }

    /// Sends a NAT-T keepalive to every peer we reach through a NAT.
    pub(crate) fn keepalive_targets(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.ep
            .ike_sas()
            .into_iter()
            .filter(|sa| sa.nat.0 && sa.state != "CONNECTING")
            .map(|sa| (sa.local, sa.remote))
            .collect()
    }
}
