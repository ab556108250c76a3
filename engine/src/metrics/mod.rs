//! Prometheus metrics: `[metrics] listen` makes the daemon serve `/metrics` and
//! `/healthz` over HTTP ([`http`]).
//!
//! A scrape asks the control task for one [`Snapshot`] (gathered the way `esprit
//! status` gathers its report: ike's counters and census, then the two dataplane
//! threads' counters over their command queues), and [`render`] turns it into the
//! Prometheus text format (version 0.0.4) with `prometheus-client`. Every figure of
//! one scrape comes from the same moment, so counters agree with each other.
//!
//! Cost: the IKE figures are aggregates (a census of the IKE SAs by state, no series
//! per IKE SA), so a scrape at 50,000 IKE SAs is one pass over them without
//! allocation. Bytes and packets are exported per child SA and direction (two series
//! each for bytes and packets, four per child SA): at 50,000 child SAs that is 200,000
//! series, a body of about 22 MB and about 0.4 s of rendering in a release build (done
//! on a blocking thread, not the control task's), which is what per-child accounting
//! costs; a rekeyed child SA starts new series under its new SPIs.

pub(crate) mod http;

use std::fmt::Write as _;

use ike::endpoint::{Census, DownReason, STATE_NAMES};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::dataplane::{InStats, OutStats};

/// Everything one scrape exports, taken at one moment on the control task.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Connections in the configuration.
    pub connections: usize,
    /// IKE SAs by state and child SAs.
    pub census: Census,
    /// ike's counters (drops, handshakes, rekeys, DPD, retransmits).
    pub ike: ike::endpoint::Stats,
    /// Bytes and packets of each installed child SA.
    pub children: Vec<ChildFigures>,
    /// The outbound thread's counters; `None` when it did not answer in time (its
    /// series are then left out rather than reported as zero, which would read as a
    /// counter reset).
    pub outbound: Option<OutStats>,
    /// The inbound thread's counters; `None` when it did not answer in time.
    pub inbound: Option<InStats>,
    /// NAT-T keepalives the control task sent.
    pub keepalives_sent: u64,
    /// The network namespace's UDP receive-buffer drops (`/proc/net/snmp`).
    pub udp_rcvbuf_errors: u64,
    /// IKE mediation.
    pub mediation: MediationFigures,
    /// As a mediation server: its relays (all zero on a daemon that runs none).
    pub relays: RelayFigures,
    /// Virtual IP pools.
    pub pools: Vec<PoolFigures>,
    /// Pipes (connections carried over a userspace TCP/IP stack); `None` until the
    /// daemon has pipes. See [`encode_pipes`].
    pub pipes: Option<Vec<PipeFigures>>,
}

/// One child SA's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildFigures {
    /// Connection name.
    pub connection: String,
    /// Child name.
    pub child: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Inner bytes received.
    pub bytes_in: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Inner bytes sent.
    pub bytes_out: u64,
    /// Packets sent.
    pub packets_out: u64,
}

/// IKE mediation at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediationFigures {
    /// As a mediation server: peers registered here.
    pub registered_peers: usize,
    /// Mediated connections whose connectivity checks chose a path.
    pub mediated_connections: usize,
    /// Of those, the ones whose path is the mediation server's relay.
    pub relayed_connections: usize,
}

/// A mediation server's relays since the daemon started (esprit's relay for peers
/// behind symmetric NATs). Reasons are (label, count), every reason listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayFigures {
    /// Relays running now.
    pub open: u64,
    /// Relays opened.
    pub opened: u64,
    /// Relays the peers asked for and the server did not open, by reason.
    pub refused: Vec<(&'static str, u64)>,
    /// Relays closed, by reason.
    pub closed: Vec<(&'static str, u64)>,
    /// Datagrams forwarded from one peer to the other.
    pub datagrams: u64,
    /// Bytes (UDP payload) forwarded.
    pub bytes: u64,
    /// Bind datagrams with a good token.
    pub binds: u64,
    /// Datagrams dropped, by reason.
    pub drops: Vec<(&'static str, u64)>,
}

/// One virtual IP pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolFigures {
    /// Pool name.
    pub name: String,
    /// Addresses in the pool.
    pub size: u32,
    /// Leases an IKE SA holds.
    pub online: usize,
    /// Leases kept for identities not connected.
    pub offline: usize,
}

/// One pipe's figures (`[pipes.NAME]`), from the netstack's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipeFigures {
    /// The pipe's name.
    pub name: String,
    /// Connections (UDP: flows) open now.
    pub active: u64,
    /// Connections opened since start.
    pub opened: u64,
    /// Connections refused at `max_connections`.
    pub refused: u64,
    /// Connections that could not be made.
    pub failed: u64,
    /// Bytes from the connecting side towards `remote`.
    pub bytes_up: u64,
    /// Bytes from `remote` back to the connecting side.
    pub bytes_down: u64,
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Renders a snapshot in the Prometheus text format (every name starts `esprit_`).
pub fn render(snap: Snapshot) -> String {
    let mut registry = Registry::with_prefix("esprit");
    registry.register_collector(Box::new(snap));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector error would be ours and leaves a
    // truncated body, which the scraper reports.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        let _ = writeln!(out, "# encoding failed");
    }
    out
}

/// Label pairs of one series.
type Labels<'a> = [(&'static str, &'a str)];

/// Writes one metric family: a descriptor and a series per label set.
struct Family<'e, 'a> {
    enc: &'e mut DescriptorEncoder<'a>,
}

impl Family<'_, '_> {
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        series: &[(&Labels<'_>, u64)],
    ) -> Result<(), std::fmt::Error> {
        let metric = ConstCounter::new(0u64);
        let mut m = self
            .enc
            .encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?;
        for (labels, v) in series {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        series: &[(&Labels<'_>, u64)],
    ) -> Result<(), std::fmt::Error> {
        let metric = ConstGauge::new(0i64);
        let mut m = self
            .enc
            .encode_descriptor(name, help, None, metric.metric_type())?;
        for (labels, v) in series {
            ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut f = Family { enc: &mut enc };
        encode_sas(&mut f, self)?;
        encode_ike(&mut f, &self.ike)?;
        encode_children(&mut f, &self.children)?;
        if let Some(o) = &self.outbound {
            encode_outbound(&mut f, o)?;
        }
        if let Some(i) = &self.inbound {
            encode_inbound(&mut f, i)?;
        }
        f.counter(
            "natt_keepalives_sent",
            "NAT-T keepalives sent through a NAT in front of us (RFC 3948 4).",
            None,
            &[(&[], self.keepalives_sent)],
        )?;
        f.counter(
            "udp_rcvbuf_errors",
            "UDP datagrams the kernel dropped for a full receive buffer, in the daemon's network namespace (every UDP socket of it).",
            None,
            &[(&[], self.udp_rcvbuf_errors)],
        )?;
        encode_mediation(&mut f, &self.mediation)?;
        encode_relays(&mut f, &self.relays)?;
        encode_pools(&mut f, &self.pools)?;
        if let Some(p) = &self.pipes {
            encode_pipes(f.enc, p)?;
        }
        Ok(())
    }
}

fn encode_sas(f: &mut Family<'_, '_>, s: &Snapshot) -> Result<(), std::fmt::Error> {
    f.gauge(
        "connections",
        "Connections in the configuration.",
        &[(&[], s.connections as u64)],
    )?;
    let states: Vec<[(&str, &str); 1]> = STATE_NAMES.iter().map(|n| [("state", *n)]).collect();
    let by_state: Vec<(&Labels<'_>, u64)> = states
        .iter()
        .zip(s.census.ike_sas)
        .map(|(l, n)| (&l[..], n as u64))
        .collect();
    f.gauge("ike_sas", "IKE SAs by state.", &by_state)?;
    f.gauge(
        "child_sas",
        "Child SAs (each a pair of ESP SAs).",
        &[(&[], s.census.child_sas as u64)],
    )
}

fn encode_ike(f: &mut Family<'_, '_>, s: &ike::endpoint::Stats) -> Result<(), std::fmt::Error> {
    f.counter(
        "ike_handshakes",
        "IKE SAs that completed IKE_AUTH, in either role.",
        None,
        &[(&[], s.handshakes)],
    )?;
    let reasons: Vec<[(&str, &str); 1]> =
        DownReason::NAMES.iter().map(|n| [("reason", *n)]).collect();
    let failures: Vec<(&Labels<'_>, u64)> = reasons
        .iter()
        .zip(s.handshake_failures)
        .map(|(l, n)| (&l[..], n))
        .collect();
    f.counter(
        "ike_handshake_failures",
        "IKE SAs that ended before IKE_AUTH completed, by reason.",
        None,
        &failures,
    )?;
    f.counter(
        "ike_rekeys",
        "IKE SAs created by a rekey (RFC 7296 2.8.2).",
        None,
        &[(&[], s.ike_rekeys)],
    )?;
    f.counter(
        "child_sa_rekeys",
        "Child SAs created by a rekey (RFC 7296 2.8); both SAs of a collision count.",
        None,
        &[(&[], s.child_rekeys)],
    )?;
    f.counter(
        "dpd_checks",
        "Liveness checks (empty INFORMATIONAL requests) sent.",
        None,
        &[(&[], s.dpd_checks)],
    )?;
    f.counter(
        "dpd_timeouts",
        "IKE SAs closed because a liveness check went unanswered.",
        None,
        &[(&[], s.dpd_timeouts)],
    )?;
    f.counter(
        "ike_invalid_spi_sent",
        "Requests for unknown IKE SAs answered with INVALID_IKE_SPI (RFC 7296 2.21.4).",
        None,
        &[(&[], s.invalid_spi_sent)],
    )?;
    f.counter(
        "ike_invalid_spi_hints",
        "INVALID_IKE_SPI answers to our requests: liveness checks ended after one more try.",
        None,
        &[(&[], s.invalid_spi_hints)],
    )?;
    f.counter(
        "ike_retransmits",
        "IKE requests sent again for want of an answer.",
        None,
        &[(&[], s.retransmits)],
    )?;
    f.counter(
        "ike_cookies_sent",
        "IKE_SA_INIT requests answered with a COOKIE (RFC 7296 2.6).",
        None,
        &[(&[], s.cookies_sent)],
    )?;
    f.counter(
        "ike_replaced",
        "IKE SAs removed for a newer one with the same identities (INITIAL_CONTACT or the unique policy).",
        None,
        &[(&[], s.replaced)],
    )?;
    f.counter(
        "ike_drops",
        "IKE datagrams dropped, by reason.",
        None,
        &[
            (&[("reason", "malformed")], s.malformed),
            (&[("reason", "unknown_spi")], s.unknown_spi),
            (&[("reason", "integrity")], s.integrity),
            (&[("reason", "unexpected")], s.unexpected),
            (&[("reason", "overloaded")], s.overloaded),
            (&[("reason", "source_limited")], s.source_limited),
            (&[("reason", "shutting_down")], s.refused_closing),
        ],
    )
}

/// Per child SA and direction; the `spi` label is that direction's SPI (hex).
fn encode_children(
    f: &mut Family<'_, '_>,
    children: &[ChildFigures],
) -> Result<(), std::fmt::Error> {
    let spis: Vec<(String, String)> = children
        .iter()
        .map(|c| (format!("{:08x}", c.spi_in), format!("{:08x}", c.spi_out)))
        .collect();
    let labels: Vec<[[(&str, &str); 4]; 2]> = children
        .iter()
        .zip(&spis)
        .map(|(c, (spi_in, spi_out))| {
            let l = |dir, spi| {
                [
                    ("connection", c.connection.as_str()),
                    ("child", c.child.as_str()),
                    ("direction", dir),
                    ("spi", spi),
                ]
            };
            [l("in", spi_in.as_str()), l("out", spi_out.as_str())]
        })
        .collect();
    let series = |pick: fn(&ChildFigures) -> (u64, u64)| -> Vec<(&Labels<'_>, u64)> {
        children
            .iter()
            .zip(&labels)
            .flat_map(|(c, [li, lo])| {
                let (i, o) = pick(c);
                [(&li[..], i), (&lo[..], o)]
            })
            .collect()
    };
    f.counter(
        "child_sa",
        "Inner bytes through each child SA, by direction.",
        Some(Unit::Bytes),
        &series(|c| (c.bytes_in, c.bytes_out)),
    )?;
    f.counter(
        "child_sa_packets",
        "Packets through each child SA, by direction.",
        None,
        &series(|c| (c.packets_in, c.packets_out)),
    )
}

fn encode_outbound(f: &mut Family<'_, '_>, o: &OutStats) -> Result<(), std::fmt::Error> {
    f.counter(
        "tun_read_packets",
        "Packets read from the TUN device.",
        None,
        &[(&[], o.tun_packets)],
    )?;
    f.counter(
        "esp_sent_packets",
        "ESP datagrams sent.",
        None,
        &[(&[], o.esp_sent)],
    )?;
    f.counter(
        "outbound_drops",
        "Outbound packets dropped, by reason: no policy covered them, their trap was full or its negotiation failed, ESP refused to encapsulate them (lifetime or sequence numbers exhausted).",
        None,
        &[
            (&[("reason", "no_policy")], o.no_policy),
            (&[("reason", "trap")], o.trap_dropped),
            (&[("reason", "encap_error")], o.encap_errors),
        ],
    )?;
    f.counter(
        "trap_held_packets",
        "Packets a trap policy held while their SA was negotiated.",
        None,
        &[(&[], o.trap_held)],
    )?;
    f.counter(
        "udp_send_errors",
        "UDP sends of ESP that failed.",
        None,
        &[(&[], o.send_errors)],
    )
}

fn encode_inbound(f: &mut Family<'_, '_>, i: &InStats) -> Result<(), std::fmt::Error> {
    f.counter(
        "esp_received_packets",
        "ESP packets accepted.",
        None,
        &[(&[], i.esp_received)],
    )?;
    // Every reason, zeros included, so that each series exists from the first scrape.
    let count = |name: &str| {
        i.drops
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let reasons: Vec<([(&str, &str); 1], u64)> = esp::DropReason::NAMES
        .iter()
        .map(|n| ([("reason", *n)], count(n)))
        .collect();
    let drops: Vec<(&Labels<'_>, u64)> = reasons.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.counter(
        "esp_drops",
        "Inbound ESP packets dropped, by reason.",
        None,
        &drops,
    )?;
    f.counter(
        "natt_malformed",
        "Malformed datagrams on the NAT-T port.",
        None,
        &[(&[], i.malformed)],
    )?;
    f.counter(
        "natt_keepalives_received",
        "NAT-T keepalives received.",
        None,
        &[(&[], i.keepalives)],
    )?;
    f.counter(
        "ike_handoff",
        "IKE messages on the NAT-T port passed from the inbound thread to the control task.",
        None,
        &[(&[], i.ike_received)],
    )?;
    f.counter(
        "ike_handoff_backpressure",
        "IKE messages that found the control task's queue full and waited for room.",
        None,
        &[(&[], i.ike_backpressure)],
    )?;
    f.counter(
        "ike_handoff_drops",
        "IKE messages on the NAT-T port dropped on the way to the control task, by reason.",
        None,
        &[
            (&[("reason", "queue_full")], i.ike_dropped_queue_full),
            (&[("reason", "closed")], i.ike_dropped_closed),
        ],
    )?;
    f.counter(
        "tun_write_errors",
        "Writes of decapsulated packets to the TUN device that failed.",
        None,
        &[(&[], i.tun_errors)],
    )
}

fn encode_mediation(f: &mut Family<'_, '_>, m: &MediationFigures) -> Result<(), std::fmt::Error> {
    f.gauge(
        "mediation_registered_peers",
        "Peers registered at this mediation server.",
        &[(&[], m.registered_peers as u64)],
    )?;
    let direct = m.mediated_connections.saturating_sub(m.relayed_connections);
    f.gauge(
        "mediated_connections",
        "Mediated connections whose connectivity checks chose a path, by path: direct (peer to peer) or relayed (through the mediation server's relay).",
        &[
            (&[("path", "direct")], direct as u64),
            (&[("path", "relayed")], m.relayed_connections as u64),
        ],
    )
}

/// Reasons as label sets, for [`Family::counter`].
fn by_reason<'a>(reasons: &'a [(&'static str, u64)]) -> Vec<([(&'static str, &'a str); 1], u64)> {
    reasons
        .iter()
        .map(|(n, v)| ([("reason", *n)], *v))
        .collect()
}

fn encode_relays(f: &mut Family<'_, '_>, r: &RelayFigures) -> Result<(), std::fmt::Error> {
    f.gauge(
        "relays",
        "Relays this mediation server runs now for peers behind symmetric NATs.",
        &[(&[], r.open)],
    )?;
    f.counter(
        "relays_opened",
        "Relays this mediation server opened.",
        None,
        &[(&[], r.opened)],
    )?;
    let refused = by_reason(&r.refused);
    let refused: Vec<(&Labels<'_>, u64)> = refused.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.counter(
        "relays_refused",
        "Relays two peers asked for that were not opened, by reason: limit (the most relays run already), socket_error (no UDP port).",
        None,
        &refused,
    )?;
    let closed = by_reason(&r.closed);
    let closed: Vec<(&Labels<'_>, u64)> = closed.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.counter(
        "relays_closed",
        "Relays closed, by reason: idle (nothing arrived for 300 s), failed.",
        None,
        &closed,
    )?;
    f.counter(
        "relay",
        "Bytes (UDP payload) the relays forwarded from one peer to the other.",
        Some(Unit::Bytes),
        &[(&[], r.bytes)],
    )?;
    f.counter(
        "relay_datagrams",
        "Datagrams the relays forwarded from one peer to the other.",
        None,
        &[(&[], r.datagrams)],
    )?;
    f.counter(
        "relay_binds",
        "Bind datagrams with a good token (a peer claiming its side of a relay).",
        None,
        &[(&[], r.binds)],
    )?;
    let drops = by_reason(&r.drops);
    let drops: Vec<(&Labels<'_>, u64)> = drops.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.counter(
        "relay_drops",
        "Datagrams the relays dropped, by reason: unknown_source (an address that did not bind), peer_unbound (the other side has not bound yet), bad_token (a bind with a token not the relay's), over_rate (over 32 MB/s), send_error.",
        None,
        &drops,
    )
}

fn encode_pools(f: &mut Family<'_, '_>, pools: &[PoolFigures]) -> Result<(), std::fmt::Error> {
    if pools.is_empty() {
        return Ok(());
    }
    let names: Vec<[(&str, &str); 1]> = pools.iter().map(|p| [("pool", p.name.as_str())]).collect();
    let size: Vec<(&Labels<'_>, u64)> = names
        .iter()
        .zip(pools)
        .map(|(l, p)| (&l[..], u64::from(p.size)))
        .collect();
    f.gauge(
        "pool_addresses",
        "Addresses in each virtual IP pool.",
        &size,
    )?;
    let leases: Vec<([(&str, &str); 2], u64)> = pools
        .iter()
        .flat_map(|p| {
            [
                (
                    [("pool", p.name.as_str()), ("state", "online")],
                    p.online as u64,
                ),
                (
                    [("pool", p.name.as_str()), ("state", "offline")],
                    p.offline as u64,
                ),
            ]
        })
        .collect();
    let leases: Vec<(&Labels<'_>, u64)> = leases.iter().map(|(l, v)| (&l[..], *v)).collect();
    f.gauge(
        "pool_leases",
        "Leases of each virtual IP pool: online (an IKE SA holds it) or offline (kept for its identity).",
        &leases,
    )
}

/// Pipe figures, per pipe (`pipe` label): `esprit_pipe_connections`,
/// `esprit_pipe_connections_{opened,refused,failed}_total` and
/// `esprit_pipe_bytes_total{direction="up"|"down"}` (up: from the side that connects
/// towards `remote`); written only when the daemon has a netstack.
pub fn encode_pipes(
    enc: &mut DescriptorEncoder<'_>,
    pipes: &[PipeFigures],
) -> Result<(), std::fmt::Error> {
    let mut f = Family { enc };
    let labels: Vec<[(&'static str, &str); 1]> =
        pipes.iter().map(|p| [("pipe", p.name.as_str())]).collect();
    let series = |get: fn(&PipeFigures) -> u64| -> Vec<(&Labels<'_>, u64)> {
        labels
            .iter()
            .zip(pipes)
            .map(|(l, p)| (&l[..], get(p)))
            .collect()
    };
    f.gauge(
        "pipe_connections",
        "Pipe connections (UDP: flows) open now.",
        &series(|p| p.active),
    )?;
    f.counter(
        "pipe_connections_opened",
        "Pipe connections (UDP: flows) opened.",
        None,
        &series(|p| p.opened),
    )?;
    f.counter(
        "pipe_connections_refused",
        "Pipe connections refused at max_connections.",
        None,
        &series(|p| p.refused),
    )?;
    f.counter(
        "pipe_connections_failed",
        "Pipe connections that could not be made (name, refused, reset, no address).",
        None,
        &series(|p| p.failed),
    )?;
    let up: Vec<[(&'static str, &str); 2]> = pipes
        .iter()
        .map(|p| [("pipe", p.name.as_str()), ("direction", "up")])
        .collect();
    let down: Vec<[(&'static str, &str); 2]> = pipes
        .iter()
        .map(|p| [("pipe", p.name.as_str()), ("direction", "down")])
        .collect();
    let mut bytes: Vec<(&Labels<'_>, u64)> = Vec::new();
    for ((u, d), p) in up.iter().zip(&down).zip(pipes) {
        bytes.push((&u[..], p.bytes_up));
        bytes.push((&d[..], p.bytes_down));
    }
    f.counter(
        "pipe",
        "Bytes through pipes: up from the side that connects, down back to it.",
        Some(Unit::Bytes),
        &bytes,
    )
}

#[cfg(test)]
mod tests;
