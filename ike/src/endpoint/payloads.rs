//! Finding payloads in a decoded message and building notifies: the helpers every
//! exchange shares. A leaf: it imports no exchange file.

use crate::iana::NotifyType;
use crate::wire::nonce::{MAX_NONCE_LEN, MIN_NONCE_LEN};
use crate::wire::{KeyExchange, Notify, Payload, Proposal, TrafficSelector};

/// A Notify payload without protocol or SPI (RFC 7296 3.10).
pub(crate) fn notify_payload(kind: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: 0,
        spi: Vec::new(),
        kind,
        data,
    })
}

/// The first notify of type `kind`, if any.
pub(crate) fn find_notify(payloads: &[Payload], kind: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

/// The first error notify (RFC 7296 3.10.1: types below 16384), if any.
pub(crate) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.kind.is_error() => Some(n),
        _ => None,
    })
}

/// The nonce, when its length is within RFC 7296 3.9's 16 to 256 octets.
pub(crate) fn nonce_of(payloads: &[Payload]) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) if (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&n.len()) => {
            Some(n.as_slice())
        }
        _ => None,
    })
}

/// The KE payload, if any.
pub(crate) fn ke_of(payloads: &[Payload]) -> Option<&KeyExchange> {
    payloads.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

/// The proposals of the SA payload, if any.
pub(crate) fn sa_of(payloads: &[Payload]) -> Option<&[Proposal]> {
    payloads.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s.as_slice()),
        _ => None,
    })
}

/// The TSi and TSr payloads' selectors.
pub(crate) fn ts_of(
    payloads: &[Payload],
) -> (Option<&[TrafficSelector]>, Option<&[TrafficSelector]>) {
    let tsi = payloads.iter().find_map(|p| match p {
        Payload::TsI(t) => Some(t.as_slice()),
        _ => None,
    });
    let tsr = payloads.iter().find_map(|p| match p {
        Payload::TsR(t) => Some(t.as_slice()),
        _ => None,
    });
    (tsi, tsr)
}

/// A 4-octet SPI (ESP, RFC 7296 3.3.1).
pub(crate) fn spi_u32(spi: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(spi.try_into().ok()?))
}

/// An 8-octet SPI (IKE, RFC 7296 3.3.1).
pub(crate) fn spi_u64(spi: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(spi.try_into().ok()?))
}

/// The lower of two nonces, compared as big-endian numbers (RFC 7296 2.8.1).
pub(crate) fn min_nonce<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if a <= b {
        a
    } else {
        b
    }
}
