//! [`Netns`]: a network namespace this process created, deleted on drop.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;

use super::proc::Proc;
use super::tools;
use tun_io::netlink::Netlink;

/// Where named namespaces live, as for `ip netns`.
const RUN_DIR: &str = "/run/netns";

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
    ///
    /// Made with system calls, as `ip netns add` does (so `ip netns` lists it): a fresh
    /// network namespace bind-mounted on `/run/netns/NAME`; no tool is needed.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        {
            let _serial = ADD.lock().unwrap_or_else(|e| e.into_inner());
            sys::create(Path::new(RUN_DIR), &name)?;
        }
        let ns = Netns { name };
        ns.enter(|| Netlink::open()?.set_up("lo"))??;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that holds the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new(RUN_DIR).join(&self.name)
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
    ///
    /// Like `ip netns exec`, but without the tool: the child joins the namespace before
    /// it execs, in a private mount namespace (mounts it makes stay its own) with `/sys`
    /// showing the namespace's interfaces. The PID is the program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let path = CString::new(self.path().into_os_string().into_vec()).unwrap_or_default();
        // SAFETY: the hook runs in the forked child before exec and makes only system
        // calls (open, setns, unshare, mount), which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || sys::join(&path));
        }
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
        if let Err(e) = sys::delete(&self.path()) {
            eprintln!("testbed: deleting namespace {}: {e}", self.name);
        }
    }
}

/// Runs `cmd` to completion; a failure to start or a non-zero exit is an error with the
/// command line, the status and stderr. A program that is not installed is named with
/// the Debian package that has it.
pub fn run_checked(cmd: &mut Command) -> io::Result<Output> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tools::explain(cmd.get_program(), e))
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

/// The system calls behind [`Netns`]: what `ip netns add`, `del` and `exec` do.
mod sys {
    use std::ffi::{CStr, CString};
    use std::fs::{self, OpenOptions};
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::ptr;
    use std::thread;

    /// Creates namespace `name` under `dir`: makes `dir` a shared mount point (so the
    /// namespace mounts show in every mount namespace, `ip netns exec`'s too), creates an
    /// empty file, and bind-mounts a new network namespace on it from a thread that
    /// unshared its own.
    pub(super) fn create(dir: &Path, name: &str) -> io::Result<()> {
        fs::create_dir_all(dir).map_err(|e| at(e, dir, "creating"))?;
        shared_mount_point(dir)?;
        let file = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&file)
            .map_err(|e| at(e, &file, "creating"))?;
        let mounted = thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare changes only this thread's network namespace, and this
                // thread ends right after the mount.
                check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create a network namespace (needs root and a kernel with CONFIG_NET_NS): {e}"),
                    )
                })?;
                mount(
                    Some(c"/proc/thread-self/ns/net"),
                    &cpath(&file)?,
                    None,
                    libc::MS_BIND,
                )
                .map_err(|e| at(e, &file, "bind-mounting the namespace on"))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        if mounted.is_err() {
            let _ = fs::remove_file(&file);
        }
        mounted
    }

    /// Unmounts and removes a namespace file; the namespace ends with its last process.
    pub(super) fn delete(file: &Path) -> io::Result<()> {
        // SAFETY: a valid NUL-terminated path for the duration of the call.
        check(unsafe { libc::umount2(cpath(file)?.as_ptr(), libc::MNT_DETACH) })
            .map_err(|e| at(e, file, "unmounting"))?;
        fs::remove_file(file).map_err(|e| at(e, file, "removing"))
    }

    /// Runs in a forked child before exec: joins the namespace at `path`, moves to a
    /// private mount namespace that still receives the host's new mounts, and mounts a
    /// `/sys` that shows this namespace's interfaces. System calls only.
    pub(super) fn join(path: &CStr) -> io::Result<()> {
        // SAFETY: plain system calls on valid NUL-terminated strings; the descriptor is
        // closed before returning.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            check(fd)?;
            let joined = check(libc::setns(fd, libc::CLONE_NEWNET));
            libc::close(fd);
            joined?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
        }
        mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC)?;
        // SAFETY: as above.
        if unsafe { libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) } == 0 {
            mount(Some(c"sysfs"), c"/sys", Some(c"sysfs"), 0)?;
        }
        Ok(())
    }

    /// Makes `dir` a shared mount point, bind-mounting it on itself first if it is none.
    fn shared_mount_point(dir: &Path) -> io::Result<()> {
        let c = cpath(dir)?;
        let shared = libc::MS_SHARED | libc::MS_REC;
        match mount(None, &c, None, shared) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                mount(Some(&c), &c, None, libc::MS_BIND | libc::MS_REC)
                    .and_then(|()| mount(None, &c, None, shared))
                    .map_err(|e| at(e, dir, "making a mount point of"))
            }
            r => r.map_err(|e| at(e, dir, "sharing the mount")),
        }
    }

    fn mount(
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
    ) -> io::Result<()> {
        let none = c"none";
        // SAFETY: valid NUL-terminated strings for the duration of the call, no data.
        check(unsafe {
            libc::mount(
                source.unwrap_or(none).as_ptr(),
                target.as_ptr(),
                fstype.unwrap_or(none).as_ptr(),
                flags,
                ptr::null(),
            )
        })
    }

    fn cpath(p: &Path) -> io::Result<CString> {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
    }

    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn at(e: io::Error, path: &Path, what: &str) -> io::Error {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
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
