//! `esprit import` against the real thing: the seed 001 pair that its status shows up,
//! remote's `cloud` connection (7.7.8.0/24 === 10.233.97.0/24) and master1's `remote`
//! connection. charon runs master1's ORIGINAL ipsec.conf and ipsec.secrets (through
//! strongSwan's `starter`, as `ipsec start` would); esprit runs what `esprit import`
//! made of remote's ipsec.conf and ipsec.secrets, unedited but for a control socket of
//! its own. The connection must come up by itself (auto=start) and carry counted UDP
//! both ways.
//!
//! The hosts keep the seed's addresses (10.20.8.141 for master1; remote gets
//! 10.20.8.153 on the same link) and subnets (7.7.8.0/24 is not a private range, but
//! the two namespaces have only their veth between them: nothing leaves them).
//!
//! Needs root, charon with kernel-libipsec and strongSwan's starter: strongswan-charon,
//! strongswan-starter, strongswan-swanctl, libcharon-extra-plugins,
//! libstrongswan-standard-plugins (the openssl plugin) and openssl (RSA keys, as the
//! seed's "RSA" secrets say). A missing one fails the test with its package name.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use esprit::testbed::esprit::Daemon;
use esprit::testbed::{udp_counted, wait_ok, KeyKind, Netns, Pki, Proc, Scratch};

const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/strongswan/lib.sh");
const STARTER: &str = "/usr/lib/ipsec/starter";
const SETUP: Duration = Duration::from_secs(30);

/// lib.sh's plugins plus stroke, the plugin that takes ipsec.conf from starter.
const PLUGINS: &str = "random nonce openssl xcbc kdf pem pkcs1 pkcs8 x509 pubkey revocation \
                       constraints kernel-libipsec kernel-netlink socket-default vici stroke";

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seeds")
}

/// Fails, naming the package, when something the test needs is missing.
fn require() {
    let which = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for (path, pkg) in [
        ("/usr/lib/ipsec/charon", "strongswan-charon"),
        (STARTER, "strongswan-starter"),
        ("/etc/ipsec.d", "strongswan-starter"),
        (
            "/usr/lib/ipsec/plugins/libstrongswan-stroke.so",
            "strongswan-starter",
        ),
        (
            "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
            "libcharon-extra-plugins",
        ),
        (
            "/usr/lib/ipsec/plugins/libstrongswan-openssl.so",
            "libstrongswan-standard-plugins",
        ),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: apt-get install {pkg}"
        );
    }
    for (tool, pkg) in [("swanctl", "strongswan-swanctl"), ("openssl", "openssl")] {
        assert!(which(tool), "{tool} is missing: apt-get install {pkg}");
    }
}

/// Runs `script` after sourcing lib.sh, with `env`; its output, or a panic with it.
fn sh(script: &str, env: &[(&str, &str)]) -> String {
    try_sh(script, env).unwrap_or_else(|e| panic!("{e}"))
}

/// [`sh`] returning the failure.
fn try_sh(script: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; source {LIB}; {script}"))
        .envs(env.iter().copied())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{script}` failed: {text}"))
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// Copies a seed's ipsec.conf and ipsec.secrets into `dir` and makes the certificates
/// and keys they name, `(file, CN)`, issued by `pki` (keys as PKCS#1, what an `RSA`
/// line in ipsec.secrets means to charon), plus the CA in ipsec.d/cacerts.
fn host(dir: &Path, seed: &str, pki: &Pki, files: &[(&str, &str)]) {
    for f in ["ipsec.conf", "ipsec.secrets"] {
        let text = fs::read_to_string(seeds().join(seed).join(f)).expect("seed");
        write(&dir.join(f), &text);
    }
    write(&dir.join("ipsec.d/cacerts/ca.pem"), &pki.ca_pem());
    for (file, cn) in files {
        let leaf = pki.issue(cn, cn).expect("certificate");
        write(&dir.join("ipsec.d/certs").join(file), &leaf.cert_pem);
        let key = dir.join("ipsec.d/private").join(file);
        let pkcs8 = dir.join(format!("{file}.pkcs8"));
        write(&pkcs8, &leaf.key_pem);
        fs::create_dir_all(dir.join("ipsec.d/private")).expect("mkdir");
        let out = Command::new("openssl")
            .args(["pkey", "-traditional", "-in"])
            .arg(&pkcs8)
            .arg("-out")
            .arg(&key)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl pkey: {out:?}");
    }
}

#[test]
fn an_imported_ipsec_conf_comes_up_against_charon_on_the_original() {
    require();
    let scratch = Scratch::new("interop-import").expect("scratch");
    let pki = Pki::new(KeyKind::Rsa2048).expect("pki");
    let (cdir, edir) = (scratch.join("master1"), scratch.join("remote"));
    host(
        &cdir,
        "001-master1",
        &pki,
        &[
            ("cloud-connector1.pem", "cloud-connector"),
            ("cloud-connector2.pem", "cloud-connector2"),
        ],
    );
    host(
        &edir,
        "001-remote",
        &pki,
        &[("remote.pem", "remote"), ("remote2.pem", "remote2")],
    );

    // Two hosts on one link, the seed's inner addresses on lo.
    let nc = Netns::new("imp-charon").expect("netns");
    let ne = Netns::new("imp-esprit").expect("netns");
    let out = Command::new("ip")
        .args(["link", "add", "ie0", "netns", ne.name(), "type", "veth"])
        .args(["peer", "name", "ic0", "netns", nc.name()])
        .output()
        .expect("ip link");
    assert!(out.status.success(), "veth: {out:?}");
    for (ns, dev, addr, inner) in [
        (&nc, "ic0", "10.20.8.141/24", "10.233.97.1/32"),
        (&ne, "ie0", "10.20.8.153/24", "7.7.8.1/32"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev]).expect("addr");
        ns.ip(&["link", "set", dev, "up"]).expect("up");
        ns.ip(&["addr", "add", inner, "dev", "lo"]).expect("inner");
    }

    // charon through starter on the original files: ipsec.d and /run are the
    // instance's own (`ip netns exec` gives a private mount namespace).
    let d = cdir.to_string_lossy().into_owned();
    let extra =
        format!("plugins {{\n    stroke {{\n        secrets_file = {d}/ipsec.secrets\n    }}\n}}");
    sh(
        "sw_write_strongswan_conf \"$D\" '' \"$EXTRA\"",
        &[("D", &d), ("EXTRA", &extra), ("SW_PLUGINS", PLUGINS)],
    );
    let conf = cdir.join("strongswan.conf").to_string_lossy().into_owned();
    let charon: Proc = nc
        .spawn(
            &[
                "sh",
                "-c",
                "mount --bind \"$1/run\" /run && mount --bind \"$1/ipsec.d\" /etc/ipsec.d && \
                 exec \"$2\" --nofork --conf \"$1/ipsec.conf\"",
                "sh",
                &d,
                STARTER,
            ],
            &[("STRONGSWAN_CONF", &conf)],
            &cdir.join("charon.out"),
        )
        .expect("starter");
    fs::write(cdir.join("charon.pid"), format!("{}\n", charon.pid())).expect("pid");
    if let Err(e) = try_sh("sw_wait_vici \"$D\" 20", &[("D", &d)]) {
        panic!(
            "{e}\n--- starter ---\n{}\n--- charon.log ---\n{}",
            read(&cdir.join("charon.out")),
            read(&cdir.join("charon.log"))
        );
    }
    wait_ok(
        "charon loaded conn remote",
        SETUP,
        Duration::from_millis(200),
        || {
            let conns = sh("sw_swanctl \"$D\" --list-conns", &[("D", &d)]);
            if conns.contains("remote:") {
                Ok(())
            } else {
                Err(conns)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", charon.log()));

    // esprit on what `esprit import` makes of remote's files.
    let out = Command::new(env!("CARGO_BIN_EXE_esprit"))
        .arg("import")
        .arg(edir.join("ipsec.conf"))
        .output()
        .expect("esprit import");
    assert!(out.status.success(), "import: {out:?}");
    let imported = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(imported.contains("[connections.cloud]"), "{imported}");
    let config = edir.join("esprit.toml");
    let socket = edir.join("esprit.sock");
    write(
        &config,
        &format!(
            "[daemon]\ncontrol_socket = {:?}\n{imported}",
            socket.to_string_lossy()
        ),
    );
    let exe = Path::new(env!("CARGO_BIN_EXE_esprit"));
    let daemon = Daemon::start_with(exe, &ne, &config, &edir).expect("esprit");
    daemon
        .wait_child("cloud", SETUP)
        .unwrap_or_else(|e| panic!("{e}\n--- charon ---\n{}", read(&cdir.join("charon.log"))));
    let sas = sh("sw_swanctl \"$D\" --list-sas", &[("D", &d)]);
    assert!(
        sas.contains("remote: #") && sas.contains("ESTABLISHED"),
        "{sas}"
    );
    eprintln!("charon on the original ipsec.conf:\n{sas}");

    // Counted UDP both ways between the inner subnets.
    for (from, to, addr, port) in [(&ne, &nc, "10.233.97.1", 4740), (&nc, &ne, "7.7.8.1", 4741)] {
        let addr: IpAddr = addr.parse().expect("address");
        let c = udp_counted(from, to, addr, port, 300, Duration::from_millis(2)).expect("udp");
        eprintln!("UDP to {addr}: {} of {} arrived", c.received, c.sent);
        assert!(
            c.missing_seqs.is_empty() && c.duplicates == 0,
            "to {addr}: {c:?}\n{sas}"
        );
    }
    drop(daemon);
    drop(charon);
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}
