//! [`Proc`]: a child process that is killed by PID when its guard drops.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use super::wait::wait_for;

/// How long a process gets between SIGTERM and SIGKILL: longer than an esprit daemon
/// waits for its peers to confirm the deletes it sends on SIGTERM (3 s).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A started process, stopped (SIGTERM, then SIGKILL after [`STOP_GRACE`]) on drop.
///
/// The process leads its own process group, so a Ctrl-C on the terminal reaches only the
/// test bench, which then stops its processes in order; and stopping signals the group,
/// so helpers the process forked (nginx's worker) go with it. Signals are sent only while
/// the process is not yet reaped, when its PID cannot have been reused.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    label: String,
    log: Option<PathBuf>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` in a new process group; `label` names it in messages.
    pub fn spawn(label: &str, cmd: &mut Command) -> io::Result<Proc> {
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| super::tools::explain(cmd.get_program(), e))
            .map_err(|e| io::Error::new(e.kind(), format!("starting {label}: {e}")))?;
        Ok(Proc {
            child,
            label: label.to_string(),
            log: None,
            status: None,
        })
    }

    /// Records the file the process writes its output to, for [`Proc::log`].
    pub fn with_log(mut self, log: &Path) -> Proc {
        self.log = Some(log.to_path_buf());
        self
    }

    /// The process ID (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The label given at start.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The output file, if one was recorded.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The output so far (empty if there is no log file), for error messages.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the process itself.
    pub fn signal(&mut self, sig: i32) -> io::Result<()> {
        if self.try_status()?.is_some() {
            return Err(io::Error::other(format!("{} has exited", self.label)));
        }
        kill(self.pid() as i32, sig)
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits at most `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let what = format!("{} (pid {}) to exit", self.label, self.pid());
        let mut error = None;
        let status = wait_for(&what, timeout, Duration::from_millis(10), || {
            match self.try_status() {
                Ok(s) => s,
                Err(e) => {
                    error = Some(e);
                    Some(ExitStatus::default())
                }
            }
        })?;
        error.map_or(Ok(status), Err)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps it.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        let pgid = -(self.pid() as i32);
        let _ = kill(pgid, libc::SIGTERM);
        let exited = wait_for("exit", STOP_GRACE, Duration::from_millis(10), || {
            exited_unreaped(self.pid()).then_some(())
        });
        // Whether the leader went on SIGTERM or not, the group gets SIGKILL while the
        // unreaped leader still holds the PID: stragglers it left are gone too.
        let _ = kill(pgid, libc::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        if exited.is_err() {
            eprintln!("testbed: {} ignored SIGTERM; killed", self.label);
        }
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("testbed: stopping {} (pid {}): {e}", self.label, self.pid());
        }
    }
}

fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the child `pid` has exited, without reaping it (so its PID stays ours).
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is a valid value; waitid(2) writes into it only.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (si_pid stays 0 if no child has changed state).
    rc == 0 && unsafe { info.si_pid() } != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_kills_a_process_that_ignores_sigterm() {
        let mut proc = Proc::spawn(
            "stubborn",
            Command::new("sh").args(["-c", "trap '' TERM; sleep 1000 & wait; wait"]),
        )
        .unwrap();
        let pid = proc.pid();
        assert!(proc.is_running());
        let status = proc.stop().unwrap();
        assert!(!status.success());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        // The backgrounded `sleep` was in the group and went with it: no live process is
        // left in the group (a zombie waiting for init to reap it does not count).
        let live = wait_for(
            "the group to die",
            STOP_GRACE,
            Duration::from_millis(10),
            || (live_group_members(pid) == 0).then_some(()),
        );
        assert!(live.is_ok(), "{live:?}");
    }

    /// Processes of process group `pgid` that are not zombies.
    fn live_group_members(pgid: u32) -> usize {
        let Ok(dir) = fs::read_dir("/proc") else {
            return 0;
        };
        dir.filter_map(|e| fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // "pid (comm) state ppid pgrp ...": fields after the last ')'.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
            })
            .count()
    }

    #[test]
    fn wait_exit_and_signal() {
        let mut proc = Proc::spawn("true", &mut Command::new("true")).unwrap();
        assert!(proc.wait_exit(Duration::from_secs(5)).unwrap().success());
        assert!(proc.signal(libc::SIGTERM).is_err());
        let mut proc = Proc::spawn("sleep", Command::new("sleep").arg("1000")).unwrap();
        let e = proc.wait_exit(Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        proc.signal(libc::SIGTERM).unwrap();
        let status = proc.wait_exit(Duration::from_secs(5)).unwrap();
        assert!(!status.success());
    }
}
