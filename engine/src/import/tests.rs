//! The readers on small files written to a scratch folder: inheritance, duplicates,
//! lifetimes, secrets, what is left out, and errors with their line.

use std::path::{Path, PathBuf};

use super::*;

/// A scratch folder removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("esprit-import-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parsed(toml: &str) -> crate::config::ConfigFile {
    crate::config::parse(Path::new("out.toml"), toml).unwrap()
}

#[test]
fn ipsec_conf_inheritance_duplicates_lifetimes_and_secrets() {
    let d = Dir::new("ipsec");
    let conf = d.write(
        "ipsec.conf",
        "config setup\n    uniqueids=no\n\nconn %default\n    ikelifetime=60m\n    keylife=20m\n    rekeymargin=3m\n    keyexchange=ikev2\n    authby=secret\n\nconn base\n    right=192.0.2.2\n    auto=ignore\n\nconn site # comment\n    also=base\n    left=192.0.2.1\n    leftid=@a.example\n    rightid=\"@b.example\"\n    leftsubnet=10.1.0.0/24\n    leftsubnet=10.1.1.0/24\n    rightsubnet=10.2.0.0/24,10.3.0.0/24[tcp/80]\n    ike=aes128gcm16-prfsha256-x25519!\n    esp=aes128gcm16\n    dpddelay=20s\n    dpdaction=hold\n    leftupdown=/bin/true arg\n    compress=yes\n    auto=route\n",
    );
    d.write(
        "ipsec.secrets",
        "# keys\n@a.example @b.example : PSK \"s3cret # not a comment\"\n: PSK 0x1234\n: RSA key.pem pass\n: EAP \"x\"\n",
    );
    let out = import(&conf, None).unwrap();
    let t = &out.toml;
    let f = parsed(t);
    assert_eq!(f.connections.len(), 1, "{t}");
    let c = &f.connections["site"];
    assert_eq!(c.remote_addrs, ["192.0.2.2"], "also= inherited: {t}");
    assert_eq!(c.local_addrs, ["192.0.2.1"]);
    assert_eq!(c.local.auth, crate::config::AuthKind::Psk);
    assert_eq!(c.remote.id.as_deref(), Some("@b.example"));
    // 60m - 3m, as charon rekeys margintime early.
    assert_eq!(c.rekey_time, Some(std::time::Duration::from_secs(57 * 60)));
    assert_eq!(c.proposals, ["aes128gcm16-prfsha256-x25519"], "strict list");
    let ch = &c.children["site"];
    assert_eq!(ch.local_ts, ["10.1.1.0/24"], "the last leftsubnet counts");
    assert_eq!(ch.remote_ts, ["10.2.0.0/24"]);
    assert_eq!(
        ch.esp_proposals,
        ["aes128gcm16", "default"],
        "charon adds its defaults"
    );
    assert_eq!(ch.start_action, crate::config::StartAction::Trap);
    assert_eq!(ch.dpd_action, crate::config::DpdAction::Trap);
    assert_eq!(ch.rekey_time, Some(std::time::Duration::from_secs(17 * 60)));
    assert_eq!(ch.updown.as_deref(), Some("/bin/true arg"));
    assert_eq!(c.dpd_delay, Some(std::time::Duration::from_secs(20)));
    for needle in [
        "# line 21: leftsubnet given twice in conn site",
        "# not carried: rightsubnet: '10.3.0.0/24[tcp/80]'",
        "# not carried: line 28: compress=yes: not supported",
        "# not carried: line 2: config setup: uniqueids=no",
        "# conn base: auto=ignore (the default)",
        "the passphrase of key.pem",
        "EAP secret",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in:\n{t}");
    }
    assert_eq!(out.not_carried, t.matches("# not carried: ").count());
    let s = &f.secrets;
    assert_eq!(s.ike["ike-1"].id, ["@a.example", "@b.example"]);
    assert_eq!(s.ike["ike-1"].secret, "s3cret # not a comment");
    assert!(s.ike["ike-2"].id.is_empty());
    assert_eq!(
        s.private["key"].file,
        ipsec::ipsec_d(&conf, "private", "key.pem")
    );
}

#[test]
fn connections_esprit_cannot_run_are_left_out_with_the_reason() {
    let d = Dir::new("out");
    let conf = d.write(
        "ipsec.conf",
        "conn v1\n    keyexchange=ikev1\n    auto=add\nconn tr\n    type=transport\n    auto=add\nconn eap\n    rightauth=eap-mschapv2\n    leftauth=psk\n    leftid=@a\n    auto=add\n",
    );
    let t = import(&conf, None).unwrap().toml;
    assert!(parsed(&t).connections.is_empty(), "{t}");
    for needle in [
        "conn v1: keyexchange=ikev1",
        "conn tr: type=transport",
        "conn eap: rightauth=eap-mschapv2",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in:\n{t}");
    }
}

#[test]
fn swanctl_conf_carries_its_own_vocabulary() {
    let d = Dir::new("swanctl");
    d.write("x509ca/ca.pem", "");
    let conf = d.write(
        "swanctl.conf",
        "connections {\n  gw {\n    remote_addrs = 192.0.2.2\n    vips = 0.0.0.0\n    local {\n      auth = pubkey\n      certs = me.pem\n    }\n    remote {\n      auth = pubkey\n      id = \"CN=gw\"\n    }\n    children {\n      net {\n        remote_ts = 10.2.0.0/16\n        start_action = trap|start\n        close_action = restart\n      }\n      tr {\n        mode = transport\n      }\n    }\n  }\n}\npools {\n  p {\n    addrs = 10.3.0.0/24\n  }\n}\nsecrets {\n  ike-1 {\n    id-a = a\n    id-b = b\n    secret = \"x y\"\n  }\n  private-me {\n    file = me.key\n  }\n  eap-u {\n    secret = z\n  }\n}\n",
    );
    let t = import(&conf, None).unwrap().toml;
    let f = parsed(&t);
    let c = &f.connections["gw"];
    assert_eq!(c.local.certs, [d.0.join("x509/me.pem")]);
    assert_eq!(c.remote.cacerts, [d.0.join("x509ca/ca.pem")], "{t}");
    assert_eq!(
        c.children["net"].start_action,
        crate::config::StartAction::Start
    );
    assert_eq!(
        c.children["net"].close_action,
        crate::config::CloseAction::Start
    );
    assert!(!c.children.contains_key("tr"));
    assert_eq!(f.secrets.ike["ike-1"].id, ["a", "b"]);
    assert_eq!(
        f.secrets.private["private-me"].file,
        d.0.join("private/me.key")
    );
    assert_eq!(c.vips, ["0.0.0.0"]);
    assert_eq!(f.pools["p"].addrs, "10.3.0.0/24");
    for needle in [
        "start_action = trap|start",
        "child tr: mode = transport",
        "eap-u: esprit has no EAP",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in:\n{t}");
    }
}

#[test]
fn syntax_errors_name_file_and_line() {
    let d = Dir::new("err");
    let conf = d.write("ipsec.conf", "conn a\n    left=1.2.3.4\n    nonsense\n");
    let e = import(&conf, None).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(
        e.to_string()
            .contains("ipsec.conf: line 3: 'nonsense': expected key=value"),
        "{e}"
    );
    let conf = d.write("swanctl.conf", "connections {\n  a {\n    x = 1\n");
    let e = import(&conf, None).unwrap_err();
    assert!(
        e.to_string()
            .contains("line 2: section 'a' is never closed"),
        "{e}"
    );
    let conf = d.write("bad.conf", "conn a\n    auto=add\n");
    let secrets = d.write("s", "no separator here\n");
    let e = import(&conf, Some(&secrets)).unwrap_err();
    assert!(
        e.to_string()
            .contains("s: line 1: expected `[IDs] : TYPE value`"),
        "{e}"
    );
    let e = import(&d.0.join("missing.conf"), None).unwrap_err();
    assert!(e.to_string().contains("missing.conf: cannot read"), "{e}");
}

#[test]
fn sourceip_becomes_vips_and_pools() {
    let d = Dir::new("vip");
    let conf = d.write(
        "ipsec.conf",
        "conn %default\n    keyexchange=ikev2\n    authby=secret\n    auto=add\n\
         conn road\n    right=192.0.2.2\n    leftid=@road\n    rightid=@gw\n    leftsourceip=%config,%config6\n    rightsubnet=10.3.0.0/16\n\
         conn fixed\n    right=192.0.2.2\n    leftid=@road2\n    rightid=@gw\n    leftsourceip=1.1.1.236\n\
         conn gw\n    leftid=@gw\n    rightid=%any\n    leftsubnet=10.3.0.0/16\n    rightsourceip=10.3.0.0/24,10.4.0.1-10.4.0.9,%config\n",
    );
    d.write("ipsec.secrets", "@gw @road @road2 : PSK \"x\"\n");
    let t = import(&conf, None).unwrap().toml;
    let f = parsed(&t);
    assert_eq!(f.connections["road"].vips, ["0.0.0.0", "::"], "{t}");
    assert_eq!(f.connections["fixed"].vips, ["1.1.1.236"], "{t}");
    assert_eq!(f.connections["gw"].pools, ["gw", "gw-1"], "{t}");
    assert_eq!(f.pools["gw"].addrs, "10.3.0.0/24");
    assert_eq!(f.pools["gw-1"].addrs, "10.4.0.1-10.4.0.9");
    assert!(
        t.contains("rightsourceip=%config: only subnets and ranges"),
        "{t}"
    );
    crate::config::resolve(&d.0.join("out.toml"), &f).expect("resolves");
}

/// The mediation keys of both formats' sample, as esprit writes them.
fn carries_mediation(t: &str) {
    for needle in [
        "mediation = true",
        "mediated_by = \"medsrv\"",
        "mediation_peer = \"edge2\"",
        "start_action = \"start\"",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in:\n{t}");
    }
}

#[test]
fn mediation_keys_are_carried_from_both_formats() {
    let d = Dir::new("med");
    let conf = d.write(
        "swanctl.conf",
        "connections {\n  medsrv {\n    remote_addrs = 198.51.100.1\n    mediation = yes\n    local {\n      auth = psk\n      id = edge1\n    }\n    remote {\n      auth = psk\n      id = medsrv\n    }\n  }\n  peer {\n    mediated_by = medsrv\n    mediation_peer = edge2\n    local {\n      auth = psk\n      id = edge1\n    }\n    remote {\n      auth = psk\n      id = edge2\n    }\n    children {\n      net {\n        local_ts = 10.1.0.0/24\n        remote_ts = 10.2.0.0/24\n        start_action = start\n      }\n    }\n  }\n}\nsecrets {\n  ike-1 {\n    secret = abc\n  }\n}\n",
    );
    let t = import(&conf, None).unwrap().toml;
    carries_mediation(&t);
    assert_eq!(parsed(&t).connections.len(), 2, "{t}");
    let conf = d.write(
        "ipsec.conf",
        "conn medsrv\n    right=198.51.100.1\n    leftid=@edge1\n    rightid=@medsrv\n    authby=psk\n    mediation=yes\n    auto=start\nconn peer\n    leftid=@edge1\n    rightid=@edge2\n    authby=psk\n    leftsubnet=10.1.0.0/24\n    rightsubnet=10.2.0.0/24\n    mediated_by=medsrv\n    me_peerid=edge2\n    auto=start\n",
    );
    let t = import(&conf, None).unwrap().toml;
    carries_mediation(&t);
    assert!(!t.contains("[connections.medsrv.children"), "{t}");
}
