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
//! [`SeqLockArray`](crate::SeqLockArray) batch writers take one element lock after another:
//! one killed part-way leaves each element in one of these states, and each element is
//! repaired on its own (`write_batch` passes its closure whether any element was torn).
//!
//! Limits (those of the liveness probe): all processes must share a PID
//! namespace, and a dead writer whose TID the kernel has already reused reads as alive, so
//! waits on it last until that thread exits: use the timed variants where that matters.
//! TID reuse also has an ABA window: if, between a waiter's probe ("dead") and its
//! takeover CAS, the lock is taken over, released and taken again by a new thread that
//! got the dead writer's TID, the CAS succeeds and two writers race: both end on the same
//! even sequence value, so a reader can accept a mix of their values. This needs the
//! kernel to hand out the same TID again within that window (it cycles through
//! `pid_max` ids first).
//! `seq` is 32 bits: a reader preempted across exactly a multiple of 2³¹ writes could
//! accept a mixed copy (as with the Linux kernel's 32-bit `seqcount_t`).

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::atomic_copy::AtomicCell;
use crate::futex;
use crate::lock::{LockResult, OwnerDied, TimedLockError};
use crate::owner;
use crate::sync::{AtomicU32, Ordering, fence, spin_loop};
use crate::wait::{Slices, Timeout, deadline_passed, holder_is_dead, past};

/// Bit 31 of `writer`: some thread is (or may be) futex-waiting on `writer`.
const WAITERS: u32 = 1 << 31;
/// Bits 0..=30 of `writer`: the owner's TID (kernel TIDs are below 2²², so they fit).
const TID_MASK: u32 = !WAITERS;

/// Loads a waiter spins (loads only) before it futex-waits.
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
unsafe impl<T: Pod> crate::SharedSized for SeqLock<T> {
    const TAG: crate::TypeTag = crate::TypeTag::new(crate::Kind::SEQLOCK, crate::Elem::pod::<T>());
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

    /// One optimistic read: `Ok(value)`, or `Err(Some(odd))` if a write was in progress
    /// (`odd` = the sequence seen), or `Err(None)` if a write overlapped the copy.
    #[inline]
    fn read_once(&self) -> Result<T, Option<u32>> {
        // Acquire: pairs with the writer's Release even store (c): if `s1` is that value,
        // all of that write's data stores are visible to the loads below.
        let s1 = self.seq.load(Ordering::Acquire);
        if is_writing(s1) {
            return Err(Some(s1));
        }
        let value = self.data.load();
        // Acquire fence: pairs with the writer's Release fence (a) after its odd store. If
        // any load above read a store of a later write, that write's odd store is visible
        // to the reload below.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the data loads by the fence above; it only needs to
        // observe a newer value of `seq`, which the fence guarantees (see above).
        let s2 = self.seq.load(Ordering::Relaxed);
        if s1 == s2 { Ok(value) } else { Err(None) }
    }

    /// Reads the value, waiting while a writer is writing.
    ///
    /// Never returns a torn value. Waits for a live writer (spinning briefly, then
    /// sleeping on a futex); if the writer died mid-write, sleeps (neither spinning nor
    /// probing) until another writer repairs the value, with [`write`](Self::write) or a
    /// guard marked consistent (see [`lock`](Self::lock)): waking at least every 800 µs to
    /// look, and **forever** if no writer ever comes. Writers that keep writing can also
    /// keep a reader retrying (a seqlock never makes writers wait for readers). Use
    /// [`read_timeout`](Self::read_timeout) or [`try_read`](Self::try_read) to bound the
    /// wait.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(7u32);
    /// assert_eq!(s.read(), 7);
    /// ```
    #[inline]
    pub fn read(&self) -> T {
        match self.read_once() {
            Ok(v) => v,
            Err(_) => self.read_slow(None, true).unwrap_or_else(|_| T::zeroed()),
        }
    }

    /// Reads the value, giving up after a bounded number of attempts instead of waiting.
    ///
    /// Spins (with loads only) through short writes; it makes no system call unless a
    /// write is still in progress when it gives up (then it probes the writer).
    ///
    /// # Errors
    ///
    /// [`SeqLockError::WriterActive`] if a live writer kept writing through every attempt;
    /// [`SeqLockError::WriterDied`] if the writer died mid-write (the value is torn until
    /// the next write).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(1u8);
    /// assert_eq!(s.try_read(), Ok(1));
    /// ```
    #[inline]
    pub fn try_read(&self) -> Result<T, SeqLockError> {
        match self.read_once() {
            Ok(v) => Ok(v),
            Err(_) => self.try_read_slow(),
        }
    }

    /// Reads the value, waiting at most `timeout` for a writer to finish.
    ///
    /// # Errors
    ///
    /// [`SeqLockError::Timeout`] if at the deadline a live writer was still writing, or
    /// writes kept overlapping every copy; [`SeqLockError::WriterDied`] as soon as the
    /// writer is found dead mid-write.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = shmstate::SeqLock::new(1u16);
    /// assert_eq!(s.read_timeout(Duration::from_millis(10)), Ok(1));
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<T, SeqLockError> {
        match self.read_once() {
            Ok(v) => Ok(v),
            Err(_) => self.read_slow(Instant::now().checked_add(timeout), false),
        }
    }

    #[cold]
    fn try_read_slow(&self) -> Result<T, SeqLockError> {
        let mut last_odd = None;
        for _ in 0..TRY_READ_ATTEMPTS {
            match self.read_once() {
                Ok(v) => return Ok(v),
                Err(odd) => last_odd = odd.or(last_odd),
            }
            for _ in 0..SPINS {
                spin_loop();
            }
        }
        // Still failing: say whether the writer is alive. (A run of completed writes
        // overlapping every copy also lands here: that is "a writer is active".)
        match last_odd {
            Some(odd) if self.writer_is_dead(odd) => Err(SeqLockError::WriterDied),
            _ => Err(SeqLockError::WriterActive),
        }
    }

    /// Whether the write seen as odd sequence `odd` is still in progress and its writer
    /// is dead or unrecorded.
    #[cold]
    fn writer_is_dead(&self, odd: u32) -> bool {
        // Acquire: pairs with the Release swap in `unlock_writer`; if we read its 0, the
        // even store (c) before it is visible to the `seq` load below.
        let w = self.writer.load(Ordering::Acquire);
        // Relaxed: ordered after the Acquire load above, which is all we need.
        if self.seq.load(Ordering::Relaxed) != odd {
            return false;
        }
        let tid = owner_of(w);
        writer_is_gone(tid)
    }

    /// The waiting read loop of [`read`](Self::read) (`repair_wait`: wait out dead
    /// writers too) and [`read_timeout`](Self::read_timeout).
    #[cold]
    fn read_slow(&self, deadline: Option<Instant>, repair_wait: bool) -> Result<T, SeqLockError> {
        loop {
            match self.read_once() {
                Ok(v) => return Ok(v),
                // A complete write overlapped the copy. Writes that never leave `seq` odd
                // long enough to sleep on it never reach the deadline check in
                // `wait_write_end`, so check it here too.
                Err(None) if past(deadline) => return Err(SeqLockError::Timeout),
                Err(None) => spin_loop(),
                Err(Some(odd)) => self.wait_write_end(odd, deadline, repair_wait)?,
            }
        }
    }

    /// Waits until `seq` is no longer `odd` (`Ok`: retry), the deadline passes
    /// ([`SeqLockError::Timeout`], or [`SeqLockError::WriterDied`] if the writer is
    /// dead by then), or, unless `repair_wait`, the writer is found dead
    /// ([`SeqLockError::WriterDied`]). Spins with loads first, then futex-waits on `writer`
    /// in growing slices (`Slices::for_holder`, 50 µs up to 800 µs).
    ///
    /// Probes the writer only when a slice ran out without a wake, as `RawMutex` does: a
    /// live writer's unlock wakes us first, so waiting out ordinary writes costs no probe
    /// (its syscalls: `kill`, and a `/proc` read for a live thread). With `repair_wait`
    /// it never probes: [`read`](Self::read) waits for a repair whether the writer lives or
    /// not.
    #[cold]
    pub(crate) fn wait_write_end(
        &self,
        odd: u32,
        deadline: Option<Instant>,
        repair_wait: bool,
    ) -> Result<(), SeqLockError> {
        for _ in 0..SPINS {
            // Relaxed: we only watch for a change; the caller's retry re-reads with Acquire.
            if self.seq.load(Ordering::Relaxed) != odd {
                return Ok(());
            }
            spin_loop();
        }
        // A repair wait never probes: it waits for a writer, however long, so it sleeps in
        // word-wait slices (10 ms), not in a holder wait's short ones.
        let mut slices = if repair_wait {
            Slices::new()
        } else {
            Slices::for_holder()
        };
        let mut probe_due = false;
        loop {
            // Acquire: pairs with the Release swap in `unlock_writer` (see
            // `writer_is_dead`).
            let w = self.writer.load(Ordering::Acquire);
            // Relaxed: ordered after the Acquire load above.
            if self.seq.load(Ordering::Relaxed) != odd {
                return Ok(());
            }
            let tid = owner_of(w);
            if !repair_wait
                && (tid == 0
                    || (slices.probe_now(&mut probe_due)
                        && writer_is_gone_watched(&mut slices, tid)))
            {
                return Err(SeqLockError::WriterDied);
            }
            if tid != 0 && w & WAITERS == 0 {
                // Relaxed: the flag only asks the owner to wake us; the wake and the futex
                // value check order everything else.
                if self
                    .writer
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            let expect = if tid != 0 { w | WAITERS } else { w };
            match self.sleep_on_writer(expect, &mut slices, deadline) {
                Slept::Woken => {}
                Slept::SliceOut => probe_due = true,
                // One probe at the deadline says which error is true.
                Slept::Deadline if self.writer_is_dead(odd) => {
                    return Err(SeqLockError::WriterDied);
                }
                Slept::Deadline => return Err(SeqLockError::Timeout),
            }
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

    /// Takes the writer lock, waiting as long as it takes. Returns `true` if the previous
    /// writer died mid-write (the data is torn; `seq` is odd).
    #[inline]
    pub(crate) fn lock_writer(&self) -> bool {
        match self.lock_writer_until(None) {
            Ok(torn) => torn,
            Err(Timeout) => unreachable_no_deadline(),
        }
    }

    /// Takes the writer lock before `deadline`. `Ok(torn)`: see [`lock_writer`].
    #[inline]
    pub(crate) fn lock_writer_until(&self, deadline: Option<Instant>) -> Result<bool, Timeout> {
        let me = owner::current() & TID_MASK;
        // Acquire: pairs with the previous owner's Release swap in `unlock_writer`, so its
        // data and `seq` stores are visible to us (`update` reads the old value, and we
        // continue its sequence).
        if self
            .writer
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: we hold the lock; the Acquire above made the last `seq` store of
            // the previous owner visible. Odd here means bytes a dead or hostile process
            // left (a live writer never unlocks with `seq` odd).
            return Ok(is_writing(self.seq.load(Ordering::Relaxed)));
        }
        self.lock_writer_contended(me, deadline)
    }

    #[cold]
    fn lock_writer_contended(&self, me: u32, deadline: Option<Instant>) -> Result<bool, Timeout> {
        let mut spins = 0;
        let mut slices = Slices::for_holder();
        let mut probe_due = false;
        loop {
            // Relaxed: only a hint for the CASes below, which carry the orderings.
            let w = self.writer.load(Ordering::Relaxed);
            if w == 0 {
                // Acquire: as in `lock_writer_until`.
                match self
                    .writer
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                {
                    // Relaxed: as in `lock_writer_until`.
                    Ok(_) => return Ok(is_writing(self.seq.load(Ordering::Relaxed))),
                    Err(_) => continue,
                }
            }
            if spins < SPINS {
                spins += 1;
                spin_loop();
                continue;
            }
            // Probe only once a slice has passed (as `RawMutex` does): a live owner's
            // unlock wakes us first, so ordinary contention costs no probe. An
            // owner that is already dead costs the first slice (50 µs) before the takeover.
            let tid = owner_of(w);
            if tid == 0
                || (slices.probe_now(&mut probe_due) && writer_is_gone_watched(&mut slices, tid))
            {
                match self.take_over(w, me) {
                    Some(torn) => return Ok(torn),
                    None => {
                        // The word changed first: probe the new one (within the deadline:
                        // see `past`).
                        if past(deadline) {
                            return Err(Timeout);
                        }
                        probe_due = true;
                        continue;
                    }
                }
            }
            if w & WAITERS == 0
                && self
                    .writer
                    // Relaxed: the flag only asks the owner to wake us.
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            match self.sleep_on_writer(w | WAITERS, &mut slices, deadline) {
                Slept::Woken => {}
                Slept::SliceOut => probe_due = true,
                Slept::Deadline => {
                    // One last probe: a dead owner is taken over, not reported as a timeout
                    // (a deadline shorter than a slice would otherwise never recover it).
                    // Relaxed: a hint for the CAS in `take_over`, which orders.
                    let w = self.writer.load(Ordering::Relaxed);
                    let tid = owner_of(w);
                    if w != 0
                        && writer_is_gone(tid)
                        && let Some(torn) = self.take_over(w, me)
                    {
                        return Ok(torn);
                    }
                    return Err(Timeout);
                }
            }
        }
    }

    /// Takes the writer lock over from the dead (or unrecorded) owner of word `w`: `Some(torn)`
    /// on success, `None` if `w` changed meanwhile.
    #[cold]
    fn take_over(&self, w: u32, me: u32) -> Option<bool> {
        // Keep WAITERS so our unlock wakes the waiters. Acquire: pairs with any Release
        // unlock before the dead owner's lock (the dead owner itself released nothing).
        self.writer
            .compare_exchange(w, me | (w & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // An RMW reads the latest `seq` in modification order even though the dead owner
        // never released it; Relaxed: we only need the value.
        Some(is_writing(self.seq.fetch_add(0, Ordering::Relaxed)))
    }

    /// Marks a write in progress (the caller holds the writer lock); returns the odd
    /// sequence value. Follow with a Release fence before the data stores.
    #[inline]
    pub(crate) fn begin_write(&self) -> u32 {
        // Release: publishes our TID (the lock CAS) to a reader that sees this odd value, so
        // it can probe us (`wait_write_end`). The data stores are ordered after this store
        // by the caller's Release fence (a), not by this ordering. An RMW (not a store) so
        // that after a takeover we continue from the dead writer's latest value.
        self.seq.fetch_or(1, Ordering::Release) | 1
    }

    /// Ends the write begun with `odd` (the data is stored): `seq` becomes even.
    #[inline]
    pub(crate) fn end_write(&self, odd: u32) {
        // Release (c): pairs with the readers' Acquire load of `seq`; a reader that sees
        // this even value sees every data store of this write.
        self.seq.store(odd.wrapping_add(1), Ordering::Release);
    }

    /// Releases the writer lock, waking waiters if any announced themselves.
    #[inline]
    pub(crate) fn unlock_writer(&self) {
        // Release: pairs with the next writer's Acquire CAS in `lock_writer_until` and with
        // the waiters' Acquire loads of `writer` (they then see our even `seq`).
        let prev = self.writer.swap(0, Ordering::Release);
        if prev & WAITERS != 0 {
            self.wake_waiters();
        }
    }

    #[cold]
    fn wake_waiters(&self) {
        futex::wake_all(&self.writer);
    }

    /// Stores `value` (the caller holds the writer lock) and releases the lock.
    #[inline]
    fn publish_and_unlock(&self, value: &T) {
        let odd = self.begin_write();
        // Release fence (a): pairs with the readers' Acquire fence; orders the odd store
        // above before the data stores below for any reader that sees one of them.
        fence(Ordering::Release);
        self.data.store(value);
        self.end_write(odd);
        self.unlock_writer();
    }

    /// The sequence word, for a multi-slot reader (`SeqLockArray::snapshot`).
    #[inline]
    pub(crate) fn seq_word(&self) -> &AtomicU32 {
        &self.seq
    }

    /// Copies the data out with relaxed loads: a possibly racy copy that the caller
    /// validates against the sequence word.
    #[inline]
    pub(crate) fn load_racy(&self) -> T {
        self.data.load()
    }

    /// Copies the data out while holding the writer lock (no other writer can store).
    #[inline]
    pub(crate) fn load_locked(&self) -> T {
        self.data.load()
    }

    /// Stores the data while holding the writer lock, between `begin_write` + Release
    /// fence and `end_write`.
    #[inline]
    pub(crate) fn store_locked(&self, value: &T) {
        self.data.store(value);
    }

    /// Replaces the value. Waits for the write lock (taking it over from a dead writer),
    /// and repairs a value torn by a writer that died mid-write.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new([0u32; 4]);
    /// s.write([1, 2, 3, 4]);
    /// assert_eq!(s.read(), [1, 2, 3, 4]);
    /// ```
    #[inline]
    pub fn write(&self, value: T) {
        self.lock_writer();
        self.publish_and_unlock(&value);
    }

    /// Read-modify-write: calls `f` on the current value under the write lock and stores
    /// the result, returning what `f` returns. Readers keep reading the old value while
    /// `f` runs. If `f` panics, nothing is stored.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if the previous writer died mid-write (or a writer since left its
    /// torn value unrepaired): the value is **torn** (each 8-byte word holds its old or
    /// its new value), so `f` is **not** called. The error holds the write guard (the
    /// lock *is* held) with the torn value: repair it and call
    /// [`SeqLockWriteGuard::mark_consistent`] to publish it. Dropping the error (or the
    /// guard unmarked) stores nothing: the value stays torn for readers and the next
    /// writer gets `OwnerDied` again, until someone repairs it (or [`write`](Self::write)s
    /// a whole new value).
    ///
    /// # Examples
    ///
    /// ```
    /// let hits = shmstate::SeqLock::new([0u64, 0]); // [count, total]
    /// let r = hits.update(|[n, total]| {
    ///     *n += 1;
    ///     *total += 30;
    /// });
    /// if let Err(torn) = r {
    ///     // A writer died mid-write: the old value is garbage. Start over.
    ///     let mut g = torn.into_inner();
    ///     *g = [1, 30];
    ///     g.mark_consistent();
    /// }
    /// assert_eq!(hits.read(), [1, 30]);
    /// ```
    #[must_use = "an `Err` means the value is torn and `f` did not run"]
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, OwnerDied<SeqLockWriteGuard<'_, T>>> {
        let mut guard = self.lock()?;
        Ok(f(&mut guard))
    }

    /// Takes the write lock and returns a guard holding a copy of the current value;
    /// dropping the guard stores the copy (readers see the old value until then). A guard
    /// dropped while its thread panics stores nothing.
    ///
    /// A thread that calls this while it already holds the guard deadlocks.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard: the lock *is* acquired) if the previous writer
    /// died mid-write, or a writer since dropped such a guard without marking it: the
    /// guard's copy is **torn**. Repair it, then call
    /// [`SeqLockWriteGuard::mark_consistent`]; a guard dropped unmarked stores nothing
    /// and leaves the value torn (readers keep reporting [`SeqLockError::WriterDied`] or
    /// waiting in [`read`](Self::read), and the next writer gets `OwnerDied` again). This
    /// is the shape of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(5i64);
    /// let mut g = match s.lock() {
    ///     Ok(g) => g,
    ///     Err(torn) => {
    ///         let mut g = torn.into_inner();
    ///         *g = 5; // repair...
    ///         g.mark_consistent(); // ...and say so
    ///         g
    ///     }
    /// };
    /// *g *= 2;
    /// drop(g);
    /// assert_eq!(s.read(), 10);
    /// ```
    pub fn lock(&self) -> LockResult<SeqLockWriteGuard<'_, T>> {
        let torn = self.lock_writer();
        SeqLockWriteGuard::new(self, torn)
    }

    /// [`lock`](Self::lock), waiting at most `timeout` for the write lock.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if another live writer held the lock throughout (then
    /// at least `timeout` has passed); [`TimedLockError::OwnerDied`] as for
    /// [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = shmstate::SeqLock::new(1u8);
    /// if let Ok(mut g) = s.lock_timeout(Duration::from_millis(10)) {
    ///     *g = 2;
    /// }
    /// assert_eq!(s.read(), 2);
    /// ```
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SeqLockWriteGuard<'_, T>, TimedLockError<SeqLockWriteGuard<'_, T>>> {
        let torn = self
            .lock_writer_until(Instant::now().checked_add(timeout))
            .map_err(|Timeout| TimedLockError::Timeout)?;
        Ok(SeqLockWriteGuard::new(self, torn)?)
    }

    /// Test hook: takes the write lock, marks a write in progress, stores `value`, and
    /// returns **without** ending the write or releasing the lock, exactly as a writer
    /// killed between its two sequence stores leaves things. Not part of the API.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn begin_write_for_test(&self, value: T) {
        self.lock_writer();
        let _odd = self.begin_write();
        fence(Ordering::Release);
        self.data.store(&value);
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

/// Whether the writer `tid` (bits read from the writer word) is gone: garbage at once,
/// else a probe (a syscall: slow paths only). See [`holder_is_dead`].
#[cold]
fn writer_is_gone(tid: u32) -> bool {
    #[cfg(all(test, not(loom)))]
    tests::PROBES.with(|n| n.set(n.get() + 1));
    holder_is_dead(tid)
}

/// [`writer_is_gone`] through a wait's watch of the writer (see `Slices::holder_is_dead`).
#[cold]
fn writer_is_gone_watched(slices: &mut Slices, tid: u32) -> bool {
    #[cfg(all(test, not(loom)))]
    tests::PROBES.with(|n| n.set(n.get() + 1));
    slices.holder_is_dead(tid)
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

/// Exclusive write access to a [`SeqLock`], from [`SeqLock::lock`]: derefs to a private
/// copy of the value, which is stored (and the lock released) when the guard drops.
///
/// A guard handed out inside [`OwnerDied`] holds a value torn by a writer that died
/// mid-write ([`recovered`](Self::recovered)): it stores nothing when dropped unless
/// [`mark_consistent`](Self::mark_consistent) was called, so a torn value is never
/// published as a valid write by accident.
///
/// Not `Send`: the lock records the locking thread's TID for the liveness probe.
///
/// # Examples
///
/// ```
/// let s = shmstate::SeqLock::new([1u8, 2]);
/// {
///     let mut g = s.lock().expect("no writer died mid-write");
///     g[1] = 9;
///     assert_eq!(s.read(), [1, 2]); // readers see the old value until the drop
/// }
/// assert_eq!(s.read(), [1, 9]);
/// ```
#[must_use = "dropping the guard immediately stores the value unchanged"]
pub struct SeqLockWriteGuard<'a, T: Pod> {
    lock: &'a SeqLock<T>,
    value: T,
    /// The guard started from a value torn by a writer that died mid-write.
    recovered: bool,
    /// Dropping the guard publishes `value`: `false` only for a recovered guard that has
    /// not been marked consistent.
    publish: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SeqLockWriteGuard<'a, T> {
    /// The guard of a writer that holds the lock; `Err` if the value is torn.
    fn new(lock: &'a SeqLock<T>, torn: bool) -> LockResult<Self> {
        let guard = SeqLockWriteGuard {
            lock,
            value: lock.load_locked(),
            recovered: torn,
            publish: !torn,
            _not_send: PhantomData,
        };
        if torn {
            Err(OwnerDied::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// `true` if the previous writer died mid-write: the value this guard started with is
    /// torn (each 8-byte word holds its old or its new value). Such a guard came wrapped in
    /// [`OwnerDied`], and stores nothing unless [marked
    /// consistent](Self::mark_consistent).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Declares the guard's value repaired after an [`OwnerDied`]: dropping the guard will
    /// store it, making the value valid again for readers and later writers. Without this
    /// call, a recovered guard stores nothing and the value stays torn. Does nothing on a
    /// guard that was not recovered (it stores its value anyway).
    pub fn mark_consistent(&mut self) {
        self.publish = true;
    }
}

impl<T: Pod> Deref for SeqLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Pod> DerefMut for SeqLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Pod> Drop for SeqLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if !self.publish || std::thread::panicking() {
            // A recovered guard nobody marked consistent, or a closure panicked mid-update:
            // store nothing, just release the lock. (If the value was torn, `seq` stays odd
            // with no owner, which the next writer and the readers treat as a dead
            // writer's torn value.)
            self.lock.unlock_writer();
        } else {
            self.lock.publish_and_unlock(&self.value);
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeqLockWriteGuard")
            .field("value", &self.value)
            .field("recovered", &self.recovered)
            .field("marked_consistent", &(self.recovered && self.publish))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    thread_local! {
        /// Owner probes made by this thread's waits.
        pub(super) static PROBES: Cell<u64> = const { Cell::new(0) };
        /// Futex-wait slices this thread's waits began.
        pub(super) static SLEEPS: Cell<u64> = const { Cell::new(0) };
    }

    /// This thread's (probes, sleeps) so far.
    fn counts() -> (u64, u64) {
        (PROBES.with(Cell::get), SLEEPS.with(Cell::get))
    }

    /// Waits (bounded) until someone has announced a sleep on `s`'s writer word (the
    /// WAITERS bit).
    fn until_waiters(s: &SeqLock<u64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Relaxed: a poll; the lock protocol orders the rest.
        while s.writer.load(Ordering::Relaxed) & WAITERS == 0 {
            assert!(Instant::now() < deadline, "the waiter never went to sleep");
            std::thread::yield_now();
        }
    }

    const ROUNDS: u64 = 200;

    /// A reader that sleeps through writes of a live writer, woken by each write's end,
    /// probes the writer only when a sleep slice runs out without a wake (rare: only if
    /// this thread is descheduled for a whole slice), not before every sleep.
    #[test]
    #[cfg_attr(miri, ignore = "hundreds of futex round trips")]
    fn reader_woken_by_live_writes_does_not_probe_per_sleep() {
        let s = SeqLock::new(0u64);
        let (probes, sleeps) = std::thread::scope(|sc| {
            let reader = sc.spawn(|| {
                let mut last = 0;
                while last < ROUNDS {
                    last = s.read_timeout(Duration::from_secs(60)).unwrap();
                }
                counts()
            });
            for i in 1..=ROUNDS {
                // A write that stays open until the reader sleeps on it.
                s.lock_writer();
                let odd = s.begin_write();
                fence(Ordering::Release);
                s.store_locked(&i);
                until_waiters(&s);
                s.end_write(odd);
                s.unlock_writer();
                if reader.is_finished() {
                    break;
                }
            }
            reader.join().unwrap()
        });
        eprintln!("reader: {sleeps} sleeps, {probes} probes");
        assert!(sleeps >= ROUNDS / 2, "the reader slept only {sleeps} times");
        assert!(probes <= sleeps / 4, "{probes} probes for {sleeps} sleeps");
    }

    /// The same for a writer waiting for the write lock held by a live writer.
    #[test]
    #[cfg_attr(miri, ignore = "hundreds of futex round trips")]
    fn writer_woken_by_live_unlocks_does_not_probe_per_sleep() {
        let s = SeqLock::new(0u64);
        let s = &s;
        let (probes, sleeps) = std::thread::scope(|sc| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
            let waiter = sc.spawn(move || {
                for _ in 0..ROUNDS {
                    rx.recv().unwrap();
                    s.write(1);
                    back_tx.send(()).unwrap();
                }
                counts()
            });
            for _ in 0..ROUNDS {
                s.lock_writer();
                tx.send(()).unwrap();
                until_waiters(s);
                s.unlock_writer();
                back_rx.recv().unwrap();
            }
            waiter.join().unwrap()
        });
        eprintln!("writer: {sleeps} sleeps, {probes} probes");
        assert!(sleeps >= ROUNDS / 2, "the waiter slept only {sleeps} times");
        assert!(probes <= sleeps / 4, "{probes} probes for {sleeps} sleeps");
    }
}
