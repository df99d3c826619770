//! [`RwLock<T>`] and [`RawRwLock`]: a robust, writer-preferring readers-writer lock.
//!
//! The algorithm follows std's futex rwlock (`sys/sync/rwlock/futex.rs`): one state word
//! holding the reader count and two "waiting" bits, readers sleeping on the state word and
//! writers on a separate notification counter; a waiting writer blocks new readers, so
//! writers do not starve. One difference: an unlock clears both waiting bits and wakes one
//! writer *and* all readers (see `wake_flagged`), because our futex wake does not report
//! whether a writer was there to wake. As in [`RawMutex`](super::RawMutex), the write-locked state holds
//! the writer's TID, so waiters can probe it and recover from a dead writer.
//!
//! # Owner death
//!
//! - **A writer dies holding the write lock**: a waiter (reader or writer) whose wait slice
//!   runs out probes the writer's TID; if it is dead, the waiter releases the lock on the
//!   dead writer's behalf, sets `OWNER_DIED` and wakes everyone. The next acquirer, reader
//!   or writer, gets [`OwnerDied`]. The mark persists (readers keep getting `OwnerDied`)
//!   until a *writer* calls [`RwLockWriteGuard::mark_consistent`].
//! - **A reader dies holding a read lock**: the reader count names no one, so the lock
//!   also keeps a table of [`READER_SLOTS`] (14) *reader slots*, each holding the TID of a
//!   thread that holds one read lock. A waiting writer whose wait slice runs out while
//!   readers hold the lock probes the TIDs in the slots; for each dead one it frees the
//!   slot (a compare-exchange `tid -> 0`, so only one recoverer wins it) and then counts
//!   that lock out of the state, waking waiters as the dead reader's unlock would have.
//!   The writer then gets the lock as usual, once the live readers have left, with
//!   [`Acquired::Consistent`]: readers do not write, so a dead reader leaves the data as
//!   the last writer did, and `OWNER_DIED` (which asks for a repair and persists until one)
//!   would be a false alarm. A reader waits for readers only behind a waiting writer's
//!   `WRITERS_WAITING`; that writer recovers, but it may have died too (a process killed
//!   while one thread read and another waited to write leaves both behind), so a waiting
//!   reader whose slice runs out while readers hold the lock recovers dead readers the
//!   same way.
//!
//! The reader protocol, and why every crash window fails safe:
//!
//! - `read`: count in (`state + 1`, as without slots), *then* claim a free slot
//!   (compare-exchange `0 -> tid`, starting at `tid % READER_SLOTS`, trying every slot).
//!   Death in between leaves a counted lock without a slot: it is leaked, as every dead
//!   reader's lock was before the slots, but never counted out twice.
//! - `read_unlock`: free a slot holding the caller's TID (any one: each stands for one of
//!   its read locks; found at once where the claim looked first, so the raw API needs no
//!   slot handle), *then* count out. Death in between: the same leak.
//! - recovery: free the slot, *then* count out. A recoverer dying in between: the same leak.
//!
//! The reverse orders would leave, in the window, a slot whose lock is already counted out;
//! a recoverer would count it out again and let a writer in beside a live reader. So the
//! invariant is: the reader count is at least the number of occupied slots.
//!
//! Limits of the reader recovery:
//!
//! - **More than [`READER_SLOTS`] read locks at once** (threads of any process, nested read
//!   locks counting one each): the readers that find every slot taken hold the lock
//!   *unregistered*, and their deaths are not recovered (the lock leaks as before: use
//!   [`RwLock::write_timeout`] where that can happen, and [`RwLock::read_timeout`] too,
//!   as readers wait behind a waiting writer, which may itself have died). Slots are claimed per lock, so a
//!   reader freeing one lets the next reader register.
//! - **TID reuse and PID namespaces**, as for a writer: a dead reader whose TID the kernel
//!   has handed to a new thread reads as alive (its lock leaks until that thread exits);
//!   between a recoverer's probe and its compare-exchange the slot could also have been
//!   recovered by another waiter and re-claimed by a new reader with the reused TID, which
//!   the first recoverer would then count out (the PID space must wrap in microseconds).
//! - **Hostile bytes** in slots: any value is safe (no panic, no UB, bounded loops). A value
//!   above 2^22 names no thread: it is freed without counting anything out. A value naming
//!   a dead thread that holds no lock would make a recoverer count out a lock it does not
//!   own, so a recoverer first checks the reader count against the number of occupied
//!   slots, and recovers nothing if slots claim more locks than are counted. What remains:
//!   hostile bytes that overwrite a live reader's slot with a dead TID, or that fake dead
//!   slots while unregistered readers hold the lock, pass the check and let a writer in
//!   beside a live reader. That is no more than a process writing the state word could do
//!   (setting the count to 0 has the same effect): a peer that writes arbitrary bytes into
//!   a lock can always break its exclusion.
//! - **Cost**: a read lock also claims a slot (one compare-exchange on the lock's cache
//!   line, which the count's compare-exchange has just brought to this core), and a read
//!   unlock frees it (a load and a store). No syscall. The slots share the state's cache
//!   line on purpose: every reader already writes the state word, so padding the slots
//!   apart would add a line transfer per lock instead of removing one.
//!
//! Limits: as for [`RawMutex`](super::raw_mutex#limits). On fork with a guard held: a
//! write guard's copy in the child does nothing when dropped (the state names the parent's
//! thread), and neither does a read guard's (it remembers the thread that took it). The
//! reader count itself names no one, so [`RawRwLock::read_unlock`] in a forked child would
//! count the parent's read lock out: its callers must not do that.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
use super::raw_mutex::{
    Acquired, MAX_TID, SPIN_LIMIT, Slices, TID_MASK, TRY_LIMIT, deadline_passed, is_dead,
};
use crate::futex;
use crate::owner;
#[cfg(loom)]
#[doc(hidden)]
pub use crate::owner::DEAD_UNDER_LOOM;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, UnsafeCell, spin_loop};

/// Reader count, or the writer's TID when `WRITE_LOCKED`.
const COUNT_MASK: u32 = TID_MASK;
/// Most readers at once; one more waits.
const MAX_READERS: u32 = COUNT_MASK;
/// Write-locked; `COUNT_MASK` bits are the writer's TID.
const WRITE_LOCKED: u32 = 1 << 27;
/// A writer died holding the lock; no writer has marked the data consistent since.
const OWNER_DIED: u32 = 1 << 28;
/// Readers may sleep on `state`.
const READERS_WAITING: u32 = 1 << 30;
/// Writers may sleep on `writer_notify`; new readers wait.
const WRITERS_WAITING: u32 = 1 << 31;
const WAITING: u32 = READERS_WAITING | WRITERS_WAITING;
const KNOWN_BITS: u32 = COUNT_MASK | WRITE_LOCKED | OWNER_DIED | WAITING;

/// How many read locks can be registered for recovery at once (the slot table's length).
/// 14 slots and the two state words fill one 64-byte cache line. Under loom, 2, so that
/// models reach a full table with few threads.
pub const READER_SLOTS: usize = if cfg!(loom) { 2 } else { 14 };
/// A reader slot that holds no read lock.
const FREE: u32 = 0;

/// The slot where a reader with TID `tid` looks first (then the following ones, wrapping).
#[inline]
const fn first_slot(tid: u32) -> usize {
    tid as usize % READER_SLOTS
}

#[inline]
const fn is_write_locked(s: u32) -> bool {
    s & WRITE_LOCKED != 0
}

#[inline]
const fn writer_of(s: u32) -> u32 {
    s & COUNT_MASK
}

/// Neither read- nor write-locked (waiting bits and `OWNER_DIED` may be set).
#[inline]
const fn is_unlocked(s: u32) -> bool {
    s & (COUNT_MASK | WRITE_LOCKED) == 0
}

/// Unknown bits, or a write lock naming no possible thread.
#[inline]
const fn is_garbage(s: u32) -> bool {
    s & !KNOWN_BITS != 0 || (is_write_locked(s) && (writer_of(s) == 0 || writer_of(s) > MAX_TID))
}

/// A reader may join: no writer holds or waits, and the count has room. (A stale
/// `READERS_WAITING` does not block readers: readers only wait for writers.)
#[inline]
const fn is_read_lockable(s: u32) -> bool {
    !is_garbage(s)
        && !is_write_locked(s)
        && s & WRITERS_WAITING == 0
        && s & COUNT_MASK < MAX_READERS
}

#[inline]
fn acquired(s: u32) -> Acquired {
    if s & OWNER_DIED != 0 {
        Acquired::OwnerDied
    } else {
        Acquired::Consistent
    }
}

/// A robust readers-writer lock without data. See the [module docs](self).
///
/// Prefer [`RwLock`], whose guards prove ownership. All-zero bytes are an unlocked lock
/// and any bytes are a valid one (garbage reads as a dead writer).
///
/// # Examples
///
/// ```
/// use shmstate::{Acquired, RawRwLock};
///
/// let l = RawRwLock::new();
/// assert_eq!(l.read(), Acquired::Consistent);
/// assert_eq!(l.read(), Acquired::Consistent);
/// assert!(l.try_write().is_none());
/// // SAFETY: this thread holds two read locks.
/// unsafe { l.read_unlock(); l.read_unlock() };
/// assert_eq!(l.write(), Acquired::Consistent);
/// // SAFETY: this thread holds the write lock.
/// unsafe { l.write_unlock() };
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct RawRwLock {
    /// The state word:
    ///
    /// | bits   | meaning                                                               |
    /// |--------|-----------------------------------------------------------------------|
    /// | 0..24  | reader count; or, if `WRITE_LOCKED`, the writer's TID (≤ 2^22)         |
    /// | 24..27 | unused: must be 0 (else garbage)                                      |
    /// | 27     | `WRITE_LOCKED`                                                        |
    /// | 28     | `OWNER_DIED`: a writer died; not marked consistent since              |
    /// | 29     | unused: must be 0                                                     |
    /// | 30     | `READERS_WAITING`: readers may sleep on this word                     |
    /// | 31     | `WRITERS_WAITING`: writers may sleep on `writer_notify`; readers wait |
    state: AtomicU32,
    /// Bumped (wrapping) to wake a writer; writers futex-wait on it.
    writer_notify: AtomicU32,
    /// The reader slots, one per registered read lock:
    ///
    /// | value            | meaning                                                        |
    /// |------------------|----------------------------------------------------------------|
    /// | `FREE` (0)       | free                                                           |
    /// | 1..=2^22         | the TID of a thread holding one read lock counted in `state`  |
    /// | above 2^22       | garbage (names no thread): cleared without counting anything out |
    ///
    /// Invariant (without hostile bytes): the reader count in `state` is at least the number
    /// of non-free slots, because a reader counts itself in before it claims a slot and
    /// frees its slot before it counts itself out. See the [module docs](self#owner-death).
    readers: [AtomicU32; READER_SLOTS],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawRwLock, [u32; 16]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(RawRwLock, u32);

impl Default for RawRwLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawRwLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        RawRwLock {
            state: AtomicU32::new(0),
            writer_notify: AtomicU32::new(0),
            readers: core::array::from_fn(|_| AtomicU32::new(FREE)),
        }
    }

    // ----- readers -----

    /// Blocks until the calling thread holds a read lock. Recovers from a dead writer, and
    /// from dead registered readers while a (possibly dead) waiting writer holds it back.
    /// Release it with [`read_unlock`](Self::read_unlock) on the same thread.
    #[inline]
    pub fn read(&self) -> Acquired {
        let a = match self.try_read_fast() {
            Some(a) => a,
            None => loop {
                if let Some(a) = self.read_contended(None) {
                    break a;
                }
            },
        };
        self.register(owner::current());
        a
    }

    /// Takes a read lock if no writer holds or waits, without waiting. Does not probe a
    /// holding writer (see [`RawMutex::try_lock`](super::RawMutex::try_lock)).
    pub fn try_read(&self) -> Option<Acquired> {
        let a = self.try_read_locked()?;
        self.register(owner::current());
        Some(a)
    }

    /// [`try_read`](Self::try_read) without registering the read lock in a slot.
    fn try_read_locked(&self) -> Option<Acquired> {
        if let Some(a) = self.try_read_fast() {
            return Some(a);
        }
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_LIMIT {
            if is_garbage(s) {
                self.recover(s);
            } else if is_read_lockable(s) {
                // Acquire pairs with the Release in `write_unlock`.
                match self.state.compare_exchange_weak(
                    s,
                    s + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(acquired(s)),
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            } else {
                return None;
            }
            s = self.state.load(Ordering::Relaxed);
        }
        None
    }

    /// [`read`](Self::read) giving up at `deadline`; `None` means it passed.
    pub fn read_until(&self, deadline: Instant) -> Option<Acquired> {
        let a = match self.try_read_fast() {
            Some(a) => a,
            None => self.read_contended(Some(deadline))?,
        };
        self.register(owner::current());
        Some(a)
    }

    /// Registers a read lock that `me` has just counted into `state`: claims a free slot,
    /// trying `first_slot(me)` first. If every slot is taken, the lock stays unregistered:
    /// still held, but not recoverable if `me` dies holding it.
    #[inline]
    fn register(&self, me: u32) {
        let i = first_slot(me);
        // Release pairs with the Acquire compare-exchange in `recover_readers`: a
        // recoverer that finds our TID also finds our count increment, so its decrement
        // comes after it.
        if self.readers[i]
            .compare_exchange(FREE, me, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.register_slow(me, i);
        }
    }

    #[cold]
    fn register_slow(&self, me: u32, first: usize) {
        for k in 1..READER_SLOTS {
            let slot = &self.readers[(first + k) % READER_SLOTS];
            // Relaxed: a hint; the compare-exchange claims. Release: as in `register`.
            if slot.load(Ordering::Relaxed) == FREE
                && slot
                    .compare_exchange(FREE, me, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
    }

    /// Frees one slot holding `me`, if any (any one: each stands for one of `me`'s read
    /// locks, and `me` is releasing one of them). None if this lock was unregistered.
    #[inline]
    fn unregister(&self, me: u32) {
        let slot = &self.readers[first_slot(me)];
        // Relaxed: only `me` writes `me` into a slot and frees it again (a recoverer frees
        // it only once `me` is dead); the Release decrement in `read_unlock`, after this,
        // orders the store for the next writer.
        if slot.load(Ordering::Relaxed) == me {
            slot.store(FREE, Ordering::Relaxed);
        } else {
            self.unregister_slow(me);
        }
    }

    #[cold]
    fn unregister_slow(&self, me: u32) {
        let first = first_slot(me);
        for k in 1..READER_SLOTS {
            let slot = &self.readers[(first + k) % READER_SLOTS];
            // Relaxed: as in `unregister`.
            if slot.load(Ordering::Relaxed) == me {
                slot.store(FREE, Ordering::Relaxed);
                return;
            }
        }
    }

    #[inline]
    fn try_read_fast(&self) -> Option<Acquired> {
        // Relaxed: the compare-exchange orders.
        let s = self.state.load(Ordering::Relaxed);
        // Acquire pairs with the Release in `write_unlock`: the last writer's writes
        // happen before our reads.
        (is_read_lockable(s)
            && self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then(|| acquired(s))
    }

    #[cold]
    fn read_contended(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let mut s = self.spin_read();
        // Under loom a wait never times out: probe once before the first sleep, as writers do.
        let mut probe_due = cfg!(loom);
        let mut slices = Slices::new();
        loop {
            if is_garbage(s) {
                self.recover(s);
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if is_read_lockable(s) {
                // Acquire: as in `try_read_fast`.
                match self.state.compare_exchange_weak(
                    s,
                    s + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(acquired(s)),
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            // Probe only after a slice ran out without a wake (see `RawMutex`).
            if probe_due {
                probe_due = false;
                if is_write_locked(s) {
                    if is_dead(writer_of(s)) {
                        self.recover(s);
                        s = self.state.load(Ordering::Relaxed);
                        continue;
                    }
                } else if s & WRITERS_WAITING != 0 && self.recover_readers() {
                    // Read-locked, and a writer's flag holds us back: that writer may have
                    // died too (killed with the reader's process), leaving no one to
                    // recover the dead readers the flag makes us wait for.
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
            }
            if s & READERS_WAITING == 0 {
                // Relaxed: the flag tells unlockers to wake; the futex wait re-checks.
                if let Err(now) = self.state.compare_exchange(
                    s,
                    s | READERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    s = now;
                    continue;
                }
                s |= READERS_WAITING;
            }
            let slice = slices.next(deadline)?;
            if !futex::wait(&self.state, s, slice) {
                if deadline_passed(deadline) {
                    return None;
                }
                probe_due = true;
            }
            s = self.spin_read();
        }
    }

    /// Releases a read lock.
    ///
    /// # Safety
    ///
    /// The calling thread holds a read lock that it took itself on this lock and has not
    /// released (not one another thread took, nor one its process's parent held at fork:
    /// the lock's reader slot names the thread that took it, and unlocking from another
    /// thread would leave that slot naming a lock already counted out, which a recoverer
    /// would count out again once that thread exits), and does not read the protected data
    /// after this call until it locks again.
    #[inline]
    pub unsafe fn read_unlock(&self) {
        // The slot first, then the count: a reader that dies in between leaves its lock
        // counted but unregistered (a leak), never a registered lock already counted out.
        self.unregister(owner::current());
        // Release pairs with the Acquire of the next writer (or of `recover`'s readers),
        // so our reads happen before its writes.
        let s = self.state.fetch_sub(1, Ordering::Release).wrapping_sub(1);
        // The last reader out wakes the waiters (a writer waits behind readers).
        if !is_garbage(s) && is_unlocked(s) && s & WAITING != 0 {
            self.wake_waiters(s);
        }
    }

    // ----- writers -----

    /// Blocks until the calling thread holds the write lock. Recovers from a dead writer and
    /// from dead registered readers; waits without bound for a dead reader that was not
    /// registered (see the [module docs](self#owner-death)).
    #[inline]
    pub fn write(&self) -> Acquired {
        let me = owner::current();
        // Acquire pairs with the Release in `write_unlock` / `read_unlock`.
        if self
            .state
            .compare_exchange(0, WRITE_LOCKED | me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Acquired::Consistent;
        }
        loop {
            if let Some(a) = self.write_contended(me, None) {
                return a;
            }
        }
    }

    /// Takes the write lock if the lock is free, without waiting (and without probing).
    pub fn try_write(&self) -> Option<Acquired> {
        let me = owner::current();
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_LIMIT {
            if is_garbage(s) {
                self.recover(s);
            } else if is_unlocked(s) {
                // Acquire: as in `write`.
                match self.state.compare_exchange(
                    s,
                    s | WRITE_LOCKED | me,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(acquired(s)),
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            } else {
                return None;
            }
            s = self.state.load(Ordering::Relaxed);
        }
        None
    }

    /// [`write`](Self::write) giving up at `deadline`; `None` means it passed.
    pub fn write_until(&self, deadline: Instant) -> Option<Acquired> {
        let me = owner::current();
        // Acquire: as in `write`.
        if self
            .state
            .compare_exchange(0, WRITE_LOCKED | me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(Acquired::Consistent);
        }
        self.write_contended(me, Some(deadline))
    }

    #[cold]
    fn write_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let mut s = self.spin_write();
        // Once we have waited, other writers may wait too: keep WRITERS_WAITING set when we
        // take the lock, so our unlock wakes them.
        let mut other_writers_waiting = 0;
        // Under loom a wait never times out, so probe once before the first sleep: it
        // stands for the first slice running out (loom models mark dead TIDs, see `owner`).
        let mut probe_due = cfg!(loom);
        let mut slices = Slices::new();
        loop {
            if is_garbage(s) {
                self.recover(s);
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if is_unlocked(s) {
                // Acquire: as in `write`.
                match self.state.compare_exchange_weak(
                    s,
                    s | WRITE_LOCKED | me | other_writers_waiting,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(acquired(s)),
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            if s & WRITERS_WAITING == 0 {
                // Relaxed: the flag tells unlockers to wake; `writer_notify` orders below.
                if let Err(now) = self.state.compare_exchange(
                    s,
                    s | WRITERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    s = now;
                    continue;
                }
            }
            other_writers_waiting = WRITERS_WAITING;
            // Acquire pairs with the Release increment in `wake_writer`: if we see the new
            // value, we also see the state it published.
            let seq = self.writer_notify.load(Ordering::Acquire);
            // Re-check after reading `seq`: an unlock between our flag and `seq` would
            // otherwise be missed.
            s = self.state.load(Ordering::Relaxed);
            if is_garbage(s) || is_unlocked(s) || s & WRITERS_WAITING == 0 {
                continue;
            }
            // Probe only after a slice ran out without a wake (see `RawMutex`).
            if probe_due {
                probe_due = false;
                if is_write_locked(s) {
                    if is_dead(writer_of(s)) {
                        self.recover(s);
                        s = self.state.load(Ordering::Relaxed);
                        continue;
                    }
                } else if self.recover_readers() {
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
            }
            let Some(slice) = slices.next(deadline) else {
                self.give_up_write();
                return None;
            };
            if !futex::wait(&self.writer_notify, seq, slice) {
                if deadline_passed(deadline) {
                    self.give_up_write();
                    return None;
                }
                probe_due = true;
            }
            s = self.spin_write();
        }
    }

    /// A writer gives up waiting. `WRITERS_WAITING` may be set only for it, and a stale
    /// bit would block new readers for as long as the current ones hold (forever, if one of
    /// them is the thread that asks next). So it clears the bit and wakes every waiting
    /// writer, which re-registers, and, if no writer holds the lock, the readers that the
    /// bit held back.
    #[cold]
    fn give_up_write(&self) {
        // Relaxed: no data is published; the waits re-check the words.
        let prev = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && s & WRITERS_WAITING != 0).then_some(s & !WRITERS_WAITING)
            });
        if let Ok(prev) = prev {
            // Release: as in `wake_writer`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.writer_notify);
            if !is_write_locked(prev) && prev & READERS_WAITING != 0 {
                futex::wake_all(&self.state);
            }
        }
    }

    /// Releases the write lock (keeping `OWNER_DIED`) and wakes the waiters.
    /// If the state does not name the calling thread as writer, nothing happens.
    ///
    /// # Safety
    ///
    /// The calling thread holds the write lock and does not use the protected data after
    /// this call until it locks again.
    #[inline]
    pub unsafe fn write_unlock(&self) {
        let me = owner::current();
        // Release pairs with the Acquire of the next reader or writer.
        if self
            .state
            .compare_exchange(WRITE_LOCKED | me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.write_unlock_slow(me);
        }
    }

    #[cold]
    fn write_unlock_slow(&self, me: u32) {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if is_garbage(s) || !is_write_locked(s) || writer_of(s) != me {
                return;
            }
            // Release: as in `write_unlock`. Clearing the waiting bits in the same step
            // means no one can lock in between and inherit them unwoken.
            match self.state.compare_exchange(
                s,
                s & OWNER_DIED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.wake_flagged(s),
                Err(now) => s = now,
            }
        }
    }

    /// Clears `OWNER_DIED` if the calling thread holds the write lock. Returns whether it
    /// does.
    pub fn mark_consistent(&self) -> bool {
        let me = owner::current();
        // Relaxed: ordered before our Release unlock of the same word.
        self.state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me)
                    .then_some(s & !OWNER_DIED)
            })
            .is_ok()
    }

    /// Whether any read or write lock is held now (a snapshot).
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        !is_unlocked(self.state.load(Ordering::Relaxed))
    }

    /// The raw state word, for tests and diagnostics.
    #[doc(hidden)]
    pub fn state(&self) -> &AtomicU32 {
        &self.state
    }

    // ----- shared -----

    /// Called with an unlocked state `s`: clears the waiting bits (keeping `OWNER_DIED`)
    /// and wakes whoever they name. If someone locks first, their unlock inherits the bits
    /// and does this instead.
    fn wake_waiters(&self, mut s: u32) {
        loop {
            if is_garbage(s) || !is_unlocked(s) || s & WAITING == 0 {
                return;
            }
            // Relaxed: no data is published (the unlock before us released); the woken
            // re-check the state with their own compare-exchanges.
            match self.state.compare_exchange(
                s,
                s & OWNER_DIED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.wake_flagged(s),
                Err(now) => s = now,
            }
        }
    }

    /// Wakes one writer if `s` had `WRITERS_WAITING` and every reader if it had
    /// `READERS_WAITING`. The bits have just been cleared, so every waiter re-registers.
    ///
    /// Why not only the writer when both wait, as std does: std learns from the wake count
    /// whether a writer was there to wake and falls back to the readers; a writer that
    /// took the lock with `WRITERS_WAITING` set conservatively, or gave up, would otherwise
    /// leave readers asleep (loom finds this). The woken readers and writer race; a writer
    /// that loses sets `WRITERS_WAITING` again, which stops further readers, so writers
    /// still do not starve.
    fn wake_flagged(&self, s: u32) {
        if s & WRITERS_WAITING != 0 {
            self.wake_writer();
        }
        if s & READERS_WAITING != 0 {
            futex::wake_all(&self.state);
        }
    }

    fn wake_writer(&self) {
        // Release pairs with the Acquire load of `writer_notify` in `write_contended`.
        self.writer_notify.fetch_add(1, Ordering::Release);
        futex::wake_one(&self.writer_notify);
    }

    /// The state `s` is garbage or write-locked by a dead thread: release it on the dead
    /// writer's behalf, mark `OWNER_DIED`, clear the waiting bits and wake every waiter,
    /// who all re-register. A no-op if the state changed since `s` was read.
    #[cold]
    fn recover(&self, s: u32) {
        // Relaxed: nothing to publish (the dead writer's stores are visible anyway, see
        // the raw_mutex docs); the next acquirer's Acquire compare-exchange reads this.
        if self
            .state
            .compare_exchange(s, OWNER_DIED, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // Release: as in `wake_writer`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.writer_notify);
            futex::wake_all(&self.state);
        }
    }

    /// A waiter's slice ran out while readers hold the lock (a writer, or a reader behind
    /// `WRITERS_WAITING`): counts out the read locks of registered readers that are dead,
    /// each as its own `read_unlock` would, and frees garbage slots. Returns whether it
    /// counted any out.
    ///
    /// Only if the count is at least the number of slots naming a thread, dead or alive
    /// (read before them): without hostile bytes that holds, since no reader can count
    /// itself in while `WRITERS_WAITING` is set (if a writer gives up and clears it, a
    /// reader counting in meanwhile can fail the check, and the next slice retries). A
    /// failed check means slots name locks the count does not hold (hostile bytes):
    /// counting them out could let a writer in beside a live reader, so nothing is done.
    #[cold]
    fn recover_readers(&self) -> bool {
        // Acquire pairs with the Release decrements in `read_unlock` and
        // `count_out_dead_reader`: a slot freed before a decrement we see reads free below,
        // so `named` never counts a lock this count has already lost. (Each decrement below
        // is its own read-modify-write; this is only the bound.)
        let count = self.state.load(Ordering::Acquire);
        if is_garbage(count) || is_write_locked(count) {
            return false;
        }
        let count = count & COUNT_MASK;
        let mut named = 0u32;
        let mut dead = [FREE; READER_SLOTS];
        for (slot, d) in self.readers.iter().zip(&mut dead) {
            // Relaxed: a snapshot; the compare-exchange below claims the slot.
            let tid = slot.load(Ordering::Relaxed);
            if tid == FREE {
                continue;
            }
            if tid > MAX_TID {
                // Names no thread, so no valid lock: free the slot, count nothing out.
                // Relaxed: no data; only frees the slot for later readers.
                let _ = slot.compare_exchange(tid, FREE, Ordering::Relaxed, Ordering::Relaxed);
                continue;
            }
            named += 1;
            if is_dead(tid) {
                *d = tid;
            }
        }
        if named > count {
            return false;
        }
        let mut any = false;
        for (slot, &tid) in self.readers.iter().zip(&dead) {
            if tid == FREE {
                continue;
            }
            // Acquire pairs with the Release claim in `register`: the dead reader's count
            // increment is ordered before our decrement. Only one recoverer wins the slot,
            // so each dead lock is counted out once.
            if slot
                .compare_exchange(tid, FREE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                any |= self.count_out_dead_reader();
            }
        }
        any
    }

    /// Counts one dead reader's lock out of `state` and wakes as its `read_unlock` would.
    /// Refuses (returns false) a state that holds no read lock: only hostile bytes make one.
    fn count_out_dead_reader(&self) -> bool {
        // Release: as in `read_unlock`, for the next writer's Acquire (the dead reader's own
        // reads are ordered by its death, see the raw_mutex docs).
        let r = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
                (!is_garbage(s) && !is_write_locked(s) && s & COUNT_MASK != 0).then(|| s - 1)
            });
        match r {
            Ok(prev) => {
                let s = prev - 1;
                if is_unlocked(s) && s & WAITING != 0 {
                    self.wake_waiters(s);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The reader slots, for tests and diagnostics (e.g. writing hostile bytes).
    #[doc(hidden)]
    pub fn reader_slots(&self) -> &[AtomicU32] {
        &self.readers
    }

    fn spin_until(&self, stop: impl Fn(u32) -> bool) -> u32 {
        let mut spins = SPIN_LIMIT;
        loop {
            // Relaxed: a hint; acquisitions compare-exchange.
            let s = self.state.load(Ordering::Relaxed);
            if stop(s) || spins == 0 {
                return s;
            }
            spins -= 1;
            spin_loop();
        }
    }

    fn spin_read(&self) -> u32 {
        // Stop when readable, or when others sleep (spinning would not be fair to them).
        self.spin_until(|s| !is_write_locked(s) || s & WAITING != 0 || is_garbage(s))
    }

    fn spin_write(&self) -> u32 {
        self.spin_until(|s| is_unlocked(s) || s & WAITING != 0 || is_garbage(s))
    }
}

/// A readers-writer lock protecting a `T`, shared by threads and processes, robust against
/// a writer's death.
///
/// Many readers or one writer; a waiting writer blocks new readers. If a writer dies
/// holding the write lock, the next acquirer gets [`OwnerDied`]; readers keep getting it
/// (they can still read) until a writer repairs the data and calls
/// [`RwLockWriteGuard::mark_consistent`]. A reader dying holding a read lock is recovered
/// too (its lock is counted out; the data is intact), if it was one of the first
/// [`READER_SLOTS`] readers holding the lock at once. See the [module docs](self#owner-death).
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
unsafe impl<T: Pod + Send + Sync> SharedSized for RwLock<T> {
    const TAG: TypeTag = TypeTag::new(Kind::RWLOCK, Elem::pod::<T>());
}

type ReadResult<'a, T> = LockResult<RwLockReadGuard<'a, T>>;
type WriteResult<'a, T> = LockResult<RwLockWriteGuard<'a, T>>;

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
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the read guard: the lock is acquired) if a writer died
    /// holding the lock and no writer has marked the data consistent since.
    #[inline]
    pub fn read(&self) -> ReadResult<'_, T> {
        self.read_guard(self.raw.read())
    }

    /// Takes a read lock if no writer holds or waits, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if a writer holds or waits; `OwnerDied` as for
    /// [`read`](Self::read).
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError<RwLockReadGuard<'_, T>>> {
        match self.raw.try_read() {
            Some(a) => Ok(self.read_guard(a)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// [`read`](Self::read), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`read`](Self::read).
    pub fn read_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockReadGuard<'_, T>, TimedLockError<RwLockReadGuard<'_, T>>> {
        let a = match Instant::now().checked_add(timeout) {
            Some(d) => self.raw.read_until(d),
            None => Some(self.raw.read()),
        };
        match a {
            Some(a) => Ok(self.read_guard(a)?),
            None => Err(TimedLockError::Timeout),
        }
    }

    /// [`read`](Self::read), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`read_timeout`](Self::read_timeout).
    pub fn read_until(
        &self,
        deadline: Instant,
    ) -> Result<RwLockReadGuard<'_, T>, TimedLockError<RwLockReadGuard<'_, T>>> {
        match self.raw.read_until(deadline) {
            Some(a) => Ok(self.read_guard(a)?),
            None => Err(TimedLockError::Timeout),
        }
    }

    /// Blocks until the calling thread holds the write lock. Recovers dead writers and dead
    /// registered readers; if more than [`READER_SLOTS`] readers at once may die holding
    /// read locks, use [`write_timeout`](Self::write_timeout).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the write guard) if a writer died holding the lock and no
    /// writer has marked the data consistent since.
    #[inline]
    pub fn write(&self) -> WriteResult<'_, T> {
        self.write_guard(self.raw.write())
    }

    /// Takes the write lock if the lock is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if held; `OwnerDied` as for [`write`](Self::write).
    pub fn try_write(
        &self,
    ) -> Result<RwLockWriteGuard<'_, T>, TryLockError<RwLockWriteGuard<'_, T>>> {
        match self.raw.try_write() {
            Some(a) => Ok(self.write_guard(a)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// [`write`](Self::write), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`write`](Self::write).
    pub fn write_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RwLockWriteGuard<'_, T>, TimedLockError<RwLockWriteGuard<'_, T>>> {
        let a = match Instant::now().checked_add(timeout) {
            Some(d) => self.raw.write_until(d),
            None => Some(self.raw.write()),
        };
        match a {
            Some(a) => Ok(self.write_guard(a)?),
            None => Err(TimedLockError::Timeout),
        }
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
    pub fn write_until(
        &self,
        deadline: Instant,
    ) -> Result<RwLockWriteGuard<'_, T>, TimedLockError<RwLockWriteGuard<'_, T>>> {
        match self.raw.write_until(deadline) {
            Some(a) => Ok(self.write_guard(a)?),
            None => Err(TimedLockError::Timeout),
        }
    }

    /// Whether any lock is held now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The raw lock, for diagnostics.
    pub fn raw(&self) -> &RawRwLock {
        &self.raw
    }

    fn read_guard(&self, a: Acquired) -> ReadResult<'_, T> {
        let g = RwLockReadGuard {
            lock: self,
            reader: owner::current(),
            _not_send: PhantomData,
        };
        match a {
            Acquired::Consistent => Ok(g),
            Acquired::OwnerDied => Err(OwnerDied::new(g)),
        }
    }

    fn write_guard(&self, a: Acquired) -> WriteResult<'_, T> {
        let g = RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        };
        match a {
            Acquired::Consistent => Ok(g),
            Acquired::OwnerDied => Err(OwnerDied::new(g)),
        }
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
/// # Examples
///
/// ```
/// let l = shmstate::RwLock::new(5u32);
/// let r = l.read().unwrap();
/// assert_eq!(*r, 5);
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct RwLockReadGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    /// The TID of the thread that took the read lock (a cached thread-local read). The
    /// reader count names no one, so this is how a copy of the guard in a forked child
    /// knows it holds nothing: dropping it there must not count the parent's lock out.
    reader: u32,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&RwLockReadGuard` gives `&T` only.
unsafe impl<T: Pod + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: Pod> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer has `&mut T` until the guard drops, and
        // the reference lives no longer than `self`.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: Pod> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if owner::current() != self.reader {
            // A copy in a forked child: the read lock is the parent's (see `reader`).
            return;
        }
        // SAFETY: the guard holds one read lock (taken by this thread: not Send, and not a
        // forked copy, checked above), released once, and the data is not read after.
        unsafe { self.lock.raw.read_unlock() };
    }
}

/// The write lock on a [`RwLock`]: gives `&mut T`, unlocks on drop. Not `Send` (the state
/// names the writing thread).
///
/// # Examples
///
/// ```
/// let l = shmstate::RwLock::new(5u32);
/// *l.write().unwrap() += 1;
/// assert_eq!(*l.read().unwrap(), 6);
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct RwLockWriteGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&RwLockWriteGuard` gives `&T` only.
unsafe impl<T: Pod + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: Pod> RwLockWriteGuard<'_, T> {
    /// Marks the data consistent after an [`OwnerDied`]: later readers and writers get
    /// plain guards. Without it, `OwnerDied` persists for every later acquirer.
    pub fn mark_consistent(&mut self) {
        // The guard proves this thread holds the write lock, so this always applies.
        let _ = self.lock.raw.mark_consistent();
    }
}

impl<T: Pod> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the write lock excludes every other access until the guard drops.
        self.lock.data.with(|p| unsafe { &*p })
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        self.lock.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: Pod> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this thread holds the write lock (the guard is not Send) and the data is
        // not used after.
        unsafe { self.lock.raw.write_unlock() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
