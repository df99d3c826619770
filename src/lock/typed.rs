//! The typed-lock layer: one interface over the raw locks, one pair of guards, and one
//! mapping from how a raw lock was acquired to the typed results of the locks.
//!
//! Every typed lock ([`Mutex`](crate::Mutex), [`RwLock`](crate::RwLock),
//! [`ReentrantMutex`](crate::ReentrantMutex)) is a raw lock next to its data. The raw locks
//! implement one of two crate-private traits:
//!
//! - `RawLock`: acquisitions that exclude every other one ([`RawMutex`], the write side
//!   of [`RawRwLock`](crate::RawRwLock)). Their guard is an [`ExclusiveGuard`]: `&mut T`.
//! - `RawLockShared`: acquisitions that may coexist (the read side of `RawRwLock`; the
//!   nested acquisitions of one thread on a `ReentrantMutex`). Their guard is a
//!   [`SharedGuard`]: `&T` only.
//!
//! Both report an acquisition as [`Acquired`], and this module turns that into
//! [`LockResult`], [`TryLockError`] or [`TimedLockError`] once for all locks; a `*_timeout(d)`
//! is `*_until(now + d)` everywhere, with a `d` too large to represent as an [`Instant`]
//! meaning "no deadline" (the untimed call).
//!
//! The public guard names are aliases: [`MutexGuard`](crate::MutexGuard) and
//! [`RwLockWriteGuard`](crate::RwLockWriteGuard) are `ExclusiveGuard`s,
//! [`RwLockReadGuard`](crate::RwLockReadGuard) and
//! [`ReentrantMutexGuard`](crate::ReentrantMutexGuard) are `SharedGuard`s. A mapped guard
//! (`MutexGuard::map`, ...) is the same guard over a part of the data, with `MAPPED` set:
//! [`MappedMutexGuard`](crate::lock::MappedMutexGuard) and the like.
//!
//! # Crash windows
//!
//! None of its own: the layer holds no state in shared memory. A guard's acquisition and
//! release are the raw lock's protocol, whose steps and repairs are the tables of
//! [`raw_mutex`](crate::lock::raw_mutex), [`rwlock`](crate::lock::rwlock) and
//! `reentrant_mutex`.

use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::owner;

// The raw-lock traits, the acquisition forms written once over them, and the mapping of an
// acquisition's outcome to the typed results: a child module, so that it builds guards
// through their private constructors.
mod acquire;
pub(crate) use acquire::{Acquisition, deadline_after};
pub use acquire::{RawLock, RawLockShared};

/// An exclusive acquisition of a lock: gives `&T` and `&mut T`, releases on drop.
///
/// [`MutexGuard<'a, T>`](crate::MutexGuard) and
/// [`RwLockWriteGuard<'a, T>`](crate::RwLockWriteGuard) are this guard over
/// [`RawMutex`](crate::RawMutex) and over [`RawRwLock`](crate::RawRwLock)'s write side. [`map`](Self::map)
/// narrows it to a part of the data: the same guard with `MAPPED` set
/// ([`MappedMutexGuard`](crate::lock::MappedMutexGuard),
/// [`MappedRwLockWriteGuard`](crate::lock::MappedRwLockWriteGuard)).
///
/// Not `Send`: the lock word names the locking thread, and unlocking from (or outliving
/// it on) another thread would let others take the lock while this guard still gives
/// access.
///
/// # Examples
///
/// ```
/// use shmstate::{Mutex, MutexGuard};
///
/// let m = Mutex::new([1u32, 2]);
/// let mut second = MutexGuard::map(m.lock().unwrap(), |a| &mut a[1]);
/// *second += 40;
/// drop(second);
/// assert_eq!(*m.lock().unwrap(), [1, 42]);
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
pub struct ExclusiveGuard<'a, R: RawLock, T: ?Sized, const MAPPED: bool = false> {
    raw: &'a R,
    data: NonNull<T>,
    /// The thread that made the acquisition: a copy of the guard in a forked child (whose
    /// thread has another TID) releases nothing, even once the child holds the lock
    /// itself.
    owner: u32,
    /// `&'a mut T`: the guard lends out `&mut T` (invariant in `T`) for at most `'a`.
    /// `*const ()`: neither `Send` (see the type's docs) nor `Sync` (restored below).
    _marker: PhantomData<(&'a mut T, *const ())>,
}

// SAFETY: `&ExclusiveGuard` gives `&T` only (and `mark_consistent`, an atomic operation on
// the lock word), which is fine to share between threads when `T: Sync`.
unsafe impl<R: RawLock + Sync, T: ?Sized + Sync, const M: bool> Sync
    for ExclusiveGuard<'_, R, T, M>
{
}

impl<'a, R: RawLock, T: ?Sized> ExclusiveGuard<'a, R, T> {
    /// The raw lock and the data pointer (for the condition variable, which releases and
    /// re-takes the lock around its wait).
    #[inline]
    pub(crate) fn parts(this: &Self) -> (&'a R, NonNull<T>) {
        (this.raw, this.data)
    }
}

impl<'a, R: RawLock, T: ?Sized, const M: bool> ExclusiveGuard<'a, R, T, M> {
    /// A guard for an acquisition of `raw` the calling thread has just made.
    ///
    /// # Safety
    ///
    /// The calling thread holds `raw` exclusively (an acquisition not yet released, owned
    /// by nothing else), and `data` points to a `T` that `raw` protects, valid for `'a`.
    #[inline]
    unsafe fn new(raw: &'a R, data: NonNull<T>) -> Self {
        // SAFETY: forwarded; the calling thread made the acquisition.
        unsafe { Self::with_owner(raw, data, owner::current()) }
    }

    /// A guard for an acquisition of `raw` that thread `owner` made (this guard is a
    /// forked copy if that is not the calling thread).
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new), for the acquisition `owner` made.
    #[inline]
    unsafe fn with_owner(raw: &'a R, data: NonNull<T>, owner: u32) -> Self {
        ExclusiveGuard {
            raw,
            data,
            owner,
            _marker: PhantomData,
        }
    }

    /// Marks the data consistent again after an [`OwnerDied`](crate::OwnerDied): later acquirers get a
    /// plain guard. Without this call, `OwnerDied` persists for every later acquirer
    /// (after this guard is dropped). Does nothing on a lock that was not marked.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Mutex;
    ///
    /// let m = Mutex::new(0u64);
    /// let g = match m.lock() {
    ///     Ok(g) => g,
    ///     Err(died) => {
    ///         let mut g = died.into_inner();
    ///         *g = 0; // repair the data
    ///         g.mark_consistent();
    ///         g
    ///     }
    /// };
    /// assert_eq!(*g, 0);
    /// ```
    pub fn mark_consistent(&mut self) {
        // A forked child's copy marks nothing (see `Drop`).
        if owner::current() == self.owner {
            self.raw.mark_consistent();
        }
    }

    /// Narrows the guard to a part of the data, such as a field or an element. The lock
    /// stays held until the returned guard is dropped (or, if `f` panics, is released as
    /// the guard unwinds).
    ///
    /// An associated function (`MutexGuard::map(g, f)`), not a method, so that it does not
    /// shadow a method of `T`.
    ///
    /// A [`Condvar`](crate::Condvar) does not take a mapped guard (as with std's and
    /// `parking_lot`'s): a wait releases the lock and re-makes the guard from the mutex
    /// once it is re-taken, and only a guard over the whole data can be re-made so. (The
    /// part's pointer derives from the guard's `&mut T`; another thread's access to the data
    /// while the lock is released ends that borrow.)
    ///
    /// ```compile_fail,E0308
    /// use shmstate::{Condvar, Mutex, MutexGuard};
    ///
    /// let (m, cv) = (Mutex::new([0u32; 2]), Condvar::new());
    /// let part = MutexGuard::map(m.lock().unwrap(), |a| &mut a[1]);
    /// let _ = cv.wait(part);
    /// ```
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{RwLock, RwLockWriteGuard};
    ///
    /// let l = RwLock::new([1u64, 2]);
    /// *RwLockWriteGuard::map(l.write().unwrap(), |a| &mut a[1]) = 5;
    /// assert_eq!(*l.read().unwrap(), [1, 5]);
    /// ```
    pub fn map<U: ?Sized>(
        this: Self,
        f: impl FnOnce(&mut T) -> &mut U,
    ) -> ExclusiveGuard<'a, R, U, true> {
        // SAFETY: the guard gives exclusive access to `*data` for `'a`; `this` is consumed,
        // so the `&mut T` lent to `f` is the only reference (if `f` panics, `this` is
        // dropped as it unwinds and unlocks).
        let part = NonNull::from(f(unsafe { &mut *this.data.as_ptr() }));
        let (raw, owner) = (this.raw, this.owner);
        // The lock passes to the new guard: do not unlock it here.
        mem::forget(this);
        // SAFETY: we hold `raw` (passed on from `this`, with the thread that made the
        // acquisition: a forked copy stays one); `part` lies in the data it protects,
        // valid for `'a`.
        unsafe { ExclusiveGuard::with_owner(raw, part, owner) }
    }

    /// [`map`](Self::map) where `f` may find no part: then the original guard comes back.
    ///
    /// # Errors
    ///
    /// The unchanged guard, if `f` returned `None`.
    pub fn try_map<U: ?Sized>(
        this: Self,
        f: impl FnOnce(&mut T) -> Option<&mut U>,
    ) -> Result<ExclusiveGuard<'a, R, U, true>, Self> {
        // SAFETY: as in `map`.
        let Some(part) = f(unsafe { &mut *this.data.as_ptr() }).map(NonNull::from) else {
            return Err(this);
        };
        let (raw, owner) = (this.raw, this.owner);
        mem::forget(this);
        // SAFETY: as in `map`.
        Ok(unsafe { ExclusiveGuard::with_owner(raw, part, owner) })
    }

    /// Gives up the guard without unlocking: for turning it into another kind of guard
    /// over the same acquisition (`RwLockWriteGuard::downgrade`). The caller takes over
    /// the release. The flag: whether the calling thread made the acquisition (`false`
    /// for a forked copy, which must act on nothing).
    #[inline]
    pub(crate) fn into_parts(this: Self) -> (&'a R, NonNull<T>, bool) {
        let parts = (this.raw, this.data, owner::current() == this.owner);
        mem::forget(this);
        parts
    }
}

impl<R: RawLock, T: ?Sized, const M: bool> Deref for ExclusiveGuard<'_, R, T, M> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock exclusively, so no one else accesses `*data`
        // until it is dropped; the reference lives no longer than `self`.
        unsafe { self.data.as_ref() }
    }
}

impl<R: RawLock, T: ?Sized, const M: bool> DerefMut for ExclusiveGuard<'_, R, T, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { self.data.as_mut() }
    }
}

impl<R: RawLock, T: ?Sized, const M: bool> Drop for ExclusiveGuard<'_, R, T, M> {
    #[inline]
    fn drop(&mut self) {
        if owner::current() != self.owner {
            // A copy in a forked child: the acquisition is its parent's. The lock word
            // may name the child by now (it took the lock itself, under a guard of its
            // own that this must not release).
            return;
        }
        // SAFETY: the guard exists only while this thread holds the lock (it is not Send,
        // a guard passed on by `map` was forgotten, and a forked copy returned above), and
        // the data is not touched after.
        unsafe { self.raw.unlock() };
    }
}

impl<R: RawLock, T: ?Sized + fmt::Debug, const M: bool> fmt::Debug for ExclusiveGuard<'_, R, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<R: RawLock, T: ?Sized + fmt::Display, const M: bool> fmt::Display
    for ExclusiveGuard<'_, R, T, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// A shared acquisition of a lock: gives `&T` only, releases on drop.
///
/// [`RwLockReadGuard<'a, T>`](crate::RwLockReadGuard) and
/// [`ReentrantMutexGuard<'a, T>`](crate::ReentrantMutexGuard) are this guard over the read
/// side of [`RawRwLock`](crate::RawRwLock) and over a reentrant mutex's lock. Other guards
/// of the same lock may be alive at once (other readers; the same thread's nested
/// reentrant guards), so it never gives `&mut T`. [`map`](Self::map) narrows it to a part
/// of the data (`MAPPED` set: [`MappedRwLockReadGuard`](crate::lock::MappedRwLockReadGuard),
/// [`MappedReentrantMutexGuard`](crate::lock::MappedReentrantMutexGuard)). Not `Send`.
///
/// # Examples
///
/// ```
/// use shmstate::{RwLock, RwLockReadGuard};
///
/// let l = RwLock::new([3u8, 4]);
/// let first = RwLockReadGuard::map(l.read().unwrap(), |a| &a[0]);
/// assert_eq!(*first, 3);
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct SharedGuard<'a, R: RawLockShared, T: ?Sized, const MAPPED: bool = false> {
    raw: &'a R,
    data: NonNull<T>,
    token: R::Token,
    /// `&'a T`: the guard lends out `&T` for at most `'a`. `*const ()`: neither `Send`
    /// (the acquisition belongs to the thread that made it) nor `Sync` (restored below).
    _marker: PhantomData<(&'a T, *const ())>,
}

// SAFETY: `&SharedGuard` gives `&T` only (and `mark_consistent`, an atomic operation on the
// lock word), which is fine to share between threads when `T: Sync`.
unsafe impl<R: RawLockShared + Sync, T: ?Sized + Sync, const M: bool> Sync
    for SharedGuard<'_, R, T, M>
{
}

impl<'a, R: RawLockShared, T: ?Sized> SharedGuard<'a, R, T> {}

impl<'a, R: RawLockShared, T: ?Sized, const M: bool> SharedGuard<'a, R, T, M> {
    /// A guard for a shared acquisition of `raw` the calling thread has just made.
    ///
    /// # Safety
    ///
    /// The calling thread holds a shared acquisition of `raw` that nothing else owns, and
    /// `data` points to a `T` that `raw` protects, valid for `'a`.
    #[inline]
    unsafe fn new(raw: &'a R, data: NonNull<T>) -> Self {
        SharedGuard {
            raw,
            data,
            token: raw.token(),
            _marker: PhantomData,
        }
    }

    /// A guard for a shared acquisition the calling thread made some other way (a
    /// downgrade).
    ///
    /// # Safety
    ///
    /// As for `new`.
    #[inline]
    pub(crate) unsafe fn from_parts(raw: &'a R, data: NonNull<T>, token: R::Token) -> Self {
        SharedGuard {
            raw,
            data,
            token,
            _marker: PhantomData,
        }
    }

    /// Marks the data consistent again after an [`OwnerDied`](crate::OwnerDied), if the lock lets a shared
    /// holder do so: a [`ReentrantMutex`](crate::ReentrantMutex)'s guard does (its holder
    /// is the only thread in), a read guard of an [`RwLock`](crate::RwLock) does too (the
    /// holders of read locks agree the data is intact; no writer can change it while they
    /// hold them). Does nothing on a lock that was not marked.
    ///
    /// Only the thread that took the lock can mark it: called from another thread (through
    /// a shared `&guard`) or on a copy of the guard in a forked child, it does nothing.
    pub fn mark_consistent(&self) {
        self.raw.mark_consistent_shared(self.token);
    }

    /// Narrows the guard to a part of the data. The lock stays held until the returned
    /// guard is dropped.
    ///
    /// An associated function (`RwLockReadGuard::map(g, f)`), not a method, so that it does
    /// not shadow a method of `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ReentrantMutex, ReentrantMutexGuard, Value};
    /// use shmstate::sync::Ordering;
    ///
    /// let m = ReentrantMutex::new((Value::new(1u32), Value::new(2u32)));
    /// let second = ReentrantMutexGuard::map(m.lock().unwrap(), |p| &p.1);
    /// assert_eq!(second.load(Ordering::Relaxed), 2);
    /// ```
    pub fn map<U: ?Sized>(this: Self, f: impl FnOnce(&T) -> &U) -> SharedGuard<'a, R, U, true> {
        // SAFETY: the guard gives shared access to `*data` for `'a` (if `f` panics, `this`
        // is dropped as it unwinds and unlocks).
        let part = NonNull::from(f(unsafe { this.data.as_ref() }));
        let (raw, token) = (this.raw, this.token);
        // The acquisition passes to the new guard: do not release it here.
        mem::forget(this);
        SharedGuard {
            raw,
            data: part,
            token,
            _marker: PhantomData,
        }
    }

    /// [`map`](Self::map) where `f` may find no part: then the original guard comes back.
    ///
    /// # Errors
    ///
    /// The unchanged guard, if `f` returned `None`.
    pub fn try_map<U: ?Sized>(
        this: Self,
        f: impl FnOnce(&T) -> Option<&U>,
    ) -> Result<SharedGuard<'a, R, U, true>, Self> {
        // SAFETY: as in `map`.
        let Some(part) = f(unsafe { this.data.as_ref() }).map(NonNull::from) else {
            return Err(this);
        };
        let (raw, token) = (this.raw, this.token);
        mem::forget(this);
        Ok(SharedGuard {
            raw,
            data: part,
            token,
            _marker: PhantomData,
        })
    }
}

impl<R: RawLockShared, T: ?Sized, const M: bool> Deref for SharedGuard<'_, R, T, M> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds a shared acquisition: no `&mut T` exists until it is
        // dropped; the reference lives no longer than `self`.
        unsafe { self.data.as_ref() }
    }
}

impl<R: RawLockShared, T: ?Sized, const M: bool> Drop for SharedGuard<'_, R, T, M> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard holds the acquisition its token names (made by this thread: not
        // Send; a guard passed on by `map` was forgotten), released once, and the data is
        // not used after.
        unsafe { self.raw.unlock_shared(self.token) };
    }
}

impl<R: RawLockShared, T: ?Sized + fmt::Debug, const M: bool> fmt::Debug
    for SharedGuard<'_, R, T, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<R: RawLockShared, T: ?Sized + fmt::Display, const M: bool> fmt::Display
    for SharedGuard<'_, R, T, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
