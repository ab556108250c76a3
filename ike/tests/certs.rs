//! Certificate authentication (RFC 7296 2.15, RFC 7427) between two in-memory endpoints.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use ike::auth::load_certs_pem;
use ike::config::{Config, PrivateKey, TrustStore};
use ike::endpoint::DownReason;
use ike::iana;
use ike::wire::{Message, Payload};

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/auth/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(name: &str) -> PrivateKey {
    PrivateKey::from_pem(&data(name)).unwrap()
}

fn chain(names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .flat_map(|n| load_certs_pem(&data(n)).unwrap())
        .collect()
}

fn trust(names: &[&str]) -> TrustStore {
    TrustStore::from_der(chain(names)).unwrap()
}

/// One end's certificate setup: id, key file, chain files, trusted CA files, and the
/// id it expects from the peer.
struct End<'a> {
    id: &'a str,
    key: &'a str,
    chain: &'a [&'a str],
    cas: &'a [&'a str],
    remote_id: &'a str,
}

fn pair(a: End<'_>, b: End<'_>) -> Pair {
    let mut p = Pair::new(Config::default());
    p.a.ep.add_connection(cert_conn(
        "site-b",
        A_IP,
        Some(B_IP),
        a.id,
        a.remote_id,
        key(a.key),
        chain(a.chain),
        trust(a.cas),
        IKE,
        vec![child("net", &["10.96.1.0/24"], &["10.96.2.0/24"], ESP)],
    ));
    p.b.ep.add_connection(cert_conn(
        "site-a",
        B_IP,
        None,
        b.id,
        b.remote_id,
        key(b.key),
        chain(b.chain),
        trust(b.cas),
        IKE,
        vec![child("net", &["10.96.2.0/24"], &["10.96.1.0/24"], ESP)],
    ));
    p
}

fn edge1() -> End<'static> {
    End {
        id: "C=CN, O=Local Cluster, CN=edge1",
        key: "edge1.key",
        chain: &["edge1.crt"],
        cas: &["ecdsa-ca.crt"],
        remote_id: "CN=edge2",
    }
}

fn edge2() -> End<'static> {
    End {
        id: "CN=edge2",
        key: "edge2.key",
        chain: &["edge2.crt"],
        cas: &["ecdsa-ca.crt"],
        remote_id: "C=CN, O=Local Cluster, CN=edge1",
    }
}

fn cloud() -> End<'static> {
    End {
        id: "C=CN, O=Local Cluster, CN=cloud-connector",
        key: "cloud-connector.key",
        chain: &["cloud-connector.crt", "rsa-int.crt"],
        cas: &["ecdsa-ca.crt"],
        remote_id: "C=CN, O=Local Cluster, CN=edge1",
    }
}

fn up(p: &mut Pair) {
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    assert!(
        p.run_until(Duration::from_secs(60), |p| p.a.children.len() == 1
            && p.b.children.len() == 1),
        "tunnel did not come up: a {:?} b {:?}",
        p.a.ike_down,
        p.b.ike_down
    );
    p.settle();
    assert_eq!((p.a.ike_up, p.b.ike_up), (1, 1));
    p.assert_children_match();
}

/// Runs the handshake to its end and returns both sides' down reasons.
fn fail(p: &mut Pair) -> (Vec<DownReason>, Vec<DownReason>) {
    p.a.ep.initiate(p.now, "site-b", None).unwrap();
    p.run_for(Duration::from_secs(120));
    assert!(p.a.children.is_empty());
    (p.a.ike_down.clone(), p.b.ike_down.clone())
}

fn auth_failed(reasons: &[DownReason]) -> Option<String> {
    reasons.iter().find_map(|r| match r {
        DownReason::AuthenticationFailed(why) => Some(why.to_string()),
        _ => None,
    })
}

#[test]
fn ecdsa_handshake() {
    let mut p = pair(edge1(), edge2());
    up(&mut p);
    let ids = |n: &Node| {
        let sa = &n.ep.ike_sas()[0];
        (sa.local_id.to_string(), sa.remote_id.to_string())
    };
    assert_eq!(
        ids(&p.a),
        ("C=CN, O=Local Cluster, CN=edge1".into(), "CN=edge2".into())
    );
    assert_eq!(
        ids(&p.b),
        ("CN=edge2".into(), "C=CN, O=Local Cluster, CN=edge1".into())
    );
}

#[test]
fn ecdsa_handshake_with_san_identities() {
    let mut a = edge1();
    a.id = "edge1";
    a.remote_id = "@edge2";
    let mut b = edge2();
    b.id = "@edge2";
    b.remote_id = "%any";
    let mut p = pair(a, b);
    up(&mut p);
    assert_eq!(p.b.ep.ike_sas()[0].remote_id, "edge1");
}

#[test]
fn rsa_chain_handshake_is_fragmented() {
    let mut a = cloud();
    a.cas = &["ecdsa-ca.crt"];
    a.remote_id = "C=CN, O=Local Cluster, CN=edge1";
    let mut b = edge1();
    b.cas = &["rsa-ca.crt"];
    b.remote_id = "C=CN, O=Local Cluster, CN=cloud-connector";
    let mut p = pair(a, b);
    let fragments = Rc::new(RefCell::new(0usize));
    let seen = fragments.clone();
    p.filter = Some(Box::new(move |_, t| {
        if let Ok(m) = Message::parse(&t.data) {
            let auth_request =
                m.header.exchange == iana::exchange::IKE_AUTH && !m.header.flags.response;
            if auth_request && m.payloads.iter().any(|x| matches!(x, Payload::Skf(_))) {
                *seen.borrow_mut() += 1;
            }
        }
        Fate::Deliver
    }));
    up(&mut p);
    assert!(*fragments.borrow() >= 2, "{} fragments", fragments.borrow());
}

#[test]
fn untrusted_ca_fails_on_both_sides() {
    let mut a = edge1();
    a.key = "rogue.key";
    a.chain = &["rogue.crt"];
    let mut p = pair(a, edge2());
    let (a_down, b_down) = fail(&mut p);
    let b_why = auth_failed(&b_down).expect("b reports AuthenticationFailed");
    assert!(b_why.contains("certificate"), "{b_why}");
    assert!(auth_failed(&a_down).is_some(), "{a_down:?}");
}

#[test]
fn untrusted_responder_fails_on_both_sides() {
    let mut b = edge2();
    b.cas = &["ecdsa-ca.crt"];
    let mut a = edge1();
    a.cas = &["rsa-ca.crt"];
    let mut p = pair(a, b);
    let (a_down, b_down) = fail(&mut p);
    let a_why = auth_failed(&a_down).expect("a reports AuthenticationFailed");
    assert!(a_why.contains("certificate"), "{a_why}");
    // RFC 7296 2.21.2: b completed the SA, then learns from a's INFORMATIONAL that a
    // rejected it, and tears it down.
    let b_why = auth_failed(&b_down).expect("b reports AuthenticationFailed");
    assert!(b_why.contains("rejected"), "{b_why}");
    assert!(p.b.ep.ike_sas().is_empty());
    assert!(p.b.children.is_empty(), "{:?}", p.b.children);
}

#[test]
fn wrong_remote_id_fails() {
    let mut a = edge1();
    a.remote_id = "CN=edge3";
    let mut p = pair(a, edge2());
    let (a_down, _) = fail(&mut p);
    assert!(auth_failed(&a_down).is_some(), "{a_down:?}");
    // The responder's identity is not in its certificate.
    let mut b = edge2();
    b.id = "CN=edge3";
    let mut a = edge1();
    a.remote_id = "%any";
    let mut p = pair(a, b);
    let (a_down, _) = fail(&mut p);
    let why = auth_failed(&a_down).expect("a reports AuthenticationFailed");
    assert!(why.contains("certificate"), "{why}");
}
