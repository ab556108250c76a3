//! A temporary directory for configurations and logs, removed on drop.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Set this environment variable to keep scratch directories for inspection.
pub const KEEP_ENV: &str = "ESPRIT_TESTBED_KEEP";

/// A directory under the system temporary directory, named `PREFIX-PID-N`.
///
/// Removed on drop, on the panic path too, unless the environment variable [`KEEP_ENV`] is
/// set (to anything): then it is kept and its path printed, to read the daemons' logs.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    /// Creates a fresh, empty directory.
    pub fn new(prefix: &str) -> io::Result<Scratch> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        if path.exists() {
            // A leftover of an earlier process that had our PID.
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path)?;
        let keep = std::env::var_os(KEEP_ENV).is_some();
        Ok(Scratch { path, keep })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Keeps the directory after drop (for inspection).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("testbed: kept {} for inspection", self.path.display());
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("testbed: removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_unique_and_removed() {
        let a = Scratch::new("esprit-scratch-test").unwrap();
        let b = Scratch::new("esprit-scratch-test").unwrap();
        assert_ne!(a.path(), b.path());
        fs::write(a.join("f"), b"x").unwrap();
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }
}
