//! One interop case against pluto: esprit in host a (192.0.2.1), pluto in host b
//! (192.0.2.2) of a direct topology, one connection with one child (10.96.1.0/24 <->
//! 10.96.2.0/24), one side initiating.
//!
//! IKE level only: this kernel has no XFRM ESP, so pluto's kernel refuses every child SA
//! it negotiates. A case passes when
//! - the IKE SA is established on both sides: esprit's status shows it ESTABLISHED, pluto's
//!   log says "initiator/responder established IKE SA; authenticated peer ...", and (when
//!   esprit initiated, so that pluto keeps it) `whack --status` lists it;
//! - the child was negotiated on the wire: pluto tried to install it (`Add SA esp.SPI`,
//!   refused by its kernel); when pluto initiated, SPI is the inbound SPI of the child
//!   esprit installed; when esprit initiated, pluto chose an ESP proposal and refused the
//!   child, and esprit recorded the refusal and kept the IKE SA;
//! - esprit is still running and answering.

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::control::Request;
use engine::status::Status;
use esprit::testbed::esprit::{Auth as EspritAuth, Child, Daemon, Side, CONN};
use esprit::testbed::{wait_ok, KeyKind, Pki, Topology};

use super::pluto::{self, parse_log, Auth as PlutoAuth, Conn, LogView, Pluto};

/// How long a case may take to establish.
pub const SETUP: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const PSK: &str = "esprit-libreswan-psk-0123456789";
/// esprit's child selectors.
const ESPRIT_NET: &str = "10.96.1.0/24";
/// pluto's child selectors.
const PLUTO_NET: &str = "10.96.2.0/24";

/// The esprit binary under test.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

/// How both sides authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// A pre-shared key, FQDN identities.
    Psk,
    /// ECDSA P-256 certificates from one CA, DN identities.
    Ecdsa,
    /// RSA-2048 certificates from one CA, DN identities.
    Rsa,
}

/// Who initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// esprit (`Request::Initiate` over its control socket).
    Esprit,
    /// pluto (`whack --initiate`).
    Pluto,
}

/// The IKE key exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dh {
    /// Curve25519 (group 31).
    X25519,
    /// NIST P-256 (group 19).
    Ecp256,
}

/// One case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Authentication.
    pub auth: AuthKind,
    /// Who initiates.
    pub initiator: Initiator,
    /// The IKE key exchange.
    pub dh: Dh,
}

impl Case {
    /// Every case: each authentication, each side initiating, each group.
    pub fn all() -> Vec<Case> {
        let mut v = Vec::new();
        for auth in [AuthKind::Psk, AuthKind::Ecdsa, AuthKind::Rsa] {
            for initiator in [Initiator::Esprit, Initiator::Pluto] {
                for dh in [Dh::X25519, Dh::Ecp256] {
                    v.push(Case {
                        auth,
                        initiator,
                        dh,
                    });
                }
            }
        }
        v
    }

    /// "psk-x25519" style name.
    pub fn name(&self) -> String {
        let auth = match self.auth {
            AuthKind::Psk => "psk",
            AuthKind::Ecdsa => "ecdsa-p256",
            AuthKind::Rsa => "rsa-2048",
        };
        let dh = match self.dh {
            Dh::X25519 => "x25519",
            Dh::Ecp256 => "ecp256",
        };
        format!("{auth}-{dh}")
    }

    /// "esprit → pluto" or "pluto → esprit".
    pub fn direction(&self) -> &'static str {
        match self.initiator {
            Initiator::Esprit => "esprit → pluto",
            Initiator::Pluto => "pluto → esprit",
        }
    }

    fn esprit_proposal(&self) -> &'static str {
        match self.dh {
            Dh::X25519 => "aes128gcm16-prfsha256-x25519",
            Dh::Ecp256 => "aes128gcm16-prfsha256-ecp256",
        }
    }

    fn pluto_ike(&self) -> &'static str {
        match self.dh {
            Dh::X25519 => "aes_gcm128-sha2_256-dh31",
            Dh::Ecp256 => "aes_gcm128-sha2_256-dh19",
        }
    }
}

/// Why a case failed: a short reason (for the table) and the evidence.
#[derive(Debug, Clone)]
pub struct Failure {
    /// One line: what each side said.
    pub reason: String,
    /// Logs and status.
    pub details: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.reason, self.details)
    }
}

/// The two daemons of a running case. Dropped in field order: esprit first (while pluto
/// can still answer its DELETEs), then pluto, then the topology.
pub struct Lab {
    /// esprit in host a.
    pub esprit: Daemon,
    /// pluto in host b.
    pub pluto: Pluto,
    /// The namespaces and the scratch folder.
    pub topo: Topology,
}

impl Lab {
    /// Sets up a case: topology, credentials, esprit and pluto started, nothing initiated.
    pub fn start(case: &Case) -> Result<Lab, String> {
        Lab::start_with(case, &[])
    }

    /// [`Lab::start`] with more lines for pluto's connection (`key=value`).
    pub fn start_with(case: &Case, pluto_extra: &[&str]) -> Result<Lab, String> {
        let root = pluto::root()?;
        let topo = Topology::direct(false).map_err(|e| format!("topology: {e}"))?;
        let dir = topo.dir();
        let (e_id, p_id, e_auth, p_auth) = match case.auth {
            AuthKind::Psk => (
                "esprit.example".to_string(),
                "pluto.example".to_string(),
                EspritAuth::Psk(PSK.into()),
                PlutoAuth::Psk(PSK.into()),
            ),
            AuthKind::Ecdsa | AuthKind::Rsa => {
                let kind = if case.auth == AuthKind::Ecdsa {
                    KeyKind::EcdsaP256
                } else {
                    KeyKind::Rsa2048
                };
                let io = |e: std::io::Error| format!("certificates: {e}");
                let pki = Pki::new(kind).map_err(io)?;
                let mine = pki.issue("esprit", "esprit.example").map_err(io)?;
                let theirs = pki.issue("pluto", "pluto.example").map_err(io)?;
                let (cert, key) = mine.write(dir, "esprit").map_err(io)?;
                let ca = pki.write_ca(dir).map_err(io)?;
                (
                    mine.dn.clone(),
                    theirs.dn.clone(),
                    EspritAuth::Cert { cert, key, ca },
                    PlutoAuth::Cert {
                        cert_pem: theirs.cert_pem,
                        key_pem: theirs.key_pem,
                        ca_pem: pki.ca_pem(),
                        ecdsa: case.auth == AuthKind::Ecdsa,
                    },
                )
            }
        };
        let mut side = Side::new(topo.a_addr(), Some(topo.b_addr()), &e_id, e_auth);
        side.remote_id = Some(p_id.clone());
        side.proposals = case.esprit_proposal().into();
        side.children = vec![Child::new("net", &[ESPRIT_NET], &[PLUTO_NET])];
        let edir = dir.join("esprit");
        fs::create_dir_all(&edir).map_err(|e| e.to_string())?;
        let esprit = Daemon::start(exe(), topo.a(), &side, &edir)
            .map_err(|e| format!("esprit does not start: {e}"))?;
        let conn = Conn {
            local_addr: topo.b_addr(),
            remote_addr: topo.a_addr(),
            local_id: p_id,
            remote_id: e_id,
            auth: p_auth,
            ike: case.pluto_ike().into(),
            esp: "aes_gcm128".into(),
            local_subnet: PLUTO_NET.into(),
            remote_subnet: ESPRIT_NET.into(),
            extra: pluto_extra.iter().map(|s| s.to_string()).collect(),
        };
        let pluto = Pluto::start(&root, topo.b(), &dir.join("pluto"), &conn)?;
        Ok(Lab {
            esprit,
            pluto,
            topo,
        })
    }

    /// esprit's status, or a status-less error.
    pub fn status(&self) -> Result<Status, String> {
        self.esprit
            .status()
            .map_err(|e| format!("esprit status: {e}"))
    }

    /// Both sides' evidence, for an error message.
    pub fn details(&self) -> String {
        let status = self.status().map_or_else(|e| e, |s| s.to_string());
        let log = self.esprit.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "--- scratch folder {} (ESPRIT_TESTBED_KEEP=1 keeps it) ---\n--- esprit status ---\n{status}\n--- esprit log (tail) ---\n{tail}\n{}",
            self.topo.dir().display(),
            self.pluto.dump()
        )
    }

    /// A one-line account of what each side reported as a failure.
    pub fn reason(&self, waited_for: &str) -> String {
        let view = parse_log(&self.pluto.log());
        let esprit = self
            .status()
            .ok()
            .and_then(|s| s.connections.iter().find_map(|c| c.last_error.clone()))
            .unwrap_or_else(|| "no error".into());
        let mut pluto: Vec<String> = Vec::new();
        for f in view.failures {
            let f = strip_serial(&f);
            if !pluto.contains(&f) {
                pluto.push(f);
            }
        }
        let pluto = if pluto.is_empty() {
            "no error".into()
        } else {
            pluto.join("; ")
        };
        format!("{waited_for}: esprit: {esprit}; pluto: {pluto}")
    }
}

/// `"peer" #3: text` -> `text`.
fn strip_serial(line: &str) -> String {
    line.split_once(": ").map_or(line, |(_, r)| r).to_string()
}

/// Runs `case`; on success the notes for the table.
pub fn run(case: &Case) -> Result<String, Failure> {
    let mut lab = Lab::start(case).map_err(|e| Failure {
        reason: "setup failed".into(),
        details: e,
    })?;
    let started = Instant::now();
    let mut result = match case.initiator {
        Initiator::Esprit => esprit_initiates(&lab),
        Initiator::Pluto => pluto_initiates(&lab),
    };
    if result.is_ok() && !lab.esprit.proc.is_running() {
        result = Err("esprit exited".into());
    }
    if result.is_ok() && !lab.pluto.is_running() {
        result = Err("pluto exited".into());
    }
    match result {
        Ok(notes) => Ok(format!(
            "{notes}; established in {} ms",
            started.elapsed().as_millis()
        )),
        Err(what) => Err(Failure {
            reason: lab.reason(&what),
            details: lab.details(),
        }),
    }
}

/// Runs `case` and panics with the evidence unless it passes.
pub fn check(case: Case) {
    match run(&case) {
        Ok(notes) => eprintln!("{} {}: pass: {notes}", case.name(), case.direction()),
        Err(f) => panic!("{} {}: {f}", case.name(), case.direction()),
    }
}

fn established_ike(s: &Status) -> Vec<&engine::status::IkeSaStatus> {
    s.ike_sas
        .iter()
        .filter(|sa| sa.conn == CONN && sa.state == "ESTABLISHED")
        .collect()
}

/// esprit initiates; pluto establishes the IKE SA, refuses the child (its kernel cannot
/// install it) and keeps the IKE SA.
fn esprit_initiates(lab: &Lab) -> Result<String, String> {
    lab.esprit
        .command(&Request::Initiate {
            conn: CONN.into(),
            child: None,
        })
        .map_err(|e| format!("esprit initiate: {e}"))?;
    let what = "the IKE SA on both sides and pluto's answer to the child";
    let (status, view) = wait_ok(what, SETUP, POLL, || {
        let s = lab.status()?;
        let view = parse_log(&lab.pluto.log());
        let answered = s.connections.iter().any(|c| c.last_error.is_some())
            || established_ike(&s).iter().any(|sa| !sa.children.is_empty());
        if !established_ike(&s).is_empty() && !view.established.is_empty() && answered {
            Ok((s, view))
        } else {
            Err("not yet".to_string())
        }
    })
    .map_err(|_| format!("timed out after {SETUP:?} waiting for {what}"))?;
    let responder = view
        .established
        .iter()
        .find(|l| l.starts_with("responder established IKE SA"))
        .ok_or_else(|| format!("pluto did not establish as responder: {view:?}"))?;
    let states = lab.pluto.states()?;
    if !states
        .iter()
        .any(|s| s.contains("STATE_V2_ESTABLISHED_IKE_SA"))
    {
        return Err(format!(
            "whack --status lists no established IKE SA: {states:?}"
        ));
    }
    let esp = view
        .esp_chosen
        .clone()
        .ok_or("pluto chose no ESP proposal for the child")?;
    let kernel = view
        .add_sa
        .first()
        .map(|(spi, answer)| format!("{spi:08x}: {answer}"))
        .ok_or("pluto did not try to install the child")?;
    let sa = established_ike(&status)[0];
    let child = match status.connections.iter().find_map(|c| c.last_error.clone()) {
        Some(e) => format!("esprit kept the IKE SA and recorded the refusal: \"{e}\""),
        None => "esprit installed the child".into(),
    };
    Ok(format!(
        "IKE {} ({}); pluto: {}; child: pluto chose ESP {esp}, its kernel refused it ({kernel}); {child}",
        sa.proposal.as_deref().unwrap_or("?"),
        view.ike_algs.as_deref().unwrap_or("?"),
        auth_part(responder),
    ))
}

/// pluto initiates; esprit installs the child, pluto's kernel refuses it and pluto drops
/// its IKE SA (without a DELETE) and revives the connection, so pluto is stopped from
/// re-initiating once the evidence is in.
fn pluto_initiates(lab: &Lab) -> Result<String, String> {
    lab.pluto.initiate()?;
    let what = "the IKE SA on both sides with the same child SPI";
    let found = wait_ok(what, SETUP, POLL, || {
        let s = lab.status()?;
        let view: LogView = parse_log(&lab.pluto.log());
        let initiator = view
            .established
            .iter()
            .find(|l| l.starts_with("initiator established IKE SA"))
            .cloned();
        for sa in established_ike(&s) {
            for c in &sa.children {
                let spi = u32::from_str_radix(&c.spi_in, 16).unwrap_or(0);
                if let (Some(line), Some((_, answer))) =
                    (&initiator, view.add_sa.iter().find(|(p, _)| *p == spi))
                {
                    return Ok(Ok((
                        sa.proposal.clone().unwrap_or_default(),
                        c.spi_in.clone(),
                        line.clone(),
                        answer.clone(),
                        view.ike_algs.clone().unwrap_or_default(),
                    )));
                }
            }
        }
        // A refusal both sides agree on is final: pluto would only retry it.
        if s.connections.iter().any(|c| c.last_error.is_some())
            && view.failures.iter().any(|f| f.contains("rejected by peer"))
        {
            return Ok(Err(format!(
                "pluto's IKE_AUTH was refused, waiting for {what}"
            )));
        }
        Err("not yet".to_string())
    })
    .map_err(|_| format!("timed out after {SETUP:?} waiting for {what}"))
    .and_then(|r| r);
    let _ = lab.pluto.terminate();
    let (proposal, spi, line, answer, algs) = found?;
    Ok(format!(
        "IKE {proposal} ({algs}); pluto: {}; child: esprit installed SPI {spi}, pluto's kernel refused it ({answer})",
        auth_part(&line)
    ))
}

/// "initiator established IKE SA; authenticated peer X" -> "authenticated peer X".
fn auth_part(line: &str) -> &str {
    line.split_once("; ").map_or(line, |(_, r)| r)
}
