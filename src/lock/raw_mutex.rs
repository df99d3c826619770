//! [`RawMutex`]: a robust futex mutex on one 32-bit word holding the owner's thread id.
//!
//! # The algorithm
//!
//! The word is `0` when unlocked, and the owner's kernel thread id (TID) and the *stamp*
//! of its start time when locked, plus two flags (see [`RawMutex`]'s field for the bit
//! layout). It is the classic three-state
//! futex mutex (Drepper, "Futexes Are Tricky"; std's `sys/sync/mutex/futex.rs`) with the
//! "locked" state spelled as the owner's TID:
//!
//! - lock: one compare-exchange `0 -> tid|stamp` (both a cached thread-local read, see
//!   `owner`). No syscall.
//! - unlock: one compare-exchange `tid|stamp -> 0`. It fails only if a flag is set; then the
//!   slow path clears the word and calls `FUTEX_WAKE` only if `CONTENDED` was set.
//! - contended lock: spin briefly with loads, backing off (growing pauses between loads),
//!   then set `CONTENDED` and futex-wait.
//!
//! # Owner death
//!
//! Waiters do not sleep unboundedly: they wait in slices (50 µs, doubling up to
//! [`HOLDER_SLICE`](crate::wait::HOLDER_SLICE) = 800 µs; see [`wait`](crate::wait), the
//! crate's one blocking policy) and, once a whole slice has passed, ask the kernel whether
//! the TID in the word is still alive (`kill(tid, 0)`, plus a read of `/proc/<tid>/stat`
//! for a zombie and for the stamp: see `owner::probe_stamped`). If it is dead, or alive
//! with a start time that gives another stamp (a new thread that got the dead owner's
//! TID, below), the waiter compare-exchanges the *observed* word to its own TID and stamp
//! with `OWNER_DIED` set and returns [`Acquired::OwnerDied`]. A timed lock also
//! probes once when its deadline passes, so a deadline shorter than the first slice still
//! takes over from a dead owner instead of timing out. This covers a process
//! killed while holding the lock (its TIDs vanish, or its main thread becomes a zombie), a
//! thread that exits holding the lock while its process runs on (a non-main thread's TID
//! vanishes at once; a main thread that called `pthread_exit` shows as a zombie), and
//! garbage: a word with a stamp but no TID names no thread and is taken over at once (any
//! other word names a possible thread and is probed).
//!
//! Detection latency is one slice at most after the kernel has torn the owner down, and
//! a slice is never longer than the time the waiter has already waited (slices double from
//! 50 µs) nor than 800 µs ([`HOLDER_SLICE`](crate::wait::HOLDER_SLICE)). The first probe of
//! an owner opens a pidfd for it, so a long wait's further probes are one `poll` each
//! (see [`wait`](crate::wait)). Measured on a 2-vCPU VM, 2026-12-05: a waiter that locks
//! right after the kill (`tests/locks_owner_death.rs`, 200 kills) gets the lock 139 µs
//! (median) / 340 µs (p99) after it; a waiter already asleep when the owner is killed
//! (`tests/chaos.rs`, 50 kills, two runs) 182–223 µs / 816–949 µs. glibc's robust
//! process-shared mutex, which the kernel marks and wakes at the owner's exit, hands over
//! in 12–13 µs median, 24–33 µs p99 in the first setting (a 40-line C program, 200 kills):
//! about 10× faster. Our latency is the current slice plus the kernel's default timer
//! slack on a futex timeout (50 µs) plus the probe; see below for why the kernel's
//! marking is not used.
//!
//! **`execve`** with a lock held: exec replaces the process image (the region is no longer
//! mapped, no guard can unlock) but not its process id. The thread that calls it keeps the
//! id if it is the main thread, and takes it over from the main thread otherwise. So a lock
//! held by the *main* thread across `execve` names a live thread that will never unlock it:
//! it is not recovered until that process exits (only timed calls return meanwhile). A lock
//! held by any other thread is recovered as from a dead thread: exec ends the other threads,
//! and a non-main exec'ing thread gives up its own TID. Release locks before `execve` (or
//! exec from a child of `fork`, which holds none of the parent's locks).
//!
//! `OWNER_DIED` stays in the word while the new owner holds the lock and survives its
//! unlock, so every later acquirer also gets `OwnerDied`, until an owner calls
//! [`RawMutex::mark_consistent`].
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves (a SIGSTOP leaves the same until the process
//! continues; only timed and `try_` calls bound a wait for a stopped owner):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | lock: before the compare-exchange | nothing | — |
//! | holding the lock (after the compare-exchange, before the unlock's) | the word names a dead thread | a waiter probes it once a slice has passed (≤ 1 ms after the death; ~0.15 ms for a waiter that arrives then) and takes it with `OwnerDied`; a timed lock also probes at its deadline; `try_lock` does not probe |
//! | lock, contended: `CONTENDED` set, asleep | a stale `CONTENDED` | the next unlock takes its slow path and makes one needless wake |
//! | unlock, contended: word cleared, sleeper not yet woken | a sleeper with the lock free | its slice runs out and it re-checks (one slice); failpoint test |
//! | takeover: the dead owner's word replaced by the waiter's | nothing (one compare-exchange) | — |
//!
//! # Why not the kernel's robust futexes, and why these slices
//!
//! Linux has robust futexes: each thread registers one list head (`set_robust_list`) and
//! the kernel sets `FUTEX_OWNER_DIED` on the futexes in that list when the thread dies.
//! glibc owns that single list head per thread (for `PTHREAD_MUTEX_ROBUST`), so a library
//! cannot register its own without breaking glibc's. Joining glibc's list instead would
//! need a list node beside every lock word, at glibc's fixed offset from it, so in the
//! shared mapping: a peer that writes garbage there would steer the dying thread's list
//! walk and our own unlinking through pointers it chose. Shared memory is untrusted here,
//! so that is out. A pidfd per waited-for owner makes each probe after the first two a
//! cheap `poll` (a readable pidfd is confirmed by a full probe, since the TID may be reused
//! by then), but a thread cannot sleep on a futex and a pidfd at once without io_uring, so
//! a waiter still wakes once per slice to look: the
//! price of the 800 µs cap is about 1,250 timer wakes a second per waiter on a lock held
//! long, each with a 0.2 µs `poll`; an uncontended or briefly contended lock pays nothing.
//!
//! # Limits
//!
//! - **One PID namespace.** All processes that share a lock must see the same TIDs: a TID
//!   written by a process in another PID namespace names someone else (or no one) here.
//!   The zombie check additionally needs `/proc` of that namespace.
//! - **TID reuse, and the stamp.** The kernel hands a dead thread's TID to a new thread
//!   once the PID space wraps (`pid_max` is the kernel's default, the larger of 32768 and
//!   1024 per possible CPU, unless raised; systemd raises it to 2^22). A lock whose owner
//!   died while nobody waited is first probed at the next contended lock, which may come
//!   after a wrap (a region file kept across a reboot: at once). So a lock word also
//!   records its holder's *stamp*: its start time (field 22 of `/proc/<tid>/stat`, in
//!   clock ticks since boot) modulo 255, plus 1, read once per thread and cached with its
//!   TID. A probe reads the start time of the live thread with that TID anyway (its zombie
//!   check), and a thread whose start time gives another stamp is not the holder: the
//!   lock is taken over (test
//!   `every_stamped_lock_is_recovered_from_a_dead_holder_whose_pid_a_live_process_reused`). The thread
//!   that got the TID needs no probe: a word with its TID and another stamp is not its own
//!   (every word it writes carries its own stamp), and its lock takes it over at once.
//!   What is left:
//!   - a new thread whose stamp equals the dead holder's reads as the holder, as before
//!     stamps. A reuse that comes with a wrap of the PID space does so by a chance of 1 in
//!     255; one forced within one clock tick of the death (`clone3` with `set_tid`,
//!     `ns_last_pid`, a checkpoint restore) always does. Then other threads' blocking
//!     calls wait until it exits, their timed calls return at their deadline, `try_lock`
//!     returns `None` at once (it never probes), and the thread itself waits on the lock
//!     as on a relock (a [`ReentrantMutex`](crate::ReentrantMutex) tells the two apart:
//!     see its docs). It is why every wait has a timed variant;
//!   - where `/proc` cannot tell (not mounted for this PID namespace, a failed read: the
//!     stamp is 0, "unknown"), the word is judged by its TID alone, as before;
//!   - `/proc` shows start times shifted by the *reader's* time namespace, so a stamp
//!     that does not match counts only if the holder is in the prober's time namespace
//!     (`/proc/<tid>/ns/time`, two `readlink`s on that path only); else, and where that
//!     link cannot be read (it needs ptrace read access: another user's thread, or a
//!     process that made itself non-dumpable), the holder is judged by its TID alone, as
//!     before (test
//!     `a_prober_in_another_time_namespace_does_not_take_a_live_holders_lock`);
//!   - a process restored by CRIU keeps its threads' cached stamps, but not their start
//!     times: others would read its live lock holders as dead. Checkpointing a process
//!     that shares locks is not supported. Nor is a thread that joins another time
//!     namespace (`setns`) after its first lock: its cached stamp is its old namespace's;
//!   - a thread's first stamped lock reads its start time: a `gettid`, and an `open`,
//!     `read` and `close` of `/proc/<tid>/stat` (plus, once per process, a `readlink` of
//!     `/proc/self`); later locks read the cached value.
//! - **Zombies.** Without a readable `/proc`, a killed process reads as alive until its
//!   parent reaps it.
//! - **Fork with a guard held.** A forked child inherits copies of its parent's guards but
//!   not the locks: the word still names the parent's thread. The child's copy must not be
//!   used. Dropping it does nothing, also once the child has taken the lock itself: a
//!   guard records the thread that made it (test
//!   `a_forked_copy_of_a_guard_does_not_release_the_childs_own_lock`); a `ReentrantMutex`
//!   guard's copy leaves the nesting count alone too. A [`RawMutex::unlock`] of the child
//!   releases a lock whose word names the child, whoever took it: its callers must not
//!   call it for a parent's acquisition.
//! - **Relocking on one thread** deadlocks like `std::sync::Mutex` (or times out): the word
//!   names the caller, who is alive. Use a `ReentrantMutex` for that.
//!
//! Memory written by the dead owner is visible to the new owner (the kernel orders a dying
//! process's stores before its exit is observable), but it may be half-updated: that is
//! what `OwnerDied` reports.

use core::time::Duration;
use std::time::Instant;

use crate::failpoint::{self, Point};
use crate::futex;
use crate::owner;
use crate::sync::{AtomicU32, Ordering};
use crate::wait::{
    Slices, TRY_LIMIT, deadline_passed, flag_waiting, past, spin_with_backoff,
    stamped_holder_is_dead,
};

/// Mask of the owner's TID in a lock word (a TID is below the kernel's `PID_MAX_LIMIT`,
/// 2^22).
const TID_MASK: u32 = owner::STAMPED_TID_MASK;
/// Mask of the owner's stamp (see `owner::stamp_of`): 0 where its start time was unknown.
const STAMP_MASK: u32 = owner::STAMP_MASK;
/// The holder part of a word: its TID and its stamp, as `owner::current_stamped` gives
/// them.
const HOLDER_MASK: u32 = TID_MASK | STAMP_MASK;
/// The last owner died holding the lock and no owner has marked the data consistent since.
const OWNER_DIED: u32 = 1 << 30;
/// Some thread may be sleeping on the word: unlock must wake.
const CONTENDED: u32 = 1 << 31;
static_assertions::const_assert_eq!(HOLDER_MASK & (OWNER_DIED | CONTENDED), 0);
static_assertions::const_assert_eq!(HOLDER_MASK | OWNER_DIED | CONTENDED, u32::MAX);

/// The holder part of a word (TID and stamp): 0 when unlocked.
#[inline]
const fn owner_of(w: u32) -> u32 {
    w & HOLDER_MASK
}

/// A word no valid sequence of operations produces: a stamp without a TID. It names no
/// live thread. (Every other bit pattern names a possible holder: the TID part cannot
/// exceed `PID_MAX_LIMIT`.)
#[inline]
const fn is_garbage(w: u32) -> bool {
    w & TID_MASK == 0 && w & STAMP_MASK != 0
}

/// Whether word `w` names the TID of the caller (`me`, its stamped id) with another
/// stamp: the holder is a dead thread whose TID the caller got (every word the caller
/// writes carries its own stamp, which does not change while it lives). No syscall.
#[inline]
const fn names_my_tid_elsewhere(w: u32, me: u32) -> bool {
    w & TID_MASK == me & TID_MASK && owner_of(w) != me
}

/// If a waiter may take the lock from word `w` (unlocked, or garbage), the flags its new
/// word must carry besides its TID.
#[inline]
const fn takeable(w: u32) -> Option<u32> {
    if is_garbage(w) {
        Some(OWNER_DIED | CONTENDED)
    } else if owner_of(w) == 0 {
        // A stale CONTENDED on an unlocked word (only hostile bytes make one) is kept:
        // it costs one needless wake.
        Some(w & (OWNER_DIED | CONTENDED))
    } else {
        None
    }
}

/// How a lock was acquired.
///
/// # Examples
///
/// ```
/// use shmstate::{Acquired, RawMutex};
///
/// let m = RawMutex::new();
/// if m.lock() == Acquired::OwnerDied {
///     // repair the protected state, then:
///     m.mark_consistent();
/// }
/// // SAFETY: this thread holds the lock.
/// unsafe { m.unlock() };
/// ```
#[must_use = "OwnerDied means the protected data may be inconsistent"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// A normal acquisition.
    Consistent,
    /// The previous owner died holding the lock (or no owner has marked the lock
    /// consistent since one did); the caller now holds it.
    OwnerDied,
}

impl Acquired {
    #[inline]
    fn from_word(w: u32) -> Acquired {
        if w & OWNER_DIED != 0 {
            Acquired::OwnerDied
        } else {
            Acquired::Consistent
        }
    }
}

/// A robust mutual-exclusion lock without data: one futex word naming its owner.
///
/// Prefer [`Mutex`](crate::Mutex), whose guard proves ownership. `RawMutex` is the
/// building block: `lock` returns how it was acquired and [`unlock`](Self::unlock) is
/// `unsafe`. See the [module docs](self) for the algorithm, owner-death detection and
/// its limits.
///
/// All-zero bytes are an unlocked mutex, and any bytes are a valid one (garbage reads as
/// a dead owner), so it can be placed in shared memory.
///
/// # Examples
///
/// ```
/// use shmstate::{Acquired, RawMutex};
///
/// let m = RawMutex::new();
/// assert_eq!(m.lock(), Acquired::Consistent);
/// assert!(m.try_lock().is_none());
/// // SAFETY: this thread holds the lock.
/// unsafe { m.unlock() };
/// assert!(!m.is_locked());
/// ```
#[derive(Debug, Default)]
#[repr(C)]
pub struct RawMutex {
    /// The lock word:
    ///
    /// | bits   | meaning                                                         |
    /// |--------|-----------------------------------------------------------------|
    /// | 0..22  | owner's TID (`TID_MASK`); 0 = unlocked                          |
    /// | 22..30 | owner's stamp (`STAMP_MASK`): 1-255 from its start time, 0 if unknown; a stamp without a TID is garbage |
    /// | 30     | `OWNER_DIED`: an owner died; data not marked consistent since   |
    /// | 31     | `CONTENDED`: a thread may sleep on the word; unlock must wake   |
    ///
    /// `0` is unlocked and consistent; `OWNER_DIED` alone is unlocked, inconsistent.
    word: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawMutex, u32);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(RawMutex, u32);

impl RawMutex {
    /// An unlocked mutex.
    pub fn new() -> Self {
        RawMutex {
            word: AtomicU32::new(0),
        }
    }

    /// Blocks until the calling thread holds the lock. Recovers the lock from a dead owner
    /// in bounded time (see the [module docs](self)).
    ///
    /// Locking a mutex the calling thread already holds deadlocks.
    #[inline]
    pub fn lock(&self) -> Acquired {
        let me = owner::current_stamped();
        // Acquire pairs with the Release compare-exchange in `unlock`, so the previous
        // owner's writes happen before ours.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Acquired::Consistent;
        }
        loop {
            if let Some(a) = self.lock_contended(me, None) {
                return a;
            }
        }
    }

    /// Takes the lock if it is free (or its word is garbage, or names a dead thread whose
    /// TID the caller got: the caller's TID with another stamp), without waiting and
    /// without a syscall. Returns `None` if it is held, even if its holder is dead:
    /// recovering a dead owner needs a probe, which [`lock`](Self::lock) and
    /// [`lock_until`](Self::lock_until) do.
    #[inline]
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = owner::current_stamped();
        // Acquire: as in `lock`.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Consistent),
            Err(w) => self.try_lock_slow(me, w),
        }
    }

    #[cold]
    fn try_lock_slow(&self, me: u32, mut w: u32) -> Option<Acquired> {
        for _ in 0..TRY_LIMIT {
            // A dead thread's word with the caller's TID needs no probe: taken too.
            let flags = match takeable(w) {
                Some(flags) => flags,
                None if names_my_tid_elsewhere(w, me) => OWNER_DIED | (w & CONTENDED),
                None => return None,
            };
            match self.take(w, me | flags) {
                Ok(a) => return Some(a),
                Err(now) => w = now,
            }
        }
        None
    }

    /// [`lock`](Self::lock) that gives up after `timeout`. Returns `None` if the lock was
    /// not acquired; then at least `timeout` has passed.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<Acquired> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.lock_until(deadline),
            None => Some(self.lock()),
        }
    }

    /// [`lock`](Self::lock) that gives up at `deadline` (`CLOCK_MONOTONIC`). Returns `None`
    /// if the lock was not acquired; then `deadline` has passed.
    pub fn lock_until(&self, deadline: Instant) -> Option<Acquired> {
        if let Some(a) = self.try_lock() {
            return Some(a);
        }
        self.lock_contended(owner::current_stamped(), Some(deadline))
    }

    /// Compare-exchanges the observed word `w` to `new` (`new` names the caller).
    #[inline]
    fn take(&self, w: u32, new: u32) -> Result<Acquired, u32> {
        // Acquire pairs with the Release compare-exchange in `unlock` of the previous
        // owner (a dead owner released nothing; what it wrote is visible anyway, see the
        // module docs).
        self.word
            .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| Acquired::from_word(new))
    }

    /// Spins with loads while the lock is held and nobody sleeps on it.
    fn spin(&self) -> u32 {
        // Backoff: 1, 2, 4, 8, then 16 pauses between loads, `SPIN_LIMIT` pauses in all
        // (the same time before sleeping as one load per pause, with ~10 loads instead
        // of 100). Every load pulls the lock's cache line away from the owner, whose
        // next unlock and re-lock must then fetch it back; loading less often lets the
        // owner run more critical sections per line transfer. Measured on 2 vCPUs
        // (criterion `mutex_contended_*`, 3 A/B runs): 2 processes 28-44 ns -> 21-23 ns
        // per lock+unlock, 2 threads 42-44 -> 21-23 ns; uncontended unchanged.
        let mut w = 0;
        spin_with_backoff(|| {
            // Relaxed: only a hint; every acquisition is a compare-exchange.
            w = self.word.load(Ordering::Relaxed);
            takeable(w).is_some() || w & CONTENDED != 0
        });
        w
    }

    /// The contended path. `None` only if `deadline` passed.
    #[cold]
    fn lock_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let mut w = self.spin();
        // While spinning we have not announced ourselves: take it without CONTENDED.
        if let Some(flags) = takeable(w) {
            match self.take(w, me | flags) {
                Ok(a) => return Some(a),
                Err(now) => w = now,
            }
        }
        let mut probe_due = false;
        let mut slices = Slices::for_holder();
        loop {
            if let Some(flags) = takeable(w) {
                // We may have slept, so others may sleep too: keep CONTENDED (as std does).
                match self.take(w, me | flags | CONTENDED) {
                    Ok(a) => return Some(a),
                    Err(now) => {
                        // The word changed first. Past the deadline, one last look: a word
                        // another process keeps rewriting must not keep a timed lock
                        // looping here past its bound.
                        if past(deadline) {
                            return self.last_chance(me);
                        }
                        w = now;
                        continue;
                    }
                }
            }
            if !flag_waiting(&self.word, &mut w, CONTENDED) {
                // The word changed first: as above.
                if past(deadline) {
                    return self.last_chance(me);
                }
                continue;
            }
            // Probe only once a whole slice has passed, woken or not (`Slices::probe_now`):
            // under ordinary contention the owner unlocks and wakes us first, so the
            // probe's syscalls stay off the contended path, and a peer that keeps waking
            // us cannot put the probe off. A lock whose owner is already dead costs one
            // first slice (50 µs) before it is recovered.
            if names_my_tid_elsewhere(w, me)
                || slices.probe_now(&mut probe_due) && slices.stamped_holder_is_dead(owner_of(w))
            {
                match self.take(w, me | OWNER_DIED | CONTENDED) {
                    Ok(a) => return Some(a),
                    Err(now) => {
                        // The word changed first: probe the new one (unless the deadline
                        // passed: a word another process keeps rewriting must not keep a
                        // timed lock past its bound).
                        if past(deadline) {
                            return self.last_chance(me);
                        }
                        probe_due = true;
                        w = now;
                        continue;
                    }
                }
            }
            let Some(slice) = slices.next(deadline) else {
                return self.last_chance(me);
            };
            if !futex::wait(&self.word, w, slice) {
                if deadline_passed(deadline) {
                    return self.last_chance(me);
                }
                // A slice ran out: has the owner died meanwhile?
                probe_due = true;
            }
            // Relaxed: re-read before the next compare-exchange, which orders.
            w = self.word.load(Ordering::Relaxed);
        }
    }

    /// A timed lock's deadline has passed: one last look, and one probe, so that a deadline
    /// shorter than the first slice still takes over from a dead owner (it would otherwise
    /// never probe). `None` if the lock is held by a live thread (or changed meanwhile).
    #[cold]
    fn last_chance(&self, me: u32) -> Option<Acquired> {
        // Relaxed: the compare-exchange in `take` orders.
        let w = self.word.load(Ordering::Relaxed);
        let new = match takeable(w) {
            Some(flags) => me | flags | CONTENDED,
            None if names_my_tid_elsewhere(w, me) || stamped_holder_is_dead(owner_of(w)) => {
                me | OWNER_DIED | CONTENDED
            }
            None => return None,
        };
        self.take(w, new).ok()
    }

    /// Releases the lock, waking one waiter if any may sleep. Keeps `OWNER_DIED`.
    ///
    /// If the word does not name the calling thread (a copy of a guard in a forked child,
    /// or another process overwrote the word), nothing happens.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock (acquired by `lock`, `try_lock` or a timed lock
    /// on this thread, and not unlocked since), and nothing uses the data it protects
    /// after this call until it locks again.
    #[inline]
    pub unsafe fn unlock(&self) {
        let me = owner::current_stamped();
        // Release pairs with the Acquire compare-exchange of the next owner (`take`,
        // `lock`, `try_lock`), publishing our writes to the protected data.
        if let Err(w) = self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        {
            self.unlock_slow(me, w, true);
        }
    }

    /// `unlock` that forgets to wake: a deliberately broken unlock for the loom test that
    /// proves lost wakeups are caught. Not part of the API.
    ///
    /// # Safety
    ///
    /// As for [`unlock`](Self::unlock).
    #[cfg(loom)]
    #[doc(hidden)]
    pub unsafe fn unlock_without_wake(&self) {
        let me = owner::current_stamped();
        // Release: as in `unlock`.
        if let Err(w) = self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        {
            self.unlock_slow(me, w, false);
        }
    }

    #[cold]
    fn unlock_slow(&self, me: u32, mut w: u32, wake: bool) {
        // `w` is the word the fast path's compare-exchange found (a flag was set).
        loop {
            if is_garbage(w) || owner_of(w) != me {
                // Not ours (see `unlock`'s docs): leave it for its owner or the recovery.
                return;
            }
            // Release: as in `unlock`.
            match self.word.compare_exchange(
                w,
                w & OWNER_DIED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        failpoint::hit(Point::MutexUnlockCleared);
        if wake && w & CONTENDED != 0 {
            futex::wake_one(&self.word);
        }
    }

    /// Clears the `OWNER_DIED` mark if the calling thread holds the lock: the data is
    /// consistent again, later acquirers get [`Acquired::Consistent`]. Returns whether the
    /// calling thread holds the lock (if not, nothing changes).
    pub fn mark_consistent(&self) -> bool {
        let me = owner::current_stamped();
        // Relaxed: the mark is read by the next owner's Acquire compare-exchange, which
        // our later Release unlock (same word, after this in modification order) orders.
        let r = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (!is_garbage(w) && owner_of(w) == me).then_some(w & !OWNER_DIED)
            });
        r.is_ok()
    }

    /// Takes the lock over from a dead thread whose TID the calling thread got: if the
    /// word names the calling thread, which knows that it does not hold the lock (a lock
    /// built on this one that keeps its own count of what each thread holds, as
    /// [`ReentrantMutex`](crate::ReentrantMutex) does), the lock is a dead owner's, and
    /// the caller now holds it with `OWNER_DIED` set: `Some(Acquired::OwnerDied)`. `None`
    /// if the word names another thread or none (take the lock the usual way), or if the
    /// word kept changing under a bounded number of tries (a peer rewriting it: then it
    /// may still name the caller, and a blocking lock waits on it as on a live holder).
    /// No syscall.
    ///
    /// A caller that did hold the lock only marks it `OWNER_DIED`, and keeps it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Acquired, RawMutex};
    ///
    /// let m = RawMutex::new();
    /// // Free: nothing to take over.
    /// assert_eq!(m.recover_from_reused_tid(), None);
    /// assert_eq!(m.lock(), Acquired::Consistent);
    /// // The word names this thread: as a thread that reused a dead owner's TID finds it.
    /// assert_eq!(m.recover_from_reused_tid(), Some(Acquired::OwnerDied));
    /// assert!(m.is_owned_by_current_thread() && m.mark_is_set());
    /// // SAFETY: this thread holds the lock.
    /// unsafe { m.unlock() };
    /// ```
    #[inline]
    pub fn recover_from_reused_tid(&self) -> Option<Acquired> {
        let me = owner::current_stamped();
        // Relaxed: the compare-exchange in `take` orders.
        let mut w = self.word.load(Ordering::Relaxed);
        // Bounded: only a flag flipped by a sleeper (or a peer) fails the exchange.
        for _ in 0..TRY_LIMIT {
            // By the TID alone: whatever the stamp, a word naming a thread that knows it
            // holds nothing is a dead owner's (a stamp like its own is a 1-in-255 chance).
            if is_garbage(w) || w & TID_MASK != me & TID_MASK {
                return None;
            }
            // Keeps `CONTENDED`: threads may sleep on the word.
            match self.take(w, me | OWNER_DIED | (w & CONTENDED)) {
                Ok(a) => return Some(a),
                Err(now) => w = now,
            }
        }
        None
    }

    /// Whether the word names the calling thread's TID, whatever its stamp (a snapshot;
    /// garbage never does): the cheap check before
    /// [`recover_from_reused_tid`](Self::recover_from_reused_tid).
    #[inline]
    pub(crate) fn names_my_tid(&self) -> bool {
        // Relaxed: only the calling thread writes its TID into the word.
        let w = self.word.load(Ordering::Relaxed);
        // A TID is nonzero, so a word whose TID part is ours is not garbage.
        w & TID_MASK == owner::current_stamped() & TID_MASK
    }

    /// Whether the `OWNER_DIED` mark is set (a snapshot, exact for the holder).
    pub fn mark_is_set(&self) -> bool {
        // Relaxed: the holder reads its own word; for others it is a snapshot.
        self.word.load(Ordering::Relaxed) & OWNER_DIED != 0
    }

    /// Whether the lock is held now (by anyone, perhaps a dead thread). A snapshot.
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for diagnostics, not used to synchronise.
        let w = self.word.load(Ordering::Relaxed);
        is_garbage(w) || owner_of(w) != 0
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn is_owned_by_current_thread(&self) -> bool {
        // Relaxed: only the calling thread can make this true or false for itself.
        let w = self.word.load(Ordering::Relaxed);
        // `!is_garbage(w) && owner_of(w) == me` in one comparison: our TID part is
        // nonzero, so a word whose holder part equals ours is not garbage.
        owner_of(w) == owner::current_stamped()
    }

    /// The TID of the holder, if any (a snapshot, for diagnostics).
    pub fn owner(&self) -> Option<u32> {
        self.holder().map(|h| h & TID_MASK)
    }

    /// The holder part of the word (TID and stamp), if any: what
    /// [`stamped_holder_is_dead`] probes (a snapshot).
    pub(crate) fn holder(&self) -> Option<u32> {
        // Relaxed: a snapshot; a caller that acts on it compare-exchanges the word.
        let w = self.word.load(Ordering::Relaxed);
        (!is_garbage(w) && owner_of(w) != 0).then_some(owner_of(w))
    }

    /// The raw word, for tests and diagnostics (e.g. writing hostile bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn word(&self) -> &AtomicU32 {
        &self.word
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;

    /// The stamp of stamped id `id`.
    fn stamp(id: u32) -> u32 {
        (id & STAMP_MASK) >> owner::STAMP_SHIFT
    }

    /// `id` with another nonzero stamp.
    fn restamped(id: u32) -> u32 {
        id & TID_MASK | (stamp(id) % 255 + 1) << owner::STAMP_SHIFT
    }

    /// A word naming a live thread with its own stamp is a live holder's; with another
    /// stamp it is a dead one's whose TID that thread got: taken over with `OwnerDied` by
    /// a blocking and by a timed lock, after their first probe.
    #[test]
    fn a_live_tid_with_another_stamp_is_a_dead_holders() {
        let thread = owner::LiveThread::start(owner::current_stamped);
        let live = thread.id();
        if stamp(live) == 0 {
            eprintln!("skipped: /proc shows no start time here");
            drop(thread);
            return;
        }
        let m = RawMutex::new();
        m.word.store(live, Ordering::Relaxed);
        assert_eq!(m.lock_timeout(Duration::from_millis(20)), None, "live");
        assert_eq!(m.try_lock(), None);
        for timed in [true, false] {
            m.word.store(restamped(live) | CONTENDED, Ordering::Relaxed);
            let a = if timed {
                m.lock_timeout(Duration::from_secs(10))
            } else {
                Some(m.lock())
            };
            assert_eq!(a, Some(Acquired::OwnerDied), "timed: {timed}");
            assert!(m.is_owned_by_current_thread());
            assert!(m.mark_consistent());
            // SAFETY: this thread holds the lock.
            unsafe { m.unlock() };
        }
        drop(thread);
    }

    /// A word naming the calling thread's TID with another stamp (or none) is a dead
    /// thread's whose TID the caller got: taken over without waiting for a probe. With the
    /// caller's own stamp it is the caller's own lock (a relock, which waits).
    #[test]
    fn the_callers_tid_with_another_stamp_is_a_dead_holders() {
        let me = owner::current_stamped();
        let m = RawMutex::new();
        for word in [me & TID_MASK, restamped(me)] {
            if word == me {
                continue;
            }
            m.word.store(word, Ordering::Relaxed);
            assert_eq!(
                m.try_lock(),
                Some(Acquired::OwnerDied),
                "try_lock {word:#x}"
            );
            // SAFETY: this thread holds the lock.
            unsafe { m.unlock() };
            m.word.store(word | CONTENDED, Ordering::Relaxed);
            // Timed, so that a regression fails instead of waiting on itself for good.
            let a = m.lock_timeout(Duration::from_secs(10));
            assert_eq!(a, Some(Acquired::OwnerDied), "{word:#x}");
            assert!(m.is_owned_by_current_thread());
            // SAFETY: this thread holds the lock.
            unsafe { m.unlock() };
            assert!(!m.is_locked());
        }
        // The blocking lock's own path (not through `try_lock`), on a thread of its own so
        // that a regression, which would wait on itself for good, fails the test.
        let (tx, rx) = std::sync::mpsc::channel();
        let m2 = std::sync::Arc::new(RawMutex::new());
        let m3 = m2.clone();
        std::thread::spawn(move || {
            // Stamp 0 (unknown): the probe would read the caller alive; only the rule
            // that the caller's TID with another stamp is not its own takes it.
            let word = owner::current_stamped() & TID_MASK;
            m3.word.store(word, Ordering::Relaxed);
            let a = m3.lock();
            // SAFETY: this thread holds the lock.
            unsafe { m3.unlock() };
            let _ = tx.send(a);
        });
        let a = rx.recv_timeout(Duration::from_secs(30));
        assert_eq!(a, Ok(Acquired::OwnerDied), "lock() waited on itself");
        m.word.store(me, Ordering::Relaxed);
        assert_eq!(
            m.lock_timeout(Duration::from_millis(20)),
            None,
            "a relock waits"
        );
        assert_eq!(m.recover_from_reused_tid(), Some(Acquired::OwnerDied));
        // SAFETY: this thread holds the lock.
        unsafe { m.unlock() };
    }

    /// The stamp a thread records is the one a prober works out from its start time.
    #[test]
    fn a_threads_stamp_is_its_start_times() {
        let me = owner::current_stamped();
        assert_eq!(me & TID_MASK, owner::current());
        match owner::stat(Some(owner::current())) {
            owner::ProcStat::Known { start, .. } => {
                assert_eq!(stamp(me), owner::stamp_of(start));
                assert_eq!(owner::probe_stamped(me), owner::Liveness::Alive);
                assert_eq!(owner::probe_stamped(restamped(me)), owner::Liveness::Dead);
                assert_eq!(owner::probe_stamped(me & TID_MASK), owner::Liveness::Alive);
            }
            _ => assert_eq!(stamp(me), 0),
        }
    }
}
