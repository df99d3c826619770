//! [`RawRwLock`]: the state word, its bits, and the lock and unlock protocol of readers and
//! writers (the writer side is in `raw/write.rs`). The reader slots are in
//! [`slots`](super::slots); the algorithm is described in the [module docs](super).

use core::time::Duration;
use std::time::Instant;

use super::slots::{FREE, READER_SLOTS};
use crate::failpoint::{self, Point};
use crate::futex;
use crate::lock::raw_mutex::Acquired;
use crate::owner;
use crate::sync::{AtomicU32, Ordering, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices, TRY_LIMIT, flag_waiting, past, spin_with_backoff};

// The writer side (lock, unlock, downgrade) is its own file; as a child module it sees
// this file's private state-word helpers.
mod write;

/// Overflow reader count (without `WRITE_LOCKED`).
const COUNT_MASK: u32 = 0x00FF_FFFF;
/// With `WRITE_LOCKED`: the writer's TID (a TID is below the kernel's `PID_MAX_LIMIT`,
/// 2^22) ...
const WRITER_TID_MASK: u32 = owner::STAMPED_TID_MASK;
/// ... and its 5-bit stamp ([`writer_id`]; 0: unknown).
const WRITER_STAMP_SHIFT: u32 = 22;
const WRITER_STAMP_MASK: u32 = 0x1F << WRITER_STAMP_SHIFT;
/// The writer part of a write-locked state.
const WRITER_MASK: u32 = WRITER_TID_MASK | WRITER_STAMP_MASK;
/// Most overflow readers at once; one more waits.
const MAX_READERS: u32 = COUNT_MASK;
/// Write-locked; `WRITER_MASK` bits name the writer.
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
static_assertions::const_assert_eq!(WRITER_MASK & !(COUNT_MASK | 0x7 << 24), 0);
static_assertions::const_assert_eq!(WRITER_MASK & WRITE_LOCKED, 0);
static_assertions::const_assert_eq!(KNOWN_BITS | WRITER_MASK, u32::MAX);

/// The calling thread as a write-locked state names it: its TID, and a 5-bit stamp of
/// its start time (the state has no room for the 8 bits of a `RawMutex` word):
/// [`stamp5_of`] of the stamp the thread caches.
#[inline]
pub(super) fn writer_id() -> u32 {
    let me = owner::current_stamped();
    let stamp = (me & owner::STAMP_MASK) >> owner::STAMP_SHIFT;
    me & WRITER_TID_MASK | u32::from(STAMP5[stamp as usize]) << WRITER_STAMP_SHIFT
}

/// [`stamp5_of`] of every 8-bit stamp: a write lock and its unlock each pay a load from
/// this table, not a division.
static STAMP5: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = stamp5_of(i as u32) as u8;
        i += 1;
    }
    t
};

/// The 5-bit writer stamp for an 8-bit stamp (`owner::stamp_of`): 1 to 31, or 0 for 0
/// (unknown). A new thread that got a dead writer's TID gets the same one with a chance
/// of about 1 in 31.
#[inline]
const fn stamp5_of(stamp: u32) -> u32 {
    if stamp == 0 { 0 } else { (stamp - 1) % 31 + 1 }
}

/// Whether the writer that writer bits `w` (from a write-locked state) name is gone: no
/// TID at once; else probed, and a live TID whose start time gives another 5-bit stamp
/// reads dead. A syscall: slow paths only.
#[cold]
fn writer_is_gone(w: u32) -> bool {
    w & WRITER_TID_MASK == 0
        || owner::probe_started(w & WRITER_TID_MASK, writer_started(w)) == owner::Liveness::Dead
}

/// [`writer_is_gone`] through a wait's watch of the writer.
#[cold]
pub(super) fn writer_is_gone_watched(slices: &mut Slices, w: u32) -> bool {
    slices.holder_is_dead_by(w & WRITER_TID_MASK, w, || {
        owner::probe_started(w & WRITER_TID_MASK, writer_started(w)) == owner::Liveness::Dead
    })
}

/// Whether a thread that started at `start` (clock ticks since boot) may be the writer
/// that writer bits `w` name: its 5-bit stamp is theirs, or theirs is unknown.
fn writer_started(w: u32) -> impl FnOnce(u64) -> bool {
    let stamp = (w & WRITER_STAMP_MASK) >> WRITER_STAMP_SHIFT;
    move |_start| {
        #[cfg(not(loom))]
        {
            stamp == 0 || stamp5_of(owner::stamp_of(_start)) == stamp
        }
        #[cfg(loom)]
        {
            let _ = stamp;
            true
        }
    }
}

/// How long an overflow reader waits behind `WRITERS_WAITING` before it clears the bit as
/// possibly stray (no live writer behind it): long against a slice, so that a live writer
/// waiting for overflow readers is rarely overtaken, short against a hang.
pub const STRAY_BIT_AGE: Duration = Duration::from_millis(100);

#[inline]
pub(super) const fn is_write_locked(s: u32) -> bool {
    s & WRITE_LOCKED != 0
}

/// The writer part (TID and stamp) of a write-locked state.
#[inline]
pub(super) const fn writer_of(s: u32) -> u32 {
    s & WRITER_MASK
}

/// No writer and no overflow reader (waiting bits and `OWNER_DIED` may be set; registered
/// readers are in the slots, not here).
#[inline]
const fn is_unlocked(s: u32) -> bool {
    s & (COUNT_MASK | WRITE_LOCKED) == 0
}

/// Unknown bits (bits 24..27 are known only beside `WRITE_LOCKED`, as the writer's
/// stamp), a write lock naming no thread, or `DRAINING` without a writer.
#[inline]
pub(super) const fn is_garbage(s: u32) -> bool {
    if is_write_locked(s) {
        // Every other bit is known beside `WRITE_LOCKED`.
        s & WRITER_TID_MASK == 0
    } else {
        s & !KNOWN_BITS != 0 || s & DRAINING != 0
    }
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
    /// | 0..24  | overflow reader count (without `WRITE_LOCKED`)                             |
    /// | 0..22  | with `WRITE_LOCKED`: the writer's TID (0: garbage)                         |
    /// | 22..27 | with `WRITE_LOCKED`: the writer's 5-bit stamp (`writer_id`; 0: unknown); without it, bits 24..27 must be 0 (else garbage) |
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
    /// | TID, stamp above | a thread holding one read lock, or about to (it checks the state next, and frees the slot if a writer holds it): its TID in bits 0..22, its stamp in 22..30 (as a `RawMutex` word) |
    /// | bit 30 or 31 set, or a stamp without a TID | garbage (names no thread): freed by a draining writer |
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
        let me = owner::current_stamped();
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
        self.try_read_as(owner::current_stamped())
    }

    /// [`try_read`](Self::try_read) for `me`, the calling thread's stamped id (what its
    /// reader slot records).
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
        let me = owner::current_stamped();
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
        if is_garbage(s) || (is_write_locked(s) && writer_is_gone(writer_of(s))) {
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
                if writer_is_gone_watched(&mut slices, writer_of(s)) {
                    probe_due = !self.recover(s);
                    if probe_due && past(deadline) {
                        return self.read_last_chance(me);
                    }
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
            }
            if !flag_waiting(&self.state, &mut s, READERS_WAITING) {
                continue;
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
        match self.own_slot(owner::current_stamped()) {
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

    /// Spins until `stop` holds for the state word (the last one loaded is returned), with
    /// the mutex's backoff: a look after 1, 2, 4, 8, then every 16 pauses.
    fn spin_until(&self, stop: impl Fn(u32) -> bool) -> u32 {
        let mut s = 0;
        spin_with_backoff(|| {
            // Relaxed: a hint; acquisitions compare-exchange.
            s = self.state.load(Ordering::Relaxed);
            stop(s)
        });
        s
    }

    fn spin_read(&self) -> u32 {
        // Stop when readable, or when others sleep (spinning would not be fair to them).
        self.spin_until(|s| !is_write_locked(s) || s & WAITING != 0 || is_garbage(s))
    }

    fn spin_write(&self) -> u32 {
        self.spin_until(|s| is_unlocked(s) || s & WAITING != 0 || is_garbage(s))
    }
}
