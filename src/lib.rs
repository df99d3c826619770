//! Lock-free shared-memory primitives: processes on one machine share state as cheaply
//! and as safely as threads do.
//!
//! shmstate places atomics directly in memory-mapped files and builds on them: a region of
//! named, typed objects; atomic values and counters; seqlock-protected values and arrays;
//! and robust futex locks. See the README for the tour.
//!
//! # Layers
//!
//! - [`sync`]: the one atomics shim (std, or loom under `cfg(loom)`).
//! - [`futex`]: wait/wake on a 32-bit word, shared across processes.
//! - [`Shared`]: the placement contract for types that live in shared memory.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod futex;
#[allow(dead_code)] // used by the robust primitives
mod owner;
pub mod shared;
pub mod sync;

pub use shared::{Elem, Kind, Shared, SharedSized, TypeTag};

// Region (helper "region").
#[cfg(not(loom))]
pub mod region;
#[cfg(not(loom))]
pub use region::{EntryInfo, EntryState, Region, RegionError, RegionOptions};
