//! `esprit run`: the daemon. One tokio task (on the main thread) drives `ike::Endpoint`
//! over the IKE sockets, the control socket, timers and signals; two dataplane threads
//! move ESP between the TUN device and the NAT-T sockets (see [`crate::dataplane`]).
//!
//! ESP is always UDP-encapsulated on the NAT-T port (RFC 3948), also without a NAT, as
//! strongSwan's kernel-libipsec does: raw ESP (IP protocol 50) would need a raw socket,
//! which a container without `CAP_NET_RAW` cannot have. Every standard peer accepts it,
//! since we announce a NAT through the NAT-detection payloads.

mod devices;
mod mediation;
mod mediation_book;
mod metrics;
mod pools;
mod relay;
mod routes;
mod sas;
mod updown;

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike::crypto::SystemRng;
use ike::endpoint::Endpoint;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tun_io::{AsyncUdpSocket, PacketDevice, Tun, TunConfig, UdpRecvBatch, UdpSocket};

use crate::config::{self, ConfigError, ConfigFile, Resolved};
use crate::control::{Answer, ControlSocket, Pending, Request, Response};
use crate::dataplane::{
    Dataplane, DpEvent, InCmd, InStats, NattSockets, OutCmd, OutStats, MAIN_DEV,
};
use crate::metrics::http::Ask;
use crate::netstack::Netstack;
use crate::status::{
    ChildSaStatus, ConnectionStatus, Counters, IkeSaStatus, LeaseStatus, MediatedPath,
    MediationStatus, PoolStatus, RegisteredPeer, RelayStatus, Status, StatusWriter, Summary,
};
use relay::RelayDrop;
use routes::OsRoutes;
use sas::Sas;

/// How long the updown hooks get to finish at exit.
const UPDOWN_GRACE: Duration = Duration::from_secs(3);

/// How `esprit run` was asked to start.
#[derive(Debug)]
pub struct RunOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// An already open TUN descriptor to adopt (`--tun-fd`).
    pub tun_fd: Option<OwnedFd>,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A system resource could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    let file = config::read(&opts.config)?;
    let cfg = config::resolve(&opts.config, &file)?;
    unblock_signals();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting the runtime"))?;
    let running = Running {
        path: opts.config.clone(),
        file,
    };
    rt.block_on(serve(cfg, opts, running))
}

/// The configuration file the daemon runs on, as last loaded, for `reload`.
struct Running {
    path: PathBuf,
    file: ConfigFile,
}

/// `esprit reload` and SIGHUP: reads the file again and applies it (see
/// [`Sas::reload`]). A file that does not load changes nothing; the error names its
/// file, key and reason.
async fn reload(st: &mut Sas, running: &mut Running, now: Instant) -> Result<String, String> {
    if st.closing {
        return Err("shutting down: no reload".into());
    }
    let rejected =
        |e: ConfigError| format!("reload rejected, the running configuration stays: {e}");
    let file = config::read(&running.path).map_err(rejected)?;
    let new = config::resolve(&running.path, &file).map_err(rejected)?;
    let changed: HashSet<String> = file
        .connections
        .iter()
        .filter(|(name, c)| {
            running
                .file
                .connections
                .get(*name)
                .is_some_and(|old| old != *c)
        })
        .map(|(name, _)| name.clone())
        .collect();
    let mut notes: Vec<String> = Vec::new();
    // Sockets and the TUN device are set up once; they would need a restart.
    if file.netstack != running.file.netstack || file.pipes != running.file.pipes {
        notes.push("[netstack]/[pipes] changed: takes effect at the next restart".into());
    }
    if file.daemon != running.file.daemon {
        notes.push("[daemon] changed: takes effect at the next restart".into());
    }
    if file.tun != running.file.tun {
        notes.push("[tun] changed: takes effect at the next restart".into());
    }
    // Route-based devices before the connections start: a new one binds to its device.
    for (conn, e) in st.devices.sync(&st.dp, &new.connections).await {
        tracing::error!("{conn}: {e}; the connection stays down");
        notes.push(format!("{conn}: {e}; the connection stays down"));
    }
    if file.metrics != running.file.metrics {
        notes.push("[metrics] changed: takes effect at the next restart".into());
    }
    // Pools first: a connection that names a new pool finds it.
    pools::load(&mut st.ep, &new.pools);
    if file.pools != running.file.pools && !new.pools.is_empty() && st.netstack.is_none() {
        pools::enable_forwarding(&st.tun_name, &new.pools);
    }
    let sum = st.reload(now, new.connections, &changed);
    running.file.pools = file.pools;
    running.file.connections = file.connections;
    running.file.secrets = file.secrets;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(" ")
        }
    };
    let mut msg = format!(
        "reloaded {}: added {}, removed {}, replaced {}, unchanged {}",
        running.path.display(),
        list(&sum.added),
        list(&sum.removed),
        list(&sum.replaced),
        list(&sum.unchanged)
    );
    for n in notes {
        msg.push_str("; ");
        msg.push_str(&n);
    }
    Ok(msg)
}

/// A parent may hand down SIGINT/SIGTERM/SIGHUP blocked (the mask survives exec);
/// shutdown and reload depend on them, so take them back.
fn unblock_signals() {
    // SAFETY: sigset_t is plain data; the calls only change this thread's mask, before
    // any other thread exists.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// The TUN device: adopted, attached or created.
fn open_tun(cfg: &Resolved, fd: Option<OwnedFd>) -> Result<(Tun, bool), RunError> {
    if let Some(fd) = fd {
        let tun = Tun::from_fd(fd).map_err(io_err("adopting the TUN descriptor"))?;
        return Ok((tun, false));
    }
    let config = TunConfig::new().name(&cfg.tun.name).mtu(cfg.tun.mtu);
    match Tun::create(&config) {
        Ok(t) => Ok((t, true)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // No CAP_NET_ADMIN: a persistent device made for us beforehand still works.
            let t = Tun::attach(&cfg.tun.name, false).map_err(io_err(format!(
                "creating TUN {} (no CAP_NET_ADMIN?) and attaching to it",
                cfg.tun.name
            )))?;
            Ok((t, false))
        }
        Err(e) => Err(io_err(format!("creating TUN {}", cfg.tun.name))(e)),
    }
}

/// Binds `port` on the IPv4 and IPv6 wildcard; a family the namespace lacks is skipped.
fn bind_pair(port: u16, buffer: usize) -> Result<(Option<UdpSocket>, Option<UdpSocket>), RunError> {
    let bind = |ip: IpAddr| UdpSocket::bind_with(SocketAddr::new(ip, port), buffer);
    let v4 = bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .map_err(io_err(format!("binding UDP port {port} (IPv4)")))?;
    let v6 = match bind(IpAddr::V6(Ipv6Addr::UNSPECIFIED)) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no IPv6 on UDP port {port}: {e}");
            None
        }
    };
    Ok((Some(v4), v6))
}

struct Io {
    ike4: Option<AsyncUdpSocket>,
    ike6: Option<AsyncUdpSocket>,
    b4: UdpRecvBatch,
    b6: UdpRecvBatch,
    natt: NattSockets,
    port_nat_t: u16,
    keepalives_sent: u64,
}

async fn recv_opt(sock: &Option<AsyncUdpSocket>, batch: &mut UdpRecvBatch) -> io::Result<usize> {
    match sock {
        Some(s) => s.recv_batch(batch).await,
        None => std::future::pending().await,
    }
}

/// The next question of the metrics endpoint; never, without one.
async fn recv_ask(rx: &mut Option<mpsc::Receiver<Ask>>) -> Option<Ask> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Binds the metrics endpoint when `[metrics] listen` is set and serves it on this
/// runtime; the receiver gets its questions.
async fn start_metrics(cfg: &Resolved) -> Result<Option<mpsc::Receiver<Ask>>, RunError> {
    let Some(m) = &cfg.metrics else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(m.listen)
        .await
        .map_err(io_err(format!("binding the metrics endpoint {}", m.listen)))?;
    let (tx, rx) = mpsc::channel(16);
    crate::metrics::http::spawn(listener, tx);
    tracing::info!("metrics on http://{}/metrics", m.listen);
    Ok(Some(rx))
}

async fn serve(cfg: Resolved, opts: RunOptions, mut running: Running) -> Result<(), RunError> {
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    // With a netstack there is no TUN device: nothing privileged at all.
    let (main_dev, tun_name, install_routes, netstack) = match &cfg.netstack {
        Some(plan) => {
            let (ns, dev) =
                Netstack::start(plan, &cfg.pipes).map_err(io_err("starting the netstack"))?;
            let addrs: Vec<String> = plan.addrs.iter().map(|a| a.to_string()).collect();
            tracing::info!(
                "netstack (no TUN): mtu {}, addresses {}, {} pipe(s)",
                plan.mtu,
                if addrs.is_empty() {
                    "from the peer (virtual IPs)".to_string()
                } else {
                    addrs.join(" ")
                },
                cfg.pipes.len()
            );
            let dev: Box<dyn PacketDevice> = Box::new(dev);
            (dev, "netstack".to_string(), false, Some(ns))
        }
        None => {
            let (tun, created) = open_tun(&cfg, opts.tun_fd)?;
            let install_routes = cfg.tun.install_routes.unwrap_or(created);
            let tun_name = tun.name().to_string();
            tracing::info!(
                "TUN {tun_name}: mtu {}, offloads {:?}, routes {}",
                cfg.tun.mtu,
                tun.offloads(),
                if install_routes { "on" } else { "off" }
            );
            let dev: Box<dyn PacketDevice> = Box::new(tun);
            (dev, tun_name, install_routes, None)
        }
    };
    let (ike4, ike6) = bind_pair(cfg.daemon.port, cfg.daemon.socket_buffer)?;
    let (n4, n6) = bind_pair(cfg.daemon.port_nat_t, cfg.daemon.socket_buffer)?;
    let natt = NattSockets {
        v4: n4.map(Arc::new),
        v6: n6.map(Arc::new),
    };
    let to_async = |s: Option<UdpSocket>| -> Result<Option<AsyncUdpSocket>, RunError> {
        s.map(|s| s.into_async().map_err(io_err("registering the IKE socket")))
            .transpose()
    };
    let mut io = Io {
        ike4: to_async(ike4)?,
        ike6: to_async(ike6)?,
        b4: UdpRecvBatch::new(4),
        b6: UdpRecvBatch::new(4),
        natt: natt.clone(),
        port_nat_t: cfg.daemon.port_nat_t,
        keepalives_sent: 0,
    };
    let (dp_tx, mut dp_rx) = mpsc::channel(crate::dataplane::EVENT_QUEUE);
    let dp = Dataplane::start(main_dev, natt, dp_tx).map_err(io_err("starting the dataplane"))?;
    let routes = OsRoutes::new(&tun_name, install_routes)
        .map_err(io_err(format!("opening netlink for routes via {tun_name}")))?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Pending>(16);
    let _control =
        ControlSocket::bind(&cfg.daemon.control_socket, ctl_tx).map_err(io_err(format!(
            "binding the control socket {}",
            cfg.daemon.control_socket.display()
        )))?;
    let mut metrics_rx = start_metrics(&cfg).await?;
    let mut ep = Endpoint::new(
        cfg.ike_config(),
        Box::new(SystemRng::new()),
        (Instant::now(), SystemTime::now()),
    );
    for p in &cfg.connections {
        ep.add_connection(p.conn.clone());
    }
    pools::load(&mut ep, &cfg.pools);
    if !cfg.pools.is_empty() && netstack.is_none() {
        pools::enable_forwarding(&tun_name, &cfg.pools);
    }
    let mut st = Sas::new(ep, cfg.connections.clone(), dp, routes, tun_name.clone());
    st.shutdown_grace = cfg.daemon.shutdown_grace;
    if let Some(ns) = &netstack {
        st.vips.use_netstack(ns.handle());
        st.netstack = Some(ns.handle());
    }
    if let Some((conn, e)) = st.devices.sync(&st.dp, &st.plans).await.into_iter().next() {
        return Err(io_err(format!("connection {conn}: route-based device"))(e));
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("installing SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("installing SIGINT"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(io_err("installing SIGHUP"))?;
    tracing::info!(
        "esprit running: IKE on UDP {}/{}, control socket {}, {} connection(s)",
        cfg.daemon.port,
        cfg.daemon.port_nat_t,
        cfg.daemon.control_socket.display(),
        cfg.connections.len()
    );
    let keepalive = cfg.daemon.keepalive;
    // "0s" turns keepalives off (it used to make them due on every loop pass: a storm
    // of keepalives and a busy control thread).
    let mut next_keepalive = (!keepalive.is_zero()).then(|| Instant::now() + keepalive);
    let mut deadline_shutdown: Option<Instant> = None;
    let mut device_gone: Option<io::Error> = None;
    st.start(Instant::now());
    loop {
        flush(&mut st, &mut io, Instant::now()).await;
        if let Some(d) = deadline_shutdown {
            if st.ike_count() == 0 || Instant::now() >= d {
                break;
            }
        }
        let mut wake = [st.ep.poll_timeout(), st.next_timer(), next_keepalive]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        if let Some(d) = deadline_shutdown {
            wake = wake.min(d);
        }
        // In this order (biased): signals and the control socket (rare, and an
        // operator must get an answer under any load), due timers, then messages of
        // SAs under way (port 4500, from the packet thread's queue), and only then new
        // IKE_SA_INIT requests on port 500. A burst of thousands of
        // peers thus finishes the handshakes it started before it starts more: the
        // queue from the packet thread holds at most the IKE_AUTH requests of the
        // answered IKE_SA_INITs, and the rest of the burst waits in port 500's socket
        // buffer ([daemon] socket_buffer) instead of overflowing that queue (issue
        // 22: at 30,000 peers about a hundred IKE_AUTH requests were dropped).
        tokio::select! {
            biased;
            _ = sigterm.recv(), if deadline_shutdown.is_none() => {
                deadline_shutdown = Some(begin_shutdown(&mut st, "SIGTERM"));
            }
            _ = sigint.recv(), if deadline_shutdown.is_none() => {
                deadline_shutdown = Some(begin_shutdown(&mut st, "SIGINT"));
            }
            _ = sighup.recv(), if deadline_shutdown.is_none() => {
                match reload(&mut st, &mut running, Instant::now()).await {
                    Ok(msg) => tracing::info!("SIGHUP: {msg}"),
                    Err(e) => tracing::error!("SIGHUP: {e}"),
                }
            }
            Some((req, reply)) = ctl_rx.recv() => {
                command(&mut st, &io, &mut running, req, reply).await;
            }
            Some(ask) = recv_ask(&mut metrics_rx) => match ask {
                Ask::Alive(reply) => {
                    let _ = reply.send(());
                }
                Ask::Snapshot(reply) => {
                    let _ = reply.send(metrics::snapshot(&mut st, &io).await);
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                st.ep.handle_timeout(now);
                st.run_timers(now);
                if next_keepalive.is_some_and(|k| now >= k) {
                    next_keepalive = Some(now + keepalive);
                    for (local, remote) in st.keepalive_targets() {
                        send_natt(&mut io, local, remote, &esp::natt::NAT_KEEPALIVE);
                        io.keepalives_sent += 1;
                    }
                    // A relayed SA's bind again: if our NAT moved our flow to a new
                    // port, the relay follows it (flushed with the other transmits).
                    st.ep.send_relay_binds();
                }
            }
            Some(ev) = dp_rx.recv() => {
                // A batch per wake-up: one flush (events, inbound barrier, sends) serves
                // many IKE messages, so a burst of thousands of peers costs the loop's
                // fixed work once per batch, not once per message.
                let now = Instant::now();
                let mut next = Some(ev);
                let mut n = 0;
                while let Some(ev) = next {
                    if let Some(error) = on_dp_event(&mut st, now, ev, &tun_name) {
                        if deadline_shutdown.is_none() {
                            deadline_shutdown = Some(begin_shutdown(&mut st, "TUN gone"));
                        }
                        device_gone = Some(error);
                    }
                    n += 1;
                    next = if n < DP_BATCH { dp_rx.try_recv().ok() } else { None };
                }
            }
            r = recv_opt(&io.ike4, &mut io.b4) => {
                if r.is_ok() {
                    handle_ike(&mut st, &io.b4, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                }
            }
            r = recv_opt(&io.ike6, &mut io.b6) => {
                if r.is_ok() {
                    handle_ike(&mut st, &io.b6, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                }
            }
        }
    }
    let left = st.ike_count();
    if left > 0 {
        tracing::warn!("{left} IKE SA(s) not confirmed deleted by their peers");
    }
    let Sas {
        dp,
        routes,
        updown,
        mut vips,
        ..
    } = st;
    vips.clear();
    dp.stop();
    drop(netstack);
    drop(routes);
    updown.finish(UPDOWN_GRACE);
    tracing::info!("esprit stopped");
    match device_gone {
        Some(e) => Err(io_err(format!(
            "TUN {tun_name} disappeared under the daemon (deleted?)"
        ))(e)),
        None => Ok(()),
    }
}

/// Dataplane events handled per wake-up of the control task at most, so timers, the
/// IKE sockets and the control socket get their turn during a burst.
const DP_BATCH: usize = 256;

/// Handles one event of the packet threads; the main device's error when it is gone.
fn on_dp_event(st: &mut Sas, now: Instant, ev: DpEvent, tun_name: &str) -> Option<io::Error> {
    match ev {
        DpEvent::Ike {
            local,
            remote,
            data,
        } => st.ep.handle(now, local, remote, &data),
        DpEvent::Acquire { trap } => st.on_acquire(now, trap),
        DpEvent::SoftExpired { spi, inbound } => st.on_soft_expired(now, spi, inbound),
        DpEvent::DeviceGone { dev, error } if dev == MAIN_DEV => {
            // The TUN was deleted under us (`ip link del`): without it no packet can be
            // tunnelled, and a new device would not carry the routes and addresses
            // others put on the old one. Exit with an error saying so (a supervisor
            // restarts the daemon), deleting the SAs at the peers first.
            tracing::error!("TUN {tun_name} is gone ({error}): was it deleted? Exiting");
            return Some(error);
        }
        DpEvent::DeviceGone { dev, error } => {
            tracing::error!("route-based device {dev} is gone ({error}): its traffic stops");
        }
    }
    None
}

/// Passes received IKE datagrams to the endpoint, each with the local address it was
/// sent to (`wildcard` when the kernel did not say).
fn handle_ike(st: &mut Sas, batch: &UdpRecvBatch, wildcard: IpAddr) {
    let now = Instant::now();
    for d in batch.iter() {
        let local = SocketAddr::new(d.dst_ip.unwrap_or(wildcard), d.local_port);
        st.ep.handle(now, local, d.src, d.data);
    }
}

/// The wait for the peers' answers to a shutdown's deletes: `[daemon] shutdown_grace`
/// plus 3 s per 10,000 IKE SAs, since sending the deletes and handling the answers
/// takes both sides time for each, and a delete lost in a full queue is retransmitted
/// after 2 s (measured on two heavily shared cores: 50,000 SAs about 9 s; 100,000
/// took 30-36 s, and a few dozen were still unconfirmed when the grace ran out). The
/// daemon exits as soon as every peer has answered.
fn shutdown_grace(base: Duration, ike_sas: usize) -> Duration {
    base + Duration::from_micros(ike_sas as u64 * 300)
}

fn begin_shutdown(st: &mut Sas, why: &str) -> Instant {
    let grace = shutdown_grace(st.shutdown_grace, st.ike_count());
    tracing::info!(
        "{why}: deleting {} IKE SA(s) at the peers and stopping (waiting up to {:.1} s)",
        st.ike_count(),
        grace.as_secs_f64()
    );
    st.closing = true;
    st.ep.shutdown(Instant::now());
    Instant::now() + grace
}

/// Applies ike's events, then sends what it queued.
async fn flush(st: &mut Sas, io: &mut Io, now: Instant) {
    // Events first: an inbound SA is queued for the inbound thread before the message
    // that completes its negotiation leaves, and the thread applies its queue after
    // every read, before the datagrams read, so the peer's first ESP packet finds it.
    st.drain_events(now);
    while let Some(t) = st.ep.poll_transmit() {
        if t.local.port() == io.port_nat_t {
            let mut framed = Vec::with_capacity(4 + t.data.len());
            framed.extend_from_slice(&esp::natt::NON_ESP_MARKER);
            framed.extend_from_slice(&t.data);
            send_natt(io, t.local, t.remote, &framed);
        } else {
            let sock = if t.remote.is_ipv4() {
                io.ike4.as_ref()
            } else {
                io.ike6.as_ref()
            };
            let src = Some(t.local.ip()).filter(|ip| !ip.is_unspecified());
            match sock {
                Some(s) => {
                    if let Err(e) = s.send_to(&t.data, t.remote, src).await {
                        tracing::debug!("IKE send to {} failed: {e}", t.remote);
                    }
                }
                None => tracing::debug!("no socket for {}", t.remote),
            }
        }
    }
    // Handling events may queue more (e.g. a deferred child's CREATE_CHILD_SA).
    st.drain_events(now);
}

fn send_natt(io: &mut Io, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
    let src = Some(local.ip()).filter(|ip| !ip.is_unspecified());
    match io.natt.for_peer(&remote) {
        Some(s) => {
            if let Err(e) = s.send_to(data, remote, src) {
                tracing::debug!("NAT-T send to {remote} failed: {e}");
            }
        }
        None => tracing::debug!("no NAT-T socket for {remote}"),
    }
}

async fn command(
    st: &mut Sas,
    io: &Io,
    running: &mut Running,
    req: Request,
    reply: oneshot::Sender<Answer>,
) {
    if let Request::Status = req {
        let (tx, rx) = mpsc::channel(STATUS_PIECES);
        if reply.send(Answer::Stream(rx)).is_ok() {
            stream_status(st, io, tx).await;
        }
        return;
    }
    let _ = reply.send(Answer::Whole(answer(st, io, running, req).await));
}

async fn answer(st: &mut Sas, io: &Io, running: &mut Running, req: Request) -> Response {
    let now = Instant::now();
    match req {
        Request::Status | Request::Summary => {
            let (out, inb) = dataplane_stats(st).await;
            Response::Status(Box::new(status_rest(st, io, out, inb)))
        }
        Request::Initiate { conn, child } => match st.initiate(now, &conn, child.as_deref()) {
            Ok(()) => Response::Ok {
                message: format!("initiating {conn}"),
            },
            Err(message) => Response::Error { message },
        },
        Request::Terminate { conn } => match st.terminate(now, &conn) {
            Ok(()) => Response::Ok {
                message: format!("terminating {conn}"),
            },
            Err(message) => Response::Error { message },
        },
        Request::Reload => match reload(st, running, now).await {
            Ok(message) => {
                tracing::info!("{message}");
                Response::Ok { message }
            }
            Err(message) => {
                tracing::error!("{message}");
                Response::Error { message }
            }
        },
        Request::Rekey { conn, child, ike } => match st.rekey(now, &conn, child.as_deref(), ike) {
            Ok(message) => Response::Ok { message },
            Err(message) => Response::Error { message },
        },
    }
}

fn hex_spi(spi: u32) -> String {
    format!("{spi:08x}")
}

/// Both dataplane threads' counters, each `None` when its thread did not answer within
/// 2 s.
async fn dataplane_stats(st: &Sas) -> (Option<OutStats>, Option<InStats>) {
    let (otx, orx) = oneshot::channel();
    let (itx, irx) = oneshot::channel();
    st.dp.out.send(OutCmd::Stats(otx));
    st.dp.inb.send(InCmd::Stats(itx));
    let wait = Duration::from_secs(2);
    let out = tokio::time::timeout(wait, orx)
        .await
        .ok()
        .and_then(Result::ok);
    let inb = tokio::time::timeout(wait, irx)
        .await
        .ok()
        .and_then(Result::ok);
    (out, inb)
}

/// Pieces of a status line waiting for the socket at most (each about
/// [`crate::status::STATUS_PIECE`] bytes).
const STATUS_PIECES: usize = 4;
/// How long the status stream waits for its reader to take a piece before it gives up
/// on it (the reader gets a cut-off line): the control task waits meanwhile.
const STATUS_STALL: Duration = Duration::from_secs(2);

/// Sends the status report down `tx` as one JSON line in pieces, one IKE SA at a time
/// (no whole report, no whole text): the memory it takes is bounded by the pieces in
/// flight, and it is given back when the call ends.
async fn stream_status(st: &mut Sas, io: &Io, tx: mpsc::Sender<Vec<u8>>) {
    let (mut out, mut inb) = dataplane_stats(st).await;
    // Sorted by SPI for a binary search per child (a linear search per child made the
    // report quadratic: 1.5 s at 30,000 SAs).
    let out_sas = out.as_mut().map(|s| sorted(std::mem::take(&mut s.sas)));
    let in_sas = inb.as_mut().map(|s| sorted(std::mem::take(&mut s.sas)));
    let now = Instant::now();
    let mut w = StatusWriter::new();
    for id in st.ep.ike_sa_ids() {
        let Some(sa) = st.ep.ike_sa(id) else { continue };
        let sa = ike_sa_status(st, now, sa, in_sas.as_deref(), out_sas.as_deref());
        if let Some(piece) = w.push(&sa) {
            if !send_piece(&tx, piece).await {
                return;
            }
        }
    }
    let rest = status_rest(st, io, out, inb);
    send_piece(&tx, w.finish(&rest)).await;
}

async fn send_piece(tx: &mpsc::Sender<Vec<u8>>, piece: Vec<u8>) -> bool {
    match tokio::time::timeout(STATUS_STALL, tx.send(piece)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!("status: the reader took no data for {STATUS_STALL:?}; cut off");
            false
        }
    }
}

fn sorted(mut v: Vec<(u32, esp::SaStats)>) -> Vec<(u32, esp::SaStats)> {
    v.sort_unstable_by_key(|(spi, _)| *spi);
    v
}

fn sa_stats(list: Option<&[(u32, esp::SaStats)]>, spi: u32) -> esp::SaStats {
    list.and_then(|l| {
        l.binary_search_by_key(&spi, |(s, _)| *s)
            .ok()
            .map(|i| l[i].1)
    })
    .unwrap_or_default()
}

/// One IKE SA of the status report, with its children's counters.
fn ike_sa_status(
    st: &Sas,
    now: Instant,
    sa: ike::endpoint::IkeSaInfo,
    inb: Option<&[(u32, esp::SaStats)]>,
    out: Option<&[(u32, esp::SaStats)]>,
) -> IkeSaStatus {
    let secs_since = |t: Instant| now.saturating_duration_since(t).as_secs();
    let secs_until = |t: Instant| t.saturating_duration_since(now).as_secs();
    IkeSaStatus {
        id: sa.id.0,
        state: sa.state.to_string(),
        initiator: sa.initiator,
        spi_i: format!("{:016x}", sa.spi_i),
        spi_r: format!("{:016x}", sa.spi_r),
        local_addr: format!("{}[{}]", sa.local.ip(), sa.local.port()),
        remote_addr: format!("{}[{}]", sa.remote.ip(), sa.remote.port()),
        proposal: sa.suite.map(|s| s.to_string()),
        nat_local: sa.nat.local_behind,
        nat_remote: sa.nat.remote_behind,
        nat_fake: sa.nat.fake,
        established_secs: sa.established.map(secs_since),
        rekey_in_secs: sa.rekey_at.map(secs_until),
        mediation: sa.mediation.is_some(),
        server_reflexive: sa
            .mediation
            .flatten()
            .map(|a| format!("{}[{}]", a.ip(), a.port())),
        local_vips: sa.local_vips.iter().map(|a| a.to_string()).collect(),
        remote_vips: sa.remote_vips.iter().map(|a| a.to_string()).collect(),
        dns: sa.dns.iter().map(|a| a.to_string()).collect(),
        children: sa
            .children
            .into_iter()
            .map(|c| {
                let i = sa_stats(inb, c.spi_in);
                let o = sa_stats(out, c.spi_out);
                ChildSaStatus {
                    state: st.child_state(c.spi_in).to_string(),
                    spi_in: hex_spi(c.spi_in),
                    spi_out: hex_spi(c.spi_out),
                    proposal: c.suite.to_string(),
                    encap: true,
                    bytes_in: i.bytes,
                    packets_in: i.packets,
                    bytes_out: o.bytes,
                    packets_out: o.packets,
                    local_ts: c.local_ts.iter().map(ike::ts::display).collect(),
                    remote_ts: c.remote_ts.iter().map(ike::ts::display).collect(),
                    installed_secs: secs_since(c.established),
                    rekey_in_secs: c.rekey_at.map(secs_until),
                    name: c.name,
                }
            })
            .collect(),
        conn: sa.conn,
        local_id: sa.local_id,
        remote_id: sa.remote_id,
    }
}

/// Everything of the status report but the IKE SAs (counted in `summary`).
fn status_rest(st: &Sas, io: &Io, out: Option<OutStats>, inb: Option<InStats>) -> Status {
    let census = st.ep.census();
    let state = |name: &str| {
        ike::endpoint::STATE_NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| census.ike_sas[i])
    };
    let summary = Summary {
        ike_sas: census.ike_sas.iter().sum(),
        established: state("ESTABLISHED") + state("REKEYING"),
        child_sas: census.child_sas,
    };
    let connections = st
        .plans
        .iter()
        .map(|p| ConnectionStatus {
            name: p.conn.name.clone(),
            last_error: st.failures.get(&p.conn.name).cloned(),
        })
        .collect();
    let pools = st
        .ep
        .pools()
        .map(|p| PoolStatus {
            name: p.name().to_string(),
            first: p.first().to_string(),
            last: p.last().to_string(),
            size: p.size(),
            online: p.online(),
            offline: p.offline(),
            dns: p.dns().iter().map(|a| a.to_string()).collect(),
            leases: p
                .leases()
                .into_iter()
                .map(|l| LeaseStatus {
                    addr: l.addr.to_string(),
                    identity: l.identity.to_string(),
                    online: l.online,
                })
                .collect(),
        })
        .collect();
    let ike = st.ep.stats();
    let addr = |a: SocketAddr| format!("{}[{}]", a.ip(), a.port());
    let mediation = MediationStatus {
        registered_peers: st
            .ep
            .mediation_peers()
            .into_iter()
            .map(|(id, ike)| RegisteredPeer { id, ike: ike.0 })
            .collect(),
        paths: st
            .med
            .paths
            .iter()
            .map(|(conn, (ike, local, remote, relayed))| MediatedPath {
                conn: conn.clone(),
                ike: ike.0,
                path: if *relayed { "relayed" } else { "direct" }.into(),
                local_addr: addr(*local),
                remote_addr: addr(*remote),
            })
            .collect(),
        relays: st
            .med
            .relays
            .live()
            .map(|r| {
                let bound = r.bound.lock().map(|b| *b).unwrap_or_default();
                let c = &r.counters;
                let load =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                RelayStatus {
                    connect_id: r.connect_id.clone(),
                    peers: r.peers.to_vec(),
                    addr: addr(r.addr),
                    bound: bound
                        .iter()
                        .map(|b| b.map(addr).unwrap_or_default())
                        .collect(),
                    packets: load(&c.packets),
                    bytes: load(&c.bytes),
                    binds: load(&c.binds),
                    dropped_unbound: c.dropped(RelayDrop::UnknownSource)
                        + c.dropped(RelayDrop::PeerUnbound)
                        + c.dropped(RelayDrop::BadToken),
                    dropped_over_rate: c.dropped(RelayDrop::OverRate),
                    dropped_send_error: c.dropped(RelayDrop::SendError),
                }
            })
            .collect(),
    };
    let pipes = st
        .netstack
        .as_ref()
        .map(|n| n.pipes_snapshot())
        .unwrap_or_default();
    Status {
        ike_sas: Vec::new(),
        summary,
        connections,
        mediation,
        pools,
        pipes,
        counters: Counters {
            outbound: serde_json::to_value(out.unwrap_or_default()).unwrap_or_default(),
            inbound: serde_json::to_value(inb.unwrap_or_default()).unwrap_or_default(),
            ike: serde_json::json!({
                "malformed": ike.malformed,
                "unknown_spi": ike.unknown_spi,
                "integrity": ike.integrity,
                "unexpected": ike.unexpected,
                "overloaded": ike.overloaded,
                "source_limited": ike.source_limited,
                "cookies_sent": ike.cookies_sent,
                "retransmits": ike.retransmits,
                "replaced_ike_sas": ike.replaced,
                "refused_closing": ike.refused_closing,
                "handshakes": ike.handshakes,
                "handshake_failures": ike::endpoint::DownReason::NAMES
                    .iter()
                    .zip(ike.handshake_failures)
                    .filter(|(_, n)| *n > 0)
                    .map(|(name, n)| (name.to_string(), serde_json::Value::from(n)))
                    .collect::<serde_json::Map<_, _>>(),
                "ike_rekeys": ike.ike_rekeys,
                "child_rekeys": ike.child_rekeys,
                "dpd_checks": ike.dpd_checks,
                "dpd_timeouts": ike.dpd_timeouts,
                "invalid_spi_sent": ike.invalid_spi_sent,
                "invalid_spi_hints": ike.invalid_spi_hints,
            }),
            keepalives_sent: io.keepalives_sent,
            udp_rcvbuf_errors: crate::status::udp_rcvbuf_errors(),
            netstack_queue_drops: st.netstack.as_ref().map(|n| n.queue_drops()),
        },
    }
}
