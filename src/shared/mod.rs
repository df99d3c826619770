//! The placement contract: what a type must promise to live in a region.
//!
//! A region hands out `&T` into memory that other processes map and write. [`Shared`] is
//! the `unsafe` promise that makes that sound, and [`TypeTag`] is how the region records
//! *which* type an object is, so that a process asking for a name with another type gets
//! a `TypeMismatch` error instead of a reinterpretation of bytes.
//!
//! Objects are either sized (`Value<u64>`, `Mutex<T>`, ...; their length is 1) or
//! slice-shaped: a `#[repr(transparent)]` wrapper around `[E]` whose length is chosen at
//! creation (`StripedCounter`, `SeqLockArray<T>`). Both kinds go through the same trait.

use core::alloc::Layout;
use core::ptr::NonNull;

mod identity;
pub use identity::{Elem, Element, Field, Kind, TypeTag};

/// A type that can be placed in shared memory and used concurrently from many processes.
///
/// # Safety
///
/// Implementing this trait promises, for every `len` that [`size_for`](Self::size_for)
/// accepts, that the bytes `[p, p + size_for(len))` at an address `p` aligned to
/// [`ALIGN`](Self::ALIGN):
///
/// 1. **All zero bytes are a valid `Self`** in its initial (unlocked, empty, zero) state.
///    A region zero-fills an object before anyone sees it.
/// 2. **Every bit pattern is a valid `Self`.** Another process (buggy, hostile, or killed
///    mid-write) may leave any bytes there; reading them through `&Self` must never be
///    undefined behaviour. Only atomics of integer types, `UnsafeCell`s of
///    [`bytemuck::Pod`] data and padding-free `#[repr(C)]`/`#[repr(transparent)]` compositions
///    of those qualify (not `AtomicBool`, not `bool`, no enums, no niches).
/// 3. **No pointers, references, file descriptors or process-local handles**, and nothing
///    that relies on `Drop` running: the object outlives any one process and is shared by
///    reference only.
/// 4. The layout is fixed: `#[repr(C)]` or `#[repr(transparent)]`, with size and alignment
///    checked by `static_assertions`, identical in every process that maps the region (the
///    region also checks [`TAG`](Self::TAG), [`ALIGN`](Self::ALIGN) and the size).
/// 5. `Self: Sync`, and every method on `&Self` is safe to call concurrently from several
///    threads of several processes.
/// 6. [`from_raw_parts`](Self::from_raw_parts) only does pointer arithmetic: it returns a
///    pointer to `p` whose metadata describes exactly `size_for(len)` bytes.
pub unsafe trait Shared: Sync {
    /// The type's identity, recorded in the region's directory.
    const TAG: TypeTag;

    /// Required alignment; a power of two no larger than the region's object alignment (64).
    const ALIGN: usize;

    /// Size in bytes of an object of length `len`, or `None` if no such object exists
    /// (`len != 1` for sized types, zero or overflowing lengths for slices).
    fn size_for(len: usize) -> Option<usize>;

    /// A pointer to the object of length `len` that starts at `ptr`.
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self>;
}

/// The sized case of [`Shared`]: implement this and `Shared` follows, with length 1.
///
/// # Safety
///
/// As for [`Shared`], items 1 to 5.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shared type: it cannot be placed in a region",
    label = "not `SharedSized`",
    note = "shared types are the crate's primitives (`Counter`, `Value<T>`, `Mutex<T>`, ...) and `#[repr(C)]` structs of them with `#[derive(shmstate::Shared)]`"
)]
pub unsafe trait SharedSized: Sync + Sized {
    /// The type's identity, recorded in the region's directory.
    const TAG: TypeTag;
}

// SAFETY: Items 1–5 are `SharedSized`'s own contract. Item 6: `from_raw_parts` is a cast of
// `ptr`, and `size_for(1)` is `size_of::<T>()`, exactly what a `&T` covers.
unsafe impl<T: SharedSized> Shared for T {
    const TAG: TypeTag = <T as SharedSized>::TAG;
    const ALIGN: usize = align_of::<T>();

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        (len == 1).then_some(size_of::<T>())
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, _len: usize) -> NonNull<Self> {
        ptr.cast()
    }
}

/// Size of a slice of `len` elements of `E`, for slice-shaped [`Shared`] types: `None` for
/// an empty slice or one whose size overflows `isize`.
#[inline]
pub fn slice_size<E>(len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    Layout::array::<E>(len).ok().map(|l| l.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_size_rejects_empty_and_overflow() {
        assert_eq!(slice_size::<u64>(0), None);
        assert_eq!(slice_size::<u64>(3), Some(24));
        assert_eq!(slice_size::<u64>(usize::MAX / 4), None);
    }
}
