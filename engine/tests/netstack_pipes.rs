//! Two netstacks joined back to back in one process (a thread moves packets from each
//! one's device to the other's, as the ESP path would): a forward pipe on stack a goes
//! to a reverse pipe on stack b, which connects to a test server on loopback. So every
//! TCP behaviour of a pipe is checked on real sockets without namespaces: data and
//! half-close, resets both ways, back-pressure, `max_connections`.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engine::config::{Netstack as Plan, Pipe, PipeProto, PipeRemote};
use engine::netstack::{Netstack, PipeStats};
use tun_io::{poll_readable, PacketBatch, PacketDevice, PacketWriter};

const T: Duration = Duration::from_secs(20);

/// Moves packets between two devices until dropped, with the faults asked for.
struct Wire {
    stop: Arc<AtomicBool>,
    /// What went over the wire, for tests to wait on.
    seen: Arc<Seen>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What a wire does besides moving packets.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Sends each FIN segment from b to a once more, this long after the first copy
    /// and once the test sets `Seen::release_fins`, as a kernel's tail-loss probe
    /// would retransmit a FIN whose ACK was late.
    replay_fins_to_a: Option<Duration>,
    /// Sends each SYN from a to b once more, this long after the first copy, as a's
    /// stack retransmits a SYN whose SYN-ACK is late (under load).
    replay_syns_to_b: Option<Duration>,
    /// Drops this many SYN-ACKs from b to a, the first ones.
    drop_synacks_to_a: usize,
    /// Lets at most one packet from a to b through per this interval (a slow path).
    pace_to_b: Option<Duration>,
}

/// Counts of what the wire saw or did.
#[derive(Default)]
struct Seen {
    /// TCP resets that went from b to a.
    rsts_to_a: AtomicUsize,
    /// TCP resets that went from a to b.
    rsts_to_b: AtomicUsize,
    /// SYNs sent to b a second time.
    syns_replayed: AtomicUsize,
    /// SYN-ACKs to a dropped.
    synacks_dropped: AtomicUsize,
    /// The sequence numbers of the SYNs a sent and of the SYN-ACKs b sent.
    isns: Mutex<(Vec<u32>, Vec<u32>)>,
    /// Set by a test: FINs held for `Faults::replay_fins_to_a` may go.
    release_fins: AtomicBool,
}

/// The TCP flags of an IPv4 packet, if it is TCP.
fn tcp_flags(p: &[u8]) -> Option<u8> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    (p.len() > ihl + 13 && p[9] == 6).then(|| p[ihl + 13])
}

/// The sequence number of an IPv4 TCP segment.
fn tcp_seq(p: &[u8]) -> u32 {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    u32::from_be_bytes(p[ihl + 4..ihl + 8].try_into().unwrap())
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Sends one packet through `w`.
fn send_one(w: &mut dyn PacketWriter, batch: &mut PacketBatch, p: &[u8]) {
    batch.clear();
    assert!(batch.push(p));
    w.send_from(batch).unwrap();
}

impl Wire {
    fn start(a: Box<dyn PacketDevice>, b: Box<dyn PacketDevice>, f: Faults) -> Wire {
        let (mut ra, mut wa) = a.split().unwrap();
        let (mut rb, mut wb) = b.split().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let (s, n) = (stop.clone(), seen.clone());
        let thread = thread::spawn(move || {
            let mut batch = PacketBatch::new(64, 64, 2000);
            let mut kept = PacketBatch::new(64, 64, 2000);
            let mut one = PacketBatch::new(1, 1, 2000);
            // (when, packet, to b) for replays.
            let mut replays: Vec<(Instant, Vec<u8>, bool)> = Vec::new();
            let mut paced: VecDeque<Vec<u8>> = VecDeque::new();
            let mut next_paced = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let _ = poll_readable(&[ra.as_fd(), rb.as_fd()], Some(Duration::from_millis(5)));
                while ra.recv_into(&mut batch).is_ok() {
                    for p in batch.iter() {
                        let flags = tcp_flags(p).unwrap_or(0);
                        if flags & RST != 0 {
                            n.rsts_to_b.fetch_add(1, Ordering::Relaxed);
                        }
                        if flags & (SYN | ACK) == SYN {
                            n.isns.lock().unwrap().0.push(tcp_seq(p));
                        }
                        if let (Some(after), SYN) = (f.replay_syns_to_b, flags & (SYN | ACK)) {
                            replays.push((Instant::now() + after, p.to_vec(), true));
                        }
                        if f.pace_to_b.is_some() {
                            paced.push_back(p.to_vec());
                        }
                    }
                    if f.pace_to_b.is_none() {
                        wb.send_from(&mut batch).unwrap();
                    }
                }
                while rb.recv_into(&mut batch).is_ok() {
                    kept.clear();
                    for p in batch.iter() {
                        let flags = tcp_flags(p).unwrap_or(0);
                        if flags & RST != 0 {
                            n.rsts_to_a.fetch_add(1, Ordering::Relaxed);
                        }
                        if flags & (SYN | ACK) == SYN | ACK {
                            n.isns.lock().unwrap().1.push(tcp_seq(p));
                        }
                        if let (Some(after), true) = (f.replay_fins_to_a, flags & FIN != 0) {
                            replays.push((Instant::now() + after, p.to_vec(), false));
                        }
                        if flags & (SYN | ACK) == SYN | ACK
                            && n.synacks_dropped.load(Ordering::Relaxed) < f.drop_synacks_to_a
                        {
                            n.synacks_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        assert!(kept.push(p));
                    }
                    wa.send_from(&mut kept).unwrap();
                }
                let now = Instant::now();
                if let Some(gap) = f.pace_to_b {
                    if now >= next_paced {
                        if let Some(p) = paced.pop_front() {
                            send_one(&mut *wb, &mut one, &p);
                            next_paced = now + gap;
                        }
                    }
                }
                let fins_go = n.release_fins.load(Ordering::Relaxed);
                replays.retain(|(at, p, to_b)| {
                    if *at > now || !(*to_b || fins_go) {
                        return true;
                    }
                    if *to_b {
                        send_one(&mut *wb, &mut one, p);
                        n.syns_replayed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        send_one(&mut *wa, &mut one, p);
                    }
                    false
                });
            }
        });
        Wire {
            stop,
            seen,
            thread: Some(thread),
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn plan(addr: &str, tcp_buffer: usize) -> Plan {
    Plan {
        addrs: vec![addr.parse().unwrap()],
        mtu: 1400,
        tcp_buffer,
    }
}

fn tcp_pipe(
    name: &str,
    reverse: bool,
    (listen, remote): (SocketAddr, SocketAddr),
    max: usize,
    idle: Duration,
) -> Pipe {
    Pipe {
        name: name.into(),
        proto: PipeProto::Tcp,
        reverse,
        listen,
        remote: PipeRemote::Addr(remote),
        max_connections: max,
        idle_timeout: idle,
    }
}

/// The pipes' idle timeout in these tests.
const IDLE: Duration = Duration::from_secs(2);

/// The idle timeout for many connections at once on a loaded machine (CI): there a
/// connection can wait longer than `IDLE` for a test thread (a client, the echo
/// server) to get a CPU, with nothing of it in either stack: seen as resets of
/// connections in FIN-WAIT-2 and CLOSE-WAIT with empty smoltcp queues and channels.
const LOADED_IDLE: Duration = Duration::from_secs(60);

/// Stack a's forward pipe at `listen` -> 10.0.0.2:80 -> stack b's reverse pipe -> the
/// test's server.
struct Chain {
    listen: SocketAddr,
    server: TcpListener,
    a: Netstack,
    b: Netstack,
    wire: Wire,
}

fn chain(max: usize, tcp_buffer: usize) -> Chain {
    chain_with(max, tcp_buffer, Faults::default())
}

fn chain_with(max: usize, tcp_buffer: usize, faults: Faults) -> Chain {
    chain_idle(max, tcp_buffer, faults, IDLE)
}

fn chain_idle(max: usize, tcp_buffer: usize, faults: Faults, idle: Duration) -> Chain {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inner: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let (a, da) = Netstack::start(
        &plan("10.0.0.1", tcp_buffer),
        &[tcp_pipe("fwd", false, (listen, inner), max, idle)],
    )
    .unwrap();
    let (b, db) = Netstack::start(
        &plan("10.0.0.2", tcp_buffer),
        &[tcp_pipe(
            "rev",
            true,
            (inner, server.local_addr().unwrap()),
            1024,
            idle,
        )],
    )
    .unwrap();
    let wire = Wire::start(Box::new(da), Box::new(db), faults);
    Chain {
        listen,
        server,
        a,
        b,
        wire,
    }
}

fn connect(a: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&a, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

fn stats(n: &Netstack) -> PipeStats {
    n.handle().pipes_snapshot().remove(0)
}

/// Waits (bounded) until `f` holds.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect()
}

/// Reads until EOF or an error; returns the error kind (None: clean EOF).
fn read_end(s: &mut TcpStream) -> Option<ErrorKind> {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) => return Some(e.kind()),
        }
    }
}

fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[test]
fn data_both_ways_with_half_close() {
    let c = chain(16, 256 * 1024);
    let mut client = connect(c.listen);
    let up = pattern(1, 3 << 20);
    let down = pattern(2, 2 << 20);
    let w = {
        let mut w = client.try_clone().unwrap();
        let up = up.clone();
        thread::spawn(move || {
            w.write_all(&up).unwrap();
            // Half-close: the server sees EOF but can still answer.
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut srv = accept(&c.server);
    let mut got = Vec::new();
    srv.read_to_end(&mut got).unwrap();
    assert!(
        got == up,
        "upstream bytes differ ({} of {})",
        got.len(),
        up.len()
    );
    srv.write_all(&down).unwrap();
    drop(srv);
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert!(
        back == down,
        "downstream bytes differ ({} of {})",
        back.len(),
        down.len()
    );
    w.join().unwrap();
    drop(client);
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
    let (a, b) = (stats(&c.a), stats(&c.b));
    let (u, d) = (up.len() as u64, down.len() as u64);
    assert_eq!((a.opened, a.bytes_up, a.bytes_down), (1, u, d), "{a:?}");
    assert_eq!((b.opened, b.bytes_up, b.bytes_down), (1, u, d), "{b:?}");
    assert_eq!((a.failed, a.refused, b.failed, b.refused), (0, 0, 0, 0));
}

#[test]
fn resets_cross_the_pipe_both_ways() {
    let c = chain(16, 64 * 1024);
    // The server resets: the client sees a reset, not an EOF.
    let mut client = connect(c.listen);
    client.write_all(b"hello").unwrap();
    let mut srv = accept(&c.server);
    let mut b = [0u8; 5];
    srv.read_exact(&mut b).unwrap();
    reset(srv);
    assert_eq!(read_end(&mut client), Some(ErrorKind::ConnectionReset));
    // The client resets: the server sees it.
    let client = connect(c.listen);
    let mut srv = accept(&c.server);
    reset(client);
    assert_eq!(read_end(&mut srv), Some(ErrorKind::ConnectionReset));
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
}

#[test]
fn a_reader_that_stops_stops_the_writer() {
    let c = chain(16, 64 * 1024);
    let client = connect(c.listen);
    let mut srv = accept(&c.server);
    // The server reads nothing: the client can only put a bounded amount in flight.
    client.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let mut stalled_since = Instant::now();
    while stalled_since.elapsed() < Duration::from_millis(500) {
        match (&client).write(&chunk) {
            Ok(n) => {
                written += n;
                stalled_since = Instant::now();
                assert!(
                    written < 64 << 20,
                    "{written} bytes taken: no back-pressure"
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(written > 0);
    eprintln!("in flight with a stopped reader: {written} bytes");
    // Once the server reads, everything arrives.
    client.set_nonblocking(false).unwrap();
    let mut client = client;
    client.shutdown(Shutdown::Write).unwrap();
    let mut n = 0usize;
    let mut b = vec![0u8; 1 << 16];
    loop {
        match srv.read(&mut b).unwrap() {
            0 => break,
            k => {
                assert!(b[..k].iter().all(|x| *x == 7));
                n += k;
            }
        }
    }
    assert_eq!(n, written);
    drop(srv);
    assert_eq!(read_end(&mut client), None);
}

#[test]
fn connections_past_the_limit_are_refused_and_counted() {
    let c = chain(2, 64 * 1024);
    let mut held = Vec::new();
    for i in 0..2u8 {
        let mut cl = connect(c.listen);
        let mut srv = accept(&c.server);
        cl.write_all(&[i]).unwrap();
        let mut b = [0u8; 1];
        srv.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i);
        held.push((cl, srv));
    }
    // The pipe accepts the third connection and resets it at once; the reset can
    // arrive before `connect` has looked at the socket's error, or after.
    let third = match TcpStream::connect_timeout(&c.listen, T) {
        Ok(mut s) => {
            s.set_read_timeout(Some(T)).unwrap();
            read_end(&mut s)
        }
        Err(e) => Some(e.kind()),
    };
    assert_eq!(third, Some(ErrorKind::ConnectionReset));
    let a = stats(&c.a);
    assert_eq!((a.opened, a.active, a.refused), (2, 2, 1), "{a:?}");
    drop(held);
    until("the pipe idle", || stats(&c.a).active == 0);
    // Room again.
    let mut cl = connect(c.listen);
    let mut srv = accept(&c.server);
    cl.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    srv.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn an_idle_connection_is_reset_after_idle_timeout() {
    let c = chain(16, 64 * 1024);
    let mut client = connect(c.listen);
    client.write_all(b"x").unwrap();
    let mut srv = accept(&c.server);
    let mut b = [0u8; 1];
    srv.read_exact(&mut b).unwrap();
    let quiet = Instant::now();
    // No traffic: both ends are reset once the idle timeout (2 s) passed.
    assert_eq!(read_end(&mut client), Some(ErrorKind::ConnectionReset));
    let waited = quiet.elapsed();
    assert!(
        waited >= IDLE && waited < IDLE + Duration::from_secs(3),
        "reset after {waited:?}"
    );
    assert!(read_end(&mut srv).is_some_and(|k| k == ErrorKind::ConnectionReset));
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
}

#[test]
fn a_hundred_concurrent_connections_each_echoed() {
    let c = chain_idle(256, 64 * 1024, Faults::default(), LOADED_IDLE);
    echo_server(&c.server);
    let clients: Vec<_> = (0..100u8)
        .map(|i| {
            let mut s = connect(c.listen);
            thread::spawn(move || {
                let data = pattern(i, 64 * 1024);
                let mut w = s.try_clone().unwrap();
                let out = data.clone();
                let writer = thread::spawn(move || {
                    w.write_all(&out).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                s.read_to_end(&mut back)
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                writer.join().unwrap();
                assert!(back == data, "connection {i}: {} bytes back", back.len());
            })
        })
        .collect();
    for t in clients {
        t.join().expect("an echo connection failed");
    }
    until("the pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
    let a = stats(&c.a);
    assert_eq!((a.opened, a.failed, a.refused), (100, 0, 0), "{a:?}");
    assert_eq!((a.bytes_up, a.bytes_down), (100 << 16, 100 << 16), "{a:?}");
}

/// The far side finishes first (both FINs exchanged, its socket gone) while the
/// client has not read yet, and its FIN comes again (a kernel's tail-loss probe does
/// that): a's stack, in TIME-WAIT, acknowledges it, the far side no longer knows the
/// connection and resets it. What waits in a's stack is still delivered, then EOF: a
/// reset after both FINs loses nothing (seen in e2e_pipes as an echo connection reset
/// just before its end).
#[test]
fn a_reset_after_both_fins_loses_no_buffered_data() {
    let faults = Faults {
        replay_fins_to_a: Some(Duration::from_millis(200)),
        ..Faults::default()
    };
    let c = chain_with(16, 8 << 20, faults);
    let client = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // A small receive buffer, so most of the answer waits in a's stack.
        s.set_recv_buffer_size(4096).unwrap();
        s.connect_timeout(&c.listen.into(), T).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(T)).unwrap();
        s
    };
    (&client).write_all(b"request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut srv = accept(&c.server);
    let mut req = Vec::new();
    srv.read_to_end(&mut req).unwrap();
    assert_eq!(req, b"request");
    let down = pattern(3, 4 << 20);
    srv.write_all(&down).unwrap();
    drop(srv);
    // b's side of the connection is gone (its FIN acknowledged); then its FIN comes
    // again, and b's reset reaches a before the client reads a byte.
    until("b's pipe idle", || stats(&c.b).active == 0);
    c.wire.seen.release_fins.store(true, Ordering::Relaxed);
    until("a reset from b", || {
        c.wire.seen.rsts_to_a.load(Ordering::Relaxed) > 0
    });
    let mut client = client;
    let mut back = Vec::new();
    let r = client.read_to_end(&mut back);
    assert!(
        r.is_ok() && back == down,
        "{r:?}: {} of {} bytes back",
        back.len(),
        down.len()
    );
    until("a's pipe idle", || stats(&c.a).active == 0);
    let a = stats(&c.a);
    assert_eq!((a.bytes_down, a.failed), (down.len() as u64, 0), "{a:?}");
}

/// Nothing moves on the host side of a's connection for longer than the idle timeout:
/// the client's data is all in a's stack at once, and a slow path (a thin link, or a
/// loaded machine) takes longer than that to carry it. The peer acknowledges data all
/// along, so the connection is not idle and is not reset (seen under load in CI as
/// echo connections reset in FIN-WAIT, their answer on its way).
#[test]
fn a_slow_transfer_is_not_idle() {
    let faults = Faults {
        pace_to_b: Some(Duration::from_millis(5)),
        ..Faults::default()
    };
    let c = chain_with(16, 4 << 20, faults);
    // About 770 segments, one per 5 ms at most: longer than IDLE, whatever the load.
    let data = pattern(4, 1 << 20);
    let mut client = connect(c.listen);
    let start = Instant::now();
    client.write_all(&data).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut srv = accept(&c.server);
    let mut got = Vec::new();
    let r = srv.read_to_end(&mut got);
    assert!(
        r.is_ok() && got == data,
        "{r:?}: {} of {} bytes",
        got.len(),
        data.len()
    );
    let took = start.elapsed();
    assert!(took > IDLE, "{took:?}: not longer than the idle timeout");
    srv.write_all(b"done").unwrap();
    drop(srv);
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"done");
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
    assert_eq!((stats(&c.a).failed, stats(&c.b).failed), (0, 0));
}

/// Echoes each connection of `server` on its own thread.
fn echo_server(server: &TcpListener) {
    let server = server.try_clone().unwrap();
    thread::spawn(move || {
        for s in server.incoming().flatten() {
            thread::spawn(move || {
                let mut s = s;
                let mut b = vec![0u8; 1 << 16];
                loop {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&b[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
}

/// a's stack sends a connection's SYN again (under load its SYN-ACK is late). By then
/// b's reverse pipe has put a fresh listener in place, and once an earlier connection
/// freed its socket that listener sits in a lower slot than the connection's socket,
/// where smoltcp offers it the copy first: it became a second connection on the same
/// addresses and ports, with its own host connection, whose SYN-ACK a answered with
/// an ACK that the copy answered with a reset (seen under load as echo connections
/// reset at their start). The copy must be dropped.
#[test]
fn a_retransmitted_syn_is_not_a_second_connection() {
    let faults = Faults {
        replay_syns_to_b: Some(Duration::from_millis(100)),
        ..Faults::default()
    };
    let c = chain_with(16, 64 * 1024, faults);
    echo_server(&c.server);
    // The first connection frees the lowest slot; the second one's copy meets a
    // listener there.
    for i in 1..=2u8 {
        let mut client = connect(c.listen);
        let data = pattern(10 + i, 4096);
        client.write_all(&data).unwrap();
        // The copy reaches b while the connection is open.
        until("the SYN sent again", || {
            c.wire.seen.syns_replayed.load(Ordering::Relaxed) == usize::from(i)
        });
        client.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        let r = client.read_to_end(&mut back);
        assert!(
            r.is_ok() && back == data,
            "connection {i}: {r:?}, {} bytes back",
            back.len()
        );
        until("both pipes idle", || {
            stats(&c.a).active == 0 && stats(&c.b).active == 0
        });
    }
    let b = stats(&c.b);
    assert_eq!((b.opened, b.failed), (2, 0), "{b:?}");
}

/// A reverse connection's handshake is reset (its SYN-ACK was lost and the client gave
/// up): smoltcp puts the socket back to LISTEN, in the lowest slot. It must not take
/// the next connection onto the first one's host connection; the first one's host
/// side is reset, and the next connection gets its own.
#[test]
fn a_reset_handshake_does_not_listen_again() {
    let faults = Faults {
        drop_synacks_to_a: 1,
        ..Faults::default()
    };
    let c = chain_with(16, 64 * 1024, faults);
    let first = connect(c.listen);
    // b took the SYN and connected to the server; its SYN-ACK is lost.
    let mut srv1 = accept(&c.server);
    until("the SYN-ACK dropped", || {
        c.wire.seen.synacks_dropped.load(Ordering::Relaxed) == 1
    });
    reset(first);
    // a resets its half-open connection (or answers b's next SYN-ACK with a reset).
    until("a reset to b", || {
        c.wire.seen.rsts_to_b.load(Ordering::Relaxed) > 0
    });
    let mut second = connect(c.listen);
    second.write_all(b"second").unwrap();
    second.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let r = srv1.read_to_end(&mut got);
    assert!(
        got.is_empty()
            && r.as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the first host connection: {r:?}, {got:?}"
    );
    let mut srv2 = accept(&c.server);
    let mut got = Vec::new();
    srv2.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"second");
    drop(srv2);
    assert_eq!(read_end(&mut second), None);
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
    let b = stats(&c.b);
    assert_eq!((b.opened, b.failed), (2, 1), "{b:?}");
}

/// A clean close resets nothing. The client closes first, so a's stack ends in
/// TIME-WAIT; smoltcp delays its ACK of b's FIN, and a freed the socket before sending
/// it: b retransmitted its FIN to a socket that was gone and got a reset, after
/// waiting in LAST-ACK for its retransmission timeout (under load long enough that
/// the hundred connections' pipes were not idle 20 s after their last byte).
#[test]
fn a_clean_close_sends_no_reset() {
    let c = chain(16, 64 * 1024);
    let mut client = connect(c.listen);
    client.write_all(b"ping").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut srv = accept(&c.server);
    let mut got = Vec::new();
    srv.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ping");
    srv.write_all(b"pong").unwrap();
    drop(srv);
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"pong");
    until("both pipes idle", || {
        stats(&c.a).active == 0 && stats(&c.b).active == 0
    });
    let seen = &c.wire.seen;
    let rsts = (
        seen.rsts_to_b.load(Ordering::Relaxed),
        seen.rsts_to_a.load(Ordering::Relaxed),
    );
    assert_eq!(rsts, (0, 0), "resets (to b, to a)");
}

/// Each stack draws its own initial sequence numbers. smoltcp's seed was 0 unless
/// set, so every stack used the same ones in the same order, again after each start:
/// a's first SYN and b's first SYN-ACK carried the same number.
#[test]
fn each_stack_has_its_own_initial_sequence_numbers() {
    let c = chain(16, 64 * 1024);
    let _client = connect(c.listen);
    let _srv = accept(&c.server);
    until("a SYN and a SYN-ACK", || {
        let isns = c.wire.seen.isns.lock().unwrap();
        !isns.0.is_empty() && !isns.1.is_empty()
    });
    let isns = c.wire.seen.isns.lock().unwrap();
    assert_ne!(isns.0[0], isns.1[0], "a's first SYN and b's first SYN-ACK");
}

/// Stopping a stack resets the host side of its connections, both ends here: a client
/// must not take a connection cut by a daemon's stop for a complete answer (it got a
/// clean EOF: the host tasks were dropped with the stack's runtime, closing their
/// sockets normally).
#[test]
fn stopping_the_stacks_resets_the_host_sides() {
    let c = chain(16, 64 * 1024);
    let mut client = connect(c.listen);
    client.write_all(b"x").unwrap();
    let mut srv = accept(&c.server);
    let mut b = [0u8; 1];
    srv.read_exact(&mut b).unwrap();
    drop(c);
    assert_eq!(read_end(&mut client), Some(ErrorKind::ConnectionReset));
    assert_eq!(read_end(&mut srv), Some(ErrorKind::ConnectionReset));
}
