//! UDP pipes: flows (one per client address) between host sockets and smoltcp UDP
//! sockets, forward and reverse, with bounded queues that drop when full.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{resolve, Stack, UDP_BUFFER};
use crate::config::Pipe;
use crate::netstack::{add, PipeCounters};

/// A forward UDP pipe's flow: one client address, one smoltcp socket.
pub(super) struct Flow {
    pub(super) handle: SocketHandle,
    pub(super) port: u16,
    pub(super) remote: SocketAddr,
    pub(super) last_active: Instant,
}

/// A datagram from a host UDP socket.
pub(super) struct HostDatagram {
    pub(super) pipe: usize,
    pub(super) client: SocketAddr,
    pub(super) remote: Option<SocketAddr>,
    pub(super) data: Vec<u8>,
}

/// A reverse UDP pipe's flow: a client inside the tunnel and its host socket's task.
pub(super) struct RevFlow {
    pub(super) to_host: mpsc::Sender<Vec<u8>>,
    pub(super) last_active: Instant,
}

/// A reply from a reverse flow's host socket, for its client in the tunnel.
pub(super) struct RevDatagram {
    pub(super) pipe: usize,
    pub(super) client: SocketAddr,
    pub(super) data: Vec<u8>,
}

pub(super) fn udp_buffer() -> udp::PacketBuffer<'static> {
    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; UDP_BUFFER])
}

/// A reverse UDP flow's host side: a socket connected to the pipe's remote; datagrams
/// from the tunnel go out of it, replies go back to the stack. Ends when the stack
/// drops the flow.
pub(super) async fn rev_udp_flow(
    pipe: usize,
    client: SocketAddr,
    mut from_stack: mpsc::Receiver<Vec<u8>>,
    to_stack: mpsc::Sender<RevDatagram>,
    pipes: Arc<Vec<(Pipe, PipeCounters)>>,
) {
    let (cfg, counters) = &pipes[pipe];
    let sock = match resolve(&cfg.remote).await {
        Some(addr) => {
            let any: SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            match UdpSocket::bind(any).await {
                Ok(s) => s.connect(addr).await.map(|()| s),
                Err(e) => Err(e),
            }
        }
        None => Err(io::Error::other("cannot resolve")),
    };
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("pipe {}: {}: {e}", cfg.name, cfg.remote);
            add(&counters.failed, 1);
            return;
        }
    };
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            d = from_stack.recv() => match d {
                Some(d) => {
                    let _ = sock.send(&d).await;
                }
                None => break,
            },
            r = sock.recv(&mut buf) => {
                if let Ok(n) = r {
                    // A full queue drops the reply, as UDP may.
                    let _ = to_stack.try_send(RevDatagram {
                        pipe,
                        client,
                        data: buf[..n].to_vec(),
                    });
                }
            }
        }
    }
}

/// Reads a forward UDP pipe's host socket.
pub(super) async fn udp_host_loop(
    pipe: usize,
    cfg: Pipe,
    sock: Arc<UdpSocket>,
    to_stack: mpsc::Sender<HostDatagram>,
) {
    let mut buf = vec![0u8; 65536];
    let mut cached: Option<(SocketAddr, Instant)> = None;
    loop {
        let (n, client) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("pipe {}: {e}", cfg.name);
                continue;
            }
        };
        // A name is looked up again every 30 s, not per datagram.
        let remote = match cached {
            Some((a, at)) if at.elapsed() < Duration::from_secs(30) => Some(a),
            _ => {
                let r = resolve(&cfg.remote).await;
                cached = r.map(|a| (a, Instant::now()));
                r
            }
        };
        // A full queue drops the datagram: UDP's own contract.
        let _ = to_stack.try_send(HostDatagram {
            pipe,
            client,
            remote,
            data: buf[..n].to_vec(),
        });
    }
}

impl Stack {
    /// Datagrams from clients in the tunnel to reverse UDP pipes: each client's go to
    /// its flow's host socket.
    pub(super) fn service_rev_udp(&mut self) -> bool {
        let mut moved = false;
        for (&pipe, &h) in &self.rev_udp {
            let (cfg, counters) = &self.pipes[pipe];
            let sock = self.sockets.get_mut::<udp::Socket>(h);
            while let Ok((data, meta)) = sock.recv() {
                moved = true;
                let client = SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port);
                let key = (pipe, client);
                if !self.rev_flows.contains_key(&key) {
                    if counters.active.load(Ordering::Relaxed) >= cfg.max_connections as u64 {
                        add(&counters.refused, 1);
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(256);
                    tokio::spawn(rev_udp_flow(
                        pipe,
                        client,
                        rx,
                        self.rev_tx.clone(),
                        self.pipes.clone(),
                    ));
                    add(&counters.opened, 1);
                    add(&counters.active, 1);
                    self.rev_flows.insert(
                        key,
                        RevFlow {
                            to_host: tx,
                            last_active: Instant::now(),
                        },
                    );
                }
                let Some(f) = self.rev_flows.get_mut(&key) else {
                    continue;
                };
                f.last_active = Instant::now();
                // The client connected to `listen`: its datagrams count as "up".
                if f.to_host.try_send(data.to_vec()).is_ok() {
                    add(&counters.bytes_up, data.len() as u64);
                }
            }
        }
        moved
    }

    /// A reply from a reverse flow's host socket: back to its client in the tunnel.
    pub(super) fn rev_udp_from_host(&mut self, d: RevDatagram) {
        let Some(&h) = self.rev_udp.get(&d.pipe) else {
            return;
        };
        if let Some(f) = self.rev_flows.get_mut(&(d.pipe, d.client)) {
            f.last_active = Instant::now();
        }
        let sock = self.sockets.get_mut::<udp::Socket>(h);
        if sock.send_slice(&d.data, d.client).is_ok() {
            add(&self.pipes[d.pipe].1.bytes_down, d.data.len() as u64);
        }
    }

    /// A datagram from a forward UDP pipe's client: into its flow's socket.
    pub(super) fn udp_from_host(&mut self, d: HostDatagram) {
        let key = (d.pipe, d.client);
        let counters = &self.pipes[d.pipe].1;
        let Some(remote) = d.remote else {
            add(&counters.failed, 1);
            return;
        };
        if !self.flows.contains_key(&key) {
            let max = self.pipes[d.pipe].0.max_connections as u64;
            if self.active(d.pipe) >= max {
                add(&self.pipes[d.pipe].1.refused, 1);
                return;
            }
            let Some(port) = self.alloc_port() else {
                add(&self.pipes[d.pipe].1.failed, 1);
                return;
            };
            let mut s = udp::Socket::new(udp_buffer(), udp_buffer());
            if s.bind(port).is_err() {
                self.ports.remove(&port);
                add(&self.pipes[d.pipe].1.failed, 1);
                return;
            }
            let handle = self.sockets.add(s);
            add(&self.pipes[d.pipe].1.opened, 1);
            add(&self.pipes[d.pipe].1.active, 1);
            self.flows.insert(
                key,
                Flow {
                    handle,
                    port,
                    remote,
                    last_active: Instant::now(),
                },
            );
        }
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        f.remote = remote;
        f.last_active = Instant::now();
        let sock = self.sockets.get_mut::<udp::Socket>(f.handle);
        if sock.send_slice(&d.data, remote).is_ok() {
            add(&self.pipes[d.pipe].1.bytes_up, d.data.len() as u64);
        }
    }

    /// Datagrams back from the tunnel go to each flow's client.
    pub(super) fn service_flows(&mut self) -> bool {
        let mut moved = false;
        for ((pipe, client), f) in &mut self.flows {
            let sock = self.sockets.get_mut::<udp::Socket>(f.handle);
            // Straight from smoltcp's buffer to the host socket, no copy in between.
            while let Ok((data, meta)) = sock.recv() {
                // Only the flow's remote answers it.
                if SocketAddr::new(meta.endpoint.addr.into(), meta.endpoint.port) != f.remote {
                    continue;
                }
                f.last_active = Instant::now();
                moved = true;
                if let Some(h) = self.udp_hosts.get(pipe) {
                    if h.try_send_to(data, *client).is_ok() {
                        add(&self.pipes[*pipe].1.bytes_down, data.len() as u64);
                    }
                }
            }
        }
        moved
    }
}

impl Stack {
    /// Drops flows that were quiet for their pipe's idle timeout.
    pub(super) fn expire_udp(&mut self, now: Instant) {
        let pipes = &self.pipes;
        let mut gone = Vec::new();
        self.flows.retain(|(pipe, _), f| {
            let keep = now.duration_since(f.last_active) <= pipes[*pipe].0.idle_timeout;
            if !keep {
                gone.push((f.handle, f.port));
                pipes[*pipe].1.active.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
        for (h, p) in gone {
            self.sockets.remove(h);
            self.ports.remove(&p);
        }
        // Dropping a reverse flow's sender ends its host task.
        self.rev_flows.retain(|(pipe, _), f| {
            let keep = now.duration_since(f.last_active) <= pipes[*pipe].0.idle_timeout;
            if !keep {
                pipes[*pipe].1.active.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
    }
}
