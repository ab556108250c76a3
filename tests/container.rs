//! esprit in a "container": a process without CAP_NET_ADMIN that cannot create a TUN
//! device, set an MTU or add a route. An init step (here: the test, as root) made a
//! persistent TUN device with its address route beforehand; the daemon attaches to it,
//! installs no route, and still carries traffic.
//!
//! Needs root (to build the namespaces and drop the capability with `setpriv`).

use std::net::IpAddr;
use std::time::Duration;

use esprit::testbed::esprit::{Auth, Child, Daemon, Side};
use esprit::testbed::{ping, tcp_transfer, Topology};

const EXE: &str = env!("CARGO_BIN_EXE_esprit");

/// Bit 12 of the capability sets is CAP_NET_ADMIN.
fn has_net_admin(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(eff, 16).unwrap() & (1 << 12) != 0
}

#[test]
fn daemon_without_cap_net_admin_attaches_to_a_prepared_tun() {
    let topo = Topology::direct(false).unwrap();
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let net = |ip: std::net::Ipv4Addr| {
        let o = ip.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    let (a_net, b_net) = (net(ai.v4[0]), net(bi.v4[0]));

    // The init step: a persistent device, up, routed, owned by nobody in particular.
    let a = topo.a();
    a.ip(&["tuntap", "add", "mode", "tun", "name", "esprit0"])
        .unwrap();
    a.ip(&["link", "set", "esprit0", "mtu", "1400", "up"])
        .unwrap();
    let src = ai.v4[0].to_string();
    a.ip(&["route", "add", &b_net, "dev", "esprit0", "src", &src])
        .unwrap();

    let psk = Auth::Psk("container secret, long enough".into());
    let mut sa = Side::new(
        topo.a_addr(),
        Some(topo.b_addr_for_a()),
        "a.example",
        psk.clone(),
    );
    let mut child = Child::new("net", &[&a_net], &[&b_net]);
    child.start_action = "start".into();
    sa.children.push(child);
    let mut sb = Side::new(topo.b_addr(), None, "b.example", psk);
    sb.children.push(Child::new("net", &[&b_net], &[&a_net]));

    let (da, db) = (topo.dir().join("a"), topo.dir().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let b = Daemon::start(EXE.as_ref(), topo.b(), &sb, &db).unwrap();
    let cfg = da.join("esprit.toml");
    std::fs::write(&cfg, sa.toml(&da)).unwrap();
    let a = Daemon::start_wrapped(
        &[
            "setpriv",
            "--bounding-set",
            "-net_admin",
            "--inh-caps",
            "-net_admin",
        ],
        EXE.as_ref(),
        topo.a(),
        &cfg,
        &da,
    )
    .unwrap();
    assert!(!has_net_admin(a.proc.pid()), "setpriv left CAP_NET_ADMIN");

    a.wait_child("net", Duration::from_secs(20)).unwrap();
    b.wait_child("net", Duration::from_secs(20)).unwrap();
    let log = a.log();
    assert!(
        log.contains("TUN esprit0") && log.contains("routes off"),
        "{log}"
    );

    assert!(
        ping(topo.a(), IpAddr::V4(bi.v4[0]), 3, Duration::from_secs(5)),
        "ping through the attached TUN failed\n{}",
        a.log()
    );
    let t = tcp_transfer(
        topo.a(),
        topo.b(),
        IpAddr::V4(bi.v4[0]),
        7001,
        8 << 20,
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(t.intact(), "{t:?}");
    // The device survives the daemon: it was made by someone else.
    drop(a);
    let links = topo.a().ip(&["link", "show", "esprit0"]).unwrap();
    assert!(links.contains("esprit0"), "{links}");
}

/// `esprit run --tun-fd N`: the daemon adopts a TUN descriptor it inherited (a CNI plugin
/// or an init process opened it and configured the device), issues no privileged ioctl,
/// installs no route, and carries traffic.
#[test]
fn daemon_adopts_an_inherited_tun_descriptor() {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::process::CommandExt;

    let topo = Topology::direct(false).unwrap();
    let (ai, bi) = (topo.a_inner(), topo.b_inner());
    let (a_net, b_net) = ("10.96.1.0/24", "10.96.2.0/24");
    assert_eq!(ai.v4[0].octets()[..3], [10, 96, 1]);

    // The "init process": a TUN queue without virtio header, opened inside a's namespace.
    let fd = topo
        .a()
        .enter(|| {
            let cfg = tun_io::TunConfig::new()
                .name("esprit0")
                .mtu(1400)
                .offload(false);
            let tun = tun_io::Tun::create(&cfg).unwrap();
            tun.as_fd().try_clone_to_owned().unwrap()
        })
        .unwrap();
    let src = ai.v4[0].to_string();
    topo.a()
        .ip(&["route", "add", b_net, "dev", "esprit0", "src", &src])
        .unwrap();

    let psk = Auth::Psk("descriptor secret, long enough".into());
    let mut sa = Side::new(
        topo.a_addr(),
        Some(topo.b_addr_for_a()),
        "a.example",
        psk.clone(),
    );
    let mut child = Child::new("net", &[a_net], &[b_net]);
    child.start_action = "start".into();
    sa.children.push(child);
    let mut sb = Side::new(topo.b_addr(), None, "b.example", psk);
    sb.children.push(Child::new("net", &[b_net], &[a_net]));
    let (da, db) = (topo.dir().join("a"), topo.dir().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let b = Daemon::start(EXE.as_ref(), topo.b(), &sb, &db).unwrap();
    let cfg = da.join("esprit.toml");
    std::fs::write(&cfg, sa.toml(&da)).unwrap();

    let log = std::fs::File::create(da.join("esprit.log")).unwrap();
    let mut cmd = topo.a().command(EXE);
    cmd.args(["run", "-c"])
        .arg(&cfg)
        .args(["--tun-fd", "3"])
        .env("RUST_LOG", "info,engine=debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let raw = fd.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; they give the child the queue as
    // descriptor 3 without close-on-exec, which `ip netns exec` passes on to esprit.
    // (When the queue already is descriptor 3, dup2 does nothing, not even clear the
    // flag, so that is done by hand.)
    unsafe {
        cmd.pre_exec(move || {
            let ok = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(raw, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let proc = esprit::testbed::Proc::spawn("esprit --tun-fd", &mut cmd)
        .unwrap()
        .with_log(&da.join("esprit.log"));
    // The daemon holds the queue now; the device lives as long as it does.
    drop(fd);
    let a = Daemon::adopt(proc, &cfg, &da).unwrap();

    a.wait_child("net", Duration::from_secs(20)).unwrap();
    b.wait_child("net", Duration::from_secs(20)).unwrap();
    let log = a.log();
    assert!(
        log.contains("TUN esprit0") && log.contains("routes off"),
        "{log}"
    );
    assert!(
        ping(topo.a(), IpAddr::V4(bi.v4[0]), 3, Duration::from_secs(5)),
        "ping through the adopted descriptor failed\n{}",
        a.log()
    );
}
