//! Routes through the TUN via netlink, in a namespace of our own.

mod common;

use common::*;
use tun_io::routes::install_routes_in;
use tun_io::{install_routes, Tun, TunConfig};

#[test]
fn installs_and_removes_v4_and_v6_routes_in_main_and_custom_tables() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("rt");
    let ns_name = ns.name.clone();
    let show = move |args: &[&str]| {
        let mut v = vec!["ip", "-n", &ns_name];
        v.extend_from_slice(args);
        sh(&v)
    };
    let (tun, main, custom) = ns.run(|| {
        let tun = Tun::create(&TunConfig::new().name("tio0")).unwrap();
        let nets = [
            "10.96.2.0/24".parse().unwrap(),
            "fd00:96:2::/64".parse().unwrap(),
        ];
        let mut main = install_routes("tio0", &nets).unwrap();
        // Host bits are ignored; tables past 255 work.
        let custom = install_routes_in("tio0", &["10.96.3.77/24".parse().unwrap()], 1000).unwrap();
        assert_eq!(custom.routes(), vec!["10.96.3.0/24".parse().unwrap()]);
        // Installing again replaces rather than fails, and is held once.
        main.add(nets[0]).unwrap();
        assert_eq!(main.routes().len(), 2);
        (tun, main, custom)
    });
    assert!(show(&["route", "show"]).contains("10.96.2.0/24 dev tio0"));
    assert!(show(&["-6", "route", "show"]).contains("fd00:96:2::/64 dev tio0"));
    assert!(show(&["route", "show", "table", "1000"]).contains("10.96.3.0/24 dev tio0"));

    // Dropped on this thread (outside the namespace): the guard's socket still points there.
    drop(main);
    custom.remove().unwrap();
    assert!(!show(&["route", "show"]).contains("10.96.2.0/24"));
    assert!(!show(&["-6", "route", "show"]).contains("fd00:96:2::"));
    assert!(!show(&["route", "show", "table", "1000"]).contains("10.96.3.0/24"));

    // Unknown devices are an error, not a panic.
    let err =
        ns.run(|| install_routes("nosuchdev", &["10.9.0.0/16".parse().unwrap()]).unwrap_err());
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    drop(tun);
}
