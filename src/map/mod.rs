//! The shared hash map: Python's `Manager().dict()` without the server.
//!
//! [`ByteMap`] maps byte strings to byte strings; [`Map<K, V>`] is its typed facade for
//! plain-old-data keys and values (integers, floats, arrays, [`FixedStr<N>`],
//! `#[derive(Element)]` structs). Both live in a [`Region`](crate::Region) (created by
//! [`Region::map`](crate::Region::map) / [`Region::typed_map`](crate::Region::typed_map),
//! opened by [`Region::open_map`](crate::Region::open_map)) or on the heap. Every
//! operation is atomic with respect to every other process; readers take no lock and write
//! no shared memory on their fast path (behind a dead writer, or after 64 races in a row,
//! a reader falls back to the stripe's lock, which may repair the stripe); writers lock one
//! stripe of the table, never the whole map; a process
//! killed in the middle of a write leaves the map consistent after the next operation on
//! that stripe.
//!
//! # Examples
//!
//! ```
//! use shmstate::{ByteMap, MapOptions};
//!
//! let m = ByteMap::new(MapOptions::new(1000).key_max(32).value_max(64))?;
//! m.insert(b"alice", b"admin")?;
//! assert_eq!(m.get_with(b"alice", |v| v == b"admin")?, Some(true));
//! assert_eq!(m.incr(b"visits", 1, 0)?, 1);
//! assert_eq!(m.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Typed, with short strings as keys, shared with a forked child:
//!
//! ```
//! use shmstate::{FixedStr, Region};
//!
//! let region = Region::anonymous(1 << 20)?;
//! let stock = region.typed_map::<FixedStr<15>, u32>("stock", 100)?;
//! stock.insert(FixedStr::new("apples")?, 12)?;
//! // SAFETY: the child only uses the map and exits.
//! match unsafe { libc::fork() } {
//!     0 => {
//!         let _ = stock.update(&FixedStr::new("apples").unwrap(), |n| {
//!             shmstate::Update::Set(n.unwrap_or(0) - 2, ())
//!         });
//!         unsafe { libc::_exit(0) }
//!     }
//!     pid => unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) },
//! };
//! assert_eq!(stock.get(&FixedStr::new("apples")?), Some(10));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! The object is 64-byte lines (`#[repr(transparent)]` over them, slice-shaped: the
//! number of lines follows from the options):
//!
//! | lines | content |
//! |-------|---------|
//! | 0 | header, written once at creation: magic `"shmmap\x02\0"` (layout version 2; see "Hashing"), capacity, key_max, value_max, seed (2 words), geometry (bits 0..6 log2 of the stripes, 8..17 slots per stripe), a hash of the creator's boot id (rewritten once by the first process to open the map in another boot) |
//! | 1 | the map's entry count (bits 0..40; 40..64 a version bumped by each change), the slack flag (nonzero: the count may hold places no entry uses, see "Capacity"), the count word for which a scan last found nothing to lower (a hint), the rest of the line zero |
//! | 2 .. 2 + stripes | one stripe head per line: lock (a robust [`RawMutex`](crate::RawMutex)), 4 zero bytes, structure sequence, count word (bits 0..32 entries, 32..64 pending places), write counter, 4 zero words |
//! | then | the slots, stripe after stripe, `slots_per_stripe` each, packed (not line-aligned) |
//!
//! A slot is `4 + ceil(key_max / 8) + ceil(value_max / 8)` words:
//!
//! | word | content |
//! |------|---------|
//! | 0 | sequence: odd while a writer writes the slot |
//! | 1 | meta: bits 0..2 state (0 empty, 1 full; 2 and 3 are garbage), 2..13 key length, 13..30 value length, 30..32 zero, 32..40 home slot in the stripe, 40..64 tag (bits 26..50 of the key's hash); an empty slot's meta is 0 |
//! | 2 | expiry: `CLOCK_MONOTONIC` nanoseconds of the initial time namespace (see "TTL and eviction"), 0 = never |
//! | 3 | stamp: the stripe's write counter at the slot's last write (eviction order within the stripe) |
//! | 4 .. | key, little-endian words, zero-padded; then the value, likewise |
//!
//! # Hashing
//!
//! A key's hash is SipHash-1-3 (Aumasson and Bernstein's function with one compression
//! and three finalization rounds, the variant Rust's standard `HashMap` uses against
//! hash flooding) of the key's bytes alone, keyed by the map's 16-byte seed as the
//! reference implementation reads its key (`k0` = seed bytes 0..8, `k1` = 8..16,
//! little-endian), computed in one pass over the key (checked against the `siphasher`
//! crate): the same in every process, build and Rust version. The seed is random
//! (`getrandom`) per map, chosen at creation and stored in the header
//! ([`ByteMap::with_seed`] fixes it for tests). From the 64-bit hash `h`: stripe = `h mod
//! stripes` (a power of two), home slot = `(h >> 32) * slots_per_stripe >> 32`, tag = bits
//! 26..50 (clear of the stripe bits, at most 26).
//!
//! The hash is part of the layout: maps of layout version 1 (magic `"shmmap\x01\0"`,
//! made by earlier versions of the crate) hashed with SipHash-2-4. They live only in
//! regions of format version 7 or older, which this version refuses as a whole
//! (`OpenError::VersionMismatch`; `recreate_stale_format` replaces such a file); a map
//! header with that magic reads as corrupt here, as a version 2 map does to an older build.
//!
//! # Capacity
//!
//! For a capacity `n`: `stripes` = the smallest power of two ≥ `n / 128`, so a stripe's
//! mean load at capacity is `m = ceil(n / stripes)` ≤ 128; `slots_per_stripe` =
//! `max(ceil(4m / 3), m + 6·ceil(√m) + 4)`, at most 256 (load ≤ 0.75, and room for a
//! stripe load six standard deviations above the mean).
//!
//! What `capacity` guarantees: the map never holds more than `capacity` entries, and an
//! insert of a new key fails with [`InsertError::Full`] when the map holds `capacity`
//! entries, or when the key's stripe has no empty slot. With one stripe (`capacity` ≤ 128)
//! the stripe has at least `capacity` slots, so inserts succeed exactly until the map holds
//! `capacity` entries. With more stripes, a stripe fills before the map reaches `capacity`
//! only if it receives about six standard deviations more keys than the mean: for distinct
//! keys under a random seed, a probability below 2·10⁻⁹ per stripe (the Poisson tail at the
//! stripe's mean load, computed for every mean from 1 to 128), so below 2·10⁻³ for the
//! largest maps (2²⁰ stripes). A key chooser who knows the seed can fill one stripe on
//! purpose; the seed is not part of the API (it is in the header, for any process that
//! maps the map's memory).
//!
//! The map's count (line 1) is a reservation count: a writer adds a new entry's place to
//! it (an atomic add, undone if the count was already at `capacity`) before it writes the
//! entry, so concurrent inserts into different stripes cannot overshoot. `len` reads it
//! (one load). Every change of it runs under a stripe lock and is bracketed by two stores
//! of that stripe's count word: before it, the change's size joins the stripe's *pending
//! places* (and a subtraction lowers the stripe's entries); after it, it leaves them (and
//! an addition raises the entries). So at every moment the map's count holds at most a
//! stripe's entries plus its pending places for it, and a kill can only leave it high,
//! never low (see the crash table). An `insert_evicting` keeps its victim's place pending
//! in its stripe (moved there from the victim's stripe if it evicts elsewhere) and
//! writes the new entry into it: the map's count does not change, and no other insert can
//! take the place in between.
//!
//! The repair that follows a kill (the next writer of that stripe) recounts the stripe and
//! drops the dead writer's pending places, which the map's count may or may not hold: it
//! first sets the *slack flag* (also when its recount differs from the stripe's count),
//! then drops them; after its structure change it lowers the map's count to the sum over
//! the stripes of their entries and pending places, if it is above (if the flag is set or
//! the map reads full). That scan of the stripe heads (one line per stripe) gives up if a
//! writer changes the count meanwhile (every change bumps the count's version), and it
//! stops at the calling operation's deadline. The flag keeps the lost place remembered: a
//! writer that finds the map full while the flag is set (an `insert`, `add`, `update`,
//! `incr` or `insert_evicting` of a new key) runs the same scan before it fails `Full` or
//! evicts, up to 4 times while writers change the count during it, and up to 4 times more
//! if a racing insert takes the healed place before it reserves it; within its deadline.
//! If a scan finds nothing to lower while the flag stays set, the places other stripes
//! hold pending may be dead writers' whose stripes nobody writes: it takes those stripes'
//! locks over from dead holders (probing each holder once, never waiting: it holds its
//! own lock), whose repairs give the places back, and scans once more. A scan that still
//! finds nothing to lower (the pending places held by live writers, e.g. a stopped one)
//! is remembered: line 1 keeps the count word it read, version included, and full writers
//! skip the scans while the count word is unchanged; every change of the count changes
//! it, and so does every repair that drops pending places (it bumps the version after the
//! drop) or runs while the flag is set. (The version has 24 bits: a count word that comes
//! back after exactly 2²⁴ changes, with the same count, reads unchanged; a skipped scan
//! only delays a heal to the next change of the count.) The flag clears only when a scan
//! finds the count no higher than the stripes' entries. So a place a
//! killed writer held is never lost for good: on an idle map the repair gives it back, on
//! a busy one the first insert that needs it does, unless writers change the count during
//! each of its scans (the next full insert tries again). Until then `len` reads high by
//! the places such kills left (one per killed insert or removal).

//! # Protocol
//!
//! **Readers** (`get`, `get_with`, `contains`, `for_each`) read the header (validating it,
//! see "Hostile bytes"; a handle's use the copy it validated), hash the key, then, on its stripe: load the structure sequence
//! (Acquire; odd: busy), probe from the home slot — for each slot load its sequence
//! (Acquire; odd: busy), its meta; an empty slot ends the probe (absent); a full slot with
//! the key's tag and length whose key words equal the key is the entry: copy its expiry
//! and value, Acquire fence, recheck the slot's sequence — then Acquire fence and recheck
//! the structure sequence. A changed sequence retries; after 64 retries the reader falls
//! back to a read under the stripe lock. A busy sequence spins (loads only, 100 pauses),
//! then the reader checks the stripe lock's holder: alive, it sleeps a slice (50 µs
//! doubling to 800 µs) and retries; dead (or no holder beside an odd sequence: garbage),
//! it takes the lock, which repairs the stripe. A probe visits at most
//! `slots_per_stripe` slots. A reader stores to the map only in that fallback (taking the
//! lock, repairing).
//!
//! **Writers** lock the key's stripe (a robust `RawMutex`: a dead holder is taken over
//! within a slice, see [`lock::raw_mutex`](crate::lock::raw_mutex)); if it was taken over
//! from a dead holder (`OwnerDied`) or its structure sequence is odd, they repair the
//! stripe first. Then, probing as a reader does (reclaiming the expired entries they meet
//! by removing them):
//!
//! - *write a slot* (a new entry in the first empty slot of the probe run, or a new value
//!   in place): sequence odd (store + Release fence), store key, value, expiry, stamp,
//!   meta (Relaxed), sequence even (Release). A new entry first reserves its place in the
//!   map's count (pending in the stripe's count word; fails `Full` at `capacity`, after
//!   healing a flagged count, see "Capacity"), then counts it in the stripe's entries.
//! - *remove* (backward-shift deletion, Knuth's Algorithm R): structure sequence odd;
//!   each later entry of the probe run whose home is not cyclically between the hole and
//!   itself is copied back into the hole (a slot write) and becomes the hole; the last
//!   hole is emptied (a slot write); structure sequence even; counts minus 1 (the
//!   stripe's with one pending place, then the map's, then the pending place off). No
//!   tombstones: the table after a removal is the table as if the key had never been
//!   inserted, so probe runs do not grow with churn.
//!
//! **Repair** (under the lock, as a structure change): (1) empty every slot whose
//! sequence is odd (a write cut short) or whose meta or key no writer makes (a key that
//! does not hash to this stripe, home and tag); (2) of two slots holding the same key (a
//! move copied but did not finish), empty the later; (3) re-home: move every entry that
//! has an empty slot between its home and itself into the first such slot (copy, then
//! empty the source), until none moves; (4) recount, and bring the map's count along by
//! the difference (setting the slack flag first if they differ); (5) if the dead writer
//! left pending places, set the slack flag, drop them, and bump the count's version; end
//! the structure change; (6) if the flag is set or the map reads full, lower the map's
//! count to the stripes' entries plus pending places, if it is above (one scan, see
//! "Capacity"); then mark the lock consistent. Every step is itself a sequence of slot
//! writes, so a repair killed midway leaves a state the next repair finishes.
//!
//! After a kill, every key is either fully present with a value some writer wrote, or
//! absent: a slot whose write was cut short is dropped, so an update in place that was
//! killed drops the key (the old value is partly overwritten).
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves (a SIGSTOP leaves the same until the process
//! continues: readers of the slot or stripe wait for it, probing it each slice; writers of
//! the stripe wait on its lock, as for any lock held by a stopped process):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | lock taken, nothing written | a lock naming a dead thread | the next writer (or a reader that needs the lock) takes it over within a slice (≤ 1 ms) and repairs (finds nothing to fix) |
//! | insert: its place reserved in the map's count (pending in the stripe's), the stripe's entries not updated (`MapCountsHalf`) | the map's count one high, no entry | the next writer of the stripe takes the lock over; its repair drops the pending place, flags the count and lowers it (step 5); if a concurrent count change defeats that, the first insert that finds the map full does (see "Capacity") |
//! | slot write: sequence odd, entry partly written (`MapSlotWriting`) | a torn slot (a new entry: already counted) | readers of it see it busy, find the holder dead, lock, repair drops the slot and recounts: the key reads absent (≤ 1 ms + one stripe scan) |
//! | new entry written (`MapSlotWritten`) | the entry, counted | the next writer takes the lock over; repair finds nothing to fix |
//! | remove: the stripe's entries updated (one place pending), the map's count not (`MapCountsHalf`) | the map's count one high | as for the insert's `MapCountsHalf` |
//! | remove: structure sequence odd, nothing moved (`MapShiftStarted`) | an odd structure sequence | readers find the holder dead and lock; repair finds the slots consistent, closes the sequence; the key stays present |
//! | remove: an entry copied back into the hole (`MapShiftCopied`) | two identical copies of one entry | repair drops the later copy, re-homes; the removed key is gone (its slot was overwritten), every other key present |
//! | remove: last hole emptied, sequence odd (`MapRemoveCleared`) | a finished removal, counts one high | repair recounts and closes the sequence |
//! | clear: some slots of a stripe emptied, structure sequence odd (`MapClearing`) | a stripe partly cleared, counts high | repair recounts and closes the sequence; the stripes not reached keep their entries, the ones done stay empty (`clear` is one stripe at a time anyway) |
//! | clear (or a repair's recount): a stripe's entries lowered by `n` (`n` places pending), the map's count not yet (`MapCountsHalf`); killed, or stopped while another stripe's repair scans the counts | the map's count `n` high | killed: as for the insert's `MapCountsHalf`. Stopped: a repair elsewhere counts the stripe at its entries plus `n`, so it leaves the count alone and the clear's own update, when it continues, makes it exact |
//! | `insert_evicting`: evicting its victim | a removal cut short | as for the removal's steps above: the victim present or gone, the new key absent (e.g. `MapShiftStarted`: both keys as before) |
//! | `insert_evicting`: the victim removed, its place pending in the key's stripe, the new entry not yet written (`MapEvicted`) | the victim gone, the new key absent, the map's count one high | the next writer of the key's stripe repairs it: drops the pending place, flags and lowers the count (step 5) |
//! | `insert_evicting` from another stripe: the victim removed there, its place pending in both stripes (`MapPlaceMoving`) | the victim gone, both locks naming a dead thread, the map's count one high | each stripe's next writer repairs it (step 5); the count comes back once both are repaired |
//! | `insert_evicting`: the new entry being written into the victim's place (`MapSlotWriting`) | the victim gone, a torn slot (counted) | as for an insert's `MapSlotWriting`: the repair drops the slot and recounts; the new key absent |
//! | remove or repair: an entry being copied into a slot, its sequence odd (`MapCopying`) | a torn copy beside the intact source | repair drops the torn slot, re-homes the source if needed: every key present |
//! | repair: an entry copied to its new slot (`MapRepairMoved`) | two copies of one entry | the next repair (the lock still says `OwnerDied`) drops the later copy |
//! | repair: the slack flag set for a dead writer's pending places, the places not yet dropped (`MapRepairFlagged`) | the places still pending, the lock naming a dead thread | the stripe's next writer repairs again: drops them; the flag is set, so a full insert heals the count (test `map_repair_killed_after_flagging_loses_no_place`) |
//! | repair: a dead writer's pending places dropped, the count's version not yet bumped (`MapRepairDropped`) | the count holding the places, the flag set, the lock naming a dead thread | the first full insert's scan lowers the count (test `map_repair_killed_after_dropping_a_place_loses_none`); if a scan was remembered as fruitless just before the drop, full writers skip scanning until the count changes or the stripe's next writer repairs it again (a repair while the flag is set bumps the version) |
//! | first open after a reboot: some stripes swept of their entries with a deadline, the old boot still recorded | some stripes swept, others not | the next opener sweeps again (taking a dead holder's lock over); a stripe lock held by a stopped process makes openers fail [`MapOpenError::Timeout`] at the region's timeout (test `the_first_open_after_a_reboot_gives_up_at_the_regions_timeout`) |
//! | any step, SIGSTOP | a live holder | not repaired while it lives. Readers that meet its odd slot or structure sequence wait in slices, probing it: the untimed `get`, `get_with`, `contains` for as long as the stop lasts, the timed forms ([`ByteMap::try_get`], [`get_until`](ByteMap::get_until), [`with_deadline`](ByteMap::with_deadline)) until their deadline (`Timeout`). Readers of other slots of the stripe are not held up. Writers of the stripe wait on its lock: the untimed writes (`insert`, `add`, `replace`, `remove`, `compare_exchange`, `update`, `incr`, `insert_evicting`) as long as the stop lasts, their [`with_deadline`](ByteMap::with_deadline) forms until the deadline; `clear`, `purge_expired` and `for_each` (which may fall back to the lock) wait with no bound. A live unrelated thread whose TID a garbage lock word names beside an odd sequence holds them up the same way |
//!
//! # Waiting and deadlines
//!
//! No call waits for another process except behind a write in progress: a reader waits only
//! for a write in the middle of its key's slot or stripe (or, after 64 races in a row, for the
//! stripe's lock), a writer for its stripe's lock. A dead writer is found and repaired within
//! a slice; a live one that does not finish (stopped, or a long `update` closure) holds them
//! up until it does. [`ByteMap::with_deadline`] (and [`Map::with_deadline`]) bounds any
//! operation on a key: its methods mirror the map's and fail with `Timeout` at the deadline,
//! having changed nothing; [`ByteMap::try_get`] never waits beyond a brief bounded spin.
//! A handle's [`with_deadline`](ByteMapHandle::with_deadline) does the same with the
//! handle's copy of the header.
//!
//! # TTL and eviction
//!
//! [`insert_ttl`](ByteMap::insert_ttl) gives an entry a deadline on `CLOCK_MONOTONIC` of
//! the initial time namespace, which is one clock for all processes of one boot: a process
//! in a time namespace (a container's, say) takes its namespace's offset off the clock it
//! reads, so that its deadlines mean the same to every process (worked out once per
//! process by its first thread to read the clock, from its own or the main thread's
//! `timens_offsets`; where neither shows it, as after an `unshare(CLONE_NEWTIME)` by
//! both, its own clock counts as the initial namespace's). A map in a file outlives the
//! boot: the header records the creator's boot (a hash of `/proc/sys/kernel/random/boot_id`),
//! and the first process to open the map in another boot (through [`Region::map`](crate::Region::map),
//! [`Region::open_map`](crate::Region::open_map) or
//! [`Region::typed_map`](crate::Region::typed_map)) removes every entry with a deadline
//! before it records its own boot: after a reboot every deadline counts as passed.
//! Entries without a deadline and the eviction order (per-stripe write counters, no
//! clock) carry over. A writer reads the clock only for an entry with a deadline. From its deadline on the entry
//! reads as absent everywhere. It still takes its slot, and counts in `len`, until a
//! writer reclaims it: a writer removes every expired entry it meets on its key's probe
//! run, a writer that finds no room removes every expired entry of its stripe, and
//! [`purge_expired`](ByteMap::purge_expired) removes all of them. `insert`, `add` and
//! `insert_evicting` write entries without a deadline; `replace`, `compare_exchange`,
//! `update` and `incr` keep the entry's deadline.
//!
//! [`insert_evicting`](ByteMap::insert_evicting) makes room in a full map by evicting an
//! entry of the key's stripe: an expired one (it reclaims them first), else the one with
//! the oldest write stamp (least recently *written*, by the stripe's write counter:
//! readers write nothing, so reads do not refresh an entry). If the key's stripe holds no entry (the others hold
//! `capacity`), it evicts from the next stripe that holds one and whose lock is free at
//! that moment (`try_lock`: it never waits for a lock while holding one). It tells the
//! caller what it evicted ([`Evicted`]); it fails with `Full` only if every other stripe
//! is empty or locked at that moment. The victim's place goes straight to the new entry
//! (see "Capacity"): an insert elsewhere never takes it in between.
//!
//! # Hostile bytes
//!
//! Any bytes may be found anywhere in the map. Every operation reads the header and
//! validates it (magic, option ranges, and the size of the layout the header records
//! against the object's length, which comes from the process's own mapping: a few integer
//! checks) and works from that local copy; a bad header is [`MapError::Corrupt`]. (A
//! lookup that raced a writer validates it once more before it retries, so a header
//! rewritten in between makes the retry use the new copy, or fail `Corrupt`: never an
//! access outside the object.) A handle ([`ByteMap::handle`], [`Map::handle`]) validates
//! the header once, when it is made, and keeps that copy: its operations skip the header
//! (20 to 130 fewer instructions an operation, "Map handles" in `BENCHMARKS.md`). A
//! header rewritten afterwards is not seen by the handle: the copy fits the object, so
//! it leads nowhere outside it. (A rewrite to another header that validates, a new seed
//! or other key and value limits of the same slot size, is used by the map's own calls
//! and by later openers, while the handle keeps the old layout: the two then disagree on
//! where keys live, as any two layouts of the same bytes would, all inside the map.) A
//! garbage map count or stripe count makes inserts fail `Full` or `len` read wrong, or
//! lets the map exceed `capacity` (see "Limits"); a count raised by garbage stays raised
//! until the next repair of any stripe lowers it (a repair scans when the map reads full;
//! a recount that differs sets the slack flag); a garbage boot word makes the next opener drop the entries
//! with a deadline. Every probe, shift and repair pass is
//! bounded by `slots_per_stripe`; the lengths and home slot in a meta word are checked
//! against the validated options before use, each time the word is read (another process
//! may rewrite it between two reads, even during a repair), and a slot with an impossible meta reads as another key
//! (readers) or makes the writer repair the stripe (a second failure is `Corrupt`).
//! Garbage in a lock word reads as a dead holder and is taken over. No byte pattern makes
//! an operation panic, read out of bounds, or loop without bound.
//!
//! # Limits
//!
//! - Garbage counts can break `capacity`: the map's count is trusted (a peer that lowers
//!   it lets inserts take more than `capacity` entries, up to the map's slots), and so are
//!   the stripes' count words when a repair or a full insert lowers the map's count to
//!   their sum (a peer that zeroes a stripe's count word makes that sum too small; that
//!   stripe is recounted only by its own next repair). Never more than the slots, never
//!   out of bounds.
//! - A write of a new key (`insert`, `add`, `update`, `incr`, `insert_evicting`) on a full
//!   map whose slack flag is set scans every stripe head (one line per stripe, up to 8
//!   times, plus one pass over the stripes holding pending places) before it fails `Full`
//!   or evicts; the flag stays set while writers change the count during every scan, while
//!   a stopped (live) writer holds a pending place (as long as the stop lasts), or while a
//!   peer writes garbage into it. A timed call stops
//!   the scan at its deadline ([`ByteMap::try_get`] and the other `try_` forms after at most
//!   256 stripe heads).
//! - The first opener after a reboot (see "TTL and eviction") locks every stripe in turn,
//!   each within the region's [`timeout`](crate::RegionOptions::timeout): a stripe lock
//!   held by a stopped process makes [`Region::map`](crate::Region::map),
//!   [`open_map`](crate::Region::open_map) and [`typed_map`](crate::Region::typed_map) fail
//!   with [`MapOpenError::Timeout`] in every process that opens the map in that window,
//!   for as long as the stop lasts. A map reached through
//!   [`Region::get`](crate::Region::get) instead is not swept: its deadlines from the old
//!   boot are compared with the new clock until an opener above
//!   sweeps them. If the boot id cannot be read (`/proc` not mounted), no sweep happens.
//!   A map created while it could not be read records no boot, so its next opener that
//!   can read it removes its deadlines, as for a map of another boot: it cannot tell the
//!   two apart, and an entry removed early reads as a miss, where one kept with a
//!   deadline from another boot's clock could outlive its deadline by that boot's uptime.
//!   A failure that may pass (out of file descriptors or memory) is not kept, so the
//!   creator's later maps record the boot.

pub(crate) mod bytemap;
mod clock;
mod error;
mod fixed_str;
mod hash;
#[cfg(not(loom))]
mod inspect;
mod layout;
mod options;
mod read;
#[cfg(not(loom))]
mod region;
mod repair;
mod typed;
mod write;

pub use bytemap::{ByteMapDeadline, ByteMapHandle, Evicted, Update};
pub use error::{IncrError, InsertError, MapError, TooLong, UpdateError};
pub use fixed_str::FixedStr;
#[cfg(not(loom))]
pub use inspect::MapSnapshot;
#[cfg(not(loom))]
pub(crate) use inspect::decode;
pub use layout::ByteMap;
pub use options::{MAX_CAPACITY, MAX_KEY_LEN, MAX_VALUE_LEN, MapOptions};
#[cfg(not(loom))]
pub use region::MapOpenError;
pub use typed::{Map, MapDeadline, MapHandle};
