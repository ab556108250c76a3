//! SK (RFC 7296 3.14) and SKF (RFC 7383 2.5) payloads, and the framing that encrypts
//! inner payloads into them and back, generic over [`SkCipher`].
//!
//! ```text
//! SK:  | Next Payload  |C|  RESERVED   |         Payload Length        |
//!      |                     Initialization Vector                     |
//!      ~                    Encrypted IKE Payloads                     ~
//!      |               |             Padding (0-255 octets)            |
//!      |                                               |  Pad Length   |
//!      ~                    Integrity Checksum Data                    ~
//!
//! SKF: | Next Payload  |C|  RESERVED   |         Payload Length        |
//!      |        Fragment Number        |        Total Fragments        |
//!      |                     Initialization Vector                     |
//!      ~                 Encrypted content + padding                   ~
//!      ~                    Integrity Checksum Data                    ~
//! ```

use super::cursor::{put_u16, Reader};
use super::message::{chain_len, emit_chain, parse_chain};
use super::payload::{emit_generic_header, GENERIC_HEADER_LEN};
use super::{Encrypted, EncryptedFragment, Header, Message, Payload, SkCipher, WireError};
use crate::iana::{payload as pt, PayloadType};

/// Length of the SKF fields after the generic header: Fragment Number, Total Fragments.
pub const SKF_FIELDS_LEN: usize = 4;

/// Why an SK or SKF payload could not be turned back into payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The message carries no SK (or, for fragments, SKF) payload.
    #[error("message is not encrypted")]
    NotEncrypted,
    /// The integrity check failed: the message is forged or the keys are wrong; drop
    /// it without answering.
    #[error("integrity check failed")]
    Integrity,
    /// The integrity check passed but the framing, the padding or the inner payloads
    /// are malformed.
    #[error("malformed encrypted payload: {0}")]
    Malformed(#[from] WireError),
}

/// The parts of an SK/SKF body once the cipher's IV and ICV lengths are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkParts<'a> {
    /// Initialization vector.
    pub iv: &'a [u8],
    /// Encrypted inner payloads, padding and Pad Length.
    pub ciphertext: &'a [u8],
    /// Integrity checksum.
    pub icv: &'a [u8],
}

/// Splits IV || ciphertext || ICV.
fn split_body(body: &[u8], iv_len: usize, icv_len: usize) -> Result<SkParts<'_>, WireError> {
    let mut r = Reader::new(body);
    let iv = r.take(iv_len, "encrypted payload IV")?;
    let ct_len = r
        .remaining()
        .checked_sub(icv_len)
        .ok_or(WireError::Truncated("encrypted payload ICV"))?;
    let ciphertext = r.take(ct_len, "encrypted payload")?;
    Ok(SkParts {
        iv,
        ciphertext,
        icv: r.rest(),
    })
}

impl Encrypted {
    /// Decodes an SK payload body; `next_payload` is the generic header's.
    pub fn parse(
        next_payload: PayloadType,
        body: &[u8],
        header_offset: usize,
    ) -> Result<Self, WireError> {
        Ok(Encrypted {
            next_payload,
            body: body.to_vec(),
            header_offset,
        })
    }

    /// Length of the body.
    pub fn buffer_len(&self) -> usize {
        self.body.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body);
    }

    /// End of the associated data in the whole message: IKE header up to the end of
    /// the SK payload's generic header (RFC 5282 5.1).
    pub fn aad_end(&self) -> usize {
        self.header_offset + GENERIC_HEADER_LEN
    }

    /// Splits the body into IV, ciphertext and ICV.
    pub fn split(&self, iv_len: usize, icv_len: usize) -> Result<SkParts<'_>, WireError> {
        split_body(&self.body, iv_len, icv_len)
    }
}

impl EncryptedFragment {
    /// Decodes an SKF payload body; `next_payload` is the generic header's.
    pub fn parse(
        next_payload: PayloadType,
        body: &[u8],
        header_offset: usize,
    ) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let number = r.u16("SKF payload")?;
        let total = r.u16("SKF payload")?;
        // RFC 7383 2.6: a fragment number of zero or above the total is invalid.
        if number == 0 || number > total {
            return Err(WireError::Invalid("fragment number"));
        }
        Ok(EncryptedFragment {
            next_payload,
            number,
            total,
            body: r.rest().to_vec(),
            header_offset,
        })
    }

    /// Length of the body including Fragment Number and Total Fragments.
    pub fn buffer_len(&self) -> usize {
        SKF_FIELDS_LEN + self.body.len()
    }

    /// Appends Fragment Number, Total Fragments and the encrypted body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.number);
        put_u16(out, self.total);
        out.extend_from_slice(&self.body);
    }

    /// End of the associated data in the whole message: IKE header up to Total
    /// Fragments (RFC 7383 2.5).
    pub fn aad_end(&self) -> usize {
        self.header_offset + GENERIC_HEADER_LEN + SKF_FIELDS_LEN
    }

    /// Splits the body into IV, ciphertext and ICV.
    pub fn split(&self, iv_len: usize, icv_len: usize) -> Result<SkParts<'_>, WireError> {
        split_body(&self.body, iv_len, icv_len)
    }
}

/// The cipher's block length, kept where a one-byte Pad Length can express it.
fn block_len(cipher: &dyn SkCipher) -> usize {
    cipher.block_len().clamp(1, 256)
}

/// Plaintext length once padding and the Pad Length byte are added (RFC 7296 3.14).
pub(crate) fn padded_len(plain_len: usize, block: usize) -> usize {
    (plain_len + 1).div_ceil(block) * block
}

/// Bytes an SK/SKF body takes for `plain_len` bytes of inner payloads.
pub(crate) fn sealed_len(plain_len: usize, cipher: &dyn SkCipher) -> usize {
    cipher.iv_len() + padded_len(plain_len, block_len(cipher)) + cipher.icv_len()
}

/// Appends IV, encrypted `plain || padding || pad length` and ICV to `out`, which holds
/// the message up to the end of the SK/SKF header: that prefix is the AAD.
pub(crate) fn seal_append(out: &mut Vec<u8>, plain: &[u8], cipher: &mut dyn SkCipher) {
    let aad_end = out.len();
    let iv_len = cipher.iv_len();
    let block = block_len(cipher);
    out.resize(aad_end + iv_len, 0);
    cipher.next_iv(&mut out[aad_end..]);
    let body_start = out.len();
    out.extend_from_slice(plain);
    // RFC 7296 3.14: padding may hold any value; zeros, then the Pad Length byte.
    let pad = padded_len(plain.len(), block) - plain.len() - 1;
    out.resize(out.len() + pad, 0);
    out.push(pad as u8);
    let body_len = out.len() - body_start;
    out.resize(out.len() + cipher.icv_len(), 0);
    let (aad, rest) = out.split_at_mut(aad_end);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (body, icv) = rest.split_at_mut(body_len);
    cipher.seal(aad, iv, body, icv);
}

/// Checks and decrypts an SK/SKF body and strips the padding: returns the inner
/// payload bytes.
pub(crate) fn open_body(
    aad: &[u8],
    body: &[u8],
    cipher: &dyn SkCipher,
) -> Result<Vec<u8>, DecryptError> {
    let parts = split_body(body, cipher.iv_len(), cipher.icv_len())?;
    let ct = parts.ciphertext;
    if ct.is_empty() || ct.len() % block_len(cipher) != 0 {
        return Err(WireError::BadLength("encrypted payload").into());
    }
    let mut plain = ct.to_vec();
    if !cipher.open(aad, parts.iv, &mut plain, parts.icv) {
        return Err(DecryptError::Integrity);
    }
    let pad = plain.last().map_or(0, |&b| usize::from(b));
    // RFC 7296 3.14: Pad Length counts the padding before it; it must fit.
    let inner_len = plain
        .len()
        .checked_sub(pad + 1)
        .ok_or(WireError::Invalid("pad length"))?;
    plain.truncate(inner_len);
    Ok(plain)
}

/// Encrypts `inner` into a whole message: `header` (next payload and length set here),
/// one SK payload, IV, ciphertext, ICV (RFC 7296 3.14). The SK payload cannot exceed
/// 65535 bytes; larger messages go through [`super::encrypt_fragments`].
pub fn encrypt_message(header: &Header, inner: &[Payload], cipher: &mut dyn SkCipher) -> Vec<u8> {
    let plain_len = chain_len(inner);
    let sk_body_len = sealed_len(plain_len, cipher);
    let total = Header::LEN + GENERIC_HEADER_LEN + sk_body_len;
    let mut header = *header;
    header.next_payload = pt::SK;
    header.length = u32::try_from(total).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(total);
    header.emit(&mut out);
    let first = inner.first().map_or(pt::NONE, Payload::kind);
    emit_generic_header(first, sk_body_len, &mut out);
    let mut plain = Vec::with_capacity(plain_len);
    emit_chain(inner, &mut plain);
    seal_append(&mut out, &plain, cipher);
    out
}

/// Decrypts the SK payload of `msg`, which was parsed from `raw`, and parses the inner
/// payloads (RFC 7296 3.14).
pub fn decrypt_message(
    raw: &[u8],
    msg: &Message,
    cipher: &dyn SkCipher,
) -> Result<Vec<Payload>, DecryptError> {
    let Some(sk) = msg.encrypted() else {
        return Err(DecryptError::NotEncrypted);
    };
    let aad = raw
        .get(..sk.aad_end())
        .ok_or(WireError::Truncated("message"))?;
    let plain = open_body(aad, &sk.body, cipher)?;
    Ok(parse_chain(sk.next_payload, &plain, 0, false)?)
}
