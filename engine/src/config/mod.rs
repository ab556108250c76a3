//! Loading and checking the configuration file. Errors name the file, the key (as a
//! dotted path like `connections.site-b.children.net.start_action`) and the reason.

mod file;
mod resolve;

use std::fmt;
use std::path::{Path, PathBuf};

pub use file::{
    parse_duration, AuthKind, AuthSection, ChildSection, CloseAction, ConfigFile,
    ConnectionSection, DaemonSection, DpdAction, IkeSecret, MetricsSection, NetstackSection,
    PipeSection, PoolSection, PrivateSecret, SecretsSection, StartAction, TunSection,
};
pub use resolve::{
    load, resolve, ChildPlan, ConnectionPlan, Daemon, Metrics, Netstack, Pipe, PipeProto,
    PipeRemote, Resolved, RouteDevice, Tun, MAX_ROUTE_DEVICES,
};

/// A configuration error: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Dotted key path; empty when the file as a whole is at fault.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error at `key` of `file`.
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Parses TOML text; `file` is only used in errors.
pub fn parse(file: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::new(file, "", e.message().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::new(file, key, e.inner().message().to_string())
    })
}

/// Reads and parses a configuration file.
pub fn read(file: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, "", format!("cannot read: {e}")))?;
    parse(file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of the documentation; `resolve`'s tests build on it.
    pub(super) const SAMPLE: &str = r#"
[daemon]
port = 500
port_nat_t = 4500
control_socket = "/run/esprit/esprit.sock"
keepalive = "20s"
retransmit_timeout = "2s"
retransmit_tries = 5
[tun]
name = "esprit0"
mtu = 1400
[connections.site-b]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
encap = false
dpd_delay = "30s"
rekey_time = "4h"
[connections.site-b.local]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=site-a"
certs = ["site-a.pem"]
[connections.site-b.remote]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=site-b"
cacerts = ["ca.pem"]
[connections.site-b.children.net]
local_ts = ["10.1.0.0/24", "10.96.0.0/12"]
remote_ts = ["10.2.0.0/24"]
esp_proposals = ["aes128gcm16-x25519"]
start_action = "start"
dpd_action = "restart"
close_action = "start"
rekey_time = "1h"
[secrets.ike-site]
id = ["C=CN, O=Local Cluster, CN=site-a", "C=CN, O=Local Cluster, CN=site-b"]
secret = "a long random secret"
[secrets.private.site-a]
file = "site-a-key.pem"
"#;

    #[test]
    fn the_documented_sample_parses() {
        let c = parse(Path::new("esprit.toml"), SAMPLE).unwrap();
        assert_eq!(c.daemon.keepalive, std::time::Duration::from_secs(20));
        assert_eq!(
            c.daemon.retransmit_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.daemon.retransmit_tries, 5);
        let conn = &c.connections["site-b"];
        assert_eq!(conn.dpd_delay, Some(std::time::Duration::from_secs(30)));
        assert_eq!(conn.children["net"].start_action, StartAction::Start);
        assert_eq!(conn.children["net"].dpd_action, DpdAction::Restart);
        assert_eq!(conn.children["net"].close_action, CloseAction::Start);
        assert_eq!(c.secrets.ike["ike-site"].id.len(), 2);
        assert_eq!(
            c.secrets.private["site-a"].file,
            PathBuf::from("site-a-key.pem")
        );
        assert!(
            !format!("{:?}", c.secrets).contains("random secret"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let bad = SAMPLE.replace("start_action = \"start\"", "start_action = \"sometimes\"");
        let e = parse(Path::new("/etc/esprit.toml"), &bad).unwrap_err();
        assert_eq!(e.key, "connections.site-b.children.net.start_action");
        assert!(e.reason.contains("sometimes"), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/esprit.toml: connections.site-b"),
            "{e}"
        );

        let typo = SAMPLE.replace("dpd_delay", "dpd_dealy");
        let e = parse(Path::new("x.toml"), &typo).unwrap_err();
        assert!(e.reason.contains("dpd_dealy"), "{e}");
        assert_eq!(e.key, "connections.site-b.dpd_dealy");

        let dur = SAMPLE.replace("\"4h\"", "\"4 hours\"");
        let e = parse(Path::new("x.toml"), &dur).unwrap_err();
        assert_eq!(e.key, "connections.site-b.rekey_time");

        let e = parse(Path::new("x.toml"), "[daemon]\nkeepalive = \"often\"").unwrap_err();
        assert_eq!(e.key, "daemon.keepalive");

        let e = parse(Path::new("x.toml"), "[daemon\nport=1").unwrap_err();
        assert!(e.key.is_empty() && !e.reason.is_empty());
    }
}
