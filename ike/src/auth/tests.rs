//! Identities, keys, signatures and chains against the pki-generated fixtures in
//! tests/data/auth (see make.sh there).

use der::{Decode, Encode};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs1KeyDer;

use super::sigalg::{self, Hash, SigAlg, ALG_ID_ECDSA_SHA256, ALG_ID_SHA256_RSA};
use super::*;
use crate::iana::{auth, hash, id};
use crate::wire::{Authentication, Identification};

/// The test harness's wall clock, 2026-11-01.
const NOW: u64 = 1_793_491_200;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/data/auth/", $name)).as_slice()
    };
}

fn cert(pem: &[u8]) -> Vec<u8> {
    load_certs_pem(pem).unwrap().remove(0)
}

fn ecdsa_ca() -> TrustStore {
    TrustStore::from_pem(fixture!("ecdsa-ca.crt")).unwrap()
}

fn rsa_ca() -> TrustStore {
    TrustStore::from_pem(fixture!("rsa-ca.crt")).unwrap()
}

fn edge1() -> VerifiedPeer {
    ecdsa_ca()
        .verify_chain(&cert(fixture!("edge1.crt")), &[], NOW)
        .unwrap()
}

fn cloud() -> VerifiedPeer {
    let int = cert(fixture!("rsa-int.crt"));
    rsa_ca()
        .verify_chain(&cert(fixture!("cloud-connector.crt")), &[&int], NOW)
        .unwrap()
}

fn id(s: &str) -> Identity {
    Identity::parse(s).unwrap()
}

#[test]
fn dn_parse_display_and_der_round_trip() {
    let s = "C=CN, O=Local Cluster, CN=edge1";
    let dn = id(s);
    assert_eq!(dn.to_string(), s);
    let wire = dn.to_wire();
    assert_eq!(wire.id_type, id::DER_ASN1_DN);
    // PrintableString where the value allows it (as strongSwan encodes), else UTF8String.
    let d = &wire.data;
    assert_eq!(&d[..2], &[0x30, d.len() as u8 - 2]);
    assert!(d.windows(5).any(|w| w == [0x55, 0x04, 0x06, 0x13, 0x02]));
    assert!(d.windows(5).any(|w| w == [0x55, 0x04, 0x03, 0x13, 0x05]));
    let utf8 = id("CN=edge_1").to_wire().data;
    assert!(utf8.windows(5).any(|w| w == [0x55, 0x04, 0x03, 0x0c, 0x06]));
    let back = Identity::from_wire(&wire).unwrap();
    assert_eq!(back, dn);
    assert_eq!(back.to_string(), s);
    assert_eq!(id("/C=CN/O=Local Cluster/CN=edge1"), dn);
    assert_eq!(
        id("E=ops@example.org, DC=example, serialNumber=7, OU=x, L=y, ST=z").to_string(),
        "E=ops@example.org, DC=example, serialNumber=7, OU=x, L=y, ST=z"
    );
    assert!(Identity::parse("C=CN, Foo=bar").is_err());
    assert!(Identity::from_wire(&Identification {
        id_type: id::DER_ASN1_DN,
        data: vec![0x30, 0x05, 0x31],
    })
    .is_err());
}

#[test]
fn dn_matches_semantically() {
    // pki encodes these attributes as PrintableString, and so do we.
    let der = cert(fixture!("edge1.crt"));
    let c = x509_cert::Certificate::from_der(&der).unwrap();
    let subject = Identity::from_wire(&Identification {
        id_type: id::DER_ASN1_DN,
        data: c.tbs_certificate.subject.to_der().unwrap(),
    })
    .unwrap();
    let configured = id("C=CN, O=Local Cluster, CN=edge1");
    assert_eq!(subject.to_wire(), configured.to_wire(), "same bytes as pki");
    assert!(configured.matches(&subject));
    assert!(id("C=CN, O=Local Cluster, CN=*").matches(&subject));
    assert!(!id("C=CN, O=Local Cluster, CN=edge2").matches(&subject));
    assert!(!id("O=Local Cluster, CN=edge1").matches(&subject));
    assert!(!id("C=CN, CN=Local Cluster, O=edge1").matches(&subject));
    assert!(id("%any").matches(&subject));
    assert!(edge1().matches_id(&configured));
    assert!(!edge1().matches_id(&id("CN=edge1")));
}

#[test]
fn identity_kinds() {
    for (s, t, shown) in [
        ("192.0.2.1", id::IPV4_ADDR, "192.0.2.1"),
        ("2001:db8::1", id::IPV6_ADDR, "2001:db8::1"),
        ("@edge1", id::FQDN, "edge1"),
        ("edge1.example", id::FQDN, "edge1.example"),
        ("ops@example.org", id::RFC822_ADDR, "ops@example.org"),
        ("@#0102ab", id::KEY_ID, "@#0102ab"),
    ] {
        let i = id(s);
        assert_eq!(i.to_wire().id_type, t, "{s}");
        assert_eq!(i.to_string(), shown);
        assert_eq!(Identity::from_wire(&i.to_wire()).unwrap(), i);
    }
    assert!(id("%any").is_any());
    assert!(id("EDGE1").matches(&id("edge1")));
    assert!(!id("192.0.2.1").matches(&id("192.0.2.2")));
    assert!(Identity::parse("@#abc").is_err());
    assert!(Identity::parse("").is_err());
    assert!(Identity::from_wire(&Identification {
        id_type: id::IPV4_ADDR,
        data: vec![1, 2, 3],
    })
    .is_err());
}

#[test]
fn subject_alt_names_match() {
    let p = edge1();
    for ok in ["edge1", "@EDGE1", "edge1@local.cluster", "192.0.2.1"] {
        assert!(p.matches_id(&id(ok)), "{ok}");
    }
    for bad in ["edge2", "edge1@other", "192.0.2.9", "2001:db8::1", "@#01"] {
        assert!(!p.matches_id(&id(bad)), "{bad}");
    }
}

#[test]
fn keys_load_in_every_format() {
    for pem in [
        fixture!("edge1.key"),
        fixture!("edge2.key"),
        fixture!("cloud-connector.key"),
        fixture!("cloud-connector.pkcs8.key"),
        fixture!("edge-p384.key"),
        fixture!("edge-p521.key"),
        fixture!("rsa4096.key"),
    ] {
        PrivateKey::from_pem(pem).unwrap();
    }
    let pkcs1 = PrivatePkcs1KeyDer::from_pem_slice(fixture!("cloud-connector.key")).unwrap();
    PrivateKey::from_der(pkcs1.secret_pkcs1_der()).unwrap();
    assert!(PrivateKey::from_pem(fixture!("edge1.crt")).is_err());
    assert!(PrivateKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

fn tamper(a: &Authentication) -> Authentication {
    let mut t = a.clone();
    if let Some(b) = t.data.last_mut() {
        *b ^= 1;
    }
    t
}

#[test]
fn ecdsa_sign_verify() {
    let key = PrivateKey::from_pem(fixture!("edge1.key")).unwrap();
    let peer = edge1();
    let a9 = key.sign_auth(&[], b"octets").unwrap();
    assert_eq!((a9.method, a9.data.len()), (auth::ECDSA_SHA256_P256, 64));
    let a14 = key.sign_auth(&[hash::SHA2_256], b"octets").unwrap();
    assert_eq!(a14.method, auth::DIGITAL_SIGNATURE);
    assert_eq!(&a14.data[1..13], ALG_ID_ECDSA_SHA256);
    for a in [&a9, &a14] {
        peer.verify_auth(a, b"octets").unwrap();
        assert!(matches!(
            peer.verify_auth(a, b"other"),
            Err(Error::BadSignature(_))
        ));
        assert!(matches!(
            peer.verify_auth(&tamper(a), b"octets"),
            Err(Error::BadSignature(_))
        ));
    }
    // Another key's signature.
    let other = PrivateKey::from_pem(fixture!("edge2.key")).unwrap();
    assert!(peer
        .verify_auth(&other.sign_auth(&[], b"octets").unwrap(), b"octets")
        .is_err());
}

#[test]
fn rsa_sign_verify() {
    let key = PrivateKey::from_pem(fixture!("cloud-connector.key")).unwrap();
    let peer = cloud();
    assert_eq!(
        key.sign_auth(&[], b"x").unwrap_err(),
        Error::NoSignatureHashes
    );
    let a = key
        .sign_auth(&[hash::SHA2_512, hash::SHA2_256], b"octets")
        .unwrap();
    assert_eq!(a.method, auth::DIGITAL_SIGNATURE);
    assert_eq!(&a.data[1..16], ALG_ID_SHA256_RSA);
    assert_eq!(a.data.len(), 16 + 384);
    peer.verify_auth(&a, b"octets").unwrap();
    assert!(peer.verify_auth(&tamper(&a), b"octets").is_err());
    // An ECDSA AUTH against an RSA certificate.
    let ec = PrivateKey::from_pem(fixture!("edge1.key")).unwrap();
    let e = peer.verify_auth(&ec.sign_auth(&[], b"octets").unwrap(), b"octets");
    assert!(matches!(e, Err(Error::UnsupportedAlgorithm(_))));
    // Method 1 (SHA-1) goes through ring's legacy verifier.
    let m1 = Authentication {
        method: auth::RSA_SIGNATURE,
        data: vec![0; 384],
    };
    assert!(matches!(
        peer.verify_auth(&m1, b"octets"),
        Err(Error::BadSignature(_))
    ));
}

#[test]
fn rfc7427_rsassa_pss() {
    // The PSS AlgorithmIdentifier (SHA-256, MGF1-SHA-256, salt 32) from a certificate.
    let der = cert(fixture!("cloud-connector.crt"));
    let c = x509_cert::Certificate::from_der(&der).unwrap();
    let alg_id = c.signature_algorithm.to_der().unwrap();
    assert_eq!(
        SigAlg::from_der(&alg_id).unwrap(),
        SigAlg::RsaPss(Hash::Sha256)
    );
    let pkcs1 = PrivatePkcs1KeyDer::from_pem_slice(fixture!("cloud-connector.key")).unwrap();
    let k = RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()).unwrap();
    let mut sig = vec![0; k.public().modulus_len()];
    k.sign(&RSA_PSS_SHA256, &SystemRandom::new(), b"octets", &mut sig)
        .unwrap();
    let mut data = vec![alg_id.len() as u8];
    data.extend(&alg_id);
    data.extend(&sig);
    let a = Authentication {
        method: auth::DIGITAL_SIGNATURE,
        data,
    };
    cloud().verify_auth(&a, b"octets").unwrap();
    assert!(cloud().verify_auth(&tamper(&a), b"octets").is_err());
}

#[test]
fn rfc7427_algorithm_identifiers() {
    assert_eq!(
        SigAlg::from_der(ALG_ID_SHA256_RSA).unwrap(),
        SigAlg::RsaPkcs1(Hash::Sha256)
    );
    assert_eq!(
        SigAlg::from_der(ALG_ID_ECDSA_SHA256).unwrap(),
        SigAlg::Ecdsa(Hash::Sha256)
    );
    // sha1WithRSAEncryption is refused.
    let sha1 = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
    ];
    assert!(matches!(
        SigAlg::from_der(&sha1),
        Err(Error::UnsupportedAlgorithm(_))
    ));
    let peer = edge1();
    for data in [vec![], vec![200, 1, 2], vec![3, 0x30, 0x01, 0x00, 9, 9]] {
        let a = Authentication {
            method: auth::DIGITAL_SIGNATURE,
            data,
        };
        assert!(peer.verify_auth(&a, b"octets").is_err());
    }
}

#[test]
fn chains_verify() {
    // Intermediates in any order, with the root sent along.
    let ee = cert(fixture!("cloud-connector.crt"));
    let int = cert(fixture!("rsa-int.crt"));
    let root = cert(fixture!("rsa-ca.crt"));
    let both = TrustStore::from_der(vec![root.clone(), cert(fixture!("ecdsa-ca.crt"))]).unwrap();
    both.verify_chain(&ee, &[&root, &int], NOW).unwrap();
    both.verify_chain(&ee, &[&int, &root], NOW).unwrap();
    let req = both.certreq().unwrap();
    assert_eq!((req.encoding, req.data.len()), (4, 40));
    assert!(TrustStore::default().certreq().is_none());
}

#[test]
fn chain_errors() {
    let ecdsa = ecdsa_ca();
    let e = ecdsa.verify_chain(&cert(fixture!("expired.crt")), &[], NOW);
    assert!(matches!(e, Err(Error::Expired { .. })), "{e:?}");
    let e = ecdsa.verify_chain(&cert(fixture!("edge1.crt")), &[], 1_700_000_000);
    assert!(matches!(e, Err(Error::NotYetValid { .. })), "{e:?}");
    let ee = cert(fixture!("cloud-connector.crt"));
    let e = ecdsa.verify_chain(&ee, &[], NOW);
    assert!(matches!(e, Err(Error::UnknownIssuer { .. })), "{e:?}");
    let e = rsa_ca().verify_chain(&ee, &[], NOW);
    assert!(matches!(e, Err(Error::UnknownIssuer { .. })), "{e:?}");
    // Same issuer name, different key.
    let e = ecdsa.verify_chain(&cert(fixture!("rogue.crt")), &[], NOW);
    assert!(matches!(e, Err(Error::BadSignature(_))), "{e:?}");
    let edge2 = cert(fixture!("edge2.crt"));
    let e = ecdsa.verify_chain(&cert(fixture!("under-ee.crt")), &[&edge2], NOW);
    assert!(matches!(e, Err(Error::NotACa { .. })), "{e:?}");
    let e = ecdsa.verify_chain(&[0x30, 0x00], &[], NOW);
    assert!(matches!(e, Err(Error::Malformed(_))), "{e:?}");
}

#[test]
fn malformed_certificates_never_panic() {
    let der = cert(fixture!("edge1.crt"));
    let store = ecdsa_ca();
    for n in 0..der.len() {
        assert!(store.verify_chain(&der[..n], &[], NOW).is_err());
        let mut flipped = der.clone();
        flipped[n] ^= 0x55;
        let _ = store.verify_chain(&flipped, &[], NOW);
    }
    assert!(load_certs_pem(b"garbage").is_err());
    assert!(TrustStore::from_der(vec![vec![1, 2, 3]]).is_err());
}

/// DER AlgorithmIdentifier of an RFC 7427 scheme, built here independently of the
/// constants the signing code uses.
fn alg_id(alg: SigAlg) -> Vec<u8> {
    use super::asn1::{encode, tag};
    let oid = |arcs: &[u8]| encode(tag::OID, arcs);
    let hash_oid = |h: Hash| {
        let last = match h {
            Hash::Sha256 => 1,
            Hash::Sha384 => 2,
            Hash::Sha512 => 3,
            Hash::Sha1 => unreachable!("not announced"),
        };
        oid(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last])
    };
    let rsa = |last: u8| oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last]);
    let null = [0x05, 0x00];
    let body = match alg {
        SigAlg::RsaPkcs1(h) => {
            let last = match h {
                Hash::Sha256 => 11,
                Hash::Sha384 => 12,
                _ => 13,
            };
            [rsa(last), null.to_vec()].concat()
        }
        SigAlg::Ecdsa(h) => {
            let last = match h {
                Hash::Sha256 => 2,
                Hash::Sha384 => 3,
                _ => 4,
            };
            oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last])
        }
        SigAlg::RsaPss(h) => {
            let hash_alg = encode(tag::SEQUENCE, &[hash_oid(h), null.to_vec()].concat());
            let mgf = encode(tag::SEQUENCE, &[rsa(8), hash_alg.clone()].concat());
            let salt = match h {
                Hash::Sha256 => 32,
                Hash::Sha384 => 48,
                _ => 64,
            };
            let params = [
                encode(0xa0, &hash_alg),
                encode(0xa1, &mgf),
                encode(0xa2, &encode(tag::INTEGER, &[salt])),
            ]
            .concat();
            [rsa(10), encode(tag::SEQUENCE, &params)].concat()
        }
        SigAlg::EcdsaP256Fixed | SigAlg::EcdsaP384Fixed | SigAlg::EcdsaP521Fixed => {
            unreachable!("no AlgorithmIdentifier")
        }
    };
    encode(tag::SEQUENCE, &body)
}

fn digital_signature(alg: SigAlg, signature: &[u8]) -> Authentication {
    let id = alg_id(alg);
    let mut data = vec![id.len() as u8];
    data.extend(&id);
    data.extend(signature);
    Authentication {
        method: auth::DIGITAL_SIGNATURE,
        data,
    }
}

/// Checks `a` against `peer` and that a flipped bit fails.
fn verifies(peer: &VerifiedPeer, a: &Authentication, what: &str) {
    peer.verify_auth(a, b"octets")
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        peer.verify_auth(&tamper(a), b"octets").is_err(),
        "{what}: tampered"
    );
}

/// Issue 20 fault 1: every hash esprit announces is verified with every key type and
/// scheme a peer may use (libreswan signs ECDSA P-256 with SHA-512), and what esprit
/// signs with its own keys verifies too, for every hash a peer may announce alone.
#[test]
fn every_announced_hash_verifies() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let hashes: Vec<Hash> = ANNOUNCED_HASHES
        .iter()
        .map(|h| match *h {
            hash::SHA2_256 => Hash::Sha256,
            hash::SHA2_384 => Hash::Sha384,
            hash::SHA2_512 => Hash::Sha512,
            other => panic!("announced hash {other} has no verifier"),
        })
        .collect();
    let digest = |h: Hash| {
        let alg = match h {
            Hash::Sha256 => &ring::digest::SHA256,
            Hash::Sha384 => &ring::digest::SHA384,
            _ => &ring::digest::SHA512,
        };
        ring::digest::digest(alg, b"octets").as_ref().to_vec()
    };

    // RSA, PKCS#1 v1.5 and PSS, signed by ring with the certificate's key.
    let pkcs1 = PrivatePkcs1KeyDer::from_pem_slice(fixture!("cloud-connector.key")).unwrap();
    let rsa = RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()).unwrap();
    for &h in &hashes {
        let (pkcs1_alg, pss_alg): (
            &dyn ring::signature::RsaEncoding,
            &dyn ring::signature::RsaEncoding,
        ) = match h {
            Hash::Sha256 => (&ring::signature::RSA_PKCS1_SHA256, &RSA_PSS_SHA256),
            Hash::Sha384 => (
                &ring::signature::RSA_PKCS1_SHA384,
                &ring::signature::RSA_PSS_SHA384,
            ),
            _ => (
                &ring::signature::RSA_PKCS1_SHA512,
                &ring::signature::RSA_PSS_SHA512,
            ),
        };
        for (scheme, alg) in [
            (pkcs1_alg, SigAlg::RsaPkcs1(h)),
            (pss_alg, SigAlg::RsaPss(h)),
        ] {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(scheme, &SystemRandom::new(), b"octets", &mut sig)
                .unwrap();
            verifies(&cloud(), &digital_signature(alg, &sig), &format!("{alg:?}"));
        }
    }

    // ECDSA on P-256 and P-384 with each hash, signed over the digest by RustCrypto
    // (FIPS 186-4 truncation of a long digest included), DER signatures.
    let p256_key = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let p384_key = p384::ecdsa::SigningKey::from_bytes(&[9u8; 48].into()).unwrap();
    let p256_point = p256_key.verifying_key().to_encoded_point(false);
    let p384_point = p384_key.verifying_key().to_encoded_point(false);
    for &h in &hashes {
        let alg = SigAlg::Ecdsa(h);
        let id = SigAlg::from_der(&alg_id(alg)).unwrap();
        assert_eq!(id, alg);
        let s256: p256::ecdsa::Signature = p256_key.sign_prehash(&digest(h)).unwrap();
        let s384: p384::ecdsa::Signature = p384_key.sign_prehash(&digest(h)).unwrap();
        for (key, sig, curve) in [
            (
                sigalg::PublicKey::P256(p256_point.as_bytes().to_vec()),
                s256.to_der().as_bytes().to_vec(),
                "P-256",
            ),
            (
                sigalg::PublicKey::P384(p384_point.as_bytes().to_vec()),
                s384.to_der().as_bytes().to_vec(),
                "P-384",
            ),
        ] {
            key.verify(alg, b"octets", &sig, "AUTH")
                .unwrap_or_else(|e| panic!("{curve} {h:?}: {e}"));
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(key.verify(alg, b"octets", &bad, "AUTH").is_err());
            assert!(key.verify(alg, b"other", &sig, "AUTH").is_err());
        }
    }

    // Our own keys, for a peer that announces exactly one hash.
    let ours_rsa = PrivateKey::from_pem(fixture!("cloud-connector.key")).unwrap();
    let ours_ec = PrivateKey::from_pem(fixture!("edge1.key")).unwrap();
    for only in ANNOUNCED_HASHES {
        let a = ours_rsa.sign_auth(&[only], b"octets").unwrap();
        verifies(&cloud(), &a, &format!("our RSA key, peer announces {only}"));
        let a = ours_ec.sign_auth(&[only], b"octets").unwrap();
        verifies(
            &edge1(),
            &a,
            &format!("our ECDSA key, peer announces {only}"),
        );
    }
}

fn ecdsa_peer(name: &[u8]) -> VerifiedPeer {
    ecdsa_ca().verify_chain(&cert(name), &[], NOW).unwrap()
}

/// Issue 21: our own ECDSA P-384 (PKCS#8) and P-521 (SEC1) keys and an RSA-4096 key
/// sign AUTH payloads that verify against their certificates for every hash a peer may
/// announce alone, and with RFC 4754's methods 10 and 11 for a peer that announces
/// none; each is refused when tampered with or over other octets.
#[test]
fn p384_p521_and_rsa4096_keys_sign_and_verify() {
    let p384 = PrivateKey::from_pem(fixture!("edge-p384.key")).unwrap();
    let p521 = PrivateKey::from_pem(fixture!("edge-p521.key")).unwrap();
    let rsa4096 = PrivateKey::from_pem(fixture!("rsa4096.key")).unwrap();
    let p384_cert = cert(fixture!("edge-p384.crt"));
    let p521_cert = cert(fixture!("edge-p521.crt"));
    let rsa_cert = cert(fixture!("rsa4096.crt"));
    assert!(p384.matches_certificate(&p384_cert) && !p384.matches_certificate(&p521_cert));
    assert!(p521.matches_certificate(&p521_cert) && !p521.matches_certificate(&p384_cert));
    assert!(rsa4096.matches_certificate(&rsa_cert));
    let p384_peer = ecdsa_peer(fixture!("edge-p384.crt"));
    let p521_peer = ecdsa_peer(fixture!("edge-p521.crt"));
    let int = cert(fixture!("rsa-int.crt"));
    let rsa_peer = rsa_ca().verify_chain(&rsa_cert, &[&int], NOW).unwrap();

    // No hashes announced: RFC 4754 with the curve's own hash, r || s.
    let a10 = p384.sign_auth(&[], b"octets").unwrap();
    assert_eq!((a10.method, a10.data.len()), (auth::ECDSA_SHA384_P384, 96));
    verifies(&p384_peer, &a10, "P-384 method 10");
    let a11 = p521.sign_auth(&[], b"octets").unwrap();
    assert_eq!((a11.method, a11.data.len()), (auth::ECDSA_SHA512_P521, 132));
    verifies(&p521_peer, &a11, "P-521 method 11");
    // RFC 7427 with the curve's hash when announced.
    let a = p384.sign_auth(&ANNOUNCED_HASHES, b"octets").unwrap();
    assert_eq!(a.method, auth::DIGITAL_SIGNATURE);
    assert_eq!(
        SigAlg::from_der(&a.data[1..13]).unwrap(),
        SigAlg::Ecdsa(Hash::Sha384)
    );
    verifies(&p384_peer, &a, "P-384 RFC 7427");
    let a = p521.sign_auth(&ANNOUNCED_HASHES, b"octets").unwrap();
    assert_eq!(
        SigAlg::from_der(&a.data[1..13]).unwrap(),
        SigAlg::Ecdsa(Hash::Sha512)
    );
    verifies(&p521_peer, &a, "P-521 RFC 7427");
    // A peer that announces one hash gets it (RSA), or the curve's (ECDSA).
    for only in ANNOUNCED_HASHES {
        let a = rsa4096.sign_auth(&[only], b"octets").unwrap();
        verifies(&rsa_peer, &a, &format!("RSA-4096, peer announces {only}"));
        for (key, peer, what) in [(&p384, &p384_peer, "P-384"), (&p521, &p521_peer, "P-521")] {
            let a = key.sign_auth(&[only], b"octets").unwrap();
            verifies(peer, &a, &format!("{what}, peer announces {only}"));
        }
    }
    // Signatures of one key do not verify under another.
    assert!(p521_peer.verify_auth(&a10, b"octets").is_err());
    assert!(p384_peer.verify_auth(&a11, b"octets").is_err());

    // Peers' P-521 signatures with every announced hash (DER), made by RustCrypto.
    use p521::ecdsa::signature::hazmat::RandomizedPrehashSigner;
    use p521::elliptic_curve::sec1::ToEncodedPoint;
    let mut bytes = [0u8; 66];
    bytes[1..].fill(5);
    let key = p521::ecdsa::SigningKey::from_slice(&bytes).unwrap();
    let point = p521::SecretKey::from_slice(&bytes)
        .unwrap()
        .public_key()
        .to_encoded_point(false);
    let public = sigalg::PublicKey::P521(point.as_bytes().to_vec());
    for (h, alg) in [
        (Hash::Sha256, &ring::digest::SHA256),
        (Hash::Sha384, &ring::digest::SHA384),
        (Hash::Sha512, &ring::digest::SHA512),
    ] {
        let digest = ring::digest::digest(alg, b"octets");
        let sig: p521::ecdsa::Signature = key
            .sign_prehash_with_rng(
                &mut rand_for_tests(),
                &sigalg::p521_prehash(digest.as_ref()),
            )
            .unwrap();
        let der = sig.to_der().as_bytes().to_vec();
        public
            .verify(SigAlg::Ecdsa(h), b"octets", &der, "AUTH")
            .unwrap_or_else(|e| panic!("P-521 {h:?}: {e}"));
        assert!(public
            .verify(SigAlg::Ecdsa(h), b"other", &der, "AUTH")
            .is_err());
    }
}

/// A deterministic `rand_core` RNG for the test signatures above.
fn rand_for_tests() -> impl p521::elliptic_curve::rand_core::CryptoRngCore {
    struct Counter(u64);
    impl p521::elliptic_curve::rand_core::RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = (self.next_u64() >> 33) as u8;
            }
        }
        fn try_fill_bytes(
            &mut self,
            dest: &mut [u8],
        ) -> Result<(), p521::elliptic_curve::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl p521::elliptic_curve::rand_core::CryptoRng for Counter {}
    Counter(42)
}
