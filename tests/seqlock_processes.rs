//! Multi-process tests of `SeqLock` and `SeqLockArray` with real forked processes:
//! no torn reads under a busy writer, consistent snapshots under a batch writer, and
//! recovery from a writer SIGKILLed mid-write. Run under nextest (one process per test).
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, wait_all, watchdog};
use shmstate::{SeqLock, SeqLockArray, SeqLockError, TimedLockError};

/// Control words shared with the children (index meanings are per test).
type Control = SharedMem<SeqLockArray<u64>>;

/// Waits (bounded by the watchdog) until control word `i` is at least `v`.
fn wait_for(ctl: &SeqLockArray<u64>, i: usize, v: u64) {
    while ctl.get(i) < v {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn seqlock_never_tears_across_processes() {
    watchdog(Duration::from_secs(300));
    const READERS: usize = 2;
    const READS_PER_READER: u64 = 5_000_000;
    const MIN_CHANGES: u64 = 1_000;
    let lock = SharedMem::<SeqLock<[u64; 8]>>::new(1);
    // 0: stop flag for the writer; 1: readers done; then per reader: torn reads seen,
    // then per reader: how often the value read differed from the previous read.
    let ctl = Control::new(2 + 2 * READERS);
    let start = Instant::now();
    let writer = fork_children(1, |_| {
        let (l, c) = (lock.get(), ctl.get());
        let (mut k, mut x) = (0u64, 0x9e37_79b9_7f4a_7c15u64);
        while c.get(0) == 0 {
            for _ in 0..256 {
                k += 1;
                l.write([k; 8]);
                // A pseudo-random pause of 0..256 spins after each write. Back-to-back
                // writes (short pauses) make copies overlap a write's start and end; the
                // longer ones let a copy complete, so the readers finish in bounded time
                // even in a debug build on a loaded machine (a writer that never pauses
                // can keep every reader retrying, which no seqlock prevents).
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..x % 256 {
                    std::hint::spin_loop();
                }
            }
        }
    });
    let readers = fork_children(READERS, |r| {
        let (l, c) = (lock.get(), ctl.get());
        let (mut last, mut torn, mut changes, mut reads) = (0u64, 0u64, 0u64, 0u64);
        // Reads on until it has also seen MIN_CHANGES writes: how many writes land between
        // a reader's reads depends on scheduling (on one busy CPU the writer runs only
        // between the readers' time slices), so a fixed number of reads may see few.
        while reads < READS_PER_READER || changes < MIN_CHANGES {
            reads += 1;
            let v = l.read();
            if v.iter().any(|&w| w != v[0]) || v[0] < last {
                torn += 1;
            }
            changes += u64::from(v[0] != last);
            last = v[0];
        }
        c.set(2 + r, torn);
        c.set(2 + READERS + r, changes);
        c.update(1, |d| *d += 1).unwrap();
        assert_eq!(torn, 0, "reader {r} saw torn or backwards values");
    });
    wait_all(&readers, Duration::from_secs(240));
    let elapsed = start.elapsed();
    let final_k = lock.get().read()[0];
    ctl.get().set(0, 1);
    wait_all(&writer, Duration::from_secs(30));
    let torn: u64 = (0..READERS).map(|r| ctl.get().get(2 + r)).sum();
    let changes: Vec<u64> = (0..READERS)
        .map(|r| ctl.get().get(2 + READERS + r))
        .collect();
    eprintln!(
        "at least {} reads by {READERS} processes while a writer made {final_k} writes: {torn} torn, \
         value changes seen per reader {changes:?}, {elapsed:?}",
        READS_PER_READER * READERS as u64
    );
    assert_eq!(torn, 0);
    // The readers really ran alongside the writer: each saw the value change many times.
    assert!(
        changes.iter().all(|&c| c >= MIN_CHANGES),
        "readers saw too few writes: {changes:?}"
    );
}

#[test]
fn array_snapshots_stay_consistent_under_a_batch_writer() {
    watchdog(Duration::from_secs(300));
    // Four stripes: every batch spans stripes.
    const N: usize = 64;
    const TOTAL: u64 = 1_000 * N as u64;
    const SNAPSHOTS: usize = 200_000;
    let arr = SharedMem::<SeqLockArray<u64>>::new(N);
    arr.get().set_all(&[1_000; N]);
    // 0: stop flag; 1: snapshots taken.
    let ctl = Control::new(2);
    let writer = fork_children(1, |_| {
        let (a, c) = (arr.get(), ctl.get());
        let mut x = 12345u64;
        while c.get(0) == 0 {
            // Move a pseudo-random amount between two pseudo-random elements.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (from, to) = ((x % N as u64) as usize, ((x >> 8) % N as u64) as usize);
            a.write_batch(|v| {
                let amount = (x >> 16) % (v[from] + 1);
                v[from] -= amount;
                v[to] += amount;
            })
            .expect("no writer died mid-write");
            // A pseudo-random pause, as in `seqlock_never_tears_across_processes`.
            for _ in 0..(x >> 40) % 256 {
                std::hint::spin_loop();
            }
        }
    });
    let readers = fork_children(2, |_| {
        let (a, c) = (arr.get(), ctl.get());
        let mut buf = [0u64; N];
        for i in 0..SNAPSHOTS {
            if i % 2 == 0 {
                a.snapshot(&mut buf);
            } else {
                buf.copy_from_slice(&a.to_vec());
            }
            assert_eq!(
                buf.iter().sum::<u64>(),
                TOTAL,
                "inconsistent snapshot {buf:?}"
            );
        }
        c.update(1, |n| *n += SNAPSHOTS as u64).unwrap();
    });
    wait_all(&readers, Duration::from_secs(240));
    ctl.get().set(0, 1);
    wait_all(&writer, Duration::from_secs(30));
    assert_eq!(ctl.get().get(1), 2 * SNAPSHOTS as u64);
    assert_eq!(arr.get().to_vec().iter().sum::<u64>(), TOTAL);
}

#[test]
fn seqlock_recovers_when_writer_is_killed_mid_write() {
    watchdog(Duration::from_secs(60));
    let lock = SharedMem::<SeqLock<[u64; 4]>>::new(1);
    lock.get().write([1; 4]);
    // 0: the doomed writer is mid-write; 1: the waiting reader is about to read.
    let ctl = Control::new(2);
    let doomed = fork_children(1, |_| {
        lock.get().begin_write_for_test([2; 4]);
        ctl.get().set(0, 1);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_for(ctl.get(), 0, 1);
    // Alive and mid-write: `try_read` says a writer is active; `read_timeout` times out.
    assert_eq!(lock.get().try_read(), Err(SeqLockError::WriterActive));
    assert_eq!(
        lock.get().read_timeout(Duration::from_millis(20)),
        Err(SeqLockError::Timeout)
    );
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(doomed[0], libc::SIGKILL);
        libc::waitpid(doomed[0], std::ptr::null_mut(), 0);
    }
    // Dead mid-write: every process's bounded reads report it.
    assert_eq!(lock.get().try_read(), Err(SeqLockError::WriterDied));
    let checkers = fork_children(2, |_| {
        assert_eq!(lock.get().try_read(), Err(SeqLockError::WriterDied));
        assert_eq!(
            lock.get().read_timeout(Duration::from_secs(5)),
            Err(SeqLockError::WriterDied)
        );
    });
    wait_all(&checkers, Duration::from_secs(20));
    // A reader blocked in `read()` waits for the repair and then sees the new value.
    let waiter = fork_children(1, |_| {
        ctl.get().set(1, 1);
        assert_eq!(lock.get().read(), [3; 4]);
    });
    wait_for(ctl.get(), 1, 1);
    // The next writer (another process) takes over, learns the value was torn, repairs.
    let repairer = fork_children(1, |_| {
        let mut g = lock
            .get()
            .lock()
            .expect_err("the takeover reports the torn value")
            .into_inner();
        assert!(g.recovered());
        *g = [3; 4];
        g.mark_consistent();
    });
    wait_all(&repairer, Duration::from_secs(20));
    wait_all(&waiter, Duration::from_secs(20));
    assert_eq!(lock.get().try_read(), Ok([3; 4]));
    let readers = fork_children(2, |_| assert_eq!(lock.get().try_read(), Ok([3; 4])));
    wait_all(&readers, Duration::from_secs(20));
    lock.get().update(|v| v[0] = 4).unwrap();
    assert_eq!(lock.get().read(), [4, 3, 3, 3]);
}

/// Forks a child that runs `doom` (a test hook that stops a write half-way, holding the
/// lock), then SIGKILLs and reaps it.
fn kill_a_child_mid_write(doom: impl Fn()) {
    let ctl = Control::new(1);
    let doomed = fork_children(1, |_| {
        doom();
        ctl.get().set(0, 1);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_for(ctl.get(), 0, 1);
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(doomed[0], libc::SIGKILL);
        libc::waitpid(doomed[0], std::ptr::null_mut(), 0);
    }
}

#[test]
fn array_writer_killed_mid_write_tears_only_its_stripe_and_the_next_writer_repairs_it() {
    watchdog(Duration::from_secs(60));
    let s = SeqLockArray::<u32>::STRIPE_LEN;
    let n = 3 * s;
    let arr = SharedMem::<SeqLockArray<u32>>::new(n);
    let init: Vec<u32> = (0..n as u32).collect();
    arr.get().set_all(&init);
    let i = s + 2;
    kill_a_child_mid_write(|| arr.get().begin_write_for_test(i, 9_999));
    // Every process sees stripe 1 torn, and stripes 0 and 2 intact.
    let checkers = fork_children(2, |_| {
        let a = arr.get();
        let mut out = vec![0; n];
        assert_eq!(a.try_snapshot(&mut out), Err(SeqLockError::WriterDied));
        assert_eq!(a.try_get(i), Err(SeqLockError::WriterDied));
        assert_eq!(a.try_get(s), Err(SeqLockError::WriterDied));
        assert_eq!(
            a.get_timeout(2 * s - 1, Duration::from_secs(5)),
            Err(SeqLockError::WriterDied)
        );
        for j in (0..s).chain(2 * s..n) {
            assert_eq!(a.try_get(j), Ok(j as u32), "element {j}");
        }
    });
    wait_all(&checkers, Duration::from_secs(20));
    // A reader blocked in `get()` of another element of the stripe waits for the repair.
    let ctl = Control::new(1);
    let waiter = fork_children(1, |_| {
        ctl.get().set(0, 1);
        assert_eq!(arr.get().get(s), s as u32);
        assert_eq!(arr.get().get(i), 22);
    });
    wait_for(ctl.get(), 0, 1);
    // The next writer of the element (another process) takes over and repairs it.
    let repairer = fork_children(1, |_| arr.get().set(i, 22));
    wait_all(&repairer, Duration::from_secs(20));
    wait_all(&waiter, Duration::from_secs(20));
    let mut want = init.clone();
    want[i] = 22;
    assert_eq!(arr.get().to_vec(), want);
}

#[test]
fn array_batch_writer_killed_mid_batch_is_reported_and_repaired() {
    watchdog(Duration::from_secs(60));
    let s = SeqLockArray::<u32>::STRIPE_LEN;
    let n = 3 * s;
    let arr = SharedMem::<SeqLockArray<u32>>::new(n);
    arr.get().set_all(&vec![1; n]);
    kill_a_child_mid_write(|| arr.get().begin_batch_for_test(&vec![2; n]));
    let mut out = vec![0; n];
    assert_eq!(
        arr.get().try_snapshot(&mut out),
        Err(SeqLockError::WriterDied)
    );
    for j in [0, s, n - 1] {
        assert_eq!(arr.get().try_get(j), Err(SeqLockError::WriterDied));
    }
    let repairer = fork_children(1, |_| {
        let torn = arr.get().write_batch(|_| unreachable!("the batch is torn"));
        let mut batch = torn.expect_err("the batch is torn").into_inner();
        assert!(batch.recovered());
        batch.fill(3);
        batch.mark_consistent();
    });
    wait_all(&repairer, Duration::from_secs(20));
    assert_eq!(arr.get().to_vec(), vec![3; n]);
}

/// Forks a writer that stops mid-write (odd sequence, its TID in the lock) after storing
/// `torn`, SIGKILLs and reaps it: the state a writer killed between its two sequence
/// stores leaves.
fn kill_a_writer_mid_write<T: bytemuck::Pod>(lock: &SeqLock<T>, torn: T) {
    let ctl = Control::new(1);
    let doomed = fork_children(1, |_| {
        lock.begin_write_for_test(torn);
        ctl.get().set(0, 1);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    wait_for(ctl.get(), 0, 1);
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(doomed[0], libc::SIGKILL);
        libc::waitpid(doomed[0], std::ptr::null_mut(), 0);
    }
}

#[test]
fn update_after_a_writer_killed_mid_write_publishes_nothing_torn() {
    watchdog(Duration::from_secs(60));
    let lock = SharedMem::<SeqLock<[u64; 4]>>::new(1);
    lock.get().write([1; 4]);
    kill_a_writer_mid_write(lock.get(), [2, 2, 9, 9]);
    let mut called = false;
    let r = lock.get().update(|v| {
        called = true;
        v[0] += 100;
    });
    assert!(!called, "update ran its closure on a torn value");
    let torn = r.expect_err("update reports the torn value");
    assert!(torn.get_ref().recovered());
    assert_eq!(
        **torn.get_ref(),
        [2, 2, 9, 9],
        "the guard holds the torn bytes"
    );
    drop(torn);
    // Nothing valid was published: the value still reads as torn, in every process, and
    // the next writer learns it too.
    assert_eq!(lock.get().try_read(), Err(SeqLockError::WriterDied));
    let others = fork_children(1, |_| {
        assert_eq!(
            lock.get().read_timeout(Duration::from_secs(5)),
            Err(SeqLockError::WriterDied)
        );
        assert!(lock.get().update(|v| v[0] += 100).is_err());
    });
    wait_all(&others, Duration::from_secs(20));
    // A reader blocked in `read()` returns only the repaired value.
    let ctl = Control::new(1);
    let waiter = fork_children(1, |_| {
        ctl.get().set(0, 1);
        assert_eq!(lock.get().read(), [5; 4]);
    });
    wait_for(ctl.get(), 0, 1);
    let mut g = lock.get().update(|_| ()).unwrap_err().into_inner();
    *g = [5; 4];
    g.mark_consistent();
    drop(g);
    wait_all(&waiter, Duration::from_secs(20));
    assert_eq!(lock.get().update(|v| v[0] += 1).ok(), Some(()));
    assert_eq!(lock.get().read(), [6, 5, 5, 5]);
}

#[test]
fn array_update_after_a_writer_killed_mid_write_publishes_nothing_torn() {
    watchdog(Duration::from_secs(60));
    // Two stripes: elements 1 and `s + 1` are in different ones.
    let s = SeqLockArray::<u64>::STRIPE_LEN;
    let arr = SharedMem::<SeqLockArray<u64>>::new(2 * s);
    let init: Vec<u64> = (1..=2 * s as u64).collect();
    arr.get().set_all(&init);
    kill_a_child_mid_write(|| arr.get().begin_write_for_test(1, 20));
    let mut called = false;
    let r = arr.get().update(1, |v| {
        called = true;
        *v += 1;
    });
    assert!(!called, "update ran its closure on a torn value");
    assert!(r.is_err(), "update reports the torn value");
    drop(r);
    assert_eq!(arr.get().try_get(1), Err(SeqLockError::WriterDied));
    assert_eq!(
        arr.get().get(s + 1),
        s as u64 + 2,
        "elements of other stripes read normally"
    );
    let mut g = arr.get().lock(1).unwrap_err().into_inner();
    assert_eq!(*g, 20, "the guard holds the dead writer's bytes");
    *g = 2;
    g.mark_consistent();
    drop(g);
    assert_eq!(arr.get().to_vec(), init);
}

#[test]
fn write_guard_dropped_without_acknowledging_a_torn_value_publishes_nothing() {
    watchdog(Duration::from_secs(60));
    let lock = SharedMem::<SeqLock<[u64; 4]>>::new(1);
    lock.get().write([1; 4]);
    kill_a_writer_mid_write(lock.get(), [2, 2, 9, 9]);
    {
        let mut g = lock
            .get()
            .lock()
            .expect_err("lock reports the torn value")
            .into_inner();
        g[0] = 7;
    }
    assert_eq!(lock.get().try_read(), Err(SeqLockError::WriterDied));
    assert_eq!(
        lock.get().read_timeout(Duration::from_millis(50)),
        Err(SeqLockError::WriterDied)
    );
    // The next writer, in another process, is told again; once it marks its repair, the
    // value is published.
    let repairer = fork_children(1, |_| {
        let mut g = match lock.get().lock_timeout(Duration::from_secs(5)) {
            Err(TimedLockError::OwnerDied(torn)) => torn.into_inner(),
            Ok(_) => panic!("a torn value was handed out as consistent"),
            Err(TimedLockError::Timeout) => panic!("no takeover"),
        };
        *g = [8; 4];
        g.mark_consistent();
    });
    wait_all(&repairer, Duration::from_secs(20));
    assert_eq!(lock.get().read(), [8; 4]);
}

/// Forks while holding `hold`'s write access; the child drops (or returns past) its copy
/// and then tries `probe` (a short timed lock): 0 if the lock was still held (the copy
/// released nothing), 1 if the child got it. The parent keeps its access until the child
/// has answered.
fn child_sees_the_parents_lock_kept(
    hold: impl FnOnce(&dyn Fn() -> i32),
    probe: impl Fn() -> bool,
) -> i32 {
    let status = std::cell::Cell::new(-1);
    hold(&|| {
        // SAFETY: the child only drops its copy, tries a timed lock and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The copy is dropped by the caller's closure returning in the child: the
            // child runs on past `hold` below.
            return -2;
        }
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "status {st:#x}");
        status.set(libc::WEXITSTATUS(st));
        0
    });
    if status.get() == -1 {
        // The child, past its copy's drop.
        let code = if probe() { 1 } else { 0 };
        // SAFETY: ends the forked child at once.
        unsafe { libc::_exit(code) };
    }
    status.get()
}

/// A forked child's copy of a seqlock write guard (single, array element, batch: forked
/// inside the batch closure) must store and release nothing: the parent still holds the
/// lock, so the child's timed lock times out.
#[test]
fn a_forked_copy_of_a_seqlock_write_guard_releases_nothing() {
    watchdog(Duration::from_secs(60));
    let single = SharedMem::<SeqLock<[u64; 2]>>::new(1);
    let array = SharedMem::<SeqLockArray<u64>>::new(4);
    let (s, a) = (single.get(), array.get());
    let short = Duration::from_millis(50);
    let results = [
        child_sees_the_parents_lock_kept(
            |fork| {
                let g = s.lock().unwrap();
                if fork() == -2 {
                    drop(g);
                    return;
                }
                drop(g);
            },
            || s.lock_timeout(short).is_ok(),
        ),
        child_sees_the_parents_lock_kept(
            |fork| {
                let g = a.lock(1).unwrap();
                if fork() == -2 {
                    drop(g);
                    return;
                }
                drop(g);
            },
            || a.lock_timeout(1, short).is_ok(),
        ),
        child_sees_the_parents_lock_kept(
            |fork| {
                let _ = a.write_batch(|_| {
                    fork();
                });
            },
            || a.lock_timeout(2, short).is_ok(),
        ),
    ];
    assert_eq!(
        results, [0; 3],
        "1: the child's copy released the parent's lock (single, array element, batch)"
    );
}
