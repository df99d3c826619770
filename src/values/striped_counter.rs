//! [`StripedCounter`]: a counter split over cache lines so that many writers do not
//! contend.

use core::fmt;
#[cfg(not(loom))]
use core::ptr::{self, NonNull};

use crate::sync::{AtomicU64, Ordering};
use crate::values::counter::LineFill;

/// The most stripes [`StripedCounter::default_stripes`] picks.
pub const MAX_DEFAULT_STRIPES: usize = 64;

/// One stripe: a `u64` alone on its 64-byte cache line.
///
/// Not `crossbeam_utils::CachePadded`: that is 128 bytes on x86_64 (it pads to two lines
/// against the adjacent-line prefetcher), which would double the memory for little gain
/// here, and its layout is not a documented, pointer-free `#[repr(C)]` we could promise in
/// the [`Shared`](crate::Shared) contract.
#[repr(C, align(64))]
pub(crate) struct Stripe {
    /// This stripe's share of the count; only `Relaxed` operations touch it.
    value: AtomicU64,
    /// Fills the rest of the line.
    _fill: LineFill,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Stripe, [u8; 64]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(align_of::<Stripe>(), 64);

impl Stripe {
    fn new() -> Self {
        Stripe {
            value: AtomicU64::new(0),
            _fill: LineFill::new(),
        }
    }
}

/// A `u64` counter split into stripes, one cache line each, so that writers on different
/// CPUs add to different lines instead of all fighting over one.
///
/// Each thread adds to "its" stripe, chosen as its kernel thread id modulo the number of
/// stripes (the id is cached in a thread-local, so [`add`](Self::add) is one thread-local
/// read and one atomic `fetch_add`, no syscall). The choice is stable for the life of a
/// thread; a forked child gets a new thread id and so, usually, another stripe. Thread ids
/// are handed out in sequence, so consecutive workers land on different stripes. Any
/// choice is correct; it only affects speed.
///
/// Reading is the slow side: [`sum`](Self::sum) adds up every stripe.
///
/// The type is slice-shaped (`#[repr(transparent)]` over its stripes): create one on the
/// heap with [`new`](Self::new), or in a region with
/// `region.get_or_default_slice::<StripedCounter>(name, stripes)`.
///
/// # Orderings
///
/// As for [`Counter`](crate::Counter) every operation is `Relaxed`: counting needs only
/// the atomicity of each `fetch_add`, and a counter publishes no other data.
///
/// # Examples
///
/// ```
/// use shmstate::StripedCounter;
///
/// let hits = StripedCounter::new(StripedCounter::default_stripes());
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..1000 {
///                 hits.inc();
///             }
///         });
///     }
/// });
/// assert_eq!(hits.sum(), 4000); // exact: the writers have been joined
/// ```
#[repr(transparent)]
pub struct StripedCounter {
    /// The stripes. The length comes from the (process-local) pointer metadata, never from
    /// shared memory, and is at least 1 for every counter that can be made.
    stripes: [Stripe],
}

// SAFETY: For every `len` that `size_for` accepts (len >= 1, size within `isize`):
// (1) all-zero bytes are every stripe at 0, a count of 0; (2) every bit pattern is valid:
// the object is `len` stripes of eight `AtomicU64`s each; (3) no pointers, nothing to
// drop; (4) `#[repr(transparent)]` over `[Stripe]`, `Stripe` is `#[repr(C, align(64))]`
// without padding, size and alignment asserted above; (5) atomics are `Sync`, every
// method is atomic operations on single stripes; (6) `from_raw_parts` only builds a slice
// pointer of `len` stripes at `ptr`, which covers exactly `slice_size::<Stripe>(len)`
// bytes. Not implemented under loom, whose atomics are not plain memory.
#[cfg(not(loom))]
unsafe impl crate::shared::Shared for StripedCounter {
    const TAG: crate::shared::TypeTag =
        crate::shared::TypeTag::new(crate::shared::Kind::STRIPED_COUNTER, crate::Elem::NONE);
    const ALIGN: usize = align_of::<Stripe>();

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        crate::shared::slice_size::<Stripe>(len)
    }

    #[inline]
    fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> NonNull<Self> {
        let slice = ptr::slice_from_raw_parts_mut(ptr.as_ptr().cast::<Stripe>(), len);
        // SAFETY: `new_unchecked` needs a non-null pointer: the slice pointer's address
        // is `ptr`'s, which is non-null. The `as` cast keeps the metadata (`len`), and
        // `StripedCounter` is `#[repr(transparent)]` over `[Stripe]`.
        unsafe { NonNull::new_unchecked(slice as *mut StripedCounter) }
    }
}

impl StripedCounter {
    /// A counter at zero with `stripes` stripes (64 bytes each).
    ///
    /// More stripes than CPUs that write at once gain nothing;
    /// [`default_stripes`](Self::default_stripes) is a good choice.
    ///
    /// # Panics
    ///
    /// Panics if `stripes` is 0 (a counter needs somewhere to count), or if
    /// `stripes * 64` bytes overflow `isize`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(4);
    /// assert_eq!(c.stripes(), 4);
    /// c.add(2);
    /// assert_eq!(c.sum(), 2);
    /// ```
    pub fn new(stripes: usize) -> Box<StripedCounter> {
        assert!(
            stripes > 0,
            "StripedCounter::new: 0 stripes (need at least 1)"
        );
        // Built stripe by stripe rather than zero-allocated, so that it also works under
        // loom, whose atomics are not plain memory.
        let slice: Box<[Stripe]> = (0..stripes).map(|_| Stripe::new()).collect();
        let raw: *mut [Stripe] = Box::into_raw(slice);
        // `raw` comes from `Box::<[Stripe]>::into_raw` (global allocator), and the `as` cast
        // keeps its length.
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` of the same layout:
        // `StripedCounter` is `#[repr(transparent)]` over `[Stripe]` (same length, layout).
        unsafe { Box::from_raw(raw as *mut StripedCounter) }
    }

    /// A good number of stripes for this machine: the available parallelism rounded up
    /// to a power of two, at most [`MAX_DEFAULT_STRIPES`] (1 if it cannot be found).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let n = StripedCounter::default_stripes();
    /// assert!(n.is_power_of_two() && n <= shmstate::values::striped_counter::MAX_DEFAULT_STRIPES);
    /// ```
    pub fn default_stripes() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_DEFAULT_STRIPES)
            .next_power_of_two()
    }

    /// The number of stripes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// assert_eq!(StripedCounter::new(3).stripes(), 3);
    /// ```
    #[inline]
    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// The calling thread's stripe: its thread id modulo the number of stripes.
    #[inline]
    fn my_stripe(&self) -> Option<&Stripe> {
        let id = crate::owner::current() as usize;
        // `checked_rem` and `get`: never a division by zero or an out-of-bounds index,
        // whatever the length (it is at least 1 for every counter `new` or a region makes).
        id.checked_rem(self.stripes.len())
            .and_then(|i| self.stripes.get(i))
    }

    /// Adds `n` to the calling thread's stripe (wrapping around on overflow).
    ///
    /// One thread-local read and one atomic `fetch_add`, no syscall. There is no
    /// "previous value": no single stripe holds the count.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(2);
    /// c.add(40);
    /// c.add(2);
    /// assert_eq!(c.sum(), 42);
    /// ```
    #[inline]
    pub fn add(&self, n: u64) {
        if let Some(stripe) = self.my_stripe() {
            // Relaxed: counting needs only the atomicity of the RMW (see the type docs).
            stripe.value.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to the calling thread's stripe.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(2);
    /// c.inc();
    /// assert_eq!(c.sum(), 1);
    /// ```
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    /// The total: the stripes added up (wrapping around on overflow).
    ///
    /// While writers are running this is **not** a snapshot: the stripes are read one
    /// after another (each with a `Relaxed` load), so the result need not equal the total
    /// at any one moment. While writers only add (no [`take`](Self::take) or
    /// [`reset`](Self::reset) running, no wrap-around) it is bounded all the same:
    ///
    /// - it includes every add that happens-before the call: the caller's own adds, and
    ///   those of threads it has joined or processes it has waited for;
    /// - it counts no add twice, and none that happens after the call returns;
    /// - successive sums by one thread never decrease (each stripe is read in its
    ///   modification order).
    ///
    /// So it is exact once the writers have stopped and their adds are visible to the
    /// caller, for example after joining their threads or `waitpid` on their processes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(8);
    /// c.add(5);
    /// assert_eq!(c.sum(), 5);
    /// ```
    pub fn sum(&self) -> u64 {
        self.stripes
            .iter()
            // Relaxed: a counter publishes no other data; see above for what the sum is.
            .map(|s| s.value.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Returns the total and sets every stripe to zero, stripe by stripe. Each stripe is
    /// swapped atomically, so every add is either in the returned value or still in the
    /// counter: repeated `take`s add up exactly to the total counted, even while writers
    /// run (though a `take` is not a snapshot, as for [`sum`](Self::sum)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(2);
    /// c.add(9);
    /// assert_eq!(c.take(), 9);
    /// assert_eq!(c.sum(), 0);
    /// ```
    pub fn take(&self) -> u64 {
        self.stripes
            .iter()
            // Relaxed: each swap is one RMW in its stripe's modification order, so no add
            // is lost between reading and zeroing.
            .map(|s| s.value.swap(0, Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Sets every stripe to zero, one after another. Adds that run concurrently may land
    /// before or after their stripe is cleared; use [`take`](Self::take) to keep them.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::StripedCounter;
    ///
    /// let c = StripedCounter::new(2);
    /// c.add(9);
    /// c.reset();
    /// assert_eq!(c.sum(), 0);
    /// ```
    pub fn reset(&self) {
        for s in &self.stripes {
            // Relaxed: a counter publishes no other data.
            s.value.store(0, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripedCounter")
            .field("sum", &self.sum())
            .field("stripes", &self.stripes())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn nonzero_stripes(c: &StripedCounter) -> Vec<usize> {
        (0..c.stripes())
            .filter(|&i| c.stripes[i].value.load(Ordering::Relaxed) != 0)
            .collect()
    }

    #[test]
    fn a_thread_always_adds_to_the_stripe_of_its_thread_id() {
        let c = StripedCounter::new(7);
        for _ in 0..10 {
            c.inc();
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as usize;
        assert_eq!(nonzero_stripes(&c), vec![tid % 7]);
        std::thread::scope(|s| {
            s.spawn(|| {
                c.add(5);
                let tid = rustix::thread::gettid().as_raw_nonzero().get() as usize;
                assert_eq!(c.stripes[tid % 7].value.load(Ordering::Relaxed) % 10, 5);
            });
        });
        assert_eq!(c.sum(), 15);
    }
}
