//! TUN -> SPD -> ESP -> UDP.
//!
//! One TUN read yields up to a 64 KiB TCP super-packet split into MTU-sized packets; each
//! is looked up in the SPD and encapsulated straight into a [`GsoBatch`], so a run of
//! equal-size ESP datagrams to one peer leaves with one GSO `sendmsg`.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use esp::{OutboundSa, Spd, SpdError};
use tun_io::{poll_readable, GsoBatch, PacketBatch, Tun, TUN_BATCH};

use super::{
    DpEvent, Inbox, NattSockets, OutCmd, OutSa, OutStats, Policies, RouteId, TrapId, TICK,
    TRAP_HOLD,
};

/// Bytes of headroom in TUN read slots (unused by ESP, which writes into the GSO buffer).
const READ_HEADROOM: usize = 64;

/// Bytes of one GSO send buffer: a few 64 KiB runs.
const GSO_BYTES: usize = 256 * 1024;

/// Flush the GSO buffers once less than this is free: the next TUN read (up to 64 KiB of
/// packets) would not fit without a flush anyway.
const FLUSH_BELOW: usize = 80 * 1024;

/// How often a trap asks again while its packets wait.
const ACQUIRE_INTERVAL: Duration = Duration::from_secs(1);

/// A route's outbound SA and, after a rekey, the one that takes over.
struct Route {
    current: u32,
    successors: Vec<u32>,
}

/// A trap policy's held packets.
#[derive(Default)]
struct Trap {
    held: Vec<Vec<u8>>,
    last_acquire: Option<Instant>,
}

struct Outbound {
    spd: Spd<RouteId>,
    routes: HashMap<RouteId, Route>,
    sas: HashMap<u32, OutSa>,
    traps_spd: Spd<TrapId>,
    traps: HashMap<TrapId, Trap>,
    socks: NattSockets,
    gso4: GsoBatch,
    gso6: GsoBatch,
    stats: OutStats,
    events: tokio::sync::mpsc::Sender<DpEvent>,
}

pub(super) fn run(
    mut tun: Tun,
    socks: NattSockets,
    inbox: Inbox<OutCmd>,
    events: tokio::sync::mpsc::Sender<DpEvent>,
    stop: &AtomicBool,
    mtu: usize,
) {
    let mut batch = PacketBatch::new(TUN_BATCH, READ_HEADROOM, mtu + READ_HEADROOM);
    let mut st = Outbound {
        spd: Spd::new(),
        routes: HashMap::new(),
        sas: HashMap::new(),
        traps_spd: Spd::new(),
        traps: HashMap::new(),
        socks,
        gso4: GsoBatch::new(GSO_BYTES),
        gso6: GsoBatch::new(GSO_BYTES),
        stats: OutStats::default(),
        events,
    };
    // Reads never block: a busy thread reads until the TUN is empty and polls only then.
    if let Err(e) = tun.set_nonblocking(true) {
        tracing::error!("outbound dataplane: TUN not made non-blocking: {e}");
        return;
    }
    let mut idle = false;
    while !stop.load(Ordering::Relaxed) {
        if idle {
            idle = false;
            match poll_readable(&[tun.as_fd(), inbox.waker.as_fd()], Some(TICK)) {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("outbound dataplane: poll failed: {e}");
                    return;
                }
            }
        }
        if inbox.pending() {
            for cmd in inbox.drain() {
                st.apply(cmd);
            }
        }
        match tun.recv_into(&mut batch) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Send what the reads gathered before going to sleep.
                st.flush();
                idle = true;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("TUN read failed: {e}");
                st.flush();
                idle = true;
                continue;
            }
        }
        st.stats.tun_reads += 1;
        for p in batch.iter() {
            st.stats.tun_packets += 1;
            st.route_packet(p);
        }
        // A full GSO buffer flushes itself; otherwise the next read may add to its runs.
        if st.gso4.remaining() < FLUSH_BELOW || st.gso6.remaining() < FLUSH_BELOW {
            st.flush();
        }
    }
}

impl Outbound {
    fn apply(&mut self, cmd: OutCmd) {
        match cmd {
            OutCmd::AddRoute {
                route,
                sa,
                policies,
            } => {
                let spi = sa.sa.spi();
                install_policies(&mut self.spd, &policies, route);
                self.sas.insert(spi, *sa);
                self.routes.insert(
                    route,
                    Route {
                        current: spi,
                        successors: Vec::new(),
                    },
                );
                self.release_held();
            }
            OutCmd::AddSuccessor { route, sa } => {
                let spi = sa.sa.spi();
                if let Some(r) = self.routes.get_mut(&route) {
                    r.successors.push(spi);
                    self.sas.insert(spi, *sa);
                }
            }
            OutCmd::RemoveSa { spi } => self.remove_sa(spi),
            OutCmd::PeerMoved { ike, dst } => {
                for sa in self.sas.values_mut().filter(|s| s.ike == ike) {
                    sa.dst = dst;
                }
            }
            OutCmd::AddTrap { trap, policies } => {
                install_policies(&mut self.traps_spd, &policies, trap);
                self.traps.insert(trap, Trap::default());
            }
            OutCmd::TrapFailed { trap } => {
                if let Some(t) = self.traps.get_mut(&trap) {
                    self.stats.trap_dropped += t.held.len() as u64;
                    t.held.clear();
                    t.last_acquire = None;
                }
            }
            OutCmd::RemoveTrap { trap } => {
                self.traps_spd.remove(trap);
                if let Some(t) = self.traps.remove(&trap) {
                    self.stats.trap_dropped += t.held.len() as u64;
                }
            }
            OutCmd::Stats(reply) => {
                let mut s = self.stats.clone();
                s.sas = self
                    .sas
                    .iter()
                    .map(|(spi, o)| (*spi, o.sa.stats()))
                    .collect();
                let _ = reply.send(s);
            }
        }
    }

    fn remove_sa(&mut self, spi: u32) {
        if self.sas.remove(&spi).is_none() {
            return;
        }
        let Some((&id, route)) = self
            .routes
            .iter_mut()
            .find(|(_, r)| r.current == spi || r.successors.contains(&spi))
        else {
            return;
        };
        if route.current == spi {
            // The newest successor takes over: the peer has it installed by now.
            if let Some(next) = route.successors.pop() {
                route.current = next;
                return;
            }
            self.routes.remove(&id);
            self.spd.remove(id);
        } else {
            route.successors.retain(|s| *s != spi);
        }
    }

    /// Sends whatever held packets now match an SA.
    fn release_held(&mut self) {
        let held: Vec<(TrapId, Vec<Vec<u8>>)> = self
            .traps
            .iter_mut()
            .map(|(id, t)| (*id, std::mem::take(&mut t.held)))
            .collect();
        for (id, held) in held {
            let mut keep = Vec::new();
            for p in held {
                if self.spd.lookup(&p).is_some() {
                    self.route_packet(&p);
                } else {
                    keep.push(p);
                }
            }
            if let Some(t) = self.traps.get_mut(&id) {
                if keep.is_empty() {
                    t.last_acquire = None;
                }
                t.held = keep;
            }
        }
        self.flush();
    }

    #[inline]
    fn route_packet(&mut self, p: &[u8]) {
        let Some(route) = self.spd.lookup(p) else {
            self.trap(p);
            return;
        };
        let Some(spi) = self.routes.get(&route).map(|r| r.current) else {
            self.stats.no_policy += 1;
            return;
        };
        let Some(out) = self.sas.get_mut(&spi) else {
            self.stats.no_policy += 1;
            return;
        };
        let gso = match out.dst {
            std::net::SocketAddr::V4(_) => &mut self.gso4,
            std::net::SocketAddr::V6(_) => &mut self.gso6,
        };
        let max = OutboundSa::HEADROOM + OutboundSa::encapsulated_len(p.len());
        let mut soft = false;
        let mut failed = false;
        let mut fill = |buf: &mut [u8]| {
            let start = OutboundSa::HEADROOM;
            buf[start..start + p.len()].copy_from_slice(p);
            match out.sa.encapsulate(buf, start..start + p.len()) {
                Ok(e) => {
                    soft = e.soft_limit_crossed;
                    if e.packet.start != 0 {
                        buf.copy_within(e.packet.clone(), 0);
                    }
                    e.packet.len()
                }
                Err(_) => {
                    failed = true;
                    0
                }
            }
        };
        let (dst, src) = (out.dst, out.src);
        if !gso.push_with(dst, src, max, &mut fill) {
            let sock = self.socks.for_peer(&dst);
            flush_one(sock, gso, &mut self.stats);
            if !gso.push_with(dst, src, max, &mut fill) {
                self.stats.send_errors += 1;
                return;
            }
        }
        if failed {
            self.stats.encap_errors += 1;
        } else {
            self.stats.esp_sent += 1;
        }
        if soft {
            let _ = self.events.try_send(DpEvent::SoftExpired {
                spi,
                inbound: false,
            });
        }
    }

    /// A packet no SA covers: hold it if a trap policy does, and ask for an SA.
    fn trap(&mut self, p: &[u8]) {
        let Some(id) = self.traps_spd.lookup(p) else {
            self.stats.no_policy += 1;
            return;
        };
        let Some(t) = self.traps.get_mut(&id) else {
            self.stats.no_policy += 1;
            return;
        };
        if t.held.len() < TRAP_HOLD {
            t.held.push(p.to_vec());
            self.stats.trap_held += 1;
        } else {
            self.stats.trap_dropped += 1;
        }
        let now = Instant::now();
        if t.last_acquire
            .is_none_or(|at| now.duration_since(at) >= ACQUIRE_INTERVAL)
        {
            t.last_acquire = Some(now);
            let _ = self.events.try_send(DpEvent::Acquire { trap: id });
        }
    }

    fn flush(&mut self) {
        flush_one(self.socks.v4.as_deref(), &mut self.gso4, &mut self.stats);
        flush_one(self.socks.v6.as_deref(), &mut self.gso6, &mut self.stats);
    }
}

/// Installs selector pairs; pairs that can match nothing (an IPv4 subnet with an IPv6
/// one, as every pair of a dual-stack child includes) are skipped.
fn install_policies(spd: &mut Spd<u64>, policies: &Policies, handle: u64) {
    for (l, r) in policies {
        match spd.insert(l, r, handle) {
            Ok(()) | Err(SpdError::FamilyMismatch | SpdError::ProtoMismatch) => {}
            Err(e) => tracing::warn!("policy {l:?} -> {r:?} not installed: {e:?}"),
        }
    }
}

fn flush_one(sock: Option<&tun_io::UdpSocket>, gso: &mut GsoBatch, stats: &mut OutStats) {
    if gso.is_empty() {
        return;
    }
    let Some(sock) = sock else {
        stats.send_errors += gso.len() as u64;
        gso.clear();
        return;
    };
    stats.udp_sends += gso.runs() as u64;
    if let Err(e) = sock.send_batch(gso) {
        stats.send_errors += 1;
        tracing::debug!("ESP send failed: {e}");
    }
}
