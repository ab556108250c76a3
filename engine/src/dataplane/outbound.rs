//! Device -> SPD -> ESP -> UDP.
//!
//! Each packet device (the TUN, a userspace stack, a route-based connection's own TUN)
//! has its own SPD: a packet read from a device is matched only against the policies of
//! the child SAs bound to that device. One TUN read yields up to a 64 KiB TCP super-packet split into MTU-sized packets; each
//! is looked up in the SPD and encapsulated straight into a [`GsoBatch`], so a run of
//! equal-size ESP datagrams to one peer leaves with one GSO `sendmsg`.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use esp::{Spd, SpdError};
use tun_io::{poll_readable, GsoBatch, PacketBatch, PacketReader, TUN_BATCH};

use super::{
    DevId, DpEvent, Inbox, NattSockets, OutCmd, OutSa, OutStats, Policies, RouteId, TrapId, TICK,
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
    dev: DevId,
    current: u32,
    successors: Vec<u32>,
}

/// A trap policy's held packets.
struct Trap {
    dev: DevId,
    held: Vec<Vec<u8>>,
    last_acquire: Option<Instant>,
}

/// The policies of one packet device: child SAs' and trap policies.
#[derive(Default)]
struct Domain {
    spd: Spd<RouteId>,
    traps: Spd<TrapId>,
}

struct Outbound {
    domains: HashMap<DevId, Domain>,
    routes: HashMap<RouteId, Route>,
    sas: HashMap<u32, Box<OutSa>>,
    traps: HashMap<TrapId, Trap>,
    socks: NattSockets,
    gso4: GsoBatch,
    gso6: GsoBatch,
    stats: OutStats,
    events: tokio::sync::mpsc::Sender<DpEvent>,
}

pub(super) fn run(
    main: Box<dyn PacketReader>,
    socks: NattSockets,
    inbox: Inbox<OutCmd>,
    events: tokio::sync::mpsc::Sender<DpEvent>,
    stop: &AtomicBool,
    mtu: usize,
) {
    let mut batch = PacketBatch::new(TUN_BATCH, READ_HEADROOM, mtu + READ_HEADROOM);
    let mut st = Outbound {
        domains: HashMap::new(),
        routes: HashMap::new(),
        sas: HashMap::new(),
        traps: HashMap::new(),
        socks,
        gso4: GsoBatch::new(GSO_BYTES),
        gso6: GsoBatch::new(GSO_BYTES),
        stats: OutStats::default(),
        events,
    };
    // The devices' readers are non-blocking: a busy thread reads until every device is
    // empty and polls only then.
    let mut devices: Vec<(DevId, Box<dyn PacketReader>)> = vec![(super::MAIN_DEV, main)];
    let mut idle = false;
    // Device changes drained from the mailbox, applied at the top of the loop (not
    // while the devices are being read).
    let mut device_cmds = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Device changes set aside after the last read are applied before sleeping.
        if std::mem::take(&mut idle) && device_cmds.is_empty() {
            let mut fds: Vec<_> = devices.iter().map(|(_, d)| d.as_fd()).collect();
            fds.push(inbox.waker.as_fd());
            if let Err(e) = poll_readable(&fds, Some(TICK)) {
                tracing::error!("outbound dataplane: poll failed: {e}");
                return;
            }
        }
        if inbox.pending() {
            apply_pending(&inbox, &mut st, &mut device_cmds);
        }
        for cmd in device_cmds.drain(..) {
            match cmd {
                OutCmd::AddDevice { dev, reader, mtu } => {
                    if mtu + READ_HEADROOM > batch.room() {
                        batch = PacketBatch::new(TUN_BATCH, READ_HEADROOM, mtu + READ_HEADROOM);
                    }
                    devices.retain(|(d, _)| *d != dev);
                    devices.push((dev, reader));
                }
                OutCmd::RemoveDevice { dev, done } => {
                    devices.retain(|(d, _)| *d != dev);
                    let _ = done.send(());
                }
                cmd => st.apply(cmd),
            }
        }
        let mut busy = false;
        let mut gone = Vec::new();
        for (dev, reader) in &mut devices {
            match reader.recv_into(&mut batch) {
                Ok(_) => busy = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    busy = true;
                    continue;
                }
                Err(e) => {
                    // A deleted TUN fails every read (EBADFD) and polls ready for ever:
                    // reading on would spin this thread and flood the log. Stop reading
                    // it and let the control task decide.
                    gone.push(*dev);
                    let _ = st.events.try_send(DpEvent::DeviceGone {
                        dev: *dev,
                        error: e,
                    });
                    continue;
                }
            }
            st.stats.tun_reads += 1;
            // Commands queued before these packets were read apply to them: a route
            // is posted before the OS routes its traffic to the device.
            if inbox.pending() {
                apply_pending(&inbox, &mut st, &mut device_cmds);
            }
            st.read_batch(*dev, &batch);
        }
        if !gone.is_empty() {
            devices.retain(|(d, _)| !gone.contains(d));
        }
        if !busy {
            // Send what the reads gathered before going to sleep.
            st.flush();
            idle = true;
            continue;
        }
        // A full GSO buffer flushes itself; otherwise the next read may add to its runs.
        if st.gso4.remaining() < FLUSH_BELOW || st.gso6.remaining() < FLUSH_BELOW {
            st.flush();
        }
    }
}

/// Applies the queued commands, setting device changes aside in `devices` for the
/// loop to apply.
fn apply_pending(inbox: &Inbox<OutCmd>, st: &mut Outbound, devices: &mut Vec<OutCmd>) {
    for cmd in inbox.drain() {
        match cmd {
            OutCmd::AddDevice { .. } | OutCmd::RemoveDevice { .. } => devices.push(cmd),
            cmd => st.apply(cmd),
        }
    }
}

impl Outbound {
    /// Encrypts and queues the packets one device read.
    fn read_batch(&mut self, dev: DevId, batch: &PacketBatch) {
        // The domain is taken out for the batch so the lookups borrow nothing of `self`.
        let Some(domain) = self.domains.remove(&dev) else {
            self.stats.tun_packets += batch.len() as u64;
            self.stats.no_policy += batch.len() as u64;
            return;
        };
        for p in batch.iter() {
            self.stats.tun_packets += 1;
            self.route_packet(&domain, dev, p);
        }
        self.domains.insert(dev, domain);
    }

    fn apply(&mut self, cmd: OutCmd) {
        match cmd {
            OutCmd::AddDevice { .. } | OutCmd::RemoveDevice { .. } => {}
            OutCmd::AddRoute {
                dev,
                route,
                sa,
                policies,
            } => {
                let spi = sa.sa.spi();
                let domain = self.domains.entry(dev).or_default();
                install_policies(&mut domain.spd, &policies, route);
                self.sas.insert(spi, sa);
                self.routes.insert(
                    route,
                    Route {
                        dev,
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
                    self.sas.insert(spi, sa);
                }
            }
            OutCmd::RemoveSa { spi } => self.remove_sa(spi),
            OutCmd::PeerMoved { ike, dst } => {
                for sa in self.sas.values_mut().filter(|s| s.ike == ike) {
                    sa.dst = dst;
                }
            }
            OutCmd::AddTrap {
                dev,
                trap,
                policies,
            } => {
                let domain = self.domains.entry(dev).or_default();
                install_policies(&mut domain.traps, &policies, trap);
                self.traps.insert(
                    trap,
                    Trap {
                        dev,
                        held: Vec::new(),
                        last_acquire: None,
                    },
                );
            }
            OutCmd::TrapFailed { trap } => {
                if let Some(t) = self.traps.get_mut(&trap) {
                    self.stats.trap_dropped += t.held.len() as u64;
                    t.held.clear();
                    t.last_acquire = None;
                }
            }
            OutCmd::RemoveTrap { trap } => {
                if let Some(t) = self.traps.remove(&trap) {
                    if let Some(d) = self.domains.get_mut(&t.dev) {
                        d.traps.remove(trap);
                    }
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
            let dev = route.dev;
            self.routes.remove(&id);
            if let Some(d) = self.domains.get_mut(&dev) {
                d.spd.remove(id);
            }
        } else {
            route.successors.retain(|s| *s != spi);
        }
    }

    /// Sends whatever held packets now match an SA.
    fn release_held(&mut self) {
        let held: Vec<(TrapId, DevId, Vec<Vec<u8>>)> = self
            .traps
            .iter_mut()
            .filter(|(_, t)| !t.held.is_empty())
            .map(|(id, t)| (*id, t.dev, std::mem::take(&mut t.held)))
            .collect();
        for (id, dev, held) in held {
            let mut keep = Vec::new();
            let Some(domain) = self.domains.remove(&dev) else {
                continue;
            };
            for p in held {
                if domain.spd.lookup(&p).is_some() {
                    self.route_packet(&domain, dev, &p);
                } else {
                    keep.push(p);
                }
            }
            self.domains.insert(dev, domain);
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
    fn route_packet(&mut self, domain: &Domain, dev: DevId, p: &[u8]) {
        let Some(route) = domain.spd.lookup(p) else {
            self.trap(domain, dev, p);
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
        // This SA's exact room (AEAD: 16 bytes before, AES-CBC: 24), so the ESP packet
        // starts at offset 0 and is never moved.
        let head = out.sa.head_len();
        let max = out.sa.packet_len(p.len());
        let mut soft = false;
        let mut failed = false;
        let mut fill = |buf: &mut [u8]| {
            let start = head;
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
    fn trap(&mut self, domain: &Domain, dev: DevId, p: &[u8]) {
        let Some(id) = domain.traps.lookup(p) else {
            self.stats.no_policy += 1;
            return;
        };
        debug_assert_eq!(self.traps.get(&id).map(|t| t.dev), Some(dev));
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
