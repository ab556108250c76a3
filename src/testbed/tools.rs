//! The outside programs the tests use, and the Debian package each comes in.
//!
//! `esprit demo` needs none of them. The tests do (`sudo ./test.sh` installs them all);
//! a test whose program is missing fails with the package to install, never skips.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// Program (as run, or its file name) -> the Debian package that installs it.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ping", "iputils-ping"),
    ("iperf3", "iperf3"),
    ("nginx", "nginx (and libnginx-mod-stream)"),
    ("iptables", "iptables"),
    ("iptables-nft", "iptables"),
    ("iptables-legacy", "iptables"),
    ("nft", "nftables"),
    ("openssl", "openssl"),
    (
        "charon",
        "strongswan-charon (and libcharon-extra-plugins, libstrongswan-standard-plugins)",
    ),
    ("swanctl", "strongswan-swanctl"),
    ("pki", "strongswan-pki"),
    ("certutil", "libnss3-tools"),
    ("pk12util", "libnss3-tools"),
    ("vtysh", "frr"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("zebra", "frr"),
    ("bgpd", "frr"),
    ("bfdd", "frr"),
];

/// The Debian package that has `program`, if it is one the tests use.
pub fn package_of(program: &OsStr) -> Option<&'static str> {
    let name = Path::new(program).file_name()?.to_str()?;
    PACKAGES
        .iter()
        .find(|(p, _)| *p == name)
        .map(|(_, pkg)| *pkg)
}

/// `e` from starting `program`, with the package to install when it is not there.
pub fn explain(program: &OsStr, e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::NotFound {
        return e;
    }
    let prog = Path::new(program).display();
    let msg = match package_of(program) {
        Some(pkg) => format!(
            "`{prog}` is not installed: install the Debian package {pkg} \
             (`sudo ./test.sh` installs everything the tests need)"
        ),
        None => format!("`{prog}` is not installed or not on PATH: {e}"),
    };
    io::Error::new(e.kind(), msg)
}

/// The path of `program` on `PATH` (or `program` itself when it has a slash), or an error
/// naming its package.
pub fn require(program: &str) -> io::Result<PathBuf> {
    let found = if program.contains('/') {
        Some(PathBuf::from(program)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
    };
    found.ok_or_else(|| explain(OsStr::new(program), io::ErrorKind::NotFound.into()))
}

/// Files strongSwan needs as a test peer, and the Debian package of each.
const STRONGSWAN: &[(&str, &str)] = &[
    ("/usr/lib/ipsec/charon", "strongswan-charon"),
    ("/usr/sbin/swanctl", "strongswan-swanctl"),
    ("/usr/bin/pki", "strongswan-pki"),
    (
        "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
        "libcharon-extra-plugins",
    ),
    (
        "/usr/lib/ipsec/plugins/libstrongswan-openssl.so",
        "libstrongswan-standard-plugins",
    ),
];

/// Checks that charon 5.9 with the plugins the tests load is installed, or names what
/// to install.
pub fn require_strongswan() -> io::Result<()> {
    let missing: Vec<_> = STRONGSWAN
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let files: Vec<_> = missing.iter().map(|(f, _)| *f).collect();
    let pkgs: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "strongSwan is not fully installed (no {}): install the Debian packages {} \
             (`sudo ./test.sh` installs everything the tests need)",
            files.join(", "),
            pkgs.join(" ")
        ),
    ))
}

/// `promtool check metrics` on a scrape's `text`: Err with promtool's complaint and
/// the text when it refuses it, or with the package to install when promtool is
/// missing.
pub fn promtool_check(text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool = require("promtool")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("promtool's stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "promtool check metrics refused the body: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_package() {
        let e = require("/usr/lib/ipsec/charon-not-here").unwrap_err();
        assert!(e.to_string().contains("not installed"), "{e}");
        let e = explain(OsStr::new("ping"), io::ErrorKind::NotFound.into());
        assert!(e.to_string().contains("iputils-ping"), "{e}");
        let e = explain(
            OsStr::new("/usr/lib/ipsec/charon"),
            io::ErrorKind::NotFound.into(),
        );
        assert!(e.to_string().contains("strongswan-charon"), "{e}");
        // NSS's tools, which the libreswan tests use for pluto's certificate database.
        for nss in ["certutil", "pk12util"] {
            let e = explain(OsStr::new(nss), io::ErrorKind::NotFound.into());
            assert!(e.to_string().contains("libnss3-tools"), "{e}");
        }
        let e = explain(OsStr::new("promtool"), io::ErrorKind::NotFound.into());
        assert!(e.to_string().contains("package prometheus"), "{e}");
        // FRR for the route-based tests.
        let e = explain(
            OsStr::new("/usr/lib/frr/bgpd"),
            io::ErrorKind::NotFound.into(),
        );
        assert!(e.to_string().contains("package frr"), "{e}");
        let other = explain(OsStr::new("ping"), io::ErrorKind::PermissionDenied.into());
        assert_eq!(other.kind(), io::ErrorKind::PermissionDenied);
        assert!(require("sh").is_ok());
    }
}
