//! The crate's one atomics shim.
//!
//! Everything in shmstate imports its atomics, fences and cells from here and never from
//! `core::sync::atomic` directly, so that building with `RUSTFLAGS="--cfg loom"` swaps
//! every one of them for loom's model-checked versions (crossbeam-utils `primitive`,
//! tokio `src/loom/` follow the same pattern). `.ci/run` fails if any other file under
//! `src/` names `std::sync::atomic` or `core::sync::atomic`.
//!
//! Loom atomics are not plain memory: they cannot live in a mapping, so under `cfg(loom)`
//! primitives are built on the heap only.

#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering, fence,
};

/// A compiler-only fence: keeps the compiler from moving this thread's memory accesses
/// across it (for state a signal handler of the same thread may read); under loom a
/// no-op.
#[inline]
pub fn compiler_fence(order: Ordering) {
    #[cfg(not(loom))]
    core::sync::atomic::compiler_fence(order);
    #[cfg(loom)]
    let _ = order;
}

/// Spin-loop hint; under loom a yield, so that spinning code lets other threads run.
#[inline]
pub fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` with loom's closure-based API on both builds, so that loom can check
/// every access to data a lock protects (tokio's `loom::std::unsafe_cell` pattern).
#[derive(Debug)]
#[repr(transparent)]
pub struct UnsafeCell<T>(
    #[cfg(not(loom))] core::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline]
    pub fn new(value: T) -> Self {
        #[cfg(not(loom))]
        return Self(core::cell::UnsafeCell::new(value));
        #[cfg(loom)]
        return Self(loom::cell::UnsafeCell::new(value));
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with(f);
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with_mut(f);
    }
}
