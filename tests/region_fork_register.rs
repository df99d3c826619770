//! A fork while another thread makes the process's first region attach, or takes its first
//! lock, leaves a child that can attach and lock: the crate's fork handlers are never
//! half-registered in a child.
//!
//! glibc's `fork` holds the lock that `pthread_atfork` takes from its prepare handlers to
//! its parent and child handlers, so a registration racing a fork waits for it, and a
//! child forked at that moment inherits whatever the registering thread had begun (a
//! thread the child does not have). Each run needs a process in which nothing has
//! registered yet (the first attach and the first lock happen once per process), so the
//! test re-executes its own binary once per run, with [`SCENARIO`] naming what to do.
//! Every forked child bounds itself with `alarm`: a child stuck at its attach or lock is
//! killed by `SIGALRM`, and the run reports it.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::watchdog;
use shmstate::{Mutex, Region};

/// Set in a re-executed test binary: which first use its helper thread makes while the
/// main thread forks (`attach` or `lock`).
const SCENARIO: &str = "SHMSTATE_FORK_REGISTER_SCENARIO";

/// Fresh processes per scenario. A run forks continuously while its helper thread makes
/// the first use, so most runs fork at least once inside the registration window.
const RUNS: usize = 150;

/// Forks per run at most (the helper's first use normally ends the run sooner).
const MAX_FORKS: usize = 200;

/// A forked child that has not attached (or locked) by then is stuck: `alarm` kills it.
const CHILD_LIMIT_SECS: u32 = 5;

/// Exit status of a run in which a child was stuck.
const STUCK: i32 = 3;

/// The first use a scenario's helper thread and each forked child make.
fn first_use(scenario: &str) -> bool {
    match scenario {
        "attach" => Region::anonymous(1 << 16).is_ok(),
        "lock" => Mutex::new(0u64).lock().is_ok(),
        _ => false,
    }
}

/// One run, in a fresh process: a helper thread makes the process's first use while this
/// thread forks; each child makes its own first use under `alarm`. Exits with 0, or
/// [`STUCK`] if a child was killed by its alarm, or 1 on any other failure.
fn run_scenario(scenario: &str) -> ! {
    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let helper = {
        let (go, done, scenario) = (Arc::clone(&go), Arc::clone(&done), scenario.to_owned());
        std::thread::spawn(move || {
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            let ok = first_use(&scenario);
            done.store(true, Ordering::Release);
            ok
        })
    };
    let mut pids = Vec::with_capacity(MAX_FORKS);
    go.store(true, Ordering::Release);
    while !done.load(Ordering::Acquire) && pids.len() < MAX_FORKS {
        // SAFETY: the child bounds itself with `alarm`, makes its first use and leaves by
        // `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: `alarm` only arms this process's timer (default action: terminate).
            unsafe { libc::alarm(CHILD_LIMIT_SECS) };
            let ok = first_use(scenario);
            // SAFETY: `_exit` ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        if pid < 0 {
            std::process::exit(1);
        }
        pids.push(pid);
    }
    let helper_ok = helper.join().unwrap_or(false);
    let (mut stuck, mut failed) = (0, 0);
    for &pid in &pids {
        let mut status = 0;
        // SAFETY: a blocking `waitpid` on our own child, which ends by its alarm at the
        // latest.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid {
            failed += 1;
        } else if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
            stuck += 1;
        } else if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    eprintln!(
        "{scenario}: {} forks, {stuck} children stuck, {failed} failed",
        pids.len()
    );
    std::process::exit(if stuck > 0 {
        STUCK
    } else if failed > 0 || !helper_ok {
        1
    } else {
        0
    });
}

/// Runs `scenario` in [`RUNS`] fresh processes (this test binary, re-executed to run
/// only `test`); panics at the first run that had a stuck or failed child.
fn run_fresh_processes(test: &str, scenario: &str) {
    if let Ok(s) = std::env::var(SCENARIO) {
        run_scenario(&s);
    }
    watchdog(Duration::from_secs(120));
    let exe = std::env::current_exe().unwrap();
    for run in 0..RUNS {
        let out = Command::new(&exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(SCENARIO, scenario)
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            code != Some(STUCK),
            "run {run}: a child forked during the first {scenario} was stuck at its own: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            code,
            Some(0),
            "run {run} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_child_forked_during_the_first_attach_can_attach() {
    run_fresh_processes(
        "a_child_forked_during_the_first_attach_can_attach",
        "attach",
    );
}

#[test]
fn a_child_forked_during_the_first_lock_can_lock() {
    run_fresh_processes("a_child_forked_during_the_first_lock_can_lock", "lock");
}
