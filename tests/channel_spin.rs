//! How long a `Channel` waiter spins before it sleeps, across real forked processes: a
//! waiter spins longer while the other side is visibly at work for it (a receiver while
//! the send lock is held, a sender while a receiver holds a claim), but that spin is
//! bounded: it still goes to sleep (sets `WAITING` in its wake word) while the other side
//! stays busy, is woken by the other side's commit or release, and a timed call still
//! returns at its deadline.
//!
//! Run under nextest (one process per test) or with `--test-threads=1`: the tests fork.

mod channel_support;
mod common;

use std::time::{Duration, Instant};

use channel_support::{reap_ok, spawn, until};
use common::{SharedMem, watchdog};
use shmstate::sync::Ordering;
use shmstate::{
    Channel, ChannelOptions, RecvTimeoutError, Region, SendTimeoutError, TrySendError, ValueArray,
};

/// Each test's limit (the watchdog aborts the whole test process after it).
const LIMIT: Duration = Duration::from_secs(60);

/// The waiting flag of a wake word (bit 31).
const WAITING: u32 = 1 << 31;

fn region() -> Region {
    Region::anonymous(1 << 20).expect("anonymous region")
}

/// A 4 KiB ring of 1 KiB messages (three fit: each record is 1 KiB and 8 bytes).
fn channel<'r>(region: &'r Region, name: &str) -> &'r Channel {
    region
        .channel(name, ChannelOptions::new(4096).max_message(1024))
        .expect("channel")
}

/// Message `s`: `s` in the first 8 bytes, then `s as u8` up to 1 KiB.
fn numbered(s: u64) -> Vec<u8> {
    let mut v = vec![s as u8; 1024];
    v[..8].copy_from_slice(&s.to_le_bytes());
    v
}

/// The receivers' wake word.
fn recv_wake(ch: &Channel) -> &shmstate::sync::AtomicU32 {
    ch.hostile_words().1[2]
}

/// The senders' wake word.
fn send_wake(ch: &Channel) -> &shmstate::sync::AtomicU32 {
    ch.hostile_words().1[3]
}

/// A flag in shared memory the child raises: a test step, never a sleep.
fn flag() -> SharedMem<ValueArray<u32>> {
    SharedMem::<ValueArray<u32>>::new(1)
}

#[test]
fn a_receiver_behind_a_held_slot_stops_spinning_sleeps_and_is_woken_by_the_commit() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "slot");
    // The send lock is held (a sender at work, as far as the receiver can see) for as
    // long as the parent holds the slot.
    let mut slot = ch.reserve(1024).unwrap();
    let f = flag();
    let child = spawn(|| {
        f.get().store(0, 1, Ordering::Release);
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(1024));
        assert_eq!(out, numbered(5));
    });
    until(LIMIT, "the receiver to start", || {
        f.get().load(0, Ordering::Acquire) == 1
    });
    // Its spin while the send lock is held is bounded: it registers as a sleeper although
    // the lock stays held (an endless spin hangs here: watchdog). Relaxed: polled.
    until(LIMIT, "the receiver to sleep", || {
        recv_wake(ch).load(Ordering::Relaxed) & WAITING != 0
    });
    slot.write_at(0, &numbered(5));
    slot.commit().unwrap();
    reap_ok(child, "receiver woken by the commit");
    assert!(ch.is_empty());
}

#[test]
fn a_sender_behind_a_receiver_holding_a_claim_stops_spinning_sleeps_and_is_woken_by_the_release() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "claim");
    let mut n = 0;
    while ch.try_send(&numbered(n)) != Err(TrySendError::Full) {
        n += 1;
        assert!(n < 10, "the channel never filled up");
    }
    // The parent claims the first message and holds the claim (a receiver at work, as far
    // as the sender can see: `head` is past `free`) from before the sender starts until it
    // sleeps: its spin is bounded (an endless spin hangs here: watchdog).
    let (first, child) = ch
        .recv_with(|m| {
            // The claim is this process's thread's; the child only sends.
            let child = spawn(|| {
                ch.send(&numbered(n)).expect("send once there is room");
            });
            // Relaxed: polled.
            until(LIMIT, "the sender to sleep", || {
                send_wake(ch).load(Ordering::Relaxed) & WAITING != 0
            });
            (m.to_vec(), child)
        })
        .unwrap();
    assert_eq!(first, numbered(0));
    // The release woke it: its message comes last, after the ones that filled the ring.
    reap_ok(child, "sender woken by the release");
    let mut out = Vec::new();
    for s in 1..=n {
        assert_eq!(ch.recv(&mut out), Ok(1024));
        assert_eq!(out, numbered(s));
    }
    assert!(ch.is_empty());
}

/// Asserts that `elapsed` honoured a `timeout`: at least it, and not unboundedly more (a
/// generous bound: the machine may be loaded; this is not a speed assertion).
fn honoured(elapsed: Duration, timeout: Duration) {
    assert!(
        elapsed >= timeout,
        "returned after {elapsed:?}, before {timeout:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(10),
        "returned after {elapsed:?} for {timeout:?}"
    );
}

#[test]
fn timed_waits_behind_a_busy_peer_return_at_their_deadlines() {
    watchdog(LIMIT);
    let region = region();
    let ch = channel(&region, "timed");
    let f = flag();
    // A receiver behind a held slot (in another process: it looks like a sender at work
    // for the whole wait).
    let child = spawn(|| {
        let slot = ch.reserve(8).unwrap();
        f.get().store(0, 1, Ordering::Release);
        until(LIMIT, "the parent's timed calls", || {
            f.get().load(0, Ordering::Acquire) == 2
        });
        slot.abort();
    });
    until(LIMIT, "the slot", || {
        f.get().load(0, Ordering::Acquire) == 1
    });
    let mut out = Vec::new();
    for timeout in [Duration::from_micros(20), Duration::from_millis(5)] {
        let t0 = Instant::now();
        assert_eq!(
            ch.recv_timeout(&mut out, timeout),
            Err(RecvTimeoutError::Timeout)
        );
        honoured(t0.elapsed(), timeout);
    }
    f.get().store(0, 2, Ordering::Release);
    reap_ok(child, "slot holder");

    // A sender behind a receiver that holds a claim of a full ring.
    let mut n = 0;
    while ch.try_send(&numbered(n)) != Err(TrySendError::Full) {
        n += 1;
        assert!(n < 10, "the channel never filled up");
    }
    let first = ch
        .recv_with(|m| {
            // The claim is this process's; the timed sends run in a child meanwhile.
            let child = spawn(|| {
                for timeout in [Duration::from_micros(20), Duration::from_millis(5)] {
                    let t0 = Instant::now();
                    assert_eq!(
                        ch.send_timeout(&numbered(99), timeout),
                        Err(SendTimeoutError::Timeout)
                    );
                    honoured(t0.elapsed(), timeout);
                }
            });
            reap_ok(child, "timed sender");
            m.to_vec()
        })
        .unwrap();
    assert_eq!(first, numbered(0));
}
