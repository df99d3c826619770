//! The reader side of [`SeqLock`]: the optimistic copy (loads only) and its retries, and
//! the waits of [`read`](SeqLock::read) and [`read_timeout`](SeqLock::read_timeout) for a
//! write to end, or for a torn value to be repaired. The protocol and the orderings are in
//! the [module docs](super).
//!
//! # Crash windows
//!
//! Readers write nothing but the `WAITERS` bit before a sleep; a reader killed anywhere
//! leaves at most that bit, whose line is in the crash-window table of the
//! [module docs](super).

use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{
    SPINS, SeqLock, SeqLockError, Slept, TRY_READ_ATTEMPTS, WAITERS, is_writing, owner_of,
    writer_is_gone, writer_is_gone_watched,
};
use crate::sync::{AtomicU32, Ordering, fence, spin_loop};
use crate::wait::{Slices, past};

impl<T: Pod> SeqLock<T> {
    /// One optimistic read: `Ok(value)`, or `Err(Some(odd))` if a write was in progress
    /// (`odd` = the sequence seen), or `Err(None)` if a write overlapped the copy.
    #[inline]
    fn read_once(&self) -> Result<T, Option<u32>> {
        // Acquire: pairs with the writer's Release even store (c): if `s1` is that value,
        // all of that write's data stores are visible to the loads below.
        let s1 = self.seq.load(Ordering::Acquire);
        if is_writing(s1) {
            return Err(Some(s1));
        }
        let value = self.data.load();
        // Acquire fence: pairs with the writer's Release fence (a) after its odd store. If
        // any load above read a store of a later write, that write's odd store is visible
        // to the reload below.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the data loads by the fence above; it only needs to
        // observe a newer value of `seq`, which the fence guarantees (see above).
        let s2 = self.seq.load(Ordering::Relaxed);
        if s1 == s2 { Ok(value) } else { Err(None) }
    }

    /// Reads the value, waiting while a writer is writing.
    ///
    /// Never returns a torn value. Waits for a live writer (spinning briefly, then
    /// sleeping on a futex); if the writer died mid-write, sleeps (neither spinning nor
    /// probing) until another writer repairs the value, with [`write`](Self::write) or a
    /// guard marked consistent (see [`lock`](Self::lock)): waking at least every 800 µs to
    /// look, and **forever** if no writer ever comes. Writers that keep writing can also
    /// keep a reader retrying (a seqlock never makes writers wait for readers). Use
    /// [`read_timeout`](Self::read_timeout) or [`try_read`](Self::try_read) to bound the
    /// wait.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(7u32);
    /// assert_eq!(s.read(), 7);
    /// ```
    #[inline]
    pub fn read(&self) -> T {
        match self.read_once() {
            Ok(v) => v,
            Err(_) => self.read_slow(None, true).unwrap_or_else(|_| T::zeroed()),
        }
    }

    /// Reads the value, giving up after a bounded number of attempts instead of waiting.
    ///
    /// Spins (with loads only) through short writes; it makes no system call unless a
    /// write is still in progress when it gives up (then it probes the writer).
    ///
    /// # Errors
    ///
    /// [`SeqLockError::WriterActive`] if a live writer kept writing through every attempt;
    /// [`SeqLockError::WriterDied`] if the writer died mid-write (the value is torn until
    /// the next write).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmstate::SeqLock::new(1u8);
    /// assert_eq!(s.try_read(), Ok(1));
    /// ```
    #[inline]
    pub fn try_read(&self) -> Result<T, SeqLockError> {
        match self.read_once() {
            Ok(v) => Ok(v),
            Err(_) => self.try_read_slow(),
        }
    }

    /// Reads the value, waiting at most `timeout` for a writer to finish.
    ///
    /// # Errors
    ///
    /// [`SeqLockError::Timeout`] if at the deadline a live writer was still writing, or
    /// writes kept overlapping every copy; [`SeqLockError::WriterDied`] as soon as the
    /// writer is found dead mid-write.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = shmstate::SeqLock::new(1u16);
    /// assert_eq!(s.read_timeout(Duration::from_millis(10)), Ok(1));
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<T, SeqLockError> {
        match self.read_once() {
            Ok(v) => Ok(v),
            Err(_) => self.read_slow(Instant::now().checked_add(timeout), false),
        }
    }

    #[cold]
    fn try_read_slow(&self) -> Result<T, SeqLockError> {
        let mut last_odd = None;
        for _ in 0..TRY_READ_ATTEMPTS {
            match self.read_once() {
                Ok(v) => return Ok(v),
                Err(odd) => last_odd = odd.or(last_odd),
            }
            for _ in 0..SPINS {
                spin_loop();
            }
        }
        // Still failing: say whether the writer is alive. (A run of completed writes
        // overlapping every copy also lands here: that is "a writer is active".)
        match last_odd {
            Some(odd) if self.writer_is_dead(odd) => Err(SeqLockError::WriterDied),
            _ => Err(SeqLockError::WriterActive),
        }
    }

    /// Whether the write seen as odd sequence `odd` is still in progress and its writer
    /// is dead or unrecorded.
    #[cold]
    pub(crate) fn writer_is_dead(&self, odd: u32) -> bool {
        // Acquire: pairs with the Release swap in `unlock_writer`; if we read its 0, the
        // even store (c) before it is visible to the `seq` load below.
        let w = self.writer.load(Ordering::Acquire);
        // Relaxed: ordered after the Acquire load above, which is all we need.
        if self.seq.load(Ordering::Relaxed) != odd {
            return false;
        }
        let tid = owner_of(w);
        writer_is_gone(tid)
    }

    /// The waiting read loop of [`read`](Self::read) (`repair_wait`: wait out dead
    /// writers too) and [`read_timeout`](Self::read_timeout).
    #[cold]
    fn read_slow(&self, deadline: Option<Instant>, repair_wait: bool) -> Result<T, SeqLockError> {
        loop {
            match self.read_once() {
                Ok(v) => return Ok(v),
                // A complete write overlapped the copy. Writes that never leave `seq` odd
                // long enough to sleep on it never reach the deadline check in
                // `wait_write_end`, so check it here too.
                Err(None) if past(deadline) => return Err(SeqLockError::Timeout),
                Err(None) => spin_loop(),
                Err(Some(odd)) => self.wait_write_end(odd, deadline, repair_wait)?,
            }
        }
    }

    /// Waits until `seq` is no longer `odd` (`Ok`: retry), the deadline passes
    /// ([`SeqLockError::Timeout`], or [`SeqLockError::WriterDied`] if the writer is
    /// dead by then), or, unless `repair_wait`, the writer is found dead
    /// ([`SeqLockError::WriterDied`]). Spins with loads first, then futex-waits on `writer`
    /// in growing slices (`Slices::for_holder`, 50 µs up to 800 µs).
    ///
    /// Probes the writer only when a slice ran out without a wake, as `RawMutex` does: a
    /// live writer's unlock wakes us first, so waiting out ordinary writes costs no probe
    /// (its syscalls: `kill`, and a `/proc` read for a live thread). With `repair_wait`
    /// it never probes: [`read`](Self::read) waits for a repair whether the writer lives or
    /// not.
    #[cold]
    pub(crate) fn wait_write_end(
        &self,
        odd: u32,
        deadline: Option<Instant>,
        repair_wait: bool,
    ) -> Result<(), SeqLockError> {
        for _ in 0..SPINS {
            // Relaxed: we only watch for a change; the caller's retry re-reads with Acquire.
            if self.seq.load(Ordering::Relaxed) != odd {
                return Ok(());
            }
            spin_loop();
        }
        // A repair wait never probes: it waits for a writer, however long, so it sleeps in
        // word-wait slices (10 ms), not in a holder wait's short ones.
        let mut slices = if repair_wait {
            Slices::new()
        } else {
            Slices::for_holder()
        };
        let mut probe_due = false;
        loop {
            // Acquire: pairs with the Release swap in `unlock_writer` (see
            // `writer_is_dead`).
            let w = self.writer.load(Ordering::Acquire);
            // Relaxed: ordered after the Acquire load above.
            if self.seq.load(Ordering::Relaxed) != odd {
                return Ok(());
            }
            let tid = owner_of(w);
            if !repair_wait
                && (tid == 0
                    || (slices.probe_now(&mut probe_due)
                        && writer_is_gone_watched(&mut slices, tid)))
            {
                return Err(SeqLockError::WriterDied);
            }
            if tid != 0 && w & WAITERS == 0 {
                // Relaxed: the flag only asks the owner to wake us; the wake and the futex
                // value check order everything else.
                if self
                    .writer
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            let expect = if tid != 0 { w | WAITERS } else { w };
            match self.sleep_on_writer(expect, &mut slices, deadline) {
                Slept::Woken => {}
                Slept::SliceOut => probe_due = true,
                // One probe at the deadline says which error is true.
                Slept::Deadline if self.writer_is_dead(odd) => {
                    return Err(SeqLockError::WriterDied);
                }
                Slept::Deadline => return Err(SeqLockError::Timeout),
            }
        }
    }

    /// The sequence word, for `SeqLockArray`, whose stripes are `SeqLock<()>`s.
    #[inline]
    pub(crate) fn seq_word(&self) -> &AtomicU32 {
        &self.seq
    }
}
