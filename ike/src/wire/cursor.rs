//! A bounds-checked reader over a byte slice and big-endian writers: every parser in
//! `wire` reads through [`Reader`], so no peer input can index out of bounds.

use super::WireError;

/// Reads big-endian fields from the front of a slice; every read is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the front of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True once everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes, or `Truncated(what)`.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(WireError::Truncated(what))?;
        self.buf = tail;
        Ok(head)
    }

    /// The next substructure whose own 16-bit length field sits `len_at` bytes into it
    /// and counts the whole substructure, which is at least `min` bytes long.
    pub(crate) fn sub(
        &mut self,
        len_at: usize,
        min: usize,
        what: &'static str,
    ) -> Result<&'a [u8], WireError> {
        let len = match self.buf.get(len_at..len_at + 2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(WireError::Truncated(what)),
        };
        if len < min {
            return Err(WireError::BadLength(what));
        }
        self.take(len, what)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated(what))?;
        self.buf = tail;
        Ok(*head)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A big-endian u16.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
}

/// Reads a big-endian u16 at `at`; the caller has checked the length.
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Appends a big-endian u16.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a length that the encoder knows fits 16 bits; larger values, which only a
/// local caller can produce, saturate instead of wrapping.
pub(crate) fn put_len16(out: &mut Vec<u8>, len: usize) {
    put_u16(out, u16::try_from(len).unwrap_or(u16::MAX));
}

/// Converts a count to the u8 of a count field, saturating (see [`put_len16`]).
pub(crate) fn count8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}
