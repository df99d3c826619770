//! Counters and values under real multi-process contention (forked workers on one
//! `MAP_SHARED` mapping), plus the unit behaviour of `Counter` and `StripedCounter`.
//!
//! Run under `cargo nextest` (one process per test): the forking tests must not share
//! their process with other test threads.

mod common;

// Zeroed memory for the single-process tests: a `MAP_SHARED` mapping, or the heap under
// Miri (which cannot map it).
#[cfg(miri)]
use common::HeapMem as ZeroedMem;
#[cfg(not(miri))]
use common::SharedMem as ZeroedMem;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use shmstate::{Counter, Elem, Kind, Shared, StripedCounter, TypeTag, Value};

const PROCS: usize = 4;
const PER_PROC: u64 = 1_000_000;
const LIMIT: Duration = Duration::from_secs(120);

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn counter_is_exact_across_processes() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let mem = common::SharedMem::<Counter>::new(1);
    let c = mem.get();
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..PER_PROC {
            c.inc();
        }
    });
    common::wait_all(&pids, LIMIT);
    assert_eq!(c.get(), PROCS as u64 * PER_PROC);
}

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn value_u64_fetch_add_is_exact_across_processes() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let mem = common::SharedMem::<Value<u64>>::new(1);
    let v = mem.get();
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..PER_PROC {
            v.fetch_add(1, Relaxed);
        }
    });
    common::wait_all(&pids, LIMIT);
    assert_eq!(v.load(Relaxed), PROCS as u64 * PER_PROC);
}

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn value_f64_fetch_add_is_exact_across_processes() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let mem = common::SharedMem::<Value<f64>>::new(1);
    let v = mem.get();
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..PER_PROC {
            v.fetch_add(1.0, Relaxed);
        }
    });
    common::wait_all(&pids, LIMIT);
    // Every integer up to 2^53 is exact in f64, so any lost update would show.
    assert_eq!(v.load(Relaxed), (PROCS as u64 * PER_PROC) as f64);
}

#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn striped_counter_is_exact_across_processes() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    // 3 stripes: not a power of two, fewer than the writers, so stripes are shared.
    let mem = common::SharedMem::<StripedCounter>::new(3);
    let c = mem.get();
    assert_eq!(c.stripes(), 3);
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..PER_PROC {
            c.inc();
        }
    });
    common::wait_all(&pids, LIMIT);
    assert_eq!(c.sum(), PROCS as u64 * PER_PROC);
}

/// `take` while other processes add: every increment ends up in exactly one `take` or in
/// what is left.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn counter_take_conserves_the_total_while_processes_add() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let mem = common::SharedMem::<Counter>::new(1);
    let c = mem.get();
    let n = PER_PROC / 4;
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..n {
            c.inc();
        }
    });
    // Take until half the total has been taken, so the takes overlap the adds.
    let total = PROCS as u64 * n;
    let mut taken = 0u64;
    while taken < total / 2 {
        taken += c.take();
    }
    common::wait_all(&pids, LIMIT);
    taken += c.take();
    assert_eq!(taken, total);
}

/// The same for a striped counter.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn striped_take_conserves_the_total_while_processes_add() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let mem = common::SharedMem::<StripedCounter>::new(4);
    let c = mem.get();
    let n = PER_PROC / 4;
    let pids = common::fork_children(PROCS, |_| {
        for _ in 0..n {
            c.add(2);
        }
    });
    // Take until half the total has been taken, so the takes overlap the adds.
    let total = PROCS as u64 * n * 2;
    let mut taken = 0u64;
    while taken < total / 2 {
        taken += c.take();
    }
    common::wait_all(&pids, LIMIT);
    taken += c.take();
    assert_eq!(taken, total);
    assert_eq!(c.sum(), 0);
}

// ----- Counter -----------------------------------------------------------------------

static GLOBAL: Counter = Counter::new();

#[test]
fn counter_methods_do_what_they_say() {
    let c = Counter::new();
    assert_eq!(c.get(), 0);
    assert_eq!(c.inc(), 0);
    assert_eq!(c.add(10), 1);
    assert_eq!(c.get(), 11);
    assert_eq!(c.take(), 11);
    assert_eq!(c.get(), 0);
    c.add(5);
    c.reset();
    assert_eq!(c.get(), 0);
    assert_eq!(format!("{c:?}"), "Counter(0)");
    assert_eq!(Counter::default().get(), 0);

    GLOBAL.inc();
    assert!(GLOBAL.get() >= 1, "a const-constructed static counts");
}

#[test]
fn counter_wraps_around_on_overflow() {
    let c = Counter::new();
    c.add(u64::MAX);
    assert_eq!(c.inc(), u64::MAX);
    assert_eq!(c.get(), 0);
    c.add(3);
    assert_eq!(c.add(u64::MAX), 3);
    assert_eq!(c.get(), 2);
}

#[test]
fn counter_fills_one_cache_line_and_is_tagged() {
    assert_eq!(size_of::<Counter>(), 64);
    assert_eq!(align_of::<Counter>(), 64);
    assert_eq!(
        <Counter as Shared>::TAG,
        TypeTag::new(Kind::COUNTER, Elem::NONE)
    );
    assert_eq!(<Counter as Shared>::size_for(1), Some(64));
    assert_eq!(<Counter as Shared>::size_for(0), None);
    // Two counters side by side never share a line.
    let pair = [Counter::new(), Counter::new()];
    let gap = std::ptr::from_ref(&pair[1]).addr() - std::ptr::from_ref(&pair[0]).addr();
    assert_eq!(gap, 64);
    let mem = ZeroedMem::<Counter>::new(1);
    assert_eq!(mem.get().get(), 0, "zeroed memory is a zero count");
}

// ----- StripedCounter ----------------------------------------------------------------

#[test]
#[should_panic(expected = "0 stripes")]
fn striped_counter_rejects_zero_stripes() {
    let _ = StripedCounter::new(0);
}

#[test]
fn striped_counter_with_one_stripe_counts() {
    let c = StripedCounter::new(1);
    assert_eq!(c.stripes(), 1);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..1000 {
                    c.inc();
                }
            });
        }
    });
    assert_eq!(c.sum(), 3000);
}

#[test]
fn striped_counter_methods_do_what_they_say() {
    for stripes in [1, 2, 3, 7, 64, 1000] {
        let c = StripedCounter::new(stripes);
        assert_eq!(c.stripes(), stripes);
        assert_eq!(c.sum(), 0);
        // Many threads (more than stripes for the small counts) all land in range.
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let c = &c;
                s.spawn(move || {
                    for _ in 0..100 {
                        c.add(t);
                    }
                    c.inc();
                });
            }
        });
        assert_eq!(c.sum(), 100 * (0..8).sum::<u64>() + 8);
        assert_eq!(c.take(), 2808);
        assert_eq!(c.sum(), 0);
        c.add(4);
        c.reset();
        assert_eq!(c.sum(), 0);
        assert_eq!(
            format!("{c:?}"),
            format!("StripedCounter {{ sum: 0, stripes: {stripes} }}")
        );
    }
}

#[test]
fn striped_counter_sum_wraps_around() {
    let c = StripedCounter::new(2);
    c.add(u64::MAX);
    c.add(2);
    assert_eq!(c.sum(), 1);
}

#[test]
fn default_stripes_is_a_capped_power_of_two() {
    let n = StripedCounter::default_stripes();
    assert!(n.is_power_of_two(), "{n}");
    assert!((1..=shmstate::values::striped_counter::MAX_DEFAULT_STRIPES).contains(&n));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(n >= cpus.min(shmstate::values::striped_counter::MAX_DEFAULT_STRIPES));
}

#[test]
fn striped_counter_layout_and_placement() {
    assert_eq!(
        <StripedCounter as Shared>::TAG,
        TypeTag::new(Kind::STRIPED_COUNTER, Elem::NONE)
    );
    assert_eq!(<StripedCounter as Shared>::ALIGN, 64);
    assert_eq!(
        <StripedCounter as Shared>::size_for(0),
        None,
        "0 stripes are refused"
    );
    assert_eq!(<StripedCounter as Shared>::size_for(1), Some(64));
    assert_eq!(<StripedCounter as Shared>::size_for(5), Some(320));
    assert_eq!(<StripedCounter as Shared>::size_for(usize::MAX / 32), None);
    let boxed = StripedCounter::new(5);
    assert_eq!(std::mem::size_of_val(&*boxed), 320);
    assert_eq!(std::ptr::from_ref(&*boxed).addr() % 64, 0);
    let mem = ZeroedMem::<StripedCounter>::new(5);
    assert_eq!(mem.get().stripes(), 5);
    assert_eq!(std::mem::size_of_val(mem.get()), 320);
    assert_eq!(mem.get().sum(), 0, "zeroed memory is a zero count");
}

/// The value of each stripe of `c`, read through the raw memory (stripe `i` is the first
/// `u64` of the `i`th 64-byte line).
fn stripe_values(c: &StripedCounter) -> Vec<u64> {
    let base = std::ptr::from_ref(c).cast::<shmstate::sync::AtomicU64>();
    (0..c.stripes())
        // SAFETY: the counter is `stripes()` lines of eight `AtomicU64`s; `8 * i` is the
        // first word of line `i`, inside the object, and lives as long as `c`.
        .map(|i| unsafe { &*base.add(8 * i) }.load(Relaxed))
        .collect()
}

/// After `fork` the child adds to the stripe of its own thread id, not to the parent's
/// (whose id it inherits in the thread-local cache until the `atfork` handler clears it).
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn a_forked_child_adds_to_the_stripe_of_its_own_thread_id() {
    common::watchdog(Duration::from_secs(30));
    const N: usize = 1000;
    let mem = common::SharedMem::<StripedCounter>::new(N);
    let c = mem.get();
    c.inc(); // caches the parent's id before the fork
    let parent = rustix::thread::gettid().as_raw_nonzero().get() as usize % N;
    let pids = common::fork_children(1, |_| c.add(10));
    common::wait_all(&pids, Duration::from_secs(20));
    let child = pids[0] as usize % N;
    let mut expected = vec![0u64; N];
    expected[parent] += 1;
    expected[child] += 10;
    let nonzero = |v: Vec<u64>| -> Vec<(usize, u64)> {
        v.into_iter().enumerate().filter(|&(_, x)| x != 0).collect()
    };
    assert_eq!(
        nonzero(stripe_values(c)),
        nonzero(expected),
        "(stripe, value): parent thread's stripe {parent}, child's {child}"
    );
}
