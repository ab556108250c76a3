//! Several endpoints on a virtual clock, each on the public segment or behind its own
//! NAT router that does what Linux MASQUERADE plus a stateful firewall does: the source
//! port is kept (a new one per destination when `symmetric`, as `--random-fully`
//! roughly does), and inbound datagrams pass only on a mapping whose inside host has
//! sent to that very source before (conntrack). Private addresses behind different
//! routers cannot reach each other.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ike::config::Config;
use ike::crypto::SeededRng;
use ike::endpoint::{Endpoint, Event, Transmit};
use ike::wire::relay::RelayToken;

use super::{wall_clock, Node};

/// A NAT router in front of one node.
pub struct Router {
    /// Its public address.
    pub public: IpAddr,
    /// A new public port for every (inside address, destination), instead of one per
    /// inside address.
    pub symmetric: bool,
    /// (inside address, destination or None) -> public port.
    map: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    /// (public port, outside source) allowed in.
    allowed: HashSet<(u16, SocketAddr)>,
    next_port: u16,
}

impl Router {
    /// A router with public address `public`.
    pub fn new(public: [u8; 4], symmetric: bool) -> Router {
        Router {
            public: IpAddr::from(public),
            symmetric,
            map: HashMap::new(),
            allowed: HashSet::new(),
            next_port: 30000,
        }
    }

    /// Forgets every mapping (a reboot, or mappings that timed out): each flow leaves
    /// from a new public port, and nothing is let in until it does.
    pub fn rebind(&mut self) {
        self.map.clear();
        self.allowed.clear();
    }

    fn outbound(&mut self, from: SocketAddr, to: SocketAddr) -> SocketAddr {
        let key = (from, self.symmetric.then_some(to));
        let port = match self.map.get(&key) {
            Some(p) => *p,
            None => {
                let taken = self.map.values().any(|p| *p == from.port());
                let p = if self.symmetric || taken {
                    self.next_port += 1;
                    self.next_port
                } else {
                    from.port()
                };
                self.map.insert(key, p);
                p
            }
        };
        self.allowed.insert((port, to));
        SocketAddr::new(self.public, port)
    }

    fn inbound(&self, to_port: u16, from: SocketAddr) -> Option<SocketAddr> {
        if !self.allowed.contains(&(to_port, from)) {
            return None;
        }
        self.map
            .iter()
            .find(|(_, p)| **p == to_port)
            .map(|((inside, _), _)| *inside)
    }
}

/// One node of the mesh.
pub struct Host {
    /// The endpoint and what it reported.
    pub node: Node,
    /// Its router, if it is behind one.
    pub router: Option<Router>,
}

/// A datagram that went through the network: (sender index, receiver index, transmit
/// as the receiver got it).
pub type Delivered = (usize, usize, Transmit);

/// The mesh: hosts, the datagrams in flight and a log of what was delivered.
pub struct Mesh {
    pub now: Instant,
    pub hosts: Vec<Host>,
    pub latency: Duration,
    net: Vec<(Instant, u64, usize, Transmit)>,
    seq: u64,
    /// Every datagram delivered, in order.
    pub delivered: Vec<Delivered>,
    /// Datagrams dropped by a router's firewall or for want of a route.
    pub dropped: usize,
    /// Open relay ports when `relay` is set (what the engine of an esprit mediation
    /// server does on `Event::RelayWanted`).
    pub relays: Vec<MeshRelay>,
    /// Answer `Event::RelayWanted` by opening a relay.
    pub relay: bool,
    /// Datagrams between these two public addresses are dropped (a blocked path).
    pub block: Option<(IpAddr, IpAddr)>,
}

/// A relay port on a mediation server: forwards between the two addresses that bound.
pub struct MeshRelay {
    /// The relay's address.
    pub addr: SocketAddr,
    tokens: [RelayToken; 2],
    /// The addresses that bound, by token.
    pub bound: [Option<SocketAddr>; 2],
    /// Datagrams forwarded.
    pub forwarded: usize,
    cid: ike::wire::mediation::ConnectId,
}

impl Mesh {
    /// An empty mesh.
    pub fn new() -> Mesh {
        Mesh {
            now: Instant::now(),
            hosts: Vec::new(),
            latency: Duration::from_millis(10),
            net: Vec::new(),
            seq: 0,
            delivered: Vec::new(),
            dropped: 0,
            relays: Vec::new(),
            relay: false,
            block: None,
        }
    }

    /// Adds a host at `ip` (private when `router` is given); returns its index.
    pub fn add(&mut self, config: Config, seed: u64, ip: [u8; 4], router: Option<Router>) -> usize {
        let node = Node::new(
            Endpoint::new(
                config,
                Box::new(SeededRng::new(seed)),
                (self.now, wall_clock()),
            ),
            IpAddr::from(ip),
        );
        self.hosts.push(Host { node, router });
        self.hosts.len() - 1
    }

    /// Host `i`'s endpoint and record.
    pub fn node(&mut self, i: usize) -> &mut Node {
        &mut self.hosts[i].node
    }

    /// Where host `i` is seen from outside: its router's address, or its own.
    pub fn public_ip(&self, i: usize) -> IpAddr {
        let h = &self.hosts[i];
        h.router.as_ref().map_or(h.node.ip, |r| r.public)
    }

    fn collect(&mut self) {
        for i in 0..self.hosts.len() {
            loop {
                let host = &mut self.hosts[i];
                let Some(mut t) = host.node.ep.poll_transmit() else {
                    break;
                };
                if t.local.ip().is_unspecified() {
                    t.local.set_ip(host.node.ip);
                }
                if let Some(r) = host.router.as_mut() {
                    // Traffic to another host behind the same router would stay inside;
                    // every router here has one host, so everything goes out.
                    t.local = r.outbound(t.local, t.remote);
                }
                self.seq += 1;
                let at = self.now + self.latency;
                self.net.push((at, self.seq, i, t));
            }
            self.hosts[i].node.absorb(self.now);
            if self.relay {
                self.open_relays(i);
            }
        }
    }

    fn open_relays(&mut self, i: usize) {
        let wanted: Vec<_> = self.hosts[i]
            .node
            .events
            .iter()
            .filter_map(|e| match e {
                Event::RelayWanted {
                    connect_id,
                    local,
                    tokens,
                    ..
                } => Some((connect_id.clone(), *local, *tokens)),
                _ => None,
            })
            .collect();
        for (cid, local, tokens) in wanted {
            if self.relays.iter().any(|r| r.cid == cid) {
                continue;
            }
            let port = 40000 + self.relays.len() as u16;
            self.relays.push(MeshRelay {
                addr: SocketAddr::new(local, port),
                tokens,
                bound: [None; 2],
                forwarded: 0,
                cid: cid.clone(),
            });
            let now = self.now;
            self.hosts[i].node.ep.relay_allocated(now, &cid, Some(port));
        }
    }

    /// A datagram to a relay port: a bind, or one to forward to the other side.
    fn relay(&mut self, t: Transmit) {
        let Some(r) = self.relays.iter_mut().find(|r| r.addr == t.remote) else {
            self.dropped += 1;
            return;
        };
        if let Some(token) = RelayToken::from_bind(&t.data) {
            if let Some(k) = r.tokens.iter().position(|x| *x == token) {
                r.bound[k] = Some(t.local);
            }
            return;
        }
        let Some(k) = r.bound.iter().position(|b| *b == Some(t.local)) else {
            self.dropped += 1;
            return;
        };
        let Some(to) = r.bound[1 - k] else {
            self.dropped += 1;
            return;
        };
        r.forwarded += 1;
        let fwd = Transmit {
            local: r.addr,
            remote: to,
            data: t.data,
        };
        let server = self
            .hosts
            .iter()
            .position(|h| h.router.is_none() && h.node.ip == fwd.local.ip())
            .unwrap_or(0);
        self.seq += 1;
        let at = self.now + self.latency;
        self.net.push((at, self.seq, server, fwd));
    }

    fn deliver(&mut self, from: usize, mut t: Transmit) {
        if let Some((x, y)) = self.block {
            let (a, b) = (t.local.ip(), t.remote.ip());
            if (a, b) == (x, y) || (a, b) == (y, x) {
                self.dropped += 1;
                return;
            }
        }
        if self.relays.iter().any(|r| r.addr == t.remote) {
            self.relay(t);
            return;
        }
        let dest = self.hosts.iter().position(|h| match &h.router {
            Some(r) => r.public == t.remote.ip(),
            None => h.node.ip == t.remote.ip(),
        });
        let Some(dest) = dest else {
            self.dropped += 1;
            return;
        };
        if let Some(r) = &self.hosts[dest].router {
            match r.inbound(t.remote.port(), t.local) {
                Some(inside) => t.remote = inside,
                None => {
                    self.dropped += 1;
                    return;
                }
            }
        }
        let now = self.now;
        self.hosts[dest]
            .node
            .ep
            .handle(now, t.remote, t.local, &t.data);
        self.delivered.push((from, dest, t));
    }

    /// Runs the next delivery or timer; false when nothing is due before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.collect();
        let next_pkt = self.net.iter().map(|(t, s, _, _)| (*t, *s)).min();
        let next_timer = self
            .hosts
            .iter()
            .filter_map(|h| h.node.ep.poll_timeout())
            .min();
        let next = match (next_pkt.map(|p| p.0), next_timer) {
            (Some(p), Some(t)) => p.min(t),
            (Some(p), None) => p,
            (None, Some(t)) => t,
            (None, None) => return false,
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        if let Some((_, seq)) = next_pkt.filter(|p| p.0 <= self.now) {
            let i = self.net.iter().position(|(_, s, _, _)| *s == seq).unwrap();
            let (_, _, from, t) = self.net.remove(i);
            self.deliver(from, t);
        } else {
            let now = self.now;
            for h in &mut self.hosts {
                h.node.ep.handle_timeout(now);
            }
        }
        self.collect();
        true
    }

    /// Runs until `cond` holds, at most `d` of virtual time; returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Mesh) -> bool) -> bool {
        let limit = self.now + d;
        let mut steps = 0;
        loop {
            self.collect();
            if cond(self) {
                return true;
            }
            if !self.step(limit) {
                return cond(self);
            }
            steps += 1;
            assert!(steps < 1_000_000, "runaway");
        }
    }

    /// Runs everything scheduled in the next `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 1_000_000, "runaway");
        }
        self.now = self.now.max(limit);
    }
}
