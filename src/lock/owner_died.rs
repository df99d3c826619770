//! The typed errors of the locks: the previous owner died, the lock was busy, the wait
//! timed out.
//!
//! # Crash windows
//!
//! None: these are process-local values (errors carrying guards); the locks' tables say
//! when each is returned.

use core::fmt;

use crate::wait::Timeout;

/// The previous owner of a lock died while holding it; the lock is now held by the caller.
///
/// The guard inside is valid: the caller owns the lock exactly as after a successful
/// `lock()`. But the dead owner may have left the protected data half-updated, so check or
/// repair it, then call the guard's `mark_consistent()`. Until someone does, the lock stays
/// marked: every later acquirer (after this guard is dropped) gets `OwnerDied` again.
///
/// Unlike `std::sync::PoisonError`, this is not about panics: a panic that unwinds drops
/// the guard and unlocks normally. It is about a process killed, or a thread that exited,
/// while holding the lock.
///
/// # Examples
///
/// ```
/// use shmstate::{Mutex, OwnerDied};
///
/// let m = Mutex::new(0u64);
/// // A live owner: no error. The recovery pattern for a real `OwnerDied` looks like this:
/// let guard = match m.lock() {
///     Ok(g) => g,
///     Err(died) => {
///         let mut g = died.into_inner();
///         *g = 0; // repair the data
///         g.mark_consistent();
///         g
///     }
/// };
/// assert_eq!(*guard, 0);
/// ```
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// The guard: the caller holds the lock.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied::new(f(self.guard))
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the previous owner died holding the lock; the data may be inconsistent \
             (repair it, then call mark_consistent on the guard)",
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// The result of a blocking lock: the guard, or the guard wrapped in [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why a `try_lock` did not return a plain guard.
///
/// # Examples
///
/// ```
/// use shmstate::{Mutex, TryLockError};
///
/// let m = Mutex::new(0u8);
/// let _held = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock))));
/// });
/// ```
pub enum TryLockError<G> {
    /// The lock is held (or `try_lock` does not probe whether its holder is alive: use a
    /// blocking or timed lock to recover from a dead owner).
    WouldBlock,
    /// Acquired, but the previous owner died holding it.
    OwnerDied(OwnerDied<G>),
}

/// Why a timed lock did not return a plain guard.
///
/// # Examples
///
/// ```
/// use shmstate::{Mutex, TimedLockError};
/// use std::time::Duration;
///
/// let m = Mutex::new(0u8);
/// let _held = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let r = m.lock_timeout(Duration::from_millis(5));
///         assert!(matches!(r, Err(TimedLockError::Timeout)));
///     });
/// });
/// ```
pub enum TimedLockError<G> {
    /// The timeout expired (never before the deadline) without acquiring the lock.
    Timeout,
    /// Acquired, but the previous owner died holding it.
    OwnerDied(OwnerDied<G>),
}

/// A passed deadline is [`TimedLockError::Timeout`].
impl<G> From<Timeout> for TimedLockError<G> {
    fn from(_: Timeout) -> Self {
        TimedLockError::Timeout
    }
}

macro_rules! lock_error_impls {
    ($ty:ident, $busy:ident, $busy_msg:literal) => {
        impl<G> From<OwnerDied<G>> for $ty<G> {
            fn from(d: OwnerDied<G>) -> Self {
                $ty::OwnerDied(d)
            }
        }

        impl<G> fmt::Debug for $ty<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$busy => f.write_str(stringify!($busy)),
                    $ty::OwnerDied(d) => f.debug_tuple("OwnerDied").field(d).finish(),
                }
            }
        }

        impl<G> fmt::Display for $ty<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$busy => f.write_str($busy_msg),
                    $ty::OwnerDied(d) => fmt::Display::fmt(d, f),
                }
            }
        }

        impl<G> std::error::Error for $ty<G> {}
    };
}

lock_error_impls!(
    TryLockError,
    WouldBlock,
    "the lock is held by another thread"
);
lock_error_impls!(TimedLockError, Timeout, "timed out waiting for the lock");
