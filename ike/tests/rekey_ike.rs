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

    use ike::endpoint::{DownReason, Event};

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
    /// The first byte of a nonce that is not the lowest (the lowest gets 0x00).
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
            reconf(&mut p, s, "aes128gcm16-prfsha256-ecp256");
        }
        let log = script(&mut p, vec![]);
        start_rekey(&mut p, side);
        p.settle();
        assert_one_ike_sa(&p, 1);
        assert_eq!(dh(&mut p, Side::A), 19, "ECP-256");
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
        reconf(&mut p, side, "aes128gcm16-prfsha256-x25519-ecp256");
        reconf(&mut p, other(side), "aes128gcm16-prfsha256-ecp256");
        let rules = if lost {
            vec![Rule::nth(side, ccsa_req, 1, Fate::Drop)]
        } else {
            vec![]
        };
        let log = script(&mut p, rules);
        start_rekey(&mut p, side);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        assert_eq!(dh(&mut p, Side::A), 19, "ECP-256");
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
        /// Every copy of a's DELETE (of its redundant SA, or of the old one) is lost:
        /// the SA it names at b deletes itself after its retire time.
        DeletesFromALost,
        /// Every copy of b's DELETE is lost.
        DeletesFromBLost,
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
            Net::DeletesFromALost => vec![Rule::all(Side::A, info_req, Fate::Drop)],
            Net::DeletesFromBLost => vec![Rule::all(Side::B, info_req, Fate::Drop)],
        };
        let log = script(&mut p, rules);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        p.filter = None;
        assert_eq!(
            (na.left(), nb.left()),
            (0, 0),
            "each side made two rekey nonces"
        );
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, low.winner());
        assert_rekeyed_once(&p);
        // The loser deletes its redundant SA, the winner the old one: one DELETE each
        // (plus copies when the network duplicates).
        if matches!(net, Net::Clean) {
            assert_eq!(log.count(Side::A, info_req), 1, "{low:?}\n{}", log.dump());
            assert_eq!(log.count(Side::B, info_req), 1, "{low:?}");
        }
        assert_rekeyed_once(&p);
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
        collision_rekey_deletes_from_a_lost_a_wins => collision(Low::BReq, Net::DeletesFromALost);
        collision_rekey_deletes_from_a_lost_b_wins => collision(Low::AReq, Net::DeletesFromALost);
        collision_rekey_deletes_from_b_lost_a_wins => collision(Low::AResp, Net::DeletesFromBLost);
        collision_rekey_deletes_from_b_lost_b_wins => collision(Low::BResp, Net::DeletesFromBLost);
    }

    /// Both sides' KE groups are refused by the other (a: X25519 and ECP-256, b:
    /// ECP-384 and ECP-256): both answer INVALID_KE_PAYLOAD naming ECP-256, both retry
    /// with it, and those retries collide; the nonces of the retries decide.
    fn collision_ke_invalid(low: Low) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        reconf(&mut p, Side::A, "aes128gcm16-prfsha256-x25519-ecp256");
        reconf(&mut p, Side::B, "aes128gcm16-prfsha256-ecp384-ecp256");
        // The first requests' nonces do not matter (refused).
        na.push(&[X]);
        nb.push(&[X]);
        low.queue(&na, &nb);
        let log = script(&mut p, vec![]);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        assert_eq!((na.left(), nb.left()), (0, 0));
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, low.winner());
        assert_rekeyed_once(&p);
        assert_eq!(dh(&mut p, Side::A), 19, "ECP-256");
        assert_eq!(log.count(Side::A, ccsa_req), 2);
        assert_eq!(log.count(Side::B, ccsa_req), 2);
        assert_usable(&mut p);
    }

    cases! {
        collision_rekey_ke_invalid_a_request_nonce_lowest => collision_ke_invalid(Low::AReq);
        collision_rekey_ke_invalid_b_request_nonce_lowest => collision_ke_invalid(Low::BReq);
        collision_rekey_ke_invalid_b_answer_nonce_lowest => collision_ke_invalid(Low::BResp);
        collision_rekey_ke_invalid_a_answer_nonce_lowest => collision_ke_invalid(Low::AResp);
    }

    /// As above, but a's retry is delayed by `delay`: 5 ms still crosses b's retry (a
    /// collision, the nonces decide); 15 ms reaches b after b finished its rekey, so b's
    /// old SA answers TEMPORARY_FAILURE and b's SA is the one left, whatever the nonces.
    fn collision_ke_invalid_delayed_retry(low: Low, delay_ms: u64) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        reconf(&mut p, Side::A, "aes128gcm16-prfsha256-x25519-ecp256");
        reconf(&mut p, Side::B, "aes128gcm16-prfsha256-ecp384-ecp256");
        na.push(&[X]);
        nb.push(&[X]);
        low.queue(&na, &nb);
        let delay = Duration::from_millis(delay_ms);
        script(
            &mut p,
            vec![Rule::nth(Side::A, ccsa_req, 1, Fate::Delay(delay))],
        );
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        let winner = if delay_ms < 10 { low.winner() } else { Side::B };
        made_by(&mut p, winner);
        assert_rekeyed_once(&p);
        assert_usable(&mut p);
    }

    cases! {
        collision_rekey_ke_invalid_delayed_retry_crossing_a_lowest => collision_ke_invalid_delayed_retry(Low::AReq, 5);
        collision_rekey_ke_invalid_delayed_retry_crossing_b_lowest => collision_ke_invalid_delayed_retry(Low::BReq, 5);
        collision_rekey_ke_invalid_delayed_retry_after_peer_done => collision_ke_invalid_delayed_retry(Low::BReq, 15);
    }

    /// When the held answer to a's request is released: right after b's DELETE reached
    /// a, or only after b retired the SA a never completed.
    #[derive(Clone, Copy, Debug)]
    enum Release {
        AfterDelete,
        Late,
    }

    /// A collision where b's answer to a's request is held back until b, which learned
    /// the outcome first, has sent its DELETE (strongSwan's
    /// test_collision_delayed_response). If b won, its DELETE of the old SA tells a
    /// that b's SA stays: a ends the old SA as rekeyed and drops the late answer; b
    /// retires the SA it made for a's request on its own. If b lost, its DELETE of its
    /// redundant SA reaches a while a still needs that SA (it holds the children until
    /// a's answer arrives): a ignores it, and once the answer is in, a wins as usual.
    fn collision_delayed_response(low: Low, release: Release) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        low.queue(&na, &nb);
        let log = script(&mut p, vec![Rule::nth(Side::B, ccsa_resp, 0, Fate::Hold)]);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        p.run_for(Duration::from_millis(100));
        assert_eq!(log.count(Side::B, info_req), 1, "b's DELETE sent");
        if matches!(release, Release::Late) {
            p.run_for(Duration::from_secs(40));
        }
        assert_eq!(release_held(&mut p), 1);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, low.winner());
        assert_rekeyed_once(&p);
        if low.winner() == Side::A {
            assert!(
                p.a.ep.stats().unexpected >= 1,
                "b's early DELETE was ignored"
            );
        }

        assert_usable(&mut p);
    }

    fn release_held(p: &mut Pair) -> usize {
        p.release(|_| true)
    }

    cases! {
        collision_rekey_delayed_response_b_wins_a_request_lowest => collision_delayed_response(Low::AReq, Release::AfterDelete);
        collision_rekey_delayed_response_b_wins_b_answer_lowest => collision_delayed_response(Low::BResp, Release::AfterDelete);
        collision_rekey_delayed_response_b_wins_released_late => collision_delayed_response(Low::AReq, Release::Late);
        collision_rekey_delayed_response_b_wins_b_answer_lowest_released_late => collision_delayed_response(Low::BResp, Release::Late);
        collision_rekey_delayed_response_b_loses_b_request_lowest => collision_delayed_response(Low::BReq, Release::AfterDelete);
        collision_rekey_delayed_response_b_loses_a_answer_lowest => collision_delayed_response(Low::AResp, Release::AfterDelete);
    }

    /// b's rekey request never reaches a (every copy lost, or only the first): a sees
    /// no collision, completes its rekey and deletes the old SA; b, which answered a's
    /// request while its own was in flight, takes that DELETE as the end of the
    /// collision (strongSwan's test_collision_dropped_request).
    fn collision_dropped_request(low: Low, every_copy: bool) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        low.queue(&na, &nb);
        let rule = if every_copy {
            Rule::all(Side::B, ccsa_req, Fate::Drop)
        } else {
            Rule::nth(Side::B, ccsa_req, 0, Fate::Drop)
        };
        script(&mut p, vec![rule]);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, Side::A);
        assert_rekeyed_once(&p);
        assert_usable(&mut p);
    }

    cases! {
        collision_rekey_dropped_request_b_would_win => collision_dropped_request(Low::AReq, true);
        collision_rekey_dropped_request_b_would_lose => collision_dropped_request(Low::BReq, true);
        collision_rekey_dropped_request_first_copy_only => collision_dropped_request(Low::AReq, false);
    }

    /// b's rekey request is delayed until a has finished its own (strongSwan's
    /// test_collision_delayed_request): a's old SA answers it TEMPORARY_FAILURE (RFC 7296
    /// 2.25). `delete_last` holds a's DELETE of the old SA until after that answer
    /// (test_collision_delayed_request_and_delete): b must not retry on an SA the peer
    /// deletes, and ends with a's SA either way.
    fn collision_delayed_request(low: Low, delete_last: bool) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        low.queue(&na, &nb);
        let mut rules = vec![Rule::nth(
            Side::B,
            ccsa_req,
            0,
            Fate::Delay(Duration::from_millis(15)),
        )];
        if delete_last {
            rules.push(Rule::nth(
                Side::A,
                info_req,
                0,
                Fate::Delay(Duration::from_millis(40)),
            ));
        }
        let log = script(&mut p, rules);
        start_rekey(&mut p, Side::A);
        start_rekey(&mut p, Side::B);
        run(&mut p, LONG);
        assert_one_ike_sa(&p, 1);
        made_by(&mut p, Side::A);
        assert_rekeyed_once(&p);
        assert_eq!(log.count(Side::A, ccsa_resp), 1, "TEMPORARY_FAILURE");
        assert_eq!(log.count(Side::B, ccsa_req), 1, "b did not retry");
        assert_usable(&mut p);
    }

    cases! {
        collision_rekey_delayed_request_a_request_lowest => collision_delayed_request(Low::AReq, false);
        collision_rekey_delayed_request_b_request_lowest => collision_delayed_request(Low::BReq, false);
        collision_rekey_delayed_request_b_answer_lowest => collision_delayed_request(Low::BResp, false);
        collision_rekey_delayed_request_and_delete_a_request_lowest => collision_delayed_request(Low::AReq, true);
        collision_rekey_delayed_request_and_delete_b_request_lowest => collision_delayed_request(Low::BReq, true);
        collision_rekey_delayed_request_and_delete_b_answer_lowest => collision_delayed_request(Low::BResp, true);
    }

    // ---- an IKE rekey crossing an IKE delete -----------------------------------------

    /// How the DELETE of the other side meets the rekey.
    #[derive(Clone, Copy, Debug)]
    enum Del {
        /// Sent at the same instant: the requests cross.
        Crossing,
        /// Its first copy lost: the rekey is answered TEMPORARY_FAILURE first, then
        /// the retransmitted DELETE ends the SA.
        FirstCopyLost,
        /// Sent just after answering the rekey (the delete follows the completed
        /// rekey, on the old SA, as a `terminate` would).
        AfterRekey,
    }

    /// `side` rekeys the IKE SA while the other side deletes it (strongSwan's
    /// test_collision_delete and test_collision_delete_drop_delete): the deleting side
    /// answers the rekey TEMPORARY_FAILURE (RFC 7296 2.25), the rekeying side obeys the
    /// DELETE; both end without IKE SA, the rekeying side told DeletedByPeer.
    fn rekey_vs_delete(side: Side, del: Del) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let deleter = other(side);
        let rules = match del {
            Del::FirstCopyLost => vec![Rule::nth(deleter, info_req, 0, Fate::Drop)],
            _ => vec![],
        };
        let log = script(&mut p, rules);
        start_rekey(&mut p, side);
        let conn = p.node(deleter).ep.connections()[0].name.clone();
        if matches!(del, Del::AfterRekey) {
            p.run_until(Duration::from_secs(1), |p| !rekeyed(p, deleter).is_empty());
        }
        let now = p.now;
        p.node(deleter).ep.terminate(now, &conn).unwrap();
        run(&mut p, LONG);
        for s in [Side::A, Side::B] {
            assert!(
                p.node(s).ep.ike_sas().is_empty(),
                "{s:?}: {:?}",
                p.node(s).ep.ike_sas()
            );
            assert!(p.node(s).children.is_empty());
            assert_eq!(
                p.node(s).ike_down.len(),
                1,
                "{s:?}: {:?}",
                p.node(s).ike_down
            );
        }
        assert_eq!(p.node(side).ike_down, vec![DownReason::DeletedByPeer]);
        assert_eq!(p.node(deleter).ike_down, vec![DownReason::Terminated]);
        if !matches!(del, Del::AfterRekey) {
            assert!(rekeyed(&p, side).is_empty(), "no rekey completed");
            assert_eq!(log.count(deleter, ccsa_resp), 1, "TEMPORARY_FAILURE");
        }
        p.assert_no_loss();
    }

    cases! {
        collision_delete_rekey_from_initiator => rekey_vs_delete(Side::A, Del::Crossing);
        collision_delete_rekey_from_responder => rekey_vs_delete(Side::B, Del::Crossing);
        collision_delete_first_copy_lost_rekey_from_initiator => rekey_vs_delete(Side::A, Del::FirstCopyLost);
        collision_delete_first_copy_lost_rekey_from_responder => rekey_vs_delete(Side::B, Del::FirstCopyLost);
        collision_delete_after_rekey_from_initiator => rekey_vs_delete(Side::A, Del::AfterRekey);
        collision_delete_after_rekey_from_responder => rekey_vs_delete(Side::B, Del::AfterRekey);
    }

    // ---- an IKE rekey crossing child SA work -----------------------------------------

    /// What the other side does to the child SA while `side` rekeys the IKE SA.
    #[derive(Clone, Copy, Debug)]
    enum ChildOp {
        Rekey,
        Delete,
        Create,
    }

    /// `side` rekeys the IKE SA while the other side rekeys, deletes or creates a child
    /// SA, both requests sent at once (`ike_first`: the IKE rekey a moment earlier).
    /// RFC 7296 2.25 and charon: a side with child work in flight answers an IKE rekey
    /// TEMPORARY_FAILURE, and a side rekeying the IKE SA answers a child rekey (or
    /// creation) TEMPORARY_FAILURE; a child delete is served. Both end with one IKE SA
    /// holding the mirrored child SAs the child operation asked for.
    fn ike_rekey_vs_child(side: Side, op: ChildOp, ike_first: bool) {
        ike_rekey_vs_child_net(side, op, ike_first, false)
    }

    /// As [`ike_rekey_vs_child`]; `lossy` drops the first CREATE_CHILD_SA and the
    /// first INFORMATIONAL answer of each side (the TEMPORARY_FAILURE among them),
    /// which the retransmitted requests get from the responders' caches.
    fn ike_rekey_vs_child_net(side: Side, op: ChildOp, ike_first: bool, lossy: bool) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let peer = other(side);
        if matches!(op, ChildOp::Create) {
            let spi = p.node(peer).child_spis()[0].0;
            let now = p.now;
            p.node(peer).ep.delete_child(now, spi).unwrap();
            p.settle();
        }
        let old_ike = ike_spis(&p, Side::A);
        let child_op = |p: &mut Pair| {
            let now = p.now;
            match op {
                ChildOp::Rekey => {
                    let spi = p.node(peer).child_spis()[0].0;
                    p.node(peer).ep.rekey_child(now, spi).unwrap();
                }
                ChildOp::Delete => {
                    let spi = p.node(peer).child_spis()[0].0;
                    p.node(peer).ep.delete_child(now, spi).unwrap();
                }
                ChildOp::Create => {
                    let conn = p.node(peer).ep.connections()[0].name.clone();
                    p.node(peer).ep.initiate(now, &conn, Some("net")).unwrap();
                }
            }
        };
        let before = p.a.child_spis();
        let rules = if lossy {
            vec![
                Rule::nth(Side::A, ccsa_resp, 0, Fate::Drop),
                Rule::nth(Side::B, ccsa_resp, 0, Fate::Drop),
                Rule::nth(Side::A, info_resp, 0, Fate::Drop),
                Rule::nth(Side::B, info_resp, 0, Fate::Drop),
            ]
        } else {
            vec![]
        };
        let log = script(&mut p, rules);
        if ike_first {
            start_rekey(&mut p, side);
            p.run_for(Duration::from_millis(1));
            child_op(&mut p);
        } else {
            child_op(&mut p);
            p.run_for(Duration::from_millis(1));
            start_rekey(&mut p, side);
        }
        let deleted_out = before
            .first()
            .map(|&(i, o)| if peer == Side::A { o } else { i });
        run(&mut p, LONG);
        if lossy && matches!(op, ChildOp::Delete) {
            // The deleting side keeps the child until its Delete is answered (as charon
            // does): with the answer lost, what it sends on that child after the
            // other side's 2 s grace is lost. Only that; see rekey_cases_ike.md.
            assert!(
                p.losses
                    .iter()
                    .all(|l| l.from == peer && Some(l.spi) == deleted_out),
                "{:?}",
                p.losses
            );
            p.losses.clear();
        }
        let children = usize::from(!matches!(op, ChildOp::Delete));
        let new_ike = assert_one_ike_sa(&p, children);
        assert_ne!(vec![new_ike], old_ike, "the IKE SA was rekeyed in the end");
        made_by(&mut p, side);
        match op {
            ChildOp::Rekey => assert_ne!(p.a.child_spis(), before, "child rekeyed"),
            ChildOp::Delete => assert!(p.a.children.is_empty() && p.b.children.is_empty()),
            ChildOp::Create => assert_eq!(p.a.children.len(), 1),
        }
        if !lossy && !matches!(op, ChildOp::Delete) {
            // Each side answered the other TEMPORARY_FAILURE and asked again later.
            assert_eq!(log.count(side, ccsa_req), 2, "IKE rekey retried");
            assert_eq!(log.count(peer, ccsa_req), 2, "child work retried");
        }
        if children > 0 {
            assert_usable(&mut p);
        }
    }

    cases! {
        ike_rekey_crossing_child_rekey_from_initiator_ike_first => ike_rekey_vs_child(Side::A, ChildOp::Rekey, true);
        ike_rekey_crossing_child_rekey_from_initiator_child_first => ike_rekey_vs_child(Side::A, ChildOp::Rekey, false);
        ike_rekey_crossing_child_rekey_from_responder_ike_first => ike_rekey_vs_child(Side::B, ChildOp::Rekey, true);
        ike_rekey_crossing_child_rekey_from_responder_child_first => ike_rekey_vs_child(Side::B, ChildOp::Rekey, false);
        ike_rekey_crossing_child_delete_from_initiator_ike_first => ike_rekey_vs_child(Side::A, ChildOp::Delete, true);
        ike_rekey_crossing_child_delete_from_initiator_child_first => ike_rekey_vs_child(Side::A, ChildOp::Delete, false);
        ike_rekey_crossing_child_delete_from_responder_ike_first => ike_rekey_vs_child(Side::B, ChildOp::Delete, true);
        ike_rekey_crossing_child_delete_from_responder_child_first => ike_rekey_vs_child(Side::B, ChildOp::Delete, false);
        ike_rekey_crossing_child_create_from_initiator_ike_first => ike_rekey_vs_child(Side::A, ChildOp::Create, true);
        ike_rekey_crossing_child_create_from_initiator_child_first => ike_rekey_vs_child(Side::A, ChildOp::Create, false);
        ike_rekey_crossing_child_create_from_responder_ike_first => ike_rekey_vs_child(Side::B, ChildOp::Create, true);
        ike_rekey_crossing_child_create_from_responder_child_first => ike_rekey_vs_child(Side::B, ChildOp::Create, false);
        ike_rekey_crossing_child_rekey_answers_lost_from_initiator => ike_rekey_vs_child_net(Side::A, ChildOp::Rekey, true, true);
        ike_rekey_crossing_child_rekey_answers_lost_from_responder => ike_rekey_vs_child_net(Side::B, ChildOp::Rekey, false, true);
        ike_rekey_crossing_child_delete_answers_lost_from_initiator => ike_rekey_vs_child_net(Side::A, ChildOp::Delete, true, true);
        ike_rekey_crossing_child_delete_answers_lost_from_responder => ike_rekey_vs_child_net(Side::B, ChildOp::Delete, false, true);
    }

    // ---- IKE deletes (strongSwan's test_ike_delete.c) ---------------------------------

    /// What goes wrong with a lone IKE SA delete.
    #[derive(Clone, Copy, Debug)]
    enum DelNet {
        Clean,
        /// The first copy of the DELETE is lost: retransmitted and answered.
        RequestLost,
        /// Every answer is lost: the peer forgot the SA when it answered, so the
        /// deleting side's retransmissions go unanswered until it gives up.
        AnswerLost,
    }

    /// `side` deletes the IKE SA (`terminate`): both end without IKE or child SA, the
    /// peer told DeletedByPeer, the deleting side Terminated (Timeout when it never
    /// heard the answer).
    fn ike_delete(side: Side, net: DelNet) {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let peer = other(side);
        let rules = match net {
            DelNet::Clean => vec![],
            DelNet::RequestLost => vec![Rule::nth(side, info_req, 0, Fate::Drop)],
            DelNet::AnswerLost => vec![Rule::all(peer, info_resp, Fate::Drop)],
        };
        let log = script(&mut p, rules);
        let child = p.node(side).child_spis()[0];
        let conn = p.node(side).ep.connections()[0].name.clone();
        let now = p.now;
        p.node(side).ep.terminate(now, &conn).unwrap();
        p.run_for(Duration::from_millis(1500));
        p.assert_no_loss();
        run(&mut p, LONG);
        for s in [Side::A, Side::B] {
            assert!(p.node(s).ep.ike_sas().is_empty(), "{s:?}");
            assert!(p.node(s).children.is_empty(), "{s:?}");
        }
        assert_eq!(p.node(peer).ike_down, vec![DownReason::DeletedByPeer]);
        let why = match net {
            DelNet::AnswerLost => DownReason::Timeout,
            _ => DownReason::Terminated,
        };
        assert_eq!(p.node(side).ike_down, vec![why]);
        assert_eq!(log.count(peer, info_resp), 1);
        if matches!(net, DelNet::AnswerLost) {
            // Like charon, the deleting side keeps its child SAs until the answer or the
            // end of its retransmissions; once the peer's 2 s grace for the inbound SA it
            // deleted is over, what the deleting side still sends on the tunnel being
            // torn down is lost (see rekey_cases_ike.md). Nothing else is.
            assert!(p.losses.iter().all(|l| l.from == side && l.spi == child.1));
        } else {
            p.assert_no_loss();
        }
    }

    cases! {
        ike_delete_regular_from_initiator => ike_delete(Side::A, DelNet::Clean);
        ike_delete_regular_from_responder => ike_delete(Side::B, DelNet::Clean);
        ike_delete_request_lost_from_initiator => ike_delete(Side::A, DelNet::RequestLost);
        ike_delete_request_lost_from_responder => ike_delete(Side::B, DelNet::RequestLost);
        ike_delete_answer_lost_from_initiator => ike_delete(Side::A, DelNet::AnswerLost);
        ike_delete_answer_lost_from_responder => ike_delete(Side::B, DelNet::AnswerLost);
    }

    /// Both sides delete the IKE SA at once (strongSwan's test_ike_delete
    /// test_collision): each answers the other's DELETE and is gone; the late answer to
    /// its own finds nothing. One IKE SA down on each side, nothing left.
    #[test]
    fn ike_delete_collision() {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let now = p.now;
        p.a.ep.terminate(now, "site-b").unwrap();
        p.b.ep.terminate(now, "site-a").unwrap();
        run(&mut p, LONG);
        for s in [Side::A, Side::B] {
            let n = p.node(s);
            assert!(n.ep.ike_sas().is_empty() && n.children.is_empty(), "{s:?}");
            assert_eq!(n.ike_down.len(), 1, "{s:?}: {:?}", n.ike_down);
            assert!(matches!(
                n.ike_down[0],
                DownReason::DeletedByPeer | DownReason::Terminated
            ));
        }
        p.assert_no_loss();
    }

    /// b deletes the IKE SA, but its DELETE is held for 70 s; meanwhile a asks for a new
    /// child. b, deleting, answers TEMPORARY_FAILURE each time (RFC 7296 2.25); a asks
    /// again after 2, 4, 8, 16 and 32 s, then gives up with `ChildFailed`. Once the DELETE
    /// arrives both are empty: a reports DeletedByPeer, b Terminated.
    #[test]
    fn ike_delete_pending_refuses_new_child_until_given_up() {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let spi = p.a.child_spis()[0].0;
        let now = p.now;
        p.a.ep.delete_child(now, spi).unwrap();
        p.settle();
        let log = script(&mut p, vec![Rule::all(Side::B, info_req, Fate::Hold)]);
        let now = p.now;
        p.b.ep.terminate(now, "site-a").unwrap();
        p.run_for(Duration::from_millis(5));
        let now = p.now;
        p.a.ep.initiate(now, "site-b", Some("net")).unwrap();
        p.run_for(Duration::from_secs(70));
        assert_eq!(log.count(Side::A, ccsa_req), 6, "asked six times");
        assert_eq!(log.count(Side::B, ccsa_resp), 6);
        assert!(p.a.events.iter().any(|e| matches!(
            e,
            Event::ChildFailed {
                reason: DownReason::PeerError(_),
                ..
            }
        )));
        p.filter = None;
        release_held(&mut p);
        run(&mut p, LONG);
        for s in [Side::A, Side::B] {
            assert!(p.node(s).ep.ike_sas().is_empty(), "{s:?}");
            assert!(p.node(s).children.is_empty(), "{s:?}");
        }
        assert_eq!(p.a.ike_down, vec![DownReason::DeletedByPeer]);
        assert_eq!(p.b.ike_down, vec![DownReason::Terminated]);
        p.assert_no_loss();
    }

    // ---- message ID sync (RFC 6311, strongSwan's test_ike_mid_sync.c) ------------------

    /// esprit does not implement RFC 6311 (it never announces
    /// IKEV2_MESSAGE_ID_SYNC_SUPPORTED, so a charon peer never sends a sync). What it
    /// does where charon would sync: a stale copy of an old request (a replay, or a
    /// peer restored from an older state) is neither answered nor acted upon, only
    /// counted, and the IKE SA keeps working.
    #[test]
    fn mid_sync_unsupported_stale_request_is_dropped() {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        // Hold a copy of a's first liveness check; its retransmission gets through.
        let log = script(&mut p, vec![Rule::nth(Side::A, info_req, 0, Fate::Hold)]);
        let id = ike_id(&p, Side::A);
        let now = p.now;
        p.a.ep.dpd(now, id).unwrap();
        run(&mut p, LONG);
        // A later exchange moves the window on.
        let now = p.now;
        p.a.ep.dpd(now, id).unwrap();
        p.settle();
        let before = p.b.ep.stats().unexpected;
        let answered = log.count(Side::B, info_resp);
        assert_eq!(release(&mut p, Side::A, info_req), 1);
        p.settle();
        assert_eq!(p.b.ep.stats().unexpected, before + 1, "counted");
        assert_eq!(log.count(Side::B, info_resp), answered, "not answered");
        assert_one_ike_sa(&p, 1);
        assert_usable(&mut p);
    }

    /// The first copy of an IKE rekey request is held back until the rekey, completed
    /// through its retransmission, has deleted the old SA: the stale copy makes no SA,
    /// only a count of an unknown SPI and an unprotected INVALID_IKE_SPI answer (RFC
    /// 7296 1.5), which a ignores (it is a response for an SA it no longer has).
    #[test]
    fn mid_sync_unsupported_stale_ike_rekey_request_makes_nothing() {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        up(&mut p);
        let log = script(&mut p, vec![Rule::nth(Side::A, ccsa_req, 0, Fate::Hold)]);
        start_rekey(&mut p, Side::A);
        run(&mut p, LONG);
        let spis = assert_one_ike_sa(&p, 1);
        let unknown = p.b.ep.stats().unknown_spi;
        assert_eq!(release(&mut p, Side::A, ccsa_req), 1);
        p.settle();
        assert_eq!(p.b.ep.stats().unknown_spi, unknown + 1);
        assert_eq!(log.count(Side::B, ccsa_resp), 1, "answered once");
        assert_eq!(log.count(Side::B, invalid_spi), 1);
        assert_eq!(assert_one_ike_sa(&p, 1), spis);
        assert_eq!(p.b.ep.stats().ike_rekeys, 1);
    }

    // ---- childless IKE SAs (RFC 6023, strongSwan's test_childless.c) -------------------

    /// a's connection has no child: IKE_AUTH carries no SA or TS payloads and b, whose
    /// connection has one, establishes the IKE SA without a child (RFC 6023 2: the
    /// responder of a childless IKE_AUTH). The child comes later in its own
    /// CREATE_CHILD_SA with a KE (PFS), as strongSwan's childless initiation does.
    #[test]
    fn childless_ike_sa_then_child_then_rekey() {
        let esp = "aes128gcm16-x25519";
        let (mut p, _, _) = pair_with_nonces(IKE, esp);
        let mut a = psk_a_conn(IKE, esp);
        let with_child = a.clone();
        a.children.clear();
        p.a.ep.add_connection(a);
        p.a.ep.initiate(p.now, "site-b", None).unwrap();
        p.settle();
        assert_eq!((p.a.ike_up, p.b.ike_up), (1, 1));
        assert!(p.a.children.is_empty() && p.b.children.is_empty());
        assert_one_ike_sa(&p, 0);
        p.a.ep.add_connection(with_child);
        let now = p.now;
        p.a.ep.initiate(now, "site-b", Some("net")).unwrap();
        p.settle();
        assert_one_ike_sa(&p, 1);
        start_rekey(&mut p, Side::B);
        p.settle();
        assert_one_ike_sa(&p, 1);
        assert_usable(&mut p);
    }

    /// A childless IKE SA is rekeyed from either side, alone or in a collision: one
    /// IKE SA, no child, nothing down.
    fn childless_rekey(side: Option<Side>) {
        let (mut p, na, nb) = pair_with_nonces(IKE, ESP);
        let mut a = psk_a_conn(IKE, ESP);
        a.children.clear();
        p.a.ep.add_connection(a);
        p.a.ep.initiate(p.now, "site-b", None).unwrap();
        p.settle();
        let old = assert_one_ike_sa(&p, 0);
        match side {
            Some(s) => start_rekey(&mut p, s),
            None => {
                Low::BReq.queue(&na, &nb);
                start_rekey(&mut p, Side::A);
                start_rekey(&mut p, Side::B);
            }
        }
        run(&mut p, LONG);
        let new = assert_one_ike_sa(&p, 0);
        assert_ne!(new, old);
        made_by(&mut p, side.unwrap_or(Side::A));
        assert_rekeyed_once(&p);
    }

    cases! {
        childless_rekey_from_initiator => childless_rekey(Some(Side::A));
        childless_rekey_from_responder => childless_rekey(Some(Side::B));
        childless_rekey_collision => childless_rekey(None);
    }

    /// b's connection has no child but a asks for one in IKE_AUTH: b establishes the IKE
    /// SA and refuses the child with TS_UNACCEPTABLE (RFC 7296 1.2 keeps the IKE SA);
    /// a reports the child failed and keeps a working, childless IKE SA, which rekeys.
    #[test]
    fn childless_responder_refuses_the_child_keeps_the_ike_sa_and_rekeys() {
        let (mut p, _, _) = pair_with_nonces(IKE, ESP);
        let mut b = psk_b_conn(IKE, ESP);
        b.children.clear();
        p.b.ep.add_connection(b);
        p.a.ep.initiate(p.now, "site-b", None).unwrap();
        p.settle();
        assert_eq!((p.a.ike_up, p.b.ike_up), (1, 1));
        assert!(p.a.events.iter().any(|e| matches!(
            e,
            Event::ChildFailed {
                reason: DownReason::TsUnacceptable,
                ..
            }
        )));
        assert_one_ike_sa(&p, 0);
        start_rekey(&mut p, Side::A);
        p.settle();
        assert_one_ike_sa(&p, 0);
        assert_eq!(rekeyed(&p, Side::B).len(), 1);
    }
}
