//! The errors of [`Queue`](super::Queue)'s pushes that hand the item back: [`Full`] from
//! [`try_push`](super::Queue::try_push), [`PushTimeoutError`] from the timed pushes.
//!
//! # Crash windows
//!
//! None: process-local error values.

use crate::wait::Timeout;

/// A [`try_push`](super::Queue::try_push) found the queue full, or could not get the queue's
/// lock without waiting (its holder kept it through a brief spin: a stopped process, say).
/// The item was not pushed and is handed back (the shape of std's
/// [`TrySendError::Full`](std::sync::mpsc::TrySendError::Full)).
///
/// # Examples
///
/// ```
/// use shmstate::{Full, Queue};
///
/// let q = Queue::<u32, 1>::new();
/// q.try_push(1).unwrap();
/// assert_eq!(q.try_push(2), Err(Full(2)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full")]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A timed push ([`push_timeout`](super::Queue::push_timeout), [`push_until`](super::Queue::push_until))
/// reached its deadline: the queue stayed full, or its lock held, until then. The item
/// was not pushed and is handed back: the shape of `SendTimeoutError::Timeout(T)` of
/// std's `SyncSender::send_timeout` and of crossbeam-channel (a queue cannot be
/// disconnected, so this is a struct, not an enum). It converts into the crate's
/// [`Timeout`] (dropping the item) for callers that only need to know the deadline
/// passed. A timed pop has no item to hand back and returns [`Timeout`] itself, as
/// [`Receiver::recv_timeout`](std::sync::mpsc::Receiver::recv_timeout) returns
/// `RecvTimeoutError::Timeout`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmstate::{PushTimeoutError, Queue, Timeout};
///
/// let q = Queue::<u32, 1>::new();
/// q.push(1);
/// let err = q.push_timeout(2, Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err, PushTimeoutError(2));
/// assert_eq!(err.into_inner(), 2);
/// assert_eq!(Timeout::from(err), Timeout);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out: the queue stayed full")]
pub struct PushTimeoutError<T>(pub T);

impl<T> PushTimeoutError<T> {
    /// The item that was not pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<PushTimeoutError<T>> for Timeout {
    fn from(_: PushTimeoutError<T>) -> Self {
        Timeout
    }
}
