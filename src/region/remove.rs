//! Removing named objects ([`Region::remove`]) and reusing their entries and space.
//!
//! # The rule
//!
//! **An object is removed only when no handle that may hold a reference to it is alive.**
//! References (`&'r T`) are borrowed from a [`Region`] handle and cannot be revoked, so the
//! region keeps, for every directory entry, a *user bitmap*: one bit per attach-table word
//! ([`lifecycle`](super::lifecycle): one word per read-write handle). A handle sets its bit
//! in an entry the first time any call hands it a reference to that entry's object
//! ([`Region::get`], the `get_or_*` calls, and everything built on them: maps, channels,
//! metrics), and keeps it until it is dropped. [`Region::remove`] takes `&mut self`, so the
//! borrow checker proves the removing handle holds no reference: its own bit is ignored.
//! The removal succeeds only if every other bit set names a word that is free or names a
//! dead process ([`RemoveObjectError::InUse`] lists the live ones otherwise). A region
//! that ever had a handle without a word (`UNLISTED`: the attach table was full, or a
//! handle lost its word: see [`lifecycle`](super::lifecycle)) never has an object removed ([`RemoveObjectError::Unlisted`]): that handle cannot be tracked.
//!
//! So, in practice: a process removes an object through a fresh handle
//! (`Region::open(path)?.remove(name)`, or [`Region::remove_object`]) once the handles
//! that used it are dropped, and a handle that asked for a name (even one it then did not
//! get, because the name was being removed) counts as a user of that entry until dropped.
//!
//! A fork child inherits its parent's references: the fork handlers that give the child
//! its own attach-table word ([`lifecycle`](super::lifecycle)) also copy the parent
//! handle's bits to the child's word (in the prepare handler, so the child is protected
//! before `fork` returns), the parent handler adds the bits of entries pinned since (under
//! the registry lock, before any parent handle can be dropped), and the child handler adds
//! the bits of every entry its inherited pin set lists, then, if its parent died during
//! the fork, checks that it still holds them (or aborts).
//!
//! # Protocol
//!
//! A directory entry is `EMPTY` (never used), `CLAIMED` (a creator is filling it),
//! `INITIALISING` (named; `init` runs), `READY`, `REMOVING` (a remover checks its users) or
//! `FREE` (removed; reusable). A getter (after a scan found `name` `READY` in entry `i`, and only the first
//! time this handle asks for entry `i`: a local pin set answers later calls with no
//! atomic read-modify-write):
//!
//! 1. sets its bit in entry `i`'s bitmap (`fetch_or`, `SeqCst`);
//! 2. loads the state (`SeqCst`): `READY` and still `name` with the type asked for: the
//!    reference is handed out (the entry is pinned); anything else (being removed, or
//!    removed and reused): scan again (and wait on a `REMOVING` entry of the name, whose
//!    remover decides within one bitmap scan). The bit stays set until the handle is
//!    dropped (a bit that pins nothing only makes removals of that entry refuse).
//!
//! A pin is per object, not per entry: the scan's copy of the entry's fields carries the
//! entry's generation, and the pin set answers only if the entry is pinned *and* its
//! generation is still the copy's (a thread whose scan copied an object that was removed
//! and replaced before another thread of the handle pinned the entry takes the slow path
//! and finds the new object's name). A handle that pinned the object of a `REMOVING`
//! entry takes it at once, without waiting for the remover: its own bit refuses that
//! removal.
//!
//! A remover (thread `t`):
//!
//! 1. finds `name` `READY` and moves it `READY -> REMOVING(t)` by CAS (`SeqCst`);
//! 2. loads the life-cycle word (`SeqCst`): `UNLISTED` cancels (`REMOVING -> READY`);
//! 3. loads the bitmap (`SeqCst`): for every bit but its own handle's, probes the
//!    attach-table word it names; a live word cancels (`REMOVING -> READY`, `InUse`)
//!    and clears no bit (see step 4);
//! 4. no live word's bit was set: clears the bits it read (never one set since: that
//!    getter checks the state after setting it, and a fork child's copy of a bit set
//!    since pins nothing either), then `REMOVING -> FREE` (release) and wakes waiters.
//!    The entry's extent is free space from then on. A refused removal (step 2 or 3)
//!    clears nothing: a free word it read may be a fork child's by now, with a bit the
//!    fork handlers copied, and its own handle stays a user.
//!
//! **Why no getter keeps a reference to a removed object.** Getter step 1 precedes its
//! step 2; remover step 1 precedes its step 3; all four are `SeqCst`, so they lie in one
//! total order. If the getter's load comes before the remover's CAS, it reads `READY` —
//! and its bit, written earlier still, is seen by the remover's later bitmap load: it
//! cancels. Otherwise the getter's load reads `REMOVING` or later, and it does not hand
//! out the reference. An unlisted handle's `UNLISTED` write (before its first reference)
//! and the remover's step 2 pair the same way.
//!
//! **Why names stay unique when entries are reused.** Every creation — claiming an entry,
//! placing its object, publishing its name (`INITIALISING`) — happens under the region's
//! creation lock (a robust lock word in the header: the holder's TID and a generation,
//! taken over from a dead holder by probe). The holder scans the whole directory before
//! claiming, so it sees every published name (all were published under the lock, before an
//! earlier holder's release); it claims an entry only if the name is absent. Entries are
//! claimed `FREE` or `EMPTY` (a `FREE` entry is never skipped towards a later `EMPTY` one
//! by a creator that could miss a name: there is one creator at a time). Lookups outside
//! the lock stop at the first `EMPTY` entry, which still proves the name absent: entries
//! return to `FREE`, never to `EMPTY`, so the `EMPTY` ones remain a suffix.
//!
//! **Space.** Free space is not recorded anywhere: it is every part of the data area
//! that no entry's extent covers (the extents of `INITIALISING`, `READY` and `REMOVING`
//! entries; a `FREE` entry owns nothing). The creation lock's holder, which has just
//! scanned the whole directory, places a new object in the first gap (by address) of at
//! least its size rounded up to 64 (first fit: the scan already visits every entry, so
//! sorting the extents is all it costs; it keeps objects low and the tail whole, and with
//! holes coalescing by themselves it fragments about as little as best fit does in
//! practice). A removal frees its extent by marking the entry `FREE`: neighbouring holes
//! merge at once, nothing is moved, and no crash leaks space for good: a creator that
//! dies with a claim leaves an extent that the next lock holder frees with the claim; a
//! creator that dies after publishing the name, or whose `init` panics, leaves an
//! abandoned `INITIALISING` entry (listed by [`Region::entries`]) that the next
//! `get_or_*` of the name takes over, or that [`Region::remove`] of the name frees at
//! once (`INITIALISING -> FREE` by CAS, no bitmap check: no reference to an object is
//! handed out before it is `READY` but to its initialiser, dead or unwound). A peer's
//! garbage extents are sorted in as they are (overlaps and all), an extent that straddles
//! the end of the data area this handle verified is kept clear of up to that end (never
//! dropped), and the extents of entries past a (peer-written) `EMPTY` one are kept clear
//! of too: this process never places an object over space another entry claims. The bound: fragmentation is only
//! external (holes between live objects smaller than the object asked for); no byte is
//! lost for good, and every hole is reusable once its neighbours are removed.
//! [`Region::space`] and [`ReadOnlyRegion::space`](super::ReadOnlyRegion::space) report
//! free bytes, the largest piece and their count (and `shmstate inspect` shows them).
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves (a SIGSTOP leaves the same until it continues:
//! meanwhile getters of the name that do not already hold it, and removers, return
//! `Timeout` at the region's timeout; other names are unaffected):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | getter: bit set, state not yet loaded | a bit naming a handle of a dead process | the next removal of the entry probes the word dead and clears the bit (failpoint test `a_getter_killed_after_setting_its_bit_does_not_block_removal`) |
//! | remover step 1–3: `REMOVING(t)`, bitmap not (fully) read | an entry that nobody can use or remove | the next getter, creator or remover of the name probes `t` between 10 ms slices (by its TID, and by its process, which must hold a live attach-table word: a new thread that reused `t` in another process reads dead) and returns the entry to `READY` (the object was never freed) (failpoint tests `a_remover_killed_while_removing_leaves_the_object_ready`, `a_remover_killed_while_removing_whose_tid_was_reused_leaves_the_object_ready`; a remover stopped after its probes and resumed refuses without clearing a bit a fork copied meanwhile: `a_refused_removal_keeps_the_bit_of_a_fork_child_that_took_a_word_it_probed_free`) |
//! | remover step 4: bitmap cleared, `FREE` not yet published | the same, with an empty bitmap | as above: `READY` again, users ask again (failpoint test `a_remover_killed_after_clearing_the_bitmap_leaves_the_object_ready`) |
//! | fork: prepare handler done (a word claimed for the child in the parent's name, the parent handle's bits copied to it), `fork` not yet returned | a word naming the parent, with its bits | nothing to repair while the parent lives: the word is live. Entries another parent thread pinned after the copy get the child word's bit from the parent handler, under the registry lock (so before any parent handle can be dropped), and again from the child handler. A parent that dies with the fork (no child) leaves a word naming a dead process: pruned by the next removal's or full table's scan |
//! | fork: child running, its handler not yet swapped its own word in | the child's inherited uses on a word naming the parent | while the parent lives: nothing, a removal refuses (failpoint test `a_fork_child_stopped_before_its_handler_keeps_its_inherited_objects`). A parent SIGKILLed here leaves the word naming a dead process, and a removal meanwhile may free objects the child holds references to: the child's handler, once its own bits are set, sees its parent gone and checks every pinned entry (still `READY` or `INITIALISING`, at the generation pinned); if one is not, the child **aborts** (failpoint test `a_fork_child_whose_parent_died_and_whose_inherited_object_was_removed_aborts`) |
//! | fork: prepare handler finds the attach table full (after freeing dead processes' words) | the sticky `UNLISTED` bit, set before `fork` (the child has no word to carry its inherited uses) | nothing to repair: from then on no removal of an object (or of the region) succeeds, the full-table rule (failpoint tests `a_fork_with_a_table_full_of_live_words_leaves_the_region_unlisted`; dead words freed and a word claimed instead: `a_fork_with_a_table_full_of_dead_words_protects_the_child`). A removal that read the life-cycle word before that `fork` reads it again after its scan of the bitmap, so it refuses too, even if the parent dropped its handle in between (failpoint test `a_removal_in_flight_across_a_full_table_fork_leaves_the_childs_object`). (A child whose claimed word was pruned under a live parent, by a misjudged probe or a peer's write, checks its inherited objects in its handler and aborts if one is gone.) |
//! | `FREE` published, waiters not yet woken | sleepers on a free entry | each re-checks after its slice (10 ms) and finds the name gone (failpoint test `a_remover_killed_before_waking_leaves_waiters_to_their_slice`) |
//! | creator: creation lock taken, directory not scanned | a lock naming a dead thread | the next creator probes it dead within a slice (10 ms) and takes it over (failpoint test `a_creator_killed_holding_the_creation_lock_is_taken_over`) |
//! | creator: entry `CLAIMED` (a `FREE` or `EMPTY` one), extent placed, name not published | a dead claim under a dead lock | the next creator probes the lock's holder dead within a slice (by its TID and recorded start time), takes the lock over and frees the claim (`FREE`: its extent is free space again) even if a new thread reused the dead creator's TID, then goes on (failpoint tests `a_creator_killed_after_claiming_an_entry_leaves_it_reusable`, `a_creator_killed_after_claiming_whose_tid_was_reused_is_taken_over`) |
//! | creator: `INITIALISING` published, lock not yet released (or released, `init` running) | the lock, and an abandoned initialisation | the lock as above; the entry by takeover: a creator of the name waiting on it probes the owner between slices and initialises it afresh (failpoint test `a_creator_killed_after_publishing_the_name_is_taken_over`), or a remover of the name probes the owner dead and frees the entry and its extent (failpoint test `a_creator_killed_after_publishing_the_name_leaves_an_entry_removal_frees`; a panicking `init`: `an_initialisation_that_panicked_can_be_removed_and_its_space_reused`) |
//! | getter: a dead or abandoned `INITIALISING` entry of its name seen, its user bit set in the entry, takeover CAS not yet made | the bit (set before the CAS so that probers find the taker's process a user: the creation protocol, `src/region/protocol.rs`) | the bit is cleared like any bit of a dead handle, by the next removal of the entry or the next claim of the handle's word; a taker that lives on but loses (its CAS, or the generation check) keeps it: its handle counts as a user of whatever the entry holds next (Limits); a getter SIGSTOPped here that resumes after the entry was freed, reused and abandoned by another object's creator (the same state word) wins the CAS but sees the entry's generation changed and gives the entry back as it found it, then looks again: it never initialises or hands out its stale copy's offset (failpoint test `a_stale_takeover_of_a_reused_abandoned_entry_leaves_the_new_objects_alone`) |
//!
//! # Limits
//!
//! - As for every owner probe: the processes sharing a region must share a PID
//!   namespace. A handle in another namespace has its attach-table word probed as dead
//!   (or as another, live process): its bits do not protect it, an object it holds can be
//!   removed under it, and the next object placed there is then aliased.
//! - A dead remover's TID reused by a new thread reads as alive if that thread's process
//!   holds a live attach-table word of the region (or where its process cannot be told:
//!   see the creation protocol's Limits, `src/region/protocol.rs`): its entry then waits out the region's
//!   timeout for every caller, for as long as that thread lives. (The creation
//!   lock's holder also records its start time, so a creator that died holding the lock
//!   and whose TID was reused is taken over, and its claim freed, except in the cases
//!   [`Region`]'s creation protocol lists: start times that cannot tell the two threads
//!   apart (an unreadable `/proc`, a holder killed between its CAS and its record, two
//!   start times in one clock tick, an `execve` from a non-main thread, another time
//!   namespace), or the generation's wrap.)
//! - Fork: a parent SIGKILLed between `fork` and its child's handler (which swaps the
//!   child's own word into the word the prepare handler claimed in the parent's name)
//!   leaves the child's inherited uses on a word naming a dead process: a removal in that
//!   window may free objects the child holds references to. The child's handler then
//!   aborts the child (see the crash windows): it cannot run on safely, and a `fork`
//!   handler has no way to report an error (a removal still `REMOVING` at that moment
//!   counts as done: the child aborts even if it would have been refused). A child
//!   that `exec`s after a `fork` that ran the handlers (libc `fork`, std's `Command` when
//!   it forks) keeps a live word with all its parent's bits: every object the parent used
//!   stays unremovable (`InUse` lists the new program's pid) until that program exits.
//! - `fork` inside an `init` closure is not supported: the child continues `init` on an
//!   entry that names the parent's thread; once the parent is gone the entry counts as an
//!   abandoned initialisation, which a removal frees (its bitmap unchecked) and a creator
//!   may reuse while the child still writes to it.
//! - A bit is per handle, not per reference: a long-lived handle that once asked for a
//!   name keeps it unremovable until dropped, whether or not it still holds a reference.
//!   The bit stays on the entry, not the object: a getter whose pin failed (the name was
//!   being removed) and a taker whose takeover did not happen (another process won, or
//!   the entry was freed and reused meanwhile) count as users of whatever object the entry
//!   holds next, which then cannot be removed (`InUse` names them) until they drop their
//!   handles. (Clearing such a bit could strip the one another thread of the same handle
//!   set to pin that very entry.)
//! - An entry whose generation a peer left odd (or that keeps failing a consistent copy
//!   while its state word holds) is skipped by lookups and removals after a bounded number
//!   of tries: other names stay reachable; its own name is lost (a `get_or_*` of it finds
//!   it under the creation lock and waits out the timeout).
//! - The bitmap is region memory: a process writing the region can clear other
//!   handles' bits and have an object removed under them (as it can zero their attach
//!   words, see [`lifecycle`](super::lifecycle)). Removal trusts the processes that can
//!   write the region.

use std::path::Path;
use std::time::Instant;

use crate::owner;
use crate::sync::{AtomicU64, Ordering};

use super::error::RemoveObjectError;
use super::file::{Region, RegionOptions};
use super::format::{ATTACH_SLOTS, Entry, EntrySnapshot, Geometry, Raw, life, state};
use super::protocol::{Seen, Torn, check_name, deadline_after, transition, wait_on};

/// The bit of attach-table word `slot` in an entry's user bitmap: `(word, mask)`.
#[inline]
pub(super) fn user_bit(slot: u32) -> (usize, u64) {
    (((slot / 64) & 1) as usize, 1u64 << (slot % 64))
}

/// The entries a handle is a user of (its bit is set in their bitmaps and they were
/// `READY` after): one local bit per directory entry. Shared between the handle and its
/// attachment (the fork handlers read it).
#[derive(Debug)]
pub(super) struct Pins(Box<[AtomicU64]>, Box<[AtomicU64]>);

impl Pins {
    /// A set for `capacity` entries, empty.
    pub(super) fn new(capacity: u32) -> Self {
        Pins(
            (0..capacity.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        )
    }

    /// The generation entry `i` had when it was pinned (meaningful while pinned).
    pub(super) fn generation(&self, i: u32) -> Option<u64> {
        // Relaxed: written before the release that set the pin, which the caller's
        // acquire load (`has`, `iter`) of the pin read.
        self.1.get(i as usize).map(|g| g.load(Ordering::Relaxed))
    }

    /// Whether entry `i` is pinned. A pin is per entry, not per object: it proves only
    /// that the object the entry held when it was pinned is still there (this handle's
    /// bit keeps it), so a caller holding a copy of the entry's fields must also check
    /// that the entry's generation is still the copy's ([`Pins::holds`]).
    #[inline]
    pub(super) fn has(&self, i: u32) -> bool {
        // Acquire: pairs with the release in `set`: the pinning thread's `SeqCst` load of
        // a `READY` state (which came after the creator's release of the entry's
        // generation) happens before what the caller loads next, so a generation it
        // loads is the pinned object's.
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Whether entry `e` (index `i`) is pinned and still holds the object of generation
    /// `generation` (a consistent copy's): then that object is this handle's to hand out.
    #[inline]
    pub(super) fn holds(&self, i: u32, e: &Entry, generation: u64) -> bool {
        // Acquire (in `has`), then Acquire: see `has`. While pinned the entry is not
        // reused (this handle's bit refuses every removal but its own, under `&mut`; an
        // abandoned initialisation, which a removal frees without looking at the bitmap,
        // is unpinned before it is abandoned), so the generation stays the pinned
        // object's. Memory safety rests on the bit, which is per entry and stays while
        // the handle lives, so it also protects any later object of the entry; the
        // generation check keeps a stale copy from naming such an object.
        self.has(i) && e.generation.load(Ordering::Acquire) == generation
    }

    /// Pins entry `e` (index `i`), whose object this thread has just checked `READY` (or
    /// owns): the entry cannot be reused while pinned, so its generation is the object's.
    pub(super) fn set(&self, i: u32, e: &Entry) {
        if let Some(g) = self.1.get(i as usize) {
            // Relaxed (both): the entry is fixed (see above) and its generation was
            // published before the state the caller checked; the store is published by
            // the release below.
            g.store(e.generation.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if let Some(w) = self.0.get((i / 64) as usize) {
            // Release: pairs with the acquire load in `has` (see there).
            w.fetch_or(1 << (i % 64), Ordering::Release);
        }
    }

    /// Unpins entry `i`: under `&mut Region` (removal), or by the thread that owns the
    /// entry's abandoned initialisation (the object was never handed out).
    pub(super) fn clear(&self, i: u32) {
        if let Some(w) = self.0.get((i / 64) as usize) {
            // Relaxed: no reference to the entry's object lives (see above), and a pin set
            // again later is set by a thread that took the entry over after the owner's
            // release transition, which comes after this store.
            w.fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
        }
    }

    /// The pinned entries, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(k, w)| {
            // Acquire: see `has`.
            let bits = w.load(Ordering::Acquire);
            (0..64u32)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| k as u32 * 64 + b)
        })
    }
}

/// Clears the bit of attach-table word `slot` in every entry: a handle that just claimed
/// the word (bits a dead previous holder left) or is releasing it. Atomics only (the fork
/// child handler calls it).
pub(super) fn clear_slot_bits(raw: Raw<'_>, geo: &Geometry, slot: u32) {
    let (word, bit) = user_bit(slot);
    for i in 0..geo.capacity {
        let Some(e) = raw.entry(geo, i) else { break };
        // Relaxed load: a hint to skip the RMW. SeqCst RMW: a release of the handle's
        // uses; ordered with the `SeqCst` claim or release of its attach-table word.
        if e.users[word].load(Ordering::Relaxed) & bit != 0 {
            e.users[word].fetch_and(!bit, Ordering::SeqCst);
        }
    }
}

/// Sets the bit of word `to` in every entry where word `from`'s bit is set: the fork
/// prepare handler's copy of a parent handle's uses to the word it claimed for the child.
/// Atomics only, no allocation. Entries where `from`'s bit is clear get `to`'s cleared
/// (left by a previous holder of `to`).
pub(super) fn copy_slot_bits(raw: Raw<'_>, geo: &Geometry, from: u32, to: u32) {
    let (fw, fb) = user_bit(from);
    let (tw, tb) = user_bit(to);
    for i in 0..geo.capacity {
        let Some(e) = raw.entry(geo, i) else { break };
        // SeqCst (all): as for a getter's bit (module docs): the child's word is set
        // before the fork returns, in the one order a remover's bitmap loads are in.
        if e.users[fw].load(Ordering::SeqCst) & fb != 0 {
            e.users[tw].fetch_or(tb, Ordering::SeqCst);
        } else if e.users[tw].load(Ordering::Relaxed) & tb != 0 {
            e.users[tw].fetch_and(!tb, Ordering::SeqCst);
        }
    }
}

/// Sets the bit of word `slot` in every entry `pins` lists: the fork child handler, for
/// the references the child inherited. Atomics only.
pub(super) fn set_pinned_bits(raw: Raw<'_>, geo: &Geometry, slot: u32, pins: &Pins) {
    let (word, bit) = user_bit(slot);
    for i in pins.iter() {
        if let Some(e) = raw.entry(geo, i) {
            // SeqCst: as for a getter's bit.
            e.users[word].fetch_or(bit, Ordering::SeqCst);
        }
    }
}

/// Whether every entry `pins` lists still holds the object pinned (the fork child
/// handler, after setting its bits, when its parent died during the fork): its generation
/// unchanged and `READY` (or `INITIALISING`: pinned by a parent thread that was creating it,
/// whose reference this child never got). Atomics only.
pub(super) fn inherited_objects_held(raw: Raw<'_>, geo: &Geometry, pins: &Pins) -> bool {
    pins.iter().all(|i| {
        let Some(e) = raw.entry(geo, i) else {
            return false;
        };
        // SeqCst: as a getter's state load after setting its bit (module docs): a removal
        // whose CAS comes later in the one order sees the bit this child set before.
        let st = e.state.load(Ordering::SeqCst);
        matches!(state::phase(st), state::READY | state::INITIALISING)
            // Acquire: after the state load; the generation published with the object.
            && Some(e.generation.load(Ordering::Acquire)) == pins.generation(i)
    })
}

/// A dead remover left `e` in `seen` (`REMOVING`): the object was never freed, so it is
/// `READY` again (keeping the `WAITERS` bit; the owner field keeps the remover's TID).
pub(super) fn cancel_dead_removal(e: &Entry, seen: u32) {
    let ready = (seen & !state::PHASE) | state::READY;
    // Acquire: the dead remover's writes (a cleared bitmap) happen before ours; the
    // release half publishes nothing new (the object's fields are unchanged).
    if e.state
        .compare_exchange(seen, ready, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
        && state::has_waiters(seen)
    {
        crate::futex::wake_all(&e.state);
    }
}

/// Frees the `INITIALISING` entry `e` whose owner is dead (or `0`: its `init` panicked),
/// left in state `seen` at generation `generation`: `INITIALISING -> FREE` in one CAS.
/// Returns whether this thread freed it (a creator of the name may take it over first).
///
/// No user bitmap check is needed: no reference to an object is handed out before it is
/// `READY` but to its initialiser, which is dead (the kernel reports a thread dead only
/// after its address space is gone), or whose `init` unwound (the `&T` it was given
/// cannot outlive the closure, and `initialise` hands out nothing after a panic).
fn free_abandoned(e: &Entry, seen: u32, generation: u64) -> bool {
    // Acquire: the entry still holds the object the caller's consistent copy named (a
    // reuse in between would have moved the generation; one that also cycled the state
    // word back to `seen` in the few instructions to the CAS below could only be another
    // abandoned initialisation, which is as free to go).
    if e.generation.load(Ordering::Acquire) != generation {
        return false;
    }
    let free = state::make(0, state::FREE) | (seen & state::WAITERS);
    // AcqRel: acquire the dead owner's writes; release pairs with a later creator's
    // acquire claim of the FREE entry.
    let freed = e
        .state
        .compare_exchange(seen, free, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    if freed && state::has_waiters(seen) {
        crate::futex::wake_all(&e.state);
    }
    freed
}

/// How a region's data area is used, as [`Region::space`] and
/// [`ReadOnlyRegion::space`](super::ReadOnlyRegion::space) report it: a snapshot, stale
/// as soon as it is made, whose numbers come from shared memory (the space counted used
/// is what a creator keeps clear of: extents clipped at the end of the data area).
///
/// # Examples
///
/// ```
/// use shmstate::{Counter, Region};
///
/// let mut region = Region::anonymous(1 << 16)?;
/// let before = region.space();
/// region.get_or_default::<Counter>("a")?;
/// region.get_or_default::<Counter>("b")?;
/// assert_eq!(region.space().used, 128);
/// region.remove("a")?;
/// let after = region.space();
/// // A 64-byte hole before "b", and the rest after it.
/// assert_eq!((after.used, after.free, after.free_extents), (64, before.free - 64, 2));
/// assert_eq!(after.largest_free, before.free - 128);
/// assert!(after.fragmentation() > 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpaceInfo {
    /// Bytes of the data area (the region's size less header, directory and attach table).
    pub data: u64,
    /// Bytes in the extents of named objects (each object's size rounded up to 64).
    pub used: u64,
    /// Bytes that new objects can be placed in: `data - used`.
    pub free: u64,
    /// The largest free piece: the largest object that fits now.
    pub largest_free: u64,
    /// Number of free pieces (holes left by removed objects, and the end of the area).
    pub free_extents: u32,
    /// Bytes free after the last object.
    pub tail: u64,
}

impl SpaceInfo {
    /// The external fragmentation of the free space, from 0 (all free bytes in one piece,
    /// or none free) towards 1: `1 - largest_free / free`.
    pub fn fragmentation(&self) -> f64 {
        if self.free == 0 {
            0.0
        } else {
            1.0 - self.largest_free as f64 / self.free as f64
        }
    }
}

/// The space report of `raw` (loads only: runs over a read-only mapping).
pub(super) fn space_of(raw: Raw<'_>, geo: &Geometry) -> SpaceInfo {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for i in 0..geo.capacity {
        let Some(e) = raw.entry(geo, i) else { break };
        // Acquire: pairs with the release transitions that published the fields.
        let st = e.state.load(Ordering::Acquire);
        if matches!(
            state::phase(st),
            state::INITIALISING | state::READY | state::REMOVING
        ) && let Some(snap) = EntrySnapshot::read_consistent(e)
            && let Some(sp) = snap.reserved(geo)
        {
            spans.push(sp);
        }
    }
    spans.sort_unstable();
    let mut s = SpaceInfo {
        data: geo.total.saturating_sub(geo.data_start) as u64,
        ..SpaceInfo::default()
    };
    let mut cur = geo.data_start;
    for (off, ext) in spans.into_iter().chain(core::iter::once((geo.total, 0))) {
        if off > cur {
            let gap = (off - cur) as u64;
            s.free += gap;
            s.free_extents += 1;
            s.largest_free = s.largest_free.max(gap);
            if off == geo.total {
                s.tail = gap;
            }
        }
        cur = cur.max(off.saturating_add(ext).min(geo.total));
    }
    s.used = s.data - s.free;
    s
}

impl Region {
    /// Removes the object `name`, freeing its directory entry and its space for later
    /// objects, if no other live handle (of any process) has asked for it: see the
    /// [rule](super::remove#the-rule). `&mut self` proves this handle holds no reference
    /// to it; a fresh handle (`Region::open(path)?.remove(name)`, or
    /// [`Region::remove_object`]) is the usual way.
    ///
    /// A few atomics and, for each other handle that used the object, a liveness probe of
    /// its process (a syscall or two): not a hot path.
    ///
    /// # Errors
    ///
    /// - [`RemoveObjectError::NotFound`]: no object has this name. (An abandoned
    ///   initialisation of the name, whose creator died or whose `init` panicked, is
    ///   freed: `Ok`.)
    /// - [`RemoveObjectError::InUse`]: handles of these live processes asked for it; drop
    ///   them first. Nothing changed.
    /// - [`RemoveObjectError::Unlisted`]: the region had a handle without an attach-table
    ///   word (also a `fork` child for which the full table had no word): no object of it
    ///   is ever removed.
    /// - [`RemoveObjectError::InvalidName`], [`RemoveObjectError::Timeout`] (another live
    ///   process kept the entry busy past the region's timeout),
    ///   [`RemoveObjectError::Corrupt`].
    ///
    /// # Fork children
    ///
    /// A child forked while this process holds handles inherits their references; the
    /// fork handlers list the child before `fork` returns, so a removal refuses while the
    /// child lives. If the parent is killed during the `fork` call (or the word claimed
    /// for the child is taken from it), a removal may succeed in the window before the
    /// child's handler runs; the handler then checks every object the child inherited and, if one is gone,
    /// prints one line to stderr (`shmstate: an object this fork child inherited a
    /// reference to was removed during the fork (...); aborting`) and aborts the child
    /// (`SIGABRT`, before any of its own code runs after `fork`): its references could
    /// read another object's bytes, and a fork handler cannot return an error. Do not
    /// `fork` inside an `init` closure: the child would go on initialising an entry that
    /// names the parent's thread, which a removal may free once the parent is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Counter, Region, RemoveObjectError};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-rmobj-{}", std::process::id()));
    /// let user = Region::create(&path, 1 << 16)?;
    /// user.get_or_default::<Counter>("jobs")?.add(1);
    ///
    /// let mut admin = Region::open(&path)?; // as another process would
    /// let err = admin.remove("jobs").unwrap_err();
    /// assert!(matches!(err, RemoveObjectError::InUse { ref pids, .. } if pids == &[std::process::id()]));
    /// drop(user); // its references are gone with it
    /// admin.remove("jobs")?;
    /// assert_eq!(admin.get_or_default::<Counter>("jobs")?.get(), 0, "a new object");
    /// # drop(admin); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&mut self, name: &str) -> Result<(), RemoveObjectError> {
        check_name(name).map_err(|_| RemoveObjectError::InvalidName {
            name: name.to_owned(),
            reason: name_reason(name),
        })?;
        let deadline = deadline_after(self.timeout);
        let me = owner::current();
        loop {
            let Some((index, e, s)) = self.find_for_removal(name, deadline)? else {
                // An abandoned initialisation of the name, freed.
                return Ok(());
            };
            let removing = state::make(me, state::REMOVING) | (s & state::WAITERS);
            // SeqCst: remover step 1, the remover's write of the Dekker pair (module docs).
            if e.state
                .compare_exchange(s, removing, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                if Instant::now() >= deadline {
                    return Err(RemoveObjectError::Timeout);
                }
                continue;
            }
            // The entry cannot change now (only a remover leaves REMOVING): check that it
            // is still `name` (its fields were read before the CAS, and the entry may have
            // been removed and re-created in between with the same state word).
            if EntrySnapshot::read(e).name_bytes() != Some(name.as_bytes()) {
                transition(e, me, state::REMOVING, state::make(me, state::READY));
                if Instant::now() >= deadline {
                    return Err(RemoveObjectError::Timeout);
                }
                continue;
            }
            crate::failpoint::hit(crate::failpoint::Point::RegionObjectRemoving);
            return self.finish_removal(name, index, e, me);
        }
    }

    /// Removal steps 2 to 4 for entry `index`, which this thread moved to `REMOVING`.
    fn finish_removal(
        &self,
        name: &str,
        index: u32,
        e: &Entry,
        me: u32,
    ) -> Result<(), RemoveObjectError> {
        let raw = self.raw();
        let geo = self.geo;
        let cancel = || {
            transition(e, me, state::REMOVING, state::make(me, state::READY));
        };
        // SeqCst: remover step 2, paired with an unlisted opener's `UNLISTED` write.
        let unlisted = raw
            .header()
            .is_none_or(|h| h.life.load(Ordering::SeqCst) & life::UNLISTED != 0);
        let my_slot = self.life.slot();
        if unlisted || my_slot.is_none() {
            cancel();
            return Err(RemoveObjectError::Unlisted);
        }
        crate::failpoint::hit(crate::failpoint::Point::RegionObjectLifeChecked);
        let mut pids: Vec<u32> = Vec::new();
        // SeqCst: remover step 3, the remover's loads of the Dekker pair.
        let seen = [
            e.users[0].load(Ordering::SeqCst),
            e.users[1].load(Ordering::SeqCst),
        ];
        let mut stale = [0u64; 2];
        for k in 0..ATTACH_SLOTS {
            let (word, bit) = user_bit(k);
            if seen[word] & bit == 0 {
                continue;
            }
            if Some(k) == my_slot {
                stale[word] |= bit;
                continue;
            }
            // SeqCst: as every load of a table word by a removal (lifecycle).
            let w = raw
                .attach_slot(&geo, k)
                .map_or(0, |s| s.load(Ordering::SeqCst));
            if w != 0 && super::lifecycle::word_is_alive(w) {
                let pid = super::format::slot::pid(w);
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            } else {
                stale[word] |= bit;
            }
        }
        crate::failpoint::hit(crate::failpoint::Point::RegionObjectUsersProbed);
        // SeqCst: step 2 again, after the scan. A fork that found the attach table full
        // sets `UNLISTED` before `fork` (the prepare handler), and its child then has no
        // word and no bits: the parent's handle is its only stand-in. If the scan above
        // found that handle gone (its bit cleared, or its word released: both `SeqCst`,
        // in `Attachment::release`), it was dropped after the `fork`, so after the
        // `UNLISTED` store (`SeqCst`, in the same thread before `fork`); this load comes
        // after the scan's load that saw the drop, so in the single order of `SeqCst`
        // operations it comes after that store, and sees it. Without this second look, a
        // removal that passed step 2 before the fork would free the child's object.
        let unlisted_now = raw
            .header()
            .is_none_or(|h| h.life.load(Ordering::SeqCst) & life::UNLISTED != 0);
        if pids.is_empty() && unlisted_now {
            cancel();
            return Err(RemoveObjectError::Unlisted);
        }
        if !pids.is_empty() {
            // Nothing is cleared: this handle keeps its own bit (it keeps its pin, and may
            // hold references through other threads' calls), and a word read free or dead
            // above may have been claimed since by a fork child whose inherited bit the
            // prepare handler just copied there. Stale bits of free and dead words go when
            // the word's next holder claims it (`clear_slot_bits`, `copy_slot_bits`).
            cancel();
            return Err(RemoveObjectError::InUse {
                name: name.to_owned(),
                pids,
            });
        }
        // Only the bits read above, all of dead or free words (or this handle's): a bit
        // set since belongs to a getter that reads the state after setting it (and finds
        // the entry REMOVING, FREE or reused with its bit intact); erasing it could let
        // that getter pin a later object of the entry without a bit.
        // Relaxed: published with the entry by the release transition to FREE.
        e.users[0].fetch_and(!stale[0], Ordering::Relaxed);
        e.users[1].fetch_and(!stale[1], Ordering::Relaxed);
        crate::failpoint::hit(crate::failpoint::Point::RegionObjectUsersCleared);
        self.pins.clear(index);
        if !transition(e, me, state::REMOVING, state::make(0, state::FREE)) {
            return Err(RemoveObjectError::Corrupt(format!(
                "entry {index} changed owner while `{name}` was being removed"
            )));
        }
        Ok(())
    }

    /// The entry holding `name`, `READY`, with the state word seen. Waits for an entry of
    /// the name being created or removed (returning a dead remover's to `READY`). An
    /// abandoned initialisation of the name (its creator died, or its `init` panicked) is
    /// freed here: `None`.
    fn find_for_removal(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<(u32, &Entry, u32)>, RemoveObjectError> {
        let raw = self.raw();
        let geo = self.geo;
        let mut torn = Torn::default();
        let mut i = 0;
        while i < geo.capacity {
            let Some(e) = raw.entry(&geo, i) else {
                return Err(RemoveObjectError::Corrupt(format!(
                    "entry {i} outside the region"
                )));
            };
            // Acquire: as in a lookup (pairs with the release transitions).
            let s = e.state.load(Ordering::Acquire);
            let phase = state::phase(s);
            match phase {
                state::EMPTY => break,
                state::INITIALISING | state::READY | state::REMOVING => {
                    let Some(snap) = EntrySnapshot::read_consistent(e) else {
                        // Being reused right now: look again; or garbage: skip it.
                        if torn.garbage(e, i, s) {
                            i += 1;
                        } else if Instant::now() >= deadline {
                            return Err(RemoveObjectError::Timeout);
                        }
                        crate::sync::spin_loop();
                        continue;
                    };
                    if snap.name_bytes() != Some(name.as_bytes()) {
                        i += 1;
                        continue;
                    }
                    if phase == state::READY {
                        return Ok(Some((i, e, s)));
                    }
                    match wait_on(e, s, deadline, Some(self))
                        .map_err(|_| RemoveObjectError::Timeout)?
                    {
                        Seen::Changed => {}
                        Seen::OwnerDead if phase == state::REMOVING => cancel_dead_removal(e, s),
                        Seen::OwnerDead => {
                            if free_abandoned(e, s, snap.generation) {
                                return Ok(None);
                            }
                        }
                    }
                }
                _ => i += 1,
            }
        }
        Err(RemoveObjectError::NotFound {
            name: name.to_owned(),
        })
    }

    /// Removes the object `name` of the region file at `path`, through a handle opened
    /// for the purpose: [`Region::remove`] on `Region::open(path)`.
    ///
    /// # Errors
    ///
    /// [`RemoveObjectError::Open`] if the region cannot be opened; otherwise as
    /// [`Region::remove`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Counter, Region};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-rmpath-{}", std::process::id()));
    /// drop(Region::create(&path, 1 << 16)?.get_or_default::<Counter>("old").map(|_| ())?);
    /// Region::remove_object(&path, "old")?;
    /// assert!(Region::open(&path)?.entries().is_empty());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_object(path: impl AsRef<Path>, name: &str) -> Result<(), RemoveObjectError> {
        RegionOptions::new().open(path)?.remove(name)
    }

    /// How the data area is used: free space (removed objects' extents and the
    /// unallocated end), the largest free piece, fragmentation. Loads only.
    ///
    /// # Examples
    ///
    /// See [`SpaceInfo`].
    pub fn space(&self) -> SpaceInfo {
        // The data area as far as the region has grown now (`size` may look at the file
        // again, so it comes before the view).
        let size = self.size();
        space_of(
            self.raw(),
            &super::format::Geometry {
                total: size,
                ..self.geo
            },
        )
    }
}

fn name_reason(name: &str) -> &'static str {
    match check_name(name) {
        Err(super::error::GetError::InvalidName { reason, .. }) => reason,
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::TestWord;
    use super::super::protocol::first_fit;
    use super::*;

    #[test]
    fn first_fit_takes_the_lowest_gap_that_fits_whatever_the_spans() {
        // Gaps: [100, 200) 100 bytes, [300, 1000) 700 bytes.
        let spans = vec![(200, 100), (0, 100)];
        assert_eq!(first_fit(spans.clone(), 0, 1000, 64), (Some(100), 700));
        assert_eq!(first_fit(spans.clone(), 0, 1000, 128), (Some(300), 700));
        assert_eq!(first_fit(spans, 0, 1000, 701), (None, 700));
        // Overlapping and out-of-range garbage: never placed over any of it.
        let spans = vec![(64, 512), (128, 64), (960, usize::MAX), (2000, 64)];
        assert_eq!(first_fit(spans, 0, 1024, 64), (Some(0), 384));
        assert_eq!(first_fit(Vec::new(), 64, 64, 64), (None, 0));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn a_handle_marks_an_entry_once_and_answers_later_gets_from_its_pin_set() {
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<TestWord>("w").unwrap();
        let e = r.raw().entry(&r.geo, 0).unwrap();
        let (word, bit) = user_bit(r.life.slot().unwrap());
        assert_ne!(e.users[word].load(Ordering::SeqCst) & bit, 0, "marked");
        assert!(r.pins.has(0));
        // Clear the bit behind the handle's back: a later get does not set it again, so
        // it made no read-modify-write of the shared word.
        e.users[word].store(0, Ordering::SeqCst);
        r.get::<TestWord>("w").unwrap();
        r.get_or_default::<TestWord>("w").unwrap();
        assert_eq!(e.users[word].load(Ordering::SeqCst), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn an_extent_past_the_verified_end_reserves_up_to_it() {
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<TestWord>("w").unwrap();
        let mut snap = EntrySnapshot::read(r.raw().entry(&r.geo, 0).unwrap());
        let at = snap.offset as usize;
        assert_eq!(snap.reserved(&r.geo), Some((at, 64)));
        // Straddling the end this handle verified (a larger mapping's object, or garbage):
        // reserved up to that end, never dropped.
        snap.size = (r.geo.total - at + 4096) as u64;
        assert_eq!(snap.reserved(&r.geo), Some((at, r.geo.total - at)));
        snap.size = u64::MAX;
        assert_eq!(snap.reserved(&r.geo), Some((at, r.geo.total - at)));
        // Wholly past it: nothing here to keep clear of; inside the header: never handed out.
        snap.offset = r.geo.total as u64;
        assert_eq!(snap.reserved(&r.geo), None);
        snap.offset = 64;
        assert_eq!(snap.reserved(&r.geo), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn removal_ignores_its_own_handle_and_dead_words_and_frees_the_entry() {
        let mut r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<TestWord>("w").unwrap();
        {
            let e = r.raw().entry(&r.geo, 0).unwrap();
            // A bit of word 127, which no live handle holds (free): ignored and cleared.
            let (word, bit) = user_bit(127);
            e.users[word].fetch_or(bit, Ordering::SeqCst);
        }
        r.remove("w").unwrap();
        let e = r.raw().entry(&r.geo, 0).unwrap();
        assert_eq!(state::phase(e.state.load(Ordering::SeqCst)), state::FREE);
        assert_eq!(e.users[0].load(Ordering::SeqCst), 0);
        assert_eq!(e.users[1].load(Ordering::SeqCst), 0);
        assert!(!r.pins.has(0));
        assert!(r.entries().is_empty());
        assert!(matches!(
            r.remove("w"),
            Err(RemoveObjectError::NotFound { .. })
        ));
        assert!(matches!(
            r.remove(""),
            Err(RemoveObjectError::InvalidName {
                reason: "empty",
                ..
            })
        ));
    }
}
