//! `Channel` crash windows (the module docs' table, lines marked †): a process is stopped
//! at a step of a send or a receive (a failpoint), checked for what it holds up while
//! stopped, SIGKILLed there, and the repair is checked: no receiver is stalled, nothing
//! is delivered twice, a claimed message is counted lost, and the channel goes on. Runs
//! only in a build with `--cfg shmstate_test_hooks` (as `tests/failpoints.rs`):
//!
//! ```sh
//! RUSTFLAGS="--cfg shmstate_test_hooks" CARGO_TARGET_DIR=target/hooks \
//!   cargo nextest run --test channel_failpoints
//! ```
#![cfg(shmstate_test_hooks)]

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use common::{fork_children, wait_all, wait_until_asleep_in_futex, watchdog};
use locks_support::{kill, reap};
use shmstate::failpoint::Point;
use shmstate::{
    Channel, ChannelOptions, Region, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// How long a repair may take at most here: the table promises a probe slice or so
/// (about a millisecond); the margin is for a loaded machine.
const REPAIR: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(20);

/// A channel in anonymous shared memory, inherited by forked children.
fn shared_channel(region: &Region) -> &Channel {
    region
        .channel("ch", ChannelOptions::new(4096))
        .expect("channel")
}

fn recv_now(ch: &Channel) -> Vec<u8> {
    let mut out = Vec::new();
    ch.recv_timeout(&mut out, REPAIR)
        .expect("a message within the repair bound");
    out
}

/// Send: killed with its record written past `tail`, `tail` not stored. While it is
/// stopped, receivers go on (an earlier message is received, an empty channel says
/// `Empty`) and other senders report `Busy`/`Timeout`; after the kill, the next sender
/// recovers the send side and writes over the unpublished record, which is never
/// received.
#[test]
fn sender_killed_between_claim_and_commit_stalls_no_receiver() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"before").unwrap();
    let pid = common::child_stopped_at(Point::ChannelSendWritten, || {
        ch.send(b"never published").unwrap();
    });
    // Stopped inside its send: receivers are not held up.
    assert_eq!(recv_now(ch), b"before");
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    // Senders are (it holds the send side), within their bounds.
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    assert_eq!(ch.send_timeout(b"x", SHORT), Err(SendTimeoutError::Timeout));
    kill(pid);
    reap(pid);
    let t0 = Instant::now();
    ch.send_timeout(b"after", REPAIR)
        .expect("the send side recovers");
    assert!(t0.elapsed() < REPAIR);
    assert_eq!(recv_now(ch), b"after");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
    // And it keeps working, across processes.
    let pids = fork_children(2, |i| {
        for j in 0..100u32 {
            ch.send(&[i as u8, j as u8]).unwrap();
        }
    });
    let mut n = 0;
    while n < 200 {
        recv_now(ch);
        n += 1;
    }
    wait_all(&pids, REPAIR);
    assert!(ch.is_empty());
}

/// Send: killed with `tail` stored, the send lock not released. The message is
/// delivered; the next sender recovers the lock.
#[test]
fn sender_killed_after_publishing_delivers_its_message() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = common::child_stopped_at(Point::ChannelSendPublished, || {
        ch.send(b"published").unwrap();
    });
    assert_eq!(recv_now(ch), b"published");
    kill(pid);
    reap(pid);
    ch.send_timeout(b"next", REPAIR)
        .expect("the send side recovers");
    assert_eq!(recv_now(ch), b"next");
    assert!(ch.is_empty());
}

/// Receive: killed with `head` stored past the message (claimed), `free` not. While it
/// is stopped, other receivers report `Busy`/`Timeout` and senders go on; after the
/// kill, the next receiver releases the space, counts the message lost, and gets the
/// next one: the claimed message is never delivered (at most once).
#[test]
fn receiver_killed_after_its_claim_loses_the_message_once() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"claimed").unwrap();
    ch.send(b"second").unwrap();
    let pid = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    // Senders are not held up by the stopped receiver.
    ch.try_send(b"third").unwrap();
    assert_eq!(ch.len(), 2);
    kill(pid);
    reap(pid);
    assert_eq!(recv_now(ch), b"second");
    assert_eq!(ch.lost(), 1);
    assert_eq!(recv_now(ch), b"third");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(
        ch.bytes_used(),
        0,
        "the claimed message's space is released"
    );
    assert_eq!(ch.lost(), 1);
    // The ring is whole: fill and empty it again.
    for i in 0..1000u32 {
        ch.send(&i.to_le_bytes()).unwrap();
        assert_eq!(recv_now(ch), i.to_le_bytes());
    }
}

/// A 128-byte channel whose last message (56 bytes, after an 8-byte one that moved the
/// cursors off 0) a child claimed and is stopped holding: the ring has no room for
/// another 56-byte message until the claim is released. The child's pid.
fn last_message_claimed_by_a_stopped_receiver(region: &Region) -> (&Channel, libc::pid_t) {
    let ch = region
        .channel("ch", ChannelOptions::new(128).max_message(56))
        .unwrap();
    ch.send(&[0; 8]).unwrap();
    assert_eq!(recv_now(ch), [0; 8]);
    ch.send(&[1; 56]).unwrap();
    let pid = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    (ch, pid)
}

/// Receive: killed after claiming the *last* message. No receiver takes the receive
/// lock again for a message, so the repair falls to a sender that finds the ring full
/// (here a 56-byte message needs padding: more room than the claim leaves) and to a
/// waiting receiver.
#[test]
fn receiver_killed_claiming_the_last_message_is_repaired_by_a_full_sender() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let (ch, pid) = last_message_claimed_by_a_stopped_receiver(&region);
    // While the claimer lives (stopped), its claim stands.
    assert_eq!(ch.try_send(&[2; 56]), Err(TrySendError::Full));
    kill(pid);
    reap(pid);
    ch.send_timeout(&[2; 56], REPAIR)
        .expect("a full sender repairs the dead receiver's claim");
    assert_eq!(ch.lost(), 1);
    assert_eq!(recv_now(ch), [2; 56]);
}

/// As `receiver_killed_claiming_the_last_message_is_repaired_by_a_full_sender`, with
/// only timed sends whose deadline is far shorter than a first wait, and `try_`
/// receives (neither waits): the timed send looks for the dead claim when its deadline
/// passes, so the channel does not stay full.
#[test]
fn receiver_killed_claiming_the_last_message_is_repaired_by_a_short_timed_send() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let (ch, pid) = last_message_claimed_by_a_stopped_receiver(&region);
    kill(pid);
    reap(pid);
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(
        ch.send_timeout(&[2; 56], Duration::from_micros(1)),
        Ok(()),
        "the timed send repairs the dead receiver's claim at its deadline"
    );
    assert_eq!(ch.lost(), 1);
    assert_eq!(ch.try_recv(&mut out), Ok(56));
    assert_eq!(out, [2; 56]);
}

/// Send: stopped with its record written, `tail` not stored, while the channel is
/// closed and a receiver is told `Disconnected`. Continued, the commit is refused: a send
/// acknowledged `Ok` is never behind a `Disconnected`.
#[test]
fn a_commit_racing_close_is_refused_once_a_receiver_saw_disconnected() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = common::child_stopped_at(Point::ChannelSendWritten, || {
        let r = ch.send(b"late");
        // SAFETY: `_exit` ends the child with the send's result, skipping the harness.
        unsafe {
            libc::_exit(if r == Err(SendError::Disconnected) {
                0
            } else {
                7
            })
        };
    });
    ch.close();
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
    // SAFETY: continues our own stopped child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    wait_all(&[pid], REPAIR);
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
}

/// A receiver killed after claiming the first of two messages, then a second receiver
/// that repairs it stopped at `p` in its repair (with the receive lock) and killed there.
/// Returns the channel's second message's receiver's view: the repair is finished by the
/// next receiver, the second message is delivered once.
fn repairer_killed_at(p: Point) -> u64 {
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"claimed").unwrap();
    ch.send(b"second").unwrap();
    let claimer = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    kill(claimer);
    reap(claimer);
    let repairer = common::child_stopped_at(p, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    kill(repairer);
    reap(repairer);
    assert_eq!(recv_now(ch), b"second");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.bytes_used(), 0);
    let lost = ch.lost();
    // A later receiver killed holding another message: that loss is counted too (the
    // repair left nothing behind that would take it for the one already counted).
    ch.send(b"third").unwrap();
    ch.send(b"fourth").unwrap();
    let claimer = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    kill(claimer);
    reap(claimer);
    assert_eq!(recv_now(ch), b"fourth");
    assert_eq!(ch.lost(), lost + 1, "the next loss is counted");
    lost
}

/// A receiver killed after claiming a message of a 128-byte ring, which is then full; a
/// sender that finds it full repairs the claim, stopped at `p` in its repair (holding the
/// receive lock) and killed there. Returns `lost()` once the next sender has found room
/// (repairing what the dead repairer left) and its message has been received; then checks
/// that a later loss is counted too.
fn sender_repairer_killed_at(p: Point) -> u64 {
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region
        .channel("ch", ChannelOptions::new(128).max_message(56))
        .expect("channel");
    // From offset 16: the 64-byte record of a 56-byte message, then no room for another.
    ch.send(&[0; 8]).unwrap();
    assert_eq!(recv_now(ch), [0; 8]);
    ch.send(&[1; 56]).unwrap();
    let claimer = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        ch.recv(&mut Vec::new()).unwrap();
    });
    kill(claimer);
    reap(claimer);
    let repairer = common::child_stopped_at(p, || {
        let _ = ch.send(&[2; 56]);
    });
    kill(repairer);
    reap(repairer);
    ch.send_timeout(&[3; 56], REPAIR)
        .expect("room once the claim is repaired");
    assert_eq!(recv_now(ch), [3; 56]);
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    let lost = ch.lost();
    ch.send(&[4; 8]).unwrap();
    ch.send(&[5; 8]).unwrap();
    let claimer = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        ch.recv(&mut Vec::new()).unwrap();
    });
    kill(claimer);
    reap(claimer);
    assert_eq!(recv_now(ch), [5; 8]);
    assert_eq!(ch.lost(), lost + 1, "the next loss is counted");
    lost
}

/// A sender's repair of a dead receiver's claim, killed after counting, after releasing,
/// or before clearing the lock's mark: each time the loss is counted once, the ring has
/// room again, and the next loss is counted.
#[test]
fn a_sender_repairer_killed_at_each_step_counts_the_loss_once() {
    watchdog(Duration::from_secs(60));
    for p in [
        Point::ChannelRepairCounted,
        Point::ChannelRepairFreed,
        Point::ChannelRepaired,
    ] {
        assert_eq!(sender_repairer_killed_at(p), 1, "killed at {p:?}");
    }
}

/// Repair: killed with the dead receiver's message counted, its space not yet released.
/// The next receiver repeats the repair, finds the pending bit in the `lost` word and only
/// releases: the loss is counted once, nothing is redelivered.
#[test]
fn repairer_killed_after_counting_counts_the_loss_once() {
    watchdog(Duration::from_secs(60));
    assert_eq!(repairer_killed_at(Point::ChannelRepairCounted), 1);
}

/// Repair: killed with the dead receiver's message counted and its space released
/// (`free` stored), the pending bit not cleared. The next receiver finds nothing to repair
/// and clears the bit: the loss is counted once, nothing is redelivered, and the next
/// loss is counted.
#[test]
fn repairer_killed_after_releasing_counts_the_loss_once() {
    watchdog(Duration::from_secs(60));
    assert_eq!(repairer_killed_at(Point::ChannelRepairFreed), 1);
}

/// Repair: killed after the repair, the lock's owner-died mark not cleared. The next
/// receiver repeats the (idempotent) repair: the loss is counted once.
#[test]
fn repairer_killed_before_clearing_the_mark_counts_the_loss_once() {
    watchdog(Duration::from_secs(60));
    assert_eq!(repairer_killed_at(Point::ChannelRepaired), 1);
}

/// Send side: a sender recovering the send lock from a dead holder, killed before it
/// cleared the mark: the next sender recovers again; nothing is lost or duplicated.
#[test]
fn recovering_sender_killed_before_clearing_the_mark() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let first = common::child_stopped_at(Point::ChannelSendWritten, || {
        let _ = ch.send(b"never");
    });
    kill(first);
    reap(first);
    let second = common::child_stopped_at(Point::ChannelRepaired, || {
        let _ = ch.send(b"never either");
    });
    kill(second);
    reap(second);
    ch.send_timeout(b"sent", REPAIR)
        .expect("the send side recovers");
    assert_eq!(recv_now(ch), b"sent");
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
}

/// Drain: killed between messages of a batch (one released, the next not claimed).
/// Nothing is lost: the rest is received in order by the next receiver.
#[test]
fn receiver_killed_mid_drain_loses_nothing() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    for m in [b"one", b"two", b"six"] {
        ch.send(m).unwrap();
    }
    let pid = common::child_stopped_at(Point::ChannelDrainReleased, || {
        let _ = ch.drain(3, |_| {});
    });
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    kill(pid);
    reap(pid);
    assert_eq!(recv_now(ch), b"two");
    assert_eq!(recv_now(ch), b"six");
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// Receive: killed with `free` stored, the receive lock not released. Nothing is lost;
/// the next receiver recovers the lock.
#[test]
fn receiver_killed_after_release_loses_nothing() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"first").unwrap();
    ch.send(b"second").unwrap();
    let pid = common::child_stopped_at(Point::ChannelRecvFreed, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
        assert_eq!(out, b"first");
    });
    kill(pid);
    reap(pid);
    assert_eq!(recv_now(ch), b"second");
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A 64-byte channel (room for two 16-byte messages) in anonymous shared memory.
fn tiny_channel(region: &Region) -> &Channel {
    region
        .channel("tiny", ChannelOptions::new(64))
        .expect("channel")
}

/// Send: killed after publishing and unlocking, before waking. A receiver asleep in
/// another process wakes at the end of its sleep slice and gets the message.
#[test]
fn sender_killed_before_waking_costs_a_sleeping_receiver_one_slice() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let receiver = fork_children(1, |_| {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
        assert_eq!(out, b"unwoken");
    });
    wait_until_asleep_in_futex(receiver[0]);
    let pid = common::child_stopped_at(Point::ChannelSendUnwoken, || {
        ch.send(b"unwoken").unwrap();
    });
    kill(pid);
    reap(pid);
    wait_all(&receiver, REPAIR);
    assert!(ch.is_empty());
}

/// Receive: killed after releasing and unlocking, before waking. A sender asleep on the
/// full ring in another process wakes at the end of its slice and sends.
#[test]
fn receiver_killed_before_waking_costs_a_sleeping_sender_one_slice() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = tiny_channel(&region);
    ch.send(&[1; 16]).unwrap();
    ch.send(&[2; 16]).unwrap();
    // An 8-byte message: its record (16 bytes, after 16 of padding, with 8 of slack)
    // fits once the first record is released.
    let sender = fork_children(1, |_| ch.send(&[3; 8]).unwrap());
    wait_until_asleep_in_futex(sender[0]);
    let pid = common::child_stopped_at(Point::ChannelRecvUnwoken, || {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
    });
    kill(pid);
    reap(pid);
    wait_all(&sender, REPAIR);
    assert_eq!(recv_now(ch), [2; 16]);
    assert_eq!(recv_now(ch), [3; 8]);
    assert_eq!(ch.lost(), 0);
}

/// Close: killed with `closed` stored, the sleepers not woken. A receiver asleep in
/// another process wakes at the end of its slice and sees the close.
#[test]
fn closer_killed_before_waking_costs_a_sleeping_receiver_one_slice() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let receiver = fork_children(1, |_| {
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Err(shmstate::RecvError::Disconnected));
    });
    wait_until_asleep_in_futex(receiver[0]);
    let pid = common::child_stopped_at(Point::ChannelCloseUnwoken, || ch.close());
    kill(pid);
    reap(pid);
    wait_all(&receiver, REPAIR);
    assert!(ch.is_closed());
}

/// Resumes a child of ours stopped at a failpoint.
fn resume(pid: libc::pid_t) {
    // SAFETY: signalling our own stopped child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
}

/// Send: stopped with `busy` set, before its check of `closed` (nothing committed), while
/// the channel is closed. The close cannot be made final (the sender may still commit):
/// receivers get what was sent, then wait (`Empty`, `Timeout`), not `Disconnected`.
/// Continued, the sender sees `closed`, commits nothing, reports `Disconnected` and makes
/// the close final; killed instead, the receiver that recovers its send lock makes it
/// final (the repair clears `busy`). Either way the stopped sender's message is never
/// received.
#[test]
fn a_close_while_a_sender_is_busy_before_its_closed_check() {
    watchdog(Duration::from_secs(60));
    for killed in [false, true] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = shared_channel(&region);
        ch.send(b"before").unwrap();
        let pid = common::child_stopped_at(Point::ChannelSendBusy, || {
            let r = ch.send(b"never");
            std::process::exit(if r == Err(SendError::Disconnected) {
                0
            } else {
                1
            });
        });
        ch.close();
        assert!(!ch.is_closed(), "final while a sender may still commit");
        assert_eq!(ch.send(b"x"), Err(SendError::Disconnected));
        assert_eq!(recv_now(ch), b"before");
        let mut out = Vec::new();
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
        assert_eq!(
            ch.recv_timeout(&mut out, SHORT),
            Err(shmstate::RecvTimeoutError::Timeout)
        );
        if killed {
            kill(pid);
            reap(pid);
        } else {
            resume(pid);
            wait_all(&[pid], REPAIR);
        }
        assert_eq!(
            ch.recv_timeout(&mut out, REPAIR),
            Err(shmstate::RecvTimeoutError::Disconnected),
            "killed: {killed}"
        );
        assert!(ch.is_closed());
        assert_eq!(ch.lost(), 0);
    }
}

/// Send: stopped after its header (published), `busy` not yet cleared, while the channel
/// is closed. The message was sent before the close: receivers get it, then wait. Continued,
/// the sender returns `Ok` and makes the close final (its look at `closed` after clearing
/// `busy`); killed, the receiver that recovers its send lock does.
#[test]
fn a_close_while_a_sender_is_busy_after_its_header() {
    watchdog(Duration::from_secs(60));
    for killed in [false, true] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = shared_channel(&region);
        let pid = common::child_stopped_at(Point::ChannelSendPublished, || {
            let r = ch.send(b"sent");
            std::process::exit(if r.is_ok() { 0 } else { 1 });
        });
        ch.close();
        assert!(!ch.is_closed());
        assert_eq!(recv_now(ch), b"sent");
        let mut out = Vec::new();
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
        if killed {
            kill(pid);
            reap(pid);
        } else {
            resume(pid);
            wait_all(&[pid], REPAIR);
            // The sender made it final before it returned.
            assert!(ch.is_closed());
        }
        assert_eq!(
            ch.recv_timeout(&mut out, REPAIR),
            Err(shmstate::RecvTimeoutError::Disconnected),
            "killed: {killed}"
        );
        assert!(ch.is_closed());
    }
}

/// A child that takes the send side (recovering it from a dead holder if need be), sends
/// `first` through it if given, then keeps it idle until the returned event is set; then
/// it sends once more, and exits 0 if that send is refused for the close (only a close
/// ends its wait), 1 if not. Returns once the side is held.
fn idle_side_holder<'r>(
    region: &'r Region,
    ch: &Channel,
    first: Option<&[u8]>,
) -> (Vec<libc::pid_t>, &'r shmstate::Event) {
    let event = |name| {
        region
            .get_or_init::<shmstate::Event>(name, |_| {})
            .expect("event")
    };
    let (held, release) = (event("held"), event("release"));
    let pid = fork_children(1, |_| {
        let mut side = ch
            .send_side_timeout(REPAIR)
            .expect("the send side, recovered if its holder died");
        if let Some(m) = first {
            side.send(m).unwrap();
        }
        held.set();
        release.wait();
        let refused = side.send(b"x") == Err(SendError::Disconnected);
        std::process::exit(if refused { 0 } else { 1 });
    });
    held.wait();
    (pid, release)
}

/// Send: killed with `busy` set (no close). The next holder recovers the send side and
/// clears `busy`; so a close while that holder keeps the side idle is final at once
/// (through the barrier: `busy` reads 0), not left waiting for a commit that never comes.
#[test]
fn a_sender_killed_busy_leaves_no_busy_behind_for_a_later_close() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = common::child_stopped_at(Point::ChannelSendBusy, || {
        let _ = ch.send(b"never");
    });
    kill(pid);
    reap(pid);
    // Taken, and kept without a send (a send would set and clear `busy` itself).
    let (holder, release) = idle_side_holder(&region, ch, None);
    ch.close();
    assert!(
        ch.is_closed(),
        "a dead sender's busy kept the close from being final"
    );
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
    release.set();
    wait_all(&holder, REPAIR);
}

/// Close: killed after storing `closed`, before the close was final. Sends are refused;
/// receivers get what was sent, then the first that finds no message makes the close
/// final (here with the send side held by a live process between its sends: through the
/// barrier) and reports `Disconnected`.
#[test]
fn a_closer_killed_before_the_close_was_final() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let (holder, release) = idle_side_holder(&region, ch, Some(b"before"));
    let pid = common::child_stopped_at(Point::ChannelCloseStored, || ch.close());
    kill(pid);
    reap(pid);
    assert!(!ch.is_closed());
    assert_eq!(recv_now(ch), b"before");
    let mut out = Vec::new();
    assert_eq!(
        ch.recv_timeout(&mut out, REPAIR),
        Err(shmstate::RecvTimeoutError::Disconnected)
    );
    assert!(ch.is_closed());
    release.set();
    wait_all(&holder, REPAIR);
}

/// A sender stopped after its publication and before its wake: the sleeping receiver's
/// `WAITING` flag is still set (only a wake clears it), so the next send by another sender
/// wakes it (without one, it would wake at the end of its slice: the table's "Send:
/// unlocked, receivers not woken" row): it gets both messages while the first sender
/// stays stopped.
#[test]
fn a_stopped_waker_delays_a_sleeping_receiver_by_one_slice_at_most() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let r = fork_children(1, |_| {
        let mut out = Vec::new();
        ch.recv(&mut out).unwrap();
        assert_eq!(out, b"first");
        ch.recv(&mut out).unwrap();
        assert_eq!(out, b"second");
    })[0];
    wait_until_asleep_in_futex(r);
    let s = common::child_stopped_at(Point::ChannelSendUnwoken, || {
        ch.send(b"first").unwrap();
    });
    let t0 = Instant::now();
    ch.send(b"second").unwrap();
    // Both are received while the first sender stays stopped: by the end of the
    // receiver's slice (10 ms at most; the margin is for a loaded machine).
    wait_all(&[r], REPAIR);
    assert!(t0.elapsed() < REPAIR);
    kill(s);
    reap(s);
}

/// A child that takes the send side, sends `first` through it, then runs `then` with the
/// side still held; stopped (at a failpoint `then` arms, or by itself), not exited.
fn side_holder_stopped(ch: &Channel, then: impl Fn(&mut shmstate::SendSide<'_>)) -> libc::pid_t {
    let pid = fork_children(1, |_| {
        let mut side = ch.send_side().unwrap();
        side.send(b"first").unwrap();
        then(&mut side);
        std::process::exit(3);
    })[0];
    common::wait_until_stopped(pid);
    pid
}

/// The send side held between two sends (`SendSide`), the holder killed there: what a
/// sender killed with the lock taken and nothing written leaves. While it is stopped,
/// receivers get what it sent and other senders wait within their bounds; after the
/// kill, the next sender recovers the side.
#[test]
fn side_holder_killed_between_sends_leaves_the_lock_to_the_next_sender() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = side_holder_stopped(ch, |_| {
        // SAFETY: stops the calling process; the parent kills it.
        unsafe { libc::raise(libc::SIGSTOP) };
    });
    assert_eq!(recv_now(ch), b"first");
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    assert_eq!(ch.send_timeout(b"x", SHORT), Err(SendTimeoutError::Timeout));
    kill(pid);
    reap(pid);
    let t0 = Instant::now();
    let mut side = ch
        .send_side_timeout(REPAIR)
        .expect("the send side recovers");
    assert!(t0.elapsed() < REPAIR);
    side.send(b"after").unwrap();
    drop(side);
    assert_eq!(recv_now(ch), b"after");
    assert!(ch.is_empty());
    assert_eq!(ch.lost(), 0);
}

/// A send under a held side, killed with its record written past `tail`, `tail` not
/// stored (as `sender_killed_between_claim_and_commit_stalls_no_receiver`, through a
/// side): the earlier message of the side is received, the unpublished one never is.
#[test]
fn side_holder_killed_between_claim_and_commit_publishes_nothing_more() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = side_holder_stopped(ch, |side| {
        shmstate::failpoint::arm(Point::ChannelSendWritten);
        side.send(b"never published").unwrap();
    });
    assert_eq!(recv_now(ch), b"first");
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    kill(pid);
    reap(pid);
    ch.send_timeout(b"after", REPAIR)
        .expect("the send side recovers");
    assert_eq!(recv_now(ch), b"after");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.bytes_used(), 0);
}

/// The generation of the receivers' wake word (`WAITING` masked off): bumped by every
/// wake of sleeping receivers.
fn recv_wake_generation(ch: &Channel) -> u32 {
    ch.hostile_words().1[2].load(std::sync::atomic::Ordering::SeqCst) & !(1 << 31)
}

/// A send under a held side, killed after publishing, before waking (the side still
/// held: the row "`tail` stored, lock not released"), with a receiver (another process)
/// asleep: the message is published, and the sender that recovers the side wakes the
/// receivers (the wake word's generation moves on recovery, before any send), which get it.
#[test]
fn side_holder_killed_after_publishing_is_woken_for_by_the_recovering_sender() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let holder = fork_children(1, |_| {
        let mut side = ch.send_side().unwrap();
        // SAFETY: stops the calling process; the parent continues or kills it.
        unsafe { libc::raise(libc::SIGSTOP) };
        shmstate::failpoint::arm(Point::ChannelSendUnwoken);
        side.send(b"published").unwrap();
        std::process::exit(3);
    })[0];
    common::wait_until_stopped(holder);
    let receiver = fork_children(1, |_| {
        assert_eq!(recv_now(ch), b"published");
    })[0];
    wait_until_asleep_in_futex(receiver);
    let before = recv_wake_generation(ch);
    // SAFETY: continues a process this test forked.
    unsafe { libc::kill(holder, libc::SIGCONT) };
    // Published, stopped before its wake (a `SIGSTOP` pending from the failpoint).
    common::wait_until_stopped(holder);
    assert_eq!(recv_wake_generation(ch), before, "the stopped holder woke");
    kill(holder);
    reap(holder);
    let side = ch
        .send_side_timeout(REPAIR)
        .expect("the send side recovers");
    assert_ne!(
        recv_wake_generation(ch),
        before,
        "recovering the side woke no receiver"
    );
    drop(side);
    wait_all(&[receiver], REPAIR);
    assert!(ch.is_empty());
}

/// A held side that found no room, killed asleep waiting for it (the lock held, `WAITING`
/// set): the next sender recovers the side once a receiver made room, and the channel
/// goes on.
#[test]
fn side_holder_killed_waiting_for_room_leaves_the_lock_to_the_next_sender() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let holder = fork_children(1, |_| {
        let mut side = ch.send_side().unwrap();
        while side.try_send(&[5; 100]).is_ok() {}
        side.send(&[6; 100]).unwrap();
        std::process::exit(3);
    })[0];
    wait_until_asleep_in_futex(holder);
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    kill(holder);
    reap(holder);
    let mut n = 0;
    let mut out = Vec::new();
    while ch.try_recv(&mut out).is_ok() {
        assert_eq!(out, [5; 100]);
        n += 1;
    }
    assert!(n > 0);
    let mut side = ch
        .send_side_timeout(REPAIR)
        .expect("the send side recovers");
    side.send(b"after").unwrap();
    drop(side);
    assert_eq!(recv_now(ch), b"after");
    assert!(ch.is_empty());
}

/// A child that takes the receive side (`RecvSide`), receives the first message (which
/// must be "first"), then runs `then` with the side held (which must stop the process);
/// returns its pid once it is stopped.
fn recv_side_holder_stopped(
    ch: &Channel,
    then: impl Fn(&mut shmstate::RecvSide<'_>),
) -> libc::pid_t {
    let pid = fork_children(1, |_| {
        let mut side = ch.recv_side().unwrap();
        let mut out = Vec::new();
        side.recv(&mut out).unwrap();
        assert_eq!(out, b"first");
        then(&mut side);
        std::process::exit(3);
    })[0];
    common::wait_until_stopped(pid);
    pid
}

/// The receive side held between two receives, the holder killed there: what a receiver
/// killed with the lock taken and nothing changed leaves. While it is stopped, senders go
/// on and other receivers wait within their bounds; after the kill, the next receiver
/// recovers the side, and nothing is lost.
#[test]
fn recv_side_holder_killed_between_receives_leaves_the_lock_to_the_next_receiver() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"first").unwrap();
    let pid = recv_side_holder_stopped(ch, |_| {
        // SAFETY: stops the calling process; the parent kills it.
        unsafe { libc::raise(libc::SIGSTOP) };
    });
    ch.try_send(b"second").unwrap();
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    assert_eq!(
        ch.recv_timeout(&mut out, SHORT),
        Err(shmstate::RecvTimeoutError::Timeout)
    );
    assert!(matches!(ch.try_recv_side(), Err(TryRecvError::Busy)));
    kill(pid);
    reap(pid);
    let t0 = Instant::now();
    let mut side = ch
        .recv_side_timeout(REPAIR)
        .expect("the receive side recovers");
    assert!(t0.elapsed() < REPAIR);
    assert_eq!(side.try_recv(&mut out), Ok(6));
    assert_eq!(out, b"second");
    drop(side);
    assert!(ch.is_empty());
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
}

/// A receive under a held side, killed between its claim and its release (the row
/// "`head` stored (claimed), `free` not"): that message is lost and counted once, the
/// next receiver recovers the side and gets the one after it; nothing is delivered twice.
#[test]
fn recv_side_holder_killed_between_claim_and_release_loses_that_message_only() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    for m in [&b"first"[..], b"claimed", b"next"] {
        ch.send(m).unwrap();
    }
    let pid = recv_side_holder_stopped(ch, |side| {
        shmstate::failpoint::arm(Point::ChannelRecvClaimed);
        let mut out = Vec::new();
        side.recv(&mut out).unwrap();
    });
    // Stopped holding the claim: senders go on while there is room.
    ch.try_send(b"later").unwrap();
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    kill(pid);
    reap(pid);
    // Recovered by taking the side: its repair releases the claim and counts it.
    let mut side = ch
        .recv_side_timeout(REPAIR)
        .expect("the receive side recovers");
    assert_eq!(ch.lost(), 1);
    assert_eq!(side.try_recv(&mut out), Ok(4));
    assert_eq!(out, b"next");
    assert_eq!(side.try_recv(&mut out), Ok(5));
    assert_eq!(out, b"later");
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
    drop(side);
    assert_eq!(ch.lost(), 1);
    assert_eq!(ch.bytes_used(), 0);
}

/// The receive side's holder killed while asleep waiting for a message (`WAITING` and
/// `SLEEPER` set): the next receiver recovers the side, a later send reaches it, nothing
/// is lost.
#[test]
fn recv_side_holder_killed_asleep_waiting_for_a_message_leaves_the_lock_to_the_next_receiver() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let holder = fork_children(1, |_| {
        let mut side = ch.recv_side().unwrap();
        let mut out = Vec::new();
        let _ = side.recv(&mut out);
        panic!("the sleeping side holder got a message it should never see");
    })[0];
    wait_until_asleep_in_futex(holder);
    kill(holder);
    reap(holder);
    let t0 = Instant::now();
    let mut side = ch
        .recv_side_timeout(REPAIR)
        .expect("the receive side recovers");
    assert!(t0.elapsed() < REPAIR);
    ch.try_send(b"after").unwrap();
    let mut out = Vec::new();
    assert_eq!(side.recv_timeout(&mut out, REPAIR), Ok(5));
    assert_eq!(out, b"after");
    drop(side);
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A receive under a held side, killed after its release and before waking senders
/// (the row "`free` stored, lock not released": the side still holds the lock): nothing
/// is lost, and the next receiver recovers the side.
#[test]
fn recv_side_holder_killed_after_its_release_loses_nothing() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    ch.send(b"first").unwrap();
    ch.send(b"taken").unwrap();
    let pid = recv_side_holder_stopped(ch, |side| {
        shmstate::failpoint::arm(Point::ChannelRecvFreed);
        let mut out = Vec::new();
        side.recv(&mut out).unwrap();
    });
    ch.try_send(b"after").unwrap();
    kill(pid);
    reap(pid);
    assert_eq!(recv_now(ch), b"after");
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A sender in another process, killed between its commit of `msg` and the store of its
/// header (the failpoint `ChannelSendCommitted`): the record is committed, never
/// published, and the send lock is held by a dead thread.
fn sender_killed_before_its_header(ch: &Channel, msg: &[u8]) {
    let pid = common::child_stopped_at(Point::ChannelSendCommitted, || {
        ch.send(msg).unwrap();
    });
    kill(pid);
    reap(pid);
}

/// The channel goes on after a repair: a message sent is received, nothing counted lost.
fn goes_on(ch: &Channel) {
    ch.send(b"after").unwrap();
    assert_eq!(recv_now(ch), b"after");
    assert_eq!(ch.lost(), 0);
}

/// Leaves `ch` (64 bytes, from `tiny_channel`) empty with `tail` at 48, so that the next
/// 16-byte message wraps: 16 bytes of padding at 48, its record at 0.
fn tail_at_48(ch: &Channel) {
    ch.send(&[1; 16]).unwrap();
    assert_eq!(recv_now(ch), [1; 16]);
    ch.send(&[2; 16]).unwrap();
    assert_eq!(recv_now(ch), [2; 16]);
}

/// Send: killed between its commit (`tail` moved past the record) and the store of the
/// record's header. While it is stopped, receivers wait for the header within their
/// bounds (`Empty`, `Timeout`) and senders for the lock; after the kill, a `try_`
/// receive recovers the send lock, replaces the record with a `SKIP` record and steps
/// over it (the message was never acknowledged: not counted in `lost()`, as a sender
/// killed before its commit); the channel goes on. With and without a wrap (padding
/// before the record).
#[test]
fn sender_killed_between_commit_and_header_is_skipped_by_a_receiver() {
    watchdog(Duration::from_secs(60));
    for wrap in [false, true] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = tiny_channel(&region);
        if wrap {
            tail_at_48(ch);
        } else {
            ch.send(b"before").unwrap();
        }
        let pid = common::child_stopped_at(Point::ChannelSendCommitted, || {
            ch.send(&[7; 16]).unwrap();
        });
        if !wrap {
            assert_eq!(recv_now(ch), b"before");
        }
        // Stopped there: the record is committed, not published. (64 looks each: at
        // least one reads `tail`, finds the record, and leaves its live sender be.)
        let mut out = Vec::new();
        assert_eq!(ch.len(), 1);
        for _ in 0..64 {
            assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
        }
        assert_eq!(
            ch.recv_timeout(&mut out, SHORT),
            Err(shmstate::RecvTimeoutError::Timeout)
        );
        for _ in 0..64 {
            assert_eq!(ch.drain(4, |_| {}), Ok(0));
        }
        assert_eq!(ch.len(), 1);
        assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
        assert_eq!(ch.lost(), 0);
        kill(pid);
        reap(pid);
        // A `try_` receive repairs (the send lock's recovery is bounded), and finds
        // nothing else.
        let t0 = Instant::now();
        repaired_by_try_recv(ch, &format!("wrap {wrap}"));
        assert!(t0.elapsed() < REPAIR);
        assert_eq!(ch.lost(), 0, "wrap {wrap}");
        assert!(ch.is_empty());
        assert_eq!(ch.len(), 0);
        assert_eq!(ch.bytes_used(), 0);
        goes_on(ch);
    }
}

/// Returns once the coarse monotonic clock (which paces a `try_` receive's reads of
/// `tail` beside its count of looks) has ticked: a scheduler tick, 1-10 ms.
fn next_coarse_tick() {
    use rustix::time::{ClockId, clock_gettime};
    let t0 = clock_gettime(ClockId::MonotonicCoarse);
    while clock_gettime(ClockId::MonotonicCoarse) == t0 {
        std::thread::yield_now();
    }
}

/// As above, found by a slow `try_` poller (far fewer looks than 64): its first look
/// after a tick of the coarse clock reads `tail` and repairs the record, where a count
/// of looks alone would have left it `Empty` for up to 63 more of them (a minute, at a
/// look a second). Without a side and with a held receive side.
#[test]
fn a_slow_try_poller_repairs_a_record_left_without_header_at_its_first_look_after_a_tick() {
    watchdog(Duration::from_secs(60));
    for held in [false, true] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = shared_channel(&region);
        let mut side = held.then(|| ch.recv_side().unwrap());
        let mut try_recv = |out: &mut Vec<u8>| match side.as_mut() {
            Some(side) => side.try_recv(out),
            None => ch.try_recv(out),
        };
        let mut out = Vec::new();
        // The poller's first look reads `tail`; its count of looks starts there.
        assert_eq!(try_recv(&mut out), Err(TryRecvError::Empty));
        sender_killed_before_its_header(ch, b"never published");
        assert_eq!(ch.len(), 1);
        // Its next look, the clock ticked, repairs. (Up to 3 such looks, for a repair
        // that a loaded machine made miss its 5 ms, or a send lock at the address of the
        // previous round's, probed by this thread under a millisecond ago: each tick is
        // more. A count alone makes none due.)
        for look in 1..=3 {
            next_coarse_tick();
            assert_eq!(try_recv(&mut out), Err(TryRecvError::Empty), "held {held}");
            if ch.bytes_used() == 0 {
                break;
            }
            assert!(look < 3, "held {held}: not repaired at a look after a tick");
        }
        assert_eq!(ch.lost(), 0);
        drop(side);
        goes_on(ch);
    }
}

/// As above, with a receiver asleep in another process when the sender dies, and no
/// sender coming after: the receiver repairs the record itself after a sleep slice (it
/// probes the send lock's holder), and gets the next message; then, after a close,
/// `Disconnected`. Also a held receive side.
#[test]
fn a_sleeping_receiver_repairs_a_record_left_without_header() {
    watchdog(Duration::from_secs(60));
    for held in [false, true] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = shared_channel(&region);
        let receiver = fork_children(1, |_| {
            let mut out = Vec::new();
            if held {
                let mut side = ch.recv_side().unwrap();
                assert_eq!(side.recv(&mut out), Ok(5));
                assert_eq!(out, b"after");
                assert_eq!(side.recv(&mut out), Err(shmstate::RecvError::Disconnected));
            } else {
                assert_eq!(ch.recv(&mut out), Ok(5));
                assert_eq!(out, b"after");
                assert_eq!(ch.recv(&mut out), Err(shmstate::RecvError::Disconnected));
            }
        });
        wait_until_asleep_in_futex(receiver[0]);
        sender_killed_before_its_header(ch, b"never published");
        // The receiver repairs it and steps over it (the space is released): no sender
        // takes the lock meanwhile.
        let t0 = Instant::now();
        while ch.bytes_used() != 0 {
            assert!(
                t0.elapsed() < REPAIR,
                "the receiver did not repair (held {held})"
            );
            std::thread::yield_now();
        }
        ch.send(b"after").unwrap();
        ch.close();
        wait_all(&receiver, REPAIR);
        assert_eq!(ch.lost(), 0);
    }
}

/// A sender killed between its commit and its header, then `close`: receivers still
/// end with `Disconnected` (blocking, timed and `try_`), once the record is repaired.
#[test]
fn a_close_after_a_sender_died_before_its_header_still_disconnects_receivers() {
    watchdog(Duration::from_secs(60));
    for how in 0..3 {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = shared_channel(&region);
        sender_killed_before_its_header(ch, b"never published");
        ch.close();
        let mut out = Vec::new();
        match how {
            0 => assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected)),
            1 => assert_eq!(
                ch.recv_timeout(&mut out, REPAIR),
                Err(shmstate::RecvTimeoutError::Disconnected)
            ),
            _ => assert_eq!(ch.recv(&mut out), Err(shmstate::RecvError::Disconnected)),
        }
        assert_eq!(ch.bytes_used(), 0);
    }
}

/// The repair itself, killed: after the `SKIP` record at 0 and before the padding (a
/// wrap), or after the whole repair, before the lock's mark is cleared. The lock stays
/// marked; the next taker (here a receiver) repairs again, idempotently: the record is
/// skipped once, and the channel goes on.
#[test]
fn a_repairer_killed_inside_the_skip_repair_leaves_it_to_the_next() {
    watchdog(Duration::from_secs(60));
    for point in [Point::ChannelSkipWritten, Point::ChannelRepaired] {
        let region = Region::anonymous(1 << 20).unwrap();
        let ch = tiny_channel(&region);
        tail_at_48(ch);
        sender_killed_before_its_header(ch, &[7; 16]);
        // A sender takes the lock over and dies inside the repair.
        let repairer = common::child_stopped_at(point, || {
            let _ = ch.try_send(b"x");
        });
        kill(repairer);
        reap(repairer);
        repaired_by_try_recv(ch, &format!("{point:?}"));
        assert_eq!(ch.lost(), 0, "{point:?}");
        assert_eq!(ch.bytes_used(), 0, "{point:?}");
        ch.send(b"after").unwrap();
        assert_eq!(recv_now(ch), b"after");
    }
}

/// Receive: killed while stepping over a `SKIP` record (its `head` stored past it,
/// `free` not). The next receiver releases the space without counting a loss (no
/// message was claimed), and gets the next message.
#[test]
fn a_receiver_killed_stepping_over_a_skip_loses_nothing_more() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    sender_killed_before_its_header(ch, b"never published");
    // The next sender repairs (a `SKIP`) and sends.
    ch.send_timeout(b"next", REPAIR).unwrap();
    let receiver = common::child_stopped_at(Point::ChannelRecvClaimed, || {
        let mut out = Vec::new();
        let _ = ch.recv(&mut out);
    });
    kill(receiver);
    reap(receiver);
    assert_eq!(recv_now(ch), b"next");
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A held receive side that polls with `try_` receives repairs a record left without its
/// header too: such a poll reads `tail` only once in 64 calls (unless the channel is
/// closed), so within that many.
#[test]
fn a_polling_held_receive_side_repairs_a_record_left_without_header() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let mut side = ch.recv_side().unwrap();
    let mut out = Vec::new();
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
    sender_killed_before_its_header(ch, b"never published");
    let mut polls = 0;
    while ch.bytes_used() != 0 {
        assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
        polls += 1;
        assert!(polls <= 64, "not repaired within 64 polls");
    }
    drop(side);
    goes_on(ch);
}

/// Send: killed with the word after its record zeroed and `pending` not stored, where
/// that word is the header of the previous record, received already (the new record ends
/// one ring after the previous one began). `pending` still names the previous record,
/// which `tail` is at, with a 0 header now: the repair must see that `head` is past it
/// and write nothing (no `SKIP` over free space), and the channel goes on.
#[test]
fn a_sender_killed_before_pending_leaves_the_previous_record_alone() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    // 4096 bytes: a 2040-byte message takes 2048, half the ring.
    let ch = region
        .channel("half", ChannelOptions::new(4096).max_message(2040))
        .unwrap();
    ch.send(&[1; 2040]).unwrap();
    assert_eq!(recv_now(ch), [1; 2040]);
    // The next record, [2048, 4096), ends one ring after the first began: the word it
    // zeroes is the first record's header, at offset 0.
    let pid = common::child_stopped_at(Point::ChannelSendZeroed, || {
        ch.send(&[2; 2040]).unwrap();
    });
    kill(pid);
    reap(pid);
    ch.send_timeout(b"after", REPAIR)
        .expect("the send side recovers");
    // Offset 0 is free space, and still the 0 the dead sender wrote: no `SKIP` there.
    let (words, _) = ch.hostile_words();
    assert_eq!(words[9].load(shmstate::sync::Ordering::Relaxed), 0);
    assert_eq!(recv_now(ch), b"after");
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A timed receive whose deadline is shorter than its first wait still repairs a record
/// whose sender died between its commit and its header (it looks once at its deadline),
/// so that a channel read only through such calls is not stuck behind it. Also under a
/// held receive side.
#[test]
fn a_short_timed_receive_repairs_a_record_left_without_header() {
    watchdog(Duration::from_secs(60));
    for held in [false, true] {
        for timeout in [
            Duration::ZERO,
            Duration::from_micros(1),
            Duration::from_micros(20),
        ] {
            let region = Region::anonymous(1 << 20).unwrap();
            let ch = shared_channel(&region);
            sender_killed_before_its_header(ch, b"never published");
            let mut out = Vec::new();
            let r = if held {
                ch.recv_side().unwrap().recv_timeout(&mut out, timeout)
            } else {
                ch.recv_timeout(&mut out, timeout)
            };
            assert_eq!(
                r,
                Err(shmstate::RecvTimeoutError::Timeout),
                "held {held}, {timeout:?}"
            );
            assert_eq!(ch.bytes_used(), 0, "held {held}, {timeout:?}: not repaired");
        }
    }
}

/// `try_recv` until a record left without its header (whose sender died) is repaired:
/// each call reports `Empty`, and one of the first 64 does it (a `try_` receive reads
/// `tail`, and so finds the record, once in 64 of its thread's looks at the channel),
/// once a millisecond has passed since this thread's last probe of the send lock (a
/// probe of the live sender before it died; the time rule, not a synchronisation: 2 ms
/// are waited out first).
fn repaired_by_try_recv(ch: &Channel, what: &str) {
    std::thread::sleep(Duration::from_millis(2));
    let mut out = Vec::new();
    for _ in 0..64 {
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty), "{what}");
        if ch.bytes_used() == 0 {
            return;
        }
    }
    panic!("{what}: not repaired within 64 calls");
}

/// A `try_` receive that finds a record committed without its header while its sender
/// is alive (stopped there) probes the sender (a `kill` and a read of `/proc`) once per
/// millisecond of its thread's calls, not at each look that reads `tail`: 640 such
/// looks (one in 64 calls) make at most two reads a millisecond.
#[cfg_attr(miri, ignore = "reads /proc")]
#[test]
fn a_try_receive_probes_a_live_sender_stopped_before_its_header_once_a_millisecond() {
    watchdog(Duration::from_secs(60));
    let Some(a) = common::reads() else {
        eprintln!("skipped: no I/O accounting (/proc/thread-self/io)");
        return;
    };
    let look = common::reads().unwrap() - a;
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = shared_channel(&region);
    let pid = common::child_stopped_at(Point::ChannelSendCommitted, || {
        ch.send(b"stopped before its header").unwrap();
    });
    let mut out = Vec::new();
    let before = common::reads().unwrap();
    let t = Instant::now();
    for _ in 0..640 * 64 {
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    }
    let ms = t.elapsed().as_millis() as u64;
    let n = common::reads().unwrap() - before - look;
    kill(pid);
    reap(pid);
    assert!(
        (1..=2 * (ms + 2)).contains(&n),
        "{n} reads in {ms} ms of polling a record whose sender is stopped (at least its \
         first probe)"
    );
    repaired_by_try_recv(ch, "after the kill");
    goes_on(ch);
}
