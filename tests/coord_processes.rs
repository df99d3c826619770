//! Semaphore, Event, Barrier and Queue across real forked processes.

mod common;

use std::time::Duration;

use common::{SharedMem, fork_children, wait_all, wait_until_asleep_in_futex, watchdog};
use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{Barrier, Elem, Event, Kind, Queue, Region, Semaphore, SharedSized, TypeTag};

const LIMIT: Duration = Duration::from_secs(60);

/// Shared state of the semaphore test: the semaphore and counters that check it.
#[repr(C)]
#[derive(Default)]
struct SemTest {
    sem: Semaphore,
    inside: AtomicU32,
    max_inside: AtomicU32,
    entries: AtomicU64,
}
// SAFETY: atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for SemTest {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 10), Elem::NONE);
}

#[test]
fn semaphore_admits_at_most_its_permits_across_processes() {
    watchdog(LIMIT);
    const PROCS: usize = 4;
    const ROUNDS: u64 = 5_000;
    let mem = SharedMem::<SemTest>::new(1);
    let t = mem.get();
    t.sem.release_n(2).unwrap();
    let pids = fork_children(PROCS, |_| {
        for _ in 0..ROUNDS {
            t.sem.acquire();
            // Relaxed: the semaphore orders; these only count who is inside.
            let now = t.inside.fetch_add(1, Ordering::Relaxed) + 1;
            t.max_inside.fetch_max(now, Ordering::Relaxed);
            t.entries.fetch_add(1, Ordering::Relaxed);
            std::hint::spin_loop();
            t.inside.fetch_sub(1, Ordering::Relaxed);
            t.sem.release().unwrap();
        }
    });
    wait_all(&pids, LIMIT);
    assert!(t.max_inside.load(Ordering::Relaxed) <= 2);
    assert_eq!(t.entries.load(Ordering::Relaxed), PROCS as u64 * ROUNDS);
    assert_eq!(t.sem.value(), 2);
}

#[repr(C)]
#[derive(Default)]
struct EventTest {
    go: Event,
    ready: AtomicU32,
    woke: AtomicU32,
}
// SAFETY: as for `SemTest`.
unsafe impl SharedSized for EventTest {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 11), Elem::NONE);
}

#[test]
fn event_set_wakes_waiters_in_other_processes() {
    watchdog(LIMIT);
    let mem = SharedMem::<EventTest>::new(1);
    let t = mem.get();
    let pids = fork_children(3, |_| {
        t.ready.fetch_add(1, Ordering::Relaxed);
        t.go.wait();
        assert!(t.go.is_set());
        t.woke.fetch_add(1, Ordering::Relaxed);
    });
    // Wait until all three announced themselves and at least one has committed to sleeping
    // in the futex (it sets the event word's "may sleep" bit, bit 1, before it sleeps), so
    // the `set` below must wake a sleeper in another process, not just be seen by a poll.
    while t.ready.load(Ordering::Relaxed) < 3 || t.go.word().load(Ordering::Relaxed) & 2 == 0 {
        std::thread::yield_now();
    }
    assert_eq!(t.woke.load(Ordering::Relaxed), 0);
    t.go.set();
    wait_all(&pids, LIMIT);
    assert_eq!(t.woke.load(Ordering::Relaxed), 3);
}

#[repr(C)]
#[derive(Default)]
struct BarrierTest {
    barrier: Barrier,
    /// Per round: how many parties arrived (reset by nobody: round r checks `>= 4 * (r+1)`).
    arrived: AtomicU64,
    leaders: AtomicU64,
}
// SAFETY: as for `SemTest`.
unsafe impl SharedSized for BarrierTest {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 12), Elem::NONE);
}

#[test]
fn barrier_lets_nobody_pass_early_over_1000_rounds_of_4_processes() {
    watchdog(LIMIT);
    const PARTIES: u64 = 4;
    const ROUNDS: u64 = 1_000;
    let mem = SharedMem::<BarrierTest>::new(1);
    let t = mem.get();
    t.barrier.init(PARTIES as u32);
    let pids = fork_children(PARTIES as usize, |_| {
        for round in 0..ROUNDS {
            // Relaxed: the barrier's own ordering is what is under test; the count after
            // the wait must include every party's arrival of this round.
            t.arrived.fetch_add(1, Ordering::Relaxed);
            let r = t
                .barrier
                .wait_timeout(Duration::from_secs(30))
                .expect("barrier");
            let seen = t.arrived.load(Ordering::Relaxed);
            assert!(
                seen >= PARTIES * (round + 1),
                "passed round {round} early: {seen} arrivals"
            );
            if r.is_leader() {
                t.leaders.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    wait_all(&pids, LIMIT);
    assert_eq!(t.arrived.load(Ordering::Relaxed), PARTIES * ROUNDS);
    assert_eq!(t.leaders.load(Ordering::Relaxed), ROUNDS);
}

type Q = Queue<[u64; 2], 64>;

#[repr(C)]
struct QueueTest {
    q: Q,
    sum: AtomicU64,
    count: AtomicU64,
}
// SAFETY: a `Queue` (itself `SharedSized`) and atomics: zero and every bit pattern valid,
// no pointers, `Sync`.
unsafe impl SharedSized for QueueTest {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 13), Elem::NONE);
}

#[test]
fn queue_moves_100000_items_between_2_producers_and_2_consumers() {
    watchdog(LIMIT);
    const PER_PRODUCER: u64 = 50_000;
    let mem = SharedMem::<QueueTest>::new(1);
    let t = mem.get();
    let producers = fork_children(2, |p| {
        for i in 0..PER_PRODUCER {
            t.q.push([p as u64, i]);
        }
        // Two end markers each: a consumer stops after any two, so all four are taken.
        t.q.push([u64::MAX, 0]);
        t.q.push([u64::MAX, 0]);
    });
    let consumers = fork_children(2, |_| {
        let mut last = [None::<u64>; 2];
        let mut ends = 0;
        let (mut sum, mut count) = (0u64, 0u64);
        while ends < 2 {
            let [p, i] = t.q.pop();
            if p == u64::MAX {
                ends += 1;
                continue;
            }
            let p = p as usize;
            assert!(p < 2, "bad producer {p}");
            // Items of one producer leave in the order it pushed them.
            assert!(
                last[p].is_none_or(|l| l < i),
                "out of order: {last:?} then {i}"
            );
            last[p] = Some(i);
            sum += i;
            count += 1;
        }
        t.sum.fetch_add(sum, Ordering::Relaxed);
        t.count.fetch_add(count, Ordering::Relaxed);
    });
    wait_all(&producers, LIMIT);
    wait_all(&consumers, LIMIT);
    assert_eq!(t.count.load(Ordering::Relaxed), 2 * PER_PRODUCER);
    let per = PER_PRODUCER * (PER_PRODUCER - 1) / 2;
    assert_eq!(t.sum.load(Ordering::Relaxed), 2 * per);
    assert!(t.q.is_empty());
}

#[test]
fn queue_in_a_region_is_opened_by_name_from_a_child() {
    watchdog(LIMIT);
    let path = std::env::temp_dir().join(format!("shmstate-coord-q-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let r = Region::create(&path, 1 << 16).unwrap();
    let q = r.get_or_default::<Queue<u64, 8>>("jobs").unwrap();
    let p = path.clone();
    let pids = fork_children(1, move |_| {
        let r = Region::open(&p).unwrap();
        let q = r.get::<Queue<u64, 8>>("jobs").unwrap();
        for i in 1..=100 {
            q.push(i);
        }
        // A wrong capacity is a type (size) mismatch, not a reinterpretation.
        assert!(r.get::<Queue<u64, 9>>("jobs").is_err());
    });
    let total: u64 = (0..100).map(|_| q.pop()).sum();
    wait_all(&pids, LIMIT);
    assert_eq!(total, 5050);
    drop(r);
    let _ = std::fs::remove_file(&path);
}

#[repr(C)]
struct DeathTest {
    q: Queue<u64, 4>,
    locked: AtomicU32,
}
// SAFETY: as for `QueueTest`.
unsafe impl SharedSized for DeathTest {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 14), Elem::NONE);
}

#[test]
fn queue_recovers_when_a_process_is_killed_holding_its_lock() {
    watchdog(LIMIT);
    let mem = SharedMem::<DeathTest>::new(1);
    let t = mem.get();
    t.q.push(7);
    let pids = fork_children(1, |_| {
        // As if killed inside a push: the lock is held and never released.
        let _ = t.q.raw_lock().lock();
        t.locked.store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Acquire: pairs with the child's Release store after it took the lock.
    while t.locked.load(Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    assert!(t.q.raw_lock().is_locked());
    // SAFETY: killing our own child.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    // The next operations recover the lock (callers never see OwnerDied) and the item
    // pushed before is intact.
    t.q.push(8);
    assert_eq!(t.q.pop(), 7);
    assert_eq!(t.q.pop(), 8);
    assert!(
        !t.q.raw_lock().mark_is_set(),
        "recovery marks the lock consistent"
    );
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pids[0], &mut status, 0) };
}

/// Whether thread `tid` of this process is blocked in the `futex` system call now.
fn blocked_in_futex(tid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .is_ok_and(|s| s.starts_with(&format!("{} ", libc::SYS_futex)))
}

#[test]
fn queue_wakes_every_consumer_when_a_producer_dies_between_commit_and_notify() {
    watchdog(LIMIT);
    let mem = SharedMem::<DeathTest>::new(1);
    let t = mem.get();
    let (tx, rx) = std::sync::mpsc::channel();
    let tids = [AtomicU32::new(0), AtomicU32::new(0)];
    std::thread::scope(|sc| {
        for tid in &tids {
            let tx = tx.clone();
            sc.spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
                tx.send(t.q.pop()).unwrap();
            });
        }
        // Both consumers asleep on the empty queue (not a sleep: a poll of their state).
        for tid in &tids {
            loop {
                let id = tid.load(Ordering::Relaxed);
                if id != 0 && blocked_in_futex(id as libc::pid_t) {
                    break;
                }
                std::thread::yield_now();
            }
        }
        let pids = fork_children(1, |_| {
            // Killed after committing item 1, before notifying or unlocking.
            t.q.push_then_hang(1, || t.locked.store(1, Ordering::Release))
        });
        // Acquire: pairs with the child's Release store after its commit.
        while t.locked.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        // SAFETY: killing our own child.
        unsafe { libc::kill(pids[0], libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pids[0], &mut status, 0) };
        // This push recovers the lock: it must wake both consumers (two items, two
        // consumers), not only the one its own notify wakes.
        t.q.push(2);
        let mut got: Vec<u64> = (0..2)
            .filter_map(|_| rx.recv_timeout(Duration::from_secs(10)).ok())
            .collect();
        let stuck = 2 - got.len();
        // Unstick a consumer left asleep, so that the scope can end and the test report.
        for i in 0..stuck {
            t.q.push(100 + i as u64);
        }
        assert_eq!(stuck, 0, "a consumer slept on with an item in the queue");
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// Bit 0 of a semaphore's sleepers word (`Semaphore::words().1`, see the field docs):
/// someone may sleep, so a release must wake.
const SLEEPERS: u32 = 1;

#[test]
fn semaphore_heals_after_a_waiter_is_killed_asleep() {
    watchdog(LIMIT);
    let mem = SharedMem::<Semaphore>::new(1);
    let s = mem.get();
    let (_, sleepers) = s.words();
    // No permits: the child waits until killed.
    let pids = fork_children(1, |_| s.acquire());
    // Handshake: the child's registration in the shared word, then its sleep.
    while sleepers.load(Ordering::Relaxed) & SLEEPERS == 0 {
        std::thread::yield_now();
    }
    wait_until_asleep_in_futex(pids[0]);
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
        libc::waitpid(pids[0], std::ptr::null_mut(), 0);
    }
    assert_ne!(
        sleepers.load(Ordering::Relaxed) & SLEEPERS,
        0,
        "the dead waiter leaves the bit set"
    );
    // One release: its wake finds nobody, so it clears the bit.
    s.release().unwrap();
    assert_eq!(s.value(), 1);
    assert_eq!(
        sleepers.load(Ordering::Relaxed) & SLEEPERS,
        0,
        "the first release after the death heals the word"
    );
    // Later uncontended releases take the no-wake path: the word is not even touched (a
    // wake would bump it).
    for _ in 0..3 {
        assert!(s.try_acquire());
        let before = sleepers.load(Ordering::Relaxed);
        s.release().unwrap();
        assert_eq!(sleepers.load(Ordering::Relaxed), before);
    }
    assert_eq!(s.value(), 1);
}
