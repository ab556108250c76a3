//! `esprit import`: strongSwan configurations (ipsec.conf with ipsec.secrets, or
//! swanctl.conf) turned into the equivalent esprit TOML. What esprit cannot express is
//! never dropped silently: each such option becomes a `# not carried:` comment line at
//! the place it belongs, and a connection that cannot work at all (IKEv1, transport
//! mode, EAP) is left out with a comment saying why.
//!
//! The two readers ([`ipsec`], [`swanctl`]) fill one model ([`Conn`], [`Secrets`]);
//! [`Model::emit`] writes it, and the result is parsed back before it is returned, so
//! the output is always a file `esprit check` can read (whether it resolves depends on
//! the certificate and key files named in it).

mod ipsec;
mod swanctl;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use ike::proposal::{ProposalSet, Protocol};

/// Why a file could not be imported: which file, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the file as a whole is at fault.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: line {}: {}",
                self.file.display(),
                self.line,
                self.reason
            )
        }
    }
}

impl std::error::Error for ImportError {}

impl ImportError {
    fn new(file: &Path, line: usize, reason: impl Into<String>) -> Self {
        ImportError {
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// The converted configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The esprit TOML text.
    pub toml: String,
    /// How many `# not carried:` lines it holds.
    pub not_carried: usize,
}

/// Converts `conf` (ipsec.conf or swanctl.conf, told apart by their syntax) and, for
/// ipsec.conf, the `secrets` file (default: ipsec.secrets beside it, when present).
pub fn import(conf: &Path, secrets: Option<&Path>) -> Result<Imported, ImportError> {
    // Files are named by absolute paths in the output: esprit resolves relative ones
    // against its own file's folder, which need not be this one.
    let abs = std::fs::canonicalize(conf).ok();
    let conf = abs.as_deref().unwrap_or(conf);
    let text = std::fs::read_to_string(conf)
        .map_err(|e| ImportError::new(conf, 0, format!("cannot read: {e}")))?;
    let model = if swanctl::looks_like(&text) {
        if let Some(s) = secrets {
            return Err(ImportError::new(
                s,
                0,
                "swanctl.conf holds its own secrets section; give no secrets file",
            ));
        }
        swanctl::read(conf, &text)?
    } else {
        let default = conf.with_file_name("ipsec.secrets");
        let secrets = match secrets {
            Some(s) => Some(s.to_path_buf()),
            None => default.exists().then_some(default),
        };
        ipsec::read(conf, &text, secrets.as_deref())?
    };
    let toml = model.emit();
    // The output must be a file esprit reads: anything else is a bug here.
    crate::config::parse(Path::new("imported.toml"), &toml)
        .map_err(|e| ImportError::new(conf, 0, format!("internal error, bad output: {e}")))?;
    let not_carried = toml.lines().filter(|l| l.starts_with(NOTE)).count();
    Ok(Imported { toml, not_carried })
}

/// The prefix of every comment about an option that was not carried over.
const NOTE: &str = "# not carried: ";

/// A comment line about an option esprit cannot carry.
fn nc(s: impl fmt::Display) -> String {
    format!("{NOTE}{s}")
}

/// A comment line about how an option was carried.
fn remark(s: impl fmt::Display) -> String {
    format!("# {s}")
}

/// One IKE connection, in esprit's terms. `notes` here and below are whole comment
/// lines ([`nc`], [`remark`]).
#[derive(Debug, Default)]
struct Conn {
    name: String,
    notes: Vec<String>,
    local_addrs: Vec<String>,
    remote_addrs: Vec<String>,
    remote_port: Option<u16>,
    proposals: Vec<String>,
    dpd_delay: Option<String>,
    rekey_time: Option<String>,
    fragmentation: Option<bool>,
    encap: bool,
    local: Auth,
    remote: Auth,
    children: Vec<Child>,
    /// Virtual IPs to request (`leftsourceip`, `vips`).
    vips: Vec<String>,
    /// Pools to assign the peer's virtual IP from (`pools`, `rightsourceip`).
    pools: Vec<String>,
    /// Pools defined by this connection (ipsec.conf's `rightsourceip` subnet or range).
    pool_defs: Vec<PoolDef>,
    /// `mediation = true`: a connection to or on a mediation server; it has no child.
    mediation: bool,
    /// `mediated_by`: the mediation connection this one is set up through.
    mediated_by: Option<String>,
    /// `mediation_peer` (ipsec.conf's `me_peerid`).
    mediation_peer: Option<String>,
}

/// A `[pools.NAME]` section.
#[derive(Debug, Default)]
struct PoolDef {
    name: String,
    addrs: String,
    dns: Vec<String>,
    notes: Vec<String>,
}

/// Virtual IPs to request, from `leftsourceip` or `vips`: `%config` (and its synonyms)
/// asks for any address, `%config6` for an IPv6 one, an address for that address
/// (charon requests a configured one too).
fn vips(what: &str, v: &str, notes: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match a {
            "%config" | "%cfg" | "%modeconfig" | "%modecfg" | "%config4" => {
                out.push("0.0.0.0".to_string())
            }
            "%config6" => out.push("::".to_string()),
            _ if a.parse::<std::net::IpAddr>().is_ok() => out.push(a.to_string()),
            _ => notes.push(nc(format!("{what}: '{a}': not an address or %config"))),
        }
    }
    out
}

/// One side's authentication.
#[derive(Debug, Default)]
struct Auth {
    /// "psk" or "pubkey".
    auth: &'static str,
    id: Option<String>,
    certs: Vec<String>,
    cacerts: Vec<String>,
    notes: Vec<String>,
}

/// One child SA.
#[derive(Debug, Default)]
struct Child {
    name: String,
    notes: Vec<String>,
    local_ts: Vec<String>,
    remote_ts: Vec<String>,
    esp_proposals: Vec<String>,
    start_action: Option<&'static str>,
    dpd_action: Option<&'static str>,
    close_action: Option<&'static str>,
    rekey_time: Option<String>,
    updown: Option<String>,
}

/// `[secrets]`.
#[derive(Debug, Default)]
struct Secrets {
    /// (identities, secret) of each pre-shared key.
    psk: Vec<(Vec<String>, String)>,
    /// (name, file) of each private key.
    private: Vec<(String, String)>,
    notes: Vec<String>,
}

/// Everything read.
#[derive(Debug, Default)]
struct Model {
    /// The files read, for the header.
    sources: Vec<PathBuf>,
    /// Notes about the whole file (sections and connections left out).
    notes: Vec<String>,
    conns: Vec<Conn>,
    secrets: Secrets,
    /// swanctl.conf's `pools` section.
    pools: Vec<PoolDef>,
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        q(s)
    }
}

fn list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A name usable as a secrets key: letters, digits, '-' and '_'.
fn tidy_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Checks a strongSwan proposal list for `protocol`; those esprit cannot do become a
/// note and leave the default in their place.
fn proposals(
    list: Vec<String>,
    protocol: Protocol,
    what: &str,
    notes: &mut Vec<String>,
) -> Vec<String> {
    if list.is_empty() {
        return list;
    }
    match ProposalSet::parse(protocol, &list.join(",")) {
        Ok(_) => list,
        Err(e) => {
            notes.push(nc(format!(
                "{what} = {}: {e}; esprit's defaults are used instead",
                list.join(",")
            )));
            Vec::new()
        }
    }
}

impl Model {
    fn emit(&self) -> String {
        let mut t = String::new();
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let _ = writeln!(
            t,
            "# esprit configuration imported from {} by `esprit import`.",
            names.join(" and ")
        );
        let _ = writeln!(
            t,
            "# Lines starting with \"{}\" name what esprit cannot express.",
            NOTE.trim_end()
        );
        for n in &self.notes {
            let _ = writeln!(t, "{n}");
        }
        for c in &self.conns {
            c.emit(&mut t);
        }
        let defs = self
            .pools
            .iter()
            .chain(self.conns.iter().flat_map(|c| c.pool_defs.iter()));
        for p in defs {
            let _ = writeln!(t, "\n[pools.{}]", key(&p.name));
            for n in &p.notes {
                let _ = writeln!(t, "{n}");
            }
            let _ = writeln!(t, "addrs = {}", q(&p.addrs));
            if !p.dns.is_empty() {
                let _ = writeln!(t, "dns = {}", list(&p.dns));
            }
        }
        let s = &self.secrets;
        if !s.psk.is_empty() || !s.private.is_empty() || !s.notes.is_empty() {
            let _ = writeln!(t, "\n# secrets");
        }
        for n in &s.notes {
            let _ = writeln!(t, "{n}");
        }
        for (i, (ids, secret)) in s.psk.iter().enumerate() {
            let _ = writeln!(t, "[secrets.ike-{}]", i + 1);
            if !ids.is_empty() {
                let _ = writeln!(t, "id = {}", list(ids));
            }
            let _ = writeln!(t, "secret = {}", q(secret));
        }
        let mut seen = Vec::new();
        for (name, file) in &s.private {
            let mut n = tidy_name(name);
            while seen.contains(&n) {
                n.push('_');
            }
            seen.push(n.clone());
            let _ = writeln!(t, "[secrets.private.{}]\nfile = {}", key(&n), q(file));
        }
        t
    }
}

impl Conn {
    fn emit(&self, t: &mut String) {
        let at = format!("connections.{}", key(&self.name));
        let _ = writeln!(t, "\n[{at}]");
        for n in &self.notes {
            let _ = writeln!(t, "{n}");
        }
        if !self.local_addrs.is_empty() {
            let _ = writeln!(t, "local_addrs = {}", list(&self.local_addrs));
        }
        let remote = if self.remote_addrs.is_empty() {
            vec!["%any".to_string()]
        } else {
            self.remote_addrs.clone()
        };
        let _ = writeln!(t, "remote_addrs = {}", list(&remote));
        if let Some(p) = self.remote_port {
            let _ = writeln!(t, "remote_port = {p}");
        }
        if !self.proposals.is_empty() {
            let _ = writeln!(t, "proposals = {}", list(&self.proposals));
        }
        if self.encap {
            let _ = writeln!(t, "encap = true");
        }
        if let Some(d) = &self.dpd_delay {
            let _ = writeln!(t, "dpd_delay = {}", q(d));
        }
        if let Some(r) = &self.rekey_time {
            let _ = writeln!(t, "rekey_time = {}", q(r));
        }
        if let Some(f) = self.fragmentation {
            let _ = writeln!(t, "fragmentation = {f}");
        }
        if !self.vips.is_empty() {
            let _ = writeln!(t, "vips = {}", list(&self.vips));
        }
        if !self.pools.is_empty() {
            let _ = writeln!(t, "pools = {}", list(&self.pools));
        }
        if self.mediation {
            let _ = writeln!(t, "mediation = true");
        }
        if let Some(m) = &self.mediated_by {
            let _ = writeln!(t, "mediated_by = {}", q(m));
        }
        if let Some(p) = &self.mediation_peer {
            let _ = writeln!(t, "mediation_peer = {}", q(p));
        }
        for (side, a) in [("local", &self.local), ("remote", &self.remote)] {
            let _ = writeln!(t, "[{at}.{side}]");
            for n in &a.notes {
                let _ = writeln!(t, "{n}");
            }
            let _ = writeln!(t, "auth = {}", q(a.auth));
            if let Some(id) = &a.id {
                let _ = writeln!(t, "id = {}", q(id));
            }
            if !a.certs.is_empty() {
                let _ = writeln!(t, "certs = {}", list(&a.certs));
            }
            if a.auth == "pubkey" && side == "remote" {
                let _ = writeln!(t, "cacerts = {}", list(&a.cacerts));
            }
        }
        for ch in &self.children {
            let _ = writeln!(t, "[{at}.children.{}]", key(&ch.name));
            for n in &ch.notes {
                let _ = writeln!(t, "{n}");
            }
            if !ch.local_ts.is_empty() {
                let _ = writeln!(t, "local_ts = {}", list(&ch.local_ts));
            }
            if !ch.remote_ts.is_empty() {
                let _ = writeln!(t, "remote_ts = {}", list(&ch.remote_ts));
            }
            if !ch.esp_proposals.is_empty() {
                let _ = writeln!(t, "esp_proposals = {}", list(&ch.esp_proposals));
            }
            if let Some(a) = ch.start_action {
                let _ = writeln!(t, "start_action = {}", q(a));
            }
            if let Some(a) = ch.dpd_action {
                let _ = writeln!(t, "dpd_action = {}", q(a));
            }
            if let Some(a) = ch.close_action {
                let _ = writeln!(t, "close_action = {}", q(a));
            }
            if let Some(r) = &ch.rekey_time {
                let _ = writeln!(t, "rekey_time = {}", q(r));
            }
            if let Some(u) = &ch.updown {
                let _ = writeln!(t, "updown = {}", q(u));
            }
        }
    }
}

/// A strongSwan time ("60m", "1h", "3600", "2d") in seconds.
fn seconds(s: &str) -> Option<u64> {
    crate::config::parse_duration(s).ok().map(|d| d.as_secs())
}

/// Seconds as esprit writes them: the largest unit that divides them.
fn duration(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// Every file in `dir`, sorted (for the CA certificates and keys strongSwan loads from
/// its folders).
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests;
