//! The one blocking policy: how long a wait spins, how it sleeps, when it gives up, and
//! when it asks whether the thread it waits for is still alive. Every blocking path in the
//! crate (locks, seqlock writers and readers, semaphores, events, barriers, the queue, the
//! condvar, the region directory) takes its numbers and its owner probe from here.
//!
//! The rules:
//!
//! - **Spin, then sleep.** A contended wait first spins (at most `SPIN_LIMIT` pauses,
//!   with loads only), then futex-waits.
//! - **Sleep in slices.** No wait sleeps unboundedly: it sleeps in slices of [`FIRST_SLICE`]
//!   (50 µs) doubling to [`PROBE_SLICE`] (10 ms), re-checking its condition after each, so a
//!   waker that died between its state change and its wake costs a waiter at most one
//!   slice. (Under loom waits are unbounded: a loom timed wait returns at once and loom
//!   threads never die, so a missing wake shows as a loom deadlock instead of a hidden
//!   spin.)
//! - **Probe once a slice has passed.** A waiter asks the kernel whether the holder's
//!   thread is alive (a `Tid` probe: `kill(tid, 0)` plus a `/proc` zombie check, both
//!   syscalls) only once a whole slice has passed since the wait began or last probed,
//!   woken or not (`Slices::probe_now`). Ordinary contention, where the holder's unlock
//!   wakes the waiter first, costs no probe; a peer that keeps waking the word cannot put
//!   the probe off.
//! - **Deadlines are total.** A timed wait checks its deadline after every wake, spurious or
//!   not (`Slices::next` refuses a slice past it), and probes once more when the deadline
//!   passes, so a deadline shorter than a slice still recovers a dead holder.
//! - **`try_` calls never sleep**: they make at most `TRY_LIMIT` compare-exchange
//!   attempts (or spin briefly) and never wait for a live holder.

use core::time::Duration;
use std::time::Instant;

pub(crate) use crate::owner::Tid;

/// Spin iterations (`spin_loop` pauses; the mutex loads the word between growing runs of
/// them, other primitives once per pause) before a contended wait sleeps. None under loom:
/// there a spin is a yield, which forces a thread switch and so hides interleavings from
/// loom's bounded search (it hid a lost wakeup in the broken-mutex model) without testing
/// anything the loads around it do not.
pub(crate) const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 100 };

/// Compare-exchange attempts of a `try_*` operation before it reports "would block": a
/// word that keeps changing under us means others hold the lock in turn.
pub(crate) const TRY_LIMIT: u32 = 100;

/// The longest a waiter sleeps before re-checking its condition (and, if a slice has
/// passed, probing the holder). Slices start at [`FIRST_SLICE`] and double up to this, so
/// a holder killed just before a waiter arrived (it still reads alive for a moment) is
/// found quickly, and a holder that holds long costs a waiter one probe per 10 ms.
#[cfg(not(loom))]
pub const PROBE_SLICE: Option<Duration> = Some(Duration::from_millis(10));
/// The longest a waiter sleeps before re-checking (unbounded under loom).
#[cfg(loom)]
pub const PROBE_SLICE: Option<Duration> = None;
/// The first sleep slice of a wait.
pub const FIRST_SLICE: Duration = Duration::from_micros(50);

/// The growing sequence of sleep slices of one wait, and its probe clock.
pub(crate) struct Slices {
    next: Duration,
    /// The last slice handed out (`FIRST_SLICE` before the first).
    last: Duration,
    /// When the wait started, or last probed.
    since: Instant,
}

impl Slices {
    pub(crate) fn new() -> Self {
        Slices {
            next: FIRST_SLICE,
            last: FIRST_SLICE,
            since: Instant::now(),
        }
    }

    /// Whether a whole slice has passed since the wait started or last probed, woken or
    /// not: then the waiter should probe the holder. A peer that keeps waking the word (a
    /// live waker, or a hostile one) must not put the probe off forever, as a rule of
    /// "probe only after a wait that timed out" would. Never under loom, whose waits have
    /// no time (models probe before their first sleep instead).
    pub(crate) fn probe_due(&self) -> bool {
        PROBE_SLICE.is_some() && self.since.elapsed() >= self.last
    }

    /// Whether to probe the holder now: if `forced` (a slice ran out without a wake, or,
    /// under loom, the one probe before the first sleep) or a whole slice has passed
    /// ([`probe_due`](Self::probe_due)). Saying yes clears `forced` and restarts the clock.
    pub(crate) fn probe_now(&mut self, forced: &mut bool) -> bool {
        if core::mem::take(forced) || self.probe_due() {
            self.since = Instant::now();
            true
        } else {
            false
        }
    }

    /// The duration of the next wait towards `deadline`, or `None` if the deadline has
    /// passed. `Some(None)` is an unbounded wait (only under loom without a deadline).
    pub(crate) fn next(&mut self, deadline: Option<Instant>) -> Option<Option<Duration>> {
        let slice = PROBE_SLICE.map(|max| {
            let s = self.next;
            self.next = (s * 2).min(max);
            self.last = s;
            s
        });
        match deadline {
            None => Some(slice),
            Some(d) => {
                let left = d.checked_duration_since(Instant::now())?;
                if left.is_zero() {
                    return None;
                }
                Some(Some(slice.map_or(left, |s| s.min(left))))
            }
        }
    }
}

/// Whether a wait that timed out means `deadline` has passed. Under loom a timed wait times
/// out at once and stands for "the deadline passed".
pub(crate) fn deadline_passed(deadline: Option<Instant>) -> bool {
    match deadline {
        None => false,
        Some(_) if cfg!(loom) => true,
        Some(d) => Instant::now() >= d,
    }
}

/// Whether the holder named by the TID bits `bits` of a word (read from shared memory) is
/// gone: bits that name no possible thread ([`Tid::parse`] refuses them) answer at once,
/// others are probed (a syscall: slow paths only).
#[inline]
pub(crate) fn holder_is_dead(bits: u32) -> bool {
    Tid::parse(bits).is_none_or(Tid::is_dead)
}
