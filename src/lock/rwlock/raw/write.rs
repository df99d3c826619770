//! The writer side of [`RawRwLock`]: taking the write lock (fast path, contended wait,
//! draining the registered readers), releasing it, marking the data consistent, and
//! downgrading to a read lock. The state word's bits and helpers are in the parent file.
//!
//! # Crash windows
//!
//! A writer killed at each step here (write lock taken, draining, unlock, downgrade) is a
//! line of the crash-window table of the [`rwlock`](crate::lock::rwlock) module docs.

use super::*;

impl RawRwLock {
    /// Blocks until the calling thread holds the write lock. Recovers from a dead writer and
    /// from dead registered readers; waits without bound for a dead overflow reader (see
    /// the [module docs](crate::lock::rwlock#owner-death)).
    #[inline]
    pub fn write(&self) -> Acquired {
        let me = writer_id();
        if self.lock_state_for_write(me) {
            if self.slots_free() {
                return Acquired::Consistent;
            }
            if let Some(a) = self.drain(me, None, Acquired::Consistent) {
                return a;
            }
        }
        loop {
            if let Some(a) = self.write_contended(me, None) {
                return a;
            }
        }
    }

    /// Takes the write lock if the lock is free, without waiting (and without probing).
    pub fn try_write(&self) -> Option<Acquired> {
        self.try_write_as(writer_id(), false)
    }

    /// [`try_write`](Self::try_write) for `me`, the calling thread's [`writer_id`]; with `probe`,
    /// frees the slots of dead readers (a probe each) before giving up on them.
    pub(super) fn try_write_as(&self, me: u32, probe: bool) -> Option<Acquired> {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        for _ in 0..TRY_LIMIT {
            if is_garbage(s) {
                self.recover(s);
            } else if is_unlocked(s) {
                // SeqCst and Acquire: as in `write_fast`.
                match self.state.compare_exchange(
                    s,
                    s | WRITE_LOCKED | me,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        store_load_fence();
                        if self.slots_free()
                            || (probe && self.recover_dead_readers(None) && self.slots_free())
                        {
                            return Some(acquired(s));
                        }
                        // Readers hold it: give the lock back (waking readers that saw us).
                        self.release_write(me);
                        return None;
                    }
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            } else {
                return None;
            }
            s = self.state.load(Ordering::Relaxed);
        }
        None
    }

    /// [`write`](Self::write) giving up at `deadline`; `None` means it passed.
    pub fn write_until(&self, deadline: Instant) -> Option<Acquired> {
        let me = writer_id();
        if self.lock_state_for_write(me) {
            if self.slots_free() {
                return Some(Acquired::Consistent);
            }
            return self.drain(me, Some(deadline), Acquired::Consistent);
        }
        self.write_contended(me, Some(deadline))
    }

    /// The uncontended first step of a write lock: `0 -> WRITE_LOCKED | me`, which shuts
    /// new readers out. The caller then checks (and waits for) the registered readers.
    #[inline]
    pub(super) fn lock_state_for_write(&self, me: u32) -> bool {
        // SeqCst: the writer's half of the pairing in `read_registered` (the slot loads in
        // `slots_free` come after). Acquire pairs with the Release in `write_unlock` and
        // `read_unlock_overflow`.
        let ok = self
            .state
            .compare_exchange(0, WRITE_LOCKED | me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        if ok {
            failpoint::hit(Point::RwWriteLocked);
        }
        store_load_fence();
        ok
    }

    #[cold]
    pub(super) fn write_contended(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        let mut s = self.spin_write();
        // Once we have waited, other writers may wait too: keep WRITERS_WAITING set when we
        // take the lock, so our unlock wakes them.
        let mut other_writers_waiting = 0;
        // Under loom a wait never times out, so probe once before the first sleep: it
        // stands for the first slice running out (loom models mark dead TIDs, see `owner`).
        let mut probe_due = cfg!(loom);
        let mut slices = Slices::for_holder();
        loop {
            if is_garbage(s) {
                // As in `read_contended`.
                if past(deadline) {
                    self.clear_writers_waiting();
                    return self.try_write_as(me, true);
                }
                self.recover(s);
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if is_unlocked(s) {
                // SeqCst and Acquire: as in `write_fast`.
                match self.state.compare_exchange_weak(
                    s,
                    s | WRITE_LOCKED | me | other_writers_waiting,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        store_load_fence();
                        let a = acquired(s);
                        if self.slots_free() {
                            return Some(a);
                        }
                        return self.drain(me, deadline, a);
                    }
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            // `writer_notify` orders below.
            if !flag_waiting(&self.state, &mut s, WRITERS_WAITING) {
                continue;
            }
            other_writers_waiting = WRITERS_WAITING;
            // Acquire pairs with the Release increment in `wake_writer`: if we see the new
            // value, we also see the state it published.
            let seq = self.writer_notify.load(Ordering::Acquire);
            // Re-check after reading `seq`: an unlock between our flag and `seq` would
            // otherwise be missed.
            s = self.state.load(Ordering::Relaxed);
            if is_garbage(s) || is_unlocked(s) || s & WRITERS_WAITING == 0 {
                continue;
            }
            // Probe only once a slice has passed (see `RawMutex`). Overflow
            // readers name no one: only a dead writer can be recovered here.
            if slices.probe_now(&mut probe_due) {
                // As in `read_contended`.
                if is_write_locked(s) && writer_is_gone_watched(&mut slices, writer_of(s)) {
                    probe_due = !self.recover(s);
                    if probe_due && past(deadline) {
                        self.clear_writers_waiting();
                        return self.try_write_as(me, true);
                    }
                    s = self.state.load(Ordering::Relaxed);
                    continue;
                }
            }
            let Some(slice) = slices.next(deadline) else {
                self.clear_writers_waiting();
                // One last probe: a deadline shorter than a slice still recovers a dead
                // writer (and dead readers, if it then gets the state).
                self.recover_dead_writer();
                return self.try_write_as(me, true);
            };
            if !futex::wait(&self.writer_notify, seq, slice) {
                probe_due = true;
            }
            s = self.spin_write();
        }
    }

    /// Gives back a write lock that `me` took but did not use (readers held the lock, and
    /// the caller does not wait for them): as [`write_unlock`](Self::write_unlock), waking
    /// the readers that saw our bit and went to sleep.
    #[cold]
    pub(in crate::lock::rwlock) fn release_write(&self, me: u32) {
        self.write_unlock_slow(me);
    }

    /// Clears `WRITERS_WAITING` and wakes every waiting writer, which sets it again, and, if
    /// no writer holds the lock, the readers that the bit held back. A writer that gives up
    /// waiting calls this (the bit may be set only for it, and a stale bit would hold new
    /// overflow readers back), and so does an overflow reader whose slice ran out behind
    /// the bit (it may be a bit that no live writer stands behind).
    #[cold]
    pub(super) fn clear_writers_waiting(&self) {
        // Relaxed: no data is published; the waits re-check the words.
        let prev = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && s & WRITERS_WAITING != 0).then_some(s & !WRITERS_WAITING)
            });
        if let Ok(prev) = prev {
            failpoint::hit(Point::RwWritersWaitingCleared);
            // Release: as in `wake_writer`.
            self.writer_notify.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.writer_notify);
            if !is_write_locked(prev) && prev & READERS_WAITING != 0 {
                futex::wake_all(&self.state);
            }
        }
    }

    /// Releases the write lock (keeping `OWNER_DIED`) and wakes the waiters.
    /// If the state does not name the calling thread as writer, nothing happens.
    ///
    /// # Safety
    ///
    /// The calling thread holds the write lock and does not use the protected data after
    /// this call until it locks again.
    #[inline]
    pub unsafe fn write_unlock(&self) {
        let me = writer_id();
        // Release pairs with the Acquire of the next reader or writer.
        if self
            .state
            .compare_exchange(WRITE_LOCKED | me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.write_unlock_slow(me);
        }
    }

    #[cold]
    pub(super) fn write_unlock_slow(&self, me: u32) {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if is_garbage(s) || !is_write_locked(s) || writer_of(s) != me {
                return;
            }
            // Release: as in `write_unlock`. Clearing the waiting bits (and `DRAINING`) in
            // the same step means no one can lock in between and inherit them unwoken.
            match self.state.compare_exchange(
                s,
                s & OWNER_DIED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    failpoint::hit(Point::RwWriteUnlockCleared);
                    return self.wake_flagged(s);
                }
                Err(now) => s = now,
            }
        }
    }

    /// Clears `OWNER_DIED` if the calling thread holds the write lock. Returns whether it
    /// does.
    pub fn mark_consistent(&self) -> bool {
        let me = writer_id();
        // Relaxed: ordered before our Release unlock of the same word.
        self.state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && is_write_locked(s) && writer_of(s) == me)
                    .then_some(s & !OWNER_DIED)
            })
            .is_ok()
    }

    /// Clears `OWNER_DIED` while the calling thread holds a read lock: the readers judge
    /// the data intact. No writer can change it meanwhile (a write lock excludes every
    /// read lock, and a draining writer has not started writing). `reader` is the TID the
    /// read lock was taken by: a copy of a read guard in a forked child (or one used from
    /// another thread) holds no read lock of the calling thread and changes nothing.
    pub(crate) fn mark_consistent_as_reader(&self, reader: u32) {
        if owner::current() != reader {
            return;
        }
        // Relaxed: a reader wrote nothing to publish; the next acquirer's Acquire
        // read-modify-write of the state reads this or a later value.
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (!is_garbage(s) && s & OWNER_DIED != 0).then_some(s & !OWNER_DIED)
            });
    }

    /// Turns the calling thread's write lock into a read lock of the calling thread,
    /// without letting any writer in between: the read lock is taken *before* the write
    /// lock goes. If a reader slot is free, the read lock is registered there (claimed
    /// while `WRITE_LOCKED` still holds other writers out, then the write lock is released
    /// as by [`write_unlock`](Self::write_unlock), waking the waiting readers). Right after
    /// a write the slots are free but for readers backing off and dead or garbage TIDs, so
    /// a downgrade that finds them all taken spins briefly and frees the dead ones before
    /// it falls back to one compare-exchange that swaps `WRITE_LOCKED` for an overflow
    /// count of one.
    ///
    /// A writer that sets `WRITE_LOCKED` after the release sees the slot, by the `SeqCst`
    /// pairing of `read_registered` (the slot claim is a `SeqCst` read-modify-write before
    /// the release), and drains; an overflow count keeps writers out of the state itself.
    ///
    /// Returns whether the calling thread holds a read lock now: `false` if the state does
    /// not name it as the writer (a copy of a write guard in a forked child, or hostile
    /// bytes), and then nothing changed.
    ///
    /// # Safety
    ///
    /// The calling thread holds the write lock (taken by `write`, `try_write` or
    /// `write_until` on this thread and not released), or a forked copy of a guard of it.
    /// Afterwards, if `true`, it holds a read lock instead, to be released with
    /// [`read_unlock`](Self::read_unlock) on this thread.
    pub(crate) unsafe fn downgrade(&self) -> bool {
        let me = writer_id();
        let ours = |s: u32| !is_garbage(s) && is_write_locked(s) && writer_of(s) == me;
        // Relaxed: only this thread changes a state that names it as the writer (others
        // only set waiting bits), so the check stays true until our release below.
        if !ours(self.state.load(Ordering::Relaxed)) {
            return false;
        }
        // The slot records the reader's stamped id (8-bit stamp), the state the writer's
        // `writer_id` (5-bit stamp).
        let reader = owner::current_stamped();
        for round in 0..=SPIN_LIMIT {
            if self.claim_slot(reader).is_some() {
                failpoint::hit(Point::RwDowngradeClaimed);
                // SAFETY: the caller holds the write lock (checked above: the state names
                // this thread); our read lock (the slot) goes on protecting the data.
                unsafe { self.write_unlock() };
                return true;
            }
            if round == SPIN_LIMIT / 2 {
                // Slots of dead readers (or garbage) are freed while we hold the write
                // lock, as a draining writer would.
                self.recover_dead_readers(None);
            }
            spin_loop();
        }
        self.downgrade_overflow(me)
    }

    /// [`downgrade`](Self::downgrade) with every slot taken.
    #[cold]
    pub(super) fn downgrade_overflow(&self, me: u32) -> bool {
        // Relaxed: the compare-exchange orders.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if is_garbage(s) || !is_write_locked(s) || writer_of(s) != me {
                // Not ours (only hostile bytes do that): there is no write lock to turn.
                return false;
            }
            // The count is 0 under a write lock (a writer locks only a state without
            // overflow readers, and none counts in while `WRITE_LOCKED` is set), so the
            // new state is one overflow reader: ours. Release: as in `write_unlock` (our
            // writes happen before the next writer's Acquire). The waiting bits are
            // cleared in the same step, as in `write_unlock_slow`, and their sleepers
            // woken: readers get in beside us, writers wait for the count.
            match self.state.compare_exchange(
                s,
                (s & OWNER_DIED) + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.wake_flagged(s);
                    return true;
                }
                Err(now) => s = now,
            }
        }
    }
}
