//! A paced UDP flood from spoofed IPv4 sources, for hostile-input tests: a raw socket
//! (`IPPROTO_RAW`, the IP header ours) in a namespace the test made, so each datagram
//! can come from another address of a network no host owns.
//!
//! The namespace that sends should route the spoofed network's answers somewhere quiet
//! ([`Flood::sink`]): the target's replies then end in a socket nobody reads instead of
//! ICMP errors.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::netns::Netns;

/// How often the sender catches up with its schedule.
const TICK: Duration = Duration::from_millis(1);

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodReport {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Sends the kernel refused (a full device queue, say).
    pub send_errors: u64,
    /// From the first send to the last.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams per second actually sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A flood's shape: where from, where to, how fast, for how long.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// The spoofed sources: `count` addresses from `first` up, one per datagram in turn.
    pub first: Ipv4Addr,
    /// How many source addresses.
    pub count: u32,
    /// The source port of every datagram.
    pub sport: u16,
    /// The target.
    pub to: SocketAddrV4,
    /// Datagrams per second.
    pub rate: u64,
    /// How long.
    pub duration: Duration,
}

impl Flood {
    /// Sends from `ns`, datagram `i`'s payload written by `payload(i, buf)` into an
    /// emptied buffer, on a fixed schedule of `rate` a second, until `duration` passed
    /// or `stop` is set.
    pub fn run(
        &self,
        ns: &Netns,
        stop: &AtomicBool,
        mut payload: impl FnMut(u64, &mut Vec<u8>),
    ) -> io::Result<FloodReport> {
        let sock =
            ns.enter(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))))??;
        let dest = SockAddr::from(SocketAddr::V4(self.to));
        let mut packet = Vec::with_capacity(2048);
        let mut body = Vec::with_capacity(2048);
        let (mut sent, mut send_errors) = (0u64, 0u64);
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if elapsed >= self.duration {
                break;
            }
            let due = (elapsed.as_secs_f64() * self.rate as f64) as u64;
            if sent + send_errors >= due {
                thread::sleep(TICK);
                continue;
            }
            for _ in sent + send_errors..due {
                let i = sent + send_errors;
                body.clear();
                payload(i, &mut body);
                let src = u32::from(self.first).wrapping_add((i % u64::from(self.count)) as u32);
                ipv4_udp(
                    &mut packet,
                    Ipv4Addr::from(src),
                    self.sport,
                    &self.to,
                    &body,
                );
                match sock.send_to(&packet, &dest) {
                    Ok(_) => sent += 1,
                    Err(_) => send_errors += 1,
                }
            }
        }
        Ok(FloodReport {
            sent,
            send_errors,
            elapsed: start.elapsed(),
        })
    }

    /// A socket in `ns` on the flood's source port, any address, that nobody reads:
    /// with the spoofed network on `ns`'s loopback, the target's answers end here (and
    /// are dropped when its small buffer is full) rather than as ICMP port unreachable.
    pub fn sink(&self, ns: &Netns) -> io::Result<UdpSocket> {
        let port = self.sport;
        ns.enter(|| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_recv_buffer_size(4096)?;
            s.bind(&SockAddr::from(SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                port,
            ))))?;
            Ok::<_, io::Error>(UdpSocket::from(s))
        })?
    }
}

/// An IPv4 header and a UDP header before `body`. The kernel fills in the IP checksum,
/// total length and ID of a raw socket's packet; a zero UDP checksum means none (IPv4).
fn ipv4_udp(out: &mut Vec<u8>, src: Ipv4Addr, sport: u16, to: &SocketAddrV4, body: &[u8]) {
    out.clear();
    let total = u16::try_from(20 + 8 + body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&to.ip().octets());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&to.port().to_be_bytes());
    out.extend_from_slice(&(total - 20).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_addresses_ports_and_lengths() {
        let mut p = Vec::new();
        let to = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 500);
        ipv4_udp(&mut p, Ipv4Addr::new(10, 250, 0, 7), 501, &to, b"abcd");
        assert_eq!(p.len(), 32);
        assert_eq!(&p[2..4], &32u16.to_be_bytes());
        assert_eq!(p[9], 17);
        assert_eq!(&p[12..16], &[10, 250, 0, 7]);
        assert_eq!(&p[16..20], &[192, 0, 2, 2]);
        assert_eq!(&p[20..22], &501u16.to_be_bytes());
        assert_eq!(&p[22..24], &500u16.to_be_bytes());
        assert_eq!(&p[24..26], &12u16.to_be_bytes());
        assert_eq!(&p[28..], b"abcd");
    }
}
