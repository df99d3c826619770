//! The writer's side: the stripe lock, finding a key's slot under it, and the slot writes
//! and moves of the protocol (the "Writers" part of the [module docs](super)).

use crate::failpoint::{self, Point};
use crate::lock::Acquired;
use crate::sync::{AtomicU64, Ordering, fence};

use super::error::MapError;
use super::hash::Place;
use super::layout::{ByteMap, Meta, StripeHead, copy_out, for_each_word, key_equals};
use super::options::Geometry;
use super::read::{Clock, next};

/// A stripe's lock, held; unlocks on drop. All slot writes of the stripe go through it.
pub(crate) struct Locked<'a> {
    pub(crate) map: &'a ByteMap,
    pub(crate) g: Geometry,
    pub(crate) s: usize,
    pub(crate) head: &'a StripeHead,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
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

/// Cyclic distance from slot `a` forward to slot `b` in a stripe of `sps` slots.
#[inline]
pub(crate) fn dist(a: usize, b: usize, sps: usize) -> usize {
    if b >= a { b - a } else { b + sps - a }
}

impl ByteMap {
    /// Locks stripe `s`, repairing it first if its last writer died mid-protocol (or its
    /// structure sequence is odd without a writer).
    pub(crate) fn lock_stripe(&self, g: &Geometry, s: usize) -> Locked<'_> {
        let head = self.head(g, s);
        let a = head.lock.lock();
        let l = Locked {
            map: self,
            g: *g,
            s,
            head,
        };
        // Relaxed: we hold the lock; the last writer's stores are visible through it.
        if a == Acquired::OwnerDied || head.seq.load(Ordering::Relaxed) & 1 != 0 {
            l.repair();
        }
        l
    }
}

impl ByteMap {
    /// [`lock_stripe`](Self::lock_stripe) without waiting: `None` if the lock is held.
    pub(crate) fn try_lock_stripe(&self, g: &Geometry, s: usize) -> Option<Locked<'_>> {
        let head = self.head(g, s);
        let a = head.lock.try_lock()?;
        let l = Locked {
            map: self,
            g: *g,
            s,
            head,
        };
        // Relaxed: as in `lock_stripe`.
        if a == Acquired::OwnerDied || head.seq.load(Ordering::Relaxed) & 1 != 0 {
            l.repair();
        }
        Some(l)
    }
}

impl<'a> Locked<'a> {
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> super::layout::Slot<'a> {
        self.map.slot(&self.g, self.s, i)
    }

    /// Finds `key` (at `p`), reclaiming expired entries met on its probe run; repairs the
    /// stripe once if it meets bytes no writer leaves.
    pub(crate) fn find(&self, p: &Place, key: &[u8], clock: &mut Clock) -> Result<Find, MapError> {
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

    fn find_once(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        reclaim: bool,
    ) -> Result<Find, NeedsRepair> {
        let sps = self.g.sps;
        // Every reclaim removes one entry, so this restarts at most `sps` times.
        'restart: for _ in 0..=sps {
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
                if !m.full_and_valid(&self.g) {
                    return Err(NeedsRepair);
                }
                // Relaxed: as above.
                let live = !clock.expired(slot.expiry().load(Ordering::Relaxed));
                let ours =
                    m.tag() == p.tag && m.key_len() == key.len() && key_equals(slot.key(), key);
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

    /// Copies slot `i`'s value (meta `m`) into `out`.
    pub(crate) fn copy_value(&self, i: usize, m: Meta, out: &mut Vec<u8>) {
        out.clear();
        out.resize(m.value_len(), 0);
        copy_out(self.slot(i).value(), out);
    }

    /// The value of slot `i` as a fresh vector.
    pub(crate) fn value_vec(&self, i: usize, m: Meta) -> Vec<u8> {
        let mut v = Vec::new();
        self.copy_value(i, m, &mut v);
        v
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

    /// Writes a new entry into the empty slot `i`, then counts it.
    pub(crate) fn write_new(
        &self,
        i: usize,
        p: &Place,
        key: &[u8],
        value: &[u8],
        expiry: u64,
        now: u64,
    ) {
        let slot = self.slot(i);
        let odd = self.begin_write(&slot);
        failpoint::hit(Point::MapSlotWriting);
        store_words(slot.key(), key);
        store_words(slot.value(), value);
        // Relaxed: published by `end_write`.
        slot.expiry().store(expiry, Ordering::Relaxed);
        slot.stamp().store(now, Ordering::Relaxed);
        slot.meta().store(
            Meta::full(key.len(), value.len(), p.home, p.tag).0,
            Ordering::Relaxed,
        );
        self.end_write(&slot, odd);
        failpoint::hit(Point::MapSlotWritten);
        self.add_count(1);
    }

    /// Overwrites the value of the full slot `i` (meta `m`); `expiry` replaces the
    /// deadline if given.
    pub(crate) fn write_value(
        &self,
        i: usize,
        m: Meta,
        value: &[u8],
        expiry: Option<u64>,
        now: u64,
    ) {
        let slot = self.slot(i);
        let odd = self.begin_write(&slot);
        failpoint::hit(Point::MapSlotWriting);
        store_words(slot.value(), value);
        // Relaxed: published by `end_write`.
        if let Some(e) = expiry {
            slot.expiry().store(e, Ordering::Relaxed);
        }
        slot.stamp().store(now, Ordering::Relaxed);
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
        let sps = self.g.sps;
        let ss = self.begin_move();
        failpoint::hit(Point::MapShiftStarted);
        let mut i = hole;
        let mut j = next(hole, sps);
        for _ in 1..sps {
            // Relaxed: we hold the lock.
            let m = Meta(self.slot(j).meta().load(Ordering::Relaxed));
            if !m.full_and_valid(&self.g) {
                // Empty (the run ends) or garbage (a later repair re-homes around it).
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
        self.add_count(-1);
    }

    /// Adds `d` to the stripe's count and the map's.
    pub(crate) fn add_count(&self, d: i64) {
        // Relaxed: the stripe count is written under the lock; the map's count is a
        // statistic and the capacity check's input, read without ordering anything.
        let c = self.head.count.load(Ordering::Relaxed);
        self.head
            .count
            .store(c.wrapping_add(d as u64), Ordering::Relaxed);
        self.map.count_word().fetch_add(d as u64, Ordering::Relaxed);
    }

    /// Whether a new key may be added: the map holds fewer than `capacity` entries.
    pub(crate) fn below_capacity(&self) -> bool {
        // Relaxed: see `add_count`.
        let n = self.map.count_word().load(Ordering::Relaxed);
        (n as i64) < self.g.options.capacity() as i64
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
