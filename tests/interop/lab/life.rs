//! The lifecycle events of a [`Lab`]: rekeys, deletes, DPD, and the fragmentation check,
//! each verified on both sides and, where the tunnel should survive, with traffic after.

use std::time::{Duration, Instant};

use engine::control::Request;
use engine::status::Status;
use esprit::testbed::esprit::CONN;

use super::super::charon::IkeSa;
use super::super::traffic::ping_from;
use super::{check_spis, Lab, Who, EVENT, POLL};

impl Lab<'_> {
    /// Polls esprit's status and charon's SAs until `done` says yes (or `EVENT` passes).
    fn wait_both(
        &self,
        what: &str,
        mut done: impl FnMut(&Status, &[IkeSa]) -> bool,
    ) -> Result<(Status, Vec<IkeSa>, Duration), String> {
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < EVENT {
            let status = self.esprit().status().map_err(|e| e.to_string())?;
            let sas = self.charon().sas()?;
            if done(&status, &sas) {
                return Ok((status, sas, t0.elapsed()));
            }
            last = format!("esprit:\n{status}charon: {sas:?}");
            std::thread::sleep(POLL);
        }
        Err(format!(
            "{what}: not seen within {EVENT:?}; last state {last}"
        ))
    }

    /// A child rekey started by `who`: new SPIs on both sides, the old SA gone, the
    /// exchange in charon's log (with KE when the ESP proposal has a DH group), traffic
    /// over the new SA.
    pub(super) fn child_rekey(
        &mut self,
        who: Who,
        e_name: &str,
        c_name: &str,
    ) -> Result<(), String> {
        let old = self
            .esprit()
            .status()
            .map_err(|e| e.to_string())?
            .ike_sas
            .iter()
            .flat_map(|s| s.children.clone())
            .find(|c| c.name == e_name)
            .ok_or("esprit lost the child before the rekey")?;
        // charon's rekey is asked for now; esprit's comes from its timer since install.
        let since = match who {
            Who::Charon => {
                self.charon().rekey_child(c_name)?;
                Instant::now()
            }
            Who::Esprit => self.up_at,
        };
        self.wait_both("the new child SA on both sides", |st, sas| {
            st.ike_sas.iter().flat_map(|s| &s.children).any(|e| {
                e.name == e_name
                    && e.state == "INSTALLED"
                    && e.spi_in != old.spi_in
                    && sas.iter().flat_map(|s| &s.children).any(|c| {
                        c.state == "INSTALLED" && c.spi_in == e.spi_out && c.spi_out == e.spi_in
                    })
            })
        })?;
        let new_at = since.elapsed();
        // Which side listed the old SA last: charon keeps a rekeyed inbound SA for its
        // delete_rekeyed_delay (5 s) before it disappears from --list-sas.
        let mut lingered = (false, false);
        let (status, sas, _) = self.wait_both("the old child SA to go", |st, sas| {
            let e: Vec<_> = st.ike_sas.iter().flat_map(|s| &s.children).collect();
            let c: Vec<_> = sas.iter().flat_map(|s| &s.children).collect();
            let settled = e.len() == 1
                && c.len() == 1
                && e[0].state == "INSTALLED"
                && c[0].state == "INSTALLED"
                && e[0].spi_in != old.spi_in
                && c[0].spi_in == e[0].spi_out
                && c[0].spi_out == e[0].spi_in;
            if !settled {
                lingered = (e.len() > 1, c.len() > 1);
            }
            settled
        })?;
        let gone_at = since.elapsed();
        let lingered = match lingered {
            (false, false) => "",
            (true, false) => " (listed last by esprit)",
            (false, true) => " (listed last by charon)",
            (true, true) => " (listed last by both)",
        };
        let new = &status.ike_sas[0].children[0];
        let exchange = exchange(&self.charon().log(), who, "N(REKEY_SA)").ok_or_else(|| {
            format!("charon's log has no CREATE_CHILD_SA rekey request started by {who:?}")
        })?;
        let pfs = self.case.pfs();
        if exchange.contains(" KE ") != pfs {
            return Err(format!(
                "rekey exchange {exchange}: KE payload expected: {pfs} (esp_proposals {})",
                self.case.esp
            ));
        }
        let c_prop = &sas[0].children[0].proposal;
        // charon lists the PFS group last: MODP_*, ECP_*, CURVE_* (not the integrity
        // algorithm a CBC suite has after its '/').
        let has_group = ["MODP_", "ECP_", "CURVE_"]
            .iter()
            .any(|g| c_prop.contains(g));
        if has_group != pfs {
            return Err(format!(
                "rekeyed child negotiated {c_prop}, PFS expected: {pfs}"
            ));
        }
        self.notes.push(format!(
            "child rekeyed by {} (SPIs {}/{} → {}/{}), {exchange}, new SA {c_prop} on both sides {:.1} s after {}, old SA gone at {:.1} s{lingered}",
            name(who),
            old.spi_in,
            old.spi_out,
            new.spi_in,
            new.spi_out,
            new_at.as_secs_f64(),
            match who {
                Who::Esprit => "install (rekey_time 6s)",
                Who::Charon => "`swanctl --rekey`",
            },
            gone_at.as_secs_f64()
        ));
        self.traffic("after the child rekey: ")?;
        let after = self.esprit().status().map_err(|e| e.to_string())?;
        // With rekey_time 6s, esprit rekeys again about 6 s after the first rekey, which
        // a slow (debug, loaded) run can reach while the traffic is still flowing: then
        // the new SA's successor carries the rest. What must hold is that the old SA
        // carried none of it, so any SA since the rekey counts.
        let find = |st: &engine::status::Status| {
            st.ike_sas
                .iter()
                .flat_map(|s| &s.children)
                .find(|c| c.spi_in != old.spi_in && c.packets_in > 0 && c.packets_out > 0)
                .cloned()
        };
        let mut carried = find(&after);
        let rekeyed_again = !after
            .ike_sas
            .iter()
            .flat_map(|s| &s.children)
            .any(|c| c.spi_in == new.spi_in);
        if carried.is_none() && rekeyed_again {
            // esprit rekeyed again between the end of the traffic and this look, and the
            // new SA (with its counters) is gone already: send again over its successor.
            self.traffic("after the second child rekey: ")?;
            let again = self.esprit().status().map_err(|e| e.to_string())?;
            carried = find(&again);
        }
        let Some(carried) = carried else {
            return Err(format!(
                "the new child SA {} (and any successor) carried nothing",
                new.spi_in
            ));
        };
        self.notes.push(if carried.spi_in == new.spi_in {
            "traffic OK over the new SA".to_string()
        } else {
            format!(
                "traffic OK over the new SA's successor {} (rekeyed again meanwhile)",
                carried.spi_in
            )
        });
        Ok(())
    }

    /// An IKE rekey started by `who`: new IKE SPIs on both sides, one IKE SA each, the
    /// children moved over unchanged, traffic after.
    pub(super) fn ike_rekey(&mut self, who: Who) -> Result<(), String> {
        let before = self.esprit().status().map_err(|e| e.to_string())?;
        let old = before.ike_sas.first().ok_or("no IKE SA")?.clone();
        let since = match who {
            Who::Charon => {
                self.charon().rekey_ike()?;
                Instant::now()
            }
            Who::Esprit => self.up_at,
        };
        self.wait_both("the new IKE SA on both sides", |st, sas| {
            st.ike_sas.iter().any(|e| {
                e.state == "ESTABLISHED"
                    && e.spi_i != old.spi_i
                    && sas.iter().any(|c| {
                        c.state == "ESTABLISHED" && c.spi_i == e.spi_i && c.spi_r == e.spi_r
                    })
            })
        })?;
        let new_at = since.elapsed();
        let (status, sas, _) = self.wait_both("the old IKE SA to go", |st, sas| {
            st.ike_sas.len() == 1
                && sas.len() == 1
                && st.ike_sas[0].state == "ESTABLISHED"
                && sas[0].state == "ESTABLISHED"
                && st.ike_sas[0].spi_i != old.spi_i
                && sas[0].spi_i == st.ike_sas[0].spi_i
                && sas[0].spi_r == st.ike_sas[0].spi_r
                && st.ike_sas[0].children.len() == old.children.len()
        })?;
        let gone_at = since.elapsed();
        check_spis(&status, &sas)?;
        let moved = old.children.iter().all(|c| {
            status.ike_sas[0]
                .children
                .iter()
                .any(|n| n.spi_in == c.spi_in)
        });
        if !moved {
            return Err("the child SAs changed with the IKE rekey".into());
        }
        let exchange = exchange(&self.charon().log(), who, "SA No KE ]")
            .ok_or_else(|| format!("charon's log has no IKE rekey request started by {who:?}"))?;
        let new = &status.ike_sas[0];
        self.notes.push(format!(
            "IKE SA rekeyed by {} ({}_i {}_r → {}_i {}_r), {exchange}, new SA on both sides {:.1} s after {}, old SA gone at {:.1} s, children kept",
            name(who),
            old.spi_i,
            old.spi_r,
            new.spi_i,
            new.spi_r,
            new_at.as_secs_f64(),
            match who {
                Who::Esprit => "establishment (rekey_time 6s)",
                Who::Charon => "`swanctl --rekey`",
            },
            gone_at.as_secs_f64()
        ));
        self.traffic("after the IKE rekey: ")?;
        self.notes.push("traffic OK after".to_string());
        Ok(())
    }

    /// `who` deletes the IKE SA: both sides drop everything, traffic stops.
    pub(super) fn delete(&mut self, who: Who) -> Result<(), String> {
        match who {
            Who::Esprit => {
                self.esprit()
                    .command(&Request::Terminate { conn: CONN.into() })
                    .map_err(|e| format!("esprit terminate: {e}"))?;
            }
            Who::Charon => self.charon().terminate()?,
        }
        let (_, _, took) = self.wait_both("the delete", |st, sas| {
            st.ike_sas.is_empty() && sas.is_empty()
        })?;
        let (src, dst) = self.pairs[0].probe;
        if ping_from(self.topo.a(), src, dst, 1, Duration::from_secs(2)) {
            return Err("ping still answered after the delete".into());
        }
        let seen = match who {
            Who::Esprit => "received DELETE for IKE_SA",
            Who::Charon => "sending DELETE for IKE_SA",
        };
        let logged = self.charon().log().contains(seen);
        self.notes.push(format!(
            "IKE SA deleted by {}: both sides empty after {} ms{}, then ping fails",
            name(who),
            took.as_millis(),
            if logged {
                format!(" (charon: \"{seen}\")")
            } else {
                String::new()
            }
        ));
        Ok(())
    }

    /// `vanished` is killed (no DELETE); the other side's DPD must close the IKE SA.
    pub(super) fn dpd(&mut self, vanished: Who) -> Result<(), String> {
        let t0 = Instant::now();
        let deadline = t0 + EVENT;
        match vanished {
            Who::Charon => {
                self.charon.as_mut().expect("charon runs").kill()?;
                loop {
                    let st = self.esprit().status().map_err(|e| e.to_string())?;
                    if st.ike_sas.is_empty() {
                        let why = st
                            .connections
                            .iter()
                            .find_map(|c| c.last_error.clone())
                            .unwrap_or_else(|| "no reason given".into());
                        self.notes.push(format!(
                            "charon killed: esprit's DPD (2 s, 1 s retransmit × 2) closed the IKE SA after {:.1} s: \"{why}\"",
                            t0.elapsed().as_secs_f64()
                        ));
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "esprit still has the IKE SA {EVENT:?} after charon was killed:\n{st}"
                        ));
                    }
                    std::thread::sleep(POLL);
                }
            }
            Who::Esprit => {
                let d = self.esprit.as_mut().expect("esprit runs");
                d.proc
                    .signal(libc::SIGKILL)
                    .and_then(|()| d.proc.wait_exit(Duration::from_secs(5)).map(drop))
                    .map_err(|e| format!("killing esprit: {e}"))?;
                loop {
                    let sas = self.charon().sas()?;
                    if sas.is_empty() {
                        let log = self.charon().log();
                        let why = log
                            .lines()
                            .find(|l| l.contains("giving up after"))
                            .map(|l| l.split("> ").last().unwrap_or(l).trim().to_string())
                            .unwrap_or_else(|| "no retransmit line in charon's log".into());
                        self.notes.push(format!(
                            "esprit killed: charon's DPD (2 s) closed the IKE SA after {:.1} s: \"{why}\"",
                            t0.elapsed().as_secs_f64()
                        ));
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "charon still has the IKE SA {EVENT:?} after esprit was killed: {sas:?}"
                        ));
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    /// IKE_AUTH crossed as RFC 7383 fragments both ways: charon split its own and
    /// reassembled esprit's.
    pub(super) fn check_fragmented(&mut self) -> Result<(), String> {
        let log = self.charon().log();
        let split = tail_from(&log, "splitting IKE message")
            .ok_or("charon did not fragment its IKE_AUTH (no \"splitting IKE message\")")?;
        let joined = tail_from(&log, "reassembled fragmented IKE message").ok_or(
            "charon did not reassemble a fragmented message from esprit \
             (no \"reassembled fragmented IKE message\")",
        )?;
        // The reassembled message from esprit carries its chain: CERT CERT.
        let theirs = log
            .lines()
            .filter_map(|l| l.split_once("parsed IKE_AUTH ").map(|(_, r)| r))
            .find(|r| !r.contains("EF("))
            .and_then(|r| r.split_once('[').map(|(_, p)| format!("[{p}")))
            .ok_or("charon's log has no reassembled IKE_AUTH from esprit")?;
        if !theirs.contains("CERT CERT") {
            return Err(format!(
                "esprit's IKE_AUTH {theirs} lacks its intermediate certificate"
            ));
        }
        self.notes.push(format!(
            "charon: \"{split}\"; \"{joined}\"; esprit's IKE_AUTH {theirs}"
        ));
        Ok(())
    }
}

fn name(who: Who) -> &'static str {
    match who {
        Who::Esprit => "esprit",
        Who::Charon => "charon",
    }
}

/// The payload list of the first CREATE_CHILD_SA request containing `marker` that `who`
/// started, as charon logged it ("parsed" when it came from esprit).
fn exchange(log: &str, who: Who, marker: &str) -> Option<String> {
    let verb = match who {
        Who::Esprit => "parsed CREATE_CHILD_SA request",
        Who::Charon => "generating CREATE_CHILD_SA request",
    };
    log.lines()
        .filter_map(|l| l.split_once(verb).map(|(_, rest)| rest))
        .find(|rest| rest.contains(marker))
        .and_then(|rest| {
            rest.split_once('[')
                .map(|(_, p)| format!("CREATE_CHILD_SA [{p}"))
        })
}

/// The first log line containing `needle`, from the needle on.
fn tail_from(log: &str, needle: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.find(needle).map(|i| l[i..].trim().to_string()))
}
