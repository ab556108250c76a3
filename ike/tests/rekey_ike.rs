//! IKE SA rekeys, deletes and their collisions (RFC 7296 1.3.2, 2.8.2, 2.25, 1.4.1),
//! every ordering of strongSwan's `test_ike_rekey.c`, `test_ike_delete.c`,
//! `test_ike_mid_sync.c` and `test_childless.c` on the in-memory pair. The scenarios, in
//! words, and the map to strongSwan's cases: `rekey_cases_ike.md`.

mod common;

#[path = "common/ike_scenario.rs"]
mod ike_scenario;

/// Every test name holds `rekey` (`cargo test -p ike rekey` runs them all).
mod rekey_ike {
    use std::time::Duration;

    use crate::common::{psk_a_conn, psk_b_conn, Fate, Pair, Side};
    use crate::ike_scenario::*;

    const IKE: &str = "aes128gcm16-prfsha256-x25519";
    const ESP: &str = "aes128gcm16";

    fn other(side: Side) -> Side {
        match side {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn start_rekey(p: &mut Pair, side: Side) {
        let id = ike_id(p, side);
        let now = p.now;
        p.node(side).ep.rekey_ike(now, id).unwrap();
    }

    /// Generates one `#[test]` per variant: `name => f(args)`.
    macro_rules! cases {
        ($($name:ident => $f:ident($($arg:expr),*);)*) => {
            $(#[test] fn $name() { $f($($arg),*) })*
        };
    }

    /// Long enough for every retransmission and for a rekeyed SA nobody deletes to
    /// delete itself (8 retransmission timeouts of 2 s after the last message).
    const LONG: Duration = Duration::from_secs(120);
    const X: u8 = 0xff;

    /// Replaces one side's connection with one of these IKE proposals.
    fn reconf(p: &mut Pair, side: Side, ike: &str) {
        let c = match side {
            Side::A => psk_a_conn(ike, ESP),
            Side::B => psk_b_conn(ike, ESP),
        };
        p.node(side).ep.add_connection(c);
    }

    fn stats_rekeys(p: &mut Pair, side: Side) -> (u64, u64) {
        let s = p.node(side).ep.stats();
        (s.ike_rekeys, s.child_rekeys)
    }

    fn dh(p: &mut Pair, side: Side) -> u16 {
        p.node(side).ep.ike_sas()[0].suite.unwrap().dh.id()
    }

    /// Whether the surviving IKE SA was made by `side`'s rekey (RFC 7296 2.18: the
    /// rekey initiator becomes the original initiator of the new SA).
    fn made_by(p: &mut Pair, side: Side) {
        assert!(p.node(side).ep.ike_sas()[0].initiator, "{side:?} made it");
        assert!(!p.node(other(side)).ep.ike_sas()[0].initiator);
    }

    // ---- regular -------------------------------------------------------------------

    /// One side rekeys, nothing in the way: both end with the new IKE SA only, the
    /// child moved, `IkeRekeyed` on both, no down.
    fn regular(side: Side) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let old = ike_spis(&p, Side::A);
        let children = p.a.child_spis();
        start_rekey(&mut p, side);
        p.settle();
        let new = assert_one_ike_sa(&p, 1);
        assert_ne!(vec![new], old);
        assert_eq!(p.a.child_spis(), children, "child SAs untouched");
        for s in [Side::A, Side::B] {
            assert_eq!(rekeyed(&p, s).len(), 1, "{s:?}");
            assert_eq!(stats_rekeys(&mut p, s), (1, 0));
        }
        made_by(&mut p, side);
        assert_usable(&mut p);
    }

    cases! {
        regular_rekey_from_initiator => regular(Side::A);
        regular_rekey_from_responder => regular(Side::B);
    }

    /// Both sides' proposals now name another DH group only: the rekey uses that group
    /// (strongSwan keeps the previous group while it is still proposed, else takes the
    /// first configured one), without an INVALID_KE_PAYLOAD round trip.
    fn to_another_group(side: Side) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        for s in [Side::A, Side::B] {
            reconf(&mut p, s, "aes128gcm16-prfsha256-ecp384");
        }
        let log = script(&mut p, vec![]);
        start_rekey(&mut p, side);
        p.settle();
        assert_one_ike_sa(&p, 1);
        assert_eq!(dh(&mut p, Side::A), 20, "ECP-384");
        assert_eq!(log.count(side, ccsa_req), 1, "no INVALID_KE_PAYLOAD round");
        made_by(&mut p, side);
        assert_usable(&mut p);
    }

    cases! {
        regular_rekey_to_another_group_from_initiator => to_another_group(Side::A);
        regular_rekey_to_another_group_from_responder => to_another_group(Side::B);
    }

    /// The responder no longer accepts the group of the initiator's KE payload but
    /// another one the initiator proposes: it answers INVALID_KE_PAYLOAD naming it, the
    /// initiator retries with that group (RFC 7296 1.3.2, 2.7). `lost` drops the first
    /// copy of the retried request (answered on retransmission).
    fn ke_invalid(side: Side, lost: bool) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        reconf(&mut p, side, "aes128gcm16-prfsha256-x25519-ecp384");
        reconf(&mut p, other(side), "aes128gcm16-prfsha256-ecp384");
        let rules = if lost {
            vec![Rule::nth(side, ccsa_req, 1, Fate::Drop)]
        } else {
            vec![]
        };
        let log = script(&mut p, rules);
        start_rekey(&mut p, side);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        assert_eq!(dh(&mut p, Side::A), 20, "ECP-384");
        assert_eq!(log.count(side, ccsa_req), 2 + usize::from(lost));
        assert_eq!(log.count(other(side), ccsa_resp), 2);
        for s in [Side::A, Side::B] {
            assert_eq!(stats_rekeys(&mut p, s), (1, 0));
        }
        made_by(&mut p, side);
        assert_usable(&mut p);
    }

    cases! {
        regular_rekey_ke_invalid_from_initiator => ke_invalid(Side::A, false);
        regular_rekey_ke_invalid_from_responder => ke_invalid(Side::B, false);
        regular_rekey_ke_invalid_retry_lost_from_initiator => ke_invalid(Side::A, true);
        regular_rekey_ke_invalid_retry_lost_from_responder => ke_invalid(Side::B, true);
    }

    /// Which message of a lone rekey is lost once: the request, the response, the
    /// DELETE of the old SA, or its answer. Retransmission repairs each.
    #[derive(Clone, Copy, Debug)]
    enum Lost {
        Request,
        Response,
        Delete,
        DeleteAnswer,
    }

    fn regular_lost(side: Side, lost: Lost) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let rule = match lost {
            Lost::Request => Rule::nth(side, ccsa_req, 0, Fate::Drop),
            Lost::Response => Rule::nth(other(side), ccsa_resp, 0, Fate::Drop),
            Lost::Delete => Rule::nth(side, info_req, 0, Fate::Drop),
            Lost::DeleteAnswer => Rule::nth(other(side), info_resp, 0, Fate::Drop),
        };
        let log = script(&mut p, vec![rule]);
        start_rekey(&mut p, side);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        for s in [Side::A, Side::B] {
            assert_eq!(rekeyed(&p, s).len(), 1, "{s:?}");
            assert_eq!(stats_rekeys(&mut p, s), (1, 0));
        }
        made_by(&mut p, side);
        // A lost response is answered from the cache: one SA made, not two.
        assert_eq!(
            log.count(other(side), ccsa_resp),
            1 + usize::from(matches!(lost, Lost::Response))
        );
        assert_usable(&mut p);
    }

    cases! {
        regular_rekey_request_lost_from_initiator => regular_lost(Side::A, Lost::Request);
        regular_rekey_request_lost_from_responder => regular_lost(Side::B, Lost::Request);
        regular_rekey_response_lost_from_initiator => regular_lost(Side::A, Lost::Response);
        regular_rekey_response_lost_from_responder => regular_lost(Side::B, Lost::Response);
        regular_rekey_old_sa_delete_lost_from_initiator => regular_lost(Side::A, Lost::Delete);
        regular_rekey_old_sa_delete_lost_from_responder => regular_lost(Side::B, Lost::Delete);
        regular_rekey_old_sa_delete_answer_lost_from_initiator => regular_lost(Side::A, Lost::DeleteAnswer);
        regular_rekey_old_sa_delete_answer_lost_from_responder => regular_lost(Side::B, Lost::DeleteAnswer);
    }

    /// The responder cannot agree to any proposal (its configuration changed): it
    /// answers NO_PROPOSAL_CHOSEN, the initiator keeps the old SA (no down, children
    /// untouched) and tries again later, which works once the proposals match again.
    fn no_proposal(side: Side) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let old = ike_spis(&p, Side::A);
        reconf(&mut p, other(side), "aes256gcm16-prfsha384-ecp384");
        start_rekey(&mut p, side);
        p.run_for(Duration::from_millis(100));
        assert_eq!(ike_spis(&p, Side::A), old);
        assert_eq!(ike_spis(&p, Side::B), old);
        assert!(p.a.ike_down.is_empty() && p.b.ike_down.is_empty());
        assert!(rekeyed(&p, side).is_empty());
        reconf(&mut p, other(side), IKE);
        run(&mut p, LONG);
        let new = assert_one_ike_sa(&p, 1);
        assert_ne!(vec![new], old, "the retry rekeyed");
        made_by(&mut p, side);
    }

    cases! {
        regular_rekey_no_proposal_chosen_from_initiator => no_proposal(Side::A);
        regular_rekey_no_proposal_chosen_from_responder => no_proposal(Side::B);
    }

    // ---- collisions: both sides rekey ----------------------------------------------

    /// Which of the four nonces of two crossing IKE rekeys is the lowest: the nonce of
    /// a's request, of b's request, of b's answer to a, of a's answer to b. The exchange
    /// holding it made the redundant SA (RFC 7296 2.8.2).
    #[derive(Clone, Copy, Debug)]
    enum Low {
        AReq,
        BReq,
        BResp,
        AResp,
    }

    impl Low {
        /// The side whose rekey survives.
        fn winner(self) -> Side {
            match self {
                Low::AReq | Low::BResp => Side::B,
                Low::BReq | Low::AResp => Side::A,
            }
        }

        /// Queues the nonces: a makes its request's then its answer's, b likewise.
        fn queue(self, na: &Nonces, nb: &Nonces) {
            let pick = |l: bool| if l { 0x00 } else { X };
            let (ar, br, bs, as_) = (
                matches!(self, Low::AReq),
                matches!(self, Low::BReq),
                matches!(self, Low::BResp),
                matches!(self, Low::AResp),
            );
            na.push(&[pick(ar), pick(as_)]);
            nb.push(&[pick(br), pick(bs)]);
        }
    }

    /// Both sides start an IKE rekey at once; the requests cross. `network` adds a
    /// fault: every message duplicated, or one response lost.
    #[derive(Clone, Copy, Debug)]
    enum Net {
        Clean,
        Duplicated,
        AnswerToALost,
        AnswerToBLost,
    }

    fn collision(low: Low, net: Net) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        low.queue(&na, &nb);
        let rules = match net {
            Net::Clean => vec![],
            Net::Duplicated => vec![
                Rule::all(Side::A, any, Fate::Duplicate),
                Rule::all(Side::B, any, Fate::Duplicate),
            ],
            Net::AnswerToALost => vec![Rule::nth(Side::B, ccsa_resp, 0, Fate::Drop)],
            Net::AnswerToBLost => vec![Rule::nth(Side::A, ccsa_resp, 0, Fate::Drop)],
        };
        let log = script(&mut p, rules);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        assert_eq!(
            (na.left(), nb.left()),
            (0, 0),
            "each side made two rekey nonces"
        );
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, low.winner());
        // The loser deletes its redundant SA, the winner the old one: one DELETE each
        // (plus copies when the network duplicates).
        if matches!(net, Net::Clean) {
            assert_eq!(log.count(Side::A, info_req), 1, "{low:?}\n{}", log.dump());
            assert_eq!(log.count(Side::B, info_req), 1, "{low:?}");
        }
        for s in [Side::A, Side::B] {
            assert!(!rekeyed(&p, s).is_empty(), "{s:?} reported the rekey");
        }
        assert_usable(&mut p);
    }

    cases! {
        collision_rekey_a_request_nonce_lowest => collision(Low::AReq, Net::Clean);
        collision_rekey_b_request_nonce_lowest => collision(Low::BReq, Net::Clean);
        collision_rekey_b_answer_nonce_lowest => collision(Low::BResp, Net::Clean);
        collision_rekey_a_answer_nonce_lowest => collision(Low::AResp, Net::Clean);
        collision_rekey_duplicated_a_request_nonce_lowest => collision(Low::AReq, Net::Duplicated);
        collision_rekey_duplicated_b_request_nonce_lowest => collision(Low::BReq, Net::Duplicated);
        collision_rekey_duplicated_b_answer_nonce_lowest => collision(Low::BResp, Net::Duplicated);
        collision_rekey_duplicated_a_answer_nonce_lowest => collision(Low::AResp, Net::Duplicated);
        collision_rekey_answer_to_a_lost_a_request_nonce_lowest => collision(Low::AReq, Net::AnswerToALost);
        collision_rekey_answer_to_a_lost_b_request_nonce_lowest => collision(Low::BReq, Net::AnswerToALost);
        collision_rekey_answer_to_b_lost_b_answer_nonce_lowest => collision(Low::BResp, Net::AnswerToBLost);
        collision_rekey_answer_to_b_lost_a_answer_nonce_lowest => collision(Low::AResp, Net::AnswerToBLost);
    }
}
