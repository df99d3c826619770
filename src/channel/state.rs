//! Closing and the channel's observable state: [`Channel::close`], lengths, counters.

use super::barrier;
use super::engine::{Wait, lock_if_free_or_dead};
use super::layout::{Channel, FINAL, SENT_MASK, count, lost_count, pos};
use super::options::ChannelOptions;
use crate::sync::{Ordering, fence, spin_loop};

/// Issues the barrier for a finalisation of `ch`, unless this thread issued one for `ch`
/// before (after it saw `ch` closed: `closed` is never cleared): whether a barrier after
/// `closed` was issued. One barrier serves every later look at `busy` by this thread:
/// a holder's `busy = 1` after its point on the holder's CPU is followed there by a load
/// of `closed` that sees it. So a receiver that waits at a close a stopped holder keeps
/// from being final issues one barrier, not one a slice. The thread remembers one
/// channel (by address: one mapped where it was inherits it, harmless); under loom it
/// issues the barrier (a fence) every time.
fn barrier_after_close(ch: &Channel) -> bool {
    #[cfg(not(loom))]
    {
        std::thread_local! {
            static DONE: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
        }
        let key = core::ptr::from_ref(ch).addr();
        if DONE.try_with(core::cell::Cell::get) == Ok(key) {
            return true;
        }
        let issued = barrier::issue();
        if issued {
            let _ = DONE.try_with(|d| d.set(key));
        }
        issued
    }
    #[cfg(loom)]
    {
        let _ = ch;
        barrier::issue()
    }
}

/// How many looks (each a pause and a load) a finaliser gives a live send-lock holder to
/// clear `busy` (a few stores from its set): about 1-4 µs.
/// One under loom (no spin there).
const BUSY_SPINS: u32 = if cfg!(loom) {
    1
} else {
    crate::wait::SPIN_LIMIT
};

impl Channel {
    /// Closes the channel, from either side: senders fail with `Disconnected` at once
    /// (those waiting for room, and slots not yet committed) or within 5 ms (those
    /// queued behind another sender or a slot holder); receivers still
    /// get every message already sent, then `Disconnected`. Wakes every sleeper.
    /// Closing is final (a closed channel stays closed) and idempotent.
    ///
    /// It returns with the close final ([`is_closed`](Self::is_closed) says `true`),
    /// unless a sender is stopped (SIGSTOP) inside its commit meanwhile: then that sender
    /// makes it final when it is continued, or whoever recovers its send side if it is
    /// killed (module docs, "Closing"). A closer in a process that cannot use the
    /// process-wide barrier (module docs, "Waiting") cannot make it final while a
    /// process that can holds the send lock idle (a send side between its sends, a
    /// reservation not yet committed): that holder does when it lets the lock go without
    /// a send, or at a later send that sees the close, or a waiting receiver does (at
    /// once in a process that can use the barrier, else once the lock is free). A
    /// registered process's single send racing such a close may leave it not final until
    /// the next receive, send or close (module docs, "Closing").
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
        // SeqCst: the slow side of the barrier pattern with each sender's `busy`
        // (`finalise`), and ordered before the wakes below.
        h.config.closed.store(1, Ordering::SeqCst);
        crate::failpoint::hit(crate::failpoint::Point::ChannelCloseStored);
        // Make it final now if we can (a sender inside its commit makes it final itself,
        // at the end of its publication; a receiver that finds it not final tries again).
        self.finalise(Wait::Forever);
        // Every sleeper re-checks and sees the close (`wake_all` fences before its bump:
        // a sleeper that set `WAITING` after it sees `closed` after its own fence).
        crate::failpoint::hit(crate::failpoint::Point::ChannelCloseUnwoken);
        super::engine::wake_all(&h.wake.recv_wake);
        super::engine::wake_all(&h.wake.send_wake);
    }

    /// Makes the close final if it can ([`closed`](super::layout::ConfigLine::closed)
    /// set): records `end`, the last `tail`, once no sender can commit any more (module
    /// docs, "Closing"). Whether `end` is recorded (now or before). For the closer, and
    /// for a receiver that finds the channel closed and not final; bounded:
    ///
    /// 1. If the send lock is free or its holder is dead (`lock_if_free_or_dead`, which
    ///    for a `try_` call probes a holder at most once a millisecond), take it (the
    ///    repair of a dead holder clears its `busy`), record `tail`, unlock.
    /// 2. Else (a live holder), unless `wait` is `No`: fence, issue the barrier (once per
    ///    thread and channel: [`barrier_after_close`]), and spin briefly while `busy` is
    ///    1 (its holder is inside its commit: a few stores). Once `busy` reads an idle
    ///    value, `tail` is final: the holder either committed before (its Release store
    ///    of the idle value, which we read, orders its `tail`) or sees `closed` at its
    ///    check after setting `busy` and commits nothing (the barrier pattern: `closed`,
    ///    our fence and barrier and our load, against its store, compiler barrier and
    ///    load). Without the barrier (this process cannot issue it) only a holder whose
    ///    idle value is `IDLE_FENCING` qualifies: it fences at that check, which pairs
    ///    with our fence. If `busy` stays 1, the holder makes it final itself when it
    ///    clears it (its load of `closed` after that sees ours, by the same argument),
    ///    or, if it dies there, whoever recovers the lock does.
    /// 3. If no idle value qualified, look at the lock once more, as in 1 (after our
    ///    fence: it pairs with the fence a holder that lets the lock go without a send
    ///    makes after its unlock, `let_go`).
    #[cold]
    pub(super) fn finalise(&self, wait: Wait) -> bool {
        let h = &self.header;
        // Acquire: pairs with the Release compare-exchange that recorded it.
        if h.config.end.load(Ordering::Acquire) & FINAL != 0 {
            return true;
        }
        if self.finalise_if_free(wait) {
            return true;
        }
        if matches!(wait, Wait::No) {
            // A `try_` call issues no barrier (a syscall per call while a holder stays
            // busy); the closer, a waiting receiver or the holder itself makes it final.
            return false;
        }
        // The slow side of the pattern with the holder's `busy`: `closed` (which we saw
        // set, or stored), a fence, the barrier, then `busy`. Reading `closed` set before
        // the fence serves as storing it: a holder's load of `closed` after its own fence
        // (or after the barrier's point on its CPU) cannot read an older value than ours.
        fence(Ordering::SeqCst);
        let barrier = barrier_after_close(self);
        for _ in 0..BUSY_SPINS {
            // Acquire: pairs with the holder's Release store of its idle value: its
            // `tail` is ordered before our load.
            let b = h.tail.busy.load(Ordering::Acquire);
            // `IDLE_FENCING`: the holder fences before its check of `closed` (our fence
            // pairs with it); `IDLE`: only the barrier pairs with its compiler barrier.
            if b == barrier::IDLE_FENCING || (b == barrier::IDLE && barrier) {
                // Acquire: as the load of a send-lock taker.
                let tail = h.tail.tail.load(Ordering::Acquire);
                self.record_end(tail);
                return true;
            }
            spin_loop();
        }
        // The holder may have let the lock go since our first look without seeing
        // `closed` (a registered one, idle, to whom our fence alone promises nothing):
        // it fences after its unlock and then looks at `closed` (`let_go`), pairing with
        // our fence above; either it sees our `closed`, or we see the lock free now. As
        // `wait` allows: a dead holder's recovery keeps a timed caller's deadline.
        self.finalise_if_free(wait)
    }

    /// [`finalise`](Self::finalise) through the send lock: if it is free or its holder
    /// is dead (as `wait` allows: `lock_if_free_or_dead`), takes it, repairs what a dead
    /// holder left, and records `end`. Whether it did.
    fn finalise_if_free(&self, wait: Wait) -> bool {
        let Some((guard, died)) = lock_if_free_or_dead(&self.header.send.lock, wait) else {
            return false;
        };
        if died {
            self.repair_send(&guard);
        }
        self.finalise_locked();
        true
    }

    /// Under the send lock, the channel seen closed by its holder (no send commits any
    /// more: every later holder sees `closed` too): records `end` unless it is recorded.
    #[cold]
    pub(super) fn finalise_locked(&self) {
        // Acquire: pairs with the Release store of `tail` by the last sender (its unlock
        // orders it too, unless it died).
        let tail = self.header.tail.tail.load(Ordering::Acquire);
        self.record_end(tail);
    }

    /// Records `end = FINAL | tail` if no `end` is recorded, and then wakes every
    /// receiver (one asleep while the close was not final sees it).
    #[cold]
    fn record_end(&self, tail: u64) {
        let h = &self.header;
        // Acquire: as in `finalise`.
        let e = h.config.end.load(Ordering::Acquire);
        if e & FINAL != 0 {
            return;
        }
        // One compare-exchange, no loop: if another finaliser got there first, it
        // recorded the same `tail` (no send commits once a finaliser may record it).
        // Release: pairs with the receivers' Acquire loads of `end`: the records before
        // `end` (their headers) happen before their reads. Relaxed on failure: nothing to
        // read.
        if h.config
            .end
            .compare_exchange(e, tail | FINAL, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            super::engine::wake_all(&h.wake.recv_wake);
        }
    }

    /// Whether `close` has begun (`closed` is set: sends are refused; the close may not
    /// be final yet), from the config line (a line no operation writes per message).
    /// Relaxed: senders read it under the send lock or as the busy side of the barrier
    /// pattern, which order it; receivers read `end` (Acquire) to decide.
    #[inline]
    pub(super) fn close_begun(&self) -> bool {
        // Relaxed: see above.
        self.header.config.closed.load(Ordering::Relaxed) != 0
    }

    /// The `end` word if the close is final ([`FINAL`] set), else `None`.
    #[inline]
    pub(super) fn end(&self) -> Option<u64> {
        // Acquire: as in `finalise`.
        let e = self.header.config.end.load(Ordering::Acquire);
        (e & FINAL != 0).then_some(e & !FINAL)
    }

    /// Whether the channel is closed, and the close final: no send can succeed any more,
    /// and receivers get `Disconnected` once they have received every message sent
    /// before it (a `try_` receive that begins after this returned `true` too).
    ///
    /// The close is final when [`close`](Self::close) returns, unless a sender was
    /// stopped (SIGSTOP) inside its commit then: it becomes final when that sender
    /// finishes its commit (or is killed and its send lock recovered); or unless the
    /// closer's process cannot use the process-wide barrier while a process that can
    /// holds the send side between its sends (module docs, "Closing"). From the start of
    /// `close`, sends are refused; so a send may be refused a moment before this says
    /// `true`.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.close_begun() && self.end().is_some()
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
