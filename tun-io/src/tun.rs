//! The TUN device: creation, attachment, fd adoption, and batched reads and writes with
//! TSO/USO offloads.
//!
//! With offloads on, the kernel hands the TUN whole TCP (TSO) or UDP (USO) super-packets of
//! up to 64 KiB behind a virtio-net header. [`Tun::recv_batch`] splits each into the IP
//! packets a peer would have seen on the wire (fixing lengths, IDs, sequence numbers and
//! checksums), one per slot. [`Tun::send_batch`] coalesces consecutive segments of a flow
//! back into one super-packet per flow (GRO) before writing, so the local TCP stack sees
//! few large packets. Both come from `tun-rs`, which ports wireguard-go's proven code.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tun_rs::{AsyncDevice, DeviceBuilder, ExpandBuffer, GROTable, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::batch::PacketBatch;
use crate::sys::{if_index, poll_fd, tun_flags};

/// Size of the buffer one raw TUN read lands in: virtio header plus a 64 KiB packet.
const RAW_READ: usize = VIRTIO_NET_HDR_LEN + 65535;

/// What the kernel agreed to offload on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// TCP segmentation offload (`TUN_F_TSO4|TSO6`, with the virtio-net header).
    pub tso: bool,
    /// UDP segmentation offload (`TUN_F_USO4|USO6`, Linux 6.2 and later).
    pub uso: bool,
}

/// How to create a TUN device.
#[derive(Debug, Clone, Default)]
pub struct TunConfig {
    name: Option<String>,
    mtu: Option<u16>,
    ipv4: Option<(Ipv4Addr, u8)>,
    ipv6: Vec<(Ipv6Addr, u8)>,
    no_offload: bool,
    multi_queue: bool,
}

impl TunConfig {
    /// A config with a kernel-chosen name, default MTU, no address, offloads on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the device (at most 15 bytes).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the IPv4 address and prefix length.
    pub fn ipv4(mut self, addr: Ipv4Addr, prefix: u8) -> Self {
        self.ipv4 = Some((addr, prefix));
        self
    }

    /// Adds an IPv6 address and prefix length.
    pub fn ipv6(mut self, addr: Ipv6Addr, prefix: u8) -> Self {
        self.ipv6.push((addr, prefix));
        self
    }

    /// Asks for offloads (the default) or not.
    pub fn offload(mut self, on: bool) -> Self {
        self.no_offload = !on;
        self
    }

    /// Opens the device with `IFF_MULTI_QUEUE`, so [`Tun::try_clone_queue`] works.
    pub fn multi_queue(mut self, on: bool) -> Self {
        self.multi_queue = on;
        self
    }

    fn builder(&self, offload: bool) -> DeviceBuilder {
        let mut b = DeviceBuilder::new()
            .offload(offload)
            .multi_queue(self.multi_queue);
        if let Some(name) = &self.name {
            b = b.name(name.clone());
        }
        if let Some(mtu) = self.mtu {
            b = b.mtu(mtu);
        }
        if let Some((addr, prefix)) = self.ipv4 {
            b = b.ipv4(addr, prefix, None);
        }
        for &(addr, prefix) in &self.ipv6 {
            b = b.ipv6(addr, prefix);
        }
        b
    }
}

/// `GROTable` under a name that reads as what it is here.
struct GroTable(GROTable);

/// A TUN queue with batched, offload-aware IO (blocking; see [`AsyncTun`] for tokio).
pub struct Tun {
    dev: Arc<SyncDevice>,
    name: String,
    raw: Vec<u8>,
    gro: GroTable,
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the device owns this descriptor for as long as `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.dev.as_raw_fd()) }
    }
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("offloads", &self.offloads())
            .finish()
    }
}

impl Tun {
    /// Creates (or, with the name of a persistent device, attaches to) a TUN device, sets
    /// its MTU and addresses and brings it up; needs `CAP_NET_ADMIN`.
    ///
    /// Offloads are enabled when the kernel supports them; otherwise the device works one
    /// packet per read.
    pub fn create(config: &TunConfig) -> io::Result<Tun> {
        let dev = if config.no_offload {
            config.builder(false).build_sync()?
        } else {
            match config.builder(true).build_sync() {
                Ok(dev) => dev,
                Err(e) if is_unsupported(&e) => {
                    tracing::info!("TUN offloads unavailable ({e}); falling back to plain IO");
                    config.builder(false).build_sync()?
                }
                Err(e) => return Err(e),
            }
        };
        Self::wrap(dev)
    }

    /// Attaches to the persistent TUN device `name` without configuring it.
    ///
    /// This is the path for a process without `CAP_NET_ADMIN`: an init step runs
    /// `ip tuntap add mode tun name NAME user UID` (plus address, MTU, up), and the
    /// unprivileged process attaches with offloads, because `TUNSETIFF` on a device it owns
    /// and `TUNSETOFFLOAD` need no capability. `multi_queue` must match how the device was
    /// made (`ip tuntap ... multi_queue`).
    pub fn attach(name: &str, multi_queue: bool) -> io::Result<Tun> {
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(name)
                .inherit_enable_state()
                .offload(offload)
                .multi_queue(multi_queue)
                .build_sync()
        };
        let dev = match build(true) {
            Ok(dev) => dev,
            Err(e) if is_unsupported(&e) => build(false)?,
            Err(e) => return Err(e),
        };
        Self::wrap(dev)
    }

    /// Adopts an open TUN descriptor (`--tun-fd N`), issuing no privileged ioctl.
    ///
    /// The descriptor must be an `IFF_TUN | IFF_NO_PI` queue without `IFF_VNET_HDR`: the
    /// framing of a descriptor with a virtio header cannot be recovered safely from the
    /// descriptor alone, so such a descriptor is refused; pass the device name to
    /// [`Tun::attach`] instead to get offloads. Adopted descriptors do one packet per read.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Tun> {
        let flags = tun_flags(fd.as_raw_fd())?;
        if flags & libc::IFF_TUN == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptor is not an IFF_TUN device",
            ));
        }
        if flags & libc::IFF_VNET_HDR != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "adopted TUN descriptors with IFF_VNET_HDR are not supported; \
                 attach to the device by name instead",
            ));
        }
        // SAFETY: we own `fd`, it is a TUN queue (TUNGETIFF answered with IFF_TUN) without
        // IFF_VNET_HDR; the IFF_NO_PI framing is the caller's documented contract.
        let dev = unsafe { SyncDevice::from_fd(fd.into_raw_fd())? };
        Self::wrap(dev)
    }

    fn wrap(dev: SyncDevice) -> io::Result<Tun> {
        let name = dev.name()?;
        Ok(Tun {
            dev: Arc::new(dev),
            name,
            raw: vec![0; RAW_READ],
            gro: GroTable(GROTable::new()),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn index(&self) -> io::Result<u32> {
        if_index(&self.name)
    }

    /// The offloads in force.
    pub fn offloads(&self) -> Offloads {
        Offloads {
            tso: self.dev.tcp_gso(),
            uso: self.dev.udp_gso(),
        }
    }

    /// The interface MTU.
    pub fn mtu(&self) -> io::Result<u16> {
        self.dev.mtu()
    }

    /// Waits until a read would not block; false if `timeout` passed first.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // SAFETY: the device owns this descriptor for as long as `self` lives.
        let fd = unsafe { BorrowedFd::borrow_raw(self.dev.as_raw_fd()) };
        poll_fd(fd, libc::POLLIN, timeout)
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.dev.set_nonblocking(on)
    }

    /// Another handle on the same queue with its own buffers, e.g. for a writer thread
    /// beside the reader.
    pub fn share(&self) -> Tun {
        Tun {
            dev: self.dev.clone(),
            name: self.name.clone(),
            raw: vec![0; RAW_READ],
            gro: GroTable(GROTable::new()),
        }
    }

    /// Opens another queue of a multi-queue device (one per core).
    pub fn try_clone_queue(&self) -> io::Result<Tun> {
        Self::wrap(self.dev.try_clone()?)
    }

    /// Reads one TUN packet (a super-packet with offloads) and writes the IP packets it
    /// holds into `bufs[i][offset..offset + sizes[i]]`; returns how many.
    ///
    /// With offloads, a TSO super-packet of N*MSS payload bytes yields N packets, each with
    /// its own IP and TCP header, corrected lengths, sequence numbers and checksums; a
    /// packet the kernel left with a partial checksum gets it completed. `bufs` must hold
    /// enough slots for the largest super-packet ([`crate::TUN_BATCH`] always does at
    /// MTU 1280 and up), each with room for an MTU-sized packet after `offset`.
    pub fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        check_recv_args(bufs.len(), sizes.len())?;
        self.dev.recv_multiple(&mut self.raw, bufs, sizes, offset)
    }

    /// Writes the IP packets `bufs[i][offset..]` (each buffer ends with its packet),
    /// coalescing TCP and UDP segments of one flow into super-packets when offloads are
    /// on; returns the bytes written. `offset` must be at least
    /// [`crate::MIN_TUN_HEADROOM`]; coalescing grows the first buffer of a flow within its
    /// capacity, so buffers with spare capacity (such as [`PacketBatch`] slots) coalesce.
    pub fn send_batch<B: ExpandBuffer>(
        &mut self,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        check_send_offset(offset)?;
        self.dev.send_multiple(&mut self.gro.0, bufs, offset)
    }

    /// [`Tun::recv_batch`] into a [`PacketBatch`], replacing its contents.
    pub fn recv_into(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        batch.clear();
        let (bufs, sizes, offset) = batch.recv_parts();
        let n = self.recv_batch(bufs, sizes, offset)?;
        batch.set_len(n);
        Ok(n)
    }

    /// [`Tun::send_batch`] of the packets in a [`PacketBatch`], which is cleared.
    pub fn send_from(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        let offset = batch.headroom();
        let r = if batch.is_empty() {
            Ok(0)
        } else {
            self.send_batch(batch.send_parts(), offset)
        };
        batch.clear();
        r
    }

    /// Turns this handle into a tokio one; must run inside a tokio runtime.
    pub fn into_async(self) -> io::Result<AsyncTun> {
        let dev = Arc::try_unwrap(self.dev).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "Tun has other handles; convert before sharing",
            )
        })?;
        Ok(AsyncTun {
            dev: Arc::new(AsyncDevice::new(dev)?),
            name: self.name,
            raw: self.raw,
            gro: self.gro,
        })
    }
}

/// A TUN queue driven by tokio, with the same batched IO as [`Tun`].
pub struct AsyncTun {
    dev: Arc<AsyncDevice>,
    name: String,
    raw: Vec<u8>,
    gro: GroTable,
}

impl std::fmt::Debug for AsyncTun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTun")
            .field("name", &self.name)
            .field("offloads", &self.offloads())
            .finish()
    }
}

impl AsyncTun {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offloads in force.
    pub fn offloads(&self) -> Offloads {
        Offloads {
            tso: self.dev.tcp_gso(),
            uso: self.dev.udp_gso(),
        }
    }

    /// Another handle on the same queue with its own buffers (reader task, writer task).
    pub fn share(&self) -> AsyncTun {
        AsyncTun {
            dev: self.dev.clone(),
            name: self.name.clone(),
            raw: vec![0; RAW_READ],
            gro: GroTable(GROTable::new()),
        }
    }

    /// Opens another queue of a multi-queue device.
    pub fn try_clone_queue(&self) -> io::Result<AsyncTun> {
        Ok(AsyncTun {
            dev: Arc::new(self.dev.try_clone()?),
            name: self.name.clone(),
            raw: vec![0; RAW_READ],
            gro: GroTable(GROTable::new()),
        })
    }

    /// Async [`Tun::recv_batch`].
    pub async fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        check_recv_args(bufs.len(), sizes.len())?;
        self.dev
            .recv_multiple(&mut self.raw, bufs, sizes, offset)
            .await
    }

    /// Async [`Tun::send_batch`].
    pub async fn send_batch<B: ExpandBuffer>(
        &mut self,
        bufs: &mut [B],
        offset: usize,
    ) -> io::Result<usize> {
        check_send_offset(offset)?;
        self.dev.send_multiple(&mut self.gro.0, bufs, offset).await
    }

    /// Async [`Tun::recv_into`].
    pub async fn recv_into(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        batch.clear();
        let (bufs, sizes, offset) = batch.recv_parts();
        let n = self.recv_batch(bufs, sizes, offset).await?;
        batch.set_len(n);
        Ok(n)
    }

    /// Async [`Tun::send_from`].
    pub async fn send_from(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        let offset = batch.headroom();
        let r = if batch.is_empty() {
            Ok(0)
        } else {
            self.send_batch(batch.send_parts(), offset).await
        };
        batch.clear();
        r
    }
}

fn check_recv_args(bufs: usize, sizes: usize) -> io::Result<()> {
    if bufs == 0 || bufs != sizes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recv_batch needs as many sizes as buffers, and at least one",
        ));
    }
    Ok(())
}

fn check_send_offset(offset: usize) -> io::Result<()> {
    if offset < VIRTIO_NET_HDR_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "send_batch needs at least MIN_TUN_HEADROOM bytes before each packet",
        ));
    }
    Ok(())
}

/// True for the errors a kernel without virtio-net header or TUN offloads gives.
fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)
    )
}
