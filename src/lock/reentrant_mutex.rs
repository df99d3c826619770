//! [`ReentrantMutex<T>`]: a robust mutex the owning thread may lock again (Python's
//! `RLock`, std's `ReentrantLock`).
//!
//! # Crash windows
//!
//! The lock is a [`RawMutex`](super::RawMutex) (see its table); the nesting depth beside
//! it is written only by the owner:
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | first lock: word taken, depth not yet reset | the word names a dead thread; a stale depth | the next acquirer takes the word over (as for `RawMutex`, with `OwnerDied`) and resets the depth to 0: a dead owner's depth is never trusted |
//! | nested lock or guard drop: depth changed | the same | the same |
//! | last guard drop: depth 0, word not yet cleared | the same | the same |
//!
//! # A dead owner's TID reused by the caller
//!
//! "The word names the calling thread" is how a nested lock is told from a fresh one. A
//! thread that got the TID of an owner that died holding the lock (the kernel reuses
//! TIDs: [`RawMutex`](super::RawMutex)'s Limits) would read as that owner, enter at the
//! dead owner's depth, see its half-written data as consistent, and never release the
//! lock. The word's stamp tells the two apart in all but 1 case in 255 (a word with the
//! thread's TID and another stamp is a dead thread's, taken over by `RawMutex::lock`).
//! For that case too, each thread counts the reentrant-mutex guards it holds, nested ones too
//! (a thread-local, keyed by the fork generation, so a forked child's copy counts
//! nothing; a guard is counted before the compare-exchange that takes its lock, so a
//! signal handler that locks the same mutex in between nests). A word naming a thread
//! that holds no guard is a dead thread's, and the lock is taken over from it as from
//! any dead owner (`OwnerDied`, depth reset).
//!
//! Limits: a thread that holds any other reentrant-mutex guard cannot tell by the count,
//! and when the dead owner's stamp is also its own (1 in 255) still enters a dead owner's
//! lock that names it, at the dead owner's depth (as without the count). The lock then stays held until the thread exits, or until it locks it again
//! while it holds no other guard (then it is taken over as above). A signal handler that
//! returns still holding a guard it took (leaking it) may lose one count of the code it
//! interrupted. Otherwise the count only errs high (a leaked guard, a guard whose lock
//! another thread took over, a process whose fork handler is not registered), which
//! brings that behaviour back, never a takeover of a lock the thread holds. Two copies of
//! the crate linked into one process keep two counts: a thread must not nest locks of
//! one mutex through both.

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;
use std::time::Instant;

use super::owner_died::{LockResult, TimedLockError, TryLockError};
use super::raw_mutex::{Acquired, RawMutex};
use super::typed::{Acquisition, RawLockShared, SharedGuard};
use crate::shared::{Elem, Field, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::Timeout;

/// A mutex that the thread holding it may lock again; it is released when every guard is
/// dropped. Shared by threads and processes, robust against its owner's death like
/// [`Mutex`](crate::Mutex).
///
/// Like std's `ReentrantLock`, a guard gives `&T` only, never `&mut T`: the thread that
/// holds the lock may hold several guards at once, and a `&mut T` from one would alias the
/// `&T` of another. **Mutate through `T`'s own interior mutability**: in shared memory, `T`
/// is a shmstate type such as [`Value`](crate::Value), [`Counter`](crate::Counter) or a
/// tuple or `#[repr(C)]` struct of them, whose `&self` methods write (and the lock makes a
/// sequence of them one critical section: no other thread or process runs its own in
/// between). On the heap, a `Cell` works too. Relaxed orderings suffice inside the lock:
/// its acquisition synchronises with the previous owner's release.
///
/// Guards are not `Send`, so only the owning thread can unlock; there is no raw unlock.
/// A guard copied into a forked child does nothing when dropped there (a guard records the
/// thread that made it), so the parent keeps the lock at its full depth, and a child that
/// took the lock itself keeps it too.
/// The nesting depth is a `u32`: a thread that holds 2^32 − 1 nested guards at once (only
/// leaking guards gets there) keeps the lock until it exits, since its count is lost.
///
/// Layout: `#[repr(C)]`: the lock word, the recursion count (written only by the owner),
/// then `T`. All-zero is unlocked, holding an all-zero `T`.
///
/// # Examples
///
/// ```
/// use shmstate::sync::Ordering::Relaxed;
/// use shmstate::{ReentrantMutex, Value};
///
/// let m = ReentrantMutex::new(Value::new(1u32));
/// let outer = m.lock().unwrap();
/// let inner = m.lock().unwrap(); // same thread: no deadlock
/// // Load and store are one step here: the lock keeps every other thread out.
/// inner.store(inner.load(Relaxed) + 1, Relaxed);
/// drop(inner);
/// assert_eq!(outer.load(Relaxed), 2);
/// assert!(m.is_locked());
/// drop(outer);
/// assert!(!m.is_locked());
/// ```
///
/// Mutating through a guard does not compile:
///
/// ```compile_fail,E0594
/// let m = shmstate::ReentrantMutex::new(std::cell::Cell::new(0u8));
/// let mut g = m.lock().unwrap();
/// *g = std::cell::Cell::new(1);
/// ```
#[repr(C)]
pub struct ReentrantMutex<T> {
    raw: RawReentrantMutex,
    data: T,
}

/// The lock of a [`ReentrantMutex`]: a [`RawMutex`] and the owner's nesting depth. Its
/// acquisitions are shared ones (a [`SharedGuard`] each): the owning thread may hold
/// several at once.
#[derive(Debug, Default)]
#[repr(C)]
pub struct RawReentrantMutex {
    raw: RawMutex,
    /// How many guards beyond the first the owner holds. Written only by the owning thread
    /// while it holds `raw`; reset to 0 by every fresh acquisition (a dead owner's count is
    /// meaningless).
    depth: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(ReentrantMutex<crate::Value<u64>>, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(ReentrantMutex<crate::Value<u64>>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(ReentrantMutex<crate::Value<u32>>, [u32; 3]);
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(ReentrantMutex<crate::Value<u64>>, raw) == 0);
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(RawReentrantMutex, depth) == 4);

// SAFETY: the data is reached only through guards, which are not Send, and only by the
// thread holding `raw`, one thread at a time; each acquisition synchronises with the
// previous owner's release. So a `T` that is only Send (a `Cell`) is never accessed by two
// threads at once, as for std's `ReentrantLock`.
unsafe impl<T: Send> Sync for ReentrantMutex<T> {}

// SAFETY: 1. all-zero: unlocked, depth 0, and an all-zero `T` (T: SharedSized, item 1).
// 2. any lock word is valid (garbage reads as a dead owner), any depth is valid (a fresh
// owner resets it; a hostile depth can only make the owner release late or early), any
// bytes of `T` are valid (T: SharedSized, item 2); the only other bytes are the padding
// `T`'s alignment may add after the two `u32`s, never read. 3. two `u32`s and a `T`
// without pointers (item 3). 4. `#[repr(C)]`, asserted above for sample `T`s; the tag
// records `T`'s own tag, offset, size and alignment. 5. `Sync` above (`T: Send`); `&self`
// methods are lock operations, and a guard hands out `&T`, whose `&self` methods are safe
// to call concurrently from several processes (T: SharedSized, item 5).
unsafe impl<T: SharedSized + Send> SharedSized for ReentrantMutex<T> {
    const TAG: TypeTag = TypeTag::new(Kind::REENTRANT_MUTEX, inner_elem::<T>());
}

/// The element of a `ReentrantMutex<T>`: `T`'s own identity (its whole [`TypeTag`], at its
/// offset, in a mutex of this size and alignment), fingerprinted as a record's field.
const fn inner_elem<T: SharedSized>() -> Elem {
    TypeTag::record(
        "ReentrantMutex",
        size_of::<ReentrantMutex<T>>(),
        align_of::<ReentrantMutex<T>>(),
        &[Field {
            name: "data",
            offset: core::mem::offset_of!(ReentrantMutex<T>, data),
            ty: T::TAG,
        }],
    )
    .elem
}

type Guard<'a, T> = ReentrantMutexGuard<'a, T>;

impl<T> ReentrantMutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            raw: RawReentrantMutex::default(),
            data: value,
        }
    }

    /// Blocks until the calling thread holds the lock; returns at once if it already does.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the guard) if the previous owner died
    /// holding the lock and no owner has marked it consistent since (also on a nested lock
    /// while still unmarked).
    #[inline]
    pub fn lock(&self) -> LockResult<Guard<'_, T>> {
        // SAFETY: `raw` protects `data`, which lives as long as `self`.
        unsafe { Guard::lock(&self.raw, || self.data_ptr()) }
    }

    /// Takes the lock if it is free or already held by the calling thread, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread holds it; `OwnerDied` as for
    /// [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<Guard<'_, T>, TryLockError<Guard<'_, T>>> {
        // SAFETY: as in `lock`.
        unsafe { Guard::try_lock(&self.raw, || self.data_ptr()) }
    }

    /// [`lock`](Self::lock), giving up after `timeout` (a `timeout` too large to represent
    /// as a deadline never passes).
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Guard<'_, T>, TimedLockError<Guard<'_, T>>> {
        // SAFETY: as in `lock`.
        unsafe { Guard::lock_timeout(&self.raw, || self.data_ptr(), timeout) }
    }

    /// [`lock`](Self::lock), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`lock_timeout`](Self::lock_timeout).
    pub fn lock_until(
        &self,
        deadline: Instant,
    ) -> Result<Guard<'_, T>, TimedLockError<Guard<'_, T>>> {
        // SAFETY: as in `lock`.
        unsafe { Guard::lock_until(&self.raw, || self.data_ptr(), deadline) }
    }

    /// Whether the lock is held now, by any thread (perhaps a dead one). A snapshot.
    pub fn is_locked(&self) -> bool {
        self.raw.raw.is_locked()
    }

    /// Whether the calling thread holds the lock. (Not if the word names it but the
    /// thread holds no guard of any reentrant mutex: then it names a dead thread whose TID
    /// the calling one reused, see the module docs.)
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.is_mine()
    }

    /// The data, through exclusive access to the mutex (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.data
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.data
    }

    #[inline]
    fn data_ptr(&self) -> NonNull<T> {
        NonNull::from(&self.data)
    }
}

impl<T: Default> Default for ReentrantMutex<T> {
    fn default() -> Self {
        ReentrantMutex::new(T::default())
    }
}

impl<T> fmt::Debug for ReentrantMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutex")
            .field("raw", &self.raw.raw)
            .finish_non_exhaustive()
    }
}

#[cfg(not(loom))]
mod held {
    use core::cell::Cell;

    use crate::owner;

    thread_local! {
        /// How many reentrant-mutex guards this thread holds (nested ones too, and one
        /// being acquired: counted before the compare-exchange), in the low 32 bits; the
        /// fork generation it was counted in, in the high 32. A forked child's copy
        /// counts nothing for it (the guards it copied are its parent's).
        static HELD: Cell<u64> = const { Cell::new(0) };
    }

    /// The count, if it was kept in this process.
    #[inline]
    fn get(forks: u32) -> u32 {
        let v = HELD.with(Cell::get);
        if (v >> 32) as u32 == forks {
            v as u32
        } else {
            0
        }
    }

    #[inline]
    fn set(forks: u32, n: u32) {
        HELD.with(|c| c.set(u64::from(forks) << 32 | u64::from(n)));
    }

    /// How many guards this thread holds.
    #[inline]
    pub(super) fn count() -> u32 {
        get(owner::fork_generation())
    }

    /// Counts one more guard (before its acquisition); returns how many this thread held
    /// before. Compiler fences: a signal handler of this thread that locks the same mutex
    /// must find the count raised before the compare-exchange that takes the lock.
    #[inline]
    pub(super) fn enter() -> u32 {
        let forks = owner::fork_generation();
        let n = get(forks);
        set(forks, n.saturating_add(1));
        crate::sync::compiler_fence(crate::sync::Ordering::SeqCst);
        n
    }

    /// Counts one guard less (a failed acquisition, or a guard released).
    #[inline]
    pub(super) fn leave() {
        crate::sync::compiler_fence(crate::sync::Ordering::SeqCst);
        let forks = owner::fork_generation();
        set(forks, get(forks).saturating_sub(1));
    }
}

#[cfg(loom)]
mod held {
    use core::cell::Cell;

    loom::thread_local! {
        static HELD: Cell<u32> = Cell::new(0);
    }

    pub(super) fn count() -> u32 {
        HELD.with(Cell::get)
    }

    pub(super) fn enter() -> u32 {
        HELD.with(|c| c.replace(c.get().saturating_add(1)))
    }

    pub(super) fn leave() {
        HELD.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

impl RawReentrantMutex {
    /// Whether the calling thread holds the lock: the word names it, and it holds some
    /// reentrant-mutex guard (else the word is a dead thread's whose TID it reused).
    #[inline]
    fn is_mine(&self) -> bool {
        self.raw.is_owned_by_current_thread() && held::count() > 0
    }

    /// If the calling thread holds the lock: one more level. If the word names it but
    /// it held no reentrant-mutex guard before this acquisition (`before`): the lock
    /// taken over from the dead thread whose TID it reused (see the module docs).
    #[inline]
    fn relock(&self, before: u32) -> Option<Acquired> {
        if before == 0 {
            // A word naming its TID, whatever its stamp, is a dead owner's. `None` if the
            // word names another thread or none, or changed meanwhile: take the lock the
            // usual way.
            if !self.raw.names_my_tid() {
                return None;
            }
            return self.raw.recover_from_reused_tid().map(|a| self.fresh(a));
        }
        // Named with its own stamp: nested. (With another stamp, a dead thread's whose TID
        // it got: `RawMutex::lock` takes that over.)
        if !self.raw.is_owned_by_current_thread() {
            return None;
        }
        // Relaxed: only this thread writes `depth` while it holds the lock. Saturating, and
        // a saturated count is never decremented again (see `unlock_shared`): after an
        // overflow the count is too low, and counting down would release the lock while
        // guards (e.g. leaked ones) still give access to the data.
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d.saturating_add(1), Ordering::Relaxed);
        Some(if self.raw.mark_is_set() {
            Acquired::OwnerDied
        } else {
            Acquired::Consistent
        })
    }

    /// After a fresh acquisition of `raw` by this thread.
    #[inline]
    fn fresh(&self, a: Acquired) -> Acquired {
        // Relaxed: written only by the owner, which we now are.
        self.depth.store(0, Ordering::Relaxed);
        a
    }
}

// SAFETY: every acquisition leaves the calling thread owning `raw` (a fresh one through
// `RawMutex`, a nested one only if it already owns it), so no other thread gets a guard
// until the owner's outermost guard unlocks `raw`; guards give `&T` only, so the owner's
// several guards never give `&mut T`. A fresh acquisition synchronises with the previous
// owner's release (`RawMutex`).
unsafe impl RawLockShared for RawReentrantMutex {
    /// The stamped id of the thread that made the acquisition (a forked child's copy of a guard
    /// releases nothing, see `unlock_shared`).
    type Token = u32;

    #[inline]
    fn lock_shared(&self) -> Acquired {
        let before = held::enter();
        if let Some(a) = self.relock(before) {
            return a;
        }
        let a = self.raw.lock();
        self.fresh(a)
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<Acquired> {
        let before = held::enter();
        if let Some(a) = self.relock(before) {
            return Some(a);
        }
        let a = self.raw.try_lock().map(|a| self.fresh(a));
        if a.is_none() {
            held::leave();
        }
        a
    }

    fn lock_shared_until(&self, deadline: Instant) -> Result<Acquired, Timeout> {
        let before = held::enter();
        if let Some(a) = self.relock(before) {
            return Ok(a);
        }
        let a = self.raw.lock_until(deadline).map(|a| self.fresh(a));
        if a.is_none() {
            held::leave();
        }
        a.ok_or(Timeout)
    }

    /// The stamped id (as the lock word records it: one thread-local for both).
    #[inline]
    fn token(&self) -> u32 {
        crate::owner::current_stamped()
    }

    #[inline]
    unsafe fn unlock_shared(&self, made_by: u32) {
        if crate::owner::current_stamped() != made_by {
            // A copy in a forked child: the acquisition is its parent's. The lock word may
            // name the child by now (it took the lock itself, under guards of its own that
            // this must not count down or release).
            return;
        }
        // A copy of a guard in a forked child (or a word another process overwrote) does
        // not name the calling thread: dropping it must not count the owner's depth down,
        // or the owner's next drop would release the lock under its outer guard. Nor this
        // thread's count of guards: a forked child's count never had it (and one kept too
        // high only makes a reused TID read as this thread's own, as without the count).
        if !self.raw.is_owned_by_current_thread() {
            return;
        }
        // Relaxed: only the owning thread writes `depth` while it holds the lock.
        let d = self.depth.load(Ordering::Relaxed);
        if d == u32::MAX {
            // Saturated: the true count is unknown, so the lock stays held by this thread
            // until it exits (then the next acquirer recovers it as from a dead owner).
        } else if d > 0 {
            self.depth.store(d - 1, Ordering::Relaxed);
        } else {
            // SAFETY: this is the outermost guard of the owning thread (guards are not
            // Send), and no access to the data follows.
            unsafe { self.raw.unlock() };
        }
        held::leave();
    }

    fn mark_consistent_shared(&self, made_by: u32) {
        if crate::owner::current_stamped() != made_by {
            return;
        }
        // Applies only if the calling thread owns the lock: `RawMutex::mark_consistent`
        // checks the word names it (a guard shared with another thread, or copied into a
        // forked child, changes nothing).
        let _ = self.raw.mark_consistent();
    }
}

/// One level of a [`ReentrantMutex`] held by the calling thread: gives `&T`, unlocks one
/// level on drop. Not `Send`.
///
/// The [`SharedGuard`] of the mutex's lock: see it for
/// [`mark_consistent`](SharedGuard::mark_consistent) and [`map`](SharedGuard::map).
///
/// # Examples
///
/// ```
/// use shmstate::sync::Ordering::Relaxed;
/// use shmstate::{Counter, ReentrantMutex};
///
/// let m = ReentrantMutex::new(Counter::new());
/// let g = m.lock().unwrap();
/// g.add(3);
/// assert_eq!(g.get(), 3);
/// ```
///
/// Unlocking from another thread is a compile error, not UB (the guard is not `Send`):
///
/// ```compile_fail,E0277
/// let m = shmstate::ReentrantMutex::new(shmstate::Counter::new());
/// let g = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// ```
pub type ReentrantMutexGuard<'a, T> = SharedGuard<'a, RawReentrantMutex, T>;

/// A [`ReentrantMutexGuard`] narrowed by [`map`](SharedGuard::map) to a part of the data.
pub type MappedReentrantMutexGuard<'a, T> = SharedGuard<'a, RawReentrantMutex, T, true>;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Value, owner};

    /// The word names this thread, at a depth, while the thread holds no guard:
    /// as a thread that got a dead owner's TID finds it. Each way of locking takes it
    /// over (`OwnerDied`, depth reset), and the last guard releases it.
    #[test]
    fn a_word_naming_a_thread_that_holds_none_is_a_dead_owners() {
        // The dead owner's stamp is this thread's own (1 in 255), or another.
        for word in [owner::current_stamped(), other_stamp()] {
            a_word_naming_a_thread_that_holds_none_is_a_dead_owners_with(word);
        }
    }

    /// This thread's TID with a stamp other than its own: a dead thread's word whose TID
    /// this thread got.
    fn other_stamp() -> u32 {
        owner::current_stamped() ^ 1 << owner::STAMP_SHIFT
    }

    fn a_word_naming_a_thread_that_holds_none_is_a_dead_owners_with(word: u32) {
        let m = ReentrantMutex::new(Value::new(0u8));
        let stale = || {
            m.raw.raw.word().store(word, Ordering::Relaxed);
            m.raw.depth.store(3, Ordering::Relaxed);
            assert!(!m.is_owned_by_current_thread());
        };
        let check = |g: ReentrantMutexGuard<'_, Value<u8>>| {
            assert!(m.is_owned_by_current_thread());
            assert_eq!(m.raw.depth.load(Ordering::Relaxed), 0);
            g.mark_consistent();
            drop(g);
            assert!(!m.is_locked(), "released by the last guard");
        };
        stale();
        check(m.lock().expect_err("a dead owner's").into_inner());
        stale();
        match m.try_lock() {
            Err(TryLockError::OwnerDied(od)) => check(od.into_inner()),
            _ => panic!("try_lock entered a dead owner's lock"),
        }
        stale();
        match m.lock_timeout(Duration::from_secs(1)) {
            Err(TimedLockError::OwnerDied(od)) => check(od.into_inner()),
            _ => panic!("lock_timeout entered a dead owner's lock"),
        }
        // A real nested lock still nests.
        let outer = m.lock().unwrap();
        let inner = m.lock().unwrap();
        assert_eq!(m.raw.depth.load(Ordering::Relaxed), 1);
        drop(inner);
        drop(outer);
        assert!(!m.is_locked());
    }

    /// A thread that holds a guard takes over a lock whose word names its TID with another
    /// stamp (a dead thread's): its own words carry its own stamp. No probe is needed.
    #[test]
    fn a_thread_holding_a_guard_takes_over_a_dead_owners_word_with_another_stamp() {
        let a = ReentrantMutex::new(Value::new(0u8));
        let x = ReentrantMutex::new(Value::new(0u8));
        let ga = a.lock().unwrap();
        x.raw.raw.word().store(other_stamp(), Ordering::Relaxed);
        x.raw.depth.store(3, Ordering::Relaxed);
        let g = x.lock().expect_err("a dead owner's").into_inner();
        assert!(x.is_owned_by_current_thread());
        assert_eq!(x.raw.depth.load(Ordering::Relaxed), 0);
        drop(g);
        assert!(!x.is_locked(), "released by its guard");
        drop(ga);
    }

    /// A thread that holds any guard never takes over a lock whose word names it: here a
    /// dead owner's word that it entered (the documented limit) while it held another
    /// mutex. Once that other guard is gone, its guard of the entered lock still counts,
    /// so locking again nests instead of resetting the depth under that guard.
    #[test]
    fn a_thread_holding_a_guard_never_takes_over_a_lock_naming_it() {
        let a = ReentrantMutex::new(Value::new(0u8));
        let x = ReentrantMutex::new(Value::new(0u8));
        let ga = a.lock().unwrap();
        // The dead owner's stamp is this thread's own (a 1-in-255 chance): only then
        // does it look like a nested lock.
        x.raw
            .raw
            .word()
            .store(owner::current_stamped(), Ordering::Relaxed);
        let g1 = x.lock().expect("entered, as a nested lock (the limit)");
        drop(ga);
        let g2 = x.lock().expect("nested again, not taken over under g1");
        assert_eq!(x.raw.depth.load(Ordering::Relaxed), 2);
        drop(g2);
        assert!(x.is_owned_by_current_thread(), "g1 still holds it");
        std::thread::scope(|s| {
            s.spawn(|| assert!(x.try_lock().is_err()));
        });
        drop(g1);
    }

    #[test]
    fn a_saturated_depth_keeps_the_lock_held() {
        let m = ReentrantMutex::new(Value::new(0u8));
        let outer = m.lock().unwrap();
        // As if 2^32 - 1 nested guards had been leaked (e.g. with `mem::forget`): one
        // leaked for real (this thread's count of guards keeps it), the rest in the depth.
        core::mem::forget(m.lock().unwrap());
        m.raw.depth.store(u32::MAX, Ordering::Relaxed);
        let inner = m.lock().unwrap(); // overflows: the count is lost
        drop(inner);
        drop(outer);
        // Counting down from a lost count could reach zero while a leaked guard lives.
        assert_eq!(m.raw.depth.load(Ordering::Relaxed), u32::MAX);
        assert!(m.is_owned_by_current_thread());
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_err()));
        });
    }
}
