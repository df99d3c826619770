//! Single-process tests of `SeqLock` and `SeqLockArray`: every method, odd sizes and
//! alignments of `T`, writers that die (threads that exit mid-write), and hostile bytes in
//! the sequence and lock words.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytemuck::{Pod, Zeroable};
// Under Miri (no `mmap(MAP_SHARED)`), the zeroed objects of these single-process tests live
// on the heap instead.
#[cfg(miri)]
use common::HeapMem as SharedMem;
#[cfg(not(miri))]
use common::SharedMem;
use shmstate::{Elem, Element, Field, SeqLock, SeqLockArray, SeqLockError, Shared, TimedLockError};

/// `T`'s identity for a region ([`Element`]), by hand: `T`'s name, size, alignment and
/// each field's name, offset and identity.
macro_rules! element {
    ($t:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        impl Element for $t {
            const ELEM: Elem = Elem::record(
                stringify!($t),
                size_of::<$t>(),
                align_of::<$t>(),
                &[$(Field {
                    name: stringify!($field),
                    offset: core::mem::offset_of!($t, $field),
                    ty: <$ty as Element>::ELEM,
                }),+],
            );
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct A2 {
    a: u16,
    b: u16,
    c: u16,
}
element!(A2 {
    a: u16,
    b: u16,
    c: u16
});

/// 100 bytes, alignment 1 (bytemuck has no `Pod` for `[u8; 100]` without const generics).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct B100 {
    a: [u8; 64],
    b: [u8; 32],
    c: [u8; 4],
}
element!(B100 {
    a: [u8; 64],
    b: [u8; 32],
    c: [u8; 4]
});

fn b100(x: u8) -> B100 {
    B100 {
        a: [x; 64],
        b: [x; 32],
        c: [x; 4],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C, align(8))]
struct A8 {
    x: u64,
    y: [u8; 8],
}
element!(A8 { x: u64, y: [u8; 8] });

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C, align(16))]
struct A16 {
    x: u128,
}
element!(A16 { x: u128 });

/// Bounds a test that blocks on other threads (not under Miri, which runs every test of
/// the file in one slow process).
fn watchdog() {
    if !cfg!(miri) {
        common::watchdog(Duration::from_secs(120));
    }
}

/// Waits (bounded) until `s`'s writer, a thread that exited mid-write, reads as dead: a
/// joined thread's TID can stay visible to `kill(tid, 0)` for a moment after the join.
fn until_writer_dead<T: Pod>(s: &SeqLock<T>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.try_read().err() != Some(SeqLockError::WriterDied) {
        assert!(
            std::time::Instant::now() < deadline,
            "writer never read as dead"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every public method of `SeqLock` on one value type, with `a` and `b` distinct.
fn exercise<T: Element + PartialEq + std::fmt::Debug>(a: T, b: T) {
    let s = SeqLock::new(a);
    assert_eq!(s.read(), a);
    assert_eq!(s.try_read(), Ok(a));
    assert_eq!(s.read_timeout(Duration::from_millis(10)), Ok(a));
    s.write(b);
    assert_eq!(s.read(), b);
    s.update(|v| *v = a).unwrap();
    assert_eq!(s.read(), a);
    {
        let mut g = s.lock().unwrap();
        assert!(!g.recovered());
        assert_eq!(*g, a);
        *g = b;
        assert_eq!(
            s.read(),
            a,
            "readers see the old value until the guard drops"
        );
    }
    assert_eq!(s.read(), b);
    *s.lock_timeout(Duration::from_millis(10)).unwrap() = a;
    assert_eq!(s.read(), a);
    assert_eq!(SeqLock::<T>::default().read(), T::zeroed());
    // In shared memory: zeroed is a valid seqlock holding `T::zeroed()`.
    let m = SharedMem::<SeqLock<T>>::new(1);
    assert_eq!(m.get().read(), T::zeroed());
    m.get().write(b);
    assert_eq!(m.get().try_read(), Ok(b));
    assert_eq!(<SeqLock<T> as Shared>::ALIGN % 8, 0);
}

#[test]
fn seqlock_round_trips_every_size_and_alignment() {
    exercise(1u8, 2);
    exercise([1u8, 2, 3], [4, 5, 6]);
    exercise([7u8; 12], [8; 12]);
    exercise([1u32, 2, 3], [4, 5, 6]);
    exercise([3u64; 8], [4; 8]);
    exercise(b100(9), b100(10));
    exercise(A2 { a: 1, b: 2, c: 3 }, A2 { a: 4, b: 5, c: 6 });
    exercise(0xabcdu16, 7);
    exercise(0x1234_5678u32, 9);
    exercise(
        A8 { x: 1, y: [2; 8] },
        A8 {
            x: u64::MAX,
            y: [0; 8],
        },
    );
    exercise(A16 { x: 1 }, A16 { x: u128::MAX });
    exercise(1.5f64, -2.25);
}

#[test]
fn seqlock_reports_types_and_sizes_to_regions() {
    assert_eq!(
        <SeqLock<[u8; 3]> as Shared>::TAG.to_string(),
        "SeqLock<[u8; 3]>"
    );
    assert_eq!(<SeqLock<[u8; 3]> as Shared>::size_for(1), Some(16));
    assert_eq!(<SeqLock<B100> as Shared>::size_for(1), Some(112));
    assert_eq!(<SeqLock<A16> as Shared>::size_for(1), Some(32));
    assert_eq!(
        <SeqLockArray<f64> as Shared>::TAG.to_string(),
        "SeqLockArray<f64>"
    );
    // 16 bytes, then 9 per `f64` (8 of data, 1 toward the stripe headers), rounded to 8.
    assert_eq!(<SeqLockArray<f64> as Shared>::size_for(4), Some(64));
    assert_eq!(<SeqLockArray<f64> as Shared>::size_for(1000), Some(9024));
    assert_eq!(<SeqLockArray<u8> as Shared>::size_for(3), Some(32));
    assert_eq!(<SeqLockArray<A16> as Shared>::size_for(2), Some(64));
    assert_eq!(<SeqLockArray<A16> as Shared>::ALIGN, 8);
    assert_eq!(<SeqLockArray<f64> as Shared>::size_for(0), None);
    assert_eq!(
        <SeqLockArray<f64> as Shared>::size_for(usize::MAX / 4),
        None
    );
}

#[test]
fn update_returns_the_closures_result() {
    let s = SeqLock::new(4u32);
    assert_eq!(s.update(|v| std::mem::replace(v, 5)).ok(), Some(4));
    assert_eq!(s.read(), 5);
    assert!(format!("{s:?}").contains('5'));
}

#[test]
fn panicking_update_stores_nothing_and_releases_the_lock() {
    watchdog();
    let s = SeqLock::new(1u64);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.update(|v| {
            *v = 99;
            panic!("boom")
        })
    }));
    assert!(r.is_err());
    assert_eq!(s.try_read(), Ok(1));
    s.write(2);
    assert_eq!(s.read(), 2);
}

#[test]
fn live_writer_mid_write_makes_bounded_reads_report_writer_active() {
    watchdog();
    let s = SeqLock::new([1u64; 4]);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|sc| {
        let s = &s;
        sc.spawn(move || {
            s.begin_write_for_test([2; 4]);
            tx.send(()).unwrap();
            // Stay alive (and mid-write) until the main thread is done checking.
            done_rx.recv().unwrap();
        });
        rx.recv().unwrap();
        assert_eq!(s.try_read(), Err(SeqLockError::WriterActive));
        assert_eq!(
            s.read_timeout(Duration::from_millis(30)),
            Err(SeqLockError::Timeout)
        );
        assert!(matches!(
            s.lock_timeout(Duration::from_millis(30)),
            Err(TimedLockError::Timeout)
        ));
        done_tx.send(()).unwrap();
    });
    // The thread exited mid-write: it is dead now.
    until_writer_dead(&s);
    let mut g = s
        .lock()
        .expect_err("the new writer learns the value is torn")
        .into_inner();
    assert!(g.recovered());
    g.mark_consistent();
    drop(g);
    assert_eq!(s.try_read(), Ok([2; 4]));
}

/// Waiters probe the writer only when a sleep slice (1 ms at first) runs out; a timed wait
/// whose deadline comes first still probes once at the deadline, so a dead writer is
/// reported or taken over instead of passing for a live one.
#[test]
fn timed_waits_shorter_than_a_slice_still_see_a_dead_writer() {
    watchdog();
    let s = SeqLock::new(1u32);
    std::thread::scope(|sc| {
        sc.spawn(|| s.begin_write_for_test(2));
    });
    until_writer_dead(&s);
    let short = Duration::from_micros(200);
    assert_eq!(s.read_timeout(short), Err(SeqLockError::WriterDied));
    let mut g = match s.lock_timeout(short) {
        Err(TimedLockError::OwnerDied(torn)) => torn.into_inner(),
        Err(TimedLockError::Timeout) => panic!("a dead writer passed for a live one"),
        Ok(_) => panic!("a torn value was handed out as consistent"),
    };
    *g = 3;
    g.mark_consistent();
    drop(g);
    assert_eq!(s.try_read(), Ok(3));
}

#[test]
fn writer_dead_mid_write_is_repaired_by_the_next_write() {
    watchdog();
    let s = SeqLock::new(b100(5));
    std::thread::scope(|sc| {
        sc.spawn(|| s.begin_write_for_test(b100(6)));
    });
    until_writer_dead(&s);
    assert_eq!(
        s.read_timeout(Duration::from_secs(5)),
        Err(SeqLockError::WriterDied)
    );
    s.write(b100(7));
    assert_eq!(s.try_read(), Ok(b100(7)));
    assert!(!s.lock().unwrap().recovered());
}

#[test]
fn read_waits_for_the_repair_of_a_dead_writers_value() {
    watchdog();
    let s = SeqLock::new(1u32);
    std::thread::scope(|sc| {
        sc.spawn(|| s.begin_write_for_test(2));
    });
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| s.read());
        // Whether the reader is already asleep or not, it must return the repaired value.
        s.write(3);
        assert_eq!(reader.join().unwrap(), 3);
    });
}

#[test]
fn writer_that_died_holding_the_lock_outside_a_write_leaves_a_clean_value() {
    watchdog();
    let s = SeqLock::new(10u16);
    std::thread::scope(|sc| {
        sc.spawn(|| std::mem::forget(s.lock()));
    });
    assert_eq!(s.try_read(), Ok(10), "readers are unaffected");
    let g = s.lock().expect("a clean value is no OwnerDied");
    assert!(!g.recovered());
    assert_eq!(*g, 10);
}

#[test]
fn threads_never_read_torn_values() {
    watchdog();
    let (writes, reads) = if cfg!(miri) {
        (30, 100)
    } else {
        (20_000, 200_000)
    };
    let s = SeqLock::new([0u64; 8]);
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                for _ in 0..writes {
                    s.update(|v| *v = [v[0] + 1; 8]).unwrap();
                }
            });
        }
        sc.spawn(|| {
            let mut last = 0;
            for _ in 0..reads {
                let v = s.read();
                assert!(v.iter().all(|&w| w == v[0]), "torn: {v:?}");
                assert!(v[0] >= last);
                last = v[0];
            }
        });
    });
    assert_eq!(s.read(), [2 * writes; 8]);
}

/// The two words in front of a seqlock's data: (`seq`, `writer`), as documented.
fn words<T>(s: &SeqLock<T>) -> (&AtomicU32, &AtomicU32) {
    let p = s as *const SeqLock<T> as *const AtomicU32;
    // SAFETY: `SeqLock` is `#[repr(C)]` with two `AtomicU32`s at offsets 0 and 4, inside
    // the object `s` borrows; another process could write them the same way.
    unsafe { (&*p, &*p.add(1)) }
}

#[test]
fn hostile_sequence_and_lock_words_never_hang_or_panic() {
    watchdog();
    let m = SharedMem::<SeqLock<[u8; 3]>>::new(1);
    let s = m.get();
    let (seq, writer) = words(s);
    let patterns: [(u32, u32); 8] = [
        (1, 0),           // odd, no owner
        (u32::MAX, 0),    // odd at the wrap
        (7, 0x7fff_fff0), // odd, a TID no thread has
        (8, 0x7fff_fff0), // even, locked by a nonexistent TID
        (8, 1 << 31),     // even, waiters bit without owner
        (9, (1 << 31) | 0x3fff_ffff),
        (u32::MAX - 1, 0),       // even at the wrap
        (0xdead_beef, u32::MAX), // odd, all ones
    ];
    for (sv, wv) in patterns {
        seq.store(sv, Ordering::Relaxed);
        writer.store(wv, Ordering::Relaxed);
        let odd = sv & 1 == 1;
        match s.try_read() {
            Ok(_) => assert!(!odd),
            Err(e) => assert!(
                odd && e == SeqLockError::WriterDied,
                "{sv:#x}/{wv:#x}: {e:?}"
            ),
        }
        assert_eq!(s.read_timeout(Duration::from_millis(20)).is_ok(), !odd);
        // A writer takes over whatever is there and leaves a clean state.
        let g = match s.lock_timeout(Duration::from_secs(5)) {
            Ok(g) => g,
            Err(TimedLockError::OwnerDied(d)) => d.into_inner(),
            Err(TimedLockError::Timeout) => panic!("{sv:#x}/{wv:#x}: no takeover"),
        };
        assert_eq!(g.recovered(), odd, "{sv:#x}/{wv:#x}");
        drop(g);
        s.write([1, 2, 3]);
        assert_eq!(s.try_read(), Ok([1, 2, 3]));
        assert_eq!(writer.load(Ordering::Relaxed), 0);
        assert_eq!(seq.load(Ordering::Relaxed) & 1, 0);
    }
}

#[test]
fn array_methods_work() {
    let a = SeqLockArray::<[u8; 3]>::new(3);
    assert_eq!(a.len(), 3);
    assert!(!a.is_empty());
    assert_eq!(a.to_vec(), [[0; 3]; 3]);
    a.set(1, [1, 2, 3]);
    assert_eq!(a.get(1), [1, 2, 3]);
    assert_eq!(
        a.update(1, |v| std::mem::replace(&mut v[0], 9)).ok(),
        Some(1)
    );
    assert_eq!(a.get(1), [9, 2, 3]);
    assert_eq!(a.try_get(2), Ok([0; 3]));
    assert_eq!(a.get_timeout(1, Duration::from_millis(5)), Ok([9, 2, 3]));
    {
        let mut g = a.lock(0).expect("no writer died");
        assert_eq!((g.index(), *g, g.recovered()), (0, [0; 3], false));
        g[2] = 7;
    }
    assert_eq!(a.get(0), [0, 0, 7]);
    drop(
        a.lock_timeout(2, Duration::from_millis(5))
            .map(|mut g| *g = [4; 3]),
    );
    assert_eq!(a.get(2), [4; 3]);
    a.set_all(&[[1; 3], [2; 3], [3; 3]]);
    let mut out = [[0u8; 3]; 3];
    a.snapshot(&mut out);
    assert_eq!(out, [[1; 3], [2; 3], [3; 3]]);
    assert_eq!(a.try_snapshot(&mut out), Ok(()));
    assert_eq!(
        a.snapshot_timeout(&mut out, Duration::from_millis(5)),
        Ok(())
    );
    let r = a.write_batch(|v| {
        v.swap(0, 2);
        v.len()
    });
    assert_eq!(r.ok(), Some(3));
    assert_eq!(a.to_vec(), [[3; 3], [2; 3], [1; 3]]);
    let b = SeqLockArray::from_slice(&[A16 { x: 5 }, A16 { x: 6 }]);
    assert_eq!(b.get(1), A16 { x: 6 });
    assert!(format!("{b:?}").contains('6'));
    assert!(SeqLockArray::<u8>::new(0).is_empty());
}

#[test]
fn array_in_shared_memory_starts_zeroed() {
    let m = SharedMem::<SeqLockArray<f64>>::new(5);
    let a = m.get();
    assert_eq!(a.len(), 5);
    assert_eq!(a.to_vec(), [0.0; 5]);
    a.set(4, 1.5);
    assert_eq!(a.to_vec(), [0.0, 0.0, 0.0, 0.0, 1.5]);
}

#[test]
#[should_panic(expected = "index out of range")]
fn array_get_out_of_range_panics_like_a_slice() {
    SeqLockArray::<u8>::new(2).get(2);
}

#[test]
#[should_panic(expected = "index out of range")]
fn array_set_out_of_range_panics_like_a_slice() {
    SeqLockArray::<u8>::new(2).set(5, 1);
}

#[test]
#[should_panic(expected = "elements but the buffer has")]
fn array_snapshot_into_a_wrong_sized_buffer_panics() {
    SeqLockArray::<u8>::new(2).snapshot(&mut [0; 3]);
}

#[test]
fn panicking_batch_stores_nothing_and_releases_every_lock() {
    watchdog();
    let a = SeqLockArray::from_slice(&[1u32, 2]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.write_batch(|v| {
            v[0] = 100;
            panic!("boom")
        })
    }));
    assert!(r.is_err());
    assert_eq!(a.to_vec(), [1, 2]);
    a.set(0, 3);
    assert_eq!(a.get(0), 3);
}

/// Waits (bounded) until element `i`'s stripe reads as torn by a dead writer.
fn until_stripe_writer_dead<T: Pod>(a: &SeqLockArray<T>, i: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.try_get(i).err() != Some(SeqLockError::WriterDied) {
        assert!(
            std::time::Instant::now() < deadline,
            "writer never read as dead"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Three stripes of `u64`s: element `i` holds `i`.
fn three_stripes() -> Box<SeqLockArray<u64>> {
    let n = 3 * SeqLockArray::<u64>::STRIPE_LEN;
    SeqLockArray::from_slice(&(0..n as u64).collect::<Vec<_>>())
}

#[test]
fn array_stripe_torn_by_a_dead_writer_is_reported_and_repaired_by_a_batch() {
    watchdog();
    let a = three_stripes();
    let (n, s) = (a.len(), SeqLockArray::<u64>::STRIPE_LEN);
    std::thread::scope(|sc| {
        sc.spawn(|| a.begin_write_for_test(s + 1, 20));
    });
    until_stripe_writer_dead(&a, s + 1);
    let mut out = vec![0; n];
    assert_eq!(a.try_snapshot(&mut out), Err(SeqLockError::WriterDied));
    assert_eq!(
        a.snapshot_timeout(&mut out, Duration::from_secs(5)),
        Err(SeqLockError::WriterDied)
    );
    // The stripe's other elements share its sequence word: torn for readers too.
    assert_eq!(a.try_get(s), Err(SeqLockError::WriterDied));
    // Other stripes are unaffected.
    assert_eq!(a.try_get(s - 1), Ok(s as u64 - 1));
    assert_eq!(a.try_get(2 * s), Ok(2 * s as u64));
    // The batch is told the stripe is torn, and runs no closure on the torn copy.
    let torn = a.write_batch(|_| unreachable!("the stripe is torn"));
    let mut batch = torn.expect_err("the stripe is torn").into_inner();
    assert!(batch.recovered());
    batch[s + 1] = 22;
    batch.mark_consistent();
    drop(batch);
    let mut want: Vec<u64> = (0..n as u64).collect();
    want[s + 1] = 22;
    assert_eq!(a.to_vec(), want);
}

#[test]
fn a_writer_mid_write_in_one_stripe_does_not_disturb_readers_of_another() {
    watchdog();
    let a = three_stripes();
    let s = SeqLockArray::<u64>::STRIPE_LEN;
    // A live writer (this thread) stays mid-write in stripe 0 for the rest of the test.
    a.begin_write_for_test(3, 99);
    assert_eq!(a.try_get(3), Err(SeqLockError::WriterActive));
    assert_eq!(a.try_get(s - 1), Err(SeqLockError::WriterActive));
    assert_eq!(
        a.get_timeout(0, Duration::from_millis(5)),
        Err(SeqLockError::Timeout)
    );
    // Every element of the other stripes reads at once, and can be written.
    for i in s..a.len() {
        assert_eq!(a.try_get(i), Ok(i as u64));
        assert_eq!(a.get(i), i as u64);
    }
    a.set(2 * s, 7);
    assert_eq!(a.try_get(2 * s), Ok(7));
    assert!(matches!(
        a.lock_timeout(0, Duration::from_millis(5)),
        Err(TimedLockError::Timeout)
    ));
}

#[test]
fn a_held_element_guard_does_not_disturb_readers_or_writers_of_another_stripe() {
    watchdog();
    let a = three_stripes();
    let s = SeqLockArray::<u64>::STRIPE_LEN;
    let mut g = a.lock(1).expect("no writer died");
    *g = 100;
    // Until the guard drops, readers of its own stripe still read the old value.
    assert_eq!(a.try_get(1), Ok(1));
    assert_eq!(a.try_get(s + 1), Ok(s as u64 + 1));
    a.set(s + 1, 5);
    assert_eq!(a.try_get(s + 1), Ok(5));
    assert!(matches!(
        a.write_batch_timeout(Duration::from_millis(5), |_| ()),
        Err(TimedLockError::Timeout)
    ));
    drop(g);
    assert_eq!(a.get(1), 100);
}

#[test]
fn a_dead_element_writer_is_repaired_by_the_next_write_of_that_element() {
    watchdog();
    let a = three_stripes();
    let s = SeqLockArray::<u64>::STRIPE_LEN;
    std::thread::scope(|sc| {
        sc.spawn(|| a.begin_write_for_test(s + 2, 1234));
    });
    until_stripe_writer_dead(&a, s + 2);
    // A write of *another* element of the stripe is stored, but cannot vouch for the torn
    // one: the stripe stays torn, and its guard is not a recovered one.
    {
        let mut g = a.lock(s + 3).expect("element s + 3 itself is intact");
        assert!(!g.recovered());
        *g = 33;
    }
    a.set(s + 4, 44);
    assert_eq!(a.try_get(s + 3), Err(SeqLockError::WriterDied));
    // The torn element's own writer is told, and a guard dropped unmarked stores nothing.
    let torn = a.lock(s + 2).expect_err("the torn element is reported");
    assert!(torn.get_ref().recovered());
    assert_eq!(
        **torn.get_ref(),
        1234,
        "the guard holds the dead writer's bytes"
    );
    drop(torn);
    assert_eq!(a.try_get(s + 2), Err(SeqLockError::WriterDied));
    assert!(a.update(s + 2, |v| *v += 1).is_err());
    // `set` of the torn element repairs the stripe, with the other writes kept.
    a.set(s + 2, 22);
    assert_eq!(a.try_get(s + 2), Ok(22));
    assert_eq!(a.try_get(s + 3), Ok(33));
    assert_eq!(a.try_get(s + 4), Ok(44));
    assert_eq!(a.try_get(s + 5), Ok(s as u64 + 5));
    assert_eq!(a.update(s + 2, |v| *v += 1).ok(), Some(()));
    assert_eq!(a.get(s + 2), 23);
}

#[test]
fn a_dead_batch_writer_leaves_whole_stripes_torn_until_the_next_batch() {
    watchdog();
    let a = three_stripes();
    let n = a.len();
    std::thread::scope(|sc| {
        sc.spawn(|| a.begin_batch_for_test(&vec![7; n]));
    });
    until_stripe_writer_dead(&a, 0);
    for i in [0, 1, n / 2, n - 1] {
        assert_eq!(a.try_get(i), Err(SeqLockError::WriterDied));
        // Every element of a stripe a batch writer died in is suspect.
        let mut g = a
            .lock(i)
            .expect_err("a batch-torn stripe is reported")
            .into_inner();
        *g = 8;
        g.mark_consistent();
        drop(g);
        // Stored, but one element cannot vouch for its stripe.
        assert_eq!(a.try_get(i), Err(SeqLockError::WriterDied));
    }
    let torn = a.write_batch(|v| v.fill(9));
    let mut batch = torn.expect_err("the stripe is torn").into_inner();
    batch.fill(9);
    batch.mark_consistent();
    drop(batch);
    assert_eq!(a.to_vec(), vec![9; n]);
    assert!(a.update(0, |v| *v += 1).is_ok());
}

#[test]
fn a_garbage_dirty_word_makes_the_whole_stripe_suspect() {
    watchdog();
    let s = SeqLockArray::<u32>::STRIPE_LEN;
    let m = SharedMem::<SeqLockArray<u32>>::new(s + 8);
    let a = m.get();
    let s32 = s as u32;
    for dirty in [0, 9, s32, s32 + 1, 1000, u32::MAX] {
        let [seq, writer, d] = a.stripe_words_for_test(1);
        // A torn stripe without owner, whose `dirty` names no element of it (stripe 1
        // holds elements s..s + 8: relative 0..8, so valid values are 1..=8).
        d.store(dirty, Ordering::Relaxed);
        writer.store(0, Ordering::Relaxed);
        seq.store(1, Ordering::Relaxed);
        assert_eq!(a.try_get(s + 3), Err(SeqLockError::WriterDied));
        assert!(a.lock(s + 7).is_err(), "dirty={dirty}");
        assert!(a.lock(s).is_err(), "dirty={dirty}");
        assert_eq!(a.try_get(0), Ok(0));
        a.set_all(&vec![0; s + 8]);
        assert_eq!(a.try_get(s + 3), Ok(0));
    }
}

#[test]
fn sub_word_elements_are_written_without_touching_their_neighbours() {
    watchdog();
    let n = 301;
    let a = SeqLockArray::<[u8; 3]>::new(n);
    let v = |i: usize| [i as u8, (i >> 8) as u8, 0xA5];
    for i in (0..n).rev() {
        a.set(i, v(i));
    }
    assert_eq!(a.to_vec(), (0..n).map(v).collect::<Vec<_>>());
    for i in (0..n).step_by(7) {
        a.update(i, |x| x[2] = 0x5A).unwrap();
    }
    for i in 0..n {
        let mut want = v(i);
        if i % 7 == 0 {
            want[2] = 0x5A;
        }
        assert_eq!(a.get(i), want, "element {i}");
    }
    let b = SeqLockArray::<u8>::from_slice(&(0..=255).collect::<Vec<u8>>());
    b.set(200, 1);
    assert_eq!(b.try_get(199), Ok(199));
    assert_eq!(b.try_get(200), Ok(1));
    assert_eq!(b.try_get(201), Ok(201));
    let z = SeqLockArray::<()>::new(300);
    z.set(299, ());
    assert_eq!(z.to_vec().len(), 300);
}

/// Makes every copy a seqlock reader takes overlap a complete write, on any number of
/// CPUs and under any load (a peer thread bumping the sequence word only overlaps a copy
/// when both threads happen to run at once, which a loaded machine may never let happen).
///
/// The data lies on pages 1 and 2 of a 4-page mapping, the sequence word it is checked
/// against on page 0. Once armed, one of pages 1 and 2 is always inaccessible: touching
/// it raises SIGSEGV, whose handler adds 2 to the sequence word (a whole write, `seq`
/// stays even, so nobody sleeps on it) and swaps which page is closed; the access then
/// runs again. A copy reads the sequence word, then touches both pages, so it always sees
/// the word change. The handler passes other faults to the handler it replaced.
#[cfg(not(miri))]
mod overlap {
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

    /// Start of page 1, page size, the word to bump, the replaced handler.
    static BASE: AtomicUsize = AtomicUsize::new(0);
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    static SEQ: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());
    static OLD: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
    /// One `Pages` at a time per process (`cargo test` runs tests on threads).
    static IN_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Bumps the sequence word and swaps the closed page; see the module docs.
    extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SeqCst throughout: set up before arming, read in the handler of the same thread.
        let (base, page) = (BASE.load(Ordering::SeqCst), PAGE.load(Ordering::SeqCst));
        // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        if !(base..base + 2 * page).contains(&addr) {
            // SAFETY: `OLD` holds the action saved when arming (or null: no change); the
            // faulting access runs again under it.
            unsafe {
                libc::sigaction(
                    libc::SIGSEGV,
                    OLD.load(Ordering::SeqCst),
                    std::ptr::null_mut(),
                )
            };
            return;
        }
        let hit = (addr - base) / page;
        // SAFETY: `SEQ` points into the mapping, which outlives the armed period.
        unsafe { &*SEQ.load(Ordering::SeqCst) }.fetch_add(2, Ordering::SeqCst);
        let (open, close) = (base + hit * page, base + (1 - hit) * page);
        // SAFETY: both are whole pages of our own mapping; `mprotect` is
        // async-signal-safe.
        unsafe {
            libc::mprotect(close as *mut libc::c_void, page, libc::PROT_NONE);
            libc::mprotect(
                open as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
            );
        }
    }

    /// The 4-page mapping; disarms and unmaps on drop.
    pub struct Pages {
        base: NonNull<u8>,
        page: usize,
        armed: bool,
        _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    }

    impl Pages {
        pub fn new() -> Self {
            let guard = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: `sysconf` has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
            // SAFETY: a fresh anonymous mapping; no existing memory is affected.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4 * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(raw, libc::MAP_FAILED, "mmap");
            Pages {
                base: NonNull::new(raw.cast()).unwrap(),
                page,
                armed: false,
                _one_at_a_time: guard,
            }
        }

        pub fn page(&self) -> usize {
            self.page
        }

        /// The zeroed memory that starts `before` bytes ahead of page 1.
        pub fn ending_page_0(&self, before: usize) -> NonNull<u8> {
            assert!(before <= self.page);
            // SAFETY: inside page 0 of the mapping (or its end).
            unsafe { self.base.add(self.page - before) }
        }

        /// Closes page 1 and routes its faults (and page 2's) to bumps of `seq`, a word on
        /// page 0.
        pub fn arm(&mut self, seq: &AtomicU32) {
            let base = self.base.as_ptr() as usize;
            let seq_at = std::ptr::from_ref(seq) as usize;
            assert!(
                !(base + self.page..base + 3 * self.page).contains(&seq_at),
                "seq off pages 1 and 2"
            );
            BASE.store(base + self.page, Ordering::SeqCst);
            PAGE.store(self.page, Ordering::SeqCst);
            SEQ.store(std::ptr::from_ref(seq).cast_mut(), Ordering::SeqCst);
            // SAFETY: a zeroed `sigaction` is "no flags, empty mask"; the handler has the
            // SA_SIGINFO signature and only touches atomics and calls `mprotect` and
            // `sigaction` (async-signal-safe). The old action is saved (leaked, so it
            // outlives any handler that reads it) and put back by `Drop`.
            unsafe {
                let old = Box::into_raw(Box::new(std::mem::zeroed::<libc::sigaction>()));
                assert_eq!(libc::sigaction(libc::SIGSEGV, std::ptr::null(), old), 0);
                OLD.store(old, Ordering::SeqCst);
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_segv as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
                let p1 = self.base.as_ptr().add(self.page).cast();
                assert_eq!(libc::mprotect(p1, self.page, libc::PROT_NONE), 0);
            }
            self.armed = true;
        }
    }

    impl Drop for Pages {
        fn drop(&mut self) {
            // SAFETY: puts back the action saved by `arm`, then unmaps our own mapping;
            // nothing borrows it any more (borrows of it end before `self` is dropped).
            unsafe {
                if self.armed {
                    libc::sigaction(
                        libc::SIGSEGV,
                        OLD.load(Ordering::SeqCst),
                        std::ptr::null_mut(),
                    );
                }
                libc::munmap(self.base.as_ptr().cast(), 4 * self.page);
            }
        }
    }
}

/// Every copy overlaps a write (see `overlap`): timed reads give up with `Timeout` at their
/// deadline, not before, and never hand out the copy (`try_read`: `WriterActive`).
#[test]
#[cfg_attr(miri, ignore = "mprotect and signal handlers")]
fn read_timeout_gives_up_while_new_writes_keep_overlapping_the_copy() {
    #[cfg(not(miri))]
    {
        watchdog();
        type Big = [u64; 1024];
        let mut pages = overlap::Pages::new();
        // The seqlock's two words (and at most the first bytes of its data) on page 0, the
        // rest of the data on pages 1 and 2.
        let header = size_of::<SeqLock<Big>>() - size_of::<Big>();
        assert!(header <= 64 && size_of::<SeqLock<Big>>() >= 64 + pages.page());
        let ptr = pages.ending_page_0(64);
        // SAFETY: zeroed memory (a valid `SeqLock`, see `Shared`), 64-aligned, large
        // enough (pages 1..4 follow), alive until `pages` drops after the last use of `s`.
        let s: &SeqLock<Big> = unsafe { ptr.cast().as_ref() };
        assert_eq!(s.try_read(), Ok([0; 1024]));
        pages.arm(words(s).0);
        for timeout in [Duration::ZERO, Duration::from_millis(20)] {
            let start = std::time::Instant::now();
            assert_eq!(
                s.read_timeout(timeout).map(drop),
                Err(SeqLockError::Timeout),
                "read_timeout({timeout:?}) while the sequence kept changing"
            );
            assert!(start.elapsed() >= timeout);
        }
        assert_eq!(s.try_read().map(drop), Err(SeqLockError::WriterActive));
        drop(pages);
    }
}

/// The same for array snapshots: element 0's sequence word changes during every copy.
#[test]
#[cfg_attr(miri, ignore = "mprotect and signal handlers")]
fn snapshot_timeout_gives_up_while_new_writes_keep_overlapping_the_copy() {
    #[cfg(not(miri))]
    {
        watchdog();
        let mut pages = overlap::Pages::new();
        // The data fills pages 1 and 2; the stripe headers follow, on page 3.
        let len = 2 * pages.page() / 8;
        let ptr = pages.ending_page_0(0);
        let size = <SeqLockArray<u64> as Shared>::size_for(len).unwrap();
        assert!(size <= 3 * pages.page());
        // SAFETY: zeroed memory (a valid array, see `Shared`), page-aligned, `size` bytes
        // inside the mapping (pages 1 to 3), alive until `pages` drops after the last use
        // of `a`.
        let a: &SeqLockArray<u64> =
            unsafe { <SeqLockArray<u64> as Shared>::from_raw_parts(ptr, len).as_ref() };
        let mut out = vec![1; len];
        assert_eq!(a.try_snapshot(&mut out), Ok(()));
        pages.arm(a.stripe_words_for_test(0)[0]);
        for timeout in [Duration::ZERO, Duration::from_millis(20)] {
            let start = std::time::Instant::now();
            assert_eq!(
                a.snapshot_timeout(&mut out, timeout),
                Err(SeqLockError::Timeout),
                "snapshot_timeout({timeout:?}) while the sequence kept changing"
            );
            assert!(start.elapsed() >= timeout);
        }
        assert_eq!(a.try_snapshot(&mut out), Err(SeqLockError::WriterActive));
        drop(pages);
    }
}

#[test]
fn write_batch_timeout_gives_up_on_a_held_element_and_releases_the_locks_it_took() {
    watchdog();
    // Two stripes: element `e` is in the second.
    let s = SeqLockArray::<u32>::STRIPE_LEN;
    let e = s + 8;
    let a = SeqLockArray::from_slice(&vec![1u32; 2 * s]);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|sc| {
        let a = &a;
        sc.spawn(move || {
            let g = a.lock(e);
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            drop(g);
        });
        held_rx.recv().unwrap();
        let r = a.write_batch_timeout(Duration::from_millis(30), |v| v[0] = 100);
        assert!(matches!(r, Err(TimedLockError::Timeout)));
        // Stripe 0's lock, taken before the timeout, was released; nothing was written.
        assert!(a.lock_timeout(0, Duration::from_secs(5)).is_ok());
        assert_eq!(a.try_get(0), Ok(1));
        done_tx.send(()).unwrap();
    });
    assert!(
        a.write_batch_timeout(Duration::from_secs(5), |v| v[e] = 30)
            .is_ok()
    );
    let mut want = vec![1; 2 * s];
    want[e] = 30;
    assert_eq!(a.to_vec(), want);
}

#[test]
#[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
fn seqlocks_are_placed_in_a_region_by_name_and_found_again() {
    watchdog();
    let region = shmstate::Region::anonymous(1 << 16).unwrap();
    let pos = region
        .get_or_init::<SeqLock<[f64; 3]>>("pos", |s| s.write([1.0, 2.0, 3.0]))
        .unwrap();
    let arr = region
        .get_or_init_slice::<SeqLockArray<u16>>("arr", 5, |a| a.set_all(&[1, 2, 3, 4, 5]))
        .unwrap();
    pos.update(|p| p[0] = 10.0).unwrap();
    arr.set(4, 50);
    let again: &SeqLock<[f64; 3]> = region.get("pos").unwrap();
    assert_eq!(again.try_read(), Ok([10.0, 2.0, 3.0]));
    let again: &SeqLockArray<u16> = region.get("arr").unwrap();
    assert_eq!(again.to_vec(), [1, 2, 3, 4, 50]);
    // Another element type or a plain seqlock under the array's name is refused.
    assert!(region.get::<SeqLock<[f64; 3]>>("arr").is_err());
    assert!(region.get::<SeqLockArray<u32>>("arr").is_err());
    assert!(region.get::<SeqLock<[u8; 24]>>("pos").is_err());
}

/// A writer thread and a `try_read` thread: no contended lock and no sleeping reader, so
/// no liveness probe (`kill`) either; this is the torn-read check that also runs under
/// Miri (data-race detector, weak-memory emulation of the fences).
#[test]
fn one_writer_and_a_try_reader_never_see_torn_values() {
    watchdog();
    let (writes, reads) = if cfg!(miri) {
        (40, 100)
    } else {
        (20_000, 100_000)
    };
    let s = SeqLock::new([0u64; 5]);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for k in 1..=writes {
                s.write([k; 5]);
            }
        });
        let mut last = 0;
        for _ in 0..reads {
            match s.try_read() {
                Ok(v) => {
                    assert!(v.iter().all(|&w| w == v[0]), "torn: {v:?}");
                    assert!(v[0] >= last, "went backwards: {v:?} after {last}");
                    last = v[0];
                }
                Err(e) => assert_eq!(e, SeqLockError::WriterActive),
            }
        }
    });
    assert_eq!(s.try_read(), Ok([writes; 5]));
}

/// The same for array snapshots under a batch writer that keeps the sum constant.
#[test]
fn one_batch_writer_and_a_try_snapshotter_never_see_half_a_batch() {
    watchdog();
    let (batches, snapshots) = if cfg!(miri) {
        (20, 50)
    } else {
        (20_000, 50_000)
    };
    // Three elements in three stripes.
    let s = SeqLockArray::<u32>::STRIPE_LEN;
    let at = [0, s + 1, 3 * s - 1];
    let a = SeqLockArray::<u32>::new(3 * s);
    a.set(0, 100);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for k in 0..batches {
                let (from, to) = (at[k % 3], at[(k + 1) % 3]);
                a.write_batch(|v| {
                    let n = v[from].div_ceil(2);
                    v[from] -= n;
                    v[to] += n;
                })
                .expect("no writer died mid-write");
            }
        });
        let mut out = vec![0u32; 3 * s];
        for _ in 0..snapshots {
            match a.try_snapshot(&mut out) {
                Ok(()) => assert_eq!(out.iter().sum::<u32>(), 100, "half a batch: {out:?}"),
                Err(e) => assert_eq!(e, SeqLockError::WriterActive),
            }
        }
    });
    assert_eq!(a.to_vec().iter().sum::<u32>(), 100);
}

/// A peer that keeps waking the writer word must not put a waiter's probe off forever: a
/// writer lock held by a dead thread (a reaped child's TID, written as another process
/// would) is still taken over by an untimed `lock()` within a bound.
#[test]
#[cfg_attr(miri, ignore = "forks a process for a dead TID (Miri cannot fork)")]
fn a_peer_waking_the_writer_word_does_not_postpone_a_takeover() {
    watchdog();
    let m = SharedMem::<SeqLock<u64>>::new(1);
    let s = m.get();
    let dead = common::fork_children(1, |_| {})[0];
    common::wait_all(&[dead], Duration::from_secs(10));
    let (_, writer) = words(s);
    writer.store(dead as u32, Ordering::Relaxed);
    let stop = AtomicU32::new(0);
    std::thread::scope(|sc| {
        // Two spammers, so that one is always running on a 2-core machine.
        for _ in 0..2 {
            sc.spawn(|| {
                while stop.load(Ordering::Relaxed) == 0 {
                    shmstate::futex::wake_all(writer);
                }
            });
        }
        let start = std::time::Instant::now();
        let g = s.lock();
        let took = start.elapsed();
        stop.store(1, Ordering::Relaxed);
        drop(g);
        assert!(took < Duration::from_secs(1), "takeover took {took:?}");
    });
}

/// A thread holding an element guard of one stripe that locks an element of a lower
/// stripe while a batch writer waits for the first one: the batch holds no lock while it
/// waits, so neither wedges the other.
#[test]
fn a_waiting_batch_holds_no_stripe_lock_so_an_element_writer_never_wedges_on_it() {
    watchdog();
    let s = SeqLockArray::<u64>::STRIPE_LEN;
    let a = SeqLockArray::<u64>::new(6 * s);
    std::thread::scope(|sc| {
        let g = a.lock(5 * s).expect("no writer died mid-write");
        let batch = sc.spawn(|| {
            a.write_batch_timeout(Duration::from_secs(20), |v| v.fill(7))
                .is_ok()
        });
        // Wait until the batch is asleep on stripe 5's lock (it set the waiters bit).
        let writer = a.stripe_words_for_test(5)[1];
        while writer.load(shmstate::sync::Ordering::Relaxed) & (1 << 31) == 0 {
            std::thread::yield_now();
        }
        let other = a.lock_timeout(2 * s, Duration::from_secs(5));
        assert!(other.is_ok(), "wedged on a stripe the waiting batch holds");
        drop(other);
        drop(g);
        assert!(batch.join().unwrap());
    });
    assert_eq!(a.to_vec(), vec![7; 6 * s]);
}
