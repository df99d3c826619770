//! `Value<T>` for the integer types behaves exactly like the matching std atomic: every
//! operation is checked against `std::sync::atomic` on the same operands, plus layout and
//! region tags.

use std::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed, Release, SeqCst};

mod common;

// Zeroed memory for the single-process tests: a `MAP_SHARED` mapping, or the heap under
// Miri (which cannot map it).
#[cfg(miri)]
use common::HeapMem as ZeroedMem;
#[cfg(not(miri))]
use common::SharedMem as ZeroedMem;

use shmstate::{Elem, Kind, Shared, TypeTag, Value, ValueType};

/// Runs `op` on a `Value` and on the std atomic, both starting at `a`, and checks that the
/// results and the values left behind agree.
macro_rules! same_as_std {
    ($std:ident, $a:expr, $b:expr, $op:ident $(, $extra:expr)*) => {{
        let v = Value::new($a);
        let s = std::sync::atomic::$std::new($a);
        assert_eq!(
            v.$op($b $(, $extra)*),
            s.$op($b $(, $extra)*),
            "{}({:?}, {:?})",
            stringify!($op),
            $a,
            $b
        );
        assert_eq!(v.load(SeqCst), s.load(SeqCst), "{} left", stringify!($op));
    }};
}

macro_rules! int_suite {
    ($($name:ident: $t:ident, $std:ident, $elem:ident;)*) => {$(
        #[test]
        fn $name() {
            let samples: [$t; 8] =
                [0, 1, 5, 12, $t::MAX, $t::MIN, $t::MAX / 3, $t::MAX - 1];
            for &a in &samples {
                for &b in &samples {
                    same_as_std!($std, a, b, fetch_add, AcqRel);
                    same_as_std!($std, a, b, fetch_sub, Release);
                    same_as_std!($std, a, b, fetch_and, Acquire);
                    same_as_std!($std, a, b, fetch_nand, SeqCst);
                    same_as_std!($std, a, b, fetch_or, Relaxed);
                    same_as_std!($std, a, b, fetch_xor, AcqRel);
                    same_as_std!($std, a, b, fetch_max, SeqCst);
                    same_as_std!($std, a, b, fetch_min, Relaxed);
                    same_as_std!($std, a, b, swap, AcqRel);
                    same_as_std!($std, a, a, compare_exchange, b, AcqRel, Acquire);
                    same_as_std!($std, a, b, compare_exchange, a, SeqCst, Relaxed);
                    same_as_std!($std, a, b.wrapping_add(1), compare_exchange, b, SeqCst, SeqCst);
                    same_as_std!($std, a, SeqCst, fetch_update, Relaxed, |x: $t| x.checked_add(b));
                    same_as_std!($std, a, Release, fetch_update, Acquire, |x: $t| x.checked_mul(b));

                    // A weak compare-exchange succeeds eventually when the value matches…
                    let v = Value::new(a);
                    while v.compare_exchange_weak(a, b, AcqRel, Relaxed).is_err() {}
                    assert_eq!(v.load(Relaxed), b);
                    // …and never when it does not.
                    if a != b {
                        assert_eq!(v.compare_exchange_weak(a, b, AcqRel, Relaxed), Err(b));
                    }

                    let v = Value::new(a);
                    v.store(b, Release);
                    assert_eq!(v.load(Acquire), b);
                    assert_eq!(v.into_inner(), b);
                }
                assert_eq!(Value::from(a).load(Relaxed), a);
                assert_eq!(format!("{:?}", Value::new(a)), format!("{:?}", a));
            }
            assert_eq!(Value::<$t>::default().load(Relaxed), 0);

            // Layout: exactly the integer's size, natural alignment, tagged as `Value<$t>`.
            assert_eq!(size_of::<Value<$t>>(), size_of::<$t>());
            assert_eq!(align_of::<Value<$t>>(), size_of::<$t>());
            assert_eq!(<$t as ValueType>::VALUE_ELEM, Elem::$elem);
            assert_eq!(<Value<$t> as Shared>::TAG, TypeTag::new(Kind::VALUE, Elem::$elem));
            assert_eq!(<Value<$t> as Shared>::size_for(1), Some(size_of::<$t>()));
            assert_eq!(<Value<$t> as Shared>::size_for(2), None);
            assert_eq!(<Value<$t> as Shared>::ALIGN, size_of::<$t>());
            assert_eq!(
                <Value<$t> as Shared>::TAG.to_string(),
                format!("Value<{}>", stringify!($t))
            );
        }
    )*};
}

int_suite! {
    u8_value_matches_std_atomic_for_every_operation: u8, AtomicU8, U8;
    u16_value_matches_std_atomic_for_every_operation: u16, AtomicU16, U16;
    u32_value_matches_std_atomic_for_every_operation: u32, AtomicU32, U32;
    u64_value_matches_std_atomic_for_every_operation: u64, AtomicU64, U64;
    i8_value_matches_std_atomic_for_every_operation: i8, AtomicI8, I8;
    i16_value_matches_std_atomic_for_every_operation: i16, AtomicI16, I16;
    i32_value_matches_std_atomic_for_every_operation: i32, AtomicI32, I32;
    i64_value_matches_std_atomic_for_every_operation: i64, AtomicI64, I64;
}

/// Orderings std rejects for a load are rejected the same way.
#[test]
#[should_panic]
fn load_with_release_ordering_panics_like_std() {
    let _ = Value::new(1u32).load(Ordering::Release);
}

/// A zeroed mapping (a fresh region object) reads as 0, and threads share it.
#[test]
fn zeroed_shared_value_reads_zero_and_counts_across_threads() {
    let mem = ZeroedMem::<Value<i64>>::new(1);
    let v = mem.get();
    assert_eq!(v.load(Relaxed), 0);
    // Fewer under Miri, which interprets every step.
    const PER_THREAD: i64 = if cfg!(miri) { 100 } else { 10_000 };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    v.fetch_sub(1, Relaxed);
                }
            });
        }
    });
    assert_eq!(v.load(Relaxed), -4 * PER_THREAD);
}
