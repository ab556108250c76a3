//! UDP -> SAD -> ESP -> device.
//!
//! One `recvmmsg` on a NAT-T socket returns up to 32 GRO aggregates of up to 64
//! datagrams each. ESP datagrams are decapsulated in place and their inner packets
//! gathered into a [`PacketBatch`] per packet device (the one the SA is bound to), which
//! a TUN writes with GRO coalescing, one write per flow. IKE messages go to the control
//! task; keepalives are counted and dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use esp::natt::{classify_4500, Datagram4500};
use esp::{DropCounters, InnerKind, Sad};
use tun_io::{
    poll_readable, PacketBatch, PacketWriter, UdpRecvBatch, UdpSocket, MIN_TUN_HEADROOM, TUN_BATCH,
    UDP_BATCH,
};

use super::{DevId, DpEvent, InCmd, InStats, Inbox, NattSockets, MAIN_DEV, TICK};

/// A device decrypted packets are written to, and the batch gathering them.
struct Sink {
    writer: Box<dyn PacketWriter>,
    out: PacketBatch,
}

impl Sink {
    fn new(writer: Box<dyn PacketWriter>, mtu: usize) -> Sink {
        Sink {
            writer,
            // Room for any inner packet the peer may send, whatever our own MTU.
            out: PacketBatch::new(TUN_BATCH, MIN_TUN_HEADROOM, 65535.max(mtu)),
        }
    }
}

struct Inbound {
    sad: Sad,
    drops: DropCounters,
    stats: InStats,
    /// Devices by id; the main device is first.
    sinks: Vec<(DevId, Sink)>,
    /// The device of each inbound SA not bound to the main device.
    dev_of: HashMap<u32, DevId>,
    mtu: usize,
    events: tokio::sync::mpsc::Sender<DpEvent>,
}

pub(super) fn run(
    main: Box<dyn PacketWriter>,
    socks: NattSockets,
    inbox: Inbox<InCmd>,
    events: tokio::sync::mpsc::Sender<DpEvent>,
    stop: &AtomicBool,
    mtu: usize,
) {
    let sockets: Vec<&UdpSocket> = [socks.v4.as_deref(), socks.v6.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let mut st = Inbound {
        sad: Sad::new(),
        drops: DropCounters::new(),
        stats: InStats::default(),
        sinks: vec![(MAIN_DEV, Sink::new(main, mtu))],
        dev_of: HashMap::new(),
        mtu,
        events,
    };
    let mut rb = UdpRecvBatch::new(UDP_BATCH);
    let mut fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.as_fd()).collect();
    fds.push(inbox.waker.as_fd());
    while !stop.load(Ordering::Relaxed) {
        let ready = match poll_readable(&fds, Some(TICK)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("inbound dataplane: poll failed: {e}");
                return;
            }
        };
        if ready & (1 << sockets.len()) != 0 {
            for cmd in inbox.drain() {
                st.apply(cmd);
            }
        }
        for (i, sock) in sockets.iter().enumerate() {
            if ready & (1 << i) == 0 {
                continue;
            }
            // Drain what is queued, a batch at a time, before polling again. Commands
            // are applied after each read and before its datagrams are processed: a
            // new inbound SA is queued before the IKE message that lets the peer use
            // it leaves, so it is here before the first packet on it can have been
            // read, with no wake-up or hand-shake with the control task.
            for _ in 0..8 {
                match sock.try_recv_batch(&mut rb) {
                    Ok(0) => break,
                    Ok(_) => {
                        if inbox.pending() {
                            for cmd in inbox.drain() {
                                st.apply(cmd);
                            }
                        }
                        st.receive(&mut rb, sock.local_addr());
                    }
                    Err(_) => break,
                }
            }
        }
        // One TUN write batch for everything drained, so GRO coalesces across receives.
        st.flush();
    }
}

impl Inbound {
    fn apply(&mut self, cmd: InCmd) {
        match cmd {
            InCmd::AddSa { sa, dev } => {
                if dev != MAIN_DEV {
                    self.dev_of.insert(sa.spi(), dev);
                }
                self.sad.insert(sa);
            }
            InCmd::RemoveSa { spi } => {
                self.sad.remove(spi);
                self.dev_of.remove(&spi);
            }
            InCmd::AddDevice { dev, writer } => {
                self.sinks.retain(|(d, _)| *d != dev);
                self.sinks.push((dev, Sink::new(writer, self.mtu)));
            }
            InCmd::RemoveDevice { dev, done } => {
                self.sinks.retain(|(d, _)| *d != dev);
                let _ = done.send(());
            }
            InCmd::Stats(reply) => {
                let mut s = self.stats.clone();
                s.sas = self.sad.iter().map(|sa| (sa.spi(), sa.stats())).collect();
                s.drops = self
                    .drops
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(name, n)| (name.to_string(), n))
                    .collect();
                let _ = reply.send(s);
            }
        }
    }

    fn receive(&mut self, rb: &mut UdpRecvBatch, bound: SocketAddr) {
        self.stats.udp_reads += rb.messages() as u64;
        for d in rb.iter_mut() {
            match classify_4500(d.data) {
                Datagram4500::Esp(_) => {}
                Datagram4500::Ike(msg) => {
                    let ev = DpEvent::Ike {
                        local: SocketAddr::new(d.dst_ip.unwrap_or(bound.ip()), d.local_port),
                        remote: d.src,
                        data: msg.to_vec(),
                    };
                    hand_over(&self.events, ev, &mut self.stats);
                    continue;
                }
                Datagram4500::Keepalive => {
                    self.stats.keepalives += 1;
                    continue;
                }
                Datagram4500::Malformed(_) => {
                    self.stats.malformed += 1;
                    continue;
                }
            }
            let len = d.data.len();
            match self.sad.decapsulate(d.data, 0..len) {
                Ok(dec) => {
                    self.stats.esp_received += 1;
                    if dec.soft_limit_crossed {
                        let _ = self.events.try_send(DpEvent::SoftExpired {
                            spi: dec.spi,
                            inbound: true,
                        });
                    }
                    if dec.kind == InnerKind::Dummy {
                        continue;
                    }
                    let inner = &d.data[dec.inner];
                    // Most SAs are the main device's: no lookup for them.
                    let dev = if self.dev_of.is_empty() {
                        MAIN_DEV
                    } else {
                        self.dev_of.get(&dec.spi).copied().unwrap_or(MAIN_DEV)
                    };
                    let Some((_, sink)) = self.sinks.iter_mut().find(|(d, _)| *d == dev) else {
                        self.stats.tun_errors += 1;
                        continue;
                    };
                    if !sink.out.push(inner) {
                        flush_sink(sink, &mut self.stats);
                        sink.out.push(inner);
                    }
                }
                Err(reason) => self.drops.record(reason),
            }
        }
    }

    fn flush(&mut self) {
        for (_, sink) in &mut self.sinks {
            flush_sink(sink, &mut self.stats);
        }
    }
}

fn flush_sink(sink: &mut Sink, stats: &mut InStats) {
    if sink.out.is_empty() {
        return;
    }
    if let Err(e) = sink.writer.send_from(&mut sink.out) {
        stats.tun_errors += 1;
        tracing::debug!("device write failed: {e}");
    }
}

/// How long the packet thread waits for room in the control task's queue before it
/// drops an IKE message: back-pressure onto the socket's receive buffer, bounded so a
/// storm of handshakes stalls ESP for milliseconds, not seconds.
const BACKPRESSURE: std::time::Duration = std::time::Duration::from_millis(50);

/// Passes an IKE message from port 4500 to the control task. The queue is sized for
/// bursts of many peers at once ([`super::EVENT_QUEUE`]); when it is full anyway, the
/// thread waits up to [`BACKPRESSURE`] for the control task to make room (counted as
/// `ike_backpressure`), and a message that still finds no room, or no control task, is
/// counted by reason, never dropped silently. The peer retransmits it.
fn hand_over(events: &tokio::sync::mpsc::Sender<DpEvent>, ev: DpEvent, stats: &mut InStats) {
    use tokio::sync::mpsc::error::TrySendError;
    let mut ev = match events.try_send(ev) {
        Ok(()) => {
            stats.ike_received += 1;
            return;
        }
        Err(TrySendError::Closed(_)) => {
            stats.ike_dropped_closed += 1;
            return;
        }
        Err(TrySendError::Full(ev)) => ev,
    };
    stats.ike_backpressure += 1;
    let deadline = std::time::Instant::now() + BACKPRESSURE;
    loop {
        std::thread::sleep(std::time::Duration::from_micros(200));
        match events.try_send(ev) {
            Ok(()) => {
                stats.ike_received += 1;
                return;
            }
            Err(TrySendError::Closed(_)) => {
                stats.ike_dropped_closed += 1;
                return;
            }
            Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => ev = back,
            Err(TrySendError::Full(_)) => {
                stats.ike_dropped_queue_full += 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike() -> DpEvent {
        DpEvent::Ike {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.2:4500".parse().unwrap(),
            data: vec![0; 28],
        }
    }

    #[test]
    fn every_ike_message_is_passed_on_or_counted() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let mut stats = InStats::default();
        for _ in 0..3 {
            hand_over(&tx, ike(), &mut stats);
        }
        // The third found the queue full, waited its bounded time, and was counted.
        assert_eq!((stats.ike_received, stats.ike_dropped_queue_full), (2, 1));
        assert_eq!(stats.ike_backpressure, 1);
        // Room made while it waits: the message goes through.
        let drain = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert!(rx.try_recv().is_ok());
            rx
        });
        hand_over(&tx, ike(), &mut stats);
        assert_eq!(stats.ike_received, 3);
        assert_eq!(stats.ike_dropped_queue_full, 1);
        let rx = drain.join().unwrap();
        drop(rx);
        hand_over(&tx, ike(), &mut stats);
        assert_eq!(stats.ike_dropped_closed, 1);
    }
}
