//! The receive side: [`Channel::recv`] and its forms (into a buffer, through a closure
//! on a local copy, `try_`, timed), and [`Channel::drain`].

use core::time::Duration;
use std::time::Instant;

use super::engine::{
    Fail, Found, SideGuard, Sleep, Wait, advance, lock_if_free_or_dead, lock_side, parse, wait_on,
    wake,
};
use super::error::{
    RecvError, RecvIntoError, RecvTimeoutError, RecvTimeoutIntoError, TryRecvError,
    TryRecvIntoError,
};
use super::layout::{Channel, LOSS_PENDING, count, cursor, pos};
use crate::failpoint::{self, Point};
use crate::sync::spin_loop;
use crate::sync::{AtomicU64, Ordering};

impl Fail {
    pub(super) fn recv(self) -> RecvError {
        match self {
            Fail::Disconnected => RecvError::Disconnected,
            _ => RecvError::Corrupt,
        }
    }

    pub(super) fn try_recv(self) -> TryRecvError {
        match self {
            Fail::WouldBlock => TryRecvError::Empty,
            Fail::Busy | Fail::Timeout => TryRecvError::Busy,
            Fail::Disconnected => TryRecvError::Disconnected,
            _ => TryRecvError::Corrupt,
        }
    }

    pub(super) fn recv_timeout(self) -> RecvTimeoutError {
        match self {
            Fail::Timeout | Fail::WouldBlock | Fail::Busy => RecvTimeoutError::Timeout,
            Fail::Disconnected => RecvTimeoutError::Disconnected,
            _ => RecvTimeoutError::Corrupt,
        }
    }

    pub(super) fn recv_into(self) -> RecvIntoError {
        match self {
            Fail::TooSmall { needed } => RecvIntoError::TooSmall { needed },
            Fail::Disconnected => RecvIntoError::Disconnected,
            _ => RecvIntoError::Corrupt,
        }
    }

    pub(super) fn try_recv_into(self) -> TryRecvIntoError {
        match self {
            Fail::TooSmall { needed } => TryRecvIntoError::TooSmall { needed },
            Fail::WouldBlock => TryRecvIntoError::Empty,
            Fail::Busy | Fail::Timeout => TryRecvIntoError::Busy,
            Fail::Disconnected => TryRecvIntoError::Disconnected,
            _ => TryRecvIntoError::Corrupt,
        }
    }

    pub(super) fn recv_timeout_into(self) -> RecvTimeoutIntoError {
        match self {
            Fail::TooSmall { needed } => RecvTimeoutIntoError::TooSmall { needed },
            Fail::Timeout | Fail::WouldBlock | Fail::Busy => RecvTimeoutIntoError::Timeout,
            Fail::Disconnected => RecvTimeoutIntoError::Disconnected,
            _ => RecvTimeoutIntoError::Corrupt,
        }
    }
}

/// A claimed message: the receive lock is held and `head` is past the message. Dropping
/// it (after the copy, or while a closure unwinds) releases the message's space
/// (`free = head`), unlocks and wakes senders.
struct Claim<'a> {
    ch: &'a Channel,
    guard: Option<SideGuard<'a>>,
    end: u32,
}

impl Drop for Claim<'_> {
    #[inline]
    fn drop(&mut self) {
        let h = &self.ch.header;
        if !self.guard.as_ref().is_some_and(SideGuard::is_held_here) {
            // A child forked under the claim: inside the caller's closure, its allocator
            // (a copy into a `Vec` allocates), or a signal handler. The claim is its
            // parent's thread's, which releases it. Storing the parent's old `end` here
            // could move `free` back behind the parent's later releases.
            return;
        }
        self.ch.release_claim(self.end);
        drop(self.guard.take());
        failpoint::hit(Point::ChannelRecvUnwoken);
        wake(&h.wake.send_wake, &h.config.fenced);
    }
}

/// The receivers' cursors as the receive-lock holder last read or wrote them: it is
/// their only writer, so it need not load them again.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursors {
    /// The `head` word.
    pub(super) head: u64,
    /// The position of `free`.
    pub(super) free: u32,
}

/// What [`Channel::peek`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Peek {
    /// A record looks published at `head` (its header word is not 0).
    Message,
    /// None is, and none will be: the channel is closed and empty (the close is final:
    /// `end` is recorded, and `head` is at it).
    Closed,
    /// None is, and `tail` is at `head`; the channel is closed, but the close is not
    /// final yet (`end` not recorded: a finaliser may record it, [`Channel::finalise`]).
    Closing,
    /// None is, yet.
    Empty,
    /// None is, but `tail` is past `head`: a sender committed a record and has not stored
    /// its header yet (it is about to, or it was stopped or killed in between).
    InFlight,
    /// None is, and `tail` is not a valid position past `head` (more than a ring ahead,
    /// or not 8-aligned). From a held side's own `head`, the channel is corrupt; from a
    /// snapshot of the shared `head`, the receive lock confirms it
    /// ([`Channel::confirm_corrupt`]).
    Corrupt,
}

impl Peek {
    /// What a `drain` of up to `max` messages returns at once after this look, if it
    /// takes nothing: `Disconnected` for a closed, empty channel, `0` if none is waiting
    /// or `max` is 0.
    #[inline]
    pub(super) fn ends_drain(self, max: usize) -> Option<Result<usize, TryRecvError>> {
        match self {
            Peek::Closed => Some(Err(TryRecvError::Disconnected)),
            Peek::Corrupt => Some(Err(TryRecvError::Corrupt)),
            Peek::Empty | Peek::InFlight | Peek::Closing => Some(Ok(0)),
            Peek::Message if max == 0 => Some(Ok(0)),
            Peek::Message => None,
        }
    }

    /// What a `tail` word `t` says to a receiver at position `head` that found no header
    /// there, in a ring of `cap` bytes, with `closed` the config line's word and `end` the
    /// recorded `end` (both read before `t`).
    #[inline]
    fn of(t: u64, head: u32, cap: u32, closed: bool, end: Option<u64>) -> Peek {
        let ahead = pos(t).wrapping_sub(head);
        if ahead > cap || !ahead.is_multiple_of(8) {
            return Peek::Corrupt;
        }
        match end {
            // Once `end` is recorded no send commits: a `tail` read after it that differs
            // is a peer's garbage (in either word).
            Some(e) if e != t => Peek::Corrupt,
            _ if ahead != 0 => Peek::InFlight,
            Some(_) => Peek::Closed,
            None if closed => Peek::Closing,
            None => Peek::Empty,
        }
    }
}

/// How long a waiting receiver spins (looks, each a pause and a few loads) before it
/// registers and sleeps: [`PEER_SPIN_NS`](crate::wait::PEER_SPIN_NS), 10 µs, on any
/// machine (counted in pauses measured once per process, `wait::spins_for`; no spin under
/// loom). That outlasts a peer's futex wake-up, so that two processes that answer each
/// other (request and reply) stop sleeping after one exchange instead of waking each
/// other through the kernel at every message (BENCHMARKS.md, "Publication by a store
/// measured, and a longer receiver spin", and "Spins measured in time": a count of pauses
/// that lasted 5 µs on one machine lasted 2.5 µs on another, where every blocking round
/// trip slept). A receiver that does sleep has spent about 10 µs of CPU first.
pub(super) const RECV_SPIN_NS: u32 = crate::wait::PEER_SPIN_NS;

/// How many looks (each a pause and a load) a receiver that found a record committed
/// without its header gives its sender to store it, before it probes the sender (or
/// sleeps): the header is one store after the commit, so this is only for a sender
/// preempted there.
const HEADER_SPINS: u32 = crate::wait::SPIN_LIMIT / 4;

/// A `try_` receive that finds no header reads `tail` (for a record committed without
/// its header, or garbage in `tail`) only if the channel's config line says it is
/// closed, or once in this many such looks at the channel, or at the first such look
/// after a tick of the coarse clock ([`Polls`](super::engine::Polls)): a held side counts
/// its own calls, a thread without a side its looks at each channel ([`tail_poll_due`]).
pub(super) const TAIL_POLLS: u32 = 64;

/// Whether this thread's look at `ch` that found no header should read `tail`: one in
/// [`TAIL_POLLS`] of the thread's looks at `ch`, and one soon after a tick of the
/// coarse clock, counted per channel (by address) as [`engine::due`](super::engine::due)
/// counts.
///
/// Under loom one look in 2, counted per thread and per execution (a model's replays
/// must not depend on counts kept across them), the first one not due, so that the
/// models reach both answers.
#[inline]
fn tail_poll_due(ch: &Channel) -> bool {
    #[cfg(not(loom))]
    {
        use super::engine::{Looks, due, no_looks};
        std::thread_local! {
            static LOOKS: Looks = const { no_looks() };
        }
        due(&LOOKS, core::ptr::from_ref(ch).addr(), TAIL_POLLS)
    }
    #[cfg(loom)]
    {
        let _ = ch;
        loom::thread_local! {
            static LOOKS: core::cell::Cell<u32> = core::cell::Cell::new(0);
        }
        LOOKS.with(|c| {
            let n = c.get() + 1;
            c.set(n);
            n.is_multiple_of(2)
        })
    }
}

/// Messages up to this long are copied to the stack for the closure forms.
const SMALL: usize = 256;

#[cfg(not(loom))]
std::thread_local! {
    /// This thread's buffer for longer messages, reused across calls.
    static BUFFER: core::cell::Cell<Vec<u8>> = const { core::cell::Cell::new(Vec::new()) };
}

/// A process-local copy of one message, for the closure forms (`recv_with`, `drain`,
/// `recv_value`): no reference to ring bytes is ever handed out. Short messages go to a
/// stack buffer; longer ones to this thread's reused buffer (taken for the copy's life,
/// so that a nested call gets its own).
pub(crate) struct Scratch {
    small: [u8; SMALL],
    big: Vec<u8>,
    len: usize,
}

impl Scratch {
    #[inline]
    pub(crate) fn new() -> Self {
        Scratch {
            small: [0; SMALL],
            big: Vec::new(),
            len: 0,
        }
    }

    /// Copies the claimed message at `at` (`len` bytes) in (the caller owns the bytes).
    #[inline]
    pub(crate) fn fill(&mut self, ch: &Channel, at: usize, len: usize) {
        self.len = len;
        if len <= SMALL {
            ch.read_bytes(at, &mut self.small[..len]);
            return;
        }
        #[cfg(not(loom))]
        if self.big.capacity() == 0 {
            self.big = BUFFER.try_with(core::cell::Cell::take).unwrap_or_default();
        }
        self.big.clear();
        self.big.resize(len, 0);
        ch.read_bytes(at, &mut self.big);
    }

    /// The copy.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len <= SMALL {
            &self.small[..self.len]
        } else {
            &self.big[..self.len]
        }
    }
}

impl Drop for Scratch {
    #[inline]
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if self.big.capacity() > 0 {
            let mine = core::mem::take(&mut self.big);
            // Keep the larger of ours and one a nested call may have put back meanwhile.
            let _ = BUFFER.try_with(|b| {
                let other = b.take();
                b.set(if other.capacity() > mine.capacity() {
                    other
                } else {
                    mine
                });
            });
        }
    }
}

/// One message of a [`Channel::drain`] batch, claimed: dropping it releases the message's
/// space (`free = end`); the receive lock stays held for the rest of the batch.
struct Release<'a> {
    ch: &'a Channel,
    end: u32,
    /// The thread that claimed it: a child forked inside the caller's closure (whose
    /// thread has another TID) releases nothing, even once it holds a side itself.
    owner: u32,
}

impl Release<'_> {
    /// Releases the message; false (releasing nothing) in a child forked inside the
    /// caller's closure, as in `Claim::drop`.
    #[inline]
    fn release(&self) -> bool {
        if crate::owner::current() != self.owner
            || !self.ch.header.recv.lock.is_owned_by_current_thread()
        {
            return false;
        }
        // Release: as in `Claim::drop`.
        self.ch
            .header
            .free
            .free
            .store(u64::from(self.end), Ordering::Release);
        true
    }

    /// Releases the message after the closure returned: whether the batch may go on
    /// (false in a forked child, which must claim nothing more: the lock is its parent's
    /// thread's).
    #[inline]
    fn done(self) -> bool {
        let mine = self.release();
        core::mem::forget(self);
        mine
    }
}

impl Drop for Release<'_> {
    /// The release when the closure unwinds.
    fn drop(&mut self) {
        self.release();
    }
}

/// A [`Channel::drain`] batch: holds the receive lock; dropping it unlocks and, if a
/// message was released, wakes senders.
struct DrainBatch<'a> {
    ch: &'a Channel,
    guard: Option<SideGuard<'a>>,
    released: bool,
}

impl Drop for DrainBatch<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if self.released {
            wake(
                &self.ch.header.wake.send_wake,
                &self.ch.header.config.fenced,
            );
        }
    }
}

impl Channel {
    /// Under the receive lock, a message claimed up to `end`: releases its space.
    #[inline]
    pub(super) fn release_claim(&self, end: u32) {
        // Release: pairs with the senders' Acquire load of `free`: our reads of the
        // message happen before a sender overwrites its bytes.
        self.header
            .free
            .free
            .store(u64::from(end), Ordering::Release);
        failpoint::hit(Point::ChannelRecvFreed);
    }

    /// Takes the receive lock as `wait` allows and repairs what a receiver killed in its
    /// claim left: `head != free` means it claimed a message and died before releasing
    /// it. The message is lost (counted in [`lost`](Self::lost)); its space is released.
    /// Returns the lock and the receivers' cursors as it left them ([`Cursors`]).
    #[inline]
    pub(super) fn lock_recv(&self, wait: Wait) -> Result<(SideGuard<'_>, Cursors), Fail> {
        let (guard, died) = lock_side(&self.header.recv.lock, wait)?;
        let (_, cursors) = self.recv_locked()?;
        if died {
            guard.repaired();
        }
        Ok((guard, cursors))
    }

    /// Under the receive lock, just taken: the repair of a dead receiver's claim, or the
    /// end of a repair whose repairer died. Whether it repaired a claim, and the cursors
    /// after it.
    #[inline]
    fn recv_locked(&self) -> Result<(bool, Cursors), Fail> {
        let h = &self.header;
        // Acquire: pairs with the Release stores of `head` and `free` by earlier holders,
        // a dead one included (it never unlocked).
        let head = h.head.head.load(Ordering::Acquire);
        let free = h.free.free.load(Ordering::Acquire);
        if pos(head) != pos(free) {
            self.repair_claim(head, free)?;
            // The repair released the claim: `free` is `head` now.
            return Ok((
                true,
                Cursors {
                    head,
                    free: pos(head),
                },
            ));
        }
        // Nothing claimed: a bit left set is a finished repair's (its repairer died between
        // its release and its clear), or a peer's garbage. Cleared before any new claim.
        finish_repair(&h.head.lost);
        Ok((
            false,
            Cursors {
                head,
                free: pos(free),
            },
        ))
    }

    /// Repairs a dead receiver's claim from outside the receive path: for a sender that
    /// found the ring full, or a receiver that found no message, while `head != free`
    /// (some receiver holds a claim). Takes the receive lock only if it is free or its
    /// holder is dead (a live holder releases its claim itself). Returns whether it
    /// released anything. Without this, the claim of the *last* message by a receiver
    /// that died would never be repaired: receivers take the lock only for a message.
    #[cold]
    pub(crate) fn repair_dead_claim(&self, wait: Wait) -> Result<bool, Fail> {
        let h = &self.header;
        if !self.claim_outstanding() {
            return Ok(false);
        }
        let Some((guard, died)) = lock_if_free_or_dead(&h.recv.lock, wait) else {
            return Ok(false);
        };
        let (repaired, _) = self.recv_locked()?;
        if died {
            guard.repaired();
        }
        Ok(repaired)
    }

    /// Whether a receiver holds a claim (`head != free`) at a glance: a snapshot that
    /// only decides whether to look for a dead one; the check under the lock decides.
    #[inline]
    pub(crate) fn claim_outstanding(&self) -> bool {
        let h = &self.header;
        // Relaxed: a snapshot (above).
        pos(h.head.head.load(Ordering::Relaxed)) != pos(h.free.free.load(Ordering::Relaxed))
    }

    #[cold]
    fn repair_claim(&self, head: u64, free: u64) -> Result<(), Fail> {
        let h = &self.header;
        // Relaxed: only the snapshot of `tail` bounds the check.
        let tail = pos(h.tail.tail.load(Ordering::Relaxed));
        let (head, free) = (pos(head), pos(free));
        if !free.is_multiple_of(8)
            || !head.is_multiple_of(8)
            || tail.wrapping_sub(free) > self.cap()
            || head.wrapping_sub(free) > tail.wrapping_sub(free)
        {
            return Err(Fail::Corrupt);
        }
        // A receiver killed while it stepped over a `SKIP` record (between its stores of
        // `head` and `free`) lost no message.
        if !self.is_skip(head, free) {
            count_loss(&h.head.lost);
            failpoint::hit(Point::ChannelRepairCounted);
        }
        // Count first, then release, then clear the bit: a repairer killed after counting
        // leaves the bit to the next holder (which takes the lock from it), whose
        // `count_loss` then counts nothing, or (after the release) whose `recv_locked`
        // clears it. Release: as in `Claim::drop`.
        h.free.free.store(u64::from(head), Ordering::Release);
        failpoint::hit(Point::ChannelRepairFreed);
        finish_repair(&h.head.lost);
        super::engine::wake_all(&h.wake.send_wake);
        Ok(())
    }

    /// Under the receive lock, at a claim left by a dead receiver (`free != head`):
    /// whether the claimed bytes `[free, head)` are a run of `SKIP` records (with any
    /// padding), which the dead receiver was stepping over.
    #[cold]
    fn is_skip(&self, head: u32, free: u32) -> bool {
        let cap = self.cap();
        // `max` as large as a record can be: only a `SKIP` record's span matters here.
        let max = super::options::largest_message(cap as usize) as u32;
        let mut at = free;
        // Each step moves `at` forward by a record, never past `head` (`parse` checks
        // it against `head`): at most a ring's worth of steps.
        while at != head {
            // Relaxed: the claim's records were published before the dead receiver's
            // Acquire loads of their headers, which are ordered before its Release store
            // of `head`, which our Acquire load of `head` read; nobody writes claimed
            // bytes.
            let first = self.word_at(at & (cap - 1)).load(Ordering::Relaxed);
            match parse(self, at, first, head, max) {
                Some(f) if f.skip => at = f.end,
                _ => return false,
            }
        }
        true
    }

    /// [`peek`](Self::peek) for a `try_` receive that holds no side: it reads `tail` (the
    /// senders' line, which every commit writes) only if the config line says the
    /// channel is closed, or once in [`TAIL_POLLS`] of this thread's looks at this
    /// channel that find no header and at its first such look after a tick of the coarse
    /// clock ([`tail_poll_due`]); otherwise no header reads as
    /// [`Peek::Empty`]. A receiver that polls `tail` keeps its line moving between the two
    /// cores at every message, as the held side avoids the same way (its count is its
    /// own, this one the thread's for the channel).
    #[inline]
    pub(super) fn try_peek(&self) -> Peek {
        // Relaxed: as in `peek`.
        let head = pos(self.header.head.head.load(Ordering::Relaxed));
        if self.has_header(head) {
            return Peek::Message;
        }
        if self.close_begun() || tail_poll_due(self) {
            self.peek_at(head)
        } else {
            Peek::Empty
        }
    }

    /// Whether a message looks published at `head`, or the channel is closed and
    /// empty (snapshots, for waits and the lock-free emptiness check).
    ///
    /// `Closed` comes from the recorded `end` and a load of `tail` at it and at `head`:
    /// `end` is recorded only once no send can commit (module docs, "Closing"), so every
    /// send acknowledged `Ok` is before it, and all of them are claimed when `head` has
    /// reached it.
    #[inline]
    pub(super) fn peek(&self) -> Peek {
        // Relaxed: a snapshot on the receivers' own line; the check under the lock decides.
        let head = pos(self.header.head.head.load(Ordering::Relaxed));
        self.peek_at(head)
    }

    /// [`peek`](Self::peek) for a receiver at position `head`: a held receive side's own
    /// (it trusts no other copy, so that a peer's write of `head` cannot keep it looking
    /// at a position it is not at).
    #[inline]
    pub(super) fn peek_at(&self, head: u32) -> Peek {
        if self.has_header(head) {
            return Peek::Message;
        }
        let closed = self.close_begun();
        let end = if closed { self.end() } else { None };
        // Acquire: pairs with the senders' Release store of `tail`. After `end`: once it
        // is recorded, `tail` is final.
        let t = self.header.tail.tail.load(Ordering::Acquire);
        Peek::of(t, head, self.cap(), closed, end)
    }

    /// A look from a snapshot of the shared `head` said [`Peek::Corrupt`]: confirms it
    /// under the receive lock, with the cursors as their last writer left them and a
    /// fresh `tail`. `Err(Corrupt)` if `tail` is not within a ring of `free`, at or past
    /// `head`, or differs from a recorded `end`.
    #[cold]
    pub(super) fn confirm_corrupt(&self, wait: Wait) -> Result<(), Fail> {
        let (_guard, c) = self.lock_recv(wait)?;
        // As in `peek_at`: `end` first, then `tail`, which must be at it once recorded.
        let end = if self.close_begun() { self.end() } else { None };
        // Acquire: as in `peek_at`.
        let t = self.header.tail.tail.load(Ordering::Acquire);
        let tail = pos(t);
        let used = tail.wrapping_sub(c.free);
        if used > self.cap()
            || !tail.is_multiple_of(8)
            || pos(c.head).wrapping_sub(c.free) > used
            || end.is_some_and(|e| e != t)
        {
            return Err(Fail::Corrupt);
        }
        Ok(())
    }

    /// Whether the record at `head` is published: its header word is not 0. The only
    /// load a waiting receiver makes: it reads no line a sender writes per message other
    /// than the one the sender's next record goes to.
    ///
    /// A header seen here starts the transfer of the record's next cache line, if the
    /// record runs into it ([`prefetch_record`](Self::prefetch_record)).
    #[inline]
    pub(super) fn has_header(&self, head: u32) -> bool {
        let at = head & (self.cap() - 1);
        // Acquire: pairs with the sender's Release store of the header: the record's
        // payload (and the zeroed word after it) happen before the receiver's reads.
        let first = self.word_at(at).load(Ordering::Acquire);
        if first == 0 {
            return false;
        }
        self.prefetch_record(at, first);
        true
    }

    /// A receiver has just seen the header `first` at ring offset `at`: if the record
    /// runs past the header's cache line, asks the CPU to start fetching the next line
    /// now. The receiver reads that line only after it has parsed the header, which
    /// would make it a second transfer from the sender's core after the header's. A
    /// 64 B message's record is 72 bytes and spans two lines. A hint only: whatever
    /// `first` holds, the line is one of the ring's, and nothing is read or written.
    #[inline(always)]
    fn prefetch_record(&self, at: u32, first: u64) {
        #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
        {
            let next_line = u64::from(at | 63) + 1;
            if u64::from(at) + 8 + u64::from(pos(first)) > next_line {
                // `next_line` is at most `cap` (a multiple of 64): masked into the ring.
                let line = self.word_at(next_line as u32 & (self.cap() - 1)).as_ptr();
                // SAFETY: `prefetcht0` is part of SSE, which every x86-64 CPU has; it is a
                // hint that reads no memory into the program and never faults, and `line`
                // points into the mapped ring anyway.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        line.cast(),
                    );
                }
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom), not(miri))))]
        let _ = (at, first);
    }

    /// A receiver at `head` found a record committed without its header
    /// ([`Peek::InFlight`]): gives its sender a brief spin to store it (it is one store
    /// away), then, if it is still missing, repairs it if the sender died
    /// ([`repair_dead_sender`](Self::repair_dead_sender)). Whether the header is there
    /// now.
    #[cold]
    pub(super) fn await_header(&self, head: u32, wait: Wait) -> Result<bool, Fail> {
        for _ in 0..HEADER_SPINS {
            if self.has_header(head) {
                return Ok(true);
            }
            spin_loop();
        }
        // Still committed without its header? (Another receiver may have taken it
        // meanwhile, and `head` moved on: no lock to take, no process to probe.)
        if self.peek_at(head) != Peek::InFlight {
            return Ok(self.has_header(head));
        }
        self.repair_dead_sender(wait)?;
        Ok(self.has_header(head))
    }

    /// What a receiver at `head` about to sleep (after its `WAITING` flag, its fence and
    /// its barrier: `wait_on`) does: whether to look again instead of sleeping (a record
    /// is published, or the channel is closed and empty).
    ///
    /// A record committed without its header gets a brief spin first (its sender is one
    /// store away): a sleep costs two syscalls. A close not yet final sleeps a slice:
    /// whoever makes it final wakes every receiver.
    #[cold]
    pub(super) fn settle(&self, head: u32) -> bool {
        match self.peek_at(head) {
            Peek::Closed | Peek::Message => true,
            // Sleep a slice, then look again (and confirm it): never a loop without a
            // sleep, whatever a peer writes.
            Peek::Empty | Peek::Corrupt | Peek::Closing => false,
            Peek::InFlight => (0..HEADER_SPINS).any(|_| {
                spin_loop();
                self.has_header(head)
            }),
        }
    }

    /// Under the receive lock, with the cursors as this holder left them (`c`, kept up to
    /// date): the message at `head`, `Ok(None)` if none is published, `Err(Corrupt)` if
    /// the cursors or the record are invalid. Steps over `SKIP` records first: a run of
    /// them is claimed and released at once (one store of each cursor, and senders
    /// woken). The walk ends within a ring: every record must end below `free + cap`.
    #[inline(always)]
    pub(super) fn next_message(
        &self,
        c: &mut Cursors,
        max: u32,
    ) -> Result<Option<(u64, Found)>, Fail> {
        let cap = self.cap();
        let Cursors { head, free } = *c;
        if !pos(head).is_multiple_of(8) || pos(head).wrapping_sub(free) > cap {
            return Err(Fail::Corrupt);
        }
        // Records lie below `free + cap` (a sender's room).
        let bound = free.wrapping_add(cap);
        // The run of `SKIP` records at `head`: where it ends, and how many.
        let mut at = pos(head);
        let mut skips = 0u32;
        let found = loop {
            // Acquire: as in `has_header`.
            let first = self.word_at(at & (cap - 1)).load(Ordering::Acquire);
            if first == 0 {
                break None;
            }
            // The record's next line is on its way while this one is parsed.
            self.prefetch_record(at & (cap - 1), first);
            match parse(self, at, first, bound, max) {
                // Senders keep the word after their record free, so no record ends at
                // `free + cap`: garbage (a run of `SKIP`s as long as the ring, say).
                Some(f) if f.end == bound => return Err(Fail::Corrupt),
                Some(f) if f.skip => {
                    at = f.end;
                    skips = skips.wrapping_add(1);
                }
                Some(f) => break Some(f),
                // After a run of `SKIP`s, step over them first: the next look meets the
                // same bytes and reports them.
                None if skips > 0 => break None,
                None => return Err(Fail::Corrupt),
            }
        };
        if skips > 0 {
            self.step_over(c, head, at, skips);
        }
        Ok(found.map(|f| (c.head, f)))
    }

    /// Under the receive lock: claims and releases at once the run of `n` `SKIP` records
    /// at `head` that ends at `end`, and wakes senders (their space is free).
    #[cold]
    fn step_over(&self, c: &mut Cursors, head: u64, end: u32, n: u32) {
        let h = &self.header;
        let head = cursor(count(head).wrapping_add(n), end);
        // Release: as a claim in `recv_inner`.
        h.head.head.store(head, Ordering::Release);
        failpoint::hit(Point::ChannelRecvClaimed);
        self.release_claim(end);
        *c = Cursors { head, free: end };
        wake(&h.wake.send_wake, &h.config.fenced);
    }

    /// Receives one message as `wait` allows: claims it, then runs `take` on its ring
    /// offset and length (the caller owns those bytes until `take` returns), then releases
    /// it. `limit`: a message longer than this is left in the channel (`TooSmall`).
    #[inline]
    pub(crate) fn recv_inner<R>(
        &self,
        wait: Wait,
        limit: Option<usize>,
        take: impl FnOnce(&Channel, usize, usize) -> R,
    ) -> Result<R, Fail> {
        let max = self.max_message().ok_or(Fail::Corrupt)?;
        let h = &self.header;
        let mut sleep = Sleep::new();
        let mut awaited = false;
        let mut deadline_looked = false;
        // Whether this call may try to make a close final: once, then again after each
        // wait (so that a peer clearing `end` cannot keep it looping).
        let mut may_finalise = true;
        loop {
            // Empty at a glance: no lock, no write to a shared line (and for a `try_`
            // call, `tail` read only now and then).
            let mut look = if matches!(wait, Wait::No) {
                self.try_peek()
            } else {
                self.peek()
            };
            if look == Peek::Message {
                let (guard, mut cursors) = self.lock_recv(wait)?;
                if let Some((head, found)) = self.next_message(&mut cursors, max)? {
                    if let Some(l) = limit
                        && found.len as usize > l
                    {
                        return Err(Fail::TooSmall {
                            needed: found.len as usize,
                        });
                    }
                    // The claim. Release: pairs with the Acquire load in `lock_recv` of
                    // the receiver that recovers the lock if we die now.
                    h.head
                        .head
                        .store(advance(head, found.end), Ordering::Release);
                    failpoint::hit(Point::ChannelRecvClaimed);
                    let claim = Claim {
                        ch: self,
                        guard: Some(guard),
                        end: found.end,
                    };
                    let r = take(self, found.at as usize, found.len as usize);
                    drop(claim);
                    return Ok(r);
                }
                drop(guard);
                look = self.peek();
            }
            match look {
                Peek::Closed => return Err(Fail::Disconnected),
                Peek::Corrupt => self.confirm_corrupt(wait)?,
                Peek::Closing if may_finalise => {
                    may_finalise = false;
                    if self.finalise(wait) {
                        continue;
                    }
                }
                // A `try_` call gives a record committed without its header one chance
                // (a brief spin, then the repair if its sender died), then reports
                // `Empty`: once per call, so that a peer flipping the header cannot keep
                // it looping.
                Peek::InFlight if matches!(wait, Wait::No) && !awaited => {
                    awaited = true;
                    // Relaxed: as in `peek`.
                    if self.await_header(pos(h.head.head.load(Ordering::Relaxed)), wait)? {
                        continue;
                    }
                }
                _ => {}
            }
            if sleep.started() {
                // Waited once already and still no message: a receiver that died holding
                // a claim of the last message would keep its space forever.
                self.repair_dead_claim(wait)?;
                // And a sender that died between its commit and its header would keep
                // every receiver waiting for the header.
                if look == Peek::InFlight {
                    self.repair_dead_sender(wait)?;
                }
            }
            let waited = wait_on(
                &h.wake.recv_wake,
                &h.config.fenced,
                wait,
                &mut sleep,
                RECV_SPIN_NS,
                // Relaxed: as in `peek`.
                || self.has_header(pos(h.head.head.load(Ordering::Relaxed))),
                // Relaxed: a snapshot on the receivers' own line; a stale (smaller) `head`
                // only reads as a record, and the check under the lock decides.
                || self.settle(pos(h.head.head.load(Ordering::Relaxed))),
            );
            // Again after a wait; not after the deadline (its one look below makes no
            // barrier: the call keeps its bound).
            may_finalise = waited.is_ok();
            if waited == Err(Fail::Timeout) && !deadline_looked {
                // One look at the deadline: a record committed without its header whose
                // sender died is repaired (a deadline shorter than the first wait would
                // otherwise never look for it, and a channel used only through such
                // receives would never get past it), and a message published meanwhile
                // is taken. Bounded by the passed deadline: the send lock is taken only
                // if it is free, or after one probe finds its holder dead.
                deadline_looked = true;
                match self.peek() {
                    Peek::InFlight => self.repair_dead_sender(wait)?,
                    // And a close not yet final (its closer died, or a sender was
                    // inside its commit), through the send lock only: no barrier past
                    // the deadline.
                    Peek::Closing => {
                        self.finalise(Wait::No);
                    }
                    _ => {}
                }
                continue;
            }
            waited?;
        }
    }

    /// Copies the claimed message at `at` (`len` bytes) into `out`, replacing its
    /// contents.
    pub(super) fn copy_out(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.resize(len, 0);
        // `at + len <= cap` (`parse` checked the record lies in the ring), and this thread
        // owns the bytes: the message is claimed and the receive lock held.
        self.read_bytes(at, out);
    }

    /// Receives the next message into `out` (cleared first), waiting while the channel is
    /// empty. Returns its length.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the channel is closed and every message sent
    /// before the close has been received; [`RecvError::Corrupt`] if the shared state is
    /// invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// ch.send(b"one")?;
    /// ch.send(b"two")?;
    /// let mut out = Vec::new();
    /// assert_eq!(ch.recv(&mut out)?, 3);
    /// assert_eq!(out, b"one");
    /// ch.recv(&mut out)?;
    /// assert_eq!(out, b"two");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self, out: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_inner(Wait::Forever, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::recv)
    }

    /// [`recv`](Self::recv) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if no message is waiting; [`TryRecvError::Busy`] if another
    /// receiver held the receive side through a brief spin; otherwise as for
    /// [`recv`](Self::recv). A `try_` call that finds the receive side held by a dead
    /// process recovers it, which can take up to 5 ms (the lock's recovery, or another
    /// thread's recovery that got there first); it asks whether the holder is dead once
    /// per millisecond of this thread's `try_` calls that find it held (module docs,
    /// "Probes of a `try_` call"): until then, a dead holder reads as `Busy`. A call that
    /// finds a record whose sender died between its commit and its header recovers the
    /// send side the same way (up to 5 ms, probing its holder once per millisecond of the
    /// thread's probes of that lock; until then it reports `Empty`). Such a record, and
    /// garbage in the senders' `tail` word, show only to a `try_` receive that reads
    /// `tail`: one in 64 of the thread's looks at this channel that find no message, and
    /// its first such look after a tick of the coarse clock (1-10 ms), or every one once
    /// `close` has begun (a polling receiver that read `tail` every time would move its
    /// cache line between the cores at every message); the others report `Empty`. A
    /// close is reported to every call that begins after `close` returned, or after its
    /// thread saw [`is_closed`](Self::is_closed) return `true` or a send refused for the
    /// close (a `try_send` refused while another party held the send side excepted),
    /// once no record committed before the close is without its header (a dead sender's
    /// is repaired as above: within a millisecond of the thread's last probe of the send
    /// lock; until then such a call reports `Empty`), and unless a sender was stopped
    /// inside its commit when the channel was closed (module docs, "Closing": until it
    /// is continued or killed, such a call reports `Empty`).
    pub fn try_recv(&self, out: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.recv_inner(Wait::No, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::try_recv)
    }

    /// [`recv`](Self::recv) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if no message came (or another receiver held the
    /// receive side) until then; otherwise as for [`recv`](Self::recv).
    pub fn recv_timeout(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_until_inner(out, Wait::timeout(timeout))
    }

    /// [`recv`](Self::recv) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_until(
        &self,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_until_inner(out, Wait::Until(deadline))
    }

    fn recv_until_inner(&self, out: &mut Vec<u8>, wait: Wait) -> Result<usize, RecvTimeoutError> {
        self.recv_inner(wait, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::recv_timeout)
    }

    /// Receives the next message into `buf`, waiting while the channel is empty. Returns
    /// its length (the message is `buf[..len]`).
    ///
    /// # Errors
    ///
    /// [`RecvIntoError::TooSmall`] if the next message is longer than `buf`: it stays in
    /// the channel (receive it with a larger buffer); otherwise as for
    /// [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions, RecvIntoError};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// ch.send(b"hello")?;
    /// let mut small = [0; 2];
    /// assert_eq!(ch.recv_into(&mut small), Err(RecvIntoError::TooSmall { needed: 5 }));
    /// let mut buf = [0; 16];
    /// let n = ch.recv_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvIntoError> {
        self.recv_into_inner(buf, Wait::Forever)
            .map_err(Fail::recv_into)
    }

    /// [`recv_into`](Self::recv_into) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvIntoError::TooSmall`] as for [`recv_into`](Self::recv_into); otherwise as
    /// for [`try_recv`](Self::try_recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions, TryRecvIntoError};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// let mut buf = [0; 16];
    /// assert_eq!(ch.try_recv_into(&mut buf), Err(TryRecvIntoError::Empty));
    /// ch.send(b"hello")?;
    /// let n = ch.try_recv_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv_into(&self, buf: &mut [u8]) -> Result<usize, TryRecvIntoError> {
        self.recv_into_inner(buf, Wait::No)
            .map_err(Fail::try_recv_into)
    }

    /// [`recv_into`](Self::recv_into) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutIntoError::TooSmall`] as for [`recv_into`](Self::recv_into); otherwise
    /// as for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_timeout_into(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutIntoError> {
        self.recv_into_inner(buf, Wait::timeout(timeout))
            .map_err(Fail::recv_timeout_into)
    }

    /// [`recv_into`](Self::recv_into) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout_into`](Self::recv_timeout_into).
    pub fn recv_until_into(
        &self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutIntoError> {
        self.recv_into_inner(buf, Wait::Until(deadline))
            .map_err(Fail::recv_timeout_into)
    }

    /// The receives into a buffer, as `wait` allows.
    #[inline]
    fn recv_into_inner(&self, buf: &mut [u8], wait: Wait) -> Result<usize, Fail> {
        let limit = buf.len();
        self.recv_inner(wait, Some(limit), |ch, at, len| {
            // As in `copy_out`; `len <= limit = buf.len()` (`recv_inner` checked).
            ch.read_bytes(at, &mut buf[..len]);
            len
        })
    }

    /// Receives one message as `wait` allows into a process-local copy and runs `f` on
    /// the copy, then releases the message (so that a receiver killed in `f` loses the
    /// message and the next receiver counts it in [`lost`](Self::lost)).
    pub(crate) fn recv_copy<R>(&self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<R, Fail> {
        let mut copy = Scratch::new();
        self.recv_inner(wait, None, |ch, at, len| {
            copy.fill(ch, at, len);
            f(copy.bytes())
        })
    }

    /// Receives the next message and runs `f` on it, without allocating; waits while the
    /// channel is empty. Returns what `f` returns.
    ///
    /// `f` gets a process-local copy of the message (never a view of shared memory,
    /// which a misbehaving peer could change under it): a buffer on the stack for
    /// messages up to 256 bytes, else a per-thread buffer reused across calls (allocated,
    /// or grown, only when a message is longer than any this thread received before).
    ///
    /// `f` runs while this receiver holds the receive side and the message (a receiver
    /// killed in `f` loses it; the next receiver counts it in [`lost`](Self::lost)):
    /// other receivers wait for it (keep it short), and it must not receive from this
    /// channel (that deadlocks) nor wait for room on it (only receivers make room); a
    /// send from `f` should be a `try_` one, since another thread may hold the send side
    /// ([`SendSide`](crate::SendSide), [`SendSlot`](crate::SendSlot)) and wait to receive. If
    /// `f` panics, the message counts as received.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// ch.send(b"12345")?;
    /// let sum = ch.recv_with(|m| m.iter().map(|b| u32::from(b - b'0')).sum::<u32>())?;
    /// assert_eq!(sum, 15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_copy(Wait::Forever, f).map_err(Fail::recv)
    }

    /// [`recv_with`](Self::recv_with) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Self::try_recv).
    pub fn try_recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        self.recv_copy(Wait::No, f).map_err(Fail::try_recv)
    }

    /// [`recv_with`](Self::recv_with) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_timeout_with<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_copy(Wait::timeout(timeout), f)
            .map_err(Fail::recv_timeout)
    }

    /// [`recv_with`](Self::recv_with) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_until_with<R>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_copy(Wait::Until(deadline), f)
            .map_err(Fail::recv_timeout)
    }

    /// Receives up to `max` waiting messages without waiting for more, running `f` on a
    /// process-local copy of each (as [`recv_with`](Self::recv_with)), under one
    /// acquisition of the receive side. `f` runs while this receiver holds the receive
    /// side and the message (as for `recv_with`): other receivers wait for the batch, and
    /// `f` must not receive from this channel nor wait for room on it, and should send on it
    /// only with `try_` calls (as for `recv_with`). Returns how many it received: 0 if the
    /// channel is empty.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Disconnected`] if the channel is closed and empty;
    /// [`TryRecvError::Busy`] if another receiver held the receive side through a brief
    /// spin; [`TryRecvError::Corrupt`] as for [`recv`](Self::recv). Never `Empty`. If
    /// the corruption is found after some messages of the batch, it returns their count
    /// (they are received) and the next call reports `Corrupt`. With `max == 0` it
    /// receives nothing, yet still reports `Disconnected` for a closed, empty channel.
    /// Garbage in the senders' `tail` word, and a record whose sender died before its
    /// header, show only to a call that reads `tail` (0 until then), as for
    /// [`try_recv`](Self::try_recv).
    ///
    /// If `f` panics, the message it was given counts as received (as for
    /// [`recv_with`](Self::recv_with)) and the batch ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// for i in 0..5u8 {
    ///     ch.send(&[i])?;
    /// }
    /// let mut got = Vec::new();
    /// assert_eq!(ch.drain(3, |m| got.push(m[0]))?, 3);
    /// assert_eq!(got, [0, 1, 2]);
    /// assert_eq!(ch.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        let max_len = self.max_message().ok_or(TryRecvError::Corrupt)?;
        let mut look = self.try_peek();
        if look == Peek::InFlight {
            // As a `try_recv`: one chance for a record committed without its header.
            // Relaxed: as in `peek`.
            self.await_header(pos(self.header.head.head.load(Ordering::Relaxed)), Wait::No)
                .map_err(Fail::try_recv)?;
            look = self.peek();
        }
        if look == Peek::Corrupt {
            self.confirm_corrupt(Wait::No).map_err(Fail::try_recv)?;
            // Healthy under the lock: the snapshot of `head` was stale. Look again (a
            // second stale look reads as empty).
            look = match self.peek() {
                Peek::Corrupt => Peek::Empty,
                l => l,
            };
        }
        if look == Peek::Closing && self.finalise(Wait::No) {
            // As a `try_recv`: one chance to make the close final.
            look = self.peek();
        }
        if let Some(done) = look.ends_drain(max) {
            return done;
        }
        let (guard, mut cursors) = self.lock_recv(Wait::No).map_err(Fail::try_recv)?;
        self.drain_locked(Some(guard), &mut cursors, max_len, max, f)
    }

    /// Under the receive lock (held in `guard`, or by a held side: `None`), with the
    /// cursors as its holder left them (`cursors`, kept up to date): the batch of
    /// [`drain`](Self::drain) after its first look.
    pub(super) fn drain_locked(
        &self,
        guard: Option<SideGuard<'_>>,
        cursors: &mut Cursors,
        max_len: u32,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        let h = &self.header;
        // Unlocks (unless a side holds the lock), and wakes senders if anything was
        // released, on return or unwind.
        let mut batch = DrainBatch {
            ch: self,
            guard,
            released: false,
        };
        let mut copy = Scratch::new();
        let mut n = 0;
        let mut result = Ok(());
        while n < max {
            let (head, found) = match self.next_message(cursors, max_len) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            // The claim; Release: as in `recv_inner`.
            h.head
                .head
                .store(advance(head, found.end), Ordering::Release);
            failpoint::hit(Point::ChannelRecvClaimed);
            // As this holder leaves them once the message is released (below, or by the
            // guard if `f` unwinds): `head` past the message, `free` at its end.
            *cursors = Cursors {
                head: advance(head, found.end),
                free: found.end,
            };
            // Releases the message (`free = end`) when `f` returns or unwinds: per
            // message, so that a receiver killed mid-drain loses only the message it had
            // claimed, and a panic in `f` leaves no claim behind.
            let release = Release {
                ch: self,
                end: found.end,
                owner: crate::owner::current(),
            };
            batch.released = true;
            copy.fill(self, found.at as usize, found.len as usize);
            f(copy.bytes());
            n += 1;
            if !release.done() {
                // A child forked inside `f`: the batch is its parent's thread's.
                break;
            }
            failpoint::hit(Point::ChannelDrainReleased);
        }
        drop(batch);
        match result {
            // Messages already handed to `f` are received: report them; the next call
            // meets the same bytes and reports `Corrupt`.
            Err(e) if n == 0 => Err(Fail::try_recv(e)),
            _ => Ok(n),
        }
    }
}

/// Counts the loss of the claim being repaired in the `lost` word and sets its
/// [`LOSS_PENDING`] bit, unless the bit is set already: then an earlier holder of the lock
/// (the last of a run of holders that died, each having taken it from the one before) was
/// a repairer of this same claim (nobody claims while a claim is outstanding) that
/// counted it and died before clearing the bit. So every loss is counted exactly once.
/// Under the receive lock (the word's only writer). A peer's garbage in the word can
/// hide or double one count.
#[cold]
fn count_loss(lost: &AtomicU64) {
    // Relaxed: the receive lock orders the word's writers (a dead holder's writes come
    // before its death, which the taker of its lock observed), and the count is a
    // statistic for its readers. A load and a store, not a read-modify-write loop: the
    // lock holder is the only writer, and a peer rewriting the word must not keep us
    // looping. (A count of 2^63 - 1 wraps to 0.)
    let w = lost.load(Ordering::Relaxed);
    if w & LOSS_PENDING == 0 {
        lost.store((w + 1) | LOSS_PENDING, Ordering::Relaxed);
    }
}

/// Clears the [`LOSS_PENDING`] bit. Under the receive lock, with nothing claimed: by the
/// repairer after its release, or by any later holder that finds the bit set (a repairer
/// killed between its release and its clear).
#[inline]
fn finish_repair(lost: &AtomicU64) {
    // Relaxed: as in `count_loss`. A load of the line `head` is on, and a store only if
    // the bit is set (it almost never is): no cost on the receive path worth the name.
    let w = lost.load(Ordering::Relaxed);
    if w & LOSS_PENDING != 0 {
        lost.store(w & !LOSS_PENDING, Ordering::Relaxed);
    }
}
