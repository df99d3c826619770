//! The real futex, through rustix.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;
use rustix::time::{ClockId, Timespec, clock_gettime};

use crate::sync::AtomicU32;

/// `FUTEX_BITSET_MATCH_ANY`: with `FUTEX_WAIT_BITSET` this is a plain wait whose timeout is
/// an absolute `CLOCK_MONOTONIC` time.
const MATCH_ANY: NonZeroU32 = NonZeroU32::MAX;

/// Blocks while `*word == expected`, for at most `timeout` (`None`: no limit).
///
/// Returns `false` if the timeout expired, `true` otherwise: woken, the word did not hold
/// `expected` when the kernel looked, or a spurious wakeup. Callers re-check their
/// condition in a loop either way. `EINTR` is retried against the same deadline.
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let deadline = timeout.and_then(monotonic_after);
    match (timeout, deadline) {
        // A timeout too large to represent: no limit.
        (Some(_), None) => wait_abs(word, expected, None),
        (_, deadline) => wait_abs(word, expected, deadline.as_ref()),
    }
}

/// Like [`wait`], with an absolute deadline (`std::time::Instant` is `CLOCK_MONOTONIC`).
#[inline]
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    match deadline {
        None => wait_abs(word, expected, None),
        Some(d) => wait(
            word,
            expected,
            Some(d.saturating_duration_since(Instant::now())),
        ),
    }
}

/// Wakes at most one thread blocked in [`wait`] on `word`, in any process. Returns how
/// many it woke (0 or 1), as the kernel reports.
#[inline]
pub fn wake_one(word: &AtomicU32) -> usize {
    wake(word, 1)
}

/// Wakes every thread blocked in [`wait`] on `word`, in any process. Returns how many it
/// woke, as the kernel reports.
#[inline]
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[inline]
fn wake(word: &AtomicU32, n: u32) -> usize {
    // Errors: EFAULT/EINVAL cannot happen for a valid, aligned `&AtomicU32`; waking nobody
    // is not an error (it returns 0). Should one happen anyway, report 1 ("maybe woke
    // someone"): callers that treat 0 as "nobody sleeps" then keep assuming a sleeper,
    // which only costs them a later wake.
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(1)
}

/// `CLOCK_MONOTONIC` now + `d`, or `None` if that does not fit a `Timespec`.
fn monotonic_after(d: Duration) -> Option<Timespec> {
    let now = clock_gettime(ClockId::Monotonic);
    let secs = i64::try_from(d.as_secs()).ok()?.checked_add(now.tv_sec)?;
    let nanos = now.tv_nsec + i64::from(d.subsec_nanos());
    let (secs, nanos) = if nanos >= 1_000_000_000 {
        (secs.checked_add(1)?, nanos - 1_000_000_000)
    } else {
        (secs, nanos)
    };
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    })
}

/// How long a wait sleeps instead when the futex call itself fails (see [`wait_abs`]).
const FAILED_WAIT_POLL: Duration = Duration::from_millis(1);

#[cold]
fn wait_abs(word: &AtomicU32, expected: u32, deadline: Option<&Timespec>) -> bool {
    loop {
        match futex::wait_bitset(word, futex::Flags::empty(), expected, deadline, MATCH_ANY) {
            // Woken (maybe spuriously), or the word already differed.
            Ok(()) | Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(Errno::TIMEDOUT) => return false,
            // EFAULT/EINVAL/ENOSYS cannot happen for a valid aligned word on Linux ≥ 2.6.25,
            // but a seccomp filter can make the call fail (ENOSYS, EPERM). Returning at once
            // would turn every caller's wait loop into a hot spin, so sleep briefly instead:
            // waits degrade to polling every `FAILED_WAIT_POLL` and stay correct, because
            // every caller re-checks its condition after a wait.
            Err(_) => return poll_instead(deadline),
        }
    }
}

/// The fallback of a failed futex wait: sleeps for [`FAILED_WAIT_POLL`] or until
/// `deadline`, whichever is sooner, and returns what a wait would (`false`: timed out).
#[cold]
fn poll_instead(deadline: Option<&Timespec>) -> bool {
    let left = deadline.map_or(FAILED_WAIT_POLL, |d| {
        let now = clock_gettime(ClockId::Monotonic);
        let (d, now) = (timespec_nanos(d), timespec_nanos(&now));
        Duration::from_nanos(u64::try_from(d.saturating_sub(now)).unwrap_or(0))
    });
    std::thread::sleep(left.min(FAILED_WAIT_POLL));
    deadline.is_none_or(|d| timespec_nanos(&clock_gettime(ClockId::Monotonic)) < timespec_nanos(d))
}

/// A `Timespec` as nanoseconds (saturating; monotonic times are never negative).
fn timespec_nanos(t: &Timespec) -> i128 {
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sync::{AtomicI64, Ordering};

    /// Whether thread or process `tid` is blocked in the `futex` system call right now.
    fn blocked_in_futex(tid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{tid}/syscall"))
            .is_ok_and(|s| s.starts_with(&format!("{} ", libc::SYS_futex)))
    }

    /// Polls (bounded) until `tid` sleeps in `futex`, so that a wake really has to reach a
    /// sleeper instead of being overtaken by the sleeper's own check of the word.
    fn until_blocked_in_futex(tid: i32) {
        let start = Instant::now();
        while !blocked_in_futex(tid) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{tid} never slept"
            );
            std::thread::yield_now();
        }
    }

    /// Reaps our child `pid` and returns its wait status; if it has not exited within
    /// `limit`, kills it and panics with `what`.
    fn reap_within(pid: libc::pid_t, limit: Duration, what: &str) -> libc::c_int {
        let t0 = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                return status;
            }
            if t0.elapsed() > limit {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("{what}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_wait_times_out_no_earlier_than_its_timeout() {
        let word = AtomicU32::new(7);
        let t0 = Instant::now();
        assert!(!wait(&word, 7, Some(Duration::from_millis(50))));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert!(
            !wait_until(&word, 7, Some(Instant::now())),
            "a past deadline"
        );
        assert!(wait(&word, 8, Some(Duration::ZERO)), "the word differs");
    }

    /// Timeouts too large for a `Timespec` (`Duration::MAX`) wait without a limit: they
    /// neither time out at once (a wrapped deadline) nor fail with `EINVAL` (a negative
    /// one), and a wake still ends them.
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc/<tid>/syscall to see the waiter asleep")]
    fn a_huge_timeout_waits_until_woken() {
        for timeout in [
            Duration::MAX,
            Duration::from_secs(i64::MAX as u64),
            Duration::new(i64::MAX as u64 - 1, 999_999_999),
        ] {
            assert!(monotonic_after(timeout).is_none(), "{timeout:?} fits");
            let word = AtomicU32::new(0);
            let tid = AtomicI64::new(0);
            std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    tid.store(
                        rustix::thread::gettid().as_raw_nonzero().get().into(),
                        Ordering::Release,
                    );
                    while word.load(Ordering::Acquire) == 0 {
                        assert!(wait(&word, 0, Some(timeout)), "{timeout:?} timed out");
                    }
                });
                let id = loop {
                    match tid.load(Ordering::Acquire) {
                        0 => std::thread::yield_now(),
                        id => break id as i32,
                    }
                };
                until_blocked_in_futex(id);
                word.store(1, Ordering::Release);
                wake_all(&word);
                // Bounded: a lost wake would leave the waiter asleep for good.
                let start = Instant::now();
                while !waiter.is_finished() {
                    if start.elapsed() > Duration::from_secs(20) {
                        eprintln!("{timeout:?}: the wake did not end the wait; aborting");
                        std::process::abort();
                    }
                    std::thread::yield_now();
                }
                waiter.join().unwrap();
            });
        }
        // The largest deadlines that do fit are accepted by the kernel (no EINVAL spin).
        let word = AtomicU32::new(0);
        let now = clock_gettime(ClockId::Monotonic).tv_sec;
        let d = Duration::from_secs((i64::MAX - now - 10) as u64);
        assert!(monotonic_after(d).is_some());
        assert!(wait(&word, 1, Some(d)), "the word differs: at once");
    }

    extern "C" fn ignore_signal(_: libc::c_int) {}

    /// A signal whose handler does not restart system calls interrupts the futex with
    /// `EINTR`: the wait goes on against the same deadline, neither returning early nor
    /// starting its timeout over.
    #[test]
    #[cfg_attr(miri, ignore = "sends signals (sigaction, tgkill)")]
    fn eintr_is_retried_against_the_same_deadline() {
        // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value; the handler
        // is an `extern "C" fn(c_int)` that does nothing (async-signal-safe); SIGUSR1 is
        // used by no other test of this crate.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = 0; // no SA_RESTART: the futex returns EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        let timeout = Duration::from_millis(300);
        let word = AtomicU32::new(0);
        let done = AtomicU32::new(0);
        let tid = AtomicI64::new(0);
        let (timed_out, elapsed) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                tid.store(
                    rustix::thread::gettid().as_raw_nonzero().get().into(),
                    Ordering::Release,
                );
                let t0 = Instant::now();
                let r = wait(&word, 0, Some(timeout));
                let e = t0.elapsed();
                done.store(1, Ordering::Release);
                (!r, e)
            });
            let id = loop {
                match tid.load(Ordering::Acquire) {
                    0 => std::thread::yield_now(),
                    id => break id as i32,
                }
            };
            let mut sent = 0;
            while done.load(Ordering::Acquire) == 0 {
                if blocked_in_futex(id) {
                    // SAFETY: `tgkill` on a thread of this process that is still running
                    // (it has not set `done`, and the scope joins it only below).
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), id, libc::SIGUSR1) };
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(sent > 0, "no signal reached the sleeping waiter");
            waiter.join().unwrap()
        });
        assert!(timed_out, "an interrupted wait returned as if woken");
        assert!(elapsed >= timeout, "returned early after {elapsed:?}");
        assert!(
            elapsed < timeout * 10,
            "the deadline was extended: {elapsed:?}"
        );
    }

    /// The futex is shared (no `FUTEX_PRIVATE_FLAG`): a process blocked on a word of a
    /// `MAP_SHARED` mapping is woken by another process. A private futex is keyed by the
    /// address space, so this wake would not reach the child.
    #[test]
    #[cfg_attr(miri, ignore = "mmap(MAP_SHARED) and fork")]
    fn a_wake_reaches_a_waiter_in_another_process() {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                4096,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
            )
        }
        .unwrap();
        // SAFETY: the mapping is page-aligned, zero-filled (a valid `AtomicU32`), and
        // outlives every use below (it is unmapped at the end of the test).
        let word = unsafe { &*raw.cast::<AtomicU32>() };
        // SAFETY: the child only waits on the word and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let woken = wait(word, 0, Some(Duration::from_secs(30)));
            let ok = woken && word.load(Ordering::Acquire) == 1;
            // SAFETY: ends the child without returning into the test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        until_blocked_in_futex(pid);
        word.store(1, Ordering::Release);
        wake_one(word);
        let status = reap_within(
            pid,
            Duration::from_secs(10),
            "the wake did not reach the other process",
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        // SAFETY: unmaps the mapping made above; `word` is not used after this.
        unsafe { rustix::mm::munmap(raw, 4096) }.unwrap();
    }

    /// Installs a seccomp filter on the calling thread that fails every
    /// `FUTEX_WAIT_BITSET` with `ENOSYS`, as a sandbox might (compiled by `seccompiler`).
    /// Returns `false` if this kernel or sandbox does not let us install one.
    fn fail_futex_waits_with_seccomp() -> bool {
        use seccompiler::{
            BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
            SeccompFilter, SeccompRule,
        };
        // The futex op is the call's second argument; without FUTEX_PRIVATE_FLAG and
        // FUTEX_CLOCK_REALTIME (the low 7 bits).
        let wait_bitset = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(0x7f),
            libc::FUTEX_WAIT_BITSET as u64,
        )
        .expect("condition");
        let rules = [(
            libc::SYS_futex,
            vec![SeccompRule::new(vec![wait_bitset]).expect("rule")],
        )];
        let filter = SeccompFilter::new(
            rules.into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            std::env::consts::ARCH
                .try_into()
                .expect("an architecture seccompiler knows"),
        )
        .expect("filter");
        let program: BpfProgram = filter.try_into().expect("BPF program");
        seccompiler::apply_filter(&program).is_ok()
    }

    /// CPU time this thread has used.
    fn thread_cpu_time() -> Duration {
        let t = clock_gettime(ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    /// When the futex call itself fails (here: a seccomp filter returns `ENOSYS`), waits
    /// still never time out before their deadline, an untimed wait sleeps a poll interval
    /// before reporting a (spurious) wakeup, and a caller's wait loop polls instead of
    /// spinning hot: it uses far less CPU than the time it waits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[cfg_attr(miri, ignore = "fork and seccomp")]
    fn a_failing_futex_call_degrades_to_polling_not_spinning() {
        // SAFETY: fork in a test process; the child only runs this test's code (no locks
        // held by other threads are taken) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if !fail_futex_waits_with_seccomp() {
                // SAFETY: ends the child without returning into the test harness.
                unsafe { libc::_exit(2) };
            }
            let run = std::panic::catch_unwind(|| {
                let word = AtomicU32::new(0);
                // A timed wait reports spurious wakeups (after a poll interval each), and
                // "timed out" only once its deadline has passed.
                let deadline = Instant::now() + Duration::from_millis(30);
                while wait_until(&word, 0, Some(deadline)) {}
                assert!(Instant::now() >= deadline, "timed out early");
                let t0 = Instant::now();
                assert!(wait(&word, 0, None), "an untimed wait reports a wakeup");
                assert!(
                    t0.elapsed() >= FAILED_WAIT_POLL,
                    "returned without sleeping"
                );
                // A caller's loop: wait for a condition that stays false for 200 ms.
                let (wall, cpu) = (Instant::now(), thread_cpu_time());
                while wall.elapsed() < Duration::from_millis(200) {
                    wait(&word, 0, None);
                }
                let cpu = thread_cpu_time() - cpu;
                assert!(cpu < Duration::from_millis(100), "spun: {cpu:?} of CPU");
            });
            // SAFETY: ends the child without returning into the test harness.
            unsafe { libc::_exit(if run.is_ok() { 0 } else { 1 }) };
        }
        let status = reap_within(pid, Duration::from_secs(30), "the child did not finish");
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 2 {
            eprintln!("seccomp filters are not available here: nothing tested");
            return;
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
    }
}
