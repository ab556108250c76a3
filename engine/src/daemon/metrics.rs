//! The control task's side of `[metrics]`: one [`Snapshot`] per scrape, gathered like
//! `esprit status` (ike's figures, then both dataplane threads' counters), but with
//! counts instead of per-IKE-SA records so that a scrape stays cheap at tens of
//! thousands of SAs.

use std::collections::HashMap;

use super::relay::{RelayClose, RelayDrop, RelayRefusal};
use super::{dataplane_stats, Io, Sas};
use crate::metrics::{
    ChildFigures, MediationFigures, PipeFigures, PoolFigures, RelayFigures, Snapshot,
};

/// Gathers every figure the metrics endpoint exports.
pub(super) async fn snapshot(st: &mut Sas, io: &Io) -> Snapshot {
    let (out, inb) = dataplane_stats(st).await;
    let by_spi = |list: Option<&Vec<(u32, esp::SaStats)>>| -> HashMap<u32, esp::SaStats> {
        list.map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    };
    let sa_in = by_spi(inb.as_ref().map(|s| &s.sas));
    let sa_out = by_spi(out.as_ref().map(|s| &s.sas));
    let mut children: Vec<ChildFigures> = st
        .installed_children()
        .map(|((conn, child), spi_in, spi_out)| {
            let i = sa_in.get(&spi_in).copied().unwrap_or_default();
            let o = sa_out.get(&spi_out).copied().unwrap_or_default();
            ChildFigures {
                connection: conn.clone(),
                child: child.clone(),
                spi_in,
                spi_out,
                bytes_in: i.bytes,
                packets_in: i.packets,
                bytes_out: o.bytes,
                packets_out: o.packets,
            }
        })
        .collect();
    // A stable order: scrapes that differ only in the map's iteration order read alike.
    children.sort_unstable_by(|a, b| {
        (&a.connection, &a.child, a.spi_in).cmp(&(&b.connection, &b.child, b.spi_in))
    });
    let pools = st
        .ep
        .pools()
        .map(|p| PoolFigures {
            name: p.name().to_string(),
            size: p.size(),
            online: p.online(),
            offline: p.offline(),
        })
        .collect();
    Snapshot {
        connections: st.plans.len(),
        census: st.ep.census(),
        ike: st.ep.stats(),
        children,
        outbound: out,
        inbound: inb,
        keepalives_sent: io.keepalives_sent,
        udp_rcvbuf_errors: crate::status::udp_rcvbuf_errors(),
        mediation: MediationFigures {
            registered_peers: st.ep.mediation_peer_count(),
            mediated_connections: st.med.paths.len(),
            relayed_connections: st.med.paths.values().filter(|p| p.3).count(),
        },
        relays: relay_figures(st),
        pools,
        pipes: st.netstack.as_ref().map(|ns| {
            ns.pipes_snapshot()
                .into_iter()
                .map(|p| PipeFigures {
                    name: p.name,
                    active: p.active,
                    opened: p.opened,
                    refused: p.refused,
                    failed: p.failed,
                    bytes_up: p.bytes_up,
                    bytes_down: p.bytes_down,
                })
                .collect()
        }),
    }
}

/// The relays' totals, each reason under its label.
fn relay_figures(st: &Sas) -> RelayFigures {
    let t = st.med.relays.totals();
    let named = |names: &[&'static str], counts: &[u64]| -> Vec<(&'static str, u64)> {
        names.iter().copied().zip(counts.iter().copied()).collect()
    };
    RelayFigures {
        open: t.open,
        opened: t.opened,
        refused: named(&RelayRefusal::NAMES, &t.refused),
        closed: named(&RelayClose::NAMES, &t.closed),
        datagrams: t.packets,
        bytes: t.bytes,
        binds: t.binds,
        drops: named(&RelayDrop::NAMES, &t.drops),
    }
}
