//! [`Queue<T, N>`]: a bounded multi-producer multi-consumer FIFO of `Pod` items.
//!
//! # The design
//!
//! A ring of `N` slots behind the crate's robust [`Mutex`], with two [`Condvar`]s:
//! `not_empty` (consumers wait on it) and `not_full` (producers wait on it). The mutex
//! protects two indices, `head` and `tail`, each in `0..2N`: the slot of index `i` is
//! `i % N` and the length is `(tail - head) mod 2N`, so a full ring (`N` items) and an
//! empty one (0) are told apart without a separate count. A notify makes no syscall when
//! nobody waits, so an uncontended `push` or `pop` is a lock, a copy, an unlock: no
//! syscall.
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
//! An operation notifies the other side *before* it unlocks, so a process killed after its
//! commit but before its notify died holding the lock; the operation that recovers the
//! lock then notifies both condvars (all waiters), in place of the notify that never
//! happened. Until some process takes the lock again, the waiters of such a death sleep
//! on (a timed wait ends at its deadline).
//!
//! # Untrusted indices
//!
//! `head` and `tail` are read from shared memory under the lock. If either is outside
//! `0..2N`, or they are more than `N` apart, the queue is corrupt: it is reset to empty
//! (the items in it are dropped) rather than trusted. Slot indices are always taken
//! modulo `N`.

use core::fmt;
use core::time::Duration;
use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use crate::lock::{Condvar, Mutex, MutexGuard, TimedLockError};
use crate::shared::{Elem, Kind, SharedSized, TypeTag};
use crate::sync::UnsafeCell;

/// The ring indices, protected by the queue's mutex. Each is in `0..2N` when valid.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
struct Indices {
    /// Index of the oldest item (the next to pop).
    head: u32,
    /// Index one past the newest item (where the next push goes).
    tail: u32,
}

/// A push found the queue full (for the whole timeout, for a timed push); the item is
/// handed back.
///
/// # Examples
///
/// ```
/// use shmstate::{Full, Queue};
///
/// let q = Queue::<u32, 1>::new();
/// q.try_push(1).unwrap();
/// assert_eq!(q.try_push(2), Err(Full(2)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full")]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

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
/// let q = r.get_or_init::<Queue<u8, 0>>("q", 1, |_| {}).unwrap();
/// q.push(1); // error: Queue capacity must be 1..=2^30
/// ```
///
/// Layout: `#[repr(C)]`: the mutex and its indices (12 bytes), the two condvars (8 bytes
/// each), then the `N` slots (aligned for `T`). All-zero bytes are an empty queue; any
/// bytes are a valid one (bad indices read as corrupt and reset the queue to empty).
///
/// The uncontended operations are a lock, a copy and an unlock. Timed variants bound the
/// wait for space or items; re-taking the lock after a wait is not timed (as with
/// [`Condvar`]), but the lock is only ever held for one copy of `T`.
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
    lock: Mutex<Indices>,
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

// SAFETY: the slots are read and written only while holding `lock` (by `push_inner`,
// `pop_inner` and `Indices` repair), so at most one thread accesses them at a time; `T:
// Send` lets the items move between threads.
unsafe impl<T: Pod + Send, const N: usize> Sync for Queue<T, N> {}

// SAFETY: 1. all-zero: an unlocked mutex with head = tail = 0 (empty), fresh condvars,
// zeroed `T`s (Pod: Zeroable). 2. every bit pattern: the mutex and condvars accept any
// bytes, bad indices are detected and reset (module docs), `T` is Pod; padding between the
// condvars and the slots is never read. 3. no pointers. 4. `#[repr(C)]`, sizes asserted
// above for sample parameters; the tag records `T`'s size and alignment, and `N` is part
// of the size the region checks. 5. `Sync` above; every `&self` method locks.
unsafe impl<T: Pod + Send, const N: usize> SharedSized for Queue<T, N> {
    const TAG: TypeTag = TypeTag::new(Kind::QUEUE, Elem::pod::<T>());
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
            lock: Mutex::new(Indices::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            slots: core::array::from_fn(|_| UnsafeCell::new(T::zeroed())),
        }
    }

    /// The most items the queue holds: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of items now (a snapshot; takes the lock briefly).
    pub fn len(&self) -> usize {
        let mut g = self.lock_recovering();
        Self::checked_len(&mut g) as usize
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `item`, waiting while the queue is full.
    #[inline]
    pub fn push(&self, item: T) {
        // Without a deadline the push cannot fail.
        let _ = self.push_inner(item, Wait::Forever);
    }

    /// Appends `item` if there is room now (it may wait briefly for the lock).
    ///
    /// # Errors
    ///
    /// [`Full`], holding `item`, if the queue is full.
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), Full<T>> {
        self.push_inner(item, Wait::No)
    }

    /// [`push`](Self::push), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Full`], holding `item`, if the queue stayed full until the timeout (at least
    /// `timeout` has passed).
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.push_inner(item, Wait::for_timeout(timeout))
    }

    /// [`push`](Self::push), waiting for room until `deadline`.
    ///
    /// # Errors
    ///
    /// [`Full`], holding `item`, if the queue stayed full until `deadline`.
    pub fn push_until(&self, item: T, deadline: Instant) -> Result<(), Full<T>> {
        self.push_inner(item, Wait::Until(deadline))
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

    /// Removes the oldest item if there is one now (it may wait briefly for the lock).
    #[inline]
    pub fn try_pop(&self) -> Option<T> {
        self.pop_inner(Wait::No)
    }

    /// [`pop`](Self::pop), waiting at most `timeout` for an item. `None` means the queue
    /// stayed empty until the timeout (at least `timeout` has passed).
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.pop_inner(Wait::for_timeout(timeout))
    }

    /// [`pop`](Self::pop), waiting for an item until `deadline`.
    pub fn pop_until(&self, deadline: Instant) -> Option<T> {
        self.pop_inner(Wait::Until(deadline))
    }

    fn push_inner(&self, item: T, wait: Wait) -> Result<(), Full<T>> {
        let mut g = match wait.lock(self) {
            Some(g) => g,
            None => return Err(Full(item)),
        };
        loop {
            let len = Self::checked_len(&mut g);
            if (len as usize) < N {
                let tail = g.tail;
                let slot = &self.slots[tail as usize % N];
                // SAFETY: we hold the lock (`g`), the only way to reach the slots, so no
                // other thread accesses this one; the pointer is valid for a `T`.
                slot.with_mut(|p| unsafe { p.write(item) });
                // The commit: one store (see the module docs).
                g.tail = (tail + 1) % Self::WRAP;
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
        loop {
            if Self::checked_len(&mut g) > 0 {
                let head = g.head;
                let slot = &self.slots[head as usize % N];
                // SAFETY: we hold the lock (`g`), so no other thread accesses the slot; the
                // pointer is valid and holds a `T` (every bit pattern is one: Pod).
                let item = slot.with(|p| unsafe { p.read() });
                // The commit: one store (see the module docs).
                g.head = (head + 1) % Self::WRAP;
                // Before unlocking, as in `push_inner`.
                self.not_full.notify_one();
                drop(g);
                return Some(item);
            }
            g = wait.wait(self, &self.not_empty, g)?;
        }
    }

    /// Takes the lock, recovering from a dead owner.
    fn lock_recovering(&self) -> MutexGuard<'_, Indices> {
        self.lock
            .lock()
            .unwrap_or_else(|d| self.recover(d.into_inner()))
    }

    /// After a dead owner: marks the lock consistent so later acquirers do not see
    /// `OwnerDied` again (the indices are checked by every operation anyway), and wakes
    /// every waiter, in case the dead owner committed but never notified (module docs).
    #[cold]
    fn recover<'a>(&self, mut g: MutexGuard<'a, Indices>) -> MutexGuard<'a, Indices> {
        g.mark_consistent();
        self.not_empty.notify_all();
        self.not_full.notify_all();
        g
    }

    /// The number of items; resets the queue to empty if the indices are corrupt.
    fn checked_len(ix: &mut Indices) -> u32 {
        let m = Self::WRAP;
        if ix.head < m && ix.tail < m {
            // Both < 2N <= 2^31, so the sum does not overflow.
            let len = (ix.tail + m - ix.head) % m;
            if len as usize <= N {
                return len;
            }
        }
        *ix = Indices::default();
        0
    }
}

/// How long an operation waits.
#[derive(Clone, Copy)]
enum Wait {
    /// Not at all for room or items (the lock is still taken blocking).
    No,
    /// Until the deadline.
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

    /// Takes the lock (recovering from a dead owner); `None` if the deadline passed first.
    fn lock<T: Pod, const N: usize>(self, q: &Queue<T, N>) -> Option<MutexGuard<'_, Indices>> {
        match self {
            Wait::No | Wait::Forever => Some(q.lock_recovering()),
            Wait::Until(d) => match q.lock.lock_until(d) {
                Ok(g) => Some(g),
                Err(TimedLockError::OwnerDied(died)) => Some(q.recover(died.into_inner())),
                Err(TimedLockError::Timeout) => None,
            },
        }
    }

    /// Waits on `cv` with `g`; `None` (unlocked) if there is no time left. A `Some` may be
    /// a spurious or stolen wakeup: the caller re-checks.
    fn wait<'a, T: Pod, const N: usize>(
        self,
        q: &Queue<T, N>,
        cv: &Condvar,
        g: MutexGuard<'a, Indices>,
    ) -> Option<MutexGuard<'a, Indices>> {
        match self {
            Wait::No => None,
            Wait::Forever => Some(cv.wait(g).unwrap_or_else(|d| q.recover(d.into_inner()))),
            Wait::Until(d) => {
                let left = d.checked_duration_since(Instant::now())?;
                if left.is_zero() {
                    return None;
                }
                let g = match cv.wait_timeout(g, left) {
                    Ok((g, _)) => g,
                    Err(died) => q.recover(died.into_inner().0),
                };
                // Under loom a timed wait times out at once: that is the deadline.
                if cfg!(loom) {
                    return None;
                }
                Some(g)
            }
        }
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

impl<T: Pod, const N: usize> Queue<T, N> {
    /// The queue's raw lock, for tests of owner death.
    #[doc(hidden)]
    pub fn raw_lock(&self) -> &crate::lock::RawMutex {
        self.lock.raw()
    }

    /// For tests of owner death: a push that commits `item`, calls `committed`, and then
    /// neither notifies nor unlocks, as if its process were killed right after the commit.
    /// Never returns.
    #[doc(hidden)]
    pub fn push_then_hang(&self, item: T, committed: impl FnOnce()) -> ! {
        let mut g = self.lock_recovering();
        let len = Self::checked_len(&mut g);
        assert!((len as usize) < N, "push_then_hang needs room");
        let tail = g.tail;
        // SAFETY: as in `push_inner`.
        self.slots[tail as usize % N].with_mut(|p| unsafe { p.write(item) });
        g.tail = (tail + 1) % Self::WRAP;
        committed();
        loop {
            std::thread::park();
        }
    }

    /// Overwrites the raw indices `(head, tail)` under the lock, for tests of hostile bytes.
    #[doc(hidden)]
    pub fn set_raw_indices(&self, head: u32, tail: u32) {
        let mut g = self.lock_recovering();
        *g = Indices { head, tail };
    }
}
