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
use crate::sync::Ordering;

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
    /// The element code a region records for a `Value<Self>` (for the numeric types, the same
    /// as [`Element::ELEM`](crate::Element); `bool`, which is not `Pod`, has its own).
    const VALUE_ELEM: Elem;
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

// The impls per kind of `T`: integers forward to the matching atomic; `bool` is a byte,
// any non-zero byte `true`; floats are their bits, with compare-and-swap arithmetic.
mod boolean;
mod float;
mod integer;
