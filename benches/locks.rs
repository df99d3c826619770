//! Locks: shmstate's `Mutex`, `RwLock` and `Condvar` next to `std::sync`, `parking_lot` and
//! glibc's process-shared (and robust) pthread mutex placed in a `MAP_SHARED` mapping, in
//! one run. Every critical section increments a plain `u64`, and every bench checks the
//! final count.
//!
//! `std` and `parking_lot` locks use private futexes (keyed by address space), so they do
//! not work between processes: the multi-process rows compare against glibc only.
//!
//! Run: `cargo bench --bench locks` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench locks`).

mod common;

use common::Shm;
use common::{
    PthreadCond, PthreadMutex, PthreadRwLock, SWEEP, Weight, Workers, concurrent, single, tune,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmstate::{Condvar, Mutex, RwLock};

fn pthread_cases(robust: bool) -> (&'static str, common::Shm<PthreadMutex>) {
    let name = if robust {
        "pthread_pshared_robust"
    } else {
        "pthread_pshared"
    };
    (name, PthreadMutex::new_shared(robust))
}

/// Lock, increment, unlock on one thread.
fn mutex_uncontended(c: &mut Criterion) {
    let mut g = common::group(c, "mutex_uncontended");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let m = Shm::<Mutex<u64>>::zeroed(1);
    single(
        &mut g,
        "shmstate_mutex",
        &*m,
        |m| *m.lock().unwrap() = 0,
        |m| {
            *m.lock().unwrap() += 1;
        },
        |m| *m.lock().unwrap(),
    );

    let m = std::sync::Mutex::new(0u64);
    single(
        &mut g,
        "std_mutex",
        &m,
        |m| *m.lock().unwrap() = 0,
        |m| {
            *m.lock().unwrap() += 1;
        },
        |m| *m.lock().unwrap(),
    );

    let m = parking_lot::Mutex::new(0u64);
    single(
        &mut g,
        "parking_lot_mutex",
        &m,
        |m| *m.lock() = 0,
        |m| *m.lock() += 1,
        |m| *m.lock(),
    );

    for robust in [false, true] {
        let (name, m) = pthread_cases(robust);
        single(
            &mut g,
            name,
            &*m,
            |m| m.set(0),
            |m| m.with(|v| *v += 1),
            |m| m.get(),
        );
    }
    g.finish();
}

/// Two workers hammering one lock; each iteration is one lock+increment+unlock per worker.
fn mutex_contended(c: &mut Criterion) {
    for w in [Workers::Threads(2), Workers::Processes(2)] {
        let name = format!("mutex_contended_{}", w.label());
        mutex_group(c, name, w, Weight::Spawning, &[false, true]);
    }
}

/// One group of [`mutex_contended`] (and of the [`scaling_mutex`] sweep, with glibc's
/// robust mutex only): `w` workers; `std` and `parking_lot` rows on threads only.
fn mutex_group(c: &mut Criterion, name: String, w: Workers, weight: Weight, pthread: &[bool]) {
    {
        let mut g = common::group(c, name);
        tune(&mut g, weight);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;

        let m = Shm::<Mutex<u64>>::zeroed(1);
        concurrent(
            &mut g,
            "shmstate_mutex",
            w,
            n,
            &*m,
            |m| *m.lock().unwrap() = 0,
            |m, _, iters| {
                for _ in 0..iters {
                    *m.lock().unwrap() += 1;
                }
            },
            |m| *m.lock().unwrap(),
        );

        if let Workers::Threads(_) = w {
            let m = std::sync::Mutex::new(0u64);
            concurrent(
                &mut g,
                "std_mutex",
                w,
                n,
                &m,
                |m| *m.lock().unwrap() = 0,
                |m, _, iters| {
                    for _ in 0..iters {
                        *m.lock().unwrap() += 1;
                    }
                },
                |m| *m.lock().unwrap(),
            );

            let m = parking_lot::Mutex::new(0u64);
            concurrent(
                &mut g,
                "parking_lot_mutex",
                w,
                n,
                &m,
                |m| *m.lock() = 0,
                |m, _, iters| {
                    for _ in 0..iters {
                        *m.lock() += 1;
                    }
                },
                |m| *m.lock(),
            );
        }

        for &robust in pthread {
            let (name, m) = pthread_cases(robust);
            concurrent(
                &mut g,
                name,
                w,
                n,
                &*m,
                |m| m.set(0),
                |m, _, iters| {
                    for _ in 0..iters {
                        m.with(|v| *v += 1);
                    }
                },
                |m| m.get(),
            );
        }
        g.finish();
    }
}

/// Read-lock, read, unlock: 1 reader, then 2 readers on 2 threads, no writer. Each read
/// returns 1, summed per worker, so the total is the number of reads.
fn rwlock_read(c: &mut Criterion) {
    for readers in [1usize, 2] {
        let w = Workers::Threads(readers);
        let mut g = common::group(c, format!("rwlock_read_{}", w.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(readers as u64));
        let n = readers as u64;
        let total = std::sync::atomic::AtomicU64::new(0);

        let l = Shm::new(RwLock::new(1u64));
        concurrent(
            &mut g,
            "shmstate_rwlock",
            w,
            n,
            &(&*l, &total),
            |s| s.1.store(0, RELAXED),
            |s, _, iters| {
                let mut sum = 0;
                for _ in 0..iters {
                    sum += *std::hint::black_box(s.0).read().unwrap();
                }
                s.1.fetch_add(sum, RELAXED);
            },
            |s| s.1.load(RELAXED),
        );

        let l = std::sync::RwLock::new(1u64);
        concurrent(
            &mut g,
            "std_rwlock",
            w,
            n,
            &(&l, &total),
            |s| s.1.store(0, RELAXED),
            |s, _, iters| {
                let mut sum = 0;
                for _ in 0..iters {
                    sum += *std::hint::black_box(s.0).read().unwrap();
                }
                s.1.fetch_add(sum, RELAXED);
            },
            |s| s.1.load(RELAXED),
        );

        let l = parking_lot::RwLock::new(1u64);
        concurrent(
            &mut g,
            "parking_lot_rwlock",
            w,
            n,
            &(&l, &total),
            |s| s.1.store(0, RELAXED),
            |s, _, iters| {
                let mut sum = 0;
                for _ in 0..iters {
                    sum += *std::hint::black_box(s.0).read();
                }
                s.1.fetch_add(sum, RELAXED);
            },
            |s| s.1.load(RELAXED),
        );

        g.finish();
    }
}

/// Write-lock, increment, unlock of one lock by 2 processes (writers only: the contended
/// writer's spin), against glibc's process-shared `pthread_rwlock_t`.
fn rwlock_write(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("rwlock_write_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(w.count() as u64));
    let n = w.count() as u64;

    let l = Shm::new(RwLock::new(0u64));
    concurrent(
        &mut g,
        "shmstate_rwlock",
        w,
        n,
        &*l,
        |l| *l.write().unwrap() = 0,
        |l, _, iters| {
            for _ in 0..iters {
                *l.write().unwrap() += 1;
            }
        },
        |l| *l.read().unwrap(),
    );

    let l = PthreadRwLock::new_shared(0u64);
    concurrent(
        &mut g,
        "pthread_rwlock_pshared",
        w,
        n,
        &*l,
        |l| l.write_with(|v| *v = 0),
        |l, _, iters| {
            for _ in 0..iters {
                l.write_with(|v| *v += 1);
            }
        },
        |l| l.read(),
    );
    g.finish();
}

/// Relaxed: the per-worker sums are read after the workers are joined.
const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Ping-pong between 2 processes through a mutex-guarded turn counter and a condition
/// variable: worker `i` waits until the count's parity is `i`, increments it and notifies.
/// One iteration is one round trip (two hand-offs).
fn condvar_pingpong(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("condvar_pingpong_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));

    let m = Shm::<Mutex<u64>>::zeroed(1);
    let cv = Shm::<Condvar>::zeroed(1);
    concurrent(
        &mut g,
        "shmstate_condvar",
        w,
        2,
        &(&*m, &*cv),
        |s| *s.0.lock().unwrap() = 0,
        |s, i, iters| {
            for _ in 0..iters {
                let guard = s.0.lock().unwrap();
                let mut guard = s.1.wait_while(guard, |t| *t % 2 != i as u64).unwrap();
                *guard += 1;
                // Notified with the lock held, as the pthread case below does.
                s.1.notify_all();
                drop(guard);
            }
        },
        |s| *s.0.lock().unwrap(),
    );

    let m = PthreadMutex::new_shared(false);
    let cv = PthreadCond::new_shared();
    concurrent(
        &mut g,
        "pthread_pshared",
        w,
        2,
        &(&*m, &*cv),
        |s| s.0.set(0),
        |s, i, iters| {
            for _ in 0..iters {
                s.1.wait_while_then(s.0, |t| t % 2 != i as u64, |t| *t += 1);
            }
        },
        |s| s.0.get(),
    );
    g.finish();
}

/// The scaling sweep of the contended mutex on 1, 2, 4 and 8 processes: lock, increment,
/// unlock, against glibc's process-shared robust mutex (the one that, like shmstate's,
/// survives a dead owner). One lock word and the data it guards are shared by every worker.
fn scaling_mutex(c: &mut Criterion) {
    for w in SWEEP {
        mutex_group(
            c,
            format!("scaling_mutex_{}", w.label()),
            w,
            Weight::Sweep,
            &[true],
        );
    }
}

/// The scaling sweep of read locks on 1, 2, 4 and 8 processes, no writer: read-lock, read,
/// unlock, against glibc's process-shared `pthread_rwlock_t` (`std` and `parking_lot` locks
/// work within one process only). Each read returns 1, summed per worker into a shared
/// total, so the total is the number of reads.
fn scaling_rwlock_read(c: &mut Criterion) {
    for w in SWEEP {
        let mut g = common::group(c, format!("scaling_rwlock_read_{}", w.label()));
        tune(&mut g, Weight::Sweep);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;
        let total = Shm::new(std::sync::atomic::AtomicU64::new(0));

        let l = Shm::new(RwLock::new(1u64));
        concurrent(
            &mut g,
            "shmstate_rwlock",
            w,
            n,
            &(&*l, &*total),
            |s| s.1.store(0, RELAXED),
            |s, _, iters| {
                let mut sum = 0;
                for _ in 0..iters {
                    sum += *std::hint::black_box(s.0).read().unwrap();
                }
                s.1.fetch_add(sum, RELAXED);
            },
            |s| s.1.load(RELAXED),
        );

        let l = PthreadRwLock::new_shared(1u64);
        concurrent(
            &mut g,
            "pthread_rwlock_pshared",
            w,
            n,
            &(&*l, &*total),
            |s| s.1.store(0, RELAXED),
            |s, _, iters| {
                let mut sum = 0;
                for _ in 0..iters {
                    sum += std::hint::black_box(s.0).read();
                }
                s.1.fetch_add(sum, RELAXED);
            },
            |s| s.1.load(RELAXED),
        );

        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = mutex_uncontended, mutex_contended, rwlock_read, rwlock_write, condvar_pingpong,
        scaling_mutex, scaling_rwlock_read
}
criterion_main!(benches);
