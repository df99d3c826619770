//! Seqlocks: shmstate's `SeqLock` and `SeqLockArray` next to `std::sync::RwLock` and
//! `parking_lot::RwLock` guarding the same data, and (64-byte reads) the `seqlock` crate's
//! `SeqLock`, in one run. Readers check every value they read (no torn reads, no zero
//! blocks) and count their reads. Two writer processes (`seqlock_write64_2procs`) write
//! against glibc's process-shared `pthread_rwlock_t`.
//!
//! Run: `cargo bench --bench seqlock` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench seqlock`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{PthreadRwLock, SWEEP, Shm, Weight, Workers, concurrent, tune};
use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use shmstate::{SeqLock, SeqLockArray};

/// 64 bytes of data: eight words that a writer always sets to the same value, so a reader
/// that sees two different words saw a torn write. Every block the benches store is
/// `[k; 8]` with `k >= 1` (the initial `[1; 8]`, then the writer's `k = 1, 2, ..`), so a
/// read of `[0; 8]` returned something nobody stored.
type Block = [u64; 8];

/// Shared state of the read benches: the lock under test, the number of reads done (the
/// checked total), and the count of readers still running (the writer stops at zero).
struct ReadBench<L> {
    lock: L,
    reads: AtomicU64,
    running: AtomicU64,
}

/// Checks a block read by a reader and returns what it counts for: 1 for a good block,
/// 0 for a zero block. A torn block (words not all equal) panics at once; a zero block (a
/// value nobody stored: a zeroed or never-read buffer) is not counted, so the reader's
/// count falls short and the bench's final count check fails the run.
///
/// The check must cost far less than the read it checks. Testing for zero with its own
/// branch beside the torn-read test (`b[0] == 0 || ..`) cost the 64-byte seqlock read
/// ~40% (1.7 -> 2.45 ns): the two conditions compiled to a chain of flag tests on the
/// read's critical path. Counting the zero test instead (a `setne` and an add, off that
/// path) leaves one branch per read, and folds the zero check into the out-of-line
/// check of the total. The panic (with its formatting) is out of line too: an inline
/// `assert!` that formats the block made the compiler keep every copy in an addressable
/// stack slot.
#[inline]
fn check_block(b: &Block) -> u64 {
    if !b.iter().all(|w| *w == b[0]) {
        torn(*b)
    }
    u64::from(b[0] != 0)
}

#[cold]
#[inline(never)]
fn torn(b: Block) -> ! {
    panic!("torn read: {b:?}")
}

/// Benches `read` (and, with `writer`, a writer looping over `write` on one more thread
/// until the readers are done) for a lock type `L`. Group workers: `readers` readers plus
/// the writer if any.
fn read_case<L: Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    readers: usize,
    writer: bool,
    lock: L,
    read: impl Fn(&L) -> Block + Sync,
    write: impl Fn(&L, u64) + Sync,
) {
    let state = ReadBench {
        lock,
        reads: AtomicU64::new(0),
        running: AtomicU64::new(0),
    };
    let w = Workers::Threads(readers + usize::from(writer));
    concurrent(
        g,
        id,
        w,
        readers as u64,
        &state,
        |s| {
            // Relaxed: reset before the workers start; the thread spawn synchronises.
            s.reads.store(0, Relaxed);
            s.running.store(readers as u64, Relaxed);
        },
        |s, i, iters| {
            if i < readers {
                let mut n = 0;
                for _ in 0..iters {
                    n += check_block(&read(std::hint::black_box(&s.lock)));
                }
                // Relaxed: read after the join; `running` only tells the writer to stop.
                s.reads.fetch_add(n, Relaxed);
                s.running.fetch_sub(1, Relaxed);
            } else {
                let mut k = 0;
                // Relaxed: a stop flag; no data is published through it.
                while s.running.load(Relaxed) > 0 {
                    k += 1;
                    write(&s.lock, k);
                }
            }
        },
        |s| s.reads.load(Relaxed),
    );
}

/// A 64-byte read: 1 and 2 readers without a writer, and 1 reader with a writer looping.
fn read_64(c: &mut Criterion) {
    for (readers, writer) in [(1, false), (2, false), (1, true)] {
        let name = if writer {
            format!("seqlock_read64_{readers}reader_1writer")
        } else {
            if readers == 1 {
                "seqlock_read64_1reader".to_string()
            } else {
                format!("seqlock_read64_{readers}readers")
            }
        };
        let mut g = common::group(c, name);
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(readers as u64));

        read_case(
            &mut g,
            "shmstate_seqlock",
            readers,
            writer,
            Shm::new(SeqLock::new([1u64; 8])),
            |l| l.read(),
            |l, k| l.write([k; 8]),
        );
        // The `seqlock` crate: the same protocol with the data read by `read_volatile`
        // (a data race with the writer, tolerated in practice), no per-word atomics and
        // no owner-death handling. The anchor for what a seqlock read costs.
        read_case(
            &mut g,
            "seqlock_crate",
            readers,
            writer,
            seqlock::SeqLock::new([1u64; 8]),
            |l| l.read(),
            |l, k| *l.lock_write() = [k; 8],
        );
        read_case(
            &mut g,
            "std_rwlock",
            readers,
            writer,
            std::sync::RwLock::new([1u64; 8]),
            |l| *l.read().unwrap(),
            |l, k| *l.write().unwrap() = [k; 8],
        );
        read_case(
            &mut g,
            "parking_lot_rwlock",
            readers,
            writer,
            parking_lot::RwLock::new([1u64; 8]),
            |l| *l.read(),
            |l, k| *l.write() = [k; 8],
        );
        g.finish();
    }
}

/// Number of `f64`s in the array benches.
const ARRAY_LEN: usize = 1000;

/// A full copy of a 1,000-`f64` array, one thread, no writer.
fn array_snapshot(c: &mut Criterion) {
    let mut g = common::group(c, "seqlock_array_snapshot_1000f64");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let arr = Shm::<SeqLockArray<f64>>::zeroed(ARRAY_LEN);
    for i in 0..ARRAY_LEN {
        arr.set(i, 1.0);
    }
    snapshot_case(&mut g, "shmstate_seqlock_array", &*arr, |a, out| {
        a.snapshot(out)
    });
    let l = std::sync::RwLock::new([1.0f64; ARRAY_LEN]);
    snapshot_case(&mut g, "std_rwlock", &l, |l, out| {
        out.copy_from_slice(&*l.read().unwrap())
    });
    let l = parking_lot::RwLock::new([1.0f64; ARRAY_LEN]);
    snapshot_case(&mut g, "parking_lot_rwlock", &l, |l, out| {
        out.copy_from_slice(&*l.read())
    });
    g.finish();
}

/// Benches `snap` copying the array into a buffer; checks every element read.
fn snapshot_case<L: ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    lock: &L,
    snap: impl Fn(&L, &mut [f64]),
) {
    let mut buf = vec![0.0f64; ARRAY_LEN];
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut sum = 0.0;
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                snap(std::hint::black_box(lock), &mut buf);
                sum += std::hint::black_box(&buf)[iters as usize % ARRAY_LEN];
            }
            let elapsed = t0.elapsed();
            assert!(buf.iter().all(|v| *v == 1.0), "{id}: wrong snapshot");
            assert_eq!(sum, iters as f64, "{id}: wrong snapshot count");
            elapsed
        })
    });
}

/// The scaling sweep of 64-byte reads on 1, 2, 4 and 8 processes, no writer: `SeqLock`
/// against glibc's process-shared `pthread_rwlock_t` guarding the same block (the
/// thread-only alternatives of [`read_64`] do not work between processes). Seqlock readers
/// only load, so the shared line stays in every reader's cache; every rwlock reader writes
/// the lock word.
fn scaling_read_64(c: &mut Criterion) {
    for w in SWEEP {
        let mut g = common::group(c, format!("scaling_seqlock_read64_{}", w.label()));
        tune(&mut g, Weight::Sweep);
        g.throughput(Throughput::Elements(w.count() as u64));

        let l = Shm::new(SeqLock::new([1u64; 8]));
        process_read_case(&mut g, "shmstate_seqlock", w, &*l, |l| l.read());
        let l = PthreadRwLock::new_shared([1u64; 8]);
        process_read_case(&mut g, "pthread_rwlock_pshared", w, &*l, |l| l.read());
        g.finish();
    }
}

/// Benches `read` on `w` reader processes (no writer); every block read is checked as in
/// [`read_case`] and the reads are counted in shared memory.
fn process_read_case<L: Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    w: Workers,
    lock: &L,
    read: impl Fn(&L) -> Block + Sync,
) {
    let reads = Shm::new(AtomicU64::new(0));
    concurrent(
        g,
        id,
        w,
        w.count() as u64,
        &(lock, &*reads),
        // Relaxed: reset before the workers are forked, read after they counted themselves
        // done (Release/Acquire in the runner).
        |s| s.1.store(0, Relaxed),
        |s, _, iters| {
            let mut n = 0;
            for _ in 0..iters {
                n += check_block(&read(std::hint::black_box(s.0)));
            }
            // Relaxed: as above.
            s.1.fetch_add(n, Relaxed);
        },
        |s| s.1.load(Relaxed),
    );
}

/// Two processes writing one 64-byte block in turn (writers only: the contended writer's
/// spin and sleep), each write a read-modify-write that sets every word to the first plus
/// one, so the final block counts the writes (a lost or overlapping write fails the run)
/// and a torn block fails it too. One iteration is one write by each process, timed like
/// `rwlock_write_2procs` in `locks.rs`.
///
/// The alternative is the same block under glibc's process-shared `pthread_rwlock_t`
/// (`write_with`), not a pthread mutex: a seqlock is chosen for a value that many
/// processes read and few write, and the lock a C program shares between processes for
/// that job is the rwlock, whose readers do not exclude each other (the lock the read
/// sweep above compares against). A mutex would make the readers take turns; it is the
/// alternative to shmstate's `Mutex` (`mutex_contended_2procs` in `locks.rs`).
fn write_64(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("seqlock_write64_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(w.count() as u64));
    let n = w.count() as u64;

    let l = Shm::new(SeqLock::new([0u64; 8]));
    concurrent(
        &mut g,
        "shmstate_seqlock",
        w,
        n,
        &*l,
        |l| l.write([0; 8]),
        |l, _, iters| {
            for _ in 0..iters {
                if l.update(|b| *b = [b[0] + 1; 8]).is_err() {
                    panic!("a writer died mid-write");
                }
            }
        },
        |l| written(&l.read()),
    );

    let l = PthreadRwLock::new_shared([0u64; 8]);
    concurrent(
        &mut g,
        "pthread_rwlock_pshared",
        w,
        n,
        &*l,
        |l| l.write_with(|b| *b = [0; 8]),
        |l, _, iters| {
            for _ in 0..iters {
                l.write_with(|b| *b = [b[0] + 1; 8]);
            }
        },
        |l| written(&l.read()),
    );
    g.finish();
}

/// The number of writes a block of [`write_64`] counts (any word: a torn block panics).
fn written(b: &Block) -> u64 {
    check_block(b);
    b[0]
}

/// One element of a 1,000-`f64` array, one thread, no writer: `get` walks the array.
fn array_get(c: &mut Criterion) {
    let mut g = common::group(c, "seqlock_array_get_1000f64");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let arr = Shm::<SeqLockArray<f64>>::zeroed(ARRAY_LEN);
    for i in 0..ARRAY_LEN {
        arr.set(i, 1.0);
    }
    get_case(&mut g, "shmstate_seqlock_array", &*arr, |a, i| a.get(i));
    let l = std::sync::RwLock::new([1.0f64; ARRAY_LEN]);
    get_case(&mut g, "std_rwlock", &l, |l, i| l.read().unwrap()[i]);
    g.finish();
}

/// Benches `get` reading element `k % ARRAY_LEN` on iteration `k`; checks every value.
fn get_case<L: ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    lock: &L,
    get: impl Fn(&L, usize) -> f64,
) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut sum = 0.0;
            let t0 = std::time::Instant::now();
            for k in 0..iters {
                sum += get(std::hint::black_box(lock), k as usize % ARRAY_LEN);
            }
            let elapsed = t0.elapsed();
            assert_eq!(sum, iters as f64, "{id}: wrong value read");
            elapsed
        })
    });
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = read_64, write_64, array_snapshot, array_get
}
// The sweep is its own criterion group, so that the rows above can change independently.
criterion_group! {
    name = scaling;
    config = common::criterion();
    targets = scaling_read_64
}
criterion_main!(benches, scaling);
