//! Connectivity checks between two mediated peers (draft-brunner-ikev2-mediation 5, as
//! strongSwan's `connect_manager.c` runs them): the candidate pairs of one mediated
//! connection, the pacing and retransmission of checks, the answers, and the choice of
//! the pair the direct IKE SA goes to. A leaf: records and pure steps over them; the
//! endpoint feeds it checks and time and acts on what [`Checklist`] reports.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Transmit;
use crate::crypto::mediation::{connect_auth, verify};
use crate::wire::mediation::{ConnectId, ConnectKey, ConnectivityCheck, Endpoint, EndpointKind};
use crate::wire::Identification;

/// Pacing of new checks, and the first retransmission timeouts (charon's ME_INTERVAL).
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(25);
/// Retransmissions sent at the short interval before backing off (ME_BOOST).
const BOOST: u32 = 2;
/// Retransmissions before a pair fails (ME_MAX_RETRANS).
const MAX_RETRANS: u32 = 13;
/// How long the initiator waits after the first success for a better pair
/// (ME_WAIT_TO_FINISH).
pub(crate) const WAIT_TO_FINISH: Duration = Duration::from_millis(1000);
/// A checklist nobody finished is dropped after this long.
pub(crate) const CHECKLIST_LIFETIME: Duration = Duration::from_secs(60);
/// How long checks may run without a success before a peer whose server relays asks
/// for the relay (esprit only; Tailscale's DERP starts relayed at once, charon has no
/// relay at all).
pub(crate) const RELAY_AFTER: Duration = Duration::from_secs(4);
/// Most pairs in one checklist (charon sets no bound; a peer sends at most
/// `wire::mediation::MAX_ENDPOINTS` candidates, peer-reflexive ones come on top).
const MAX_PAIRS: usize = 256;

/// One of our candidates: what we announce, and the local address checks for it leave
/// from (for a server-reflexive candidate, the address behind the NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) endpoint: Endpoint,
    pub(crate) base: SocketAddr,
}

/// Where a pair's check stands (charon's `check_state_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairState {
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

/// A local base and a remote candidate, checked together.
#[derive(Debug, Clone)]
pub(crate) struct CandidatePair {
    /// The check's Message ID: the pair's place after pruning, from 1.
    pub(crate) id: u32,
    pub(crate) priority: u64,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: PairState,
    retransmitted: u32,
    retransmit_at: Option<Instant>,
    request: Vec<u8>,
}

/// The pair priority of ICE (RFC 8445 6.1.2.3) as charon computes it: the controlling
/// side is the initiator.
pub(crate) fn pair_priority(initiator: u32, responder: u32) -> u64 {
    let (pi, pr) = (u64::from(initiator), u64::from(responder));
    (1 << 32) * pi.min(pr) + 2 * pi.max(pr) + u64::from(pi > pr)
}

/// What a checklist asks of the endpoint after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to do yet.
    Pending,
    /// The initiator's checks are over: set the direct IKE SA up on this pair.
    Chosen {
        /// Our address (the base).
        local: SocketAddr,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// Every pair failed.
    Failed,
}

/// The checks of one mediated connection attempt, on either side.
pub(crate) struct Checklist {
    pub(crate) connect_id: ConnectId,
    /// We asked for the connection (the controlling side: we choose the pair and
    /// initiate the direct IKE SA).
    pub(crate) initiator: bool,
    /// The identity of the other peer.
    pub(crate) peer: Identification,
    /// Initiator: the mediated connection and its children to set up.
    pub(crate) conn: Option<(usize, Vec<usize>)>,
    /// The mediation IKE SA the attempt went through.
    pub(crate) via: Option<super::IkeSaId>,
    /// When to ask the server for a relay if no pair has succeeded by then (set when
    /// the server announced ESPRIT_RELAY).
    pub(crate) relay_at: Option<Instant>,
    /// Initiator: a re-check for this relayed IKE SA, which moves to the pair that
    /// passes (nothing is reported when none does).
    pub(crate) recheck: Option<super::IkeSaId>,
    our_key: ConnectKey,
    peer_key: Option<ConnectKey>,
    ours: Vec<Candidate>,
    theirs: Vec<Endpoint>,
    pub(crate) pairs: Vec<CandidatePair>,
    triggered: VecDeque<u32>,
    next_send: Option<Instant>,
    finish_at: Option<Instant>,
    expires: Instant,
    done: bool,
}

impl Checklist {
    /// A checklist before the other side's candidates are known (initiator: until the
    /// relayed ME_CONNECT response).
    pub(crate) fn new(
        now: Instant,
        connect_id: ConnectId,
        initiator: bool,
        peer: Identification,
        our_key: ConnectKey,
        ours: Vec<Candidate>,
    ) -> Self {
        Checklist {
            connect_id,
            initiator,
            peer,
            conn: None,
            via: None,
            relay_at: None,
            recheck: None,
            our_key,
            peer_key: None,
            ours,
            theirs: Vec::new(),
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            next_send: None,
            finish_at: None,
            expires: now + CHECKLIST_LIFETIME,
            done: false,
        }
    }

    /// The candidates we announce in ME_CONNECT.
    pub(crate) fn our_endpoints(&self) -> Vec<Endpoint> {
        self.ours.iter().map(|c| c.endpoint).collect()
    }

    /// The other side's key and candidates arrived: build the pairs and start checking
    /// (charon's `set_initiator_data`/`set_responder_data`, `build_pairs`).
    pub(crate) fn set_peer(&mut self, now: Instant, key: ConnectKey, endpoints: Vec<Endpoint>) {
        self.peer_key = Some(key);
        self.theirs = endpoints;
        let mut pairs: Vec<CandidatePair> = Vec::new();
        for ours in &self.ours {
            for theirs in &self.theirs {
                let Some(remote) = theirs.addr else { continue };
                if ours.base.is_ipv4() != remote.is_ipv4() {
                    continue;
                }
                let (pi, pr) = if self.initiator {
                    (ours.endpoint.priority, theirs.priority)
                } else {
                    (theirs.priority, ours.endpoint.priority)
                };
                insert_by_priority(
                    &mut pairs,
                    CandidatePair::new(pair_priority(pi, pr), ours.base, remote),
                );
            }
        }
        // Prune the lower-priority duplicates of a (local, remote) and number the rest
        // (charon's `prune_pairs`): the number is the checks' Message ID.
        let mut kept: Vec<CandidatePair> = Vec::new();
        for p in pairs {
            if kept.len() < MAX_PAIRS
                && !kept
                    .iter()
                    .any(|k| k.local == p.local && k.remote == p.remote)
            {
                kept.push(p);
            }
        }
        for (i, p) in kept.iter_mut().enumerate() {
            p.id = i as u32 + 1;
        }
        self.pairs = kept;
        self.next_send = Some(now);
        self.expires = now + CHECKLIST_LIFETIME;
    }

    /// The earliest time [`Checklist::on_timeout`] has work.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        [
            self.next_send,
            self.finish_at,
            self.relay_at,
            Some(self.expires),
        ]
        .into_iter()
        .chain(self.pairs.iter().map(|p| p.retransmit_at))
        .flatten()
        .min()
    }

    /// True (once) when it is time to ask for a relay: [`RELAY_AFTER`] passed and no
    /// pair has succeeded.
    pub(crate) fn relay_due(&mut self, now: Instant) -> bool {
        if self.done || self.relay_at.is_none_or(|t| t > now) {
            return false;
        }
        self.relay_at = None;
        !self.pairs.iter().any(|p| p.state == PairState::Succeeded)
    }

    /// True once the checklist has reported its outcome or expired.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Sends the next check, retransmits, and finishes when it is time.
    pub(crate) fn on_timeout(&mut self, now: Instant, out: &mut VecDeque<Transmit>) -> Outcome {
        if self.done {
            return Outcome::Pending;
        }
        if now >= self.expires {
            self.done = true;
            return Outcome::Failed;
        }
        for i in 0..self.pairs.len() {
            let p = &mut self.pairs[i];
            if p.state != PairState::InProgress || p.retransmit_at.is_none_or(|t| t > now) {
                continue;
            }
            p.retransmitted += 1;
            if p.retransmitted > MAX_RETRANS {
                p.state = PairState::Failed;
                p.retransmit_at = None;
                continue;
            }
            out.push_back(Transmit {
                local: p.local,
                remote: p.remote,
                data: p.request.clone(),
            });
            p.retransmit_at = Some(now + retransmit_timeout(p.retransmitted + 1));
        }
        if self.next_send.is_some_and(|t| t <= now) {
            self.next_send = None;
            self.send_next(now, out);
        }
        if self.finish_at.is_some_and(|t| t <= now) {
            return self.finish();
        }
        self.settle(now)
    }

    /// The next triggered pair, else the best waiting one, gets its check (charon's
    /// `sender`); the sender runs every [`CHECK_INTERVAL`] while pairs wait.
    fn send_next(&mut self, now: Instant, out: &mut VecDeque<Transmit>) {
        let mut pick = None;
        while let Some(id) = self.triggered.pop_front() {
            if self.pair(id).is_some_and(|p| p.state == PairState::Waiting) {
                pick = Some(id);
                break;
            }
        }
        let pick = pick.or_else(|| {
            self.pairs
                .iter()
                .find(|p| p.state == PairState::Waiting)
                .map(|p| p.id)
        });
        let Some(id) = pick else { return };
        let endpoint = Endpoint::new(EndpointKind::PeerReflexive, None);
        let auth = connect_auth(id, &self.connect_id, &endpoint, &self.our_key);
        let check = ConnectivityCheck {
            message_id: id,
            response: false,
            connect_id: self.connect_id.clone(),
            endpoint,
            auth,
        };
        let data = check.to_message().to_bytes();
        let Some(p) = self.pairs.iter_mut().find(|p| p.id == id) else {
            return;
        };
        p.state = PairState::InProgress;
        p.retransmitted = 0;
        p.retransmit_at = Some(now + retransmit_timeout(1));
        p.request = data.clone();
        out.push_back(Transmit {
            local: p.local,
            remote: p.remote,
            data,
        });
        self.next_send = Some(now + CHECK_INTERVAL);
    }

    fn pair(&self, id: u32) -> Option<&CandidatePair> {
        self.pairs.iter().find(|p| p.id == id)
    }

    /// A check for this checklist arrived on `local` from `remote`. Checks that do not
    /// verify with the other side's key are dropped (returns false), as charon does.
    pub(crate) fn handle_check(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        check: &ConnectivityCheck,
        out: &mut VecDeque<Transmit>,
    ) -> (bool, Outcome) {
        let Some(key) = &self.peer_key else {
            return (false, Outcome::Pending);
        };
        if self.done || !verify(check, key) {
            return (false, Outcome::Pending);
        }
        if check.response {
            self.handle_response(local, remote, check);
        } else {
            self.handle_request(now, local, remote, check, out);
        }
        (true, self.settle(now))
    }

    fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        check: &ConnectivityCheck,
        out: &mut VecDeque<Transmit>,
    ) {
        // The request's source is a candidate of the peer's, peer-reflexive if new.
        if !self.theirs.iter().any(|e| e.addr == Some(remote)) {
            self.theirs.push(Endpoint {
                priority: check.endpoint.priority,
                kind: EndpointKind::PeerReflexive,
                addr: Some(remote),
            });
        }
        let known = self
            .pairs
            .iter()
            .position(|p| p.local == local && p.remote == remote);
        match known {
            Some(i) => {
                let p = &mut self.pairs[i];
                match p.state {
                    PairState::InProgress | PairState::Waiting | PairState::Failed => {
                        // A triggered check: the path works towards us, try ours back
                        // now instead of waiting for retransmissions.
                        p.state = PairState::Waiting;
                        p.retransmit_at = None;
                        let id = p.id;
                        self.trigger(now, id);
                    }
                    PairState::Succeeded => {}
                }
            }
            None if self.pairs.len() < MAX_PAIRS => {
                let host = EndpointKind::Host.default_priority();
                let (pi, pr) = if self.initiator {
                    (host, check.endpoint.priority)
                } else {
                    (check.endpoint.priority, host)
                };
                let mut p = CandidatePair::new(pair_priority(pi, pr), local, remote);
                p.id = self.pairs.len() as u32 + 1;
                let id = p.id;
                insert_by_priority(&mut self.pairs, p);
                self.trigger(now, id);
            }
            None => {}
        }
        let endpoint = Endpoint {
            priority: check.endpoint.priority,
            kind: EndpointKind::PeerReflexive,
            addr: Some(remote),
        };
        let response = ConnectivityCheck {
            message_id: check.message_id,
            response: true,
            connect_id: self.connect_id.clone(),
            endpoint,
            auth: connect_auth(check.message_id, &self.connect_id, &endpoint, &self.our_key),
        };
        out.push_back(Transmit {
            local,
            remote,
            data: response.to_message().to_bytes(),
        });
    }

    fn trigger(&mut self, now: Instant, id: u32) {
        self.triggered.push_back(id);
        if self.next_send.is_none() {
            self.next_send = Some(now + CHECK_INTERVAL);
        }
    }

    fn handle_response(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        check: &ConnectivityCheck,
    ) {
        let Some(p) = self.pairs.iter_mut().find(|p| p.id == check.message_id) else {
            return;
        };
        // Valid only if it came back along the pair it was sent on.
        if p.local == local && p.remote == remote {
            p.state = PairState::Succeeded;
            p.retransmit_at = None;
        }
        let base = p.local;
        // The address the peer saw us at is a candidate of ours, peer-reflexive if new.
        if let Some(seen) = check.endpoint.addr {
            if !self.ours.iter().any(|c| c.endpoint.addr == Some(seen)) {
                self.ours.push(Candidate {
                    endpoint: Endpoint {
                        priority: check.endpoint.priority,
                        kind: EndpointKind::PeerReflexive,
                        addr: Some(seen),
                    },
                    base,
                });
            }
        }
    }

    /// The checklist's state after a step (charon's `update_checklist_state`): the
    /// initiator finishes [`WAIT_TO_FINISH`] after the first success, or at once when
    /// no pair is left to check.
    fn settle(&mut self, now: Instant) -> Outcome {
        if self.pairs.is_empty() {
            return Outcome::Pending;
        }
        if self.pairs.iter().any(|p| p.state == PairState::Waiting) {
            self.maybe_finish_later(now);
            return Outcome::Pending;
        }
        let in_progress = self.pairs.iter().any(|p| p.state == PairState::InProgress);
        self.maybe_finish_later(now);
        if in_progress {
            return Outcome::Pending;
        }
        if self.initiator {
            self.finish()
        } else {
            // The responder only answers; the initiator sets the direct SA up.
            Outcome::Pending
        }
    }

    fn maybe_finish_later(&mut self, now: Instant) {
        if self.initiator
            && self.finish_at.is_none()
            && self.pairs.iter().any(|p| p.state == PairState::Succeeded)
        {
            self.finish_at = Some(now + WAIT_TO_FINISH);
        }
    }

    /// The best pair that succeeded, or failure (charon's `get_best_valid_pair`).
    fn finish(&mut self) -> Outcome {
        self.done = true;
        match self.pairs.iter().find(|p| p.state == PairState::Succeeded) {
            Some(p) => Outcome::Chosen {
                local: p.local,
                remote: p.remote,
            },
            None => Outcome::Failed,
        }
    }
}

impl CandidatePair {
    fn new(priority: u64, local: SocketAddr, remote: SocketAddr) -> Self {
        CandidatePair {
            id: 0,
            priority,
            local,
            remote,
            state: PairState::Waiting,
            retransmitted: 0,
            retransmit_at: None,
            request: Vec::new(),
        }
    }
}

/// Inserts after every pair of equal or higher priority (charon's
/// `insert_pair_by_priority`): highest first, ties in arrival order.
fn insert_by_priority(pairs: &mut Vec<CandidatePair>, pair: CandidatePair) {
    let at = pairs
        .iter()
        .position(|p| p.priority < pair.priority)
        .unwrap_or(pairs.len());
    pairs.insert(at, pair);
}

/// The timeout before retransmission `n` (from 1): the check interval for the first
/// [`BOOST`], then growing by 1.8 each time (charon's `queue_retransmission`).
fn retransmit_timeout(n: u32) -> Duration {
    if n <= BOOST {
        return CHECK_INTERVAL;
    }
    let ms = 25.0 * 1.8f64.powi((n - BOOST) as i32);
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ep(kind: EndpointKind, a: &str) -> Endpoint {
        Endpoint::new(kind, Some(sa(a)))
    }

    fn key(b: u8) -> ConnectKey {
        ConnectKey::new(&[b; 16]).unwrap()
    }

    fn id() -> Identification {
        Identification {
            id_type: crate::iana::id::FQDN,
            data: b"peer".to_vec(),
        }
    }

    #[test]
    fn priorities_and_retransmit_schedule_are_charons() {
        let host = EndpointKind::Host.default_priority();
        let srflx = EndpointKind::ServerReflexive.default_priority();
        assert_eq!(
            pair_priority(host, srflx),
            (1u64 << 32) * u64::from(srflx) + 2 * u64::from(host) + 1
        );
        assert_eq!(
            pair_priority(srflx, host),
            pair_priority(host, srflx) - 1,
            "the tie-break bit favours the initiator's higher priority"
        );
        let ms: Vec<u128> = (1..=5).map(|n| retransmit_timeout(n).as_millis()).collect();
        assert_eq!(ms, [25, 25, 45, 81, 145]);
    }

    /// Two checklists talking straight to each other, no NAT: all pairs succeed and the
    /// initiator chooses the highest-priority one after WAIT_TO_FINISH.
    #[test]
    fn direct_checks_choose_the_best_pair() {
        let now = Instant::now();
        let cid = ConnectId::new(&[1, 2, 3, 4]).unwrap();
        let a_host = sa("10.0.0.1:4500");
        let b_host = sa("10.0.0.2:4500");
        let mut a = Checklist::new(
            now,
            cid.clone(),
            true,
            id(),
            key(1),
            vec![Candidate {
                endpoint: ep(EndpointKind::Host, "10.0.0.1:4500"),
                base: a_host,
            }],
        );
        let mut b = Checklist::new(
            now,
            cid.clone(),
            false,
            id(),
            key(2),
            vec![
                Candidate {
                    endpoint: ep(EndpointKind::Host, "10.0.0.2:4500"),
                    base: b_host,
                },
                Candidate {
                    endpoint: ep(EndpointKind::ServerReflexive, "203.0.113.2:4500"),
                    base: b_host,
                },
            ],
        );
        a.set_peer(now, key(2), b.our_endpoints());
        b.set_peer(now, key(1), a.our_endpoints());
        assert_eq!(a.pairs.len(), 2);
        assert_eq!(a.pairs[0].remote, b_host, "host pair first");
        assert_eq!(b.pairs.len(), 1, "both of b's bases are the same: pruned");

        let mut t = now;
        let mut outcome = Outcome::Pending;
        for _ in 0..2000 {
            let mut out = VecDeque::new();
            for (list, _) in [(&mut a, 0), (&mut b, 1)] {
                if list.next_timeout().is_some_and(|d| d <= t) {
                    let o = list.on_timeout(t, &mut out);
                    if o != Outcome::Pending {
                        outcome = o;
                    }
                }
            }
            while let Some(tx) = out.pop_front() {
                let msg = Message::parse(&tx.data).unwrap();
                let check = ConnectivityCheck::from_message(&msg).unwrap();
                // Only the direct host addresses are reachable.
                let target = if tx.remote == a_host {
                    &mut a
                } else if tx.remote == b_host {
                    &mut b
                } else {
                    continue;
                };
                let (ok, o) = target.handle_check(t, tx.remote, tx.local, &check, &mut out);
                assert!(ok, "check verifies");
                if o != Outcome::Pending {
                    outcome = o;
                }
            }
            if outcome != Outcome::Pending {
                break;
            }
            t += Duration::from_millis(5);
        }
        assert_eq!(
            outcome,
            Outcome::Chosen {
                local: a_host,
                remote: b_host
            }
        );
        assert!(t >= now + WAIT_TO_FINISH, "waited for a better pair");
        assert!(a.is_done());
    }

    #[test]
    fn forged_or_early_checks_are_dropped() {
        let now = Instant::now();
        let cid = ConnectId::new(&[9; 4]).unwrap();
        let mut b = Checklist::new(now, cid.clone(), false, id(), key(2), Vec::new());
        let endpoint = Endpoint::new(EndpointKind::PeerReflexive, None);
        let check = ConnectivityCheck {
            message_id: 1,
            response: false,
            connect_id: cid.clone(),
            endpoint,
            auth: connect_auth(1, &cid, &endpoint, &key(1)),
        };
        let mut out = VecDeque::new();
        let (a, b_) = (sa("10.0.0.1:4500"), sa("10.0.0.2:4500"));
        assert!(
            !b.handle_check(now, b_, a, &check, &mut out).0,
            "no peer key yet"
        );
        b.set_peer(now, key(7), vec![ep(EndpointKind::Host, "10.0.0.1:4500")]);
        assert!(!b.handle_check(now, b_, a, &check, &mut out).0, "wrong key");
        assert!(out.is_empty());
        b.set_peer(now, key(1), vec![ep(EndpointKind::Host, "10.0.0.1:4500")]);
        assert!(b.handle_check(now, b_, a, &check, &mut out).0);
        assert_eq!(out.len(), 1, "answered");
    }

    #[test]
    fn unanswered_checks_fail_after_the_retransmissions() {
        let now = Instant::now();
        let cid = ConnectId::new(&[5; 4]).unwrap();
        let mut a = Checklist::new(
            now,
            cid,
            true,
            id(),
            key(1),
            vec![Candidate {
                endpoint: ep(EndpointKind::Host, "10.0.0.1:4500"),
                base: sa("10.0.0.1:4500"),
            }],
        );
        a.set_peer(now, key(2), vec![ep(EndpointKind::Host, "10.0.0.2:4500")]);
        let mut sent = 0;
        let mut outcome = Outcome::Pending;
        while let Some(t) = a.next_timeout() {
            let mut out = VecDeque::new();
            outcome = a.on_timeout(t, &mut out);
            sent += out.len();
            if outcome != Outcome::Pending {
                break;
            }
        }
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(sent, 1 + MAX_RETRANS as usize);
    }
}
