//! Test harness: network namespaces of our own, threads inside them, packet builders.
//!
//! Every test makes uniquely named namespaces and removes them in a guard that also runs
//! when the test panics; all traffic stays inside them.

#![allow(dead_code, unreachable_pub)]

pub mod copy_loop;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Checks that the tests can make namespaces and TUN devices, and fails the test with
/// what to do when they cannot: a test that needs root never skips silently.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test needs root (network namespaces, TUN devices): run `sudo ./test.sh`"
    );
    root
}

/// Runs a command and returns its stdout; panics with its stderr if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => panic!(
                "{args:?}: `{}` is not installed (Debian package iproute2; `sudo ./test.sh` installs it)",
                args[0]
            ),
            _ => panic!("{args:?}: {e}"),
        });
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace this test made; dropping it deletes it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Makes `tio-TAG-PID-N` with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tio-{tag}-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // IPv6 addresses on a fresh TUN would stay tentative for a second of DAD, during
        // which source selection falls back to ::1; a point-to-point TUN has no neighbours.
        ns.run(|| {
            for conf in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
                std::fs::write(&path, "0").unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        });
        ns
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs `f` on a thread that has entered this namespace and returns its result;
    /// a panic in `f` fails the caller.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Starts `f` on a thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Two namespaces joined by a veth pair, 192.0.2.1/24 in `a` and 192.0.2.2/24 in `b`.
pub fn veth_pair(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    sh(&[
        "ip", "link", "add", "veth0", "netns", &a.name, "type", "veth", "peer", "name", "veth0",
        "netns", &b.name,
    ]);
    a.ip(&["addr", "add", "192.0.2.1/24", "dev", "veth0"]);
    b.ip(&["addr", "add", "192.0.2.2/24", "dev", "veth0"]);
    a.ip(&["link", "set", "veth0", "up"]);
    b.ip(&["link", "set", "veth0", "up"]);
    (a, b)
}

/// The Internet checksum of `data`, folded, starting from `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_header(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    let folded = !checksum(&p, 0);
    u32::from(folded)
}

/// An IPv4/UDP packet with valid checksums.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = udp_header(sport, dport, payload);
    let c = checksum(
        &udp,
        pseudo_sum(&src.octets(), &dst.octets(), 17, udp.len()),
    );
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    let total = (20 + udp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    ip
}

/// An IPv6/UDP packet with a valid checksum.
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = udp_header(sport, dport, payload);
    let c = checksum(
        &udp,
        pseudo_sum(&src.octets(), &dst.octets(), 17, udp.len()),
    );
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&udp);
    ip
}

/// What a test wants to know of an IP packet: addresses, protocol, ports, payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ports: Option<(u16, u16)>,
    pub payload: &'a [u8],
}

/// Parses an IPv4 or IPv6 packet without extension headers; None if malformed.
pub fn parse(pkt: &[u8]) -> Option<Parsed<'_>> {
    let (src, dst, proto, l4) = match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                pkt[9],
                pkt.get(ihl..total)?,
            )
        }
        6 => {
            let len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            let s: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            (
                IpAddr::from(s),
                IpAddr::from(d),
                pkt[6],
                pkt.get(40..40 + len)?,
            )
        }
        _ => return None,
    };
    let (ports, payload) = if proto == 17 {
        let p = (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        );
        (Some(p), l4.get(8..)?)
    } else {
        (None, l4)
    };
    Some(Parsed {
        src,
        dst,
        proto,
        ports,
        payload,
    })
}

/// True when the TCP or UDP checksum of an IP packet verifies.
pub fn l4_checksum_ok(pkt: &[u8]) -> bool {
    let Some(p) = parse(pkt) else { return false };
    let (src, dst): (Vec<u8>, Vec<u8>) = match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        _ => return false,
    };
    let l4_start = match pkt[0] >> 4 {
        4 => usize::from(pkt[0] & 0xf) * 4,
        _ => 40,
    };
    let l4_end = match pkt[0] >> 4 {
        4 => usize::from(u16::from_be_bytes([pkt[2], pkt[3]])),
        _ => 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
    };
    let Some(l4) = pkt.get(l4_start..l4_end) else {
        return false;
    };
    checksum(l4, pseudo_sum(&src, &dst, p.proto, l4.len())) == 0
}

/// Opens a TUN queue by hand (`/dev/net/tun` + `TUNSETIFF`) with `flags`, as an init step
/// handing esprit a descriptor would.
pub fn open_tun_fd(name: &str, flags: libc::c_int) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain open of a device node.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "open /dev/net/tun: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd was just opened and is owned by nobody else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads an ifreq that lives across the call.
    let r = unsafe { libc::ioctl(fd, libc::TUNSETIFF as _, &mut req) };
    assert_eq!(
        r,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    owned
}

/// Drops CAP_NET_ADMIN from the calling thread, as in a container without it.
pub fn drop_cap_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget fills two Data structs for version 3 of the ABI.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
    let bit = !(1u32 << CAP_NET_ADMIN);
    d[0].effective &= bit;
    d[0].permitted &= bit;
    d[0].inheritable &= bit;
    // SAFETY: capset on the calling thread (pid 0) with the structs capget filled.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
}
