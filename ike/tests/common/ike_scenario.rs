//! Helpers for the IKE SA scenario tests (`rekey_ike.rs`): nonces chosen by the test
//! (which side's exchange holds the lowest nonce decides an IKE rekey collision, RFC
//! 7296 2.8.2), a scripted network (drop, hold or delay the n-th message of one kind)
//! and the checks every scenario ends with.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ike::config::Config;
use ike::crypto::{Rng, SeededRng};
use ike::endpoint::{Endpoint, Event, IkeSaId};

use crate::common::msg::{self, MsgInfo};
use crate::common::{psk_a_conn, psk_b_conn, wall_clock, Fate, Pair, Side};
pub use crate::common::{sender, up};

/// The first bytes of the nonces a node makes next, in order (strongSwan's test helper
/// sets the first nonce byte the same way).
#[derive(Clone, Default)]
pub struct Nonces(Arc<Mutex<VecDeque<u8>>>);

impl Nonces {
    /// The next nonces this node makes start with these bytes, one each.
    pub fn push(&self, first: &[u8]) {
        self.0.lock().unwrap().extend(first.iter().copied());
    }

    /// How many queued first bytes are not used yet.
    pub fn left(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A seeded generator that gives the nonce of each IKE rekey (both roles draw the new
/// IKE SPI, 8 bytes, then the nonce, 32 bytes) its first byte from a [`Nonces`] queue
/// while it has one. Child SA nonces follow a 4-byte ESP SPI and DH private keys no
/// 8-byte draw, so neither takes a queued byte.
struct NonceRng {
    inner: SeededRng,
    first: Nonces,
    last_len: usize,
}

impl Rng for NonceRng {
    fn fill(&mut self, buf: &mut [u8]) {
        self.inner.fill(buf);
        if buf.len() == 32 && self.last_len == 8 {
            if let Some(b) = self.first.0.lock().unwrap().pop_front() {
                buf[0] = b;
            }
        }
        self.last_len = buf.len();
    }
}

/// The standard pair, with each side's nonces under the test's control.
pub fn pair_with_nonces(ike: &str, esp: &str) -> (Pair, Nonces, Nonces) {
    let mut p = Pair::new(Config::default());
    let (na, nb) = (Nonces::default(), Nonces::default());
    for (node, seed, n) in [
        (&mut p.a, 0x1234_5678_9abc_def1u64, &na),
        (&mut p.b, 0x0fed_cba9_8765_4321u64, &nb),
    ] {
        node.ep = Endpoint::new(
            Config::default(),
            Box::new(NonceRng {
                inner: SeededRng::new(seed),
                first: n.clone(),
                last_len: 0,
            }),
            (p.now, wall_clock()),
        );
    }
    p.a.ep.add_connection(psk_a_conn(ike, esp));
    p.b.ep.add_connection(psk_b_conn(ike, esp));
    (p, na, nb)
}

/// One rule of a [`Script`]: the `nth` (from 0) datagram sent by `from` that `kind`
/// picks meets `fate`; `nth: None` means every one of them.
pub struct Rule {
    pub from: Side,
    pub kind: fn(&MsgInfo) -> bool,
    pub nth: Option<usize>,
    pub fate: Fate,
    seen: usize,
}

/// CREATE_CHILD_SA request.
pub fn ccsa_req(m: &MsgInfo) -> bool {
    m.exchange == msg::CREATE_CHILD_SA && !m.response
}

/// CREATE_CHILD_SA response.
pub fn ccsa_resp(m: &MsgInfo) -> bool {
    m.exchange == msg::CREATE_CHILD_SA && m.response && m.protected
}

/// INFORMATIONAL request.
pub fn info_req(m: &MsgInfo) -> bool {
    m.exchange == msg::INFORMATIONAL && !m.response
}

/// INFORMATIONAL response.
pub fn info_resp(m: &MsgInfo) -> bool {
    m.exchange == msg::INFORMATIONAL && m.response && m.protected
}

/// An unprotected INVALID_IKE_SPI answer (RFC 7296 1.5): a request for an SA the sender
/// does not know.
pub fn invalid_spi(m: &MsgInfo) -> bool {
    m.response && !m.protected
}

/// Any message.
pub fn any(_: &MsgInfo) -> bool {
    true
}

impl Rule {
    /// The `nth` message `kind` picks from `from` meets `fate`.
    pub fn nth(from: Side, kind: fn(&MsgInfo) -> bool, nth: usize, fate: Fate) -> Rule {
        Rule {
            from,
            kind,
            nth: Some(nth),
            fate,
            seen: 0,
        }
    }

    /// Every message `kind` picks from `from` meets `fate`.
    pub fn all(from: Side, kind: fn(&MsgInfo) -> bool, fate: Fate) -> Rule {
        Rule {
            from,
            kind,
            nth: None,
            fate,
            seen: 0,
        }
    }
}

/// Every IKE message sent since [`script`] installed its filter, with its sender.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(Side, MsgInfo)>>>);

impl Log {
    /// Every message logged, for a failing assertion's message.
    pub fn dump(&self) -> String {
        let v = self.0.lock().unwrap();
        v.iter()
            .map(|(s, m)| {
                format!(
                    "{s:?} {:016x}/{:016x} x{} {} id {}\n",
                    m.spi_i,
                    m.spi_r,
                    m.exchange,
                    if m.response { "resp" } else { "req" },
                    m.msg_id
                )
            })
            .collect()
    }

    /// How many messages `from` sent that `kind` picks.
    pub fn count(&self, from: Side, kind: fn(&MsgInfo) -> bool) -> usize {
        let v = self.0.lock().unwrap();
        v.iter().filter(|(s, m)| *s == from && kind(m)).count()
    }
}

/// Installs a network filter made of `rules`: the first rule that picks a datagram
/// decides its fate (every rule counts the datagrams it picks); others are delivered.
/// Returns the log of what was sent.
pub fn script(p: &mut Pair, mut rules: Vec<Rule>) -> Log {
    let log = Log::default();
    let l = log.clone();
    p.filter = Some(Box::new(move |_, t| {
        let Some(m) = msg::info(t) else {
            return Fate::Deliver;
        };
        let from = sender(t);
        l.0.lock().unwrap().push((from, m));
        let mut fate = None;
        for r in &mut rules {
            if r.from != from || !(r.kind)(&m) {
                continue;
            }
            let i = r.seen;
            r.seen += 1;
            if fate.is_none() && r.nth.is_none_or(|n| n == i) {
                fate = Some(r.fate);
            }
        }
        fate.unwrap_or(Fate::Deliver)
    }));
    log
}

/// Releases the held datagrams sent by `from` that `kind` picks; returns how many.
pub fn release(p: &mut Pair, from: Side, kind: fn(&MsgInfo) -> bool) -> usize {
    p.release(|t| sender(t) == from && msg::info(t).is_some_and(|m| kind(&m)))
}

/// The IKE SPIs (SPIi, SPIr) of a node's IKE SAs, sorted.
pub fn ike_spis(p: &Pair, side: Side) -> Vec<(u64, u64)> {
    let n = if side == Side::A { &p.a } else { &p.b };
    let mut v: Vec<(u64, u64)> = n.ep.ike_sas().iter().map(|s| (s.spi_i, s.spi_r)).collect();
    v.sort();
    v
}

/// The node's only IKE SA's id.
pub fn ike_id(p: &Pair, side: Side) -> IkeSaId {
    let n = if side == Side::A { &p.a } else { &p.b };
    let sas = n.ep.ike_sas();
    assert_eq!(sas.len(), 1, "{side:?}: one IKE SA expected: {sas:?}");
    sas[0].id
}

/// The `IkeRekeyed` events a node reported, as (old, new).
pub fn rekeyed(p: &Pair, side: Side) -> Vec<(IkeSaId, IkeSaId)> {
    let n = if side == Side::A { &p.a } else { &p.b };
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::IkeRekeyed { old, new } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

/// The end of every scenario whose outcome is one working IKE SA: each side holds
/// exactly one, ESTABLISHED and idle, with the same SPIs, carrying `children` child SAs
/// that mirror each other; nobody saw an IKE SA go down; no traffic was lost.
pub fn assert_one_ike_sa(p: &Pair, children: usize) -> (u64, u64) {
    for (side, n) in [(Side::A, &p.a), (Side::B, &p.b)] {
        let sas = n.ep.ike_sas();
        assert_eq!(sas.len(), 1, "{side:?} holds one IKE SA: {sas:#?}");
        assert_eq!(sas[0].state, "ESTABLISHED", "{side:?}: {sas:#?}");
        assert!(!sas[0].busy, "{side:?} idle: {sas:#?}");
        assert_eq!(sas[0].children.len(), children, "{side:?}: {sas:#?}");
        assert!(
            n.ike_down.is_empty(),
            "{side:?}: no IKE SA down: {:?}",
            n.ike_down
        );
    }
    assert_eq!(ike_spis(p, Side::A), ike_spis(p, Side::B), "same IKE SA");
    assert_eq!(p.a.children.len(), children);
    p.assert_children_match();
    p.assert_no_loss();
    ike_spis(p, Side::A)[0]
}

/// Each side reported exactly one rekey, from its first IKE SA to the one it holds now,
/// and counted one (the redundant SA of a collision is neither reported nor counted).
pub fn assert_rekeyed_once(p: &Pair) {
    for (side, n) in [(Side::A, &p.a), (Side::B, &p.b)] {
        let now = n.ep.ike_sas()[0].id;
        let r = rekeyed(p, side);
        assert_eq!(r.len(), 1, "{side:?}: one IkeRekeyed: {r:?}");
        assert_eq!(r[0].1, now, "{side:?}: to the SA that stays");
        assert_eq!(n.ep.stats().ike_rekeys, 1, "{side:?}");
    }
}

/// The surviving IKE SA works: a child rekey through it completes on both sides.
pub fn assert_usable(p: &mut Pair) {
    let old = p.a.child_spis()[0];
    let now = p.now;
    p.a.ep.rekey_child(now, old.0).unwrap();
    p.settle();
    p.assert_children_match();
    assert_ne!(
        p.a.child_spis()[0],
        old,
        "child rekeyed through the new IKE SA"
    );
    p.assert_no_loss();
}

/// Runs for `d` of virtual time, then until idle.
pub fn run(p: &mut Pair, d: Duration) {
    p.run_for(d);
    p.settle();
}
