//! [`Value<T>`] for the integers `u8`…`u64` and `i8`…`i64`: the storage is the matching
//! std (or loom) atomic, and every operation forwards to it.

use super::{Value, ValueType, sealed};
use crate::shared::Elem;
use crate::sync::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering,
};

macro_rules! int_value {
    ($t:ident, $atomic:ident, $elem:ident, a = $a:literal, b = $b:literal, max = $max:literal) => {
        impl sealed::Storage for $t {
            type Atomic = $atomic;
            #[inline]
            fn new_atomic(v: Self) -> $atomic {
                $atomic::new(v)
            }
            #[inline]
            fn into_inner(a: $atomic) -> Self {
                a.into_inner()
            }
            #[inline]
            fn load(a: &$atomic, order: Ordering) -> Self {
                a.load(order)
            }
            #[inline]
            fn store(a: &$atomic, v: Self, order: Ordering) {
                a.store(v, order)
            }
            #[inline]
            fn swap(a: &$atomic, v: Self, order: Ordering) -> Self {
                a.swap(v, order)
            }
            #[inline]
            fn compare_exchange(
                a: &$atomic,
                current: Self,
                new: Self,
                success: Ordering,
                failure: Ordering,
            ) -> Result<Self, Self> {
                a.compare_exchange(current, new, success, failure)
            }
            #[inline]
            fn compare_exchange_weak(
                a: &$atomic,
                current: Self,
                new: Self,
                success: Ordering,
                failure: Ordering,
            ) -> Result<Self, Self> {
                a.compare_exchange_weak(current, new, success, failure)
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

        // SAFETY: (1) all-zero bytes are the integer 0; (2) every bit pattern is a valid
        // integer, and the storage is an atomic (an `UnsafeCell`), so writes by other
        // processes are writes the type expects; (3) no pointers, nothing to drop;
        // (4) `#[repr(transparent)]` over the atomic, size and alignment asserted above;
        // (5) atomics are `Sync` and every method is a single atomic operation or a
        // compare-and-swap loop on it. Not implemented under loom, whose atomics are not
        // plain memory.
        #[cfg(not(loom))]
        unsafe impl crate::shared::SharedSized for Value<$t> {
            const TAG: crate::shared::TypeTag =
                crate::shared::TypeTag::new(crate::shared::Kind::VALUE, Elem::$elem);
        }

        impl Value<$t> {
            #[doc = concat!(
                "Adds `v`, wrapping around at the bounds of `", stringify!($t), "`, and ",
                "returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($max), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_add(1, Relaxed), ", stringify!($max), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($t), "::MIN); // wrapped\n```",
            )]
            #[inline]
            pub fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_add(v, order)
            }

            #[doc = concat!(
                "Subtracts `v`, wrapping around at the bounds of `", stringify!($t), "`, ",
                "and returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_sub(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($a), " - ", stringify!($b), ");\n```",
            )]
            #[inline]
            pub fn fetch_sub(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_sub(v, order)
            }

            #[doc = concat!(
                "Bitwise \"and\" with `v`; returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_and(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($a), " & ", stringify!($b), ");\n```",
            )]
            #[inline]
            pub fn fetch_and(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_and(v, order)
            }

            #[doc = concat!(
                "Bitwise \"nand\" with `v` (stores `!(old & v)`); returns the previous ",
                "value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_nand(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), !(", stringify!($a), " & ", stringify!($b), "));\n```",
            )]
            #[inline]
            pub fn fetch_nand(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_nand(v, order)
            }

            #[doc = concat!(
                "Bitwise \"or\" with `v`; returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_or(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($a), " | ", stringify!($b), ");\n```",
            )]
            #[inline]
            pub fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_or(v, order)
            }

            #[doc = concat!(
                "Bitwise \"xor\" with `v`; returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_xor(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($a), " ^ ", stringify!($b), ");\n```",
            )]
            #[inline]
            pub fn fetch_xor(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_xor(v, order)
            }

            #[doc = concat!(
                "Stores the larger of the value and `v` (as `", stringify!($t), "`s); ",
                "returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($b), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_max(", stringify!($a), ", Relaxed), ", stringify!($b), ");\n",
                "assert_eq!(v.fetch_max(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($a), ");\n```",
            )]
            #[inline]
            pub fn fetch_max(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_max(v, order)
            }

            #[doc = concat!(
                "Stores the smaller of the value and `v` (as `", stringify!($t), "`s); ",
                "returns the previous value.\n\n",
                "# Examples\n\n```\n",
                "use shmstate::Value;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                "let v = Value::new(", stringify!($a), "_", stringify!($t), ");\n",
                "assert_eq!(v.fetch_min(", stringify!($b), ", Relaxed), ", stringify!($a), ");\n",
                "assert_eq!(v.fetch_min(", stringify!($a), ", Relaxed), ", stringify!($b), ");\n",
                "assert_eq!(v.load(Relaxed), ", stringify!($b), ");\n```",
            )]
            #[inline]
            pub fn fetch_min(&self, v: $t, order: Ordering) -> $t {
                self.atom.fetch_min(v, order)
            }
        }
    };
}

// `a` and `b` are sample operands for the examples (`a > b`), `max` the type's maximum.
int_value!(u8, AtomicU8, U8, a = 0b1100, b = 0b1010, max = 255);
int_value!(u16, AtomicU16, U16, a = 0b1100, b = 0b1010, max = 65535);
int_value!(
    u32,
    AtomicU32,
    U32,
    a = 0b1100,
    b = 0b1010,
    max = 4294967295
);
int_value!(
    u64,
    AtomicU64,
    U64,
    a = 0b1100,
    b = 0b1010,
    max = 18446744073709551615
);
int_value!(i8, AtomicI8, I8, a = 0b1100, b = -0b1010, max = 127);
int_value!(i16, AtomicI16, I16, a = 0b1100, b = -0b1010, max = 32767);
int_value!(
    i32,
    AtomicI32,
    I32,
    a = 0b1100,
    b = -0b1010,
    max = 2147483647
);
int_value!(
    i64,
    AtomicI64,
    I64,
    a = 0b1100,
    b = -0b1010,
    max = 9223372036854775807
);
