//! `[netstack]` and `[pipes.NAME]`: the issue's example resolves, and each mistake is
//! named by its key.

use std::time::Duration;

use super::{fails_at, sample};
use crate::config::{PipeProto, PipeRemote};

const PIPES: &str = r#"
[netstack]
addrs = ["10.96.1.5"]
[pipes.nginx]
listen = "127.0.0.1:8080"
remote = "10.96.2.1:80"
[pipes.ssh-back]
reverse = true
listen = "10.96.1.5:2222"
remote = "127.0.0.1:22"
[pipes.dns]
proto = "udp"
listen = "127.0.0.1:5353"
remote = "10.96.2.53:53"
[pipes.web]
listen = "127.0.0.1:8081"
remote = "nginx:80"
max_connections = 10
idle_timeout = "30s"
"#;

#[test]
fn the_issue_example_resolves() {
    let r = sample(PIPES).unwrap();
    let ns = r.netstack.unwrap();
    assert_eq!(ns.addrs, ["10.96.1.5".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!((ns.mtu, ns.tcp_buffer), (1400, 512 * 1024));
    let names: Vec<&str> = r.pipes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dns", "nginx", "ssh-back", "web"]);
    let dns = &r.pipes[0];
    assert_eq!((dns.proto, dns.reverse), (PipeProto::Udp, false));
    let back = &r.pipes[2];
    assert!(back.reverse);
    assert_eq!(
        back.remote,
        PipeRemote::Addr("127.0.0.1:22".parse().unwrap())
    );
    let web = &r.pipes[3];
    assert_eq!(web.remote, PipeRemote::Name("nginx".into(), 80));
    assert_eq!(
        (web.max_connections, web.idle_timeout),
        (10, Duration::from_secs(30))
    );
    assert_eq!(r.pipes[1].max_connections, 256);
}

#[test]
fn pipe_mistakes_are_named() {
    let no_stack = PIPES.replace("[netstack]\naddrs = [\"10.96.1.5\"]\n", "");
    fails_at(sample(&no_stack), "pipes.dns.listen", "needs a [netstack]");
    fails_at(
        sample(&PIPES.replace("listen = \"10.96.1.5:2222\"", "listen = \"10.96.1.6:2222\"")),
        "pipes.ssh-back.listen",
        "not a netstack address",
    );
    fails_at(
        sample(&PIPES.replace("127.0.0.1:8081", "127.0.0.1:8080")),
        "pipes.web.listen",
        "also another pipe's",
    );
    fails_at(
        sample(&PIPES.replace("\"udp\"", "\"sctp\"")),
        "pipes.dns.proto",
        "tcp or udp",
    );
    fails_at(
        sample(&PIPES.replace("nginx:80", "nginx")),
        "pipes.web.remote",
        "not address:port",
    );
    fails_at(
        sample(&PIPES.replace("127.0.0.1:8080", "localhost:8080")),
        "pipes.nginx.listen",
        "not an address:port",
    );
    fails_at(
        sample(&PIPES.replace("\"10.96.1.5\"]", "\"10.96.1.x\"]")),
        "netstack.addrs",
        "not an IP address",
    );
    fails_at(
        sample(&PIPES.replace("max_connections = 10", "max_connections = 0")),
        "pipes.web.max_connections",
        "1 to 65536",
    );
    // Without addresses (virtual IPs), a reverse pipe listens on all of them.
    let vip = PIPES
        .replace("addrs = [\"10.96.1.5\"]\n", "")
        .replace("10.96.1.5:2222", "0.0.0.0:2222");
    assert!(sample(&vip).unwrap().netstack.unwrap().addrs.is_empty());
}
