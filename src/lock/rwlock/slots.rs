//! The reader-slot table of [`RawRwLock`]: claiming, freeing and scanning slots, a
//! writer's wait for the registered readers to leave (`drain`), and freeing the slots of
//! dead readers.
//!
//! # Invariant
//!
//! A slot is [`FREE`] or holds a reader's stamped id: its TID in bits 0..22 and the stamp
//! of its start time in bits 22..30, as a `RawMutex` word records its holder (or, from a
//! hostile peer, garbage naming no thread: bits 30 or 31, or a stamp without a TID). A
//! slot holding `tid` stands for one read lock of thread `tid`, held or about to be
//! checked against the state. Only thread `tid` writes `tid` into a slot (compare-exchange
//! `FREE -> tid`) and frees it again (a store of `FREE`); anyone else frees it only by a
//! compare-exchange `tid -> FREE` after probing `tid` dead (or finding that it names no
//! thread), so a live reader's slot is never taken from it, and each dead slot is freed
//! once. Every free of a slot (by its reader or a recoverer) is a `SeqCst` write followed by
//! a `SeqCst` load of the state, and wakes a `DRAINING` writer if it then finds every slot
//! free; a writer sets `DRAINING` (`SeqCst`) before its `SeqCst` scan of the slots. So the
//! last slot freed sees the writer's bit or the writer sees the slot free: no drainer's
//! wakeup is lost.

use std::time::Instant;

use super::raw::{
    DRAINING, READERS_WAITING, RawRwLock, WRITE_LOCKED, is_garbage, is_write_locked,
    store_load_fence, writer_of,
};
use crate::failpoint::{self, Point};
use crate::futex;
use crate::lock::raw_mutex::Acquired;
use crate::owner;
use crate::sync::{AtomicU32, Ordering, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices, Tid, Watch, stamped_holder_is_dead};

/// How many read locks can be registered for recovery at once (the slot table's length).
/// 14 slots and the two state words fill one 64-byte cache line. Under loom, 2, so that
/// models reach a full table with few threads.
pub const READER_SLOTS: usize = if cfg!(loom) { 2 } else { 14 };
/// A reader slot that holds no read lock.
pub(super) const FREE: u32 = 0;

/// The slot where a reader with TID `tid` looks first (then the following ones, wrapping).
#[inline]
const fn first_slot(tid: u32) -> usize {
    tid as usize % READER_SLOTS
}

impl RawRwLock {
    /// Claims a free slot for `me` (compare-exchange `FREE -> me`), trying
    /// `first_slot(me)` first. `None` if every slot is taken.
    #[inline]
    pub(super) fn claim_slot(&self, me: u32) -> Option<&AtomicU32> {
        let slot = &self.readers[first_slot(me)];
        // SeqCst: the reader's half of the pairing in `read_registered`. Relaxed on
        // failure: nothing was claimed.
        if slot
            .compare_exchange(FREE, me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            return Some(slot);
        }
        self.claim_slot_slow(me)
    }

    #[cold]
    fn claim_slot_slow(&self, me: u32) -> Option<&AtomicU32> {
        let first = first_slot(me);
        (1..READER_SLOTS)
            .map(|k| &self.readers[(first + k) % READER_SLOTS])
            .find(|slot| {
                // Relaxed: a hint; the compare-exchange claims. SeqCst: as in `claim_slot`.
                slot.load(Ordering::Relaxed) == FREE
                    && slot
                        .compare_exchange(FREE, me, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
            })
    }

    /// A slot holding `me`, if any (any one: each stands for one of `me`'s read locks).
    #[inline]
    pub(super) fn own_slot(&self, me: u32) -> Option<&AtomicU32> {
        let slot = &self.readers[first_slot(me)];
        // Relaxed: only `me` writes `me` into a slot and frees it again (a recoverer frees
        // it only once `me` is dead), so this thread's own program order suffices.
        if slot.load(Ordering::Relaxed) == me {
            Some(slot)
        } else {
            self.own_slot_slow(me)
        }
    }

    #[cold]
    fn own_slot_slow(&self, me: u32) -> Option<&AtomicU32> {
        let first = first_slot(me);
        // Relaxed: as in `own_slot`.
        (1..READER_SLOTS)
            .map(|k| &self.readers[(first + k) % READER_SLOTS])
            .find(|slot| slot.load(Ordering::Relaxed) == me)
    }

    /// Frees a slot this thread holds, and wakes a draining writer if this was the last
    /// registered reader it waited for.
    #[inline]
    pub(super) fn free_slot(&self, slot: &AtomicU32) {
        // SeqCst: pairs with a writer's SeqCst `DRAINING` set and its SeqCst slot loads
        // after it: either it sees the slot free, or we see `DRAINING` below and wake it.
        // Its Release part: our reads of the data happen before a writer that sees FREE.
        slot.store(FREE, Ordering::SeqCst);
        failpoint::hit(Point::RwReadUnlockFreed);
        store_load_fence();
        // SeqCst: the other half of that pairing.
        let s = self.state.load(Ordering::SeqCst);
        if s & (WRITE_LOCKED | DRAINING) == WRITE_LOCKED | DRAINING {
            self.wake_drainer();
        } else if s & (WRITE_LOCKED | READERS_WAITING) == READERS_WAITING {
            self.wake_slot_waiters();
        }
    }

    /// A slot was freed while readers sleep on the state with no writer holding it: they
    /// wait for a slot (every slot was taken, and `WRITERS_WAITING` held them back from
    /// counting in). Clears `READERS_WAITING` and wakes them to register.
    #[cold]
    fn wake_slot_waiters(&self) {
        // Relaxed: no data is published; the woken re-check the state themselves.
        let r = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && !is_write_locked(s) && s & READERS_WAITING != 0)
                    .then_some(s & !READERS_WAITING)
            });
        if r.is_ok() {
            futex::wake_all(&self.state);
        }
    }

    /// A reader left while a writer drains: wakes it if every slot is free now. Of several
    /// readers leaving at once, the one whose slot release comes last in the `SeqCst`
    /// order sees every other slot free, so the writer is always woken.
    #[cold]
    fn wake_drainer(&self) {
        if self.slots_free() {
            // Release pairs with the Acquire load of `writer_notify` in `drain`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            // All: other writers may sleep on the counter too, and the draining one must
            // be among the woken.
            futex::wake_all(&self.writer_notify);
        }
    }

    /// Whether every reader slot is free.
    #[inline]
    pub(super) fn slots_free(&self) -> bool {
        // SeqCst: the writer's half of the pairings in `read_registered` and `free_slot`.
        // Its Acquire part pairs with the Release of `free_slot`: the readers' reads happen
        // before our writes.
        self.readers
            .iter()
            .all(|slot| slot.load(Ordering::SeqCst) == FREE)
    }

    /// Holding `WRITE_LOCKED`, waits for the registered readers to leave, freeing the slots
    /// of dead ones. Returns `a` once every slot is free, or `None` (the write lock given
    /// back) if `deadline` passes first.
    #[cold]
    pub(super) fn drain(
        &self,
        me: u32,
        deadline: Option<Instant>,
        a: Acquired,
    ) -> Option<Acquired> {
        // SeqCst: the writer's half of the pairing in `free_slot` (the slot loads in
        // `slots_free` come after): the last reader out sees this bit, or we see its slot
        // free. Failure: the state no longer names us (only hostile bytes do that); then
        // waiting for the readers is all that is left to do.
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |s| {
                (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me).then_some(s | DRAINING)
            });
        failpoint::hit(Point::RwDraining);
        // Under loom a wait never times out: probe once before the first sleep.
        let mut probe_due = cfg!(loom);
        // Holder slices (≤ 800 µs): a reader killed while we drain is found within a slice.
        // Each occupied slot's reader is watched, so a writer waiting long behind live
        // readers pays a `poll` per reader per slice (see `owner::Watch`).
        let mut slices = Slices::for_holder();
        let mut watches: [Watch; READER_SLOTS] = core::array::from_fn(|_| Watch::default());
        let mut spins = SPIN_LIMIT;
        loop {
            // Acquire pairs with the Release increment in `wake_drainer`: if we see it, we
            // see the slot it found free.
            let seq = self.writer_notify.load(Ordering::Acquire);
            store_load_fence();
            if self.slots_free() {
                // SeqCst (Acquire at least): our writes to the data stay after this, so a
                // recoverer that still finds `DRAINING` knows they never started.
                let _ = self
                    .state
                    .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |s| {
                        (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me)
                            .then_some(s & !DRAINING)
                    });
                return Some(a);
            }
            if spins > 0 {
                // Readers usually leave soon: look again before sleeping.
                spins -= 1;
                spin_loop();
                continue;
            }
            if slices.probe_now(&mut probe_due) && self.recover_dead_readers(Some(&mut watches)) {
                continue;
            }
            let Some(slice) = slices.next(deadline) else {
                // One last probe: a deadline shorter than a slice still frees dead readers.
                if self.recover_dead_readers(Some(&mut watches)) && self.slots_free() {
                    continue;
                }
                self.release_write(me);
                return None;
            };
            if !futex::wait(&self.writer_notify, seq, slice) {
                probe_due = true;
            }
        }
    }

    /// A draining writer's slice ran out (or an overflow reader's, waiting for a slot):
    /// frees the slots of registered readers that are dead (and garbage slots, which name
    /// no thread). Returns whether it freed any.
    #[cold]
    pub(super) fn recover_dead_readers(
        &self,
        mut watches: Option<&mut [Watch; READER_SLOTS]>,
    ) -> bool {
        let mut any = false;
        failpoint::hit(Point::RwDeadReadersScan);
        for (i, slot) in self.readers.iter().enumerate() {
            // Relaxed: a snapshot; the compare-exchange below frees the slot.
            let tid = slot.load(Ordering::Relaxed);
            // A live TID whose start time gives another stamp is a new thread that reused
            // a dead reader's TID: dead (see `owner::probe_stamped`).
            let dead = tid != FREE
                && match Tid::parse(tid & owner::STAMPED_TID_MASK) {
                    _ if tid & !(owner::STAMPED_TID_MASK | owner::STAMP_MASK) != 0 => true,
                    None => true,
                    // A draining writer watches each slot's reader: after the first
                    // probes, a `poll` each (see `owner::Watch`).
                    Some(t) => match watches.as_deref_mut() {
                        Some(w) => w[i].stamped_is_dead(t, tid),
                        None => stamped_holder_is_dead(tid),
                    },
                };
            if !dead {
                continue;
            }
            // SeqCst: the free's half of the pairing with a draining writer (see below). A
            // dead reader's reads need no ordering with anyone's writes (its process or
            // thread is gone); the compare-exchange frees exactly the dead TID we probed,
            // so a slot claimed since by a live reader is left alone.
            any |= slot
                .compare_exchange(tid, FREE, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
        }
        if any {
            failpoint::hit(Point::RwDeadReaderFreed);
            // As a reader leaving would (`free_slot`): a writer may be draining (we may be
            // an overflow reader that read the state before it set `WRITE_LOCKED`).
            store_load_fence();
            // SeqCst: the pairing of `free_slot`, with the SeqCst frees above.
            let s = self.state.load(Ordering::SeqCst);
            if s & (WRITE_LOCKED | DRAINING) == WRITE_LOCKED | DRAINING {
                self.wake_drainer();
            }
        }
        any
    }

    /// The reader slots, for tests and diagnostics (e.g. writing hostile bytes).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn reader_slots(&self) -> &[AtomicU32] {
        &self.readers
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;

    /// A reader slot naming a live thread with its own stamp is a live reader's: a timed
    /// write lock waits for it and times out. With another stamp it is a dead reader's
    /// whose TID that thread got: the writer frees the slot and takes the lock in time.
    #[test]
    fn a_slot_naming_a_live_tid_with_another_stamp_is_a_dead_readers() {
        let thread = owner::LiveThread::start(owner::current_stamped);
        let live = thread.id();
        let stamp = (live & owner::STAMP_MASK) >> owner::STAMP_SHIFT;
        if stamp != 0 {
            let l = RawRwLock::new();
            let soon = Instant::now() + std::time::Duration::from_millis(20);
            l.readers[5].store(live, Ordering::Relaxed);
            assert!(l.write_until(soon).is_none(), "a live reader");
            let other = live & owner::STAMPED_TID_MASK | (stamp % 255 + 1) << owner::STAMP_SHIFT;
            l.readers[5].store(other, Ordering::Relaxed);
            let later = Instant::now() + std::time::Duration::from_secs(10);
            assert!(l.write_until(later).is_some(), "a dead reader's slot");
            assert_eq!(l.readers[5].load(Ordering::Relaxed), FREE);
            // SAFETY: this thread holds the write lock.
            unsafe { l.write_unlock() };
        } else {
            eprintln!("skipped: /proc shows no start time here");
        }
        drop(thread);
    }

    /// A write-locked state naming a live thread with its own 5-bit stamp is a live
    /// writer's: timed reads and writes time out. With another stamp it is a dead
    /// writer's whose TID that thread got: both take the lock over in time.
    #[test]
    fn a_writer_naming_a_live_tid_with_another_stamp_is_a_dead_writers() {
        use super::super::raw::writer_id;
        let thread = owner::LiveThread::start(writer_id);
        let live = thread.id();
        let stamp = live >> owner::STAMP_SHIFT;
        if stamp != 0 {
            let other = live & owner::STAMPED_TID_MASK | (stamp % 31 + 1) << owner::STAMP_SHIFT;
            let soon = || Instant::now() + std::time::Duration::from_millis(20);
            let later = || Instant::now() + std::time::Duration::from_secs(10);
            for write in [false, true] {
                let l = RawRwLock::new();
                l.state.store(WRITE_LOCKED | live, Ordering::Relaxed);
                let timed_out = if write {
                    l.write_until(soon()).is_none()
                } else {
                    l.read_until(soon()).is_none()
                };
                assert!(timed_out, "a live writer (write: {write})");
                l.state.store(WRITE_LOCKED | other, Ordering::Relaxed);
                if write {
                    assert_eq!(l.write_until(later()), Some(Acquired::OwnerDied));
                    // SAFETY: this thread holds the write lock.
                    unsafe { l.write_unlock() };
                } else {
                    assert_eq!(l.read_until(later()), Some(Acquired::OwnerDied));
                    // SAFETY: this thread holds a read lock.
                    unsafe { l.read_unlock() };
                }
            }
        } else {
            eprintln!("skipped: /proc shows no start time here");
        }
        drop(thread);
    }
}
