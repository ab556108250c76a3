//! UDP sockets for IKE (500) and NAT-T/ESP (4500) with GSO, GRO, `recvmmsg` and
//! `IP_PKTINFO`, on top of `quinn-udp`.
//!
//! A receive fills a [`UdpRecvBatch`]: up to [`crate::UDP_BATCH`] messages from one
//! `recvmmsg`, each a GRO aggregate of up to 64 datagrams from one sender at a fixed
//! stride. A send drains a [`GsoBatch`]: each run of equal-size datagrams to one peer goes
//! out with one `sendmsg` carrying `UDP_SEGMENT`. When the kernel or the route refuses GSO
//! (quinn-udp notices `EIO`/`EINVAL` and turns it off), the run is resent datagram by
//! datagram.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use quinn_udp::{Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

use crate::batch::{GsoBatch, UdpRecvBatch};
use crate::sys::poll_fd;

/// Socket buffer size asked for by default: room for a few GSO/GRO batches in flight.
const DEFAULT_BUFFER: usize = 8 << 20;

/// Where the IKE and NAT-T sockets listen.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Local addresses to bind (one socket per address and port).
    pub addrs: Vec<IpAddr>,
    /// The IKE port (RFC 7296: 500).
    pub ike_port: u16,
    /// The NAT-T port carrying IKE and UDP-encapsulated ESP (RFC 3948: 4500).
    pub natt_port: u16,
    /// `SO_SNDBUF`/`SO_RCVBUF` to ask for (forced past the sysctl limit when privileged).
    pub buffer_bytes: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            addrs: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            ike_port: 500,
            natt_port: 4500,
            buffer_bytes: DEFAULT_BUFFER,
        }
    }
}

impl UdpConfig {
    /// Binds one socket per address for the IKE port and one for the NAT-T port.
    pub fn bind_all(&self) -> io::Result<Vec<UdpSocket>> {
        let mut out = Vec::with_capacity(self.addrs.len() * 2);
        for &ip in &self.addrs {
            for port in [self.ike_port, self.natt_port] {
                out.push(UdpSocket::bind_with(
                    SocketAddr::new(ip, port),
                    self.buffer_bytes,
                )?);
            }
        }
        Ok(out)
    }
}

/// A UDP socket with batched, offload-aware IO (blocking; see [`AsyncUdpSocket`]).
#[derive(Debug)]
pub struct UdpSocket {
    sock: std::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl UdpSocket {
    /// Binds `addr` with default buffer sizes.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Self::bind_with(addr, DEFAULT_BUFFER)
    }

    /// Binds `addr` (`SO_REUSEADDR`; IPv6 sockets are IPv6-only) with `buffer_bytes` of
    /// send and receive buffer, and turns on GRO, `IP_PKTINFO` and path-MTU probing.
    pub fn bind_with(addr: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)?;
        }
        set_buffers(&sock, buffer_bytes);
        sock.bind(&addr.into())?;
        let sock: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&sock).into())?;
        let local = sock.local_addr()?;
        Ok(UdpSocket { sock, state, local })
    }

    /// The bound address (with the kernel-chosen port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams one send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Datagrams one received message may carry (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Sends one datagram (IKE messages, keepalives), waiting for buffer space.
    pub fn send_to(&self, data: &[u8], dst: SocketAddr, src_ip: Option<IpAddr>) -> io::Result<()> {
        let t = transmit(dst, src_ip, data, None);
        self.retry(libc::POLLOUT, None, || {
            self.state.try_send((&self.sock).into(), &t)
        })
    }

    /// Receives what is queued without waiting (`WouldBlock` if nothing is); returns the
    /// number of datagrams.
    pub fn try_recv_batch(&self, batch: &mut UdpRecvBatch) -> io::Result<usize> {
        let n = {
            let (mut slices, metas) = batch.recv_parts();
            self.state.recv((&self.sock).into(), &mut slices, metas)?
        };
        batch.set_received(n, self.local.port());
        Ok(batch.len())
    }

    /// Waits for datagrams and receives a batch; returns the number of datagrams.
    pub fn recv_batch(&self, batch: &mut UdpRecvBatch) -> io::Result<usize> {
        self.retry(libc::POLLIN, None, || self.try_recv_batch(batch))
    }

    /// [`UdpSocket::recv_batch`] that gives up with `TimedOut` after `timeout`.
    pub fn recv_batch_timeout(
        &self,
        batch: &mut UdpRecvBatch,
        timeout: Duration,
    ) -> io::Result<usize> {
        self.retry(libc::POLLIN, Some(timeout), || self.try_recv_batch(batch))
    }

    /// Sends every datagram of `batch`, one GSO `sendmsg` per run, waiting for buffer
    /// space, and clears it; returns the number of datagrams sent.
    ///
    /// A run the kernel refuses (unreachable peer, message too long) does not stop the
    /// others; the first such error is returned only if nothing went out.
    pub fn send_batch(&self, batch: &mut GsoBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut first_err = None;
        for (run, bytes) in batch.run_iter() {
            let mut rest = bytes;
            while !rest.is_empty() {
                let (chunk, tail, seg) = next_chunk(&self.state, run.segment, rest);
                let t = transmit(run.dst, run.src_ip, chunk, seg);
                let r = self.retry(libc::POLLOUT, None, || {
                    self.state.try_send((&self.sock).into(), &t)
                });
                match send_outcome(r, &self.state, seg, chunk.len(), run.segment) {
                    SendOutcome::Sent(n) => {
                        sent += n;
                        rest = tail;
                    }
                    SendOutcome::Retry => {}
                    SendOutcome::Failed(e) => {
                        first_err.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        batch.clear();
        finish_send(sent, first_err)
    }

    /// Turns this socket into a tokio one; must run inside a tokio runtime.
    pub fn into_async(self) -> io::Result<AsyncUdpSocket> {
        Ok(AsyncUdpSocket {
            sock: tokio::net::UdpSocket::from_std(self.sock)?,
            state: self.state,
            local: self.local,
        })
    }

    /// Runs `op` until it stops saying `WouldBlock`, polling for `events` in between.
    fn retry<T>(
        &self,
        events: libc::c_short,
        timeout: Option<Duration>,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !poll_fd(self.sock.as_fd(), events, timeout)? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// A UDP socket driven by tokio, with the same batched IO as [`UdpSocket`].
#[derive(Debug)]
pub struct AsyncUdpSocket {
    sock: tokio::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl AsyncUdpSocket {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams one send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Datagrams one received message may carry (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Sends one datagram.
    pub async fn send_to(
        &self,
        data: &[u8],
        dst: SocketAddr,
        src_ip: Option<IpAddr>,
    ) -> io::Result<()> {
        let t = transmit(dst, src_ip, data, None);
        self.sock
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.sock).into(), &t)
            })
            .await
    }

    /// Waits for datagrams and receives a batch; returns the number of datagrams.
    pub async fn recv_batch(&self, batch: &mut UdpRecvBatch) -> io::Result<usize> {
        let n = {
            let (mut slices, metas) = batch.recv_parts();
            self.sock
                .async_io(Interest::READABLE, || {
                    self.state.recv((&self.sock).into(), &mut slices, metas)
                })
                .await?
        };
        batch.set_received(n, self.local.port());
        Ok(batch.len())
    }

    /// Async [`UdpSocket::send_batch`].
    pub async fn send_batch(&self, batch: &mut GsoBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut first_err = None;
        for (run, bytes) in batch.run_iter() {
            let mut rest = bytes;
            while !rest.is_empty() {
                let (chunk, tail, seg) = next_chunk(&self.state, run.segment, rest);
                let t = transmit(run.dst, run.src_ip, chunk, seg);
                let r = self
                    .sock
                    .async_io(Interest::WRITABLE, || {
                        self.state.try_send((&self.sock).into(), &t)
                    })
                    .await;
                match send_outcome(r, &self.state, seg, chunk.len(), run.segment) {
                    SendOutcome::Sent(n) => {
                        sent += n;
                        rest = tail;
                    }
                    SendOutcome::Retry => {}
                    SendOutcome::Failed(e) => {
                        first_err.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        batch.clear();
        finish_send(sent, first_err)
    }
}

/// The next piece of a run one send can carry, the rest, and the GSO segment size to use.
fn next_chunk<'a>(
    state: &UdpSocketState,
    segment: usize,
    rest: &'a [u8],
) -> (&'a [u8], &'a [u8], Option<usize>) {
    let seg = segment.max(1);
    let per_send = state.max_gso_segments().max(1);
    let (chunk, tail) = rest.split_at(rest.len().min(seg * per_send));
    (chunk, tail, (per_send > 1).then_some(seg))
}

/// A batch send's result: the count if anything went out, else the first error.
/// What one GSO send attempt of a run's chunk came to.
enum SendOutcome {
    /// The chunk went out: this many datagrams.
    Sent(usize),
    /// quinn-udp turned GSO off after EIO/EINVAL: send the chunk again without it.
    Retry,
    /// The kernel refused the chunk; the rest of this run is skipped.
    Failed(io::Error),
}

fn send_outcome(
    r: io::Result<()>,
    state: &UdpSocketState,
    seg: Option<usize>,
    chunk_len: usize,
    segment: usize,
) -> SendOutcome {
    match r {
        Ok(()) => SendOutcome::Sent(chunk_len.div_ceil(segment.max(1))),
        Err(_) if seg.is_some() && state.max_gso_segments() == 1 => SendOutcome::Retry,
        Err(e) => SendOutcome::Failed(e),
    }
}

fn finish_send(sent: usize, first_err: Option<io::Error>) -> io::Result<usize> {
    match first_err {
        Some(e) if sent == 0 => Err(e),
        Some(e) => {
            tracing::debug!("UDP batch send: {e}; {sent} datagrams sent");
            Ok(sent)
        }
        None => Ok(sent),
    }
}

fn transmit(
    dst: SocketAddr,
    src_ip: Option<IpAddr>,
    contents: &[u8],
    segment_size: Option<usize>,
) -> Transmit<'_> {
    Transmit {
        destination: dst,
        ecn: None,
        contents,
        segment_size: segment_size.filter(|&s| s < contents.len()),
        src_ip,
    }
}

/// Asks for `bytes` of socket buffer, past `rmem_max`/`wmem_max` when privileged.
fn set_buffers(sock: &Socket, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(sock, force, v).is_err() {
            let _ = setsockopt_int(sock, plain, v);
        }
    }
}

fn setsockopt_int(sock: &Socket, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a c_int that outlives the call; the length matches.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gso_and_gro_round_trip() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut b = GsoBatch::new(1 << 20);
        for i in 0..8u8 {
            assert!(b.push(rx.local_addr(), None, &[i; 1000]));
        }
        assert_eq!(b.runs(), 1);
        assert_eq!(tx.send_batch(&mut b).unwrap(), 8);
        let mut r = UdpRecvBatch::new(8);
        let mut got = Vec::new();
        while got.len() < 8 {
            rx.recv_batch_timeout(&mut r, Duration::from_secs(5))
                .unwrap();
            got.extend(r.iter().map(|d| (d.data.to_vec(), d.src, d.dst_ip)));
        }
        for (i, (data, src, dst)) in got.iter().enumerate() {
            assert_eq!(data, &vec![i as u8; 1000]);
            assert_eq!(*src, tx.local_addr());
            assert_eq!(*dst, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
    }
}
