//! Unit tests of the probe discipline of [`SeqLock`]'s waits (they count probes and
//! sleeps through hooks in the wait code).

use std::cell::Cell;
use std::time::Duration;

use super::*;
use crate::sync::{Ordering, fence};

thread_local! {
    /// Owner probes made by this thread's waits.
    pub(crate) static PROBES: Cell<u64> = const { Cell::new(0) };
    /// Futex-wait slices this thread's waits began.
    pub(super) static SLEEPS: Cell<u64> = const { Cell::new(0) };
}

/// This thread's (probes, sleeps) so far.
fn counts() -> (u64, u64) {
    (PROBES.with(Cell::get), SLEEPS.with(Cell::get))
}

/// Waits (bounded) until someone has announced a sleep on `s`'s writer word (the
/// WAITERS bit).
fn until_waiters(s: &SeqLock<u64>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Relaxed: a poll; the lock protocol orders the rest.
    while s.writer.load(Ordering::Relaxed) & WAITERS == 0 {
        assert!(Instant::now() < deadline, "the waiter never went to sleep");
        std::thread::yield_now();
    }
}

const ROUNDS: u64 = 200;

/// A reader that sleeps through writes of a live writer, woken by each write's end,
/// probes the writer only when a sleep slice runs out without a wake (rare: only if
/// this thread is descheduled for a whole slice), not before every sleep.
///
/// The bound is loose on purpose: on a loaded 2-core machine a wake often arrives after
/// the 50 µs first slice has passed, which rightly costs a probe; a probe before every
/// sleep (`probes == sleeps`) still fails it.
#[test]
#[cfg_attr(miri, ignore = "hundreds of futex round trips")]
fn reader_woken_by_live_writes_does_not_probe_per_sleep() {
    let s = SeqLock::new(0u64);
    let (probes, sleeps) = std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut last = 0;
            while last < ROUNDS {
                last = s.read_timeout(Duration::from_secs(60)).unwrap();
            }
            counts()
        });
        for i in 1..=ROUNDS {
            // A write that stays open until the reader sleeps on it.
            s.lock_writer();
            let odd = s.begin_write();
            fence(Ordering::Release);
            s.data.store(&i);
            until_waiters(&s);
            s.end_write(odd);
            s.unlock_writer();
            if reader.is_finished() {
                break;
            }
        }
        reader.join().unwrap()
    });
    eprintln!("reader: {sleeps} sleeps, {probes} probes");
    assert!(sleeps >= ROUNDS / 2, "the reader slept only {sleeps} times");
    assert!(
        probes <= sleeps * 3 / 4,
        "{probes} probes for {sleeps} sleeps"
    );
}

/// The same for a writer waiting for the write lock held by a live writer.
#[test]
#[cfg_attr(miri, ignore = "hundreds of futex round trips")]
fn writer_woken_by_live_unlocks_does_not_probe_per_sleep() {
    let s = SeqLock::new(0u64);
    let s = &s;
    let (probes, sleeps) = std::thread::scope(|sc| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
        let waiter = sc.spawn(move || {
            for _ in 0..ROUNDS {
                rx.recv().unwrap();
                s.write(1);
                back_tx.send(()).unwrap();
            }
            counts()
        });
        for _ in 0..ROUNDS {
            s.lock_writer();
            tx.send(()).unwrap();
            until_waiters(s);
            s.unlock_writer();
            back_rx.recv().unwrap();
        }
        waiter.join().unwrap()
    });
    eprintln!("writer: {sleeps} sleeps, {probes} probes");
    assert!(sleeps >= ROUNDS / 2, "the waiter slept only {sleeps} times");
    assert!(
        probes <= sleeps * 3 / 4,
        "{probes} probes for {sleeps} sleeps"
    );
}

/// `unlock_writer` releases only a lock that names the calling thread: a child forked
/// (by a signal handler or an allocator) between its parent's lock and release must not
/// free the parent's lock. Here the word names another thread (init).
#[test]
fn unlock_writer_leaves_a_lock_that_names_another_thread() {
    let s = SeqLock::new(0u64);
    s.writer.store(1 | WAITERS, Ordering::Relaxed);
    s.unlock_writer();
    assert_eq!(s.writer.load(Ordering::Relaxed), 1 | WAITERS);
    s.writer.store(0, Ordering::Relaxed);
    s.lock_writer();
    s.unlock_writer();
    assert_eq!(
        s.writer.load(Ordering::Relaxed),
        0,
        "its own lock is released"
    );
}

/// A writer word naming a live thread with its own stamp is a live writer's (a timed lock
/// times out); with another stamp it is a dead writer's whose TID that thread got: taken
/// over within the deadline. Garbage owner bits (bit 30, a stamp without a TID) are
/// taken over too.
#[test]
#[cfg(not(miri))]
fn a_live_tid_with_another_stamp_is_a_dead_writers() {
    let thread = owner::LiveThread::start(owner::current_stamped);
    let live = thread.id();
    let stamp = (live & owner::STAMP_MASK) >> owner::STAMP_SHIFT;
    let s = SeqLock::new(0u64);
    let soon = || Some(Instant::now() + Duration::from_millis(20));
    let later = || Some(Instant::now() + Duration::from_secs(10));
    for garbage in [1 << 30 | live, owner::STAMP_MASK] {
        s.writer.store(garbage, Ordering::Relaxed);
        assert_eq!(s.lock_writer_until(soon()), Ok(false), "{garbage:#x}");
        s.unlock_writer();
    }
    if stamp != 0 {
        s.writer.store(live, Ordering::Relaxed);
        assert_eq!(s.lock_writer_until(soon()), Err(Timeout), "live");
        let other = live & owner::STAMPED_TID_MASK | (stamp % 255 + 1) << owner::STAMP_SHIFT;
        s.writer.store(other | WAITERS, Ordering::Relaxed);
        assert_eq!(s.lock_writer_until(later()), Ok(false), "another stamp");
        s.unlock_writer();
        assert_eq!(s.writer.load(Ordering::Relaxed), 0);
    } else {
        eprintln!("skipped the stamp half: /proc shows no start time here");
    }
    drop(thread);
}
