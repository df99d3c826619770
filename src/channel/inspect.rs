//! What a tool reads of a channel without writing a byte: [`ChannelSnapshot`], decoded
//! from the words of a read-only mapping (`shmstate inspect`).

use core::mem::offset_of;

use super::layout::{FINAL, Header, MAGIC, SENT_MASK, count, lost_count, pos};
use super::options::largest_message;

/// A channel's state as a tool sees it: each field a snapshot of one word (or two), so
/// approximate while processes send and receive, and whatever the bytes say — every
/// number is clamped to what a valid channel could hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSnapshot {
    /// The ring's size in bytes (from the object's length, not from shared memory).
    pub capacity: u32,
    /// The largest message, or `None` if the header is not a valid channel header (the
    /// channel's operations then report `Corrupt`).
    pub max_message: Option<u32>,
    /// Messages waiting to be received.
    pub waiting: u32,
    /// Bytes of the ring in use (waiting messages with their headers and padding, and a
    /// message a receiver is reading).
    pub bytes_used: u32,
    /// Whether `close` has begun: sends are refused. (The close may not be final yet, as
    /// [`Channel::is_closed`](crate::Channel::is_closed) says: a sender stopped inside
    /// its commit keeps receivers from `Disconnected` until it goes on.)
    pub closed: bool,
    /// Whether the close is final (`closed`, and its end recorded: what
    /// [`Channel::is_closed`](crate::Channel::is_closed) says). `closed` without it is a
    /// close in progress, or one a sender stopped inside its commit holds up: receivers
    /// wait at it instead of reporting `Disconnected`.
    pub close_final: bool,
    /// Messages lost with receivers killed mid-receive.
    pub lost: u64,
}

/// Decodes a channel whose ring is `ring_words` words long (the object's length, as
/// the region's directory records it) from `load`, which returns the object's word
/// `i` (header words first: the ring's words follow the header's), or `None` if
/// it cannot be read. `None` if `ring_words` is not a valid ring length or a word
/// cannot be read.
pub(crate) fn decode(
    ring_words: usize,
    load: impl Fn(usize) -> Option<u64>,
) -> Option<ChannelSnapshot> {
    let bytes = ring_words.checked_mul(8)?;
    if !ring_words.is_power_of_two()
        || !(super::options::MIN_CAPACITY..=super::options::MAX_CAPACITY).contains(&bytes)
    {
        return None;
    }
    let cap = bytes as u32;
    let word = |offset: usize| load(offset / 8);
    let shape = word(offset_of!(Header, config.shape))?;
    let max = pos(shape);
    let max_message =
        (count(shape) == MAGIC && max as usize <= largest_message(bytes)).then_some(max);
    let tail = word(offset_of!(Header, tail.tail))?;
    let head = word(offset_of!(Header, head.head))?;
    let free = word(offset_of!(Header, free.free))?;
    let lost = word(offset_of!(Header, head.lost))?;
    let closed = word(offset_of!(Header, config.closed))?;
    let end = word(offset_of!(Header, config.end))?;
    // As `Channel::len` and `Channel::bytes_used`: counts modulo 2^30, positions modulo
    // 2^32, clamped to what the ring can hold.
    let waiting = (count(tail).wrapping_sub(count(head)) & SENT_MASK).min(cap / 8);
    Some(ChannelSnapshot {
        capacity: cap,
        max_message,
        waiting,
        bytes_used: pos(tail).wrapping_sub(pos(free)).min(cap),
        closed: closed != 0,
        close_final: closed != 0 && end & FINAL != 0,
        lost: lost_count(lost),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, ChannelOptions};

    /// The object's word `i` (header and ring), as a read-only mapping would load it.
    fn word(ch: &Channel, i: usize) -> Option<u64> {
        let words = size_of_val(ch) / 8;
        (i < words).then(|| {
            let base = (ch as *const Channel).cast::<crate::sync::AtomicU64>();
            // SAFETY: `Channel` is `#[repr(C)]` atomics only (64-bit words and pairs of
            // 32-bit ones), 8-aligned, `words` words long; `i < words`, so the pointer
            // is in bounds, aligned, and names memory only ever accessed atomically.
            unsafe { &*base.add(i) }.load(crate::sync::Ordering::Relaxed)
        })
    }

    /// The decoder reads what the channel's own accessors say, and keeps garbage within
    /// the ring's bounds.
    #[test]
    fn decode_agrees_with_the_channel() {
        let ch = Channel::new(ChannelOptions::new(1024)).unwrap();
        ch.send(b"one").unwrap();
        ch.send(b"two").unwrap();
        let ring = 1024 / 8;
        let s = decode(ring, |i| word(&ch, i)).unwrap();
        assert_eq!(s.capacity, 1024);
        assert_eq!(s.max_message, Some(256));
        assert_eq!(s.waiting, 2);
        assert_eq!(s.bytes_used as usize, ch.bytes_used());
        assert!(!s.closed);
        assert!(!s.close_final);
        // A close begun and not final (its closer stopped after its first step).
        ch.hostile_words().0[2].store(1, crate::sync::Ordering::Relaxed);
        let s = decode(ring, |i| word(&ch, i)).unwrap();
        assert!(s.closed);
        assert!(!s.close_final);
        ch.close();
        let s = decode(ring, |i| word(&ch, i)).unwrap();
        assert!(s.closed);
        assert!(s.close_final);
        assert_eq!(decode(3, |_| Some(0)), None);
        let s = decode(ring, |_| Some(u64::MAX)).unwrap();
        assert_eq!(s.max_message, None);
        assert!(s.waiting <= 1024 / 8 && s.bytes_used <= 1024);
    }
}
