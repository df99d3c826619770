//! [`Condvar`]: a condition variable for [`Mutex`], across processes.
//!
//! # The algorithm
//!
//! std's futex condvar is a sequence word: a waiter reads it under the mutex, unlocks, and
//! futex-waits while it is unchanged; a notify bumps it and wakes. Here that word is a
//! *sleepers word* (see `futex::sleepers` in the source: a "may have sleepers" bit
//! `SLEEPERS`, a "registered" bit and a tick counter that serves as the sequence), so a
//! notify with nobody waiting is one load and no syscall:
//!
//! - `wait` *registers* under the mutex (`fetch_or`, setting `SLEEPERS`), unlocks, and
//!   futex-waits on the value it got back.
//! - `notify_one` reads the word; if `SLEEPERS` is clear it returns. Otherwise it bumps the
//!   word (the new sequence: a waiter registered before it that is not asleep yet finds
//!   another value and returns instead of sleeping) and wakes one sleeper. If that wake
//!   reports nobody woken, it clears `SLEEPERS` by a compare-exchange from its bumped
//!   value: nobody was asleep at the wake, nobody could fall asleep on the bumped value,
//!   and a waiter that registered since changed the word, so the clear fails and the bit
//!   stays theirs. Other sleepers are never lost: the bit stays set while any may sleep.
//! - `notify_all` bumps the word and clears `SLEEPERS` in one step, then wakes everyone
//!   who slept before it.
//!
//! No notify is lost: a waiter registers under the mutex, so a notifier that changed the
//! condition under the mutex afterwards reads the registration (or a later value), and a
//! `SLEEPERS` cleared since was cleared either by a `notify_all` that wakes the waiter or
//! by a `notify_one` whose bump came after the registration (then the waiter's futex wait
//! fails on the bumped value).
//!
//! # Dead processes
//!
//! Waiters never lower anything, so a waiter killed while waiting leaves only `SLEEPERS`
//! set: the next `notify_one` makes one wake that finds nobody and clears it (a
//! `notify_all` clears it at once); uncontended notifies after that make no syscall. The
//! waiter count this replaced stayed raised for good after such a death. The price is
//! the same one wake at the end of each contended episode: a woken waiter cannot know
//! whether it was the last, so the bit stays until a notify finds nobody.
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves (the mutex's own windows are in
//! [`RawMutex`](super::raw_mutex)). A line that ends in "failpoint test" has one in
//! `tests/failpoints.rs` (the process is stopped at the step, killed, and the repair
//! checked):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | wait: registered, mutex not yet unlocked | the mutex held by a dead owner; `SLEEPERS` set | the next locker takes the mutex over (`OwnerDied`); the next `notify_one` makes one wake that finds nobody and clears the bit; failpoint test |
//! | wait: asleep, or re-locking | `SLEEPERS` set | the same one needless wake |
//! | notify: word bumped, sleepers not yet woken | sleepers asleep on a changed word | every wait, timed or not, sleeps in slices of at most 10 ms and re-checks the word: it returns within one slice; failpoint test |
//! | notify_one: woke nobody, `SLEEPERS` not yet cleared | the bit set | the next `notify_one` clears it (one needless wake); failpoint test |

use core::time::Duration;
use std::time::Instant;

use super::mutex::MutexGuard;
use super::owner_died::{LockResult, TimedLockError};
use super::typed::{Acquisition, deadline_after};
use crate::failpoint::{self, Point};
use crate::futex;
use crate::futex::sleepers;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{Slices, deadline_passed};

/// A condition variable: threads and processes wait on it until another notifies, holding
/// a [`Mutex`](crate::Mutex) around the condition.
///
/// It is std's futex condvar (a sequence counter: a waiter reads it, unlocks the mutex and
/// sleeps while it is unchanged; a notifier bumps it and wakes) plus a "may have sleepers"
/// bit in the same word, so a notify with nobody waiting makes no syscall, and a waiter
/// killed while waiting costs one needless wake at most (the algorithm and its proof are
/// in the comments of `src/lock/condvar.rs`).
///
/// Use one condvar with one mutex: it does not check this (the mutex's address differs
/// between processes), and waiting with different mutexes is a logic error, not UB.
/// Wakeups may be spurious: wait in a loop, or use [`wait_while`](Self::wait_while).
///
/// Re-locking the mutex after a wait recovers from a dead owner like
/// [`Mutex::lock`](crate::Mutex::lock), and the [`OwnerDied`](crate::OwnerDied) it
/// reports is passed on. The std-shaped waits ([`wait_timeout`](Self::wait_timeout),
/// [`wait_timeout_while`](Self::wait_timeout_while)) re-lock untimed, as in std: they bound
/// the wait for a notify, not the wait for the mutex, so a holder that does not let go (a
/// stopped process) delays them past their timeout. [`wait_until`](Self::wait_until) and
/// [`wait_for`](Self::wait_for) bound both: they return by their deadline, and if the
/// mutex could not be re-taken by then they say so with an error that holds no guard.
///
/// Layout: `#[repr(C)]`, two `u32`s; all-zero is a fresh condvar, and any bytes are a
/// valid one.
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
    /// The sleepers word, on which waiters futex-wait:
    ///
    /// | bits  | meaning                                                                 |
    /// |-------|-------------------------------------------------------------------------|
    /// | 0     | `SLEEPERS`: a waiter may sleep; a notify must wake (and may clear)      |
    /// | 1     | `REGISTERED`: last changed by a waiter registering, not by a notify     |
    /// | 2..32 | sequence: bumped (wrapping) by every notify that finds `SLEEPERS` set  |
    ///
    /// `0`: a fresh condvar nobody waits on. Any value is safe: a stray `SLEEPERS` costs
    /// one notify a needless wake, which clears it; a `SLEEPERS` wrongly clear while
    /// someone sleeps (only hostile bytes do that) delays that waiter to its timeout or
    /// the next registration.
    seq: AtomicU32,
    /// Unused since the waiter count was replaced by the `SLEEPERS` bit; kept (always
    /// written as 0, any value ignored) so the layout stays two `u32`s.
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Condvar, [u32; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Condvar, u32);

// SAFETY: 1. all-zero: no notifies yet, no waiters. 2. any two `u32`s are a valid state (a
// wrong `SLEEPERS` bit costs a syscall or, if clear while someone waits, delays that
// waiter to its own timeout; never UB; the second word is ignored). 3. no pointers.
// 4. `#[repr(C)]`, asserted above. 5. atomics only.
unsafe impl SharedSized for Condvar {
    const TAG: TypeTag = TypeTag::new(Kind::CONDVAR, Elem::NONE);
}

/// What [`Condvar::wait_until`] returns: the re-taken guard and whether the wait timed
/// out, or why not a plain guard ([`TimedLockError::Timeout`]: the mutex was not re-taken
/// by the deadline, so the caller does not hold it). Private: the docs show it expanded.
type TimedWait<'a, T> = Result<
    (MutexGuard<'a, T>, WaitTimeoutResult),
    TimedLockError<(MutexGuard<'a, T>, WaitTimeoutResult)>,
>;

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
            _reserved: AtomicU32::new(0),
        }
    }

    /// Unlocks the guard's mutex, sleeps until notified (or spuriously woken), and locks
    /// it again.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](crate::OwnerDied) (holding the re-acquired guard) as for
    /// [`Mutex::lock`](crate::Mutex::lock).
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_inner(guard, None).0
    }

    /// [`wait`](Self::wait) for at most `timeout` for a notify. The re-lock after it is
    /// untimed, as in std: if another thread or process holds the mutex then (perhaps a
    /// stopped one), this waits for it past `timeout`. [`wait_for`](Self::wait_for) bounds
    /// the re-lock too.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait); the error holds the guard and the timeout result.
    pub fn wait_timeout<'a, T: ?Sized>(
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

    /// [`wait`](Self::wait) that ends by `deadline` in total, re-locking included: unlike
    /// [`wait_timeout`](Self::wait_timeout), whose re-lock is untimed, it never waits past
    /// `deadline` for a holder of the mutex (say, a stopped process) beyond a brief spin.
    ///
    /// Returns the guard, with `timed_out()` true if the deadline passed before a notify
    /// (re-check the condition either way: wakeups may be spurious). If `deadline` has
    /// passed already, it returns the guard at once without unlocking.
    ///
    /// # Errors
    ///
    /// - [`TimedLockError::Timeout`]: `deadline` passed before the mutex was re-taken.
    ///   **The caller no longer holds the lock**: the guard is gone, and the condition
    ///   cannot be checked without locking again.
    /// - [`TimedLockError::OwnerDied`] (holding the re-acquired guard and the timeout
    ///   result) as for [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Condvar, Mutex, TimedLockError};
    /// use std::time::{Duration, Instant};
    ///
    /// let (m, cv) = (Mutex::new(0u8), Condvar::new());
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// match cv.wait_until(m.lock().unwrap(), deadline) {
    ///     Ok((g, r)) => assert!(r.timed_out() && *g == 0),
    ///     Err(TimedLockError::Timeout) => {} // the mutex was busy: we do not hold it
    ///     Err(TimedLockError::OwnerDied(_)) => unreachable!(),
    /// }
    /// ```
    pub fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> TimedWait<'a, T> {
        if Instant::now() >= deadline {
            return Ok((guard, WaitTimeoutResult(true)));
        }
        // Registered before the mutex unlock below (Release): see `may_have_sleepers`.
        let expected = sleepers::register(&self.seq);
        failpoint::hit(Point::CondvarWaitRegistered);
        let (raw, data) = MutexGuard::parts(&guard);
        drop(guard);
        // Nothing to undo after it: as in `wait_inner`.
        let woke = self.sleep_in_slices(expected, Some(deadline));
        let t = WaitTimeoutResult(!woke);
        // The re-lock gets what is left of the deadline (nothing, after a timeout: then
        // it is a `try_lock` and a brief spin).
        // SAFETY: `raw` protects `data` (both came from a guard of it), valid for `'a`.
        match unsafe { MutexGuard::lock_until(raw, || data, deadline) } {
            Ok(g) => Ok((g, t)),
            Err(TimedLockError::OwnerDied(d)) => Err(TimedLockError::OwnerDied(d.map(|g| (g, t)))),
            Err(TimedLockError::Timeout) => Err(TimedLockError::Timeout),
        }
    }

    /// [`wait_until`](Self::wait_until) `timeout` from now: the whole call, re-locking
    /// included, takes at most about `timeout` (plus a brief spin). A `timeout` too large
    /// to represent as a deadline waits like [`wait`](Self::wait), never timing out.
    ///
    /// # Errors
    ///
    /// As for [`wait_until`](Self::wait_until).
    pub fn wait_for<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> TimedWait<'a, T> {
        match deadline_after(timeout) {
            Some(deadline) => self.wait_until(guard, deadline),
            None => match self.wait(guard) {
                Ok(g) => Ok((g, WaitTimeoutResult(false))),
                Err(d) => Err(TimedLockError::OwnerDied(
                    d.map(|g| (g, WaitTimeoutResult(false))),
                )),
            },
        }
    }

    /// Waits while `condition` holds: returns with the lock held and `condition` false.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait): on [`OwnerDied`](crate::OwnerDied) it returns at once
    /// (without checking `condition` again), so the caller can repair the data first.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`wait_while`](Self::wait_while) for at most `timeout` in total for notifies. On
    /// return `timed_out()` is true iff `condition` still holds (the timeout elapsed
    /// first). Each re-lock is untimed, as for [`wait_timeout`](Self::wait_timeout); to
    /// bound those too, loop over [`wait_until`](Self::wait_until).
    ///
    /// # Errors
    ///
    /// As for [`wait_while`](Self::wait_while).
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = deadline_after(timeout);
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

    /// Wakes one waiter (if any). Makes no syscall if nobody may be waiting.
    #[inline]
    pub fn notify_one(&self) {
        if self.may_have_sleepers() {
            self.notify_one_slow();
        }
    }

    /// Wakes every waiter. Makes no syscall if nobody may be waiting.
    #[inline]
    pub fn notify_all(&self) {
        if self.may_have_sleepers() {
            self.notify_all_slow();
        }
    }

    #[inline]
    fn may_have_sleepers(&self) -> bool {
        // Relaxed, as in std's futex condvar: synchronisation is done by unlocking and
        // locking the mutex. A waiter registers under the mutex, before its unlock; a
        // notifier that changed the condition under the mutex after that reads the
        // registration or a later value (coherence), and a `SLEEPERS` cleared since was
        // cleared for that waiter too (module docs). One that changed it before does not
        // need to wake that waiter: it sees the changed condition and does not wait.
        sleepers::may_have_sleepers(self.seq.load(Ordering::Relaxed))
    }

    #[cold]
    fn notify_one_slow(&self) {
        // `None`: a notify cleared `SLEEPERS` meanwhile, having woken or ruled out every
        // sleeper, and with a bump that fails any registered waiter's futex wait.
        let Some(bumped) = sleepers::bump(&self.seq, false) else {
            return;
        };
        failpoint::hit(Point::CondvarNotifyBumped);
        if futex::wake_one(&self.seq) == 0 {
            failpoint::hit(Point::CondvarNotifyOneWokeNobody);
            sleepers::clear(&self.seq, bumped);
        }
    }

    #[cold]
    fn notify_all_slow(&self) {
        // Bump and clear in one step: everyone asleep now is woken below; a waiter
        // registered but not asleep fails its wait on the bumped value; a later one sets
        // `SLEEPERS` again.
        if sleepers::bump(&self.seq, true).is_some() {
            failpoint::hit(Point::CondvarNotifyBumped);
            futex::wake_all(&self.seq);
        }
    }

    /// The raw words `(seq, reserved)`, for tests and diagnostics (e.g. writing hostile
    /// bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.seq, &self._reserved)
    }

    /// Returns the re-lock result and whether the futex wait timed out.
    fn wait_inner<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> (LockResult<MutexGuard<'a, T>>, bool) {
        // Registered before the mutex unlock below (Release): see `may_have_sleepers`.
        let expected = sleepers::register(&self.seq);
        failpoint::hit(Point::CondvarWaitRegistered);
        let (raw, data) = MutexGuard::parts(&guard);
        drop(guard);
        // Nothing to undo after it: `SLEEPERS` is a "maybe", cleared by a later notify.
        // A timeout too long for an `Instant` is an untimed wait.
        let deadline = timeout.and_then(deadline_after);
        let woke = self.sleep_in_slices(expected, deadline);
        // SAFETY: as in `wait_until`.
        (unsafe { MutexGuard::lock(raw, || data) }, !woke)
    }

    /// A sleep on `seq` while it holds `expected`, until `deadline` (`None`: untimed), in
    /// slices of at most [`PROBE_SLICE`](crate::wait::PROBE_SLICE) that re-check the word: a notifier killed between
    /// its bump of `seq` and its wake costs a sleeper one slice, not the whole wait.
    /// Returns `true` for a notify (or a spurious wake, which callers allow for), `false`
    /// if the deadline passed.
    fn sleep_in_slices(&self, expected: u32, deadline: Option<Instant>) -> bool {
        let mut slices = Slices::new();
        loop {
            let Some(slice) = slices.next(deadline) else {
                return false;
            };
            if futex::wait(&self.seq, expected, slice) {
                return true;
            }
            // Relaxed: only whether a notify came; the mutex re-lock orders the data.
            if self.seq.load(Ordering::Relaxed) != expected {
                return true;
            }
            if deadline_passed(deadline) {
                return false;
            }
        }
    }
}
