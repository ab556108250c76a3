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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};

use super::device::Queues;
use super::{add, Cmd, PipeCounters};
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

/// What a TCP connection's host task and the stack share besides the channels.
#[derive(Default)]
struct Flags {
    /// The host side reset (or could not connect): reset the tunnel side.
    host_reset: AtomicBool,
    /// The tunnel side reset: reset the host side.
    inner_reset: AtomicBool,
}

/// A TCP connection of a pipe.
struct Conn {
    pipe: usize,
    handle: SocketHandle,
    local_port: Option<u16>,
    /// Host to tunnel.
    up: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    sent: usize,
    fin_out: bool,
    /// Tunnel to host; `None` once the tunnel's FIN was passed on.
    down: Option<mpsc::Sender<Vec<u8>>>,
    fin_in: bool,
    flags: Arc<Flags>,
    last_active: Instant,
    /// Bytes moved at all (a reset before any is a failed connection).
    moved: bool,
    /// Counted in `active` (not a connection refused at `max_connections`).
    counted: bool,
    /// Seen closed once (freed the next time, after the poll that sends its RST).
    closed_seen: bool,
}

/// A forward UDP pipe's flow: one client address, one smoltcp socket.
struct Flow {
    handle: SocketHandle,
    port: u16,
    remote: SocketAddr,
    last_active: Instant,
}

/// A datagram from a host UDP socket.
struct HostDatagram {
    pipe: usize,
    client: SocketAddr,
    remote: Option<SocketAddr>,
    data: Vec<u8>,
}

/// A client accepted on a forward TCP pipe, its remote resolved.
struct Accepted {
    pipe: usize,
    stream: TcpStream,
    remote: Option<SocketAddr>,
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
    /// Per reverse UDP pipe: its smoltcp socket.
    rev_udp: HashMap<usize, SocketHandle>,
    /// Reverse UDP flows by (pipe, client in the tunnel).
    rev_flows: HashMap<(usize, SocketAddr), RevFlow>,
    /// Where reverse flows' host tasks send replies.
    rev_tx: mpsc::Sender<RevDatagram>,
}

/// A reverse UDP pipe's flow: a client inside the tunnel and its host socket's task.
struct RevFlow {
    to_host: mpsc::Sender<Vec<u8>>,
    last_active: Instant,
}

/// A reply from a reverse flow's host socket, for its client in the tunnel.
struct RevDatagram {
    pipe: usize,
    client: SocketAddr,
    data: Vec<u8>,
}

fn udp_buffer() -> udp::PacketBuffer<'static> {
    udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; UDP_BUFFER])
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

/// A reverse UDP flow's host side: a socket connected to the pipe's remote; datagrams
/// from the tunnel go out of it, replies go back to the stack. Ends when the stack
/// drops the flow.
async fn rev_udp_flow(
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
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ip),
        &mut dev,
        smoltcp::time::Instant::ZERO,
    );
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
    for c in &mut st.conns {
        c.flags.inner_reset.store(true, Ordering::Relaxed);
        c.down = None;
        st.sockets.get_mut::<tcp::Socket>(c.handle).abort();
    }
    st.poll();
    st.flush_tx();
}

/// Accepts clients of a forward TCP pipe and resolves the remote for each.
async fn accept_loop(
    pipe: usize,
    cfg: Pipe,
    l: TcpListener,
    to_stack: mpsc::Sender<Accepted>,
    counters: Arc<Vec<(Pipe, PipeCounters)>>,
) {
    loop {
        let stream = match l.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: wait instead of spinning.
                tracing::warn!("pipe {}: accept: {e}", cfg.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let remote = cfg.remote.clone();
        let to_stack = to_stack.clone();
        let counters = counters.clone();
        let name = cfg.name.clone();
        tokio::spawn(async move {
            let remote = resolve(&remote).await;
            if remote.is_none() {
                tracing::warn!("pipe {name}: cannot resolve its remote");
                add(&counters[pipe].1.failed, 1);
                reset(stream);
                return;
            }
            let _ = to_stack
                .send(Accepted {
                    pipe,
                    stream,
                    remote,
                })
                .await;
        });
    }
}

/// The first address of a remote (a name goes through the host's resolver each time).
async fn resolve(r: &PipeRemote) -> Option<SocketAddr> {
    match r {
        PipeRemote::Addr(a) => Some(*a),
        PipeRemote::Name(h, p) => tokio::net::lookup_host((h.as_str(), *p)).await.ok()?.next(),
    }
}

/// Connects to a reverse pipe's host remote: a name is resolved now and its addresses
/// are tried in the resolver's order ("localhost" may give ::1 before 127.0.0.1).
async fn connect_host(remote: &PipeRemote) -> Result<TcpStream, String> {
    match remote {
        PipeRemote::Addr(a) => TcpStream::connect(*a).await.map_err(|e| e.to_string()),
        PipeRemote::Name(h, p) => {
            let addrs = tokio::net::lookup_host((h.as_str(), *p))
                .await
                .map_err(|e| format!("resolving {h}: {e}"))?;
            let mut last = format!("{h} has no address");
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("{a}: {e}"),
                }
            }
            Err(last)
        }
    }
}

/// Closes a host connection with a reset: `SO_LINGER` 0 (no lingering, so the close
/// does not block either).
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Reads a forward UDP pipe's host socket.
async fn udp_host_loop(
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

/// Copies between a host TCP connection and the stack until both directions ended.
async fn host_side(
    mut stream: TcpStream,
    up: mpsc::Sender<Vec<u8>>,
    mut down: mpsc::Receiver<Vec<u8>>,
    flags: Arc<Flags>,
    notify: Arc<Notify>,
) {
    let _ = stream.set_nodelay(true);
    let reset_host = {
        let (mut rd, mut wr) = stream.split();
        let reader = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        // Waits while the stack's channel is full: back-pressure.
                        if up.send(buf[..n].to_vec()).await.is_err() {
                            break;
                        }
                        notify.notify_one();
                    }
                    Err(_) => {
                        flags.host_reset.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            drop(up);
            notify.notify_one();
        };
        let writer = async {
            while let Some(d) = down.recv().await {
                if wr.write_all(&d).await.is_err() {
                    flags.host_reset.store(true, Ordering::Relaxed);
                    notify.notify_one();
                    return false;
                }
                // Room in the channel again: the stack may read more from smoltcp.
                notify.notify_one();
            }
            if flags.inner_reset.load(Ordering::Relaxed) {
                return true;
            }
            // The tunnel side sent FIN: pass it on, keep reading the host.
            let _ = wr.shutdown().await;
            false
        };
        tokio::pin!(reader, writer);
        let mut reader_done = false;
        loop {
            tokio::select! {
                _ = &mut reader, if !reader_done => reader_done = true,
                rst = &mut writer => {
                    if !rst && !reader_done {
                        (&mut reader).await;
                    }
                    break rst;
                }
            }
        }
    };
    if reset_host {
        reset(stream);
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

    fn tcp_socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.tcp_buffer]),
            tcp::SocketBuffer::new(vec![0; self.tcp_buffer]),
        );
        // Pipes carry interactive protocols as well as bulk data: no Nagle delay.
        s.set_nagle_enabled(false);
        s
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
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
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

    /// Turns reverse pipes' listening sockets that got a connection into connections,
    /// and keeps `BACKLOG` listening.
    fn accept_reverse(&mut self) -> bool {
        let mut moved = false;
        let pipes: Vec<usize> = self.listening.keys().copied().collect();
        for pipe in pipes {
            let handles = self.listening.remove(&pipe).unwrap_or_default();
            let mut keep = Vec::with_capacity(BACKLOG);
            for h in handles {
                let state = self.sockets.get::<tcp::Socket>(h).state();
                match state {
                    tcp::State::Listen => keep.push(h),
                    tcp::State::Closed => {
                        self.sockets.remove(h);
                    }
                    _ => {
                        moved = true;
                        self.accept_one(pipe, h);
                    }
                }
            }
            while keep.len() < BACKLOG {
                let mut s = self.tcp_socket();
                if let Err(e) = s.listen(listen_endpoint(self.pipes[pipe].0.listen)) {
                    tracing::error!("pipe {}: listen: {e}", self.pipes[pipe].0.name);
                    break;
                }
                keep.push(self.sockets.add(s));
            }
            self.listening.insert(pipe, keep);
        }
        moved
    }

    /// A connection arrived on a reverse pipe: connect on the host side.
    fn accept_one(&mut self, pipe: usize, h: SocketHandle) {
        let (cfg, counters) = &self.pipes[pipe];
        if self.active(pipe) >= cfg.max_connections as u64 {
            add(&counters.refused, 1);
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            // The socket goes once the reset is sent; keep it as a dying connection.
            let (_, _, c) = self.new_conn(pipe, h, None);
            c.flags.host_reset.store(true, Ordering::Relaxed);
            c.counted = false;
            return;
        }
        add(&counters.opened, 1);
        add(&counters.active, 1);
        let remote = cfg.remote.clone();
        let (up_tx, down_rx, c) = self.new_conn(pipe, h, None);
        let flags = c.flags.clone();
        let notify = self.notify.clone();
        let pipes = self.pipes.clone();
        tokio::spawn(async move {
            let stream = connect_host(&remote).await;
            match stream {
                Ok(s) => host_side(s, up_tx, down_rx, flags, notify).await,
                Err(e) => {
                    tracing::info!("pipe {}: connecting to {remote}: {e}", pipes[pipe].0.name);
                    add(&pipes[pipe].1.failed, 1);
                    flags.host_reset.store(true, Ordering::Relaxed);
                    drop(up_tx);
                    notify.notify_one();
                }
            }
        });
    }

    /// Registers a connection on socket `h`; returns the host task's channel ends.
    fn new_conn(
        &mut self,
        pipe: usize,
        h: SocketHandle,
        local_port: Option<u16>,
    ) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>, &mut Conn) {
        let (up_tx, up_rx) = mpsc::channel(CHANNEL_CHUNKS);
        let (down_tx, down_rx) = mpsc::channel(CHANNEL_CHUNKS);
        self.conns.push(Conn {
            pipe,
            handle: h,
            local_port,
            up: up_rx,
            pending: Vec::new(),
            sent: 0,
            fin_out: false,
            down: Some(down_tx),
            fin_in: false,
            flags: Arc::new(Flags::default()),
            last_active: Instant::now(),
            moved: false,
            counted: true,
            closed_seen: false,
        });
        let c = self.conns.last_mut().expect("just pushed");
        (up_tx, down_rx, c)
    }

    /// A client of a forward pipe: connect through the tunnel.
    fn open_forward(&mut self, a: Accepted) {
        let pipe = a.pipe;
        let counters = &self.pipes[pipe].1;
        if self.active(pipe) >= self.pipes[pipe].0.max_connections as u64 {
            add(&counters.refused, 1);
            reset(a.stream);
            return;
        }
        let Some(remote) = a.remote else {
            add(&counters.failed, 1);
            reset(a.stream);
            return;
        };
        let Some(port) = self.alloc_port() else {
            add(&self.pipes[pipe].1.failed, 1);
            reset(a.stream);
            return;
        };
        let mut s = self.tcp_socket();
        if let Err(e) = s.connect(self.iface.context(), remote, port) {
            // No address of the remote's family yet (a virtual IP still to come).
            tracing::info!("pipe {}: connect to {remote}: {e}", self.pipes[pipe].0.name);
            self.ports.remove(&port);
            add(&self.pipes[pipe].1.failed, 1);
            reset(a.stream);
            return;
        }
        let h = self.sockets.add(s);
        add(&self.pipes[pipe].1.opened, 1);
        add(&self.pipes[pipe].1.active, 1);
        let (up_tx, down_rx, c) = self.new_conn(pipe, h, Some(port));
        let flags = c.flags.clone();
        tokio::spawn(host_side(
            a.stream,
            up_tx,
            down_rx,
            flags,
            self.notify.clone(),
        ));
        self.notify.notify_one();
    }

    /// One connection: (data moved, connection finished).
    fn service_conn(&mut self, i: usize) -> (bool, bool) {
        let c = &mut self.conns[i];
        let (cfg, counters) = &self.pipes[c.pipe];
        // "up" is from the side that connected to `listen`: the host for a forward
        // pipe, the tunnel for a reverse one.
        let (to_host, to_tunnel) = if cfg.reverse {
            (&counters.bytes_up, &counters.bytes_down)
        } else {
            (&counters.bytes_down, &counters.bytes_up)
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(c.handle);
        let mut moved = false;
        // Tunnel to host, while the host task's channel has room.
        if let Some(tx) = &c.down {
            while sock.can_recv() {
                let Ok(permit) = tx.try_reserve() else {
                    break;
                };
                let data = sock
                    .recv(|b| {
                        let n = b.len().min(CHUNK);
                        (n, b[..n].to_vec())
                    })
                    .unwrap_or_default();
                if data.is_empty() {
                    break;
                }
                add(to_host, data.len() as u64);
                permit.send(data);
                moved = true;
            }
        }
        let state = sock.state();
        if matches!(
            state,
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::Closing
                | tcp::State::TimeWait
        ) {
            c.fin_in = true;
        }
        if c.fin_in && !sock.can_recv() && c.down.is_some() {
            // Everything before the FIN is with the host task: pass the FIN on.
            c.down = None;
        }
        // Host to tunnel, while the smoltcp send buffer has room.
        if c.flags.host_reset.load(Ordering::Relaxed) {
            if sock.is_open() {
                sock.abort();
            }
        } else if !c.fin_out {
            loop {
                if c.sent < c.pending.len() {
                    if !sock.may_send() {
                        break;
                    }
                    let n = sock.send_slice(&c.pending[c.sent..]).unwrap_or(0);
                    c.sent += n;
                    add(to_tunnel, n as u64);
                    if n > 0 {
                        moved = true;
                    }
                    if c.sent < c.pending.len() {
                        break;
                    }
                }
                match c.up.try_recv() {
                    Ok(v) => {
                        c.pending = v;
                        c.sent = 0;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        if c.flags.host_reset.load(Ordering::Relaxed) {
                            sock.abort();
                        } else {
                            sock.close();
                            c.fin_out = true;
                        }
                        moved = true;
                        break;
                    }
                }
            }
        }
        if moved {
            c.last_active = Instant::now();
            c.moved = true;
        }
        let state = sock.state();
        let done = match state {
            // A socket that was just aborted still has its RST to send: free it only
            // after one more poll.
            tcp::State::Closed if !c.closed_seen => {
                c.closed_seen = true;
                moved = true;
                false
            }
            tcp::State::Closed => true,
            // Both FINs exchanged and ours acknowledged; nothing more to deliver.
            tcp::State::TimeWait => !sock.can_recv() && c.down.is_none(),
            _ => false,
        };
        (moved, done)
    }

    /// A connection is over: tell the host side, free the socket and its port.
    fn close_conn(&mut self, mut c: Conn) {
        let counters = &self.pipes[c.pipe].1;
        if c.down.is_some() {
            // Closed without a FIN from the tunnel (reset, refused, timed out).
            c.flags.inner_reset.store(true, Ordering::Relaxed);
            c.down = None;
            if c.counted && !c.moved && !c.flags.host_reset.load(Ordering::Relaxed) {
                add(&counters.failed, 1);
            }
        }
        if c.counted {
            counters.active.fetch_sub(1, Ordering::Relaxed);
        }
        self.sockets.remove(c.handle);
        if let Some(p) = c.local_port {
            self.ports.remove(&p);
        }
    }

    fn expire_idle(&mut self) {
        let now = Instant::now();
        for c in &mut self.conns {
            let idle = self.pipes[c.pipe].0.idle_timeout;
            if now.duration_since(c.last_active) > idle {
                tracing::debug!(
                    "pipe {}: closing an idle connection",
                    self.pipes[c.pipe].0.name
                );
                c.flags.inner_reset.store(true, Ordering::Relaxed);
                c.down = None;
                self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
            }
        }
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

    /// Datagrams from clients in the tunnel to reverse UDP pipes: each client's go to
    /// its flow's host socket.
    fn service_rev_udp(&mut self) -> bool {
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
    fn rev_udp_from_host(&mut self, d: RevDatagram) {
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
    fn udp_from_host(&mut self, d: HostDatagram) {
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
    fn service_flows(&mut self) -> bool {
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
