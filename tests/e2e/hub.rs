//! An esprit hub with pools and esprit clients asking it for virtual IPs, on a
//! [`Star`]: the configurations, the daemons, and waits on their status. Dropped in
//! order (daemons, then namespaces), printing the logs' tails when a test fails.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use engine::control::Request;
use engine::status::Status;
use esprit::testbed::esprit::Daemon;
use esprit::testbed::{wait_ok, Star};

use super::common::{exe, POLL, SETUP};

/// The pre-shared key of every pod (seed 003: one PSK for all).
pub const SECRET: &str = "seed 003 pods share this secret";
/// The hub's own inner addresses, inside the pods' selectors but outside the pools.
pub const HUB_V4: &str = "10.173.255.1";
pub const HUB_V6: &str = "fd00:173::ff:1";
/// The connection name on the hub and on the clients.
pub const CONN: &str = "hub";
/// The child name on the clients.
pub const CHILD: &str = "pod";

/// The hub's configuration: pools `pods` (IPv4) and `pods6` (IPv6, when given).
pub fn hub_toml(dir: &std::path::Path, pool4: &str, pool6: Option<&str>) -> String {
    let mut pools = vec!["\"pods\"".to_string()];
    let mut sections = format!("[pools.pods]\naddrs = {pool4:?}\ndns = [\"10.173.0.53\"]\n");
    if let Some(p6) = pool6 {
        pools.push("\"pods6\"".into());
        sections.push_str(&format!(
            "[pools.pods6]\naddrs = {p6:?}\ndns = [\"fd00:173::53\"]\n"
        ));
    }
    format!(
        r#"[daemon]
control_socket = {sock:?}
retransmit_timeout = "1s"
retransmit_tries = 3
[tun]
name = "esprit0"
[connections.{CONN}]
pools = [{pools}]
[connections.{CONN}.local]
auth = "psk"
id = "hub.esprit.test"
[connections.{CONN}.remote]
auth = "psk"
[connections.{CONN}.children.pods]
local_ts = ["10.173.0.0/16", "fd00:173::/64"]
esp_proposals = ["aes128gcm16"]
{sections}[secrets.ike-pods]
secret = {SECRET:?}
"#,
        sock = dir.join("esprit.sock").to_string_lossy(),
        pools = pools.join(", "),
    )
}

/// Client `i`'s configuration: asks for `vips`, reaches the pods' subnets.
pub fn client_toml(dir: &std::path::Path, star: &Star, i: usize, vips: &[&str]) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("{v:?}")).collect();
    format!(
        r#"[daemon]
control_socket = {sock:?}
retransmit_timeout = "1s"
retransmit_tries = 3
[tun]
name = "esprit0"
[connections.{CONN}]
local_addrs = ["{me}"]
remote_addrs = ["{hub}"]
vips = [{vips}]
[connections.{CONN}.local]
auth = "psk"
id = "pod{i}.esprit.test"
[connections.{CONN}.remote]
auth = "psk"
id = "hub.esprit.test"
[connections.{CONN}.children.{CHILD}]
remote_ts = ["10.173.0.0/16", "fd00:173::/64"]
esp_proposals = ["aes128gcm16"]
start_action = "start"
[secrets.ike-pods]
secret = {SECRET:?}
"#,
        sock = dir.join("esprit.sock").to_string_lossy(),
        me = star.client_addr(i),
        hub = star.hub_addr(i),
        vips = vips.join(", "),
    )
}

/// A hub and its clients' daemons on a [`Star`].
pub struct Lab {
    // Drop order is field order: the daemons go before their namespaces.
    pub clients: Vec<Option<Daemon>>,
    pub hub: Option<Daemon>,
    pub star: Star,
}

/// A directory `name` in the lab's scratch space.
pub fn dir(star: &Star, name: &str) -> PathBuf {
    let d = star.dir().join(name);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

impl Lab {
    /// `n` client namespaces and the hub's with its inner addresses; nothing started.
    pub fn bare(n: usize) -> Lab {
        let star = Star::new(n).expect("star topology");
        Star::add_address(star.hub(), "lo", &format!("{HUB_V4}/32")).expect("hub inner");
        Star::add_address(star.hub(), "lo", &format!("{HUB_V6}/128")).expect("hub inner");
        Lab {
            clients: (0..n).map(|_| None).collect(),
            hub: None,
            star,
        }
    }

    /// `n` client namespaces and a running hub with the given pools; no client started.
    pub fn new(n: usize, pool4: &str, pool6: Option<&str>) -> Lab {
        let mut lab = Lab::bare(n);
        let d = dir(&lab.star, "hub");
        let config = d.join("esprit.toml");
        std::fs::write(&config, hub_toml(&d, pool4, pool6)).expect("hub config");
        let hub = Daemon::start_with(exe(), lab.star.hub(), &config, &d).expect("starting the hub");
        lab.hub = Some(hub);
        lab
    }

    /// The hub's configuration file.
    pub fn hub_config(&self) -> PathBuf {
        self.star.dir().join("hub/esprit.toml")
    }

    /// Starts client `i` asking for `vips`.
    pub fn start_client(&mut self, i: usize, vips: &[&str]) {
        let d = dir(&self.star, &format!("c{i}"));
        let config = d.join("esprit.toml");
        std::fs::write(&config, client_toml(&d, &self.star, i, vips)).expect("client config");
        let daemon = Daemon::start_with(exe(), self.star.client(i), &config, &d)
            .unwrap_or_else(|e| panic!("starting client {i}: {e}"));
        self.clients[i] = Some(daemon);
    }

    pub fn client(&self, i: usize) -> &Daemon {
        self.clients[i].as_ref().expect("client running")
    }

    pub fn hub(&self) -> &Daemon {
        self.hub.as_ref().expect("hub running")
    }

    /// SIGKILLs client `i` and reaps it.
    pub fn kill_client(&mut self, i: usize) {
        let mut d = self.clients[i].take().expect("client running");
        d.proc.signal(libc::SIGKILL).expect("SIGKILL");
        d.proc.wait_exit(Duration::from_secs(5)).expect("exits");
    }

    /// Waits until client `i` has its child SA and virtual IPs; returns them.
    pub fn wait_vips(&self, i: usize, want: usize) -> Vec<IpAddr> {
        let d = self.client(i);
        let s = wait_status(d, &format!("client {i}: child SA and {want} VIPs"), |s| {
            s.ike_sas
                .iter()
                .find(|sa| {
                    sa.state == "ESTABLISHED"
                        && sa.local_vips.len() == want
                        && sa.children.iter().any(|c| c.name == CHILD)
                })
                .map(|sa| sa.local_vips.clone())
        });
        s.iter().map(|v| v.parse().expect("VIP")).collect()
    }

    /// (online, offline) leases of the hub's pool `name`.
    pub fn leases(&self, name: &str) -> (usize, usize) {
        let s = self.hub().status().expect("hub status");
        let p = s.pools.iter().find(|p| p.name == name).expect("pool");
        (p.online, p.offline)
    }

    /// Waits until the hub's pool `name` has these (online, offline) leases.
    pub fn wait_leases(&self, name: &str, want: (usize, usize)) {
        wait_status(self.hub(), &format!("pool {name} at {want:?}"), |s| {
            let p = s.pools.iter().find(|p| p.name == name)?;
            ((p.online, p.offline) == want).then_some(())
        });
    }

    /// Client `i`'s TUN addresses (`ip -o addr show dev esprit0`).
    pub fn tun_addrs(&self, i: usize) -> String {
        self.star
            .client(i)
            .ip(&["-o", "addr", "show", "dev", "esprit0"])
            .unwrap_or_default()
    }
}

/// Waits until `check` accepts `d`'s status.
pub fn wait_status<T>(d: &Daemon, what: &str, mut check: impl FnMut(&Status) -> Option<T>) -> T {
    wait_ok(what, SETUP, POLL, || {
        let s = d.status()?;
        check(&s).ok_or_else(|| io::Error::other(s.to_string().trim().to_string()))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a control command, panicking on an error answer.
pub fn command(d: &Daemon, req: Request) -> String {
    d.command(&req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs: Vec<(String, &Daemon)> = Vec::new();
        if let Some(h) = &self.hub {
            logs.push(("hub".into(), h));
        }
        for (i, c) in self.clients.iter().enumerate() {
            if let Some(c) = c {
                logs.push((format!("client {i}"), c));
            }
        }
        for (name, d) in logs.into_iter().take(6) {
            let log = d.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("--- esprit log of {name} ---\n{}", tail.join("\n"));
        }
    }
}
