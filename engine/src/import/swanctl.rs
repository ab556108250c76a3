//! swanctl.conf (strongSwan's settings syntax: `name { key = value }`). Its vocabulary
//! is esprit's own, so most keys carry over as they are; relative certificate and key
//! files are taken from the folders beside swanctl.conf where `swanctl --load-all`
//! looks (x509/, x509ca/, private/, rsa/, ecdsa/, pkcs8/), and the keys swanctl loads
//! from those folders without naming them are listed too.

use std::path::Path;

use ike::proposal::Protocol;

use super::{files_in, nc, proposals, remark, Auth, Child, Conn, ImportError, Model};

/// A section: its name, line, settings and subsections, in file order.
#[derive(Debug, Default)]
struct Node {
    name: String,
    line: usize,
    values: Vec<(String, String, usize)>,
    children: Vec<Node>,
}

impl Node {
    fn get(&self, k: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(key, _, _)| key == k)
            .map(|(_, v, _)| v.as_str())
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Whether `text` is in swanctl.conf's syntax rather than ipsec.conf's.
pub(super) fn looks_like(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .any(|l| l.ends_with('{'))
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v)
        .to_string()
}

fn parse(file: &Path, text: &str, notes: &mut Vec<String>) -> Result<Node, ImportError> {
    let mut stack = vec![Node::default()];
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            if stack.len() == 1 {
                return Err(ImportError::new(file, n, "'}' without a section to close"));
            }
            let done = stack.pop().unwrap_or_default();
            if let Some(parent) = stack.last_mut() {
                parent.children.push(done);
            }
            continue;
        }
        if let Some(name) = line.strip_suffix('{') {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(ImportError::new(
                    file,
                    n,
                    format!("'{line}': a section is `name {{`"),
                ));
            }
            stack.push(Node {
                name: name.to_string(),
                line: n,
                ..Node::default()
            });
            continue;
        }
        if let Some(inc) = line.strip_prefix("include ") {
            notes.push(nc(format!(
                "line {n}: include {}: not followed; import that file too",
                inc.trim()
            )));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ImportError::new(
                file,
                n,
                format!("'{line}': expected `key = value`, `name {{` or `}}`"),
            ));
        };
        if let Some(top) = stack.last_mut() {
            top.values.push((k.trim().to_string(), unquote(v), n));
        }
    }
    if stack.len() > 1 {
        let open = stack
            .last()
            .map(|s| (s.line, s.name.clone()))
            .unwrap_or_default();
        return Err(ImportError::new(
            file,
            open.0,
            format!("section '{}' is never closed", open.1),
        ));
    }
    Ok(stack.pop().unwrap_or_default())
}

fn split(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A file swanctl finds in `dir` under the swanctl folder when relative.
fn beside(conf: &Path, dir: &str, file: &str) -> String {
    if Path::new(file).is_absolute() {
        return file.to_string();
    }
    conf.parent()
        .unwrap_or(Path::new(""))
        .join(dir)
        .join(file)
        .display()
        .to_string()
}

fn auth_kind(v: &str) -> Option<&'static str> {
    let v = v.split('-').next().unwrap_or(v);
    match v {
        "psk" => Some("psk"),
        "pubkey" | "rsa" | "ecdsa" => Some("pubkey"),
        _ => None,
    }
}

/// Connection keys carried (or checked) by [`conn`].
const CONN_KEYS: &[&str] = &[
    "version",
    "local_addrs",
    "remote_addrs",
    "remote_port",
    "local_port",
    "proposals",
    "encap",
    "mobike",
    "dpd_delay",
    "rekey_time",
    "fragmentation",
    "mediation",
    "mediated_by",
    "mediation_peer",
    "keyingtries",
    "vips",
    "pools",
];

const CHILD_KEYS: &[&str] = &[
    "local_ts",
    "remote_ts",
    "esp_proposals",
    "start_action",
    "dpd_action",
    "close_action",
    "rekey_time",
    "updown",
    "mode",
];

fn conn(conf: &Path, node: &Node) -> Result<Conn, String> {
    let name = &node.name;
    let why = |s: String| {
        nc(format!(
            "connection {name}: {s}; the connection is left out"
        ))
    };
    if node.get("version") == Some("1") {
        return Err(why("version = 1: esprit speaks IKEv2 only".into()));
    }
    let mut c = Conn {
        name: name.clone(),
        ..Conn::default()
    };
    let n = &mut c.notes;
    for (key, out) in [
        ("local_addrs", &mut c.local_addrs),
        ("remote_addrs", &mut c.remote_addrs),
    ] {
        for a in node.get(key).map(split).unwrap_or_default() {
            if a == "%any" || a == "%any4" || a == "%any6" {
                continue;
            }
            if a.parse::<std::net::IpAddr>().is_ok() {
                out.push(a);
            } else {
                n.push(nc(format!(
                    "{key}: '{a}': esprit takes addresses only (no names, subnets or ranges)"
                )));
            }
        }
    }
    if let Some(p) = node.get("remote_port") {
        match p.parse::<u16>() {
            Ok(500) => {}
            Ok(p) => c.remote_port = Some(p),
            Err(_) => n.push(nc(format!("remote_port = {p}: not a port"))),
        }
    }
    if let Some(p) = node.get("local_port").filter(|p| *p != "500") {
        n.push(nc(format!(
            "local_port = {p}: esprit listens on [daemon] port for every connection"
        )));
    }
    if let Some(p) = node.get("proposals") {
        c.proposals = proposals(split(p), Protocol::Ike, "proposals", n);
    }
    c.encap = node.get("encap") == Some("yes");
    if node.get("mobike") == Some("yes") {
        n.push(nc("mobike = yes: esprit has no MOBIKE (RFC 4555)"));
    }
    c.dpd_delay = node
        .get("dpd_delay")
        .filter(|d| *d != "0")
        .map(str::to_string);
    c.rekey_time = node.get("rekey_time").map(str::to_string);
    c.fragmentation = match node.get("fragmentation") {
        Some("no") => Some(false),
        _ => None,
    };
    if let Some(v) = node.get("vips") {
        c.vips = super::vips("vips", v, n);
    }
    if let Some(p) = node.get("pools") {
        c.pools = split(p);
    }
    // IKE mediation, the same three keys as swanctl.conf.
    c.mediation = node.get("mediation") == Some("yes");
    c.mediated_by = node.get("mediated_by").map(str::to_string);
    c.mediation_peer = node.get("mediation_peer").map(str::to_string);
    if let Some(k) = node.get("keyingtries").filter(|k| *k != "0") {
        n.push(nc(format!(
            "keyingtries = {k}: esprit retries start_action = start until the peer answers"
        )));
    }
    for (k, v, line) in &node.values {
        if !CONN_KEYS.contains(&k.as_str()) {
            n.push(nc(format!("line {line}: {k} = {v}: not supported")));
        }
    }
    // Authentication rounds: the first local and remote one.
    for side in ["local", "remote"] {
        let mut rounds: Vec<&Node> = node
            .children
            .iter()
            .filter(|s| s.name == side || s.name.starts_with(&format!("{side}-")))
            .collect();
        rounds.sort_by(|a, b| a.name.cmp(&b.name));
        let Some(r) = rounds.first() else {
            return Err(why(format!("no {side} section")));
        };
        for extra in &rounds[1..] {
            c.notes.push(nc(format!(
                "{}: a second authentication round is not supported",
                extra.name
            )));
        }
        let mut a = Auth {
            id: r.get("id").map(str::to_string),
            ..Auth::default()
        };
        let kind = r.get("auth").unwrap_or("pubkey");
        a.auth = auth_kind(kind).ok_or_else(|| {
            why(format!(
                "{side}.auth = {kind}: esprit does psk and pubkey only"
            ))
        })?;
        for (k, v, line) in &r.values {
            match (side, k.as_str()) {
                (_, "auth" | "id") => {}
                ("local", "certs") => {
                    a.certs = split(v).iter().map(|f| beside(conf, "x509", f)).collect()
                }
                ("remote", "cacerts") => {
                    a.cacerts = split(v).iter().map(|f| beside(conf, "x509ca", f)).collect()
                }
                _ => a
                    .notes
                    .push(nc(format!("line {line}: {k} = {v}: not supported"))),
            }
        }
        for s in &r.children {
            a.notes.push(nc(format!(
                "line {}: {}: certificate subsections (smartcards) are not supported",
                s.line, s.name
            )));
        }
        if side == "local" && a.auth == "pubkey" && a.certs.is_empty() {
            return Err(why("local pubkey authentication without certs".into()));
        }
        if side == "remote" && a.auth == "pubkey" && a.cacerts.is_empty() {
            // swanctl --load-all trusts every CA in x509ca/.
            let dir = conf.parent().unwrap_or(Path::new("")).join("x509ca");
            a.cacerts = files_in(&dir);
            a.notes.push(remark(format!(
                "cacerts: the CA files swanctl loads from {}",
                dir.display()
            )));
        }
        if side == "local" {
            c.local = a;
        } else {
            c.remote = a;
        }
    }
    for s in &node.children {
        let round = s.name == "local"
            || s.name == "remote"
            || s.name.starts_with("local-")
            || s.name.starts_with("remote-");
        if !round && s.name != "children" {
            c.notes
                .push(nc(format!("line {}: {}: not supported", s.line, s.name)));
        }
    }
    for ch in node
        .child("children")
        .map(|c| c.children.as_slice())
        .unwrap_or_default()
    {
        // A mediated connection's peer is found through the mediation server.
        match child(ch, !c.remote_addrs.is_empty() || c.mediated_by.is_some()) {
            Ok(x) => c.children.push(x),
            Err(e) => c.notes.push(e),
        }
    }
    Ok(c)
}

fn child(node: &Node, have_peer: bool) -> Result<Child, String> {
    let mut ch = Child {
        name: node.name.clone(),
        ..Child::default()
    };
    let n = &mut ch.notes;
    if let Some(m) = node.get("mode").filter(|m| *m != "tunnel") {
        return Err(nc(format!(
            "child {}: mode = {m}: esprit does tunnel mode only; the child is left out",
            node.name
        )));
    }
    for (key, out) in [
        ("local_ts", &mut ch.local_ts),
        ("remote_ts", &mut ch.remote_ts),
    ] {
        for ts in node.get(key).map(split).unwrap_or_default() {
            if ts.contains('[') {
                n.push(nc(format!(
                    "{key}: '{ts}': protocol/port selectors are not supported; left out"
                )));
            } else {
                out.push(ts);
            }
        }
    }
    if let Some(p) = node.get("esp_proposals") {
        ch.esp_proposals = proposals(split(p), Protocol::Esp, "esp_proposals", n);
    }
    ch.start_action = match node.get("start_action").unwrap_or("none") {
        "none" => None,
        a @ ("start" | "trap" | "trap|start" | "start|trap") if !have_peer => {
            n.push(nc(format!(
                "start_action = {a}: the connection has no remote_addrs to negotiate with"
            )));
            None
        }
        "start" => Some("start"),
        "trap" => Some("trap"),
        a @ ("trap|start" | "start|trap") => {
            n.push(nc(format!(
                "start_action = {a}: esprit does one of them; start is used"
            )));
            Some("start")
        }
        a => {
            n.push(nc(format!("start_action = {a}: unknown")));
            None
        }
    };
    ch.dpd_action = match node.get("dpd_action") {
        Some("clear") => Some("clear"),
        Some("trap") | Some("hold") => Some("trap"),
        Some("restart") | Some("start") => Some("restart"),
        Some("none") | None => None,
        Some(a) => {
            n.push(nc(format!("dpd_action = {a}: unknown")));
            None
        }
    };
    // charon 5.9 spells it none|clear|trap|start; older releases hold and restart.
    ch.close_action = match node.get("close_action") {
        Some("trap") | Some("hold") => Some("trap"),
        Some("start") | Some("restart") => Some("start"),
        Some("none") | Some("clear") | None => None,
        Some(a) => {
            n.push(nc(format!("close_action = {a}: unknown")));
            None
        }
    };
    ch.rekey_time = node.get("rekey_time").map(str::to_string);
    ch.updown = node.get("updown").map(str::to_string);
    for (k, v, line) in &node.values {
        if !CHILD_KEYS.contains(&k.as_str()) {
            n.push(nc(format!("line {line}: {k} = {v}: not supported")));
        }
    }
    Ok(ch)
}

/// A `pools.NAME` section: its addresses and DNS servers; other attributes are notes.
fn pool(node: &Node, m: &mut Model) {
    let mut p = super::PoolDef {
        name: node.name.clone(),
        ..Default::default()
    };
    for (k, v, line) in &node.values {
        match k.as_str() {
            "addrs" => p.addrs = v.clone(),
            "dns" => p.dns = split(v),
            _ => p.notes.push(nc(format!(
                "line {line}: {k} = {v}: esprit sends addresses and DNS"
            ))),
        }
    }
    match ike::endpoint::Pool::parse(&p.name, &p.addrs) {
        Ok(_) => m.pools.push(p),
        Err(e) => m.notes.push(nc(format!(
            "line {}: pool {}: addrs = {}: {e}; the pool is left out",
            node.line, node.name, p.addrs
        ))),
    }
}

/// Reads swanctl.conf into the model.
pub(super) fn read(conf: &Path, text: &str) -> Result<Model, ImportError> {
    let mut m = Model {
        sources: vec![conf.to_path_buf()],
        ..Model::default()
    };
    let root = parse(conf, text, &mut m.notes)?;
    for (k, v, line) in &root.values {
        m.notes
            .push(nc(format!("line {line}: {k} = {v}: not supported")));
    }
    for top in &root.children {
        match top.name.as_str() {
            "connections" => {
                for c in &top.children {
                    match conn(conf, c) {
                        Ok(c) => m.conns.push(c),
                        Err(why) => m.notes.push(why),
                    }
                }
            }
            "secrets" => secrets(conf, top, &mut m),
            "pools" => {
                for p in &top.children {
                    pool(p, &mut m);
                }
            }
            other => m.notes.push(nc(format!(
                "line {}: {other}: esprit has no authority sections",
                top.line
            ))),
        }
    }
    // swanctl --load-all loads every key in these folders.
    for dir in ["private", "rsa", "ecdsa", "pkcs8"] {
        let d = conf.parent().unwrap_or(Path::new("")).join(dir);
        for f in files_in(&d) {
            if !m.secrets.private.iter().any(|(_, p)| *p == f) {
                let stem = Path::new(&f)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dir.to_string());
                m.secrets.private.push((stem, f));
            }
        }
    }
    Ok(m)
}

fn secrets(conf: &Path, node: &Node, m: &mut Model) {
    let s = &mut m.secrets;
    for e in &node.children {
        // Section names say what a secret is: ike-x, private-y, eap...
        let base: String = e
            .name
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        match base.as_str() {
            "ike" => {
                let ids: Vec<String> = e
                    .values
                    .iter()
                    .filter(|(k, _, _)| k.starts_with("id"))
                    .map(|(_, v, _)| v.clone())
                    .filter(|v| v != "%any")
                    .collect();
                match e.get("secret") {
                    Some(secret) => s.psk.push((ids, secret.to_string())),
                    None => s
                        .notes
                        .push(nc(format!("line {}: {}: no secret", e.line, e.name))),
                }
            }
            "private" | "rsa" | "ecdsa" | "pkcs8" => {
                let dir = if base == "private" {
                    "private"
                } else {
                    base.as_str()
                };
                match e.get("file") {
                    Some(f) => s.private.push((e.name.clone(), beside(conf, dir, f))),
                    None => s
                        .notes
                        .push(nc(format!("line {}: {}: no file", e.line, e.name))),
                }
                if e.get("secret").is_some() {
                    s.notes.push(nc(format!(
                        "line {}: {}: the key's passphrase: esprit reads unencrypted keys only",
                        e.line, e.name
                    )));
                }
            }
            _ => s.notes.push(nc(format!(
                "line {}: {}: esprit has no EAP, XAuth, NTLM, PPK, PKCS#12 or token secrets",
                e.line, e.name
            ))),
        }
    }
}
