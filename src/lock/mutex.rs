//! [`Mutex<T>`]: a robust mutex around plain-old-data, placeable in shared memory.

use core::fmt;
use core::ptr::NonNull;
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::owner_died::{LockResult, TimedLockError, TryLockError};
use super::raw_mutex::RawMutex;
use super::typed::{Acquisition, ExclusiveGuard};
use crate::shared::{Element, Kind, SharedSized, TypeTag};
use crate::sync::UnsafeCell;

/// A mutual-exclusion lock protecting a `T`, shared by threads and processes, that
/// survives its owner's death.
///
/// It works like `std::sync::Mutex`, with two differences:
/// - If the holder dies (its process is killed, or its thread exits without unlocking),
///   the next `lock()` returns [`Err(OwnerDied)`](crate::OwnerDied) carrying the guard, in
///   bounded time. Repair the data, then call [`MutexGuard::mark_consistent`](ExclusiveGuard::mark_consistent). If you
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
    /// [`OwnerDied`](crate::OwnerDied) (holding the guard: the lock *is* acquired) if the
    /// previous owner died holding the lock, or if no owner marked the data consistent
    /// since one did.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        // SAFETY: `raw` protects `data`, which lives as long as `self`.
        unsafe { MutexGuard::lock(&self.raw, || self.data_ptr()) }
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
        // SAFETY: as in `lock`.
        unsafe { MutexGuard::try_lock(&self.raw, || self.data_ptr()) }
    }

    /// [`lock`](Self::lock), giving up after `timeout` (a `timeout` too large to represent
    /// as a deadline never passes).
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if the lock was not acquired (then at least `timeout`
    /// has passed); [`TimedLockError::OwnerDied`] as for [`lock`](Self::lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, TimedLockError<MutexGuard<'_, T>>> {
        // SAFETY: as in `lock`.
        unsafe { MutexGuard::lock_timeout(&self.raw, || self.data_ptr(), timeout) }
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
        // SAFETY: as in `lock`.
        unsafe { MutexGuard::lock_until(&self.raw, || self.data_ptr(), deadline) }
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

    /// A pointer to the data, for a guard of the calling thread, which holds the lock.
    #[inline]
    fn data_ptr(&self) -> NonNull<T> {
        // SAFETY: a cell's pointer is never null. (`with_mut`: under loom this records
        // the holder's access, made once the lock is held.)
        self.data.with_mut(|p| unsafe { NonNull::new_unchecked(p) })
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
/// The [`ExclusiveGuard`] of the mutex's [`RawMutex`]: see it for
/// [`mark_consistent`](ExclusiveGuard::mark_consistent) and [`map`](ExclusiveGuard::map)
/// (to a [`MappedMutexGuard`] of a part). Not `Send`: the lock word names the locking
/// thread.
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
pub type MutexGuard<'a, T> = ExclusiveGuard<'a, RawMutex, T>;

/// A [`MutexGuard`] narrowed by [`map`](ExclusiveGuard::map) to a part of the data. A
/// [`Condvar`](crate::Condvar) does not take one: see [`map`](ExclusiveGuard::map).
pub type MappedMutexGuard<'a, T> = ExclusiveGuard<'a, RawMutex, T, true>;
