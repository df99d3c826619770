//! [`SeqLockArray<T>`]: a fixed-length array of [`Pod`] values in seqlocked *stripes* of
//! neighbouring elements, with per-element reads and writes, consistent whole-array
//! snapshots, and all-or-nothing batch writes.
//!
//! # Layout
//!
//! The elements' bytes are contiguous, as in a `[T]`, and are followed by one 16-byte
//! header per **stripe** of [`STRIPE_LEN`](SeqLockArray::STRIPE_LEN) consecutive elements
//! (32 elements of 8 to 15 bytes, so 256 bytes of `f64`s: four cache lines, and up to 480
//! bytes of larger elements; 32 × ⌊8 / size⌋ smaller ones, 160 to 256 bytes; 16 elements
//! of 16 bytes or more; 128 for a zero-sized `T`). A header is a seqlock without data of
//! its own (the `seq` and `writer` words of [`SeqLock`], with the same meaning) and a
//! `dirty` word that says which element of the stripe the last write was writing:
//!
//! ```text
//! offset 0                                  8·W          8·W + L·(S−1) + 16    size_for(len)
//! ├── data: len × size_of::<T>() bytes ──┬──┼── S stripe headers, L apart ─┼── unused ─┤
//! │ stripe 0 (L elements) │ stripe 1 │ ... │pad│ h0 ··· │ h1 ··· │ ... │ h(S−1) │          │
//! └───────────────────────┴──────────┴─────┴───┴────────┴────────┴─────┴────────┴──────────┘
//! W = ⌈len · size / 8⌉ data words, L = STRIPE_LEN, S = ⌈len / L⌉ stripes
//! header k (16 bytes, at 8·W + L·k): seq: u32 | writer: u32 | dirty: u32 | reserved: u32
//! ```
//!
//! Header `k` starts `L·k` bytes after the data (one byte per element of the stripe
//! before it; `L` is a power of two and at least 16, so the headers do not overlap, and
//! the bytes between them are unused). So the header of element `i` is
//! `8·W + (i & !(L − 1))` bytes into the object, one mask from the index: a
//! [`get`](SeqLockArray::get) costs no shift to find it. It fits inside the object's
//! `UnsafeCell`s, which cover its first `24 + len · (size + 1)` bytes (the rest, at most
//! 7, is the padding that rounds the size to 8): `8·W ≤ len · size + 7` and
//! `L·(S−1) ≤ len − 1`, so the headers end at most `len · (size + 1) + 22` bytes in.
//!
//! The data is accessed only as whole 8-byte words (`AtomicU64`, relaxed: the atomic
//! memcpy of `SeqLock`), never by a narrower access. One exception, on x86-64 only: a
//! bulk copy of 8 words or more (a snapshot's or a batch's) on a CPU that reports AVX
//! reads pairs of aligned words with aligned 16-byte `vmovdqa` (VEX.128) loads, which
//! such a CPU performs as single atomic accesses, so each 8-byte half is a value some
//! writer stored, as a relaxed word load would return (see `load_words_avx`; without AVX
//! the word loop is used). A stripe's data is a whole number of words, so every word belongs
//! to exactly one stripe. An element that does not
//! fill whole words is read from the words that cover it and written by merging its bytes
//! into them (under the stripe's lock: the other bytes of a word belong to the same
//! stripe, and are stored back unchanged). No reference to a `T` in the array is ever
//! made, so `T`'s alignment (even above 8) puts no constraint on the layout.
//!
//! **Memory**: `size_of::<T>() + 1` bytes per element, plus at most 31 bytes per array:
//! `size_for(len)` is `24 + len · (size_of::<T>() + 1)` rounded up to 8 (the object is
//! `len` units of an element and one byte, so that its size is a function of `len` that
//! `size_of_val` computes): the byte per element is what places the headers `STRIPE_LEN`
//! bytes apart. A `SeqLockArray<f64>` costs 9 bytes per element (a `SeqLock<f64>` costs
//! 16), a `SeqLockArray<u8>` 2.
//!
//! All zero bytes are `len` elements of `T::zeroed()` with every stripe stable and
//! unlocked; every bit pattern is valid (hostile words cost retries, a takeover or a
//! [`SeqLockError`], never undefined behaviour, a panic or a hang of a call that a writer
//! will unblock).
//!
//! # Protocol
//!
//! Each stripe is a [`SeqLock`] whose data is its elements (see that module for the
//! writer lock, its takeover from a dead writer, and the waits; the orderings below pair
//! exactly as there):
//!
//! ```text
//! element writer (element i, stripe k)     element reader (element i)
//! k.writer: CAS 0 → tid (Acquire)          s1 = k.seq.load(Acquire)     -- pairs with (c)
//! k.dirty.store(i + 1, Relaxed)    (d)     if s1 odd: wait, retry
//! k.seq: fetch_or 1 (Release)      (b)     i's words: relaxed loads
//! fence(Release)                   (a)     fence(Acquire)               -- pairs with (a)
//! i's words: relaxed stores                s2 = k.seq.load(Relaxed); retry unless s1 == s2
//! k.seq.store(odd + 1, Release)    (c)
//! k.writer: swap 0 (Release), wake?        -- pairs with the next writer's Acquire CAS
//! ```
//!
//! - **Snapshot** ([`SeqLockArray::snapshot`]): load every stripe's `seq` (Acquire,
//!   pairs with (c)), copy the whole data, one Acquire fence (pairs with every writer's
//!   (a)), reload every `seq` (Relaxed: ordered by the fence) and accept only if all
//!   were even and their sum is unchanged (see `snapshot_once` for why the sum is exact
//!   up to the `u32` wrap). It is a consistent cut: if the copy saw a store of a write
//!   `W` to stripe `b`, the fences make `W`'s odd store (b) visible to the recheck; and
//!   if the first pass saw, in stripe `a`, the even store of a write that in some
//!   writer's program order follows the odd store of a write to stripe `b`, the Acquire
//!   load of `a` makes that odd store visible to `b`'s recheck.
//! - **Batch write** ([`SeqLockArray::set_all`], [`SeqLockArray::write_batch`],
//!   [`SeqLockArray::write_batch_timeout`]): take every stripe's writer lock without
//!   ever waiting while holding one (block on one stripe's lock holding nothing, *try*
//!   the others; if one is busy, release everything and block on that one), set every
//!   `dirty` to 0 ("the whole stripe"), mark every stripe odd (b), one Release fence (a),
//!   store all the data, mark every stripe even (c), release the locks. All odd stores
//!   precede all even stores, so by the cut argument a snapshot sees the batch entirely or
//!   not at all.
//! - **`dirty`** (d) is read only by a writer that took a stripe's lock and found `seq`
//!   odd: an Acquire load of `seq` (pairs with the Release RMW (b) that made it odd)
//!   makes the `dirty` store before it visible. Values: `i + 1` = only element `i` of
//!   the stripe (relative index) may be torn; anything else (0 from a batch or from a
//!   write to another element of a torn stripe, or garbage) = the whole stripe may be
//!   torn.
//!
//! **Lock order.** A batch never waits while it holds a stripe lock, so it is never part
//! of a lock-order cycle: a thread holding element guards is never blocked by a batch
//! that waits for one of them. Element guards are ordinary non-reentrant locks: a thread
//! holding one must not lock another element of the *same* stripe nor start a batch
//! write (either waits for itself), and threads that hold several guards at once must
//! take them in one global order (e.g. increasing index), as with any set of mutexes.
//!
//! The price of that rule: a batch gets in only at an instant when no other stripe is
//! held, so element writers that keep several stripes busy can delay a batch without
//! bound (measured: with two threads holding ~50 µs guards on random stripes of a
//! 1,000-stripe array, 6 of 20 `write_batch_timeout(200 ms)` calls timed out), and two
//! batches can make each other retry. Nothing deadlocks and every timed batch keeps its
//! deadline; where batches must win under steady element writes, bound them with
//! `write_batch_timeout` and retry, or take the element guards less often.
//!
//! A write to one element makes readers of the *other elements of its stripe* retry (they
//! share the sequence word), never readers of another stripe. Elements of different
//! stripes never share a data word; a stripe's header shares a cache line with the
//! headers of the stripes next to it when stripes are shorter than 64 elements (false
//! sharing: a cache miss for their readers, never a retry).
//!
//! # Owner death
//!
//! A writer killed between (b) and (c) leaves its stripe **torn**: `seq` odd, its TID in
//! `writer`. It is taken over and reported exactly as a [`SeqLock`]'s (readers of any
//! element of the stripe: [`try_get`](SeqLockArray::try_get) and the timed calls return
//! [`SeqLockError::WriterDied`], [`get`](SeqLockArray::get) and
//! [`snapshot`](SeqLockArray::snapshot) wait for the repair), with one refinement for
//! writers, from `dirty`: which elements of the stripe may be torn.
//!
//! - If a dead *element* writer left element `i` torn (`dirty = i + 1`), a write to `i`
//!   repairs the stripe: [`set`](SeqLockArray::set) silently, [`lock`](SeqLockArray::lock)
//!   and [`update`](SeqLockArray::update) through [`OwnerDied`] and
//!   [`mark_consistent`](SeqLockArrayWriteGuard::mark_consistent), as for a `SeqLock`.
//!   A write to another element `j` of the stripe is stored (its guard is not
//!   recovered: `j` is intact), but the stripe stays torn until `i` is repaired. While
//!   it stores `j`, `dirty` says "the whole stripe" (0), and names `i` alone again only
//!   once every store of `j` is done (a Release store, read with Acquire by the next
//!   locker): if that writer dies mid-write too, `i` and `j` may both be torn, and the
//!   repair of `i` alone must not end the stripe's tear.
//!
//! The invariant: **a torn stripe becomes even again only when every element a dead
//! writer may have torn has been rewritten** (an element write ends the tear only if
//! `dirty` names that one element; a batch write rewrites them all), or a writer
//! acknowledged the torn value through [`OwnerDied`] and
//! [`mark_consistent`](SeqLockArrayWriteGuard::mark_consistent).
//! - If a dead *batch* writer left the stripe torn (`dirty = 0`), every element is
//!   suspect: element writes get [`OwnerDied`] (a repaired element is stored, the stripe
//!   stays torn), and the next batch write repairs the stripe:
//!   [`set_all`](SeqLockArray::set_all) silently,
//!   [`write_batch`](SeqLockArray::write_batch) through [`OwnerDied`] (its closure is not
//!   called) and [`SeqLockArrayBatchGuard::mark_consistent`].
//!
//! # Crash windows
//!
//! "One slice" is at most 800 µs after the kernel has torn the writer down, as for
//! [`SeqLock`] (whose table this follows line for line, per stripe).
//!
//! | step of an element write (stripe k)      | a SIGKILL there leaves                     | repaired by, how fast |
//! |------------------------------------------|--------------------------------------------|-----------------------|
//! | `k.writer` CAS `0 → tid` done, or `dirty` stored | lock held by a dead TID; data consistent | next writer of stripe k: takeover after one slice, plain guard; readers unaffected |
//! | `k.seq` odd (b), element's word stores   | stripe k torn (only element `i`, `dirty = i + 1`) | next writer of `i`: takeover after one slice, `OwnerDied` (`set` repairs silently); writers of other elements of k: stored, k stays torn; readers of k: `try_get`/`snapshot_timeout` `WriterDied` at once / after one slice, `get`/`snapshot` wait for the repair; other stripes unaffected |
//! | in a stripe k already torn on element `j`: `dirty = 0`, then the word stores of `i ≠ j` | k torn as a whole (`i` and `j` may both be torn) | as a stripe a batch writer left torn: element writers `OwnerDied`, k stays torn; the next batch write repairs it |
//! | same, after the stores of `i` and `dirty = j + 1` | k torn on `j` only; `i` complete | as the second line for `j` |
//! | `k.seq` even store (c) done              | lock held by a dead TID; data consistent   | as the first line |
//! | `k.writer` swapped to 0                  | a complete write; at worst a missed wake   | waiters re-check after their slice (≤ 800 µs) |
//! | recovered guard dropped unmarked, or a panicking closure | stripe k still torn, no owner | next writer of k at once (`OwnerDied` again for `i`); readers as above |
//! | writer SIGSTOPped anywhere               | a live owner: nothing to repair            | waiters wait; timed calls `Timeout`; `try_get` `WriterActive`; other stripes unaffected |
//!
//! | step of a batch write (all stripes)      | a SIGKILL there leaves                     | repaired by, how fast |
//! |------------------------------------------|--------------------------------------------|-----------------------|
//! | taking the stripe locks                  | some stripes locked by a dead TID; data consistent | next element writer of each: takeover after one slice, plain guard; next batch: one slice and two probes in all |
//! | `dirty = 0` and `seq` odd (b) on some stripes | those stripes odd (`dirty = 0`); no data written yet | as the next line (the data is in fact intact, but nothing says so) |
//! | data stores                              | every stripe begun torn as a whole (`dirty = 0`) | next batch write: takeover of every stripe after one slice and two probes (the TID found dead is taken over at once in every further stripe); `set_all` rewrites everything, `write_batch` returns `OwnerDied` (closure not called) and publishes only a guard marked consistent; element writers: `OwnerDied`, stripe stays torn; readers as for a torn stripe |
//! | `seq` even stores (c), stripe by stripe   | stripes `0..j` new and consistent, the rest torn as a whole | as the line above for the rest: no snapshot sees a mix, as every stripe not yet even is refused |
//! | unlocking, stripe by stripe              | a complete batch; locks of dead TID        | element writers: takeover after one slice, plain guard; next batch: one slice and two probes in all |
//! | recovered batch guard dropped unmarked, or a panicking batch closure | nothing stored; the stripes that were torn stay torn, no owner | next writer of each at once (`write_batch`: `OwnerDied` again); readers as for a torn stripe |
//! | batch writer SIGSTOPped anywhere          | a live owner of the stripe locks it took (all of them once it has begun writing) | element writers of those stripes (of every stripe, once it writes) wait; their timed calls `Timeout` at their deadline; batch writers wait holding no lock (`write_batch_timeout`: `Timeout`); readers of stripes it made odd: `try_get`/`try_snapshot` `WriterActive`, timed reads `Timeout`, `get`/`snapshot` wait |
//!
//! A batch writer takes over without a new probe every stripe held by a TID it already
//! found dead in the same pass over the stripes (a dead batch writer holds them all): a
//! pass tries locks without sleeping, so the window in which that TID could be reused by a
//! new thread that locks one of those stripes is microseconds, the same TID-reuse limit as
//! a probe's. A pass that ends blocked on a busy stripe forgets the TID.
//!
//! Limits: those of [`SeqLock`] (one PID namespace, TID reuse, a 32-bit `seq`).
//!
//! Out-of-range indices panic, like slice indexing.
//!
//! [`OwnerDied`]: crate::OwnerDied

use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::single::{SeqLock, SeqLockError, is_writing};
use crate::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};
use crate::wait::past;

mod copy;
mod read;
mod write;

pub use write::{SeqLockArrayBatchGuard, SeqLockArrayWriteGuard};

/// Attempts [`SeqLockArray::try_snapshot`] and [`SeqLockArray::try_get`] make before
/// giving up.
const TRY_ATTEMPTS: u32 = if cfg!(loom) { 2 } else { 64 };
/// Spins between two attempts.
const SPINS: u32 = if cfg!(loom) { 1 } else { 200 };

/// Elements per stripe for elements of `size` bytes: 32 × ⌊8 / size⌋ (a power of two
/// for every size below 8), 32 for 8 to 15 bytes, 16 for 16 bytes or more, 128 for
/// zero-sized elements. Always a multiple of 16 (so a stripe's data is a whole number
/// of 8-byte words, and its 16-byte header costs at most one byte per element) and a
/// power of two (so `i / STRIPE_LEN` is a shift).
///
/// Why about 256 bytes of data per stripe for small elements: a snapshot loads every
/// stripe's sequence word twice, and on x86-64 its copy and those loads share the load
/// ports; 128-byte stripes made the sequence words of a 1,000-`f64` snapshot a fifth of
/// its time (BENCHMARKS.md). Larger stripes cost a write's neighbours: a reader of any
/// element in the stripe being written waits or retries, and element writers of one
/// stripe take turns; at 256 bytes that is four cache lines, which writers of
/// neighbouring elements already share with each other's lines and with the readers'.
///
/// Under loom, stripes are 2 elements of 8 bytes or more (8 of smaller ones), so that
/// models span several stripes with few atomics; the protocol is the same.
const fn stripe_len(size: usize) -> usize {
    if cfg!(loom) {
        if size.is_multiple_of(8) { 2 } else { 8 }
    } else if size == 0 {
        128
    } else if size >= 16 {
        16
    } else if size >= 8 {
        32
    } else {
        32 * (8 / size)
    }
}

/// A stripe's header (see the module docs' layout). All zeroes: stable, unlocked.
#[repr(C)]
pub(crate) struct Stripe {
    /// `seq` and `writer`, with [`SeqLock`]'s meaning and protocol; its data is the
    /// stripe's elements, which live in the array's data words.
    lock: SeqLock<()>,
    /// Which element of the stripe the current (or last) write writes.
    ///
    /// | value            | meaning                                                   |
    /// |------------------|-----------------------------------------------------------|
    /// | `1..=STRIPE_LEN` | an element write: only element `value - 1` (relative index) |
    /// | anything else    | a batch write, or a write to another element of a torn stripe (0), or garbage: the whole stripe |
    ///
    /// Read only by a writer that holds the lock and found `seq` odd.
    dirty: AtomicU32,
    /// Zero; keeps headers 8-aligned.
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Stripe, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Stripe, u64);

impl Stripe {
    #[cfg(loom)]
    fn new() -> Self {
        Stripe {
            lock: SeqLock::new(()),
            dirty: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }
}

/// A fixed-length array of [`Pod`] values in seqlocked stripes, with per-element reads
/// and writes, consistent whole-array snapshots and all-or-nothing batch writes.
///
/// Slice-shaped: the length is chosen at creation ([`new`](Self::new),
/// [`from_slice`](Self::from_slice), or a region's
/// `get_or_init_slice(name, len, |a: &SeqLockArray<T>| ..)`) and never changes. Elements are grouped in stripes of [`STRIPE_LEN`](Self::STRIPE_LEN)
/// neighbours that share a sequence word and a writer lock: a write makes readers of its
/// own stripe retry, never readers of another. See the [module docs](self) for the
/// layout, the protocol and what happens when a writer dies.
///
/// # Layout
///
/// The elements' bytes contiguous, then a 16-byte header per stripe; 8-aligned;
/// `size_of::<T>() + 1` bytes per element (9 for `f64`, 2 for `u8`), plus at most 31
/// per array. All zeroes is an array of `T::zeroed()`.
///
/// ```
/// use shmstate::{SeqLockArray, Shared};
/// assert_eq!(<SeqLockArray<f64> as Shared>::size_for(1000), Some(24 + 9 * 1000));
/// assert_eq!(<SeqLockArray<u8> as Shared>::size_for(1000), Some(24 + 2 * 1000));
/// ```
///
/// # Examples
///
/// ```
/// use shmstate::SeqLockArray;
///
/// let temps = SeqLockArray::<f64>::new(4);
/// temps.set(2, 21.5);
/// temps.update(2, |t| *t += 0.5).expect("no writer died mid-write");
/// assert_eq!(temps.get(2), 22.0);
/// temps.set_all(&[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(temps.to_vec(), [1.0, 2.0, 3.0, 4.0]);
/// let mut buf = [0.0; 4];
/// temps.snapshot(&mut buf);
/// assert_eq!(buf.iter().sum::<f64>(), 10.0);
/// ```
#[cfg(not(loom))]
#[repr(C)]
pub struct SeqLockArray<T> {
    /// 24 bytes that, with one byte per element of `units`, make room for the headers
    /// inside the `UnsafeCell`s (`Self::bytes_for`; module docs, "Layout"). Never
    /// accessed as such: the object is addressed from its base, as data words and stripe
    /// headers, and the bytes between and after them are unused.
    _head: [crate::sync::UnsafeCell<u64>; 3],
    /// `len` units of `size_of::<T>() + 1` bytes: the metadata of `&Self` is `len`, and
    /// `size_of_val` is `size_for(len)`.
    units: [crate::sync::UnsafeCell<Unit<T>>],
}

/// An element's share of the object: its bytes and one byte toward the stripe headers.
/// Only its size is used.
#[cfg(not(loom))]
#[repr(C, packed)]
struct Unit<T>(#[allow(dead_code)] T, #[allow(dead_code)] u8);

/// A fixed-length array of [`Pod`] values in seqlocked stripes (the loom build: loom
/// atomics are objects, so the words live in boxes; same protocol).
#[cfg(loom)]
pub struct SeqLockArray<T> {
    len: usize,
    stripes: Box<[Stripe]>,
    words: Box<[AtomicU64]>,
    _elem: core::marker::PhantomData<fn() -> T>,
}

// SAFETY: every byte of the object is accessed only through atomics (the data words as
// `AtomicU64`s with relaxed loads and stores, the headers as `AtomicU32`s), inside the
// `UnsafeCell`s that make up the object, so sharing `&SeqLockArray<T>` cannot cause a data
// race. No `&T` into the array is handed out: values leave it as copies rebuilt from
// bytes, valid for any bytes since `T: Pod` (see `AtomicCell`'s `Sync` impl for why `T:
// Send` is not needed).
#[cfg(not(loom))]
unsafe impl<T: Pod> Sync for SeqLockArray<T> {}

// SAFETY: `Shared` items 1-6:
// 1. all zero bytes: data `T::zeroed()` (`Pod: Zeroable`), every header `seq` 0 (even),
//    `writer` 0 (unlocked), `dirty` 0;
// 2. every bit pattern is valid: the object is `UnsafeCell`s of `u64`s and of `Unit<T>`
//    (`T: Pod` and a `u8`), accessed only as `AtomicU64`/`AtomicU32` words; hostile
//    words are handled (module docs);
// 3. no pointers (this impl exists only under `cfg(not(loom))`);
// 4. `#[repr(C)]`: 24 bytes, then `len` packed units of `size_of::<T>() + 1` bytes,
//    align 8 (of `u64`); `size_for` is `bytes_for`, checked against `size_of_val` in the
//    tests;
// 5. `Sync` (impl above); all `&self` methods are made for concurrent use;
// 6. `from_raw_parts` builds a slice pointer of `len` units at `ptr` and casts it to
//    `Self`, whose tail is that slice: `size_of_val` is exactly `size_for(len)` bytes.
#[cfg(not(loom))]
unsafe impl<T: crate::Element> crate::Shared for SeqLockArray<T> {
    const TAG: crate::TypeTag = crate::TypeTag::new(crate::Kind::SEQLOCK_ARRAY, T::ELEM);
    const ALIGN: usize = 8;

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        Self::bytes_for(len)
    }

    #[inline]
    fn from_raw_parts(ptr: core::ptr::NonNull<u8>, len: usize) -> core::ptr::NonNull<Self> {
        let slice = core::ptr::NonNull::slice_from_raw_parts(ptr, len);
        // Cast of a slice pointer to a struct whose tail is a slice: same address and
        // metadata (`len` units).
        let raw = slice.as_ptr() as *mut SeqLockArray<T>;
        // SAFETY: `raw` comes from a `NonNull` and the cast keeps the address.
        unsafe { core::ptr::NonNull::new_unchecked(raw) }
    }
}

/// Shape: where element `i`, data word `w` and stripe `k` are.
impl<T> SeqLockArray<T> {
    /// `size_of::<T>()`.
    const SIZE: usize = size_of::<T>();

    /// Elements per stripe: they share a sequence word and a writer lock, so a write
    /// makes readers of its own stripe retry, and a thread holding an element's guard
    /// must not lock another element of the same stripe. 32 for elements of 8 to 15 bytes
    /// (256 bytes of `f64`s), 32 × ⌊8 / size⌋ for smaller ones (at most 256 bytes of
    /// data), 16 for elements of 16 bytes or more, 128 for zero-sized ones. Stripe `k`
    /// holds elements `k * STRIPE_LEN .. (k + 1) * STRIPE_LEN`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::SeqLockArray;
    /// assert_eq!(SeqLockArray::<f64>::STRIPE_LEN, 32);
    /// assert_eq!(SeqLockArray::<u8>::STRIPE_LEN, 256);
    /// assert_eq!(SeqLockArray::<[f64; 4]>::STRIPE_LEN, 16);
    /// ```
    pub const STRIPE_LEN: usize = {
        let l = stripe_len(size_of::<T>());
        // `stripe_at`'s mask and the layout's fit need a power of two of at least 16
        // (at least 2 under loom, where the stripes are in a vector of their own).
        assert!(l.is_power_of_two() && (cfg!(loom) || l >= 16));
        l
    };

    /// Bytes of an object of `len` elements: `24 + len · (size + 1)`, rounded up to 8
    /// (`size_of_val` of the `#[repr(C)]` struct); `None` if that overflows `isize`.
    #[cfg(not(loom))]
    fn bytes_for(len: usize) -> Option<usize> {
        let units = len.checked_mul(Self::SIZE.checked_add(1)?)?;
        let size = units.checked_add(24)?.checked_next_multiple_of(8)?;
        (size <= isize::MAX as usize).then_some(size)
    }

    /// The number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        #[cfg(not(loom))]
        return self.units.len();
        #[cfg(loom)]
        return self.len;
    }

    /// Whether the array has no elements (only possible on the heap).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(not(loom))]
    /// The number of data words, `⌈len · size / 8⌉` (at most `size_for(len) / 8`, so no
    /// overflow for an object that exists).
    #[inline]
    fn data_words(&self) -> usize {
        if Self::SIZE.is_multiple_of(8) {
            // The same value, without the rounding (a multiple of 8 bytes per element).
            self.len() * (Self::SIZE / 8)
        } else {
            (self.len() * Self::SIZE).div_ceil(8)
        }
    }

    /// The number of stripes.
    #[inline]
    fn stripes(&self) -> usize {
        self.len().div_ceil(Self::STRIPE_LEN)
    }

    /// The stripe of element `i`.
    #[inline]
    const fn stripe_of(i: usize) -> usize {
        i / Self::STRIPE_LEN
    }

    /// Data word `w < data_words()`.
    #[inline]
    fn word(&self, w: usize) -> &AtomicU64 {
        #[cfg(not(loom))]
        {
            debug_assert!(w < self.data_words());
            let base = (self as *const Self).cast::<u8>().cast_mut();
            // SAFETY: `AtomicU64::from_ptr` needs (1) an 8-aligned pointer: the object is
            // 8-aligned (`ALIGN`, `align_of::<Self>()`) and the offset `8w` a multiple of
            // 8; (2) validity for the borrow: bytes `[8w, 8w + 8)` lie within the object
            // (`w < data_words()`, and the data words and headers fit in `size_of_val`:
            // module docs, "Layout"), inside its `UnsafeCell`s, for as long as `&self`;
            // (3) no non-atomic or other-sized access to these bytes: they are only ever
            // this `AtomicU64` (module docs).
            unsafe { AtomicU64::from_ptr(base.add(8 * w).cast()) }
        }
        #[cfg(loom)]
        return &self.words[w];
    }

    /// Stripe header `k < stripes()`.
    #[inline]
    fn stripe(&self, k: usize) -> &Stripe {
        self.stripe_at(k * Self::STRIPE_LEN)
    }

    /// The header of the stripe of element `i < len()` (also `i = k · STRIPE_LEN` for
    /// stripe `k`): `STRIPE_LEN · ⌊i / STRIPE_LEN⌋ = i & !(STRIPE_LEN − 1)` bytes after
    /// the data (module docs, "Layout").
    #[inline]
    fn stripe_at(&self, i: usize) -> &Stripe {
        #[cfg(not(loom))]
        {
            debug_assert!(i < self.len());
            let base = (self as *const Self).cast::<u8>();
            let off = 8 * self.data_words() + (i & !(Self::STRIPE_LEN - 1));
            // SAFETY: the header is the 16 bytes at `8 · data_words() + L·k` for stripe
            // `k = ⌊i / L⌋ < stripes()` (`L = STRIPE_LEN`, a power of two: the mask is
            // `L·k`): 8-aligned (`Stripe`'s alignment, asserted; `L` is a multiple of 16)
            // in an 8-aligned object, within the object (the headers fit: module docs,
            // "Layout"), inside its `UnsafeCell`s; a `Stripe` is atomics only (interior
            // mutability), valid for every bit pattern, and these bytes are only ever
            // accessed as this `Stripe`.
            unsafe { &*base.add(off).cast::<Stripe>() }
        }
        #[cfg(loom)]
        return &self.stripes[Self::stripe_of(i)];
    }
}

impl<T: Pod> SeqLockArray<T> {
    /// An array of `len` elements, all `T::zeroed()`, on the heap.
    ///
    /// # Panics
    ///
    /// If the array's size overflows `isize`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<u32>::new(3);
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// ```
    #[cfg(not(loom))]
    pub fn new(len: usize) -> Box<Self> {
        let size = Self::bytes_for(len).unwrap_or_else(|| too_large(len));
        let layout =
            std::alloc::Layout::from_size_align(size, 8).unwrap_or_else(|_| too_large(len));
        // SAFETY: `layout` has a non-zero size (at least 24).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let raw = core::ptr::slice_from_raw_parts_mut(p, len) as *mut Self;
        // SAFETY: `raw` points to `size` zeroed bytes (a valid array, see `Shared` item 1)
        // allocated with the global allocator and the layout `Box` will free them with:
        // `size_of_val` of `len` units is `bytes_for(len)` (checked in the tests) and the
        // alignment 8 is `Self`'s; nothing else owns it.
        unsafe { Box::from_raw(raw) }
    }

    /// An array of `len` elements, all `T::zeroed()`, on the heap.
    #[cfg(loom)]
    pub fn new(len: usize) -> Box<Self> {
        let stripes = len.div_ceil(Self::STRIPE_LEN);
        let words = (len * Self::SIZE).div_ceil(8);
        Box::new(SeqLockArray {
            len,
            stripes: (0..stripes).map(|_| Stripe::new()).collect(),
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            _elem: core::marker::PhantomData,
        })
    }

    /// An array holding a copy of `values`, on the heap.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8, 2, 3]);
    /// assert_eq!(a.len(), 3);
    /// ```
    pub fn from_slice(values: &[T]) -> Box<Self> {
        let a = Self::new(values.len());
        // Not shared yet: no lock needed.
        a.store_bytes(0, elem_bytes(values));
        a
    }

    /// Test hook: the `seq`, `writer` and `dirty` words of stripe `k`, for tests that
    /// write them as another (buggy or hostile) process could. Not part of the API.
    ///
    /// # Panics
    ///
    /// If `k` is not a stripe of the array.
    #[cfg(all(any(test, feature = "test-hooks"), not(loom)))]
    #[doc(hidden)]
    pub fn stripe_words_for_test(&self, k: usize) -> [&AtomicU32; 3] {
        assert!(k < self.stripes(), "no stripe {k}");
        let p = (self.stripe(k) as *const Stripe).cast::<AtomicU32>();
        // SAFETY: `Stripe` is `#[repr(C)]`: a `SeqLock<()>` (`#[repr(C)]`: `seq` at 0,
        // `writer` at 4, no data) then `dirty` at 8, all `AtomicU32`s inside the header
        // that `self.stripe(k)` borrows.
        unsafe { [&*p, &*p.add(1), &*p.add(2)] }
    }

    /// Copies element `i < len()` out with relaxed loads.
    #[inline]
    fn load_elem(&self, i: usize) -> T {
        let mut out = T::zeroed();
        if Self::SIZE > 0 {
            self.load_bytes(i * Self::SIZE, bytemuck::bytes_of_mut(&mut out));
        }
        out
    }

    /// Stores element `i < len()` (see [`store_bytes`](Self::store_bytes)).
    #[inline]
    fn store_elem(&self, i: usize, value: &T) {
        if Self::SIZE > 0 {
            self.store_bytes(i * Self::SIZE, bytemuck::bytes_of(value));
        }
    }

    #[inline]
    #[track_caller]
    fn check_index(&self, i: usize) {
        if i >= self.len() {
            out_of_range(i, self.len());
        }
    }

    #[track_caller]
    fn check_len(&self, n: usize) {
        if n != self.len() {
            len_mismatch(n, self.len());
        }
    }
}

/// The bytes of a slice of elements (none for a zero-sized `T`).
fn elem_bytes<T: Pod>(values: &[T]) -> &[u8] {
    if size_of::<T>() == 0 {
        &[]
    } else {
        bytemuck::cast_slice(values)
    }
}

/// The bytes of a mutable slice of elements (none for a zero-sized `T`).
fn elem_bytes_mut<T: Pod>(values: &mut [T]) -> &mut [u8] {
    if size_of::<T>() == 0 {
        &mut []
    } else {
        bytemuck::cast_slice_mut(values)
    }
}

#[cold]
#[track_caller]
fn out_of_range(i: usize, len: usize) -> ! {
    panic!("SeqLockArray index out of range: the len is {len} but the index is {i}")
}

#[cold]
#[track_caller]
fn len_mismatch(n: usize, len: usize) -> ! {
    panic!("SeqLockArray has {len} elements but the buffer has {n}")
}

#[cfg(not(loom))]
#[cold]
#[track_caller]
fn too_large(len: usize) -> ! {
    panic!("a SeqLockArray of {len} elements would not fit in the address space")
}

impl<T: Pod + core::fmt::Debug> core::fmt::Debug for SeqLockArray<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = vec![T::zeroed(); self.len()];
        match self.try_snapshot(&mut out) {
            Ok(()) => f.debug_list().entries(&out).finish(),
            Err(e) => write!(f, "SeqLockArray(<{e}>)"),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
