//! Seed 003 at scale: 50 esprit clients in 50 namespaces against one esprit hub with a
//! pool. Every client gets a distinct virtual IP; a sample of client pairs ping each
//! other through the hub; the time until all are up and the hub's memory are printed
//! (README, "Virtual IPs at scale"; `cargo test --release --test scale_vips --
//! --nocapture` for the figures there). About 10 s in a debug build on two cores.

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/hub.rs"]
mod hub;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use esprit::testbed::{ping, wait_ok};
use hub::Lab;

const CLIENTS: usize = 50;

/// A process's resident memory in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn fifty_clients_get_distinct_vips_and_reach_each_other() {
    let setup = Instant::now();
    let mut lab = Lab::new(CLIENTS, "10.173.0.0/16", None);
    let hub_pid = lab.hub().proc.pid();
    let rss_idle = rss_kib(hub_pid);
    eprintln!("{CLIENTS} namespaces and the hub in {:?}", setup.elapsed());

    let start = Instant::now();
    for i in 0..CLIENTS {
        lab.start_client(i, &["0.0.0.0"]);
    }
    let started = start.elapsed();
    // All up: the hub holds 50 online leases and every client has its child SA.
    wait_ok(
        "all clients with a VIP at the hub",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let s = lab.hub().status()?;
            let online = s.pools.iter().map(|p| p.online).sum::<usize>();
            let children = s
                .ike_sas
                .iter()
                .filter(|sa| !sa.children.is_empty())
                .count();
            if online == CLIENTS && children == CLIENTS {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{online} leases, {children} child SAs"
                )))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let all_up = start.elapsed();
    let mut vips = Vec::new();
    for i in 0..CLIENTS {
        vips.push(lab.wait_vips(i, 1)[0]);
    }
    let distinct: HashSet<IpAddr> = vips.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        CLIENTS,
        "every client a distinct VIP: {vips:?}"
    );
    let rss_up = rss_kib(hub_pid);

    // A sample of pairs across the star, both directions.
    let pairs: Vec<(usize, usize)> = (0..CLIENTS)
        .step_by(5)
        .map(|i| (i, (i + CLIENTS / 2 + 1) % CLIENTS))
        .collect();
    for &(a, b) in &pairs {
        assert!(
            ping(lab.star.client(a), vips[b], 2, Duration::from_secs(5)),
            "client {a} -> client {b} ({})",
            vips[b]
        );
        assert!(
            ping(lab.star.client(b), vips[a], 2, Duration::from_secs(5)),
            "client {b} -> client {a} ({})",
            vips[a]
        );
    }
    eprintln!(
        "scale: {CLIENTS} clients started in {started:?}, all with a VIP and a child SA \
         after {all_up:?}; hub RSS {rss_idle} KiB idle, {rss_up} KiB with {CLIENTS} IKE SAs \
         ({} KiB per client); {} pairs pinged both ways",
        (rss_up.saturating_sub(rss_idle)) / CLIENTS as u64,
        pairs.len()
    );
}
