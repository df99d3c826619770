//! The seqlock paths that promise no heap allocation make none: counted by a global
//! allocator, per thread (so tests running in parallel do not disturb each other).
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use shmstate::{SeqLock, SeqLockArray};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the counter is a const-initialised
// thread-local `Cell` without destructor, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes
        // through `alloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by this thread while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn seqlock_reads_and_writes_do_not_allocate() {
    let s = SeqLock::new([1u64; 8]);
    let n = allocations(|| {
        s.write([2; 8]);
        assert!(s.update(|v| v[0] = 3).is_ok());
        assert_eq!(s.read()[0], 3);
        assert_eq!(s.try_read().map(|v| v[1]), Ok(2));
        assert!(s.read_timeout(Duration::from_millis(1)).is_ok());
        drop(s.lock());
    });
    assert_eq!(n, 0);
}

#[test]
fn array_element_ops_snapshots_and_set_all_do_not_allocate() {
    let a = SeqLockArray::<u64>::new(8);
    let mut out = [0u64; 8];
    let n = allocations(|| {
        a.set(1, 5);
        assert!(a.update(2, |v| *v = 6).is_ok());
        assert_eq!(a.get(1), 5);
        a.set_all(&[7; 8]);
        a.snapshot(&mut out);
        assert_eq!(a.try_snapshot(&mut out), Ok(()));
        assert_eq!(
            a.snapshot_timeout(&mut out, Duration::from_millis(1)),
            Ok(())
        );
    });
    assert_eq!(out, [7; 8]);
    assert_eq!(n, 0);
}
