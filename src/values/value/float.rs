//! [`Value<f32>`] and [`Value<f64>`]: the bits in an unsigned atomic; arithmetic by
//! compare-and-swap on the bits.

use super::{RETRY_ORDER, Value, ValueType, sealed};
use crate::shared::Elem;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

macro_rules! float_value {
    ($t:ident, $atomic:ident, $elem:ident) => {
        impl sealed::Storage for $t {
            type Atomic = $atomic;
            #[inline]
            fn new_atomic(v: Self) -> $atomic {
                $atomic::new(v.to_bits())
            }
            #[inline]
            fn into_inner(a: $atomic) -> Self {
                $t::from_bits(a.into_inner())
            }
            #[inline]
            fn load(a: &$atomic, order: Ordering) -> Self {
                $t::from_bits(a.load(order))
            }
            #[inline]
            fn store(a: &$atomic, v: Self, order: Ordering) {
                a.store(v.to_bits(), order)
            }
            #[inline]
            fn swap(a: &$atomic, v: Self, order: Ordering) -> Self {
                $t::from_bits(a.swap(v.to_bits(), order))
            }
            #[inline]
            fn compare_exchange(
                a: &$atomic,
                current: Self,
                new: Self,
                success: Ordering,
                failure: Ordering,
            ) -> Result<Self, Self> {
                a.compare_exchange(current.to_bits(), new.to_bits(), success, failure)
                    .map($t::from_bits)
                    .map_err($t::from_bits)
            }
            #[inline]
            fn compare_exchange_weak(
                a: &$atomic,
                current: Self,
                new: Self,
                success: Ordering,
                failure: Ordering,
            ) -> Result<Self, Self> {
                a.compare_exchange_weak(current.to_bits(), new.to_bits(), success, failure)
                    .map($t::from_bits)
                    .map_err($t::from_bits)
            }
        }

        impl ValueType for $t {
            const VALUE_ELEM: Elem = Elem::$elem;
        }

        #[cfg(not(loom))]
        static_assertions::assert_eq_size!(Value<$t>, $t);
        #[cfg(not(loom))]
        static_assertions::const_assert_eq!(align_of::<Value<$t>>(), size_of::<$t>());
        #[cfg(not(loom))]
        static_assertions::const_assert_eq!(size_of::<$t>(), Elem::$elem.size as usize);

        // SAFETY: (1) all-zero bits are `+0.0`; (2) every bit pattern is some float
        // (possibly a NaN), stored in an unsigned atomic (an `UnsafeCell`); (3) no
        // pointers, nothing to drop; (4) `#[repr(transparent)]` over the atomic, size and
        // alignment asserted above; (5) atomics are `Sync`, every method is an atomic
        // operation or a CAS loop on it. Not implemented under loom, whose atomics are
        // not plain memory.
        #[cfg(not(loom))]
        unsafe impl crate::shared::SharedSized for Value<$t> {
            const TAG: crate::shared::TypeTag =
                crate::shared::TypeTag::new(crate::shared::Kind::VALUE, Elem::$elem);
        }

        impl Value<$t> {
            /// Replaces the value `old` by `f(old)` with a compare-and-swap loop on the bits
            /// and returns `old`. The retry compares the bits it found, so a stored NaN
            /// (which is not `==` to itself) cannot make it spin; it retries only when
            /// another writer changed the bits in between.
            #[inline]
            fn rmw(&self, order: Ordering, f: impl Fn($t) -> $t) -> $t {
                // Relaxed: the loaded bits are only a guess that the compare-exchange
                // validates; the successful compare-exchange carries `order`.
                let mut bits = self.atom.load(Ordering::Relaxed);
                loop {
                    let new = f($t::from_bits(bits)).to_bits();
                    match self
                        .atom
                        .compare_exchange_weak(bits, new, order, RETRY_ORDER)
                    {
                        Ok(b) => return $t::from_bits(b),
                        Err(b) => bits = b,
                    }
                }
            }

            #[doc = concat!(
                "Adds `v` and returns the previous value.\n\n",
                "The sum is `old + v` in IEEE 754 arithmetic, as `+` computes it: rounded, ",
                "NaN is sticky (`NaN + x` is NaN), `inf + -inf` is NaN, and `-0.0 + 0.0` is ",
                "`+0.0`. It is a compare-and-swap loop on the bits (there is no atomic ",
                "float add), so no concurrent update is lost and a stored NaN does not ",
                "make it spin.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(1.5_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_add(2.0, Relaxed), 1.5);\n",
                "assert_eq!(v.load(Relaxed), 3.5);\n",
                "v.store(", stringify!($t), "::NAN, Relaxed);\n",
                "v.fetch_add(1.0, Relaxed);\n",
                "assert!(v.load(Relaxed).is_nan());\n```",
            )]
            #[inline]
            pub fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                self.rmw(order, |old| old + v)
            }

            #[doc = concat!(
                "Subtracts `v` and returns the previous value: `old - v` in IEEE 754 ",
                "arithmetic, by a compare-and-swap loop on the bits, like ",
                "[`fetch_add`](Self::fetch_add).\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(1.5_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_sub(2.0, Relaxed), 1.5);\n",
                "assert_eq!(v.load(Relaxed), -0.5);\n```",
            )]
            #[inline]
            pub fn fetch_sub(&self, v: $t, order: Ordering) -> $t {
                self.rmw(order, |old| old - v)
            }

            #[doc = concat!(
                "Stores the maximum of the value and `v`; returns the previous value.\n\n",
                "NaN is ignored as by [`", stringify!($t), "::max`]: `fetch_max(NaN)` ",
                "leaves the value as it is, and a stored NaN is replaced by `v`. Unlike ",
                "`", stringify!($t), "::max`, which may return either zero, `-0.0` is ",
                "ordered below `+0.0` (IEEE 754-2019 `maximumNumber`), so the result is ",
                "the same on every platform. A compare-and-swap loop on the bits, like ",
                "[`fetch_add`](Self::fetch_add).\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(1.0_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_max(3.0, Relaxed), 1.0);\n",
                "v.fetch_max(", stringify!($t), "::NAN, Relaxed);\n",
                "assert_eq!(v.load(Relaxed), 3.0);\n",
                "let z = Value::new(-0.0_", stringify!($t), ");\n",
                "z.fetch_max(0.0, Relaxed);\n",
                "assert!(z.load(Relaxed).is_sign_positive());\n```",
            )]
            #[inline]
            pub fn fetch_max(&self, v: $t, order: Ordering) -> $t {
                self.rmw(order, |old| {
                    if old.is_nan() {
                        v
                    } else if v.is_nan() {
                        old
                    } else if old == v {
                        // Equal, or +0.0 and -0.0: the one with the positive sign is larger.
                        if old.is_sign_positive() { old } else { v }
                    } else {
                        old.max(v)
                    }
                })
            }

            #[doc = concat!(
                "Stores the minimum of the value and `v`; returns the previous value.\n\n",
                "NaN is ignored as by [`", stringify!($t), "::min`]: `fetch_min(NaN)` ",
                "leaves the value as it is, and a stored NaN is replaced by `v`. Unlike ",
                "`", stringify!($t), "::min`, which may return either zero, `-0.0` is ",
                "ordered below `+0.0` (IEEE 754-2019 `minimumNumber`). A compare-and-swap ",
                "loop on the bits, like [`fetch_add`](Self::fetch_add).\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(1.0_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_min(-3.0, Relaxed), 1.0);\n",
                "v.fetch_min(", stringify!($t), "::NAN, Relaxed);\n",
                "assert_eq!(v.load(Relaxed), -3.0);\n",
                "let z = Value::new(0.0_", stringify!($t), ");\n",
                "z.fetch_min(-0.0, Relaxed);\n",
                "assert!(z.load(Relaxed).is_sign_negative());\n```",
            )]
            #[inline]
            pub fn fetch_min(&self, v: $t, order: Ordering) -> $t {
                self.rmw(order, |old| {
                    if old.is_nan() {
                        v
                    } else if v.is_nan() {
                        old
                    } else if old == v {
                        // Equal, or +0.0 and -0.0: the one with the negative sign is smaller.
                        if old.is_sign_negative() { old } else { v }
                    } else {
                        old.min(v)
                    }
                })
            }
        }
    };
}

float_value!(f32, AtomicU32, F32);
float_value!(f64, AtomicU64, F64);
