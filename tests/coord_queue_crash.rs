//! The queue's crash windows (see the table in `src/coord/queue.rs`): a process killed at
//! each step of a push or a pop, through the queue's failpoint hooks, and what the
//! survivors see.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, watchdog};
use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{Elem, Kind, Queue, SharedSized, TypeTag};

const LIMIT: Duration = Duration::from_secs(60);
/// How long a survivor may take to see the repair: a probe slice or a sleep slice is
/// 10 ms at most; this is generous for a loaded machine, and far below the "forever" (or
/// the 30 s deadline) that a lost notify costs without the slices.
const REPAIRED_WITHIN: Duration = Duration::from_secs(2);

#[repr(C)]
struct Test {
    q: Queue<u64, 2>,
    /// Set by the child when it reached its failpoint.
    reached: AtomicU32,
    /// What the child's failpoint saw (the item it read).
    seen: AtomicU64,
}
// SAFETY: a `Queue` (itself `SharedSized`) and atomics: zero and every bit pattern valid,
// no pointers, `Sync`.
unsafe impl SharedSized for Test {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 41), Elem::NONE);
}

impl Test {
    /// In the child: records `seen` and that the failpoint was reached.
    fn reach(&self, seen: u64) {
        // Relaxed: published by the Release store below.
        self.seen.store(seen, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `kill_at_failpoint`.
        self.reached.store(1, Ordering::Release);
    }
}

/// Forks a child that runs `failpoint` (a hook that hangs holding the lock), waits until
/// it reached the failpoint, SIGKILLs and reaps it. Returns what the failpoint saw.
fn kill_at_failpoint(t: &Test, failpoint: impl Fn(&Test)) -> u64 {
    // Relaxed: reset before the fork, which orders it for the child.
    t.reached.store(0, Ordering::Relaxed);
    let pids = fork_children(1, |_| failpoint(t));
    // Acquire: pairs with the child's Release store in `reach`.
    while t.reached.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    assert!(t.q.raw_lock().is_locked(), "the failpoint holds the lock");
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
        libc::waitpid(pids[0], std::ptr::null_mut(), 0);
    }
    t.seen.load(Ordering::Relaxed)
}

/// Whether thread `tid` of this process is blocked in the `futex` system call now.
fn asleep(tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.starts_with(&format!("{} ", libc::SYS_futex)))
}

/// Runs `op` on a thread of this process, which must fall asleep in it (waiting for an
/// item or for room), then kills a child at `failpoint`; `op`'s result must arrive within
/// `REPAIRED_WITHIN` *without any other operation on the queue*. `unstick` ends `op` if
/// it does not (so that the test reports instead of hanging).
fn waiter_gets_through_without_another_operation<R: Send + PartialEq + core::fmt::Debug>(
    t: &Test,
    op: impl FnOnce(&Test) -> R + Send,
    failpoint: impl Fn(&Test),
    expected: R,
    unstick: impl FnOnce(&Test),
) {
    let tid = AtomicU32::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
            tx.send(op(t)).unwrap();
        });
        while tid.load(Ordering::Relaxed) == 0 || !asleep(tid.load(Ordering::Relaxed)) {
            std::thread::yield_now();
        }
        kill_at_failpoint(t, failpoint);
        let t0 = Instant::now();
        let got = rx.recv_timeout(REPAIRED_WITHIN);
        if got.is_err() {
            unstick(t);
        }
        let took = t0.elapsed();
        assert_eq!(
            got.ok(),
            Some(expected),
            "the waiter slept on for {took:?} after the death"
        );
    });
}

#[test]
fn pop_gets_an_item_whose_producer_died_before_notifying_without_another_operation() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    waiter_gets_through_without_another_operation(
        t,
        |t| t.q.pop(),
        |t| t.q.push_then_hang(7, || t.reach(0)),
        7,
        |t| t.q.push(99),
    );
    assert!(t.q.is_empty());
}

#[test]
fn pop_timeout_gets_an_item_whose_producer_died_before_notifying_without_another_operation() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    waiter_gets_through_without_another_operation(
        t,
        |t| t.q.pop_timeout(Duration::from_secs(30)),
        |t| t.q.push_then_hang(7, || t.reach(0)),
        Ok(7),
        |t| t.q.push(99),
    );
}

#[test]
fn push_gets_room_freed_by_a_consumer_that_died_before_notifying_without_another_operation() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    t.q.push(1);
    t.q.push(2);
    waiter_gets_through_without_another_operation(
        t,
        |t| t.q.push(3),
        |t| t.q.pop_then_hang(|item| t.reach(item)),
        (),
        |t| {
            let _ = t.q.pop();
        },
    );
    // The dead consumer took item 1 with it; 2 and 3 are left, in order.
    assert_eq!(t.seen.load(Ordering::Relaxed), 1);
    assert_eq!((t.q.pop(), t.q.pop()), (2, 3));
}

#[test]
fn a_producer_killed_between_its_slot_write_and_its_commit_pushed_nothing() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    t.q.push(1);
    kill_at_failpoint(t, |t| t.q.push_written_then_hang(66, || t.reach(0)));
    // Before any repair: the committed length, without the lock.
    assert_eq!(t.q.len(), 1);
    // The repair (the next operation recovers the lock): the queue as before the push.
    t.q.push(2);
    assert_eq!(t.q.len(), 2);
    assert_eq!((t.q.pop(), t.q.pop()), (1, 2));
    assert_eq!(
        t.q.try_pop(),
        None,
        "the uncommitted 66 was never in the queue"
    );
    assert!(
        !t.q.raw_lock().mark_is_set(),
        "recovered and marked consistent"
    );
}

#[test]
fn a_consumer_killed_between_its_slot_read_and_its_commit_popped_nothing() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    t.q.push(1);
    t.q.push(2);
    let read = kill_at_failpoint(t, |t| t.q.pop_read_then_hang(|item| t.reach(item)));
    assert_eq!(read, 1, "the failpoint read the head item");
    assert_eq!(t.q.len(), 2);
    // The next pop recovers the lock and gets the item the dead consumer did not commit.
    assert_eq!(t.q.try_pop(), Some(1));
    assert_eq!(t.q.pop(), 2);
    assert!(t.q.is_empty());
}

#[test]
fn a_consumer_killed_after_its_commit_took_its_item_with_it() {
    watchdog(LIMIT);
    let mem = SharedMem::<Test>::new(1);
    let t = mem.get();
    t.q.push(1);
    t.q.push(2);
    let popped = kill_at_failpoint(t, |t| t.q.pop_then_hang(|item| t.reach(item)));
    assert_eq!(popped, 1);
    assert_eq!(t.q.len(), 1, "the commit is in the indices");
    assert_eq!(t.q.pop(), 2);
    assert_eq!(t.q.try_pop(), None);
}
