//! Named objects: the public calls that find, create and list the entries of a region's
//! directory.
//!
//! How an entry is claimed, initialised and taken over from a dead creator, and what a
//! crash at each step leaves behind: [`protocol`](super::protocol).

use crate::shared::{Shared, TypeTag};
use crate::sync::Ordering;

use super::error::GetError;
use super::file::Region;
use super::format::{EntrySnapshot, state};

/// The life-cycle phase of a directory entry, as listed by [`Region::entries`].
///
/// # Examples
///
/// ```
/// use shmstate::{EntryState, Region};
///
/// let region = Region::anonymous(1 << 16)?;
/// // Tools can list objects still being created (or abandoned by a dead creator).
/// let busy = region.entries().iter().filter(|e| e.state != EntryState::Ready).count();
/// assert_eq!(busy, 0);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Taken by a process that has not published the name yet.
    Claimed,
    /// Named; its creator is running `init`.
    Initialising,
    /// Ready for use.
    Ready,
    /// Being removed ([`Region::remove`]): ready again if the removal finds it in use.
    Removing,
}

/// One directory entry, as listed by [`Region::entries`] for tools: a snapshot that may
/// be stale by the time it is read, and whose fields come from shared memory unchecked.
///
/// # Examples
///
/// ```
/// use shmstate::{EntryState, Region};
/// # use shmstate::{Elem, Kind, SharedSized, TypeTag, sync::AtomicU64};
/// # #[repr(C)] struct Hits(AtomicU64);
/// # // SAFETY: one AtomicU64.
/// # unsafe impl SharedSized for Hits { const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::U64); }
///
/// let region = Region::anonymous(1 << 16)?;
/// region.get_or_default::<Hits>("hits")?;
/// let entries = region.entries();
/// assert_eq!(entries[0].name, "hits");
/// assert_eq!(entries[0].state, EntryState::Ready);
/// assert_eq!(entries[0].offset % 64, 0);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The entry's index in the directory.
    pub index: u32,
    /// The name (lossily decoded; empty while [`EntryState::Claimed`]).
    pub name: String,
    /// The recorded type.
    pub tag: TypeTag,
    /// The object's length (1 for sized types).
    pub len: u64,
    /// Offset of the object from the start of the region.
    pub offset: u64,
    /// Size of the object in bytes.
    pub size: u64,
    /// Alignment of the object's type.
    pub align: u32,
    /// The entry's phase.
    pub state: EntryState,
    /// Thread id (TID) of the thread that created (or is creating) the object: the pid
    /// if it was a process's main thread; 0 if abandoned.
    pub owner: u32,
}

impl Region {
    /// The sized object `name` of type `T`, creating it in its all-zero initial state if
    /// there is none (a `Counter` at 0, an unlocked `Mutex`, ...: each type's docs say
    /// what its zero state is).
    ///
    /// The call for objects that need no set-up; [`get_or_init`](Self::get_or_init) runs
    /// a closure on a new object, [`get_or_default_slice`](Self::get_or_default_slice)
    /// creates slice-shaped ones (`StripedCounter`, `SeqLockArray<T>`).
    ///
    /// # Errors
    ///
    /// As for [`get_or_init`](Self::get_or_init).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::sync::Ordering;
    /// use shmstate::{Counter, Region};
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let hits = region.get_or_default::<Counter>("hits")?;
    /// hits.add(1);
    /// // Another process (or this one) gets the same object.
    /// assert_eq!(region.get_or_default::<Counter>("hits")?.get(), 1);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[inline]
    pub fn get_or_default<T: Shared>(&self, name: &str) -> Result<&T, GetError> {
        self.get_or_init_with_len(name, 1, |_: &T| {})
    }

    /// The sized object `name` of type `T`, creating it if there is none: exactly one
    /// process (or thread) among all that ask at once runs `init` on the zero-filled
    /// object, and every other caller waits until `init` has returned and then gets the
    /// same object. If the creator dies (or `init` panics) first, a waiting caller takes
    /// over and initialises from zero again, with its own `init`.
    ///
    /// `T` is usually inferred from the closure's parameter or from the binding the
    /// result goes to. Slice-shaped objects are created by
    /// [`get_or_init_slice`](Self::get_or_init_slice).
    ///
    /// # Errors
    ///
    /// - [`GetError::InvalidName`]: `name` is empty, longer than
    ///   [`MAX_NAME_LEN`](crate::region::MAX_NAME_LEN) bytes or contains a NUL byte.
    /// - [`GetError::BadAlignment`]: `T` needs more than the 64-byte alignment of region
    ///   objects.
    /// - [`GetError::TypeMismatch`]: `name` exists with another type (or length).
    /// - [`GetError::SizeMismatch`]: `name` exists with this type but another size or
    ///   alignment (programs built with different definitions of `T`).
    /// - [`GetError::RegionFull`], [`GetError::DirectoryFull`]: no room.
    /// - [`GetError::Timeout`]: another live process kept creating the object (or a
    ///   directory entry before it) longer than the region's timeout.
    /// - [`GetError::Corrupt`]: the directory holds values no shmstate build writes.
    ///
    /// # Panics
    ///
    /// Only if `init` panics (the entry is then left for another caller to take over).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::sync::Ordering::Relaxed;
    /// use shmstate::{Region, Value};
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let temp = region.get_or_init("temp", |t: &Value<f64>| t.store(20.5, Relaxed))?;
    /// temp.store(21.0, Relaxed);
    /// // Already initialised: the closure does not run again.
    /// let same: &Value<f64> = region.get_or_init("temp", |_| unreachable!())?;
    /// assert_eq!(same.load(Relaxed), 21.0);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[inline]
    pub fn get_or_init<T: Shared>(
        &self,
        name: &str,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        self.get_or_init_with_len(name, 1, init)
    }

    /// The slice-shaped object `name` of type `T` with `len` elements (a
    /// `StripedCounter` of `len` stripes, a `SeqLockArray<T>` of `len` values), creating
    /// it in its all-zero initial state if there is none.
    ///
    /// # Errors
    ///
    /// As for [`get_or_init_slice`](Self::get_or_init_slice).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Region, StripedCounter};
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let c = region.get_or_default_slice::<StripedCounter>("requests", 8)?;
    /// c.add(1);
    /// assert_eq!(c.sum(), 1);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[inline]
    pub fn get_or_default_slice<T: Shared + ?Sized>(
        &self,
        name: &str,
        len: usize,
    ) -> Result<&T, GetError> {
        self.get_or_init_with_len(name, len, |_: &T| {})
    }

    /// The slice-shaped object `name` of type `T` with `len` elements, creating it if
    /// there is none and running `init` on it once, as
    /// [`get_or_init`](Self::get_or_init) does for sized objects.
    ///
    /// # Errors
    ///
    /// As for [`get_or_init`](Self::get_or_init), and [`GetError::InvalidLength`] for a
    /// `len` that `T` has no object of (zero, a size overflowing `isize`, or any length
    /// but 1 for a sized type).
    ///
    /// # Panics
    ///
    /// Only if `init` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Region, SeqLockArray};
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let a = region.get_or_init_slice("samples", 1000, |a: &SeqLockArray<f64>| {
    ///     a.set_all(&[1.5; 1000]);
    /// })?;
    /// assert_eq!(a.len(), 1000);
    /// assert_eq!(a.get(999), 1.5);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[inline]
    pub fn get_or_init_slice<T: Shared + ?Sized>(
        &self,
        name: &str,
        len: usize,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        self.get_or_init_with_len(name, len, init)
    }

    /// The existing object `name` of type `T`, with the length recorded for it (sized or
    /// slice-shaped). Waits if another live process is creating it right now.
    ///
    /// # Errors
    ///
    /// - [`GetError::NotFound`]: no object has this name, or its creator died (or its
    ///   `init` panicked) before it was ready; a later [`get_or_init`](Self::get_or_init)
    ///   creates it again.
    /// - [`GetError::InvalidLength`]: the recorded length is one `T` has no object of.
    /// - [`GetError::InvalidName`], [`GetError::BadAlignment`], [`GetError::TypeMismatch`],
    ///   [`GetError::SizeMismatch`], [`GetError::Timeout`], [`GetError::Corrupt`]: as for
    ///   [`get_or_init`](Self::get_or_init).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{GetError, Region, StripedCounter};
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let err = region.get::<StripedCounter>("c").unwrap_err();
    /// assert!(matches!(err, GetError::NotFound { name } if name == "c"));
    /// region.get_or_default_slice::<StripedCounter>("c", 4)?;
    /// assert_eq!(region.get::<StripedCounter>("c")?.stripes(), 4);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    pub fn get<T: Shared + ?Sized>(&self, name: &str) -> Result<&T, GetError> {
        self.find(name)
    }

    /// Low level: the object `name` of any [`Shared`] type `T`, sized or slice-shaped,
    /// with a length given at run time (1 for sized types), created and initialised as
    /// [`get_or_init`](Self::get_or_init) does.
    ///
    /// For code generic over every `Shared` type, where the shape of `T` is not known
    /// when it is written: tools that recreate objects from a directory listing, language
    /// bindings that choose the type at run time, fuzzers. Everyone else reads better
    /// with [`get_or_default`](Self::get_or_default) and
    /// [`get_or_init`](Self::get_or_init) (sized) or their `_slice` forms: there a length
    /// cannot be passed to a sized type by mistake.
    ///
    /// # Errors
    ///
    /// As for [`get_or_init_slice`](Self::get_or_init_slice).
    ///
    /// # Panics
    ///
    /// Only if `init` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Counter, Region, GetError, Shared, StripedCounter};
    ///
    /// /// Copies the layout of `from`'s object `name` into `to`, zeroed, whatever the
    /// /// shape of `T`.
    /// fn copy_layout<T: Shared + ?Sized>(from: &Region, to: &Region, name: &str) -> Result<(), GetError> {
    ///     from.get::<T>(name)?; // checks the recorded type
    ///     let len = from.entries().into_iter().find(|e| e.name == name).map_or(1, |e| e.len);
    ///     to.get_or_init_with_len::<T>(name, len as usize, |_| {})?;
    ///     Ok(())
    /// }
    ///
    /// let (a, b) = (Region::anonymous(1 << 16)?, Region::anonymous(1 << 16)?);
    /// a.get_or_default::<Counter>("hits")?;
    /// a.get_or_default_slice::<StripedCounter>("requests", 4)?;
    /// copy_layout::<Counter>(&a, &b, "hits")?;
    /// copy_layout::<StripedCounter>(&a, &b, "requests")?;
    /// assert_eq!(b.get::<StripedCounter>("requests")?.stripes(), 4);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    pub fn get_or_init_with_len<T: Shared + ?Sized>(
        &self,
        name: &str,
        len: usize,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        self.get_or_create(name, len, init)
    }

    /// A snapshot of the directory for tools: every entry that names an object or is
    /// being claimed for one (not the free entries of removed objects), in directory
    /// order.
    ///
    /// # Examples
    ///
    /// See [`EntryInfo`].
    pub fn entries(&self) -> Vec<EntryInfo> {
        let raw = self.raw();
        let mut out = Vec::new();
        for index in 0..self.geo.capacity {
            let Some(e) = raw.entry(&self.geo, index) else {
                break;
            };
            // Acquire: pairs with the owner's release transitions, which publish the fields.
            let s = e.state.load(Ordering::Acquire);
            let state = match state::phase(s) {
                state::EMPTY => continue,
                state::CLAIMED => EntryState::Claimed,
                state::INITIALISING => EntryState::Initialising,
                state::READY => EntryState::Ready,
                state::REMOVING => EntryState::Removing,
                // FREE: a removed object's entry; anything else: no state a build writes.
                _ => continue,
            };
            // A claim's fields are being written (no name yet): as they are. Otherwise a
            // copy whose generation held (one object's name, tag and place, not a mix of
            // two while the entry is reused).
            let snap = if state == EntryState::Claimed {
                EntrySnapshot::read(e)
            } else {
                match EntrySnapshot::read_settled(e) {
                    Some(snap) => snap,
                    None => continue,
                }
            };
            let name = match (state, snap.name_bytes()) {
                (EntryState::Claimed, _) => String::new(),
                (_, Some(n)) => String::from_utf8_lossy(n).into_owned(),
                (_, None) => String::from_utf8_lossy(&snap.name).into_owned(),
            };
            out.push(EntryInfo {
                index,
                name,
                tag: snap.tag,
                len: snap.len,
                offset: snap.offset,
                size: snap.size,
                align: snap.align,
                state,
                owner: state::owner(s),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::format::TestWord;
    use super::*;
    use crate::region::RegionOptions;
    use crate::shared::{Elem, Kind, SharedSized};
    use crate::sync::{AtomicU32, AtomicU64};

    #[derive(Debug)]
    #[repr(C)]
    struct Pair(AtomicU32, AtomicU32);
    // SAFETY: two `AtomicU32`s: any bits valid, no pointers, `Sync`, `repr(C)`.
    unsafe impl SharedSized for Pair {
        const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::U32);
    }

    /// A slice-shaped test type.
    #[derive(Debug)]
    #[repr(transparent)]
    struct Words([AtomicU64]);
    // SAFETY: a slice of `AtomicU64`: any bits valid, no pointers, `Sync`;
    // `from_raw_parts` only builds the slice pointer of `len` words.
    unsafe impl Shared for Words {
        const TAG: TypeTag = TypeTag::new(Kind(0x1001), Elem::U64);
        const ALIGN: usize = 8;
        fn size_for(len: usize) -> Option<usize> {
            crate::shared::slice_size::<AtomicU64>(len)
        }
        fn from_raw_parts(ptr: core::ptr::NonNull<u8>, len: usize) -> core::ptr::NonNull<Self> {
            let slice = core::ptr::NonNull::slice_from_raw_parts(ptr.cast::<AtomicU64>(), len);
            // SAFETY: `Words` is a transparent wrapper of `[AtomicU64]`: same metadata.
            unsafe { core::ptr::NonNull::new_unchecked(slice.as_ptr() as *mut Words) }
        }
    }

    fn region() -> Region {
        RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_millis(200))
            .anonymous(4096)
            .unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn init_runs_once_and_objects_are_aligned_and_distinct() {
        let r = region();
        let a = r
            .get_or_init::<TestWord>("a", |w| w.0.store(7, Ordering::Relaxed))
            .unwrap();
        let b = r.get_or_default_slice::<Words>("b", 3).unwrap();
        let a2 = r
            .get_or_init::<TestWord>("a", |_| panic!("ran twice"))
            .unwrap();
        assert!(core::ptr::eq(a, a2));
        assert_eq!(a2.0.load(Ordering::Relaxed), 7);
        assert_eq!(b.0.len(), 3);
        let (oa, ob) = (r.offset_of(a).unwrap(), r.offset_of(b).unwrap());
        assert_eq!((oa % 64, ob % 64), (0, 0));
        assert_ne!(oa, ob);
        assert_eq!(r.get::<Words>("b").unwrap().0.len(), 3);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn get_or_init_infers_the_type_from_the_closure_or_the_binding() {
        let r = region();
        let a = r
            .get_or_init("a", |w: &TestWord| w.0.store(1, Ordering::Relaxed))
            .unwrap();
        let b: &TestWord = r
            .get_or_init("b", |w: &TestWord| w.0.store(2, Ordering::Relaxed))
            .unwrap();
        let c: Result<&TestWord, _> = r.get_or_init("c", |_| {});
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 2);
        assert_eq!(c.unwrap().0.load(Ordering::Relaxed), 0);
        let names: Vec<_> = r.entries().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn each_get_or_call_creates_the_shape_it_names_and_get_reads_it_back() {
        let r = region();
        let d = r.get_or_default::<TestWord>("d").unwrap();
        d.0.store(5, Ordering::Relaxed);
        let s = r.get_or_default_slice::<Words>("s", 4).unwrap();
        let t = r
            .get_or_init_slice("t", 2, |w: &Words| w.0[1].store(9, Ordering::Relaxed))
            .unwrap();
        let l = r.get_or_init_with_len::<Words>("l", 3, |_| {}).unwrap();
        assert_eq!((s.0.len(), t.0.len(), l.0.len()), (4, 2, 3));
        assert_eq!(t.0[1].load(Ordering::Relaxed), 9);
        let lens: Vec<_> = r.entries().into_iter().map(|e| e.len).collect();
        assert_eq!(lens, [1, 4, 2, 3]);
        // The directory is full (capacity 4); existing objects are still handed out.
        assert_eq!(
            r.get_or_default::<TestWord>("d")
                .unwrap()
                .0
                .load(Ordering::Relaxed),
            5
        );
        assert_eq!(r.get::<Words>("t").unwrap().0.len(), 2);
        assert!(core::ptr::eq(r.get::<Words>("l").unwrap(), l));
        // A sized type through the slice calls takes length 1 and no other.
        let r = region();
        assert!(r.get_or_default_slice::<TestWord>("one", 1).is_ok());
        assert!(r.get_or_init_with_len::<TestWord>("one", 1, |_| {}).is_ok());
        assert!(matches!(
            r.get_or_default_slice::<TestWord>("two", 2),
            Err(GetError::InvalidLength { len: 2, .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn other_type_or_length_is_a_type_mismatch() {
        let r = region();
        r.get_or_default::<TestWord>("a").unwrap();
        r.get_or_default_slice::<Words>("w", 2).unwrap();
        let err = r.get_or_default::<Pair>("a").unwrap_err();
        let GetError::TypeMismatch {
            name,
            recorded,
            recorded_len: 1,
            requested,
            requested_len: 1,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (name.as_str(), *recorded, *requested),
            ("a", <TestWord as Shared>::TAG, <Pair as Shared>::TAG)
        );
        assert_eq!(
            err.to_string(),
            "object `a` is a kind#4096<u64>, not a kind#4096<u32>"
        );
        let err = r.get_or_default_slice::<Words>("w", 3).unwrap_err();
        let GetError::TypeMismatch {
            recorded,
            recorded_len: 2,
            requested,
            requested_len: 3,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((recorded, requested), (Words::TAG, Words::TAG));
        // `get` asks for the recorded length: only the type differs.
        let err = r.get::<Pair>("w").unwrap_err();
        assert!(
            matches!(
                err,
                GetError::TypeMismatch {
                    recorded: Words::TAG,
                    recorded_len: 2,
                    requested: <Pair as Shared>::TAG,
                    requested_len: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn bad_names_and_lengths_are_refused() {
        let r = region();
        for name in ["", "a\0b", &"x".repeat(48)] {
            assert!(matches!(
                r.get_or_default::<TestWord>(name),
                Err(GetError::InvalidName { .. })
            ));
        }
        assert!(r.get_or_default::<TestWord>(&"x".repeat(47)).is_ok());
        assert!(matches!(
            r.get_or_default_slice::<TestWord>("n", 2),
            Err(GetError::InvalidLength { len: 2, .. })
        ));
        assert!(matches!(
            r.get_or_default_slice::<Words>("n", 0),
            Err(GetError::InvalidLength { .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn full_directory_and_full_data_are_reported() {
        let r = region(); // 4 entries, 4096 - 640 - 1024 (attach table) = 2432 bytes of data
        let err = r.get_or_default_slice::<Words>("big", 1000).unwrap_err();
        assert!(matches!(
            err,
            GetError::RegionFull {
                needed: 8000,
                available: 2432
            }
        ));
        // The entry was given back: four objects still fit.
        for name in ["a", "b", "c", "d"] {
            r.get_or_default::<TestWord>(name).unwrap();
        }
        assert!(matches!(
            r.get_or_default::<TestWord>("e"),
            Err(GetError::DirectoryFull { capacity: 4 })
        ));
        assert_eq!(r.entries().len(), 4);
    }
}
