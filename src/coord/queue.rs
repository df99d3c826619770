//! [`Queue<T, N>`]: a bounded multi-producer multi-consumer FIFO of `Pod` items.
//!
//! # The design
//!
//! A ring of `N` slots behind the crate's robust [`Mutex`], with two [`Condvar`]s:
//! `not_empty` (consumers wait on it) and `not_full` (producers wait on it). The mutex
//! protects the slots and two indices, `head` and `tail` (atomics, written only under the
//! mutex, so that [`len`](Queue::len) can read them without it), each in `0..2N`: the
//! slot of index `i` is
//! `i % N` and the length is `(tail - head) mod 2N`, so a full ring (`N` items) and an
//! empty one (0) are told apart without a separate count. A notify makes no syscall when
//! nobody waits, so an uncontended `push` or `pop` is a lock, a copy, an unlock: no
//! syscall. A blocking or timed `pop` that finds the queue empty unlocks and watches
//! `tail` for a push (loads only, about 10 µs whatever a pause costs on the machine, never
//! past its deadline) before it sleeps on `not_empty`: two processes that answer each
//! other through queues then hand items over without the kernel. Spinning, it holds
//! nothing (a process killed there leaves nothing to repair).
//!
//! # Owner death
//!
//! A push writes its slot, then commits by storing `tail`; a pop reads its slot, then
//! commits by storing `head`. One store commits each operation, so a process killed inside
//! one leaves the queue as it was before the operation or after it: never with a torn
//! index, and with a torn item only in a slot outside `head..tail`. The next operation gets
//! the lock with `OwnerDied` (see [`raw_mutex`](crate::lock::raw_mutex)), checks the
//! indices, marks the lock consistent and goes on: callers never see the death. The item
//! a killed consumer had popped is lost with it; an item a killed producer had not
//! committed was never in the queue.
//!
//! That analysis needs the slot access to come before the commit in what a recoverer
//! observes. The kernel makes every store a killed process completed visible to the
//! process that recovers its lock, but which stores completed depends on the order the
//! compiler and the CPU gave them, and the dead process never unlocked (no Release to
//! pair with). So `head` and `tail` are atomics, each commit is a Release store after the
//! slot access, and a lock holder reads them with Acquire: a recoverer that sees a commit
//! sees the slot access it commits.
//!
//! An operation notifies the other side *before* it unlocks, so a process killed after its
//! commit but before its notify died holding the lock; the operation that recovers the
//! lock then notifies both condvars (all waiters), in place of the notify that never
//! happened. A waiter that nobody notifies still wakes within one slice ([`PROBE_SLICE`],
//! 10 ms): waits for room or items sleep in slices, then re-take the lock (recovering it
//! from a dead holder) and re-check.
//!
//! # Crash windows
//!
//! Each line has a failpoint test (`tests/coord_queue_crash.rs`, and for the first line
//! `tests/coord_processes.rs`; a stopped holder: `tests/coord_stopped_holder.rs`).
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Holding the lock, nothing written yet (any operation) | the lock, held by a dead thread; the queue unchanged | the next operation that finds it held: blocking and timed ones after their first probe slice (50 µs after the kernel tore the process down), `try_` ones after their spin (about 50 µs, at most 5 ms) |
//! | Push: slot written, `tail` not stored | as above; the item sits outside `head..tail`, never in the queue (the next push overwrites it) | as above |
//! | Push: `tail` stored (committed), not yet unlocked | the item in the queue; the lock held; a consumer asleep may never be notified | the recovering operation notifies every waiter; a consumer asleep wakes at the end of its slice anyway (≤ 10 ms), re-takes the lock and recovers it |
//! | Pop: slot read, `head` not stored | the item still at the head: the next pop gets it | as the first line |
//! | Pop: `head` stored (committed), not yet unlocked | the item lost with the consumer; a producer asleep on a full queue may never be notified | as for a committed push |
//! | Asleep on a condvar (lock released) | the condvar's "may have sleepers" bit | the next notify: one needless wake ([`Condvar`]) |
//!
//! A process *stopped* (SIGSTOP) at any step that holds the lock is alive, so nobody may
//! take the lock over: `try_push`/`try_pop` return `Full`/`None` after a brief spin,
//! timed operations return `PushTimeoutError`/`Timeout` at their deadline, [`len`](Queue::len) does not lock, and
//! untimed `push`/`pop` wait until the process is continued or killed.
//!
//! # Untrusted indices
//!
//! `head` and `tail` are read from shared memory (under the lock, except by `len`, which
//! only counts), once per operation. If either is outside `0..2N`, or they are more than
//! `N` apart, the queue is corrupt: it is reset to empty (the items in it are dropped)
//! rather than trusted. Slot indices are always taken modulo `N`.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use bytemuck::Pod;

use crate::lock::{Condvar, Mutex, MutexGuard, TimedLockError, TryLockError};
use crate::shared::{Elem, Element, Kind, SharedSized, TypeTag};
use crate::sync::{AtomicU32, Ordering, UnsafeCell, spin_loop};
use crate::wait::{PROBE_SLICE, SPIN_LIMIT, Timeout, stamped_holder_is_dead};

// The errors of the `try_` and timed pushes, and the failpoint hooks of the crash-window
// tests (built only for tests), live in submodules.
mod error;
#[cfg(any(test, feature = "test-hooks"))]
mod hooks;

pub use error::{Full, PushTimeoutError};

/// A bounded FIFO queue of up to `N` items of `T`, shared by threads and processes:
/// Python's `multiprocessing.Queue(maxsize=N)`, for plain-old-data items.
///
/// Any number of producers [`push`](Self::push) and any number of consumers
/// [`pop`](Self::pop); a push waits while the queue is full, a pop while it is empty, and
/// both have `try_` and timed variants. A process killed mid-operation does not wedge
/// or corrupt the queue (see the [module docs](self)).
///
/// The capacity `N` is part of the type and of its size, so a region reports a mismatch
/// between processes as a size (type) mismatch. `N` must be in `1..=2^30`: any use of a
/// queue with another `N` is a compile error, including one that a region placed (never
/// built by [`new`](Self::new)):
///
/// ```compile_fail
/// # use shmstate::{Queue, Region};
/// let r = Region::anonymous(1 << 16).unwrap();
/// let q = r.get_or_default::<Queue<u8, 0>>("q").unwrap();
/// q.push(1); // error: Queue capacity must be 1..=2^30
/// ```
///
/// Layout: `#[repr(C)]`: the mutex word, `head` and `tail` (`u32`s, 12 bytes), the two
/// condvars (8 bytes each), then the `N` slots (aligned for `T`). All-zero bytes are an empty queue; any
/// bytes are a valid one (bad indices read as corrupt and reset the queue to empty).
///
/// The uncontended operations are a lock, a copy and an unlock. Timed variants bound the
/// whole call, the waits for the lock included (before and after each wait for room or
/// items); `try_` variants never wait for a live holder of the lock beyond a brief spin;
/// [`len`](Self::len) does not lock at all. So a process stopped (SIGSTOP) while holding
/// the lock delays only the untimed [`push`](Self::push) and [`pop`](Self::pop).
///
/// # Examples
///
/// ```
/// use shmstate::Queue;
///
/// let q = Queue::<u64, 4>::new();
/// std::thread::scope(|s| {
///     s.spawn(|| (0..100).for_each(|i| q.push(i)));
///     let got: Vec<u64> = (0..100).map(|_| q.pop()).collect();
///     assert_eq!(got, (0..100).collect::<Vec<_>>());
/// });
/// assert!(q.is_empty());
/// ```
#[repr(C)]
pub struct Queue<T, const N: usize> {
    /// Protects the slots and every write of `head` and `tail`.
    lock: Mutex<()>,
    /// Index of the oldest item (the next to pop), in `0..2N` when valid. Written only
    /// under `lock`, by a pop's commit (Release) or a reset; read under it, and without
    /// it by `len`.
    head: AtomicU32,
    /// Index one past the newest item (where the next push goes), in `0..2N` when valid.
    /// Written only under `lock`, by a push's commit (Release) or a reset; read as `head`.
    tail: AtomicU32,
    not_empty: Condvar,
    not_full: Condvar,
    slots: [UnsafeCell<T>; N],
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(Queue<u64, 4>, [u64; 8]);
#[cfg(not(loom))]
static_assertions::assert_eq_align!(Queue<u64, 4>, u64);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(Queue<u8, 1>, [u32; 8]);
#[cfg(not(loom))]
static_assertions::assert_eq_size!(Queue<[u64; 2], 3>, [u64; 10]);

// SAFETY: the slots are read and written only while holding `lock` (by
// `write_then_commit` and `read_then_commit`, whose guard argument proves it), so at most
// one thread accesses them at a time; the indices are atomics; `T: Send` lets the items
// move between threads.
unsafe impl<T: Pod + Send, const N: usize> Sync for Queue<T, N> {}

// SAFETY: 1. all-zero: an unlocked mutex, head = tail = 0 (empty), fresh condvars,
// zeroed `T`s (Pod: Zeroable). 2. every bit pattern: the mutex and condvars accept any
// bytes, bad indices are detected and reset (module docs), `T` is Pod; padding between the
// condvars and the slots is never read. 3. no pointers. 4. `#[repr(C)]`, sizes asserted
// above for sample parameters; the tag records the slots' identity, `[T; N]`: `T`'s
// and the capacity (several `N` give the same size, so the size alone does not tell
// them apart). 5. `Sync` above; every `&self` method locks, or (`len`) only loads the
// atomic indices.
unsafe impl<T: Element + Send, const N: usize> SharedSized for Queue<T, N> {
    const TAG: TypeTag = TypeTag::new(Kind::QUEUE, Elem::array(T::ELEM, N));
}

impl<T: Pod, const N: usize> Queue<T, N> {
    /// Rejects `N` outside `1..=2^30` at compile time (where the queue is used).
    const VALID_N: () = assert!(N >= 1 && N <= 1 << 30, "Queue capacity must be 1..=2^30");
    /// The index modulus, `2N`. Every operation uses it, so it checks `N` (a queue placed
    /// in a region is never built by `new`): the cast cannot truncate to 0.
    const WRAP: u32 = {
        let () = Self::VALID_N;
        (2 * N) as u32
    };

    /// An empty queue.
    pub fn new() -> Self {
        let () = Self::VALID_N;
        Queue {
            lock: Mutex::new(()),
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            slots: core::array::from_fn(|_| UnsafeCell::new(T::zeroed())),
        }
    }

    /// The most items the queue holds: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of items now: a snapshot, read without the lock, so it never waits
    /// (not even for a holder of the lock that is stopped, see the module docs).
    ///
    /// Exact while no push or pop runs (an operation counts once its commit is stored,
    /// so a producer stopped or killed before its commit is not counted). While they
    /// run, it is the length when it read `tail` (with `head` read unchanged before and
    /// after), or, if pops commit through each of its few re-reads, a lower bound of the
    /// length during the call; always in `0..=N`. Corrupt indices read as 0: the next
    /// operation resets them to empty.
    pub fn len(&self) -> usize {
        let mut last = 0;
        for _ in 0..LEN_TRIES {
            // Acquire (both): keeps the three loads in program order, so `tail` is read
            // between the two reads of `head`; if `head` did not move meanwhile, the pair
            // is the committed state when `tail` was read. The values are only counted,
            // never used to reach a slot, so nothing else needs ordering.
            let head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Acquire);
            // Relaxed: only compared with the first read (ordered by the Acquire above).
            let again = self.head.load(Ordering::Relaxed);
            let len = Self::len_of(again, tail);
            if head == again
                && let Some(len) = len
            {
                return len as usize;
            }
            last = len.unwrap_or(0);
        }
        // `head` moved on every try (pops commit all the time): the length counted from
        // the later `head` (a length the queue had, or 0 if it was emptied meanwhile).
        last as usize
    }

    /// Whether the queue is empty now (a snapshot, like [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `item`, waiting while the queue is full.
    #[inline]
    pub fn push(&self, item: T) {
        // Without a deadline the push cannot fail.
        let _ = self.push_inner(item, Wait::Forever);
    }

    /// Appends `item` if there is room now and the lock can be had now.
    ///
    /// It never waits for another holder of the queue's lock beyond a brief spin (a
    /// holder only keeps it for one copy of `T`, unless its process is stopped or
    /// descheduled); a lock whose holder died is recovered, which takes about one probe
    /// slice ([`FIRST_SLICE`](crate::wait::FIRST_SLICE)).
    ///
    /// # Errors
    ///
    /// [`Full`], holding `item`, if the queue is full, or if the lock stayed held through
    /// the brief spin: the item was not pushed, and a retry may succeed.
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), Full<T>> {
        self.push_inner(item, Wait::No)
    }

    /// [`push`](Self::push), waiting at most `timeout` in total (for room, and for the
    /// lock before and after each wait). A `timeout` too large for an [`Instant`] waits as
    /// long as it takes.
    ///
    /// # Errors
    ///
    /// [`PushTimeoutError`], holding `item`, if the queue stayed full, or its lock held,
    /// until the timeout (at least `timeout` has passed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{PushTimeoutError, Queue};
    ///
    /// let q = Queue::<u8, 1>::new();
    /// assert_eq!(q.push_timeout(1, Duration::from_millis(1)), Ok(()));
    /// assert_eq!(q.push_timeout(2, Duration::from_millis(1)), Err(PushTimeoutError(2)));
    /// ```
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<(), PushTimeoutError<T>> {
        self.push_inner(item, Wait::for_timeout(timeout))
            .map_err(|Full(item)| PushTimeoutError(item))
    }

    /// [`push`](Self::push), waiting until `deadline` at most (for room and the lock).
    ///
    /// # Errors
    ///
    /// [`PushTimeoutError`], holding `item`, if the queue stayed full, or its lock held,
    /// until `deadline`.
    pub fn push_until(&self, item: T, deadline: Instant) -> Result<(), PushTimeoutError<T>> {
        self.push_inner(item, Wait::Until(deadline))
            .map_err(|Full(item)| PushTimeoutError(item))
    }

    /// Removes the oldest item, waiting while the queue is empty.
    #[inline]
    pub fn pop(&self) -> T {
        loop {
            if let Some(v) = self.pop_inner(Wait::Forever) {
                return v;
            }
        }
    }

    /// Removes the oldest item if there is one now and the lock can be had now: `None` if
    /// the queue is empty, or if the lock stayed held through a brief spin (as for
    /// [`try_push`](Self::try_push)).
    #[inline]
    pub fn try_pop(&self) -> Option<T> {
        self.pop_inner(Wait::No)
    }

    /// [`pop`](Self::pop), waiting at most `timeout` in total (for an item, and for the
    /// lock before and after each wait). A `timeout` too large for an [`Instant`] waits as
    /// long as it takes.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if the queue stayed empty, or its lock held, until the timeout (at
    /// least `timeout` has passed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{Queue, Timeout};
    ///
    /// let q = Queue::<u8, 1>::new();
    /// assert_eq!(q.pop_timeout(Duration::from_millis(1)), Err(Timeout));
    /// q.push(7);
    /// assert_eq!(q.pop_timeout(Duration::from_millis(1)), Ok(7));
    /// ```
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, Timeout> {
        self.pop_inner(Wait::for_timeout(timeout)).ok_or(Timeout)
    }

    /// [`pop`](Self::pop), waiting until `deadline` at most (for an item and the lock).
    ///
    /// # Errors
    ///
    /// [`Timeout`] if the queue stayed empty, or its lock held, until `deadline`.
    pub fn pop_until(&self, deadline: Instant) -> Result<T, Timeout> {
        self.pop_inner(Wait::Until(deadline)).ok_or(Timeout)
    }

    fn push_inner(&self, item: T, wait: Wait) -> Result<(), Full<T>> {
        let Some(mut g) = wait.lock(self) else {
            return Err(Full(item));
        };
        loop {
            let (head, tail) = self.indices(&g);
            if (Self::len_of(head, tail).unwrap_or(0) as usize) < N {
                self.write_then_commit(&g, tail, item, || {});
                // Before unlocking: a death between the commit and here is an owner death
                // (module docs).
                self.not_empty.notify_one();
                drop(g);
                return Ok(());
            }
            g = match wait.wait(self, &self.not_full, g) {
                Some(g) => g,
                None => return Err(Full(item)),
            };
        }
    }

    fn pop_inner(&self, wait: Wait) -> Option<T> {
        let mut g = wait.lock(self)?;
        let mut spun = matches!(wait, Wait::No);
        loop {
            let (head, tail) = self.indices(&g);
            if Self::len_of(head, tail).unwrap_or(0) > 0 {
                let item = self.read_then_commit(&g, head, |_| {});
                // Before unlocking, as in `push_inner`.
                self.not_full.notify_one();
                drop(g);
                return Some(item);
            }
            if !spun {
                // Empty: before sleeping on the condvar, once per call, watch `tail`
                // without the lock for a push (see `pop_spins`), then look again under it.
                spun = true;
                drop(g);
                self.spin_for_push(tail, wait);
                g = wait.lock(self)?;
                continue;
            }
            g = wait.wait(self, &self.not_empty, g)?;
        }
    }

    /// Spins (loads only, no lock) until `tail` is no longer `seen` (a push committed),
    /// for at most [`pop_spins`] looks, or until `wait`'s deadline (looked at every 32
    /// looks).
    fn spin_for_push(&self, seen: u32, wait: Wait) {
        for i in 0..pop_spins() {
            // Relaxed: only a hint to look again under the lock, which orders the rest.
            if self.tail.load(Ordering::Relaxed) != seen {
                return;
            }
            if i % 32 == 31 && matches!(wait, Wait::Until(d) if Instant::now() >= d) {
                return;
            }
            spin_loop();
        }
    }

    /// A push's protocol, under the lock (`_g`), with room at index `tail`: write the
    /// slot, then commit it by storing `tail + 1`. `between` runs between the two steps
    /// (a failpoint for tests; empty, and compiled away, otherwise).
    #[inline(always)]
    fn write_then_commit(&self, _g: &Guard<'_>, tail: u32, item: T, between: impl FnOnce()) {
        // SAFETY: we hold the lock (`_g`), the only way to reach the slots, so no other
        // thread accesses this one; the pointer is valid for a `T`.
        self.slots[tail as usize % N].with_mut(|p| unsafe { p.write(item) });
        between();
        // The commit. Release: the slot write above is ordered before it, for the compiler
        // and the CPU, as the crash analysis (module docs) needs. A process that
        // recovers the lock after we die got no Release unlock from us to pair with; it
        // reads `tail` with Acquire (`indices`), which pairs with this store: if it sees
        // the new `tail`, it sees the item. A plain store here could be reordered before
        // the slot write, and a death between the two would then commit a slot that was
        // never written. (That the kernel makes all our completed stores visible after a
        // death says nothing about which of them completed.)
        self.tail.store((tail + 1) % Self::WRAP, Ordering::Release);
    }

    /// A pop's protocol, under the lock (`_g`), with an item at index `head`: read the
    /// slot, then commit by storing `head + 1`. `between` gets the item between the two
    /// steps (a failpoint for tests).
    #[inline(always)]
    fn read_then_commit(&self, _g: &Guard<'_>, head: u32, between: impl FnOnce(T)) -> T {
        // SAFETY: we hold the lock (`_g`), so no other thread accesses the slot; the
        // pointer is valid and holds a `T` (every bit pattern is one: Pod).
        let item = self.slots[head as usize % N].with(|p| unsafe { p.read() });
        between(item);
        // The commit. Release: our read of the slot is ordered before it, so a producer
        // that reuses the slot after a recovery (it reads `head` with Acquire) writes it
        // only after the dead consumer's read, never under it.
        self.head.store((head + 1) % Self::WRAP, Ordering::Release);
        item
    }

    /// Under the lock: the indices `(head, tail)`, read once; corrupt ones are reset to
    /// empty first (module docs), so the pair returned is valid.
    fn indices(&self, _g: &Guard<'_>) -> (u32, u32) {
        // Acquire (both): pairs with the Release commits in `write_then_commit` and
        // `read_then_commit` of a holder that died before unlocking (a live holder's
        // unlock orders its commits anyway): whatever commit we see, we see the slot
        // access it committed.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        if Self::len_of(head, tail).is_some() {
            return (head, tail);
        }
        // Relaxed: under the lock; the unlock publishes them.
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
        (0, 0)
    }

    /// The number of items between indices `head` and `tail`, or `None` if they are
    /// corrupt (either outside `0..2N`, or more than `N` apart).
    fn len_of(head: u32, tail: u32) -> Option<u32> {
        let m = Self::WRAP;
        if head < m && tail < m {
            // Both < 2N <= 2^31, so the sum does not overflow.
            let len = (tail + m - head) % m;
            if len as usize <= N {
                return Some(len);
            }
        }
        None
    }

    /// Takes the lock, recovering from a dead owner.
    fn lock_recovering(&self) -> Guard<'_> {
        self.lock
            .lock()
            .unwrap_or_else(|d| self.recover(d.into_inner()))
    }

    /// Takes the lock without waiting for a live holder beyond a brief spin: `None` if
    /// another thread or process held it throughout (a stopped process, say). A holder
    /// found dead is recovered, waiting at most [`DEAD_HOLDER_RECOVERY`].
    #[inline]
    fn try_lock_briefly(&self) -> Option<Guard<'_>> {
        match self.lock.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::OwnerDied(d)) => Some(self.recover(d.into_inner())),
            Err(TryLockError::WouldBlock) => self.try_lock_contended(),
        }
    }

    #[cold]
    fn try_lock_contended(&self) -> Option<Guard<'_>> {
        let raw = self.lock.raw();
        // Spin with loads, backing off, as the mutex's own contended path does before it
        // sleeps (`SPIN_LIMIT` pauses in all): a live holder keeps the lock for one copy
        // of `T`, so this usually sees it free.
        let mut spins = SPIN_LIMIT;
        let mut step = 1;
        loop {
            if !raw.is_locked() {
                match self.lock.try_lock() {
                    Ok(g) => return Some(g),
                    Err(TryLockError::OwnerDied(d)) => return Some(self.recover(d.into_inner())),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            if spins == 0 {
                break;
            }
            let n = step.min(spins);
            spins -= n;
            step = (step * 2).min(16);
            for _ in 0..n {
                spin_loop();
            }
        }
        // Held throughout. By a dead thread? Then recover it as the blocking operations
        // would, or a queue used only through `try_` calls would stay locked for good.
        // The probe is a syscall: only here, never on the uncontended path.
        let owner = raw.holder()?;
        if !stamped_holder_is_dead(owner) {
            return None;
        }
        // The mutex probes a holder only once a slice has passed, so this takes
        // about one `FIRST_SLICE`; bounded in case the lock changed hands meanwhile.
        let deadline = Instant::now().checked_add(DEAD_HOLDER_RECOVERY)?;
        Wait::Until(deadline).lock(self)
    }

    /// After a dead owner: marks the lock consistent so later acquirers do not see
    /// `OwnerDied` again (the indices are checked by every operation anyway), and wakes
    /// every waiter, in case the dead owner committed but never notified (module docs).
    #[cold]
    fn recover<'a>(&self, mut g: Guard<'a>) -> Guard<'a> {
        g.mark_consistent();
        self.not_empty.notify_all();
        self.not_full.notify_all();
        g
    }
}

/// The queue's lock guard (the mutex protects the slots and the index writes; it holds
/// no data itself).
type Guard<'a> = MutexGuard<'a, ()>;

/// How many looks (each a pause and a load) a blocking or timed `pop` that finds the
/// queue empty spins on `tail`, without the lock, before it sleeps on the condvar: about
/// [`PEER_SPIN_NS`](crate::wait::PEER_SPIN_NS) (10 µs) on any machine, as a channel's
/// receiver does. A condvar wait sleeps at once, so two processes that answer each other
/// through queues otherwise wake each other through the kernel at every item. One look
/// under loom, so that the models check the unlocked spin and the re-lock too.
fn pop_spins() -> u32 {
    if cfg!(loom) {
        1
    } else {
        crate::wait::spins_for(crate::wait::PEER_SPIN_NS)
    }
}

/// Reads of the indices [`Queue::len`] makes before it settles for a length counted from
/// indices read while pops went on.
const LEN_TRIES: u32 = 4;

/// The longest a `try_` operation waits to recover a lock whose holder it found dead:
/// the mutex recovers it after its first probe slice (50 µs), so this is that slice with a
/// margin for a loaded machine. An hour under loom, whose models must not depend on the
/// real clock (as the channel's).
const DEAD_HOLDER_RECOVERY: Duration =
    Duration::from_millis(if cfg!(loom) { 3_600_000 } else { 5 });

/// How long an operation waits.
#[derive(Clone, Copy)]
enum Wait {
    /// Not at all: neither for room or items, nor for a live holder of the lock beyond a
    /// brief spin.
    No,
    /// Until the deadline, for room or items and for the lock, re-locks included.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    fn for_timeout(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(d) => Wait::Until(d),
            None => Wait::Forever,
        }
    }

    /// Takes the lock (recovering from a dead owner); `None` if the deadline passed
    /// first, or (`No`) if the lock stayed held through a brief spin.
    fn lock<T: Pod, const N: usize>(self, q: &Queue<T, N>) -> Option<Guard<'_>> {
        match self {
            Wait::No => q.try_lock_briefly(),
            Wait::Forever => Some(q.lock_recovering()),
            Wait::Until(d) => match q.lock.lock_until(d) {
                Ok(g) => Some(g),
                Err(TimedLockError::OwnerDied(died)) => Some(q.recover(died.into_inner())),
                Err(TimedLockError::Timeout) => None,
            },
        }
    }

    /// Waits on `cv` with `g`, for one sleep slice at most; `None` (unlocked) if there is
    /// no time left, or if the deadline passed before the lock was re-taken. A `Some` may
    /// be a spurious or stolen wakeup, or the end of a slice: the caller re-checks.
    ///
    /// The slice ([`PROBE_SLICE`]) bounds what a notify lost with a dead notifier costs
    /// (module docs): at its end the waiter re-takes the lock, which recovers it from a
    /// dead holder, and sees the committed item or room for itself.
    fn wait<'a, T: Pod, const N: usize>(
        self,
        q: &'a Queue<T, N>,
        cv: &Condvar,
        g: Guard<'a>,
    ) -> Option<Guard<'a>> {
        let deadline = match self {
            Wait::No => return None,
            Wait::Forever => None,
            Wait::Until(d) if Instant::now() >= d => return None,
            Wait::Until(d) => Some(d),
        };
        let slice_end = PROBE_SLICE.and_then(|s| Instant::now().checked_add(s));
        let wake_by = match (deadline, slice_end) {
            (Some(d), Some(s)) => d.min(s),
            (Some(t), None) | (None, Some(t)) => t,
            // Under loom, without a deadline: unbounded, so that a missing notify is a
            // loom deadlock rather than a hidden slice.
            (None, None) => return Some(cv.wait(g).unwrap_or_else(|d| q.recover(d.into_inner()))),
        };
        // The re-lock is bounded by `wake_by` too (`Condvar::wait_until`).
        let g = match cv.wait_until(g, wake_by) {
            Ok((g, _)) => g,
            Err(TimedLockError::OwnerDied(died)) => q.recover(died.into_inner().0),
            // The lock was held when `wake_by` came: wait for it as this operation may
            // (until its deadline, or as long as it takes; `lock` recovers a dead holder).
            Err(TimedLockError::Timeout) => self.lock(q)?,
        };
        // Under loom a timed wait times out at once: that is the deadline.
        if cfg!(loom) && deadline.is_some() {
            return None;
        }
        Some(g)
    }
}

impl<T: Pod, const N: usize> Default for Queue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> fmt::Debug for Queue<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}
