//! [`SeqLockWriteGuard`]: the write guard of [`SeqLock::lock`], which publishes its copy
//! on drop unless it holds a torn value nobody marked repaired.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use bytemuck::Pod;

use super::SeqLock;
use crate::lock::{LockResult, OwnerDied};

/// Exclusive write access to a [`SeqLock`], from [`SeqLock::lock`]: derefs to a private
/// copy of the value, which is stored (and the lock released) when the guard drops.
///
/// A guard handed out inside [`OwnerDied`] holds a value torn by a writer that died
/// mid-write ([`recovered`](Self::recovered)): it stores nothing when dropped unless
/// [`mark_consistent`](Self::mark_consistent) was called, so a torn value is never
/// published as a valid write by accident.
///
/// Not `Send`: the lock records the locking thread's TID for the liveness probe.
///
/// # Examples
///
/// ```
/// let s = shmstate::SeqLock::new([1u8, 2]);
/// {
///     let mut g = s.lock().expect("no writer died mid-write");
///     g[1] = 9;
///     assert_eq!(s.read(), [1, 2]); // readers see the old value until the drop
/// }
/// assert_eq!(s.read(), [1, 9]);
/// ```
#[must_use = "dropping the guard immediately stores the value unchanged"]
pub struct SeqLockWriteGuard<'a, T: Pod> {
    lock: &'a SeqLock<T>,
    value: T,
    /// The guard started from a value torn by a writer that died mid-write.
    recovered: bool,
    /// Dropping the guard publishes `value`: `false` only for a recovered guard that has
    /// not been marked consistent.
    publish: bool,
    /// The thread that took the lock: a copy of the guard in a forked child (whose
    /// thread has another TID) stores and releases nothing.
    owner: u32,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SeqLockWriteGuard<'a, T> {
    /// The guard of a writer that holds the lock; `Err` if the value is torn.
    pub(super) fn new(lock: &'a SeqLock<T>, torn: bool) -> LockResult<Self> {
        let guard = SeqLockWriteGuard {
            lock,
            value: lock.load_locked(),
            recovered: torn,
            publish: !torn,
            owner: crate::owner::current(),
            _not_send: PhantomData,
        };
        if torn {
            Err(OwnerDied::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// `true` if the previous writer died mid-write: the value this guard started with is
    /// torn (each 8-byte word holds its old or its new value). Such a guard came wrapped in
    /// [`OwnerDied`], and stores nothing unless [marked
    /// consistent](Self::mark_consistent).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Declares the guard's value repaired after an [`OwnerDied`]: dropping the guard will
    /// store it, making the value valid again for readers and later writers. Without this
    /// call, a recovered guard stores nothing and the value stays torn. Does nothing on a
    /// guard that was not recovered (it stores its value anyway).
    pub fn mark_consistent(&mut self) {
        self.publish = true;
    }
}

impl<T: Pod> Deref for SeqLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Pod> DerefMut for SeqLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Pod> Drop for SeqLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if crate::owner::current() != self.owner {
            // A copy in a forked child: the lock is its parent's (or, by now, the child's
            // own, under a guard of its own): store nothing, release nothing.
            return;
        }
        if !self.publish || std::thread::panicking() {
            // A recovered guard nobody marked consistent, or a closure panicked mid-update:
            // store nothing, just release the lock. (If the value was torn, `seq` stays odd
            // with no owner, which the next writer and the readers treat as a dead
            // writer's torn value.)
            self.lock.unlock_writer();
        } else {
            self.lock.publish_and_unlock(&self.value);
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeqLockWriteGuard")
            .field("value", &self.value)
            .field("recovered", &self.recovered)
            .field("marked_consistent", &(self.recovered && self.publish))
            .finish()
    }
}
