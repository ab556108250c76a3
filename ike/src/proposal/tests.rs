use super::*;
use crate::iana::transform::{DH, ENCR, ESN, INTEG, PRF};

fn ike(s: &str) -> ProposalSet {
    ProposalSet::parse_ike(s).unwrap()
}

fn esp(s: &str) -> ProposalSet {
    ProposalSet::parse_esp(s).unwrap()
}

fn ike1(s: &str) -> CryptoProposal {
    ike(s).proposals()[0].clone()
}

fn esp1(s: &str) -> CryptoProposal {
    esp(s).proposals()[0].clone()
}

fn t(kind: u8, id: u16, key_length: Option<u16>) -> Transform {
    Transform {
        kind,
        id,
        key_length,
    }
}

/// The SA payload a peer configured with `s` would send.
fn offer(set: &ProposalSet) -> Vec<wire::Proposal> {
    set.to_wire(&[])
}

#[test]
fn parses_ike_strings() {
    let p = ike1("aes128gcm16-prfsha256-x25519");
    assert_eq!(
        (
            p.encr.as_slice(),
            p.integ.as_slice(),
            p.prf.as_slice(),
            p.dh.as_slice()
        ),
        (
            &[Encr::AesGcm16_128][..],
            &[][..],
            &[Prf::HmacSha256][..],
            &[Dh::Curve25519][..]
        )
    );
    let p = ike1("aes256gcm16-prfsha384-ecp256");
    assert_eq!(
        (p.encr[0], p.prf[0], p.dh[0]),
        (Encr::AesGcm16_256, Prf::HmacSha384, Dh::Ecp256)
    );
    // sha256 is the integrity algorithm and, with no PRF given, the PRF too.
    let p = ike1("aes128-sha256-ecp256");
    assert_eq!(
        (p.integ.as_slice(), p.prf.as_slice()),
        (&[Integ::HmacSha256_128][..], &[Prf::HmacSha256][..])
    );
    let p = ike1("aes256-sha512-x25519");
    assert_eq!(
        (p.encr[0], p.integ[0], p.prf[0]),
        (Encr::AesCbc256, Integ::HmacSha512_256, Prf::HmacSha512)
    );
    let p = ike1("aes128-aesxcbc-ecp256");
    assert_eq!((p.integ[0], p.prf[0]), (Integ::AesXcbc96, Prf::Aes128Xcbc));
    let p = ike1("aes256-sha384-ecp256");
    assert_eq!(
        (p.integ[0], p.prf[0]),
        (Integ::HmacSha384_192, Prf::HmacSha384)
    );
    let p = ike1("aes128gcm16-prfsha256-ecp256-x25519");
    assert_eq!(p.dh, [Dh::Ecp256, Dh::Curve25519]);
    let p = ike1("aes192-sha256-prfsha512-x25519");
    assert_eq!(
        (p.encr[0], p.prf.as_slice()),
        (Encr::AesCbc192, &[Prf::HmacSha512][..])
    );
    // Alternatives of several types in one proposal.
    let p = ike1("aes256-aes128-sha384-sha256-x25519-ecp256");
    assert_eq!(p.encr, [Encr::AesCbc256, Encr::AesCbc128]);
    assert_eq!(p.integ, [Integ::HmacSha384_192, Integ::HmacSha256_128]);
    assert_eq!(p.prf, [Prf::HmacSha384, Prf::HmacSha256]);
    assert!(p.esn.is_empty());
}

#[test]
fn parses_esp_strings() {
    let p = esp1("aes128gcm16-x25519");
    assert_eq!(
        (p.encr.as_slice(), p.dh.as_slice(), p.esn.as_slice()),
        (
            &[Encr::AesGcm16_128][..],
            &[Dh::Curve25519][..],
            &[false][..]
        )
    );
    let p = esp1("aes128gcm16");
    assert!(p.dh.is_empty() && p.integ.is_empty() && p.prf.is_empty());
    assert_eq!(esp("aes256gcm16").proposals()[0].encr, [Encr::AesGcm16_256]);
    assert_eq!(esp("aes128gcm16-esn").proposals()[0].esn, [true]);
    assert_eq!(esp("aes128gcm16-noesn").proposals()[0].esn, [false]);
    assert_eq!(
        esp("aes128gcm16-esn-noesn").proposals()[0].esn,
        [true, false]
    );
}

#[test]
fn aliases_are_equivalent() {
    let pairs = [
        (
            "aes128gcm16-prfsha256-x25519",
            "AES128GCM128-prfsha256-curve25519",
        ),
        ("aes128-sha256-ecp256", "aes-sha2_256-ecp256"),
        ("aes256-sha384-x25519", "aes256-sha2_384-x25519"),
        ("aes256-sha512-x25519", "aes256-sha2_512-x25519"),
        (
            "aes256gcm16-prfaesxcbc-x25519",
            "aes256gcm128-prfaesxcbc-x25519",
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(ike(a), ike(b), "{a} vs {b}");
    }
}

#[test]
fn parse_errors_name_the_token() {
    let err = ProposalSet::parse_ike("aes128-sha256-modp768").unwrap_err();
    assert_eq!(err, ProposalError::UnknownToken("modp768".into()));
    assert!(err.to_string().contains("modp768"));
    assert_eq!(
        ProposalSet::parse_ike("aes128gcm16-prfsha256-x25519,3des-sha1-modp2048").unwrap_err(),
        ProposalError::UnknownToken("3des".into())
    );
    assert_eq!(
        ProposalSet::parse_ike("aes128--x25519").unwrap_err(),
        ProposalError::UnknownToken("".into())
    );
    assert_eq!(
        ProposalSet::parse_ike("").unwrap_err(),
        ProposalError::UnknownToken("".into())
    );
    assert!(matches!(
        ProposalSet::parse_ike("aes128-x25519"),
        Err(ProposalError::MissingPrf(_))
    ));
    assert!(matches!(
        ProposalSet::parse_ike("aes128-prfsha256-x25519"),
        Err(ProposalError::MissingInteg(_))
    ));
    assert!(matches!(
        ProposalSet::parse_ike("aes128gcm16-prfsha256"),
        Err(ProposalError::MissingDh(_))
    ));
    assert!(matches!(
        ProposalSet::parse_ike("sha256-x25519"),
        Err(ProposalError::MissingEncr(_))
    ));
    assert!(matches!(
        ProposalSet::parse_ike("aes128gcm16-aes128-sha256-x25519"),
        Err(ProposalError::MixedAead(_))
    ));
    assert_eq!(
        ProposalSet::parse_ike("aes128gcm16-prfsha256-x25519-esn").unwrap_err(),
        ProposalError::NotForProtocol {
            token: "esn".into(),
            protocol: Protocol::Ike
        }
    );
    assert_eq!(
        ProposalSet::parse_esp("aes128gcm16-prfsha256").unwrap_err(),
        ProposalError::NotForProtocol {
            token: "prfsha256".into(),
            protocol: Protocol::Esp
        }
    );
    assert!(matches!(
        ProposalSet::parse_esp("aes128"),
        Err(ProposalError::MissingInteg(_))
    ));
}

#[test]
fn esp_takes_cbc_with_integrity_and_aead_without() {
    let p = esp1("aes128-aes256-sha256-sha1-modp2048-esn");
    assert_eq!(p.encr, [Encr::AesCbc128, Encr::AesCbc256]);
    assert_eq!(p.integ, [Integ::HmacSha256_128, Integ::HmacSha1_96]);
    assert_eq!(p.dh, [Dh::Modp2048]);
    assert_eq!(p.esn, [true]);
    // As strongSwan: integrity next to an AEAD cipher is dropped.
    assert!(esp("aes128gcm16-sha256").proposals()[0].integ.is_empty());
    // A peer's CBC proposal is selected with its integrity algorithm, and the reply
    // carries exactly one of each.
    let ours = esp("aes256gcm16, aes128-sha1");
    let offered = esp("aes128-sha1").to_wire(&[1, 2, 3, 4]);
    let sel = ours.select_esp(&offered, None).unwrap();
    assert_eq!(
        sel.suite,
        EspSuite {
            encr: Encr::AesCbc128,
            integ: Some(Integ::HmacSha1_96),
            dh: None,
            esn: false
        }
    );
    assert_eq!(sel.suite.to_string(), "aes128-sha1-noesn");
    // CBC without integrity is incomplete.
    let bad = EspSuite::from_transforms(&[t(ENCR, 12, Some(128)), t(ESN, 0, None)]);
    assert_eq!(bad, None);
    // GCM with an integrity algorithm is refused too (RFC 7296 3.3.3: NONE or absent).
    let bad = EspSuite::from_transforms(&[t(ENCR, 20, Some(128)), t(INTEG, 12, None)]);
    assert_eq!(bad, None);
}

#[test]
fn new_groups_and_sha1_parse() {
    let p = ike1("aes256-sha1-modp2048");
    assert_eq!(p.prf, [Prf::HmacSha1]);
    assert_eq!(p.dh, [Dh::Modp2048]);
    for (word, group) in [
        ("ecp384", Dh::Ecp384),
        ("ecp521", Dh::Ecp521),
        ("modp1024", Dh::Modp1024),
        ("modp3072", Dh::Modp3072),
        ("modp4096", Dh::Modp4096),
        ("modp2048s256", Dh::Modp2048s256),
    ] {
        let p = ike1(&format!("aes128gcm16-prfsha256-{word}"));
        assert_eq!(p.dh, [group], "{word}");
        assert_eq!(group.name(), word);
    }
    // The weak groups are never in the defaults.
    let defaults = ProposalSet::default_for(Protocol::Ike);
    assert!(defaults
        .proposals()
        .iter()
        .all(|p| p.dh.iter().all(|d| !d.is_weak()) && !p.integ.contains(&Integ::HmacSha1_96)));
}

#[test]
fn aead_drops_integrity_after_deriving_the_prf() {
    let p = ike1("aes128gcm16-sha256-x25519");
    assert!(p.integ.is_empty());
    assert_eq!(p.prf, [Prf::HmacSha256]);
}

#[test]
fn default_expands() {
    let set = ike("default");
    assert_eq!(set.proposals().len(), 2);
    assert_eq!(set, ike("aes128gcm16-aes256gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048, aes128-aes192-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-ecp521-modp3072-modp4096-modp2048"));
    assert_eq!(ProposalSet::default_for(Protocol::Ike), set);
    let set = esp("default");
    assert_eq!(
        set,
        esp("aes128gcm16-aes256gcm16, aes128-aes192-aes256-sha256-sha384-sha512")
    );
    assert!(set.proposals()[0].dh.is_empty());
    assert_eq!(ike("aes256-sha512-x25519, default").proposals().len(), 3);
}

#[test]
fn display_round_trips() {
    for s in [
        "aes128gcm16-prfsha256-x25519",
        "aes128-sha256-prfsha256-ecp256",
        "aes128-aesxcbc-prfaesxcbc-ecp256",
        "aes128gcm16-aes256gcm16-prfsha256-prfsha384-x25519-ecp256, aes256-aes128-sha256-sha384-prfsha256-prfsha384-x25519-ecp256",
    ] {
        assert_eq!(ike(s).to_string(), s);
        assert_eq!(ike(&ike(s).to_string()), ike(s));
    }
    assert_eq!(
        ike("aes128-sha256-ecp256").to_string(),
        "aes128-sha256-prfsha256-ecp256"
    );
    assert_eq!(esp("aes128gcm16-x25519").to_string(), "aes128gcm16-x25519");
    assert_eq!(esp("aes128gcm16-esn").to_string(), "aes128gcm16-esn");
}

#[test]
fn to_wire_numbers_and_attributes() {
    let wire = ike("aes128-sha256-ecp256, aes256gcm16-prfsha384-x25519").to_wire(&[]);
    assert_eq!(wire.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        wire[0].transforms,
        [
            t(ENCR, 12, Some(128)),
            t(INTEG, 12, None),
            t(PRF, 5, None),
            t(DH, 19, None)
        ]
    );
    assert_eq!(
        wire[1].transforms,
        [t(ENCR, 20, Some(256)), t(PRF, 6, None), t(DH, 31, None)]
    );
    assert_eq!(wire[0].protocol, 1);
    let wire = esp("aes128gcm16-x25519").to_wire(&[1, 2, 3, 4]);
    assert_eq!(wire[0].protocol, 3);
    assert_eq!(wire[0].spi, [1, 2, 3, 4]);
    assert_eq!(
        wire[0].transforms,
        [t(ENCR, 20, Some(128)), t(DH, 31, None), t(ESN, 0, None)]
    );
}

#[test]
fn selects_matching_ike_proposal() {
    let ours = ike("aes256gcm16-prfsha384-ecp256, aes128gcm16-prfsha256-x25519");
    let peer = ike("aes128gcm16-prfsha256-x25519");
    let sel = ours.select_ike(&offer(&peer), None).unwrap();
    assert_eq!(
        sel.suite,
        IkeSuite {
            encr: Encr::AesGcm16_128,
            integ: None,
            prf: Prf::HmacSha256,
            dh: Dh::Curve25519
        }
    );
    assert_eq!(sel.number, 1);
    let reply = sel.reply(&[]);
    assert_eq!(reply.transforms.len(), 3);
    assert_eq!(peer.check_ike_reply(&reply).unwrap(), sel.suite);
    assert_eq!(sel.suite.to_string(), "aes128gcm16-prfsha256-x25519");
}

#[test]
fn no_match_is_no_proposal_chosen() {
    let ours = ike("aes256gcm16-prfsha384-ecp256");
    for peer in [
        "aes128gcm16-prfsha384-ecp256",
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha384-x25519",
    ] {
        assert_eq!(
            ours.select_ike(&offer(&ike(peer)), None).unwrap_err(),
            ProposalError::NoProposalChosen,
            "{peer}"
        );
    }
    assert_eq!(
        ours.select_ike(&[], None).unwrap_err(),
        ProposalError::NoProposalChosen
    );
    // An ESP offer never matches IKE proposals.
    assert!(ours.select_ike(&offer(&esp("aes256gcm16")), None).is_err());
}

#[test]
fn our_order_decides_across_proposals_and_within_types() {
    let ours = ike("aes128-sha256-x25519, aes256gcm16-prfsha384-ecp256-x25519");
    // The peer prefers GCM, but our first proposal (CBC) wins since the peer offers it too.
    let peer = ike("aes256gcm16-prfsha384-x25519-ecp256, aes128-sha256-x25519");
    let sel = ours.select_ike(&offer(&peer), None).unwrap();
    assert_eq!(sel.number, 2);
    assert_eq!(sel.suite.encr, Encr::AesCbc128);
    // Within a type, our first acceptable group wins over the peer's first.
    let ours = ike("aes256gcm16-prfsha384-ecp256-x25519");
    let sel = ours.select_ike(&offer(&peer), None).unwrap();
    assert_eq!((sel.number, sel.suite.dh), (1, Dh::Ecp256));
    // ... unless the peer's KE payload is for another group we accept.
    let sel = ours.select_ike(&offer(&peer), Some(31)).unwrap();
    assert_eq!(sel.suite.dh, Dh::Curve25519);
    // A KE group we do not accept changes nothing (the state machine answers INVALID_KE_PAYLOAD).
    let sel = ours.select_ike(&offer(&peer), Some(14)).unwrap();
    assert_eq!(sel.suite.dh, Dh::Ecp256);
}

#[test]
fn cbc_suite_echoes_one_transform_per_type() {
    let ours = ike("aes256-aes128-sha384-sha256-prfsha256-x25519");
    let peer = ike("aes128-aes256-sha256-sha384-prfsha256-prfsha384-ecp256-x25519");
    let sel = ours.select_ike(&offer(&peer), None).unwrap();
    assert_eq!(
        sel.suite,
        IkeSuite {
            encr: Encr::AesCbc256,
            integ: Some(Integ::HmacSha384_192),
            prf: Prf::HmacSha256,
            dh: Dh::Curve25519
        }
    );
    assert_eq!(sel.transforms.len(), 4);
    assert_eq!(peer.check_ike_reply(&sel.reply(&[])).unwrap(), sel.suite);
}

#[test]
fn peer_proposal_oddities() {
    let ours = ike("aes128gcm16-prfsha256-x25519");
    let mut p = offer(&ike("aes128gcm16-prfsha256-x25519"))[0].clone();
    // RFC 7296 3.3: an AEAD proposal may carry integrity NONE; it is echoed.
    p.transforms.push(t(INTEG, 0, None));
    let sel = ours.select_ike(std::slice::from_ref(&p), None).unwrap();
    assert!(sel.transforms.contains(&t(INTEG, 0, None)));
    assert_eq!(sel.suite.integ, None);
    // A real integrity algorithm with GCM is not acceptable.
    let mut q = offer(&ike("aes128gcm16-prfsha256-x25519"))[0].clone();
    q.transforms.push(t(INTEG, 12, None));
    assert!(ours.select_ike(std::slice::from_ref(&q), None).is_err());
    // Unknown transform IDs are skipped, an unknown transform type rejects the proposal.
    let mut r = p.clone();
    r.transforms.insert(0, t(ENCR, 999, Some(128)));
    assert!(ours.select_ike(std::slice::from_ref(&r), None).is_ok());
    let mut u = p.clone();
    u.number = 1;
    u.transforms.push(t(9, 1, None));
    let mut ok = p.clone();
    ok.number = 2;
    let sel = ours.select_ike(&[u.clone(), ok], None).unwrap();
    assert_eq!(sel.number, 2);
    assert!(ours.select_ike(&[u], None).is_err());
    // AES without its Key Length attribute is not AES-128.
    let mut k = p.clone();
    k.transforms[0].key_length = None;
    assert!(ours.select_ike(&[k], None).is_err());
    // IKE never accepts DH NONE (RFC 7296 2.18).
    let mut n = p;
    n.transforms.retain(|t| t.kind != DH);
    n.transforms.push(t(DH, 0, None));
    assert!(ours.select_ike(&[n], None).is_err());
}

#[test]
fn esp_esn_selection() {
    let no_esn = esp("aes128gcm16");
    let esn = esp("aes128gcm16-esn");
    let either = esp("aes128gcm16-esn-noesn");
    assert!(!no_esn.select_esp(&offer(&no_esn), None).unwrap().suite.esn);
    assert!(no_esn.select_esp(&offer(&esn), None).is_err());
    assert!(esn.select_esp(&offer(&either), None).unwrap().suite.esn);
    assert!(!no_esn.select_esp(&offer(&either), None).unwrap().suite.esn);
    assert!(either.select_esp(&offer(&esn), None).unwrap().suite.esn);
    // A missing ESN transform means no ESN.
    let mut bare = offer(&no_esn);
    bare[0].transforms.retain(|t| t.kind != ESN);
    let sel = either.select_esp(&bare, None).unwrap();
    assert!(!sel.suite.esn);
    assert!(sel.transforms.iter().all(|t| t.kind != ESN));
    assert!(esn.select_esp(&bare, None).is_err());
}

#[test]
fn esp_pfs_selection() {
    let pfs = esp("aes128gcm16-x25519-ecp256");
    let no_pfs = esp("aes256gcm16-aes128gcm16");
    // PFS required and offered: our first common group.
    let sel = pfs
        .select_esp(&offer(&esp("aes128gcm16-ecp256-x25519")), None)
        .unwrap();
    assert_eq!(sel.suite.dh, Some(Dh::Curve25519));
    assert_eq!(sel.suite.to_string(), "aes128gcm16-x25519-noesn");
    // PFS required, peer offers none: no match; and the other way round.
    assert!(pfs.select_esp(&offer(&no_pfs), None).is_err());
    assert!(no_pfs.select_esp(&offer(&pfs), None).is_err());
    // A peer offering DH NONE as an alternative is accepted without PFS; NONE is echoed.
    let mut maybe = offer(&pfs);
    maybe[0].transforms.push(t(DH, 0, None));
    let sel = no_pfs.select_esp(&maybe, None).unwrap();
    assert_eq!((sel.suite.dh, sel.suite.encr), (None, Encr::AesGcm16_128));
    assert!(sel.transforms.contains(&t(DH, 0, None)));
    // In IKE_AUTH both sides drop DH groups.
    let sel = pfs
        .without_dh()
        .select_esp(&offer(&pfs.without_dh()), None)
        .unwrap();
    assert_eq!(sel.suite.dh, None);
    // The SPI of the chosen proposal is the peer's; the reply carries ours.
    let sel = pfs
        .select_esp(&esp("aes128gcm16-x25519").to_wire(&[9, 9, 9, 9]), Some(31))
        .unwrap();
    assert_eq!(sel.peer_spi, [9, 9, 9, 9]);
    assert_eq!(sel.reply(&[1, 2, 3, 4]).spi, [1, 2, 3, 4]);
}

#[test]
fn check_reply_is_a_subset_of_our_offer() {
    let ours = ike("aes128gcm16-prfsha256-x25519-ecp256, aes256-sha384-ecp256");
    let good = |number, transforms| wire::Proposal {
        number,
        protocol: 1,
        spi: Vec::new(),
        transforms,
    };
    let suite = ours
        .check_ike_reply(&good(
            1,
            vec![t(ENCR, 20, Some(128)), t(PRF, 5, None), t(DH, 19, None)],
        ))
        .unwrap();
    assert_eq!(suite.dh, Dh::Ecp256);
    let suite = ours
        .check_ike_reply(&good(
            2,
            vec![
                t(ENCR, 12, Some(256)),
                t(INTEG, 13, None),
                t(PRF, 6, None),
                t(DH, 19, None),
            ],
        ))
        .unwrap();
    assert_eq!(suite.integ, Some(Integ::HmacSha384_192));
    let bad = [
        (
            good(
                3,
                vec![t(ENCR, 20, Some(128)), t(PRF, 5, None), t(DH, 19, None)],
            ),
            "unknown proposal number",
        ),
        (good(0, vec![]), "unknown proposal number"),
        (
            good(
                1,
                vec![
                    t(ENCR, 20, Some(128)),
                    t(PRF, 5, None),
                    t(DH, 19, None),
                    t(DH, 31, None),
                ],
            ),
            "more than one",
        ),
        (
            good(
                1,
                vec![t(ENCR, 20, Some(256)), t(PRF, 5, None), t(DH, 19, None)],
            ),
            "not offered",
        ),
        (
            good(1, vec![t(ENCR, 20, Some(128)), t(PRF, 5, None)]),
            "not offered",
        ),
        (
            good(
                2,
                vec![t(ENCR, 12, Some(256)), t(PRF, 6, None), t(DH, 19, None)],
            ),
            "not offered",
        ),
    ];
    for (reply, why) in bad {
        let err = ours.check_ike_reply(&reply).unwrap_err();
        assert!(
            matches!(err, ProposalError::InvalidReply(m) if m.contains(why)),
            "{err} / {why}"
        );
    }
    let mut esp_reply = good(1, vec![t(ENCR, 20, Some(128))]);
    esp_reply.protocol = 3;
    assert!(ours.check_ike_reply(&esp_reply).is_err());
    let suite = esp("aes128gcm16").check_esp_reply(&esp_reply).unwrap();
    assert_eq!(
        suite,
        EspSuite {
            encr: Encr::AesGcm16_128,
            integ: None,
            dh: None,
            esn: false
        }
    );
}

#[test]
fn strongswan_style_peer_against_defaults() {
    // A charon-like initiator offering many algorithms.
    let peer = ike("aes128-aes192-aes256-sha256-sha384-sha512-prfsha256-prfsha384-prfsha512-ecp256-x25519, aes128gcm16-aes256gcm16-prfsha256-x25519");
    let sel = ike("default").select_ike(&offer(&peer), None).unwrap();
    assert_eq!(sel.number, 2);
    assert_eq!(sel.suite.to_string(), "aes128gcm16-prfsha256-x25519");
    let peer = ike("aes256-sha256-ecp256");
    let sel = ike("default").select_ike(&offer(&peer), Some(19)).unwrap();
    assert_eq!(sel.suite.to_string(), "aes256-sha256-prfsha256-ecp256");
}

#[test]
fn dh_helpers() {
    let set = ike("aes128gcm16-prfsha256-ecp256-x25519");
    assert_eq!(set.preferred_dh(), Some(Dh::Ecp256));
    assert!(set.accepts_dh(Dh::Curve25519));
    assert_eq!(esp("aes128gcm16").preferred_dh(), None);
    assert!(!esp("aes128gcm16").accepts_dh(Dh::Ecp256));
}

#[test]
fn describes_peer_proposals() {
    let mut p = offer(&ike("aes128-sha256-x25519"))[0].clone();
    assert_eq!(describe(&p), "IKE:aes128-sha256-prfsha256-x25519");
    p.transforms.push(t(ENCR, 3, None));
    p.transforms.push(t(ENCR, 12, Some(64)));
    assert_eq!(
        describe(&p),
        "IKE:aes128-sha256-prfsha256-x25519-T1_3-T1_12_64"
    );
    let mut e = offer(&esp("aes128gcm16-esn"))[0].clone();
    e.transforms.push(t(DH, 0, None));
    assert_eq!(describe(&e), "ESP:aes128gcm16-esn-nodh");
}
