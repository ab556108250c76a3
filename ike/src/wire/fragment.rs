//! IKE message fragmentation (RFC 7383): splitting the inner payloads of a message into
//! separately encrypted SKF messages, and reassembling them.

use super::cursor::put_u16;
use super::message::{emit_chain, parse_chain};
use super::payload::{emit_generic_header, GENERIC_HEADER_LEN};
use super::sk::{open_body, seal_append, sealed_len, SKF_FIELDS_LEN};
use super::{DecryptError, Header, Message, Payload, SkCipher, WireError};
use crate::iana::{payload as pt, PayloadType};

/// Most fragments a message may be split into that we reassemble.
pub const MAX_FRAGMENTS: u16 = 64;
/// Most inner payload bytes we hold for one message being reassembled.
pub const MAX_REASSEMBLED_LEN: usize = 64 * 1024;

/// One decrypted fragment (RFC 7383 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Fragment Number, from 1.
    pub number: u16,
    /// Total Fragments.
    pub total: u16,
    /// Type of the first inner payload (meaningful in fragment 1 only).
    pub next_payload: PayloadType,
    /// Decrypted content with the padding removed.
    pub plaintext: Vec<u8>,
}

/// What inserting a fragment achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembly {
    /// Stored; more fragments are needed.
    Incomplete,
    /// This fragment was already held; nothing changed.
    Duplicate,
    /// The message is whole: its inner payloads. The reassembler is empty again.
    Complete(Vec<Payload>),
}

/// Why a fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// The fragment did not decrypt.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// Fragment Number is zero or above Total Fragments.
    #[error("invalid fragment number")]
    InvalidNumber,
    /// Total Fragments is below the one of fragments already held (RFC 7383 2.6).
    #[error("total fragments changed")]
    TotalMismatch,
    /// Total Fragments is above [`MAX_FRAGMENTS`].
    #[error("too many fragments")]
    TooManyFragments,
    /// The fragments add up to more than [`MAX_REASSEMBLED_LEN`]; reassembly is
    /// abandoned.
    #[error("reassembled message too large")]
    TooLarge,
    /// The fragment belongs to another message ID than those held.
    #[error("fragment of another message")]
    MessageId,
    /// The reassembled inner payloads are malformed; reassembly is abandoned.
    #[error("malformed reassembled message: {0}")]
    Malformed(WireError),
}

/// Decrypts the SKF payload of `msg`, which was parsed from `raw` (RFC 7383 2.6): the
/// fragment for a [`Reassembler`].
pub fn decrypt_fragment(
    raw: &[u8],
    msg: &Message,
    cipher: &dyn SkCipher,
) -> Result<Fragment, DecryptError> {
    let Some(skf) = msg.fragment() else {
        return Err(DecryptError::NotEncrypted);
    };
    let aad = raw
        .get(..skf.aad_end())
        .ok_or(WireError::Truncated("message"))?;
    let plaintext = open_body(aad, &skf.body, cipher)?;
    Ok(Fragment {
        number: skf.number,
        total: skf.total,
        next_payload: skf.next_payload,
        plaintext,
    })
}

/// Collects the fragments of one message in any order (RFC 7383 2.6).
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    message_id: Option<u32>,
    next_payload: PayloadType,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every fragment held.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// True when no fragment is held.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Total Fragments of the message being reassembled, zero when empty.
    pub fn total(&self) -> usize {
        self.parts.len()
    }

    /// Number of distinct fragments held.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Decrypts the SKF message `msg` (parsed from `raw`) and inserts it. Fragments of
    /// a message ID other than the one being reassembled are refused.
    pub fn insert_message(
        &mut self,
        raw: &[u8],
        msg: &Message,
        cipher: &dyn SkCipher,
    ) -> Result<Reassembly, ReassemblyError> {
        let id = msg.header.message_id;
        if !self.is_empty() && self.message_id.is_some_and(|held| held != id) {
            return Err(ReassemblyError::MessageId);
        }
        // RFC 7383 2.6: fragments are authenticated before they are kept.
        let fragment = decrypt_fragment(raw, msg, cipher)?;
        let result = self.insert(fragment)?;
        self.message_id = if self.is_empty() { None } else { Some(id) };
        Ok(result)
    }

    /// Inserts a decrypted fragment of the message being reassembled.
    pub fn insert(&mut self, fragment: Fragment) -> Result<Reassembly, ReassemblyError> {
        let Fragment {
            number,
            total,
            next_payload,
            plaintext,
        } = fragment;
        if number == 0 || number > total {
            return Err(ReassemblyError::InvalidNumber);
        }
        if total > MAX_FRAGMENTS {
            return Err(ReassemblyError::TooManyFragments);
        }
        let total = usize::from(total);
        if !self.parts.is_empty() {
            // RFC 7383 2.6: a larger total means the sender fragmented again with a
            // smaller size (2.5.2): start over. A smaller one is stale: drop it.
            if total < self.parts.len() {
                return Err(ReassemblyError::TotalMismatch);
            }
            if total > self.parts.len() {
                let id = self.message_id;
                self.reset();
                self.message_id = id;
            }
        }
        if self.parts.is_empty() {
            self.parts = vec![None; total];
        }
        let Some(slot) = self.parts.get_mut(usize::from(number) - 1) else {
            return Err(ReassemblyError::InvalidNumber);
        };
        if slot.is_some() {
            return Ok(Reassembly::Duplicate);
        }
        if self.bytes + plaintext.len() > MAX_REASSEMBLED_LEN {
            self.reset();
            return Err(ReassemblyError::TooLarge);
        }
        self.bytes += plaintext.len();
        *slot = Some(plaintext);
        self.received += 1;
        if number == 1 {
            // RFC 7383 2.5: only the first fragment names the first inner payload.
            self.next_payload = next_payload;
        }
        if self.received < self.parts.len() {
            return Ok(Reassembly::Incomplete);
        }
        let mut whole = Vec::with_capacity(self.bytes);
        for part in self.parts.iter().flatten() {
            whole.extend_from_slice(part);
        }
        let first = self.next_payload;
        self.reset();
        parse_chain(first, &whole, 0, false)
            .map(Reassembly::Complete)
            .map_err(ReassemblyError::Malformed)
    }
}

/// Encrypts `inner` as one or more SKF messages (RFC 7383 2.5) that each fit
/// `max_datagram` bytes (the IKE message, without UDP header or non-ESP marker). Every
/// fragment repeats `header` (its message ID included) with its own length, and is
/// encrypted on its own. Should `max_datagram` not leave room for one byte of payload
/// per fragment, fragments carry one byte each and exceed it.
pub fn encrypt_fragments(
    header: &Header,
    inner: &[Payload],
    cipher: &mut dyn SkCipher,
    max_datagram: usize,
) -> Vec<Vec<u8>> {
    let mut plain = Vec::new();
    emit_chain(inner, &mut plain);
    let block = cipher.block_len().clamp(1, 256);
    let overhead =
        Header::LEN + GENERIC_HEADER_LEN + SKF_FIELDS_LEN + cipher.iv_len() + cipher.icv_len();
    // Largest chunk whose padded length (chunk, padding, Pad Length) fits what is left.
    let room = max_datagram.saturating_sub(overhead) / block * block;
    let mut chunk = room.saturating_sub(1).max(1);
    // Total Fragments is 16 bits.
    chunk = chunk.max(plain.len().div_ceil(usize::from(u16::MAX)));
    let pieces: Vec<&[u8]> = if plain.is_empty() {
        vec![&[]]
    } else {
        plain.chunks(chunk).collect()
    };
    let total = u16::try_from(pieces.len()).unwrap_or(u16::MAX);
    let first = inner.first().map_or(pt::NONE, Payload::kind);
    let mut out = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.iter().enumerate() {
        let body_len = SKF_FIELDS_LEN + sealed_len(piece.len(), cipher);
        let mut h = *header;
        h.next_payload = pt::SKF;
        h.length = u32::try_from(Header::LEN + GENERIC_HEADER_LEN + body_len).unwrap_or(u32::MAX);
        let mut msg = Vec::with_capacity(Header::LEN + GENERIC_HEADER_LEN + body_len);
        h.emit(&mut msg);
        // RFC 7383 2.5: Next Payload is the first inner payload in fragment 1, else 0.
        emit_generic_header(if i == 0 { first } else { pt::NONE }, body_len, &mut msg);
        let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
        put_u16(&mut msg, number);
        put_u16(&mut msg, total);
        seal_append(&mut msg, piece, cipher);
        out.push(msg);
    }
    out
}
