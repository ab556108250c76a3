//! `esprit demo` on the embedded default: two IKEv2 endpoints negotiate a tunnel with a
//! pre-shared key, the child SAs they agree on are installed into the ESP dataplane, and
//! packets are pushed through them with every byte checked.
//!
//! Both peers live in this process and the "network" is a pair of queues: the daemon
//! with TUN devices and UDP sockets between network namespaces is the next step.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use engine::install::child_sas;
use esp::{OutboundSa, Sad, Spd};
use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::crypto::SystemRng;
use ike::endpoint::{ChildSaInfo, Endpoint, Event, IkeSaInfo, Transmit};
use ike::proposal::ProposalSet;

const A: [u8; 4] = [192, 0, 2, 1];
const B: [u8; 4] = [192, 0, 2, 2];

fn connection(
    name: &str,
    me: ([u8; 4], &str, &str),
    peer: (Option<[u8; 4]>, &str, &str),
) -> Connection {
    let psk = Arc::new(zeroize::Zeroizing::new(
        b"esprit demo pre-shared key".to_vec(),
    ));
    let cidr = |s: &str| ike::ts::parse_cidr(s).expect("valid demo subnet");
    Connection {
        name: name.into(),
        local_addrs: vec![IpAddr::from(me.0)],
        remote_addrs: peer.0.map(IpAddr::from).into_iter().collect(),
        remote_port: 500,
        proposals: ProposalSet::parse_ike("aes128gcm16-prfsha256-x25519").expect("valid proposal"),
        local_id: Identity::parse(me.1).expect("valid id"),
        local_auth: LocalAuth::Psk(psk.clone()),
        remote_id: Identity::parse(peer.1).expect("valid id"),
        remote_auth: RemoteAuth::Psk(psk),
        encap: false,
        dpd_delay: None,
        rekey_time: Duration::ZERO,
        fragmentation: true,
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![cidr(me.2)],
            remote_ts: vec![cidr(peer.2)],
            esp_proposals: ProposalSet::parse_esp("aes128gcm16").expect("valid proposal"),
            rekey_time: Duration::ZERO,
        }],
    }
}

/// Moves datagrams between the two endpoints until both report their child SA.
fn negotiate(a: &mut Endpoint, b: &mut Endpoint) -> Result<(ChildSaInfo, ChildSaInfo), String> {
    let now = Instant::now();
    a.initiate(now, "site-b", None).map_err(|e| e.to_string())?;
    let (mut ca, mut cb) = (None, None);
    let mut wire: VecDeque<(bool, Transmit)> = VecDeque::new();
    for _ in 0..100 {
        while let Some(t) = a.poll_transmit() {
            wire.push_back((true, t));
        }
        while let Some(t) = b.poll_transmit() {
            wire.push_back((false, t));
        }
        for (ep, slot) in [(&mut *a, &mut ca), (&mut *b, &mut cb)] {
            while let Some(ev) = ep.poll_event() {
                match ev {
                    Event::ChildUp(c) => *slot = Some(*c),
                    Event::IkeDown { reason, .. } => {
                        return Err(format!("IKE SA failed: {reason}"))
                    }
                    _ => {}
                }
            }
        }
        if ca.is_some() && cb.is_some() {
            break;
        }
        let Some((from_a, t)) = wire.pop_front() else {
            break;
        };
        let (to, ip, peer) = if from_a {
            (&mut *b, B, A)
        } else {
            (&mut *a, A, B)
        };
        to.handle(
            now,
            SocketAddr::new(IpAddr::from(ip), t.remote.port()),
            SocketAddr::new(IpAddr::from(peer), t.local.port()),
            &t.data,
        );
    }
    match (ca, cb) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err("negotiation did not finish".into()),
    }
}

fn show(side: &str, sas: &[IkeSaInfo]) {
    for s in sas {
        println!(
            "{side}: {}: ESTABLISHED, IKEv2, {:016x}_i{} {:016x}_r{}",
            s.conn,
            s.spi_i,
            if s.initiator { "*" } else { "" },
            s.spi_r,
            if s.initiator { "" } else { "*" }
        );
        println!("  local  '{}' @ {}", s.local_id, s.local);
        println!("  remote '{}' @ {}", s.remote_id, s.remote);
        if let Some(suite) = s.suite {
            println!("  {suite}");
        }
        for c in &s.children {
            println!("  {}: INSTALLED, TUNNEL, ESP:{}", c.name, c.suite);
            println!("    in  {:08x}", c.spi_in);
            println!("    out {:08x}", c.spi_out);
            let ts = |v: &[ike::wire::TrafficSelector]| {
                v.iter().map(ike::ts::display).collect::<Vec<_>>().join(" ")
            };
            println!("    local  {}", ts(&c.local_ts));
            println!("    remote {}", ts(&c.remote_ts));
        }
    }
}

/// A minimal IPv4/UDP packet from 10.96.1.1 to 10.96.2.1 of `len` bytes.
fn ipv4_udp(len: usize, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; len];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[4..8].fill(0);
    p[8] = 64;
    p[9] = 17;
    p[10..12].fill(0);
    p[12..16].copy_from_slice(&[10, 96, 1, 1]);
    p[16..20].copy_from_slice(&[10, 96, 2, 1]);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p[26..28].fill(0);
    p
}

/// Runs the demo for `seconds` of traffic.
pub fn run(seconds: u64) -> Result<(), String> {
    let clock = (Instant::now(), SystemTime::now());
    let mut a = Endpoint::new(Config::default(), Box::new(SystemRng::new()), clock);
    let mut b = Endpoint::new(Config::default(), Box::new(SystemRng::new()), clock);
    a.add_connection(connection(
        "site-b",
        (A, "site-a.example", "10.96.1.0/24"),
        (Some(B), "site-b.example", "10.96.2.0/24"),
    ));
    b.add_connection(connection(
        "site-a",
        (B, "site-b.example", "10.96.2.0/24"),
        (None, "site-a.example", "10.96.1.0/24"),
    ));
    println!("== IKEv2 negotiation (PSK, aes128gcm16-prfsha256-x25519), in memory");
    let (ca, cb) = negotiate(&mut a, &mut b)?;
    show("site-a", &a.ike_sas());
    show("site-b", &b.ike_sas());

    // site-a sends, site-b receives: site-a's outbound SA and SPD, site-b's SAD.
    let sa_a = child_sas(&ca).map_err(|e| e.to_string())?;
    let sa_b = child_sas(&cb).map_err(|e| e.to_string())?;
    let mut out = [sa_a.outbound];
    let mut spd: Spd<usize> = Spd::new();
    for (src, dst) in &sa_a.policies {
        spd.insert(src, dst, 0)
            .map_err(|e| format!("policy: {e:?}"))?;
    }
    let mut sad = Sad::new();
    sad.insert(sa_b.inbound);

    println!("\n== ESP through the negotiated SAs: 1400-byte packets for {seconds} s, every byte checked");
    let len = 1400;
    let head = OutboundSa::HEADROOM;
    let mut buf = vec![0u8; head + len + OutboundSa::TAILROOM];
    let (mut packets, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        for _ in 0..1024 {
            let fill = packets as u8;
            let inner = ipv4_udp(len, fill);
            buf[head..head + len].copy_from_slice(&inner);
            let sa = spd
                .lookup(&buf[head..head + len])
                .ok_or("no policy for the packet")?;
            let enc = out[sa]
                .encapsulate(&mut buf, head..head + len)
                .map_err(|e| format!("encap: {e:?}"))?;
            let dec = sad
                .decapsulate(&mut buf, enc.packet)
                .map_err(|e| format!("decap: {e:?}"))?;
            if buf[dec.inner.clone()] != inner[..] {
                return Err("a packet came out different".into());
            }
            packets += 1;
            bytes += len as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{packets} packets, {:.1} MB through ESP in {secs:.2} s: {:.2} Gbit/s (encap + decap on one core, no IO)",
        bytes as f64 / 1e6,
        bytes as f64 * 8.0 / secs / 1e9
    );
    Ok(())
}
