//! Batch writes of [`SeqLockArray`]: every stripe locked (never waiting while holding one),
//! then one all-or-nothing write; and [`SeqLockArrayBatchGuard`], which reports a torn
//! array as `OwnerDied` and publishes only once marked consistent.
//!
//! # Crash windows
//!
//! The batch-write table of the [`array`](crate::seqlock::array) module docs.

use super::*;

impl<T: Pod> SeqLockArray<T> {
    /// Takes every stripe's writer lock before `deadline`, never waiting while it holds
    /// one (so a batch is never part of a lock-order cycle: module docs). It blocks on one
    /// stripe's lock holding nothing else, then *tries* every other stripe; if one is
    /// busy, it releases everything it took and blocks on that one. On a timeout nothing
    /// is held. `Ok(.., torn)`: some stripe was torn by a writer that died mid-write.
    pub(super) fn lock_all_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(AllLocked<'_, T>, bool), Timeout> {
        let stripes = self.stripes();
        let mut first = 0;
        loop {
            if stripes == 0 {
                return Ok((AllLocked(self), false));
            }
            let mut torn = self.stripe(first).lock.lock_writer_until(deadline)?;
            // A TID found dead in this pass: the further stripes it holds (a dead batch
            // writer holds them all) are taken over at once, without a probe each. Only
            // within one pass (microseconds, no sleep): a pass that ends blocked on a busy
            // stripe may sleep for as long as a live holder keeps it, long enough for the
            // dead TID to be handed to a new thread, so the next pass probes afresh.
            let mut dead = 0;
            let mut busy = None;
            for k in (0..stripes).filter(|&k| k != first) {
                match self.stripe(k).lock.try_lock_writer_probed(&mut dead) {
                    Some(t) => torn |= t,
                    None => {
                        busy = Some(k);
                        break;
                    }
                }
            }
            let Some(b) = busy else {
                return Ok((AllLocked(self), torn));
            };
            // Release what we took (stripes below `b`, and `first`): a stripe we took
            // over torn stays torn (`seq` odd), for whoever locks it next.
            for k in (0..b).filter(|&k| k != first) {
                self.stripe(k).lock.unlock_writer();
            }
            self.stripe(first).lock.unlock_writer();
            if past(deadline) {
                return Err(Timeout);
            }
            first = b;
        }
    }

    /// [`lock_all_until`](Self::lock_all_until) without a deadline.
    pub(super) fn lock_all(&self) -> (AllLocked<'_, T>, bool) {
        match self.lock_all_until(None) {
            Ok(locked) => locked,
            Err(Timeout) => unreachable_no_deadline(),
        }
    }

    /// Stores `values` (all of the array's elements) as one batch (all locks held), then
    /// releases every lock. Allocation-free.
    pub(super) fn publish_all(&self, locked: AllLocked<'_, T>, values: &[T]) {
        core::mem::forget(locked);
        let stripes = self.stripes();
        for k in 0..stripes {
            let stripe = self.stripe(k);
            // (d) Relaxed: published by the Release `fetch_or` below; 0 = the whole stripe.
            stripe.dirty.store(0, Ordering::Relaxed);
            // (b)
            stripe.lock.begin_write();
        }
        // Release fence (a): pairs with the readers' Acquire fences; orders every odd
        // store above before every data store below.
        fence(Ordering::Release);
        self.store_bytes(0, elem_bytes(values));
        for k in 0..stripes {
            let lock = &self.stripe(k).lock;
            // Instead of remembering each odd value (a `Vec` per batch), re-read it: we
            // hold the lock, so the last store to `seq` is our own odd one (read-read
            // coherence after our RMW). Relaxed: only the value matters; `end_write`'s
            // Release store (c) orders the data. `| 1` keeps the result even whatever
            // bytes a hostile process put there meanwhile.
            lock.end_write(lock.seq_word().load(Ordering::Relaxed) | 1);
        }
        for k in 0..stripes {
            self.stripe(k).lock.unlock_writer();
        }
    }

    /// Replaces every element with `values`, as one batch that snapshots see entirely or
    /// not at all. Repairs stripes torn by a dead writer. Allocation-free.
    ///
    /// # Panics
    ///
    /// If `values.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<i32>::new(2);
    /// a.set_all(&[-1, 1]);
    /// assert_eq!(a.to_vec(), [-1, 1]);
    /// ```
    #[track_caller]
    pub fn set_all(&self, values: &[T]) {
        self.check_len(values.len());
        let (locked, _torn) = self.lock_all();
        self.publish_all(locked, values);
    }

    /// Read-modify-writes the whole array as one batch: `f` gets a copy of every element
    /// (taken under all the writer locks) and what it leaves there is stored as one batch
    /// that snapshots see entirely or not at all. If `f` panics nothing is stored (and
    /// every lock is released). Returns `f`'s result.
    ///
    /// Allocates one `Vec<T>` of [`len`](Self::len) elements for the copy `f` edits; use
    /// [`set_all`](Self::set_all), which allocates nothing, when the new values do not
    /// depend on the old ones.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if some stripe may be torn by a writer that died mid-write: `f` is
    /// not called, and the error holds the batch guard (every lock *is* held) with a copy
    /// that is garbage in places. Repair it (e.g. overwrite everything), then call
    /// [`SeqLockArrayBatchGuard::mark_consistent`] to publish it when the guard drops;
    /// dropping it unmarked stores nothing. This is the shape of
    /// [`update`](Self::update) and [`SeqLock::update`](crate::SeqLock::update).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[10u64, 0]);
    /// // Move 3 units from element 0 to 1: the sum stays 10 in every snapshot.
    /// match a.write_batch(|v| {
    ///     v[0] -= 3;
    ///     v[1] += 3;
    /// }) {
    ///     Ok(()) => {}
    ///     Err(torn) => {
    ///         // A writer died mid-write: the old values cannot be trusted.
    ///         let mut batch = torn.into_inner();
    ///         batch.copy_from_slice(&[7, 3]);
    ///         batch.mark_consistent();
    ///     }
    /// }
    /// assert_eq!(a.to_vec(), [7, 3]);
    /// ```
    #[must_use = "an `Err` means some stripe is torn and `f` did not run"]
    pub fn write_batch<R>(
        &self,
        f: impl FnOnce(&mut [T]) -> R,
    ) -> Result<R, OwnerDied<SeqLockArrayBatchGuard<'_, T>>> {
        let (locked, torn) = self.lock_all();
        let mut guard = SeqLockArrayBatchGuard::new(locked, torn)?;
        Ok(f(&mut guard))
    }

    /// [`write_batch`](Self::write_batch), waiting at most `timeout` for the writer locks.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if some stripe's lock was still held by a live writer
    /// at the deadline; then nothing is written, `f` is not called, and the locks taken
    /// so far are released. [`TimedLockError::OwnerDied`] as for
    /// [`write_batch`](Self::write_batch).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8, 2]);
    /// let r = a.write_batch_timeout(Duration::from_millis(10), |v| v.swap(0, 1));
    /// assert!(r.is_ok());
    /// assert_eq!(a.to_vec(), [2, 1]);
    /// ```
    #[must_use = "an `Err` means nothing was written and `f` did not run"]
    pub fn write_batch_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut [T]) -> R,
    ) -> Result<R, TimedLockError<SeqLockArrayBatchGuard<'_, T>>> {
        let (locked, torn) = self
            .lock_all_until(Instant::now().checked_add(timeout))
            .map_err(|Timeout| TimedLockError::Timeout)?;
        let mut guard = SeqLockArrayBatchGuard::new(locked, torn)?;
        Ok(f(&mut guard))
    }
}

/// Every element of a [`SeqLockArray`] (and every stripe's writer lock), from a
/// [`write_batch`](SeqLockArray::write_batch) that found a stripe torn by a writer that
/// died mid-write: derefs to a private copy of the whole array, which is garbage in
/// places. It stores nothing when dropped unless
/// [`mark_consistent`](Self::mark_consistent) was called; then it stores the copy as one
/// batch (snapshots see it entirely or not at all) and releases the locks. A guard
/// dropped while its thread panics stores nothing.
///
/// Not `Send`: the locks record the locking thread's TID for the liveness probe.
///
/// # Examples
///
/// ```
/// let a = shmstate::SeqLockArray::from_slice(&[1u32, 2]);
/// if let Err(torn) = a.write_batch(|v| v[0] += 1) {
///     let mut batch = torn.into_inner();
///     assert!(batch.recovered());
///     batch.fill(0); // start over
///     batch.mark_consistent();
/// }
/// ```
#[must_use = "dropping the guard unmarked stores nothing"]
pub struct SeqLockArrayBatchGuard<'a, T: Pod> {
    locked: Option<AllLocked<'a, T>>,
    values: Vec<T>,
    /// A stripe was torn: the guard came in an `OwnerDied`.
    torn: bool,
    /// Dropping the guard publishes `values`: `false` only for a recovered guard that has
    /// not been marked consistent.
    publish: bool,
    /// The thread that took the lock: a copy of the guard in a forked child (whose
    /// thread has another TID) stores and releases nothing.
    owner: u32,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SeqLockArrayBatchGuard<'a, T> {
    /// The guard of a batch writer that holds every lock (`torn`: some stripe was torn);
    /// copies the array. `Err` if some stripe was torn.
    fn new(locked: AllLocked<'a, T>, torn: bool) -> LockResult<Self> {
        // Before the allocation below, which an allocator may fork in: the child's guard
        // must record the parent's thread.
        let owner = crate::owner::current();
        let array = locked.0;
        let mut values = vec![T::zeroed(); array.len()];
        // We hold every lock: no store races these loads.
        array.load_bytes(0, elem_bytes_mut(&mut values));
        let guard = SeqLockArrayBatchGuard {
            locked: Some(locked),
            values,
            torn,
            publish: !torn,
            owner,
            _not_send: PhantomData,
        };
        if torn {
            Err(OwnerDied::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// `true` if a writer died mid-write in some stripe: the copy this guard started
    /// with is garbage in places. Such a guard came wrapped in [`OwnerDied`], and stores
    /// nothing unless [marked consistent](Self::mark_consistent).
    pub fn recovered(&self) -> bool {
        self.torn
    }

    /// Declares the copy repaired after an [`OwnerDied`]: dropping the guard will store
    /// the whole copy as one batch, which makes every stripe consistent again. Does
    /// nothing on a guard that was not recovered (it stores its copy anyway).
    pub fn mark_consistent(&mut self) {
        self.publish = true;
    }
}

impl<T: Pod> Deref for SeqLockArrayBatchGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values
    }
}

impl<T: Pod> DerefMut for SeqLockArrayBatchGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values
    }
}

impl<T: Pod> Drop for SeqLockArrayBatchGuard<'_, T> {
    fn drop(&mut self) {
        let Some(locked) = self.locked.take() else {
            return;
        };
        if crate::owner::current() != self.owner {
            // A copy in a forked child: the locks are its parent's (or, by now, some the
            // child's own): store nothing, release nothing.
            core::mem::forget(locked);
            return;
        }
        if self.publish && !std::thread::panicking() {
            locked.0.publish_all(locked, &self.values);
        }
        // Otherwise `locked` drops here: every lock released, nothing stored (a torn
        // stripe stays torn).
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLockArrayBatchGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeqLockArrayBatchGuard")
            .field("values", &self.values)
            .field("recovered", &self.recovered())
            .field("marked_consistent", &(self.torn && self.publish))
            .finish()
    }
}

/// Every stripe lock of an array, held by a batch writer that has not started writing.
/// Dropping it (a panicking batch closure) releases the locks and writes nothing.
pub(super) struct AllLocked<'a, T: Pod>(&'a SeqLockArray<T>);

impl<T: Pod> Drop for AllLocked<'_, T> {
    fn drop(&mut self) {
        for k in 0..self.0.stripes() {
            self.0.stripe(k).lock.unlock_writer();
        }
    }
}
