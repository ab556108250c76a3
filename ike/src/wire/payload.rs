//! The generic payload header (RFC 7296 3.2) and dispatch from payload type to the
//! codec of each payload body.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::cursor::{be16, put_len16};
use super::{
    eap, nonce, sa, ts, vendor, Authentication, Certificate, Configuration, Delete, Encrypted,
    EncryptedFragment, Identification, KeyExchange, Notify, Payload, WireError,
};
use crate::iana::{payload as pt, PayloadType};

/// Byte ranges of the generic payload header.
pub mod field {
    use std::ops::Range;

    /// Type of the next payload.
    pub const NEXT_PAYLOAD: usize = 0;
    /// Critical bit (most significant) and reserved bits.
    pub const FLAGS: usize = 1;
    /// Length of the payload including this header.
    pub const LENGTH: Range<usize> = 2..4;
    /// Start of the payload body.
    pub const BODY: usize = 4;
}

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;

// RFC 7296 3.2: the critical bit is the most significant bit of the second octet.
const CRITICAL: u8 = 0x80;

/// A read-only view of one payload at the front of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct PayloadPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PayloadPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is short.
    pub fn new_unchecked(buffer: T) -> Self {
        PayloadPacket { buffer }
    }

    /// Wraps a buffer whose front holds a whole payload: the header fits and the
    /// length field is at least the header and at most the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < GENERIC_HEADER_LEN {
            return Err(WireError::Truncated("payload header"));
        }
        let len = usize::from(be16(buf, field::LENGTH.start));
        if len < GENERIC_HEADER_LEN {
            return Err(WireError::BadLength("payload header"));
        }
        if len > buf.len() {
            return Err(WireError::Truncated("payload"));
        }
        Ok(PayloadPacket { buffer })
    }

    /// Type of the payload that follows this one.
    pub fn next_payload(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_PAYLOAD]
    }

    /// Critical bit: a receiver that does not know this payload must reject the
    /// message (RFC 7296 2.5).
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & CRITICAL != 0
    }

    /// Payload length including the generic header.
    pub fn length(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::LENGTH.start))
    }

    /// The payload body.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..self.length()]
    }
}

/// Appends a generic payload header; a body too large for the 16-bit length is the
/// caller's bug and saturates.
pub fn emit_generic_header(next_payload: PayloadType, body_len: usize, out: &mut Vec<u8>) {
    out.push(next_payload.0);
    // RFC 7296 3.2: we send the critical bit clear for every payload type we define.
    out.push(0);
    put_len16(out, GENERIC_HEADER_LEN + body_len);
}

impl Payload {
    /// Payload type number (`crate::iana::payload`).
    pub fn kind(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => pt::SA,
            Payload::Ke(_) => pt::KE,
            Payload::IdI(_) => pt::IDI,
            Payload::IdR(_) => pt::IDR,
            Payload::IdPeer(_) => pt::ID_PEER,
            Payload::Cert(_) => pt::CERT,
            Payload::CertReq(_) => pt::CERTREQ,
            Payload::Auth(_) => pt::AUTH,
            Payload::Nonce(_) => pt::NONCE,
            Payload::Notify(_) => pt::NOTIFY,
            Payload::Delete(_) => pt::DELETE,
            Payload::VendorId(_) => pt::VENDOR_ID,
            Payload::TsI(_) => pt::TSI,
            Payload::TsR(_) => pt::TSR,
            Payload::Cp(_) => pt::CP,
            Payload::Eap(_) => pt::EAP,
            Payload::Sk(_) => pt::SK,
            Payload::Skf(_) => pt::SKF,
            Payload::Unknown { kind, .. } => *kind,
        }
    }

    /// Length of the body, without the generic header.
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(p) => sa::buffer_len(p),
            Payload::Ke(p) => p.buffer_len(),
            Payload::IdI(p) | Payload::IdR(p) | Payload::IdPeer(p) => p.buffer_len(),
            Payload::Cert(p) | Payload::CertReq(p) => p.buffer_len(),
            Payload::Auth(p) => p.buffer_len(),
            Payload::Nonce(p) => nonce::buffer_len(p),
            Payload::Notify(p) => p.buffer_len(),
            Payload::Delete(p) => p.buffer_len(),
            Payload::VendorId(p) => vendor::buffer_len(p),
            Payload::TsI(p) | Payload::TsR(p) => ts::buffer_len(p),
            Payload::Cp(p) => p.buffer_len(),
            Payload::Eap(p) => eap::buffer_len(p),
            Payload::Sk(p) => p.buffer_len(),
            Payload::Skf(p) => p.buffer_len(),
            Payload::Unknown { data, .. } => data.len(),
        }
    }

    /// Length on the wire including the generic header.
    pub fn buffer_len(&self) -> usize {
        GENERIC_HEADER_LEN + self.body_len()
    }

    /// Appends the body, without the generic header.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(p) => sa::emit(p, out),
            Payload::Ke(p) => p.emit(out),
            Payload::IdI(p) | Payload::IdR(p) | Payload::IdPeer(p) => p.emit(out),
            Payload::Cert(p) | Payload::CertReq(p) => p.emit(out),
            Payload::Auth(p) => p.emit(out),
            Payload::Nonce(p) => nonce::emit(p, out),
            Payload::Notify(p) => p.emit(out),
            Payload::Delete(p) => p.emit(out),
            Payload::VendorId(p) => vendor::emit(p, out),
            Payload::TsI(p) | Payload::TsR(p) => ts::emit(p, out),
            Payload::Cp(p) => p.emit(out),
            Payload::Eap(p) => eap::emit(p, out),
            Payload::Sk(p) => p.emit(out),
            Payload::Skf(p) => p.emit(out),
            Payload::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    /// Appends generic header and body; `next_payload` is the type of the payload that
    /// follows, except for SK and SKF whose header names their first inner payload.
    pub fn emit(&self, next_payload: PayloadType, out: &mut Vec<u8>) {
        let next = match self {
            Payload::Sk(p) => p.next_payload,
            Payload::Skf(p) => p.next_payload,
            _ => next_payload,
        };
        emit_generic_header(next, self.body_len(), out);
        self.emit_body(out);
    }

    /// Decodes the payload at the front of `buf` (header and body), whose type `kind`
    /// the previous header named. `header_offset` is where `buf` starts in the whole
    /// message (kept for SK/SKF). Returns the payload, the type of the next one and the
    /// bytes used.
    pub fn parse(
        kind: PayloadType,
        buf: &[u8],
        header_offset: usize,
    ) -> Result<(Payload, PayloadType, usize), WireError> {
        let packet = PayloadPacket::new_checked(buf)?;
        let body = packet.body();
        let next = PayloadType(packet.next_payload());
        let payload = match kind {
            pt::SA => Payload::Sa(sa::parse(body)?),
            pt::KE => Payload::Ke(KeyExchange::parse(body)?),
            pt::IDI => Payload::IdI(Identification::parse(body)?),
            pt::IDR => Payload::IdR(Identification::parse(body)?),
            pt::ID_PEER => Payload::IdPeer(Identification::parse(body)?),
            pt::CERT => Payload::Cert(Certificate::parse(body)?),
            pt::CERTREQ => Payload::CertReq(Certificate::parse(body)?),
            pt::AUTH => Payload::Auth(Authentication::parse(body)?),
            pt::NONCE => Payload::Nonce(nonce::parse(body)?),
            pt::NOTIFY => Payload::Notify(Notify::parse(body)?),
            pt::DELETE => Payload::Delete(Delete::parse(body)?),
            pt::VENDOR_ID => Payload::VendorId(vendor::parse(body)?),
            pt::TSI => Payload::TsI(ts::parse(body)?),
            pt::TSR => Payload::TsR(ts::parse(body)?),
            pt::CP => Payload::Cp(Configuration::parse(body)?),
            pt::EAP => Payload::Eap(eap::parse(body)?),
            pt::SK => Payload::Sk(Encrypted::parse(next, body, header_offset)?),
            pt::SKF => Payload::Skf(EncryptedFragment::parse(next, body, header_offset)?),
            // RFC 7296 2.5: an unknown payload with the critical bit set fails the
            // whole message; without it the payload is skipped.
            _ if packet.critical() => return Err(WireError::UnsupportedCritical(kind)),
            _ => Payload::Unknown {
                kind,
                data: body.to_vec(),
            },
        };
        Ok((payload, next, packet.length()))
    }
}
