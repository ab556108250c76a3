//! Virtual IPs on the daemon (RFC 7296 3.15). A hub: its `[pools.NAME]` go to the
//! endpoint, which leases their addresses to the clients, and packets from one client's
//! child SA to another client's address are forwarded back into the TUN device, where the
//! other client's child SA (whose remote selector is that address) picks them up. A
//! client: the addresses of the peer's CFG_REPLY go on the TUN device for as long as the
//! IKE SA (or its rekeyed successor) lives, so that they are the source of the routes
//! through the tunnel; without CAP_NET_ADMIN (a prepared device) they are reported in
//! status and `PLUTO_MY_SOURCEIP` instead.

use std::collections::HashMap;
use std::net::IpAddr;

use ike::endpoint::{Endpoint, IkeSaId, IkeSaInfo, Pool};
use ipnet::IpNet;
use tun_io::netlink::Netlink;

use crate::netstack::NetstackHandle;

/// Gives the endpoint the configured pools; pools no longer configured are dropped,
/// those whose range is unchanged keep their leases.
pub(crate) fn load(ep: &mut Endpoint, pools: &[Pool]) {
    for p in pools {
        ep.add_pool(p.clone());
    }
    let names: Vec<&str> = pools.iter().map(|p| p.name()).collect();
    ep.retain_pools(&names);
}

/// A hub forwards between its clients: packets that come out of the TUN device for
/// another client's address go back into it (IPv4 per device, IPv6 only globally).
pub(crate) fn enable_forwarding(tun: &str, pools: &[Pool]) {
    let mut knobs = Vec::new();
    if pools.iter().any(|p| p.is_ipv4()) {
        knobs.push(format!("/proc/sys/net/ipv4/conf/{tun}/forwarding"));
    }
    if pools.iter().any(|p| !p.is_ipv4()) {
        knobs.push("/proc/sys/net/ipv6/conf/all/forwarding".to_string());
    }
    for k in knobs {
        match std::fs::write(&k, "1") {
            Ok(()) => tracing::info!("pools: forwarding between clients on ({k} = 1)"),
            Err(e) => tracing::warn!(
                "pools: cannot enable forwarding ({k}: {e}); clients will not reach each other"
            ),
        }
    }
}

/// One IKE SA's virtual IPs.
struct Held {
    conn: String,
    vips: Vec<IpAddr>,
    /// Those we put on the TUN device (and take off again).
    on_tun: Vec<IpAddr>,
}

/// The client side: virtual IPs by the IKE SA that got them.
pub(crate) struct Vips {
    tun: String,
    netlink: Option<Netlink>,
    /// With `[netstack]`: the addresses become the stack's, no netlink.
    stack: Option<NetstackHandle>,
    held: HashMap<IkeSaId, Held>,
}

fn host(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

impl Vips {
    pub(crate) fn new(tun: &str) -> Vips {
        Vips {
            tun: tun.to_string(),
            netlink: None,
            stack: None,
            held: HashMap::new(),
        }
    }

    /// Virtual IPs go to the userspace stack instead of the TUN device.
    pub(crate) fn use_netstack(&mut self, stack: NetstackHandle) {
        self.stack = Some(stack);
    }

    fn netlink(&mut self) -> std::io::Result<&mut Netlink> {
        if self.netlink.is_none() {
            self.netlink = Some(Netlink::open()?);
        }
        Ok(self.netlink.as_mut().expect("just opened"))
    }

    fn in_use(&self, a: IpAddr) -> bool {
        self.held.values().any(|h| h.on_tun.contains(&a))
    }

    /// IKE SA `info` is up: logs what the peer assigned and installs the addresses.
    pub(crate) fn up(&mut self, info: &IkeSaInfo) {
        if !info.remote_vips.is_empty() {
            let list: Vec<String> = info.remote_vips.iter().map(|a| a.to_string()).collect();
            tracing::info!(
                event = "vip_assigned",
                conn = %info.conn,
                ike = info.id.0,
                "{}: assigned virtual IP {} to '{}'",
                info.conn,
                list.join(" "),
                info.remote_id
            );
        }
        if info.local_vips.is_empty() {
            return;
        }
        let show = |v: &[IpAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        tracing::info!(
            event = "vip_installed",
            conn = %info.conn,
            ike = info.id.0,
            "{}: virtual IP {} (DNS {})",
            info.conn,
            show(&info.local_vips).join(" "),
            if info.dns.is_empty() {
                "none".to_string()
            } else {
                show(&info.dns).join(" ")
            }
        );
        let mut on_tun = Vec::new();
        for a in &info.local_vips {
            if self.in_use(*a) {
                on_tun.push(*a);
                continue;
            }
            if let Some(stack) = &self.stack {
                stack.add_addr(*a);
                on_tun.push(*a);
                continue;
            }
            let tun = self.tun.clone();
            match self.netlink().and_then(|nl| nl.add_address(&tun, host(*a))) {
                Ok(()) => on_tun.push(*a),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => tracing::warn!(
                    "{}: cannot put virtual IP {a} on {tun} ({e}); configure it on the \
                     device yourself (shown in status and as PLUTO_MY_SOURCEIP)",
                    info.conn
                ),
            }
        }
        self.held.insert(
            info.id,
            Held {
                conn: info.conn.clone(),
                vips: info.local_vips.clone(),
                on_tun,
            },
        );
    }

    /// The addresses move to the rekeyed IKE SA (RFC 7296 2.18).
    pub(crate) fn rekeyed(&mut self, old: IkeSaId, new: IkeSaId) {
        if let Some(h) = self.held.remove(&old) {
            self.held.insert(new, h);
        }
    }

    /// The virtual IPs an IKE SA holds.
    pub(crate) fn of(&self, id: IkeSaId) -> &[IpAddr] {
        self.held.get(&id).map(|h| h.vips.as_slice()).unwrap_or(&[])
    }

    /// IKE SA `id` is gone: its addresses leave the TUN device (unless another IKE SA
    /// got the same ones).
    pub(crate) fn down(&mut self, id: IkeSaId) {
        let Some(h) = self.held.remove(&id) else {
            return;
        };
        for a in h.on_tun {
            if self.in_use(a) {
                continue;
            }
            if let Some(stack) = &self.stack {
                stack.remove_addr(a);
                tracing::info!("{}: virtual IP {a} released", h.conn);
                continue;
            }
            let tun = self.tun.clone();
            match self
                .netlink()
                .and_then(|nl| nl.remove_address(&tun, host(a)))
            {
                Ok(()) => tracing::info!("{}: virtual IP {a} released", h.conn),
                Err(e) => tracing::debug!("{}: removing virtual IP {a}: {e}", h.conn),
            }
        }
    }

    /// Shutdown: every address we added leaves the device.
    pub(crate) fn clear(&mut self) {
        let ids: Vec<IkeSaId> = self.held.keys().copied().collect();
        for id in ids {
            self.down(id);
        }
    }
}
