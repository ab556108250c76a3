//! The mediation server's relay ports (esprit's relay, `ike`'s `Event::RelayWanted`):
//! one UDP socket per relayed attempt on the server's address, forwarding datagrams
//! between the two addresses that bound with their tokens, as they are. The server
//! holds no key of the relayed SAs: it forwards IKE and ESP ciphertext. Bounded: at
//! most [`MAX_RELAYS`] at once, [`RATE`] bytes a second each (a token bucket; excess
//! is dropped and counted), closed after [`IDLE`] without a datagram. A leaf.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// What one relay did, read by status.
#[derive(Default)]
pub(crate) struct RelayCounters {
    /// Datagrams forwarded.
    pub(crate) packets: AtomicU64,
    /// Bytes forwarded (UDP payload).
    pub(crate) bytes: AtomicU64,
    /// Bind datagrams with a good token.
    pub(crate) binds: AtomicU64,
    /// Dropped: from an address that did not bind, to a side not bound yet, or a
    /// bind with a wrong token.
    pub(crate) unbound: AtomicU64,
    /// Dropped over the rate.
    pub(crate) over_rate: AtomicU64,
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
    pub(crate) fn open(
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
            counters.unbound.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        None => {}
    }
    let dst = sides
        .iter()
        .position(|s| *s == Some(src))
        .and_then(|k| sides[1 - k]);
    if dst.is_none() {
        counters.unbound.fetch_add(1, Ordering::Relaxed);
    }
    dst
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
            Err(_) => return, // idle
            Ok(Err(e)) => {
                tracing::debug!("relay {:?}: receive failed: {e}", sock.local_addr());
                continue;
            }
            Ok(Ok(r)) => r,
        };
        let data = &buf[..n];
        let dst = {
            let Ok(mut sides) = bound.lock() else { return };
            route(&mut sides, &tokens, &counters, data, src)
        };
        let Some(dst) = dst else { continue };
        if !bucket.take(n as u64, Instant::now()) {
            counters.over_rate.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Err(e) = sock.send_to(data, dst).await {
            tracing::debug!("relay: send to {dst} failed: {e}");
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

    #[tokio::test]
    async fn forwards_between_the_bound_sides_only() {
        let tokens = [RelayToken([1; 16]), RelayToken([2; 16])];
        let lo = IpAddr::from([127, 0, 0, 1]);
        let r = Relay::open(lo, "01020304".into(), ["a".into(), "b".into()], tokens).unwrap();
        let a = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let b = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let stranger = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let bind = |t: RelayToken| {
            let mut d = NON_ESP_MARKER.to_vec();
            d.extend_from_slice(&t.bind_datagram());
            d
        };
        a.send_to(&bind(tokens[0]), r.addr).await.unwrap();
        b.send_to(&bind(tokens[1]), r.addr).await.unwrap();
        stranger.send_to(b"hello", r.addr).await.unwrap();
        let wait = Duration::from_secs(5);
        let until = Instant::now() + wait;
        while r.counters.binds.load(Ordering::Relaxed) < 2
            || r.counters.unbound.load(Ordering::Relaxed) < 1
        {
            assert!(Instant::now() < until, "binds not seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.send_to(b"esp from a", r.addr).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(wait, b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"esp from a");
        assert_eq!(from, r.addr);
        b.send_to(b"esp from b", r.addr).await.unwrap();
        let (n, _) = tokio::time::timeout(wait, a.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"esp from b");
        assert_eq!(r.counters.packets.load(Ordering::Relaxed), 2);
        assert_eq!(r.counters.bytes.load(Ordering::Relaxed), 20);
        assert_eq!(r.counters.unbound.load(Ordering::Relaxed), 1);
        // The stranger got nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stranger.recv_from(&mut buf))
                .await
                .is_err()
        );
    }
}
