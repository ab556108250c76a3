//! Route-based connections' own TUN devices (`[connections.X] tun = "ss0"`).
//!
//! Each such connection gets a device of its own, with its link addresses and no routes:
//! what the routing daemon sends into the device goes through that connection's child
//! SAs only, and what they decrypt comes out of it. The devices are made when the daemon
//! starts or a reload adds the connection, and vanish when the dataplane lets go of them.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use ipnet::IpNet;

use tun_io::netlink::Netlink;
use tun_io::{Tun, TunConfig};

use crate::config::{ConnectionPlan, RouteDevice};
use crate::dataplane::{Dataplane, DevId, MAIN_DEV};

/// The route-based devices, by connection name.
pub(crate) struct ConnDevices {
    by_conn: HashMap<String, (DevId, RouteDevice)>,
    next: DevId,
}

impl ConnDevices {
    pub(crate) fn new() -> ConnDevices {
        ConnDevices {
            by_conn: HashMap::new(),
            next: MAIN_DEV + 1,
        }
    }

    /// The device a connection's child SAs are bound to: the main one for a
    /// policy-based connection, its own for a route-based one, and `None` when that one
    /// could not be made (the connection must not carry traffic then).
    pub(crate) fn dev_of(&self, plan: &ConnectionPlan) -> Option<DevId> {
        match &plan.device {
            None => Some(MAIN_DEV),
            Some(_) => self.by_conn.get(&plan.conn.name).map(|(d, _)| *d),
        }
    }

    /// The names of the devices made.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_conn.values().map(|(_, d)| d.name.as_str())
    }

    /// Makes the devices match `plans`: those of removed or redefined connections are
    /// taken from the dataplane (and so closed) first, then the missing ones made. Returns
    /// the connections whose device could not be made, with the reason.
    pub(crate) async fn sync(
        &mut self,
        dp: &Dataplane,
        plans: &[ConnectionPlan],
    ) -> Vec<(String, io::Error)> {
        let stale: Vec<String> = self
            .by_conn
            .iter()
            .filter(|(conn, (_, have))| {
                !plans
                    .iter()
                    .any(|p| &p.conn.name == *conn && p.device.as_ref() == Some(have))
            })
            .map(|(conn, _)| conn.clone())
            .collect();
        for conn in stale {
            if let Some((dev, d)) = self.by_conn.remove(&conn) {
                dp.remove_device(dev).await;
                tracing::info!("{conn}: route-based device {} closed", d.name);
            }
        }
        let mut failed = Vec::new();
        let mut made = Vec::new();
        for p in plans {
            let Some(want) = &p.device else { continue };
            if self.by_conn.contains_key(&p.conn.name) {
                continue;
            }
            let dev = self.next;
            self.next += 1;
            let opened = open_device(want)
                .and_then(|(tun, index)| dp.add_device(dev, Box::new(tun)).map(|()| index));
            match opened {
                Ok(index) => {
                    if !want.addrs.is_empty() {
                        made.push((want.name.clone(), index, want.addrs.clone()));
                    }
                    tracing::info!(
                        "{}: route-based device {} (mtu {}, {}), no routes installed",
                        p.conn.name,
                        want.name,
                        want.mtu,
                        if want.addrs.is_empty() {
                            "no addresses".to_string()
                        } else {
                            want.addrs
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                    );
                    self.by_conn
                        .insert(p.conn.name.clone(), (dev, want.clone()));
                }
                Err(e) => failed.push((p.conn.name.clone(), e)),
            }
        }
        if !made.is_empty() {
            tokio::spawn(reannounce(made));
        }
        failed
    }
}

/// When the kernel announces the new devices' addresses again, after they were made.
const REANNOUNCE_AFTER: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// Has the kernel announce the link addresses of devices just made again, twice, a
/// while after their first notice: a routing daemon may have missed that one. FRR's
/// zebra before 9.0 (Debian 12 ships 8.4) drops an address whose notice it handles
/// before the notice of its link, which arrives on another socket (FRR issue 13288);
/// a BGP session over the device then fails for ever with "nexthop_set failed". An
/// announcement changes nothing, is skipped for a device that is gone or was made again
/// since, and fails quietly.
async fn reannounce(made: Vec<(String, u32, Vec<IpNet>)>) {
    for wait in REANNOUNCE_AFTER {
        tokio::time::sleep(wait).await;
        let mut nl = match Netlink::open() {
            Ok(nl) => nl,
            Err(e) => {
                tracing::debug!("announcing device addresses again: {e}");
                return;
            }
        };
        for (name, index, addrs) in &made {
            match nl.reannounce_addresses(name, *index, addrs) {
                Ok(n) => tracing::debug!("{name}: {n} address(es) announced again"),
                Err(e) => tracing::debug!("{name}: addresses not announced again: {e}"),
            }
        }
    }
}

/// Creates one device: TUN with MTU, link addresses, up; returns it with its interface
/// index.
fn open_device(d: &RouteDevice) -> io::Result<(Tun, u32)> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("TUN {}: {e}", d.name));
    let tun = Tun::create(&TunConfig::new().name(&d.name).mtu(d.mtu)).map_err(ctx)?;
    let mut nl = Netlink::open().map_err(ctx)?;
    for a in &d.addrs {
        nl.add_address(&d.name, *a).map_err(ctx)?;
    }
    nl.set_up(&d.name).map_err(ctx)?;
    let index = nl.link_state(&d.name).map_err(ctx)?.index;
    Ok((tun, index))
}
