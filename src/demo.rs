//! `esprit demo`: esprit's main job on an embedded default. Two network namespaces joined
//! by a veth pair, certificates made on the spot, two esprit daemons negotiating a
//! tunnel between their inner subnets, then `status`, pings over IPv4 and IPv6 and a
//! throughput probe through the tunnel beside the same probe on the bare veth. Everything
//! it made goes away at the end, on failure and on Ctrl-C too.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esprit::testbed::esprit::{Auth, Child, Daemon, Side};
use esprit::testbed::{ping_stats, throughput, KeyKind, Netns, Pki, Topology};

/// How long the tunnel may take to come up.
const SETUP: Duration = Duration::from_secs(20);

/// Runs the demo; `seconds` is the length of each throughput probe.
pub(crate) fn run(seconds: u64) -> Result<(), String> {
    // SAFETY: plain syscall without arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the demo builds network namespaces and TUN devices and needs root: \
             sudo cargo run --release -- demo"
                .into(),
        );
    }
    preflight()?;
    let stop = Arc::new(AtomicBool::new(false));
    // Signals stay blocked in every thread; this one waits for them.
    let mask = block_signals()?;
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || demo(seconds, &stop))
    };
    wait_for_signal_or_exit(&mask, &stop, &worker);
    worker
        .join()
        .map_err(|_| "the demo panicked (everything was cleaned up)".to_string())?
}

/// What the demo needs from the kernel, checked first so that a missing piece is named
/// as such and never reported as a tunnel failure. It needs no program besides itself.
fn preflight() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| {
            format!(
                "/dev/net/tun: {e}: the demo needs the TUN device (load the `tun` module: \
                 modprobe tun; in a container, pass --device /dev/net/tun)"
            )
        })?;
    let probe = Netns::new("esprit-check").map_err(|e| {
        format!(
            "cannot make a network namespace: {e}\n(the demo needs root with \
             CAP_SYS_ADMIN and a kernel with network namespaces; in a container, run it \
             privileged)"
        )
    })?;
    drop(probe);
    Ok(())
}

fn demo(seconds: u64, stop: &AtomicBool) -> Result<(), String> {
    let step = |what: &str| -> Result<(), String> {
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted; cleaned up".into());
        }
        if !what.is_empty() {
            println!("==> {what}");
        }
        Ok(())
    };
    let e = |e: std::io::Error| e.to_string();
    let exe = std::env::current_exe().map_err(e)?;

    step("two network namespaces joined by a veth pair (192.0.2.1 <-> 192.0.2.2)")?;
    let topo = Topology::direct(true).map_err(e)?;
    let (ai, bi) = (topo.a_inner(), topo.b_inner());

    step("a CA and two ECDSA certificates, C=CN, O=Local Cluster, CN=site-a / site-b")?;
    let pki = Pki::new(KeyKind::EcdsaP256).map_err(e)?;
    let dir = topo.dir();
    let ca = pki.write_ca(dir).map_err(e)?;
    let mut sides = Vec::new();
    for (name, local, remote, me, peer) in [
        ("site-a", topo.a_addr(), Some(topo.b_addr_for_a()), ai, bi),
        ("site-b", topo.b_addr(), None, bi, ai),
    ] {
        let leaf = pki.issue(name, name).map_err(e)?;
        let (cert, key) = leaf.write(dir, name).map_err(e)?;
        let auth = Auth::Cert {
            cert,
            key,
            ca: ca.clone(),
        };
        let mut side = Side::new(local, remote, &leaf.dn, auth);
        let net = |i: esprit::testbed::Inner| [format!("{}/24", i.v4[0]), format!("{}/48", i.v6)];
        let (l, r) = (net(me), net(peer));
        let mut child = Child::new("net", &[&l[0], &l[1]], &[&r[0], &r[1]]);
        if remote.is_some() {
            child.start_action = "start".into();
        }
        side.children.push(child);
        sides.push((name, side));
    }

    step("two esprit daemons (site-a initiates)")?;
    let mut daemons = Vec::new();
    // The responder first, so that the initiator's first message finds it listening.
    sides.reverse();
    for ((name, side), ns) in sides.iter().zip([topo.b(), topo.a()]) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).map_err(e)?;
        println!("    {}: {}", name, d.join("esprit.toml").display());
        daemons.push(Daemon::start(&exe, ns, side, &d).map_err(e)?);
    }
    daemons.reverse();
    let t0 = Instant::now();
    let status = daemons[0].wait_child("net", SETUP).map_err(e)?;
    daemons[1].wait_child("net", SETUP).map_err(e)?;
    println!("    tunnel up in {} ms", t0.elapsed().as_millis());

    step("esprit status (site-a)")?;
    for line in status.to_string().lines() {
        println!("    {line}");
    }

    step("ping through the tunnel (ICMP echo from the demo's own socket)")?;
    for (what, addr) in [("IPv4", IpAddr::V4(bi.v4[0])), ("IPv6", IpAddr::V6(bi.v6))] {
        let p = ping_stats(topo.a(), addr, 3, Duration::from_secs(5))
            .map_err(|e| format!("the ping probe could not run (not a tunnel fault): {e}"))?;
        let src = inner_src(addr, &ai);
        if p.answered < 3 {
            println!(
                "    {what} {src} -> {addr}: {}/{} answered",
                p.answered, p.sent
            );
            return Err(format!(
                "the tunnel is up but carried only {} of {} echo requests to {addr}; \
                 site-a's log follows\n{}",
                p.answered,
                p.sent,
                daemons[0].log()
            ));
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let max = p.rtts.iter().max().copied().unwrap_or_default();
        let min = p.rtts.iter().min().copied().unwrap_or_default();
        println!(
            "    {what} {src} -> {addr}: 3/3 answered, rtt {:.2}-{:.2} ms",
            ms(min),
            ms(max)
        );
    }

    step(&format!("throughput, {seconds} s each (TCP, one stream)"))?;
    let d = Duration::from_secs(seconds);
    let veth = throughput(topo.a(), topo.b(), topo.b_addr(), 5201, d).map_err(e)?;
    println!("    bare veth:        {veth:6.2} Gbit/s");
    step("")?;
    let tun = throughput(topo.a(), topo.b(), IpAddr::V4(bi.v4[0]), 5202, d).map_err(e)?;
    println!(
        "    esprit (AES-GCM): {tun:6.2} Gbit/s = {:.2} of the veth in the same run",
        tun / veth
    );
    let after = daemons[0].status().map_err(e)?;
    if let Some(c) = after.ike_sas.first().and_then(|s| s.children.first()) {
        println!(
            "    child SA counters: out {} packets / {} bytes, in {} packets",
            c.packets_out, c.bytes_out, c.packets_in
        );
    }

    step("cleaning up (daemons delete their SAs at the peer, namespaces removed)")?;
    for mut d in daemons {
        let _ = d.proc.stop();
    }
    drop(topo);
    println!("done.");
    Ok(())
}

fn inner_src(addr: IpAddr, me: &esprit::testbed::Inner) -> String {
    match addr {
        IpAddr::V4(_) => me.v4[0].to_string(),
        IpAddr::V6(_) => me.v6.to_string(),
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts).
fn block_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: sigset_t is plain data; the calls only touch the set and this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("cannot block signals".into());
        }
        Ok(set)
    }
}

/// Waits until the worker ends; a SIGINT/SIGTERM meanwhile asks it to stop at its next
/// step, after which it cleans up as on any other exit.
fn wait_for_signal_or_exit(
    set: &libc::sigset_t,
    stop: &AtomicBool,
    worker: &std::thread::JoinHandle<Result<(), String>>,
) {
    let tick = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    while !worker.is_finished() {
        // SAFETY: `set` and `tick` are valid for the call; a null siginfo is allowed.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &tick) };
        if sig > 0 && !stop.swap(true, Ordering::Relaxed) {
            eprintln!("esprit demo: interrupted, cleaning up...");
        }
    }
}
