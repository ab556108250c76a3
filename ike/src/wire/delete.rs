//! Delete payload (RFC 7296 3.11).
//!
//! ```text
//! | Protocol ID   |   SPI Size    |          Num of SPIs          |
//! ~               Security Parameter Index(es) (SPI)              ~
//! ```

use super::cursor::{count8, put_len16, Reader};
use super::{Delete, WireError, MAX_DELETE_SPIS};
use crate::iana::protocol;

impl Delete {
    /// Deletes the IKE SA the message belongs to (no SPIs: they are in the header).
    pub fn ike() -> Self {
        Delete {
            protocol: protocol::IKE,
            spis: Vec::new(),
        }
    }

    /// Deletes ESP SAs by their inbound SPIs.
    pub fn esp(spis: impl IntoIterator<Item = u32>) -> Self {
        Delete {
            protocol: protocol::ESP,
            spis: spis.into_iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs that are 4 bytes long, as numbers (AH and ESP).
    pub fn spis_u32(&self) -> impl Iterator<Item = u32> + '_ {
        self.spis
            .iter()
            .filter_map(|s| <[u8; 4]>::try_from(s.as_slice()).ok())
            .map(u32::from_be_bytes)
    }

    /// Decodes a Delete payload body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let protocol = r.u8("Delete payload")?;
        let spi_size = usize::from(r.u8("Delete payload")?);
        let count = usize::from(r.u16("Delete payload")?);
        if count > MAX_DELETE_SPIS {
            return Err(WireError::TooMany("SPIs in Delete"));
        }
        // RFC 7296 3.11: SPIs are zero bytes for IKE, four for AH and ESP; a count with
        // empty SPIs would be meaningless.
        if spi_size == 0 && count != 0 {
            return Err(WireError::Invalid("Delete SPI size"));
        }
        if r.remaining() != spi_size * count {
            return Err(WireError::BadLength("Delete payload"));
        }
        let mut spis = Vec::with_capacity(count);
        for _ in 0..count {
            spis.push(r.take(spi_size, "Delete SPI")?.to_vec());
        }
        Ok(Delete { protocol, spis })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.spis.iter().map(Vec::len).sum::<usize>()
    }

    /// Appends the body. The SPI size is the first SPI's length, or without SPIs zero for
    /// IKE and four otherwise; SPIs of mixed lengths are the caller's bug.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let spi_size = match self.spis.first() {
            Some(spi) => spi.len(),
            None if self.protocol == protocol::IKE => 0,
            None => 4,
        };
        out.push(self.protocol);
        out.push(count8(spi_size));
        put_len16(out, self.spis.len());
        for spi in &self.spis {
            out.extend_from_slice(spi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_round_trip() {
        let bytes = [3, 4, 0, 2, 0xc1, 0, 0, 1, 0xc1, 0, 0, 2];
        let d = Delete::esp([0xc100_0001, 0xc100_0002]);
        assert_eq!(Delete::parse(&bytes), Ok(d.clone()));
        let mut out = Vec::new();
        d.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(d.buffer_len(), bytes.len());
        assert_eq!(d.spis_u32().collect::<Vec<_>>(), [0xc100_0001, 0xc100_0002]);
        for n in 0..bytes.len() {
            assert!(Delete::parse(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn ike_round_trip() {
        let mut out = Vec::new();
        Delete::ike().emit(&mut out);
        assert_eq!(out, [1, 0, 0, 0]);
        assert_eq!(Delete::parse(&out), Ok(Delete::ike()));
    }

    #[test]
    fn rejects_bad_counts() {
        // Zero-byte SPIs with a count: would allocate without consuming input.
        assert!(Delete::parse(&[3, 0, 0xff, 0xff]).is_err());
        // Count above the limit.
        let mut many = vec![3, 4, 0, 65];
        many.extend(std::iter::repeat_n(0, 65 * 4));
        assert_eq!(
            Delete::parse(&many),
            Err(WireError::TooMany("SPIs in Delete"))
        );
        // Trailing byte.
        assert!(Delete::parse(&[3, 4, 0, 1, 1, 2, 3, 4, 5]).is_err());
    }
}
