//! The map's errors: one type per operation.

use crate::wait::Timeout;

/// Why a map operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The key is longer than the map's `key_max`.
    #[error("key of {len} bytes; this map holds keys of up to {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The map's `key_max`.
        max: usize,
    },
    /// The value is longer than the map's `value_max`.
    #[error("value of {len} bytes; this map holds values of up to {max}")]
    ValueTooLong {
        /// The value's length.
        len: usize,
        /// The map's `value_max`.
        max: usize,
    },
    /// Creation options out of range (see [`MapOptions`](super::MapOptions)).
    #[error("invalid map options: {reason}")]
    InvalidOptions {
        /// What is out of range.
        reason: &'static str,
    },
    /// The map's memory holds values no shmstate build writes (its header, or a stripe
    /// that stayed unreadable after a repair). Another process wrote garbage into it.
    #[error("the map's memory is corrupt: {reason}")]
    Corrupt {
        /// What was found.
        reason: &'static str,
    },
    /// The deadline of a timed call passed (nothing changed).
    #[error("timed out")]
    Timeout,
}

/// Why an insert failed. `K` and `V` are the key and value types (`Vec<u8>` for a
/// [`ByteMap`](super::ByteMap)): a full map hands both back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError<K = Vec<u8>, V = Vec<u8>> {
    /// No room for a new key: the map holds `capacity` entries, or the key's stripe is full
    /// (see the capacity rule in the [module docs](super)). The key and value are handed
    /// back.
    #[error("the map is full")]
    Full {
        /// The key that was not inserted.
        key: K,
        /// The value that was not inserted.
        value: V,
    },
    /// The key is longer than the map's `key_max`.
    #[error("key of {len} bytes; this map holds keys of up to {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The map's `key_max`.
        max: usize,
    },
    /// The value is longer than the map's `value_max`.
    #[error("value of {len} bytes; this map holds values of up to {max}")]
    ValueTooLong {
        /// The value's length.
        len: usize,
        /// The map's `value_max`.
        max: usize,
    },
    /// See [`MapError::Corrupt`].
    #[error("the map's memory is corrupt: {reason}")]
    Corrupt {
        /// What was found.
        reason: &'static str,
    },
    /// The deadline of a timed call passed (nothing changed).
    #[error("timed out")]
    Timeout,
}

/// Why an [`update`](super::ByteMap::update) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The closure asked to set an absent key and there is no room for it (see
    /// [`InsertError::Full`]).
    #[error("the map is full")]
    Full,
    /// The key is longer than the map's `key_max`.
    #[error("key of {len} bytes; this map holds keys of up to {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The map's `key_max`.
        max: usize,
    },
    /// The closure's new value is longer than the map's `value_max` (nothing changed).
    #[error("value of {len} bytes; this map holds values of up to {max}")]
    ValueTooLong {
        /// The value's length.
        len: usize,
        /// The map's `value_max`.
        max: usize,
    },
    /// See [`MapError::Corrupt`].
    #[error("the map's memory is corrupt: {reason}")]
    Corrupt {
        /// What was found.
        reason: &'static str,
    },
    /// The deadline of a timed call passed (nothing changed).
    #[error("timed out")]
    Timeout,
    /// The closure returned in a child process forked inside it: the key's stripe and
    /// its lock are the parent's, so nothing was written.
    #[error("the update's closure returned in a child forked inside it: nothing written")]
    ForkedInside,
}

/// Why an [`incr`](super::ByteMap::incr) failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IncrError {
    /// The key holds a value that is not 8 bytes long (an `i64`); it is left alone.
    #[error("the value is {len} bytes long, not an 8-byte integer")]
    NotAnInteger {
        /// The value's length.
        len: usize,
    },
    /// The key is absent and there is no room for it (see [`InsertError::Full`]).
    #[error("the map is full")]
    Full,
    /// The key is longer than the map's `key_max`.
    #[error("key of {len} bytes; this map holds keys of up to {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The map's `key_max`.
        max: usize,
    },
    /// The map's `value_max` is below 8 bytes: it cannot hold a counter.
    #[error("this map holds values of up to {max} bytes, an i64 needs 8")]
    ValueTooLong {
        /// The map's `value_max`.
        max: usize,
    },
    /// See [`MapError::Corrupt`].
    #[error("the map's memory is corrupt: {reason}")]
    Corrupt {
        /// What was found.
        reason: &'static str,
    },
    /// The deadline of a timed call passed (nothing changed).
    #[error("timed out")]
    Timeout,
}

/// A string longer than a [`FixedStr`](super::FixedStr) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("string of {len} bytes; this FixedStr holds up to {max}")]
pub struct TooLong {
    /// The string's length in bytes.
    pub len: usize,
    /// The most the type holds.
    pub max: usize,
}

impl<K, V> InsertError<K, V> {
    /// The same error with the handed-back key and value converted by `fk` and `fv`.
    pub fn map<K2, V2>(
        self,
        fk: impl FnOnce(K) -> K2,
        fv: impl FnOnce(V) -> V2,
    ) -> InsertError<K2, V2> {
        match self {
            InsertError::Full { key, value } => InsertError::Full {
                key: fk(key),
                value: fv(value),
            },
            InsertError::KeyTooLong { len, max } => InsertError::KeyTooLong { len, max },
            InsertError::ValueTooLong { len, max } => InsertError::ValueTooLong { len, max },
            InsertError::Corrupt { reason } => InsertError::Corrupt { reason },
            InsertError::Timeout => InsertError::Timeout,
        }
    }
}

impl<K, V> From<MapError> for InsertError<K, V> {
    fn from(e: MapError) -> Self {
        match e {
            MapError::KeyTooLong { len, max } => InsertError::KeyTooLong { len, max },
            MapError::ValueTooLong { len, max } => InsertError::ValueTooLong { len, max },
            MapError::InvalidOptions { reason } | MapError::Corrupt { reason } => {
                InsertError::Corrupt { reason }
            }
            MapError::Timeout => InsertError::Timeout,
        }
    }
}

impl From<MapError> for UpdateError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::KeyTooLong { len, max } => UpdateError::KeyTooLong { len, max },
            MapError::ValueTooLong { len, max } => UpdateError::ValueTooLong { len, max },
            MapError::InvalidOptions { reason } | MapError::Corrupt { reason } => {
                UpdateError::Corrupt { reason }
            }
            MapError::Timeout => UpdateError::Timeout,
        }
    }
}

impl From<MapError> for IncrError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::KeyTooLong { len, max } => IncrError::KeyTooLong { len, max },
            MapError::ValueTooLong { max, .. } => IncrError::ValueTooLong { max },
            MapError::InvalidOptions { reason } | MapError::Corrupt { reason } => {
                IncrError::Corrupt { reason }
            }
            MapError::Timeout => IncrError::Timeout,
        }
    }
}

impl From<Timeout> for MapError {
    fn from(_: Timeout) -> Self {
        MapError::Timeout
    }
}

impl<K, V> From<Timeout> for InsertError<K, V> {
    fn from(_: Timeout) -> Self {
        InsertError::Timeout
    }
}

impl From<Timeout> for UpdateError {
    fn from(_: Timeout) -> Self {
        UpdateError::Timeout
    }
}

impl From<Timeout> for IncrError {
    fn from(_: Timeout) -> Self {
        IncrError::Timeout
    }
}
