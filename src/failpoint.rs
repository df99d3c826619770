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
    /// `Histogram::observe` (owned or shared stripe): the bucket's count is added, the
    /// value not yet in its sum.
    HistogramCounted,
    /// Region removal: the life-cycle word is `RETIRING`, the attach table not yet scanned.
    RegionRetiring,
    /// Region removal: the life-cycle word is `RETIRED`, the file not yet unlinked.
    RegionRetired,
    /// Region attach: a table word is claimed, the life-cycle word not yet read.
    RegionAttachClaimed,
    /// Region fork child handler: the child's word is swapped into the slot its parent
    /// claimed for it, the child not yet returned from `fork`.
    RegionForkSwapped,
    /// Region removal: the file is unlinked, the life-cycle word not yet marked done.
    RegionUnlinked,
    /// Region attach: a `RETIRING` life-cycle word is cancelled (`LIVE`), the open not yet
    /// returned.
    RegionRetiringCancelled,
    /// Region removal scan (or a full table's prune): a dead process's word is freed, the
    /// rest of the table not yet scanned.
    RegionScanPruned,
    /// Region handle drop: its table word is released, the removal not yet begun.
    RegionReleased,
    /// `Channel` send: the payload is written past `tail`, the word after the record
    /// zeroed and `pending` stored; `tail` not yet moved (nothing committed).
    ChannelSendWritten,
    /// `Channel` send: the payload is written past `tail` and the word after the record
    /// zeroed; `pending` not yet stored (still the previous record's).
    ChannelSendZeroed,
    /// `Channel` send: `tail` is moved past the record (committed), its header not yet
    /// stored (not yet published).
    ChannelSendCommitted,
    /// `Channel` send: the record's header is stored (published), the send lock not yet
    /// released.
    ChannelSendPublished,
    /// `Channel` repair of a record whose sender died before its header: on a wrap, the
    /// `SKIP` record at offset 0 is stored, the padding before it not yet.
    ChannelSkipWritten,
    /// `Channel` receive: `head` is stored past the message (claimed), the message not
    /// yet read and `free` not yet stored.
    ChannelRecvClaimed,
    /// `Channel` receive: `free` is stored (released), the receive lock not yet released.
    ChannelRecvFreed,
    /// `Channel` send: published and unlocked, sleeping receivers not yet woken.
    ChannelSendUnwoken,
    /// `Channel` receive: released and unlocked, sleeping senders not yet woken.
    ChannelRecvUnwoken,
    /// `Channel` close: `closed` is stored and the close made final if it could be, the
    /// sleepers not yet woken.
    ChannelCloseUnwoken,
    /// `Channel` repair of a dead receiver's claim: the message is counted in `lost` (its
    /// pending bit set), its space not yet released (`free` not stored).
    ChannelRepairCounted,
    /// `Channel` repair of a dead receiver's claim: released (`free` stored), the pending
    /// bit of `lost` not yet cleared (a claim of a `SKIP` record is released uncounted).
    ChannelRepairFreed,
    /// `Channel` repair (either side's lock taken from a dead holder): repaired, the
    /// lock's owner-died mark not yet cleared.
    ChannelRepaired,
    /// `Channel` drain: a message released, the next not yet claimed (receive lock held).
    ChannelDrainReleased,
    /// Map slot write (a new entry or a value update): the slot's sequence is odd,
    /// nothing of the entry written yet.
    MapSlotWriting,
    /// Map insert of a new key: the slot is written (sequence even again), its place
    /// counted before.
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
    /// Map count update: one of the stripe's count and the map's updated, the other not
    /// (an insert: its place reserved in the map's count, the stripe's not yet counted).
    MapCountsHalf,
    /// Map move (a removal's shift or a repair's re-home): the destination slot's sequence
    /// is odd, the entry partly copied into it.
    MapCopying,
    /// Map clear: the first full slot of a stripe emptied, the structure sequence odd.
    MapClearing,
    /// Map `insert_evicting`: the victim removed, its place kept for the new entry (the
    /// map's count unchanged), the new entry not yet written.
    MapEvicted,
    /// Map `insert_evicting` evicting from another stripe: the victim removed there, its
    /// place declared pending in the key's stripe, not yet taken off the victim's stripe.
    MapPlaceMoving,
    /// Region growth: about to extend the file (nothing changed yet).
    RegionGrowing,
    /// Region growth: the file is extended, the size word not yet raised.
    RegionGrown,
    /// Stale-format recreation: the old file's lock is taken, nothing changed yet.
    RegionStaleLocked,
    /// Stale-format recreation: the read lease on the old file is held (opens of it for
    /// writing wait), not yet released.
    RegionStaleLeased,
    /// Stale-format recreation: the old file is unlinked, the new region not yet created.
    RegionStaleUnlinked,
    /// Region object removal: the entry is `REMOVING`, its user bitmap not yet read.
    RegionObjectRemoving,
    /// Region object removal: the user bitmap is cleared, `FREE` not yet published.
    RegionObjectUsersCleared,
    /// Region object creation: the creation lock is taken, the directory not yet scanned.
    RegionCreateLocked,
    /// Region getter: this handle's bit is set in an entry's user bitmap, the entry's
    /// state not yet checked.
    RegionUserBitSet,
    /// Region object removal: the entry is `FREE`, the processes waiting on it not yet
    /// woken.
    RegionFreeUnwoken,
    /// Region object creation: the name is published (`INITIALISING`), the creation lock
    /// not yet released.
    RegionNamePublished,
    /// Region object removal: the user bitmap is read and the words its bits name are
    /// probed, the verdict (refuse, or clear and free) not yet acted on.
    RegionObjectUsersProbed,
    /// Region fork child handler: entered, the child's own word not yet swapped in (the
    /// word claimed for it still names the parent).
    RegionForkChildEntered,
    /// Map repair: the slack flag is set for a dead writer's pending places, the places
    /// not yet dropped.
    MapRepairFlagged,
    /// Map repair: a dead writer's pending places dropped, the map's count's version not
    /// yet bumped.
    MapRepairDropped,
    /// Region getter: a dead (or abandoned) owner's `INITIALISING` entry is seen, the
    /// takeover CAS not yet made.
    RegionTakingOver,
    /// Region object removal: the life-cycle word is read (no `UNLISTED`), the user
    /// bitmap not yet read.
    RegionObjectLifeChecked,
    /// `Histogram::observe`: an unowned stripe is claimed, nothing yet counted in it.
    HistogramClaimed,
    /// `Histogram::observe`: a dead owner's stripe is taken over, nothing yet counted in
    /// it.
    HistogramTakenOver,
    /// `Histogram::observe`: the owner is found gone, the takeover's compare-and-swap not
    /// yet made.
    HistogramProbed,
    /// `Histogram::observe`, owned stripe: the count is loaded, not yet stored.
    HistogramOwnedRead,
    /// Region getter: a dead (or abandoned) owner's `INITIALISING` entry is taken over (the
    /// CAS made, naming this thread), its object not yet zeroed.
    RegionTakenOver,
    /// `Channel` send: `busy` is set, `closed` not yet checked (nothing committed).
    ChannelSendBusy,
    /// `Channel` close: `closed` is stored, the close not yet made final (`end` not
    /// recorded).
    ChannelCloseStored,
}

#[cfg(shmstate_test_hooks)]
mod imp {
    use super::Point;
    use crate::sync::{AtomicU64, Ordering};

    /// The armed points, one bit each: point `p` is bit `p % 64` of word `p / 64` (room
    /// for 256 points; `Point` has far fewer).
    static ARMED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

    const fn bit(p: Point) -> (usize, u64) {
        let i = p as usize;
        (i / 64, 1 << (i % 64))
    }

    /// Arms `p` in this process (besides the points armed already): the next thread to
    /// reach it disarms it and stops the process.
    pub fn arm(p: Point) {
        let (word, bit) = bit(p);
        // Relaxed: the arming thread reaches the point itself, or the test orders it.
        ARMED[word].fetch_or(bit, Ordering::Relaxed);
    }

    /// A protocol step: stops the process if `p` is armed (once).
    #[inline]
    pub(crate) fn hit(p: Point) {
        let (word, bit) = bit(p);
        // Relaxed: see `arm`.
        if ARMED[word].load(Ordering::Relaxed) & bit != 0
            && ARMED[word].fetch_and(!bit, Ordering::Relaxed) & bit != 0
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
