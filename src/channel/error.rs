//! The errors of [`Channel`](super::Channel)'s operations, one enum per operation shape.
//!
//! # Crash windows
//!
//! None: process-local error values.

use crate::wait::Timeout;

/// [`Channel::new`](super::Channel::new) refused the options.
///
/// # Examples
///
/// ```
/// use shmstate::{Channel, ChannelError, ChannelOptions};
///
/// let err = Channel::new(ChannelOptions::new(64).max_message(1000)).unwrap_err();
/// assert!(matches!(err, ChannelError::InvalidOptions { .. }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The capacity is above [`MAX_CAPACITY`](super::MAX_CAPACITY), or the largest message
    /// above `capacity / 2 - 8` (see [`ChannelOptions`](super::ChannelOptions)).
    #[error("invalid channel options (capacity {capacity}, max message {max_message}): {reason}")]
    InvalidOptions {
        /// The capacity, rounded as the channel would have it.
        capacity: usize,
        /// The largest message asked for.
        max_message: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A blocking send or reserve failed.
///
/// # Examples
///
/// ```
/// use shmstate::{Channel, ChannelOptions, SendError};
///
/// let ch = Channel::new(ChannelOptions::new(1024))?;
/// assert_eq!(ch.send(&[0; 300]), Err(SendError::TooLarge { len: 300, max: 256 }));
/// ch.close();
/// assert_eq!(ch.send(b"late"), Err(SendError::Disconnected));
/// # Ok::<(), shmstate::ChannelError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel is closed: nothing more can be sent.
    #[error("the channel is closed")]
    Disconnected,
    /// The message is longer than the channel's largest message.
    #[error("message of {len} bytes is longer than the channel's largest ({max})")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
    /// The channel's shared state is invalid (another process wrote garbage into it):
    /// see the module docs, "Untrusted memory".
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

/// A [`try_send`](super::Channel::try_send) or [`try_reserve`](super::Channel::try_reserve)
/// could not send without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The ring has no room for the message now.
    #[error("the channel is full")]
    Full,
    /// Another sender held the send side throughout a brief spin (a live sender in the
    /// middle of a long reservation, or a stopped process; or a dead one, until a
    /// millisecond after this thread's previous probe of that lock: see "Probes of a
    /// `try_` call" in the [module docs](super)).
    #[error("another sender holds the channel's send side")]
    Busy,
    /// As [`SendError::Disconnected`].
    #[error("the channel is closed")]
    Disconnected,
    /// As [`SendError::TooLarge`].
    #[error("message of {len} bytes is longer than the channel's largest ({max})")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

/// A timed send or reserve failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendTimeoutError {
    /// The deadline passed with the ring full (or the send side held by another sender).
    #[error("timed out")]
    Timeout,
    /// As [`SendError::Disconnected`].
    #[error("the channel is closed")]
    Disconnected,
    /// As [`SendError::TooLarge`].
    #[error("message of {len} bytes is longer than the channel's largest ({max})")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

impl From<Timeout> for SendTimeoutError {
    fn from(_: Timeout) -> Self {
        SendTimeoutError::Timeout
    }
}

impl From<SendError> for TrySendError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Disconnected => TrySendError::Disconnected,
            SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
            SendError::Corrupt => TrySendError::Corrupt,
        }
    }
}

impl From<SendError> for SendTimeoutError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Disconnected => SendTimeoutError::Disconnected,
            SendError::TooLarge { len, max } => SendTimeoutError::TooLarge { len, max },
            SendError::Corrupt => SendTimeoutError::Corrupt,
        }
    }
}

/// A blocking receive failed.
///
/// # Examples
///
/// ```
/// use shmstate::{Channel, ChannelOptions, RecvError};
///
/// let ch = Channel::new(ChannelOptions::new(1024))?;
/// ch.send(b"last")?;
/// ch.close();
/// let mut out = Vec::new();
/// assert_eq!(ch.recv(&mut out), Ok(4)); // what was sent is still delivered
/// assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The channel is closed and empty.
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

/// A [`try_recv`](super::Channel::try_recv) (or [`drain`](super::Channel::drain)) could
/// not receive without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No message is waiting.
    #[error("the channel is empty")]
    Empty,
    /// Another receiver held the receive side throughout a brief spin (a live receiver in
    /// the middle of a long closure, or a stopped process; or a dead one, until a
    /// millisecond after this thread's previous probe of that lock: see "Probes of a
    /// `try_` call" in the [module docs](super)).
    #[error("another receiver holds the channel's receive side")]
    Busy,
    /// As [`RecvError::Disconnected`].
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

/// A timed receive failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// The deadline passed with no message (or the receive side held by another
    /// receiver).
    #[error("timed out")]
    Timeout,
    /// As [`RecvError::Disconnected`].
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

impl From<Timeout> for RecvTimeoutError {
    fn from(_: Timeout) -> Self {
        RecvTimeoutError::Timeout
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Corrupt => TryRecvError::Corrupt,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Corrupt => RecvTimeoutError::Corrupt,
        }
    }
}

/// A [`recv_into`](super::Channel::recv_into) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvIntoError {
    /// The next message is longer than the buffer; it stays in the channel.
    #[error("the next message needs a buffer of {needed} bytes")]
    TooSmall {
        /// The message's length.
        needed: usize,
    },
    /// As [`RecvError::Disconnected`].
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

impl From<RecvError> for RecvIntoError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvIntoError::Disconnected,
            RecvError::Corrupt => RecvIntoError::Corrupt,
        }
    }
}

/// A [`try_recv_into`](super::Channel::try_recv_into) could not receive without waiting,
/// or its buffer is too small for the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvIntoError {
    /// As [`TryRecvError::Empty`].
    #[error("the channel is empty")]
    Empty,
    /// As [`TryRecvError::Busy`].
    #[error("another receiver holds the channel's receive side")]
    Busy,
    /// As [`RecvIntoError::TooSmall`]: the message stays in the channel.
    #[error("the next message needs a buffer of {needed} bytes")]
    TooSmall {
        /// The message's length.
        needed: usize,
    },
    /// As [`RecvError::Disconnected`].
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}

/// A timed receive into a buffer ([`recv_timeout_into`](super::Channel::recv_timeout_into),
/// [`recv_until_into`](super::Channel::recv_until_into)) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutIntoError {
    /// As [`RecvTimeoutError::Timeout`].
    #[error("timed out")]
    Timeout,
    /// As [`RecvIntoError::TooSmall`]: the message stays in the channel.
    #[error("the next message needs a buffer of {needed} bytes")]
    TooSmall {
        /// The message's length.
        needed: usize,
    },
    /// As [`RecvError::Disconnected`].
    #[error("the channel is closed and empty")]
    Disconnected,
    /// As [`SendError::Corrupt`].
    #[error("the channel's shared state is corrupt")]
    Corrupt,
}
