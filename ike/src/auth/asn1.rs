//! The few raw DER operations the X.509 types do not cover: raw TBS bytes, RSASSA-PSS
//! parameters, SEC1 wrapping.

/// DER tags used here.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const UTF8_STRING: u8 = 0x0c;
    pub(crate) const PRINTABLE_STRING: u8 = 0x13;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;
}

/// One TLV: its tag, contents, the whole encoding, and what follows it.
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
    pub(crate) whole: &'a [u8],
    pub(crate) rest: &'a [u8],
}

/// Reads one definite-length TLV (single-byte tags), or None if truncated.
pub(crate) fn read(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after) = input.split_first()?;
    let (&first, after) = after.split_first()?;
    let (len, after) = if first < 0x80 {
        (usize::from(first), after)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after.len() < n {
            return None;
        }
        let len = after[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &after[n..])
    };
    if after.len() < len {
        return None;
    }
    let header = input.len() - after.len();
    Some(Tlv {
        tag,
        value: &after[..len],
        whole: &input[..header + len],
        rest: &after[len..],
    })
}

/// Reads a TLV that must carry `tag`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<Tlv<'_>> {
    read(input).filter(|t| t.tag == tag)
}

/// Encodes one TLV.
pub(crate) fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}
