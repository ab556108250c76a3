//! What `esprit status` shows: the daemon's SAs and counters, as JSON on the control
//! socket (`status --json` prints it unchanged) and as text shaped like
//! `swanctl --list-sas`.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// The whole status report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// IKE SAs with their child SAs.
    pub ike_sas: Vec<IkeSaStatus>,
    /// Connections from the config, with the last failure of each.
    pub connections: Vec<ConnectionStatus>,
    /// Dataplane and IKE counters.
    pub counters: Counters,
    /// IKE mediation: peers registered here, paths of mediated connections.
    #[serde(default)]
    pub mediation: MediationStatus,
    /// Virtual IP pools with their leases (`swanctl --list-pools --leases`).
    #[serde(default)]
    pub pools: Vec<PoolStatus>,
    /// Pipes through the netstack, with their counters.
    #[serde(default)]
    pub pipes: Vec<crate::netstack::PipeStats>,
    /// How many SAs there are, counted without listing them (all that `summary`
    /// answers besides the counters).
    #[serde(default)]
    pub summary: Summary,
}

/// SAs counted by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// IKE SAs in every state.
    pub ike_sas: usize,
    /// IKE SAs established (rekeying included).
    pub established: usize,
    /// Child SAs of all IKE SAs.
    pub child_sas: usize,
}

/// Bytes the daemon gathers before it hands a piece of a status line to the socket.
pub(crate) const STATUS_PIECE: usize = 64 * 1024;

/// Writes the status report as the one JSON line `Response::Status` serializes to,
/// one IKE SA at a time, in pieces of about [`STATUS_PIECE`] bytes: at 100,000 SAs
/// neither the report nor its text is ever whole in the daemon's memory.
pub(crate) struct StatusWriter {
    piece: Vec<u8>,
    first: bool,
}

impl StatusWriter {
    /// Starts the line.
    pub(crate) fn new() -> StatusWriter {
        let mut piece = Vec::with_capacity(STATUS_PIECE + 4096);
        piece.extend_from_slice(br#"{"result":"status","ike_sas":["#);
        StatusWriter { piece, first: true }
    }

    /// Adds an IKE SA; returns a full piece to send, if one is ready.
    pub(crate) fn push(&mut self, sa: &IkeSaStatus) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.first) {
            self.piece.push(b',');
        }
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.piece, sa);
        (self.piece.len() >= STATUS_PIECE)
            .then(|| std::mem::replace(&mut self.piece, Vec::with_capacity(STATUS_PIECE + 4096)))
    }

    /// Ends the line with everything but the IKE SAs (`rest.ike_sas` is left out):
    /// the last piece, newline included.
    pub(crate) fn finish(mut self, rest: &Status) -> Vec<u8> {
        self.piece.push(b']');
        let whole = serde_json::to_vec(rest).unwrap_or_default();
        // `rest` serializes as {"ike_sas":[...],"connections":...}: keep what follows
        // its list, opening with the comma.
        let tail = whole
            .iter()
            .position(|b| *b == b']')
            .map_or(&b"}"[..], |i| &whole[i + 1..]);
        self.piece.extend_from_slice(tail);
        self.piece.push(b'\n');
        self.piece
    }
}

/// IKE mediation at a glance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MediationStatus {
    /// As a mediation server: the peers registered here.
    pub registered_peers: Vec<RegisteredPeer>,
    /// Mediated connections and the path the connectivity checks chose.
    pub paths: Vec<MediatedPath>,
    /// As a mediation server: the relays open for peers behind symmetric NATs.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
}

/// One relay a mediation server runs between two peers (it forwards ciphertext).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RelayStatus {
    /// The mediated attempt's connect ID, in hex.
    pub connect_id: String,
    /// The two peers' identities.
    pub peers: Vec<String>,
    /// The relay's address.
    pub addr: String,
    /// The address each peer bound from (empty: not yet).
    pub bound: Vec<String>,
    /// Datagrams forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Bind datagrams received with a good token.
    pub binds: u64,
    /// Datagrams dropped: from an address that did not bind, to a side not bound
    /// yet, or with a wrong token.
    pub dropped_unbound: u64,
    /// Datagrams dropped over the relay's rate.
    pub dropped_over_rate: u64,
    /// Datagrams whose send towards the other peer failed.
    #[serde(default)]
    pub dropped_send_error: u64,
}

/// A peer registered at this mediation server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisteredPeer {
    /// Its identity.
    pub id: String,
    /// Its mediation IKE SA.
    pub ike: u64,
}

/// The path of a mediated connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MediatedPath {
    /// The mediated connection.
    pub conn: String,
    /// Its direct IKE SA.
    pub ike: u64,
    /// "direct": peer to peer on the chosen pair; "relayed": through the mediation
    /// server's relay (the remote address is the relay's).
    pub path: String,
    /// Our address of the pair.
    pub local_addr: String,
    /// The peer's address of the pair.
    pub remote_addr: String,
}

/// One virtual IP pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Name (`[pools.NAME]`).
    pub name: String,
    /// First address handed out.
    pub first: String,
    /// Last address handed out.
    pub last: String,
    /// Number of addresses.
    pub size: u32,
    /// Leases an IKE SA holds.
    pub online: usize,
    /// Leases kept for identities not connected.
    pub offline: usize,
    /// DNS servers sent with its addresses.
    pub dns: Vec<String>,
    /// Every lease.
    pub leases: Vec<LeaseStatus>,
}

/// One lease of a pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The address.
    pub addr: String,
    /// The identity it belongs to.
    pub identity: String,
    /// Held by an IKE SA now.
    pub online: bool,
}

/// One configured connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// Name.
    pub name: String,
    /// Why its last attempt failed or why it went down, if it did.
    pub last_error: Option<String>,
}

/// One IKE SA.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IkeSaStatus {
    /// Connection name.
    pub conn: String,
    /// Handle (unique while the daemon runs).
    pub id: u64,
    /// CONNECTING, ESTABLISHED, REKEYING or DELETING.
    pub state: String,
    /// We initiated it.
    pub initiator: bool,
    /// Initiator SPI (hex).
    pub spi_i: String,
    /// Responder SPI (hex).
    pub spi_r: String,
    /// Our address and port.
    pub local_addr: String,
    /// The peer's address and port.
    pub remote_addr: String,
    /// Our identity.
    pub local_id: String,
    /// The peer's identity.
    pub remote_id: String,
    /// Negotiated algorithms.
    pub proposal: Option<String>,
    /// NAT detected in front of us (the peer saw another address than ours).
    pub nat_local: bool,
    /// NAT detected in front of the peer, or faked by it (as esprit and charon with
    /// `encap = yes` do).
    pub nat_remote: bool,
    /// We fake a NAT to force UDP encapsulation (always: esprit has no raw ESP).
    #[serde(default)]
    pub nat_fake: bool,
    /// Seconds since IKE_AUTH completed.
    pub established_secs: Option<u64>,
    /// Seconds until the next IKE rekey.
    pub rekey_in_secs: Option<u64>,
    /// Initiator: virtual IPs the peer assigned us.
    #[serde(default)]
    pub local_vips: Vec<String>,
    /// Responder: virtual IPs leased to the peer.
    #[serde(default)]
    pub remote_vips: Vec<String>,
    /// DNS servers the peer sent.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Child SAs.
    pub children: Vec<ChildSaStatus>,
    /// An IKE SA of a mediation connection (to or from a mediation server).
    #[serde(default)]
    pub mediation: bool,
    /// On a peer's mediation SA: where the server sees us (our server-reflexive
    /// address), when we are behind a NAT.
    #[serde(default)]
    pub server_reflexive: Option<String>,
}

/// One child SA.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildSaStatus {
    /// Child name.
    pub name: String,
    /// INSTALLED (or REKEYED while its successor takes over).
    pub state: String,
    /// Inbound SPI (hex).
    pub spi_in: String,
    /// Outbound SPI (hex).
    pub spi_out: String,
    /// ESP algorithms.
    pub proposal: String,
    /// ESP in UDP (always, in esprit).
    pub encap: bool,
    /// Inner bytes received.
    pub bytes_in: u64,
    /// Packets received.
    pub packets_in: u64,
    /// Inner bytes sent.
    pub bytes_out: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Our selectors.
    pub local_ts: Vec<String>,
    /// The peer's selectors.
    pub remote_ts: Vec<String>,
    /// Seconds since it was installed.
    pub installed_secs: u64,
    /// Seconds until its rekey.
    pub rekey_in_secs: Option<u64>,
}

/// Counters of the daemon.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Outbound dataplane.
    pub outbound: serde_json::Value,
    /// Inbound dataplane.
    pub inbound: serde_json::Value,
    /// IKE message drops and retransmissions.
    pub ike: serde_json::Value,
    /// NAT-T keepalives sent.
    pub keepalives_sent: u64,
    /// UDP datagrams the kernel dropped for a full socket receive buffer, in the
    /// daemon's network namespace (`/proc/net/snmp` Udp RcvbufErrors: every UDP socket
    /// of the namespace, ours included).
    #[serde(default)]
    pub udp_rcvbuf_errors: u64,
    /// With `[netstack]`: inner packets dropped because a queue between the stack and
    /// the packet threads was full, towards the stack and from it.
    #[serde(default)]
    pub netstack_queue_drops: Option<(u64, u64)>,
}

/// The namespace's UDP RcvbufErrors from `/proc/net/snmp` (0 when unreadable).
pub fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn human(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86_400),
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ike_sas.is_empty() && self.summary.ike_sas == 0 {
            writeln!(f, "no IKE SAs")?;
        }
        for sa in &self.ike_sas {
            let (mi, mr) = if sa.initiator { ("*", "") } else { ("", "*") };
            writeln!(
                f,
                "{}: #{}, {}, IKEv2, {}_i{mi} {}_r{mr}",
                sa.conn, sa.id, sa.state, sa.spi_i, sa.spi_r
            )?;
            writeln!(f, "  local  '{}' @ {}", sa.local_id, sa.local_addr)?;
            writeln!(f, "  remote '{}' @ {}", sa.remote_id, sa.remote_addr)?;
            for v in &sa.local_vips {
                writeln!(f, "  local-vip {v}")?;
            }
            for v in &sa.remote_vips {
                writeln!(f, "  remote-vip {v}")?;
            }
            if !sa.dns.is_empty() {
                writeln!(f, "  dns {}", sa.dns.join(" "))?;
            }
            if let Some(p) = &sa.proposal {
                writeln!(f, "  {p}")?;
            }
            let mut line = String::new();
            if let Some(e) = sa.established_secs {
                write!(line, "established {} ago", human(e))?;
            }
            if let Some(r) = sa.rekey_in_secs {
                write!(line, ", rekeying in {}", human(r))?;
            }
            if !line.is_empty() {
                writeln!(f, "  {line}")?;
            }
            if sa.mediation {
                match &sa.server_reflexive {
                    Some(a) => writeln!(f, "  mediation, the server sees us at {a}")?,
                    None => writeln!(f, "  mediation")?,
                }
            }
            for c in &sa.children {
                let mode = if c.encap { "TUNNEL-in-UDP" } else { "TUNNEL" };
                writeln!(f, "  {}: {}, {mode}, ESP:{}", c.name, c.state, c.proposal)?;
                let mut line = format!("installed {} ago", human(c.installed_secs));
                if let Some(r) = c.rekey_in_secs {
                    write!(line, ", rekeying in {}", human(r))?;
                }
                writeln!(f, "    {line}")?;
                writeln!(
                    f,
                    "    in  {}, {:>10} bytes, {:>8} packets",
                    c.spi_in, c.bytes_in, c.packets_in
                )?;
                writeln!(
                    f,
                    "    out {}, {:>10} bytes, {:>8} packets",
                    c.spi_out, c.bytes_out, c.packets_out
                )?;
                writeln!(f, "    local  {}", c.local_ts.join(" "))?;
                writeln!(f, "    remote {}", c.remote_ts.join(" "))?;
            }
        }
        for p in &self.mediation.registered_peers {
            writeln!(f, "registered peer '{}' (IKE SA #{})", p.id, p.ike)?;
        }
        for p in &self.mediation.paths {
            writeln!(
                f,
                "{}: {} path {} - {} (IKE SA #{})",
                p.conn, p.path, p.local_addr, p.remote_addr, p.ike
            )?;
        }
        for r in &self.mediation.relays {
            writeln!(
                f,
                "relay {} for '{}' - '{}' at {}: {} bytes, {} packets forwarded, \
                 {} binds, dropped {} unbound, {} over rate, {} send errors",
                r.connect_id,
                r.peers.first().map_or("", |s| s.as_str()),
                r.peers.get(1).map_or("", |s| s.as_str()),
                r.addr,
                r.bytes,
                r.packets,
                r.binds,
                r.dropped_unbound,
                r.dropped_over_rate,
                r.dropped_send_error
            )?;
        }
        for p in &self.pools {
            // As `swanctl --list-pools --leases`: online / offline / size.
            writeln!(
                f,
                "{:<20} {:<39} {} / {} / {}",
                p.name,
                format!("{}-{}", p.first, p.last),
                p.online,
                p.offline,
                p.size
            )?;
            for l in &p.leases {
                let state = if l.online { "online" } else { "offline" };
                writeln!(f, "  {:<39} {state:<8} '{}'", l.addr, l.identity)?;
            }
        }
        for p in &self.pipes {
            let dir = if p.reverse { "reverse " } else { "" };
            writeln!(
                f,
                "pipe {}: {dir}{} {} -> {}",
                p.name, p.proto, p.listen, p.remote
            )?;
            writeln!(
                f,
                "  connections {} open, {} opened, {} refused, {} failed; bytes {} up, {} down",
                p.active, p.opened, p.refused, p.failed, p.bytes_up, p.bytes_down
            )?;
        }
        for c in &self.connections {
            if let Some(e) = &c.last_error {
                writeln!(f, "{}: last error: {e}", c.name)?;
            }
        }
        let n = self.summary;
        if self.ike_sas.is_empty() && n.ike_sas > 0 {
            writeln!(
                f,
                "{} IKE SA(s), {} established, {} child SA(s)",
                n.ike_sas, n.established, n.child_sas
            )?;
        }
        let replaced = self.counters.ike["replaced_ike_sas"].as_u64().unwrap_or(0);
        if replaced > 0 {
            writeln!(
                f,
                "{replaced} IKE SA(s) replaced by a newer one with the same peer \
                 (INITIAL_CONTACT or unique policy)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed line is byte for byte what serializing the whole report gives,
    /// whatever the piece size, and the summary's text counts the SAs.
    #[test]
    fn streamed_status_is_the_whole_response() {
        let sa = |id: u64| IkeSaStatus {
            conn: format!("site-{id}"),
            id,
            state: "ESTABLISHED".into(),
            children: vec![ChildSaStatus {
                name: "net".into(),
                local_ts: vec!["10.96.1.0/24".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        // Enough SAs for several pieces.
        let sas: Vec<IkeSaStatus> = (1..=300).map(sa).collect();
        let rest = Status {
            connections: vec![ConnectionStatus {
                name: "site-1".into(),
                last_error: Some("timeout".into()),
            }],
            summary: Summary {
                ike_sas: 300,
                established: 300,
                child_sas: 300,
            },
            ..Default::default()
        };
        let mut whole = Status {
            ike_sas: sas.clone(),
            ..rest.clone()
        };
        let mut line = Vec::new();
        let mut pieces = 0;
        let mut w = StatusWriter::new();
        for s in &sas {
            if let Some(p) = w.push(s) {
                assert!(p.len() >= STATUS_PIECE);
                line.extend_from_slice(&p);
                pieces += 1;
            }
        }
        line.extend_from_slice(&w.finish(&rest));
        let mut expected =
            serde_json::to_vec(&crate::control::Response::Status(Box::new(whole.clone()))).unwrap();
        expected.push(b'\n');
        assert!(pieces >= 1, "the line came in more than one piece");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        // No SA: an empty list.
        let empty = StatusWriter::new().finish(&rest);
        let back: crate::control::Response = serde_json::from_slice(&empty).unwrap();
        assert!(matches!(back, crate::control::Response::Status(s) if s.ike_sas.is_empty()));
        whole.ike_sas.clear();
        assert!(whole
            .to_string()
            .contains("300 IKE SA(s), 300 established, 300 child SA(s)"));
    }

    #[test]
    fn text_looks_like_swanctl() {
        let s = Status {
            ike_sas: vec![IkeSaStatus {
                conn: "site-b".into(),
                id: 1,
                state: "ESTABLISHED".into(),
                initiator: true,
                spi_i: "0011223344556677".into(),
                spi_r: "8899aabbccddeeff".into(),
                local_addr: "192.0.2.1[4500]".into(),
                remote_addr: "192.0.2.2[4500]".into(),
                local_id: "CN=a".into(),
                remote_id: "CN=b".into(),
                proposal: Some("AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519".into()),
                established_secs: Some(130),
                rekey_in_secs: Some(14_000),
                children: vec![ChildSaStatus {
                    name: "net".into(),
                    state: "INSTALLED".into(),
                    spi_in: "c0000001".into(),
                    spi_out: "c0000002".into(),
                    proposal: "AES_GCM_16_128".into(),
                    encap: true,
                    bytes_in: 84,
                    packets_in: 1,
                    local_ts: vec!["10.96.1.0/24".into()],
                    remote_ts: vec!["10.96.2.0/24".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = s.to_string();
        assert!(
            text.starts_with(
                "site-b: #1, ESTABLISHED, IKEv2, 0011223344556677_i* 8899aabbccddeeff_r\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("established 2m ago, rekeying in 3h53m"),
            "{text}"
        );
        assert!(
            text.contains("net: INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16_128"),
            "{text}"
        );
        assert!(
            text.contains("in  c0000001,         84 bytes,        1 packets"),
            "{text}"
        );
        let json = serde_json::to_string(&s).unwrap();
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ike_sas[0].children[0].remote_ts, ["10.96.2.0/24"]);
    }

    #[test]
    fn mediation_shows_registrations_and_paths() {
        let s = Status {
            ike_sas: vec![IkeSaStatus {
                conn: "medsrv".into(),
                id: 1,
                state: "ESTABLISHED".into(),
                mediation: true,
                server_reflexive: Some("203.0.113.1[4500]".into()),
                ..Default::default()
            }],
            mediation: MediationStatus {
                registered_peers: vec![RegisteredPeer {
                    id: "CN=edge2".into(),
                    ike: 7,
                }],
                paths: vec![MediatedPath {
                    conn: "peer".into(),
                    ike: 3,
                    path: "direct".into(),
                    local_addr: "10.1.0.2[4500]".into(),
                    remote_addr: "203.0.113.2[4500]".into(),
                }],
                relays: vec![RelayStatus {
                    connect_id: "01020304".into(),
                    peers: vec!["CN=edge1".into(), "CN=edge2".into()],
                    addr: "198.51.100.1[40001]".into(),
                    bytes: 1500,
                    packets: 3,
                    binds: 2,
                    ..Default::default()
                }],
            },
            ..Default::default()
        };
        let text = s.to_string();
        assert!(
            text.contains("  mediation, the server sees us at 203.0.113.1[4500]\n"),
            "{text}"
        );
        assert!(
            text.contains("registered peer 'CN=edge2' (IKE SA #7)"),
            "{text}"
        );
        assert!(
            text.contains("peer: direct path 10.1.0.2[4500] - 203.0.113.2[4500] (IKE SA #3)"),
            "{text}"
        );
        assert!(
            text.contains("relay 01020304 for 'CN=edge1' - 'CN=edge2' at 198.51.100.1[40001]: 1500 bytes, 3 packets forwarded, 2 binds"),
            "{text}"
        );
        // An older daemon's JSON, without the mediation fields, still reads.
        let old = r#"{"ike_sas":[],"connections":[],"counters":{"outbound":null,"inbound":null,"ike":null,"keepalives_sent":0}}"#;
        let back: Status = serde_json::from_str(old).unwrap();
        assert!(back.mediation.paths.is_empty());
    }

    #[test]
    fn pools_and_vips_look_like_swanctl() {
        let s = Status {
            ike_sas: vec![IkeSaStatus {
                conn: "to-hub".into(),
                local_vips: vec!["10.173.0.1".into()],
                dns: vec!["10.173.0.53".into()],
                ..Default::default()
            }],
            pools: vec![PoolStatus {
                name: "pods".into(),
                first: "10.173.0.1".into(),
                last: "10.173.255.254".into(),
                size: 65534,
                online: 1,
                offline: 1,
                dns: vec![],
                leases: vec![
                    LeaseStatus {
                        addr: "10.173.0.1".into(),
                        identity: "CN=pod1".into(),
                        online: true,
                    },
                    LeaseStatus {
                        addr: "10.173.0.2".into(),
                        identity: "CN=pod2".into(),
                        online: false,
                    },
                ],
            }],
            ..Default::default()
        };
        let text = s.to_string();
        assert!(
            text.contains("  local-vip 10.173.0.1\n  dns 10.173.0.53\n"),
            "{text}"
        );
        assert!(
            text.contains("pods                 10.173.0.1-10.173.255.254"),
            "{text}"
        );
        assert!(text.contains(" 1 / 1 / 65534\n"), "{text}");
        assert!(
            text.contains("  10.173.0.2                              offline  'CN=pod2'"),
            "{text}"
        );
        // Older clients' JSON without the new fields still reads.
        let back: Status = serde_json::from_str(r#"{"ike_sas":[],"connections":[],"counters":{"outbound":null,"inbound":null,"ike":null,"keepalives_sent":0}}"#).unwrap();
        assert!(back.pools.is_empty());
        assert!(back.pipes.is_empty());
    }

    #[test]
    fn pipes_show_their_counters() {
        let s = Status {
            pipes: vec![crate::netstack::PipeStats {
                name: "nginx".into(),
                proto: "tcp".into(),
                reverse: false,
                listen: "127.0.0.1:8080".into(),
                remote: "10.96.2.1:80".into(),
                opened: 3,
                active: 1,
                refused: 0,
                failed: 1,
                bytes_up: 120,
                bytes_down: 4096,
            }],
            ..Default::default()
        };
        let text = s.to_string();
        assert!(
            text.contains("pipe nginx: tcp 127.0.0.1:8080 -> 10.96.2.1:80\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  connections 1 open, 3 opened, 0 refused, 1 failed; bytes 120 up, 4096 down\n"
            ),
            "{text}"
        );
    }
}
