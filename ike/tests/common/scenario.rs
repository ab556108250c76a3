//! Scripted scenarios on the pair, in the manner of strongSwan's exchange tests: every
//! datagram is held, and the script delivers, delays, drops or re-sends them one by one,
//! choosing the first byte of each side's nonces on the way so that the order of the
//! nonces of colliding exchanges (RFC 7296 2.8.1) is the script's, not the seed's.

#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ike::config::Config;
use ike::crypto::{Rng, SeededRng};
use ike::endpoint::{DownReason, Endpoint, Event, Transmit};

use crate::common::{msg, psk_a_conn, psk_b_conn, wall_clock, Fate, Node, Pair, Side, A_IP, B_IP};
pub use crate::common::{sender, up};

/// No forced byte.
const FREE: u16 = 0x100;

/// A seeded generator whose 32-byte draws (nonces, and the X25519/P-256 private keys
/// drawn beside them, which any first byte keeps valid) start with a byte the script
/// chooses, like charon's `nonce_first_byte`.
struct NonceRng {
    inner: SeededRng,
    first: Arc<AtomicU16>,
}

impl Rng for NonceRng {
    fn fill(&mut self, buf: &mut [u8]) {
        self.inner.fill(buf);
        let first = self.first.load(Ordering::Relaxed);
        if buf.len() == 32 && first != FREE {
            buf[0] = first as u8;
        }
    }
}

/// The handles that choose each side's next nonces.
pub struct Nonces {
    a: Arc<AtomicU16>,
    b: Arc<AtomicU16>,
}

impl Nonces {
    /// `side`'s nonces from now on start with `byte`.
    pub fn set(&self, side: Side, byte: u8) {
        self.of(side).store(u16::from(byte), Ordering::Relaxed);
    }

    /// `side`'s nonces are the seed's again.
    pub fn free(&self, side: Side) {
        self.of(side).store(FREE, Ordering::Relaxed);
    }

    fn of(&self, side: Side) -> &AtomicU16 {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

/// The other end.
pub fn peer(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// The standard PSK pair ("site-b" at a, "site-a" at b) with each side's ESP proposals
/// and nonces the script can choose.
pub fn nonce_pair(ike: &str, esp_a: &str, esp_b: &str) -> (Pair, Nonces) {
    let mut p = Pair::new(Config::default());
    let first_a = Arc::new(AtomicU16::new(FREE));
    let first_b = Arc::new(AtomicU16::new(FREE));
    let mk = |seed: u64, ip: [u8; 4], first: &Arc<AtomicU16>, now| {
        let rng = NonceRng {
            inner: SeededRng::new(seed),
            first: first.clone(),
        };
        Node::new(
            Endpoint::new(Config::default(), Box::new(rng), (now, wall_clock())),
            IpAddr::from(ip),
        )
    };
    p.a = mk(0x1234_5678_9abc_def1, A_IP, &first_a, p.now);
    p.b = mk(0x0fed_cba9_8765_4321, B_IP, &first_b, p.now);
    p.a.ep.add_connection(psk_a_conn(ike, esp_a));
    p.b.ep.add_connection(psk_b_conn(ike, esp_b));
    (
        p,
        Nonces {
            a: first_a,
            b: first_b,
        },
    )
}

/// One IKE message as a script names it: who sent it, the exchange, request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub from: Side,
    pub exchange: u8,
    pub response: bool,
}

impl Msg {
    /// Whether `t` is this message.
    pub fn matches(&self, t: &Transmit) -> bool {
        sender(t) == self.from && msg::is(t, self.exchange, self.response)
    }
}

/// A CREATE_CHILD_SA request from `from`.
pub fn ccsa_req(from: Side) -> Msg {
    Msg {
        from,
        exchange: msg::CREATE_CHILD_SA,
        response: false,
    }
}

/// A CREATE_CHILD_SA response from `from`.
pub fn ccsa_resp(from: Side) -> Msg {
    Msg {
        from,
        exchange: msg::CREATE_CHILD_SA,
        response: true,
    }
}

/// An INFORMATIONAL request from `from`.
pub fn info_req(from: Side) -> Msg {
    Msg {
        from,
        exchange: msg::INFORMATIONAL,
        response: false,
    }
}

/// An INFORMATIONAL response from `from`.
pub fn info_resp(from: Side) -> Msg {
    Msg {
        from,
        exchange: msg::INFORMATIONAL,
        response: true,
    }
}

/// From now on every datagram waits in [`Pair::held`] until the script moves it.
pub fn hold_all(p: &mut Pair) {
    p.filter = Some(Box::new(|_, _| Fate::Hold));
}

/// How many held datagrams are `m`.
pub fn held(p: &Pair, m: Msg) -> usize {
    p.held.iter().filter(|t| m.matches(t)).count()
}

/// Takes the oldest held `m` out of the network, to deliver later ([`inject`]) or never.
pub fn take(p: &mut Pair, m: Msg) -> Transmit {
    let i = p
        .held
        .iter()
        .position(|t| m.matches(t))
        .unwrap_or_else(|| panic!("no {m:?} held (held: {:?})", summary(p)));
    p.held.remove(i)
}

/// Drops the oldest held `m`.
pub fn drop_msg(p: &mut Pair, m: Msg) {
    take(p, m);
}

/// Delivers `t` now and runs until it has arrived (and its answer, if any, is held).
pub fn inject(p: &mut Pair, t: Transmit) {
    p.held.insert(0, t);
    let mut first = true;
    p.release(|_| std::mem::take(&mut first));
    let latency = p.latency;
    p.run_for(latency);
}

/// Delivers the oldest held `m` and runs until it has arrived.
pub fn deliver(p: &mut Pair, m: Msg) {
    let t = take(p, m);
    inject(p, t);
}

/// Sends and delivers every held datagram, lets the network behave from now on and
/// runs until both sides are idle.
pub fn resume(p: &mut Pair) {
    p.filter = None;
    p.release(|_| true);
    p.settle();
    // Let the inbound SAs the engine keeps after a delete expire.
    p.run_for(Duration::from_secs(3));
    p.settle();
}

/// The held datagrams, as the script names them.
pub fn summary(p: &Pair) -> Vec<(Side, u8, bool, u32)> {
    p.held
        .iter()
        .filter_map(|t| msg::info(t).map(|m| (sender(t), m.exchange, m.response, m.msg_id)))
        .collect()
}

/// The inbound SPI of `side`'s only child SA.
pub fn only_child(p: &Pair, side: Side) -> u32 {
    let n = node(p, side);
    assert_eq!(
        n.children.len(),
        1,
        "{side:?} should hold one child: {:?}",
        n.child_spis()
    );
    *n.children.keys().next().unwrap()
}

/// `side`'s node, shared.
pub fn node(p: &Pair, side: Side) -> &Node {
    match side {
        Side::A => &p.a,
        Side::B => &p.b,
    }
}

/// How `side` reported the end of its child SA `spi_in`: every `ChildDown` reason.
pub fn downs(p: &Pair, side: Side, spi_in: u32) -> Vec<DownReason> {
    node(p, side)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildDown {
                spi_in: s, reason, ..
            } if *s == spi_in => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The child SAs `side` reported up, as (spi_in, spi_out, the SA it rekeyed).
pub fn ups(p: &Pair, side: Side) -> Vec<(u32, u32, Option<u32>)> {
    node(p, side)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildUp(c) => Some((c.spi_in, c.spi_out, c.rekeys)),
            _ => None,
        })
        .collect()
}

/// The child SAs `side` failed to negotiate, by reason.
pub fn failures(p: &Pair, side: Side) -> Vec<DownReason> {
    node(p, side)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The final state of a scenario: one IKE SA per side, established and idle, holding
/// exactly the child SAs the engine installed (`want` inbound SPIs at a, mirrored at b),
/// every other SA reported down exactly once, and no traffic lost on the way.
pub fn assert_settled(p: &Pair, want_a: &[u32]) {
    for side in [Side::A, Side::B] {
        let n = node(p, side);
        let sas = n.ep.ike_sas();
        assert_eq!(sas.len(), 1, "{side:?}: one IKE SA: {sas:?}");
        assert_eq!(sas[0].state, "ESTABLISHED", "{side:?}: {sas:?}");
        assert!(!sas[0].busy, "{side:?} idle: {sas:?}");
        let mut ike_view: Vec<u32> = sas[0].children.iter().map(|c| c.spi_in).collect();
        ike_view.sort();
        let mut engine_view: Vec<u32> = n.children.keys().copied().collect();
        engine_view.sort();
        assert_eq!(
            ike_view, engine_view,
            "{side:?}: the IKE SA tracks exactly the installed child SAs"
        );
        for (spi_in, _, _) in ups(p, side) {
            let d = downs(p, side, spi_in);
            if n.children.contains_key(&spi_in) {
                assert!(d.is_empty(), "{side:?} {spi_in:08x} is up but went down");
            } else {
                assert_eq!(d.len(), 1, "{side:?} {spi_in:08x} down once: {d:?}");
            }
        }
        assert_eq!(
            n.dp.routes(),
            n.children.len(),
            "{side:?}: one route per SA"
        );
    }
    let mut a: Vec<u32> = p.a.children.keys().copied().collect();
    a.sort();
    let mut want = want_a.to_vec();
    want.sort();
    assert_eq!(a, want, "a's child SAs");
    p.assert_children_match();
    p.assert_no_loss();
}

/// Drops held datagrams identical to one held earlier (retransmissions of a request
/// that is still held), so that a script sees each message once.
pub fn drop_duplicates(p: &mut Pair) {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    p.held.retain(|t| {
        if seen.contains(&t.data) {
            false
        } else {
            seen.push(t.data.clone());
            true
        }
    });
}

/// Delivers every held datagram in the order held, and whatever they cause, until
/// nothing is held.
pub fn deliver_in_order(p: &mut Pair) {
    let mut n = 0;
    while !p.held.is_empty() {
        let t = p.held.remove(0);
        inject(p, t);
        n += 1;
        assert!(n < 1000, "runaway: {:?}", summary(p));
    }
}
