//! Whole IKE messages (RFC 7296 3.1, 3.2): the header and the chain of payloads, each
//! naming the type of the next.

use super::{Encrypted, EncryptedFragment, Header, Message, Payload, WireError, MAX_PAYLOADS};
use crate::iana::{payload as pt, NotifyType, PayloadType};

/// Parses a payload chain that fills `buf` exactly, starting with a payload of type
/// `first`; `base_offset` is where `buf` starts in the message. With `outer`, an SK or
/// SKF payload may end the chain (RFC 7296 3.14: it must be last); inside an SK payload
/// neither may appear.
pub fn parse_chain(
    first: PayloadType,
    buf: &[u8],
    base_offset: usize,
    outer: bool,
) -> Result<Vec<Payload>, WireError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut pos = 0;
    while next != pt::NONE {
        if payloads.len() >= MAX_PAYLOADS {
            return Err(WireError::TooMany("payloads"));
        }
        let rest = buf.get(pos..).ok_or(WireError::Truncated("payload"))?;
        let (payload, following, used) = Payload::parse(next, rest, base_offset + pos)?;
        pos += used;
        let encrypted = matches!(payload, Payload::Sk(_) | Payload::Skf(_));
        payloads.push(payload);
        if encrypted {
            // The SK/SKF header's Next Payload names the first inner payload, so the
            // chain ends here and nothing may follow.
            if !outer {
                return Err(WireError::Invalid("nested encrypted payload"));
            }
            if pos != buf.len() {
                return Err(WireError::Invalid("payload after encrypted payload"));
            }
            return Ok(payloads);
        }
        next = following;
    }
    if pos != buf.len() {
        return Err(WireError::BadLength("payload chain"));
    }
    Ok(payloads)
}

/// Bytes a payload chain takes.
pub fn chain_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// Appends a payload chain, each generic header naming the next payload's type.
pub fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(pt::NONE, Payload::kind);
        p.emit(next, out);
    }
}

impl Message {
    /// A message whose header's `next_payload` and `length` match `payloads`.
    pub fn new(mut header: Header, payloads: Vec<Payload>) -> Self {
        header.next_payload = payloads.first().map_or(pt::NONE, Payload::kind);
        header.length = u32::try_from(Header::LEN + chain_len(&payloads)).unwrap_or(u32::MAX);
        Message { header, payloads }
    }

    /// Decodes a whole message: any input gives `Ok` or `Err`, never a panic. The
    /// length field must match `bytes` exactly (the caller has removed the non-ESP
    /// marker on port 4500).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let header = Header::parse(bytes)?;
        // RFC 7296 2.5: only major version 2; the caller may still answer with
        // INVALID_MAJOR_VERSION using `Header::parse`.
        if header.major_version() != 2 {
            return Err(WireError::UnsupportedVersion(header.major_version()));
        }
        let len = usize::try_from(header.length).map_err(|_| WireError::BadLength("message"))?;
        if len < Header::LEN {
            return Err(WireError::BadLength("message"));
        }
        if len > bytes.len() {
            return Err(WireError::Truncated("message"));
        }
        if len < bytes.len() {
            return Err(WireError::BadLength("message"));
        }
        let body = bytes
            .get(Header::LEN..)
            .ok_or(WireError::Truncated("message"))?;
        let payloads = parse_chain(header.next_payload, body, Header::LEN, true)?;
        Ok(Message { header, payloads })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        Header::LEN + chain_len(&self.payloads)
    }

    /// Appends the message; the header's `next_payload` and `length` are computed from
    /// the payloads, not taken from `self.header`. An SK/SKF payload must be last.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut header = self.header;
        header.next_payload = self.payloads.first().map_or(pt::NONE, Payload::kind);
        header.length = u32::try_from(self.buffer_len()).unwrap_or(u32::MAX);
        header.emit(out);
        emit_chain(&self.payloads, out);
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }

    /// The SK payload, if the message ends with one.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        match self.payloads.last() {
            Some(Payload::Sk(sk)) => Some(sk),
            _ => None,
        }
    }

    /// The SKF payload, if the message ends with one.
    pub fn fragment(&self) -> Option<&EncryptedFragment> {
        match self.payloads.last() {
            Some(Payload::Skf(skf)) => Some(skf),
            _ => None,
        }
    }

    /// Notify payloads of the given type.
    pub fn notifies(&self, kind: NotifyType) -> impl Iterator<Item = &super::Notify> {
        self.payloads.iter().filter_map(move |p| match p {
            Payload::Notify(n) if n.kind == kind => Some(n),
            _ => None,
        })
    }
}
