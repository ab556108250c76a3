//! The configuration file as written: TOML in swanctl.conf's vocabulary. Every table
//! rejects unknown keys, so a typo is an error naming the key instead of a silent
//! default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// `[tun]`.
    #[serde(default)]
    pub tun: TunSection,
    /// `[connections.NAME]`.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionSection>,
    /// `[secrets.*]`.
    #[serde(default)]
    pub secrets: SecretsSection,
    /// `[pools.NAME]`: virtual IP pools that connections with `pools` lease from.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSection>,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[netstack]`: a userspace TCP/IP stack in place of the TUN device.
    #[serde(default)]
    pub netstack: Option<NetstackSection>,
    /// `[pipes.NAME]`: TCP/UDP forwarders through the netstack.
    #[serde(default)]
    pub pipes: BTreeMap<String, PipeSection>,
}

/// `[netstack]`: inner packets go to and come from a TCP/IP stack inside esprit, not a
/// TUN device, so the daemon needs no privileges.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetstackSection {
    /// The stack's own inner addresses; empty: the virtual IPs the peer assigns.
    pub addrs: Vec<String>,
    /// The largest inner packet the stack sends.
    pub mtu: u16,
    /// Receive and send buffer of each TCP connection, in bytes (each way).
    pub tcp_buffer: usize,
}

impl Default for NetstackSection {
    fn default() -> Self {
        NetstackSection {
            addrs: Vec::new(),
            mtu: 1400,
            // Measured (bench/pipes.sh): 256 KiB held one stream to about 1 Gbit/s
            // (few ACKs come back through a GRO-coalescing peer), 512 KiB and more
            // about 1.8-2.0.
            tcp_buffer: 512 * 1024,
        }
    }
}

/// `[pipes.NAME]`: a forwarder between a host socket and an inner address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeSection {
    /// "tcp" (default) or "udp".
    #[serde(default = "default_pipe_proto")]
    pub proto: String,
    /// Forward: a host address:port to listen on. Reverse: a netstack address:port.
    pub listen: String,
    /// Forward: the inner address:port (or name:port) connections go to. Reverse: the
    /// host address:port (or name:port).
    pub remote: String,
    /// Listen inside the tunnel and connect on the host.
    #[serde(default)]
    pub reverse: bool,
    /// Most connections (UDP: flows) at once; more are refused.
    #[serde(default = "default_pipe_max")]
    pub max_connections: usize,
    /// A connection (UDP: flow) with no traffic for this long is closed.
    #[serde(default = "default_pipe_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

fn default_pipe_proto() -> String {
    "tcp".into()
}

fn default_pipe_max() -> usize {
    // Each connection holds 2 x tcp_buffer: 256 MiB at the defaults, at most.
    256
}

fn default_pipe_idle() -> Duration {
    Duration::from_secs(600)
}

/// `[metrics]`: an HTTP endpoint serving `/metrics` (Prometheus text format) and
/// `/healthz`. Absent `listen`: no endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address and port to listen on, e.g. "127.0.0.1:9000" or "[::1]:9000".
    pub listen: Option<String>,
}

/// `[pools.NAME]`, as swanctl.conf's `pools` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// A prefix ("10.173.0.0/16") or a range ("10.3.0.1-10.3.0.200").
    pub addrs: String,
    /// DNS servers sent with the addresses (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS).
    #[serde(default)]
    pub dns: Vec<String>,
}

/// `[daemon]`: sockets and control.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// IKE port.
    pub port: u16,
    /// NAT-T port.
    pub port_nat_t: u16,
    /// Path of the control socket used by `esprit status/initiate/terminate`.
    pub control_socket: PathBuf,
    /// NAT-T keepalive interval (RFC 3948 4); "0s": none.
    #[serde(deserialize_with = "duration")]
    pub keepalive: Duration,
    /// First IKE retransmission timeout; it doubles with each retry (RFC 7296 2.1).
    #[serde(deserialize_with = "duration")]
    pub retransmit_timeout: Duration,
    /// IKE retransmissions before a request is given up.
    pub retransmit_tries: u32,
    /// Send and receive buffer of each IKE/NAT-T socket, in bytes (forced past the
    /// system limit when privileged): thousands of peers starting at once queue here.
    pub socket_buffer: usize,
    /// Half-open IKE SAs above which a responder asks initiators for a cookie
    /// (RFC 7296 2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs above which new IKE_SA_INIT requests go unanswered (counted
    /// as `overloaded` in status).
    pub max_half_open: usize,
    /// Half-open IKE SAs one source address may hold (further requests counted as
    /// `source_limited`); above `cookie_threshold` so a spoofer cannot fill a victim's
    /// share before cookies are asked for.
    pub max_half_open_per_source: usize,
    /// Most IKE SAs the daemon holds.
    pub max_ike_sas: usize,
    /// How long shutdown waits for the peers to confirm its deletes, plus 3 s for every
    /// 10,000 IKE SAs it deletes (it exits as soon as every peer has answered).
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            port: 500,
            port_nat_t: 4500,
            control_socket: PathBuf::from("/run/esprit/esprit.sock"),
            // strongSwan's charon.keep_alive, retransmit_timeout and retransmit_tries.
            keepalive: Duration::from_secs(20),
            retransmit_timeout: Duration::from_secs(2),
            retransmit_tries: 5,
            socket_buffer: 8 << 20,
            cookie_threshold: 64,
            max_half_open: 4096,
            max_half_open_per_source: 128,
            max_ike_sas: 100_000,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// `[tun]`: the device packets enter and leave through.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunSection {
    /// Interface name.
    pub name: String,
    /// MTU of the device.
    pub mtu: u16,
    /// Add routes to the remote subnets through the device (off for adopted devices).
    pub install_routes: Option<bool>,
}

impl Default for TunSection {
    fn default() -> Self {
        TunSection {
            name: "esprit0".into(),
            mtu: 1400,
            install_routes: None,
        }
    }
}

/// `[connections.NAME]`: one IKE connection. `PartialEq` tells `esprit reload` which
/// connections changed.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSection {
    /// Our addresses (empty: any).
    #[serde(default)]
    pub local_addrs: Vec<String>,
    /// The peer's addresses, or "%any".
    #[serde(default)]
    pub remote_addrs: Vec<String>,
    /// The peer's IKE port.
    #[serde(default = "default_ike_port")]
    pub remote_port: u16,
    /// IKE proposals in strongSwan syntax.
    #[serde(default = "default_proposals")]
    pub proposals: Vec<String>,
    /// Accepted for swanctl.conf compatibility and ignored: esprit has no raw ESP socket
    /// and always UDP-encapsulates ESP (RFC 3948), like strongSwan's kernel-libipsec.
    #[serde(default)]
    pub encap: bool,
    /// Liveness check interval ("30s"); absent or "0s": off.
    #[serde(default, deserialize_with = "duration_opt")]
    pub dpd_delay: Option<Duration>,
    /// IKE SA rekey interval; absent: 4h, "0s": never.
    #[serde(default, deserialize_with = "duration_some")]
    pub rekey_time: Option<Duration>,
    /// Use IKE fragmentation (RFC 7383) when the peer supports it.
    #[serde(default = "yes")]
    pub fragmentation: bool,
    /// swanctl's `unique`: what happens to other IKE SAs with the same identities.
    #[serde(default)]
    pub unique: Unique,
    /// `mediation = true`: a connection to a mediation server, or on the server, from
    /// the peers it mediates (draft-brunner-ikev2-mediation); it carries no children.
    #[serde(default)]
    pub mediation: bool,
    /// Set this connection up through the mediation connection of this name instead of
    /// `remote_addrs`.
    #[serde(default)]
    pub mediated_by: Option<String>,
    /// The identity to ask the mediation server for; default: `remote.id`.
    #[serde(default)]
    pub mediation_peer: Option<String>,
    /// Initiator: virtual IPs to request ("0.0.0.0", "::" for any, or an address).
    #[serde(default)]
    pub vips: Vec<String>,
    /// Responder: `[pools.NAME]` to assign the peer's virtual IPs from.
    #[serde(default)]
    pub pools: Vec<String>,
    /// Route-based: the connection's own TUN device, named so. Its child SAs take what
    /// is routed into that device and deliver there; esprit installs no routes for them
    /// (a routing daemon does). Absent: policy-based, through `[tun]`.
    #[serde(default)]
    pub tun: Option<String>,
    /// Route-based: addresses with prefix put on `tun` ("169.254.100.1/30").
    #[serde(default)]
    pub tun_addrs: Vec<String>,
    /// Route-based: MTU of `tun`; absent: `[tun].mtu`.
    #[serde(default)]
    pub tun_mtu: Option<u16>,
    /// `[connections.NAME.local]`.
    pub local: AuthSection,
    /// `[connections.NAME.remote]`.
    pub remote: AuthSection,
    /// `[connections.NAME.children.CHILD]`.
    #[serde(default)]
    pub children: BTreeMap<String, ChildSection>,
}

fn default_ike_port() -> u16 {
    500
}

fn default_proposals() -> Vec<String> {
    vec!["default".into()]
}

fn yes() -> bool {
    true
}

/// How one side authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Pre-shared key.
    Psk,
    /// Certificates and signatures.
    Pubkey,
}

/// `[connections.NAME.local]` and `.remote`.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Authentication method.
    pub auth: AuthKind,
    /// Identity: a DN "C=CN, O=..., CN=...", an FQDN, an email, an IP address, "%any".
    pub id: Option<String>,
    /// Our certificate chain, end entity first (local side, pubkey).
    #[serde(default)]
    pub certs: Vec<PathBuf>,
    /// Trusted CA certificates (remote side, pubkey).
    #[serde(default)]
    pub cacerts: Vec<PathBuf>,
}

/// `[connections.NAME.children.CHILD]`: one child SA.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildSection {
    /// Our subnets.
    #[serde(default = "dynamic")]
    pub local_ts: Vec<String>,
    /// The peer's subnets.
    #[serde(default = "dynamic")]
    pub remote_ts: Vec<String>,
    /// ESP proposals ("aes128gcm16-x25519": with PFS group).
    #[serde(default = "default_proposals")]
    pub esp_proposals: Vec<String>,
    /// What to do at startup.
    #[serde(default)]
    pub start_action: StartAction,
    /// What to do when DPD declares the peer dead.
    #[serde(default)]
    pub dpd_action: DpdAction,
    /// What to do when the peer deletes the IKE SA (a peer's restart or shutdown).
    #[serde(default)]
    pub close_action: CloseAction,
    /// Child SA rekey interval; absent: 1h, "0s": never.
    #[serde(default, deserialize_with = "duration_some")]
    pub rekey_time: Option<Duration>,
    /// A command run through `/bin/sh -c` with strongSwan's `PLUTO_*` environment when
    /// the child SA comes up, goes down or is rekeyed.
    pub updown: Option<String>,
}

fn dynamic() -> Vec<String> {
    vec!["dynamic".into()]
}

/// swanctl's `unique` (default `no`; an INITIAL_CONTACT from the peer still replaces
/// its older IKE SAs, as in charon).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unique {
    /// Duplicates allowed; INITIAL_CONTACT replaces.
    #[default]
    No,
    /// Duplicates allowed, even on INITIAL_CONTACT.
    Never,
    /// Keep the established IKE SA, delete a new duplicate.
    Keep,
    /// Delete the old IKE SA when a new duplicate is established.
    Replace,
}

impl From<Unique> for ike::config::UniquePolicy {
    fn from(u: Unique) -> Self {
        match u {
            Unique::No => ike::config::UniquePolicy::No,
            Unique::Never => ike::config::UniquePolicy::Never,
            Unique::Keep => ike::config::UniquePolicy::Keep,
            Unique::Replace => ike::config::UniquePolicy::Replace,
        }
    }
}

/// swanctl's `start_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAction {
    /// Wait for the peer or a command.
    #[default]
    None,
    /// Negotiate when the first packet for the remote subnets arrives.
    Trap,
    /// Negotiate at startup, retrying until the peer answers.
    Start,
}

/// swanctl's `dpd_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpdAction {
    /// Forget the SAs.
    #[default]
    Clear,
    /// Negotiate again at once.
    Restart,
    /// Forget the SAs, renegotiate on the next packet.
    Trap,
}

/// swanctl's `close_action`: what to do when the peer closes the SA. esprit acts on the
/// peer deleting the IKE SA (which takes its children), not yet on a lone child delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseAction {
    /// Leave it closed.
    #[default]
    None,
    /// Renegotiate on the next packet for the remote subnets.
    Trap,
    /// Negotiate again (after the retry backoff, so a restarting peer has a moment),
    /// and keep retrying like `start_action = "start"` until it answers.
    Start,
}

/// `[secrets]`: `[secrets.ike-NAME]` entries and `[secrets.private.NAME]` keys.
#[derive(Debug, Default, Deserialize)]
pub struct SecretsSection {
    /// Private keys by name.
    #[serde(default)]
    pub private: BTreeMap<String, PrivateSecret>,
    /// Every other entry: pre-shared keys, named `ike...`.
    #[serde(flatten)]
    pub ike: BTreeMap<String, IkeSecret>,
}

/// `[secrets.ike-NAME]`: a pre-shared key and the identities it is for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeSecret {
    /// Identities sharing the key (one string or a list); none: any identity, as a last
    /// resort when no entry names the connection's identities.
    #[serde(default, deserialize_with = "one_or_many")]
    pub id: Vec<String>,
    /// The key. A "0x" prefix means hex, "0s" base64 (strongSwan's syntax).
    pub secret: String,
}

impl std::fmt::Debug for IkeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// `[secrets.private.NAME]`: a private key file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateSecret {
    /// PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub file: PathBuf,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A duration as a number of seconds or in strongSwan's syntax ("30s").
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// A duration where zero means off.
fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let dur = duration(d)?;
    Ok((!dur.is_zero()).then_some(dur))
}

/// A duration that, when given, is kept even when zero: absence picks a default,
/// "0s" means never.
fn duration_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// strongSwan's time syntax: a number with an optional unit s, m, h or d ("30s", "4h").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like \"30s\", \"10m\", \"4h\" or \"1d\""))?;
    let mult = match unit.trim() {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => {
            return Err(format!(
                "unknown time unit '{u}' in '{s}' (use s, m, h or d)"
            ))
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("4x")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("soon").is_err());
    }
}
