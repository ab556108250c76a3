//! RFC 7383 fragmentation: splitting, and reassembly in any order.

use super::cipher::ToyCipher;
use super::messages::{every_payload, header, Rng};
use crate::iana::{exchange, payload};
use crate::wire::fragment::{MAX_FRAGMENTS, MAX_REASSEMBLED_LEN};
use crate::wire::{
    encrypt_fragments, DecryptError, Fragment, Header, Message, Payload, Reassembler, Reassembly,
    ReassemblyError, SkCipher, WireError,
};

fn big_inner() -> Vec<Payload> {
    let mut inner = every_payload();
    inner.push(Payload::Cert(crate::wire::Certificate {
        encoding: 4,
        data: (0..3000).map(|i| i as u8).collect(),
    }));
    inner
}

/// Splits, checks every fragment's framing, and returns them.
fn split(cipher: &mut ToyCipher, inner: &[Payload], max: usize) -> Vec<Vec<u8>> {
    let h = header(exchange::IKE_AUTH, 7);
    let frags = encrypt_fragments(&h, inner, cipher, max);
    let total = frags.len();
    for (i, raw) in frags.iter().enumerate() {
        assert!(raw.len() <= max, "fragment {i} is {} > {max}", raw.len());
        let msg = Message::parse(raw).expect("fragment parses");
        assert_eq!(msg.header.message_id, 7);
        assert_eq!(msg.header.next_payload, payload::SKF);
        assert_eq!(msg.header.length as usize, raw.len());
        assert_eq!(msg.payloads.len(), 1);
        let skf = msg.fragment().expect("SKF payload");
        assert_eq!(usize::from(skf.number), i + 1);
        assert_eq!(usize::from(skf.total), total);
        assert_eq!(skf.header_offset, Header::LEN);
        let first = inner.first().map_or(payload::NONE, Payload::kind);
        assert_eq!(
            skf.next_payload,
            if i == 0 {
                first
            } else {
                crate::iana::payload::NONE
            }
        );
    }
    frags
}

/// Feeds fragments in the given order; checks completion happens exactly at the end.
fn reassemble(frags: &[Vec<u8>], order: &[usize], cipher: &ToyCipher) -> Vec<Payload> {
    let mut r = Reassembler::new();
    let mut seen = vec![false; frags.len()];
    for (step, &i) in order.iter().enumerate() {
        let raw = &frags[i];
        let msg = Message::parse(raw).expect("parses");
        let result = r.insert_message(raw, &msg, cipher).expect("accepted");
        if seen[i] {
            assert_eq!(result, Reassembly::Duplicate);
            continue;
        }
        seen[i] = true;
        if seen.iter().all(|&s| s) {
            assert_eq!(step, order.len() - 1, "complete before the end");
            assert!(r.is_empty());
            match result {
                Reassembly::Complete(p) => return p,
                other => panic!("expected completion, got {other:?}"),
            }
        }
        assert_eq!(result, Reassembly::Incomplete);
    }
    panic!("never completed");
}

#[test]
fn split_and_reassemble_at_several_sizes() {
    let inner = big_inner();
    for max in [200, 576, 1280, 1500, 65_000] {
        for mut c in [ToyCipher::gcm(1), ToyCipher::cbc(2)] {
            let frags = split(&mut c, &inner, max);
            let n = frags.len();
            if max == 65_000 {
                assert_eq!(n, 1);
            } else {
                assert!(n > 1, "{max}: {n}");
            }
            let in_order: Vec<usize> = (0..n).collect();
            assert_eq!(reassemble(&frags, &in_order, &c), inner);
            let reverse: Vec<usize> = (0..n).rev().collect();
            assert_eq!(reassemble(&frags, &reverse, &c), inner);
            let mut rng = Rng(max as u64 * 31 + 7);
            for _ in 0..5 {
                let mut order = in_order.clone();
                for k in (1..n).rev() {
                    order.swap(k, rng.below(k + 1));
                }
                // Duplicates before completion.
                let dups: Vec<usize> = order[..n - 1].to_vec();
                let mut with_dups = order[..n - 1].to_vec();
                with_dups.extend(dups);
                with_dups.push(order[n - 1]);
                assert_eq!(reassemble(&frags, &with_dups, &c), inner);
            }
        }
    }
}

#[test]
fn fragments_fill_the_datagram() {
    // With blocks of 16, every fragment but the last uses the room it has.
    let mut c = ToyCipher::cbc(3);
    let frags = split(&mut c, &big_inner(), 1000);
    let overhead = Header::LEN + 8 + c.iv_len() + c.icv_len();
    for raw in &frags[..frags.len() - 1] {
        assert!(raw.len() > 1000 - 16, "{}", raw.len());
        assert_eq!((raw.len() - overhead) % 16, 0);
    }
}

#[test]
fn empty_inner_is_one_fragment() {
    let mut c = ToyCipher::gcm(4);
    let frags = split(&mut c, &[], 500);
    assert_eq!(frags.len(), 1);
    assert_eq!(reassemble(&frags, &[0], &c), vec![]);
}

#[test]
fn tiny_datagram_still_terminates() {
    let mut c = ToyCipher::gcm(5);
    let inner = vec![Payload::Nonce(vec![1; 20])];
    let h = header(exchange::IKE_AUTH, 7);
    let frags = encrypt_fragments(&h, &inner, &mut c, 10);
    assert_eq!(frags.len(), 24);
}

fn frag(number: u16, total: u16, plaintext: Vec<u8>) -> Fragment {
    Fragment {
        number,
        total,
        next_payload: if number == 1 {
            payload::VENDOR_ID
        } else {
            crate::iana::payload::NONE
        },
        plaintext,
    }
}

#[test]
fn totals_must_agree() {
    let mut r = Reassembler::new();
    assert_eq!(r.insert(frag(2, 5, vec![1])), Ok(Reassembly::Incomplete));
    // A smaller total is stale and refused; what is held stays.
    assert_eq!(
        r.insert(frag(1, 4, vec![1])),
        Err(ReassemblyError::TotalMismatch)
    );
    assert_eq!((r.total(), r.received()), (5, 1));
    // A larger total means the sender fragmented again: start over.
    assert_eq!(r.insert(frag(3, 6, vec![1])), Ok(Reassembly::Incomplete));
    assert_eq!((r.total(), r.received()), (6, 1));
}

#[test]
fn numbers_and_counts_are_bounded() {
    let mut r = Reassembler::new();
    assert_eq!(
        r.insert(frag(0, 3, vec![])),
        Err(ReassemblyError::InvalidNumber)
    );
    assert_eq!(
        r.insert(frag(4, 3, vec![])),
        Err(ReassemblyError::InvalidNumber)
    );
    assert_eq!(
        r.insert(frag(1, MAX_FRAGMENTS + 1, vec![])),
        Err(ReassemblyError::TooManyFragments)
    );
    assert!(r.is_empty());
    // Fragments that add up to more than the limit abandon reassembly.
    let part = MAX_REASSEMBLED_LEN / 4 + 1;
    for n in 1..=3 {
        assert_eq!(
            r.insert(frag(n, 4, vec![0; part])),
            Ok(Reassembly::Incomplete)
        );
    }
    assert_eq!(
        r.insert(frag(4, 4, vec![0; part])),
        Err(ReassemblyError::TooLarge)
    );
    assert!(r.is_empty());
}

#[test]
fn too_many_fragments_from_a_real_split() {
    let mut c = ToyCipher::gcm(6);
    let h = header(exchange::IKE_AUTH, 7);
    let frags = encrypt_fragments(&h, &big_inner(), &mut c, 100);
    assert!(frags.len() > usize::from(MAX_FRAGMENTS));
    let msg = Message::parse(&frags[0]).expect("parses");
    let mut r = Reassembler::new();
    assert_eq!(
        r.insert_message(&frags[0], &msg, &c),
        Err(ReassemblyError::TooManyFragments)
    );
}

#[test]
fn foreign_and_forged_fragments() {
    let mut c = ToyCipher::gcm(7);
    let inner = big_inner();
    let frags = split(&mut c, &inner, 1280);
    let mut r = Reassembler::new();
    let msg = Message::parse(&frags[0]).expect("parses");
    assert_eq!(
        r.insert_message(&frags[0], &msg, &c),
        Ok(Reassembly::Incomplete)
    );
    // Another message ID.
    let other = encrypt_fragments(&header(exchange::IKE_AUTH, 8), &inner, &mut c, 1280);
    let msg = Message::parse(&other[1]).expect("parses");
    assert_eq!(
        r.insert_message(&other[1], &msg, &c),
        Err(ReassemblyError::MessageId)
    );
    // A forged fragment.
    let mut bad = frags[1].clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let msg = Message::parse(&bad).expect("parses");
    assert_eq!(
        r.insert_message(&bad, &msg, &c),
        Err(ReassemblyError::Decrypt(DecryptError::Integrity))
    );
    // An SK message is not a fragment.
    let sk = crate::wire::encrypt_message(&header(exchange::IKE_AUTH, 7), &inner, &mut c);
    let msg = Message::parse(&sk).expect("parses");
    assert_eq!(
        r.insert_message(&sk, &msg, &c),
        Err(ReassemblyError::Decrypt(DecryptError::NotEncrypted))
    );
    assert_eq!(r.received(), 1);
}

#[test]
fn malformed_reassembly_is_reported() {
    let mut r = Reassembler::new();
    assert_eq!(r.insert(frag(2, 2, vec![0, 9])), Ok(Reassembly::Incomplete));
    assert_eq!(
        r.insert(frag(1, 2, vec![0, 0])),
        Err(ReassemblyError::Malformed(WireError::Truncated("payload")))
    );
    assert!(r.is_empty());
}

#[test]
fn skf_header_checks() {
    let mut c = ToyCipher::gcm(8);
    let frags = split(&mut c, &big_inner(), 1280);
    let mut bad = frags[0].clone();
    // Fragment number 0.
    bad[Header::LEN + 4..Header::LEN + 6].copy_from_slice(&[0, 0]);
    assert_eq!(
        Message::parse(&bad),
        Err(WireError::Invalid("fragment number"))
    );
    // Fragment number above the total.
    bad[Header::LEN + 4..Header::LEN + 6].copy_from_slice(&[0, 99]);
    assert_eq!(
        Message::parse(&bad),
        Err(WireError::Invalid("fragment number"))
    );
}
