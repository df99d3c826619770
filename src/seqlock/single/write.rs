//! The writer side of [`SeqLock`]: the robust writer lock (taken, taken over from a dead
//! writer, released with a wake), the two sequence stores around a write, and the public
//! writes. What a writer killed at each of these steps leaves is the crash-window table
//! of the [module docs](super).
//!
//! # Crash windows
//!
//! Every step here is a line of the crash-window table of the [module docs](super).

use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{
    SeqLock, SeqLockWriteGuard, Slept, WAITERS, is_writing, owner_of, unreachable_no_deadline,
    writer_is_gone, writer_is_gone_watched,
};
use crate::futex;
use crate::lock::{LockResult, OwnerDied, TimedLockError};
use crate::owner;
use crate::sync::{Ordering, fence};
use crate::wait::{Slices, Timeout, past, spin_with_backoff};

impl<T: Pod> SeqLock<T> {
    /// Takes the writer lock, waiting as long as it takes. Returns `true` if the previous
    /// writer died mid-write (the data is torn; `seq` is odd).
    #[inline]
    pub(crate) fn lock_writer(&self) -> bool {
        match self.lock_writer_until(None) {
            Ok(torn) => torn,
            Err(Timeout) => unreachable_no_deadline(),
        }
    }

    /// Takes the writer lock before `deadline`. `Ok(torn)`: see [`lock_writer`](Self::lock_writer).
    #[inline]
    pub(crate) fn lock_writer_until(&self, deadline: Option<Instant>) -> Result<bool, Timeout> {
        let me = owner::current_stamped();
        // Acquire: pairs with the previous owner's Release swap in `unlock_writer`, so its
        // data and `seq` stores are visible to us (`update` reads the old value, and we
        // continue its sequence).
        if self
            .writer
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: we hold the lock; the Acquire above made the last `seq` store of
            // the previous owner visible. Odd here means bytes a dead or hostile process
            // left (a live writer never unlocks with `seq` odd).
            return Ok(is_writing(self.seq.load(Ordering::Relaxed)));
        }
        self.lock_writer_contended(me, deadline)
    }

    #[cold]
    fn lock_writer_contended(&self, me: u32, deadline: Option<Instant>) -> Result<bool, Timeout> {
        if let Some(torn) = self.spin_for_writer(me) {
            return Ok(torn);
        }
        let mut slices = Slices::for_holder();
        let mut probe_due = false;
        loop {
            // Relaxed: only a hint for the CASes below, which carry the orderings.
            let w = self.writer.load(Ordering::Relaxed);
            if w == 0 {
                // Acquire: as in `lock_writer_until`.
                match self
                    .writer
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                {
                    // Relaxed: as in `lock_writer_until`.
                    Ok(_) => return Ok(is_writing(self.seq.load(Ordering::Relaxed))),
                    Err(_) => continue,
                }
            }
            // Probe only once a slice has passed (as `RawMutex` does): a live owner's
            // unlock wakes us first, so ordinary contention costs no probe. An
            // owner that is already dead costs the first slice (50 µs) before the takeover.
            let tid = owner_of(w);
            if tid == 0
                || (slices.probe_now(&mut probe_due) && writer_is_gone_watched(&mut slices, tid))
            {
                match self.take_over(w, me) {
                    Some(torn) => return Ok(torn),
                    None => {
                        // The word changed first: probe the new one (within the deadline:
                        // see `past`).
                        if past(deadline) {
                            return Err(Timeout);
                        }
                        probe_due = true;
                        continue;
                    }
                }
            }
            if w & WAITERS == 0
                && self
                    .writer
                    // Relaxed: the flag only asks the owner to wake us.
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            match self.sleep_on_writer(w | WAITERS, &mut slices, deadline) {
                Slept::Woken => {}
                Slept::SliceOut => probe_due = true,
                Slept::Deadline => {
                    // One last probe: a dead owner is taken over, not reported as a timeout
                    // (a deadline shorter than a slice would otherwise never recover it).
                    // Relaxed: a hint for the CAS in `take_over`, which orders.
                    let w = self.writer.load(Ordering::Relaxed);
                    let tid = owner_of(w);
                    if w != 0
                        && writer_is_gone(tid)
                        && let Some(torn) = self.take_over(w, me)
                    {
                        return Ok(torn);
                    }
                    return Err(Timeout);
                }
            }
        }
    }

    /// Spins with loads while the writer lock is held, taking it as soon as it reads free:
    /// `Some(torn)` (see [`lock_writer`](Self::lock_writer)) once taken, `None` when the
    /// spin is over (the caller then probes and sleeps). No probe, no syscall: a dead
    /// owner costs this spin once before the sleeping loop probes it.
    ///
    /// Backoff ([`spin_with_backoff`]): a look at the word after 1, 2, 4, 8, then every 16
    /// pauses rather than after every pause, as the mutex does; every look pulls the
    /// word's cache line away from the writer, whose unlock (and next lock) must then
    /// fetch it back. Measured on 2 vCPUs (criterion `seqlock_write64_2procs`, 2
    /// processes writing a 64-byte value in turn, 24 interleaved A/B runs): median 107 ->
    /// 58 ns per iteration (a write by each), the runs where the writers took turns
    /// 151 -> 76 ns. The seqlock's own longer spin (200 pauses) with the same schedule
    /// measured level with this one.
    #[inline]
    fn spin_for_writer(&self, me: u32) -> Option<bool> {
        let mut torn = None;
        spin_with_backoff(|| {
            // Relaxed: only a hint for the CAS, which carries the ordering.
            self.writer.load(Ordering::Relaxed) == 0
                // Acquire: as in `lock_writer_until`. A failed CAS (another writer took
                // it first) spins on.
                && self
                    .writer
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                && {
                    // Relaxed: as in `lock_writer_until`.
                    torn = Some(is_writing(self.seq.load(Ordering::Relaxed)));
                    true
                }
        });
        torn
    }

    /// Takes the writer lock without waiting if it is free, or held by `*dead` (a TID the
    /// caller already found dead), or held by a TID that one probe now finds dead (which
    /// is then recorded in `*dead`, so a caller taking many such locks probes each dead
    /// TID once): `Some(torn)` (see [`lock_writer`](Self::lock_writer)), or `None` if a
    /// live writer holds it. No futex wait; at most one probe.
    #[cold]
    pub(crate) fn try_lock_writer_probed(&self, dead: &mut u32) -> Option<bool> {
        let me = owner::current_stamped();
        let mut probed = false;
        // Bounded: each failed CAS means the word changed under us; give up after a few.
        for _ in 0..4 {
            // Relaxed: only a hint for the CASes below, which carry the orderings.
            let w = self.writer.load(Ordering::Relaxed);
            if w == 0 {
                // Acquire, and the Relaxed `seq` load: as in `lock_writer_until`.
                if self
                    .writer
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(is_writing(self.seq.load(Ordering::Relaxed)));
                }
                continue;
            }
            let tid = owner_of(w);
            let gone = tid == 0
                || (*dead != 0 && tid == *dead)
                || (!probed && {
                    probed = true;
                    writer_is_gone(tid)
                });
            if !gone {
                return None;
            }
            if tid != 0 {
                *dead = tid;
            }
            if let Some(torn) = self.take_over(w, me) {
                return Some(torn);
            }
        }
        None
    }

    /// Takes the writer lock over from the dead (or unrecorded) owner of word `w`: `Some(torn)`
    /// on success, `None` if `w` changed meanwhile.
    #[cold]
    fn take_over(&self, w: u32, me: u32) -> Option<bool> {
        // Keep WAITERS so our unlock wakes the waiters. Acquire: pairs with any Release
        // unlock before the dead owner's lock (the dead owner itself released nothing).
        self.writer
            .compare_exchange(w, me | (w & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // An RMW reads the latest `seq` in modification order even though the dead owner
        // never released it; Relaxed: we only need the value.
        Some(is_writing(self.seq.fetch_add(0, Ordering::Relaxed)))
    }

    /// Marks a write in progress (the caller holds the writer lock); returns the odd
    /// sequence value. Follow with a Release fence before the data stores.
    #[inline]
    pub(crate) fn begin_write(&self) -> u32 {
        // Release: publishes our TID (the lock CAS) to a reader that sees this odd value, so
        // it can probe us (`wait_write_end`). The data stores are ordered after this store
        // by the caller's Release fence (a), not by this ordering. An RMW (not a store) so
        // that after a takeover we continue from the dead writer's latest value.
        self.seq.fetch_or(1, Ordering::Release) | 1
    }

    /// Ends the write begun with `odd` (the data is stored): `seq` becomes even.
    #[inline]
    pub(crate) fn end_write(&self, odd: u32) {
        // Release (c): pairs with the readers' Acquire load of `seq`; a reader that sees
        // this even value sees every data store of this write.
        self.seq.store(odd.wrapping_add(1), Ordering::Release);
    }

    /// Releases the writer lock, waking waiters if any announced themselves. Does nothing
    /// if the lock does not name the calling thread (a child forked by a signal handler or
    /// an allocator between a lock and its release: the lock is its parent's).
    #[inline]
    pub(crate) fn unlock_writer(&self) {
        let me = owner::current_stamped();
        // Relaxed: the compare-exchange below orders.
        let mut w = self.writer.load(Ordering::Relaxed);
        // Bounded: only a waiter setting `WAITERS` (once each) or a peer rewriting the
        // word fails the exchange; past the bound, the lock is left as it is.
        for _ in 0..crate::wait::TRY_LIMIT {
            if owner_of(w) != me {
                return;
            }
            // Release: pairs with the next writer's Acquire CAS in `lock_writer_until` and
            // with the waiters' Acquire loads of `writer` (they then see our even `seq`).
            match self
                .writer
                .compare_exchange(w, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if w & WAITERS != 0 {
                        self.wake_waiters();
                    }
                    return;
                }
                Err(now) => w = now,
            }
        }
    }

    #[cold]
    fn wake_waiters(&self) {
        futex::wake_all(&self.writer);
    }

    /// Stores `value` (the caller holds the writer lock) and releases the lock.
    #[inline]
    pub(super) fn publish_and_unlock(&self, value: &T) {
        let odd = self.begin_write();
        // Release fence (a): pairs with the readers' Acquire fence; orders the odd store
        // above before the data stores below for any reader that sees one of them.
        fence(Ordering::Release);
        self.data.store(value);
        self.end_write(odd);
        self.unlock_writer();
    }

    /// Copies the data out while holding the writer lock (no other writer can store).
    #[inline]
    pub(crate) fn load_locked(&self) -> T {
        self.data.load()
    }

    /// Replaces the value. Waits for the write lock (taking it over from a dead writer),
    /// and repairs a value torn by a writer that died mid-write.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new([0u32; 4]);
    /// s.write([1, 2, 3, 4]);
    /// assert_eq!(s.read(), [1, 2, 3, 4]);
    /// ```
    #[inline]
    pub fn write(&self, value: T) {
        self.lock_writer();
        self.publish_and_unlock(&value);
    }

    /// Read-modify-write: calls `f` on the current value under the write lock and stores
    /// the result, returning what `f` returns. Readers keep reading the old value while
    /// `f` runs. If `f` panics, nothing is stored.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if the previous writer died mid-write (or a writer since left its
    /// torn value unrepaired): the value is **torn** (each 8-byte word holds its old or
    /// its new value), so `f` is **not** called. The error holds the write guard (the
    /// lock *is* held) with the torn value: repair it and call
    /// [`SeqLockWriteGuard::mark_consistent`] to publish it. Dropping the error (or the
    /// guard unmarked) stores nothing: the value stays torn for readers and the next
    /// writer gets `OwnerDied` again, until someone repairs it (or [`write`](Self::write)s
    /// a whole new value).
    ///
    /// # Examples
    ///
    /// ```
    /// let hits = shmstate::SeqLock::new([0u64, 0]); // [count, total]
    /// let r = hits.update(|[n, total]| {
    ///     *n += 1;
    ///     *total += 30;
    /// });
    /// if let Err(torn) = r {
    ///     // A writer died mid-write: the old value is garbage. Start over.
    ///     let mut g = torn.into_inner();
    ///     *g = [1, 30];
    ///     g.mark_consistent();
    /// }
    /// assert_eq!(hits.read(), [1, 30]);
    /// ```
    #[must_use = "an `Err` means the value is torn and `f` did not run"]
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, OwnerDied<SeqLockWriteGuard<'_, T>>> {
        let mut guard = self.lock()?;
        Ok(f(&mut guard))
    }

    /// Takes the write lock and returns a guard holding a copy of the current value;
    /// dropping the guard stores the copy (readers see the old value until then). A guard
    /// dropped while its thread panics stores nothing.
    ///
    /// A thread that calls this while it already holds the guard deadlocks.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard: the lock *is* acquired) if the previous writer
    /// died mid-write, or a writer since dropped such a guard without marking it: the
    /// guard's copy is **torn**. Repair it, then call
    /// [`SeqLockWriteGuard::mark_consistent`]; a guard dropped unmarked stores nothing
    /// and leaves the value torn (readers keep reporting [`SeqLockError::WriterDied`] or
    /// waiting in [`read`](Self::read), and the next writer gets `OwnerDied` again). This
    /// is the shape of [`Mutex::lock`](crate::Mutex::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(5i64);
    /// let mut g = match s.lock() {
    ///     Ok(g) => g,
    ///     Err(torn) => {
    ///         let mut g = torn.into_inner();
    ///         *g = 5; // repair...
    ///         g.mark_consistent(); // ...and say so
    ///         g
    ///     }
    /// };
    /// *g *= 2;
    /// drop(g);
    /// assert_eq!(s.read(), 10);
    /// ```
    ///
    /// [`SeqLockError::WriterDied`]: super::SeqLockError::WriterDied
    pub fn lock(&self) -> LockResult<SeqLockWriteGuard<'_, T>> {
        let torn = self.lock_writer();
        SeqLockWriteGuard::new(self, torn)
    }

    /// [`lock`](Self::lock), waiting at most `timeout` for the write lock.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if another live writer held the lock throughout (then
    /// at least `timeout` has passed); [`TimedLockError::OwnerDied`] as for
    /// [`lock`](Self::lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = shmstate::SeqLock::new(1u8);
    /// if let Ok(mut g) = s.lock_timeout(Duration::from_millis(10)) {
    ///     *g = 2;
    /// }
    /// assert_eq!(s.read(), 2);
    /// ```
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SeqLockWriteGuard<'_, T>, TimedLockError<SeqLockWriteGuard<'_, T>>> {
        let torn = self
            .lock_writer_until(Instant::now().checked_add(timeout))
            .map_err(|Timeout| TimedLockError::Timeout)?;
        Ok(SeqLockWriteGuard::new(self, torn)?)
    }

    /// Test hook: takes the write lock, marks a write in progress, stores `value`, and
    /// returns **without** ending the write or releasing the lock, exactly as a writer
    /// killed between its two sequence stores leaves things. Not part of the API.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn begin_write_for_test(&self, value: T) {
        self.lock_writer();
        let _odd = self.begin_write();
        fence(Ordering::Release);
        self.data.store(&value);
    }
}
