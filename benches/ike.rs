//! Responder-side IKE handshake cost on one core: IKE_SA_INIT + IKE_AUTH (PSK, X25519
//! and ECP-256), next to the Diffie-Hellman work alone, so the cost splits into DH and
//! the rest (parsing, key derivation, AUTH, SK payloads, state).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use ike::auth::{load_certs_pem, PrivateKey, TrustStore};
use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::crypto::{Dh, DhKeyPair, SeededRng, SystemRng};
use ike::endpoint::Endpoint;
use ike::proposal::ProposalSet;
use ike::ts;

const A: [u8; 4] = [192, 0, 2, 1];
const B: [u8; 4] = [192, 0, 2, 2];

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ike/tests/data/auth/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

/// PSK, or ECDSA P-256 certificates from ike's test fixtures.
#[derive(Clone, Copy)]
enum Auth {
    Psk,
    Ecdsa,
}

/// The identities in the fixture certificates' subjects.
fn dn(cn: &str) -> &'static str {
    match cn {
        "edge1" => "C=CN, O=Local Cluster, CN=edge1",
        _ => "CN=edge2",
    }
}

fn auths(auth: Auth, me: &str) -> (LocalAuth, RemoteAuth) {
    match auth {
        Auth::Psk => {
            let psk = Arc::new(zeroize::Zeroizing::new(b"a long random secret".to_vec()));
            (LocalAuth::Psk(psk.clone()), RemoteAuth::Psk(psk))
        }
        Auth::Ecdsa => (
            LocalAuth::Pubkey {
                key: Arc::new(PrivateKey::from_pem(&fixture(&format!("{me}.key"))).unwrap()),
                certs: load_certs_pem(&fixture(&format!("{me}.crt"))).unwrap(),
            },
            RemoteAuth::Pubkey(Arc::new(
                TrustStore::from_pem(&fixture("ecdsa-ca.crt")).unwrap(),
            )),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn conn(
    name: &str,
    local: [u8; 4],
    remote: Option<[u8; 4]>,
    ike: &str,
    auth: Auth,
    me: &str,
    peer: &str,
) -> Connection {
    let (local_auth, remote_auth) = auths(auth, me);
    Connection {
        name: name.into(),
        local_addrs: vec![IpAddr::from(local)],
        remote_addrs: remote.map(IpAddr::from).into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike(ike).unwrap(),
        local_id: Identity::parse(dn(me)).unwrap(),
        local_auth,
        remote_id: Identity::parse(dn(peer)).unwrap(),
        remote_auth,
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        mediation: Default::default(),
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ts::parse_cidr("10.96.1.0/24").unwrap()],
            remote_ts: vec![ts::parse_cidr("10.96.2.0/24").unwrap()],
            esp_proposals: ProposalSet::parse_esp("aes128gcm16").unwrap(),
            rekey_time: Duration::ZERO,
        }],
        unique: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
    }
}

/// Runs one handshake; returns the time the responder spent in `handle`.
fn handshake(now: Instant, ike: &str, auth: Auth, seed: u64) -> Duration {
    let clock = (now, SystemTime::now());
    let mut i = Endpoint::new(Config::default(), Box::new(SeededRng::new(seed)), clock);
    let mut r = Endpoint::new(Config::default(), Box::new(SystemRng::new()), clock);
    i.add_connection(conn("site-b", A, Some(B), ike, auth, "edge1", "edge2"));
    r.add_connection(conn("site-a", B, None, ike, auth, "edge2", "edge1"));
    i.initiate(now, "site-b", None).unwrap();
    let mut spent = Duration::ZERO;
    for _ in 0..4 {
        while let Some(t) = i.poll_transmit() {
            let local = SocketAddr::new(IpAddr::from(B), t.remote.port());
            let start = Instant::now();
            r.handle(now, local, t.local_with(A), &t.data);
            spent += start.elapsed();
        }
        while let Some(t) = r.poll_transmit() {
            let local = SocketAddr::new(IpAddr::from(A), t.remote.port());
            i.handle(now, local, t.local_with(B), &t.data);
        }
    }
    assert_eq!(r.ike_sas().first().map(|s| s.state), Some("ESTABLISHED"));
    assert_eq!(i.ike_sas().first().map(|s| s.state), Some("ESTABLISHED"));
    spent
}

trait LocalWith {
    fn local_with(&self, ip: [u8; 4]) -> SocketAddr;
}

impl LocalWith for ike::endpoint::Transmit {
    fn local_with(&self, ip: [u8; 4]) -> SocketAddr {
        SocketAddr::new(IpAddr::from(ip), self.local.port())
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("responder_handshake");
    for (name, auth) in [("psk", Auth::Psk), ("ecdsa", Auth::Ecdsa)] {
        for ike in [
            "aes128gcm16-prfsha256-x25519",
            "aes128gcm16-prfsha256-ecp256",
        ] {
            g.bench_function(format!("{name}/{ike}"), |b| {
                let mut seed = 1;
                b.iter_custom(|iters| {
                    let now = Instant::now();
                    (0..iters)
                        .map(|_| {
                            seed += 1;
                            handshake(now, ike, auth, seed)
                        })
                        .sum()
                })
            });
        }
    }
    g.finish();
    // The responder's DH share of a handshake: one key pair and one agreement.
    let mut g = c.benchmark_group("responder_dh");
    for group in [Dh::Curve25519, Dh::Ecp256] {
        let mut rng = SystemRng::new();
        let peer = DhKeyPair::generate(group, &mut rng).unwrap();
        g.bench_function(group.name(), |b| {
            b.iter(|| {
                let ours = DhKeyPair::generate(group, &mut rng).unwrap();
                ours.shared_secret(peer.public_value()).unwrap()
            })
        });
    }
    g.finish();
    // The responder's signature share with ECDSA: its AUTH signature, and the peer's
    // chain (one certificate signature) and AUTH to verify.
    let mut g = c.benchmark_group("responder_signatures");
    let key = PrivateKey::from_pem(&fixture("edge2.key")).unwrap();
    let octets = vec![0x5a; 400];
    g.bench_function("ecdsa_sign", |b| {
        b.iter(|| key.sign_auth(&[2], &octets).unwrap())
    });
    let peer_auth = PrivateKey::from_pem(&fixture("edge1.key"))
        .unwrap()
        .sign_auth(&[2], &octets)
        .unwrap();
    let trust = TrustStore::from_pem(&fixture("ecdsa-ca.crt")).unwrap();
    let ee = load_certs_pem(&fixture("edge1.crt")).unwrap().remove(0);
    let unix_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    g.bench_function("ecdsa_verify_chain_and_auth", |b| {
        b.iter(|| {
            let v = trust.verify_chain(&ee, &[], unix_now).unwrap();
            v.verify_auth(&peer_auth, &octets).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
