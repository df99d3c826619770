//! `shmstate`: the lost-update demo and tools for shmstate regions.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod inspect;

/// Lock-free shared-memory state for processes: the lost-update demo and region tools.
#[derive(Parser, Debug)]
#[command(name = "shmstate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// P processes each add 1 to a shared number N times, once per path (naive load+store,
    /// a futex mutex, one atomic fetch_add, a striped counter), and print what was lost.
    Demo(demo::Args),
    /// List the named objects in a region file.
    Inspect {
        /// The region file.
        path: PathBuf,
    },
    /// One demo worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker(demo::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Inspect { path } => inspect::run(&path),
        Command::DemoWorker(args) => demo::worker(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmstate: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// A failure to report: a message and the process exit code (2 for bad arguments, like
/// clap's own errors; 1 for everything else).
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    /// A runtime error (exit code 1).
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}
