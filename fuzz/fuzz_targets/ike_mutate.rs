//! Structure-aware: a real handshake between two endpoints where the fuzzer mutates
//! one message at the representation level (drop, duplicate or reorder payloads, flip
//! header fields) or at the byte level, then the exchange carries on. Nothing may panic.
#![no_main]

#[path = "common.rs"]
mod common;

use ike::wire::{Message, Payload};
use libfuzzer_sys::fuzz_target;

fn mutate(msg: &[u8], ops: &[u8]) -> Vec<u8> {
    let Ok(mut m) = Message::parse(msg) else {
        return msg.to_vec();
    };
    let mut bytes = None;
    for op in ops.chunks(3) {
        let (kind, x, y) = (
            op[0],
            *op.get(1).unwrap_or(&0) as usize,
            *op.get(2).unwrap_or(&0),
        );
        let n = m.payloads.len().max(1);
        match kind % 8 {
            0 if !m.payloads.is_empty() => {
                m.payloads.remove(x % n);
            }
            1 if !m.payloads.is_empty() => {
                let p = m.payloads[x % n].clone();
                m.payloads.push(p);
            }
            2 if !m.payloads.is_empty() => m.payloads.swap(x % n, usize::from(y) % n),
            3 => m.header.message_id = m.header.message_id.wrapping_add(u32::from(y)),
            4 => m.header.exchange = ike::iana::ExchangeType(y),
            5 => {
                m.header.flags.response ^= true;
            }
            6 => {
                if let Some(Payload::Notify(no)) = m.payloads.get_mut(x % n) {
                    no.kind = ike::iana::NotifyType(u16::from(y) << 8 | u16::from(y));
                }
            }
            _ => {
                let mut b = bytes.take().unwrap_or_else(|| m.to_bytes());
                if !b.is_empty() {
                    let i = x % b.len();
                    b[i] ^= y;
                }
                bytes = Some(b);
            }
        }
    }
    bytes.unwrap_or_else(|| m.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let now = std::time::Instant::now();
    let mut i = common::endpoint(
        1,
        common::I,
        Some(common::R),
        "initiator.example",
        "responder.example",
    );
    let mut r = common::endpoint(2, common::R, None, "responder.example", "initiator.example");
    let _ = i.initiate(now, "c", None);
    let mut n = 0u8;
    for _ in 0..6 {
        while let Some(t) = i.poll_transmit() {
            let d = if n == which % 8 {
                mutate(&t.data, ops)
            } else {
                t.data
            };
            n = n.wrapping_add(1);
            r.handle(
                now,
                common::addr(common::R, t.remote.port()),
                common::addr(common::I, t.local.port()),
                &d,
            );
        }
        while let Some(t) = r.poll_transmit() {
            let d = if n == which % 8 {
                mutate(&t.data, ops)
            } else {
                t.data
            };
            n = n.wrapping_add(1);
            i.handle(
                now,
                common::addr(common::I, t.remote.port()),
                common::addr(common::R, t.local.port()),
                &d,
            );
        }
    }
    common::drain(&mut i);
    common::drain(&mut r);
});
