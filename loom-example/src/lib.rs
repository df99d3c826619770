//! Two small protocols built on shmstate's public API, the way a user of the crate writes
//! them, and model-checked with loom by this crate's own tests:
//!
//! - [`Mailbox`]: a one-slot mailbox between processes: `put` waits while the slot is
//!   full, `take` waits while it is empty ([`shmstate::Mutex`] + two
//!   [`shmstate::Condvar`]s).
//! - [`Window`]: a published range `lo..=hi` that readers must never see with
//!   `lo > hi` ([`shmstate::SeqLock`] over `[u64; 2]`).
//!
//! [`broken`] holds a deliberately wrong version of each, kept so the loom tests can show
//! that loom finds their bugs.
//!
//! The protocol code has no `cfg(loom)` in it: it borrows shmstate objects, which live in
//! a [`Region`](shmstate::Region) in production and on the heap in tests. Only the region
//! constructors ([`Mailbox::in_region`], [`Window::in_region`]) are left out of a loom
//! build, because regions are. The loom tests are in `tests/loom.rs`; run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!   cargo test --release -p loom-example --tests
//! ```

use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use shmstate::{Condvar, LockResult, Mutex, MutexGuard, SeqLock, Timeout};

/// The state of a [`Mailbox`]: what its [`Mutex`] protects.
///
/// Any bytes are a valid slot (a peer may write anything): `full` other than 0 reads as
/// full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, shmstate::Element)]
#[repr(C)]
pub struct Slot {
    /// The message, meaningful while `full` is set.
    pub value: u64,
    /// 0: empty; anything else: full.
    pub full: u64,
}

/// A one-slot mailbox: [`put`](Self::put) waits until the slot is empty and fills it;
/// [`take`](Self::take) waits until it is full and empties it. Any number of producers and
/// consumers, in any number of processes.
///
/// It borrows its three shared objects, so the same code runs over objects in a
/// [`Region`](shmstate::Region) ([`in_region`](Self::in_region)) and over objects on the
/// heap (the tests, and loom).
///
/// A peer killed while holding the lock (inside `put` or `take`) costs at most the message
/// in the slot: the next locker gets [`OwnerDied`](shmstate::OwnerDied), cannot tell how
/// far the dead peer got, and empties the slot.
///
/// # Examples
///
/// ```
/// use loom_example::{Mailbox, Slot};
/// use shmstate::{Condvar, Mutex};
///
/// let (slot, not_empty, not_full) = (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
/// let mailbox = Mailbox::new(&slot, &not_empty, &not_full);
/// std::thread::scope(|s| {
///     s.spawn(|| mailbox.put(7));
///     assert_eq!(mailbox.take(), 7);
/// });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Mailbox<'a> {
    slot: &'a Mutex<Slot>,
    /// Notified after the slot is filled; consumers wait on it.
    not_empty: &'a Condvar,
    /// Notified after the slot is emptied; producers wait on it.
    not_full: &'a Condvar,
}

impl<'a> Mailbox<'a> {
    /// A mailbox over `slot`, with `not_empty` and `not_full` the condvars its consumers
    /// and producers wait on. Every party must pass the same three objects (in the same
    /// roles).
    pub fn new(slot: &'a Mutex<Slot>, not_empty: &'a Condvar, not_full: &'a Condvar) -> Self {
        Mailbox {
            slot,
            not_empty,
            not_full,
        }
    }

    /// The mailbox named `name` in `region`, created empty if it does not exist yet (its
    /// objects are `{name}.slot`, `{name}.not_empty` and `{name}.not_full`).
    ///
    /// # Errors
    ///
    /// As for [`Region::get_or_default`](shmstate::Region::get_or_default).
    ///
    /// # Examples
    ///
    /// ```
    /// use loom_example::Mailbox;
    /// use shmstate::Region;
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// let mailbox = Mailbox::in_region(&region, "jobs")?;
    /// mailbox.put(3);
    /// assert_eq!(Mailbox::in_region(&region, "jobs")?.take(), 3);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn in_region(
        region: &'a shmstate::Region,
        name: &str,
    ) -> Result<Self, shmstate::RegionError> {
        // All-zero is an unlocked mutex over an empty slot, and a condvar nobody waits on.
        Ok(Mailbox {
            slot: region.get_or_default(&format!("{name}.slot"))?,
            not_empty: region.get_or_default(&format!("{name}.not_empty"))?,
            not_full: region.get_or_default(&format!("{name}.not_full"))?,
        })
    }

    /// Waits until the slot is empty, then puts `value` in it.
    pub fn put(&self, value: u64) {
        let mut slot = self.recover(self.slot.lock());
        // A loop, not an `if`: another producer may fill the slot between the notify that
        // woke us and our re-lock, and wakeups may be spurious.
        while slot.full != 0 {
            slot = self.recover(self.not_full.wait(slot));
        }
        *slot = Slot { value, full: 1 };
        drop(slot);
        // After the unlock is enough: a consumer registers as a waiter under the lock, so
        // either it saw `full` set or this notify sees it registered.
        self.not_empty.notify_one();
    }

    /// Waits until the slot is full, then takes its value (leaving it empty).
    pub fn take(&self) -> u64 {
        let mut slot = self.recover(self.slot.lock());
        while slot.full == 0 {
            slot = self.recover(self.not_empty.wait(slot));
        }
        let value = slot.value;
        *slot = Slot::default();
        drop(slot);
        self.not_full.notify_one();
        value
    }

    /// [`take`](Self::take), waiting at most `timeout` for a message. The message stays
    /// in the slot if this times out.
    ///
    /// Re-taking the lock after a wait is untimed (as for [`Condvar::wait_timeout`]): a
    /// peer stopped while holding it delays this past `timeout`.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no message came within `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use loom_example::{Mailbox, Slot};
    /// use shmstate::{Condvar, Mutex, Timeout};
    /// use std::time::Duration;
    ///
    /// let (slot, not_empty, not_full) = (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
    /// let mailbox = Mailbox::new(&slot, &not_empty, &not_full);
    /// assert_eq!(mailbox.take_timeout(Duration::from_millis(1)), Err(Timeout));
    /// mailbox.put(5);
    /// assert_eq!(mailbox.take_timeout(Duration::from_millis(1)), Ok(5));
    /// ```
    pub fn take_timeout(&self, timeout: Duration) -> Result<u64, Timeout> {
        // `None`: too far to represent, no limit.
        let deadline = Instant::now().checked_add(timeout);
        let mut slot = self.recover(self.slot.lock());
        loop {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            // `wait_timeout_while`, not a loop of `wait_timeout`s until the clock passes
            // the deadline: under loom a wait that would sleep times out at once, long
            // before the clock gets there, so such a loop would spin until loom gives up.
            match self
                .not_empty
                .wait_timeout_while(slot, left, |s| s.full == 0)
            {
                Ok((_, r)) if r.timed_out() => return Err(Timeout),
                Ok((full, _)) => {
                    slot = full;
                    break;
                }
                // A peer died holding the lock: repair, and wait out the rest.
                Err(died) => slot = self.repair(died.into_inner().0),
            }
        }
        let value = slot.value;
        *slot = Slot::default();
        drop(slot);
        self.not_full.notify_one();
        Ok(value)
    }

    /// The guard of a lock result, repaired if a peer died holding the lock.
    fn recover<'g>(&self, r: LockResult<MutexGuard<'g, Slot>>) -> MutexGuard<'g, Slot> {
        r.unwrap_or_else(|died| self.repair(died.into_inner()))
    }

    /// After [`OwnerDied`](shmstate::OwnerDied): the slot is as a dead peer left it
    /// somewhere inside `put` or `take` (its two fields need not have been stored in
    /// program order). Empty it, mark it consistent, and let producers waiting for room go
    /// on.
    fn repair<'g>(&self, mut slot: MutexGuard<'g, Slot>) -> MutexGuard<'g, Slot> {
        *slot = Slot::default();
        slot.mark_consistent();
        self.not_full.notify_all();
        slot
    }
}

/// A published range `lo..=hi`: one writer at a time moves it, any number of readers read
/// it, and no reader ever sees `lo > hi`, nor the `lo` of one publish with the `hi` of
/// another. Readers never write to shared memory.
///
/// # Examples
///
/// ```
/// use loom_example::Window;
/// use shmstate::SeqLock;
///
/// let span = SeqLock::new([0, 10]);
/// let window = Window::new(&span);
/// window.publish(20, 30);
/// assert_eq!(window.get(), (20, 30));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// `[lo, hi]`, `lo <= hi` after every publish.
    span: &'a SeqLock<[u64; 2]>,
}

impl<'a> Window<'a> {
    /// A window over `span` (`[lo, hi]`).
    pub fn new(span: &'a SeqLock<[u64; 2]>) -> Self {
        Window { span }
    }

    /// The window named `name` in `region`, created as `0..=0` if it does not exist yet.
    ///
    /// # Errors
    ///
    /// As for [`Region::get_or_default`](shmstate::Region::get_or_default).
    ///
    /// # Examples
    ///
    /// ```
    /// use loom_example::Window;
    /// use shmstate::Region;
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// Window::in_region(&region, "visible")?.publish(4, 9);
    /// assert_eq!(Window::in_region(&region, "visible")?.get(), (4, 9));
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    #[cfg(not(loom))]
    pub fn in_region(
        region: &'a shmstate::Region,
        name: &str,
    ) -> Result<Self, shmstate::RegionError> {
        // All-zero is a seqlock holding `[0, 0]`, no write in progress.
        Ok(Window {
            span: region.get_or_default(name)?,
        })
    }

    /// Publishes `lo..=hi`, replacing the range as one value.
    ///
    /// # Panics
    ///
    /// If `lo > hi`.
    pub fn publish(&self, lo: u64, hi: u64) {
        assert!(lo <= hi, "empty window {lo}..={hi}");
        // One write of both words: a reader gets the old pair or the new one, never a mix.
        // `write` also repairs a pair torn by a writer that died mid-write.
        self.span.write([lo, hi]);
    }

    /// The current range `(lo, hi)`, with `lo <= hi`.
    ///
    /// Waits while a writer is writing (see [`SeqLock::read`]). Bytes another process
    /// wrote into the region without going through [`publish`](Self::publish) may break
    /// `lo <= hi`: this clamps `hi` up to `lo` rather than hand out an inverted range.
    pub fn get(&self) -> (u64, u64) {
        let [lo, hi] = self.span.read();
        (lo, hi.max(lo))
    }
}

pub mod broken {
    //! Deliberately wrong versions of [`Mailbox`](crate::Mailbox) and
    //! [`Window`](crate::Window). Each passes ordinary tests; the loom tests show that
    //! loom finds its bug. Do not use them.

    use shmstate::sync::Ordering;
    use shmstate::{Condvar, Mutex, Value};

    /// A one-shot handoff whose `ready` flag is an atomic beside the mutex, set and read
    /// outside it ("it is atomic, so it needs no lock").
    ///
    /// The bug, a lost wakeup: the consumer reads `ready == false`, then the producer sets
    /// it and notifies, finding nobody registered on the condvar yet, and only then does
    /// the consumer wait, for a notify that already happened. Loom reports a deadlock.
    #[derive(Debug, Default)]
    pub struct FlagOutsideTheLock {
        value: Mutex<u64>,
        ready: Value<bool>,
        changed: Condvar,
    }

    impl FlagOutsideTheLock {
        /// An empty handoff.
        pub fn new() -> Self {
            FlagOutsideTheLock {
                value: Mutex::new(0),
                ready: Value::new(false),
                changed: Condvar::new(),
            }
        }

        /// Hands `value` over.
        pub fn put(&self, value: u64) {
            *self.value.lock().unwrap() = value;
            // BUG: set outside the lock, so this can fall between the consumer's check
            // and its wait. (Release: pairs with the Acquire load in `take`, so the value
            // is visible; the ordering is not the problem.)
            self.ready.store(true, Ordering::Release);
            self.changed.notify_one();
        }

        /// Waits for the value.
        pub fn take(&self) -> u64 {
            let mut value = self.value.lock().unwrap();
            // Acquire: pairs with the Release store in `put`.
            while !self.ready.load(Ordering::Acquire) {
                value = self.changed.wait(value).unwrap();
            }
            *value
        }
    }

    /// [`Window`](crate::Window) with its two words in two atomics, each stored and loaded
    /// on its own ("each word is atomic, so the pair is").
    ///
    /// The bug: a reader can load the new `lo` and the old `hi` (or the reverse), a pair
    /// nobody published, and see `lo > hi`. Loom reports the failed assertion.
    #[derive(Debug)]
    pub struct SplitWindow {
        lo: Value<u64>,
        hi: Value<u64>,
    }

    impl SplitWindow {
        /// The window `lo..=hi`.
        pub fn new(lo: u64, hi: u64) -> Self {
            SplitWindow {
                lo: Value::new(lo),
                hi: Value::new(hi),
            }
        }

        /// Publishes `lo..=hi`.
        pub fn publish(&self, lo: u64, hi: u64) {
            // SeqCst everywhere, to show that no ordering fixes it: the two stores are two
            // steps, and a reader fits between them.
            self.lo.store(lo, Ordering::SeqCst);
            self.hi.store(hi, Ordering::SeqCst);
        }

        /// The current range, supposedly.
        pub fn get(&self) -> (u64, u64) {
            (
                self.lo.load(Ordering::SeqCst),
                self.hi.load(Ordering::SeqCst),
            )
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use shmstate::Region;

    fn mailbox_moves_every_message_once(mailbox: Mailbox<'_>) {
        const PER_PRODUCER: u64 = 2000;
        let received = std::thread::scope(|s| {
            for p in 0..2 {
                s.spawn(move || {
                    for i in 0..PER_PRODUCER {
                        mailbox.put(p * PER_PRODUCER + i);
                    }
                });
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(move || {
                        (0..PER_PRODUCER)
                            .map(|_| mailbox.take())
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            let mut all: Vec<u64> = consumers
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect();
            all.sort_unstable();
            all
        });
        assert_eq!(received, (0..2 * PER_PRODUCER).collect::<Vec<_>>());
    }

    #[test]
    fn heap_mailbox_moves_every_message_exactly_once_between_two_producers_and_two_consumers() {
        let (slot, not_empty, not_full) =
            (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
        mailbox_moves_every_message_once(Mailbox::new(&slot, &not_empty, &not_full));
    }

    #[test]
    fn region_mailbox_moves_every_message_exactly_once_between_two_producers_and_two_consumers() {
        let region = Region::anonymous(1 << 16).unwrap();
        mailbox_moves_every_message_once(Mailbox::in_region(&region, "m").unwrap());
    }

    #[test]
    fn mailbox_put_waits_for_room() {
        let (slot, not_empty, not_full) =
            (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
        let mailbox = Mailbox::new(&slot, &not_empty, &not_full);
        mailbox.put(1);
        std::thread::scope(|s| {
            let second = s.spawn(|| mailbox.put(2));
            assert_eq!(mailbox.take(), 1);
            second.join().unwrap();
            assert_eq!(mailbox.take(), 2);
        });
        assert_eq!(*slot.lock().unwrap(), Slot::default());
    }

    #[test]
    fn mailbox_take_timeout_waits_for_a_put() {
        let (slot, not_empty, not_full) =
            (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
        let mailbox = Mailbox::new(&slot, &not_empty, &not_full);
        std::thread::scope(|s| {
            s.spawn(|| mailbox.put(9));
            assert_eq!(mailbox.take_timeout(Duration::from_secs(60)), Ok(9));
        });
    }

    #[test]
    fn mailbox_take_timeout_returns_no_earlier_than_its_timeout_and_leaves_the_slot() {
        let (slot, not_empty, not_full) =
            (Mutex::new(Slot::default()), Condvar::new(), Condvar::new());
        let mailbox = Mailbox::new(&slot, &not_empty, &not_full);
        let timeout = Duration::from_millis(20);
        let start = Instant::now();
        assert_eq!(mailbox.take_timeout(timeout), Err(Timeout));
        assert!(start.elapsed() >= timeout);
        assert_eq!(*slot.lock().unwrap(), Slot::default());
        mailbox.put(1);
        assert_eq!(mailbox.take_timeout(timeout), Ok(1));
    }

    #[test]
    fn mailbox_reads_any_nonzero_full_word_as_full() {
        let slot = Mutex::new(Slot {
            value: 5,
            full: u64::MAX,
        });
        let (not_empty, not_full) = (Condvar::new(), Condvar::new());
        assert_eq!(Mailbox::new(&slot, &not_empty, &not_full).take(), 5);
    }

    #[test]
    fn window_readers_never_see_an_inverted_range_while_it_moves() {
        let region = Region::anonymous(1 << 16).unwrap();
        let window = Window::in_region(&region, "w").unwrap();
        window.publish(0, 1);
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 1..=20_000u64 {
                    window.publish(2 * k, 2 * k + 1);
                }
            });
            let mut last = 0;
            while last < 40_000 {
                let (lo, hi) = window.get();
                assert_eq!(hi, lo + 1, "a mixed pair {lo}..={hi}");
                assert!(lo >= last, "the window moved back: {lo} after {last}");
                last = lo;
            }
        });
    }

    #[test]
    fn window_clamps_a_range_a_peer_wrote_inverted() {
        let span = SeqLock::new([9, 3]);
        assert_eq!(Window::new(&span).get(), (9, 9));
    }

    #[test]
    #[should_panic(expected = "empty window 2..=1")]
    fn window_refuses_to_publish_an_inverted_range() {
        let span = SeqLock::new([0, 0]);
        Window::new(&span).publish(2, 1);
    }

    /// The bugs need an unlucky interleaving: in program order both broken versions work.
    /// (No threaded test of `FlagOutsideTheLock`: it would hang on the day it lost the
    /// race.)
    #[test]
    fn broken_versions_pass_a_sequential_test() {
        let h = broken::FlagOutsideTheLock::new();
        h.put(4);
        assert_eq!(h.take(), 4);
        let w = broken::SplitWindow::new(0, 1);
        w.publish(2, 3);
        assert_eq!(w.get(), (2, 3));
    }
}
