//! Repair of a stripe whose writer died mid-protocol (or that holds garbage): the
//! "Repair" part of the [module docs](super). Runs under the stripe lock, inside a
//! structure change, and is itself crash-safe: every step leaves a state the next repair
//! handles.

use crate::failpoint::{self, Point};
use crate::sync::Ordering;

use super::hash::{key_hash, place};
use super::layout::{Meta, copy_out};
use super::read::next;
use super::write::{Locked, dist};

impl Locked<'_> {
    /// Repairs the stripe: drops torn and invalid slots, drops duplicate copies of an entry
    /// left by an interrupted move, re-homes entries cut off from their home by a dropped
    /// slot, and recounts. Then marks the lock consistent.
    #[cold]
    pub(crate) fn repair(&self) {
        let sps = self.g.sps;
        // A structure change for readers; keeps an odd sequence a dead writer left (its
        // Release fence orders the odd value before every slot store below, also when the
        // value was already odd).
        let ss = self.begin_move();
        let mut key = vec![0u8; self.g.options.key_max_len()];

        // 1. Drop torn slots (odd sequence: a write cut short) and slots whose meta or key
        //    no writer makes (wrong stripe, home or tag for the key's hash: garbage).
        for i in 0..sps {
            let slot = self.slot(i);
            // Relaxed: we hold the lock.
            let q = slot.seq().load(Ordering::Relaxed);
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            let keep = q & 1 == 0
                && (m.is_empty()
                    || (m.full_and_valid(self.g) && {
                        let k = &mut key[..m.key_len()];
                        copy_out(slot.key(), k);
                        let p = place(self.g, key_hash(self.g, k));
                        p.stripe == self.s && p.home == m.home() && p.tag == m.tag()
                    }));
            if !keep {
                if q & 1 != 0 {
                    // A dead writer's odd sequence: empty the slot, then close its write.
                    // Relaxed: published by the Release store below.
                    slot.meta().store(0, Ordering::Relaxed);
                    // Release: as in `end_write`.
                    slot.seq().store(q.wrapping_add(1), Ordering::Release);
                } else {
                    self.clear_slot(i);
                }
            }
        }

        // 2. Drop the second of two copies of one key (a move copies before it clears the
        //    source): the copies are identical, either may go.
        for i in 0..sps {
            let a = self.slot(i);
            // Relaxed: we hold the lock.
            let ma = Meta(a.meta().load(Ordering::Relaxed));
            // Validated again: another process may have rewritten it since step 1.
            if !ma.full_and_valid(self.g) {
                continue;
            }
            let k = &mut key[..ma.key_len()];
            copy_out(a.key(), k);
            for j in i + 1..sps {
                let b = self.slot(j);
                // Relaxed: as above.
                let mb = Meta(b.meta().load(Ordering::Relaxed));
                if !mb.is_empty()
                    && mb.tag() == ma.tag()
                    && mb.key_len() == ma.key_len()
                    && super::layout::key_equals(b.key(), k)
                {
                    self.clear_slot(j);
                }
            }
        }

        // 3. Re-home: an entry with an empty slot between its home and itself is
        //    unreachable by probing; move it to the first empty slot of its run. Each
        //    pass moves entries only backwards along their runs, so the passes end.
        for _ in 0..=sps {
            let mut moved = false;
            for i in 0..sps {
                // Relaxed: as above.
                let m = Meta(self.slot(i).meta().load(Ordering::Relaxed));
                // Validated again (see step 2): `home` indexes the stripe.
                if !m.full_and_valid(self.g) {
                    continue;
                }
                let mut e = m.home();
                let mut target = None;
                for _ in 0..dist(m.home(), i, sps) {
                    // Relaxed: as above.
                    if self.slot(e).meta().load(Ordering::Relaxed) == 0 {
                        target = Some(e);
                        break;
                    }
                    e = next(e, sps);
                }
                if let Some(t) = target {
                    self.copy_slot(i, t);
                    failpoint::hit(Point::MapRepairMoved);
                    self.clear_slot(i);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }

        // 4. Recount; bring the map's count along by the difference. A recorded count that
        //    disagrees with the slots is a dead writer's half update or garbage (a garbage
        //    count moves the map's by garbage): flag the map's count as possibly high first.
        let live = (0..sps)
            // Relaxed: as above.
            .filter(|&i| self.slot(i).meta().load(Ordering::Relaxed) != 0)
            .count() as u64;
        let (recorded, pending) = self.counts();
        if live != recorded {
            self.map.flag_slack();
            self.add_count(live.wrapping_sub(recorded) as i64);
        }
        // 5. Drop the pending places a dead writer left (the map's count may or may not
        //    hold them): flag the count as possibly high first (a kill between the two
        //    leaves the places pending for the next repair, the lock still naming a dead
        //    thread), then drop them, then bump the count's version (so that a scan that
        //    found nothing to lower before the drop is not trusted after it; see
        //    `heal_count`).
        if pending != 0 {
            self.map.flag_slack();
            failpoint::hit(Point::MapRepairFlagged);
            self.set_counts(live, 0);
            failpoint::hit(Point::MapRepairDropped);
        }
        // Relaxed: a hint. While the flag is set, a version step invalidates a scan that
        // found nothing to lower (`heal_count`), whether this repair dropped places or one
        // killed after its drop (before this step) left them dropped.
        if pending != 0 || self.map.slack_word().load(Ordering::Relaxed) != 0 {
            self.map.add_to_count(0);
        }
        self.end_move(ss);
        // 6. Lower the map's count to what the stripes account for, if it may be high (the
        //    flag) or reads full (a garbage-high count: see "Hostile bytes"); outside the
        //    structure change, so readers of the stripe do not wait for the scan.
        //    `heal_count` tries again when the map reads full.
        // Relaxed: a hint; `resync_count` reads it again with Acquire.
        if self.map.slack_word().load(Ordering::Relaxed) != 0 || !self.below_capacity() {
            let _ = self.resync_count();
        }
        self.head.lock.mark_consistent();
    }
}
