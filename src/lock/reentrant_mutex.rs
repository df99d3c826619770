//! [`ReentrantMutex<T>`]: a robust mutex the owning thread may lock again (Python's
//! `RLock`).
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

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
use super::raw_mutex::{Acquired, RawMutex};
use crate::shared::{Element, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, UnsafeCell};

/// A mutex that the thread holding it may lock again; it is released when every guard is
/// dropped. Shared by threads and processes, robust against its owner's death like
/// [`Mutex`](crate::Mutex).
///
/// Because several guards of one thread may be alive at once, a guard cannot hand out
/// `&mut T` (nor `&T`, which a nested guard's write would invalidate). It gives
/// `Cell`-like access instead: [`get`](ReentrantMutexGuard::get) copies the value out,
/// [`set`](ReentrantMutexGuard::set) copies one in. `T: Pod` is `Copy`, so this is cheap
/// for small `T`.
///
/// Guards are not `Send`, so only the owning thread can unlock; there is no raw unlock.
/// A guard copied into a forked child does nothing when dropped there (the lock word names
/// the parent's thread), so the parent keeps the lock at its full depth.
/// The nesting depth is a `u32`: a thread that holds 2^32 − 1 nested guards at once (only
/// leaking guards gets there) keeps the lock until it exits, since its count is lost.
///
/// Layout: `#[repr(C)]`: the lock word, the recursion count (written only by the owner),
/// then `T`. All-zero is unlocked, holding `T::zeroed()`.
///
/// # Examples
///
/// ```
/// use shmstate::ReentrantMutex;
///
/// let m = ReentrantMutex::new(1u32);
/// let outer = m.lock().unwrap();
/// let inner = m.lock().unwrap(); // same thread: no deadlock
/// inner.set(inner.get() + 1);
/// drop(inner);
/// assert_eq!(outer.get(), 2);
/// ```
#[repr(C)]
pub struct ReentrantMutex<T> {
    raw: RawMutex,
    /// How many guards beyond the first the owner holds. Written only by the owning thread
    /// while it holds `raw`; reset to 0 by every fresh acquisition (a dead owner's count is
    /// meaningless).
    depth: AtomicU32,
    data: UnsafeCell<T>,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(ReentrantMutex<u64>, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(ReentrantMutex<u64>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(ReentrantMutex<u32>, [u32; 3]);
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(ReentrantMutex<u64>, raw) == 0);

// SAFETY: the data is reached only by the thread holding `raw` (guards are not Send), one
// thread at a time; values are copied in and out, so T: Send suffices.
unsafe impl<T: Pod + Send> Sync for ReentrantMutex<T> {}

// SAFETY: 1. all-zero: unlocked, depth 0, `T::zeroed()`. 2. any lock word is valid
// (garbage reads as a dead owner), any depth is valid (a fresh owner resets it; a hostile
// depth can only make the owner release late or early), `T` is Pod, padding never read.
// 3. two `u32`s and a Pod. 4. `#[repr(C)]`, asserted above for sample `T`s. 5. `Sync`
// above; `&self` methods are lock operations.
unsafe impl<T: Element + Send> SharedSized for ReentrantMutex<T> {
    const TAG: TypeTag = TypeTag::new(Kind::REENTRANT_MUTEX, T::ELEM);
}

type Guard<'a, T> = ReentrantMutexGuard<'a, T>;

impl<T: Pod> ReentrantMutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            raw: RawMutex::new(),
            depth: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until the calling thread holds the lock; returns at once if it already does.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) if the previous owner died holding the lock and no
    /// owner has marked it consistent since (also on a nested lock while still unmarked).
    pub fn lock(&self) -> LockResult<Guard<'_, T>> {
        if let Some(r) = self.relock() {
            return r;
        }
        let a = self.raw.lock();
        self.fresh(a)
    }

    /// Takes the lock if it is free or already held by the calling thread, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread holds it; `OwnerDied` as for
    /// [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<Guard<'_, T>, TryLockError<Guard<'_, T>>> {
        if let Some(r) = self.relock() {
            return Ok(r?);
        }
        match self.raw.try_lock() {
            Some(a) => Ok(self.fresh(a)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// [`lock`](Self::lock), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] (after at least `timeout`); `OwnerDied` as for
    /// [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Guard<'_, T>, TimedLockError<Guard<'_, T>>> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.lock_until(d),
            None => Ok(self.lock()?),
        }
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
        if let Some(r) = self.relock() {
            return Ok(r?);
        }
        match self.raw.lock_until(deadline) {
            Some(a) => Ok(self.fresh(a)?),
            None => Err(TimedLockError::Timeout),
        }
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.is_owned_by_current_thread()
    }

    /// If the calling thread holds the lock: one more level.
    fn relock(&self) -> Option<LockResult<Guard<'_, T>>> {
        if !self.raw.is_owned_by_current_thread() {
            return None;
        }
        // Relaxed: only this thread writes `depth` while it holds the lock. Saturating, and
        // a saturated count is never decremented again (see `Drop`): after an overflow the
        // count is too low, and counting down would release the lock while guards (e.g.
        // leaked ones) still give access to the data.
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d.saturating_add(1), Ordering::Relaxed);
        let g = self.new_guard();
        Some(if self.raw.mark_is_set() {
            Err(OwnerDied::new(g))
        } else {
            Ok(g)
        })
    }

    /// After a fresh acquisition of `raw` by this thread.
    fn fresh(&self, a: Acquired) -> LockResult<Guard<'_, T>> {
        // Relaxed: written only by the owner, which we now are.
        self.depth.store(0, Ordering::Relaxed);
        let g = self.new_guard();
        match a {
            Acquired::Consistent => Ok(g),
            Acquired::OwnerDied => Err(OwnerDied::new(g)),
        }
    }

    fn new_guard(&self) -> Guard<'_, T> {
        ReentrantMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }
}

impl<T> fmt::Debug for ReentrantMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutex")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// One level of a [`ReentrantMutex`] held by the calling thread. `Cell`-like access to
/// the data; unlocks one level on drop. Not `Send`.
///
/// # Examples
///
/// ```
/// let m = shmstate::ReentrantMutex::new([0u8; 4]);
/// let g = m.lock().unwrap();
/// g.update(|a| a[3] = 9);
/// assert_eq!(g.get(), [0, 0, 0, 9]);
/// ```
///
/// Unlocking from another thread is a compile error, not UB (the guard is not `Send`):
///
/// ```compile_fail,E0277
/// let m = shmstate::ReentrantMutex::new(0u8);
/// let g = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct ReentrantMutexGuard<'a, T: Pod> {
    mutex: &'a ReentrantMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> ReentrantMutexGuard<'_, T> {
    /// A copy of the data.
    pub fn get(&self) -> T {
        // SAFETY: only this thread (the owner) accesses the cell while it holds the lock,
        // and no reference into it outlives a `get`/`set`/`update` call.
        self.mutex.data.with(|p| unsafe { *p })
    }

    /// Replaces the data with `value`.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        self.mutex.data.with_mut(|p| unsafe { *p = value });
    }

    /// Copies the data out, applies `f` to the copy, and stores it back. (`f` works on a
    /// copy, so a nested guard used inside `f` does not alias it; its writes are
    /// overwritten.)
    pub fn update(&self, f: impl FnOnce(&mut T)) {
        let mut v = self.get();
        f(&mut v);
        self.set(v);
    }

    /// Marks the data consistent after an [`OwnerDied`]; see
    /// [`MutexGuard::mark_consistent`](crate::MutexGuard::mark_consistent).
    pub fn mark_consistent(&self) {
        // The guard proves this thread holds the lock, so this always applies.
        let _ = self.mutex.raw.mark_consistent();
    }
}

impl<T: Pod> Drop for ReentrantMutexGuard<'_, T> {
    fn drop(&mut self) {
        // A copy of a guard in a forked child (or a word another process overwrote) does
        // not name the calling thread: dropping it must not count the owner's depth down,
        // or the owner's next drop would release the lock under its outer guard.
        if !self.mutex.raw.is_owned_by_current_thread() {
            return;
        }
        // Relaxed: only the owning thread writes `depth` while it holds the lock.
        let d = self.mutex.depth.load(Ordering::Relaxed);
        if d == u32::MAX {
            // Saturated: the true count is unknown, so the lock stays held by this thread
            // until it exits (then the next acquirer recovers it as from a dead owner).
        } else if d > 0 {
            self.mutex.depth.store(d - 1, Ordering::Relaxed);
        } else {
            // SAFETY: this is the outermost guard of the owning thread (guards are not
            // Send), and no access to the data follows.
            unsafe { self.mutex.raw.unlock() };
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ReentrantMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_saturated_depth_keeps_the_lock_held() {
        let m = ReentrantMutex::new(0u8);
        let outer = m.lock().unwrap();
        // As if 2^32 - 1 nested guards had been leaked (e.g. with `mem::forget`).
        m.depth.store(u32::MAX, Ordering::Relaxed);
        let inner = m.lock().unwrap(); // overflows: the count is lost
        drop(inner);
        drop(outer);
        // Counting down from a lost count could reach zero while a leaked guard lives.
        assert_eq!(m.depth.load(Ordering::Relaxed), u32::MAX);
        assert!(m.is_owned_by_current_thread());
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().is_err()));
        });
    }
}
