//! End-to-end: the Prometheus endpoint. Two daemons with `[metrics] listen` on their
//! namespace's loopback bring a tunnel up; pings go through it between two scrapes of
//! a's `/metrics`, whose child SA byte and packet counters must move by at least what
//! was sent. `promtool check metrics` accepts the body, `/healthz` answers 200 "ok",
//! an unknown path 404, and a real Prometheus server scrapes the endpoint (`up == 1`,
//! and the child SA count it stored is the daemon's).

#[path = "e2e/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use common::{psk_net, Bench, Who, POLL, SETUP};
use esprit::testbed::{http_get, ping_stats, tools, wait_ok, Netns, Scratch};

/// Where each daemon serves its metrics, on its own namespace's loopback.
const LISTEN: &str = "127.0.0.1:9108";
/// Where the Prometheus server listens, in a's namespace.
const PROMETHEUS: &str = "127.0.0.1:9190";
/// Echo requests answered between the two scrapes.
const PINGS: u32 = 10;
/// An echo request as the tunnel carries it: IPv4 header, ICMP header, 48 bytes of data.
const PING_BYTES: u64 = 20 + 8 + 48;

/// Scrapes `/metrics` in `ns`, which must answer 200.
fn scrape(ns: &Netns) -> String {
    let (code, body) = http_get(ns, LISTEN, "/metrics").expect("scrape");
    assert_eq!(code, 200, "{body}");
    body
}

/// The samples of `name` as (labels, value), labels as written between the braces.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` whose labels contain every one of `want` (`key="value"`).
fn value(text: &str, name: &str, want: &[&str]) -> f64 {
    let found: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|(labels, _)| want.iter().all(|w| labels.contains(w)))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?} in:\n{text}");
    found[0]
}

/// `promtool check metrics` accepts `text` (a missing promtool fails, naming its
/// Debian package).
fn promtool_check(text: &str) {
    tools::promtool_check(text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn metrics_count_the_traffic_and_pass_promtool_and_prometheus() {
    let topo = esprit::testbed::Topology::direct(false).expect("topology");
    let (a, b) = psk_net(&topo, "start");
    let b_inner = IpAddr::V4(topo.b_inner().v4[0]);
    let mut bench = Bench::new(topo, a, b).expect("bench");
    let extra = format!("[metrics]\nlisten = \"{LISTEN}\"\n");
    bench.start_extra(Who::B, &extra);
    bench.start_extra(Who::A, &extra);
    let s = bench.wait_child(Who::A, "net");
    bench.wait_child(Who::B, "net");
    let child = &s.ike_sas[0].children[0];
    let ns = bench.topo.a();

    let before = scrape(ns);
    promtool_check(&before);
    assert_eq!(value(&before, "esprit_child_sas", &[]), 1.0, "{before}");
    assert_eq!(
        value(&before, "esprit_ike_sas", &["state=\"ESTABLISHED\""]),
        1.0
    );
    assert!(value(&before, "esprit_ike_handshakes_total", &[]) >= 1.0);

    let pings = ping_stats(ns, b_inner, PINGS, SETUP).expect("ping");
    assert_eq!(pings.answered, PINGS, "{pings:?}");

    let after = scrape(ns);
    promtool_check(&after);
    let moved = |name: &str, dir: &str, spi: &str| {
        let labels = [
            "connection=\"peer\"",
            "child=\"net\"",
            &format!("direction=\"{dir}\""),
            &format!("spi=\"{spi}\""),
        ];
        value(&after, name, &labels) - value(&before, name, &labels)
    };
    let n = f64::from(PINGS);
    let out_packets = moved("esprit_child_sa_packets_total", "out", &child.spi_out);
    let in_packets = moved("esprit_child_sa_packets_total", "in", &child.spi_in);
    let out_bytes = moved("esprit_child_sa_bytes_total", "out", &child.spi_out);
    let in_bytes = moved("esprit_child_sa_bytes_total", "in", &child.spi_in);
    eprintln!("moved: out {out_packets} packets {out_bytes} bytes, in {in_packets} packets {in_bytes} bytes");
    assert!(out_packets >= n, "requests out: {out_packets}");
    assert!(in_packets >= n, "replies in: {in_packets}");
    let least = (u64::from(PINGS) * PING_BYTES) as f64;
    assert!(out_bytes >= least, "bytes out: {out_bytes} < {least}");
    assert!(in_bytes >= least, "bytes in: {in_bytes} < {least}");
    // The dataplane's totals moved with them, and nothing was dropped on the way in.
    assert!(
        value(&after, "esprit_esp_sent_packets_total", &[])
            - value(&before, "esprit_esp_sent_packets_total", &[])
            >= n
    );
    for (labels, v) in samples(&after, "esprit_esp_drops_total") {
        assert_eq!(v, 0.0, "esp drops {labels}");
    }
    // status --json carries the same lifecycle counters.
    let ike = bench.status(Who::A).counters.ike;
    assert_eq!(
        ike["handshakes"].as_f64(),
        Some(value(&after, "esprit_ike_handshakes_total", &[])),
        "{ike}"
    );
    assert_eq!(ike["child_rekeys"].as_u64(), Some(0), "{ike}");

    let (code, body) = http_get(ns, LISTEN, "/healthz").expect("healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = http_get(ns, LISTEN, "/nothing-here").expect("404");
    assert_eq!(code, 404);
    // b serves its own endpoint in its namespace.
    let (code, body) = http_get(bench.topo.b(), LISTEN, "/metrics").expect("b's scrape");
    assert_eq!(code, 200);
    assert_eq!(value(&body, "esprit_child_sas", &[]), 1.0, "{body}");

    prometheus_scrapes(ns);
}

/// A real Prometheus server in `ns` scrapes the endpoint every second: its `up` for
/// the target turns 1 and it stored the daemon's child SA count.
fn prometheus_scrapes(ns: &Netns) {
    let prometheus = tools::require("prometheus").unwrap_or_else(|e| panic!("{e}"));
    let dir = Scratch::new("esprit-prometheus").expect("scratch");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: esprit\n    static_configs:\n      \
             - targets: ['{LISTEN}']\n"
        ),
    )
    .expect("prometheus.yml");
    let data = dir.path().join("data");
    let log = dir.path().join("prometheus.log");
    let argv = [
        prometheus.to_string_lossy().into_owned(),
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address={PROMETHEUS}"),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let server = ns.spawn(&argv, &[], &log).expect("prometheus");
    let query = |q: &str| -> Result<String, String> {
        let (code, body) = http_get(ns, PROMETHEUS, &format!("/api/v1/query?query={q}"))
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let value = v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string);
        match (code, value) {
            (200, Some(value)) => Ok(value),
            _ => Err(format!("{code}: {body}")),
        }
    };
    let bound = Duration::from_secs(60);
    let up = wait_ok(
        "Prometheus scraping esprit (up == 1)",
        bound,
        POLL * 4,
        || match query("up")? {
            v if v == "1" => Ok(()),
            v => Err(format!("up = {v}")),
        },
    );
    if let Err(e) = up {
        panic!("{e}\n--- prometheus log ---\n{}", server.log());
    }
    let children = query("esprit_child_sas").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(children, "1");
    drop(server);
}
