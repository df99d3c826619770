//! [`Value<T>`]: one atomic primitive value (an integer, a `bool` or a float) that can live
//! in shared memory.
//!
//! `Value<T>` is what the standard library's atomics offer, for the same types and with
//! the same method names, signatures and [`Ordering`] parameters, in a form that may be
//! placed in a region and shared between processes:
//!
//! | `T`                          | storage        | operations                                   |
//! |------------------------------|----------------|----------------------------------------------|
//! | `u8`…`u64`, `i8`…`i64`       | `AtomicU8`…    | all of std's: `fetch_add` … `fetch_min`       |
//! | `bool`                       | `AtomicU8`     | std's `AtomicBool` set, `fetch_and` … `fetch_not` |
//! | `f32`, `f64`                 | `AtomicU32/64` | bit-level CAS: `fetch_add`, `fetch_sub`, `fetch_max`, `fetch_min` |
//!
//! Every type also has [`new`](Value::new), [`load`](Value::load), [`store`](Value::store),
//! [`swap`](Value::swap), [`compare_exchange`](Value::compare_exchange),
//! [`compare_exchange_weak`](Value::compare_exchange_weak),
//! [`fetch_update`](Value::fetch_update) and [`into_inner`](Value::into_inner).
//!
//! # Layout and untrusted bytes
//!
//! `Value<T>` is `#[repr(transparent)]` over the storage atomic: it has exactly the size
//! and (natural) alignment of `T`, no padding, and all-zero bytes are `0`, `false` or
//! `+0.0`. Every bit pattern another process may write is a valid `Value<T>`:
//!
//! - `bool` is stored as a byte, and **any** non-zero byte reads as `true` (a `bool` in
//!   memory may only be 0 or 1, which is why this is not an `AtomicBool`). The `bool`
//!   operations are written so that a byte like `2` or `255` behaves exactly like `1`.
//! - Floats are stored as their bits; every bit pattern is some `f32`/`f64` (possibly a
//!   NaN).
//!
//! # Floats compare by bits
//!
//! There is no atomic float instruction: the float read-modify-write operations are
//! compare-and-swap loops on the bits, and [`compare_exchange`](Value::compare_exchange)
//! on a `Value<f64>` compares **bits**, not `==`. That differs from `==` in two places:
//!
//! - a NaN `current` matches a stored NaN with the same bits (`==` never matches NaN);
//! - `+0.0` and `-0.0` are different bit patterns (`==` says they are equal).
//!
//! Comparing bits is also what makes the loops terminate: a loop comparing with `==` would
//! spin forever once a NaN is stored.

use core::fmt;

use crate::shared::Elem;
use crate::sync::{AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32};
use crate::sync::{AtomicU64, Ordering};

mod sealed {
    use crate::sync::Ordering;

    /// The storage side of [`ValueType`](super::ValueType): which atomic holds a `T` and how
    /// `T` goes in and out of it. Private, so that no other crate can add a type whose
    /// storage might not be valid for every bit pattern.
    pub trait Storage: Sized {
        /// The atomic from `crate::sync` that holds the bits.
        type Atomic: Send + Sync;
        fn new_atomic(v: Self) -> Self::Atomic;
        fn into_inner(a: Self::Atomic) -> Self;
        fn load(a: &Self::Atomic, order: Ordering) -> Self;
        fn store(a: &Self::Atomic, v: Self, order: Ordering);
        fn swap(a: &Self::Atomic, v: Self, order: Ordering) -> Self;
        fn compare_exchange(
            a: &Self::Atomic,
            current: Self,
            new: Self,
            success: Ordering,
            failure: Ordering,
        ) -> Result<Self, Self>;
        fn compare_exchange_weak(
            a: &Self::Atomic,
            current: Self,
            new: Self,
            success: Ordering,
            failure: Ordering,
        ) -> Result<Self, Self>;
    }
}

use sealed::Storage;

/// A type that [`Value`] can hold: `u8`, `u16`, `u32`, `u64`, `i8`, `i16`, `i32`, `i64`,
/// `bool`, `f32` and `f64`.
///
/// The trait is sealed: it maps each type to the atomic of `crate::sync` that stores it and
/// to its [`Elem`] code, and only this crate can vouch that every bit pattern of that
/// storage is a valid value.
pub trait ValueType:
    sealed::Storage + Copy + Default + fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// The element code a region records for a `Value<Self>`.
    const ELEM: Elem;
}

/// One atomic value of type `T` (an integer, `bool`, `f32` or `f64`) that may be shared
/// between threads on the heap or between processes in a region.
///
/// The method names, signatures and [`Ordering`] rules are those of the matching standard
/// library atomic type; see the [module docs](self) for how `bool` and the floats are
/// stored, and how float comparisons differ from `==`.
///
/// # Examples
///
/// ```
/// use shmstate::Value;
/// use shmstate::sync::Ordering;
///
/// let hits = Value::new(0u64);
/// hits.fetch_add(3, Ordering::Relaxed);
/// assert_eq!(hits.load(Ordering::Relaxed), 3);
///
/// let ready = Value::new(false);
/// ready.store(true, Ordering::Release);
/// assert!(ready.load(Ordering::Acquire));
///
/// let total = Value::new(0.5f64);
/// total.fetch_add(1.0, Ordering::Relaxed);
/// assert_eq!(total.load(Ordering::Relaxed), 1.5);
/// ```
#[repr(transparent)]
pub struct Value<T: ValueType> {
    atom: <T as Storage>::Atomic,
}

impl<T: ValueType> Value<T> {
    /// A new value holding `v`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering;
    ///
    /// let v = Value::new(-7i32);
    /// assert_eq!(v.load(Ordering::Relaxed), -7);
    /// ```
    #[inline]
    pub fn new(v: T) -> Self {
        Value {
            atom: T::new_atomic(v),
        }
    }

    /// Consumes the value and returns what it holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    ///
    /// assert_eq!(Value::new(4u16).into_inner(), 4);
    /// ```
    #[inline]
    pub fn into_inner(self) -> T {
        T::into_inner(self.atom)
    }

    /// Loads the value.
    ///
    /// # Panics
    ///
    /// Panics if `order` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering;
    ///
    /// assert_eq!(Value::new(2.5f32).load(Ordering::Acquire), 2.5);
    /// ```
    #[inline]
    pub fn load(&self, order: Ordering) -> T {
        T::load(&self.atom, order)
    }

    /// Stores `v`.
    ///
    /// # Panics
    ///
    /// Panics if `order` is `Acquire` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering;
    ///
    /// let v = Value::new(0u8);
    /// v.store(9, Ordering::Release);
    /// assert_eq!(v.load(Ordering::Acquire), 9);
    /// ```
    #[inline]
    pub fn store(&self, v: T, order: Ordering) {
        T::store(&self.atom, v, order)
    }

    /// Stores `v` and returns the previous value, in one atomic step.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering;
    ///
    /// let v = Value::new(true);
    /// assert!(v.swap(false, Ordering::AcqRel));
    /// assert!(!v.load(Ordering::Relaxed));
    /// ```
    #[inline]
    pub fn swap(&self, v: T, order: Ordering) -> T {
        T::swap(&self.atom, v, order)
    }

    /// Stores `new` if the value is `current`, in one atomic step. Returns `Ok(previous)`
    /// on success, `Err(actual)` with the value found otherwise.
    ///
    /// `success` orders the read-modify-write when it happens, `failure` the load when it
    /// does not (as in std). For `bool`, any non-zero byte in memory counts as `true`.
    /// For `f32`/`f64` the comparison is **by bits**: a NaN `current` matches the same NaN
    /// bits, and `-0.0` does not match `+0.0` (see the [module docs](self)).
    ///
    /// # Panics
    ///
    /// Panics if `failure` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::{Acquire, Relaxed};
    ///
    /// let v = Value::new(5i64);
    /// assert_eq!(v.compare_exchange(5, 6, Acquire, Relaxed), Ok(5));
    /// assert_eq!(v.compare_exchange(5, 7, Acquire, Relaxed), Err(6));
    ///
    /// let f = Value::new(f64::NAN);
    /// assert!(f.compare_exchange(f64::NAN, 1.0, Acquire, Relaxed).is_ok()); // same bits
    /// let z = Value::new(0.0f64);
    /// assert!(z.compare_exchange(-0.0, 1.0, Acquire, Relaxed).is_err()); // other bits
    /// ```
    #[inline]
    pub fn compare_exchange(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        T::compare_exchange(&self.atom, current, new, success, failure)
    }

    /// Like [`compare_exchange`](Self::compare_exchange), but may fail even when the value
    /// is `current` (then it returns `Err(current)`), which can be faster in a retry loop.
    ///
    /// # Panics
    ///
    /// Panics if `failure` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::{AcqRel, Relaxed};
    ///
    /// let v = Value::new(1u32);
    /// let mut cur = v.load(Relaxed);
    /// while let Err(actual) = v.compare_exchange_weak(cur, cur * 10, AcqRel, Relaxed) {
    ///     cur = actual;
    /// }
    /// assert_eq!(v.load(Relaxed), 10);
    /// ```
    #[inline]
    pub fn compare_exchange_weak(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        T::compare_exchange_weak(&self.atom, current, new, success, failure)
    }

    /// Applies `f` to the value until it succeeds in storing the result, and returns
    /// `Ok(previous)`; or returns `Err(previous)` as soon as `f` returns `None`.
    ///
    /// `f` may run several times if other threads or processes change the value in the
    /// meantime, so it should have no side effects. `set_order` orders the successful
    /// store, `fetch_order` the loads (as in std). For floats the retry compares bits, so
    /// a stored NaN does not make it loop.
    ///
    /// # Panics
    ///
    /// Panics if `fetch_order` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(7u8);
    /// assert_eq!(v.fetch_update(Relaxed, Relaxed, |x| x.checked_mul(2)), Ok(7));
    /// assert_eq!(v.fetch_update(Relaxed, Relaxed, |x| x.checked_mul(20)), Err(14));
    /// assert_eq!(v.load(Relaxed), 14);
    /// ```
    #[inline]
    pub fn fetch_update<F>(
        &self,
        set_order: Ordering,
        fetch_order: Ordering,
        mut f: F,
    ) -> Result<T, T>
    where
        F: FnMut(T) -> Option<T>,
    {
        let mut prev = self.load(fetch_order);
        while let Some(next) = f(prev) {
            match self.compare_exchange_weak(prev, next, set_order, fetch_order) {
                Ok(p) => return Ok(p),
                Err(actual) => prev = actual,
            }
        }
        Err(prev)
    }
}

impl<T: ValueType> Default for Value<T> {
    /// A value holding `T::default()`: `0`, `false` or `+0.0`, the same as all-zero bytes.
    fn default() -> Self {
        Value::new(T::default())
    }
}

impl<T: ValueType> From<T> for Value<T> {
    fn from(v: T) -> Self {
        Value::new(v)
    }
}

impl<T: ValueType> fmt::Debug for Value<T> {
    /// Shows the current value (a `Relaxed` load, as std's atomics do).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
    }
}

/// The failure ordering of the compare-and-swap loops that implement a read-modify-write:
/// Relaxed, because a failed attempt only yields a new guess, which the next attempt
/// validates; the successful attempt carries the caller's ordering.
const RETRY_ORDER: Ordering = Ordering::Relaxed;

// ---------------------------------------------------------------------------------------
// Integers: the storage is the matching std/loom atomic, every operation forwards.
// ---------------------------------------------------------------------------------------

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
            const ELEM: Elem = Elem::$elem;
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

// ---------------------------------------------------------------------------------------
// bool: a byte, where any non-zero byte is `true`.
// ---------------------------------------------------------------------------------------

/// The byte written for `true`. Reads accept any non-zero byte; writes are canonical.
const TRUE_BYTE: u8 = 1;
/// The byte written for `false`, and the only byte that reads as `false`.
const FALSE_BYTE: u8 = 0;

/// The `bool` a stored byte means: anything but [`FALSE_BYTE`] is `true`.
#[inline]
fn byte_is_true(b: u8) -> bool {
    b != FALSE_BYTE
}

/// The canonical byte for `v`.
#[inline]
fn bool_byte(v: bool) -> u8 {
    if v { TRUE_BYTE } else { FALSE_BYTE }
}

impl sealed::Storage for bool {
    type Atomic = AtomicU8;
    #[inline]
    fn new_atomic(v: Self) -> AtomicU8 {
        AtomicU8::new(bool_byte(v))
    }
    #[inline]
    fn into_inner(a: AtomicU8) -> Self {
        byte_is_true(a.into_inner())
    }
    #[inline]
    fn load(a: &AtomicU8, order: Ordering) -> Self {
        byte_is_true(a.load(order))
    }
    #[inline]
    fn store(a: &AtomicU8, v: Self, order: Ordering) {
        a.store(bool_byte(v), order)
    }
    #[inline]
    fn swap(a: &AtomicU8, v: Self, order: Ordering) -> Self {
        byte_is_true(a.swap(bool_byte(v), order))
    }
    /// A byte compare-exchange that treats every non-zero byte as `current == true`: if
    /// the byte differs from the canonical one but means the same `bool` (a foreign `2`),
    /// retry with the byte actually found. It retries only when the byte changed between
    /// attempts, so it cannot spin on a byte that stays put.
    #[inline]
    fn compare_exchange(
        a: &AtomicU8,
        current: Self,
        new: Self,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self, Self> {
        let mut expected = bool_byte(current);
        loop {
            match a.compare_exchange(expected, bool_byte(new), success, failure) {
                Ok(b) => return Ok(byte_is_true(b)),
                Err(b) if byte_is_true(b) == current => expected = b,
                Err(b) => return Err(byte_is_true(b)),
            }
        }
    }
    /// As `compare_exchange`, with weak attempts. A failure that found the very byte it
    /// expected is a spurious one and is reported as such (`Err(current)`); a failure on a
    /// non-canonical byte meaning `current` retries with that byte, so a caller's retry
    /// loop cannot spin forever on a stored `2`.
    #[inline]
    fn compare_exchange_weak(
        a: &AtomicU8,
        current: Self,
        new: Self,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self, Self> {
        let mut expected = bool_byte(current);
        loop {
            match a.compare_exchange_weak(expected, bool_byte(new), success, failure) {
                Ok(b) => return Ok(byte_is_true(b)),
                Err(b) if b != expected && byte_is_true(b) == current => expected = b,
                Err(b) => return Err(byte_is_true(b)),
            }
        }
    }
}

impl ValueType for bool {
    const ELEM: Elem = Elem::BOOL;
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Value<bool>, u8);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Value<bool>, u8);

// SAFETY: (1) a zero byte is `false`; (2) every byte is valid: the storage is an `AtomicU8`
// (never a Rust `bool`) and any non-zero byte reads as `true`; (3) no pointers, nothing to
// drop; (4) `#[repr(transparent)]` over `AtomicU8`, size and alignment asserted above;
// (5) `AtomicU8` is `Sync`, every method is an atomic operation or a CAS loop on it. Not
// implemented under loom, whose atomics are not plain memory.
#[cfg(not(loom))]
unsafe impl crate::shared::SharedSized for Value<bool> {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::VALUE, Elem::BOOL);
}

impl Value<bool> {
    /// Applies `f` to the stored `bool` with a compare-and-swap loop on the byte, returning
    /// the previous `bool`. The retry compares the byte actually found, so a foreign
    /// non-canonical byte cannot make it spin; it retries only if the byte changed.
    #[inline]
    fn rmw(&self, order: Ordering, f: impl Fn(bool) -> bool) -> bool {
        // Relaxed: the loaded byte is only a guess that the compare-exchange validates;
        // the successful compare-exchange carries `order`.
        let mut byte = self.atom.load(Ordering::Relaxed);
        loop {
            let new = bool_byte(f(byte_is_true(byte)));
            match self
                .atom
                .compare_exchange_weak(byte, new, order, RETRY_ORDER)
            {
                Ok(b) => return byte_is_true(b),
                Err(b) => byte = b,
            }
        }
    }

    /// Logical "and" with `v`; returns the previous value.
    ///
    /// `fetch_and(false)` is one swap; `fetch_and(true)` changes nothing but is still a
    /// read-modify-write with ordering `order` (as std's).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(true);
    /// assert!(v.fetch_and(true, Relaxed));
    /// assert!(v.fetch_and(false, Relaxed));
    /// assert!(!v.load(Relaxed));
    /// ```
    #[inline]
    pub fn fetch_and(&self, v: bool, order: Ordering) -> bool {
        if v {
            // Leaves any byte as it is (a byte-wise `& 1` would turn a foreign `2` false).
            byte_is_true(self.atom.fetch_or(0, order))
        } else {
            byte_is_true(self.atom.swap(FALSE_BYTE, order))
        }
    }

    /// Logical "nand" with `v` (stores `!(old && v)`); returns the previous value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(true);
    /// assert!(v.fetch_nand(true, Relaxed));
    /// assert!(!v.load(Relaxed));
    /// assert!(!v.fetch_nand(true, Relaxed));
    /// assert!(v.load(Relaxed));
    /// ```
    #[inline]
    pub fn fetch_nand(&self, v: bool, order: Ordering) -> bool {
        if v {
            self.rmw(order, |old| !old)
        } else {
            byte_is_true(self.atom.swap(TRUE_BYTE, order))
        }
    }

    /// Logical "or" with `v`; returns the previous value.
    ///
    /// `fetch_or(true)` is one swap; `fetch_or(false)` changes nothing but is still a
    /// read-modify-write with ordering `order` (as std's).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(false);
    /// assert!(!v.fetch_or(false, Relaxed));
    /// assert!(!v.fetch_or(true, Relaxed));
    /// assert!(v.load(Relaxed));
    /// ```
    #[inline]
    pub fn fetch_or(&self, v: bool, order: Ordering) -> bool {
        if v {
            byte_is_true(self.atom.swap(TRUE_BYTE, order))
        } else {
            byte_is_true(self.atom.fetch_or(0, order))
        }
    }

    /// Logical "xor" with `v`; returns the previous value.
    ///
    /// `fetch_xor(true)` is a compare-and-swap loop rather than a byte-wise `^ 1`, which
    /// would turn a foreign `2` into `3`, still `true`. (On x86 a `fetch_xor` whose result
    /// is used compiles to such a loop anyway.)
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(true);
    /// assert!(v.fetch_xor(true, Relaxed));
    /// assert!(!v.load(Relaxed));
    /// ```
    #[inline]
    pub fn fetch_xor(&self, v: bool, order: Ordering) -> bool {
        if v {
            self.rmw(order, |old| !old)
        } else {
            byte_is_true(self.atom.fetch_or(0, order))
        }
    }

    /// Logical "not": flips the value and returns the previous one (std's
    /// `AtomicBool::fetch_not`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Value;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let v = Value::new(false);
    /// assert!(!v.fetch_not(Relaxed));
    /// assert!(v.load(Relaxed));
    /// ```
    #[inline]
    pub fn fetch_not(&self, order: Ordering) -> bool {
        self.fetch_xor(true, order)
    }
}

// ---------------------------------------------------------------------------------------
// Floats: the bits in an unsigned atomic; arithmetic by compare-and-swap on the bits.
// ---------------------------------------------------------------------------------------

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
            const ELEM: Elem = Elem::$elem;
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
