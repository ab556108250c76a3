//! The stack's thread: smoltcp's interface and sockets, the pipes' host sockets, and
//! the copying between them.
//!
//! Buffering is bounded on every path. TCP, host to tunnel: a host connection's task
//! reads a chunk only when the channel to the stack has room (a few chunks), and the
//! stack takes a chunk only when it has put the previous one into the smoltcp socket's
//! send buffer (`netstack.tcp_buffer`). Tunnel to host: the stack takes bytes out of
//! the smoltcp receive buffer only when the channel to the host task has room, so a
//! host that does not read closes the TCP window towards the far side. UDP: a full
//! queue drops the datagram.
//!
//! Half-close: a host EOF becomes a FIN into the tunnel once the data before it went
//! out, and a FIN from the tunnel shuts the host socket's write side once the data
//! before it was written. A reset on either side resets the other (the host side by
//! closing with `SO_LINGER` 0).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Notify};

mod tcp_pipe;
mod udp_pipe;

use self::tcp_pipe::{accept_loop, Accepted, Conn};
use self::udp_pipe::{udp_buffer, udp_host_loop, Flow, HostDatagram, RevDatagram, RevFlow};
use super::device::Queues;
use super::{Cmd, PipeCounters};
use crate::config::{Pipe, PipeProto, PipeRemote};

/// Bytes moved per message between a host task and the stack.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight each way per TCP connection, besides the smoltcp buffers.
const CHANNEL_CHUNKS: usize = 4;
/// Listening smoltcp sockets kept ready per reverse pipe (smoltcp accepts one
/// connection per listening socket; a SYN that finds none is reset).
const BACKLOG: usize = 8;
/// Datagrams queued from the host UDP sockets to the stack.
const UDP_QUEUE: usize = 1024;
/// Buffer of a UDP flow's smoltcp socket, each way.
const UDP_BUFFER: usize = 256 * 1024;
/// Packets the stack gathers before it hands them to the outbound packet thread.
const TX_BATCH: usize = 32;
/// Poll rounds per wake-up before the other tasks (host sockets) get their turn.
const STEP_ROUNDS: usize = 256;
/// How often idle connections are looked for, at most.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The ephemeral ports the stack connects from.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// What the stack's thread is configured with.
pub(super) struct StackConfig {
    pub(super) addrs: Vec<IpAddr>,
    pub(super) mtu: usize,
    pub(super) tcp_buffer: usize,
}

/// A pipe's host socket, bound before the thread starts.
pub(super) enum HostSocket {
    /// A forward TCP pipe's listener.
    Tcp(std::net::TcpListener),
    /// A forward UDP pipe's socket.
    Udp(std::net::UdpSocket),
    /// A reverse pipe: it listens inside the tunnel.
    Inner,
}

impl HostSocket {
    pub(super) fn bind(p: &Pipe) -> io::Result<HostSocket> {
        if p.reverse {
            return Ok(HostSocket::Inner);
        }
        Ok(match p.proto {
            PipeProto::Tcp => {
                let l = std::net::TcpListener::bind(p.listen)?;
                l.set_nonblocking(true)?;
                HostSocket::Tcp(l)
            }
            PipeProto::Udp => {
                let s = std::net::UdpSocket::bind(p.listen)?;
                s.set_nonblocking(true)?;
                HostSocket::Udp(s)
            }
        })
    }
}

/// The ingress queue's eventfd, for tokio.
struct IngressFd(Arc<Queues>);

impl AsRawFd for IngressFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.ingress.waker.as_fd().as_raw_fd()
    }
}

/// smoltcp's view of the queues: packets taken from the ingress queue, packets sent.
struct Dev {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = vec![0; len];
        let r = f(&mut p);
        self.0.push(p);
        r
    }
}

impl Device for Dev {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: Dev,
    queues: Arc<Queues>,
    epoch: Instant,
    tcp_buffer: usize,
    pipes: Arc<Vec<(Pipe, PipeCounters)>>,
    /// Per reverse pipe: its listening sockets.
    listening: HashMap<usize, Vec<SocketHandle>>,
    conns: Vec<Conn>,
    flows: HashMap<(usize, SocketAddr), Flow>,
    udp_hosts: HashMap<usize, Arc<UdpSocket>>,
    ports: HashSet<u16>,
    next_port: u16,
    notify: Arc<Notify>,
    next_idle_check: Instant,
    /// smoltcp's time at the last poll: what it has sent by then.
    polled_at: smoltcp::time::Instant,
    /// Per reverse UDP pipe: its smoltcp socket.
    rev_udp: HashMap<usize, SocketHandle>,
    /// Reverse UDP flows by (pipe, client in the tunnel).
    rev_flows: HashMap<(usize, SocketAddr), RevFlow>,
    /// Where reverse flows' host tasks send replies.
    rev_tx: mpsc::Sender<RevDatagram>,
}

/// A listen address in smoltcp's terms: the unspecified address is any of ours.
fn listen_endpoint(listen: SocketAddr) -> IpListenEndpoint {
    if listen.ip().is_unspecified() {
        IpListenEndpoint {
            addr: None,
            port: listen.port(),
        }
    } else {
        IpListenEndpoint::from(listen)
    }
}

pub(super) async fn run(
    cfg: StackConfig,
    queues: Arc<Queues>,
    pipes: Arc<Vec<(Pipe, PipeCounters)>>,
    hosts: Vec<HostSocket>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    // SAFETY: the eventfd belongs to `Queues`, which the `Arc` inside `IngressFd` keeps
    // alive (and unchanged) for as long as the `AsyncFd` exists.
    let registered = unsafe {
        AsyncFd::register_with_interest(IngressFd(queues.clone()), tokio::io::Interest::READABLE)
    };
    let ingress = match registered {
        Ok(fd) => fd,
        Err(e) => {
            let e = io::Error::from(e);
            tracing::error!("netstack: registering its queue: {e}");
            return;
        }
    };
    let mut dev = Dev {
        rx: VecDeque::new(),
        tx: Vec::new(),
        mtu: cfg.mtu,
    };
    let epoch = Instant::now();
    let mut config = Config::new(HardwareAddress::Ip);
    // smoltcp draws initial sequence numbers from this seed, 0 unless set: every stack
    // would use the same ones, in the same order after each start (RFC 9293 3.4.1
    // wants them unpredictable). std's `RandomState` keys come from the OS.
    config.random_seed = RandomState::new().build_hasher().finish();
    let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::ZERO);
    // Everything that is not ours goes out through the tunnel (the SPD decides).
    iface.set_any_ip(false);
    let notify = Arc::new(Notify::new());
    let (acc_tx, mut acc_rx) = mpsc::channel::<Accepted>(256);
    let (udp_tx, mut udp_rx) = mpsc::channel::<HostDatagram>(UDP_QUEUE);
    let (rev_tx, mut rev_rx) = mpsc::channel::<RevDatagram>(UDP_QUEUE);
    let mut st = Stack {
        iface,
        sockets: SocketSet::new(Vec::new()),
        dev,
        queues,
        epoch,
        tcp_buffer: cfg.tcp_buffer,
        pipes: pipes.clone(),
        listening: HashMap::new(),
        conns: Vec::new(),
        flows: HashMap::new(),
        udp_hosts: HashMap::new(),
        ports: HashSet::new(),
        next_port: *EPHEMERAL.start(),
        notify: notify.clone(),
        next_idle_check: epoch + IDLE_CHECK,
        polled_at: smoltcp::time::Instant::ZERO,
        rev_udp: HashMap::new(),
        rev_flows: HashMap::new(),
        rev_tx,
    };
    for ip in &cfg.addrs {
        st.add_addr(*ip);
    }
    for (i, h) in hosts.into_iter().enumerate() {
        let pipe = pipes[i].0.clone();
        match h {
            HostSocket::Tcp(l) => match TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(accept_loop(i, pipe, l, acc_tx.clone(), pipes.clone()));
                }
                Err(e) => tracing::error!("pipe {}: {e}", pipe.name),
            },
            HostSocket::Udp(s) => match UdpSocket::from_std(s) {
                Ok(s) => {
                    let s = Arc::new(s);
                    st.udp_hosts.insert(i, s.clone());
                    tokio::spawn(udp_host_loop(i, pipe, s, udp_tx.clone()));
                }
                Err(e) => tracing::error!("pipe {}: {e}", pipe.name),
            },
            HostSocket::Inner if pipe.proto == PipeProto::Tcp => {
                st.listening.insert(i, Vec::new());
            }
            HostSocket::Inner => {
                // A reverse UDP pipe: one smoltcp socket receives every client's datagrams.
                let mut s = udp::Socket::new(udp_buffer(), udp_buffer());
                match s.bind(listen_endpoint(pipe.listen)) {
                    Ok(()) => {
                        st.rev_udp.insert(i, st.sockets.add(s));
                    }
                    Err(e) => tracing::error!("pipe {}: bind: {e}", pipe.name),
                }
            }
        }
    }
    drop(acc_tx);
    drop(udp_tx);
    // Listeners in place before the first packet is read: a SYN already queued when
    // the thread starts would otherwise find none and be reset.
    st.accept_reverse();
    loop {
        st.step();
        let now = st.now();
        let delay = st
            .iface
            .poll_delay(now, &st.sockets)
            .map(Duration::from)
            .unwrap_or(IDLE_CHECK)
            .min(IDLE_CHECK);
        if delay.is_zero() {
            // More to do at once (a timer granularity of 1 ms would throttle it): let
            // the host tasks run, then go on.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            r = ingress.readable() => {
                if let Ok(mut g) = r {
                    g.clear_ready();
                }
                // Packets pushed after this reset wake (and edge) again.
                st.queues.ingress.waker.reset();
            }
            _ = notify.notified() => {}
            Some(a) = acc_rx.recv() => st.open_forward(a),
            Some(d) = udp_rx.recv() => st.udp_from_host(d),
            Some(d) = rev_rx.recv() => st.rev_udp_from_host(d),
            c = cmds.recv() => match c {
                Some(Cmd::AddAddr(ip)) => st.add_addr(ip),
                Some(Cmd::RemoveAddr(ip)) => st.remove_addr(ip),
                Some(Cmd::Stop) | None => break,
            },
            _ = tokio::time::sleep(delay) => {}
        }
    }
    // Connections end with the daemon: reset both sides rather than leave them hanging.
    st.abort_all();
    st.poll();
    st.flush_tx();
}

/// The first address of a remote (a name goes through the host's resolver each time).
async fn resolve(r: &PipeRemote) -> Option<SocketAddr> {
    match r {
        PipeRemote::Addr(a) => Some(*a),
        PipeRemote::Name(h, p) => tokio::net::lookup_host((h.as_str(), *p)).await.ok()?.next(),
    }
}

impl Stack {
    fn now(&self) -> smoltcp::time::Instant {
        let us = self.epoch.elapsed().as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    fn add_addr(&mut self, ip: IpAddr) {
        let cidr = IpCidr::new(IpAddress::from(ip), if ip.is_ipv4() { 32 } else { 128 });
        let mut full = false;
        self.iface.update_ip_addrs(|a| {
            if !a.contains(&cidr) && a.push(cidr).is_err() {
                full = true;
            }
        });
        if full {
            tracing::warn!("netstack: no room for address {ip}");
            return;
        }
        self.set_routes();
        tracing::info!("netstack: address {ip}");
    }

    fn remove_addr(&mut self, ip: IpAddr) {
        let cidr = IpCidr::new(IpAddress::from(ip), if ip.is_ipv4() { 32 } else { 128 });
        self.iface.update_ip_addrs(|a| a.retain(|c| *c != cidr));
        self.set_routes();
    }

    /// Default routes through our own address of each family: with an IP-medium
    /// device there is no next hop to resolve, but smoltcp wants a route to send.
    fn set_routes(&mut self) {
        let mut v4 = None;
        let mut v6 = None;
        for c in self.iface.ip_addrs() {
            match c.address() {
                IpAddress::Ipv4(a) => {
                    v4.get_or_insert(a);
                }
                IpAddress::Ipv6(a) => {
                    v6.get_or_insert(a);
                }
            }
        }
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        routes.remove_default_ipv6_route();
        if let Some(a) = v4 {
            let _ = routes.add_default_ipv4_route(a);
        }
        if let Some(a) = v6 {
            let _ = routes.add_default_ipv6_route(a);
        }
    }

    fn alloc_port(&mut self) -> Option<u16> {
        let span = usize::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if self.ports.insert(p) {
                return Some(p);
            }
        }
        None
    }

    fn active(&self, pipe: usize) -> u64 {
        self.pipes[pipe].1.active.load(Ordering::Relaxed)
    }

    /// Polls smoltcp and moves data until nothing moves, then hands the packets to the
    /// dataplane.
    fn step(&mut self) {
        self.queues.ingress.take_all(&mut self.dev.rx);
        // smoltcp sends at most one segment per socket and poll: keep polling while it
        // has more to send now, data moved, or packets wait (bounded, so the runtime's
        // other tasks get their turn).
        for _ in 0..STEP_ROUNDS {
            self.poll();
            let moved = self.service();
            if self.dev.rx.is_empty() {
                self.queues.ingress.take_all(&mut self.dev.rx);
            }
            if !moved && self.dev.rx.is_empty() && !self.due_now() {
                break;
            }
        }
        self.flush_tx();
        if Instant::now() >= self.next_idle_check {
            self.next_idle_check = Instant::now() + IDLE_CHECK;
            self.expire_idle();
        }
    }

    /// True when smoltcp wants to be polled again at once.
    fn due_now(&mut self) -> bool {
        let now = self.now();
        self.iface.poll_delay(now, &self.sockets) == Some(smoltcp::time::Duration::ZERO)
    }

    fn poll(&mut self) {
        let now = self.now();
        self.polled_at = now;
        if self.listening.is_empty() {
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
        } else {
            // smoltcp resets a SYN that finds no listening socket: with reverse pipes,
            // take packets one at a time and put fresh listeners in place after each
            // one that changed a socket, so a burst of connections finds them. A
            // retransmitted SYN of a connection that has its socket is dropped here
            // (see `is_known_syn`), and a connection whose handshake was reset is
            // closed before its socket can listen again (`close_reset_handshakes`).
            loop {
                if self.dev.rx.front().is_some_and(|p| self.is_known_syn(p)) {
                    self.dev.rx.pop_front();
                    continue;
                }
                match self
                    .iface
                    .poll_ingress_single(now, &mut self.dev, &mut self.sockets)
                {
                    PollIngressSingleResult::None => break,
                    PollIngressSingleResult::PacketProcessed => {}
                    PollIngressSingleResult::SocketStateChanged => {
                        self.close_reset_handshakes();
                        self.accept_reverse();
                    }
                }
            }
            self.iface
                .poll_egress(now, &mut self.dev, &mut self.sockets);
        }
        // Hand packets over in batches: one lock and one wake-up of the packet thread
        // for many segments (smoltcp makes one per socket and poll).
        if self.dev.tx.len() >= TX_BATCH {
            self.flush_tx();
        }
    }

    fn flush_tx(&mut self) {
        if !self.dev.tx.is_empty() {
            self.queues.egress.push_all(self.dev.tx.drain(..));
        }
    }

    /// Moves data between smoltcp and the host side; true if anything moved.
    fn service(&mut self) -> bool {
        let mut moved = self.accept_reverse();
        let mut i = 0;
        while i < self.conns.len() {
            let (m, done) = self.service_conn(i);
            moved |= m;
            if done {
                let c = self.conns.swap_remove(i);
                self.close_conn(c);
            } else {
                i += 1;
            }
        }
        moved | self.service_flows() | self.service_rev_udp()
    }

    fn expire_idle(&mut self) {
        let now = Instant::now();
        self.expire_tcp(now);
        self.expire_udp(now);
    }
}
