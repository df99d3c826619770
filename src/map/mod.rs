//! The shared hash map: Python's `Manager().dict()` without the server.
//!
//! [`ByteMap`] maps byte strings to byte strings; [`Map<K, V>`] is its typed facade for
//! plain-old-data keys and values (integers, floats, arrays, [`FixedStr<N>`],
//! `#[derive(Element)]` structs). Both live in a [`Region`](crate::Region) (created by
//! [`Region::map`](crate::Region::map) / [`Region::typed_map`](crate::Region::typed_map),
//! opened by [`Region::open_map`](crate::Region::open_map)) or on the heap. Every
//! operation is atomic with respect to every other process; readers take no lock and write
//! no shared memory; writers lock one stripe of the table, never the whole map; a process
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
//! | 0 | header, written once at creation: magic `"shmmap\x01\0"`, capacity, key_max, value_max, seed (2 words), 2 zero words |
//! | 1 | the map's entry count (one word; the rest zero) |
//! | 2 .. 2 + stripes | one stripe head per line: lock (a robust [`RawMutex`](crate::RawMutex)), 4 zero bytes, structure sequence, entry count, 5 zero words |
//! | then | the slots, stripe after stripe, `slots_per_stripe` each, packed (not line-aligned) |
//!
//! A slot is `4 + ceil(key_max / 8) + ceil(value_max / 8)` words:
//!
//! | word | content |
//! |------|---------|
//! | 0 | sequence: odd while a writer writes the slot |
//! | 1 | meta: state (empty 0 / full 1), key length, value length, home slot, 24-bit hash tag (bit layout on `Meta`) |
//! | 2 | expiry: `CLOCK_MONOTONIC` nanoseconds, 0 = never |
//! | 3 | stamp: `CLOCK_MONOTONIC` nanoseconds of the last write (eviction order) |
//! | 4 .. | key, little-endian words, zero-padded; then the value, likewise |
//!
//! # Hashing
//!
//! A key's hash is SipHash-2-4 (Aumasson and Bernstein's reference function, made to
//! resist hash flooding) of the key's bytes alone, keyed by the map's 16-byte seed as the
//! reference implementation reads its key (`k0` = seed bytes 0..8, `k1` = 8..16,
//! little-endian), computed with the `siphasher` crate: the same in every process, build and
//! Rust version. The seed is random (`getrandom`) per map, chosen at creation and stored in
//! the header ([`ByteMap::with_seed`] fixes it for tests). From the 64-bit hash `h`: stripe
//! = `h mod stripes` (a power of two), home slot = `(h >> 32) * slots_per_stripe >> 32`,
//! tag = bits 8..32.
//!
//! # Capacity
//!
//! For a capacity `n`: `stripes` = the smallest power of two ≥ `n / 128`, so a stripe's
//! mean load at capacity is `m = ceil(n / stripes)` ≤ 128; `slots_per_stripe` =
//! `max(ceil(4m / 3), m + 6·ceil(√m) + 4)`, at most 256 (load ≤ 0.75, and room for a
//! stripe load six standard deviations above the mean).
//!
//! What `capacity` guarantees: an insert of a new key fails with
//! [`InsertError::Full`] when the map holds `capacity` entries (by its entry count), or
//! when the key's stripe has no empty slot. With one stripe (`capacity` ≤ 128) the stripe
//! has at least `capacity` slots, so inserts succeed exactly until the map holds
//! `capacity` entries. With more stripes, a stripe fills before the map reaches `capacity`
//! only if it receives about six standard deviations more keys than the mean: for distinct
//! keys under a random seed, a probability below 2·10⁻⁹ per stripe (the Poisson tail at the
//! stripe's mean load, computed for every mean from 1 to 128), so below 2·10⁻³ for the
//! largest maps (2²⁰ stripes). A key chooser who knows the seed can fill one stripe on
//! purpose; the API does not expose the seed. After a crash
//! in the one-instruction window between a stripe's count update and the map's (see the
//! crash table), the map's count can lag by one, letting the map hold `capacity + 1`.
//!
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
//! `slots_per_stripe` slots. Readers never store to the map.
//!
//! **Writers** lock the key's stripe (a robust `RawMutex`: a dead holder is taken over
//! within a slice, see [`lock::raw_mutex`](crate::lock::raw_mutex)); if it was taken over
//! from a dead holder (`OwnerDied`) or its structure sequence is odd, they repair the
//! stripe first. Then, probing as a reader does (reclaiming the expired entries they meet
//! by removing them):
//!
//! - *write a slot* (a new entry in the first empty slot of the probe run, or a new value
//!   in place): sequence odd (store + Release fence), store meta, expiry, stamp, key,
//!   value (Relaxed), sequence even (Release). A new entry then adds 1 to the stripe's
//!   count and the map's.
//! - *remove* (backward-shift deletion, Knuth's Algorithm R): structure sequence odd;
//!   each later entry of the probe run whose home is not cyclically between the hole and
//!   itself is copied back into the hole (a slot write) and becomes the hole; the last
//!   hole is emptied (a slot write); structure sequence even; counts minus 1. No
//!   tombstones: the table after a removal is the table as if the key had never been
//!   inserted, so probe runs do not grow with churn.
//!
//! **Repair** (under the lock, as a structure change): (1) empty every slot whose
//! sequence is odd (a write cut short) or whose meta or key no writer makes (a key that
//! does not hash to this stripe, home and tag); (2) of two slots holding the same key (a
//! move copied but did not finish), empty the later; (3) re-home: move every entry that
//! has an empty slot between its home and itself into the first such slot (copy, then
//! empty the source), until none moves; (4) recount, and bring the map's count along by
//! the difference; then mark the lock consistent. Every step is itself a sequence of slot
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
//! | slot write: sequence odd, entry partly written (`MapSlotWriting`) | a torn slot | readers of it see it busy, find the holder dead, lock, repair drops the slot: the key reads absent (≤ 1 ms + one stripe scan) |
//! | new entry written, counts not updated (`MapSlotWritten`) | the entry, counts one low | repair recounts the stripe and adds 1 to the map's count |
//! | stripe count updated, map's not | the map's count one low | not repaired: the map may hold `capacity + 1` (one instruction wide; no failpoint) |
//! | remove: structure sequence odd, nothing moved (`MapShiftStarted`) | an odd structure sequence | readers find the holder dead and lock; repair finds the slots consistent, closes the sequence; the key stays present |
//! | remove: an entry copied back into the hole (`MapShiftCopied`) | two identical copies of one entry | repair drops the later copy, re-homes; the removed key is gone (its slot was overwritten), every other key present |
//! | remove: last hole emptied, sequence odd (`MapRemoveCleared`) | a finished removal, counts one high | repair recounts and closes the sequence |
//! | repair: an entry copied to its new slot (`MapRepairMoved`) | two copies of one entry | the next repair (the lock still says `OwnerDied`) drops the later copy |
//! | any step, SIGSTOP | a live holder | readers of the stripe wait in slices (bounded only by the holder's stop); writers wait on the lock |
//!
//! # TTL and eviction
//!
//! [`insert_ttl`](ByteMap::insert_ttl) gives an entry a deadline on `CLOCK_MONOTONIC`,
//! which is one clock for all processes of one boot. From its deadline on the entry
//! reads as absent everywhere. It still takes its slot, and counts in `len`, until a
//! writer reclaims it: a writer removes every expired entry it meets on its key's probe
//! run, a writer that finds no room removes every expired entry of its stripe, and
//! [`purge_expired`](ByteMap::purge_expired) removes all of them. `insert`, `add` and
//! `insert_evicting` write entries without a deadline; `replace`, `compare_exchange`,
//! `update` and `incr` keep the entry's deadline.
//!
//! [`insert_evicting`](ByteMap::insert_evicting) makes room in a full map by evicting an
//! entry of the key's stripe: an expired one (it reclaims them first), else the one with
//! the oldest write stamp (least recently *written*: readers write nothing, so reads do
//! not refresh an entry). If the key's stripe holds no entry (the others hold
//! `capacity`), it evicts from the next stripe that holds one and whose lock is free at
//! that moment (`try_lock`: it never waits for a lock while holding one). It tells the
//! caller what it evicted ([`Evicted`]); it fails with `Full` only if every other stripe
//! is empty or locked at that moment.
//!
//! # Hostile bytes
//!
//! Any bytes may be found anywhere in the map. Every operation reads the header once and
//! validates it (magic, option ranges, and the layout those options give against the
//! object's length, which comes from the process's own mapping) and uses only that local
//! copy; a bad header is [`MapError::Corrupt`]. Every probe, shift and repair pass is
//! bounded by `slots_per_stripe`; lengths in a meta word are checked against the
//! validated options before use, and a slot with an impossible meta reads as another key
//! (readers) or makes the writer repair the stripe (a second failure is `Corrupt`).
//! Garbage in a lock word reads as a dead holder and is taken over. No byte pattern makes
//! an operation panic, read out of bounds, or loop without bound.

mod bytemap;
mod error;
mod fixed_str;
mod hash;
mod layout;
mod options;
mod read;
#[cfg(not(loom))]
mod region;
mod repair;
mod typed;
mod write;

pub use bytemap::{Evicted, Update};
pub use error::{IncrError, InsertError, MapError, TooLong, UpdateError};
pub use fixed_str::FixedStr;
pub use layout::ByteMap;
pub use options::{MAX_CAPACITY, MAX_KEY_LEN, MAX_VALUE_LEN, MapOptions};
#[cfg(not(loom))]
pub use region::MapOpenError;
pub use typed::Map;
