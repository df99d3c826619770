//! [`Condvar`]: a condition variable for [`Mutex`], across processes.

use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use super::mutex::MutexGuard;
use super::owner_died::LockResult;
use crate::futex;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering};

/// A condition variable: threads and processes wait on it until another notifies, holding
/// a [`Mutex`](crate::Mutex) around the condition.
///
/// It is std's futex condvar (a sequence counter: a waiter reads it, unlocks the mutex and
/// sleeps while it is unchanged; a notifier bumps it and wakes) plus a waiter count, so a
/// notify with nobody waiting makes no syscall.
///
/// Use one condvar with one mutex: it does not check this (the mutex's address differs
/// between processes), and waiting with different mutexes is a logic error, not UB.
/// Wakeups may be spurious: wait in a loop, or use [`wait_while`](Self::wait_while).
///
/// Re-locking the mutex after a wait recovers from a dead owner like
/// [`Mutex::lock`](crate::Mutex::lock), and the [`OwnerDied`](crate::OwnerDied) it reports is passed on. The
/// re-lock itself is not timed (as in std): `wait_timeout` bounds the wait for a notify.
///
/// Layout: `#[repr(C)]`, two `u32`s; all-zero is a fresh condvar.
///
/// # Examples
///
/// ```
/// use shmstate::{Condvar, Mutex};
///
/// let ready = Mutex::new(0u32);
/// let cv = Condvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *ready.lock().unwrap() = 1;
///         cv.notify_one();
///     });
///     let g = cv.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// ```
#[derive(Debug, Default)]
#[repr(C)]
pub struct Condvar {
    /// Bumped (wrapping) by every notify; waiters futex-wait on it.
    seq: AtomicU32,
    /// Threads between "about to unlock the mutex to wait" and "woke up": a notify with a
    /// zero count skips the syscall. A waiter killed while waiting leaves it raised (costing
    /// notifies a needless syscall); any value is safe.
    waiters: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Condvar, [u32; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Condvar, u32);

// SAFETY: 1. all-zero: no notifies yet, no waiters. 2. any two `u32`s are a valid state (a
// wrong count costs a syscall or, if too low while someone waits, delays that waiter to
// its own timeout; never UB). 3. no pointers. 4. `#[repr(C)]`, asserted above.
// 5. atomics only.
unsafe impl SharedSized for Condvar {
    const TAG: TypeTag = TypeTag::new(Kind::CONDVAR, Elem::NONE);
}

/// Whether a timed wait returned because its timeout elapsed.
///
/// # Examples
///
/// ```
/// use shmstate::{Condvar, Mutex};
/// use std::time::Duration;
///
/// let (m, cv) = (Mutex::new(0u8), Condvar::new());
/// let (_g, r) = cv.wait_timeout(m.lock().unwrap(), Duration::from_millis(1)).unwrap();
/// assert!(r.timed_out());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait timed out (rather than being notified, or woken spuriously).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condvar with no waiters.
    pub fn new() -> Self {
        Condvar {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Unlocks the guard's mutex, sleeps until notified (or spuriously woken), and locks
    /// it again.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the re-acquired guard) as for
    /// [`Mutex::lock`](crate::Mutex::lock).
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_inner(guard, None).0
    }

    /// [`wait`](Self::wait) for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait); the error holds the guard and the timeout result.
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let (r, timed_out) = self.wait_inner(guard, Some(timeout));
        let t = WaitTimeoutResult(timed_out);
        match r {
            Ok(g) => Ok((g, t)),
            Err(d) => Err(d.map(|g| (g, t))),
        }
    }

    /// Waits while `condition` holds: returns with the lock held and `condition` false.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait): on [`OwnerDied`](crate::OwnerDied) it returns at once (without checking
    /// `condition` again), so the caller can repair the data first.
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait_while`](Self::wait_while) for at most `timeout` in total. On return
    /// `timed_out()` is true iff `condition` still holds (the timeout elapsed first).
    ///
    /// # Errors
    ///
    /// As for [`wait_while`](Self::wait_while).
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok((guard, WaitTimeoutResult(true))),
                },
                // Too far to represent: no limit.
                None => None,
            };
            let (r, timed_out) = self.wait_inner(guard, left);
            guard = r.map_err(|d| d.map(|g| (g, WaitTimeoutResult(timed_out))))?;
            // Under loom a timed wait times out at once: treat it as the deadline.
            if timed_out && cfg!(loom) {
                let still = condition(&mut *guard);
                return Ok((guard, WaitTimeoutResult(still)));
            }
        }
    }

    /// Wakes one waiter (if any).
    pub fn notify_one(&self) {
        self.notify(false);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(true);
    }

    fn notify(&self, all: bool) {
        // Relaxed, as in std's futex condvar: synchronisation is done by unlocking and
        // locking the mutex. A waiter that changed the condition's observer state did so
        // under the mutex; its `waiters` increment and `seq` read happened before its
        // unlock, and either our caller locked the mutex after that unlock (so it sees the
        // increment) or the waiter's futex wait sees our new `seq`.
        self.seq.fetch_add(1, Ordering::Relaxed);
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return;
        }
        if all {
            futex::wake_all(&self.seq);
        } else {
            futex::wake_one(&self.seq);
        }
    }

    /// Returns the re-lock result and whether the futex wait timed out.
    fn wait_inner<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        // Relaxed: see `notify`; both happen before the mutex unlock below, which is
        // Release.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let seq = self.seq.load(Ordering::Relaxed);
        let mutex = guard.mutex;
        drop(guard);
        let woke = futex::wait(&self.seq, seq, timeout);
        // Relaxed: only a hint for notifiers.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        (mutex.lock(), !woke)
    }
}
