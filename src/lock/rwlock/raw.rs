//! [`RawRwLock`]: the state word, its bits, and the lock and unlock protocol of readers and
//! writers. The reader slots are in [`slots`](super::slots); the algorithm is described in
//! the [module docs](super).

use core::time::Duration;
use std::time::Instant;

use super::slots::{FREE, READER_SLOTS};
use crate::failpoint::{self, Point};
use crate::futex;
use crate::lock::raw_mutex::{Acquired, MAX_TID, TID_MASK};
use crate::owner;
use crate::sync::{AtomicU32, Ordering, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices, TRY_LIMIT, holder_is_dead, past};

/// Overflow reader count, or the writer's TID when `WRITE_LOCKED`.
const COUNT_MASK: u32 = TID_MASK;
/// Most overflow readers at once; one more waits.
const MAX_READERS: u32 = COUNT_MASK;
/// Write-locked; `COUNT_MASK` bits are the writer's TID.
pub(super) const WRITE_LOCKED: u32 = 1 << 27;
/// A writer died holding the lock; no writer has marked the data consistent since.
const OWNER_DIED: u32 = 1 << 28;
/// With `WRITE_LOCKED`: the writer waits for registered readers to leave (it may sleep on
/// `writer_notify`) and has not touched the data.
pub(super) const DRAINING: u32 = 1 << 29;
/// Readers may sleep on `state`.
pub(super) const READERS_WAITING: u32 = 1 << 30;
/// Writers may sleep on `writer_notify` for another writer or for overflow readers; new
/// overflow readers wait.
const WRITERS_WAITING: u32 = 1 << 31;
const WAITING: u32 = READERS_WAITING | WRITERS_WAITING;
const KNOWN_BITS: u32 = COUNT_MASK | WRITE_LOCKED | OWNER_DIED | DRAINING | WAITING;

/// How long an overflow reader waits behind `WRITERS_WAITING` before it clears the bit as
/// possibly stray (no live writer behind it): long against a slice, so that a live writer
/// waiting for overflow readers is rarely overtaken, short against a hang.
pub const STRAY_BIT_AGE: Duration = Duration::from_millis(100);

#[inline]
pub(super) const fn is_write_locked(s: u32) -> bool {
    s & WRITE_LOCKED != 0
}

#[inline]
pub(super) const fn writer_of(s: u32) -> u32 {
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
pub(super) const fn is_garbage(s: u32) -> bool {
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
pub(super) fn store_load_fence() {
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

/// A robust readers-writer lock without data. See the [module docs](super).
///
/// Prefer [`RwLock`](super::RwLock), whose guards prove ownership. All-zero bytes are an
/// unlocked lock and any bytes are a valid one (garbage reads as a dead writer).
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
    pub(super) state: AtomicU32,
    /// Bumped (wrapping) to wake a writer; writers futex-wait on it.
    pub(super) writer_notify: AtomicU32,
    /// The reader slots, one per registered read lock:
    ///
    /// | value            | meaning                                                          |
    /// |------------------|------------------------------------------------------------------|
    /// | `FREE` (0)       | free                                                             |
    /// | 1..=2^22         | the TID of a thread holding one read lock, or about to (it checks the state next, and frees the slot if a writer holds it) |
    /// | above 2^22       | garbage (names no thread): freed by a draining writer            |
    pub(super) readers: [AtomicU32; READER_SLOTS],
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
    /// writer (see [`RawMutex::try_lock`](crate::lock::RawMutex::try_lock)).
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
            failpoint::hit(Point::RwReadUnlockOverflowCounted);
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
    /// the [module docs](super#owner-death)).
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

    /// Gives back a write lock that `me` took but did not use (readers held the lock, and
    /// the caller does not wait for them): as [`write_unlock`](Self::write_unlock), waking
    /// the readers that saw our bit and went to sleep.
    #[cold]
    pub(super) fn release_write(&self, me: u32) {
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
            failpoint::hit(Point::RwWritersWaitingCleared);
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

    /// Clears `OWNER_DIED` while the calling thread holds a read lock: the readers judge
    /// the data intact. No writer can change it meanwhile (a write lock excludes every
    /// read lock, and a draining writer has not started writing). `reader` is the TID the
    /// read lock was taken by: a copy of a read guard in a forked child (or one used from
    /// another thread) holds no read lock of the calling thread and changes nothing.
    pub(crate) fn mark_consistent_as_reader(&self, reader: u32) {
        if owner::current() != reader {
            return;
        }
        // Relaxed: a reader wrote nothing to publish; the next acquirer's Acquire
        // read-modify-write of the state reads this or a later value.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && s & OWNER_DIED != 0).then_some(s & !OWNER_DIED)
            });
    }

    /// Turns the calling thread's write lock into a read lock of the calling thread,
    /// without letting any writer in between: the read lock is taken *before* the write
    /// lock goes. If a reader slot is free, the read lock is registered there (claimed
    /// while `WRITE_LOCKED` still holds other writers out, then the write lock is released
    /// as by [`write_unlock`](Self::write_unlock), waking the waiting readers). Right after
    /// a write the slots are free but for readers backing off and dead or garbage TIDs, so
    /// a downgrade that finds them all taken spins briefly and frees the dead ones before
    /// it falls back to one compare-exchange that swaps `WRITE_LOCKED` for an overflow
    /// count of one.
    ///
    /// A writer that sets `WRITE_LOCKED` after the release sees the slot, by the `SeqCst`
    /// pairing of `read_registered` (the slot claim is a `SeqCst` read-modify-write before
    /// the release), and drains; an overflow count keeps writers out of the state itself.
    ///
    /// Returns whether the calling thread holds a read lock now: `false` if the state does
    /// not name it as the writer (a copy of a write guard in a forked child, or hostile
    /// bytes), and then nothing changed.
    ///
    /// # Safety
    ///
    /// The calling thread holds the write lock (taken by `write`, `try_write` or
    /// `write_until` on this thread and not released), or a forked copy of a guard of it.
    /// Afterwards, if `true`, it holds a read lock instead, to be released with
    /// [`read_unlock`](Self::read_unlock) on this thread.
    pub(crate) unsafe fn downgrade(&self) -> bool {
        let me = owner::current();
        let ours = |s: u32| !is_garbage(s) && is_write_locked(s) && writer_of(s) == me;
        // Relaxed: only this thread changes a state that names it as the writer (others
        // only set waiting bits), so the check stays true until our release below.
        if !ours(self.state.load(Ordering::Relaxed)) {
            return false;
        }
        for round in 0..=SPIN_LIMIT {
            if self.claim_slot(me).is_some() {
                failpoint::hit(Point::RwDowngradeClaimed);
                // SAFETY: the caller holds the write lock (checked above: the state names
                // this thread); our read lock (the slot) goes on protecting the data.
                unsafe { self.write_unlock() };
                return true;
            }
            if round == SPIN_LIMIT / 2 {
                // Slots of dead readers (or garbage) are freed while we hold the write
                // lock, as a draining writer would.
                self.recover_dead_readers(None);
            }
            spin_loop();
        }
        self.downgrade_overflow(me)
    }

    /// [`downgrade`](Self::downgrade) with every slot taken.
    #[cold]
    fn downgrade_overflow(&self, me: u32) -> bool {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if is_garbage(s) || !is_write_locked(s) || writer_of(s) != me {
                // Not ours (only hostile bytes do that): there is no write lock to turn.
                return false;
            }
            // The count is 0 under a write lock (a writer locks only a state without
            // overflow readers, and none counts in while `WRITE_LOCKED` is set), so the
            // new state is one overflow reader: ours. Release: as in `write_unlock` (our
            // writes happen before the next writer's Acquire). The waiting bits are
            // cleared in the same step, as in `write_unlock_slow`, and their sleepers
            // woken: readers get in beside us, writers wait for the count.
            match self.state.compare_exchange(
                s,
                (s & OWNER_DIED) + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.wake_flagged(s);
                    return true;
                }
                Err(now) => s = now,
            }
        }
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
            failpoint::hit(Point::RwRecoverCleared);
            // Release: as in `wake_writer`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.writer_notify);
            futex::wake_all(&self.state);
            true
        } else {
            false
        }
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
