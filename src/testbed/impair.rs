//! An impaired link as a userspace UDP relay: loss, reordering, duplication and a fixed
//! delay of the IKE and ESP datagrams between two peers, from a seeded generator so that
//! a failing run can be replayed, with every decision counted.
//!
//! The kernel here has no `tc netem` (TESTING.md), so [`Relay`] does it in the middle
//! namespace of [`Topology::impaired`](super::Topology::impaired): it listens on UDP 500
//! and 4500 of its address on a's side, remembers the last peer that wrote to each, and
//! relays each datagram to the same port of b from its address on b's side; b's answers
//! go back the same way. A peer behind it therefore sees a NAT (its address differs) and
//! floats to 4500, so ESP crosses the relay UDP-encapsulated.
//!
//! Each direction of each port is one thread with its own generator (seeded from
//! [`Impairment::seed`] and the direction), so the decisions for a given packet
//! sequence do not depend on thread scheduling. The impairment can be changed while the
//! relay runs ([`Relay::set`]).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::probe::big_receive_buffer;

/// How long a held (reordered) datagram waits at most when no later datagram comes to
/// overtake it: IKE messages and the tail of a burst are not held for ever.
const HOLD_MAX: Duration = Duration::from_millis(10);
/// How often an idle relay thread checks whether it should stop.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Largest datagram relayed (a jumbo ESP packet with room to spare).
const MAX_DATAGRAM: usize = 65_536;
/// The ports relayed: IKE and NAT-T.
const PORTS: [u16; 2] = [500, 4500];

/// What the relay does to the datagrams; the rates are fractions in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Fraction of datagrams dropped.
    pub loss: f64,
    /// Fraction of datagrams held back and released after up to `reorder_window` later
    /// ones (or after 10 ms without traffic).
    pub reorder: f64,
    /// How many later datagrams a held one may let pass (at least 1 to reorder at all).
    pub reorder_window: usize,
    /// Fraction of relayed datagrams sent twice.
    pub duplicate: f64,
    /// Seed of the generators: the same seed and the same traffic make the same choices.
    pub seed: u64,
    /// Added to every datagram's trip, each direction (order kept): a longer path, e.g.
    /// so that two peers' requests started together cross on the way.
    pub delay: Duration,
}

impl Impairment {
    /// No impairment at all: every datagram relayed once, in order.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        reorder: 0.0,
        reorder_window: 0,
        duplicate: 0.0,
        seed: 1,
        delay: Duration::ZERO,
    };
}

/// What one direction of the relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCounters {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams dropped.
    pub dropped: u64,
    /// Of those, IKE messages (on 500, or on 4500 behind a zero non-ESP marker).
    pub ike_dropped: u64,
    /// Datagrams held back and sent after later ones.
    pub reordered: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Of those, ESP datagrams (on 4500, not IKE, not keepalives).
    pub esp_duplicated: u64,
    /// Datagrams sent (duplicates counted twice).
    pub sent: u64,
}

impl DirCounters {
    fn add(&mut self, o: &DirCounters) {
        self.received += o.received;
        self.dropped += o.dropped;
        self.ike_dropped += o.ike_dropped;
        self.reordered += o.reordered;
        self.duplicated += o.duplicated;
        self.esp_duplicated += o.esp_duplicated;
        self.sent += o.sent;
    }
}

impl fmt::Display for DirCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {} dropped {} (IKE {}) reordered {} duplicated {} (ESP {}) sent {}",
            self.received,
            self.dropped,
            self.ike_dropped,
            self.reordered,
            self.duplicated,
            self.esp_duplicated,
            self.sent
        )
    }
}

/// The relay's counters in both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// From a toward b.
    pub a_to_b: DirCounters,
    /// From b toward a.
    pub b_to_a: DirCounters,
}

impl RelayCounters {
    /// Both directions summed.
    pub fn total(&self) -> DirCounters {
        let mut t = self.a_to_b;
        t.add(&self.b_to_a);
        t
    }
}

impl fmt::Display for RelayCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a->b: {}; b->a: {}", self.a_to_b, self.b_to_a)
    }
}

#[derive(Default)]
struct AtomicCounters {
    received: AtomicU64,
    dropped: AtomicU64,
    ike_dropped: AtomicU64,
    reordered: AtomicU64,
    duplicated: AtomicU64,
    esp_duplicated: AtomicU64,
    sent: AtomicU64,
}

impl AtomicCounters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DirCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirCounters {
            received: g(&self.received),
            dropped: g(&self.dropped),
            ike_dropped: g(&self.ike_dropped),
            reordered: g(&self.reordered),
            duplicated: g(&self.duplicated),
            esp_duplicated: g(&self.esp_duplicated),
            sent: g(&self.sent),
        }
    }
}

/// State the relay threads share.
struct Shared {
    stop: AtomicBool,
    impairment: Mutex<Impairment>,
    /// Per port, the last address on a's side that wrote to it: where b's answers go.
    clients: [Mutex<Option<SocketAddr>>; 2],
    counters: [AtomicCounters; 2],
}

/// A running impairing UDP relay; its threads stop and its sockets close on drop.
pub struct Relay {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("counters", &self.counters())
            .finish()
    }
}

impl Relay {
    /// Binds UDP 500 and 4500 on `listen` (a's side) and on `out` (b's side) inside
    /// `ns`, and relays between the last sender on `listen` and `upstream`.
    pub fn start(
        ns: &Netns,
        listen: IpAddr,
        out: IpAddr,
        upstream: IpAddr,
        impairment: Impairment,
    ) -> io::Result<Relay> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            impairment: Mutex::new(impairment),
            clients: [Mutex::new(None), Mutex::new(None)],
            counters: [AtomicCounters::default(), AtomicCounters::default()],
        });
        let mut threads = Vec::new();
        for (pi, port) in PORTS.into_iter().enumerate() {
            let (down, up) = ns.enter(|| -> io::Result<(UdpSocket, UdpSocket)> {
                let down = UdpSocket::bind(SocketAddr::new(listen, port))?;
                let up = UdpSocket::bind(SocketAddr::new(out, port))?;
                up.connect(SocketAddr::new(upstream, port))?;
                Ok((down, up))
            })??;
            for s in [&down, &up] {
                s.set_read_timeout(Some(IDLE_POLL))?;
                // A relay thread the scheduler holds back (two busy cores) must not
                // drop what it has not read yet: that loss would be the bench's.
                big_receive_buffer(s);
            }
            let (down2, up2) = (down.try_clone()?, up.try_clone()?);
            // a -> b: read on `down`, remember the sender, write on `up`.
            let sh = shared.clone();
            threads.push(std::thread::spawn(move || {
                let mut dir = Direction::new(&sh, 0, pi, port);
                dir.run(&down, |d| up.send(d).map(drop), Some(pi));
            }));
            // b -> a: read on `up`, write to the remembered sender on `down`.
            let sh = shared.clone();
            threads.push(std::thread::spawn(move || {
                let mut dir = Direction::new(&sh, 1, pi, port);
                let to = |d: &[u8]| match *sh.clients[pi].lock().expect("client lock") {
                    Some(client) => down2.send_to(d, client).map(drop),
                    None => Ok(()),
                };
                dir.run(&up2, to, None);
            }));
        }
        Ok(Relay { shared, threads })
    }

    /// Changes the impairment from the next datagram on (the generators keep going).
    pub fn set(&self, impairment: Impairment) {
        *self.shared.impairment.lock().expect("impairment lock") = impairment;
    }

    /// The counters so far.
    pub fn counters(&self) -> RelayCounters {
        RelayCounters {
            a_to_b: self.shared.counters[0].snapshot(),
            b_to_a: self.shared.counters[1].snapshot(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A datagram held back to be sent after `left` more have passed, or at `until`.
struct Held {
    data: Vec<u8>,
    left: usize,
    until: Instant,
}

/// One direction of one port.
struct Direction<'a> {
    shared: &'a Shared,
    counters: &'a AtomicCounters,
    rng: SplitMix,
    held: VecDeque<Held>,
    /// Datagrams on their way, with the time each leaves ([`Impairment::delay`]); in
    /// sending order, so a fixed delay never reorders.
    delayed: VecDeque<(Instant, Vec<u8>)>,
    nat_t: bool,
}

impl<'a> Direction<'a> {
    fn new(shared: &'a Shared, dir: usize, port_index: usize, port: u16) -> Direction<'a> {
        let seed = shared.impairment.lock().expect("impairment lock").seed;
        Direction {
            shared,
            counters: &shared.counters[dir],
            rng: SplitMix(seed ^ ((dir as u64) << 32 | port_index as u64)),
            held: VecDeque::new(),
            delayed: VecDeque::new(),
            nat_t: port == 4500,
        }
    }

    /// Relays from `from` through `send` until the relay stops; `remember` is the port
    /// index whose client address is the sender of what `from` receives.
    fn run(
        &mut self,
        from: &UdpSocket,
        send: impl Fn(&[u8]) -> io::Result<()>,
        remember: Option<usize>,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .held
                .iter()
                .map(|h| h.until)
                .chain(self.delayed.front().map(|d| d.0))
                .map(|t| t.saturating_duration_since(now))
                .min()
                .unwrap_or(IDLE_POLL)
                .max(Duration::from_millis(1));
            let _ = from.set_read_timeout(Some(wait));
            match from.recv_from(&mut buf) {
                Ok((n, src)) => {
                    if let Some(pi) = remember {
                        *self.shared.clients[pi].lock().expect("client lock") = Some(src);
                    }
                    self.one(&buf[..n], &send);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {}
            }
            self.release_due(&send);
        }
    }

    /// Decides the fate of one datagram.
    fn one(&mut self, data: &[u8], send: &impl Fn(&[u8]) -> io::Result<()>) {
        let imp = *self.shared.impairment.lock().expect("impairment lock");
        AtomicCounters::bump(&self.counters.received);
        if self.rng.chance(imp.loss) {
            AtomicCounters::bump(&self.counters.dropped);
            if !self.nat_t || is_ike(data) {
                AtomicCounters::bump(&self.counters.ike_dropped);
            }
        } else if imp.reorder_window > 0 && self.rng.chance(imp.reorder) {
            let left = 1 + self.rng.below(imp.reorder_window as u64) as usize;
            self.held.push_back(Held {
                data: data.to_vec(),
                left,
                until: Instant::now() + HOLD_MAX,
            });
            return;
        } else {
            let twice = self.rng.chance(imp.duplicate);
            self.emit(data, twice, send);
        }
        // Every datagram that arrives counts toward releasing the held ones.
        for h in &mut self.held {
            h.left = h.left.saturating_sub(1);
        }
        self.release(|h| h.left == 0, send);
    }

    fn release_due(&mut self, send: &impl Fn(&[u8]) -> io::Result<()>) {
        let now = Instant::now();
        self.release(|h| h.until <= now, send);
        while self.delayed.front().is_some_and(|d| d.0 <= now) {
            if let Some((_, data)) = self.delayed.pop_front() {
                self.transmit(&data, send);
            }
        }
    }

    fn release(&mut self, due: impl Fn(&Held) -> bool, send: &impl Fn(&[u8]) -> io::Result<()>) {
        if !self.held.iter().any(&due) {
            return;
        }
        let (go, keep): (Vec<Held>, Vec<Held>) = self.held.drain(..).partition(|h| due(h));
        self.held = keep.into();
        for h in go {
            AtomicCounters::bump(&self.counters.reordered);
            self.emit(&h.data, false, send);
        }
    }

    fn emit(&mut self, data: &[u8], twice: bool, send: &impl Fn(&[u8]) -> io::Result<()>) {
        let copies = if twice { 2 } else { 1 };
        if twice {
            AtomicCounters::bump(&self.counters.duplicated);
            if self.nat_t && is_esp(data) {
                AtomicCounters::bump(&self.counters.esp_duplicated);
            }
        }
        let delay = self
            .shared
            .impairment
            .lock()
            .expect("impairment lock")
            .delay;
        for _ in 0..copies {
            if delay.is_zero() && self.delayed.is_empty() {
                self.transmit(data, send);
            } else {
                // Behind what is already on its way, even if the delay just shrank.
                self.delayed
                    .push_back((Instant::now() + delay, data.to_vec()));
            }
        }
    }

    fn transmit(&self, data: &[u8], send: &impl Fn(&[u8]) -> io::Result<()>) {
        if send(data).is_ok() {
            AtomicCounters::bump(&self.counters.sent);
        }
    }
}

/// An ESP datagram on the NAT-T port: not a keepalive (one 0xff byte) and not IKE (a
/// zero non-ESP marker), RFC 3948 2.2.
fn is_esp(d: &[u8]) -> bool {
    d.len() > 4 && d[..4] != [0, 0, 0, 0]
}

/// An IKE message on the NAT-T port: a zero non-ESP marker, then a header.
fn is_ike(d: &[u8]) -> bool {
    d.len() > 4 && d[..4] == [0, 0, 0, 0]
}

/// SplitMix64: small, seedable, good enough to decide a packet's fate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::super::topo::Topology;
    use super::*;

    /// Sends `n` numbered datagrams from a to b through the relay and returns the
    /// numbers b received, in arrival order.
    fn numbered(topo: &Topology, n: u32) -> Vec<u32> {
        let recv = topo
            .b()
            .enter(|| UdpSocket::bind(SocketAddr::new(topo.b_addr(), 4500)))
            .unwrap()
            .unwrap();
        // Room for every datagram in the socket even when this thread is slow to be
        // scheduled (a loaded CI machine): the test counts the relay, not the kernel's
        // receive buffer (SO_RCVBUFFORCE: past rmem_max, as root).
        let bytes: libc::c_int = 8 << 20;
        // SAFETY: a valid socket and a c_int option value of the size passed.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&recv),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                std::ptr::from_ref(&bytes).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        recv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 128];
            while let Ok((len, _)) = recv.recv_from(&mut buf) {
                assert_eq!(len, 64);
                got.push(u32::from_be_bytes(buf[4..8].try_into().unwrap()));
            }
            got
        });
        let send = topo
            .a()
            .enter(|| UdpSocket::bind((topo.a_addr(), 0)))
            .unwrap()
            .unwrap();
        for i in 0..n {
            // Datagrams that look like ESP: a non-zero SPI first.
            let mut d = [0xaau8; 64];
            d[4..8].copy_from_slice(&i.to_be_bytes());
            send.send_to(&d, (topo.b_addr_for_a(), 4500)).unwrap();
            if i % 16 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        receiver.join().unwrap()
    }

    #[test]
    fn relay_loses_reorders_and_duplicates_as_counted() {
        let imp = Impairment {
            loss: 0.05,
            reorder: 0.05,
            reorder_window: 32,
            duplicate: 0.01,
            seed: 7,
            delay: Duration::ZERO,
        };
        let topo = Topology::impaired(imp).unwrap();
        let got = numbered(&topo, 5000);
        let c = topo.relay().unwrap().counters();
        eprintln!("relay: {c}");
        let ab = c.a_to_b;
        assert_eq!(ab.received, 5000);
        assert_eq!(got.len() as u64, ab.sent, "every datagram sent arrived");
        assert_eq!(ab.sent, 5000 - ab.dropped + ab.duplicated);
        let mut seen = std::collections::HashMap::new();
        for n in &got {
            *seen.entry(*n).or_insert(0u32) += 1;
        }
        let dups = seen.values().filter(|&&k| k == 2).count() as u64;
        assert_eq!(dups, ab.duplicated);
        assert_eq!(ab.esp_duplicated, ab.duplicated);
        assert_eq!(5000 - seen.len() as u64, ab.dropped);
        // Roughly the rates asked for (5000 draws: well within these bounds).
        assert!((150..=350).contains(&ab.dropped), "{ab}");
        assert!((20..=100).contains(&ab.duplicated), "{ab}");
        assert!((150..=350).contains(&ab.reordered), "{ab}");
        // Reordered, but never further than the window (plus the 10 ms timer's share).
        let late = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(late > 0, "nothing arrived out of order");
        assert_eq!(c.b_to_a, DirCounters::default());

        // The same seed and traffic make the same choices.
        let again = Topology::impaired(imp).unwrap();
        let got2 = numbered(&again, 5000);
        let c2 = again.relay().unwrap().counters();
        assert_eq!(c2.a_to_b.dropped, ab.dropped);
        assert_eq!(c2.a_to_b.duplicated, ab.duplicated);
        let set = |v: &[u32]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(set(&got2), set(&got));

        // Back to clean: every datagram arrives once and in order.
        again.relay().unwrap().set(Impairment::NONE);
        let clean = numbered(&again, 500);
        assert_eq!(clean, (0..500).collect::<Vec<_>>());

        // A fixed delay: everything arrives, in order, and not before its time.
        let delay = Duration::from_millis(150);
        again.relay().unwrap().set(Impairment {
            delay,
            ..Impairment::NONE
        });
        let t0 = Instant::now();
        let delayed = numbered(&again, 500);
        assert_eq!(delayed, (0..500).collect::<Vec<_>>());
        // numbered() listens until 500 ms of silence after the last datagram.
        assert!(t0.elapsed() >= delay + Duration::from_millis(500));
    }
}
