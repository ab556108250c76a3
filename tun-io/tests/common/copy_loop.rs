//! A TUN <-> UDP copy loop without crypto: the dataplane's skeleton on tun-io's batched,
//! offloaded IO. Used by the TCP transfer test and by `examples/copy_loop.rs` (the bench).
//!
//! Outbound: one TUN read (a TSO super-packet, split into MTU-sized packets) becomes one
//! `GsoBatch` and, usually, one GSO `sendmsg`. Inbound: one `recvmmsg` with GRO returns up
//! to 32 aggregates of up to 64 datagrams; their payloads are IP packets, pushed into a
//! `PacketBatch` and written with GRO coalescing, one write per flow per batch.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tun_io::{GsoBatch, PacketBatch, Tun, UdpRecvBatch, UdpSocket, TUN_BATCH, UDP_BATCH};

/// Bytes kept in front of every packet: where ESP and UDP headers would go.
pub const HEADROOM: usize = 64;

/// How long a blocked thread waits before looking at the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// Counters of both directions.
#[derive(Debug, Default)]
pub struct Stats {
    /// TUN reads that returned packets.
    pub tun_reads: AtomicU64,
    /// IP packets those reads yielded (after splitting super-packets).
    pub tun_packets: AtomicU64,
    /// Most packets one TUN read yielded.
    pub max_per_read: AtomicU64,
    /// UDP messages received (GRO aggregates).
    pub udp_msgs: AtomicU64,
    /// UDP datagrams received.
    pub udp_datagrams: AtomicU64,
    /// Most datagrams one UDP message held.
    pub max_per_msg: AtomicU64,
    /// Errors skipped over.
    pub errors: AtomicU64,
}

impl Stats {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "tun: {} reads -> {} packets (max {}/read); udp: {} msgs -> {} datagrams (max {}/msg); errors {}",
            g(&self.tun_reads),
            g(&self.tun_packets),
            g(&self.max_per_read),
            g(&self.udp_msgs),
            g(&self.udp_datagrams),
            g(&self.max_per_msg),
            g(&self.errors),
        )
    }
}

/// A running loop: one thread per direction.
pub struct CopyLoop {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// Counters of both directions.
    pub stats: Arc<Stats>,
}

impl CopyLoop {
    /// Starts copying between `tun` and `udp`, sending to `peer`.
    pub fn start(tun: Tun, udp: UdpSocket, peer: SocketAddr) -> io::Result<CopyLoop> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let udp = Arc::new(udp);
        let room = usize::from(tun.mtu()?) + HEADROOM;
        let out = {
            let (tun, udp, stop, stats) = (tun.share(), udp.clone(), stop.clone(), stats.clone());
            thread::spawn(move || tun_to_udp(tun, &udp, peer, room, &stop, &stats))
        };
        let inb = {
            let (stop, stats) = (stop.clone(), stats.clone());
            thread::spawn(move || udp_to_tun(tun, &udp, room, &stop, &stats))
        };
        Ok(CopyLoop {
            stop,
            threads: vec![out, inb],
            stats,
        })
    }

    /// Stops both threads and returns the first error either hit.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = Ok(());
        for t in self.threads.drain(..) {
            let res = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("loop thread panicked")));
            if r.is_ok() {
                r = res;
            }
        }
        r
    }
}

impl Drop for CopyLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn note_max(a: &AtomicU64, v: u64) {
    a.fetch_max(v, Ordering::Relaxed);
}

fn tun_to_udp(
    mut tun: Tun,
    udp: &UdpSocket,
    peer: SocketAddr,
    room: usize,
    stop: &AtomicBool,
    stats: &Stats,
) -> io::Result<()> {
    let mut batch = PacketBatch::new(TUN_BATCH, HEADROOM, room);
    let mut gso = GsoBatch::new(256 * 1024);
    while !stop.load(Ordering::Relaxed) {
        if !tun.wait_readable(Some(TICK))? {
            continue;
        }
        let n = match tun.recv_into(&mut batch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        stats.tun_reads.fetch_add(1, Ordering::Relaxed);
        stats.tun_packets.fetch_add(n as u64, Ordering::Relaxed);
        note_max(&stats.max_per_read, n as u64);
        for p in batch.iter() {
            if !gso.push(peer, None, p) {
                flush_udp(udp, &mut gso, stats);
                gso.push(peer, None, p);
            }
        }
        flush_udp(udp, &mut gso, stats);
    }
    Ok(())
}

fn flush_udp(udp: &UdpSocket, gso: &mut GsoBatch, stats: &Stats) {
    if udp.send_batch(gso).is_err() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn udp_to_tun(
    mut tun: Tun,
    udp: &UdpSocket,
    room: usize,
    stop: &AtomicBool,
    stats: &Stats,
) -> io::Result<()> {
    let mut rb = UdpRecvBatch::new(UDP_BATCH);
    let mut out = PacketBatch::new(TUN_BATCH, 16, room);
    while !stop.load(Ordering::Relaxed) {
        match udp.recv_batch_timeout(&mut rb, TICK) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        stats
            .udp_msgs
            .fetch_add(rb.messages() as u64, Ordering::Relaxed);
        stats
            .udp_datagrams
            .fetch_add(rb.len() as u64, Ordering::Relaxed);
        for i in 0..rb.messages() {
            note_max(&stats.max_per_msg, rb.datagrams_in(i) as u64);
        }
        for d in rb.iter() {
            if !out.push(d.data) && out.is_full() {
                flush_tun(&mut tun, &mut out, stats);
                out.push(d.data);
            }
        }
        flush_tun(&mut tun, &mut out, stats);
    }
    Ok(())
}

fn flush_tun(tun: &mut Tun, out: &mut PacketBatch, stats: &Stats) {
    if tun.send_from(out).is_err() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
}
