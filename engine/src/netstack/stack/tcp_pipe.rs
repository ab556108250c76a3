//! TCP pipes: connections between a host socket and a smoltcp socket, the host tasks
//! that copy, and how EOF, resets, idleness and `max_connections` cross over.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use super::{listen_endpoint, resolve, Stack, BACKLOG, CHANNEL_CHUNKS, CHUNK};
use crate::config::{Pipe, PipeRemote};
use crate::netstack::{add, PipeCounters};

/// What a TCP connection's host task and the stack share besides the channels.
#[derive(Default)]
pub(super) struct Flags {
    /// The host side reset (or could not connect): reset the tunnel side.
    pub(super) host_reset: AtomicBool,
    /// The tunnel side reset: reset the host side.
    pub(super) inner_reset: AtomicBool,
}

/// A TCP connection of a pipe.
pub(super) struct Conn {
    pub(super) pipe: usize,
    pub(super) handle: SocketHandle,
    pub(super) local_port: Option<u16>,
    /// Host to tunnel.
    pub(super) up: mpsc::Receiver<Vec<u8>>,
    pub(super) pending: Vec<u8>,
    pub(super) sent: usize,
    pub(super) fin_out: bool,
    /// Tunnel to host; `None` once the tunnel's FIN was passed on.
    pub(super) down: Option<mpsc::Sender<Vec<u8>>>,
    pub(super) fin_in: bool,
    pub(super) flags: Arc<Flags>,
    /// The last time data moved: between the host and smoltcp, or between smoltcp and
    /// the TCP peer (acknowledged or received), see `send_queue` and `recv_queue`.
    pub(super) last_active: Instant,
    /// smoltcp's send queue when the connection was last serviced: less now means
    /// the peer acknowledged data.
    pub(super) send_queue: usize,
    /// smoltcp's receive queue when the connection was last serviced: more now means
    /// the peer sent data.
    pub(super) recv_queue: usize,
    /// Bytes moved at all (a reset before any is a failed connection).
    pub(super) moved: bool,
    /// Counted in `active` (not a connection refused at `max_connections`).
    pub(super) counted: bool,
    /// Seen closed once (freed the next time, after the poll that sends its RST).
    pub(super) closed_seen: bool,
    /// The poll after which it was first seen in TIME-WAIT with everything delivered.
    pub(super) time_wait_at: Option<smoltcp::time::Instant>,
}

/// A client accepted on a forward TCP pipe, its remote resolved.
pub(super) struct Accepted {
    pub(super) pipe: usize,
    pub(super) stream: TcpStream,
    pub(super) remote: Option<SocketAddr>,
}

/// Accepts clients of a forward TCP pipe and resolves the remote for each.
pub(super) async fn accept_loop(
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

/// Connects to a reverse pipe's host remote: a name is resolved now and its addresses
/// are tried in the resolver's order ("localhost" may give ::1 before 127.0.0.1).
pub(super) async fn connect_host(remote: &PipeRemote) -> Result<TcpStream, String> {
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
pub(super) fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Copies between a host TCP connection and the stack until both directions ended.
pub(super) async fn host_side(
    mut stream: TcpStream,
    up: mpsc::Sender<Vec<u8>>,
    mut down: mpsc::Receiver<Vec<u8>>,
    flags: Arc<Flags>,
    notify: Arc<Notify>,
) {
    let _ = stream.set_nodelay(true);
    // Closed with a reset unless the copying ends cleanly below: the task is dropped
    // with the stack's runtime when the daemon stops, and its host connection must
    // then be reset, not closed as if everything had been said.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
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
    if !reset_host {
        let _ = socket2::SockRef::from(&stream).set_linger(None);
    }
}

impl Stack {
    pub(super) fn tcp_socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.tcp_buffer]),
            tcp::SocketBuffer::new(vec![0; self.tcp_buffer]),
        );
        // Pipes carry interactive protocols as well as bulk data: no Nagle delay.
        s.set_nagle_enabled(false);
        s
    }

    /// Turns reverse pipes' listening sockets that got a connection into connections,
    /// and keeps `BACKLOG` listening.
    pub(super) fn accept_reverse(&mut self) -> bool {
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
    pub(super) fn accept_one(&mut self, pipe: usize, h: SocketHandle) {
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
    pub(super) fn new_conn(
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
            send_queue: 0,
            recv_queue: 0,
            moved: false,
            counted: true,
            closed_seen: false,
            time_wait_at: None,
        });
        let c = self.conns.last_mut().expect("just pushed");
        (up_tx, down_rx, c)
    }

    /// A client of a forward pipe: connect through the tunnel.
    pub(super) fn open_forward(&mut self, a: Accepted) {
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
    pub(super) fn service_conn(&mut self, i: usize) -> (bool, bool) {
        let polled_at = self.polled_at;
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
        // The peer acknowledged or sent data since the last service: not idle, even if
        // nothing moved on the host side (a send buffer that drains slowly, a FIN
        // waiting behind it, under load for longer than the idle timeout).
        if sock.send_queue() < c.send_queue || sock.recv_queue() > c.recv_queue {
            c.last_active = Instant::now();
        }
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
        c.send_queue = sock.send_queue();
        c.recv_queue = sock.recv_queue();
        let state = sock.state();
        let done = match state {
            // Both FINs were exchanged, so everything the tunnel side sent is in
            // smoltcp's buffer: a reset now (the far side forgot the connection and
            // answers our ACK of its retransmitted FIN with one, as RFC 1337 warns)
            // ends nothing. Deliver the rest, then the FIN, as from TIME-WAIT.
            tcp::State::Closed if c.fin_in && c.fin_out => !sock.can_recv() && c.down.is_none(),
            // A socket that was just aborted still has its RST to send: free it only
            // after one more poll.
            tcp::State::Closed if !c.closed_seen => {
                c.closed_seen = true;
                moved = true;
                false
            }
            tcp::State::Closed => true,
            // Both FINs exchanged and ours acknowledged; nothing more to deliver. smoltcp
            // delays its ACK of the peer's FIN (and last data) by `ack_delay`: free the
            // socket only after a poll that came that much later and so sent it, or the
            // peer retransmits its FIN to a socket that is gone, is reset, and waits in
            // LAST-ACK for its retransmission timeout first (long under load).
            tcp::State::TimeWait if !sock.can_recv() && c.down.is_none() => {
                // The poll that made it so: its ACK is due `ack_delay` later.
                let since = *c.time_wait_at.get_or_insert(polled_at);
                let delay = sock.ack_delay().unwrap_or(smoltcp::time::Duration::ZERO);
                polled_at >= since + delay && c.time_wait_at != Some(polled_at)
            }
            _ => false,
        };
        (moved, done)
    }

    /// Closes reverse connections whose handshake the peer reset. smoltcp puts such a
    /// socket back to LISTEN (from SYN-RECEIVED, as RFC 9293 3.10.7.4 says for a
    /// passive open), where it would take the next SYN as a new connection on this
    /// one's host side. Called after each packet that changed a socket's state, before
    /// the next packet; the connection then ends as a reset one.
    pub(super) fn close_reset_handshakes(&mut self) {
        for c in &self.conns {
            if self.pipes[c.pipe].0.reverse {
                let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
                if s.state() == tcp::State::Listen {
                    s.abort();
                }
            }
        }
    }

    /// True if `p` is a SYN (without ACK) for a reverse pipe's connection that already
    /// has its socket: a retransmission of the SYN that made it. smoltcp offers a
    /// segment to the sockets in slot order, and a listener put in a freed slot below
    /// the connection's would take it as a second connection on the same addresses
    /// and ports; the connection's own socket ignores such a SYN (it wants an ACK), so
    /// dropping it is what the right socket would do.
    pub(super) fn is_known_syn(&self, p: &[u8]) -> bool {
        let Some((src, dst)) = syn_endpoints(p) else {
            return false;
        };
        self.conns.iter().any(|c| {
            let s = self.sockets.get::<tcp::Socket>(c.handle);
            self.pipes[c.pipe].0.reverse
                && s.remote_endpoint() == Some(src)
                && s.local_endpoint() == Some(dst)
        })
    }

    /// A connection is over: tell the host side, free the socket and its port.
    pub(super) fn close_conn(&mut self, mut c: Conn) {
        let counters = &self.pipes[c.pipe].1;
        if c.down.is_some() {
            // Closed without a FIN from the tunnel (reset, refused, timed out).
            tracing::info!(
                "pipe {}: the tunnel side of a connection (local port {:?}) closed \
                 without FIN{}: resetting the host side",
                self.pipes[c.pipe].0.name,
                c.local_port,
                if c.moved { "" } else { " before any data" },
            );
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
}

impl Stack {
    /// Closes idle connections (reset at both ends).
    pub(super) fn expire_tcp(&mut self, now: Instant) {
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
    }

    /// The daemon stops: reset both sides of every connection rather than leave them
    /// hanging.
    pub(super) fn abort_all(&mut self) {
        for c in &mut self.conns {
            c.flags.inner_reset.store(true, Ordering::Relaxed);
            c.down = None;
            self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
        }
    }
}

/// The source and destination of a TCP SYN without ACK in an IP packet.
fn syn_endpoints(p: &[u8]) -> Option<(IpEndpoint, IpEndpoint)> {
    let (src, dst, proto, payload): (IpAddress, IpAddress, _, _) = match p.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(p).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
            (s, d, ip.next_header(), ip.payload())
        }
        6 => {
            let ip = Ipv6Packet::new_checked(p).ok()?;
            let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
            (s, d, ip.next_header(), ip.payload())
        }
        _ => return None,
    };
    if proto != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(payload).ok()?;
    (t.syn() && !t.ack()).then(|| {
        (
            IpEndpoint::new(src, t.src_port()),
            IpEndpoint::new(dst, t.dst_port()),
        )
    })
}
