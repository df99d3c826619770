//! The protocol on directory entries behind [`Region::get`] and the `get_or_*` calls:
//! scanning, claiming, initialising and publishing an entry, and taking over one whose
//! creator died.
//!
//! # Protocol
//!
//! Each entry has a state word (layout in [`state`](super::format::state)). To get or
//! create `name`, a process scans the directory from entry 0:
//!
//! - a `READY`, `INITIALISING` or `REMOVING` entry has a published name: if it is `name`,
//!   the type is checked and the object returned once `READY` (after the caller marks
//!   itself a user of it: [`remove`](super::remove)); until then the process waits
//!   (except on a `REMOVING` entry whose object this handle already holds: that removal
//!   will be refused, and the object is returned at once); otherwise the scan moves on.
//!   The entry's fields are copied only while its generation holds (even, and the same
//!   before and after); an entry whose copy keeps failing while its state word holds
//!   (a peer's odd generation) is skipped after a bounded number of tries;
//! - `CLAIMED` and `FREE` entries publish no name: the scan moves on;
//! - the first `EMPTY` entry (or the end of the directory) proves `name` absent. A
//!   creator then takes the region's **creation lock** (a word in the header holding its
//!   TID and a generation that every acquisition bumps, taken by CAS; the header's holder
//!   word records its start time), scans the directory again under it, and if `name` is
//!   still absent
//!   claims the first `FREE` entry, else the first `EMPTY` one, by CAS (`-> CLAIMED`),
//!   writes name and type, places the object in the first gap of free space that fits
//!   ([`remove`](super::remove)'s Space), publishes the name (`INITIALISING`, release) and
//!   releases the lock; then it zeroes the object, runs `init`, and publishes the object
//!   (`READY`, release).
//!
//! Names stay unique because every name is published under the creation lock, whose
//! holder has seen every name published before (the lock's release/acquire orders them),
//! and entries reused after a removal are claimed only under it. The `EMPTY` entries
//! stay a suffix of the directory (an entry becomes `FREE`, never `EMPTY`, once used), so
//! a lookup without the lock may stop at the first one.
//!
//! Waiting spins briefly with loads, then sets the `WAITERS` bit and futex-waits in
//! 10 ms slices; between slices it probes the owner, the thread recorded in the word
//! ([`Region::owner_is_dead`]): by its TID (`kill(tid, 0)` and `/proc/<tid>/stat`), then
//! by its process (the `Tgid` of `/proc/<tid>/status`), which must hold a live word of
//! the region's attach table ([`lifecycle`](super::lifecycle)) with, for an
//! `INITIALISING` owner, its bit set in the entry's user bitmap. A creator sets that bit
//! before it publishes the name, and a taker before its takeover CAS, and both keep it
//! (and their word) while they live; so a thread that reused a dead owner's TID, in a
//! process that holds no such word, reads dead. An entry whose owner died in
//! `INITIALISING` is taken over by CAS on the state word (keeping the phase, replacing the
//! owner) and restarted from zeroed bytes with the taker's `init`, or freed by a
//! [`Region::remove`] of the name (`FREE`, by CAS). A creator that dies
//! holding the creation lock is probed dead by the next creator between slices, which
//! takes the lock over by CAS and frees the dead one's `CLAIMED` entry (`FREE`; its extent
//! is free space again). Every holder frees every claim it finds, whatever TID the claim
//! names: claims live only under the lock, so a claim its holder finds is abandoned (an
//! earlier holder's that died or was misjudged dead, one left by a `fill` that panicked
//! or whose give-back or publication lost to a peer flipping `WAITERS`, or a peer's
//! garbage). An `init` that panics marks its entry abandoned (owner 0,
//! which no thread has) so that the next caller takes over.
//!
//! # Crash windows
//!
//! What a SIGKILL of the creating process at each step leaves (a SIGSTOP leaves the same
//! until it continues: waiters then return [`GetError::Timeout`] at the region's
//! timeout):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | before the claim | nothing | — |
//! | creation lock taken by CAS, holder word not yet stored | the lock naming a dead thread; the holder word recording an earlier holder | as the next line, the holder probed by its TID alone (a new thread that reused its TID reads alive: see Limits) |
//! | creation lock taken, or `CLAIMED`: name, type or extent being written | the lock and an entry naming a dead owner (gets are unaffected: a claim publishes no name) | the next creator probes the lock's holder between 10 ms slices (by its TID and the start time the holder word records), takes the lock over and frees the claim, whatever the claim's TID reads now, also where the taker died before freeing it and the claim is left to the next holder (unit tests `a_dead_claim_is_taken_over`, `a_dead_creation_lock_holder_whose_tid_was_reused_is_taken_over`, `a_dead_claimer_whose_tid_was_reused_leaves_its_claim_to_the_taker`, `a_claim_naming_a_live_thread_is_freed_by_the_next_creator`; failpoint tests in `tests/region_remove_failpoints.rs`, among them `a_claim_left_by_a_chain_of_dead_creators_whose_tid_was_reused_is_freed`, and `tests/failpoints.rs`) |
//! | `INITIALISING`: object being zeroed or `init` running | the same, with the name published | a process waiting for that name takes it over and restarts from zeroed bytes with its own `init` within a slice (`tests/region_takeover.rs`), also where a new thread reused the owner's TID, unless that thread's process holds a live table word with its bit set in the entry (failpoint tests `a_creator_killed_in_init_whose_tid_was_reused_is_taken_over`, `..._is_freed_by_a_removal`) |
//! | taker: takeover CAS made, object not yet zeroed | as the line above, the taker the owner | as the line above; the taker's bit was set before its CAS, so a stopped taker reads alive (failpoint test `a_taker_stopped_right_after_its_takeover_is_alive_to_other_creators`) |
//! | `READY` published, waiters not yet woken | sleepers on a ready entry | each re-checks after its slice (10 ms); failpoint test |
//! | `init` panicked | an abandoned entry (owner 0) | the next caller takes it over at once |
//!
//! # Limits
//!
//! - Every process sharing a region must be in the same PID namespace: a TID from another
//!   namespace reads as dead (an entry could be taken over from a live owner) or as
//!   another thread.
//! - TIDs are reused. An entry's owner that died after its TID was handed to a new thread
//!   reads as alive (and waiters return [`GetError::Timeout`] after the region's timeout
//!   instead of taking over) only where that thread's process holds a live table word
//!   with its bit set in the entry (for a `REMOVING` entry's remover: any live word): a
//!   process that had asked for the object, or for an earlier object of the entry while
//!   it was being removed, or tried to take it over and lost (bits stay on the entry:
//!   [`remove`](super::remove)'s Limits), or was forked with its parent's uses; or where
//!   the process cannot be told (`/proc` hidden, `hidepid`, a region marked `UNLISTED`,
//!   where the TID alone decides). The word's liveness is judged by its start time, so
//!   the time-namespace limit below applies to entry owners too: a live owner whose
//!   process is in another time namespace that cannot be told reads dead and is taken
//!   over.
//!   The creation lock's holder is told apart from a new
//!   thread with its TID by the start time it records in the holder word, just after
//!   the CAS that takes the lock: a thread with that TID and another start time reads
//!   dead, and a creator whose own TID the lock names takes it over at once. The holder
//!   still reads alive (and creation times out while the new thread lives) where its
//!   start time cannot be read (`/proc` hidden or unreadable), where it was killed
//!   between its CAS and its store of the holder word (the word then records an earlier
//!   holder, so the TID alone is probed), or where the two threads' start times agree in
//!   their low 32 bits (threads started in the same clock tick, 10 ms at 100 Hz; a thread
//!   that became its process's main thread by `execve`), or where it is known to be in
//!   another time namespace than the prober (`/proc` shows start times shifted by the
//!   reader's time namespace, so they are not compared across two). Where that cannot be
//!   told (the holder's `ns/time` link is another user's, or a non-dumpable process's),
//!   they are compared: such a live holder in another time namespace reads dead, as does
//!   a holder restored from a checkpoint.
//! - The creation lock's generation wraps at 2^9, and 512 acquisitions take a few
//!   milliseconds: a prober descheduled (or stopped) between its judgment of a dead
//!   holder and its CAS while the lock changes hands 512 times, the last time to a thread
//!   that reused the judged holder's TID, could take the lock from that live thread. It
//!   re-reads the holder word just before its CAS and looks again if it changed, which
//!   narrows the window to the few instructions between that re-read and the CAS.
//! - The creation lock's holder frees every claim it finds (first thing under the lock,
//!   whatever the claim's TID reads now): claims are made, and published or given up,
//!   under the lock, so any claim its holder finds is abandoned. So where the limits
//!   above let a live holder be taken over (another PID namespace, another time namespace
//!   that cannot be told, a checkpoint restore, the generation's wrap), the two holders run at once, and either may free the other's
//!   claim while it is being written (and then claim that entry itself): the entry may
//!   end up with both creators' fields, and their objects may alias.
//! - `get_or_*` must not be called from a signal handler, or from a global allocator,
//!   that may interrupt a creation of the same thread: the inner call finds the lock
//!   naming its own thread, which holds it, and waits out the region's timeout. A child
//!   forked there (or inside `init`) must not continue the creation: its copy of the
//!   lock's guard releases nothing, but it would write the entry its parent is writing.
//!   (A child made by glibc's `_Fork` or a raw `clone` runs no fork handlers, so its
//!   guard would not even know it is a copy: such children are not supported by the
//!   crate at all, see [`owner`](crate::owner).)
//! - A stopped (not killed) creator holding the creation lock makes every other creator
//!   of a new name return [`GetError::Timeout`] at the region's timeout (existing objects
//!   are still handed out); its claim is left alone, and published once it continues
//!   (failpoint test `a_stopped_creators_claim_is_left_alone_and_published_when_it_continues`).

use std::time::{Duration, Instant};

use crate::futex;
use crate::owner;
use crate::shared::{Shared, TypeTag};
use crate::sync::{Ordering, spin_loop};

use super::error::GetError;
use super::file::Region;
use super::format::{
    Entry, EntrySnapshot, MAX_NAME_LEN, NAME_FIELD, OBJECT_ALIGN, create_holder, create_lock,
    round_up, state,
};

/// Loads of a state word before a waiter sleeps.
const SPINS: u32 = crate::wait::SPIN_LIMIT;
/// Longest single futex wait: the owner's liveness is probed between slices. The crate's
/// word-wait cap ([`PROBE_SLICE`](crate::wait::PROBE_SLICE); the region is not built
/// under loom, where that is unbounded).
const SLICE: Duration = match crate::wait::PROBE_SLICE {
    Some(s) => s,
    None => Duration::from_millis(10),
};

/// Tries of a compare-and-swap that only a `WAITERS` flip can fail (a waiter setting it,
/// or a peer flipping it forever: the bound). Many more than a spin: each failure is one
/// flip, and a fast flipper on another core can fail a hundred tries in a row.
const FLIP_RETRIES: u32 = 1000;

/// What a caller asks for: a checked name and the type's identity.
struct Want<'n> {
    name: &'n str,
    tag: TypeTag,
    align: usize,
    /// The length asked for; `None` for [`Region::get`], which takes the recorded one.
    len: Option<usize>,
    size_for: fn(usize) -> Option<usize>,
}

impl<'n> Want<'n> {
    fn new<T: Shared + ?Sized>(name: &'n str, len: Option<usize>) -> Result<Self, GetError> {
        check_name(name)?;
        if !T::ALIGN.is_power_of_two() || T::ALIGN > OBJECT_ALIGN {
            return Err(GetError::BadAlignment {
                name: name.to_owned(),
                tag: T::TAG,
                align: T::ALIGN,
            });
        }
        if let Some(len) = len
            && T::size_for(len).is_none()
        {
            return Err(GetError::InvalidLength {
                name: name.to_owned(),
                tag: T::TAG,
                len: len as u64,
            });
        }
        Ok(Want {
            name,
            tag: T::TAG,
            align: T::ALIGN,
            len,
            size_for: T::size_for,
        })
    }

    /// Checks the entry recording `snap` against what this caller asked for; returns the
    /// object's length.
    fn check(&self, snap: &EntrySnapshot) -> Result<usize, GetError> {
        let name = || self.name.to_owned();
        let requested_len = self.len.map_or(snap.len, |l| l as u64);
        if snap.tag != self.tag || snap.len != requested_len {
            return Err(GetError::TypeMismatch {
                name: name(),
                recorded: snap.tag,
                recorded_len: snap.len,
                requested: self.tag,
                requested_len,
            });
        }
        // Only `get` gets here with a length it has not checked: the recorded one.
        let Some((len, size)) = usize::try_from(snap.len)
            .ok()
            .and_then(|len| Some((len, (self.size_for)(len)?)))
        else {
            return Err(GetError::InvalidLength {
                name: name(),
                tag: self.tag,
                len: snap.len,
            });
        };
        if snap.size != size as u64 || snap.align as usize != self.align {
            return Err(GetError::SizeMismatch {
                name: name(),
                recorded_size: snap.size,
                recorded_align: snap.align.into(),
                requested_size: size as u64,
                requested_align: self.align as u64,
            });
        }
        Ok(len)
    }
}

pub(super) fn check_name(name: &str) -> Result<(), GetError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 47 bytes"
    } else if name.bytes().any(|b| b == 0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(GetError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Where a directory scan ended.
enum Step<'r> {
    /// A ready object of the wanted type: entry `index`, object at `(offset, len)`, read
    /// at the entry's generation `generation`.
    Ready {
        index: u32,
        offset: usize,
        len: usize,
        generation: u64,
    },
    /// This process took over a dead owner's `INITIALISING` entry `index` of the wanted
    /// type, at `(offset, len)`.
    TakenOver(u32, &'r Entry, usize, usize),
    /// No entry holds the name (the scan reached the first `EMPTY` entry or the end).
    Absent,
}

/// What the creation lock holder's scan found.
enum Claim<'r> {
    /// The name is published (or being removed): look it up again outside the lock.
    Exists,
    /// This process now owns the `CLAIMED` entry `index`, which was in phase `was`;
    /// `spans` are the extents the other entries own.
    Claimed {
        index: u32,
        entry: &'r Entry,
        was: u32,
        spans: Vec<(usize, usize)>,
    },
}

/// Failed consistent copies of one entry in a row whose state word held: past
/// [`Torn::TRIES`] the entry's generation is garbage, not a creator at work.
#[derive(Default)]
pub(super) struct Torn {
    index: u32,
    count: u32,
}

impl Torn {
    /// Consecutive failures on an unchanged state word that make an entry garbage. A
    /// creator rewrites an entry's fields (its generation odd) only while it is `CLAIMED`,
    /// so a copy that fails while the state word stays `INITIALISING`, `READY` or
    /// `REMOVING` saw a whole reuse cycle back to the same word (rare; the next copy
    /// holds), or a generation a peer wrote.
    const TRIES: u32 = 64;

    /// Counts a failed copy of entry `e` (index `i`), read in state `s`; whether the
    /// entry is to be skipped as garbage (then the count restarts).
    pub(super) fn garbage(&mut self, e: &Entry, i: u32, s: u32) -> bool {
        if self.index != i {
            *self = Torn { index: i, count: 0 };
        }
        // Acquire: as the scan's load of the state.
        if e.state.load(Ordering::Acquire) != s {
            self.count = 0;
            return false;
        }
        self.count += 1;
        if self.count < Self::TRIES {
            return false;
        }
        self.count = 0;
        true
    }
}

/// What a wait on a state word saw.
pub(super) enum Seen {
    /// The word changed (or the wait slice ended): look again.
    Changed,
    /// The word still names its owner, and the owner is dead.
    OwnerDead,
}

impl Region {
    /// The shared body of the `get_or_*` calls: the object `name` of type `T` and length
    /// `len`, created and initialised with `init` if absent.
    pub(super) fn get_or_create<T: Shared + ?Sized>(
        &self,
        name: &str,
        len: usize,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        let want = Want::new::<T>(name, Some(len))?;
        let deadline = self.deadline();
        let me = owner::current();
        loop {
            match self.lookup(&want, true, deadline)? {
                Step::Ready {
                    index,
                    offset,
                    len,
                    generation,
                } => {
                    if let Some((offset, len)) = self.pin(index, &want, offset, len, generation)? {
                        return self.object(&want, offset, len);
                    }
                }
                Step::TakenOver(index, e, offset, len) => {
                    self.mark_user(index, e);
                    return self.initialise(index, e, offset, len, me, init);
                }
                Step::Absent => {
                    let lock = CreateLock::take(self, deadline)?;
                    crate::failpoint::hit(crate::failpoint::Point::RegionCreateLocked);
                    match self.claim(&want, me, deadline)? {
                        Claim::Exists => {}
                        Claim::Claimed {
                            index,
                            entry,
                            was,
                            spans,
                        } => {
                            let offset =
                                self.fill(entry, index, &want, len, me, was, spans, deadline)?;
                            crate::failpoint::hit(crate::failpoint::Point::RegionNamePublished);
                            drop(lock);
                            return self.initialise(index, entry, offset, len, me, init);
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
        }
    }

    /// The body of [`Region::get`]: the existing object `name` of type `T`.
    pub(super) fn find<T: Shared + ?Sized>(&self, name: &str) -> Result<&T, GetError> {
        let want = Want::new::<T>(name, None)?;
        let deadline = self.deadline();
        loop {
            match self.lookup(&want, false, deadline)? {
                Step::Ready {
                    index,
                    offset,
                    len,
                    generation,
                } => {
                    if let Some((offset, len)) = self.pin(index, &want, offset, len, generation)? {
                        return self.object(&want, offset, len);
                    }
                }
                // `lookup` without `create` does not take over.
                Step::TakenOver(..) | Step::Absent => {
                    return Err(GetError::NotFound {
                        name: name.to_owned(),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
        }
    }

    fn deadline(&self) -> Instant {
        deadline_after(self.timeout)
    }

    /// The checked object at `offset`.
    fn object<T: Shared + ?Sized>(
        &self,
        want: &Want<'_>,
        offset: usize,
        len: usize,
    ) -> Result<&T, GetError> {
        let end = T::size_for(len).and_then(|size| offset.checked_add(size));
        let raw = end.and_then(|end| self.raw_covering(end));
        raw.and_then(|raw| raw.object::<T>(offset, len))
            .ok_or_else(|| {
                GetError::Corrupt(format!("object `{}` at {offset} out of bounds", want.name))
            })
    }

    /// Makes this handle a user of the `READY` entry `index` that a scan found holding
    /// `want` at `(offset, len)`, before a reference to it is handed out: sets the
    /// handle's bit in the entry's user bitmap, then checks that the entry is still
    /// `READY` and still holds `want` (the Dekker pair with [`Region::remove`], see
    /// [`remove`](super::remove)). Returns the object's place, or `None` if the entry
    /// changed meanwhile (removed, or removed and reused): the caller looks again.
    ///
    /// Once per object and handle: after that the handle's local pin set answers, with no
    /// atomic read-modify-write, for a scan whose copy of the entry has the pinned
    /// object's generation (`generation`; any other copy takes the slow path).
    #[inline]
    fn pin(
        &self,
        index: u32,
        want: &Want<'_>,
        offset: usize,
        len: usize,
        generation: u64,
    ) -> Result<Option<(usize, usize)>, GetError> {
        if let Some(e) = self.raw().entry(&self.geo, index)
            && self.pins.holds(index, e, generation)
        {
            // Pinned, and the scan's copy is of the pinned object (same generation): the
            // entry cannot have been removed since, so what the scan read is the object.
            return Ok(Some((offset, len)));
        }
        self.pin_slow(index, want)
    }

    #[cold]
    fn pin_slow(&self, index: u32, want: &Want<'_>) -> Result<Option<(usize, usize)>, GetError> {
        let geo = self.geo;
        let Some(e) = self.raw().entry(&geo, index) else {
            return Err(GetError::Corrupt(format!(
                "entry {index} outside the region"
            )));
        };
        let Some(slot) = self.life.slot_or_unlist(self.raw()) else {
            // An unlisted handle (a full attach table, or a lost word) has no bit: the
            // region is marked `UNLISTED` (by now, whatever made the handle lose its word),
            // and no object of it is ever removed (`Region::remove` refuses), so the entry
            // is as good as pinned once seen READY.
            let placed = self.recheck(index, e, want)?;
            if placed.is_some() {
                self.pins.set(index, e);
            }
            return Ok(placed);
        };
        let (word, bit) = super::remove::user_bit(slot);
        // SeqCst: the getter's half of the Dekker pair with `Region::remove` (module docs of
        // `remove`): this write, then the load of the state below; the remover's
        // READY -> REMOVING CAS, then its loads of the bitmap. One of the two sees the other.
        e.users[word].fetch_or(bit, Ordering::SeqCst);
        crate::failpoint::hit(crate::failpoint::Point::RegionUserBitSet);
        let placed = self.recheck(index, e, want)?;
        if placed.is_some() {
            self.pins.set(index, e);
        }
        Ok(placed)
    }

    /// Loads the state of entry `index` (`SeqCst`: see `pin_slow`) and, if it is `READY`
    /// and holds `want`, returns the object's place.
    fn recheck(
        &self,
        index: u32,
        e: &Entry,
        want: &Want<'_>,
    ) -> Result<Option<(usize, usize)>, GetError> {
        // SeqCst: the getter's load of the Dekker pair (see `pin_slow`); it is also an
        // acquire load pairing with the release transition that published the object.
        let s = e.state.load(Ordering::SeqCst);
        if state::phase(s) != state::READY {
            return Ok(None);
        }
        let snap = EntrySnapshot::read(e);
        if snap.name_bytes() != Some(want.name.as_bytes()) {
            return Ok(None);
        }
        let len = want.check(&snap)?;
        // Against the maximum, as in `lookup`: the object is checked against the file
        // when it is handed out.
        let mapped = super::format::Geometry {
            total: self.geo.max,
            ..self.geo
        };
        let (offset, _) = snap
            .placement(&mapped)
            .map_err(|w| GetError::Corrupt(format!("entry {index}: {w}")))?;
        Ok(Some((offset, len)))
    }

    /// Marks this handle a user of entry `index`, which this thread owns (`CLAIMED` or
    /// `INITIALISING`): no removal can start before it is `READY`, which comes after.
    fn mark_user(&self, index: u32, e: &Entry) {
        self.set_user_bit(e);
        self.pins.set(index, e);
    }

    /// Sets this handle's bit in the user bitmap of entry `e`, which this thread owns or
    /// is about to take over (`CLAIMED` or `INITIALISING`). Always before the transition
    /// or takeover that writes this thread's TID as the `INITIALISING` owner: probers
    /// count that owner alive only if its process holds a live word with its bit set
    /// ([`Region::owner_is_dead`]), and the release half of that write publishes the bit.
    ///
    /// A takeover that does not happen (its CAS lost, or the entry held another object by
    /// then) leaves the bit: the handle counts as a user of whatever the entry holds next,
    /// as a getter whose pin failed does (`remove`'s Limits). Clearing it could strip the
    /// bit of another thread of the handle that pinned the entry meanwhile.
    fn set_user_bit(&self, e: &Entry) {
        if let Some(slot) = self.life.slot_or_unlist(self.raw()) {
            let (word, bit) = super::remove::user_bit(slot);
            // SeqCst: as in `pin_slow`; here ordered before the READY transition anyway.
            e.users[word].fetch_or(bit, Ordering::SeqCst);
        }
        // (Unlisted: no bit, and no removal ever; see `pin_slow`. The region's `UNLISTED`
        // bit, set by now, makes probers judge owners by their TIDs alone.)
    }

    /// Whether the owner of entry `e`, found in state `seen` (read by an acquire load),
    /// is gone: its TID names no live thread ([`crate::wait::holder_is_dead`]) or, for an
    /// `INITIALISING` entry, a thread whose process holds no live table word whose bit is
    /// set in the entry's bitmap, or, for a `REMOVING` entry, a thread whose process holds
    /// no live table word at all. Such a thread is a new one that reused a dead owner's
    /// TID: the owner's handle held its word, and (for a creator or taker) had set its bit,
    /// before the transition that wrote its TID, and keeps both while the owner lives
    /// (Limits). Where the process cannot be told, the TID alone decides
    /// ([`owner_is_attached`](super::lifecycle::owner_is_attached)).
    pub(super) fn owner_is_dead(&self, e: &Entry, seen: u32) -> bool {
        let tid = state::owner(seen);
        if crate::wait::holder_is_dead(tid) {
            return true;
        }
        let (raw, geo) = (self.raw(), &self.geo);
        match state::phase(seen) {
            state::INITIALISING => {
                // Relaxed: the caller's acquire load of `seen` read the owner's release
                // transition (or AcqRel takeover), which its `fetch_or` of the bit
                // preceded; coherence gives this load that bit or a later value, and the
                // bit is cleared only once the owner's object is READY or gone (removal),
                // its handle dropped, or its process dead (its word reclaimed). After any
                // of those, `seen` is stale and the caller's CAS from it fails (or the
                // entry's generation differs).
                let users = [
                    e.users[0].load(Ordering::Relaxed),
                    e.users[1].load(Ordering::Relaxed),
                ];
                let set = |k: u32| {
                    let (word, bit) = super::remove::user_bit(k);
                    users[word] & bit != 0
                };
                !super::lifecycle::owner_is_attached(raw, geo, tid, set)
            }
            state::REMOVING => !super::lifecycle::owner_is_attached(raw, geo, tid, |_| true),
            _ => false,
        }
    }

    /// Scans the directory for `want` (see the module docs). With `create`, takes over
    /// dead owners' `INITIALISING` entries of the name.
    fn lookup(
        &self,
        want: &Want<'_>,
        create: bool,
        deadline: Instant,
    ) -> Result<Step<'_>, GetError> {
        let raw = self.raw();
        let geo = self.geo;
        let me = owner::current();
        let mut torn = Torn::default();
        let mut i = 0;
        while i < geo.capacity {
            let Some(e) = raw.entry(&geo, i) else {
                return Err(GetError::Corrupt(format!("entry {i} outside the region")));
            };
            // Acquire: pairs with the release transitions in `transition` (name and type
            // published for INITIALISING, the initialised object for READY).
            let s = e.state.load(Ordering::Acquire);
            match state::phase(s) {
                state::EMPTY => return Ok(Step::Absent),
                phase @ (state::INITIALISING | state::READY | state::REMOVING) => {
                    let Some(snap) = EntrySnapshot::read_consistent(e) else {
                        // Being reused right now: look again; or garbage: skip it.
                        if torn.garbage(e, i, s) {
                            i += 1;
                        } else if Instant::now() >= deadline {
                            return Err(GetError::Timeout);
                        }
                        spin_loop();
                        continue;
                    };
                    let corrupt = |what: &str| GetError::Corrupt(format!("entry {i}: {what}"));
                    let name = snap
                        .name_bytes()
                        .ok_or_else(|| corrupt("name not terminated"))?;
                    if name != want.name.as_bytes() {
                        i += 1;
                        continue;
                    }
                    let len = want.check(&snap)?;
                    // Against the maximum: an object beyond what this process has seen
                    // the file cover is checked against the file when it is handed out.
                    let mapped = super::format::Geometry {
                        total: geo.max,
                        ..geo
                    };
                    let (offset, _) = snap.placement(&mapped).map_err(|w| corrupt(&w))?;
                    // REMOVING an object this handle pinned: the removal will be refused
                    // (this handle's bit is set), so the object is this handle's to hand
                    // out now, without waiting for the remover.
                    if phase == state::READY
                        || (phase == state::REMOVING && self.pins.holds(i, e, snap.generation))
                    {
                        return Ok(Step::Ready {
                            index: i,
                            offset,
                            len,
                            generation: snap.generation,
                        });
                    }
                    match wait_on(e, s, deadline, Some(self))? {
                        Seen::Changed => {}
                        // A dead remover: the object was never freed; it is READY again.
                        Seen::OwnerDead if phase == state::REMOVING => {
                            super::remove::cancel_dead_removal(e, s);
                        }
                        // Without `create` nobody here finishes a dead owner's work, and no
                        // creator may ever come: the object does not exist (yet).
                        Seen::OwnerDead if !create => return Ok(Step::Absent),
                        Seen::OwnerDead => {
                            // Before the CAS that names this thread the owner: a prober
                            // judges an `INITIALISING` owner by its bit (`owner_is_dead`).
                            self.set_user_bit(e);
                            if take_over(e, s, me, snap.generation) {
                                return Ok(Step::TakenOver(i, e, offset, len));
                            }
                        }
                    }
                }
                // CLAIMED: no name published yet (its creator holds the creation lock and
                // publishes before releasing it: a creator looks again under the lock);
                // FREE: no name; anything else: no state a build writes.
                _ => i += 1,
            }
        }
        Ok(Step::Absent)
    }

    /// Under the creation lock, before anything in `claim` can return: frees every
    /// `CLAIMED` entry, whatever its owner's TID reads now. Claims are made, and published
    /// or given back, under the lock: so any claim its holder finds is abandoned, left by
    /// an earlier holder that died (or was misjudged dead) between its claim and its
    /// publication, or by a `fill` that panicked or whose give-back or publication lost to
    /// a peer flipping `WAITERS`, or written by a peer. A new thread may have reused the TID it
    /// names, so the TID is not probed. (A creation of this thread that a signal handler
    /// or an allocator interrupted, and that owns a live claim, holds this lock: the inner
    /// call never gets here, it waits for the lock.) Done in one pass here, not only when
    /// the scan below reaches the entry, so that a scan that stops before it (the name
    /// exists, the deadline) leaves no abandoned claim behind.
    fn free_dead_claims(&self) {
        let raw = self.raw();
        for i in 0..self.geo.capacity {
            let Some(e) = raw.entry(&self.geo, i) else {
                return;
            };
            // Acquire: as in the scan of `claim`.
            let mut s = e.state.load(Ordering::Acquire);
            if state::phase(s) == state::EMPTY {
                return;
            }
            // A waiter flipping `WAITERS` may fail the CAS: retried while only that bit
            // changes (bounded: the scan of `claim` applies the same rule anyway).
            for _ in 0..FLIP_RETRIES {
                if state::phase(s) != state::CLAIMED {
                    break;
                }
                let free = state::make(0, state::FREE) | (s & state::WAITERS);
                // Acquire: the dead owner's writes to the fields happen before.
                match e
                    .state
                    .compare_exchange(s, free, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => break,
                    Err(now) => s = now,
                }
            }
        }
    }

    /// The scan of a creator holding the creation lock: whether `want` exists, and if
    /// not, the entry to create it in, claimed, and the extents every other entry owns.
    /// All names are published under the lock, so this scan sees every one (a removal may
    /// take one away meanwhile, which only errs towards `Exists`).
    ///
    /// The entry: the first `FREE` one, else the first `EMPTY` one (so that the `EMPTY`
    /// entries stay a suffix as long as possible).
    fn claim(&self, want: &Want<'_>, me: u32, deadline: Instant) -> Result<Claim<'_>, GetError> {
        let raw = self.raw();
        let geo = self.geo;
        self.free_dead_claims();
        'rescan: loop {
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
            // Every extent an entry owns: the space a new object must not overlap. Clipped
            // at the maximum size, not at what this handle has seen the file cover: an
            // extent past that may be a peer's object in a part of the region this
            // handle has not looked at yet (the numbers are compared, nothing is touched).
            let reach = super::format::Geometry {
                total: geo.max,
                ..geo
            };
            let mut spans: Vec<(usize, usize)> = Vec::new();
            let mut target: Option<(u32, u32)> = None;
            // Past the first EMPTY entry only a peer's garbage can own space: its extents
            // are still kept clear of (never place a new object over an extent another
            // handle may hold), nothing else there is looked at.
            let mut past_empty = false;
            for i in 0..geo.capacity {
                let Some(e) = raw.entry(&geo, i) else {
                    return Err(GetError::Corrupt(format!("entry {i} outside the region")));
                };
                // Acquire: as in `lookup`; and pairs with the release of the creation
                // lock, after which the previous holder's entries are published.
                let s = e.state.load(Ordering::Acquire);
                if past_empty {
                    if matches!(
                        state::phase(s),
                        state::INITIALISING | state::READY | state::REMOVING
                    ) && let Some(sp) = EntrySnapshot::read(e).reserved(&reach)
                    {
                        spans.push(sp);
                    }
                    continue;
                }
                match state::phase(s) {
                    state::EMPTY => {
                        if target.is_none() {
                            target = Some((i, s));
                        }
                        past_empty = true;
                    }
                    state::CLAIMED => {
                        // Made since the pass above: only a peer writing garbage does that
                        // while we hold the lock. Free it (its space, recorded or not, is
                        // no entry's), and look again (bounded by the deadline).
                        let free = state::make(0, state::FREE) | (s & state::WAITERS);
                        // Acquire: the dead owner's writes to the fields happen before.
                        let _ =
                            e.state
                                .compare_exchange(s, free, Ordering::Acquire, Ordering::Relaxed);
                        continue 'rescan;
                    }
                    state::FREE if target.is_none() => target = Some((i, s)),
                    state::INITIALISING | state::READY | state::REMOVING => {
                        let snap = EntrySnapshot::read(e);
                        if snap.name_bytes() == Some(want.name.as_bytes()) {
                            return Ok(Claim::Exists);
                        }
                        if let Some(sp) = snap.reserved(&reach) {
                            spans.push(sp);
                        }
                    }
                    _ => {}
                }
            }
            let Some((index, s)) = target else {
                return Err(GetError::DirectoryFull {
                    capacity: geo.capacity,
                });
            };
            let Some(e) = raw.entry(&geo, index) else {
                continue;
            };
            // Acquire on success: whoever last released this entry (a remover's FREE, a
            // creator giving a claim back) wrote its fields before.
            let claimed = state::make(me, state::CLAIMED);
            if e.state
                .compare_exchange(s, claimed, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Claim::Claimed {
                    index,
                    entry: e,
                    was: state::phase(s),
                    spans,
                });
            }
        }
    }

    /// Fills the `CLAIMED` entry `e` (index `index`, phase `was` before the claim) that
    /// this process owns with `want`, places its object ([`allocate`](Self::allocate),
    /// outside `spans`), and publishes the name (`INITIALISING`). Returns the object's
    /// offset. On failure the entry is given back as it was (`EMPTY` or `FREE`).
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        e: &Entry,
        index: u32,
        want: &Want<'_>,
        len: usize,
        me: u32,
        was: u32,
        spans: Vec<(usize, usize)>,
        deadline: Instant,
    ) -> Result<usize, GetError> {
        // `Want::new` checked that `size_for(len)` exists.
        let size = (want.size_for)(len).unwrap_or(0);
        // The generation goes odd while the fields are rewritten (readers without the lock
        // may be copying them: `EntrySnapshot::read_consistent`). Relaxed load: only the
        // lock's holder writes it.
        let g = e.generation.load(Ordering::Relaxed);
        let odd = g.wrapping_add(if g.is_multiple_of(2) { 1 } else { 2 });
        // Relaxed store, then a release fence: pairs with the acquire fence in
        // `read_consistent` (a reader that saw any field written below sees the odd count).
        e.generation.store(odd, Ordering::Relaxed);
        crate::sync::fence(Ordering::Release);
        let publish = || {
            // Release: pairs with the acquire load of the count in `read_consistent`.
            e.generation.store(odd.wrapping_add(1), Ordering::Release);
        };
        // Relaxed (all fields): published by the release transition to INITIALISING below.
        e.kind.store(want.tag.kind.0, Ordering::Relaxed);
        e.elem_code.store(want.tag.elem.code, Ordering::Relaxed);
        e.elem_size.store(want.tag.elem.size, Ordering::Relaxed);
        e.elem_align.store(want.tag.elem.align, Ordering::Relaxed);
        e.elem_id.store(want.tag.elem.id, Ordering::Relaxed);
        e.align.store(want.align as u32, Ordering::Relaxed);
        e.len.store(len as u64, Ordering::Relaxed);
        e.size.store(size as u64, Ordering::Relaxed);
        let name = want.name.as_bytes();
        for (k, byte) in e.name.iter().enumerate().take(NAME_FIELD) {
            byte.store(name.get(k).copied().unwrap_or(0), Ordering::Relaxed);
        }
        let offset = match self.allocate(size, spans, deadline) {
            Ok(offset) => offset,
            Err(err) => {
                // Give the entry back as it was.
                publish();
                transition(e, me, state::CLAIMED, state::make(0, was));
                return Err(err);
            }
        };
        e.offset.store(offset as u64, Ordering::Relaxed);
        publish();
        // Bits set since the entry's removal stay (they belong to live handles that asked
        // for the entry meanwhile: clearing one could erase the bit of a getter about to
        // find this very object READY). They count those handles as users.
        self.mark_user(index, e);
        crate::failpoint::hit(crate::failpoint::Point::RegionClaimed);
        if !transition(e, me, state::CLAIMED, state::make(me, state::INITIALISING)) {
            return Err(lost(want));
        }
        Ok(offset)
    }

    /// Zeroes the object of the `INITIALISING` entry `e` (index `index`) this process
    /// owns, runs `init` on it, and publishes it (`READY`).
    fn initialise<T: Shared + ?Sized>(
        &self,
        index: u32,
        e: &Entry,
        offset: usize,
        len: usize,
        me: u32,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        // Armed before anything can fail: an error (a peer's garbage offset or size word)
        // or a panic in `init` abandons the entry, so that the next caller takes it over
        // or a removal frees it, instead of waiting on a live owner who never finishes.
        let abandon = Abandon {
            e,
            me,
            pins: &self.pins,
            index,
        };
        let corrupt = || GetError::Corrupt(format!("object at {offset} out of bounds"));
        let size = T::size_for(len).ok_or_else(corrupt)?;
        let raw = offset
            .checked_add(size)
            .and_then(|end| self.raw_covering(end))
            .ok_or_else(corrupt)?;
        if !raw.zero(offset, size) {
            return Err(corrupt());
        }
        let object = raw.object::<T>(offset, len).ok_or_else(corrupt)?;
        init(object);
        core::mem::forget(abandon);
        if !transition(e, me, state::INITIALISING, state::make(me, state::READY)) {
            return Err(GetError::Corrupt(format!(
                "entry at object offset {offset} changed owner during init"
            )));
        }
        Ok(object)
    }

    /// Places an object of `size` bytes in the data area, outside the extents `spans`
    /// that other entries own: the first gap (by address) of at least `size` rounded up
    /// to 64 (see [`first_fit`]) below the size word. Returns its offset. When no gap is
    /// large enough, grows the region if it may ([`Region::grow`]: the tail after the last
    /// extent is made long enough) and looks again. Called by the creation lock's holder
    /// only, so nothing else is placed meanwhile (and `spans`, read under the lock, can
    /// only have shrunk since).
    fn allocate(
        &self,
        size: usize,
        spans: Vec<(usize, usize)>,
        deadline: Instant,
    ) -> Result<usize, GetError> {
        let geo = self.geo;
        let raw = self.raw();
        let Some(h) = raw.header() else {
            return Err(GetError::Corrupt("no header".into()));
        };
        let Some(need) = round_up(size as u64).and_then(|n| usize::try_from(n).ok()) else {
            return Err(GetError::RegionFull {
                needed: u64::MAX,
                available: 0,
            });
        };
        loop {
            // Acquire: pairs with a grower's release `fetch_max` (`Region::grow`), made
            // after it extended the file.
            let total = h.total_size.load(Ordering::Acquire);
            if total > geo.max as u64 || total < geo.data_start as u64 {
                return Err(GetError::Corrupt(format!(
                    "size {total} outside the data area or above the maximum size {}",
                    geo.max
                )));
            }
            // `total <= max`, a `usize`.
            let end = total as usize;
            let (found, _) = first_fit(spans.clone(), geo.data_start, end, need);
            if let Some(offset) = found {
                // The file must cover the range before anything touches it: a size word
                // raised by a peer without extending the file is corruption, never a
                // `SIGBUS`.
                if self.raw_covering(offset + need).is_none() {
                    return Err(GetError::Corrupt(format!(
                        "size {total} beyond the end of the file"
                    )));
                }
                // The high-water mark only moves under the creation lock (held); it is
                // published with the entry's extent by the release transition that
                // follows. Release: pairs with the Acquire load of an opener that checks
                // it against the size word (`check_directory`), which then reads a word
                // at least the `total` we read above (a grower's raise happens before it).
                h.bump.fetch_max((offset + need) as u64, Ordering::Release);
                return Ok(offset);
            }
            // No gap: the tail after the last extent (clipped to the size word) must
            // grow to hold the object. `RegionFull` unless the region may grow; on
            // success the size word rose.
            let tail = spans
                .iter()
                .map(|&(off, ext)| off.saturating_add(ext).min(end))
                .fold(geo.data_start, usize::max);
            self.grow(tail as u64, need as u64, total)?;
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
        }
    }
}

/// The first gap of at least `need` bytes in `[start, end)` outside the extents `spans`
/// (which may overlap each other: garbage from a peer), and the largest gap. Gaps are
/// 64-aligned (every extent is).
pub(super) fn first_fit(
    mut spans: Vec<(usize, usize)>,
    start: usize,
    end: usize,
    need: usize,
) -> (Option<usize>, usize) {
    spans.sort_unstable();
    let mut found = None;
    let mut largest = 0;
    let mut cur = start;
    for (off, ext) in spans.into_iter().chain(core::iter::once((end, 0))) {
        let off = off.min(end);
        if off > cur {
            let gap = off - cur;
            largest = largest.max(gap);
            if found.is_none() && gap >= need {
                found = Some(cur);
            }
        }
        cur = cur.max(off.saturating_add(ext).min(end));
    }
    (found, largest)
}

/// The region's creation lock, held by this thread (see [`create_lock`]).
struct CreateLock<'a> {
    word: &'a crate::sync::AtomicU32,
    /// The lock word this thread took, without `WAITERS` (its generation and TID).
    held: u32,
    /// The fork generation this guard was made in: a guard copied into a forked child
    /// releases nothing.
    forks: u32,
}

thread_local! {
    /// This thread's TID and how many creation locks (of any region) it holds or is
    /// taking: while it holds one, a lock word naming its TID may be its own (a signal
    /// handler or an allocator calling into a region under the lock), so
    /// [`CreateLock::take`] does not take it over. Keyed by TID and fork generation: a
    /// forked process's copy is its parent thread's, and counts nothing for it.
    static HOLDING: core::cell::Cell<(u32, u32, u32)> =
        const { core::cell::Cell::new((0, 0, 0)) };
}

/// How many creation locks this thread holds or is taking (see [`HOLDING`]).
fn holding() -> u32 {
    let (tid, forks, n) = HOLDING.with(core::cell::Cell::get);
    if tid == owner::current() && forks == owner::fork_generation() {
        n
    } else {
        0
    }
}

/// Adds `delta` (1 or -1) to this thread's count of creation locks. Compiler fences on
/// both sides: the count must not move across the CAS that takes the lock or the one
/// that releases it, for a signal handler of this thread reads it.
fn add_holding(delta: i32) {
    crate::sync::compiler_fence(Ordering::SeqCst);
    let n = holding().saturating_add_signed(delta);
    // Where forks are not counted (`owner::fork_counted`), a descendant's thread that got
    // this TID reads this count: above 0, it only turns the own-TID rules off (a matter
    // of liveness, not of safety).
    HOLDING.with(|c| c.set((owner::current(), owner::fork_generation(), n)));
    crate::sync::compiler_fence(Ordering::SeqCst);
}

impl<'a> CreateLock<'a> {
    /// Takes the creation lock of `region`, taking it over from a dead holder, waiting at
    /// most until `deadline`.
    fn take(region: &'a Region, deadline: Instant) -> Result<Self, GetError> {
        let Some(h) = region.raw().header() else {
            return Err(GetError::Corrupt("no header".into()));
        };
        let word = &h.create_lock;
        let record = h.create_holder();
        let (me, start) = super::lifecycle::own_start();
        // Takes the lock from `w` (free, or held by a thread judged dead): the CAS to the
        // next generation changes the word whoever takes it, so a second prober that
        // judged the same `w` fails its CAS. Then records this thread in the holder word.
        let take_from = |w: u32| {
            let to = create_lock::next(w, me);
            // Counted before the CAS (and uncounted after the release): a signal handler
            // of this thread that runs in between finds the lock naming its thread while
            // the count says it may be its own.
            add_holding(1);
            // Acquire: pairs with the Release of the previous holder's release: its
            // entries and bump word happen before our scan.
            if word
                .compare_exchange(w, to, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                add_holding(-1);
                return None;
            }
            // Only after the CAS, so that the word only ever records a holder. Relaxed: a
            // prober that reads an older value finds it records another lock word (an
            // earlier generation), and probes us by our TID alone.
            record.store(
                create_holder::make(create_lock::held(to), start),
                Ordering::Relaxed,
            );
            Some(CreateLock {
                word,
                held: create_lock::held(to),
                forks: owner::fork_generation(),
            })
        };
        loop {
            // Relaxed: the CAS decides, and the holder word is read as a hint (see
            // `holder_is_alive`).
            let mut w = word.load(Ordering::Relaxed);
            if create_lock::holder(w) == 0 {
                if let Some(lock) = take_from(w) {
                    return Ok(lock);
                }
                // Taken meanwhile (or a peer flipping the word): bounded by the deadline.
                if Instant::now() >= deadline {
                    return Err(GetError::Timeout);
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
            let mut changed = false;
            for _ in 0..SPINS {
                // Relaxed: a hint to look again.
                if word.load(Ordering::Relaxed) != w {
                    changed = true;
                    break;
                }
                spin_loop();
            }
            if changed {
                continue;
            }
            // Relaxed: see `holder_is_alive`.
            let r = record.load(Ordering::Relaxed);
            // A holder with our own TID, while this thread holds no creation lock: it died,
            // and this thread reused its TID.
            let reused = create_lock::holder(w) == me && holding() == 0;
            if reused || !holder_is_alive(r, w) {
                // A holder word changed since we read it means the lock changed hands
                // meanwhile (perhaps 2^9 times, back to `w`): look again. Relaxed: as
                // above.
                if record.load(Ordering::Relaxed) != r {
                    continue;
                }
                if let Some(lock) = take_from(w) {
                    return Ok(lock);
                }
                // Taken meanwhile (or a peer flipping the word): bounded by the deadline.
                if Instant::now() >= deadline {
                    return Err(GetError::Timeout);
                }
                continue;
            }
            if !crate::wait::flag_waiting(word, &mut w, create_lock::WAITERS) {
                continue;
            }
            // After the probe, which takes time: the sleep ends by the deadline.
            let now = Instant::now();
            if now >= deadline {
                return Err(GetError::Timeout);
            }
            futex::wait(word, w, Some(SLICE.min(deadline - now)));
        }
    }
}

/// Whether the holder of lock word `w` is alive: by its TID, and by the start time that
/// `r`, the holder word, gives if it records `w` (see [`create_holder`]), so that a new
/// thread that reused a dead holder's TID reads dead. A holder word that records another
/// lock word (an earlier holder's: the holder stores it just after its CAS, and a stale
/// read shows the one before) leaves the holder to be probed by its TID alone.
fn holder_is_alive(r: u64, w: u32) -> bool {
    super::lifecycle::thread_is_alive(create_lock::holder(w), || {
        if create_holder::held(r) == create_lock::held(w) {
            create_holder::start(r)
        } else {
            0
        }
    })
}

impl Drop for CreateLock<'_> {
    fn drop(&mut self) {
        if owner::current() != create_lock::holder(self.held)
            || owner::fork_generation() != self.forks
        {
            // A child forked while its parent's thread held the lock: not the child's to
            // release (its `HOLDING` copy is keyed by the parent thread's TID).
            return;
        }
        self.release();
        add_holding(-1);
    }
}

impl CreateLock<'_> {
    /// Releases the lock if this guard still holds it.
    fn release(&self) {
        // Relaxed: the CAS re-reads it.
        let mut w = self.word.load(Ordering::Relaxed);
        // Only WAITERS changes under a holder; bounded against a peer flipping it.
        for _ in 0..FLIP_RETRIES {
            if create_lock::held(w) != self.held {
                // Taken over (we were misjudged dead) or overwritten: not ours to free.
                return;
            }
            // Release: publishes this holder's entries and bump word to the next holder
            // (its acquire CAS in `take`).
            match self.word.compare_exchange_weak(
                w,
                create_lock::released(w),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if w & create_lock::WAITERS != 0 {
                        futex::wake_all(self.word);
                    }
                    return;
                }
                Err(now) => w = now,
            }
        }
    }
}

/// The instant `timeout` from now (a year from now if that overflows).
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Waits for the state word of `e` to change from `seen`: spins briefly, then (with
/// `probe`, the region of `e`) reports a dead owner ([`Region::owner_is_dead`]), else
/// futex-waits one slice.
#[cold]
pub(super) fn wait_on(
    e: &Entry,
    seen: u32,
    deadline: Instant,
    probe: Option<&Region>,
) -> Result<Seen, GetError> {
    if Instant::now() >= deadline {
        return Err(GetError::Timeout);
    }
    for _ in 0..SPINS {
        // Acquire: a changed word is only a hint (`lookup` reloads). But the probe below
        // judges the owner by more than the word (its bit, its process's table word, and
        // `free_abandoned` the generation): the write this load read, which may be a later
        // write of the same value (the entry removed and re-made by the same thread), must
        // happen before those loads, as `lookup`'s acquire load of `seen` did.
        if e.state.load(Ordering::Acquire) != seen {
            return Ok(Seen::Changed);
        }
        spin_loop();
    }
    if probe.is_some_and(|r| r.owner_is_dead(e, seen)) {
        return Ok(Seen::OwnerDead);
    }
    let waiting = seen | state::WAITERS;
    // Relaxed: setting WAITERS orders nothing; the owner's swap-like CAS in `transition`
    // sees the bit (same word) and wakes us.
    if seen != waiting
        && e.state
            .compare_exchange(seen, waiting, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return Ok(Seen::Changed);
    }
    // After the spin and the probe, which take time: the sleep ends by the deadline.
    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
        return Err(GetError::Timeout);
    };
    futex::wait(&e.state, waiting, Some(SLICE.min(left)));
    Ok(Seen::Changed)
}

/// Takes over the entry whose dead owner left it in state `seen`, keeping its phase and
/// WAITERS bit, if it still holds the object of the caller's copy (made at `generation`).
/// Returns whether this process won.
///
/// The state word alone does not name the object: every abandoned initialisation leaves
/// the same word (owner 0), so between the caller's copy and the CAS the entry may have
/// been freed, reused and abandoned again by another object's creator. After a won CAS
/// the entry is this process's and its fields stable (only a `CLAIMED` entry's creator
/// rewrites them), so its generation tells: another object's entry is given back as found.
fn take_over(e: &Entry, seen: u32, me: u32, generation: u64) -> bool {
    crate::failpoint::hit(crate::failpoint::Point::RegionTakingOver);
    let mine = state::make(me, state::phase(seen)) | (seen & state::WAITERS);
    // Acquire: the dead owner's last release transition (if any) happens before our
    // writes. Its later relaxed writes are complete: the kernel reports a thread dead only
    // after tearing down its address space. Release: publishes the user bit the caller
    // set before (`Region::set_user_bit`) to probers that read this word by an acquire
    // load (`Region::owner_is_dead`).
    if e.state
        .compare_exchange(seen, mine, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // Acquire: pairs with the release store of the even count in `Region::fill` (also
    // ordered by the CAS above, which read the word its creator's release transition
    // wrote after that store).
    if e.generation.load(Ordering::Acquire) == generation {
        crate::failpoint::hit(crate::failpoint::Point::RegionTakenOver);
        return true;
    }
    // Another object's abandoned entry: restore the word we replaced (waking anyone who
    // began waiting on ours); the caller looks at the entry again.
    transition(e, me, state::phase(seen), seen);
    false
}

/// Moves the entry this process owns in phase `from` to the word `to`, waking waiters.
/// Returns `false` if the entry is no longer ours in `from` (another process wrote the
/// word: a taker that misjudged us dead, or a hostile one).
pub(super) fn transition(e: &Entry, me: u32, from: u32, to: u32) -> bool {
    let mine = state::make(me, from);
    // Relaxed: the CAS below re-reads the word anyway.
    let mut s = e.state.load(Ordering::Relaxed);
    // Only the WAITERS bit changes under a legitimate owner; bound the retries in case
    // someone flips it forever.
    for _ in 0..FLIP_RETRIES {
        if s & !state::WAITERS != mine {
            return false;
        }
        // Release: publishes the entry's fields (to INITIALISING) or the initialised object
        // (to READY); pairs with the acquire loads of the state in `lookup` and `entries`.
        match e
            .state
            .compare_exchange_weak(s, to, Ordering::Release, Ordering::Relaxed)
        {
            Ok(prev) => {
                if state::phase(to) == state::READY {
                    crate::failpoint::hit(crate::failpoint::Point::RegionReadyUnwoken);
                }
                if state::phase(to) == state::FREE {
                    crate::failpoint::hit(crate::failpoint::Point::RegionFreeUnwoken);
                }
                if state::has_waiters(prev) {
                    futex::wake_all(&e.state);
                }
                return true;
            }
            Err(now) => s = now,
        }
    }
    false
}

fn lost(want: &Want<'_>) -> GetError {
    GetError::Corrupt(format!(
        "the directory entry claimed for `{}` was taken by another process (or a peer keeps \
         flipping its waiters bit)",
        want.name
    ))
}

/// Marks an entry abandoned (owner 0, which probes dead) if `init` unwinds (or the object
/// cannot be initialised), so that the next caller takes it over instead of waiting for a
/// timeout. Unpins the entry first: the handle never handed the object out, and the
/// abandoned entry may be freed and reused (without a bitmap check) while the handle lives,
/// so a pin left behind would name an object this handle does not hold (the fork child
/// handler's check would then see it gone).
struct Abandon<'a> {
    e: &'a Entry,
    me: u32,
    pins: &'a super::remove::Pins,
    index: u32,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        // Before the transition: another thread of this handle can take the entry over
        // (and pin it again) only after it.
        self.pins.clear(self.index);
        transition(
            self.e,
            self.me,
            state::INITIALISING,
            state::make(0, state::INITIALISING),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::TestWord;
    use super::*;
    use crate::region::{EntryState, RegionOptions};
    use crate::sync::AtomicU32;

    fn region() -> Region {
        RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_millis(200))
            .anonymous(4096)
            .unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_pin_taken_after_a_scan_answers_for_its_own_object_only() {
        // Two threads of one handle, interleaved by hand: thread B's scan copies entry 0
        // (`x`); another handle removes `x` and creates `y` in entry 0; thread A gets `y`
        // (pinning entry 0); then B pins. B must not get `x`'s stale place from A's pin.
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_millis(200))
            .memfd("pin", 4096)
            .unwrap();
        let x = r.get_or_default::<TestWord>("x").map(|w| r.offset_of(w));
        assert_eq!(x.unwrap(), Some(r.geo.data_start));
        let mut other = Region::from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
        // `r`'s handle has asked for `x`: drop its use so that the removal can go through,
        // as for a thread whose scan ran before this handle's first `get` of `x`.
        let e = r.raw().entry(&r.geo, 0).unwrap();
        let (word, bit) = super::super::remove::user_bit(r.life.slot().unwrap());
        e.users[word].fetch_and(!bit, Ordering::SeqCst);
        r.pins.clear(0);

        let want = Want::new::<TestWord>("x", None).unwrap();
        let deadline = r.deadline();
        let Step::Ready {
            index,
            offset,
            len,
            generation,
        } = r.lookup(&want, false, deadline).unwrap()
        else {
            panic!("x not ready");
        };
        other.remove("x").unwrap();
        // `y`, placed in entry 0 at the same offset.
        other.get_or_default::<crate::Counter>("y").unwrap();
        let y = r.get::<crate::Counter>("y").unwrap();
        assert_eq!(r.offset_of(y), Some(offset));
        assert!(r.pins.has(index));
        assert_eq!(r.pin(index, &want, offset, len, generation).unwrap(), None);
        assert!(matches!(
            r.get::<TestWord>("x"),
            Err(GetError::NotFound { .. })
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_claim_is_taken_over() {
        let r = region();
        let e = r.raw().entry(&r.geo, 0).unwrap();
        // Pid 0: nobody; as if the claimer died before publishing a name.
        e.state
            .store(state::make(0, state::CLAIMED), Ordering::Release);
        let w = r
            .get_or_init::<TestWord>("x", |w| w.0.store(1, Ordering::Relaxed))
            .unwrap();
        assert_eq!(w.0.load(Ordering::Relaxed), 1);
        assert_eq!(r.entries()[0].name, "x");
        assert_eq!(r.entries()[0].owner, owner::current());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_panicking_init_is_taken_over_from_zero() {
        let r = region();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.get_or_init::<TestWord>("p", |w| {
                w.0.store(99, Ordering::Relaxed);
                panic!("init failed");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(r.entries()[0].state, EntryState::Initialising);
        assert_eq!(r.entries()[0].owner, 0);
        let w = r
            .get_or_init::<TestWord>("p", |w| assert_eq!(w.0.load(Ordering::Relaxed), 0))
            .unwrap();
        assert_eq!(w.0.load(Ordering::Relaxed), 0);
        assert_eq!(r.entries()[0].state, EntryState::Ready);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn get_of_an_object_whose_creator_died_is_not_found_without_waiting_for_the_timeout() {
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(10))
            .anonymous(4096)
            .unwrap();
        // As left by a creator that died inside `init` (a panicking `init` marks the entry
        // with owner 0, which probes dead like a killed process).
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.get_or_init::<TestWord>("p", |_| panic!("init failed"))
        }));
        assert!(caught.is_err());
        assert_eq!(r.entries()[0].state, EntryState::Initialising);
        // Nobody will finish it: `get` must not wait out the 10 s timeout and then blame a
        // live creator (`Timeout`).
        let err = r.get::<TestWord>("p").unwrap_err();
        assert!(
            matches!(&err, GetError::NotFound { name: n } if n == "p"),
            "{err:?}"
        );
        // A creator still takes it over.
        r.get_or_default::<TestWord>("p").unwrap();
        r.get::<TestWord>("p").unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_claim_naming_a_live_thread_is_freed_by_the_next_creator() {
        let r = region();
        // Claimed in the name of a live thread (init), with the creation lock free: a
        // dead creator's claim whose TID was reused after a chain of takeovers, or a
        // peer's garbage. Claims live only under the lock, so the lock's next holder
        // frees it without probing the TID.
        claimed_at(&r, 0, 1);
        // A claim publishes no name: `get` does not wait for it.
        assert!(matches!(
            r.get::<TestWord>("x"),
            Err(GetError::NotFound { .. })
        ));
        // Freed, not waited for (that would end in `Timeout`).
        r.get_or_default::<TestWord>("x").unwrap();
        assert_eq!(r.entries()[0].name, "x");
        assert_eq!(r.entries()[0].state, EntryState::Ready);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn threads_racing_on_one_name_init_once() {
        // Not `region()`: its 200 ms timeout is how long the losers wait for the winner's
        // `init`, and a loaded machine can deschedule the winner for longer than that
        // (they would fail with `Timeout`, which is not what this test is about).
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(60))
            .anonymous(4096)
            .unwrap();
        let inits = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let w = r
                        .get_or_init::<TestWord>("t", |_| {
                            inits.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                    w.0.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(inits.load(Ordering::Relaxed), 1);
        assert_eq!(r.get::<TestWord>("t").unwrap().0.load(Ordering::Relaxed), 4);
    }

    /// Makes the creation lock of `r` read as held by thread `tid` at generation 1, with
    /// the holder word recording `start` for it.
    fn hold_creation_lock(r: &Region, tid: u32, start: u32) -> u32 {
        let h = r.raw().header().unwrap();
        let w = create_lock::next(0, tid);
        h.create_holder().store(
            create_holder::make(create_lock::held(w), start),
            Ordering::SeqCst,
        );
        h.create_lock.store(w, Ordering::SeqCst);
        w
    }

    /// The start time of thread `tid`, or `None` where `/proc` does not show it (the
    /// caller skips: start times cannot be checked here).
    fn start_time(tid: u32) -> Option<u32> {
        Some(super::super::lifecycle::start_of(tid)).filter(|&s| s > 1)
    }

    /// A live thread of this process (until the guard drops: the live thread that
    /// "reused" a dead holder's TID) and the low 32 bits of its start time, or `None`,
    /// saying the test is skipped, where `/proc` does not show it.
    fn live_thread() -> Option<(owner::LiveThread, u32)> {
        let t = owner::LiveThread::start(owner::current);
        let start = start_time(t.id());
        if start.is_none() {
            eprintln!("skipped: /proc shows no start time here");
        }
        start.map(|s| (t, s))
    }

    /// The start time of init (PID 1, always alive), or `None`, saying the test is
    /// skipped, where `/proc` does not show it.
    fn init_start() -> Option<u32> {
        let start = start_time(1);
        if start.is_none() {
            eprintln!("skipped: /proc/1/stat shows no start time here");
        }
        start
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_creation_lock_holder_whose_tid_was_reused_is_taken_over() {
        let Some((t, start)) = live_thread() else {
            return;
        };
        let tid = t.id();
        let r = region();
        // Held by a thread that died, whose TID now names a live thread: the
        // start time it recorded tells them apart, so creation takes the lock over instead
        // of timing out.
        let w = hold_creation_lock(&r, tid, start ^ 1);
        r.get_or_default::<TestWord>("x").unwrap();
        let h = r.raw().header().unwrap();
        let after = h.create_lock.load(Ordering::SeqCst);
        assert_eq!(create_lock::holder(after), 0, "released after");
        assert_eq!(
            after >> create_lock::GEN_SHIFT,
            (w >> create_lock::GEN_SHIFT) + 1
        );
        assert_eq!(r.entries()[0].name, "x");
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_holder_with_sleepers_whose_tid_was_reused_is_taken_over() {
        let Some((t, start)) = live_thread() else {
            return;
        };
        let tid = t.id();
        let r = region();
        let h = r.raw().header().unwrap();
        // As above, with `WAITERS` set since the holder recorded itself (a prober that
        // probed by TID alone, or a failed takeover, went to sleep): the record still
        // names the holder, and the takeover keeps the bit.
        let w = hold_creation_lock(&r, tid, start ^ 1);
        h.create_lock
            .store(w | create_lock::WAITERS, Ordering::SeqCst);
        let taken = CreateLock::take(&r, r.deadline()).unwrap();
        let now = h.create_lock.load(Ordering::SeqCst);
        assert_eq!(create_lock::holder(now), owner::current());
        assert_eq!(now & create_lock::WAITERS, create_lock::WAITERS);
        drop(taken);
        assert_eq!(create_lock::holder(h.create_lock.load(Ordering::SeqCst)), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_free_lock_taken_records_its_holder() {
        let r = region();
        let h = r.raw().header().unwrap();
        let taken = CreateLock::take(&r, r.deadline()).unwrap();
        let now = h.create_lock.load(Ordering::SeqCst);
        assert_eq!(create_lock::holder(now), owner::current());
        assert_eq!(
            h.create_holder().load(Ordering::SeqCst),
            create_holder::make(
                create_lock::held(now),
                super::super::lifecycle::start_of(owner::current())
            )
        );
        drop(taken);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_holder_with_the_takers_tid_is_taken_over_without_a_record() {
        let r = region();
        let h = r.raw().header().unwrap();
        // The lock names this thread, which does not hold it: the holder died and this
        // thread reused its TID. Taken over at once, whatever the holder word says (here a
        // record of another lock word).
        let w = hold_creation_lock(&r, owner::current(), 0);
        h.create_holder().store(
            create_holder::make(create_lock::next(w, 12345), 777),
            Ordering::SeqCst,
        );
        r.get_or_default::<TestWord>("x").unwrap();
        assert_eq!(create_lock::holder(h.create_lock.load(Ordering::SeqCst)), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_claimer_whose_tid_was_reused_leaves_its_claim_to_the_taker() {
        let Some((t, start)) = live_thread() else {
            return;
        };
        let tid = t.id();
        let r = region();
        // A creator (its TID now a live thread's) died holding the lock and a claim: the
        // taker of the lock frees the claim though its TID reads alive.
        hold_creation_lock(&r, tid, start ^ 1);
        claimed_at(&r, 0, tid);
        r.get_or_default::<TestWord>("x").unwrap();
        assert_eq!(r.entries().len(), 1);
        assert_eq!(r.entries()[0].name, "x");
        assert_eq!(r.entries()[0].state, EntryState::Ready);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_claimer_with_the_takers_tid_leaves_its_claim_to_it() {
        let r = region();
        let me = owner::current();
        hold_creation_lock(&r, me, 0);
        claimed_at(&r, 0, me);
        r.get_or_default::<TestWord>("x").unwrap();
        assert_eq!(r.entries()[0].name, "x");
        assert_eq!(r.entries()[0].state, EntryState::Ready);
    }

    /// Entry `i` claimed by `owner`, as a creator that died in its claim leaves it.
    fn claimed_at(r: &Region, i: u32, owner: u32) {
        let e = r.raw().entry(&r.geo, i).unwrap();
        e.state
            .store(state::make(owner, state::CLAIMED), Ordering::Release);
    }

    /// The taker of a dead creator's lock whose scan stops before the dead claim (its own
    /// name is published at a lower index: `Exists`) still frees the claim, whose TID a
    /// live thread reused.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_takeover_that_finds_its_name_still_frees_the_dead_claim() {
        let Some((t, start)) = live_thread() else {
            return;
        };
        let tid = t.id();
        let r = region();
        r.get_or_default::<TestWord>("a").unwrap();
        claimed_at(&r, 1, tid);
        hold_creation_lock(&r, tid, start ^ 1);
        // A creator of "a" whose lookup ran before "a" was published.
        let want = Want::new::<TestWord>("a", Some(1)).unwrap();
        let lock = CreateLock::take(&r, r.deadline()).unwrap();
        let c = r.claim(&want, owner::current(), r.deadline());
        assert!(matches!(c, Ok(Claim::Exists)));
        drop(lock);
        let e1 = r
            .raw()
            .entry(&r.geo, 1)
            .unwrap()
            .state
            .load(Ordering::SeqCst);
        assert_eq!(state::phase(e1), state::FREE, "the dead claim freed");
        r.get_or_default::<TestWord>("b").unwrap();
    }

    /// A forked process whose thread got the TID that an inherited count was kept for
    /// (an ancestor's thread, since dead) counts no lock held.
    #[test]
    #[cfg_attr(miri, ignore = "fork")]
    fn the_count_reads_zero_in_a_forked_process_with_the_same_tid() {
        let before = owner::fork_generation();
        // SAFETY: the child only touches thread-locals and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            HOLDING.with(|c| c.set((owner::current(), before, 1)));
            let ok = holding() == 0;
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    /// The pass frees a dead claim while a waiter keeps flipping its `WAITERS` bit (a
    /// single CAS would fail and, when the scan then stops before the claim, leave it).
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn the_pass_frees_a_dead_claim_whose_waiters_bit_flips() {
        let r = region();
        let e0 = r.raw().entry(&r.geo, 0).unwrap();
        let e1 = r.raw().entry(&r.geo, 1).unwrap();
        let stop = crate::sync::AtomicBool::new(false);
        let mut left = 0;
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    e1.state.fetch_xor(state::WAITERS, Ordering::SeqCst);
                }
            });
            for _ in 0..20_000 {
                e0.state
                    .store(state::make(1, state::CLAIMED), Ordering::SeqCst);
                e1.state.fetch_and(state::WAITERS, Ordering::SeqCst);
                e1.state
                    .fetch_or(state::make(7, state::CLAIMED), Ordering::SeqCst);
                r.free_dead_claims();
                if state::phase(e1.state.load(Ordering::SeqCst)) != state::FREE {
                    left += 1;
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(left, 0, "dead claims the pass left");
    }

    /// As above, with the taker's deadline passing between its takeover and its scan.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_takeover_out_of_time_still_frees_the_dead_claim() {
        let Some((t, start)) = live_thread() else {
            return;
        };
        let tid = t.id();
        let r = region();
        claimed_at(&r, 0, tid);
        hold_creation_lock(&r, tid, start ^ 1);
        let want = Want::new::<TestWord>("a", Some(1)).unwrap();
        let lock = CreateLock::take(&r, r.deadline()).unwrap();
        let passed = Instant::now();
        assert!(matches!(
            r.claim(&want, owner::current(), passed),
            Err(GetError::Timeout)
        ));
        drop(lock);
        r.get_or_default::<TestWord>("b").unwrap();
    }

    /// A claim naming this thread that a holder finds is a dead thread's whose TID this
    /// thread reused, even under a lock taken from another dead holder (a chain): freed.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_claim_naming_the_creator_itself_is_freed() {
        let r = region();
        let dead = std::thread::spawn(owner::current).join().unwrap();
        claimed_at(&r, 0, owner::current());
        hold_creation_lock(&r, dead, 0);
        r.get_or_default::<TestWord>("b").unwrap();
        assert_eq!(r.entries()[0].name, "b");
    }

    /// A live claim of this thread's lies under the lock of its region, which a nested
    /// creation there (a signal handler, an allocator) never takes: it times out on the
    /// lock and leaves the claim alone. So a claim naming this thread that a holder does
    /// find is abandoned, and freed, even while the thread holds another region's lock.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_claim_naming_the_creator_is_freed_even_while_it_holds_another_lock() {
        let a = region();
        let b = region();
        let me = owner::current();
        // An outer creation in `a`: its lock held, its claim made.
        let outer = CreateLock::take(&a, a.deadline()).unwrap();
        claimed_at(&a, 0, me);
        assert!(matches!(
            a.get_or_default::<TestWord>("x"),
            Err(GetError::Timeout)
        ));
        assert_eq!(a.entries()[0].state, EntryState::Claimed, "left alone");
        assert_eq!(holding(), 1);
        drop(outer);
        // The outer creation gone, its claim is abandoned: freed by a creation in `a`
        // under `b`'s lock too.
        let other = CreateLock::take(&b, b.deadline()).unwrap();
        a.get_or_default::<TestWord>("x").unwrap();
        assert_eq!(holding(), 1);
        drop(other);
        assert_eq!(a.entries()[0].name, "x");
        assert_eq!(holding(), 0);
    }

    /// The count of creation locks held returns to 0 after a release, after dropping a
    /// guard whose lock was taken over, and after takes whose CAS failed (a peer flipping
    /// `WAITERS` on the free word); then a lock naming this thread is taken at once.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn the_count_of_locks_held_returns_to_zero() {
        let r = region();
        let h = r.raw().header().unwrap();
        drop(CreateLock::take(&r, r.deadline()).unwrap());
        assert_eq!(holding(), 0, "after a release");
        let stale = CreateLock::take(&r, r.deadline()).unwrap();
        let w = h.create_lock.load(Ordering::SeqCst);
        h.create_lock
            .store(create_lock::next(w, 1), Ordering::SeqCst);
        drop(stale);
        assert_eq!(holding(), 0, "after a guard whose lock was taken over");
        h.create_lock.store(0, Ordering::SeqCst);
        let stop = crate::sync::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    h.create_lock
                        .fetch_xor(create_lock::WAITERS, Ordering::SeqCst);
                }
            });
            for _ in 0..20_000 {
                drop(CreateLock::take(&r, r.deadline()).unwrap());
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(holding(), 0, "after takes whose CAS failed");
        hold_creation_lock(&r, owner::current(), 0);
        drop(CreateLock::take(&r, r.deadline()).unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_holder_asking_again_is_not_given_its_own_lock() {
        let r = region();
        // As a signal handler or an allocator calling into the region under the lock:
        // the lock names this thread, which holds it, so it is not taken over; the inner
        // call waits out the region's timeout.
        let outer = CreateLock::take(&r, r.deadline()).unwrap();
        assert!(matches!(
            CreateLock::take(&r, r.deadline()),
            Err(GetError::Timeout)
        ));
        drop(outer);
        drop(CreateLock::take(&r, r.deadline()).unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_guard_whose_lock_was_taken_over_releases_nothing() {
        let r = region();
        let h = r.raw().header().unwrap();
        let stale = CreateLock::take(&r, r.deadline()).unwrap();
        // Taken over meanwhile (this thread misjudged dead), by a thread with its TID.
        let w = h.create_lock.load(Ordering::SeqCst);
        let next = create_lock::next(w, owner::current());
        h.create_lock.store(next, Ordering::SeqCst);
        drop(stale);
        assert_eq!(h.create_lock.load(Ordering::SeqCst), next, "still held");
        h.create_lock
            .store(create_lock::released(next), Ordering::SeqCst);
    }

    /// A child forked while its parent's thread holds the lock: its copy of the guard
    /// releases nothing, and it reads its own start time.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd; fork")]
    fn a_fork_child_of_a_holder_leaves_the_lock_to_its_parent() {
        let r = region();
        let h = r.raw().header().unwrap();
        let lock = CreateLock::take(&r, r.deadline()).unwrap();
        let held = h.create_lock.load(Ordering::SeqCst);
        // Not synchronisation: start times are in clock ticks (10 ms at 100 Hz), and a
        // child started in this thread's tick would read this thread's start time, so a
        // child that kept the cached one would go unnoticed.
        std::thread::sleep(Duration::from_millis(30));
        // SAFETY: the child only drops the guard, reads /proc, takes and releases a lock
        // on a region of its own, and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            drop(lock);
            let me = owner::current();
            // A lock naming the child's TID, on another region: the child holds no
            // creation lock (its copy of the count is its parent thread's), so it takes
            // it at once.
            let r2 = region();
            hold_creation_lock(&r2, me, 0);
            let ok = h.create_lock.load(Ordering::SeqCst) == held
                && super::super::lifecycle::own_start()
                    == (me, super::super::lifecycle::start_of(me))
                && CreateLock::take(&r2, r2.deadline()).is_ok();
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(
            h.create_lock.load(Ordering::SeqCst),
            held,
            "still the parent's"
        );
        drop(lock);
        assert_eq!(create_lock::holder(h.create_lock.load(Ordering::SeqCst)), 0);
    }

    /// Threads taking a free lock in turn: while each holds it, the holder word records
    /// it (no other taker writes the word: only a holder, after its CAS).
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn while_a_thread_holds_the_lock_the_holder_word_records_it() {
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(60))
            .anonymous(4096)
            .unwrap();
        let h = r.raw().header().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let (me, start) = super::super::lifecycle::own_start();
                    for _ in 0..2000 {
                        let deadline = Instant::now() + Duration::from_secs(30);
                        let lock = CreateLock::take(&r, deadline).unwrap();
                        for _ in 0..20 {
                            spin_loop();
                        }
                        let record = h.create_holder().load(Ordering::SeqCst);
                        assert_eq!(record, create_holder::make(lock.held, start));
                        assert_eq!(create_lock::holder(lock.held), me);
                        drop(lock);
                    }
                });
            }
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_live_creation_lock_holder_is_waited_for_not_taken_over() {
        let Some(start) = init_start() else {
            return;
        };
        let r = region();
        let h = r.raw().header().unwrap();
        // The same TID with its own start time: alive, so creation waits out the region's
        // timeout (200 ms) and leaves the lock to its holder.
        let w = hold_creation_lock(&r, 1, start);
        assert!(matches!(
            r.get_or_default::<TestWord>("x"),
            Err(GetError::Timeout)
        ));
        assert_eq!(create_lock::held(h.create_lock.load(Ordering::SeqCst)), w);
        // A holder word that records another lock word (another generation: a waiter's
        // prediction, written after the holder's) is not the holder's: the holder is
        // probed by its TID alone, and is alive. (Read as the holder's, this start time
        // would make it read dead.)
        let other = create_lock::next(w, 1);
        h.create_holder()
            .store(create_holder::make(other, start ^ 1), Ordering::SeqCst);
        assert!(matches!(
            r.get_or_default::<TestWord>("x"),
            Err(GetError::Timeout)
        ));
        assert_eq!(create_lock::held(h.create_lock.load(Ordering::SeqCst)), w);
        assert!(r.entries().is_empty());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_holder_whose_tid_the_taker_reused_is_taken_over_with_a_new_word() {
        let me = owner::current();
        let Some(start) = start_time(me) else {
            eprintln!("skipped: /proc shows no start time here");
            return;
        };
        let r = region();
        // The dead holder had this thread's TID (this thread reused it): the takeover
        // still changes the lock word (its generation), and the release frees it.
        let w = hold_creation_lock(&r, me, start ^ 1);
        let taken = CreateLock::take(&r, r.deadline()).unwrap();
        let h = r.raw().header().unwrap();
        let now = h.create_lock.load(Ordering::SeqCst);
        assert_ne!(now, w, "the takeover changed the word");
        assert_eq!(create_lock::holder(now), me);
        assert_eq!(
            h.create_holder().load(Ordering::SeqCst),
            create_holder::make(create_lock::held(now), start),
            "the holder word records the taker"
        );
        drop(taken);
        assert_eq!(
            h.create_lock.load(Ordering::SeqCst),
            create_lock::released(now)
        );
    }

    /// Threads that all judge the same holder dead (one of them had reused its TID) race
    /// to take the lock over: one wins, the others' CASes from the word they judged fail
    /// (the winner's changed it), so the lock never has two holders.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn probers_racing_for_a_dead_holders_lock_never_both_take_it() {
        const THREADS: usize = 3;
        if start_time(owner::current()).is_none() {
            eprintln!("skipped: /proc shows no start time here");
            return;
        }
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(60))
            .anonymous(4096)
            .unwrap();
        let inside = AtomicU32::new(0);
        for _ in 0..300 {
            let go = std::sync::Barrier::new(THREADS + 1);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    let tx = tx.clone();
                    let (r, go, inside) = (&r, &go, &inside);
                    s.spawn(move || {
                        let me = owner::current();
                        tx.send((me, start_time(me).unwrap_or(0))).unwrap();
                        go.wait();
                        let deadline = Instant::now() + Duration::from_secs(30);
                        let lock = CreateLock::take(r, deadline).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        for _ in 0..200 {
                            spin_loop();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(lock);
                    });
                }
                // Held by a dead thread whose TID the first racer reused.
                let (tid, start) = rx.recv().unwrap();
                hold_creation_lock(&r, tid, start ^ 1);
                go.wait();
            });
            let h = r.raw().header().unwrap();
            assert_eq!(create_lock::holder(h.create_lock.load(Ordering::SeqCst)), 0);
        }
    }

    /// Whether a thread's process can be told here (`/proc` of this PID namespace, thread
    /// `tid`'s status readable); if not, says the test is skipped (the TID alone decides).
    fn proc_shows_processes(tid: u32) -> bool {
        let shows = owner::proc_is_ours() && std::fs::read(format!("/proc/{tid}/status")).is_ok();
        if !shows {
            eprintln!("skipped: /proc does not show thread {tid}'s process here");
        }
        shows
    }

    /// Runs `f` with the TID of a live thread of this process, parked until `f` returns:
    /// a live owner, or a new thread that reused a dead owner's TID, as the test makes it.
    fn with_live_thread<R>(f: impl FnOnce(u32) -> R) -> R {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                tid_tx.send(owner::current()).unwrap();
                let _ = done_rx.recv();
            });
            let out = f(tid_rx.recv().unwrap());
            drop(done_tx);
            out
        })
    }

    /// Leaves entry 0 holding `x`, abandoned in `INITIALISING` by a panicking `init` (with
    /// this handle's bit set), then names `owner` its owner.
    fn initialising_x_owned_by(r: &Region, owner: u32) -> &Entry {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.get_or_init::<TestWord>("x", |_| panic!("init failed"))
        }));
        assert!(caught.is_err());
        let e = r.raw().entry(&r.geo, 0).unwrap();
        e.state
            .store(state::make(owner, state::INITIALISING), Ordering::SeqCst);
        e
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn an_initialising_owner_whose_process_holds_a_word_with_its_bit_is_waited_for() {
        let r = region();
        with_live_thread(|t| {
            let e = initialising_x_owned_by(&r, t);
            let (word, bit) = super::super::remove::user_bit(r.life.slot().unwrap());
            assert_ne!(e.users[word].load(Ordering::SeqCst) & bit, 0);
            assert!(matches!(
                r.get_or_default::<TestWord>("x"),
                Err(GetError::Timeout)
            ));
            assert!(matches!(r.get::<TestWord>("x"), Err(GetError::Timeout)));
            assert!(!r.owner_is_dead(e, e.state.load(Ordering::SeqCst)));
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn an_initialising_owner_whose_process_holds_no_word_with_its_bit_is_taken_over() {
        let r = region();
        if !proc_shows_processes(owner::current()) {
            return;
        }
        with_live_thread(|t| {
            // A live thread of an attached process (this one), but no bit of its process
            // in the entry: a new thread that reused the TID of a dead owner elsewhere.
            let e = initialising_x_owned_by(&r, t);
            e.users[0].store(0, Ordering::SeqCst);
            e.users[1].store(0, Ordering::SeqCst);
            assert!(r.owner_is_dead(e, e.state.load(Ordering::SeqCst)));
            assert!(matches!(
                r.get::<TestWord>("x"),
                Err(GetError::NotFound { .. })
            ));
            let w = r
                .get_or_init::<TestWord>("x", |w| w.0.store(5, Ordering::Relaxed))
                .unwrap();
            assert_eq!(w.0.load(Ordering::Relaxed), 5);
            assert_eq!(r.entries()[0].state, EntryState::Ready);
            assert_eq!(r.entries()[0].owner, owner::current(), "taken over");
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn in_an_unlisted_region_an_initialising_owner_is_judged_by_its_tid_alone() {
        let r = region();
        with_live_thread(|t| {
            let e = initialising_x_owned_by(&r, t);
            e.users[0].store(0, Ordering::SeqCst);
            e.users[1].store(0, Ordering::SeqCst);
            // A handle without a word may have written the TID, and set no bit.
            let h = r.raw().header().unwrap();
            h.life
                .fetch_or(super::super::format::life::UNLISTED, Ordering::SeqCst);
            assert!(!r.owner_is_dead(e, e.state.load(Ordering::SeqCst)));
            assert!(matches!(
                r.get_or_default::<TestWord>("x"),
                Err(GetError::Timeout)
            ));
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_removing_owner_is_alive_while_its_process_holds_a_word() {
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_millis(200))
            .memfd("remover", 4096)
            .unwrap();
        let other = Region::from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap();
        other.get_or_default::<TestWord>("x").unwrap();
        drop(other);
        let e = r.raw().entry(&r.geo, 0).unwrap();
        let ready = e.state.load(Ordering::SeqCst);
        // No bit of any process in the entry: removers set none.
        assert_eq!(e.users[0].load(Ordering::SeqCst), 0);
        assert_eq!(e.users[1].load(Ordering::SeqCst), 0);
        with_live_thread(|t| {
            // A live thread of this process, which holds a word.
            let removing = state::make(t, state::REMOVING);
            e.state.store(removing, Ordering::SeqCst);
            assert!(!r.owner_is_dead(e, removing));
            assert!(matches!(r.get::<TestWord>("x"), Err(GetError::Timeout)));
        });
        if !proc_shows_processes(1) {
            return;
        }
        // Init: alive, in a process holding no word of this region.
        let removing = state::make(1, state::REMOVING);
        e.state.store(removing, Ordering::SeqCst);
        assert!(r.owner_is_dead(e, removing));
        r.get::<TestWord>("x").unwrap();
        assert_eq!(state::phase(e.state.load(Ordering::SeqCst)), state::READY);
        assert_eq!(state::phase(ready), state::READY);
    }
}
