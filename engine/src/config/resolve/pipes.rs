//! `[netstack]` and `[pipes.NAME]`: the userspace stack's addresses and the forwarders
//! that run through it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Cx;
use crate::config::{ConfigError, NetstackSection, PipeSection};

/// Most pipes in one daemon (each is a listener and its counters).
const MAX_PIPES: usize = 256;

/// `[netstack]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netstack {
    /// Our inner addresses; empty: the virtual IPs the peer assigns.
    pub addrs: Vec<IpAddr>,
    /// The largest inner packet the stack sends.
    pub mtu: u16,
    /// TCP buffer bytes per connection, each way.
    pub tcp_buffer: usize,
}

/// A pipe's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipeProto {
    /// A TCP stream per connection.
    Tcp,
    /// UDP datagrams, a flow per client address.
    Udp,
}

/// Where a pipe's connections go: an address, or a name the connecting side resolves
/// at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeRemote {
    /// An address and port.
    Addr(SocketAddr),
    /// A DNS name and port.
    Name(String, u16),
}

impl fmt::Display for PipeRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeRemote::Addr(a) => write!(f, "{a}"),
            PipeRemote::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// `[pipes.NAME]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipe {
    /// The section name.
    pub name: String,
    /// TCP or UDP.
    pub proto: PipeProto,
    /// Listens inside the tunnel (on a netstack address) and connects on the host.
    pub reverse: bool,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Where its connections go.
    pub remote: PipeRemote,
    /// Most connections (UDP: flows) at once.
    pub max_connections: usize,
    /// Idle connections (flows) close after this.
    pub idle_timeout: Duration,
}

/// Resolves the netstack section and the pipes.
pub(super) fn resolve(
    cx: &Cx<'_>,
    ns: Option<&NetstackSection>,
    pipes: &BTreeMap<String, PipeSection>,
) -> Result<(Option<Netstack>, Vec<Pipe>), ConfigError> {
    let netstack = ns.map(|n| netstack(cx, n)).transpose()?;
    if pipes.len() > MAX_PIPES {
        return Err(cx.err(
            "pipes",
            format!("{} pipes; at most {MAX_PIPES}", pipes.len()),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, p) in pipes {
        let pipe = pipe(cx, name, p, netstack.as_ref())?;
        if !seen.insert((pipe.proto, pipe.reverse, pipe.listen)) {
            return Err(cx.err(
                &format!("pipes.{name}.listen"),
                format!("{} is also another pipe's listen address", pipe.listen),
            ));
        }
        out.push(pipe);
    }
    Ok((netstack, out))
}

fn netstack(cx: &Cx<'_>, n: &NetstackSection) -> Result<Netstack, ConfigError> {
    let addrs = n
        .addrs
        .iter()
        .map(|a| {
            let ip: IpAddr = a.trim().parse().map_err(|e| {
                cx.err("netstack.addrs", format!("'{a}' is not an IP address: {e}"))
            })?;
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(cx.err("netstack.addrs", format!("{ip} cannot be a host address")));
            }
            Ok(ip)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // smoltcp holds a fixed number of interface addresses (its iface-max-addr-count).
    if addrs.len() > 8 {
        return Err(cx.err("netstack.addrs", "at most 8 addresses"));
    }
    if !(576..=9000).contains(&n.mtu) {
        return Err(cx.err("netstack.mtu", format!("{} is outside 576..9000", n.mtu)));
    }
    if !(4096..=16 << 20).contains(&n.tcp_buffer) {
        return Err(cx.err(
            "netstack.tcp_buffer",
            format!("{} bytes is outside 4096..16777216", n.tcp_buffer),
        ));
    }
    Ok(Netstack {
        addrs,
        mtu: n.mtu,
        tcp_buffer: n.tcp_buffer,
    })
}

fn pipe(
    cx: &Cx<'_>,
    name: &str,
    p: &PipeSection,
    ns: Option<&Netstack>,
) -> Result<Pipe, ConfigError> {
    let at = |field: &str| format!("pipes.{name}.{field}");
    let Some(ns) = ns else {
        return Err(cx.err(
            &at("listen"),
            "a pipe needs a [netstack] section (pipes run through esprit's own TCP/IP stack)",
        ));
    };
    let proto = match p.proto.as_str() {
        "tcp" => PipeProto::Tcp,
        "udp" => PipeProto::Udp,
        other => return Err(cx.err(&at("proto"), format!("'{other}': tcp or udp"))),
    };
    let listen: SocketAddr = p.listen.trim().parse().map_err(|e| {
        cx.err(
            &at("listen"),
            format!("'{}' is not an address:port: {e}", p.listen),
        )
    })?;
    if listen.port() == 0 {
        return Err(cx.err(&at("listen"), "port 0 is not a port to listen on"));
    }
    if p.reverse {
        let ok = if ns.addrs.is_empty() {
            // The address comes from the peer (a virtual IP): listen on all of them.
            listen.ip().is_unspecified()
        } else {
            ns.addrs.contains(&listen.ip())
        };
        if !ok {
            let want = if ns.addrs.is_empty() {
                "the unspecified address (the netstack takes its virtual IPs)".to_string()
            } else {
                ns.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            };
            return Err(cx.err(
                &at("listen"),
                format!(
                    "a reverse pipe listens inside the tunnel: {} is not a netstack address; use {want}",
                    listen.ip()
                ),
            ));
        }
    }
    let remote = remote(&p.remote).map_err(|why| cx.err(&at("remote"), why))?;
    if p.max_connections == 0 || p.max_connections > 65_536 {
        return Err(cx.err(&at("max_connections"), "must be 1 to 65536"));
    }
    if p.idle_timeout.is_zero() {
        return Err(cx.err(&at("idle_timeout"), "must be longer than 0s"));
    }
    Ok(Pipe {
        name: name.to_string(),
        proto,
        reverse: p.reverse,
        listen,
        remote,
        max_connections: p.max_connections,
        idle_timeout: p.idle_timeout,
    })
}

/// "10.96.2.1:80", "[fd00::1]:80" or "nginx:80".
fn remote(s: &str) -> Result<PipeRemote, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        if a.port() == 0 || a.ip().is_unspecified() {
            return Err(format!("'{s}' is not an address to connect to"));
        }
        return Ok(PipeRemote::Addr(a));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("'{s}' is not address:port or name:port"));
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("'{s}': '{port}' is not a port"))?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !name_ok {
        return Err(format!(
            "'{s}': '{host}' is neither an address nor a host name"
        ));
    }
    Ok(PipeRemote::Name(host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes() {
        assert_eq!(
            remote("10.96.2.1:80"),
            Ok(PipeRemote::Addr("10.96.2.1:80".parse().unwrap()))
        );
        assert_eq!(remote("nginx:80"), Ok(PipeRemote::Name("nginx".into(), 80)));
        assert!(remote("nginx").is_err());
        assert!(remote("nginx:0").is_err());
        assert!(remote("ngi nx:80").is_err());
        assert!(remote(":80").is_err());
        assert!(remote("0.0.0.0:80").is_err());
        assert!(remote("10.0.0.1:99999").is_err());
    }
}
