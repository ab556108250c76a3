//! The OS boundary of esprit: TUN devices, UDP sockets, routes and batched IO.
//!
//! Everything here exists to cut syscalls per packet, because on the machines esprit
//! targets the AEAD is cheap (~200 ns a packet) and the kernel crossings are not:
//!
//! - [`Tun`] opens the TUN with `IFF_VNET_HDR` and TSO/USO offloads, so one read returns a
//!   64 KiB TCP (or UDP) super-packet that [`Tun::recv_batch`] splits into MTU-sized IP
//!   packets, each written at a caller-chosen headroom so ESP can encapsulate in place.
//!   [`Tun::send_batch`] does the reverse: it coalesces segments of the same TCP/UDP flow
//!   (GRO) and writes each flow as one super-packet.
//! - [`UdpSocket`] uses UDP GSO (`UDP_SEGMENT`: one `sendmsg` carries up to 64 equal-size
//!   ESP datagrams) and UDP GRO (`UDP_GRO` + `recvmmsg`: one syscall returns many
//!   datagrams with a stride), and reports each datagram's destination IP (`IP_PKTINFO`)
//!   and local port, which the engine needs for NAT-T and multi-homing.
//! - [`netlink`] is a blocking rtnetlink socket with the link and address operations
//!   esprit needs without the `ip` tool (link up, add an address, link state).
//! - [`device`] is the seam between the dataplane and whatever carries inner packets: a
//!   [`PacketDevice`] splits into a pollable [`PacketReader`] and a [`PacketWriter`];
//!   [`Tun`] is one, a userspace TCP/IP stack another.
//! - [`routes`] installs routes for remote subnets through the TUN via netlink and removes
//!   them again on drop.
//!
//! # Why these crates
//!
//! - `tun-rs` (2.x) rather than `tun`: `tun-rs` implements the Linux offload path that
//!   wireguard-go proved (virtio-net header, TSO/USO via `TUNSETOFFLOAD`, GSO splitting in
//!   `recv_multiple`, a `GROTable` coalescing TCP and UDP in `send_multiple`), multi-queue
//!   (`IFF_MULTI_QUEUE` + `try_clone`) and a tokio `AsyncDevice`. The `tun` crate offers
//!   neither offloads nor batching, so we would have had to write the segmentation and
//!   coalescing ourselves.
//! - `quinn-udp`: a maintained, fuzzed implementation of UDP GSO/GRO, `recvmmsg`,
//!   `IP_PKTINFO`/`IPV6_RECVPKTINFO` and ECN, with runtime detection and fallback when the
//!   kernel or the device lacks GSO. `socket2` sets the options it does not
//!   (`SO_REUSEADDR`, `IPV6_V6ONLY`) before binding.
//! - `netlink-packet-route` + `netlink-sys`: synchronous rtnetlink, so a
//!   [`routes::RouteGuard`] can remove its routes in `Drop` without an async runtime.
//!
//! # Privileges
//!
//! Creating a device ([`Tun::create`]) needs `CAP_NET_ADMIN`. A process without it can
//! still run the dataplane: attach to a persistent TUN that an init step created for its
//! user ([`Tun::attach`], `ip tuntap add mode tun name X user UID`; offloads work there
//! because `TUNSETIFF` on a device it owns and `TUNSETOFFLOAD` need no capability), or adopt
//! an open descriptor ([`Tun::from_fd`], for `--tun-fd N`; such descriptors carry no
//! virtio header, so batching falls back to one packet per read). Attaching opens
//! `/dev/net/tun`, so the container needs that device node (`--device /dev/net/tun`);
//! the device's owner/group (or no owner at all) must match the process.
//!
//! # Offloads, concretely
//!
//! - A read of a TSO super-packet (say 46 segments of MSS 1360 behind one TCP header)
//!   yields 46 complete IPv4/IPv6 TCP packets of at most MTU bytes in `bufs[0..46]`, each
//!   at the caller's headroom, with IP total length, IPv4 ID, TCP sequence number, flags
//!   (FIN/PSH only on the last) and checksums rewritten. A non-GSO packet whose checksum
//!   the kernel left partial comes back with the checksum completed. Without offloads a
//!   read yields exactly one packet.
//! - A write batch is scanned for TCP segments of one flow with consecutive sequence
//!   numbers and equal size (and, with USO, UDP datagrams of one flow and equal size); each
//!   run is merged into the first buffer of the flow and written once with a virtio-net
//!   header asking the kernel to segment; everything else is written as it is.

#![cfg(target_os = "linux")]

pub mod batch;
pub mod device;
pub mod netlink;
pub mod routes;
mod sys;
pub mod tun;
pub mod udp;
mod waker;

pub use batch::{Datagram, DatagramMut, GsoBatch, PacketBatch, UdpRecvBatch};
pub use device::{PacketDevice, PacketReader, PacketWriter};
pub use routes::{install_routes, RouteGuard};
pub use sys::{interface_addrs, local_addrs, poll_readable, InterfaceAddr};
pub use tun::{AsyncTun, Offloads, Tun, TunConfig};
pub use tun_rs::ExpandBuffer;
pub use udp::{AsyncUdpSocket, UdpConfig, UdpSocket};
pub use waker::Waker;

/// Headroom every packet handed to [`Tun::send_batch`] must have: room for the virtio-net
/// header that the kernel reads in front of each write when offloads are on.
pub const MIN_TUN_HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;

/// Number of packet slots per TUN batch that always holds a whole 64 KiB super-packet.
pub const TUN_BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;

/// Largest number of `recvmmsg` messages (each up to 64 datagrams with GRO) per UDP batch.
pub const UDP_BATCH: usize = quinn_udp::BATCH_SIZE;
