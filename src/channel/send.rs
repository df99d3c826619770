//! The send side: [`Channel::send`] and its `try_`/timed forms, and the zero-copy
//! [`SendSlot`] of [`Channel::reserve`].

use core::marker::PhantomData;
use core::time::Duration;
use std::io;
use std::time::Instant;

use super::barrier;
use super::engine::{
    Fail, PAD_HEADER, Plan, Room, SideGuard, Sleep, Wait, advance_tail, lock_if_free_or_dead,
    lock_side_contended_unless, message_header, plan, skip_header, try_lock_side, wait_on,
};
use super::error::{SendError, SendTimeoutError, TrySendError};
use super::layout::{Channel, WAITING, count, pos, record_size};
use crate::failpoint::{self, Point};
use crate::sync::{Ordering, fence};

impl Fail {
    fn send(self) -> SendError {
        match self {
            Fail::Disconnected => SendError::Disconnected,
            Fail::TooLarge { len, max } => SendError::TooLarge { len, max },
            // A blocking send neither times out nor gives up; anything else is corrupt.
            _ => SendError::Corrupt,
        }
    }

    fn try_send(self) -> TrySendError {
        match self {
            Fail::WouldBlock => TrySendError::Full,
            Fail::Busy => TrySendError::Busy,
            Fail::Timeout => TrySendError::Busy,
            Fail::Disconnected => TrySendError::Disconnected,
            Fail::TooLarge { len, max } => TrySendError::TooLarge { len, max },
            Fail::TooSmall { .. } | Fail::Corrupt => TrySendError::Corrupt,
        }
    }

    fn send_timeout(self) -> SendTimeoutError {
        match self {
            Fail::Timeout | Fail::WouldBlock | Fail::Busy => SendTimeoutError::Timeout,
            Fail::Disconnected => SendTimeoutError::Disconnected,
            Fail::TooLarge { len, max } => SendTimeoutError::TooLarge { len, max },
            Fail::TooSmall { .. } | Fail::Corrupt => SendTimeoutError::Corrupt,
        }
    }
}

/// Space reserved in the ring for one message, written in place, then published with
/// [`commit`](Self::commit) (or [`commit_len`](Self::commit_len)) or given back with
/// [`abort`](Self::abort). Dropping a slot aborts it.
///
/// A slot holds the channel's send side: other senders wait (their `try_` calls return
/// [`TrySendError::Busy`]) until it is committed or aborted, so fill it promptly. Until
/// then nothing of it is visible to receivers; a process killed while it holds a slot
/// leaves nothing for them to skip, unless it is killed inside the commit, between the
/// commit and the store of the record's header: then the next party to take the send
/// side replaces the record with one receivers skip (module docs, "Crash windows").
///
/// A slot is not `Send`: commit or abort it on the thread that reserved it. A child
/// forked while a thread holds a slot inherits a copy that is not its own: its writes do
/// nothing, and its commit returns [`SendError::Disconnected`].
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let ch = shmstate::Channel::new(shmstate::ChannelOptions::new(1024)).unwrap();
/// send(ch.reserve(8).unwrap());
/// ```
///
/// The slot's bytes start with whatever the ring held there before: write every byte
/// you commit. A thread that holds a slot must not send on the same channel meanwhile
/// (a blocking send waits for the slot's own lock: a deadlock; `try_send` returns
/// `Busy`).
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use shmstate::{Channel, ChannelOptions};
///
/// let ch = Channel::new(ChannelOptions::new(4096))?;
/// let mut slot = ch.reserve(64)?;
/// write!(slot, "{}-{}", "id", 42)?; // formats straight into the ring
/// let n = slot.written();
/// slot.commit_len(n)?;
/// let mut out = Vec::new();
/// ch.recv(&mut out)?;
/// assert_eq!(out, b"id-42");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a slot that is dropped is aborted: call `commit`"]
pub struct SendSlot<'a> {
    ch: &'a Channel,
    /// The send lock, held until commit or abort.
    guard: Option<SideGuard<'a>>,
    /// The `tail` word at reservation.
    tail: u64,
    plan: Plan,
    /// The reserved length.
    len: usize,
    /// The `io::Write` cursor.
    written: usize,
    /// Not `Send`: the send lock names the thread that took it, and only that thread can
    /// release it (a slot committed on another thread would leave the lock held).
    _not_send: PhantomData<*const ()>,
}

impl core::fmt::Debug for SendSlot<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendSlot")
            .field("len", &self.len)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<'a> SendSlot<'a> {
    /// The reserved length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How far [`io::Write`] has written (the next `write` goes there).
    pub fn written(&self) -> usize {
        self.written
    }

    /// Copies `data` into the slot at `offset`.
    ///
    /// # Panics
    ///
    /// If `offset + data.len()` exceeds [`len`](Self::len).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) {
        let end = offset.checked_add(data.len());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "SendSlot::write_at: {} bytes at {offset} exceed the slot's {}",
            data.len(),
            self.len
        );
        if !self.guard.as_ref().is_some_and(SideGuard::is_held_here) {
            // A slot inherited by a forked child: the bytes are its parent's, which may
            // have committed since; past a shorter commit they hold the word the next
            // record's header goes to, which must stay 0.
            return;
        }
        let at = self.plan.rec_at as usize + 8 + offset;
        // `at + data.len() <= rec_at + 8 + len <= cap` (`plan` placed the record inside
        // the ring), and the bytes lie between `tail` and `free + cap` while this slot
        // holds the send lock: this thread owns them. Relaxed atomic stores: no
        // reference to ring bytes is made.
        self.ch.write_bytes(at, data);
    }

    /// Publishes the whole slot as one message.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] if the channel was closed since the reservation, or if
    /// the slot is not this thread's (a child forked while its parent held the slot
    /// inherits a copy that is its parent's): the message is not sent.
    pub fn commit(self) -> Result<(), SendError> {
        let n = self.len;
        self.commit_len(n)
    }

    /// Publishes the first `len` bytes of the slot as one message (the rest of the
    /// reserved space is given back).
    ///
    /// # Errors
    ///
    /// As for [`commit`](Self::commit).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit_len(mut self, len: usize) -> Result<(), SendError> {
        assert!(
            len <= self.len,
            "SendSlot::commit_len: {len} bytes exceed the slot's {}",
            self.len
        );
        let ch = self.ch;
        if !self.guard.as_ref().is_some_and(SideGuard::is_held_here) {
            // A slot inherited by a forked child: the send lock is its parent's thread's,
            // and so is the slot (the parent may commit it). Publishing here could move
            // `tail` back over the parent's message.
            return Err(SendError::Disconnected);
        }
        let Some(guard) = self.guard.as_ref() else {
            return Err(SendError::Disconnected);
        };
        let sleepers = ch.publish(guard, self.tail, self.plan, len)?;
        drop(self.guard.take());
        ch.woken(sleepers);
        Ok(())
    }

    /// Gives the slot back unsent (as dropping it does): unlocks, then fences and, if a
    /// close has begun and is not final, makes it final if the lock is free (as dropping
    /// a [`SendSide`] does).
    pub fn abort(self) {}
}

impl Drop for SendSlot<'_> {
    /// Gives the slot back unless it was committed (`Channel::let_go`).
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            self.ch.let_go(guard);
        }
    }
}

impl Channel {
    /// Lets the send lock go when a holder ends without a send (a [`SendSide`] dropped, a
    /// [`SendSlot`] given back): unlocks, then makes a close final if it has begun and is
    /// not final. A finaliser that cannot issue the process-wide barrier cannot make it
    /// final while a registered process holds the lock idle (its `busy` promises no
    /// fence); so the holder fences after its unlock and looks at `closed`, and such a
    /// finaliser looks at the lock once more after its own fence (`finalise`): either we
    /// see `closed`, or it sees the lock free (or taken by a later holder: a side or a
    /// slot makes the close final when it lets go in turn; a registered single send may
    /// not, module docs, "Closing"). One fence per side or slot let go, not per message; a
    /// slot committed lets the lock go in `commit_len`, without this.
    fn let_go(&self, guard: SideGuard<'_>) {
        let mine = guard.is_mine();
        drop(guard);
        if !mine {
            // A copy in a forked child: the lock is its parent's thread's.
            return;
        }
        // SeqCst: our unlock before it, our load of `closed` after it; pairs with the
        // fence of a finaliser that stored or read `closed` and then looks at the lock
        // again.
        fence(Ordering::SeqCst);
        if self.close_begun() && self.end().is_none() {
            // Through the lock if it is free (or its holder dead): no wait.
            self.finalise(Wait::No);
        }
    }
}

/// The send side of a channel, held by one sender across many sends
/// ([`Channel::send_side`]): each [`send`](Self::send) writes and publishes its message
/// as [`Channel::send`] does, without taking and releasing the send lock around it.
/// Other senders wait (their `try_` calls return [`TrySendError::Busy`], a `close`
/// ends their wait) until the side is dropped. For a producer that streams: the lock's
/// two atomic read-modify-writes per message are what a streaming sender pays most for
/// after the publication itself (BENCHMARKS.md, "Holding the send side"). Hold a side
/// for a stream or a burst: a sender queued behind it re-checks the lock every few
/// milliseconds while it waits.
///
/// A sender killed while it holds the side leaves what a sender killed holding the send
/// lock leaves (module docs, "Crash windows"): the next sender takes the lock over.
/// A sender *stopped* while it holds the side stalls the other senders, and receivers
/// only if it stopped in the one store between a send's commit and its header (they
/// wait at that record until it is continued, or killed and the record skipped), or, if
/// the channel is closed meanwhile, anywhere inside a send's commit (from its store of
/// `busy` to its header: a few stores; receivers then get every message and wait at the
/// close until it is continued or killed: module docs, "Closing"). A send that waits for
/// room waits holding the side.
///
/// Dropping the side releases the lock, then fences and, if a close has begun and is
/// not final (its closer could not make it final while the side was held), makes it
/// final: it takes the lock again if it is free, or recovers it from a dead holder
/// (a probe, then at most a few milliseconds), never waiting for a live one. Giving a
/// [`SendSlot`] back does the same.
///
/// While a thread holds a side, it must not call this channel's other sending calls (a
/// blocking one waits for the side itself: a deadlock; a `try_` one returns `Busy`),
/// nor wait to receive from it while another thread may send from inside a
/// [`recv_with`](Channel::recv_with) or [`drain`](Channel::drain) closure (that
/// receiver holds the receive side and waits for the send side: a deadlock until
/// `close`).
///
/// Like a [`SendSlot`], a side is not `Send`: drop it on the thread that took it. A
/// child forked while a thread holds a side inherits a copy that is not its own: its
/// sends return [`SendError::Disconnected`], and dropping it releases nothing, even once
/// the child holds a side of its own.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let ch = shmstate::Channel::new(shmstate::ChannelOptions::new(1024)).unwrap();
/// send(ch.send_side().unwrap());
/// ```
///
/// # Examples
///
/// ```
/// use shmstate::{Channel, ChannelOptions, TrySendError};
///
/// let ch = Channel::new(ChannelOptions::new(4096))?;
/// let mut side = ch.send_side()?;
/// for i in 0..10u32 {
///     side.send(&i.to_le_bytes())?;
/// }
/// // Another sender waits while the side is held.
/// assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
/// drop(side);
/// ch.try_send(b"x")?;
/// assert_eq!(ch.len(), 11);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a send side that is dropped at once sends nothing"]
pub struct SendSide<'a> {
    ch: &'a Channel,
    /// Dropped by our `Drop`, which then looks at the close.
    guard: core::mem::ManuallyDrop<SideGuard<'a>>,
    /// Not `Send`: the send lock names the thread that took it (as for [`SendSlot`]).
    _not_send: PhantomData<*const ()>,
}

impl core::fmt::Debug for SendSide<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendSide").finish_non_exhaustive()
    }
}

impl Drop for SendSide<'_> {
    /// Lets the side go (`Channel::let_go`).
    fn drop(&mut self) {
        // SAFETY: the guard is taken here once and never used again (`self` is being
        // dropped).
        let guard = unsafe { core::mem::ManuallyDrop::take(&mut self.guard) };
        self.ch.let_go(guard);
    }
}

impl SendSide<'_> {
    /// Sends `msg` as one message, waiting (holding the side) while the ring has no room
    /// for it.
    ///
    /// # Errors
    ///
    /// As for [`Channel::send`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_held(msg, Wait::Forever).map_err(Fail::send)
    }

    /// Sends `msg` if the ring has room for it now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the ring has no room for it; otherwise as for
    /// [`Channel::try_send`] (never `Busy`: the side is held).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.send_held(msg, Wait::No).map_err(Fail::try_send)
    }

    /// [`send`](Self::send), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Channel::send_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.send_held(msg, Wait::timeout(timeout))
            .map_err(Fail::send_timeout)
    }

    /// [`send`](Self::send), giving up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`Channel::send_timeout`].
    pub fn send_until(&mut self, msg: &[u8], deadline: Instant) -> Result<(), SendTimeoutError> {
        self.send_held(msg, Wait::Until(deadline))
            .map_err(Fail::send_timeout)
    }

    /// One send under the held side: the steps of [`Channel::send`] between its lock and
    /// its unlock (module docs, "Protocol"), then the wake.
    fn send_held(&mut self, msg: &[u8], wait: Wait) -> Result<(), Fail> {
        let ch = self.ch;
        ch.check_len(msg.len())?;
        if !self.guard.is_held_here() {
            // A side inherited by a forked child: the lock and the side are its parent's
            // thread's. Publishing here could move `tail` back over the parent's message.
            return Err(Fail::Disconnected);
        }
        let mut room = None;
        loop {
            if let Some((tail, plan)) = ch.room(msg.len())? {
                let sleepers = ch.write_and_publish(&self.guard, tail, plan, msg)?;
                ch.woken(sleepers);
                return Ok(());
            }
            ch.wait_for_room(msg.len(), wait, room.get_or_insert_with(RoomWait::new))?;
        }
    }
}

/// A sender's waiting for room, across the looks of one call.
struct RoomWait {
    sleep: Sleep,
    /// `free` at our previous look that found the ring full.
    stuck: Option<u32>,
    /// Whether this call repaired a dead receiver's claim already.
    repaired: bool,
    /// Whether this call waited since its last repair (or since it began).
    waited: bool,
    /// Whether this call looked for a dead claim at its deadline.
    deadline_looked: bool,
}

impl RoomWait {
    fn new() -> Self {
        RoomWait {
            sleep: Sleep::new(),
            stuck: None,
            repaired: false,
            waited: false,
            deadline_looked: false,
        }
    }
}

impl io::Write for SendSlot<'_> {
    /// Writes at [`written`](SendSlot::written) as much of `buf` as still fits; `Ok(0)`
    /// when the slot is full (so `write_all` reports `WriteZero`).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len - self.written);
        let at = self.written;
        self.write_at(at, &buf[..n]);
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Channel {
    /// Under the send lock: writes `msg` where `plan` (from [`room`](Self::room), with
    /// `tail` the word it read) placed its record, and publishes it ([`publish`](Self::publish)).
    #[inline]
    fn write_and_publish(
        &self,
        guard: &SideGuard<'_>,
        tail: u64,
        plan: Plan,
        msg: &[u8],
    ) -> Result<bool, Fail> {
        // `plan` placed the record inside the ring, past `tail` and before `free + cap`:
        // this thread owns those bytes while it holds the lock.
        self.write_payload(plan.rec_at as usize + 8, msg);
        self.publish(guard, tail, plan, msg.len())
            .map_err(|e| match e {
                SendError::Corrupt => Fail::Corrupt,
                // `TooLarge` cannot come from a publish; `Disconnected` is the close.
                _ => Fail::Disconnected,
            })
    }

    /// After a publish (and the unlock, if the caller unlocks): wakes the receivers if
    /// it found one registered asleep (`sleepers`).
    #[inline]
    fn woken(&self, sleepers: bool) {
        failpoint::hit(Point::ChannelSendUnwoken);
        if sleepers {
            super::engine::wake_all(&self.header.wake.recv_wake);
        }
    }

    /// Under the send lock, the payload of `len` bytes written where `plan` placed it:
    /// commits the record with a store of `tail` (the word read when the room was
    /// planned, advanced past the record) between the two stores of `busy`, then
    /// publishes it with the store of its header (module docs, "Protocol"). Whether a
    /// receiver may sleep (`WAITING` in `recv_wake`): the caller wakes the receivers,
    /// after unlocking if it unlocks.
    ///
    /// No read-modify-write and, in a registered process while the channel's `fenced`
    /// word is 0, no fence: the two barriers are compiler barriers, which the barrier of a
    /// sleeper or a finaliser pairs with ([`barrier`](super::barrier)).
    #[inline(always)]
    fn publish(
        &self,
        guard: &SideGuard<'_>,
        tail: u64,
        plan: Plan,
        len: usize,
    ) -> Result<bool, SendError> {
        let h = &self.header;
        let cap = self.cap();
        let pad = plan.pad_at.map_or(0, |p| cap - p);
        let from = pos(tail);
        let to = from.wrapping_add(pad + record_size(len) as u32);
        // The word after the record, where the next record's header goes: 0 until that
        // header is stored, so that a receiver reaching it waits (it may hold an old
        // record's bytes). Free space: `plan` kept 8 bytes of slack after the record.
        // Relaxed: published with the record, by the Release store of its header (and,
        // for the next sender, by the send lock).
        self.word_at(to & (cap - 1)).store(0, Ordering::Relaxed);
        failpoint::hit(Point::ChannelSendZeroed);
        // Where the record lies, for the repair if we die between the commit and the
        // header. Relaxed: ordered before the commit (Release) that makes it matter, and
        // read by the next holder of the send lock.
        h.tail
            .pending
            .store(u64::from(from) << 32 | u64::from(to), Ordering::Relaxed);
        failpoint::hit(Point::ChannelSendWritten);
        let new = advance_tail(tail, to);
        if !guard.is_mine() {
            // A child forked by a signal handler since the caller's check: the send is its
            // parent's thread's (which holds the lock), and a late store of `busy` or
            // `tail` from here would land in the middle of the parent's later sends. (A
            // fork between this check and a store below can still do that: the window is
            // a few instructions, where format 4's compare-exchange of `tail` made a late
            // commit fail; its zeroed word and `pending` had the same window.)
            return Err(SendError::Disconnected);
        }
        // Relaxed: our own last store (or `claim_busy`'s). If it promised a fence
        // (`IDLE_FENCING`), we fence, even if this process registered since.
        let promised = h.tail.busy.load(Ordering::Relaxed) == barrier::IDLE_FENCING;
        // Busy from here to the header: a finaliser that reads an idle value after its
        // barrier (or, for `IDLE_FENCING`, its fence) knows we either saw `closed` below
        // (and commit nothing) or are done. Relaxed: the barrier pattern orders it before
        // our load of `closed` (the busy side: a compiler barrier where the finaliser's
        // barrier reaches us, else a fence).
        h.tail.busy.store(barrier::BUSY, Ordering::Relaxed);
        barrier::busy_side(promised);
        failpoint::hit(Point::ChannelSendBusy);
        if self.close_begun() {
            // Closed since our check before the reservation: nothing committed (the
            // slot's bytes lie past `tail`, as an abort's). Release: as below. The close
            // is final now that we, the holder, saw it: record it.
            h.tail.busy.store(barrier::idle(), Ordering::Release);
            self.finalise_locked();
            return Err(SendError::Disconnected);
        }
        if !guard.is_mine() {
            // As above, for a fork since that check.
            return Err(SendError::Disconnected);
        }
        // The commit. Release: pairs with the Acquire load of `tail` by whoever takes the
        // send lock from us if we die before the header (`skip_dead_record`: `pending`
        // and the zeroed word are ordered before its reads), and by receivers that read
        // `tail` (a snapshot). Only the send-lock holder writes `tail`: a plain store.
        h.tail.tail.store(new, Ordering::Release);
        failpoint::hit(Point::ChannelSendCommitted);
        // The publication. Release: pairs with the receivers' Acquire load of the header
        // at `head`: the payload and the zeroed word after the record happen before
        // their reads. On a wrap, the record at 0 first, then the padding at `from`,
        // which receivers reach first.
        self.word_at(plan.rec_at)
            .store(message_header(len as u32), Ordering::Release);
        if let Some(p) = plan.pad_at {
            self.word_at(p).store(PAD_HEADER, Ordering::Release);
        }
        failpoint::hit(Point::ChannelSendPublished);
        // Release: pairs with a finaliser's Acquire load that reads an idle value: our
        // `tail` (and header) happen before its read of `tail`.
        h.tail.busy.store(barrier::idle(), Ordering::Release);
        // The busy side of the sleepers' barrier (`wait_on`): our header store before it,
        // our loads of `closed` and `recv_wake` after it. A fence if some sleeper could
        // not issue the barrier. Relaxed: a hint (see `wait_on`).
        let strong = h.config.fenced.load(Ordering::Relaxed) != 0;
        barrier::busy_side(strong);
        // A close that found us busy left its finalisation to us (module docs,
        // "Closing"): by the barrier, this load sees its `closed`.
        if self.close_begun() {
            self.finalise_locked();
        }
        // Relaxed: ordered by the barrier above.
        let sleepers = h.wake.recv_wake.load(Ordering::Relaxed) & WAITING != 0;
        Ok(sleepers)
    }

    /// Takes the send side for a run of sends ([`SendSide`]), waiting while another
    /// sender holds it.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once the channel is closed; [`SendError::Corrupt`] if
    /// its config word is invalid.
    pub fn send_side(&self) -> Result<SendSide<'_>, SendError> {
        self.take_send_side(Wait::Forever).map_err(Fail::send)
    }

    /// [`send_side`](Self::send_side) without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Busy`] if another sender held the send side through a brief
    /// spin; otherwise as for [`send_side`](Self::send_side).
    pub fn try_send_side(&self) -> Result<SendSide<'_>, TrySendError> {
        self.take_send_side(Wait::No).map_err(Fail::try_send)
    }

    /// [`send_side`](Self::send_side), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] if another sender held the side throughout;
    /// otherwise as for [`send_side`](Self::send_side).
    pub fn send_side_timeout(&self, timeout: Duration) -> Result<SendSide<'_>, SendTimeoutError> {
        self.take_send_side(Wait::timeout(timeout))
            .map_err(Fail::send_timeout)
    }

    fn take_send_side(&self, wait: Wait) -> Result<SendSide<'_>, Fail> {
        self.max_message().ok_or(Fail::Corrupt)?;
        let guard = self.lock_send(wait)?;
        if self.close_begun() {
            // The holder saw the close: it is final.
            self.finalise_locked();
            return Err(Fail::Disconnected);
        }
        Ok(SendSide {
            ch: self,
            guard: core::mem::ManuallyDrop::new(guard),
            _not_send: PhantomData,
        })
    }

    /// Reserves room for a message of `len` bytes as `wait` allows, holding the send
    /// lock in the returned slot.
    pub(crate) fn reserve_inner(&self, len: usize, wait: Wait) -> Result<SendSlot<'_>, Fail> {
        let (guard, tail, plan) = self.lock_with_room(len, wait)?;
        Ok(SendSlot {
            ch: self,
            guard: Some(guard),
            tail,
            plan,
            len,
            written: 0,
            _not_send: PhantomData,
        })
    }

    /// Takes the send lock once the ring has room for a message of `len` bytes, as `wait`
    /// allows: the lock, the `tail` word read and where the record goes ([`room`](Self::room)).
    /// Inlined always, as [`lock_send`](Self::lock_send): with two callers LLVM outlined
    /// both, and a plain send took 360 instructions instead of 299 (callgrind, 64 bytes).
    #[inline(always)]
    fn lock_with_room(&self, len: usize, wait: Wait) -> Result<(SideGuard<'_>, u64, Plan), Fail> {
        self.check_len(len)?;
        let mut room = None;
        loop {
            let guard = self.lock_send(wait)?;
            if let Some((tail, plan)) = self.room(len)? {
                return Ok((guard, tail, plan));
            }
            drop(guard);
            self.wait_for_room(len, wait, room.get_or_insert_with(RoomWait::new))?;
        }
    }

    /// `TooLarge` if a message of `len` bytes can never fit (or `Corrupt` for a corrupt
    /// config word).
    #[inline]
    fn check_len(&self, len: usize) -> Result<(), Fail> {
        let max = self.max_message().ok_or(Fail::Corrupt)? as usize;
        if len > max {
            return Err(Fail::TooLarge { len, max });
        }
        Ok(())
    }

    /// Takes the send lock as `wait` allows, repairing what a dead holder left. A
    /// closed channel: `Disconnected` if the lock is held by another (also while queued
    /// behind it); a caller that gets the lock finds the close in `tail` itself.
    #[inline(always)]
    fn lock_send(&self, wait: Wait) -> Result<SideGuard<'_>, Fail> {
        let h = &self.header;
        // The uncontended path: one compare-exchange, and no look at `tail` before it.
        let (guard, died) = match try_lock_side(&h.send.lock) {
            Some(g) => g,
            None => self.lock_send_contended(wait)?,
        };
        if died {
            self.repair_send(&guard);
        }
        self.claim_busy();
        Ok(guard)
    }

    /// Under the send lock, just taken: makes `busy` this process's idle value
    /// (`barrier::idle`) if it is not (a predecessor of the other kind, a dead holder's 1,
    /// a peer's garbage), then fences. A registered holder must not leave a predecessor's
    /// `IDLE_FENCING` standing: a finaliser that cannot issue the barrier would take it
    /// for this holder's promise to fence, which its compiler barrier does not keep. The
    /// fence pairs with such a finaliser's (store of `closed`, fence, load of `busy`):
    /// either it reads our value, or our later checks of `closed` see the close. A load
    /// per acquisition otherwise, on the senders' own line.
    #[inline(always)]
    fn claim_busy(&self) {
        barrier::ensure_registered();
        let mine = barrier::idle();
        // Relaxed: written under this lock (our acquisition orders the last holder's
        // store); a peer's write only makes us store again.
        if self.header.tail.busy.load(Ordering::Relaxed) != mine {
            self.claim_busy_slow(mine);
        }
    }

    #[cold]
    fn claim_busy_slow(&self, mine: u64) {
        // Release: as the holder's stores of its idle value.
        self.header.tail.busy.store(mine, Ordering::Release);
        // SeqCst: see `claim_busy`.
        fence(Ordering::SeqCst);
    }

    /// [`lock_send`](Self::lock_send) once its first `try_lock` failed.
    #[cold]
    fn lock_send_contended(&self, wait: Wait) -> Result<(SideGuard<'_>, bool), Fail> {
        let r = if self.close_begun() {
            Err(Fail::Disconnected)
        } else {
            lock_side_contended_unless(&self.header.send.lock, wait, || self.close_begun())
        };
        if r.as_ref().is_err_and(|e| *e == Fail::Disconnected) {
            // Refused for the close without the lock: make the close final before we say
            // so (as a holder that sees it does), so that this thread's receives from
            // now on report `Disconnected` too. A `try_` call only if the lock is free
            // or its holder dead (`finalise`).
            self.finalise(wait);
        }
        r
    }

    /// Under the send lock, taken from a dead holder: the repair.
    #[cold]
    pub(super) fn repair_send(&self, guard: &SideGuard<'_>) {
        let h = &self.header;
        // A sender died holding the lock. Whatever it wrote past `tail` is unpublished,
        // and is overwritten now. If it committed a record and died before storing its
        // header, step receivers over it.
        self.skip_dead_record();
        // It may have died between its two stores of `busy`: nobody is between them now
        // (we hold the lock). Release: as the holder's own clear. (`lock_send` then makes
        // the value this process's own: `claim_busy`.)
        h.tail.busy.store(barrier::idle(), Ordering::Release);
        // If it had published without waking, wake the receivers in its place (also
        // those waiting for the record just replaced).
        super::engine::wake_all(&h.wake.recv_wake);
        // Its `free_cache` came from a load we are not ordered after (it never unlocked):
        // refresh it. Acquire: as in `room`.
        let free = h.free.free.load(Ordering::Acquire);
        // Relaxed: read under this lock.
        h.tail.free_cache.store(free, Ordering::Relaxed);
        guard.repaired();
    }

    /// Under the send lock, taken from a dead holder: if that holder committed a record
    /// (`tail` is at the end `pending` names) and died before storing its header (the
    /// word at the record's start is still 0, and no receiver went past it), writes a
    /// `SKIP` record over it. The message is not counted in
    /// [`lost`](Self::lost): its send was never acknowledged, as for a sender killed
    /// before its commit. Idempotent: a repairer killed here leaves the mark on the lock,
    /// and the next holder finds the header stored (nothing to do) or still 0 (writes
    /// the same records again).
    #[cold]
    fn skip_dead_record(&self) {
        let h = &self.header;
        let cap = self.cap();
        // Acquire: pairs with the Release store of `tail` by the dead holder (it never
        // unlocked): its `pending` and its zeroed word are ordered before our reads.
        let tail = pos(h.tail.tail.load(Ordering::Acquire));
        // Relaxed: ordered by the Acquire load above.
        let p = h.tail.pending.load(Ordering::Relaxed);
        let (from, to) = (count(p), pos(p));
        let span = to.wrapping_sub(from);
        // Not committed (`tail` is not at its end: it died before the commit, or
        // `pending` is a peer's garbage); or not a record's span.
        if tail != to
            || span == 0
            || !span.is_multiple_of(8)
            || !from.is_multiple_of(8)
            || span > cap - 8
        {
            return;
        }
        let off = from & (cap - 1);
        // Relaxed: the header is written only under this lock (we hold it); a receiver's
        // reads do not change it.
        if self.word_at(off).load(Ordering::Relaxed) != 0 {
            // Published (the dead holder stored the header, or a repair did).
            return;
        }
        // Still 0. Either the record was never published (the dead holder committed it),
        // or `pending` is still a predecessor's (the dead holder died before storing its
        // own) and that predecessor's record was published, received and its space
        // released, and the 0 is the dead holder's write into that space (its zeroed
        // word or its payload, one ring later). No receiver passes a record without a
        // header, so `head` past `from` means the second. `head` not past `from` now
        // means the record's space was never released while the dead holder lived
        // (`head` only moves forward, and senders write only below `free + cap`, `free
        // ≤ head`), so it never wrote there: the 0 is the record's own. (The dead
        // holder's writes are all visible to us: its process is gone, and we took the
        // lock after it.)
        // Acquire: pairs with the receivers' Release stores of `head`.
        let head = pos(h.head.head.load(Ordering::Acquire));
        if to.wrapping_sub(head) < span {
            return;
        }
        if off + span <= cap {
            // Release: pairs with the receivers' Acquire load of the header at `head`.
            self.word_at(off)
                .store(skip_header(span), Ordering::Release);
        } else {
            // Padding to the end, then the record at 0: the `SKIP` at 0 first, then the
            // padding (Release, as above), which receivers reach first.
            let rec = span - (cap - off);
            self.word_at(0).store(skip_header(rec), Ordering::Release);
            failpoint::hit(Point::ChannelSkipWritten);
            self.word_at(off).store(PAD_HEADER, Ordering::Release);
        }
    }

    /// Repairs a record whose sender died between its commit and its header, from
    /// outside the send path: for a receiver that found no header at `head` while `tail`
    /// is past it, through a wait (or, for a `try_` receive, after a brief spin, if its
    /// thread's probe of the send lock is due: `lock_if_free_or_dead`). Takes the send lock
    /// only if it is free or its holder is dead (a live holder stores the header
    /// itself), never waiting for a live one: so a receiver that holds the receive lock
    /// cannot deadlock with a sender that repairs a dead receiver's claim.
    ///
    /// `Err(Corrupt)` if it took the lock free and found a record committed without its
    /// header anyway: a live sender stores the header before it unlocks, and a dead one
    /// leaves the lock held, so that is a peer's garbage (in the header, `tail` or
    /// `head`), which no sender will ever repair.
    #[cold]
    pub(crate) fn repair_dead_sender(&self, wait: Wait) -> Result<(), Fail> {
        let h = &self.header;
        let Some((guard, died)) = lock_if_free_or_dead(&h.send.lock, wait) else {
            return Ok(());
        };
        if died {
            self.repair_send(&guard);
            return Ok(());
        }
        // Under the send lock, taken free: every record in `[head, tail)` has its header.
        // Acquire: pairs with the Release store by the last holder (its unlock orders it
        // too).
        let tail = pos(h.tail.tail.load(Ordering::Acquire));
        // Acquire: pairs with the receivers' Release stores of `head`. Read after `tail`:
        // a receiver never passes it.
        let head = pos(h.head.head.load(Ordering::Acquire));
        // Acquire: pairs with the Release store of the header (ordered before the last
        // holder's unlock anyway).
        let published = self
            .word_at(head & (self.cap() - 1))
            .load(Ordering::Acquire)
            != 0;
        if tail != head && !published {
            return Err(Fail::Corrupt);
        }
        Ok(())
    }

    /// Under the send lock: the `tail` word and where a message of `len` bytes goes, or
    /// `None` if the ring has no room for it now.
    #[inline]
    fn room(&self, len: usize) -> Result<Option<(u64, Plan)>, Fail> {
        let h = &self.header;
        let cap = self.cap();
        if self.close_begun() {
            // Closed: nothing more commits. We hold the lock, so the close is final.
            self.finalise_locked();
            return Err(Fail::Disconnected);
        }
        // Acquire: pairs with the Release store of `tail` by the previous holder (whose
        // unlock orders it too, unless it died).
        let tail = h.tail.tail.load(Ordering::Acquire);
        // Relaxed: written under this lock; a stale value is only conservative.
        let cached = pos(h.tail.free_cache.load(Ordering::Relaxed));
        let room = match plan(cap, pos(tail), cached, len) {
            Room::Full | Room::Corrupt => {
                // Acquire: pairs with the receivers' Release stores of `free`: their
                // reads of the bytes we may now overwrite happen before our writes.
                let free = h.free.free.load(Ordering::Acquire);
                // Relaxed: read under this lock by the next sender.
                h.tail.free_cache.store(free, Ordering::Relaxed);
                plan(cap, pos(tail), pos(free), len)
            }
            fits => fits,
        };
        match room {
            Room::Fits(plan) => Ok(Some((tail, plan))),
            Room::Corrupt => Err(Fail::Corrupt),
            Room::Full => Ok(None),
        }
    }

    /// The ring had no room for `len` bytes: waits for room as `wait` allows (holding the
    /// send lock or not). If a receiver died holding a claim (`head != free` with the
    /// receive lock free or held by a dead thread), nobody else may ever release its
    /// space (receivers take the lock only for a message): releases it instead, and
    /// returns at once. A blocking or timed send looks only once `free` has not moved
    /// through a whole wait (a live receiver releases within it), so that a stream that
    /// keeps the ring full pays nothing for this; a timed send whose deadline passes
    /// first looks once then, before it reports `Timeout` (a deadline shorter than the
    /// first wait would otherwise never look, and a channel used only through such sends
    /// and `try_` receives would stay full).
    fn wait_for_room(&self, len: usize, wait: Wait, w: &mut RoomWait) -> Result<(), Fail> {
        let h = &self.header;
        let cap = self.cap();
        // Relaxed: compared with our previous look only.
        let f = pos(h.free.free.load(Ordering::Relaxed));
        let stalled = w.stuck == Some(f);
        w.stuck = Some(f);
        // A `try_` send repairs once; a waiting one again after each wait since its last
        // repair (a second receiver may have died holding a claim while it waited). Each
        // repair of a waiting send follows a wait, which keeps its deadline, so a peer
        // that keeps rewriting `free` cannot keep any send looping in repairs.
        let may_repair = !w.repaired || (w.waited && !matches!(wait, Wait::No));
        // A `try_` send looks at a claim only while one is outstanding, and probes the
        // receive lock's holder (syscalls) once per `PROBE_INTERVAL` of its thread's probes
        // of that lock (`lock_if_free_or_dead`).
        let look = may_repair
            && match wait {
                Wait::No => self.claim_outstanding(),
                _ => w.sleep.started() && stalled,
            };
        if look && self.repair_dead_claim(wait)? {
            w.repaired = true;
            w.waited = false;
            return Ok(());
        }
        let room = || {
            if self.close_begun() {
                return true;
            }
            // Relaxed: a snapshot; the re-check under the lock decides.
            let t = pos(h.tail.tail.load(Ordering::Relaxed));
            // Relaxed: ordered after our `WAITING` flag by the fence in `wait_on`.
            let f = pos(h.free.free.load(Ordering::Relaxed));
            !matches!(plan(cap, t, f, len), Room::Full)
        };
        let waited = wait_on(
            &h.wake.send_wake,
            &h.config.fenced,
            wait,
            &mut w.sleep,
            // About 5 µs, a receiver's copy of a large message (see `ROOM_SPIN_NS`).
            crate::wait::ROOM_SPIN_NS,
            room,
            room,
        );
        w.waited = true;
        // One look at the deadline per call, whatever was repaired before (a claim left
        // since the last repair is released). The look is bounded by the passed deadline:
        // it takes the receive lock only if it is free, or after one probe finds its
        // holder dead.
        if matches!(waited, Err(Fail::Timeout)) && !w.deadline_looked {
            w.deadline_looked = true;
            if self.repair_dead_claim(wait)? {
                w.repaired = true;
                w.waited = false;
                return Ok(());
            }
        }
        waited
    }

    /// [`reserve_inner`](Self::reserve_inner), the copy and the commit, without the
    /// slot.
    #[inline]
    fn send_inner(&self, msg: &[u8], wait: Wait) -> Result<(), Fail> {
        let (guard, tail, plan) = self.lock_with_room(msg.len(), wait)?;
        if !guard.is_held_here() {
            // A child forked by a signal handler since the lock was taken (no caller code
            // runs here): the send is its parent's thread's, as for a slot's commit.
            return Err(Fail::Disconnected);
        }
        let sleepers = self.write_and_publish(&guard, tail, plan, msg)?;
        drop(guard);
        self.woken(sleepers);
        Ok(())
    }

    /// Sends `msg` as one message, waiting while the ring has no room for it.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once the channel is closed (at once, even while the
    /// ring is full); [`SendError::TooLarge`] if `msg` is longer than the largest message;
    /// [`SendError::Corrupt`] if the shared state is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions};
    ///
    /// let ch = Channel::new(ChannelOptions::new(1024))?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         for i in 0..100u32 {
    ///             ch.send(&i.to_le_bytes()).unwrap(); // waits while the ring is full
    ///         }
    ///     });
    ///     let mut out = Vec::new();
    ///     for i in 0..100u32 {
    ///         ch.recv(&mut out).unwrap();
    ///         assert_eq!(out, i.to_le_bytes());
    ///     }
    /// });
    /// # Ok::<(), shmstate::ChannelError>(())
    /// ```
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_inner(msg, Wait::Forever).map_err(Fail::send)
    }

    /// Sends `msg` if the ring has room now, without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the ring has no room; [`TrySendError::Busy`] if another
    /// sender held the send side through a brief spin; otherwise as for
    /// [`send`](Self::send). A `try_` call that finds the send side (or, with the ring
    /// full, the receive side) held by a dead process recovers it, which can take up to
    /// 5 ms per side (the lock's recovery, or another thread's recovery that got there
    /// first); it asks whether the holder is dead once per millisecond of this thread's
    /// `try_` calls that find it held (module docs, "Probes of a `try_` call"): until
    /// then, a dead holder reads as `Busy` (or the ring as `Full`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Channel, ChannelOptions, TrySendError};
    ///
    /// // 64 bytes: room for two 16-byte messages (24 bytes each with their headers).
    /// let ch = Channel::new(ChannelOptions::new(64))?;
    /// ch.try_send(&[1; 16])?;
    /// ch.try_send(&[2; 16])?;
    /// assert_eq!(ch.try_send(&[3; 16]), Err(TrySendError::Full));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&self, msg: &[u8]) -> Result<(), TrySendError> {
        self.send_inner(msg, Wait::No).map_err(Fail::try_send)
    }

    /// [`send`](Self::send) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] if the ring had no room (or another sender held the
    /// send side) until then; otherwise as for [`send`](Self::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.send_inner(msg, Wait::timeout(timeout))
            .map_err(Fail::send_timeout)
    }

    /// [`send`](Self::send) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_until(&self, msg: &[u8], deadline: Instant) -> Result<(), SendTimeoutError> {
        self.send_inner(msg, Wait::Until(deadline))
            .map_err(Fail::send_timeout)
    }

    /// Reserves room for a message of `len` bytes, waiting while the ring has none, and
    /// returns the [`SendSlot`] to write it in place.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn reserve(&self, len: usize) -> Result<SendSlot<'_>, SendError> {
        self.reserve_inner(len, Wait::Forever).map_err(Fail::send)
    }

    /// [`reserve`](Self::reserve) without waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_send`](Self::try_send).
    pub fn try_reserve(&self, len: usize) -> Result<SendSlot<'_>, TrySendError> {
        self.reserve_inner(len, Wait::No).map_err(Fail::try_send)
    }

    /// [`reserve`](Self::reserve) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn reserve_timeout(
        &self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendSlot<'_>, SendTimeoutError> {
        self.reserve_inner(len, Wait::timeout(timeout))
            .map_err(Fail::send_timeout)
    }

    /// [`reserve`](Self::reserve) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn reserve_until(
        &self,
        len: usize,
        deadline: Instant,
    ) -> Result<SendSlot<'_>, SendTimeoutError> {
        self.reserve_inner(len, Wait::Until(deadline))
            .map_err(Fail::send_timeout)
    }
}
