//! Bounded waits: poll a condition until it holds or a deadline passes.
//!
//! The test bench never sleeps a fixed time hoping that something happened; it asks
//! whether it happened, at an interval, up to a bound, and says what it waited for when
//! the bound runs out.

use std::fmt;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

/// A bounded wait ran out before its condition held.
#[derive(Debug, Clone)]
pub struct Timeout {
    /// What was waited for.
    pub what: String,
    /// How long it was waited for.
    pub waited: Duration,
    /// The last error the condition reported, if it reports errors ([`wait_ok`]).
    pub last_error: Option<String>,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.waited, self.what
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last error: {e})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Timeout {}

impl From<Timeout> for io::Error {
    fn from(t: Timeout) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, t)
    }
}

/// Polls `condition` every `poll` until it returns `Some`, for at most `timeout`.
///
/// The condition is asked at least once, and once more at the deadline.
pub fn wait_until<T>(
    timeout: Duration,
    poll: Duration,
    condition: impl FnMut() -> Option<T>,
) -> Result<T, Timeout> {
    wait_for("a condition", timeout, poll, condition)
}

/// [`wait_until`] with a description of the condition for the error message.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> Result<T, Timeout> {
    wait_ok(what, timeout, poll, || condition().ok_or(""))
}

/// Polls `attempt` until it returns `Ok`; on timeout the error carries the last `Err`.
pub fn wait_ok<T, E: fmt::Display>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, Timeout> {
    let start = Instant::now();
    loop {
        let last = match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => e.to_string(),
        };
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(Timeout {
                what: what.to_string(),
                waited: elapsed,
                last_error: (!last.is_empty()).then_some(last),
            });
        }
        thread::sleep(poll.min(timeout - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v.unwrap(), 3);
    }

    #[test]
    fn times_out_with_the_description_and_last_error() {
        let start = Instant::now();
        let e = wait_ok(
            "the moon",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || Err::<(), _>("not yet"),
        )
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(e.waited >= Duration::from_millis(30));
        let text = e.to_string();
        assert!(
            text.contains("the moon") && text.contains("not yet"),
            "{text}"
        );
        let e = wait_for("x", Duration::ZERO, Duration::ZERO, || None::<()>).unwrap_err();
        assert!(e.last_error.is_none(), "{e}");
    }
}
