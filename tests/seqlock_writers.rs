//! `SeqLock` writers contending across real forked processes: the contended writer's spin,
//! sleep and timed paths keep writes exclusive, and a writer stopped while holding the
//! lock (a live owner) makes a timed writer time out at its deadline, not hang or steal
//! the lock. Run under nextest (one process per test).
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, wait_all, wait_until_stopped, watchdog};
use shmstate::{SeqLock, SeqLockArray, TimedLockError};

/// Control words shared with the children (index meanings are per test).
type Control = SharedMem<SeqLockArray<u64>>;

/// Writes per writer process: fewer in debug builds, where each write is ~10x slower.
const WRITES: u64 = if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

#[test]
fn writers_in_two_processes_lose_no_update_and_readers_see_no_torn_value() {
    watchdog(Duration::from_secs(120));
    const WRITERS: usize = 2;
    let lock = SharedMem::<SeqLock<[u64; 8]>>::new(1);
    // 0: writers done; 1: torn reads seen by the reader; 1 + 1 + w: how often writer `w`
    // found the value moved on by another writer since its own last write.
    let ctl = Control::new(2 + WRITERS);
    let writers = fork_children(WRITERS, |w| {
        let (l, c) = (lock.get(), ctl.get());
        let (mut mine, mut turns) = (None, 0u64);
        for k in 0..WRITES {
            // Every eighth write goes through the timed path (its spin and its sleeps
            // honour a deadline); the others through the untimed one.
            let seen = if k % 8 == 0 {
                let mut g = match l.lock_timeout(Duration::from_secs(60)) {
                    Ok(g) => g,
                    Err(TimedLockError::Timeout) => panic!("a live writer held on for 60 s"),
                    Err(TimedLockError::OwnerDied(_)) => panic!("no writer died"),
                };
                let seen = g[0];
                *g = [seen + 1; 8];
                seen
            } else {
                l.update(|v| {
                    let seen = v[0];
                    *v = [seen + 1; 8];
                    seen
                })
                .expect("no writer died")
            };
            turns += u64::from(mine.is_some_and(|m| m != seen));
            mine = Some(seen + 1);
        }
        c.set(2 + w, turns);
        c.update(0, |d| *d += 1).unwrap();
    });
    let reader = fork_children(1, |_| {
        let (l, c) = (lock.get(), ctl.get());
        let mut torn = 0u64;
        while c.get(0) < WRITERS as u64 {
            let v = l.read();
            torn += u64::from(v.iter().any(|&x| x != v[0]));
        }
        c.set(1, torn);
    });
    wait_all(&writers, Duration::from_secs(100));
    wait_all(&reader, Duration::from_secs(10));
    let turns: Vec<u64> = (0..WRITERS).map(|w| ctl.get().get(2 + w)).collect();
    eprintln!("{WRITERS} writers x {WRITES} writes; turns taken from each other: {turns:?}");
    assert_eq!(ctl.get().get(1), 0, "the reader saw torn values");
    // Every write read the value of the write before it: none lost, none overlapping.
    assert_eq!(lock.get().read(), [WRITERS as u64 * WRITES; 8]);
    // The writers really contended: each found the other's writes in between its own.
    assert!(
        turns.iter().all(|&t| t > 0),
        "the writers never took turns: {turns:?}"
    );
}

#[test]
fn a_timed_writer_times_out_on_a_stopped_writer_and_takes_the_lock_once_it_resumes() {
    watchdog(Duration::from_secs(60));
    let lock = SharedMem::<SeqLock<[u64; 4]>>::new(1);
    lock.get().write([1; 4]);
    // The holder takes the lock mid-way through a read-modify-write, stops itself
    // (SIGSTOP: alive, so nothing may be taken over), and finishes once continued.
    let holder = fork_children(1, |_| {
        let mut g = lock.get().lock().expect("no writer died");
        *g = [2; 4];
        // SAFETY: stopping this (child) process; the parent continues it.
        unsafe { libc::raise(libc::SIGSTOP) };
        drop(g);
    })[0];
    wait_until_stopped(holder);
    let timeout = Duration::from_millis(30);
    let t0 = Instant::now();
    match lock.get().lock_timeout(timeout) {
        Err(TimedLockError::Timeout) => {}
        Err(TimedLockError::OwnerDied(_)) => panic!("a stopped writer was taken for dead"),
        Ok(_) => panic!("the lock was taken from a live holder"),
    }
    assert!(t0.elapsed() >= timeout, "timed out before the deadline");
    // Readers still see the last complete value: the holder has stored nothing yet.
    assert_eq!(lock.get().try_read(), Ok([1; 4]));
    // SAFETY: continuing our own stopped child.
    unsafe { libc::kill(holder, libc::SIGCONT) };
    let mut g = match lock.get().lock_timeout(Duration::from_secs(20)) {
        Ok(g) => g,
        Err(TimedLockError::Timeout) => panic!("the resumed holder never released the lock"),
        Err(TimedLockError::OwnerDied(_)) => panic!("the holder did not die"),
    };
    assert!(!g.recovered());
    assert_eq!(*g, [2; 4]);
    *g = [3; 4];
    drop(g);
    wait_all(&[holder], Duration::from_secs(10));
    assert_eq!(lock.get().read(), [3; 4]);
}
