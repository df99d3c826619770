//! `shmstate demo`: Python's `v.value += 1` lesson, with real processes.
//!
//! P worker processes (this binary, started with the hidden `demo-worker` subcommand) map
//! one region and each add 1 to a shared number N times, once per path:
//!
//! | path      | what each increment is                          | Python equivalent            |
//! |-----------|-------------------------------------------------|------------------------------|
//! | `naive`   | `load`, add, `store` on a `Value<u64>`          | `v.value += 1`, `lock=False` |
//! | `locked`  | `+=` under the crate's futex `Mutex<u64>`       | `with v.get_lock(): ...`     |
//! | `atomic`  | one `fetch_add` on a `Value<u64>`               | (none)                       |
//! | `striped` | `StripedCounter::inc`, summed at the end        | (none)                       |
//!
//! Workers start together (a ready count and a go flag in the region). Each records, in
//! the region, when it started and finished incrementing (`CLOCK_MONOTONIC`, the same clock
//! in every process); a path's time is from the earliest start to the latest finish, so
//! process start-up and exit are not counted. The parent reads the totals after
//! `waitpid`, which orders every worker's writes before the parent's reads.
//!
//! # Where the region lives
//!
//! By default the region is a sealed memfd ([`Region::memfd`]): RAM with no name in any
//! filesystem. Each worker gets its own duplicate of the descriptor, the one descriptor
//! besides stdio it inherits from the demo (`FD_CLOEXEC` is cleared on it alone, in the
//! child between fork and exec), and its number in the hidden `--fd N` argument; the worker maps
//! it with [`Region::from_fd`]. The kernel frees the memory when the last process holding
//! it ends, so nothing is left behind however the demo ends (a normal exit, Ctrl-C,
//! `SIGKILL`). With `--path FILE` the region is that file instead (created if missing,
//! kept afterwards for `shmstate inspect`), and workers open it by name.
//!
//! Workers are started with `PR_SET_PDEATHSIG` = `SIGKILL`, so they do not outlive the
//! demo (whose main thread starts them) when it is killed.
//!
//! # Exit codes
//!
//! 0 when the exact paths (`locked`, `atomic`, `striped`) ended exactly at
//! P × N (whatever `naive` lost); 1 if one did not (a bug: the results are printed first)
//! or on a runtime failure; 2 for bad arguments.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmstate::sync::Ordering;
use shmstate::{Mutex, Region, StripedCounter, Value};

use crate::Failure;

/// Size of the demo's region.
const REGION_SIZE: u64 = 1 << 20;
/// The default memfd region's label (in `/proc/PID/fd`: `/memfd:shmstate-demo (deleted)`).
const MEMFD_NAME: &str = "shmstate-demo";
/// How long workers and parent wait for each other to start before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `shmstate demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of worker processes.
    #[arg(long, short, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    processes: u32,
    /// Increments per process and path.
    #[arg(long, short = 'n', default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
    increments: u64,
    /// Keep the region in this file, for `shmstate inspect` afterwards (default: an
    /// unnamed memfd shared with the workers by descriptor, which leaves nothing behind).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of the hidden `shmstate demo-worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Where the region is.
    #[command(flatten)]
    region: WorkerRegion,
    /// Which path to run.
    #[arg(long, value_enum)]
    which: Which,
    /// Increments to do.
    #[arg(long)]
    increments: u64,
}

/// A worker's region: a file by name, or an inherited descriptor (exactly one).
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct WorkerRegion {
    /// The region file.
    #[arg(long)]
    path: Option<PathBuf>,
    /// The region's descriptor, inherited from the demo (which passes its number).
    #[arg(long, value_parser = clap::value_parser!(RawFd).range(3..))]
    fd: Option<RawFd>,
}

/// The four ways to increment.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// load, add, store.
    Naive,
    /// `+=` under the futex mutex.
    Locked,
    /// `fetch_add`.
    Atomic,
    /// `StripedCounter`.
    Striped,
}

impl Which {
    const ALL: [Which; 4] = [Which::Naive, Which::Locked, Which::Atomic, Which::Striped];

    fn name(self) -> &'static str {
        match self {
            Which::Naive => "naive",
            Which::Locked => "locked",
            Which::Atomic => "atomic",
            Which::Striped => "striped",
        }
    }

    fn object(self) -> String {
        format!("demo.{}", self.name())
    }

    fn ready(self) -> String {
        format!("demo.{}.ready", self.name())
    }

    fn go(self) -> String {
        format!("demo.{}.go", self.name())
    }

    /// Earliest start of a worker, in ns of `CLOCK_MONOTONIC` (`fetch_min`).
    fn started(self) -> String {
        format!("demo.{}.started", self.name())
    }

    /// Latest finish of a worker, in ns of `CLOCK_MONOTONIC` (`fetch_max`).
    fn finished(self) -> String {
        format!("demo.{}.finished", self.name())
    }
}

/// One path's outcome.
struct Outcome {
    path: Which,
    expected: u64,
    final_: u64,
    seconds: f64,
}

impl Outcome {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.final_)
    }

    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.final_ as f64 / self.seconds / 1e6
        } else {
            f64::INFINITY
        }
    }
}

/// Runs `shmstate demo`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let (region, label) = match &args.path {
        Some(p) => {
            check_directory(p)?;
            let region = Region::open_or_create(p, REGION_SIZE).map_err(|e| {
                Failure::runtime(format!("cannot open region {}: {e}", p.display()))
            })?;
            (region, p.display().to_string())
        }
        None => {
            let region = Region::memfd(MEMFD_NAME, REGION_SIZE)
                .map_err(|e| Failure::runtime(format!("cannot create a memfd region: {e}")))?;
            (region, format!("memfd {MEMFD_NAME}"))
        }
    };
    let stripes = StripedCounter::default_stripes()
        .max(args.processes as usize)
        .min(64);
    let expected = u64::from(args.processes)
        .checked_mul(args.increments)
        .ok_or_else(|| Failure::usage("processes × increments does not fit in a u64"))?;

    let mut outcomes = Vec::new();
    for which in Which::ALL {
        let err = |e: shmstate::GetError| Failure::runtime(format!("region {label}: {e}"));
        // Set up (or reset, when --path names a region used before) this path's objects.
        let ready: &Value<u32> = region.get_or_default(&which.ready()).map_err(err)?;
        let go: &Value<u32> = region.get_or_default(&which.go()).map_err(err)?;
        let started: &Value<u64> = region.get_or_default(&which.started()).map_err(err)?;
        let finished: &Value<u64> = region.get_or_default(&which.finished()).map_err(err)?;
        ready.store(0, Ordering::Relaxed);
        go.store(0, Ordering::Relaxed);
        started.store(u64::MAX, Ordering::Relaxed);
        finished.store(0, Ordering::Relaxed);
        match which {
            Which::Naive | Which::Atomic => {
                let v: &Value<u64> = region.get_or_default(&which.object()).map_err(err)?;
                v.store(0, Ordering::Relaxed);
            }
            Which::Locked => {
                let m: &Mutex<u64> = region.get_or_default(&which.object()).map_err(err)?;
                *m.lock().unwrap_or_else(|died| died.into_inner()) = 0;
            }
            Which::Striped => {
                let c: &StripedCounter = region
                    .get_or_default_slice(&which.object(), stripes)
                    .or_else(|_| region.get(&which.object()))
                    .map_err(err)?;
                c.reset();
            }
        }

        let mut children = spawn_workers(&region, which, args)?;
        // Wait until every worker has opened the region and is ready, so that the clock
        // covers only the increments. Acquire pairs with the workers' Release increments.
        let start = Instant::now();
        while ready.load(Ordering::Acquire) < args.processes {
            if start.elapsed() > START_TIMEOUT || any_exited(&mut children) {
                kill_all(&mut children);
                return Err(Failure::runtime(format!(
                    "{} workers did not start (see their messages above)",
                    which.name()
                )));
            }
            std::thread::yield_now();
        }
        // Release: workers' Acquire load of `go` sees the resets above.
        go.store(1, Ordering::Release);
        for mut child in children {
            let status = child
                .wait()
                .map_err(|e| Failure::runtime(format!("waiting for a worker: {e}")))?;
            if !status.success() {
                return Err(Failure::runtime(format!(
                    "a {} worker failed: {status}",
                    which.name()
                )));
            }
        }
        // Relaxed is enough here and below: waitpid returned for every worker, and a
        // process's exit is ordered before its parent's wait returns.
        let span = finished
            .load(Ordering::Relaxed)
            .saturating_sub(started.load(Ordering::Relaxed));
        let seconds = span as f64 / 1e9;
        let final_ = match which {
            Which::Naive | Which::Atomic => region
                .get::<Value<u64>>(&which.object())
                .map_err(err)?
                .load(Ordering::Relaxed),
            Which::Locked => *region
                .get::<Mutex<u64>>(&which.object())
                .map_err(err)?
                .lock()
                .unwrap_or_else(|died| died.into_inner()),
            Which::Striped => region
                .get::<StripedCounter>(&which.object())
                .map_err(err)?
                .sum(),
        };
        outcomes.push(Outcome {
            path: which,
            expected,
            final_,
            seconds,
        });
    }

    if args.json {
        println!("{}", to_json(args, &outcomes));
    } else {
        print!("{}", to_table(args, &outcomes));
    }
    match inexact(&outcomes) {
        None => Ok(()),
        Some(what) => Err(Failure::runtime(what)),
    }
}

/// What went wrong if a path that must be exact (all but `naive`) did not end at the
/// expected count (a bug, or another process writing the region meanwhile): the demo
/// still prints its results, then reports this and exits with code 1, so scripts reading
/// `--json` learn it from the exit code.
fn inexact(outcomes: &[Outcome]) -> Option<String> {
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.path != Which::Naive && o.final_ != o.expected)
        .map(|o| {
            format!(
                "{} ended at {} instead of {}",
                o.path.name(),
                o.final_,
                o.expected
            )
        })
        .collect();
    (!wrong.is_empty()).then(|| format!("BUG: exact paths were not exact: {}", wrong.join("; ")))
}

/// Runs one worker: open the region, report ready, wait for go, increment.
pub fn worker(args: &WorkerArgs) -> Result<(), Failure> {
    fn fail(e: impl Into<shmstate::RegionError>) -> Failure {
        Failure::runtime(format!("worker: {}", e.into()))
    }
    let region = match (&args.region.path, args.region.fd) {
        (Some(path), _) => Region::open(path).map_err(fail)?,
        (None, Some(fd)) => Region::from_fd(inherited(fd)?).map_err(fail)?,
        (None, None) => return Err(Failure::usage("worker: --path or --fd is required")),
    };
    let which = args.which;
    let ready: &Value<u32> = region.get(&which.ready()).map_err(fail)?;
    let go: &Value<u32> = region.get(&which.go()).map_err(fail)?;
    let started: &Value<u64> = region.get(&which.started()).map_err(fail)?;
    let finished: &Value<u64> = region.get(&which.finished()).map_err(fail)?;
    // Fetch the object before reporting ready, so opening it is not timed.
    enum Target<'a> {
        Value(&'a Value<u64>),
        Mutex(&'a Mutex<u64>),
        Striped(&'a StripedCounter),
    }
    let target = match which {
        Which::Naive | Which::Atomic => Target::Value(region.get(&which.object()).map_err(fail)?),
        Which::Locked => Target::Mutex(region.get(&which.object()).map_err(fail)?),
        Which::Striped => Target::Striped(region.get(&which.object()).map_err(fail)?),
    };
    // Release pairs with the parent's Acquire wait for all workers.
    ready.fetch_add(1, Ordering::Release);
    let start = Instant::now();
    // Acquire pairs with the parent's Release store of `go`.
    while go.load(Ordering::Acquire) == 0 {
        if start.elapsed() > START_TIMEOUT {
            return Err(Failure::runtime("worker: the parent never said go"));
        }
        std::hint::spin_loop();
        std::thread::yield_now();
    }
    let n = args.increments;
    // Relaxed: the stamps are only read by the parent after waitpid.
    started.fetch_min(monotonic_ns(), Ordering::Relaxed);
    match (which, target) {
        (Which::Naive, Target::Value(v)) => {
            for _ in 0..n {
                // The lost update under test: another process may store between our load
                // and our store, and one of the two increments disappears.
                let x = v.load(Ordering::Relaxed);
                v.store(x.wrapping_add(1), Ordering::Relaxed);
            }
        }
        (Which::Atomic, Target::Value(v)) => {
            for _ in 0..n {
                // Relaxed: only the total matters, and fetch_add is one indivisible RMW.
                v.fetch_add(1, Ordering::Relaxed);
            }
        }
        (Which::Locked, Target::Mutex(m)) => {
            for _ in 0..n {
                let mut guard = m.lock().unwrap_or_else(|died| died.into_inner());
                *guard = guard.wrapping_add(1);
            }
        }
        (Which::Striped, Target::Striped(c)) => {
            for _ in 0..n {
                c.inc();
            }
        }
        _ => unreachable!("target chosen from `which` above"),
    }
    finished.fetch_max(monotonic_ns(), Ordering::Relaxed);
    Ok(())
}

/// `CLOCK_MONOTONIC` in ns: one clock for the demo's processes, which are all its own
/// children in its time namespace (unlike `Instant`, whose values cannot be passed
/// between processes). A vDSO call, no syscall.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// Takes ownership of descriptor `n`, which the demo made inheritable for this worker
/// (see [`inherit`]); clap has checked `n >= 3`, so it is not stdio.
///
/// # Errors
///
/// A runtime failure if `n` is not an open descriptor.
fn inherited(n: RawFd) -> Result<OwnedFd, Failure> {
    if n < 3 {
        return Err(Failure::usage(format!("worker: --fd {n} is stdio")));
    }
    // SAFETY: `borrow_raw` requires `n` to be open, and to stay open while borrowed, and
    // not -1: n >= 3; this single-threaded process closes nothing during this one `fcntl`;
    // and if `n` is not open at all, `fcntl` fails with EBADF and no descriptor is used.
    let flags = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(n) })
        .map_err(|e| Failure::runtime(format!("worker: --fd {n} is not open: {e}")))?;
    // SAFETY: `from_raw_fd` requires an open descriptor that nothing else owns: `n` is
    // open (the `fcntl` above succeeded) and not stdio (n >= 3); the worker opens no
    // descriptor before this, so `n` came from its parent, the demo, which left exactly
    // this one descriptor open across exec for this worker; and it is taken only here.
    let fd = unsafe { OwnedFd::from_raw_fd(n) };
    // Close it on exec again: nothing this worker might start should inherit the region.
    rustix::io::fcntl_setfd(&fd, flags | rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| Failure::runtime(format!("worker: --fd {n}: {e}")))?;
    Ok(fd)
}

fn spawn_workers(region: &Region, which: Which, args: &Args) -> Result<Vec<Child>, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::runtime(format!("cannot find this program to start workers: {e}")))?;
    let mut children = Vec::new();
    for _ in 0..args.processes {
        let child = worker_command(&exe, region, which, args).and_then(|mut c| c.spawn());
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                kill_all(&mut children);
                return Err(Failure::runtime(format!("cannot start a worker: {e}")));
            }
        }
    }
    Ok(children)
}

/// The command that starts one worker: the region by `--path`, or else by `--fd` (a
/// duplicate of the memfd's descriptor, the only one the worker inherits). The worker is
/// SIGKILLed if this thread ends first.
fn worker_command(exe: &Path, region: &Region, which: Which, args: &Args) -> io::Result<Command> {
    let mut cmd = Command::new(exe);
    cmd.arg("demo-worker");
    match (&args.path, region.as_fd()) {
        (Some(path), _) => {
            cmd.arg("--path").arg(path);
        }
        (None, Some(fd)) => {
            let n = inherit(&mut cmd, fd)?;
            cmd.arg("--fd").arg(n.to_string());
        }
        (None, None) => {
            return Err(io::Error::other("the memfd region has no descriptor"));
        }
    }
    cmd.arg("--which")
        .arg(which.name())
        .arg("--increments")
        .arg(args.increments.to_string());
    die_with_parent(&mut cmd);
    Ok(cmd)
}

/// Makes the program `cmd` starts inherit a duplicate of `fd` (and nothing else that is
/// not already inheritable), and returns the duplicate's number, to pass on its command
/// line.
///
/// The duplicate is made `FD_CLOEXEC` (as every descriptor std and shmstate open is);
/// the child clears that flag on it alone, between fork and exec. `cmd` owns the
/// duplicate: it is closed in this process when `cmd` is dropped, so concurrent spawns
/// of other programs never see it.
fn inherit(cmd: &mut Command, fd: BorrowedFd<'_>) -> io::Result<RawFd> {
    let dup = fd.try_clone_to_owned()?;
    let n = dup.as_raw_fd();
    let keep_open = move || -> io::Result<()> {
        rustix::io::fcntl_setfd(&dup, rustix::io::FdFlags::empty())?;
        Ok(())
    };
    // SAFETY: `pre_exec` requires the closure to be safe to run in the forked child,
    // where other threads' locks may be held and allocation may deadlock: it makes one
    // `fcntl` system call on a descriptor the child has (fork copied it), takes no lock
    // and does not allocate (an `Errno` becomes an `io::Error` without allocating).
    unsafe { cmd.pre_exec(keep_open) };
    Ok(n)
}

/// Has the child `cmd` starts killed (`PR_SET_PDEATHSIG` = `SIGKILL`) when the thread
/// that starts it ends, so that workers of a demo killed mid-run do not run on. The demo
/// starts its workers from its main thread, so that is when the demo ends.
fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    let set = move || -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        // The parent may have died before the flag was set: then nobody sends the signal.
        if rustix::process::getppid() != Some(parent) {
            return Err(rustix::io::Errno::SRCH.into());
        }
        Ok(())
    };
    // SAFETY: as in `inherit`: two system calls (`prctl`, `getppid`) and a comparison in
    // the forked child; no lock, no allocation.
    unsafe { cmd.pre_exec(set) };
}

fn any_exited(children: &mut [Child]) -> bool {
    children
        .iter_mut()
        .any(|c| matches!(c.try_wait(), Ok(Some(_))))
}

fn kill_all(children: &mut [Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `--path` must name a file in an existing directory.
fn check_directory(path: &Path) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "--path {}: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn to_json(args: &Args, outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "{{\"processes\": {}, \"increments\": {}, \"results\": [",
        args.processes, args.increments
    );
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "{{\"path\": \"{}\", \"expected\": {}, \"final\": {}, \"lost\": {}, \"seconds\": {:.6}}}",
            o.path.name(),
            o.expected,
            o.final_,
            o.lost(),
            o.seconds
        );
    }
    s.push_str("]}");
    s
}

fn to_table(args: &Args, outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "{} processes × {} increments each, one shared number per path\n\n",
        args.processes, args.increments
    );
    let _ = writeln!(
        s,
        "{:<8} {:>14} {:>14} {:>14} {:>10} {:>12}",
        "path", "expected", "final", "lost", "seconds", "M incr/s"
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "{:<8} {:>14} {:>14} {:>14} {:>10.4} {:>12.1}",
            o.path.name(),
            o.expected,
            o.final_,
            o.lost(),
            o.seconds,
            o.rate()
        );
    }
    s.push('\n');
    s.push_str(&conclusion(outcomes));
    s.push('\n');
    s
}

/// The one-line lesson, from the numbers of this run.
fn conclusion(outcomes: &[Outcome]) -> String {
    let get = |p: Which| outcomes.iter().find(|o| o.path == p);
    let (Some(naive), Some(locked), Some(atomic), Some(striped)) = (
        get(Which::Naive),
        get(Which::Locked),
        get(Which::Atomic),
        get(Which::Striped),
    ) else {
        return String::new();
    };
    let exact = [locked, atomic, striped]
        .iter()
        .all(|o| o.final_ == o.expected);
    let naive_part = if naive.lost() > 0 {
        format!(
            "naive load+store lost {} of {} updates ({:.1}%)",
            naive.lost(),
            naive.expected,
            100.0 * naive.lost() as f64 / naive.expected as f64
        )
    } else {
        "naive load+store lost nothing this time (the race did not fire; try more increments)"
            .to_owned()
    };
    let speed = |a: &Outcome, b: &Outcome| {
        if a.seconds > 0.0 {
            b.seconds / a.seconds
        } else {
            f64::INFINITY
        }
    };
    format!(
        "{naive_part}; {}: fetch_add ran {:.1}× as fast as the mutex, striped {:.1}× as fast as fetch_add.",
        if exact {
            "the mutex, fetch_add and the striped counter were exact"
        } else {
            "BUG: an exact path lost updates"
        },
        speed(atomic, locked),
        speed(striped, atomic),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The started program inherits the duplicate `inherit` made, under the number it
    /// returned, open on the same memfd; the region's own descriptor stays close-on-exec
    /// (in this process too), so the child gets that one descriptor and no other.
    #[test]
    fn only_the_passed_duplicate_of_the_region_descriptor_is_inherited() {
        let region = Region::memfd("shmstate-demo-test", REGION_SIZE).unwrap();
        let own = region.as_fd().unwrap();
        let mut cmd = Command::new("sh");
        let n = inherit(&mut cmd, own).unwrap();
        assert_ne!(n, own.as_raw_fd());
        // The shell lists what its descriptors n and own point at (nothing if closed).
        let script = format!(
            "readlink /proc/$$/fd/{n}; echo ---; readlink /proc/$$/fd/{}; true",
            own.as_raw_fd()
        );
        let out = cmd.arg("-c").arg(script).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let (passed, original) = text.split_once("---\n").unwrap();
        assert_eq!(
            passed.trim(),
            "/memfd:shmstate-demo-test (deleted)",
            "{text}"
        );
        assert_eq!(original.trim(), "", "the region's own fd leaked: {text}");
        let flags = rustix::io::fcntl_getfd(own).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    fn outcome(path: Which, final_: u64) -> Outcome {
        Outcome {
            path,
            expected: 100,
            final_,
            seconds: 1.0,
        }
    }

    /// Lost updates on `naive` are the lesson; on any other path, too few *or too many*
    /// is a failure that `run` turns into exit code 1, and the conclusion says BUG.
    #[test]
    fn only_the_naive_path_may_be_inexact() {
        let run = |locked, striped| {
            vec![
                outcome(Which::Naive, 60),
                outcome(Which::Locked, locked),
                outcome(Which::Atomic, 100),
                outcome(Which::Striped, striped),
            ]
        };
        let fine = run(100, 100);
        assert_eq!(inexact(&fine), None);
        assert!(conclusion(&fine).contains("were exact"));
        let short = run(99, 100);
        assert_eq!(
            inexact(&short).as_deref(),
            Some("BUG: exact paths were not exact: locked ended at 99 instead of 100")
        );
        assert!(conclusion(&short).contains("BUG"));
        let over = run(100, 101);
        assert!(inexact(&over).unwrap().contains("striped ended at 101"));
        assert!(conclusion(&over).contains("BUG"));
    }
}
