//! Timed waits of Event, Semaphore, BoundedSemaphore and Barrier honour their deadline
//! while a peer floods their futex word with `FUTEX_WAKE`: the deadline is checked after
//! every wake, not only when the futex reports a timeout.

mod common;

use std::time::{Duration, Instant};

use common::{fork_children, watchdog};
use shmstate::futex;
use shmstate::sync::{AtomicBool, AtomicU32, Ordering};
use shmstate::{Barrier, BarrierError, BoundedSemaphore, Event, Semaphore, Timeout};

/// Short: a wait that never returns under the flood is the failure this file looks for.
const LIMIT: Duration = Duration::from_secs(20);
/// The timeout of every timed wait under test.
const TIMEOUT: Duration = Duration::from_millis(20);
/// How long a 20 ms wait may take, with a generous margin for a loaded machine (the waits
/// that only checked their deadline on a futex timeout took 0.4 to over 1 s here).
const BOUND: Duration = Duration::from_millis(300);
/// Timed waits per primitive.
const ROUNDS: usize = 10;
/// The waiting thread's timer slack: the kernel may fire a futex timeout this late, so a
/// wait that counts on the kernel's timeout, rather than checking its deadline after each
/// wake, keeps being woken early by the flood for up to this long.
const SLACK: Duration = Duration::from_secs(2);
/// Threads that flood the word with wakes.
const SPAMMERS: usize = 2;

/// Runs `f` `ROUNDS` times while another thread calls `FUTEX_WAKE` on `word` in a loop;
/// asserts that every run returns `expected`, no earlier than `TIMEOUT` and within `BOUND`.
fn under_wake_spam<R: PartialEq + std::fmt::Debug>(
    what: &str,
    word: &AtomicU32,
    expected: R,
    f: impl Fn() -> R,
) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..SPAMMERS {
            sc.spawn(|| {
                // Relaxed: a stop flag; nothing is published through it.
                while !stop.load(Ordering::Relaxed) {
                    futex::wake_all(word);
                }
            });
        }
        let mut worst = Duration::ZERO;
        let _slack = TimerSlack::set(SLACK);
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            let r = f();
            let took = t0.elapsed();
            assert_eq!(r, expected, "{what}");
            assert!(took >= TIMEOUT, "{what}: returned after {took:?}");
            worst = worst.max(took);
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!("{what}: worst {worst:?}");
        assert!(
            worst < BOUND,
            "{what}: a {TIMEOUT:?} wait took {worst:?} under a flood of wakes"
        );
    });
}

/// Sets the calling thread's timer slack (how late the kernel may fire its timers, futex
/// timeouts included) until dropped.
struct TimerSlack;

impl TimerSlack {
    fn set(slack: Duration) -> TimerSlack {
        // SAFETY: `prctl(PR_SET_TIMERSLACK, ns)` only sets an attribute of this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack.as_nanos() as libc::c_ulong) };
        TimerSlack
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        // SAFETY: as in `set`; 0 restores the default slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 0 as libc::c_ulong) };
    }
}

#[test]
fn event_wait_timeout_honours_its_deadline_under_a_flood_of_wakes() {
    watchdog(LIMIT);
    let e = Event::new();
    under_wake_spam("Event::wait_timeout", e.word(), Err(Timeout), || {
        e.wait_timeout(TIMEOUT)
    });
    under_wake_spam("Event::wait_until", e.word(), Err(Timeout), || {
        e.wait_until(Instant::now() + TIMEOUT)
    });
}

#[test]
fn semaphore_acquire_timeout_honours_its_deadline_under_a_flood_of_wakes() {
    watchdog(LIMIT);
    let s = Semaphore::new(0);
    under_wake_spam(
        "Semaphore::acquire_timeout",
        s.words().1,
        Err(Timeout),
        || s.acquire_timeout(TIMEOUT),
    );
    let b = BoundedSemaphore::new(0);
    under_wake_spam(
        "BoundedSemaphore::acquire_until",
        b.words().1,
        Err(Timeout),
        || b.acquire_until(Instant::now() + TIMEOUT),
    );
}

#[test]
fn barrier_wait_timeout_honours_its_deadline_under_a_flood_of_wakes() {
    watchdog(LIMIT);
    let b = Barrier::new(2);
    under_wake_spam(
        "Barrier::wait_timeout",
        b.words().0,
        Err(BarrierError::Timeout),
        || {
            let r = b.wait_timeout(TIMEOUT).map(|r| r.is_leader());
            b.reset();
            r
        },
    );
}

/// The flood comes from another process (the futex is shared: the kernel matches the
/// word by its page).
#[test]
fn event_wait_timeout_honours_its_deadline_under_wakes_from_another_process() {
    watchdog(LIMIT);
    let mem = common::SharedMem::<Event>::new(1);
    let e = mem.get();
    let pids = fork_children(1, |_| {
        loop {
            futex::wake_all(e.word());
        }
    });
    let mut worst = Duration::ZERO;
    let _slack = TimerSlack::set(SLACK);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        assert_eq!(e.wait_timeout(TIMEOUT), Err(Timeout));
        worst = worst.max(t0.elapsed());
    }
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
        libc::waitpid(pids[0], std::ptr::null_mut(), 0);
    }
    assert!(
        worst < BOUND,
        "a {TIMEOUT:?} wait took {worst:?} under a flood of wakes from another process"
    );
}
