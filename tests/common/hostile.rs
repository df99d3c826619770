//! Support for the hostile-bytes and chaos tests: a seeded PRNG, thread ids that are live,
//! stopped or dead, a list of failures, and a file lock that keeps the heavy
//! multi-process tests from running at the same time.
//!
//! Used through `#[path = "common/hostile.rs"] mod hostile;` next to `mod common;`.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::time::Duration;

/// The seed of a randomised test: `SHMSTATE_CHAOS_SEED` if set (decimal or `0x` hex),
/// else one derived from the clock. Printed, so that a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = match std::env::var("SHMSTATE_CHAOS_SEED") {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("SHMSTATE_CHAOS_SEED={v:?} is not a u64"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("{test}: seed {s:#x} (replay with SHMSTATE_CHAOS_SEED={s:#x})");
    s
}

/// xorshift64*: small, fast, deterministic for a seed. Not for anything but tests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mix the seed so that nearby seeds (seed + worker index) give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The calling thread's kernel TID.
pub fn gettid() -> u32 {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Starts a thread of this process that parks forever and returns its TID: a live thread
/// that never releases anything.
pub fn parked_thread_tid() -> u32 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(gettid());
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("parked thread started")
}

/// A forked child that does nothing until killed; SIGSTOPped if `stop`. Killed and reaped
/// on drop (and SIGKILLed by the kernel if the forking thread ends first).
pub struct IdleChild {
    pub pid: libc::pid_t,
}

impl IdleChild {
    pub fn spawn(stop: bool) -> Self {
        // SAFETY: `getpid` has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child only sets its death signal and sleeps until killed; it never
        // returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            super::common::die_with_parent(parent);
            loop {
                // SAFETY: `pause` has no preconditions.
                unsafe { libc::pause() };
            }
        }
        if stop {
            // SAFETY: signalling our own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
            // Wait until it really is stopped, so that it reads as "alive but not running".
            let mut status = 0;
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
            assert!(r == pid && libc::WIFSTOPPED(status), "child did not stop");
        }
        IdleChild { pid }
    }
}

impl Drop for IdleChild {
    fn drop(&mut self) {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The pid of a child that has exited and been reaped: an id that names no thread (until
/// the kernel's pid counter wraps around to it).
pub fn dead_pid() -> u32 {
    // SAFETY: the child exits at once with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: ends the child without running the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: plain waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    assert_eq!(r, pid);
    pid as u32
}

/// The failures of one test; `finish` prints them all and panics if there are any.
#[derive(Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    pub fn add(&mut self, what: String) {
        self.0.push(what);
    }

    pub fn finish(&self, test: &str) {
        for what in &self.0 {
            eprintln!("{test}: FAILED: {what}");
        }
        assert!(
            self.0.is_empty(),
            "{test}: {} failures (first: {})",
            self.0.len(),
            self.0[0]
        );
    }
}

/// Holds an exclusive `flock` on a file in the temp directory while alive: the tests that
/// run many processes for many seconds take it so that a parallel runner does not run two
/// of them at once on a small machine (their time bounds assume a fair share of the CPU).
pub struct Exclusive(std::fs::File);

impl Exclusive {
    pub fn take() -> Self {
        let path = std::env::temp_dir().join("shmstate-heavy-tests.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the lock file");
        // SAFETY: `flock` on a descriptor we own; it blocks until the lock is ours.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock failed");
        Exclusive(f)
    }
}
