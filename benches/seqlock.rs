//! Seqlocks: shmstate's `SeqLock` and `SeqLockArray` next to `std::sync::RwLock` and
//! `parking_lot::RwLock` guarding the same data, in one run. Readers check every value
//! they read (no torn reads) and count their reads.
//!
//! Run: `cargo bench --bench seqlock` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench seqlock`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{Shm, Weight, Workers, concurrent, tune};
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

/// Checks a block read by a reader: all words equal (not torn) and not zero (a value some
/// writer stored, not a zeroed or never-read buffer). Returns 1 for counting.
///
/// The panic (with its formatting) is out of line: an inline `assert!` that formats the
/// block made the compiler keep every copy in an addressable stack slot, which cost the
/// seqlock rows several ns per read for the bench's own bookkeeping.
#[inline]
fn check_block(b: &Block) -> u64 {
    if b[0] == 0 || !b.iter().all(|w| *w == b[0]) {
        torn(*b)
    }
    1
}

#[cold]
#[inline(never)]
fn torn(b: Block) -> ! {
    panic!("torn read or a value never stored: {b:?}")
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
    targets = read_64, array_snapshot, array_get
}
criterion_main!(benches);
