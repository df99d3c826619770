//! `ValueArray<T>`: per-element operations, bounds, placement in a region (type identity,
//! zero length), and exact per-element totals under real multi-process contention.
//!
//! Run under `cargo nextest` (one process per test): the forking tests must not share
//! their process with other test threads.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use shmstate::sync::Ordering::{AcqRel, Acquire, Relaxed, Release};
use shmstate::{
    Elem, Kind, Region, Shared, StripedCounter, TypeTag, Value, ValueArray, region::GetError,
};

const PROCS: usize = 4;
const PER_PROC: u64 = 500_000;
const LIMIT: Duration = Duration::from_secs(120);

fn region() -> Region {
    Region::anonymous(1 << 16).expect("anonymous region")
}

/// Every integer read-modify-write acts on its element only, with `Value`'s result.
#[test]
fn integer_operations_touch_only_their_element() {
    let a = ValueArray::from_slice(&[0b1100u32, 7, 7, 7]);
    assert_eq!(a.fetch_add(1, 3, Relaxed), 7);
    assert_eq!(a.fetch_sub(2, 2, Relaxed), 7);
    assert_eq!(a.fetch_and(0, 0b1010, Relaxed), 0b1100);
    assert_eq!(a.load_all(Relaxed), [0b1000, 10, 5, 7]);
    assert_eq!(a.fetch_or(0, 0b0011, Relaxed), 0b1000);
    assert_eq!(a.fetch_xor(0, 0b1111, Relaxed), 0b1011);
    assert_eq!(a.fetch_nand(3, 0b0101, Relaxed), 7);
    assert_eq!(a.load_all(Relaxed), [0b0100, 10, 5, !0b0101]);
    assert_eq!(a.fetch_max(1, 12, Relaxed), 10);
    assert_eq!(a.fetch_max(1, 3, Relaxed), 12);
    assert_eq!(a.fetch_min(2, 1, Relaxed), 5);
    assert_eq!(a.fetch_min(2, 9, Relaxed), 1);
    assert_eq!(a.load_all(Relaxed), [0b0100, 12, 1, !0b0101]);

    // Wrapping, as `Value` (and std) do.
    let s = ValueArray::from_slice(&[i8::MAX, i8::MIN]);
    assert_eq!(s.fetch_add(0, 1, Relaxed), i8::MAX);
    assert_eq!(s.fetch_sub(1, 1, Relaxed), i8::MIN);
    assert_eq!(s.load_all(Relaxed), [i8::MIN, i8::MAX]);
}

/// The generic operations: load, store, swap, both compare-exchanges, fetch_update.
#[test]
fn generic_operations_touch_only_their_element() {
    let a = ValueArray::<i64>::new(3);
    a.store(1, -5, Release);
    assert_eq!(a.load(1, Acquire), -5);
    assert_eq!(a.swap(2, 9, AcqRel), 0);
    assert_eq!(a.compare_exchange(1, -5, 4, AcqRel, Acquire), Ok(-5));
    assert_eq!(a.compare_exchange(1, -5, 6, AcqRel, Acquire), Err(4));
    let mut cur = a.load(0, Relaxed);
    while let Err(actual) = a.compare_exchange_weak(0, cur, cur + 100, Relaxed, Relaxed) {
        cur = actual;
    }
    assert_eq!(a.fetch_update(2, Relaxed, Relaxed, |x| Some(x * 2)), Ok(9));
    assert_eq!(a.fetch_update(2, Relaxed, Relaxed, |_| None), Err(18));
    assert_eq!(a.load_all(Relaxed), [100, 4, 18]);
}

/// Floats: arithmetic and max/min by compare-and-swap, compare-exchange by bits.
#[test]
fn float_operations_touch_only_their_element() {
    let a = ValueArray::from_slice(&[1.5f64, 0.0, f64::NAN]);
    assert_eq!(a.fetch_add(0, 2.0, Relaxed), 1.5);
    assert_eq!(a.fetch_sub(1, 0.25, Relaxed), 0.0);
    assert_eq!(a.fetch_max(0, 10.0, Relaxed), 3.5);
    assert_eq!(a.fetch_min(1, -1.0, Relaxed), -0.25);
    assert!(
        a.compare_exchange(2, f64::NAN, 7.0, Relaxed, Relaxed)
            .is_ok()
    );
    assert!(
        a.compare_exchange(1, 1.0, 2.0, Relaxed, Relaxed).is_err(),
        "-1.0 is not 1.0"
    );
    assert_eq!(a.load_all(Relaxed), [10.0, -1.0, 7.0]);

    let f = ValueArray::<f32>::new(2);
    assert!(
        f.compare_exchange(0, -0.0, 1.0, Relaxed, Relaxed).is_err(),
        "bits: -0.0 is not +0.0"
    );
    f.fetch_add(1, 0.5, Relaxed);
    assert_eq!(f.load_all(Relaxed), [0.0, 0.5]);
}

#[test]
fn bool_operations_touch_only_their_element() {
    let a = ValueArray::from_slice(&[true, false, true, false]);
    assert!(a.fetch_and(0, false, Relaxed));
    assert!(!a.fetch_or(1, true, Relaxed));
    assert!(a.fetch_xor(2, true, Relaxed));
    assert!(!a.fetch_nand(3, true, Relaxed));
    assert_eq!(a.load_all(Relaxed), [false, true, false, true]);
    assert!(!a.fetch_not(0, Relaxed));
    assert_eq!(a.load_all(Relaxed), [true, true, false, true]);
}

/// The array is a slice of `Value<T>`: indexing, `get`, `iter`, `for` loops, `len`.
#[test]
fn the_array_is_a_slice_of_values() {
    let a = ValueArray::from_slice(&[1u16, 2, 3]);
    let second: &Value<u16> = &a[1];
    second.fetch_add(10, Relaxed);
    assert_eq!(a.load(1, Relaxed), 12);
    assert_eq!(a.len(), 3);
    assert!(!a.is_empty());
    assert_eq!(a.get(2).map(|v| v.load(Relaxed)), Some(3));
    assert!(a.get(3).is_none());
    let mut sum = 0;
    for v in &*a {
        sum += v.load(Relaxed);
    }
    assert_eq!(sum, 16);
    assert_eq!(a.iter().map(|v| v.load(Relaxed)).max(), Some(12));
    assert_eq!(format!("{a:?}"), "[1, 12, 3]");
    assert!(
        ValueArray::<u8>::new(0).is_empty(),
        "empty arrays exist on the heap"
    );
}

#[test]
fn load_into_copies_every_element() {
    let a = ValueArray::from_slice(&[3u8, 1, 4, 1, 5]);
    let mut buf = [0u8; 5];
    a.load_into(&mut buf, Acquire);
    assert_eq!(buf, [3, 1, 4, 1, 5]);
}

#[test]
#[should_panic(expected = "the len is 4 but the index is 4")]
fn load_past_the_end_panics() {
    ValueArray::<u64>::new(4).load(4, Relaxed);
}

#[test]
#[should_panic(expected = "the len is 2 but the index is 7")]
fn fetch_add_past_the_end_panics() {
    ValueArray::<u64>::new(2).fetch_add(7, 1, Relaxed);
}

#[test]
#[should_panic(expected = "the len is 1 but the index is 1")]
fn compare_exchange_past_the_end_panics() {
    let _ = ValueArray::<bool>::new(1).compare_exchange(1, false, true, Relaxed, Relaxed);
}

#[test]
#[should_panic(expected = "buffer's length differs")]
fn load_into_a_buffer_of_another_length_panics() {
    ValueArray::<u64>::new(3).load_into(&mut [0; 2], Relaxed);
}

/// An out-of-range index is reported at the caller's line, as slice indexing is, not
/// inside the crate.
#[test]
fn an_out_of_range_panic_points_at_the_caller() {
    let a = ValueArray::<u32>::new(1);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let hook_seen = seen.clone();
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        *hook_seen.lock().unwrap() = info.location().map(|l| l.file().to_owned());
    }));
    let r = catch_unwind(AssertUnwindSafe(|| a.fetch_sub(5, 1, Relaxed)));
    std::panic::set_hook(old);
    assert!(r.is_err());
    let file = seen.lock().unwrap().clone().expect("a location");
    assert!(file.ends_with("value_array.rs"), "panic located in {file}");
    // Nothing was changed by the refused call.
    assert_eq!(a.load(0, Relaxed), 0);
}

#[test]
fn region_places_and_reopens_an_array_of_the_chosen_length() {
    let r = region();
    let a = r
        .get_or_init_slice::<ValueArray<u64>>("buckets", 10, |a| a.store(9, 1, Relaxed))
        .unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!(a.load_all(Relaxed), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    a.fetch_add(3, 5, Relaxed);
    let again = r.get::<ValueArray<u64>>("buckets").unwrap();
    assert_eq!(again.len(), 10);
    assert_eq!(again.load(3, Relaxed), 5);
    assert_eq!(r.offset_of(again), r.offset_of(a), "the same object");
    assert_eq!(
        <ValueArray<u64> as Shared>::TAG,
        TypeTag::new(Kind::VALUE_ARRAY, Elem::U64)
    );
}

#[test]
fn region_refuses_an_empty_array() {
    let r = region();
    assert!(matches!(
        r.get_or_default_slice::<ValueArray<u32>>("empty", 0),
        Err(GetError::InvalidLength { len: 0, .. })
    ));
}

/// A `ValueArray<u64>` is never handed out as another type of the same bytes.
#[test]
fn region_refuses_a_value_array_as_another_type() {
    let r = region();
    r.get_or_default_slice::<ValueArray<u64>>("counts", 1)
        .unwrap();
    let is_mismatch = |e: GetError| matches!(e, GetError::TypeMismatch { .. });
    assert!(is_mismatch(r.get::<ValueArray<i64>>("counts").unwrap_err()));
    assert!(is_mismatch(r.get::<ValueArray<f64>>("counts").unwrap_err()));
    assert!(is_mismatch(r.get::<StripedCounter>("counts").unwrap_err()));
    assert!(is_mismatch(r.get::<Value<u64>>("counts").unwrap_err()));
    // And the other way round: a `Value<u64>` is not a one-element array.
    r.get_or_default::<Value<u64>>("one").unwrap();
    assert!(is_mismatch(r.get::<ValueArray<u64>>("one").unwrap_err()));
}

/// A length other than the recorded one is refused, not truncated or extended.
#[test]
fn region_refuses_another_length_for_an_existing_array() {
    let r = region();
    r.get_or_default_slice::<ValueArray<u8>>("flags", 4)
        .unwrap();
    assert!(matches!(
        r.get_or_default_slice::<ValueArray<u8>>("flags", 5),
        Err(GetError::TypeMismatch { .. })
    ));
    assert_eq!(r.get::<ValueArray<u8>>("flags").unwrap().len(), 4);
}

/// Foreign bytes in the region are values, never undefined behaviour or a hang: a `bool`
/// byte of 2 is `true`, any float bits are some float.
#[test]
fn foreign_bytes_are_valid_elements() {
    let r = region();
    let bytes = r.get_or_default_slice::<ValueArray<u8>>("raw", 16).unwrap();
    bytes.iter().for_each(|b| b.store(2, Relaxed));
    let base = std::ptr::NonNull::from(bytes).cast::<u8>();
    let flags = <ValueArray<bool> as Shared>::from_raw_parts(base, 16);
    let floats = <ValueArray<f64> as Shared>::from_raw_parts(base, 2);
    // SAFETY: both cover the 16 bytes of `raw` (live as long as `r`), which are atomics
    // (interior mutability) valid for every bit pattern; only shared references are made.
    let (flags, floats) = unsafe { (flags.as_ref(), floats.as_ref()) };
    assert!(flags.load(0, Relaxed));
    assert!(flags.fetch_and(1, true, Relaxed));
    assert!(flags.load(1, Relaxed));
    assert!(flags.fetch_not(2, Relaxed), "a byte of 2 was true");
    assert!(!flags.load(2, Relaxed));
    let x = floats.load(1, Relaxed);
    assert_eq!(floats.fetch_add(1, 1.0, Relaxed).to_bits(), x.to_bits());
}

/// Forked processes each add into every element: the per-element totals are exact (no
/// update lost, none landing in another element).
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn fetch_add_is_exact_per_element_across_processes() {
    const LEN: usize = 5;
    common::watchdog(LIMIT + Duration::from_secs(10));
    let r = region();
    let a = r
        .get_or_default_slice::<ValueArray<u64>>("buckets", LEN)
        .unwrap();
    // Child `c` adds `c + 1` to element `k % LEN` at step `k`; elements get different
    // totals, so an add into the wrong element shows too.
    let pids = common::fork_children(PROCS, |c| {
        for k in 0..PER_PROC {
            a.fetch_add(k as usize % LEN, c as u64 + 1, Relaxed);
        }
    });
    common::wait_all(&pids, LIMIT);
    let weight: u64 = (1..=PROCS as u64).sum();
    let expected: Vec<u64> = (0..LEN as u64)
        .map(|j| weight * (0..PER_PROC).filter(|k| k % LEN as u64 == j).count() as u64)
        .collect();
    assert_eq!(a.load_all(Relaxed), expected);
}

/// The same for floats, whose add is a compare-and-swap loop: all on one element, next to
/// an element that a second set of processes adds to.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn float_fetch_add_is_exact_per_element_across_processes() {
    common::watchdog(LIMIT + Duration::from_secs(10));
    let r = region();
    let a = r
        .get_or_default_slice::<ValueArray<f64>>("sums", 2)
        .unwrap();
    let n = PER_PROC / 2;
    let pids = common::fork_children(PROCS, |c| {
        for _ in 0..n {
            a.fetch_add(c % 2, 1.0, Relaxed);
        }
    });
    common::wait_all(&pids, LIMIT);
    // Every integer up to 2^53 is exact in f64, so any lost update would show.
    let per_elem = (PROCS as u64 / 2 * n) as f64;
    assert_eq!(a.load_all(Relaxed), [per_elem, per_elem]);
}
