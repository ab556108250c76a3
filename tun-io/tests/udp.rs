//! UDP sockets on the loopback of a namespace of our own: GSO, GRO, pktinfo, IKE ports.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tun_io::{GsoBatch, UdpConfig, UdpRecvBatch, UdpSocket, UDP_BATCH};

/// Receives until `n` datagrams arrived; returns them with the strides seen.
fn recv_n(rx: &UdpSocket, n: usize) -> (Vec<Vec<u8>>, Vec<usize>, Vec<SocketAddr>, Vec<IpAddr>) {
    let mut rb = UdpRecvBatch::new(UDP_BATCH);
    let (mut data, mut strides, mut srcs, mut dsts) = (vec![], vec![], vec![], vec![]);
    while data.len() < n {
        rx.recv_batch_timeout(&mut rb, Duration::from_secs(5))
            .expect("datagrams arrive");
        for i in 0..rb.messages() {
            strides.push(rb.stride(i).unwrap());
        }
        for d in rb.iter() {
            data.push(d.data.to_vec());
            srcs.push(d.src);
            dsts.extend(d.dst_ip);
            assert_eq!(d.local_port, rx.local_addr().port());
        }
    }
    (data, strides, srcs, dsts)
}

fn gso_gro_round_trip(ip: IpAddr) {
    let rx = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    let tx = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    assert_eq!(tx.max_gso_segments(), 64, "UDP GSO available");
    assert_eq!(rx.gro_segments(), 64, "UDP GRO available");
    let mut b = GsoBatch::new(1 << 20);
    let want: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 1000]).collect();
    for d in &want {
        assert!(b.push(rx.local_addr(), None, d));
    }
    assert_eq!(b.runs(), 1, "64 equal datagrams make one GSO send");
    assert_eq!(tx.send_batch(&mut b).unwrap(), 64);
    assert!(b.is_empty());

    let (data, strides, srcs, dsts) = recv_n(&rx, 64);
    assert_eq!(data, want);
    assert!(strides.iter().all(|&s| s == 1000), "stride {strides:?}");
    assert!(
        strides.len() < 64,
        "GRO returned several datagrams per message ({} messages)",
        strides.len()
    );
    assert!(srcs.iter().all(|s| *s == tx.local_addr()));
    assert!(dsts.iter().all(|d| *d == ip), "pktinfo says {dsts:?}");
}

#[test]
fn gso_sends_64_datagrams_in_one_call_and_gro_receives_them_v4() {
    if !privileged() {
        return;
    }
    Netns::new("gso4").run(|| gso_gro_round_trip(Ipv4Addr::LOCALHOST.into()));
}

#[test]
fn gso_sends_64_datagrams_in_one_call_and_gro_receives_them_v6() {
    if !privileged() {
        return;
    }
    Netns::new("gso6").run(|| gso_gro_round_trip(Ipv6Addr::LOCALHOST.into()));
}

#[test]
fn mixed_sizes_and_peers_all_arrive_in_order() {
    if !privileged() {
        return;
    }
    Netns::new("mix").run(|| {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut g = GsoBatch::new(1 << 20);
        let mut to_a = vec![];
        let mut to_b = vec![];
        for i in 0..200usize {
            let size = [1400, 1400, 1400, 700, 90][i % 5];
            let d = vec![i as u8; size];
            if i % 7 == 0 {
                assert!(g.push(b.local_addr(), None, &d));
                to_b.push(d);
            } else {
                assert!(g.push(a.local_addr(), Some(Ipv4Addr::LOCALHOST.into()), &d));
                to_a.push(d);
            }
        }
        assert!(g.runs() > 2);
        assert_eq!(tx.send_batch(&mut g).unwrap(), 200);
        assert_eq!(recv_n(&a, to_a.len()).0, to_a);
        assert_eq!(recv_n(&b, to_b.len()).0, to_b);
    });
}

#[test]
fn ike_and_natt_sockets_on_v4_and_v6_report_port_and_destination() {
    if !privileged() {
        return;
    }
    Netns::new("ike").run(|| {
        let cfg = UdpConfig {
            addrs: vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
            ..UdpConfig::default()
        };
        let socks = cfg.bind_all().unwrap();
        let ports: Vec<_> = socks.iter().map(|s| s.local_addr().port()).collect();
        assert_eq!(ports, vec![500, 4500, 500, 4500]);
        for s in &socks {
            let peer = UdpSocket::bind(SocketAddr::new(s.local_addr().ip(), 0)).unwrap();
            peer.send_to(b"IKE_SA_INIT", s.local_addr(), None).unwrap();
            let mut rb = UdpRecvBatch::new(1);
            s.recv_batch_timeout(&mut rb, Duration::from_secs(5))
                .unwrap();
            let d = rb.iter().next().unwrap();
            assert_eq!(d.data, b"IKE_SA_INIT");
            assert_eq!(d.src, peer.local_addr());
            assert_eq!(d.dst_ip, Some(s.local_addr().ip()));
            assert_eq!(d.local_port, s.local_addr().port());
            // And the answer goes back from the port it came in on.
            s.send_to(b"reply", d.src, d.dst_ip).unwrap();
            let mut back = UdpRecvBatch::new(1);
            peer.recv_batch_timeout(&mut back, Duration::from_secs(5))
                .unwrap();
            assert_eq!(back.iter().next().unwrap().src, s.local_addr());
        }
        // A nothing-to-read socket times out instead of hanging.
        let mut rb = UdpRecvBatch::new(1);
        let err = socks[0]
            .recv_batch_timeout(&mut rb, Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    });
}
