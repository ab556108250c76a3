//! The dataplane: two OS threads that move packets between the packet devices (the TUN,
//! a userspace TCP/IP stack, route-based connections' own TUNs) and the NAT-T sockets,
//! each owning its half of the SA state so the hot path takes no lock.
//!
//! Every device has an id ([`DevId`]; the main one is [`MAIN_DEV`]). A child SA is bound
//! to one device: its policies live in that device's SPD, and what its inbound SA
//! decrypts is written to that device.
//!
//! - [`outbound`]: TUN read (a TSO super-packet split into MTU-sized packets) -> SPD ->
//!   ESP encapsulation straight into a GSO send buffer -> one `sendmsg` per run of
//!   equal-size datagrams to one peer.
//! - [`inbound`]: `recvmmsg` with GRO on the port-4500 sockets -> demux (IKE, keepalive,
//!   ESP) -> SAD -> decapsulation in place -> TUN write with GRO coalescing.
//!
//! The control task changes SA state only through commands ([`OutCmd`], [`InCmd`]); a
//! command wakes the thread through an eventfd, and the thread applies all pending
//! commands before it touches the next batch. The threads report back through
//! [`DpEvent`]s (IKE messages that arrived on port 4500, trap acquires, soft lifetimes).

pub(crate) mod inbound;
pub(crate) mod outbound;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use esp::{InboundSa, OutboundSa, SaStats, TrafficSelector};
use ike::endpoint::IkeSaId;
use tokio::sync::oneshot;
use tun_io::{PacketDevice, PacketReader, PacketWriter, UdpSocket, Waker};

/// How long a dataplane thread sleeps in `poll` before it looks at the stop flag.
const TICK: Duration = Duration::from_millis(500);

/// Packets a trap policy holds while its SA is negotiated (strongSwan holds a few too).
pub(crate) const TRAP_HOLD: usize = 32;

/// A route: the policies of one child SA, pointing at its current outbound SA.
pub(crate) type RouteId = u64;

/// A trap policy: selectors that start a negotiation when a packet matches.
pub(crate) type TrapId = u64;

/// A packet device of the dataplane.
pub(crate) type DevId = u32;

/// The daemon's main device: the `[tun]` device, or the userspace stack that replaces it.
pub(crate) const MAIN_DEV: DevId = 0;

/// The sending half of a child SA and where its packets go.
pub(crate) struct OutSa {
    /// The SA.
    pub(crate) sa: OutboundSa,
    /// UDP destination: the peer's NAT-T address.
    pub(crate) dst: SocketAddr,
    /// Source address to send from, when bound to a wildcard.
    pub(crate) src: Option<IpAddr>,
    /// The IKE SA it belongs to, for peer address updates.
    pub(crate) ike: IkeSaId,
}

/// Selector pairs (our side, the peer's side).
pub(crate) type Policies = Vec<(TrafficSelector, TrafficSelector)>;

/// Commands for the outbound thread.
pub(crate) enum OutCmd {
    /// Reads packets from another device too, of up to `mtu` bytes.
    AddDevice {
        dev: DevId,
        reader: Box<dyn PacketReader>,
        mtu: usize,
    },
    /// Stops reading a device (its routes and traps are removed separately) and drops
    /// its reader; says so on the channel.
    RemoveDevice {
        dev: DevId,
        done: oneshot::Sender<()>,
    },
    /// A new child SA: its outbound SA and its policies in the SPD of device `dev`, under
    /// a new route.
    AddRoute {
        dev: DevId,
        route: RouteId,
        sa: Box<OutSa>,
        policies: Policies,
    },
    /// The outbound SA of a rekeyed child. The route keeps using its current SA until
    /// that one is removed (the peer may not have installed the new inbound SA yet);
    /// then it switches to this one: make-before-break.
    AddSuccessor { route: RouteId, sa: Box<OutSa> },
    /// Removes an outbound SA; its route moves to the successor, or goes if it has none.
    RemoveSa { spi: u32 },
    /// The peer's address changed: every SA of this IKE SA sends there now.
    PeerMoved { ike: IkeSaId, dst: SocketAddr },
    /// Installs a trap policy for packets read from device `dev`.
    AddTrap {
        dev: DevId,
        trap: TrapId,
        policies: Policies,
    },
    /// A negotiation the trap started failed: drop held packets, acquire again later.
    TrapFailed { trap: TrapId },
    /// Removes a trap policy and drops what it holds (its connection was unloaded).
    RemoveTrap { trap: TrapId },
    /// Reports per-SA counters.
    Stats(oneshot::Sender<OutStats>),
}

/// Commands for the inbound thread.
pub(crate) enum InCmd {
    /// Installs an inbound SA whose packets go to device `dev`.
    AddSa { sa: Box<InboundSa>, dev: DevId },
    /// Writes to another device too.
    AddDevice {
        dev: DevId,
        writer: Box<dyn PacketWriter>,
    },
    /// Stops writing to a device and drops its writer (packets of SAs still bound to it
    /// are dropped); says so on the channel.
    RemoveDevice {
        dev: DevId,
        done: oneshot::Sender<()>,
    },
    /// Removes an inbound SA.
    RemoveSa { spi: u32 },
    /// Reports per-SA counters.
    Stats(oneshot::Sender<InStats>),
}

/// What the dataplane tells the control task.
#[derive(Debug)]
pub(crate) enum DpEvent {
    /// An IKE message that arrived on a NAT-T socket (non-ESP marker stripped).
    Ike {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// A packet hit a trap policy.
    Acquire { trap: TrapId },
    /// An SA crossed its soft lifetime (sequence numbers or bytes): rekey it.
    SoftExpired { spi: u32, inbound: bool },
    /// A device failed a read with an error that will not pass (the TUN was deleted
    /// under the daemon: EBADFD); the outbound thread no longer reads it.
    DeviceGone { dev: DevId, error: io::Error },
}

/// Counters of the outbound thread.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct OutStats {
    /// Per outbound SPI.
    #[serde(skip)]
    pub(crate) sas: Vec<(u32, SaStats)>,
    /// Packets read from the TUN.
    pub tun_packets: u64,
    /// TUN reads (each may hold many packets).
    pub tun_reads: u64,
    /// ESP datagrams sent.
    pub esp_sent: u64,
    /// UDP sends (each a GSO run of up to 64 datagrams).
    pub udp_sends: u64,
    /// Packets no policy covered.
    pub no_policy: u64,
    /// Packets a trap policy held, and those it had to drop because it was full.
    pub trap_held: u64,
    /// Packets dropped because the trap was full or its negotiation failed.
    pub trap_dropped: u64,
    /// Packets esp refused to encapsulate (lifetime or sequence space exhausted).
    pub encap_errors: u64,
    /// Send errors.
    pub send_errors: u64,
}

/// Capacity of the queue of events (IKE messages on port 4500, SA expiries) from the
/// packet threads to the control task: a burst of thousands of peers must fit, since a
/// message that does not is lost until its sender retransmits (issue 22: at 5,000 SAs a
/// queue of 1,024 dropped 3,590 of 8,590 requests).
pub(crate) const EVENT_QUEUE: usize = 16_384;

/// Counters of the inbound thread.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct InStats {
    /// Per inbound SPI.
    #[serde(skip)]
    pub(crate) sas: Vec<(u32, SaStats)>,
    /// ESP packets accepted.
    pub esp_received: u64,
    /// UDP messages read (GRO aggregates).
    pub udp_reads: u64,
    /// IKE messages passed to the control task.
    pub ike_received: u64,
    /// IKE messages that found the control task's queue full and waited for room.
    pub ike_backpressure: u64,
    /// IKE messages on port 4500 dropped because the control task's queue stayed full.
    pub ike_dropped_queue_full: u64,
    /// IKE messages on port 4500 dropped because the control task had stopped.
    pub ike_dropped_closed: u64,
    /// NAT-T keepalives seen.
    pub keepalives: u64,
    /// Malformed port-4500 datagrams.
    pub malformed: u64,
    /// ESP drops by reason (unknown SPI, replay, integrity, ...).
    pub drops: Vec<(String, u64)>,
    /// TUN write errors.
    pub tun_errors: u64,
}

/// A command queue whose sender wakes the receiving thread.
///
/// A busy thread does not poll between batches: it checks the `pending` flag, which
/// every send sets after queueing, and polls (waking on the eventfd) only when idle.
/// [`Mailbox::send`] wakes the thread; [`Mailbox::post`] does not, for commands that
/// only matter to the next packet: both threads apply what is pending before they
/// process what they read.
pub(crate) struct Mailbox<T> {
    tx: mpsc::Sender<T>,
    waker: Arc<Waker>,
    pending: Arc<AtomicBool>,
    /// The eventfd was written since the thread last drained.
    woken: Arc<AtomicBool>,
}

impl<T> Mailbox<T> {
    /// Queues a command and wakes the thread; false if the thread is gone.
    ///
    /// Only the first wake-up since the thread last drained writes the eventfd: a burst
    /// of commands costs one wake-up, not one syscall and one wake-up each.
    pub(crate) fn send(&self, cmd: T) -> bool {
        let ok = self.post(cmd);
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
        ok
    }

    /// Queues a command without waking the thread; false if the thread is gone. The
    /// thread applies it before it processes the next packet it reads (a new SA before
    /// the packets that use it), at the latest at its next tick.
    pub(crate) fn post(&self, cmd: T) -> bool {
        let ok = self.tx.send(cmd).is_ok();
        self.pending.store(true, Ordering::Release);
        ok
    }
}

/// The receiving end of a [`Mailbox`].
pub(crate) struct Inbox<T> {
    rx: mpsc::Receiver<T>,
    waker: Arc<Waker>,
    pending: Arc<AtomicBool>,
    woken: Arc<AtomicBool>,
}

impl<T> Inbox<T> {
    /// True when commands may be queued (a cheap check for a busy thread).
    pub(crate) fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Clears the wake-up and returns the commands queued so far.
    ///
    /// The eventfd is cleared before the flags: a sender that finds `woken` clear
    /// wakes the eventfd after this reset, so the next poll returns; a command queued
    /// before a flag was swapped here is seen by the iterator (the swap reads the
    /// sender's store), so none is left behind a cleared flag.
    pub(crate) fn drain(&self) -> impl Iterator<Item = T> + '_ {
        self.waker.reset();
        self.woken.swap(false, Ordering::AcqRel);
        self.pending.swap(false, Ordering::AcqRel);
        self.rx.try_iter()
    }
}

fn mailbox<T>() -> io::Result<(Mailbox<T>, Inbox<T>)> {
    let (tx, rx) = mpsc::channel();
    let waker = Arc::new(Waker::new()?);
    let pending = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicBool::new(false));
    Ok((
        Mailbox {
            tx,
            waker: waker.clone(),
            pending: pending.clone(),
            woken: woken.clone(),
        },
        Inbox {
            rx,
            waker,
            pending,
            woken,
        },
    ))
}

/// The NAT-T sockets, one per address family that could be bound.
#[derive(Clone)]
pub(crate) struct NattSockets {
    pub(crate) v4: Option<Arc<UdpSocket>>,
    pub(crate) v6: Option<Arc<UdpSocket>>,
}

impl NattSockets {
    /// The socket that reaches `dst`.
    pub(crate) fn for_peer(&self, dst: &SocketAddr) -> Option<&UdpSocket> {
        match dst {
            SocketAddr::V4(_) => self.v4.as_deref(),
            SocketAddr::V6(_) => self.v6.as_deref(),
        }
    }
}

/// The running dataplane.
pub(crate) struct Dataplane {
    pub(crate) out: Mailbox<OutCmd>,
    pub(crate) inb: Mailbox<InCmd>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Dataplane {
    /// Starts both threads on the main device and the NAT-T sockets.
    pub(crate) fn start(
        main: Box<dyn PacketDevice>,
        socks: NattSockets,
        events: tokio::sync::mpsc::Sender<DpEvent>,
    ) -> io::Result<Dataplane> {
        let stop = Arc::new(AtomicBool::new(false));
        let (out, out_rx) = mailbox()?;
        let (inb, in_rx) = mailbox()?;
        let mtu = usize::from(main.mtu()?);
        let (reader, writer) = main.split()?;
        let t_out = {
            let (socks, stop, events) = (socks.clone(), stop.clone(), events.clone());
            std::thread::Builder::new()
                .name("esp-out".into())
                .spawn(move || outbound::run(reader, socks, out_rx, events, &stop, mtu))?
        };
        let t_in = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("esp-in".into())
                .spawn(move || inbound::run(writer, socks, in_rx, events, &stop, mtu))?
        };
        Ok(Dataplane {
            out,
            inb,
            stop,
            threads: vec![t_out, t_in],
        })
    }

    /// Adds a device: its packets are read and matched against its own SPD, and child
    /// SAs bound to it deliver into it.
    pub(crate) fn add_device(&self, dev: DevId, device: Box<dyn PacketDevice>) -> io::Result<()> {
        let mtu = usize::from(device.mtu()?);
        let (reader, writer) = device.split()?;
        self.inb.send(InCmd::AddDevice { dev, writer });
        self.out.send(OutCmd::AddDevice { dev, reader, mtu });
        Ok(())
    }

    /// Removes a device added with [`Dataplane::add_device`]; once this returns, both
    /// threads have let go of it (a TUN is closed, and its name free again).
    pub(crate) async fn remove_device(&self, dev: DevId) {
        let (out_done, out_rx) = oneshot::channel();
        let (in_done, in_rx) = oneshot::channel();
        self.out.send(OutCmd::RemoveDevice {
            dev,
            done: out_done,
        });
        self.inb.send(InCmd::RemoveDevice { dev, done: in_done });
        let _ = out_rx.await;
        let _ = in_rx.await;
    }

    /// Stops both threads and waits for them.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.out.waker.wake();
        self.inb.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    /// The eventfd's counter (how many wake-ups were written since the last read),
    /// read and cleared.
    fn wakes<T>(inbox: &Inbox<T>) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from the inbox's own eventfd.
        let n = unsafe {
            libc::read(
                inbox.waker.as_fd().as_raw_fd(),
                (&mut v as *mut u64).cast(),
                8,
            )
        };
        if n == 8 {
            v
        } else {
            0
        }
    }

    #[test]
    fn a_burst_of_commands_wakes_the_thread_once() {
        let (tx, rx) = mailbox::<u32>().unwrap();
        for i in 0..3 {
            assert!(tx.send(i));
        }
        assert!(rx.pending());
        assert_eq!(wakes(&rx), 1, "one eventfd write for three commands");
        assert_eq!(rx.drain().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(!rx.pending());
        // Drained: the next command wakes again.
        assert!(tx.send(3));
        assert!(tx.send(4));
        assert_eq!(wakes(&rx), 1);
        assert_eq!(rx.drain().collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn a_posted_command_waits_without_a_wake_up_and_does_not_hold_back_the_next() {
        let (tx, rx) = mailbox::<u32>().unwrap();
        assert!(tx.post(1));
        assert!(rx.pending(), "a busy thread sees it");
        assert_eq!(wakes(&rx), 0, "an idle thread sleeps on");
        // A command that wakes still wakes, with the posted one queued before it.
        assert!(tx.send(2));
        assert_eq!(wakes(&rx), 1);
        assert_eq!(rx.drain().collect::<Vec<_>>(), vec![1, 2]);
        assert!(!rx.pending());
    }

    #[test]
    fn a_command_racing_the_drain_is_never_left_without_a_wake_up() {
        // Thousands of sends against a thread that drains only when woken: every
        // command arrives, so none was queued behind a cleared eventfd.
        const N: u32 = 200_000;
        let (tx, rx) = mailbox::<u32>().unwrap();
        let receiver = std::thread::spawn(move || {
            let mut got = 0u32;
            while got < N {
                let ready =
                    tun_io::poll_readable(&[rx.waker.as_fd()], Some(Duration::from_secs(10)))
                        .unwrap();
                assert_eq!(ready, 1, "a wake-up was lost after {got} commands");
                got += rx.drain().count() as u32;
            }
            got
        });
        for i in 0..N {
            tx.send(i);
        }
        assert_eq!(receiver.join().unwrap(), N);
    }
}
