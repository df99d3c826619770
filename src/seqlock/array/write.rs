//! The writer side of [`SeqLockArray`]: element writes under one stripe's lock (with the
//! repair of a stripe torn by a dead writer), their guard, and batch writes under every
//! stripe's lock. The protocol, its orderings and its crash windows are in the
//! [module docs](super).

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{SeqLockArray, elem_bytes, elem_bytes_mut};
use crate::lock::{LockResult, OwnerDied, TimedLockError};
use crate::seqlock::single::unreachable_no_deadline;
use crate::sync::{Ordering, fence};
use crate::wait::{Timeout, past};

// Batch writes (every stripe at once) and their guard: a child module, so that it shares
// this file's private stripe-locking steps.
mod batch;
pub use batch::SeqLockArrayBatchGuard;

/// Which elements of a stripe whose lock we hold a dead writer may have torn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Torn {
    /// None: the stripe is consistent.
    No,
    /// Only element `i` (absolute index).
    One(usize),
    /// Any of them (a batch writer died, or `dirty` holds garbage).
    All,
}

impl Torn {
    /// Whether element `i`'s value may be torn.
    fn covers(self, i: usize) -> bool {
        match self {
            Torn::No => false,
            Torn::One(j) => j == i,
            Torn::All => true,
        }
    }

    /// Whether the stripe stays torn after a write of element `i` alone.
    fn outlives(self, i: usize) -> bool {
        match self {
            Torn::No => false,
            Torn::One(j) => j != i,
            Torn::All => true,
        }
    }
}

impl<T: Pod> SeqLockArray<T> {
    /// Takes stripe `k`'s writer lock before `deadline` and says what a dead writer left.
    #[inline]
    fn lock_stripe_until(&self, k: usize, deadline: Option<Instant>) -> Result<Torn, Timeout> {
        let torn = self.stripe(k).lock.lock_writer_until(deadline)?;
        Ok(if torn {
            self.torn_elements(k)
        } else {
            Torn::No
        })
    }

    /// Stripe `k`'s lock is held and its `seq` was odd: which elements may be torn.
    #[cold]
    fn torn_elements(&self, k: usize) -> Torn {
        let stripe = self.stripe(k);
        // Acquire: pairs with the Release `fetch_or` (b) that made `seq` odd, so the
        // `dirty` store (d) before it is visible below. (If the last lock holder left it
        // odd without writing, that holder read it so too, and its Release unlock pairs
        // with our Acquire lock CAS.)
        let _ = stripe.lock.seq_word().load(Ordering::Acquire);
        // Acquire: pairs with the Release store that names the torn element again after a
        // write of another element of a torn stripe (`publish_elem_and_unlock`); the
        // value (d) of an untorn stripe's writer is ordered by the Acquire load above.
        let dirty = stripe.dirty.load(Ordering::Acquire) as usize;
        let first = k * Self::STRIPE_LEN;
        let count = Self::STRIPE_LEN.min(self.len() - first);
        if (1..=count).contains(&dirty) {
            Torn::One(first + dirty - 1)
        } else {
            Torn::All
        }
    }

    /// The `dirty` value that names element `i` alone (its index in its stripe, plus 1).
    #[inline]
    fn dirty_of(&self, i: usize) -> u32 {
        (i % Self::STRIPE_LEN) as u32 + 1
    }

    /// Starts a write of element `i` (its stripe's lock is held; `torn`: what the locker
    /// found): `dirty`, then the odd sequence store (b) and the Release fence (a). Returns
    /// the odd value.
    #[inline]
    fn begin_elem_write(&self, i: usize, torn: Torn) -> u32 {
        let k = Self::stripe_of(i);
        let stripe = self.stripe(k);
        match torn {
            Torn::No => {
                // (d) Relaxed: published by the Release `fetch_or` below (module docs).
                stripe.dirty.store(self.dirty_of(i), Ordering::Relaxed);
            }
            Torn::One(j) if j != i => {
                // Two elements may be torn if we die mid-write: `j` and `i`. `dirty` names
                // one, so it says "the whole stripe" until our stores are done (then
                // `publish_elem_and_unlock` names `j` alone again). Relaxed: published by
                // the Release `fetch_or` below, as (d).
                stripe.dirty.store(0, Ordering::Relaxed);
            }
            // A repair of the torn element, or a stripe torn as a whole: `dirty` already
            // names what is torn, and must stay.
            Torn::One(_) | Torn::All => {}
        }
        // (b): odd (a no-op RMW on a torn stripe's odd value, continuing its sequence).
        let odd = stripe.lock.begin_write();
        // Release fence (a): pairs with the readers' Acquire fence; orders the odd store
        // above before the data stores below for any reader that sees one of them.
        fence(Ordering::Release);
        odd
    }

    /// Stores element `i` (its stripe's lock is held; `torn`: what the locker found) and
    /// releases the lock. The stripe ends stable unless another of its elements is still
    /// torn.
    #[inline]
    fn publish_elem_and_unlock(&self, i: usize, value: &T, torn: Torn) {
        let stripe = self.stripe_at(i);
        let odd = self.begin_elem_write(i, torn);
        self.store_elem(i, value);
        if let Torn::One(j) = torn
            && j != i
        {
            // `i` is whole again: only `j` may still be torn. Release: pairs with the
            // Acquire load of `dirty` in `torn_elements` of a writer that takes the lock
            // over if we die before unlocking (a normal unlock orders it anyway): whoever
            // reads this value also sees every store of `i` above.
            stripe.dirty.store(self.dirty_of(j), Ordering::Release);
        }
        if !torn.outlives(i) {
            // (c)
            stripe.lock.end_write(odd);
        }
        stripe.lock.unlock_writer();
    }

    /// Writes element `i`. Waits for its stripe's writer lock (taking it over from a dead
    /// writer), and repairs the stripe if a dead writer left this element torn (if it
    /// left *another* element of the stripe torn, the value is stored and the stripe stays
    /// torn until that one is repaired: see the [module docs](super)).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::<u64>::new(2);
    /// a.set(0, 9);
    /// assert_eq!(a.get(0), 9);
    /// ```
    #[inline]
    #[track_caller]
    pub fn set(&self, i: usize, value: T) {
        self.check_index(i);
        let torn = match self.lock_stripe_until(Self::stripe_of(i), None) {
            Ok(t) => t,
            Err(Timeout) => unreachable_no_deadline(),
        };
        self.publish_elem_and_unlock(i, &value, torn);
    }

    /// Read-modify-writes element `i` under its stripe's writer lock, returning `f`'s
    /// result (as [`SeqLock::update`](crate::SeqLock::update)). Readers keep reading the
    /// old value while `f` runs. If `f` panics, nothing is stored.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] if the element may be torn by a writer that died mid-write: `f` is
    /// not called, and the error holds the element's write guard (repair the value and
    /// call [`SeqLockArrayWriteGuard::mark_consistent`] to publish it; dropping it stores
    /// nothing).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1u32, 2]);
    /// a.update(1, |v| *v *= 10).expect("no writer died mid-write");
    /// assert_eq!(a.get(1), 20);
    /// ```
    #[track_caller]
    #[must_use = "an `Err` means the element is torn and `f` did not run"]
    pub fn update<R>(
        &self,
        i: usize,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, OwnerDied<SeqLockArrayWriteGuard<'_, T>>> {
        let mut guard = self.lock(i)?;
        Ok(f(&mut guard))
    }

    /// Takes element `i`'s stripe writer lock and returns a guard holding a copy of the
    /// element; dropping the guard stores the copy (readers see the old value until
    /// then). A guard dropped while its thread panics stores nothing.
    ///
    /// While the guard lives, the calling thread must not lock any element of the same
    /// stripe (see [`STRIPE_LEN`](Self::STRIPE_LEN)) nor start a batch write: it would
    /// deadlock on itself, as with any non-reentrant lock. Threads holding guards of
    /// several stripes at once must take them in one global order (e.g. increasing
    /// index); batch writes never hold a lock while they wait, so they add no cycle (see
    /// the [module docs](super), "Lock order").
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard: the lock *is* acquired) if a writer died
    /// mid-write while writing this element (or the whole stripe, in a batch), or a
    /// writer since dropped such a guard without marking it: the guard's copy is
    /// **torn**. Repair it, then call [`SeqLockArrayWriteGuard::mark_consistent`]; a
    /// guard dropped unmarked stores nothing and leaves the stripe torn. This is the
    /// shape of [`SeqLock::lock`](crate::SeqLock::lock).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[5i64, 6]);
    /// let mut g = match a.lock(1) {
    ///     Ok(g) => g,
    ///     Err(torn) => {
    ///         let mut g = torn.into_inner();
    ///         *g = 6; // repair...
    ///         g.mark_consistent(); // ...and say so
    ///         g
    ///     }
    /// };
    /// *g *= 2;
    /// drop(g);
    /// assert_eq!(a.get(1), 12);
    /// ```
    #[track_caller]
    pub fn lock(&self, i: usize) -> LockResult<SeqLockArrayWriteGuard<'_, T>> {
        self.check_index(i);
        match self.lock_stripe_until(Self::stripe_of(i), None) {
            Ok(torn) => SeqLockArrayWriteGuard::new(self, i, torn),
            Err(Timeout) => unreachable_no_deadline(),
        }
    }

    /// [`lock`](Self::lock), waiting at most `timeout` for the stripe's writer lock.
    ///
    /// # Errors
    ///
    /// [`TimedLockError::Timeout`] if another live writer held the lock throughout;
    /// [`TimedLockError::OwnerDied`] as for [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8]);
    /// if let Ok(mut g) = a.lock_timeout(0, Duration::from_millis(10)) {
    ///     *g = 2;
    /// }
    /// assert_eq!(a.get(0), 2);
    /// ```
    #[track_caller]
    pub fn lock_timeout(
        &self,
        i: usize,
        timeout: Duration,
    ) -> Result<SeqLockArrayWriteGuard<'_, T>, TimedLockError<SeqLockArrayWriteGuard<'_, T>>> {
        self.check_index(i);
        let torn = self
            .lock_stripe_until(Self::stripe_of(i), Instant::now().checked_add(timeout))
            .map_err(|Timeout| TimedLockError::Timeout)?;
        Ok(SeqLockArrayWriteGuard::new(self, i, torn)?)
    }

    /// Test hook: takes element `i`'s stripe lock, marks a write of it in progress,
    /// stores `value`, and returns **without** ending the write or releasing the lock,
    /// exactly as a writer killed between its two sequence stores leaves things. Not part
    /// of the API.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn begin_write_for_test(&self, i: usize, value: T) {
        self.begin_write_part_for_test(i, value, Self::SIZE);
    }

    /// Test hook: as [`begin_write_for_test`](Self::begin_write_for_test), but stores
    /// only the first `bytes` bytes of `value` (rounded down to whole data words stored),
    /// as a writer killed among its word stores leaves things. Not part of the API.
    ///
    /// # Panics
    ///
    /// If `i >= len()` or `bytes > size_of::<T>()`.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn begin_write_part_for_test(&self, i: usize, value: T, bytes: usize) {
        self.check_index(i);
        let torn = match self.lock_stripe_until(Self::stripe_of(i), None) {
            Ok(t) => t,
            Err(Timeout) => unreachable_no_deadline(),
        };
        let _odd = self.begin_elem_write(i, torn);
        if Self::SIZE > 0 {
            self.store_bytes(i * Self::SIZE, &bytemuck::bytes_of(&value)[..bytes]);
        }
    }

    /// Test hook: a batch write of `values` that stops after its data stores, **without**
    /// ending the write or releasing the locks, exactly as a batch writer killed mid-batch
    /// leaves things. Not part of the API.
    ///
    /// # Panics
    ///
    /// If `values.len() != self.len()`.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn begin_batch_for_test(&self, values: &[T]) {
        self.check_len(values.len());
        let (locked, _torn) = self.lock_all();
        core::mem::forget(locked);
        for k in 0..self.stripes() {
            let stripe = self.stripe(k);
            // Relaxed: as in `publish_all`.
            stripe.dirty.store(0, Ordering::Relaxed);
            stripe.lock.begin_write();
        }
        fence(Ordering::Release);
        self.store_bytes(0, elem_bytes(values));
    }
}

/// Exclusive write access to one element of a [`SeqLockArray`] (and its stripe's writer
/// lock), from [`SeqLockArray::lock`]: derefs to a private copy of the element, which is
/// stored (and the lock released) when the guard drops.
///
/// A guard handed out inside [`OwnerDied`] holds a value torn by a writer that died
/// mid-write ([`recovered`](Self::recovered)): it stores nothing when dropped unless
/// [`mark_consistent`](Self::mark_consistent) was called.
///
/// Not `Send`: the lock records the locking thread's TID for the liveness probe.
///
/// # Examples
///
/// ```
/// let a = shmstate::SeqLockArray::from_slice(&[[1u8, 2], [3, 4]]);
/// {
///     let mut g = a.lock(1).expect("no writer died mid-write");
///     g[1] = 9;
///     assert_eq!(a.get(0), [1, 2]); // readers see the old values until the drop
/// }
/// assert_eq!(a.get(1), [3, 9]);
/// ```
#[must_use = "dropping the guard immediately stores the value unchanged"]
pub struct SeqLockArrayWriteGuard<'a, T: Pod> {
    array: &'a SeqLockArray<T>,
    index: usize,
    value: T,
    /// What the locker found in the stripe.
    torn: Torn,
    /// Dropping the guard publishes `value`: `false` only for a recovered guard that has
    /// not been marked consistent.
    publish: bool,
    /// The thread that took the lock: a copy of the guard in a forked child (whose
    /// thread has another TID) stores and releases nothing.
    owner: u32,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SeqLockArrayWriteGuard<'a, T> {
    /// The guard of a writer that holds element `index`'s stripe lock; `Err` if the
    /// element may be torn.
    fn new(array: &'a SeqLockArray<T>, index: usize, torn: Torn) -> LockResult<Self> {
        let recovered = torn.covers(index);
        let guard = SeqLockArrayWriteGuard {
            array,
            index,
            // We hold the lock: no store races this load.
            value: array.load_elem(index),
            torn,
            publish: !recovered,
            owner: crate::owner::current(),
            _not_send: PhantomData,
        };
        if recovered {
            Err(OwnerDied::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// The index of the element this guard writes.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `true` if a writer died mid-write of this element (or of its whole stripe): the
    /// value this guard started with is torn (each 8-byte word holds its old or its new
    /// value). Such a guard came wrapped in [`OwnerDied`], and stores nothing unless
    /// [marked consistent](Self::mark_consistent).
    pub fn recovered(&self) -> bool {
        self.torn.covers(self.index)
    }

    /// Declares the guard's value repaired after an [`OwnerDied`]: dropping the guard
    /// will store it. The stripe becomes valid again for readers if this element was the
    /// only one torn; a stripe torn as a whole (by a dead batch writer, by two element
    /// writers that died in it, or with a garbage `dirty` word) stays torn until the next
    /// batch write. Does nothing on a guard that was not recovered (it stores its value anyway).
    pub fn mark_consistent(&mut self) {
        self.publish = true;
    }
}

impl<T: Pod> Deref for SeqLockArrayWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Pod> DerefMut for SeqLockArrayWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Pod> Drop for SeqLockArrayWriteGuard<'_, T> {
    fn drop(&mut self) {
        if crate::owner::current() != self.owner {
            // A copy in a forked child: the lock is its parent's (or, by now, the child's
            // own, under a guard of its own): store nothing, release nothing.
            return;
        }
        if !self.publish || std::thread::panicking() {
            // Store nothing, just release the lock (a torn stripe stays torn: `seq` odd
            // with no owner, which the next writer and the readers recognise).
            let k = SeqLockArray::<T>::stripe_of(self.index);
            self.array.stripe(k).lock.unlock_writer();
        } else {
            self.array
                .publish_elem_and_unlock(self.index, &self.value, self.torn);
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SeqLockArrayWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeqLockArrayWriteGuard")
            .field("index", &self.index)
            .field("value", &self.value)
            .field("recovered", &self.recovered())
            .field("marked_consistent", &(self.recovered() && self.publish))
            .finish()
    }
}
