//! The process-wide memory barrier that lets the busy side of the channel go without a
//! fence (module docs of [`channel`](super), "Waiting" and "Closing").
//!
//! The pattern is the asymmetric Dekker of userspace RCU. Two parties each store a word
//! and then load the other's: a *busy* side (a sender publishing a record, a receiver
//! releasing one) that runs per message, and a *slow* side (a party about to sleep, a
//! closer) that runs rarely. Either must see the other's store. The busy side keeps its
//! store and its load in program order with a compiler barrier only; the slow side stores,
//! fences, then calls `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which executes a full
//! memory barrier on every CPU running a thread of a process registered for it (a thread
//! not running is ordered by the scheduler's own barriers), and then loads. Either the busy
//! side's load comes after that barrier on its CPU (it sees the slow side's store), or its
//! store came before it (the slow side's load sees it): the store-buffering litmus test
//! with a full barrier on both sides.
//!
//! This rests on the kernel's contract for `membarrier(2)`, outside Rust's memory model.
//! Under loom the barrier is a `SeqCst` fence on the slow side and each compiler barrier
//! on the busy side a `SeqCst` fence too: what the barrier guarantees at its point. A
//! loom model may make a thread stand for a process without the barrier
//! (`Channel::act_unregistered_for_tests`: it fences on its busy side, issues no barrier
//! and keeps `IDLE_FENCING`), or for a registered process in a model where no party can
//! issue the barrier (`Channel::act_unpaired_for_tests`: its compiler barrier is then no
//! fence at all, as nothing pairs with it).
//!
//! Every process registers when it first makes or opens a channel
//! ([`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`]), or at its first busy side if it reached
//! a channel otherwise (`Region::get`); a forked child inherits the registration with its
//! parent's memory (the kernel copies it with the address space; exec drops it, and the
//! new image registers again). A process that cannot register (a kernel before 4.16, or a
//! seccomp filter that refuses the call) fences on its busy side itself; when it sleeps it
//! sets the channel's `fenced` word, so that registered processes fence too from then on;
//! and as a send-lock holder it says so in `busy` ([`IDLE_FENCING`]), so that a party that
//! cannot issue the barrier either may still make a close final (the pattern with fences
//! on both sides). What it cannot do is make a close final while a registered process
//! holds the send lock idle (a held send side between sends, a reservation not yet
//! committed): then the holder does when it lets the lock go without a send (it fences
//! and looks at `closed`), or at a later send that sees `closed`, or a registered
//! receiver does (module docs, "Closing").
//!
//! [`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`]: rustix::thread::MembarrierCommand::RegisterGlobalExpedited

use crate::sync::{Ordering, fence};

/// The `busy` word of a send-lock holder between its commits (outside its steps from
/// setting `busy` to its header) in a registered process: its busy side has only compiler
/// barriers, so only the process-wide barrier pairs with it.
pub(crate) const IDLE: u64 = 0;

/// The `busy` word of a send-lock holder between its commits in a process that fences on
/// its busy side (it cannot use the barrier): a party that stores `closed` and fences may
/// rely on that holder's fence instead of the barrier.
pub(crate) const IDLE_FENCING: u64 = 2;

/// The `busy` word while the holder is inside its commit.
pub(crate) const BUSY: u64 = 1;

/// The `busy` value this process's send-lock holders store between their commits.
#[inline(always)]
pub(crate) fn idle() -> u64 {
    #[cfg(not(loom))]
    if !registered() {
        return IDLE_FENCING;
    }
    #[cfg(loom)]
    if modelled() == Modelled::Refused {
        return IDLE_FENCING;
    }
    IDLE
}

/// Under loom, what the calling thread stands for (a model sets it per thread; a thread
/// stands for a process of its own).
#[cfg(loom)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Modelled {
    /// A registered process, where every party issues the barrier: its point is a
    /// `SeqCst` fence on both sides (the default).
    Registered,
    /// A process the kernel refuses the barrier: it fences on its busy side, issues no
    /// barrier, and keeps `IDLE_FENCING` between its commits.
    Refused,
    /// A registered process in a model where no party issues the barrier: its busy
    /// side's compiler barrier pairs with nothing, so it is no fence (unless `strong`).
    /// Its own barrier is not modelled either (`issue` says it failed, for a close),
    /// and it must not sleep (`assert_may_sleep`).
    Unpaired,
}

#[cfg(loom)]
loom::thread_local! {
    static MODELLED: core::cell::Cell<Modelled> = core::cell::Cell::new(Modelled::Registered);
}

/// Under loom: what the calling thread stands for.
#[cfg(loom)]
fn modelled() -> Modelled {
    MODELLED.with(core::cell::Cell::get)
}

/// Under loom: panics in a thread that stands for an unpaired process (it must not sleep
/// in a model: `wait_on`).
#[cfg(loom)]
pub(crate) fn assert_may_sleep() {
    assert!(
        modelled() != Modelled::Unpaired,
        "a thread standing for an unpaired process slept: the model cannot say what its barrier orders"
    );
}

/// Under loom: makes the calling thread stand for `m` from now on.
#[cfg(loom)]
pub(crate) fn model(m: Modelled) {
    MODELLED.with(|c| c.set(m));
}

/// The registration: not tried yet.
#[cfg(not(loom))]
const UNKNOWN: u8 = 0;
/// Registered: the barrier reaches this process's threads.
#[cfg(not(loom))]
const REGISTERED: u8 = 1;
/// The kernel refused the registration: this process fences on its busy side.
#[cfg(not(loom))]
const UNAVAILABLE: u8 = 2;
/// The registration failed for a while (no memory, interrupted): this process fences on
/// its busy side, and its next sleep or finalisation tries again (not its sends: no
/// syscall per message).
#[cfg(not(loom))]
const RETRY: u8 = 3;

/// This process's registration. Not a loom atomic (a static): the state is process-wide
/// and only ever moves from `UNKNOWN` once.
#[cfg(not(loom))]
static STATE: crate::sync::AtomicU8 = crate::sync::AtomicU8::new(UNKNOWN);

/// Registers this process for the barrier, once; whether it is registered. Called when a
/// channel is made or opened, so that a process is registered before its first send or
/// receive. Idempotent, and cheap after the first call (a load).
#[inline]
pub(crate) fn register() -> bool {
    #[cfg(not(loom))]
    {
        // Relaxed: the state only says which fence the busy side uses; the kernel orders
        // the registration itself.
        match STATE.load(Ordering::Relaxed) {
            REGISTERED => true,
            UNAVAILABLE => false,
            _ => register_now(),
        }
    }
    #[cfg(loom)]
    true
}

/// The first [`register`] of this process.
#[cfg(not(loom))]
#[cold]
fn register_now() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier};
    let state = match membarrier(MembarrierCommand::RegisterGlobalExpedited) {
        Ok(()) => REGISTERED,
        // Not for a while (no memory now, interrupted): stay unknown, try again later
        // (meanwhile this process fences, as an unregistered one).
        Err(e) if e == rustix::io::Errno::NOMEM || e == rustix::io::Errno::INTR => RETRY,
        // Not on this kernel (ENOSYS, EINVAL) or not allowed (EPERM: seccomp).
        Err(_) => UNAVAILABLE,
    };
    // Relaxed: as in `register`. Two threads that register at once both call the kernel
    // (idempotent) and store the same answer.
    STATE.store(state, Ordering::Relaxed);
    state == REGISTERED
}

/// Makes this process act as one whose kernel refuses the barrier, from now on (for
/// tests of the fallback: its busy side fences, its sleepers set `fenced`). The kernel's
/// own registration, if any, stays: it only makes barriers reach this process too.
#[cfg(all(not(loom), any(test, feature = "test-hooks")))]
pub(crate) fn act_unregistered() {
    // Relaxed: as in `register`.
    STATE.store(UNAVAILABLE, Ordering::Relaxed);
}

/// Whether this process is registered: its busy side may go with a compiler barrier.
#[cfg(not(loom))]
#[inline(always)]
fn registered() -> bool {
    // Relaxed: as in `register`.
    STATE.load(Ordering::Relaxed) == REGISTERED
}

/// The busy side's barrier between its store and its load: a compiler barrier only in a
/// registered process when `strong` is false, else a `SeqCst` fence (an unregistered
/// process, or a channel whose `fenced` word says some sleeper cannot issue the barrier).
/// Under loom a `SeqCst` fence (the barrier's effect, modelled), except in a thread that
/// stands for an unpaired process (`Modelled::Unpaired`) when `strong` is false.
#[inline(always)]
pub(crate) fn busy_side(strong: bool) {
    #[cfg(not(loom))]
    if !strong && registered() {
        crate::sync::compiler_fence(Ordering::SeqCst);
        return;
    }
    #[cfg(loom)]
    if !strong && modelled() == Modelled::Unpaired {
        return;
    }
    fence(Ordering::SeqCst);
}

/// For a send-lock holder before its commit: registers this process if it never tried (a
/// channel reached without `Channel::new` or a region's channel calls), so that it does
/// not fence for good. A load after the first call.
#[inline(always)]
pub(crate) fn ensure_registered() {
    #[cfg(not(loom))]
    // Relaxed: as in `register`.
    if STATE.load(Ordering::Relaxed) == UNKNOWN {
        register_now();
    }
}

/// The slow side's barrier, after its store and its own `SeqCst` fence: whether it was
/// issued. `false` in a process that cannot issue it (the caller then relies on its
/// fence alone, and says so in the channel's `fenced` word where a lost wake matters).
/// A syscall: microseconds, an interrupt to every CPU running a registered process.
#[cold]
pub(crate) fn issue() -> bool {
    #[cfg(not(loom))]
    {
        use rustix::thread::{MembarrierCommand, membarrier};
        register() && membarrier(MembarrierCommand::GlobalExpedited).is_ok()
    }
    #[cfg(loom)]
    match modelled() {
        Modelled::Registered => {
            fence(Ordering::SeqCst);
            true
        }
        // An unpaired thread (making a close final: it never sleeps, `wait_on`): loom
        // cannot model its barrier reaching threads whose compiler barrier is no fence,
        // so it goes without, as a refused one (weaker than it is: conservative).
        Modelled::Refused | Modelled::Unpaired => false,
    }
}
