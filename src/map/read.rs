//! The reader's side: optimistic, validated lookups that write nothing shared (the
//! "Readers" part of the protocol in the [module docs](super)).

use crate::sync::{Ordering, fence, spin_loop};
use crate::wait::{SPIN_LIMIT, Slices};

use super::error::MapError;
use super::hash::{Place, place, sip};
use super::layout::{ByteMap, Meta, copy_out, expired, key_equals, now_ns};
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
    pub(crate) fn now(&mut self) -> u64 {
        *self.0.get_or_insert_with(now_ns)
    }
    /// Whether `expiry` has passed.
    pub(crate) fn expired(&mut self, expiry: u64) -> bool {
        expiry != 0 && expired(expiry, self.now())
    }
}

impl ByteMap {
    /// The validated geometry and the place of `key`.
    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> Result<(Geometry, Place), MapError> {
        let g = self.geometry()?;
        if key.len() > g.options.key_max_len() {
            return Err(MapError::KeyTooLong {
                len: key.len(),
                max: g.options.key_max_len(),
            });
        }
        let p = place(&g, sip(&g.seed, key));
        Ok((g, p))
    }

    /// Looks `key` up; if found (and not expired) and `out` is given, copies its value
    /// there (resized to the value's length). Whether it was found.
    pub(crate) fn read(&self, key: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<bool, MapError> {
        let (g, p) = self.locate(key)?;
        let mut clock = Clock::new();
        let mut spins = 0;
        let mut changes = 0;
        let mut slices: Option<Slices> = None;
        loop {
            match self.try_read(&g, &p, key, &mut clock, out.as_deref_mut()) {
                Ok(found) => return Ok(found),
                Err(Raced::Changed) => {
                    changes += 1;
                    if changes > READ_RETRIES {
                        return self.read_locked(&g, &p, key, &mut clock, out);
                    }
                }
                Err(Raced::Busy) => {
                    // (Under loom `SPIN_LIMIT` is 0: no spinning.)
                    #[allow(clippy::absurd_extreme_comparisons)]
                    if spins < SPIN_LIMIT {
                        spins += 1;
                        spin_loop();
                        continue;
                    }
                    // A write is taking long: is its writer alive? Probed at once, then
                    // once per slice (the crate's wait policy, `wait.rs`).
                    let head = self.head(&g, p.stripe);
                    let first = slices.is_none();
                    let slices = slices.get_or_insert_with(Slices::for_holder);
                    let mut forced = first;
                    match head.lock.owner() {
                        Some(tid)
                            if !(slices.probe_now(&mut forced) && slices.holder_is_dead(tid)) =>
                        {
                            pause(slices)
                        }
                        // Dead, or no holder beside an odd sequence (a write that ended
                        // just now, or garbage): the lock takes over and repairs if needed.
                        _ => return self.read_locked(&g, &p, key, &mut clock, out),
                    }
                }
            }
        }
    }

    /// One optimistic attempt (see the protocol in the [module docs](super)).
    #[inline]
    pub(crate) fn try_read(
        &self,
        g: &Geometry,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<bool, Raced> {
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
            if m.full_and_valid(g)
                && m.tag() == p.tag
                && m.key_len() == key.len()
                && key_equals(slot.key(), key)
            {
                // Relaxed: validated by the recheck below.
                let expiry = slot.expiry().load(Ordering::Relaxed);
                if let Some(out) = out.as_deref_mut() {
                    out.clear();
                    out.resize(m.value_len(), 0);
                    copy_out(slot.value(), out);
                }
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
        out: Option<&mut Vec<u8>>,
    ) -> Result<bool, MapError> {
        let l = self.lock_stripe(g, p.stripe);
        match l.find_readonly(p, key, clock)? {
            Some((i, m)) => {
                if let Some(out) = out {
                    l.copy_value(i, m, out);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Sleeps one slice of a wait for a live writer (a yield under loom).
fn pause(slices: &mut Slices) {
    #[cfg(not(loom))]
    if let Some(Some(d)) = slices.next(None) {
        std::thread::sleep(d);
        return;
    }
    let _ = slices;
    spin_loop();
}
