//! The mediation keys: the seed 001 setup (a server, a peer registered there, a
//! connection mediated by it), and every way `mediated_by` can dangle.

use ike::config::Mediation;

use super::{fails_at, id, sample};

const PEER: &str = r#"
[connections.medsrv]
remote_addrs = ["198.51.100.1"]
mediation = true
[connections.medsrv.local]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=edge1"
[connections.medsrv.remote]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=medsrv"
[connections.peer]
mediated_by = "medsrv"
[connections.peer.local]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=edge1"
[connections.peer.remote]
auth = "psk"
id = "C=CN, O=Local Cluster, CN=edge2"
[connections.peer.children.net]
local_ts = ["10.96.1.0/24"]
remote_ts = ["10.96.2.0/24"]
start_action = "start"
[secrets.ike-med]
id = ["C=CN, O=Local Cluster, CN=edge1", "C=CN, O=Local Cluster, CN=medsrv"]
secret = "med secret"
[secrets.ike-peer]
id = ["C=CN, O=Local Cluster, CN=edge1", "C=CN, O=Local Cluster, CN=edge2"]
secret = "peer secret"
"#;

#[test]
fn a_mediated_peer_resolves() {
    let r = sample(PEER).unwrap();
    let conn = |n: &str| {
        &r.connections
            .iter()
            .find(|p| p.conn.name == n)
            .unwrap()
            .conn
    };
    assert_eq!(conn("medsrv").mediation, Mediation::Mediation);
    assert_eq!(
        conn("peer").mediation,
        Mediation::MediatedBy {
            by: "medsrv".into(),
            peer: None
        }
    );
    // start_action = start needs no remote_addrs on a mediated connection.
    assert!(conn("peer").remote_addrs.is_empty());

    let asked = PEER.replace(
        "mediated_by = \"medsrv\"",
        "mediated_by = \"medsrv\"\nmediation_peer = \"C=CN, O=Local Cluster, CN=edge9\"",
    );
    let r = sample(&asked).unwrap();
    let peer = &r
        .connections
        .iter()
        .find(|p| p.conn.name == "peer")
        .unwrap()
        .conn;
    assert_eq!(
        peer.mediation,
        Mediation::MediatedBy {
            by: "medsrv".into(),
            peer: Some(id("C=CN, O=Local Cluster, CN=edge9"))
        }
    );
}

#[test]
fn a_dangling_mediated_by_is_explained() {
    let typo = PEER.replace("mediated_by = \"medsrv\"", "mediated_by = \"medsvr\"");
    let e = fails_at(
        sample(&typo),
        "connections.peer.mediated_by",
        "'medsvr' is no connection",
    );
    assert!(
        e.reason.contains("mediation connections here: medsrv"),
        "{e}"
    );

    let none = PEER
        .replace("mediation = true\n", "")
        .replace("mediated_by = \"medsrv\"", "mediated_by = \"server\"");
    fails_at(
        sample(&none),
        "connections.peer.mediated_by",
        "this file defines none",
    );

    let plain = PEER.replace("mediation = true\n", "");
    fails_at(
        sample(&plain),
        "connections.peer.mediated_by",
        "'medsrv' is not a mediation connection",
    );

    let addressless = PEER.replace("remote_addrs = [\"198.51.100.1\"]\n", "");
    fails_at(
        sample(&addressless),
        "connections.peer.mediated_by",
        "has no remote_addrs",
    );
}

#[test]
fn misplaced_mediation_keys() {
    let both = PEER.replace(
        "mediated_by = \"medsrv\"",
        "mediated_by = \"medsrv\"\nmediation = true",
    );
    fails_at(
        sample(&both),
        "connections.peer.mediated_by",
        "cannot itself be mediated",
    );

    let with_child = format!(
        "{PEER}\n[connections.medsrv.children.x]\nlocal_ts = [\"10.0.0.0/8\"]\nremote_ts = [\"10.0.0.0/8\"]\n"
    );
    fails_at(
        sample(&with_child),
        "connections.medsrv.children",
        "carries no child SA",
    );

    let stray = PEER.replace(
        "mediation = true",
        "mediation = true\nmediation_peer = \"C=CN, CN=x\"",
    );
    fails_at(
        sample(&stray),
        "connections.medsrv.mediation_peer",
        "only meaningful with mediated_by",
    );

    let anyone = PEER.replace("id = \"C=CN, O=Local Cluster, CN=edge2\"", "id = \"%any\"");
    fails_at(
        sample(&anyone),
        "connections.peer.mediation_peer",
        "needed when remote.id is %any",
    );
}
