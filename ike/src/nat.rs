//! NAT detection (RFC 7296 2.23): NAT_DETECTION_SOURCE_IP / _DESTINATION_IP hashes.

use std::net::{IpAddr, SocketAddr};

use ring::digest;

/// SHA-1(SPIi | SPIr | IP | Port), the data of a NAT detection notify.
pub fn detection_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// A hash that cannot match any address: sent instead of the real source hash to force
/// UDP encapsulation without a NAT, as strongSwan does for `encap = yes`.
pub fn fake_hash(spi_i: u64, spi_r: u64) -> Vec<u8> {
    let mut h = detection_hash(spi_i, spi_r, SocketAddr::from(([0, 0, 0, 0], 0)));
    for b in &mut h {
        *b ^= 0xa5;
    }
    h
}

/// What NAT detection found for one IKE SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatState {
    /// Our address is translated (the peer's DESTINATION hash did not match us).
    pub local_behind: bool,
    /// The peer's address is translated (no SOURCE hash matched what we see), or the
    /// peer fakes a NAT as we do.
    pub remote_behind: bool,
    /// We announce a NAT ourselves (a SOURCE hash no address matches) to force UDP
    /// encapsulation: strongSwan's `nat-fake`.
    pub fake: bool,
}

impl NatState {
    /// Any NAT between us, real or faked: ESP goes UDP-encapsulated and IKE floats to
    /// port 4500.
    pub fn any(&self) -> bool {
        self.local_behind || self.remote_behind || self.fake
    }

    /// Evaluates the peer's notifies: `sources` are the peer's SOURCE_IP hashes,
    /// `destination` its DESTINATION_IP hash; `local`/`remote` what we see on the packet.
    pub fn detect(
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        sources: &[&[u8]],
        destination: Option<&[u8]>,
    ) -> Option<NatState> {
        if sources.is_empty() && destination.is_none() {
            return None;
        }
        let remote_hash = detection_hash(spi_i, spi_r, remote);
        let local_hash = detection_hash(spi_i, spi_r, local);
        Some(NatState {
            remote_behind: !sources.is_empty() && !sources.contains(&remote_hash.as_slice()),
            local_behind: destination.is_some_and(|d| d != local_hash.as_slice()),
            fake: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_translation_on_either_side() {
        let l: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let r: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let src = detection_hash(1, 2, r);
        let dst = detection_hash(1, 2, l);
        let none = NatState::detect(1, 2, l, r, &[&src], Some(&dst)).unwrap();
        assert!(!none.any());
        let nat_r: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let behind = NatState::detect(1, 2, l, nat_r, &[&src], Some(&dst)).unwrap();
        assert!(behind.remote_behind && !behind.local_behind);
        let fake = fake_hash(1, 2);
        assert!(
            NatState::detect(1, 2, l, r, &[&fake], Some(&dst))
                .unwrap()
                .remote_behind
        );
        assert!(NatState::detect(1, 2, l, r, &[], None).is_none());
    }
}
