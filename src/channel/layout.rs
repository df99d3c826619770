//! The channel's memory: a header of seven cache lines, then the ring of 8-byte words.
//! See the module docs of [`channel`](super), "Layout", for the table.

use core::alloc::Layout;
use core::ptr;
#[cfg(not(loom))]
use core::ptr::NonNull;

use super::options::{ChannelOptions, RECORD_HEADER, largest_message};
use crate::lock::RawMutex;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The high half of the config word `shape`: "CHN" and the format version 5. A word with
/// another high half is not a channel header of this format (never initialised,
/// overwritten, or made by a build that speaks another version: every operation on it
/// reports `Corrupt`).
///
/// - 1: receivers that sleep flag only their wake word; senders fence and load it after
///   each commit.
/// - 2: receivers that sleep also set `SLEEPER` (bit 62) in `tail`, which a commit's
///   compare-exchange sees; the message count in `tail` is 30 bits.
/// - 3: each record is published by the Release store of its own header word, after the
///   compare-exchange of `tail` (receivers poll the header at `head`, not `tail`); the
///   word at `tail` is 0 until then (senders keep 8 bytes of slack for it); a sender
///   stores `pending` before its commit, and a `SKIP` record replaces a record whose
///   sender died between its commit and its header.
/// - 4: the `lost` word's top bit ([`LOSS_PENDING`]) says a repair counted its claim and
///   has not finished; the repair of a dead receiver's claim counts (setting it) before
///   it releases, and clears it after, so a repair repeated after its repairer died
///   counts nothing.
/// - 5: no flag bits in `tail`, and no read-modify-write or fence per message: a commit is
///   a plain store of `tail`, bracketed by the `busy` word; the close is the config
///   line's `closed` word, made final by the `end` word (the last `tail`), which a
///   finaliser records once no sender can commit; sleepers and finalisers issue the
///   process-wide barrier (`barrier`), and the `fenced` word says a sleeper could not.
pub(crate) const MAGIC: u32 = 0x4348_4E05;

/// A record's kind, in the high half of its header word: a message.
pub(crate) const TAG_MESSAGE: u32 = 0x4D53_4721;
/// A record's kind: padding up to the ring's end (its length half is 0). The record after
/// it starts at offset 0.
pub(crate) const TAG_PAD: u32 = 0x5041_4421;
/// A record's kind: bytes to step over (its length half is their length, less the
/// header), written by the repair in place of a record whose sender died between its
/// commit and the store of its header. Receivers deliver nothing for it.
pub(crate) const TAG_SKIP: u32 = 0x534B_4921;

/// The top bit of the `end` word: the close is final, and the rest of the word is the
/// last `tail` (whose count has 30 bits, so never this bit). 0 (the zeroed state) until
/// then.
pub(crate) const FINAL: u64 = 1 << 63;

/// The message count of a `tail` word (30 bits; the top two bits of `tail` are 0).
pub(crate) const SENT_MASK: u32 = (1 << 30) - 1;

/// The waiting flag of a wake word (see [`WakeLine`]).
pub(crate) const WAITING: u32 = 1 << 31;

/// Words of filler, so that each line is a whole 64-byte cache line without padding
/// bytes (the [`Shared`](crate::Shared) contract). Empty under loom, where layout does
/// not matter.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct Fill<const N: usize> {
    _words: [AtomicU64; N],
}
#[cfg(loom)]
pub(crate) struct Fill<const N: usize>;

#[cfg(loom)]
impl<const N: usize> Fill<N> {
    fn new() -> Self {
        Fill
    }
}

/// Line 0, read-mostly: written at creation (and `closed`, `end` and `fenced` once each).
#[repr(C, align(64))]
pub(crate) struct ConfigLine {
    /// `MAGIC << 32 | max_message`: read (and validated) by every operation.
    pub(crate) shape: AtomicU64,
    /// The ring's size in bytes, as created (operations use the process-local length of
    /// the ring instead; this is for opening and tools).
    pub(crate) capacity: AtomicU64,
    /// Nonzero once the channel is closed: stored by `close` (SeqCst), never cleared. A
    /// sender checks it under the send lock before it reserves and again after it sets
    /// `busy`, before its commit.
    pub(crate) closed: AtomicU64,
    /// [`FINAL`] `|` the last `tail`, once the close is final (no send can commit any
    /// more); 0 until then. Recorded once, by a compare-exchange from a value without
    /// [`FINAL`] (module docs, "Closing"). Receivers report `Disconnected` at `head == end`.
    pub(crate) end: AtomicU64,
    /// Nonzero once a process that cannot issue the barrier (`barrier`) went to sleep on
    /// the channel: every waker fences from then on. Never cleared.
    pub(crate) fenced: AtomicU64,
    _fill: Fill<3>,
}

/// Lines 1 and 3: a side's robust lock, alone on its line (contending senders or
/// receivers hammer it).
#[repr(C, align(64))]
pub(crate) struct LockLine {
    pub(crate) lock: RawMutex,
    _fill32: AtomicU32,
    _fill: Fill<7>,
}

/// Line 2, the senders' line (written under the send lock).
#[repr(C, align(64))]
pub(crate) struct TailLine {
    /// `sent << 32 | tail`: `tail` is the position (bytes, wrapping at 2^32) up to which
    /// records are committed; `sent` counts committed messages (30 bits, wrapping).
    /// Written by the send-lock holder only, with a Release store.
    pub(crate) tail: AtomicU64,
    /// The last `free` position a sender read: senders check room against it and read
    /// `free` (another line) only when it says the ring is full.
    pub(crate) free_cache: AtomicU64,
    /// `from << 32 | to`: the positions of the record (with any padding before it) the
    /// send-lock holder is committing, stored before its store of `tail` (the commit), so
    /// that whoever takes the lock from it if it dies before the record's header is
    /// stored can find the record and replace it with a `SKIP` record.
    pub(crate) pending: AtomicU64,
    /// 1 (`barrier::BUSY`) while the send-lock holder is between its store of it and its
    /// header store: before its last check of `closed`, through its commit and
    /// publication (a few stores); else the holder's idle value: 0 in a process
    /// registered for the barrier, 2 (`barrier::IDLE_FENCING`) in one that fences
    /// instead. Written by the send-lock holder (or the party that recovered the lock
    /// from a dead one) only; a finaliser that reads an idle value after its barrier (or,
    /// for 2, after its fence) knows `tail` is final (module docs, "Closing").
    pub(crate) busy: AtomicU64,
    _fill: Fill<4>,
}

/// Line 4, the receivers' line (written under the receive lock).
#[repr(C, align(64))]
pub(crate) struct HeadLine {
    /// `taken << 32 | head`: `head` is the position up to which messages are claimed by
    /// receivers; `taken` counts claimed messages (wrapping).
    pub(crate) head: AtomicU64,
    /// [`LOSS_PENDING`] `| count`: `count` messages lost with receivers killed between
    /// claim and release; the bit is set while a repair that counted a claim has not
    /// finished, so that a repair repeated after its repairer died counts nothing.
    pub(crate) lost: AtomicU64,
    _fill: Fill<6>,
}

/// Line 5: `free`, written by receivers after each message, read by senders only when
/// their cached copy says the ring is full.
#[repr(C, align(64))]
pub(crate) struct FreeLine {
    /// The position up to which receivers are done with the ring: senders may write up
    /// to `free + capacity`.
    pub(crate) free: AtomicU64,
    _fill: Fill<7>,
}

/// Line 6: the wake words. Each is `WAITING` (bit 31: someone may sleep on it) plus a
/// 31-bit generation that every wake bumps; written only when someone sleeps, so in
/// steady state every process only reads this line.
#[repr(C, align(64))]
pub(crate) struct WakeLine {
    /// Receivers sleep here for a message (or the close).
    pub(crate) recv_wake: AtomicU32,
    /// Senders sleep here for room (or the close).
    pub(crate) send_wake: AtomicU32,
    _fill: Fill<7>,
}

/// The header, seven lines.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) config: ConfigLine,
    pub(crate) send: LockLine,
    pub(crate) tail: TailLine,
    pub(crate) recv: LockLine,
    pub(crate) head: HeadLine,
    pub(crate) free: FreeLine,
    pub(crate) wake: WakeLine,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Header, [u8; 7 * 64]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(align_of::<Header>(), 64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(ConfigLine, [u8; 64]);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(LockLine, [u8; 64]);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(WakeLine, [u8; 64]);

#[cfg(loom)]
impl Header {
    fn new() -> Self {
        let lock = || LockLine {
            lock: RawMutex::new(),
            _fill32: AtomicU32::new(0),
            _fill: Fill::new(),
        };
        Header {
            config: ConfigLine {
                shape: AtomicU64::new(0),
                capacity: AtomicU64::new(0),
                closed: AtomicU64::new(0),
                end: AtomicU64::new(0),
                fenced: AtomicU64::new(0),
                _fill: Fill::new(),
            },
            send: lock(),
            tail: TailLine {
                tail: AtomicU64::new(0),
                free_cache: AtomicU64::new(0),
                pending: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                _fill: Fill::new(),
            },
            recv: lock(),
            head: HeadLine {
                head: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                _fill: Fill::new(),
            },
            free: FreeLine {
                free: AtomicU64::new(0),
                _fill: Fill::new(),
            },
            wake: WakeLine {
                recv_wake: AtomicU32::new(0),
                send_wake: AtomicU32::new(0),
                _fill: Fill::new(),
            },
        }
    }
}

/// A bounded multi-producer multi-consumer channel of byte messages, in shared memory or
/// on the heap. See the [module docs](super) for the protocol, the crash windows and
/// examples.
///
/// The type is slice-shaped: a header followed by the ring, whose length (in 8-byte
/// words) is the object's length. Create one on the heap with [`new`](Self::new), or in a
/// region with [`Region::channel`](crate::Region::channel).
#[repr(C)]
pub struct Channel {
    pub(crate) header: Header,
    /// The ring. Its length comes from the (process-local) pointer metadata, validated at
    /// creation or opening, never from shared memory.
    pub(crate) ring: [AtomicU64],
}

// SAFETY: For every `len` that `size_for` accepts (a power of two of words, 64 bytes to
// 2 GiB): (1) all-zero bytes are a valid, *uninitialised* channel: every lock unlocked,
// every cursor 0; operations refuse it (`Corrupt`: the magic is missing) until `init`
// writes the config line, which `Region::channel` does in the region's init closure
// before any other process sees the object; (2) every bit pattern is valid: the object
// is atomics only (`AtomicU64`, `AtomicU32`, `RawMutex` which is one `AtomicU32`), and
// every operation validates what it reads (module docs, "Untrusted memory"); (3) no
// pointers, nothing to drop; (4) `#[repr(C)]` lines of `#[repr(C, align(64))]`, sizes
// asserted above, no padding bytes (the fills); the ring follows the 448-byte header at
// an 8-aligned offset; (5) atomics are `Sync`, every method is atomic operations plus
// copies of ring bytes that the protocol gives the caller exclusively (module docs); (6)
// `from_raw_parts` builds a pointer to `len` ring words after the header, covering
// exactly `size_for(len)` bytes. Not implemented under loom, whose atomics are not plain
// memory.
#[cfg(not(loom))]
unsafe impl crate::shared::Shared for Channel {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::CHANNEL, crate::Elem::U64);
    const ALIGN: usize = 64;

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        let bytes = len.checked_mul(8)?;
        let ok = len.is_power_of_two()
            && (super::options::MIN_CAPACITY..=super::options::MAX_CAPACITY).contains(&bytes);
        ok.then(|| size_of::<Header>() + bytes)
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self> {
        let slice = ptr::slice_from_raw_parts_mut(ptr.as_ptr().cast::<AtomicU64>(), len);
        // SAFETY: `new_unchecked` needs a non-null pointer: the address is `ptr`'s. The
        // `as` cast keeps the metadata (`len`), which for `Channel` is the length of its
        // trailing `ring` slice.
        unsafe { NonNull::new_unchecked(slice as *mut Channel) }
    }
}

/// The position half of a cursor word.
#[inline]
pub(crate) const fn pos(w: u64) -> u32 {
    w as u32
}

/// The count half of a cursor word.
#[inline]
pub(crate) const fn count(w: u64) -> u32 {
    (w >> 32) as u32
}

/// A cursor word of position `p` and count `c`.
#[inline]
pub(crate) const fn cursor(c: u32, p: u32) -> u64 {
    (c as u64) << 32 | p as u64
}

/// The `lost` word's top bit: set, with the count, by the repair of a dead receiver's
/// claim, and cleared after the claim's space is released. A receive-lock holder that
/// finds it set knows that a repairer counted the claim and died before clearing it: it
/// releases the claim (if still claimed) without counting it again, and clears the bit.
pub(crate) const LOSS_PENDING: u64 = 1 << 63;

/// The count half of the `lost` word: messages lost (63 bits).
#[inline]
pub(crate) const fn lost_count(w: u64) -> u64 {
    w & !LOSS_PENDING
}

/// A record header word.
#[inline]
pub(crate) const fn record(tag: u32, len: u32) -> u64 {
    (tag as u64) << 32 | len as u64
}

/// Bytes a record of a `len`-byte message takes in the ring: its header and the payload
/// rounded up to 8.
#[inline]
pub(crate) const fn record_size(len: usize) -> usize {
    RECORD_HEADER + len.div_ceil(8) * 8
}

/// The longest message [`Channel::write_payload`] copies inline (4 cache lines); longer
/// ones are copied out of line.
const OUTLINED_PAYLOAD: usize = 256;

impl Channel {
    /// A channel on the heap with these options.
    ///
    /// # Errors
    ///
    /// [`ChannelError::InvalidOptions`](super::ChannelError::InvalidOptions) if the
    /// capacity is above [`MAX_CAPACITY`](super::MAX_CAPACITY) or the largest message
    /// above `capacity / 2 - 8`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(4096))?;
    /// ch.send(b"hello")?;
    /// let mut out = Vec::new();
    /// ch.recv(&mut out)?;
    /// assert_eq!(out, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(options: ChannelOptions) -> Result<Box<Channel>, super::ChannelError> {
        let (cap, max) =
            options
                .validate()
                .map_err(|reason| super::ChannelError::InvalidOptions {
                    capacity: options.capacity_bytes(),
                    max_message: options.max_message_len(),
                    reason,
                })?;
        super::barrier::register();
        let words = cap / 8;
        let (layout, ring_at) = Layout::new::<Header>()
            .extend(Layout::array::<AtomicU64>(words).expect("at most 2 GiB"))
            .expect("at most 2 GiB");
        let layout = layout.pad_to_align();
        #[cfg(not(loom))]
        // SAFETY: `layout` has a nonzero size (the header alone is 448 bytes).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        #[cfg(loom)]
        // SAFETY: as above.
        let base = unsafe { std::alloc::alloc(layout) };
        if base.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // Under loom the atomics are objects to construct; elsewhere all-zero bytes are
        // the channel's zero state (the `Shared` contract, item 1).
        #[cfg(loom)]
        // SAFETY: `base` is a fresh allocation of `layout`, which holds a `Header` at 0
        // and `words` `AtomicU64`s from `ring_at` (what `extend` computed); each write
        // is in bounds and aligned, and nothing was there to drop.
        unsafe {
            ptr::write(base.cast::<Header>(), Header::new());
            let ring = base.add(ring_at).cast::<AtomicU64>();
            for i in 0..words {
                ptr::write(ring.add(i), AtomicU64::new(0));
            }
        }
        let _ = ring_at;
        let raw = ptr::slice_from_raw_parts_mut(base.cast::<AtomicU64>(), words) as *mut Channel;
        // `raw` points to an allocation of the global allocator with `layout`, which is
        // `Layout::for_value` of a `Channel` with `words` ring words (`#[repr(C)]`: the
        // header, then the ring at the offset `extend` computed, padded to the alignment),
        // and every byte of it is a valid, initialised `Channel` (zeroed atomics, or
        // constructed under loom).
        // SAFETY: `Box::from_raw` needs a pointer to a valid value allocated by the
        // global allocator with `Layout::for_value` of it: as above.
        let ch = unsafe { Box::from_raw(raw) };
        ch.init(cap, max);
        Ok(ch)
    }

    /// Writes the config line: the channel's shape. For a fresh (all-zero) channel only,
    /// before anyone else uses it.
    pub(crate) fn init(&self, cap: usize, max: usize) {
        // Relaxed: the channel is published to other threads or processes after this
        // (the `Box` is handed over; a region publishes the object with a Release store
        // of its entry's state), which orders these stores.
        self.header
            .config
            .capacity
            .store(cap as u64, Ordering::Relaxed);
        self.header
            .config
            .shape
            .store(record(MAGIC, max as u32), Ordering::Relaxed);
    }

    /// The ring's size in bytes, from the process-local length of the ring.
    #[inline]
    pub(crate) fn cap(&self) -> u32 {
        // At most 2 GiB (checked at creation and opening), so it fits a `u32`.
        (self.ring.len() * 8) as u32
    }

    /// The largest message, read from the header and validated (magic, and at most
    /// `capacity / 2 - 8`): `None` if the header is not a valid channel header.
    #[inline]
    pub(crate) fn max_message(&self) -> Option<u32> {
        // Relaxed: written once at creation, before the channel was published; a
        // hostile rewrite is caught by the checks.
        let w = self.header.config.shape.load(Ordering::Relaxed);
        let max = pos(w);
        (count(w) == MAGIC && max as usize <= largest_message(self.cap() as usize)).then_some(max)
    }

    /// The options as stored in the header: `None` if the header is not valid (see
    /// [`max_message`](Self::max_message)) or its capacity differs from the ring's.
    #[cfg(not(loom))]
    pub(crate) fn stored_options(&self) -> Option<ChannelOptions> {
        let max = self.max_message()?;
        // Relaxed: as in `max_message`.
        let cap = self.header.config.capacity.load(Ordering::Relaxed);
        (cap == u64::from(self.cap())).then(|| ChannelOptions::exact(cap as usize, max as usize))
    }

    /// The record header word at ring offset `off` (a multiple of 8 below the capacity).
    #[inline]
    pub(crate) fn word_at(&self, off: u32) -> &AtomicU64 {
        // In bounds: `off < cap` and `cap = 8 * ring.len()`; callers pass offsets masked
        // by `cap - 1` and 8-aligned. `get` keeps a mistake from being out of bounds.
        match self.ring.get(off as usize / 8) {
            Some(w) => w,
            None => &self.ring[0],
        }
    }

    /// Copies `src` into the ring at byte offset `off`, with relaxed atomic word loads
    /// and stores (a word only partly covered is read, merged and stored back). No
    /// reference to ring bytes is ever made: a peer that writes them meanwhile (against
    /// the protocol) only garbles the message. A range past the ring's end (a caller's
    /// mistake) writes nothing there.
    ///
    /// The caller owns the bytes (they lie between `tail` and `free + cap` and it holds
    /// the send lock); the Release store of the record's header publishes them.
    #[inline]
    pub(crate) fn write_bytes(&self, off: usize, mut src: &[u8]) {
        let mut i = off / 8;
        let skip = off % 8;
        if skip != 0 && !src.is_empty() {
            let n = (8 - skip).min(src.len());
            let Some(w) = self.ring.get(i) else { return };
            // Relaxed: this thread owns the word (above); the header's Release store
            // publishes it.
            let mut b = w.load(Ordering::Relaxed).to_ne_bytes();
            b[skip..skip + n].copy_from_slice(&src[..n]);
            // Relaxed: as above.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
            src = &src[n..];
            i += 1;
        }
        let words = src.len() / 8;
        let Some(ring) = self.ring.get(i..i.saturating_add(words)) else {
            return;
        };
        // By lines of 8 words: the source's 64 bytes are read in one go (not atomics: the
        // caller's memory), then stored word by word.
        let mut lines = src.chunks_exact(64);
        let mut ring_lines = ring.chunks_exact(8);
        for (ws, c) in (&mut ring_lines).zip(&mut lines) {
            let mut b = [0u64; 8];
            bytemuck::bytes_of_mut(&mut b).copy_from_slice(c);
            for (w, v) in ws.iter().zip(b) {
                // Relaxed: as above.
                w.store(v, Ordering::Relaxed);
            }
        }
        let mut chunks = lines.remainder().chunks_exact(8);
        for (w, c) in ring_lines.remainder().iter().zip(&mut chunks) {
            let mut b = [0; 8];
            b.copy_from_slice(c);
            // Relaxed: as above.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let Some(w) = self.ring.get(i + words) else {
                return;
            };
            // Relaxed: as above.
            let mut b = w.load(Ordering::Relaxed).to_ne_bytes();
            b[..rest.len()].copy_from_slice(rest);
            // Relaxed: as above.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
    }

    /// Copies a whole message `src` into the ring at `off` (a multiple of 8: a payload),
    /// as [`write_bytes`](Self::write_bytes) does, but with no load: the bytes of the last
    /// word past the message are zeroed (a record is padded to a word, and the caller
    /// owns all of it). For the send paths, which write a message in one piece.
    ///
    /// A message longer than [`OUTLINED_PAYLOAD`] bytes is copied by a function of its
    /// own, not inlined into the send: inlined into a held side's send, the copy loop
    /// spilled registers to the stack inside the loop, and 16 KiB messages streamed 2.5-3x
    /// slower than through [`Channel::send`] (2.6-3.0 µs per message against 7.5-8.5 µs,
    /// on an Intel Xeon VM), while out of line both copy at one speed. A shorter message
    /// stays inline (a call would cost a short message more than its copy).
    #[inline(always)]
    pub(crate) fn write_payload(&self, off: usize, src: &[u8]) {
        if src.len() > OUTLINED_PAYLOAD {
            self.write_payload_outlined(off, src);
        } else {
            self.write_payload_inline(off, src);
        }
    }

    /// [`write_payload`](Self::write_payload) for a long message: one copy loop, compiled
    /// once, whichever send calls it.
    #[inline(never)]
    fn write_payload_outlined(&self, off: usize, src: &[u8]) {
        self.write_payload_inline(off, src);
    }

    /// The copy of [`write_payload`](Self::write_payload).
    #[inline(always)]
    fn write_payload_inline(&self, off: usize, src: &[u8]) {
        debug_assert!(off.is_multiple_of(8));
        let i = off / 8;
        let words = src.len().div_ceil(8);
        let Some(ring) = self.ring.get(i..i.saturating_add(words)) else {
            return;
        };
        // By lines of 8 words, as in `write_bytes`.
        let full = src.len() / 64;
        let mut lines = src.chunks_exact(64);
        for (c, ws) in (&mut lines).zip(ring.chunks_exact(8)) {
            let mut b = [0u64; 8];
            bytemuck::bytes_of_mut(&mut b).copy_from_slice(c);
            for (w, v) in ws.iter().zip(b) {
                // Relaxed: as in `write_bytes`.
                w.store(v, Ordering::Relaxed);
            }
        }
        let mut chunks = lines.remainder().chunks_exact(8);
        // The words after the full lines (`ring` has `full * 8` words and more); the
        // source's chunks first in the zip, so that its end consumes no word.
        let mut ws = ring.get(full * 8..).unwrap_or_default().iter();
        for (c, w) in (&mut chunks).zip(&mut ws) {
            let mut b = [0; 8];
            b.copy_from_slice(c);
            // Relaxed: as above.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        let rest = chunks.remainder();
        if let Some(w) = ws.next() {
            let mut b = [0; 8];
            b[..rest.len()].copy_from_slice(rest);
            // Relaxed: as above.
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
    }

    /// Copies ring bytes at `off` (a multiple of 8: a payload) into `dst`, with relaxed
    /// atomic word loads. No reference to ring bytes is ever made: bytes a peer writes
    /// meanwhile (against the protocol) only come out garbled. A range past the ring's
    /// end (a caller's mistake) leaves the rest of `dst` as it was.
    ///
    /// The caller owns the bytes: they belong to a message it has claimed (`free <= off`,
    /// before `head`) while it holds the receive lock.
    #[inline]
    pub(crate) fn read_bytes(&self, off: usize, dst: &mut [u8]) {
        debug_assert!(off.is_multiple_of(8));
        let i = off / 8;
        let words = dst.len().div_ceil(8);
        let Some(ring) = self.ring.get(i..i.saturating_add(words)) else {
            return;
        };
        // By lines of 8 words: 8 loads into registers, then one 64-byte store into the
        // caller's memory (not atomics), which the compiler may widen.
        let full = dst.len() / 64;
        let mut lines = dst.chunks_exact_mut(64);
        for (c, ws) in (&mut lines).zip(ring.chunks_exact(8)) {
            let mut b = [0u64; 8];
            for (v, w) in b.iter_mut().zip(ws) {
                // Relaxed: the Acquire load of the record's header that made the message visible
                // ordered the sender's stores before this.
                *v = w.load(Ordering::Relaxed);
            }
            c.copy_from_slice(bytemuck::bytes_of(&b));
        }
        let mut chunks = lines.into_remainder().chunks_exact_mut(8);
        // The words after the full lines (`ring` has `full * 8` words and more).
        let mut ws = ring.get(full * 8..).unwrap_or_default().iter();
        for (c, w) in (&mut chunks).zip(&mut ws) {
            // Relaxed: the Acquire load of the record's header that made the message visible ordered
            // the sender's stores before this.
            c.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        let rest = chunks.into_remainder();
        if let Some(w) = ws.next() {
            // Relaxed: as above.
            let b = w.load(Ordering::Relaxed).to_ne_bytes();
            rest.copy_from_slice(&b[..rest.len()]);
        }
    }

    /// Makes this process act as one that cannot use the process-wide barrier (a kernel
    /// before 4.16, a seccomp filter), from now on: for tests of the fallback. Not part
    /// of the API.
    #[cfg(all(not(loom), any(test, feature = "test-hooks")))]
    #[doc(hidden)]
    pub fn act_unregistered_for_tests() {
        super::barrier::act_unregistered();
    }

    /// Under loom: makes the calling thread stand for a process that cannot use the
    /// process-wide barrier, from now on (it fences on its busy side, issues no barrier,
    /// and keeps `busy` at its fencing idle value). Not part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn act_unregistered_for_tests() {
        super::barrier::model(super::barrier::Modelled::Refused);
    }

    /// Under loom: makes the calling thread stand for a registered process in a model
    /// where no party can issue the barrier, from now on: its busy side's compiler
    /// barrier is no fence (unless the channel's `fenced` word is set), and its own
    /// barrier is not modelled (it goes without, as a process that cannot issue it). Not
    /// part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn act_unpaired_for_tests() {
        super::barrier::model(super::barrier::Modelled::Unpaired);
    }

    /// Whether the channel's `fenced` word is set (a sleeper could not issue the
    /// barrier). Not part of the API.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn fenced_for_tests(&self) -> bool {
        self.header.config.fenced.load(Ordering::Relaxed) != 0
    }

    /// The words a test may overwrite with hostile values: every `u64` word of the
    /// header and the ring, and the `u32` lock and wake words. Not part of the API.
    ///
    /// The `u64` words, in order: 0 `shape`, 1 `capacity`, 2 `closed`, 3 `tail`,
    /// 4 `free_cache`, 5 `head`, 6 `pending`, 7 `lost`, 8 `free`, then the ring's words
    /// from offset 0 (`9 + i` is ring word `i`), then the header's `end`, `busy` and
    /// `fenced` (the last three: format 5's words, after the ring so that ring indices stay
    /// put). The `u32` words: the send lock, the receive lock, `recv_wake`, `send_wake`.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn hostile_words(&self) -> (Vec<&AtomicU64>, Vec<&AtomicU32>) {
        let h = &self.header;
        let mut w64 = vec![
            &h.config.shape,
            &h.config.capacity,
            &h.config.closed,
            &h.tail.tail,
            &h.tail.free_cache,
            &h.head.head,
            &h.tail.pending,
            &h.head.lost,
            &h.free.free,
        ];
        w64.extend(self.ring.iter());
        w64.extend([&h.config.end, &h.tail.busy, &h.config.fenced]);
        let w32 = vec![
            h.send.lock.word(),
            h.recv.lock.word(),
            &h.wake.recv_wake,
            &h.wake.send_wake,
        ];
        (w64, w32)
    }
}
