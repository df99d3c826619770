//! The typed-lock layer: what every lock has in common (`is_locked`, `Default`,
//! `into_inner`/`get_mut`, mapped guards, `mark_consistent` on every guard, a timeout too
//! large for a deadline), `RwLockWriteGuard::downgrade` (threads, every slot taken, real
//! processes), `ReentrantMutex` handing out `&T` to nested guards, and what a recursive
//! read does while a writer waits.

mod common;
mod locks_support;

use std::cell::Cell;
use std::time::Duration;

use common::watchdog_unless_miri as watchdog;
use common::{SharedMem, fork_children, wait_all};
use locks_support::{gettid, raise, wait_for};
use shmstate::lock::rwlock::READER_SLOTS;
use shmstate::lock::{MappedRwLockReadGuard, MappedRwLockWriteGuard};
use shmstate::sync::AtomicU32;
use shmstate::sync::Ordering::{self, Relaxed};
use shmstate::{
    Counter, Elem, Kind, Mutex, MutexGuard, ReentrantMutex, ReentrantMutexGuard, RwLock,
    RwLockReadGuard, RwLockWriteGuard, SharedSized, TimedLockError, Timeout, TryLockError, TypeTag,
    Value,
};

/// Bit 27 of an `RwLock`'s state (see `RawRwLock`'s field docs): write-locked.
const WRITE_LOCKED: u32 = 1 << 27;
/// Bit 29: a writer drains (waits for registered readers).
const DRAINING: u32 = 1 << 29;
/// Bit 31: writers may sleep on the notification word.
const WRITERS_WAITING: u32 = 1 << 31;
/// Bits 0..24: the overflow reader count (with `WRITE_LOCKED`, bits 0..27 are the writer's
/// TID and 5-bit stamp).
const COUNT_MASK: u32 = 0x00FF_FFFF;
/// The TID bits of a reader slot (the stamp of the reader's start time is above them).
const SLOT_TID_MASK: u32 = (1 << 22) - 1;
/// Long enough never to pass on a loaded machine; only a hang reaches it.
const LONG: Duration = Duration::from_secs(20);

fn state(l: &RwLock<u64>) -> u32 {
    l.raw().state().load(Relaxed)
}

/// Runs `f` on another thread of this process and returns its result.
fn on_other_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[test]
fn every_lock_says_whether_it_is_locked() {
    let m = Mutex::new(0u8);
    let l = RwLock::new(0u8);
    let r = ReentrantMutex::new(Value::new(0u8));
    assert!(!m.is_locked() && !l.is_locked() && !r.is_locked());
    let g = m.lock().unwrap();
    let rg = l.read().unwrap();
    let outer = r.lock().unwrap();
    assert!(m.is_locked() && l.is_locked() && r.is_locked());
    drop((g, rg));
    let inner = r.lock().unwrap();
    drop(outer);
    assert!(r.is_locked(), "a nested guard still holds it");
    drop(inner);
    let w = l.write().unwrap();
    assert!(l.is_locked());
    drop(w);
    assert!(!m.is_locked() && !l.is_locked() && !r.is_locked());
}

#[test]
fn default_locks_hold_the_zero_or_default_value_unlocked() {
    let m = Mutex::<[u32; 3]>::default();
    let l = RwLock::<u64>::default();
    let r = ReentrantMutex::<Counter>::default();
    let c = ReentrantMutex::<Cell<u16>>::default();
    assert_eq!(*m.lock().unwrap(), [0; 3]);
    assert_eq!(*l.read().unwrap(), 0);
    assert_eq!(r.lock().unwrap().get(), 0);
    assert_eq!(c.lock().unwrap().get(), 0);
    assert!(!m.is_locked() && !l.is_locked() && !r.is_locked() && !c.is_locked());
}

#[test]
fn into_inner_and_get_mut_need_no_lock() {
    let mut l = RwLock::new([1u32, 2]);
    l.get_mut()[1] = 20;
    assert_eq!(*l.read().unwrap(), [1, 20]);
    *l.write().unwrap() = [3, 4];
    assert_eq!(l.into_inner(), [3, 4]);

    let mut r = ReentrantMutex::new(Value::new(5u64));
    *r.get_mut() = Value::new(6);
    assert_eq!(r.lock().unwrap().load(Relaxed), 6);
    assert_eq!(r.into_inner().into_inner(), 6);

    let mut m = Mutex::new(7u8);
    *m.get_mut() += 1;
    assert_eq!(m.into_inner(), 8);
}

#[test]
fn a_timeout_too_large_for_a_deadline_waits_without_one() {
    // `Instant::now() + Duration::MAX` overflows: these must lock (the locks are free),
    // not panic and not time out.
    let m = Mutex::new(1u8);
    let l = RwLock::new(2u8);
    let r = ReentrantMutex::new(Value::new(3u8));
    assert_eq!(*m.lock_timeout(Duration::MAX).unwrap(), 1);
    assert_eq!(*l.read_timeout(Duration::MAX).unwrap(), 2);
    assert_eq!(*l.write_timeout(Duration::MAX).unwrap(), 2);
    assert_eq!(r.lock_timeout(Duration::MAX).unwrap().load(Relaxed), 3);
}

#[test]
fn a_passed_deadline_converts_to_the_timeout_variant() {
    let e: TimedLockError<()> = Timeout.into();
    assert!(matches!(e, TimedLockError::Timeout));
    fn until(ok: bool) -> Result<u8, Timeout> {
        if ok { Ok(1) } else { Err(Timeout) }
    }
    fn timed(ok: bool) -> Result<u8, TimedLockError<()>> {
        Ok(until(ok)?)
    }
    assert_eq!(timed(true).unwrap(), 1);
    assert!(matches!(timed(false), Err(TimedLockError::Timeout)));
}

#[test]
fn mapped_guards_narrow_the_data_and_keep_the_lock() {
    let m = Mutex::new([1u32, 2, 3]);
    let mut g = MutexGuard::map(m.lock().unwrap(), |a| &mut a[1..]);
    g[0] = 20;
    assert_eq!(&*g, &[20, 3]);
    assert!(on_other_thread(|| matches!(
        m.try_lock(),
        Err(TryLockError::WouldBlock)
    )));
    drop(g);
    assert_eq!(*m.lock().unwrap(), [1, 20, 3]);

    // `try_map` hands the unchanged guard back when there is no such part.
    let g = MutexGuard::try_map(m.lock().unwrap(), |a| a.get_mut(7)).unwrap_err();
    assert_eq!(*g, [1, 20, 3]);
    let mut g = MutexGuard::try_map(g, |a| a.get_mut(2)).unwrap();
    *g = 30;
    drop(g);
    assert!(!m.is_locked());

    let l = RwLock::new([5u64, 6]);
    let r = RwLockReadGuard::map(l.read().unwrap(), |a| &a[1]);
    assert_eq!(*r, 6);
    assert!(on_other_thread(|| l.try_write().is_err()));
    drop(r);
    *RwLockWriteGuard::map(l.write().unwrap(), |a| &mut a[0]) = 50;
    assert_eq!(*l.read().unwrap(), [50, 6]);
    // A mapped write guard downgrades to a mapped read guard of the same part.
    let mut w = RwLockWriteGuard::map(l.write().unwrap(), |a| &mut a[1]);
    *w = 60;
    let r: MappedRwLockReadGuard<'_, u64> = MappedRwLockWriteGuard::downgrade(w);
    assert_eq!(on_other_thread(|| l.read().unwrap()[1]), 60);
    assert!(on_other_thread(|| l.try_write().is_err()));
    assert_eq!(*r, 60);
    drop(r);
    assert!(!l.is_locked());

    let rm = ReentrantMutex::new((Value::new(1u32), Counter::new()));
    let c = ReentrantMutexGuard::map(rm.lock().unwrap(), |p| &p.1);
    c.add(2);
    assert!(on_other_thread(|| rm.try_lock().is_err()));
    drop(c);
    assert_eq!(rm.lock().unwrap().1.get(), 2);
    assert!(!rm.is_locked());
}

#[test]
fn reentrant_guards_of_one_thread_share_the_data_by_reference() {
    let m = ReentrantMutex::new(Cell::new(1u32));
    let outer = m.lock().unwrap();
    let inner = m.lock().unwrap();
    let third = m.try_lock().unwrap();
    // Three `&Cell` at once; a write through one is seen through the others.
    inner.set(inner.get() + 1);
    third.set(third.get() * 10);
    assert_eq!(outer.get(), 20);
    let before: *const Cell<u32> = &*outer;
    assert!(std::ptr::eq(before, &*inner));
    drop(inner);
    assert!(on_other_thread(|| matches!(
        m.try_lock(),
        Err(TryLockError::WouldBlock)
    )));
    drop(outer);
    assert!(m.is_locked(), "the third guard still holds it");
    drop(third);
    assert!(!m.is_locked());
    assert!(on_other_thread(|| m.try_lock().map(|g| g.get()).ok()) == Some(20));
}

/// Every guard that can report `OwnerDied` can clear it: a write guard, a read guard (the
/// readers judge the data intact) and a reentrant guard.
#[test]
fn every_guard_that_sees_owner_died_can_mark_consistent() {
    let l = RwLock::new(9u64);
    // A thread that exits holding the write lock: its TID is dead.
    on_other_thread(|| std::mem::forget(l.write().unwrap()));
    let r = l.read().expect_err("the writer died").into_inner();
    assert_eq!(*r, 9);
    drop(r);
    let r = l.read().expect_err("still not marked").into_inner();
    r.mark_consistent();
    drop(r);
    assert_eq!(*l.read().unwrap(), 9);
    assert_eq!(*l.write().unwrap(), 9);

    on_other_thread(|| std::mem::forget(l.write().unwrap()));
    let mut w = l.write().expect_err("the writer died").into_inner();
    w.mark_consistent();
    drop(w);
    assert!(l.read().is_ok());

    let m = ReentrantMutex::new(Value::new(1u8));
    on_other_thread(|| std::mem::forget(m.lock().unwrap()));
    let g = m.lock().expect_err("the owner died").into_inner();
    let nested = m.lock().expect_err("nested, still marked").into_inner();
    nested.mark_consistent();
    drop(nested);
    drop(g);
    assert!(m.lock().is_ok());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads kernel TIDs (gettid) that Miri's threads do not have"
)]
fn downgrade_lets_readers_in_and_keeps_writers_out() {
    watchdog(Duration::from_secs(60));
    let l = RwLock::new(0u64);
    let mut w = l.write().unwrap();
    *w = 42;
    let r = RwLockWriteGuard::downgrade(w);
    assert_eq!(*r, 42);
    // The read lock is registered: one slot names this thread, and no writer holds it.
    let me = gettid();
    let slots = l.raw().reader_slots();
    assert_eq!(
        slots
            .iter()
            .filter(|s| s.load(Relaxed) & SLOT_TID_MASK == me)
            .count(),
        1
    );
    assert_eq!(state(&l) & WRITE_LOCKED, 0);
    on_other_thread(|| {
        assert_eq!(*l.try_read().unwrap(), 42, "readers get in beside it");
        assert!(matches!(l.try_write(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            l.write_timeout(Duration::from_millis(20)),
            Err(TimedLockError::Timeout)
        ));
    });
    drop(r);
    assert!(!l.is_locked());
    assert_eq!(
        *on_other_thread(|| l.try_write().map(|g| *g).ok())
            .as_ref()
            .unwrap(),
        42
    );
}

/// Readers that back off from a writer claim slots for a moment; if every slot is taken
/// when the writer downgrades, its read lock is an overflow one, swapped in for the write
/// lock in one step.
#[test]
#[cfg_attr(
    miri,
    ignore = "reads kernel TIDs (gettid) that Miri's threads do not have"
)]
fn downgrade_with_every_slot_taken_counts_an_overflow_reader() {
    watchdog(Duration::from_secs(60));
    let l = RwLock::new(0u64);
    let w = l.write().unwrap();
    // A live TID that is not ours: the parked helper's, standing for readers backing off.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = done_rx.recv();
        });
        let other = rx.recv().unwrap();
        for slot in l.raw().reader_slots() {
            slot.store(other, Relaxed);
        }
        let r = RwLockWriteGuard::downgrade(w);
        let s1 = state(&l);
        assert_eq!(s1 & WRITE_LOCKED, 0, "the write lock is gone");
        assert_eq!(
            s1 & COUNT_MASK,
            1,
            "one overflow reader: the downgraded guard"
        );
        s.spawn(|| {
            // Another overflow reader gets in; a writer stays out.
            let r2 = l.try_read().unwrap();
            assert_eq!(state(&l) & COUNT_MASK, 2);
            drop(r2);
            assert!(matches!(l.try_write(), Err(TryLockError::WouldBlock)));
        })
        .join()
        .unwrap();
        for slot in l.raw().reader_slots() {
            slot.store(0, Relaxed);
        }
        assert!(l.is_locked());
        drop(r);
        assert_eq!(state(&l), 0, "the overflow read lock is counted out");
        done_tx.send(()).unwrap();
    });
    assert!(l.try_write().is_ok());
}

#[repr(C)]
struct Downgrade {
    l: RwLock<u64>,
    /// 1: downgraded; 2: a reader of another process read beside it.
    phase: AtomicU32,
    /// 1 once the downgrader dropped its read guard.
    dropped: AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of a `SharedSized` type and atomics.
unsafe impl SharedSized for Downgrade {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// Across processes: a writer downgrades; a reader in another process gets in beside its
/// read lock, and a writer in a third process stays out (it drains behind the
/// downgraded lock's slot) until the downgraded guard is dropped.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn downgrade_lets_readers_of_other_processes_in_and_their_writers_wait() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Downgrade>::new(1);
    let d = mem.get();
    let pids = fork_children(3, |i| match i {
        0 => {
            let mut w = d.l.write().unwrap();
            *w = 42;
            let r = RwLockWriteGuard::downgrade(w);
            raise(&d.phase, 1);
            // Wait for the writer of the third process to drain behind our slot.
            wait_for(&d.phase, 2, LONG);
            let start = std::time::Instant::now();
            while d.l.raw().state().load(Ordering::Relaxed) & DRAINING == 0 {
                assert!(start.elapsed() < LONG, "the writer never drained");
                std::thread::yield_now();
            }
            assert_eq!(*r, 42, "no writer got in while the read lock is held");
            raise(&d.dropped, 1);
            drop(r);
        }
        1 => {
            wait_for(&d.phase, 1, LONG);
            let r = d.l.read_timeout(LONG).expect("a reader gets in beside it");
            assert_eq!(*r, 42);
            // Acquire pairs with the Release in `raise`.
            assert_eq!(d.dropped.load(Ordering::Acquire), 0);
            drop(r);
            raise(&d.phase, 2);
        }
        _ => {
            wait_for(&d.phase, 2, LONG);
            assert!(matches!(d.l.try_write(), Err(TryLockError::WouldBlock)));
            let mut w = d.l.write_timeout(LONG).expect("the writer gets in at last");
            // Acquire pairs with the Release in `raise`: the downgrader dropped first.
            assert_eq!(d.dropped.load(Ordering::Acquire), 1);
            *w += 1;
        }
    });
    wait_all(&pids, Duration::from_secs(100));
    assert_eq!(*d.l.read().unwrap(), 43);
    assert!(!d.l.is_locked());
}

/// A registered reader that reads again while a writer drains behind its first read lock
/// waits for that writer, which waits for it: an untimed `read` would deadlock, a timed
/// one times out (the module docs' "Recursive read locks").
#[test]
#[cfg_attr(miri, ignore = "waits on real time and kernel TIDs")]
fn a_recursive_read_behind_a_draining_writer_times_out() {
    watchdog(Duration::from_secs(60));
    let l = RwLock::new(1u64);
    let first = l.read().unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(|| l.write_timeout(LONG).map(|g| *g).ok());
        let start = std::time::Instant::now();
        while state(&l) & DRAINING == 0 {
            assert!(start.elapsed() < LONG, "the writer never drained");
            std::thread::yield_now();
        }
        assert!(matches!(
            l.read_timeout(Duration::from_millis(50)),
            Err(TimedLockError::Timeout)
        ));
        drop(first);
        assert_eq!(writer.join().unwrap(), Some(1));
    });
}

/// An overflow reader (every slot taken) that reads again while a writer waits behind
/// `WRITERS_WAITING` gets in once it clears the bit as possibly stray: late, not
/// deadlocked.
#[test]
#[cfg_attr(miri, ignore = "waits on real time and kernel TIDs")]
fn a_recursive_overflow_read_behind_a_waiting_writer_gets_in() {
    watchdog(Duration::from_secs(60));
    let l = RwLock::new(1u64);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = done_rx.recv();
        });
        let other = rx.recv().unwrap();
        for slot in l.raw().reader_slots() {
            slot.store(other, Relaxed);
        }
        let first = l.read().unwrap();
        assert_eq!(state(&l) & COUNT_MASK, 1, "an overflow read lock");
        let writer = s.spawn(|| l.write_timeout(LONG).is_ok());
        let start = std::time::Instant::now();
        while state(&l) & WRITERS_WAITING == 0 {
            assert!(start.elapsed() < LONG, "the writer never waited");
            std::thread::yield_now();
        }
        let second = l.read_timeout(LONG).expect("late, but in");
        assert_eq!(state(&l) & COUNT_MASK, 2);
        // In beside a writer that still waits: not because the writer gave up.
        assert!(!writer.is_finished());
        for slot in l.raw().reader_slots() {
            slot.store(0, Relaxed);
        }
        drop((first, second));
        assert!(writer.join().unwrap(), "the writer gets in after both");
        done_tx.send(()).unwrap();
    });
    assert_eq!(READER_SLOTS, l.raw().reader_slots().len());
    assert!(l.try_write().is_ok());
}

/// Bit 28 of an `RwLock`'s state: a writer died holding the lock.
const OWNER_DIED: u32 = 1 << 28;

/// Slots naming dead readers do not push a downgrade onto the (unrepairable) overflow
/// count: it frees them, as a draining writer would, and registers in one.
#[test]
#[cfg_attr(miri, ignore = "forks a process for a dead TID")]
fn downgrade_frees_dead_readers_slots_rather_than_counting_an_overflow_reader() {
    watchdog(Duration::from_secs(60));
    let dead = fork_children(1, |_| std::process::exit(0))[0];
    wait_all(&[dead], LONG);
    let l = RwLock::new(0u64);
    let w = l.write().unwrap();
    for slot in l.raw().reader_slots() {
        slot.store(dead as u32, Relaxed);
    }
    let r = RwLockWriteGuard::downgrade(w);
    assert_eq!(
        state(&l) & (WRITE_LOCKED | COUNT_MASK),
        0,
        "no overflow count"
    );
    let me = gettid();
    let slots: Vec<u32> = l
        .raw()
        .reader_slots()
        .iter()
        .map(|s| s.load(Relaxed) & SLOT_TID_MASK)
        .collect();
    assert_eq!(slots.iter().filter(|&&t| t == me).count(), 1, "{slots:?}");
    assert!(
        slots.iter().all(|&t| t == me || t == 0),
        "dead readers freed: {slots:?}"
    );
    drop(r);
    assert!(!l.is_locked());
}

/// A copy of a guard in a forked child holds nothing: downgrading a copied write guard and
/// marking a copied read guard consistent leave the parent's lock as they found it.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn forked_copies_of_guards_do_not_touch_the_lock() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<RwLock<u64>>::new(1);
    let l = mem.get();
    // A write guard copied into a child: its downgrade claims no slot and releases nothing.
    let w = l.write().unwrap();
    let locked = state(l);
    let pids = fork_children(1, |_| {
        // SAFETY: the child's own bitwise copy of the parent's guard (the original is
        // never dropped here: the child exits).
        let copy = unsafe { std::ptr::read(&w) };
        let r = RwLockWriteGuard::downgrade(copy);
        r.mark_consistent();
        drop(r);
        std::process::exit(0);
    });
    wait_all(&pids, LONG);
    assert_eq!(
        state(l),
        locked,
        "the parent still holds the write lock, alone"
    );
    assert!(l.raw().reader_slots().iter().all(|s| s.load(Relaxed) == 0));
    drop(w);
    assert_eq!(state(l), 0);

    // A read guard copied into a child: its mark_consistent does not clear OWNER_DIED.
    l.raw().state().store(OWNER_DIED, Relaxed);
    let r = match l.read() {
        Err(died) => died.into_inner(),
        Ok(_) => panic!("the mark reads as OwnerDied"),
    };
    let pids = fork_children(1, |_| {
        r.mark_consistent();
        std::process::exit(0);
    });
    wait_all(&pids, LONG);
    assert_ne!(state(l) & OWNER_DIED, 0, "a forked copy cleared the mark");
    r.mark_consistent();
    assert_eq!(state(l) & OWNER_DIED, 0, "the holder itself clears it");
    drop(r);
}
