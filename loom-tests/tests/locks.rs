//! Model checks of the locks: mutual exclusion and no lost wakeups with 2 and 3 threads for
//! `Mutex`, `RwLock`, `ReentrantMutex` and `Condvar`; `RwLock` writers recovering a dead
//! reader's lock beside live readers; and proof that a mutex whose unlock forgets to wake
//! is caught.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::lock::rwlock::DEAD_UNDER_LOOM;
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{
    Acquired, Condvar, Mutex, RawMutex, ReentrantMutex, RwLock, RwLockWriteGuard, Value,
};

/// Marks a critical section: panics if two threads are ever inside at once.
struct Inside(AtomicU32);

impl Inside {
    fn new() -> Self {
        Inside(AtomicU32::new(0))
    }

    fn run(&self, f: impl FnOnce()) {
        // Relaxed suffices: exclusion is what the lock must provide; the swap only detects
        // two threads in the section at once.
        assert_eq!(self.0.swap(1, Ordering::Relaxed), 0, "two threads inside");
        f();
        assert_eq!(self.0.swap(0, Ordering::Relaxed), 1, "two threads inside");
    }
}

/// Marks readers' and writers' critical sections: panics if a writer is ever inside with
/// anyone else (readers may be inside together).
struct RwInside(AtomicU32);

const WRITER_INSIDE: u32 = 1 << 16;

impl RwInside {
    fn new() -> Self {
        RwInside(AtomicU32::new(0))
    }

    fn write(&self, f: impl FnOnce()) {
        // Relaxed suffices: as in `Inside`.
        let was = self.0.swap(WRITER_INSIDE, Ordering::Relaxed);
        assert_eq!(was, 0, "a writer inside beside others");
        f();
        self.0.store(0, Ordering::Relaxed);
    }

    fn read(&self, f: impl FnOnce()) {
        // Relaxed suffices: as in `Inside`.
        let was = self.0.fetch_add(1, Ordering::Relaxed);
        assert!(was < WRITER_INSIDE, "a reader inside beside a writer");
        f();
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn mutex_model(threads: usize) {
    loom::model(move || {
        let m = Arc::new(Mutex::new(0u32));
        let inside = Arc::new(Inside::new());
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let mut g = m.lock().unwrap();
                    inside.run(|| *g += 1);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), threads as u32);
    });
}

#[test]
fn mutex_excludes_and_wakes_with_2_threads() {
    mutex_model(2);
}

#[test]
fn mutex_excludes_and_wakes_with_3_threads() {
    mutex_model(3);
}

#[test]
fn mutex_increment_never_loses_updates() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let incr = |m: &Mutex<u64>| {
            let mut g = m.lock().unwrap();
            let v = *g; // a separate load and store
            *g = v + 1;
        };
        let h = thread::spawn(move || incr(&m2));
        incr(&m);
        h.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 2);
    });
}

#[test]
fn try_lock_and_lock_exclude() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let inside = Arc::new(Inside::new());
        let (m2, i2) = (m.clone(), inside.clone());
        let h = thread::spawn(move || {
            if let Ok(mut g) = m2.try_lock() {
                i2.run(|| *g += 1);
            }
        });
        {
            let mut g = m.lock().unwrap();
            inside.run(|| *g += 1);
        }
        h.join().unwrap();
        assert!(*m.lock().unwrap() >= 1);
        // Uncontended, try_lock succeeds (also on the write side of a rwlock).
        assert!(m.try_lock().is_ok());
        let l = RwLock::new(0u8);
        assert!(l.try_write().is_ok());
        assert!(l.try_read().is_ok());
    });
}

fn rwlock_model(readers: usize, writers: usize) {
    loom::model(move || {
        let l = Arc::new(RwLock::new([0u32; 2]));
        let mut hs = Vec::new();
        for _ in 0..writers {
            let l = l.clone();
            hs.push(thread::spawn(move || {
                let mut w = l.write().unwrap();
                w[0] += 1;
                w[1] += 1;
            }));
        }
        for _ in 0..readers {
            let l = l.clone();
            hs.push(thread::spawn(move || {
                let r = l.read().unwrap();
                assert_eq!(r[0], r[1]);
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.read().unwrap(), [writers as u32; 2]);
    });
}

#[test]
fn rwlock_one_reader_one_writer() {
    rwlock_model(1, 1);
}

#[test]
fn rwlock_two_writers() {
    rwlock_model(0, 2);
}

#[test]
fn rwlock_two_readers_one_writer() {
    rwlock_model(2, 1);
}

#[test]
fn rwlock_one_reader_two_writers() {
    rwlock_model(1, 2);
}

/// A writer downgrades its write lock beside `readers` readers and `writers` other
/// writers: the downgraded read lock sees the writer's own values (no writer got in
/// between), readers never see a half-done write, and nothing is left held. (Releasing the
/// write lock before claiming the slot fails the first and third models.) With
/// `full_slots`, every reader slot is taken by a live TID while the writer downgrades, so it
/// swaps the write lock for an overflow count of one instead.
fn downgrade_model(readers: usize, writers: usize, full_slots: bool) {
    loom::model(move || {
        let l = Arc::new(RwLock::new([0u32; 2]));
        let inside = Arc::new(RwInside::new());
        let mut hs = Vec::new();
        {
            let (l, inside) = (l.clone(), inside.clone());
            hs.push(thread::spawn(move || {
                let mut w = l.write().unwrap();
                inside.write(|| {
                    w[0] += 1;
                    w[1] += 1;
                });
                let mine = *w;
                if full_slots {
                    for s in l.raw().reader_slots() {
                        let _ = s.compare_exchange(0, 99, Ordering::SeqCst, Ordering::Relaxed);
                    }
                }
                let r = RwLockWriteGuard::downgrade(w);
                if full_slots {
                    for s in l.raw().reader_slots() {
                        let _ = s.compare_exchange(99, 0, Ordering::SeqCst, Ordering::Relaxed);
                    }
                }
                inside.read(|| assert_eq!(*r, mine, "a writer got in during the downgrade"));
            }));
        }
        for _ in 0..writers {
            let (l, inside) = (l.clone(), inside.clone());
            hs.push(thread::spawn(move || {
                let mut w = l.write().unwrap();
                inside.write(|| {
                    w[0] += 1;
                    w[1] += 1;
                });
            }));
        }
        for _ in 0..readers {
            let (l, inside) = (l.clone(), inside.clone());
            hs.push(thread::spawn(move || {
                let r = l.read().unwrap();
                inside.read(|| assert_eq!(r[0], r[1]));
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert!(!l.is_locked());
        assert_eq!(*l.write().unwrap(), [writers as u32 + 1; 2]);
    });
}

#[test]
fn downgrade_overflow_beside_a_writer() {
    downgrade_model(0, 1, true);
}

#[test]
#[ignore = "about 2 minutes at LOOM_MAX_PREEMPTIONS=2; run with --ignored"]
fn downgrade_overflow_beside_a_writer_and_a_reader() {
    downgrade_model(1, 1, true);
}

#[test]
fn rwlock_downgrade_beside_a_writer() {
    downgrade_model(0, 1, false);
}

#[test]
fn rwlock_downgrade_beside_a_reader() {
    downgrade_model(1, 0, false);
}

#[test]
fn rwlock_downgrade_beside_a_reader_and_a_writer() {
    downgrade_model(1, 1, false);
}

/// A lock whose reader slot 0 names a reader that died holding a read lock, or at any
/// step of taking or releasing one: the slot is all such a death leaves (loom threads
/// never die: its TID is one the loom probe reports dead). `readers` live readers and
/// `writers` writers then run on it: the writers must free the dead slot and never get in
/// beside a live reader.
fn dead_reader_model(readers: usize, writers: usize) {
    dead_reader_model_from(0, readers, writers);
}

/// [`dead_reader_model`] starting from the state word `state` (bits that dead threads left
/// behind). At the end the main thread takes the write lock (freeing the dead slot if no
/// writer did) and checks that nothing is left held.
///
/// With three or more threads the search under `LOOM_MAX_PREEMPTIONS=2` takes minutes per
/// model, so those run with at most one preemption unless `SHMSTATE_LOOM_FULL=1` is set
/// (run that before changing the reader protocol); the two-thread models keep the full
/// bound.
fn dead_reader_model_from(state: u32, readers: usize, writers: usize) {
    let mut builder = loom::model::Builder::new();
    if readers + writers >= 3 && std::env::var_os("SHMSTATE_LOOM_FULL").is_none() {
        builder.preemption_bound = Some(1);
    }
    builder.check(move || {
        let l = Arc::new(RwLock::new([0u32; 2]));
        l.raw().reader_slots()[0].store(DEAD_UNDER_LOOM, Ordering::Relaxed);
        l.raw().state().store(state, Ordering::Relaxed);
        let inside = Arc::new(RwInside::new());
        let mut hs = Vec::new();
        for _ in 0..writers {
            let (l, inside) = (l.clone(), inside.clone());
            hs.push(thread::spawn(move || {
                let mut w = l.write().expect("a dead reader is no OwnerDied");
                inside.write(|| {
                    w[0] += 1;
                    w[1] += 1;
                });
            }));
        }
        for _ in 0..readers {
            let (l, inside) = (l.clone(), inside.clone());
            hs.push(thread::spawn(move || {
                let r = l
                    .read()
                    .expect("a dead reader or draining writer is no OwnerDied");
                inside.read(|| assert_eq!(r[0], r[1]));
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        drop(l.write().expect("a dead reader is no OwnerDied"));
        // Freed once: unlocked, no slot left taken.
        assert!(!l.is_locked());
        let slots: Vec<u32> = l
            .raw()
            .reader_slots()
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        assert!(
            slots.iter().all(|&s| s == 0),
            "slots {slots:?} state {:#x}",
            l.raw().state().load(Ordering::Relaxed)
        );
        assert_eq!(*l.read().unwrap(), [writers as u32; 2]);
    });
}

#[test]
fn rwlock_writer_recovers_a_dead_reader() {
    dead_reader_model(0, 1);
}

#[test]
fn rwlock_writer_recovers_a_dead_reader_beside_a_live_one() {
    dead_reader_model(1, 1);
}

#[test]
fn rwlock_two_writers_recover_a_dead_reader() {
    dead_reader_model(0, 2);
}

#[test]
fn rwlock_dead_reader_live_reader_and_two_writers() {
    dead_reader_model(1, 2);
}

/// The table (2 slots under loom) is full: one dead reader, one live registered reader and
/// one live overflow reader. The writer recovers the dead one and waits for both live.
#[test]
fn rwlock_dead_reader_and_a_full_table() {
    dead_reader_model(2, 1);
}

/// A writer that died draining (waiting for the dead reader: both threads of one killed
/// process). Readers are shut out by its `WRITE_LOCKED`: a reader must release the dead
/// writer's lock (without `OwnerDied`: it never touched the data), or it waits forever.
const DEAD_DRAINING_WRITER: u32 = (1 << 27) | (1 << 29) | DEAD_UNDER_LOOM;

#[test]
fn rwlock_reader_recovers_a_dead_draining_writer() {
    dead_reader_model_from(DEAD_DRAINING_WRITER, 1, 0);
}

#[test]
fn rwlock_reader_and_writer_recover_a_dead_draining_writer_and_dead_reader() {
    dead_reader_model_from(DEAD_DRAINING_WRITER, 1, 1);
}

/// A `WRITERS_WAITING` bit (31) that no writer stands behind: registered readers never
/// wait for it (an untimed wait would be a loom deadlock).
#[test]
fn rwlock_readers_ignore_a_stray_writers_waiting_bit() {
    dead_reader_model_from(1 << 31, 2, 0);
}

/// `try_write` and `read` meet as in Dekker's algorithm: whichever interleaving, the
/// writer never gets in beside the reader, and a refused `try_write` wakes a reader that
/// saw its bit and went to sleep.
#[test]
fn rwlock_try_write_never_enters_beside_a_reader() {
    loom::model(|| {
        let l = Arc::new(RwLock::new(0u32));
        let inside = Arc::new(RwInside::new());
        let (l2, inside2) = (l.clone(), inside.clone());
        let reader = thread::spawn(move || {
            let r = l2.read().unwrap();
            inside2.read(|| assert_eq!(*r, *r));
        });
        if let Ok(mut w) = l.try_write() {
            inside.write(|| *w += 1);
        }
        reader.join().unwrap();
        assert!(!l.is_locked());
    });
}

fn reentrant_model(threads: usize) {
    loom::model(move || {
        let m = Arc::new(ReentrantMutex::new(Value::new(0u32)));
        let inside = Arc::new(Inside::new());
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let a = m.lock().unwrap();
                    inside.run(|| {
                        let b = m.lock().unwrap();
                        // Relaxed: the lock orders it; a lost update means no exclusion.
                        b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    });
                    drop(a);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(m.lock().unwrap().load(Ordering::Relaxed), threads as u32);
    });
}

#[test]
fn reentrant_mutex_excludes_with_2_threads() {
    reentrant_model(2);
}

#[test]
fn reentrant_mutex_excludes_with_3_threads() {
    reentrant_model(3);
}

#[test]
fn condvar_notify_is_never_lost() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let (m2, cv2) = (m.clone(), cv.clone());
        let h = thread::spawn(move || {
            *m2.lock().unwrap() = 1;
            cv2.notify_one();
        });
        let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
        assert_eq!(*g, 1);
        drop(g);
        h.join().unwrap();
    });
}

#[test]
fn condvar_notify_all_wakes_two_waiters() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (m, cv) = (m.clone(), cv.clone());
                thread::spawn(move || {
                    let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
                    assert_eq!(*g, 1);
                })
            })
            .collect();
        *m.lock().unwrap() = 1;
        cv.notify_all();
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// Bit 0 of a condvar's word (`Condvar::words().0`): a waiter may sleep, so a notify must
/// wake.
const SLEEPERS: u32 = 1;

/// Two waiters each wait for a token; two `notify_one`s, one per token: the notify whose
/// wake finds nobody (and may clear the "may have sleepers" bit) must not strand the other
/// waiter. Afterwards one notify heals the word, and the next takes the no-wake path.
#[test]
fn condvar_two_notify_ones_wake_two_waiters_then_the_word_heals() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (m, cv) = (m.clone(), cv.clone());
                thread::spawn(move || {
                    let mut g = cv.wait_while(m.lock().unwrap(), |t| *t == 0).unwrap();
                    *g -= 1;
                })
            })
            .collect();
        for _ in 0..2 {
            *m.lock().unwrap() += 1;
            cv.notify_one();
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 0);
        cv.notify_one();
        assert_eq!(cv.words().0.load(Ordering::Relaxed) & SLEEPERS, 0);
    });
}

/// A waiter that registers and leaves (a timed wait times out at once under loom: the
/// stand-in for a waiter killed mid-wait) leaves the bit set; the notify that then wakes
/// nobody and clears it must not lose the real waiter's wakeup.
#[test]
fn condvar_clearing_a_dead_waiters_bit_never_loses_a_live_waiter() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let (m1, cv1) = (m.clone(), cv.clone());
        let gone = thread::spawn(move || {
            let g = m1.lock().unwrap();
            // An hour: under loom the timed wait times out at once whatever its length,
            // and a deadline the clock could reach mid-model would make runs differ.
            drop(
                cv1.wait_timeout(g, std::time::Duration::from_secs(3600))
                    .unwrap(),
            );
        });
        let (m2, cv2) = (m.clone(), cv.clone());
        let live = thread::spawn(move || {
            let g = cv2.wait_while(m2.lock().unwrap(), |v| *v == 0).unwrap();
            assert_eq!(*g, 1);
        });
        *m.lock().unwrap() = 1;
        cv.notify_one();
        gone.join().unwrap();
        live.join().unwrap();
    });
}

/// Two notifiers each hand one token to two waiters with `notify_one`, concurrently: the
/// bumps interleave, and a notify whose wake finds nobody may clear `SLEEPERS` while the
/// other notify's bump and wake are in flight; neither waiter may be stranded.
#[test]
fn condvar_concurrent_notify_ones_never_strand_a_waiter() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let mut hs: Vec<_> = (0..2)
            .map(|_| {
                let (m, cv) = (m.clone(), cv.clone());
                thread::spawn(move || {
                    let mut g = cv.wait_while(m.lock().unwrap(), |t| *t == 0).unwrap();
                    *g -= 1;
                })
            })
            .collect();
        let (m2, cv2) = (m.clone(), cv.clone());
        hs.push(thread::spawn(move || {
            *m2.lock().unwrap() += 1;
            cv2.notify_one();
        }));
        *m.lock().unwrap() += 1;
        cv.notify_one();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 0);
    });
}

/// A mutex whose unlock forgets to wake must deadlock in some interleaving, and loom must
/// say so: this proves the models above would catch a lost wakeup.
#[test]
fn mutex_without_wake_is_caught() {
    loom_tests::expect_model_failure("model_of_a_mutex_that_never_wakes", "deadlock");
}

/// The broken model run by `mutex_without_wake_is_caught` (in a child process).
#[test]
#[ignore = "fails by design; run by mutex_without_wake_is_caught"]
fn model_of_a_mutex_that_never_wakes() {
    loom::model(|| {
        let m = Arc::new(RawMutex::new());
        let m2 = m.clone();
        let h = thread::spawn(move || {
            assert_eq!(m2.lock(), Acquired::Consistent);
            // SAFETY: this thread holds the lock.
            unsafe { m2.unlock_without_wake() };
        });
        assert_eq!(m.lock(), Acquired::Consistent);
        // SAFETY: this thread holds the lock.
        unsafe { m.unlock_without_wake() };
        h.join().unwrap();
    });
}
