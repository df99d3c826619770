//! Semaphore, Event, Barrier and Queue within one process: timeouts, errors, broken
//! barriers, and hostile bytes in their words.

mod common;

use std::time::{Duration, Instant};

use common::watchdog_unless_miri as watchdog;
use shmstate::sync::Ordering;
use shmstate::{
    Barrier, BarrierError, BoundedSemaphore, Event, Full, PushTimeoutError, Queue, ReleaseError,
    Semaphore, Timeout,
};

const LIMIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

/// Asserts that `f` returns no earlier than `d` after it starts.
fn times_out_after<R>(d: Duration, f: impl FnOnce(Duration) -> R) -> R {
    let t0 = Instant::now();
    let r = f(d);
    let took = t0.elapsed();
    assert!(
        took >= d,
        "returned after {took:?}, before its {d:?} timeout"
    );
    r
}

/// A small deterministic generator of hostile words.
fn garbage(n: usize) -> impl Iterator<Item = u32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let fixed = [
        0,
        1,
        2,
        3,
        u32::MAX,
        u32::MAX - 1,
        1 << 31,
        1 << 30,
        0xFFFF,
        0x1_0000,
    ];
    fixed.into_iter().chain((0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u32
    }))
}

#[test]
fn timed_waits_return_timeout_and_never_before_the_deadline() {
    watchdog(LIMIT);
    let s = Semaphore::new(0);
    assert_eq!(
        times_out_after(SHORT, |d| s.acquire_timeout(d)),
        Err(Timeout)
    );
    let b = BoundedSemaphore::new(0);
    assert_eq!(
        times_out_after(SHORT, |d| b.acquire_timeout(d)),
        Err(Timeout)
    );
    let e = Event::new();
    assert_eq!(times_out_after(SHORT, |d| e.wait_timeout(d)), Err(Timeout));
    let q = Queue::<u32, 2>::new();
    assert_eq!(times_out_after(SHORT, |d| q.pop_timeout(d)), Err(Timeout));
    q.push(1);
    q.push(2);
    assert_eq!(
        times_out_after(SHORT, |d| q.push_timeout(3, d)),
        Err(PushTimeoutError(3))
    );
    let bar = Barrier::new(2);
    assert_eq!(
        times_out_after(SHORT, |d| bar.wait_timeout(d)),
        Err(BarrierError::Timeout)
    );
}

/// The `_until` forms: the same error at the same deadline; a timed-out push hands its item
/// back, and every error converts into the crate's one `Timeout` for `?`.
#[test]
fn until_waits_return_timeout_and_never_before_the_deadline() {
    watchdog(LIMIT);
    let until = |d: Duration| Instant::now() + d;
    let s = Semaphore::new(0);
    assert_eq!(
        times_out_after(SHORT, |d| s.acquire_until(until(d))),
        Err(Timeout)
    );
    let b = BoundedSemaphore::new(0);
    assert_eq!(
        times_out_after(SHORT, |d| b.acquire_until(until(d))),
        Err(Timeout)
    );
    let e = Event::new();
    assert_eq!(
        times_out_after(SHORT, |d| e.wait_until(until(d))),
        Err(Timeout)
    );
    let q = Queue::<u32, 1>::new();
    assert_eq!(
        times_out_after(SHORT, |d| q.pop_until(until(d))),
        Err(Timeout)
    );
    q.push(1);
    let err = times_out_after(SHORT, |d| q.push_until(2, until(d))).unwrap_err();
    assert_eq!(err.into_inner(), 2);
    assert_eq!(Timeout::from(err), Timeout);
    assert_eq!(q.pop(), 1, "the timed-out push left the queue as it was");
    let bar = Barrier::new(2);
    assert_eq!(
        times_out_after(SHORT, |d| bar.wait_until(until(d))),
        Err(BarrierError::Timeout)
    );
    assert_eq!(BarrierError::from(Timeout), BarrierError::Timeout);
    // A deadline already past: no wait at all, still the error.
    assert_eq!(s.acquire_until(Instant::now()), Err(Timeout));
    assert_eq!(e.wait_until(Instant::now()), Err(Timeout));
    assert_eq!(q.pop_until(Instant::now()), Err(Timeout));
}

#[test]
fn timed_waits_succeed_when_released_in_time() {
    watchdog(LIMIT);
    let (s, e, q, b) = (
        Semaphore::new(0),
        Event::new(),
        Queue::<u32, 1>::new(),
        Barrier::new(2),
    );
    std::thread::scope(|sc| {
        sc.spawn(|| {
            s.release().unwrap();
            e.set();
            q.push(5);
            b.wait_timeout(LIMIT).unwrap();
        });
        assert_eq!(s.acquire_timeout(LIMIT), Ok(()));
        assert_eq!(e.wait_timeout(LIMIT), Ok(()));
        assert_eq!(q.pop_timeout(LIMIT), Ok(5));
        b.wait_timeout(LIMIT).unwrap();
    });
}

#[test]
fn bounded_semaphore_refuses_release_above_its_bound() {
    let s = BoundedSemaphore::new(2);
    assert_eq!(s.release(), Err(ReleaseError::AboveBound { bound: 2 }));
    assert!(s.try_acquire());
    assert_eq!(s.release_n(2), Err(ReleaseError::AboveBound { bound: 2 }));
    s.release().unwrap();
    assert_eq!(s.value(), 2);
    // A zeroed one (as a region hands it out before `init`) refuses every release.
    let z = BoundedSemaphore::default();
    assert_eq!(z.release(), Err(ReleaseError::AboveBound { bound: 0 }));
    z.init(1);
    assert!(z.try_acquire());
    z.release().unwrap();
}

#[test]
fn semaphore_overflow_is_an_error_and_changes_nothing() {
    let s = Semaphore::new(u32::MAX - 1);
    s.release().unwrap();
    assert_eq!(s.release(), Err(ReleaseError::Overflow));
    assert_eq!(s.release_n(5), Err(ReleaseError::Overflow));
    assert_eq!(s.value(), u32::MAX);
}

#[test]
fn barrier_breaks_on_timeout_for_every_waiter_until_reset() {
    watchdog(LIMIT);
    let b = Barrier::new(3);
    std::thread::scope(|sc| {
        // One party waits without a timeout; the other times out and breaks the barrier.
        let patient = sc.spawn(|| b.wait());
        let r = b.wait_timeout(SHORT);
        assert!(
            r == Err(BarrierError::Timeout) || r == Err(BarrierError::Broken),
            "{r:?}"
        );
        assert_eq!(patient.join().unwrap(), Err(BarrierError::Broken));
    });
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    b.reset();
    assert!(!b.is_broken());
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| b.wait().unwrap())).collect();
        let leaders = hs
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|r| r.is_leader())
            .count();
        assert_eq!(leaders, 1);
    });
}

#[test]
fn barrier_reset_breaks_the_current_round() {
    watchdog(LIMIT);
    let b = Barrier::new(2);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| b.wait());
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        b.reset();
        assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
    });
}

/// A timed wait whose deadline passes during its spin returns `Timeout` without
/// announcing itself (bit 1, "may sleep", stays clear: the next `set` owes it no wake).
#[test]
fn an_event_wait_past_its_deadline_in_the_spin_sets_no_flag() {
    watchdog(LIMIT);
    let e = Event::new();
    assert_eq!(e.wait_timeout(Duration::ZERO), Err(Timeout));
    assert_eq!(e.wait_until(Instant::now()), Err(Timeout));
    assert_eq!(e.word().load(Ordering::Relaxed) & 2, 0);
    e.set();
    assert_eq!(e.wait_timeout(Duration::ZERO), Ok(()));
}

#[test]
fn event_set_then_clear_still_releases_the_waiters_of_that_set() {
    watchdog(LIMIT);
    let e = Event::new();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| e.wait_timeout(LIMIT));
        // Not a sleep: the waiter has read the generation once it announces itself in
        // the word's "may sleep" bit (bit 1), so the set below is one it must see.
        while e.word().load(Ordering::Relaxed) & 2 == 0 {
            std::thread::yield_now();
        }
        e.set();
        e.clear();
        assert_eq!(h.join().unwrap(), Ok(()));
    });
    assert!(!e.is_set());
}

#[test]
fn hostile_semaphore_words_never_hang_or_panic() {
    watchdog(LIMIT);
    for g in garbage(200) {
        for w in garbage(3) {
            let s = Semaphore::default();
            let (count, waiters) = s.words();
            count.store(g, Ordering::Relaxed);
            waiters.store(w, Ordering::Relaxed);
            let _ = s.try_acquire();
            let _ = s.acquire_timeout(Duration::ZERO);
            let _ = s.release();
            let _ = s.release_n(g);
            let b = BoundedSemaphore::default();
            let (count, waiters, bound) = b.words();
            count.store(g, Ordering::Relaxed);
            waiters.store(w, Ordering::Relaxed);
            bound.store(w, Ordering::Relaxed);
            let _ = b.try_acquire();
            let _ = b.release();
            let _ = b.release_n(u32::MAX);
        }
    }
}

#[test]
fn hostile_event_words_never_hang_or_panic() {
    watchdog(LIMIT);
    for g in garbage(500) {
        let e = Event::new();
        e.word().store(g, Ordering::Relaxed);
        let was_set = g & 1 != 0;
        assert_eq!(e.is_set(), was_set);
        assert_eq!(e.wait_timeout(Duration::from_micros(50)).is_ok(), was_set);
        e.set();
        assert_eq!(e.wait_timeout(Duration::ZERO), Ok(()));
        e.clear();
        assert!(!e.is_set());
    }
}

#[test]
fn hostile_barrier_words_never_hang_or_panic() {
    watchdog(LIMIT);
    for state in garbage(300) {
        for parties in garbage(5) {
            let b = Barrier::default();
            let (s, p) = b.words();
            s.store(state, Ordering::Relaxed);
            p.store(parties, Ordering::Relaxed);
            let _ = b.wait_timeout(Duration::from_micros(50));
            let _ = b.wait_timeout(Duration::ZERO);
            b.reset();
            let _ = b.wait_timeout(Duration::ZERO);
            let _ = (b.n_waiting(), b.is_broken(), format!("{b:?}"));
            b.abort();
            assert_eq!(b.wait_timeout(Duration::ZERO), Err(BarrierError::Broken));
        }
    }
    // A garbage arrival count at or above the party count ends the round at once.
    let b = Barrier::new(3);
    b.words().0.store(0xFFFF, Ordering::Relaxed);
    assert!(b.wait().unwrap().is_leader());
    // No valid party count: broken, not a hang.
    assert_eq!(Barrier::default().wait(), Err(BarrierError::Broken));
}

#[test]
fn hostile_queue_indices_are_reset_or_taken_modulo_the_capacity() {
    watchdog(LIMIT);
    let q = Queue::<u64, 4>::new();
    let hs: Vec<u32> = garbage(200).collect();
    for pair in hs.windows(2) {
        q.set_raw_indices(pair[0], pair[1]);
        let len = q.len();
        assert!(len <= 4, "len {len}");
        let mut popped = 0;
        while q.try_pop().is_some() {
            popped += 1;
            assert!(popped <= 4);
        }
        assert_eq!(popped, len);
        q.push(1);
        assert_eq!(q.try_pop(), Some(1));
        // In-range indices that wrap the ring work as a queue.
        q.set_raw_indices(7, 7);
        for i in 0..4 {
            q.try_push(i).unwrap();
        }
        assert_eq!(q.try_push(9), Err(Full(9)));
        assert_eq!((0..4).map(|_| q.pop()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}

#[test]
fn barrier_abort_breaks_the_current_round_and_later_waits_until_reset() {
    watchdog(LIMIT);
    let b = Barrier::new(2);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| b.wait());
        while b.n_waiting() == 0 {
            std::thread::yield_now();
        }
        b.abort();
        assert_eq!(h.join().unwrap(), Err(BarrierError::Broken));
    });
    assert!(b.is_broken());
    assert_eq!(b.wait_timeout(LIMIT), Err(BarrierError::Broken));
    b.reset();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| b.wait().unwrap().is_leader());
        let mine = b.wait().unwrap().is_leader();
        assert!(mine ^ h.join().unwrap(), "one leader");
    });
}

/// A `Queue` lock word naming a live thread with the stamp of its own start time is a
/// live holder's: `try_push` / `try_pop` give up (`Full`, `None`). With another stamp it
/// is a dead holder's whose TID that thread got (the kernel reuses TIDs): they take the
/// lock over (a probe) and go on. A lock word is the holder's TID in bits 0..22 and its
/// stamp, `(start time % 255) + 1`, in bits 22..30.
#[test]
#[cfg_attr(miri, ignore = "reads /proc")]
fn a_queue_lock_naming_a_live_thread_with_another_stamp_is_a_dead_holders() {
    watchdog(Duration::from_secs(60));
    let Some((tid, own)) = common::live_thread_with_stamp() else {
        eprintln!("skipped: /proc shows no start time here");
        return;
    };
    let other = own % 255 + 1;
    for (stamp, live) in [(own, true), (other, false)] {
        let q = Queue::<u64, 4>::new();
        q.push(7);
        q.raw_lock()
            .word()
            .store(tid | stamp << 22, Ordering::Relaxed);
        let what = format!("stamp {stamp} (own {own})");
        assert_eq!(q.try_pop(), if live { None } else { Some(7) }, "{what}");
        q.raw_lock()
            .word()
            .store(tid | stamp << 22, Ordering::Relaxed);
        assert_eq!(q.try_push(8).is_ok(), !live, "{what}");
    }
}
