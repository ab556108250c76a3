//! Typed outcomes of the dataplane: why a packet was dropped, why encapsulation was
//! refused, why an SA could not be built. The engine counts drops with [`DropCounters`].

/// Why an inbound ESP packet was dropped (RFC 4303 3.4, RFC 4301 5.2).
///
/// Flat on purpose: the engine counts each reason with [`DropReason::as_index`] and
/// logs it rate-limited; nothing here carries peer bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// No inbound SA for the packet's SPI (RFC 4303 3.4.2).
    #[error("no inbound SA for this SPI")]
    UnknownSpi,
    /// The sequence number was already received or lies left of the window (RFC 4303 3.4.3).
    #[error("replayed packet: {0}")]
    Replay(ReplayKind),
    /// The AEAD tag or the HMAC did not verify (RFC 4303 3.4.4, RFC 4106 3): for
    /// AES-CBC nothing was decrypted.
    #[error("ICV mismatch")]
    IcvMismatch,
    /// The packet or its decrypted payload is not well formed.
    #[error("malformed packet: {0}")]
    Malformed(MalformedReason),
    /// The decrypted inner packet is outside the SA's traffic selectors (RFC 4301 5.2).
    #[error("inner packet outside the SA's traffic selectors")]
    SelectorMismatch,
    /// The SA reached its hard lifetime (RFC 4301 4.4.2.1).
    #[error("SA hard lifetime expired")]
    LifetimeExpired,
}

/// The two ways a sequence number fails the anti-replay check (RFC 4303 3.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayKind {
    /// Inside the window and already marked as received.
    #[error("duplicate")]
    Duplicate,
    /// Left of the window (or zero, or not inferable with ESN).
    #[error("too old")]
    TooOld,
}

/// What exactly was wrong with a malformed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// Shorter than header + IV + minimal trailer + ICV.
    #[error("too short")]
    TooShort,
    /// AES-CBC ciphertext that is not a whole number of blocks (RFC 3602 2.4).
    #[error("ciphertext not a whole number of blocks")]
    NotBlockAligned,
    /// The given range does not lie inside the buffer (a caller bug, never a panic).
    #[error("range outside the buffer")]
    BadRange,
    /// Pad Length points before the payload (RFC 4303 2.5).
    #[error("bad pad length")]
    BadPadLength,
    /// Padding bytes are not 1, 2, 3, ... (RFC 4303 2.4).
    #[error("bad padding")]
    BadPadding,
    /// Next Header is not 4 (IPv4), 41 (IPv6) or 59 (dummy) in tunnel mode (RFC 4303 2.6).
    #[error("bad next header")]
    BadNextHeader,
    /// The inner IP header could not be parsed.
    #[error("bad inner header")]
    InnerHeader,
    /// The inner IP version does not match Next Header.
    #[error("inner IP version does not match next header")]
    InnerVersion,
}

impl MalformedReason {
    /// Number of malformed reasons, for counter arrays.
    const COUNT: usize = 8;

    const fn as_index(self) -> usize {
        match self {
            MalformedReason::TooShort => 0,
            MalformedReason::BadRange => 1,
            MalformedReason::BadPadLength => 2,
            MalformedReason::BadPadding => 3,
            MalformedReason::BadNextHeader => 4,
            MalformedReason::InnerHeader => 5,
            MalformedReason::InnerVersion => 6,
            MalformedReason::NotBlockAligned => 7,
        }
    }
}

impl DropReason {
    /// Number of distinct counter slots; [`DropReason::as_index`] is always below it.
    pub const COUNT: usize = 4 + MalformedReason::COUNT + 2;

    /// Metric names, indexed by [`DropReason::as_index`].
    pub const NAMES: [&'static str; Self::COUNT] = [
        "unknown_spi",
        "replay_duplicate",
        "replay_too_old",
        "icv_mismatch",
        "malformed_too_short",
        "malformed_bad_range",
        "malformed_bad_pad_length",
        "malformed_bad_padding",
        "malformed_bad_next_header",
        "malformed_inner_header",
        "malformed_inner_version",
        "malformed_not_block_aligned",
        "selector_mismatch",
        "lifetime_expired",
    ];

    /// A dense index (one slot per reason and sub-reason) for counter arrays.
    pub const fn as_index(self) -> usize {
        match self {
            DropReason::UnknownSpi => 0,
            DropReason::Replay(ReplayKind::Duplicate) => 1,
            DropReason::Replay(ReplayKind::TooOld) => 2,
            DropReason::IcvMismatch => 3,
            DropReason::Malformed(m) => 4 + m.as_index(),
            DropReason::SelectorMismatch => 4 + MalformedReason::COUNT,
            DropReason::LifetimeExpired => 5 + MalformedReason::COUNT,
        }
    }

    /// A stable snake_case name for metrics and logs.
    pub const fn name(self) -> &'static str {
        Self::NAMES[self.as_index()]
    }
}

/// One counter per [`DropReason`] slot: `record` is an array increment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl DropCounters {
    /// All counters at zero.
    pub const fn new() -> Self {
        DropCounters {
            counts: [0; DropReason::COUNT],
        }
    }

    /// Counts one drop.
    #[inline]
    pub fn record(&mut self, reason: DropReason) {
        let slot = &mut self.counts[reason.as_index()];
        *slot = slot.wrapping_add(1);
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.as_index()]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }

    /// `(name, count)` for every slot, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::NAMES
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
    }
}

/// Why [`OutboundSa::encapsulate`](crate::OutboundSa::encapsulate) refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum EncapError {
    /// The SA reached a hard byte or packet lifetime (RFC 4301 4.4.2.1): rekey.
    #[error("SA hard lifetime expired")]
    LifetimeExpired,
    /// The last sequence number was used; the counter must not cycle (RFC 4303 3.3.3).
    #[error("sequence number space exhausted")]
    SequenceExhausted,
    /// Fewer than [`OutboundSa::HEADROOM`](crate::OutboundSa::HEADROOM) bytes before the inner packet.
    #[error("not enough headroom before the inner packet")]
    NoHeadroom,
    /// Fewer than `tailroom()` bytes after the inner packet.
    #[error("not enough tailroom after the inner packet")]
    NoTailroom,
    /// The inner range does not lie inside the buffer.
    #[error("inner range outside the buffer")]
    BadRange,
    /// The inner packet is neither IPv4 nor IPv6 (version nibble), or empty.
    #[error("inner packet is not IPv4 or IPv6")]
    NotIp,
    /// The cipher refused the input (only for inputs of many gigabytes).
    #[error("seal failed")]
    Seal,
}

/// Why an SA could not be built from negotiated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SaError {
    /// KEYMAT has the wrong length for the algorithm (RFC 4106 8.1: key || 4-byte salt;
    /// RFC 7296 2.17: encryption key || integrity key).
    #[error("KEYMAT must be {expected} bytes, got {actual}")]
    KeymatLength {
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// The cipher or MAC implementation rejected the key.
    #[error("key rejected")]
    Key,
    /// The system RNG failed while drawing an AES-CBC SA's IV key.
    #[error("system random number generator failed")]
    Random,
    /// The replay window must be a power of two between 64 and 2^20 packets.
    #[error("replay window {0} is not a power of two in 64..=1048576")]
    ReplayWindow(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_named() {
        let all = [
            DropReason::UnknownSpi,
            DropReason::Replay(ReplayKind::Duplicate),
            DropReason::Replay(ReplayKind::TooOld),
            DropReason::IcvMismatch,
            DropReason::Malformed(MalformedReason::TooShort),
            DropReason::Malformed(MalformedReason::BadRange),
            DropReason::Malformed(MalformedReason::BadPadLength),
            DropReason::Malformed(MalformedReason::BadPadding),
            DropReason::Malformed(MalformedReason::BadNextHeader),
            DropReason::Malformed(MalformedReason::InnerHeader),
            DropReason::Malformed(MalformedReason::InnerVersion),
            DropReason::Malformed(MalformedReason::NotBlockAligned),
            DropReason::SelectorMismatch,
            DropReason::LifetimeExpired,
        ];
        assert_eq!(all.len(), DropReason::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.as_index(), i);
        }
        assert_eq!(DropReason::IcvMismatch.name(), "icv_mismatch");
        let mut c = DropCounters::new();
        c.record(DropReason::Replay(ReplayKind::TooOld));
        c.record(DropReason::Replay(ReplayKind::TooOld));
        c.record(DropReason::UnknownSpi);
        assert_eq!(c.get(DropReason::Replay(ReplayKind::TooOld)), 2);
        assert_eq!(c.get(DropReason::Replay(ReplayKind::Duplicate)), 0);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().count(), DropReason::COUNT);
    }
}
