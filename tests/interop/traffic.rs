//! Traffic through the tunnel from a chosen inner source address: `ping -I` and a TCP
//! transfer whose client socket is bound to the source before it connects. Binding
//! matters when several child SAs share a destination subnet and differ only in their
//! local selector (seed 000's p2p and n2p): the source picks the child SA.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use esprit::testbed::Netns;
use ring::digest;

const CHUNK: usize = 64 * 1024;

/// Whether `ping -I src` in `ns` gets `count` answers from `dst` within `timeout`.
pub fn ping_from(ns: &Netns, src: Ipv4Addr, dst: Ipv4Addr, count: u32, timeout: Duration) -> bool {
    let secs = timeout.as_secs().max(1);
    ns.command("ping")
        .args(["-n", "-q", "-i", "0.2", "-I", &src.to_string()])
        .args(["-c", &count.to_string(), "-w", &secs.to_string()])
        .arg(dst.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A finished transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of what was sent and of what was received.
    pub sha256: ([u8; 32], [u8; 32]),
    /// From connect to the receiver's end of stream.
    pub elapsed: Duration,
}

impl Transfer {
    /// Whether the far side received exactly what was sent.
    pub fn intact(&self, sent: u64) -> bool {
        self.bytes == sent && self.sha256.0 == self.sha256.1
    }

    /// The rate, in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Sends `bytes` of pseudo-random data over TCP from `src` in `from` to `dst:port` in
/// `to`; both ends hash what they handle. Everything within `timeout`.
pub fn tcp_from(
    from: &Netns,
    src: Ipv4Addr,
    to: &Netns,
    dst: Ipv4Addr,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> io::Result<Transfer> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::new(IpAddr::V4(dst), port);
    let listener = to.enter(|| TcpListener::bind(addr))??;
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let sender_failed = AtomicBool::new(false);
    thread::scope(|s| {
        let receiver = s.spawn(|| -> io::Result<([u8; 32], u64)> {
            let mut sock = loop {
                match listener.accept() {
                    Ok((sock, _)) => break sock,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if sender_failed.load(Ordering::Relaxed) {
                            return Err(io::Error::other("the sender gave up"));
                        }
                        if Instant::now() >= deadline {
                            return Err(timed_out("no connection arrived"));
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            };
            sock.set_nonblocking(false)?;
            sock.set_read_timeout(Some(left(deadline)?))?;
            let mut sha = digest::Context::new(&digest::SHA256);
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                let n = sock.read(&mut buf).map_err(|e| context(e, "receiving"))?;
                if n == 0 {
                    return Ok((finish(sha), total));
                }
                sha.update(&buf[..n]);
                total += n as u64;
            }
        });
        let sent = from
            .enter(|| connect_from(src, addr, deadline))
            .and_then(|r| r)
            .and_then(|mut sock| {
                sock.set_write_timeout(Some(left(deadline)?))?;
                let mut sha = digest::Context::new(&digest::SHA256);
                let mut x = bytes ^ 0x9e37_79b9_7f4a_7c15;
                let mut buf = vec![0u8; CHUNK];
                let mut remaining = bytes;
                while remaining > 0 {
                    let n = remaining.min(CHUNK as u64) as usize;
                    for chunk in buf[..n].chunks_mut(8) {
                        // xorshift64: cheap filler that no layer can compress away
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
                    }
                    sha.update(&buf[..n]);
                    sock.write_all(&buf[..n])
                        .map_err(|e| context(e, "sending"))?;
                    remaining -= n as u64;
                }
                sock.shutdown(Shutdown::Write)?;
                Ok(finish(sha))
            });
        if sent.is_err() {
            sender_failed.store(true, Ordering::Relaxed);
        }
        let received = receiver.join().expect("receiver thread");
        let sent = sent?;
        let (got, total) = received?;
        Ok(Transfer {
            bytes: total,
            sha256: (sent, got),
            elapsed: start.elapsed(),
        })
    })
}

/// Connects to `dst` from `src` (port chosen by the kernel), retrying until `deadline`:
/// right after a rekey or a setup the first SYN may meet a route being swapped.
fn connect_from(src: Ipv4Addr, dst: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = None;
    while Instant::now() < deadline {
        match connect_once(src, dst, left(deadline)?.min(Duration::from_secs(3))) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(last.unwrap_or_else(|| timed_out("connecting")))
}

fn connect_once(src: Ipv4Addr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::other("IPv4 only"));
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: plain syscall; the descriptor is owned by `fd` at once.
    let raw =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let stream = TcpStream::from(fd);
    // Linux bounds a blocking connect by SO_SNDTIMEO.
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(10))))?;
    let (local, remote) = (sockaddr(src, 0), sockaddr(*dst.ip(), dst.port()));
    let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: both addresses are valid sockaddr_in values for the calls' duration.
    check(unsafe {
        libc::bind(
            stream.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            len,
        )
    })?;
    // SAFETY: as above.
    check(unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        )
    })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| timed_out("out of time"))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

fn context(e: io::Error, what: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            timed_out(&format!("{what}: timed out"))
        }
        _ => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

fn finish(ctx: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
