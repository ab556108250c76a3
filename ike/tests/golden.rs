//! Golden tests against real strongSwan (charon 5.9.8) exchanges captured by
//! `tests/data/charon/capture.sh`: every message decodes and re-encodes to the same
//! bytes, our key derivation reproduces the keys charon logged, and our SK cipher opens
//! charon's IKE_AUTH messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ike::crypto::{self, ChildKeys, IkeKeys};
use ike::iana::{exchange, payload};
use ike::proposal::{EspSuite, IkeSuite};
use ike::wire::{self, Message, Payload, SkCipher};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/charon")
        .join(name)
}

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn load(d: &Path, file: &str) -> Vec<u8> {
    hex(&std::fs::read_to_string(d.join(file)).unwrap())
}

fn keys(d: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_to_string(d.join("keys.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .filter(|(_, v)| v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(k, v)| (k.trim().to_string(), hex(v)))
        .collect()
}

/// IKE message files of a capture, in order (no decrypted-plaintext or ESP files).
fn messages(d: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex") && !n.contains(".plain") && !n.contains("-esp-"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), load(d, &n)))
        .collect()
}

const CAPTURES: [&str; 6] = [
    "psk-gcm-x25519",
    "psk-cbc-ecp256",
    "ecdsa-gcm-ecp256",
    "invalid-ke",
    "rsa-frag",
    "psk-vip-pool",
];

#[test]
fn every_captured_message_decodes_and_reencodes_identically() {
    let mut n = 0;
    for c in CAPTURES {
        for (name, bytes) in messages(&dir(c)) {
            let m = Message::parse(&bytes).unwrap_or_else(|e| panic!("{c}/{name}: {e}"));
            assert_eq!(m.to_bytes(), bytes, "{c}/{name} does not round-trip");
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} messages");
}

#[test]
fn ike_sa_init_payloads_are_what_charon_says() {
    let m = Message::parse(&load(&dir("psk-gcm-x25519"), "01-ike_sa_init-req.hex")).unwrap();
    assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
    let kinds: Vec<ike::iana::PayloadType> = m.payloads.iter().map(|p| p.kind()).collect();
    // [ SA KE No N(NATD_S_IP) N(NATD_D_IP) N(FRAG_SUP) N(HASH_ALG) N(REDIR_SUP) ]
    assert_eq!(
        kinds,
        vec![
            payload::SA,
            payload::KE,
            payload::NONCE,
            payload::NOTIFY,
            payload::NOTIFY,
            payload::NOTIFY,
            payload::NOTIFY,
            payload::NOTIFY
        ]
    );
}

fn suite_of(d: &Path) -> IkeSuite {
    let m = Message::parse(&load(d, "02-ike_sa_init-resp.hex")).unwrap();
    let Some(Payload::Sa(props)) = m.payloads.first() else {
        panic!("no SA")
    };
    IkeSuite::from_transforms(&props[0].transforms).unwrap()
}

/// A capture's logged keys, its IKE suite, and the IKE keys we derive from its
/// logged DH secret, nonces and SPIs.
fn derive(d: &Path) -> (HashMap<String, Vec<u8>>, IkeSuite, IkeKeys) {
    let k = keys(d);
    let suite = suite_of(d);
    let spi = |name: &str| u64::from_be_bytes(k[name].clone().try_into().unwrap());
    let ours = IkeKeys::initial(
        &suite,
        &k["shared_secret"],
        &k["ni"],
        &k["nr"],
        spi("spi_i"),
        spi("spi_r"),
    )
    .unwrap();
    (k, suite, ours)
}

fn open(raw: &[u8], cipher: &dyn SkCipher) -> Vec<Payload> {
    let m = Message::parse(raw).unwrap();
    wire::decrypt_message(raw, &m, cipher).unwrap()
}

#[test]
fn key_derivation_matches_charon() {
    for c in [
        "psk-gcm-x25519",
        "psk-cbc-ecp256",
        "ecdsa-gcm-ecp256",
        "psk-vip-pool",
    ] {
        let d = dir(c);
        let (k, suite, ours) = derive(&d);
        let seed = crypto::skeyseed(suite.prf, &k["ni"], &k["nr"], &k["shared_secret"]);
        assert_eq!(seed.as_bytes(), k["skeyseed"].as_slice(), "{c}: SKEYSEED");
        for (name, got) in [
            ("sk_d", &ours.sk_d),
            ("sk_ei", &ours.sk_ei),
            ("sk_er", &ours.sk_er),
            ("sk_pi", &ours.sk_pi),
            ("sk_pr", &ours.sk_pr),
            ("sk_ai", &ours.sk_ai),
            ("sk_ar", &ours.sk_ar),
        ] {
            if let Some(want) = k.get(name) {
                assert_eq!(got.as_bytes(), want.as_slice(), "{c}: {name}");
            }
        }
        // The first child SA's KEYMAT (no PFS in IKE_AUTH).
        let auth_resp = {
            let (_, inbound) = ours.ciphers(&suite, true).unwrap();
            open(&load(&d, "04-ike_auth-resp.hex"), &inbound)
        };
        let Some(Payload::Sa(esp)) = auth_resp.iter().find(|p| matches!(p, Payload::Sa(_))) else {
            panic!("{c}: no SA in IKE_AUTH")
        };
        let esp_suite = EspSuite::from_transforms(&esp[0].transforms)
            .unwrap_or_else(|| panic!("{c}: ESP suite {:?}", esp[0].transforms));
        let child = ChildKeys::derive(
            suite.prf,
            ours.sk_d.as_bytes(),
            &esp_suite,
            None,
            &k["ni"],
            &k["nr"],
        )
        .unwrap();
        // Per direction: the encryption key, then (CBC) the integrity key.
        let e = esp_suite.encr.key_len();
        let (ei, ai) = child.encr_i.as_bytes().split_at(e);
        let (er, ar) = child.encr_r.as_bytes().split_at(e);
        eprintln!("{c}: {esp_suite}");
        if esp_suite.integ.is_some() {
            assert_eq!(ai, k["esp_sk_ai"].as_slice(), "{c}: ESP i->r integrity key");
            assert_eq!(ar, k["esp_sk_ar"].as_slice(), "{c}: ESP r->i integrity key");
        } else {
            assert!(ai.is_empty() && ar.is_empty());
        }
        assert_eq!(ei, k["esp_sk_ei"].as_slice(), "{c}: ESP i->r key");
        assert_eq!(er, k["esp_sk_er"].as_slice(), "{c}: ESP r->i key");
    }
}

#[test]
fn we_open_charons_ike_auth_and_its_psk_auth_verifies() {
    for c in ["psk-gcm-x25519", "psk-cbc-ecp256", "psk-vip-pool"] {
        let d = dir(c);
        let (k, suite, ours) = derive(&d);
        // As the responder: our inbound cipher opens the initiator's IKE_AUTH.
        let (_, inbound) = ours.ciphers(&suite, false).unwrap();
        let req = open(&load(&d, "03-ike_auth-req.hex"), &inbound);
        let plain = load(&d, "03-ike_auth-req.plain.hex");
        let mut emitted = Vec::new();
        wire::message::emit_chain(&req, &mut emitted);
        assert_eq!(
            emitted,
            plain[..emitted.len()],
            "{c}: decrypted payloads differ from charon's"
        );
        let idi = req
            .iter()
            .find_map(|p| match p {
                Payload::IdI(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        let auth = req
            .iter()
            .find_map(|p| match p {
                Payload::Auth(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap();
        // RFC 7296 2.15 signed octets, built from the captured IKE_SA_INIT request.
        let mut rest = vec![idi.id_type, 0, 0, 0];
        rest.extend_from_slice(&idi.data);
        let mut octets = load(&d, "01-ike_sa_init-req.hex");
        octets.extend_from_slice(&k["nr"]);
        octets.extend_from_slice(suite.prf.compute(ours.sk_pi.as_bytes(), &rest).as_bytes());
        assert_eq!(octets, k["auth_octets_i"], "{c}: signed octets");
        let pad = suite.prf.compute(&k["psk"], b"Key Pad for IKEv2");
        let want = suite.prf.compute(pad.as_bytes(), &octets);
        assert_eq!(auth.data, want.as_bytes(), "{c}: PSK AUTH");
        assert_eq!(auth.data, k["auth_i"], "{c}: charon's AUTH");
    }
}

/// The configuration payloads of `psk-vip-pool` (RFC 7296 3.15): charon's CFG_REQUEST
/// for any IPv4 address and its CFG_REPLY from pool 10.3.0.0/24 with a DNS server.
#[test]
fn charons_configuration_payloads() {
    use ike::iana::cfg;
    let d = dir("psk-vip-pool");
    let (_, suite, ours) = derive(&d);
    let cp = |payloads: &[Payload]| {
        payloads
            .iter()
            .find_map(|p| match p {
                Payload::Cp(c) => Some(c.clone()),
                _ => None,
            })
            .expect("a CP payload")
    };
    let (_, inbound) = ours.ciphers(&suite, false).unwrap();
    let req = cp(&open(&load(&d, "03-ike_auth-req.hex"), &inbound));
    assert_eq!(req.cfg_type, cfg::REQUEST);
    assert_eq!(req.attributes, [(cfg::INTERNAL_IP4_ADDRESS, Vec::new())]);
    let (_, inbound) = ours.ciphers(&suite, true).unwrap();
    let reply = cp(&open(&load(&d, "04-ike_auth-resp.hex"), &inbound));
    assert_eq!(reply.cfg_type, cfg::REPLY);
    let got: Vec<&[u8]> = reply.values(cfg::INTERNAL_IP4_ADDRESS).collect();
    assert_eq!(got, [&[10u8, 3, 0, 1][..]]);
    let dns: Vec<&[u8]> = reply.values(cfg::INTERNAL_IP4_DNS).collect();
    assert_eq!(dns, [&[10u8, 3, 0, 53][..]]);
}

#[test]
fn charons_fragments_reassemble_in_either_order() {
    let d = dir("rsa-frag");
    let (_, suite, ours) = derive(&d);
    let (_, inbound) = ours.ciphers(&suite, false).unwrap();
    let frags: Vec<Vec<u8>> = messages(&d)
        .into_iter()
        .filter(|(n, _)| n.contains("ike_auth-req-frag"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(frags.len(), 2);
    for order in [[0, 1], [1, 0]] {
        let mut r = wire::Reassembler::new();
        let mut done = None;
        for i in order {
            let m = Message::parse(&frags[i]).unwrap();
            if let wire::Reassembly::Complete(p) =
                r.insert_message(&frags[i], &m, &inbound).unwrap()
            {
                done = Some(p);
            }
        }
        let payloads = done.expect("reassembled");
        let certs = payloads
            .iter()
            .filter(|p| matches!(p, Payload::Cert(_)))
            .count();
        assert!(
            certs >= 1,
            "the RSA certificate made IKE_AUTH big enough to fragment"
        );
        assert!(payloads.iter().any(|p| matches!(p, Payload::Auth(_))));
    }
}

/// charon's decrypted IKE_AUTH payloads (fragments concatenated), as it logged them.
fn plain_payloads(d: &Path, files: &[&str], first: ike::iana::PayloadType) -> Vec<Payload> {
    let plain: Vec<u8> = files.iter().flat_map(|f| load(d, f)).collect();
    wire::message::parse_chain(first, &plain, 0, false).unwrap()
}

#[test]
fn charons_certificates_and_signatures_verify_with_our_code() {
    use ike::auth::{Identity, TrustStore};
    // 2027-01-15: inside the captured certificates' validity.
    const NOW: u64 = 1_800_000_000;
    let cases: [(&str, &[&str], &[&str]); 2] = [
        (
            "ecdsa-gcm-ecp256",
            &["03-ike_auth-req.plain.hex"],
            &["04-ike_auth-resp.plain.hex"],
        ),
        (
            "rsa-frag",
            &[
                "03-ike_auth-req-frag1.plain.hex",
                "04-ike_auth-req-frag2.plain.hex",
            ],
            &[
                "05-ike_auth-resp-frag1.plain.hex",
                "06-ike_auth-resp-frag2.plain.hex",
            ],
        ),
    ];
    for (c, req, resp) in cases {
        let d = dir(c);
        let k = keys(&d);
        let trust = TrustStore::from_pem(&std::fs::read(d.join("ca.crt")).unwrap()).unwrap();
        for (files, first, octets, cn) in [
            (req, payload::IDI, "auth_octets_i", "edge1"),
            (resp, payload::IDR, "auth_octets_r", "edge2"),
        ] {
            let p = plain_payloads(&d, files, first);
            let id = p
                .iter()
                .find_map(|x| match x {
                    Payload::IdI(i) | Payload::IdR(i) => Some(i.clone()),
                    _ => None,
                })
                .unwrap();
            // Our DN encoding is charon's, byte for byte.
            let ours = Identity::parse(&format!("C=CN, O=Local Cluster, CN={cn}")).unwrap();
            assert_eq!(ours.to_wire(), id, "{c}: {cn} identity");
            let cert = p
                .iter()
                .find_map(|x| match x {
                    Payload::Cert(cert) => Some(cert.data.clone()),
                    _ => None,
                })
                .unwrap();
            let auth = p
                .iter()
                .find_map(|x| match x {
                    Payload::Auth(a) => Some(a.clone()),
                    _ => None,
                })
                .unwrap();
            let verified = trust
                .verify_chain(&cert, &[], NOW)
                .unwrap_or_else(|e| panic!("{c}: {cn} chain: {e}"));
            assert!(
                verified.matches_id(&Identity::from_wire(&id).unwrap()),
                "{c}: {cn}"
            );
            verified
                .verify_auth(&auth, &k[octets])
                .unwrap_or_else(|e| panic!("{c}: {cn} AUTH: {e}"));
            let mut other = k[octets].clone();
            other[0] ^= 1;
            assert!(
                verified.verify_auth(&auth, &other).is_err(),
                "{c}: altered octets must fail"
            );
        }
    }
}
