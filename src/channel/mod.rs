//! [`Channel`]: a bounded multi-producer multi-consumer channel of variable-length byte
//! messages, in shared memory (a region) or on the heap — Python's
//! `multiprocessing.Queue` at shared-memory speed, with a send written straight into
//! the ring ([`Channel::reserve`]) and a receive without allocation
//! ([`Channel::recv_with`]).
//!
//! # Examples
//!
//! On the heap, between threads:
//!
//! ```
//! use shmstate::{Channel, ChannelOptions, RecvError};
//!
//! let ch = Channel::new(ChannelOptions::new(64 << 10))?;
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         for i in 0..1000u32 {
//!             ch.send(format!("message {i}").as_bytes()).unwrap();
//!         }
//!         ch.close();
//!     });
//!     let mut out = Vec::new();
//!     let mut n = 0;
//!     while ch.recv(&mut out) != Err(RecvError::Disconnected) {
//!         assert_eq!(out, format!("message {n}").as_bytes());
//!         n += 1;
//!     }
//!     assert_eq!(n, 1000);
//! });
//! # Ok::<(), shmstate::ChannelError>(())
//! ```
//!
//! In a region, between processes (here a child after `fork`):
//!
//! ```
//! use shmstate::{ChannelOptions, Region};
//!
//! let region = Region::anonymous(1 << 20)?;
//! let ch = region.channel("events", ChannelOptions::new(16 << 10))?;
//! // SAFETY: the child only uses the channel and exits.
//! match unsafe { libc::fork() } {
//!     0 => {
//!         ch.send(b"from the child").unwrap();
//!         // SAFETY: ends the child without running the parent's destructors.
//!         unsafe { libc::_exit(0) };
//!     }
//!     pid => {
//!         let mut out = Vec::new();
//!         ch.recv(&mut out)?;
//!         assert_eq!(out, b"from the child");
//!         // SAFETY: reaps our own child; a null status pointer is allowed.
//!         unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! A header of seven 64-byte lines, then the ring (the object's length is the ring's,
//! in 8-byte words; a power of two, 64 bytes to 2 GiB). Each line holds what one party
//! writes, so that senders and receivers do not write the same line on their paths:
//!
//! | Line | Words | Written by | Read by |
//! |---|---|---|---|
//! | 0 config | `shape` = magic "CHN", version 5 (high half; see the record headers below), largest message (low half); `capacity`; `closed` (set by `close`, never cleared: sends are refused from then on); `end` (a top bit and the last `tail`, once the close is final, below); `fenced` (set once a process that cannot issue the process-wide barrier sleeps on the channel: every waker fences from then on) | the creator; `closed` by `close`; `end` by whoever makes the close final; `fenced` by such a sleeper | everyone, each operation (read-mostly: stays in every cache) |
//! | 1 send lock | the senders' [`RawMutex`](crate::RawMutex) | senders | senders |
//! | 2 tail | `tail` = messages committed (30 bits, high half), position (low half); `free_cache`; `pending` = the span of the record being committed; `busy` = 1 while the send-lock holder is inside its commit (from before its last check of `closed` to its header store: a few stores), else its idle value: 0, or 2 in a process that cannot use the barrier (it fences instead, which lets a finaliser without the barrier rely on its fence) | the send-lock holder (`busy` also whoever recovers the lock from a dead one) | receivers read `tail` only when they find no record at `head` (for the close, a record committed without its header, or before sleeping); a `try_` receive only if `closed` is set, or once in 64 looks at the channel and at its first look after a tick of the coarse clock (1-10 ms); `busy` only a party making the close final |
//! | 3 receive lock | the receivers' [`RawMutex`](crate::RawMutex) | receivers | receivers |
//! | 4 head | `head` = messages claimed (high), position (low); `lost` = messages lost, and a top bit (`LOSS_PENDING`) while a repair that counted a claim has not finished | the receive-lock holder | `len`, the repairs |
//! | 5 free | `free` (position) | the receive-lock holder, per message | senders, when their cached copy says the ring is full |
//! | 6 wake | `recv_wake`, `send_wake`: `WAITING` (bit 31) and a generation | sleepers, and wakers when someone sleeps | after each send / receive |
//!
//! Positions are byte counts that wrap at 2³²; a position's ring offset is it modulo the
//! capacity (a power of two, at most 2³¹, so the wrap is seamless and the cursors are
//! never more than a ring apart). Always `free ≤ head ≤ tail ≤ free + capacity`: the
//! bytes `[free, head)` belong to the receiver that claimed them, `[head, tail)` are
//! committed records, `[tail, free + capacity)` are free for the send-lock holder.
//!
//! A record is a header word — kind in the high half (`MESSAGE`, `PAD` or `SKIP`), length
//! in the low half — then the payload, padded to 8 bytes. **The header publishes the
//! record**: the word at `tail` is 0 until the next record's header is stored there
//! (a sender zeroes the word after its record before it commits; it keeps 8 bytes of
//! slack for it, so a ring holds 8 bytes less than its capacity), and receivers wait on
//! the header word at `head`, not on `tail`. A record never wraps: a sender whose record
//! does not fit before the ring's end writes a `PAD` record up to the end and its record
//! at offset 0 (the header at 0 first, then the `PAD`, which receivers reach first). A
//! `SKIP` record is the repair of a record whose sender died between its commit and its
//! header (below): receivers step over it. The largest message is at most
//! `capacity / 2 - 8`, so a record takes at most half the ring: if it does not fit
//! before the end, the offset is past the middle, and an empty ring has room for the
//! padding, the record and the slack (a sender never waits for room that cannot come).
//!
//! # Protocol
//!
//! **Send** (`send`, `reserve` … `commit`): take the send lock; check `closed`; read
//! `tail`, and check room (the record and 8 bytes of slack) against `free_cache`
//! (refreshing it from `free`, Acquire, only when that says full); if there is no room,
//! unlock and wait (below). Else write the payload in place (the slot is the caller's:
//! no receiver reads past a zero header). At commit: zero the word after the record,
//! store `pending` (the record's span, for the repair below); store `busy = 1`, then a
//! compiler barrier, then check `closed` again (set: `busy = 0`, `Disconnected`, nothing
//! committed); *commit* with a plain store of `tail` (Release: only the send-lock holder
//! writes it); *publish*: store the record's header (Release; on a wrap, the record's at
//! 0, then the `PAD`); store `busy = 0` (Release); a compiler barrier; if `closed` is set
//! now, make the close final (below, "Closing"); load `recv_wake`; unlock; if it had
//! `WAITING`, wake the receivers. No read-modify-write and no fence per message: the two
//! compiler barriers pair with the barrier a sleeper or a closer issues (below,
//! "Waiting"); a process that cannot use it fences there instead. Nothing is visible
//! before the header, and nothing is committed before the store of `tail`, so an abort
//! (or a dropped [`SendSlot`]) is the unlock, then a fence and a look at `closed` (a close
//! left not final behind the slot is made final then: below, "Closing").
//!
//! **A held send side** ([`Channel::send_side`], [`SendSide`]): the send lock is taken
//! once and kept across sends. Each send is the steps of a send between its lock and its
//! unlock (the closed check, room against `free_cache`, the payload, the zeroed word and
//! `pending`, `busy`, the second closed check, the store of `tail`, the header, `busy`
//! again), then the wake of sleeping
//! receivers, the lock still held; dropping the side unlocks, then fences and looks at
//! `closed`, as a slot given back does. A send that finds no room waits holding the lock, and
//! repairs a dead receiver's claim as any sender does (a `try_` send at once, or a
//! millisecond after its thread's previous probe: "Probes of a `try_` call"; a blocking
//! or timed one once `free` has not moved through a wait), so other senders wait for the
//! side as they wait for a [`SendSlot`]. The per-message protocol is the same, so are its
//! crash windows (below); what the side saves is the lock's two read-modify-writes per
//! message.
//!
//! **Receive**: if the header word at `head` is 0 at a glance (no lock, no write), look
//! at `closed`, `end` and `tail` (closed, final, and `head` at `end`: `Disconnected`;
//! closed and not final: make it final, below) and wait. (A `try_` receive looks at
//! `tail` only if the config line says the channel is closed, or once in 64 of its
//! thread's looks at this channel that find no header, counted per channel, and at its
//! first such look after a tick of the coarse clock (1-10 ms) that reads that clock: a
//! slow poller's next look, a spinning one's within twice its looks since it last read
//! `tail` (it reads the clock at the 1st, 2nd, 4th, ... look). So a slow poller reads
//! `tail` every time, and a spinning one rarely: a receiver that polls `tail` at every
//! look keeps its line moving between the cores at every message.) Else take
//! the receive lock (repairing a dead receiver's claim, below); load the header at `head`
//! (Acquire, pairing with the sender's Release store: the payload is ordered before our
//! reads); validate the record against `free + capacity`; step over `SKIP` records (each
//! claimed and released at once); *claim* the message: store `head` past it (Release) —
//! from here the message is this receiver's; copy it out (the closure forms: into a
//! process-local buffer, then run the closure on it); then *release* it: store `free =
//! head` (Release, pairing with the senders' Acquire load: the reads happen before a
//! sender overwrites the bytes); unlock; a compiler barrier and a load of `send_wake`:
//! wake senders if one sleeps.
//!
//! **A record committed without its header** (`tail` past `head`, the header at `head`
//! still 0): its sender is one store from publishing it, or was stopped or killed there.
//! A receiver that finds one gives it a brief spin, then (a `try_` call after that spin,
//! at most once per call, at a look that reads `tail`: within 64 of its thread's looks at the channel or at
//! its first after a tick of the coarse clock, 1-10 ms, and probing a holder once a
//! millisecond, "Probes of a `try_` call"; a waiting one after each wait) takes the send
//! lock *if it is free or its holder is dead*
//! (never waiting for a live holder, so a receiver holding the receive lock cannot
//! deadlock with a sender repairing a dead receiver's claim): from a dead holder it
//! repairs (below); found free, every committed record has its header, so a missing one
//! is a peer's garbage: `Corrupt`.
//!
//! **A held receive side** ([`Channel::recv_side`], [`RecvSide`]): the receive lock is
//! taken once (with the repair, below) and kept across receives; the side keeps the
//! cursors it writes (`head`, `free`) instead of loading them. Each receive is the steps
//! of a receive between its lock and its unlock (the record at `head`, the claim, the
//! copy, the release), then the wake of sleeping senders, the lock still held; dropping
//! the side unlocks. A receive that finds no message waits holding the lock; it reads
//! `tail` only after its first wait, at its deadline, and in a `try_` call only if the
//! config line says the channel is closed, or once in 64 calls and at its first call
//! after a tick of the coarse clock, so that while a stream
//! flows the only shared line it reads is the one the next record's header goes to. The
//! per-message protocol is the same, so are its crash windows (below).
//!
//! **Waiting**: spin briefly with loads (a receiver about 10 µs, which outlasts a peer's
//! wake-up, so that a request and its reply do not go through the kernel; a sender
//! waiting for room about 5 µs, a receiver's copy of a large message; counted in pauses
//! measured once per process, whatever a pause costs on the machine; a timed wait stops
//! spinning at its deadline), then set `WAITING` in the side's wake word (a `fetch_or`,
//! always), a `SeqCst` fence, and the process-wide barrier
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` (unless this thread issued one since the
//! word last changed: a later slice, or the next wait on a quiet channel, needs none),
//! re-check (the header at
//! `head`, the close; for a sender `free`), and futex-wait on the word in slices (50 µs
//! doubling to 10 ms, the crate's [`wait`](crate::wait) policy). The waker (a sender
//! after its header store, a receiver after its release) has only a compiler barrier
//! between its store and its load of the wake word. The barrier executes a full memory
//! barrier on every CPU running a thread of a registered process (a thread not running is
//! ordered by the scheduler's own barriers), so either the waker's load comes after it on
//! its CPU, and sees `WAITING` (it wakes, bumping the generation, so that a futex wait
//! that comes later returns at once), or its store came before it, and the re-check sees
//! it: the asymmetric Dekker pattern of userspace RCU. **This rests on the kernel's
//! contract for `membarrier(2)`**, outside Rust's memory model; the loom models stand the
//! barrier in by `SeqCst` fences on both sides. Every process registers
//! (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`) when it makes or opens a channel; a forked
//! child inherits the registration (the kernel copies it with the address space). A
//! process that cannot use the barrier (a kernel before 4.16, a seccomp filter that
//! refuses it) fences (`SeqCst`) on its busy side instead, and when it sleeps it sets the
//! channel's `fenced` word first, so that every waker fences from then on (pairing with
//! the sleeper's fence); a waker that read `fenced` just before can miss that sleeper's
//! flag once, which costs the sleeper one slice (≤ 10 ms), as a stopped waker does. The
//! barrier costs microseconds (an interrupt to each CPU running a thread of any
//! registered process on the machine; from Linux 6.8 the kernel runs one such barrier at
//! a time) per sleep after the word changed, never per message while both sides are
//! busy; a receiver that sleeps for every message (a slow producer) pays it per message,
//! and so does each of N receivers asleep on one channel. A receiver that finds a record committed without its
//! header spins briefly for it before it sleeps (its sender is one store away). A
//! flag left set by a party that then did not sleep costs the next waker a needless
//! wake. A repair's or a close's wake fences (`SeqCst`) before its bump, pairing with the
//! sleepers' fence. So neither side makes a syscall while the other is merely busy.
//!
//! **Closing**: `close` stores `closed` (`SeqCst`): senders refuse from then on (at their
//! check before the reservation, or at their check after setting `busy`). Then it makes
//! the close *final*: it records `end`, the last `tail` (with a top bit that no `tail`
//! has), once no send can commit any more, and wakes every sleeper. Receivers report
//! `Disconnected` when `end` is recorded and `head` has reached it (a `tail` that then
//! differs from `end` is a peer's garbage: `Corrupt`). No send commits after `end` is
//! recorded, and every send that returned `Ok` committed before it: so a send
//! acknowledged `Ok` is always received before any receiver is told `Disconnected`, and
//! a send told `Disconnected` is never received. `end` is recorded once (a
//! compare-exchange from a value without the top bit), by:
//!
//! - a send-lock holder that sees `closed` (at either check of a send, at its look after
//!   its publication, or taking a send side): it holds the lock, and every later holder
//!   sees `closed` too, so `tail` is final;
//! - `close`, and a receiver that finds the channel closed and not final (once per call,
//!   and again after each wait): if the send lock is free or its holder is dead, under
//!   the lock (recovering it, with the repairs below). Otherwise (a live holder: a held
//!   send side, a sender inside a send) it fences, issues the barrier (once per thread
//!   and channel: a barrier after `closed` serves every later look) and looks at `busy`
//!   for a few microseconds: at an idle value, `tail` is final (the holder committed
//!   before, and its Release store of the idle value orders its `tail`; or it has yet to
//!   set `busy`, and its check after that sees `closed`, by the barrier pattern with its
//!   `busy = 1`, compiler barrier and load of `closed`). If `busy` stays 1 (a holder
//!   stopped inside its commit), the holder makes the close final itself when it
//!   continues (its look at `closed` after clearing `busy` sees it, by the same
//!   pattern), or whoever recovers its lock if it dies. A `try_` call issues no barrier:
//!   it makes the close final only through the lock. A process that cannot issue the
//!   barrier relies on the holder's fence instead, which the holder promises by its idle
//!   value 2 (a process that cannot use the barrier fences before its check of
//!   `closed`; a holder that takes the lock and finds the other kind's idle value stores
//!   its own, then fences); so it cannot make the close final only while a registered
//!   process holds the send lock idle (a held send side between sends, a reservation
//!   not yet committed). That holder then does when it lets the lock go without a send
//!   (a [`SendSide`] dropped, a [`SendSlot`] given back): after its unlock it fences
//!   and looks at `closed`, and the finaliser looks at the lock once more after its own
//!   fence, so either the holder makes it final or the finaliser finds the lock free
//!   (or held by a later sender). Or a later send that sees `closed`, or a registered
//!   receiver that waits. A registered process's single send or slot commit (or a
//!   `try_` send that finds the ring full), racing such a close, looks at `closed` only
//!   behind compiler barriers and may leave the close not final until the next receive,
//!   send or `close` (a receiver asleep
//!   without the barrier sees it at the end of its sleep slice, ≤ 10 ms). A send refused
//!   for the close while queued behind another holder tries to make it final too before
//!   it returns.
//!
//! [`Channel::is_closed`] says the close is final. It is when `close` returns, unless a
//! sender is stopped (SIGSTOP) inside its commit then (a few stores): receivers get
//! every message, then wait (`Empty`, `Timeout`, sleep) instead of `Disconnected` until
//! it is continued or killed.
//!
//! **Probes of a `try_` call**: a `try_` call that finds a lock of the channel held
//! through its brief spin (the send lock, or the receive lock: a held side, a receiver
//! copying a message out), a `try_` send that finds the ring full while a receiver
//! holds a claim, or a `try_` receive that finds a record committed without its header
//! (its sender holds the send lock), asks whether the holder is dead (a `kill` and a
//! read of `/proc`: microseconds) only if its thread has not asked about that lock for a
//! millisecond (or does not remember: a small table per thread, of 16 locks); the others
//! report `Busy`, `Full` or (a receive) `Empty` at once, after a clock read. A dead
//! holder is still recovered by the first call of a polling thread a millisecond after
//! its previous probe (the next call, for a thread that polls more slowly; for a record
//! without its header, its first call after that which reads `tail`: see **Receive**),
//! and polling a channel a live party keeps busy costs a
//! clock read per call, not a probe's syscalls (a `try_send` on a full ring while a
//! receiver copies a message out took 3.4-4.3 µs a call with a probe each time, 63 ns
//! with one a millisecond, on an Intel Xeon VM whose clock read is a vDSO call).
//!
//! # The loss rule
//!
//! Delivery is **at most once**. A receiver killed between its claim and its release takes
//! the message with it: the next receiver to take the lock finds `head ≠ free`, counts the
//! message in [`Channel::lost`] and releases the space (`free = head`). It is never
//! delivered twice, and counted exactly once: the count sets a bit in the `lost` word that
//! the repairer clears after its release (or the next holder of the lock, if the repairer
//! died first), so a repair repeated after its repairer died counts nothing. (A peer
//! writing garbage into that word can hide or double one count.) A sender killed before its
//! header is stored sends nothing: before its commit, its space is reused by the next
//! sender; between its commit and its header, the next party to take the send lock replaces
//! its record with a `SKIP` record. Neither is counted in `lost()` (the send was never
//! acknowledged). Messages are FIFO per sender, and in one total order (the order of the
//! commits) across senders.
//!
//! # Crash windows
//!
//! Failpoint tests: `tests/channel_failpoints.rs` (one per line marked †; the lines
//! "lock taken, nothing written/changed" leave what the next line leaves, less the
//! bytes, and are repaired the same way).
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Send: lock taken, nothing written | the send lock held by a dead thread; the ring unchanged; receivers unaffected | the next sender: blocking and timed ones after their first probe slice (≈ 50 µs–1 ms after the kernel tore the process down), `try_` ones after their spin (≤ 5 ms), at once or a millisecond after their thread's previous probe of the lock (see "Probes of a `try_` call") |
//! | Send: payload written, the word after it zeroed, `pending` not stored † | as the next line; `pending` still names the previous record, which `tail` is at: the repair finds its header stored, or (if that record was received and its space reused, so that this sender's payload or zeroed word overwrote its header) `head` past it, and writes nothing | as the next line (test `a_sender_killed_before_pending_leaves_the_previous_record_alone`) |
//! | Send: payload written, the word after it zeroed, `pending` stored; `busy` not set † | as above; the bytes lie past `tail`, never visible (the zeroed word is free space; `pending` names a span `tail` is not at) | as above: the next sender writes over them. Stopped there while the channel is closed, the close is made final at once (`busy` is 0) and the sender's check after setting `busy` refuses its send when it is continued |
//! | Send: `busy` set, `closed` not checked again † | as above, and `busy == 1` | as above; the party that recovers the lock clears `busy`. **Stopped there while the channel is closed, it keeps the close from being final** (it may still commit): receivers get every message, then wait (`Empty`, `Timeout`), until it is continued (its check sees `closed`: `Disconnected`, and it makes the close final) or killed (whoever recovers its lock makes it final: a waiting receiver after its first wait). Test `a_close_while_a_sender_is_busy_before_its_closed_check` |
//! | Send: `tail` moved past the record (committed), its header not stored † | the record committed but not published: receivers wait at it (they get `Empty`/`Timeout` within their bounds; `len()` counts it); the send lock held. **A *stopped* sender here stalls receivers too**, for as long as it is stopped: the one window where it does (one store wide) | the next party to take the send lock from the dead holder: a sender (as the first line), or a receiver that found the record without its header (a `try_` one after a brief spin, at a look that reads `tail`: within 64 of its thread's looks at the channel or its held side's empty polls or at its first after a tick of the coarse clock (1-10 ms), once a millisecond has passed since its thread's last probe of the send lock ("Probes of a `try_` call"), a waiting one after its first sleep slice, ≤ 10 ms, a timed one also at its deadline if that comes first; tested with a receiver asleep when the sender dies, and a held receive side). It writes a `SKIP` record over the span `pending` names (checked: `tail` is at its end, its header is still 0, `head` not past it), wakes every receiver; receivers step over it. Tests `sender_killed_between_commit_and_header_*`, `a_sleeping_receiver_repairs_*`, `a_close_after_a_sender_died_*`, `a_slow_try_poller_repairs_*`, `a_try_receive_probes_a_live_sender_stopped_before_its_header_once_a_millisecond` |
//! | Repair of a record without header, on a wrap: `SKIP` at offset 0 stored, the `PAD` before it not † | the send lock held by a dead thread, still marked; the record still unpublished | the next taker of the lock repeats the repair (idempotent: the same two stores) |
//! | Send: header stored (published), `busy` not cleared, lock not released † | the message published (receivers get it: a sleeping one at the end of its slice, ≤ 10 ms, if no sender comes first); `busy == 1`; the send lock held | as the first line; the recovering party also clears `busy` and wakes every receiver. Stopped there while the channel is closed, it keeps the close from being final (as above) until it is continued (its look at `closed` after clearing `busy` makes it final; the send returns `Ok`) or killed. Test `a_close_while_a_sender_is_busy_after_its_header` |
//! | Send: unlocked, receivers not woken † | a sleeping receiver not woken; its `WAITING` flag still set | the next send by another sender sees the flag and wakes it; without one, it wakes at the end of its slice (≤ 10 ms) and sees the message (test `a_stopped_waker_delays_a_sleeping_receiver_by_one_slice_at_most`) |
//! | Receive: lock taken, nothing changed | the receive lock held by a dead thread; senders unaffected | the next receiver, as the first line |
//! | Receive: `head` stored (claimed), `free` not † (also while stepping over a `SKIP` record: then nothing is lost, and the repair counts nothing) | the message claimed by the dead receiver; its space not released | the next receiver to take the lock for a message; or, if that was the last message, a sender that finds the ring full (`try_` ones at once, or a millisecond after their thread's previous probe, blocking and timed ones after their first wait and again after each later wait that finds `free` unmoved, timed ones also at their deadline if it comes first) or a receiver after its first wait: it counts the message in `lost()` (exactly once, even if a repairer dies mid-repair) and releases its space (never redelivered), and wakes every sender |
//! | Receive: `free` stored, lock not released † | nothing lost; the receive lock held | as the first receive line |
//! | Receive: unlocked, senders not woken † | a sleeping sender not woken | it wakes at the end of its slice (≤ 10 ms) |
//! | Send side held ([`SendSide`]), between sends † | the send lock held by a dead thread; what the side published before is received as usual | as the first line. Inside a send under the side, a kill leaves what the rows "payload written … `tail` not moved", "`tail` moved past the record (committed), its header not stored" and "header stored (published), lock not released" say (the latter also after the side's publish and before its wake: the side still holds the lock), tested as `side_holder_killed_*` |
//! | Receive side held ([`RecvSide`]), between receives †, or asleep waiting for a message † (`WAITING` set in `recv_wake`) | the receive lock held by a dead thread; `head == free`: nothing lost; the flag | as the first receive line; the flag costs the next send one needless wake. Inside a receive under the side, a kill leaves what the rows "`head` stored (claimed), `free` not", "`free` stored, lock not released" and (between its release and its wake) "unlocked, senders not woken" say: a sender asleep for room wakes at the end of its slice (≤ 10 ms); tested as `recv_side_holder_killed_*` |
//! | Send side held, asleep waiting for room † (`WAITING` set in `send_wake`) | the send lock held by a dead thread; the flag | as the first line; the flag costs the next receiver's release one needless wake |
//! | Send: lock recovered from a dead holder, repaired (receivers woken, `free_cache` refreshed), mark not cleared † | the send lock held by a dead thread, still marked | the next sender recovers it and repeats the repair (idempotent) |
//! | Repair of a dead receiver's claim: the message counted in `lost` with the `LOSS_PENDING` bit set, `free` not stored † | the claim not released; the loss counted | the next party to take the receive lock from the dead repairer (a receiver, or a sender that finds the ring full) repeats the repair: the bit says the claim is counted, so it only releases the space and clears the bit (the loss counted once, never redelivered) |
//! | Repair: `free` stored, `LOSS_PENDING` not cleared † | the space released (the loss counted, unless the claim was of `SKIP` records); the receive lock held by a dead thread; a sender asleep for room not woken | the next party to take the receive lock finds nothing to repair and clears the bit, so that the next loss is counted; the sender wakes at the end of its slice (≤ 10 ms) |
//! | Repair: the bit cleared, senders not woken | the receive lock held by a dead thread; a sender asleep for room not woken | the next party to take the receive lock finds nothing to repair; the sender wakes at the end of its slice (≤ 10 ms) |
//! | Repair: done, mark not cleared † | the receive lock held by a dead thread, still marked | the next party to take the receive lock (a receiver, or a sender that finds the ring full) recovers it; the repair finds `head == free`: the loss counted once |
//! | Drain: a message released, the next not claimed † | the receive lock held; nothing lost | as the first receive line: the rest is received in order |
//! | Close: `closed` stored, the close not yet final (`end` not recorded) † | sends refused; `is_closed()` false; receivers get what was sent, then find the close not final | the next receiver that finds no message makes it final: through the send lock if it is free or its holder dead, else (a waiting receiver, after its first wait; a timed one also at its deadline) through the barrier and `busy`; a `try_` receive only through the lock. Or a sender, which holds the lock when it sees `closed`, or a later `close`. Test `a_closer_killed_before_the_close_was_final` (the send side held by a live process: made final through the barrier) |
//! | Send side let go, or a slot given back: unlocked, `closed` not looked at again (no failpoint: it leaves the line above's state, with the lock free) | the send lock free; a close whose finaliser could not make it final (it cannot issue the barrier, and the lock was held by a registered process) still not final | as the line above: the next receiver that finds no message makes it final through the free lock, or a sender (tests `a_close_left_not_final_*`; the look itself: `a_close_by_a_refused_process_is_made_final_when_the_registered_holder_lets_go` and `..._gives_its_slot_back`) |
//! | Close, receive, a send side let go or a slot given back: taking the send lock to make the close final, `end` recorded or not, lock not released | the send lock held by a dead thread; the close final, or not yet | as the first line; a close not yet final is then made final as the line "Close: `closed` stored" says, by whoever recovers the lock |
//! | Close: made final (or left to a busy sender), sleepers not woken † | sleepers not woken | each wakes at the end of its slice (≤ 10 ms) and sees the close |
//! | Asleep (`WAITING` set) | the flag | the next wake: one needless syscall |
//!
//! A process *stopped* (SIGSTOP) inside a send (between reserve and commit, or holding a
//! slot or a send side) stalls the other senders only: receivers go on receiving what
//! is published. Stopped between its commit and its header (one store), it stalls
//! receivers too once they reach its record: `try_` receives report `Empty`, timed ones
//! `Timeout`, blocking ones sleep in slices until it is continued or killed. (Stopped
//! after its header and before its wake, it can delay a sleeping receiver by one sleep
//! slice, at most 10 ms, if no other sender publishes meanwhile: see the table.) Stopped
//! inside its commit (between its two stores of `busy`: a few stores) while the channel
//! is closed, it keeps the close from being final: receivers get every message, then wait
//! instead of reporting `Disconnected`, until it is continued or killed.
//! `try_send` returns [`TrySendError::Busy`] after a brief spin, timed sends return
//! `Timeout` at their deadline, untimed sends wait until it is continued or killed. A
//! receiver stopped between its claim and its release stalls the other receivers
//! (`Busy`/`Timeout`/wait, likewise) and keeps its message's space; senders go on while
//! there is room. So does a receiver stopped holding a receive side ([`RecvSide`]). Two
//! narrow exceptions: a sender stopped while it repairs a dead receiver's claim (it then
//! holds the receive lock for a few stores) stalls receivers too, as a stopped receiver
//! would; and a receiver stopped while it looks for a dead sender (it then holds the
//! send lock for a few loads, or for the `SKIP` repair) stalls senders, as a stopped
//! sender would (and, if stopped inside the repair, receivers at that record too). So
//! does a party stopped while it holds the send lock to make a close final (a closer, a
//! receiver, a send side or slot let go: a few loads and a store): senders are refused
//! anyway; a registered receiver that waits makes the close final through `busy`, and
//! others wait, until it is continued or killed.
//!
//! # Untrusted memory
//!
//! Every operation reads the config word and validates it (magic, largest message at most
//! `capacity / 2 - 8`); the capacity comes from the process-local length of the object,
//! never from shared memory. Cursors are validated on every use (8-aligned, `free ≤ head ≤
//! tail ≤ free + capacity`; receivers check `tail` when they read it, that is when they
//! find no record at `head`), record headers against the largest message, the ring's
//! end and `free + capacity`; a receive steps over at most a ring's worth of `SKIP`
//! records. Anything else — a lying length, a cursor out of range, a `PAD` record in the
//! wrong place, a torn header, a record committed without its header while the send
//! lock is free — makes the operation return `Corrupt` (no panic, no out-of-bounds
//! access, no endless loop); the channel is not reset, and every later operation that
//! meets the same bytes reports `Corrupt` too. A lying length inside that range (or a
//! garbage `tail` behind a record receivers have not reached) can hand receivers garbage
//! messages before the `Corrupt`; as any message, they must treat its bytes as
//! untrusted. A recorded `end` that differs from `tail` is `Corrupt` (no send moves `tail`
//! once `end` is recorded). A `closed` word set by a peer closes the channel; garbage in
//! `fenced` only makes wakers fence; garbage in `busy` can keep a party from making the
//! close final through the barrier (receivers then wait at the close, as behind a
//! stopped sender, until the send lock is free, its holder's next send, or a recovery),
//! never a send or a receive.
//! Waits stay bounded by their deadlines whatever a peer writes into the wake words.
//! No reference (`&[u8]` / `&mut [u8]`) is ever made over ring bytes: payloads are
//! copied in and out with relaxed atomic word loads and stores, and the closure forms
//! (`recv_with`, `drain`, `recv_value`) get a process-local copy. A process that ignores
//! the protocol and writes a message's bytes while another copies them garbles only that
//! message's contents, which the receiver must treat as untrusted bytes (as it must any
//! message); it cannot change bytes under a running closure.
//!
//! # Serde
//!
//! With the `serde` feature, `Channel::send_value` and `Channel::recv_value` (and
//! their `try_`/timed forms) send any `serde` type, encoded with `postcard` straight into
//! the reserved slot.

mod barrier;
mod engine;
mod error;
#[cfg(not(loom))]
mod inspect;
mod layout;
mod options;
mod recv;
mod recv_side;
#[cfg(not(loom))]
mod region;
mod send;
mod state;
#[cfg(all(feature = "serde", not(loom)))]
mod value;

pub use error::{
    ChannelError, RecvError, RecvIntoError, RecvTimeoutError, RecvTimeoutIntoError, SendError,
    SendTimeoutError, TryRecvError, TryRecvIntoError, TrySendError,
};
#[cfg(not(loom))]
pub use inspect::ChannelSnapshot;
#[cfg(not(loom))]
pub(crate) use inspect::decode;
pub use layout::Channel;
pub use options::{ChannelOptions, MAX_CAPACITY, MIN_CAPACITY};
pub use recv_side::RecvSide;
#[cfg(not(loom))]
pub use region::ChannelOpenError;
pub use send::{SendSide, SendSlot};
#[cfg(all(feature = "serde", not(loom)))]
pub use value::{RecvValueError, SendValueError};
