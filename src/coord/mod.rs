//! Coordination primitives across processes: [`Semaphore`], [`BoundedSemaphore`],
//! [`Event`], [`Barrier`] and the bounded [`Queue`] — the rest of Python's
//! `multiprocessing` synchronisation surface.
//!
//! Each is a fixed-layout `#[repr(C)]` object of futex words (the queue adds the crate's
//! robust [`Mutex`](crate::Mutex) and [`Condvar`](crate::Condvar)s), valid on the heap and
//! in a region; every wait has a timed variant; uncontended paths make no syscall.

pub mod barrier;
pub mod event;
pub mod queue;
pub mod semaphore;

pub use barrier::{Barrier, BarrierError, BarrierWaitResult};
pub use event::Event;
pub use queue::{Full, PushTimeoutError, Queue};
pub use semaphore::{BoundedSemaphore, ReleaseError, Semaphore};
