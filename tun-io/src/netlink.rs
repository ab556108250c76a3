//! A blocking rtnetlink socket, and the link and address operations esprit needs
//! without the `ip` tool: bring a link up, add or remove an address, read a link's state and an
//! interface's addresses.
//!
//! The socket belongs to the network namespace of the thread that opened it, for its
//! whole life: open it on a thread that has joined a namespace to work inside that one.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Flags of a request that creates something new and must not replace an existing one.
pub const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request that changes or deletes something.
pub const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// A link's administrative and carrier state (`ip link show`'s `UP` and `LOWER_UP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// The interface index.
    pub index: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The driver reports carrier (`IFF_LOWER_UP`).
    pub lower_up: bool,
}

/// One address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The address with its prefix length.
    pub net: IpNet,
    /// IPv6 duplicate address detection has not finished (`IFA_F_TENTATIVE`).
    pub tentative: bool,
}

/// A blocking rtnetlink socket that sends one request at a time and waits for its answer.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends `inner` with `flags` (e.g. [`CREATE`], [`CHANGE`]) and waits for the
    /// kernel's acknowledgement; a negative one is the error it names.
    pub fn request(&mut self, inner: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(inner, flags, |_| ())
    }

    /// Sends a dump request for `inner` and returns every message of the answer.
    pub fn dump(&mut self, inner: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        self.exchange(inner, NLM_F_REQUEST | NLM_F_DUMP, |m| out.push(m))?;
        Ok(out)
    }

    /// Sends one request and reads answers to it until its end: an error or
    /// acknowledgement, or the end of a dump. Other payloads go to `each`.
    fn exchange(
        &mut self,
        inner: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(inner));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        loop {
            let (reply, _) = self.sock.recv_from_full()?;
            let mut rest = &reply[..];
            while !rest.is_empty() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (m.header.length as usize).clamp(1, rest.len());
                rest = &rest[len..];
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(()),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
        }
    }

    /// Sets link `name` administratively up (`ip link set NAME up`).
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.link_state(name)?.index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), CHANGE)
            .map_err(|e| context(e, format!("setting {name} up")))
    }

    /// Adds `net` to link `name` (`ip addr add NET dev NAME nodad`): IPv6 addresses skip
    /// duplicate address detection, so they are usable at once.
    pub fn add_address(&mut self, name: &str, net: IpNet) -> io::Result<()> {
        let msg = self.named_address_message(name, net)?;
        self.request(RouteNetlinkMessage::NewAddress(msg), CREATE)
            .map_err(|e| context(e, format!("adding {net} to {name}")))
    }

    /// [`Netlink::add_address`] without the prefix route the kernel would add
    /// (`noprefixroute`): the prefix is routed elsewhere (through a tunnel).
    pub fn add_address_noprefixroute(&mut self, name: &str, net: IpNet) -> io::Result<()> {
        let mut msg = self.named_address_message(name, net)?;
        for a in &mut msg.attributes {
            if let AddressAttribute::Flags(f) = a {
                *f |= AddressFlags::Noprefixroute;
            }
        }
        self.request(RouteNetlinkMessage::NewAddress(msg), CREATE)
            .map_err(|e| context(e, format!("adding {net} to {name}")))
    }

    /// Has the kernel announce again (an `RTM_NEWADDR` to every listener) each address of
    /// `nets` that link `name` still has, provided it is still the link with interface
    /// index `index` (not one made since under the same name); returns how many were
    /// announced. The address is replaced by itself, as `ip addr replace` does, so
    /// nothing changes but the notice. For routing daemons that can miss the first one:
    /// FRR's zebra before 9.0 drops an address whose notice it handles before the new
    /// link's (FRR issue 13288), and its BGP sessions over that link then never come up.
    pub fn reannounce_addresses(
        &mut self,
        name: &str,
        index: u32,
        nets: &[IpNet],
    ) -> io::Result<usize> {
        if self.link_state(name)?.index != index {
            return Ok(0);
        }
        let have = self.addresses(Some(index))?;
        let mut n = 0;
        for net in nets
            .iter()
            .filter(|n| have.iter().any(|(_, a)| a.net == **n))
        {
            let msg = address_message(index, *net);
            self.request(
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE,
            )
            .map_err(|e| context(e, format!("announcing {net} on {name}")))?;
            n += 1;
        }
        Ok(n)
    }

    /// Removes `net` from link `name` (`ip addr del NET dev NAME`).
    pub fn remove_address(&mut self, name: &str, net: IpNet) -> io::Result<()> {
        let msg = self.named_address_message(name, net)?;
        self.request(RouteNetlinkMessage::DelAddress(msg), CHANGE)
            .map_err(|e| context(e, format!("removing {net} from {name}")))
    }

    fn named_address_message(&mut self, name: &str, net: IpNet) -> io::Result<AddressMessage> {
        let index = self.link_state(name)?.index;
        Ok(address_message(index, net))
    }

    /// The state of link `name` in the socket's namespace (looked up by name over
    /// netlink, not with `if_nametoindex`, which asks the calling thread's namespace).
    pub fn link_state(&mut self, name: &str) -> io::Result<LinkState> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answer = self
            .get(RouteNetlinkMessage::GetLink(msg))
            .map_err(|e| context(e, format!("link {name}")))?;
        let Some(RouteNetlinkMessage::NewLink(link)) = answer else {
            return Err(io::Error::other(format!("no answer about link {name}")));
        };
        Ok(LinkState {
            index: link.header.index,
            up: link.header.flags.contains(LinkFlags::Up),
            lower_up: link.header.flags.contains(LinkFlags::LowerUp),
        })
    }

    /// The addresses of every interface, or of the interface with index `index`.
    pub fn addresses(&mut self, index: Option<u32>) -> io::Result<Vec<(u32, Address)>> {
        let mut out = Vec::new();
        for m in self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
            let mut addr = None;
            let mut tentative = a.header.flags.contains(AddressHeaderFlags::Tentative);
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Address(ip) => addr = Some(*ip),
                    AddressAttribute::Flags(f) => tentative |= f.contains(AddressFlags::Tentative),
                    _ => {}
                }
            }
            if let Some(net) = addr.and_then(|ip| IpNet::new(ip, a.header.prefix_len).ok()) {
                out.push((a.header.index, Address { net, tentative }));
            }
        }
        Ok(out)
    }

    /// Sends a get request and returns the single object in the answer.
    fn get(&mut self, inner: RouteNetlinkMessage) -> io::Result<Option<RouteNetlinkMessage>> {
        let mut found = None;
        // With an ACK asked for, the kernel ends the answer with one, so the wait ends.
        self.exchange(inner, CHANGE, |m| found = Some(m))?;
        Ok(found)
    }
}

/// An address message for `net` on interface `index`, with IPv6 duplicate address
/// detection off (`nodad`).
fn address_message(index: u32, net: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(net.addr());
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.header.scope = if net.addr().is_loopback() {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    msg.header.flags = AddressHeaderFlags::Nodad;
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    msg.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    msg
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
