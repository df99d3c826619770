//! `Mutex`, `RawMutex` and `ReentrantMutex` with real processes: mutual exclusion, the TID
//! cache after fork, timeouts, `try_lock`, persistent `OwnerDied`, hostile lock words.

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use common::watchdog_unless_miri as watchdog;
use common::{SharedMem, fork_children, wait_all};
use locks_support::{gettid, raise};
use shmstate::sync::Ordering::Relaxed;
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{
    Acquired, Elem, Kind, Mutex, RawMutex, ReentrantMutex, SharedSized, TimedLockError,
    TryLockError, TypeTag, Value,
};

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn mutex_excludes_across_four_processes() {
    watchdog(Duration::from_secs(300));
    const PER_CHILD: u64 = 200_000;
    let mem = SharedMem::<Mutex<u64>>::new(1);
    let m = mem.get();
    let pids = fork_children(4, |_| {
        for _ in 0..PER_CHILD {
            // A non-atomic read-modify-write: only exclusion keeps the total exact.
            let mut g = m.lock().unwrap();
            let v = *g;
            *g = v + 1;
        }
    });
    wait_all(&pids, Duration::from_secs(280));
    assert_eq!(*m.lock().unwrap(), 4 * PER_CHILD);
    assert!(!m.is_locked());
}

#[repr(C)]
struct Held {
    m: Mutex<u64>,
    r: ReentrantMutex<Value<u64>>,
    child_tid: AtomicU32,
    child_owner: AtomicU32,
    done: AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types and atomics: all-zero valid,
// any bytes valid, no pointers, Sync.
unsafe impl SharedSized for Held {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn forked_child_is_not_mistaken_for_its_parent() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Held>::new(1);
    let h = mem.get();
    // The parent holds both locks (and so has cached its TID) when it forks.
    let g = h.m.lock().unwrap();
    let rg = h.r.lock().unwrap();
    let pids = fork_children(1, |_| {
        // The child's TID cache must have been reset: it does not own the parent's locks.
        assert!(matches!(h.m.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(!h.r.is_owned_by_current_thread());
        assert!(matches!(h.r.try_lock(), Err(TryLockError::WouldBlock)));
        // And a lock it takes names its own TID.
        let raw = RawMutex::new();
        assert_eq!(raw.lock(), Acquired::Consistent);
        h.child_tid.store(gettid(), Ordering::Relaxed);
        h.child_owner.store(raw.owner().unwrap(), Ordering::Relaxed);
        raise(&h.done, 1);
    });
    wait_all(&pids, Duration::from_secs(50));
    assert_eq!(
        h.child_tid.load(Ordering::Relaxed),
        h.child_owner.load(Ordering::Relaxed)
    );
    assert_ne!(h.child_tid.load(Ordering::Relaxed), gettid());
    drop(rg);
    drop(g);
    assert!(!h.m.is_locked());
}

#[test]
fn timed_locks_time_out_and_never_early() {
    watchdog(Duration::from_secs(60));
    let m = Mutex::new(0u32);
    let r = ReentrantMutex::new(Value::new(0u32));
    let _g = m.lock().unwrap();
    let _rg = r.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for ms in [0, 1, 15, 60] {
                let t = Duration::from_millis(ms);
                let start = Instant::now();
                assert!(matches!(m.lock_timeout(t), Err(TimedLockError::Timeout)));
                assert!(start.elapsed() >= t);
                let start = Instant::now();
                assert!(matches!(
                    m.lock_until(start + t),
                    Err(TimedLockError::Timeout)
                ));
                assert!(Instant::now() >= start + t);
                let start = Instant::now();
                assert!(matches!(r.lock_timeout(t), Err(TimedLockError::Timeout)));
                assert!(start.elapsed() >= t);
            }
        });
    });
}

#[test]
fn try_lock_on_a_held_lock_returns_at_once() {
    watchdog(Duration::from_secs(60));
    let m = Mutex::new(0u32);
    let _g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // A try_lock that waited would wait at least one probe slice per call; CALLS
            // of them within CALLS ms (10 s) rule out any sleep of a slice's order (the
            // first is 50 µs; the others are longer); non-waiting ones take a few ms.
            // The margin is what keeps this from asserting speed: only a thread starved
            // of the CPU for seconds (a loaded CI machine) could come near the bound.
            // Fewer under Miri, which interprets every step.
            const CALLS: u32 = if cfg!(miri) { 200 } else { 10_000 };
            let start = Instant::now();
            for _ in 0..CALLS {
                assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            }
            let waited = CALLS * Duration::from_millis(1);
            assert!(
                start.elapsed() < waited,
                "try_lock waited: {:?}",
                start.elapsed()
            );
        });
    });
}

#[test]
fn reentrant_mutex_relocks_on_one_thread_and_excludes_others() {
    watchdog(Duration::from_secs(60));
    // Miri runs this too (threads only), far slower.
    let rounds = if cfg!(miri) { 50 } else { 10_000 };
    let m = ReentrantMutex::new(Value::new(0u64));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..rounds {
                    let a = m.lock().unwrap();
                    let b = m.lock().unwrap();
                    // A load and a store, not a `fetch_add`: only the lock keeps other
                    // threads from interleaving, so a lost update shows a broken exclusion.
                    b.store(b.load(Relaxed) + 1, Relaxed);
                    drop(b);
                    // The outer guard sees the nested guard's write (`&T` of both alive).
                    a.store(a.load(Relaxed) + 1, Relaxed);
                }
            });
        }
    });
    assert_eq!(m.lock().unwrap().load(Relaxed), 8 * rounds);
    assert!(!m.is_owned_by_current_thread());
}

#[test]
fn owner_died_persists_until_marked_consistent() {
    watchdog(Duration::from_secs(60));
    let m = Mutex::new(5u64);
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(m.lock().unwrap()));
    });
    // The thread exited holding the lock.
    let g = m.lock().unwrap_err().into_inner();
    assert_eq!(*g, 5);
    drop(g); // unlocked without marking: still inconsistent
    assert!(matches!(m.try_lock(), Err(TryLockError::OwnerDied(_))));
    let mut g = m.lock().unwrap_err().into_inner();
    g.mark_consistent();
    drop(g);
    assert_eq!(*m.lock().unwrap(), 5);
    assert!(m.try_lock().is_ok());
}

/// A TID that names no thread: a child that has exited and been reaped (under Miri, which
/// cannot fork, a thread that has exited).
fn dead_tid() -> u32 {
    if cfg!(miri) {
        return std::thread::spawn(gettid).join().unwrap();
    }
    let pids = fork_children(1, |_| {});
    wait_all(&pids, Duration::from_secs(10));
    pids[0] as u32
}

#[test]
fn hostile_lock_words_are_recovered_not_hung() {
    watchdog(Duration::from_secs(60));
    let dead = dead_tid();
    // (word, whether the next acquirer must be told OwnerDied). The word: a TID in bits
    // 0..22, the holder's stamp in 22..30, `OWNER_DIED` 30, `CONTENDED` 31.
    let cases = [
        (u32::MAX, true),       // TID 2^22 - 1 (none here), every flag
        (1 << 22, true),        // a stamp without a TID: garbage
        (0xFF << 22, true),     // the same
        (dead, true),           // a TID that no longer exists
        (dead | 1 << 31, true), // the same, CONTENDED
        (dead | 9 << 22, true), // the same, stamped
        (1 << 31, false),       // CONTENDED with no owner
        (1 << 30, true),        // unlocked, marked inconsistent
    ];
    for (word, died) in cases {
        let m = Mutex::new(1u64);
        m.raw().word().store(word, Ordering::Relaxed);
        let start = Instant::now();
        let r = m.lock_timeout(Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(5), "{word:#x} hung");
        let mut g = match r {
            Ok(g) => {
                assert!(!died, "{word:#x}: expected OwnerDied");
                g
            }
            Err(TimedLockError::OwnerDied(d)) => {
                assert!(died, "{word:#x}: unexpected OwnerDied");
                d.into_inner()
            }
            Err(TimedLockError::Timeout) => panic!("{word:#x}: timed out"),
        };
        *g += 1;
        g.mark_consistent();
        drop(g);
        // Usable again, consistent, unlocked.
        assert_eq!(*m.try_lock().unwrap(), 2);
        assert_eq!(m.raw().word().load(Ordering::Relaxed), 0);

        // `try_lock` never waits; garbage (no live owner named) is taken at once.
        let m = Mutex::new(1u64);
        m.raw().word().store(word, Ordering::Relaxed);
        // A plausible TID (a nonzero TID part) is not probed by try_lock.
        let plausible = word & 0x3F_FFFF != 0;
        match m.try_lock() {
            Ok(_) => assert!(!died),
            Err(TryLockError::OwnerDied(_)) => assert!(died && !plausible),
            Err(TryLockError::WouldBlock) => assert!(plausible),
        }
    }
}

/// A forked child inherits bitwise copies of its parent's guards. Dropping them there
/// (the child returns through the parent's scopes) is unlocking from another process: it
/// must change nothing, not even the nesting count, or the parent's lock is released while
/// its outer guard still gives access.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn reentrant_guards_dropped_in_a_forked_child_leave_the_parent_holding() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Held>::new(1);
    let h = mem.get();
    let outer = h.r.lock().unwrap();
    let inner = h.r.lock().unwrap();
    let mg = h.m.lock().unwrap();
    // SAFETY: the child drops its copies of the guards and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(mg);
            drop(inner);
            drop(outer);
        }))
        .is_ok();
        // SAFETY: ends the child without running the parent's handlers.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    wait_all(&[pid], Duration::from_secs(50));
    drop(inner);
    // The parent's outer guard is alive: the lock is still the parent's alone.
    assert!(h.r.is_owned_by_current_thread());
    assert!(h.m.is_locked());
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(h.r.try_lock(), Err(TryLockError::WouldBlock)));
            assert!(matches!(h.m.try_lock(), Err(TryLockError::WouldBlock)));
        });
    });
    drop(outer);
    drop(mg);
    assert!(!h.r.is_owned_by_current_thread());
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(h.r.try_lock().is_ok());
            assert!(h.m.try_lock().is_ok());
        });
    });
}

/// The `ReentrantMutex` words: a garbage lock word is recovered like a `Mutex`'s, and a
/// garbage nesting count left behind (a dead owner's, or hostile bytes) does not leak to
/// the next owner: its one guard releases the lock.
#[test]
fn hostile_reentrant_words_are_recovered_not_hung() {
    watchdog(Duration::from_secs(60));
    let dead = dead_tid();
    for word in [
        u32::MAX,
        1 << 22,
        dead,
        dead | 1 << 31,
        dead | 9 << 22,
        1 << 25,
    ] {
        for depth in [0, 1, 7, u32::MAX] {
            let r = ReentrantMutex::new(Value::new(1u64));
            // SAFETY: `ReentrantMutex` is `#[repr(C)]` with two `u32` atomics first (the
            // lock word, then the nesting count): this views them as what they are.
            let words =
                unsafe { &*(&r as *const ReentrantMutex<Value<u64>>).cast::<[AtomicU32; 2]>() };
            words[0].store(word, Ordering::Relaxed);
            words[1].store(depth, Ordering::Relaxed);
            let start = Instant::now();
            let g = match r.lock_timeout(Duration::from_secs(5)) {
                Err(TimedLockError::OwnerDied(d)) => d.into_inner(),
                Ok(_) => panic!("{word:#x}/{depth}: expected OwnerDied"),
                Err(TimedLockError::Timeout) => panic!("{word:#x}/{depth}: timed out"),
            };
            assert!(start.elapsed() < Duration::from_secs(5), "{word:#x} hung");
            g.mark_consistent();
            drop(g);
            assert!(
                !r.is_owned_by_current_thread(),
                "{word:#x}/{depth}: still held"
            );
            std::thread::scope(|s| {
                s.spawn(|| assert_eq!(r.try_lock().unwrap().load(Relaxed), 1));
            });
        }
    }
}

/// A peer that keeps rewriting the lock word (between values that name a live holder,
/// with and without the waiters flag, and a free word it takes back at once) cannot keep
/// a timed lock past its bound: every retry after a changed word checks the deadline.
#[test]
fn a_lock_word_rewritten_without_pause_keeps_timed_locks_bounded() {
    watchdog(Duration::from_secs(60));
    let m = RawMutex::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let me = gettid();
            let words = [me, me | 1 << 31, 0, me];
            let mut i = 0;
            while !stop.load(Relaxed) {
                m.word().store(words[i % words.len()], Relaxed);
                i += 1;
            }
        });
        for _ in 0..20 {
            let timeout = Duration::from_millis(5);
            let start = Instant::now();
            let got = m.lock_timeout(timeout);
            let took = start.elapsed();
            // Generous: the bound is the timeout plus a last look and a probe; the margin
            // is for a loaded machine.
            assert!(took < Duration::from_secs(2), "a timed lock took {took:?}");
            // Acquired or not, the word is the writer's again at once: nothing to release.
            let _ = got;
        }
        stop.store(true, Relaxed);
    });
}
