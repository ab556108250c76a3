//! Arbitrary answers to an initiator endpoint: it sends IKE_SA_INIT, and every datagram
//! of the input comes back as if from the responder, first on port 500, then on 4500.
//! Each datagram's first 8 bytes are overwritten with the initiator's SPIi, so that
//! the input reaches the IKE SA (cookie and INVALID_KE retries, proposal and KE checks,
//! NAT detection, then IKE_AUTH and later exchanges) rather than the unknown-SPI drop.
//! Nothing may panic.
//!
//! Input: records `[len_hi][len_lo][bytes]`, each one datagram.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = std::time::Instant::now();
    let mut i = common::endpoint(
        3,
        common::I,
        Some(common::R),
        "initiator.example",
        "responder.example",
    );
    if i.initiate(now, "c", None).is_err() {
        return;
    }
    let Some(spi_i) = i
        .poll_transmit()
        .and_then(|t| t.data.get(..8).map(<[u8]>::to_vec))
    else {
        return;
    };
    common::drain(&mut i);
    let mut rest = data;
    let mut port = 500;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let mut d = datagram.to_vec();
        if let Some(spi) = d.get_mut(..8) {
            spi.copy_from_slice(&spi_i);
        }
        i.handle(
            now,
            common::addr(common::I, port),
            common::addr(common::R, port),
            &d,
        );
        common::drain(&mut i);
        port = 4500;
    }
});
