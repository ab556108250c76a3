//! Inbound SA: tunnel-mode decapsulation in place (RFC 4303 3.4, RFC 4301 5.2).
//!
//! Order of checks, cheapest and stateless first: length (and, for AES-CBC, whole
//! blocks), SPI, hard lifetime, ESN inference and replay check (RFC 4303 3.4.3: before
//! the ICV), AEAD open or HMAC verify (RFC 4303 3.4.4.1: before any decryption), window
//! update (only now, so a forgery never moves it), CBC decryption, trailer, Next Header,
//! inner header, traffic selectors.

use core::fmt;
use core::ops::Range;

use crate::aead::IV_LEN;
use crate::algorithm::{Algorithm, SaKey};
use crate::cbc::AES_BLOCK_LEN;
use crate::error::{DropReason, MalformedReason, ReplayKind, SaError};
use crate::flow::{Family, Flow, FlowError};
use crate::lifetime::{Lifetime, LifetimeState, SaConfig, SaStats, SoftLatch};
use crate::outbound::{aad, InnerKind};
use crate::packet::{self, field, read_u32, HEADER_LEN};
use crate::replay::ReplayWindow;
use crate::selector::SaSelectors;

/// A decapsulated packet inside the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapsulated {
    /// SPI of the SA that accepted it.
    pub spi: u32,
    /// The inner packet, trimmed to its IP header's length (TFC padding removed,
    /// RFC 4303 2.7). For `Dummy` the discarded dummy data.
    pub inner: Range<usize>,
    /// IPv4, IPv6 or a dummy packet to discard (RFC 4303 2.6).
    pub kind: InnerKind,
    /// The full (inferred, with ESN) sequence number.
    pub seq: u64,
    /// True on exactly one packet: the first after the SA crossed a soft limit.
    pub soft_limit_crossed: bool,
}

/// Result of the cryptographic half of decapsulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Payload without padding and trailer.
    pub(crate) data: Range<usize>,
    pub(crate) next_header: u8,
    pub(crate) seq: u64,
}

/// The receiving half of a child SA.
pub struct InboundSa {
    spi: u32,
    key: SaKey,
    esn: bool,
    replay: ReplayWindow,
    lifetime: Lifetime,
    seq_soft: u64,
    soft: SoftLatch,
    selectors: SaSelectors,
}

impl InboundSa {
    /// Builds the SA from one direction's KEYMAT (RFC 7296 2.17: encryption key, then
    /// the 4-byte salt of AES-GCM or the integrity key of AES-CBC) and the negotiated
    /// traffic selectors; allocates the replay bitmap once.
    pub fn new(
        spi: u32,
        algorithm: impl Into<Algorithm>,
        keymat: &[u8],
        config: &SaConfig,
        selectors: SaSelectors,
    ) -> Result<Self, SaError> {
        Ok(InboundSa {
            spi,
            key: SaKey::new(algorithm.into(), keymat)?,
            esn: config.esn,
            replay: ReplayWindow::new(config.replay_window)?,
            lifetime: Lifetime::new(config.lifetime),
            seq_soft: config
                .seq_soft_limit
                .unwrap_or(SaConfig::default_seq_soft_limit(config.esn)),
            soft: SoftLatch::default(),
            selectors,
        })
    }

    /// Our SPI, which the peer sends to.
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

    /// Anti-replay window size in packets.
    pub fn replay_window(&self) -> u32 {
        self.replay.size()
    }

    /// The traffic selectors inner packets are checked against.
    pub fn selectors(&self) -> &SaSelectors {
        &self.selectors
    }

    /// Soft/hard state from bytes, packets and the highest sequence number; a few
    /// compares, cheap enough to call once per batch.
    pub fn lifetime(&self) -> LifetimeState {
        if self.lifetime.hard_expired() {
            LifetimeState::HardExpired
        } else if self.is_soft() {
            LifetimeState::SoftExpired
        } else {
            LifetimeState::Valid
        }
    }

    #[inline]
    fn is_soft(&self) -> bool {
        self.lifetime.soft_expired() || self.replay.top() >= self.seq_soft
    }

    /// Counters: bytes and packets accepted, highest sequence number authenticated.
    pub fn stats(&self) -> SaStats {
        SaStats {
            bytes: self.lifetime.bytes(),
            packets: self.lifetime.packets(),
            seq: self.replay.top(),
        }
    }

    /// Moves the window forward as if `seq` had been authenticated (never backwards);
    /// for tests and for resuming an SA whose window was persisted.
    pub fn advance_window(&mut self, seq: u64) {
        if seq > self.replay.top() {
            self.replay.update(seq);
        }
    }

    /// Decapsulates the ESP packet at `buf[esp]` in place: the inner packet stays where
    /// the ciphertext was. Nothing is allocated.
    #[inline]
    pub fn decapsulate(
        &mut self,
        buf: &mut [u8],
        esp: Range<usize>,
    ) -> Result<Decapsulated, DropReason> {
        let opened = self.open(buf, esp)?;
        let kind = InnerKind::from_next_header(opened.next_header)
            .ok_or(DropReason::Malformed(MalformedReason::BadNextHeader))?;
        let mut inner = opened.data;
        if kind != InnerKind::Dummy {
            let packet = buf.get(inner.clone()).unwrap_or(&[]);
            let flow = Flow::parse(packet).map_err(|e| {
                DropReason::Malformed(match e {
                    FlowError::NotIp => MalformedReason::InnerVersion,
                    _ => MalformedReason::InnerHeader,
                })
            })?;
            let want = if kind == InnerKind::Ipv4 {
                Family::V4
            } else {
                Family::V6
            };
            if flow.family != want {
                return Err(DropReason::Malformed(MalformedReason::InnerVersion));
            }
            if !self.selectors.admits_inbound(&flow) {
                return Err(DropReason::SelectorMismatch);
            }
            // Anything after the IP packet is TFC padding (RFC 4303 2.7).
            inner.end = inner.start + flow.ip_len;
        }
        Ok(Decapsulated {
            spi: self.spi,
            inner,
            kind,
            seq: opened.seq,
            soft_limit_crossed: self.soft.crossed(self.is_soft()),
        })
    }

    /// Everything up to and including the trailer: the part the test vectors pin down.
    #[inline]
    pub(crate) fn open(&mut self, buf: &mut [u8], esp: Range<usize>) -> Result<Opened, DropReason> {
        let base = esp.start;
        let pkt = buf
            .get_mut(esp)
            .ok_or(DropReason::Malformed(MalformedReason::BadRange))?;
        let alg = self.key.algorithm();
        if pkt.len() < alg.min_len() {
            return Err(DropReason::Malformed(MalformedReason::TooShort));
        }
        let icv_at = pkt.len() - alg.icv_len();
        if alg.align() == AES_BLOCK_LEN && (icv_at - alg.head_len()) % AES_BLOCK_LEN != 0 {
            return Err(DropReason::Malformed(MalformedReason::NotBlockAligned));
        }
        if read_u32(pkt, field::SPI.start) != self.spi {
            return Err(DropReason::UnknownSpi);
        }
        if self.lifetime.hard_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        let seq_lo = read_u32(pkt, field::SEQ.start);
        let seq = if self.esn {
            self.replay
                .infer_esn(seq_lo)
                .ok_or(DropReason::Replay(ReplayKind::TooOld))?
        } else {
            u64::from(seq_lo)
        };
        self.replay.check(seq).map_err(DropReason::Replay)?;

        let head_len = alg.head_len();
        let pt_len = match &self.key {
            SaKey::Aead(key) => {
                let (head, sealed) = pkt.split_at_mut(head_len);
                let mut iv = [0u8; IV_LEN];
                iv.copy_from_slice(&head[field::IV]);
                let (aad, aad_len) = aad(self.spi, seq, self.esn);
                key.open(&iv, &aad[..aad_len], sealed)
                    .ok_or(DropReason::IcvMismatch)?
            }
            SaKey::Cbc(key) => {
                let (covered, icv) = pkt.split_at_mut(icv_at);
                let seq_hi = self.esn.then_some((seq >> 32) as u32);
                // RFC 4303 3.4.4.1: the ICV first; nothing is decrypted for a forgery.
                if !key.verify(covered, seq_hi, icv) {
                    return Err(DropReason::IcvMismatch);
                }
                let (head, ciphertext) = covered.split_at_mut(head_len);
                let mut iv = [0u8; AES_BLOCK_LEN];
                iv.copy_from_slice(&head[HEADER_LEN..]);
                key.decrypt(&iv, ciphertext);
                ciphertext.len()
            }
        };
        // Authentic: only now may the window move (RFC 4303 3.4.3).
        self.replay.update(seq);

        let plaintext = pkt.get(head_len..head_len + pt_len).unwrap_or(&[]);
        let trailer = packet::parse_trailer(plaintext);
        self.lifetime
            .record(trailer.map_or(pt_len, |(data_len, _)| data_len));
        let (data_len, next_header) = trailer.map_err(DropReason::Malformed)?;
        let data_start = base + head_len;
        Ok(Opened {
            data: data_start..data_start + data_len,
            next_header,
            seq,
        })
    }
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that no key material can ever slip in.
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("algorithm", &self.key.algorithm())
            .field("esn", &self.esn)
            .field("replay", &self.replay)
            .field("selectors", &self.selectors)
            .finish_non_exhaustive()
    }
}
