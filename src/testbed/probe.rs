//! Traffic probes between two namespaces: a checked TCP transfer, a TCP throughput run,
//! a counted UDP stream, and `ping`.
//!
//! Each probe makes its sockets inside the namespaces ([`Netns::enter`]) and then drives
//! them from ordinary threads; every wait has a bound.

use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use ring::digest;
use socket2::{Domain, Protocol, Socket, Type};

use super::netns::Netns;
use super::wait::wait_ok;

/// Size of one TCP write (and read).
const CHUNK: usize = 256 * 1024;
/// Size of one write of a paced sender ([`throughput_at`]).
const PACED_CHUNK: usize = 64 * 1024;
/// Extra time a throughput run gets on top of its duration, for connecting and draining.
const GRACE: Duration = Duration::from_secs(20);
/// How long [`udp_counted`] listens for stragglers after the last datagram is sent.
pub const STRAGGLER_WAIT: Duration = Duration::from_secs(2);
/// Marks a [`udp_counted`] datagram, followed by the big-endian sequence number.
const UDP_MAGIC: &[u8; 8] = b"esprudp\0";
/// Size of a [`udp_counted`] datagram.
const UDP_SIZE: usize = 64;

/// The outcome of a [`tcp_transfer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes the receiver got (the sender sent the number asked for).
    pub bytes: u64,
    /// SHA-256 of what was sent.
    pub sent_sha256: [u8; 32],
    /// SHA-256 of what was received.
    pub recv_sha256: [u8; 32],
    /// From the receiver's accept to its end of stream.
    pub elapsed: Duration,
}

impl Transfer {
    /// Whether the receiver got exactly what was sent.
    pub fn intact(&self) -> bool {
        self.sent_sha256 == self.recv_sha256
    }

    /// The rate seen by the receiver.
    pub fn gbit_per_s(&self) -> f64 {
        gbit_per_s(self.bytes, self.elapsed)
    }
}

/// The outcome of a [`udp_counted`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCount {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Sequence numbers never received (sent or not), ascending.
    pub missing_seqs: Vec<u64>,
    /// Copies received beyond the first of a sequence number.
    pub duplicates: u64,
    /// Sends the kernel refused (e.g. no route while a tunnel was down).
    pub send_errors: u64,
}

/// Streams `bytes` of deterministic pseudo-random data over TCP from `from` to a listener
/// in `to` on `to_addr:port`; both sides hash what they handle. All within `timeout`.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> io::Result<Transfer> {
    let deadline = Instant::now() + timeout;
    let send = |mut sock: TcpStream| {
        let mut rng = XorShift::new(bytes);
        let mut sha = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            rng.fill(&mut buf[..n]);
            sha.update(&buf[..n]);
            sock.write_all(&buf[..n]).map_err(|e| timed(e, "sending"))?;
            left -= n as u64;
            past(deadline, "sending")?;
        }
        sock.shutdown(Shutdown::Write)?;
        Ok(sha256(sha))
    };
    let recv = |mut sock: TcpStream| {
        let start = Instant::now();
        let mut sha = digest::Context::new(&digest::SHA256);
        let total = drain(&mut sock, deadline, |chunk| sha.update(chunk))?;
        Ok((sha256(sha), total, start.elapsed()))
    };
    let (sent_sha256, (recv_sha256, bytes, elapsed)) = tcp_session(
        from,
        to,
        SocketAddr::new(to_addr, port),
        deadline,
        send,
        recv,
    )?;
    Ok(Transfer {
        bytes,
        sent_sha256,
        recv_sha256,
        elapsed,
    })
}

/// Streams TCP from `from` to `to_addr:port` in `to` for `duration` with 256 KiB writes,
/// and returns the rate the receiver saw, in Gbit/s.
pub fn throughput(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    duration: Duration,
) -> io::Result<f64> {
    paced(from, to, to_addr, port, duration, None)
}

/// [`throughput`] with the sender held to `mbit_per_s` at most (64 KiB writes on a fixed
/// schedule): a load a slower peer sustains, so that what it drops is not congestion.
pub fn throughput_at(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    duration: Duration,
    mbit_per_s: f64,
) -> io::Result<f64> {
    paced(from, to, to_addr, port, duration, Some(mbit_per_s))
}

fn paced(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    duration: Duration,
    mbit_per_s: Option<f64>,
) -> io::Result<f64> {
    let deadline = Instant::now() + duration + GRACE;
    let send = |mut sock: TcpStream| {
        let size = if mbit_per_s.is_some() {
            PACED_CHUNK
        } else {
            CHUNK
        };
        let mut buf = vec![0u8; size];
        XorShift::new(1).fill(&mut buf);
        // The time one write takes at the rate asked for.
        let every = mbit_per_s.map(|r| Duration::from_secs_f64(size as f64 * 8.0 / (r * 1e6)));
        let start = Instant::now();
        let mut next = start;
        while start.elapsed() < duration {
            if let Some(every) = every {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                next += every;
            }
            sock.write_all(&buf).map_err(|e| timed(e, "sending"))?;
        }
        sock.shutdown(Shutdown::Write)
    };
    let recv = |mut sock: TcpStream| {
        let start = Instant::now();
        let total = drain(&mut sock, deadline, |_| ())?;
        Ok(gbit_per_s(total, start.elapsed()))
    };
    let ((), rate) = tcp_session(
        from,
        to,
        SocketAddr::new(to_addr, port),
        deadline,
        send,
        recv,
    )?;
    Ok(rate)
}

/// Sends `count` numbered datagrams from `from` to `to_addr:port` in `to`, one every
/// `interval` (on a fixed schedule, so a slow send does not shift the rest), and counts
/// what arrives, listening [`STRAGGLER_WAIT`] past the last send.
pub fn udp_counted(
    from: &Netns,
    to: &Netns,
    to_addr: IpAddr,
    port: u16,
    count: u64,
    interval: Duration,
) -> io::Result<UdpCount> {
    let addr = SocketAddr::new(to_addr, port);
    let rx = to.enter(|| UdpSocket::bind(addr))??;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    big_receive_buffer(&rx);
    let any: IpAddr = match to_addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    // Not connected: a route that is missing at first (a tunnel coming up) costs the
    // datagrams sent meanwhile, not the whole run.
    let tx = from.enter(|| UdpSocket::bind((any, 0)))??;
    let finished = OnceLock::<Instant>::new();
    thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut seen = vec![0u32; count as usize];
            let (mut unique, mut duplicates) = (0u64, 0u64);
            let mut buf = [0u8; 2048];
            loop {
                match rx.recv(&mut buf) {
                    Ok(n) => {
                        if let Some(seq) = parse_seq(&buf[..n]).filter(|s| *s < count) {
                            let times = &mut seen[seq as usize];
                            *times += 1;
                            match *times {
                                1 => unique += 1,
                                _ => duplicates += 1,
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
                if let Some(end) = finished.get() {
                    if unique == count || end.elapsed() >= STRAGGLER_WAIT {
                        break;
                    }
                }
            }
            let missing = (0..count).filter(|s| seen[*s as usize] == 0).collect();
            Ok((unique, missing, duplicates))
        });
        let (mut sent, mut send_errors) = (0, 0);
        let mut next = Instant::now();
        let mut datagram = [0u8; UDP_SIZE];
        datagram[..8].copy_from_slice(UDP_MAGIC);
        for seq in 0..count {
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            next += interval;
            datagram[8..16].copy_from_slice(&seq.to_be_bytes());
            match tx.send_to(&datagram, addr) {
                Ok(_) => sent += 1,
                Err(_) => send_errors += 1,
            }
        }
        let _ = finished.set(Instant::now());
        let (received, missing_seqs, duplicates) = receiver
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload))?;
        Ok(UdpCount {
            sent,
            received,
            missing_seqs,
            duplicates,
            send_errors,
        })
    })
}

/// The outcome of a [`ping_stats`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pings {
    /// Echo requests sent.
    pub sent: u32,
    /// Distinct requests answered with our own payload.
    pub answered: u32,
    /// Round-trip time of each answered request, in the order the answers came.
    pub rtts: Vec<Duration>,
}

/// Marks our echo payloads, so a stray reply cannot be counted.
const PING_MAGIC: &[u8; 16] = b"esprit-ping-v1\0\0";
/// Echo requests go out this often until `count` are answered or the time is up.
const PING_INTERVAL: Duration = Duration::from_millis(200);

/// Sends ICMP (or ICMPv6) echo requests from `ns` to `addr` every 200 ms until `count`
/// distinct ones are answered or `timeout` passes, with an ICMP datagram socket of our
/// own (no `ping` program): the kernel fills in the identifier and checksum and hands
/// this socket only the replies to its own requests.
///
/// Errors are about the probe itself (no socket could be made), never about the path:
/// an unanswered request is just not counted.
pub fn ping_stats(ns: &Netns, addr: IpAddr, count: u32, timeout: Duration) -> io::Result<Pings> {
    let (domain, protocol, request, reply) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let sock = ns
        .enter(|| {
            // Ping sockets are open to the groups in this range, per network namespace
            // (the default, "1 0", allows nobody); root's group 0 is enough.
            std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0")?;
            Socket::new(domain, Type::DGRAM, Some(protocol))
        })?
        .map_err(|e| io::Error::new(e.kind(), format!("an ICMP socket in {}: {e}", ns.name())))?;
    // An ICMP datagram socket speaks sendto/recvfrom with plain IP socket addresses,
    // exactly as a UDP socket does: std's type drives it without any unsafe buffer code.
    let sock = UdpSocket::from(sock);
    // Not connected: with no route yet (a tunnel coming up) connect would fail for good,
    // while an unconnected send just fails this time and is retried.
    let to = SocketAddr::new(addr, 0);
    sock.set_read_timeout(Some(Duration::from_millis(10)))?;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut seen = Vec::new();
    let mut rtts = Vec::new();
    let mut next = start;
    let mut packet = [0u8; 8 + 48];
    packet[8..8 + PING_MAGIC.len()].copy_from_slice(PING_MAGIC);
    let mut got = [0u8; 1500];
    while (rtts.len() as u32) < count && Instant::now() < deadline {
        if Instant::now() >= next && sent_at.len() < usize::from(u16::MAX) {
            packet[0] = request;
            packet[6..8].copy_from_slice(&(sent_at.len() as u16).to_be_bytes());
            // A route that is not there yet (a tunnel coming up) fails the send: retry.
            if sock.send_to(&packet, to).is_ok() {
                sent_at.push(Instant::now());
                seen.push(false);
            }
            next += PING_INTERVAL;
        }
        let Ok((n, from)) = sock.recv_from(&mut got) else {
            continue;
        };
        let got = &got[..n];
        let from_peer = from.ip() == addr;
        if !from_peer || n != packet.len() || got[0] != reply || got[8..] != packet[8..] {
            continue;
        }
        let seq = usize::from(u16::from_be_bytes([got[6], got[7]]));
        if let Some(false) = seen.get(seq) {
            seen[seq] = true;
            rtts.push(sent_at[seq].elapsed());
        }
    }
    Ok(Pings {
        sent: sent_at.len() as u32,
        answered: rtts.len() as u32,
        rtts,
    })
}

/// Whether `count` echo requests from `ns` to `addr` are answered within `timeout`
/// ([`ping_stats`]). Panics when no ICMP socket can be made: that is a broken test
/// bench, not an unanswered ping.
pub fn ping(ns: &Netns, addr: IpAddr, count: u32, timeout: Duration) -> bool {
    match ping_stats(ns, addr, count, timeout) {
        Ok(p) => p.answered >= count,
        Err(e) => panic!("ping {addr} from {}: {e}", ns.name()),
    }
}

/// Accepts one connection on `addr` in `to` while connecting to it from `from`, then runs
/// `send` and `recv` on the two ends at once.
fn tcp_session<S: Send, R: Send>(
    from: &Netns,
    to: &Netns,
    addr: SocketAddr,
    deadline: Instant,
    send: impl FnOnce(TcpStream) -> io::Result<S> + Send,
    recv: impl FnOnce(TcpStream) -> io::Result<R> + Send,
) -> io::Result<(S, R)> {
    let listener = to.enter(|| TcpListener::bind(addr))??;
    listener.set_nonblocking(true)?;
    let sender_failed = AtomicBool::new(false);
    thread::scope(|s| {
        let receiver = s.spawn(|| {
            let sock = accept(&listener, deadline, &sender_failed)?;
            sock.set_nonblocking(false)?;
            recv(sock)
        });
        let sent = from
            .enter(|| connect(addr, deadline))
            .and_then(|r| r)
            .and_then(|sock| {
                sock.set_write_timeout(Some(remaining(deadline)?))?;
                send(sock)
            });
        if sent.is_err() {
            sender_failed.store(true, Ordering::Relaxed);
        }
        let received = receiver
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload));
        Ok((sent?, received?))
    })
}

fn accept(
    listener: &TcpListener,
    deadline: Instant,
    give_up: &AtomicBool,
) -> io::Result<TcpStream> {
    loop {
        match listener.accept() {
            Ok((sock, _)) => return Ok(sock),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if give_up.load(Ordering::Relaxed) {
                    return Err(io::Error::other("the sender gave up"));
                }
                past(deadline, "a connection")?;
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects, retrying refusals and unreachable routes (a tunnel coming up) until `deadline`.
fn connect(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let what = format!("a TCP connection to {addr}");
    let sock = wait_ok(
        &what,
        remaining(deadline)?,
        Duration::from_millis(50),
        || {
            let left = deadline.saturating_duration_since(Instant::now());
            TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(10)))
        },
    )?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// Reads to end of stream, handing each chunk to `sink`; returns the byte count.
fn drain(sock: &mut TcpStream, deadline: Instant, mut sink: impl FnMut(&[u8])) -> io::Result<u64> {
    sock.set_read_timeout(Some(remaining(deadline)?))?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = sock.read(&mut buf).map_err(|e| timed(e, "receiving"))?;
        if n == 0 {
            return Ok(total);
        }
        sink(&buf[..n]);
        total += n as u64;
        past(deadline, "receiving")?;
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    past(deadline, "the probe to start")?;
    Ok(deadline - Instant::now())
}

fn past(deadline: Instant, what: &str) -> io::Result<()> {
    if Instant::now() >= deadline {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("probe timed out {what}"),
        ))
    } else {
        Ok(())
    }
}

/// A socket timeout surfaces as `WouldBlock`; say what it was.
fn timed(e: io::Error, what: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("probe timed out {what}"))
        }
        _ => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

fn gbit_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e9
}

fn sha256(ctx: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn parse_seq(datagram: &[u8]) -> Option<u64> {
    if datagram.len() < 16 || &datagram[..8] != UDP_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(datagram[8..16].try_into().ok()?))
}

/// Marsaglia's xorshift64: cheap, deterministic filler that compression cannot shrink.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Any non-zero state works; mix the seed so that 0 is fine too.
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// `GET path` over HTTP/1.1 from inside `ns`: (status code, body).
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> io::Result<(u16, String)> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let answer = ns.enter(move || -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })??;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no header end in {answer:?}")))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
    Ok((code, body.to_string()))
}

/// Gives a probe's receiving socket 8 MiB of buffer, past `rmem_max` (the tests run as
/// root): on two busy cores the receiving thread may fall behind a burst that a tunnel
/// delivered in one GRO write, and a datagram the probe itself failed to read is not
/// one the tunnel lost.
pub(super) fn big_receive_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads `size` (a c_int of the given length) during the call only;
    // the descriptor is valid for `sock`'s life.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        // Unprivileged: the plain option, capped at rmem_max.
        let _ = socket2::SockRef::from(sock).set_recv_buffer_size(8 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::super::topo::Topology;
    use super::*;

    #[test]
    fn generator_is_deterministic_and_not_flat() {
        let (mut a, mut b) = ([0u8; 37], [0u8; 37]);
        XorShift::new(5).fill(&mut a);
        XorShift::new(5).fill(&mut b);
        assert_eq!(a, b);
        assert!(a.iter().filter(|x| **x == 0).count() < 5);
    }

    #[test]
    fn udp_counted_over_veth_loses_nothing() {
        let topo = Topology::direct(false).unwrap();
        let c = udp_counted(
            topo.a(),
            topo.b(),
            topo.b_addr_for_a(),
            4600,
            500,
            Duration::from_millis(1),
        )
        .unwrap();
        assert_eq!(c.sent, 500);
        assert_eq!(c.received, 500);
        assert!(c.missing_seqs.is_empty(), "{c:?}");
        assert_eq!(c.duplicates, 0);
    }

    #[test]
    fn udp_counted_reports_what_never_arrived() {
        let topo = Topology::direct(false).unwrap();
        // Nothing routes to b's inner address: every datagram is missing.
        let inner = IpAddr::V4(topo.b_inner().v4[0]);
        let c = udp_counted(topo.a(), topo.b(), inner, 4601, 3, Duration::ZERO).unwrap();
        assert_eq!(c.received, 0);
        assert_eq!(c.missing_seqs, vec![0, 1, 2]);
        assert_eq!(c.sent + c.send_errors, 3);
    }

    #[test]
    fn throughput_over_veth() {
        let topo = Topology::direct(false).unwrap();
        let rate = throughput(
            topo.a(),
            topo.b(),
            topo.b_addr(),
            5201,
            Duration::from_millis(500),
        )
        .unwrap();
        eprintln!("plain veth, one TCP stream: {rate:.1} Gbit/s");
        assert!(rate > 0.1, "{rate} Gbit/s");
    }

    #[test]
    fn tcp_transfer_fails_in_bounded_time_without_a_path() {
        let topo = Topology::direct(false).unwrap();
        let start = Instant::now();
        let inner = IpAddr::V4(topo.b_inner().v4[0]);
        let r = tcp_transfer(
            topo.a(),
            topo.b(),
            inner,
            5300,
            10,
            Duration::from_millis(500),
        );
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
