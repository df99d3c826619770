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

/// What kind of primitive an object is. Stored as a `u32`; unknown codes read from a file
/// are kept as they are (and never equal a known tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Kind(pub u32);

#[allow(missing_docs)]
impl Kind {
    pub const VALUE: Kind = Kind(1);
    pub const COUNTER: Kind = Kind(2);
    pub const STRIPED_COUNTER: Kind = Kind(3);
    pub const SEQLOCK: Kind = Kind(4);
    pub const SEQLOCK_ARRAY: Kind = Kind(5);
    pub const MUTEX: Kind = Kind(6);
    pub const RWLOCK: Kind = Kind(7);
    pub const REENTRANT_MUTEX: Kind = Kind(8);
    pub const CONDVAR: Kind = Kind(9);
    pub const SEMAPHORE: Kind = Kind(10);
    pub const BOUNDED_SEMAPHORE: Kind = Kind(11);
    pub const EVENT: Kind = Kind(12);
    pub const BARRIER: Kind = Kind(13);
    pub const QUEUE: Kind = Kind(14);
    /// First code free for types defined outside this crate.
    pub const USER: Kind = Kind(0x1000);

    /// The primitive's name, or `None` for a code this version does not know.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "Value",
            2 => "Counter",
            3 => "StripedCounter",
            4 => "SeqLock",
            5 => "SeqLockArray",
            6 => "Mutex",
            7 => "RwLock",
            8 => "ReentrantMutex",
            9 => "Condvar",
            10 => "Semaphore",
            11 => "BoundedSemaphore",
            12 => "Event",
            13 => "Barrier",
            14 => "Queue",
            _ => return None,
        })
    }
}

/// The element type a primitive holds: a fixed code for the primitive value types, and
/// "plain old data of this size and alignment" for any other [`bytemuck::Pod`] type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Elem {
    /// One of the `Elem::*` codes (`NONE`, `U8`, …, `POD`).
    pub code: u32,
    /// `size_of` the element (0 for `NONE`).
    pub size: u32,
    /// `align_of` the element (0 for `NONE`).
    pub align: u32,
}

#[allow(missing_docs)]
impl Elem {
    pub const NONE: Elem = Elem::code(0, 0, 0);
    pub const U8: Elem = Elem::code(1, 1, 1);
    pub const U16: Elem = Elem::code(2, 2, 2);
    pub const U32: Elem = Elem::code(3, 4, 4);
    pub const U64: Elem = Elem::code(4, 8, 8);
    pub const I8: Elem = Elem::code(5, 1, 1);
    pub const I16: Elem = Elem::code(6, 2, 2);
    pub const I32: Elem = Elem::code(7, 4, 4);
    pub const I64: Elem = Elem::code(8, 8, 8);
    pub const BOOL: Elem = Elem::code(9, 1, 1);
    pub const F32: Elem = Elem::code(10, 4, 4);
    pub const F64: Elem = Elem::code(11, 8, 8);
    /// Code of [`Elem::pod`] elements.
    pub const POD_CODE: u32 = 100;

    const fn code(code: u32, size: u32, align: u32) -> Elem {
        Elem { code, size, align }
    }

    /// A [`bytemuck::Pod`] element, identified by size and alignment only: two different
    /// `Pod` structs of the same size and alignment are not told apart.
    ///
    /// # Panics
    ///
    /// Panics if `size_of::<T>()` does not fit the `u32` size field (4 GiB or more):
    /// truncating it would give `T` the tag of a smaller type. In a `const TAG` this is a
    /// compile-time error.
    pub const fn pod<T: bytemuck::Pod>() -> Elem {
        let size = size_of::<T>();
        assert!(
            size <= u32::MAX as usize,
            "Elem::pod: element of 4 GiB or more"
        );
        // Alignment is at most 2^29 in Rust, so it always fits.
        Elem::code(Self::POD_CODE, size as u32, align_of::<T>() as u32)
    }

    /// The element's name (`u64`, `f64`, `pod(16, 8)`, …) for error messages.
    pub fn describe(self) -> String {
        let name = match self.code {
            0 => "",
            1 => "u8",
            2 => "u16",
            3 => "u32",
            4 => "u64",
            5 => "i8",
            6 => "i16",
            7 => "i32",
            8 => "i64",
            9 => "bool",
            10 => "f32",
            11 => "f64",
            _ => return format!("pod(size {}, align {})", self.size, self.align),
        };
        name.to_owned()
    }
}

/// A type's identity as recorded in a region: primitive kind and element type.
///
/// The region records the object's length and byte size next to it; all four must match
/// for an open to succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeTag {
    /// The primitive.
    pub kind: Kind,
    /// The element type, [`Elem::NONE`] for primitives without one (`Counter`, `Condvar`).
    pub elem: Elem,
}

impl TypeTag {
    /// A tag of `kind` holding `elem`.
    pub const fn new(kind: Kind, elem: Elem) -> TypeTag {
        TypeTag { kind, elem }
    }
}

impl core::fmt::Display for TypeTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind.name() {
            Some(n) => f.write_str(n)?,
            None => write!(f, "kind#{}", self.kind.0)?,
        }
        if self.elem != Elem::NONE {
            write!(f, "<{}>", self.elem.describe())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_display_like_rust_types() {
        assert_eq!(
            TypeTag::new(Kind::VALUE, Elem::U64).to_string(),
            "Value<u64>"
        );
        assert_eq!(
            TypeTag::new(Kind::COUNTER, Elem::NONE).to_string(),
            "Counter"
        );
        assert_eq!(
            TypeTag::new(Kind::SEQLOCK, Elem::pod::<[u64; 2]>()).to_string(),
            "SeqLock<pod(size 16, align 8)>"
        );
        assert_eq!(TypeTag::new(Kind(77), Elem::NONE).to_string(), "kind#77");
    }

    /// A 4 GiB element would truncate to size 0, the tag of `[u8; 0]`; it is refused.
    #[test]
    #[cfg(target_pointer_width = "64")]
    #[should_panic(expected = "4 GiB")]
    fn pod_tag_refuses_a_size_that_does_not_fit_u32() {
        #[derive(Clone, Copy)]
        #[repr(transparent)]
        struct Huge([u8; 1 << 32]);
        // SAFETY: a byte array: all-zero and every bit pattern valid, no padding.
        unsafe impl bytemuck::Zeroable for Huge {}
        // SAFETY: as above; `Copy`, `'static`, `#[repr(transparent)]`.
        unsafe impl bytemuck::Pod for Huge {}
        let _ = Elem::pod::<Huge>();
    }

    #[test]
    fn slice_size_rejects_empty_and_overflow() {
        assert_eq!(slice_size::<u64>(0), None);
        assert_eq!(slice_size::<u64>(3), Some(24));
        assert_eq!(slice_size::<u64>(usize::MAX / 4), None);
    }
}
