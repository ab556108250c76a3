//! A peer's key exchange data against every group: the KE payload's public value is
//! attacker-chosen, so whatever its length or value, computing the shared secret must
//! return a value or a refusal (RFC 6989: 0, 1, p-1 and off-subgroup MODP values; points
//! off the curve), never panic. Two thirds of the inputs are bent toward the edges: a
//! real public value of the group with a few bytes changed, or small numbers padded to
//! the group's length.
//!
//! Input: one byte choosing the group and the shape, then the bytes.
//!
//! Our key pair and the genuine public value depend on the first byte only, so they are
//! made once per byte value and kept: a MODP exponentiation per run is spent on the
//! peer's value, the input, not on key generation that no input can change.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use ike::crypto::{Dh, DhKeyPair, SeededRng};
use libfuzzer_sys::fuzz_target;

/// Our key pair and another genuine public value of the group, both from a generator
/// seeded with `sel`, in that order.
struct Keys {
    ours: DhKeyPair,
    other: Option<Vec<u8>>,
}

thread_local! {
    static KEYS: RefCell<HashMap<u8, Option<Keys>>> = RefCell::new(HashMap::new());
}

fn keys(sel: u8, group: Dh) -> Option<Keys> {
    let mut rng = SeededRng::new(u64::from(sel));
    let ours = DhKeyPair::generate(group, &mut rng).ok()?;
    let other = DhKeyPair::generate(group, &mut rng)
        .ok()
        .map(|k| k.public_value().to_vec());
    Some(Keys { ours, other })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let group = Dh::ALL[usize::from(sel) % Dh::ALL.len()];
    KEYS.with_borrow_mut(|cache| {
        if let Some(k) = cache.entry(sel).or_insert_with(|| keys(sel, group)) {
            run(group, sel, k, rest);
        }
    });
});

fn run(group: Dh, sel: u8, keys: &Keys, rest: &[u8]) {
    let ours = &keys.ours;
    let len = group.public_len();
    let peer: Vec<u8> = match (sel / 16) % 3 {
        // As given, any length.
        0 => rest.to_vec(),
        // A genuine public value with the input XORed over its start.
        1 => {
            let Some(other) = &keys.other else {
                return;
            };
            let mut v = other.clone();
            for (b, x) in v.iter_mut().zip(rest) {
                *b ^= x;
            }
            v
        }
        // The input right-aligned in a value of the group's length (small numbers).
        _ => {
            let mut v = vec![0u8; len];
            let n = rest.len().min(len);
            v[len - n..].copy_from_slice(&rest[..n]);
            v
        }
    };
    if let Ok(secret) = ours.shared_secret(&peer) {
        assert!(!secret.as_bytes().is_empty());
    }
}
