//! Reading an IKE datagram's clear header, so that a scenario's network filter can pick
//! out one message (the exchange, request or response, its message ID) to drop, delay or
//! hold.

use ike::endpoint::Transmit;

/// IKE_SA_INIT.
pub const IKE_SA_INIT: u8 = 34;
/// IKE_AUTH.
pub const IKE_AUTH: u8 = 35;
/// CREATE_CHILD_SA.
pub const CREATE_CHILD_SA: u8 = 36;
/// INFORMATIONAL.
pub const INFORMATIONAL: u8 = 37;

/// The clear header of one IKE message (RFC 7296 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgInfo {
    pub spi_i: u64,
    pub spi_r: u64,
    pub exchange: u8,
    pub response: bool,
    /// Sent by the original initiator of the IKE SA.
    pub from_initiator: bool,
    pub msg_id: u32,
    pub len: usize,
    /// The first payload is SK or SKF: not an unprotected answer such as a restarted
    /// peer's INVALID_IKE_SPI (RFC 7296 1.5).
    pub protected: bool,
}

/// Parses the header of `t`, or None for anything that is not an IKE message.
pub fn info(t: &Transmit) -> Option<MsgInfo> {
    let d = &t.data;
    if d.len() < 28 {
        return None;
    }
    let u64_at = |i: usize| u64::from_be_bytes(d[i..i + 8].try_into().unwrap());
    Some(MsgInfo {
        spi_i: u64_at(0),
        spi_r: u64_at(8),
        exchange: d[18],
        response: d[19] & 0x20 != 0,
        from_initiator: d[19] & 0x08 != 0,
        msg_id: u32::from_be_bytes(d[20..24].try_into().unwrap()),
        len: d.len(),
        protected: matches!(d[16], 46 | 53),
    })
}

/// Whether `t` is a request (or response) of this exchange.
pub fn is(t: &Transmit, exchange: u8, response: bool) -> bool {
    info(t).is_some_and(|m| m.exchange == exchange && m.response == response)
}
