//! A TUN <-> UDP copy loop without crypto, for `bench/copy_loop.sh`.
//!
//! ```text
//! copy_loop --addr 10.96.1.1/24 --route 10.96.2.0/24 --bind 192.0.2.1:4500 \
//!           --peer 192.0.2.2:4500 [--tun NAME] [--mtu 1400] [--seconds 20] [--no-offload]
//! ```
//!
//! Runs for `--seconds`, then prints what the loop saw (packets per TUN read, datagrams
//! per GRO message) and exits; the TUN and its routes go with it.

#[path = "../tests/common/copy_loop.rs"]
mod copy_loop;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tun_io::{install_routes, Tun, TunConfig, UdpSocket};

struct Args {
    tun: String,
    mtu: u16,
    addr: ipnet::IpNet,
    routes: Vec<ipnet::IpNet>,
    bind: SocketAddr,
    peer: SocketAddr,
    seconds: u64,
    offload: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut tun, mut mtu, mut addr, mut routes) = ("esprit0".to_owned(), 1400, None, vec![]);
    let (mut bind, mut peer, mut seconds, mut offload) = (None, None, 20, true);
    while let Some(flag) = it.next() {
        if flag == "--no-offload" {
            offload = false;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--tun" => tun = v,
            "--mtu" => mtu = v.parse().map_err(|e| bad(&e))?,
            "--addr" => addr = Some(v.parse().map_err(|e| bad(&e))?),
            "--route" => routes.push(v.parse().map_err(|e| bad(&e))?),
            "--bind" => bind = Some(v.parse().map_err(|e| bad(&e))?),
            "--peer" => peer = Some(v.parse().map_err(|e| bad(&e))?),
            "--seconds" => seconds = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        tun,
        mtu,
        addr: addr.ok_or("--addr is required")?,
        routes,
        bind: bind.ok_or("--bind is required")?,
        peer: peer.ok_or("--peer is required")?,
        seconds,
        offload,
    })
}

fn run(a: Args) -> std::io::Result<String> {
    let mut cfg = TunConfig::new().name(&a.tun).mtu(a.mtu).offload(a.offload);
    cfg = match a.addr.addr() {
        IpAddr::V4(ip) => cfg.ipv4(ip, a.addr.prefix_len()),
        IpAddr::V6(ip) => cfg.ipv6(ip, a.addr.prefix_len()),
    };
    let tun = Tun::create(&cfg)?;
    let offloads = tun.offloads();
    let _routes = install_routes(&a.tun, &a.routes)?;
    let udp = UdpSocket::bind(a.bind)?;
    let gso = (udp.max_gso_segments(), udp.gro_segments());
    let lp = copy_loop::CopyLoop::start(tun, udp, a.peer)?;
    std::thread::sleep(Duration::from_secs(a.seconds));
    let summary = format!(
        "{}: offloads {offloads:?}, udp gso/gro segments {gso:?}; {}",
        a.tun,
        lp.stats.summary()
    );
    lp.stop()?;
    Ok(summary)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("copy_loop: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy_loop: {e}");
            ExitCode::FAILURE
        }
    }
}
