//! The map paths that promise no heap allocation make none: `get` into a buffer with room,
//! `get_with` once warm, `contains`, `incr`, `add` of a present key, and the typed `get`;
//! counted by a global allocator, per thread.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmstate::{ByteMap, Map, MapOptions};

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
fn map_reads_counters_and_sets_do_not_allocate() {
    let m = ByteMap::new(MapOptions::new(100).key_max(16).value_max(32)).unwrap();
    m.insert(b"k", &[7; 32]).unwrap();
    m.insert(b"n", &5i64.to_le_bytes()).unwrap();
    let mut out = Vec::with_capacity(32);
    // Warm the per-thread buffer of `get_with` and the thread's cached geometry.
    m.get_with(b"k", |v| v.len()).unwrap();
    let n = allocations(|| {
        assert!(m.get(b"k", &mut out).unwrap());
        assert!(!m.get(b"absent", &mut out).unwrap());
        assert_eq!(m.get_with(b"k", |v| v[0]).unwrap(), Some(7));
        assert!(m.contains(b"k").unwrap());
        assert_eq!(m.incr(b"n", 1, 0).unwrap(), 6);
        assert!(!m.add(b"k", b"x").unwrap());
        assert!(!m.set(b"k", &[8; 32]).unwrap());
        assert_eq!(m.len(), 2);
    });
    assert_eq!(n, 0);
    // A handle's operations: no allocation either (making the handle neither).
    let n = allocations(|| {
        let h = m.handle().unwrap();
        assert!(h.get(b"k", &mut out).unwrap());
        assert_eq!(h.get_with(b"k", |v| v[0]).unwrap(), Some(8));
        assert!(h.contains(b"k").unwrap());
        assert_eq!(h.incr(b"n", 1, 0).unwrap(), 7);
        assert!(!h.set(b"k", &[9; 32]).unwrap());
    });
    assert_eq!(n, 0);

    let t = Map::<u64, [f64; 4]>::new(10).unwrap();
    t.insert(1, [0.5; 4]).unwrap();
    t.get(&1);
    let n = allocations(|| {
        assert_eq!(t.get(&1), Some([0.5; 4]));
        assert!(t.contains(&1));
        assert_eq!(t.get(&2), None);
        assert!(!t.set(1, [1.5; 4]).unwrap());
        assert_eq!(t.insert(1, [0.5; 4]), Ok(Some([1.5; 4])));
        let h = t.handle().unwrap();
        assert_eq!(h.get(&1), Some([0.5; 4]));
        assert!(h.contains(&1));
        assert!(!h.set(1, [2.5; 4]).unwrap());
    });
    assert_eq!(n, 0);
}
