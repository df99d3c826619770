//! [`Event`]: a flag that threads and processes wait on until it is set.
//!
//! # The algorithm
//!
//! One futex word holds the flag, a "somebody may sleep" bit, and a generation counter
//! bumped by every `set` that changes the flag from clear to set (see [`Event`]'s field).
//! A waiter that finds the flag clear sets `WAITERS` and futex-waits on the word; `set`
//! changes the word in one read-modify-write that keeps `WAITERS`, and calls `FUTEX_WAKE`
//! (all) only if `WAITERS` was set. Every sleeper slept on a word with `WAITERS` set, so
//! the `set` that changes that word sees the bit and wakes it: no wakeup is lost.
//!
//! Nobody lowers `WAITERS` but a `set` whose wake reported that it woke nobody, which
//! proves that nobody sleeps (nobody sleeps on a word with the flag set; the argument is
//! on `Event::wake` in the source). So the first `set` after a contended episode makes one
//! wake that finds nobody, and later ones make no syscall again; and a setter that dies
//! before its wake leaves the bit for the next `set` (even on the set event) to act on.
//!
//! Sleeps are bounded: a waiter sleeps in slices (50 µs, doubling up to 10 ms) and re-checks
//! the word after each, so a setter that died between its read-modify-write and its wake
//! costs the sleepers at most one slice (the price: a long wait wakes once per 10 ms to
//! look). A timed wait checks its deadline every 32 looks of its spin (returning without
//! setting `WAITERS`) and after every return of the futex, so neither its spin nor a
//! peer that floods the word with wakes stretches it.
//!
//! The generation makes `set(); clear()` in quick succession still release the waiters
//! that were waiting at the time (as `threading.Event` does): a waiter that wakes to a
//! cleared flag with a newer generation returns (`Ok` from a timed wait).
//!
//! # Crash windows
//!
//! The event has no owner: a dead process is never waited for, only its unfinished step
//! matters. Failpoint tests: `tests/coord_dead_waker.rs` (the setter's steps; the hook is
//! `Event::set_without_wake`), `tests/coord_wake_spam.rs` (a peer flooding the word with
//! wakes).
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Waiter: spinning (loads only) | nothing | - |
//! | Waiter: `WAITERS` set, or asleep in the futex | `WAITERS` set, nobody asleep (the kernel drops a dead sleeper) | the next `set`: its wake finds nobody and clears the bit (one needless `FUTEX_WAKE`) |
//! | Setter: read-modify-write done (flag set, generation bumped, `WAITERS` kept), not yet woken | the flag set, sleepers asleep | every sleeper at the end of its slice (≤ 10 ms); at once the next `set` (even on the set event) or `clear` + `set`, which finds `WAITERS` and wakes |
//! | Setter: woken, before clearing `WAITERS` (its wake found nobody) | `WAITERS` set, nobody asleep | the next `set`: one needless `FUTEX_WAKE` |
//! | `clear`: one read-modify-write | nothing | - |
//!
//! A setter *stopped* (SIGSTOP) after its read-modify-write is the same as a killed one:
//! its sleepers return at the end of their slice.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use crate::futex;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, spin_loop};
use crate::wait::{Slices, Timeout, deadline_passed, past};

/// How many looks (each a pause and a load) a waiter spins before it announces itself and
/// sleeps: about [`PEER_SPIN_NS`](crate::wait::PEER_SPIN_NS) (10 µs) on any machine (0
/// under loom), as a channel receiver's. That outlasts a peer's futex wake-up, so that two
/// processes that signal each other in turn stop sleeping after one exchange instead of
/// waking each other through the kernel at every signal (BENCHMARKS.md, "Event and queue
/// waits", and "Spins measured in time"). A waiter that does sleep has spent about 10 µs
/// of CPU first.
fn wait_spins() -> u32 {
    crate::wait::spins_for(crate::wait::PEER_SPIN_NS)
}

/// The flag is set.
const SET: u32 = 1;
/// A waiter may sleep on the word: `set` must wake.
const WAITERS: u32 = 1 << 1;
/// The generation's unit: bits 2..32 count (wrapping) the clear-to-set transitions.
const GEN_ONE: u32 = 1 << 2;

#[inline]
const fn is_set(w: u32) -> bool {
    w & SET != 0
}

#[inline]
const fn generation(w: u32) -> u32 {
    w >> 2
}

/// An event flag shared by threads and processes: Python's `multiprocessing.Event`.
///
/// [`set`](Self::set) sets the flag and wakes every waiter; [`clear`](Self::clear) clears
/// it; [`wait`](Self::wait) returns once it is set. `set` makes no syscall when nobody
/// waits, and `wait` on a set event is one load. See the [module docs](self).
///
/// Layout: `#[repr(C)]`, one `u32`. All-zero bytes are a clear event; any bytes are a
/// valid event (the flag is bit 0).
///
/// # Examples
///
/// ```
/// use shmstate::{Event, Timeout};
/// use std::time::Duration;
///
/// let ready = Event::new();
/// assert_eq!(ready.wait_timeout(Duration::from_millis(1)), Err(Timeout));
/// std::thread::scope(|s| {
///     s.spawn(|| ready.set());
///     ready.wait();
/// });
/// assert!(ready.is_set());
/// ```
#[derive(Default)]
#[repr(C)]
pub struct Event {
    /// The state word:
    ///
    /// | bits  | meaning                                                          |
    /// |-------|------------------------------------------------------------------|
    /// | 0     | `SET`: the flag                                                  |
    /// | 1     | `WAITERS`: a waiter may sleep on the word; `set` must wake (and  |
    /// |       | clears it only if its wake found nobody)                         |
    /// | 2..32 | generation: clear-to-set transitions, wrapping                   |
    ///
    /// `0` is a clear event nobody waits on.
    state: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Event, u32);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Event, u32);

// SAFETY: 1. all-zero: clear, no waiters. 2. every `u32` is a valid state (see the field).
// 3. no pointers. 4. `#[repr(C)]`, asserted above. 5. one atomic.
unsafe impl SharedSized for Event {
    const TAG: TypeTag = TypeTag::new(Kind::EVENT, Elem::NONE);
}

impl Event {
    /// A clear event.
    pub fn new() -> Self {
        Event {
            state: AtomicU32::new(0),
        }
    }

    /// Sets the flag and wakes every waiter. Makes a syscall only if one may sleep.
    #[inline]
    pub fn set(&self) {
        let (old, new) = self.set_flag();
        if old & WAITERS != 0 {
            self.wake(new);
        }
    }

    /// For tests of a setter that dies between setting the flag and waking: `set` without
    /// the wake. Not part of the API.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn set_without_wake(&self) {
        let _ = self.set_flag();
    }

    /// The read-modify-write of `set`: sets the flag (and bumps the generation) if it was
    /// clear, keeping `WAITERS`. Returns the word before and after.
    #[inline]
    fn set_flag(&self) -> (u32, u32) {
        let next = |w: u32| {
            if is_set(w) {
                w
            } else {
                w.wrapping_add(GEN_ONE) | SET
            }
        };
        // Release pairs with the Acquire loads in `wait*`/`is_set`: what we wrote before
        // `set` happens before what a waiter does after seeing the flag (or the new
        // generation: `clear`'s read-modify-write continues our release sequence).
        let old = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| Some(next(w)))
            .unwrap_or_else(|w| w);
        (old, next(old))
    }

    /// Wakes every sleeper after a `set` that made the word `new`; clears `WAITERS` if the
    /// wake found nobody.
    ///
    /// Clearing is safe then: nobody sleeps on a word with the flag set (a waiter returns
    /// on it), so nobody can have fallen asleep since our read-modify-write while the word
    /// still holds `new`, and those asleep before it would have been counted by the wake.
    /// The word cannot leave `new` and come back to it (a `clear` then a `set` bumps the
    /// generation), but after 2^30 such cycles during our wake it could: then a sleeper
    /// may lose the bit, which costs it one sleep slice.
    #[cold]
    fn wake(&self, new: u32) {
        if futex::wake_all(&self.state) == 0 {
            // Relaxed: only the flag for later `set`s; the argument above rests on the
            // futex queue and the word's modification order alone.
            let _ = self.state.compare_exchange(
                new,
                new & !WAITERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Clears the flag: later waits block until the next [`set`](Self::set).
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing; it keeps `set`'s release sequence going
        // (it is a read-modify-write).
        self.state.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Whether the flag is set now.
    #[inline]
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the Release in `set`.
        is_set(self.state.load(Ordering::Acquire))
    }

    /// Waits until the flag is set (returns at once if it is).
    #[inline]
    pub fn wait(&self) {
        // Acquire: pairs with the Release in `set`.
        let w = self.state.load(Ordering::Acquire);
        if !is_set(w) {
            self.wait_slow(w, None);
        }
    }

    /// [`wait`](Self::wait), for at most `timeout`. `Ok` if the flag was set (or was set
    /// and cleared again while we waited). A `timeout` too large for an [`Instant`] waits
    /// as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if the timeout passed first (at least `timeout` has passed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{Event, Timeout};
    ///
    /// let e = Event::new();
    /// assert_eq!(e.wait_timeout(Duration::from_millis(1)), Err(Timeout));
    /// e.set();
    /// assert_eq!(e.wait_timeout(Duration::from_millis(1)), Ok(()));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// [`wait`](Self::wait), until `deadline` at most; `Ok` as for
    /// [`wait_timeout`](Self::wait_timeout).
    ///
    /// # Errors
    ///
    /// [`Timeout`] if `deadline` passed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmstate::{Event, Timeout};
    ///
    /// let e = Event::new();
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert_eq!(e.wait_until(deadline), Err(Timeout));
    /// assert!(Instant::now() >= deadline);
    /// ```
    pub fn wait_until(&self, deadline: Instant) -> Result<(), Timeout> {
        self.wait_deadline(Some(deadline))
    }

    /// A timed wait (`None`: a deadline too far to represent, as long as it takes).
    #[inline]
    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<(), Timeout> {
        // Acquire: pairs with the Release in `set`.
        let w = self.state.load(Ordering::Acquire);
        done_or_timeout(is_set(w) || self.wait_slow(w, deadline))
    }

    /// The contended wait: spin, announce `WAITERS`, then sleep in slices. Returns whether
    /// the flag was set (or the generation moved on); `false` only once `deadline` passed.
    /// `w`: the word the caller found the flag clear in (Acquire, pairing with the
    /// Release in `set`, as every load below), whose generation the wait starts from, so
    /// that a `set(); clear()` since that look releases it.
    #[cold]
    fn wait_slow(&self, mut w: u32, deadline: Option<Instant>) -> bool {
        let start = generation(w);
        let done = |w: u32| is_set(w) || generation(w) != start;
        for i in 0..wait_spins() {
            if done(w) {
                return true;
            }
            // A timed wait keeps a deadline shorter than the spin (a look at the clock
            // every 32 looks, 0.4 to 1 µs on the machines BENCHMARKS.md reports).
            if i % 32 == 31 && past(deadline) {
                return done(self.state.load(Ordering::Acquire));
            }
            spin_loop();
            w = self.state.load(Ordering::Acquire);
        }
        let mut slices = Slices::new();
        loop {
            if done(w) {
                return true;
            }
            if w & WAITERS == 0 {
                // Acquire (both ways): we may return on the value we read, which then
                // pairs with the Release in `set`. The bit itself only tells `set` to
                // wake; the futex wait re-checks the word atomically.
                match self.state.compare_exchange(
                    w,
                    w | WAITERS,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => w |= WAITERS,
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            // A bounded slice even without a deadline: a setter killed between its
            // read-modify-write and its wake costs us one slice (the deadline is checked
            // here after every wake, spurious ones included).
            let Some(slice) = slices.next(deadline) else {
                return done(self.state.load(Ordering::Acquire));
            };
            if !futex::wait(&self.state, w, slice) && deadline_passed(deadline) {
                return done(self.state.load(Ordering::Acquire));
            }
            w = self.state.load(Ordering::Acquire);
        }
    }

    /// The raw word, for tests and diagnostics (e.g. writing hostile bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn word(&self) -> &AtomicU32 {
        &self.state
    }
}

/// A timed wait's outcome: `Ok` if the flag was seen set, else [`Timeout`].
#[inline]
fn done_or_timeout(done: bool) -> Result<(), Timeout> {
    if done { Ok(()) } else { Err(Timeout) }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}
