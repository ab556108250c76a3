//! A hub and its clients: client `i` is a namespace whose [`UPLINK`] is joined to the
//! hub's link `c<i>` by its own veth, 10.200.i.2/24 on the client's end and 10.200.i.1/24
//! on the hub's. The shape of seed 003: pods that each reach one server.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::netns::Netns;
use super::scratch::Scratch;
use super::topo::{addr, host, links_up, veth, UPLINK};

/// The most clients: one /24 of 10.200.0.0/16 each.
pub const MAX_CLIENTS: usize = 250;

/// A hub namespace with `n` client namespaces; all removed on drop (stop the processes
/// in them first).
#[derive(Debug)]
pub struct Star {
    // Drop order is field order: the namespaces, then their files.
    clients: Vec<Netns>,
    hub: Netns,
    scratch: Scratch,
}

impl Star {
    /// Makes the hub and `n` clients (at most [`MAX_CLIENTS`]), links up.
    pub fn new(n: usize) -> io::Result<Star> {
        if n > MAX_CLIENTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {MAX_CLIENTS} clients"),
            ));
        }
        let scratch = Scratch::new("esprit-star")?;
        let hub = host("esprit-hub")?;
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let c = host(&format!("esprit-c{i}"))?;
            let link = format!("c{i}");
            veth((&hub, &link), (&c, UPLINK))?;
            addr(&hub, &link, &format!("10.200.{i}.1/24"))?;
            addr(&c, UPLINK, &format!("10.200.{i}.2/24"))?;
            links_up(&[(&hub, &link), (&c, UPLINK)])?;
            clients.push(c);
        }
        Ok(Star {
            clients,
            hub,
            scratch,
        })
    }

    /// The hub.
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// Client `i`.
    pub fn client(&self, i: usize) -> &Netns {
        &self.clients[i]
    }

    /// How many clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// No clients.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The hub's address on client `i`'s link.
    pub fn hub_addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 200, i as u8, 1))
    }

    /// Client `i`'s address.
    pub fn client_addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 200, i as u8, 2))
    }

    /// Adds `cidr` to `dev` in `ns` (an inner address on `lo`, say).
    pub fn add_address(ns: &Netns, dev: &str, cidr: &str) -> io::Result<()> {
        addr(ns, dev, cidr)
    }

    /// A scratch directory for configurations and logs, removed on drop.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }
}
