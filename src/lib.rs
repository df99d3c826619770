//! Lock-free shared-memory primitives: processes on one machine share state as cheaply
//! and as safely as threads do.
//!
//! shmstate places atomics directly in memory-mapped files and builds on them: a region of
//! named, typed objects; atomic values and counters; seqlock-protected values and arrays;
//! robust futex locks; and semaphores, events, barriers and a bounded queue. See the
//! README for the tour.
//!
//! # Examples
//!
//! ```
//! use shmstate::sync::Ordering;
//! use shmstate::{Region, Value};
//!
//! // Anonymous shared memory, inherited by children after fork; `Region::open_or_create`
//! // takes a path instead.
//! let region = Region::anonymous(1 << 16)?;
//! let hits = region.get_or_default::<Value<u64>>("hits")?;
//! hits.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(region.get::<Value<u64>>("hits")?.load(Ordering::Relaxed), 1);
//! # Ok::<(), shmstate::RegionError>(())
//! ```
//!
//! # Layers
//!
//! - [`sync`]: the one atomics shim (std, or loom under `cfg(loom)`).
//! - [`futex`]: wait/wake on a 32-bit word, shared across processes.
//! - [`Shared`]: the placement contract for types that live in shared memory, and
//!   [`Element`] / [`TypeTag`]: the identity a region records so that no type opens as
//!   another ([`shared`]).
//! - [`wait`]: the one blocking policy (spin, sleep in slices, probe the holder, deadlines)
//!   and [`Timeout`], the one spelling of a passed deadline.
//! - [`region`]: [`Region`], a mapped file (or memfd, or anonymous memory) of named,
//!   typed objects.
//! - The primitives: [`Value`], [`ValueArray`], [`Counter`], [`StripedCounter`],
//!   [`Histogram`] ([`values`]);
//!   [`SeqLock`], [`SeqLockArray`] ([`seqlock`]); [`Mutex`], [`RwLock`],
//!   [`ReentrantMutex`], [`Condvar`] ([`lock`]); [`Semaphore`], [`BoundedSemaphore`],
//!   [`Event`], [`Barrier`], [`Queue`] ([`coord`]). Each is an ordinary type on the heap
//!   too, and each implements [`Shared`].
//! - [`metrics`]: a region's counters, gauges and histograms in the Prometheus text
//!   format.
//!
//! # Crash windows
//!
//! Every primitive that can be caught mid-protocol by a SIGKILL writes down, in its module
//! docs, one line per step: what a kill there leaves, who repairs it and how fast (for
//! example [`lock::raw_mutex`], [`lock::rwlock`], [`seqlock::single`], [`coord::queue`],
//! and the region directory in [`region`]). The crate's failpoint tests stop a process at
//! those steps and check the repair.
//!
//! # Your own shared structs
//!
//! With the default feature `derive`, `#[derive(Shared)]` makes a `#[repr(C)]` struct of
//! primitives one named object of a region, and `#[derive(Element)]` makes a plain-old-data
//! struct the data of a [`SeqLock`], [`Mutex`], …; both without `unsafe`, both checked at
//! compile time, and both recording the struct's name and layout so that a region refuses
//! to hand out an object as another struct ([`GetError::TypeMismatch`]).
//!
//! ```
//! # #[cfg(feature = "derive")] {
//! use shmstate::{Counter, Element, Region, SeqLock, Shared};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Element)]
//! #[repr(C)]
//! struct Config {
//!     limit: u64,
//!     ratio: f64,
//! }
//!
//! #[derive(Shared)]
//! #[repr(C)]
//! struct Stats {
//!     requests: Counter,
//!     errors: Counter,
//!     config: SeqLock<Config>,
//! }
//!
//! let region = Region::anonymous(1 << 16)?;
//! let stats = region.get_or_default::<Stats>("stats")?;
//! stats.requests.inc();
//! # }
//! # Ok::<(), shmstate::RegionError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// Under loom the spin limits are 0 (spinning only multiplies the interleavings loom
// explores), which makes the spin loops' ranges empty on purpose.
#![cfg_attr(loom, allow(clippy::reversed_empty_ranges))]

// Foundations.
pub mod futex;
mod owner;
pub mod shared;
pub mod sync;
pub mod wait;

// Failpoints for the crash-window tests (active only with `--cfg shmstate_test_hooks`).
#[doc(hidden)]
pub mod failpoint;

pub use shared::{Elem, Element, Field, Kind, Shared, SharedSized, TypeTag};
// The derive macros: in the macro namespace, beside the traits of the same names.
#[cfg(feature = "derive")]
pub use shmstate_derive::{Element, Shared};
pub use wait::Timeout;

/// The README's examples, run as doctests.
#[cfg(all(doctest, not(loom)))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// The region: named, typed objects in a mapped file (not under loom: loom atomics cannot
// live in a mapping).
#[cfg(not(loom))]
pub mod region;
#[cfg(not(loom))]
pub use region::{
    Attached, CreateError, EntryInfo, EntryState, GetError, OpenError, OpenOrCreateError, Region,
    RegionError, RegionOptions, RemoveError, RemoveObjectError, SpaceInfo,
};

// Values and counters.
pub mod values;
pub use values::{Counter, Histogram, StripedCounter, Value, ValueArray, ValueType};

// Prometheus metrics over a region's objects.
#[cfg(not(loom))]
pub mod metrics;

// Seqlocks.
pub mod seqlock;
pub use seqlock::{
    SeqLock, SeqLockArray, SeqLockArrayBatchGuard, SeqLockArrayWriteGuard, SeqLockError,
    SeqLockWriteGuard,
};

// Locks.
pub mod lock;
pub use lock::{
    Acquired, Condvar, LockResult, MappedMutexGuard, MappedReentrantMutexGuard,
    MappedRwLockReadGuard, MappedRwLockWriteGuard, Mutex, MutexGuard, OwnerDied, RawMutex,
    RawRwLock, ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    TimedLockError, TryLockError, WaitTimeoutResult,
};

// The shared hash map.
pub mod map;
#[cfg(not(loom))]
pub use map::MapOpenError;
pub use map::{
    ByteMap, ByteMapDeadline, ByteMapHandle, Evicted, FixedStr, IncrError, InsertError, Map,
    MapDeadline, MapError, MapHandle, MapOptions, Update, UpdateError,
};

// Coordination: semaphores, events, barriers, queues.
pub mod coord;
pub use coord::{
    Barrier, BarrierError, BarrierWaitResult, BoundedSemaphore, Event, Full, PushTimeoutError,
    Queue, ReleaseError, Semaphore,
};

// The message channel: variable-length byte messages.
pub mod channel;
#[cfg(not(loom))]
pub use channel::ChannelOpenError;
pub use channel::{
    Channel, ChannelError, ChannelOptions, RecvError, RecvIntoError, RecvSide, RecvTimeoutError,
    RecvTimeoutIntoError, SendError, SendSide, SendSlot, SendTimeoutError, TryRecvError,
    TryRecvIntoError, TrySendError,
};
#[cfg(all(feature = "serde", not(loom)))]
pub use channel::{RecvValueError, SendValueError};
