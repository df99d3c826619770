//! The receive side: [`Channel::recv`] and its forms (into a buffer, in place through a
//! closure, `try_`, timed), and [`Channel::drain`].

use core::time::Duration;
use std::time::Instant;

use super::engine::{
    Fail, Found, SideGuard, Sleep, Wait, advance, lock_side, parse, wait_on, wake,
};
use super::error::{RecvError, RecvIntoError, RecvTimeoutError, TryRecvError};
use super::layout::{Channel, pos};
use crate::failpoint::{self, Point};
use crate::sync::Ordering;

impl Fail {
    fn recv(self) -> RecvError {
        match self {
            Fail::Disconnected => RecvError::Disconnected,
            _ => RecvError::Corrupt,
        }
    }

    fn try_recv(self) -> TryRecvError {
        match self {
            Fail::WouldBlock => TryRecvError::Empty,
            Fail::Busy | Fail::Timeout => TryRecvError::Busy,
            Fail::Disconnected => TryRecvError::Disconnected,
            _ => TryRecvError::Corrupt,
        }
    }

    fn recv_timeout(self) -> RecvTimeoutError {
        match self {
            Fail::Timeout | Fail::WouldBlock | Fail::Busy => RecvTimeoutError::Timeout,
            Fail::Disconnected => RecvTimeoutError::Disconnected,
            _ => RecvTimeoutError::Corrupt,
        }
    }

    fn recv_into(self) -> RecvIntoError {
        match self {
            Fail::TooSmall { needed } => RecvIntoError::TooSmall { needed },
            Fail::Disconnected => RecvIntoError::Disconnected,
            _ => RecvIntoError::Corrupt,
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
    fn drop(&mut self) {
        let h = &self.ch.header;
        // Release: pairs with the senders' Acquire load of `free`: our reads of the
        // message happen before a sender overwrites its bytes.
        h.free.free.store(u64::from(self.end), Ordering::Release);
        failpoint::hit(Point::ChannelRecvFreed);
        drop(self.guard.take());
        failpoint::hit(Point::ChannelRecvUnwoken);
        wake(&h.wake.send_wake);
    }
}

impl Channel {
    /// Takes the receive lock as `wait` allows and repairs what a receiver killed in its
    /// claim left: `head != free` means it claimed a message and died before releasing
    /// it. The message is lost (counted in [`lost`](Self::lost)); its space is released.
    fn lock_recv(&self, wait: Wait) -> Result<SideGuard<'_>, Fail> {
        let h = &self.header;
        let (guard, died) = lock_side(&h.recv.lock, wait)?;
        // Acquire: pairs with the Release stores of `head` and `free` by earlier holders,
        // a dead one included (it never unlocked).
        let head = h.head.head.load(Ordering::Acquire);
        let free = h.free.free.load(Ordering::Acquire);
        if died {
            // Its `tail_cache` came from a load we are not ordered after (it never
            // unlocked): make the next look read `tail` itself. Relaxed: read under
            // this lock.
            h.head.tail_cache.store(head, Ordering::Relaxed);
        }
        if pos(head) != pos(free) {
            self.repair_claim(head, free)?;
        }
        Ok(guard)
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
        // Relaxed: a statistic, read as a snapshot.
        h.head.lost.fetch_add(1, Ordering::Relaxed);
        // Release: as in `Claim::drop`.
        h.free.free.store(u64::from(head), Ordering::Release);
        super::engine::wake_all(&h.wake.send_wake);
        Ok(())
    }

    /// Whether a message looks published past `head` (snapshots, for waits and the
    /// lock-free emptiness check).
    #[inline]
    fn has_message(&self) -> bool {
        let h = &self.header;
        // Relaxed: snapshots on the receivers' own line; the check under the lock decides.
        let head = pos(h.head.head.load(Ordering::Relaxed));
        if pos(h.head.tail_cache.load(Ordering::Relaxed)) != head {
            // Messages known to be published already: no read of the senders' line.
            return true;
        }
        // Acquire: pairs with the senders' Release store of `tail` (for a caller that
        // then takes the lock, the lock orders anyway).
        pos(h.tail.tail.load(Ordering::Acquire)) != head
    }

    /// Under the receive lock: the message at `head`, `Ok(None)` if none is published,
    /// `Err(Corrupt)` if the cursors or the record are invalid.
    fn next_message(&self, max: u32) -> Result<Option<(u64, Found)>, Fail> {
        let h = &self.header;
        // Relaxed: written under this lock (its acquire orders the last holder's store).
        let head = h.head.head.load(Ordering::Relaxed);
        let free = pos(h.free.free.load(Ordering::Relaxed));
        // Relaxed: written under this lock; a stale value is only conservative.
        let mut tail = pos(h.head.tail_cache.load(Ordering::Relaxed));
        let fits = |tail: u32| {
            let used = tail.wrapping_sub(free);
            used <= self.cap() && pos(head).wrapping_sub(free) <= used
        };
        if tail == pos(head) || !fits(tail) {
            // Acquire: pairs with the senders' Release store of `tail`.
            let t = h.tail.tail.load(Ordering::Acquire);
            // Relaxed: read under this lock by the next receiver.
            h.head.tail_cache.store(t, Ordering::Relaxed);
            tail = pos(t);
        }
        if !fits(tail) || !pos(head).is_multiple_of(8) || !tail.is_multiple_of(8) {
            return Err(Fail::Corrupt);
        }
        if tail == pos(head) {
            return Ok(None);
        }
        match parse(self, pos(head), tail, max) {
            Some(found) => Ok(Some((head, found))),
            None => Err(Fail::Corrupt),
        }
    }

    /// Receives one message as `wait` allows: claims it, then runs `take` on its ring
    /// offset and length (the caller owns those bytes until `take` returns), then releases
    /// it. `limit`: a message longer than this is left in the channel (`TooSmall`).
    pub(crate) fn recv_inner<R>(
        &self,
        wait: Wait,
        limit: Option<usize>,
        take: impl FnOnce(&Channel, usize, usize) -> R,
    ) -> Result<R, Fail> {
        let max = self.max_message().ok_or(Fail::Corrupt)?;
        let h = &self.header;
        let mut sleep = Sleep::new();
        loop {
            // Empty at a glance: no lock, no write to a shared line.
            if self.has_message() {
                let guard = self.lock_recv(wait)?;
                if let Some((head, found)) = self.next_message(max)? {
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
            }
            if self.is_closed() {
                // Closed: whatever was sent before the close is published (a sender's
                // store of `tail` happens before the close that follows it), so one more
                // look decides.
                if !self.has_message() {
                    return Err(Fail::Disconnected);
                }
                continue;
            }
            wait_on(&h.wake.recv_wake, wait, &mut sleep, || {
                self.has_message() || self.is_closed()
            })?;
        }
    }

    /// Copies the claimed message at `at` (`len` bytes) into `out`, replacing its
    /// contents.
    fn copy_out(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.resize(len, 0);
        // SAFETY: `at + len <= cap` (`parse` checked the record lies in the ring), and
        // this thread owns the bytes: the message is claimed (`free <= at < head`) and
        // the receive lock is held (`recv_inner`'s contract for `take`).
        unsafe { self.read_bytes(at, out) };
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
    /// [`recv`](Self::recv).
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
        let limit = buf.len();
        self.recv_inner(Wait::Forever, Some(limit), |ch, at, len| {
            // SAFETY: as in `copy_out`; `len <= limit = buf.len()` (`recv_inner` checked).
            unsafe { ch.read_bytes(at, &mut buf[..len]) };
            len
        })
        .map_err(Fail::recv_into)
    }

    /// Runs `f` on the claimed message at `at` in place (a copy under loom, whose ring
    /// is not plain memory).
    pub(crate) fn with_message<R>(&self, at: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        #[cfg(not(loom))]
        {
            // SAFETY: `from_raw_parts` needs (1) a pointer valid for reads of `len`
            // bytes inside one allocation: `[at, at + len)` lies in the ring (`parse`
            // checked it); (2) initialised bytes: atomics' bytes always are; (3) no
            // write for the borrow's life: the message is claimed and the receive lock
            // held, so no sender writes these bytes until `free` passes them, which
            // happens after `f` returns (or unwinds), and the slice does not outlive
            // `f`.
            let bytes = unsafe { core::slice::from_raw_parts(self.ring_base().add(at), len) };
            f(bytes)
        }
        #[cfg(loom)]
        {
            let mut v = Vec::new();
            self.copy_out(at, len, &mut v);
            f(&v)
        }
    }

    /// Receives the next message and runs `f` on it in place, in shared memory, without
    /// copying or allocating; waits while the channel is empty. Returns what `f` returns.
    ///
    /// `f` runs while this receiver holds the receive side: other receivers wait for it
    /// (keep it short), and it must not receive from this channel itself (that
    /// deadlocks). If `f` panics, the message counts as received.
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
        self.recv_inner(Wait::Forever, None, |ch, at, len| {
            ch.with_message(at, len, f)
        })
        .map_err(Fail::recv)
    }

    /// [`recv_with`](Self::recv_with) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Self::try_recv).
    pub fn try_recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        self.recv_inner(Wait::No, None, |ch, at, len| ch.with_message(at, len, f))
            .map_err(Fail::try_recv)
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
        self.recv_inner(Wait::timeout(timeout), None, |ch, at, len| {
            ch.with_message(at, len, f)
        })
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
        self.recv_inner(Wait::Until(deadline), None, |ch, at, len| {
            ch.with_message(at, len, f)
        })
        .map_err(Fail::recv_timeout)
    }

    /// Receives up to `max` waiting messages without waiting for more, running `f` on
    /// each in place (as [`recv_with`](Self::recv_with)), under one acquisition of the
    /// receive side. Returns how many it received: 0 if the channel is empty.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Disconnected`] if the channel is closed and empty;
    /// [`TryRecvError::Busy`] if another receiver held the receive side through a brief
    /// spin; [`TryRecvError::Corrupt`] as for [`recv`](Self::recv) (messages received
    /// before the corruption was found stay received). Never `Empty`.
    ///
    /// If `f` panics, the message it was given counts in [`lost`](Self::lost) (the next
    /// receiver repairs it as a receiver killed after its claim).
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
    pub fn drain(&self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, TryRecvError> {
        let max_len = self.max_message().ok_or(TryRecvError::Corrupt)?;
        if max == 0 {
            return Ok(0);
        }
        if !self.has_message() {
            return if self.is_closed() && !self.has_message() {
                Err(TryRecvError::Disconnected)
            } else {
                Ok(0)
            };
        }
        let h = &self.header;
        let guard = self.lock_recv(Wait::No).map_err(Fail::try_recv)?;
        let mut n = 0;
        let mut result = Ok(());
        while n < max {
            let (head, found) = match self.next_message(max_len) {
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
            self.with_message(found.at as usize, found.len as usize, &mut f);
            // Release: as in `Claim::drop` (per message, so that a receiver killed
            // mid-drain loses only the message it had claimed).
            h.free.free.store(u64::from(found.end), Ordering::Release);
            n += 1;
        }
        drop(guard);
        if n > 0 {
            wake(&h.wake.send_wake);
        }
        result.map(|()| n).map_err(Fail::try_recv)
    }
}
