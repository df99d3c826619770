//! Failpoints: named steps of a protocol where a test can stop a process, to SIGKILL it
//! there and check the repair that the primitive's "Crash windows" table documents.
//!
//! Compiled only with `--cfg shmstate_test_hooks` (a separate build: `.ci/run` runs
//! `tests/failpoints.rs` with it); otherwise `hit` is an empty inline function and the
//! protocols carry no trace of it. A process arms points with `arm`; the next time any of
//! its threads reaches an armed step, the point is disarmed and the process stops itself
//! (`SIGSTOP`), so the test sees it stopped (`waitpid` with `WUNTRACED`) and kills it, or
//! continues it (`SIGCONT`) to the next armed step.

/// The steps a test can stop at. See each primitive's crash-window table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Point {
    /// `RawRwLock` read: the slot is claimed, the state not yet checked.
    RwReadClaimed = 1,
    /// `RawRwLock` read unlock: the slot is freed, a draining writer not yet woken.
    RwReadUnlockFreed,
    /// `RawRwLock` write: `WRITE_LOCKED` is set, the readers not yet checked (`DRAINING`
    /// not set).
    RwWriteLocked,
    /// `RawRwLock` write: `DRAINING` is set, the writer about to wait for the readers.
    RwDraining,
    /// `RawRwLock` write unlock (slow path): the state is cleared, the waiters not yet
    /// woken.
    RwWriteUnlockCleared,
    /// `RawMutex` unlock (slow path): the word is cleared, the sleeper not yet woken.
    MutexUnlockCleared,
    /// `RawRwLock` recovery of a dead writer (`recover`): the state is released on its
    /// behalf, the waiters not yet woken.
    RwRecoverCleared,
    /// `RawRwLock` clear of `WRITERS_WAITING` (an overflow reader clearing a possibly stray
    /// bit, or a writer giving up): the bit is cleared, the waiters not yet woken.
    RwWritersWaitingCleared,
    /// `RawRwLock` recovery of dead readers: about to probe the slots (nothing changed yet;
    /// a step to hold a recoverer at while a test sets up a writer behind it).
    RwDeadReadersScan,
    /// `RawRwLock` recovery of dead readers: a dead reader's slot is freed, a draining
    /// writer not yet woken.
    RwDeadReaderFreed,
    /// `RawRwLock` read unlock of an overflow reader: counted out, the waiters not yet
    /// woken.
    RwReadUnlockOverflowCounted,
    /// `Condvar` wait: registered in the sleepers word, the mutex not yet unlocked.
    CondvarWaitRegistered,
    /// `Condvar` notify_one: the word is bumped and the wake found nobody, `SLEEPERS` not
    /// yet cleared.
    CondvarNotifyOneWokeNobody,
    /// `Condvar` notify_one or notify_all: the word is bumped, the sleepers not yet woken.
    CondvarNotifyBumped,
    /// Region directory: an entry is `CLAIMED` by this process, its name and type written
    /// and its space allocated, the name not yet published (`INITIALISING`).
    RegionClaimed,
    /// Region directory: an object is published (`READY`), the processes waiting for it not
    /// yet woken.
    RegionReadyUnwoken,
    /// `RawRwLock` downgrade: a reader slot is claimed for the writer, `WRITE_LOCKED` not
    /// yet released.
    RwDowngradeClaimed,
    /// Map slot write (a new entry or a value update): the slot's sequence is odd,
    /// nothing of the entry written yet.
    MapSlotWriting,
    /// Map insert of a new key: the slot is written (sequence even again), the counts not
    /// yet updated.
    MapSlotWritten,
    /// Map remove: the stripe's structure sequence is odd, no slot changed yet.
    MapShiftStarted,
    /// Map remove: an entry is copied back into the hole (two identical copies), its old
    /// slot not yet handled.
    MapShiftCopied,
    /// Map remove: the last hole is emptied, the structure sequence still odd.
    MapRemoveCleared,
    /// Map repair: an entry is copied to its new slot, its old slot not yet emptied.
    MapRepairMoved,
}

#[cfg(shmstate_test_hooks)]
mod imp {
    use super::Point;
    use crate::sync::{AtomicU32, Ordering};

    /// The armed points, one bit each (`1 << p`).
    static ARMED: AtomicU32 = AtomicU32::new(0);

    const fn bit(p: Point) -> u32 {
        1 << p as u32
    }

    /// Arms `p` in this process (besides the points armed already): the next thread to
    /// reach it disarms it and stops the process.
    pub fn arm(p: Point) {
        // Relaxed: the arming thread reaches the point itself, or the test orders it.
        ARMED.fetch_or(bit(p), Ordering::Relaxed);
    }

    /// A protocol step: stops the process if `p` is armed (once).
    #[inline]
    pub(crate) fn hit(p: Point) {
        // Relaxed: see `arm`.
        if ARMED.load(Ordering::Relaxed) & bit(p) != 0
            && ARMED.fetch_and(!bit(p), Ordering::Relaxed) & bit(p) != 0
        {
            // SAFETY: `raise` has no preconditions; SIGSTOP cannot be caught.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
    }
}

#[cfg(shmstate_test_hooks)]
pub use imp::arm;
#[cfg(shmstate_test_hooks)]
pub(crate) use imp::hit;

/// A protocol step (no failpoints in this build).
#[cfg(not(shmstate_test_hooks))]
#[inline(always)]
pub(crate) fn hit(_: Point) {}
