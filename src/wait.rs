//! The one blocking policy: how long a wait spins, how it sleeps, when it gives up, and
//! when it asks whether the thread it waits for is still alive. Every blocking path in the
//! crate (locks, seqlock writers and readers, semaphores, events, barriers, the queue, the
//! condvar, the region directory) takes its numbers and its owner probe from here.
//!
//! The rules:
//!
//! - **Spin, then sleep.** A contended wait first spins (at most `SPIN_LIMIT` pauses,
//!   with loads only), then futex-waits. A wait for a peer's next step rather than for a
//!   lock (a channel's receiver, a queue's `pop`, an event's waiter, a barrier's party)
//!   spins for a time instead, `PEER_SPIN_NS` (10 µs), to outlast a peer's wake-up, and a
//!   channel sender waiting for room `ROOM_SPIN_NS` (5 µs): counted in pauses measured
//!   once per process (`spins_for`), since a pause lasts 12 ns on one machine and 26 on
//!   another.
//! - **Sleep in slices.** No wait sleeps unboundedly: it sleeps in slices of [`FIRST_SLICE`]
//!   (50 µs) doubling to a cap, re-checking its condition after each, so a waker that died
//!   between its state change and its wake costs a waiter at most one slice. A wait for a
//!   word to change (an event, a permit, a notify) caps at [`PROBE_SLICE`] (10 ms); a wait
//!   for a holder it probes (a lock's owner, a seqlock's writer, a draining writer's
//!   readers) caps at [`HOLDER_SLICE`] (800 µs) where its probes are cheap (see below), so
//!   it notices a death within a millisecond however long it has waited (a thread-group
//!   leader that exited beside running threads, which only a full probe sees, within ten
//!   slices); without pidfds (Linux before 6.9) it caps at 10 ms as a word wait does. (Under loom waits are unbounded: a loom timed
//!   wait returns at once and loom threads never die, so a missing wake shows as a loom
//!   deadlock instead of a hidden spin.)
//! - **Probe once a slice has passed.** A waiter asks the kernel whether the holder's
//!   thread is alive only once a whole slice has passed since the wait began or last
//!   probed, woken or not (`Slices::probe_now`). Ordinary contention, where the holder's unlock
//!   wakes the waiter first, costs no probe; a peer that keeps waking the word cannot put
//!   the probe off. A probe is a `Tid` probe (`kill(tid, 0)` plus a `/proc` zombie check,
//!   about 4 µs) until the same holder has read alive twice; then the wait opens a pidfd for
//!   it, and further probes are a `poll` (about 0.2 µs), with a full probe every tenth and
//!   whenever the pidfd says the watched thread exited (`owner::Watch`).
//! - **Deadlines are total.** A timed wait checks its deadline after every wake, spurious or
//!   not (`Slices::next` refuses a slice past it), and probes once more when the deadline
//!   passes, so a deadline shorter than a slice still recovers a dead holder.
//! - **`try_` calls never sleep**: they make at most `TRY_LIMIT` compare-exchange
//!   attempts (or spin briefly) and never wait for a live holder.

use core::time::Duration;
use std::time::Instant;

pub(crate) use crate::owner::{Tid, Watch};
use crate::sync::{AtomicU32, Ordering, spin_loop};

/// Sets the waiting flag `flag` in `word`, whose value the caller last read as `*seen`,
/// unless `*seen` has it already: the step of a contended loop before it sleeps on a word
/// (or a notification word) that the unlocker clears or bumps to wake it.
///
/// `true` once the flag is set and `*seen` is the word with it; `false` if the word had
/// changed (then `*seen` is its new value, for the caller to examine again).
#[inline]
pub(crate) fn flag_waiting(word: &AtomicU32, seen: &mut u32, flag: u32) -> bool {
    if *seen & flag != 0 {
        return true;
    }
    // Relaxed: the flag only tells the unlocker to wake; the futex wait that follows
    // re-checks its word atomically (or, for a notification word, the caller re-reads the
    // state after reading it).
    match word.compare_exchange(*seen, *seen | flag, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            *seen |= flag;
            true
        }
        Err(now) => {
            *seen = now;
            false
        }
    }
}

/// A timed call's deadline passed before it could complete.
///
/// The one spelling of a timeout across the crate: a call whose only failure is its
/// deadline returns `Result<_, Timeout>`, and a call that can also fail in other ways has an
/// error enum with a unit variant named `Timeout` that converts from this type.
///
/// # Examples
///
/// ```
/// use shmstate::Timeout;
///
/// let r: Result<(), Timeout> = Err(Timeout);
/// assert_eq!(r.unwrap_err().to_string(), "timed out");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("timed out")]
pub struct Timeout;

/// Spin iterations (`spin_loop` pauses; the mutex loads the word between growing runs of
/// them, other primitives once per pause) before a contended wait sleeps. None under loom:
/// there a spin is a yield, which forces a thread switch and so hides interleavings from
/// loom's bounded search (it hid a lost wakeup in the broken-mutex model) without testing
/// anything the loads around it do not.
pub(crate) const SPIN_LIMIT: u32 = if cfg!(loom) { 0 } else { 100 };

/// Spins `SPIN_LIMIT` pauses in all, calling `ready` after 1, 2, 4, 8, then every 16
/// pauses (about 10 looks instead of 100: each look at a contended word pulls its cache
/// line away from the process that is about to write it); `true` as soon as `ready` is.
/// The mutex's own spin follows the same schedule.
#[inline]
pub(crate) fn spin_with_backoff(mut ready: impl FnMut() -> bool) -> bool {
    let mut spins = SPIN_LIMIT;
    let mut step = 1;
    loop {
        if ready() {
            return true;
        }
        if spins == 0 {
            return false;
        }
        let n = step.min(spins);
        spins -= n;
        step = (step * 2).min(16);
        for _ in 0..n {
            spin_loop();
        }
    }
}

/// How long a wait for a peer's next step spins before it sleeps, in nanoseconds: a
/// channel's receiver, a queue's `pop`, an event's waiter, a barrier's party. Long
/// enough to outlast a peer's futex wake-up, so that two processes that answer each other
/// stop sleeping after one exchange instead of waking each other through the kernel at
/// every message (BENCHMARKS.md, "Spins measured in time"). A wait that does sleep has
/// spent this much CPU first.
pub(crate) const PEER_SPIN_NS: u32 = 10_000;

/// How long a channel sender that finds the ring full spins before it sleeps, in
/// nanoseconds: half a receiver's. Long enough for a receiver to copy a 16 KiB message
/// out and free its room, so that a stream of large messages through a small ring does
/// not put the two sides to sleep in turn (BENCHMARKS.md, "Spins measured in time").
pub(crate) const ROOM_SPIN_NS: u32 = 5_000;

/// `spin_loop` pauses that last about `ns` nanoseconds on this machine, so that a spin
/// lasts as long wherever it runs: a pause costs 12 ns on one machine BENCHMARKS.md
/// reports and 26 ns on another, and more than 100 on some. At least [`SPIN_LIMIT`] and
/// at most 64 times that ([`spins_in`]; each look's loads add to its pause, so the spin
/// lasts at least about `ns`). The first call in a process times 4 runs of 32 pauses (the
/// fastest run counts: a run cut by preemption only reads slower) and caches the result;
/// every later call is a load and a division. Called only where a wait is about to spin,
/// never on a `try_` call's path. 0 under loom, as [`SPIN_LIMIT`]; under Miri, whose
/// clock is virtual, as if a pause took 50 ns (the counts of before: 200 pauses for 10
/// µs).
pub(crate) fn spins_for(ns: u32) -> u32 {
    if cfg!(loom) {
        return 0;
    }
    spins_in(ns, if cfg!(miri) { 50_000 } else { pause_ps() })
}

/// Pauses of `ps` picoseconds each that last `ns` nanoseconds, within [`SPIN_LIMIT`]..=64
/// times that.
fn spins_in(ns: u32, ps: u32) -> u32 {
    let spins = u64::from(ns) * 1000 / u64::from(ps.max(1));
    spins.clamp(u64::from(SPIN_LIMIT), u64::from(64 * SPIN_LIMIT)) as u32
}

/// Picoseconds per `spin_loop` pause on this machine, measured once per process
/// ([`spins_for`]), within 1 ns..1 µs.
#[cfg(not(loom))]
fn pause_ps() -> u32 {
    /// 0 until measured. Threads that find it 0 at once each measure; the first to
    /// store wins and every thread uses its value, so the count never changes after the
    /// first use.
    static PAUSE_PS: AtomicU32 = AtomicU32::new(0);
    // Relaxed (here and below): a number alone; no other memory depends on it.
    let ps = PAUSE_PS.load(Ordering::Relaxed);
    if ps != 0 {
        return ps;
    }
    let ps = measure_pause_ps();
    match PAUSE_PS.compare_exchange(0, ps, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => ps,
        Err(first) => first,
    }
}

/// Under loom no spin is timed.
#[cfg(loom)]
fn pause_ps() -> u32 {
    1_000
}

/// Times 4 runs of 32 pauses; the fastest, in picoseconds per pause, within 1 ns..1 µs.
#[cold]
#[cfg(not(loom))]
fn measure_pause_ps() -> u32 {
    const RUN: u32 = 32;
    let fastest = (0..4)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..RUN {
                spin_loop();
            }
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    let ps = fastest.as_nanos().saturating_mul(1000) / u128::from(RUN);
    ps.clamp(1_000, 1_000_000) as u32
}

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

/// The longest sleep slice of a wait for a holder that it probes (a lock's owner, a
/// seqlock's writer): short, so that a waiter that has waited long still notices the
/// holder's death within a millisecond. Its probes are cheap: a `poll` of a pidfd for the
/// holder (see `owner::Watch`).
#[cfg(not(loom))]
pub const HOLDER_SLICE: Option<Duration> = Some(Duration::from_micros(800));
/// The longest sleep slice of a wait for a holder (unbounded under loom).
#[cfg(loom)]
pub const HOLDER_SLICE: Option<Duration> = None;

/// The growing sequence of sleep slices of one wait, its probe clock, and the holder it
/// watches.
pub(crate) struct Slices {
    next: Duration,
    /// The last slice handed out (`FIRST_SLICE` before the first).
    last: Duration,
    /// The longest slice.
    max: Option<Duration>,
    /// When the wait started, or last probed.
    since: Instant,
    /// The holder this wait probes, watched across probes.
    watch: Watch,
}

impl Slices {
    /// The slices of a wait for a change of a word (an event, a permit, a notify): up to
    /// [`PROBE_SLICE`].
    pub(crate) fn new() -> Self {
        Slices::with_max(PROBE_SLICE)
    }

    /// The slices of a wait for a holder it probes: up to [`HOLDER_SLICE`] where probes
    /// are cheap (a pidfd per holder), else up to [`PROBE_SLICE`].
    pub(crate) fn for_holder() -> Self {
        Slices::with_max(if Watch::cheap_probes() {
            HOLDER_SLICE
        } else {
            PROBE_SLICE
        })
    }

    fn with_max(max: Option<Duration>) -> Self {
        Slices {
            next: FIRST_SLICE,
            last: FIRST_SLICE,
            max,
            since: Instant::now(),
            watch: Watch::default(),
        }
    }

    /// After a probe: where every probe is a full one, probe no more often than a word
    /// wait.
    fn probed(&mut self) {
        if !Watch::cheap_probes() {
            self.max = self.max.max(PROBE_SLICE);
        }
    }

    /// Whether the holder that the bits of a stamped word (TID and stamp, see
    /// [`stamped_holder_is_dead`]) name is gone, asked through this wait's watch: after the
    /// first probes of a holder, further probes of it are one `poll`.
    pub(crate) fn stamped_holder_is_dead(&mut self, bits: u32) -> bool {
        self.holder_is_dead_by(bits & crate::owner::STAMPED_TID_MASK, bits, || {
            crate::owner::probe_stamped(bits) == crate::owner::Liveness::Dead
        })
    }

    /// Whether the holder `key` names (its TID in `tid_bits`) is gone, with `full` as its
    /// full probe: for words that record a holder in their own way (see
    /// [`Watch::judge`]).
    pub(crate) fn holder_is_dead_by(
        &mut self,
        tid_bits: u32,
        key: u32,
        full: impl FnOnce() -> bool,
    ) -> bool {
        let dead = Tid::parse(tid_bits).is_none_or(|tid| self.watch.judge(tid, key, full));
        self.probed();
        dead
    }

    /// Whether a whole slice has passed since the wait started or last probed, woken or
    /// not: then the waiter should probe the holder. A peer that keeps waking the word (a
    /// live waker, or a hostile one) must not put the probe off forever, as a rule of
    /// "probe only after a wait that timed out" would. Never under loom, whose waits have
    /// no time (models probe before their first sleep instead).
    pub(crate) fn probe_due(&self) -> bool {
        self.max.is_some() && self.since.elapsed() >= self.last
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
        let slice = self.max.map(|max| {
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

/// Whether `deadline` has passed by the clock (`None` never passes; reads the clock only
/// if there is a deadline). For loops that retry without sleeping, e.g. on a word another
/// process keeps rewriting: they check this so that a timed call keeps its bound however
/// long the rewriting goes on.
#[inline]
pub(crate) fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Whether the holder named by the TID bits `bits` of a word (read from shared memory) is
/// gone: bits that name no possible thread ([`Tid::parse`] refuses them) answer at once,
/// others are probed (a syscall: slow paths only).
#[cfg(not(loom))]
#[inline]
pub(crate) fn holder_is_dead(bits: u32) -> bool {
    Tid::parse(bits).is_none_or(Tid::is_dead)
}

/// Whether the holder a stamped word's holder bits `bits` name (a TID in
/// [`STAMPED_TID_MASK`](crate::owner::STAMPED_TID_MASK), and the stamp of its start time
/// above it) is gone: a TID of 0 at once; else probed, and a live TID whose start time
/// gives another stamp (a new thread that reused a dead holder's TID) reads dead. A
/// syscall: slow paths only.
#[inline]
pub(crate) fn stamped_holder_is_dead(bits: u32) -> bool {
    bits & crate::owner::STAMPED_TID_MASK == 0
        || crate::owner::probe_stamped(bits) == crate::owner::Liveness::Dead
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spins_are_a_time_divided_by_a_pause_within_bounds() {
        // 10 µs of pauses of 12.4 ns and of 26.3 ns (the two machines BENCHMARKS.md
        // reports), and the bounds.
        assert_eq!(spins_in(10_000, 12_400), 806);
        assert_eq!(spins_in(10_000, 26_300), 380);
        assert_eq!(spins_in(5_000, 26_300), 190);
        assert_eq!(spins_in(10_000, 1_000), 64 * SPIN_LIMIT);
        assert_eq!(spins_in(10_000, 1_000_000), SPIN_LIMIT);
        assert_eq!(spins_in(0, 12_400), SPIN_LIMIT);
        assert_eq!(spins_in(u32::MAX, 0), 64 * SPIN_LIMIT);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri's clock is virtual; spins_for does not measure there"
    )]
    fn the_pause_is_measured_once_and_a_spin_lasts_about_its_time() {
        let peer = spins_for(PEER_SPIN_NS);
        let ps = pause_ps();
        assert!((1_000..=1_000_000).contains(&ps), "{ps} ps per pause");
        // Cached: the same answer from the stored measurement.
        assert_eq!(spins_for(PEER_SPIN_NS), peer);
        assert_eq!(peer, spins_in(PEER_SPIN_NS, ps));
        assert!(spins_for(ROOM_SPIN_NS) <= peer);
        // The spin lasts at least a quarter of its time unless the top bound cut it
        // (preemption only makes it longer; a measurement too slow in all 4 runs would
        // make it shorter).
        if peer < 64 * SPIN_LIMIT {
            let t = Instant::now();
            for _ in 0..peer {
                spin_loop();
            }
            let took = t.elapsed();
            assert!(
                took >= Duration::from_nanos(u64::from(PEER_SPIN_NS / 4)),
                "{peer} pauses of {ps} ps took {took:?}"
            );
        }
    }
}
