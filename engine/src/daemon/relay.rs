//! The mediation server's relay ports (esprit's relay, `ike`'s `Event::RelayWanted`):
//! one UDP socket per relayed attempt on the server's address, forwarding datagrams
//! between the two addresses that bound with their tokens, as they are. The server
//! holds no key of the relayed SAs: it forwards IKE and ESP ciphertext. Bounded: at
//! most [`MAX_RELAYS`] at once, [`RATE`] bytes a second each (a token bucket; excess
//! is dropped and counted), closed after [`IDLE`] without a datagram. A leaf.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esp::natt::NON_ESP_MARKER;
use ike::wire::relay::{RelayToken, BIND_LEN};

/// Most relays a server keeps open.
pub(crate) const MAX_RELAYS: usize = 64;
/// Bytes a second one relay forwards (both directions together).
pub(crate) const RATE: u64 = 32 * 1024 * 1024;
/// The token bucket's depth.
const BURST: u64 = 4 * 1024 * 1024;
/// A relay nobody sent anything to for this long closes.
pub(crate) const IDLE: Duration = Duration::from_secs(300);

/// Why a relay dropped a datagram: status and metrics count each reason
/// ([`RelayDrop::as_index`], [`RelayDrop::NAMES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayDrop {
    /// From an address that did not bind (nor sent a bind datagram).
    UnknownSource,
    /// From a bound side, towards a side that has not bound yet.
    PeerUnbound,
    /// A bind datagram with a token that is not this relay's.
    BadToken,
    /// Over the relay's [`RATE`].
    OverRate,
    /// The send towards the other side failed.
    SendError,
}

impl RelayDrop {
    /// Number of reasons, for counter arrays.
    pub(crate) const COUNT: usize = 5;
    /// Each reason's metric label, at its [`RelayDrop::as_index`].
    pub(crate) const NAMES: [&'static str; Self::COUNT] = [
        "unknown_source",
        "peer_unbound",
        "bad_token",
        "over_rate",
        "send_error",
    ];

    /// The reason's slot in counter arrays.
    pub(crate) const fn as_index(self) -> usize {
        match self {
            RelayDrop::UnknownSource => 0,
            RelayDrop::PeerUnbound => 1,
            RelayDrop::BadToken => 2,
            RelayDrop::OverRate => 3,
            RelayDrop::SendError => 4,
        }
    }
}

/// Why a relay closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayClose {
    /// Nothing arrived for [`IDLE`].
    Idle,
    /// Its state was poisoned by a panic elsewhere (a bug): it stopped forwarding.
    Failed,
}

impl RelayClose {
    /// Number of reasons, for counter arrays.
    pub(crate) const COUNT: usize = 2;
    /// Each reason's metric label, at its [`RelayClose::as_index`].
    pub(crate) const NAMES: [&'static str; Self::COUNT] = ["idle", "failed"];

    /// The reason's slot in counter arrays.
    pub(crate) const fn as_index(self) -> usize {
        match self {
            RelayClose::Idle => 0,
            RelayClose::Failed => 1,
        }
    }
}

/// Why a relay the peers asked for was not opened.
#[derive(Debug)]
pub(crate) enum RelayRefusal {
    /// [`MAX_RELAYS`] are open already.
    Limit,
    /// No UDP port could be opened.
    Socket(io::Error),
}

impl RelayRefusal {
    /// Number of reasons, for counter arrays.
    pub(crate) const COUNT: usize = 2;
    /// Each reason's metric label, at its [`RelayRefusal::as_index`].
    pub(crate) const NAMES: [&'static str; Self::COUNT] = ["limit", "socket_error"];

    /// The reason's slot in counter arrays.
    pub(crate) const fn as_index(&self) -> usize {
        match self {
            RelayRefusal::Limit => 0,
            RelayRefusal::Socket(_) => 1,
        }
    }
}

/// What one relay did, read by status and metrics.
#[derive(Default)]
pub(crate) struct RelayCounters {
    /// Datagrams forwarded.
    pub(crate) packets: AtomicU64,
    /// Bytes forwarded (UDP payload).
    pub(crate) bytes: AtomicU64,
    /// Bind datagrams with a good token.
    pub(crate) binds: AtomicU64,
    /// Datagrams dropped, at [`RelayDrop::as_index`].
    pub(crate) drops: [AtomicU64; RelayDrop::COUNT],
    /// Why the relay closed: 0 while it runs, else 1 + [`RelayClose::as_index`].
    closed: AtomicU8,
}

impl RelayCounters {
    fn count_drop(&self, why: RelayDrop) {
        self.drops[why.as_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Datagrams dropped for `why` so far.
    pub(crate) fn dropped(&self, why: RelayDrop) -> u64 {
        self.drops[why.as_index()].load(Ordering::Relaxed)
    }

    fn close(&self, why: RelayClose) {
        self.closed
            .store(1 + why.as_index() as u8, Ordering::Relaxed);
    }

    /// Why the relay closed, if it did.
    fn close_reason(&self) -> Option<RelayClose> {
        match self.closed.load(Ordering::Relaxed) {
            0 => None,
            1 => Some(RelayClose::Idle),
            _ => Some(RelayClose::Failed),
        }
    }
}

/// A server's relay figures since it started, closed relays included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayTotals {
    /// Relays running now.
    pub(crate) open: u64,
    /// Relays opened.
    pub(crate) opened: u64,
    /// Relays refused, at [`RelayRefusal::as_index`].
    pub(crate) refused: [u64; RelayRefusal::COUNT],
    /// Relays closed, at [`RelayClose::as_index`].
    pub(crate) closed: [u64; RelayClose::COUNT],
    /// Datagrams forwarded.
    pub(crate) packets: u64,
    /// Bytes forwarded (UDP payload).
    pub(crate) bytes: u64,
    /// Bind datagrams with a good token.
    pub(crate) binds: u64,
    /// Datagrams dropped, at [`RelayDrop::as_index`].
    pub(crate) drops: [u64; RelayDrop::COUNT],
}

impl RelayTotals {
    /// Adds one relay's figures (and its closing, if it closed).
    fn add(&mut self, r: &Relay) {
        let c = &r.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.packets += load(&c.packets);
        self.bytes += load(&c.bytes);
        self.binds += load(&c.binds);
        for (t, d) in self.drops.iter_mut().zip(&c.drops) {
            *t += load(d);
        }
        match (r.is_closed(), c.close_reason()) {
            (false, _) => self.open += 1,
            (true, Some(why)) => self.closed[why.as_index()] += 1,
            // Ended without saying why: its task panicked.
            (true, None) => self.closed[RelayClose::Failed.as_index()] += 1,
        }
    }
}

/// A mediation server's relays: those open, and the figures of those gone.
#[derive(Default)]
pub(crate) struct Relays {
    /// Relays opened and not reaped yet (some may have closed since).
    list: Vec<Relay>,
    /// Figures of the relays reaped, and every opening and refusal.
    gone: RelayTotals,
}

impl Relays {
    /// Opens a relay on `local` for two peers' `tokens`, unless [`MAX_RELAYS`] run
    /// already or no port can be opened. Relays that closed are reaped first.
    pub(crate) fn open(
        &mut self,
        local: IpAddr,
        connect_id: String,
        peers: [String; 2],
        tokens: [RelayToken; 2],
    ) -> Result<&Relay, RelayRefusal> {
        let gone = &mut self.gone;
        self.list.retain(|r| {
            if r.is_closed() {
                gone.add(r);
            }
            !r.is_closed()
        });
        let opened = if self.list.len() >= MAX_RELAYS {
            Err(RelayRefusal::Limit)
        } else {
            Relay::open(local, connect_id, peers, tokens).map_err(RelayRefusal::Socket)
        };
        match opened {
            Ok(r) => {
                self.gone.opened += 1;
                self.list.push(r);
                Ok(&self.list[self.list.len() - 1])
            }
            Err(e) => {
                self.gone.refused[e.as_index()] += 1;
                Err(e)
            }
        }
    }

    /// The relays running now.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Relay> {
        self.list.iter().filter(|r| !r.is_closed())
    }

    /// Every figure since the server started.
    pub(crate) fn totals(&self) -> RelayTotals {
        let mut t = self.gone;
        for r in &self.list {
            t.add(r);
        }
        t
    }
}

/// One open relay.
pub(crate) struct Relay {
    /// The attempt's connect ID, in hex.
    pub(crate) connect_id: String,
    /// The two peers' identities.
    pub(crate) peers: [String; 2],
    /// The relay's address.
    pub(crate) addr: SocketAddr,
    /// The addresses bound to each side.
    pub(crate) bound: Arc<Mutex<[Option<SocketAddr>; 2]>>,
    pub(crate) counters: Arc<RelayCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Opens a relay on `local` (an ephemeral port) for two peers' `tokens`.
    fn open(
        local: IpAddr,
        connect_id: String,
        peers: [String; 2],
        tokens: [RelayToken; 2],
    ) -> io::Result<Relay> {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(local, 0))?;
        std_sock.set_nonblocking(true)?;
        let addr = std_sock.local_addr()?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)?;
        let bound = Arc::new(Mutex::new([None; 2]));
        let counters = Arc::new(RelayCounters::default());
        let task = tokio::spawn(forward(sock, tokens, bound.clone(), counters.clone()));
        Ok(Relay {
            connect_id,
            peers,
            addr,
            bound,
            counters,
            task,
        })
    }

    /// The relay closed (idle, or its socket failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which side `data` binds, if it is a bind datagram (after the non-ESP marker, as
/// the peer's NAT-T socket frames everything IKE) with one of `tokens`. `Err(())`:
/// a bind with a token that is not ours.
fn bind_side(data: &[u8], tokens: &[RelayToken; 2]) -> Option<Result<usize, ()>> {
    if data.len() != NON_ESP_MARKER.len() + BIND_LEN || data[..4] != NON_ESP_MARKER {
        return None;
    }
    let token = RelayToken::from_bind(&data[4..])?;
    Some(tokens.iter().position(|t| *t == token).ok_or(()))
}

/// A token bucket of [`RATE`] bytes a second, [`BURST`] deep.
struct Bucket {
    level: u64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        let refill = (elapsed.as_micros() as u64).saturating_mul(RATE) / 1_000_000;
        if refill > 0 {
            self.level = (self.level + refill).min(BURST);
            self.at = now;
        }
        if self.level < n {
            return false;
        }
        self.level -= n;
        true
    }
}

/// Where a datagram from `src` goes: binds update `sides` and go nowhere, as do
/// datagrams from an address that did not bind or towards a side not bound yet.
fn route(
    sides: &mut [Option<SocketAddr>; 2],
    tokens: &[RelayToken; 2],
    counters: &RelayCounters,
    data: &[u8],
    src: SocketAddr,
) -> Option<SocketAddr> {
    match bind_side(data, tokens) {
        Some(Ok(k)) => {
            if sides[k] != Some(src) {
                tracing::info!("relay: side {k} bound from {src}");
            }
            sides[k] = Some(src);
            counters.binds.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Err(())) => {
            counters.count_drop(RelayDrop::BadToken);
            return None;
        }
        None => {}
    }
    let Some(k) = sides.iter().position(|s| *s == Some(src)) else {
        counters.count_drop(RelayDrop::UnknownSource);
        return None;
    };
    if sides[1 - k].is_none() {
        counters.count_drop(RelayDrop::PeerUnbound);
    }
    sides[1 - k]
}

async fn forward(
    sock: tokio::net::UdpSocket,
    tokens: [RelayToken; 2],
    bound: Arc<Mutex<[Option<SocketAddr>; 2]>>,
    counters: Arc<RelayCounters>,
) {
    let mut buf = vec![0u8; 65536];
    let mut bucket = Bucket {
        level: BURST,
        at: Instant::now(),
    };
    loop {
        let (n, src) = match tokio::time::timeout(IDLE, sock.recv_from(&mut buf)).await {
            Err(_) => return counters.close(RelayClose::Idle),
            Ok(Err(e)) => {
                tracing::debug!("relay {:?}: receive failed: {e}", sock.local_addr());
                continue;
            }
            Ok(Ok(r)) => r,
        };
        let data = &buf[..n];
        let dst = {
            let Ok(mut sides) = bound.lock() else {
                return counters.close(RelayClose::Failed);
            };
            route(&mut sides, &tokens, &counters, data, src)
        };
        let Some(dst) = dst else { continue };
        if !bucket.take(n as u64, Instant::now()) {
            counters.count_drop(RelayDrop::OverRate);
            continue;
        }
        if let Err(e) = sock.send_to(data, dst).await {
            tracing::debug!("relay: send to {dst} failed: {e}");
            counters.count_drop(RelayDrop::SendError);
            continue;
        }
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_need_the_marker_and_a_token_of_ours() {
        let tokens = [RelayToken([1; 16]), RelayToken([2; 16])];
        let mut d = NON_ESP_MARKER.to_vec();
        d.extend_from_slice(&tokens[1].bind_datagram());
        assert_eq!(bind_side(&d, &tokens), Some(Ok(1)));
        assert_eq!(bind_side(&d[4..], &tokens), None, "no marker");
        assert_eq!(bind_side(&d[..d.len() - 1], &tokens), None);
        let mut other = NON_ESP_MARKER.to_vec();
        other.extend_from_slice(&RelayToken([3; 16]).bind_datagram());
        assert_eq!(bind_side(&other, &tokens), Some(Err(())));
        assert_eq!(bind_side(&[], &tokens), None);
    }

    #[test]
    fn the_bucket_holds_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            level: BURST,
            at: t0,
        };
        assert!(b.take(BURST, t0));
        assert!(!b.take(1, t0));
        // A tenth of a second refills a tenth of the rate.
        assert!(b.take(RATE / 10, t0 + Duration::from_millis(100)));
        assert!(!b.take(1500, t0 + Duration::from_millis(100)));
    }

    /// Sends `data` from `from` to the relay and waits until `counted` says the relay
    /// saw it.
    async fn send_counted(
        from: &tokio::net::UdpSocket,
        to: SocketAddr,
        data: &[u8],
        counted: impl Fn() -> bool,
    ) {
        from.send_to(data, to).await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while !counted() {
            assert!(Instant::now() < until, "the relay did not count {data:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn bind(t: RelayToken) -> Vec<u8> {
        let mut d = NON_ESP_MARKER.to_vec();
        d.extend_from_slice(&t.bind_datagram());
        d
    }

    /// One relay open on loopback between sides "a" and "b".
    struct OneRelay {
        relays: Relays,
        tokens: [RelayToken; 2],
        lo: IpAddr,
        /// The relay's address.
        to: SocketAddr,
        c: Arc<RelayCounters>,
    }

    fn one_relay() -> OneRelay {
        let tokens = [RelayToken([1; 16]), RelayToken([2; 16])];
        let lo = IpAddr::from([127, 0, 0, 1]);
        let mut relays = Relays::default();
        let r = relays
            .open(lo, "01020304".into(), ["a".into(), "b".into()], tokens)
            .unwrap();
        let (to, c) = (r.addr, r.counters.clone());
        OneRelay {
            relays,
            tokens,
            lo,
            to,
            c,
        }
    }

    /// Holds once `c` has counted `n` binds.
    fn binds_counted(c: &Arc<RelayCounters>, n: u64) -> impl Fn() -> bool {
        let c = c.clone();
        move || c.binds.load(Ordering::Relaxed) == n
    }

    #[tokio::test]
    async fn forwards_between_the_bound_sides_only_and_counts_each_drop() {
        let OneRelay {
            relays,
            tokens,
            lo,
            to,
            c,
        } = one_relay();
        let a = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let b = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let stranger = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let binds = |n: u64| binds_counted(&c, n);
        send_counted(&a, to, &bind(tokens[0]), binds(1)).await;
        send_counted(&a, to, b"before b bound", || {
            c.dropped(RelayDrop::PeerUnbound) == 1
        })
        .await;
        send_counted(&b, to, &bind(tokens[1]), binds(2)).await;
        send_counted(&stranger, to, b"hello", || {
            c.dropped(RelayDrop::UnknownSource) == 1
        })
        .await;
        send_counted(&stranger, to, &bind(RelayToken([3; 16])), || {
            c.dropped(RelayDrop::BadToken) == 1
        })
        .await;
        let wait = Duration::from_secs(5);
        a.send_to(b"esp from a", to).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(wait, b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"esp from a");
        assert_eq!(from, to);
        b.send_to(b"esp from b", to).await.unwrap();
        let (n, _) = tokio::time::timeout(wait, a.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"esp from b");
        // The stranger got nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stranger.recv_from(&mut buf))
                .await
                .is_err()
        );
        let t = relays.totals();
        let mut drops = [0; RelayDrop::COUNT];
        for why in [
            RelayDrop::UnknownSource,
            RelayDrop::PeerUnbound,
            RelayDrop::BadToken,
        ] {
            drops[why.as_index()] = 1;
        }
        assert_eq!(
            t,
            RelayTotals {
                open: 1,
                opened: 1,
                packets: 2,
                bytes: 20,
                binds: 2,
                drops,
                ..RelayTotals::default()
            }
        );
    }

    /// A peer whose NAT moved it to a new port binds again from there: the relay
    /// forwards to the new address and no longer takes datagrams from the old one.
    #[tokio::test]
    async fn a_bind_from_a_new_address_moves_that_side() {
        let OneRelay {
            relays,
            tokens,
            lo,
            to,
            c,
        } = one_relay();
        let a_old = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let a_new = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let b = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let binds = |n: u64| binds_counted(&c, n);
        send_counted(&a_old, to, &bind(tokens[0]), binds(1)).await;
        send_counted(&b, to, &bind(tokens[1]), binds(2)).await;
        send_counted(&a_new, to, b"before the new bind", || {
            c.dropped(RelayDrop::UnknownSource) == 1
        })
        .await;
        send_counted(&a_new, to, &bind(tokens[0]), binds(3)).await;
        let bound = *relays.list[0].bound.lock().unwrap();
        assert_eq!(bound[0], Some(a_new.local_addr().unwrap()));
        b.send_to(b"esp from b", to).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), a_new.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"esp from b");
        send_counted(&a_old, to, b"from the old port", || {
            c.dropped(RelayDrop::UnknownSource) == 2
        })
        .await;
        assert_eq!(c.packets.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn refuses_past_the_limit_and_keeps_the_figures_of_closed_relays() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let tokens = [RelayToken([1; 16]), RelayToken([2; 16])];
        let mut relays = Relays::default();
        for i in 0..MAX_RELAYS {
            relays
                .open(lo, format!("{i:08x}"), ["a".into(), "b".into()], tokens)
                .unwrap();
        }
        let over = relays
            .open(lo, "ffffffff".into(), ["a".into(), "b".into()], tokens)
            .err();
        assert!(matches!(over, Some(RelayRefusal::Limit)), "{over:?}");
        // One relay closes idle after it counted a drop: its figures stay in the
        // totals once it is reaped, and its slot is free again.
        let r = &relays.list[0];
        let c = r.counters.clone();
        let s = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        send_counted(&s, r.addr, b"x", || {
            c.dropped(RelayDrop::UnknownSource) == 1
        })
        .await;
        relays.list[0].task.abort();
        c.close(RelayClose::Idle);
        let until = Instant::now() + Duration::from_secs(5);
        while !relays.list[0].is_closed() {
            assert!(Instant::now() < until, "the relay did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relays
            .open(lo, "fffffffe".into(), ["a".into(), "b".into()], tokens)
            .unwrap();
        let t = relays.totals();
        assert_eq!(t.open, MAX_RELAYS as u64);
        assert_eq!(t.opened, MAX_RELAYS as u64 + 1);
        assert_eq!(t.refused, [1, 0]);
        assert_eq!(t.closed, [1, 0]);
        assert_eq!(t.drops[RelayDrop::UnknownSource.as_index()], 1);
        assert_eq!(relays.live().count(), MAX_RELAYS);
    }
}
