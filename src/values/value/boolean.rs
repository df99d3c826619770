//! [`Value<bool>`]: a byte, where any non-zero byte is `true`.

use super::{RETRY_ORDER, Value, ValueType, sealed};
use crate::shared::Elem;
use crate::sync::{AtomicU8, Ordering};

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
    const VALUE_ELEM: Elem = Elem::BOOL;
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
