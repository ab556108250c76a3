//! A small seeded hasher for the integer keys of the SAD and SPD (SPIs, masked
//! addresses): a folded 64x64->128 multiply per word, a few cycles instead of SipHash's
//! few dozen, which matters per packet.
//!
//! Keys are never chosen by a peer alone: SPIs are allocated locally and SPD prefixes
//! come from configuration or from narrowed traffic selectors, so flooding attacks
//! would need the peer to install entries; the per-map random seed keeps even that from
//! being planned offline.

use core::hash::{BuildHasher, Hasher};
use std::hash::RandomState;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
const fn fold(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`KeyHasher`]s with a random per-map seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasherBuilder {
    seed: u64,
}

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        // RandomState is randomly keyed per instance; one hash of it is a good seed.
        let seed = RandomState::new().hash_one(0x6573_7072_6974_u64) | 1;
        KeyHasherBuilder { seed }
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

/// Hasher for short integer keys; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher {
    h: u64,
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.h
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.h = fold(self.h ^ i, MULTIPLIER);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn distinct_keys_spread() {
        let b = KeyHasherBuilder::default();
        // Sequential SPIs must not collide in the low bits hashbrown indexes with.
        let buckets: HashSet<u64> = (0u32..4096).map(|i| b.hash_one(i) & 0xfff).collect();
        assert!(buckets.len() > 2000, "{}", buckets.len());
        assert_ne!(b.hash_one(1u128), b.hash_one(1u128 << 64));
        assert_ne!(
            b.hash_one([1u8, 2, 3].as_slice()),
            b.hash_one([1u8, 2, 3, 0].as_slice())
        );
    }
}
