//! The reader side of [`SeqLockArray`]: optimistic element reads, their waits, and
//! consistent snapshots of the whole array.
//!
//! # Crash windows
//!
//! Readers store nothing: a reader killed anywhere leaves nothing (the parent's tables).

use super::*;

impl<T: Pod> SeqLockArray<T> {
    /// One optimistic read of element `i < len()`: `Ok(value)`, or `Err(Some(odd))` if
    /// its stripe was being written, or `Err(None)` if a write overlapped the copy.
    #[inline]
    pub(super) fn read_once(&self, i: usize) -> Result<T, Option<u32>> {
        let seq = self.stripe_at(i).lock.seq_word();
        // Acquire: pairs with the writer's Release even store (c): if `s1` is that value,
        // all of that write's data stores are visible to the loads below.
        let s1 = seq.load(Ordering::Acquire);
        if is_writing(s1) {
            return Err(Some(s1));
        }
        let value = self.load_elem(i);
        // Acquire fence: pairs with the writer's Release fence (a) after its odd store. If
        // any load above read a store of a later write, that write's odd store is visible
        // to the reload below.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the data loads by the fence above.
        let s2 = seq.load(Ordering::Relaxed);
        if s1 == s2 { Ok(value) } else { Err(None) }
    }

    /// Reads element `i`, waiting while a writer writes its stripe. Never torn: like
    /// [`SeqLock::read`], it waits (sleeping, forever if nobody comes) for the repair of
    /// a stripe whose writer died mid-write; use [`try_get`](Self::try_get) or
    /// [`get_timeout`](Self::get_timeout) to bound the wait.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1i8, -1]);
    /// assert_eq!(a.get(1), -1);
    /// ```
    #[inline]
    #[track_caller]
    pub fn get(&self, i: usize) -> T {
        self.check_index(i);
        match self.read_once(i) {
            Ok(v) => v,
            Err(_) => self.get_slow(i, None, true).unwrap_or_else(|_| T::zeroed()),
        }
    }

    /// Reads element `i` with a bounded number of attempts and no waiting (as
    /// [`SeqLock::try_read`]).
    ///
    /// # Errors
    ///
    /// [`SeqLockError::WriterActive`] if a live writer kept writing the element's stripe
    /// through every attempt; [`SeqLockError::WriterDied`] if a writer died mid-write in
    /// it (the stripe is torn until repaired).
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[5u16, 6]);
    /// assert_eq!(a.try_get(1), Ok(6));
    /// ```
    #[inline]
    #[track_caller]
    pub fn try_get(&self, i: usize) -> Result<T, SeqLockError> {
        self.check_index(i);
        match self.read_once(i) {
            Ok(v) => Ok(v),
            Err(_) => self.try_get_slow(i),
        }
    }

    /// Reads element `i`, waiting at most `timeout` for a writer of its stripe (as
    /// [`SeqLock::read_timeout`]).
    ///
    /// # Errors
    ///
    /// [`SeqLockError::Timeout`] if at the deadline a live writer was still writing, or
    /// writes kept overlapping every copy; [`SeqLockError::WriterDied`] as soon as the
    /// writer is found dead mid-write.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[5u16, 6]);
    /// assert_eq!(a.get_timeout(0, Duration::from_millis(10)), Ok(5));
    /// ```
    #[track_caller]
    pub fn get_timeout(&self, i: usize, timeout: Duration) -> Result<T, SeqLockError> {
        self.check_index(i);
        match self.read_once(i) {
            Ok(v) => Ok(v),
            Err(_) => self.get_slow(i, Instant::now().checked_add(timeout), false),
        }
    }

    #[cold]
    pub(super) fn try_get_slow(&self, i: usize) -> Result<T, SeqLockError> {
        let mut last_odd = None;
        for _ in 0..TRY_ATTEMPTS {
            match self.read_once(i) {
                Ok(v) => return Ok(v),
                Err(odd) => last_odd = odd.or(last_odd),
            }
            for _ in 0..SPINS {
                spin_loop();
            }
        }
        // Say whether the stripe's writer is dead (one probe, no more attempts). A run
        // of completed writes overlapping every copy lands here too: "a writer is active".
        let lock = &self.stripe_at(i).lock;
        match last_odd {
            Some(odd) if lock.writer_is_dead(odd) => Err(SeqLockError::WriterDied),
            _ => Err(SeqLockError::WriterActive),
        }
    }

    /// The waiting read loop of [`get`](Self::get) (`repair_wait`) and
    /// [`get_timeout`](Self::get_timeout).
    #[cold]
    pub(super) fn get_slow(
        &self,
        i: usize,
        deadline: Option<Instant>,
        repair_wait: bool,
    ) -> Result<T, SeqLockError> {
        let lock = &self.stripe_at(i).lock;
        loop {
            match self.read_once(i) {
                Ok(v) => return Ok(v),
                // A complete write overlapped the copy: check the deadline here too (see
                // `SeqLock::read_slow`).
                Err(None) if past(deadline) => return Err(SeqLockError::Timeout),
                Err(None) => spin_loop(),
                Err(Some(odd)) => lock.wait_write_end(odd, deadline, repair_wait)?,
            }
        }
    }

    /// One optimistic snapshot attempt: `Err(Some((k, odd)))` if the first pass saw a
    /// stripe being written and stripe `k` still is (the first such), `Err(None)` if a
    /// write overlapped the copy (or the write the first pass saw has ended).
    ///
    /// Allocation-free: instead of remembering every sequence value, the recheck compares
    /// their sum (in a `u64`, which cannot overflow for fewer than 2^32 stripes). Why
    /// equal sums mean no stripe changed: every first-pass value `s_k` was even, and the
    /// recheck reads the same word later in program order, so by read-read coherence it
    /// sees `s_k` or a later value in the word's modification order. Writers only move a
    /// word forward (`begin_write` is a `fetch_or(1)`, `end_write` stores `odd + 1`, a
    /// takeover continues from the latest value), so `s_k' = s_k + d_k` with `d_k >= 0`
    /// the number of sequence steps, *as long as the `u32` does not wrap*; a sum of
    /// non-negative steps is 0 only if every step is 0.
    ///
    /// Wrap-around is where this is weaker than comparing word by word: a word at
    /// `u32::MAX - 1` wraps to 0 in **one** write, subtracting `2^32 - 2` from the sum,
    /// which writes to *other* stripes can cancel. So a changed array can pass the check
    /// only if the writes made to the whole array during this one attempt number exactly a
    /// non-zero multiple of 2^31: a reader stalled for billions of writes, the same order
    /// of limit as a 32-bit sequence itself (see [`SeqLock`]'s module docs).
    ///
    /// A hostile process can move sequence words backwards; then a snapshot may be
    /// inconsistent, as it may when that process writes garbage data directly: never
    /// undefined behaviour, a panic or a hang.
    pub(super) fn snapshot_once(&self, out: &mut [T]) -> Result<(), Option<(usize, u32)>> {
        // Acquire: pairs with each writer's Release even store (c); also orders the later
        // recheck of every *other* stripe after these loads (module docs).
        let (before, any) = self.seq_sum(Ordering::Acquire);
        if is_writing(any) {
            return Err(self.writing_stripe());
        }
        if Self::SIZE > 0 {
            self.load_bytes(0, elem_bytes_mut(out));
        }
        // Acquire fence: pairs with the writers' Release fence (a) after their odd stores:
        // if the copy saw a store of a write, the recheck sees its odd sequence value.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the copy by the fence above.
        let (after, _) = self.seq_sum(Ordering::Relaxed);
        if after == before { Ok(()) } else { Err(None) }
    }

    /// The sum (as a `u64`: no overflow below 2^32 stripes) and the bitwise OR of every
    /// stripe's `seq`, each loaded once with `order`, in increasing stripe order. The OR
    /// is odd iff some value was: the check of the first pass runs once, after the loop,
    /// instead of once per stripe, and the loop, four stripes per step, is a few
    /// instructions per stripe (the loads are independent; their order among themselves
    /// does not matter to the snapshot, which needs only every load of the first pass
    /// before the copy, and every load of the recheck after the fence).
    #[inline(always)]
    fn seq_sum(&self, order: Ordering) -> (u64, u32) {
        let seq = |k: usize| self.stripe(k).lock.seq_word().load(order);
        let n = self.stripes();
        let (mut sum, mut any) = (0u64, 0u32);
        let mut k = 0;
        while k + 4 <= n {
            let (a, b, c, d) = (seq(k), seq(k + 1), seq(k + 2), seq(k + 3));
            sum = sum.wrapping_add(u64::from(a) + u64::from(b) + u64::from(c) + u64::from(d));
            any |= a | b | c | d;
            k += 4;
        }
        while k < n {
            let a = seq(k);
            sum = sum.wrapping_add(u64::from(a));
            any |= a;
            k += 1;
        }
        (sum, any)
    }

    /// After a first pass that saw an odd `seq`: the first stripe being written now and
    /// its odd value, to wait on; `None` if none is any more (the caller retries).
    #[cold]
    fn writing_stripe(&self) -> Option<(usize, u32)> {
        (0..self.stripes()).find_map(|k| {
            // Relaxed: only picks what to wait for; the wait and the next attempt load
            // the word again with the orderings they need.
            let s = self.stripe(k).lock.seq_word().load(Ordering::Relaxed);
            is_writing(s).then_some((k, s))
        })
    }

    pub(super) fn snapshot_until(
        &self,
        out: &mut [T],
        deadline: Option<Instant>,
        repair_wait: bool,
    ) -> Result<(), SeqLockError> {
        loop {
            match self.snapshot_once(out) {
                Ok(()) => return Ok(()),
                // A complete write overlapped the copy: check the deadline here too.
                Err(None) if past(deadline) => return Err(SeqLockError::Timeout),
                Err(None) => spin_loop(),
                Err(Some((k, odd))) => {
                    self.stripe(k)
                        .lock
                        .wait_write_end(odd, deadline, repair_wait)?;
                }
            }
        }
    }

    /// Copies the whole array into `out` as one consistent snapshot: a batch write
    /// entirely or not at all, and a consistent cut of independent writes (if it holds a
    /// write, it holds every write that happened before it; with Acquire/Release only,
    /// two snapshots may still order two *unrelated* writes to different stripes
    /// differently on hardware that is not multi-copy atomic, e.g. POWER). Waits out
    /// writers like [`get`](Self::get) (including waiting for the repair of a stripe whose
    /// writer died mid-write).
    ///
    /// Under a constant stream of writes to many stripes a large snapshot may retry many
    /// times: seqlock readers never block writers, so they can be starved.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[1u8, 2]);
    /// let mut out = [0; 2];
    /// a.snapshot(&mut out);
    /// assert_eq!(out, [1, 2]);
    /// ```
    #[track_caller]
    pub fn snapshot(&self, out: &mut [T]) {
        self.check_len(out.len());
        // Without deadline and with repair waits, `snapshot_until` cannot fail.
        let _ = self.snapshot_until(out, None, true);
    }

    /// [`snapshot`](Self::snapshot), waiting at most `timeout` for writers.
    ///
    /// # Errors
    ///
    /// [`SeqLockError::Timeout`] if at the deadline a stripe was still being written by a
    /// live writer, or writes kept overlapping every copy; [`SeqLockError::WriterDied`] as
    /// soon as a stripe's writer is found dead mid-write. `out` holds garbage then.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmstate::SeqLockArray::from_slice(&[3u8]);
    /// let mut out = [0];
    /// a.snapshot_timeout(&mut out, Duration::from_millis(10)).unwrap();
    /// assert_eq!(out, [3]);
    /// ```
    #[track_caller]
    pub fn snapshot_timeout(&self, out: &mut [T], timeout: Duration) -> Result<(), SeqLockError> {
        self.check_len(out.len());
        self.snapshot_until(out, Instant::now().checked_add(timeout), false)
    }

    /// [`snapshot`](Self::snapshot) with a bounded number of attempts and no waiting.
    ///
    /// # Errors
    ///
    /// As [`try_get`](Self::try_get): [`SeqLockError::WriterActive`] or
    /// [`SeqLockError::WriterDied`]. `out` holds garbage then.
    ///
    /// # Panics
    ///
    /// If `out.len() != self.len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[3u8, 4]);
    /// let mut out = [0; 2];
    /// assert_eq!(a.try_snapshot(&mut out), Ok(()));
    /// ```
    #[track_caller]
    pub fn try_snapshot(&self, out: &mut [T]) -> Result<(), SeqLockError> {
        self.check_len(out.len());
        let mut busy = None;
        for _ in 0..TRY_ATTEMPTS {
            match self.snapshot_once(out) {
                Ok(()) => return Ok(()),
                Err(b) => busy = b.or(busy),
            }
            for _ in 0..SPINS {
                spin_loop();
            }
        }
        // Say whether the stripe last seen mid-write has a dead writer (one probe, no
        // more attempts).
        match busy {
            Some((k, odd)) if self.stripe(k).lock.writer_is_dead(odd) => {
                Err(SeqLockError::WriterDied)
            }
            _ => Err(SeqLockError::WriterActive),
        }
    }

    /// The whole array as a `Vec`, from one consistent [`snapshot`](Self::snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = shmstate::SeqLockArray::from_slice(&[[1u8, 2]]);
    /// assert_eq!(a.to_vec(), [[1, 2]]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.len()];
        self.snapshot(&mut out);
        out
    }
}
