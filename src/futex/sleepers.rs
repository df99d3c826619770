//! A *sleepers word*: the futex word on which a [`Semaphore`](crate::Semaphore)'s
//! acquirers and a [`Condvar`](crate::Condvar)'s waiters sleep, which tells the waking
//! side whether anyone may be asleep, and which heals when a sleeper dies.
//!
//! # Layout
//!
//! | bits  | name         | meaning                                                     |
//! |-------|--------------|-------------------------------------------------------------|
//! | 0     | `SLEEPERS`   | someone may sleep on the word: a waker must wake            |
//! | 1     | `REGISTERED` | the word was last changed by a registration, not a bump     |
//! | 2..32 | ticks        | bumped (wrapping) by every [`bump`]                         |
//!
//! `0` is a word nobody sleeps on. Every value is valid: a wrong `SLEEPERS` costs one
//! needless wake (and is then cleared), or, if clear while someone sleeps, delays that
//! sleeper until its sleep slice (at most 10 ms: every untimed wait on a sleepers word
//! sleeps in slices and re-checks it) or its timeout runs out; never UB, never a hang of
//! the waker or the sleeper.
//!
//! # The protocol
//!
//! - A sleeper **registers** with [`register`] (`fetch_or(SLEEPERS | REGISTERED)`), then
//!   futex-waits on the value it got back, and only on such a value: a sleeper only ever
//!   sleeps on a value with both bits set. Registering again after every wakeup is cheap
//!   (the value does not change if both bits are set already).
//! - A waker that reads `SLEEPERS` set **bumps** the word ([`bump`]: ticks + 1,
//!   `REGISTERED` cleared, `SLEEPERS` kept), then wakes. The bump makes every sleeper that
//!   registered before it but is not asleep yet fail its futex wait (the value changed):
//!   it re-checks its condition instead of sleeping.
//! - If that wake reports **0 woken**, the waker [`clear`]s `SLEEPERS` by a
//!   compare-exchange from the value its bump produced. If that succeeds, nobody sleeps on
//!   the word: nobody was asleep at the wake (the kernel said so), and nobody fell asleep
//!   between the bump and the clear, because the word held the bumped value all along and
//!   no sleeper sleeps on a value with `REGISTERED` clear. Old values never come back
//!   (ticks only grow; after 2^30 bumps they wrap, as std's condvar sequence does), so no
//!   earlier registration can fall asleep later either. If it fails, somebody registered
//!   meanwhile and the bit is theirs.
//!
//! # Why this heals
//!
//! A sleeper never lowers anything, so one killed while asleep (or between registering
//! and sleeping) leaves nothing behind but `SLEEPERS`, which is only ever a "maybe". The
//! first wake after its death finds nobody (the kernel dropped the dead thread from the
//! futex queue) and clears the bit: one needless `FUTEX_WAKE`, then the no-syscall path
//! again. The price in normal use is the same single wake at the end of every contended
//! episode: the sleeper a wake woke does not know whether it was the last, so the bit
//! stays set until a wake finds nobody.
//!
//! A count of sleepers (raised before sleeping, lowered after) was the alternative: it
//! skips that wake, but a dead sleeper's increment can never be told apart from a live
//! sleeper that has registered and not yet slept, so it cannot be taken back safely.

use crate::sync::{AtomicU32, Ordering};

/// Someone may sleep on the word: a waker must wake.
pub(crate) const SLEEPERS: u32 = 1;
/// The word was last changed by a registration; sleepers sleep only on such values.
pub(crate) const REGISTERED: u32 = 1 << 1;
/// One tick of the bump counter (bits 2..32).
pub(crate) const TICK: u32 = 1 << 2;

/// Whether a waker that read `w` must wake.
#[inline]
pub(crate) const fn may_have_sleepers(w: u32) -> bool {
    w & SLEEPERS != 0
}

/// Registers the caller as a possible sleeper; returns the value to futex-wait on.
///
/// Relaxed: the callers order it themselves (the semaphore with a `SeqCst` fence after
/// it, the condvar by unlocking its mutex after it).
#[inline]
pub(crate) fn register(word: &AtomicU32) -> u32 {
    word.fetch_or(SLEEPERS | REGISTERED, Ordering::Relaxed) | SLEEPERS | REGISTERED
}

/// The bumped value of `w`.
#[inline]
pub(crate) const fn bumped(w: u32) -> u32 {
    w.wrapping_add(TICK) & !REGISTERED
}

/// If `SLEEPERS` is set, bumps the word (and clears `SLEEPERS` too if `clear_now`) and
/// returns the new value; `None` if `SLEEPERS` is clear (nothing to wake).
///
/// Relaxed: this decides nothing about the data the callers protect; a waker's own fence
/// or mutex orders what it published before, and the futex wait re-checks the word.
#[inline]
pub(crate) fn bump(word: &AtomicU32, clear_now: bool) -> Option<u32> {
    let off = if clear_now { SLEEPERS } else { 0 };
    word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
        may_have_sleepers(w).then_some(bumped(w) & !off)
    })
    .ok()
    .map(|w| bumped(w) & !off)
}

/// Clears `SLEEPERS` if the word still holds `bumped`, the value the caller's [`bump`]
/// produced before a wake that reported 0 woken. Returns whether it cleared.
///
/// Relaxed: the argument (module docs) rests on the futex queue and on the word's
/// modification order alone.
#[inline]
pub(crate) fn clear(word: &AtomicU32, bumped: u32) -> bool {
    word.compare_exchange(
        bumped,
        bumped & !SLEEPERS,
        Ordering::Relaxed,
        Ordering::Relaxed,
    )
    .is_ok()
}
