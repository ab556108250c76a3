//! From the file as written to what the runtime needs: addresses, identities, keys,
//! proposals and selectors parsed, checked and loaded. Like the parser, every error
//! names the file and the dotted key at fault.

mod credentials;
mod mediation;
mod pipes;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ike::config::{ChildConfig, Config, Connection, Identity, LocalAuth, RemoteAuth};
use ike::endpoint::Pool;
use ike::proposal::{ProposalSet, Protocol};
use ike::ts;
use ike::wire::TrafficSelector;

use self::credentials::Credentials;
pub use self::pipes::{Netstack, Pipe, PipeProto, PipeRemote};
use super::{
    AuthKind, ChildSection, CloseAction, ConfigError, ConfigFile, ConnectionSection, DaemonSection,
    DpdAction, MetricsSection, StartAction, TunSection,
};

/// strongSwan's default IKE SA rekey_time.
const IKE_REKEY_TIME: Duration = Duration::from_secs(4 * 3600);
/// strongSwan's default child SA rekey_time.
const CHILD_REKEY_TIME: Duration = Duration::from_secs(3600);
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
const IFNAME_MAX: usize = 15;
/// The smallest MTU an IPv4 link may have (RFC 791).
const MTU_MIN: u16 = 68;

/// The configuration, checked and loaded, as the runtime uses it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Sockets, control and IKE timers.
    pub daemon: Daemon,
    /// The TUN device.
    pub tun: Tun,
    /// The connections, by name.
    pub connections: Vec<ConnectionPlan>,
    /// The virtual IP pools (`[pools.NAME]`), by name.
    pub pools: Vec<Pool>,
    /// The Prometheus endpoint, when `[metrics] listen` is set.
    pub metrics: Option<Metrics>,
    /// The userspace TCP/IP stack that replaces the TUN device, if any.
    pub netstack: Option<Netstack>,
    /// The pipes through the netstack, by name.
    pub pipes: Vec<Pipe>,
}

/// `[metrics]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Where the HTTP endpoint listens.
    pub listen: SocketAddr,
}

/// `[daemon]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// IKE port.
    pub port: u16,
    /// NAT-T port.
    pub port_nat_t: u16,
    /// The control socket; a relative path is taken from the config file's folder.
    pub control_socket: PathBuf,
    /// NAT-T keepalive interval (RFC 3948 4); zero: none.
    pub keepalive: Duration,
    /// First IKE retransmission timeout.
    pub retransmit_timeout: Duration,
    /// IKE retransmissions before a request is given up.
    pub retransmit_tries: u32,
    /// Buffer bytes of each IKE/NAT-T socket.
    pub socket_buffer: usize,
    /// Half-open SAs that make the responder ask for cookies.
    pub cookie_threshold: usize,
    /// Half-open SAs past which IKE_SA_INIT requests are dropped.
    pub max_half_open: usize,
    /// Half-open SAs one source address may hold.
    pub max_half_open_per_source: usize,
    /// Most IKE SAs.
    pub max_ike_sas: usize,
    /// Shutdown's wait for the peers' answers, before the per-SA share.
    pub shutdown_grace: Duration,
}

/// `[tun]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tun {
    /// Interface name.
    pub name: String,
    /// MTU of the device.
    pub mtu: u16,
    /// Add routes to the remote subnets through the device; `None`: the runtime decides.
    pub install_routes: Option<bool>,
}

/// One connection: what `ike` negotiates, and what the engine does with its children.
#[derive(Debug, Clone)]
pub struct ConnectionPlan {
    /// The connection for `ike::Endpoint`.
    pub conn: Connection,
    /// The engine's side of each child, in the order of `conn.children`.
    pub children: Vec<ChildPlan>,
    /// Route-based: the connection's own TUN device.
    pub device: Option<RouteDevice>,
}

/// A route-based connection's TUN device (`tun`, `tun_addrs`, `tun_mtu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDevice {
    /// Interface name.
    pub name: String,
    /// Link addresses with their prefix.
    pub addrs: Vec<IpNet>,
    /// MTU.
    pub mtu: u16,
}

/// Most route-based connections in one daemon: the outbound packet thread polls every
/// device in one `poll` of at most 64 descriptors.
pub const MAX_ROUTE_DEVICES: usize = 60;

/// What the engine does with one child SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlan {
    /// Child name, as in `conn.children`.
    pub name: String,
    /// What to do at startup.
    pub start_action: StartAction,
    /// What to do when DPD declares the peer dead.
    pub dpd_action: DpdAction,
    /// What to do when the peer deletes the IKE SA.
    pub close_action: CloseAction,
    /// The updown command, if any.
    pub updown: Option<String>,
}

impl Resolved {
    /// What `esprit check` and the daemon warn about without refusing: weak algorithms
    /// a proposal names (MODP-1024, the RFC 5114 group, SHA-1), which esprit accepts
    /// only because the configuration asks for them, as charon does.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut look = |key: String, set: &ProposalSet| {
            let mut weak: Vec<&str> = Vec::new();
            for p in set.proposals() {
                for d in p.dh.iter().filter(|d| d.is_weak()) {
                    weak.push(d.name());
                }
                if p.integ.contains(&ike::crypto::Integ::HmacSha1_96) {
                    weak.push("sha1");
                }
                if p.prf.contains(&ike::crypto::Prf::HmacSha1) {
                    weak.push("prfsha1");
                }
            }
            weak.sort_unstable();
            weak.dedup();
            if !weak.is_empty() {
                out.push(format!(
                    "{key}: {} weak (RFC 8247); used only because the proposal names it",
                    weak.join(", ")
                ));
            }
        };
        for plan in &self.connections {
            let c = &plan.conn;
            look(format!("connections.{}.proposals", c.name), &c.proposals);
            for ch in &c.children {
                look(
                    format!("connections.{}.children.{}.esp_proposals", c.name, ch.name),
                    &ch.esp_proposals,
                );
            }
        }
        out
    }

    /// The endpoint-wide IKE settings: ports and retransmission from `[daemon]`, the
    /// rest at `ike`'s defaults.
    pub fn ike_config(&self) -> Config {
        Config {
            port: self.daemon.port,
            port_nat_t: self.daemon.port_nat_t,
            retransmit_timeout: self.daemon.retransmit_timeout,
            retransmit_tries: self.daemon.retransmit_tries,
            cookie_threshold: self.daemon.cookie_threshold,
            max_half_open: self.daemon.max_half_open,
            max_half_open_per_source: self.daemon.max_half_open_per_source,
            max_ike_sas: self.daemon.max_ike_sas,
            ..Config::default()
        }
    }
}

/// Reads, parses and resolves a configuration file.
pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
    resolve(path, &super::read(path)?)
}

/// Resolves a parsed file: loads certificates and keys (relative paths are taken from
/// `path`'s folder), finds pre-shared keys, and checks what the parser cannot.
pub fn resolve(path: &Path, file: &ConfigFile) -> Result<Resolved, ConfigError> {
    let cx = Cx::new(path);
    let daemon = daemon(&cx, &file.daemon)?;
    let tun = tun(&cx, &file.tun)?;
    let mut creds = Credentials::new(&cx, &file.secrets)?;
    let pools = file
        .pools
        .iter()
        .map(|(name, p)| pool(&cx, name, p))
        .collect::<Result<Vec<_>, _>>()?;
    let connections = file
        .connections
        .iter()
        .map(|(name, c)| connection(&cx, &mut creds, name, c, &pools, &tun))
        .collect::<Result<Vec<_>, _>>()?;
    let connections = mediation::resolve(&cx, &file.connections, connections)?;
    route_devices(&cx, &connections)?;
    let metrics = metrics(&cx, &file.metrics)?;
    let (netstack, pipes) = pipes::resolve(&cx, file.netstack.as_ref(), &file.pipes)?;
    Ok(Resolved {
        daemon,
        tun,
        connections,
        pools,
        metrics,
        netstack,
        pipes,
    })
}

/// The file being resolved: where errors point and relative paths start.
struct Cx<'a> {
    file: &'a Path,
    dir: &'a Path,
}

impl<'a> Cx<'a> {
    fn new(file: &'a Path) -> Self {
        Cx {
            file,
            dir: file.parent().unwrap_or(Path::new("")),
        }
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, key, reason)
    }

    /// A path from the file, relative ones taken from the file's folder.
    fn path(&self, p: &Path) -> PathBuf {
        self.dir.join(p)
    }
}

fn daemon(cx: &Cx<'_>, d: &DaemonSection) -> Result<Daemon, ConfigError> {
    if d.port == d.port_nat_t {
        return Err(cx.err(
            "daemon.port_nat_t",
            format!(
                "{} is also daemon.port; the two sockets need their own ports",
                d.port
            ),
        ));
    }
    if d.retransmit_timeout.is_zero() {
        return Err(cx.err("daemon.retransmit_timeout", "must be longer than 0s"));
    }
    for (key, n) in [
        ("daemon.max_half_open", d.max_half_open),
        (
            "daemon.max_half_open_per_source",
            d.max_half_open_per_source,
        ),
        ("daemon.max_ike_sas", d.max_ike_sas),
    ] {
        if n == 0 {
            return Err(cx.err(key, "must be at least 1"));
        }
    }
    if d.socket_buffer < 64 * 1024 {
        return Err(cx.err(
            "daemon.socket_buffer",
            format!("{} bytes is too small; at least 65536", d.socket_buffer),
        ));
    }
    Ok(Daemon {
        port: d.port,
        port_nat_t: d.port_nat_t,
        // The daemon and `esprit status` both find the socket through this file, from
        // whatever working directory they run in.
        control_socket: cx.path(&d.control_socket),
        keepalive: d.keepalive,
        retransmit_timeout: d.retransmit_timeout,
        retransmit_tries: d.retransmit_tries,
        socket_buffer: d.socket_buffer,
        cookie_threshold: d.cookie_threshold,
        max_half_open: d.max_half_open,
        max_half_open_per_source: d.max_half_open_per_source,
        max_ike_sas: d.max_ike_sas,
        shutdown_grace: d.shutdown_grace,
    })
}

fn tun(cx: &Cx<'_>, t: &TunSection) -> Result<Tun, ConfigError> {
    if t.name.is_empty() || t.name.len() > IFNAME_MAX {
        return Err(cx.err(
            "tun.name",
            format!("'{}' is not 1 to {IFNAME_MAX} bytes long", t.name),
        ));
    }
    if t.mtu < MTU_MIN {
        return Err(cx.err(
            "tun.mtu",
            format!("{} is below the IPv4 minimum of {MTU_MIN}", t.mtu),
        ));
    }
    Ok(Tun {
        name: t.name.clone(),
        mtu: t.mtu,
        install_routes: t.install_routes,
    })
}

/// `[metrics]`: `listen` must be an address and a port other than 0 (a port picked by
/// the kernel could not be found by a scraper).
fn metrics(cx: &Cx<'_>, m: &MetricsSection) -> Result<Option<Metrics>, ConfigError> {
    let Some(listen) = &m.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen.trim().parse().map_err(|_| {
        cx.err(
            "metrics.listen",
            format!("'{listen}' is not an address and port like 127.0.0.1:9000 or [::1]:9000"),
        )
    })?;
    if addr.port() == 0 {
        return Err(cx.err("metrics.listen", "port 0: give the port to scrape"));
    }
    Ok(Some(Metrics { listen: addr }))
}

/// `[pools.NAME]`: its range and DNS servers.
fn pool(cx: &Cx<'_>, name: &str, p: &super::PoolSection) -> Result<Pool, ConfigError> {
    let at = |field: &str| format!("pools.{name}.{field}");
    let pool = Pool::parse(name, &p.addrs).map_err(|e| cx.err(&at("addrs"), e.to_string()))?;
    let dns = p
        .dns
        .iter()
        .map(|d| {
            d.trim()
                .parse::<IpAddr>()
                .map_err(|e| cx.err(&at("dns"), format!("'{d}' is not an IP address: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(pool.with_dns(dns))
}

/// `vips`: addresses, "0.0.0.0" and "::" asking for any of the family.
fn vips(cx: &Cx<'_>, key: &str, list: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    list.iter()
        .map(|v| {
            v.trim().parse::<IpAddr>().map_err(|e| {
                cx.err(
                    key,
                    format!("'{v}' is not an address (0.0.0.0 or :: ask for any): {e}"),
                )
            })
        })
        .collect()
}

fn connection(
    cx: &Cx<'_>,
    creds: &mut Credentials<'_>,
    name: &str,
    c: &ConnectionSection,
    pools: &[Pool],
    main: &Tun,
) -> Result<ConnectionPlan, ConfigError> {
    let at = |field: &str| format!("connections.{name}.{field}");
    let device = route_device(cx, name, c, main)?;
    let local_addrs = addrs(cx, &at("local_addrs"), &c.local_addrs)?;
    let remote_addrs = addrs(cx, &at("remote_addrs"), &c.remote_addrs)?;
    let proposals = proposals(cx, &at("proposals"), &c.proposals, Protocol::Ike)?;
    let vips = vips(cx, &at("vips"), &c.vips)?;
    if let Some(missing) = c
        .pools
        .iter()
        .find(|p| !pools.iter().any(|x| x.name() == *p))
    {
        return Err(cx.err(&at("pools"), format!("no [pools.{missing}] section")));
    }

    // RFC 7296 3.15: a side with a virtual IP has it as its selector; until it is
    // assigned, "dynamic" offers any address and the responder narrows it.
    let sides = Sides {
        local: if vips.is_empty() { &local_addrs } else { &[] },
        remote: if c.pools.is_empty() {
            &remote_addrs
        } else {
            &[]
        },
        mediated: c.mediated_by.is_some(),
    };
    let mut children = Vec::new();
    let mut plans = Vec::new();
    for (child, ch) in &c.children {
        let (config, plan) = child_sa(cx, &at(&format!("children.{child}")), child, ch, sides)?;
        children.push(config);
        plans.push(plan);
    }

    // Our end: a pubkey end brings its certificate, whose subject is the default id.
    let local_cert = match c.local.auth {
        AuthKind::Pubkey => Some(creds.local_pubkey(cx, &at("local.certs"), &c.local.certs)?),
        AuthKind::Psk => None,
    };
    let local_id = match (&c.local.id, &local_cert, local_addrs.first()) {
        (Some(id), _, _) => identity(cx, &at("local.id"), id)?,
        (None, Some(cert), _) => cert.subject.clone(),
        (None, None, Some(addr)) => identity(cx, &at("local.id"), &addr.to_string())?,
        (None, None, None) => {
            return Err(cx.err(
                &at("local.id"),
                "local.id is required with psk when local_addrs is empty",
            ))
        }
    };
    if local_id.is_any() {
        return Err(cx.err(&at("local.id"), "our own identity cannot be %any"));
    }
    let remote_id = match &c.remote.id {
        Some(id) => identity(cx, &at("remote.id"), id)?,
        None => Identity::Any,
    };

    // RFC 7296 2.15: one shared key, found by both ids, serves both AUTH payloads.
    let psk = |key: &str| {
        creds.psk(&local_id, &remote_id).ok_or_else(|| {
            cx.err(
                key,
                format!("no [secrets.ike-*] entry for ids '{local_id}' and '{remote_id}'"),
            )
        })
    };
    let local_auth = match local_cert {
        Some(cert) => LocalAuth::Pubkey {
            key: cert.key,
            certs: cert.chain,
        },
        None => LocalAuth::Psk(psk(&at("local.auth"))?),
    };
    let remote_auth = match c.remote.auth {
        AuthKind::Pubkey => RemoteAuth::Pubkey(credentials::trust(
            cx,
            &at("remote.cacerts"),
            &c.remote.cacerts,
        )?),
        AuthKind::Psk => RemoteAuth::Psk(psk(&at("remote.auth"))?),
    };

    Ok(ConnectionPlan {
        conn: Connection {
            name: name.to_string(),
            local_addrs,
            remote_addrs,
            remote_port: c.remote_port,
            proposals,
            local_id,
            local_auth,
            remote_id,
            remote_auth,
            // esprit has no raw ESP socket: ESP always travels in UDP (RFC 3948), as
            // with strongSwan's kernel-libipsec, so NAT detection is always faked.
            encap: true,
            dpd_delay: c.dpd_delay,
            rekey_time: c.rekey_time.unwrap_or(IKE_REKEY_TIME),
            fragmentation: c.fragmentation,
            mediation: Default::default(),
            children,
            unique: c.unique.into(),
            vips,
            pools: c.pools.clone(),
        },
        children: plans,
        device,
    })
}

/// `tun`, `tun_addrs` and `tun_mtu` of one connection.
fn route_device(
    cx: &Cx<'_>,
    name: &str,
    c: &ConnectionSection,
    main: &Tun,
) -> Result<Option<RouteDevice>, ConfigError> {
    let at = |field: &str| format!("connections.{name}.{field}");
    let Some(dev) = &c.tun else {
        if !c.tun_addrs.is_empty() || c.tun_mtu.is_some() {
            let key = if c.tun_addrs.is_empty() {
                "tun_mtu"
            } else {
                "tun_addrs"
            };
            return Err(cx.err(
                &at(key),
                "needs `tun`, the route-based device it configures",
            ));
        }
        return Ok(None);
    };
    if dev.is_empty() || dev.len() > IFNAME_MAX || dev.contains(['/', ' ']) {
        return Err(cx.err(
            &at("tun"),
            format!("'{dev}' is not an interface name of 1 to {IFNAME_MAX} bytes"),
        ));
    }
    if *dev == main.name {
        return Err(cx.err(
            &at("tun"),
            format!("'{dev}' is [tun].name, the policy-based device; give the connection its own"),
        ));
    }
    if c.mediation {
        return Err(cx.err(
            &at("tun"),
            "a mediation connection carries no child SAs, so no traffic to route",
        ));
    }
    let addrs = c
        .tun_addrs
        .iter()
        .map(|a| {
            a.trim().parse::<IpNet>().map_err(|e| {
                cx.err(
                    &at("tun_addrs"),
                    format!("'{a}' is not an address with prefix (169.254.100.1/30): {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mtu = c.tun_mtu.unwrap_or(main.mtu);
    if mtu < MTU_MIN {
        return Err(cx.err(
            &at("tun_mtu"),
            format!("{mtu} is below the IPv4 minimum of {MTU_MIN}"),
        ));
    }
    Ok(Some(RouteDevice {
        name: dev.clone(),
        addrs,
        mtu,
    }))
}

/// Route-based devices across connections: one connection each, and not too many.
fn route_devices(cx: &Cx<'_>, plans: &[ConnectionPlan]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for p in plans {
        let Some(d) = &p.device else { continue };
        if let Some(other) = seen.insert(&d.name, &p.conn.name) {
            return Err(cx.err(
                &format!("connections.{}.tun", p.conn.name),
                format!(
                    "'{}' is already connections.{other}.tun; each route-based connection needs its own device",
                    d.name
                ),
            ));
        }
    }
    if seen.len() > MAX_ROUTE_DEVICES {
        return Err(cx.err(
            "connections",
            format!(
                "{} route-based connections; at most {MAX_ROUTE_DEVICES} per daemon",
                seen.len()
            ),
        ));
    }
    Ok(())
}

/// Both ends' IKE addresses, for "dynamic" selectors and start actions.
#[derive(Clone, Copy)]
struct Sides<'a> {
    local: &'a [IpAddr],
    remote: &'a [IpAddr],
    /// Set up through a mediation server: the peer's address comes from the checks.
    mediated: bool,
}

fn child_sa(
    cx: &Cx<'_>,
    key: &str,
    name: &str,
    ch: &ChildSection,
    sides: Sides<'_>,
) -> Result<(ChildConfig, ChildPlan), ConfigError> {
    let at = |field: &str| format!("{key}.{field}");
    let local_ts = selectors(cx, &at("local_ts"), &ch.local_ts, sides.local)?;
    let remote_ts = selectors(cx, &at("remote_ts"), &ch.remote_ts, sides.remote)?;
    let esp_proposals = proposals(cx, &at("esp_proposals"), &ch.esp_proposals, Protocol::Esp)?;
    let action = match ch.start_action {
        StartAction::None => None,
        StartAction::Start => Some("start"),
        StartAction::Trap => Some("trap"),
    };
    let updown = match ch.updown.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(cx.err(&at("updown"), "empty command; leave the key out")),
        Some(cmd) => {
            // Like charon, the command runs through the shell and may carry arguments;
            // an absolute program that is not there is surely a mistake.
            let program = cmd.split_whitespace().next().unwrap_or(cmd);
            if program.starts_with('/') && !Path::new(program).exists() {
                return Err(cx.err(&at("updown"), format!("'{program}': no such file")));
            }
            Some(cmd.to_string())
        }
    };
    if let (Some(action), true) = (action, sides.remote.is_empty() && !sides.mediated) {
        return Err(cx.err(
            &at("start_action"),
            format!("start_action {action} needs remote_addrs: an address to negotiate with"),
        ));
    }
    Ok((
        ChildConfig {
            name: name.to_string(),
            local_ts,
            remote_ts,
            esp_proposals,
            rekey_time: ch.rekey_time.unwrap_or(CHILD_REKEY_TIME),
        },
        ChildPlan {
            name: name.to_string(),
            start_action: ch.start_action,
            dpd_action: ch.dpd_action,
            close_action: ch.close_action,
            updown,
        },
    ))
}

/// IP addresses; "%any" or "" alone (or no entry) means any, which is an empty list.
fn addrs(cx: &Cx<'_>, key: &str, list: &[String]) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out = Vec::new();
    let mut any = false;
    for v in list.iter().map(|v| v.trim()) {
        if v.is_empty() || v == "%any" {
            any = true;
            continue;
        }
        let addr = v.parse::<IpAddr>().map_err(|e| {
            let range = v.split_once('-').is_some_and(|(a, b)| {
                a.trim().parse::<IpAddr>().is_ok() && b.trim().parse::<IpAddr>().is_ok()
            });
            let why = if v.contains('/') || range {
                "subnets and ranges are not supported here".to_string()
            } else if v.contains(|c: char| c.is_ascii_alphabetic()) && !v.contains(':') {
                "esprit resolves no names; give an address".to_string()
            } else {
                e.to_string()
            };
            cx.err(key, format!("'{v}' is not an IP address: {why}"))
        })?;
        out.push(addr);
    }
    // The runtime knows "these addresses" or "any"; a mix of both has no meaning there.
    if any && !out.is_empty() {
        return Err(cx.err(
            key,
            "'%any' cannot be mixed with addresses: list addresses, or only %any",
        ));
    }
    Ok(out)
}

/// Proposals in strongSwan syntax; each entry is checked alone so that the error names
/// the one at fault.
fn proposals(
    cx: &Cx<'_>,
    key: &str,
    list: &[String],
    protocol: Protocol,
) -> Result<ProposalSet, ConfigError> {
    if list.is_empty() {
        return Err(cx.err(
            key,
            "empty proposal list; leave the key out for \"default\"",
        ));
    }
    for p in list {
        ProposalSet::parse(protocol, p).map_err(|e| cx.err(key, format!("'{p}': {e}")))?;
    }
    ProposalSet::parse(protocol, &list.join(",")).map_err(|e| cx.err(key, e.to_string()))
}

fn identity(cx: &Cx<'_>, key: &str, s: &str) -> Result<Identity, ConfigError> {
    Identity::parse(s).map_err(|e| cx.err(key, format!("'{s}': {e}")))
}

/// Traffic selectors: subnets, single addresses, and "dynamic" for the side's IKE
/// address (any address of either family when that side has none configured, so that
/// narrowing to the peer's proposal works, RFC 7296 2.9).
fn selectors(
    cx: &Cx<'_>,
    key: &str,
    list: &[String],
    side: &[IpAddr],
) -> Result<Vec<TrafficSelector>, ConfigError> {
    if list.is_empty() {
        return Err(cx.err(
            key,
            "empty selector list; leave the key out for \"dynamic\"",
        ));
    }
    let mut out = Vec::new();
    for v in list.iter().map(|v| v.trim()) {
        if v == "dynamic" {
            match side.first() {
                Some(&addr) => out.push(range(addr, addr)),
                None => out.extend([
                    range(Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into()),
                    range(
                        Ipv6Addr::UNSPECIFIED.into(),
                        Ipv6Addr::from(u128::MAX).into(),
                    ),
                ]),
            }
            continue;
        }
        let ts = ts::parse_cidr(v)
            .ok_or_else(|| cx.err(key, format!("'{v}' is not a subnet: {}", why_not_cidr(v))))?;
        out.push(ts);
    }
    Ok(out)
}

/// Every protocol and port between two addresses.
fn range(start: IpAddr, end: IpAddr) -> TrafficSelector {
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: start,
        end_addr: end,
    }
}

/// Why `ts::parse_cidr` refused `s`.
fn why_not_cidr(s: &str) -> String {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.trim(), Some(l.trim())),
        None => (s, None),
    };
    let ip = match addr.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(e) if addr.contains(|c: char| c.is_ascii_alphabetic()) && !addr.contains(':') => {
            return format!("'{addr}': {e}; esprit resolves no names, give a subnet")
        }
        Err(e) => return format!("'{addr}': {e}"),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match len {
        Some(l) if l.contains('[') => {
            format!("'{l}': protocol and port selectors are not supported")
        }
        Some(l) => format!("prefix length '{l}' is not a number from 0 to {max}"),
        None => "expected a CIDR subnet like 10.1.0.0/24, or an address".into(),
    }
}
