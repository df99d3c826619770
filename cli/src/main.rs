//! `shmstate`: the lost-update demo and tools for shmstate regions.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lock-free shared-memory state for processes: demos and region tools.
#[derive(Parser, Debug)]
#[command(name = "shmstate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}
