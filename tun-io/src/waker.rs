//! Waking a dataplane thread that sleeps in `poll` (an `eventfd`), so that commands from
//! the control task (install an SA, release held packets, stop) take effect at once
//! instead of at the next packet or timeout.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An `eventfd` counter: [`Waker::wake`] makes it readable, [`Waker::reset`] clears it.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new, non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the descriptor readable (callable from any thread).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN)
        // already means "readable", so the result needs no handling.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears the readable state; the woken thread calls it before draining its queue.
    pub fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not woken) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::poll_readable;
    use std::time::Duration;

    #[test]
    fn wakes_and_resets() {
        let w = Waker::new().unwrap();
        let t = Some(Duration::ZERO);
        assert_eq!(poll_readable(&[w.as_fd()], t).unwrap(), 0);
        w.wake();
        w.wake();
        assert_eq!(poll_readable(&[w.as_fd()], t).unwrap(), 1);
        w.reset();
        assert_eq!(poll_readable(&[w.as_fd()], t).unwrap(), 0);
    }
}
