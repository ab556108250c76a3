//! `esprit cni` (or the binary called as `esprit-cni`): a CNI plugin (spec 1.0) that gives
//! a pod a virtual IP from an IKEv2 hub's pool, the job seed 003 did around strongSwan.
//! Chained after `bridge` + `host-local`: ADD starts an esprit client inside the pod's
//! network namespace towards the hub, waits for its virtual IP and returns the previous
//! result with the address (on the client's TUN device `esprit0` and, as seed 003 did,
//! on the pod's interface) and the routes added;
//! DEL stops the client (which deletes its SAs at the hub, so the lease goes offline);
//! CHECK verifies the client still holds the address. Configuration on stdin, `CNI_*` in
//! the environment, the result or a CNI error object on stdout.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use engine::control::{request, Request, Response};
use engine::status::Status;
use serde_json::{json, Value};

/// The CNI versions whose result format this plugin writes (the same since 0.3.0).
const VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// Where each container's client keeps its configuration, socket, log and PID.
const RUN_DIR: &str = "/run/esprit-cni";
/// The client's TUN device in the pod.
const TUN: &str = "esprit0";
/// The connection name in the generated configuration.
const CONN: &str = "hub";

/// A CNI error (spec: "Error" result type).
#[derive(Debug)]
struct CniError {
    code: u32,
    msg: String,
    details: String,
}

// Well-known error codes (CNI spec 1.0, "Error").
const INCOMPATIBLE_VERSION: u32 = 1;
const INVALID_ENV: u32 = 4;
const DECODE: u32 = 6;
const INVALID_CONFIG: u32 = 7;
const TRY_AGAIN: u32 = 11;
/// Plugin-specific: the client could not start or got no address.
const NO_ADDRESS: u32 = 100;
/// Plugin-specific: CHECK found the client gone or without its address.
const NOT_RUNNING: u32 = 101;

fn err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}

/// Entry point: runs the command in `CNI_COMMAND` and prints its output.
pub(crate) fn main() -> ExitCode {
    let mut input = String::new();
    let read = std::io::stdin().read_to_string(&mut input);
    let version = serde_json::from_str::<Value>(&input)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .unwrap_or_else(|| "1.0.0".to_string());
    let out = match read {
        Ok(_) => dispatch(&input),
        Err(e) => Err(err(DECODE, "cannot read the configuration", e.to_string())),
    };
    match out {
        Ok(Some(v)) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!(
                "{}",
                json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details})
            );
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Result<String, CniError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err(INVALID_ENV, format!("{name} is not set"), ""))
}

fn dispatch(input: &str) -> Result<Option<Value>, CniError> {
    let command = env("CNI_COMMAND")?;
    if command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": VERSIONS}),
        ));
    }
    let conf: Value = serde_json::from_str(input)
        .map_err(|e| err(DECODE, "the configuration is not JSON", e.to_string()))?;
    let version = conf["cniVersion"].as_str().unwrap_or_default();
    if !VERSIONS.contains(&version) {
        return Err(err(
            INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
            format!("supported: {}", VERSIONS.join(", ")),
        ));
    }
    let container = env("CNI_CONTAINERID")?;
    let dir = Path::new(conf["runDir"].as_str().unwrap_or(RUN_DIR)).join(safe_name(&container));
    match command.as_str() {
        "ADD" => {
            let vpn = Vpn::from_conf(&conf)?;
            let netns = env("CNI_NETNS")?;
            add(&conf, &vpn, &container, &netns, &dir).map(Some)
        }
        "DEL" => {
            // DEL must succeed when there is nothing left to remove (spec 1.0).
            stop(&dir);
            Ok(None)
        }
        "CHECK" => {
            Vpn::from_conf(&conf)?;
            check(&conf, &dir).map(|()| None)
        }
        other => Err(err(
            INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK or VERSION"),
            "",
        )),
    }
}

/// A container ID as a file name.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// How the pod authenticates.
enum Auth {
    Psk(String),
    Cert {
        cert: String,
        key: String,
        ca: String,
    },
}

/// The `vpn` object, in seed 003's words.
struct Vpn {
    server: IpAddr,
    subnets: Vec<String>,
    auth: Auth,
    server_id: Option<String>,
    ipv6: bool,
    timeout: Duration,
}

impl Vpn {
    /// `a` with the prefix length of the virtual subnet holding it (a host prefix when
    /// none does).
    fn net_of(&self, a: IpAddr) -> ipnet::IpNet {
        self.subnets
            .iter()
            .filter_map(|s| s.parse::<ipnet::IpNet>().ok())
            .find(|n| n.contains(&a))
            .and_then(|n| ipnet::IpNet::new(a, n.prefix_len()).ok())
            .unwrap_or_else(|| ipnet::IpNet::from(a))
    }

    fn from_conf(conf: &Value) -> Result<Vpn, CniError> {
        let bad = |m: String| err(INVALID_CONFIG, m, "");
        let vpn = conf
            .get("vpn")
            .filter(|v| v.is_object())
            .ok_or_else(|| bad("no \"vpn\" object".into()))?;
        let server = vpn["serverIP"]
            .as_str()
            .ok_or_else(|| bad("vpn.serverIP is required".into()))?
            .parse::<IpAddr>()
            .map_err(|e| bad(format!("vpn.serverIP: {e}")))?;
        let subnets: Vec<String> = match &vpn["virtualSubnet"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if subnets.is_empty() {
            return Err(bad("vpn.virtualSubnet is required".into()));
        }
        for s in &subnets {
            if ike::ts::parse_cidr(s).is_none() {
                return Err(bad(format!("vpn.virtualSubnet {s:?} is not a subnet")));
            }
        }
        let text = |k: &str| vpn[k].as_str().map(str::to_string);
        let auth = match (text("PSK"), text("cert"), text("key"), text("ca")) {
            (Some(psk), None, None, None) if !psk.is_empty() => Auth::Psk(psk),
            (None, Some(cert), Some(key), Some(ca)) => Auth::Cert { cert, key, ca },
            _ => {
                return Err(bad(
                    "give vpn.PSK, or vpn.cert, vpn.key and vpn.ca (PEM files)".into(),
                ))
            }
        };
        let timeout = conf["timeout"].as_u64().unwrap_or(20);
        Ok(Vpn {
            server,
            subnets,
            auth,
            server_id: text("serverId"),
            ipv6: vpn["ipv6"].as_bool().unwrap_or(false),
            timeout: Duration::from_secs(timeout),
        })
    }

    /// The client's configuration: one connection to the hub asking for virtual IPs.
    fn toml(&self, dir: &Path, local: Option<IpAddr>, id: &str) -> String {
        let vips = if self.ipv6 {
            "\"0.0.0.0\", \"::\""
        } else {
            "\"0.0.0.0\""
        };
        let subnets: Vec<String> = self.subnets.iter().map(|s| format!("{s:?}")).collect();
        let (kind, local_extra, remote_extra, secret) = match &self.auth {
            Auth::Psk(psk) => (
                "psk",
                format!("id = {id:?}\n"),
                String::new(),
                format!("[secrets.ike-cni]\nsecret = {psk:?}\n"),
            ),
            Auth::Cert { cert, key, ca } => (
                "pubkey",
                format!("certs = [{cert:?}]\n"),
                format!("cacerts = [{ca:?}]\n"),
                format!("[secrets.private.pod]\nfile = {key:?}\n"),
            ),
        };
        let local_addrs = local.map_or(String::new(), |a| format!("local_addrs = [\"{a}\"]\n"));
        let remote_id = self
            .server_id
            .as_ref()
            .map_or(String::new(), |i| format!("id = {i:?}\n"));
        format!(
            "# written by esprit cni\n[daemon]\ncontrol_socket = {sock:?}\n[tun]\nname = \"{TUN}\"\n\
             [connections.{CONN}]\n{local_addrs}remote_addrs = [\"{server}\"]\nvips = [{vips}]\n\
             [connections.{CONN}.local]\nauth = \"{kind}\"\n{local_extra}\
             [connections.{CONN}.remote]\nauth = \"{kind}\"\n{remote_id}{remote_extra}\
             [connections.{CONN}.children.pod]\nremote_ts = [{subnets}]\nstart_action = \"start\"\n\
             {secret}",
            sock = dir.join("esprit.sock").to_string_lossy(),
            server = self.server,
            subnets = subnets.join(", "),
        )
    }
}

/// The pod's first address of the previous plugin's result (its source towards the hub).
fn prev_address(conf: &Value) -> Option<IpAddr> {
    conf["prevResult"]["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
        .next()
}

fn add(
    conf: &Value,
    vpn: &Vpn,
    container: &str,
    netns: &str,
    dir: &Path,
) -> Result<Value, CniError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| err(NO_ADDRESS, what, e.to_string())
    };
    if dir.join("pid").exists() {
        stop(dir);
    }
    fs::create_dir_all(dir).map_err(io("creating the run directory"))?;
    let name = conf["name"].as_str().unwrap_or("esprit");
    // One identity per pod: its lease follows it, and one pod's INITIAL_CONTACT never
    // replaces another's IKE SA at the hub.
    let id = format!(
        "{}.{}",
        safe_name(&container[..container.len().min(12)]),
        name
    );
    let config = dir.join("esprit.toml");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&config)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, vpn.toml(dir, prev_address(conf), &id).as_bytes())
        })
        .map_err(io("writing the client configuration"))?;
    let ns = fs::File::open(netns).map_err(io(&format!("opening CNI_NETNS {netns}")))?;
    let log = fs::File::create(dir.join("esprit.log")).map_err(io("creating the log"))?;
    let exe = std::env::current_exe().map_err(io("finding the esprit binary"))?;
    let ns_fd = ns.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("the log"))?)
        .stderr(log);
    // SAFETY: between fork and exec only async-signal-safe calls: setns(2) into the
    // pod's network namespace (a descriptor opened before the fork) and setsid(2), so
    // the client outlives this plugin and the runtime's process group.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io("starting the esprit client"))?;
    fs::write(dir.join("pid"), format!("{}\n", child.id())).map_err(io("writing the PID"))?;
    drop(ns);
    let socket = dir.join("esprit.sock");
    let deadline = Instant::now() + vpn.timeout;
    let mut last = String::from("the client did not answer");
    let (vips, dns) = loop {
        if let Ok(Response::Status(s)) = request(&socket, &Request::Status, Duration::from_secs(2))
        {
            if let Some(found) = vips_of(&s) {
                break found;
            }
            if let Some(e) = s.connections.iter().find_map(|c| c.last_error.clone()) {
                last = e;
            }
        }
        if !alive(dir) {
            let log = fs::read_to_string(dir.join("esprit.log")).unwrap_or_default();
            stop(dir);
            return Err(err(NO_ADDRESS, "the esprit client exited", tail(&log)));
        }
        if Instant::now() >= deadline {
            stop(dir);
            return Err(err(
                TRY_AGAIN,
                format!("no virtual IP from {} within {:?}", vpn.server, vpn.timeout),
                last,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // As seed 003, the address also goes on the pod's interface (CNI_IFNAME): the
    // standard plugins' CHECK expects every address of the result there.
    let ifname = env("CNI_IFNAME")?;
    on_interface(netns, &ifname, &vips, vpn).map_err(|e| {
        err(
            NO_ADDRESS,
            format!("adding the virtual IP to {ifname}"),
            e.to_string(),
        )
    })?;
    Ok(result(conf, netns, &ifname, vpn, &vips, &dns))
}

/// Adds `vips` to `ifname` inside the namespace `netns`, each with the prefix length of
/// the virtual subnet holding it (as seed 003 did) but without a prefix route: the subnet
/// is routed through the tunnel.
fn on_interface(netns: &str, ifname: &str, vips: &[IpAddr], vpn: &Vpn) -> std::io::Result<()> {
    let ns = fs::File::open(netns)?;
    let ifname = ifname.to_string();
    let nets: Vec<ipnet::IpNet> = vips.iter().map(|a| vpn.net_of(*a)).collect();
    std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: setns(2) moves only this new thread into the pod's network namespace;
        // the netlink socket opened after it belongs to that namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut nl = tun_io::netlink::Netlink::open()?;
        for net in nets {
            match nl.add_address_noprefixroute(&ifname, net) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("netlink thread panicked")))
}

/// The client's virtual IPs and DNS servers once its child SA is up.
fn vips_of(s: &Status) -> Option<(Vec<IpAddr>, Vec<IpAddr>)> {
    let sa = s.ike_sas.iter().find(|sa| {
        sa.state == "ESTABLISHED" && !sa.local_vips.is_empty() && !sa.children.is_empty()
    })?;
    let parse = |v: &[String]| v.iter().filter_map(|a| a.parse().ok()).collect();
    Some((parse(&sa.local_vips), parse(&sa.dns)))
}

/// The previous result with our interface, addresses (on `ifname`, as seed 003 did),
/// routes and DNS added.
fn result(
    conf: &Value,
    netns: &str,
    ifname: &str,
    vpn: &Vpn,
    vips: &[IpAddr],
    dns: &[IpAddr],
) -> Value {
    let mut r = conf
        .get("prevResult")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    r["cniVersion"] = conf["cniVersion"].clone();
    let list = |r: &Value, k: &str| -> Vec<Value> {
        r.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list(&r, "interfaces");
    interfaces.push(json!({"name": TUN, "sandbox": netns}));
    let index = interfaces
        .iter()
        .position(|i| i["name"] == ifname && i["sandbox"] == netns)
        .unwrap_or(interfaces.len() - 1);
    let mut ips = list(&r, "ips");
    for a in vips {
        let mut ip = json!({"address": vpn.net_of(*a).to_string(), "interface": index});
        // bridge's CHECK wants a gateway on its bridge for every address of the
        // interface: the one of the pod's own address of that family.
        let gateway = ips.iter().find_map(|p| {
            let g = p["gateway"].as_str()?.parse::<IpAddr>().ok()?;
            (p["interface"] == index && g.is_ipv4() == a.is_ipv4()).then(|| g.to_string())
        });
        if let Some(g) = gateway {
            ip["gateway"] = json!(g);
        }
        ips.push(ip);
    }
    let mut routes = list(&r, "routes");
    for s in &vpn.subnets {
        routes.push(json!({"dst": s}));
    }
    r["interfaces"] = Value::Array(interfaces);
    r["ips"] = Value::Array(ips);
    r["routes"] = Value::Array(routes);
    if !dns.is_empty() {
        let mut servers: Vec<Value> = r["dns"]["nameservers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        servers.extend(dns.iter().map(|d| json!(d.to_string())));
        if !r["dns"].is_object() {
            r["dns"] = json!({});
        }
        r["dns"]["nameservers"] = Value::Array(servers);
    }
    r
}

/// The last lines of a log, for error details.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// The client's PID, when it is still our esprit (its command line names our config).
fn client_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(dir.join("pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = dir.join("esprit.toml");
    let ours = String::from_utf8_lossy(&cmdline).contains(&*config.to_string_lossy());
    ours.then_some(pid)
}

fn alive(dir: &Path) -> bool {
    client_pid(dir).is_some_and(|pid| {
        // A zombie (exited, not yet reaped by init) is gone for our purposes.
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| !r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    })
}

/// Stops the client (SIGTERM: it deletes its SAs at the hub; SIGKILL after 5 s) and
/// removes its directory.
fn stop(dir: &Path) {
    if let Some(pid) = client_pid(dir) {
        // SAFETY: kill(2) on the PID of the client this plugin started (checked by its
        // command line above).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(dir) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = fs::remove_dir_all(dir);
}

fn check(conf: &Value, dir: &Path) -> Result<(), CniError> {
    if !alive(dir) {
        return Err(err(
            NOT_RUNNING,
            "the esprit client of this container is not running",
            dir.display().to_string(),
        ));
    }
    let socket: PathBuf = dir.join("esprit.sock");
    let status = match request(&socket, &Request::Status, Duration::from_secs(5)) {
        Ok(Response::Status(s)) => s,
        _ => return Err(err(NOT_RUNNING, "the esprit client does not answer", "")),
    };
    let Some((vips, _)) = vips_of(&status) else {
        return Err(err(NOT_RUNNING, "the esprit client has no virtual IP", ""));
    };
    let expected: Vec<IpAddr> = conf["prevResult"]["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect();
    match vips.iter().find(|v| !expected.contains(v)) {
        Some(v) => Err(err(
            NOT_RUNNING,
            format!("the client's virtual IP {v} is not in prevResult"),
            "",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(vpn: Value) -> Value {
        json!({"cniVersion": "1.0.0", "name": "ipsec", "type": "esprit-cni", "vpn": vpn})
    }

    #[test]
    fn seed_003_fields() {
        let c = conf(
            json!({"serverIP": "10.9.0.2", "virtualSubnet": "10.173.0.0/16",
            "hostSubnet": "10.9.0.0/24", "PSK": "dummy1234"}),
        );
        let v = Vpn::from_conf(&c).unwrap();
        let t = v.toml(
            Path::new("/run/x"),
            Some("10.22.0.5".parse().unwrap()),
            "abc.ipsec",
        );
        assert!(t.contains("remote_addrs = [\"10.9.0.2\"]"), "{t}");
        assert!(t.contains("local_addrs = [\"10.22.0.5\"]"), "{t}");
        assert!(t.contains("vips = [\"0.0.0.0\"]"), "{t}");
        assert!(t.contains("remote_ts = [\"10.173.0.0/16\"]"), "{t}");
        assert!(t.contains("secret = \"dummy1234\""), "{t}");
        let parsed = engine::config::parse(Path::new("x.toml"), &t).unwrap();
        assert_eq!(parsed.connections["hub"].vips, ["0.0.0.0"]);
        for bad in [
            json!({"virtualSubnet": "10.173.0.0/16", "PSK": "x"}),
            json!({"serverIP": "10.9.0.2", "PSK": "x"}),
            json!({"serverIP": "10.9.0.2", "virtualSubnet": "10.173.0.0/99", "PSK": "x"}),
            json!({"serverIP": "10.9.0.2", "virtualSubnet": "10.173.0.0/16"}),
        ] {
            let e = Vpn::from_conf(&conf(bad)).err().expect("refused");
            assert_eq!(e.code, INVALID_CONFIG);
        }
    }

    #[test]
    fn result_extends_prev_result() {
        let mut c = conf(
            json!({"serverIP": "10.9.0.2", "virtualSubnet": "10.173.0.0/16",
            "PSK": "x"}),
        );
        c["prevResult"] = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "10.22.0.5/24", "gateway": "10.22.0.1", "interface": 2}],
            "routes": [{"dst": "0.0.0.0/0"}]});
        let v = Vpn::from_conf(&c).unwrap();
        let r = result(
            &c,
            "/run/netns/p",
            "eth0",
            &v,
            &["10.173.0.1".parse().unwrap()],
            &["10.173.0.53".parse().unwrap()],
        );
        assert_eq!(r["interfaces"][3]["name"], "esprit0");
        assert_eq!(r["ips"][1]["address"], "10.173.0.1/16");
        assert_eq!(
            r["ips"][1]["interface"], 2,
            "on the pod's eth0, as seed 003"
        );
        assert_eq!(r["routes"][1]["dst"], "10.173.0.0/16");
        assert_eq!(r["dns"]["nameservers"][0], "10.173.0.53");
        assert_eq!(r["ips"][1]["gateway"], "10.22.0.1", "for bridge's CHECK");
        assert_eq!(
            r["ips"][0]["address"], "10.22.0.5/24",
            "bridge's address kept"
        );
    }
}
