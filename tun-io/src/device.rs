//! Packet devices: where the dataplane's inner IP packets come from and where decrypted
//! ones go.
//!
//! The dataplane does not care whether a packet device is a kernel TUN ([`crate::Tun`]), a
//! TCP/IP stack inside the process (pipes: no TUN, no privileges), or one of several TUNs
//! that route-based connections own. A device is split once, when the dataplane takes
//! it: the outbound thread gets its [`PacketReader`] (non-blocking, pollable), the
//! inbound thread its [`PacketWriter`].

use std::io;
use std::os::fd::AsFd;

use crate::batch::PacketBatch;
use crate::tun::Tun;

/// The outbound half: inner packets to encrypt.
pub trait PacketReader: AsFd + Send {
    /// Reads what is queued into `batch` (replacing its contents) without blocking;
    /// `WouldBlock` when nothing is. The descriptor from [`AsFd`] polls readable when a
    /// read would return packets.
    fn recv_into(&mut self, batch: &mut PacketBatch) -> io::Result<usize>;
}

/// The inbound half: decrypted inner packets to deliver.
pub trait PacketWriter: Send {
    /// Delivers the packets of `batch` and clears it; a device that is full drops what
    /// does not fit rather than block (the sender's transport retransmits).
    fn send_from(&mut self, batch: &mut PacketBatch) -> io::Result<usize>;
}

/// A device the dataplane can own.
pub trait PacketDevice: Send {
    /// A name for logs and status.
    fn name(&self) -> &str;
    /// The largest inner packet the device hands out.
    fn mtu(&self) -> io::Result<u16>;
    /// Splits the device into its reader (made non-blocking) and its writer.
    fn split(self: Box<Self>) -> io::Result<(Box<dyn PacketReader>, Box<dyn PacketWriter>)>;
}

impl PacketReader for Tun {
    fn recv_into(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        Tun::recv_into(self, batch)
    }
}

impl PacketWriter for Tun {
    fn send_from(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        Tun::send_from(self, batch)
    }
}

impl PacketDevice for Tun {
    fn name(&self) -> &str {
        Tun::name(self)
    }

    fn mtu(&self) -> io::Result<u16> {
        Tun::mtu(self)
    }

    fn split(self: Box<Self>) -> io::Result<(Box<dyn PacketReader>, Box<dyn PacketWriter>)> {
        // Reads never block: a busy thread reads until the device is empty and polls
        // only then. Both handles share the queue (and its non-blocking flag).
        self.set_nonblocking(true)?;
        let writer = self.share();
        Ok((self, Box::new(writer)))
    }
}
