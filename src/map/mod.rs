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
//! | 0 | header, written once at creation: magic `"shmmap\x01\0"`, capacity, key_max, value_max, seed (2 words), geometry (bits 0..6 log2 of the stripes, 8..17 slots per stripe), a hash of the creator's boot id (rewritten once by the first process to open the map in another boot) |
//! | 1 | the map's entry count (bits 0..40; 40..64 a version bumped by each change; the rest of the line zero) |
//! | 2 .. 2 + stripes | one stripe head per line: lock (a robust [`RawMutex`](crate::RawMutex)), 4 zero bytes, structure sequence, entry count, write counter, 4 zero words |
//! | then | the slots, stripe after stripe, `slots_per_stripe` each, packed (not line-aligned) |
//!
//! A slot is `4 + ceil(key_max / 8) + ceil(value_max / 8)` words:
//!
//! | word | content |
//! |------|---------|
//! | 0 | sequence: odd while a writer writes the slot |
//! | 1 | meta: bits 0..2 state (0 empty, 1 full; 2 and 3 are garbage), 2..13 key length, 13..30 value length, 30..32 zero, 32..40 home slot in the stripe, 40..64 tag (bits 26..50 of the key's hash); an empty slot's meta is 0 |
//! | 2 | expiry: `CLOCK_MONOTONIC` nanoseconds, 0 = never |
//! | 3 | stamp: the stripe's write counter at the slot's last write (eviction order within the stripe) |
//! | 4 .. | key, little-endian words, zero-padded; then the value, likewise |
//!
//! # Hashing
//!
//! A key's hash is SipHash-2-4 (Aumasson and Bernstein's reference function, made to
//! resist hash flooding) of the key's bytes alone, keyed by the map's 16-byte seed as the
//! reference implementation reads its key (`k0` = seed bytes 0..8, `k1` = 8..16,
//! little-endian), computed in one pass over the key (checked against the reference
//! vector and the `siphasher` crate): the same in every process, build and Rust version. The seed is random (`getrandom`) per map, chosen at creation and stored in
//! the header ([`ByteMap::with_seed`] fixes it for tests). From the 64-bit hash `h`: stripe
//! = `h mod stripes` (a power of two), home slot = `(h >> 32) * slots_per_stripe >> 32`,
//! tag = bits 26..50 (clear of the stripe bits, at most 26).
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
//! (one load). Every change of it runs under a stripe lock, and a kill can only leave it
//! high, never low (see the crash table): the repair that follows such a kill (the next
//! writer of that stripe) lowers it to the sum of the stripes' counts plus one per stripe
//! locked at that moment, so a lost place comes back at the next repair.

//! # Protocol
//!
//! **Readers** (`get`, `get_with`, `contains`, `for_each`) read the header (validating it,
//! see "Hostile bytes"), hash the key, then, on its stripe: load the structure sequence
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
//!   map's count (fails `Full` at `capacity`) and adds 1 to the stripe's count.
//! - *remove* (backward-shift deletion, Knuth's Algorithm R): structure sequence odd;
//!   each later entry of the probe run whose home is not cyclically between the hole and
//!   itself is copied back into the hole (a slot write) and becomes the hole; the last
//!   hole is emptied (a slot write); structure sequence even; counts minus 1 (the
//!   stripe's, then the map's). No
//!   tombstones: the table after a removal is the table as if the key had never been
//!   inserted, so probe runs do not grow with churn.
//!
//! **Repair** (under the lock, as a structure change): (1) empty every slot whose
//! sequence is odd (a write cut short) or whose meta or key no writer makes (a key that
//! does not hash to this stripe, home and tag); (2) of two slots holding the same key (a
//! move copied but did not finish), empty the later; (3) re-home: move every entry that
//! has an empty slot between its home and itself into the first such slot (copy, then
//! empty the source), until none moves; (4) recount, and bring the map's count along by
//! the difference; (5) lower the map's count to the stripes' counts plus one per other
//! locked stripe, if it is above (see "Capacity"); then mark the lock consistent. Every step is itself a sequence of slot
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
//! | insert: its place reserved in the map's count, the stripe's count not updated (`MapCountsHalf`) | the map's count one high, no entry | the next writer of the stripe takes the lock over; its repair lowers the map's count (step 5) |
//! | slot write: sequence odd, entry partly written (`MapSlotWriting`) | a torn slot (a new entry: already counted) | readers of it see it busy, find the holder dead, lock, repair drops the slot and recounts: the key reads absent (≤ 1 ms + one stripe scan) |
//! | new entry written (`MapSlotWritten`) | the entry, counted | the next writer takes the lock over; repair finds nothing to fix |
//! | remove: the stripe's count updated, the map's not (`MapCountsHalf`) | the map's count one high | the repair by the next writer of the stripe lowers it (step 5) |
//! | remove: structure sequence odd, nothing moved (`MapShiftStarted`) | an odd structure sequence | readers find the holder dead and lock; repair finds the slots consistent, closes the sequence; the key stays present |
//! | remove: an entry copied back into the hole (`MapShiftCopied`) | two identical copies of one entry | repair drops the later copy, re-homes; the removed key is gone (its slot was overwritten), every other key present |
//! | remove: last hole emptied, sequence odd (`MapRemoveCleared`) | a finished removal, counts one high | repair recounts and closes the sequence |
//! | clear: some slots of a stripe emptied, structure sequence odd (`MapClearing`) | a stripe partly cleared, counts high | repair recounts and closes the sequence; the stripes not reached keep their entries, the ones done stay empty (`clear` is one stripe at a time anyway) |
//! | `insert_evicting`: evicting its victim, or the victim removed and the new entry not yet written | a removal or an insert cut short | as for the removal's or the insert's steps above: the victim present or gone, the new key absent (e.g. `MapShiftStarted`: both keys as before) |
//! | remove or repair: an entry being copied into a slot, its sequence odd (`MapCopying`) | a torn copy beside the intact source | repair drops the torn slot, re-homes the source if needed: every key present |
//! | repair: an entry copied to its new slot (`MapRepairMoved`) | two copies of one entry | the next repair (the lock still says `OwnerDied`) drops the later copy |
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
//!
//! # TTL and eviction
//!
//! [`insert_ttl`](ByteMap::insert_ttl) gives an entry a deadline on `CLOCK_MONOTONIC`,
//! which is one clock for all processes of one boot. A map in a file outlives the boot:
//! the header records the creator's boot (a hash of `/proc/sys/kernel/random/boot_id`),
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
//! is empty or locked at that moment.
//!
//! # Hostile bytes
//!
//! Any bytes may be found anywhere in the map. Every operation reads the header once and
//! validates it (magic, option ranges, and the size of the layout the header records
//! against the object's length, which comes from the process's own mapping: a few integer
//! checks) and uses only that local copy; a bad header is [`MapError::Corrupt`]. A
//! garbage map count or stripe count makes inserts fail `Full` or `len` read wrong until
//! the next repair recounts; a garbage boot word makes the next opener drop the entries
//! with a deadline. Every probe, shift and repair pass is
//! bounded by `slots_per_stripe`; the lengths and home slot in a meta word are checked
//! against the validated options before use, each time the word is read (another process
//! may rewrite it between two reads, even during a repair), and a slot with an impossible meta reads as another key
//! (readers) or makes the writer repair the stripe (a second failure is `Corrupt`).
//! Garbage in a lock word reads as a dead holder and is taken over. No byte pattern makes
//! an operation panic, read out of bounds, or loop without bound.

mod bytemap;
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

pub use bytemap::{ByteMapDeadline, Evicted, Update};
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
pub use typed::{Map, MapDeadline};
