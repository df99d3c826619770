//! Type identity: how a region records *which* type an object is ([`TypeTag`]: the
//! primitive's [`Kind`] and its element's [`Elem`]), and [`Element`], the identity of the
//! plain-old-data types the primitives hold.

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
    /// A [`Queue<T, N>`](crate::Queue); its element is the slot array `[T; N]`, so the
    /// capacity is part of its identity.
    pub const QUEUE: Kind = Kind(14);
    /// A user's shared struct ([`TypeTag::record`]).
    pub const RECORD: Kind = Kind(15);
    /// A [`ValueArray<T>`](crate::ValueArray); its element is `T`.
    pub const VALUE_ARRAY: Kind = Kind(16);
    /// A [`ByteMap`](crate::ByteMap) ([`Elem::NONE`]) or a [`Map<K, V>`](crate::Map)
    /// (its element fingerprints `K` and `V`).
    pub const MAP: Kind = Kind(17);
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
            15 => "struct",
            16 => "ValueArray",
            17 => "Map",
            _ => return None,
        })
    }
}

/// The element type a primitive holds, as recorded in a region.
///
/// The primitive value types have fixed codes; an array of a primitive records the
/// primitive and its length (`[u64; 4]` is told apart from `[i64; 4]`, `[f64; 4]` and
/// `[u64; 2]`); any other element (a nested array, an array of structs, a user's struct)
/// records a 64-bit fingerprint in [`id`](Self::id) of everything that makes up its
/// identity (see [`Elem::record`] and [`Elem::array`]). Two elements are the same type
/// for a region when all four fields are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Elem {
    /// One of the `Elem::*` codes (`NONE`, `U8`, …, `ARRAY_CODE`, `RECORD_CODE`), or
    /// `ARRAY_OF + code` for an array of a primitive.
    pub code: u32,
    /// `size_of` the element (0 for `NONE`).
    pub size: u32,
    /// `align_of` the element (0 for `NONE`).
    pub align: u32,
    /// 0 for primitives and arrays of primitives; a fingerprint for arrays of anything else
    /// and for records.
    pub id: u64,
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
    pub const U128: Elem = Elem::code(12, 16, align_of::<u128>() as u32);
    pub const I128: Elem = Elem::code(13, 16, align_of::<i128>() as u32);
    pub const USIZE: Elem = Elem::code(14, size_of::<usize>() as u32, align_of::<usize>() as u32);
    pub const ISIZE: Elem = Elem::code(15, size_of::<isize>() as u32, align_of::<isize>() as u32);
    /// Largest code of a primitive element.
    const LAST_PRIMITIVE: u32 = 15;
    /// Code of an array of anything but a primitive ([`Elem::array`]); `id` fingerprints it.
    pub const ARRAY_CODE: u32 = 100;
    /// Code of a record ([`Elem::record`]); `id` fingerprints it.
    pub const RECORD_CODE: u32 = 101;
    /// `ARRAY_OF + c` is the code of an array of the primitive with code `c`; its length is
    /// `size / size_of(primitive)`.
    pub const ARRAY_OF: u32 = 200;

    const fn code(code: u32, size: u32, align: u32) -> Elem {
        Elem {
            code,
            size,
            align,
            id: 0,
        }
    }

    /// The element `[inner; n]`.
    ///
    /// An array of a primitive keeps the primitive's code (`ARRAY_OF + code`), so a region
    /// tool can name it; any other array records a fingerprint of `inner` (all four
    /// fields) and `n`.
    ///
    /// # Panics
    ///
    /// If the array's size does not fit `u32` (4 GiB or more). In a `const` this is a
    /// compile-time error.
    pub const fn array(inner: Elem, n: usize) -> Elem {
        let size = (inner.size as usize).checked_mul(n);
        let size = match size {
            Some(s) if s <= u32::MAX as usize => s as u32,
            _ => panic!("Elem::array: element of 4 GiB or more"),
        };
        if inner.code >= 1 && inner.code <= Self::LAST_PRIMITIVE && n > 0 {
            return Elem::code(Self::ARRAY_OF + inner.code, size, inner.align);
        }
        let mut h = Fingerprint::new(b"array");
        h = h.elem(inner).u64(n as u64);
        Elem {
            code: Self::ARRAY_CODE,
            size,
            align: inner.align,
            id: h.finish(),
        }
    }

    /// A record (a `#[repr(C)]` struct of [`Element`] fields): its identity is a fingerprint
    /// of its name, its size and alignment, and every field's name, offset and element.
    ///
    /// What it tells apart: structs with different names (the type's own name, not its
    /// module path), different field names, order, offsets or field types, and different
    /// sizes. What it cannot: two structs of the same name whose fields agree in all of
    /// these (they have the same meaning for every byte, so reading one as the other is
    /// not a reinterpretation), and — with probability 2⁻⁶⁴ per pair — a fingerprint
    /// collision. Usually written by `#[derive(shmstate::Element)]`, not by hand.
    ///
    /// # Panics
    ///
    /// If `size` does not fit `u32`. In a `const` this is a compile-time error.
    pub const fn record(name: &str, size: usize, align: usize, fields: &[Field<Elem>]) -> Elem {
        assert!(
            size <= u32::MAX as usize,
            "Elem::record: element of 4 GiB or more"
        );
        let mut h = Fingerprint::new(b"record")
            .bytes(name.as_bytes())
            .u64(size as u64)
            .u64(align as u64);
        let mut i = 0;
        while i < fields.len() {
            h = h
                .bytes(fields[i].name.as_bytes())
                .u64(fields[i].offset as u64)
                .elem(fields[i].ty);
            i += 1;
        }
        Elem {
            code: Self::RECORD_CODE,
            size: size as u32,
            // Alignment is at most 2^29 in Rust, so it always fits.
            align: align as u32,
            id: h.finish(),
        }
    }

    const fn primitive_size(code: u32) -> u32 {
        match code {
            1 | 5 | 9 => 1,
            2 | 6 => 2,
            3 | 7 | 10 => 4,
            12 | 13 => 16,
            14 | 15 => size_of::<usize>() as u32,
            _ => 8,
        }
    }

    const fn primitive_name(code: u32) -> Option<&'static str> {
        Some(match code {
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
            12 => "u128",
            13 => "i128",
            14 => "usize",
            15 => "isize",
            _ => return None,
        })
    }

    /// The primitive's name and the length, for an array of a primitive.
    fn primitive_array(self) -> Option<(&'static str, u32)> {
        let code = self.code.checked_sub(Self::ARRAY_OF)?;
        let name = Self::primitive_name(code)?;
        Some((name, self.size / Self::primitive_size(code)))
    }

    /// The element's name (`u64`, `[f64; 4]`, `record(size 16, align 8, id …)`, …) for
    /// error messages and tools.
    pub fn describe(self) -> String {
        if self == Elem::NONE {
            return String::new();
        }
        if let Some(name) = Self::primitive_name(self.code) {
            return name.to_owned();
        }
        if let Some((inner, n)) = self.primitive_array() {
            return format!("[{inner}; {n}]");
        }
        let what = match self.code {
            Self::ARRAY_CODE => "array",
            Self::RECORD_CODE => "record",
            _ => "elem",
        };
        format!(
            "{what}(code {}, size {}, align {}, id {:#018x})",
            self.code, self.size, self.align, self.id
        )
    }
}

/// One field of a record, for [`Elem::record`] and [`TypeTag::record`].
#[derive(Clone, Copy, Debug)]
pub struct Field<T> {
    /// The field's name.
    pub name: &'static str,
    /// Its offset in the record (`core::mem::offset_of!`).
    pub offset: usize,
    /// Its identity: an [`Elem`] in an element record, a [`TypeTag`] in a shared struct.
    pub ty: T,
}

/// A plain-old-data type with a recorded identity: what a [`Mutex<T>`](crate::Mutex),
/// [`RwLock<T>`](crate::RwLock), [`ReentrantMutex<T>`](crate::ReentrantMutex),
/// [`SeqLock<T>`](crate::SeqLock), [`SeqLockArray<T>`](crate::SeqLockArray) or
/// [`Queue<T, N>`](crate::Queue) in a region holds.
///
/// A region records `T::ELEM` for an object holding a `T` and refuses to hand the object
/// out as one holding another type ([`GetError::TypeMismatch`](crate::GetError)),
/// even one of the same size: a `SeqLockArray<i32>` is never read as `f32`s, a
/// `Mutex<[u64; 2]>` never as a `Mutex<u128>`. On the heap the primitives take any
/// [`bytemuck::Pod`] type; only placing them in a region needs `Element`.
///
/// Implemented for the primitive integers and floats (each its own code: `u64`, `i64`,
/// `f64` and `usize` all differ) and for arrays `[E; N]` of any `Element` (the element
/// and the length: `[u64; 2]`, `[u32; 4]` and `u128` all differ). For a struct of your
/// own, write `#[derive(shmstate::Element)]` (with `#[repr(C)]` and bytemuck's `Pod`), or
/// write the impl by hand with [`Elem::record`]: the struct's name, size and alignment,
/// and every field's name, offset and identity.
///
/// # What the identity tells apart
///
/// Types that differ in name (the type's own name, not its module path), in a field's
/// name, order, offset or type, in size or in alignment. It cannot tell apart two structs
/// of the same name whose fields agree in all of these (the same meaning for every byte:
/// reading one as the other is not a reinterpretation), nor anything `ELEM` does not say:
/// a hand-written `ELEM` that leaves out a field, or that two types share, makes them one
/// type for a region. Records are fingerprinted in 64 bits (a collision between two given
/// records has probability 2⁻⁶⁴).
///
/// The trait is safe: a wrong `ELEM` cannot cause undefined behaviour (`T` is
/// [`bytemuck::Pod`], every bit pattern is valid), only let two types share an identity.
///
/// # Examples
///
/// A struct's identity by hand, as `#[derive(shmstate::Element)]` would write it:
///
/// ```
/// use core::mem::offset_of;
/// use shmstate::{Elem, Element, Field, GetError, Mutex, Region, RegionError};
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Point {
///     x: f32,
///     y: f32,
/// }
///
/// impl Element for Point {
///     const ELEM: Elem = Elem::record(
///         "Point",
///         size_of::<Point>(),
///         align_of::<Point>(),
///         &[
///             Field { name: "x", offset: offset_of!(Point, x), ty: f32::ELEM },
///             Field { name: "y", offset: offset_of!(Point, y), ty: f32::ELEM },
///         ],
///     );
/// }
///
/// let region = Region::anonymous(1 << 16)?;
/// let origin = region.get_or_default::<Mutex<Point>>("origin")?;
/// origin.lock().unwrap().x = 1.5;
/// // The same bytes as a pair of floats: another type, refused.
/// assert!(matches!(
///     region.get::<Mutex<[f32; 2]>>("origin"),
///     Err(GetError::TypeMismatch { .. })
/// ));
/// assert_eq!(region.get::<Mutex<Point>>("origin")?.lock().unwrap().x, 1.5);
/// # Ok::<(), RegionError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no identity for a region (`Element`)",
    label = "not an `Element`",
    note = "the integers, floats and arrays of them are elements; give a `#[repr(C)]` Pod struct one with `#[derive(shmstate::Element)]`"
)]
pub trait Element: bytemuck::Pod {
    /// This type's identity.
    const ELEM: Elem;
}

macro_rules! primitive_elements {
    ($($t:ty => $e:ident),* $(,)?) => {
        $(impl Element for $t {
            const ELEM: Elem = Elem::$e;
        })*
    };
}

primitive_elements! {
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128, usize => USIZE,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128, isize => ISIZE,
    f32 => F32, f64 => F64,
}

impl<E: Element, const N: usize> Element for [E; N]
where
    [E; N]: bytemuck::Pod,
{
    const ELEM: Elem = Elem::array(E::ELEM, N);
}

/// FNV-1a, 64-bit, usable in `const`: the fingerprint of array and record identities.
/// Stable across builds and platforms (it hashes explicit little-endian bytes), so a
/// region written by one build is checked correctly by another.
#[derive(Clone, Copy)]
struct Fingerprint(u64);

impl Fingerprint {
    const fn new(domain: &[u8]) -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325).bytes(domain)
    }

    const fn byte(self, b: u8) -> Self {
        Fingerprint((self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
    }

    /// The bytes, preceded by their length (so `"ab","c"` and `"a","bc"` differ).
    const fn bytes(self, bytes: &[u8]) -> Self {
        let mut h = self.u64(bytes.len() as u64);
        let mut i = 0;
        while i < bytes.len() {
            h = h.byte(bytes[i]);
            i += 1;
        }
        h
    }

    const fn u64(self, v: u64) -> Self {
        let b = v.to_le_bytes();
        let mut h = self;
        let mut i = 0;
        while i < 8 {
            h = h.byte(b[i]);
            i += 1;
        }
        h
    }

    const fn elem(self, e: Elem) -> Self {
        self.u64(e.code as u64)
            .u64(e.size as u64)
            .u64(e.align as u64)
            .u64(e.id)
    }

    const fn tag(self, t: TypeTag) -> Self {
        self.u64(t.kind.0 as u64).elem(t.elem)
    }

    const fn finish(self) -> u64 {
        self.0
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

    /// The tag of a shared struct (a `#[repr(C)]` struct of [`Shared`](super::Shared) fields, such as
    /// `struct Stats { requests: Counter, errors: Counter }`): kind [`Kind::RECORD`] and a
    /// fingerprint of the struct's name, size, alignment and every field's name, offset and
    /// tag. Usually written by `#[derive(Shared)]`; see [`Elem::record`] for what a
    /// fingerprint tells apart.
    ///
    /// # Panics
    ///
    /// If `size` does not fit `u32`. In a `const` this is a compile-time error.
    pub const fn record(
        name: &str,
        size: usize,
        align: usize,
        fields: &[Field<TypeTag>],
    ) -> TypeTag {
        assert!(
            size <= u32::MAX as usize,
            "TypeTag::record: object of 4 GiB or more"
        );
        let mut h = Fingerprint::new(b"shared record")
            .bytes(name.as_bytes())
            .u64(size as u64)
            .u64(align as u64);
        let mut i = 0;
        while i < fields.len() {
            h = h
                .bytes(fields[i].name.as_bytes())
                .u64(fields[i].offset as u64)
                .tag(fields[i].ty);
            i += 1;
        }
        TypeTag {
            kind: Kind::RECORD,
            elem: Elem {
                code: Elem::RECORD_CODE,
                size: size as u32,
                align: align as u32,
                id: h.finish(),
            },
        }
    }
}

impl core::fmt::Display for TypeTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind.name() {
            Some(n) => f.write_str(n)?,
            None => write!(f, "kind#{}", self.kind.0)?,
        }
        if self.kind == Kind::QUEUE
            && let Some((item, capacity)) = self.elem.primitive_array()
        {
            // A queue's element is its slots, `[T; N]`.
            write!(f, "<{item}, {capacity}>")?;
        } else if self.elem != Elem::NONE {
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
            TypeTag::new(Kind::SEQLOCK, <[u64; 2]>::ELEM).to_string(),
            "SeqLock<[u64; 2]>"
        );
        assert_eq!(TypeTag::new(Kind(77), Elem::NONE).to_string(), "kind#77");
    }

    /// A 4 GiB element would truncate to size 0, the size of `[u8; 0]`; it is refused.
    #[test]
    #[cfg(target_pointer_width = "64")]
    #[should_panic(expected = "4 GiB")]
    fn array_identity_refuses_a_size_that_does_not_fit_u32() {
        let _ = Elem::array(Elem::U8, 1 << 32);
    }

    /// As above, for a record.
    #[test]
    #[cfg(target_pointer_width = "64")]
    #[should_panic(expected = "4 GiB")]
    fn record_identity_refuses_a_size_that_does_not_fit_u32() {
        let _ = Elem::record("Huge", 1 << 32, 1, &[]);
    }

    /// Every element type of the same size and alignment has its own identity: the
    /// primitives by code, arrays by element and length.
    #[test]
    fn same_size_elements_differ() {
        let groups: [&[Elem]; 4] = [
            &[
                u32::ELEM,
                i32::ELEM,
                f32::ELEM,
                <[u8; 4]>::ELEM,
                <[u16; 2]>::ELEM,
            ],
            &[
                u64::ELEM,
                i64::ELEM,
                f64::ELEM,
                <[u32; 2]>::ELEM,
                <[f32; 2]>::ELEM,
            ],
            &[
                u128::ELEM,
                i128::ELEM,
                <[u64; 2]>::ELEM,
                <[u32; 4]>::ELEM,
                <[u8; 16]>::ELEM,
            ],
            &[u8::ELEM, i8::ELEM, <[u8; 1]>::ELEM, <[i8; 1]>::ELEM],
        ];
        for group in groups {
            for (i, a) in group.iter().enumerate() {
                assert_eq!(a.size, group[0].size);
                for b in &group[i + 1..] {
                    assert_ne!(a, b, "{} and {}", a.describe(), b.describe());
                }
            }
        }
        assert_eq!(usize::ELEM.size as usize, size_of::<usize>());
        assert_ne!(usize::ELEM, u64::ELEM);
        assert_ne!(isize::ELEM, i64::ELEM);
    }

    /// A queue's tag holds its slots, `[T; N]`: element and capacity, printed as such.
    #[test]
    fn queue_tags_name_element_and_capacity() {
        let q = |e: Elem, n| TypeTag::new(Kind::QUEUE, Elem::array(e, n));
        assert_eq!(q(Elem::U8, 4).to_string(), "Queue<u8, 4>");
        assert_ne!(q(Elem::U8, 4), q(Elem::U8, 1));
        assert_ne!(q(Elem::U32, 2), q(<[u32; 2]>::ELEM, 1));
        assert!(
            q(<[u32; 2]>::ELEM, 1)
                .to_string()
                .starts_with("Queue<array(")
        );
    }

    #[test]
    fn arrays_of_primitives_keep_their_element_and_length() {
        assert_eq!(<[u64; 4]>::ELEM.describe(), "[u64; 4]");
        assert_eq!(<[f32; 3]>::ELEM.describe(), "[f32; 3]");
        let distinct = [
            <[u64; 4]>::ELEM,
            <[i64; 4]>::ELEM,
            <[f64; 4]>::ELEM,
            <[u64; 2]>::ELEM,
            <[u32; 8]>::ELEM,
            <[[u64; 2]; 2]>::ELEM,
            <[[u64; 4]; 1]>::ELEM,
            u64::ELEM,
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a, b, "{} and {} must differ", a.describe(), b.describe());
            }
        }
    }

    #[test]
    fn records_differ_by_name_field_names_offsets_and_field_types() {
        const fn f(name: &'static str, offset: usize, ty: Elem) -> Field<Elem> {
            Field { name, offset, ty }
        }
        let base = Elem::record("P", 16, 8, &[f("x", 0, Elem::F64), f("y", 8, Elem::F64)]);
        let same = Elem::record("P", 16, 8, &[f("x", 0, Elem::F64), f("y", 8, Elem::F64)]);
        assert_eq!(base, same);
        let others = [
            Elem::record("Q", 16, 8, &[f("x", 0, Elem::F64), f("y", 8, Elem::F64)]),
            Elem::record("P", 16, 8, &[f("y", 0, Elem::F64), f("x", 8, Elem::F64)]),
            Elem::record("P", 16, 8, &[f("x", 0, Elem::I64), f("y", 8, Elem::F64)]),
            Elem::record("P", 16, 8, &[f("x", 0, Elem::F64), f("z", 8, Elem::F64)]),
            Elem::record("P", 16, 8, &[f("x", 8, Elem::F64), f("y", 0, Elem::F64)]),
            Elem::record("P", 16, 16, &[f("x", 0, Elem::F64), f("y", 8, Elem::F64)]),
            Elem::record("P", 16, 8, &[f("xy", 0, Elem::F64)]),
        ];
        for o in others {
            assert_ne!(base, o);
        }
        let tag = |n| TypeTag::record(n, 128, 64, &[]);
        assert_ne!(tag("Stats"), tag("Other"));
        assert_eq!(tag("Stats").kind, Kind::RECORD);
    }
}
