//! Waiting on a 32-bit word of shared memory: the futex layer.
//!
//! [`wait`] blocks while `*word == expected`; [`wake_one`] and [`wake_all`] wake threads
//! blocked on the same word and return how many they woke. The futexes are *shared* (no
//! `FUTEX_PRIVATE_FLAG`): the kernel keys them by the underlying page, so a waiter and a
//! waker in different processes that map the same file meet on the same word.
//!
//! Deadlines are absolute on `CLOCK_MONOTONIC` (`FUTEX_WAIT_BITSET`), so a wait interrupted
//! by a signal (`EINTR`) is retried without extending the total time, and changing the
//! wall clock does not affect a timeout.
//!
//! If the futex call itself fails (a seccomp sandbox that returns `ENOSYS` or `EPERM`),
//! a wait sleeps for a millisecond (never past its deadline) and reports a spurious
//! wakeup: callers re-check their condition, so every wait degrades to polling instead of
//! spinning, and stays correct.
//!
//! Under `cfg(loom)` the same functions are emulated with a loom `Mutex` + `Condvar` table
//! keyed by address. The emulation really blocks, so a missing wake shows up as a loom
//! deadlock instead of passing silently. A timed wait under loom never blocks and reports a
//! timeout: loom has no clock, and a timeout may legally fire at any moment.
//!
//! What the emulation does not model, so loom cannot find bugs there:
//! - a timed waiter being woken (every timed wait times out at once, even one of
//!   `Duration::MAX`, which on Linux waits without limit);
//! - the order in which waiters wake (loom wakes them first come, first served; the
//!   kernel promises no order);
//! - weak ordering across a wait: the table lock gives every wake/wait pair a
//!   happens-before edge, so a caller that reads data after a wait without an `Acquire`
//!   load of the word (which the Rust memory model requires, whatever barriers the
//!   kernel happens to execute) still passes under loom.
//!
//! # Examples
//!
//! ```
//! use shmstate::futex;
//! use shmstate::sync::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! let word = AtomicU32::new(0);
//! // The word is not 1, so this returns at once.
//! assert!(futex::wait(&word, 1, None));
//! // Nobody wakes us: times out.
//! assert!(!futex::wait(&word, 0, Some(Duration::from_millis(1))));
//! word.store(1, Ordering::Release);
//! futex::wake_all(&word);
//! ```

pub(crate) mod sleepers;

#[cfg(not(loom))]
mod linux;
#[cfg(not(loom))]
pub use linux::{wait, wait_until, wake_all, wake_one};

#[cfg(loom)]
mod emulated;
#[cfg(loom)]
pub use emulated::{wait, wait_until, wake_all, wake_one};
