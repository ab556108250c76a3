//! An in-memory pair of endpoints on a virtual clock (quinn-proto's `Pair` idea): a
//! network with latency and injectable loss, duplication, reordering and a NAT.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike::config::{
    ChildConfig, Config, Connection, Identity, LocalAuth, PrivateKey, RemoteAuth, TrustStore,
};
use ike::crypto::SeededRng;
use ike::endpoint::{ChildSaInfo, DownReason, Endpoint, Event, Transmit};
use ike::proposal::ProposalSet;

pub mod dataplane;
pub mod mesh;
pub mod msg;
use ike::ts;

/// 2026-11-01, inside the test certificates' validity.
pub fn wall_clock() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

/// Which end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The initiator in most tests ("a", 192.0.2.1).
    A,
    /// The responder in most tests ("b", 192.0.2.2).
    B,
}

/// One end: its endpoint and what it reported.
pub struct Node {
    pub ep: Endpoint,
    pub ip: IpAddr,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Installed child SAs by inbound SPI (the engine's view).
    pub children: HashMap<u32, ChildSaInfo>,
    pub ike_up: usize,
    pub ike_down: Vec<DownReason>,
    /// What the engine's SA tables would hold (see [`dataplane`]).
    pub dp: dataplane::DpModel,
}

impl Node {
    /// A node for `ep` at `ip`.
    pub fn new(ep: Endpoint, ip: IpAddr) -> Node {
        Node {
            ep,
            ip,
            events: Vec::new(),
            children: HashMap::new(),
            ike_up: 0,
            ike_down: Vec::new(),
            dp: dataplane::DpModel::default(),
        }
    }

    pub(crate) fn absorb(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            self.dp.apply(now, &ev);
            match &ev {
                Event::ChildUp(c) => {
                    let info = ChildSaInfo {
                        key_in: c.key_in.clone(),
                        key_out: c.key_out.clone(),
                        local_ts: c.local_ts.clone(),
                        remote_ts: c.remote_ts.clone(),
                        conn: c.conn.clone(),
                        child: c.child.clone(),
                        suite: c.suite,
                        ..**c
                    };
                    self.children.insert(c.spi_in, info);
                }
                Event::ChildDown { spi_in, .. } => {
                    self.children.remove(spi_in);
                }
                Event::IkeUp(_) => self.ike_up += 1,
                Event::IkeDown { reason, .. } => self.ike_down.push(reason.clone()),
                _ => {}
            }
            self.events.push(ev);
        }
    }

    /// Child SAs currently installed, as (spi_in, spi_out).
    pub fn child_spis(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .children
            .values()
            .map(|c| (c.spi_in, c.spi_out))
            .collect();
        v.sort();
        v
    }

    pub fn established(&self) -> usize {
        self.ep
            .ike_sas()
            .iter()
            .filter(|s| s.state == "ESTABLISHED")
            .count()
    }
}

/// A one-to-one NAT in front of A: rewrites A's source address to `public`, a port per
/// A's local port, and rewrites the answers back.
pub struct Nat {
    pub public: IpAddr,
    pub next_port: u16,
    pub map: HashMap<u16, u16>,
}

/// Decides the fate of a datagram: deliver, drop, duplicate or delay.
pub type Filter = Box<dyn FnMut(usize, &Transmit) -> Fate>;

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Deliver after this extra delay (reordering).
    Delay(Duration),
    /// Keep it in [`Pair::held`] until the test releases it ([`Pair::release`]).
    Hold,
}

/// A datagram that would have been lost by the engine: at `at` (since the pair was
/// made), `from`'s outbound SA `spi` had no inbound SA at the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    pub at: Duration,
    pub from: Side,
    pub spi: u32,
}

/// Two endpoints and the network between them.
pub struct Pair {
    pub now: Instant,
    pub a: Node,
    pub b: Node,
    pub latency: Duration,
    /// (delivery time, sequence, transmit) in flight.
    pub net: Vec<(Instant, u64, Transmit)>,
    seq: u64,
    pub sent: usize,
    pub filter: Option<Filter>,
    pub nat: Option<Nat>,
    /// Datagrams a filter held back ([`Fate::Hold`]), in the order sent.
    pub held: Vec<Transmit>,
    /// Every instant at which the engines' SA tables would have lost traffic.
    pub losses: Vec<Loss>,
    start: Instant,
}

pub const A_IP: [u8; 4] = [192, 0, 2, 1];
pub const B_IP: [u8; 4] = [192, 0, 2, 2];

impl Pair {
    pub fn new(config: Config) -> Pair {
        let now = Instant::now();
        let mk = |seed: u64, ip: [u8; 4]| {
            Node::new(
                Endpoint::new(
                    config.clone(),
                    Box::new(SeededRng::new(seed)),
                    (now, wall_clock()),
                ),
                IpAddr::from(ip),
            )
        };
        Pair {
            now,
            a: mk(0x1234_5678_9abc_def1, A_IP),
            b: mk(0x0fed_cba9_8765_4321, B_IP),
            latency: Duration::from_millis(10),
            net: Vec::new(),
            seq: 0,
            sent: 0,
            filter: None,
            nat: None,
            held: Vec::new(),
            losses: Vec::new(),
            start: now,
        }
    }

    /// Sends the held datagrams that match `pick` now (after the usual latency), in the
    /// order they were held; returns how many.
    pub fn release(&mut self, mut pick: impl FnMut(&Transmit) -> bool) -> usize {
        let held = std::mem::take(&mut self.held);
        let mut n = 0;
        for t in held {
            if pick(&t) {
                let at = self.now + self.latency;
                self.push(at, t);
                n += 1;
            } else {
                self.held.push(t);
            }
        }
        n
    }

    /// Fails when the engines would have lost traffic at some instant (see
    /// [`dataplane`]): the make-before-break check of every scenario.
    pub fn assert_no_loss(&self) {
        assert!(
            self.losses.is_empty(),
            "traffic would be lost: {:?}",
            &self.losses[..self.losses.len().min(8)]
        );
    }

    fn check_dataplane(&mut self) {
        let now = self.now;
        for (from, to, side) in [(&self.a, &self.b, Side::A), (&self.b, &self.a, Side::B)] {
            for spi in dataplane::check(&from.dp, &to.dp, now) {
                let loss = Loss {
                    at: now - self.start,
                    from: side,
                    spi,
                };
                if !self.losses.iter().any(|l| l.from == side && l.spi == spi) {
                    self.losses.push(loss);
                }
            }
        }
    }

    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn collect(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let node = self.node(side);
                let Some(mut t) = node.ep.poll_transmit() else {
                    break;
                };
                if t.local.ip().is_unspecified() {
                    t.local.set_ip(node.ip);
                }
                if side == Side::A {
                    if let Some(nat) = self.nat.as_mut() {
                        let port = *nat.map.entry(t.local.port()).or_insert_with(|| {
                            nat.next_port += 1;
                            nat.next_port
                        });
                        t.local = SocketAddr::new(nat.public, port);
                    }
                }
                let idx = self.sent;
                self.sent += 1;
                let fate = match self.filter.as_mut() {
                    Some(f) => f(idx, &t),
                    None => Fate::Deliver,
                };
                let at = self.now + self.latency;
                match fate {
                    Fate::Deliver => self.push(at, t),
                    Fate::Drop => {}
                    Fate::Duplicate => {
                        self.push(at, t.clone());
                        self.push(at + Duration::from_millis(1), t);
                    }
                    Fate::Delay(d) => self.push(at + d, t),
                    Fate::Hold => self.held.push(t),
                }
            }
            let now = self.now;
            self.node(side).absorb(now);
        }
        self.check_dataplane();
    }

    fn push(&mut self, at: Instant, t: Transmit) {
        self.seq += 1;
        self.net.push((at, self.seq, t));
    }

    fn deliver(&mut self, t: Transmit) {
        let mut remote_of_sender = t.local;
        let mut to = t.remote;
        // Traffic to the NAT's public address goes back to A at its private port.
        if let Some(nat) = &self.nat {
            if to.ip() == nat.public {
                let Some((&private, _)) = nat.map.iter().find(|(_, &p)| p == to.port()) else {
                    return;
                };
                to = SocketAddr::new(self.a.ip, private);
            }
        }
        let side = if to.ip() == self.a.ip {
            Side::A
        } else if to.ip() == self.b.ip {
            Side::B
        } else {
            return;
        };
        if remote_of_sender.ip().is_unspecified() {
            remote_of_sender.set_ip(self.a.ip);
        }
        let now = self.now;
        self.node(side)
            .ep
            .handle(now, to, remote_of_sender, &t.data);
    }

    /// Runs one step: the next delivery or timer. False when nothing is scheduled before
    /// `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.collect();
        let next_pkt = self.net.iter().map(|(t, s, _)| (*t, *s)).min();
        let next_timer = [self.a.ep.poll_timeout(), self.b.ep.poll_timeout()]
            .into_iter()
            .flatten()
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
            let i = self.net.iter().position(|(_, s, _)| *s == seq).unwrap();
            let (_, _, t) = self.net.remove(i);
            self.deliver(t);
        } else {
            let now = self.now;
            self.a.ep.handle_timeout(now);
            self.b.ep.handle_timeout(now);
        }
        self.collect();
        true
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

    /// Runs until `cond` holds, at most `d` of virtual time; returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Pair) -> bool) -> bool {
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

    /// Runs until no datagram is in flight and no timer is due within a minute.
    pub fn settle(&mut self) {
        let mut steps = 0;
        loop {
            self.collect();
            let limit = self.now + Duration::from_secs(600);
            let busy = |n: &Node| n.ep.ike_sas().iter().any(|s| s.busy);
            if self.net.is_empty() && !busy(&self.a) && !busy(&self.b) {
                return;
            }
            if !self.step(limit) {
                return;
            }
            steps += 1;
            assert!(steps < 1_000_000, "runaway");
        }
    }

    /// Both sides have the same child SAs, mirrored (a's in = b's out), with the same
    /// keys crosswise.
    pub fn assert_children_match(&self) {
        assert_eq!(
            self.a.children.len(),
            self.b.children.len(),
            "child count differs"
        );
        for (spi_in, ca) in &self.a.children {
            let cb = self
                .b
                .children
                .get(&ca.spi_out)
                .unwrap_or_else(|| panic!("b has no child with spi_in {:08x}", ca.spi_out));
            assert_eq!(cb.spi_out, *spi_in);
            assert_eq!(*ca.key_in, *cb.key_out, "keys differ");
            assert_eq!(*ca.key_out, *cb.key_in, "keys differ");
            assert_eq!(ca.local_ts, cb.remote_ts);
            assert_eq!(ca.remote_ts, cb.local_ts);
        }
    }
}

pub fn psk(s: &str) -> Arc<zeroize::Zeroizing<Vec<u8>>> {
    Arc::new(zeroize::Zeroizing::new(s.as_bytes().to_vec()))
}

pub fn child(name: &str, local: &[&str], remote: &[&str], esp: &str) -> ChildConfig {
    ChildConfig {
        name: name.into(),
        local_ts: local.iter().map(|s| ts::parse_cidr(s).unwrap()).collect(),
        remote_ts: remote.iter().map(|s| ts::parse_cidr(s).unwrap()).collect(),
        esp_proposals: ProposalSet::parse_esp(esp).unwrap(),
        rekey_time: Duration::ZERO,
    }
}

#[allow(clippy::too_many_arguments)]
/// A PSK connection from `local` to `remote` with DN identities.
pub fn psk_conn(
    name: &str,
    local_ip: [u8; 4],
    remote_ip: Option<[u8; 4]>,
    local_cn: &str,
    remote_cn: &str,
    secret: &str,
    ike: &str,
    children: Vec<ChildConfig>,
) -> Connection {
    Connection {
        name: name.into(),
        local_addrs: vec![IpAddr::from(local_ip)],
        remote_addrs: remote_ip.map(IpAddr::from).into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike(ike).unwrap(),
        local_id: Identity::parse(&format!("C=CN, O=Local Cluster, CN={local_cn}")).unwrap(),
        local_auth: LocalAuth::Psk(psk(secret)),
        remote_id: Identity::parse(&format!("C=CN, O=Local Cluster, CN={remote_cn}")).unwrap(),
        remote_auth: RemoteAuth::Psk(psk(secret)),
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        unique: Default::default(),
        mediation: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
        children,
    }
}

/// A certificate connection: our key and chain, the peer's CA.
#[allow(clippy::too_many_arguments)]
pub fn cert_conn(
    name: &str,
    local_ip: [u8; 4],
    remote_ip: Option<[u8; 4]>,
    local_id: &str,
    remote_id: &str,
    key: PrivateKey,
    chain: Vec<Vec<u8>>,
    trust: TrustStore,
    ike: &str,
    children: Vec<ChildConfig>,
) -> Connection {
    Connection {
        name: name.into(),
        local_addrs: vec![IpAddr::from(local_ip)],
        remote_addrs: remote_ip.map(IpAddr::from).into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike(ike).unwrap(),
        local_id: Identity::parse(local_id).unwrap(),
        local_auth: LocalAuth::Pubkey {
            key: Arc::new(key),
            certs: chain,
        },
        remote_id: Identity::parse(remote_id).unwrap(),
        remote_auth: RemoteAuth::Pubkey(Arc::new(trust)),
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        unique: Default::default(),
        mediation: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
        children,
    }
}

/// The standard pair's initiator connection "site-b" (a's side).
pub fn psk_a_conn(ike: &str, esp: &str) -> Connection {
    psk_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        "site-a",
        "site-b",
        "a long random secret",
        ike,
        vec![child("net", &["10.96.1.0/24"], &["10.96.2.0/24"], esp)],
    )
}

/// The standard pair's responder connection "site-a" (b's side).
pub fn psk_b_conn(ike: &str, esp: &str) -> Connection {
    psk_conn(
        "site-a",
        B_IP,
        None,
        "site-b",
        "site-a",
        "a long random secret",
        ike,
        vec![child("net", &["10.96.2.0/24"], &["10.96.1.0/24"], esp)],
    )
}

/// Brings the standard pair up (a initiates "site-b") with the network behaving: one IKE
/// SA each and the child SAs mirrored.
pub fn up(p: &mut Pair) {
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.children.len() == 1
            && p.b.children.len() == 1),
        "tunnel did not come up"
    );
    p.settle();
    assert_eq!((p.a.ike_up, p.b.ike_up), (1, 1), "IKE SA up");
    p.assert_children_match();
}

/// The side of the standard pair that sent `t`.
pub fn sender(t: &Transmit) -> Side {
    if t.local.ip() == IpAddr::from(A_IP) {
        Side::A
    } else {
        Side::B
    }
}

/// The standard PSK pair: a initiates "site-b" to b's responder "site-a".
pub fn psk_pair(ike: &str, esp: &str) -> Pair {
    let mut p = Pair::new(Config::default());
    p.a.ep.add_connection(psk_a_conn(ike, esp));
    p.b.ep.add_connection(psk_b_conn(ike, esp));
    p
}
