//! Vendor ID payload (RFC 7296 3.12): the body is the opaque vendor ID.

use super::WireError;

/// Decodes a Vendor ID payload body.
pub fn parse(body: &[u8]) -> Result<Vec<u8>, WireError> {
    Ok(body.to_vec())
}

/// Length of the body.
pub fn buffer_len(vid: &[u8]) -> usize {
    vid.len()
}

/// Appends the body.
pub fn emit(vid: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(vid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let vid = b"strongSwan".to_vec();
        let mut out = Vec::new();
        emit(&vid, &mut out);
        assert_eq!(buffer_len(&vid), out.len());
        assert_eq!(parse(&out), Ok(vid));
        assert_eq!(parse(&[]), Ok(vec![]));
    }
}
