//! `esprit-cni` invoked exactly as a container runtime invokes a chained plugin list
//! (CNI spec 1.0): each plugin executed from CNI_PATH by name with no arguments, CNI_*
//! in the environment, the network configuration (with `prevResult` after the first) on
//! stdin, after Debian's `bridge` + `host-local`, in a "node" namespace whose pods are
//! namespaces made by the test. Seed 003's shape: each pod gets a virtual IP from an
//! esprit hub and reaches the other pod through it.

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/hub.rs"]
mod hub;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::exe;
use esprit::testbed::{ping, Netns};
use hub::{Lab, SECRET};
use serde_json::{json, Value};

const CNI_PLUGINS: &str = "/usr/lib/cni";

/// The runtime's side: the plugin directory, the network list, and the pods added.
struct Runtime<'n> {
    bin: PathBuf,
    list: Value,
    /// (container ID, its namespace, the ADD result) of every pod added.
    pods: Vec<(String, Netns, Value)>,
    node: &'n Netns,
}

/// What one plugin call printed, and whether it exited 0.
struct Call {
    ok: bool,
    out: Value,
}

impl Runtime<'_> {
    /// Runs plugin `conf["type"]` for `command`, as a runtime does.
    fn call(&self, command: &str, id: &str, netns: &Path, conf: &Value) -> Call {
        let kind = conf["type"].as_str().unwrap_or("esprit-cni");
        let mut child = self
            .node
            .command(self.bin.join(kind))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        Call {
            ok: out.status.success(),
            out: serde_json::from_str(&text).unwrap_or_else(|_| {
                if text.trim().is_empty() {
                    Value::Null
                } else {
                    panic!(
                        "{kind} {command}: not JSON: {text}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                }
            }),
        }
    }

    /// Plugin `i` of the list, as the runtime hands it over.
    fn plugin(&self, i: usize, prev: Option<&Value>) -> Value {
        let mut c = self.list["plugins"][i].clone();
        c["cniVersion"] = self.list["cniVersion"].clone();
        c["name"] = self.list["name"].clone();
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    /// ADD through the whole list; the final result.
    fn add(&mut self, id: &str) -> Value {
        let ns = Netns::new("esprit-pod").expect("pod namespace");
        let mut prev: Option<Value> = None;
        for i in 0..self.list["plugins"].as_array().unwrap().len() {
            let c = self.call("ADD", id, &ns.path(), &self.plugin(i, prev.as_ref()));
            assert!(c.ok, "ADD {id} plugin {i}: {}", c.out);
            prev = Some(c.out);
        }
        let result = prev.unwrap();
        self.pods.push((id.to_string(), ns, result.clone()));
        result
    }

    /// CHECK through the whole list with the ADD result; the first failure.
    fn check(&self, id: &str) -> Option<Value> {
        let (_, ns, result) = self.pods.iter().find(|p| p.0 == id).unwrap();
        for i in 0..self.list["plugins"].as_array().unwrap().len() {
            let c = self.call("CHECK", id, &ns.path(), &self.plugin(i, Some(result)));
            if !c.ok {
                return Some(c.out);
            }
        }
        None
    }

    /// DEL through the list in reverse.
    fn del(&self, id: &str) {
        let (_, ns, result) = self.pods.iter().find(|p| p.0 == id).unwrap();
        for i in (0..self.list["plugins"].as_array().unwrap().len()).rev() {
            let c = self.call("DEL", id, &ns.path(), &self.plugin(i, Some(result)));
            assert!(c.ok, "DEL {id} plugin {i}: {}", c.out);
        }
    }

    fn pod(&self, id: &str) -> &Netns {
        &self.pods.iter().find(|p| p.0 == id).unwrap().1
    }
}

impl Drop for Runtime<'_> {
    fn drop(&mut self) {
        // The clients outlive the plugin: DEL stops each, on the failure path too.
        let conf = self.plugin(1, None);
        for (id, ns, _) in &self.pods {
            let _ = self.call("DEL", id, &ns.path(), &conf);
        }
    }
}

/// The virtual IP of a result: the address esprit-cni added (in 10.173.0.0/16), on the
/// pod's interface as seed 003 had it, beside the bridge's; esprit0 is listed too.
fn vip(result: &Value) -> String {
    let ifaces = result["interfaces"].as_array().unwrap();
    assert!(ifaces.iter().any(|i| i["name"] == "esprit0"), "{result}");
    let eth0 = ifaces.iter().position(|i| i["name"] == "eth0").unwrap();
    let ip = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ip| ip["address"].as_str().unwrap().starts_with("10.173."))
        .expect("a VIP");
    assert_eq!(ip["interface"], eth0, "{result}");
    ip["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn chained_after_bridge_and_host_local() {
    assert!(
        Path::new(CNI_PLUGINS).join("bridge").exists(),
        "needs Debian's containernetworking-plugins (apt-get install containernetworking-plugins)"
    );
    // The hub, and the node (the star's client 0, the runtime's host) that forwards
    // between its pods' bridge and the hub.
    let lab = Lab::new(1, "10.173.0.0/24", None);
    let node = lab.star.client(0);
    node.sysctl("net.ipv4.ip_forward", "1").unwrap();
    lab.star
        .hub()
        .ip(&["route", "add", "10.22.0.0/24", "via", "10.200.0.2"])
        .unwrap();
    let bin = lab.star.dir().join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(Path::new(CNI_PLUGINS).join(p), bin.join(p)).unwrap();
    }
    std::os::unix::fs::symlink(exe(), bin.join("esprit-cni")).unwrap();
    let run_dir = lab.star.dir().join("cni-run");
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "ipsec",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
             "hairpinMode": true,
             "ipam": {"type": "host-local", "subnet": "10.22.0.0/24",
                      "dataDir": lab.star.dir().join("ipam")}},
            {"type": "esprit-cni", "runDir": run_dir,
             "vpn": {"serverIP": lab.star.hub_addr(0).to_string(),
                     "virtualSubnet": "10.173.0.0/16", "hostSubnet": "10.22.0.0/24",
                     "PSK": SECRET}}
        ]
    });
    let mut rt = Runtime {
        bin,
        list,
        pods: Vec::new(),
        node,
    };

    // VERSION needs no network configuration.
    let v = rt.call("VERSION", "x", Path::new("/nonexistent"), &json!({}));
    assert!(v.ok, "{}", v.out);
    assert!(v.out["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    // ADD: each pod gets the bridge's address and a virtual IP from the hub.
    let a = rt.add("pod-a-0123456789abcdef");
    let b = rt.add("pod-b-0123456789abcdef");
    let (va, vb) = (vip(&a), vip(&b));
    assert_eq!(
        (va.as_str(), vb.as_str()),
        ("10.173.0.1", "10.173.0.2"),
        "{a}\n{b}"
    );
    assert!(
        a["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.22.0."),
        "{a}"
    );
    assert!(a["routes"]
        .as_array()
        .unwrap()
        .contains(&json!({"dst": "10.173.0.0/16"})));
    assert_eq!(a["dns"]["nameservers"][0], "10.173.0.53", "{a}");
    // Pod to pod through the hub, from the virtual IPs.
    assert!(
        ping(
            rt.pod("pod-a-0123456789abcdef"),
            vb.parse().unwrap(),
            3,
            Duration::from_secs(5)
        ),
        "a -> b"
    );
    assert!(
        ping(
            rt.pod("pod-b-0123456789abcdef"),
            va.parse().unwrap(),
            3,
            Duration::from_secs(5)
        ),
        "b -> a"
    );
    lab.wait_leases("pods", (2, 0));

    // CHECK passes while the client holds its address.
    assert_eq!(rt.check("pod-a-0123456789abcdef"), None);

    // Bad configurations are CNI errors on stdout with a non-zero exit.
    let ns = rt.pod("pod-a-0123456789abcdef").path();
    let mut bad = rt.plugin(1, None);
    bad["vpn"].as_object_mut().unwrap().remove("serverIP");
    let c = rt.call("ADD", "pod-c", &ns, &bad);
    assert!(!c.ok);
    assert_eq!(c.out["code"], 7, "{}", c.out);
    assert!(
        c.out["msg"].as_str().unwrap().contains("serverIP"),
        "{}",
        c.out
    );
    let mut old = rt.plugin(1, None);
    old["cniVersion"] = json!("0.1.0");
    let c = rt.call("ADD", "pod-c", &ns, &old);
    assert_eq!(
        (c.ok, c.out["code"].clone()),
        (false, json!(1)),
        "{}",
        c.out
    );

    // DEL: the client stops, its lease goes offline at the hub, its files go; a second
    // DEL still succeeds, and CHECK now fails.
    rt.del("pod-b-0123456789abcdef");
    lab.wait_leases("pods", (1, 1));
    assert!(!run_dir.join("pod-b-0123456789abcdef").exists());
    rt.del("pod-b-0123456789abcdef");
    // (bridge's own CHECK fails first now; ask esprit-cni alone.)
    let (_, ns_b, result_b) = rt
        .pods
        .iter()
        .find(|p| p.0 == "pod-b-0123456789abcdef")
        .unwrap();
    let c = rt.call(
        "CHECK",
        "pod-b-0123456789abcdef",
        &ns_b.path(),
        &rt.plugin(1, Some(result_b)),
    );
    assert!(!c.ok, "CHECK fails after DEL");
    let e = c.out;
    assert_eq!(e["code"], 101, "{e}");
    assert!(
        ping(
            rt.pod("pod-a-0123456789abcdef"),
            "10.173.255.1".parse().unwrap(),
            2,
            Duration::from_secs(5)
        ),
        "a still up"
    );
    rt.del("pod-a-0123456789abcdef");
    lab.wait_leases("pods", (0, 2));
    drop(rt);
}
