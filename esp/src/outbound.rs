//! Outbound SA: tunnel-mode encapsulation in place (RFC 4303 3.3, RFC 4106 3-5,
//! RFC 3602 2-3).

use core::fmt;
use core::ops::Range;

use crate::algorithm::{Algorithm, SaKey};
use crate::cbc::{IvGenerator, AES_BLOCK_LEN, MAX_ICV_LEN};
use crate::error::{EncapError, SaError};
use crate::lifetime::{Lifetime, LifetimeState, SaConfig, SaStats, SoftLatch};
use crate::packet::{
    self, field, HEADER_LEN, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NEXT_HEADER_NONE, TRAILER_LEN,
};

/// What an inner packet is, as carried in Next Header (RFC 4303 2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InnerKind {
    /// An IPv4 packet (Next Header 4).
    Ipv4,
    /// An IPv6 packet (Next Header 41).
    Ipv6,
    /// A dummy / TFC packet to discard (Next Header 59, RFC 4303 2.6).
    Dummy,
}

impl InnerKind {
    /// The Next Header value.
    pub const fn next_header(self) -> u8 {
        match self {
            InnerKind::Ipv4 => NEXT_HEADER_IPV4,
            InnerKind::Ipv6 => NEXT_HEADER_IPV6,
            InnerKind::Dummy => NEXT_HEADER_NONE,
        }
    }

    /// The kind a Next Header value stands for in tunnel mode.
    pub const fn from_next_header(nh: u8) -> Option<Self> {
        match nh {
            NEXT_HEADER_IPV4 => Some(InnerKind::Ipv4),
            NEXT_HEADER_IPV6 => Some(InnerKind::Ipv6),
            NEXT_HEADER_NONE => Some(InnerKind::Dummy),
            _ => None,
        }
    }
}

/// A finished ESP packet inside the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    /// The ESP packet: from SPI to ICV.
    pub packet: Range<usize>,
    /// The 64-bit sequence number it carries (its low half on the wire with ESN).
    pub seq: u64,
    /// True on exactly one packet: the first after the SA crossed a soft limit.
    pub soft_limit_crossed: bool,
}

/// The sending half of a child SA.
pub struct OutboundSa {
    spi: u32,
    key: SaKey,
    /// AES-CBC only: where each packet's unpredictable IV comes from.
    ivgen: Option<IvGenerator>,
    esn: bool,
    /// Last sequence number sent; 0 before the first packet (RFC 4303 3.3.3).
    seq: u64,
    seq_soft: u64,
    seq_hard: u64,
    lifetime: Lifetime,
    soft: SoftLatch,
}

impl OutboundSa {
    /// Bytes the caller leaves before the inner packet for any algorithm: SPI, sequence
    /// number and the longest IV (AES-CBC's block). [`Self::head_len`] is one SA's need.
    pub const HEADROOM: usize = HEADER_LEN + AES_BLOCK_LEN;
    /// Bytes after the inner packet that cover any algorithm: up to a block of padding,
    /// Pad Length, Next Header, the longest ICV.
    pub const TAILROOM: usize = AES_BLOCK_LEN - 1 + TRAILER_LEN + MAX_ICV_LEN;

    /// Builds the SA from one direction's KEYMAT (RFC 7296 2.17: encryption key, then
    /// the 4-byte salt of AES-GCM or the integrity key of AES-CBC); expands the keys once.
    /// An AES-CBC SA also draws its IV key from the system RNG (see `IvGenerator`).
    pub fn new(
        spi: u32,
        algorithm: impl Into<Algorithm>,
        keymat: &[u8],
        config: &SaConfig,
    ) -> Result<Self, SaError> {
        let key = SaKey::new(algorithm.into(), keymat)?;
        let ivgen = match key {
            SaKey::Cbc(_) => Some(IvGenerator::random()?),
            SaKey::Aead(_) => None,
        };
        Ok(OutboundSa {
            spi,
            key,
            ivgen,
            esn: config.esn,
            seq: 0,
            seq_soft: config
                .seq_soft_limit
                .unwrap_or(SaConfig::default_seq_soft_limit(config.esn)),
            seq_hard: SaConfig::seq_hard_limit(config.esn),
            lifetime: Lifetime::new(config.lifetime),
            soft: SoftLatch::default(),
        })
    }

    /// The peer's SPI this SA sends to.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Whether 64-bit sequence numbers are in use.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// Bytes after an inner packet of `inner_len` bytes that cover any algorithm (at
    /// most [`Self::TAILROOM`]); [`Self::tail_len`] is one SA's need.
    pub const fn tailroom(inner_len: usize) -> usize {
        packet::pad_len(inner_len, AES_BLOCK_LEN) + TRAILER_LEN + MAX_ICV_LEN
    }

    /// Bytes of a buffer that holds the ESP packet for an inner packet of `inner_len`
    /// bytes at [`Self::HEADROOM`], whatever the algorithm.
    pub const fn encapsulated_len(inner_len: usize) -> usize {
        Self::HEADROOM + inner_len + Self::tailroom(inner_len)
    }

    /// Bytes this SA puts before the inner packet: 16 for AEAD, 24 for AES-CBC. A
    /// caller that places the inner packet this far into its buffer gets the ESP
    /// packet at offset 0.
    #[inline]
    pub fn head_len(&self) -> usize {
        self.key.algorithm().head_len()
    }

    /// Bytes this SA puts after an inner packet of `inner_len` bytes.
    #[inline]
    pub fn tail_len(&self, inner_len: usize) -> usize {
        let alg = self.key.algorithm();
        packet::pad_len(inner_len, alg.align()) + TRAILER_LEN + alg.icv_len()
    }

    /// Bytes of this SA's ESP packet for an inner packet of `inner_len` bytes.
    #[inline]
    pub fn packet_len(&self, inner_len: usize) -> usize {
        self.head_len() + inner_len + self.tail_len(inner_len)
    }

    /// Soft/hard state from bytes, packets and the sequence counter; a few compares,
    /// cheap enough to call once per batch.
    pub fn lifetime(&self) -> LifetimeState {
        if self.seq >= self.seq_hard || self.lifetime.hard_expired() {
            LifetimeState::HardExpired
        } else if self.is_soft() {
            LifetimeState::SoftExpired
        } else {
            LifetimeState::Valid
        }
    }

    #[inline]
    fn is_soft(&self) -> bool {
        self.seq >= self.seq_soft || self.lifetime.soft_expired()
    }

    /// Counters: bytes and packets sent, last sequence number.
    pub fn stats(&self) -> SaStats {
        SaStats {
            bytes: self.lifetime.bytes(),
            packets: self.lifetime.packets(),
            seq: self.seq,
        }
    }

    /// Moves the sequence counter forward so that the next packet carries `last + 1`.
    ///
    /// Never backwards, so no IV can repeat under the key (RFC 4106 3.1); for tests and
    /// for resuming an SA whose counter was persisted. Returns whether it moved.
    pub fn advance_seq(&mut self, last: u64) -> bool {
        if last > self.seq && last <= self.seq_hard {
            self.seq = last;
            true
        } else {
            false
        }
    }

    /// Encapsulates the IP packet at `buf[inner]` in place, its kind read from the version
    /// nibble.
    ///
    /// The caller leaves [`Self::head_len`] bytes before `inner.start` and
    /// [`Self::tail_len`] bytes after `inner.end` ([`Self::HEADROOM`] and
    /// [`Self::tailroom`] always do); `buf` may be a slot of a larger batch
    /// buffer. Nothing is allocated.
    #[inline]
    pub fn encapsulate(
        &mut self,
        buf: &mut [u8],
        inner: Range<usize>,
    ) -> Result<Encapsulated, EncapError> {
        let packet = buf.get(inner.clone()).ok_or(EncapError::BadRange)?;
        let kind = match packet.first().map(|b| b >> 4) {
            Some(4) => InnerKind::Ipv4,
            Some(6) => InnerKind::Ipv6,
            _ => return Err(EncapError::NotIp),
        };
        self.encapsulate_as(buf, inner, kind)
    }

    /// Like [`Self::encapsulate`] with an explicit kind; `InnerKind::Dummy` sends a TFC
    /// dummy packet (RFC 4303 2.6) whose content the peer discards.
    pub fn encapsulate_as(
        &mut self,
        buf: &mut [u8],
        inner: Range<usize>,
        kind: InnerKind,
    ) -> Result<Encapsulated, EncapError> {
        if self.lifetime.hard_expired() {
            return Err(EncapError::LifetimeExpired);
        }
        if self.seq >= self.seq_hard {
            return Err(EncapError::SequenceExhausted);
        }
        self.check_room(buf.len(), &inner)?;
        // Consume the number before sealing: a sequence number (and so an IV) is never
        // used twice, whatever happens below (RFC 4106 3.1).
        let seq = self.seq + 1;
        self.seq = seq;
        let inner_len = inner.end - inner.start;
        let packet = match &self.ivgen {
            // RFC 4106 3.1: the sequence number is a fine GCM/ChaCha IV (unique per key).
            None => self.seal(buf, inner, kind.next_header(), seq, &seq.to_be_bytes())?,
            Some(ivgen) => self.seal(buf, inner, kind.next_header(), seq, &ivgen.iv(seq))?,
        };
        self.lifetime.record(inner_len);
        Ok(Encapsulated {
            packet,
            seq,
            soft_limit_crossed: self.soft.crossed(self.is_soft()),
        })
    }

    /// Checks that `inner` lies in the buffer with this SA's head- and tailroom around it.
    #[inline]
    fn check_room(&self, buf_len: usize, inner: &Range<usize>) -> Result<(), EncapError> {
        if inner.start > inner.end || inner.end > buf_len {
            return Err(EncapError::BadRange);
        }
        if inner.start < self.head_len() {
            return Err(EncapError::NoHeadroom);
        }
        if buf_len - inner.end < self.tail_len(inner.end - inner.start) {
            return Err(EncapError::NoTailroom);
        }
        Ok(())
    }

    /// Writes trailer and header around `buf[inner]` and seals it with `iv` (the
    /// algorithm's IV length). `check_room` passed.
    #[inline]
    pub(crate) fn seal(
        &self,
        buf: &mut [u8],
        inner: Range<usize>,
        next_header: u8,
        seq: u64,
        iv: &[u8],
    ) -> Result<Range<usize>, EncapError> {
        let alg = self.key.algorithm();
        let head_len = alg.head_len();
        let start = inner
            .start
            .checked_sub(head_len)
            .ok_or(EncapError::NoHeadroom)?;
        let payload_len = inner.end - inner.start;
        let trailer_end = inner.end + packet::pad_len(payload_len, alg.align()) + TRAILER_LEN;
        let end = trailer_end + alg.icv_len();
        let pkt = buf.get_mut(start..end).ok_or(EncapError::NoTailroom)?;
        let (covered, icv) = pkt.split_at_mut(trailer_end - start);
        let (head, plaintext) = covered.split_at_mut(head_len);
        packet::write_trailer(&mut plaintext[payload_len..], next_header);
        head[field::SPI].copy_from_slice(&self.spi.to_be_bytes());
        head[field::SEQ].copy_from_slice(&(seq as u32).to_be_bytes());
        head.get_mut(HEADER_LEN..)
            .filter(|h| h.len() == iv.len())
            .ok_or(EncapError::Seal)?
            .copy_from_slice(iv);

        match &self.key {
            SaKey::Aead(key) => {
                let iv = iv.try_into().map_err(|_| EncapError::Seal)?;
                let (aad, aad_len) = aad(self.spi, seq, self.esn);
                let tag = key
                    .seal(iv, &aad[..aad_len], plaintext)
                    .ok_or(EncapError::Seal)?;
                icv.copy_from_slice(&tag);
            }
            SaKey::Cbc(key) => {
                // Encrypt, then MAC header || IV || ciphertext (RFC 4303 3.3.2.1).
                let iv = iv.try_into().map_err(|_| EncapError::Seal)?;
                key.encrypt(iv, plaintext);
                key.sign(covered, self.seq_hi(seq), icv);
            }
        }
        Ok(start..end)
    }

    /// With ESN, the high half of the sequence number, which the ICV covers but the
    /// packet does not carry (RFC 4303 2.2.1).
    #[inline]
    fn seq_hi(&self, seq: u64) -> Option<u32> {
        self.esn.then_some((seq >> 32) as u32)
    }
}

/// AAD = SPI || Sequence Number, or SPI || seq high || seq low with ESN (RFC 4106 5).
#[inline]
pub(crate) fn aad(spi: u32, seq: u64, esn: bool) -> ([u8; 12], usize) {
    let mut a = [0u8; 12];
    a[0..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        a[4..12].copy_from_slice(&seq.to_be_bytes());
        (a, 12)
    } else {
        a[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        (a, 8)
    }
}

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that no key material can ever slip in.
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("algorithm", &self.key.algorithm())
            .field("esn", &self.esn)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}
