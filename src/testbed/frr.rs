//! [`Frr`]: FRRouting's zebra, bgpd and (optionally) bfdd inside one namespace, as the
//! routing daemon beside a route-based esprit tunnel.
//!
//! No systemd, no watchfrr and nothing shared with the host's FRR: each instance has its
//! own directory holding the configuration files (`zebra.conf`, `bgpd.conf`, `bfdd.conf`),
//! the PID files, the zserv socket that joins bgpd and bfdd to zebra, bfdd's control
//! socket, the vty sockets `vtysh --vty_socket DIR` talks to, and one log per daemon.
//! The daemons are started straight from `/usr/lib/frr` with every runtime path given on
//! the command line (`-f`, `-i`, `-z`, `--vty_socket`, `--bfdctl`), so `/etc/frr` and
//! `/var/run/frr` are never read or written; the daemons drop to the `frr` user as
//! packaged (which owns the directory), keeping the capabilities they need.
//! The directory can live outside the namespace: its sockets are pathname sockets.
//! (`-N NAME`, FRR's path space, is not used: it only moves the defaults to
//! `/var/run/frr/NAME/` and `/etc/frr/NAME/`, which are the host's directories.)

use std::ffi::CString;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::netns::{run_checked, Netns};
use super::proc::Proc;
use super::wait::wait_ok;

/// Where Debian's `frr` package puts the daemons.
const DAEMONS: &str = "/usr/lib/frr";
/// How long a daemon may take to open its vty socket.
const START_WAIT: Duration = Duration::from_secs(10);

/// What one FRR instance runs: zebra always, bgpd with this configuration, bfdd if
/// `bfdd` is set.
#[derive(Debug, Clone, Default)]
pub struct FrrConfig {
    /// Lines added to zebra's configuration (e.g. a route map that sets the source
    /// address of the routes it installs).
    pub zebra: String,
    /// bgpd's configuration (`router bgp ...`).
    pub bgpd: String,
    /// bfdd's configuration (profiles, e.g. `bfd` / `profile fast` / `transmit-interval
    /// 100`), when bfdd runs.
    pub bfdd: Option<String>,
}

impl FrrConfig {
    /// One of two sites (`side` 1 or 2) joined by a route-based tunnel with link
    /// addresses 169.254.100.1/30 and .2: bgpd in AS 6500{side} peers with the other
    /// link address (keepalive 3 s, hold 9 s, connect retry 1 s) and announces
    /// 10.96.{side}.0/24; zebra gives the routes BGP installs the source 10.96.{side}.1,
    /// so traffic between the subnets carries subnet addresses.
    pub fn two_sites(side: u8) -> FrrConfig {
        let other = 3 - side;
        FrrConfig {
            zebra: format!(
                "route-map SRC permit 10\n set src 10.96.{side}.1\nexit\nip protocol bgp route-map SRC\n"
            ),
            bgpd: format!(
                "router bgp 6500{side}
 bgp router-id 169.254.100.{side}
 no bgp ebgp-requires-policy
 neighbor 169.254.100.{other} remote-as 6500{other}
 neighbor 169.254.100.{other} timers 3 9
 neighbor 169.254.100.{other} timers connect 1
 address-family ipv4 unicast
  network 10.96.{side}.0/24
 exit-address-family
"
            ),
            bfdd: None,
        }
    }
}

/// FRR daemons running in a namespace; stopped by PID on drop (bfdd and bgpd first,
/// then zebra).
#[derive(Debug)]
pub struct Frr {
    // Drop order is field order.
    bfdd: Option<Proc>,
    bgpd: Proc,
    zebra: Proc,
    dir: PathBuf,
}

impl Frr {
    /// Starts zebra, then bgpd (and bfdd) in `ns` with their files in `dir` (created;
    /// given to the `frr` user), and returns once each answers on its vty socket.
    pub fn start(ns: &Netns, dir: &Path, config: &FrrConfig) -> io::Result<Frr> {
        let (uid, gid) = frr_user()?;
        for daemon in ["zebra", "bgpd", "bfdd"] {
            let exe = Path::new(DAEMONS).join(daemon);
            if !exe.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is not installed: install the Debian package frr \
                         (`sudo ./test.sh` installs everything the tests need)",
                        exe.display()
                    ),
                ));
            }
        }
        super::tools::require("vtysh")?;
        fs::create_dir_all(dir)?;
        let zebra_conf = format!("hostname {}\n{}\n", ns.name(), config.zebra);
        fs::write(dir.join("zebra.conf"), zebra_conf)?;
        fs::write(dir.join("bgpd.conf"), &config.bgpd)?;
        if let Some(bfdd) = &config.bfdd {
            fs::write(dir.join("bfdd.conf"), bfdd)?;
        }
        chown(dir, Some(uid), Some(gid))?;
        for entry in fs::read_dir(dir)? {
            chown(entry?.path(), Some(uid), Some(gid))?;
        }
        let zebra = spawn(ns, dir, "zebra", &[])?;
        wait_vty(dir, "zebra", &zebra)?;
        // bgpd and bfdd reach zebra through the instance's zserv socket.
        let bgpd = spawn(ns, dir, "bgpd", &[])?;
        wait_vty(dir, "bgpd", &bgpd)?;
        let bfdd = match config.bfdd {
            Some(_) => {
                let ctl = dir.join("bfdd.sock");
                let bfdd = spawn(ns, dir, "bfdd", &["--bfdctl", &ctl.to_string_lossy()])?;
                wait_vty(dir, "bfdd", &bfdd)?;
                Some(bfdd)
            }
            None => None,
        };
        Ok(Frr {
            bfdd,
            bgpd,
            zebra,
            dir: dir.to_path_buf(),
        })
    }

    /// The instance's directory (configuration, sockets, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `vtysh -c CMD...` against this instance and returns its output.
    pub fn vtysh(&self, commands: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new("vtysh");
        cmd.arg("--vty_socket").arg(&self.dir);
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        let out = run_checked(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A `show ... json` command's answer.
    pub fn json(&self, command: &str) -> io::Result<Value> {
        let text = self.vtysh(&[command])?;
        serde_json::from_str(&text)
            .map_err(|e| io::Error::other(format!("`{command}` gave no JSON ({e}): {text}")))
    }

    /// The BGP state of `peer` (`Established`, `Active`, ...), or `None` if bgpd has no
    /// such neighbor.
    pub fn peer_state(&self, peer: IpAddr) -> io::Result<Option<String>> {
        let summary = self.json("show bgp ipv4 unicast summary json")?;
        Ok(summary["peers"][peer.to_string()]["state"]
            .as_str()
            .map(str::to_string))
    }

    /// Waits at most `timeout` for the session with `peer` to be Established.
    pub fn wait_established(&self, peer: IpAddr, timeout: Duration) -> io::Result<()> {
        let what = format!("BGP session with {peer} Established");
        wait_ok(&what, timeout, Duration::from_millis(100), || {
            match self.peer_state(peer)? {
                Some(s) if s == "Established" => Ok(()),
                s => Err(io::Error::other(format!("state {s:?}"))),
            }
        })
        .map_err(|e| io::Error::other(format!("{e}\n--- bgpd log ---\n{}", self.log("bgpd"))))
    }

    /// The BGP best path's next hop for `prefix` (e.g. `10.96.2.0/24`), if bgpd has one.
    pub fn bgp_nexthop(&self, prefix: &str) -> io::Result<Option<IpAddr>> {
        let route = self.json(&format!("show bgp ipv4 unicast {prefix} json"))?;
        let best = route["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["bestpath"]["overall"].as_bool() == Some(true));
        Ok(best
            .and_then(|p| p["nexthops"][0]["ip"].as_str())
            .and_then(|ip| ip.parse().ok()))
    }

    /// Waits at most `timeout` until BGP's best path for `prefix` goes via `nexthop`.
    pub fn wait_bgp_nexthop(
        &self,
        prefix: &str,
        nexthop: IpAddr,
        timeout: Duration,
    ) -> io::Result<()> {
        let what = format!("BGP best path {prefix} via {nexthop}");
        wait_ok(&what, timeout, Duration::from_millis(100), || {
            match self.bgp_nexthop(prefix)? {
                Some(nh) if nh == nexthop => Ok(()),
                nh => Err(io::Error::other(format!("best path via {nh:?}"))),
            }
        })
        .map_err(|e| io::Error::other(format!("{e}\n--- bgpd log ---\n{}", self.log("bgpd"))))
    }

    /// A daemon's log so far (`zebra`, `bgpd`, `bfdd`).
    pub fn log(&self, daemon: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{daemon}.log"))).unwrap_or_default()
    }

    /// The PIDs of the running daemons.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.zebra.pid(), self.bgpd.pid()];
        pids.extend(self.bfdd.as_ref().map(Proc::pid));
        pids
    }
}

/// Starts `/usr/lib/frr/DAEMON` in `ns` with its files in `dir`, logging to
/// `dir/DAEMON.log`.
fn spawn(ns: &Netns, dir: &Path, daemon: &str, extra: &[&str]) -> io::Result<Proc> {
    let exe = Path::new(DAEMONS)
        .join(daemon)
        .to_string_lossy()
        .into_owned();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (conf, pid, zserv) = (
        path(&format!("{daemon}.conf")),
        path(&format!("{daemon}.pid")),
        path("zserv.api"),
    );
    let vty = dir.to_string_lossy().into_owned();
    let mut argv = vec![
        exe.as_str(),
        "-f",
        &conf,
        "-i",
        &pid,
        "-z",
        &zserv,
        "--vty_socket",
        &vty,
        "--log",
        "stdout",
        "--log-level",
        "info",
    ];
    argv.extend_from_slice(extra);
    ns.spawn(&argv, &[], &dir.join(format!("{daemon}.log")))
}

/// Waits for `daemon` to answer on its vty socket in `dir`.
fn wait_vty(dir: &Path, daemon: &str, proc: &Proc) -> io::Result<()> {
    wait_ok(
        &format!("{daemon}'s vty socket"),
        START_WAIT,
        Duration::from_millis(20),
        || {
            run_checked(Command::new("vtysh").arg("--vty_socket").arg(dir).args([
                "-d",
                daemon,
                "-c",
                "show version",
            ]))
        },
    )
    .map(|_| ())
    .map_err(|e| io::Error::other(format!("{e}\n--- {daemon} log ---\n{}", proc.log())))
}

/// The uid and gid of the `frr` user the package creates (the daemons switch to it).
fn frr_user() -> io::Result<(u32, u32)> {
    let name = CString::new("frr").unwrap_or_default();
    // SAFETY: a valid NUL-terminated name; the returned record is read at once, before
    // any other call that could reuse its static storage.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no `frr` user: install the Debian package frr (`sudo ./test.sh` installs \
             everything the tests need)",
        ));
    }
    // SAFETY: non-null, points at the passwd record getpwnam filled.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbed::scratch::Scratch;

    fn entries(dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn instances_keep_to_their_own_directories_and_stop_on_drop() {
        let host_run = entries("/var/run/frr");
        let scratch = Scratch::new("esprit-frr-t").unwrap();
        let config = |asn: u32| {
            FrrConfig {
            zebra: String::new(),
            bgpd: format!(
                "router bgp {asn}\n bgp router-id 192.0.2.{asn}\n neighbor 192.0.2.99 remote-as 65099\n"
            ),
            bfdd: Some("bfd\n profile fast\n  transmit-interval 100\n exit\nexit\n".into()),
        }
        };
        // Two instances at once, one per namespace: nothing shared between them.
        let (ns1, ns2) = (
            Netns::new("esprit-t").unwrap(),
            Netns::new("esprit-t").unwrap(),
        );
        let one = Frr::start(&ns1, &scratch.join("one"), &config(1)).unwrap();
        let two = Frr::start(&ns2, &scratch.join("two"), &config(2)).unwrap();
        let peer: IpAddr = "192.0.2.99".parse().unwrap();
        for frr in [&one, &two] {
            let state = frr.peer_state(peer).unwrap();
            assert!(
                matches!(state.as_deref(), Some(s) if s != "Established"),
                "{state:?}"
            );
            assert_eq!(frr.bgp_nexthop("10.0.0.0/8").unwrap(), None);
        }
        let asn = one.vtysh(&["show bgp ipv4 unicast summary"]).unwrap();
        assert!(asn.contains("local AS number 1"), "{asn}");
        let asn = two.vtysh(&["show bgp ipv4 unicast summary"]).unwrap();
        assert!(asn.contains("local AS number 2"), "{asn}");
        assert_eq!(
            entries("/var/run/frr"),
            host_run,
            "the host's FRR run dir changed"
        );
        let pids = [one.pids(), two.pids()].concat();
        assert_eq!(pids.len(), 6);
        drop((one, two));
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} lives"
            );
        }
    }
}
