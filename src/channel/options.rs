//! [`ChannelOptions`]: a channel's capacity and largest message, fixed at creation.
//!
//! # Crash windows
//!
//! None: a process-local value.

/// The smallest ring a channel has, in bytes (smaller capacities are rounded up to it).
pub const MIN_CAPACITY: usize = 64;

/// The largest ring a channel may have, in bytes (2 GiB): cursors are 32-bit positions
/// that wrap, and must stay more than a ring apart.
pub const MAX_CAPACITY: usize = 1 << 31;

/// Bytes of a record's header in the ring (its length and kind).
pub const RECORD_HEADER: usize = 8;

/// A [`Channel`](super::Channel)'s shape: the bytes its ring holds and the largest message
/// it accepts. Both are fixed at creation and stored in the channel's header.
///
/// - The capacity is rounded up to a power of two, at least [`MIN_CAPACITY`] (64 bytes),
///   at most [`MAX_CAPACITY`]: [`capacity_bytes`](Self::capacity_bytes) returns the
///   rounded value.
/// - Each message takes 8 bytes of header plus its length rounded up to a multiple of 8
///   in the ring (and a message that does not fit before the ring's end wastes the bytes
///   up to it). The ring holds at most `capacity - 8` bytes of records: senders keep the
///   word after the last record free for the next record's header.
/// - The largest message defaults to a quarter of the capacity, and may be set up to
///   `capacity / 2 - 8` ([`max_message`](Self::max_message)). That bound is what makes a
///   message of any accepted length fit into an empty ring wherever the cursors stand
///   (the module docs, "Layout"), so a sender of a large message never waits forever on a
///   channel that receivers empty.
///
/// # Examples
///
/// ```
/// use shmstate::ChannelOptions;
///
/// let o = ChannelOptions::new(1000);
/// assert_eq!(o.capacity_bytes(), 1024); // rounded up to a power of two
/// assert_eq!(o.max_message_len(), 256); // a quarter of it by default
/// assert_eq!(o, ChannelOptions::new(1024).max_message(256));
/// let o = o.max_message(500);
/// assert_eq!(o.max_message_len(), 500);
/// ```
///
/// Options compare by the channel they describe (rounded capacity and largest message):
/// `ChannelOptions::new(1000) == ChannelOptions::new(1024).max_message(256)`.
#[derive(Clone, Copy, Debug)]
pub struct ChannelOptions {
    /// The capacity as given (rounded when read).
    capacity: usize,
    /// The largest message, if set (else a quarter of the capacity).
    max_message: Option<usize>,
}

impl PartialEq for ChannelOptions {
    fn eq(&self, other: &Self) -> bool {
        (self.capacity_bytes(), self.max_message_len())
            == (other.capacity_bytes(), other.max_message_len())
    }
}

impl Eq for ChannelOptions {}

impl core::hash::Hash for ChannelOptions {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        (self.capacity_bytes(), self.max_message_len()).hash(state);
    }
}

impl ChannelOptions {
    /// A channel of `capacity_bytes` bytes (rounded up to a power of two, at least 64)
    /// whose largest message is a quarter of that.
    pub const fn new(capacity_bytes: usize) -> Self {
        ChannelOptions {
            capacity: capacity_bytes,
            max_message: None,
        }
    }

    /// Sets the largest message, in bytes (at most `capacity / 2 - 8`; a larger value is
    /// refused when the channel is created).
    pub const fn max_message(self, bytes: usize) -> Self {
        ChannelOptions {
            capacity: self.capacity,
            max_message: Some(bytes),
        }
    }

    /// The ring's size in bytes: the capacity asked for, rounded up to a power of two and
    /// to at least [`MIN_CAPACITY`]. A capacity whose rounding overflows `usize` reads as
    /// `usize::MAX` (and is refused when the channel is created).
    pub const fn capacity_bytes(&self) -> usize {
        let c = if self.capacity < MIN_CAPACITY {
            MIN_CAPACITY
        } else {
            self.capacity
        };
        match c.checked_next_power_of_two() {
            Some(p) => p,
            None => usize::MAX,
        }
    }

    /// The largest message, in bytes: as set, or a quarter of
    /// [`capacity_bytes`](Self::capacity_bytes).
    pub const fn max_message_len(&self) -> usize {
        match self.max_message {
            Some(m) => m,
            None => self.capacity_bytes() / 4,
        }
    }

    /// The options of a channel whose ring is `capacity` bytes and whose largest message
    /// is `max_message` (both already valid).
    pub(crate) const fn exact(capacity: usize, max_message: usize) -> Self {
        ChannelOptions {
            capacity,
            max_message: Some(max_message),
        }
    }

    /// Checks the options: `Ok((capacity, max_message))` or why they are refused.
    pub(crate) fn validate(&self) -> Result<(usize, usize), &'static str> {
        let cap = self.capacity_bytes();
        if cap > MAX_CAPACITY {
            return Err("capacity above 2 GiB");
        }
        let max = self.max_message_len();
        if max > largest_message(cap) {
            return Err("max_message above capacity / 2 - 8");
        }
        Ok((cap, max))
    }
}

/// The largest message a ring of `cap` bytes (a power of two, at least 64) may accept:
/// `cap / 2 - 8`, so that a record of it (8 bytes of header, the payload rounded up to
/// 8) takes at most half the ring.
pub(crate) const fn largest_message(cap: usize) -> usize {
    cap / 2 - RECORD_HEADER
}
