//! A waker killed between its state change and its `FUTEX_WAKE` strands nobody: the
//! Event's setter, the Semaphore's releaser and the Barrier's leader each die at that step
//! (a forked process runs the `*_without_wake` hook, announces it, and is SIGKILLed), while
//! a waiter in another process sleeps in the untimed wait. The waiter must return within a
//! bound (its sleep slice re-checks the condition), and later calls must work.

mod common;

use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, wait_until_asleep_in_futex, watchdog};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{Barrier, Elem, Event, Kind, Semaphore, SharedSized, TypeTag};

const LIMIT: Duration = Duration::from_secs(60);
/// How long a stranded waiter may take to notice, with a generous margin: one sleep slice
/// is 10 ms; a waiter that only a wake could free never returned.
const BOUND: Duration = Duration::from_secs(2);

/// A primitive under test plus the dying waker's "state changed" flag.
#[repr(C)]
#[derive(Default)]
struct Dying<T> {
    obj: T,
    changed: AtomicU32,
}
// SAFETY: a `SharedSized` primitive and an atomic: zero and every bit pattern valid, no
// pointers, `Sync`.
unsafe impl SharedSized for Dying<Event> {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 20), Elem::NONE);
}
// SAFETY: as above.
unsafe impl SharedSized for Dying<Semaphore> {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 21), Elem::NONE);
}
// SAFETY: as above.
unsafe impl SharedSized for Dying<Barrier> {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 22), Elem::NONE);
}

/// Forks a waker that runs `change` (a state change without its wake), announces it in
/// `changed`, and hangs; SIGKILLs and reaps it once it has announced.
fn waker_dies_after(changed: &AtomicU32, change: impl Fn()) {
    let pid = waker_stops_after(changed, change);
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// As [`waker_dies_after`], but SIGSTOPs the waker instead; returns its pid (it dies with
/// the test thread, or when the caller kills it).
fn waker_stops_after(changed: &AtomicU32, change: impl Fn()) -> libc::pid_t {
    let pids = fork_children(1, |_| {
        change();
        // Release: pairs with the Acquire load below.
        changed.store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Acquire: pairs with the child's Release store after its state change.
    while changed.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    // SAFETY: stopping our own child.
    unsafe { libc::kill(pids[0], libc::SIGSTOP) };
    pids[0]
}

/// Waits up to `BOUND` for child `pid` to exit 0; returns how long it took. Kills it and
/// panics with `what` if it does not.
fn exits_within_bound(pid: libc::pid_t, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{what}: the waiter failed ({status:#x})"
            );
            return t0.elapsed();
        }
        if t0.elapsed() > BOUND {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            panic!("{what}: the waiter still slept {BOUND:?} after the waker died");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Bit 1 of the event word: a waiter may sleep (see `Event`'s field docs).
const EVENT_WAITERS: u32 = 2;

/// Forks a process that waits on `t.obj` (an event), and returns once it sleeps. (The
/// child checks nothing after its wait: the parent may have cleared the event again.)
fn event_sleeper(t: &Dying<Event>) -> libc::pid_t {
    let pids = fork_children(1, |_| t.obj.wait());
    while t.obj.word().load(Ordering::Relaxed) & EVENT_WAITERS == 0 {
        std::thread::yield_now();
    }
    wait_until_asleep_in_futex(pids[0]);
    pids[0]
}

#[test]
fn event_waiter_returns_when_the_setter_dies_before_waking() {
    watchdog(LIMIT);
    let mem = SharedMem::<Dying<Event>>::new(1);
    let t = mem.get();
    let waiter = event_sleeper(t);
    waker_dies_after(&t.changed, || t.obj.set_without_wake());
    assert!(t.obj.is_set());
    let took = exits_within_bound(waiter, "Event::wait after a dead set");
    eprintln!("waiter returned {took:?} after the setter died");
}

/// A setter stopped (SIGSTOP) between its read-modify-write and its wake is alive but
/// will not wake: its sleepers must not wait for it.
#[test]
fn event_waiter_returns_while_the_setter_is_stopped_before_waking() {
    watchdog(LIMIT);
    let mem = SharedMem::<Dying<Event>>::new(1);
    let t = mem.get();
    let waiter = event_sleeper(t);
    let setter = waker_stops_after(&t.changed, || t.obj.set_without_wake());
    exits_within_bound(waiter, "Event::wait while the setter is stopped");
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(setter, libc::SIGKILL);
        libc::waitpid(setter, std::ptr::null_mut(), 0);
    }
}

#[test]
fn event_set_and_clear_still_work_after_the_setter_died_before_waking() {
    watchdog(LIMIT);
    let mem = SharedMem::<Dying<Event>>::new(1);
    let t = mem.get();
    let waiter = event_sleeper(t);
    waker_dies_after(&t.changed, || t.obj.set_without_wake());
    // The dead setter must not have cleared the "may sleep" bit: the next set wakes.
    assert_ne!(
        t.obj.word().load(Ordering::Relaxed) & EVENT_WAITERS,
        0,
        "a setter that died before waking left no trace for the next set"
    );
    t.obj.clear();
    t.obj.set();
    exits_within_bound(waiter, "Event::wait after a dead set, clear() and set()");
    // And the event keeps working: a new sleeper, woken by the next set.
    t.obj.clear();
    let again = event_sleeper(t);
    t.obj.set();
    exits_within_bound(again, "Event::wait after the recovery");
}

#[test]
fn semaphore_acquirer_returns_when_the_releaser_dies_before_waking() {
    watchdog(LIMIT);
    let mem = SharedMem::<Dying<Semaphore>>::new(1);
    let t = mem.get();
    let (_, sleepers) = t.obj.words();
    let pids = fork_children(1, |_| t.obj.acquire());
    // Bit 0 of the sleepers word: the acquirer registered; then it sleeps.
    while sleepers.load(Ordering::Relaxed) & 1 == 0 {
        std::thread::yield_now();
    }
    wait_until_asleep_in_futex(pids[0]);
    waker_dies_after(&t.changed, || t.obj.release_without_wake().unwrap());
    let took = exits_within_bound(pids[0], "Semaphore::acquire after a dead release");
    eprintln!("acquirer returned {took:?} after the releaser died");
    assert_eq!(
        t.obj.value(),
        0,
        "the acquirer took the dead releaser's permit"
    );
    // Later releases and acquires work.
    t.obj.release().unwrap();
    assert!(t.obj.try_acquire());
}

#[test]
fn barrier_waiter_returns_when_the_leader_dies_before_waking() {
    watchdog(LIMIT);
    let mem = SharedMem::<Dying<Barrier>>::new(1);
    let t = mem.get();
    t.obj.init(2);
    let pids = fork_children(1, |_| {
        assert!(!t.obj.wait().unwrap().is_leader());
    });
    while t.obj.n_waiting() == 0 {
        std::thread::yield_now();
    }
    wait_until_asleep_in_futex(pids[0]);
    waker_dies_after(&t.changed, || {
        assert!(t.obj.wait_without_wake().unwrap().is_leader());
    });
    let took = exits_within_bound(pids[0], "Barrier::wait after a dead leader");
    eprintln!("waiter returned {took:?} after the leader died");
    // The next round works.
    std::thread::scope(|sc| {
        let h = sc.spawn(|| t.obj.wait().unwrap().is_leader());
        let mine = t.obj.wait().unwrap().is_leader();
        assert!(mine ^ h.join().unwrap(), "one leader");
    });
}
