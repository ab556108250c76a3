//! The TUN device in a network namespace of its own: reads, writes, fd adoption,
//! attachment without CAP_NET_ADMIN, multi-queue and the tokio API.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use tun_io::{
    install_routes, GsoBatch, Offloads, PacketBatch, Tun, TunConfig, UdpRecvBatch, UdpSocket,
    MIN_TUN_HEADROOM, TUN_BATCH,
};

const TUN_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 5);

fn tun_v6() -> Ipv6Addr {
    "fd00:77::1".parse().unwrap()
}

fn remote_v6() -> Ipv6Addr {
    "fd00:78::5".parse().unwrap()
}

fn config() -> TunConfig {
    TunConfig::new()
        .name("tio0")
        .mtu(1400)
        .ipv4(TUN_V4, 24)
        .ipv6(tun_v6(), 64)
}

fn remote_nets() -> Vec<ipnet::IpNet> {
    vec![
        "10.78.0.0/24".parse().unwrap(),
        "fd00:78::/64".parse().unwrap(),
    ]
}

/// Sends with `send`, then reads from `tun` until `want` says it has seen enough, sending
/// again every 100 ms without traffic (a device just attached drops packets until the
/// kernel's link watcher activates its queue), for at most 5 s.
fn read_until(tun: &mut Tun, mut send: impl FnMut(), mut want: impl FnMut(&[u8]) -> bool) {
    let mut batch = PacketBatch::new(TUN_BATCH, 64, 1500);
    let deadline = Instant::now() + Duration::from_secs(5);
    send();
    while Instant::now() < deadline {
        if !tun.wait_readable(Some(Duration::from_millis(100))).unwrap() {
            send();
            continue;
        }
        tun.recv_into(&mut batch).unwrap();
        for p in batch.iter() {
            if want(p) {
                return;
            }
        }
    }
    panic!(
        "timed out reading {}: {}",
        tun.name(),
        sh(&["ip", "-s", "-d", "link", "show", tun.name()])
    );
}

/// Waits until the kernel lets a socket use `ip` as its source (IPv6 addresses start out
/// tentative for a moment after the link comes up).
fn wait_usable(ip: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::UdpSocket::bind((ip, 0)).is_err() {
        assert!(Instant::now() < deadline, "{ip} never became usable");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn icmp_echo() -> Vec<u8> {
    let mut e = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];
    let c = checksum(&e, 0);
    e[2..4].copy_from_slice(&c.to_be_bytes());
    e
}

#[test]
fn reads_udp_and_icmp_sent_into_routed_subnets() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("rd");
    ns.run(|| {
        let mut tun = Tun::create(&config()).unwrap();
        assert_eq!(tun.name(), "tio0");
        assert_eq!(tun.mtu().unwrap(), 1400);
        assert!(tun.offloads().tso, "this kernel offers TSO on TUN");
        let _routes = install_routes("tio0", &remote_nets()).unwrap();
        wait_usable(tun_v6().into());

        let s4 = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let s6 = std::net::UdpSocket::bind("[::]:0").unwrap();
        let icmp = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        let to: SocketAddr = (Ipv4Addr::new(10, 78, 0, 9), 0).into();
        let send = || {
            s4.send_to(b"hello v4", (REMOTE_V4, 7000)).unwrap();
            s6.send_to(b"hello v6", (remote_v6(), 7000)).unwrap();
            icmp.send_to(&icmp_echo(), &to.into()).unwrap();
        };

        let (mut v4, mut v6, mut ping) = (false, false, false);
        read_until(&mut tun, send, |p| {
            let Some(pp) = parse(p) else { return false };
            match (pp.proto, pp.dst) {
                (17, IpAddr::V4(d)) if d == REMOTE_V4 => {
                    assert_eq!(pp.payload, b"hello v4");
                    assert_eq!(pp.src, IpAddr::V4(TUN_V4));
                    assert_eq!(pp.ports.unwrap().1, 7000);
                    assert!(l4_checksum_ok(p), "partial checksum completed");
                    v4 = true;
                }
                (17, IpAddr::V6(d)) if d == remote_v6() => {
                    assert_eq!(pp.payload, b"hello v6");
                    assert_eq!(pp.src, IpAddr::V6(tun_v6()));
                    assert!(l4_checksum_ok(p));
                    v6 = true;
                }
                (1, IpAddr::V4(d)) if d == Ipv4Addr::new(10, 78, 0, 9) => {
                    assert_eq!(&pp.payload[8..], b"ping");
                    ping = true;
                }
                _ => {}
            }
            v4 && v6 && ping
        });
    });
}

#[test]
fn writes_reach_sockets_with_udp_segments_coalesced() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("wr");
    ns.run(|| {
        let mut tun = Tun::create(&config()).unwrap();
        let _routes = install_routes("tio0", &remote_nets()).unwrap();
        let rx4 = std::net::UdpSocket::bind((TUN_V4, 7001)).unwrap();
        wait_usable(tun_v6().into());
        let rx6 = std::net::UdpSocket::bind((tun_v6(), 7001)).unwrap();
        for s in [&rx4, &rx6] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }

        // One flow of 20 equal datagrams and a short tail (a GRO candidate: written as one
        // USO super-packet when the kernel has USO), then a v6 flow, then a lone v4 packet.
        let mut out = PacketBatch::new(TUN_BATCH, MIN_TUN_HEADROOM, 1500);
        let mut want4 = Vec::new();
        for i in 0..20u8 {
            want4.push(vec![i; 1000]);
        }
        want4.push(vec![99; 300]);
        for p in &want4 {
            assert!(out.push(&ipv4_udp(REMOTE_V4, TUN_V4, 9000, 7001, p)));
        }
        let want6: Vec<_> = (0..5u8).map(|i| vec![i; 800]).collect();
        for p in &want6 {
            assert!(out.push(&ipv6_udp(remote_v6(), tun_v6(), 9000, 7001, p)));
        }
        assert!(out.push(&ipv4_udp(REMOTE_V4, TUN_V4, 9001, 7001, b"lone")));
        let n = tun.send_from(&mut out).unwrap();
        assert!(n > 0);
        assert!(out.is_empty());

        let mut buf = [0u8; 2048];
        for p in want4.iter().map(|v| &v[..]).chain([&b"lone"[..]]) {
            let (len, from) = rx4.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], p);
            assert_eq!(from.ip(), IpAddr::V4(REMOTE_V4));
        }
        for p in &want6 {
            let (len, _) = rx6.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &p[..]);
        }
        // A buffer without the virtio header's room is refused, not written short.
        let mut bad = vec![vec![0u8; 30]];
        assert!(tun.send_batch(&mut bad, 4).is_err());
    });
}

#[test]
fn adopts_fds_and_attaches_without_cap_net_admin() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("fd");
    // The init step: a persistent TUN for this user, one owned by someone else, and
    // descriptors opened for the unprivileged process.
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "tiop", "user", "0"]);
    ns.ip(&[
        "tuntap", "add", "mode", "tun", "name", "tiox", "user", "65534",
    ]);
    ns.ip(&["addr", "add", "10.79.0.1/24", "dev", "tiop"]);
    ns.ip(&["link", "set", "tiop", "mtu", "1400", "up"]);
    let plain: OwnedFd = ns.run(|| open_tun_fd("tifd", libc::IFF_TUN | libc::IFF_NO_PI));
    ns.ip(&["addr", "add", "10.80.0.1/24", "dev", "tifd"]);
    ns.ip(&["link", "set", "tifd", "up"]);
    let vnet: OwnedFd =
        ns.run(|| open_tun_fd("tivn", libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR));

    ns.run(move || {
        drop_cap_net_admin();
        let err = Tun::create(&TunConfig::new().name("tinew")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        let err = Tun::attach("tiox", false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");

        // Attached by name: offloads work without the capability.
        let mut t = Tun::attach("tiop", false).unwrap();
        assert!(t.offloads().tso);
        assert_eq!(t.mtu().unwrap(), 1400);
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let to = (Ipv4Addr::new(10, 79, 0, 7), 7000);
        read_until(
            &mut t,
            || drop(s.send_to(b"to persistent", to)),
            |p| parse(p).is_some_and(|pp| pp.payload == b"to persistent"),
        );

        // Adopted descriptor: no virtio header, one packet per read, both directions.
        let mut a = Tun::from_fd(plain).unwrap();
        assert_eq!(a.name(), "tifd");
        assert_eq!(a.offloads(), Offloads::default());
        let to = (Ipv4Addr::new(10, 80, 0, 7), 7000);
        read_until(
            &mut a,
            || drop(s.send_to(b"to adopted", to)),
            |p| parse(p).is_some_and(|pp| pp.payload == b"to adopted"),
        );
        let rx = std::net::UdpSocket::bind("10.80.0.1:7002").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = PacketBatch::new(4, MIN_TUN_HEADROOM, 1500);
        let from = Ipv4Addr::new(10, 80, 0, 7);
        out.push(&ipv4_udp(
            from,
            Ipv4Addr::new(10, 80, 0, 1),
            9000,
            7002,
            b"from adopted",
        ));
        a.send_from(&mut out).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"from adopted");

        // A descriptor with a virtio header, or no TUN at all, is refused.
        let err = Tun::from_fd(vnet).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        assert!(Tun::from_fd(OwnedFd::from(s)).is_err());
    });
}

#[test]
fn multi_queue_device_opens_more_queues() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("mq");
    let shown = ns.run(|| {
        let t = Tun::create(&config().multi_queue(true)).unwrap();
        let q = t.try_clone_queue().unwrap();
        assert_eq!(q.offloads(), t.offloads());
        assert_eq!(q.name(), "tio0");
        let single = Tun::create(&TunConfig::new().name("tio1")).unwrap();
        assert!(single.try_clone_queue().is_err());
        let shown = sh(&["ip", "-d", "link", "show", "tio0"]);
        drop((t, q, single));
        shown
    });
    assert!(shown.contains("multi_queue"), "{shown}");
}

#[test]
fn async_tun_and_udp_move_packets() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("as");
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let tun = Tun::create(&config()).unwrap();
            let _routes = install_routes("tio0", &remote_nets()).unwrap();
            let mut tun = tun.into_async().unwrap();
            assert!(tun.offloads().tso);
            let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap())
                .unwrap()
                .into_async()
                .unwrap();
            let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap())
                .unwrap()
                .into_async()
                .unwrap();

            // TUN -> UDP.
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut batch = PacketBatch::new(TUN_BATCH, 64, 1500);
            let mut pkt = None;
            for _ in 0..25 {
                s.send_to(b"async", (REMOTE_V4, 7000)).unwrap();
                let read =
                    tokio::time::timeout(Duration::from_millis(200), tun.recv_into(&mut batch));
                if let Ok(r) = read.await {
                    r.unwrap();
                    pkt = batch
                        .iter()
                        .find(|p| parse(p).is_some_and(|pp| pp.payload == b"async"))
                        .map(<[u8]>::to_vec);
                    if pkt.is_some() {
                        break;
                    }
                }
            }
            let pkt = pkt.expect("the datagram came out of the TUN");
            let mut g = GsoBatch::new(1 << 16);
            assert!(g.push(rx.local_addr(), None, &pkt));
            assert_eq!(tx.send_batch(&mut g).await.unwrap(), 1);
            let mut rb = UdpRecvBatch::new(4);
            tokio::time::timeout(Duration::from_secs(5), rx.recv_batch(&mut rb))
                .await
                .expect("UDP read timed out")
                .unwrap();
            let d = rb.iter().next().unwrap();
            assert_eq!(d.data, &pkt[..]);
            assert_eq!(d.src, tx.local_addr());
            assert_eq!(d.local_port, rx.local_addr().port());

            // UDP payload -> TUN -> socket.
            let sock = std::net::UdpSocket::bind((TUN_V4, 7003)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut out = PacketBatch::new(4, MIN_TUN_HEADROOM, 1500);
            out.push(&ipv4_udp(REMOTE_V4, TUN_V4, 9000, 7003, b"back"));
            tun.send_from(&mut out).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"back");
        });
    });
}
