//! Sleeping without a fence on the busy side: a receiver about to sleep sets `WAITING` in
//! `recv_wake`, fences and issues the process-wide barrier (`membarrier`); a sender looks
//! at the word after its header store with a compiler barrier only, and wakes only if the
//! flag is set. Across real forked processes, plus the flag set by a receiver that then
//! did not sleep (or by a peer): it costs the next send one wake, never a message or an
//! error. And the fallback: a process that cannot use the barrier fences on its busy side,
//! and its sleepers set the channel's `fenced` word, so that every waker fences too.
//!
//! Run under nextest (one process per test) or with `--test-threads=1`: the tests fork.

mod channel_support;
mod common;

use std::time::Duration;

use channel_support::{reap_ok, spawn, until};
use common::{wait_until_asleep_in_futex, watchdog};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{Channel, ChannelOpenError, ChannelOptions, Region, TryRecvError, TrySendError};

/// Each test's limit (the watchdog aborts the whole test process after it).
const LIMIT: Duration = Duration::from_secs(60);

/// The waiting flag of a wake word (bit 31).
const WAITING: u32 = 1 << 31;

fn region() -> Region {
    Region::anonymous(1 << 20).expect("anonymous region")
}

fn channel<'r>(region: &'r Region, name: &str) -> &'r Channel {
    region
        .channel(name, ChannelOptions::new(4096).max_message(1024))
        .expect("channel")
}

/// The receivers' wake word.
fn recv_wake(ch: &Channel) -> &AtomicU32 {
    ch.hostile_words().1[2]
}

#[test]
fn a_sleeping_receiver_flags_its_wake_word_and_a_send_wakes_it() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "sleeper");
    let child = spawn(|| {
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(5));
        assert_eq!(out, b"hello");
    });
    // The receiver flags the word before it sleeps (a receiver that never did would hang
    // here: watchdog). Relaxed: polled.
    until(LIMIT, "the receiver to set WAITING", || {
        recv_wake(ch).load(Ordering::Relaxed) & WAITING != 0
    });
    wait_until_asleep_in_futex(child);
    let before = recv_wake(ch).load(Ordering::Relaxed);
    ch.send(b"hello").unwrap();
    // The send saw the flag and woke it: the wake bumps the generation and clears the
    // flag (without the wake the receiver would still wake at the end of its slice, but
    // the word would be unchanged).
    let after = recv_wake(ch).load(Ordering::Relaxed);
    assert_ne!(after, before);
    assert_eq!(after & WAITING, 0);
    reap_ok(child, "receiver woken by the send");
    assert!(ch.is_empty());
    // Registered processes issue the barrier: nobody asked wakers to fence.
    assert!(!ch.fenced_for_tests());
}

#[test]
fn a_stale_waiting_flag_costs_a_wake_and_nothing_else() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "stale");
    let mut out = Vec::new();
    // Set before a send (a receiver that flagged, then found a message): the send goes
    // through and wakes nobody, clearing it; counts and emptiness ignore it.
    recv_wake(ch).fetch_or(WAITING, Ordering::Relaxed);
    assert!(ch.is_empty());
    ch.send(b"one").unwrap();
    assert_eq!(recv_wake(ch).load(Ordering::Relaxed) & WAITING, 0);
    assert_eq!(ch.len(), 1);
    // Set between a reservation and its commit (a receiver flagging meanwhile): the
    // commit sees it.
    let mut slot = ch.reserve(3).unwrap();
    slot.write_at(0, b"two");
    recv_wake(ch).fetch_or(WAITING, Ordering::Relaxed);
    slot.commit().unwrap();
    assert_eq!(recv_wake(ch).load(Ordering::Relaxed) & WAITING, 0);
    assert_eq!(ch.len(), 2);
    for want in [&b"one"[..], b"two"] {
        assert_eq!(ch.try_recv(&mut out), Ok(want.len()));
        assert_eq!(out, want);
    }
    // With the flag set, an empty channel reads empty, and a close still closes.
    recv_wake(ch).fetch_or(WAITING, Ordering::Relaxed);
    assert!(ch.is_empty());
    ch.close();
    assert_eq!(ch.send(b"x"), Err(shmstate::SendError::Disconnected));
    assert_eq!(ch.recv(&mut out), Err(shmstate::RecvError::Disconnected));
}

/// A process that cannot use the barrier (here: told to act so) sleeping on a channel
/// sets `fenced`; messages then go both ways between it and a registered process, each
/// side sleeping for the other in turn, none lost or repeated, and the close seen.
#[test]
fn a_process_without_the_barrier_sets_fenced_and_exchanges_with_a_registered_one() {
    watchdog(LIMIT);
    let region = region();
    let ping = channel(&region, "ping");
    let pong = channel(&region, "pong");
    const ROUNDS: u32 = 2000;
    let child = spawn(|| {
        Channel::act_unregistered_for_tests();
        channel_support::echo_rounds(ping, pong, ROUNDS);
    });
    // The child sleeps for the first message; before it does, it sets `fenced`, having
    // found it cannot issue the barrier.
    wait_until_asleep_in_futex(child);
    until(LIMIT, "the child to set fenced", || ping.fenced_for_tests());
    // Not `pong`: nobody slept on it yet.
    assert!(!pong.fenced_for_tests());
    channel_support::ping_rounds(ping, pong, ROUNDS);
    reap_ok(child, "the unregistered side");
    assert!(ping.fenced_for_tests());
}

/// In a process that cannot use the barrier (here: told to act so), a close is still made
/// final at once while another of its threads holds the send side between sends: that
/// holder fences before its check of `closed` and says so in `busy`, so the closer's fence
/// suffices. Receivers get what was sent, then `Disconnected`; the holder's next send is
/// refused.
#[test]
fn without_the_barrier_a_close_is_final_while_a_side_is_held_idle() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "fallback");
    let child = spawn(|| {
        Channel::act_unregistered_for_tests();
        channel_support::close_while_a_side_is_held_idle_without_the_barrier(ch);
    });
    reap_ok(child, "the close without the barrier");
}

/// What the busy side's compiler barrier rests on in a forked child (which registers
/// nothing itself): the kernel's record that the process is registered for the
/// process-wide barrier is copied into the child. `MEMBARRIER_CMD_GET_REGISTRATIONS`
/// (Linux 6.3) reads it; an older kernel skips the check.
#[test]
#[cfg_attr(miri, ignore = "a syscall")]
fn a_forked_child_inherits_the_barrier_registration() {
    watchdog(LIMIT);
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS` and `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`.
    const GET_REGISTRATIONS: libc::c_long = 1 << 9;
    const REGISTERED_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;
    let registrations = || {
        // SAFETY: `membarrier` with a command and two zero arguments reads no memory of
        // ours.
        unsafe { libc::syscall(libc::SYS_membarrier, GET_REGISTRATIONS, 0, 0) }
    };
    let region = region();
    let _ch = channel(&region, "registered");
    let mine = registrations();
    if mine < 0 {
        eprintln!("skipped: this kernel cannot report membarrier registrations");
        return;
    }
    assert_ne!(mine & REGISTERED_GLOBAL_EXPEDITED, 0, "{mine:#x}");
    let child = spawn(|| {
        let theirs = registrations();
        assert_ne!(theirs & REGISTERED_GLOBAL_EXPEDITED, 0, "{theirs:#x}");
    });
    reap_ok(child, "the child's registration");
}

#[test]
fn a_channel_of_the_previous_format_version_is_refused_as_corrupt() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "v4");
    // The shape word as a build of format version 4 wrote it ("CHN", version 4, the same
    // largest message): its senders commit with a compare-exchange and look for a sleeper
    // bit in `tail`, which this build's receivers never set.
    let shape = ch.hostile_words().0[0];
    let v4 = 0x4348_4E04u64 << 32 | (shape.load(Ordering::Relaxed) & 0xFFFF_FFFF);
    shape.store(v4, Ordering::Relaxed);
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Corrupt));
    assert_eq!(ch.try_recv(&mut Vec::new()), Err(TryRecvError::Corrupt));
    assert!(matches!(
        region.open_channel("v4"),
        Err(ChannelOpenError::Corrupt { .. })
    ));
}
