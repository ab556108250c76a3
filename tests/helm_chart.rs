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
//! must get exactly the privileges the design needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use esprit::testbed::tools::require;
use esprit::testbed::{KeyKind, Pki, Scratch};
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
}
