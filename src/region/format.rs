//! The region's byte layout: header, directory entries, their state words, and the checks
//! every open runs on them.
//!
//! ```text
//! offset 0                 Header (128 bytes): magic, version, marker, sizes, fingerprint,
//!                          init state, directory capacity, data start, bump pointer
//! offset 128               Entry 0 .. Entry capacity-1 (128 bytes each)
//! data_start (64-aligned)  objects, each at a 64-aligned offset, bump-allocated
//! total_size               end of the file
//! ```
//!
//! Every field is an atomic: another process may write any of them at any time, so they
//! are only ever read through atomic loads, copied into locals, checked, and only the
//! checked copies are used. A [`Raw`] view is the one place that turns the mapping's
//! address into references.

use core::marker::PhantomData;
use core::mem::offset_of;
use core::ptr::NonNull;

use crate::shared::{Elem, Kind, Shared, TypeTag};
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::error::RegionError;

/// The first eight bytes of every region.
pub(crate) const MAGIC: u64 = u64::from_ne_bytes(*b"SHMSTATE");
/// Format version; bump on any change of meaning not caught by the fingerprint.
///
/// - 1: the first format.
/// - 2: an `RwLock`'s registered readers hold the lock through their reader slots alone
///   (the state word counts only overflow readers), and bit 29 of its state is `DRAINING`.
/// - 3: entries record the element's identity fingerprint (`elem_id`); element types
///   are no longer told apart by size and alignment alone, and a queue's element is its
///   slot array.
pub(crate) const VERSION: u32 = 3;
/// Byte-order and word-size marker: reads differently on the other byte order, and its
/// low byte is `size_of::<usize>()`.
pub(crate) const MARKER: u32 = 0x0102_0300 | size_of::<usize>() as u32;
/// `init_state` of a fully built header.
pub(crate) const INIT_READY: u32 = 0x5245_4459;
/// Size of the header.
pub(crate) const HEADER_SIZE: usize = 128;
/// Size of one directory entry.
pub(crate) const ENTRY_SIZE: usize = 128;
/// Bytes of a name field, including the terminating NUL.
pub(crate) const NAME_FIELD: usize = 48;
/// Longest object name, in bytes.
pub const MAX_NAME_LEN: usize = NAME_FIELD - 1;
/// Alignment of every object: no two objects share a cache line.
pub(crate) const OBJECT_ALIGN: usize = 64;
/// Directory entries of a region made without an explicit capacity.
pub(crate) const DEFAULT_CAPACITY: u32 = 64;
/// Largest directory a region may have (bounds the work of every scan).
pub const MAX_CAPACITY: u32 = 4096;

/// The header at offset 0.
#[repr(C)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`MARKER`].
    pub marker: AtomicU32,
    /// Size of the whole region in bytes; equals the file's length.
    pub total_size: AtomicU64,
    /// [`FINGERPRINT`].
    pub fingerprint: AtomicU64,
    /// [`INIT_READY`] once every other field is written.
    pub init_state: AtomicU32,
    /// Number of directory entries.
    pub capacity: AtomicU32,
    /// Offset of the first object: [`data_start_for`]`(capacity)`.
    pub data_start: AtomicU64,
    /// Next free data offset (64-aligned); advanced by compare-and-swap.
    pub bump: AtomicU64,
    #[allow(dead_code)] // room for later fields; part of the fingerprinted layout
    reserved: [AtomicU64; 9],
}

/// One directory entry.
#[repr(C)]
pub(crate) struct Entry {
    /// The entry's state word; see [`state`] for the bit layout and the protocol.
    pub state: AtomicU32,
    /// `TypeTag::kind`.
    pub kind: AtomicU32,
    /// `TypeTag::elem.code`.
    pub elem_code: AtomicU32,
    /// `TypeTag::elem.size`.
    pub elem_size: AtomicU32,
    /// `TypeTag::elem.align`.
    pub elem_align: AtomicU32,
    /// `T::ALIGN`.
    pub align: AtomicU32,
    /// The object's length (1 for sized types).
    pub len: AtomicU64,
    /// `T::size_for(len)`.
    pub size: AtomicU64,
    /// Offset of the object from the start of the region.
    pub offset: AtomicU64,
    /// The name, NUL-terminated.
    pub name: [AtomicU8; NAME_FIELD],
    /// `TypeTag::elem.id`.
    pub elem_id: AtomicU64,
    #[allow(dead_code)] // room for later fields; part of the fingerprinted layout
    reserved: [AtomicU64; 3],
}

static_assertions::const_assert_eq!(size_of::<Header>(), HEADER_SIZE);
static_assertions::const_assert_eq!(size_of::<Entry>(), ENTRY_SIZE);
static_assertions::const_assert!(align_of::<Header>() <= OBJECT_ALIGN);
static_assertions::const_assert!(HEADER_SIZE.is_multiple_of(OBJECT_ALIGN));
static_assertions::const_assert!(ENTRY_SIZE.is_multiple_of(OBJECT_ALIGN));

/// The entry state word.
///
/// ```text
/// bits 31..3   owner: TID of the thread that claimed or is initialising the entry (the
///              pid for a process's main thread; 0: abandoned by an `init` that
///              panicked, never a live thread)
/// bit  2       WAITERS: someone may be futex-waiting on this word
/// bits 1..0    phase
/// ```
///
/// | phase          | meaning                                                        |
/// |----------------|----------------------------------------------------------------|
/// | `EMPTY`        | free; every later entry is free too                            |
/// | `CLAIMED`      | taken by `owner`, which is writing name, type and offset       |
/// | `INITIALISING` | name, type and offset published; `owner` runs `init`           |
/// | `READY`        | the object may be used                                         |
///
/// Transitions: `EMPTY -> CLAIMED` by CAS (the claimer); `CLAIMED -> INITIALISING ->
/// READY` by the owner with release stores; `CLAIMED -> EMPTY` when the owner finds no
/// space; `CLAIMED`/`INITIALISING` of a dead owner `->` the same phase with the new owner's
/// TID, by CAS (takeover).
///
/// The owner is a thread, not a process: a process whose main thread has exited lives on
/// in its other threads while its pid reads as a zombie, so a pid would let a taker
/// initialise an object its live creator is still initialising. Entries never return to `EMPTY` once named, so the used
/// entries are always a prefix of the directory.
pub(crate) mod state {
    /// Mask of the phase bits.
    pub const PHASE: u32 = 0b11;
    /// Free.
    pub const EMPTY: u32 = 0;
    /// Claimed; name not yet published.
    pub const CLAIMED: u32 = 1;
    /// Name published; object being initialised.
    pub const INITIALISING: u32 = 2;
    /// Object ready.
    pub const READY: u32 = 3;
    /// Someone may be waiting on the word.
    pub const WAITERS: u32 = 0b100;
    /// Position of the owner's TID.
    pub const OWNER_SHIFT: u32 = 3;

    /// The phase of `s`.
    #[inline]
    pub const fn phase(s: u32) -> u32 {
        s & PHASE
    }

    /// The owner TID of `s`.
    #[inline]
    pub const fn owner(s: u32) -> u32 {
        s >> OWNER_SHIFT
    }

    /// Whether someone may be waiting on `s`.
    #[inline]
    pub const fn has_waiters(s: u32) -> bool {
        s & WAITERS != 0
    }

    /// The word for owner `tid` in `phase`, no waiters. TIDs are below 2^22
    /// (`PID_MAX_LIMIT`), so the shift loses nothing.
    #[inline]
    pub const fn make(tid: u32, phase: u32) -> u32 {
        (tid << OWNER_SHIFT) | (phase & PHASE)
    }
}

const fn fnv1a(mut h: u64, v: u64) -> u64 {
    let mut i = 0;
    while i < 8 {
        h ^= (v >> (i * 8)) & 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// A hash of every constant and field offset of the format: two builds whose layouts
/// differ in any of them refuse each other's regions.
pub(crate) const FINGERPRINT: u64 = {
    let parts: [u64; 28] = [
        VERSION as u64,
        MARKER as u64,
        HEADER_SIZE as u64,
        ENTRY_SIZE as u64,
        NAME_FIELD as u64,
        OBJECT_ALIGN as u64,
        MAX_CAPACITY as u64,
        offset_of!(Header, magic) as u64,
        offset_of!(Header, version) as u64,
        offset_of!(Header, marker) as u64,
        offset_of!(Header, total_size) as u64,
        offset_of!(Header, fingerprint) as u64,
        offset_of!(Header, init_state) as u64,
        offset_of!(Header, capacity) as u64,
        offset_of!(Header, data_start) as u64,
        offset_of!(Header, bump) as u64,
        offset_of!(Entry, state) as u64,
        offset_of!(Entry, kind) as u64,
        offset_of!(Entry, elem_code) as u64,
        offset_of!(Entry, elem_size) as u64,
        offset_of!(Entry, elem_align) as u64,
        offset_of!(Entry, align) as u64,
        offset_of!(Entry, len) as u64,
        offset_of!(Entry, size) as u64,
        offset_of!(Entry, offset) as u64,
        offset_of!(Entry, name) as u64,
        offset_of!(Entry, elem_id) as u64,
        (state::OWNER_SHIFT as u64) << 32 | state::WAITERS as u64,
    ];
    let mut h = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        h = fnv1a(h, parts[i]);
        i += 1;
    }
    h
};

/// Offset of the first object in a region with `capacity` directory entries.
pub(crate) const fn data_start_for(capacity: u32) -> usize {
    HEADER_SIZE + capacity as usize * ENTRY_SIZE
}

/// `n` rounded up to [`OBJECT_ALIGN`], or `None` on overflow.
pub(crate) const fn round_up(n: u64) -> Option<u64> {
    match n.checked_add(OBJECT_ALIGN as u64 - 1) {
        Some(v) => Some(v & !(OBJECT_ALIGN as u64 - 1)),
        None => None,
    }
}

/// The checked local copy of a region's geometry, read once at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Total size in bytes (= the mapping's length).
    pub total: usize,
    /// Directory entries.
    pub capacity: u32,
    /// Offset of the first object.
    pub data_start: usize,
}

/// A view of a region's bytes: turns offsets into references to atomics and objects,
/// after bounds checks. Copyable; valid for `'a`.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'a> {
    base: NonNull<u8>,
    len: usize,
    _memory: PhantomData<&'a [AtomicU8]>,
}

impl<'a> Raw<'a> {
    /// A view of `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// Behaviour is undefined unless, for all of `'a`:
    /// - `base` is aligned to [`OBJECT_ALIGN`] and valid for reads and writes of `len`
    ///   bytes (a live mapping, or an allocation), derived from a mutable pointer;
    /// - those bytes are accessed, by this process, only through atomics and [`Shared`]
    ///   types (never through `&[u8]`/`&mut [u8]` or plain reads and writes).
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        Raw {
            base,
            len,
            _memory: PhantomData,
        }
    }

    /// The view's length in bytes.
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// The header, or `None` if the view is shorter than a header.
    pub(crate) fn header(self) -> Option<&'a Header> {
        if self.len < HEADER_SIZE {
            return None;
        }
        // SAFETY: `[base, base + HEADER_SIZE)` is in bounds (checked above), aligned (base is
        // 64-aligned, `Header` needs 8), and valid for `'a` (`new`'s contract). `Header` is
        // made of integer atomics only: every bit pattern is valid, and shared access
        // through `&` is what atomics are for.
        Some(unsafe { self.base.cast::<Header>().as_ref() })
    }

    /// Directory entry `i` of `geo`, or `None` if it lies outside the view or the
    /// directory.
    pub(crate) fn entry(self, geo: &Geometry, i: u32) -> Option<&'a Entry> {
        if i >= geo.capacity {
            return None;
        }
        let off = HEADER_SIZE.checked_add((i as usize).checked_mul(ENTRY_SIZE)?)?;
        if off.checked_add(ENTRY_SIZE)? > self.len {
            return None;
        }
        // SAFETY: `[off, off + ENTRY_SIZE)` is within the view (checked above); `off` is a
        // multiple of 64 from a 64-aligned base, and `Entry` needs 8. `Entry` is made of
        // integer atomics only, so every bit pattern is valid and `&` access is sound.
        Some(unsafe { self.base.add(off).cast::<Entry>().as_ref() })
    }

    /// The object of type `T` and length `len` at `offset`, if it lies within the view
    /// and `offset` satisfies `T`'s alignment.
    pub(crate) fn object<T: Shared + ?Sized>(self, offset: usize, len: usize) -> Option<&'a T> {
        let size = T::size_for(len)?;
        if !T::ALIGN.is_power_of_two()
            || T::ALIGN > OBJECT_ALIGN
            || !offset.is_multiple_of(OBJECT_ALIGN)
        {
            return None;
        }
        if offset.checked_add(size)? > self.len {
            return None;
        }
        // SAFETY: `offset < len`, so `base + offset` is in bounds and non-null.
        let start = unsafe { self.base.add(offset) };
        let ptr = T::from_raw_parts(start, len);
        // SAFETY: `ptr` covers exactly `size_for(len)` bytes from `start` (`Shared` item 6),
        // which lie within the view (checked above) and stay valid for `'a` (`new`'s
        // contract). `start` is 64-aligned (64-aligned base, offset a multiple of 64) and
        // `T::ALIGN` divides 64. `Shared` items 1–2 make any bytes there a valid `T`, and
        // item 5 makes shared access from several processes sound.
        Some(unsafe { ptr.as_ref() })
    }

    /// Zeroes `[offset, offset + size)` with relaxed atomic stores, if in bounds and
    /// `offset` is 8-aligned. Returns whether it did.
    pub(crate) fn zero(self, offset: usize, size: usize) -> bool {
        let Some(end) = offset.checked_add(size) else {
            return false;
        };
        if end > self.len || !offset.is_multiple_of(8) {
            return false;
        }
        let words = size / 8;
        for w in 0..words {
            // SAFETY: `offset + 8 * w + 8 <= end <= len`: in bounds; 8-aligned (offset is,
            // base is 64-aligned); `AtomicU64` accepts any bytes, and `new`'s contract says
            // these bytes are only accessed atomically.
            let word = unsafe { self.base.add(offset + 8 * w).cast::<AtomicU64>().as_ref() };
            // Relaxed: the zeroes are published with the object, by the release store of
            // the entry's READY state.
            word.store(0, Ordering::Relaxed);
        }
        for b in offset + 8 * words..end {
            // SAFETY: `b < end <= len`: in bounds; `AtomicU8` needs no alignment.
            let byte = unsafe { self.base.add(b).cast::<AtomicU8>().as_ref() };
            // Relaxed: as above.
            byte.store(0, Ordering::Relaxed);
        }
        true
    }
}

/// Writes a fresh header for a region of `total` bytes with `capacity` entries. The
/// directory and data must already be zero (a new file, memfd or mapping).
///
/// Only called before the region is visible to any other process (the file is not yet
/// linked into place, the memfd not yet shared), so no ordering is needed beyond the
/// release store of `init_state`.
pub(crate) fn write_header(raw: Raw<'_>, geo: &Geometry) {
    let Some(h) = raw.header() else { return };
    // Relaxed (all but the last): nobody else can see the region yet; `init_state`
    // below publishes the rest.
    h.magic.store(MAGIC, Ordering::Relaxed);
    h.version.store(VERSION, Ordering::Relaxed);
    h.marker.store(MARKER, Ordering::Relaxed);
    h.total_size.store(geo.total as u64, Ordering::Relaxed);
    h.fingerprint.store(FINGERPRINT, Ordering::Relaxed);
    h.capacity.store(geo.capacity, Ordering::Relaxed);
    h.data_start.store(geo.data_start as u64, Ordering::Relaxed);
    h.bump.store(geo.data_start as u64, Ordering::Relaxed);
    // Release: pairs with the acquire load of `init_state` in `validate_header`, for a
    // reader that could see the mapping before the publishing syscall (link, fork, fd
    // passing) — none can, but the header then does not depend on it.
    h.init_state.store(INIT_READY, Ordering::Release);
}

/// Checks the header of `raw` (whose length is the file's) and returns its geometry.
///
/// # Errors
///
/// [`RegionError::Truncated`], [`RegionError::BadMagic`], [`RegionError::LayoutMismatch`],
/// [`RegionError::VersionMismatch`], [`RegionError::WrongSize`], [`RegionError::Corrupt`].
pub(crate) fn validate_header(raw: Raw<'_>) -> Result<Geometry, RegionError> {
    let file = raw.len() as u64;
    let Some(h) = raw.header() else {
        return Err(RegionError::Truncated {
            found: file,
            needed: HEADER_SIZE as u64,
        });
    };
    // Relaxed (all but `init_state`): the header is written before the region is
    // published by a syscall that orders it (see `write_header`); every value is checked
    // before use, so a concurrent hostile write can only make this open fail.
    let magic = h.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        if magic.swap_bytes() == MAGIC {
            return Err(RegionError::LayoutMismatch {
                what: "byte order",
                found: magic,
                expected: MAGIC,
            });
        }
        return Err(RegionError::BadMagic { found: magic });
    }
    let marker = h.marker.load(Ordering::Relaxed);
    if marker != MARKER {
        return Err(RegionError::LayoutMismatch {
            what: "word size marker",
            found: marker.into(),
            expected: MARKER.into(),
        });
    }
    let version = h.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(RegionError::VersionMismatch {
            found: version,
            expected: VERSION,
        });
    }
    let fingerprint = h.fingerprint.load(Ordering::Relaxed);
    if fingerprint != FINGERPRINT {
        return Err(RegionError::LayoutMismatch {
            what: "layout fingerprint",
            found: fingerprint,
            expected: FINGERPRINT,
        });
    }
    // Acquire: pairs with the release store in `write_header`.
    if h.init_state.load(Ordering::Acquire) != INIT_READY {
        return Err(RegionError::Corrupt("header was never completed".into()));
    }
    let total = h.total_size.load(Ordering::Relaxed);
    if total > file {
        return Err(RegionError::Truncated {
            found: file,
            needed: total,
        });
    }
    if total != file {
        return Err(RegionError::WrongSize {
            header: total,
            file,
        });
    }
    let capacity = h.capacity.load(Ordering::Relaxed);
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(RegionError::Corrupt(format!(
            "directory capacity {capacity} outside 1..={MAX_CAPACITY}"
        )));
    }
    let data_start = data_start_for(capacity);
    let recorded = h.data_start.load(Ordering::Relaxed);
    if recorded != data_start as u64 {
        return Err(RegionError::Corrupt(format!(
            "data start {recorded}, expected {data_start} for {capacity} entries"
        )));
    }
    if data_start as u64 > total {
        return Err(RegionError::Corrupt(format!(
            "directory of {capacity} entries does not fit in {total} bytes"
        )));
    }
    Ok(Geometry {
        // `total == file == raw.len()`, a `usize`.
        total: raw.len(),
        capacity,
        data_start,
    })
}

/// A checked-once local copy of a published directory entry (phase `INITIALISING` or
/// `READY`, read after an acquire load of its state).
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntrySnapshot {
    pub tag: TypeTag,
    pub align: u32,
    pub len: u64,
    pub size: u64,
    pub offset: u64,
    pub name: [u8; NAME_FIELD],
}

impl EntrySnapshot {
    /// Copies the fields of `e`.
    pub(crate) fn read(e: &Entry) -> Self {
        // Relaxed (all): the caller's acquire load of `state` that saw the entry published
        // pairs with the owner's release store after it wrote these fields.
        let r32 = |a: &AtomicU32| a.load(Ordering::Relaxed);
        let r64 = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut name = [0u8; NAME_FIELD];
        for (dst, src) in name.iter_mut().zip(e.name.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        EntrySnapshot {
            tag: TypeTag::new(
                Kind(r32(&e.kind)),
                Elem {
                    code: r32(&e.elem_code),
                    size: r32(&e.elem_size),
                    align: r32(&e.elem_align),
                    id: r64(&e.elem_id),
                },
            ),
            align: r32(&e.align),
            len: r64(&e.len),
            size: r64(&e.size),
            offset: r64(&e.offset),
            name,
        }
    }

    /// The name's bytes up to the NUL, or `None` if it has no terminator.
    pub(crate) fn name_bytes(&self) -> Option<&[u8]> {
        let end = self.name.iter().position(|&b| b == 0)?;
        Some(&self.name[..end])
    }

    /// The object's `(offset, size)` as `usize`s, if it lies in the data area of `geo`
    /// at an aligned offset with a sane alignment.
    pub(crate) fn placement(&self, geo: &Geometry) -> Result<(usize, usize), String> {
        let offset = usize::try_from(self.offset).map_err(|_| "offset overflows".to_owned())?;
        let size = usize::try_from(self.size).map_err(|_| "size overflows".to_owned())?;
        if !offset.is_multiple_of(OBJECT_ALIGN) {
            return Err(format!("offset {offset} not {OBJECT_ALIGN}-aligned"));
        }
        if offset < geo.data_start {
            return Err(format!("offset {offset} inside the header or directory"));
        }
        match offset.checked_add(size) {
            Some(end) if end <= geo.total => {}
            _ => return Err(format!("object [{offset}, +{size}) beyond {}", geo.total)),
        }
        if size == 0 {
            return Err("size 0".to_owned());
        }
        if !(self.align as usize).is_power_of_two() || self.align as usize > OBJECT_ALIGN {
            return Err(format!("alignment {}", self.align));
        }
        Ok((offset, size))
    }

    /// A description of the recorded type for error messages.
    pub(crate) fn describe(&self) -> String {
        describe(self.tag, self.len, self.size, self.align.into())
    }
}

/// `Value<u64> (8 bytes, align 8)`, `StripedCounter[16] (1024 bytes, align 64)`.
pub(crate) fn describe(tag: TypeTag, len: u64, size: u64, align: u64) -> String {
    if len == 1 {
        format!("{tag} ({size} bytes, align {align})")
    } else {
        format!("{tag}[{len}] ({size} bytes, align {align})")
    }
}

/// Checks every published entry of the directory: names terminated and unique, objects
/// in bounds, aligned, outside the header and directory, and not overlapping each other;
/// and the allocation pointer: inside the data area and past every object, so that the
/// next object allocated cannot overlap one.
///
/// # Errors
///
/// [`RegionError::Corrupt`] naming the first bad entry.
pub(crate) fn validate_directory(raw: Raw<'_>, geo: &Geometry) -> Result<(), RegionError> {
    let mut spans: Vec<(usize, usize, u32)> = Vec::new();
    let mut names: Vec<(Vec<u8>, u32)> = Vec::new();
    for i in 0..geo.capacity {
        let Some(e) = raw.entry(geo, i) else {
            return Err(RegionError::Corrupt(format!("entry {i} outside the file")));
        };
        // Acquire: pairs with the owner's release store that published the entry's fields.
        let s = e.state.load(Ordering::Acquire);
        let phase = state::phase(s);
        if phase != state::INITIALISING && phase != state::READY {
            continue;
        }
        let snap = EntrySnapshot::read(e);
        let corrupt = |what: String| RegionError::Corrupt(format!("entry {i}: {what}"));
        let name = snap
            .name_bytes()
            .ok_or_else(|| corrupt("name not terminated".into()))?;
        if name.is_empty() {
            return Err(corrupt("empty name".into()));
        }
        let (offset, size) = snap.placement(geo).map_err(corrupt)?;
        spans.push((offset, size, i));
        names.push((name.to_vec(), i));
    }
    spans.sort_unstable();
    if let Some(&(off, size, i)) = spans.last() {
        // Every published object's space was allocated (the bump word advanced past it)
        // before its entry was published, and the acquire loads of the states above saw
        // those publications: a bump word read after them lies past every object.
        // Relaxed: the acquire loads above order it (coherence with the allocating CAS).
        let bump = raw.header().map_or(0, |h| h.bump.load(Ordering::Relaxed));
        // `off + size <= total` was checked, no overflow.
        if bump < (off + size) as u64
            || bump > geo.total as u64
            || !bump.is_multiple_of(OBJECT_ALIGN as u64)
        {
            return Err(RegionError::Corrupt(format!(
                "allocation pointer {bump} inside or before the object of entry {i}, or \
                 outside the data area"
            )));
        }
    }
    for w in spans.windows(2) {
        let ((a_off, a_size, a), (b_off, _, b)) = (w[0], w[1]);
        // `a_off + a_size <= total` was checked, no overflow.
        if a_off + a_size > b_off {
            return Err(RegionError::Corrupt(format!(
                "objects of entries {a} and {b} overlap"
            )));
        }
    }
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(RegionError::Corrupt(format!(
                "entries {} and {} have the same name",
                w[0].1, w[1].1
            )));
        }
    }
    Ok(())
}

/// A one-word [`Shared`] type for unit tests of the region.
#[cfg(test)]
#[derive(Debug)]
#[repr(C)]
pub(crate) struct TestWord(pub AtomicU64);

// SAFETY: one `AtomicU64`: all-zero and every bit pattern valid, no pointers, `Sync`,
// `repr(C)` with the size and alignment of `u64`.
#[cfg(test)]
unsafe impl crate::shared::SharedSized for TestWord {
    const TAG: TypeTag = TypeTag::new(Kind::USER, Elem::U64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap buffer standing in for a mapping: 64-aligned, accessed only atomically.
    struct Buf(Vec<Block>);
    #[repr(C, align(64))]
    struct Block([AtomicU64; 8]);

    impl Buf {
        fn new(len: usize) -> Self {
            assert_eq!(len % 64, 0);
            Buf((0..len / 64).map(|_| Block(Default::default())).collect())
        }
        fn raw(&self) -> Raw<'_> {
            let base = NonNull::new(self.0.as_ptr() as *mut u8).unwrap();
            // SAFETY: the Vec's buffer is 64-aligned (`Block`), `len` bytes long, lives as
            // long as `&self`, and is only accessed through atomics (interior mutability
            // makes writes through a pointer from `as_ptr` sound).
            unsafe { Raw::new(base, self.0.len() * 64) }
        }
    }

    fn fresh(len: usize, capacity: u32) -> Buf {
        let buf = Buf::new(len);
        let geo = Geometry {
            total: len,
            capacity,
            data_start: data_start_for(capacity),
        };
        write_header(buf.raw(), &geo);
        buf
    }

    fn publish(raw: Raw<'_>, geo: &Geometry, i: u32, name: &str, offset: u64, size: u64) {
        let e = raw.entry(geo, i).unwrap();
        for (k, b) in name.bytes().enumerate() {
            e.name[k].store(b, Ordering::Relaxed);
        }
        e.offset.store(offset, Ordering::Relaxed);
        e.size.store(size, Ordering::Relaxed);
        e.len.store(1, Ordering::Relaxed);
        e.align.store(8, Ordering::Relaxed);
        // As an allocation would have: past the object.
        raw.header().unwrap().bump.fetch_max(
            round_up(offset.saturating_add(size)).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        e.state
            .store(state::make(1, state::READY), Ordering::Release);
    }

    #[test]
    fn fresh_header_validates() {
        let buf = fresh(4096, 4);
        let geo = validate_header(buf.raw()).unwrap();
        assert_eq!(
            geo,
            Geometry {
                total: 4096,
                capacity: 4,
                data_start: 128 + 4 * 128
            }
        );
        validate_directory(buf.raw(), &geo).unwrap();
    }

    #[test]
    fn short_view_is_truncated() {
        let buf = fresh(4096, 4);
        // SAFETY: a prefix of a valid view is a valid view.
        let short = unsafe { Raw::new(buf.raw().base, 64) };
        assert!(matches!(
            validate_header(short),
            Err(RegionError::Truncated { found: 64, .. })
        ));
    }

    #[test]
    fn each_header_field_is_checked() {
        type Poke = fn(&Header);
        type Expect = fn(&RegionError) -> bool;
        let cases: [(Poke, Expect); 9] = [
            (
                |h| h.magic.store(1, Ordering::Relaxed),
                |e| matches!(e, RegionError::BadMagic { found: 1 }),
            ),
            (
                |h| h.magic.store(MAGIC.swap_bytes(), Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        RegionError::LayoutMismatch {
                            what: "byte order",
                            ..
                        }
                    )
                },
            ),
            (
                |h| h.marker.store(0x0102_0304, Ordering::Relaxed),
                |e| matches!(e, RegionError::LayoutMismatch { .. }),
            ),
            (
                |h| h.version.store(VERSION + 1, Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        RegionError::VersionMismatch {
                            found: 4,
                            expected: 3
                        }
                    )
                },
            ),
            (
                |h| {
                    h.fingerprint.fetch_xor(1, Ordering::Relaxed);
                },
                |e| {
                    matches!(
                        e,
                        RegionError::LayoutMismatch {
                            what: "layout fingerprint",
                            ..
                        }
                    )
                },
            ),
            (
                |h| h.init_state.store(0, Ordering::Relaxed),
                |e| matches!(e, RegionError::Corrupt(_)),
            ),
            (
                |h| h.total_size.store(8192, Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        RegionError::Truncated {
                            found: 4096,
                            needed: 8192
                        }
                    )
                },
            ),
            (
                |h| h.total_size.store(1024, Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        RegionError::WrongSize {
                            header: 1024,
                            file: 4096
                        }
                    )
                },
            ),
            (
                |h| h.capacity.store(MAX_CAPACITY + 1, Ordering::Relaxed),
                |e| matches!(e, RegionError::Corrupt(_)),
            ),
        ];
        for (i, (poke, expected)) in cases.iter().enumerate() {
            let buf = fresh(4096, 4);
            poke(buf.raw().header().unwrap());
            let err = validate_header(buf.raw()).unwrap_err();
            assert!(expected(&err), "case {i}: {err:?}");
        }
    }

    #[test]
    fn directory_that_does_not_fit_is_corrupt() {
        let buf = fresh(4096, 4);
        let h = buf.raw().header().unwrap();
        h.capacity.store(40, Ordering::Relaxed);
        h.data_start
            .store(data_start_for(40) as u64, Ordering::Relaxed);
        assert!(matches!(
            validate_header(buf.raw()),
            Err(RegionError::Corrupt(_))
        ));
    }

    #[test]
    fn entries_out_of_range_overlapping_or_unterminated_are_corrupt() {
        let geo = Geometry {
            total: 4096,
            capacity: 4,
            data_start: 640,
        };
        let check = |setup: &dyn Fn(Raw<'_>)| {
            let buf = fresh(4096, 4);
            setup(buf.raw());
            validate_directory(buf.raw(), &geo)
        };
        assert!(check(&|r| publish(r, &geo, 0, "a", 640, 8)).is_ok());
        assert!(
            check(&|r| {
                publish(r, &geo, 0, "a", 640, 8);
                publish(r, &geo, 1, "b", 704, 8);
            })
            .is_ok()
        );
        let bad: [&dyn Fn(Raw<'_>); 7] = [
            &|r| publish(r, &geo, 0, "a", 4096, 8),   // past the end
            &|r| publish(r, &geo, 0, "a", 4032, 128), // crosses the end
            &|r| publish(r, &geo, 0, "a", 128, 8),    // in the directory
            &|r| publish(r, &geo, 0, "a", 648, 8),    // misaligned
            &|r| publish(r, &geo, 0, "a", u64::MAX - 63, 128), // overflow
            &|r| {
                publish(r, &geo, 0, "a", 640, 128);
                publish(r, &geo, 1, "b", 704, 8); // overlaps a
            },
            &|r| {
                publish(r, &geo, 0, "a", 640, 8);
                publish(r, &geo, 1, "a", 704, 8); // duplicate name
            },
        ];
        for (i, setup) in bad.iter().enumerate() {
            assert!(
                matches!(check(*setup), Err(RegionError::Corrupt(_))),
                "case {i}"
            );
        }
        let unterminated = check(&|r| {
            publish(r, &geo, 0, "a", 640, 8);
            for b in &r.entry(&geo, 0).unwrap().name {
                b.store(b'x', Ordering::Relaxed);
            }
        });
        assert!(matches!(unterminated, Err(RegionError::Corrupt(m)) if m.contains("terminated")));
    }

    #[test]
    fn an_allocation_pointer_that_would_overlap_an_object_is_corrupt() {
        let geo = Geometry {
            total: 4096,
            capacity: 4,
            data_start: 640,
        };
        let check = |bump: u64| {
            let buf = fresh(4096, 4);
            publish(buf.raw(), &geo, 0, "a", 640, 8);
            publish(buf.raw(), &geo, 1, "b", 704, 128);
            let h = buf.raw().header().unwrap();
            h.bump.store(bump, Ordering::Relaxed);
            validate_directory(buf.raw(), &geo)
        };
        for ok in [832, 896, 4096] {
            assert!(check(ok).is_ok(), "bump {ok}");
        }
        // Inside b (the next object would overlap it), before it, misaligned, past the end.
        for bad in [768, 640, 0, 840, 4160, u64::MAX] {
            assert!(
                matches!(check(bad), Err(RegionError::Corrupt(m)) if m.contains("allocation")),
                "bump {bad}"
            );
        }
    }

    #[test]
    fn objects_outside_the_view_are_refused() {
        let buf = fresh(4096, 4);
        let raw = buf.raw();
        assert!(raw.object::<TestWord>(4032, 1).is_some());
        assert!(raw.object::<TestWord>(4096, 1).is_none());
        assert!(raw.object::<TestWord>(4000, 1).is_none());
        assert!(raw.object::<TestWord>(usize::MAX - 63, 1).is_none());
        assert!(raw.zero(4088, 8));
        assert!(!raw.zero(4088, 9));
        assert!(!raw.zero(usize::MAX, 2));
    }

    #[test]
    fn state_word_packs_owner_phase_and_waiters() {
        let s = state::make(4_194_303, state::INITIALISING) | state::WAITERS;
        assert_eq!(state::owner(s), 4_194_303);
        assert_eq!(state::phase(s), state::INITIALISING);
        assert!(state::has_waiters(s));
        assert_eq!(state::make(0, state::EMPTY), 0);
    }
}
