//! Child SA rekeys (RFC 7296 1.3.3, 2.8, 2.25) in every order strongSwan's
//! `test_child_rekey.c` walks through, and a few more: each scenario holds every datagram
//! and moves them one by one, then checks both ends (see `rekey_cases_child.md`).

mod common;
#[path = "common/scenario.rs"]
mod scenario;

use std::time::Duration;

use common::{Fate, Filter, Pair, Side};
use ike::endpoint::{DownReason, Event, Transmit};
use scenario::*;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const NO_PFS: &str = "aes128gcm16";
const PFS: &str = "aes128gcm16-x25519";
const PFS_ECP: &str = "aes256gcm16-ecp256";
/// Offers P-256 first, X25519 second.
const PFS_ECP_OR_X: &str = "aes128gcm16-ecp256-x25519";
/// Accepts X25519 only (cheaper than P-256 in debug builds).
const PFS_X_ONLY: &str = PFS;

/// Which of the four nonces of two colliding rekeys is the lowest, as charon's tables
/// put it: a's Ni, b's Ni, b's Nr (answering a), a's Nr (answering b).
const ORDERS: [[u8; 4]; 4] = [
    [0x00, 0xff, 0xff, 0xff],
    [0xff, 0x00, 0xff, 0xff],
    [0xff, 0xff, 0x00, 0xff],
    [0xff, 0xff, 0xff, 0x00],
];

/// Whether a's exchange survives a collision with nonces `o`: the exchange holding the
/// lowest nonce made the redundant SA (RFC 7296 2.8.1), so a wins when that is b's.
fn a_wins(o: [u8; 4]) -> bool {
    o[1] == 0 || o[3] == 0
}

/// A pair up with one child SA, every datagram held from now on.
struct S {
    p: Pair,
    n: Nonces,
    old_a: u32,
    old_b: u32,
}

impl S {
    fn new(esp_a: &str, esp_b: &str) -> S {
        let (mut p, n) = nonce_pair(IKE, esp_a, esp_b);
        up(&mut p);
        let old_a = only_child(&p, Side::A);
        let old_b = only_child(&p, Side::B);
        hold_all(&mut p);
        S { p, n, old_a, old_b }
    }

    fn old(&self, side: Side) -> u32 {
        match side {
            Side::A => self.old_a,
            Side::B => self.old_b,
        }
    }

    /// `side` starts rekeying the first child SA (its request is held).
    fn rekey(&mut self, side: Side) {
        let (now, spi) = (self.p.now, self.old(side));
        self.p.node(side).ep.rekey_child(now, spi).unwrap();
        self.p.run_for(Duration::ZERO);
    }

    /// `side` deletes its child SA `spi_in` (its request is held).
    fn delete(&mut self, side: Side, spi_in: u32) {
        let now = self.p.now;
        self.p.node(side).ep.delete_child(now, spi_in).unwrap();
        self.p.run_for(Duration::ZERO);
    }

    /// Lets retransmission timers fire once (their datagrams are held; those of
    /// requests still held are dropped as duplicates).
    fn wait_retransmit(&mut self) {
        self.p.run_for(Duration::from_millis(2100));
        drop_duplicates(&mut self.p);
    }

    fn deliver(&mut self, m: Msg) {
        deliver(&mut self.p, m);
    }

    /// The child SAs `side` reported up since the tunnel came up, in order.
    fn new_ups(&self, side: Side) -> Vec<(u32, u32, Option<u32>)> {
        ups(&self.p, side).into_iter().skip(1).collect()
    }

    fn stats(&self, side: Side) -> ike::endpoint::Stats {
        node(&self.p, side).ep.stats()
    }

    /// Every CREATE_CHILD_SA and INFORMATIONAL exchange is over.
    fn assert_nothing_held(&self) {
        assert!(self.p.held.is_empty(), "left: {:?}", summary(&self.p));
    }
}

/// A filter that drops the first datagram that is `m` and delivers the rest.
fn drop_first(m: Msg) -> Filter {
    let mut done = false;
    Box::new(move |_, t: &Transmit| {
        if !done && m.matches(t) {
            done = true;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    })
}

/// Asserts that a regular rekey by `i` replaced both old SAs with the one new pair.
fn assert_regular_outcome(s: &S, i: Side) {
    let r = peer(i);
    let new_a = only_child(&s.p, Side::A);
    for side in [i, r] {
        let new = only_child(&s.p, side);
        assert_eq!(
            s.new_ups(side),
            vec![(
                new,
                node(&s.p, side).children[&new].spi_out,
                Some(s.old(side))
            )],
            "{side:?}: one new SA, reported as the rekey of the old one"
        );
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
        assert!(failures(&s.p, side).is_empty());
        assert_eq!(s.stats(side).child_rekeys, 1, "{side:?}");
    }
    assert_settled(&s.p, &[new_a]);
}

// ---------------------------------------------------------------------------------------
// Regular rekeys.

/// A regular rekey by `i`: its request, the answer, its DELETE of the old SA and the
/// answer carrying the peer's DELETE (RFC 7296 1.4.1), nothing else.
fn regular(i: Side, esp: &str) {
    let mut s = S::new(esp, esp);
    let r = peer(i);
    s.rekey(i);
    assert_eq!(summary(&s.p).len(), 1, "one request: {:?}", summary(&s.p));
    s.deliver(ccsa_req(i));
    // The responder has the new SA inbound and outbound, and keeps the old one until
    // the initiator deletes it.
    assert_eq!(node(&s.p, r).children.len(), 2);
    s.deliver(ccsa_resp(r));
    assert_eq!(node(&s.p, i).children.len(), 2);
    // The initiator of the rekey deletes the old SA.
    s.deliver(info_req(i));
    assert_eq!(node(&s.p, r).children.len(), 1);
    s.deliver(info_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
    if esp == NO_PFS {
        assert!(only_suite(&s.p, i).dh.is_none());
    } else {
        assert!(only_suite(&s.p, i).dh.is_some());
    }
}

fn only_suite(p: &Pair, side: Side) -> ike::proposal::EspSuite {
    let spi = only_child(p, side);
    node(p, side).children[&spi].suite
}

/// Which message of a regular rekey the network loses (once).
#[derive(Debug, Clone, Copy)]
enum Lost {
    Request,
    Response,
    Delete,
    DeleteAnswer,
}

/// A regular rekey by `i` where the network loses one message: the retransmission
/// (or, for a lost answer, the cached answer to it) completes the rekey with no second
/// SA negotiated.
fn regular_lost(i: Side, lost: Lost) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    let m = match lost {
        Lost::Request => ccsa_req(i),
        Lost::Response => ccsa_resp(r),
        Lost::Delete => info_req(i),
        Lost::DeleteAnswer => info_resp(r),
    };
    s.p.filter = Some(drop_first(m));
    s.rekey(i);
    s.p.settle();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
    assert_eq!(s.stats(i).retransmits, 1, "{lost:?}: one retransmission");
    assert_eq!(s.stats(r).retransmits, 0);
}

/// The responder prefers another DH group than the initiator's KE: INVALID_KE_PAYLOAD
/// with its group, and the initiator retries with that group and a fresh nonce
/// (RFC 7296 1.3). `lose` drops the retry's answer once.
fn ke_invalid(i: Side, lose: bool) {
    let (esp_a, esp_b) = match i {
        Side::A => (PFS_ECP_OR_X, PFS_X_ONLY),
        Side::B => (PFS_X_ONLY, PFS_ECP_OR_X),
    };
    let mut s = S::new(esp_a, esp_b);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    // Nothing created on the responder for a refused KE.
    assert_eq!(node(&s.p, r).children.len(), 1);
    assert_eq!(node(&s.p, r).ep.stats().child_rekeys, 0);
    s.deliver(ccsa_resp(r));
    assert!(failures(&s.p, i).is_empty(), "not a failure: retried");
    assert_eq!(held(&s.p, ccsa_req(i)), 1, "the retry");
    s.deliver(ccsa_req(i));
    if lose {
        drop_msg(&mut s.p, ccsa_resp(r));
        s.wait_retransmit();
        s.deliver(ccsa_req(i));
    }
    s.deliver(ccsa_resp(r));
    s.deliver(info_req(i));
    s.deliver(info_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
    assert_eq!(
        only_suite(&s.p, i).dh.map(|d| d.id()),
        Some(31),
        "the group the responder asked for"
    );
}

/// Rekeys where the initiator of the rekey is `i`.
macro_rules! per_side {
    ($name:ident, $f:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn from_initiator() {
                ($f)(Side::A)
            }
            #[test]
            fn from_responder() {
                ($f)(Side::B)
            }
        }
    };
}

mod rekey {
    use super::*;

    per_side!(regular_no_pfs, |i| regular(i, NO_PFS));
    per_side!(regular_pfs_x25519, |i| regular(i, PFS));
    per_side!(regular_pfs_ecp256, |i| regular(i, PFS_ECP));
    per_side!(regular_lost_request, |i| regular_lost(i, Lost::Request));
    per_side!(regular_lost_response, |i| regular_lost(i, Lost::Response));
    per_side!(regular_lost_delete, |i| regular_lost(i, Lost::Delete));
    per_side!(regular_lost_delete_answer, |i| regular_lost(
        i,
        Lost::DeleteAnswer
    ));
    per_side!(regular_ke_invalid, |i| ke_invalid(i, false));
    per_side!(regular_ke_invalid_lost_retry_answer, |i| ke_invalid(
        i, true
    ));
}

// ---------------------------------------------------------------------------------------
// What the responder of a rekey does while it waits for the initiator's DELETE.

/// After answering, the responder's soft lifetime asks it to rekey the old SA: it is
/// already replaced, so it sends nothing.
fn responder_soft_expire(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_resp(r));
    let (now, old_r) = (s.p.now, s.old(r));
    s.p.node(r).ep.rekey_child(now, old_r).unwrap();
    s.p.run_for(Duration::ZERO);
    assert_eq!(held(&s.p, ccsa_req(r)), 0, "nothing to rekey");
    s.deliver(info_req(i));
    s.deliver(info_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
}

/// After answering, the responder deletes the old SA itself (its hard lifetime, or a
/// user) while the initiator's DELETE of it is on the way: the two DELETEs cross, each
/// side answers the other's without a Delete payload (RFC 7296 1.4.1).
fn responder_hard_expire(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_resp(r));
    let old_r = s.old(r);
    s.delete(r, old_r);
    s.deliver(info_req(r));
    s.deliver(info_req(i));
    s.deliver(info_resp(i));
    s.deliver(info_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
}

/// After answering, the responder deletes the new SA (a user or a script) before the
/// initiator's DELETE of the old one arrives: both deletes complete and no child is left.
fn responder_deletes_new(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_resp(r));
    let new_r = s.new_ups(r)[0].0;
    s.delete(r, new_r);
    s.deliver(info_req(i));
    s.deliver(info_resp(r));
    s.deliver(info_req(r));
    s.deliver(info_resp(i));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_settled(&s.p, &[]);
    let new_i = s.new_ups(i)[0].0;
    for side in [i, r] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
    }
    assert_eq!(downs(&s.p, r, new_r), vec![DownReason::Terminated]);
    assert_eq!(downs(&s.p, i, new_i), vec![DownReason::DeletedByPeer]);
}

/// The responder deletes the old SA while its answer to the rekey is still on the way,
/// so the DELETE arrives first (charon calls this an incorrect responder): the
/// initiator answers the DELETE but keeps the old SA sending until the rekey's answer,
/// which then replaces it as a plain rekey.
fn responder_delete_before_answer(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    let answer = take(&mut s.p, ccsa_resp(r));
    let old_r = s.old(r);
    s.delete(r, old_r);
    s.deliver(info_req(r));
    inject(&mut s.p, answer);
    s.deliver(info_resp(i));
    // Nothing left to delete: the peer did it.
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
}

/// The initiator's DELETE of the old SA is never answered: the IKE SA dies after its
/// retransmissions, and each of the initiator's child SAs is reported down once.
fn delete_timeout(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_resp(r));
    let new_i = s.new_ups(i)[0].0;
    s.p.held.clear();
    s.p.filter = Some(Box::new(move |_, t: &Transmit| {
        if sender(t) == i {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    assert!(s.p.run_until(Duration::from_secs(600), |p| !node(p, i)
        .ike_down
        .is_empty()));
    assert_eq!(node(&s.p, i).ike_down, vec![DownReason::Timeout]);
    assert_eq!(downs(&s.p, i, s.old(i)).len(), 1, "old SA down once");
    assert_eq!(downs(&s.p, i, new_i), vec![DownReason::Timeout]);
    assert!(node(&s.p, i).children.is_empty());
    assert!(node(&s.p, i).ep.ike_sas().is_empty());
    // Only what the peer sends to the dead end is lost, from the moment it died.
    assert!(s.p.losses.iter().all(|l| l.from == r), "{:?}", s.p.losses);
}

mod rekey_responder {
    use super::*;

    per_side!(ignores_soft_expire, responder_soft_expire);
    per_side!(handles_hard_expire, responder_hard_expire);
    per_side!(deletes_the_new_sa, responder_deletes_new);
    per_side!(delete_before_the_answer, responder_delete_before_answer);
    per_side!(delete_timeout, delete_timeout);
}

// ---------------------------------------------------------------------------------------
// A rekey crossing a delete (RFC 7296 2.25.1).

/// Asserts that neither side holds a child SA any more, that `i` never retries its
/// rekey, and that the child ended as deleted, not rekeyed.
fn assert_deleted_outcome(s: &mut S, i: Side) {
    let r = peer(i);
    // No retry of the rekey later on.
    s.p.run_for(Duration::from_secs(30));
    s.p.settle();
    assert_settled(&s.p, &[]);
    assert!(s.new_ups(i).is_empty() && s.new_ups(r).is_empty());
    assert_eq!(downs(&s.p, i, s.old(i)), vec![DownReason::DeletedByPeer]);
    assert_eq!(downs(&s.p, r, s.old(r)), vec![DownReason::Terminated]);
    assert_eq!(s.stats(i).child_rekeys + s.stats(r).child_rekeys, 0);
}

/// `i` rekeys the child while `r` deletes it; both requests cross. `r` answers the
/// rekey with TEMPORARY_FAILURE, `i` answers the delete with its own Delete and keeps
/// the SA until the TEMPORARY_FAILURE ends its rekey without a retry.
fn delete_crossing(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    let old_r = s.old(r);
    s.delete(r, old_r);
    s.deliver(ccsa_req(i));
    s.deliver(info_req(r));
    // The SA still carries i's traffic: the rekey is not answered yet.
    assert!(node(&s.p, i).children.contains_key(&s.old(i)));
    s.deliver(ccsa_resp(r));
    s.deliver(info_resp(i));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_deleted_outcome(&mut s, i);
}

/// As [`delete_crossing`], but the DELETE arrives only after the TEMPORARY_FAILURE:
/// `i` plans a retry that then finds no SA to rekey.
fn delete_late(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    let old_r = s.old(r);
    s.delete(r, old_r);
    let delete = take(&mut s.p, info_req(r));
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_resp(r));
    inject(&mut s.p, delete);
    s.deliver(info_resp(i));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_deleted_outcome(&mut s, i);
}

/// As [`delete_crossing`], but the rekey request arrives only after the delete is
/// complete: `r` answers CHILD_SA_NOT_FOUND, and `i` ends its rekey.
fn rekey_late(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    let rekey = take(&mut s.p, ccsa_req(i));
    let old_r = s.old(r);
    s.delete(r, old_r);
    s.deliver(info_req(r));
    s.deliver(info_resp(i));
    assert!(node(&s.p, r).children.is_empty());
    inject(&mut s.p, rekey);
    s.deliver(ccsa_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_deleted_outcome(&mut s, i);
}

/// Two children; `i` rekeys the first while `r` deletes the second: the exchanges
/// cross and each completes as if alone.
fn delete_other_child(i: Side) {
    let (mut p, _nonces) = two_child_pair();
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.children.len() == 2
            && p.b.children.len() == 2)
    );
    p.settle();
    hold_all(&mut p);
    let r = peer(i);
    let spi_of = |p: &Pair, side: Side, name: &str| {
        node(p, side)
            .children
            .values()
            .find(|c| c.child == name)
            .unwrap()
            .spi_in
    };
    let (keep_i, keep_r) = (spi_of(&p, i, "net"), spi_of(&p, r, "net"));
    let gone_r = spi_of(&p, r, "net2");
    let gone_i = spi_of(&p, i, "net2");
    let now = p.now;
    p.node(i).ep.rekey_child(now, keep_i).unwrap();
    p.node(r).ep.delete_child(now, gone_r).unwrap();
    p.run_for(Duration::ZERO);
    deliver(&mut p, ccsa_req(i));
    deliver(&mut p, info_req(r));
    deliver(&mut p, ccsa_resp(r));
    deliver(&mut p, info_resp(i));
    deliver(&mut p, info_req(i));
    deliver(&mut p, info_resp(r));
    assert!(p.held.is_empty(), "{:?}", summary(&p));
    resume(&mut p);
    let new_a = only_child(&p, Side::A);
    assert_settled(&p, &[new_a]);
    assert_eq!(downs(&p, i, keep_i), vec![DownReason::Rekeyed]);
    assert_eq!(downs(&p, r, keep_r), vec![DownReason::Rekeyed]);
    assert_eq!(downs(&p, i, gone_i), vec![DownReason::DeletedByPeer]);
    assert_eq!(downs(&p, r, gone_r), vec![DownReason::Terminated]);
    for side in [i, r] {
        let c = &node(&p, side).children[&only_child(&p, side)];
        assert_eq!(c.child, "net");
    }
}

/// The standard pair with a second child SA "net2" on other subnets.
fn two_child_pair() -> (Pair, Nonces) {
    let (mut p, n) = nonce_pair(IKE, PFS, PFS);
    for (node, local, remote) in [
        (&mut p.a, "10.97.1.0/24", "10.97.2.0/24"),
        (&mut p.b, "10.97.2.0/24", "10.97.1.0/24"),
    ] {
        let mut c = node.ep.connections()[0].clone();
        c.children
            .push(common::child("net2", &[local], &[remote], PFS));
        node.ep.add_connection(c);
    }
    (p, n)
}

mod rekey_crossing_delete {
    use super::*;

    per_side!(same_child, delete_crossing);
    per_side!(same_child_delete_late, delete_late);
    per_side!(same_child_rekey_late, rekey_late);
    per_side!(other_child, delete_other_child);
}

// ---------------------------------------------------------------------------------------
// Both ends rekey the same child SA at once (RFC 7296 2.8.1).

/// The SAs a collision created: at a and at b, the one of a's exchange and of b's.
struct Collision {
    a_of_a: u32,
    a_of_b: u32,
    b_of_a: u32,
    b_of_b: u32,
}

impl Collision {
    /// The inbound SPIs at a and b of the SA the winner's exchange made.
    fn winner(&self, a_won: bool) -> (u32, u32) {
        if a_won {
            (self.a_of_a, self.b_of_a)
        } else {
            (self.a_of_b, self.b_of_b)
        }
    }

    fn loser(&self, a_won: bool) -> (u32, u32) {
        self.winner(!a_won)
    }
}

/// Starts a collision: a then b ask to rekey, each with the nonce `o` gives it.
fn both_rekey(s: &mut S, o_a: u8, o_b: u8) {
    s.n.set(Side::A, o_a);
    s.rekey(Side::A);
    s.n.set(Side::B, o_b);
    s.rekey(Side::B);
}

/// Checks the end of a collision that `a_won` by nonces: both sides hold the winner's
/// SA only; the old SA and the redundant one are gone, each reported once as rekeyed.
fn assert_collision_outcome(s: &S, c: &Collision, a_won: bool) {
    let (wa, wb) = c.winner(a_won);
    let (la, lb) = c.loser(a_won);
    assert_eq!(only_child(&s.p, Side::A), wa, "a keeps the winner's SA");
    assert_eq!(only_child(&s.p, Side::B), wb, "b keeps the winner's SA");
    for (side, lost) in [(Side::A, la), (Side::B, lb)] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
        assert_eq!(
            downs(&s.p, side, lost),
            vec![DownReason::Rekeyed],
            "{side:?}: the redundant SA ends as part of the rekey"
        );
        assert!(failures(&s.p, side).is_empty());
        assert_eq!(s.stats(side).child_rekeys, 2, "{side:?}: both negotiated");
    }
    assert_settled(&s.p, &[wa]);
}

/// The four SAs by exchange, from the order each side reported them: `a_first` when a
/// answered b's request before its own exchange completed (and likewise `b_first`).
fn collision_sas(s: &S, a_first: bool, b_first: bool) -> Collision {
    let (ua, ub) = (s.new_ups(Side::A), s.new_ups(Side::B));
    assert_eq!(ua.len(), 2, "a: {ua:?}");
    assert_eq!(ub.len(), 2, "b: {ub:?}");
    let (a_of_b, a_of_a) = if a_first {
        (ua[0].0, ua[1].0)
    } else {
        (ua[1].0, ua[0].0)
    };
    let (b_of_a, b_of_b) = if b_first {
        (ub[0].0, ub[1].0)
    } else {
        (ub[1].0, ub[0].0)
    };
    // The SA of a's exchange at a is the one of a's exchange at b, mirrored.
    assert_eq!(ua.iter().find(|u| u.0 == a_of_a).unwrap().1, b_of_a);
    assert_eq!(ub.iter().find(|u| u.0 == b_of_b).unwrap().1, a_of_b);
    Collision {
        a_of_a,
        a_of_b,
        b_of_a,
        b_of_b,
    }
}

/// Both requests cross, both are answered, both answers arrive: the side whose exchange
/// did not hold the lowest nonce deletes the old SA, the other its own redundant SA.
fn collision(o: [u8; 4], esp_a: &str, esp_b: &str) {
    let mut s = S::new(esp_a, esp_b);
    both_rekey(&mut s, o[0], o[1]);
    s.n.set(Side::B, o[2]);
    s.deliver(ccsa_req(Side::A));
    s.n.set(Side::A, o[3]);
    s.deliver(ccsa_req(Side::B));
    s.deliver(ccsa_resp(Side::B));
    s.deliver(ccsa_resp(Side::A));
    assert_eq!(held(&s.p, info_req(Side::A)), 1, "{:?}", summary(&s.p));
    assert_eq!(held(&s.p, info_req(Side::B)), 1, "{:?}", summary(&s.p));
    s.deliver(info_req(Side::A));
    s.deliver(info_req(Side::B));
    s.deliver(info_resp(Side::B));
    s.deliver(info_resp(Side::A));
    s.assert_nothing_held();
    resume(&mut s.p);
    let c = collision_sas(&s, true, true);
    assert_collision_outcome(&s, &c, a_wins(o));
    if esp_a != esp_b {
        // Each responder picked its own preference: the two SAs differ, and the
        // survivor is the winner's.
        let (of_a, of_b) = (suite_of(&s.p, c.a_of_a), suite_of(&s.p, c.a_of_b));
        assert_ne!(of_a.encr, of_b.encr);
        let won = if a_wins(o) { of_a } else { of_b };
        assert_eq!(only_suite(&s.p, Side::A), won);
    }
}

/// The suite a reported for its child SA `spi_in` when it came up.
fn suite_of(p: &Pair, spi_in: u32) -> ike::proposal::EspSuite {
    p.a.events
        .iter()
        .find_map(|e| match e {
            Event::ChildUp(c) if c.spi_in == spi_in => Some(c.suite),
            _ => None,
        })
        .unwrap()
}

/// Like [`collision`], but b's answer to a's request is late: b completes first and
/// sends its DELETE, which a handles while its own rekey is still open. With `lose`,
/// the answer is lost instead and a's retransmission fetches b's cached answer.
/// With `delete_winner`, b then deletes the surviving SA before the late answer arrives.
fn collision_late_answer(o: [u8; 4], lose: bool, delete_winner: bool) {
    let mut s = S::new(PFS, PFS);
    let a_won = a_wins(o);
    both_rekey(&mut s, o[0], o[1]);
    s.n.set(Side::B, o[2]);
    s.deliver(ccsa_req(Side::A));
    let late = take(&mut s.p, ccsa_resp(Side::B));
    s.n.set(Side::A, o[3]);
    s.deliver(ccsa_req(Side::B));
    s.deliver(ccsa_resp(Side::A));
    // b knows both exchanges: it deletes the old SA when it won, else its redundant one.
    s.deliver(info_req(Side::B));
    s.deliver(info_resp(Side::A));
    if delete_winner {
        let (_, wb) = collision_winner_at_b(&s, a_won);
        s.delete(Side::B, wb);
        s.deliver(info_req(Side::B));
        s.deliver(info_resp(Side::A));
    }
    if lose {
        drop(late);
        s.wait_retransmit();
        s.deliver(ccsa_req(Side::A));
        s.deliver(ccsa_resp(Side::B));
    } else {
        inject(&mut s.p, late);
    }
    while held(&s.p, info_req(Side::A)) > 0 {
        s.deliver(info_req(Side::A));
        s.deliver(info_resp(Side::B));
    }
    s.assert_nothing_held();
    resume(&mut s.p);
    if delete_winner {
        assert_settled(&s.p, &[]);
        for side in [Side::A, Side::B] {
            assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
        }
    } else {
        let c = collision_sas(&s, true, true);
        assert_collision_outcome(&s, &c, a_won);
    }
}

/// A plain collision on a network that loses the first DELETE of the winner (of the
/// old SA) or of the loser (of its redundant SA): the retransmission completes it, and
/// the end is the same.
fn collision_lost_delete(o: [u8; 4], winners: bool) {
    let mut s = S::new(PFS, PFS);
    let a_won = a_wins(o);
    let from = if a_won == winners { Side::A } else { Side::B };
    both_rekey(&mut s, o[0], o[1]);
    s.n.set(Side::B, o[2]);
    s.deliver(ccsa_req(Side::A));
    s.n.set(Side::A, o[3]);
    s.deliver(ccsa_req(Side::B));
    s.p.filter = Some(drop_first(info_req(from)));
    s.p.release(|_| true);
    s.p.settle();
    resume(&mut s.p);
    let c = collision_sas(&s, true, true);
    assert_collision_outcome(&s, &c, a_won);
    assert_eq!(
        s.stats(from).retransmits,
        1,
        "{from:?} retransmitted its DELETE"
    );
    assert_eq!(s.stats(peer(from)).retransmits, 0);
}

/// The winner's SA at b, from the order b reported its SAs (it answered a first).
fn collision_winner_at_b(s: &S, a_won: bool) -> (usize, u32) {
    let ub = s.new_ups(Side::B);
    let i = if a_won { 0 } else { 1 };
    (i, ub[i].0)
}

/// charon's four nonce orders for one scenario.
macro_rules! per_order {
    ($name:ident, $f:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn lowest_is_a_ni() {
                ($f)(ORDERS[0])
            }
            #[test]
            fn lowest_is_b_ni() {
                ($f)(ORDERS[1])
            }
            #[test]
            fn lowest_is_b_nr() {
                ($f)(ORDERS[2])
            }
            #[test]
            fn lowest_is_a_nr() {
                ($f)(ORDERS[3])
            }
        }
    };
}

mod rekey_collision {
    use super::*;

    per_order!(no_pfs, |o| collision(o, NO_PFS, NO_PFS));
    per_order!(pfs, |o| collision(o, PFS, PFS));
    per_order!(different_suites, |o| collision(
        o,
        "aes256gcm16-x25519,aes128gcm16-x25519",
        "aes128gcm16-x25519,aes256gcm16-x25519"
    ));
    per_order!(late_answer, |o| collision_late_answer(o, false, false));
    per_order!(late_answer_winner_deleted, |o| collision_late_answer(
        o, false, true
    ));
    per_order!(lost_answer, |o| collision_late_answer(o, true, false));
    per_order!(lost_winner_delete, |o| collision_lost_delete(o, true));
    per_order!(lost_loser_delete, |o| collision_lost_delete(o, false));
}

/// `i` rekeys; `r` answers, then deletes the new SA before its answer reaches `i`: `i`
/// answers the DELETE of an SA it does not know yet, and when the answer comes, brings
/// the new SA up and down at once and deletes the old one. No child is left.
fn delete_new_before_answer(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    let answer = take(&mut s.p, ccsa_resp(r));
    let new_r = s.new_ups(r)[0].0;
    s.delete(r, new_r);
    s.deliver(info_req(r));
    s.deliver(info_resp(i));
    inject(&mut s.p, answer);
    s.deliver(info_req(i));
    s.deliver(info_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    assert_settled(&s.p, &[]);
    let new_i = s.new_ups(i)[0].0;
    assert_eq!(downs(&s.p, i, new_i), vec![DownReason::DeletedByPeer]);
    assert_eq!(downs(&s.p, r, new_r), vec![DownReason::Terminated]);
    for side in [i, r] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
    }
}

mod rekey_delete_before_answer {
    use super::*;

    per_side!(new_sa, delete_new_before_answer);
}

// ---------------------------------------------------------------------------------------
// Collisions that one side does not see: its rekey request arrives late (RFC 7296 2.25).

/// How a's late rekey request meets b's completed rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    /// It reaches b while b's DELETE of the old SA is out: TEMPORARY_FAILURE, which a
    /// gets before b's DELETE.
    BeforeDelete,
    /// The same, but b's DELETE reaches a before the TEMPORARY_FAILURE.
    AfterDelete,
    /// It reaches b after the DELETE completed: CHILD_SA_NOT_FOUND.
    AfterDeleteDone,
    /// As `AfterDeleteDone`, and b deleted the new SA too meanwhile.
    AfterNewDeleted,
}

/// Both rekey; a's request is held (`lost`: dropped, then retransmitted) while b's
/// exchange completes without b seeing a collision. b's SA survives whatever the
/// nonces (a's rekey is refused), and a never retries.
/// `o`: the first bytes of a's Ni, b's Ni and a's Nr (answering b).
fn late_request(o: [u8; 3], late: Late, lost: bool) {
    let mut s = S::new(PFS, PFS);
    both_rekey(&mut s, o[0], o[1]);
    let req_a = take(&mut s.p, ccsa_req(Side::A));
    s.n.set(Side::A, o[2]);
    s.deliver(ccsa_req(Side::B));
    s.deliver(ccsa_resp(Side::A));
    // b saw no collision: it deletes the old SA.
    assert_eq!(held(&s.p, info_req(Side::B)), 1);
    let send_a = |s: &mut S| {
        if lost {
            s.wait_retransmit();
            s.deliver(ccsa_req(Side::A));
        } else {
            inject(&mut s.p, req_a.clone());
        }
    };
    match late {
        Late::BeforeDelete | Late::AfterDelete => {
            send_a(&mut s);
            if late == Late::BeforeDelete {
                s.deliver(ccsa_resp(Side::B));
                s.deliver(info_req(Side::B));
            } else {
                s.deliver(info_req(Side::B));
                s.deliver(ccsa_resp(Side::B));
            }
            s.deliver(info_resp(Side::A));
        }
        Late::AfterDeleteDone | Late::AfterNewDeleted => {
            s.deliver(info_req(Side::B));
            s.deliver(info_resp(Side::A));
            if late == Late::AfterNewDeleted {
                let new_b = only_child(&s.p, Side::B);
                s.delete(Side::B, new_b);
                s.deliver(info_req(Side::B));
                s.deliver(info_resp(Side::A));
            }
            send_a(&mut s);
            s.deliver(ccsa_resp(Side::B));
        }
    }
    s.assert_nothing_held();
    resume(&mut s.p);
    s.p.run_for(Duration::from_secs(30));
    s.p.settle();
    // a answered b's rekey only: one SA each, b's.
    let (ua, ub) = (s.new_ups(Side::A), s.new_ups(Side::B));
    assert_eq!(ua.len(), 1, "{ua:?}");
    assert_eq!(ub.len(), 1, "{ub:?}");
    assert_eq!(ua[0].1, ub[0].0, "mirrored");
    if late == Late::AfterNewDeleted {
        assert_settled(&s.p, &[]);
        assert_eq!(downs(&s.p, Side::B, ub[0].0), vec![DownReason::Terminated]);
        assert_eq!(
            downs(&s.p, Side::A, ua[0].0),
            vec![DownReason::DeletedByPeer]
        );
    } else {
        assert_settled(&s.p, &[ua[0].0]);
    }
    for side in [Side::A, Side::B] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
        assert!(failures(&s.p, side).is_empty(), "{side:?}");
        assert_eq!(s.stats(side).child_rekeys, 1, "{side:?}");
    }
}

/// charon's three nonce orders for a late request: a's Ni, b's Ni or a's Nr lowest.
macro_rules! per_order3 {
    ($name:ident, $f:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn lowest_is_a_ni() {
                ($f)([0x00, 0xff, 0xff])
            }
            #[test]
            fn lowest_is_b_ni() {
                ($f)([0xff, 0x00, 0xff])
            }
            #[test]
            fn lowest_is_a_nr() {
                ($f)([0xff, 0xff, 0x00])
            }
        }
    };
}

mod rekey_collision_late_request {
    use super::*;

    per_order3!(temp_fail_before_delete, |o| late_request(
        o,
        Late::BeforeDelete,
        false
    ));
    per_order3!(temp_fail_after_delete, |o| late_request(
        o,
        Late::AfterDelete,
        false
    ));
    per_order3!(not_found, |o| late_request(o, Late::AfterDeleteDone, false));
    per_order3!(not_found_new_deleted, |o| late_request(
        o,
        Late::AfterNewDeleted,
        false
    ));
    per_order3!(lost_temp_fail_before_delete, |o| late_request(
        o,
        Late::BeforeDelete,
        true
    ));
    per_order3!(lost_temp_fail_after_delete, |o| late_request(
        o,
        Late::AfterDelete,
        true
    ));
}

// ---------------------------------------------------------------------------------------
// Collisions after INVALID_KE_PAYLOAD, and a loser that deletes the old SA anyway.

/// a offers P-256 first, b takes X25519 only. Both rekey: b refuses a's KE, a answers
/// b's request, then retries with X25519 and a fresh nonce, which b, still rekeying,
/// answers: a collision of a's retry with b's rekey, settled by the four nonces
/// `o` (a's retried Ni, b's Ni, b's Nr, a's Nr).
fn ke_invalid_collision(o: [u8; 4]) {
    let mut s = S::new(PFS_ECP_OR_X, PFS_X_ONLY);
    both_rekey(&mut s, 0x80, o[1]);
    s.deliver(ccsa_req(Side::A));
    s.n.set(Side::A, o[3]);
    s.deliver(ccsa_req(Side::B));
    s.n.set(Side::A, o[0]);
    s.deliver(ccsa_resp(Side::B));
    assert_eq!(held(&s.p, ccsa_req(Side::A)), 1, "a's retry");
    s.n.set(Side::B, o[2]);
    s.deliver(ccsa_req(Side::A));
    s.deliver(ccsa_resp(Side::A));
    s.deliver(ccsa_resp(Side::B));
    deliver_in_order(&mut s.p);
    resume(&mut s.p);
    let c = collision_sas(&s, true, true);
    assert_collision_outcome(&s, &c, a_wins(o));
    for side in [Side::A, Side::B] {
        assert_eq!(only_suite(&s.p, side).dh.map(|d| d.id()), Some(31));
    }
}

/// As [`ke_invalid_collision`], but a's retry arrives after b completed its rekey
/// (b saw no collision, its first request having been refused): TEMPORARY_FAILURE,
/// after b's DELETE of the old SA. b's SA survives.
/// `o`: a's retried Ni, b's Ni, a's Nr.
fn ke_invalid_late_retry(o: [u8; 3]) {
    let mut s = S::new(PFS_ECP_OR_X, PFS_X_ONLY);
    both_rekey(&mut s, 0x80, o[1]);
    s.deliver(ccsa_req(Side::A));
    s.n.set(Side::A, o[2]);
    s.deliver(ccsa_req(Side::B));
    s.n.set(Side::A, o[0]);
    s.deliver(ccsa_resp(Side::B));
    let retry = take(&mut s.p, ccsa_req(Side::A));
    s.deliver(ccsa_resp(Side::A));
    assert_eq!(held(&s.p, info_req(Side::B)), 1, "b deletes the old SA");
    inject(&mut s.p, retry);
    s.deliver(info_req(Side::B));
    s.deliver(ccsa_resp(Side::B));
    s.deliver(info_resp(Side::A));
    s.assert_nothing_held();
    resume(&mut s.p);
    let (ua, ub) = (s.new_ups(Side::A), s.new_ups(Side::B));
    assert_eq!((ua.len(), ub.len()), (1, 1), "{ua:?} {ub:?}");
    assert_settled(&s.p, &[ua[0].0]);
    for side in [Side::A, Side::B] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
        assert!(failures(&s.p, side).is_empty());
    }
}

/// A collision that a wins (`o` puts the lowest nonce in b's exchange), where b's
/// answer to a is late and b, besides deleting its redundant SA, also deletes the old
/// SA (which is a's to delete; charon's hypothetical incorrect responder). a takes the
/// DELETE of the old SA as the end of the collision and its late answer completes it.
fn collision_loser_deletes_old(o: [u8; 4]) {
    assert!(a_wins(o));
    let mut s = S::new(PFS, PFS);
    both_rekey(&mut s, o[0], o[1]);
    s.n.set(Side::B, o[2]);
    s.deliver(ccsa_req(Side::A));
    let late = take(&mut s.p, ccsa_resp(Side::B));
    s.n.set(Side::A, o[3]);
    s.deliver(ccsa_req(Side::B));
    s.deliver(ccsa_resp(Side::A));
    let old_b = s.old(Side::B);
    s.delete(Side::B, old_b);
    // b's DELETE of its redundant SA, then of the old one.
    s.deliver(info_req(Side::B));
    s.deliver(info_resp(Side::A));
    s.deliver(info_req(Side::B));
    inject(&mut s.p, late);
    s.deliver(info_resp(Side::A));
    s.assert_nothing_held();
    resume(&mut s.p);
    let c = collision_sas(&s, true, true);
    let (wa, wb) = c.winner(true);
    assert_eq!(only_child(&s.p, Side::B), wb);
    assert_settled(&s.p, &[wa]);
    for side in [Side::A, Side::B] {
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
    }
}

mod rekey_collision_ke_invalid {
    use super::*;

    per_order!(retry_collides, ke_invalid_collision);
    per_order3!(late_retry, ke_invalid_late_retry);
}

mod rekey_collision_loser_deletes_old {
    use super::*;

    #[test]
    fn lowest_is_b_ni() {
        collision_loser_deletes_old(ORDERS[1])
    }

    #[test]
    fn lowest_is_a_nr() {
        collision_loser_deletes_old(ORDERS[3])
    }
}

// ---------------------------------------------------------------------------------------
// A child rekey crossing an IKE SA rekey or delete (RFC 7296 2.25.2).

/// `i` rekeys the child while `r` rekeys the IKE SA: each answers the other with
/// TEMPORARY_FAILURE; the child rekey is retried first, then the IKE rekey, and both
/// complete.
fn ike_rekey_crossing(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    let (now, id) = (s.p.now, node(&s.p, r).ep.ike_sas()[0].id);
    s.p.node(r).ep.rekey_ike(now, id).unwrap();
    s.p.run_for(Duration::ZERO);
    s.deliver(ccsa_req(i));
    s.deliver(ccsa_req(r));
    s.deliver(ccsa_resp(r));
    s.deliver(ccsa_resp(i));
    s.assert_nothing_held();
    assert_eq!(node(&s.p, i).children.len(), 1, "nothing negotiated yet");
    s.p.filter = None;
    s.p.run_for(Duration::from_secs(30));
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
    for side in [i, r] {
        assert_eq!(s.stats(side).ike_rekeys, 1, "{side:?}");
    }
    assert_ne!(
        node(&s.p, r).ep.ike_sas()[0].id,
        id,
        "the IKE SA was rekeyed"
    );
}

/// `i` rekeys the child while `r` deletes the IKE SA: `r` answers TEMPORARY_FAILURE,
/// `i` answers the delete and is gone before that answer comes; every SA ends once.
fn ike_delete_crossing(i: Side) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    s.rekey(i);
    let now = s.p.now;
    let conn = node(&s.p, r).ep.connections()[0].name.clone();
    s.p.node(r).ep.terminate(now, &conn).unwrap();
    s.p.run_for(Duration::ZERO);
    s.deliver(ccsa_req(i));
    s.deliver(info_req(r));
    s.deliver(ccsa_resp(r));
    s.deliver(info_resp(i));
    s.assert_nothing_held();
    resume(&mut s.p);
    for side in [i, r] {
        assert!(node(&s.p, side).ep.ike_sas().is_empty(), "{side:?}");
        assert!(node(&s.p, side).children.is_empty(), "{side:?}");
        assert!(s.new_ups(side).is_empty());
        assert_eq!(s.stats(side).child_rekeys, 0);
    }
    assert_eq!(node(&s.p, i).ike_down, vec![DownReason::DeletedByPeer]);
    assert_eq!(node(&s.p, r).ike_down, vec![DownReason::Terminated]);
    assert_eq!(downs(&s.p, i, s.old(i)), vec![DownReason::DeletedByPeer]);
    assert_eq!(downs(&s.p, r, s.old(r)), vec![DownReason::Terminated]);
    s.p.assert_no_loss();
}

mod rekey_crossing_ike {
    use super::*;

    per_side!(ike_rekey, ike_rekey_crossing);
    per_side!(ike_delete, ike_delete_crossing);
}

// ---------------------------------------------------------------------------------------
// A rekey the responder refuses.

/// What the responder's new configuration refuses.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Its ESP proposals no longer hold the SA's suite: NO_PROPOSAL_CHOSEN.
    Proposal,
    /// Its selectors no longer cover the SA's: TS_UNACCEPTABLE.
    Selectors,
}

/// `r` is reconfigured after the SA came up, and refuses `i`'s rekey: `i` reports the
/// failure and both keep the old SA, which carries on as if nothing happened; `i`
/// tries again 8 s later.
fn refused(i: Side, why: Refusal) {
    let mut s = S::new(PFS, PFS);
    let r = peer(i);
    let original = node(&s.p, r).ep.connections()[0].clone();
    let mut c = original.clone();
    let ch = &mut c.children[0];
    match why {
        Refusal::Proposal => {
            ch.esp_proposals = ike::proposal::ProposalSet::parse_esp("aes256gcm16-x25519").unwrap()
        }
        Refusal::Selectors => {
            for ts in [&mut ch.local_ts, &mut ch.remote_ts] {
                *ts = vec![ike::ts::parse_cidr("10.99.0.0/24").unwrap()];
            }
        }
    }
    s.p.node(r).ep.add_connection(c);
    s.rekey(i);
    s.deliver(ccsa_req(i));
    assert_eq!(node(&s.p, r).children.len(), 1, "nothing made");
    s.deliver(ccsa_resp(r));
    s.assert_nothing_held();
    resume(&mut s.p);
    let want = match why {
        Refusal::Proposal => DownReason::NoProposalChosen,
        Refusal::Selectors => DownReason::TsUnacceptable,
    };
    assert_eq!(failures(&s.p, i), vec![want.clone()]);
    assert!(failures(&s.p, r).is_empty());
    assert_settled(&s.p, &[s.old_a]);
    // Retried a little later, and refused again.
    s.p.run_for(Duration::from_secs(6));
    s.p.settle();
    assert_eq!(failures(&s.p, i), vec![want.clone(), want]);
    assert_settled(&s.p, &[s.old_a]);
    for side in [i, r] {
        assert!(s.new_ups(side).is_empty());
        assert_eq!(s.stats(side).child_rekeys, 0);
    }
    // The old SA can still be rekeyed once the configurations agree again.
    s.p.node(r).ep.add_connection(original);
    let (now, old_i) = (s.p.now, s.old(i));
    s.p.node(i).ep.rekey_child(now, old_i).unwrap();
    resume(&mut s.p);
    let new_a = only_child(&s.p, Side::A);
    assert_settled(&s.p, &[new_a]);
    for side in [i, r] {
        let new = only_child(&s.p, side);
        assert_eq!(s.new_ups(side).len(), 1);
        assert_eq!(
            s.new_ups(side)[0].2,
            Some(s.old(side)),
            "{side:?} {new:08x}"
        );
        assert_eq!(downs(&s.p, side, s.old(side)), vec![DownReason::Rekeyed]);
    }
}

/// A regular rekey by `i` where the network delivers every message twice: the
/// duplicate requests get the cached answers, the duplicate answers are dropped.
fn regular_duplicated(i: Side) {
    let mut s = S::new(PFS, PFS);
    s.p.filter = Some(Box::new(|_, _| Fate::Duplicate));
    s.rekey(i);
    resume(&mut s.p);
    assert_regular_outcome(&s, i);
}

mod rekey_refused {
    use super::*;

    per_side!(no_proposal_chosen, |i| refused(i, Refusal::Proposal));
    per_side!(ts_unacceptable, |i| refused(i, Refusal::Selectors));
}

mod rekey_duplicated {
    use super::*;

    per_side!(every_message, regular_duplicated);
}
