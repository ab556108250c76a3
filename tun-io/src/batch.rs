//! Buffers for batched IO: IP packets to and from the TUN, UDP datagrams to and from the
//! network.
//!
//! All three types allocate once, at construction, and never grow afterwards: a batch that
//! is full says so and the caller flushes it.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};

use quinn_udp::RecvMeta;

/// Largest IP packet the kernel accepts as one TUN write after GRO coalescing.
const MAX_COALESCED: usize = 65535;

/// Receive buffer per `recvmmsg` message: one GRO aggregate never exceeds 64 KiB.
const UDP_MSG_BUF: usize = 64 * 1024;

/// Most datagrams one `UDP_SEGMENT` send may carry (`UDP_MAX_SEGMENTS` in linux/udp.h).
const MAX_GSO_SEGMENTS: usize = 64;

/// Most payload bytes one GSO send may carry: an IPv6 datagram of 64 KiB less its headers.
const MAX_GSO_BYTES: usize = 65535 - 40 - 8;

/// IP packets for one TUN read or write, each in its own slot behind `headroom` bytes.
///
/// Reading ([`crate::Tun::recv_into`], or [`crate::Tun::recv_batch`] with
/// [`PacketBatch::recv_parts`]) writes packet `i` at `slot[headroom..headroom + size]`, so
/// ESP can put its header in front and its trailer behind without a copy. Writing
/// ([`crate::Tun::send_from`]) takes the packets [`PacketBatch::push`]ed; each slot keeps
/// capacity for a coalesced 64 KiB super-packet, which GRO builds in the first slot of a
/// flow.
#[derive(Debug)]
pub struct PacketBatch {
    slots: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
    headroom: usize,
    room: usize,
}

impl PacketBatch {
    /// A batch of `slots` packets of up to `room` bytes each, after `headroom` bytes.
    pub fn new(slots: usize, headroom: usize, room: usize) -> Self {
        let slots = slots.max(1);
        let cap = (headroom + room).max(2 * headroom + MAX_COALESCED);
        let slots = (0..slots)
            .map(|_| {
                let mut v = Vec::with_capacity(cap);
                v.resize(headroom + room, 0);
                v
            })
            .collect::<Vec<_>>();
        let sizes = vec![0; slots.len()];
        PacketBatch {
            slots,
            sizes,
            count: 0,
            headroom,
            room,
        }
    }

    /// Bytes reserved in front of each packet.
    pub fn headroom(&self) -> usize {
        self.headroom
    }

    /// Bytes available for each packet (and, on the way out, its ESP trailer).
    pub fn room(&self) -> usize {
        self.room
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when every slot holds a packet.
    pub fn is_full(&self) -> bool {
        self.count == self.slots.len()
    }

    /// Forgets all packets; slots keep their memory.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Packet `i`, if the batch holds that many.
    pub fn packet(&self, i: usize) -> Option<&[u8]> {
        if i >= self.count {
            return None;
        }
        let start = self.headroom;
        self.slots[i].get(start..start + self.sizes[i])
    }

    /// Packet `i`, mutable.
    pub fn packet_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if i >= self.count {
            return None;
        }
        let start = self.headroom;
        let size = self.sizes[i];
        self.slots[i].get_mut(start..start + size)
    }

    /// The whole slot of packet `i` (headroom, packet, tail room) and the packet's size:
    /// the place for in-place ESP encapsulation.
    pub fn slot_mut(&mut self, i: usize) -> Option<(&mut [u8], usize)> {
        if i >= self.count {
            return None;
        }
        let size = self.sizes[i];
        let slot = &mut self.slots[i];
        if slot.len() < self.headroom + self.room {
            slot.resize(self.headroom + self.room, 0);
        }
        Some((slot.as_mut_slice(), size))
    }

    /// Iterates over the packets held.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.count).filter_map(move |i| self.packet(i))
    }

    /// Appends a copy of `packet`; false if the batch is full or the packet exceeds `room`.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        if packet.len() > self.room || self.is_full() {
            return false;
        }
        if packet.is_empty() {
            return true;
        }
        // Append rather than resize-then-copy: no zero-filling of bytes about to be
        // overwritten (slots keep their capacity, so this does not allocate).
        let i = self.count;
        let slot = &mut self.slots[i];
        slot.resize(self.headroom, 0);
        slot.extend_from_slice(packet);
        self.sizes[i] = packet.len();
        self.count += 1;
        true
    }

    /// Appends a packet that `fill` writes at the start of the `room`-byte slice it is
    /// given, returning its length (0 adds nothing); false if the batch is full.
    ///
    /// This is where ESP decapsulation writes the inner packet without an extra copy.
    pub fn push_with<F: FnOnce(&mut [u8]) -> usize>(&mut self, fill: F) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        let end = self.headroom + self.room;
        let slot = &mut self.slots[i];
        if slot.len() < end {
            slot.resize(end, 0);
        }
        let n = fill(&mut slot[self.headroom..end]).min(self.room);
        if n > 0 {
            self.sizes[i] = n;
            self.count += 1;
        }
        true
    }

    /// Slots sized for a read, the size array a read fills, and the headroom, for
    /// [`crate::Tun::recv_batch`]; then call [`PacketBatch::set_len`] with its result.
    pub fn recv_parts(&mut self) -> (&mut [Vec<u8>], &mut [usize], usize) {
        let end = self.headroom + self.room;
        for slot in &mut self.slots {
            if slot.len() != end {
                slot.resize(end, 0);
            }
        }
        (&mut self.slots, &mut self.sizes, self.headroom)
    }

    /// Declares the first `n` slots (filled through [`PacketBatch::recv_parts`]) as held.
    pub fn set_len(&mut self, n: usize) {
        self.count = n.min(self.slots.len());
    }

    /// Slots trimmed so each buffer ends with its packet, as `send_multiple` wants them.
    pub(crate) fn send_parts(&mut self) -> &mut [Vec<u8>] {
        let n = self.count;
        for (slot, &size) in self.slots[..n].iter_mut().zip(&self.sizes[..n]) {
            slot.truncate(self.headroom + size);
        }
        &mut self.slots[..n]
    }
}

/// One received datagram: payload, peer, the local IP it was sent to and the local port.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The UDP payload.
    pub data: &'a [u8],
    /// The sender.
    pub src: SocketAddr,
    /// The local address the datagram was sent to (`IP_PKTINFO`), when the kernel said.
    pub dst_ip: Option<IpAddr>,
    /// The local port the datagram came in on (500, 4500, ...).
    pub local_port: u16,
}

/// One received datagram with a mutable payload, for in-place ESP decapsulation.
#[derive(Debug)]
pub struct DatagramMut<'a> {
    /// The UDP payload.
    pub data: &'a mut [u8],
    /// The sender.
    pub src: SocketAddr,
    /// The local address the datagram was sent to (`IP_PKTINFO`), when the kernel said.
    pub dst_ip: Option<IpAddr>,
    /// The local port the datagram came in on.
    pub local_port: u16,
}

/// Datagrams from one batched UDP receive (`recvmmsg`, each message a GRO aggregate).
#[derive(Debug)]
pub struct UdpRecvBatch {
    buf: Vec<u8>,
    metas: Vec<RecvMeta>,
    count: usize,
    local_port: u16,
}

impl UdpRecvBatch {
    /// Room for `messages` messages (at most [`crate::UDP_BATCH`]) of 64 KiB each.
    pub fn new(messages: usize) -> Self {
        let messages = messages.clamp(1, quinn_udp::BATCH_SIZE);
        UdpRecvBatch {
            buf: vec![0; messages * UDP_MSG_BUF],
            metas: vec![RecvMeta::default(); messages],
            count: 0,
            local_port: 0,
        }
    }

    /// Number of messages received (each may hold many datagrams).
    pub fn messages(&self) -> usize {
        self.count
    }

    /// Number of datagrams received.
    pub fn len(&self) -> usize {
        self.metas[..self.count]
            .iter()
            .map(|m| m.len.div_ceil(m.stride.max(1)))
            .sum()
    }

    /// True when nothing was received.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of datagrams in message `i` (more than one when GRO coalesced them).
    pub fn datagrams_in(&self, i: usize) -> usize {
        self.metas[..self.count]
            .get(i)
            .map_or(0, |m| m.len.div_ceil(m.stride.max(1)))
    }

    /// The GRO stride of message `i`: the size of every datagram in it but the last.
    pub fn stride(&self, i: usize) -> Option<usize> {
        self.metas[..self.count].get(i).map(|m| m.stride)
    }

    /// Iterates over the datagrams received.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let port = self.local_port;
        self.buf
            .chunks(UDP_MSG_BUF)
            .zip(&self.metas[..self.count])
            .flat_map(move |(msg, meta)| {
                let len = meta.len.min(msg.len());
                msg[..len]
                    .chunks(meta.stride.max(1))
                    .map(move |data| Datagram {
                        data,
                        src: meta.addr,
                        dst_ip: meta.dst_ip,
                        local_port: port,
                    })
            })
    }

    /// Iterates over the datagrams received, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = DatagramMut<'_>> + '_ {
        let port = self.local_port;
        self.buf
            .chunks_mut(UDP_MSG_BUF)
            .zip(&self.metas[..self.count])
            .flat_map(move |(msg, meta)| {
                let len = meta.len.min(msg.len());
                msg[..len]
                    .chunks_mut(meta.stride.max(1))
                    .map(move |data| DatagramMut {
                        data,
                        src: meta.addr,
                        dst_ip: meta.dst_ip,
                        local_port: port,
                    })
            })
    }

    /// Buffers and metadata slots for `UdpSocketState::recv`.
    pub(crate) fn recv_parts(&mut self) -> (Vec<IoSliceMut<'_>>, &mut [RecvMeta]) {
        let slices = self
            .buf
            .chunks_mut(UDP_MSG_BUF)
            .map(IoSliceMut::new)
            .collect();
        (slices, &mut self.metas)
    }

    /// Records a receive of `n` messages on `local_port`.
    pub(crate) fn set_received(&mut self, n: usize, local_port: u16) {
        self.count = n.min(self.metas.len());
        self.local_port = local_port;
    }
}

/// A run of datagrams sent with one GSO `sendmsg`: same peer, same source, equal sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) dst: SocketAddr,
    pub(crate) src_ip: Option<IpAddr>,
    start: usize,
    len: usize,
    pub(crate) segment: usize,
    segments: usize,
    /// A shorter datagram ended the run: GSO allows only the last one to be short.
    closed: bool,
}

/// Outgoing datagrams packed back to back, grouped into runs that each go out with one
/// `UDP_SEGMENT` send; the model is quinn-proto's `poll_transmit`.
///
/// Consecutive datagrams to the same peer from the same source with the same size join one
/// run (up to 64 datagrams and 64 KiB; a shorter datagram may end a run). Anything else
/// starts a new run, so mixed traffic still works, one syscall per run.
#[derive(Debug)]
pub struct GsoBatch {
    buf: Vec<u8>,
    used: usize,
    runs: Vec<Run>,
    datagrams: usize,
}

impl GsoBatch {
    /// A batch of up to `bytes` bytes of datagrams.
    pub fn new(bytes: usize) -> Self {
        GsoBatch {
            buf: vec![0; bytes],
            used: 0,
            runs: Vec::with_capacity(bytes / 512 + 1),
            datagrams: 0,
        }
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.datagrams
    }

    /// True when the batch holds no datagram.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    /// Number of GSO sends the batch needs.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.used
    }

    /// Forgets all datagrams.
    pub fn clear(&mut self) {
        self.used = 0;
        self.runs.clear();
        self.datagrams = 0;
    }

    /// Appends a copy of `data` for `dst`; false if it does not fit (flush, then retry).
    pub fn push(&mut self, dst: SocketAddr, src_ip: Option<IpAddr>, data: &[u8]) -> bool {
        self.push_with(dst, src_ip, data.len(), |buf| {
            buf.copy_from_slice(data);
            data.len()
        })
    }

    /// Appends a datagram of at most `max_len` bytes that `fill` writes into the slice it is
    /// given, returning its length (0 adds nothing); false if `max_len` bytes do not fit.
    ///
    /// ESP encapsulation writes straight into the send buffer this way.
    pub fn push_with<F: FnOnce(&mut [u8]) -> usize>(
        &mut self,
        dst: SocketAddr,
        src_ip: Option<IpAddr>,
        max_len: usize,
        fill: F,
    ) -> bool {
        if max_len == 0 || max_len > MAX_GSO_BYTES || max_len > self.remaining() {
            return false;
        }
        let start = self.used;
        let n = fill(&mut self.buf[start..start + max_len]).min(max_len);
        if n == 0 {
            return true;
        }
        self.used += n;
        self.datagrams += 1;
        if let Some(run) = self.runs.last_mut() {
            if run.dst == dst
                && run.src_ip == src_ip
                && !run.closed
                && n <= run.segment
                && run.segments < MAX_GSO_SEGMENTS
                && run.len + n <= MAX_GSO_BYTES
            {
                run.len += n;
                run.segments += 1;
                run.closed = n < run.segment;
                return true;
            }
        }
        self.runs.push(Run {
            dst,
            src_ip,
            start,
            len: n,
            segment: n,
            segments: 1,
            closed: false,
        });
        true
    }

    /// The runs with their bytes.
    pub(crate) fn run_iter(&self) -> impl Iterator<Item = (Run, &[u8])> + '_ {
        self.runs
            .iter()
            .map(move |r| (*r, &self.buf[r.start..r.start + r.len]))
    }

    /// The datagrams one by one with their destinations.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.run_iter()
            .flat_map(|(r, bytes)| bytes.chunks(r.segment.max(1)).map(move |d| (r.dst, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn gso_runs_group_equal_sizes_to_one_peer() {
        let mut b = GsoBatch::new(1 << 20);
        for _ in 0..10 {
            assert!(b.push(peer(4500), None, &[1; 1400]));
        }
        assert!(b.push(peer(4500), None, &[2; 600])); // short tail joins and closes
        assert!(b.push(peer(4500), None, &[3; 600])); // new run
        assert!(b.push(peer(500), None, &[4; 600])); // other peer: new run
        assert_eq!(b.len(), 13);
        let runs: Vec<_> = b.run_iter().map(|(r, d)| (r.segment, d.len())).collect();
        assert_eq!(runs, vec![(1400, 14600), (600, 600), (600, 600)]);
        let sizes: Vec<_> = b.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes.len(), 13);
        assert_eq!(sizes[10], 600);
    }

    #[test]
    fn gso_runs_respect_segment_and_byte_limits() {
        let mut b = GsoBatch::new(1 << 20);
        for _ in 0..100 {
            assert!(b.push(peer(4500), None, &[0; 100]));
        }
        assert_eq!(b.runs(), 2); // 64 + 36
        b.clear();
        for _ in 0..50 {
            assert!(b.push(peer(4500), None, &[0; 1500]));
        }
        // 43 * 1500 = 64500 fits in 65487; 44 would not.
        let runs: Vec<_> = b.run_iter().map(|(r, d)| d.len() / r.segment).collect();
        assert_eq!(runs, vec![43, 7]);
    }

    #[test]
    fn gso_batch_refuses_what_does_not_fit() {
        let mut b = GsoBatch::new(3000);
        assert!(b.push(peer(1), None, &[0; 1400]));
        assert!(b.push(peer(1), None, &[0; 1400]));
        assert!(!b.push(peer(1), None, &[0; 1400]));
        assert!(!b.push(peer(1), None, &[]));
        assert!(!b.push_with(peer(1), None, 70_000, |_| 1));
        // A fill that claims more than it was given is clamped, never trusted.
        assert!(b.push_with(peer(1), None, 100, |_| 5000));
        assert_eq!(b.remaining(), 100);
    }

    #[test]
    fn packet_batch_push_and_read_back() {
        let mut b = PacketBatch::new(3, 32, 1500);
        assert!(b.push(&[1, 2, 3]));
        assert!(b.push(&[4; 1500]));
        assert!(!b.push(&[5; 1501])); // too large: refused, batch not full
        assert_eq!(b.len(), 2);
        assert!(b.push(&[6]));
        assert!(b.is_full());
        assert!(!b.push(&[7]));
        assert_eq!(b.packet(0), Some(&[1, 2, 3][..]));
        assert_eq!(b.packet(3), None);
        let (slot, size) = b.slot_mut(1).unwrap();
        assert_eq!((slot.len(), size), (32 + 1500, 1500));
        let parts = b.send_parts();
        assert_eq!(parts[0].len(), 35);
        assert!(parts[0].capacity() >= 2 * 32 + 65535);
    }

    #[test]
    fn udp_recv_batch_splits_by_stride() {
        let mut b = UdpRecvBatch::new(2);
        b.buf[..10].copy_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        b.metas[0].len = 10;
        b.metas[0].stride = 4;
        b.set_received(1, 4500);
        let d: Vec<_> = b.iter().map(|d| d.data.to_vec()).collect();
        assert_eq!(d, vec![vec![1; 4], vec![2; 4], vec![3; 2]]);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|d| d.local_port == 4500));
        for d in b.iter_mut() {
            d.data[0] = 9;
        }
        assert_eq!(b.buf[4], 9);
    }
}
