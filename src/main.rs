//! The esprit command-line binary.

mod cni;
mod demo;
mod logfmt;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::control::{request, Request, Response};

/// esprit: a pure-userspace IKEv2/ESP VPN engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr; filter with RUST_LOG, e.g.
    /// RUST_LOG=debug or RUST_LOG=engine=debug,info).
    Run {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Use this already open TUN descriptor (IFF_TUN|IFF_NO_PI) instead of creating
        /// the device: for containers without CAP_NET_ADMIN.
        #[arg(long, value_name = "N")]
        tun_fd: Option<i32>,
        /// Log lines as text or as one JSON object each.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a configuration file without starting.
    Check {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show the SAs of a running daemon, like `swanctl --list-sas`.
    Status {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Counters and the number of SAs only (cheap with 100,000 SAs).
        #[arg(long)]
        summary: bool,
    },
    /// Start a connection and wait until it is up.
    Initiate {
        /// Connection name.
        name: String,
        /// Only this child (default: all of the connection's children).
        #[arg(long)]
        child: Option<String>,
        /// Seconds to wait for the SAs.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Delete a connection's SAs at the peer.
    Terminate {
        /// Connection name.
        name: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Rekey a connection's child SAs (all, or one child) or its IKE SA, like
    /// `swanctl --rekey`; the old SAs keep carrying traffic until the new ones are up.
    Rekey {
        /// Connection name.
        name: String,
        /// Only this child's SA (default: every child SA of the connection).
        #[arg(long, conflicts_with = "ike")]
        child: Option<String>,
        /// Rekey the IKE SA instead of the child SAs.
        #[arg(long)]
        ike: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Re-read the daemon's configuration file (like SIGHUP): new connections are
    /// added, removed ones deleted at the peer, changed ones renegotiated, and the SAs of
    /// unchanged ones left alone; a file with an error changes nothing.
    Reload {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Print the esprit configuration equivalent to a strongSwan ipsec.conf (with its
    /// ipsec.secrets; default: the one beside it) or swanctl.conf. Each option esprit
    /// cannot carry gets a `# not carried:` comment line.
    Import {
        /// ipsec.conf or swanctl.conf.
        config: PathBuf,
        /// ipsec.secrets (ipsec.conf only).
        secrets: Option<PathBuf>,
    },
    /// Run as a CNI plugin (spec 1.0: CNI_COMMAND ADD, DEL, CHECK, VERSION; the network
    /// configuration on stdin): what a runtime runs when this binary is installed as
    /// `esprit-cni` in its plugin path. See the README's "CNI plugin".
    Cni,
    /// Build two network namespaces, run two esprit peers between them, ping and measure
    /// throughput through the tunnel, then clean up (needs root).
    Demo {
        /// Seconds of the throughput probe.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

/// `esprit run --log-format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How to find the daemon.
#[derive(Args)]
struct DaemonArgs {
    /// The daemon's configuration file (its control_socket is used).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The control socket.
    #[arg(long, conflicts_with = "config")]
    socket: Option<PathBuf>,
}

impl DaemonArgs {
    fn socket(&self) -> Result<PathBuf, String> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        match &self.config {
            // Like the daemon: a relative path is taken from the file's folder.
            Some(c) => engine::config::read(c)
                .map(|f| {
                    let dir = c.parent().unwrap_or(Path::new("."));
                    dir.join(f.daemon.control_socket)
                })
                .map_err(|e| e.to_string()),
            None => Ok(engine::config::DaemonSection::default().control_socket),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn ask(socket: &Path, req: &Request) -> Result<Response, String> {
    match request(socket, req, TIMEOUT).map_err(|e| e.to_string())? {
        Response::Error { message } => Err(message),
        r => Ok(r),
    }
}

fn status(daemon: &DaemonArgs, json: bool, summary: bool) -> Result<(), String> {
    let req = if summary {
        Request::Summary
    } else {
        Request::Status
    };
    match ask(&daemon.socket()?, &req)? {
        Response::Status(s) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Response::Status(s) => {
            print!("{s}");
            Ok(())
        }
        r => Err(format!("unexpected answer {r:?}")),
    }
}

fn initiate(
    name: &str,
    child: Option<String>,
    timeout: u64,
    daemon: &DaemonArgs,
) -> Result<(), String> {
    let socket = daemon.socket()?;
    let req = Request::Initiate {
        conn: name.to_string(),
        child: child.clone(),
    };
    if let Response::Ok { message } = ask(&socket, &req)? {
        println!("{message}");
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let Response::Status(s) = ask(&socket, &Request::Status)? else {
            continue;
        };
        let up = s.ike_sas.iter().any(|sa| {
            sa.conn == name
                && sa.state == "ESTABLISHED"
                && sa
                    .children
                    .iter()
                    .any(|c| child.as_deref().is_none_or(|n| n == c.name))
        });
        if up {
            println!("{name}: established");
            return Ok(());
        }
        let failed = s
            .connections
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.last_error.clone());
        if let Some(e) = failed {
            // The failure came after this initiate (the daemon clears it then): with no
            // IKE SA left the negotiation is over; with the IKE SA up but the child
            // missing (checked above), the peer refused the child, e.g. with
            // TS_UNACCEPTABLE in IKE_AUTH. Either way there is nothing to wait for.
            let mut ours = s.ike_sas.iter().filter(|sa| sa.conn == name);
            if ours.clone().next().is_none() || ours.any(|sa| sa.state == "ESTABLISHED") {
                return Err(format!("{name}: {e}"));
            }
        }
    }
    Err(format!("{name}: not established after {timeout}s"))
}

fn import(config: &Path, secrets: Option<&Path>) -> Result<(), String> {
    let out = engine::import::import(config, secrets).map_err(|e| e.to_string())?;
    print!("{}", out.toml);
    if out.not_carried > 0 {
        eprintln!(
            "esprit: {} option(s) not carried over; see the `# not carried:` lines",
            out.not_carried
        );
    }
    Ok(())
}

/// Sends one command and prints the daemon's answer.
fn command(daemon: &DaemonArgs, req: &Request) -> Result<(), String> {
    if let Response::Ok { message } = ask(&daemon.socket()?, req)? {
        println!("{message}");
    }
    Ok(())
}

fn run(config: PathBuf, tun_fd: Option<i32>, log_format: LogFormat) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.event_format(logfmt::Json).init(),
    }
    let tun_fd = match tun_fd {
        // SAFETY: F_GETFD only asks whether the number is an open descriptor.
        Some(fd) if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 => {
            return Err(format!("--tun-fd {fd}: not an open file descriptor"));
        }
        // SAFETY: the user handed us this open descriptor to own (`--tun-fd`); nothing
        // else in this process uses it.
        Some(fd) => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        None => None,
    };
    engine::daemon::run(engine::daemon::RunOptions { config, tun_fd }).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // A container runtime executes the plugin by its name, with no arguments.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new("esprit-cni")) {
        return cni::main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            tun_fd,
            log_format,
        } => run(config, tun_fd, log_format),
        Command::Check { config } => engine::config::load(&config)
            .map(|r| {
                for w in r.warnings() {
                    eprintln!("{}: warning: {w}", config.display());
                }
                println!(
                    "{}: ok ({} connection(s))",
                    config.display(),
                    r.connections.len()
                )
            })
            .map_err(|e| e.to_string()),
        Command::Status {
            daemon,
            json,
            summary,
        } => status(&daemon, json, summary),
        Command::Initiate {
            name,
            child,
            timeout,
            daemon,
        } => initiate(&name, child, timeout, &daemon),
        Command::Terminate { name, daemon } => ask(
            &daemon.socket().unwrap_or_default(),
            &Request::Terminate { conn: name },
        )
        .map(|r| {
            if let Response::Ok { message } = r {
                println!("{message}");
            }
        }),
        Command::Rekey {
            name,
            child,
            ike,
            daemon,
        } => command(
            &daemon,
            &Request::Rekey {
                conn: name,
                child,
                ike,
            },
        ),
        Command::Reload { daemon } => command(&daemon, &Request::Reload),
        Command::Import { config, secrets } => import(&config, secrets.as_deref()),
        Command::Demo { seconds } => demo::run(seconds),
        Command::Cni => return cni::main(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esprit: {e}");
            ExitCode::FAILURE
        }
    }
}
