//! [`Mutex<T>`]: a robust mutex around plain-old-data, placeable in shared memory.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
use super::raw_mutex::{Acquired, RawMutex};
use crate::shared::{Element, Kind, SharedSized, TypeTag};
use crate::sync::UnsafeCell;

/// A mutual-exclusion lock protecting a `T`, shared by threads and processes, that
/// survives its owner's death.
///
/// It works like `std::sync::Mutex`, with two differences:
/// - If the holder dies (its process is killed, or its thread exits without unlocking),
///   the next `lock()` returns [`Err(OwnerDied)`](OwnerDied) carrying the guard, in
///   bounded time. Repair the data, then call [`MutexGuard::mark_consistent`]. If you
///   unlock without marking, the next acquirer gets `OwnerDied` again.
/// - `T` is [`bytemuck::Pod`]: the data lives next to the lock word in shared memory, and
///   every bit pattern a dead or hostile peer may leave there is a valid `T`.
///
/// A panic while holding the guard unwinds, drops the guard and unlocks normally (there is
/// no poisoning). See [`raw_mutex`](crate::lock::raw_mutex) for the mechanism and limits.
///
/// Layout: `#[repr(C)]`, the lock word at offset 0, then `T` (with the padding `T`'s
/// alignment requires; padding bytes are never read). All-zero bytes are an unlocked
/// mutex holding `T::zeroed()`.
///
/// # Examples
///
/// ```
/// use shmstate::Mutex;
///
/// let m = Mutex::new(0u64);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..1000 {
///                 *m.lock().unwrap() += 1;
///             }
///         });
///     }
/// });
/// assert_eq!(*m.lock().unwrap(), 4000);
/// ```
#[repr(C)]
pub struct Mutex<T> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Mutex<u64>, [u64; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Mutex<u64>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(Mutex<u8>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(Mutex<[u32; 3]>, [u32; 4]);
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(Mutex<u64>, raw) == 0);

// SAFETY: the data is only reached through a guard, and a guard exists only while its
// thread holds the lock, so at most one thread accesses `T` at a time (T: Send).
unsafe impl<T: Pod + Send> Sync for Mutex<T> {}

// SAFETY: 1. all-zero is an unlocked `RawMutex` and a `T::zeroed()` (Pod: Zeroable).
// 2. every bit pattern: any lock word is valid (garbage reads as a dead owner) and `T` is
// Pod; the only other bytes are padding, never read. 3. no pointers: a `u32` and a Pod.
// 4. `#[repr(C)]`, asserted above for sample `T`s; the tag records `T`'s identity.
// 5. `Sync` above; every `&self` method is a lock operation.
unsafe impl<T: Element + Send> SharedSized for Mutex<T> {
    const TAG: TypeTag = TypeTag::new(Kind::MUTEX, T::ELEM);
}

impl<T: Pod> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Blocks until the calling thread holds the lock.
    ///
    /// Locking a mutex the calling thread already holds deadlocks.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard: the lock *is* acquired) if the previous owner
    /// died holding the lock, or if no owner marked the data consistent since one did.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let a = self.raw.lock();
        self.guard(a)
    }

    /// Takes the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held (also by a dead thread: `try_lock` does
    /// not probe; `lock` and `lock_timeout` recover dead owners);
    /// [`TryLockError::OwnerDied`] as for [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        match self.raw.try_lock() {
            Some(a) => Ok(self.guard(a)?),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// [`lock`](Self::lock), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if the lock was not acquired (then at least `timeout`
    /// has passed); [`TimedLockError::OwnerDied`] as for [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, TimedLockError<MutexGuard<'_, T>>> {
        match self.raw.lock_timeout(timeout) {
            Some(a) => Ok(self.guard(a)?),
            None => Err(TimedLockError::Timeout),
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
    ) -> Result<MutexGuard<'_, T>, TimedLockError<MutexGuard<'_, T>>> {
        match self.raw.lock_until(deadline) {
            Some(a) => Ok(self.guard(a)?),
            None => Err(TimedLockError::Timeout),
        }
    }

    /// Whether the lock is held now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The data, through exclusive access to the mutex (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` excludes every other access to the cell.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        // SAFETY: we own the mutex; `T: Copy`, so reading it leaves nothing to drop twice.
        self.data.with(|p| unsafe { *p })
    }

    /// The raw lock (for the condition variable and for diagnostics).
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }

    /// Wraps an acquisition of `self.raw` by the calling thread in a guard.
    #[inline]
    pub(crate) fn guard(&self, a: Acquired) -> LockResult<MutexGuard<'_, T>> {
        let g = MutexGuard {
            mutex: self,
            _not_send: PhantomData,
        };
        match a {
            Acquired::Consistent => Ok(g),
            Acquired::OwnerDied => Err(OwnerDied::new(g)),
        }
    }
}

impl<T: Pod> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::zeroed())
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

/// Proof that the calling thread holds a [`Mutex`]: gives `&T`/`&mut T`, unlocks on drop.
///
/// Not `Send`: the lock word names the locking thread, and unlocking or outliving it from
/// another thread would let others take the lock while this guard still gives access.
///
/// # Examples
///
/// ```
/// use shmstate::Mutex;
///
/// let m = Mutex::new([0u32; 2]);
/// let mut g = m.lock().unwrap();
/// g[0] = 7;
/// drop(g);
/// assert_eq!(m.lock().unwrap()[0], 7);
/// ```
///
/// Moving it to another thread (to unlock there) does not compile:
///
/// ```compile_fail,E0277
/// let m = shmstate::Mutex::new(0u8);
/// let g = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct MutexGuard<'a, T: Pod> {
    pub(crate) mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&MutexGuard` only gives `&T`, which is fine to share when `T: Sync`.
unsafe impl<T: Pod + Sync> Sync for MutexGuard<'_, T> {}

impl<T: Pod> MutexGuard<'_, T> {
    /// Marks the data consistent again after an [`OwnerDied`]: later acquirers get a
    /// plain guard. Without this call, `OwnerDied` persists for every later acquirer.
    /// Does nothing on a lock that was not marked.
    pub fn mark_consistent(&mut self) {
        // The guard proves this thread holds the lock, so this always applies.
        let _ = self.mutex.raw.mark_consistent();
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves exclusive ownership of the lock, so no other thread
        // accesses the cell until it is dropped; the reference lives no longer than `self`.
        self.mutex.data.with(|p| unsafe { &*p })
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        self.mutex.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock, it is not Send,
        // and the data is not touched after this.
        unsafe { self.mutex.raw.unlock() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
