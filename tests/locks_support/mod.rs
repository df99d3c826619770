//! Helpers shared by the `locks_*` tests: futex flags to signal between processes (never
//! sleeps), and killing/reaping a child.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use shmstate::futex;
use shmstate::sync::{AtomicU32, Ordering};

/// Sets `flag` to `v` and wakes its waiters.
pub fn raise(flag: &AtomicU32, v: u32) {
    // Release pairs with the Acquire load in `wait_for`.
    flag.store(v, Ordering::Release);
    futex::wake_all(flag);
}

/// Blocks until `flag == v` (futex wait, no sleeping). Panics after `limit`.
pub fn wait_for(flag: &AtomicU32, v: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        // Acquire pairs with the Release store in `raise`.
        let now = flag.load(Ordering::Acquire);
        if now == v {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "flag never became {v} (is {now})"
        );
        futex::wait(flag, now, Some(Duration::from_millis(100)));
    }
}

/// SIGKILLs `pid`.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill of our own child.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill failed");
}

/// Reaps `pid` (blocking).
pub fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
}

/// Parks the calling (child) process until it is killed.
pub fn park_forever() -> ! {
    loop {
        // SAFETY: `pause` has no preconditions.
        unsafe { libc::pause() };
    }
}

/// The calling thread's kernel TID.
pub fn gettid() -> u32 {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Median, p99 and max of `samples` (sorted in place).
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    (at(0.5), at(0.99), samples[n - 1])
}
