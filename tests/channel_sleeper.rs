//! The receivers' sleeper bit in `tail`: a receiver about to sleep sets it with a
//! read-modify-write of `tail`, and the next commit (a compare-exchange of `tail`) sees it,
//! clears it and wakes the receiver, with no fence on the sender's path. Across real
//! forked processes, plus the bit set by a receiver that then did not sleep (or by a
//! peer): it costs the next commit one wake, never a message or an error.
//!
//! Run under nextest (one process per test) or with `--test-threads=1`: the tests fork.

mod channel_support;
mod common;

use std::time::Duration;

use channel_support::{reap_ok, spawn, until};
use common::{wait_until_asleep_in_futex, watchdog};
use shmstate::sync::{AtomicU64, Ordering};
use shmstate::{Channel, ChannelOpenError, ChannelOptions, Region, TryRecvError, TrySendError};

/// Each test's limit (the watchdog aborts the whole test process after it).
const LIMIT: Duration = Duration::from_secs(60);

/// The sleeper bit of `tail` (bit 62).
const SLEEPER: u64 = 1 << 62;

/// The closed bit of `tail` (bit 63).
const CLOSED: u64 = 1 << 63;

fn region() -> Region {
    Region::anonymous(1 << 20).expect("anonymous region")
}

fn channel<'r>(region: &'r Region, name: &str) -> &'r Channel {
    region
        .channel(name, ChannelOptions::new(4096).max_message(1024))
        .expect("channel")
}

/// The `tail` word.
fn tail(ch: &Channel) -> &AtomicU64 {
    ch.hostile_words().0[3]
}

#[test]
fn a_sleeping_receiver_marks_tail_and_the_commit_clears_the_mark_and_wakes_it() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "sleeper");
    let child = spawn(|| {
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(5));
        assert_eq!(out, b"hello");
    });
    // The receiver registers in `tail` before it sleeps (a receiver that never did would
    // hang here: watchdog). Relaxed: polled.
    until(LIMIT, "the receiver to set SLEEPER", || {
        tail(ch).load(Ordering::Relaxed) & SLEEPER != 0
    });
    wait_until_asleep_in_futex(child);
    ch.send(b"hello").unwrap();
    // The commit cleared the bit and woke it: without the wake, it would still wake at
    // the end of its sleep slice, but the bit shows the commit saw it.
    assert_eq!(tail(ch).load(Ordering::Relaxed) & SLEEPER, 0);
    reap_ok(child, "receiver woken by the commit");
    assert!(ch.is_empty());
}

#[test]
fn a_stale_sleeper_bit_costs_a_wake_and_nothing_else() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "stale");
    let mut out = Vec::new();
    // Set before a send (a receiver that registered, then found a message): the send goes
    // through and clears it; counts and emptiness ignore it.
    tail(ch).fetch_or(SLEEPER, Ordering::Relaxed);
    assert!(ch.is_empty());
    assert_eq!(ch.len(), 0);
    ch.send(b"one").unwrap();
    assert_eq!(tail(ch).load(Ordering::Relaxed) & (SLEEPER | CLOSED), 0);
    assert_eq!(ch.len(), 1);
    // Set between a reservation and its commit (a receiver registering meanwhile): the
    // commit publishes over it.
    let mut slot = ch.reserve(3).unwrap();
    slot.write_at(0, b"two");
    tail(ch).fetch_or(SLEEPER, Ordering::Relaxed);
    slot.commit().unwrap();
    assert_eq!(tail(ch).load(Ordering::Relaxed) & SLEEPER, 0);
    assert_eq!(ch.len(), 2);
    for want in [&b"one"[..], b"two"] {
        assert_eq!(ch.try_recv(&mut out), Ok(want.len()));
        assert_eq!(out, want);
    }
    // With the bit set, an empty channel reads empty, and a close still closes.
    tail(ch).fetch_or(SLEEPER, Ordering::Relaxed);
    assert!(ch.is_empty());
    ch.close();
    assert_eq!(ch.send(b"x"), Err(shmstate::SendError::Disconnected));
    assert_eq!(ch.recv(&mut out), Err(shmstate::RecvError::Disconnected));
}

#[test]
fn a_commit_over_a_tail_rewritten_otherwise_reports_corrupt() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "rewritten");
    let slot = ch.reserve(3).unwrap();
    // A peer moves the position under the send lock (against the protocol): not a
    // sleeper's mark, so the commit refuses it rather than move `tail` back.
    tail(ch).fetch_add(8, Ordering::Relaxed);
    assert_eq!(slot.commit(), Err(shmstate::SendError::Corrupt));
}

#[test]
fn a_channel_of_the_previous_format_version_is_refused_as_corrupt() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "v1");
    // The shape word as a build of format version 1 wrote it ("CHN", version 1, the same
    // largest message): its senders would not see this build's sleeper bit.
    let shape = ch.hostile_words().0[0];
    let v1 = 0x4348_4E01u64 << 32 | (shape.load(Ordering::Relaxed) & 0xFFFF_FFFF);
    shape.store(v1, Ordering::Relaxed);
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Corrupt));
    assert_eq!(ch.try_recv(&mut Vec::new()), Err(TryRecvError::Corrupt));
    assert!(matches!(
        region.open_channel("v1"),
        Err(ChannelOpenError::Corrupt { .. })
    ));
}
