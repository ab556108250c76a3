//! `esprit import` on every strongSwan configuration of the seeds (tests/data/seeds,
//! see its README): each imports, names what it cannot carry, and the result passes
//! `esprit check` once the certificate and key files it names exist (the seeds do not
//! hold them; a throw-away CA issues them here, under the names the files use).

use std::path::{Path, PathBuf};
use std::process::Command;

use esprit::testbed::{KeyKind, Pki, Scratch};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_esprit"))
}

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seeds")
}

/// One seed setup: its folder, its main file, the (certificate, key, CN) files it names
/// relative to that file's folder, and where the CA goes.
struct Case {
    dir: &'static str,
    file: &'static str,
    keys: &'static [(&'static str, &'static str, &'static str)],
    ca: &'static str,
    /// Lines the output must hold.
    expect: &'static [&'static str],
    /// Connections the output must define.
    conns: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        dir: "001-master1",
        file: "ipsec.conf",
        keys: &[
            (
                "ipsec.d/certs/cloud-connector1.pem",
                "ipsec.d/private/cloud-connector1.pem",
                "cloud-connector",
            ),
            (
                "ipsec.d/certs/cloud-connector2.pem",
                "ipsec.d/private/cloud-connector2.pem",
                "cloud-connector2",
            ),
        ],
        ca: "ipsec.d/cacerts/ca.pem",
        expect: &[
            "remote_addrs = [\"%any\"]\nrekey_time = \"57m\"\nmediation = true",
            "leftsubnet given twice in conn proxy; the last one counts",
            "# not carried: keyingtries=1",
            "rekey_time = \"57m\"",
            "rekey_time = \"17m\"",
        ],
        conns: &["medsrv", "proxy", "remote"],
    },
    Case {
        dir: "001-edge1",
        file: "ipsec.conf",
        keys: &[
            (
                "ipsec.d/certs/proxy_cert.pem",
                "ipsec.d/private/proxy_key.pem",
                "proxy",
            ),
            (
                "ipsec.d/certs/proxy2_cert.pem",
                "ipsec.d/private/proxy2_key.pem",
                "proxy2",
            ),
        ],
        ca: "ipsec.d/cacerts/ca.pem",
        expect: &[
            "mediation = true",
            "mediated_by = \"medsrv\"",
            "start_action = \"start\"",
        ],
        conns: &["cloud", "medsrv", "peer"],
    },
    Case {
        dir: "001-remote",
        file: "ipsec.conf",
        keys: &[
            (
                "ipsec.d/certs/remote.pem",
                "ipsec.d/private/remote.pem",
                "remote",
            ),
            (
                "ipsec.d/certs/remote2.pem",
                "ipsec.d/private/remote2.pem",
                "remote2",
            ),
        ],
        ca: "ipsec.d/cacerts/ca.pem",
        expect: &[
            "mediation = true",
            "mediated_by = \"medsrv\"",
            "# not carried: leftsourceip=1.1.1.236: a mediation connection carries no traffic",
        ],
        conns: &["cloud", "medsrv", "peer"],
    },
    Case {
        dir: "000-connector",
        file: "swanctl.conf",
        keys: &[(
            "x509/cloud-connector.pem",
            "private/cloud-connector.key",
            "cloud-connector",
        )],
        ca: "x509ca/ca.pem",
        expect: &[
            "proposals = [\"aes128-sha256-prfaesxcbc-ecp256\"]",
            "[connections.edge1.children.edge1-n2p]",
        ],
        conns: &["edge1"],
    },
    Case {
        dir: "000-edge1",
        file: "swanctl.conf",
        keys: &[("x509/edge1.pem", "private/edge1.pem", "edge1")],
        ca: "x509ca/ca.pem",
        expect: &[
            "# not carried: line 43: hostaccess = yes: not supported",
            "remote_addrs = [\"10.20.8.24\"]",
        ],
        conns: &["cloud-connector"],
    },
    Case {
        dir: "003-client",
        file: "ipsec.conf",
        keys: &[],
        ca: "",
        expect: &[
            "vips = [\"0.0.0.0\"]",
            "proposals = [\"aes256-sha256-modp2048\"]",
            "secret = \"dummy1234\"",
            "id = [\"@pod.minion.local\", \"@master.local\"]",
        ],
        conns: &["k8s-pod"],
    },
];

/// Copies a seed folder into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("seed folder") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn every_seed_configuration_imports_and_passes_check() {
    let scratch = Scratch::new("import").expect("scratch");
    let pki = Pki::new(KeyKind::EcdsaP256).expect("pki");
    for case in CASES {
        let dir = scratch.join(case.dir);
        copy_dir(&seeds().join(case.dir), &dir);
        if !case.ca.is_empty() {
            write(&dir.join(case.ca), &pki.ca_pem());
        }
        for (cert, key, cn) in case.keys {
            let leaf = pki.issue(cn, cn).expect("leaf");
            write(&dir.join(cert), &leaf.cert_pem);
            write(&dir.join(key), &leaf.key_pem);
        }
        let out = Command::new(exe())
            .arg("import")
            .arg(dir.join(case.file))
            .output()
            .expect("esprit import");
        let toml = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {err}", case.dir);
        let notes = toml.matches("# not carried: ").count();
        if notes > 0 {
            let said = format!("{notes} option(s) not carried over");
            assert!(err.contains(&said), "{}: {err}", case.dir);
        }
        for line in case.expect {
            assert!(
                toml.contains(line),
                "{}: {line:?} missing in:\n{toml}",
                case.dir
            );
        }
        let conf = dir.join("esprit.toml");
        std::fs::write(&conf, &toml).expect("write");
        let check = Command::new(exe())
            .args(["check", "-c"])
            .arg(&conf)
            .output()
            .expect("esprit check");
        assert!(
            check.status.success(),
            "{}: esprit check failed: {}\n{toml}",
            case.dir,
            String::from_utf8_lossy(&check.stderr)
        );
        let file = engine::config::read(&conf).expect("read back");
        let names: Vec<&str> = file.connections.keys().map(String::as_str).collect();
        assert_eq!(names, case.conns, "{}", case.dir);
    }
}

#[test]
fn import_errors_name_the_file_and_line() {
    let scratch = Scratch::new("import-bad").expect("scratch");
    let conf = scratch.join("ipsec.conf");
    std::fs::write(&conf, "conn a\n    auto=start\n  what is this\n").expect("write");
    let out = Command::new(exe())
        .arg("import")
        .arg(&conf)
        .output()
        .expect("import");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: line 3: 'what is this': expected key=value",
            conf.display()
        )),
        "{err}"
    );
}
