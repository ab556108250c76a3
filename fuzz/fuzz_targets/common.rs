//! A PSK responder endpoint and a valid IKE_SA_INIT request to start from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::crypto::SeededRng;
use ike::endpoint::Endpoint;
use ike::proposal::ProposalSet;

pub const I: [u8; 4] = [192, 0, 2, 1];
pub const R: [u8; 4] = [192, 0, 2, 2];

pub fn conn(local: [u8; 4], remote: Option<[u8; 4]>, me: &str, peer: &str) -> Connection {
    let psk = Arc::new(zeroize::Zeroizing::new(b"fuzzing secret".to_vec()));
    Connection {
        name: "c".into(),
        local_addrs: vec![IpAddr::from(local)],
        remote_addrs: remote.map(IpAddr::from).into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike("aes128gcm16-prfsha256-x25519, aes128-sha256-ecp256")
            .unwrap(),
        local_id: Identity::parse(me).unwrap(),
        local_auth: LocalAuth::Psk(psk.clone()),
        remote_id: Identity::parse(peer).unwrap(),
        remote_auth: RemoteAuth::Psk(psk),
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        unique: Default::default(),
        mediation: Default::default(),
        vips: Vec::new(),
        pools: Vec::new(),
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![ike::ts::parse_cidr("10.96.0.0/16").unwrap()],
            remote_ts: vec![ike::ts::parse_cidr("10.97.0.0/16").unwrap()],
            esp_proposals: ProposalSet::parse_esp("aes128gcm16, aes256gcm16-x25519").unwrap(),
            rekey_time: Duration::ZERO,
        }],
    }
}

pub fn endpoint(
    seed: u64,
    local: [u8; 4],
    remote: Option<[u8; 4]>,
    me: &str,
    peer: &str,
) -> Endpoint {
    let now = Instant::now();
    let mut e = Endpoint::new(
        Config::default(),
        Box::new(SeededRng::new(seed)),
        (now, SystemTime::UNIX_EPOCH),
    );
    e.add_connection(conn(local, remote, me, peer));
    e
}

pub fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(ip), port)
}

/// Drains everything an endpoint wants to do, so the fuzzer reaches those paths too.
pub fn drain(e: &mut Endpoint) {
    while e.poll_transmit().is_some() {}
    while e.poll_event().is_some() {}
    if let Some(t) = e.poll_timeout() {
        e.handle_timeout(t);
    }
}
