//! [`RwLock<T>`] and [`RawRwLock`]: a robust, writer-preferring readers-writer lock.
//!
//! # The algorithm
//!
//! A lock is one 64-byte line of sixteen 32-bit words: the state word, a writer
//! notification counter, and [`READER_SLOTS`] (14) *reader slots*. A reader holds the lock
//! through a slot: it writes its thread id (TID), with the stamp of its start time, into
//! a free slot, so every registered read lock names the thread that holds it, and a
//! reader that dies holding one leaves a dead TID that a writer can probe and free. The
//! state word counts no registered reader; it holds the writer's TID (with 5 bits of its
//! stamp) while write-locked, the waiting bits, and a count only of the
//! *overflow* readers that found every slot taken (see the field docs of [`RawRwLock`]).
//!
//! A reader and a writer meet as in Dekker's algorithm:
//!
//! - **read**: claim a free slot (compare-exchange `0 -> tid`), *then* load the state; if
//!   no writer holds it (`WRITE_LOCKED` clear), the read lock is held. Otherwise free the
//!   slot again and wait on the state word for the writer to leave.
//! - **write**: set `WRITE_LOCKED` with the own TID (compare-exchange from a state with no
//!   writer and no overflow reader), *then* load every slot; if all are free, the write
//!   lock is held. Otherwise the writer has shut new readers out and waits (`DRAINING`,
//!   sleeping on the notification counter) for the registered readers to leave.
//! - **read unlock**: free the own slot, *then* load the state; if a writer is draining
//!   and every slot is now free, wake it.
//!
//! The slot claim and the `WRITE_LOCKED` set are `SeqCst` read-modify-writes, and the
//! loads after them are `SeqCst`: in the single total order of `SeqCst` operations one of
//! the two comes first, so a reader and a writer never both miss each other (at least one
//! of them sees the other and backs off or waits). The same pairing between a slot's
//! release and a draining writer's `DRAINING` set means the last reader out always sees
//! the writer's bit, or the writer sees the free slot, so no wakeup is lost.
//!
//! A writer that holds `WRITE_LOCKED` shuts new readers out, so writers do not starve; a
//! writer waiting for *another writer* sets `WRITERS_WAITING` and sleeps on the counter. An
//! unlock clears both waiting bits and wakes one writer *and* all readers (see
//! `wake_flagged`): the woken race, and a writer that wins shuts the readers out again.
//! `WRITERS_WAITING` holds back only overflow readers (so a waiting writer is not starved by
//! them either); a registered reader never waits for it, so a stray bit that no live writer
//! stands behind delays no one.
//!
//! # Owner death
//!
//! - **A writer dies holding the write lock**: a waiter (reader or writer) whose wait slice
//!   runs out probes the writer's TID and stamp; if it is dead (or the TID is a new
//!   thread's, by its stamp), the waiter releases the lock on the
//!   dead writer's behalf, sets `OWNER_DIED` and wakes everyone. The next acquirer, reader
//!   or writer, gets [`OwnerDied`](crate::OwnerDied). The mark persists (readers keep
//!   getting `OwnerDied`) until a writer that repaired the data, or a reader that checked
//!   it, calls `mark_consistent` on its guard ([`ExclusiveGuard::mark_consistent`],
//!   [`SharedGuard::mark_consistent`]). A writer that died while still `DRAINING` had not
//!   touched the data: its lock is released without the mark.
//! - **A reader dies holding a read lock**: its slot names a dead TID. A draining writer
//!   whose wait slice runs out probes the TIDs in the slots and frees each dead one (a
//!   compare-exchange `tid -> 0`, so only one recoverer wins it); the writer then gets the
//!   lock with [`Acquired::Consistent`] once the live readers have left: readers do not
//!   write, so a dead reader leaves the data as the last writer did.
//! - **A holder calls `execve`**: as for [`RawMutex`](super::raw_mutex#owner-death). The
//!   exec'ing thread keeps (main thread) or takes over (any other thread) the process id,
//!   so a lock the *main* thread holds names a live thread that no longer maps the region
//!   and cannot unlock: it is never recovered until that process exits (timed calls
//!   return). A lock held by any other thread of the process is recovered as from a dead
//!   one: exec ends those threads, and a non-main exec'ing thread gives up its own TID.
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves behind (a SIGSTOP leaves the same, held until the
//! process continues; only timed calls bound a wait for a stopped holder). A line that ends
//! in "failpoint test" has one in `tests/failpoints.rs` (the process is stopped at the
//! step, killed, and the repair checked), and `tests/locks_owner_death.rs` kills readers at
//! random instructions of lock and unlock:
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | read: before the slot claim | nothing | — |
//! | read: slot claimed, state not yet checked (or checked and backing off) | a slot naming a dead TID | a draining writer frees it once a slice has passed (≤ 1 ms after the death, however often the writer is woken); failpoint test |
//! | read: holding the read lock | the same | the same |
//! | read unlock: before the slot is freed | the same | the same |
//! | read unlock: slot freed, draining writer not yet woken | a writer asleep with every slot free | its wait slice runs out and it re-checks the slots (one slice); failpoint test |
//! | read, waiting: `READERS_WAITING` set | a stale bit | the next write unlock takes its slow path and wakes no one (one needless wake) |
//! | write: `WRITE_LOCKED` set, `DRAINING` not yet set | the state names a dead writer | a waiter probes it once a slice has passed, releases it with `OWNER_DIED` (a false alarm: the data was not touched); failpoint test |
//! | write: `DRAINING` (waiting for readers) | the state names a dead, draining writer | a waiter probes it once a slice has passed and releases it without `OWNER_DIED`; failpoint test |
//! | write: holding the write lock (`DRAINING` cleared) | the state names a dead writer | a waiter probes it once a slice has passed; the next acquirer gets `OwnerDied` |
//! | write, waiting for a writer or overflow readers: `WRITERS_WAITING` set | a stray bit | registered readers ignore it; overflow readers clear it after waiting [`STRAY_BIT_AGE`] (100 ms) behind it; writers take one needless wake |
//! | write unlock: state cleared, waiters not yet woken | sleepers with the lock free | each sleeper's slice runs out and it re-checks (one slice); failpoint test |
//! | downgrade: a reader slot claimed for the writer, `WRITE_LOCKED` not yet released | the state names a dead writer, and a slot names it too | a waiter probes the writer once a slice has passed and releases its lock with `OwnerDied` (as for a writer killed holding it); the next writer then finds the slot's reader dead and frees it (one more slice); failpoint test |
//! | downgrade: `WRITE_LOCKED` released, holding the read lock through the slot | a slot naming a dead TID | as for any registered reader |
//! | downgrade with every slot still taken after a brief spin and a sweep of dead readers (fourteen live readers claiming at that instant): `WRITE_LOCKED` swapped for an overflow count of one (one compare-exchange) | a count naming no one | as for an overflow reader: **not repaired** |
//! | overflow read (every slot taken): counted in | a count naming no one | **not repaired**: the lock leaks; only timed calls bound the wait |
//! | overflow read unlock: counted out, waiters not yet woken | sleepers with the lock free | each sleeper's slice runs out and it re-checks (one slice); failpoint test |
//! | recovery of a dead writer (`recover`): state released, waiters not yet woken | sleepers with the lock free | each sleeper's slice runs out and it re-checks (one slice); failpoint test |
//! | recovery of a stray `WRITERS_WAITING` (or a writer giving up): bit cleared, waiters not yet woken | readers the bit held back asleep, writers asleep without their bit | each sleeper's slice runs out and it re-checks, a writer setting its bit again (one slice); failpoint test |
//! | recovery of a dead reader (by an overflow reader): slot freed, drainer not yet woken | a draining writer asleep with every slot free | its wait slice runs out and it re-checks the slots (one slice); failpoint test |
//!
//! Limits of the reader recovery:
//!
//! - **More than [`READER_SLOTS`] read locks at once** (threads of any process, nested read
//!   locks counting one each): the readers that find every slot taken hold the lock
//!   *unregistered* (counted in the state), and their deaths are not recovered (use
//!   [`RwLock::write_timeout`] where that can happen). Slots are claimed per lock, so a
//!   reader freeing one lets the next reader register.
//! - **TID reuse and PID namespaces**: a slot records its reader's TID and the stamp of its
//!   start time, as a [`RawMutex`](crate::RawMutex) word records its holder (see "TID
//!   reuse, and the stamp" there), so a dead reader whose TID the kernel has handed to a
//!   new thread reads dead unless the new thread's stamp is its own (1 in 255): then its
//!   lock leaks until that thread exits. The state word has room for 5 bits of a writer's
//!   stamp beside its TID only: a dead writer whose TID a new thread got reads alive if
//!   their 5-bit stamps match (about 1 in 31), and waits on it last until that thread
//!   exits (timed calls return); that thread's own untimed `write` and `read` wait on
//!   themselves for good, as a relock of a `RawMutex` does.
//! - **Hostile bytes** in slots: any value is safe (no panic, no UB, bounded loops). A value
//!   with bit 30 or 31 set, or a stamp without a TID, names no thread and is freed; a dead
//!   TID, or a live one with another stamp, is freed; a live TID with its own stamp (or
//!   none) holds writers out as a live reader would (timed calls return). A peer that writes arbitrary bytes
//!   into a lock can always break its exclusion, e.g. by freeing a live reader's slot.
//! - **Cost**: a read lock is one compare-exchange (the slot) and one load (the state); a
//!   read unlock one swap and one load. No syscall. The slots share the state's cache line
//!   on purpose: a reader and a writer must each read the other's word anyway.
//!
//! # Recursive read locks
//!
//! A thread that holds a read lock may call `read` again; while no writer waits, that
//! succeeds at once. While a writer waits, it depends on how the first read lock is held:
//!
//! - **Registered** (in a slot: the usual case, up to [`READER_SLOTS`] read locks at once).
//!   The writer holds `WRITE_LOCKED` while it drains, and every new read waits for it, the
//!   second read of this thread included. The writer waits for the first read lock, the
//!   second read for the writer: an untimed `read` deadlocks, as it may with
//!   `std::sync::RwLock`. A [`RwLock::read_timeout`] returns [`TimedLockError::Timeout`]
//!   instead (then give up the first lock too, and retry).
//! - **Overflow** (every slot was taken). The writer cannot take the state while an
//!   overflow reader is counted in it, so it waits behind `WRITERS_WAITING`. A second read
//!   that finds a slot free registers at once (registered readers ignore the bit); one
//!   that finds none waits behind the bit and, after [`STRAY_BIT_AGE`], clears it as
//!   possibly stray and gets in: late, but not deadlocked.
//!
//! `tests/locks_typed.rs` shows both.
//!
//! Limits: as for [`RawMutex`](super::raw_mutex#limits), except that a writer's stamp has
//! 5 bits, not 8 (see the reader recovery's limits above): a dead writer whose TID the
//! kernel handed to a live thread reads as alive in 1 case in 31. On fork with a guard held: a
//! write guard's copy in the child does nothing when dropped, also once the child has
//! taken the write lock itself, and neither does a read guard's (each guard remembers the
//! thread that took it). A copy mapped stays a copy, and a copy downgraded gives a read
//! guard that holds nothing.
//! [`RawRwLock::read_unlock`] in a forked child would find no slot of its own and count an
//! overflow reader out: its callers must not do that.

mod raw;
mod slots;

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, TimedLockError, TryLockError};
use super::raw_mutex::Acquired;
use super::typed::{Acquisition, ExclusiveGuard, RawLock, RawLockShared, SharedGuard};
use crate::owner;
#[cfg(loom)]
#[doc(hidden)]
pub use crate::owner::DEAD_UNDER_LOOM;
use crate::shared::{Element, Kind, SharedSized, TypeTag};
use crate::sync::UnsafeCell;
use crate::wait::Timeout;

pub use raw::{RawRwLock, STRAY_BIT_AGE};
pub use slots::READER_SLOTS;

/// A readers-writer lock protecting a `T`, shared by threads and processes, robust against
/// a writer's death.
///
/// Many readers or one writer; a waiting writer blocks new readers. If a writer dies
/// holding the write lock, the next acquirer gets [`OwnerDied`](crate::OwnerDied); readers
/// keep getting it (they can still read) until a writer repairs the data (or a reader checks
/// it) and calls `mark_consistent` on its guard. A reader dying at any step of taking, holding or
/// releasing a read lock is recovered too (its slot is freed; the data is intact), if it was
/// one of the first [`READER_SLOTS`] readers holding the lock at once. See the
/// [module docs](self#owner-death).
///
/// Layout: `#[repr(C)]`, the two lock words and the [`READER_SLOTS`] reader slots first
/// (64 bytes), then `T`; all-zero is an unlocked lock holding `T::zeroed()`.
///
/// # Examples
///
/// ```
/// use shmstate::RwLock;
///
/// let l = RwLock::new([1u64, 1]);
/// {
///     let r1 = l.read().unwrap();
///     let r2 = l.read().unwrap();
///     assert_eq!(r1[0], r2[1]);
/// }
/// let mut w = l.write().unwrap();
/// w[0] += 1;
/// w[1] += 1;
/// ```
#[repr(C)]
pub struct RwLock<T> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RwLock<u64>, [u64; 9]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(RwLock<u64>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(RwLock<[u64; 2]>, [u64; 10]);
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(RwLock<u64>, raw) == 0);

// SAFETY: writers get `&mut T` only alone (the lock excludes everyone else), readers get
// `&T` concurrently: T must be Send (moved between writers) and Sync (shared by readers).
unsafe impl<T: Pod + Send + Sync> Sync for RwLock<T> {}

// SAFETY: 1. all-zero: an unlocked `RawRwLock` with every reader slot free, and
// `T::zeroed()`. 2. every bit pattern: any state is valid (garbage is recovered as a dead
// writer), any slot value is valid (a TID is probed, garbage is freed), `T` is Pod, padding
// is never read. 3. sixteen `u32`s and a Pod. 4. `#[repr(C)]`, asserted above for sample
// `T`s. 5. `Sync` above; `&self` methods are lock operations.
unsafe impl<T: Element + Send + Sync> SharedSized for RwLock<T> {
    const TAG: TypeTag = TypeTag::new(Kind::RWLOCK, T::ELEM);
}

type ReadResult<'a, T> = LockResult<RwLockReadGuard<'a, T>>;
type WriteResult<'a, T> = LockResult<RwLockWriteGuard<'a, T>>;
type TryRead<'a, T> = Result<RwLockReadGuard<'a, T>, TryLockError<RwLockReadGuard<'a, T>>>;
type TryWrite<'a, T> = Result<RwLockWriteGuard<'a, T>, TryLockError<RwLockWriteGuard<'a, T>>>;
type TimedRead<'a, T> = Result<RwLockReadGuard<'a, T>, TimedLockError<RwLockReadGuard<'a, T>>>;
type TimedWrite<'a, T> = Result<RwLockWriteGuard<'a, T>, TimedLockError<RwLockWriteGuard<'a, T>>>;

impl<T: Pod> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until the calling thread holds a read lock.
    ///
    /// A thread that already holds a read lock may call `read` again: see
    /// [recursion](self#recursive-read-locks) for when that waits for a writer.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the read guard: the lock is acquired) if a
    /// writer died holding the lock and no one has marked the data consistent since.
    #[inline]
    pub fn read(&self) -> ReadResult<'_, T> {
        // SAFETY: `raw` protects `data`, which lives as long as `self`.
        unsafe { RwLockReadGuard::lock(&self.raw, || self.data_ptr()) }
    }

    /// Takes a read lock if no writer holds the lock (or is taking it, waiting for the
    /// readers to leave), without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if a writer holds the lock or is taking it (or, with
    /// every reader slot taken, a writer waits); `OwnerDied` as for
    /// [`read`](Self::read).
    pub fn try_read(&self) -> TryRead<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockReadGuard::try_lock(&self.raw, || self.data_ptr()) }
    }

    /// [`read`](Self::read), giving up after `timeout` (a `timeout` too large to represent
    /// as a deadline never passes).
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`read`](Self::read).
    pub fn read_timeout(&self, timeout: Duration) -> TimedRead<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockReadGuard::lock_timeout(&self.raw, || self.data_ptr(), timeout) }
    }

    /// [`read`](Self::read), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`read_timeout`](Self::read_timeout).
    pub fn read_until(&self, deadline: Instant) -> TimedRead<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockReadGuard::lock_until(&self.raw, || self.data_ptr(), deadline) }
    }

    /// Blocks until the calling thread holds the write lock. Recovers dead writers and dead
    /// registered readers; if more than [`READER_SLOTS`] readers at once may die holding
    /// read locks, use [`write_timeout`](Self::write_timeout).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the write guard) if a writer died holding the
    /// lock and no one has marked the data consistent since.
    #[inline]
    pub fn write(&self) -> WriteResult<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockWriteGuard::lock(&self.raw, || self.data_ptr_mut()) }
    }

    /// Takes the write lock if the lock is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if held; `OwnerDied` as for [`write`](Self::write).
    pub fn try_write(&self) -> TryWrite<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockWriteGuard::try_lock(&self.raw, || self.data_ptr_mut()) }
    }

    /// [`write`](Self::write), giving up after `timeout` (a `timeout` too large to
    /// represent as a deadline never passes).
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`write`](Self::write).
    pub fn write_timeout(&self, timeout: Duration) -> TimedWrite<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockWriteGuard::lock_timeout(&self.raw, || self.data_ptr_mut(), timeout) }
    }

    /// [`write`](Self::write), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`write_timeout`](Self::write_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{RwLock, TimedLockError};
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = RwLock::new(0u32);
    /// let reader = lock.read().unwrap();
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert!(matches!(lock.write_until(deadline), Err(TimedLockError::Timeout)));
    /// assert!(Instant::now() >= deadline);
    /// drop(reader);
    /// *lock.write_until(Instant::now() + Duration::from_secs(1)).unwrap() = 1;
    /// assert_eq!(*lock.read_until(Instant::now()).unwrap(), 1);
    /// ```
    pub fn write_until(&self, deadline: Instant) -> TimedWrite<'_, T> {
        // SAFETY: as in `read`.
        unsafe { RwLockWriteGuard::lock_until(&self.raw, || self.data_ptr_mut(), deadline) }
    }

    /// Whether any lock is held now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The raw lock, for diagnostics.
    pub fn raw(&self) -> &RawRwLock {
        &self.raw
    }

    /// The data, through exclusive access to the lock (no locking needed).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut l = shmstate::RwLock::new(1u8);
    /// *l.get_mut() += 1;
    /// assert_eq!(*l.read().unwrap(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` excludes every other access to the cell.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    /// Consumes the lock, returning the data.
    ///
    /// # Examples
    ///
    /// ```
    /// let l = shmstate::RwLock::new([1u16, 2]);
    /// *l.write().unwrap() = [3, 4];
    /// assert_eq!(l.into_inner(), [3, 4]);
    /// ```
    pub fn into_inner(self) -> T {
        // SAFETY: we own the lock; `T: Copy`, so reading it leaves nothing to drop twice.
        self.data.with(|p| unsafe { *p })
    }

    /// A pointer to the data for a read guard of the calling thread, which holds a read
    /// lock.
    #[inline]
    fn data_ptr(&self) -> NonNull<T> {
        // SAFETY: a cell's pointer is never null. (`with`: under loom this records a
        // shared access, made once the read lock is held.)
        self.data
            .with(|p| unsafe { NonNull::new_unchecked(p.cast_mut()) })
    }

    /// A pointer to the data for a write guard of the calling thread, which holds the
    /// write lock.
    #[inline]
    fn data_ptr_mut(&self) -> NonNull<T> {
        // SAFETY: a cell's pointer is never null. (`with_mut`: under loom this records
        // the writer's access, made once the write lock is held.)
        self.data.with_mut(|p| unsafe { NonNull::new_unchecked(p) })
    }
}

impl<T: Pod> Default for RwLock<T> {
    /// An unlocked lock holding `T::zeroed()` (the all-zero bytes a region starts with).
    fn default() -> Self {
        RwLock::new(T::zeroed())
    }
}

impl<T> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// A read lock on a [`RwLock`]: gives `&T`, unlocks on drop. Not `Send`.
///
/// The [`SharedGuard`] of the read side of [`RawRwLock`]: see it for
/// [`map`](SharedGuard::map) and [`mark_consistent`](SharedGuard::mark_consistent). It
/// remembers the TID of the thread that took it: that is how a copy of the guard in a
/// forked child knows it holds nothing (its thread owns no slot, so an unlock there would
/// count some overflow reader's lock out instead), and dropping such a copy does nothing.
///
/// # Examples
///
/// ```
/// let l = shmstate::RwLock::new(5u32);
/// let r = l.read().unwrap();
/// assert_eq!(*r, 5);
/// ```
pub type RwLockReadGuard<'a, T> = SharedGuard<'a, RawRwLock, T>;

/// A [`RwLockReadGuard`] narrowed by [`map`](SharedGuard::map) to a part of the data.
pub type MappedRwLockReadGuard<'a, T> = SharedGuard<'a, RawRwLock, T, true>;

/// The write lock on a [`RwLock`]: gives `&mut T`, unlocks on drop. Not `Send` (the state
/// names the writing thread).
///
/// The [`ExclusiveGuard`] of the write side of [`RawRwLock`]: see it for
/// [`map`](ExclusiveGuard::map) and [`mark_consistent`](ExclusiveGuard::mark_consistent);
/// [`downgrade`](ExclusiveGuard::downgrade) turns it into a read guard atomically.
///
/// # Examples
///
/// ```
/// let l = shmstate::RwLock::new(5u32);
/// *l.write().unwrap() += 1;
/// assert_eq!(*l.read().unwrap(), 6);
/// ```
pub type RwLockWriteGuard<'a, T> = ExclusiveGuard<'a, RawRwLock, T>;

/// A [`RwLockWriteGuard`] narrowed by [`map`](ExclusiveGuard::map) to a part of the data.
pub type MappedRwLockWriteGuard<'a, T> = ExclusiveGuard<'a, RawRwLock, T, true>;

impl<'a, T: ?Sized, const M: bool> ExclusiveGuard<'a, RawRwLock, T, M> {
    /// Turns the write lock into a read lock of the calling thread, atomically: no writer
    /// gets in between, and readers waiting for this writer are let in at once. Writers
    /// stay out until the returned read guard (and every other read guard) is dropped.
    /// A [`RwLockWriteGuard`] method only.
    ///
    /// The read lock is registered in a reader slot (so its holder's death is recovered,
    /// as for any registered reader) if a slot is free, and counted as an overflow reader
    /// otherwise; see [the crash windows](self#crash-windows) for a kill mid-way.
    ///
    /// An associated function (`RwLockWriteGuard::downgrade(g)`), like std's. A mapped
    /// write guard downgrades to a mapped read guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{RwLock, RwLockWriteGuard};
    ///
    /// let l = RwLock::new(0u64);
    /// let mut w = l.write().unwrap();
    /// *w = 42;
    /// let r = RwLockWriteGuard::downgrade(w);
    /// // Other readers get in now; writers wait for `r`.
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert_eq!(*l.read().unwrap(), 42));
    ///     s.spawn(|| assert!(l.try_write().is_err()));
    /// });
    /// assert_eq!(*r, 42);
    /// ```
    pub fn downgrade(this: Self) -> SharedGuard<'a, RawRwLock, T, M> {
        let (raw, data, made_here) = ExclusiveGuard::into_parts(this);
        // A forked copy (made by another thread: the parent's) downgrades nothing, even
        // where the state names the child by now (it took the write lock itself).
        // SAFETY: the calling thread made the acquisition and holds the write lock (the
        // guard, now given up, proved it; it is not Send).
        let token = if made_here && unsafe { raw.downgrade() } {
            owner::current()
        } else {
            // A forked copy (the state names the parent's thread): the guard holds
            // nothing, and a token no thread has keeps its drop and mark from touching the
            // lock.
            0
        };
        // SAFETY: the calling thread now holds a read lock of `raw` (taken by `downgrade`
        // on this thread), which protects `*data`, valid for `'a`; or, with token 0, the
        // guard is a forked copy, as the write guard it came from was.
        unsafe { SharedGuard::from_parts(raw, data, token) }
    }
}

// SAFETY: `write`, `try_write` (`Some`) and `write_until` (`Some`) return only once the
// state names the calling thread as writer and every reader slot is free (the `SeqCst`
// pairing of the module docs), with no overflow reader counted: no other acquisition,
// read or write, succeeds until `write_unlock` (or a recovery after the writer's death,
// which then reports `OwnerDied`). Each synchronises with the release before it.
unsafe impl RawLock for RawRwLock {
    #[inline]
    fn lock(&self) -> Acquired {
        self.write()
    }

    #[inline]
    fn try_lock(&self) -> Option<Acquired> {
        self.try_write()
    }

    #[inline]
    fn lock_until(&self, deadline: Instant) -> Result<Acquired, Timeout> {
        self.write_until(deadline).ok_or(Timeout)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded: the caller holds the write lock and stops using the data.
        unsafe { self.write_unlock() }
    }

    fn mark_consistent(&self) {
        // The caller holds the write lock, so this always applies.
        let _ = RawRwLock::mark_consistent(self);
    }
}

// SAFETY: `read`, `try_read` (`Some`) and `read_until` (`Some`) return only with a read
// lock of the calling thread (a slot naming it, or an overflow count) and no writer
// holding the state; a writer then waits for every slot and the count. Each synchronises
// with the write release before it. The token is the reader's TID, checked in
// `unlock_shared` so that a forked child's copy of a guard releases nothing.
unsafe impl RawLockShared for RawRwLock {
    type Token = u32;

    #[inline]
    fn lock_shared(&self) -> Acquired {
        self.read()
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<Acquired> {
        self.try_read()
    }

    #[inline]
    fn lock_shared_until(&self, deadline: Instant) -> Result<Acquired, Timeout> {
        self.read_until(deadline).ok_or(Timeout)
    }

    #[inline]
    fn token(&self) -> u32 {
        owner::current()
    }

    #[inline]
    unsafe fn unlock_shared(&self, reader: u32) {
        if owner::current() != reader {
            // A copy in a forked child: the read lock is the parent's.
            return;
        }
        // SAFETY: the caller's acquisition was made by this thread (checked above: not a
        // forked copy) and is released once; the data is not read after.
        unsafe { self.read_unlock() };
    }

    fn mark_consistent_shared(&self, reader: u32) {
        self.mark_consistent_as_reader(reader);
    }
}
