//! Owner death with real processes: a child takes a lock, signals through shared memory,
//! and is SIGKILLed; the parent gets `OwnerDied` in bounded time. Also threads that exit
//! holding a lock. Prints the detection latency (run with `--nocapture`).

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, watchdog};
use locks_support::{kill, park_forever, percentiles, raise, reap, wait_for};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{
    Elem, Kind, Mutex, ReentrantMutex, RwLock, SeqLock, SharedSized, TimedLockError, TypeTag, Value,
};

const SIGNAL_LIMIT: Duration = Duration::from_secs(20);

#[repr(C)]
struct Arena {
    m: Mutex<u64>,
    r: ReentrantMutex<Value<u64>>,
    rw: RwLock<[u64; 2]>,
    /// Round number the child has locked in.
    locked: AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types and an atomic: all-zero valid,
// any bytes valid, no pointers, Sync.
unsafe impl SharedSized for Arena {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// Bit 29 of an `RwLock`'s state word (see `RawRwLock`'s field docs): the writer holds the
/// lock and waits for registered readers to leave.
const DRAINING: u32 = 1 << 29;

/// How many reader slots of the arena's `RwLock` name a thread.
fn occupied_slots(a: &Arena) -> usize {
    a.rw.raw()
        .reader_slots()
        .iter()
        .filter(|s| s.load(Ordering::Relaxed) != 0)
        .count()
}

fn report(what: &str, samples: &mut [Duration]) {
    let (median, p99, max) = percentiles(samples);
    eprintln!(
        "{what}: {} rounds, kill -> OwnerDied latency: median {median:?}, p99 {p99:?}, max {max:?}",
        samples.len()
    );
}

/// Forks a child that runs `lock_and_hold` (which must lock and never unlock), waits until
/// it has signalled round `round`, then returns its pid.
fn child_holding(a: &Arena, round: u32, lock_and_hold: impl Fn(&Arena)) -> libc::pid_t {
    let pid = fork_children(1, |_| {
        lock_and_hold(a);
        raise(&a.locked, round);
        park_forever();
    })[0];
    wait_for(&a.locked, round, SIGNAL_LIMIT);
    pid
}

#[test]
fn mutex_recovers_when_owner_is_killed() {
    watchdog(Duration::from_secs(240));
    const ROUNDS: u32 = 200;
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let pid = child_holding(a, round, |a| {
            let mut g = a.m.lock().unwrap();
            *g += 1;
            std::mem::forget(g);
        });
        // Odd rounds: a thread is already waiting in lock() when the owner is killed.
        // Even rounds: lock() is called right after the kill.
        let (t_kill, t_died) = if round % 2 == 1 {
            let entering = AtomicU32::new(0);
            std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    raise(&entering, 1);
                    let r = a.m.lock();
                    let t = Instant::now();
                    let mut g = r.expect_err("the owner was killed").into_inner();
                    g.mark_consistent();
                    t
                });
                wait_for(&entering, 1, SIGNAL_LIMIT);
                let t_kill = Instant::now();
                kill(pid);
                (t_kill, waiter.join().unwrap())
            })
        } else {
            let t_kill = Instant::now();
            kill(pid);
            let r = a.m.lock();
            let t = Instant::now();
            r.expect_err("the owner was killed")
                .into_inner()
                .mark_consistent();
            (t_kill, t)
        };
        latencies.push(t_died - t_kill);
        reap(pid);
        // The child's increment is there, and the lock is clean again.
        assert_eq!(*a.m.lock().unwrap(), u64::from(round));
    }
    report("Mutex, killed process", &mut latencies);
}

#[test]
fn mutex_recovers_when_owner_thread_exits() {
    watchdog(Duration::from_secs(120));
    let m = Mutex::new(0u64);
    let mut latencies = Vec::new();
    for round in 1..=50u64 {
        let t_exit = std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                *g += 1;
                std::mem::forget(g);
                Instant::now()
            })
            .join()
            .unwrap()
        });
        let mut g = m.lock().expect_err("the owner thread exited").into_inner();
        latencies.push(t_exit.elapsed());
        assert_eq!(*g, round);
        g.mark_consistent();
    }
    report("Mutex, exited thread", &mut latencies);
}

#[test]
fn reentrant_mutex_recovers_when_owner_is_killed() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mut latencies = Vec::new();
    for round in 1..=20 {
        let pid = child_holding(a, round, |a| {
            // Held two levels deep when killed: the count must not leak to the next owner.
            let g = a.r.lock().unwrap();
            let g2 = a.r.lock().unwrap();
            g2.store(g.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            std::mem::forget((g, g2));
        });
        let t_kill = Instant::now();
        kill(pid);
        let g = a.r.lock().expect_err("the owner was killed").into_inner();
        latencies.push(t_kill.elapsed());
        assert_eq!(g.load(Ordering::Relaxed), u64::from(round));
        g.mark_consistent();
        drop(g);
        reap(pid);
        // One guard released it completely.
        assert!(!a.r.is_owned_by_current_thread());
        std::thread::scope(|s| {
            s.spawn(|| drop(a.r.try_lock().unwrap()));
        });
    }
    report("ReentrantMutex, killed process", &mut latencies);
}

#[test]
fn rwlock_recovers_when_writer_is_killed() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mut latencies = Vec::new();
    for round in 1..=20 {
        let pid = child_holding(a, round, |a| {
            let mut g = a.rw.write().unwrap();
            g[0] += 1; // killed half-way: g[1] lags
            std::mem::forget(g);
        });
        let t_kill = Instant::now();
        kill(pid);
        // Odd rounds a reader recovers, even rounds a writer.
        if round % 2 == 1 {
            let r = a.rw.read().expect_err("the writer was killed").into_inner();
            latencies.push(t_kill.elapsed());
            assert_eq!(r[0], r[1] + 1);
            drop(r);
            // Readers keep being told until a writer repairs the data.
            assert!(a.rw.read().is_err());
        } else {
            let w = a.rw.write();
            latencies.push(t_kill.elapsed());
            // Dropped without marking: the next writer below is told too.
            assert!(w.is_err(), "the writer was killed");
        }
        let mut w = match a.rw.write() {
            Ok(w) => w,
            Err(d) => d.into_inner(),
        };
        w[1] = w[0];
        w.mark_consistent();
        drop(w);
        assert!(a.rw.read().is_ok());
        reap(pid);
    }
    report("RwLock writer, killed process", &mut latencies);
}

#[test]
fn rwlock_recovers_when_writer_thread_exits() {
    watchdog(Duration::from_secs(60));
    let l = RwLock::new(0u32);
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(l.write().unwrap()));
    });
    let mut w = l.write().expect_err("the writer exited").into_inner();
    w.mark_consistent();
    drop(w);
    assert!(l.read().is_ok());
}

/// A reader SIGKILLed holding a read lock: its lock stays counted, but its TID is in a
/// reader slot; the next writer finds it dead and counts it out, and gets the lock in
/// bounded time (without `OwnerDied`: readers do not write, the data is intact).
#[test]
fn rwlock_recovers_when_reader_is_killed() {
    watchdog(Duration::from_secs(240));
    const ROUNDS: u32 = 50;
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let pid = child_holding(a, round, |a| {
            let r = a.rw.read().unwrap();
            std::mem::forget(r);
        });
        // Odd rounds: a writer already waits when the reader is killed. Even rounds:
        // write() is called right after the kill.
        let (t_kill, t_in) = if round % 2 == 1 {
            std::thread::scope(|s| {
                let writer = s.spawn(|| {
                    let mut w = a.rw.write().expect("a dead reader is no OwnerDied");
                    let t = Instant::now();
                    w[0] += 1;
                    w[1] += 1;
                    t
                });
                // The writer holds the lock and waits for the reader (bit 29, `DRAINING`).
                while a.rw.raw().state().load(Ordering::Relaxed) & DRAINING == 0 {
                    std::thread::yield_now();
                }
                let t_kill = Instant::now();
                kill(pid);
                (t_kill, writer.join().unwrap())
            })
        } else {
            let t_kill = Instant::now();
            kill(pid);
            let mut w = a.rw.write().expect("a dead reader is no OwnerDied");
            let t = Instant::now();
            w[0] += 1;
            w[1] += 1;
            (t_kill, t)
        };
        latencies.push(t_in - t_kill);
        reap(pid);
        // Counted out exactly once: unlocked, every slot free, readers and writers go on.
        assert!(!a.rw.is_locked());
        assert!(
            a.rw.raw()
                .reader_slots()
                .iter()
                .all(|s| s.load(Ordering::Relaxed) == 0)
        );
        assert_eq!(*a.rw.read().unwrap(), [u64::from(round); 2]);
    }
    report(
        "RwLock reader, killed process (kill -> write lock)",
        &mut latencies,
    );
}

/// A dead reader beside a live one: the writer counts the dead one out but must still wait
/// for the live one (a second writer probing meanwhile must not get in either), then gets
/// in once the live reader unlocks.
#[test]
fn rwlock_writer_waits_for_a_live_reader_beside_a_dead_one() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let reading = AtomicU32::new(0);
    for round in 1..=10 {
        let pid = child_holding(a, round, |a| std::mem::forget(a.rw.read().unwrap()));
        let live = a.rw.read().unwrap();
        reading.store(1, Ordering::Relaxed);
        kill(pid);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut w = a.rw.write_timeout(Duration::from_secs(60)).unwrap();
                assert_eq!(
                    reading.load(Ordering::Relaxed),
                    0,
                    "a writer got in beside a live reader"
                );
                w[0] += 1;
                w[1] += 1;
            });
            // The dead reader's slot is freed: one reader left (the live one).
            let deadline = Instant::now() + SIGNAL_LIMIT;
            while occupied_slots(a) != 1 {
                assert!(
                    Instant::now() < deadline,
                    "the dead reader was never counted out"
                );
                std::thread::yield_now();
            }
            // Another writer probing for several slices must not count the live reader out.
            s.spawn(|| {
                assert!(
                    a.rw.write_timeout(Duration::from_millis(40)).is_err(),
                    "a writer got in beside a live reader"
                );
            })
            .join()
            .unwrap();
            assert!(!writer.is_finished());
            reading.store(0, Ordering::Relaxed);
            drop(live);
            writer.join().unwrap();
        });
        reap(pid);
        assert!(!a.rw.is_locked());
        assert_eq!(*a.rw.read().unwrap(), [u64::from(round); 2]);
    }
}

/// A writer killed while *waiting* (its writers-waiting bit set, asleep behind a reader)
/// does not wedge the lock: once the reader unlocks, new readers and writers get in.
#[test]
fn rwlock_writer_killed_while_waiting_does_not_block_later_readers() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    for round in 1..=10u32 {
        let r = a.rw.read().unwrap();
        let pid = fork_children(1, |_| {
            raise(&a.locked, round);
            let _w = a.rw.write();
            park_forever();
        })[0];
        wait_for(&a.locked, round, SIGNAL_LIMIT);
        // The child holds the lock and waits for our reader (bit 29, `DRAINING`).
        let start = Instant::now();
        while a.rw.raw().state().load(Ordering::Relaxed) & DRAINING == 0 {
            assert!(start.elapsed() < SIGNAL_LIMIT, "the writer never waited");
            std::thread::yield_now();
        }
        kill(pid);
        reap(pid);
        drop(r);
        // Readers are not held back by the dead writer's announcement, in this process or
        // another, and a writer gets in too.
        let limit = Duration::from_secs(10);
        assert!(
            a.rw.read_timeout(limit).is_ok(),
            "round {round}: reader wedged"
        );
        let readers = fork_children(2, |_| {
            assert!(a.rw.read_timeout(limit).is_ok(), "reader wedged");
        });
        common::wait_all(&readers, Duration::from_secs(20));
        *a.rw.write_timeout(limit).expect("writer wedged") = [u64::from(round); 2];
        assert!(!a.rw.is_locked());
    }
}

/// A process is killed while one of its threads holds a read lock and another waits to
/// write: the state names the dead writer (draining: it never touched the data) and a slot
/// the dead reader. A reader releases the dead writer's lock (without `OwnerDied`) and
/// reads in bounded time, and a writer then frees the dead reader's slot and gets in.
#[test]
fn rwlock_recovers_a_process_killed_reading_and_draining() {
    watchdog(Duration::from_secs(120));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    for round in 1..=5u32 {
        let pid = child_holding(a, round, |a| {
            std::mem::forget(a.rw.read().unwrap());
            // The mapping outlives the child's threads (the child parks until killed).
            let addr = a as *const Arena as usize;
            std::thread::spawn(move || {
                // SAFETY: `addr` points to the live `Arena` in the shared mapping.
                let a = unsafe { &*(addr as *const Arena) };
                let _w = a.rw.write();
                park_forever();
            });
            // The writer holds the lock and waits for the reader (bit 29, `DRAINING`).
            let start = Instant::now();
            while a.rw.raw().state().load(Ordering::Relaxed) & DRAINING == 0 {
                assert!(start.elapsed() < SIGNAL_LIMIT, "the writer never waited");
                std::thread::yield_now();
            }
        });
        kill(pid);
        reap(pid);
        let limit = Duration::from_secs(10);
        let r = a.rw.read_timeout(limit);
        assert!(
            r.is_ok(),
            "round {round}: reader wedged behind a dead draining writer (or it read as OwnerDied)"
        );
        drop(r);
        *a.rw.write_timeout(limit).expect("writer wedged") = [u64::from(round); 2];
        assert!(!a.rw.is_locked());
        assert!(
            a.rw.raw()
                .reader_slots()
                .iter()
                .all(|s| s.load(Ordering::Relaxed) == 0)
        );
    }
}

/// A reader SIGKILLed at an arbitrary instruction of `read()`, `try_read()`,
/// `read_timeout()` or of the guard's unlock never wedges the lock: after every kill a
/// writer gets in within a bound, and the lock is then entirely free (no slot, no count
/// left behind). The kill instant is varied (a pseudo-random delay after the child has
/// started looping), so over the rounds the kills land on every step of the protocol.
#[test]
fn rwlock_reader_killed_anywhere_in_lock_or_unlock_is_recovered() {
    watchdog(Duration::from_secs(240));
    const ROUNDS: u32 = 150;
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mut seed = 0x9E37_79B9_u32;
    for round in 1..=ROUNDS {
        let pid = fork_children(1, |_| {
            raise(&a.locked, round);
            loop {
                drop(a.rw.read());
                drop(a.rw.try_read());
                drop(a.rw.read_timeout(Duration::from_secs(1)));
            }
        })[0];
        wait_for(&a.locked, round, SIGNAL_LIMIT);
        // xorshift: a delay of 0..=2047 spins, so the kill lands anywhere in the loop.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        for _ in 0..(seed & 2047) {
            std::hint::spin_loop();
        }
        kill(pid);
        reap(pid);
        let w = a.rw.write_timeout(Duration::from_secs(5));
        assert!(
            w.is_ok(),
            "round {round}: a reader killed mid-protocol wedged the lock (state {:#x}, slots {:?})",
            a.rw.raw().state().load(Ordering::Relaxed),
            a.rw.raw()
                .reader_slots()
                .iter()
                .map(|s| s.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        );
        drop(w);
        assert!(!a.rw.is_locked(), "round {round}: lock left held");
    }
}

/// A timed lock whose deadline is shorter than the first wait slice (1 ms) still probes
/// once at its deadline, so it takes over from a dead owner instead of timing out: a mutex
/// owner, an RwLock writer (for a reader and for a writer), and a dead reader's slot (for a
/// writer).
#[test]
fn timed_locks_shorter_than_a_slice_still_recover_a_dead_owner() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let short = Duration::from_micros(200);
    // The lock words name a thread that died: a reaped child's.
    let dead = fork_children(1, |_| {})[0];
    reap(dead);
    let dead = dead as u32;
    const WRITE_LOCKED: u32 = 1 << 27;

    a.m.raw().word().store(dead, Ordering::Relaxed);
    let r = a.m.lock_timeout(short);
    assert!(
        matches!(r, Err(shmstate::TimedLockError::OwnerDied(_))),
        "mutex: a dead owner was not taken over at the deadline"
    );
    drop(r);

    for write in [false, true] {
        a.rw.raw()
            .state()
            .store(WRITE_LOCKED | dead, Ordering::Relaxed);
        let ok = if write {
            matches!(
                a.rw.write_timeout(short),
                Err(shmstate::TimedLockError::OwnerDied(_))
            )
        } else {
            matches!(
                a.rw.read_timeout(short),
                Err(shmstate::TimedLockError::OwnerDied(_))
            )
        };
        assert!(
            ok,
            "rwlock (write: {write}): a dead writer was not recovered at the deadline"
        );
        a.rw.raw().state().store(0, Ordering::Relaxed);
    }

    a.rw.raw().reader_slots()[3].store(dead, Ordering::Relaxed);
    assert!(
        a.rw.write_timeout(short).is_ok(),
        "rwlock: a dead reader's slot was not freed at the deadline"
    );
    assert!(!a.rw.is_locked());
}

/// A peer that keeps waking a lock's futex words (a live waker, or a hostile one) must not
/// put a waiter's probe off forever: a dead holder is still recovered within a bound. For
/// the Mutex, the peer spams `FUTEX_WAKE` on the lock word; for the RwLock, a second
/// writer loops short `write_until`s, whose give-ups wake the draining writer each time.
#[test]
fn a_peer_waking_the_lock_does_not_postpone_recovery_of_a_dead_holder() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let dead = fork_children(1, |_| {})[0];
    reap(dead);
    let dead = dead as u32;
    let stop = AtomicU32::new(0);

    a.m.raw().word().store(dead, Ordering::Relaxed);
    std::thread::scope(|s| {
        s.spawn(|| {
            while stop.load(Ordering::Relaxed) == 0 {
                shmstate::futex::wake_all(a.m.raw().word());
                std::hint::spin_loop();
            }
        });
        let start = Instant::now();
        let r = a.m.lock();
        let took = start.elapsed();
        stop.store(1, Ordering::Relaxed);
        assert!(r.is_err(), "mutex: a dead owner must read as OwnerDied");
        assert!(
            took < Duration::from_secs(5),
            "mutex: recovery took {took:?}"
        );
    });

    stop.store(0, Ordering::Relaxed);
    a.rw.raw().reader_slots()[5].store(dead, Ordering::Relaxed);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let start = Instant::now();
            let w = a.rw.write();
            let took = start.elapsed();
            stop.store(1, Ordering::Relaxed);
            assert!(w.is_ok(), "a dead reader is no OwnerDied");
            took
        });
        s.spawn(|| {
            while stop.load(Ordering::Relaxed) == 0 {
                let _ =
                    a.rw.write_until(Instant::now() + Duration::from_micros(300));
            }
        });
        let took = writer.join().unwrap();
        assert!(
            took < Duration::from_secs(5),
            "rwlock: recovery took {took:?}"
        );
    });
    assert!(!a.rw.is_locked());
}

/// Waits until `word & bit` is set (a sleeper has announced itself); panics after 20 s.
fn wait_for_bit(word: &AtomicU32, bit: u32) {
    let start = Instant::now();
    while word.load(Ordering::Relaxed) & bit == 0 {
        assert!(start.elapsed() < SIGNAL_LIMIT, "bit {bit:#x} never set");
        std::thread::yield_now();
    }
}

/// Crash-window line "lock, contended: `CONTENDED` set, asleep" of `RawMutex`: a waiter
/// killed while asleep leaves a stale `CONTENDED`; the owner's next unlock clears it (one
/// needless wake) and the lock is back on its fast path.
#[test]
fn mutex_waiter_killed_asleep_leaves_a_bit_the_next_unlock_clears() {
    watchdog(Duration::from_secs(60));
    /// Bit 31 of a `RawMutex` word: someone may sleep on it.
    const CONTENDED: u32 = 1 << 31;
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let g = a.m.lock().unwrap();
    let pid = fork_children(1, |_| drop(a.m.lock()))[0];
    wait_for_bit(a.m.raw().word(), CONTENDED);
    kill(pid);
    reap(pid);
    drop(g);
    assert_eq!(
        a.m.raw().word().load(Ordering::Relaxed),
        0,
        "the unlock left a stale bit"
    );
    drop(a.m.try_lock().expect("free"));
    assert_eq!(a.m.raw().word().load(Ordering::Relaxed), 0);
}

/// Crash-window line "read, waiting: `READERS_WAITING` set" of `RwLock`: a reader killed
/// while asleep behind a writer leaves a stale bit; the writer's unlock clears it, and
/// readers and writers go on.
#[test]
fn rwlock_reader_killed_asleep_leaves_a_bit_the_next_unlock_clears() {
    watchdog(Duration::from_secs(60));
    /// Bit 30 of an `RwLock` state: readers may sleep on it.
    const READERS_WAITING: u32 = 1 << 30;
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let w = a.rw.write().unwrap();
    let pid = fork_children(1, |_| drop(a.rw.read()))[0];
    wait_for_bit(a.rw.raw().state(), READERS_WAITING);
    kill(pid);
    reap(pid);
    drop(w);
    assert_eq!(a.rw.raw().state().load(Ordering::Relaxed), 0);
    assert!(!a.rw.is_locked());
    drop(a.rw.try_read().expect("free"));
    drop(a.rw.try_write().expect("free"));
}

/// Crash-window line "overflow read (every slot taken): counted in" of `RwLock`: a reader
/// that died holding an overflow (unregistered) read lock is documented as not repaired.
/// What must hold: timed and `try_` calls keep their bounds (writers time out, readers
/// still get in), and once the slots' readers leave nothing else is lost.
#[test]
fn rwlock_dead_overflow_reader_leaks_but_timed_calls_keep_their_bound() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let slots = a.rw.raw().reader_slots().len();
    // Fill every slot with a live reader (threads of this process), so the child's read
    // lock is an overflow one.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let ready = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..slots {
            s.spawn(|| {
                let _r = a.rw.read().unwrap();
                ready.fetch_add(1, Ordering::Relaxed);
                let _ = rx.lock().unwrap().recv();
            });
        }
        while ready.load(Ordering::Relaxed) < slots as u32 {
            std::thread::yield_now();
        }
        let pid = child_holding(a, 1, |a| std::mem::forget(a.rw.read().unwrap()));
        assert_eq!(a.rw.raw().state().load(Ordering::Relaxed) & 0x00FF_FFFF, 1);
        kill(pid);
        reap(pid);
        for _ in 0..slots {
            tx.send(()).unwrap();
        }
    });
    // Only the dead overflow reader is left.
    let start = Instant::now();
    assert!(matches!(
        a.rw.write_timeout(Duration::from_millis(30)),
        Err(shmstate::TimedLockError::Timeout)
    ));
    assert!(a.rw.try_write().is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a bound was broken"
    );
    assert!(a.rw.read_timeout(Duration::from_millis(30)).is_ok());
}

/// A process killed holding a `ReentrantMutex` (nested, with half-written data), whose
/// PID the kernel then hands to a new process that locks it: that process must get
/// `OwnerDied` and a fresh depth, not enter as a nested lock of the dead owner's (which
/// would report torn data as consistent and never release the lock). Forces the reuse
/// through `ns_last_pid` (root only; skipped elsewhere, or if another process takes the
/// PID first).
#[test]
fn reentrant_mutex_is_not_entered_by_a_process_that_reused_the_dead_owners_pid() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let dead = child_holding(a, 1, |a| {
        let outer = a.r.lock().unwrap();
        let inner = a.r.lock().unwrap();
        inner.store(1, Ordering::Relaxed);
        std::mem::forget(inner);
        std::mem::forget(outer);
    });
    kill(dead);
    reap(dead);
    // The next PID the kernel hands out is `dead` again.
    if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", dead - 1)).is_err() {
        eprintln!("skipped: cannot set ns_last_pid (not root)");
        return;
    }
    let new = fork_children(1, |_| {
        // Exit codes: 0 OwnerDied and released, 1 entered as a nested lock, 2 not released
        // after the last guard, 4 not the reused PID (another process took it).
        // SAFETY: `getpid` has no preconditions.
        let code = if unsafe { libc::getpid() } != dead {
            4
        } else {
            match a.r.lock() {
                Ok(_) => 1,
                Err(od) => {
                    let g = od.into_inner();
                    assert!(a.r.is_owned_by_current_thread());
                    drop(g);
                    if a.r.is_locked() { 2 } else { 0 }
                }
            }
        };
        // SAFETY: ends the forked child at once.
        unsafe { libc::_exit(code) };
    })[0];
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(new, &mut status, 0) };
    if new != dead {
        eprintln!("skipped: another process took the reused PID");
        return;
    }
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the process with the dead owner's PID (1: entered as a nested lock; 2: kept it)"
    );
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), or `None` where `/proc` does not show it.
fn start_ticks(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace()
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
}

/// The clock `/proc/<pid>/stat` counts start times on, in the same ticks.
fn boot_ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a `timespec`.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(r, 0);
    // SAFETY: `sysconf` has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000
}

/// Every stamped lock word at once, for the PID-reuse test.
#[repr(C)]
struct Stamped {
    m: Mutex<u64>,
    w: RwLock<u64>,
    r: RwLock<u64>,
    s: SeqLock<u64>,
    locked: AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` types and an atomic: all-zero valid,
// any bytes valid, no pointers, Sync.
unsafe impl SharedSized for Stamped {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::NONE);
}

/// `clone3`'s arguments up to `set_tid` (`struct clone_args`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts a process with PID `pid` (`clone3` with `set_tid`: root, Linux 5.5; `None` if
/// refused, or if the PID is taken) that does nothing until killed (and is killed with
/// the thread that made it). A PID reused on purpose, without moving the kernel's next
/// PID for every other process as `ns_last_pid` would.
fn process_with_pid(pid: libc::pid_t) -> Option<libc::pid_t> {
    let tids = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: a fork-like `clone3` (no `CLONE_VM`: the child has its own copy of memory);
    // the child makes only async-signal-safe calls (`prctl`, `pause`) until it is killed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: as above.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            loop {
                libc::pause();
            }
        }
    }
    (r > 0).then_some(r as libc::pid_t)
}

/// Every stamped lock whose holder was killed, and whose PID a live process got before
/// anyone probed the lock (the kernel reuses PIDs), is taken over instead of waited on:
/// a `Mutex` (`OwnerDied`), an `RwLock` writer (`OwnerDied`; its stamp has 5 bits), an
/// `RwLock` reader's slot (the writer gets in) and a `SeqLock` writer. Each lock word
/// records the stamp of its holder's start time beside its TID. Skipped without root, if
/// another process holds the PID, or if the two start times give the same stamp (1 in 255;
/// the writer's check alone when only their 5-bit stamps match, 1 in 31).
#[test]
fn every_stamped_lock_is_recovered_from_a_dead_holder_whose_pid_a_live_process_reused() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Stamped>::new(1);
    let a = mem.get();
    let dead = fork_children(1, |_| {
        std::mem::forget(a.m.lock().unwrap());
        std::mem::forget(a.w.write().unwrap());
        std::mem::forget(a.r.read().unwrap());
        std::mem::forget(a.s.lock());
        raise(&a.locked, 1);
        park_forever();
    })[0];
    wait_for(&a.locked, 1, SIGNAL_LIMIT);
    let dead_start = start_ticks(dead);
    kill(dead);
    reap(dead);
    let Some(dead_start) = dead_start else {
        eprintln!("skipped: /proc does not show start times here");
        return;
    };
    // The new process must start in a later clock tick than the dead holder (a real
    // reuse comes a whole PID wrap later): wait for the clock, not for another process.
    while boot_ticks() <= dead_start {
        std::thread::yield_now();
    }
    let Some(new) = process_with_pid(dead) else {
        eprintln!("skipped: clone3 with set_tid refused (not root, or the PID is taken)");
        return;
    };
    let new_start = start_ticks(new).unwrap_or(dead_start);
    let t = Duration::from_secs(5);
    let mut failed = Vec::new();
    if new_start % 255 == dead_start % 255 {
        eprintln!("skipped: the two start times give the same stamp (1 in 255)");
    } else {
        if !matches!(a.m.lock_timeout(t), Err(TimedLockError::OwnerDied(_))) {
            failed.push("mutex");
        }
        if a.r.write_timeout(t).is_err() {
            failed.push("rwlock reader slot");
        }
        if a.s.lock_timeout(t).is_err() {
            failed.push("seqlock writer");
        }
        if (new_start % 255) % 31 == (dead_start % 255) % 31 {
            eprintln!("skipped the rwlock writer: the 5-bit stamps are the same (1 in 31)");
        } else if !matches!(a.w.write_timeout(t), Err(TimedLockError::OwnerDied(_))) {
            failed.push("rwlock writer");
        }
    }
    kill(new);
    reap(new);
    assert!(
        failed.is_empty(),
        "not taken over from a dead holder whose PID a live process reused: {failed:?}"
    );
}

/// A prober in another time namespace (whose `/proc` shows every start time shifted by
/// its boot-time offset) must not read a live holder as dead for its stamp: it judges the
/// holder by its TID alone, and its timed lock times out; also from a thread whose main
/// thread has exited. Needs `CAP_SYS_ADMIN` and Linux 5.6 (skipped elsewhere).
#[test]
fn a_prober_in_another_time_namespace_does_not_take_a_live_holders_lock() {
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let g = a.m.lock().unwrap();
    // Exit codes: 0 timed out (right), 1 took the live holder's lock, 2 acquired it
    // cleanly, 4 no time namespace here.
    let child = fork_children(1, |_| {
        // SAFETY: `unshare` changes only this process's namespaces; the offsets file is
        // written before any process enters the new namespace, as the kernel requires.
        let code = if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0
            || std::fs::write("/proc/self/timens_offsets", "boottime 7 0").is_err()
        {
            4
        } else {
            // The new time namespace is for children: fork ones to probe from it, the
            // second from a thread whose main thread has exited (its `/proc/self` entries
            // are gone: the prober must look at its own thread's).
            let mut worst = 0;
            for main_exited in [false, true] {
                let pid = fork_children(1, |_| {
                    // SAFETY: the mapping stays in this child until it ends, by `_exit`
                    // (nothing here unmaps it), so the reference lives as long as any
                    // thread of the child.
                    let a: &'static Arena = unsafe { &*(a as *const Arena) };
                    let probe = move || {
                        let code = match a.m.lock_timeout(Duration::from_millis(300)) {
                            Err(TimedLockError::Timeout) => 0,
                            Err(TimedLockError::OwnerDied(_)) => 1,
                            Ok(_) => 2,
                        };
                        // SAFETY: ends the forked child at once.
                        unsafe { libc::_exit(code) };
                    };
                    if !main_exited {
                        probe();
                    }
                    // SAFETY: `getpid` has no preconditions.
                    let me = unsafe { libc::getpid() };
                    std::thread::spawn(move || {
                        // Until the main thread is a zombie (the watchdog bounds it).
                        while start_ticks(me).is_some()
                            && std::fs::read_to_string(format!("/proc/{me}/stat")).is_ok_and(|s| {
                                !s.rsplit_once(')')
                                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                            })
                        {
                            std::thread::yield_now();
                        }
                        probe();
                    });
                    // SAFETY: the raw `exit` system call ends the calling (main) thread
                    // only, without unwinding or running any destructor; the spawned
                    // thread goes on and ends the process with `_exit`.
                    unsafe { libc::syscall(libc::SYS_exit, 0) };
                    unreachable!("the main thread exited");
                })[0];
                let mut status = 0;
                // SAFETY: reaping our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    3
                };
                worst = worst.max(code);
            }
            worst
        };
        // SAFETY: ends the forked child at once.
        unsafe { libc::_exit(code) };
    })[0];
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    drop(g);
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    match libc::WEXITSTATUS(status) {
        4 => eprintln!("skipped: cannot make a time namespace here"),
        code => assert_eq!(code, 0, "1: a live holder's lock was taken; 2: acquired"),
    }
}

/// Locks with `lock`, forks, drops the guard in the parent; the child locks again, gives
/// its copy of the parent's guard to `dispose` (drops it, maps it, downgrades it), and
/// exits 0 if `held` (its own lock) still holds.
fn child_keeps_its_lock_after_disposing_of_a_copy<G>(
    a: &Arena,
    lock: impl Fn() -> G,
    dispose: impl FnOnce(G),
    held: impl Fn() -> bool,
) -> i32 {
    a.locked.store(0, Ordering::SeqCst);
    let parents = lock();
    // SAFETY: the child only locks, reads atomics and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        wait_for(&a.locked, 1, SIGNAL_LIMIT);
        let own = lock();
        dispose(parents);
        let code = if held() { 0 } else { 1 };
        drop(own);
        // SAFETY: ends the forked child at once.
        unsafe { libc::_exit(code) };
    }
    drop(parents);
    raise(&a.locked, 1);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// A forked child's copy of a guard must act on nothing, even once the child holds the
/// lock itself: the parent drops its guard, the child locks, then drops (or maps, or
/// downgrades) its copy of the parent's guard; the child must still hold the lock (else
/// another process could enter under the child's guard). `Mutex`, `ReentrantMutex` and
/// an `RwLock`'s write guard.
#[test]
fn a_forked_copy_of_a_guard_does_not_release_the_childs_own_lock() {
    use shmstate::{MutexGuard, RwLockWriteGuard};
    watchdog(Duration::from_secs(60));
    let mem = SharedMem::<Arena>::new(1);
    let a = mem.get();
    let mutex_held = || a.m.raw().is_owned_by_current_thread();
    let write_held = || a.rw.try_read().is_err();
    let results = [
        child_keeps_its_lock_after_disposing_of_a_copy(a, || a.m.lock().unwrap(), drop, mutex_held),
        child_keeps_its_lock_after_disposing_of_a_copy(
            a,
            || a.m.lock().unwrap(),
            |g| drop(MutexGuard::map(g, |x| x)),
            mutex_held,
        ),
        child_keeps_its_lock_after_disposing_of_a_copy(
            a,
            || a.r.lock().unwrap(),
            drop,
            || a.r.is_owned_by_current_thread(),
        ),
        child_keeps_its_lock_after_disposing_of_a_copy(
            a,
            || a.rw.write().unwrap(),
            drop,
            write_held,
        ),
        child_keeps_its_lock_after_disposing_of_a_copy(
            a,
            || a.rw.write().unwrap(),
            |g| drop(RwLockWriteGuard::downgrade(g)),
            write_held,
        ),
    ];
    assert_eq!(
        results, [0; 5],
        "1: the copy released (or downgraded) the child's own lock: mutex, mapped mutex, \
         reentrant, write, downgraded write"
    );
}
