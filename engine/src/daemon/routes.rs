//! Kernel routes for the remote subnets, through the TUN device, shared by the child SAs
//! and trap policies that need them (reference counted, removed with the last user).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ike::wire::TrafficSelector;
use ipnet::IpNet;
use tun_io::RouteGuard;

/// The routes esprit added; all of them go when this is dropped.
pub(crate) struct OsRoutes {
    guard: Option<RouteGuard>,
    refs: HashMap<IpNet, usize>,
    /// This namespace's addresses as last read, and when: reading them is a netlink
    /// dump of every link and address; once per new route it was 5% of the control
    /// task's time while thousands of peers came up (issue 22).
    addrs: Option<(Instant, Vec<IpAddr>)>,
}

/// How long [`OsRoutes::acquire`] uses the addresses it read.
const ADDRS_FRESH: Duration = Duration::from_secs(1);

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
            addrs: None,
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
        within(&tun_io::local_addrs().unwrap_or_default(), local_ts)
    }

    /// Takes a reference on each of `nets`, adding the routes not yet there, each with a
    /// source address of ours inside `local_ts` if there is one.
    pub(crate) fn acquire(&mut self, nets: &[IpNet], local_ts: &[TrafficSelector]) {
        if self.guard.is_none() {
            return;
        }
        let mut sources: Option<Vec<IpAddr>> = None;
        for net in nets {
            if self.refs.get(net).copied().unwrap_or(0) == 0 {
                if sources.is_none() {
                    sources = Some(self.sources(local_ts));
                }
                let src = sources
                    .iter()
                    .flatten()
                    .copied()
                    .find(|s| s.is_ipv4() == net.addr().is_ipv4());
                let Some(guard) = self.guard.as_mut() else {
                    return;
                };
                match guard.add_with_src(*net, src) {
                    Ok(()) => tracing::debug!("route {net} via TUN (src {src:?})"),
                    Err(e) => {
                        tracing::warn!("cannot add route {net}: {e}");
                        continue;
                    }
                }
            }
            *self.refs.entry(*net).or_insert(0) += 1;
        }
    }

    /// [`OsRoutes::source_for`] on addresses read at most [`ADDRS_FRESH`] ago.
    fn sources(&mut self, local_ts: &[TrafficSelector]) -> Vec<IpAddr> {
        let now = Instant::now();
        let fresh = self
            .addrs
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < ADDRS_FRESH);
        if !fresh {
            self.addrs = Some((now, tun_io::local_addrs().unwrap_or_default()));
        }
        let addrs = self.addrs.as_ref().map_or(&[][..], |(_, a)| a);
        within(addrs, local_ts)
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

/// The addresses of `addrs` that `local_ts` covers.
fn within(addrs: &[IpAddr], local_ts: &[TrafficSelector]) -> Vec<IpAddr> {
    addrs
        .iter()
        .copied()
        .filter(|a| {
            local_ts.iter().any(|ts| {
                ts.start_addr.is_ipv4() == a.is_ipv4() && ts.start_addr <= *a && *a <= ts.end_addr
            })
        })
        .collect()
}
