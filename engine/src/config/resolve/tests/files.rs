//! Certificate setups written to a temporary folder with ike's fixtures: keys matched
//! to certificates, relative paths, and the errors of missing or wrong files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ike::config::{Identity, LocalAuth, RemoteAuth};

use super::{cidr, fails_at, id};
use crate::config::{load, ConfigError, Resolved};

/// ike's pki-generated certificates and keys (see make.sh there).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ike/tests/data/auth");

/// A folder of its own under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "esprit-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` (which may have folders) and returns its path.
    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Copies fixtures, concatenated, to `name`.
    fn fixture(&self, name: &str, fixtures: &[&str]) -> PathBuf {
        let pem: Vec<u8> = fixtures
            .iter()
            .flat_map(|f| std::fs::read(Path::new(FIXTURES).join(f)).unwrap())
            .collect();
        self.write(name, &pem)
    }

    /// Writes `text` as `name` and resolves it.
    fn resolve(&self, name: &str, text: &str) -> Result<Resolved, ConfigError> {
        load(&self.write(name, text.as_bytes()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate setup: edge1 (ECDSA) and cloud-connector (RSA, with an intermediate)
/// each against its CA, keys among several `[secrets.private.*]`.
fn pubkey_dir() -> TempDir {
    let dir = TempDir::new();
    dir.fixture("etc/certs/edge1.crt", &["edge1.crt"]);
    dir.fixture(
        "etc/certs/cloud-chain.pem",
        &["cloud-connector.crt", "rsa-int.crt"],
    );
    dir.fixture("etc/ca/ecdsa-ca.crt", &["ecdsa-ca.crt"]);
    dir.fixture("pki/rsa-ca.crt", &["rsa-ca.crt"]);
    dir.fixture("etc/private/edge2.key", &["edge2.key"]);
    dir.fixture("etc/private/cloud.key", &["cloud-connector.pkcs8.key"]);
    dir.fixture("etc/private/edge1.key", &["edge1.key"]);
    dir
}

fn pubkey_conf(dir: &TempDir) -> String {
    format!(
        r#"
[connections.edge]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
[connections.edge.local]
auth = "pubkey"
certs = ["certs/edge1.crt"]
[connections.edge.remote]
auth = "pubkey"
id = "CN=edge2"
cacerts = ["ca/ecdsa-ca.crt"]
[connections.edge.children.net]
remote_ts = ["10.2.0.0/24"]

[connections.cloud]
remote_addrs = ["2001:db8::2"]
[connections.cloud.local]
auth = "pubkey"
certs = ["certs/cloud-chain.pem"]
[connections.cloud.remote]
auth = "pubkey"
cacerts = ["{}"]

[secrets.private.a-edge2]
file = "private/edge2.key"
[secrets.private.b-cloud]
file = "private/cloud.key"
[secrets.private.c-edge1]
file = "private/edge1.key"
"#,
        dir.0.join("pki/rsa-ca.crt").display()
    )
}

#[test]
fn pubkey_with_certificates_and_keys_from_files() {
    let dir = pubkey_dir();
    let r = dir.resolve("etc/esprit.toml", &pubkey_conf(&dir)).unwrap();
    let names: Vec<_> = r.connections.iter().map(|p| p.conn.name.as_str()).collect();
    assert_eq!(names, ["cloud", "edge"]);

    let edge = &r.connections[1].conn;
    assert_eq!(
        edge.local_id,
        id("C=CN, O=Local Cluster, CN=edge1"),
        "the certificate's subject"
    );
    let LocalAuth::Pubkey { key, certs } = &edge.local_auth else {
        panic!("{:?}", edge.local_auth);
    };
    assert_eq!(certs.len(), 1);
    assert!(
        key.matches_certificate(&certs[0]),
        "edge1's key, not edge2's"
    );
    assert_eq!(edge.remote_id, id("CN=edge2"));
    let RemoteAuth::Pubkey(cas) = &edge.remote_auth else {
        panic!("{:?}", edge.remote_auth);
    };
    assert!(format!("{cas:?}").contains("ECDSA Root CA"), "{cas:?}");
    assert_eq!(edge.children[0].local_ts, [cidr("192.0.2.1/32")]);
    assert!(edge.encap);

    let cloud = &r.connections[0].conn;
    assert_eq!(
        cloud.local_id,
        id("C=CN, O=Local Cluster, CN=cloud-connector")
    );
    assert_eq!(cloud.remote_id, Identity::Any);
    let LocalAuth::Pubkey { key, certs } = &cloud.local_auth else {
        panic!("{:?}", cloud.local_auth);
    };
    assert_eq!(certs.len(), 2, "end entity and intermediate");
    assert!(key.matches_certificate(&certs[0]));
    assert!(format!("{:?}", cloud.remote_auth).contains("Pubkey"));
    assert!(cloud.children.is_empty() && r.connections[0].children.is_empty());

    // A configured id wins over the certificate's subject.
    let text = pubkey_conf(&dir).replace(
        "certs = [\"certs/edge1.crt\"]",
        "certs = [\"certs/edge1.crt\"]\nid = \"@edge1\"",
    );
    let r = dir.resolve("etc/esprit.toml", &text).unwrap();
    assert_eq!(r.connections[1].conn.local_id, id("@edge1"));
}

#[test]
fn relative_paths_start_at_the_config_folder() {
    let dir = pubkey_dir();
    // The same files seen from another folder, and an absolute path (rsa-ca) unchanged.
    let text = pubkey_conf(&dir)
        .replace("\"certs/", "\"../etc/certs/")
        .replace("\"ca/", "\"../etc/ca/")
        .replace("\"private/", "\"../etc/private/");
    dir.resolve("elsewhere/esprit.toml", &text).unwrap();

    let missing = text.replace("../etc/certs/edge1.crt", "edge1.crt");
    let e = fails_at(
        dir.resolve("elsewhere/esprit.toml", &missing),
        "connections.edge.local.certs",
        "cannot read",
    );
    let resolved = dir.0.join("elsewhere").join("edge1.crt");
    assert!(e.reason.contains(&resolved.display().to_string()), "{e}");
}

#[test]
fn pubkey_errors() {
    let dir = pubkey_dir();
    let conf = pubkey_conf(&dir);
    let run = |text: &str| dir.resolve("etc/esprit.toml", text);

    let e = fails_at(
        run(&conf.replace(
            "file = \"private/edge1.key\"",
            "file = \"private/edge2.key\"",
        )),
        "connections.edge.local.certs",
        "no [secrets.private.*] key matches the certificate 'C=CN, O=Local Cluster, CN=edge1'",
    );
    assert!(e.reason.contains("edge1.crt"), "{e}");

    let e = fails_at(
        run(&conf.replace("private/cloud.key", "private/gone.key")),
        "secrets.private.b-cloud.file",
        "cannot read",
    );
    assert!(
        e.reason
            .contains(&dir.0.join("etc/private/gone.key").display().to_string()),
        "{e}"
    );

    dir.write(
        "etc/private/junk.key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
    );
    fails_at(
        run(&conf.replace("private/cloud.key", "private/junk.key")),
        "secrets.private.b-cloud.file",
        "junk.key",
    );

    fails_at(
        run(&conf.replace("ca/ecdsa-ca.crt", "ca/gone.crt")),
        "connections.edge.remote.cacerts",
        "gone.crt: cannot read",
    );
    fails_at(
        run(&conf.replace("cacerts = [\"ca/ecdsa-ca.crt\"]", "")),
        "connections.edge.remote.cacerts",
        "needs cacerts",
    );
    fails_at(
        run(&conf.replace(
            "cacerts = [\"ca/ecdsa-ca.crt\"]",
            "cacerts = [\"private/edge1.key\"]",
        )),
        "connections.edge.remote.cacerts",
        "no CERTIFICATE",
    );
    fails_at(
        run(&conf.replace("certs = [\"certs/edge1.crt\"]", "")),
        "connections.edge.local.certs",
        "needs our certificate",
    );
    fails_at(
        run(&conf.replace(
            "[secrets.private.c-edge1]\nfile = \"private/edge1.key\"\n",
            "",
        )),
        "connections.edge.local.certs",
        "(2 keys tried)",
    );
}

#[test]
fn load_names_an_unreadable_file() {
    let dir = TempDir::new();
    let path = dir.0.join("absent.toml");
    let e = load(&path).unwrap_err();
    assert_eq!(e.file, path);
    assert!(e.key.is_empty() && e.reason.contains("cannot read"), "{e}");
}
