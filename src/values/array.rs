//! [`ValueArray<T>`]: a fixed-length array of atomic values (an array of counters,
//! per-CPU or per-bucket statistics, a table of flags) that can live in shared memory.
//!
//! A `ValueArray<T>` **is** a slice of [`Value<T>`]: it dereferences to `[Value<T>]`, so
//! `arr[i]` is a [`Value<T>`] with all of its methods, and std's slice API gives the rest
//! ([`len`](slice::len), [`iter`](slice::iter), [`get`](slice::get), [`chunks`](slice::chunks),
//! ...). On top of that it has the per-element operations with the index first
//! (`arr.fetch_add(i, 1, Relaxed)` is `arr[i].fetch_add(1, Relaxed)`), and a copy of all
//! elements out into a buffer ([`load_into`](ValueArray::load_into),
//! [`load_all`](ValueArray::load_all)).
//!
//! It is what Python's `multiprocessing.Array('q', n)` is used for as an array of
//! counters, without its costs: there, `a[i] += 1` is exact only inside `a.get_lock()`, a
//! semaphore round trip per increment that serialises every element behind one lock;
//! here each element is its own atomic and an increment is one atomic instruction.
//!
//! # Indices
//!
//! An index out of range panics, like slice indexing, with std's message ("index out of
//! bounds: the len is 4 but the index is 9"), reported at the caller's line. The checked
//! form is the slice's [`get`](slice::get): `arr.get(i)` is `Option<&Value<T>>`.
//!
//! # Copying out is not a snapshot
//!
//! [`load_into`](ValueArray::load_into) and [`load_all`](ValueArray::load_all) read the
//! elements one after another, each atomically (never a torn element), but the whole is
//! not one moment's state: while writers run, element 0 may be read before an update
//! that element 5 already shows. For a consistent copy of several elements, use a
//! [`SeqLockArray`](crate::SeqLockArray) (consistent snapshots and all-or-nothing batch
//! writes, at the price of a sequence word per element and retries under writes).
//!
//! # Layout
//!
//! `#[repr(transparent)]` over `[Value<T>]`, and `Value<T>` is `#[repr(transparent)]`
//! over its atomic: element `i` is at byte `i * size_of::<T>()`, with no padding anywhere
//! and all-zero bytes an array of `0`, `false` or `+0.0`. Every bit pattern is valid (see
//! the [`Value`](crate::values::value) module docs for `bool` and the floats). Elements
//! are not cache-line padded: eight `u64` elements share a 64-byte line, so heavy writers
//! to neighbouring elements slow each other down (never make each other wrong). Spread hot
//! elements apart or use a [`StripedCounter`](crate::StripedCounter) where that matters.
//!
//! # Crash windows
//!
//! There is no lock and no multi-step protocol: each operation is one atomic
//! read-modify-write (or load, or store) of one element. Where the hardware has no single
//! instruction for it (the float arithmetic, the `bool` operations and `fetch_update`
//! here; `fetch_max` and others in std's own code generation on some targets), it is a
//! compare-and-swap loop whose only store is its final, successful compare-and-swap. So
//! every element always holds a whole value, and no process can wedge another through a
//! `ValueArray`: nobody ever waits for anybody.
//!
//! | step | a SIGKILL (or SIGSTOP) there leaves | repaired by, how fast |
//! |------|-------------------------------------|-----------------------|
//! | an update of one element | the update done, or not done at all; never half-written | nothing to repair |
//! | inside a compare-and-swap loop, before its compare-and-swap succeeds | nothing: only the successful compare-and-swap writes | nothing to repair (a stopped process's loop holds nobody up) |
//! | between the element updates of a caller's multi-element change | the elements updated so far new, the rest old | each element is valid; a cross-element invariant is the caller's (use a `SeqLockArray` or a `Mutex` for one) |
//! | during `load_into` / `load_all` | nothing: they only read | nothing to repair |

use core::fmt;
use core::ops::Deref;
#[cfg(not(loom))]
use core::ptr::NonNull;

use crate::sync::Ordering;
use crate::values::value::{Value, ValueType};

/// A fixed-length array of atomic values of type `T` (an integer, `bool`, `f32` or
/// `f64`), each updated on its own, on the heap or in a region.
///
/// It dereferences to `[Value<T>]`: `arr[i]` is the [`Value<T>`] at `i`, and every slice
/// method that takes `&self` works (`len`, `iter`, `get`, ...). The per-element
/// operations are also here with the index first (`arr.fetch_add(i, 1, Relaxed)`); they
/// panic on an index out of range, like slice indexing. See the [module docs](self) for
/// the layout, why [`load_all`](Self::load_all) is not a snapshot, and the crash windows.
///
/// Slice-shaped: the length is chosen at creation ([`new`](Self::new),
/// [`from_slice`](Self::from_slice), or `region.get_or_default_slice::<ValueArray<T>>(name,
/// len)`, which refuses length 0) and never changes.
///
/// # Orderings
///
/// Each operation takes the [`Ordering`]s of the matching std atomic operation and applies
/// them to that one element: an `Acquire` load of element `i` pairs with a `Release`
/// store to element `i`, exactly as for separate atomics. For counting, `Relaxed` is
/// enough (each update needs only its atomicity).
///
/// # Examples
///
/// Per-bucket counts shared by processes:
///
/// ```
/// use shmstate::{Region, ValueArray};
/// use shmstate::sync::Ordering::Relaxed;
///
/// let region = Region::anonymous(1 << 16)?;
/// let buckets = region.get_or_default_slice::<ValueArray<u64>>("latency_buckets", 8)?;
/// buckets.fetch_add(3, 1, Relaxed); // index first...
/// buckets[3].fetch_add(1, Relaxed); // ...or through the element, the same operation
/// assert_eq!(buckets.load(3, Relaxed), 2);
/// assert_eq!(buckets.len(), 8);
/// assert!(buckets.get(8).is_none());
/// assert_eq!(buckets.iter().map(|b| b.load(Relaxed)).sum::<u64>(), 2);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
///
/// On the heap, shared by threads:
///
/// ```
/// use shmstate::ValueArray;
/// use shmstate::sync::Ordering::Relaxed;
///
/// let per_worker = ValueArray::<u32>::new(4);
/// std::thread::scope(|s| {
///     for w in 0..4 {
///         let per_worker = &per_worker;
///         s.spawn(move || {
///             for _ in 0..100 {
///                 per_worker.fetch_add(w, 1, Relaxed);
///             }
///         });
///     }
/// });
/// assert_eq!(per_worker.load_all(Relaxed), [100, 100, 100, 100]);
/// ```
#[repr(transparent)]
pub struct ValueArray<T: ValueType> {
    /// The elements. The length comes from the (process-local) pointer metadata, never
    /// from shared memory.
    elems: [Value<T>],
}

// SAFETY: `Shared` items 1-6, for every `len` that `size_for` accepts (len >= 1, size
// within `isize`):
// 1-2. the bytes are `len` consecutive `Value<T>`s (array layout: `size_of::<Value<T>>()`
//      is a multiple of its alignment, so there are no gaps), and `Value<T>: SharedSized`
//      promises each is valid when zeroed and for every bit pattern;
// 3. no pointers, nothing to drop (each `Value<T>` promises the same; this impl exists
//    only under `cfg(not(loom))`);
// 4. `#[repr(transparent)]` over `[Value<T>]`; `Value<T>`'s size and alignment are
//    asserted where its `SharedSized` impl is; the size is `slice_size::<Value<T>>(len)`;
// 5. `Sync` through `Value<T>: Sync`; every `&self` method is atomic operations on single
//    elements, made for concurrent use;
// 6. `from_raw_parts` builds a slice pointer of `len` elements at `ptr` and casts it to
//    the transparent wrapper: exactly `size_for(len)` bytes.
#[cfg(not(loom))]
unsafe impl<T: ValueType> crate::shared::Shared for ValueArray<T>
where
    Value<T>: crate::shared::SharedSized,
{
    const TAG: crate::shared::TypeTag = crate::shared::TypeTag::new(
        crate::shared::Kind::VALUE_ARRAY,
        <T as ValueType>::VALUE_ELEM,
    );
    const ALIGN: usize = align_of::<Value<T>>();

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        crate::shared::slice_size::<Value<T>>(len)
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self> {
        let slice = NonNull::slice_from_raw_parts(ptr.cast::<Value<T>>(), len);
        // Cast of a slice pointer to a `#[repr(transparent)]` wrapper of that slice: same
        // address and metadata.
        let raw = slice.as_ptr() as *mut ValueArray<T>;
        // SAFETY: `new_unchecked` needs a non-null pointer: `raw` has `slice`'s address,
        // which comes from a `NonNull`.
        unsafe { NonNull::new_unchecked(raw) }
    }
}

impl<T: ValueType> ValueArray<T> {
    /// An array of `len` elements, all `T::default()` (`0`, `false`, `+0.0`: what a region
    /// zero-fills), on the heap. `len` may be 0 here; a region refuses an empty array.
    ///
    /// # Panics
    ///
    /// If the allocation fails or its size overflows `isize` (as for any `Box<[_]>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let a = ValueArray::<f64>::new(3);
    /// assert_eq!(a.load_all(Relaxed), [0.0, 0.0, 0.0]);
    /// ```
    pub fn new(len: usize) -> Box<Self> {
        Self::from_boxed((0..len).map(|_| Value::default()).collect())
    }

    /// An array holding a copy of `values`, on the heap.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let flags = ValueArray::from_slice(&[true, false]);
    /// assert!(flags.load(0, Relaxed));
    /// assert_eq!(flags.len(), 2);
    /// ```
    pub fn from_slice(values: &[T]) -> Box<Self> {
        Self::from_boxed(values.iter().map(|&v| Value::new(v)).collect())
    }

    /// Wraps a boxed slice of elements (built with constructors, so this also works with
    /// loom atomics, which cannot be zero-allocated).
    fn from_boxed(elems: Box<[Value<T>]>) -> Box<Self> {
        let raw = Box::into_raw(elems) as *mut ValueArray<T>;
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` with the same
        // layout and no other owner: `ValueArray<T>` is `#[repr(transparent)]` over
        // `[Value<T>]`, so the cast keeps address, length and layout, and `raw` was just
        // taken out of its box.
        unsafe { Box::from_raw(raw) }
    }

    /// The elements as a slice of [`Value<T>`] (what `Deref` gives, by name).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Value, ValueArray};
    ///
    /// let a = ValueArray::<i16>::new(2);
    /// let elems: &[Value<i16>] = a.as_slice();
    /// assert_eq!(elems.len(), 2);
    /// ```
    #[inline]
    pub fn as_slice(&self) -> &[Value<T>] {
        &self.elems
    }

    /// Loads element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()` (use [`get`](slice::get) for an `Option`), or if `order` is
    /// `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Acquire;
    ///
    /// let a = ValueArray::from_slice(&[1.5f32, 2.5]);
    /// assert_eq!(a.load(1, Acquire), 2.5);
    /// ```
    #[inline]
    #[track_caller]
    pub fn load(&self, i: usize, order: Ordering) -> T {
        self.elems[i].load(order)
    }

    /// Stores `v` into element `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, or if `order` is `Acquire` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::{Acquire, Release};
    ///
    /// let a = ValueArray::<u8>::new(2);
    /// a.store(1, 9, Release);
    /// assert_eq!(a.load(1, Acquire), 9);
    /// ```
    #[inline]
    #[track_caller]
    pub fn store(&self, i: usize, v: T, order: Ordering) {
        self.elems[i].store(v, order)
    }

    /// Stores `v` into element `i` and returns its previous value, in one atomic step.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// // Per-bucket counts, taken and reset bucket by bucket: no count is lost.
    /// let a = ValueArray::from_slice(&[4u64, 7]);
    /// assert_eq!(a.swap(1, 0, Relaxed), 7);
    /// assert_eq!(a.load_all(Relaxed), [4, 0]);
    /// ```
    #[inline]
    #[track_caller]
    pub fn swap(&self, i: usize, v: T, order: Ordering) -> T {
        self.elems[i].swap(v, order)
    }

    /// Stores `new` into element `i` if it holds `current`, in one atomic step: as
    /// [`Value::compare_exchange`] (floats compare by bits, any non-zero `bool` byte is
    /// `true`).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, or if `failure` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::{Acquire, Relaxed};
    ///
    /// let a = ValueArray::from_slice(&[5i64, 5]);
    /// assert_eq!(a.compare_exchange(0, 5, 6, Acquire, Relaxed), Ok(5));
    /// assert_eq!(a.compare_exchange(0, 5, 7, Acquire, Relaxed), Err(6));
    /// assert_eq!(a.load(1, Relaxed), 5); // the other element is untouched
    /// ```
    #[inline]
    #[track_caller]
    pub fn compare_exchange(
        &self,
        i: usize,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        self.elems[i].compare_exchange(current, new, success, failure)
    }

    /// Like [`compare_exchange`](Self::compare_exchange), but may fail even when element
    /// `i` holds `current`: as [`Value::compare_exchange_weak`].
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, or if `failure` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::{AcqRel, Relaxed};
    ///
    /// let a = ValueArray::from_slice(&[1u32, 2]);
    /// let mut cur = a.load(1, Relaxed);
    /// while let Err(actual) = a.compare_exchange_weak(1, cur, cur * 10, AcqRel, Relaxed) {
    ///     cur = actual;
    /// }
    /// assert_eq!(a.load_all(Relaxed), [1, 20]);
    /// ```
    #[inline]
    #[track_caller]
    pub fn compare_exchange_weak(
        &self,
        i: usize,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        self.elems[i].compare_exchange_weak(current, new, success, failure)
    }

    /// Applies `f` to element `i` until it succeeds in storing the result: as
    /// [`Value::fetch_update`] (`Ok(previous)`, or `Err(previous)` once `f` returns
    /// `None`; `f` may run several times).
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`, or if `fetch_order` is `Release` or `AcqRel` (as std does).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// // Saturating per-slot quota.
    /// let quota = ValueArray::from_slice(&[2u8, 0]);
    /// assert_eq!(quota.fetch_update(0, Relaxed, Relaxed, |q| q.checked_sub(1)), Ok(2));
    /// assert_eq!(quota.fetch_update(1, Relaxed, Relaxed, |q| q.checked_sub(1)), Err(0));
    /// ```
    #[inline]
    #[track_caller]
    pub fn fetch_update<F>(
        &self,
        i: usize,
        set_order: Ordering,
        fetch_order: Ordering,
        f: F,
    ) -> Result<T, T>
    where
        F: FnMut(T) -> Option<T>,
    {
        self.elems[i].fetch_update(set_order, fetch_order, f)
    }

    /// Copies every element into `out`, element by element, each with an atomic load of
    /// `order`. No allocation.
    ///
    /// **Not a snapshot**: while other threads or processes write, the copy need not be
    /// the array's state at any one moment (each element is whole, the set of them may
    /// mix moments); see the [module docs](self), and
    /// [`SeqLockArray::snapshot`](crate::SeqLockArray::snapshot) for a consistent copy.
    /// Once the writers have stopped and their writes are visible to the caller (joined
    /// threads, processes waited for), it is exact.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()` (like [`copy_from_slice`](slice::copy_from_slice)),
    /// or if `order` is `Release` or `AcqRel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let a = ValueArray::from_slice(&[1i32, -2, 3]);
    /// let mut buf = [0; 3];
    /// a.load_into(&mut buf, Relaxed);
    /// assert_eq!(buf, [1, -2, 3]);
    /// ```
    #[track_caller]
    pub fn load_into(&self, out: &mut [T], order: Ordering) {
        assert_eq!(
            out.len(),
            self.elems.len(),
            "ValueArray::load_into: the buffer's length differs from the array's"
        );
        for (o, e) in out.iter_mut().zip(&self.elems) {
            *o = e.load(order);
        }
    }

    /// Every element, loaded one after another with `order`, in a new `Vec`: as
    /// [`load_into`](Self::load_into), and likewise **not a snapshot** while writers run.
    ///
    /// # Panics
    ///
    /// If `order` is `Release` or `AcqRel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let a = ValueArray::<u16>::new(2);
    /// a.fetch_add(0, 5, Relaxed);
    /// assert_eq!(a.load_all(Relaxed), vec![5, 0]);
    /// ```
    pub fn load_all(&self, order: Ordering) -> Vec<T> {
        self.elems.iter().map(|e| e.load(order)).collect()
    }
}

impl<T: ValueType> Deref for ValueArray<T> {
    type Target = [Value<T>];

    #[inline]
    fn deref(&self) -> &[Value<T>] {
        &self.elems
    }
}

impl<T: ValueType> AsRef<[Value<T>]> for ValueArray<T> {
    #[inline]
    fn as_ref(&self) -> &[Value<T>] {
        &self.elems
    }
}

impl<'a, T: ValueType> IntoIterator for &'a ValueArray<T> {
    type Item = &'a Value<T>;
    type IntoIter = core::slice::Iter<'a, Value<T>>;

    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.elems.iter()
    }
}

impl<T: ValueType> fmt::Debug for ValueArray<T> {
    /// Lists the elements, each a `Relaxed` load (as std's atomics do): not a snapshot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.elems.iter()).finish()
    }
}

/// Index-first forms of the type-specific read-modify-writes of [`Value<T>`]. Each example
/// starts from `[a, a]`, applies the operation with `b` to element 1 and shows the result.
macro_rules! element_ops {
    ($t:ty, a = $a:literal, b = $b:literal => $($op:ident: $result:literal),* $(,)?) => {
        impl ValueArray<$t> {
            $(
                #[doc = concat!(
                    "[`Value::", stringify!($op), "`] on element `i`: returns its previous ",
                    "value.\n\n",
                    "# Panics\n\n",
                    "If `i >= self.len()` (use [`get`](slice::get) for an `Option`).\n\n",
                    "# Examples\n\n```\n",
                    "use shmstate::ValueArray;\nuse shmstate::sync::Ordering::Relaxed;\n\n",
                    "let a = ValueArray::<", stringify!($t), ">::from_slice(&[", $a, ", ", $a,
                    "]);\n",
                    "assert_eq!(a.", stringify!($op), "(1, ", $b, ", Relaxed), ", $a, ");\n",
                    "assert_eq!(a.load_all(Relaxed), [", $a, ", ", $result, "]);\n```",
                )]
                #[inline]
                #[track_caller]
                pub fn $op(&self, i: usize, v: $t, order: Ordering) -> $t {
                    self.elems[i].$op(v, order)
                }
            )*
        }
    };
}

macro_rules! integer_ops {
    ($($t:ty),*) => {
        $(element_ops!($t, a = "6", b = "3" =>
            fetch_add: "6 + 3",
            fetch_sub: "6 - 3",
            fetch_and: "6 & 3",
            fetch_nand: "!(6 & 3)",
            fetch_or: "6 | 3",
            fetch_xor: "6 ^ 3",
            fetch_max: "6",
            fetch_min: "3",
        );)*
    };
}

integer_ops!(u8, u16, u32, u64, i8, i16, i32, i64);
element_ops!(f32, a = "6.0", b = "3.0" =>
    fetch_add: "9.0", fetch_sub: "3.0", fetch_max: "6.0", fetch_min: "3.0");
element_ops!(f64, a = "6.0", b = "3.0" =>
    fetch_add: "9.0", fetch_sub: "3.0", fetch_max: "6.0", fetch_min: "3.0");
element_ops!(bool, a = "true", b = "false" =>
    fetch_and: "false", fetch_nand: "true", fetch_or: "true", fetch_xor: "true");

impl ValueArray<bool> {
    /// [`Value::fetch_not`] on element `i`: flips it and returns its previous value.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()` (use [`get`](slice::get) for an `Option`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::ValueArray;
    /// use shmstate::sync::Ordering::Relaxed;
    ///
    /// let flags = ValueArray::<bool>::new(2);
    /// assert!(!flags.fetch_not(1, Relaxed));
    /// assert_eq!(flags.load_all(Relaxed), [false, true]);
    /// ```
    #[inline]
    #[track_caller]
    pub fn fetch_not(&self, i: usize, order: Ordering) -> bool {
        self.elems[i].fetch_not(order)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shared::{Kind, Shared, TypeTag};

    #[test]
    fn layout_is_the_elements_back_to_back() {
        assert_eq!(<ValueArray<u64> as Shared>::size_for(3), Some(24));
        assert_eq!(<ValueArray<bool> as Shared>::size_for(5), Some(5));
        assert_eq!(<ValueArray<f32> as Shared>::size_for(2), Some(8));
        assert_eq!(<ValueArray<u64> as Shared>::size_for(0), None);
        assert_eq!(<ValueArray<u64> as Shared>::size_for(usize::MAX / 4), None);
        assert_eq!(<ValueArray<i16> as Shared>::ALIGN, 2);
        let a = ValueArray::<u32>::new(4);
        let base = a.as_ptr() as usize;
        assert_eq!(&a[3] as *const Value<u32> as usize - base, 12);
    }

    #[test]
    fn tags_name_the_element() {
        assert_eq!(
            <ValueArray<u64> as Shared>::TAG,
            TypeTag::new(Kind::VALUE_ARRAY, crate::Elem::U64)
        );
        assert_eq!(
            <ValueArray<f64> as Shared>::TAG.to_string(),
            "ValueArray<f64>"
        );
    }
}
