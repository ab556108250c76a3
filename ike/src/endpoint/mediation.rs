//! IKE mediation records (draft-brunner-ikev2-mediation): what a mediation IKE SA keeps
//! (`MeSa`), and what the endpoint keeps across SAs (`MediationState`): the server's
//! registry of peers by identity (strongSwan's `mediation_manager.c`), the callbacks
//! peers asked for, the connectivity checklists by connect ID, and esprit's relay
//! sessions (the server's record of which attempts both peers want relayed). A leaf.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::checks::{Candidate, Checklist};
use super::IkeSaId;
use crate::wire::mediation::{ConnectId, Endpoint, EndpointKind};
use crate::wire::relay::RelayToken;
use crate::wire::Identification;

/// What an IKE SA of a mediation connection keeps, on the peer or the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MeSa {
    /// Peer: the address the server saw us at (its ME_ENDPOINT answer in IKE_AUTH).
    pub(crate) server_reflexive: Option<SocketAddr>,
    /// Server: the identity this peer is registered under.
    pub(crate) registered: Option<Identification>,
    /// Both ends announced ESPRIT_RELAY in IKE_AUTH: the server relays for this peer.
    pub(crate) relay: bool,
}

impl MeSa {
    /// Our candidates for a mediated connection through the SA at `local`: the host
    /// address (when known), the other host addresses the engine gave (`hosts`, of the
    /// same family, on `local`'s port), and the server-reflexive one based on `local`.
    pub(crate) fn candidates(&self, local: SocketAddr, hosts: &[IpAddr]) -> Vec<Candidate> {
        let mut out = Vec::new();
        if !local.ip().is_unspecified() {
            out.push(Candidate {
                endpoint: Endpoint::new(EndpointKind::Host, Some(local)),
                base: local,
            });
        }
        for ip in hosts
            .iter()
            .filter(|ip| ip.is_ipv4() == local.is_ipv4() && **ip != local.ip())
        {
            let host = SocketAddr::new(*ip, local.port());
            out.push(Candidate {
                endpoint: Endpoint::new(EndpointKind::Host, Some(host)),
                base: host,
            });
        }
        if let Some(srflx) = self.server_reflexive.filter(|s| *s != local) {
            out.push(Candidate {
                endpoint: Endpoint::new(EndpointKind::ServerReflexive, Some(srflx)),
                base: local,
            });
        }
        out
    }
}

/// What an outstanding ME_CONNECT request needs when its response comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeConnectRequest {
    /// ID_PEER of the request.
    pub(crate) peer: Identification,
    /// Our own connection attempt (a peer asking the server): its connect ID. `None`
    /// for answers and for requests a server relays.
    pub(crate) attempt: Option<ConnectId>,
}

/// A peer waiting for another to register (ME_CALLBACK).
#[derive(Debug, Clone)]
struct Callback {
    wanted: Identification,
    requester_sa: IkeSaId,
}

/// Server: one attempt it relayed an ME_CONNECT for, which a relay may carry.
#[derive(Debug, Clone)]
struct RelaySession {
    /// The requester's and the asked peer's mediation SAs.
    sas: [IkeSaId; 2],
    /// Which of them asked for a relay.
    asked: [bool; 2],
    /// Their bind tokens, once both asked.
    tokens: Option<[RelayToken; 2]>,
    created: Instant,
}

/// The server's answer to an ESPRIT_RELAY_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayAsk {
    /// No such attempt between this SA and another, or the other peer cannot relay.
    Refuse,
    /// Noted; the other peer has not asked yet.
    Waiting,
    /// This request completed the pair: the relay is wanted (once per session).
    Both,
}

/// Peer: an attempt the server refused (the peer was not registered) after we asked
/// for ME_CALLBACK: redone when the server calls back.
#[derive(Debug, Clone)]
pub(crate) struct Awaiting {
    peer: Identification,
    via: IkeSaId,
    /// The mediated connection and its children.
    pub(crate) conn: usize,
    pub(crate) children: Vec<usize>,
}

/// The endpoint's mediation state, shared by every IKE SA's handlers.
#[derive(Default)]
pub(crate) struct MediationState {
    /// Server: registered peer identity -> its mediation IKE SA.
    registry: HashMap<Identification, IkeSaId>,
    callbacks: Vec<Callback>,
    /// Both peers: checks by connect ID.
    pub(crate) checklists: HashMap<ConnectId, Checklist>,
    /// Server: attempts it relayed, by connect ID.
    sessions: HashMap<ConnectId, RelaySession>,
    /// Server: mediation SAs whose peers announced ESPRIT_RELAY.
    relay_capable: HashSet<IkeSaId>,
    /// Peer: attempts waiting for the server's callback.
    awaiting: Vec<Awaiting>,
    /// Peer: our host addresses besides a mediation SA's own, for candidates (the
    /// engine gathers them; at most [`MAX_HOSTS`]).
    pub(crate) hosts: Vec<IpAddr>,
    /// Peer (responder of the direct IKE SA): the relay address of each relayed
    /// attempt, to tell a relayed path from a direct one when that IKE SA comes up.
    pub(crate) relayed: HashMap<ConnectId, (SocketAddr, RelayToken)>,
}

/// Most callbacks kept; the oldest goes first.
const MAX_CALLBACKS: usize = 1024;
/// Most host addresses offered as candidates.
pub(crate) const MAX_HOSTS: usize = 8;
/// Most relay sessions (and relayed addresses) kept; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

impl MediationState {
    /// Registers `peer` at the server as reachable through `sa` (a re-registration
    /// replaces the old SA). Returns the SAs of peers that asked to be called back for
    /// `peer`.
    pub(crate) fn register(&mut self, peer: Identification, sa: IkeSaId) -> Vec<IkeSaId> {
        let peer = canonical(&peer);
        let mut due = Vec::new();
        self.callbacks.retain(|c| {
            if c.wanted == peer {
                due.push(c.requester_sa);
                false
            } else {
                true
            }
        });
        self.registry.insert(peer, sa);
        due
    }

    /// Forgets `sa`'s registration as `peer` and its callbacks, when it goes down.
    pub(crate) fn unregister(&mut self, peer: &Identification, sa: IkeSaId) {
        let peer = canonical(peer);
        if self.registry.get(&peer) == Some(&sa) {
            self.registry.remove(&peer);
        }
        self.callbacks.retain(|c| c.requester_sa != sa);
        self.relay_capable.remove(&sa);
        self.sessions.retain(|_, s| !s.sas.contains(&sa));
    }

    /// Peer: connection `conn`'s attempt through `via` waits for `peer` to register
    /// (the server will call back). One entry per connection, at most
    /// [`MAX_CALLBACKS`].
    pub(crate) fn await_callback(
        &mut self,
        peer: &Identification,
        via: IkeSaId,
        conn: usize,
        children: Vec<usize>,
    ) {
        self.forget_awaiting(conn);
        if self.awaiting.len() >= MAX_CALLBACKS {
            self.awaiting.remove(0);
        }
        self.awaiting.push(Awaiting {
            peer: canonical(peer),
            via,
            conn,
            children,
        });
    }

    /// Peer: a new attempt for `conn` replaces one that waits for a callback.
    pub(crate) fn forget_awaiting(&mut self, conn: usize) {
        self.awaiting.retain(|a| a.conn != conn);
    }

    /// Peer: the server called back on `via` for `peer`: the attempts to redo.
    pub(crate) fn take_callbacks(&mut self, peer: &Identification, via: IkeSaId) -> Vec<Awaiting> {
        let peer = canonical(peer);
        let (due, keep) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|a| a.peer == peer && a.via == via);
        self.awaiting = keep;
        due
    }

    /// Server: the peer of `sa` announced ESPRIT_RELAY.
    pub(crate) fn relay_capable(&mut self, sa: IkeSaId) {
        self.relay_capable.insert(sa);
    }

    /// Server: an ME_CONNECT with `cid` was relayed from `requester` to `target`.
    pub(crate) fn note_session(
        &mut self,
        now: Instant,
        cid: ConnectId,
        requester: IkeSaId,
        target: IkeSaId,
    ) {
        if self.sessions.contains_key(&cid) {
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(
            cid,
            RelaySession {
                sas: [requester, target],
                asked: [false; 2],
                tokens: None,
                created: now,
            },
        );
    }

    /// Server: the peer of `sa` asks to relay attempt `cid`; `tokens` are fresh bind
    /// tokens, kept when this request completes the pair (for `sa`, then the other).
    pub(crate) fn ask_relay(
        &mut self,
        cid: &ConnectId,
        sa: IkeSaId,
        tokens: [RelayToken; 2],
    ) -> RelayAsk {
        let Some(s) = self.sessions.get_mut(cid) else {
            return RelayAsk::Refuse;
        };
        let Some(me) = s.sas.iter().position(|x| *x == sa) else {
            return RelayAsk::Refuse;
        };
        let other = s.sas[1 - me];
        if !self.relay_capable.contains(&sa) || !self.relay_capable.contains(&other) {
            return RelayAsk::Refuse;
        }
        s.asked[me] = true;
        if !(s.asked[0] && s.asked[1]) || s.tokens.is_some() {
            return RelayAsk::Waiting;
        }
        s.tokens = Some(tokens);
        RelayAsk::Both
    }

    /// Server: the bind tokens of session `cid` and its peers' identities, displayed,
    /// in the session's order (requester first).
    pub(crate) fn session_tokens(
        &self,
        cid: &ConnectId,
    ) -> Option<([RelayToken; 2], [Identification; 2])> {
        let s = self.sessions.get(cid)?;
        let id_of = |sa: IkeSaId| {
            self.registry
                .iter()
                .find(|(_, v)| **v == sa)
                .map(|(k, _)| k.clone())
        };
        Some((s.tokens?, [id_of(s.sas[0])?, id_of(s.sas[1])?]))
    }

    /// Server: a relay for `cid` is open (or could not be): each SA with its token.
    /// The session is over.
    pub(crate) fn take_session(&mut self, cid: &ConnectId) -> Option<[(IkeSaId, RelayToken); 2]> {
        let s = self.sessions.remove(cid)?;
        let t = s.tokens?;
        Some([(s.sas[0], t[0]), (s.sas[1], t[1])])
    }

    /// Peer: attempt `cid` goes through the relay at `relay`.
    pub(crate) fn note_relayed(&mut self, cid: ConnectId, relay: SocketAddr, token: RelayToken) {
        if self.relayed.len() >= MAX_SESSIONS {
            self.relayed.clear();
        }
        self.relayed.insert(cid, (relay, token));
    }

    /// The mediation SA `peer` is registered through.
    pub(crate) fn lookup(&self, peer: &Identification) -> Option<IkeSaId> {
        self.registry.get(&canonical(peer)).copied()
    }

    /// Calls `requester_sa` back when `wanted` registers.
    pub(crate) fn add_callback(&mut self, wanted: Identification, requester_sa: IkeSaId) {
        let wanted = canonical(&wanted);
        if self
            .callbacks
            .iter()
            .any(|c| c.wanted == wanted && c.requester_sa == requester_sa)
        {
            return;
        }
        if self.callbacks.len() >= MAX_CALLBACKS {
            self.callbacks.remove(0);
        }
        self.callbacks.push(Callback {
            wanted,
            requester_sa,
        });
    }

    /// Registered peers and their SAs, for status.
    pub(crate) fn registered(&self) -> impl Iterator<Item = (&Identification, IkeSaId)> {
        self.registry.iter().map(|(k, v)| (k, *v))
    }

    /// The earliest checklist deadline (a scan: checklists are few and short-lived).
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.checklists
            .values()
            .filter_map(Checklist::next_timeout)
            .min()
    }
}

/// An identity in the one encoding we give it, so that a DN registered from IDi and
/// asked for in ID_PEER compare equal however each peer spelled it.
fn canonical(id: &Identification) -> Identification {
    crate::auth::Identity::from_wire(id)
        .map(|i| i.to_wire())
        .unwrap_or_else(|_| id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    fn id(s: &str) -> Identification {
        Identity::parse(s).unwrap().to_wire()
    }

    #[test]
    fn registry_callbacks_and_departures() {
        let mut m = MediationState::default();
        let edge1 = id("C=CN, O=Local Cluster, CN=edge1");
        let edge2 = id("C=CN, O=Local Cluster, CN=edge2");
        assert!(m.register(edge1.clone(), IkeSaId(1)).is_empty());
        // edge1 asks for edge2 with ME_CALLBACK before edge2 is there.
        assert_eq!(m.lookup(&edge2), None);
        m.add_callback(edge2.clone(), IkeSaId(1));
        m.add_callback(edge2.clone(), IkeSaId(1));
        assert_eq!(m.register(edge2.clone(), IkeSaId(2)), [IkeSaId(1)]);
        assert_eq!(m.lookup(&edge2), Some(IkeSaId(2)));
        // A re-registration replaces the SA; the old SA's departure then changes nothing.
        m.register(edge2.clone(), IkeSaId(3));
        m.unregister(&edge2, IkeSaId(2));
        assert_eq!(m.lookup(&edge2), Some(IkeSaId(3)));
        m.unregister(&edge2, IkeSaId(3));
        assert_eq!(m.lookup(&edge2), None);
        assert_eq!(m.registered().count(), 1);
    }

    #[test]
    fn relay_only_when_both_capable_peers_ask() {
        let mut m = MediationState::default();
        let now = Instant::now();
        let cid = ConnectId::new(&[1, 2, 3, 4]).unwrap();
        let t = [RelayToken([1; 16]), RelayToken([2; 16])];
        // Unknown attempt.
        assert_eq!(m.ask_relay(&cid, IkeSaId(1), t), RelayAsk::Refuse);
        m.note_session(now, cid.clone(), IkeSaId(1), IkeSaId(2));
        // A stranger's SA, and a peer that cannot relay.
        assert_eq!(m.ask_relay(&cid, IkeSaId(3), t), RelayAsk::Refuse);
        m.relay_capable(IkeSaId(1));
        assert_eq!(m.ask_relay(&cid, IkeSaId(1), t), RelayAsk::Refuse);
        m.relay_capable(IkeSaId(2));
        assert_eq!(m.ask_relay(&cid, IkeSaId(2), t), RelayAsk::Waiting);
        assert_eq!(m.ask_relay(&cid, IkeSaId(1), t), RelayAsk::Both);
        // Asked again: still one relay.
        assert_eq!(m.ask_relay(&cid, IkeSaId(2), t), RelayAsk::Waiting);
        let s = m.take_session(&cid).unwrap();
        assert_eq!(s, [(IkeSaId(1), t[0]), (IkeSaId(2), t[1])]);
        assert!(m.take_session(&cid).is_none());
        // A departing SA takes its sessions along.
        m.note_session(now, cid.clone(), IkeSaId(1), IkeSaId(2));
        m.unregister(&id("C=CN, O=Local Cluster, CN=edge1"), IkeSaId(2));
        assert_eq!(m.ask_relay(&cid, IkeSaId(1), t), RelayAsk::Refuse);
    }

    #[test]
    fn candidates_are_host_and_server_reflexive_on_one_base() {
        let local: SocketAddr = "10.1.0.2:4500".parse().unwrap();
        let me = MeSa {
            server_reflexive: Some("203.0.113.1:4500".parse().unwrap()),
            registered: None,
            relay: false,
        };
        let c = me.candidates(local, &[]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].endpoint.kind, EndpointKind::Host);
        assert_eq!(c[1].endpoint.kind, EndpointKind::ServerReflexive);
        assert!(c.iter().all(|c| c.base == local));
        // Unknown local address: only the server-reflexive candidate.
        assert_eq!(me.candidates("0.0.0.0:4500".parse().unwrap(), &[]).len(), 1);
        // Other host addresses: each its own base, the SA's own and IPv6 left out.
        let hosts: Vec<IpAddr> = ["10.3.0.1", "10.1.0.2", "fd00::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let c = me.candidates(local, &hosts);
        assert_eq!(c.len(), 3);
        let lan: SocketAddr = "10.3.0.1:4500".parse().unwrap();
        assert_eq!(c[1].endpoint.addr, Some(lan));
        assert_eq!(c[1].base, lan);
        assert_eq!(c[2].base, local);
    }
}
