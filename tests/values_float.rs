//! `Value<f32>` and `Value<f64>`: bits in an unsigned atomic, compared by bits, with
//! arithmetic by compare-and-swap; NaN and signed zero behave as documented.

mod common;

// Zeroed memory for the single-process tests: a `MAP_SHARED` mapping, or the heap under
// Miri (which cannot map it).
#[cfg(miri)]
use common::HeapMem as ZeroedMem;
#[cfg(not(miri))]
use common::SharedMem as ZeroedMem;

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use shmstate::{Elem, Kind, Shared, TypeTag, Value};

macro_rules! float_suite {
    ($($name:ident: $t:ident, $elem:ident;)*) => {$(
        mod $name {
            use super::*;

            const SAMPLES: [$t; 9] = [
                0.0, -0.0, 1.5, -2.25, $t::MAX, $t::MIN_POSITIVE, $t::INFINITY,
                $t::NEG_INFINITY, 1e-3,
            ];

            fn bits_eq(a: $t, b: $t) -> bool {
                a.to_bits() == b.to_bits()
            }

            /// The same result of arithmetic: equal bits, or both NaN (Rust leaves the sign
            /// and payload of a NaN that an operation produces unspecified, and Miri picks
            /// them at random).
            fn same_result(a: $t, b: $t) -> bool {
                bits_eq(a, b) || (a.is_nan() && b.is_nan())
            }

            #[test]
            fn arithmetic_matches_plain_float_arithmetic() {
                for a in SAMPLES {
                    for b in SAMPLES {
                        let v = Value::new(a);
                        assert!(bits_eq(v.fetch_add(b, AcqRel), a));
                        assert!(same_result(v.load(Relaxed), a + b), "{a} + {b}");
                        let v = Value::new(a);
                        assert!(bits_eq(v.fetch_sub(b, SeqCst), a));
                        assert!(same_result(v.load(Relaxed), a - b), "{a} - {b}");
                        let v = Value::new(a);
                        assert!(bits_eq(v.fetch_max(b, Release), a));
                        if a != b {
                            assert!(bits_eq(v.load(Relaxed), a.max(b)), "max({a}, {b})");
                        }
                        let v = Value::new(a);
                        assert!(bits_eq(v.fetch_min(b, Acquire), a));
                        if a != b {
                            assert!(bits_eq(v.load(Relaxed), a.min(b)), "min({a}, {b})");
                        }
                        let v = Value::new(a);
                        assert!(bits_eq(v.swap(b, AcqRel), a));
                        assert!(bits_eq(v.into_inner(), b));
                        let v = Value::new(a);
                        let r = v.fetch_update(AcqRel, Acquire, |x| Some(x * 2.0 + b));
                        assert!(bits_eq(r.unwrap(), a));
                        assert!(same_result(v.load(Relaxed), a * 2.0 + b));
                    }
                    assert_eq!(format!("{:?}", Value::new(a)), format!("{a:?}"));
                    assert_eq!(Value::from(a).load(Relaxed).to_bits(), a.to_bits());
                }
                assert!(bits_eq(Value::<$t>::default().load(Relaxed), 0.0));
            }

            #[test]
            fn every_bit_pattern_round_trips_including_nan_payloads() {
                let patterns = [0, 1, !0, 0x5555_5555, $t::NAN.to_bits() | 1, $t::NAN.to_bits()];
                for p in patterns {
                    let v = Value::new($t::from_bits(p as _));
                    assert_eq!(v.load(Relaxed).to_bits(), p as _);
                    v.store($t::from_bits(p as _), Relaxed);
                    assert_eq!(v.swap(0.0, Relaxed).to_bits(), p as _);
                }
            }

            #[test]
            fn compare_exchange_compares_bits_not_values() {
                // NaN is not == NaN, but the same NaN bits match.
                let v = Value::new($t::NAN);
                assert!(v.compare_exchange($t::NAN, 1.0, AcqRel, Acquire).is_ok());
                // A NaN with other bits does not match.
                let v = Value::new($t::NAN);
                let other_nan = $t::from_bits($t::NAN.to_bits() | 1);
                assert!(other_nan.is_nan());
                assert!(v.compare_exchange(other_nan, 1.0, AcqRel, Acquire).unwrap_err().is_nan());
                // +0.0 == -0.0, but their bits differ.
                let v = Value::new(0.0 as $t);
                let e = v.compare_exchange(-0.0, 1.0, AcqRel, Acquire).unwrap_err();
                assert!(e == 0.0 && e.is_sign_positive());
                let v = Value::new(-0.0 as $t);
                assert!(v.compare_exchange(-0.0, 1.0, AcqRel, Acquire).is_ok());
                // The weak form likewise.
                // (Bounded: a comparison by `==` would fail on NaN forever.)
                let v = Value::new($t::NAN);
                let mut tries = 0;
                while v.compare_exchange_weak($t::NAN, 2.0, AcqRel, Relaxed).is_err() {
                    tries += 1;
                    assert!(tries < 1000, "weak CAS keeps failing on the same NaN bits");
                }
                assert_eq!(v.load(Relaxed), 2.0);
                let v = Value::new(0.0 as $t);
                assert!(v.compare_exchange_weak(-0.0, 1.0, AcqRel, Relaxed).is_err());
            }

            #[test]
            fn nan_is_sticky_in_add_and_ignored_by_max_and_min() {
                let v = Value::new($t::NAN);
                assert!(v.fetch_add(1.0, Relaxed).is_nan()); // terminates despite NaN != NaN
                assert!(v.load(Relaxed).is_nan());
                let v = Value::new($t::INFINITY);
                v.fetch_add($t::NEG_INFINITY, Relaxed);
                assert!(v.load(Relaxed).is_nan());
                let v = Value::new(1.0 as $t);
                v.fetch_sub($t::NAN, Relaxed);
                assert!(v.load(Relaxed).is_nan());

                // max/min: a NaN operand leaves the value, a stored NaN is replaced.
                let v = Value::new(2.0 as $t);
                assert_eq!(v.fetch_max($t::NAN, Relaxed), 2.0);
                assert_eq!(v.fetch_min($t::NAN, Relaxed), 2.0);
                assert_eq!(v.load(Relaxed), 2.0);
                let v = Value::new($t::NAN);
                assert!(v.fetch_max(-5.0, Relaxed).is_nan());
                assert_eq!(v.load(Relaxed), -5.0);
                let v = Value::new($t::NAN);
                assert!(v.fetch_min(7.0, Relaxed).is_nan());
                assert_eq!(v.load(Relaxed), 7.0);
                let v = Value::new($t::NAN);
                assert!(v.fetch_max($t::NAN, Relaxed).is_nan());
                assert!(v.load(Relaxed).is_nan());
            }

            #[test]
            fn signed_zeros_order_negative_below_positive() {
                for (a, b) in [(0.0 as $t, -0.0 as $t), (-0.0, 0.0), (0.0, 0.0), (-0.0, -0.0)] {
                    let v = Value::new(a);
                    v.fetch_max(b, Relaxed);
                    let max = v.load(Relaxed);
                    assert_eq!(max.is_sign_positive(), a.is_sign_positive() || b.is_sign_positive());
                    let v = Value::new(a);
                    v.fetch_min(b, Relaxed);
                    let min = v.load(Relaxed);
                    assert_eq!(min.is_sign_negative(), a.is_sign_negative() || b.is_sign_negative());
                }
                // Addition follows IEEE: -0 + +0 = +0, -0 + -0 = -0.
                let v = Value::new(-0.0 as $t);
                v.fetch_add(0.0, Relaxed);
                assert!(v.load(Relaxed).is_sign_positive());
                let v = Value::new(-0.0 as $t);
                v.fetch_add(-0.0, Relaxed);
                assert!(v.load(Relaxed).is_sign_negative());
            }

            #[test]
            fn layout_and_tag() {
                assert_eq!(size_of::<Value<$t>>(), size_of::<$t>());
                assert_eq!(align_of::<Value<$t>>(), size_of::<$t>());
                assert_eq!(<Value<$t> as Shared>::TAG, TypeTag::new(Kind::VALUE, Elem::$elem));
                assert_eq!(<Value<$t> as Shared>::size_for(1), Some(size_of::<$t>()));
                let mem = ZeroedMem::<Value<$t>>::new(1);
                assert!(bits_eq(mem.get().load(Relaxed), 0.0), "zeroed memory is +0.0");
            }
        }
    )*};
}

float_suite! {
    f32_value: f32, F32;
    f64_value: f64, F64;
}

/// Threads adding 1.0 concurrently through the CAS loop lose nothing.
#[test]
fn concurrent_float_adds_lose_nothing() {
    // Fewer under Miri, which interprets every step.
    const PER_THREAD: u32 = if cfg!(miri) { 200 } else { 50_000 };
    let v = Value::new(0.0f64);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..PER_THREAD {
                    v.fetch_add(1.0, Relaxed);
                }
            });
        }
    });
    assert_eq!(v.load(Relaxed), f64::from(4 * PER_THREAD));
}
