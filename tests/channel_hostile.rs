//! `Channel` under hostile writes: one process overwrites random words of a live channel
//! (header and ring words, lock and wake words, through the test hook
//! `Channel::hostile_words`) with random and boundary values while producer and consumer processes
//! keep calling every operation. Nothing may panic, crash or hang: every call returns `Ok`
//! or one of its documented errors, within its deadline; a received message is never
//! longer than the ring can hold ([`FORGEABLE`]). (What is delivered may be garbage: a
//! process that writes into the ring can forge a message, and one that rewrites the
//! config word can raise the channel's largest up to that.)
//!
//! The schedule is seeded (printed; `SHMSTATE_TEST_SEED=<seed>` repeats the values and
//! offsets written, not the timing).

mod channel_support;
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use channel_support::{Rng, reap_ok, seed, spawn};
use common::{SharedMem, fork_children, wait_all, watchdog};
use shmstate::sync::Ordering;
use shmstate::{
    Channel, ChannelOptions, RecvTimeoutError, RegionOptions, SendError, SendTimeoutError,
    TrySendError, ValueArray,
};

const LIMIT: Duration = Duration::from_secs(120);

/// The longest any single call may take: timed calls use at most 5 ms; this allows for a
/// loaded machine (it is a hang detector, not a speed assertion).
const CALL_LIMIT: Duration = Duration::from_secs(5);

fn options() -> ChannelOptions {
    ChannelOptions::new(4096).max_message(512)
}

/// The longest message a receive may return here: the largest a ring of 4096 bytes can
/// hold (half of it, less a record header). Not the channel's largest as created (512):
/// a peer that rewrites the config word can raise that, and receivers read it from
/// there (the word is shared; a forged length within the ring is as harmless as a
/// forged message).
const FORGEABLE: usize = 4096 / 2 - 8;

/// Overwrites 1 to 3 random words of `ch` (its header's and ring's `u64` words, its lock
/// and wake `u32` words) with hostile values.
fn overwrite(ch: &Channel, rng: &mut Rng) -> u64 {
    let (w64, w32) = ch.hostile_words();
    let n = rng.range(1, 3);
    for _ in 0..n {
        // One write in eight goes to a lock or wake word (there are few of them).
        if rng.next().is_multiple_of(8) {
            let w = w32[rng.range(0, w32.len() as u64 - 1) as usize];
            // Relaxed: a hostile write orders nothing.
            let cur = w.load(Ordering::Relaxed) as u64;
            w.store(hostile_value(rng, cur) as u32, Ordering::Relaxed);
        } else {
            let w = w64[rng.range(0, w64.len() as u64 - 1) as usize];
            // Relaxed: as above.
            let cur = w.load(Ordering::Relaxed);
            w.store(hostile_value(rng, cur), Ordering::Relaxed);
        }
    }
    n
}

/// A value worth writing into a channel word: random, or one of the boundaries that
/// protocol code gets wrong (zero, all ones, sign bits, small lengths, values near the
/// word's current one, a valid-looking record header with a huge length).
fn hostile_value(rng: &mut Rng, current: u64) -> u64 {
    match rng.next() % 10 {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << 63,
        3 => 1 << 31,
        4 => rng.next() % 64,
        5 => current.wrapping_add(rng.range(1, 4096)),
        6 => current.wrapping_sub(rng.range(1, 4096)),
        7 => (rng.next() & 0xFFFF_FFFF_0000_0000) | (rng.next() % 100_000),
        8 => current ^ (1 << (rng.next() % 64)),
        _ => rng.next(),
    }
}

/// Runs `f`, panicking if it took longer than [`CALL_LIMIT`] (a hang the watchdog would
/// otherwise report without saying which call).
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    assert!(took < CALL_LIMIT, "{what} took {took:?}");
    r
}

/// One producer call, chosen at random among the sending calls (timed or non-blocking):
/// whether it returned `Ok` (else it returned one of its documented errors).
fn produce_once(ch: &Channel, rng: &mut Rng, max: usize) -> bool {
    let t = Duration::from_millis(5);
    {
        let len = rng.range(1, max as u64) as usize;
        let msg = vec![0x5A; len];
        let ok = match rng.next() % 4 {
            0 => bounded("send_timeout", || ch.send_timeout(&msg, t)).map_err(|e| match e {
                SendTimeoutError::Timeout
                | SendTimeoutError::Disconnected
                | SendTimeoutError::TooLarge { .. }
                | SendTimeoutError::Corrupt => (),
            }),
            1 => bounded("try_send", || ch.try_send(&msg)).map_err(|e| match e {
                TrySendError::Full
                | TrySendError::Busy
                | TrySendError::Disconnected
                | TrySendError::TooLarge { .. }
                | TrySendError::Corrupt => (),
            }),
            2 => bounded("reserve_timeout", || match ch.reserve_timeout(len, t) {
                Ok(mut slot) => {
                    slot.write_all(&msg)
                        .expect("a slot of len bytes takes len bytes");
                    slot.commit().map_err(|e| match e {
                        SendError::Disconnected
                        | SendError::TooLarge { .. }
                        | SendError::Corrupt => (),
                    })
                }
                Err(_) => Err(()),
            }),
            _ => bounded("try_reserve + abort", || match ch.try_reserve(len) {
                Ok(mut slot) => {
                    slot.write_all(&msg[..len / 2]).unwrap();
                    slot.abort();
                    Ok(())
                }
                Err(_) => Err(()),
            }),
        };
        ok.is_ok()
    }
}

/// One consumer call, chosen at random among the receiving calls (timed or
/// non-blocking): whether it returned `Ok`. A message it gets is at most `max` bytes.
fn consume_once(ch: &Channel, rng: &mut Rng, max: usize, out: &mut Vec<u8>) -> bool {
    let t = Duration::from_millis(5);
    let mut buf = [0u8; 64];
    {
        let ok = match rng.next() % 8 {
            0 => bounded("recv_timeout", || ch.recv_timeout(out, t))
                .inspect(|&n| assert_eq!(n, out.len())),
            1 => bounded("try_recv", || ch.try_recv(out)).map_err(|_| RecvTimeoutError::Timeout),
            2 => bounded("recv_timeout_with", || {
                ch.recv_timeout_with(t, |m| {
                    let n = m.len().min(buf.len());
                    buf[..n].copy_from_slice(&m[..n]);
                    m.len()
                })
            }),
            3 => bounded("try_recv_with", || ch.try_recv_with(|m| m.len()))
                .map_err(|_| RecvTimeoutError::Timeout),
            4 => bounded("drain", || ch.drain(4, |m| assert!(m.len() <= max)))
                .map_err(|_| RecvTimeoutError::Timeout),
            // Into a buffer (a longer message stays: `TooSmall`, counted as an error).
            5 => bounded("try_recv_into", || ch.try_recv_into(&mut buf))
                .map_err(|_| RecvTimeoutError::Timeout),
            6 => bounded("recv_timeout_into", || ch.recv_timeout_into(&mut buf, t))
                .map_err(|_| RecvTimeoutError::Timeout),
            _ => bounded("recv_until", || ch.recv_until(out, Instant::now() + t)),
        };
        if let Ok(n) = ok {
            assert!(
                n <= max,
                "a message of {n} bytes from a ring whose largest can be {max}"
            );
        }
        ok.is_ok()
    }
}

/// Epochs of the live test: each uses a fresh channel, so that every epoch starts with
/// a sound channel carrying traffic (a channel that hostile writes made corrupt may stay
/// corrupt, and every later call on it would return `Corrupt` at once).
const EPOCHS: usize = if cfg!(debug_assertions) { 30 } else { 80 };
/// How long each epoch lasts.
const EPOCH: Duration = Duration::from_millis(100);

#[test]
fn hostile_writes_into_a_live_channel_never_panic_crash_or_hang() {
    watchdog(LIMIT);
    let s = seed("channel_hostile");
    let region = RegionOptions::new()
        .capacity(EPOCHS as u32 + 4)
        .anonymous(8 << 20)
        .unwrap();
    let chans: Vec<&Channel> = (0..EPOCHS)
        .map(|e| region.channel(&format!("hostile-{e}"), options()).unwrap())
        .collect();
    let max = options().max_message_len();
    // [0]: stop; [1]: the epoch; [2..12]: per worker (ok, err) counts, for the log.
    let ctl = SharedMem::<ValueArray<u64>>::new(16);

    let workers = fork_children(5, |i| {
        let mut rng = Rng(s ^ (i as u64 + 1).wrapping_mul(0x1234_5678));
        let ctl = ctl.get();
        let mut counts = [0u64; 2];
        let mut out = Vec::new();
        // Relaxed: the stop flag and the epoch only pick what to do next; nothing is
        // read through them.
        while ctl.load(0, Ordering::Relaxed) == 0 {
            let ch = chans[ctl.load(1, Ordering::Relaxed) as usize % EPOCHS];
            let ok = match i {
                0 | 1 => produce_once(ch, &mut rng, max),
                2 | 3 => consume_once(ch, &mut rng, FORGEABLE, &mut out),
                _ => {
                    // An observer: the read-only calls.
                    let _ = bounded("len", || ch.len());
                    let _ = bounded("bytes_used", || ch.bytes_used());
                    let _ = bounded("is_empty", || ch.is_empty());
                    let _ = bounded("is_closed", || ch.is_closed());
                    let _ = bounded("lost", || ch.lost());
                    let _ = bounded("options", || ch.options());
                    std::thread::yield_now();
                    true
                }
            };
            counts[usize::from(!ok)] += 1;
        }
        // Relaxed: read after the workers exited.
        ctl.store(2 + 2 * i, counts[0], Ordering::Relaxed);
        ctl.store(3 + 2 * i, counts[1], Ordering::Relaxed);
    });

    let hostile = spawn(|| {
        let mut rng = Rng(s);
        let ctl = ctl.get();
        let mut writes = 0u64;
        for (e, &ch) in chans.iter().enumerate() {
            // Relaxed: as for the workers.
            ctl.store(1, e as u64, Ordering::Relaxed);
            let t0 = Instant::now();
            // Let traffic start on the fresh channel, then write into it while it runs.
            let calm = Duration::from_micros(rng.range(0, EPOCH.as_micros() as u64 / 2));
            while t0.elapsed() < calm {
                std::thread::yield_now();
            }
            while t0.elapsed() < EPOCH {
                writes += overwrite(ch, &mut rng);
                for _ in 0..rng.range(0, 20_000) {
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
            }
        }
        eprintln!("hostile writer: {writes} words overwritten in {EPOCHS} epochs");
    });
    reap_ok(hostile, "hostile writer");
    // Relaxed: the flag only ends the workers' loops.
    ctl.get().store(0, 1, Ordering::Relaxed);
    wait_all(&workers, LIMIT);
    let c = ctl.get().load_all(Ordering::Relaxed);
    eprintln!(
        "calls (ok, err): producers {:?} {:?}, consumers {:?} {:?}, observer {}",
        (c[2], c[3]),
        (c[4], c[5]),
        (c[6], c[7]),
        (c[8], c[9]),
        c[10]
    );
    assert!(
        c[2] + c[4] > 0 && c[6] + c[8] > 0,
        "no call ever succeeded: the test did not exercise a live channel"
    );

    // Every call in this process still returns within its deadline, Ok or an error.
    let t = Duration::from_millis(20);
    let mut out = Vec::new();
    for ch in chans {
        let _ = bounded("send_timeout after", || ch.send_timeout(b"after", t));
        let _ = bounded("recv_timeout after", || ch.recv_timeout(&mut out, t));
        let _ = bounded("drain after", || ch.drain(1000, |_| ()));
        ch.close();
        let _ = bounded("recv_timeout after close", || ch.recv_timeout(&mut out, t));
    }
}

#[test]
fn hostile_writes_into_an_idle_channel_then_every_call_returns() {
    watchdog(LIMIT);
    let s = seed("channel_hostile_idle");
    let mut rng = Rng(s);
    let max = options().max_message_len();
    let rounds = if cfg!(debug_assertions) { 300 } else { 3000 };
    let t = Duration::from_millis(1);
    let mut out = Vec::new();
    let mut buf = vec![0u8; max];
    let mut ok = 0u64;
    for _ in 0..rounds {
        // A fresh channel (a corrupt one may stay corrupt), a few messages in, a few
        // words overwritten, then every call.
        let boxed = Channel::new(options()).unwrap();
        let ch = &*boxed;
        for k in 0..rng.range(0, 6) {
            let _ = ch.try_send(&vec![k as u8; rng.range(1, max as u64) as usize]);
        }
        overwrite(ch, &mut rng);
        let _ = bounded("try_send", || ch.try_send(b"x"));
        let _ = bounded("send_timeout", || ch.send_timeout(b"y", t));
        if let Ok(n) = bounded("try_recv", || ch.try_recv(&mut out)) {
            assert!(n <= FORGEABLE);
            ok += 1;
        }
        if let Ok(n) = bounded("recv_timeout", || ch.recv_timeout(&mut out, t)) {
            assert!(n <= FORGEABLE);
        }
        let _ = bounded("drain", || ch.drain(8, |m| assert!(m.len() <= FORGEABLE)));
        let _ = bounded("len", || {
            (ch.len(), ch.bytes_used(), ch.is_empty(), ch.lost())
        });
        if !ch.is_empty() {
            let _ = bounded("recv_into", || {
                ch.recv_timeout_with(t, |m| {
                    let n = m.len().min(buf.len());
                    buf[..n].copy_from_slice(&m[..n]);
                })
            });
        }
    }
    eprintln!("{ok} of {rounds} rounds received a message after the overwrite");
}
