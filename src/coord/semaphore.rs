//! [`Semaphore`] and [`BoundedSemaphore`]: counting semaphores on one futex word.
//!
//! # The algorithm
//!
//! The permit count is a plain `u32`; a second word, the *sleepers word* (see
//! `futex::sleepers` in the source: a "may have sleepers" bit, a "registered" bit and a
//! tick counter), is the futex word acquirers sleep on. `acquire` is one compare-exchange
//! `c -> c - 1` when `c > 0`; `release` is one compare-exchange `c -> c + n`, a fence and a
//! load of the sleepers word, and wakes only if its `SLEEPERS` bit is set. A waiter that
//! finds no permit spins briefly with loads, then *registers* (sets `SLEEPERS`, getting
//! back the value to sleep on), re-reads the count, and futex-waits on the sleepers word
//! if the count is still `0`.
//!
//! No wakeup is lost: the waiter registers *then* reads `count`; the releaser raises
//! `count` *then* reads the sleepers word. A `SeqCst` fence sits between the two steps on
//! each side, so at least one of them sees the other's write (the store-buffering
//! pattern): either the waiter sees the permit and does not sleep, or the releaser sees
//! `SLEEPERS` and wakes. Its wake first *bumps* the word, so a waiter that registered but
//! is not asleep yet does not fall asleep (its futex wait finds another value) and
//! re-reads the count instead; a waiter already asleep is woken (`release_n` with `n > 1`
//! wakes all of them, `release` one).
//!
//! Nobody lowers `SLEEPERS` on leaving: a releaser clears it when its wake reports that it
//! woke nobody, which proves nobody sleeps (the argument is in `futex::sleepers`). So the
//! first release after a contended episode makes one wake that finds nobody, and the
//! releases after it make no syscall again.
//!
//! Sleeps are bounded: a waiter sleeps in slices (50 µs, doubling up to 10 ms), then
//! registers and re-reads the count again, so a releaser that died between raising the
//! count and waking costs the sleepers at most one slice (the price: a long wait wakes
//! once per 10 ms to look). A timed acquire checks its deadline after every return of the
//! futex, so a peer that floods the sleepers word with wakes cannot stretch it.
//!
//! # Overflow
//!
//! The count is a `u32`: a release that would take it above `u32::MAX` changes nothing and
//! returns [`ReleaseError::Overflow`]. A [`BoundedSemaphore`] refuses, the same way, a
//! release above its bound ([`ReleaseError::AboveBound`], Python's `ValueError`).
//!
//! # Dead processes
//!
//! A semaphore has no owner: a process that dies holding a permit takes it with it (as in
//! Python and POSIX). A waiter killed while waiting (asleep, or between registering and
//! sleeping) leaves `SLEEPERS` set and nothing else: the next release makes one
//! `FUTEX_WAKE`, which finds nobody (the kernel dropped the dead thread from the futex
//! queue), and clears the bit; later uncontended releases make no syscall. A count of
//! waiters, which this replaced, stayed raised for good after such a death, costing every
//! later release a syscall.
//!
//! # Crash windows
//!
//! Failpoint tests: `tests/coord_dead_waker.rs` (the releaser's steps; the hook is
//! `Semaphore::release_without_wake`), `tests/coord_processes.rs` (a waiter killed
//! asleep), `tests/coord_wake_spam.rs` (a peer flooding the sleepers word with wakes).
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Acquire: count lowered (one compare-exchange) | one permit fewer, for good (no owner) | nobody: as in Python and POSIX |
//! | Waiter: spinning (loads only) | nothing | - |
//! | Waiter: registered, or asleep in the futex | `SLEEPERS` set, nobody asleep (the kernel drops a dead sleeper) | the next release: its wake finds nobody and clears the bit (one needless `FUTEX_WAKE`) |
//! | Release: count raised, not yet bumped or woken | the permit free, sleepers asleep, `SLEEPERS` still set | a sleeper at the end of its slice (≤ 10 ms) takes it; at once the next release, which finds `SLEEPERS` and wakes |
//! | Release: sleepers word bumped, not yet woken | the same (a bump wakes nobody already asleep) | the same |
//! | Release: woken, before clearing `SLEEPERS` (its wake found nobody) | `SLEEPERS` set, nobody asleep | the next release: one needless `FUTEX_WAKE` |
//!
//! A releaser *stopped* (SIGSTOP) between raising the count and waking is the same as a
//! killed one: its sleepers find the permit at the end of their slice.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use crate::futex;
use crate::futex::sleepers;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, fence};
use crate::wait::{Slices, TRY_LIMIT, Timeout, deadline_passed, spin_with_backoff};

/// Why a release changed nothing.
///
/// # Examples
///
/// ```
/// use shmstate::{BoundedSemaphore, ReleaseError};
///
/// let s = BoundedSemaphore::new(1);
/// assert_eq!(s.release(), Err(ReleaseError::AboveBound { bound: 1 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The count would exceed `u32::MAX`.
    #[error("semaphore count would overflow u32")]
    Overflow,
    /// A [`BoundedSemaphore`] would exceed its bound: released more often than acquired.
    #[error("semaphore released too many times (its bound is {bound})")]
    AboveBound {
        /// The bound, as read from the object.
        bound: u32,
    },
}

/// The steps a release takes: all of them, except in the deliberately broken releases of
/// tests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Steps {
    All,
    /// Only the loom model that proves the fence is needed builds it.
    #[cfg_attr(not(loom), allow(dead_code))]
    WithoutFence,
    WithoutWake,
}

/// A counting semaphore shared by threads and processes: Python's
/// `multiprocessing.Semaphore`.
///
/// [`acquire`](Self::acquire) takes one permit, waiting while there is none;
/// [`release`](Self::release) gives one back. The uncontended paths are one atomic
/// compare-exchange and no syscall; `release` makes a syscall only when a waiter may sleep.
/// See the [module docs](self) for the algorithm.
///
/// Layout: `#[repr(C)]`, two `u32`s. All-zero bytes are a semaphore with no permits (in a
/// region, give it its permits in `get_or_init`'s `init` with
/// [`release_n`](Self::release_n)); any bytes are a valid semaphore.
///
/// # Examples
///
/// ```
/// use shmstate::{Semaphore, Timeout};
/// use std::time::Duration;
///
/// let s = Semaphore::new(2);
/// s.acquire();
/// assert!(s.try_acquire());
/// assert_eq!(s.acquire_timeout(Duration::from_millis(1)), Err(Timeout));
/// s.release_n(2).unwrap();
/// assert_eq!(s.value(), 2);
/// ```
#[derive(Default)]
#[repr(C)]
pub struct Semaphore {
    /// The number of free permits, `0..=u32::MAX`.
    count: AtomicU32,
    /// The sleepers word, on which acquirers futex-wait while `count` is 0:
    ///
    /// | bits  | meaning                                                                |
    /// |-------|------------------------------------------------------------------------|
    /// | 0     | `SLEEPERS`: an acquirer may sleep; a release must wake (and may clear) |
    /// | 1     | `REGISTERED`: last changed by an acquirer registering, not by a bump   |
    /// | 2..32 | ticks: bumped (wrapping) by each release that wakes                   |
    ///
    /// `0`: nobody sleeps. Any value is safe: a stray `SLEEPERS` costs one release a
    /// needless wake, which clears it; a `SLEEPERS` wrongly clear while someone sleeps
    /// (only hostile bytes do that) delays that sleeper to the end of its slice.
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Semaphore, [u32; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Semaphore, u32);

// SAFETY: 1. all-zero: no permits, no waiters. 2. any two `u32`s are a valid state (see the
// fields). 3. no pointers. 4. `#[repr(C)]`, asserted above. 5. atomics only.
unsafe impl SharedSized for Semaphore {
    const TAG: TypeTag = TypeTag::new(Kind::SEMAPHORE, Elem::NONE);
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: u32) -> Self {
        Semaphore {
            count: AtomicU32::new(permits),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Takes a permit, waiting as long as it takes for one.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire_once() {
            self.acquire_slow(None);
        }
    }

    /// Takes a permit if one is free, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_once() || self.try_acquire_slow()
    }

    /// [`acquire`](Self::acquire), waiting at most `timeout` for a permit. A `timeout` too
    /// large for an [`Instant`] waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no permit was free until the timeout (at least `timeout` has
    /// passed); no permit was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{Semaphore, Timeout};
    ///
    /// let s = Semaphore::new(1);
    /// assert_eq!(s.acquire_timeout(Duration::from_millis(1)), Ok(()));
    /// assert_eq!(s.acquire_timeout(Duration::from_millis(1)), Err(Timeout));
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.acquire_until(d),
            None => {
                self.acquire();
                Ok(())
            }
        }
    }

    /// [`acquire`](Self::acquire), waiting until `deadline` at most for a permit.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no permit was free until `deadline`; no permit was taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmstate::{Semaphore, Timeout};
    ///
    /// let s = Semaphore::new(0);
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert_eq!(s.acquire_until(deadline), Err(Timeout));
    /// assert!(Instant::now() >= deadline);
    /// ```
    pub fn acquire_until(&self, deadline: Instant) -> Result<(), Timeout> {
        if self.try_acquire() || self.acquire_slow(Some(deadline)) {
            Ok(())
        } else {
            Err(Timeout)
        }
    }

    /// Gives back one permit, waking one waiter if any may sleep.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] if the count is `u32::MAX` already; nothing changes.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_n(1)
    }

    /// Gives back `n` permits at once, waking waiters if any may sleep.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] if the count would exceed `u32::MAX`; nothing changes.
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        self.release_limited(n, u32::MAX, Steps::All)
            .map_err(|_| ReleaseError::Overflow)
    }

    /// `release` without the fence that pairs with the waiters' fence: a deliberately
    /// broken release for the loom test that proves the fence is needed. Not part of the
    /// API.
    #[cfg(loom)]
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn release_without_fence(&self) {
        let _ = self.release_limited(1, u32::MAX, Steps::WithoutFence);
    }

    /// For tests of a releaser that dies between raising the count and waking: `release`
    /// without the wake. Not part of the API.
    ///
    /// # Errors
    ///
    /// As for [`release`](Self::release).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn release_without_wake(&self) -> Result<(), ReleaseError> {
        self.release_limited(1, u32::MAX, Steps::WithoutWake)
            .map_err(|_| ReleaseError::Overflow)
    }

    /// The number of free permits now (a snapshot).
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot; taking a permit is a compare-exchange.
        self.count.load(Ordering::Relaxed)
    }

    /// One attempt at `c -> c - 1`.
    #[inline]
    fn try_acquire_once(&self) -> bool {
        // Relaxed: only picks the expected value; the compare-exchange orders.
        let c = self.count.load(Ordering::Relaxed);
        c != 0 && self.take(c).is_ok()
    }

    /// Compare-exchanges the observed count `c > 0` to `c - 1`.
    #[inline]
    fn take(&self, c: u32) -> Result<u32, u32> {
        // Acquire pairs with the Release compare-exchange in `release_limited`: what the
        // releaser wrote before releasing happens before what we do with the permit.
        self.count
            .compare_exchange(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
    }

    #[cold]
    fn try_acquire_slow(&self) -> bool {
        for _ in 0..TRY_LIMIT {
            // Relaxed: as in `try_acquire_once`.
            let c = self.count.load(Ordering::Relaxed);
            if c == 0 {
                return false;
            }
            if self.take(c).is_ok() {
                return true;
            }
        }
        false
    }

    /// The contended acquire: spin, register, sleep. `false` only if `deadline` passed.
    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> bool {
        if spin_with_backoff(|| {
            // Relaxed: a hint; `take` orders.
            let c = self.count.load(Ordering::Relaxed);
            c != 0 && self.take(c).is_ok()
        }) {
            return true;
        }
        let mut slices = Slices::new();
        loop {
            // Registered again after every wakeup: a release that woke nobody may have
            // cleared `SLEEPERS` since (then this sets it again), or bumped the word (then
            // this gives the value to sleep on).
            let expected = sleepers::register(&self.sleepers);
            // SeqCst fence: orders the registration (Relaxed RMW) before our read of
            // `count`, and pairs with the fence in `release_limited` (module docs).
            fence(Ordering::SeqCst);
            // Relaxed: a hint; `take` orders.
            let c = self.count.load(Ordering::Relaxed);
            if c != 0 {
                if self.take(c).is_ok() {
                    return true;
                }
                continue;
            }
            // A bounded slice even without a deadline: a releaser killed between raising
            // the count and waking costs us one slice (the deadline is checked here after
            // every wake, spurious ones included). Nothing to undo on leaving: `SLEEPERS`
            // is a "maybe", cleared by a later release.
            let Some(slice) = slices.next(deadline) else {
                return false;
            };
            if !futex::wait(&self.sleepers, expected, slice) && deadline_passed(deadline) {
                return false;
            }
        }
    }

    /// Adds `n` permits unless the count would exceed `limit`; then returns the count.
    #[inline]
    fn release_limited(&self, n: u32, limit: u32, steps: Steps) -> Result<(), u32> {
        if n == 0 {
            return Ok(());
        }
        // Relaxed: only picks the expected value; the compare-exchange orders.
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            let new = match c.checked_add(n) {
                Some(new) if new <= limit => new,
                _ => return Err(c),
            };
            // Release pairs with the Acquire compare-exchange in `take`.
            match self
                .count
                .compare_exchange(c, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // SeqCst fence: pairs with the one in `acquire_slow`, so that if this load misses
        // a waiter's registration, that waiter sees our new count (see the module docs).
        if steps != Steps::WithoutFence {
            fence(Ordering::SeqCst);
        }
        // Relaxed: ordered by the fence above.
        if steps != Steps::WithoutWake
            && sleepers::may_have_sleepers(self.sleepers.load(Ordering::Relaxed))
        {
            self.wake(n);
        }
        Ok(())
    }

    /// Bumps the sleepers word and wakes; clears `SLEEPERS` if the wake found nobody.
    #[cold]
    fn wake(&self, n: u32) {
        // `None`: another release cleared `SLEEPERS` after proving nobody sleeps, so a
        // waiter that registered before that re-reads the count (and sees our permit: the
        // fences, module docs) rather than sleeping, and one that registers after it sees
        // our permit too.
        let Some(bumped) = sleepers::bump(&self.sleepers, false) else {
            return;
        };
        let woken = if n == 1 {
            futex::wake_one(&self.sleepers)
        } else {
            futex::wake_all(&self.sleepers)
        };
        if woken == 0 {
            sleepers::clear(&self.sleepers, bumped);
        }
    }

    /// The raw words `(count, sleepers)`, for tests and diagnostics (e.g. writing hostile
    /// bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.count, &self.sleepers)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish_non_exhaustive()
    }
}

/// A [`Semaphore`] whose count may not exceed its initial value: Python's
/// `multiprocessing.BoundedSemaphore`. Releasing more often than acquiring is reported as
/// [`ReleaseError::AboveBound`] instead of silently raising the limit.
///
/// Layout: `#[repr(C)]`, a `Semaphore` then the bound (`u32`). The bound is written once,
/// by [`new`](Self::new) or [`init`](Self::init). All-zero bytes are a semaphore with no
/// permits and bound 0, on which every release fails: in a region, call
/// [`init`](Self::init) in `get_or_init`'s `init` closure. Any bytes are valid: a garbage
/// bound only changes which releases are refused.
///
/// # Examples
///
/// ```
/// use shmstate::{BoundedSemaphore, ReleaseError};
///
/// let s = BoundedSemaphore::new(2);
/// s.acquire();
/// s.release().unwrap();
/// assert!(matches!(s.release(), Err(ReleaseError::AboveBound { bound: 2 })));
/// assert_eq!(s.value(), 2);
/// ```
#[derive(Debug, Default)]
#[repr(C)]
pub struct BoundedSemaphore {
    sem: Semaphore,
    /// The largest count a release may produce; set once at initialisation.
    bound: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(BoundedSemaphore, [u32; 3]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(BoundedSemaphore, u32);

// SAFETY: 1. all-zero: no permits, bound 0 (documented: releases fail until `init`).
// 2. any three `u32`s are a valid state. 3. no pointers. 4. `#[repr(C)]`, asserted above.
// 5. atomics only.
unsafe impl SharedSized for BoundedSemaphore {
    const TAG: TypeTag = TypeTag::new(Kind::BOUNDED_SEMAPHORE, Elem::NONE);
}

impl BoundedSemaphore {
    /// A semaphore with `permits` free permits, and at most `permits`.
    pub fn new(permits: u32) -> Self {
        BoundedSemaphore {
            sem: Semaphore::new(permits),
            bound: AtomicU32::new(permits),
        }
    }

    /// Sets the count and the bound to `permits`: for an object in a region, in
    /// `get_or_init`'s `init` closure (before anyone else can see it). Calling it while
    /// others use the semaphore is not UB, but changes their permits under them.
    ///
    /// ```
    /// # use shmstate::{BoundedSemaphore, Region};
    /// let r = Region::anonymous(1 << 16).unwrap();
    /// let s = r.get_or_init("slots", |s: &BoundedSemaphore| s.init(3)).unwrap();
    /// assert_eq!((s.value(), s.bound()), (3, 3));
    /// ```
    pub fn init(&self, permits: u32) {
        // Relaxed: the region publishes the initialised object (its entry state word is
        // released after `init` returns).
        self.bound.store(permits, Ordering::Relaxed);
        self.sem.count.store(permits, Ordering::Relaxed);
    }

    /// As [`Semaphore::acquire`].
    #[inline]
    pub fn acquire(&self) {
        self.sem.acquire();
    }

    /// As [`Semaphore::try_acquire`].
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// As [`Semaphore::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no permit was free until the timeout; no permit was taken.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.sem.acquire_timeout(timeout)
    }

    /// As [`Semaphore::acquire_until`].
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no permit was free until `deadline`; no permit was taken.
    pub fn acquire_until(&self, deadline: Instant) -> Result<(), Timeout> {
        self.sem.acquire_until(deadline)
    }

    /// Gives back one permit.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::AboveBound`] if the count would exceed the bound; nothing changes.
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.release_n(1)
    }

    /// Gives back `n` permits at once.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::AboveBound`] if the count would exceed the bound; nothing changes.
    #[inline]
    pub fn release_n(&self, n: u32) -> Result<(), ReleaseError> {
        let bound = self.bound();
        self.sem
            .release_limited(n, bound, Steps::All)
            .map_err(|_| ReleaseError::AboveBound { bound })
    }

    /// The number of free permits now (a snapshot).
    pub fn value(&self) -> u32 {
        self.sem.value()
    }

    /// The bound: the most permits the semaphore can hold.
    pub fn bound(&self) -> u32 {
        // Relaxed: written once at initialisation, published by `new`'s owner or the
        // region; any value read is safe to use.
        self.bound.load(Ordering::Relaxed)
    }

    /// The underlying semaphore's raw words, for tests and diagnostics.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU32) {
        let (c, w) = self.sem.words();
        (c, w, &self.bound)
    }
}
