//! EAP payload (RFC 7296 3.16): one EAP message (RFC 3748), kept opaque here but for a
//! check that its own length field matches the payload.
//!
//! ```text
//! |     Code      | Identifier    |           Length              |
//! | Type          | Type_Data...
//! ```

use super::cursor::Reader;
use super::WireError;

/// Decodes an EAP payload body: the whole EAP message.
pub fn parse(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut r = Reader::new(body);
    r.take(2, "EAP message")?;
    let len = r.u16("EAP message")?;
    if usize::from(len) != body.len() {
        return Err(WireError::BadLength("EAP message"));
    }
    Ok(body.to_vec())
}

/// Length of the body.
pub fn buffer_len(msg: &[u8]) -> usize {
    msg.len()
}

/// Appends the body.
pub fn emit(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_must_match() {
        // EAP-Success, identifier 5.
        let success = [3, 5, 0, 4];
        assert_eq!(parse(&success), Ok(success.to_vec()));
        assert!(parse(&[3, 5, 0, 5]).is_err());
        assert!(parse(&[3, 5, 0]).is_err());
        let mut out = Vec::new();
        emit(&success, &mut out);
        assert_eq!(out, success);
        assert_eq!(buffer_len(&out), 4);
    }
}
