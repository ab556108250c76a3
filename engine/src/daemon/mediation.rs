//! IKE mediation in the daemon (draft-brunner-ikev2-mediation): peers register at their
//! mediation servers at startup and stay registered (retried with backoff when the SA
//! goes down); a mediated connection starts its mediation connection when it is not up
//! and waits for it; `ike` runs ME_CONNECT and the checks, and the direct IKE SA then
//! goes through the usual bookkeeping. The checks and the direct IKE SA leave from the
//! NAT-T socket because `ike` addresses them from port 4500.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ike::config::Mediation;
use ike::endpoint::{DownReason, Event, IkeSaId, IkeSaInfo};
use ike::wire::mediation::ConnectId;
use ike::wire::relay::RelayToken;

use super::relay::{RelayRefusal, MAX_RELAYS};
use super::sas::{ChildKey, Sas};
use crate::config::StartAction;

/// How often a relayed path is checked again for a direct one.
pub(crate) const RECHECK: Duration = Duration::from_secs(30);

impl Sas {
    /// The mediation role of connection `conn`.
    pub(crate) fn mediation_of(&self, conn: &str) -> Mediation {
        self.plan(conn)
            .map(|p| p.conn.mediation.clone())
            .unwrap_or_default()
    }

    /// Registers at the mediation server of connection `conn`: starts its IKE SA
    /// unless one is up or on its way. A server's connection (no remote address)
    /// only answers.
    pub(crate) fn start_mediation_conn(&mut self, now: Instant, conn: &str) -> Result<(), String> {
        let has_remote = self
            .plan(conn)
            .is_some_and(|p| !p.conn.remote_addrs.is_empty());
        if !has_remote {
            return Err(format!(
                "{conn:?} is a mediation server's connection: peers register through it"
            ));
        }
        self.refresh_host_candidates();
        // From the per-connection index, not a snapshot of every SA.
        let state = self.ep.connection_state(conn);
        if state.connecting || state.established {
            return Ok(());
        }
        self.ep
            .initiate(now, conn, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Gives `ike` this namespace's addresses as host candidates (see
    /// [`host_candidates`]).
    pub(crate) fn refresh_host_candidates(&mut self) {
        let addrs = match tun_io::interface_addrs() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("no host candidates: listing addresses failed: {e}");
                return;
            }
        };
        let mut ours: Vec<&str> = self.devices.names().collect();
        ours.push(&self.tun_name);
        let hosts = host_candidates(addrs, &ours);
        self.ep.set_host_addresses(hosts);
    }

    /// A mediated child must wait for mediation connection `by`: starts it and parks
    /// the child until its IKE SA is up.
    pub(crate) fn wait_for_mediation(
        &mut self,
        now: Instant,
        by: &str,
        key: ChildKey,
    ) -> Result<(), String> {
        self.start_mediation_conn(now, by)?;
        tracing::info!("{}: waiting for mediation connection {by}", key.0);
        if !self.med.waiting.contains(&key) {
            self.med.waiting.push(key);
        }
        Ok(())
    }

    /// An IKE SA is up: a mediation SA releases the children waiting for it; a direct
    /// SA ends its connection's attempt.
    pub(crate) fn mediation_ike_up(&mut self, now: Instant, info: &IkeSaInfo) {
        self.med.attempts.remove(&info.conn);
        if info.mediation.is_none() {
            return;
        }
        match info.mediation {
            Some(Some(srflx)) => tracing::info!(
                "{}: registered at the mediation server, which sees us at {srflx}",
                info.conn
            ),
            _ => tracing::info!("{}: registered at the mediation server", info.conn),
        }
        let (ready, rest): (Vec<ChildKey>, Vec<ChildKey>) =
            self.med.waiting.drain(..).partition(|k| {
                matches!(self.plans.iter().find(|p| p.conn.name == k.0).map(|p| &p.conn.mediation),
                    Some(Mediation::MediatedBy { by, .. }) if *by == info.conn)
            });
        self.med.waiting = rest;
        for (conn, child) in ready {
            if let Err(e) = self.initiate(now, &conn, Some(&child)) {
                tracing::warn!("{conn}.{child}: cannot initiate through mediation: {e}");
            }
        }
    }

    /// An IKE SA went down: a peer's mediation SA registers again later (unless it
    /// was terminated); a direct SA's attempt and path are over, and the usual restart
    /// of its children goes back through the server.
    pub(crate) fn mediation_ike_down(
        &mut self,
        now: Instant,
        id: IkeSaId,
        conn: &str,
        reason: &DownReason,
    ) {
        self.med.attempts.remove(conn);
        self.med.paths.retain(|_, (ike, ..)| *ike != id);
        // By the name index: an O(n) scan here made deleting n SAs quadratic.
        let is_peer_mediation = self.plan(conn).is_some_and(|p| {
            p.conn.mediation == Mediation::Mediation && !p.conn.remote_addrs.is_empty()
        });
        if is_peer_mediation
            && !self.closing
            && !matches!(reason, DownReason::Terminated | DownReason::Rekeyed)
        {
            self.retry_later(now, conn);
        }
    }

    /// Every [`RECHECK`] while some path is relayed: the initiator of each relayed
    /// IKE SA runs the checks again, and moves to a pair that passes (`ike` does it).
    pub(crate) fn recheck_relayed(&mut self, now: Instant) {
        if self.med.next_recheck.is_none_or(|t| t > now) {
            return;
        }
        let relayed: Vec<(String, IkeSaId)> = self
            .med
            .paths
            .iter()
            .filter(|(_, p)| p.3)
            .map(|(c, p)| (c.clone(), p.0))
            .collect();
        self.med.next_recheck = (!relayed.is_empty()).then(|| now + RECHECK);
        for (conn, ike) in relayed {
            // The responder's side of a relayed SA refuses: only initiators re-check.
            if self.ep.recheck_mediated(now, ike).is_ok() {
                tracing::info!("{conn}: relayed; checking again for a direct path");
            }
        }
    }

    /// IKE SA `ike` follows its peer to `remote`: a relayed path that moved is direct.
    pub(crate) fn mediated_peer_moved(&mut self, ike: IkeSaId, remote: SocketAddr) {
        for (conn, p) in self.med.paths.iter_mut().filter(|(_, p)| p.0 == ike && p.3) {
            tracing::info!("{conn}: moved from the relay to the direct path to {remote}");
            p.2 = remote;
            p.3 = false;
        }
    }

    /// Mediation server: two peers want attempt `cid` relayed: open a relay port on
    /// `local` (unless [`MAX_RELAYS`] are open) and tell `ike`.
    fn open_relay(
        &mut self,
        now: Instant,
        cid: ConnectId,
        local: IpAddr,
        peers: [String; 2],
        tokens: [RelayToken; 2],
    ) {
        let hex: String = cid.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let port = match self
            .med
            .relays
            .open(local, hex.clone(), peers.clone(), tokens)
        {
            Ok(r) => {
                tracing::info!(
                    "relay {hex} for '{}' - '{}' open at {}",
                    peers[0],
                    peers[1],
                    r.addr
                );
                Some(r.addr.port())
            }
            Err(RelayRefusal::Limit) => {
                tracing::warn!(
                    "relay {hex} for '{}' - '{}': {MAX_RELAYS} relays open already",
                    peers[0],
                    peers[1]
                );
                None
            }
            Err(RelayRefusal::Socket(e)) => {
                tracing::warn!("relay {hex}: cannot open a UDP port on {local}: {e}");
                None
            }
        };
        self.ep.relay_allocated(now, &cid, port);
    }

    /// `ike`'s mediation events: the chosen path, or why there is none.
    pub(crate) fn mediation_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::MediatedPath {
                conn,
                ike,
                local,
                remote,
                relayed,
            } => {
                if relayed {
                    tracing::info!(
                        "{conn}: no pair passed the checks; relayed through the mediation \
                         server at {remote}, IKE SA #{}",
                        ike.0
                    );
                } else {
                    tracing::info!(
                        "{conn}: connectivity checks chose {local} - {remote}, IKE SA #{} follows",
                        ike.0
                    );
                }
                // A path the server's callback started is an attempt the engine did
                // not make: note it, so that a retry does not start another.
                if !self.ep.connection_state(&conn).established {
                    self.med.attempt(&conn);
                }
                self.med.paths.insert(conn, (ike, local, remote, relayed));
                if relayed && self.med.next_recheck.is_none() {
                    self.med.next_recheck = Some(now + RECHECK);
                }
            }
            Event::RelayWanted {
                connect_id,
                local,
                peers,
                tokens,
            } => self.open_relay(now, connect_id, local, peers, tokens),
            Event::MediationFailed { conn, peer, reason } => {
                tracing::warn!("{conn}: mediation with '{peer}' failed: {reason}");
                self.med.attempts.remove(&conn);
                self.failures.insert(
                    conn.clone(),
                    format!("mediation with '{peer}' failed: {reason}"),
                );
                let starts = self.plans.iter().any(|p| {
                    p.conn.name == conn
                        && p.children
                            .iter()
                            .any(|c| c.start_action == StartAction::Start)
                });
                self.forget_pending(&conn);
                if starts && !self.closing {
                    self.retry_later(now, &conn);
                }
            }
            _ => {}
        }
    }
}

/// The host candidates among a namespace's addresses: every address of an interface
/// that is up, except loopback and link-local ones and those of our own devices (the
/// TUN's virtual IPs and inner addresses, route-based devices' link addresses), which
/// are only reachable through a tunnel.
fn host_candidates(addrs: Vec<tun_io::InterfaceAddr>, ours: &[&str]) -> Vec<IpAddr> {
    addrs
        .into_iter()
        .filter(|a| a.up && !a.loopback && !ours.contains(&a.name.as_str()))
        .map(|a| a.addr)
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: &str, ip: &str, up: bool, loopback: bool) -> tun_io::InterfaceAddr {
        tun_io::InterfaceAddr {
            name: name.into(),
            addr: ip.parse().unwrap(),
            up,
            loopback,
        }
    }

    #[test]
    fn host_candidates_leave_out_our_devices_loopback_link_local_and_down() {
        let addrs = vec![
            addr("lo", "127.0.0.1", true, true),
            addr("eth0", "192.0.2.1", true, false),
            addr("eth0", "2001:db8::1", true, false),
            addr("eth0", "fe80::1", true, false),
            addr("eth1", "198.51.100.1", false, false),
            addr("eth2", "169.254.7.1", true, false),
            addr("esprit0", "10.3.0.1", true, false),
            addr("ss0", "169.254.100.1", true, false),
            addr("ss1", "10.200.0.1", true, false),
        ];
        let hosts = host_candidates(addrs, &["ss0", "ss1", "esprit0"]);
        let want: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        assert_eq!(hosts, want);
    }
}
