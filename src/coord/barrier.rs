//! [`Barrier`]: a reusable rendezvous of a fixed number of parties, that breaks on timeout.
//!
//! # The algorithm
//!
//! One futex word holds the number of parties arrived in the current round, the round's
//! generation, a "somebody may sleep" bit and a "broken" bit (see [`Barrier`]'s field).
//! Each arrival is one compare-exchange. The last party of a round (the *leader*) starts
//! the next generation (arrived = 0) and wakes the sleepers if the bit says there are any.
//! The others wait until the generation moves on. A completed round advances the
//! generation by one; [`reset`](Barrier::reset) advances it by half the generation ring
//! (`2^13`). A waiter that finds the generation `1..2^13` ahead of its round's returns `Ok`
//! (its round completed, maybe followed by more rounds of other parties: possible with more
//! processes than parties); `2^13` or more ahead, "broken" (its round was reset).
//!
//! Waiters sleep in slices (50 µs, doubling up to 10 ms) and re-read the word after each:
//! a leader (or `reset`, or a breaker) that died between its change and its wake costs
//! them at most one slice (the price: a long wait wakes once per 10 ms to look). A timed
//! wait checks its deadline after every return of the futex, so a peer that floods the
//! word with wakes cannot stretch it.
//!
//! Every waker keeps the "may sleep" bit in the word it writes and clears it only when its
//! wake found nobody, which proves that nobody sleeps (the argument is on `Barrier::wake`
//! in the source): a waker that died before waking leaves the bit for the next one.
//!
//! # Broken barriers
//!
//! Like Python's `Barrier`, a wait that times out *breaks* the barrier: that wait returns
//! [`BarrierError::Timeout`], and every wait of the current round and every later wait
//! returns [`BarrierError::Broken`] at once, until someone calls
//! [`reset`](Barrier::reset). [`abort`](Barrier::abort) breaks it the same way, without a
//! timeout.
//!
//! A party that dies is not detected: the barrier has no owner to probe. The others see it
//! only through their own timeouts (the first to time out breaks the barrier for all), so
//! processes that may die should use [`wait_timeout`](Barrier::wait_timeout).
//!
//! # Crash windows
//!
//! Failpoint tests: `tests/coord_dead_waker.rs` (the leader's steps; the hook is
//! `Barrier::wait_without_wake`), `tests/coord_wake_spam.rs` (a peer flooding the word
//! with wakes).
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Party: before its arrival | a round one party short | the others' timeouts (the first breaks the barrier); untimed waits wait on (see above) |
//! | Party: arrived (one compare-exchange), spinning or asleep | its arrival counted; `SLEEPERS` maybe set, nobody asleep (the kernel drops a dead sleeper) | the round completes without it; the next waker's wake finds nobody and clears the bit (one needless `FUTEX_WAKE`) |
//! | Leader: next round started (`SLEEPERS` kept), not yet woken | the round's sleepers asleep | each at the end of its slice (≤ 10 ms) returns `Ok`; at once the next waker (leader, `reset`, `abort`, breaker), which finds `SLEEPERS` and wakes |
//! | Breaker, `abort` or `reset`: word changed, not yet woken | the round's sleepers asleep | each at the end of its slice returns `Broken`; at once the next waker, as above |
//! | Any waker: woken, before clearing `SLEEPERS` (its wake found nobody) | `SLEEPERS` set, nobody asleep | the next waker: one needless `FUTEX_WAKE` |
//!
//! A waker *stopped* (SIGSTOP) after its change is the same as a killed one: the sleepers
//! return at the end of their slice.
//!
//! # Limits
//!
//! At most [`Barrier::MAX_PARTIES`] parties. The generation is 14 bits: a waiter that does
//! not look at the word while `2^13` or more further rounds complete or are reset (possible
//! only with more processes than parties) may misread its round's outcome. A reset
//! called after a round completed but before one of its waiters looked (the waiter had not
//! returned yet) makes that waiter return `Broken`.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use crate::futex;
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, spin_loop};
use crate::wait::{Slices, Timeout, deadline_passed, past};

/// Parties arrived in the current round.
const ARRIVED_MASK: u32 = 0xFFFF;
/// Position of the generation.
const GEN_SHIFT: u32 = 16;
/// The generation (14 bits, wrapping).
const GEN_BITS: u32 = 0x3FFF;
/// How far [`Barrier::reset`] advances the generation: half the ring, so that it is not
/// mistaken for a few completed rounds.
const RESET_STEP: u32 = 1 << 13;
const _: () = assert!(2 * RESET_STEP == GEN_BITS + 1);
/// A waiter may sleep on the word: the leader (or a breaker, or `reset`) must wake.
const SLEEPERS: u32 = 1 << 30;
/// The barrier is broken: every wait fails until `reset`.
const BROKEN: u32 = 1 << 31;

#[inline]
const fn arrived(w: u32) -> u32 {
    w & ARRIVED_MASK
}

#[inline]
const fn generation(w: u32) -> u32 {
    (w >> GEN_SHIFT) & GEN_BITS
}

/// The word of a fresh round `by` generations after `w`'s: nobody arrived, not broken,
/// `SLEEPERS` clear (the wakers that use it put `w`'s back).
#[inline]
const fn advanced(w: u32, by: u32) -> u32 {
    (generation(w).wrapping_add(by) & GEN_BITS) << GEN_SHIFT
}

#[inline]
const fn is_broken(w: u32) -> bool {
    w & BROKEN != 0
}

/// What a party waiting in round `round` makes of word `w`: `None` to keep waiting.
#[inline]
fn outcome(w: u32, round: u32) -> Option<Result<BarrierWaitResult, BarrierError>> {
    match generation(w).wrapping_sub(round) & GEN_BITS {
        0 if is_broken(w) => Some(Err(BarrierError::Broken)),
        0 => None,
        // Our round completed (then maybe more rounds, of more processes than parties).
        d if d < RESET_STEP => Some(Ok(BarrierWaitResult { leader: false })),
        // Reset (or garbage).
        _ => Some(Err(BarrierError::Broken)),
    }
}

/// Why a [`Barrier`] wait failed.
///
/// # Examples
///
/// ```
/// use shmstate::{Barrier, BarrierError, Timeout};
/// use std::time::Duration;
///
/// let b = Barrier::new(2);
/// assert_eq!(b.wait_timeout(Duration::from_millis(1)), Err(BarrierError::Timeout));
/// assert_eq!(b.wait(), Err(BarrierError::Broken));
/// b.reset();
/// // A function that waits on a barrier and on other timed calls can use `?` on both.
/// assert_eq!(BarrierError::from(Timeout), BarrierError::Timeout);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// The barrier is broken (a wait timed out, or it was reset while this wait was in
    /// progress, or it holds no valid party count): call [`Barrier::reset`] to reuse it.
    #[error("the barrier is broken")]
    Broken,
    /// This wait timed out, and broke the barrier for every other party.
    #[error("timed out waiting at the barrier; the barrier is now broken")]
    Timeout,
}

impl From<Timeout> for BarrierError {
    fn from(Timeout: Timeout) -> Self {
        BarrierError::Timeout
    }
}

/// The result of a successful [`Barrier`] wait.
///
/// # Examples
///
/// ```
/// use shmstate::Barrier;
///
/// let b = Barrier::new(1);
/// assert!(b.wait().unwrap().is_leader());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
}

impl BarrierWaitResult {
    /// Whether this party arrived last in its round (exactly one per round is).
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// A barrier for a fixed number of parties (threads or processes): Python's
/// `multiprocessing.Barrier`.
///
/// Each [`wait`](Self::wait) blocks until `parties` waits have arrived, then all return,
/// one of them as the leader; the barrier is then ready for the next round. A wait that
/// times out breaks it (see the [module docs](self)).
///
/// Layout: `#[repr(C)]`, two `u32`s: the state word and the party count. All-zero bytes
/// are a barrier with 0 parties, on which every wait fails with
/// [`BarrierError::Broken`]: in a region, call [`init`](Self::init) in `get_or_init`'s
/// `init` closure. Any bytes are valid: a garbage party count (0 or above
/// [`MAX_PARTIES`](Self::MAX_PARTIES)) reads as broken, a garbage arrival count ends a
/// round early.
///
/// # Examples
///
/// ```
/// use shmstate::Barrier;
///
/// let b = Barrier::new(3);
/// let leaders = std::thread::scope(|s| {
///     let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait().unwrap().is_leader())).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).filter(|&l| l).count()
/// });
/// assert_eq!(leaders, 1);
/// ```
#[derive(Default)]
#[repr(C)]
pub struct Barrier {
    /// The state word:
    ///
    /// | bits   | meaning                                                         |
    /// |--------|-----------------------------------------------------------------|
    /// | 0..16  | parties arrived in the current round                            |
    /// | 16..30 | generation: rounds completed (+1) and resets (+2^13), wrapping  |
    /// | 30     | `SLEEPERS`: a waiter may sleep on the word; wake on change      |
    /// |        | (cleared only by a waker whose wake found nobody)               |
    /// | 31     | `BROKEN`: every wait fails until `reset`                        |
    state: AtomicU32,
    /// The number of parties, `1..=MAX_PARTIES`; set once at initialisation.
    parties: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Barrier, [u32; 2]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Barrier, u32);

// SAFETY: 1. all-zero: a barrier of 0 parties (documented: broken until `init`). 2. any two
// `u32`s are a valid state (see the type docs). 3. no pointers. 4. `#[repr(C)]`, asserted
// above. 5. atomics only.
unsafe impl SharedSized for Barrier {
    const TAG: TypeTag = TypeTag::new(Kind::BARRIER, Elem::NONE);
}

impl Barrier {
    /// The largest number of parties.
    pub const MAX_PARTIES: u32 = ARRIVED_MASK;

    /// A barrier for `parties` parties.
    ///
    /// # Panics
    ///
    /// If `parties` is 0 or above [`MAX_PARTIES`](Self::MAX_PARTIES).
    pub fn new(parties: u32) -> Self {
        let b = Barrier::default();
        b.init(parties);
        b
    }

    /// Sets the party count and starts afresh: for an object in a region, in
    /// `get_or_init`'s `init` closure (before anyone else can see it). Calling it while
    /// others wait is not UB, but they may then read the barrier as broken.
    ///
    /// ```
    /// # use shmstate::{Barrier, Region};
    /// let r = Region::anonymous(1 << 16).unwrap();
    /// let b = r.get_or_init("round", |b: &Barrier| b.init(4)).unwrap();
    /// assert_eq!(b.parties(), 4);
    /// ```
    ///
    /// # Panics
    ///
    /// If `parties` is 0 or above [`MAX_PARTIES`](Self::MAX_PARTIES).
    pub fn init(&self, parties: u32) {
        assert!(
            (1..=Self::MAX_PARTIES).contains(&parties),
            "a barrier needs 1..={} parties, not {parties}",
            Self::MAX_PARTIES
        );
        // Relaxed: the region publishes the initialised object (or `new`'s owner does).
        self.parties.store(parties, Ordering::Relaxed);
        self.state.store(0, Ordering::Relaxed);
    }

    /// The number of parties (0 if not initialised).
    pub fn parties(&self) -> u32 {
        // Relaxed: written once at initialisation.
        self.parties.load(Ordering::Relaxed)
    }

    /// The number of parties waiting in the current round now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot.
        arrived(self.state.load(Ordering::Relaxed))
    }

    /// Whether the barrier is broken now (a snapshot).
    pub fn is_broken(&self) -> bool {
        // Relaxed: a snapshot.
        is_broken(self.state.load(Ordering::Relaxed))
    }

    /// Waits until all parties have arrived.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is or becomes broken (see the
    /// [module docs](self)), or has no valid party count.
    #[inline]
    pub fn wait(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(None, true)
    }

    /// [`wait`](Self::wait) for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Timeout`] if the timeout passed first (then the barrier is broken
    /// for everyone); otherwise as [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(Instant::now().checked_add(timeout), true)
    }

    /// [`wait`](Self::wait) until `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`wait_timeout`](Self::wait_timeout).
    pub fn wait_until(&self, deadline: Instant) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(Some(deadline), true)
    }

    /// Repairs a broken barrier: starts a new round with nobody arrived. Parties waiting in
    /// the current round return [`BarrierError::Broken`] (as in Python).
    pub fn reset(&self) {
        // Release pairs with the Acquire loads of waiters: they return after seeing this.
        let next = |w: u32| advanced(w, RESET_STEP) | (w & SLEEPERS);
        let old = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| Some(next(w)))
            .unwrap_or_else(|w| w);
        if old & SLEEPERS != 0 {
            self.wake(next(old));
        }
    }

    /// Breaks the barrier (Python's `Barrier.abort`): the waits of the current round and
    /// every later wait return [`BarrierError::Broken`] until [`reset`](Self::reset). For a
    /// party that cannot arrive (it failed), so that the others need not wait out their
    /// timeouts.
    ///
    /// ```
    /// use shmstate::{Barrier, BarrierError};
    ///
    /// let b = Barrier::new(2);
    /// b.abort();
    /// assert_eq!(b.wait(), Err(BarrierError::Broken));
    /// b.reset();
    /// assert!(!b.is_broken());
    /// ```
    pub fn abort(&self) {
        // Release pairs with the Acquire loads of the waiters we break, as in `break_round`.
        let old = self.state.fetch_or(BROKEN, Ordering::Release);
        if old & SLEEPERS != 0 {
            self.wake(old | BROKEN);
        }
    }

    /// For tests of a leader that dies between starting the next round and waking the
    /// others: [`wait`](Self::wait), except that the leader does not wake. Not part of the
    /// API.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn wait_without_wake(&self) -> Result<BarrierWaitResult, BarrierError> {
        self.wait_inner(None, false)
    }

    /// An arrival; the leader wakes the others only if `wake` (always but in tests).
    #[inline]
    fn wait_inner(
        &self,
        deadline: Option<Instant>,
        wake: bool,
    ) -> Result<BarrierWaitResult, BarrierError> {
        let parties = self.parties();
        if parties == 0 || parties > Self::MAX_PARTIES {
            return Err(BarrierError::Broken);
        }
        // Relaxed: only picks the expected value; the compare-exchanges order.
        let mut w = self.state.load(Ordering::Relaxed);
        loop {
            if is_broken(w) {
                return Err(BarrierError::Broken);
            }
            // A garbage count at or above `parties` ends the round now. `arrived < 2^16`
            // and `parties < 2^16`, so `+ 1` does not reach the generation bits unless the
            // round ends here.
            if arrived(w) + 1 >= parties {
                // AcqRel: Acquire pairs with the Release arrivals of this round (all in
                // the release sequence we read from), Release with the waiters' Acquire
                // loads: everything every party did before arriving happens before every
                // party returns.
                let new = advanced(w, 1) | (w & SLEEPERS);
                match self
                    .state
                    .compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => {
                        if wake && w & SLEEPERS != 0 {
                            self.wake(new);
                        }
                        return Ok(BarrierWaitResult { leader: true });
                    }
                    Err(now) => w = now,
                }
            } else {
                // Release: pairs with the leader's Acquire (above).
                match self
                    .state
                    .compare_exchange(w, w + 1, Ordering::Release, Ordering::Relaxed)
                {
                    Ok(_) => return self.wait_round(generation(w), deadline),
                    Err(now) => w = now,
                }
            }
        }
    }

    /// Waits for the end of round `round`, which this party has joined.
    #[cold]
    fn wait_round(
        &self,
        round: u32,
        deadline: Option<Instant>,
    ) -> Result<BarrierWaitResult, BarrierError> {
        // About `PEER_SPIN_NS` (10 µs): the other parties' arrivals are a peer's next
        // step, as a channel receiver waits for (`wait.rs`). A timed wait looks at its
        // deadline every 32 looks, so that a deadline shorter than the spin is kept.
        for i in 0..crate::wait::spins_for(crate::wait::PEER_SPIN_NS) {
            // Acquire: pairs with the leader's (or `reset`'s, or a breaker's) Release.
            if let Some(r) = outcome(self.state.load(Ordering::Acquire), round) {
                return r;
            }
            if i % 32 == 31 && past(deadline) {
                return self.break_round(round);
            }
            spin_loop();
        }
        // Acquire: as above (and below).
        let mut w = self.state.load(Ordering::Acquire);
        let mut slices = Slices::new();
        loop {
            if let Some(r) = outcome(w, round) {
                return r;
            }
            if w & SLEEPERS == 0 {
                // Acquire (both ways): we may return on the value we read, which then
                // pairs with the leader's Release. The bit itself only tells others to
                // wake; the futex wait re-checks the word atomically.
                match self.state.compare_exchange(
                    w,
                    w | SLEEPERS,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => w |= SLEEPERS,
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            // A bounded slice even without a deadline: a leader (or breaker, or `reset`)
            // killed between its change and its wake costs us one slice (the deadline is
            // checked here after every wake, spurious ones included).
            let Some(slice) = slices.next(deadline) else {
                return self.break_round(round);
            };
            if !futex::wait(&self.state, w, slice) && deadline_passed(deadline) {
                return self.break_round(round);
            }
            w = self.state.load(Ordering::Acquire);
        }
    }

    /// After a timeout in round `round`: breaks it, unless it ended meanwhile.
    #[cold]
    fn break_round(&self, round: u32) -> Result<BarrierWaitResult, BarrierError> {
        // Acquire: as in `wait_round`.
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            if let Some(r) = outcome(w, round) {
                return r;
            }
            // Release pairs with the Acquire loads of the waiters we break; Acquire (on
            // failure) because we may return on the value we read.
            match self
                .state
                .compare_exchange(w, w | BROKEN, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if w & SLEEPERS != 0 {
                        self.wake(w | BROKEN);
                    }
                    return Err(BarrierError::Timeout);
                }
                Err(now) => w = now,
            }
        }
    }

    /// Wakes every sleeper after a change that made the word `new` and kept `SLEEPERS`;
    /// clears `SLEEPERS` if the wake found nobody.
    ///
    /// Clearing is safe then: nobody sleeps on `new` (a waiter sleeps only in a live round
    /// it has arrived in, so on a word with at least one arrival and without `BROKEN`,
    /// while every `new` starts a round with no arrival or is broken), so nobody can have
    /// fallen asleep since our change while the word still holds `new`, and those asleep
    /// before it would have been counted by the wake. The word comes back to `new` only
    /// after the generation wraps (2^14 rounds during our wake): then a sleeper may lose
    /// the bit, which costs it one sleep slice.
    #[cold]
    fn wake(&self, new: u32) {
        if futex::wake_all(&self.state) == 0 {
            // Relaxed: only the flag for later wakers; the argument above rests on the
            // futex queue and the word's modification order alone.
            let _ = self.state.compare_exchange(
                new,
                new & !SLEEPERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The raw words `(state, parties)`, for tests and diagnostics (e.g. writing hostile
    /// bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn words(&self) -> (&AtomicU32, &AtomicU32) {
        (&self.state, &self.parties)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("is_broken", &self.is_broken())
            .finish()
    }
}
