//! IKE mediation in the daemon (draft-brunner-ikev2-mediation): peers register at their
//! mediation servers at startup and stay registered (retried with backoff when the SA
//! goes down); a mediated connection starts its mediation connection when it is not up
//! and waits for it; `ike` runs ME_CONNECT and the checks, and the direct IKE SA then
//! goes through the usual bookkeeping. The checks and the direct IKE SA leave from the
//! NAT-T socket because `ike` addresses them from port 4500.

use std::time::Instant;

use ike::config::Mediation;
use ike::endpoint::{DownReason, Event, IkeSaId, IkeSaInfo};

use super::sas::{ChildKey, Sas};
use crate::config::StartAction;

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
        self.med.paths.retain(|_, (ike, _, _)| *ike != id);
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

    /// `ike`'s mediation events: the chosen path, or why there is none.
    pub(crate) fn mediation_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::MediatedPath {
                conn,
                ike,
                local,
                remote,
            } => {
                tracing::info!(
                    "{conn}: connectivity checks chose {local} - {remote}, IKE SA #{} follows",
                    ike.0
                );
                self.med.paths.insert(conn, (ike, local, remote));
            }
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
