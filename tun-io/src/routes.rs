//! Routes for remote subnets through the TUN device, via rtnetlink.
//!
//! [`install_routes`] adds one device route per subnet (`ip route replace NET dev TUN
//! table main proto static`) and returns a [`RouteGuard`] that deletes exactly those
//! routes when dropped. The guard keeps its netlink socket, so it removes the routes in
//! the network namespace they were added in, whichever thread drops it.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::Netlink;
use crate::sys::if_index;

/// The main routing table (`RT_TABLE_MAIN`).
pub const TABLE_MAIN: u32 = 254;

/// Routes this process installed; dropping the guard removes them.
#[derive(Debug)]
pub struct RouteGuard {
    nl: Netlink,
    ifindex: u32,
    table: u32,
    /// A set: a daemon with tens of thousands of child SAs holds as many routes, and
    /// each add or remove must not search a list.
    routes: HashSet<IpNet>,
}

/// Installs a route through `ifname` for each of `nets` in the main table.
pub fn install_routes(ifname: &str, nets: &[IpNet]) -> io::Result<RouteGuard> {
    install_routes_in(ifname, nets, TABLE_MAIN)
}

/// Installs a route through `ifname` for each of `nets` in routing table `table`.
///
/// All or nothing: if one route fails, those already added are removed again.
pub fn install_routes_in(ifname: &str, nets: &[IpNet], table: u32) -> io::Result<RouteGuard> {
    let ifindex = if_index(ifname)?;
    let mut guard = RouteGuard {
        nl: Netlink::open()?,
        ifindex,
        table,
        routes: HashSet::with_capacity(nets.len()),
    };
    for net in nets {
        guard.add(*net)?;
    }
    Ok(guard)
}

impl RouteGuard {
    /// The routes held, in order.
    pub fn routes(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.routes.iter().copied().collect();
        v.sort();
        v
    }

    /// Adds one more route through the same device and table.
    pub fn add(&mut self, net: IpNet) -> io::Result<()> {
        self.add_with_src(net, None)
    }

    /// Adds a route whose packets get `src` as source address when the sending socket
    /// did not pick one (`ip route replace NET dev TUN src SRC`).
    ///
    /// A TUN device usually has no address of its own, so without a hint the kernel
    /// would pick the outer address, which the tunnel's traffic selectors do not cover;
    /// strongSwan sets the same hint from the local subnet.
    pub fn add_with_src(&mut self, net: IpNet, src: Option<IpAddr>) -> io::Result<()> {
        let net = net.trunc();
        let mut msg = route_message(net, self.ifindex, self.table);
        if let Some(src) = src.filter(|s| s.is_ipv4() == net.addr().is_ipv4()) {
            msg.attributes.push(RouteAttribute::PrefSource(match src {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
        }
        self.nl.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        self.routes.insert(net);
        Ok(())
    }

    /// Removes one route this guard holds.
    pub fn remove_route(&mut self, net: IpNet) -> io::Result<()> {
        let net = net.trunc();
        if !self.routes.remove(&net) {
            return Err(io::ErrorKind::NotFound.into());
        }
        self.delete(net)
    }

    /// Removes every route now and reports the first failure (drop does the same silently).
    pub fn remove(mut self) -> io::Result<()> {
        self.remove_all()
    }

    fn delete(&mut self, net: IpNet) -> io::Result<()> {
        let msg = route_message(net, self.ifindex, self.table);
        match self.nl.request(
            RouteNetlinkMessage::DelRoute(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        ) {
            // Gone already, e.g. with its device: nothing left to undo.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENODEV)) => Ok(()),
            r => r,
        }
    }

    fn remove_all(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for net in std::mem::take(&mut self.routes) {
            if let Err(e) = self.delete(net) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            tracing::warn!("removing routes via ifindex {}: {e}", self.ifindex);
        }
    }
}

fn route_message(net: IpNet, ifindex: u32, table: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: match net {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        },
        destination_prefix_length: net.prefix_len(),
        // Tables past 255 travel in RTA_TABLE only.
        table: u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::Static,
        scope: RouteScope::Link,
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    let dst = match net.addr() {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    };
    msg.attributes = vec![
        RouteAttribute::Destination(dst),
        RouteAttribute::Oif(ifindex),
        RouteAttribute::Table(table),
    ];
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_message_for_v4_and_v6() {
        let m = route_message("10.96.2.7/24".parse::<IpNet>().unwrap().trunc(), 7, 254);
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.table, 254);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                [10, 96, 2, 0].into()
            ))));
        let m = route_message("fd00::/64".parse().unwrap(), 7, 1000);
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
    }
}
