//! Randomness for nonces, SPIs, DH private keys and CBC IVs.
//!
//! Production code uses [`SystemRng`] (ring's `SystemRandom`, the OS generator); tests
//! and simulations can use [`SeededRng`] to make whole handshakes reproducible.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// A source of random bytes.
pub trait Rng {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);

    /// A random `u32` (for ESP SPIs).
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_be_bytes(b)
    }

    /// A random `u64` (for IKE SPIs).
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_be_bytes(b)
    }
}

/// The operating system's generator, through ring's `SystemRandom`.
#[derive(Debug, Clone)]
pub struct SystemRng(SystemRandom);

impl SystemRng {
    /// A handle to the OS generator.
    pub fn new() -> Self {
        Self(SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng for SystemRng {
    /// Panics only if the OS generator fails (getrandom unavailable): continuing with
    /// predictable keys would be worse, and no peer input can cause it.
    fn fill(&mut self, buf: &mut [u8]) {
        if self.0.fill(buf).is_err() {
            panic!("the operating system's random generator failed");
        }
    }
}

/// A deterministic generator for tests and simulations: SHA-256 of seed and a block
/// counter. Not for production keys.
#[derive(Clone)]
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_be_bytes());
        Self {
            seed: s,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededRng")
            .field("counter", &self.counter)
            .finish()
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == self.block.len() {
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(&self.seed);
                ctx.update(&self.counter.to_be_bytes());
                self.block.copy_from_slice(ctx.finish().as_ref());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_seed_dependent() {
        let (mut a, mut b, mut c) = (SeededRng::new(1), SeededRng::new(1), SeededRng::new(2));
        let (mut x, mut y, mut z) = ([0u8; 45], [0u8; 45], [0u8; 45]);
        a.fill(&mut x[..7]);
        a.fill(&mut x[7..]);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn system_fills() {
        let mut r = SystemRng::new();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        r.fill(&mut a);
        r.fill(&mut b);
        assert_ne!(a, b);
    }
}
