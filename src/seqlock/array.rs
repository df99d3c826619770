//! [`SeqLockArray<T>`]: a fixed-length array of seqlocked elements, with per-element reads
//! and writes that do not disturb each other, consistent whole-array snapshots, and
//! all-or-nothing batch writes.
//!
//! # Design
//!
//! Each element is a full [`SeqLock<T>`] (its own sequence word, writer lock and data),
//! so a write to element `i` makes only readers of element `i` retry.
//!
//! - **Snapshot** ([`SeqLockArray::snapshot`]): load every element's sequence word
//!   (Acquire) and copy its data, then one Acquire fence, then reload every sequence word
//!   (Relaxed) and accept only if all were even and are unchanged. "Unchanged" is checked
//!   without allocating, by comparing the *sums* of the two passes: exact because
//!   sequence words only grow, except across a `u32` wrap, where it needs 2^31 writes to
//!   the whole array during one attempt to be fooled (instead of 2^31 to one element for
//!   a word-by-word compare; the reasoning is on `snapshot_once`). The copy is a
//!   consistent cut: if it saw element `j` after a write `W` that comes, in some writer's
//!   program order, after the start of a write to element `i`, then the Acquire load of
//!   `j`'s sequence makes `i`'s odd store visible to the recheck, which fails.
//! - **Batch write** ([`SeqLockArray::set_all`], [`SeqLockArray::write_batch`],
//!   [`SeqLockArray::write_batch_timeout`]): take every element's writer lock in index
//!   order (single-element writers take one lock, so there is no lock-order cycle; a
//!   thread that holds an element's guard from [`SeqLock::lock`] and starts a batch
//!   deadlocks on itself, as with any non-reentrant lock), mark every element odd, one Release fence, store all
//!   data, mark every element even, release the locks. All odd stores precede all even
//!   stores, so by the argument above a snapshot sees the batch entirely or not at all.
//!
//! Elements are not cache-line padded: a `SeqLockArray<f64>` costs 16 bytes per element
//! (8 of sequence and lock words), not 64. The price is false sharing: a write to one
//! element evicts the cache line its neighbours' readers use, costing them a cache miss
//! (never a retry: retries depend only on the element's own sequence word). Wrap `T` in a
//! 64-byte-aligned `Pod` type to get padding where writes are hot.
//!
//! A batch writer that dies part-way leaves some elements torn; each is repaired by the
//! next write to it, but an invariant spanning elements is only restored by the next batch
//! write.
//!
//! Out-of-range indices panic, like slice indexing; [`SeqLockArray::slot`] returns `None`
//! instead, and gives each element's full [`SeqLock`] API (`try_read`, `lock`, ...).
//!
//! # Crash windows
//!
//! Each element is a [`SeqLock`], with that module's table line for line (a writer killed
//! mid-write leaves that element torn until a writer repairs it; `update`, `lock` and the
//! timed forms report it as `OwnerDied`). A batch write is a sequence of element writes:
//!
//! | step of a batch write | a SIGKILL there leaves | repaired by, how fast |
//! |-----------------------|------------------------|-----------------------|
//! | between two elements | the elements written so far new, the rest old | each element is consistent; an invariant across elements waits for the next batch write |
//! | inside an element's write | that element torn (odd sequence, dead writer) | the next writer of that element takes it over once a slice has passed and gets `OwnerDied` (or the `recovered` flag in a batch) |

use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::single::{
    SeqLock, SeqLockError, SeqLockWriteGuard, is_writing, unreachable_no_deadline,
};
use crate::lock::OwnerDied;
use crate::sync::{Ordering, fence, spin_loop};
use crate::wait::{Timeout, past};

/// Attempts [`SeqLockArray::try_snapshot`] makes before giving up.
const TRY_SNAPSHOT_ATTEMPTS: u32 = if cfg!(loom) { 2 } else { 64 };
/// Spins between two attempts of [`SeqLockArray::try_snapshot`].
const SPINS: u32 = if cfg!(loom) { 1 } else { 200 };

/// A fixed-length array of [`Pod`] values, each behind its own seqlock, with consistent
/// whole-array snapshots and all-or-nothing batch writes.
///
/// Slice-shaped: the length is chosen at creation ([`new`](Self::new),
/// [`from_slice`](Self::from_slice), or a region's
/// `get_or_init_slice(name, len, |a: &SeqLockArray<T>| ..)`) and never changes. See the [module docs](self) for the design and
/// [`SeqLock`] for the per-element protocol and what happens when a writer dies.
///
/// # Layout
///
/// `#[repr(transparent)]` over `[SeqLock<T>]`; each element is `#[repr(C)]` (8 bytes of
/// sequence and lock words, then `T`'s bytes, aligned to at least 8). All zeroes is an
/// array of `T::zeroed()`.
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
#[repr(transparent)]
pub struct SeqLockArray<T> {
    slots: [SeqLock<T>],
}

// SAFETY: `Shared` items 1-6:
// 1-2. an array of `SeqLock<T>`, each valid when zeroed and for every bit pattern (see
//      `SeqLock`'s `SharedSized` impl); `slice_size` leaves no gaps (array layout);
// 3. no pointers (this impl exists only under `cfg(not(loom))`);
// 4. `#[repr(transparent)]` over `[SeqLock<T>]`, whose element layout is asserted in
//    `seqlock.rs`; the size is `slice_size::<SeqLock<T>>(len)`;
// 5. `Sync` through `SeqLock<T>: Sync`; all `&self` methods are made for concurrent use;
// 6. `from_raw_parts` builds a slice pointer of `len` elements at `ptr` and casts it to
//    the transparent wrapper: exactly `size_for(len)` bytes.
#[cfg(not(loom))]
unsafe impl<T: crate::Element> crate::Shared for SeqLockArray<T> {
    const TAG: crate::TypeTag = crate::TypeTag::new(crate::Kind::SEQLOCK_ARRAY, T::ELEM);
    const ALIGN: usize = align_of::<SeqLock<T>>();

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        crate::shared::slice_size::<SeqLock<T>>(len)
    }

    #[inline]
    fn from_raw_parts(ptr: core::ptr::NonNull<u8>, len: usize) -> core::ptr::NonNull<Self> {
        let slice = core::ptr::NonNull::slice_from_raw_parts(ptr.cast::<SeqLock<T>>(), len);
        // Cast of a slice pointer to a `#[repr(transparent)]` wrapper of that slice: same
        // address and metadata.
        let raw = slice.as_ptr() as *mut SeqLockArray<T>;
        // SAFETY: `raw` comes from a `NonNull` and the cast keeps the address.
        unsafe { core::ptr::NonNull::new_unchecked(raw) }
    }
}

impl<T: Pod> SeqLockArray<T> {
    /// An array of `len` elements, all `T::zeroed()`, on the heap.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<u32>::new(3);
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// ```
    pub fn new(len: usize) -> Box<Self> {
        Self::from_boxed((0..len).map(|_| SeqLock::new(T::zeroed())).collect())
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
        Self::from_boxed(values.iter().map(|&v| SeqLock::new(v)).collect())
    }

    /// Wraps a boxed slice of elements (built with constructors, so this also works with
    /// loom atomics, which cannot be zero-allocated).
    fn from_boxed(slots: Box<[SeqLock<T>]>) -> Box<Self> {
        let raw = Box::into_raw(slots) as *mut SeqLockArray<T>;
        // SAFETY: `SeqLockArray<T>` is `#[repr(transparent)]` over `[SeqLock<T>]`, so the
        // pointer cast keeps address, metadata and layout; `raw` came from `Box::into_raw`
        // with the global allocator and the same layout, and is owned by nothing else.
        unsafe { Box::from_raw(raw) }
    }

    /// The number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the array has no elements (only possible on the heap).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Element `i` as a [`SeqLock`] (for `try_read`, `read_timeout`, `lock`, ...), or
    /// `None` if `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[5u16, 6]);
    /// assert_eq!(a.slot(1).unwrap().try_read(), Ok(6));
    /// assert!(a.slot(2).is_none());
    /// ```
    #[inline]
    pub fn slot(&self, i: usize) -> Option<&SeqLock<T>> {
        self.slots.get(i)
    }

    /// The elements as seqlocks, for iteration.
    #[inline]
    pub fn slots(&self) -> &[SeqLock<T>] {
        &self.slots
    }

    #[inline]
    #[track_caller]
    fn at(&self, i: usize) -> &SeqLock<T> {
        match self.slots.get(i) {
            Some(s) => s,
            None => out_of_range(i, self.len()),
        }
    }

    /// Reads element `i` ([`SeqLock::read`]: waits out writers, never torn).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1i8, -1]);
    /// assert_eq!(a.get(1), -1);
    /// ```
    #[inline]
    #[track_caller]
    pub fn get(&self, i: usize) -> T {
        self.at(i).read()
    }

    /// Writes element `i` ([`SeqLock::write`]).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<u64>::new(2);
    /// a.set(0, 9);
    /// assert_eq!(a.get(0), 9);
    /// ```
    #[inline]
    #[track_caller]
    pub fn set(&self, i: usize, value: T) {
        self.at(i).write(value)
    }

    /// Read-modify-writes element `i` ([`SeqLock::update`]), returning `f`'s result.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if the element's value is torn by a writer that died mid-write: `f`
    /// is not called, and the error holds the element's write guard (repair the value and
    /// call [`SeqLockWriteGuard::mark_consistent`](crate::SeqLockWriteGuard::mark_consistent)
    /// to publish it; dropping it stores nothing). See [`SeqLock::update`].
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1u32, 2]);
    /// a.update(1, |v| *v *= 10).expect("no writer died mid-write");
    /// assert_eq!(a.get(1), 20);
    /// ```
    #[track_caller]
    #[must_use = "an `Err` means the element is torn and `f` did not run"]
    pub fn update<R>(
        &self,
        i: usize,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, OwnerDied<SeqLockWriteGuard<'_, T>>> {
        self.at(i).update(f)
    }

    /// One optimistic snapshot attempt: `Err(Some((i, odd)))` if element `i` was being
    /// written, `Err(None)` if a write overlapped the copy.
    ///
    /// Allocation-free: instead of remembering every sequence value, the recheck compares
    /// their sum (in a `u64`, which cannot overflow for fewer than 2^32 elements). Why
    /// equal sums mean no element changed: every first-pass value `s_i` was even, and the
    /// recheck reads the same word later in program order, so by read-read coherence it
    /// sees `s_i` or a later value in the word's modification order. Writers only move a
    /// word forward (`begin_write` is a `fetch_or(1)`, `end_write` stores `odd + 1`, a
    /// takeover continues from the latest value), so `s_i' = s_i + d_i` with `d_i >= 0`
    /// the number of sequence steps, *as long as the `u32` does not wrap*; a sum of
    /// non-negative steps is 0 only if every step is 0. A value seen odd in the recheck is
    /// just a step of 1.
    ///
    /// Wrap-around is where this is weaker than comparing word by word: a word at
    /// `u32::MAX - 1` wraps to 0 in **one** write, subtracting `2^32 - 2` from the sum,
    /// which writes to *other* elements can cancel. So a changed array can pass the check
    /// only if the writes made to the whole array during this one attempt number exactly a
    /// non-zero multiple of 2^31 (a word-by-word compare needs 2^31 writes to a *single*
    /// element): a reader stalled for billions of writes, the same order of limit as a
    /// 32-bit sequence itself (see [`SeqLock`]'s module docs).
    ///
    /// A hostile process can move sequence words backwards (and so cancel a real write's
    /// step); then a snapshot may be inconsistent, as it may when that process writes
    /// garbage data directly: never undefined behaviour, a panic or a hang.
    fn snapshot_once(&self, out: &mut [T]) -> Result<(), Option<(usize, u32)>> {
        let mut before: u64 = 0;
        for (i, (slot, dst)) in self.slots.iter().zip(out.iter_mut()).enumerate() {
            // Acquire: pairs with each writer's Release even store; also orders the later
            // recheck of every *earlier* element after this load (see the module docs).
            let s = slot.seq_word().load(Ordering::Acquire);
            if is_writing(s) {
                return Err(Some((i, s)));
            }
            before = before.wrapping_add(u64::from(s));
            *dst = slot.load_racy();
        }
        // Acquire fence: pairs with the writers' Release fence after their odd stores (see
        // `SeqLock`): if a copy saw a store of a later write, the recheck sees its odd seq.
        fence(Ordering::Acquire);
        let after = self.slots.iter().fold(0u64, |sum, slot| {
            // Relaxed: ordered after the copies by the fence above.
            sum.wrapping_add(u64::from(slot.seq_word().load(Ordering::Relaxed)))
        });
        if after == before { Ok(()) } else { Err(None) }
    }

    #[track_caller]
    fn check_len(&self, n: usize) {
        if n != self.len() {
            len_mismatch(n, self.len());
        }
    }

    fn snapshot_until(
        &self,
        out: &mut [T],
        deadline: Option<Instant>,
        repair_wait: bool,
    ) -> Result<(), SeqLockError> {
        loop {
            match self.snapshot_once(out) {
                Ok(()) => return Ok(()),
                // A complete write overlapped the copy: check the deadline here too (see
                // `SeqLock::read_slow`).
                Err(None) if past(deadline) => return Err(SeqLockError::Timeout),
                Err(None) => spin_loop(),
                Err(Some((i, odd))) => self.slots[i].wait_write_end(odd, deadline, repair_wait)?,
            }
        }
    }

    /// Copies the whole array into `out` as one consistent snapshot: a batch write
    /// entirely or not at all, and a consistent cut of independent writes (if it holds a
    /// write, it holds every write that happened before it; with Acquire/Release only,
    /// two snapshots may still order two *unrelated* writes to different elements
    /// differently on hardware that is not multi-copy atomic, e.g. POWER). Waits out writers like
    /// [`SeqLock::read`] (including waiting for the repair of an element whose writer died
    /// mid-write).
    ///
    /// Under a constant stream of writes to many elements a large snapshot may retry
    /// many times: seqlock readers never block writers, so they can be starved.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8, 2]);
    /// let mut out = [0; 2];
    /// a.snapshot(&mut out);
    /// assert_eq!(out, [1, 2]);
    /// ```
    #[track_caller]
    pub fn snapshot(&self, out: &mut [T]) {
        self.check_len(out.len());
        // Without deadline and with repair waits, `snapshot_until` cannot fail.
        let _ = self.snapshot_until(out, None, true);
    }

    /// [`snapshot`](Self::snapshot), waiting at most `timeout` for writers.
    ///
    /// # Errors
    ///
    /// [`SeqLockError::Timeout`] if at the deadline an element was still being written
    /// by a live writer, or writes kept overlapping every copy; [`SeqLockError::WriterDied`] as soon as an element's writer is found dead
    /// mid-write. `out` holds garbage then.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[3u8]);
    /// let mut out = [0];
    /// a.snapshot_timeout(&mut out, Duration::from_millis(10)).unwrap();
    /// assert_eq!(out, [3]);
    /// ```
    #[track_caller]
    pub fn snapshot_timeout(&self, out: &mut [T], timeout: Duration) -> Result<(), SeqLockError> {
        self.check_len(out.len());
        self.snapshot_until(out, Instant::now().checked_add(timeout), false)
    }

    /// [`snapshot`](Self::snapshot) with a bounded number of attempts and no waiting.
    ///
    /// # Errors
    ///
    /// As [`SeqLock::try_read`]: [`SeqLockError::WriterActive`] or
    /// [`SeqLockError::WriterDied`]. `out` holds garbage then.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[3u8, 4]);
    /// let mut out = [0; 2];
    /// assert_eq!(a.try_snapshot(&mut out), Ok(()));
    /// ```
    #[track_caller]
    pub fn try_snapshot(&self, out: &mut [T]) -> Result<(), SeqLockError> {
        self.check_len(out.len());
        let mut busy = None;
        for _ in 0..TRY_SNAPSHOT_ATTEMPTS {
            match self.snapshot_once(out) {
                Ok(()) => return Ok(()),
                Err(b) => busy = b.or(busy),
            }
            for _ in 0..SPINS {
                spin_loop();
            }
        }
        // Say whether the element last seen mid-write has a dead writer.
        match busy.map(|(i, _)| self.slots[i].try_read()) {
            Some(Err(e)) => Err(e),
            _ => Err(SeqLockError::WriterActive),
        }
    }

    /// The whole array as a `Vec`, from one consistent [`snapshot`](Self::snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[[1u8, 2]]);
    /// assert_eq!(a.to_vec(), [[1, 2]]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len()];
        self.snapshot(&mut out);
        out
    }

    /// Takes every element's writer lock in index order. Returns the locks (released
    /// without a write if dropped, e.g. when a batch closure panics) and whether any
    /// element was torn by a writer that died mid-write.
    fn lock_all(&self) -> (AllLocked<'_, T>, bool) {
        match self.lock_all_until(None) {
            Ok(locked) => locked,
            Err(Timeout) => unreachable_no_deadline(),
        }
    }

    /// [`lock_all`](Self::lock_all) before `deadline`; on a timeout, releases the locks
    /// taken so far (without writing) and fails.
    fn lock_all_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(AllLocked<'_, T>, bool), Timeout> {
        let mut torn = false;
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.lock_writer_until(deadline) {
                Ok(t) => torn |= t,
                Err(e) => {
                    for taken in &self.slots[..i] {
                        taken.unlock_writer();
                    }
                    return Err(e);
                }
            }
        }
        Ok((AllLocked(self), torn))
    }

    /// Stores `value(i)` into every element as one batch (all locks held), then releases
    /// every lock. Allocation-free.
    fn publish_all(&self, locked: AllLocked<'_, T>, value: impl Fn(usize) -> T) {
        core::mem::forget(locked);
        for slot in &self.slots {
            slot.begin_write();
        }
        // Release fence (a): pairs with the readers' Acquire fences; orders every odd
        // store above before every data store below (see `SeqLock`).
        fence(Ordering::Release);
        for (i, slot) in self.slots.iter().enumerate() {
            slot.store_locked(&value(i));
        }
        for slot in &self.slots {
            // Instead of remembering each odd value (a `Vec` per batch), re-read it: we
            // hold the lock, so the last store to `seq` is our own odd one (read-read
            // coherence after our RMW). Relaxed: only the value matters; `end_write`'s
            // Release store orders the data. `| 1` keeps the result even whatever bytes
            // a hostile process put there meanwhile.
            slot.end_write(slot.seq_word().load(Ordering::Relaxed) | 1);
        }
        for slot in &self.slots {
            slot.unlock_writer();
        }
    }

    /// Replaces every element with `values`, as one batch that snapshots see entirely or
    /// not at all. Repairs elements torn by a dead writer. Allocation-free.
    ///
    /// # Panics
    ///
    /// If `values.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<i32>::new(2);
    /// a.set_all(&[-1, 1]);
    /// assert_eq!(a.to_vec(), [-1, 1]);
    /// ```
    #[track_caller]
    pub fn set_all(&self, values: &[T]) {
        self.check_len(values.len());
        let (locked, _torn) = self.lock_all();
        self.publish_all(locked, |i| values[i]);
    }

    /// Read-modify-writes the whole array as one batch: `f` gets a copy of every element
    /// (taken under all the writer locks) and what it leaves there is stored as one batch
    /// that snapshots see entirely or not at all. If `f` panics nothing is stored (and
    /// every lock is released). `f`'s second argument is `true` if some element was torn
    /// by a writer that died mid-write (its copy is then garbage): what `f` leaves is
    /// published as valid, so when it is `true`, `f` must overwrite what it cannot trust.
    /// (Unlike [`SeqLock::lock`], which reports a torn value as an
    /// [`OwnerDied`] that must be acknowledged, the flag is the whole report here:
    /// taking it is the acknowledgement.)
    ///
    /// Allocates one `Vec<T>` of [`len`](Self::len) elements for the copy `f` edits; use
    /// [`set_all`](Self::set_all), which allocates nothing, when the new values do not
    /// depend on the old ones.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[10u64, 0]);
    /// // Move 3 units from element 0 to 1: the sum stays 10 in every snapshot.
    /// a.write_batch(|v, _recovered| { v[0] -= 3; v[1] += 3; });
    /// assert_eq!(a.to_vec(), [7, 3]);
    /// ```
    pub fn write_batch<R>(&self, f: impl FnOnce(&mut [T], bool) -> R) -> R {
        let (locked, torn) = self.lock_all();
        self.batch_locked(locked, torn, f)
    }

    /// [`write_batch`](Self::write_batch), waiting at most `timeout` for the writer locks.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if some element's lock was still held by a live writer at the
    /// deadline; then nothing is written, `f` is not called, and the locks taken so far are
    /// released.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8, 2]);
    /// let r = a.write_batch_timeout(Duration::from_millis(10), |v, _| v.swap(0, 1));
    /// assert_eq!(r, Ok(()));
    /// assert_eq!(a.to_vec(), [2, 1]);
    /// ```
    pub fn write_batch_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut [T], bool) -> R,
    ) -> Result<R, Timeout> {
        let (locked, torn) = self.lock_all_until(Instant::now().checked_add(timeout))?;
        Ok(self.batch_locked(locked, torn, f))
    }

    /// The body of [`write_batch`](Self::write_batch) once every lock is held.
    fn batch_locked<R>(
        &self,
        locked: AllLocked<'_, T>,
        torn: bool,
        f: impl FnOnce(&mut [T], bool) -> R,
    ) -> R {
        let mut values: Vec<T> = self.slots.iter().map(SeqLock::load_locked).collect();
        let r = f(&mut values, torn);
        self.publish_all(locked, |i| values[i]);
        r
    }
}

/// Every writer lock of an array, held by a batch writer that has not started writing.
/// Dropping it (a panicking batch closure) releases the locks and writes nothing.
struct AllLocked<'a, T: Pod>(&'a SeqLockArray<T>);

impl<T: Pod> Drop for AllLocked<'_, T> {
    fn drop(&mut self) {
        for slot in &self.0.slots {
            slot.unlock_writer();
        }
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

impl<T: Pod + core::fmt::Debug> core::fmt::Debug for SeqLockArray<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = vec![T::zeroed(); self.len()];
        match self.try_snapshot(&mut out) {
            Ok(()) => f.debug_list().entries(&out).finish(),
            Err(e) => write!(f, "SeqLockArray(<{e}>)"),
        }
    }
}
