//! `Condvar` with real processes: a producer and a consumer hand over 100,000 items
//! through a one-slot buffer under a `Mutex`; timed waits.

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use common::watchdog_unless_miri as watchdog;
use common::{SharedMem, fork_children, wait_all, wait_until_asleep_in_futex};
use shmstate::sync::Ordering;
use shmstate::{Condvar, Elem, Kind, Mutex, SharedSized, TypeTag};

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Slot {
    full: u64,
    value: u64,
    /// Consumer's results: items received, their sum, and whether the order was right.
    received: u64,
    sum: u64,
    out_of_order: u64,
}

#[repr(C)]
struct Channel {
    slot: Mutex<Slot>,
    not_empty: Condvar,
    not_full: Condvar,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types.
unsafe impl SharedSized for Channel {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn condvar_hands_over_100k_items_between_processes() {
    watchdog(Duration::from_secs(240));
    const ITEMS: u64 = 100_000;
    let mem = SharedMem::<Channel>::new(1);
    let c = mem.get();
    let pids = fork_children(2, |i| {
        if i == 0 {
            for item in 1..=ITEMS {
                let mut g = c
                    .not_full
                    .wait_while(c.slot.lock().unwrap(), |s| s.full != 0)
                    .unwrap();
                g.value = item;
                g.full = 1;
                drop(g);
                c.not_empty.notify_one();
            }
        } else {
            for expected in 1..=ITEMS {
                let mut g = c
                    .not_empty
                    .wait_while(c.slot.lock().unwrap(), |s| s.full == 0)
                    .unwrap();
                let v = g.value;
                g.full = 0;
                g.received += 1;
                g.sum += v;
                if v != expected {
                    g.out_of_order += 1;
                }
                drop(g);
                c.not_full.notify_one();
            }
        }
    });
    wait_all(&pids, Duration::from_secs(220));
    let s = *c.slot.lock().unwrap();
    assert_eq!(s.received, ITEMS);
    assert_eq!(s.sum, ITEMS * (ITEMS + 1) / 2);
    assert_eq!(s.out_of_order, 0);
    assert_eq!(s.full, 0);
}

#[test]
fn condvar_timed_waits_return_and_never_early() {
    watchdog(Duration::from_secs(60));
    let m = Mutex::new(0u32);
    let cv = Condvar::new();
    let t = Duration::from_millis(20);
    let start = Instant::now();
    let (g, r) = cv.wait_timeout(m.lock().unwrap(), t).unwrap();
    assert!(r.timed_out());
    assert!(start.elapsed() >= t);
    let start = Instant::now();
    let (g, r) = cv.wait_timeout_while(g, t, |v| *v == 0).unwrap();
    assert!(r.timed_out());
    assert!(start.elapsed() >= t);
    drop(g);
    // Notified before the timeout: the condition is met, not timed out.
    std::thread::scope(|s| {
        s.spawn(|| {
            *m.lock().unwrap() = 1;
            cv.notify_all();
        });
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(30), |v| *v == 0)
            .unwrap();
        assert!(!r.timed_out());
        assert_eq!(*g, 1);
    });
}

#[repr(C)]
struct Waiting {
    m: Mutex<u32>,
    cv: Condvar,
    child_waiting: shmstate::sync::AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types and an atomic.
unsafe impl SharedSized for Waiting {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// A process killed inside `wait` leaves the "may have sleepers" bit set; the condvar
/// keeps working: later waiters are woken by `notify_one` (the dead one takes no wakeup), and a
/// waiter re-locks a mutex whose state the dead waiter left alone.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn condvar_works_after_a_waiting_process_is_killed() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Waiting>::new(1);
    let w = mem.get();
    let pids = fork_children(1, |_| {
        let g = w.m.lock().unwrap();
        locks_support::raise(&w.child_waiting, 1);
        // Never notified: waits until killed.
        let _ = w.cv.wait_while(g, |v| *v == 0);
    });
    locks_support::wait_for(&w.child_waiting, 1, Duration::from_secs(20));
    // The child released the mutex inside `wait`: it is waiting (or about to) now.
    drop(w.m.lock().unwrap());
    locks_support::kill(pids[0]);
    locks_support::reap(pids[0]);
    for round in 1..=20u32 {
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let g = w.cv.wait_while(w.m.lock().unwrap(), |v| *v < round);
                assert_eq!(*g.expect("nobody died holding the mutex"), round);
            });
            *w.m.lock().unwrap() = round;
            w.cv.notify_one();
            waiter.join().unwrap();
        });
    }
}

/// Bit 0 of a condvar's word (`Condvar::words().0`, see the field docs): a waiter may
/// sleep, so a notify must wake.
const SLEEPERS: u32 = 1;

/// The first `notify_one` after a waiter was killed asleep finds nobody and clears the
/// bit; later notifies with nobody waiting make no syscall (they leave the word alone).
/// The same for `notify_all`, which clears the bit at once.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn condvar_heals_after_a_waiter_is_killed_asleep() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Waiting>::new(1);
    let w = mem.get();
    let (word, _) = w.cv.words();
    for notify_all in [false, true] {
        let pids = fork_children(1, |_| {
            // Never notified: waits until killed.
            let _ = w.cv.wait_while(w.m.lock().unwrap(), |v| *v == 0);
        });
        // Handshake: the child's registration in the shared word, then its sleep.
        while word.load(Ordering::Relaxed) & SLEEPERS == 0 {
            std::thread::yield_now();
        }
        wait_until_asleep_in_futex(pids[0]);
        locks_support::kill(pids[0]);
        locks_support::reap(pids[0]);
        assert_ne!(
            word.load(Ordering::Relaxed) & SLEEPERS,
            0,
            "the dead waiter's bit"
        );
        if notify_all {
            w.cv.notify_all();
        } else {
            w.cv.notify_one();
        }
        assert_eq!(
            word.load(Ordering::Relaxed) & SLEEPERS,
            0,
            "the first notify after the death heals the word (notify_all: {notify_all})"
        );
        for _ in 0..3 {
            let before = word.load(Ordering::Relaxed);
            w.cv.notify_one();
            w.cv.notify_all();
            assert_eq!(word.load(Ordering::Relaxed), before, "no-wake path");
        }
    }
    // The mutex the dead waiters left unlocked (they released it inside `wait`).
    assert!(w.m.lock().is_ok());
}

/// Whatever bytes are in a condvar's words, notifies return, timed waits time out, and a
/// notified waiter wakes (a stray `SLEEPERS` costs one needless wake, then heals).
#[test]
fn hostile_condvar_words_never_hang_or_panic() {
    watchdog(Duration::from_secs(60));
    for seq in [
        u32::MAX,
        u32::MAX - 1,
        u32::MAX - 3,
        SLEEPERS,
        2,
        0x8000_0001,
    ] {
        let m = Mutex::new(0u32);
        let cv = Condvar::new();
        let (w0, w1) = cv.words();
        w0.store(seq, Ordering::Relaxed);
        w1.store(u32::MAX, Ordering::Relaxed);
        cv.notify_one();
        cv.notify_all();
        let t = Duration::from_millis(2);
        let start = Instant::now();
        let (g, r) = cv.wait_timeout(m.lock().unwrap(), t).unwrap();
        // Nobody notifies: a return is a timeout (never early) or a spurious wakeup.
        if r.timed_out() {
            assert!(start.elapsed() >= t);
        }
        drop(g);
        w0.store(seq, Ordering::Relaxed);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
                assert_eq!(*g, 1);
            });
            // Whether the waiter sleeps before or after this, on the hostile value or on
            // its own registration, the notify after the change must reach it.
            *m.lock().unwrap() = 1;
            cv.notify_one();
            waiter.join().unwrap();
        });
    }
}

/// `wait_until`/`wait_for` return by their deadline and never early, notified or not.
#[test]
fn condvar_bounded_waits_time_out_and_see_notifies() {
    watchdog(Duration::from_secs(60));
    let m = Mutex::new(0u32);
    let cv = Condvar::new();
    let t = Duration::from_millis(20);
    let start = Instant::now();
    let (g, r) = cv.wait_for(m.lock().unwrap(), t).unwrap();
    assert!(r.timed_out());
    assert!(start.elapsed() >= t);
    // A deadline in the past: at once, still holding the lock.
    let (g, r) = cv.wait_until(g, Instant::now()).unwrap();
    assert!(r.timed_out());
    drop(g);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut g = m.lock().unwrap();
            while *g == 0 {
                g = cv.wait_until(g, deadline).unwrap().0;
            }
            *g
        });
        *m.lock().unwrap() = 1;
        cv.notify_all();
        assert_eq!(waiter.join().unwrap(), 1);
    });
}

#[repr(C)]
struct Held {
    m: Mutex<u32>,
    cv: Condvar,
    locked: shmstate::sync::AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types and an atomic.
unsafe impl SharedSized for Held {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// A `wait_for` asleep on the condvar when a child takes the mutex and stops itself
/// (SIGSTOP): the wait times out and its re-lock meets the stopped holder. It must return
/// by its deadline (plus a generous margin) with `Timeout`, holding no lock, rather than
/// wait for the holder to resume (`wait_timeout`'s untimed re-lock does that: 2 s here).
///
/// The child must hold the mutex before the wait's deadline; if forking it took longer
/// than the timeout, or the wait ended before this thread saw it asleep (a loaded
/// machine), the case is repeated with a longer timeout.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn condvar_wait_for_ends_at_its_deadline_when_its_relock_meets_a_stopped_holder() {
    watchdog(Duration::from_secs(60));
    const STOPPED_FOR: Duration = Duration::from_secs(2);
    let mem = SharedMem::<Held>::new(1);
    let h = mem.get();
    for ms in [20, 50, 100, 250, 500, 1000] {
        let timeout = Duration::from_millis(ms);
        let tid = shmstate::sync::AtomicU32::new(0);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        h.locked.store(0, Ordering::Relaxed);
        let (timed_out, took, ordered) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                tid.store(locks_support::gettid(), Ordering::Relaxed);
                let t0 = Instant::now();
                let r = h.cv.wait_for(h.m.lock().unwrap(), timeout);
                let timed_out = matches!(r, Err(shmstate::TimedLockError::Timeout));
                drop(r);
                (timed_out, t0.elapsed(), t0)
            });
            while tid.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            let path = format!("/proc/self/task/{}/syscall", tid.load(Ordering::Relaxed));
            let futex = format!("{} ", libc::SYS_futex);
            while !std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(&futex)) {
                if waiter.is_finished() {
                    // Its wait ended (and the thread with it) before this thread saw it
                    // asleep (a loaded machine): not the case under test; retried with a
                    // longer timeout.
                    let _ = waiter.join();
                    return (false, Duration::ZERO, false);
                }
                std::thread::yield_now();
            }
            let pids = fork_children(1, |_| {
                let _ = h.m.raw().lock();
                locks_support::raise(&h.locked, 1);
                // SAFETY: `raise` has no preconditions; SIGSTOP stops us until SIGCONT.
                unsafe { libc::raise(libc::SIGSTOP) };
                // SAFETY: this thread took the lock above and has not unlocked it.
                unsafe { h.m.raw().unlock() };
            });
            let mut status = 0;
            // SAFETY: waitpid on our own child; WUNTRACED also reports it stopping.
            let r = unsafe { libc::waitpid(pids[0], &mut status, libc::WUNTRACED) };
            assert!(
                r == pids[0] && libc::WIFSTOPPED(status),
                "the holder did not stop"
            );
            // Acquire: pairs with the child's Release store in `raise`.
            assert_eq!(h.locked.load(Ordering::Acquire), 1);
            let seen = Instant::now();
            let pid = pids[0];
            s.spawn(move || {
                let _ = rx.recv_timeout(STOPPED_FOR);
                // SAFETY: resuming our own child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            });
            let (timed_out, took, t0) = waiter.join().unwrap();
            let _ = tx.send(());
            wait_all(&pids, Duration::from_secs(30));
            // The child held the mutex before `seen`: before the wait's deadline, the
            // wait's re-lock (after the deadline) met the held mutex.
            (timed_out, took, seen < t0 + timeout)
        });
        if !ordered {
            eprintln!(
                "the wait ended, or the holder stopped, after the {timeout:?} deadline; retrying"
            );
            continue;
        }
        assert!(
            took < timeout + Duration::from_millis(480),
            "a {timeout:?} wait_for took {took:?}: its re-lock waited for a stopped holder"
        );
        assert!(
            timed_out,
            "the re-lock cannot succeed while the holder is stopped"
        );
        return;
    }
    panic!("the holder never stopped before the waiter's deadline");
}

/// A notifier killed between its bump of the condvar's word and its wake (here: the word is
/// bumped, as a notify's first step does, and no wake follows) strands no waiter: an
/// untimed `wait` sleeps in bounded slices, re-checks the word, and returns.
#[test]
#[cfg_attr(miri, ignore = "waits for a 10 ms slice to run out")]
fn condvar_waiter_returns_when_the_notifier_dies_before_its_wake() {
    watchdog(Duration::from_secs(15));
    /// The sleepers word's tick and its "may sleep" bit (see `futex::sleepers`).
    const TICK: u32 = 1 << 2;
    const SLEEPERS: u32 = 1;
    let m = Mutex::new(0u32);
    let cv = Condvar::new();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = m.lock().unwrap();
            while *g == 0 {
                g = cv.wait(g).unwrap();
            }
            let _ = tx.send(*g);
        });
        // The waiter has registered (and so released the mutex to sleep).
        let (seq, _) = cv.words();
        while seq.load(Ordering::Relaxed) & SLEEPERS == 0 {
            std::thread::yield_now();
        }
        // The dead notifier's work: the condition set under the mutex, the word bumped, no
        // wake.
        *m.lock().unwrap() = 7;
        seq.fetch_add(TICK, Ordering::Release);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(7),
            "the waiter stayed asleep after a notifier died before its wake"
        );
    });
}
