//! Failpoint hooks for the crash-window tests of [`Queue`](super::Queue) (built only with
//! `test-hooks`): operations that stop between two steps of their protocol, as if their
//! process were killed there, and a writer of hostile indices.

use bytemuck::Pod;

use super::Queue;
use crate::sync::Ordering;

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
        let g = self.lock_recovering();
        let (head, tail) = self.indices(&g);
        assert!(
            Self::len_of(head, tail).is_some_and(|l| (l as usize) < N),
            "needs room"
        );
        self.write_then_commit(&g, tail, item, || {});
        committed();
        hang()
    }

    /// For tests of owner death: a push that writes `item` into its slot, calls
    /// `written`, and hangs there, holding the lock, before its commit (as if its process
    /// were killed between the two steps). Never returns.
    #[doc(hidden)]
    pub fn push_written_then_hang(&self, item: T, written: impl FnOnce()) -> ! {
        let g = self.lock_recovering();
        let (head, tail) = self.indices(&g);
        assert!(
            Self::len_of(head, tail).is_some_and(|l| (l as usize) < N),
            "needs room"
        );
        self.write_then_commit(&g, tail, item, || {
            written();
            hang()
        });
        unreachable!("the failpoint hangs")
    }

    /// For tests of owner death: a pop that reads the oldest item, passes it to `read`, and
    /// hangs there, holding the lock, before its commit (as if its process were killed
    /// between the two steps). Never returns.
    #[doc(hidden)]
    pub fn pop_read_then_hang(&self, read: impl FnOnce(T)) -> ! {
        let g = self.lock_recovering();
        let (head, tail) = self.indices(&g);
        assert!(
            Self::len_of(head, tail).is_some_and(|l| l > 0),
            "needs an item"
        );
        self.read_then_commit(&g, head, |item| {
            read(item);
            hang()
        });
        unreachable!("the failpoint hangs")
    }

    /// For tests of owner death: a pop that commits, passes the item to `committed`, and
    /// then neither notifies nor unlocks (as if killed right after its commit). Never
    /// returns.
    #[doc(hidden)]
    pub fn pop_then_hang(&self, committed: impl FnOnce(T)) -> ! {
        let g = self.lock_recovering();
        let (head, tail) = self.indices(&g);
        assert!(
            Self::len_of(head, tail).is_some_and(|l| l > 0),
            "needs an item"
        );
        let item = self.read_then_commit(&g, head, |_| {});
        committed(item);
        hang()
    }

    /// Overwrites the raw indices `(head, tail)` under the lock, for tests of hostile bytes.
    #[doc(hidden)]
    pub fn set_raw_indices(&self, head: u32, tail: u32) {
        let _g = self.lock_recovering();
        // Relaxed: under the lock; the unlock publishes them.
        self.head.store(head, Ordering::Relaxed);
        self.tail.store(tail, Ordering::Relaxed);
    }
}

/// Parks the calling thread for good (the failpoints above).
fn hang() -> ! {
    loop {
        std::thread::park();
    }
}
