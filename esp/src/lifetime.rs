//! SA lifetimes (RFC 4301 4.4.2.1): byte and packet counters with soft and hard limits,
//! plus the configuration an SA is built from.
//!
//! Soft means "rekey now" (the engine asks ike for CREATE_CHILD_SA); hard means the SA is
//! dead: encapsulation refuses and decapsulation drops. The check is a few compares, so
//! the engine can call [`OutboundSa::lifetime`](crate::OutboundSa::lifetime) once per
//! batch; each SA also raises `soft_limit_crossed` on exactly one outcome.

use crate::replay::DEFAULT_REPLAY_WINDOW;

/// Byte and packet limits; `u64::MAX` means unlimited.
///
/// Bytes count the inner (plaintext) packets, dummy packets included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LifetimeLimits {
    /// Bytes after which the SA asks for a rekey.
    pub soft_bytes: u64,
    /// Bytes after which the SA is dead.
    pub hard_bytes: u64,
    /// Packets after which the SA asks for a rekey.
    pub soft_packets: u64,
    /// Packets after which the SA is dead.
    pub hard_packets: u64,
}

impl LifetimeLimits {
    /// No byte or packet limit (sequence numbers still bound outbound SAs).
    pub const UNLIMITED: LifetimeLimits = LifetimeLimits {
        soft_bytes: u64::MAX,
        hard_bytes: u64::MAX,
        soft_packets: u64::MAX,
        hard_packets: u64::MAX,
    };
}

impl Default for LifetimeLimits {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// Where an SA stands in its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LifetimeState {
    /// Below every soft limit.
    Valid,
    /// A soft limit (bytes, packets or sequence number) was reached: rekey.
    SoftExpired,
    /// A hard limit was reached or the sequence space is used up: the SA is dead.
    HardExpired,
}

/// Parameters of one child SA direction, as negotiated by IKE and configured locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaConfig {
    /// Extended (64-bit) sequence numbers were negotiated (RFC 4303 2.2.1, RFC 7296 3.3.2).
    pub esn: bool,
    /// Byte and packet limits.
    pub lifetime: LifetimeLimits,
    /// Inbound only: anti-replay window in packets, a power of two in 64..=2^20.
    pub replay_window: u32,
    /// Outbound only: the sequence number at which the SA asks for a rekey; `None` picks
    /// [`SaConfig::default_seq_soft_limit`].
    pub seq_soft_limit: Option<u64>,
}

impl SaConfig {
    /// 2^32 - 2^28 without ESN, 2^64 - 2^32 with: leaves room for many seconds of
    /// traffic at line rate while the rekey completes.
    pub const fn default_seq_soft_limit(esn: bool) -> u64 {
        if esn {
            u64::MAX - (1 << 32) + 1
        } else {
            (1 << 32) - (1 << 28)
        }
    }

    /// The last sequence number that may be sent (RFC 4303 3.3.3: the counter never cycles).
    pub const fn seq_hard_limit(esn: bool) -> u64 {
        if esn {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }
}

impl Default for SaConfig {
    fn default() -> Self {
        SaConfig {
            esn: false,
            lifetime: LifetimeLimits::UNLIMITED,
            replay_window: DEFAULT_REPLAY_WINDOW,
            seq_soft_limit: None,
        }
    }
}

/// Traffic counters of an SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SaStats {
    /// Inner bytes processed.
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// Outbound: last sequence number sent. Inbound: highest one authenticated.
    pub seq: u64,
}

/// Counters against limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetime {
    limits: LifetimeLimits,
    bytes: u64,
    packets: u64,
}

impl Lifetime {
    pub(crate) fn new(limits: LifetimeLimits) -> Self {
        Lifetime {
            limits,
            bytes: 0,
            packets: 0,
        }
    }

    #[inline]
    pub(crate) fn hard_expired(&self) -> bool {
        self.bytes >= self.limits.hard_bytes || self.packets >= self.limits.hard_packets
    }

    #[inline]
    pub(crate) fn soft_expired(&self) -> bool {
        self.bytes >= self.limits.soft_bytes || self.packets >= self.limits.soft_packets
    }

    #[inline]
    pub(crate) fn record(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_add(len as u64);
        self.packets = self.packets.saturating_add(1);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn packets(&self) -> u64 {
        self.packets
    }
}

/// Raises a flag exactly once: the first time the SA is seen past a soft limit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SoftLatch(bool);

impl SoftLatch {
    #[inline]
    pub(crate) fn crossed(&mut self, now_soft: bool) -> bool {
        let first = now_soft && !self.0;
        self.0 |= now_soft;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_latch() {
        let mut l = Lifetime::new(LifetimeLimits {
            soft_bytes: 100,
            hard_bytes: 200,
            soft_packets: u64::MAX,
            hard_packets: 5,
        });
        let mut latch = SoftLatch::default();
        l.record(60);
        assert!(!l.soft_expired() && !latch.crossed(l.soft_expired()));
        l.record(60);
        assert!(l.soft_expired() && latch.crossed(l.soft_expired()));
        l.record(1);
        assert!(!latch.crossed(l.soft_expired()));
        assert!(!l.hard_expired());
        l.record(1);
        l.record(1);
        assert!(l.hard_expired(), "five packets");
        assert_eq!((l.bytes(), l.packets()), (123, 5));
    }

    #[test]
    fn seq_limits() {
        assert_eq!(SaConfig::seq_hard_limit(false), 0xffff_ffff);
        assert_eq!(SaConfig::seq_hard_limit(true), u64::MAX);
        assert!(SaConfig::default_seq_soft_limit(false) < SaConfig::seq_hard_limit(false));
        assert!(SaConfig::default_seq_soft_limit(true) < SaConfig::seq_hard_limit(true));
        assert_eq!(SaConfig::default().replay_window, 1024);
    }
}
