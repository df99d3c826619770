//! Counters: shmstate's `Counter`, `StripedCounter`, `Value<f64>` and `ValueArray<u64>` next
//! to what a user would otherwise reach for (a heap `AtomicU64`, one shared atomic, a
//! `Mutex<f64>`, a slice of `AtomicU64`), in one run. Every bench checks its final count.
//!
//! Run: `cargo bench --bench counters` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench counters`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{MAX_WORKERS, SWEEP, Shm, Weight, Workers, concurrent, single, tune};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use shmstate::{Counter, Region, StripedCounter, Value, ValueArray};

/// One increment per iteration on one thread: a counter in shared memory vs a heap atomic.
fn inc_1thread(c: &mut Criterion) {
    let mut g = common::group(c, "counter_inc_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    // Relaxed everywhere in this file: a counter's increments need atomicity only; the
    // final count is read after the workers were joined (which synchronises).
    // Every op returns the previous value, as `Counter::inc` does (`single` black-boxes
    // it), so all three compile to the same `lock xadd`.
    // The counter lives in a region, exactly as users place it (an anonymous region is a
    // MAP_SHARED memfd mapping, the same memory a file-backed region maps).
    let region = Region::anonymous(1 << 16).expect("anonymous region");
    let counter = region
        .get_or_default::<Counter>("counter")
        .expect("counter in the region");
    single(
        &mut g,
        "shmstate_counter",
        counter,
        |c| c.reset(),
        |c| c.inc(),
        |c| c.get(),
    );

    let heap = Box::new(AtomicU64::new(0));
    single(
        &mut g,
        "heap_atomic_u64",
        &*heap,
        |a| a.store(0, Relaxed),
        |a| a.fetch_add(1, Relaxed),
        |a| a.load(Relaxed),
    );

    let shm = Shm::new(AtomicU64::new(0));
    single(
        &mut g,
        "shm_atomic_u64",
        &*shm,
        |a| a.store(0, Relaxed),
        |a| a.fetch_add(1, Relaxed),
        |a| a.load(Relaxed),
    );

    g.finish();
}

/// One counter incremented by every worker (threads, then processes).
fn contended(c: &mut Criterion) {
    for w in [Workers::Threads(2), Workers::Processes(2)] {
        let name = format!("counter_contended_{}", w.label());
        counter_group(c, name, w, Weight::Spawning, true);
    }
}

/// One group of [`contended`] (and, without the `Value<u64>` row, of the
/// [`scaling_counter`] sweep): `w` workers.
fn counter_group(c: &mut Criterion, name: String, w: Workers, weight: Weight, value_row: bool) {
    {
        let mut g = common::group(c, name);
        tune(&mut g, weight);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;

        let counter = Shm::<Counter>::zeroed(1);
        concurrent(
            &mut g,
            "shmstate_counter",
            w,
            n,
            &*counter,
            |c| c.reset(),
            |c, _, iters| {
                for _ in 0..iters {
                    c.inc();
                }
            },
            |c| c.get(),
        );

        if value_row {
            let v = Shm::new(Value::new(0u64));
            concurrent(
                &mut g,
                "shmstate_value_u64",
                w,
                n,
                &*v,
                |v| v.store(0, Relaxed),
                |v, _, iters| {
                    for _ in 0..iters {
                        v.fetch_add(1, Relaxed);
                    }
                },
                |v| v.load(Relaxed),
            );
        }

        let one = Shm::new(AtomicU64::new(0));
        concurrent(
            &mut g,
            "atomic_u64",
            w,
            n,
            &*one,
            |a| a.store(0, Relaxed),
            |a, _, iters| {
                for _ in 0..iters {
                    a.fetch_add(1, Relaxed);
                }
            },
            |a| a.load(Relaxed),
        );

        g.finish();
    }
}

/// Striped counting: `StripedCounter` vs one contended atomic vs one cache-padded atomic
/// per worker (nothing shared: the physical ceiling for exact counting).
fn striped(c: &mut Criterion) {
    for w in [Workers::Threads(2), Workers::Processes(2)] {
        striped_group(c, format!("striped_{}", w.label()), w, Weight::Spawning);
    }
}

/// One group of [`striped`] (and of the [`scaling_striped`] sweep): `w` workers.
fn striped_group(c: &mut Criterion, name: String, w: Workers, weight: Weight) {
    {
        let mut g = common::group(c, name);
        tune(&mut g, weight);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;

        let striped = Shm::<StripedCounter>::zeroed(StripedCounter::default_stripes());
        concurrent(
            &mut g,
            "shmstate_striped",
            w,
            n,
            &*striped,
            |c| c.reset(),
            |c, _, iters| {
                for _ in 0..iters {
                    c.inc();
                }
            },
            |c| c.sum(),
        );

        let one = Shm::new(AtomicU64::new(0));
        concurrent(
            &mut g,
            "one_atomic",
            w,
            n,
            &*one,
            |a| a.store(0, Relaxed),
            |a, _, iters| {
                for _ in 0..iters {
                    a.fetch_add(1, Relaxed);
                }
            },
            |a| a.load(Relaxed),
        );

        let padded: Shm<[CachePadded<AtomicU64>; MAX_WORKERS]> =
            Shm::new(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))));
        concurrent(
            &mut g,
            "padded_atomic_per_worker",
            w,
            n,
            &*padded,
            |p| p.iter().for_each(|a| a.store(0, Relaxed)),
            |p, i, iters| {
                let a = &p[i];
                for _ in 0..iters {
                    a.fetch_add(1, Relaxed);
                }
            },
            |p| p.iter().map(|a| a.load(Relaxed)).sum(),
        );

        g.finish();
    }
}

/// Adding to a shared `f64`: `Value<f64>::fetch_add` vs a mutex-guarded `f64`.
fn value_f64(c: &mut Criterion) {
    {
        let mut g = common::group(c, "f64_add_1thread");
        tune(&mut g, Weight::Single);
        g.throughput(Throughput::Elements(1));
        let v = Shm::new(Value::new(0.0f64));
        single(
            &mut g,
            "shmstate_value_f64",
            &*v,
            |v| v.store(0.0, Relaxed),
            |v| {
                v.fetch_add(1.0, Relaxed);
            },
            |v| v.load(Relaxed) as u64,
        );
        let m = std::sync::Mutex::new(0.0f64);
        single(
            &mut g,
            "std_mutex_f64",
            &m,
            |m| *m.lock().unwrap() = 0.0,
            |m| {
                *m.lock().unwrap() += 1.0;
            },
            |m| *m.lock().unwrap() as u64,
        );
        let m = parking_lot::Mutex::new(0.0f64);
        single(
            &mut g,
            "parking_lot_mutex_f64",
            &m,
            |m| *m.lock() = 0.0,
            |m| {
                *m.lock() += 1.0;
            },
            |m| *m.lock() as u64,
        );
        g.finish();
    }
    {
        let w = Workers::Threads(2);
        let mut g = common::group(c, format!("f64_add_{}", w.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;
        let v = Shm::new(Value::new(0.0f64));
        concurrent(
            &mut g,
            "shmstate_value_f64",
            w,
            n,
            &*v,
            |v| v.store(0.0, Relaxed),
            |v, _, iters| {
                for _ in 0..iters {
                    v.fetch_add(1.0, Relaxed);
                }
            },
            |v| v.load(Relaxed) as u64,
        );
        let m = std::sync::Mutex::new(0.0f64);
        concurrent(
            &mut g,
            "std_mutex_f64",
            w,
            n,
            &m,
            |m| *m.lock().unwrap() = 0.0,
            |m, _, iters| {
                for _ in 0..iters {
                    *m.lock().unwrap() += 1.0;
                }
            },
            |m| *m.lock().unwrap() as u64,
        );
        let m = parking_lot::Mutex::new(0.0f64);
        concurrent(
            &mut g,
            "parking_lot_mutex_f64",
            w,
            n,
            &m,
            |m| *m.lock() = 0.0,
            |m, _, iters| {
                for _ in 0..iters {
                    *m.lock() += 1.0;
                }
            },
            |m| *m.lock() as u64,
        );
        g.finish();
    }
}

/// Elements in the per-bucket arrays of [`array`]: two cache lines of `u64`s.
const BUCKETS: usize = 16;

/// The bucket a worker adds to at step `k`: the workers sweep the array from different
/// starting points, so they meet on the same elements and cache lines now and then, as
/// per-bucket statistics do. Every alternative uses exactly this sequence.
#[inline]
fn bucket(worker: usize, k: u64) -> usize {
    (k as usize).wrapping_add(worker * BUCKETS / 2) % BUCKETS
}

/// Per-bucket counting (Python's `Array('q', n)` as an array of counters): each worker
/// adds one to bucket `bucket(i, k)` at step `k`. `ValueArray<u64>` vs a slice of std
/// `AtomicU64` in the same shared memory, and (threads only) a heap `Box<[AtomicU64]>`:
/// the same `lock xadd` after the same bounds check.
fn array(c: &mut Criterion) {
    for w in [Workers::Threads(2), Workers::Processes(2)] {
        let mut g = common::group(c, format!("array_fetch_add_{}", w.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;

        let arr = Shm::<ValueArray<u64>>::zeroed(BUCKETS);
        concurrent(
            &mut g,
            "shmstate_value_array",
            w,
            n,
            &*arr,
            |a| a.iter().for_each(|v| v.store(0, Relaxed)),
            |a, i, iters| {
                for k in 0..iters {
                    a.fetch_add(bucket(i, k), 1, Relaxed);
                }
            },
            |a| a.load_all(Relaxed).iter().sum(),
        );

        // The same kind of memory (a fresh anonymous shared mapping), std's atomics.
        let slice = Shm::new([const { AtomicU64::new(0) }; BUCKETS]);
        concurrent(
            &mut g,
            "atomic_u64_slice",
            w,
            n,
            &slice[..],
            |a| a.iter().for_each(|v| v.store(0, Relaxed)),
            |a, i, iters| {
                for k in 0..iters {
                    a[bucket(i, k)].fetch_add(1, Relaxed);
                }
            },
            |a| a.iter().map(|v| v.load(Relaxed)).sum(),
        );

        if matches!(w, Workers::Threads(_)) {
            let heap: Box<[AtomicU64]> = (0..BUCKETS).map(|_| AtomicU64::new(0)).collect();
            concurrent(
                &mut g,
                "heap_atomic_u64_slice",
                w,
                n,
                &*heap,
                |a| a.iter().for_each(|v| v.store(0, Relaxed)),
                |a, i, iters| {
                    for k in 0..iters {
                        a[bucket(i, k)].fetch_add(1, Relaxed);
                    }
                },
                |a| a.iter().map(|v| v.load(Relaxed)).sum(),
            );
        }

        g.finish();
    }
}

/// The scaling sweep of one shared counter: `Counter::inc` vs a plain `AtomicU64` in the
/// same kind of shared memory, on 1, 2, 4 and 8 processes. Every increment moves the one
/// cache line to the incrementing core, so the time per increment grows with the writers.
fn scaling_counter(c: &mut Criterion) {
    for w in SWEEP {
        counter_group(
            c,
            format!("scaling_counter_{}", w.label()),
            w,
            Weight::Sweep,
            false,
        );
    }
}

/// The scaling sweep of striped counting on 1, 2, 4 and 8 processes: `StripedCounter` with
/// its default stripes (the machine's cores, rounded up to a power of two) vs one shared
/// atomic and one cache-padded atomic per worker (the ceiling).
fn scaling_striped(c: &mut Criterion) {
    for w in SWEEP {
        striped_group(
            c,
            format!("scaling_striped_{}", w.label()),
            w,
            Weight::Sweep,
        );
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = inc_1thread, contended, striped, value_f64, array, scaling_counter, scaling_striped
}
criterion_main!(benches);
