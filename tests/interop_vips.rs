//! Virtual IPs with charon 5.9.8 (kernel-libipsec) on each side: an esprit client of a
//! charon hub with `pools`, and a charon client (`vips = 0.0.0.0, ::`) of an esprit hub.
//! Each gets its address from the other's pool and sends ping and a SHA-256-checked TCP
//! transfer from it to the hub's inner address.

#[allow(dead_code, unreachable_pub)]
#[path = "interop/charon.rs"]
mod charon;
#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/hub.rs"]
mod hub;

use std::net::IpAddr;
use std::time::Duration;

use charon::{Auth, Charon, Conn};
use esprit::testbed::{ping, tcp_transfer, tools, wait_ok};
use hub::{dir, Lab, HUB_V4, HUB_V6, SECRET};

const PING_WAIT: Duration = Duration::from_secs(5);
const BYTES: u64 = 20_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What `Charon::start_conf` takes besides the text: PSK, short retransmissions.
fn creds(local: IpAddr) -> Conn {
    Conn {
        local_addr: local,
        remote_addr: None,
        proposals: "aes128gcm16-prfsha256-x25519".into(),
        local_id: String::new(),
        remote_id: String::new(),
        auth: Auth::Psk(SECRET.into()),
        dpd_delay: None,
        retransmit_tries: 3,
        children: Vec::new(),
    }
}

fn need_charon() {
    tools::require_strongswan().unwrap_or_else(|e| panic!("{e}"));
}

fn checked_transfer(from: &esprit::testbed::Netns, to: &esprit::testbed::Netns, addr: IpAddr) {
    let t = tcp_transfer(from, to, addr, 5001, BYTES, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("TCP to {addr}: {e}"));
    assert_eq!(t.bytes, BYTES);
    assert!(t.intact(), "sha256 differs");
}

#[test]
fn esprit_client_of_a_charon_hub_with_pools() {
    need_charon();
    let mut lab = Lab::bare(1);
    let conf = format!(
        r#"connections {{
    hub {{
        version = 2
        local_addrs = {hub}
        remote_addrs = %any
        proposals = aes128gcm16-prfsha256-x25519
        pools = pods, pods6
        local {{
            auth = psk
            id = hub.esprit.test
        }}
        remote {{
            auth = psk
        }}
        children {{
            pods {{
                local_ts = 10.173.0.0/16, fd00:173::/64
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
pools {{
    pods {{
        addrs = 10.173.0.0/24
        dns = 10.173.0.53
    }}
    pods6 {{
        addrs = fd00:173::/120
        dns = fd00:173::53
    }}
}}
secrets {{
    ike-pods {{
        secret = "{SECRET}"
    }}
}}
"#,
        hub = lab.star.hub_addr(0)
    );
    let d = dir(&lab.star, "charon");
    let charon = Charon::start_conf(lab.star.hub(), &d, &creds(lab.star.hub_addr(0)), &conf, "")
        .unwrap_or_else(|e| panic!("charon: {e}"));
    lab.start_client(0, &["0.0.0.0", "::"]);
    let vips = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lab.wait_vips(0, 2)))
        .unwrap_or_else(|e| {
            eprintln!("--- charon log ---\n{}", charon.log());
            std::panic::resume_unwind(e)
        });
    assert_eq!(vips, [ip("10.173.0.1"), ip("fd00:173::1")]);
    let s = lab.client(0).status().unwrap();
    assert_eq!(s.ike_sas[0].dns, ["10.173.0.53", "fd00:173::53"]);
    let addrs = lab.tun_addrs(0);
    assert!(
        addrs.contains("10.173.0.1/32") && addrs.contains("fd00:173::1/128"),
        "{addrs}"
    );
    let leases = charon.swanctl("--list-pools --leases").unwrap();
    assert!(
        leases.contains("10.173.0.1") && leases.contains("online"),
        "{leases}"
    );
    for addr in [ip(HUB_V4), ip(HUB_V6)] {
        assert!(
            ping(lab.star.client(0), addr, 3, PING_WAIT),
            "ping {addr}\n{}",
            charon.log()
        );
    }
    checked_transfer(lab.star.client(0), lab.star.hub(), ip(HUB_V4));
    drop(charon);
}

#[test]
fn charon_client_with_vips_of_an_esprit_hub() {
    need_charon();
    let lab = Lab::new(1, "10.173.0.0/24", Some("fd00:173::/120"));
    let conf = format!(
        r#"connections {{
    hub {{
        version = 2
        local_addrs = {me}
        remote_addrs = {hub}
        proposals = aes128gcm16-prfsha256-x25519
        vips = 0.0.0.0, ::
        local {{
            auth = psk
            id = pod0.esprit.test
        }}
        remote {{
            auth = psk
            id = hub.esprit.test
        }}
        children {{
            pod {{
                remote_ts = 10.173.0.0/16, fd00:173::/64
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-pods {{
        secret = "{SECRET}"
    }}
}}
"#,
        me = lab.star.client_addr(0),
        hub = lab.star.hub_addr(0)
    );
    let d = dir(&lab.star, "charon");
    // lib.sh turns install_virtual_ip off (its golden runs need no VIP); a VIP client
    // needs it (kernel-libipsec puts the address on ipsec0).
    let charon = Charon::start_conf(
        lab.star.client(0),
        &d,
        &creds(lab.star.client_addr(0)),
        &conf,
        "install_virtual_ip = yes",
    )
    .unwrap_or_else(|e| panic!("charon: {e}"));
    charon.initiate("pod").unwrap_or_else(|e| {
        let ns = lab.star.client(0);
        panic!(
            "{e}\n{}\n{}\naddresses: {:?}\nroutes: {:?}",
            charon.log(),
            lab.hub().log(),
            ns.ip(&["-o", "addr"]),
            ns.ip(&["route", "show", "table", "all"])
        )
    });
    // charon (kernel-libipsec) puts the address on an interface of its namespace.
    let addrs = wait_ok(
        "the VIPs in charon's namespace",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let a = lab.star.client(0).ip(&["-o", "addr"])?;
            if a.contains("10.173.0.1/") && a.contains("fd00:173::1/") {
                Ok(a)
            } else {
                Err(std::io::Error::other(a))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", charon.log()));
    assert!(addrs.contains("10.173.0.1"), "{addrs}");
    let s = lab.hub().status().unwrap();
    assert_eq!(
        s.ike_sas[0].remote_vips,
        ["10.173.0.1", "fd00:173::1"],
        "{s}"
    );
    let sas = charon.swanctl("--list-sas").unwrap();
    assert!(
        sas.contains("10.173.0.1/32"),
        "charon's child narrowed to its VIP: {sas}"
    );
    for addr in [ip(HUB_V4), ip(HUB_V6)] {
        assert!(
            ping(lab.star.client(0), addr, 3, PING_WAIT),
            "ping {addr}\n{}",
            charon.log()
        );
    }
    checked_transfer(lab.star.client(0), lab.star.hub(), ip(HUB_V4));
    // Gone and back: charon's identity gets the same address again.
    charon
        .swanctl("--terminate --ike hub --timeout 10")
        .unwrap_or_else(|e| panic!("{e}"));
    lab.wait_leases("pods", (0, 1));
    charon.initiate("pod").unwrap();
    lab.wait_leases("pods", (1, 0));
    let s = lab.hub().status().unwrap();
    assert_eq!(
        s.ike_sas[0].remote_vips,
        ["10.173.0.1", "fd00:173::1"],
        "{s}"
    );
    drop(charon);
}
