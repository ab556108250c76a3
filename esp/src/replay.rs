//! Anti-replay window (RFC 4303 3.4.3) as an RFC 6479 ring of 64-bit blocks, and the
//! ESN high-bit inference of RFC 4303 Appendix A2.
//!
//! Advancing the window clears whole blocks instead of shifting the bitmap, so the cost
//! per packet is constant whatever the window size. The check runs before decryption and
//! the update only after the ICV verified (RFC 4303 3.4.3), so a forged packet never moves
//! the window.

use crate::error::{ReplayKind, SaError};

/// Default window: 1024 packets, enough for reordering across a batched, multi-queue path.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;
/// Largest supported window (2^20 packets, 256 KiB of bitmap).
pub const MAX_REPLAY_WINDOW: u32 = 1 << 20;
const MIN_REPLAY_WINDOW: u32 = 64;

/// The receiver's window over 64-bit sequence numbers (the high half is 0 without ESN).
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    /// Highest authenticated sequence number received (0: none yet).
    top: u64,
    /// Window size W in packets.
    size: u64,
    /// Ring of 2 * W / 64 blocks: W bits plus a spare block, rounded to a power of two,
    /// so that (top - W, top] never needs the block that holds top's slot.
    blocks: Box<[u64]>,
    mask: u64,
}

impl ReplayWindow {
    /// A window of `size` packets (a power of two in 64..=2^20); allocated once per SA.
    pub(crate) fn new(size: u32) -> Result<Self, SaError> {
        if !size.is_power_of_two() || !(MIN_REPLAY_WINDOW..=MAX_REPLAY_WINDOW).contains(&size) {
            return Err(SaError::ReplayWindow(size));
        }
        let nblocks = 2 * (size as usize) / 64;
        Ok(ReplayWindow {
            top: 0,
            size: u64::from(size),
            blocks: vec![0u64; nblocks].into_boxed_slice(),
            mask: nblocks as u64 - 1,
        })
    }

    /// Highest authenticated sequence number so far.
    pub(crate) fn top(&self) -> u64 {
        self.top
    }

    /// Window size in packets.
    pub(crate) fn size(&self) -> u32 {
        self.size as u32
    }

    /// RFC 4303 Appendix A2.2: the 64-bit sequence number a received low half stands for,
    /// given the window. `None` when it would fall below 0 or above 2^64 - 1.
    #[inline]
    pub(crate) fn infer_esn(&self, seq_lo: u32) -> Option<u64> {
        let w = self.size as u32;
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let seq_hi = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= tl - (w - 1) {
                th
            } else {
                th.checked_add(1)?
            }
        } else if seq_lo >= tl.wrapping_sub(w - 1) {
            // Case B: the window spans two subspaces and seq_lo is in the lower one.
            th.checked_sub(1)?
        } else {
            th
        };
        Some((u64::from(seq_hi) << 32) | u64::from(seq_lo))
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        (((seq >> 6) & self.mask) as usize, 1u64 << (seq & 63))
    }

    /// RFC 4303 3.4.3 check, before decryption: never changes the window.
    #[inline]
    pub(crate) fn check(&self, seq: u64) -> Result<(), ReplayKind> {
        // The first packet carries 1 (RFC 4303 3.3.3); 0 is never sent.
        if seq == 0 {
            return Err(ReplayKind::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayKind::TooOld);
        }
        let (i, bit) = self.slot(seq);
        match self.blocks.get(i) {
            Some(b) if b & bit == 0 => Ok(()),
            _ => Err(ReplayKind::Duplicate),
        }
    }

    /// Marks `seq` received, after its ICV verified; slides the window if it is new.
    #[inline]
    pub(crate) fn update(&mut self, seq: u64) {
        if seq > self.top {
            let old_block = self.top >> 6;
            let new_block = seq >> 6;
            // Clear the blocks entering the window; at most the whole ring.
            let n = (new_block - old_block).min(self.mask + 1);
            for k in 1..=n {
                let i = ((old_block + k) & self.mask) as usize;
                if let Some(b) = self.blocks.get_mut(i) {
                    *b = 0;
                }
            }
            self.top = seq;
        }
        let (i, bit) = self.slot(seq);
        if let Some(b) = self.blocks.get_mut(i) {
            *b |= bit;
        }
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq: u64) -> Result<(), ReplayKind> {
        w.check(seq)?;
        w.update(seq);
        Ok(())
    }

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(64).is_ok());
        assert!(ReplayWindow::new(1024).is_ok());
        assert_eq!(
            ReplayWindow::new(100).err(),
            Some(SaError::ReplayWindow(100))
        );
        assert_eq!(ReplayWindow::new(32).err(), Some(SaError::ReplayWindow(32)));
        assert!(ReplayWindow::new(1 << 21).is_err());
    }

    #[test]
    fn in_order_duplicate_and_old() {
        let mut w = ReplayWindow::new(64).unwrap();
        assert_eq!(w.check(0), Err(ReplayKind::TooOld));
        for s in 1..=200 {
            assert_eq!(accept(&mut w, s), Ok(()));
        }
        assert_eq!(w.check(200), Err(ReplayKind::Duplicate));
        assert_eq!(w.check(137), Err(ReplayKind::Duplicate));
        assert_eq!(w.check(136), Err(ReplayKind::TooOld));
        assert_eq!(w.check(201), Ok(()));
    }

    #[test]
    fn reordered_inside_window_and_jump() {
        let mut w = ReplayWindow::new(1024).unwrap();
        assert_eq!(accept(&mut w, 5000), Ok(()));
        // Everything in (5000 - 1024, 5000) is still acceptable exactly once.
        for s in (3977..5000).rev() {
            assert_eq!(accept(&mut w, s), Ok(()), "seq {s}");
            assert_eq!(w.check(s), Err(ReplayKind::Duplicate));
        }
        assert_eq!(w.check(3976), Err(ReplayKind::TooOld));
        // Far ahead: the whole ring is stale and must read as clear.
        assert_eq!(accept(&mut w, 1_000_000), Ok(()));
        for s in (1_000_000 - 1023)..1_000_000 {
            assert_eq!(w.check(s), Ok(()), "seq {s}");
        }
        assert_eq!(w.check(1_000_000 - 1024), Err(ReplayKind::TooOld));
        assert_eq!(w.check(5000), Err(ReplayKind::TooOld));
    }

    #[test]
    fn check_does_not_mutate() {
        let mut w = ReplayWindow::new(64).unwrap();
        accept(&mut w, 10).unwrap();
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w.top(), 10);
    }

    #[test]
    fn block_boundaries() {
        let mut w = ReplayWindow::new(64).unwrap();
        for s in [63, 64, 65, 127, 128, 129, 191] {
            assert_eq!(accept(&mut w, s), Ok(()), "seq {s}");
        }
        assert_eq!(w.check(128), Err(ReplayKind::Duplicate));
        assert_eq!(w.check(130), Ok(()));
        assert_eq!(w.check(127), Err(ReplayKind::TooOld));
    }

    #[test]
    fn esn_inference_cases() {
        let mut w = ReplayWindow::new(64).unwrap();
        // Fresh window (Case B with Th = 0): low values map to subspace 0; values just
        // under 2^32 would need subspace -1 and are rejected.
        assert_eq!(w.infer_esn(1), Some(1));
        assert_eq!(w.infer_esn(u32::MAX), None);
        // Case A inside subspace 0.
        accept(&mut w, 0xffff_fff0).unwrap();
        assert_eq!(w.infer_esn(0xffff_ffb1), Some(0xffff_ffb1));
        assert_eq!(w.infer_esn(0xffff_fff8), Some(0xffff_fff8));
        // Below the window's left edge: next subspace (RFC 4303 A2.2 case A).
        assert_eq!(w.infer_esn(3), Some(0x1_0000_0003));
        // Case B after crossing 2^32.
        accept(&mut w, 0x1_0000_0003).unwrap();
        assert_eq!(w.infer_esn(0xffff_fff9), Some(0xffff_fff9));
        assert_eq!(w.infer_esn(2), Some(0x1_0000_0002));
        assert_eq!(w.infer_esn(100), Some(0x1_0000_0064));
        // Top of the 64-bit space: Th + 1 would overflow.
        let mut w = ReplayWindow::new(64).unwrap();
        w.update(u64::MAX - 1);
        assert_eq!(w.infer_esn(u32::MAX), Some(u64::MAX));
        assert_eq!(w.infer_esn(5), None);
    }
}
