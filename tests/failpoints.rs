//! Crash-window tests: a process is stopped at a named step of a protocol (a failpoint),
//! SIGKILLed there, and the documented repair is checked. Failpoints exist only in a build
//! with `--cfg shmstate_test_hooks` (see `src/failpoint.rs`); `.ci/run` runs this file so:
//!
//! ```sh
//! RUSTFLAGS="--cfg shmstate_test_hooks" CARGO_TARGET_DIR=target/hooks \
//!   cargo nextest run --test failpoints
//! ```
//!
//! Without the cfg this file is empty.
#![cfg(shmstate_test_hooks)]

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, wait_all, wait_until_asleep_in_futex, watchdog};
use locks_support::{kill, park_forever, reap};
use shmstate::failpoint::{Point, arm};
use shmstate::lock::rwlock::{READER_SLOTS, STRAY_BIT_AGE};
use shmstate::sync::Ordering;
use shmstate::{
    Condvar, Elem, Kind, Mutex, RwLock, RwLockWriteGuard, SharedSized, TimedLockError, TypeTag,
};

/// Bit 27 of an `RwLock`'s state (see `RawRwLock`'s field docs): write-locked.
const WRITE_LOCKED: u32 = 1 << 27;
/// Bit 28: a writer died holding the lock.
const OWNER_DIED: u32 = 1 << 28;
/// Bit 29: a writer drains.
const DRAINING: u32 = 1 << 29;
/// Bit 30: readers may sleep on the state.
const READERS_WAITING: u32 = 1 << 30;
/// Bit 31: writers may sleep on the notification word.
const WRITERS_WAITING: u32 = 1 << 31;

/// How long a repair may take at most here: the tables promise a slice or so (at most
/// 10 ms); the margin is for a loaded machine.
const REPAIR: Duration = Duration::from_secs(5);

/// Stops child `pid` (SIGSTOP) while it sleeps in a futex wait, so that it stays asleep
/// (and does not repair anything itself) while the test sets up a crash window around it.
/// A stop that catches it awake between two sleeps is undone and tried again.
fn stop_asleep_in_futex(pid: libc::pid_t) {
    loop {
        wait_until_asleep_in_futex(pid);
        signal(pid, libc::SIGSTOP);
        common::wait_until_stopped(pid);
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .expect("a stopped child's /proc/PID/syscall is readable");
        if syscall.starts_with(&format!("{} ", libc::SYS_futex)) {
            return;
        }
        signal(pid, libc::SIGCONT);
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain kill of our own child.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

fn state(l: &RwLock<u64>) -> u32 {
    l.raw().state().load(Ordering::Relaxed)
}

fn slots_taken(l: &RwLock<u64>) -> usize {
    l.raw()
        .reader_slots()
        .iter()
        .filter(|s| s.load(Ordering::Relaxed) != 0)
        .count()
}

/// Read: killed with its slot claimed, the state not yet checked. A writer frees the dead
/// slot and gets in, without `OwnerDied`.
#[test]
fn rwlock_reader_killed_after_claiming_its_slot() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let pid = common::child_stopped_at(Point::RwReadClaimed, || drop(l.read()));
    assert_eq!(slots_taken(l), 1);
    kill(pid);
    reap(pid);
    let w = l.write_timeout(REPAIR);
    assert!(
        w.is_ok(),
        "the writer did not recover the dead reader's slot"
    );
    drop(w);
    assert!(!l.is_locked());
}

/// Read unlock: killed with its slot freed but a draining writer not yet woken. The writer
/// wakes within a slice and gets in.
#[test]
fn rwlock_reader_killed_after_freeing_its_slot_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    // The child reads, waits for the parent's writer to drain, then unlocks and stops.
    let pid = fork_children(1, |_| {
        let r = l.read().unwrap();
        while l.raw().state().load(Ordering::Relaxed) & DRAINING == 0 {
            std::hint::spin_loop();
        }
        arm(Point::RwReadUnlockFreed);
        drop(r);
        park_forever();
    })[0];
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let start = Instant::now();
            // Wait for the child's read lock first, so the write drains behind it.
            while slots_taken(l) == 0 {
                std::hint::spin_loop();
            }
            let w = l.write_timeout(Duration::from_secs(30));
            assert!(w.is_ok(), "the draining writer was never woken");
            start.elapsed()
        });
        common::wait_until_stopped(pid);
        let t_kill = Instant::now();
        kill(pid);
        reap(pid);
        writer.join().unwrap();
        assert!(
            t_kill.elapsed() < REPAIR,
            "the repair took {:?}",
            t_kill.elapsed()
        );
    });
    assert!(!l.is_locked());
}

/// Write: killed with `WRITE_LOCKED` set, before looking at the readers. A reader releases
/// the dead writer's lock within a slice; it reports `OwnerDied` (the documented false
/// alarm: the writer may have written).
#[test]
fn rwlock_writer_killed_right_after_taking_the_state() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let pid = common::child_stopped_at(Point::RwWriteLocked, || drop(l.write()));
    kill(pid);
    reap(pid);
    let r = l.read_timeout(REPAIR);
    assert!(
        matches!(r, Err(TimedLockError::OwnerDied(_))),
        "a reader must get in, told the writer died"
    );
}

/// Write: killed while draining (waiting for a live reader). Readers release the dead
/// writer's lock without `OwnerDied` (it never touched the data), and the live reader's
/// lock is untouched.
#[test]
fn rwlock_writer_killed_while_draining() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let held = l.read().unwrap();
    let pid = common::child_stopped_at(Point::RwDraining, || drop(l.write()));
    kill(pid);
    reap(pid);
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = l.read_timeout(REPAIR);
            assert!(
                r.is_ok(),
                "a dead draining writer is no OwnerDied, and must not hang"
            );
        })
        .join()
        .unwrap();
    });
    assert_eq!(slots_taken(l), 1, "the live reader's slot must stay");
    drop(held);
    assert!(l.write_timeout(REPAIR).is_ok());
}

/// Downgrade: killed with its reader slot claimed but `WRITE_LOCKED` not yet released. A
/// reader recovers the dead writer's lock with `OwnerDied` (it held the write lock), and a
/// writer then frees the dead downgrader's slot and gets in.
#[test]
fn rwlock_writer_killed_downgrading_after_claiming_its_slot() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let pid = common::child_stopped_at(Point::RwDowngradeClaimed, || {
        let mut w = l.write().unwrap();
        *w = 7;
        drop(RwLockWriteGuard::downgrade(w));
    });
    assert_eq!(slots_taken(l), 1, "stopped with its slot claimed");
    kill(pid);
    reap(pid);
    match l.read_timeout(REPAIR) {
        Err(TimedLockError::OwnerDied(d)) => assert_eq!(**d.get_ref(), 7),
        r => panic!("a reader must get in, told the writer died: {r:?}"),
    }
    let mut w = match l.write_timeout(REPAIR) {
        Err(TimedLockError::OwnerDied(d)) => d.into_inner(),
        r => panic!("a writer must free the dead slot and get in: {r:?}"),
    };
    w.mark_consistent();
    drop(w);
    assert_eq!(slots_taken(l), 0);
    assert!(!l.is_locked());
}

/// Write unlock: killed with the state cleared but the sleeping readers not yet woken.
/// They wake within a slice and read.
#[test]
fn rwlock_writer_killed_after_unlocking_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let pid = fork_children(1, |_| {
        let mut w = l.write().unwrap();
        *w = 5;
        // Wait until a reader sleeps behind the lock, so the unlock takes its slow path.
        while l.raw().state().load(Ordering::Relaxed) & READERS_WAITING == 0 {
            std::hint::spin_loop();
        }
        arm(Point::RwWriteUnlockCleared);
        drop(w);
        std::process::exit(3);
    })[0];
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            while !l.is_locked() {
                std::hint::spin_loop();
            }
            let r = l.read_timeout(Duration::from_secs(30));
            assert!(r.is_ok(), "the reader was never woken");
            assert_eq!(*r.unwrap(), 5);
        });
        common::wait_until_stopped(pid);
        let t_kill = Instant::now();
        kill(pid);
        reap(pid);
        reader.join().unwrap();
        assert!(t_kill.elapsed() < REPAIR);
    });
}

/// Mutex unlock, contended: killed with the word cleared but the sleeping waiter not yet
/// woken. The waiter wakes within a slice and locks (without `OwnerDied`: the owner had
/// unlocked).
#[test]
fn mutex_owner_killed_after_unlocking_before_the_wake() {
    watchdog(Duration::from_secs(60));
    /// Bit 31 of a `RawMutex` word: someone may sleep on it.
    const CONTENDED: u32 = 1 << 31;
    let mem = SharedMem::<shmstate::Mutex<u64>>::new(1);
    let m = mem.get();
    let pid = fork_children(1, |_| {
        let mut g = m.lock().unwrap();
        *g = 9;
        while m.raw().word().load(Ordering::Relaxed) & CONTENDED == 0 {
            std::hint::spin_loop();
        }
        arm(Point::MutexUnlockCleared);
        drop(g);
        std::process::exit(3);
    })[0];
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            while !m.is_locked() {
                std::hint::spin_loop();
            }
            let g = m.lock_timeout(Duration::from_secs(30));
            assert!(g.is_ok(), "the waiter was never woken (or read OwnerDied)");
            assert_eq!(*g.unwrap(), 9);
        });
        common::wait_until_stopped(pid);
        let t_kill = Instant::now();
        kill(pid);
        reap(pid);
        waiter.join().unwrap();
        assert!(t_kill.elapsed() < REPAIR);
    });
}

/// Recovery of a dead writer (`recover`): the recoverer is killed with the state released on
/// the dead writer's behalf but the waiters not yet woken. A writer asleep behind the dead
/// one (on the notification word, which the recoverer had not bumped yet) re-checks when its
/// slice runs out and gets the lock, told that the writer died.
#[test]
fn rwlock_recoverer_killed_after_releasing_a_dead_writer_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let dead_writer = fork_children(1, |_| {
        std::mem::forget(l.write().unwrap());
        park_forever();
    })[0];
    while state(l) & WRITE_LOCKED == 0 {
        std::hint::spin_loop();
    }
    // A writer asleep behind it. It is stopped before the writer dies: running, it would
    // find the death itself within a slice, and the recoverer below would have nothing to do.
    let waiter = fork_children(1, |_| {
        let w = l.write_timeout(Duration::from_secs(30));
        assert!(
            matches!(w, Err(TimedLockError::OwnerDied(_))),
            "the waiting writer must get the lock, told the writer died"
        );
    })[0];
    while state(l) & WRITERS_WAITING == 0 {
        std::hint::spin_loop();
    }
    stop_asleep_in_futex(waiter);
    kill(dead_writer);
    reap(dead_writer);
    // A reader whose deadline has passed probes the writer once and releases its lock.
    let recoverer = common::child_stopped_at(Point::RwRecoverCleared, || {
        drop(l.read_timeout(Duration::ZERO));
    });
    assert_eq!(
        state(l),
        OWNER_DIED,
        "released with the mark, waiting bits cleared"
    );
    kill(recoverer);
    reap(recoverer);
    signal(waiter, libc::SIGCONT);
    // Exits 0 only with `OwnerDied`; `REPAIR` bounds the repair (its own wait is 30 s).
    wait_all(&[waiter], REPAIR);
    assert!(!l.is_locked());
}

/// Clear of a stray `WRITERS_WAITING`: an overflow reader that waited [`STRAY_BIT_AGE`]
/// behind the bit clears it (here a live writer's bit, which it cannot tell from a stray
/// one) and is killed before it wakes the waiters. The writer, asleep without its bit (so
/// the last reader out does not wake it), re-checks when its slice runs out and gets the
/// lock.
#[test]
fn rwlock_overflow_reader_killed_after_clearing_writers_waiting_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    // Every slot taken, and one overflow reader counted in: a writer waits for it with
    // `WRITERS_WAITING` set, which holds further overflow readers back.
    let readers: Vec<_> = (0..=READER_SLOTS).map(|_| l.read().unwrap()).collect();
    assert_eq!(slots_taken(l), READER_SLOTS);
    assert_eq!(state(l) & 0xff_ffff, 1, "one overflow reader");
    let writer = fork_children(1, |_| {
        let w = l.write_timeout(Duration::from_secs(30));
        assert!(w.is_ok(), "the writer never got the lock");
    })[0];
    while state(l) & WRITERS_WAITING == 0 {
        std::hint::spin_loop();
    }
    // Stopped asleep, so that it does not set its bit again before the test is done.
    stop_asleep_in_futex(writer);
    let t_start = Instant::now();
    let clearer = common::child_stopped_at(Point::RwWritersWaitingCleared, || drop(l.read()));
    assert!(t_start.elapsed() >= STRAY_BIT_AGE);
    let s = state(l);
    assert_eq!(s & WRITERS_WAITING, 0, "the bit is cleared");
    assert_eq!(s & 0xff_ffff, 1, "the clearer did not count in");
    kill(clearer);
    reap(clearer);
    // The last reader out finds no writer's bit: it wakes no writer.
    drop(readers);
    signal(writer, libc::SIGCONT);
    wait_all(&[writer], REPAIR);
    assert!(!l.is_locked());
}

/// Recovery of a dead reader by an overflow reader (waiting for a slot, it frees the slots
/// of dead readers): killed with the dead reader's slot freed but the draining writer not
/// yet woken. The writer, asleep with every slot free now, re-checks when its slice runs
/// out and gets the lock, without `OwnerDied` (a reader's death leaves the data intact).
#[test]
fn rwlock_dead_reader_recoverer_killed_after_freeing_the_slot_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    // Every slot taken: by this thread, and the last one by a reader that will die.
    let readers: Vec<_> = (1..READER_SLOTS).map(|_| l.read().unwrap()).collect();
    let dead_reader = fork_children(1, |_| {
        std::mem::forget(l.read().unwrap());
        park_forever();
    })[0];
    while slots_taken(l) < READER_SLOTS {
        std::hint::spin_loop();
    }
    // A stray `WRITERS_WAITING` (as a writer killed while waiting leaves) holds the next
    // reader back from counting in as an overflow reader: it waits for a slot.
    l.raw().state().fetch_or(WRITERS_WAITING, Ordering::Relaxed);
    // The recoverer: held at its first scan of the slots, where it has read the state (no
    // writer yet) and probed no slot.
    let recoverer = fork_children(1, |_| {
        arm(Point::RwDeadReadersScan);
        arm(Point::RwDeadReaderFreed);
        drop(l.read());
        std::process::exit(3);
    })[0];
    common::wait_until_stopped(recoverer);
    // A writer takes the state and drains behind the readers, asleep (then stopped, so
    // that it does not free the dead reader's slot itself).
    let writer = fork_children(1, |_| {
        let w = l.write_timeout(Duration::from_secs(30));
        assert!(
            w.is_ok(),
            "the draining writer never got the lock (or got OwnerDied)"
        );
    })[0];
    while state(l) & DRAINING == 0 {
        std::hint::spin_loop();
    }
    stop_asleep_in_futex(writer);
    // The live readers leave (no wake: the dead reader's slot is still taken), and the
    // last reader dies.
    drop(readers);
    assert_eq!(slots_taken(l), 1);
    kill(dead_reader);
    reap(dead_reader);
    // The recoverer frees the dead reader's slot and stops before waking the writer.
    signal(recoverer, libc::SIGCONT);
    common::wait_until_stopped(recoverer);
    assert_eq!(slots_taken(l), 0, "the dead reader's slot is freed");
    assert_ne!(state(l) & DRAINING, 0, "the writer still drains");
    kill(recoverer);
    reap(recoverer);
    signal(writer, libc::SIGCONT);
    wait_all(&[writer], REPAIR);
    assert!(!l.is_locked());
}

/// Read unlock of an overflow reader (every slot was taken when it locked): killed counted
/// out but before waking the writer that waits for it. The writer, asleep with the lock
/// free, re-checks when its slice runs out and gets the lock.
#[test]
fn rwlock_overflow_reader_killed_after_counting_out_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    let slot_readers: Vec<_> = (0..READER_SLOTS).map(|_| l.read().unwrap()).collect();
    // The overflow reader counts in, then stops itself until the writer sleeps.
    let reader = fork_children(1, |_| {
        arm(Point::RwReadUnlockOverflowCounted);
        let r = l.read().unwrap();
        // SAFETY: `raise` has no preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
        drop(r);
        std::process::exit(3);
    })[0];
    common::wait_until_stopped(reader);
    assert_eq!(state(l), 1, "one overflow reader, no waiting bit");
    drop(slot_readers);
    // A writer waits for the overflow reader (asleep, then stopped: the lock is not free
    // yet, and it must not take it before it is woken or its slice runs out).
    let writer = fork_children(1, |_| {
        let w = l.write_timeout(Duration::from_secs(30));
        assert!(
            w.is_ok(),
            "the writer never got the lock (or got OwnerDied)"
        );
    })[0];
    while state(l) & WRITERS_WAITING == 0 {
        std::hint::spin_loop();
    }
    stop_asleep_in_futex(writer);
    signal(reader, libc::SIGCONT);
    common::wait_until_stopped(reader);
    assert_eq!(
        state(l),
        WRITERS_WAITING,
        "counted out, the writer's bit not yet cleared"
    );
    kill(reader);
    reap(reader);
    signal(writer, libc::SIGCONT);
    wait_all(&[writer], REPAIR);
    assert!(!l.is_locked());
}

/// A mutex and a condvar for it, shared with children.
#[repr(C)]
struct Waiting {
    m: Mutex<u32>,
    cv: Condvar,
}

// SAFETY: a `#[repr(C)]` composition of two `SharedSized` types.
unsafe impl SharedSized for Waiting {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// Bit 0 of a condvar's word (`Condvar::words().0`): a waiter may sleep.
const SLEEPERS: u32 = 1;

fn cv_word(w: &Waiting) -> u32 {
    w.cv.words().0.load(Ordering::Relaxed)
}

/// The healed word: a `notify_one` with nobody waiting leaves it alone (no wake).
fn assert_notify_one_is_idle(w: &Waiting) {
    let before = cv_word(w);
    w.cv.notify_one();
    assert_eq!(
        cv_word(w),
        before,
        "a notify with nobody waiting changed the word"
    );
}

/// Condvar wait: killed registered (`SLEEPERS` set) but still holding the mutex. The next
/// locker takes the mutex over with `OwnerDied`, and the next `notify_one` makes one wake
/// that finds nobody and clears the bit.
#[test]
fn condvar_waiter_killed_registered_before_unlocking_the_mutex() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Waiting>::new(1);
    let w = mem.get();
    let waiter = common::child_stopped_at(Point::CondvarWaitRegistered, || {
        let mut g = w.m.lock().unwrap();
        *g = 1;
        let _ = w.cv.wait(g);
    });
    assert_ne!(cv_word(w) & SLEEPERS, 0, "registered");
    assert!(w.m.is_locked(), "the mutex is still held");
    kill(waiter);
    reap(waiter);
    match w.m.lock_timeout(REPAIR) {
        Err(TimedLockError::OwnerDied(d)) => {
            let mut g = d.into_inner();
            assert_eq!(*g, 1);
            g.mark_consistent();
        }
        Err(TimedLockError::Timeout) => panic!("the dead waiter's mutex was not taken over"),
        Ok(_) => panic!("the dead waiter's mutex was taken without OwnerDied"),
    }
    assert_ne!(cv_word(w) & SLEEPERS, 0, "the bit outlives the waiter");
    w.cv.notify_one();
    assert_eq!(
        cv_word(w) & SLEEPERS,
        0,
        "the first notify_one clears the bit"
    );
    assert_notify_one_is_idle(w);
}

/// Condvar notify_one: killed after its wake found nobody, before clearing `SLEEPERS`. The
/// bit stays set; the next `notify_one` makes one needless wake and clears it.
#[test]
fn condvar_notifier_killed_after_waking_nobody_before_clearing_the_bit() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Waiting>::new(1);
    let w = mem.get();
    // A waiter that timed out leaves the bit set with nobody asleep.
    let (g, r) =
        w.cv.wait_timeout(w.m.lock().unwrap(), Duration::from_millis(1))
            .unwrap();
    assert!(r.timed_out());
    drop(g);
    let registered = cv_word(w);
    assert_ne!(registered & SLEEPERS, 0);
    let notifier =
        common::child_stopped_at(Point::CondvarNotifyOneWokeNobody, || w.cv.notify_one());
    let left = cv_word(w);
    assert_ne!(left, registered, "the notifier bumped the word");
    assert_ne!(left & SLEEPERS, 0, "the bit is not cleared yet");
    kill(notifier);
    reap(notifier);
    w.cv.notify_one();
    assert_eq!(
        cv_word(w) & SLEEPERS,
        0,
        "the next notify_one clears the bit"
    );
    assert_notify_one_is_idle(w);
    // And the condvar still works: a waiter is woken by a notify.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = w.cv.wait_while(w.m.lock().unwrap(), |v| *v == 0).unwrap();
            assert_eq!(*g, 7);
        });
        *w.m.lock().unwrap() = 7;
        w.cv.notify_one();
        waiter.join().unwrap();
    });
}

/// Condvar notify (`notify_one`, then `notify_all`): killed with the word bumped but the
/// sleeper not yet woken. The sleeper's slice runs out, it finds the word changed and
/// returns, and sees the condition the notifier set.
#[test]
fn condvar_notifier_killed_after_bumping_before_the_wake() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Waiting>::new(1);
    let w = mem.get();
    for (round, notify_all) in [(1, false), (2, true)] {
        let waiter = fork_children(1, |_| {
            let g =
                w.cv.wait_while(w.m.lock().unwrap(), |v| *v < round)
                    .unwrap();
            assert_eq!(*g, round);
        })[0];
        // Asleep on the condvar (the mutex is free, so not on the mutex).
        wait_until_asleep_in_futex(waiter);
        *w.m.lock().unwrap() = round;
        let before = cv_word(w);
        let notifier = common::child_stopped_at(Point::CondvarNotifyBumped, || {
            if notify_all {
                w.cv.notify_all();
            } else {
                w.cv.notify_one();
            }
        });
        assert_ne!(cv_word(w), before, "the notifier bumped the word");
        kill(notifier);
        reap(notifier);
        wait_all(&[waiter], REPAIR);
    }
}

// ----- region directory -----

/// A region whose waits give up only after 30 s, so that a repair that never came (a waiter
/// left asleep until its timeout) shows as a wait past `REPAIR`, not as a quick `Timeout`.
fn patient_region() -> shmstate::Region {
    shmstate::RegionOptions::new()
        .timeout(Duration::from_secs(30))
        .anonymous(1 << 16)
        .unwrap()
}

/// A creator killed with its entry `CLAIMED` (name and type written, space allocated, the
/// name not yet published): `get` of the name finds nothing, and the next `get_or_init` of it
/// re-claims the dead entry for itself and creates the object, once.
#[test]
fn region_creator_killed_with_the_entry_claimed() {
    use shmstate::Value;
    watchdog(Duration::from_secs(60));
    let region = patient_region();
    let pid = common::child_stopped_at(Point::RegionClaimed, || {
        let _ = region.get_or_init("x", |v: &Value<u64>| v.store(1, Ordering::Relaxed));
    });
    let t_kill = Instant::now();
    kill(pid);
    reap(pid);
    assert!(matches!(
        region.get::<Value<u64>>("x"),
        Err(shmstate::region::GetError::NotFound { .. })
    ));
    let x = region
        .get_or_init("x", |v: &Value<u64>| v.store(2, Ordering::Relaxed))
        .expect("the dead claim is taken over");
    assert_eq!(x.load(Ordering::Relaxed), 2, "this process's init ran");
    assert!(t_kill.elapsed() < REPAIR);
    let named: Vec<_> = region
        .entries()
        .into_iter()
        .filter(|e| e.name == "x")
        .collect();
    assert_eq!(named.len(), 1, "one object named x: {named:?}");
    assert_eq!(
        region
            .get::<Value<u64>>("x")
            .unwrap()
            .load(Ordering::Relaxed),
        2
    );
}

/// A creator killed after publishing its object (`READY`) but before waking the process
/// waiting for it: the waiter re-checks when its slice runs out and gets the object.
#[test]
fn region_creator_killed_after_publishing_before_the_wake() {
    use shmstate::Value;
    watchdog(Duration::from_secs(60));
    let region = patient_region();
    let in_init = region.get_or_default::<Value<u32>>("in init").unwrap();
    let go = region.get_or_default::<Value<u32>>("go").unwrap();
    let creator = fork_children(1, |_| {
        arm(Point::RegionReadyUnwoken);
        let _ = region.get_or_init("y", |v: &Value<u64>| {
            in_init.store(1, Ordering::Release);
            // Hold the object INITIALISING until the waiter sleeps on it.
            while go.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            v.store(7, Ordering::Relaxed);
        });
        // The failpoint was not reached.
        std::process::exit(3);
    })[0];
    while in_init.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    let waiter = fork_children(1, |_| {
        let y = region.get::<Value<u64>>("y");
        let ok = matches!(y, Ok(y) if y.load(Ordering::Relaxed) == 7);
        std::process::exit(if ok { 0 } else { 4 });
    });
    wait_until_asleep_in_futex(waiter[0]);
    go.store(1, Ordering::Release);
    common::wait_until_stopped(creator);
    let t_kill = Instant::now();
    kill(creator);
    reap(creator);
    wait_all(&waiter, REPAIR);
    assert!(t_kill.elapsed() < REPAIR);
}

/// A histogram of bounds 1 and 4 with one owned stripe (and one shared), so that every
/// thread of every process selects the same stripe: one owns it, the others share.
fn one_stripe_histogram(region: &shmstate::Region) -> &shmstate::Histogram {
    region.histogram_with_stripes("h", &[1.0, 4.0], 1).unwrap()
}

/// An observer killed between counting its observation and adding it to the sum, in its
/// own stripe: the count has it, the sum lacks it, and nothing else is affected. While it
/// is stopped there (a live owner), this process observes into the shared stripe.
#[test]
fn histogram_observer_killed_after_counting_before_the_sum() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let h = one_stripe_histogram(&region);
    let observer = common::child_stopped_at(Point::HistogramCounted, || h.observe(2.0));
    // Stopped mid-observation: this process observes meanwhile.
    h.observe(0.5);
    let s = h.snapshot();
    assert_eq!(
        (s.cumulative.as_slice(), s.count, s.sum),
        (&[1, 2, 2][..], 2, 0.5)
    );
    kill(observer);
    reap(observer);
    h.observe(8.0);
    let s = h.snapshot();
    assert_eq!(s.cumulative, [1, 2, 3]);
    assert_eq!(
        (s.count, s.sum),
        (3, 8.5),
        "the killed observer's 2.0 is not in the sum"
    );
}

/// The same on the shared stripe: this process owns the only stripe, so the observer
/// adds to the shared one, and is killed between its `fetch_add` and its sum. While it is
/// stopped there, another observer of the shared stripe (a thread here) goes on.
#[test]
fn histogram_shared_observer_killed_after_counting_before_the_sum() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let h = one_stripe_histogram(&region);
    h.observe(0.5); // this thread owns the stripe from here on
    let observer = common::child_stopped_at(Point::HistogramCounted, || h.observe(2.0));
    std::thread::scope(|s| {
        s.spawn(|| h.observe(0.25));
    });
    kill(observer);
    reap(observer);
    h.observe(8.0);
    let s = h.snapshot();
    assert_eq!(s.cumulative, [2, 3, 4]);
    assert_eq!(
        (s.count, s.sum),
        (4, 8.75),
        "the killed observer's 2.0 is not in the sum"
    );
}

/// An owner stopped between loading a count and storing it: meanwhile this process adds
/// to the shared stripe; resumed, the owner stores its count, which nobody else wrote,
/// and nothing is lost.
#[test]
fn histogram_owner_stopped_mid_update_resumes_without_loss() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let h = one_stripe_histogram(&region);
    let owner = common::fork_children(1, |_| {
        h.observe(2.0); // claims the stripe
        shmstate::failpoint::arm(Point::HistogramOwnedRead);
        h.observe(2.0);
    })[0];
    common::wait_until_stopped(owner);
    h.observe(2.0);
    h.observe(0.5);
    signal(owner, libc::SIGCONT);
    wait_all(&[owner], Duration::from_secs(30));
    let s = h.snapshot();
    assert_eq!(s.cumulative, [1, 4, 4]);
    assert_eq!((s.count, s.sum), (4, 6.5));
}

/// A taker stopped after finding the owner gone, before its compare-and-swap: another
/// process takes the stripe over first and is stopped in the middle of an update (its
/// count loaded, not stored). Resumed, the slow taker's compare-and-swap fails and it
/// adds to the shared stripe; had it taken the stripe too, the fast one's store would
/// erase its count. Every observation is counted once.
#[test]
fn histogram_taker_stopped_before_its_swap_loses_to_a_faster_one() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let h = one_stripe_histogram(&region);
    let claimer = common::child_stopped_at(Point::HistogramClaimed, || h.observe(2.0));
    kill(claimer);
    reap(claimer);
    let slow = common::fork_children(1, |_| {
        shmstate::failpoint::arm(Point::HistogramProbed);
        h.observe(3.0);
    })[0];
    common::wait_until_stopped(slow);
    let fast = common::fork_children(1, |_| {
        shmstate::failpoint::arm(Point::HistogramTakenOver);
        shmstate::failpoint::arm(Point::HistogramOwnedRead);
        h.observe(2.0);
    })[0];
    // Stopped once with the stripe taken over, then again with its count loaded.
    common::wait_until_stopped(fast);
    signal(fast, libc::SIGCONT);
    common::wait_until_stopped(fast);
    signal(slow, libc::SIGCONT);
    wait_all(&[slow], Duration::from_secs(30));
    signal(fast, libc::SIGCONT);
    wait_all(&[fast], Duration::from_secs(30));
    let s = h.snapshot();
    assert_eq!(s.cumulative, [0, 2, 2]);
    assert_eq!((s.count, s.sum), (2, 5.0));
}

/// An observer killed right after claiming the only stripe, before counting: while it
/// is stopped this process uses the shared stripe; once it is dead, the next process's
/// first observation takes the stripe over (stopped there and killed too), and a third
/// process takes it over from that one and counts in it. Nothing is lost but the two
/// killed observations, which never counted.
#[test]
fn histogram_stripe_of_a_killed_owner_is_taken_over() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let h = one_stripe_histogram(&region);
    let claimer = common::child_stopped_at(Point::HistogramClaimed, || h.observe(2.0));
    h.observe(0.5);
    kill(claimer);
    reap(claimer);
    // Returns only once the new process has taken the dead claimer's stripe over.
    let taker = common::child_stopped_at(Point::HistogramTakenOver, || h.observe(3.0));
    kill(taker);
    reap(taker);
    // The third stops once it has taken the stripe over from the second, then counts.
    let third = common::fork_children(1, |_| {
        shmstate::failpoint::arm(Point::HistogramTakenOver);
        h.observe(8.0);
    })[0];
    common::wait_until_stopped(third);
    signal(third, libc::SIGCONT);
    wait_all(&[third], Duration::from_secs(30));
    let s = h.snapshot();
    assert_eq!(s.cumulative, [1, 1, 2]);
    assert_eq!((s.count, s.sum), (2, 8.5));
}
