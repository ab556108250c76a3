//! ipsec.conf and ipsec.secrets (strongSwan's starter format). Sections start at the
//! beginning of a line (`config setup`, `conn NAME`, `ca NAME`), settings are indented
//! `key=value` lines. As in strongSwan 5's parser, a key given twice in one section keeps
//! its last value, an empty value unsets it, and a connection inherits from the sections
//! it names with `also=` (the last one first) and then from `conn %default`. Relative
//! certificate and key files are taken from the `ipsec.d` folder beside ipsec.conf, where
//! strongSwan looks for them.

use std::collections::BTreeMap;
use std::path::Path;

use ike::proposal::Protocol;

use super::{
    duration, files_in, nc, proposals, remark, seconds, Auth, Child, Conn, ImportError, Model,
};

/// strongSwan's ipsec.conf defaults for the lifetimes (`ikelifetime`, `lifetime`,
/// `margintime`), in seconds.
const IKELIFETIME: u64 = 3 * 3600;
const LIFETIME: u64 = 3600;
const MARGINTIME: u64 = 9 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Setup,
    Conn,
    Ca,
}

/// One setting: value and line.
type Setting = (String, usize);

#[derive(Debug)]
struct Section {
    kind: Kind,
    name: String,
    line: usize,
    settings: BTreeMap<String, Setting>,
    /// `also=` names, in file order.
    also: Vec<String>,
    /// Remarks found while parsing (keys given twice).
    remarks: Vec<String>,
}

/// Removes a `#` comment (outside double quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A value without its surrounding double quotes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

fn parse(file: &Path, text: &str, notes: &mut Vec<String>) -> Result<Vec<Section>, ImportError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with(|c: char| c.is_whitespace());
        if !indented {
            let mut words = line.split_whitespace();
            let head = words.next().unwrap_or_default();
            let rest: Vec<&str> = words.collect();
            let (kind, name) = match (head, rest.as_slice()) {
                ("config", ["setup"]) => (Kind::Setup, "setup".to_string()),
                ("conn", [name]) => (Kind::Conn, name.to_string()),
                ("ca", [name]) => (Kind::Ca, name.to_string()),
                ("version", _) => continue,
                ("include", _) => {
                    notes.push(nc(format!(
                        "line {n}: {}: included files are not followed; import them too",
                        line.trim()
                    )));
                    continue;
                }
                _ => {
                    return Err(ImportError::new(
                        file,
                        n,
                        format!(
                            "'{}': expected `config setup`, `conn NAME`, `ca NAME` or an indented key=value",
                            line.trim()
                        ),
                    ))
                }
            };
            // A section named again continues the first one, as in strongSwan.
            if let Some(at) = sections
                .iter()
                .position(|s| s.kind == kind && s.name == name)
            {
                let s = sections.remove(at);
                sections.push(s);
            } else {
                sections.push(Section {
                    kind,
                    name,
                    line: n,
                    settings: BTreeMap::new(),
                    also: Vec::new(),
                    remarks: Vec::new(),
                });
            }
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(ImportError::new(
                file,
                n,
                "an indented setting before any section",
            ));
        };
        let Some((k, v)) = line.trim().split_once('=') else {
            return Err(ImportError::new(
                file,
                n,
                format!("'{}': expected key=value", line.trim()),
            ));
        };
        let (k, v) = (k.trim().to_string(), unquote(v));
        if k == "also" {
            section.also.push(v);
            continue;
        }
        if let Some((old, _)) = section.settings.get(&k) {
            section.remarks.push(remark(format!(
                "line {n}: {k} given twice in {} {}; the last one counts, as in strongSwan (was {old})",
                if section.kind == Kind::Conn { "conn" } else { "section" },
                section.name
            )));
        }
        section.settings.insert(k, (v, n));
    }
    Ok(sections)
}

/// The settings of `name` with everything it inherits (own first, then `also=`
/// sections from the last named, then `%default`); empty values unset a key.
fn effective(sections: &[Section], name: &str) -> BTreeMap<String, Setting> {
    fn walk<'a>(
        sections: &'a [Section],
        name: &str,
        seen: &mut Vec<String>,
        out: &mut Vec<&'a Section>,
    ) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        let Some(s) = sections
            .iter()
            .find(|s| s.kind == Kind::Conn && s.name == name)
        else {
            return;
        };
        out.push(s);
        for parent in s.also.iter().rev() {
            walk(sections, parent, seen, out);
        }
    }
    let mut chain = Vec::new();
    walk(sections, name, &mut Vec::new(), &mut chain);
    if let Some(d) = sections
        .iter()
        .find(|s| s.kind == Kind::Conn && s.name == "%default")
    {
        chain.push(d);
    }
    let mut out: BTreeMap<String, Setting> = BTreeMap::new();
    for s in chain {
        for (k, v) in &s.settings {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out.retain(|_, (v, _)| !v.is_empty());
    out
}

/// Where strongSwan finds relative files: `ipsec.d/SUB` beside ipsec.conf.
fn in_ipsec_d(conf: &Path, sub: &str, file: &str) -> String {
    let p = Path::new(file);
    if p.is_absolute() {
        return file.to_string();
    }
    conf.parent()
        .unwrap_or(Path::new(""))
        .join("ipsec.d")
        .join(sub)
        .join(p)
        .display()
        .to_string()
}

/// Addresses of `left`/`right`: an empty list means any.
fn addrs(key: &str, v: &str, notes: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match a {
            "%any" | "%any4" | "%any6" | "%defaultroute" | "%opportunistic" => {}
            _ => {
                let a = a.trim_start_matches('%');
                if a.parse::<std::net::IpAddr>().is_ok() {
                    out.push(a.to_string());
                } else {
                    notes.push(nc(format!(
                        "{key}={v}: '{a}' is not an address (esprit resolves no names or ranges)"
                    )));
                }
            }
        }
    }
    out
}

/// Subnets of `leftsubnet`/`rightsubnet`.
fn subnets(key: &str, v: &str, notes: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if s == "%dynamic" {
            out.push("dynamic".into());
        } else if s.contains('[') {
            notes.push(nc(format!(
                "{key}: '{s}': protocol/port selectors are not supported; left out"
            )));
        } else {
            out.push(s.to_string());
        }
    }
    out
}

/// strongSwan's ipsec.conf proposal list: `!` makes it strict, otherwise charon adds its
/// defaults after the list.
fn proposal_list(v: &str) -> Vec<String> {
    let strict = v.trim_end().ends_with('!');
    let mut out: Vec<String> = v
        .trim_end()
        .trim_end_matches('!')
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if !strict && !out.is_empty() {
        out.push("default".into());
    }
    out
}

/// leftauth/rightauth/authby values as esprit's `auth`; None when esprit cannot do it.
fn auth_kind(v: &str) -> Option<&'static str> {
    match v {
        "psk" | "secret" => Some("psk"),
        "pubkey" | "rsasig" | "ecdsasig" | "rsa" | "ecdsa" => Some("pubkey"),
        v if v.starts_with("rsa-") || v.starts_with("ecdsa-") || v.starts_with("pubkey-") => {
            Some("pubkey")
        }
        _ => None,
    }
}

/// Keys handled by [`conn`]; every other key becomes a "not carried" note.
const HANDLED: &[&str] = &[
    "auto",
    "type",
    "keyexchange",
    "left",
    "right",
    "leftid",
    "rightid",
    "leftcert",
    "leftauth",
    "rightauth",
    "authby",
    "leftsubnet",
    "rightsubnet",
    "leftupdown",
    "rightikeport",
    "rightca",
    "ike",
    "esp",
    "ikelifetime",
    "lifetime",
    "keylife",
    "margintime",
    "rekeymargin",
    "rekey",
    "dpddelay",
    "dpdaction",
    "closeaction",
    "forceencaps",
    "fragmentation",
    "mobike",
    "mediated_by",
    "me_peerid",
    "keyingtries",
    "leftsourceip",
    "rightsourceip",
];

/// One `conn`, or why it is left out (a "not carried" line).
fn conn(conf: &Path, name: &str, set: &BTreeMap<String, Setting>) -> Result<Conn, String> {
    let get = |k: &str| set.get(k).map(|(v, _)| v.as_str());
    let yes = |k: &str| get(k) == Some("yes");
    let why = |s: String| nc(format!("conn {name}: {s}; the connection is left out"));
    let auto = get("auto").unwrap_or("ignore");
    if auto == "ignore" {
        return Err(remark(format!(
            "conn {name}: auto=ignore (the default): strongSwan does not load it either; left out"
        )));
    }
    match get("keyexchange") {
        Some("ikev1") => return Err(why("keyexchange=ikev1: esprit speaks IKEv2 only".into())),
        Some("ike") | Some("ikev2") | None => {}
        Some(k) => return Err(why(format!("keyexchange={k}: unknown"))),
    }
    match get("type").unwrap_or("tunnel") {
        "tunnel" => {}
        t => return Err(why(format!("type={t}: esprit does tunnel mode only"))),
    }
    if get("ah").is_some() {
        return Err(why("ah: esprit does ESP only".into()));
    }
    let mut c = Conn {
        name: name.to_string(),
        ..Conn::default()
    };
    let n = &mut c.notes;
    if get("keyexchange") == Some("ike") {
        n.push(nc("keyexchange=ike: esprit answers IKEv2 only"));
    }
    c.local_addrs = get("left").map_or_else(Vec::new, |v| addrs("left", v, n));
    c.remote_addrs = get("right").map_or_else(Vec::new, |v| addrs("right", v, n));
    if let Some(p) = get("rightikeport") {
        match p.parse::<u16>() {
            Ok(p) if p != 500 => c.remote_port = Some(p),
            Ok(_) => {}
            Err(_) => n.push(nc(format!("rightikeport={p}: not a port"))),
        }
    }
    // IKE mediation (draft-brunner-ikev2-mediation) in swanctl's words: a mediation
    // connection carries no child, a mediated one finds its peer through the server.
    c.mediation = yes("mediation");
    c.mediated_by = get("mediated_by").map(str::to_string);
    c.mediation_peer = get("me_peerid").map(|v| v.trim_matches('"').to_string());
    if let Some(v) = get("ike") {
        c.proposals = proposals(proposal_list(v), Protocol::Ike, "ike", n);
    }
    match get("dpdaction").unwrap_or("none") {
        "none" => {
            if let Some(d) = get("dpddelay") {
                n.push(remark(format!(
                    "dpddelay={d} with dpdaction=none: no liveness checks, as in strongSwan"
                )));
            }
        }
        a => {
            let d = get("dpddelay").unwrap_or("30s");
            c.dpd_delay = seconds(d).map(duration);
            if c.dpd_delay.is_none() {
                n.push(nc(format!("dpddelay={d}: not a time")));
            }
            if !matches!(a, "clear" | "hold" | "restart") {
                n.push(nc(format!("dpdaction={a}: unknown")));
            }
        }
    }
    let margin = get("margintime")
        .or(get("rekeymargin"))
        .map_or(Some(MARGINTIME), seconds);
    let rekey = get("rekey") != Some("no");
    let ike_life = get("ikelifetime").map_or(Some(IKELIFETIME), seconds);
    let child_life = get("lifetime")
        .or(get("keylife"))
        .map_or(Some(LIFETIME), seconds);
    let rekey_at = |life: Option<u64>, what: &str, n: &mut Vec<String>| -> Option<String> {
        if !rekey {
            return Some("0s".into());
        }
        match (life, margin) {
            // charon rekeys margintime before the lifetime ends.
            (Some(l), Some(m)) if l > m => Some(duration(l - m)),
            _ => {
                n.push(nc(format!("{what}/margintime: not times esprit can use")));
                None
            }
        }
    };
    if get("ikelifetime").is_some()
        || get("margintime").is_some()
        || get("rekeymargin").is_some()
        || !rekey
    {
        c.rekey_time = rekey_at(ike_life, "ikelifetime", n);
    }
    if get("rekeyfuzz").is_some() {
        n.push(nc(format!(
            "rekeyfuzz={}: esprit rekeys at rekey_time exactly",
            get("rekeyfuzz").unwrap_or_default()
        )));
    }
    if yes("forceencaps") {
        c.encap = true;
    }
    if let Some(v) = get("leftsourceip") {
        if c.mediation {
            n.push(nc(format!(
                "leftsourceip={v}: a mediation connection carries no traffic, so no virtual IP"
            )));
        } else {
            c.vips = super::vips("leftsourceip", v, n);
        }
    }
    if let Some(v) = get("rightsourceip") {
        // A subnet or range is a pool for the peer (charon's in-memory pool named
        // after the conn); %config is the peer's own request, nothing to carry.
        for (i, a) in v.split(',').map(str::trim).enumerate() {
            if a.starts_with('%') {
                n.push(nc(format!(
                    "rightsourceip={a}: only subnets and ranges become pools"
                )));
                continue;
            }
            match ike::endpoint::Pool::parse(name, a) {
                Ok(_) => {
                    let pool = if i == 0 {
                        super::tidy_name(name)
                    } else {
                        format!("{}-{i}", super::tidy_name(name))
                    };
                    c.pools.push(pool.clone());
                    c.pool_defs.push(super::PoolDef {
                        name: pool,
                        addrs: a.to_string(),
                        ..Default::default()
                    });
                }
                Err(e) => n.push(nc(format!("rightsourceip={a}: {e}"))),
            }
        }
    }
    match get("fragmentation") {
        Some("no") => c.fragmentation = Some(false),
        Some("yes" | "accept" | "force") | None => {}
        Some(f) => n.push(nc(format!("fragmentation={f}: unknown"))),
    }
    if yes("mobike") {
        n.push(nc("mobike=yes: esprit has no MOBIKE (RFC 4555)"));
    }
    if let Some(k) = get("keyingtries") {
        if k != "%forever" && k != "0" {
            n.push(nc(format!(
                "keyingtries={k}: esprit retries start_action=start connections until the peer answers (1 s doubling to 60 s)"
            )));
        }
    }
    for (k, (v, line)) in set {
        let side_key = k.starts_with("left") || k.starts_with("right");
        if HANDLED.contains(&k.as_str()) || k == "mediation" {
            continue;
        }
        let why = match k.as_str() {
            "leftfirewall" | "lefthostaccess" => "esprit adds no firewall rules; use updown",
            "rightcert" => "the peer's certificate must be vouched for by a CA in cacerts",
            "leftca" => "esprit sends its certificate chain from certs",
            "dpdtimeout" => "IKEv2 declares a peer dead after its retransmissions",
            "reauth" => "esprit rekeys the IKE SA (RFC 7296 2.8) instead of reauthenticating",
            _ if side_key => "not supported",
            _ => "not supported",
        };
        c.notes.push(nc(format!("line {line}: {k}={v}: {why}")));
    }
    // Authentication of both sides.
    let authby = get("authby");
    for (side, auth_key, out) in [
        ("left", "leftauth", &mut c.local),
        ("right", "rightauth", &mut c.remote),
    ] {
        let id = get(&format!("{side}id"));
        let mut a = Auth {
            id: id.map(str::to_string),
            ..Auth::default()
        };
        let kind = match (get(auth_key), authby) {
            (Some(v), _) => auth_kind(v)
                .ok_or_else(|| why(format!("{auth_key}={v}: esprit does psk and pubkey only")))?,
            (None, Some(v)) => auth_kind(v)
                .ok_or_else(|| why(format!("authby={v}: esprit does psk and pubkey only")))?,
            // charon's default: public keys.
            (None, None) => "pubkey",
        };
        a.auth = kind;
        if side == "left" {
            if let Some(cert) = get("leftcert") {
                a.certs = vec![in_ipsec_d(conf, "certs", cert)];
            } else if kind == "pubkey" {
                return Err(why("pubkey authentication without leftcert".into()));
            }
        } else if kind == "pubkey" {
            let dir = conf
                .parent()
                .unwrap_or(Path::new(""))
                .join("ipsec.d/cacerts");
            a.cacerts = files_in(&dir);
            if let Some(ca) = get("rightca") {
                a.notes.push(remark(format!(
                    "rightca=\"{ca}\": esprit trusts the CA files in cacerts; keep the one you mean"
                )));
            }
            if a.cacerts.is_empty() {
                a.notes.push(remark(format!(
                    "no CA certificate found in {}: list the CAs that vouch for the peer",
                    dir.display()
                )));
            }
        }
        *out = a;
    }
    // One child SA named like the connection, as charon makes it.
    let mut ch = Child {
        name: name.to_string(),
        ..Child::default()
    };
    let cn = &mut ch.notes;
    if let Some(v) = get("leftsubnet") {
        ch.local_ts = subnets("leftsubnet", v, cn);
    }
    if let Some(v) = get("rightsubnet") {
        ch.remote_ts = subnets("rightsubnet", v, cn);
    }
    if let Some(v) = get("esp") {
        ch.esp_proposals = proposals(proposal_list(v), Protocol::Esp, "esp", cn);
    }
    ch.start_action = match auto {
        // A mediated connection has no right= of its own: the server finds the peer.
        "start" if c.mediated_by.is_some() => Some("start"),
        "start" | "route" if c.remote_addrs.is_empty() => {
            cn.push(nc(format!(
                "auto={auto}: there is no right= address to negotiate with (it came from mediation or is %any); start it from the peer"
            )));
            None
        }
        "start" => Some("start"),
        "route" => Some("trap"),
        "add" => None,
        a => {
            cn.push(nc(format!("auto={a}: unknown")));
            None
        }
    };
    ch.dpd_action = match get("dpdaction") {
        Some("clear") => Some("clear"),
        Some("hold") => Some("trap"),
        Some("restart") => Some("restart"),
        _ => None,
    };
    ch.close_action = match get("closeaction") {
        Some("hold") => Some("trap"),
        Some("restart") => Some("start"),
        Some("none") | Some("clear") | None => None,
        Some(a) => {
            cn.push(nc(format!("closeaction={a}: unknown")));
            None
        }
    };
    if get("lifetime").is_some()
        || get("keylife").is_some()
        || get("margintime").is_some()
        || get("rekeymargin").is_some()
        || !rekey
    {
        ch.rekey_time = rekey_at(child_life, "lifetime", cn);
    }
    if let Some(u) = get("leftupdown") {
        ch.updown = Some(u.to_string());
    }
    if c.mediation {
        // Registration needs no child and no start_action: esprit registers through
        // every mediation connection with an address as soon as it starts.
        if ch.local_ts.len() + ch.remote_ts.len() > 0 {
            c.notes.push(nc(
                "leftsubnet/rightsubnet on a mediation connection: it carries no child SA",
            ));
        }
    } else {
        c.children.push(ch);
    }
    Ok(c)
}

/// Reads ipsec.conf (and ipsec.secrets) into the model.
pub(super) fn read(conf: &Path, text: &str, secrets: Option<&Path>) -> Result<Model, ImportError> {
    let mut m = Model {
        sources: vec![conf.to_path_buf()],
        ..Model::default()
    };
    let sections = parse(conf, text, &mut m.notes)?;
    for s in &sections {
        match s.kind {
            Kind::Setup => {
                for (k, (v, line)) in &s.settings {
                    m.notes.push(nc(format!(
                        "line {line}: config setup: {k}={v}: charon's logging, uniqueness and CRL settings have no esprit counterpart"
                    )));
                }
            }
            Kind::Ca => m.notes.push(nc(format!(
                "line {}: ca {}: ca sections are not read; esprit trusts the cacerts of each connection",
                s.line, s.name
            ))),
            Kind::Conn if s.name == "%default" => {}
            Kind::Conn => {
                let set = effective(&sections, &s.name);
                match conn(conf, &s.name, &set) {
                    Ok(mut c) => {
                        let mut notes = s.remarks.clone();
                        notes.append(&mut c.notes);
                        c.notes = notes;
                        m.conns.push(c);
                    }
                    Err(why) => m.notes.push(why),
                }
            }
        }
    }
    if let Some(path) = secrets {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ImportError::new(path, 0, format!("cannot read: {e}")))?;
        m.sources.push(path.to_path_buf());
        read_secrets(conf, path, &text, &mut m)?;
    }
    Ok(m)
}

/// Splits `ID1 "ID 2" ...` into identities.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The position of the ':' that separates identities from the secret: one at the start
/// of the entry or after whitespace, outside quotes (an IPv6 identity has colons too).
fn separator(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted && prev_space => return Some(i),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    None
}

fn read_secrets(conf: &Path, path: &Path, text: &str, m: &mut Model) -> Result<(), ImportError> {
    // An entry continues on indented lines.
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        match entries.last_mut() {
            Some((_, e)) if line.starts_with(|c: char| c.is_whitespace()) => {
                e.push(' ');
                e.push_str(line.trim());
            }
            _ => entries.push((i + 1, line.trim().to_string())),
        }
    }
    let s = &mut m.secrets;
    for (n, e) in entries {
        if let Some(f) = e.strip_prefix("include ") {
            s.notes.push(nc(format!(
                "{}: line {n}: include {}: not followed; import that file too",
                path.display(),
                f.trim()
            )));
            continue;
        }
        let Some(at) = separator(&e) else {
            return Err(ImportError::new(
                path,
                n,
                "expected `[IDs] : TYPE value` (no ':' found)",
            ));
        };
        let ids: Vec<String> = words(&e[..at])
            .into_iter()
            .filter(|i| i != "%any" && i != "%any6")
            .collect();
        let rest = e[at + 1..].trim();
        let (kind, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let value = value.trim();
        match kind.to_ascii_uppercase().as_str() {
            "PSK" => {
                let secret = unquote(value);
                if secret.is_empty() {
                    return Err(ImportError::new(path, n, "PSK without a secret"));
                }
                s.psk.push((ids, secret));
            }
            "RSA" | "ECDSA" | "PKCS8" | "BLISS" => {
                let parts = words(value);
                let Some(file) = parts.first() else {
                    return Err(ImportError::new(path, n, format!("{kind} without a key file")));
                };
                if parts.len() > 1 {
                    s.notes.push(nc(format!(
                        "{}: line {n}: the passphrase of {file}: esprit reads unencrypted keys only (`openssl pkey -in {file} -out ...`)",
                        path.display()
                    )));
                }
                let stem = Path::new(file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("key{n}"));
                s.private.push((stem, in_ipsec_d(conf, "private", file)));
            }
            other => s.notes.push(nc(format!(
                "{}: line {n}: {other} secret: esprit has no EAP, XAuth, PKCS#12 or smartcard authentication",
                path.display()
            ))),
        }
    }
    Ok(())
}

/// For the tests: where a relative file lands.
#[cfg(test)]
pub(super) fn ipsec_d(conf: &Path, sub: &str, file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(in_ipsec_d(conf, sub, file))
}
