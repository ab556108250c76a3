//! Arbitrary datagrams against a responder endpoint: first on port 500, then (split at
//! a fuzzer-chosen point) a second one on port 4500 against whatever state the first
//! left behind. Nothing may panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = common::endpoint(7, common::R, None, "responder.example", "%any");
    let now = std::time::Instant::now();
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);
    r.handle(
        now,
        common::addr(common::R, 500),
        common::addr(common::I, 500),
        a,
    );
    common::drain(&mut r);
    r.handle(
        now,
        common::addr(common::R, 4500),
        common::addr(common::I, 4500),
        b,
    );
    common::drain(&mut r);
});
