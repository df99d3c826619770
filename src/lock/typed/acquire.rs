//! The raw-lock traits ([`RawLock`], [`RawLockShared`]) and [`Acquisition`]: the four
//! acquisition forms of every lock (blocking, `try_`, until a deadline, for a timeout) and
//! the mapping of an acquisition's outcome to `LockResult` / `TryLockError` /
//! `TimedLockError`, written once for both guard kinds.
//!
//! # Crash windows
//!
//! None of its own (no state in shared memory): see the raw locks' tables.

use core::ptr::NonNull;
use core::time::Duration;
use std::time::Instant;

use super::{ExclusiveGuard, SharedGuard};
use crate::lock::owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
use crate::lock::raw_mutex::{Acquired, RawMutex};
use crate::wait::Timeout;

/// A raw lock whose every acquisition excludes every other acquisition of the lock.
///
/// Crate-private (it lives in a private module): the typed locks are the public face.
///
/// # Safety
///
/// After `lock`, after `try_lock` returned `Some` and after `lock_until` returned `Ok`, the
/// calling thread holds the lock, and no other acquisition of it (exclusive or shared, by
/// any thread or process) succeeds until this thread calls `unlock` (or dies: then the next
/// acquisition reports [`Acquired::OwnerDied`] when the protected data may be half-updated).
/// Every successful acquisition synchronises with (happens after) the release before it.
pub unsafe trait RawLock {
    /// Blocks until the calling thread holds the lock (recovering it from a dead owner).
    fn lock(&self) -> Acquired;
    /// Takes the lock if it is free, without waiting for a live holder.
    fn try_lock(&self) -> Option<Acquired>;
    /// [`lock`](Self::lock), giving up at `deadline`.
    fn lock_until(&self, deadline: Instant) -> Result<Acquired, Timeout>;
    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock (acquired on this thread, not released since),
    /// and nothing uses the data it protects after this call.
    unsafe fn unlock(&self);
    /// Clears the owner-died mark; called only while the calling thread holds the lock.
    fn mark_consistent(&self);
}

/// A raw lock whose acquisitions may coexist (each gives shared access only), and exclude
/// every exclusive one.
///
/// # Safety
///
/// After `lock_shared`, after `try_lock_shared` returned `Some` and after
/// `lock_shared_until` returned `Ok`, the calling thread holds one shared acquisition;
/// while any shared acquisition is held, no exclusive one (and no `&mut` to the data)
/// exists, until `unlock_shared` releases it with the token [`token`](Self::token) gave
/// right after the acquisition. Every acquisition synchronises with the exclusive release
/// before it.
pub unsafe trait RawLockShared {
    /// What a guard keeps to release its acquisition (for a read lock, the reader's TID).
    type Token: Copy;
    /// Blocks until the calling thread holds a shared acquisition.
    fn lock_shared(&self) -> Acquired;
    /// Takes a shared acquisition if no exclusive holder is in the way, without waiting.
    fn try_lock_shared(&self) -> Option<Acquired>;
    /// [`lock_shared`](Self::lock_shared), giving up at `deadline`.
    fn lock_shared_until(&self, deadline: Instant) -> Result<Acquired, Timeout>;
    /// The token of an acquisition the calling thread has just made.
    fn token(&self) -> Self::Token;
    /// Releases one shared acquisition.
    ///
    /// # Safety
    ///
    /// `token` is the token of a shared acquisition the calling thread made and has not
    /// released; nothing uses the protected data through it after this call.
    unsafe fn unlock_shared(&self, token: Self::Token);
    /// Clears the owner-died mark if the lock's protocol lets a shared holder do so, and
    /// `token` names a shared acquisition the calling thread holds (a guard copied into a
    /// forked child, or used from another thread, changes nothing).
    fn mark_consistent_shared(&self, token: Self::Token);
}

// SAFETY: `RawMutex::lock`, `try_lock` (`Some`) and `lock_until` (`Some`) leave the calling
// thread's TID in the word, which excludes every other acquisition until `unlock` clears it
// (or the owner dies: then the taker gets `Acquired::OwnerDied`); each acquisition is an
// Acquire compare-exchange that pairs with the previous owner's Release unlock.
unsafe impl RawLock for RawMutex {
    #[inline]
    fn lock(&self) -> Acquired {
        RawMutex::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<Acquired> {
        RawMutex::try_lock(self)
    }

    #[inline]
    fn lock_until(&self, deadline: Instant) -> Result<Acquired, Timeout> {
        RawMutex::lock_until(self, deadline).ok_or(Timeout)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded: the caller holds the lock and stops using the data.
        unsafe { RawMutex::unlock(self) }
    }

    fn mark_consistent(&self) {
        // The caller holds the lock, so this always applies.
        let _ = RawMutex::mark_consistent(self);
    }
}

/// The deadline `timeout` from now; `None` if it cannot be represented (then the caller
/// waits without a deadline: such a timeout never passes).
#[inline]
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A guard `g` for an acquisition that went as `a`.
#[inline]
pub(crate) fn lock_result<G>(a: Acquired, g: G) -> LockResult<G> {
    match a {
        Acquired::Consistent => Ok(g),
        Acquired::OwnerDied => Err(OwnerDied::new(g)),
    }
}

/// A `try_` acquisition: `None` is [`TryLockError::WouldBlock`]; `g` makes the guard.
#[inline]
pub(crate) fn try_result<G>(
    a: Option<Acquired>,
    g: impl FnOnce() -> G,
) -> Result<G, TryLockError<G>> {
    match a {
        Some(a) => Ok(lock_result(a, g())?),
        None => Err(TryLockError::WouldBlock),
    }
}

/// A timed acquisition; `g` makes the guard.
#[inline]
pub(crate) fn timed_result<G>(
    a: Result<Acquired, Timeout>,
    g: impl FnOnce() -> G,
) -> Result<G, TimedLockError<G>> {
    Ok(lock_result(a?, g())?)
}

/// One way for a guard to acquire its lock: exclusively for [`ExclusiveGuard`], shared for
/// [`SharedGuard`]. The four acquisition forms every lock offers (blocking, `try_`, until a
/// deadline, for a timeout) are written once, over this.
pub(crate) trait Acquisition<'a>: Sized {
    /// The raw lock.
    type Raw: 'a;
    /// The protected data.
    type Data: ?Sized + 'a;

    /// Blocks until the calling thread holds an acquisition.
    fn acquire(raw: &Self::Raw) -> Acquired;
    /// Takes an acquisition without waiting (`None`: busy).
    fn try_acquire(raw: &Self::Raw) -> Option<Acquired>;
    /// [`acquire`](Self::acquire), giving up at `deadline`.
    fn acquire_until(raw: &Self::Raw, deadline: Instant) -> Result<Acquired, Timeout>;

    /// The guard for an acquisition the calling thread has just made.
    ///
    /// # Safety
    ///
    /// The calling thread holds that acquisition of `raw` (not yet released, owned by
    /// nothing else), and `data` points to a `Data` that `raw` protects, valid for `'a`.
    unsafe fn guard(raw: &'a Self::Raw, data: NonNull<Self::Data>) -> Self;

    /// Blocks until the calling thread holds `raw`; then `data()` is the protected data.
    ///
    /// # Safety
    ///
    /// `raw` protects the `Data` that `data` returns (called once the lock is held, so that
    /// a loom-checked cell records the access inside the critical section), which is valid
    /// for `'a`.
    #[inline]
    unsafe fn lock(
        raw: &'a Self::Raw,
        data: impl FnOnce() -> NonNull<Self::Data>,
    ) -> LockResult<Self> {
        let a = Self::acquire(raw);
        // SAFETY: we hold the acquisition; the caller vouches for `data`.
        lock_result(a, unsafe { Self::guard(raw, data()) })
    }

    /// [`lock`](Self::lock) without waiting.
    ///
    /// # Safety
    ///
    /// As for [`lock`](Self::lock).
    #[inline]
    unsafe fn try_lock(
        raw: &'a Self::Raw,
        data: impl FnOnce() -> NonNull<Self::Data>,
    ) -> Result<Self, TryLockError<Self>> {
        // SAFETY: the closure runs only after a successful acquisition; as in `lock`.
        try_result(Self::try_acquire(raw), || unsafe {
            Self::guard(raw, data())
        })
    }

    /// [`lock`](Self::lock) giving up at `deadline`.
    ///
    /// # Safety
    ///
    /// As for [`lock`](Self::lock).
    unsafe fn lock_until(
        raw: &'a Self::Raw,
        data: impl FnOnce() -> NonNull<Self::Data>,
        deadline: Instant,
    ) -> Result<Self, TimedLockError<Self>> {
        // SAFETY: as in `try_lock`.
        timed_result(Self::acquire_until(raw, deadline), || unsafe {
            Self::guard(raw, data())
        })
    }

    /// [`lock`](Self::lock) giving up after `timeout` (one too large to represent as a
    /// deadline never passes).
    ///
    /// # Safety
    ///
    /// As for [`lock`](Self::lock).
    unsafe fn lock_timeout(
        raw: &'a Self::Raw,
        data: impl FnOnce() -> NonNull<Self::Data>,
        timeout: Duration,
    ) -> Result<Self, TimedLockError<Self>> {
        match deadline_after(timeout) {
            // SAFETY: forwarded from the caller.
            Some(deadline) => unsafe { Self::lock_until(raw, data, deadline) },
            // SAFETY: forwarded from the caller.
            None => Ok(unsafe { Self::lock(raw, data) }?),
        }
    }
}

impl<'a, R: RawLock + 'a, T: ?Sized + 'a> Acquisition<'a> for ExclusiveGuard<'a, R, T> {
    type Raw = R;
    type Data = T;

    #[inline]
    fn acquire(raw: &R) -> Acquired {
        raw.lock()
    }

    #[inline]
    fn try_acquire(raw: &R) -> Option<Acquired> {
        raw.try_lock()
    }

    #[inline]
    fn acquire_until(raw: &R, deadline: Instant) -> Result<Acquired, Timeout> {
        raw.lock_until(deadline)
    }

    #[inline]
    unsafe fn guard(raw: &'a R, data: NonNull<T>) -> Self {
        // SAFETY: forwarded: an exclusive acquisition of `raw` protecting `data`.
        unsafe { Self::new(raw, data) }
    }
}

impl<'a, R: RawLockShared + 'a, T: ?Sized + 'a> Acquisition<'a> for SharedGuard<'a, R, T> {
    type Raw = R;
    type Data = T;

    #[inline]
    fn acquire(raw: &R) -> Acquired {
        raw.lock_shared()
    }

    #[inline]
    fn try_acquire(raw: &R) -> Option<Acquired> {
        raw.try_lock_shared()
    }

    #[inline]
    fn acquire_until(raw: &R, deadline: Instant) -> Result<Acquired, Timeout> {
        raw.lock_shared_until(deadline)
    }

    #[inline]
    unsafe fn guard(raw: &'a R, data: NonNull<T>) -> Self {
        // SAFETY: forwarded: a shared acquisition of `raw` protecting `data`.
        unsafe { Self::new(raw, data) }
    }
}
