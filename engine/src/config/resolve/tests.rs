//! Resolution of the documented sample, of PSK setups, and of each error a file's
//! text alone can cause; `files` resolves certificate setups written to disk.

mod files;
mod mediation;
mod pipes;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ike::config::{Identity, LocalAuth, RemoteAuth};
use ike::proposal::ProposalSet;
use ike::ts;
use ike::wire::TrafficSelector;

use super::*;
use crate::config::tests::SAMPLE;
use crate::config::{parse, CloseAction, ConfigError, DpdAction, StartAction};

fn sample(text: &str) -> Result<Resolved, ConfigError> {
    let path = Path::new("/etc/esprit/esprit.toml");
    resolve(path, &parse(path, text).unwrap())
}

/// Expects an error at `key` whose reason holds `needle`.
fn fails_at(r: Result<Resolved, ConfigError>, key: &str, needle: &str) -> ConfigError {
    let e = r.expect_err(key);
    assert_eq!(e.key, key, "{e}");
    assert!(e.reason.contains(needle), "'{needle}' not in: {e}");
    e
}

fn id(s: &str) -> Identity {
    Identity::parse(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> TrafficSelector {
    ts::parse_cidr(s).unwrap()
}

fn psk_bytes(auth: &LocalAuth) -> Vec<u8> {
    match auth {
        LocalAuth::Psk(k) => k.to_vec(),
        other => panic!("not a PSK: {other:?}"),
    }
}

#[test]
fn the_documented_sample_resolves_with_a_psk() {
    let r = sample(SAMPLE).unwrap();
    assert_eq!(
        r.daemon,
        Daemon {
            port: 500,
            port_nat_t: 4500,
            control_socket: "/run/esprit/esprit.sock".into(),
            keepalive: Duration::from_secs(20),
            retransmit_timeout: Duration::from_secs(2),
            retransmit_tries: 5,
            socket_buffer: 8 << 20,
            cookie_threshold: 64,
            max_half_open: 4096,
            max_half_open_per_source: 128,
            max_ike_sas: 100_000,
            shutdown_grace: Duration::from_secs(3),
        }
    );
    assert_eq!(
        r.tun,
        Tun {
            name: "esprit0".into(),
            mtu: 1400,
            install_routes: None,
        }
    );
    let [plan] = r.connections.as_slice() else {
        panic!("one connection: {:?}", r.connections);
    };
    let c = &plan.conn;
    assert_eq!(c.name, "site-b");
    assert_eq!(c.local_addrs, [ip("192.0.2.1")]);
    assert_eq!(c.remote_addrs, [ip("192.0.2.2")]);
    assert_eq!(c.remote_port, 500);
    assert_eq!(
        c.proposals,
        ProposalSet::parse_ike("aes128gcm16-prfsha256-x25519").unwrap()
    );
    assert_eq!(c.local_id, id("C=CN, O=Local Cluster, CN=site-a"));
    assert_eq!(c.remote_id, id("C=CN, O=Local Cluster, CN=site-b"));
    assert_eq!(psk_bytes(&c.local_auth), b"a long random secret");
    assert!(
        matches!(c.remote_auth, RemoteAuth::Psk(ref k) if k.as_slice() == b"a long random secret")
    );
    assert!(
        c.encap,
        "the file's encap = false does not turn UDP encapsulation off"
    );
    assert_eq!(c.dpd_delay, Some(Duration::from_secs(30)));
    assert_eq!(c.rekey_time, Duration::from_secs(4 * 3600));
    assert!(c.fragmentation);

    let [child] = c.children.as_slice() else {
        panic!("one child: {:?}", c.children);
    };
    assert_eq!(child.name, "net");
    assert_eq!(child.local_ts, [cidr("10.1.0.0/24"), cidr("10.96.0.0/12")]);
    assert_eq!(child.remote_ts, [cidr("10.2.0.0/24")]);
    assert_eq!(
        child.esp_proposals,
        ProposalSet::parse_esp("aes128gcm16-x25519").unwrap()
    );
    assert_eq!(child.rekey_time, Duration::from_secs(3600));
    assert_eq!(
        plan.children,
        [ChildPlan {
            name: "net".into(),
            start_action: StartAction::Start,
            dpd_action: DpdAction::Restart,
            close_action: CloseAction::Start,
            updown: None,
        }]
    );

    let ike = r.ike_config();
    assert_eq!((ike.port, ike.port_nat_t), (500, 4500));
    assert_eq!(ike.retransmit_timeout, Duration::from_secs(2));
    assert_eq!(ike.retransmit_tries, 5);
    assert_eq!(ike.max_ike_sas, ike::config::Config::default().max_ike_sas);
}

const MINIMAL_PSK: &str = r#"
[connections.c]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
local.auth = "psk"
remote.auth = "psk"
remote.id = "@peer"
[connections.c.children.net]
[secrets.ike-any]
secret = "wildcard"
"#;

#[test]
fn defaults_of_a_minimal_file() {
    let r = sample(MINIMAL_PSK).unwrap();
    assert_eq!(r.daemon.keepalive, Duration::from_secs(20));
    assert_eq!(r.daemon.retransmit_timeout, Duration::from_secs(2));
    assert_eq!(r.daemon.retransmit_tries, 5);
    let c = &r.connections[0].conn;
    assert_eq!(c.local_id, id("192.0.2.1"), "psk: the first local address");
    assert_eq!(c.proposals, ProposalSet::parse_ike("default").unwrap());
    assert_eq!(c.rekey_time, Duration::from_secs(4 * 3600));
    let child = &c.children[0];
    assert_eq!(
        child.esp_proposals,
        ProposalSet::parse_esp("default").unwrap()
    );
    assert_eq!(child.rekey_time, Duration::from_secs(3600));
    // "dynamic": each side's IKE address.
    assert_eq!(child.local_ts, [cidr("192.0.2.1")]);
    assert_eq!(child.remote_ts, [cidr("192.0.2.2/32")]);
    let plan = &r.connections[0].children[0];
    assert_eq!(plan.start_action, StartAction::None);
    assert_eq!(plan.dpd_action, DpdAction::Clear);

    let r = sample(&MINIMAL_PSK.replace(
        "[connections.c.children.net]",
        "rekey_time = \"0s\"\n[connections.c.children.net]\nrekey_time = 0",
    ))
    .unwrap();
    assert_eq!(r.connections[0].conn.rekey_time, Duration::ZERO, "never");
    assert_eq!(r.connections[0].conn.children[0].rekey_time, Duration::ZERO);

    let r = sample(&format!(
        "[daemon]\nkeepalive = \"0s\"\nretransmit_timeout = \"1m\"\nretransmit_tries = 2\n\
         control_socket = \"run/esprit.sock\"\n{MINIMAL_PSK}"
    ))
    .unwrap();
    assert_eq!(r.daemon.keepalive, Duration::ZERO);
    assert_eq!(r.ike_config().retransmit_timeout, Duration::from_secs(60));
    assert_eq!(r.ike_config().retransmit_tries, 2);
    assert_eq!(
        r.daemon.control_socket,
        Path::new("/etc/esprit/run/esprit.sock")
    );
}

#[test]
fn dynamic_selectors_without_addresses_are_any_of_both_families() {
    let text = MINIMAL_PSK
        .replace("local_addrs = [\"192.0.2.1\"]", "local.id = \"@me\"")
        .replace("[\"192.0.2.2\"]", "[\"2001:db8::2\"]");
    let r = sample(&text).unwrap();
    let c = &r.connections[0].conn;
    assert!(c.local_addrs.is_empty());
    assert_eq!(c.local_id, id("@me"));
    let child = &c.children[0];
    assert_eq!(child.local_ts, [ts::any_v4(), cidr("::/0")]);
    assert_eq!(child.remote_ts, [cidr("2001:db8::2/128")]);

    let r = sample(&text.replace("[\"2001:db8::2\"]", "[\"%any\"]")).unwrap();
    let c = &r.connections[0].conn;
    assert!(c.remote_addrs.is_empty());
    assert_eq!(c.children[0].remote_ts, [ts::any_v4(), cidr("::/0")]);
}

#[test]
fn a_psk_is_picked_like_strongswan() {
    let entries = [
        ("ike-1-local", "id = \"192.0.2.1\"", "local"),
        ("ike-2-remote", "id = [\"@other\", \"@peer\"]", "remote"),
        ("ike-3-both", "id = [\"192.0.2.1\", \"@peer\"]", "both"),
        ("ike-4-other", "id = \"@stranger\"", "unrelated"),
    ];
    let file = |skip: &[&str]| {
        let mut text = MINIMAL_PSK.replace("secret = \"wildcard\"", "secret = \"any\"");
        for (name, ids, secret) in entries {
            if !skip.contains(&name) {
                text += &format!("[secrets.{name}]\n{ids}\nsecret = \"{secret}\"\n");
            }
        }
        text
    };
    let picked =
        |skip: &[&str]| psk_bytes(&sample(&file(skip)).unwrap().connections[0].conn.local_auth);
    assert_eq!(picked(&[]), b"both");
    assert_eq!(picked(&["ike-3-both"]), b"remote");
    assert_eq!(picked(&["ike-3-both", "ike-2-remote"]), b"local");
    assert_eq!(
        picked(&["ike-3-both", "ike-2-remote", "ike-1-local"]),
        b"any",
        "an entry without ids is the last resort"
    );
    let none = file(&["ike-3-both", "ike-2-remote", "ike-1-local"])
        .replace("[secrets.ike-any]\nsecret = \"any\"\n", "");
    let e = fails_at(
        sample(&none),
        "connections.c.local.auth",
        "no [secrets.ike-*] entry for ids '192.0.2.1' and 'peer'",
    );
    assert!(!e.reason.contains("unrelated"));
}

#[test]
fn secret_encodings() {
    let with =
        |secret: &str| sample(&MINIMAL_PSK.replace("\"wildcard\"", &format!("\"{secret}\"")));
    let bytes = |secret: &str| psk_bytes(&with(secret).unwrap().connections[0].conn.local_auth);
    assert_eq!(bytes("0x00fF10"), [0x00, 0xff, 0x10]);
    assert_eq!(bytes("0sAP8Q"), [0x00, 0xff, 0x10]);
    assert_eq!(bytes("plain text"), b"plain text");
    for bad in ["0x0g", "0x123", "0x+f", "0s!!!!", "0x", ""] {
        let e = fails_at(with(bad), "secrets.ike-any.secret", "");
        if bad.len() > 2 {
            assert!(
                !e.to_string().contains(bad),
                "the secret stays out of errors: {e}"
            );
        }
    }
}

#[test]
fn errors_name_the_key_and_the_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "remote_addrs = [\"192.0.2.2\"]",
            "remote_addrs = [\"site-b.example.org\"]",
            "connections.site-b.remote_addrs",
            "'site-b.example.org' is not an IP address: esprit resolves no names; give an address",
        ),
        (
            "local_addrs = [\"192.0.2.1\"]",
            "local_addrs = [\"192.0.2.0/24\"]",
            "connections.site-b.local_addrs",
            "'192.0.2.0/24' is not an IP address",
        ),
        (
            "local_addrs = [\"192.0.2.1\"]",
            "local_addrs = [\"192.0.2.1\", \"%any\"]",
            "connections.site-b.local_addrs",
            "cannot be mixed",
        ),
        (
            "proposals = [\"aes128gcm16-prfsha256-x25519\"]",
            "proposals = [\"aes128gcm16-prfsha256-x25519\", \"aes999-sha1-modp1024\"]",
            "connections.site-b.proposals",
            "'aes999-sha1-modp1024': unknown or unsupported algorithm 'aes999'",
        ),
        (
            "proposals = [\"aes128gcm16-prfsha256-x25519\"]",
            "proposals = []",
            "connections.site-b.proposals",
            "empty proposal list",
        ),
        (
            "esp_proposals = [\"aes128gcm16-x25519\"]",
            "esp_proposals = [\"aes128\"]",
            "connections.site-b.children.net.esp_proposals",
            "proposal 'aes128' has no integrity algorithm",
        ),
        (
            "local_ts = [\"10.1.0.0/24\", \"10.96.0.0/12\"]",
            "local_ts = [\"10.1.0.0/24\", \"10.96.0.0/33\"]",
            "connections.site-b.children.net.local_ts",
            "'10.96.0.0/33' is not a subnet: prefix length '33' is not a number from 0 to 32",
        ),
        (
            "remote_ts = [\"10.2.0.0/24\"]",
            "remote_ts = [\"10.2.0.x/24\"]",
            "connections.site-b.children.net.remote_ts",
            "'10.2.0.x/24' is not a subnet: '10.2.0.x'",
        ),
        (
            "remote_ts = [\"10.2.0.0/24\"]",
            "remote_ts = [\"10.2.0.0/24[tcp/443]\"]",
            "connections.site-b.children.net.remote_ts",
            "protocol and port selectors are not supported",
        ),
        (
            "remote_ts = [\"10.2.0.0/24\"]",
            "remote_ts = []",
            "connections.site-b.children.net.remote_ts",
            "empty selector list",
        ),
        (
            "id = \"C=CN, O=Local Cluster, CN=site-b\"\n",
            "id = \"C=CN, Colour=blue\"\n",
            "connections.site-b.remote.id",
            "'C=CN, Colour=blue': invalid identity",
        ),
        (
            "id = \"C=CN, O=Local Cluster, CN=site-a\"\n",
            "id = \"%any\"\n",
            "connections.site-b.local.id",
            "cannot be %any",
        ),
        (
            "secret = \"a long random secret\"",
            "secret = \"a long random secret\"\n[secrets.ike-bad]\nid = \"C=CN, Colour=blue\"\nsecret = \"x\"",
            "secrets.ike-bad.id",
            "'C=CN, Colour=blue'",
        ),
        (
            "[secrets.ike-site]",
            "[secrets.site]",
            "secrets.site",
            "named ike<suffix>",
        ),
        (
            "id = [\"C=CN, O=Local Cluster, CN=site-a\", \"C=CN, O=Local Cluster, CN=site-b\"]",
            "id = [\"C=CN, O=Local Cluster, CN=site-c\"]",
            "connections.site-b.local.auth",
            "no [secrets.ike-*] entry for ids 'C=CN, O=Local Cluster, CN=site-a' and \
             'C=CN, O=Local Cluster, CN=site-b'",
        ),
        (
            "port_nat_t = 4500",
            "port_nat_t = 500",
            "daemon.port_nat_t",
            "500 is also daemon.port",
        ),
        (
            "retransmit_timeout = \"2s\"",
            "retransmit_timeout = 0",
            "daemon.retransmit_timeout",
            "longer than 0s",
        ),
        (
            "name = \"esprit0\"",
            "name = \"a-very-long-tunnel-name\"",
            "tun.name",
            "'a-very-long-tunnel-name'",
        ),
        ("mtu = 1400", "mtu = 60", "tun.mtu", "60"),
    ];
    for &(from, to, key, reason) in cases {
        assert!(SAMPLE.contains(from), "{from}");
        fails_at(sample(&SAMPLE.replacen(from, to, 1)), key, reason);
    }
}

#[test]
fn a_psk_needs_an_id_and_start_needs_a_peer() {
    fails_at(
        sample(&MINIMAL_PSK.replace("local_addrs = [\"192.0.2.1\"]", "")),
        "connections.c.local.id",
        "local.id is required with psk when local_addrs is empty",
    );
    for action in ["start", "trap"] {
        let text = MINIMAL_PSK
            .replace("remote_addrs = [\"192.0.2.2\"]", "")
            .replace(
                "[connections.c.children.net]",
                &format!("[connections.c.children.net]\nstart_action = \"{action}\""),
            );
        fails_at(
            sample(&text),
            "connections.c.children.net.start_action",
            &format!("start_action {action} needs remote_addrs"),
        );
    }
    // A responder-only connection is fine.
    let r = sample(&MINIMAL_PSK.replace("remote_addrs = [\"192.0.2.2\"]", "")).unwrap();
    assert!(r.connections[0].conn.remote_addrs.is_empty());
}

#[test]
fn updown_is_a_shell_command_whose_absolute_program_must_exist() {
    let with = |cmd: &str| {
        SAMPLE.replace(
            "rekey_time = \"1h\"",
            &format!("rekey_time = \"1h\"\nupdown = {cmd:?}"),
        )
    };
    let r = sample(&with("/bin/sh -c true")).unwrap();
    assert_eq!(
        r.connections[0].children[0].updown.as_deref(),
        Some("/bin/sh -c true")
    );
    fails_at(
        sample(&with("/nonexistent/updown.sh iptables")),
        "connections.site-b.children.net.updown",
        "'/nonexistent/updown.sh': no such file",
    );
    fails_at(
        sample(&with("  ")),
        "connections.site-b.children.net.updown",
        "empty command",
    );
}

#[test]
fn daemon_limits_are_settings_and_bad_ones_are_named() {
    let with = |extra: &str| {
        let text = SAMPLE.replacen("[daemon]\n", &format!("[daemon]\n{extra}\n"), 1);
        sample(&text)
    };
    let r = with(
        "max_half_open = 10000\ncookie_threshold = 500\nsocket_buffer = 33554432\n\
         max_half_open_per_source = 700",
    )
    .unwrap();
    assert_eq!(r.daemon.max_half_open, 10_000);
    assert_eq!(r.ike_config().max_half_open_per_source, 700);
    assert_eq!(r.ike_config().max_half_open, 10_000);
    assert_eq!(r.ike_config().cookie_threshold, 500);
    assert_eq!(r.daemon.socket_buffer, 32 << 20);
    let e = with("max_half_open = 0").unwrap_err().to_string();
    assert!(
        e.contains("daemon.max_half_open: must be at least 1"),
        "{e}"
    );
    let e = with("max_half_open_per_source = 0")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("daemon.max_half_open_per_source: must be at least 1"),
        "{e}"
    );
    let e = with("socket_buffer = 1000").unwrap_err().to_string();
    assert!(e.contains("daemon.socket_buffer"), "{e}");
}

const HUB_AND_CLIENT: &str = r#"
[connections.hub]
local_addrs = ["192.0.2.2"]
pools = ["pods", "pods6"]
[connections.hub.local]
auth = "psk"
id = "hub"
[connections.hub.remote]
auth = "psk"
[connections.hub.children.pods]
local_ts = ["10.173.0.0/16"]
[connections.to-hub]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
vips = ["0.0.0.0", "::"]
[connections.to-hub.local]
auth = "psk"
id = "pod1"
[connections.to-hub.remote]
auth = "psk"
id = "hub"
[connections.to-hub.children.pod]
remote_ts = ["10.173.0.0/16"]
[pools.pods]
addrs = "10.173.0.0/16"
dns = ["10.173.0.53"]
[pools.pods6]
addrs = "fd00:173::1-fd00:173::ff"
[secrets.ike-pods]
secret = "a long random secret"
"#;

#[test]
fn pools_and_vips() {
    let r = sample(HUB_AND_CLIENT).unwrap();
    let names: Vec<&str> = r.pools.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["pods", "pods6"]);
    assert_eq!(
        (r.pools[0].size(), r.pools[0].dns()),
        (65534, &[ip("10.173.0.53")][..])
    );
    assert_eq!(
        (r.pools[1].first(), r.pools[1].size()),
        (ip("fd00:173::1"), 255)
    );
    let hub = &r.connections[0].conn;
    assert_eq!(hub.pools, ["pods", "pods6"]);
    // The client's "dynamic" is any address until the hub assigns one, and the hub's
    // "dynamic" remote side any address, narrowed to the client's.
    let any = [cidr("0.0.0.0/0"), cidr("::/0")];
    assert_eq!(hub.children[0].remote_ts, any);
    let client = &r.connections[1].conn;
    assert_eq!(client.vips, [ip("0.0.0.0"), ip("::")]);
    assert_eq!(client.children[0].local_ts, any);

    fails_at(
        sample(&HUB_AND_CLIENT.replace("\"pods\", \"pods6\"", "\"pods\", \"podz\"")),
        "connections.hub.pools",
        "no [pools.podz] section",
    );
    fails_at(
        sample(&HUB_AND_CLIENT.replace("\"10.173.0.0/16\"\ndns", "\"10.173.0.0/16x\"\ndns")),
        "pools.pods.addrs",
        "expected a prefix",
    );
    fails_at(
        sample(&HUB_AND_CLIENT.replace("\"0.0.0.0\", \"::\"", "\"any\"")),
        "connections.to-hub.vips",
        "'any' is not an address",
    );
    fails_at(
        sample(&HUB_AND_CLIENT.replace("[\"10.173.0.53\"]", "[\"dns.example\"]")),
        "pools.pods.dns",
        "not an IP address",
    );
}

#[test]
fn metrics_listen_is_an_address_and_port() {
    assert_eq!(
        sample(SAMPLE).unwrap().metrics,
        None,
        "off unless asked for"
    );
    let on = format!("{SAMPLE}\n[metrics]\nlisten = \"127.0.0.1:9000\"\n");
    assert_eq!(
        sample(&on).unwrap().metrics,
        Some(Metrics {
            listen: "127.0.0.1:9000".parse().unwrap()
        })
    );
    let v6 = format!("{SAMPLE}\n[metrics]\nlisten = \"[::1]:9100\"\n");
    assert_eq!(
        sample(&v6).unwrap().metrics.unwrap().listen,
        "[::1]:9100".parse().unwrap()
    );
    for (value, needle) in [
        ("127.0.0.1", "is not an address and port"),
        ("localhost:9000", "is not an address and port"),
        ("127.0.0.1:0", "port 0"),
    ] {
        let bad = format!("{SAMPLE}\n[metrics]\nlisten = \"{value}\"\n");
        let e = fails_at(sample(&bad), "metrics.listen", needle);
        assert!(
            e.to_string().starts_with("/etc/esprit/esprit.toml: "),
            "{e}"
        );
    }
    // A typo in the section is named, not ignored.
    let path = Path::new("/etc/esprit/esprit.toml");
    let typo = format!("{SAMPLE}\n[metrics]\nlisten_addr = \"127.0.0.1:9000\"\n");
    let e = parse(path, &typo).unwrap_err();
    assert_eq!(e.key, "metrics.listen_addr", "{e}");
}

/// Fuzzing the config (issue 16 item 4): a certificate path naming an endless file
/// (`/dev/zero`) fails at its key instead of reading until memory runs out.
#[test]
fn an_endless_certificate_file_is_refused() {
    let text = SAMPLE.replace(
        "auth = \"psk\"\nid = \"C=CN, O=Local Cluster, CN=site-b\"\ncacerts = [\"ca.pem\"]",
        "auth = \"pubkey\"\nid = \"C=CN, O=Local Cluster, CN=site-b\"\ncacerts = [\"/dev/zero\"]",
    );
    assert_ne!(text, SAMPLE);
    let e = sample(&text).expect_err("/dev/zero is no CA file");
    assert!(e.key.contains("cacerts"), "{e}");
    assert!(e.reason.contains("larger than 1048576 bytes"), "{e}");
}
