//! Closing and the channel's observable state: [`Channel::close`], lengths, counters.

use super::layout::{CLOSED, Channel, SENT_MASK, count, lost_count, pos};
use super::options::ChannelOptions;
use crate::sync::Ordering;

impl Channel {
    /// Closes the channel, from either side: senders fail with `Disconnected` at once
    /// (those waiting for room, and slots not yet committed) or within 5 ms (those
    /// queued behind another sender or a slot holder); receivers still
    /// get every message already sent, then `Disconnected`. Wakes every sleeper.
    /// Closing is final (a closed channel stays closed) and idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions, RecvError, SendError};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// ch.send(b"a")?;
    /// ch.close();
    /// assert!(ch.is_closed());
    /// assert_eq!(ch.send(b"b"), Err(SendError::Disconnected));
    /// let mut out = Vec::new();
    /// assert_eq!(ch.recv(&mut out), Ok(1));
    /// assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) {
        let h = &self.header;
        // The hint first (`closed_hint`): `try_` receives that find no message read
        // `tail` only now and then unless it is set, so whoever sees the bit below must
        // see it too. Relaxed: ordered before the bit by the bit's Release. A closer killed
        // between the two leaves a channel that is not closed with the hint set: `try_`
        // receives then read `tail` at every look, as if it were closed.
        h.config.closed.store(1, Ordering::Relaxed);
        // Release: pairs with the Acquire loads of `tail` that see the bit (the hint above
        // and the sends before happen before their reads). A read-modify-write on `tail`
        // itself: a commit's compare-exchange from a `tail` without the bit either comes
        // before this in `tail`'s modification order (and its message is in every `tail`
        // with the bit) or fails (`Disconnected`). Acquire: pairs with the Release
        // `fetch_or` of `SLEEPER` by a receiver about to sleep, whose `WAITING` flag then
        // comes before our wake (a receiver registering after us sees the bit).
        h.tail.tail.fetch_or(CLOSED, Ordering::AcqRel);
        // Every sleeper re-checks and sees the close (`wake_all` fences before its bump:
        // a sleeper that set `WAITING` after it checks `tail` after its SeqCst fence).
        crate::failpoint::hit(crate::failpoint::Point::ChannelCloseUnwoken);
        super::engine::wake_all(&h.wake.recv_wake);
        super::engine::wake_all(&h.wake.send_wake);
    }

    /// Whether the config line says the channel is closed: a hint on a line no operation
    /// writes per message (`close` sets it before the `CLOSED` bit of `tail`, which
    /// decides), for `try_` receives that read `tail` only now and then otherwise.
    #[inline]
    pub(super) fn closed_hint(&self) -> bool {
        // Relaxed: a caller that sees it reads `tail` (Acquire) to decide. One that reads
        // 0 answers as if it looked before the close: `close` stores the hint before the
        // bit (Release), so a thread that saw the bit, or anything after it, reads 1.
        self.header.config.closed.load(Ordering::Relaxed) != 0
    }

    /// Whether the channel is closed.
    #[inline]
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release read-modify-write in `close`.
        self.header.tail.tail.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Messages waiting to be received: a snapshot, approximate while others send or
    /// receive (and meaningless if the shared state is corrupt; never more than
    /// `capacity / 8`). It counts a message as soon as it is committed, a moment before
    /// receivers can take it (and a record whose sender died in that moment until it is
    /// skipped: module docs, "Crash windows").
    pub fn len(&self) -> usize {
        let h = &self.header;
        // Relaxed: a snapshot of two counters.
        let taken = count(h.head.head.load(Ordering::Relaxed));
        let sent = count(h.tail.tail.load(Ordering::Relaxed));
        // `sent` counts in 30 bits: compare modulo 2^30.
        ((sent.wrapping_sub(taken) & SENT_MASK) as usize).min(self.cap() as usize / 8)
    }

    /// Whether no message is waiting (a snapshot; a committed record counts as waiting,
    /// as for [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        let h = &self.header;
        // Relaxed: a snapshot.
        let head = pos(h.head.head.load(Ordering::Relaxed));
        pos(h.tail.tail.load(Ordering::Relaxed)) == head
    }

    /// Bytes of the ring in use: waiting messages with their headers and padding, and the
    /// message a receiver is reading (a snapshot, at most the capacity).
    pub fn bytes_used(&self) -> usize {
        let h = &self.header;
        // Relaxed: a snapshot.
        let free = pos(h.free.free.load(Ordering::Relaxed));
        let tail = pos(h.tail.tail.load(Ordering::Relaxed));
        (tail.wrapping_sub(free)).min(self.cap()) as usize
    }

    /// Messages lost with receivers killed after claiming a message and before finishing
    /// with it (module docs, "The loss rule"), counted once each by whoever repaired the
    /// claim (the next receiver, or a sender that found the ring full).
    /// A message whose sender died before publishing it is not counted: its send was
    /// never acknowledged.
    pub fn lost(&self) -> u64 {
        // Relaxed: a statistic.
        lost_count(self.header.head.lost.load(Ordering::Relaxed))
    }

    /// The channel's capacity (the ring's size in bytes) and largest message. The
    /// largest message is read from the shared header; a corrupt header reads as 0.
    pub fn options(&self) -> ChannelOptions {
        ChannelOptions::exact(
            self.cap() as usize,
            self.max_message().unwrap_or(0) as usize,
        )
    }
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("capacity", &self.cap())
            .field("max_message", &self.max_message())
            .field("len", &self.len())
            .field("bytes_used", &self.bytes_used())
            .field("closed", &self.is_closed())
            .field("lost", &self.lost())
            .finish()
    }
}
