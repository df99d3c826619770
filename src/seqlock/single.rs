//! [`SeqLock<T>`]: a value that any number of processes read without writing to shared
//! memory, while writers (serialised among themselves) replace it.
//!
//! Readers store nothing on every path that does not sleep: the copy, its retries and
//! [`SeqLock::try_read`] are loads only. The one exception is a reader of
//! [`SeqLock::read`] or [`SeqLock::read_timeout`] that has spun through a write and must
//! sleep until it ends: it sets the `WAITERS` bit of the `writer` word (one CAS per write
//! it sleeps through) so that the writer's unlock wakes it.
//!
//! # Protocol
//!
//! Two 32-bit words precede the data (see the field docs for their layouts):
//!
//! - `seq`, the **sequence word**, read by readers: even = stable, odd = a write is in
//!   progress. A write moves it `E → E+1 → E+2`.
//! - `writer`, the **writer lock**: the TID of the thread allowed to write, or 0. Writers
//!   take it with a CAS `0 → tid`, so the lock word itself names its owner and a dead owner
//!   is recognised in every window (see "Owner death" below).
//!
//! The data is `T`'s bytes, copied in and out with relaxed atomic loads and stores of
//! whole words (`super::atomic_copy`). The orderings follow Boehm, *Can seqlocks get
//! along with programming language memory models?* (MSPC 2012), section 5:
//!
//! ```text
//! writer                                   reader
//! writer: CAS 0 → tid (Acquire)
//! seq: fetch_or 1 → odd (Release)          s1 = seq.load(Acquire)      -- pairs with (c)
//! fence(Release)                  (a)      if s1 odd: wait, retry
//! data: relaxed stores                     data: relaxed loads
//! seq.store(odd + 1, Release)     (c)      fence(Acquire)              -- pairs with (a)
//! writer: swap 0 (Release), wake?          s2 = seq.load(Relaxed); retry unless s1 == s2
//! ```
//!
//! If a reader's data load saw any store of a write, then fence (a) synchronises with the
//! reader's acquire fence, so the odd store before (a) is visible to the reload and
//! `s2 != s1`. If `s1` is the even value stored by (c), every data store of that write is
//! visible to the loads that follow. So an accepted copy is exactly one write's value.
//!
//! # Owner death
//!
//! A writer killed between its odd and even sequence stores leaves `seq` odd and its TID in
//! `writer`. Waiters (writers and readers) spin briefly with loads only, then futex-wait
//! on `writer` in growing slices (50 µs, doubling up to 800 µs, as `RawMutex` does), and
//! probe the owner's TID (see `crate::wait`: a full probe, then a `poll` of a pidfd for a
//! writer watched long) only once a whole slice has passed, woken or not: a live writer's
//! unlock wakes them first, so waiting out ordinary writes costs no probe. When the owner is dead:
//!
//! - a writer takes the lock over (CAS `dead_tid → tid`) and learns whether the dead
//!   writer was mid-write (`seq` odd): then the data is **torn** (each 8-byte word, or tail
//!   piece, holds either its old or its new value), and stays so (`seq` odd) until a writer
//!   publishes a value it vouches for:
//!   - [`SeqLock::write`] overwrites all of it: the repair needs no acknowledgement;
//!   - [`SeqLock::lock`] returns `Err(`[`OwnerDied`]`)` holding the guard, with the
//!     shape of [`Mutex::lock`](crate::Mutex::lock): repair the value, then call
//!     [`SeqLockWriteGuard::mark_consistent`]. A guard dropped unmarked **stores
//!     nothing** and releases the lock with `seq` still odd, so readers keep refusing the
//!     torn bytes and the next writer gets `OwnerDied` again;
//!   - [`SeqLock::update`] does not call its closure on a torn value: it returns
//!     `Err(`[`OwnerDied`]`)` with the guard, as `lock` does;
//! - [`SeqLock::try_read`] and [`SeqLock::read_timeout`] return
//!   [`SeqLockError::WriterDied`]; [`SeqLock::read`] never returns torn data: it sleeps
//!   (futex slices, no spinning, no probing) until a writer repairs the value.
//!
//! A writer killed while holding the lock but *outside* the odd window (before its odd
//! store or after its even store) leaves consistent data; the next writer takes over and
//! gets a plain guard.
//!
//! **Fork with a guard held** (or from an [`update`](SeqLock::update) closure): the child's
//! copy of the guard records the parent's thread, and stores and releases nothing when
//! dropped (test `a_forked_copy_of_a_seqlock_write_guard_releases_nothing`). The same holds
//! for [`SeqLockArray`](crate::SeqLockArray)'s element and batch guards.
//!
//! # Crash windows
//!
//! What a writer killed (SIGKILL) or stopped (SIGSTOP) at each step leaves, and who repairs
//! it. "One slice" is at most 800 µs after the kernel has torn the writer down (the first
//! slice of a wait is 50 µs).
//!
//! | step of a write                        | a SIGKILL there leaves                          | repaired by, how fast |
//! |----------------------------------------|-------------------------------------------------|-----------------------|
//! | `writer` CAS `0 → tid` done            | lock held by a dead TID; data consistent        | next writer: takeover after one slice, plain guard; readers unaffected |
//! | `seq` odd (`fetch_or`), data stores    | `seq` odd, dead TID: data **torn**              | next writer: takeover after one slice, `OwnerDied` (or `write`); `try_read`: `WriterDied` at once; `read_timeout`: `WriterDied` after one slice; `read`: waits for the repair |
//! | `seq` even store (c) done              | lock held by a dead TID; data consistent        | as the first line |
//! | `writer` swapped to 0 (unlock)         | a complete write; at worst a missed wake        | waiters re-check after their slice (≤ 800 µs) |
//! | recovered guard dropped unmarked, or a panicking closure on a torn value | `seq` odd, no owner: data still torn | next writer: at once (`OwnerDied` again); readers as for a torn value (`read_timeout`: `WriterDied` at once) |
//! | a waiter set `WAITERS`, then died      | a stale `WAITERS` bit                           | the owner's unlock clears it (one needless wake) |
//! | writer SIGSTOPped anywhere             | a live owner: nothing to repair                 | waiters wait (probing once per slice that runs out); timed calls return `Timeout` at their deadline; `try_read` returns `WriterActive` |
//!
//! [`SeqLockArray`](crate::SeqLockArray) runs this protocol per stripe of elements; its
//! module docs carry its own table (element and batch writes).
//!
//! Limits (those of the liveness probe): all processes must share a PID
//! namespace. The `writer` word records the stamp of
//! its owner's start time beside its TID, as a [`RawMutex`](crate::RawMutex) word does
//! (its "TID reuse, and the stamp"), so a dead writer whose TID the kernel has already
//! reused by a live thread is taken over, except in 1 case in 255 (the new thread's stamp
//! is the dead writer's) or where `/proc` cannot tell: then it reads as alive, and waits
//! on it last until that thread exits: use the timed variants where that matters.
//! TID reuse also has an ABA window: if, between a waiter's probe ("dead") and its
//! takeover CAS, the lock is taken over, released and taken again by a new thread that
//! got the dead writer's TID, the CAS succeeds and two writers race: both end on the same
//! even sequence value, so a reader can accept a mix of their values. This needs the
//! kernel to hand out the same TID again within that window (it cycles through
//! `pid_max` ids first).
//! `seq` is 32 bits: a reader preempted across exactly a multiple of 2³¹ writes could
//! accept a mixed copy (as with the Linux kernel's 32-bit `seqcount_t`).
//!
//! [`OwnerDied`]: crate::OwnerDied

use core::fmt;
use std::time::Instant;

use bytemuck::Pod;

use super::atomic_copy::AtomicCell;
use crate::futex;
use crate::owner;
use crate::sync::AtomicU32;
use crate::wait::{Slices, Timeout, deadline_passed, stamped_holder_is_dead};

// The reader side (`read`: the optimistic copy, its retries, the waits for a write to end),
// the writer side (`write`: the robust writer lock, its takeover, the sequence stores, the
// public writes) and the write guard (`guard`) live in submodules; this file has the type,
// its words, and the sleep and probe steps both sides share.
mod guard;
mod read;
mod write;

pub use guard::SeqLockWriteGuard;

/// Bit 31 of `writer`: some thread is (or may be) futex-waiting on `writer`.
const WAITERS: u32 = 1 << 31;
/// Bits 0..=30 of `writer`: the owner: its TID in bits 0..22 (kernel TIDs are below
/// 2²²), the stamp of its start time in bits 22..30 (see `RawMutex`'s "TID reuse, and the
/// stamp"; 0: unknown), bit 30 always 0 (else garbage).
const TID_MASK: u32 = !WAITERS;

/// Loads a reader spins (loads only) before it futex-waits for a writer (a writer waiting
/// for the writer lock spins with `wait::spin_with_backoff` instead).
const SPINS: u32 = if cfg!(loom) { 1 } else { 200 };

/// Optimistic attempts [`SeqLock::try_read`] makes (with spinning between them) before
/// reporting [`SeqLockError::WriterActive`].
const TRY_READ_ATTEMPTS: u32 = if cfg!(loom) { 2 } else { 64 };

/// Whether a sequence value means "a write is in progress".
#[inline]
pub(crate) const fn is_writing(seq: u32) -> bool {
    seq & 1 != 0
}

/// The owner TID recorded in a `writer` word (0 = unlocked).
#[inline]
const fn owner_of(writer: u32) -> u32 {
    writer & TID_MASK
}

/// Why a bounded read ([`SeqLock::try_read`], [`SeqLock::read_timeout`], and the
/// snapshots of [`SeqLockArray`](crate::SeqLockArray)) gave up.
///
/// A `try_` read reports a live writer as [`WriterActive`](Self::WriterActive) (it has
/// no deadline: like [`TryLockError::WouldBlock`](crate::TryLockError::WouldBlock)); a
/// timed read reports it as [`Timeout`](Self::Timeout). Both report a dead writer as
/// [`WriterDied`](Self::WriterDied).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmstate::{SeqLock, SeqLockError, Timeout};
///
/// let s = SeqLock::new(1u32);
/// match s.read_timeout(Duration::from_millis(10)) {
///     Ok(v) => assert_eq!(v, 1),
///     Err(SeqLockError::Timeout) => { /* a live writer kept writing: retry later */ }
///     Err(e) => panic!("{e}"),
/// }
/// assert_eq!(SeqLockError::from(Timeout), SeqLockError::Timeout);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SeqLockError {
    /// From a `try_` read: a live writer was still writing through every attempt (retry
    /// later, or use [`SeqLock::read`] to wait).
    #[error("a writer is active: no consistent value could be read without waiting")]
    WriterActive,
    /// From a timed read: the deadline passed while a live writer was still writing, or
    /// while writes kept overlapping every copy.
    #[error("timed out: a live writer kept writing until the deadline")]
    Timeout,
    /// A writer died in the middle of a write: the value is torn until the next writer
    /// overwrites it ([`SeqLock::write`]).
    #[error("a writer died mid-write: the value is torn until the next write")]
    WriterDied,
}

impl From<Timeout> for SeqLockError {
    fn from(Timeout: Timeout) -> Self {
        SeqLockError::Timeout
    }
}

/// A value of any [`Pod`] type `T` that many processes read consistently, without taking
/// a lock and without writing to shared memory, while writers update it.
///
/// Readers copy the value optimistically and retry if a write overlapped ([`read`],
/// [`try_read`], [`read_timeout`]); they never see a torn value. Writers ([`write`],
/// [`update`], [`lock`]) are serialised by a robust writer lock: one whose owner died is
/// taken over. A value torn by a writer that died mid-write is reported to the next
/// [`update`] or [`lock`] as [`OwnerDied`], like a [`Mutex`](crate::Mutex) whose owner
/// died, and stays torn until a writer repairs it (see the [module docs](self) for the
/// protocol, the memory orderings and the crash windows).
///
/// Best for small, frequently read values written by few writers: a reader costs a copy of
/// `T` and two loads of the sequence word, and never stalls a writer.
///
/// # Layout
///
/// `#[repr(C)]`: `seq: u32`, `writer: u32`, then `T`'s bytes at offset 8 (or at
/// `align_of::<T>()` if larger), aligned to at least 8. All zeroes is a valid
/// `SeqLock<T>` holding `T::zeroed()`, and every bit pattern is valid (hostile sequence or
/// lock words cost retries, a takeover or a [`SeqLockError`], never a hang of an untimed
/// read that a writer will repair, a panic, or UB).
///
/// # Examples
///
/// ```
/// use shmstate::SeqLock;
///
/// let pos = SeqLock::new([0.0f64; 3]);
/// pos.write([1.0, 2.0, 3.0]);
/// pos.update(|p| p[0] += 10.0).expect("no writer died mid-write");
/// assert_eq!(pos.read(), [11.0, 2.0, 3.0]);
/// assert_eq!(pos.try_read(), Ok([11.0, 2.0, 3.0]));
/// ```
///
/// [`read`]: Self::read
/// [`try_read`]: Self::try_read
/// [`read_timeout`]: Self::read_timeout
/// [`write`]: Self::write
/// [`update`]: Self::update
/// [`lock`]: Self::lock
/// [`OwnerDied`]: crate::OwnerDied
#[repr(C)]
pub struct SeqLock<T> {
    /// The sequence word.
    ///
    /// | value | meaning                                                         |
    /// |-------|-----------------------------------------------------------------|
    /// | even  | stable: the data is the value of the last complete write        |
    /// | odd   | a write is in progress (or its writer died mid-write: torn)     |
    ///
    /// A write moves it from `s` to `s | 1` (odd) and then to `(s | 1) + 1`, wrapping.
    /// Only the holder of `writer` stores to it.
    seq: AtomicU32,
    /// The writer lock and futex word.
    ///
    /// | bits  | meaning                                                          |
    /// |-------|------------------------------------------------------------------|
    /// | 0..=30| TID of the thread holding the write lock; 0 = unlocked            |
    /// | 31    | [`WAITERS`]: someone may be futex-waiting on this word           |
    ///
    /// Invariant kept by live writers: `seq` odd implies an owner is recorded here.
    writer: AtomicU32,
    /// `T`'s bytes, accessed only with relaxed atomics.
    data: AtomicCell<T>,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(SeqLock<u8>, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(SeqLock<[u64; 8]>, [u64; 9]);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(SeqLock<[u8; 12]>, [u64; 3]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(SeqLock<u8>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(SeqLock<u128>, u128);

// SAFETY: `SharedSized` items 1-5:
// 1. all zero bytes: `seq` 0 (even, stable), `writer` 0 (unlocked), data `T::zeroed()`
//    (`Pod: Zeroable`);
// 2. every bit pattern is valid: two `AtomicU32`s and the bytes of a `Pod` (any bytes are
//    a valid `T`); the cell's tail padding is never accessed; hostile words are handled
//    (module docs);
// 3. no pointers: `AtomicCell<T>` is `T`'s bytes (under `cfg(not(loom))`, the only build
//    where this impl exists) and `T: Pod` is copied out, never referenced;
// 4. `#[repr(C)]`, sizes asserted above;
// 5. `Sync` through the atomics and `AtomicCell<T>: Sync`; every `&self` method is
//    designed for concurrent use by any number of threads in any number of processes.
#[cfg(not(loom))]
unsafe impl<T: crate::Element> crate::SharedSized for SeqLock<T> {
    const TAG: crate::TypeTag = crate::TypeTag::new(crate::Kind::SEQLOCK, T::ELEM);
}

impl<T: Pod> SeqLock<T> {
    /// A seqlock holding `value`, e.g. on the heap. In a region, the object starts zeroed
    /// (holding `T::zeroed()`); initialise it with [`write`](Self::write).
    pub fn new(value: T) -> Self {
        SeqLock {
            seq: AtomicU32::new(0),
            writer: AtomicU32::new(0),
            data: AtomicCell::new(value),
        }
    }

    /// One futex-wait slice on `writer` while it holds `expect`.
    fn sleep_on_writer(
        &self,
        expect: u32,
        slices: &mut Slices,
        deadline: Option<Instant>,
    ) -> Slept {
        // Under loom a wait without deadline is unbounded (loom threads never die, and a
        // timed wait returns at once); the owner's unlock wakes us (WAITERS is set).
        let Some(slice) = slices.next(deadline) else {
            return Slept::Deadline;
        };
        #[cfg(all(test, not(loom)))]
        tests::SLEEPS.with(|n| n.set(n.get() + 1));
        if futex::wait(&self.writer, expect, slice) {
            Slept::Woken
        } else if deadline_passed(deadline) {
            Slept::Deadline
        } else {
            Slept::SliceOut
        }
    }
}

/// How one futex-wait slice ended.
enum Slept {
    /// Woken, or the word had changed, or spuriously: re-check.
    Woken,
    /// The slice ran out without a wake: time to probe the owner.
    SliceOut,
    /// The deadline passed.
    Deadline,
}

/// Whether owner bits `tid` (read from the writer word) name no possible writer: bit 30,
/// or a stamp without a TID.
#[inline]
const fn is_garbage_owner(tid: u32) -> bool {
    tid & !(owner::STAMPED_TID_MASK | owner::STAMP_MASK) != 0 || tid & owner::STAMPED_TID_MASK == 0
}

/// Whether the writer `tid` (owner bits read from the writer word, nonzero) is gone:
/// garbage at once, else a probe of its TID and stamp (a syscall: slow paths only). See
/// [`stamped_holder_is_dead`].
#[cold]
fn writer_is_gone(tid: u32) -> bool {
    #[cfg(all(test, not(loom)))]
    tests::PROBES.with(|n| n.set(n.get() + 1));
    is_garbage_owner(tid) || stamped_holder_is_dead(tid)
}

/// [`writer_is_gone`] through a wait's watch of the writer (see
/// `Slices::stamped_holder_is_dead`).
#[cold]
fn writer_is_gone_watched(slices: &mut Slices, tid: u32) -> bool {
    #[cfg(all(test, not(loom)))]
    tests::PROBES.with(|n| n.set(n.get() + 1));
    is_garbage_owner(tid) || slices.stamped_holder_is_dead(tid)
}

/// A `None` deadline never times out.
#[cold]
pub(crate) fn unreachable_no_deadline() -> ! {
    unreachable!("a wait without deadline never times out")
}

impl<T: Pod> Default for SeqLock<T> {
    /// A seqlock holding `T::zeroed()`, like a fresh region object.
    fn default() -> Self {
        SeqLock::new(T::zeroed())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SeqLock");
        match self.try_read() {
            Ok(v) => d.field("value", &v),
            Err(e) => d.field("value", &format_args!("<{e}>")),
        };
        d.finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests;
