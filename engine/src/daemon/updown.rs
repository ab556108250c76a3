//! updown hooks: a child's `updown` command runs when its SA comes up, goes down or is
//! rekeyed, with the `PLUTO_*` environment of strongSwan's updown plugin, so scripts
//! written for charon keep working. Like charon, the command runs through `/bin/sh -c`
//! (it may carry arguments) once per pair of local and remote selector, with only the
//! variables below and `PATH` in its environment, and its output is logged line by line.
//!
//! The scripts run on a thread of their own, one after the other in event order (a
//! child's `down` never overtakes its `up`); the control task only queues them, so a
//! slow, failing or hanging script never holds up IKE or the dataplane. A script that
//! runs longer than [`SCRIPT_TIMEOUT`] is killed; every failure is logged.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ike::wire::TrafficSelector;

/// How long one script may run before it is killed.
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a script's output logged at most.
const MAX_LINES: usize = 50;

/// Why the script is called: strongSwan's verbs, plus `rekey` for a child SA replaced by
/// a rekey (charon calls no script then; esprit's `rekey-*` verbs let a script follow
/// the new SPIs, and a script that only knows `up-*`/`down-*` can ignore them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Up,
    Down,
    Rekey,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Up => "up",
            Verb::Down => "down",
            Verb::Rekey => "rekey",
        }
    }
}

/// What the scripts of one child SA are told, kept from its `up` for its `down`.
#[derive(Debug, Clone)]
pub(crate) struct ChildEnv {
    /// The `updown` command line.
    pub(crate) command: String,
    /// Connection name (esprit's own `ESPRIT_IKE_CONNECTION`).
    pub(crate) conn: String,
    /// Child name: `PLUTO_CONNECTION`, as with charon's swanctl configurations.
    pub(crate) child: String,
    /// The TUN device: `PLUTO_INTERFACE`.
    pub(crate) interface: String,
    /// The IKE SA: `PLUTO_UNIQUEID`.
    pub(crate) unique_id: u64,
    /// The child's route, stable across rekeys like charon's reqid: `PLUTO_REQID`.
    pub(crate) reqid: u64,
    /// Our IKE address: `PLUTO_ME`.
    pub(crate) me: SocketAddr,
    /// The peer's IKE address: `PLUTO_PEER` (its port is `PLUTO_UDP_ENC`).
    pub(crate) peer: SocketAddr,
    /// Our identity: `PLUTO_MY_ID`.
    pub(crate) my_id: String,
    /// The peer's identity: `PLUTO_PEER_ID`.
    pub(crate) peer_id: String,
    /// Our selectors: `PLUTO_MY_CLIENT`, one invocation per pair.
    pub(crate) local_ts: Vec<TrafficSelector>,
    /// The peer's selectors: `PLUTO_PEER_CLIENT`.
    pub(crate) remote_ts: Vec<TrafficSelector>,
    /// Our addresses inside our selectors, the routes' source: `PLUTO_MY_SOURCEIP`.
    pub(crate) sources: Vec<IpAddr>,
    /// SPIs: `ESPRIT_SPI_IN`, `ESPRIT_SPI_OUT`.
    pub(crate) spi_in: u32,
    /// See `spi_in`.
    pub(crate) spi_out: u32,
}

/// One script run.
#[derive(Debug)]
struct Job {
    command: String,
    /// What the log calls it: "conn.child up-client 10.1.0.0/24 === 10.2.0.0/24".
    label: String,
    env: Vec<(String, String)>,
}

/// A selector as strongSwan's `to_subnet` shows it: address/prefix, when it is one.
fn subnet(ts: &TrafficSelector) -> Option<String> {
    ike::ts::prefix_len(ts).map(|len| format!("{}/{len}", ts.start_addr))
}

impl ChildEnv {
    /// One job per (local, remote) selector pair, as charon's `child_updown` does.
    fn jobs(&self, verb: Verb) -> Vec<Job> {
        let mut jobs = Vec::new();
        for my in &self.local_ts {
            for other in &self.remote_ts {
                // charon: "-host" when our selector is exactly our IKE address.
                let host = my.start_addr == self.me.ip() && my.end_addr == self.me.ip();
                let v6 = my.start_addr.is_ipv6();
                let verb = format!(
                    "{}{}{}",
                    verb.as_str(),
                    if host { "-host" } else { "-client" },
                    if v6 { "-v6" } else { "" }
                );
                let mut env: Vec<(String, String)> = Vec::new();
                let mut set = |k: &str, v: String| env.push((k.to_string(), v));
                set("PATH", std::env::var("PATH").unwrap_or_default());
                set("PLUTO_VERSION", "1.1".into());
                set("PLUTO_VERB", verb.clone());
                set("PLUTO_CONNECTION", self.child.clone());
                set("PLUTO_INTERFACE", self.interface.clone());
                set("PLUTO_REQID", self.reqid.to_string());
                set("PLUTO_PROTO", "esp".into());
                set("PLUTO_UNIQUEID", self.unique_id.to_string());
                set("PLUTO_ME", self.me.ip().to_string());
                set("PLUTO_MY_ID", self.my_id.clone());
                if let Some(s) = subnet(my) {
                    set("PLUTO_MY_CLIENT", s);
                }
                set("PLUTO_MY_PORT", my.start_port.to_string());
                set("PLUTO_MY_PROTOCOL", my.ip_proto.to_string());
                set("PLUTO_PEER", self.peer.ip().to_string());
                set("PLUTO_PEER_ID", self.peer_id.clone());
                if let Some(s) = subnet(other) {
                    set("PLUTO_PEER_CLIENT", s);
                }
                set("PLUTO_PEER_PORT", other.start_port.to_string());
                set("PLUTO_PEER_PROTOCOL", other.ip_proto.to_string());
                let source = self
                    .sources
                    .iter()
                    .find(|a| a.is_ipv6() == v6 && *a >= &my.start_addr && *a <= &my.end_addr);
                if let Some(src) = source {
                    set("PLUTO_MY_SOURCEIP", src.to_string());
                }
                // esprit always UDP-encapsulates ESP (RFC 3948).
                set("PLUTO_UDP_ENC", self.peer.port().to_string());
                set("ESPRIT_IKE_CONNECTION", self.conn.clone());
                set("ESPRIT_SPI_IN", format!("{:08x}", self.spi_in));
                set("ESPRIT_SPI_OUT", format!("{:08x}", self.spi_out));
                let label = format!(
                    "{}.{} {verb} {} === {}",
                    self.conn,
                    self.child,
                    ike::ts::display(my),
                    ike::ts::display(other)
                );
                jobs.push(Job {
                    command: self.command.clone(),
                    label,
                    env,
                });
            }
        }
        jobs
    }
}

/// The queue to the script thread.
pub(crate) struct Updown {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Updown {
    /// Starts the script thread. Without a thread (the system refused one) scripts are
    /// skipped with an error in the log, and the daemon runs on.
    pub(crate) fn start() -> Updown {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("updown".into())
            .spawn(move || {
                for job in rx {
                    run(&job);
                }
            });
        match spawned {
            Ok(t) => Updown {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!("cannot start the updown thread: {e}; updown scripts disabled");
                Updown {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    /// At shutdown: lets the queued scripts (the `down` of every child) run, waiting at
    /// most `limit` for them.
    pub(crate) fn finish(mut self, limit: Duration) {
        self.tx = None;
        let Some(t) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while !t.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!("updown scripts still running at exit; not waiting for them");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = t.join();
    }

    /// Queues the scripts of `env` for `verb`; returns at once.
    pub(crate) fn call(&self, env: &ChildEnv, verb: Verb) {
        let Some(tx) = &self.tx else {
            return;
        };
        for job in env.jobs(verb) {
            if tx.send(job).is_err() {
                tracing::error!("the updown thread is gone; script skipped");
            }
        }
    }
}

/// Runs one script to its end (or [`SCRIPT_TIMEOUT`]) and logs what happened.
fn run(job: &Job) {
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        // charon runs "2>&1 COMMAND": one stream, logged in order.
        .arg(format!("exec 2>&1; {}", job.command))
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("updown {}: cannot run `{}`: {e}", job.label, job.command);
            return;
        }
    };
    // Read the output on a helper thread so that a chatty script cannot fill the pipe
    // while we wait for it with a deadline.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let status = wait_timeout(&mut child, SCRIPT_TIMEOUT);
    let output = reader.join().unwrap_or_default();
    for line in output.lines().take(MAX_LINES) {
        tracing::info!("updown: {line}");
    }
    match status {
        Ok(Some(s)) if s.success() => {
            tracing::debug!("updown {}: `{}` done", job.label, job.command)
        }
        Ok(Some(s)) => tracing::warn!("updown {}: `{}` failed: {s}", job.label, job.command),
        Ok(None) => tracing::warn!(
            "updown {}: `{}` still running after {}s, killed",
            job.label,
            job.command,
            SCRIPT_TIMEOUT.as_secs()
        ),
        Err(e) => tracing::warn!("updown {}: `{}`: {e}", job.label, job.command),
    }
}

/// Waits for `child` at most `timeout`; kills and reaps it after that (`Ok(None)`).
fn wait_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ChildEnv {
        ChildEnv {
            command: "/bin/true".into(),
            conn: "site-b".into(),
            child: "net".into(),
            interface: "esprit0".into(),
            unique_id: 3,
            reqid: 7,
            me: "192.0.2.1:4500".parse().unwrap(),
            peer: "192.0.2.2:4500".parse().unwrap(),
            my_id: "a.test".into(),
            peer_id: "b.test".into(),
            local_ts: vec![
                ike::ts::parse_cidr("10.1.0.0/24").unwrap(),
                ike::ts::parse_cidr("192.0.2.1/32").unwrap(),
            ],
            remote_ts: vec![ike::ts::parse_cidr("fd00:2::/48").unwrap()],
            sources: vec!["10.1.0.1".parse().unwrap()],
            spi_in: 0xc0ffee01,
            spi_out: 0xc0ffee02,
        }
    }

    fn get<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
        job.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn one_job_per_selector_pair_with_strongswans_variables() {
        let jobs = env().jobs(Verb::Up);
        assert_eq!(jobs.len(), 2);
        let j = &jobs[0];
        assert_eq!(get(j, "PLUTO_VERB"), Some("up-client"));
        assert_eq!(get(j, "PLUTO_CONNECTION"), Some("net"));
        assert_eq!(get(j, "PLUTO_INTERFACE"), Some("esprit0"));
        assert_eq!(get(j, "PLUTO_UNIQUEID"), Some("3"));
        assert_eq!(get(j, "PLUTO_REQID"), Some("7"));
        assert_eq!(get(j, "PLUTO_ME"), Some("192.0.2.1"));
        assert_eq!(get(j, "PLUTO_PEER"), Some("192.0.2.2"));
        assert_eq!(get(j, "PLUTO_MY_CLIENT"), Some("10.1.0.0/24"));
        assert_eq!(get(j, "PLUTO_PEER_CLIENT"), Some("fd00:2::/48"));
        assert_eq!(get(j, "PLUTO_MY_SOURCEIP"), Some("10.1.0.1"));
        assert_eq!(get(j, "PLUTO_UDP_ENC"), Some("4500"));
        assert_eq!(get(j, "ESPRIT_SPI_IN"), Some("c0ffee01"));
        // Our selector is our IKE address: "-host", and no source inside it.
        let h = &jobs[1];
        assert_eq!(get(h, "PLUTO_VERB"), Some("up-host"));
        assert_eq!(get(h, "PLUTO_MY_SOURCEIP"), None);
        let mut v6 = env();
        v6.local_ts = vec![ike::ts::parse_cidr("fd00:1::/48").unwrap()];
        assert_eq!(
            get(&v6.jobs(Verb::Down)[0], "PLUTO_VERB"),
            Some("down-client-v6")
        );
        assert_eq!(
            get(&env().jobs(Verb::Rekey)[0], "PLUTO_VERB"),
            Some("rekey-client")
        );
    }

    #[test]
    fn a_hanging_script_is_killed() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        assert!(wait_timeout(&mut child, Duration::from_millis(100))
            .unwrap()
            .is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
