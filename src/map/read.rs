//! The reader's side: optimistic, validated lookups that write nothing shared (the
//! "Readers" part of the protocol in the [module docs](super)).

use crate::sync::{AtomicU64, Ordering, fence, spin_loop};
use core::mem::MaybeUninit;
use std::time::Instant;

use crate::wait::{SPIN_LIMIT, Slices};

use super::clock::expiry_now_ns;
use super::error::MapError;
use super::hash::{Place, key_hash, place};
use super::layout::{ByteMap, Meta, copy_out, expired, key_equals};
use super::options::Geometry;

/// Optimistic attempts that raced a writer (a sequence that changed under the copy) before
/// a reader falls back to reading under the stripe lock.
pub(crate) const READ_RETRIES: u32 = 64;

/// Why an optimistic attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Raced {
    /// A sequence was odd: a writer is in the middle of a write (or died there).
    Busy,
    /// A sequence changed between the start and the end of the copy.
    Changed,
}

/// The next slot of a stripe of `sps` slots, wrapping.
#[inline]
pub(crate) fn next(i: usize, sps: usize) -> usize {
    if i + 1 >= sps { 0 } else { i + 1 }
}

/// The clock, read at most once per operation and only for an entry with a deadline.
pub(crate) struct Clock(Option<u64>);

impl Clock {
    pub(crate) fn new() -> Self {
        Clock(None)
    }
    /// A clock that reads `now` (to make every deadline passed: a map from another boot).
    #[cfg(not(loom))]
    pub(crate) fn at(now: u64) -> Self {
        Clock(Some(now))
    }
    pub(crate) fn now(&mut self) -> u64 {
        *self.0.get_or_insert_with(expiry_now_ns)
    }
    /// Whether `expiry` has passed.
    #[inline]
    pub(crate) fn expired(&mut self, expiry: u64) -> bool {
        expiry != 0 && expired(expiry, self.now())
    }
}

impl ByteMap {
    /// The map's geometry: `geo` if given (a [`ByteMapHandle`](super::ByteMapHandle)'s
    /// copy, validated when the handle was made), else validated from the header now and
    /// kept in `tmp`.
    #[inline(always)]
    pub(crate) fn geometry_in<'s>(
        &self,
        geo: Option<&'s Geometry>,
        tmp: &'s mut Option<Geometry>,
    ) -> Result<&'s Geometry, MapError> {
        match geo {
            Some(g) => Ok(g),
            None => Ok(tmp.insert(self.geometry()?)),
        }
    }
}

/// The place of `key` in a map of geometry `g`; an error for a key longer than the map
/// takes.
#[inline(always)]
pub(crate) fn place_in(g: &Geometry, key: &[u8]) -> Result<Place, MapError> {
    if key.len() > g.options.key_max_len() {
        return Err(MapError::KeyTooLong {
            len: key.len(),
            max: g.options.key_max_len(),
        });
    }
    Ok(place(g, key_hash(g, key)))
}

impl ByteMap {
    /// Looks `key` up; if found (and not expired), copies its value into `out` (see
    /// [`Out`]). Whether it was found. Gives up at `dl` (if any) while a writer holds up
    /// the lookup.
    ///
    /// The first optimistic attempt is inline; an attempt that raced a writer continues out
    /// of line ([`read_raced`](Self::read_raced)), so that the uncontended lookup carries
    /// none of the retry loop's state.
    #[inline(always)]
    pub(crate) fn read(
        &self,
        geo: Option<&Geometry>,
        key: &[u8],
        mut out: Out<'_>,
        dl: Option<Instant>,
    ) -> Result<bool, MapError> {
        let mut tmp = None;
        let g = self.geometry_in(geo, &mut tmp)?;
        let p = place_in(g, key)?;
        let mut clock = Clock::new();
        match self.try_read(g, &p, key, &mut clock, out.reborrow()) {
            Ok(found) => Ok(found),
            Err(raced) => self.read_raced(geo, key, clock, out, dl, raced),
        }
    }

    /// The rest of [`read`](Self::read) after an attempt that raced a writer: retries,
    /// a bounded spin, probes of a long writer, and the fallback under the stripe lock.
    /// (Without a handle's geometry `geo` it validates the header again rather than take
    /// the first attempt's, so that the inline attempt need not keep it in memory for
    /// this call.)
    #[cold]
    #[inline(never)]
    fn read_raced(
        &self,
        geo: Option<&Geometry>,
        key: &[u8],
        mut clock: Clock,
        mut out: Out<'_>,
        dl: Option<Instant>,
        first: Raced,
    ) -> Result<bool, MapError> {
        let mut tmp = None;
        let g = self.geometry_in(geo, &mut tmp)?;
        let p = &place_in(g, key)?;
        let mut spins = 0;
        let mut changes = 0;
        let mut slices: Option<Slices> = None;
        let mut raced = first;
        loop {
            match raced {
                Raced::Changed => {
                    changes += 1;
                    if changes > READ_RETRIES {
                        return self.read_locked(g, p, key, &mut clock, out, dl);
                    }
                }
                Raced::Busy => {
                    // (Under loom `SPIN_LIMIT` is 0: no spinning.)
                    #[allow(clippy::absurd_extreme_comparisons)]
                    if spins < SPIN_LIMIT {
                        spins += 1;
                        spin_loop();
                    } else {
                        // A write is taking long: is its writer alive? Probed at once, then
                        // once per slice (the crate's wait policy, `wait.rs`).
                        let head = self.head(g, p.stripe);
                        let first = slices.is_none();
                        let slices = slices.get_or_insert_with(Slices::for_holder);
                        let mut forced = first;
                        match head.lock.holder() {
                            Some(holder)
                                if !(slices.probe_now(&mut forced)
                                    && slices.stamped_holder_is_dead(holder)) =>
                            {
                                if !pause(slices, dl) {
                                    return Err(MapError::Timeout);
                                }
                            }
                            // Dead, or no holder beside an odd sequence (a write that ended
                            // just now, or garbage): the lock takes over and repairs if
                            // needed.
                            _ => return self.read_locked(g, p, key, &mut clock, out, dl),
                        }
                    }
                }
            }
            match self.try_read(g, p, key, &mut clock, out.reborrow()) {
                Ok(found) => return Ok(found),
                Err(r) => raced = r,
            }
        }
    }

    /// One optimistic attempt (see the protocol in the [module docs](super)).
    #[inline(always)]
    pub(crate) fn try_read(
        &self,
        g: &Geometry,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        mut out: Out<'_>,
    ) -> Result<bool, Raced> {
        // `place_in` bounded the key: `is_full_with` below relies on it.
        debug_assert!(key.len() <= g.options.key_max_len());
        let head = self.head(g, p.stripe);
        // Acquire pairs with the Release store that ends a structure change (`end_move`):
        // the slots we read next are at least as new as that change.
        let ss = head.seq.load(Ordering::Acquire);
        if ss & 1 != 0 {
            return Err(Raced::Busy);
        }
        let mut i = p.home;
        let mut found = false;
        for _ in 0..g.sps {
            let slot = self.slot(g, p.stripe, i);
            // Acquire pairs with the Release store that ends a slot write (`end_write`).
            let q = slot.seq().load(Ordering::Acquire);
            if q & 1 != 0 {
                return Err(Raced::Busy);
            }
            // Relaxed: validated by the sequence rechecks below.
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            if m.is_empty() {
                break;
            }
            // (Of `full_and_valid`, a meta of this key's tag and length needs only its
            // value length and home checked: its state, reserved bits and key length are
            // the ones `is_full_with` compared. The home is checked, though a reader does
            // not use it, so that readers and writers agree on a corrupt slot: absent.)
            if m.is_full_with(p.tag, key.len())
                && m.value_len() <= g.options.value_max_len()
                && m.home() < g.sps
                && key_equals(slot.key(), key)
            {
                // Relaxed: validated by the recheck below.
                let expiry = slot.expiry().load(Ordering::Relaxed);
                out.fill(slot.value(), m.value_len());
                // Acquire fence: if a load above saw a store of a write that started after
                // `q`, the writer's Release fence after its odd store (`begin_write`)
                // synchronises with this fence, and the recheck sees the odd value or later.
                fence(Ordering::Acquire);
                // Relaxed: ordered by the fence above.
                if slot.seq().load(Ordering::Relaxed) != q {
                    return Err(Raced::Changed);
                }
                found = !clock.expired(expiry);
                break;
            }
            // Not this key (a torn meta or key of a slot being filled reads as another
            // key: the fill has not happened yet for this reader).
            i = next(i, g.sps);
        }
        // Acquire fence: as above, for the stripe's structure sequence (`begin_move`).
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        if head.seq.load(Ordering::Relaxed) != ss {
            return Err(Raced::Changed);
        }
        Ok(found)
    }

    /// The fallback: the lookup under the stripe lock (which repairs a dead writer's
    /// leftovers first).
    #[cold]
    fn read_locked(
        &self,
        g: &Geometry,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        mut out: Out<'_>,
        dl: Option<Instant>,
    ) -> Result<bool, MapError> {
        let l = self.lock_stripe_until(g, p.stripe, dl)?;
        match l.find_readonly(p, key, clock)? {
            Some((i, m)) => {
                out.fill(l.slot(i).value(), m.value_len());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Where a read copies the value it found.
pub(crate) enum Out<'a> {
    /// Nowhere (`contains`).
    Nothing,
    /// Into this vector, resized to the value's length.
    Vec(&'a mut Vec<u8>),
    /// Into the front of these words (the value's bytes in little-endian order, its last
    /// word as stored, with the slot's padding); the value's length is stored in the
    /// `usize`. A value longer than the words is not copied at all (the caller reads it
    /// again into a vector). The words need not be initialised: after a successful read
    /// of `len` bytes with `len <= 8 * words.len()`, the first `len.div_ceil(8)` are.
    Words(&'a mut [MaybeUninit<u64>], &'a mut usize),
}

impl Out<'_> {
    /// The same destination, borrowed for one attempt.
    #[inline]
    fn reborrow(&mut self) -> Out<'_> {
        match self {
            Out::Nothing => Out::Nothing,
            Out::Vec(v) => Out::Vec(v),
            Out::Words(b, n) => Out::Words(b, n),
        }
    }

    /// Copies a value of `len` bytes (at most the words' bytes: a validated meta's
    /// length) out of `words`.
    #[inline(always)]
    fn fill(&mut self, words: &[AtomicU64], len: usize) {
        match self {
            Out::Nothing => {}
            Out::Vec(v) => {
                v.clear();
                v.resize(len, 0);
                copy_out(words, v);
            }
            Out::Words(b, n) => {
                let need = len.div_ceil(8);
                match (b.get_mut(..need), words.get(..need)) {
                    (Some(dst), Some(src)) => {
                        **n = len;
                        for (d, w) in dst.iter_mut().zip(src) {
                            // Relaxed: the caller's sequence recheck (or its lock) orders
                            // the copy.
                            d.write(w.load(Ordering::Relaxed));
                        }
                    }
                    // Too long for the words (or, were the caller's length check ever
                    // wrong, for the slot): nothing copied, and a length no buffer holds.
                    _ => **n = usize::MAX,
                }
            }
        }
    }
}

/// Sleeps one slice of a wait for a live writer (a yield under loom); `false` (no sleep)
/// if `dl` has passed.
fn pause(slices: &mut Slices, dl: Option<Instant>) -> bool {
    let Some(slice) = slices.next(dl) else {
        return false;
    };
    #[cfg(not(loom))]
    if let Some(d) = slice {
        std::thread::sleep(d);
        return true;
    }
    let _ = slice;
    spin_loop();
    true
}
