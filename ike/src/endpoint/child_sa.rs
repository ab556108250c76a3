//! The records of child SAs (RFC 7296 1.3): a negotiated child SA, and the requests in
//! flight that create or rekey a child SA or rekey the IKE SA. A leaf: it imports no
//! exchange file, so the hub and every exchange can use it.

use std::time::Instant;

use super::event::DownReason;
use super::keys::Dh;
use super::Ctx;
use crate::config::Connection;
use crate::iana::{notify, protocol};
use crate::proposal::{EspSuite, ProposalSet};
use crate::wire::{KeyExchange, Notify, Payload, TrafficSelector};

/// Where a child SA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// Carrying traffic.
    Installed,
    /// Our rekey of it is in flight.
    Rekeying,
    /// Our rekey of it is in flight and the peer deleted it meanwhile (RFC 7296 2.25.1):
    /// it keeps carrying our traffic until the rekey's answer replaces it (a rekey) or
    /// ends it (deleted by the peer), as charon does.
    RekeyingDeleted,
    /// Replaced by a newer child SA; deleted soon by whoever initiated the rekey.
    Rekeyed,
    /// Our delete is in flight.
    Deleting,
    /// Gone.
    Deleted,
}

/// A child SA as the IKE SA tracks it; keys went to the engine in `ChildUp`.
#[derive(Debug, Clone)]
pub(crate) struct ChildSa {
    pub(crate) cfg: usize,
    pub(crate) spi_in: u32,
    pub(crate) spi_out: u32,
    pub(crate) suite: EspSuite,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    pub(crate) state: ChildState,
    pub(crate) established: Instant,
    pub(crate) rekey_at: Option<Instant>,
    /// A peer rekey of this SA we answered while ours was in flight: the smaller nonce
    /// of that exchange and the inbound SPI of the SA it created (RFC 7296 2.8.1).
    pub(crate) collision: Option<(Vec<u8>, u32)>,
    /// Replaced by a rekey, or the redundant SA of a rekey collision (RFC 7296 2.8.1):
    /// its end is part of a rekey, not the end of the child. Unlike the `Rekeyed`
    /// state, it outlives our own delete of the SA.
    pub(crate) replaced: bool,
}

/// A CREATE_CHILD_SA (or IKE_AUTH) child request in flight.
pub(crate) struct ChildRequest {
    pub(crate) cfg: usize,
    pub(crate) spi_in: u32,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: Option<Dh>,
    /// What we offered (without DH groups in IKE_AUTH).
    pub(crate) offered: ProposalSet,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    /// Inbound SPI of the child SA being rekeyed.
    pub(crate) rekeys: Option<u32>,
    /// INVALID_KE_PAYLOAD retries left.
    pub(crate) ke_retry: bool,
    /// The old SA's collision record (see [`ChildSa::collision`]), kept here when the
    /// peer's crossing rekey replaced and deleted the old SA before our answer came.
    pub(crate) collision: Option<(Vec<u8>, u32)>,
    /// Outbound SPIs the peer deleted before we knew them: the SA its answer to this
    /// request creates may be one of them (RFC 7296 2.25.1), at most
    /// [`DELETED_EARLY_MAX`].
    pub(crate) deleted_early: Vec<u32>,
    /// TEMPORARY_FAILURE answers to this new child SA so far (RFC 7296 2.25).
    pub(crate) temp_failures: u32,
}

/// How many unknown SPIs a peer's deletes may leave with one request in flight.
pub(crate) const DELETED_EARLY_MAX: usize = 4;

/// An IKE SA rekey in flight.
pub(crate) struct IkeRekeyRequest {
    pub(crate) spi: u64,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: Dh,
    /// An INVALID_KE_PAYLOAD answer may still be followed (once, RFC 7296 1.3.2).
    pub(crate) ke_retry: bool,
}

impl ChildRequest {
    /// Prepares a child request for config `cfg`; `pfs` includes the DH group (and a KE).
    pub(crate) fn new(
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        cfg: usize,
        rekeys: Option<&ChildSa>,
        pfs: bool,
    ) -> Result<ChildRequest, DownReason> {
        let child = conn
            .children
            .get(cfg)
            .ok_or(DownReason::UnknownChildConfig)?;
        let spi_in = ctx.random_esp_spi();
        let offered = if pfs {
            child.esp_proposals.clone()
        } else {
            child.esp_proposals.without_dh()
        };
        let dh = match offered.preferred_dh() {
            Some(g) if pfs => Some(Dh::generate(g.id(), ctx.rng).map_err(DownReason::Crypto)?),
            _ => None,
        };
        let (local_ts, remote_ts) = match rekeys {
            Some(old) => (old.local_ts.clone(), old.remote_ts.clone()),
            None => (child.local_ts.clone(), child.remote_ts.clone()),
        };
        Ok(ChildRequest {
            cfg,
            spi_in,
            ni: ctx.nonce(),
            dh,
            offered,
            local_ts,
            remote_ts,
            rekeys: rekeys.map(|c| c.spi_in),
            ke_retry: true,
            collision: None,
            deleted_early: Vec::new(),
            temp_failures: 0,
        })
    }

    /// SA, (Nonce, KE,) TSi, TSr for the request; `with_nonce` for CREATE_CHILD_SA.
    pub(crate) fn request_payloads(&self, with_nonce: bool) -> Vec<Payload> {
        let mut p = Vec::new();
        if let Some(old) = self.rekeys {
            p.push(Payload::Notify(Notify {
                protocol: protocol::ESP,
                spi: old.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: Vec::new(),
            }));
        }
        p.push(Payload::Sa(
            self.offered.to_wire(&self.spi_in.to_be_bytes()),
        ));
        if with_nonce {
            p.push(Payload::Nonce(self.ni.clone()));
            if let Some(dh) = &self.dh {
                p.push(Payload::Ke(KeyExchange {
                    group: dh.group(),
                    data: dh.public_key().to_vec(),
                }));
            }
        }
        p.push(Payload::TsI(self.local_ts.clone()));
        p.push(Payload::TsR(self.remote_ts.clone()));
        p
    }
}

impl ChildSa {
    /// True when a newer child of the same config replaced this one (its delete is then
    /// the end of a rekey, not of the tunnel).
    pub(crate) fn superseded(&self, all: &[ChildSa]) -> bool {
        self.state == ChildState::Rekeyed
            || self.replaced
            // The SA we created answering the peer's rekey that crossed ours, deleted
            // before our own rekey's answer told us it lost.
            || all
                .iter()
                .any(|c| c.collision.as_ref().is_some_and(|(_, s)| *s == self.spi_in))
            || all.iter().any(|c| {
                c.cfg == self.cfg
                    && c.spi_in != self.spi_in
                    && c.state == ChildState::Installed
                    && c.established > self.established
            })
    }
}
