//! The esprit command-line binary.

mod demo;

use clap::{Parser, Subcommand};

/// esprit: a pure-userspace IKEv2/ESP VPN engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Negotiate a tunnel between two in-process peers and push traffic through it.
    Demo {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Validate a configuration file without starting.
    Check {
        /// The configuration file.
        #[arg(short, long)]
        config: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { seconds } => demo::run(seconds),
        Command::Check { config } => engine::config::read(&config)
            .map(|_| println!("{}: ok", config.display()))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esprit: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
