//! [`Histogram`]: a Prometheus-style histogram (fixed bucket bounds, a sum and a count)
//! that many processes observe into without a lock.
//!
//! # Layout
//!
//! The object is a slice of 64-byte lines of eight `u64` words (slice-shaped, like
//! [`StripedCounter`](crate::StripedCounter)); word `w` is word `w % 8` of line `w / 8`:
//!
//! | words | holds |
//! |-------|-------|
//! | 0 | `B`, the number of finite bucket bounds |
//! | 1 | the stripe mask `S - 1`: `S`, a power of two, is the number of stripes of each kind |
//! | 2..8 | zero (reserved) |
//! | line 1 on, `B` words | the bounds, as `f64` bits, strictly increasing and finite |
//! | then `2S` stripes, each `ceil((B + 3) / 8)` lines | per stripe: an owner word (0: none), `B + 1` bucket counts (the last is the `+Inf` bucket), then the sum as `f64` bits |
//!
//! Stripes `0..S` are *owned*, stripes `S..2S` *shared*. A thread's stripe index is
//! `s = tid & (S - 1)`: it observes into owned stripe `s` if it owns it (or can claim
//! it), else into shared stripe `S + s`. A shared stripe's owner word is unused (zero).
//! All-zero bytes are a histogram with no finite bound (only the `+Inf` bucket) and one
//! stripe of each kind, with no owner.
//!
//! # Counting and summing exactly
//!
//! An observation adds 1 to its bucket's count and its value to the sum, in one stripe:
//!
//! - **Owned stripe, no atomic read-modify-write.** A thread whose stripe's owner word
//!   is its own is the only thread that writes that stripe, so it adds with a plain load
//!   and store of each word (atomic loads and stores, no `lock` prefix): no update can be
//!   lost, because no other thread writes those words. A stripe with no owner (0) is
//!   claimed with one compare-and-swap of the owner word; it stays with its owner until
//!   that thread is gone, and is then taken over (below).
//! - **Shared stripe, two atomic updates.** A thread whose stripe another thread owns
//!   adds to its shared stripe: a `fetch_add` of 1 on the count and a compare-and-swap
//!   loop that adds the value to the sum (`f64` bits in an `AtomicU64`; each
//!   compare-and-swap succeeds only on the value it read, so no addition is lost). Threads
//!   on the shared path spread over the `S` shared stripes as they would over the owned
//!   ones.
//!
//! **Owner words.** A thread's owner word is its thread id (bits 0..23), 21 random bits
//! drawn when the thread first observes (bits 23..44; drawn again in a forked child,
//! whose id may even equal its parent thread's as the first process of a new PID
//! namespace), and 20 bits of the inode of its PID namespace (`/proc/self/ns/pid`;
//! without `/proc`, 20 random bits drawn once per process) (bits 44..64). Two live
//! threads never have the same word: in one namespace their ids differ, across
//! namespaces (containers sharing a region, where ids repeat) their namespace bits or
//! their random bits differ (but for odds of 2⁻⁴¹). A new thread that the kernel gave a
//! dead owner's id does not own that owner's stripe by accident: its random bits differ.
//! A process made without the fork handlers (glibc's `_Fork`, a raw `clone`) keeps its
//! parent thread's id and word, and both would write one stripe plainly, losing counts:
//! the crate does not support such children (see the robust locks).
//!
//! **Taking over.** A thread on the shared path takes its owned stripe over, with a
//! compare-and-swap of the exact owner word it saw, when the owner is surely gone:
//! - the word is garbage: its id is 0, above any thread id, or does not select this
//!   stripe (`id & (S - 1)` is another stripe: no owner of this stripe wrote it);
//! - the word carries the thread's own id and namespace but other random bits: an
//!   earlier thread with this id, gone, since this thread now has the id;
//! - the word is of the thread's namespace and the kernel reports its id dead (a probe:
//!   `kill(tid, 0)` and a read of `/proc`, made on a thread's first shared observation
//!   and then on every [`TAKEOVER_PROBE_EVERY`]th, counted per thread across
//!   histograms; a forked child counts afresh).
//!
//! A word of another namespace is never taken over (its ids mean nothing here): that
//! stripe stays with its owner, and with it if it died, and its threads use the shared
//! stripe. (Containers that share a region and restart, each time in a new namespace,
//! leave such stripes behind: their threads then all take the shared path, which costs
//! speed, not counts. So does a process without `/proc`, whose namespace bits are its
//! own.) A compare-and-swap that finds the word changed (another thread took the
//! stripe first) leaves the thread on the shared path. The owner's counts and sum stay:
//! the new owner adds to them. The dead owner's last stores came before its death and
//! the probe's answer (or, for the other two cases, there is no owner that wrote): this
//! ordering is the kernel's, not an atomic's, as for every takeover of a dead thread's
//! state in the crate.
//!
//! The count is not a separate word: it is the sum of the bucket counts, so `count()`
//! equals the `+Inf` bucket in every snapshot by construction.
//!
//! The sum is an `f64` rather than a fixed-point integer: fixed point would need a unit
//! and a range chosen at creation (nanoseconds overflow `u64` sums of seconds-long
//! observations at 2⁶⁴ ns ≈ 584 years in total, but a unit of 1 loses sub-unit values),
//! while `f64` keeps the full range of what users observe, as every Prometheus client
//! does. The result is exactly the floating-point sum of each stripe's observations in
//! that stripe's order, added up stripe by stripe; when every partial sum is
//! representable (integers below 2⁵³, or multiples of a power of two such as 0.25 in
//! range) it is the exact sum.
//!
//! **Signal handlers.** An observation from a signal handler that interrupted an
//! observation of the same thread into its owned stripe can be overwritten by the
//! interrupted one's store: do not observe from a signal handler.
//!
//! # `le` semantics, NaN and infinities
//!
//! An observation `v` lands in the first bucket whose bound `le` satisfies `v <= le`; a
//! value equal to a bound lands in that bound's bucket. `+Inf` and values above the last
//! bound land in the `+Inf` bucket; `-Inf` in the first. `NaN` satisfies no `v <= le`: it
//! is counted in the `+Inf` bucket (so the count still equals that bucket) and makes the
//! sum `NaN`, as the Go client does.
//!
//! # Reading
//!
//! [`snapshot`](Histogram::snapshot) reads the stripes one after another: like
//! [`StripedCounter::sum`](crate::StripedCounter::sum) it is not one moment's state while
//! observers run (the sum may include an observation that the counts do not, or the
//! counts one that the sum does not), but its buckets are cumulative and its count is
//! its `+Inf` bucket, always. Once the observers have stopped it is exact.
//!
//! # Crash windows
//!
//! No lock is ever held; the one word that lasts across observations is an owned
//! stripe's owner word:
//!
//! | step | a SIGKILL (or SIGSTOP) there leaves | repaired by, how fast |
//! |------|-------------------------------------|-----------------------|
//! | creation in a region (header and bounds written by `init`) | the region's entry protocol: an unpublished object | the next opener re-creates it (the region's takeover; its failpoint tests) |
//! | an unowned stripe claimed (failpoint `HistogramClaimed`), nothing yet counted | a stripe owned by a dead (or stopped) thread | a dead owner of this namespace: taken over by the next thread of that stripe whose shared observation probes (its first, then every [`TAKEOVER_PROBE_EVERY`]th, counted per thread across histograms: `histogram_stripe_of_a_killed_owner_is_taken_over`); a stopped one keeps it; one of another namespace keeps it for good (speed, not counts); meanwhile the stripe's threads use the shared stripe |
//! | an owner between loading a count and storing it (failpoint `HistogramOwnedRead`) | killed: the observation not counted; stopped: its stripe waits, unchanged, for its store | nothing to repair: a resumed owner stores its count, which no other thread wrote meanwhile (`histogram_owner_stopped_mid_update_resumes_without_loss`) |
//! | between a bucket's count and the sum, either path (failpoint `HistogramCounted`) | the observation counted, its value not yet in the sum | nothing to repair: the sum lacks that one value, for good; other observers go on without waiting |
//! | inside the shared sum's compare-and-swap loop, before it succeeds (failpoint `HistogramCounted` stops just before the loop, which writes only with its one successful compare-and-swap) | nothing more than just before the loop | nothing to repair: other observers of the shared stripe go on without waiting |
//! | a taker between deciding the owner is gone and its compare-and-swap (failpoint `HistogramProbed`) | nothing written | nothing to repair: if another thread took the stripe meanwhile, the compare-and-swap fails and the taker adds to the shared stripe (`histogram_taker_stopped_before_its_swap_loses_to_a_faster_one`) |
//! | a takeover done (failpoint `HistogramTakenOver`: the owner word is the taker's, nothing counted in it yet) | as for a claim | as for a claim |
//! | during `snapshot` / `count` / `sum` | nothing: they only read | nothing to repair |
//!
//! Whatever a peer writes into the object, no call panics, reads out of bounds or loops
//! without bound: every word is reached through an index checked against the object's
//! length (which comes from the process's own mapping of the region's validated
//! directory), never against a length read from the object. Readers (`snapshot`, the
//! metrics renderer, `Region::histogram`) re-read the header and check all of it before
//! use, and refuse one that no histogram has. `observe` checks only what keeps its
//! arithmetic small (at most [`MAX_BOUNDS`] bounds; the stripe index masked below
//! [`MAX_STRIPES`]) and takes the bounds and its stripe as checked slices: under a
//! header no histogram has, an observation lands in words of the object after the
//! bounds, or nowhere; never in the header or the bounds. A garbage owner word is taken
//! over (above); one that looks like a live owner of another namespace sends its
//! stripe's threads to the shared stripe for good, which costs speed, not counts.

use core::fmt;
#[cfg(not(loom))]
use core::ptr::NonNull;

use crate::sync::{AtomicU64, Ordering};

/// The most finite bucket bounds a histogram takes.
pub const MAX_BOUNDS: usize = 1024;

/// The most stripes a histogram takes.
pub const MAX_STRIPES: usize = 1024;

/// A thread that observes into a shared stripe because another thread owns its owned
/// stripe asks the kernel whether that owner is alive on its first such observation and
/// then on every `TAKEOVER_PROBE_EVERY`th (see the [module docs](self)): a probe costs
/// microseconds, spread over that many observations.
pub const TAKEOVER_PROBE_EVERY: u32 = 1 << 16;

/// Words in a line.
const LINE_WORDS: usize = 8;
/// Header word: the number of finite bounds.
const W_BOUNDS: usize = 0;
/// Header word: the stripe mask.
const W_MASK: usize = 1;

/// One 64-byte line of eight words.
#[repr(C, align(64))]
pub(crate) struct Line([AtomicU64; LINE_WORDS]);

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Line, [u8; 64]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(align_of::<Line>(), 64);

impl Line {
    fn new() -> Self {
        Line(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Stripe word: the owner word (0: none; unused in shared stripes).
const S_OWNER: usize = 0;
/// Stripe word: the first bucket's count; the sum follows the last one.
const S_COUNTS: usize = 1;

/// Where things are, for `B` bounds and `S` owned stripes (all in lines or words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// `B`.
    pub(crate) bounds: usize,
    /// `S`, the owned stripes (as many shared ones come after them).
    pub(crate) stripes: usize,
}

impl Geometry {
    /// Lines of bounds after the header line.
    const fn bound_lines(self) -> usize {
        self.bounds.div_ceil(LINE_WORDS)
    }

    /// Words of one stripe: the owner word, `B + 1` counts, the sum.
    const fn stripe_words(self) -> usize {
        self.bounds + 3
    }

    /// Lines of one stripe.
    const fn stripe_lines(self) -> usize {
        self.stripe_words().div_ceil(LINE_WORDS)
    }

    /// The object's length in lines, or `None` if out of the supported range.
    pub(crate) fn lines(self) -> Option<usize> {
        if self.bounds > MAX_BOUNDS || self.stripes == 0 || self.stripes > MAX_STRIPES {
            return None;
        }
        Some(1 + self.bound_lines() + 2 * self.stripes * self.stripe_lines())
    }

    /// Word index of bound `i`.
    const fn bound_word(i: usize) -> usize {
        LINE_WORDS + i
    }

    /// Word index of the first word of stripe `s` (`S..2S`: the shared stripes).
    const fn stripe_word(self, s: usize) -> usize {
        (1 + self.bound_lines() + s * self.stripe_lines()) * LINE_WORDS
    }

    /// The geometry a header describes, if it is one this build supports and it fits in
    /// `len` lines. `bounds` and `mask` are the header words. On every observation: a few
    /// compares, shifts and one multiplication.
    #[inline]
    pub(crate) fn from_header(bounds: u64, mask: u64, len: usize) -> Option<Geometry> {
        // `mask + 1` a power of two at most MAX_STRIPES: `mask` is all ones below a bit.
        if bounds > MAX_BOUNDS as u64 || mask >= MAX_STRIPES as u64 || mask & (mask + 1) != 0 {
            return None;
        }
        let g = Geometry {
            bounds: bounds as usize,
            stripes: mask as usize + 1,
        };
        // Within range, so no overflow: at most 1 + 128 + 2048 * 129 lines.
        let lines = 1 + g.bound_lines() + 2 * g.stripes * g.stripe_lines();
        (lines <= len).then_some(g)
    }
}

/// Why a list of bucket bounds was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// A bound is NaN or infinite (`+Inf` is always the last bucket; do not list it).
    #[error("bucket bound {index} is {value}: bounds must be finite (+Inf is implicit)")]
    NotFinite {
        /// Its index.
        index: usize,
        /// The bound.
        value: f64,
    },
    /// A bound is not greater than the one before it.
    #[error("bucket bound {index} ({value}) is not greater than the one before ({previous})")]
    NotIncreasing {
        /// Its index.
        index: usize,
        /// The bound.
        value: f64,
        /// The bound before it.
        previous: f64,
    },
    /// More than [`MAX_BOUNDS`] bounds.
    #[error("{len} bucket bounds; at most {MAX_BOUNDS}")]
    TooMany {
        /// How many were given.
        len: usize,
    },
}

/// Checks that `bounds` are strictly increasing finite numbers, at most [`MAX_BOUNDS`].
///
/// # Errors
///
/// The first problem found, as a [`BoundsError`].
///
/// # Examples
///
/// ```
/// use shmstate::values::histogram::{BoundsError, validate_bounds};
///
/// assert!(validate_bounds(&[0.1, 0.5, 1.0]).is_ok());
/// assert!(matches!(validate_bounds(&[1.0, 1.0]), Err(BoundsError::NotIncreasing { index: 1, .. })));
/// assert!(matches!(validate_bounds(&[f64::INFINITY]), Err(BoundsError::NotFinite { .. })));
/// ```
pub fn validate_bounds(bounds: &[f64]) -> Result<(), BoundsError> {
    if bounds.len() > MAX_BOUNDS {
        return Err(BoundsError::TooMany { len: bounds.len() });
    }
    for (index, &value) in bounds.iter().enumerate() {
        if !value.is_finite() {
            return Err(BoundsError::NotFinite { index, value });
        }
        if let Some(&previous) = index.checked_sub(1).and_then(|p| bounds.get(p))
            && value <= previous
        {
            return Err(BoundsError::NotIncreasing {
                index,
                value,
                previous,
            });
        }
    }
    Ok(())
}

/// What a histogram held when it was read: bounds, cumulative bucket counts, sum and
/// count, in Prometheus' terms.
///
/// `cumulative[i]` counts the observations `v <= bounds[i]`; the last element (index
/// `bounds.len()`) is the `+Inf` bucket and equals `count`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// The finite bucket bounds (`le`), strictly increasing.
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound and a last one for `+Inf`.
    pub cumulative: Vec<u64>,
    /// The sum of the observed values.
    pub sum: f64,
    /// The number of observations (the `+Inf` bucket).
    pub count: u64,
}

impl HistogramSnapshot {
    /// `(le, cumulative count)` for every bucket, the last with `le = +Inf`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// let h = Histogram::new(&[1.0])?;
    /// h.observe(0.5);
    /// h.observe(7.0);
    /// let buckets: Vec<_> = h.snapshot().buckets().collect();
    /// assert_eq!(buckets, [(1.0, 1), (f64::INFINITY, 2)]);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .chain(core::iter::once(f64::INFINITY))
            .zip(self.cumulative.iter().copied())
    }
}

/// A histogram of `f64` observations over fixed bucket bounds, which many threads and
/// processes observe into without a lock: a Prometheus histogram in shared memory.
///
/// The bounds are chosen at creation and stored in the object (strictly increasing,
/// finite; `+Inf` is always the last bucket). [`observe`](Self::observe) is a bucket
/// search over the bounds and a plain load and store of a count and of the sum in a
/// stripe that the calling thread owns (its own cache lines, as in
/// [`StripedCounter`](crate::StripedCounter)), with no locked instruction; a thread
/// whose stripe another thread owns makes two atomic updates of a shared stripe instead.
/// See the [module docs](self) for the layout, who owns a stripe and when it is taken
/// over, the `le` semantics (NaN and infinities), how the sum stays exact, and the crash
/// windows.
///
/// Create one on the heap with [`new`](Self::new), or in a region with
/// [`Region::histogram`](crate::Region::histogram), which checks the bounds of an
/// existing object against the ones asked for.
///
/// # Orderings
///
/// Every operation is `Relaxed`: an observation publishes no other data; the exact
/// totals need only that each word is written by one thread at a time (an owned stripe's
/// owner) or by atomic read-modify-writes (a shared stripe), and that readers see each
/// word whole (see [`Counter`](crate::Counter#orderings)). A snapshot includes every
/// observation that happens-before it (after joining the observers' threads or waiting
/// for their processes).
///
/// # Examples
///
/// ```
/// use shmstate::{Histogram, Region};
///
/// let region = Region::anonymous(1 << 16)?;
/// let latency = region.histogram("latency_seconds", &[0.25, 0.5, 1.0, 2.5])?;
/// latency.observe(0.375);
/// latency.observe(0.5); // exactly on a bound: that bound's bucket
/// latency.observe(3.0); // above every bound: +Inf
/// let s = latency.snapshot();
/// assert_eq!(s.cumulative, [0, 2, 2, 2, 3]);
/// assert_eq!((s.count, s.sum), (3, 3.875));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(transparent)]
pub struct Histogram {
    /// The lines. The length comes from the (process-local) pointer metadata, never from
    /// shared memory; it is at least 1 for every histogram that can be made.
    lines: [Line],
}

// SAFETY: `Shared` items 1-6, for every `len` that `size_for` accepts (len >= 1, size
// within `isize`):
// 1. all-zero bytes are a histogram with no bounds, one owned stripe (no owner) and one
//    shared stripe, all counts 0 and sums +0.0 (the layout in the module docs), valid
//    for `len >= 3`; for `len <= 2` the header fits not both stripes, every method
//    touches only words within the object (checked indices) and reads as empty;
// 2. every bit pattern is valid: the object is `len` lines of eight `AtomicU64`s, and
//    every header value is checked before use;
// 3. no pointers, nothing to drop;
// 4. `#[repr(transparent)]` over `[Line]`, `Line` is `#[repr(C, align(64))]` over eight
//    `AtomicU64`s with no padding (size and alignment asserted above);
// 5. atomics are `Sync`; every method is atomic operations on single words;
// 6. `from_raw_parts` builds a slice pointer of `len` lines at `ptr`: exactly
//    `slice_size::<Line>(len)` bytes.
// Not implemented under loom, whose atomics are not plain memory.
#[cfg(not(loom))]
unsafe impl crate::shared::Shared for Histogram {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::HISTOGRAM, crate::Elem::NONE);
    const ALIGN: usize = align_of::<Line>();

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        crate::shared::slice_size::<Line>(len)
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self> {
        let slice = NonNull::slice_from_raw_parts(ptr.cast::<Line>(), len);
        // Cast of a slice pointer to a `#[repr(transparent)]` wrapper of that slice: same
        // address and metadata.
        let raw = slice.as_ptr() as *mut Histogram;
        // SAFETY: `new_unchecked` needs a non-null pointer: `raw` has `slice`'s address,
        // which comes from a `NonNull`.
        unsafe { NonNull::new_unchecked(raw) }
    }
}

impl Histogram {
    /// A histogram over `bounds` on the heap, with
    /// [`StripedCounter::default_stripes`](crate::StripedCounter::default_stripes)
    /// stripes of each kind.
    ///
    /// # Errors
    ///
    /// [`BoundsError`] if the bounds are not strictly increasing finite numbers, or more
    /// than [`MAX_BOUNDS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// let h = Histogram::new(&[1.0, 2.0])?;
    /// h.observe(1.5);
    /// assert_eq!(h.count(), 1);
    /// assert!(Histogram::new(&[2.0, 1.0]).is_err());
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn new(bounds: &[f64]) -> Result<Box<Histogram>, BoundsError> {
        Self::with_stripes(bounds, crate::StripedCounter::default_stripes())
    }

    /// A histogram over `bounds` on the heap with `stripes` stripes of each kind (owned
    /// and shared: see the [module docs](self)), rounded up to a power of two and clamped
    /// to `1..=`[`MAX_STRIPES`].
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// assert_eq!(Histogram::with_stripes(&[1.0], 3)?.stripes(), 4);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn with_stripes(bounds: &[f64], stripes: usize) -> Result<Box<Histogram>, BoundsError> {
        validate_bounds(bounds)?;
        let g = Geometry {
            bounds: bounds.len(),
            stripes: Self::round_stripes(stripes),
        };
        let lines = g.lines().unwrap_or(1);
        // Built line by line rather than zero-allocated, so that it also works under loom.
        let slice: Box<[Line]> = (0..lines).map(|_| Line::new()).collect();
        let raw = Box::into_raw(slice) as *mut Histogram;
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` with the same layout
        // and no other owner: `Histogram` is `#[repr(transparent)]` over `[Line]`, so the
        // cast keeps address, length and layout, and `raw` was just taken out of its box.
        let h = unsafe { Box::from_raw(raw) };
        h.init(bounds, g.stripes);
        Ok(h)
    }

    /// `stripes` rounded up to a power of two within `1..=MAX_STRIPES`.
    pub(crate) fn round_stripes(stripes: usize) -> usize {
        stripes.clamp(1, MAX_STRIPES).next_power_of_two()
    }

    /// The length in lines of a histogram of `bounds` bounds and `stripes` stripes (a
    /// power of two), for creating one in a region.
    #[cfg(not(loom))]
    pub(crate) fn lines_for(bounds: usize, stripes: usize) -> Option<usize> {
        Geometry { bounds, stripes }.lines()
    }

    /// Writes the header and bounds into a zeroed object (before anyone else sees it: on
    /// the heap in `with_stripes`, in a region inside the entry's `init`).
    pub(crate) fn init(&self, bounds: &[f64], stripes: usize) {
        // Relaxed, all of them: the object is not shared yet; the region's publication of
        // the entry (a release store, paired with every opener's acquire load) or the
        // hand-over of the box orders these before any observer.
        self.set_word(W_BOUNDS, bounds.len() as u64);
        self.set_word(W_MASK, stripes.saturating_sub(1) as u64);
        for (i, b) in bounds.iter().enumerate() {
            self.set_word(Geometry::bound_word(i), b.to_bits());
        }
    }

    fn set_word(&self, w: usize, v: u64) {
        if let Some(word) = self.word(w) {
            // Relaxed: see `init`.
            word.store(v, Ordering::Relaxed);
        }
    }

    /// Word `w`, if within the object.
    #[inline]
    fn word(&self, w: usize) -> Option<&AtomicU64> {
        #[cfg(not(loom))]
        let word = self.flat().get(w);
        #[cfg(loom)]
        let word = self
            .lines
            .get(w / LINE_WORDS)
            .and_then(|l| l.0.get(w % LINE_WORDS));
        word
    }

    /// The object's words, in order: word `w` is word `w % 8` of line `w / 8`.
    #[cfg(not(loom))]
    #[inline]
    fn flat(&self) -> &[AtomicU64] {
        let ptr = self.lines.as_ptr().cast::<AtomicU64>();
        // SAFETY: `from_raw_parts` needs `len` initialised, aligned `AtomicU64`s in one
        // allocation, valid for the returned lifetime and not mutated except through
        // atomics: `Line` is `#[repr(C, align(64))]` over `[AtomicU64; 8]` and exactly 64
        // bytes (asserted above), so `self.lines` is `8 * lines.len()` contiguous
        // `AtomicU64`s, borrowed for `&self`'s lifetime.
        unsafe { core::slice::from_raw_parts(ptr, self.lines.len() * LINE_WORDS) }
    }

    /// Relaxed load of word `w` (`None` past the end).
    #[inline]
    fn load(&self, w: usize) -> Option<u64> {
        // Relaxed: header and bounds were published with the object (see `init`); counts
        // and sums publish nothing else.
        self.word(w).map(|a| a.load(Ordering::Relaxed))
    }

    /// Where the calling thread observes: the geometry (as `Geometry`, with `stripes`
    /// the masked stripe count), the thread's id and its stripe's index, from the header
    /// with only the checks that keep the arithmetic small (`B <= MAX_BOUNDS`; the mask
    /// is masked to below `MAX_STRIPES`). The full check of `geometry` (a power-of-two
    /// stripe count, every stripe within the object) is left to the caller's checked
    /// slices: a header no histogram has makes an observation land in some words after
    /// the bounds that lie within the object, or nowhere, and never in the header or the
    /// bounds, whose words lie before every stripe. `snapshot` and `Region::histogram`
    /// refuse such a header.
    #[inline]
    fn observe_target(&self) -> Option<(Geometry, u32, usize)> {
        let bounds = self.load(W_BOUNDS)?;
        if bounds > MAX_BOUNDS as u64 {
            return None;
        }
        let mask = self.load(W_MASK)? as usize & (MAX_STRIPES - 1);
        let g = Geometry {
            bounds: bounds as usize,
            stripes: mask + 1,
        };
        let me = crate::owner::current();
        Some((g, me, me as usize & mask))
    }

    /// The geometry the header gives, if it is valid for this object's length.
    #[inline]
    fn geometry(&self) -> Option<Geometry> {
        Geometry::from_header(self.load(W_BOUNDS)?, self.load(W_MASK)?, self.lines.len())
    }

    /// Records one observation of `value`: one bucket count (the first bound `le` with
    /// `value <= le`, else `+Inf`) and the sum, in the calling thread's stripe.
    ///
    /// No lock, no syscall, no allocation once the thread owns its stripe: a thread-local
    /// read, a search of the bounds, a load of the stripe's owner word, and a plain load
    /// and store of the count and of the sum (no atomic read-modify-write: the stripe is
    /// this thread's alone). A thread's first observation draws its owner word (random
    /// bits and a `stat` of its PID namespace) and claims its stripe with a
    /// compare-and-swap. A thread whose stripe another thread owns adds to its shared
    /// stripe with a `fetch_add` and a compare-and-swap loop instead, and now and then
    /// asks the kernel whether that owner is gone (see the [module docs](self)). NaN is
    /// counted in the `+Inf` bucket and makes the sum NaN. Not for signal handlers (see
    /// the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// let h = Histogram::new(&[0.1, 1.0])?;
    /// h.observe(0.1);
    /// assert_eq!(h.snapshot().cumulative, [1, 1, 1]);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    #[inline]
    pub fn observe(&self, value: f64) {
        let Some((g, me, stripe)) = self.observe_target() else {
            return;
        };
        let word = owner_word(me);
        // Each word below is reached through a checked index: whatever the header says,
        // only words of this object are touched.
        #[cfg(not(loom))]
        {
            let words = self.flat();
            let Some(bounds) = words.get(Geometry::bound_word(0)..Geometry::bound_word(g.bounds))
            else {
                return;
            };
            let count = S_COUNTS + bucket_of(bounds, value);
            let base = g.stripe_word(stripe);
            if let Some(own) = words.get(base..base + g.stripe_words())
                && let (Some(owner), Some(c), Some(sum)) =
                    (own.get(S_OWNER), own.get(count), own.last())
            {
                // Relaxed: only this thread stores its own word there (`claim`), and a
                // thread reads its own stores in order; any other value sends it to
                // `claim`, whose compare-and-swap decides.
                if owner.load(Ordering::Relaxed) == word
                    || claim(owner, word, stripe, g.stripes - 1)
                {
                    add_owned(c, sum, value);
                    return;
                }
            }
            let base = g.stripe_word(g.stripes + stripe);
            if let Some(shared) = words.get(base..base + g.stripe_words())
                && let (Some(c), Some(sum)) = (shared.get(count), shared.last())
            {
                add_shared(c, sum, value);
            }
        }
        #[cfg(loom)]
        {
            // Loom's atomics are not 8 bytes: word by word, a linear scan.
            let mut bucket = 0;
            // Relaxed: as above.
            while bucket < g.bounds
                && !self
                    .load(Geometry::bound_word(bucket))
                    .is_some_and(|b| value <= f64::from_bits(b))
            {
                bucket += 1;
            }
            let base = g.stripe_word(stripe);
            if let (Some(owner), Some(c), Some(sum)) = (
                self.word(base + S_OWNER),
                self.word(base + S_COUNTS + bucket),
                self.word(base + S_COUNTS + g.bounds + 1),
            ) {
                // Relaxed: as above.
                if owner.load(Ordering::Relaxed) == word
                    || claim(owner, word, stripe, g.stripes - 1)
                {
                    add_owned(c, sum, value);
                    return;
                }
            }
            let base = g.stripe_word(g.stripes + stripe);
            if let (Some(c), Some(sum)) = (
                self.word(base + S_COUNTS + bucket),
                self.word(base + S_COUNTS + g.bounds + 1),
            ) {
                add_shared(c, sum, value);
            }
        }
    }

    /// The finite bucket bounds (empty if the header is not valid for this object).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// assert_eq!(Histogram::new(&[0.5, 2.0])?.bounds(), [0.5, 2.0]);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn bounds(&self) -> Vec<f64> {
        self.snapshot_checked()
            .map(|s| s.bounds)
            .unwrap_or_default()
    }

    /// The number of stripes of each kind, `S` (owned and shared: see the
    /// [module docs](self)); 1 if the header is not valid for this object.
    pub fn stripes(&self) -> usize {
        self.geometry().map_or(1, |g| g.stripes)
    }

    /// The number of observations: the sum of all bucket counts (wrapping on overflow).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// let h = Histogram::new(&[1.0])?;
    /// h.observe(f64::NAN);
    /// assert_eq!(h.count(), 1);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn count(&self) -> u64 {
        self.snapshot().count
    }

    /// The sum of the observed values.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Histogram;
    ///
    /// let h = Histogram::new(&[1.0])?;
    /// h.observe(0.25);
    /// h.observe(4.0);
    /// assert_eq!(h.sum(), 4.25);
    /// # Ok::<(), shmstate::values::histogram::BoundsError>(())
    /// ```
    pub fn sum(&self) -> f64 {
        self.snapshot().sum
    }

    /// The bounds, cumulative bucket counts, sum and count (see the [module docs](self)
    /// for what it is while observers run). A histogram whose header a peer overwrote
    /// with values no histogram has reads as empty.
    ///
    /// # Examples
    ///
    /// See the [type docs](Self).
    pub fn snapshot(&self) -> HistogramSnapshot {
        self.snapshot_checked().unwrap_or(HistogramSnapshot {
            bounds: Vec::new(),
            cumulative: vec![0],
            sum: 0.0,
            count: 0,
        })
    }

    /// Writes `id` (a model's thread id, as an owner word) into owned stripe `stripe`'s
    /// owner word: lets a model stand a dead owner in front of its observers.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn set_owner_for_test(&self, stripe: usize, id: u32) {
        if let Some(g) = self.geometry() {
            self.set_word(g.stripe_word(stripe) + S_OWNER, u64::from(id));
        }
    }

    /// The snapshot, or `None` if header or bounds are not valid for this object.
    pub(crate) fn snapshot_checked(&self) -> Option<HistogramSnapshot> {
        decode(self.lines.len(), |w| self.load(w))
    }
}

/// Owner word bits: the thread id.
const OWNER_TID_BITS: u32 = 23;
/// Owner word bits: the random bits, above the id.
const OWNER_NONCE_BITS: u32 = 21;
/// Where the namespace bits start (the top 20).
const OWNER_NS_SHIFT: u32 = OWNER_TID_BITS + OWNER_NONCE_BITS;

/// The calling thread's owner word (see the module docs), for thread id `me`: drawn at
/// the thread's first observation and kept in a thread-local with the id and the fork
/// generation it was drawn for, so that a forked child, which inherits its parent
/// thread's thread-locals (and may even have its id, as the first process of a new PID
/// namespace), draws its own.
#[cfg(not(loom))]
#[inline]
fn owner_word(me: u32) -> u64 {
    use std::cell::Cell;
    thread_local! {
        /// The id and fork generation the word was drawn for, and the word.
        static WORD: Cell<(u32, u32, u64)> = const { Cell::new((0, 0, 0)) };
    }
    let forks = crate::owner::fork_generation();
    WORD.with(|c| match c.get() {
        (id, f, word) if id == me && f == forks => word,
        _ => {
            let word = new_owner_word(me);
            c.set((me, forks, word));
            word
        }
    })
}

/// Draws an owner word for thread id `me`: the id, random bits from the kernel (the
/// clock if that fails) and the PID namespace's bits.
#[cfg(not(loom))]
#[cold]
fn new_owner_word(me: u32) -> u64 {
    (namespace_bits() << OWNER_NS_SHIFT)
        | ((random_u64() & ((1 << OWNER_NONCE_BITS) - 1)) << OWNER_TID_BITS)
        | (u64::from(me) & ((1 << OWNER_TID_BITS) - 1))
}

/// 64 random bits from the kernel (the clock and thread id if that fails).
#[cfg(not(loom))]
fn random_u64() -> u64 {
    let seed = crate::map::bytemap::random_seed();
    let mut random = [0u8; 8];
    random.copy_from_slice(&seed[..8]);
    u64::from_le_bytes(random)
}

/// The owner word's namespace bits: the inode of the calling process's PID namespace
/// (`/proc/self/ns/pid`), folded to 20 bits. Without `/proc` the namespace cannot be
/// named, so the bits are random, drawn once per process (again in a forked child): the
/// process's threads share them, and no other process matches them (but for odds of
/// 2⁻²⁰), so that a stripe of another process is never taken over on the strength of an
/// id that may belong to another namespace.
#[cfg(not(loom))]
fn namespace_bits() -> u64 {
    use crate::sync::{AtomicU64, Ordering};
    const BITS: u64 = (1 << (64 - OWNER_NS_SHIFT)) - 1;
    /// The random bits of a process without `/proc`: `generation << 32 | 1 << 31 | bits`
    /// (0: none drawn yet), for the fork generation they were drawn in.
    static NO_PROC: AtomicU64 = AtomicU64::new(0);
    if let Ok(st) = rustix::fs::stat("/proc/self/ns/pid") {
        let ino = st.st_ino;
        return (ino ^ (ino >> 20) ^ (ino >> 40)) & BITS;
    }
    let forks = u64::from(crate::owner::fork_generation());
    // Relaxed: threads that race here both draw and one value wins; each uses the value
    // its compare-and-swap read or wrote, so all of the process's threads agree.
    let drawn = NO_PROC.load(Ordering::Relaxed);
    if drawn != 0 && drawn >> 32 == forks {
        return drawn & BITS;
    }
    let new = forks << 32 | 1 << 31 | (random_u64() & BITS);
    // Relaxed: as above.
    match NO_PROC.compare_exchange(drawn, new, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => new & BITS,
        Err(now) if now != 0 && now >> 32 == forks => now & BITS,
        // Drawn for another generation meanwhile: not possible within one process (the
        // generation changes only in a forked child, before it has other threads).
        Err(_) => new & BITS,
    }
}

/// Under loom a thread's owner word is its (model) id: loom threads are not reused.
#[cfg(loom)]
fn owner_word(me: u32) -> u64 {
    u64::from(me)
}

/// Makes the calling thread (owner word `word`) the owner of stripe `stripe` (of mask
/// `mask`) whose owner word is `owner`, if the stripe has no owner or its owner is surely
/// gone (see "Taking over" in the module docs). `true` if it now owns it.
#[cold]
#[inline(never)]
fn claim(owner: &AtomicU64, word: u64, stripe: usize, mask: usize) -> bool {
    // Relaxed: the compare-and-swaps below decide.
    let seen = owner.load(Ordering::Relaxed);
    if seen == 0 {
        // Relaxed: nobody writes a stripe without an owner plainly, and shared
        // observations go to the shared stripes; whatever garbage writes left in it is
        // added to the same way, and publishes nothing.
        let won = owner
            .compare_exchange(0, word, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if won {
            crate::failpoint::hit(crate::failpoint::Point::HistogramClaimed);
        }
        return won;
    }
    if !gone(seen, word, stripe, mask) {
        return false;
    }
    crate::failpoint::hit(crate::failpoint::Point::HistogramProbed);
    // Relaxed: the owner is gone; its last stores came before its death, which the
    // kernel reported (or there was no owner: garbage, or an earlier thread of this id).
    // That order is the kernel's; no atomic of a dead thread can be paired with.
    let won = owner
        .compare_exchange(seen, word, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok();
    if won {
        crate::failpoint::hit(crate::failpoint::Point::HistogramTakenOver);
    }
    won
}

/// Whether the owner of stripe `stripe` (of mask `mask`), whose word is `seen`, is
/// surely gone, for the calling thread of word `word` (see "Taking over" in the module
/// docs). May probe the kernel (`kill(tid, 0)` and a read of `/proc`).
fn gone(seen: u64, word: u64, stripe: usize, mask: usize) -> bool {
    let tid_mask = (1 << OWNER_TID_BITS) - 1;
    let tid = seen & tid_mask;
    // Garbage: no owner of this stripe writes an id that is 0, past any thread's, or
    // that selects another stripe.
    if tid == 0 || tid > u64::from(crate::owner::Tid::MAX) || tid as usize & mask != stripe {
        return true;
    }
    if seen >> OWNER_NS_SHIFT != word >> OWNER_NS_SHIFT {
        // Another namespace: its ids mean nothing here.
        return false;
    }
    if tid == word & tid_mask {
        // This thread's id with other random bits: an earlier thread of this id.
        return true;
    }
    takeover_probe_due(word) && crate::owner::probe(tid as u32) == crate::owner::Liveness::Dead
}

/// Whether this shared observation of the calling thread (owner word `word`) is one that
/// probes its stripe's owner: the first, then every [`TAKEOVER_PROBE_EVERY`]th (a
/// thread-local count across histograms, kept with the word so that a forked child, which
/// inherits its parent thread's count, starts again from its first).
#[cfg(not(loom))]
fn takeover_probe_due(word: u64) -> bool {
    use std::cell::Cell;
    thread_local! {
        /// The word the count is for, and the thread's shared observations modulo
        /// `TAKEOVER_PROBE_EVERY`.
        static SHARED: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    }
    SHARED.with(|c| {
        let (w, n) = c.get();
        let n = if w == word { n } else { 0 };
        c.set((word, (n + 1) % TAKEOVER_PROBE_EVERY));
        n == 0
    })
}

/// Under loom a probe is cheap (no syscall) and every shared observation probes.
#[cfg(loom)]
fn takeover_probe_due(_: u64) -> bool {
    true
}

/// Adds one observation of `value` to a bucket of a stripe the calling thread owns: a
/// load and a store of each word.
#[inline]
fn add_owned(count: &AtomicU64, sum: &AtomicU64, value: f64) {
    // Relaxed loads and stores: the owner is the stripe's only writer (see the module
    // docs), so nothing comes between its load and its store; a reader needs only each
    // word's atomicity, as for the shared path.
    let n = count.load(Ordering::Relaxed);
    crate::failpoint::hit(crate::failpoint::Point::HistogramOwnedRead);
    // Relaxed: as above.
    count.store(n.wrapping_add(1), Ordering::Relaxed);
    crate::failpoint::hit(crate::failpoint::Point::HistogramCounted);
    // Relaxed: as above.
    let old = f64::from_bits(sum.load(Ordering::Relaxed));
    // Relaxed: as above.
    sum.store((old + value).to_bits(), Ordering::Relaxed);
}

/// Adds one observation of `value` to a bucket of the shared stripe: a `fetch_add` of 1
/// on the count, then a compare-and-swap loop that adds `value` to the `f64` whose bits
/// the sum holds, so that no addition is lost.
#[inline]
fn add_shared(count: &AtomicU64, sum: &AtomicU64, value: f64) {
    // Relaxed: counting needs only the atomicity of the RMW (see the type docs).
    count.fetch_add(1, Ordering::Relaxed);
    crate::failpoint::hit(crate::failpoint::Point::HistogramCounted);
    // Relaxed: the loop needs only that the compare-and-swap succeeds on the bits it
    // read; the sum publishes nothing else.
    let mut old = sum.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(old) + value).to_bits();
        // Relaxed on both sides, as above.
        match sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => old = now,
        }
    }
}

/// The bucket of `value` among `bounds`: the first `i` with `value <= bounds[i]`, else
/// `bounds.len()` (the `+Inf` bucket; NaN compares false everywhere and lands there). Up
/// to 16 bounds, the number of bounds below the value, counted without a branch (a
/// search whose branches depend on the value mispredicts when observations vary); above,
/// a binary search. Bounds a peer wrote out of order give some bucket `<= bounds.len()`,
/// never one out of range.
#[cfg(not(loom))]
#[inline]
fn bucket_of(bounds: &[AtomicU64], value: f64) -> usize {
    // Relaxed: the bounds were published with the object (see `init`).
    // A bound is below the value unless `value <= bound`: NaN is above every bound.
    let below = |b: &AtomicU64| {
        matches!(
            value.partial_cmp(&f64::from_bits(b.load(Ordering::Relaxed))),
            Some(core::cmp::Ordering::Greater) | None
        )
    };
    if bounds.len() <= 2 * LINE_WORDS {
        bounds.iter().map(|b| usize::from(below(b))).sum()
    } else {
        bounds.partition_point(below)
    }
}

/// Reads a histogram of `len` lines through `load` (word index → word): the one decoder
/// behind [`Histogram::snapshot`] and the metrics renderer's read-only path. `None` if
/// the header or the bounds are not what a histogram of this length holds. Bounded by
/// `len` whatever the words say.
pub(crate) fn decode(len: usize, load: impl Fn(usize) -> Option<u64>) -> Option<HistogramSnapshot> {
    let g = Geometry::from_header(load(W_BOUNDS)?, load(W_MASK)?, len)?;
    let mut bounds = Vec::with_capacity(g.bounds);
    for i in 0..g.bounds {
        bounds.push(f64::from_bits(load(Geometry::bound_word(i))?));
    }
    validate_bounds(&bounds).ok()?;
    let mut counts = vec![0u64; g.bounds + 1];
    let mut sum = 0.0;
    // The owned stripes and the shared ones.
    for s in 0..2 * g.stripes {
        let base = g.stripe_word(s) + S_COUNTS;
        for (i, c) in counts.iter_mut().enumerate() {
            *c = c.wrapping_add(load(base + i)?);
        }
        sum += f64::from_bits(load(base + g.bounds + 1)?);
    }
    let mut running = 0u64;
    let cumulative: Vec<u64> = counts
        .iter()
        .map(|c| {
            running = running.wrapping_add(*c);
            running
        })
        .collect();
    Some(HistogramSnapshot {
        bounds,
        count: running,
        cumulative,
        sum,
    })
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Histogram")
            .field("bounds", &s.bounds)
            .field("cumulative", &s.cumulative)
            .field("sum", &s.sum)
            .field("count", &s.count)
            .finish()
    }
}

/// Why [`Region::histogram`](crate::Region::histogram) failed.
#[cfg(not(loom))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramError {
    /// The bounds asked for are not valid.
    #[error(transparent)]
    Bounds(#[from] BoundsError),
    /// The region refused the object (bad name, another type under the name, full,
    /// corrupt directory); never [`GetError::Timeout`](crate::GetError::Timeout), which
    /// is [`HistogramError::Timeout`].
    #[error(transparent)]
    Get(crate::GetError),
    /// The histogram exists with other bounds. Two programs disagree about its buckets:
    /// fix one of them, or use another name.
    #[error("histogram `{name}` has bounds {recorded:?}, not {requested:?}")]
    BoundsMismatch {
        /// The object's name.
        name: String,
        /// The bounds stored in the object.
        recorded: Vec<f64>,
        /// The bounds asked for.
        requested: Vec<f64>,
    },
    /// The object's header or bounds hold values no histogram has (a peer wrote garbage).
    #[error("histogram `{name}` is corrupt (its header or bounds are not valid)")]
    Corrupt {
        /// The object's name.
        name: String,
    },
    /// Another live process kept creating the object longer than the region's timeout.
    #[error("timed out waiting for another process to create the histogram")]
    Timeout,
}

#[cfg(not(loom))]
impl From<crate::GetError> for HistogramError {
    fn from(e: crate::GetError) -> Self {
        match e {
            crate::GetError::Timeout => HistogramError::Timeout,
            e => HistogramError::Get(e),
        }
    }
}

#[cfg(not(loom))]
impl From<crate::Timeout> for HistogramError {
    fn from(_: crate::Timeout) -> Self {
        HistogramError::Timeout
    }
}

#[cfg(not(loom))]
impl crate::Region {
    /// The histogram `name` over `bounds`, creating it with
    /// [`StripedCounter::default_stripes`](crate::StripedCounter::default_stripes)
    /// stripes of each kind if there is none. An existing histogram is opened whatever its stripe
    /// count, if its stored bounds are `bounds`.
    ///
    /// # Errors
    ///
    /// - [`HistogramError::Bounds`]: `bounds` are not strictly increasing finite numbers
    ///   (or more than [`MAX_BOUNDS`]).
    /// - [`HistogramError::BoundsMismatch`]: the histogram exists with other bounds.
    /// - [`HistogramError::Corrupt`]: the object's header or bounds are not valid.
    /// - [`HistogramError::Timeout`]: another live process kept creating it too long.
    /// - [`HistogramError::Get`]: the region's own errors ([`GetError`](crate::GetError):
    ///   a bad name, another type under this name, no room).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::values::histogram::HistogramError;
    /// use shmstate::Region;
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let h = region.histogram("rtt_seconds", &[0.001, 0.01, 0.1])?;
    /// h.observe(0.02);
    /// // Another process (or this one) opens the same histogram...
    /// assert_eq!(region.histogram("rtt_seconds", &[0.001, 0.01, 0.1])?.count(), 1);
    /// // ...but not with other buckets.
    /// assert!(matches!(
    ///     region.histogram("rtt_seconds", &[1.0]),
    ///     Err(HistogramError::BoundsMismatch { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram(&self, name: &str, bounds: &[f64]) -> Result<&Histogram, HistogramError> {
        self.histogram_with_stripes(name, bounds, crate::StripedCounter::default_stripes())
    }

    /// As [`histogram`](Self::histogram), creating it with `stripes` stripes (rounded up
    /// to a power of two, clamped to `1..=`[`MAX_STRIPES`]) if there is none.
    ///
    /// # Errors
    ///
    /// As for [`histogram`](Self::histogram).
    pub fn histogram_with_stripes(
        &self,
        name: &str,
        bounds: &[f64],
        stripes: usize,
    ) -> Result<&Histogram, HistogramError> {
        validate_bounds(bounds)?;
        let stripes = Histogram::round_stripes(stripes);
        let h = match self.get::<Histogram>(name) {
            Ok(h) => h,
            Err(crate::GetError::NotFound { .. }) => {
                // `validate_bounds` and `round_stripes` keep both within range.
                let len = Histogram::lines_for(bounds.len(), stripes).unwrap_or(1);
                match self.get_or_init_slice(name, len, |h: &Histogram| h.init(bounds, stripes)) {
                    Ok(h) => h,
                    // Created meanwhile by another process with another stripe count.
                    Err(crate::GetError::TypeMismatch { .. }) => self.get::<Histogram>(name)?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let Some(s) = h.snapshot_checked() else {
            return Err(HistogramError::Corrupt { name: name.into() });
        };
        // Compared bit for bit: `-0.0` and `0.0` are different bounds to a user's eyes.
        let same = s.bounds.len() == bounds.len()
            && s.bounds
                .iter()
                .zip(bounds)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return Err(HistogramError::BoundsMismatch {
                name: name.into(),
                recorded: s.bounds,
                requested: bounds.to_vec(),
            });
        }
        Ok(h)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn geometry_places_bounds_and_stripes_on_their_own_lines() {
        let g = Geometry {
            bounds: 7,
            stripes: 2,
        };
        // header, 1 line of bounds, 2 owned and 2 shared stripes, each of 7 + 3 = 10
        // words = 2 lines.
        assert_eq!(g.lines(), Some(1 + 1 + 4 * 2));
        assert_eq!(g.stripe_word(0), 16);
        assert_eq!(g.stripe_word(1), 32);
        assert_eq!(g.stripe_word(2), 48, "the first shared stripe");
        let zero = Geometry {
            bounds: 0,
            stripes: 1,
        };
        assert_eq!(zero.lines(), Some(3));
        assert_eq!(Geometry::from_header(0, 0, 3), Some(zero));
        assert_eq!(
            Geometry::from_header(0, 0, 2),
            None,
            "no room for the shared stripe"
        );
        assert_eq!(Geometry::from_header(0, 2, 100), None, "3 stripes");
        assert_eq!(Geometry::from_header(u64::MAX, 0, 100), None);
        assert_eq!(Geometry::from_header(0, u64::MAX, 100), None);
    }

    #[test]
    fn the_bucket_search_finds_the_first_bound_at_or_above_the_value() {
        let atomics = |v: &[f64]| {
            v.iter()
                .map(|b| AtomicU64::new(b.to_bits()))
                .collect::<Vec<_>>()
        };
        let probes = [
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            0.5,
            1.0,
            1.5,
            7.0,
            11.0,
            11.5,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ];
        // Both sides of the linear/binary switch, and every length up to 17.
        for n in 0..=17 {
            let bounds: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let words = atomics(&bounds);
            for &v in &probes {
                let expected = bounds.iter().position(|&b| v <= b).unwrap_or(n);
                assert_eq!(bucket_of(&words, v), expected, "{v} in {n} bounds");
            }
        }
        // Bounds a peer wrote out of order: some bucket, within range.
        let words = atomics(&[5.0, 1.0, 9.0, 0.0, 3.0, 2.0, 8.0, 7.0, 6.0, 4.0, f64::NAN]);
        for &v in &probes {
            assert!(bucket_of(&words, v) <= words.len());
        }
    }

    /// The owner word of owned stripe 0.
    fn owner0(h: &Histogram) -> u64 {
        let g = h.geometry().unwrap();
        h.load(g.stripe_word(0) + S_OWNER).unwrap()
    }

    /// The calling thread's owner word.
    fn mine() -> u64 {
        owner_word(crate::owner::current())
    }

    /// The count of shared stripe `s`'s first bucket.
    fn shared_first_count(h: &Histogram, s: usize) -> u64 {
        let g = h.geometry().unwrap();
        h.load(g.stripe_word(g.stripes + s) + S_COUNTS).unwrap()
    }

    /// Waits until the kernel reports thread `tid` gone: `join` returns as a thread
    /// exits, and its id may read alive a moment longer.
    fn wait_gone(tid: u32) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while crate::owner::probe(tid) == crate::owner::Liveness::Alive {
            assert!(
                std::time::Instant::now() < deadline,
                "thread {tid} still reads alive 10 s after it was joined"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_owner_word_is_the_id_random_bits_and_the_namespace() {
        let me = crate::owner::current();
        let w = mine();
        assert_eq!(w & ((1 << OWNER_TID_BITS) - 1), u64::from(me));
        assert_eq!(mine(), w, "drawn once per thread");
        // Another thread of this process: another id and other random bits, the same
        // namespace.
        let other = std::thread::scope(|s| s.spawn(mine).join().unwrap());
        assert_ne!(other & ((1 << OWNER_TID_BITS) - 1), u64::from(me));
        assert_eq!(other >> OWNER_NS_SHIFT, w >> OWNER_NS_SHIFT);
        // A word drawn afresh for the same id (as after a fork) differs in its random
        // bits (but for odds of 2^-21).
        assert_ne!(new_owner_word(me), w);
    }

    #[test]
    fn a_thread_owns_its_stripe_until_it_is_gone_then_another_takes_it_over() {
        let h = Histogram::with_stripes(&[1.0], 1).unwrap();
        assert_eq!(owner0(&h), 0);
        // A thread claims the stripe at its first observation, and keeps it.
        let (first, word) = std::thread::scope(|s| {
            s.spawn(|| {
                h.observe(0.5);
                h.observe(2.0);
                (crate::owner::current(), mine())
            })
            .join()
            .unwrap()
        });
        assert_eq!(owner0(&h), word);
        wait_gone(first);
        // It has exited: a new thread's first observation finds it gone and takes the
        // stripe over, keeping its counts.
        std::thread::scope(|s| {
            s.spawn(|| {
                h.observe(4.0);
                assert_eq!(owner0(&h), mine());
                // While it lives, another thread observes into the shared stripe.
                std::thread::scope(|s| {
                    s.spawn(|| h.observe(0.25));
                });
                assert_eq!(owner0(&h), mine());
            });
        });
        let s = h.snapshot();
        assert_eq!((s.cumulative.as_slice(), s.sum), (&[2, 4][..], 6.75));
        assert_eq!(
            shared_first_count(&h, 0),
            1,
            "the 0.25 is in the shared stripe"
        );
    }

    #[test]
    fn an_owner_that_dies_while_others_share_is_taken_over_within_the_probe_interval() {
        let h = Histogram::with_stripes(&[1.0], 1).unwrap();
        let (owner_tx, owner_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let h = &*h;
            let owner = s.spawn(move || {
                h.observe(0.5);
                owner_tx.send(crate::owner::current()).unwrap();
                stop_rx.recv().unwrap();
            });
            let owner_tid = owner_rx.recv().unwrap();
            s.spawn(move || {
                // The first shared observation probes: the owner is alive.
                h.observe(0.5);
                assert_ne!(owner0(h), mine());
                stop_tx.send(()).unwrap();
                owner.join().unwrap();
                wait_gone(owner_tid);
                let mut n = 0u64;
                while owner0(h) != mine() {
                    h.observe(2.0);
                    n += 1;
                    assert!(n <= u64::from(TAKEOVER_PROBE_EVERY), "not taken over");
                }
                // The owner's 0.5 and this thread's first one, then `n` of 2.0: the last
                // of them in the stripe it took over.
                let s = h.snapshot();
                assert_eq!(s.cumulative, [2, 2 + n]);
                assert_eq!(s.sum, 1.0 + 2.0 * n as f64);
            });
        });
    }

    #[test]
    fn garbage_and_stale_owner_words_are_taken_over_and_foreign_ones_are_not() {
        let h = Histogram::with_stripes(&[1.0], 2).unwrap();
        let g = h.geometry().unwrap();
        let me = crate::owner::current();
        let stripe = me as usize & 1;
        let owner = g.stripe_word(stripe) + S_OWNER;
        let word = mine();
        let ns = word >> OWNER_NS_SHIFT << OWNER_NS_SHIFT;
        let other_stripe = u64::from(me ^ 1);
        for garbage in [
            u64::MAX,
            1 << 40,
            u64::from(crate::owner::Tid::MAX) + 1,
            ns | other_stripe,            // an id of the other stripe
            word ^ (1 << OWNER_TID_BITS), // this thread's id and namespace, other random bits
        ] {
            h.set_word(owner, garbage);
            h.observe(0.5);
            assert_eq!(h.load(owner), Some(word), "{garbage:#x} taken over");
        }
        // Another namespace's owner of this stripe (the same id, even): never taken over.
        let foreign = word ^ (1 << OWNER_NS_SHIFT);
        h.set_word(owner, foreign);
        h.observe(0.5);
        assert_eq!(h.load(owner), Some(foreign));
        assert_eq!(shared_first_count(&h, stripe), 1);
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn a_hostile_header_makes_observe_a_no_op_and_snapshot_empty() {
        let h = Histogram::with_stripes(&[1.0, 2.0], 2).unwrap();
        h.observe(1.0);
        h.set_word(W_BOUNDS, 5000);
        h.observe(1.0);
        assert_eq!(h.snapshot().count, 0);
        assert!(h.snapshot_checked().is_none());
        h.set_word(W_BOUNDS, 2);
        assert_eq!(h.count(), 1);
        // Bounds rewritten out of order: the snapshot refuses them; observe still only
        // touches the object's own words.
        h.set_word(Geometry::bound_word(0), 9.0f64.to_bits());
        h.observe(1.5);
        assert!(h.snapshot_checked().is_none());
        // A stripe mask no histogram has, and a larger bound count that still fits:
        // observations land in the stripes or nowhere, never in the header or bounds.
        h.set_word(Geometry::bound_word(0), 1.0f64.to_bits());
        for (bounds, mask) in [(2, 2), (2, u64::MAX), (9, 1), (MAX_BOUNDS as u64, 0)] {
            h.set_word(W_BOUNDS, bounds);
            h.set_word(W_MASK, mask);
            for v in [0.5, 1.5, 3.0, f64::NAN, -1.0] {
                h.observe(v);
            }
            assert_eq!(
                (h.load(W_BOUNDS), h.load(W_MASK)),
                (Some(bounds), Some(mask))
            );
            assert_eq!(h.load(Geometry::bound_word(0)), Some(1.0f64.to_bits()));
            assert_eq!(h.load(Geometry::bound_word(1)), Some(2.0f64.to_bits()));
            assert!(h.snapshot_checked().is_none() || (bounds, mask) == (2, 1));
        }
    }
}
