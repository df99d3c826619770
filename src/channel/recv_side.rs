//! A held receive side: [`Channel::recv_side`] and [`RecvSide`].

use core::marker::PhantomData;
use core::time::Duration;
use std::time::Instant;

use super::engine::{Fail, Found, Polls, SideGuard, Sleep, Wait, advance, wait_on, wake};
use super::error::{
    RecvError, RecvIntoError, RecvTimeoutError, RecvTimeoutIntoError, TryRecvError,
    TryRecvIntoError,
};
use super::layout::{Channel, pos};
use super::recv::{Cursors, Peek, RECV_SPIN_NS, Scratch, TAIL_POLLS};
use crate::failpoint::{self, Point};
use crate::sync::Ordering;

/// The receive side of a channel, held by one receiver across many receives
/// ([`Channel::recv_side`]): each receive claims, copies and releases its message as
/// [`Channel::recv`] does, without taking and releasing the receive lock around it, and
/// without loading the receivers' cursors (the side keeps them). For a consumer that
/// takes a stream, or one end of a request-reply pair: it saves the lock's two atomic
/// read-modify-writes per message (365 -> 282 instructions per 64-byte `recv_into` on
/// the machine BENCHMARKS.md reports), though between two processes the moves of the
/// record's and `tail`'s cache lines dominate a small message, so a round trip gains
/// little (BENCHMARKS.md, "Held sides, and fewer instructions per message").
///
/// Other receivers wait until the side is dropped: while a message is waiting, their
/// `try_` calls return [`TryRecvError::Busy`] (`Empty` while none is: they look without
/// the lock), timed ones `Timeout` at their deadline, blocking ones wait. A receive that
/// waits for a message waits holding the side.
///
/// The side trusts only its own copy of the receivers' cursors: a peer that writes the
/// shared `head` word meanwhile is overwritten by the side's next receive, and a peer
/// that writes the lock word makes its calls return `Corrupt`.
///
/// A receiver killed while it holds the side leaves what a receiver killed holding the
/// receive lock leaves (module docs, "Crash windows"): the next receiver takes the lock
/// over, and a message the side had claimed and not released is counted in
/// [`lost`](Channel::lost), never delivered twice. A receiver *stopped* while it holds
/// the side stalls the other receivers, not the senders (until the ring is full; or,
/// briefly, while it looks for a dead sender: it then holds the send side).
///
/// While a thread holds a side, it must not call this channel's other receiving calls (a
/// blocking one waits for the side itself: a deadlock; a `try_` one returns `Busy`).
///
/// A side is not `Send`: drop it on the thread that took it. A child forked while a
/// thread holds a side inherits a copy that is not its own: its receives return
/// `Disconnected` and take nothing, and dropping it releases nothing, even once the child
/// holds a side of its own; a child forked inside a receive (in a closure, the allocator
/// or a signal handler) releases nothing.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let ch = shmstate::Channel::new(shmstate::ChannelOptions::new(1024)).unwrap();
/// send(ch.recv_side().unwrap());
/// ```
///
/// # Examples
///
/// ```
/// use shmstate::{Channel, ChannelOptions, TryRecvError};
///
/// let ch = Channel::new(ChannelOptions::new(4096))?;
/// for i in 0..3u32 {
///     ch.send(&i.to_le_bytes())?;
/// }
/// let mut side = ch.recv_side()?;
/// let mut buf = [0; 4];
/// for i in 0..3u32 {
///     let n = side.recv_into(&mut buf)?;
///     assert_eq!(buf[..n], i.to_le_bytes());
/// }
/// // Another receiver waits while the side is held.
/// ch.send(b"x")?;
/// let mut out = Vec::new();
/// assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
/// drop(side);
/// assert_eq!(ch.try_recv(&mut out), Ok(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a receive side that is dropped at once receives nothing"]
pub struct RecvSide<'a> {
    ch: &'a Channel,
    guard: SideGuard<'a>,
    /// The receivers' cursors as this side left them: it is their only writer while it
    /// holds the lock.
    cursors: Cursors,
    /// Which `try_` receives that find nothing read `tail`.
    polls: Polls,
    /// Not `Send`: the receive lock names the thread that took it (as for
    /// [`SendSide`](crate::SendSide)).
    _not_send: PhantomData<*const ()>,
}

impl core::fmt::Debug for RecvSide<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecvSide").finish_non_exhaustive()
    }
}

/// A message claimed under a held side: dropping it (after the copy, or while a closure
/// unwinds) releases its space and wakes senders; the lock stays held.
struct HeldClaim<'a> {
    ch: &'a Channel,
    end: u32,
    /// The thread that claimed it: a child forked inside the caller's closure (whose
    /// thread has another TID) releases nothing, even once it holds a side itself.
    owner: u32,
}

impl HeldClaim<'_> {
    /// Releases the message and wakes senders; false (doing nothing) in a child forked
    /// inside the caller's closure.
    #[inline]
    fn release(&self) -> bool {
        let h = &self.ch.header;
        if crate::owner::current() != self.owner || !h.recv.lock.is_owned_by_current_thread() {
            // A child forked under the claim: the claim is its parent's thread's (as in
            // `Claim::drop`), also once the child has taken a side of its own.
            return false;
        }
        self.ch.release_claim(self.end);
        failpoint::hit(Point::ChannelRecvUnwoken);
        wake(&h.wake.send_wake, &h.config.fenced);
        true
    }
}

impl Drop for HeldClaim<'_> {
    #[inline]
    fn drop(&mut self) {
        self.release();
    }
}

impl RecvSide<'_> {
    /// Why the receive lock is not this thread's although the side holds it: a side
    /// inherited by a forked child (the lock names a thread, its parent's: the lock, the
    /// cursors and the side are that thread's), else a peer's garbage in the lock word.
    #[cold]
    fn not_held(&self) -> Fail {
        if self.ch.header.recv.lock.owner().is_some() {
            Fail::Disconnected
        } else {
            Fail::Corrupt
        }
    }

    /// One receive under the held side: the steps of [`Channel::recv`] between its lock
    /// and its unlock (module docs, "Protocol"), waiting as `wait` allows. The message
    /// found at the first look is taken here; the looks after it, and the waits between
    /// them, are [`await_message`](Self::await_message)'s (out of line: a stream that
    /// keeps the channel busy never runs them).
    #[inline]
    fn recv_held<R>(
        &mut self,
        wait: Wait,
        limit: Option<usize>,
        take: impl FnOnce(&Channel, usize, usize) -> R,
    ) -> Result<R, Fail> {
        let ch = self.ch;
        let max = ch.max_message().ok_or(Fail::Corrupt)?;
        if !self.guard.is_held_here() {
            return Err(self.not_held());
        }
        let (head, found) = match ch.next_message(&mut self.cursors, max)? {
            Some(next) => next,
            None => self.await_message(wait, max)?,
        };
        if let Some(l) = limit
            && found.len as usize > l
        {
            return Err(Fail::TooSmall {
                needed: found.len as usize,
            });
        }
        // The claim. Release: as in `recv_inner`.
        ch.header
            .head
            .head
            .store(advance(head, found.end), Ordering::Release);
        failpoint::hit(Point::ChannelRecvClaimed);
        // As the side leaves them once the claim below is released (on return or unwind).
        self.cursors = Cursors {
            head: advance(head, found.end),
            free: found.end,
        };
        let claim = HeldClaim {
            ch,
            end: found.end,
            owner: crate::owner::current(),
        };
        let r = take(ch, found.at as usize, found.len as usize);
        drop(claim);
        Ok(r)
    }

    /// The first look of [`recv_held`](Self::recv_held) found no message: looks again,
    /// waiting between the looks as `wait` allows, until one is published (returned with
    /// `head`, unclaimed), the channel is closed and drained, or the wait ends.
    #[inline(never)]
    fn await_message(&mut self, wait: Wait, max: u32) -> Result<(u64, Found), Fail> {
        let ch = self.ch;
        let mut sleep: Option<Sleep> = None;
        let mut awaited = false;
        let mut deadline_looked = false;
        // As in `recv_inner`: one try to make a close final, and one after each wait.
        let mut may_finalise = true;
        // The caller looked once already.
        let mut look = false;
        loop {
            if look && let Some(next) = ch.next_message(&mut self.cursors, max)? {
                return Ok(next);
            }
            look = true;
            // The side's own `head`, not the shared word's (a peer may write that).
            let head = pos(self.cursors.head);
            let waited = sleep.as_ref().is_some_and(Sleep::started);
            // `tail` (for the close, or a record committed without its header) only
            // after a first wait, or in a `try_` call ([`Polls`]): a receiver that
            // loads it while it waits keeps the senders' line moving between the two
            // cores at every message (BENCHMARKS.md, "A prototype of publication per
            // record").
            let polled =
                matches!(wait, Wait::No) && (ch.close_begun() || self.polls.due(TAIL_POLLS));
            if waited || polled {
                match ch.peek_at(head) {
                    Peek::Closed => return Err(Fail::Disconnected),
                    // From the side's own `head`: `tail` is garbage.
                    Peek::Corrupt => return Err(Fail::Corrupt),
                    Peek::Closing if may_finalise => {
                        may_finalise = false;
                        if ch.finalise(wait) {
                            continue;
                        }
                    }
                    // As in `recv_inner`: once per `try_` call.
                    Peek::InFlight if matches!(wait, Wait::No) && !awaited => {
                        awaited = true;
                        if ch.await_header(head, wait)? {
                            continue;
                        }
                    }
                    // As in `recv_inner`, after each wait.
                    Peek::InFlight if waited => ch.repair_dead_sender(wait)?,
                    _ => {}
                }
            }
            // No dead receiver's claim to look for: this side holds the lock.
            let waited = wait_on(
                &ch.header.wake.recv_wake,
                &ch.header.config.fenced,
                wait,
                sleep.get_or_insert_with(Sleep::new),
                RECV_SPIN_NS,
                || ch.has_header(head),
                || ch.settle(head),
            );
            // Again after a wait; not after the deadline (its one look below makes no
            // barrier: the call keeps its bound).
            may_finalise = waited.is_ok();
            if waited == Err(Fail::Timeout) && !deadline_looked {
                // One look at the deadline, as in `recv_inner`: also for the close, which
                // a deadline shorter than the first wait would otherwise never see.
                deadline_looked = true;
                match ch.peek_at(head) {
                    Peek::Closed => return Err(Fail::Disconnected),
                    Peek::Corrupt => return Err(Fail::Corrupt),
                    Peek::InFlight => ch.repair_dead_sender(wait)?,
                    Peek::Closing => {
                        ch.finalise(Wait::No);
                    }
                    Peek::Message | Peek::Empty => {}
                }
                continue;
            }
            waited?;
        }
    }

    /// Receives the next message into `out` (cleared first), waiting (holding the side)
    /// while the channel is empty. Returns its length.
    ///
    /// # Errors
    ///
    /// As for [`Channel::recv`]; also `Disconnected` in a forked child (the side is its
    /// parent's).
    pub fn recv(&mut self, out: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_held(Wait::Forever, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::recv)
    }

    /// [`recv`](Self::recv) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if no message is waiting; otherwise as for
    /// [`recv`](Self::recv) (never `Busy`: the side is held).
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.recv_held(Wait::No, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::try_recv)
    }

    /// [`recv`](Self::recv), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if no message came until then; otherwise as for
    /// [`recv`](Self::recv).
    pub fn recv_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_until_inner(out, Wait::timeout(timeout))
    }

    /// [`recv`](Self::recv), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_until(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_until_inner(out, Wait::Until(deadline))
    }

    fn recv_until_inner(
        &mut self,
        out: &mut Vec<u8>,
        wait: Wait,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_held(wait, None, |ch, at, len| {
            ch.copy_out(at, len, out);
            len
        })
        .map_err(Fail::recv_timeout)
    }

    /// Receives the next message into `buf`, waiting while the channel is empty, as
    /// [`Channel::recv_into`] does. Returns its length.
    ///
    /// # Errors
    ///
    /// As for [`Channel::recv_into`].
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvIntoError> {
        self.recv_into_inner(buf, Wait::Forever)
            .map_err(Fail::recv_into)
    }

    /// [`recv_into`](Self::recv_into) without waiting, as [`Channel::try_recv_into`].
    ///
    /// # Errors
    ///
    /// As for [`Channel::try_recv_into`] (never [`TryRecvIntoError::Busy`]: the side
    /// holds the receive lock).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvIntoError> {
        self.recv_into_inner(buf, Wait::No)
            .map_err(Fail::try_recv_into)
    }

    /// [`recv_into`](Self::recv_into) that gives up after `timeout`, as
    /// [`Channel::recv_timeout_into`].
    ///
    /// # Errors
    ///
    /// As for [`Channel::recv_timeout_into`].
    pub fn recv_timeout_into(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutIntoError> {
        self.recv_into_inner(buf, Wait::timeout(timeout))
            .map_err(Fail::recv_timeout_into)
    }

    /// [`recv_into`](Self::recv_into) that gives up at `deadline`, as
    /// [`Channel::recv_until_into`].
    ///
    /// # Errors
    ///
    /// As for [`Channel::recv_timeout_into`].
    pub fn recv_until_into(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutIntoError> {
        self.recv_into_inner(buf, Wait::Until(deadline))
            .map_err(Fail::recv_timeout_into)
    }

    /// The receives into a buffer under the side, as `wait` allows.
    #[inline]
    fn recv_into_inner(&mut self, buf: &mut [u8], wait: Wait) -> Result<usize, Fail> {
        let limit = buf.len();
        self.recv_held(wait, Some(limit), |ch, at, len| {
            // As in `Channel::recv_into`.
            ch.read_bytes(at, &mut buf[..len]);
            len
        })
    }

    /// Receives the next message and runs `f` on a process-local copy of it, as
    /// [`Channel::recv_with`] does (with the same rules for `f`).
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        self.recv_copy(Wait::Forever, f).map_err(Fail::recv)
    }

    /// [`recv_with`](Self::recv_with) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Self::try_recv).
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        self.recv_copy(Wait::No, f).map_err(Fail::try_recv)
    }

    /// [`recv_with`](Self::recv_with), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_timeout_with<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_copy(Wait::timeout(timeout), f)
            .map_err(Fail::recv_timeout)
    }

    /// [`recv_with`](Self::recv_with), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_until_with<R>(
        &mut self,
        deadline: Instant,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_copy(Wait::Until(deadline), f)
            .map_err(Fail::recv_timeout)
    }

    fn recv_copy<R>(&mut self, wait: Wait, f: impl FnOnce(&[u8]) -> R) -> Result<R, Fail> {
        let mut copy = Scratch::new();
        self.recv_held(wait, None, |ch, at, len| {
            copy.fill(ch, at, len);
            f(copy.bytes())
        })
    }

    /// Receives up to `max` waiting messages without waiting for more, running `f` on a
    /// process-local copy of each, as [`Channel::drain`] does (with the same rules for
    /// `f`). Returns how many it received: 0 if the channel is empty.
    ///
    /// # Errors
    ///
    /// As for [`Channel::drain`] (never `Busy`: the side is held); also `Disconnected`
    /// in a forked child.
    pub fn drain(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        let ch = self.ch;
        let max_len = ch.max_message().ok_or(TryRecvError::Corrupt)?;
        if !self.guard.is_held_here() {
            // As in `recv_held`.
            return Err(self.not_held().try_recv());
        }
        // As in `await_message`: the side's own `head`.
        let head = pos(self.cursors.head);
        let mut look = ch.peek_at(head);
        if look == Peek::InFlight {
            // As in `Channel::drain`.
            ch.await_header(head, Wait::No).map_err(Fail::try_recv)?;
            look = ch.peek_at(head);
        }
        if look == Peek::Closing && ch.finalise(Wait::No) {
            // As in `Channel::drain`.
            look = ch.peek_at(head);
        }
        if let Some(done) = look.ends_drain(max) {
            return done;
        }
        ch.drain_locked(None, &mut self.cursors, max_len, max, f)
    }
}

impl Channel {
    /// Takes the receive side for a run of receives ([`RecvSide`]), waiting while another
    /// receiver holds it. A closed channel still gives the side: its receives take what
    /// is left, then report `Disconnected`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Corrupt`] if the shared state is invalid (the config word, or the
    /// cursors a dead receiver left).
    pub fn recv_side(&self) -> Result<RecvSide<'_>, RecvError> {
        self.take_recv_side(Wait::Forever).map_err(Fail::recv)
    }

    /// [`recv_side`](Self::recv_side) without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Busy`] if another receiver held the receive side through a brief
    /// spin; otherwise as for [`recv_side`](Self::recv_side).
    pub fn try_recv_side(&self) -> Result<RecvSide<'_>, TryRecvError> {
        self.take_recv_side(Wait::No).map_err(Fail::try_recv)
    }

    /// [`recv_side`](Self::recv_side), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if another receiver held the side throughout;
    /// otherwise as for [`recv_side`](Self::recv_side).
    pub fn recv_side_timeout(&self, timeout: Duration) -> Result<RecvSide<'_>, RecvTimeoutError> {
        self.take_recv_side(Wait::timeout(timeout))
            .map_err(Fail::recv_timeout)
    }

    fn take_recv_side(&self, wait: Wait) -> Result<RecvSide<'_>, Fail> {
        self.max_message().ok_or(Fail::Corrupt)?;
        let (guard, cursors) = self.lock_recv(wait)?;
        Ok(RecvSide {
            ch: self,
            guard,
            cursors,
            // The first `try_` receive that finds nothing reads `tail`.
            polls: Polls::FIRST,
            _not_send: PhantomData,
        })
    }
}
