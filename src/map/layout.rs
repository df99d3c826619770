//! The map's memory: header, count line, stripe heads and slots (the layout table of the
//! [module docs](super)), and the accessors every other part goes through.

#[cfg(not(loom))]
use core::ptr::{self, NonNull};

use crate::lock::RawMutex;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

use super::error::MapError;
use super::options::{
    Geometry, HEADER_LINES, MAX_CAPACITY, MAX_KEY_LEN, MAX_STRIPE_SLOTS, MAX_VALUE_LEN, MapOptions,
    SLOT_HEAD_WORDS,
};

/// Word 0 of the header: "shmmap" and the layout version 2 (keys hashed with SipHash-1-3;
/// version 1 hashed them with SipHash-2-4, and reads as corrupt here).
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"shmmap\x02\x00");

/// The most stripes a map has is `2^MAX_LOG_STRIPES` (`MAX_CAPACITY / 128`).
const MAX_LOG_STRIPES: u64 = 26;

/// Header word 6: the geometry the options gave at creation (bits 0..6: log2 of the
/// stripes; 8..17: slots per stripe; the rest zero).
#[derive(Clone, Copy)]
struct Packed(u64);

impl Packed {
    fn new(g: &Geometry) -> Packed {
        Packed(u64::from(g.stripes.trailing_zeros()) | (g.sps as u64) << 8)
    }
    #[inline]
    fn log_stripes(self) -> u64 {
        self.0 & 0x3F
    }
    #[inline]
    fn sps(self) -> u64 {
        (self.0 >> 8) & 0x1FF
    }
    #[inline]
    fn rest(self) -> u64 {
        self.0 & !0x1_FF3F
    }
}

/// A hash of this boot's `/proc/sys/kernel/random/boot_id` (never 0), read once per
/// process; 0 if it cannot be read. Header word 7 records the creator's: deadlines on
/// `CLOCK_MONOTONIC` mean nothing in another boot (see "TTL and eviction" in the
/// [module docs](super)).
///
/// A failure that may pass (out of file descriptors or memory) gives 0 for this call only:
/// the next call reads the file again, so that a process does not record "unknown" in
/// every map it creates for the rest of its life.
#[cfg(not(any(loom, miri)))]
pub(crate) fn boot_hash() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(&b) = BOOT.get() {
        return b;
    }
    let b = match std::fs::read("/proc/sys/kernel/random/boot_id") {
        Ok(id) => super::hash::sip(&[0; 16], id.trim_ascii()) | 1,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
            ) =>
        {
            return 0;
        }
        Err(_) => 0,
    };
    *BOOT.get_or_init(|| b)
}

/// The loom build, and Miri (whose isolation refuses to open `/proc`): no boot, as when
/// `/proc` is not mounted.
#[cfg(any(loom, miri))]
pub(crate) fn boot_hash() -> u64 {
    0
}

/// One 64-byte line of the map.
#[cfg(not(loom))]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [AtomicU64; 8]);

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Line, [u8; 64]);

#[cfg(not(loom))]
impl Line {
    pub(crate) fn new() -> Self {
        Line(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// A stripe's head: its writers' lock, its structure sequence and its entry count, alone on
/// a line.
#[repr(C, align(64))]
pub(crate) struct StripeHead {
    /// The stripe's writers' lock (robust: see [`RawMutex`]).
    pub(crate) lock: RawMutex,
    /// Unused (zero).
    _pad: AtomicU32,
    /// The structure sequence: odd while a writer moves or drops entries of the stripe
    /// (a remove's backward shift, `clear`, a repair); bumped by 2 around each such
    /// change, so a reader that raced one sees it changed and retries.
    pub(crate) seq: AtomicU64,
    /// The stripe's count word, written under the lock (Release stores):
    ///
    /// | bits | content |
    /// |------|---------|
    /// | 0..32 | entries in the stripe (exact once a repair has run) |
    /// | 32..64 | pending places: what the map's count may hold for the stripe beyond its entries while its writer changes both counts, or holds an evicted entry's place for a new one; 0 otherwise |
    pub(crate) count: AtomicU64,
    /// Writes of the stripe's slots so far (under the lock): the source of the slots'
    /// write stamps, the eviction order.
    pub(crate) writes: AtomicU64,
    /// Unused (zero).
    _rest: [AtomicU64; 4],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(StripeHead, [u8; 64]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(align_of::<StripeHead>(), 64);
// A meta's key length field (11 bits) holds every key length a map allows.
static_assertions::const_assert!(super::options::MAX_KEY_LEN <= 0x7FF);

impl StripeHead {
    #[cfg(loom)]
    fn new() -> Self {
        StripeHead {
            lock: RawMutex::new(),
            _pad: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            count: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            _rest: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A map of byte-string keys and values shared by processes: see the
/// [module docs](super) for the design and [`ByteMap::get`](ByteMap::get) and the
/// following methods for the operations.
///
/// Slice-shaped: `#[repr(transparent)]` over its 64-byte lines, whose number follows from
/// its [`MapOptions`]. Make one on the heap with [`ByteMap::new`], or in a region with
/// [`Region::map`](crate::Region::map).
///
/// # Examples
///
/// ```
/// use shmstate::{ByteMap, MapOptions};
///
/// let m = ByteMap::new(MapOptions::new(100))?;
/// assert_eq!(m.insert(b"apple", b"red")?, None);
/// let mut v = Vec::new();
/// assert!(m.get(b"apple", &mut v)?);
/// assert_eq!(v, b"red");
/// assert_eq!(m.remove(b"apple")?, Some(b"red".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(not(loom))]
#[repr(transparent)]
pub struct ByteMap {
    /// The lines: header (0), count (1), stripe heads (2..2 + stripes), slots. The length
    /// is process-local pointer metadata, never read from shared memory.
    lines: [Line],
}

/// A map of byte-string keys and values (the loom build: heap storage in loom atomics,
/// the same word layout with the stripe heads kept apart).
#[cfg(loom)]
pub struct ByteMap {
    words: Box<[AtomicU64]>,
    heads: Box<[StripeHead]>,
}

// SAFETY: For every `len` that `size_for` accepts (len >= 1, size within `isize`):
// (1) all-zero bytes are a valid map object: every operation reads the header first and
// reports an all-zero header as `Corrupt` (a region's `init` writes the header before the
// object is published); (2) every bit pattern is valid: the object is 64-byte lines of
// `AtomicU64`s, some of them viewed as `StripeHead`s (an `AtomicU32` pair and
// `AtomicU64`s, no padding), and every value the map reads is validated before use;
// (3) no pointers, nothing to drop; (4) `#[repr(transparent)]` over `[Line]`, `Line` and
// `StripeHead` are `#[repr(C, align(64))]`, 64 bytes, asserted above; (5) atomics are
// `Sync`, and every method is atomic operations on the lines; (6) `from_raw_parts` only
// builds a slice pointer of `len` lines at `ptr`, which covers `slice_size::<Line>(len)`
// bytes.
#[cfg(not(loom))]
unsafe impl crate::shared::Shared for ByteMap {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::MAP, crate::Elem::NONE);
    const ALIGN: usize = 64;

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        crate::shared::slice_size::<Line>(len)
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self> {
        let slice = ptr::slice_from_raw_parts_mut(ptr.as_ptr().cast::<Line>(), len);
        // SAFETY: `new_unchecked` needs a non-null pointer: the slice pointer's address is
        // `ptr`'s. The `as` cast keeps the length; `ByteMap` is `#[repr(transparent)]`
        // over `[Line]`.
        unsafe { NonNull::new_unchecked(slice as *mut ByteMap) }
    }
}

/// A slot's words (see the slot table in the [module docs](super)).
#[derive(Clone, Copy)]
pub(crate) struct Slot<'a> {
    w: &'a [AtomicU64],
    key_words: usize,
}

impl<'a> Slot<'a> {
    /// The slot's sequence: odd while a writer writes the slot.
    #[inline]
    pub(crate) fn seq(&self) -> &'a AtomicU64 {
        &self.w[0]
    }
    /// The meta word ([`Meta`]).
    #[inline]
    pub(crate) fn meta(&self) -> &'a AtomicU64 {
        &self.w[1]
    }
    /// The expiry: `CLOCK_MONOTONIC` nanoseconds of the initial time namespace
    /// ([`now_ns`](super::clock::now_ns)), 0 = never.
    #[inline]
    pub(crate) fn expiry(&self) -> &'a AtomicU64 {
        &self.w[2]
    }
    /// The stamp: the stripe's write counter at the slot's last write (eviction order).
    #[inline]
    pub(crate) fn stamp(&self) -> &'a AtomicU64 {
        &self.w[3]
    }
    /// The key's words.
    #[inline]
    pub(crate) fn key(&self) -> &'a [AtomicU64] {
        &self.w[SLOT_HEAD_WORDS..SLOT_HEAD_WORDS + self.key_words]
    }
    /// The value's words.
    #[inline]
    pub(crate) fn value(&self) -> &'a [AtomicU64] {
        &self.w[SLOT_HEAD_WORDS + self.key_words..]
    }
}

/// A slot's meta word:
///
/// | bits   | meaning                                         |
/// |--------|-------------------------------------------------|
/// | 0..2   | state: 0 = empty, 1 = full (2, 3: corrupt)      |
/// | 2..13  | key length (bytes, ≤ `key_max`)                 |
/// | 13..30 | value length (bytes, ≤ `value_max`)             |
/// | 30..32 | zero                                            |
/// | 32..40 | home slot in the stripe (< slots per stripe)    |
/// | 40..64 | tag: bits 26..50 of the key's hash              |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta(pub(crate) u64);

pub(crate) const EMPTY: u64 = 0;
pub(crate) const FULL: u64 = 1;

impl Meta {
    #[inline]
    pub(crate) fn full(key_len: usize, value_len: usize, home: usize, tag: u32) -> Meta {
        Meta(
            FULL | (key_len as u64) << 2
                | (value_len as u64) << 13
                | (home as u64 & 0xFF) << 32
                | (tag as u64) << 40,
        )
    }
    #[inline]
    pub(crate) fn state(self) -> u64 {
        self.0 & 3
    }
    #[inline]
    pub(crate) fn key_len(self) -> usize {
        ((self.0 >> 2) & 0x7FF) as usize
    }
    #[inline]
    pub(crate) fn value_len(self) -> usize {
        ((self.0 >> 13) & 0x1_FFFF) as usize
    }
    #[inline]
    pub(crate) fn home(self) -> usize {
        ((self.0 >> 32) & 0xFF) as usize
    }
    #[inline]
    pub(crate) fn tag(self) -> u32 {
        (self.0 >> 40) as u32
    }
    /// The same meta with another value length.
    #[inline]
    pub(crate) fn with_value_len(self, len: usize) -> Meta {
        Meta(self.0 & !(0x1_FFFF << 13) | (len as u64) << 13)
    }
    /// Whether this is a full slot's meta that `g` allows.
    #[inline]
    pub(crate) fn full_and_valid(self, g: &Geometry) -> bool {
        self.state() == FULL
            && self.0 & (3 << 30) == 0
            && self.key_len() <= g.options.key_max_len()
            && self.value_len() <= g.options.value_max_len()
            && self.home() < g.sps
    }
    /// Whether this is a full slot's meta with this tag and key length (and zero reserved
    /// bits): one mask and compare, the probe's test of every slot it passes. (The value
    /// length and home are checked by [`full_and_valid`](Self::full_and_valid) on a match.)
    /// For a key no longer than the map's key maximum, a match also proves the meta's key
    /// length within that maximum: the 11-bit field holds every allowed length exactly.
    #[inline(always)]
    pub(crate) fn is_full_with(self, tag: u32, key_len: usize) -> bool {
        const MASK: u64 = 3 | 0x7FF << 2 | 3 << 30 | 0xFF_FFFF << 40;
        self.0 & MASK == FULL | ((key_len as u64) & 0x7FF) << 2 | u64::from(tag) << 40
    }
    /// Whether this is a valid empty slot's meta (all zero).
    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.0 == EMPTY
    }
}

/// Whether an entry with `expiry` has expired at `now` (0 never expires).
#[inline]
pub(crate) fn expired(expiry: u64, now: u64) -> bool {
    expiry != 0 && now >= expiry
}

/// Packs `bytes` into little-endian words (zero-padded), calling `f(i, word)` for each.
#[inline]
pub(crate) fn for_each_word(bytes: &[u8], mut f: impl FnMut(usize, u64)) {
    let mut rest = bytes;
    let mut i = 0;
    while let Some((c, r)) = rest.split_first_chunk::<8>() {
        f(i, u64::from_le_bytes(*c));
        rest = r;
        i += 1;
    }
    if !rest.is_empty() {
        f(i, tail_word(rest));
    }
}

/// The little-endian word of the last `rest.len() < 8` bytes of a key or value,
/// zero-padded, read with at most three loads whatever the length (no byte loop): two
/// overlapping 4-byte loads from 4 bytes up, three single bytes below.
#[inline(always)]
pub(crate) fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!(n < 8, "a tail is shorter than a word");
    match (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
        (Some(lo), Some(hi)) => {
            // `hi` holds bytes `n - 4..n`; the bytes it shares with `lo` are equal, so
            // or-ing them is harmless.
            u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << (8 * (n - 4))
        }
        _ => match (rest.first(), rest.get(n / 2), rest.last()) {
            (Some(&a), Some(&b), Some(&c)) => {
                u64::from(a) | u64::from(b) << (8 * (n / 2)) | u64::from(c) << (8 * (n - 1))
            }
            _ => 0,
        },
    }
}

/// Copies `out.len()` bytes out of `words` with relaxed loads (a racy copy is rejected by
/// the caller's sequence check). `words` holds at least `out.len()` bytes (a shorter
/// `words` leaves the rest of `out` as it was).
///
/// Whole words first, then the last partial word: no iterator adapters and no call to
/// `memcpy` for a short value, which is what a lookup copies.
#[inline]
pub(crate) fn copy_out(words: &[AtomicU64], out: &mut [u8]) {
    let whole = out.len() / 8;
    let (head, tail) = out.split_at_mut(whole * 8);
    for (chunk, w) in head.chunks_exact_mut(8).zip(words) {
        // Relaxed: the caller's sequence recheck (or its lock) orders the copy.
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    if !tail.is_empty()
        && let Some(w) = words.get(whole)
    {
        // Relaxed: as above.
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        for (o, b) in tail.iter_mut().zip(b) {
            *o = b;
        }
    }
}

/// Whether `words` hold `key` (zero-padded), compared word by word with relaxed loads.
#[inline]
pub(crate) fn key_equals(words: &[AtomicU64], key: &[u8]) -> bool {
    let mut rest = key;
    let mut words = words.iter();
    while let Some((c, r)) = rest.split_first_chunk::<8>() {
        match words.next() {
            // Relaxed: as in `copy_out`.
            Some(w) if w.load(Ordering::Relaxed) == u64::from_le_bytes(*c) => rest = r,
            _ => return false,
        }
    }
    // Relaxed: as in `copy_out`.
    rest.is_empty()
        || words
            .next()
            .is_some_and(|w| w.load(Ordering::Relaxed) == tail_word(rest))
}

impl ByteMap {
    /// All words of the object (header, count, stripe-head lines, slots).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        let n = self.lines.len() * 8;
        // SAFETY: `from_raw_parts` needs a pointer valid for `n` reads of `AtomicU64`,
        // aligned, for the borrow's lifetime: `lines` is `n / 8` lines of eight
        // `AtomicU64` each, `#[repr(C)]` without padding, borrowed for `&self`. The
        // stripe-head lines are never accessed through this slice (the map indexes only
        // the header, count and slot words through it), so no byte is accessed with two
        // atomic sizes.
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast::<AtomicU64>(), n) }
    }

    /// All words of the object (the loom build).
    #[cfg(loom)]
    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        &self.words
    }

    /// The number of 64-byte lines of the object.
    #[inline]
    pub(crate) fn line_count(&self) -> usize {
        self.words().len() / 8
    }

    /// Stripe `s`'s head (`s < g.stripes` of a geometry validated against this object).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn head(&self, g: &Geometry, s: usize) -> &StripeHead {
        debug_assert!(s < g.stripes);
        let line = &self.lines[HEADER_LINES + s];
        // SAFETY: a `&Line` may be viewed as a `&StripeHead`: both are 64 bytes,
        // 64-aligned, `#[repr(C)]`, made only of integer atomics without padding, so every
        // bit pattern is valid for both; the stripe-head lines are only ever accessed as
        // `StripeHead`s (see `words`), so no byte is accessed with two atomic sizes.
        unsafe { &*(line as *const Line).cast::<StripeHead>() }
    }

    /// Stripe `s`'s head (the loom build).
    #[cfg(loom)]
    #[inline]
    pub(crate) fn head(&self, _g: &Geometry, s: usize) -> &StripeHead {
        &self.heads[s]
    }

    /// The global entry count (line 1).
    #[inline]
    pub(crate) fn count_word(&self) -> &AtomicU64 {
        &self.words()[8]
    }

    /// The slack flag (line 1, word 1): nonzero while the map's count may hold places no
    /// entry or writer uses (see [`Locked::heal_count`](super::write::Locked::heal_count)).
    #[inline]
    pub(crate) fn slack_word(&self) -> &AtomicU64 {
        &self.words()[9]
    }

    /// The count word a scan of the stripe heads last found nothing to lower for, the slack
    /// flag set (line 1, word 2): full writers skip the scan while the count word is
    /// unchanged (see [`Locked::heal_count`](super::write::Locked::heal_count)).
    #[inline]
    pub(crate) fn slack_seen_word(&self) -> &AtomicU64 {
        &self.words()[10]
    }

    /// Slot `i` of stripe `s` (in range for a geometry validated against this object).
    #[inline(always)]
    pub(crate) fn slot(&self, g: &Geometry, s: usize, i: usize) -> Slot<'_> {
        let start = (HEADER_LINES + g.stripes) * 8 + g.slot_base(s, i);
        Slot {
            w: &self.words()[start..start + g.slot_words],
            key_words: g.key_words,
        }
    }

    /// Reads the header once and validates it against the object's length: the local
    /// copy every operation works from.
    ///
    /// The geometry is recorded in the header at creation (word 6), so this is a few
    /// loads and integer checks: the options in range, the recorded geometry consistent
    /// with them: its size equal to the object's (whose length is this process's own
    /// pointer metadata) and room for the capacity. (Whether the stripes are the ones the
    /// capacity rule gives is not checked: a header that breaks the rule is used as it
    /// says, which stays inside the object.)
    /// Whatever the words hold, a geometry that passes indexes only
    /// inside the object.
    #[inline(always)]
    pub(crate) fn geometry(&self) -> Result<Geometry, MapError> {
        let w = self.words();
        let Some(h) = w.get(..8) else {
            return Err(MapError::Corrupt {
                reason: "the map object is shorter than its header",
            });
        };
        // Relaxed: the header is written once, before the map is shared (a region
        // publishes the object with a release store after `init`; a heap map is built
        // before it is shared); a process that rewrites it later is hostile, and every
        // value is validated below.
        let h: [u64; 7] = core::array::from_fn(|i| h[i].load(Ordering::Relaxed));
        let g = Self::validate_header(h, self.line_count()).ok_or(MapError::Corrupt {
            reason: "the map header is not one a map of this size has",
        })?;
        // The loom build keeps the stripe heads apart, one per stripe it was made with: a
        // header of another stripe count (the same size) would index past them.
        #[cfg(loom)]
        if g.stripes != self.heads.len() {
            return Err(MapError::Corrupt {
                reason: "the map header is not one a map of this size has",
            });
        }
        Ok(g)
    }

    /// Validates header words `h` against an object of `lines` lines: a pure function of
    /// the loaded words, shared by `geometry` and the read-only decoder (`inspect`).
    #[inline(always)]
    pub(crate) fn validate_header(h: [u64; 7], lines: usize) -> Option<Geometry> {
        let (capacity, key_max, value_max) = (h[1], h[2], h[3]);
        let packed = Packed(h[6]);
        let (log_stripes, sps) = (packed.log_stripes(), packed.sps());
        // Ranges first: they keep every product below 2^64 (stripes ≤ 2^26, sps ≤ 256,
        // slot words ≤ 4 + 128 + 8192).
        if h[0] != MAGIC
            || capacity == 0
            || capacity > MAX_CAPACITY as u64
            || key_max == 0
            || key_max > MAX_KEY_LEN as u64
            || value_max > MAX_VALUE_LEN as u64
            || log_stripes > MAX_LOG_STRIPES
            || sps == 0
            || sps > MAX_STRIPE_SLOTS as u64
            || packed.rest() != 0
        {
            return None;
        }
        let stripes = 1u64 << log_stripes;
        // Room for the capacity. (Whether the stripes are the ones the capacity rule gives
        // is not checked per operation: it is not needed to stay inside the object, and
        // a map that breaks it still counts its entries against its capacity.)
        if capacity > stripes * sps {
            return None;
        }
        let key_words = key_max.div_ceil(8);
        let value_words = value_max.div_ceil(8);
        let slot_words = SLOT_HEAD_WORDS as u64 + key_words + value_words;
        let slot_lines = (stripes * sps * slot_words).div_ceil(8);
        if HEADER_LINES as u64 + stripes + slot_lines != lines as u64 {
            return None;
        }
        // The `as` casts: every value is at most `lines` (a `usize`) or the ranges above.
        Some(Geometry {
            options: MapOptions::new(capacity as usize)
                .key_max(key_max as usize)
                .value_max(value_max as usize),
            stripes: stripes as usize,
            sps: sps as usize,
            key_words: key_words as usize,
            value_words: value_words as usize,
            slot_words: slot_words as usize,
            lines,
            seed: [h[4], h[5]],
        })
    }

    /// Writes the header of a fresh (all-zero) object.
    pub(crate) fn write_header(&self, options: &MapOptions, seed: [u8; 16]) {
        let w = self.words();
        let lo = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8]));
        let hi = u64::from_le_bytes(seed[8..].try_into().unwrap_or([0; 8]));
        let packed = options.geometry().map_or(0, |g| Packed::new(&g).0);
        let vals = [
            MAGIC,
            options.capacity() as u64,
            options.key_max_len() as u64,
            options.value_max_len() as u64,
            lo,
            hi,
            packed,
            boot_hash(),
        ];
        for (word, v) in w.iter().zip(vals) {
            // Relaxed: see `geometry`; the object is published after this.
            word.store(v, Ordering::Relaxed);
        }
    }

    /// A zeroed heap object of `lines` lines.
    #[cfg(not(loom))]
    pub(crate) fn alloc(g: &Geometry) -> Box<ByteMap> {
        let slice: Box<[Line]> = (0..g.lines).map(|_| Line::new()).collect();
        let raw: *mut [Line] = Box::into_raw(slice);
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` of the same layout:
        // `ByteMap` is `#[repr(transparent)]` over `[Line]` (the cast keeps the length).
        unsafe { Box::from_raw(raw as *mut ByteMap) }
    }

    /// A zeroed heap object (the loom build).
    #[cfg(loom)]
    pub(crate) fn alloc(g: &Geometry) -> Box<ByteMap> {
        Box::new(ByteMap {
            words: (0..g.lines * 8).map(|_| AtomicU64::new(0)).collect(),
            heads: (0..g.stripes).map(|_| StripeHead::new()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail word of every length below 8 is the bytes in little-endian order,
    /// zero-padded: what a byte-by-byte packing gives.
    #[test]
    fn a_tail_word_packs_every_length_as_the_bytes_do() {
        let bytes: [u8; 7] = [0x81, 0x12, 0xa3, 0x34, 0xc5, 0x56, 0xe7];
        for n in 0..8 {
            let rest = &bytes[..n];
            let mut expected = [0u8; 8];
            expected[..n].copy_from_slice(rest);
            assert_eq!(tail_word(rest), u64::from_le_bytes(expected), "length {n}");
        }
    }

    /// A key compares equal to the words that hold it and to nothing that differs in one
    /// byte, its length's padding included, for every length up to three words.
    #[test]
    fn key_equals_tells_apart_every_byte() {
        for len in 0..=24usize {
            let key: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(29) ^ 0x5a)
                .collect();
            let mut packed = Vec::new();
            for_each_word(&key, |_, w| packed.push(w));
            let words: Vec<AtomicU64> = packed.iter().map(|&w| AtomicU64::new(w)).collect();
            assert!(key_equals(&words, &key), "length {len}");
            for (i, w) in words.iter().enumerate() {
                for bit in [0, 7, 31, 63] {
                    let old = w.load(Ordering::Relaxed);
                    w.store(old ^ (1 << bit), Ordering::Relaxed);
                    assert!(
                        !key_equals(&words, &key),
                        "length {len}, word {i}, bit {bit}"
                    );
                    w.store(old, Ordering::Relaxed);
                }
            }
            if len % 8 != 0 {
                // Too few words for the key.
                assert!(!key_equals(&words[..words.len() - 1], &key), "length {len}");
            }
        }
    }
}
