//! [`Netns`]: a network namespace this process created, deleted on drop.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;

use super::proc::Proc;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Serialises `ip netns add`: the first one in a boot makes /run/netns a shared mount
/// point, and two doing that at once can fail.
static ADD: Mutex<()> = Mutex::new(());

/// A named network namespace (`/run/netns/NAME`), with `lo` up. Deleted on drop.
///
/// Deleting the name frees the namespace once no process is left in it: stop the
/// processes started in it ([`Proc`]) before or with it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `PREFIX-PID-N`, unique in this process and among live processes.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        {
            let _serial = ADD.lock().unwrap_or_else(|e| e.into_inner());
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that holds the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv...`) and waits for it.
    ///
    /// A failure to start or a non-zero exit is an error that carries the command line,
    /// status and stderr.
    pub fn run(&self, argv: &[&str]) -> io::Result<Output> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        run_checked(self.command(program).args(args))
    }

    /// [`Netns::run`], returning stdout as text.
    pub fn run_stdout(&self, argv: &[&str]) -> io::Result<String> {
        self.run(argv)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Runs `ip -n NAME args...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let out = run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl of this namespace, e.g. `("net/ipv4/ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        // /proc/sys/net shows the network namespace of the thread that opens it.
        self.enter(|| fs::write(&path, value))?
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// A command that runs `program` inside the namespace; add arguments, environment
    /// and stdio, then run it or pass it to [`Proc::spawn`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Starts `argv` inside the namespace with `env` added, stdin closed, and stdout and
    /// stderr appended to `log`. `ip netns exec` execs the program, so the PID is the
    /// program's own.
    pub fn spawn(&self, argv: &[&str], env: &[(&str, &str)], log: &Path) -> io::Result<Proc> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = self.command(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let label = format!("{program} in {}", self.name);
        Ok(Proc::spawn(&label, &mut cmd)?.with_log(log))
    }

    /// Runs `f` on a fresh thread that has joined this namespace (`setns(CLONE_NEWNET)`),
    /// and returns its result. Sockets created inside belong to the namespace for their
    /// whole life, wherever they are used afterwards. A panic in `f` is passed on.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let file = File::open(self.path())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path().display())))?;
        thread::scope(|s| {
            let worker = thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(s, move || {
                    // SAFETY: `file` is an open namespace file for the whole call; setns
                    // changes only this thread's network namespace.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let e = io::Error::last_os_error();
                        return Err(io::Error::new(e.kind(), format!("setns: {e}")));
                    }
                    drop(file);
                    Ok(f())
                })?;
            worker
                .join()
                .unwrap_or_else(|payload| panic::resume_unwind(payload))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("testbed: {e}");
        }
    }
}

/// Runs `cmd` to completion; a failure to start or a non-zero exit is an error with the
/// command line, the status and stderr.
pub fn run_checked(cmd: &mut Command) -> io::Result<Output> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{line}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{line}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};
    use std::time::Duration;

    fn listed(name: &str) -> bool {
        let out = run_checked(Command::new("ip").args(["netns", "list"])).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn namespace_lives_with_its_guard() {
        let ns = Netns::new("esprit-t").unwrap();
        let name = ns.name().to_string();
        assert!(listed(&name));
        let links = ns.ip(&["-o", "link", "show", "up"]).unwrap();
        assert!(
            links.contains("lo:") && links.lines().count() == 1,
            "{links}"
        );
        assert!(ns.run(&["false"]).is_err());
        let err = ns.run(&["sh", "-c", "echo oops >&2; exit 3"]).unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
        ns.sysctl("net.ipv4.ip_default_ttl", "33").unwrap();
        let ttl = ns
            .run_stdout(&["cat", "/proc/sys/net/ipv4/ip_default_ttl"])
            .unwrap();
        assert_eq!(ttl.trim(), "33");
        let host = fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
        assert_ne!(host.trim(), "33", "the host's own setting is untouched");
        drop(ns);
        assert!(!listed(&name));
    }

    #[test]
    fn sockets_made_inside_belong_to_the_namespace() {
        let ns = Netns::new("esprit-t").unwrap();
        ns.ip(&["addr", "add", "192.0.2.77/32", "dev", "lo"])
            .unwrap();
        // The address exists only inside, so binding it works only there.
        let sock = ns
            .enter(|| UdpSocket::bind((Ipv4Addr::new(192, 0, 2, 77), 0)))
            .unwrap()
            .unwrap();
        assert!(UdpSocket::bind((Ipv4Addr::new(192, 0, 2, 77), 0)).is_err());
        let port = sock.local_addr().unwrap().port();
        let listener = ns
            .enter(|| TcpListener::bind(("127.0.0.1", 0)))
            .unwrap()
            .unwrap();
        let tcp_port = listener.local_addr().unwrap().port();
        // A process inside sees both sockets.
        let ss = ns.run_stdout(&["ss", "-Htuln"]).unwrap();
        assert!(ss.contains(&format!("192.0.2.77:{port}")), "{ss}");
        assert!(ss.contains(&format!("127.0.0.1:{tcp_port}")), "{ss}");
        let caught = panic::catch_unwind(|| ns.enter(|| panic!("inside")));
        assert!(caught.is_err());
    }

    #[test]
    fn spawned_process_runs_inside_and_logs() {
        let ns = Netns::new("esprit-t").unwrap();
        let dir = super::super::Scratch::new("esprit-netns-test").unwrap();
        let log = dir.join("p.log");
        let p = ns
            .spawn(
                &["sh", "-c", "echo $GREETING; ip -o link; exec sleep 1000"],
                &[("GREETING", "hello")],
                &log,
            )
            .unwrap();
        let seen = super::super::wait_for(
            "output",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                let l = p.log();
                l.contains("lo:").then_some(l)
            },
        )
        .unwrap();
        assert!(seen.starts_with("hello\n"), "{seen}");
        assert_eq!(seen.lines().count(), 2, "only lo inside: {seen}");
        let pid = p.pid();
        // The PID is the program's: `ip netns exec` and then `sh` exec, no fork.
        super::super::wait_for(
            "the shell to exec sleep",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == "sleep").then_some(())
            },
        )
        .unwrap();
        drop(p);
        assert!(!Path::new(&format!("/proc/{pid}/comm")).exists());
    }
}
