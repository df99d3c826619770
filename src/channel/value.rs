//! The `serde` feature: [`Channel::send_value`] and [`Channel::recv_value`] and their
//! forms, any `serde` type encoded with `postcard` in place in the ring.
//!
//! Why postcard: a compact encoding (varints, no field names), a documented wire format
//! that is stable since 1.0, no_std-grade (it serializes into a caller's slice without
//! allocating, so a value goes straight into the reserved slot) and well kept.
//!
//! A send sizes the value first (postcard's `Size` flavor, a pass that writes
//! nothing), reserves exactly that, and serializes into the slot; a value larger than the
//! channel's largest message is refused with `TooLarge`. A receive deserializes in place
//! from the ring (`recv_with`); a message that does not decode as `T` is consumed and
//! reported as [`RecvValueError::Deserialize`].

use core::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{Fail, Wait};
use super::layout::Channel;

/// Sending a value failed. The blocking [`send_value`](Channel::send_value) returns only
/// `Disconnected`, `TooLarge`, `Corrupt` and `Serialize`; `try_` adds `Full` and `Busy`,
/// the timed form `Timeout`.
#[derive(Debug, thiserror::Error)]
pub enum SendValueError {
    /// The channel is closed.
    #[error("the channel is closed")]
    Disconnected,
    /// The encoded value is longer than the channel's largest message.
    #[error("encoded value of {len} bytes is longer than the channel's largest message ({max})")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The channel's largest message.
        max: usize,
    },
    /// No room now (`try_send_value`).
    #[error("the channel is full")]
    Full,
    /// Another sender held the send side (`try_send_value`).
    #[error("another sender holds the channel's send side")]
    Busy,
    /// The deadline passed (`send_value_timeout`).
    #[error("timed out")]
    Timeout,
    /// The channel's shared state is corrupt.
    #[error("the channel's shared state is corrupt")]
    Corrupt,
    /// The value could not be encoded (a `Serialize` impl failed).
    #[error("serialization failed: {0}")]
    Serialize(postcard::Error),
}

impl From<crate::Timeout> for SendValueError {
    fn from(_: crate::Timeout) -> Self {
        SendValueError::Timeout
    }
}

/// Receiving a value failed. The blocking [`recv_value`](Channel::recv_value) returns
/// only `Disconnected`, `Corrupt` and `Deserialize`; `try_` adds `Empty` and `Busy`, the
/// timed form `Timeout`.
#[derive(Debug, thiserror::Error)]
pub enum RecvValueError {
    /// The channel is closed and empty.
    #[error("the channel is closed and empty")]
    Disconnected,
    /// No message is waiting (`try_recv_value`).
    #[error("the channel is empty")]
    Empty,
    /// Another receiver held the receive side (`try_recv_value`).
    #[error("another receiver holds the channel's receive side")]
    Busy,
    /// The deadline passed (`recv_value_timeout`).
    #[error("timed out")]
    Timeout,
    /// The channel's shared state is corrupt.
    #[error("the channel's shared state is corrupt")]
    Corrupt,
    /// The message did not decode as the type asked for; it is consumed.
    #[error("deserialization failed: {0}")]
    Deserialize(postcard::Error),
}

impl From<crate::Timeout> for RecvValueError {
    fn from(_: crate::Timeout) -> Self {
        RecvValueError::Timeout
    }
}

impl From<Fail> for SendValueError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::WouldBlock => SendValueError::Full,
            Fail::Busy => SendValueError::Busy,
            Fail::Timeout => SendValueError::Timeout,
            Fail::Disconnected => SendValueError::Disconnected,
            Fail::TooLarge { len, max } => SendValueError::TooLarge { len, max },
            Fail::TooSmall { .. } | Fail::Corrupt => SendValueError::Corrupt,
        }
    }
}

impl From<Fail> for RecvValueError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::WouldBlock => RecvValueError::Empty,
            Fail::Busy => RecvValueError::Busy,
            Fail::Timeout => RecvValueError::Timeout,
            Fail::Disconnected => RecvValueError::Disconnected,
            Fail::TooLarge { .. } | Fail::TooSmall { .. } | Fail::Corrupt => {
                RecvValueError::Corrupt
            }
        }
    }
}

impl Channel {
    fn send_value_inner<T: Serialize + ?Sized>(
        &self,
        value: &T,
        wait: Wait,
    ) -> Result<(), SendValueError> {
        let len = postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
            value,
            postcard::ser_flavors::Size::default(),
        )
        .map_err(SendValueError::Serialize)?;
        let mut slot = self.reserve_inner(len, wait)?;
        let used = postcard::to_slice(value, slot.as_mut_slice())
            .map_err(SendValueError::Serialize)?
            .len();
        slot.commit_len(used)
            .map_err(|_| SendValueError::Disconnected)
    }

    fn recv_value_inner<T: DeserializeOwned>(&self, wait: Wait) -> Result<T, RecvValueError> {
        self.recv_inner(wait, None, |ch, at, len| {
            ch.with_message(at, len, |m| postcard::from_bytes::<T>(m))
        })?
        .map_err(RecvValueError::Deserialize)
    }

    /// Sends `value`, encoded with postcard straight into the ring; waits while the ring
    /// has no room for it.
    ///
    /// # Errors
    ///
    /// [`SendValueError::TooLarge`] if the encoding is longer than the largest message;
    /// [`SendValueError::Serialize`] if the value's `Serialize` failed; otherwise as for
    /// [`send`](Channel::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(4096))?;
    /// ch.send_value(&("job", 7u32, vec![1.5f64, 2.5]))?;
    /// let (name, id, xs): (String, u32, Vec<f64>) = ch.recv_value()?;
    /// assert_eq!((name.as_str(), id, xs), ("job", 7, vec![1.5, 2.5]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendValueError> {
        self.send_value_inner(value, Wait::Forever)
    }

    /// [`send_value`](Self::send_value) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`send_value`](Self::send_value), and [`SendValueError::Full`] or
    /// [`SendValueError::Busy`] as for [`try_send`](Self::try_send).
    pub fn try_send_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendValueError> {
        self.send_value_inner(value, Wait::No)
    }

    /// [`send_value`](Self::send_value) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`send_value`](Self::send_value), and [`SendValueError::Timeout`].
    pub fn send_value_timeout<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendValueError> {
        self.send_value_inner(value, Wait::timeout(timeout))
    }

    /// Receives the next message and decodes it as a `T` in place; waits while the
    /// channel is empty.
    ///
    /// # Errors
    ///
    /// [`RecvValueError::Deserialize`] if the message is not a valid encoding of `T` (it
    /// is consumed); otherwise as for [`recv`](Channel::recv).
    pub fn recv_value<T: DeserializeOwned>(&self) -> Result<T, RecvValueError> {
        self.recv_value_inner(Wait::Forever)
    }

    /// [`recv_value`](Self::recv_value) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`recv_value`](Self::recv_value), and [`RecvValueError::Empty`] or
    /// [`RecvValueError::Busy`] as for [`try_recv`](Self::try_recv).
    pub fn try_recv_value<T: DeserializeOwned>(&self) -> Result<T, RecvValueError> {
        self.recv_value_inner(Wait::No)
    }

    /// [`recv_value`](Self::recv_value) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_value`](Self::recv_value), and [`RecvValueError::Timeout`].
    pub fn recv_value_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvValueError> {
        self.recv_value_inner(Wait::timeout(timeout))
    }
}
