//! Robust futex locks: [`Mutex`], [`RwLock`], [`ReentrantMutex`] and [`Condvar`], over the
//! raw locks [`RawMutex`] and [`RawRwLock`].
//!
//! Every lock is one or two futex words placed next to its data, so it works the same on
//! the heap and in shared memory. The uncontended paths are one atomic read-modify-write
//! and no syscall, like `std::sync::Mutex`. Unlike a process-shared pthread mutex or
//! Python's `multiprocessing.Lock`, a lock whose owner dies is not lost: the owner's thread
//! id is in the lock word, waiters probe it, and the next acquirer gets an [`OwnerDied`]
//! error carrying the guard. See [`raw_mutex`] for the mechanism and its limits (among
//! them: a lock the main thread holds across `execve` names a live thread that no longer
//! maps the region, and is not recovered until that process exits).
//!
//! The three locks are one typed layer over their raw locks, in `lock_api`'s shape: a guard is an
//! [`ExclusiveGuard`] (`&mut T`: [`MutexGuard`], [`RwLockWriteGuard`]) or a [`SharedGuard`]
//! (`&T`: [`RwLockReadGuard`], [`ReentrantMutexGuard`]), each with `map` (to a
//! `Mapped*Guard` of a part of the data) and `mark_consistent`; every lock has `lock`/`try_lock`/`*_timeout`/`*_until` with the same
//! typed results ([`LockResult`], [`TryLockError`], [`TimedLockError`]).

mod condvar;
mod mutex;
mod owner_died;
pub mod raw_mutex;
mod reentrant_mutex;
pub mod rwlock;
mod typed;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{MappedMutexGuard, Mutex, MutexGuard};
pub use owner_died::{LockResult, OwnerDied, TimedLockError, TryLockError};
pub use raw_mutex::{Acquired, RawMutex};
pub use reentrant_mutex::{MappedReentrantMutexGuard, ReentrantMutex, ReentrantMutexGuard};
pub use rwlock::{
    MappedRwLockReadGuard, MappedRwLockWriteGuard, RawRwLock, RwLock, RwLockReadGuard,
    RwLockWriteGuard,
};
pub use typed::{ExclusiveGuard, SharedGuard};
