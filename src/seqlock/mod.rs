//! Seqlocks: [`SeqLock<T>`], a value that readers copy without writing to shared memory
//! while serialised writers replace it, and [`SeqLockArray<T>`], an array of values in
//! seqlocked stripes, with consistent whole-array snapshots and all-or-nothing batch
//! writes.
//!
//! Both copy their data with relaxed atomic word loads and stores (the crate-private
//! `atomic_copy`), so a read racing a write is a retry, never a data race. The protocol,
//! its orderings and its crash windows are in [`single`] (one value) and [`array`](mod@array).

pub mod array;
mod atomic_copy;
pub mod single;

pub use array::{SeqLockArray, SeqLockArrayBatchGuard, SeqLockArrayWriteGuard};
pub use single::{SeqLock, SeqLockError, SeqLockWriteGuard};
