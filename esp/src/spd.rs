//! Security Policy Database for outbound traffic (RFC 4301 4.4.1): which SA (a handle the
//! caller chooses) protects an inner packet, by source and destination address, IP
//! protocol and ports.
//!
//! # Index
//!
//! Selector address ranges are split into prefixes. Per address family there is one
//! hash map per destination prefix length in use (longest first), keyed by the masked
//! destination; each bucket holds one map per source prefix length in use, keyed by the
//! masked source; each slot holds the few entries that differ in protocol or ports. A
//! lookup costs one hash probe per destination length and per source length present —
//! at most 33 (IPv4) or 129 (IPv6) of each, a handful in practice — and does not grow
//! with the number of policies.
//!
//! # Most specific wins
//!
//! Among matching entries the greatest by this total order wins:
//! 1. destination prefix length + source prefix length (of the matching prefixes;
//!    a range that is not a prefix counts with the prefix of it that matched);
//! 2. a given IP protocol beats "any";
//! 3. fewer ports (destination span + source span) beats more;
//! 4. the earlier insertion beats the later (so the order is total and lookups are
//!    deterministic).

use std::collections::HashMap;

use core::cmp::Reverse;
use core::hash::Hash;

use crate::flow::{Family, Flow};
use crate::hash::KeyHasherBuilder;
use crate::selector::{mask, port_matches, Prefix, TrafficSelector};

/// Most index entries (source prefixes x destination prefixes) one selector pair may
/// expand to. Prefix-shaped selectors need 1; two worst-case IPv4 ranges need 3844.
pub const MAX_ENTRIES_PER_PAIR: usize = 4096;

/// Why a policy could not be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SpdError {
    /// Source and destination selectors are of different address families.
    #[error("source and destination of different address families")]
    FamilyMismatch,
    /// Source and destination name different IP protocols: nothing could match.
    #[error("source and destination name different IP protocols")]
    ProtoMismatch,
    /// The address ranges split into more than [`MAX_ENTRIES_PER_PAIR`] prefix pairs.
    #[error("address ranges split into too many prefixes")]
    TooManyPrefixes,
}

/// Rank of an entry; greater is more specific. Field order is the documented total order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    len_sum: u16,
    proto_given: bool,
    narrowness: u32,
    order: Reverse<u64>,
}

#[derive(Clone, Debug)]
struct Entry<T> {
    rank: Rank,
    ip_proto: u8,
    src_ports: (u16, u16),
    dst_ports: (u16, u16),
    handle: T,
}

impl<T> Entry<T> {
    #[inline]
    fn matches(&self, flow: &Flow) -> bool {
        (self.ip_proto == 0 || self.ip_proto == flow.proto)
            && port_matches(self.src_ports.0, self.src_ports.1, flow.src_port)
            && port_matches(self.dst_ports.0, self.dst_ports.1, flow.dst_port)
    }
}

type Map<V> = HashMap<u128, V, KeyHasherBuilder>;

#[derive(Clone, Debug)]
struct SrcLevel<T> {
    len: u8,
    slots: Map<Vec<Entry<T>>>,
}

#[derive(Clone, Debug)]
struct Bucket<T> {
    /// Longest source prefix first.
    levels: Vec<SrcLevel<T>>,
}

#[derive(Clone, Debug)]
struct DstLevel<T> {
    len: u8,
    buckets: Map<Bucket<T>>,
}

#[derive(Clone, Debug)]
struct FamilyIndex<T> {
    family: Family,
    /// Longest destination prefix first.
    levels: Vec<DstLevel<T>>,
    /// Entries per source prefix length, to bound the search.
    src_len_count: [u32; 129],
    max_src_len: u8,
}

/// Where a handle's entries live, for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Loc {
    family: Family,
    dst: Prefix,
    src: Prefix,
}

/// Outbound policies mapping inner packets to caller-chosen handles (e.g. an SA index).
#[derive(Clone, Debug)]
pub struct Spd<T> {
    v4: FamilyIndex<T>,
    v6: FamilyIndex<T>,
    locations: HashMap<T, Vec<Loc>>,
    next_order: u64,
    entries: usize,
    hasher: KeyHasherBuilder,
}

impl<T: Copy + Eq + Hash> Default for Spd<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Eq + Hash> Spd<T> {
    /// An empty SPD.
    pub fn new() -> Self {
        Spd {
            v4: FamilyIndex::new(Family::V4),
            v6: FamilyIndex::new(Family::V6),
            locations: HashMap::new(),
            next_order: 0,
            entries: 0,
            hasher: KeyHasherBuilder::default(),
        }
    }

    /// Number of distinct handles installed.
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    /// Whether no policy is installed.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    /// Number of index entries (prefix pairs x protocol/port variants), for diagnostics.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Routes packets from `src` to `dst` to `handle`. Several pairs may share a handle.
    pub fn insert(
        &mut self,
        src: &TrafficSelector,
        dst: &TrafficSelector,
        handle: T,
    ) -> Result<(), SpdError> {
        let plan = plan(src, dst)?;
        self.apply(src, dst, plan, handle);
        Ok(())
    }

    /// Installs a child SA's policy: every pair of a `local` (source) and a `remote`
    /// (destination) selector of the same family, as IKEv2 selector sets combine
    /// (RFC 7296 2.9). Pairs that can match nothing (different families or protocols)
    /// are skipped; nothing is installed if any pair is too large.
    pub fn insert_sa(
        &mut self,
        handle: T,
        local: &[TrafficSelector],
        remote: &[TrafficSelector],
    ) -> Result<(), SpdError> {
        let mut plans = Vec::new();
        for l in local {
            for r in remote {
                match plan(l, r) {
                    Ok(p) => plans.push((l, r, p)),
                    Err(SpdError::FamilyMismatch | SpdError::ProtoMismatch) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (l, r, p) in plans {
            self.apply(l, r, p, handle);
        }
        Ok(())
    }

    /// Removes every policy pointing to `handle`; returns whether there was one.
    pub fn remove(&mut self, handle: T) -> bool {
        let Some(mut locs) = self.locations.remove(&handle) else {
            return false;
        };
        locs.sort_unstable();
        locs.dedup();
        for loc in locs {
            let idx = match loc.family {
                Family::V4 => &mut self.v4,
                Family::V6 => &mut self.v6,
            };
            self.entries -= idx.remove(loc, handle);
        }
        true
    }

    /// The handle for an inner IPv4/IPv6 packet, or `None` (no policy, or a header that
    /// does not parse).
    #[inline]
    pub fn lookup(&self, inner_packet: &[u8]) -> Option<T> {
        self.lookup_flow(&Flow::parse(inner_packet).ok()?)
    }

    /// The handle for already parsed selector fields.
    #[inline]
    pub fn lookup_flow(&self, flow: &Flow) -> Option<T> {
        let idx = match flow.family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        idx.lookup(flow).map(|e| e.handle)
    }

    fn apply(&mut self, src: &TrafficSelector, dst: &TrafficSelector, plan: Plan, handle: T) {
        let order = self.next_order;
        self.next_order += 1;
        let proto_given = plan.ip_proto != 0;
        let narrowness = 2 * u32::from(u16::MAX) - src.port_span() - dst.port_span();
        let hasher = self.hasher;
        let idx = match src.family() {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        };
        let locs = self.locations.entry(handle).or_default();
        for d in &plan.dst {
            for s in &plan.src {
                let entry = Entry {
                    rank: Rank {
                        len_sum: u16::from(d.len) + u16::from(s.len),
                        proto_given,
                        narrowness,
                        order: Reverse(order),
                    },
                    ip_proto: plan.ip_proto,
                    src_ports: (src.start_port(), src.end_port()),
                    dst_ports: (dst.start_port(), dst.end_port()),
                    handle,
                };
                idx.insert(*d, *s, entry, hasher);
                locs.push(Loc {
                    family: idx.family,
                    dst: *d,
                    src: *s,
                });
                self.entries += 1;
            }
        }
    }
}

/// A checked selector pair, split into prefixes.
struct Plan {
    ip_proto: u8,
    src: Vec<Prefix>,
    dst: Vec<Prefix>,
}

fn plan(src: &TrafficSelector, dst: &TrafficSelector) -> Result<Plan, SpdError> {
    if src.family() != dst.family() {
        return Err(SpdError::FamilyMismatch);
    }
    let ip_proto = match (src.ip_proto(), dst.ip_proto()) {
        (0, p) | (p, 0) => p,
        (a, b) if a == b => a,
        _ => return Err(SpdError::ProtoMismatch),
    };
    let src = src.prefixes();
    let dst = dst.prefixes();
    if src.len().saturating_mul(dst.len()) > MAX_ENTRIES_PER_PAIR {
        return Err(SpdError::TooManyPrefixes);
    }
    Ok(Plan { ip_proto, src, dst })
}

impl<T: Copy + Eq> FamilyIndex<T> {
    fn new(family: Family) -> Self {
        FamilyIndex {
            family,
            levels: Vec::new(),
            src_len_count: [0; 129],
            max_src_len: 0,
        }
    }

    #[inline]
    fn lookup(&self, flow: &Flow) -> Option<&Entry<T>> {
        let mut best: Option<&Entry<T>> = None;
        for dl in &self.levels {
            // Lengths only shrink from here: stop once even the longest source prefix
            // could not reach the best sum.
            if best
                .is_some_and(|b| u16::from(dl.len) + u16::from(self.max_src_len) < b.rank.len_sum)
            {
                break;
            }
            let Some(bucket) = dl.buckets.get(&(flow.dst & mask(self.family, dl.len))) else {
                continue;
            };
            for sl in &bucket.levels {
                if best.is_some_and(|b| u16::from(dl.len) + u16::from(sl.len) < b.rank.len_sum) {
                    break;
                }
                let Some(slot) = sl.slots.get(&(flow.src & mask(self.family, sl.len))) else {
                    continue;
                };
                for e in slot {
                    if e.matches(flow) && best.is_none_or(|b| e.rank > b.rank) {
                        best = Some(e);
                    }
                }
            }
        }
        best
    }

    fn insert(&mut self, dst: Prefix, src: Prefix, entry: Entry<T>, hasher: KeyHasherBuilder) {
        let di = match self.levels.binary_search_by(|l| dst.len.cmp(&l.len)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    DstLevel {
                        len: dst.len,
                        buckets: HashMap::with_hasher(hasher),
                    },
                );
                i
            }
        };
        let bucket = self.levels[di]
            .buckets
            .entry(dst.addr)
            .or_insert_with(|| Bucket { levels: Vec::new() });
        let si = match bucket.levels.binary_search_by(|l| src.len.cmp(&l.len)) {
            Ok(i) => i,
            Err(i) => {
                bucket.levels.insert(
                    i,
                    SrcLevel {
                        len: src.len,
                        slots: HashMap::with_hasher(hasher),
                    },
                );
                i
            }
        };
        bucket.levels[si]
            .slots
            .entry(src.addr)
            .or_default()
            .push(entry);
        self.src_len_count[usize::from(src.len)] += 1;
        self.max_src_len = self.max_src_len.max(src.len);
    }

    /// Removes `handle`'s entries at `loc`, pruning empty containers; returns how many.
    fn remove(&mut self, loc: Loc, handle: T) -> usize {
        let Ok(di) = self.levels.binary_search_by(|l| loc.dst.len.cmp(&l.len)) else {
            return 0;
        };
        let level = &mut self.levels[di];
        let Some(bucket) = level.buckets.get_mut(&loc.dst.addr) else {
            return 0;
        };
        let Ok(si) = bucket.levels.binary_search_by(|l| loc.src.len.cmp(&l.len)) else {
            return 0;
        };
        let src_level = &mut bucket.levels[si];
        let Some(slot) = src_level.slots.get_mut(&loc.src.addr) else {
            return 0;
        };
        let before = slot.len();
        slot.retain(|e| e.handle != handle);
        let removed = before - slot.len();
        if slot.is_empty() {
            src_level.slots.remove(&loc.src.addr);
        }
        if src_level.slots.is_empty() {
            bucket.levels.remove(si);
        }
        if bucket.levels.is_empty() {
            level.buckets.remove(&loc.dst.addr);
        }
        if level.buckets.is_empty() {
            self.levels.remove(di);
        }
        let count = &mut self.src_len_count[usize::from(loc.src.len)];
        *count -= removed as u32;
        self.max_src_len = (0..=128u8)
            .rev()
            .find(|&l| self.src_len_count[usize::from(l)] > 0)
            .unwrap_or(0);
        removed
    }
}

#[cfg(test)]
mod tests;
