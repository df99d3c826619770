//! The protocol's steps shared by every operation: how long to wait ([`Wait`]), taking a
//! side's lock, sleeping on a wake word, waking, and the two pure checks of the cursors
//! ([`plan`] for a sender, [`parse`] for a receiver). See the module docs of
//! [`channel`](super) for the protocol they implement.

use std::time::Instant;

use super::layout::{
    Channel, SENT_MASK, TAG_MESSAGE, TAG_PAD, TAG_SKIP, WAITING, count, cursor, pos, record,
    record_size,
};
use crate::futex;
use crate::lock::{Acquired, RawMutex};
use crate::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices, deadline_passed, past, stamped_holder_is_dead};

/// How long an operation waits: for room or a message, and for the side's lock.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all (a `try_` call): neither for room or messages, nor for a live holder of
    /// the lock beyond a brief spin.
    No,
    /// Until the deadline.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// The wait of a timed call: `Forever` for a timeout too large to represent.
    pub(crate) fn timeout(t: core::time::Duration) -> Wait {
        Instant::now()
            .checked_add(t)
            .map_or(Wait::Forever, Wait::Until)
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(d) => Some(d),
            _ => None,
        }
    }
}

/// Why an operation failed, before it is spelled as the public error of its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// Would wait for room or a message (`Wait::No`).
    WouldBlock,
    /// The side's lock stayed held by a live peer through a brief spin (`Wait::No`).
    Busy,
    /// The deadline passed.
    Timeout,
    /// Closed (and, for receivers, empty).
    Disconnected,
    /// A message longer than the channel's largest.
    TooLarge { len: usize, max: usize },
    /// A receiver's buffer is too small for the next message.
    TooSmall { needed: usize },
    /// Invalid shared state.
    Corrupt,
}

/// The longest a `try_` call waits to recover a lock whose holder it found dead: the
/// mutex recovers it after its first probe slice (50 µs), so this is that slice with a
/// margin for a loaded machine. An hour under loom, whose models must not depend on the
/// real clock (a replay that found this deadline passed would take another path: "Reached
/// unexpected exploration state"); a timed wait there stands for a passed deadline
/// anyway (`wait::deadline_passed`).
const DEAD_HOLDER_RECOVERY: core::time::Duration =
    core::time::Duration::from_millis(if cfg!(loom) { 3_600_000 } else { 5 });

/// Holds a side's lock; unlocks on drop.
///
/// Invariant: made only where a `try_lock`, `lock` or `lock_until` of `lock` by this
/// thread succeeded (`lock_side_contended`, `try_lock_side`, `lock_queued`,
/// `lock_if_free_or_dead`). A child forked while a thread holds a guard inherits a copy
/// that does not hold the lock: the guard records the thread that took the lock, and a
/// copy (used by another thread: the child's) neither holds nor releases it, even once
/// the child has taken the lock itself.
pub(crate) struct SideGuard<'a> {
    lock: &'a RawMutex,
    /// The thread that took the lock.
    owner: u32,
}

impl<'a> SideGuard<'a> {
    /// The guard of the calling thread's acquisition of `lock`.
    #[inline]
    fn new(lock: &'a RawMutex) -> Self {
        SideGuard {
            lock,
            owner: crate::owner::current(),
        }
    }

    /// Whether the calling thread took the lock (one thread-local load): false for a
    /// copy in a child forked while its parent held it.
    #[inline]
    pub(crate) fn is_mine(&self) -> bool {
        crate::owner::current() == self.owner
    }

    /// Whether the calling thread holds the lock: false for a copy in a child forked
    /// while its parent held it.
    #[inline]
    pub(crate) fn is_held_here(&self) -> bool {
        crate::owner::current() == self.owner && self.lock.is_owned_by_current_thread()
    }
}

impl SideGuard<'_> {
    /// After the repair of what a dead holder left: clears the lock's owner-died mark,
    /// so that later acquirers skip the repair. Not before the repair: a repairer killed
    /// in the middle leaves the mark, and the next holder repairs again (each step is
    /// idempotent).
    #[inline]
    pub(crate) fn repaired(&self) {
        crate::failpoint::hit(crate::failpoint::Point::ChannelRepaired);
        if crate::owner::current() == self.owner {
            self.lock.mark_consistent();
        }
    }
}

impl Drop for SideGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if crate::owner::current() != self.owner {
            // A copy in a forked child: the lock is its parent's (or, by now, the child's
            // own, under a guard of its own).
            return;
        }
        // SAFETY: this thread acquired `lock` (the guard's invariant; a forked copy
        // returned above) and drops the guard once; nothing the lock protects is touched
        // after it.
        unsafe { self.lock.unlock() };
    }
}

/// Takes `lock` as `wait` allows: `Busy` (for `No`) or `Timeout` if not. The second value
/// says whether the previous holder died: the caller repairs, then calls
/// [`SideGuard::repaired`].
#[inline]
pub(crate) fn lock_side(lock: &RawMutex, wait: Wait) -> Result<(SideGuard<'_>, bool), Fail> {
    match try_lock_side(lock) {
        Some(g) => Ok(g),
        None => lock_side_contended(lock, wait),
    }
}

/// The uncontended path of [`lock_side`], inlined: one compare-exchange (`try_lock`);
/// `None` if the lock is held.
#[inline]
pub(crate) fn try_lock_side(lock: &RawMutex) -> Option<(SideGuard<'_>, bool)> {
    lock.try_lock()
        .map(|a| (SideGuard::new(lock), a == Acquired::OwnerDied))
}

/// [`lock_side`] once its first `try_lock` failed.
#[cold]
fn lock_side_contended(lock: &RawMutex, wait: Wait) -> Result<(SideGuard<'_>, bool), Fail> {
    let a = match wait {
        // Loads before the next compare-exchange: a failed one takes the line from the
        // holder.
        Wait::No => try_lock_contended(lock)?,
        Wait::Until(d) => lock.lock_until(d).ok_or(Fail::Timeout)?,
        Wait::Forever => lock.lock(),
    };
    Ok((SideGuard::new(lock), a == Acquired::OwnerDied))
}

/// How often a sender queued on the send lock looks whether the channel was closed. An
/// hour under loom, as [`DEAD_HOLDER_RECOVERY`].
pub(crate) const CLOSE_CHECK: core::time::Duration =
    core::time::Duration::from_millis(if cfg!(loom) { 3_600_000 } else { 5 });

/// [`lock_side`] after its first `try_lock` ([`try_lock_side`]) failed, for a waiting call
/// that also gives up with `Disconnected` when `closed()` becomes true while the lock is
/// held by another (checked every [`CLOSE_CHECK`]): a sender queued behind a slot holder
/// (perhaps stopped) learns of a `close` promptly.
#[cold]
pub(crate) fn lock_side_contended_unless(
    lock: &RawMutex,
    wait: Wait,
    closed: impl Fn() -> bool,
) -> Result<(SideGuard<'_>, bool), Fail> {
    let deadline = match wait {
        Wait::No => return lock_side_contended(lock, wait),
        Wait::Until(d) => Some(d),
        Wait::Forever => None,
    };
    lock_queued(lock, deadline, &closed)
}

#[cold]
fn lock_queued<'l>(
    lock: &'l RawMutex,
    deadline: Option<Instant>,
    closed: &dyn Fn() -> bool,
) -> Result<(SideGuard<'l>, bool), Fail> {
    loop {
        if closed() {
            return Err(Fail::Disconnected);
        }
        let check = Instant::now().checked_add(CLOSE_CHECK);
        let until = match (check, deadline) {
            (Some(c), Some(d)) => c.min(d),
            (Some(c), None) => c,
            (None, Some(d)) => d,
            (None, None) => return lock_side(lock, Wait::Forever),
        };
        if let Some(a) = lock.lock_until(until) {
            return Ok((SideGuard::new(lock), a == Acquired::OwnerDied));
        }
        if past(deadline) {
            return Err(Fail::Timeout);
        }
        // Under loom a timed lock stands for a passed deadline (`wait::deadline_passed`),
        // having probed the holder (a dead one is recovered above): a sender queued
        // behind a live holder (a closer making the close final, say) would loop here
        // for as long as the model runs the holder not. It waits untimed instead (a
        // model has no stopped holder for the close check to outwait).
        #[cfg(loom)]
        if deadline.is_none() {
            return lock_side(lock, Wait::Forever);
        }
    }
}

/// A `try_` call's lock after `try_lock` failed: a brief spin with loads, then, if the
/// holder is dead, its recovery (bounded); `Busy` if a live holder kept it.
#[cold]
fn try_lock_contended(lock: &RawMutex) -> Result<Acquired, Fail> {
    let mut spins = SPIN_LIMIT;
    let mut step = 1;
    loop {
        if !lock.is_locked()
            && let Some(a) = lock.try_lock()
        {
            return Ok(a);
        }
        if spins == 0 {
            break;
        }
        let n = step.min(spins);
        spins -= n;
        step = (step * 2).min(16);
        for _ in 0..n {
            spin_loop();
        }
    }
    // Held throughout. By a dead thread? Then recover it as the blocking calls would, or
    // a channel used only through `try_` calls would stay locked for good. The probe is
    // syscalls (`kill`, a read of `/proc`: microseconds): never on the uncontended path,
    // and once per `PROBE_INTERVAL` of this thread's `try_` calls that find the lock
    // held, so that polling a lock a live side holds costs no syscall per call.
    if !probe_due(lock) {
        return Err(Fail::Busy);
    }
    let owner = lock.holder().ok_or(Fail::Busy)?;
    if !stamped_holder_is_dead(owner) {
        return Err(Fail::Busy);
    }
    let deadline = Instant::now()
        .checked_add(DEAD_HOLDER_RECOVERY)
        .ok_or(Fail::Busy)?;
    lock.lock_until(deadline).ok_or(Fail::Busy)
}

/// How long a thread's `try_` calls that find a lock of a channel held (through their
/// spin, or at the one `try_lock` of [`lock_if_free_or_dead`]) go between probes of its
/// holder ([`probe_due`]).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const PROBE_INTERVAL: core::time::Duration = core::time::Duration::from_millis(1);

/// The locks a thread remembers its last probe of ([`probe_due`]): a power of two.
#[cfg(not(loom))]
const PROBED: usize = 16;

/// The slots of [`probe_due`]'s table a lock may take: four in a row from its hash's.
#[cfg(not(loom))]
const WAYS: usize = 4;

/// The channels a thread's look counts are kept for at once ([`due`]).
#[cfg(not(loom))]
const COUNTED: usize = 8;

/// A reading of the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: the kernel's time
/// at its last scheduler tick, so it moves once every 1-10 ms; a vDSO read, a few ns,
/// where the plain clock costs about 20 ns here), in ns. Only ever compared for a change.
/// Under loom always 0: a model's replays must not depend on time.
#[inline]
fn coarse_tick() -> i64 {
    #[cfg(not(loom))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        t.tv_sec.wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec)
    }
    #[cfg(loom)]
    0
}

/// Which of a receiver's looks that find no message are due to read `tail`
/// ([`due`](Self::due)): a look is due if `every` looks have passed since the last due
/// one, or if it reads the coarse clock and finds it ticked since (1-10 ms). The clock is
/// read at the 1st, 2nd, 4th, 8th, ... look after a due one: a slow poller (a look a
/// second) reads it, and `tail`, at every look; a fast one reads the clock at a few of
/// every `every` looks (6 of 64), and `tail` once in `every` looks and at most once a
/// tick besides. So neither waits long for what only `tail` shows (a record whose sender
/// died before its header), and a spinning poller pays for no clock read at most of its
/// looks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Polls {
    /// Looks since the last due one.
    looks: u32,
    /// The coarse clock at the last due look.
    tick: i64,
}

impl Polls {
    /// No look yet: the first is due (no reading of the clock is `i64::MIN`, under loom
    /// neither).
    pub(crate) const FIRST: Self = Self {
        looks: 0,
        tick: i64::MIN,
    };

    /// Whether this look is due (see [`Polls`]); a due look restarts the count.
    #[inline]
    pub(crate) fn due(&mut self, every: u32) -> bool {
        self.due_at(every, coarse_tick)
    }

    /// [`due`](Self::due) with the clock `tick` reads.
    #[inline]
    fn due_at(&mut self, every: u32, tick: impl FnOnce() -> i64) -> bool {
        self.looks = self.looks.saturating_add(1);
        if self.looks < every && !self.looks.is_power_of_two() {
            return false;
        }
        let now = tick();
        if self.looks < every && now == self.tick {
            return false;
        }
        *self = Self {
            looks: 0,
            tick: now,
        };
        true
    }
}

/// Per-thread look counts, `(key, its looks)` per slot.
#[cfg(not(loom))]
pub(crate) type Looks = [core::cell::Cell<(usize, Polls)>; COUNTED];

/// An empty [`Looks`] table, for a `thread_local!`.
#[cfg(not(loom))]
pub(crate) const fn no_looks() -> Looks {
    [const { core::cell::Cell::new((0, Polls::FIRST)) }; COUNTED]
}

/// Whether this look at `key` (an address) is due, as [`Polls::due`] rules, with the
/// looks counted in `table`, a small table of this thread's: a key that is not in it
/// (its first look, or its slot taken by another key since) is due, and takes the slot.
/// So whatever other keys the thread looks at in between, at least one in every `every`
/// of its looks at `key` is due, and after a tick of the coarse clock its next look that
/// reads the clock. (An object mapped where another was inherits its count: still within
/// the bound.)
#[cfg(not(loom))]
#[inline]
pub(crate) fn due(table: &'static std::thread::LocalKey<Looks>, key: usize, every: u32) -> bool {
    // The top bits of a multiplicative hash of the address (Fibonacci hashing).
    let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) % COUNTED;
    // Two small closures, not one around the rule: with the rule inside, `with` was a
    // call of its own, 4-6 ns per empty look here.
    let (k, mut polls) = table.with(|t| t[slot].get());
    if k != key {
        polls = Polls::FIRST;
    }
    let due = polls.due(every);
    table.with(|t| t[slot].set((key, polls)));
    due
}

/// Whether a `try_` call that found `lock` held (through its spin, or at the one
/// `try_lock` of [`lock_if_free_or_dead`]) probes the holder now:
/// if this thread has not probed it for [`PROBE_INTERVAL`], or does not remember doing
/// so. The others report the lock busy at once: a holder that died is recovered by the
/// first of a polling thread's calls that comes [`PROBE_INTERVAL`] after its previous
/// probe (the next call, for a thread polling more slowly than that), and polling a lock
/// that a live party holds (a held side, a receiver copying a long message out) costs a
/// clock read, not a probe's syscalls, each time.
///
/// A thread remembers its last probe of up to [`PROBED`] locks, in a table it owns: each
/// lock may take one of [`WAYS`] slots in a row from a hash of its address (so that the
/// locks of the few channels a thread polls stay in the table together); a lock found in
/// none takes an empty one or the one probed longest ago, and is due (a lock pushed out
/// is probed again at its next look: never later than the interval). A lock's time
/// outlives it: a new lock at its address, or the lock as a forked child inherits the
/// table, waits out the rest of that millisecond. Polling costs a clock read per call
/// (a vDSO call where the clock source has one).
///
/// Under loom every look is due (the models' dead holders are recovered at the first).
#[inline]
pub(crate) fn probe_due(lock: &RawMutex) -> bool {
    #[cfg(not(loom))]
    {
        use core::cell::Cell;
        type Entry = Cell<(usize, Option<Instant>)>;
        std::thread_local! {
            /// `(lock address, when this thread last probed its holder)` per slot.
            static PROBES: [Entry; PROBED] = const { [const { Cell::new((0, None)) }; PROBED] };
        }
        let key = core::ptr::from_ref(lock).addr();
        // The top bits of a multiplicative hash of the address (Fibonacci hashing).
        let i =
            (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - PROBED.ilog2())) % PROBED;
        let slots = core::array::from_fn::<_, WAYS, _>(|k| (i + k) % PROBED);
        PROBES.with(|t| {
            let now = Instant::now();
            for s in slots {
                let (k, last) = t[s].get();
                if k == key {
                    let due =
                        last.is_none_or(|l| now.saturating_duration_since(l) >= PROBE_INTERVAL);
                    if due {
                        t[s].set((key, Some(now)));
                    }
                    return due;
                }
            }
            // `None` (an empty slot: never probed) sorts first, then the oldest probe.
            let s = slots.into_iter().min_by_key(|&s| t[s].get().1).unwrap_or(i);
            t[s].set((key, Some(now)));
            true
        })
    }
    #[cfg(loom)]
    {
        let _ = lock;
        true
    }
}

/// Takes `lock` only if it is free or its holder is dead (for a repair by a party that
/// does not otherwise use the lock): `None` if a live thread holds it. The second value
/// says whether the previous holder died. For a `try_` call ([`Wait::No`]) the holder is
/// probed only if [`probe_due`]: a thread polling a lock that a live (stopped,
/// preempted) holder keeps pays a probe's syscalls once per [`PROBE_INTERVAL`], not at
/// every call.
#[cold]
pub(crate) fn lock_if_free_or_dead(lock: &RawMutex, wait: Wait) -> Option<(SideGuard<'_>, bool)> {
    // Before the compare-exchange, from a load: polling a lock a live party holds then
    // writes nothing to its line (the holder's unlock would have to fetch it back). A lock
    // taken between the load and the compare-exchange is probed once more than the rule
    // says: never later.
    if matches!(wait, Wait::No) && lock.holder().is_some() && !probe_due(lock) {
        return None;
    }
    let a = match lock.try_lock() {
        Some(a) => a,
        None => {
            // The probe is syscalls: callers come here only on a slow path (a full ring,
            // a record without its header, a wait).
            let owner = lock.holder()?;
            if !stamped_holder_is_dead(owner) {
                return None;
            }
            // The recovery is brief, and never past the caller's own deadline.
            let mut deadline = Instant::now().checked_add(DEAD_HOLDER_RECOVERY)?;
            if let Wait::Until(d) = wait {
                deadline = deadline.min(d);
            }
            lock.lock_until(deadline)?
        }
    };
    Some((SideGuard::new(lock), a == Acquired::OwnerDied))
}

/// Where a sleeper is in its wait (kept across the retries of one operation, so that
/// its sleep slices keep growing).
pub(crate) struct Sleep {
    /// Whether the operation has spun (its first wait).
    spun: bool,
    /// Its sleep slices, from its first sleep: made only then, so that a wait that ends
    /// within its spin reads no clock (a clock read is a syscall where the clock source
    /// has no vDSO).
    slices: Option<Slices>,
    /// Under loom, the wake word as this operation's last barrier left it (see
    /// [`barriered_since`]; outside loom the thread remembers it).
    #[cfg(loom)]
    barriered: Option<u32>,
}

/// Whether a barrier was issued since `word` last changed, if its value is `w` now (its
/// `WAITING` flag set); if not, records that the caller issues one now. Then a sleeper
/// needs none: no waker bumped the word since that barrier, so every waker whose load of
/// the word came after the barrier's point saw the flag (a waker that sees it bumps), and
/// every other waker's store came before that point, which every later re-check sees. So
/// a party that sleeps again and again on a quiet channel (a slice after a slice, or a
/// timed receive after a timed receive, as Python's `get` loops) issues one barrier, not
/// one per sleep. The thread remembers one word (by address: one mapped where another was
/// inherits its value, which then differs at once but for a 1 in 2^31 generation match,
/// costing one wake a slice); under loom the operation remembers it.
fn barriered_since(word: &AtomicU32, w: u32, sleep: &mut Sleep) -> bool {
    #[cfg(not(loom))]
    {
        let _ = sleep;
        std::thread_local! {
            static LAST: core::cell::Cell<(usize, u32)> = const { core::cell::Cell::new((0, 0)) };
        }
        let key = (core::ptr::from_ref(word).addr(), w);
        LAST.try_with(|l| l.replace(key) == key).unwrap_or(false)
    }
    #[cfg(loom)]
    {
        let _ = word;
        sleep.barriered.replace(w) == Some(w)
    }
}

impl Sleep {
    pub(crate) fn new() -> Self {
        Sleep {
            spun: false,
            slices: None,
            #[cfg(loom)]
            barriered: None,
        }
    }

    /// Whether this operation has waited once already (spun, then slept a slice unless
    /// woken or out of time): the point from which it also looks for a dead peer's
    /// leftovers.
    pub(crate) fn started(&self) -> bool {
        self.spun
    }
}

/// Waits on the wake word `word` until `ready()` or one wake (or slice) has passed, as
/// `wait` allows; `Ok` means "check again" (under the lock). Spins for about `spin_ns`
/// nanoseconds first ([`spins_for`](crate::wait::spins_for); loads only, no syscall;
/// receivers spin longer than senders; a `try_` call never spins; a timed wait stops
/// at its deadline), then sets `WAITING`, fences, issues the process-wide barrier
/// ([`barrier`](super::barrier)) unless this thread issued it since the word last changed
/// ([`barriered_since`]),
/// checks `settle()` (`ready()` again, or for a receiver also the close) and futex-waits
/// in slices.
///
/// The pairing that loses no wakeup: the sleeper sets `WAITING` (a read-modify-write),
/// then a `SeqCst` fence and the barrier, then checks `settle()` (loads of the cursors);
/// the waker stores its cursor (a header, `free`), then only a compiler barrier
/// ([`barrier::busy_side`](super::barrier::busy_side)), then loads the word ([`wake`],
/// and the sender's publication). Either the waker's load comes after the barrier's point
/// on its CPU, and sees `WAITING` (it wakes, bumping the generation, so that the futex
/// wait returns at once if it comes later), or its store came before it, and the
/// sleeper's check sees the new cursor. In a process that cannot issue the barrier the
/// sleeper sets the channel's `fenced` word (`fenced`) first: wakers that have read it
/// fence (`SeqCst`), pairing with the sleeper's fence; a waker that read it just before
/// can miss this sleeper's flag once, which costs the sleeper one slice (≤ 10 ms), as a
/// stopped waker does. The `wake_all` of `close` and of a repair fence (`SeqCst`) before
/// their bump, pairing with the sleeper's fence.
pub(crate) fn wait_on(
    word: &AtomicU32,
    fenced: &AtomicU64,
    wait: Wait,
    sleep: &mut Sleep,
    spin_ns: u32,
    ready: impl Fn() -> bool,
    settle: impl Fn() -> bool,
) -> Result<(), Fail> {
    let deadline = match wait {
        Wait::No => return Err(Fail::WouldBlock),
        Wait::Until(d) if past(Some(d)) => return Err(Fail::Timeout),
        w => w.deadline(),
    };
    if !sleep.spun {
        // First wait of this operation: spin briefly; the other side is usually busy for
        // a moment only. A timed wait looks at its deadline every 32 looks (0.4 to 1 µs
        // on the machines BENCHMARKS.md reports), so that a deadline shorter than the
        // spin is kept; past it, it returns without setting any flag. No clock is read
        // otherwise: the slices are made at the first sleep.
        sleep.spun = true;
        for i in 0..crate::wait::spins_for(spin_ns) {
            if ready() {
                return Ok(());
            }
            if i % 32 == 31 && past(deadline) {
                return Err(Fail::Timeout);
            }
            spin_loop();
        }
    }
    // Always a read-modify-write (even if the flag looks set already), so that every
    // sleeper's flag is in the word's modification order before its fence: a waker's
    // load after its own fence sees it (the pairing above). One `fetch_or`, no loop: a
    // peer rewriting the word cannot keep us spinning here. Relaxed: the fence below
    // orders it.
    let w = word.fetch_or(WAITING, Ordering::Relaxed) | WAITING;
    // SeqCst: pairs with the fence of a waker that fences (`wake_all`, and `wake` in a
    // process that cannot use the barrier or once `fenced` is set); and orders our flag
    // before the barrier's point on our own CPU.
    fence(Ordering::SeqCst);
    // Under loom, a thread standing for a registered process in a model without the
    // barrier must not sleep: its barrier would reach registered wakers, which loom
    // cannot model, and the `fenced` it would set instead makes the model stronger
    // than such a process is.
    #[cfg(loom)]
    super::barrier::assert_may_sleep();
    if !barriered_since(word, w, sleep) && !super::barrier::issue() {
        // Wakers must fence from now on. SeqCst: a waker whose load of `fenced` comes
        // after this store in the total order fences, and its fence pairs with ours.
        // Relaxed load first: the line is read by every operation; store only once.
        if fenced.load(Ordering::Relaxed) == 0 {
            fenced.store(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }
    if settle() {
        return Ok(());
    }
    let Some(slice) = sleep.slices.get_or_insert_with(Slices::new).next(deadline) else {
        return Err(Fail::Timeout);
    };
    if !futex::wait(word, w, slice) && deadline_passed(deadline) {
        return Err(Fail::Timeout);
    }
    Ok(())
}

/// Wakes the sleepers on `word`, if any may sleep: after a store of a cursor (see
/// [`wait_on`] for the pairing). No syscall unless `WAITING` is set, and no fence in a
/// registered process while the channel's `fenced` word is 0.
#[inline]
pub(crate) fn wake(word: &AtomicU32, fenced: &AtomicU64) {
    // Relaxed: a hint, set once by a sleeper that cannot issue the barrier (see
    // `wait_on`).
    let strong = fenced.load(Ordering::Relaxed) != 0;
    // The busy side of the barrier pattern (`wait_on`): the cursor store before it, the
    // load of the word after it.
    super::barrier::busy_side(strong);
    // Relaxed: ordered by the barrier (or the fence).
    if word.load(Ordering::Relaxed) & WAITING != 0 {
        bump_and_wake(word);
    }
}

/// Bumps the generation of `word`, clearing `WAITING`, and wakes every sleeper on it.
/// Fences first (`SeqCst`, as [`wake`]): the caller's cursor stores before it are seen by
/// a sleeper whose flag this bump does not see.
#[cold]
pub(crate) fn wake_all(word: &AtomicU32) {
    // SeqCst: pairs with the fence in `wait_on`, as in `wake`.
    fence(Ordering::SeqCst);
    bump_and_wake(word);
}

/// [`wake_all`] after the fence.
#[cold]
fn bump_and_wake(word: &AtomicU32) {
    // Relaxed: the futex wait compares the word atomically; a sleeper that set `WAITING`
    // after our bump sees its own flag and a word its futex wait expects, but then its
    // `ready()` check (after the fence) sees the cursor we published before.
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
        Some(w.wrapping_add(1) & !WAITING)
    });
    futex::wake_all(word);
}

/// Where a sender's record goes: `Some(pad)` means the record starts at offset 0 after a
/// padding record at `tail` up to the ring's end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Offset of the padding record, if any.
    pub(crate) pad_at: Option<u32>,
    /// Offset of the message's record header.
    pub(crate) rec_at: u32,
}

/// The outcome of [`plan`].
pub(crate) enum Room {
    Fits(Plan),
    Full,
    Corrupt,
}

/// Whether a record of a `len`-byte message (reserved length) fits between `tail` and
/// `free + cap` with the 8 bytes of slack after it (the word the sender zeroes for the
/// next record's header, which must be free space too), and where it goes.
#[inline]
pub(crate) fn plan(cap: u32, tail: u32, free: u32, len: usize) -> Room {
    let used = tail.wrapping_sub(free);
    if used > cap || !tail.is_multiple_of(8) || !free.is_multiple_of(8) {
        return Room::Corrupt;
    }
    // `len <= max_message <= cap / 2 - 8`, so the record fits a `u32`.
    let rec = record_size(len) as u32;
    let off = tail & (cap - 1);
    let pad = if off + rec > cap { cap - off } else { 0 };
    if pad + rec + 8 > cap - used {
        return Room::Full;
    }
    Room::Fits(if pad > 0 {
        Plan {
            pad_at: Some(off),
            rec_at: 0,
        }
    } else {
        Plan {
            pad_at: None,
            rec_at: off,
        }
    })
}

/// A published record found at `head` ([`parse`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    /// Ring offset of the payload.
    pub(crate) at: u32,
    /// Its length.
    pub(crate) len: u32,
    /// The position after the record (and any padding before it): the new `head`.
    pub(crate) end: u32,
    /// A `SKIP` record (the repair of a dead sender's record): no message, step over it.
    pub(crate) skip: bool,
}

/// Reads and validates the record at `head`, whose header word `first` the caller loaded
/// (Acquire: nonzero, so published), with `bound` the position records may not reach
/// past (`free + cap`) and `max` the largest message. `None` if the bytes are not a valid
/// record (a corrupt channel).
#[inline]
pub(crate) fn parse(ch: &Channel, head: u32, first: u64, bound: u32, max: u32) -> Option<Found> {
    let cap = ch.cap();
    let avail = bound.wrapping_sub(head);
    let mut off = head & (cap - 1);
    let mut w = first;
    let mut skipped = 0;
    if count(w) == TAG_PAD {
        if pos(w) != 0 {
            return None;
        }
        skipped = cap - off;
        // A padding record is always followed by a record in the same commit.
        if skipped >= avail {
            return None;
        }
        off = 0;
        // Relaxed: the sender stored this header before the padding's (Release), whose
        // Acquire load by the caller orders it before this load.
        w = ch.word_at(0).load(Ordering::Relaxed);
    }
    let len = pos(w);
    let skip = match count(w) {
        TAG_MESSAGE if len <= max => false,
        // A `SKIP` covers a message's whole record: its length is a record's less the
        // header, so a multiple of 8, at most the largest message's rounded up.
        TAG_SKIP if len.is_multiple_of(8) && len as usize <= record_size(max as usize) - 8 => true,
        _ => return None,
    };
    let rec = record_size(len as usize) as u32;
    if off + rec > cap || skipped + rec > avail {
        return None;
    }
    Some(Found {
        at: off + 8,
        len,
        end: head.wrapping_add(skipped + rec),
        skip,
    })
}

/// The header word of a message record of `len` bytes.
#[inline]
pub(crate) const fn message_header(len: u32) -> u64 {
    record(TAG_MESSAGE, len)
}

/// The header word of a padding record.
pub(crate) const PAD_HEADER: u64 = record(TAG_PAD, 0);

/// The header word of a `SKIP` record of `rec` bytes (its header included).
#[inline]
pub(crate) const fn skip_header(rec: u32) -> u64 {
    record(TAG_SKIP, rec - 8)
}

/// The next `head` word after `w`: position `p`, count one more.
#[inline]
pub(crate) const fn advance(w: u64, p: u32) -> u64 {
    cursor(count(w).wrapping_add(1), p)
}

/// The next `tail` word after `w`: position `p`, count one more (30 bits: the top two
/// bits of `tail` stay 0, so that `end`'s top bit is never a `tail`'s).
#[inline]
pub(crate) const fn advance_tail(w: u64, p: u32) -> u64 {
    cursor(count(w).wrapping_add(1) & SENT_MASK, p)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Polls;

    /// `(due, read the clock)` for each of `ticks.len()` looks, the clock reading
    /// `ticks[i]` if look `i` reads it.
    fn looks(polls: &mut Polls, every: u32, ticks: &[i64]) -> Vec<(bool, bool)> {
        ticks
            .iter()
            .map(|&t| {
                let mut read = false;
                let due = polls.due_at(every, || {
                    read = true;
                    t
                });
                (due, read)
            })
            .collect()
    }

    #[test]
    fn the_first_look_is_due_then_one_in_every() {
        let mut p = Polls::FIRST;
        let seen = looks(&mut p, 64, &[5; 129]);
        let due: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].0).collect();
        assert_eq!(due, [0, 64, 128]);
    }

    #[test]
    fn a_spinning_poller_reads_the_clock_at_powers_of_two_only() {
        let mut p = Polls::FIRST;
        let seen = looks(&mut p, 64, &[5; 65]);
        let read: Vec<usize> = (1..seen.len()).filter(|&i| seen[i].1).collect();
        // Looks 1, 2, 4, ..., 32 after the due look at 0, and the due 64th.
        assert_eq!(read, [1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn a_tick_makes_the_next_clock_read_due_and_restarts_the_count() {
        let mut p = Polls::FIRST;
        // The clock ticks before look 5: look 8 (its next read) is due, and the count
        // starts again there: the next due look by count is 8 + 64.
        let mut ticks = vec![5; 5];
        ticks.extend([6; 80]);
        let seen = looks(&mut p, 64, &ticks);
        let due: Vec<usize> = (0..seen.len()).filter(|&i| seen[i].0).collect();
        assert_eq!(due, [0, 8, 72]);
    }

    #[test]
    fn a_slow_poller_is_due_at_every_look_after_a_tick() {
        let mut p = Polls::FIRST;
        let seen = looks(&mut p, 64, &[1, 2, 3, 4, 5]);
        assert!(seen.iter().all(|&(due, read)| due && read), "{seen:?}");
    }

    #[test]
    fn every_one_is_always_due() {
        let mut p = Polls::FIRST;
        assert!(looks(&mut p, 1, &[7; 10]).iter().all(|&(due, _)| due));
    }
}
