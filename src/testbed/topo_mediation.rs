//! The mediation topology of seed 001: a mediation server on a "public" segment and two
//! peers, each behind its own NAT router (MASQUERADE plus the stateful firewall that
//! drops unsolicited inbound, as in [`Topology::nat`](super::Topology::nat)).
//!
//! ```text
//!   a 10.1.0.2 -- ra 10.1.0.1 | 192.0.2.1 ----+
//!                                             |
//!   s 198.51.100.1 ------------------- i (core router: .254 on each segment)
//!                                             |
//!   b 10.2.0.2 -- rb 10.2.0.1 | 203.0.113.1 --+
//! ```
//!
//! The core router `i` only forwards, so traffic between the peers' public addresses
//! never passes the server's namespace. a and b carry [`A_INNER`] and [`B_INNER`] on
//! `lo` for tunnel selectors.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::middlebox::{masquerade_with, Firewall};
use super::netns::Netns;
use super::proc::Proc;
use super::scratch::Scratch;
use super::topo::{
    addr, default_route, host, inner, links_up, v4, veth, Inner, A_INNER, B_INNER, UPLINK,
};
use super::wait::wait_for;

/// Server, two NATed peers and the routers between them; torn down on drop, processes
/// first.
#[derive(Debug)]
pub struct MediationTopology {
    // Drop order is field order: the daemons, then the namespaces, then their files.
    procs: Vec<Proc>,
    s: Netns,
    a: Netns,
    b: Netns,
    routers: Vec<Netns>,
    scratch: Scratch,
    fw: Firewall,
}

impl MediationTopology {
    /// Builds the topology of the module documentation.
    pub fn new() -> io::Result<MediationTopology> {
        Self::build(false)
    }

    /// The same with symmetric NATs: both routers give every flow a new random port
    /// (MASQUERADE `--random-fully`), so no address pair passes the checks.
    pub fn symmetric() -> io::Result<MediationTopology> {
        Self::build(true)
    }

    fn build(random_fully: bool) -> io::Result<MediationTopology> {
        let fw = Firewall::detect();
        let scratch = Scratch::new("esprit-med")?;
        let i = host("esprit-mi")?;
        let s = host("esprit-ms")?;
        let ra = host("esprit-mra")?;
        let rb = host("esprit-mrb")?;
        let a = host("esprit-ma")?;
        let b = host("esprit-mb")?;
        veth((&i, "to-s"), (&s, UPLINK))?;
        veth((&i, "to-ra"), (&ra, "out"))?;
        veth((&i, "to-rb"), (&rb, "out"))?;
        veth((&ra, "in"), (&a, UPLINK))?;
        veth((&rb, "in"), (&b, UPLINK))?;
        addr(&i, "to-s", "198.51.100.254/24")?;
        addr(&i, "to-ra", "192.0.2.254/24")?;
        addr(&i, "to-rb", "203.0.113.254/24")?;
        addr(&s, UPLINK, "198.51.100.1/24")?;
        addr(&ra, "out", "192.0.2.1/24")?;
        addr(&ra, "in", "10.1.0.1/24")?;
        addr(&rb, "out", "203.0.113.1/24")?;
        addr(&rb, "in", "10.2.0.1/24")?;
        addr(&a, UPLINK, "10.1.0.2/24")?;
        addr(&b, UPLINK, "10.2.0.2/24")?;
        links_up(&[
            (&i, "to-s"),
            (&i, "to-ra"),
            (&i, "to-rb"),
            (&s, UPLINK),
            (&ra, "out"),
            (&ra, "in"),
            (&rb, "out"),
            (&rb, "in"),
            (&a, UPLINK),
            (&b, UPLINK),
        ])?;
        i.sysctl("net.ipv4.ip_forward", "1")?;
        default_route(&s, Ipv4Addr::new(198, 51, 100, 254))?;
        for (r, gw) in [
            (&ra, Ipv4Addr::new(192, 0, 2, 254)),
            (&rb, Ipv4Addr::new(203, 0, 113, 254)),
        ] {
            default_route(r, gw)?;
            r.sysctl("net.ipv4.ip_forward", "1")?;
        }
        let ra_dir = scratch.path().join("ra");
        let rb_dir = scratch.path().join("rb");
        std::fs::create_dir_all(&ra_dir)?;
        std::fs::create_dir_all(&rb_dir)?;
        masquerade_with(&ra, "out", fw, &ra_dir, random_fully)?;
        masquerade_with(&rb, "out", fw, &rb_dir, random_fully)?;
        default_route(&a, Ipv4Addr::new(10, 1, 0, 1))?;
        default_route(&b, Ipv4Addr::new(10, 2, 0, 1))?;
        inner(&a, &A_INNER)?;
        inner(&b, &B_INNER)?;
        Ok(MediationTopology {
            procs: Vec::new(),
            s,
            a,
            b,
            routers: vec![i, ra, rb],
            scratch,
            fw,
        })
    }

    /// The server's namespace.
    pub fn s(&self) -> &Netns {
        &self.s
    }

    /// Peer a's namespace (behind router ra).
    pub fn a(&self) -> &Netns {
        &self.a
    }

    /// Peer b's namespace (behind router rb).
    pub fn b(&self) -> &Netns {
        &self.b
    }

    /// The core router, then ra and rb.
    pub fn routers(&self) -> &[Netns] {
        &self.routers
    }

    /// The server's address.
    pub fn s_addr(&self) -> IpAddr {
        v4(198, 51, 100, 1)
    }

    /// Peer a's address, behind its NAT.
    pub fn a_addr(&self) -> IpAddr {
        v4(10, 1, 0, 2)
    }

    /// Peer b's address, behind its NAT.
    pub fn b_addr(&self) -> IpAddr {
        v4(10, 2, 0, 2)
    }

    /// Where the world sees a: its router's outer address.
    pub fn a_public(&self) -> IpAddr {
        v4(192, 0, 2, 1)
    }

    /// Where the world sees b.
    pub fn b_public(&self) -> IpAddr {
        v4(203, 0, 113, 1)
    }

    /// a's inner addresses.
    pub fn a_inner(&self) -> Inner {
        A_INNER
    }

    /// b's inner addresses.
    pub fn b_inner(&self) -> Inner {
        B_INNER
    }

    /// Drops (`true`) or passes again (`false`) every datagram between the two NAT
    /// routers' outer addresses at the core router: the peers then reach each other
    /// only through the server.
    pub fn block_direct(&self, block: bool) -> io::Result<()> {
        let (x, y) = (self.a_public().to_string(), self.b_public().to_string());
        let i = &self.routers[0];
        match self.fw {
            Firewall::Iptables(ipt) => {
                let op = if block { "-I" } else { "-D" };
                for (s, d) in [(&x, &y), (&y, &x)] {
                    i.run(&[ipt, "-w", op, "FORWARD", "-s", s, "-d", d, "-j", "DROP"])?;
                }
                Ok(())
            }
            Firewall::Nft if block => {
                let conf = self.scratch.path().join("block.nft");
                std::fs::write(
                    &conf,
                    format!(
                        "table ip esprit_block {{\n  chain forward {{\n    \
                         type filter hook forward priority -10;\n    \
                         ip saddr {x} ip daddr {y} drop\n    \
                         ip saddr {y} ip daddr {x} drop\n  }}\n}}\n"
                    ),
                )?;
                i.run(&["nft", "-f", &conf.to_string_lossy()]).map(drop)
            }
            Firewall::Nft => i
                .run(&["nft", "delete", "table", "ip", "esprit_block"])
                .map(drop),
        }
    }

    /// a's NAT router forgets a's mappings, as a NAT router whose uplink went down
    /// and up again: MASQUERADE drops the connection tracking entries of a link that
    /// goes down, and this waits (at most `within`) until none is left before the link
    /// and the default route come back. a's next datagram of each flow gets a new
    /// mapping, with a symmetric NAT a new random public port (same public address).
    pub fn forget_a_mappings(&self, within: Duration) -> io::Result<()> {
        let ra = &self.routers[1];
        ra.run(&["ip", "link", "set", "out", "down"])?;
        let gone = wait_for(
            "a's NAT mappings to go",
            within,
            Duration::from_millis(50),
            || {
                let table = ra.run_stdout(&["cat", "/proc/net/nf_conntrack"]).ok()?;
                (!table.lines().any(|l| l.contains(" udp "))).then_some(())
            },
        );
        ra.run(&["ip", "link", "set", "out", "up"])?;
        default_route(ra, Ipv4Addr::new(192, 0, 2, 254))?;
        gone.map_err(io::Error::other)
    }

    /// Links a and b directly (a LAN the server does not know of): a has
    /// 10.3.0.1/24 and b 10.3.0.2/24 on `lan`. Their mediation SAs still leave through
    /// the NATs; only host candidates can find this path.
    pub fn lan_link(&self) -> io::Result<()> {
        veth((&self.a, "lan"), (&self.b, "lan"))?;
        addr(&self.a, "lan", "10.3.0.1/24")?;
        addr(&self.b, "lan", "10.3.0.2/24")?;
        links_up(&[(&self.a, "lan"), (&self.b, "lan")])
    }

    /// A folder for configurations and logs, removed with the topology.
    pub fn dir(&self) -> &std::path::Path {
        self.scratch.path()
    }

    /// Keeps a process until the topology goes (stopped first).
    pub fn adopt(&mut self, p: Proc) {
        self.procs.push(p);
    }
}

impl Drop for MediationTopology {
    fn drop(&mut self) {
        // Processes first: a namespace lives on while a process is inside.
        self.procs.clear();
    }
}
