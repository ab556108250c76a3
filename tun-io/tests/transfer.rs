//! A 50 MB TCP transfer between two namespaces through TUN -> UDP -> TUN copy loops built
//! on tun-io: TSO super-packets split on the way out, GSO/GRO on the UDP leg, GRO
//! coalescing on the way back in. Every byte is checked.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::copy_loop::CopyLoop;
use common::*;
use tun_io::{install_routes, RouteGuard, Tun, TunConfig, UdpSocket};

const BYTES: u64 = 50 * 1000 * 1000;

/// The byte at stream offset `pos`.
fn pattern(pos: u64) -> u8 {
    (pos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// One side: TUN with `inner/24`, a route to `remote/24`, UDP on `outer:4500` to `peer`.
fn side(inner: Ipv4Addr, remote: &str, outer: &str, peer: &str) -> (CopyLoop, RouteGuard) {
    let tun = Tun::create(&TunConfig::new().name("tio0").mtu(1400).ipv4(inner, 24)).unwrap();
    assert!(tun.offloads().tso);
    let routes = install_routes("tio0", &[remote.parse().unwrap()]).unwrap();
    let udp = UdpSocket::bind(outer.parse().unwrap()).unwrap();
    let lp = CopyLoop::start(tun, udp, peer.parse::<SocketAddr>().unwrap()).unwrap();
    (lp, routes)
}

#[test]
fn tcp_50mb_through_tun_udp_tun_copy_loops() {
    if !privileged() {
        return;
    }
    let (a, b) = veth_pair("tx");
    let (la, ra) = a.run(|| {
        side(
            Ipv4Addr::new(10, 96, 1, 1),
            "10.96.2.0/24",
            "192.0.2.1:4500",
            "192.0.2.2:4500",
        )
    });
    let (lb, rb) = b.run(|| {
        side(
            Ipv4Addr::new(10, 96, 2, 1),
            "10.96.1.0/24",
            "192.0.2.2:4500",
            "192.0.2.1:4500",
        )
    });

    let listener = b.run(|| TcpListener::bind("10.96.2.1:5201").unwrap());
    let server = b.spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = 0u64;
        let mut bad = None;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if bad.is_none() {
                bad = buf[..n]
                    .iter()
                    .enumerate()
                    .find(|&(i, &v)| v != pattern(pos + i as u64))
                    .map(|(i, _)| pos + i as u64);
            }
            pos += n as u64;
        }
        s.write_all(&pos.to_be_bytes()).unwrap();
        (pos, bad)
    });
    let client = a.spawn(|| {
        let mut s = TcpStream::connect("10.96.2.1:5201").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = 0u64;
        while pos < BYTES {
            let n = (BYTES - pos).min(buf.len() as u64) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(pos + i as u64);
            }
            s.write_all(&buf[..n]).unwrap();
            pos += n as u64;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut count = [0u8; 8];
        s.read_exact(&mut count).unwrap();
        u64::from_be_bytes(count)
    });
    let acked = client.join().expect("client");
    let (received, bad) = server.join().expect("server");
    assert_eq!(bad, None, "first corrupted byte");
    assert_eq!(received, BYTES);
    assert_eq!(acked, BYTES);

    eprintln!("A: {}", la.stats.summary());
    eprintln!("B: {}", lb.stats.summary());
    // The sender's TUN handed over TSO super-packets, split into many segments per read;
    // the receiver's UDP socket got GRO aggregates.
    assert!(la.stats.max_per_read.load(Ordering::Relaxed) > 1);
    assert!(lb.stats.max_per_msg.load(Ordering::Relaxed) > 1);
    assert!(
        la.stats.tun_packets.load(Ordering::Relaxed)
            > 2 * la.stats.tun_reads.load(Ordering::Relaxed)
    );
    la.stop().unwrap();
    lb.stop().unwrap();
    drop((ra, rb));
}
