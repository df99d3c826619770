//! [`Counter`]: a 64-bit event counter that fills its own cache line.

use core::fmt;

use crate::sync::{AtomicU64, Ordering};

/// The 56 bytes that fill a 64-byte cache line after one `u64` word.
///
/// This crate never reads or writes them. They are atomics rather than plain bytes (or
/// implicit padding) so that the types using them are padding-free, as the
/// [`Shared`](crate::Shared) contract asks, and whatever another process writes there is a
/// write the type allows rather than a change under a shared reference to plain memory.
/// Under loom the fill is empty: loom atomics are not plain memory and layout does not
/// matter there.
#[cfg(not(loom))]
#[repr(C)]
pub(crate) struct LineFill([AtomicU64; 7]);

#[cfg(not(loom))]
impl LineFill {
    /// Zeroed fill.
    pub(crate) const fn new() -> Self {
        LineFill([const { AtomicU64::new(0) }; 7])
    }
}

/// Empty under loom (see the non-loom definition).
#[cfg(loom)]
pub(crate) struct LineFill;

#[cfg(loom)]
impl LineFill {
    /// Nothing to fill under loom.
    pub(crate) const fn new() -> Self {
        LineFill
    }
}

/// A `u64` event counter that processes (and threads) add to without losing any update.
///
/// A `Counter` occupies a whole 64-byte cache line (`#[repr(C, align(64))]`, size 64), so
/// a neighbouring object written by someone else never shares its line (no false sharing).
/// When many writers hammer one counter, all of them still contend for that line; a
/// [`StripedCounter`](crate::StripedCounter) spreads them over several lines instead.
///
/// Arithmetic wraps around on overflow (at 2⁶⁴, which at 10⁹ increments a second takes
/// some 580 years).
///
/// # Orderings
///
/// Every operation is `Relaxed`, and that is enough to count exactly: all read-modify-writes
/// of one atomic form a single modification order in which each one reads the value left
/// by the previous one, whatever ordering it uses, so no increment is ever lost or counted
/// twice. A stronger ordering would only order *other* memory around the counter, and a
/// counter publishes no other data.
///
/// What [`get`](Self::get) guarantees: it returns some value the counter has held, never
/// older than one this thread already read or wrote (coherence), and including every
/// increment that happens-before the call — in particular every increment of a thread
/// this one has joined or of a child process it has waited for (`waitpid`). While others
/// are counting it is only a recent value. It does **not** make other memory visible: to
/// publish data along with a number, use a [`Value<u64>`](crate::Value) with
/// `Release`/`Acquire`.
///
/// # Examples
///
/// ```
/// use shmstate::Counter;
///
/// let requests = Counter::new();
/// requests.inc();
/// assert_eq!(requests.add(10), 1); // returns the previous value
/// assert_eq!(requests.get(), 11);
/// assert_eq!(requests.take(), 11); // read and reset in one step
/// assert_eq!(requests.get(), 0);
/// ```
#[repr(C, align(64))]
pub struct Counter {
    /// The count; only `Relaxed` operations touch it (see the type docs).
    value: AtomicU64,
    /// Fills the rest of the cache line.
    _fill: LineFill,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Counter, [u8; 64]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(align_of::<Counter>(), 64);

// SAFETY: (1) all-zero bytes are the count 0; (2) every bit pattern is valid: the type is
// eight `AtomicU64`s, one count and seven never-used fill words; (3) no pointers, nothing
// to drop; (4) `#[repr(C, align(64))]` with no padding, size and alignment asserted above;
// (5) atomics are `Sync` and every method is one atomic operation. Not implemented under
// loom, whose atomics are not plain memory.
#[cfg(not(loom))]
unsafe impl crate::shared::SharedSized for Counter {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::COUNTER, crate::shared::Elem::NONE);
}

impl Counter {
    /// A counter at zero.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Counter {
            value: AtomicU64::new(0),
            _fill: LineFill::new(),
        }
    }

    /// A counter at zero (not `const` under loom, whose atomics are not).
    #[cfg(loom)]
    pub fn new() -> Self {
        Counter {
            value: AtomicU64::new(0),
            _fill: LineFill::new(),
        }
    }

    /// Adds `n`, wrapping around on overflow, and returns the previous value.
    ///
    /// One atomic `fetch_add`, no syscall.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Counter;
    ///
    /// let c = Counter::new();
    /// assert_eq!(c.add(5), 0);
    /// assert_eq!(c.add(5), 5);
    /// ```
    #[inline]
    pub fn add(&self, n: u64) -> u64 {
        // Relaxed: counting needs only the atomicity of the RMW (see the type docs).
        self.value.fetch_add(n, Ordering::Relaxed)
    }

    /// Adds one and returns the previous value.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Counter;
    ///
    /// let c = Counter::new();
    /// assert_eq!(c.inc(), 0);
    /// assert_eq!(c.inc(), 1);
    /// ```
    #[inline]
    pub fn inc(&self) -> u64 {
        self.add(1)
    }

    /// The current count (see [Orderings](Self#orderings) for what it guarantees).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Counter;
    ///
    /// let c = Counter::new();
    /// c.add(3);
    /// assert_eq!(c.get(), 3);
    /// ```
    #[inline]
    pub fn get(&self) -> u64 {
        // Relaxed: a counter publishes no other data (see the type docs).
        self.value.load(Ordering::Relaxed)
    }

    /// Sets the count to zero. Increments that land just before it are discarded; use
    /// [`take`](Self::take) to keep them.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Counter;
    ///
    /// let c = Counter::new();
    /// c.add(3);
    /// c.reset();
    /// assert_eq!(c.get(), 0);
    /// ```
    #[inline]
    pub fn reset(&self) {
        // Relaxed: a counter publishes no other data (see the type docs).
        self.value.store(0, Ordering::Relaxed)
    }

    /// Returns the count and sets it to zero in one atomic step: every increment is either
    /// in the returned value or still in the counter, so periodic `take`s add up exactly
    /// to the total counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Counter;
    ///
    /// let c = Counter::new();
    /// c.add(7);
    /// assert_eq!(c.take(), 7);
    /// c.inc();
    /// assert_eq!(c.take(), 1);
    /// ```
    #[inline]
    pub fn take(&self) -> u64 {
        // Relaxed: the swap is one RMW in the counter's modification order, so no
        // increment is lost between reading and zeroing (see the type docs).
        self.value.swap(0, Ordering::Relaxed)
    }
}

impl Default for Counter {
    /// A counter at zero.
    fn default() -> Self {
        Counter::new()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}
