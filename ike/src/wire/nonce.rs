//! Nonce payload (RFC 7296 3.9): the body is the nonce data itself.

use super::WireError;

/// Shortest nonce a peer may send (RFC 7296 3.9).
pub const MIN_NONCE_LEN: usize = 16;
/// Longest nonce a peer may send (RFC 7296 3.9).
pub const MAX_NONCE_LEN: usize = 256;

/// Decodes a Nonce payload body: 16 to 256 bytes (RFC 7296 3.9).
pub fn parse(body: &[u8]) -> Result<Vec<u8>, WireError> {
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&body.len()) {
        return Err(WireError::BadLength("Nonce payload"));
    }
    Ok(body.to_vec())
}

/// Length of the body.
pub fn buffer_len(nonce: &[u8]) -> usize {
    nonce.len()
}

/// Appends the body.
pub fn emit(nonce: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(nonce);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_bounds() {
        assert!(parse(&[0; 15]).is_err());
        assert_eq!(parse(&[7; 16]), Ok(vec![7; 16]));
        assert_eq!(parse(&[7; 256]), Ok(vec![7; 256]));
        assert!(parse(&[0; 257]).is_err());
        let mut out = Vec::new();
        emit(&[1; 32], &mut out);
        assert_eq!(out, [1; 32]);
        assert_eq!(buffer_len(&out), 32);
    }
}
