//! The netstack as the dataplane sees it: a [`PacketDevice`] whose reader hands out
//! the packets the stack sent and whose writer queues decrypted packets for the stack.
//!
//! Both queues are bounded; a full queue drops (and counts) rather than block a packet
//! thread: TCP retransmits, and UDP may lose datagrams anyway. Each queue has an eventfd
//! ([`Waker`]): the outbound packet thread polls the egress one, the stack's thread
//! waits on the ingress one.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tun_io::{PacketBatch, PacketDevice, PacketReader, PacketWriter, Waker};

/// Packets each queue holds at most.
pub(crate) const QUEUE_PACKETS: usize = 4096;

/// One direction's queue and its eventfd.
pub(crate) struct Queue {
    packets: Mutex<VecDeque<Vec<u8>>>,
    /// Readable while packets wait.
    pub(crate) waker: Waker,
    /// Packets dropped because the queue was full.
    pub(crate) dropped: AtomicU64,
}

impl Queue {
    fn new() -> io::Result<Queue> {
        Ok(Queue {
            packets: Mutex::new(VecDeque::with_capacity(256)),
            waker: Waker::new()?,
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        // A panicking holder cannot leave the deque inconsistent: take it anyway.
        self.packets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends packets (dropping what does not fit) and wakes the reader.
    pub(crate) fn push_all(&self, packets: impl Iterator<Item = Vec<u8>>) {
        let mut q = self.lock();
        let mut pushed = false;
        let mut dropped = 0;
        for p in packets {
            if q.len() >= QUEUE_PACKETS {
                dropped += 1;
            } else {
                q.push_back(p);
                pushed = true;
            }
        }
        drop(q);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if pushed {
            self.waker.wake();
        }
    }

    /// Moves every waiting packet into `into`. The eventfd is not read here: the stack
    /// waits on it edge-triggered (every wake is an edge) and resets it when woken, so
    /// its busy loop takes packets without a syscall.
    pub(crate) fn take_all(&self, into: &mut VecDeque<Vec<u8>>) {
        let mut q = self.lock();
        into.append(&mut q);
    }
}

/// The two queues between the stack's thread and the packet threads.
pub(crate) struct Queues {
    /// Decrypted packets for the stack.
    pub(crate) ingress: Queue,
    /// Packets the stack sent, to encrypt.
    pub(crate) egress: Queue,
}

impl Queues {
    pub(crate) fn new() -> io::Result<Arc<Queues>> {
        Ok(Arc::new(Queues {
            ingress: Queue::new()?,
            egress: Queue::new()?,
        }))
    }
}

/// The netstack as a packet device (see the module doc).
pub struct NetstackDevice {
    pub(crate) queues: Arc<Queues>,
    pub(crate) mtu: u16,
}

impl PacketDevice for NetstackDevice {
    fn name(&self) -> &str {
        "netstack"
    }

    fn mtu(&self) -> io::Result<u16> {
        Ok(self.mtu)
    }

    fn split(self: Box<Self>) -> io::Result<(Box<dyn PacketReader>, Box<dyn PacketWriter>)> {
        let reader = Reader {
            queues: self.queues.clone(),
        };
        let writer = Writer {
            queues: self.queues,
        };
        Ok((Box::new(reader), Box::new(writer)))
    }
}

struct Reader {
    queues: Arc<Queues>,
}

impl AsFd for Reader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.queues.egress.waker.as_fd()
    }
}

impl PacketReader for Reader {
    fn recv_into(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        batch.clear();
        let q = &self.queues.egress;
        q.waker.reset();
        let mut packets = q.lock();
        while let Some(p) = packets.front() {
            if batch.is_full() {
                break;
            }
            if !batch.push(p) {
                // Larger than the batch's room: the stack's MTU keeps this from happening.
                q.dropped.fetch_add(1, Ordering::Relaxed);
            }
            packets.pop_front();
        }
        let more = !packets.is_empty();
        drop(packets);
        if more {
            // Keep the descriptor readable for the rest.
            q.waker.wake();
        }
        if batch.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(batch.len())
    }
}

struct Writer {
    queues: Arc<Queues>,
}

impl PacketWriter for Writer {
    fn send_from(&mut self, batch: &mut PacketBatch) -> io::Result<usize> {
        let n = batch.len();
        self.queues
            .ingress
            .push_all(batch.iter().map(|p| p.to_vec()));
        batch.clear();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tun_io::poll_readable;

    #[test]
    fn queues_carry_packets_both_ways_and_drop_when_full() {
        let queues = Queues::new().unwrap();
        let dev = Box::new(NetstackDevice {
            queues: queues.clone(),
            mtu: 1400,
        });
        let (mut reader, mut writer) = dev.split().unwrap();
        let mut batch = PacketBatch::new(8, 64, 1500);
        assert_eq!(
            reader.recv_into(&mut batch).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // Stack -> dataplane: 10 packets come out as a batch of 8 and one of 2, and the
        // descriptor stays readable in between.
        queues
            .egress
            .push_all((0..10u8).map(|i| vec![i; 100 + usize::from(i)]));
        let t = Some(std::time::Duration::ZERO);
        assert_eq!(poll_readable(&[reader.as_fd()], t).unwrap(), 1);
        assert_eq!(reader.recv_into(&mut batch).unwrap(), 8);
        assert_eq!(batch.packet(3).unwrap(), &[3u8; 103][..]);
        assert_eq!(poll_readable(&[reader.as_fd()], t).unwrap(), 1);
        assert_eq!(reader.recv_into(&mut batch).unwrap(), 2);
        assert_eq!(batch.packet(1).unwrap(), &[9u8; 109][..]);
        assert_eq!(poll_readable(&[reader.as_fd()], t).unwrap(), 0);
        // Dataplane -> stack.
        batch.clear();
        assert!(batch.push(&[7; 60]));
        assert_eq!(writer.send_from(&mut batch).unwrap(), 1);
        assert!(batch.is_empty());
        let mut got = VecDeque::new();
        assert_eq!(
            poll_readable(&[queues.ingress.waker.as_fd()], t).unwrap(),
            1
        );
        queues.ingress.take_all(&mut got);
        assert_eq!(got, VecDeque::from([vec![7u8; 60]]));
        // Bounded: the excess is dropped and counted.
        queues
            .ingress
            .push_all((0..QUEUE_PACKETS + 5).map(|_| vec![1u8]));
        assert_eq!(queues.ingress.dropped.load(Ordering::Relaxed), 5);
    }
}
