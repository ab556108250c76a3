//! deploy/esprit-gateway, the Helm chart for seed 002's HA gateway pair, rendered with
//! Helm's own engine and checked the way a cluster and the daemons would take it.
//!
//! There is no helm binary and no cluster here: tests/helm/render.py renders and lints
//! the chart with helm-python-sdk (Helm v4's Go library behind a C ABI) and validates
//! every object against the Kubernetes API schemas with kubernetes-validate (strict:
//! unknown fields fail), for the oldest Kubernetes the chart accepts and the newest the
//! validator knows. Both live in a venv that `test.sh` makes (ESPRIT_HELM_VENV, default
//! /var/cache/esprit-tests/helm-venv). This file then takes the rendered objects apart:
//! each gateway's esprit.toml (with its certificate files) must pass the built
//! `esprit check`, each FRR configuration must pass FRR's own parser (`vtysh --dryrun`,
//! Debian package frr) and peer over the tunnel link with the peer's ASN, and the pods
//! must get exactly the privileges the design needs. One test runs a rendered gateway for
//! real in network namespaces: its esprit.toml brings up the tunnel to an esprit peer,
//! its frr.conf (in FRR's zebra and bgpd, Debian's frr) peers over the link addresses,
//! and the learned routes carry a ping. Needs root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use esprit::testbed::esprit::Daemon;
use esprit::testbed::tools::require;
use esprit::testbed::{wait_ok, KeyKind, Netns, Pki, Proc, Scratch, Topology};
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_esprit");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The venv's python, which has helm_python and kubernetes_validate.
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("ESPRIT_HELM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/esprit-tests/helm-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "no {}: `sudo ./test.sh` makes that venv (Debian packages python3, python3-venv) and \
         pip-installs helm-python-sdk and kubernetes-validate into it",
        python.display()
    );
    python
}

/// What the chart rendered: its objects, and its notes.
struct Rendered {
    objects: Vec<Value>,
    notes: String,
}

impl Rendered {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        names.sort();
        names
    }
}

/// Renders, lints and validates the chart with `values` (the chart's defaults alone when
/// None), as release "vpn" in namespace "vpn". Err: render.py's exit code and stderr.
fn render(values: Option<&Path>, scratch: &Scratch) -> Result<Rendered, (i32, String)> {
    let out = scratch.join("rendered");
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo("tests/helm/render.py"))
        .arg(repo("deploy/esprit-gateway"))
        .arg(&out);
    if let Some(v) = values {
        cmd.arg("--values").arg(v);
    }
    let o = cmd.output().expect("run tests/helm/render.py");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        return Err((o.status.code().unwrap_or(-1), stderr));
    }
    print!("{}", String::from_utf8_lossy(&o.stdout));
    let list: Vec<Value> =
        serde_json::from_slice(&fs::read(out.join("manifests.json")).expect("manifests.json"))
            .expect("manifests.json is JSON");
    Ok(Rendered {
        objects: list.into_iter().map(|e| e["object"].clone()).collect(),
        notes: fs::read_to_string(out.join("NOTES.txt")).expect("NOTES.txt"),
    })
}

fn render_ok(values: Option<&Path>, scratch: &Scratch) -> Rendered {
    render(values, scratch).unwrap_or_else(|(code, err)| panic!("render.py exit {code}:\n{err}"))
}

/// A ConfigMap's or Secret's file `key`.
fn file<'a>(obj: &'a Value, key: &str) -> &'a str {
    let field = if obj["kind"] == "Secret" {
        "stringData"
    } else {
        "data"
    };
    obj[field][key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {field}.{key}", obj["metadata"]["name"]))
}

/// Writes every file of a Secret into `dir`, as the pod's volume would hold them, and
/// runs the built `esprit check` on its esprit.toml; returns the configuration text.
fn esprit_check(secret: &Value, dir: &Path) -> String {
    fs::create_dir_all(dir).expect("mkdir");
    for (name, text) in secret["stringData"].as_object().expect("stringData") {
        fs::write(dir.join(name), text.as_str().expect("text")).expect("write");
    }
    let config = dir.join("esprit.toml");
    let o = Command::new(EXE)
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run esprit check");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "esprit check failed: {out}");
    assert!(out.contains("ok (1 connection(s))"), "{out}");
    fs::read_to_string(config).expect("read")
}

/// FRR's own parser on a rendered frr.conf (`vtysh --dryrun`: no daemon involved).
fn frr_parses(conf: &str, path: &Path) {
    let vtysh = require("vtysh").unwrap_or_else(|e| panic!("{e}"));
    fs::write(path, conf).expect("write");
    let o = Command::new(vtysh)
        .arg("--dryrun")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run vtysh");
    assert!(
        o.status.success(),
        "vtysh --dryrun rejects {}:\n{}{}\n{conf}",
        path.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l.trim_end() == line),
        "no line {line:?} in:\n{text}"
    );
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect()
}

/// The gateway pod runs in the node's network namespace on its node, with
/// /dev/net/tun and only NET_ADMIN and NET_BIND_SERVICE for esprit: no privileged
/// container, no XFRM.
fn check_gateway_pod(deploy: &Value, node: &str, secret: &str, frr: &str) {
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], node);
    let containers = pod["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["esprit", "frr"]);
    for c in containers
        .iter()
        .chain(pod["initContainers"].as_array().unwrap())
    {
        assert_ne!(c["securityContext"]["privileged"], true, "{}", c["name"]);
    }
    let esprit = &containers[0];
    assert_eq!(
        strings(&esprit["args"]),
        ["run", "-c", "/etc/esprit/esprit.toml"]
    );
    let caps = &esprit["securityContext"]["capabilities"];
    assert_eq!(strings(&caps["drop"]), ["ALL"]);
    assert_eq!(strings(&caps["add"]), ["NET_ADMIN", "NET_BIND_SERVICE"]);
    let mounts = esprit["volumeMounts"].as_array().unwrap();
    let mount_of = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("esprit has no mount at {path}"))["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let tun = volume(&mount_of("/dev/net/tun"));
    assert_eq!(tun["hostPath"]["path"], "/dev/net/tun");
    assert_eq!(tun["hostPath"]["type"], "CharDevice");
    assert_eq!(
        volume(&mount_of("/etc/esprit"))["secret"]["secretName"],
        secret
    );
    let frr_config = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == frr);
    assert!(
        frr_config.is_some(),
        "the pod does not mount ConfigMap {frr}"
    );
}

#[test]
fn two_psk_gateways_render_validate_and_load() {
    let scratch = Scratch::new("helm-psk").expect("scratch");
    let r = render_ok(Some(&repo("tests/data/helm/psk-values.yaml")), &scratch);
    assert_eq!(
        r.names(),
        [
            "ConfigMap/vpn-esprit-gateway-routes-frr",
            "ConfigMap/vpn-esprit-gateway-tunnel1-frr",
            "ConfigMap/vpn-esprit-gateway-tunnel2-frr",
            "DaemonSet/vpn-esprit-gateway-routes",
            "Deployment/vpn-esprit-gateway-tunnel1",
            "Deployment/vpn-esprit-gateway-tunnel2",
            "Secret/vpn-esprit-gateway-tunnel1",
            "Secret/vpn-esprit-gateway-tunnel2",
        ]
    );

    // Each gateway: its own route-based connection, with the link address on its device.
    let gateways = [
        (
            "tunnel1",
            "worker-a",
            "172.27.0.1",
            "203.0.113.10",
            "169.254.100.2/30",
            "169.254.100.1",
            "172.27.0.2",
        ),
        (
            "tunnel2",
            "worker-b",
            "172.27.0.2",
            "203.0.113.20",
            "169.254.100.6/30",
            "169.254.100.5",
            "172.27.0.1",
        ),
    ];
    for (name, node, node_addr, remote, inside, peer_inside, other) in gateways {
        let secret = r.get("Secret", &format!("vpn-esprit-gateway-{name}"));
        let toml = esprit_check(secret, &scratch.join(name));
        for line in [
            format!("[connections.{name}]"),
            format!("local_addrs = [\"{node_addr}\"]"),
            format!("remote_addrs = [\"{remote}\"]"),
            "tun = \"ss0\"".to_string(),
            format!("tun_addrs = [\"{inside}\"]"),
            "local_ts = [\"0.0.0.0/0\"]".to_string(),
            "remote_ts = [\"0.0.0.0/0\"]".to_string(),
            "start_action = \"start\"".to_string(),
        ] {
            has_line(&toml, &line);
        }
        let frr = r.get("ConfigMap", &format!("vpn-esprit-gateway-{name}-frr"));
        let conf = file(frr, "frr.conf");
        frr_parses(conf, &scratch.join(format!("{name}-frr.conf")));
        // eBGP with the peer's end of the tunnel link, in the peer's ASN.
        has_line(conf, &format!(" neighbor {peer_inside} remote-as 64514"));
        has_line(
            conf,
            &format!("  neighbor {peer_inside} route-map TUNNEL-OUT out"),
        );
        has_line(conf, "router bgp 65010");
        has_line(conf, "  network 172.27.0.0/16");
        has_line(
            conf,
            "ip prefix-list LOCAL seq 5 permit 172.27.0.0/16 le 32",
        );
        // iBGP with the routes DaemonSet (dynamic neighbors) and with the other gateway.
        has_line(conf, " bgp listen range 172.27.0.0/16 peer-group CLUSTER");
        has_line(conf, &format!(" neighbor {other} remote-as internal"));
        has_line(file(frr, "daemons"), "bgpd=yes");
        has_line(file(frr, "daemons"), "bfdd=no");
        check_gateway_pod(
            r.get("Deployment", &format!("vpn-esprit-gateway-{name}")),
            node,
            &format!("vpn-esprit-gateway-{name}"),
            &format!("vpn-esprit-gateway-{name}-frr"),
        );
    }
    has_line(
        &fs::read_to_string(scratch.join("tunnel1/esprit.toml")).unwrap(),
        r#"secret = "first tunnel's \"quoted\" secret""#,
    );

    // The routes DaemonSet: iBGP with both gateways, ECMP over both, not on their nodes.
    let routes = r.get("ConfigMap", "vpn-esprit-gateway-routes-frr");
    let conf = file(routes, "frr.conf");
    frr_parses(conf, &scratch.join("routes-frr.conf"));
    has_line(conf, " neighbor 172.27.0.1 peer-group GATEWAYS");
    has_line(conf, " neighbor 172.27.0.2 peer-group GATEWAYS");
    has_line(conf, " neighbor GATEWAYS remote-as internal");
    has_line(conf, "  maximum-paths ibgp 2");
    let ds = r.get("DaemonSet", "vpn-esprit-gateway-routes");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!(term["key"], "kubernetes.io/hostname");
    assert_eq!(term["operator"], "NotIn");
    assert_eq!(strings(&term["values"]), ["worker-a", "worker-b"]);
    assert!(
        r.notes.contains("BGP neighbor 169.254.100.1 (AS 64514)"),
        "{}",
        r.notes
    );
}

/// `text` as a YAML literal block indented by `indent` spaces.
fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[test]
fn certificate_gateways_with_bfd_and_two_local_cidrs() {
    let scratch = Scratch::new("helm-certs").expect("scratch");
    let pki = Pki::new(KeyKind::EcdsaP256).expect("pki");
    let mut values = String::from(
        "localCidrs: [10.0.0.0/16, 10.96.0.0/12]\n\
         remoteCidrs: [10.200.0.0/16]\n\
         bgp:\n  peerASN: 64600\n  localASN: 65100\n  listenRanges: [172.27.0.0/24]\n  \
         bfd:\n    enabled: true\n    detectMultiplier: 5\n\
         tunnels:\n",
    );
    for (i, name) in ["gw-east", "gw-west"].into_iter().enumerate() {
        let leaf = pki.issue(name, name).expect("issue");
        values += &format!(
            "  - name: {name}\n    node: node-{i}\n    nodeAddress: 172.27.0.{n}\n    \
             localAddress: 192.0.2.{n}\n    localId: \"{dn}\"\n    \
             remoteAddress: 198.51.100.{n}\n    remoteId: \"C=CN, O=Local Cluster, CN=peer\"\n    \
             device: vpn{i}\n    mtu: 1380\n    insideAddress: 169.254.{n}.2/30\n    peerInsideAddress: 169.254.{n}.1\n    \
             auth: pubkey\n    proposals: [aes256gcm16-prfsha256-ecp256]\n    \
             espProposals: [aes256gcm16-ecp256]\n    cert: |\n{cert}    key: |\n{key}    caCert: |\n{ca}",
            n = i + 1,
            dn = leaf.dn,
            cert = yaml_block(&leaf.cert_pem, 6),
            key = yaml_block(&leaf.key_pem, 6),
            ca = yaml_block(&pki.ca_pem(), 6),
        );
    }
    let values_file = scratch.join("certs-values.yaml");
    fs::write(&values_file, &values).expect("write values");
    let r = render_ok(Some(&values_file), &scratch);

    let secret = r.get("Secret", "vpn-esprit-gateway-gw-east");
    let mut files: Vec<&String> = secret["stringData"].as_object().unwrap().keys().collect();
    files.sort();
    assert_eq!(files, ["ca.pem", "cert.pem", "esprit.toml", "key.pem"]);
    let toml = esprit_check(secret, &scratch.join("gw-east"));
    for line in [
        "local_addrs = [\"192.0.2.1\"]",
        "tun = \"vpn0\"",
        "tun_addrs = [\"169.254.1.2/30\"]",
        "tun_mtu = 1380",
        "proposals = [\"aes256gcm16-prfsha256-ecp256\"]",
        "esp_proposals = [\"aes256gcm16-ecp256\"]",
        "auth = \"pubkey\"",
        "id = \"C=CN, O=Local Cluster, CN=gw-east\"",
        "certs = [\"cert.pem\"]",
        "cacerts = [\"ca.pem\"]",
        "[secrets.private.gw-east]",
        "file = \"key.pem\"",
    ] {
        has_line(&toml, line);
    }
    assert!(
        !toml.contains("[secrets.ike"),
        "a PSK section with certificates:\n{toml}"
    );
    esprit_check(
        r.get("Secret", "vpn-esprit-gateway-gw-west"),
        &scratch.join("gw-west"),
    );

    let frr = r.get("ConfigMap", "vpn-esprit-gateway-gw-east-frr");
    let conf = file(frr, "frr.conf");
    frr_parses(conf, &scratch.join("gw-east-frr.conf"));
    has_line(conf, "router bgp 65100");
    has_line(conf, " neighbor 169.254.1.1 remote-as 64600");
    has_line(conf, " neighbor 169.254.1.1 bfd profile esprit");
    has_line(conf, "  detect-multiplier 5");
    has_line(conf, "  network 10.0.0.0/16");
    has_line(conf, "  network 10.96.0.0/12");
    has_line(
        conf,
        "ip prefix-list REMOTE seq 1000 permit 10.200.0.0/16 le 32",
    );
    has_line(conf, " bgp listen range 172.27.0.0/24 peer-group CLUSTER");
    has_line(file(frr, "daemons"), "bfdd=yes");
    let routes = file(
        r.get("ConfigMap", "vpn-esprit-gateway-routes-frr"),
        "frr.conf",
    );
    frr_parses(routes, &scratch.join("routes-frr.conf"));
    has_line(routes, " neighbor GATEWAYS bfd profile esprit");
}

/// A values error fails the render with Helm's message naming the value.
fn render_fails(values: Option<&str>, message: &str) {
    let scratch = Scratch::new("helm-fail").expect("scratch");
    let path = values.map(|v| {
        let p = scratch.join("values.yaml");
        fs::write(&p, v).expect("write");
        p
    });
    match render(path.as_deref(), &scratch) {
        Ok(_) => panic!("rendered without error, expected {message:?}"),
        Err((code, err)) => {
            assert_eq!(code, 2, "{err}");
            assert!(err.contains(message), "expected {message:?} in:\n{err}");
        }
    }
}

#[test]
fn missing_or_bad_values_fail_the_render_by_name() {
    // The chart's defaults alone: no tunnel.
    render_fails(None, "tunnels is required");
    let base = "localCidrs: [10.0.0.0/16]\nbgp: {peerASN: 64514}\n";
    let tunnel = "node: n1\n    nodeAddress: 10.0.0.1\n    remoteAddress: 203.0.113.1\n    \
                  insideAddress: 169.254.100.2/30\n    peerInsideAddress: 169.254.100.1";
    render_fails(
        Some(&format!("{base}tunnels:\n  - name: t1\n    {tunnel}\n")),
        "tunnels[0].psk is required with auth: psk",
    );
    render_fails(
        Some(&format!(
            "localCidrs: [10.0.0.0/16]\ntunnels:\n  - name: t1\n    psk: x\n    {tunnel}\n"
        )),
        "bgp.peerASN is required",
    );
    render_fails(
        Some(&format!(
            "{base}tunnels:\n  - name: Tunnel_1\n    psk: x\n    {tunnel}\n"
        )),
        "tunnels[0].name \"Tunnel_1\": use a DNS label",
    );
    render_fails(
        Some(&format!(
            "{base}tunnels:\n  - name: t1\n    auth: pubkey\n    {tunnel}\n"
        )),
        "tunnels[0].cert is required with auth: pubkey",
    );
    // values.schema.json: a misspelt key and a malformed prefix, each named by its path.
    let bad = format!(
        "localCidrs: [10.0.0.0/16, 10.1.0.0/33]\nbgp: {{peerASN: 64514}}\n\
         tunnels:\n  - name: t1\n    psk: x\n    remoteAdress: 203.0.113.1\n    {tunnel}\n"
    );
    render_fails(
        Some(&bad),
        "at '/tunnels/0': additional properties 'remoteAdress' not allowed",
    );
    render_fails(
        Some(&bad),
        "at '/localCidrs/1': '10.1.0.0/33' does not match pattern",
    );
    render_fails(
        Some(&format!(
            "localCidrs: [10.0.0.0/16]\nbgp: {{peerASN: \"64514\"}}\n\
             tunnels:\n  - name: t1\n    psk: x\n    {tunnel}\n"
        )),
        "at '/bgp/peerASN'",
    );
}

/// FRR's zebra and bgpd in a namespace, with their sockets, PID files and logs in `dir`.
/// The configuration goes in as FRR's own boot does it: `vtysh -f` hands each line to
/// the daemon it belongs to.
struct Frr {
    dir: PathBuf,
    /// zebra and bgpd, stopped when this is dropped.
    _daemons: Vec<Proc>,
}

impl Frr {
    /// Starts `daemons` (zebra first) in `ns` and loads `conf` into them.
    fn start(ns: &Netns, dir: &Path, daemons: &[&str], conf: &str) -> Frr {
        let vtysh = require("vtysh").unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dir).expect("mkdir");
        // The daemons drop to user frr, and only the frrvty group may use their sockets.
        let o = Command::new("chown")
            .args(["frr:frr"])
            .arg(dir)
            .output()
            .expect("chown");
        assert!(o.status.success(), "chown frr:frr: {o:?} (package frr)");
        let d = dir.to_str().expect("utf-8 path");
        let zserv = format!("{d}/zserv.api");
        let names = daemons;
        let mut daemons = Vec::new();
        for &name in names {
            let exe = format!("/usr/lib/frr/{name}");
            assert!(
                Path::new(&exe).is_file(),
                "no {exe}: install the Debian package frr"
            );
            let pid = format!("{d}/{name}.pid");
            let bfdctl = format!("{d}/bfdd.sock");
            let mut argv = vec![
                exe.as_str(),
                "-u",
                "frr",
                "-g",
                "frr",
                "--vty_socket",
                d,
                "-z",
                &zserv,
                "-i",
                &pid,
                "-f",
                "/dev/null",
                "-P",
                "0",
            ];
            if name == "bfdd" {
                argv.extend(["--bfdctl", &bfdctl]);
            }
            daemons.push(
                ns.spawn(&argv, &[], &dir.join(format!("{name}.log")))
                    .expect("start FRR"),
            );
            let vty = dir.join(format!("{name}.vty"));
            wait_ok(
                &format!("{name}'s vty socket"),
                Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    if vty.exists() {
                        Ok(())
                    } else {
                        Err("not yet")
                    }
                },
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{e}: {}",
                    fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
                )
            });
        }
        let file = dir.join("frr.conf");
        fs::write(&file, conf).expect("write frr.conf");
        let o = Command::new(vtysh)
            .arg("--vty_socket")
            .arg(dir)
            .arg("-f")
            .arg(&file)
            .output()
            .expect("vtysh -f");
        assert!(
            o.status.success(),
            "vtysh -f {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Frr {
            dir: dir.to_path_buf(),
            _daemons: daemons,
        }
    }

    fn show(&self, command: &str) -> String {
        let o = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .arg("-c")
            .arg(command)
            .output()
            .expect("vtysh -c");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// The FRR daemons a rendered ConfigMap's `daemons` file starts: zebra (always), then
/// each of bgpd and bfdd set to yes, as FRR's docker-start does.
fn daemons_of(cm: &Value) -> Vec<&'static str> {
    let daemons = file(cm, "daemons");
    let mut on = vec!["zebra"];
    for d in ["bgpd", "bfdd"] {
        if daemons.lines().any(|l| l.trim() == format!("{d}=yes")) {
            on.push(d);
        }
    }
    on
}

/// The kernel's BGP routes in `ns` as prefix -> next hops (address, device), from
/// `ip -j route`, which lists a multipath route's next hops under `nexthops`.
fn bgp_nexthops(ns: &Netns) -> BTreeMap<String, Vec<(String, String)>> {
    let json = ns
        .ip(&["-j", "route", "show", "proto", "bgp"])
        .expect("ip -j route");
    let routes: Vec<Value> = serde_json::from_str(&json).expect("ip -j route is JSON");
    routes
        .iter()
        .map(|r| {
            let hops = match r["nexthops"].as_array() {
                Some(list) => list.clone(),
                None => vec![r.clone()],
            };
            let mut hops: Vec<(String, String)> = hops
                .iter()
                .map(|h| {
                    (
                        h["gateway"].as_str().unwrap_or("").to_string(),
                        h["dev"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            hops.sort();
            (r["dst"].as_str().unwrap_or("").to_string(), hops)
        })
        .collect()
}

/// Seed 002's data path, run: the chart's rendered esprit.toml and frr.conf for one
/// gateway, unchanged but for the control socket's path, in namespace a (the gateway
/// node, IKE on its uplink, node network 172.27.0.0/24 on a veth); in namespace b a
/// stand-in for the cloud VPN (an esprit route-based peer and an FRR in AS 64514
/// announcing 10.96.2.0/24); in a third namespace another cluster node running the
/// routes DaemonSet's rendered frr.conf. The tunnel comes up, BGP runs over the link
/// addresses, each side's zebra routes the other's prefixes into ss0, the node learns
/// the remote prefix from the gateway with the gateway as next hop, and pings cross
/// from the node and from the gateway's cluster address to the remote subnet.
#[test]
fn a_rendered_gateway_tunnels_and_routes_with_frr() {
    let scratch = Scratch::new("helm-e2e").expect("scratch");
    let topo = Topology::direct(false).expect("topology");
    let (a, b) = (topo.a(), topo.b());
    let values = format!(
        "localCidrs: [10.96.1.0/24, 172.27.0.0/24]\nbgp: {{peerASN: 64514}}\n\
         tunnels:\n  - name: tunnel1\n    node: node-a\n    nodeAddress: 172.27.0.1\n    \
         localAddress: {a_addr}\n    remoteAddress: {b_addr}\n    \
         insideAddress: 169.254.100.2/30\n    peerInsideAddress: 169.254.100.1\n    \
         psk: a secret shared with the cloud VPN\n",
        a_addr = topo.a_addr(),
        b_addr = topo.b_addr(),
    );
    let values_file = scratch.join("values.yaml");
    fs::write(&values_file, values).expect("write values");
    let r = render_ok(Some(&values_file), &scratch);
    let secret = r.get("Secret", "vpn-esprit-gateway-tunnel1");
    let gateway_cm = r.get("ConfigMap", "vpn-esprit-gateway-tunnel1-frr");

    let node_cm = r.get("ConfigMap", "vpn-esprit-gateway-routes-frr");

    // Another node of the cluster, on the node network with the gateway node, which
    // forwards between that network and the tunnel as a Kubernetes node does.
    let node = Netns::new("helm-node").expect("node namespace");
    a.ip(&[
        "link",
        "add",
        "gw0",
        "type",
        "veth",
        "peer",
        "name",
        "node0",
        "netns",
        node.name(),
    ])
    .expect("veth");
    a.ip(&["addr", "add", "172.27.0.1/24", "dev", "gw0"])
        .expect("addr");
    a.ip(&["link", "set", "gw0", "up"]).expect("up");
    node.ip(&["addr", "add", "172.27.0.2/24", "dev", "node0"])
        .expect("addr");
    node.ip(&["link", "set", "node0", "up"]).expect("up");
    a.sysctl("net.ipv4.ip_forward", "1").expect("forwarding");

    // The cloud side first: it answers, the gateway initiates (start_action = "start").
    let db = topo.dir().join("cloud");
    fs::create_dir_all(&db).expect("mkdir");
    fs::write(
        db.join("esprit.toml"),
        format!(
            r#"[daemon]
control_socket = "{sock}"
[connections.cloud]
local_addrs = ["{b_addr}"]
remote_addrs = ["{a_addr}"]
tun = "ss0"
tun_addrs = ["169.254.100.1/30"]
[connections.cloud.local]
auth = "psk"
[connections.cloud.remote]
auth = "psk"
[connections.cloud.children.net]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
[secrets.ike-cloud]
secret = "a secret shared with the cloud VPN"
"#,
            sock = db.join("esprit.sock").display(),
            a_addr = topo.a_addr(),
            b_addr = topo.b_addr(),
        ),
    )
    .expect("write cloud config");
    let cloud =
        Daemon::start_with(Path::new(EXE), b, &db.join("esprit.toml"), &db).expect("cloud esprit");

    // The gateway: the Secret's files as the pod mounts them; only the control socket
    // moves from /run/esprit (the pod's emptyDir) into the test's folder.
    let da = topo.dir().join("gateway");
    let rendered = esprit_check(secret, &da);
    let pod_socket = "control_socket = \"/run/esprit/esprit.sock\"";
    assert!(rendered.contains(pod_socket), "{rendered}");
    fs::write(
        da.join("esprit.toml"),
        rendered.replace(
            pod_socket,
            &format!("control_socket = \"{}\"", da.join("esprit.sock").display()),
        ),
    )
    .expect("write gateway config");
    let gateway = Daemon::start_with(Path::new(EXE), a, &da.join("esprit.toml"), &da)
        .expect("gateway esprit");
    wait_ok(
        "the gateway's child SA",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let s = gateway.status()?;
            let up = s
                .ike_sas
                .iter()
                .any(|sa| sa.state == "ESTABLISHED" && !sa.children.is_empty());
            if up {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("not yet: {s}")))
            }
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- gateway ---\n{}\n--- cloud ---\n{}",
            gateway.log(),
            cloud.log()
        )
    });
    let link = a
        .ip(&["-o", "addr", "show", "dev", "ss0"])
        .expect("ip addr");
    assert!(link.contains("169.254.100.2/30"), "{link}");

    // BGP over the tunnel: the chart's FRR on the gateway, a plain eBGP speaker for the
    // cloud.
    let gw_frr = Frr::start(
        a,
        &scratch.join("frr-gateway"),
        &daemons_of(gateway_cm),
        file(gateway_cm, "frr.conf"),
    );
    let cloud_frr = Frr::start(
        b,
        &scratch.join("frr-cloud"),
        &["zebra", "bgpd"],
        "frr defaults traditional\n\
         router bgp 64514\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
         neighbor 169.254.100.2 remote-as 65010\n neighbor 169.254.100.2 timers connect 2\n \
         address-family ipv4 unicast\n  network 10.96.2.0/24\n exit-address-family\nexit\n",
    );
    let node_routes = Frr::start(
        &node,
        &scratch.join("frr-node"),
        &daemons_of(node_cm),
        file(node_cm, "frr.conf"),
    );
    let routes = wait_ok(
        "each side's BGP route into ss0",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let (ra, rb, rn) = (bgp_nexthops(a), bgp_nexthops(b), bgp_nexthops(&node));
            if !ra.is_empty() && rb.len() == 2 && !rn.is_empty() {
                Ok((ra, rb, rn))
            } else {
                Err(format!("gateway {ra:?}, cloud {rb:?}, node {rn:?}"))
            }
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- gateway bgp ---\n{}\n--- cloud bgp ---\n{}\n--- node bgp ---\n{}",
            gw_frr.show("show bgp summary"),
            cloud_frr.show("show bgp summary"),
            node_routes.show("show bgp summary")
        )
    });
    // Each side routes exactly the other's prefix into its tunnel device: the gateway
    // the cloud's subnet, the cloud the cluster's localCidrs.
    let via = |prefix: &str, gw: &str, dev: &str| (prefix.to_string(), hops(&[(gw, dev)]));
    assert_eq!(
        routes.0,
        [via("10.96.2.0/24", "169.254.100.1", "ss0")].into(),
        "the gateway's BGP routes"
    );
    assert_eq!(
        routes.1,
        [
            via("10.96.1.0/24", "169.254.100.2", "ss0"),
            via("172.27.0.0/24", "169.254.100.2", "ss0")
        ]
        .into(),
        "the cloud's BGP routes"
    );
    // The node: the remote prefix through the gateway node, nothing of the cluster's own.
    assert_eq!(
        routes.2,
        [via("10.96.2.0/24", "172.27.0.1", "node0")].into(),
        "the node's BGP routes"
    );
    // Cluster addresses reach the remote subnet, and back, through the tunnel: the
    // gateway node's own, and the other node's through the gateway node.
    for (ns, from) in [(a, "10.96.1.1"), (&node, "172.27.0.2")] {
        let out = ns
            .run(&["ping", "-c", "3", "-W", "2", "-I", from, "10.96.2.1"])
            .expect("ping (package iputils-ping)");
        assert!(
            out.status.success(),
            "ping 10.96.2.1 from {from} failed: {}\n--- gateway ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            gateway.log()
        );
    }
}

fn hops(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, d)| (a.to_string(), d.to_string()))
        .collect()
}

fn ping_from(ns: &Netns, from: &str, to: &str) -> bool {
    ns.run(&["ping", "-c", "2", "-W", "2", "-I", from, to])
        .expect("ping (package iputils-ping)")
        .status
        .success()
}

/// Seed 002's high availability, run: two rendered gateways (BFD on), each with its
/// own tunnel to the cloud stand-in, which runs both tunnels in one esprit and peers
/// with both; a third node on the gateways' network runs the routes DaemonSet's
/// configuration. The node routes the remote prefix over both gateways (ECMP); when
/// gateway 1's esprit stops, BGP withdraws its path everywhere and traffic keeps
/// flowing through gateway 2, gateway 1's own node's included.
#[test]
fn two_rendered_gateways_share_and_fail_over() {
    let scratch = Scratch::new("helm-ha").expect("scratch");
    // gw1 and the cloud on the topology's link (192.0.2.0/24); gw2 on a second one.
    let topo = Topology::direct(false).expect("topology");
    let (gw1, cloud) = (topo.a(), topo.b());
    let gw2 = Netns::new("helm-gw2").expect("gw2 namespace");
    let node = Netns::new("helm-node").expect("node namespace");
    gw2.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up2",
        "netns",
        cloud.name(),
    ])
    .expect("veth to the cloud");
    gw2.ip(&["addr", "add", "198.51.100.1/24", "dev", "up0"])
        .expect("addr");
    gw2.ip(&["link", "set", "up0", "up"]).expect("up");
    cloud
        .ip(&["addr", "add", "198.51.100.2/24", "dev", "up2"])
        .expect("addr");
    cloud.ip(&["link", "set", "up2", "up"]).expect("up");
    // The node network: a bridge in the node's namespace, a veth to each gateway.
    node.ip(&["link", "add", "br0", "type", "bridge"])
        .expect("bridge");
    node.ip(&["addr", "add", "172.27.0.3/24", "dev", "br0"])
        .expect("addr");
    node.ip(&["link", "set", "br0", "up"]).expect("up");
    for (i, gw) in [gw1, &gw2].into_iter().enumerate() {
        let port = format!("port{i}");
        node.ip(&[
            "link",
            "add",
            &port,
            "master",
            "br0",
            "type",
            "veth",
            "peer",
            "name",
            "gw0",
            "netns",
            gw.name(),
        ])
        .expect("veth to the node network");
        node.ip(&["link", "set", &port, "up"]).expect("up");
        gw.ip(&[
            "addr",
            "add",
            &format!("172.27.0.{}/24", i + 1),
            "dev",
            "gw0",
        ])
        .expect("addr");
        gw.ip(&["link", "set", "gw0", "up"]).expect("up");
        gw.sysctl("net.ipv4.ip_forward", "1").expect("forwarding");
    }

    let values = format!(
        "localCidrs: [172.27.0.0/24]\nbgp:\n  peerASN: 64514\n  bfd: {{enabled: true}}\n\
         tunnels:\n\
         \x20 - {{name: tunnel1, node: n1, nodeAddress: 172.27.0.1, localAddress: {a}, \
         remoteAddress: {b}, insideAddress: 169.254.100.2/30, peerInsideAddress: 169.254.100.1, \
         psk: first tunnel secret}}\n\
         \x20 - {{name: tunnel2, node: n2, nodeAddress: 172.27.0.2, localAddress: 198.51.100.1, \
         remoteAddress: 198.51.100.2, insideAddress: 169.254.100.6/30, \
         peerInsideAddress: 169.254.100.5, psk: second tunnel secret}}\n",
        a = topo.a_addr(),
        b = topo.b_addr(),
    );
    let values_file = scratch.join("values.yaml");
    fs::write(&values_file, values).expect("write values");
    let r = render_ok(Some(&values_file), &scratch);

    // The cloud: one esprit, a route-based connection per gateway.
    let dc = scratch.join("cloud");
    fs::create_dir_all(&dc).expect("mkdir");
    let mut cloud_toml = format!(
        "[daemon]\ncontrol_socket = \"{}\"\n",
        dc.join("esprit.sock").display()
    );
    for (name, me, peer, dev, link, secret) in [
        (
            "t1",
            topo.b_addr().to_string(),
            topo.a_addr().to_string(),
            "ss0",
            "169.254.100.1/30",
            "first tunnel secret",
        ),
        (
            "t2",
            "198.51.100.2".into(),
            "198.51.100.1".into(),
            "ss1",
            "169.254.100.5/30",
            "second tunnel secret",
        ),
    ] {
        cloud_toml += &format!(
            "[connections.{name}]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\n\
             tun = \"{dev}\"\ntun_addrs = [\"{link}\"]\n\
             [connections.{name}.local]\nauth = \"psk\"\n\
             [connections.{name}.remote]\nauth = \"psk\"\nid = \"{peer}\"\n\
             [connections.{name}.children.net]\nlocal_ts = [\"0.0.0.0/0\"]\nremote_ts = [\"0.0.0.0/0\"]\n\
             [secrets.ike-{name}]\nid = [\"{peer}\"]\nsecret = \"{secret}\"\n"
        );
    }
    fs::write(dc.join("esprit.toml"), cloud_toml).expect("write");
    let cloud_esprit = Daemon::start_with(Path::new(EXE), cloud, &dc.join("esprit.toml"), &dc)
        .expect("cloud esprit");

    // The gateways, from their Secrets (only the control socket moves).
    let mut gateways = Vec::new();
    for (name, ns) in [("tunnel1", gw1), ("tunnel2", &gw2)] {
        let dir = scratch.join(name);
        let toml = esprit_check(r.get("Secret", &format!("vpn-esprit-gateway-{name}")), &dir);
        fs::write(
            dir.join("esprit.toml"),
            toml.replace(
                "control_socket = \"/run/esprit/esprit.sock\"",
                &format!("control_socket = \"{}\"", dir.join("esprit.sock").display()),
            ),
        )
        .expect("write");
        gateways.push(
            Daemon::start_with(Path::new(EXE), ns, &dir.join("esprit.toml"), &dir)
                .expect("gateway esprit"),
        );
    }
    for (i, ns) in [gw1, &gw2].into_iter().enumerate() {
        let peer = format!("169.254.100.{}", 4 * i + 1);
        wait_ok(
            "the tunnel's link",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                if ping_from(ns, &format!("169.254.100.{}", 4 * i + 2), &peer) {
                    Ok(())
                } else {
                    Err("no answer")
                }
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e}: gateway {}\n{}\n--- cloud ---\n{}",
                i + 1,
                gateways[i].log(),
                cloud_esprit.log()
            )
        });
    }

    // FRR everywhere: the rendered configurations on the gateways and the node, a plain
    // speaker with BFD for the cloud, announcing 10.96.2.0/24 (on its lo).
    let mut frr = Vec::new();
    for (name, ns) in [("tunnel1", gw1), ("tunnel2", &gw2)] {
        let cm = r.get("ConfigMap", &format!("vpn-esprit-gateway-{name}-frr"));
        assert_eq!(daemons_of(cm), ["zebra", "bgpd", "bfdd"]);
        frr.push(Frr::start(
            ns,
            &scratch.join(format!("frr-{name}")),
            &daemons_of(cm),
            file(cm, "frr.conf"),
        ));
    }
    let node_cm = r.get("ConfigMap", "vpn-esprit-gateway-routes-frr");
    frr.push(Frr::start(
        &node,
        &scratch.join("frr-node"),
        &daemons_of(node_cm),
        file(node_cm, "frr.conf"),
    ));
    frr.push(Frr::start(
        cloud,
        &scratch.join("frr-cloud"),
        &["zebra", "bgpd", "bfdd"],
        "frr defaults traditional\n\
         bfd\n profile fast\n  receive-interval 300\n  transmit-interval 300\n exit\nexit\n\
         router bgp 64514\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
         neighbor 169.254.100.2 remote-as 65010\n neighbor 169.254.100.2 timers connect 2\n \
         neighbor 169.254.100.2 bfd profile fast\n \
         neighbor 169.254.100.6 remote-as 65010\n neighbor 169.254.100.6 timers connect 2\n \
         neighbor 169.254.100.6 bfd profile fast\n \
         address-family ipv4 unicast\n  network 10.96.2.0/24\n  maximum-paths 2\n exit-address-family\nexit\n",
    ));
    let show = |frr: &[Frr]| -> String {
        frr.iter()
            .map(|f| f.show("show bgp summary") + &f.show("show bfd peers brief"))
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };

    // Both gateways up: the node has the remote prefix over both (ECMP), each gateway
    // through its own tunnel, the cloud the cluster's prefix over both tunnels.
    let remote = "10.96.2.0/24".to_string();
    let local = "172.27.0.0/24".to_string();
    let both = hops(&[("172.27.0.1", "br0"), ("172.27.0.2", "br0")]);
    wait_ok(
        "ECMP on the node",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let n = bgp_nexthops(&node);
            let c = bgp_nexthops(cloud);
            if n.get(&remote) == Some(&both) && c.get(&local).is_some_and(|h| h.len() == 2) {
                Ok(())
            } else {
                Err(format!("node {n:?}, cloud {c:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", show(&frr)));
    assert_eq!(
        bgp_nexthops(&node).len(),
        1,
        "the node learned more than the remote prefix"
    );
    assert_eq!(
        bgp_nexthops(gw1)[&remote],
        hops(&[("169.254.100.1", "ss0")])
    );
    assert_eq!(
        bgp_nexthops(&gw2)[&remote],
        hops(&[("169.254.100.5", "ss0")])
    );
    assert_eq!(
        bgp_nexthops(cloud)[&local],
        hops(&[("169.254.100.2", "ss0"), ("169.254.100.6", "ss1")])
    );
    assert!(
        ping_from(&node, "172.27.0.3", "10.96.2.1"),
        "ping over both gateways"
    );

    // Gateway 1 goes away: its tunnel and BGP session with it. Everyone converges on
    // gateway 2 (BFD makes the cloud notice within a second), and the node's traffic
    // flows again.
    let started = std::time::Instant::now();
    gateways[0].proc.stop().expect("stop gateway 1");
    wait_ok(
        "failover to gateway 2",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let n = bgp_nexthops(&node);
            let c = bgp_nexthops(cloud);
            let g = bgp_nexthops(gw1);
            // Gateway 1's node itself now goes through gateway 2 (their iBGP session).
            if n.get(&remote) == Some(&hops(&[("172.27.0.2", "br0")]))
                && g.get(&remote) == Some(&hops(&[("172.27.0.2", "gw0")]))
                && c.get(&local) == Some(&hops(&[("169.254.100.6", "ss1")]))
            {
                Ok(())
            } else {
                Err(format!("node {n:?}, gateway 1 {g:?}, cloud {c:?}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", show(&frr)));
    let converged = started.elapsed();
    assert!(
        ping_from(gw1, "172.27.0.1", "10.96.2.1"),
        "ping from gateway 1's node through gateway 2"
    );
    assert!(
        ping_from(&node, "172.27.0.3", "10.96.2.1"),
        "ping through gateway 2 after the failover"
    );
    println!("failover: routes converged on gateway 2 in {converged:?}");
}
