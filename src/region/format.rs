//! The region's byte layout: header, directory entries and their state words (the checks
//! every open runs on them are in [`validate`](super::validate)).
//!
//! ```text
//! offset 0                 Header (128 bytes): magic, version, marker, sizes, fingerprint,
//!                          init state, directory capacity, data start, bump pointer,
//!                          creation flags, life-cycle word, attach-table size, max size
//! offset 128               Entry 0 .. Entry capacity-1 (128 bytes each)
//! 128 + capacity * 128     the attach table: ATTACH_SLOTS (128) words of 8 bytes
//! data_start (64-aligned)  objects, each at a 64-aligned offset, placed first fit in the
//!                          space no live entry covers (see `remove`)
//! total_size               end of the file (and of what may be touched)
//! max_size                 end of the mapping: a region grows up to it (see below)
//! ```
//!
//! # Growth
//!
//! A region created with a [`max_size`](crate::RegionOptions::max_size) above its size
//! grows when an object does not fit: a process extends the file (`fallocate`, so that
//! a filesystem that cannot back the new part fails that call, never a later access),
//! and only then raises `total_size` (one `fetch_max`: it never shrinks). Every process
//! maps the file at `max_size` from the start (address space only; objects never move),
//! and touches no byte at or past the file length it has itself observed (`fstat`): a
//! handle re-reads the length when it first meets an object beyond what it has verified,
//! so a `total_size` raised by a hostile peer never makes it touch pages past the end of
//! the file. The file may be longer than `total_size` (a grower stopped between the two
//! steps); never shorter.
//!
//! The attach table and the life-cycle word are the region's own protocol (who has it
//! open, and removing it when nobody does): see [`lifecycle`](super::lifecycle).
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
/// - 4: a `SeqLockArray` is contiguous data followed by one seqlock header per stripe of
///   elements (it was one full seqlock per element); the sizes of the two layouts can
///   coincide, so the version tells them apart.
/// - 5: the header records creation flags (`remove_when_unused`), a life-cycle word and
///   the size of an attach table of 128 process words placed after the directory (data
///   starts 1,024 bytes later than in version 4).
/// - 6: the header records a maximum size (`max_size`, the first of the reserved words);
///   a region may grow up to it, and its file may be longer than `total_size`.
/// - 7: objects can be removed ([`Region::remove`](super::Region::remove)): the entry
///   state word has three phase bits (`REMOVING` and `FREE` added; `WAITERS` is bit 3, the
///   owner bits 31..4); each entry has a generation count over its fields
///   (`generation`) and a user bitmap with one bit per attach-table word (`users`); the
///   header holds the creation lock (`create_lock`, after `max_size`).
/// - 8: a shared map's keys hash with SipHash-1-3 (its layout version 2: header magic
///   `"shmmap\x02\0"`; it was SipHash-2-4); a channel's `tail` word holds a `SLEEPER`
///   bit (62) and a 30-bit message count (its format version 2). Each object's own magic
///   tells the versions apart too, but only this version lets an older build refuse the
///   file as a whole (`VersionMismatch`, and `recreate_stale_format`) instead of reading
///   those objects as corrupt.
/// - 9: a histogram's stripes are owned by a thread each (an owner word first), keep a
///   sum per bucket beside each count, and a shared stripe follows the owned ones.
/// - 10: a `SeqLockArray`'s stripes of elements under 16 bytes are twice as long (32
///   elements of 8 to 15 bytes, 32 × ⌊8 / size⌋ smaller ones), its header `k` is at
///   `8·W + STRIPE_LEN·k` (was `8·W + 16·k`: the same only for elements of 16 bytes or
///   more), and the object is 8 bytes longer (`24 + len · (size + 1)`, rounded up to 8),
///   so that every header is inside its `UnsafeCell`s.
/// - 11: a channel publishes each record by the store of its header word (its format
///   version 3): the word at `tail` is 0 until then, a `pending` word follows
///   `free_cache` on the senders' line, `tail_cache` is gone from the receivers' line, and
///   a `SKIP` record kind replaces a record whose sender died before its header.
/// - 12: a channel's `lost` word has a top bit saying a repair counted its claim and has
///   not finished (its format version 4), so that a repair repeated after its repairer died
///   counts nothing. The creation lock's word holds a generation beside its holder's TID
///   ([`create_lock`]), and the first reserved word records the holder's start time
///   ([`create_holder`]), so that a holder that died and whose TID a new thread reused is
///   taken over.
/// - 13: no layout change. A process that takes over a dead owner's `INITIALISING` entry
///   sets its user bit before the CAS that names it the owner (was: after), and probers
///   count an owner alive only if its process holds a live attach-table word (with its
///   bit set in the entry, for an `INITIALISING` owner), so that an owner that died and
///   whose TID a new thread reused is taken over. An older build's taker would read dead
///   to this one between its CAS and its bit.
/// - 14: a `RawMutex` word (of a `Mutex`, a `ReentrantMutex`, a `Queue`, a
///   channel's send and receive locks, a map's stripe locks) holds its
///   holder's TID in bits 0..22 and the stamp of its start time in bits 22..30 (was: a
///   24-bit TID, bits 24..30 unknown); so do the `writer` word of a `SeqLock` and of
///   each stripe of a `SeqLockArray` (was: a TID in bits 0..=30) and an `RwLock`'s reader
///   slots (was: a TID); a write-locked `RwLock` state holds the writer's TID in bits
///   0..22 and a 5-bit stamp in bits 22..27 (was: a TID in bits 0..24), so that a dead holder
///   whose TID a new thread reused is taken over. An older build reads a stamped word as
///   garbage and would take a live holder's lock.
pub(crate) const VERSION: u32 = 14;
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
/// Words in the attach table: how many handles (of any processes) a region lists at once.
pub const ATTACH_SLOTS: u32 = 128;
/// Size of the attach table in bytes.
pub(crate) const ATTACH_SIZE: usize = ATTACH_SLOTS as usize * 8;

/// The header at offset 0.
#[repr(C)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`MARKER`].
    pub marker: AtomicU32,
    /// Size of the region in bytes: objects lie below it. The file is at least this long.
    /// Only ever raised (by a grower, after extending the file).
    pub total_size: AtomicU64,
    /// [`FINGERPRINT`].
    pub fingerprint: AtomicU64,
    /// [`INIT_READY`] once every other field is written.
    pub init_state: AtomicU32,
    /// Number of directory entries.
    pub capacity: AtomicU32,
    /// Offset of the first object: [`data_start_for`]`(capacity)`.
    pub data_start: AtomicU64,
    /// High-water mark of the data area (64-aligned): every object lies below it. Raised
    /// (`fetch_max`) by the creation lock's holder when it places an object beyond it.
    pub bump: AtomicU64,
    /// Creation options, fixed for the region's life: see [`flags`].
    pub flags: AtomicU32,
    /// The life-cycle word: see [`life`] for the bit layout.
    pub life: AtomicU32,
    /// Number of attach-table words: [`ATTACH_SLOTS`].
    pub attach_slots: AtomicU32,
    #[allow(dead_code)] // padding; part of the fingerprinted layout
    pad: AtomicU32,
    /// Who the TID in the life-cycle word is: that thread's TID and start time, as an
    /// attach-table word names a process (see [`slot`]); written by the thread right after
    /// it puts its TID in the life-cycle word, so that a TID reused by a new thread is not
    /// mistaken for it.
    pub remover: AtomicU64,
    /// The largest size the region may grow to (`total_size` at creation for a region
    /// that does not grow); fixed for the region's life, the length every process maps.
    pub max_size: AtomicU64,
    /// The creation lock: see [`create_lock`] for the layout. Every creation (claiming an
    /// entry, allocating its space, publishing its name) holds it.
    pub create_lock: AtomicU32,
    #[allow(dead_code)] // padding; part of the fingerprinted layout
    pad2: AtomicU32,
    #[allow(dead_code)] // room for later fields; part of the fingerprinted layout
    reserved: [AtomicU64; 4],
}

impl Header {
    /// The creation lock's holder word (see [`create_holder`]): the first reserved word,
    /// so the layout and its fingerprint are unchanged.
    #[inline]
    pub(crate) fn create_holder(&self) -> &AtomicU64 {
        &self.reserved[0]
    }
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
    /// The entry's generation, a sequence count over its fields: odd while a creator
    /// writes them (between its claim and the name's publication), even otherwise; it
    /// grows by 2 with every object the entry holds. A reader's copy of the fields is
    /// consistent if the count was the same even number before and after it.
    pub generation: AtomicU64,
    /// The user bitmap: bit `k` (bit `k % 64` of word `k / 64`) set means the handle
    /// holding attach-table word `k` may hold a reference to the object (see
    /// [`remove`](super::remove)).
    pub users: [AtomicU64; 2],
}

static_assertions::const_assert_eq!(size_of::<Header>(), HEADER_SIZE);
static_assertions::const_assert_eq!(size_of::<Entry>(), ENTRY_SIZE);
static_assertions::const_assert!(align_of::<Header>() <= OBJECT_ALIGN);
static_assertions::const_assert!(HEADER_SIZE.is_multiple_of(OBJECT_ALIGN));
static_assertions::const_assert!(ENTRY_SIZE.is_multiple_of(OBJECT_ALIGN));
static_assertions::const_assert!(ATTACH_SIZE.is_multiple_of(OBJECT_ALIGN));
// The offsets the lifecycle module documents for tools.
static_assertions::const_assert_eq!(offset_of!(Header, flags), 56);
static_assertions::const_assert_eq!(offset_of!(Header, life), 60);
static_assertions::const_assert_eq!(offset_of!(Header, remover), 72);
static_assertions::const_assert_eq!(offset_of!(Header, max_size), 80);
// Where every version of the format keeps its magic and version (what a stale-format
// check reads from a region of an older build).
static_assertions::const_assert_eq!(offset_of!(Header, magic), 0);
static_assertions::const_assert_eq!(offset_of!(Header, version), 8);
static_assertions::const_assert_eq!(offset_of!(Header, create_lock), 88);
static_assertions::const_assert_eq!(offset_of!(Entry, generation), 104);
static_assertions::const_assert_eq!(offset_of!(Entry, users), 112);
// One user bit per attach-table word.
static_assertions::const_assert_eq!(ATTACH_SLOTS, 128);

/// The header's creation flags (`Header::flags`), written once before the region is
/// published.
pub(crate) mod flags {
    /// The last process to detach removes the file (`RegionOptions::remove_when_unused`).
    pub const REMOVE_WHEN_UNUSED: u32 = 1;
    /// Every flag this build knows; a region with any other bit set is refused.
    pub const KNOWN: u32 = REMOVE_WHEN_UNUSED;
}

/// The life-cycle word (`Header::life`).
///
/// ```text
/// bits 31..3   TID of the thread retiring the region (RETIRING), or of the one that
///              unlinks it (RETIRED; 0 once unlinked); 0 while LIVE
/// bit  2       UNLISTED: some process had the region open without an attach-table word
///              (the table was full, or a handle lost its word: see `lifecycle`); sticky,
///              and the region is never removed unless forced
/// bits 1..0    phase
/// ```
///
/// | phase      | meaning                                                            |
/// |------------|--------------------------------------------------------------------|
/// | `LIVE`     | in use, or free to be used                                          |
/// | `RETIRING` | a remover checks that no live process is attached; any opener cancels it |
/// | `RETIRED`  | dead for good: no process may start using it; its file is being (TID ≠ 0) or has been (TID 0) unlinked |
///
/// Transitions: `LIVE -> RETIRING(t)` by CAS (remover `t`); `RETIRING(t) -> RETIRED(t)`
/// by CAS (remover `t`, after finding no live process attached); `RETIRING -> LIVE` by
/// CAS (an opener after registering, or the remover on finding a live process);
/// `RETIRING(dead) -> RETIRING(t)` by CAS; `any -> RETIRED(t)` by CAS (a forced removal);
/// `RETIRED(dead) -> RETIRED(t)` by CAS (takeover of the unlink); `RETIRED(t) ->
/// RETIRED(0)` by `t` after the unlink. `UNLISTED` is only ever set.
pub(crate) mod life {
    /// Mask of the phase bits.
    pub const PHASE: u32 = 0b11;
    /// In use.
    pub const LIVE: u32 = 0;
    /// A removal is checking the attach table.
    pub const RETIRING: u32 = 1;
    /// Removed or being removed; never used again.
    pub const RETIRED: u32 = 2;
    /// A process had it open without a table word.
    pub const UNLISTED: u32 = 0b100;
    /// Position of the TID.
    pub const TID_SHIFT: u32 = 3;

    /// The phase of `w`.
    #[inline]
    pub const fn phase(w: u32) -> u32 {
        w & PHASE
    }

    /// The TID of `w`.
    #[inline]
    pub const fn tid(w: u32) -> u32 {
        w >> TID_SHIFT
    }

    /// The word for `tid` in `phase`, keeping the `UNLISTED` bit of `old`.
    #[inline]
    pub const fn make(old: u32, tid: u32, phase: u32) -> u32 {
        (tid << TID_SHIFT) | (old & UNLISTED) | (phase & PHASE)
    }
}

/// An attach-table word: one handle of one process that has the region open.
///
/// ```text
/// bits 63..32  thread-group id (pid) of the process; 0: the word is free
/// bits 31..0   low 32 bits of the process's start time (field 22 of /proc/<pid>/stat,
///              clock ticks since boot); 0: unknown (only the pid is probed)
/// ```
///
/// A word is claimed (`0 -> word`) and released or pruned (`word -> 0`) by one CAS, so no
/// crash leaves half an entry. Any bits are possible in a hostile file: a pid of 0 with
/// a non-zero start, or above `PID_MAX_LIMIT`, names no process and reads as dead.
pub(crate) mod slot {
    /// The word for process `pid` started at `start`.
    #[inline]
    pub const fn make(pid: u32, start: u32) -> u64 {
        ((pid as u64) << 32) | start as u64
    }

    /// The pid of `w`.
    #[inline]
    pub const fn pid(w: u64) -> u32 {
        (w >> 32) as u32
    }

    /// The start time of `w`.
    #[inline]
    pub const fn start(w: u64) -> u32 {
        w as u32
    }
}

/// The entry state word.
///
/// ```text
/// bits 31..4   owner: TID of the thread that claimed, is initialising or is removing
///              the entry (the pid for a process's main thread; 0: abandoned by an
///              `init` that panicked, never a live thread)
/// bit  3       WAITERS: someone may be futex-waiting on this word
/// bits 2..0    phase
/// ```
///
/// | phase          | meaning                                                        |
/// |----------------|----------------------------------------------------------------|
/// | `EMPTY`        | never used; every later entry is `EMPTY` too                   |
/// | `CLAIMED`      | taken by `owner` (holding the creation lock), which is writing name, type and offset |
/// | `INITIALISING` | name, type and offset published; `owner` runs `init`           |
/// | `READY`        | the object may be used                                         |
/// | `REMOVING`     | `owner` is checking the user bitmap before freeing it          |
/// | `FREE`         | removed: no name; its object's space is free                   |
///
/// Transitions: `EMPTY`/`FREE -> CLAIMED` by CAS (a creator holding the creation lock);
/// `CLAIMED -> INITIALISING -> READY` by the owner with release stores; `CLAIMED -> EMPTY`
/// / `FREE` (what it was) when the owner finds no space; any `CLAIMED` entry `-> FREE` by
/// CAS, by the creation lock's holder, whatever TID it names (claims live only under the
/// lock, so one its holder finds is abandoned: a dead or misjudged earlier holder's, one
/// left by a creation that panicked or whose give-back or publication lost to a peer
/// flipping `WAITERS`, or garbage); `INITIALISING` of a
/// dead owner `->` the same phase with the new owner's TID, by CAS (takeover);
/// `READY -> REMOVING -> FREE` by a remover (or `REMOVING -> READY`: the object is in use);
/// `REMOVING` of a dead owner `-> READY` by CAS (anyone who finds it).
///
/// The owner is a thread, not a process: a process whose main thread has exited lives on
/// in its other threads while its pid reads as a zombie, so a pid would let a taker
/// initialise an object its live creator is still initialising. Entries never return to
/// `EMPTY` once named, so the entries ever used are always a prefix of the directory.
pub(crate) mod state {
    /// Mask of the phase bits.
    pub const PHASE: u32 = 0b111;
    /// Never used.
    pub const EMPTY: u32 = 0;
    /// Claimed; name not yet published.
    pub const CLAIMED: u32 = 1;
    /// Name published; object being initialised.
    pub const INITIALISING: u32 = 2;
    /// Object ready.
    pub const READY: u32 = 3;
    /// Object being removed.
    pub const REMOVING: u32 = 4;
    /// Removed; the entry and its extent are free.
    pub const FREE: u32 = 5;
    /// Someone may be waiting on the word.
    pub const WAITERS: u32 = 0b1000;
    /// Position of the owner's TID.
    pub const OWNER_SHIFT: u32 = 4;

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

/// The creation lock (`Header::create_lock`).
///
/// ```text
/// bits 31..23  GEN: the acquisition count (wrapping at 2^9): every acquisition, takeovers
///              included, bumps it; a release keeps it
/// bits 22..1   TID of the holder (Linux TIDs are below 2^22); 0: free
/// bit  0       WAITERS: someone may be futex-waiting on this word
/// ```
///
/// Taken by CAS from a free word, or from one whose holder is probed dead (by its TID, and
/// by the start time that the header's holder word records for it: see [`create_holder`])
/// or names the taker's own TID while the taker holds no creation lock (a dead holder whose
/// TID it reused), to [`next`](create_lock::next) (the next generation, the taker's TID):
/// the word changes with every acquisition, so no second prober's CAS from the word it
/// judged can succeed once someone took the lock from it, even a taker that reused the dead
/// holder's TID. Released by CAS to [`released`](create_lock::released) (waking if
/// `WAITERS` was set).
pub(crate) mod create_lock {
    /// Someone may be waiting.
    pub const WAITERS: u32 = 1;
    /// Position of the holder's TID.
    pub const TID_SHIFT: u32 = 1;
    /// The TID bits.
    pub const TID_MASK: u32 = ((1 << 22) - 1) << TID_SHIFT;
    /// Position of the generation.
    pub const GEN_SHIFT: u32 = 23;

    /// The holder of `w` (0: free).
    #[inline]
    pub const fn holder(w: u32) -> u32 {
        (w & TID_MASK) >> TID_SHIFT
    }

    /// The word that takes `w` (free, or held by a dead thread) for `tid`: the next
    /// generation, `tid`, and `w`'s `WAITERS` bit (sleepers of a dead holder still sleep).
    #[inline]
    pub const fn next(w: u32, tid: u32) -> u32 {
        ((w >> GEN_SHIFT).wrapping_add(1) << GEN_SHIFT)
            | ((tid << TID_SHIFT) & TID_MASK)
            | (w & WAITERS)
    }

    /// The word that releases `w`: its generation only.
    #[inline]
    pub const fn released(w: u32) -> u32 {
        w & !(TID_MASK | WAITERS)
    }

    /// `w` without its `WAITERS` bit: the holder and generation, what the holder word
    /// records.
    #[inline]
    pub const fn held(w: u32) -> u32 {
        w & !WAITERS
    }
}

/// The creation lock's holder word (the header's first reserved word).
///
/// ```text
/// bits 63..32  the lock word its holder took by CAS, without WAITERS (generation and TID)
/// bits 31..0   the holder's start time (low 32 bits of field 22 of /proc/<tid>/stat;
///              0: unknown)
/// ```
///
/// Written by a taker just after its CAS succeeds, and by nobody else. A prober that finds
/// the holder's TID alive reads it: if its high half is the lock word it probed (less
/// `WAITERS`), the holder wrote it (only a thread with that TID that took that generation
/// does, and while the holder lives no other thread has its TID), so a thread with that
/// TID and another start time is a new thread that reused a dead holder's TID. Any other
/// value (an earlier holder's record: the holder was killed before its store, or the read
/// was stale) leaves the holder to be probed by its TID alone.
pub(crate) mod create_holder {
    /// The word for lock word `held` (without `WAITERS`) and start time `start`.
    #[inline]
    pub const fn make(held: u32, start: u32) -> u64 {
        (held as u64) << 32 | start as u64
    }

    /// The lock word (without `WAITERS`) that `w` records.
    #[inline]
    pub const fn held(w: u64) -> u32 {
        (w >> 32) as u32
    }

    /// The start time that `w` records.
    #[inline]
    pub const fn start(w: u64) -> u32 {
        w as u32
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
    let parts: [u64; 42] = [
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
        offset_of!(Header, flags) as u64,
        offset_of!(Header, life) as u64,
        offset_of!(Header, attach_slots) as u64,
        offset_of!(Header, remover) as u64,
        ATTACH_SLOTS as u64,
        (life::TID_SHIFT as u64) << 32 | life::UNLISTED as u64,
        (life::RETIRING as u64) << 32 | life::RETIRED as u64,
        flags::KNOWN as u64,
        offset_of!(Header, max_size) as u64,
        offset_of!(Header, create_lock) as u64,
        offset_of!(Entry, generation) as u64,
        offset_of!(Entry, users) as u64,
        (state::REMOVING as u64) << 32 | state::FREE as u64,
        state::PHASE as u64,
    ];
    let mut h = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        h = fnv1a(h, parts[i]);
        i += 1;
    }
    h
};

/// Offset of the attach table in a region with `capacity` directory entries.
pub(crate) const fn attach_table_for(capacity: u32) -> usize {
    HEADER_SIZE + capacity as usize * ENTRY_SIZE
}

/// Offset of the first object in a region with `capacity` directory entries.
pub(crate) const fn data_start_for(capacity: u32) -> usize {
    attach_table_for(capacity) + ATTACH_SIZE
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
    /// Size in bytes at open (the file's length then, at most `max`): the bound of what
    /// the open checked and what the handle may touch at first.
    pub total: usize,
    /// The maximum size (= the mapping's length); `total` for a region that does not grow.
    pub max: usize,
    /// Directory entries.
    pub capacity: u32,
    /// Offset of the first object.
    pub data_start: usize,
    /// Creation flags ([`flags`]), only known bits.
    pub flags: u32,
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

    /// Attach-table word `i` of `geo`, or `None` if it lies outside the view or the table.
    pub(crate) fn attach_slot(self, geo: &Geometry, i: u32) -> Option<&'a AtomicU64> {
        if i >= ATTACH_SLOTS {
            return None;
        }
        let off = attach_table_for(geo.capacity).checked_add(i as usize * 8)?;
        if off.checked_add(8)? > self.len.min(geo.data_start) {
            return None;
        }
        // SAFETY: `[off, off + 8)` lies within the view (checked above); `off` is a
        // multiple of 8 from a 64-aligned base. Any bits are a valid `AtomicU64`, and `&`
        // access is what atomics are for.
        Some(unsafe { self.base.add(off).cast::<AtomicU64>().as_ref() })
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
    h.max_size.store(geo.max as u64, Ordering::Relaxed);
    h.fingerprint.store(FINGERPRINT, Ordering::Relaxed);
    h.capacity.store(geo.capacity, Ordering::Relaxed);
    h.data_start.store(geo.data_start as u64, Ordering::Relaxed);
    h.bump.store(geo.data_start as u64, Ordering::Relaxed);
    h.flags.store(geo.flags & flags::KNOWN, Ordering::Relaxed);
    h.life.store(life::LIVE, Ordering::Relaxed);
    h.remover.store(0, Ordering::Relaxed);
    h.attach_slots.store(ATTACH_SLOTS, Ordering::Relaxed);
    h.create_lock.store(0, Ordering::Relaxed);
    // Release: pairs with the acquire load of `init_state` in `validate_header`, for a
    // reader that could see the mapping before the publishing syscall (link, fork, fd
    // passing) — none can, but the header then does not depend on it.
    h.init_state.store(INIT_READY, Ordering::Release);
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
    /// The entry's generation when the fields were read (exact for
    /// [`read_consistent`](Self::read_consistent): it names the object the fields
    /// describe; a hint for [`read`](Self::read)).
    pub generation: u64,
}

impl EntrySnapshot {
    /// Copies the fields of `e` if no creator rewrote them meanwhile (the entry's
    /// generation was the same even number before and after); `None` otherwise (look
    /// again). Only needed where entries may be reused under the reader: not under the
    /// creation lock, and not for an entry the reader pinned or owns.
    pub(crate) fn read_consistent(e: &Entry) -> Option<Self> {
        // Acquire: pairs with the release store of the even count after a creator's
        // writes (`publish` in `Region::fill`): a count read even here means those writes are done.
        let before = e.generation.load(Ordering::Acquire);
        if !before.is_multiple_of(2) {
            return None;
        }
        let mut snap = EntrySnapshot::read(e);
        snap.generation = before;
        // Acquire fence: if any load above read a value a later creator wrote, its odd
        // count (stored before a release fence in `Region::fill`) is seen by the load below.
        crate::sync::fence(Ordering::Acquire);
        // Relaxed: ordered by the fence.
        (e.generation.load(Ordering::Relaxed) == before).then_some(snap)
    }

    /// [`read_consistent`](Self::read_consistent), tried a bounded number of times (for
    /// tools: an entry that keeps changing, or whose generation a peer left odd, is
    /// skipped: `None`).
    pub(crate) fn read_settled(e: &Entry) -> Option<Self> {
        (0..64).find_map(|_| {
            let snap = Self::read_consistent(e);
            if snap.is_none() {
                crate::sync::spin_loop();
            }
            snap
        })
    }

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
            generation: r64(&e.generation),
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
        self.span(geo)?;
        Ok((offset, size))
    }

    /// The part of `[data_start, total)` of `geo` that a creator must keep clear of for
    /// this entry: its extent, clipped at `total` (an extent past the end this handle
    /// verified may belong to a larger mapping another handle sees, or be garbage:
    /// either way nothing is placed over it); `None` if it reserves nothing here (no
    /// extent, or one at a misaligned offset or outside the data area, which
    /// [`placement`](Self::placement) refuses to hand out).
    pub(crate) fn reserved(&self, geo: &Geometry) -> Option<(usize, usize)> {
        let offset = usize::try_from(self.offset).ok()?;
        if self.size == 0
            || !offset.is_multiple_of(OBJECT_ALIGN)
            || offset < geo.data_start
            || offset >= geo.total
        {
            return None;
        }
        let room = geo.total - offset;
        let extent = round_up(self.size)
            .and_then(|x| usize::try_from(x).ok())
            .map_or(room, |x| x.min(room));
        Some((offset, extent))
    }

    /// The entry's extent `(offset, extent)`: its object's bytes rounded up to 64, if
    /// they lie in the data area of `geo` at a 64-aligned offset (an extent of 0: none).
    pub(crate) fn span(&self, geo: &Geometry) -> Result<(usize, usize), String> {
        let extent = round_up(self.size)
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| "size overflows".to_owned())?;
        if extent == 0 {
            return Ok((0, 0));
        }
        let offset = usize::try_from(self.offset).map_err(|_| "offset overflows".to_owned())?;
        if !offset.is_multiple_of(OBJECT_ALIGN) {
            return Err(format!("offset {offset} not {OBJECT_ALIGN}-aligned"));
        }
        if offset < geo.data_start {
            return Err(format!("offset {offset} inside the header or directory"));
        }
        match offset.checked_add(extent) {
            Some(end) if end <= geo.total => Ok((offset, extent)),
            _ => Err(format!("extent [{offset}, +{extent}) beyond {}", geo.total)),
        }
    }
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

/// Test helpers: a heap buffer standing in for a mapping.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A heap buffer standing in for a mapping: 64-aligned, accessed only atomically.
    pub(crate) struct Buf(Vec<Block>);
    #[repr(C, align(64))]
    pub(crate) struct Block([AtomicU64; 8]);

    impl Buf {
        pub(crate) fn new(len: usize) -> Self {
            assert_eq!(len % 64, 0);
            Buf((0..len / 64).map(|_| Block(Default::default())).collect())
        }

        /// A view of the whole buffer.
        pub(crate) fn raw(&self) -> Raw<'_> {
            self.prefix(self.0.len() * 64)
        }

        /// A view of the first `len` bytes.
        pub(crate) fn prefix(&self, len: usize) -> Raw<'_> {
            assert!(len <= self.0.len() * 64);
            let base = NonNull::new(self.0.as_ptr() as *mut u8).unwrap();
            // SAFETY: the Vec's buffer is 64-aligned (`Block`), at least `len` bytes long
            // (asserted), lives as long as `&self`, and is only accessed through atomics
            // (interior mutability makes writes through a pointer from `as_ptr` sound).
            unsafe { Raw::new(base, len) }
        }
    }

    /// A buffer of `len` bytes holding a fresh region header with `capacity` entries.
    pub(crate) fn fresh(len: usize, capacity: u32) -> Buf {
        let buf = Buf::new(len);
        let geo = Geometry {
            total: len,
            max: len,
            capacity,
            data_start: data_start_for(capacity),
            flags: 0,
        };
        write_header(buf.raw(), &geo);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::testing::fresh;
    use super::*;

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
