//! Rendering: names, types, labels and values of each family.

use super::*;

fn sample() -> Snapshot {
    let mut census = Census::default();
    census.ike_sas[1] = 2; // ESTABLISHED
    census.ike_sas[0] = 1; // CONNECTING
    census.child_sas = 2;
    let mut ike = ike::endpoint::Stats {
        handshakes: 5,
        retransmits: 7,
        unknown_spi: 4,
        ike_rekeys: 1,
        child_rekeys: 2,
        dpd_checks: 9,
        dpd_timeouts: 1,
        ..Default::default()
    };
    ike.handshake_failures[DownReason::Timeout.as_index()] = 3;
    Snapshot {
        connections: 2,
        census,
        ike,
        children: vec![ChildFigures {
            connection: "site-b".into(),
            child: "net".into(),
            spi_in: 0xc000_0001,
            spi_out: 0x0000_00ab,
            bytes_in: 840,
            packets_in: 10,
            bytes_out: 1680,
            packets_out: 20,
        }],
        outbound: Some(OutStats {
            no_policy: 6,
            esp_sent: 20,
            ..Default::default()
        }),
        inbound: Some(InStats {
            esp_received: 10,
            ike_backpressure: 2,
            ike_dropped_queue_full: 1,
            drops: vec![("replay_duplicate".into(), 3)],
            ..Default::default()
        }),
        keepalives_sent: 8,
        udp_rcvbuf_errors: 11,
        mediation: MediationFigures {
            registered_peers: 2,
            mediated_connections: 3,
            relayed_connections: 1,
        },
        relays: RelayFigures {
            open: 1,
            opened: 4,
            refused: vec![("limit", 1), ("socket_error", 0)],
            closed: vec![("idle", 3), ("failed", 0)],
            datagrams: 3000,
            bytes: 4_270_000,
            binds: 8,
            drops: vec![("unknown_source", 5), ("over_rate", 2)],
        },
        pools: vec![PoolFigures {
            name: "pods".into(),
            size: 254,
            online: 3,
            offline: 1,
        }],
        pipes: None,
    }
}

/// The `# TYPE` of `name`, checking that a `# HELP` comes first.
fn type_of<'a>(text: &'a str, name: &str) -> &'a str {
    let help = format!("# HELP {name} ");
    let ty = format!("# TYPE {name} ");
    let h = text
        .find(&help)
        .unwrap_or_else(|| panic!("no HELP {name}:\n{text}"));
    let t = text
        .find(&ty)
        .unwrap_or_else(|| panic!("no TYPE {name}:\n{text}"));
    assert!(h < t, "HELP before TYPE for {name}");
    text[t + ty.len()..].lines().next().unwrap()
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

#[test]
fn families_have_their_names_and_types() {
    let text = render(sample());
    for (name, ty) in [
        ("esprit_connections", "gauge"),
        ("esprit_ike_sas", "gauge"),
        ("esprit_child_sas", "gauge"),
        ("esprit_ike_handshakes_total", "counter"),
        ("esprit_ike_handshake_failures_total", "counter"),
        ("esprit_ike_rekeys_total", "counter"),
        ("esprit_child_sa_rekeys_total", "counter"),
        ("esprit_dpd_checks_total", "counter"),
        ("esprit_dpd_timeouts_total", "counter"),
        ("esprit_ike_retransmits_total", "counter"),
        ("esprit_ike_replaced_total", "counter"),
        ("esprit_ike_cookies_sent_total", "counter"),
        ("esprit_ike_drops_total", "counter"),
        ("esprit_child_sa_bytes_total", "counter"),
        ("esprit_child_sa_packets_total", "counter"),
        ("esprit_esp_sent_packets_total", "counter"),
        ("esprit_esp_received_packets_total", "counter"),
        ("esprit_outbound_drops_total", "counter"),
        ("esprit_esp_drops_total", "counter"),
        ("esprit_ike_handoff_total", "counter"),
        ("esprit_ike_handoff_backpressure_total", "counter"),
        ("esprit_ike_handoff_drops_total", "counter"),
        ("esprit_natt_keepalives_sent_total", "counter"),
        ("esprit_natt_keepalives_received_total", "counter"),
        ("esprit_udp_rcvbuf_errors_total", "counter"),
        ("esprit_mediation_registered_peers", "gauge"),
        ("esprit_mediated_connections", "gauge"),
        ("esprit_relays", "gauge"),
        ("esprit_relays_opened_total", "counter"),
        ("esprit_relays_refused_total", "counter"),
        ("esprit_relays_closed_total", "counter"),
        ("esprit_relay_bytes_total", "counter"),
        ("esprit_relay_datagrams_total", "counter"),
        ("esprit_relay_binds_total", "counter"),
        ("esprit_relay_drops_total", "counter"),
        ("esprit_pool_addresses", "gauge"),
        ("esprit_pool_leases", "gauge"),
    ] {
        assert_eq!(type_of(&text, name), ty, "{name}");
    }
    // Every sample line belongs to the esprit_ namespace.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.starts_with("esprit_"), "{l}");
    }
}

#[test]
fn values_carry_their_labels() {
    let text = render(sample());
    has(&text, "esprit_connections 2");
    has(&text, "esprit_ike_sas{state=\"CONNECTING\"} 1");
    has(&text, "esprit_ike_sas{state=\"ESTABLISHED\"} 2");
    has(&text, "esprit_ike_sas{state=\"DELETING\"} 0");
    has(&text, "esprit_child_sas 2");
    has(&text, "esprit_ike_handshakes_total 5");
    has(
        &text,
        "esprit_ike_handshake_failures_total{reason=\"timeout\"} 3",
    );
    has(
        &text,
        "esprit_ike_handshake_failures_total{reason=\"authentication_failed\"} 0",
    );
    has(&text, "esprit_ike_drops_total{reason=\"unknown_spi\"} 4");
    has(&text, "esprit_ike_retransmits_total 7");
    has(&text, "esprit_ike_rekeys_total 1");
    has(&text, "esprit_child_sa_rekeys_total 2");
    has(&text, "esprit_dpd_checks_total 9");
    has(&text, "esprit_dpd_timeouts_total 1");
    has(
        &text,
        "esprit_child_sa_bytes_total{connection=\"site-b\",child=\"net\",direction=\"in\",spi=\"c0000001\"} 840",
    );
    has(
        &text,
        "esprit_child_sa_bytes_total{connection=\"site-b\",child=\"net\",direction=\"out\",spi=\"000000ab\"} 1680",
    );
    has(
        &text,
        "esprit_child_sa_packets_total{connection=\"site-b\",child=\"net\",direction=\"out\",spi=\"000000ab\"} 20",
    );
    has(&text, "esprit_outbound_drops_total{reason=\"no_policy\"} 6");
    has(&text, "esprit_esp_sent_packets_total 20");
    has(&text, "esprit_esp_received_packets_total 10");
    // Every ESP drop reason is a series, the zeros too.
    has(
        &text,
        "esprit_esp_drops_total{reason=\"replay_duplicate\"} 3",
    );
    for name in esp::DropReason::NAMES {
        assert!(
            text.contains(&format!("esprit_esp_drops_total{{reason=\"{name}\"}} ")),
            "{name}"
        );
    }
    has(&text, "esprit_ike_handoff_backpressure_total 2");
    has(
        &text,
        "esprit_ike_handoff_drops_total{reason=\"queue_full\"} 1",
    );
    has(&text, "esprit_natt_keepalives_sent_total 8");
    has(&text, "esprit_udp_rcvbuf_errors_total 11");
    has(&text, "esprit_mediation_registered_peers 2");
    has(&text, "esprit_mediated_connections{path=\"direct\"} 2");
    has(&text, "esprit_mediated_connections{path=\"relayed\"} 1");
    has(&text, "esprit_relays 1");
    has(&text, "esprit_relays_opened_total 4");
    has(&text, "esprit_relays_refused_total{reason=\"limit\"} 1");
    has(
        &text,
        "esprit_relays_refused_total{reason=\"socket_error\"} 0",
    );
    has(&text, "esprit_relays_closed_total{reason=\"idle\"} 3");
    has(&text, "esprit_relay_bytes_total 4270000");
    has(&text, "esprit_relay_datagrams_total 3000");
    has(&text, "esprit_relay_binds_total 8");
    has(
        &text,
        "esprit_relay_drops_total{reason=\"unknown_source\"} 5",
    );
    has(&text, "esprit_relay_drops_total{reason=\"over_rate\"} 2");
    has(&text, "esprit_pool_addresses{pool=\"pods\"} 254");
    has(
        &text,
        "esprit_pool_leases{pool=\"pods\",state=\"online\"} 3",
    );
    has(
        &text,
        "esprit_pool_leases{pool=\"pods\",state=\"offline\"} 1",
    );
}

#[test]
fn missing_dataplane_answers_and_pipes_leave_their_families_out() {
    let snap = Snapshot {
        outbound: None,
        inbound: None,
        pools: vec![],
        ..sample()
    };
    let text = render(snap);
    for absent in [
        "esprit_esp_sent_packets_total",
        "esprit_esp_drops_total",
        "esprit_ike_handoff_total",
        "esprit_pool_addresses",
        "esprit_pipe",
    ] {
        assert!(!text.contains(absent), "{absent} in:\n{text}");
    }
    // The control task's own figures are still there.
    has(&text, "esprit_ike_handshakes_total 5");
}

#[test]
fn pipes_render_when_present() {
    let snap = Snapshot {
        pipes: Some(vec![PipeFigures {
            name: "nginx".into(),
            active: 4,
            opened: 9,
            refused: 1,
            failed: 2,
            bytes_up: 100,
            bytes_down: 200,
        }]),
        ..sample()
    };
    let text = render(snap);
    assert_eq!(type_of(&text, "esprit_pipe_connections"), "gauge");
    assert_eq!(type_of(&text, "esprit_pipe_bytes_total"), "counter");
    has(&text, "esprit_pipe_connections{pipe=\"nginx\"} 4");
    has(
        &text,
        "esprit_pipe_connections_opened_total{pipe=\"nginx\"} 9",
    );
    has(
        &text,
        "esprit_pipe_connections_refused_total{pipe=\"nginx\"} 1",
    );
    has(
        &text,
        "esprit_pipe_connections_failed_total{pipe=\"nginx\"} 2",
    );
    has(
        &text,
        "esprit_pipe_bytes_total{pipe=\"nginx\",direction=\"up\"} 100",
    );
    has(
        &text,
        "esprit_pipe_bytes_total{pipe=\"nginx\",direction=\"down\"} 200",
    );
}

#[test]
fn label_values_are_escaped() {
    let mut snap = sample();
    snap.children[0].connection = "a\"b\\c".into();
    let text = render(snap);
    assert!(
        text.contains("connection=\"a\\\"b\\\\c\""),
        "quote and backslash escaped:\n{text}"
    );
}
