//! Security Association Database for inbound traffic (RFC 4301 4.4.2): SAs by SPI.
//!
//! Our SPIs are unique on their own (we allocate them), so the SPI alone selects the
//! SA (RFC 4301 4.1: unicast SAs may be looked up by SPI only). One hash lookup per
//! packet whatever the number of SAs.

use std::collections::HashMap;

use core::ops::Range;

use crate::error::{DropReason, MalformedReason};
use crate::hash::KeyHasherBuilder;
use crate::inbound::{Decapsulated, InboundSa};
use crate::packet::peek_spi;

/// Inbound SAs by SPI.
#[derive(Debug, Default)]
pub struct Sad {
    sas: HashMap<u32, Box<InboundSa>, KeyHasherBuilder>,
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs an SA; returns the one it replaced, if the SPI was taken.
    ///
    /// Each SA lives in its own allocation: the table holds pointers, so its spare
    /// capacity (up to half of it after a resize) costs 8 bytes a slot rather than an
    /// SA's kilobyte or so (about 100 MB at 100,000 SAs, issue 13).
    pub fn insert(&mut self, sa: impl Into<Box<InboundSa>>) -> Option<InboundSa> {
        let sa = sa.into();
        self.sas.insert(sa.spi(), sa).map(|old| *old)
    }

    /// Removes the SA with this SPI.
    pub fn remove(&mut self, spi: u32) -> Option<InboundSa> {
        self.sas.remove(&spi).map(|sa| *sa)
    }

    /// The SA with this SPI.
    pub fn get(&self, spi: u32) -> Option<&InboundSa> {
        self.sas.get(&spi).map(|sa| &**sa)
    }

    /// The SA with this SPI, mutably.
    pub fn get_mut(&mut self, spi: u32) -> Option<&mut InboundSa> {
        self.sas.get_mut(&spi).map(|sa| &mut **sa)
    }

    /// Whether an SA uses this SPI (to pick fresh SPIs).
    pub fn contains(&self, spi: u32) -> bool {
        self.sas.contains_key(&spi)
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// Whether there are no SAs.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// All SAs, in no particular order (for lifetime sweeps).
    pub fn iter(&self) -> impl Iterator<Item = &InboundSa> + '_ {
        self.sas.values().map(|sa| &**sa)
    }

    /// Reads the SPI of `buf[esp]`, finds its SA and decapsulates in place.
    #[inline]
    pub fn decapsulate(
        &mut self,
        buf: &mut [u8],
        esp: Range<usize>,
    ) -> Result<Decapsulated, DropReason> {
        let packet = buf
            .get(esp.clone())
            .ok_or(DropReason::Malformed(MalformedReason::BadRange))?;
        let spi = peek_spi(packet).ok_or(DropReason::Malformed(MalformedReason::TooShort))?;
        let sa = self.sas.get_mut(&spi).ok_or(DropReason::UnknownSpi)?;
        sa.decapsulate(buf, esp)
    }
}
