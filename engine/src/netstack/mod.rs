//! Pipes through a userspace TCP/IP stack: no TUN device, no privileges.
//!
//! With `[netstack]` the dataplane's main device is [`NetstackDevice`]: the packets the
//! outbound thread encrypts are the ones smoltcp sent, and what the inbound thread
//! decrypts goes into smoltcp. The same SPD, SAD and ESP path as with a TUN.
//!
//! On top of the stack run the pipes (`[pipes.NAME]`): a forward pipe listens on a host
//! socket and opens an inner TCP connection (or UDP flow) to its `remote` for each
//! client; a reverse pipe listens on a netstack address inside the tunnel and connects
//! to a host socket for each connection.
//!
//! The stack runs on its own thread with its own current-thread tokio runtime: smoltcp's
//! interface and sockets have one owner and take no lock, the host sockets are tokio
//! ones on the same runtime, and the stack's work (TCP segmentation, copies) neither
//! delays IKE on the control task nor competes with it for a runtime. Buffers are
//! bounded everywhere (see [`stack`]): a side that does not read stops the other.

mod device;
mod stack;

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{Netstack as NetstackPlan, Pipe, PipeProto};
pub use device::NetstackDevice;

/// A pipe's counters, shared by the stack's thread (which writes) and status (which
/// reads).
#[derive(Debug, Default)]
pub(crate) struct PipeCounters {
    opened: AtomicU64,
    active: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One pipe's figures at one moment: what `esprit status` shows and metrics export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeStats {
    /// The pipe's name (`[pipes.NAME]`).
    pub name: String,
    /// "tcp" or "udp".
    pub proto: String,
    /// Listens inside the tunnel.
    pub reverse: bool,
    /// Where it listens.
    pub listen: String,
    /// Where its connections go.
    pub remote: String,
    /// Connections (UDP: flows) opened since start.
    pub opened: u64,
    /// Connections (flows) open now.
    pub active: u64,
    /// Connections refused: the pipe was at `max_connections`.
    pub refused: u64,
    /// Connections that could not be made (name not resolved, remote refused or reset
    /// before data, no netstack address yet).
    pub failed: u64,
    /// Bytes from the side that connects to `listen` towards `remote`.
    pub bytes_up: u64,
    /// Bytes from `remote` back to the side that connected.
    pub bytes_down: u64,
}

/// Commands for the stack's thread.
enum Cmd {
    AddAddr(IpAddr),
    RemoveAddr(IpAddr),
    Stop,
}

/// What the control task keeps of the stack: address changes and counters.
#[derive(Clone)]
pub struct NetstackHandle {
    cmds: mpsc::UnboundedSender<Cmd>,
    pipes: Arc<Vec<(Pipe, PipeCounters)>>,
    queues: Arc<device::Queues>,
}

impl NetstackHandle {
    /// Gives the stack another address (a virtual IP the peer assigned).
    pub fn add_addr(&self, ip: IpAddr) {
        let _ = self.cmds.send(Cmd::AddAddr(ip));
    }

    /// Takes an address from the stack.
    pub fn remove_addr(&self, ip: IpAddr) {
        let _ = self.cmds.send(Cmd::RemoveAddr(ip));
    }

    /// Every pipe's counters, in the configuration's order.
    pub fn pipes_snapshot(&self) -> Vec<PipeStats> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.pipes
            .iter()
            .map(|(p, c)| PipeStats {
                name: p.name.clone(),
                proto: match p.proto {
                    PipeProto::Tcp => "tcp".into(),
                    PipeProto::Udp => "udp".into(),
                },
                reverse: p.reverse,
                listen: p.listen.to_string(),
                remote: p.remote.to_string(),
                opened: get(&c.opened),
                active: get(&c.active),
                refused: get(&c.refused),
                failed: get(&c.failed),
                bytes_up: get(&c.bytes_up),
                bytes_down: get(&c.bytes_down),
            })
            .collect()
    }

    /// Packets dropped because a queue between the stack and the packet threads was
    /// full: (towards the stack, from the stack).
    pub fn queue_drops(&self) -> (u64, u64) {
        (
            self.queues.ingress.dropped.load(Ordering::Relaxed),
            self.queues.egress.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The running stack; stops (and joins its thread) when dropped.
pub struct Netstack {
    handle: NetstackHandle,
    thread: Option<JoinHandle<()>>,
}

impl Netstack {
    /// Binds the forward pipes' host sockets (so a taken port fails the start) and
    /// starts the stack's thread. The device goes to the dataplane.
    pub fn start(plan: &NetstackPlan, pipes: &[Pipe]) -> io::Result<(Netstack, NetstackDevice)> {
        let queues = device::Queues::new()?;
        let mut hosts = Vec::new();
        for p in pipes {
            hosts.push(stack::HostSocket::bind(p).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("pipe {}: binding {}: {e}", p.name, p.listen),
                )
            })?);
        }
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(
            pipes
                .iter()
                .map(|p| (p.clone(), PipeCounters::default()))
                .collect::<Vec<_>>(),
        );
        let handle = NetstackHandle {
            cmds,
            pipes: shared.clone(),
            queues: queues.clone(),
        };
        let cfg = stack::StackConfig {
            addrs: plan.addrs.clone(),
            mtu: usize::from(plan.mtu),
            tcp_buffer: plan.tcp_buffer,
        };
        let q = queues.clone();
        let thread = std::thread::Builder::new()
            .name("netstack".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("netstack: starting its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(stack::run(cfg, q, shared, hosts, cmd_rx));
            })?;
        let dev = NetstackDevice {
            queues,
            mtu: plan.mtu,
        };
        Ok((
            Netstack {
                handle,
                thread: Some(thread),
            },
            dev,
        ))
    }

    /// The handle the control task keeps.
    pub fn handle(&self) -> NetstackHandle {
        self.handle.clone()
    }
}

impl Drop for Netstack {
    fn drop(&mut self) {
        let _ = self.handle.cmds.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
