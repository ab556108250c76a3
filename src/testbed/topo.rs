//! Ready-made topologies: two hosts `a` (the initiator's side) and `b` (the responder's),
//! joined directly, through a NAT router, or through an nginx UDP proxy.
//!
//! Only documentation and private ranges are used (192.0.2.0/24, 198.51.100.0/24,
//! 10.0.0.0/24, fd00::/8), inside namespaces made here. Each end host's link is
//! [`UPLINK`]; each side has inner ("pod") addresses on `lo` ([`A_INNER`], [`B_INNER`])
//! for tunnel selectors such as 10.96.1.0/24 <-> 10.96.2.0/24. No route joins the inner
//! addresses: that is the tunnel's job.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tun_io::netlink::{self, Netlink};

use super::impair::{Impairment, Relay};
use super::middlebox::{masquerade, nginx, Firewall};
use super::netns::Netns;
use super::proc::Proc;
use super::scratch::Scratch;
use super::wait::wait_for;

/// The name of an end host's link toward the other side (or the middle box).
pub const UPLINK: &str = "eth0";

/// How long setup waits for a link, an address or a daemon.
const SETUP_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// The inner ("pod") addresses of one side, on its `lo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    /// Two IPv4 addresses, in 10.96.x.0/24 and 10.97.x.0/24, for two child SAs.
    pub v4: [Ipv4Addr; 2],
    /// One IPv6 address, in fd00:96:x::/48.
    pub v6: Ipv6Addr,
}

/// Side a's inner addresses: 10.96.1.1, 10.97.1.1, fd00:96:1::1.
pub const A_INNER: Inner = Inner {
    v4: [Ipv4Addr::new(10, 96, 1, 1), Ipv4Addr::new(10, 97, 1, 1)],
    v6: Ipv6Addr::new(0xfd00, 0x96, 1, 0, 0, 0, 0, 1),
};

/// Side b's inner addresses: 10.96.2.1, 10.97.2.1, fd00:96:2::1.
pub const B_INNER: Inner = Inner {
    v4: [Ipv4Addr::new(10, 96, 2, 1), Ipv4Addr::new(10, 97, 2, 1)],
    v6: Ipv6Addr::new(0xfd00, 0x96, 2, 0, 0, 0, 0, 1),
};

/// Which shape a [`Topology`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// a and b on one veth.
    Direct,
    /// a behind a masquerading router r.
    Nat,
    /// a and b on two links of a proxy p that relays UDP 500 and 4500 with nginx.
    Proxy,
    /// Like [`Kind::Proxy`], with an impairing userspace relay ([`Relay`]) instead of
    /// nginx.
    Impaired,
}

/// Two hosts and what joins them; everything is torn down on drop, processes first.
#[derive(Debug)]
pub struct Topology {
    // Drop order is field order: the daemons, then the namespaces, then their files.
    procs: Vec<Proc>,
    relay: Option<Relay>,
    a: Netns,
    b: Netns,
    middle: Option<Netns>,
    kind: Kind,
    a_addr: IpAddr,
    a_addr_for_b: IpAddr,
    b_addr: IpAddr,
    b_addr_for_a: IpAddr,
    v6: Option<(Ipv6Addr, Ipv6Addr)>,
    scratch: Scratch,
}

impl Topology {
    /// a=192.0.2.1/24 and b=192.0.2.2/24 on one veth; with `v6` also fd00:0:2::1/64 and
    /// fd00:0:2::2/64 (usable at once: no duplicate address detection).
    pub fn direct(v6: bool) -> io::Result<Topology> {
        let scratch = Scratch::new("esprit-topo")?;
        let a = host("esprit-a")?;
        let b = host("esprit-b")?;
        veth((&a, UPLINK), (&b, UPLINK))?;
        addr(&a, UPLINK, "192.0.2.1/24")?;
        addr(&b, UPLINK, "192.0.2.2/24")?;
        let v6_addrs = if v6 {
            addr(&a, UPLINK, "fd00:0:2::1/64")?;
            addr(&b, UPLINK, "fd00:0:2::2/64")?;
            let a6 = Ipv6Addr::new(0xfd00, 0, 2, 0, 0, 0, 0, 1);
            let b6 = Ipv6Addr::new(0xfd00, 0, 2, 0, 0, 0, 0, 2);
            Some((a6, b6))
        } else {
            None
        };
        links_up(&[(&a, UPLINK), (&b, UPLINK)])?;
        inner(&a, &A_INNER)?;
        inner(&b, &B_INNER)?;
        if v6 {
            no_tentative(&a)?;
            no_tentative(&b)?;
        }
        let (a4, b4) = (v4(192, 0, 2, 1), v4(192, 0, 2, 2));
        Ok(Topology {
            procs: Vec::new(),
            relay: None,
            a,
            b,
            middle: None,
            kind: Kind::Direct,
            a_addr: a4,
            a_addr_for_b: a4,
            b_addr: b4,
            b_addr_for_a: b4,
            v6: v6_addrs,
            scratch,
        })
    }

    /// a=10.0.0.2/24 behind router r (10.0.0.1/24 inside, 192.0.2.1/24 outside) toward
    /// b=192.0.2.2/24. r forwards and masquerades out of its outer link, with the
    /// stateful firewall of a real NAT: inbound on the outer link only for established
    /// or related flows. b has no route to 10.0.0.0/24.
    pub fn nat() -> io::Result<Topology> {
        Topology::nat_with(Firewall::detect())
    }

    fn nat_with(fw: Firewall) -> io::Result<Topology> {
        let scratch = Scratch::new("esprit-topo")?;
        let a = host("esprit-a")?;
        let r = host("esprit-r")?;
        let b = host("esprit-b")?;
        veth((&a, UPLINK), (&r, "to-a"))?;
        veth((&r, "to-b"), (&b, UPLINK))?;
        addr(&a, UPLINK, "10.0.0.2/24")?;
        addr(&r, "to-a", "10.0.0.1/24")?;
        addr(&r, "to-b", "192.0.2.1/24")?;
        addr(&b, UPLINK, "192.0.2.2/24")?;
        links_up(&[(&a, UPLINK), (&r, "to-a"), (&r, "to-b"), (&b, UPLINK)])?;
        default_route(&a, Ipv4Addr::new(10, 0, 0, 1))?;
        r.sysctl("net.ipv4.ip_forward", "1")?;
        masquerade(&r, "to-b", fw, scratch.path())?;
        inner(&a, &A_INNER)?;
        inner(&b, &B_INNER)?;
        Ok(Topology {
            procs: Vec::new(),
            relay: None,
            a,
            b,
            middle: Some(r),
            kind: Kind::Nat,
            a_addr: v4(10, 0, 0, 2),
            a_addr_for_b: v4(192, 0, 2, 1),
            b_addr: v4(192, 0, 2, 2),
            b_addr_for_a: v4(192, 0, 2, 2),
            v6: None,
            scratch,
        })
    }

    /// a=192.0.2.1/24 and p=192.0.2.254/24 on one veth, p=198.51.100.254/24 and
    /// b=198.51.100.2/24 on another. p does not forward IP; nginx on p relays UDP
    /// 192.0.2.254:500 and :4500 to b's, so a dials 192.0.2.254 and b sees a as
    /// 198.51.100.254, with one ephemeral port for 500 and another for 4500.
    pub fn proxy() -> io::Result<Topology> {
        Topology::relayed(None)
    }

    /// The [`proxy`](Topology::proxy) shape with an impairing UDP relay on p instead of
    /// nginx: loss, reordering and duplication as `impairment` says, both ways, on IKE
    /// and ESP alike ([`Topology::relay`] reads its counters and changes it).
    pub fn impaired(impairment: Impairment) -> io::Result<Topology> {
        Topology::relayed(Some(impairment))
    }

    fn relayed(impairment: Option<Impairment>) -> io::Result<Topology> {
        let scratch = Scratch::new("esprit-topo")?;
        let a = host("esprit-a")?;
        let p = host("esprit-p")?;
        let b = host("esprit-b")?;
        veth((&a, UPLINK), (&p, "to-a"))?;
        veth((&p, "to-b"), (&b, UPLINK))?;
        addr(&a, UPLINK, "192.0.2.1/24")?;
        addr(&p, "to-a", "192.0.2.254/24")?;
        addr(&p, "to-b", "198.51.100.254/24")?;
        addr(&b, UPLINK, "198.51.100.2/24")?;
        links_up(&[(&a, UPLINK), (&p, "to-a"), (&p, "to-b"), (&b, UPLINK)])?;
        p.sysctl("net.ipv4.ip_forward", "0")?;
        inner(&a, &A_INNER)?;
        inner(&b, &B_INNER)?;
        let (listen, out, upstream) = (
            v4(192, 0, 2, 254),
            v4(198, 51, 100, 254),
            v4(198, 51, 100, 2),
        );
        let (procs, relay, kind) = match impairment {
            None => (
                vec![nginx(&p, &scratch, "192.0.2.254", "198.51.100.2")?],
                None,
                Kind::Proxy,
            ),
            Some(imp) => (
                Vec::new(),
                Some(Relay::start(&p, listen, out, upstream, imp)?),
                Kind::Impaired,
            ),
        };
        Ok(Topology {
            procs,
            relay,
            a,
            b,
            middle: Some(p),
            kind,
            a_addr: v4(192, 0, 2, 1),
            a_addr_for_b: out,
            b_addr: upstream,
            b_addr_for_a: listen,
            v6: None,
            scratch,
        })
    }

    /// The impairing relay ([`Kind::Impaired`]).
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    /// The shape.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Host a, the initiator's side.
    pub fn a(&self) -> &Netns {
        &self.a
    }

    /// Host b, the responder's side.
    pub fn b(&self) -> &Netns {
        &self.b
    }

    /// The NAT router ([`Kind::Nat`]) or the proxy ([`Kind::Proxy`]).
    pub fn middle(&self) -> Option<&Netns> {
        self.middle.as_ref()
    }

    /// a's own outer IPv4 address (a's `local_addrs`).
    pub fn a_addr(&self) -> IpAddr {
        self.a_addr
    }

    /// The address b sees a's packets come from: a's own, the router's outer address, or
    /// the proxy's address on b's side (b's `remote_addrs`).
    pub fn a_addr_for_b(&self) -> IpAddr {
        self.a_addr_for_b
    }

    /// b's own outer IPv4 address (b's `local_addrs`).
    pub fn b_addr(&self) -> IpAddr {
        self.b_addr
    }

    /// The address a must dial to reach b: b's own, or the proxy's (a's `remote_addrs`).
    pub fn b_addr_for_a(&self) -> IpAddr {
        self.b_addr_for_a
    }

    /// a's outer IPv6 address (direct topology made with `v6`).
    pub fn a_addr6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|(a, _)| a)
    }

    /// b's outer IPv6 address (direct topology made with `v6`).
    pub fn b_addr6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|(_, b)| b)
    }

    /// a's inner addresses ([`A_INNER`]).
    pub fn a_inner(&self) -> Inner {
        A_INNER
    }

    /// b's inner addresses ([`B_INNER`]).
    pub fn b_inner(&self) -> Inner {
        B_INNER
    }

    /// A scratch directory for configurations and logs, removed with the topology.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The processes the topology runs itself (nginx on the proxy).
    pub fn procs(&mut self) -> &mut [Proc] {
        &mut self.procs
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Processes first: a namespace lives on while a process is inside.
        self.procs.clear();
        self.relay = None;
    }
}

pub(super) fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A namespace whose interfaces, created after this, skip duplicate address detection,
/// so IPv6 addresses (link-local ones too) are usable at once.
pub(super) fn host(prefix: &str) -> io::Result<Netns> {
    let ns = Netns::new(prefix)?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    Ok(ns)
}

/// A veth pair with one end in each namespace (names are per namespace, <= 15 bytes),
/// both ends up. Made over netlink inside `x` (`ip link add X type veth peer name Y
/// netns NS`), so no tool is needed.
pub(super) fn veth((x, x_if): (&Netns, &str), (y, y_if): (&Netns, &str)) -> io::Result<()> {
    let y_file = File::open(y.path())?;
    let y_fd = y_file.as_raw_fd();
    x.enter(|| {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(y_if.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(y_fd));
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::IfName(x_if.to_string()));
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let mut nl = Netlink::open()?;
        nl.request(RouteNetlinkMessage::NewLink(link), netlink::CREATE)
            .map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                    " (the kernel has no veth driver, CONFIG_VETH)"
                } else {
                    ""
                };
                io::Error::new(e.kind(), format!("creating veth {x_if}/{y_if}: {e}{hint}"))
            })?;
        nl.set_up(x_if)
    })??;
    drop(y_file);
    y.enter(|| Netlink::open()?.set_up(y_if))?
}

pub(super) fn addr(ns: &Netns, dev: &str, cidr: &str) -> io::Result<()> {
    let net: IpNet = cidr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{cidr}: {e}")))?;
    ns.enter(|| Netlink::open()?.add_address(dev, net))?
}

/// `ip route add default via GATEWAY` in `ns`.
pub(super) fn default_route(ns: &Netns, gateway: Ipv4Addr) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    ns.enter(|| {
        Netlink::open()?
            .request(RouteNetlinkMessage::NewRoute(msg), netlink::CREATE)
            .map_err(|e| io::Error::new(e.kind(), format!("default route via {gateway}: {e}")))
    })?
}

pub(super) fn inner(ns: &Netns, inner: &Inner) -> io::Result<()> {
    for v4 in inner.v4 {
        addr(ns, "lo", &format!("{v4}/32"))?;
    }
    addr(ns, "lo", &format!("{}/128", inner.v6))
}

/// Waits until every link reports carrier and is up.
pub(super) fn links_up(links: &[(&Netns, &str)]) -> io::Result<()> {
    for (ns, dev) in links {
        let what = format!("{dev} in {} to come up", ns.name());
        let mut nl = ns.enter(Netlink::open)??;
        wait_for(&what, SETUP_WAIT, POLL, || {
            let l = nl.link_state(dev).ok()?;
            (l.up && l.lower_up).then_some(())
        })?;
    }
    Ok(())
}

/// Waits until no IPv6 address of the namespace is tentative.
fn no_tentative(ns: &Netns) -> io::Result<()> {
    let what = format!("IPv6 addresses in {} to leave tentative", ns.name());
    let mut nl = ns.enter(Netlink::open)??;
    wait_for(&what, SETUP_WAIT, POLL, || {
        let addrs = nl.addresses(None).ok()?;
        addrs.iter().all(|(_, a)| !a.tentative).then_some(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::netns::run_checked;
    use super::super::probe::{ping, tcp_transfer};
    use super::*;
    use std::net::{SocketAddr, TcpStream, UdpSocket};
    use std::process::Command;

    fn namespaces() -> String {
        let out = run_checked(Command::new("ip").args(["netns", "list"])).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn direct_carries_50_mb_and_ipv6_and_cleans_up() {
        let topo = Topology::direct(true).unwrap();
        let names = [topo.a().name().to_string(), topo.b().name().to_string()];
        let t = tcp_transfer(
            topo.a(),
            topo.b(),
            topo.b_addr_for_a(),
            5001,
            50_000_000,
            Duration::from_secs(60),
        )
        .unwrap();
        eprintln!(
            "50 MB over plain veth: {:?} ({:.1} Gbit/s)",
            t.elapsed,
            t.gbit_per_s()
        );
        assert_eq!(t.bytes, 50_000_000);
        assert_eq!(t.sent_sha256, t.recv_sha256);
        let b6 = IpAddr::V6(topo.b_addr6().unwrap());
        assert!(ping(topo.a(), b6, 2, Duration::from_secs(5)));
        let t6 = tcp_transfer(
            topo.a(),
            topo.b(),
            b6,
            5002,
            1 << 20,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(t6.sent_sha256, t6.recv_sha256);
        // Inner addresses are not routed: only the tunnel joins them.
        assert!(!ping(
            topo.a(),
            IpAddr::V4(B_INNER.v4[0]),
            1,
            Duration::from_secs(1)
        ));
        drop(topo);
        let left = namespaces();
        assert!(names.iter().all(|n| !left.contains(n.as_str())), "{left}");
    }

    #[test]
    fn nat_masquerades_a_and_hides_it_from_b() {
        let topo = Topology::nat().unwrap();
        let b_side = SocketAddr::new(topo.b_addr_for_a(), 5003);
        let listener = topo
            .b()
            .enter(|| std::net::TcpListener::bind(b_side))
            .unwrap()
            .unwrap();
        let client = topo
            .a()
            .enter(|| TcpStream::connect_timeout(&b_side, Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), topo.a_addr_for_b());
        assert_eq!(client.local_addr().unwrap().ip(), topo.a_addr());
        let t = tcp_transfer(
            topo.a(),
            topo.b(),
            topo.b_addr(),
            5004,
            1 << 20,
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(t.sent_sha256, t.recv_sha256);
        let hidden = SocketAddr::new(topo.a_addr(), 5005);
        let reached = topo
            .b()
            .enter(|| TcpStream::connect_timeout(&hidden, Duration::from_secs(1)))
            .unwrap();
        assert!(reached.is_err());
        assert!(!ping(topo.b(), topo.a_addr(), 1, Duration::from_secs(1)));
        // The router's outer address answers nothing that b starts (stateful firewall).
        assert!(!ping(
            topo.b(),
            topo.a_addr_for_b(),
            1,
            Duration::from_secs(1)
        ));
    }

    #[test]
    fn nat_with_nft_masquerades_too() {
        let topo = Topology::nat_with(Firewall::Nft).unwrap();
        let ruleset = topo
            .middle()
            .unwrap()
            .run_stdout(&["nft", "list", "ruleset"]);
        assert!(ruleset.unwrap().contains("masquerade"));
        let b_side = SocketAddr::new(topo.b_addr_for_a(), 5006);
        let listener = topo
            .b()
            .enter(|| std::net::TcpListener::bind(b_side))
            .unwrap()
            .unwrap();
        let _client = topo
            .a()
            .enter(|| TcpStream::connect_timeout(&b_side, Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        assert_eq!(listener.accept().unwrap().1.ip(), topo.a_addr_for_b());
        assert!(!ping(
            topo.b(),
            topo.a_addr_for_b(),
            1,
            Duration::from_secs(1)
        ));
    }

    #[test]
    fn a_panic_removes_namespaces_processes_and_files() {
        let mut seen = None;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut topo = Topology::proxy().unwrap();
            let names: Vec<String> = [topo.a(), topo.b(), topo.middle().unwrap()]
                .iter()
                .map(|ns| ns.name().to_string())
                .collect();
            seen = Some((names, topo.procs()[0].pid(), topo.dir().to_path_buf()));
            panic!("test failure with a live topology");
        }));
        assert!(caught.is_err());
        let (names, nginx, dir) = seen.unwrap();
        let left = namespaces();
        assert!(names.iter().all(|n| !left.contains(n.as_str())), "{left}");
        assert!(!Path::new(&format!("/proc/{nginx}")).exists());
        assert!(!dir.exists() || std::env::var_os(super::super::scratch::KEEP_ENV).is_some());
    }

    #[test]
    fn proxy_relays_udp_500_from_its_own_address() {
        let topo = Topology::proxy().unwrap();
        let recv = topo
            .b()
            .enter(|| UdpSocket::bind(SocketAddr::new(topo.b_addr(), 500)))
            .unwrap()
            .unwrap();
        recv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let send = topo
            .a()
            .enter(|| UdpSocket::bind((topo.a_addr(), 0)))
            .unwrap()
            .unwrap();
        send.send_to(b"sa_init", (topo.b_addr_for_a(), 500))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = recv.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"sa_init");
        assert_eq!(from.ip(), topo.a_addr_for_b());
        // The answer goes back through the proxy to a.
        recv.send_to(b"reply", from).unwrap();
        send.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (n, back) = send.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"reply");
        assert_eq!(back, SocketAddr::new(topo.b_addr_for_a(), 500));
        // p does not route: a cannot reach b's network directly.
        assert!(!ping(topo.a(), topo.b_addr(), 1, Duration::from_secs(1)));
    }
}
