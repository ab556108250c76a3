//! Kernel routes for the remote subnets, through the TUN device, shared by the child SAs
//! and trap policies that need them (reference counted, removed with the last user).

use std::collections::HashMap;
use std::net::IpAddr;

use ike::wire::TrafficSelector;
use ipnet::IpNet;
use tun_io::RouteGuard;

/// The routes esprit added; all of them go when this is dropped.
pub(crate) struct OsRoutes {
    guard: Option<RouteGuard>,
    refs: HashMap<IpNet, usize>,
}

impl OsRoutes {
    /// Routes through `ifname`, or none at all when `enabled` is false.
    pub(crate) fn new(ifname: &str, enabled: bool) -> std::io::Result<OsRoutes> {
        let guard = if enabled {
            Some(tun_io::install_routes(ifname, &[])?)
        } else {
            None
        };
        Ok(OsRoutes {
            guard,
            refs: HashMap::new(),
        })
    }

    /// The subnets to route for a child: its remote selectors as prefixes, except any
    /// that would swallow the peer's own address (IKE and ESP must not enter the tunnel).
    pub(crate) fn nets_for(remote_ts: &[TrafficSelector], peer: IpAddr) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for ts in remote_ts {
            let Some(len) = ike::ts::prefix_len(ts) else {
                tracing::warn!(
                    "remote selector {} is not a prefix; no route installed for it",
                    ike::ts::display(ts)
                );
                continue;
            };
            let Ok(net) = IpNet::new(ts.start_addr, len) else {
                continue;
            };
            if net.contains(&peer) {
                tracing::warn!("not routing {net} through the tunnel: it holds the peer {peer}");
                continue;
            }
            nets.push(net);
        }
        nets
    }

    /// Our address to use as the routes' source: one inside our selectors.
    pub(crate) fn source_for(local_ts: &[TrafficSelector]) -> Vec<IpAddr> {
        let Ok(addrs) = tun_io::local_addrs() else {
            return Vec::new();
        };
        addrs
            .into_iter()
            .filter(|a| {
                local_ts.iter().any(|ts| {
                    ts.start_addr.is_ipv4() == a.is_ipv4()
                        && ts.start_addr <= *a
                        && *a <= ts.end_addr
                })
            })
            .collect()
    }

    /// Takes a reference on each of `nets`, adding the routes not yet there.
    pub(crate) fn acquire(&mut self, nets: &[IpNet], sources: &[IpAddr]) {
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        for net in nets {
            let n = self.refs.entry(*net).or_insert(0);
            if *n == 0 {
                let src = sources
                    .iter()
                    .copied()
                    .find(|s| s.is_ipv4() == net.addr().is_ipv4());
                match guard.add_with_src(*net, src) {
                    Ok(()) => tracing::debug!("route {net} via TUN (src {src:?})"),
                    Err(e) => {
                        tracing::warn!("cannot add route {net}: {e}");
                        continue;
                    }
                }
            }
            *n += 1;
        }
    }

    /// Drops a reference on each of `nets`, removing routes nobody uses any more.
    pub(crate) fn release(&mut self, nets: &[IpNet]) {
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        for net in nets {
            let Some(n) = self.refs.get_mut(net) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                self.refs.remove(net);
                if let Err(e) = guard.remove_route(*net) {
                    tracing::debug!("removing route {net}: {e}");
                }
            }
        }
    }
}
