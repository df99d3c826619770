//! `Channel` within one process (heap channels, threads): every operation, FIFO across
//! wrap-around, full and empty, deadlines, oversized messages, closing, slots, draining,
//! the serde forms, the repair of a claimed-but-unreleased message, and hostile bytes.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use common::reads;
use common::watchdog_unless_miri as watchdog;
use shmstate::sync::Ordering;
use shmstate::{
    Channel, ChannelError, ChannelOpenError, ChannelOptions, GetError, Kind, RecvError,
    RecvIntoError, RecvTimeoutError, RecvTimeoutIntoError, Region, SendError, SendTimeoutError,
    TryRecvError, TryRecvIntoError, TrySendError,
};

const LIMIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

/// Iterations of the longer loops: fewer in debug builds.
const ROUNDS: usize = if cfg!(debug_assertions) {
    2_000
} else {
    50_000
};

fn channel(cap: usize) -> Box<Channel> {
    Channel::new(ChannelOptions::new(cap)).expect("valid options")
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// Message `seq` of length `len`: its bytes derive from both, so a mixed-up, torn or
/// misordered message is caught.
fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 7)) as u8)
        .collect()
}

fn times_out_after<R>(d: Duration, f: impl FnOnce(Duration) -> R) -> R {
    let t0 = Instant::now();
    let r = f(d);
    let took = t0.elapsed();
    assert!(
        took >= d,
        "returned after {took:?}, before its {d:?} timeout"
    );
    r
}

#[test]
fn options_round_the_capacity_and_validate_the_largest_message() {
    assert_eq!(ChannelOptions::new(0).capacity_bytes(), 64);
    assert_eq!(ChannelOptions::new(100).capacity_bytes(), 128);
    assert_eq!(ChannelOptions::new(4096).capacity_bytes(), 4096);
    assert_eq!(ChannelOptions::new(4096).max_message_len(), 1024);
    assert_eq!(
        ChannelOptions::new(4096)
            .max_message(2040)
            .max_message_len(),
        2040
    );
    assert_eq!(
        ChannelOptions::new(1000),
        ChannelOptions::new(1024).max_message(256)
    );
    assert_ne!(
        ChannelOptions::new(1024),
        ChannelOptions::new(1024).max_message(255)
    );
    assert_eq!(channel(4096).options(), ChannelOptions::new(4096));
    let ch = Channel::new(ChannelOptions::new(4096).max_message(2040)).unwrap();
    assert_eq!(ch.options().capacity_bytes(), 4096);
    assert_eq!(ch.options().max_message_len(), 2040);
    assert!(matches!(
        Channel::new(ChannelOptions::new(4096).max_message(2041)),
        Err(ChannelError::InvalidOptions { .. })
    ));
    assert!(matches!(
        Channel::new(ChannelOptions::new((1 << 31) + 1)),
        Err(ChannelError::InvalidOptions { .. })
    ));
    assert!(matches!(
        Channel::new(ChannelOptions::new(usize::MAX)),
        Err(ChannelError::InvalidOptions { .. })
    ));
}

#[test]
fn every_send_and_receive_form_delivers_the_bytes() {
    watchdog(LIMIT);
    let ch = channel(4096);
    let mut out = Vec::new();
    let far = Instant::now() + LIMIT;

    ch.send(b"send").unwrap();
    assert_eq!(ch.recv(&mut out), Ok(4));
    assert_eq!(out, b"send");

    ch.try_send(b"try_send").unwrap();
    assert_eq!(ch.try_recv(&mut out), Ok(8));
    assert_eq!(out, b"try_send");

    ch.send_timeout(b"timeout", LIMIT).unwrap();
    assert_eq!(ch.recv_timeout(&mut out, LIMIT), Ok(7));
    assert_eq!(out, b"timeout");

    ch.send_until(b"until", far).unwrap();
    assert_eq!(ch.recv_until(&mut out, far), Ok(5));
    assert_eq!(out, b"until");

    ch.send(b"into").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(ch.recv_into(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"into");

    ch.send(b"try_into").unwrap();
    assert_eq!(ch.try_recv_into(&mut buf), Ok(8));
    assert_eq!(&buf[..8], b"try_into");

    ch.send(b"timeout_into").unwrap();
    assert_eq!(ch.recv_timeout_into(&mut buf, LIMIT), Ok(12));
    assert_eq!(&buf[..12], b"timeout_into");

    ch.send(b"until_into").unwrap();
    assert_eq!(ch.recv_until_into(&mut buf, far), Ok(10));
    assert_eq!(&buf[..10], b"until_into");

    for (i, m) in [&b"with"[..], b"try_with", b"timeout_with", b"until_with"]
        .iter()
        .enumerate()
    {
        ch.send(m).unwrap();
        let got = match i {
            0 => ch.recv_with(|b| b.to_vec()).unwrap(),
            1 => ch.try_recv_with(|b| b.to_vec()).unwrap(),
            2 => ch.recv_timeout_with(LIMIT, |b| b.to_vec()).unwrap(),
            _ => ch.recv_until_with(far, |b| b.to_vec()).unwrap(),
        };
        assert_eq!(&got, m);
    }

    // The empty message is a message.
    ch.send(b"").unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch.recv(&mut out), Ok(0));
    assert!(out.is_empty());
    assert!(ch.is_empty());
}

#[test]
fn fifo_across_wrap_around_with_random_sizes() {
    watchdog(LIMIT);
    let ch = Channel::new(ChannelOptions::new(1024).max_message(504)).unwrap();
    let max = ch.options().max_message_len();
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let (mut sent, mut received) = (0u64, 0u64);
    let mut lens = std::collections::VecDeque::new();
    let mut out = Vec::new();
    while received < ROUNDS as u64 {
        // Send until full, then receive a random number: the cursors wander over every
        // offset of the ring and records wrap with padding.
        let len = rng.range(1, max);
        match ch.try_send(&message(sent, len)) {
            Ok(()) => {
                lens.push_back(len);
                sent += 1;
                continue;
            }
            Err(TrySendError::Full) => {}
            Err(e) => panic!("try_send: {e:?}"),
        }
        assert!(ch.bytes_used() <= 1024);
        assert_eq!(ch.len(), lens.len());
        for _ in 0..rng.range(1, lens.len()) {
            let n = ch.try_recv(&mut out).unwrap();
            let want = lens.pop_front().unwrap();
            assert_eq!(n, want);
            assert_eq!(out, message(received, want), "message {received}");
            received += 1;
        }
    }
    while let Some(want) = lens.pop_front() {
        ch.try_recv(&mut out).unwrap();
        assert_eq!(out, message(received, want));
        received += 1;
    }
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
}

#[test]
fn a_largest_message_fits_an_empty_ring_wherever_the_cursors_stand() {
    let ch = channel(256);
    let max = ch.options().max_message_len();
    assert_eq!(max, 64);
    let largest = Channel::new(ChannelOptions::new(256).max_message(120)).unwrap();
    let mut out = Vec::new();
    for c in [&*ch, &*largest] {
        let max = c.options().max_message_len();
        for _ in 0..256 / 8 {
            // Move the cursors on by one 8-byte record, then check a largest message
            // goes into the empty ring at once.
            c.try_send(b"").unwrap();
            c.try_recv(&mut out).unwrap();
            c.try_send(&vec![7; max])
                .expect("a largest message fits an empty ring");
            assert_eq!(c.try_recv(&mut out), Ok(max));
        }
    }
}

#[test]
fn many_senders_and_receivers_get_every_message_once_in_per_sender_order() {
    watchdog(LIMIT);
    const SENDERS: usize = 3;
    const RECEIVERS: usize = 3;
    let per = ROUNDS;
    let ch = channel(2048);
    let max = ch.options().max_message_len();
    let seen = (0..SENDERS)
        .map(|_| AtomicUsize::new(0))
        .collect::<Vec<_>>();
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for p in 0..SENDERS {
            let ch = &ch;
            s.spawn(move || {
                let mut rng = Rng(p as u64 + 1);
                for i in 0..per {
                    let len = rng.range(16, max);
                    let mut m = message(i as u64, len);
                    m[..8].copy_from_slice(&(p as u64).to_le_bytes());
                    m[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                    ch.send(&m).unwrap();
                }
            });
        }
        for _ in 0..RECEIVERS {
            let (ch, seen, done) = (&ch, &seen, &done);
            s.spawn(move || {
                let mut last = [None::<u64>; SENDERS];
                let mut out = Vec::new();
                while done.load(Ordering::Relaxed) < SENDERS * per {
                    match ch.recv_timeout(&mut out, Duration::from_millis(50)) {
                        Ok(_) => {}
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(e) => panic!("recv: {e:?}"),
                    }
                    let p = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
                    let i = u64::from_le_bytes(out[8..16].try_into().unwrap());
                    assert_eq!(out[16..], message(i, out.len())[16..], "torn message");
                    // FIFO per sender, as this receiver sees them.
                    assert!(
                        last[p].is_none_or(|l| l < i),
                        "sender {p}: {i} after {last:?}"
                    );
                    last[p] = Some(i);
                    seen[p].fetch_add(1, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    for s in &seen {
        assert_eq!(s.load(Ordering::Relaxed), per, "every message exactly once");
    }
    assert!(ch.is_empty());
}

#[test]
fn a_blocked_receiver_is_woken_by_each_send() {
    watchdog(LIMIT);
    let ch = channel(64);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = Vec::new();
            for i in 0..ROUNDS as u64 {
                ch.recv(&mut out).unwrap();
                assert_eq!(out, i.to_le_bytes());
            }
        });
        // A 64-byte ring: the sender keeps filling it and waits for room, the receiver
        // keeps emptying it and waits for messages; a lost wakeup hangs (watchdog).
        for i in 0..ROUNDS as u64 {
            ch.send(&i.to_le_bytes()).unwrap();
        }
    });
}

#[test]
fn full_and_empty() {
    let ch = channel(64);
    let mut out = Vec::new();
    assert!(ch.is_empty());
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.drain(10, |_| {}), Ok(0));
    ch.try_send(&[1; 16]).unwrap();
    ch.try_send(&[2; 16]).unwrap();
    assert_eq!(ch.len(), 2);
    assert_eq!(ch.bytes_used(), 48);
    assert_eq!(ch.try_send(&[3; 16]), Err(TrySendError::Full));
    assert!(matches!(ch.try_reserve(16), Err(TrySendError::Full)));
    // 16 bytes are left, less the 8 bytes of slack a sender keeps after its record (for
    // the next record's header): an empty message still fits, nothing more.
    assert_eq!(ch.try_send(&[4; 1]), Err(TrySendError::Full));
    ch.try_send(b"").unwrap();
    assert_eq!(ch.try_send(b""), Err(TrySendError::Full));
    ch.try_recv(&mut out).unwrap();
    assert_eq!(out, [1; 16]);
    assert_eq!(ch.len(), 2);
    assert!(!ch.is_empty());
}

#[test]
fn timed_calls_honour_their_deadlines() {
    watchdog(LIMIT);
    let ch = channel(64);
    let mut out = Vec::new();
    assert_eq!(
        times_out_after(SHORT, |d| ch.recv_timeout(&mut out, d)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        times_out_after(SHORT, |d| ch.recv_until(&mut out, Instant::now() + d)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        times_out_after(SHORT, |d| ch.recv_timeout_with(d, |_| ())),
        Err(RecvTimeoutError::Timeout)
    );
    ch.send(&[0; 16]).unwrap();
    ch.send(&[0; 16]).unwrap();
    assert_eq!(
        times_out_after(SHORT, |d| ch.send_timeout(&[0; 16], d)),
        Err(SendTimeoutError::Timeout)
    );
    assert_eq!(
        times_out_after(SHORT, |d| ch.send_until(&[0; 16], Instant::now() + d)),
        Err(SendTimeoutError::Timeout)
    );
    assert!(matches!(
        times_out_after(SHORT, |d| ch.reserve_timeout(16, d)),
        Err(SendTimeoutError::Timeout)
    ));
    // A deadline already passed: at once.
    assert_eq!(
        ch.send_until(&[0; 16], Instant::now()),
        Err(SendTimeoutError::Timeout)
    );
    // A send that can go does, whatever the deadline.
    assert_eq!(ch.send_timeout(b"", Duration::ZERO), Ok(()));
    // The send side held (a slot open on another thread): timed sends time out, try
    // sends report Busy.
    ch.recv(&mut out).unwrap();
    std::thread::scope(|s| {
        let slot = ch.reserve(0).unwrap();
        s.spawn(|| {
            assert_eq!(
                times_out_after(SHORT, |d| ch.send_timeout(b"x", d)),
                Err(SendTimeoutError::Timeout)
            );
            assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
        })
        .join()
        .unwrap();
        slot.abort();
    });
}

#[test]
fn oversized_messages_are_refused_with_their_length() {
    let ch = channel(1024);
    let big = vec![0; 257];
    let tl = (257, 256);
    assert_eq!(
        ch.send(&big),
        Err(SendError::TooLarge {
            len: tl.0,
            max: tl.1
        })
    );
    assert_eq!(
        ch.try_send(&big),
        Err(TrySendError::TooLarge {
            len: tl.0,
            max: tl.1
        })
    );
    assert_eq!(
        ch.send_timeout(&big, SHORT),
        Err(SendTimeoutError::TooLarge {
            len: tl.0,
            max: tl.1
        })
    );
    assert!(matches!(ch.reserve(257), Err(SendError::TooLarge { .. })));
    assert!(ch.is_empty());
    ch.send(&big[..256]).unwrap();
}

#[test]
fn close_fails_senders_at_once_and_lets_receivers_drain() {
    watchdog(LIMIT);
    let ch = channel(64);
    ch.send(&[1; 16]).unwrap();
    ch.send(&[2; 16]).unwrap();
    // A sender waiting for room is woken by the close and fails.
    std::thread::scope(|s| {
        let h = s.spawn(|| ch.send(&[3; 16]));
        common_wait_until_sleeping();
        ch.close();
        assert_eq!(h.join().unwrap(), Err(SendError::Disconnected));
    });
    assert!(ch.is_closed());
    assert_eq!(ch.send(b""), Err(SendError::Disconnected));
    assert_eq!(ch.try_send(b""), Err(TrySendError::Disconnected));
    assert_eq!(
        ch.send_timeout(b"", SHORT),
        Err(SendTimeoutError::Disconnected)
    );
    assert!(matches!(ch.reserve(0), Err(SendError::Disconnected)));
    let mut out = Vec::new();
    assert_eq!(ch.recv(&mut out), Ok(16));
    assert_eq!(out, [1; 16]);
    assert_eq!(ch.drain(10, |m| assert_eq!(m, [2; 16])), Ok(1));
    assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
    assert_eq!(
        ch.recv_timeout(&mut out, SHORT),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(ch.recv_into(&mut [0; 4]), Err(RecvIntoError::Disconnected));
    assert_eq!(ch.drain(10, |_| {}), Err(TryRecvError::Disconnected));
    ch.close(); // idempotent
}

/// Gives a thread that is about to block time to go to sleep. Not synchronisation: the
/// tests pass either way, this only makes the sleeping case the likely one.
fn common_wait_until_sleeping() {
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn close_wakes_a_blocked_receiver() {
    watchdog(LIMIT);
    let ch = channel(64);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut out = Vec::new();
            ch.recv(&mut out)
        });
        common_wait_until_sleeping();
        ch.close();
        assert_eq!(h.join().unwrap(), Err(RecvError::Disconnected));
    });
}

#[test]
fn a_slot_closed_under_it_is_not_sent() {
    let ch = channel(1024);
    let slot = ch.reserve(4).unwrap();
    ch.close();
    assert_eq!(slot.commit(), Err(SendError::Disconnected));
    assert!(ch.is_empty());
}

#[test]
fn slots_commit_abort_and_drop() {
    watchdog(LIMIT);
    let ch = channel(1024);
    let mut out = Vec::new();

    let mut slot = ch.reserve(10).unwrap();
    assert_eq!(slot.len(), 10);
    slot.write_at(0, b"0123456789");
    slot.commit().unwrap();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"0123456789");

    let mut slot = ch.reserve(100).unwrap();
    write!(slot, "{}+{}", 2, 3).unwrap();
    assert_eq!(slot.written(), 3);
    slot.commit_len(3).unwrap();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"2+3");

    let mut slot = ch.reserve(4).unwrap();
    let err = slot.write_all(b"too long").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WriteZero);
    slot.write_at(0, b"abcd");
    slot.commit().unwrap();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"abcd");

    // Unaligned writes at every offset merge into the words around them.
    let mut slot = ch.reserve(19).unwrap();
    for (i, b) in b"0123456789abcdefghi".iter().enumerate().rev() {
        slot.write_at(i, &[*b]);
    }
    slot.write_at(5, b"XYZ");
    slot.commit().unwrap();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"01234XYZ89abcdefghi");

    // Abort and drop send nothing and leave the ring as it was.
    let used = ch.bytes_used();
    let mut slot = ch.reserve(8).unwrap();
    slot.write_at(0, b"aborted!");
    slot.abort();
    let mut slot = ch.try_reserve(8).unwrap();
    slot.write_at(0, b"dropped!");
    drop(slot);
    assert!(ch.is_empty());
    assert_eq!(ch.bytes_used(), used);
    ch.send(b"next").unwrap();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"next");
}

#[test]
#[should_panic(expected = "exceed the slot")]
fn writing_past_a_slot_panics() {
    let ch = channel(1024);
    let mut slot = ch.reserve(4).unwrap();
    slot.write_at(2, b"abc");
}

#[test]
fn drain_takes_a_batch_in_order() {
    let ch = channel(4096);
    for i in 0..20u8 {
        ch.send(&[i; 3]).unwrap();
    }
    let mut got = Vec::new();
    assert_eq!(ch.drain(0, |_| panic!("max 0")), Ok(0));
    assert_eq!(ch.drain(8, |m| got.push(m[0])), Ok(8));
    assert_eq!(ch.drain(100, |m| got.push(m[0])), Ok(12));
    assert_eq!(got, (0..20).collect::<Vec<u8>>());
    assert_eq!(ch.drain(100, |_| {}), Ok(0));
}

#[test]
fn recv_into_leaves_a_message_too_long_for_the_buffer() {
    let ch = channel(1024);
    ch.send(b"0123456789").unwrap();
    let mut small = [0; 9];
    assert_eq!(
        ch.recv_into(&mut small),
        Err(RecvIntoError::TooSmall { needed: 10 })
    );
    assert_eq!(ch.len(), 1);
    let mut buf = [0; 10];
    assert_eq!(ch.recv_into(&mut buf), Ok(10));
    assert_eq!(&buf, b"0123456789");
}

#[test]
fn try_and_timed_receives_into_a_buffer_keep_their_bounds_and_their_errors() {
    watchdog(LIMIT);
    let ch = channel(1024);
    let mut buf = [0; 8];
    // Empty: at once, or at the deadline.
    assert_eq!(ch.try_recv_into(&mut buf), Err(TryRecvIntoError::Empty));
    assert_eq!(
        times_out_after(SHORT, |d| ch.recv_timeout_into(&mut buf, d)),
        Err(RecvTimeoutIntoError::Timeout)
    );
    assert_eq!(
        times_out_after(SHORT, |d| ch.recv_until_into(&mut buf, Instant::now() + d)),
        Err(RecvTimeoutIntoError::Timeout)
    );
    assert_eq!(
        ch.recv_until_into(&mut buf, Instant::now()),
        Err(RecvTimeoutIntoError::Timeout)
    );
    // Too long for the buffer: refused with its length, left in the channel.
    ch.send(b"0123456789").unwrap();
    assert_eq!(
        ch.try_recv_into(&mut buf),
        Err(TryRecvIntoError::TooSmall { needed: 10 })
    );
    assert_eq!(
        ch.recv_timeout_into(&mut buf, LIMIT),
        Err(RecvTimeoutIntoError::TooSmall { needed: 10 })
    );
    assert_eq!(
        ch.recv_until_into(&mut buf, Instant::now() + LIMIT),
        Err(RecvTimeoutIntoError::TooSmall { needed: 10 })
    );
    assert_eq!(ch.len(), 1);
    let mut big = [0; 10];
    assert_eq!(ch.try_recv_into(&mut big), Ok(10));
    assert_eq!(&big, b"0123456789");
    // A timed receive is woken by a send from another thread.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            ch.send(b"late").unwrap();
        });
        assert_eq!(ch.recv_timeout_into(&mut buf, LIMIT), Ok(4));
        assert_eq!(&buf[..4], b"late");
    });
    // The receive side held by another thread, a message waiting: Busy, or the deadline.
    ch.send(b"held").unwrap();
    let inside = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _side = ch.recv_side().unwrap();
            inside.store(true, Ordering::Release);
            while !release.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        });
        while !inside.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        assert_eq!(ch.try_recv_into(&mut buf), Err(TryRecvIntoError::Busy));
        assert_eq!(
            times_out_after(SHORT, |d| ch.recv_timeout_into(&mut buf, d)),
            Err(RecvTimeoutIntoError::Timeout)
        );
        release.store(true, Ordering::Release);
    });
    // Closed: what was sent first, then Disconnected from every form.
    ch.close();
    assert_eq!(ch.recv_until_into(&mut buf, Instant::now() + LIMIT), Ok(4));
    assert_eq!(&buf[..4], b"held");
    assert_eq!(
        ch.try_recv_into(&mut buf),
        Err(TryRecvIntoError::Disconnected)
    );
    assert_eq!(
        ch.recv_timeout_into(&mut buf, LIMIT),
        Err(RecvTimeoutIntoError::Disconnected)
    );
    assert_eq!(
        ch.recv_until_into(&mut buf, Instant::now() + LIMIT),
        Err(RecvTimeoutIntoError::Disconnected)
    );
    assert_eq!(ch.lost(), 0);
}

#[test]
fn receives_into_a_buffer_report_a_garbage_config_word_as_corrupt() {
    let ch = channel(1024);
    ch.send(b"one").unwrap();
    let (w64, _) = ch.hostile_words();
    // Word 0 is `shape` (`hostile_words`' docs): no channel's magic.
    w64[0].store(u64::MAX, Ordering::Relaxed);
    let mut buf = [0; 8];
    assert_eq!(ch.try_recv_into(&mut buf), Err(TryRecvIntoError::Corrupt));
    assert_eq!(
        ch.recv_timeout_into(&mut buf, SHORT),
        Err(RecvTimeoutIntoError::Corrupt)
    );
    assert_eq!(ch.recv_into(&mut buf), Err(RecvIntoError::Corrupt));
}

#[test]
fn a_panicking_closure_consumes_its_message_and_the_channel_goes_on() {
    let ch = channel(1024);
    ch.send(b"boom").unwrap();
    ch.send(b"after").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ch.recv_with(|_| panic!("in the closure"))
    }));
    assert!(r.is_err());
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(5));
    assert_eq!(out, b"after");
    assert_eq!(ch.lost(), 0);
}

/// The crash window "claimed, not released", made by hand on a heap channel: `head` past
/// a message, `free` behind it, as a receiver killed there leaves them. The next receiver
/// releases the space and counts the message lost; it is never delivered.
#[test]
fn a_claimed_but_unreleased_message_is_lost_and_counted() {
    let ch = channel(1024);
    ch.send(b"claimed").unwrap();
    ch.send(b"next").unwrap();
    let (words, _) = ch.hostile_words();
    // words[5] is `head` (see `hostile_words`): 1 claimed, at the end of the first
    // record (8 + 8 bytes).
    words[5].store(1 << 32 | 16, Ordering::Relaxed);
    assert_eq!(ch.len(), 1);
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(4));
    assert_eq!(out, b"next");
    assert_eq!(ch.lost(), 1);
    assert_eq!(ch.bytes_used(), 0);
}

/// A channel whose largest message needs padding when the ring is not empty at its
/// start: 128 bytes, messages of up to 56 (a 64-byte record).
fn tight() -> Box<Channel> {
    Channel::new(ChannelOptions::new(128).max_message(56)).unwrap()
}

/// Leaves `ch` (from `tight`) with its only message, 56 bytes at `[16, 80)`, claimed and
/// never released, as a receiver killed after its claim leaves it (the receive lock is
/// free here, as after a dead holder's recovery).
fn claim_the_last_message_by_hand(ch: &Channel) {
    ch.send(&[0; 8]).unwrap();
    let mut out = Vec::new();
    ch.recv(&mut out).unwrap();
    ch.send(&[1; 56]).unwrap();
    let (words, _) = ch.hostile_words();
    // words[5] is `head`: 2 claimed, at 80.
    words[5].store(2 << 32 | 80, Ordering::Relaxed);
    assert!(ch.is_empty());
    assert_eq!(ch.bytes_used(), 64);
}

/// A claim of the *last* message left unreleased: no receiver takes the receive lock
/// for a message, so the senders that find the ring full repair it (a 56-byte record at
/// 80 needs 48 bytes of padding: more than the 64 that look free).
#[test]
fn a_full_sender_repairs_an_unreleased_claim_of_the_last_message() {
    watchdog(Duration::from_secs(60));
    let ch = tight();
    claim_the_last_message_by_hand(&ch);
    assert_eq!(ch.try_send(&[2; 56]), Ok(()));
    assert_eq!(ch.lost(), 1);
    let ch = tight();
    claim_the_last_message_by_hand(&ch);
    assert_eq!(ch.send_timeout(&[2; 56], Duration::from_secs(10)), Ok(()));
    assert_eq!(ch.lost(), 1);
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(56));
    assert_eq!(out, [2; 56]);
}

/// Two receivers die holding claims while one send waits for room, the second after the
/// send repaired the first's: a waiting send repairs each (the first repair alone does
/// not make room), blocking or timed.
#[test]
fn a_waiting_sender_repairs_every_claim_left_by_receivers_that_die_while_it_waits() {
    watchdog(LIMIT);
    for timed in [true, false] {
        let ch = tight();
        // Three 24-byte messages: records of 32 bytes at [0, 96); 32 bytes free.
        for i in 0..3u8 {
            ch.send(&[i; 24]).unwrap();
        }
        let (words, _) = ch.hostile_words();
        std::thread::scope(|s| {
            // A 48-byte message (a 56-byte record, and the 8 bytes of slack after it)
            // needs 32 bytes of padding at 96: room for it comes only once both of the
            // first two records are released.
            let sender = s.spawn(|| {
                if timed {
                    ch.send_timeout(&[9; 48], Duration::from_secs(10))
                } else {
                    ch.send(&[9; 48]).map_err(|_| SendTimeoutError::Corrupt)
                }
            });
            // words[5] is `head`: as a receiver killed after claiming the first record
            // leaves it (the receive lock free, as after a dead holder's recovery).
            words[5].store(1 << 32 | 32, Ordering::Relaxed);
            while ch.lost() < 1 {
                std::thread::yield_now();
            }
            // Another receiver claims the second record and dies too.
            words[5].store(2 << 32 | 64, Ordering::Relaxed);
            assert_eq!(sender.join().unwrap(), Ok(()));
        });
        assert_eq!(ch.lost(), 2);
        let mut out = Vec::new();
        assert_eq!(ch.try_recv(&mut out), Ok(24));
        assert_eq!(out, [2; 24]);
        assert_eq!(ch.try_recv(&mut out), Ok(48));
        assert_eq!(out, [9; 48]);
    }
}

/// A peer that keeps writing a claim into the shared words (as if receivers kept dying
/// holding one) cannot keep a send repairing: a timed send returns by its deadline, a
/// `try_` send at once, having released at most one claim.
#[test]
fn a_peer_rewriting_claims_cannot_keep_a_send_repairing() {
    watchdog(LIMIT);
    let filled = || {
        let ch = tight();
        for i in 0..3u8 {
            ch.send(&[i; 24]).unwrap();
        }
        ch
    };
    let hostile = |ch: &Channel, f: &mut dyn FnMut()| {
        let stop = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        let (words, _) = ch.hostile_words();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut k: u64 = 1;
                // Relaxed: hostile stores; the flags order nothing.
                while !stop.load(Ordering::Relaxed) {
                    // words[8] is `free`, words[5] `head`: a claim of [0, 32), again.
                    words[8].store(0, Ordering::Relaxed);
                    words[5].store(k << 32 | 32, Ordering::Relaxed);
                    started.store(true, Ordering::Relaxed);
                    k += 1;
                    std::hint::spin_loop();
                }
            });
            while !started.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            // Stops the hostile thread however `f` ends: a failed assertion in it then
            // fails the test by its own panic, not by the watchdog.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = Stop(&stop);
            f();
        });
    };
    for ms in [0, 5, 50] {
        let ch = filled();
        let d = Duration::from_millis(ms);
        hostile(&ch, &mut || {
            let t0 = Instant::now();
            let r = ch.send_timeout(&[9; 56], d);
            assert!(
                matches!(r, Ok(()) | Err(SendTimeoutError::Timeout)),
                "{r:?}"
            );
            // Bounded: the deadline, plus a margin for a loaded machine.
            assert!(
                t0.elapsed() < d + Duration::from_secs(1),
                "took {:?}",
                t0.elapsed()
            );
        });
        let ch = filled();
        hostile(&ch, &mut || {
            let before = ch.lost();
            let r = ch.try_send(&[9; 56]);
            assert!(matches!(r, Ok(()) | Err(TrySendError::Full)), "{r:?}");
            assert!(ch.lost() - before <= 1);
        });
    }
}

/// Likewise, a receiver that waits for a message and finds such a claim repairs it.
#[test]
fn a_waiting_receiver_repairs_an_unreleased_claim_of_the_last_message() {
    watchdog(Duration::from_secs(60));
    let ch = tight();
    claim_the_last_message_by_hand(&ch);
    let mut out = Vec::new();
    assert_eq!(
        ch.recv_timeout(&mut out, Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(ch.lost(), 1);
    assert_eq!(ch.bytes_used(), 0);
}

/// A `drain` closure that panics on the last message leaves no claim behind: the
/// message counts as received (not lost) and large senders go on.
#[test]
fn a_panicking_drain_closure_releases_its_message() {
    watchdog(Duration::from_secs(60));
    let ch = tight();
    ch.send(&[0; 8]).unwrap();
    let mut out = Vec::new();
    ch.recv(&mut out).unwrap();
    ch.send(&[1; 56]).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = ch.drain(1, |_| panic!("in the closure"));
    }));
    assert!(r.is_err());
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.try_send(&[2; 56]), Ok(()));
    assert_eq!(ch.try_recv(&mut out), Ok(56));
}

/// The closure forms get a process-local copy, never a view of the ring: a peer that
/// breaks the protocol (here: `free` moved up to `tail`, so that a sender overwrites a
/// claimed message) changes nothing under a running closure. Messages longer than the
/// stack buffer take the per-thread one.
#[test]
fn closures_get_a_copy_that_a_peer_cannot_change() {
    watchdog(Duration::from_secs(60));
    for len in [24usize, 300] {
        let cap = 4 * (len + 8).next_power_of_two();
        let ch = Channel::new(ChannelOptions::new(cap).max_message(len)).unwrap();
        // As many as fit, with the 8 bytes of slack a sender keeps after its record.
        let fill = (cap - 8) / (8 + len.div_ceil(8) * 8);
        for _ in 0..fill {
            ch.send(&vec![0xAA; len]).unwrap();
        }
        let inside = std::sync::Barrier::new(2);
        let written = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                inside.wait();
                let (w64, _) = ch.hostile_words();
                let tail = w64[3].load(Ordering::SeqCst);
                w64[8].store(tail & 0xFFFF_FFFF, Ordering::SeqCst);
                // Overwrites the message the closure below is given (or is Busy/Full).
                let _ = ch.try_send(&vec![0xCC; len]);
                written.wait();
            });
            let (before, after) = ch
                .recv_with(|m| {
                    let before = m.to_vec();
                    inside.wait();
                    written.wait();
                    (before, m.to_vec())
                })
                .unwrap();
            assert_eq!(before, vec![0xAA; len]);
            assert_eq!(after, before, "the closure's bytes changed under it");
        });
    }
}

/// A slot inherited by a forked child is its parent's: the child's writes do nothing and
/// its commit is refused (it would move the shared `tail`), and the parent's commit is
/// the one received.
#[test]
#[cfg_attr(miri, ignore = "fork")]
fn a_slot_inherited_by_a_forked_child_is_not_committed_there() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(1024)).unwrap();
    let mut slot = ch.reserve(64).unwrap();
    slot.write_at(0, b"parent");
    let slot = std::cell::RefCell::new(Some(slot));
    let pids = common::fork_children(1, |_| {
        let mut s = slot.borrow_mut().take().unwrap();
        // Its writes do nothing: the bytes are the parent's (past a shorter commit of the
        // parent's, they would hold the word the next header goes to).
        s.write_at(0, &[b'c'; 64]);
        s.write_all(b"child").unwrap();
        assert_eq!(s.commit(), Err(SendError::Disconnected));
    });
    common::wait_all(&pids, Duration::from_secs(30));
    assert!(ch.is_empty());
    slot.into_inner().unwrap().commit_len(6).unwrap();
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(6));
    assert_eq!(out, b"parent");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
}

/// A send side inherited by a forked child is its parent's: the child's sends are
/// refused (they would move the shared `tail`), dropping it there leaves the parent's
/// lock held, and the parent's side goes on sending.
#[test]
#[cfg_attr(miri, ignore = "fork")]
fn a_send_side_inherited_by_a_forked_child_sends_nothing_there() {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(1024)).unwrap();
    let mut side = ch.send_side().unwrap();
    side.send(b"one").unwrap();
    let side = std::cell::RefCell::new(Some(side));
    let pids = common::fork_children(1, |_| {
        let mut s = side.borrow_mut().take().unwrap();
        assert_eq!(s.send(b"child"), Err(SendError::Disconnected));
        assert_eq!(s.try_send(b"child"), Err(TrySendError::Disconnected));
        drop(s);
    });
    common::wait_all(&pids, Duration::from_secs(30));
    // Still the parent's: other senders are kept out, the side sends.
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    let mut side = side.into_inner().unwrap();
    side.send(b"two").unwrap();
    drop(side);
    let mut out = Vec::new();
    for want in [&b"one"[..], b"two"] {
        assert_eq!(ch.try_recv(&mut out), Ok(want.len()));
        assert_eq!(out, want);
    }
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
}

/// `close` fails senders queued on the send side behind a slot holder too (within a
/// few milliseconds), not only when the slot is given back: here the join happens while
/// the slot is still held (a sender that waited for it would hang until the watchdog).
#[test]
fn close_fails_senders_queued_behind_a_slot_holder() {
    watchdog(Duration::from_secs(60));
    let ch = channel(1024);
    let slot = ch.reserve(4).unwrap();
    std::thread::scope(|s| {
        let blocking = s.spawn(|| ch.send(b"b"));
        let timed = s.spawn(|| ch.send_timeout(b"c", Duration::from_secs(3600)));
        // Not needed for the outcome (a sender that comes after the close fails too):
        // lets the senders queue first, which is the case under test.
        std::thread::sleep(Duration::from_millis(20));
        ch.close();
        assert_eq!(blocking.join().unwrap(), Err(SendError::Disconnected));
        assert_eq!(timed.join().unwrap(), Err(SendTimeoutError::Disconnected));
    });
    assert_eq!(slot.commit(), Err(SendError::Disconnected));
}

/// `drain(0, …)` receives nothing yet reports a closed, empty channel; corruption found
/// in the middle of a batch returns the messages already handed over, then `Corrupt`.
#[test]
fn drain_reports_closed_for_zero_and_counts_before_corruption() {
    watchdog(Duration::from_secs(60));
    let ch = channel(1024);
    ch.send(b"x").unwrap();
    assert_eq!(ch.drain(0, |_| panic!("max 0")), Ok(0));
    ch.close();
    assert_eq!(ch.drain(0, |_| panic!("max 0")), Ok(0));
    assert_eq!(ch.drain(1, |m| assert_eq!(m, b"x")), Ok(1));
    assert_eq!(
        ch.drain(0, |_| panic!("max 0")),
        Err(TryRecvError::Disconnected)
    );

    let ch = channel(1024);
    ch.send(b"a").unwrap();
    ch.send(b"b").unwrap();
    let (words, _) = ch.hostile_words();
    // The second record's header (ring word 2, at byte 16): a lying length.
    words[9 + 2].store(u64::MAX, Ordering::Relaxed);
    let mut got = Vec::new();
    assert_eq!(ch.drain(10, |m| got.push(m.to_vec())), Ok(1));
    assert_eq!(got, [b"a".to_vec()]);
    assert_eq!(ch.drain(10, |_| {}), Err(TryRecvError::Corrupt));
}

/// Every length from 0 to a few lines of words, at every alignment of the ring,
/// through each copy path (`send` and a held side's `send`; `recv`, `recv_into`,
/// `recv_with` on both sides of its stack buffer, `drain`, and unaligned `write_at`
/// pieces).
#[test]
fn every_length_survives_every_copy_path() {
    watchdog(Duration::from_secs(60));
    let ch = Channel::new(ChannelOptions::new(4096).max_message(600)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0; 600];
    for len in 0..600usize {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        ch.send(&msg).unwrap();
        assert_eq!(ch.recv(&mut out), Ok(len));
        assert_eq!(out, msg, "recv, length {len}");
        ch.send(&msg).unwrap();
        assert_eq!(ch.recv_into(&mut buf), Ok(len));
        assert_eq!(buf[..len], msg, "recv_into, length {len}");
        let mut slot = ch.reserve(len).unwrap();
        let cut = len / 3;
        slot.write_at(cut, &msg[cut..]);
        slot.write_at(0, &msg[..cut]);
        slot.commit().unwrap();
        assert_eq!(
            ch.recv_with(|m| m == msg),
            Ok(true),
            "recv_with, length {len}"
        );
        ch.send(&msg).unwrap();
        assert_eq!(ch.drain(1, |m| assert_eq!(m, msg)), Ok(1));
        ch.send_side().unwrap().send(&msg).unwrap();
        assert_eq!(ch.recv(&mut out), Ok(len));
        assert_eq!(out, msg, "a held side's send, length {len}");
    }
}

#[test]
fn corrupt_state_is_reported_not_trusted() {
    let mut out = Vec::new();
    // (word index in `hostile_words().0`, value, what the first receive returns)
    let cases: [(usize, u64, &str); 6] = [
        (0, 0, "magic destroyed"),
        (3, 1 << 20, "tail beyond a ring from free"),
        (3, 4, "tail not 8-aligned"),
        (
            9,
            u64::from(u32::MAX) | 0x4D53_4721 << 32,
            "a length above the largest",
        ),
        (9, 0x5041_4421 << 32, "padding in the middle of the ring"),
        (9, 0xDEAD_BEEF_0000_0004, "an unknown record kind"),
    ];
    for (i, v, what) in cases {
        let ch = channel(1024);
        ch.send(b"abcd").unwrap();
        let (words, _) = ch.hostile_words();
        words[i].store(v, Ordering::Relaxed);
        if i == 3 {
            // Receivers read `tail` only when they find no header at `head`: the message
            // published before is received, and the next look reports the garbage.
            assert_eq!(ch.try_recv(&mut out), Ok(4), "{what}");
            assert_eq!(ch.try_send(b"x"), Err(TrySendError::Corrupt), "{what}");
        }
        // A `try_` receive without a side reads `tail` only once in 64 of its thread's
        // looks at the channel that find no header (and reports `Empty` in between):
        // garbage in `tail` shows within 64 calls, anything else at once.
        let calls = if i == 3 { 64 } else { 1 };
        let first = (0..calls)
            .map(|_| ch.try_recv(&mut out))
            .find(|r| *r != Err(TryRecvError::Empty));
        assert_eq!(first, Some(Err(TryRecvError::Corrupt)), "{what}");
        assert_eq!(ch.recv(&mut out), Err(RecvError::Corrupt), "{what}");
        // A held side too (for a destroyed magic, taking it fails already).
        match ch.recv_side() {
            Ok(mut side) => {
                assert_eq!(
                    side.try_recv(&mut out),
                    Err(TryRecvError::Corrupt),
                    "{what}"
                );
                assert_eq!(
                    side.recv_timeout(&mut out, Duration::from_secs(10)),
                    Err(RecvTimeoutError::Corrupt),
                    "{what}"
                );
            }
            Err(e) => assert_eq!(e, RecvError::Corrupt, "{what}"),
        }
        let first = (0..calls)
            .map(|_| ch.drain(4, |_| {}))
            .find(|r| *r != Ok(0));
        assert_eq!(first, Some(Err(TryRecvError::Corrupt)), "{what}");
    }
    let ch = channel(1024);
    ch.hostile_words().0[0].store(0, Ordering::Relaxed);
    assert_eq!(ch.send(b"x"), Err(SendError::Corrupt));
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Corrupt));
    let ch = channel(1024);
    ch.hostile_words().0[3].store(2048, Ordering::Relaxed);
    assert_eq!(ch.send(b"x"), Err(SendError::Corrupt));
}

/// Overwrites every word of a channel with hostile values, one at a time, and runs every
/// non-blocking and timed operation: each returns (no panic, no hang; the watchdog bounds
/// the whole test).
#[test]
#[cfg_attr(miri, ignore = "hundreds of channels: too slow under Miri")]
fn hostile_words_never_panic_or_hang() {
    watchdog(LIMIT);
    let values = [
        0u64,
        1,
        4,
        8,
        u64::MAX,
        u64::from(u32::MAX),
        1 << 32,
        1 << 31,
        0x4D53_4721 << 32 | 0xFFFF,
        0x5041_4421 << 32,
        0x4348_4E04 << 32 | 0xFFFF_FFFF,
        0x534B_4921 << 32 | 0x10,
        0x4D53_4721_0000_0010,
    ];
    let mut rng = Rng(0xC0FFEE);
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    let n64 = channel(256).hostile_words().0.len();
    let n32 = channel(256).hostile_words().1.len();
    for word in 0..n64 + n32 {
        for k in 0..values.len() + 4 {
            let v = values.get(k).copied().unwrap_or_else(|| rng.next());
            let ch = channel(256);
            ch.send(b"first").unwrap();
            ch.send(&[9; 40]).unwrap();
            let (w64, w32) = ch.hostile_words();
            if word < n64 {
                w64[word].store(v, Ordering::Relaxed);
            } else {
                w32[word - n64].store(v as u32, Ordering::Relaxed);
            }
            let t = Duration::from_millis(1);
            let _ = ch.try_send(b"x");
            let _ = ch.send_timeout(&[1; 60], t);
            if let Ok(mut s) = ch.try_reserve(8) {
                s.write_at(0, b"reserved");
                let _ = s.commit();
            }
            let _ = ch.try_recv(&mut out);
            let _ = ch.recv_timeout(&mut out, t);
            let _ = ch.try_recv_with(|m| m.len());
            let _ = ch.recv_timeout_with(t, |m| m.len());
            let _ = ch.drain(4, |_| {});
            let _ = (
                ch.len(),
                ch.bytes_used(),
                ch.is_empty(),
                ch.lost(),
                ch.options(),
            );
            assert!(ch.len() <= 256 / 8);
            assert!(ch.bytes_used() <= 256);
            let _ = format!("{ch:?}");
            ch.close();
            let _ = ch.try_recv(&mut out);
            // Closed, with both locks free (a lock word naming a live thread would make
            // a blocking call wait, as for a stopped holder): a blocking receive
            // returns a message, `Disconnected` or `Corrupt`.
            if word < n64 {
                if let Ok(n) = ch.recv_into(&mut buf) {
                    assert!(n <= buf.len());
                }
                let _ = ch.recv(&mut out);
            }
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot map shared memory")]
fn region_channels_are_created_once_and_opened_by_name() {
    let region = Region::anonymous(1 << 20).unwrap();
    let opts = ChannelOptions::new(4096).max_message(100);
    let a = region.channel("jobs", opts).unwrap();
    a.send(b"hello").unwrap();
    let b = region.channel("jobs", opts).unwrap();
    assert!(std::ptr::eq(a, b));
    let c = region.open_channel("jobs").unwrap();
    assert_eq!(c.options(), ChannelOptions::new(4096).max_message(100));
    let mut out = Vec::new();
    c.recv(&mut out).unwrap();
    assert_eq!(out, b"hello");
    assert!(matches!(
        region.channel("jobs", ChannelOptions::new(4096).max_message(101)),
        Err(ChannelOpenError::Mismatch { .. })
    ));
    assert!(matches!(
        region.channel("jobs", ChannelOptions::new(8192)),
        Err(ChannelOpenError::Mismatch { .. })
    ));
    assert!(matches!(
        region.open_channel("nope"),
        Err(ChannelOpenError::Get(GetError::NotFound { .. }))
    ));
    assert!(matches!(
        region.channel("bad", ChannelOptions::new(64).max_message(100)),
        Err(ChannelOpenError::InvalidOptions(_))
    ));
    assert_eq!(Kind::CHANNEL.name(), Some("Channel"));
    let entry = region
        .entries()
        .into_iter()
        .find(|e| e.name == "jobs")
        .unwrap();
    assert_eq!(entry.len, 4096 / 8);
}

#[test]
fn a_held_receive_side_makes_try_calls_busy_and_leaves_senders_free() {
    // A try call on a channel whose receive side another thread holds (a long `drain`
    // closure) returns Busy, not a wait.
    watchdog(Duration::from_secs(60));
    let ch = channel(1024);
    ch.send(b"a").unwrap();
    ch.send(b"b").unwrap();
    let inside = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let n = ch
                .drain(1, |_| {
                    inside.store(true, Ordering::Release);
                    while !release.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                })
                .unwrap();
            assert_eq!(n, 1);
        });
        while !inside.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let mut out = Vec::new();
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
        assert_eq!(ch.drain(1, |_| {}), Err(TryRecvError::Busy));
        assert_eq!(
            times_out_after(SHORT, |d| ch.recv_timeout(&mut out, d)),
            Err(RecvTimeoutError::Timeout)
        );
        // Senders are not held up by a busy receiver.
        ch.try_send(b"c").unwrap();
        release.store(true, Ordering::Release);
    });
}

/// `try_` calls that find a lock of the channel held by a live party probe the holder
/// (a `kill` and a read of `/proc`) once per millisecond of a thread's calls, not at
/// each, so that polling a busy channel costs no syscall per call: a `try_send` on a full
/// ring while a receiver holds a claim (it is copying a message out), a `try_recv` while
/// that receiver holds the receive lock, a `try_send` while a send side is held elsewhere.
#[cfg_attr(miri, ignore = "reads /proc")]
#[test]
fn try_calls_that_find_a_live_holder_probe_it_once_a_millisecond() {
    watchdog(LIMIT);
    let Some(a) = reads() else {
        eprintln!("skipped: no I/O accounting (/proc/thread-self/io)");
        return;
    };
    // What one look at the counts reads.
    let look = reads().unwrap() - a;
    const CALLS: u32 = 640;
    // The probes of `CALLS` calls, against what once a millisecond allows: one at the
    // first look, one per millisecond since, each reading at most twice (the holder's
    // `stat`, and its `status`). A probe at every call makes at least `CALLS` reads.
    let probes_of = |mut call: Box<dyn FnMut() + '_>| {
        let before = reads().unwrap();
        let t = Instant::now();
        for _ in 0..CALLS {
            call();
        }
        let ms = t.elapsed().as_millis() as u64;
        (reads().unwrap() - before - look, 2 * (ms + 2))
    };
    let ch = Channel::new(ChannelOptions::new(4096).max_message(256)).unwrap();
    let msg = [1u8; 200];
    while ch.try_send(&msg).is_ok() {}
    let (claimed_tx, claimed) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let ch = &ch;
        s.spawn(move || {
            ch.recv_with(|_| {
                claimed_tx.send(()).unwrap();
                // Until the test has polled (or failed: the sender is dropped then).
                let _ = release_rx.recv();
            })
            .unwrap();
        });
        claimed.recv().unwrap();
        let (n, bound) = probes_of(Box::new(|| {
            assert_eq!(ch.try_send(&msg), Err(TrySendError::Full));
        }));
        assert!(
            n <= bound,
            "{n} reads in {CALLS} try_send calls on a full ring"
        );
        let mut out = Vec::new();
        let (n, bound) = probes_of(Box::new(|| {
            assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
        }));
        assert!(
            n <= bound,
            "{n} reads in {CALLS} try_recv calls, receive lock held"
        );
        drop(release);
    });
    let ch = Channel::new(ChannelOptions::new(4096)).unwrap();
    let (held_tx, held) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let ch = &ch;
        s.spawn(move || {
            let _side = ch.send_side().unwrap();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        held.recv().unwrap();
        let (n, bound) = probes_of(Box::new(|| {
            assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
        }));
        assert!(
            n <= bound,
            "{n} reads in {CALLS} try_send calls, send side held"
        );
        drop(release);
    });
}

#[cfg(feature = "serde")]
mod values {
    use super::*;
    use shmstate::{RecvValueError, SendValueError};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        name: String,
        weights: Vec<f32>,
        kind: Kind2,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Kind2 {
        Small,
        Big { pages: u32 },
    }

    #[test]
    fn values_round_trip_through_postcard() {
        let ch = channel(4096);
        let job = Job {
            id: 7,
            name: "resize".into(),
            weights: vec![0.5, 1.5],
            kind: Kind2::Big { pages: 3 },
        };
        ch.send_value(&job).unwrap();
        ch.try_send_value(&Kind2::Small).unwrap();
        ch.send_value_timeout(&42u16, SHORT).unwrap();
        assert_eq!(ch.recv_value::<Job>().unwrap(), job);
        assert_eq!(ch.try_recv_value::<Kind2>().unwrap(), Kind2::Small);
        assert_eq!(ch.recv_value_timeout::<u16>(SHORT).unwrap(), 42);
        assert!(matches!(
            ch.try_recv_value::<u8>(),
            Err(RecvValueError::Empty)
        ));
        assert!(matches!(
            ch.recv_value_timeout::<u8>(SHORT),
            Err(RecvValueError::Timeout)
        ));
        // Too large, by its encoded size.
        assert!(matches!(
            ch.send_value(&vec![1u8; 2000]),
            Err(SendValueError::TooLarge {
                len: 2002,
                max: 1024
            })
        ));
        // A message that is not a `Job` is consumed and reported.
        ch.send(&[0xFF; 3]).unwrap();
        assert!(matches!(
            ch.recv_value::<Job>(),
            Err(RecvValueError::Deserialize(_))
        ));
        assert!(ch.is_empty());
        ch.close();
        assert!(matches!(
            ch.send_value(&1u8),
            Err(SendValueError::Disconnected)
        ));
        assert!(matches!(
            ch.recv_value::<u8>(),
            Err(RecvValueError::Disconnected)
        ));
    }
}

/// A child forked where a test wants one (inside a closure under a claim): it waits
/// until the parent has moved on, then returns to the code it was forked in.
struct ParkedFork {
    fds: [libc::c_int; 2],
}

impl ParkedFork {
    fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY: `fds` is two ints for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        ParkedFork { fds }
    }

    /// Forks: in the child, waits for [`release`](Self::release) (a byte, or EOF if the
    /// parent died) and returns 0; in the parent, returns the child's pid at once.
    fn fork(&self) -> libc::pid_t {
        // SAFETY: the child only reads a pipe before it returns to the caller, which
        // `_exit`s it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: reading one byte into `b` from our end of the pipe.
            unsafe { libc::read(self.fds[0], (&raw mut b).cast(), 1) };
        }
        pid
    }

    /// Lets `child` go on, and reaps it: its wait status.
    fn release(&self, child: libc::pid_t) -> libc::c_int {
        // SAFETY: writing one byte from a local to our end of the pipe.
        let wrote = unsafe { libc::write(self.fds[1], [1u8].as_ptr().cast(), 1) };
        assert_eq!(wrote, 1);
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        status
    }
}

/// A child forked inside a `recv_with` closure returns from it after its parent went on
/// using the channel: the child's copy of the claim releases nothing (the claim is the
/// parent's), so the parent's channel stays consistent.
#[test]
fn a_child_forked_inside_recv_with_leaves_the_parents_channel_working() {
    common::watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(128)).unwrap();
    ch.try_send(&[0xA; 16]).unwrap();
    let parked = ParkedFork::new();
    let mut child = 0;
    ch.recv_with(|_| child = parked.fork()).unwrap();
    if child == 0 {
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut out = Vec::new();
    for _ in 0..4 {
        ch.try_send(&[0xB; 16]).unwrap();
    }
    ch.try_recv(&mut out).unwrap();
    ch.try_send(&[0xC; 16]).unwrap();
    parked.release(child);
    // The child's claim released nothing: the 4 messages left are all received.
    for expected in [[0xB; 16], [0xB; 16], [0xB; 16], [0xC; 16]] {
        assert_eq!(ch.try_recv(&mut out), Ok(16));
        assert_eq!(out, expected);
    }
    assert_eq!(ch.lost(), 0);
    ch.try_send(&[0xE; 8]).unwrap();
    assert_eq!(ch.try_recv(&mut out), Ok(8));
}

/// A child forked inside a `drain` closure returns from it after its parent went on
/// draining and more messages came: the child ends the batch there (the receive side is
/// its parent's thread's), claiming nothing more, so the parent loses nothing.
#[test]
fn a_child_forked_inside_drain_claims_nothing_more() {
    common::watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(256)).unwrap();
    for i in 0..3u8 {
        ch.try_send(&[i; 8]).unwrap();
    }
    let parked = ParkedFork::new();
    let mut child = -1;
    let mut got = Vec::new();
    let n = ch
        .drain(usize::MAX, |m| {
            got.push(m[0]);
            if child == -1 {
                // The child goes on once the parent drained the rest and sent more.
                child = parked.fork();
            }
        })
        .unwrap();
    if child == 0 {
        // The child's batch ended at its first message: report how many it took.
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(n as i32) };
    }
    assert_eq!((n, got.as_slice()), (3, &[0, 1, 2][..]));
    for i in 3..7u8 {
        ch.try_send(&[i; 8]).unwrap();
    }
    let status = parked.release(child);
    assert!(libc::WIFEXITED(status));
    assert_eq!(
        libc::WEXITSTATUS(status),
        1,
        "the child's drain took one message"
    );
    let mut out = Vec::new();
    for i in 3..7u8 {
        assert_eq!(ch.try_recv(&mut out), Ok(8));
        assert_eq!(out, [i; 8]);
    }
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
}

// ---------------------------------------------------------------------------------------
// A held send side.

#[test]
fn a_held_send_side_sends_in_order_and_keeps_other_senders_out() {
    watchdog(LIMIT);
    let ch = channel(1024);
    let mut side = ch.send_side().unwrap();
    for i in 0..5u8 {
        side.send(&[i; 3]).unwrap();
    }
    assert_eq!(ch.try_send(b"x"), Err(TrySendError::Busy));
    assert_eq!(ch.send_timeout(b"x", SHORT), Err(SendTimeoutError::Timeout));
    assert!(matches!(ch.try_send_side(), Err(TrySendError::Busy)));
    assert!(matches!(
        ch.send_side_timeout(SHORT),
        Err(SendTimeoutError::Timeout)
    ));
    assert!(matches!(ch.try_reserve(1), Err(TrySendError::Busy)));
    // Receivers go on while the side is held.
    let mut out = Vec::new();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, [0; 3]);
    drop(side);
    ch.try_send(b"after").unwrap();
    for i in 1..5u8 {
        ch.recv(&mut out).unwrap();
        assert_eq!(out, [i; 3]);
    }
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"after");
}

#[test]
fn a_held_send_side_reports_full_and_waits_for_room() {
    watchdog(LIMIT);
    let ch = channel(256);
    let mut side = ch.send_side().unwrap();
    let msg = [7u8; 40];
    let mut sent = 0;
    while side.try_send(&msg).is_ok() {
        sent += 1;
    }
    assert!(sent > 0);
    assert_eq!(side.try_send(&msg), Err(TrySendError::Full));
    let t = Instant::now();
    assert_eq!(
        side.send_timeout(&msg, SHORT),
        Err(SendTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= SHORT);
    assert_eq!(
        side.send_until(&msg, Instant::now()),
        Err(SendTimeoutError::Timeout)
    );
    // A blocking send under the side waits for a receiver (another thread) to make room.
    let received = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut out = Vec::new();
            while received.load(Ordering::Relaxed) < sent + 3 {
                ch.recv(&mut out).unwrap();
                assert_eq!(out, msg);
                received.fetch_add(1, Ordering::Relaxed);
            }
        });
        for _ in 0..3 {
            side.send(&msg).unwrap();
        }
    });
    assert_eq!(received.load(Ordering::Relaxed), sent + 3);
    assert!(ch.is_empty());
}

#[test]
fn a_held_send_side_refuses_oversized_messages_and_a_closed_channel() {
    watchdog(LIMIT);
    let ch = Channel::new(ChannelOptions::new(1024).max_message(100)).unwrap();
    let mut side = ch.send_side().unwrap();
    assert_eq!(
        side.send(&[0; 101]),
        Err(SendError::TooLarge { len: 101, max: 100 })
    );
    assert_eq!(
        side.try_send(&[0; 101]),
        Err(TrySendError::TooLarge { len: 101, max: 100 })
    );
    side.send(b"before the close").unwrap();
    ch.close();
    assert_eq!(side.send(b"late"), Err(SendError::Disconnected));
    assert_eq!(side.try_send(b"late"), Err(TrySendError::Disconnected));
    assert_eq!(
        side.send_timeout(b"late", SHORT),
        Err(SendTimeoutError::Disconnected)
    );
    drop(side);
    assert!(matches!(ch.send_side(), Err(SendError::Disconnected)));
    let mut out = Vec::new();
    ch.recv(&mut out).unwrap();
    assert_eq!(out, b"before the close");
    assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
}

#[test]
fn a_held_send_side_wraps_around_the_ring_in_order() {
    watchdog(LIMIT);
    let ch = channel(512);
    let mut rng = Rng(0x5eed);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut side = ch.send_side().unwrap();
            for i in 0..ROUNDS as u32 {
                let len = 4 + (rng.next() % 120) as usize;
                let mut msg = vec![(i % 251) as u8; len];
                msg[..4].copy_from_slice(&i.to_le_bytes());
                side.send(&msg).unwrap();
            }
        });
        let mut out = Vec::new();
        for i in 0..ROUNDS as u32 {
            ch.recv(&mut out).unwrap();
            assert_eq!(out[..4], i.to_le_bytes());
            assert!(out[4..].iter().all(|&b| b == (i % 251) as u8));
        }
    });
    assert!(ch.is_empty());
}

// ---------------------------------------------------------------------------------------
// A held receive side.

#[test]
fn a_held_recv_side_receives_in_order_and_keeps_other_receivers_out() {
    watchdog(LIMIT);
    let ch = channel(1024);
    for i in 0..6u8 {
        ch.send(&[i; 3]).unwrap();
    }
    let mut side = ch.recv_side().unwrap();
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Ok(3));
    assert_eq!(out, [0; 3]);
    let mut buf = [0; 8];
    assert_eq!(side.recv_into(&mut buf), Ok(3));
    assert_eq!(buf[..3], [1; 3]);
    assert_eq!(side.try_recv(&mut out), Ok(3));
    assert_eq!(out, [2; 3]);
    assert_eq!(side.recv_with(|m| m.to_vec()), Ok(vec![3; 3]));
    assert_eq!(side.try_recv_with(|m| m[0]), Ok(4));
    // Other receivers wait, within their bounds.
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Busy));
    assert_eq!(
        ch.recv_timeout(&mut out, SHORT),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(matches!(ch.try_recv_side(), Err(TryRecvError::Busy)));
    assert!(matches!(
        ch.recv_side_timeout(SHORT),
        Err(RecvTimeoutError::Timeout)
    ));
    assert_eq!(ch.drain(10, |_| {}), Err(TryRecvError::Busy));
    // Senders go on.
    ch.try_send(b"more").unwrap();
    assert_eq!(side.recv_timeout(&mut out, SHORT), Ok(3));
    assert_eq!(out, [5; 3]);
    drop(side);
    assert_eq!(ch.try_recv(&mut out), Ok(4));
    assert_eq!(out, b"more");
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
}

#[test]
fn a_held_recv_side_reports_empty_and_times_out_and_is_woken_by_a_send() {
    watchdog(LIMIT);
    let ch = channel(1024);
    let mut side = ch.recv_side().unwrap();
    let mut out = Vec::new();
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
    assert_eq!(side.try_recv_with(|_| ()), Err(TryRecvError::Empty));
    assert_eq!(side.drain(10, |_| {}), Ok(0));
    let t0 = Instant::now();
    assert_eq!(
        side.recv_timeout(&mut out, SHORT),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t0.elapsed() >= SHORT);
    assert_eq!(
        side.recv_until(&mut out, Instant::now()),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        side.recv_timeout_with(SHORT, |_| ()),
        Err(RecvTimeoutError::Timeout)
    );
    // A blocking receive under the side is woken by a sender on another thread, through
    // the spin or a sleep: every message arrives, in order.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200u32 {
                ch.send(&i.to_le_bytes()).unwrap();
                if i % 50 == 0 {
                    // Long enough for the receiver to go to sleep now and then.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        for i in 0..200u32 {
            assert_eq!(side.recv(&mut out), Ok(4));
            assert_eq!(out, i.to_le_bytes());
        }
    });
}

/// `try_` receives without a side read `tail` only now and then (once in 64 of their
/// thread's looks that find no header): a close is still seen at once, by `try_recv`,
/// `try_recv_into` and `drain`, after any number of empty polls.
#[test]
fn polls_without_a_side_see_a_close_at_once() {
    watchdog(LIMIT);
    for polls in [1, 10, 63, 64, 65, 200] {
        // A fresh thread: its count of empty looks starts anew.
        std::thread::scope(|s| {
            s.spawn(|| {
                let ch = channel(1024);
                let mut out = Vec::new();
                let mut buf = [0; 8];
                for _ in 0..polls {
                    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
                }
                ch.send(b"last").unwrap();
                ch.close();
                assert_eq!(ch.try_recv_into(&mut buf), Ok(4), "after {polls} polls");
                assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
                assert_eq!(
                    ch.try_recv_into(&mut buf),
                    Err(TryRecvIntoError::Disconnected)
                );
                assert_eq!(ch.drain(4, |_| {}), Err(TryRecvError::Disconnected));
            });
        });
    }
    // Closed by another thread while this one polls: once it has seen the close
    // (`is_closed`), its next `try_` receive says so; before, either answer is right (the
    // close may finish in between). The loom model
    // `a_try_recv_after_the_close_is_seen_reports_disconnected` checks the order.
    let ch = channel(1024);
    let mut out = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| ch.close());
        loop {
            let seen = ch.is_closed();
            match ch.try_recv(&mut out) {
                Err(TryRecvError::Disconnected) => break,
                r => {
                    assert!(!seen, "Empty after the close was seen");
                    assert_eq!(r, Err(TryRecvError::Empty));
                }
            }
        }
    });
}

/// Marks the channel closed as a closer killed after its first step (`closed` stored,
/// the close not yet final: `end` not recorded) leaves it.
fn close_not_final(ch: &Channel) {
    // The config line's third word: `closed`.
    ch.hostile_words().0[2].store(1, Ordering::Relaxed);
}

/// Whether `end` is recorded (its top bit; the word after the ring in `hostile_words`).
fn end_recorded(ch: &Channel) -> bool {
    let (w64, _) = ch.hostile_words();
    w64[w64.len() - 3].load(Ordering::Relaxed) >> 63 == 1
}

/// A closer killed after it stored `closed`, before the close was final: sends are
/// refused, the channel does not yet say closed, and the next receive that finds no
/// message makes it final (the send lock is free) and reports `Disconnected`, after what
/// was sent before.
#[test]
fn a_close_left_not_final_is_made_final_by_the_next_receive() {
    watchdog(LIMIT);
    let mut out = Vec::new();
    // A `try_` receive, a blocking one, and a drain.
    for how in 0..3 {
        let ch = channel(1024);
        ch.send(b"before").unwrap();
        close_not_final(&ch);
        assert!(!ch.is_closed());
        assert!(!end_recorded(&ch));
        assert_eq!(ch.try_recv(&mut out), Ok(6));
        match how {
            0 => assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected)),
            1 => assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected)),
            _ => assert_eq!(ch.drain(4, |_| {}), Err(TryRecvError::Disconnected)),
        }
        assert!(end_recorded(&ch));
        assert!(ch.is_closed());
        assert_eq!(ch.try_send(b"x"), Err(TrySendError::Disconnected));
    }
}

/// The same, made final by a send: a sender that takes the lock and finds `closed` set
/// records `end` itself before it reports `Disconnected`.
#[test]
fn a_close_left_not_final_is_made_final_by_the_next_send() {
    watchdog(LIMIT);
    let ch = channel(1024);
    ch.send(b"before").unwrap();
    close_not_final(&ch);
    assert_eq!(ch.send(b"x"), Err(SendError::Disconnected));
    assert!(ch.is_closed());
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(6));
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
}

/// With the send side held by a live thread between its sends: a `try_` receive cannot
/// make the close final (it issues no barrier and cannot take the lock), so it reports
/// `Empty`; a waiting receive can (the barrier, then `busy` read 0), and reports
/// `Disconnected`; so can the holder, at its next send.
#[test]
fn a_close_left_not_final_under_a_held_send_side() {
    watchdog(LIMIT);
    for by_holder in [false, true] {
        let ch = channel(1024);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let ch = &ch;
            s.spawn(move || {
                let mut side = ch.send_side().unwrap();
                side.send(b"before").unwrap();
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                if by_holder {
                    assert_eq!(side.send(b"x"), Err(SendError::Disconnected));
                }
            });
            held_rx.recv().unwrap();
            close_not_final(ch);
            let mut out = Vec::new();
            assert_eq!(ch.try_recv(&mut out), Ok(6));
            for _ in 0..100 {
                assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
            }
            assert!(!end_recorded(ch));
            if by_holder {
                go_tx.send(()).unwrap();
                // The holder's refused send recorded `end` (under the lock) before it
                // returned; the thread ends and the side is dropped.
            } else {
                assert_eq!(
                    ch.recv_timeout(&mut out, LIMIT),
                    Err(RecvTimeoutError::Disconnected)
                );
                assert!(end_recorded(ch));
                go_tx.send(()).unwrap();
            }
        });
        assert!(ch.is_closed());
        let mut out = Vec::new();
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
    }
}

/// A thread that polls several channels in turn with `try_` receives still reads each
/// one's `tail` within 64 looks at it (the looks are counted per channel): garbage in
/// one channel's `tail` is reported within 64 polls of it, however the polls of the
/// others fall in between.
#[test]
fn polls_of_several_channels_read_each_tail_within_64_looks() {
    watchdog(LIMIT);
    for others in [1, 2, 3, 7] {
        for lead in 0..2 {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let quiet: Vec<Box<Channel>> = (0..others).map(|_| channel(1024)).collect();
                    let bad = channel(1024);
                    let mut out = Vec::new();
                    // Looks at `bad` before the garbage, so that its count is under way
                    // (a channel's first look always reads `tail`).
                    for _ in 0..5 {
                        assert_eq!(bad.try_recv(&mut out), Err(TryRecvError::Empty));
                    }
                    bad.hostile_words().0[3].store(2048, Ordering::Relaxed);
                    // Looks at the others before the first at `bad`: 0 or 1 rounds.
                    for q in quiet.iter().take(lead) {
                        assert_eq!(q.try_recv(&mut out), Err(TryRecvError::Empty));
                    }
                    let mut polls = 0;
                    loop {
                        polls += 1;
                        match bad.try_recv(&mut out) {
                            Err(TryRecvError::Empty) => {
                                assert!(polls < 64, "{others} {lead}: never read");
                            }
                            r => {
                                assert_eq!(r, Err(TryRecvError::Corrupt), "{others} {lead}");
                                break;
                            }
                        }
                        for q in &quiet {
                            assert_eq!(q.try_recv(&mut out), Err(TryRecvError::Empty));
                        }
                    }
                });
            });
        }
    }
}

#[test]
fn a_held_recv_side_takes_what_is_left_of_a_closed_channel_then_reports_disconnected() {
    watchdog(LIMIT);
    let ch = channel(1024);
    ch.send(b"a").unwrap();
    ch.send(b"b").unwrap();
    ch.close();
    // A closed channel still gives the side.
    let mut side = ch.recv_side().unwrap();
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Ok(1));
    assert_eq!(side.drain(10, |m| assert_eq!(m, b"b")), Ok(1));
    assert_eq!(side.recv(&mut out), Err(RecvError::Disconnected));
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Disconnected));
    assert_eq!(side.drain(10, |_| {}), Err(TryRecvError::Disconnected));
    assert_eq!(
        side.recv_timeout(&mut out, LIMIT),
        Err(RecvTimeoutError::Disconnected)
    );
    // Polls that found nothing before the close (they read `tail` only now and then)
    // see it at once after; so does a timed receive too short to wait.
    let ch = channel(1024);
    let mut side = ch.recv_side().unwrap();
    for _ in 0..10 {
        assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
    }
    ch.close();
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Disconnected));
    assert_eq!(
        side.recv_timeout(&mut out, Duration::ZERO),
        Err(RecvTimeoutError::Disconnected)
    );
    drop(side);
    // A close wakes a receive waiting under the side.
    let ch = channel(1024);
    std::thread::scope(|s| {
        let mut side = ch.recv_side().unwrap();
        let mut out = Vec::new();
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            ch.close();
        });
        assert_eq!(side.recv(&mut out), Err(RecvError::Disconnected));
    });
}

#[test]
fn a_held_recv_side_leaves_a_message_too_long_for_the_buffer() {
    watchdog(LIMIT);
    let ch = channel(1024);
    ch.send(b"hello").unwrap();
    let mut side = ch.recv_side().unwrap();
    let mut small = [0; 2];
    assert_eq!(
        side.recv_into(&mut small),
        Err(RecvIntoError::TooSmall { needed: 5 })
    );
    let mut buf = [0; 16];
    assert_eq!(side.recv_into(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(ch.lost(), 0);
}

/// A closure that panics under a held side: its message counts as received (released,
/// never delivered again), and the side goes on with the next.
#[test]
fn a_held_recv_side_receives_into_a_buffer_without_waiting_or_until_a_deadline() {
    watchdog(LIMIT);
    let ch = channel(1024);
    let mut side = ch.recv_side().unwrap();
    let mut buf = [0; 4];
    assert_eq!(side.try_recv_into(&mut buf), Err(TryRecvIntoError::Empty));
    let t0 = Instant::now();
    assert_eq!(
        side.recv_timeout_into(&mut buf, SHORT),
        Err(RecvTimeoutIntoError::Timeout)
    );
    assert!(t0.elapsed() >= SHORT);
    assert_eq!(
        side.recv_until_into(&mut buf, Instant::now()),
        Err(RecvTimeoutIntoError::Timeout)
    );
    ch.send(b"hello").unwrap();
    ch.send(b"one").unwrap();
    ch.send(b"two").unwrap();
    assert_eq!(
        side.try_recv_into(&mut buf),
        Err(TryRecvIntoError::TooSmall { needed: 5 })
    );
    assert_eq!(
        side.recv_timeout_into(&mut buf, LIMIT),
        Err(RecvTimeoutIntoError::TooSmall { needed: 5 })
    );
    let mut big = [0; 5];
    assert_eq!(side.try_recv_into(&mut big), Ok(5));
    assert_eq!(&big, b"hello");
    assert_eq!(side.recv_timeout_into(&mut buf, LIMIT), Ok(3));
    assert_eq!(&buf[..3], b"one");
    ch.close();
    assert_eq!(
        side.recv_until_into(&mut buf, Instant::now() + LIMIT),
        Ok(3)
    );
    assert_eq!(&buf[..3], b"two");
    assert_eq!(
        side.try_recv_into(&mut buf),
        Err(TryRecvIntoError::Disconnected)
    );
    assert_eq!(
        side.recv_timeout_into(&mut buf, LIMIT),
        Err(RecvTimeoutIntoError::Disconnected)
    );
    drop(side);
    assert_eq!(ch.lost(), 0);
}

#[test]
fn a_panic_in_a_held_recv_side_closure_releases_its_message_once() {
    watchdog(LIMIT);
    let ch = channel(1024);
    for i in 0..4u8 {
        ch.send(&[i; 4]).unwrap();
    }
    let mut side = ch.recv_side().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        side.recv_with(|_| panic!("in the closure")).unwrap();
    }));
    assert!(r.is_err());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        side.drain(10, |_| panic!("in the drain")).unwrap();
    }));
    assert!(r.is_err());
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Ok(4));
    assert_eq!(out, [2; 4]);
    assert_eq!(side.drain(10, |m| assert_eq!(m, [3; 4])), Ok(1));
    assert_eq!(side.try_recv(&mut out), Err(TryRecvError::Empty));
    drop(side);
    assert_eq!(ch.bytes_used(), 0);
    assert_eq!(ch.lost(), 0);
}

/// Every length and ring alignment through a held receive side (the copy paths of
/// `recv`, `recv_into`, `recv_with` and `drain`), with the ring wrapping many times.
#[test]
fn every_length_survives_a_held_recv_side() {
    watchdog(Duration::from_secs(60));
    let ch = Channel::new(ChannelOptions::new(4096).max_message(600)).unwrap();
    let mut side = ch.recv_side().unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0; 600];
    for len in 0..600usize {
        let msg: Vec<u8> = (0..len).map(|i| (i * 5 + len) as u8).collect();
        for _ in 0..4 {
            ch.send(&msg).unwrap();
        }
        assert_eq!(side.recv(&mut out), Ok(len));
        assert_eq!(out, msg, "recv, length {len}");
        assert_eq!(side.recv_into(&mut buf), Ok(len));
        assert_eq!(buf[..len], msg, "recv_into, length {len}");
        assert_eq!(side.recv_with(|m| m == msg), Ok(true), "recv_with {len}");
        assert_eq!(side.drain(1, |m| assert_eq!(m, msg)), Ok(1));
    }
    assert_eq!(ch.bytes_used(), 0);
}

/// A child forked while its parent holds a receive side: the child's copy receives
/// nothing (`Disconnected`), and the parent's side goes on.
#[test]
fn a_recv_side_inherited_by_a_forked_child_receives_nothing_there() {
    watchdog(LIMIT);
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(256)).unwrap();
    ch.try_send(b"one").unwrap();
    ch.try_send(b"two").unwrap();
    let mut side = ch.recv_side().unwrap();
    // SAFETY: the child only calls the side, then `_exit`s.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut out = Vec::new();
        let code = match (side.try_recv(&mut out), side.drain(10, |_| {})) {
            (Err(TryRecvError::Disconnected), Err(TryRecvError::Disconnected)) => 0,
            _ => 1,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Ok(3));
    assert_eq!(out, b"one");
    assert_eq!(side.recv(&mut out), Ok(3));
    assert_eq!(out, b"two");
    assert_eq!(ch.lost(), 0);
}

/// A child forked inside a `recv_with` closure under a held receive side returns from it
/// after its parent went on: the child's copy of the claim releases nothing, so the
/// parent's channel stays consistent.
#[test]
fn a_child_forked_inside_a_held_recv_sides_closure_releases_nothing() {
    watchdog(LIMIT);
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("ch", ChannelOptions::new(128)).unwrap();
    ch.try_send(&[0xA; 16]).unwrap();
    let parked = ParkedFork::new();
    let mut side = ch.recv_side().unwrap();
    let mut child = 0;
    side.recv_with(|_| child = parked.fork()).unwrap();
    if child == 0 {
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut out = Vec::new();
    for _ in 0..4 {
        ch.try_send(&[0xB; 16]).unwrap();
    }
    assert_eq!(side.try_recv(&mut out), Ok(16));
    ch.try_send(&[0xC; 16]).unwrap();
    let used = ch.bytes_used();
    parked.release(child);
    assert_eq!(ch.bytes_used(), used, "the child moved `free`");
    for expected in [[0xB; 16], [0xB; 16], [0xB; 16], [0xC; 16]] {
        assert_eq!(side.try_recv(&mut out), Ok(16));
        assert_eq!(out, expected);
    }
    drop(side);
    assert_eq!(ch.lost(), 0);
    assert_eq!(ch.bytes_used(), 0);
}

/// A peer that writes the shared `head` word while a side is held: the side goes by its
/// own copy, so it still sees a close (at once, not spinning) and receives in order.
#[test]
fn a_held_recv_side_goes_by_its_own_head_not_a_peers_write_of_it() {
    watchdog(LIMIT);
    let ch = channel(1024);
    ch.send(b"one").unwrap();
    let mut side = ch.recv_side().unwrap();
    let (w64, _) = ch.hostile_words();
    // Word 5 is `head` (`hostile_words`' docs): a position 8 bytes on, mid-record.
    w64[5].store(8, Ordering::Relaxed);
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Ok(3));
    assert_eq!(out, b"one");
    w64[5].store(8, Ordering::Relaxed);
    ch.close();
    let t0 = Instant::now();
    assert_eq!(side.recv(&mut out), Err(RecvError::Disconnected));
    assert_eq!(
        side.recv_timeout(&mut out, LIMIT),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(side.drain(4, |_| {}), Err(TryRecvError::Disconnected));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// A peer that writes the receive lock's word while a side is held: the side's calls
/// report `Corrupt`, not `Disconnected` (the channel was never closed).
#[test]
fn a_held_recv_side_reports_a_garbage_lock_word_as_corrupt() {
    watchdog(LIMIT);
    let ch = channel(1024);
    ch.send(b"one").unwrap();
    let mut side = ch.recv_side().unwrap();
    let (_, w32) = ch.hostile_words();
    // Word 1 is the receive lock (`hostile_words`' docs); a stamp without a TID.
    w32[1].store(0x3F00_0000, Ordering::Relaxed);
    let mut out = Vec::new();
    assert_eq!(side.recv(&mut out), Err(RecvError::Corrupt));
    assert_eq!(side.drain(4, |_| {}), Err(TryRecvError::Corrupt));
}

/// A sender "killed" between its commit and its header (`tail` moved past a record whose
/// header is still 0, the send lock naming a thread that does not exist), with `pending`
/// right or garbage: the repair (by a receiver, or a sender) never panics, writes only
/// inside the ring, and every `try_` and timed call returns within its bound. With the
/// right `pending`, the record is skipped and the channel goes on.
#[test]
fn garbage_in_pending_under_a_dead_sender_never_panics_or_hangs() {
    watchdog(LIMIT);
    // The record the dead sender committed: 24 bytes at [16, 40).
    let right = 16 << 32 | 40;
    let mut values = vec![
        right,
        0,
        1,
        40,
        u64::MAX,
        17 << 32 | 40,
        16 << 32 | 41,
        (u64::from(u32::MAX) - 7) << 32 | 40,
        (40 + 256) << 32 | 40,
        8 << 32 | 40,
        32 << 32 | 40,
    ];
    let mut rng = Rng(0x5EED);
    values.extend((0..16).map(|_| rng.next()));
    // At least a `try_` call's probe interval (1 ms): a channel at the address of the
    // previous case's inherits this thread's last probe of its locks, whose time each
    // case's timed receive waits out.
    let t = Duration::from_millis(1);
    let mut out = Vec::new();
    for v in values {
        for by_receiver in [true, false] {
            let ch = channel(256);
            ch.send(b"first").unwrap();
            let (w64, w32) = ch.hostile_words();
            // words[3] is `tail`: 2 committed, at 40; words[6] is `pending`.
            w64[3].store(2 << 32 | 40, Ordering::Relaxed);
            w64[6].store(v, Ordering::Relaxed);
            // The send lock: held by a thread that does not exist.
            w32[0].store(u32::MAX, Ordering::Relaxed);
            assert_eq!(ch.try_recv(&mut out), Ok(5));
            if by_receiver {
                let r = ch.try_recv(&mut out);
                if v == right {
                    assert_eq!(r, Err(TryRecvError::Empty));
                }
                let _ = ch.recv_timeout(&mut out, t);
            } else {
                let r = ch.try_send(b"x");
                if v == right {
                    assert_eq!(r, Ok(()));
                    assert_eq!(ch.try_recv(&mut out), Ok(1));
                }
                let _ = ch.send_timeout(b"y", t);
            }
            let _ = ch.drain(4, |_| {});
            if v == right {
                assert_eq!(ch.lost(), 0);
                ch.send(b"after").unwrap();
                assert_eq!(ch.try_recv(&mut out), Ok(5));
                assert_eq!(out, b"after");
                assert!(ch.is_empty());
            }
            ch.close();
            let _ = ch.recv_timeout(&mut out, t);
        }
    }
}

/// A run of `SKIP` records (what the repair of senders killed between commit and header
/// leaves; here written by hand, as many as a ring holds) is stepped over in one go: one
/// claim and release for the whole run, then the message after it; a run that reaches
/// the end of what senders may have written ends in `Corrupt`, not a loop.
#[test]
fn a_run_of_skip_records_is_stepped_over_at_once() {
    watchdog(LIMIT);
    let ch = channel(1 << 16);
    let (w64, _) = ch.hostile_words();
    let skip = 0x534B_4921u64 << 32;
    // 1,000 empty `SKIP` records (8 bytes each), then a message of 3 bytes.
    for w in &w64[9..9 + 1000] {
        w.store(skip, Ordering::Relaxed);
    }
    w64[9 + 1000].store(0x4D53_4721 << 32 | 3, Ordering::Relaxed);
    w64[9 + 1001].store(u64::from_ne_bytes(*b"abc\0\0\0\0\0"), Ordering::Relaxed);
    // `tail`: 1,001 records committed, at 8,016.
    w64[3].store(1001 << 32 | 8016, Ordering::Relaxed);
    let mut out = Vec::new();
    assert_eq!(ch.try_recv(&mut out), Ok(3));
    assert_eq!(out, b"abc");
    assert_eq!(ch.lost(), 0);
    assert!(ch.is_empty());
    assert_eq!(ch.len(), 0);
    assert_eq!(ch.bytes_used(), 0);
    // A whole ring of `SKIP`s and `tail` far ahead: one call walks it once and reports
    // the garbage.
    let ch = channel(1 << 16);
    let (w64, _) = ch.hostile_words();
    for w in &w64[9..w64.len() - 3] {
        w.store(skip, Ordering::Relaxed);
    }
    w64[3].store(1 << 20, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Corrupt));
    assert!(t0.elapsed() < LIMIT);
}

/// A send or receive lock word naming a live thread with the stamp of its own start time
/// is a live holder's: `try_send` / `try_recv` report `Busy`. With another stamp it is a
/// dead holder's whose TID that thread got (the kernel reuses TIDs): the `try_` calls
/// take the lock over (a probe) and go on. A lock word is the holder's TID in bits 0..22
/// and its stamp, `(start time % 255) + 1`, in bits 22..30.
#[test]
#[cfg_attr(miri, ignore = "reads /proc")]
fn a_lock_word_naming_a_live_thread_with_another_stamp_is_a_dead_holders() {
    watchdog(LIMIT);
    let Some((tid, own)) = common::live_thread_with_stamp() else {
        eprintln!("skipped: /proc shows no start time here");
        return;
    };
    let other = own % 255 + 1;
    let mut out = Vec::new();
    // Each case's channel lives to the end, so that no case's lock has the address of an
    // earlier one's: a `try_` call probes a lock its thread probed less than a millisecond
    // ago only after that millisecond.
    let mut channels = Vec::new();
    for (lock, stamp, live) in [
        (0, own, true),
        (0, other, false),
        (1, own, true),
        (1, other, false),
    ] {
        channels.push(channel(256));
        let ch = channels.last().unwrap();
        ch.send(b"waiting").unwrap();
        let (_, w32) = ch.hostile_words();
        w32[lock].store(tid | stamp << 22, Ordering::Relaxed);
        let what = format!("lock {lock}, stamp {stamp} (own {own})");
        if lock == 0 {
            let r = ch.try_send(b"x");
            assert_eq!(
                r,
                if live {
                    Err(TrySendError::Busy)
                } else {
                    Ok(())
                },
                "{what}"
            );
        } else {
            let r = ch.try_recv(&mut out);
            assert_eq!(
                r,
                if live { Err(TryRecvError::Busy) } else { Ok(7) },
                "{what}"
            );
        }
    }
}
