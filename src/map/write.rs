//! The writer's side: the stripe lock, finding a key's slot under it, and the slot writes
//! and moves of the protocol (the "Writers" part of the [module docs](super)).

use crate::failpoint::{self, Point};
use crate::lock::Acquired;
use crate::sync::{AtomicU64, Ordering, fence};
use crate::wait::Timeout;
use std::time::Instant;

use super::error::MapError;
use super::hash::Place;
use super::layout::{ByteMap, Meta, StripeHead, for_each_word, key_equals};
use super::options::Geometry;
use super::read::{Clock, next};

/// A stripe's lock, held; unlocks on drop. All slot writes of the stripe go through it.
pub(crate) struct Locked<'a> {
    pub(crate) map: &'a ByteMap,
    /// The geometry the operation validated (borrowed: the guard is built and moved
    /// without copying it).
    pub(crate) g: &'a Geometry,
    pub(crate) s: usize,
    pub(crate) head: &'a StripeHead,
    /// The calling operation's deadline (`None`: untimed): bounds the scans of the map's
    /// stripe heads ([`resync_count`](Self::resync_count)) it may run under this lock.
    pub(crate) dl: Option<Instant>,
    /// The thread that took the lock: a copy in a child forked inside a caller's closure
    /// (an update's) writes and releases nothing.
    owner: u32,
}

impl Locked<'_> {
    /// Whether the calling thread took the lock: false in a child forked inside the
    /// caller's closure, whose copy of this guard must write nothing.
    #[inline]
    pub(crate) fn held_here(&self) -> bool {
        crate::owner::current() == self.owner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if !self.held_here() {
            // A copy in a forked child: the lock is its parent's (or, by now, the
            // child's own, under another guard).
            return;
        }
        // SAFETY: `unlock` needs the calling thread to hold the lock: a `Locked` is made
        // only by `lock_stripe`, on the calling thread, after `lock` returned; it lives
        // within that one map call (never returned to a caller, never sent to another
        // thread), so it is dropped on the thread that locked.
        unsafe { self.head.lock.unlock() };
    }
}

/// Where a key is, or would go, in its stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Find {
    /// At slot `i`, with meta `m` (live: not expired).
    Found(usize, Meta),
    /// Absent; slot `i` is the first empty slot of its probe run.
    Vacant(usize),
    /// Absent, and the stripe has no empty slot.
    StripeFull,
}

/// The stripe holds bytes no writer leaves outside a write: it needs a repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NeedsRepair;

/// The first `len` bytes of `words` as a fresh vector of exactly `len` bytes (zero-filled
/// past the words' end, which a validated meta's length never reaches), built word by
/// word: one allocation, no zero-fill first.
#[inline]
pub(crate) fn vec_of(words: &[AtomicU64], len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    for w in words.iter().take(len.div_ceil(8)) {
        // Relaxed: the caller holds the stripe lock (or rechecks a sequence).
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&b[..n]);
    }
    v.resize(len, 0);
    v
}

/// Cyclic distance from slot `a` forward to slot `b` in a stripe of `sps` slots.
#[inline]
pub(crate) fn dist(a: usize, b: usize, sps: usize) -> usize {
    if b >= a { b - a } else { b + sps - a }
}

impl ByteMap {
    /// Locks stripe `s`, repairing it first if its last writer died mid-protocol (or its
    /// structure sequence is odd without a writer). Waits for a live holder as long as it
    /// holds (a stopped one too).
    #[inline(always)]
    pub(crate) fn lock_stripe<'a>(&'a self, g: &'a Geometry, s: usize) -> Locked<'a> {
        let a = self.head(g, s).lock.lock();
        self.locked(g, s, a, None)
    }

    /// [`lock_stripe`](Self::lock_stripe) that gives up at `dl` (if any).
    #[inline(always)]
    pub(crate) fn lock_stripe_until<'a>(
        &'a self,
        g: &'a Geometry,
        s: usize,
        dl: Option<Instant>,
    ) -> Result<Locked<'a>, Timeout> {
        match dl {
            None => Ok(self.lock_stripe(g, s)),
            Some(d) => {
                let a = self.head(g, s).lock.lock_until(d).ok_or(Timeout)?;
                Ok(self.locked(g, s, a, dl))
            }
        }
    }

    /// [`lock_stripe`](Self::lock_stripe) without waiting: `None` if the lock is held; `dl`
    /// is the calling operation's deadline.
    pub(crate) fn try_lock_stripe<'a>(
        &'a self,
        g: &'a Geometry,
        s: usize,
        dl: Option<Instant>,
    ) -> Option<Locked<'a>> {
        let a = self.head(g, s).lock.try_lock()?;
        Some(self.locked(g, s, a, dl))
    }

    /// The guard of stripe `s`'s lock, just acquired as `a` by an operation with deadline
    /// `dl`; repairs the stripe if needed.
    #[inline(always)]
    fn locked<'a>(
        &'a self,
        g: &'a Geometry,
        s: usize,
        a: Acquired,
        dl: Option<Instant>,
    ) -> Locked<'a> {
        let head = self.head(g, s);
        let l = Locked {
            map: self,
            g,
            s,
            head,
            dl,
            owner: crate::owner::current(),
        };
        // Relaxed: we hold the lock; the last writer's stores are visible through it.
        if a == Acquired::OwnerDied || head.seq.load(Ordering::Relaxed) & 1 != 0 {
            l.repair();
        }
        l
    }
}

impl<'a> Locked<'a> {
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> super::layout::Slot<'a> {
        self.map.slot(self.g, self.s, i)
    }

    /// Finds `key` (at `p`), reclaiming expired entries met on its probe run; repairs the
    /// stripe once if it meets bytes no writer leaves.
    ///
    /// A key found at its home slot (the common case) is found inline; everything else
    /// goes to the probe loop, out of line ([`find_probing`](Self::find_probing)).
    #[inline(always)]
    pub(crate) fn find(&self, p: &Place, key: &[u8], clock: &mut Clock) -> Result<Find, MapError> {
        match self.find_at_home(p, key, clock) {
            Some(f) => Ok(f),
            None => self.find_probing(p, key, clock),
        }
    }

    /// [`find`](Self::find) when its look at the home slot found nothing: the whole probe
    /// loop, from the home slot again (a home slot that is torn, garbage or expired is
    /// repaired or reclaimed here, so the loop must not skip it).
    #[inline(never)]
    pub(crate) fn find_probing(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
    ) -> Result<Find, MapError> {
        for _ in 0..2 {
            match self.find_once(p, key, clock, true) {
                Ok(f) => return Ok(f),
                Err(NeedsRepair) => self.repair(),
            }
        }
        Err(MapError::Corrupt {
            reason: "a stripe stayed unreadable after a repair",
        })
    }

    /// The key at its home slot, live: what [`find`](Self::find) returns when its first
    /// look finds the key (`None`: anything else, for `find` to decide), without the
    /// probe loop. The checks are `find`'s on that slot (in another order, all under the
    /// lock): an even sequence, a full meta with the key's tag and length that `g`
    /// allows, the key's words, a deadline not passed. Stores nothing. The test
    /// `find_at_home_agrees_with_the_probe_loop` holds the two copies of the checks
    /// together.
    #[inline(always)]
    pub(crate) fn find_at_home(&self, p: &Place, key: &[u8], clock: &mut Clock) -> Option<Find> {
        let slot = self.slot(p.home);
        // Relaxed: we hold the lock; no other writer stores to the stripe.
        let m = Meta(slot.meta().load(Ordering::Relaxed));
        // Relaxed: as above.
        let found = m.is_full_with(p.tag, key.len())
            && slot.seq().load(Ordering::Relaxed) & 1 == 0
            && m.full_and_valid(self.g)
            && key_equals(slot.key(), key)
            && !clock.expired(slot.expiry().load(Ordering::Relaxed));
        found.then_some(Find::Found(p.home, m))
    }

    /// [`find`](Self::find) for a reader under the lock: reclaims nothing. The found slot
    /// and its meta, if the key is present.
    pub(crate) fn find_readonly(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
    ) -> Result<Option<(usize, Meta)>, MapError> {
        for _ in 0..2 {
            match self.find_once(p, key, clock, false) {
                Ok(Find::Found(i, m)) => return Ok(Some((i, m))),
                Ok(_) => return Ok(None),
                Err(NeedsRepair) => self.repair(),
            }
        }
        Err(MapError::Corrupt {
            reason: "a stripe stayed unreadable after a repair",
        })
    }

    #[inline]
    fn find_once(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        reclaim: bool,
    ) -> Result<Find, NeedsRepair> {
        let sps = self.g.sps;
        // Every reclaim removes one entry, so this restarts at most `sps` times.
        'restart: for _ in 0..sps + 1 {
            let mut i = p.home;
            for _ in 0..sps {
                let slot = self.slot(i);
                // Relaxed: we hold the lock; no other writer stores to the stripe.
                if slot.seq().load(Ordering::Relaxed) & 1 != 0 {
                    return Err(NeedsRepair);
                }
                // Relaxed: as above.
                let m = Meta(slot.meta().load(Ordering::Relaxed));
                if m.is_empty() {
                    return Ok(Find::Vacant(i));
                }
                if !m.full_and_valid(self.g) {
                    return Err(NeedsRepair);
                }
                // Relaxed: as above.
                let live = !clock.expired(slot.expiry().load(Ordering::Relaxed));
                let ours = m.is_full_with(p.tag, key.len()) && key_equals(slot.key(), key);
                if !live && reclaim {
                    self.remove_at(i);
                    continue 'restart;
                }
                if ours {
                    // Expired here only for a reader under the lock (a writer reclaimed it
                    // above): absent.
                    return Ok(if live {
                        Find::Found(i, m)
                    } else {
                        Find::Vacant(i)
                    });
                }
                i = next(i, sps);
            }
            return Ok(Find::StripeFull);
        }
        Ok(Find::StripeFull)
    }

    /// The value of slot `i` as a fresh vector.
    #[inline]
    pub(crate) fn value_vec(&self, i: usize, m: Meta) -> Vec<u8> {
        vec_of(self.slot(i).value(), m.value_len())
    }

    /// The stripe's next write stamp: its write counter, advanced (the eviction order: a
    /// smaller stamp is an older write; compared only within the stripe).
    #[inline]
    fn tick(&self) -> u64 {
        // Relaxed: written and read only under the lock.
        let t = self.head.writes.load(Ordering::Relaxed).wrapping_add(1);
        self.head.writes.store(t, Ordering::Relaxed);
        t
    }

    /// Makes slot `i`'s sequence odd: the start of a write of the slot.
    #[inline]
    fn begin_write(&self, slot: &super::layout::Slot<'_>) -> u64 {
        // Relaxed: we hold the lock; we are the slot's only writer.
        let q = slot.seq().load(Ordering::Relaxed);
        slot.seq().store(q | 1, Ordering::Relaxed);
        // Release fence: pairs with a reader's Acquire fence before its recheck (see
        // `try_read`): a reader that sees any store below sees the odd sequence.
        fence(Ordering::Release);
        q | 1
    }

    /// Makes the sequence even again: the end of a write of the slot.
    #[inline]
    fn end_write(&self, slot: &super::layout::Slot<'_>, odd: u64) {
        // Release pairs with a reader's Acquire load of the sequence (`try_read`): a
        // reader that sees the new even value sees every store of the write.
        slot.seq().store(odd.wrapping_add(1), Ordering::Release);
    }

    /// Starts a structure change of the stripe (a move or a drop of entries).
    #[inline]
    pub(crate) fn begin_move(&self) -> u64 {
        // Relaxed: we hold the lock.
        let ss = self.head.seq.load(Ordering::Relaxed) | 1;
        self.head.seq.store(ss, Ordering::Relaxed);
        // Release fence: as in `begin_write`, for the structure sequence.
        fence(Ordering::Release);
        ss
    }

    /// Ends a structure change.
    #[inline]
    pub(crate) fn end_move(&self, odd: u64) {
        // Release: as in `end_write`, for the structure sequence.
        self.head.seq.store(odd.wrapping_add(1), Ordering::Release);
    }

    /// Writes a new entry into the empty slot `i` if the map has room for it: reserves
    /// its place in the map's count (`false`, nothing written, if the map holds
    /// `capacity` entries even after [`heal_count`](Self::heal_count)), counts it in the
    /// stripe's, then writes the slot.
    #[must_use]
    pub(crate) fn write_new(
        &self,
        i: usize,
        p: &Place,
        key: &[u8],
        value: &[u8],
        expiry: u64,
    ) -> bool {
        let reserved = self.reserve() || (self.heal_count() && self.reserve());
        if !reserved {
            return false;
        }
        failpoint::hit(Point::MapCountsHalf);
        self.write_reserved(i, p, key, value, expiry);
        true
    }

    /// [`write_new`](Self::write_new) into a place the stripe holds already (pending in its
    /// count word: an evicted entry's, see [`evict_keeping_place`](Self::evict_keeping_place));
    /// reserves a place as `write_new` does if it holds none (a repair in between gave the
    /// held place back).
    #[must_use]
    pub(crate) fn write_held(
        &self,
        i: usize,
        p: &Place,
        key: &[u8],
        value: &[u8],
        expiry: u64,
    ) -> bool {
        if self.counts().1 == 0 {
            return self.write_new(i, p, key, value, expiry);
        }
        self.write_reserved(i, p, key, value, expiry);
        true
    }

    /// Writes a new entry into the empty slot `i`, its place reserved (pending in the
    /// stripe's count word): counts it in the stripe's count (taking it off the pending
    /// places), then writes the slot.
    #[inline]
    fn write_reserved(&self, i: usize, p: &Place, key: &[u8], value: &[u8], expiry: u64) {
        // One more entry, one place less pending (the caller holds one).
        let w = self.count_word();
        self.store_count_word(w.wrapping_add(1).wrapping_sub(PENDING_ONE));
        let slot = self.slot(i);
        let odd = self.begin_write(&slot);
        failpoint::hit(Point::MapSlotWriting);
        store_words(slot.key(), key);
        store_words(slot.value(), value);
        // Relaxed: published by `end_write`.
        slot.expiry().store(expiry, Ordering::Relaxed);
        slot.stamp().store(self.tick(), Ordering::Relaxed);
        slot.meta().store(
            Meta::full(key.len(), value.len(), p.home, p.tag).0,
            Ordering::Relaxed,
        );
        self.end_write(&slot, odd);
        failpoint::hit(Point::MapSlotWritten);
    }

    /// Overwrites the value of the full slot `i` (meta `m`); `expiry` replaces the
    /// deadline if given. Inlined: a caller with a value of fixed size (a typed map, an
    /// `incr`) gets the copy specialised for it.
    #[inline(always)]
    pub(crate) fn write_value(&self, i: usize, m: Meta, value: &[u8], expiry: Option<u64>) {
        let slot = self.slot(i);
        let odd = self.begin_write(&slot);
        failpoint::hit(Point::MapSlotWriting);
        store_words(slot.value(), value);
        // Relaxed: published by `end_write`.
        if let Some(e) = expiry {
            slot.expiry().store(e, Ordering::Relaxed);
        }
        slot.stamp().store(self.tick(), Ordering::Relaxed);
        slot.meta()
            .store(m.with_value_len(value.len()).0, Ordering::Relaxed);
        self.end_write(&slot, odd);
    }

    /// Copies the entry of slot `from` into the slot `to` (a move's first half).
    pub(crate) fn copy_slot(&self, from: usize, to: usize) {
        let (src, dst) = (self.slot(from), self.slot(to));
        // Relaxed: we hold the lock.
        let m = Meta(src.meta().load(Ordering::Relaxed));
        let kw = m.key_len().div_ceil(8);
        let vw = m.value_len().div_ceil(8);
        let odd = self.begin_write(&dst);
        failpoint::hit(Point::MapCopying);
        copy_words(&src.key()[..kw.min(src.key().len())], dst.key());
        copy_words(&src.value()[..vw.min(src.value().len())], dst.value());
        for (a, b) in [
            (src.expiry(), dst.expiry()),
            (src.stamp(), dst.stamp()),
            (src.meta(), dst.meta()),
        ] {
            // Relaxed: published by `end_write`.
            b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.end_write(&dst, odd);
    }

    /// Empties slot `i`.
    pub(crate) fn clear_slot(&self, i: usize) {
        let slot = self.slot(i);
        let odd = self.begin_write(&slot);
        // Relaxed: published by `end_write`.
        slot.meta().store(0, Ordering::Relaxed);
        self.end_write(&slot, odd);
    }

    /// Removes the entry of slot `hole` by backward-shift deletion (Knuth's Algorithm R):
    /// every later entry of the probe run whose home is not between the hole and itself
    /// moves back into the hole, so no tombstone is left and probe runs stay as short as
    /// if the entry had never been inserted. A structure change: readers of the stripe
    /// retry around it.
    pub(crate) fn remove_at(&self, hole: usize) {
        let garbage = self.shift_out(hole);
        self.add_count(-1);
        if garbage {
            self.repair();
        }
    }

    /// [`remove_at`](Self::remove_at) that keeps the removed entry's place for a new entry
    /// of this stripe: the stripe's count goes one down and its pending places one up, the
    /// map's count stays (see [`write_held`](Self::write_held)). Whether the stripe still
    /// holds the place: `false` if the shift met garbage, whose repair gave the place back
    /// to the map's count (dropped the pending place and flagged the count).
    #[must_use]
    pub(crate) fn evict_keeping_place(&self, hole: usize) -> bool {
        let garbage = self.shift_out(hole);
        let (c, p) = self.counts();
        self.set_counts(c.wrapping_sub(1), p.wrapping_add(1));
        if garbage {
            self.repair();
        }
        !garbage
    }

    /// Hands a place this stripe holds (pending, see
    /// [`evict_keeping_place`](Self::evict_keeping_place)) to stripe `to`'s lock holder:
    /// `to` declares it pending, then this stripe lets it go; the map's count stays. Does
    /// nothing if this stripe holds no pending place (none to hand on).
    pub(crate) fn move_place_to(&self, to: &Locked<'_>) {
        if self.counts().1 == 0 {
            return;
        }
        let (c, p) = to.counts();
        to.set_counts(c, p.wrapping_add(1));
        // A version step between the two stores: a scan of the stripes' counts
        // (`resync_count`) that read `to`'s count word before the first and this stripe's
        // after the second sees the map's count changed, and gives up.
        self.map.add_to_count(0);
        failpoint::hit(Point::MapPlaceMoving);
        // Saturating: a peer may have rewritten the word since the check above.
        let (c, p) = self.counts();
        self.set_counts(c, p.saturating_sub(1));
    }

    /// Gives a place this stripe holds (pending) back to the map's count.
    pub(crate) fn release_held(&self) {
        let (c, p) = self.counts();
        if p != 0 {
            self.map.add_to_count(-1);
            self.set_counts(c, p - 1);
        }
    }

    /// The backward shift of [`remove_at`](Self::remove_at), counts untouched; whether it
    /// met garbage (the stripe then needs a repair).
    #[inline]
    fn shift_out(&self, hole: usize) -> bool {
        let sps = self.g.sps;
        let ss = self.begin_move();
        failpoint::hit(Point::MapShiftStarted);
        let mut i = hole;
        let mut j = next(hole, sps);
        let mut garbage = false;
        for _ in 1..sps {
            // Relaxed: we hold the lock.
            let m = Meta(self.slot(j).meta().load(Ordering::Relaxed));
            if !m.full_and_valid(self.g) {
                // Empty: the run ends. Garbage: the run may go on past it, with entries
                // the emptied hole now cuts off from their home; the repair after the
                // shift drops the garbage and re-homes them.
                garbage = !m.is_empty();
                break;
            }
            if dist(m.home(), j, sps) >= dist(i, j, sps) {
                self.copy_slot(j, i);
                failpoint::hit(Point::MapShiftCopied);
                i = j;
            }
            j = next(j, sps);
        }
        self.clear_slot(i);
        failpoint::hit(Point::MapRemoveCleared);
        self.end_move(ss);
        garbage
    }

    /// The stripe's count word, split: its entries and its pending places (see
    /// [`StripeHead::count`]).
    #[inline]
    pub(crate) fn counts(&self) -> (u64, u64) {
        // Relaxed: written only under the lock, which we hold.
        let w = self.head.count.load(Ordering::Relaxed);
        (w & STRIPE_COUNT_MASK, w >> PENDING_SHIFT)
    }

    /// Stores the stripe's count word, from its two fields.
    #[inline]
    pub(crate) fn set_counts(&self, count: u64, pending: u64) {
        let w = (count & STRIPE_COUNT_MASK) | (pending.min(STRIPE_COUNT_MASK) << PENDING_SHIFT);
        self.store_count_word(w);
    }

    /// The stripe's count word, raw.
    #[inline]
    fn count_word(&self) -> u64 {
        // Relaxed: written only under the lock, which we hold.
        self.head.count.load(Ordering::Relaxed)
    }

    /// Stores the stripe's count word, raw.
    #[inline]
    fn store_count_word(&self, w: u64) {
        // Release: pairs with the Acquire loads of `resync_count`: a scan that reads this
        // store sees every change of the map's count that this writer, and the stripe's
        // writers before it (through the lock), made before it.
        self.head.count.store(w, Ordering::Release);
    }

    /// Adds `d` to the stripe's count and the map's. While the two differ, the stripe's
    /// pending places cover the difference (`|d|` more, for the two stores): the map's
    /// count never holds more for the stripe than its count plus its pending places, which
    /// is what [`resync_count`](Self::resync_count) relies on. The order makes a kill
    /// between the two stores leave the map's count high, never low (an addition updates
    /// the map's count first, a subtraction the stripe's); the repair that follows drops
    /// the pending places and flags the map's count as possibly high.
    pub(crate) fn add_count(&self, d: i64) {
        // On the raw word: the count in the low bits, the pending places above (a count
        // below `|d|` is garbage, and so is what the borrow leaves; reads clamp both).
        let w = self.count_word();
        let n = d.unsigned_abs();
        let after = w.wrapping_add(d as u64);
        if d > 0 {
            self.store_count_word(w.wrapping_add(n << PENDING_SHIFT));
            self.map.add_to_count(d);
            failpoint::hit(Point::MapCountsHalf);
        } else {
            self.store_count_word(after.wrapping_add(n << PENDING_SHIFT));
            failpoint::hit(Point::MapCountsHalf);
            self.map.add_to_count(d);
        }
        self.store_count_word(after);
    }

    /// Reserves a place for a new entry in the map's count: `false` (nothing reserved) if
    /// the map holds `capacity` entries. Under the stripe's lock; on success the place is
    /// pending in the stripe's count word (see [`write_reserved`](Self::write_reserved)).
    #[inline]
    pub(crate) fn reserve(&self) -> bool {
        let w = self.count_word();
        self.store_count_word(w.wrapping_add(PENDING_ONE));
        // AcqRel: see `resync_count`, which pairs with it.
        let old = self
            .map
            .count_word()
            .fetch_add(COUNT_VERSION + 1, Ordering::AcqRel);
        if old & COUNT_MASK < self.g.options.capacity() as u64 {
            return true;
        }
        self.map.add_to_count(-1);
        self.store_count_word(w);
        false
    }

    /// Whether a new key may be added: the map holds fewer than `capacity` entries (a
    /// snapshot; [`reserve`](Self::reserve) decides).
    pub(crate) fn below_capacity(&self) -> bool {
        // Relaxed: a hint; `reserve` decides.
        let n = self.map.count_word().load(Ordering::Relaxed) & COUNT_MASK;
        n < self.g.options.capacity() as u64
    }

    /// The map reads full: if its count may hold places no entry uses (the slack flag,
    /// set by a repair that dropped pending places or recounted a stripe), lowers it to what
    /// the stripes account for ([`resync_count`](Self::resync_count)), up to `HEAL_TRIES`
    /// scans while concurrent writers change the count, within the operation's deadline.
    /// If a scan finds nothing to lower while the flag stays set, the places other stripes
    /// hold pending may be dead writers': it takes those stripes' locks over from dead
    /// holders (never waiting: [`take_over_pending`](Self::take_over_pending)), whose
    /// repairs give the places back, and scans again. Whether the map has room now.
    ///
    /// A scan that finds nothing to lower and nothing to take over is remembered (the
    /// count word it read, version included, in [`slack_seen_word`](ByteMap::slack_seen_word)):
    /// later full writers skip the scans while the count word is unchanged. Every change
    /// of the count, every repair that drops pending places (it bumps the version after
    /// the drop) and every repair while the flag is set changes the word.
    #[cold]
    pub(crate) fn heal_count(&self) -> bool {
        let seen = self.map.slack_seen_word();
        // Relaxed: a hint; a stale value costs a scan or skips one that would find
        // nothing (the count word equal: unchanged since that scan, see above).
        if seen.load(Ordering::Relaxed) == self.map.count_word().load(Ordering::Relaxed) {
            return self.below_capacity();
        }
        let mut probed = false;
        for _ in 0..HEAL_TRIES {
            // Relaxed: a hint; `resync_count` reads it again with Acquire.
            if self.map.slack_word().load(Ordering::Relaxed) == 0 || self.deadline_passed() {
                break;
            }
            match self.resync_count() {
                Resync::Unfinished => continue,
                Resync::Done => break,
                Resync::Kept(r) => {
                    // Relaxed: as above.
                    let flagged = self.map.slack_word().load(Ordering::Relaxed) != 0;
                    if !flagged || self.below_capacity() {
                        break;
                    }
                    if !probed && self.take_over_pending() {
                        probed = true;
                        continue;
                    }
                    // Relaxed: a hint (see above).
                    seen.store(r, Ordering::Relaxed);
                    break;
                }
            }
        }
        self.below_capacity()
    }

    /// Takes over, and so repairs, every other stripe that holds pending places and whose
    /// lock is free or held by a dead thread (a live holder's lock is probed once, never
    /// waited for: we hold ours). Each repair drops the stripe's pending places (a live
    /// writer's are never pending under a free lock). Whether any stripe was repaired.
    /// Stops at the operation's deadline (checked every 256 stripes).
    #[cold]
    fn take_over_pending(&self) -> bool {
        let g = self.g;
        let mut repaired = false;
        for k in 0..g.stripes {
            if k % 256 == 255 && self.deadline_passed() {
                break;
            }
            let head = self.map.head(g, k);
            // Relaxed: a hint; the lock orders what the repair reads.
            if k == self.s || head.count.load(Ordering::Relaxed) >> PENDING_SHIFT == 0 {
                continue;
            }
            // A deadline of now: takes a free lock, or one whose holder a probe finds dead
            // (after a brief bounded spin); never sleeps.
            if let Some(a) = head.lock.lock_until(Instant::now()) {
                let l = self.map.locked(g, k, a, self.dl);
                if a == Acquired::Consistent && l.counts().1 != 0 {
                    // Pending places under a free lock: no writer's; garbage.
                    l.repair();
                }
                repaired = true;
            }
        }
        repaired
    }

    fn deadline_passed(&self) -> bool {
        self.dl.is_some_and(|d| Instant::now() >= d)
    }

    /// Lowers the map's count to what the stripes account for, if it is above: the sum
    /// over the stripes of their count plus their pending places. Heals the places a
    /// repair's dropped pending places left in the count (a writer killed between its two
    /// count updates, or holding an evicted entry's place); clears the slack flag once a
    /// scan finds the count at most the sum of the stripes' entries. Runs under a stripe
    /// lock; one scan of the stripe heads, abandoned at the operation's deadline (checked
    /// every 256 stripes).
    ///
    /// Sound against concurrent writers: the map's count is read first (Acquire) and
    /// every change of it bumps its version, so the closing compare-exchange (or recheck)
    /// fails if any writer changed it meanwhile. A writer brackets each change of the
    /// map's count with Release stores of its stripe's count word: before, it adds the
    /// change to the pending places (and, for a subtraction, lowers the count); after, it
    /// takes it off. A scan that reads the closing store synchronises with it, so the
    /// writer's change of the map's count happened before the compare-exchange, which then
    /// fails unless the first read saw it; a first read that saw the change synchronises
    /// with it, so the scan reads the opening store or later. Either way each stripe's
    /// term is at least what the read count holds for it. Places moved between two
    /// stripes ([`move_place_to`](Self::move_place_to)) bump the version between their
    /// two stores.
    pub(crate) fn resync_count(&self) -> Resync {
        let g = self.g;
        // Acquire: pairs with the AcqRel increment of `flag_slack`: a scan that reads a
        // flag reads the count word stores the flagging repair made before it.
        let flag = self.map.slack_word().load(Ordering::Acquire);
        // Acquire: pairs with the AcqRel changes (`reserve`, `add_to_count`).
        let r = self.map.count_word().load(Ordering::Acquire);
        let sps = g.sps as u64;
        let mut bound: u64 = 0;
        let mut entries: u64 = 0;
        for k in 0..g.stripes {
            if k % 256 == 255 && self.deadline_passed() {
                return Resync::Unfinished;
            }
            // Acquire: pairs with the Release stores of `set_counts`.
            let w = self.map.head(g, k).count.load(Ordering::Acquire);
            // Clamped: the word may be garbage.
            let c = (w & STRIPE_COUNT_MASK).min(sps);
            entries += c;
            bound += c + (w >> PENDING_SHIFT).min(sps);
        }
        // The count the scan vouches for: the healed one, or the one read if the count did
        // not change since (read again; Acquire as the first read).
        let lowered = r & COUNT_MASK > bound;
        let settled = if lowered {
            let healed = (r & !COUNT_MASK).wrapping_add(COUNT_VERSION) | bound.min(COUNT_MASK);
            // AcqRel: as for `reserve`; a failure means a writer changed the count since
            // the read.
            let cas = self.map.count_word().compare_exchange(
                r,
                healed,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            if cas.is_err() {
                return Resync::Unfinished;
            }
            Some(healed)
        } else {
            (self.map.count_word().load(Ordering::Acquire) == r).then_some(r)
        };
        if flag != 0 && settled.is_some_and(|n| n & COUNT_MASK <= entries) {
            // No place is held in vain: the map's count holds at least a stripe's entries
            // for it (by the same argument, with the entries for the pending places), so
            // a count at most their sum holds no slack. AcqRel: as for the flag's load
            // above; a failure means a repair flagged again since: it stays set.
            let _ = self.map.slack_word().compare_exchange(
                flag,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        match settled {
            Some(r) if !lowered => Resync::Kept(r),
            _ => Resync::Done,
        }
    }
}

/// How far a [`resync_count`](Locked::resync_count) got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resync {
    /// The count is at most what the stripes accounted for during the scan (lowered to it
    /// if it was above).
    Done,
    /// [`Done`](Self::Done), nothing lowered, and the count word was this (read at the
    /// start and again at the end, unchanged).
    Kept(u64),
    /// A writer changed the count during the scan, or the deadline passed: nothing done.
    Unfinished,
}

/// Scans of the stripe heads a writer that finds the map full makes at most, while
/// concurrent writers keep changing the count ([`Locked::heal_count`]).
const HEAL_TRIES: usize = 4;

/// A stripe's count word ([`StripeHead::count`]): bits 0..32 its entries, 32..64 its
/// pending places.
pub(crate) const STRIPE_COUNT_MASK: u64 = (1 << 32) - 1;
const PENDING_SHIFT: u32 = 32;
/// One pending place in a stripe's count word.
const PENDING_ONE: u64 = 1 << PENDING_SHIFT;

/// The map's count word: bits 0..40 the count, 40..64 a version bumped by every change
/// (so that a compare-exchange against a value read earlier fails if anything changed
/// in between, even a change undone since).
pub(crate) const COUNT_MASK: u64 = (1 << 40) - 1;
/// One version step of the map's count word.
pub(crate) const COUNT_VERSION: u64 = 1 << 40;

impl ByteMap {
    /// Flags the map's count as possibly holding places no entry uses: a repair dropped a
    /// dead writer's pending places (see [`Locked::heal_count`]).
    pub(crate) fn flag_slack(&self) {
        // AcqRel: pairs with the Acquire load of `resync_count` (the Release half orders
        // the repair's count word stores before the flag).
        self.slack_word().fetch_add(1, Ordering::AcqRel);
    }

    /// Adds `d` to the map's count, bumping its version.
    #[inline]
    pub(crate) fn add_to_count(&self, d: i64) {
        // AcqRel: see `resync_count`.
        self.count_word()
            .fetch_add(COUNT_VERSION.wrapping_add(d as u64), Ordering::AcqRel);
    }

    /// The map's count (clamped to the map's slots: the word may hold garbage).
    #[inline]
    pub(crate) fn count(&self, g: &Geometry) -> usize {
        // Relaxed: a statistic.
        let n = self.count_word().load(Ordering::Relaxed) & COUNT_MASK;
        n.min(g.slots() as u64) as usize
    }
}

/// Stores `bytes` into `words` as little-endian zero-padded words.
#[inline]
pub(crate) fn store_words(words: &[AtomicU64], bytes: &[u8]) {
    for_each_word(bytes, |i, w| {
        if let Some(a) = words.get(i) {
            // Relaxed: published by the writer's closing sequence store.
            a.store(w, Ordering::Relaxed);
        }
    });
}

/// Copies `from` into the front of `to`, word by word.
#[inline]
fn copy_words(from: &[AtomicU64], to: &[AtomicU64]) {
    for (a, b) in from.iter().zip(to) {
        // Relaxed: as in `store_words`.
        b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::map::MapOptions;
    use crate::map::hash::{key_hash, place};
    use crate::map::layout::for_each_word;
    use crate::map::read::Clock;

    /// Every word of the map, for comparing side effects.
    fn words(m: &ByteMap) -> Vec<u64> {
        m.words()
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    /// A copy of `src` (same geometry).
    fn copy_of(src: &ByteMap, g: &Geometry) -> Box<ByteMap> {
        let dst = ByteMap::alloc(g);
        for (a, b) in src.words().iter().zip(dst.words()) {
            b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        dst
    }

    /// Writes an entry into slot `i` of stripe 0, whatever the slot held.
    fn put(m: &ByteMap, g: &Geometry, i: usize, key: &[u8], meta: Meta, expiry: u64, seq: u64) {
        let slot = m.slot(g, 0, i);
        slot.seq().store(seq, Ordering::Relaxed);
        slot.meta().store(meta.0, Ordering::Relaxed);
        slot.expiry().store(expiry, Ordering::Relaxed);
        for w in slot.key() {
            w.store(0, Ordering::Relaxed);
        }
        for_each_word(key, |j, w| slot.key()[j].store(w, Ordering::Relaxed));
    }

    /// The writers' inline look at the home slot (`find_at_home`, in `find` and
    /// `find_room`) repeats the probe loop's checks: on stripes of live, expired, torn and
    /// garbage slots, with a home slot crafted to fail each check in turn, `find` and
    /// `find_room` return what the probe loop alone returns and leave the same words.
    #[test]
    fn find_at_home_agrees_with_the_probe_loop() {
        let base = ByteMap::with_seed(MapOptions::new(12).key_max(16).value_max(16), [7; 16])
            .expect("map");
        let g = base.geometry().expect("geometry");
        assert_eq!(g.stripes, 1);
        let keys: Vec<Vec<u8>> = (0..40u32).map(|k| format!("key{k}").into_bytes()).collect();
        let now = 1_000_000u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rng = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut at_home = 0;
        for _ in 0..20_000 {
            let m = copy_of(&base, &g);
            m.count_word().store(rng(14), Ordering::Relaxed);
            for i in 0..g.sps {
                match rng(6) {
                    0 | 1 => {}
                    2..=4 => {
                        let k = &keys[rng(keys.len() as u64) as usize];
                        let p = place(&g, key_hash(&g, k));
                        let meta = Meta::full(k.len(), rng(17) as usize, p.home, p.tag);
                        let expiry = [0, now - 1, now, now + 1][rng(4) as usize];
                        put(&m, &g, i, k, meta, expiry, 2 * rng(3));
                    }
                    _ => {
                        let s = m.slot(&g, 0, i);
                        for w in [s.seq(), s.meta(), s.expiry()] {
                            w.store(rng(u64::MAX), Ordering::Relaxed);
                        }
                    }
                }
            }
            let k = &keys[rng(keys.len() as u64) as usize];
            let p = place(&g, key_hash(&g, k));
            if rng(4) != 0 {
                let home = if rng(8) == 0 {
                    rng(256) as usize
                } else {
                    p.home
                };
                let mut meta = Meta::full(k.len(), rng(20) as usize, home, p.tag);
                if rng(4) == 0 {
                    meta.0 ^= 1 << rng(64);
                }
                let expiry = [0, now - 1, now, now + 1, rng(u64::MAX)][rng(5) as usize];
                let seq = [0, 1, 2, 3, rng(u64::MAX)][rng(5) as usize];
                put(&m, &g, p.home, k, meta, expiry, seq);
                if rng(8) == 0 {
                    let s = m.slot(&g, 0, p.home);
                    let j = rng(s.key().len() as u64) as usize;
                    s.key()[j].fetch_xor(1 << rng(64), Ordering::Relaxed);
                }
            }
            let probe = copy_of(&m, &g);
            let expected = {
                let l = probe.lock_stripe(&g, 0);
                let f = l.find_probing(&p, k, &mut Clock::at(now));
                let hit = l.find_at_home(&p, k, &mut Clock::at(now));
                if let Some(h) = hit {
                    at_home += 1;
                    assert_eq!(f, Ok(h), "a home hit the probe loop does not return");
                }
                f
            };
            let inline = copy_of(&m, &g);
            let got = inline.lock_stripe(&g, 0).find(&p, k, &mut Clock::at(now));
            assert_eq!(got, expected);
            assert_eq!(words(&inline), words(&probe), "find's side effects differ");
        }
        assert!(
            at_home > 1_000,
            "too few home hits to test anything: {at_home}"
        );
    }
}
