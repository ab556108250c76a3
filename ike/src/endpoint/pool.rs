//! Virtual IP pools (swanctl.conf's `pools` section) and their leases, with the
//! semantics of charon's in-memory pools: a lease belongs to the peer's identity, is
//! online while an IKE SA of that identity holds it and offline afterwards, and an
//! identity that comes back gets its offline lease again. Only when the pool has no
//! never-used address left is the oldest offline lease of another identity reassigned.
//!
//! A leaf: the endpoint asks [`Pools`] for addresses when it answers a CFG_REQUEST
//! (RFC 7296 3.15) and releases them when the IKE SA goes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

use super::IkeSaId;
use crate::auth::Identity;

/// Most addresses one pool hands out (charon limits pools the same way).
pub const MAX_POOL_SIZE: u32 = 1 << 30;

/// Why a pool definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Neither "prefix/len" nor "first-last".
    #[error(
        "pool addresses {0:?}: expected a prefix (10.3.0.0/24) or a range (10.3.0.1-10.3.0.200)"
    )]
    Syntax(String),
    /// A range's ends are of different families or in the wrong order.
    #[error("pool range {0:?}: both ends of one family, the first not above the last")]
    BadRange(String),
}

/// One address range.
#[derive(Clone, PartialEq, Eq)]
pub struct Pool {
    name: String,
    /// First address handed out, as an integer of its family.
    base: u128,
    v4: bool,
    size: u32,
    dns: Vec<IpAddr>,
    /// Offsets below this were handed out at least once.
    next_unused: u32,
    /// Offset -> lease; an offset, once leased, stays here (online or offline).
    leases: HashMap<u32, Lease>,
    /// Identity -> its offsets (online and offline).
    by_identity: HashMap<Identity, Vec<u32>>,
    /// Offsets in the order they went offline; entries that came back online or were
    /// reassigned since are skipped when popped.
    offline: VecDeque<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    identity: Identity,
    /// The IKE SA holding it and the peer's address; `None` when offline.
    holder: Option<(IkeSaId, IpAddr)>,
}

/// One lease, for status output (`swanctl --list-pools --leases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The address.
    pub addr: IpAddr,
    /// Whose it is.
    pub identity: Identity,
    /// An IKE SA holds it now.
    pub online: bool,
}

fn to_int(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_int(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from(u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes())
    } else {
        IpAddr::from(v.to_be_bytes())
    }
}

impl Pool {
    /// A pool from swanctl's `addrs` syntax: a prefix ("10.173.0.0/16", whose first and
    /// last address are left out when it has more than two) or a range
    /// ("10.3.0.1-10.3.0.200", every address in it).
    pub fn parse(name: &str, addrs: &str) -> Result<Pool, PoolError> {
        let s = addrs.trim();
        let syntax = || PoolError::Syntax(s.to_string());
        if let Some((a, len)) = s.split_once('/') {
            let addr: IpAddr = a.trim().parse().map_err(|_| syntax())?;
            let len: u32 = len.trim().parse().map_err(|_| syntax())?;
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            if len > bits {
                return Err(syntax());
            }
            // Host bits, limited like charon's POOL_LIMIT.
            let host_bits = (bits - len).min(30);
            let mask = if bits - len >= 128 {
                0
            } else {
                !((1u128 << (bits - len)) - 1)
            };
            let network = to_int(addr) & mask;
            let mut size = 1u32 << host_bits;
            let mut base = network;
            if size > 2 {
                // Neither the network nor the broadcast address.
                base += 1;
                size -= 2;
            }
            Ok(Pool::new(name, base, addr.is_ipv4(), size))
        } else if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| syntax())?;
            let b: IpAddr = b.trim().parse().map_err(|_| syntax())?;
            if a.is_ipv4() != b.is_ipv4() || to_int(a) > to_int(b) {
                return Err(PoolError::BadRange(s.to_string()));
            }
            let span = to_int(b) - to_int(a) + 1;
            let size = u32::try_from(span.min(u128::from(MAX_POOL_SIZE))).unwrap_or(MAX_POOL_SIZE);
            Ok(Pool::new(name, to_int(a), a.is_ipv4(), size))
        } else {
            Err(syntax())
        }
    }

    fn new(name: &str, base: u128, v4: bool, size: u32) -> Pool {
        Pool {
            name: name.to_string(),
            base,
            v4,
            size,
            dns: Vec::new(),
            next_unused: 0,
            leases: HashMap::new(),
            by_identity: HashMap::new(),
            offline: VecDeque::new(),
        }
    }

    /// DNS servers sent with its addresses (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS).
    pub fn with_dns(mut self, dns: Vec<IpAddr>) -> Pool {
        self.dns = dns;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first address it hands out.
    pub fn first(&self) -> IpAddr {
        from_int(self.base, self.v4)
    }

    /// The last address it hands out.
    pub fn last(&self) -> IpAddr {
        from_int(self.base + u128::from(self.size.saturating_sub(1)), self.v4)
    }

    /// An IPv4 pool.
    pub fn is_ipv4(&self) -> bool {
        self.v4
    }

    /// DNS servers.
    pub fn dns(&self) -> &[IpAddr] {
        &self.dns
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Leases an IKE SA holds.
    pub fn online(&self) -> usize {
        self.leases.values().filter(|l| l.holder.is_some()).count()
    }

    /// Leases kept for identities that are not connected.
    pub fn offline(&self) -> usize {
        self.leases.values().filter(|l| l.holder.is_none()).count()
    }

    /// Every lease, in address order.
    pub fn leases(&self) -> Vec<LeaseInfo> {
        let mut v: Vec<(u32, LeaseInfo)> = self
            .leases
            .iter()
            .map(|(o, l)| {
                (
                    *o,
                    LeaseInfo {
                        addr: self.addr(*o),
                        identity: l.identity.clone(),
                        online: l.holder.is_some(),
                    },
                )
            })
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v.into_iter().map(|(_, l)| l).collect()
    }

    /// The same range (leases aside): a reload keeps the leases of such a pool.
    pub fn same_range(&self, other: &Pool) -> bool {
        self.base == other.base && self.v4 == other.v4 && self.size == other.size
    }

    fn addr(&self, offset: u32) -> IpAddr {
        from_int(self.base + u128::from(offset), self.v4)
    }

    fn offset(&self, addr: IpAddr) -> Option<u32> {
        if addr.is_ipv4() != self.v4 {
            return None;
        }
        let d = to_int(addr).checked_sub(self.base)?;
        u32::try_from(d).ok().filter(|o| *o < self.size)
    }

    /// Whether `addr` is one of this pool's addresses.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.offset(addr).is_some()
    }

    /// An address for `identity`, held by IKE SA `sa` whose peer is at `peer`.
    /// `requested` is what the peer asked for (unspecified: any). In order: an offline
    /// lease of this identity (the requested one if it has it); an online lease of this
    /// identity held from the same peer address when the peer lost its state
    /// (`reclaim`: it sent INITIAL_CONTACT) or asks for exactly that address; a
    /// never-used address; the oldest offline lease of another identity. `None` when the
    /// pool is exhausted or of the other family.
    pub fn acquire(
        &mut self,
        identity: &Identity,
        requested: IpAddr,
        sa: IkeSaId,
        peer: IpAddr,
        reclaim: bool,
    ) -> Option<IpAddr> {
        if requested.is_ipv4() != self.v4 {
            return None;
        }
        let wanted = self.offset(requested);
        let mine = self.by_identity.get(identity).cloned().unwrap_or_default();
        let pick = |want: &dyn Fn(&Lease) -> bool| {
            let matching = |o: &&u32| self.leases.get(o).is_some_and(want);
            mine.iter()
                .filter(matching)
                .find(|o| Some(**o) == wanted)
                .or_else(|| mine.iter().find(matching))
                .copied()
        };
        let offline = pick(&|l| l.holder.is_none());
        let online = || {
            pick(&|l| l.holder.is_some_and(|(_, p)| p == peer))
                .filter(|o| reclaim || Some(*o) == wanted)
        };
        let offset = match offline.or_else(online) {
            Some(o) => o,
            None => {
                let o = self.fresh().or_else(|| self.reassign())?;
                self.by_identity
                    .entry(identity.clone())
                    .or_default()
                    .push(o);
                o
            }
        };
        self.leases.insert(
            offset,
            Lease {
                identity: identity.clone(),
                holder: Some((sa, peer)),
            },
        );
        Some(self.addr(offset))
    }

    /// A never-used offset.
    fn fresh(&mut self) -> Option<u32> {
        while self.next_unused < self.size {
            let o = self.next_unused;
            self.next_unused += 1;
            if !self.leases.contains_key(&o) {
                return Some(o);
            }
        }
        None
    }

    /// Takes the oldest offline lease away from its identity.
    fn reassign(&mut self) -> Option<u32> {
        while let Some(o) = self.offline.pop_front() {
            let Some(lease) = self.leases.get(&o).filter(|l| l.holder.is_none()) else {
                continue;
            };
            let old = lease.identity.clone();
            if let Some(v) = self.by_identity.get_mut(&old) {
                v.retain(|x| *x != o);
                if v.is_empty() {
                    self.by_identity.remove(&old);
                }
            }
            self.leases.remove(&o);
            return Some(o);
        }
        None
    }

    /// IKE SA `sa` is gone: its lease of `addr` goes offline (kept for its identity).
    /// Nothing happens when another SA holds it now (a rekey or reconnect took it over).
    pub fn release(&mut self, addr: IpAddr, sa: IkeSaId) -> bool {
        let Some(o) = self.offset(addr) else {
            return false;
        };
        match self.leases.get_mut(&o) {
            Some(l) if l.holder.is_some_and(|(h, _)| h == sa) => {
                l.holder = None;
                self.offline.push_back(o);
                // Stale entries pile up only while identities flap; keep the queue
                // bounded by the lease count.
                if self.offline.len() > 2 * self.leases.len() + 16 {
                    let leases = &self.leases;
                    self.offline
                        .retain(|x| leases.get(x).is_some_and(|l| l.holder.is_none()));
                }
                true
            }
            _ => false,
        }
    }

    /// The lease of `addr` held by `from` passes to `to` (an IKE SA rekey, RFC 7296
    /// 2.18, keeps the client's address).
    pub fn transfer(&mut self, addr: IpAddr, from: IkeSaId, to: IkeSaId) {
        if let Some(l) = self.offset(addr).and_then(|o| self.leases.get_mut(&o)) {
            if let Some((h, peer)) = l.holder {
                if h == from {
                    l.holder = Some((to, peer));
                }
            }
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("first", &self.first())
            .field("last", &self.last())
            .field("online", &self.online())
            .field("offline", &self.offline())
            .finish()
    }
}

/// Every pool of the endpoint, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pools {
    pools: Vec<Pool>,
}

impl Pools {
    /// Adds a pool; one of the same name is replaced, keeping its leases when the range
    /// is the same (a reload that changed only DNS servers).
    pub(crate) fn insert(&mut self, pool: Pool) {
        match self.pools.iter_mut().find(|p| p.name == pool.name) {
            Some(old) if old.same_range(&pool) => old.dns = pool.dns,
            Some(old) => *old = pool,
            None => self.pools.push(pool),
        }
    }

    /// Removes the pools whose names are not in `keep`.
    pub(crate) fn retain(&mut self, keep: &[&str]) {
        self.pools.retain(|p| keep.contains(&p.name.as_str()));
    }

    /// The pools, in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }

    /// The pool of this name.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Pool> {
        self.pools.iter_mut().find(|p| p.name == name)
    }

    /// Releases every address of `addrs` that IKE SA `sa` holds.
    pub(crate) fn release(&mut self, addrs: &[IpAddr], sa: IkeSaId) {
        for a in addrs {
            for p in &mut self.pools {
                if p.release(*a, sa) {
                    break;
                }
            }
        }
    }

    /// Hands the leases of `addrs` held by `from` to `to`.
    pub(crate) fn transfer(&mut self, addrs: &[IpAddr], from: IkeSaId, to: IkeSaId) {
        for a in addrs {
            for p in &mut self.pools {
                p.transfer(*a, from, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::parse(s).unwrap()
    }

    const ANY4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_and_range() {
        let p = Pool::parse("p", "10.173.0.0/16").unwrap();
        assert_eq!(
            (p.first(), p.last(), p.size()),
            (ip("10.173.0.1"), ip("10.173.255.254"), 65534)
        );
        let p = Pool::parse("p", "10.3.0.1-10.3.0.200").unwrap();
        assert_eq!(
            (p.first(), p.last(), p.size()),
            (ip("10.3.0.1"), ip("10.3.0.200"), 200)
        );
        let p = Pool::parse("p", "10.3.0.0/31").unwrap();
        assert_eq!(p.size(), 2);
        let p = Pool::parse("p", "fd00:173::/64").unwrap();
        assert_eq!((p.first(), p.size()), (ip("fd00:173::1"), (1 << 30) - 2));
        for bad in [
            "10.0.0.0/33",
            "x",
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-fd00::1",
            "10.0.0.0",
        ] {
            assert!(Pool::parse("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn same_identity_gets_its_address_back() {
        let mut p = Pool::parse("p", "10.3.0.0/29").unwrap();
        let (a, b) = (id("a@example.org"), id("b@example.org"));
        let x = p.acquire(&a, ANY4, IkeSaId(1), PEER, false).unwrap();
        let y = p.acquire(&b, ANY4, IkeSaId(2), PEER, false).unwrap();
        assert_eq!((x, y), (ip("10.3.0.1"), ip("10.3.0.2")));
        assert_eq!((p.online(), p.offline()), (2, 0));
        assert!(p.release(x, IkeSaId(1)));
        assert!(!p.release(x, IkeSaId(1)));
        assert_eq!((p.online(), p.offline()), (1, 1));
        assert_eq!(p.acquire(&a, ANY4, IkeSaId(3), PEER, false), Some(x));
        // A second SA of the same identity while the first holds its lease: another
        // address, unless the peer lost its state (INITIAL_CONTACT) from the same place.
        assert_eq!(
            p.acquire(&a, ANY4, IkeSaId(4), PEER, false),
            Some(ip("10.3.0.3"))
        );
        assert_eq!(p.acquire(&b, ANY4, IkeSaId(5), PEER, true), Some(y));
        p.release(y, IkeSaId(2));
        assert_eq!(p.leases().iter().filter(|l| l.online).count(), 3);
        p.transfer(y, IkeSaId(5), IkeSaId(6));
        assert!(!p.release(y, IkeSaId(5)));
        assert!(p.release(y, IkeSaId(6)));
    }

    #[test]
    fn exhausted_then_reassigned() {
        let mut p = Pool::parse("p", "10.3.0.1-10.3.0.2").unwrap();
        let ids: Vec<Identity> = (0..4).map(|i| id(&format!("c{i}@x"))).collect();
        let a = p.acquire(&ids[0], ANY4, IkeSaId(1), PEER, false).unwrap();
        p.acquire(&ids[1], ANY4, IkeSaId(2), PEER, false).unwrap();
        assert_eq!(p.acquire(&ids[2], ANY4, IkeSaId(3), PEER, false), None);
        assert_eq!(p.acquire(&ids[2], ip("::"), IkeSaId(3), PEER, false), None);
        p.release(a, IkeSaId(1));
        assert_eq!(p.acquire(&ids[2], ANY4, IkeSaId(3), PEER, false), Some(a));
        assert_eq!(
            p.leases().iter().filter(|l| l.identity == ids[0]).count(),
            0
        );
        assert_eq!(p.acquire(&ids[0], ANY4, IkeSaId(4), PEER, false), None);
    }

    #[test]
    fn requested_address() {
        let mut p = Pool::parse("p", "10.3.0.0/24").unwrap();
        let a = id("a@x");
        let x = p.acquire(&a, ANY4, IkeSaId(1), PEER, false).unwrap();
        let y = p.acquire(&a, ANY4, IkeSaId(2), PEER, false).unwrap();
        p.release(x, IkeSaId(1));
        p.release(y, IkeSaId(2));
        assert_eq!(p.acquire(&a, y, IkeSaId(3), PEER, false), Some(y));
        // Another identity's address is not handed out on request.
        let b = id("b@x");
        assert_eq!(
            p.acquire(&b, x, IkeSaId(4), PEER, false),
            Some(ip("10.3.0.3"))
        );
    }
}
