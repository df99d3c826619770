//! [`RwLock<T>`] and [`RawRwLock`]: a robust, writer-preferring readers-writer lock.
//!
//! # The algorithm
//!
//! A lock is one 64-byte line of sixteen 32-bit words: the state word, a writer
//! notification counter, and [`READER_SLOTS`] (14) *reader slots*. A reader holds the lock
//! through a slot: it writes its thread id (TID) into a free slot, so every registered read
//! lock names the thread that holds it, and a reader that dies holding one leaves a dead
//! TID that a writer can probe and free. The state word counts no registered reader; it
//! holds the writer's TID while write-locked, the waiting bits, and a count only of the
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
//!   runs out probes the writer's TID; if it is dead, the waiter releases the lock on the
//!   dead writer's behalf, sets `OWNER_DIED` and wakes everyone. The next acquirer, reader
//!   or writer, gets [`OwnerDied`]. The mark persists (readers keep getting `OwnerDied`)
//!   until a *writer* calls [`RwLockWriteGuard::mark_consistent`]. A writer that died while
//!   still `DRAINING` had not touched the data: its lock is released without the mark.
//! - **A reader dies holding a read lock**: its slot names a dead TID. A draining writer
//!   whose wait slice runs out probes the TIDs in the slots and frees each dead one (a
//!   compare-exchange `tid -> 0`, so only one recoverer wins it); the writer then gets the
//!   lock with [`Acquired::Consistent`] once the live readers have left: readers do not
//!   write, so a dead reader leaves the data as the last writer did.
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves behind (a SIGSTOP leaves the same, held until the
//! process continues; only timed calls bound a wait for a stopped holder). The steps of
//! taking and releasing a lock have failpoint tests (`tests/failpoints.rs`: the process is
//! stopped at the step, killed, and the repair checked), and
//! `tests/locks_owner_death.rs` kills readers at random instructions of lock and unlock:
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | read: before the slot claim | nothing | — |
//! | read: slot claimed, state not yet checked (or checked and backing off) | a slot naming a dead TID | a draining writer frees it once a slice has passed (≤ 1 ms after the death, however often the writer is woken) |
//! | read: holding the read lock | the same | the same |
//! | read unlock: before the slot is freed | the same | the same |
//! | read unlock: slot freed, draining writer not yet woken | a writer asleep with every slot free | its wait slice runs out and it re-checks the slots (one slice) |
//! | read, waiting: `READERS_WAITING` set | a stale bit | the next write unlock takes its slow path and wakes no one (one needless wake) |
//! | write: `WRITE_LOCKED` set, `DRAINING` not yet set | the state names a dead writer | a waiter probes it once a slice has passed, releases it with `OWNER_DIED` (a false alarm: the data was not touched) |
//! | write: `DRAINING` (waiting for readers) | the state names a dead, draining writer | a waiter probes it once a slice has passed and releases it without `OWNER_DIED` |
//! | write: holding the write lock (`DRAINING` cleared) | the state names a dead writer | a waiter probes it once a slice has passed; the next acquirer gets `OwnerDied` |
//! | write, waiting for a writer or overflow readers: `WRITERS_WAITING` set | a stray bit | registered readers ignore it; overflow readers clear it after waiting [`STRAY_BIT_AGE`] (100 ms) behind it; writers take one needless wake |
//! | write unlock: state cleared, waiters not yet woken | sleepers with the lock free | each sleeper's slice runs out and it re-checks (one slice) |
//! | overflow read (every slot taken): counted in | a count naming no one | **not repaired**: the lock leaks; only timed calls bound the wait |
//! | overflow read unlock: counted out, waiters not yet woken | sleepers with the lock free | one slice |
//! | recovery of a dead writer (`recover`) or of a stray `WRITERS_WAITING`: bits cleared, waiters not yet woken | sleepers with the lock free | one slice |
//! | recovery of a dead reader: slot freed, drainer not yet woken | a draining writer asleep | one slice |
//!
//! Limits of the reader recovery:
//!
//! - **More than [`READER_SLOTS`] read locks at once** (threads of any process, nested read
//!   locks counting one each): the readers that find every slot taken hold the lock
//!   *unregistered* (counted in the state), and their deaths are not recovered (use
//!   [`RwLock::write_timeout`] where that can happen). Slots are claimed per lock, so a
//!   reader freeing one lets the next reader register.
//! - **TID reuse and PID namespaces**, as for a writer: a dead reader whose TID the kernel
//!   has handed to a new thread reads as alive (its lock leaks until that thread exits).
//! - **Hostile bytes** in slots: any value is safe (no panic, no UB, bounded loops). A value
//!   above 2^22 names no thread and is freed; a dead TID is freed; a live TID holds writers
//!   out as a live reader would (timed calls return). A peer that writes arbitrary bytes
//!   into a lock can always break its exclusion, e.g. by freeing a live reader's slot.
//! - **Recursion**: a thread holding a read lock that calls `read` again while a writer
//!   drains deadlocks, as with `std::sync::RwLock` (the writer waits for the first lock,
//!   the second read waits for the writer): use the timed variants where that can happen.
//! - **Cost**: a read lock is one compare-exchange (the slot) and one load (the state); a
//!   read unlock one swap and one load. No syscall. The slots share the state's cache line
//!   on purpose: a reader and a writer must each read the other's word anyway.
//!
//! Limits: as for [`RawMutex`](super::raw_mutex#limits). On fork with a guard held: a
//! write guard's copy in the child does nothing when dropped (the state names the parent's
//! thread), and neither does a read guard's (it remembers the thread that took it).
//! [`RawRwLock::read_unlock`] in a forked child would find no slot of its own and count an
//! overflow reader out: its callers must not do that.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
use super::raw_mutex::{Acquired, MAX_TID, TID_MASK};
use crate::failpoint::{self, Point};
use crate::futex;
use crate::owner;
#[cfg(loom)]
#[doc(hidden)]
pub use crate::owner::DEAD_UNDER_LOOM;
use crate::shared::{Element, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, UnsafeCell, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices, TRY_LIMIT, Tid, Watch, holder_is_dead, past};

/// Overflow reader count, or the writer's TID when `WRITE_LOCKED`.
const COUNT_MASK: u32 = TID_MASK;
/// Most overflow readers at once; one more waits.
const MAX_READERS: u32 = COUNT_MASK;
/// Write-locked; `COUNT_MASK` bits are the writer's TID.
const WRITE_LOCKED: u32 = 1 << 27;
/// A writer died holding the lock; no writer has marked the data consistent since.
const OWNER_DIED: u32 = 1 << 28;
/// With `WRITE_LOCKED`: the writer waits for registered readers to leave (it may sleep on
/// `writer_notify`) and has not touched the data.
const DRAINING: u32 = 1 << 29;
/// Readers may sleep on `state`.
const READERS_WAITING: u32 = 1 << 30;
/// Writers may sleep on `writer_notify` for another writer or for overflow readers; new
/// overflow readers wait.
const WRITERS_WAITING: u32 = 1 << 31;
const WAITING: u32 = READERS_WAITING | WRITERS_WAITING;
const KNOWN_BITS: u32 = COUNT_MASK | WRITE_LOCKED | OWNER_DIED | DRAINING | WAITING;

/// How many read locks can be registered for recovery at once (the slot table's length).
/// 14 slots and the two state words fill one 64-byte cache line. Under loom, 2, so that
/// models reach a full table with few threads.
pub const READER_SLOTS: usize = if cfg!(loom) { 2 } else { 14 };
/// A reader slot that holds no read lock.
const FREE: u32 = 0;

/// How long an overflow reader waits behind `WRITERS_WAITING` before it clears the bit as
/// possibly stray (no live writer behind it): long against a slice, so that a live writer
/// waiting for overflow readers is rarely overtaken, short against a hang.
pub const STRAY_BIT_AGE: Duration = Duration::from_millis(100);

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

/// No writer and no overflow reader (waiting bits and `OWNER_DIED` may be set; registered
/// readers are in the slots, not here).
#[inline]
const fn is_unlocked(s: u32) -> bool {
    s & (COUNT_MASK | WRITE_LOCKED) == 0
}

/// Unknown bits, a write lock naming no possible thread, or `DRAINING` without a writer.
#[inline]
const fn is_garbage(s: u32) -> bool {
    s & !KNOWN_BITS != 0
        || (is_write_locked(s) && (writer_of(s) == 0 || writer_of(s) > MAX_TID))
        || (s & DRAINING != 0 && !is_write_locked(s))
}

/// A registered reader that has claimed its slot may keep it: no writer holds the lock.
#[inline]
const fn admits_registered_reader(s: u32) -> bool {
    !is_garbage(s) && !is_write_locked(s)
}

/// An overflow reader may count itself in: no writer holds or waits, and the count has
/// room.
#[inline]
const fn admits_overflow_reader(s: u32) -> bool {
    admits_registered_reader(s) && s & WRITERS_WAITING == 0 && s & COUNT_MASK < MAX_READERS
}

#[inline]
fn acquired(s: u32) -> Acquired {
    if s & OWNER_DIED != 0 {
        Acquired::OwnerDied
    } else {
        Acquired::Consistent
    }
}

/// Orders a `SeqCst` read-modify-write or store before a `SeqCst` load of another word,
/// for loom. The real code needs nothing here: the four operations of each reader/writer
/// pairing are all `SeqCst`, and their single total order gives the store-load ordering
/// (no reader and writer both miss each other). Loom models `SeqCst` accesses as
/// acquire/release only, so under loom a `SeqCst` fence, which loom models fully, stands in
/// for that total order.
#[inline(always)]
fn store_load_fence() {
    #[cfg(loom)]
    crate::sync::fence(Ordering::SeqCst);
}

/// Why [`RawRwLock::read_registered`] did not get a read lock.
enum NotRead {
    /// Every slot is taken: count in as an overflow reader, or wait.
    NoSlot,
    /// A writer holds the lock, or the state is garbage (this state); the slot was freed.
    Held(u32),
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
    /// | bits   | meaning                                                                    |
    /// |--------|----------------------------------------------------------------------------|
    /// | 0..24  | overflow reader count; or, if `WRITE_LOCKED`, the writer's TID (≤ 2^22)     |
    /// | 24..27 | unused: must be 0 (else garbage)                                           |
    /// | 27     | `WRITE_LOCKED`                                                             |
    /// | 28     | `OWNER_DIED`: a writer died; not marked consistent since                   |
    /// | 29     | `DRAINING`: the writer waits for registered readers (needs `WRITE_LOCKED`) |
    /// | 30     | `READERS_WAITING`: readers may sleep on this word                          |
    /// | 31     | `WRITERS_WAITING`: writers may sleep on `writer_notify`; overflow readers wait |
    state: AtomicU32,
    /// Bumped (wrapping) to wake a writer; writers futex-wait on it.
    writer_notify: AtomicU32,
    /// The reader slots, one per registered read lock:
    ///
    /// | value            | meaning                                                          |
    /// |------------------|------------------------------------------------------------------|
    /// | `FREE` (0)       | free                                                             |
    /// | 1..=2^22         | the TID of a thread holding one read lock, or about to (it checks the state next, and frees the slot if a writer holds it) |
    /// | above 2^22       | garbage (names no thread): freed by a draining writer            |
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

    /// Blocks until the calling thread holds a read lock. Recovers from a dead writer.
    /// Release it with [`read_unlock`](Self::read_unlock) on the same thread.
    #[inline]
    pub fn read(&self) -> Acquired {
        let me = owner::current();
        match self.read_registered(me) {
            Ok(a) => a,
            Err(_) => loop {
                if let Some(a) = self.read_contended(me, None) {
                    break a;
                }
            },
        }
    }

    /// Takes a read lock if no writer holds it, without waiting. Does not probe a holding
    /// writer (see [`RawMutex::try_lock`](super::RawMutex::try_lock)).
    pub fn try_read(&self) -> Option<Acquired> {
        self.try_read_as(owner::current())
    }

    /// [`try_read`](Self::try_read) for `me`, the calling thread's TID.
    fn try_read_as(&self, me: u32) -> Option<Acquired> {
        for _ in 0..TRY_LIMIT {
            match self.read_registered(me) {
                Ok(a) => return Some(a),
                Err(NotRead::Held(s)) if is_garbage(s) => {
                    self.recover(s);
                }
                Err(NotRead::Held(_)) => return None,
                Err(NotRead::NoSlot) => {
                    // Relaxed: the compare-exchange in `read_overflow` orders.
                    let s = self.state.load(Ordering::Relaxed);
                    if is_garbage(s) {
                        self.recover(s);
                    } else if !admits_overflow_reader(s) {
                        return None;
                    } else if let Some(a) = self.read_overflow(s) {
                        return Some(a);
                    }
                }
            }
        }
        None
    }

    /// [`read`](Self::read) giving up at `deadline`; `None` means it passed.
    pub fn read_until(&self, deadline: Instant) -> Option<Acquired> {
        let me = owner::current();
        match self.read_registered(me) {
            Ok(a) => Some(a),
            Err(_) => self.read_contended(me, Some(deadline)),
        }
    }

    /// A timed read's deadline has passed: one probe of the writer (so that a deadline
    /// shorter than the first slice still recovers a dead one), then one `try_read`.
    #[cold]
    fn read_last_chance(&self, me: u32) -> Option<Acquired> {
        self.recover_dead_writer();
        self.try_read_as(me)
    }

    /// Releases the state on a dead writer's behalf if it names one (or is garbage).
    #[cold]
    fn recover_dead_writer(&self) {
        // Relaxed: `recover` compare-exchanges from exactly this value.
        let s = self.state.load(Ordering::Relaxed);
        if is_garbage(s) || (is_write_locked(s) && holder_is_dead(writer_of(s))) {
            self.recover(s);
        }
    }

    /// Tries to take a read lock through a slot: claims a free slot for `me`, then checks
    /// that no writer holds the lock; if one does, frees the slot again.
    #[inline]
    fn read_registered(&self, me: u32) -> Result<Acquired, NotRead> {
        let Some(slot) = self.claim_slot(me) else {
            return Err(NotRead::NoSlot);
        };
        failpoint::hit(Point::RwReadClaimed);
        store_load_fence();
        // SeqCst: after our SeqCst slot claim, this pairs with a writer's SeqCst
        // compare-exchange that sets `WRITE_LOCKED` and its SeqCst slot loads after it:
        // either it sees our slot (and waits for it) or we see its bit (and back off).
        // Its Acquire part pairs with the Release in `write_unlock`: the last writer's
        // writes happen before our reads.
        let s = self.state.load(Ordering::SeqCst);
        if admits_registered_reader(s) {
            return Ok(acquired(s));
        }
        self.free_slot(slot);
        Err(NotRead::Held(s))
    }

    /// Claims a free slot for `me` (compare-exchange `FREE -> me`), trying
    /// `first_slot(me)` first. `None` if every slot is taken.
    #[inline]
    fn claim_slot(&self, me: u32) -> Option<&AtomicU32> {
        let slot = &self.readers[first_slot(me)];
        // SeqCst: the reader's half of the pairing in `read_registered`. Relaxed on
        // failure: nothing was claimed.
        if slot
            .compare_exchange(FREE, me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            return Some(slot);
        }
        self.claim_slot_slow(me)
    }

    #[cold]
    fn claim_slot_slow(&self, me: u32) -> Option<&AtomicU32> {
        let first = first_slot(me);
        (1..READER_SLOTS)
            .map(|k| &self.readers[(first + k) % READER_SLOTS])
            .find(|slot| {
                // Relaxed: a hint; the compare-exchange claims. SeqCst: as in `claim_slot`.
                slot.load(Ordering::Relaxed) == FREE
                    && slot
                        .compare_exchange(FREE, me, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
            })
    }

    /// A slot holding `me`, if any (any one: each stands for one of `me`'s read locks).
    #[inline]
    fn own_slot(&self, me: u32) -> Option<&AtomicU32> {
        let slot = &self.readers[first_slot(me)];
        // Relaxed: only `me` writes `me` into a slot and frees it again (a recoverer frees
        // it only once `me` is dead), so this thread's own program order suffices.
        if slot.load(Ordering::Relaxed) == me {
            Some(slot)
        } else {
            self.own_slot_slow(me)
        }
    }

    #[cold]
    fn own_slot_slow(&self, me: u32) -> Option<&AtomicU32> {
        let first = first_slot(me);
        // Relaxed: as in `own_slot`.
        (1..READER_SLOTS)
            .map(|k| &self.readers[(first + k) % READER_SLOTS])
            .find(|slot| slot.load(Ordering::Relaxed) == me)
    }

    /// Frees a slot this thread holds, and wakes a draining writer if this was the last
    /// registered reader it waited for.
    #[inline]
    fn free_slot(&self, slot: &AtomicU32) {
        // SeqCst: pairs with a writer's SeqCst `DRAINING` set and its SeqCst slot loads
        // after it: either it sees the slot free, or we see `DRAINING` below and wake it.
        // Its Release part: our reads of the data happen before a writer that sees FREE.
        slot.store(FREE, Ordering::SeqCst);
        failpoint::hit(Point::RwReadUnlockFreed);
        store_load_fence();
        // SeqCst: the other half of that pairing.
        let s = self.state.load(Ordering::SeqCst);
        if s & (WRITE_LOCKED | DRAINING) == WRITE_LOCKED | DRAINING {
            self.wake_drainer();
        } else if s & (WRITE_LOCKED | READERS_WAITING) == READERS_WAITING {
            self.wake_slot_waiters();
        }
    }

    /// A slot was freed while readers sleep on the state with no writer holding it: they
    /// wait for a slot (every slot was taken, and `WRITERS_WAITING` held them back from
    /// counting in). Clears `READERS_WAITING` and wakes them to register.
    #[cold]
    fn wake_slot_waiters(&self) {
        // Relaxed: no data is published; the woken re-check the state themselves.
        let r = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && !is_write_locked(s) && s & READERS_WAITING != 0)
                    .then_some(s & !READERS_WAITING)
            });
        if r.is_ok() {
            futex::wake_all(&self.state);
        }
    }

    /// A reader left while a writer drains: wakes it if every slot is free now. Of several
    /// readers leaving at once, the one whose slot release comes last in the `SeqCst`
    /// order sees every other slot free, so the writer is always woken.
    #[cold]
    fn wake_drainer(&self) {
        if self.slots_free() {
            // Release pairs with the Acquire load of `writer_notify` in `drain`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            // All: other writers may sleep on the counter too, and the draining one must
            // be among the woken.
            futex::wake_all(&self.writer_notify);
        }
    }

    /// Whether every reader slot is free.
    #[inline]
    fn slots_free(&self) -> bool {
        // SeqCst: the writer's half of the pairings in `read_registered` and `free_slot`.
        // Its Acquire part pairs with the Release of `free_slot`: the readers' reads happen
        // before our writes.
        self.readers
            .iter()
            .all(|slot| slot.load(Ordering::SeqCst) == FREE)
    }

    /// Counts an overflow reader in (every slot was taken): one compare-exchange from `s`.
    fn read_overflow(&self, s: u32) -> Option<Acquired> {
        // Acquire pairs with the Release in `write_unlock`, as in `read_registered`.
        self.state
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(acquired)
    }

    #[cold]
    fn read_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let waiting_since = Instant::now();
        let mut s = self.spin_read();
        // Under loom a wait never times out: probe once before the first sleep, as writers do.
        let mut probe_due = cfg!(loom);
        let mut slices = Slices::for_holder();
        loop {
            if is_garbage(s) {
                // (A word another process keeps rewriting must not keep a timed call here
                // past its bound: see `past`.)
                if past(deadline) {
                    return self.read_last_chance(me);
                }
                self.recover(s);
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if !is_write_locked(s) {
                match self.read_registered(me) {
                    Ok(a) => return Some(a),
                    Err(NotRead::Held(now)) => {
                        s = now;
                        continue;
                    }
                    Err(NotRead::NoSlot) => {
                        // Relaxed: the compare-exchange in `read_overflow` orders.
                        s = self.state.load(Ordering::Relaxed);
                        if is_garbage(s) {
                            continue;
                        }
                        if admits_overflow_reader(s) {
                            if let Some(a) = self.read_overflow(s) {
                                return Some(a);
                            }
                            s = self.state.load(Ordering::Relaxed);
                            continue;
                        }
                        // Every slot taken and a writer waits (or the count is full):
                        // sleep until the state changes. When a slice has run out, free
                        // the slots of dead readers, and clear `WRITERS_WAITING`: a live
                        // waiting writer sets it again, a bit no one stands behind goes.
                        if slices.probe_now(&mut probe_due) {
                            if self.recover_dead_readers(None) {
                                continue;
                            }
                            // Only after a while: a live writer waiting for the overflow
                            // readers to leave sets the bit again, but each clear lets
                            // this reader in ahead of it.
                            if s & WRITERS_WAITING != 0
                                && (cfg!(loom) || waiting_since.elapsed() >= STRAY_BIT_AGE)
                            {
                                self.clear_writers_waiting();
                                s = self.state.load(Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                }
            } else if slices.probe_now(&mut probe_due) {
                // Probe only once a slice has passed (see `RawMutex`). If the state changed
                // before the recovery could apply, probe the new one.
                if slices.holder_is_dead(writer_of(s)) {
                    probe_due = !self.recover(s);
                    if probe_due && past(deadline) {
                        return self.read_last_chance(me);
                    }
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
            let Some(slice) = slices.next(deadline) else {
                return self.read_last_chance(me);
            };
            if !futex::wait(&self.state, s, slice) {
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
    /// thread would free no slot but count an overflow reader out, or free a slot of a
    /// lock the caller does not hold), and does not read the protected data after this
    /// call until it locks again.
    #[inline]
    pub unsafe fn read_unlock(&self) {
        match self.own_slot(owner::current()) {
            Some(slot) => self.free_slot(slot),
            None => self.read_unlock_overflow(),
        }
    }

    #[cold]
    fn read_unlock_overflow(&self) {
        // Release pairs with the Acquire of the next writer, so our reads happen before its
        // writes. Refuses a state without an overflow reader (only misuse or hostile bytes
        // make one): the count never wraps.
        let r = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
                (!is_garbage(s) && !is_write_locked(s) && s & COUNT_MASK != 0).then(|| s - 1)
            });
        if let Ok(prev) = r {
            let s = prev - 1;
            // The last overflow reader out wakes the waiters (a writer waits behind it).
            if is_unlocked(s) && s & WAITING != 0 {
                self.wake_waiters(s);
            }
        }
    }

    // ----- writers -----

    /// Blocks until the calling thread holds the write lock. Recovers from a dead writer and
    /// from dead registered readers; waits without bound for a dead overflow reader (see
    /// the [module docs](self#owner-death)).
    #[inline]
    pub fn write(&self) -> Acquired {
        let me = owner::current();
        if self.lock_state_for_write(me) {
            if self.slots_free() {
                return Acquired::Consistent;
            }
            if let Some(a) = self.drain(me, None, Acquired::Consistent) {
                return a;
            }
        }
        loop {
            if let Some(a) = self.write_contended(me, None) {
                return a;
            }
        }
    }

    /// Takes the write lock if the lock is free, without waiting (and without probing).
    pub fn try_write(&self) -> Option<Acquired> {
        self.try_write_as(owner::current(), false)
    }

    /// [`try_write`](Self::try_write) for `me`, the calling thread's TID; with `probe`,
    /// frees the slots of dead readers (a probe each) before giving up on them.
    fn try_write_as(&self, me: u32, probe: bool) -> Option<Acquired> {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_LIMIT {
            if is_garbage(s) {
                self.recover(s);
            } else if is_unlocked(s) {
                // SeqCst and Acquire: as in `write_fast`.
                match self.state.compare_exchange(
                    s,
                    s | WRITE_LOCKED | me,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        store_load_fence();
                        if self.slots_free()
                            || (probe && self.recover_dead_readers(None) && self.slots_free())
                        {
                            return Some(acquired(s));
                        }
                        // Readers hold it: give the lock back (waking readers that saw us).
                        self.release_write(me);
                        return None;
                    }
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
        if self.lock_state_for_write(me) {
            if self.slots_free() {
                return Some(Acquired::Consistent);
            }
            return self.drain(me, Some(deadline), Acquired::Consistent);
        }
        self.write_contended(me, Some(deadline))
    }

    /// The uncontended first step of a write lock: `0 -> WRITE_LOCKED | me`, which shuts
    /// new readers out. The caller then checks (and waits for) the registered readers.
    #[inline]
    fn lock_state_for_write(&self, me: u32) -> bool {
        // SeqCst: the writer's half of the pairing in `read_registered` (the slot loads in
        // `slots_free` come after). Acquire pairs with the Release in `write_unlock` and
        // `read_unlock_overflow`.
        let ok = self
            .state
            .compare_exchange(0, WRITE_LOCKED | me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        if ok {
            failpoint::hit(Point::RwWriteLocked);
        }
        store_load_fence();
        ok
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
        let mut slices = Slices::for_holder();
        loop {
            if is_garbage(s) {
                // As in `read_contended`.
                if past(deadline) {
                    self.clear_writers_waiting();
                    return self.try_write_as(me, true);
                }
                self.recover(s);
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if is_unlocked(s) {
                // SeqCst and Acquire: as in `write_fast`.
                match self.state.compare_exchange_weak(
                    s,
                    s | WRITE_LOCKED | me | other_writers_waiting,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        store_load_fence();
                        let a = acquired(s);
                        if self.slots_free() {
                            return Some(a);
                        }
                        return self.drain(me, deadline, a);
                    }
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
            // Probe only once a slice has passed (see `RawMutex`). Overflow
            // readers name no one: only a dead writer can be recovered here.
            if slices.probe_now(&mut probe_due) {
                // As in `read_contended`.
                if is_write_locked(s) && slices.holder_is_dead(writer_of(s)) {
                    probe_due = !self.recover(s);
                    if probe_due && past(deadline) {
                        self.clear_writers_waiting();
                        return self.try_write_as(me, true);
                    }
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
            }
            let Some(slice) = slices.next(deadline) else {
                self.clear_writers_waiting();
                // One last probe: a deadline shorter than a slice still recovers a dead
                // writer (and dead readers, if it then gets the state).
                self.recover_dead_writer();
                return self.try_write_as(me, true);
            };
            if !futex::wait(&self.writer_notify, seq, slice) {
                probe_due = true;
            }
            s = self.spin_write();
        }
    }

    /// Holding `WRITE_LOCKED`, waits for the registered readers to leave, freeing the slots
    /// of dead ones. Returns `a` once every slot is free, or `None` (the write lock given
    /// back) if `deadline` passes first.
    #[cold]
    fn drain(&self, me: u32, deadline: Option<Instant>, a: Acquired) -> Option<Acquired> {
        // SeqCst: the writer's half of the pairing in `free_slot` (the slot loads in
        // `slots_free` come after): the last reader out sees this bit, or we see its slot
        // free. Failure: the state no longer names us (only hostile bytes do that); then
        // waiting for the readers is all that is left to do.
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |s| {
                (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me).then_some(s | DRAINING)
            });
        failpoint::hit(Point::RwDraining);
        // Under loom a wait never times out: probe once before the first sleep.
        let mut probe_due = cfg!(loom);
        // Holder slices (≤ 800 µs): a reader killed while we drain is found within a slice.
        // Each occupied slot's reader is watched, so a writer waiting long behind live
        // readers pays a `poll` per reader per slice (see `owner::Watch`).
        let mut slices = Slices::for_holder();
        let mut watches: [Watch; READER_SLOTS] = core::array::from_fn(|_| Watch::default());
        let mut spins = SPIN_LIMIT;
        loop {
            // Acquire pairs with the Release increment in `wake_drainer`: if we see it, we
            // see the slot it found free.
            let seq = self.writer_notify.load(Ordering::Acquire);
            store_load_fence();
            if self.slots_free() {
                // SeqCst (Acquire at least): our writes to the data stay after this, so a
                // recoverer that still finds `DRAINING` knows they never started.
                let _ = self
                    .state
                    .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |s| {
                        (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me)
                            .then_some(s & !DRAINING)
                    });
                return Some(a);
            }
            if spins > 0 {
                // Readers usually leave soon: look again before sleeping.
                spins -= 1;
                spin_loop();
                continue;
            }
            if slices.probe_now(&mut probe_due) && self.recover_dead_readers(Some(&mut watches)) {
                continue;
            }
            let Some(slice) = slices.next(deadline) else {
                // One last probe: a deadline shorter than a slice still frees dead readers.
                if self.recover_dead_readers(Some(&mut watches)) && self.slots_free() {
                    continue;
                }
                self.release_write(me);
                return None;
            };
            if !futex::wait(&self.writer_notify, seq, slice) {
                probe_due = true;
            }
        }
    }

    /// Gives back a write lock that `me` took but did not use (readers held the lock, and
    /// the caller does not wait for them): as [`write_unlock`](Self::write_unlock), waking
    /// the readers that saw our bit and went to sleep.
    #[cold]
    fn release_write(&self, me: u32) {
        self.write_unlock_slow(me);
    }

    /// Clears `WRITERS_WAITING` and wakes every waiting writer, which sets it again, and, if
    /// no writer holds the lock, the readers that the bit held back. A writer that gives up
    /// waiting calls this (the bit may be set only for it, and a stale bit would hold new
    /// overflow readers back), and so does an overflow reader whose slice ran out behind
    /// the bit (it may be a bit that no live writer stands behind).
    #[cold]
    fn clear_writers_waiting(&self) {
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
            // Release: as in `write_unlock`. Clearing the waiting bits (and `DRAINING`) in
            // the same step means no one can lock in between and inherit them unwoken.
            match self.state.compare_exchange(
                s,
                s & OWNER_DIED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    failpoint::hit(Point::RwWriteUnlockCleared);
                    return self.wake_flagged(s);
                }
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

    /// Whether any read or write lock is held now (a snapshot; a reader between its slot
    /// claim and its state check counts as holding).
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics.
        !is_unlocked(self.state.load(Ordering::Relaxed))
            || self
                .readers
                .iter()
                .any(|slot| slot.load(Ordering::Relaxed) != FREE)
    }

    /// The raw state word, for tests and diagnostics.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn state(&self) -> &AtomicU32 {
        &self.state
    }

    // ----- shared -----

    /// Called with a state `s` without writer or overflow reader: clears the waiting bits
    /// (keeping `OWNER_DIED`) and wakes whoever they name. If someone locks first, their
    /// unlock inherits the bits and does this instead.
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
    /// that wins sets `WRITE_LOCKED`, which shuts further readers out, so writers still do
    /// not starve.
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
    /// writer's behalf, mark `OWNER_DIED` (unless the writer was still `DRAINING`: it had
    /// not touched the data), clear the waiting bits and wake every waiter, who all
    /// re-register. A no-op if the state changed since `s` was read; returns whether it
    /// applied.
    #[cold]
    fn recover(&self, s: u32) -> bool {
        let new = if !is_garbage(s) && s & DRAINING != 0 {
            s & OWNER_DIED
        } else {
            OWNER_DIED
        };
        // Relaxed: nothing to publish (the dead writer's stores are visible anyway, see
        // the raw_mutex docs); the next acquirer's Acquire compare-exchange reads this.
        if self
            .state
            .compare_exchange(s, new, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // Release: as in `wake_writer`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.writer_notify);
            futex::wake_all(&self.state);
            true
        } else {
            false
        }
    }

    /// A draining writer's slice ran out (or an overflow reader's, waiting for a slot):
    /// frees the slots of registered readers that are dead (and garbage slots, which name
    /// no thread). Returns whether it freed any.
    #[cold]
    fn recover_dead_readers(&self, mut watches: Option<&mut [Watch; READER_SLOTS]>) -> bool {
        let mut any = false;
        for (i, slot) in self.readers.iter().enumerate() {
            // Relaxed: a snapshot; the compare-exchange below frees the slot.
            let tid = slot.load(Ordering::Relaxed);
            let dead = tid != FREE
                && match watches.as_deref_mut() {
                    // A draining writer watches each slot's reader: after the first
                    // probes, a `poll` each (see `owner::Watch`).
                    Some(w) => Tid::parse(tid).is_none_or(|t| w[i].is_dead(t)),
                    None => holder_is_dead(tid),
                };
            if !dead {
                continue;
            }
            // SeqCst: the free's half of the pairing with a draining writer (see below). A
            // dead reader's reads need no ordering with anyone's writes (its process or
            // thread is gone); the compare-exchange frees exactly the dead TID we probed,
            // so a slot claimed since by a live reader is left alone.
            any |= slot
                .compare_exchange(tid, FREE, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
        }
        if any {
            // As a reader leaving would (`free_slot`): a writer may be draining (we may be
            // an overflow reader that read the state before it set `WRITE_LOCKED`).
            store_load_fence();
            // SeqCst: the pairing of `free_slot`, with the SeqCst frees above.
            let s = self.state.load(Ordering::SeqCst);
            if s & (WRITE_LOCKED | DRAINING) == WRITE_LOCKED | DRAINING {
                self.wake_drainer();
            }
        }
        any
    }

    /// The reader slots, for tests and diagnostics (e.g. writing hostile bytes).
    #[cfg(any(test, feature = "test-hooks"))]
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
/// [`RwLockWriteGuard::mark_consistent`]. A reader dying at any step of taking, holding or
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

    /// Takes a read lock if no writer holds the lock (or is taking it, waiting for the
    /// readers to leave), without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if a writer holds the lock or is taking it (or, with
    /// every reader slot taken, a writer waits); `OwnerDied` as for
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
    /// The TID of the thread that took the read lock (a cached thread-local read). This is
    /// how a copy of the guard in a forked child knows it holds nothing: its thread owns no
    /// slot, so an unlock there would count some overflow reader's lock out instead.
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
