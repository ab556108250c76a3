//! One run of a matrix case: a topology, esprit on one end and charon on the other, the
//! tunnel brought up by the initiator, traffic through every child SA, then the case's
//! lifecycle event checked on both sides.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::control::Request;
use engine::status::Status;
use esprit::testbed::esprit::{Auth as EspritAuth, Child, Daemon, Side, CONN};
use esprit::testbed::{Inner, Netns, Topology};

use super::charon::{self, Charon, IkeSa};
use super::pki::{Certs, Set};
use super::traffic::{ping_from, tcp_from};

mod life;

/// Who initiates the IKE SA; the initiator always sits in the topology's `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// esprit in `a` initiates, charon in `b` responds.
    EspritInitiates,
    /// charon in `a` initiates, esprit in `b` responds.
    CharonInitiates,
}

impl Dir {
    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Dir::EspritInitiates => "esprit → charon",
            Dir::CharonInitiates => "charon → esprit",
        }
    }
}

/// One of the two peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Our daemon.
    Esprit,
    /// strongSwan's.
    Charon,
}

/// How both sides authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Pre-shared key, FQDN identities.
    Psk,
    /// ECDSA P-256 certificates, DN identities.
    Ecdsa,
    /// RSA 2048 certificates, DN identities.
    Rsa,
    /// RSA 4096 certificates under an RSA 4096 intermediate: IKE_AUTH must be fragmented.
    RsaChain,
    /// ECDSA P-384 certificates, DN identities.
    EcdsaP384,
    /// ECDSA P-521 certificates, DN identities.
    EcdsaP521,
}

/// What joins the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// One veth.
    Direct,
    /// The initiator behind a masquerading router.
    Nat,
    /// Through nginx relaying UDP 500 and 4500 (the initiator dials the proxy).
    Proxy,
}

/// What happens after the tunnel is up and has carried traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Nothing more.
    Plain,
    /// A child SA rekey started by this side.
    ChildRekey(Who),
    /// An IKE SA rekey started by this side.
    IkeRekey(Who),
    /// This side deletes the IKE SA.
    Delete(Who),
    /// This side vanishes (SIGKILL); the other must notice by DPD.
    Dpd(Who),
    /// Three child SAs under one IKE SA, seed 000's p2p, n2p and p2n.
    ThreeChildren,
}

/// A row of the matrix; each runs in both [`Dir`]s.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Name in the table.
    pub name: &'static str,
    /// Authentication.
    pub auth: AuthKind,
    /// IKE proposals of both sides.
    pub ike: &'static str,
    /// ESP proposals of both sides.
    pub esp: &'static str,
    /// Path.
    pub path: PathKind,
    /// Lifecycle event.
    pub life: Life,
    /// One line for the legend.
    pub what: &'static str,
}

impl Case {
    /// Whether the ESP proposal carries a DH group (PFS on CREATE_CHILD_SA).
    fn pfs(&self) -> bool {
        self.esp
            .split('-')
            .any(|t| t.starts_with("ecp") || t.starts_with("x25519") || t.starts_with("modp"))
    }
}

const PSK: &str = "esprit-interop-matrix-psk-0123456789";
/// Bytes of each TCP transfer.
pub const TRANSFER: u64 = 4 << 20;
/// Bound on bringing the tunnel up.
const SETUP: Duration = Duration::from_secs(30);
/// Bound on a rekey, a delete or DPD to show on both sides.
const EVENT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(50);
/// Interval of the short timers: a rekey this long after the SA came up, DPD.
const SHORT: &str = "6s";

/// One child on both sides, and which inner addresses exercise it.
struct ChildPair {
    /// The name and selectors on side a, then on side b.
    a: (String, Vec<String>, Vec<String>),
    b: (String, Vec<String>, Vec<String>),
    /// A source on a and a destination on b that only this child's selectors cover.
    probe: (Ipv4Addr, Ipv4Addr),
}

fn net24(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
}

fn host32(ip: Ipv4Addr) -> String {
    format!("{ip}/32")
}

/// The children of a case. Three children follow seed 000: "pods" are the 10.96.x.0/24
/// inner subnets, a "node" is the host's other inner address (10.97.x.1).
fn children(life: Life, a: Inner, b: Inner) -> Vec<ChildPair> {
    let (ap, an, bp, bn) = (a.v4[0], a.v4[1], b.v4[0], b.v4[1]);
    // (name on a, name on b, a's selector, b's selector, a probe source on a, its
    // destination on b)
    let shape = if life == Life::ThreeChildren {
        vec![
            // pods <-> pods
            ("p2p", "p2p", net24(ap), net24(bp), ap, bp),
            // a's node -> b's pods; on b that is pods -> node (p2n), as in the seed
            ("n2p", "p2n", host32(an), net24(bp), an, bp),
            // a's pods -> b's node
            ("p2n", "n2p", net24(ap), host32(bn), ap, bn),
        ]
    } else {
        vec![("net", "net", net24(ap), net24(bp), ap, bp)]
    };
    shape
        .into_iter()
        .map(|(on_a, on_b, ts_a, ts_b, src, dst)| ChildPair {
            a: (on_a.into(), vec![ts_a.clone()], vec![ts_b.clone()]),
            b: (on_b.into(), vec![ts_b], vec![ts_a]),
            probe: (src, dst),
        })
        .collect()
}

/// A run in progress. Fields drop in order: the daemons before the namespaces.
pub struct Lab<'c> {
    case: &'c Case,
    dir: Dir,
    charon: Option<Charon>,
    esprit: Option<Daemon>,
    pairs: Vec<ChildPair>,
    port: u16,
    /// When both sides had the tunnel up.
    up_at: Instant,
    /// What the run saw, for the table.
    pub notes: Vec<String>,
    topo: Topology,
}

impl<'c> Lab<'c> {
    /// Builds the topology and starts both daemons (the responder first).
    pub fn new(case: &'c Case, dir: Dir, certs: &Certs, exe: &Path) -> Result<Lab<'c>, String> {
        let e = |e: std::io::Error| e.to_string();
        let topo = match case.path {
            PathKind::Direct => Topology::direct(false),
            PathKind::Nat => Topology::nat(),
            PathKind::Proxy => Topology::proxy(),
        }
        .map_err(e)?;
        let pairs = children(case.life, topo.a_inner(), topo.b_inner());
        let mut lab = Lab {
            case,
            dir,
            charon: None,
            esprit: None,
            pairs,
            port: 5000,
            up_at: Instant::now(),
            notes: Vec::new(),
            topo,
        };
        let esprit_in_a = dir == Dir::EspritInitiates;
        let (a_local, a_remote, b_local) = (
            lab.topo.a_addr(),
            lab.topo.b_addr_for_a(),
            lab.topo.b_addr(),
        );
        let (e_local, e_remote, c_local, c_remote) = if esprit_in_a {
            (a_local, Some(a_remote), b_local, None)
        } else {
            (b_local, None, a_local, Some(a_remote))
        };
        let set: Option<&Set> = match case.auth {
            AuthKind::Psk => None,
            AuthKind::Ecdsa => Some(&certs.ecdsa),
            AuthKind::Rsa => Some(&certs.rsa),
            AuthKind::RsaChain => Some(&certs.rsa_chain),
            AuthKind::EcdsaP384 => Some(&certs.ecdsa384),
            AuthKind::EcdsaP521 => Some(&certs.ecdsa521),
        };
        let (e_id, c_id) = match set {
            None => ("edge1.example".to_string(), "edge2.example".to_string()),
            Some(s) => (s.esprit.dn.clone(), s.charon.dn.clone()),
        };
        // charon's side.
        let c_children = lab
            .pairs
            .iter()
            .map(|p| {
                let (name, l, r) = if esprit_in_a { &p.b } else { &p.a };
                charon::Child {
                    name: name.clone(),
                    local_ts: l.clone(),
                    remote_ts: r.clone(),
                    esp_proposals: case.esp.to_string(),
                }
            })
            .collect();
        let conn = charon::Conn {
            local_addr: c_local,
            remote_addr: c_remote,
            proposals: case.ike.to_string(),
            local_id: c_id.clone(),
            remote_id: e_id.clone(),
            auth: match set {
                None => charon::Auth::Psk(PSK.into()),
                Some(s) => charon::Auth::Cert {
                    cert: s.charon.cert.clone(),
                    key: s.charon.key.clone(),
                    root: s.root.clone(),
                    intermediates: s.intermediates.clone(),
                },
            },
            dpd_delay: (case.life == Life::Dpd(Who::Esprit)).then(|| "2s".to_string()),
            retransmit_tries: if case.life == Life::Dpd(Who::Esprit) {
                2
            } else {
                3
            },
            children: c_children,
        };
        // esprit's side: it sends its chain and trusts the root only.
        let auth = match set {
            None => EspritAuth::Psk(PSK.into()),
            Some(s) => EspritAuth::Cert {
                cert: s.esprit.chain.clone(),
                key: s.esprit.key.clone(),
                ca: s.root.clone(),
            },
        };
        let mut side = Side::new(e_local, e_remote, &e_id, auth);
        side.remote_id = Some(c_id);
        side.proposals = case.ike.to_string();
        if case.life == Life::IkeRekey(Who::Esprit) {
            side.rekey_time = Some(SHORT.into());
        }
        if case.life == Life::Dpd(Who::Charon) {
            side.dpd_delay = Some("2s".into());
            side.retransmit = ("1s".into(), 2);
        }
        for p in &lab.pairs {
            let (name, l, r) = if esprit_in_a { &p.a } else { &p.b };
            let ls: Vec<&str> = l.iter().map(String::as_str).collect();
            let rs: Vec<&str> = r.iter().map(String::as_str).collect();
            let mut child = Child::new(name, &ls, &rs);
            child.esp_proposals = case.esp.to_string();
            if case.life == Life::ChildRekey(Who::Esprit) {
                child.rekey_time = Some(SHORT.into());
            }
            side.children.push(child);
        }
        let edir = lab.topo.dir().join("esprit");
        std::fs::create_dir_all(&edir).map_err(e)?;
        let cdir = lab.topo.dir().join("charon");
        // The responder first, so that the first IKE_SA_INIT finds it listening.
        for who in if esprit_in_a {
            [Who::Charon, Who::Esprit]
        } else {
            [Who::Esprit, Who::Charon]
        } {
            let (e_ns, c_ns) = lab.namespaces();
            match who {
                Who::Charon => lab.charon = Some(Charon::start(c_ns, &cdir, &conn)?),
                Who::Esprit => {
                    lab.esprit = Some(Daemon::start(exe, e_ns, &side, &edir).map_err(e)?)
                }
            }
        }
        Ok(lab)
    }

    /// (esprit's namespace, charon's namespace).
    fn namespaces(&self) -> (&Netns, &Netns) {
        match self.dir {
            Dir::EspritInitiates => (self.topo.a(), self.topo.b()),
            Dir::CharonInitiates => (self.topo.b(), self.topo.a()),
        }
    }

    fn esprit(&self) -> &Daemon {
        self.esprit.as_ref().expect("esprit runs")
    }

    fn charon(&self) -> &Charon {
        self.charon.as_ref().expect("charon runs")
    }

    /// esprit's and charon's names of the children.
    fn names(&self) -> (Vec<String>, Vec<String>) {
        let esprit_in_a = self.dir == Dir::EspritInitiates;
        self.pairs
            .iter()
            .map(|p| {
                let (a, b) = (p.a.0.clone(), p.b.0.clone());
                if esprit_in_a {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .unzip()
    }

    /// Both daemons' logs (escape sequences removed), for evidence.
    pub fn logs(&self) -> (String, String) {
        let charon = self.charon.as_ref().map(Charon::log).unwrap_or_default();
        let esprit = self
            .esprit
            .as_ref()
            .map(|d| strip_ansi(&d.log()))
            .unwrap_or_default();
        (charon, esprit)
    }

    /// Brings the tunnel up, checks it with traffic, runs the lifecycle event; returns
    /// the time to establish.
    pub fn exercise(&mut self) -> Result<Duration, String> {
        let (e_names, c_names) = self.names();
        let t0 = Instant::now();
        match self.dir {
            Dir::EspritInitiates => {
                self.esprit()
                    .command(&Request::Initiate {
                        conn: CONN.into(),
                        child: None,
                    })
                    .map_err(|e| format!("esprit initiate: {e}"))?;
            }
            Dir::CharonInitiates => {
                for c in &c_names {
                    self.charon().initiate(c)?;
                }
            }
        }
        let (status, sas) = self.wait_up(&e_names, &c_names, SETUP)?;
        let establish = t0.elapsed();
        self.up_at = Instant::now();
        let sa = &sas[0];
        self.notes.push(format!(
            "IKE {}; ESP {}",
            sa.proposal,
            sa.children.first().map_or("?", |c| c.proposal.as_str())
        ));
        check_spis(&status, &sas)?;
        if self.case.path != PathKind::Direct {
            // The responder sees the NAT's or the proxy's address, not the initiator's.
            let e = &status.ike_sas[0];
            let seen = match self.dir {
                Dir::EspritInitiates => format!(
                    "charon sees esprit at {} (esprit detected NAT in front of itself: {})",
                    sa.remote_addr, e.nat_local
                ),
                Dir::CharonInitiates => format!(
                    "esprit sees charon at {} (NAT detected: {})",
                    e.remote_addr, e.nat_remote
                ),
            };
            self.notes.push(seen);
        }
        self.traffic("")?;
        match self.case.life {
            Life::Plain => {}
            Life::ThreeChildren => self.check_every_child_carried()?,
            Life::ChildRekey(who) => self.child_rekey(who, &e_names[0], &c_names[0])?,
            Life::IkeRekey(who) => self.ike_rekey(who)?,
            Life::Delete(who) => self.delete(who)?,
            Life::Dpd(who) => self.dpd(who)?,
        }
        if self.case.auth == AuthKind::RsaChain {
            self.check_fragmented()?;
        }
        Ok(establish)
    }

    /// Polls until esprit and charon both have every child installed under an
    /// ESTABLISHED IKE SA.
    fn wait_up(
        &self,
        e_names: &[String],
        c_names: &[String],
        timeout: Duration,
    ) -> Result<(Status, Vec<IkeSa>), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let status = self.esprit().status().map_err(|e| e.to_string())?;
            let sas = self.charon().sas()?;
            let e_up = status.ike_sas.iter().any(|sa| {
                sa.state == "ESTABLISHED"
                    && e_names.iter().all(|n| {
                        sa.children
                            .iter()
                            .any(|c| &c.name == n && c.state == "INSTALLED")
                    })
            });
            let c_up = sas.iter().any(|sa| {
                sa.state == "ESTABLISHED"
                    && c_names.iter().all(|n| {
                        sa.children
                            .iter()
                            .any(|c| &c.name == n && c.state == "INSTALLED")
                    })
            });
            if e_up && c_up {
                return Ok((status, sas));
            }
            if status.ike_sas.is_empty() {
                if let Some(why) = status.connections.iter().find_map(|c| c.last_error.clone()) {
                    return Err(format!("esprit gave up: {why}"));
                }
            }
            last = format!("esprit up: {e_up}, charon up: {c_up}\n{status}\n{sas:?}");
            // Finer than POLL: this wait is the time-to-establish measurement.
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("tunnel not up within {timeout:?}: {last}"))
    }

    /// ping and a TCP transfer each way through every child; `when` prefixes errors.
    fn traffic(&mut self, when: &str) -> Result<(), String> {
        let mut rates = Vec::new();
        for i in 0..self.pairs.len() {
            let (src, dst) = self.pairs[i].probe;
            let (a, b) = (self.topo.a(), self.topo.b());
            let name = &self.pairs[i].a.0;
            if !ping_from(a, src, dst, 3, Duration::from_secs(10)) {
                return Err(format!("{when}ping {src} -> {dst} ({name}) got no answers"));
            }
            for (from, s, to, d) in [(a, src, b, dst), (b, dst, a, src)] {
                self.port += 1;
                let t = tcp_from(from, s, to, d, self.port, TRANSFER, Duration::from_secs(60))
                    .map_err(|e| format!("{when}TCP {s} -> {d} ({name}): {e}"))?;
                if !t.intact(TRANSFER) {
                    return Err(format!(
                        "{when}TCP {s} -> {d} ({name}): {} of {TRANSFER} bytes, SHA-256 {}",
                        t.bytes,
                        if t.sha256.0 == t.sha256.1 {
                            "equal"
                        } else {
                            "differs"
                        }
                    ));
                }
                rates.push(t.mbit_per_s());
            }
        }
        if when.is_empty() {
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            self.notes.push(format!(
                "ping + 2×4 MiB TCP per child OK (≥ {min:.0} Mbit/s)"
            ));
        }
        Ok(())
    }

    /// Every child of both sides counted packets both ways (three-children case).
    fn check_every_child_carried(&mut self) -> Result<(), String> {
        let status = self.esprit().status().map_err(|e| e.to_string())?;
        let sas = self.charon().sas()?;
        let mut seen = Vec::new();
        for c in status.ike_sas.iter().flat_map(|s| &s.children) {
            if c.packets_in == 0 || c.packets_out == 0 {
                return Err(format!(
                    "esprit child {} carried nothing ({} in, {} out)",
                    c.name, c.packets_in, c.packets_out
                ));
            }
            seen.push(c.name.clone());
        }
        for c in sas.iter().flat_map(|s| &s.children) {
            if c.bytes_in == 0 || c.bytes_out == 0 {
                return Err(format!("charon child {} carried nothing", c.name));
            }
        }
        let ike_sas = (status.ike_sas.len(), sas.len());
        if ike_sas != (1, 1) {
            return Err(format!("expected one IKE SA per side, got {ike_sas:?}"));
        }
        self.notes.push(format!(
            "3 children under one IKE SA ({}), each carried traffic both ways",
            seen.join(", ")
        ));
        Ok(())
    }
}

/// Each esprit child's SPIs appear, swapped, on a charon child.
fn check_spis(status: &Status, sas: &[IkeSa]) -> Result<(), String> {
    for c in status.ike_sas.iter().flat_map(|s| &s.children) {
        let found = sas
            .iter()
            .flat_map(|s| &s.children)
            .any(|k| k.spi_in == c.spi_out && k.spi_out == c.spi_in);
        if !found {
            return Err(format!(
                "esprit child {} ({}/{}) has no counterpart at charon: {sas:?}",
                c.name, c.spi_in, c.spi_out
            ));
        }
    }
    Ok(())
}

/// Removes terminal escape sequences (the daemon colours its log).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
