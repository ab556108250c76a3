//! A test bench of Linux network namespaces for `esprit demo` and the end-to-end tests.
//!
//! Everything here needs root. Traffic stays inside namespaces this code created
//! ([`Netns`]), named uniquely per process and call so that tests in one multi-threaded
//! process never collide. Every guard cleans up on drop, on the panic path too:
//! processes ([`Proc`]) are killed by PID, namespaces deleted, scratch directories removed.
//! Waits poll a condition with a bound ([`wait`]), never sleep and hope.
//!
//! - [`netns`]: the [`Netns`] guard, commands and sockets inside it.
//! - [`proc`]: the [`Proc`] guard for a process started in a namespace.
//! - [`topo`]: ready-made [`Topology`]s: direct veth, behind a NAT router, through an
//!   nginx UDP proxy.
//! - [`impair`]: an impairing UDP relay ([`Relay`]): seeded loss, reordering and
//!   duplication, counted.
//! - [`topo_mediation`]: a mediation server and two peers behind their own NAT routers.
//! - [`star`]: a hub with N clients, each on its own veth ([`Star`]).
//! - [`probe`]: TCP, UDP and ping probes between namespaces.
//! - [`frr`]: FRR's zebra, bgpd and bfdd in a namespace ([`Frr`]), for route-based
//!   tunnels.
//! - [`flood`]: a paced UDP flood from spoofed sources ([`Flood`]).
//! - [`certs`]: a throw-away CA and end-entity certificates ([`Pki`]).
//! - [`scratch`]: a temporary directory guard ([`Scratch`]) for configurations and logs.
//! - [`tools`]: the outside programs the tests use and the package of each.
//!
//! Namespaces, links, addresses and routes are made with system calls and netlink, and
//! [`ping`] is an ICMP socket of our own, so `esprit demo` runs on a machine with no
//! `ip`, `ping` or `iperf3`.
#![warn(missing_docs, unreachable_pub)]

pub mod certs;
pub mod esprit;
pub mod flood;
pub mod frr;
pub mod impair;
mod middlebox;
pub mod netns;
pub mod probe;
pub mod proc;
pub mod scratch;
pub mod star;
pub mod tools;
pub mod topo;
pub mod topo_mediation;
pub mod wait;

pub use certs::{subject_dn, KeyKind, Leaf, Pki};
pub use flood::{Flood, FloodReport};
pub use frr::{Frr, FrrConfig};
pub use impair::{Impairment, Relay, RelayCounters};
pub use netns::Netns;
pub use probe::{
    http_get, ping, ping_stats, tcp_transfer, throughput, throughput_at, udp_counted, Pings,
    Transfer, UdpCount,
};
pub use proc::Proc;
pub use scratch::Scratch;
pub use star::Star;
pub use topo::{Inner, Kind, Topology, A_INNER, B_INNER, UPLINK};
pub use topo_mediation::MediationTopology;
pub use wait::{wait_for, wait_ok, wait_until, Timeout};
