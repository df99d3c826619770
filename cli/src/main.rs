//! `shmstate`: the lost-update demo and tools for shmstate regions.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod inspect;
mod lifecycle;
mod metrics;
mod seqarray;
mod serve;
mod state;

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
    /// List the named objects in a region file and their current state, without writing
    /// to it.
    ///
    /// Per kind: the value of a Value, Counter, StripedCounter (sum), ValueArray (first
    /// elements) and SeqLock of a primitive type; free or held, the holder's TID, whether
    /// it is alive and its name, and the owner-died mark, for Mutex, ReentrantMutex and
    /// RwLock, with the value they protect when it is a primitive (a ReentrantMutex's: a
    /// Value or Counter), read without taking the lock (a holder may be mid-update); idle, being written or torn for a SeqLock; for a SeqLockArray, each
    /// stripe's state (idle, being written, torn by a dead writer) and the first values
    /// of a primitive type, each stripe copied consistently (`?` where no stable copy
    /// could be made); permits of a Semaphore or BoundedSemaphore; set or clear for an
    /// Event; parties, arrived and broken for a Barrier; length, capacity and the lock
    /// for a Queue; count and sum (and with --verbose the cumulative buckets) of a
    /// Histogram; "-" for other kinds. A dead holder, a torn seqlock, a broken barrier
    /// and a corrupt histogram are highlighted (bold red on a terminal, else marked "!!").
    ///
    /// A line under the heading lists the processes that have the region open, from its
    /// attach table: pid, name and handle count, or "(dead)" for one that died without
    /// closing it (not a reason for exit status 3: nothing waits on it, and a removal
    /// check or a writable handle's attached() prunes it); then "remove when unused", "retired" and "unlisted (a handle had no table word)" when
    /// they apply.
    ///
    /// Exit status: 0; 3 if a lock is held by a dead thread (or holds a garbage word), a
    /// seqlock (or a SeqLockArray stripe) was torn by a writer that died mid-write, or a
    /// barrier is broken; 1
    /// on errors; 2 on bad arguments or a missing file. A dead attached process does not
    /// change it. With --watch: the status of the
    /// last frame when the file is removed.
    Inspect(inspect::Args),
    /// Print the Prometheus exposition (text format 0.0.4) of one or more region files:
    /// their counters, gauges and histograms, read without writing to them.
    ///
    /// Objects whose names are not metric names are sanitised (characters outside
    /// [a-zA-Z0-9_:] become _) or, when they would break the exposition, left out with a
    /// note on stderr. Exit status: 0; 1 on errors; 2 on bad arguments or a missing file.
    Metrics {
        /// The region files (one exposition: series of the same metric are grouped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Serve the Prometheus exposition of region files at http://ADDR/metrics, reading
    /// the regions (read-only) at each scrape; a region that cannot be read makes the
    /// scrape fail (HTTP 500).
    ServeMetrics {
        /// The address to listen on (loopback by default; port 0 picks a free port, and
        /// the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// The region files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Remove a region file, unless a live process has it open.
    ///
    /// Race-free against a process opening it at that moment (it gets a fresh region or
    /// an error, never the removed file). Does not attach to the region.
    ///
    /// Exit status: 0 removed; 3 not removed: live processes have it open (they are
    /// listed), processes not listed may have it (one had it open without a table word, usually
    /// because the table overflowed), or
    /// another process is removing it; 1 on errors; 2 on bad arguments or a missing
    /// file.
    ///
    /// With --object NAME, removes the named object from the region instead (its entry
    /// and space are reused by later objects), unless a live process has asked for it:
    /// exit status 3 then, with those processes listed. Not with --force: a reference
    /// cannot be taken back from a live process.
    Rm {
        /// The region file.
        path: PathBuf,
        /// Remove it even if live processes have it open: they keep using their mapping,
        /// and new openers get a fresh region.
        #[arg(long, conflicts_with = "object")]
        force: bool,
        /// Remove this object of the region, not the file.
        #[arg(long, value_name = "NAME")]
        object: Option<String>,
    },
    /// Remove the region files in a directory that no live process has open.
    ///
    /// Removes regions created with remove_when_unused whose processes were all killed
    /// (the last one could not remove it), and regions a killed remover left
    /// half-removed; with --all, also regions created without remove_when_unused
    /// (persistent state that nobody has open now). Prints "removed PATH" per file.
    /// Leaves alone files that are not regions of this format, regions a process had open
    /// unlisted (usually: the attach table overflowed), and subdirectories.
    ///
    /// Exit status: 0; 1 on errors; 2 on bad arguments or a missing directory.
    Gc {
        /// The directory.
        dir: PathBuf,
        /// Print "would remove PATH" for each file, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove regions created without remove_when_unused.
        #[arg(long)]
        all: bool,
    },
    /// One demo worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker(demo::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args).map(|()| 0),
        Command::Inspect(args) => inspect::run(&args),
        Command::Metrics { paths } => metrics::run(&paths),
        Command::ServeMetrics { listen, paths } => serve::run(listen, &paths),
        Command::Rm {
            path,
            object: Some(name),
            ..
        } => lifecycle::rm_object(&path, &name),
        Command::Rm { path, force, .. } => lifecycle::rm(&path, force),
        Command::Gc { dir, dry_run, all } => lifecycle::gc(&dir, dry_run, all),
        Command::DemoWorker(args) => demo::worker(&args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
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
