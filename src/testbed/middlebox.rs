//! The middle boxes of a [`Topology`](super::Topology): the NAT router's netfilter rules
//! and the nginx UDP proxy.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::netns::Netns;
use super::proc::Proc;
use super::scratch::Scratch;
use super::wait::wait_for;

/// How long nginx gets to start listening.
const START_WAIT: Duration = Duration::from_secs(10);

/// The tool that programs the NAT router's netfilter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Firewall {
    /// An `iptables` binary (legacy or nft backend, whichever is installed).
    Iptables(&'static str),
    /// `nft` itself.
    Nft,
}

impl Firewall {
    /// `iptables` if there is one, else `nft`.
    pub(super) fn detect() -> Firewall {
        ["iptables", "iptables-nft", "iptables-legacy"]
            .into_iter()
            .find(|p| on_path(p))
            .map_or(Firewall::Nft, Firewall::Iptables)
    }
}

/// MASQUERADE out of `out`, and the stateful firewall every real NAT has (TESTING.md):
/// inbound on `out` only for established or related flows, in INPUT and FORWARD. Without
/// it a peer's early packet creates a conntrack entry that makes MASQUERADE remap the
/// port of a's later outbound flow.
pub(super) fn masquerade(r: &Netns, out: &str, fw: Firewall, dir: &Path) -> io::Result<()> {
    masquerade_with(r, out, fw, dir, false)
}

/// [`masquerade`], with `random_fully` a new random source port for every flow (a
/// "symmetric" NAT: the mapping depends on the destination, so hole punching fails).
pub(super) fn masquerade_with(
    r: &Netns,
    out: &str,
    fw: Firewall,
    dir: &Path,
    random_fully: bool,
) -> io::Result<()> {
    let (ipt_random, nft_random) = if random_fully {
        (" --random-fully", " fully-random")
    } else {
        ("", "")
    };
    match fw {
        Firewall::Iptables(iptables) => {
            let ipt = |rule: String| {
                let mut argv = vec![iptables, "-w"];
                argv.extend(rule.split_whitespace());
                r.run(&argv).map(drop)
            };
            ipt(format!(
                "-t nat -A POSTROUTING -o {out} -j MASQUERADE{ipt_random}"
            ))?;
            for chain in ["INPUT", "FORWARD"] {
                let established = "-m conntrack --ctstate ESTABLISHED,RELATED";
                ipt(format!("-A {chain} -i {out} {established} -j ACCEPT"))?;
                ipt(format!("-A {chain} -i {out} -j DROP"))?;
            }
            Ok(())
        }
        Firewall::Nft => {
            let stateful = format!(
                "iifname \"{out}\" ct state established,related accept
    iifname \"{out}\" drop"
            );
            let ruleset = format!(
                "table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    oifname \"{out}\" masquerade{nft_random}
  }}
}}
table inet filter {{
  chain input {{
    type filter hook input priority 0;
    {stateful}
  }}
  chain forward {{
    type filter hook forward priority 0;
    {stateful}
  }}
}}
"
            );
            let conf = dir.join("nat.nft");
            std::fs::write(&conf, ruleset)?;
            r.run(&["nft", "-f", &conf.to_string_lossy()]).map(drop)
        }
    }
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}

/// Starts nginx in `p` relaying UDP 500 and 4500 from `listen` to `upstream`, and waits
/// until it listens.
pub(super) fn nginx(
    p: &Netns,
    scratch: &Scratch,
    listen: &str,
    upstream: &str,
) -> io::Result<Proc> {
    let conf = scratch.join("nginx.conf");
    let error_log = scratch.join("nginx-error.log");
    // Debian builds the stream module as a dynamic module (libnginx-mod-stream).
    let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    let load = if module.exists() {
        format!("load_module {};\n", module.display())
    } else {
        String::new()
    };
    // As FabEdge runs its connector behind nginx (seed 000): UDP 500 and 4500 relayed,
    // sessions kept for 10 minutes. The worker runs as root: Debian has no "nobody" group.
    let text = format!(
        "{load}user root;
worker_processes 1;
error_log {error_log} info;
pid {pid};
events {{}}
stream {{
    server {{ listen {listen}:500 udp; proxy_pass {upstream}:500; proxy_timeout 10m; }}
    server {{ listen {listen}:4500 udp; proxy_pass {upstream}:4500; proxy_timeout 10m; }}
}}
",
        error_log = error_log.display(),
        pid = scratch.join("nginx.pid").display(),
    );
    std::fs::write(&conf, text)?;
    let (conf, error_log_s) = (conf.to_string_lossy(), error_log.to_string_lossy());
    let mut proc = p.spawn(
        &[
            "nginx",
            "-e",
            &error_log_s,
            "-c",
            &conf,
            "-g",
            "daemon off;",
        ],
        &[],
        &scratch.join("nginx.out"),
    )?;
    let wanted = [format!("{listen}:500"), format!("{listen}:4500")];
    let listening = wait_for(
        "nginx to listen",
        START_WAIT,
        Duration::from_millis(20),
        || {
            if !proc.is_running() {
                return Some(false);
            }
            let ss = p.run_stdout(&["ss", "-Huln"]).ok()?;
            let locals: Vec<&str> = ss
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .collect();
            wanted
                .iter()
                .all(|w| locals.contains(&w.as_str()))
                .then_some(true)
        },
    );
    match listening {
        Ok(true) => Ok(proc),
        Ok(false) | Err(_) => Err(io::Error::other(format!(
            "nginx did not come up ({}): {}{}",
            listening.map_or_else(|e| e.to_string(), |_| "exited".into()),
            proc.log(),
            std::fs::read_to_string(&error_log).unwrap_or_default()
        ))),
    }
}
