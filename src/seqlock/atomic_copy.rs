//! Storage for a [`bytemuck::Pod`] value that is copied in and out with relaxed atomic
//! loads and stores of whole words: the "atomic memcpy" a seqlock needs.
//!
//! A seqlock reader copies the data *while a writer may be storing to it*, then discards
//! the copy if the sequence word says it raced. With plain (non-atomic) accesses that race
//! is undefined behaviour even though the copy is thrown away; with relaxed atomics it is
//! merely a stale or mixed value, which the sequence check rejects. The fences that make
//! the check sound live in the seqlock, not here: every access in this module is
//! `Relaxed` by design.
//!
//! # Layout (normal builds)
//!
//! [`AtomicCell<T>`] is `#[repr(C, align(8))]` around the `T` itself, so it has exactly
//! `T`'s bytes at offset 0, aligned to at least 8 (and to `align_of::<T>()` if larger).
//! Those `size_of::<T>()` bytes are split, once and identically in every process, into
//! `size / 8` `AtomicU64` words followed by a tail of at most one `AtomicU32`, one
//! `AtomicU16` and one `AtomicU8` (in that order). Every piece sits at an offset that is a
//! multiple of its own size from an 8-aligned base, so each is properly aligned, and no
//! byte is ever accessed with two different atomic sizes. Tail padding of the cell (up to
//! the next multiple of its alignment) is never read or written, so it may stay
//! uninitialised on the heap.
//!
//! Why not `[AtomicU64; N]`: stable Rust cannot size an array by `size_of::<T>()` in a
//! generic type, and a `SeqLock<T, const W: usize>` would leak the word count into every
//! user's type. Viewing the bytes of an `UnsafeCell<T>` through `Atomic*::from_ptr` keeps
//! `SeqLock<T>` a plain sized generic type with no wasted bytes.
//!
//! # Layout under `cfg(loom)`
//!
//! loom atomics are objects with model state, not views of memory, so the cell is a boxed
//! slice of `size.div_ceil(8)` loom `AtomicU64` words holding `T`'s bytes packed and
//! zero-padded. The copy loops and the orderings are the same.

use bytemuck::Pod;

#[cfg(not(loom))]
use crate::sync::{AtomicU8, AtomicU16, AtomicU32, UnsafeCell};
use crate::sync::{AtomicU64, Ordering};

/// `T`'s bytes, accessed only with relaxed atomic loads and stores (see the module docs).
#[cfg(not(loom))]
#[repr(C, align(8))]
pub(crate) struct AtomicCell<T> {
    value: UnsafeCell<T>,
}

/// `T`'s bytes packed into loom atomic words (see the module docs).
#[cfg(loom)]
pub(crate) struct AtomicCell<T> {
    words: Box<[AtomicU64]>,
    _value: core::marker::PhantomData<T>,
}

// SAFETY: the cell's bytes are only ever accessed through atomics (relaxed loads and
// stores, see `load`/`store`), so sharing `&AtomicCell<T>` between threads cannot cause a
// data race. No `&T` into the cell is ever handed out: values leave it as fresh copies
// rebuilt from bytes, which `T: Pod` makes valid for any byte pattern, with no drop glue
// and no borrowed data (`Pod: 'static + Copy`). `T: Send` is not required (unlike
// `Mutex<T>: Sync`): a copy read on another thread is only a byte pattern, and a `Pod`
// type cannot rest any thread-affinity invariant on its values because safe code can
// already make any value of it on any thread (`Zeroable::zeroed`, `bytemuck::cast`).
unsafe impl<T: Pod> Sync for AtomicCell<T> {}

/// Words [`AtomicCell::load`] loads before it stores them (registers, not memory).
#[cfg(not(loom))]
const BATCH: usize = 8;

#[cfg(not(loom))]
impl<T: Pod> AtomicCell<T> {
    /// A cell holding `v`.
    #[inline]
    pub(crate) fn new(v: T) -> Self {
        AtomicCell {
            value: UnsafeCell::new(v),
        }
    }

    /// Base address of `T`'s bytes: 8-aligned (`align(8)` on the cell, `value` at offset 0).
    #[inline]
    fn base(&self) -> *mut u8 {
        self.value.with_mut(|p| p.cast::<u8>())
    }

    /// Copies the value out with relaxed atomic loads. Racing with [`store`](Self::store)
    /// gives a mix of old and new pieces; the caller's sequence check decides.
    #[inline]
    pub(crate) fn load(&self) -> T {
        let mut out = T::zeroed();
        let dst = bytemuck::bytes_of_mut(&mut out);
        let base = self.base();
        let full = dst.len() / 8 * 8;
        let (words, tail) = dst.split_at_mut(full);
        // Load a batch of up to `BATCH` words into registers before storing any of them
        // into `out`: the loads then issue back to back, none waiting behind a store to
        // the caller's stack (a 64-byte read compiles to 8 loads, then 8 stores).
        for (b, batch) in words.chunks_mut(8 * BATCH).enumerate() {
            let mut regs = [0u64; BATCH];
            let n = batch.len() / 8;
            for (j, reg) in regs.iter_mut().enumerate().take(n) {
                let i = b * BATCH + j;
                // `from_ptr` needs (1) an 8-aligned pointer: `base` is 8-aligned and the
                // offset a multiple of 8; (2) validity for the borrow: bytes `[8i, 8i + 8)`
                // lie within the `UnsafeCell` that `&self` keeps alive (`i < full / 8`).
                // SAFETY: (1) and (2) above; (3) no concurrent non-atomic or other-sized
                // access: these bytes are only ever this `AtomicU64` (module docs, "Layout").
                let a = unsafe { AtomicU64::from_ptr(base.add(i * 8).cast()) };
                // Relaxed: a racy copy is detected by the seqlock's sequence recheck.
                *reg = a.load(Ordering::Relaxed);
            }
            for (chunk, reg) in batch.chunks_exact_mut(8).zip(regs) {
                chunk.copy_from_slice(&reg.to_ne_bytes());
            }
        }
        let mut off = full;
        let mut rest = tail;
        if rest.len() >= 4 {
            // SAFETY: as above, for the 4 bytes at `off` (a multiple of 8, so 4-aligned),
            // always accessed as this `AtomicU32`.
            let a = unsafe { AtomicU32::from_ptr(base.add(off).cast()) };
            let (head, r) = rest.split_at_mut(4);
            // Relaxed: as above.
            head.copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            rest = r;
            off += 4;
        }
        if rest.len() >= 2 {
            // SAFETY: as above, for the 2 bytes at `off` (even), always this `AtomicU16`.
            let a = unsafe { AtomicU16::from_ptr(base.add(off).cast()) };
            let (head, r) = rest.split_at_mut(2);
            // Relaxed: as above.
            head.copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            rest = r;
            off += 2;
        }
        if let [b] = rest {
            // SAFETY: as above, for the last byte, always this `AtomicU8`.
            let a = unsafe { AtomicU8::from_ptr(base.add(off)) };
            // Relaxed: as above.
            *b = a.load(Ordering::Relaxed);
        }
        out
    }

    /// Copies `v` in with relaxed atomic stores. The caller (a seqlock writer holding the
    /// write lock) orders them with its sequence stores and fences.
    #[inline]
    pub(crate) fn store(&self, v: &T) {
        let src = bytemuck::bytes_of(v);
        let base = self.base();
        let full = src.len() / 8 * 8;
        let (words, tail) = src.split_at(full);
        for (i, chunk) in words.chunks_exact(8).enumerate() {
            let w = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
            // SAFETY: as in `load`, for word `i`.
            let a = unsafe { AtomicU64::from_ptr(base.add(i * 8).cast()) };
            // Relaxed: readers order their loads with the seqlock's fences.
            a.store(w, Ordering::Relaxed);
        }
        let mut off = full;
        let mut rest = tail;
        if rest.len() >= 4 {
            let (head, r) = rest.split_at(4);
            let w = u32::from_ne_bytes(head.try_into().unwrap_or([0; 4]));
            // SAFETY: as in `load`, for the `AtomicU32` at `off`.
            let a = unsafe { AtomicU32::from_ptr(base.add(off).cast()) };
            // Relaxed: as above.
            a.store(w, Ordering::Relaxed);
            rest = r;
            off += 4;
        }
        if rest.len() >= 2 {
            let (head, r) = rest.split_at(2);
            let w = u16::from_ne_bytes(head.try_into().unwrap_or([0; 2]));
            // SAFETY: as in `load`, for the `AtomicU16` at `off`.
            let a = unsafe { AtomicU16::from_ptr(base.add(off).cast()) };
            // Relaxed: as above.
            a.store(w, Ordering::Relaxed);
            rest = r;
            off += 2;
        }
        if let [b] = rest {
            // SAFETY: as in `load`, for the `AtomicU8` at `off`.
            let a = unsafe { AtomicU8::from_ptr(base.add(off)) };
            // Relaxed: as above.
            a.store(*b, Ordering::Relaxed);
        }
    }
}

#[cfg(loom)]
impl<T: Pod> AtomicCell<T> {
    /// A cell holding `v`.
    pub(crate) fn new(v: T) -> Self {
        let n = size_of::<T>().div_ceil(8);
        let cell = AtomicCell {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            _value: core::marker::PhantomData,
        };
        cell.store(&v);
        cell
    }

    /// Copies the value out with relaxed loads of whole words.
    pub(crate) fn load(&self) -> T {
        let mut out = T::zeroed();
        let dst = bytemuck::bytes_of_mut(&mut out);
        for (chunk, w) in dst.chunks_mut(8).zip(self.words.iter()) {
            // Relaxed: a racy copy is detected by the seqlock's sequence recheck.
            let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        out
    }

    /// Copies `v` in with relaxed stores of whole words.
    pub(crate) fn store(&self, v: &T) {
        let src = bytemuck::bytes_of(v);
        for (chunk, w) in src.chunks(8).zip(self.words.iter()) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: readers order their loads with the seqlock's fences.
            w.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn round_trip<T: Pod + PartialEq + core::fmt::Debug>(a: T, b: T) {
        let c = AtomicCell::new(a);
        assert_eq!(c.load(), a);
        c.store(&b);
        assert_eq!(c.load(), b);
        assert_eq!(align_of::<AtomicCell<T>>() % 8, 0);
        assert!(align_of::<AtomicCell<T>>() >= align_of::<T>());
    }

    #[test]
    fn every_size_and_tail_round_trips() {
        round_trip::<()>((), ());
        round_trip(1u8, 2);
        round_trip([1u8, 2, 3], [4, 5, 6]);
        round_trip(0x1122u16, 0x3344);
        round_trip([1u8; 7], [9; 7]);
        round_trip([3u32; 3], [4; 3]);
        round_trip([5u8; 15], [6; 15]);
        round_trip([7u64; 8], [8; 8]);
        round_trip([[9u8; 10]; 10], [[10; 10]; 10]);
        round_trip(u128::MAX - 5, 17);
    }
}
