//! Helpers shared by the `channel_*` tests: self-checking messages (producer id, sequence
//! number, checksum, deterministic contents), a small deterministic random generator, and
//! forking, killing and reaping single children.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Bytes of a full message's header: sequence number (8), producer id (4), checksum (8).
pub const HEADER: usize = 20;

/// SplitMix64: a tiny, well-mixed deterministic generator (seeded per test, printed on
/// failure so a run can be repeated).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from the environment (`SHMSTATE_TEST_SEED`) or the clock; printed so a failing
/// run can be repeated.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("SHMSTATE_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: SHMSTATE_TEST_SEED={s}");
    s
}

/// The length of producer `p`'s message `s`, in `1..=max`: mostly uniform in
/// `HEADER..=max`, one in eight "tiny" (`1..HEADER`), and deterministic edge cases (every
/// 89th message is exactly `max` bytes, every 97th is 1 byte).
pub fn len_for(p: u32, s: u64, max: usize) -> usize {
    assert!(max > HEADER);
    if s.is_multiple_of(89) {
        return max;
    }
    if s % 97 == 1 {
        return 1;
    }
    let h = mix(((p as u64) << 40) ^ s ^ 0xC0FF_EE00);
    if h.is_multiple_of(8) {
        1 + ((h >> 8) % (HEADER as u64 - 1)) as usize
    } else {
        HEADER + ((h >> 8) % (max - HEADER + 1) as u64) as usize
    }
}

/// FNV-1a over `bytes`, seeded with the length.
fn fnv(len: usize, parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ len as u64;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h
}

/// The payload byte `j` (counted from the start of the message) of producer `p`'s message
/// `s`: a stream that depends on both, so a message delivered with another's bytes fails.
#[inline]
fn payload_word(p: u32, s: u64, word: usize) -> u64 {
    mix(((p as u64) << 48) ^ (s << 8) ^ (word as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The contents of a tiny message (shorter than [`HEADER`]) of producer `p`: byte 0 is
/// `p`, the rest a pattern of `p` and the length. Tiny messages cannot carry a sequence
/// number; the tests count them per (producer, length).
fn tiny_byte(p: u32, len: usize, j: usize) -> u8 {
    if j == 0 {
        p as u8
    } else {
        (p as usize * 31 + len * 7 + j * 13) as u8
    }
}

/// Writes producer `p`'s message `s` of `len` bytes into `out` (cleared first).
pub fn fill(out: &mut Vec<u8>, p: u32, s: u64, len: usize) {
    out.clear();
    if len < HEADER {
        out.extend((0..len).map(|j| tiny_byte(p, len, j)));
        return;
    }
    out.extend_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    let mut j = HEADER;
    let mut word = 0;
    while j < len {
        let w = payload_word(p, s, word).to_le_bytes();
        let n = (len - j).min(8);
        out.extend_from_slice(&w[..n]);
        j += n;
        word += 1;
    }
    let sum = fnv(len, &[&out[..12], &out[HEADER..]]);
    out[12..HEADER].copy_from_slice(&sum.to_le_bytes());
}

/// The message producer `p` sends as its `s`-th, at most `max` bytes long.
pub fn message(p: u32, s: u64, max: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(max);
    fill(&mut v, p, s, len_for(p, s, max));
    v
}

/// What a received message says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ident {
    /// A full message: producer and sequence number (checksum and contents verified).
    Full { p: u32, s: u64 },
    /// A tiny message (contents verified): its producer and length.
    Tiny { p: u32, len: usize },
}

/// Checks a received message: its checksum, that its contents are exactly what its
/// producer sent as that sequence number (length included), or for a tiny message, its
/// pattern. `Err` describes the corruption.
pub fn verify(msg: &[u8], producers: u32, max: usize) -> Result<Ident, String> {
    if msg.is_empty() || msg.len() > max {
        return Err(format!("message of {} bytes (max {max})", msg.len()));
    }
    if msg.len() < HEADER {
        let p = msg[0] as u32;
        if p >= producers {
            return Err(format!("tiny message from unknown producer {p}: {msg:?}"));
        }
        for (j, &b) in msg.iter().enumerate() {
            if b != tiny_byte(p, msg.len(), j) {
                return Err(format!(
                    "tiny message of {} bytes corrupt: {msg:?}",
                    msg.len()
                ));
            }
        }
        return Ok(Ident::Tiny { p, len: msg.len() });
    }
    let s = u64::from_le_bytes(msg[0..8].try_into().unwrap());
    let p = u32::from_le_bytes(msg[8..12].try_into().unwrap());
    let sum = u64::from_le_bytes(msg[12..HEADER].try_into().unwrap());
    if fnv(msg.len(), &[&msg[..12], &msg[HEADER..]]) != sum {
        return Err(format!(
            "checksum mismatch in a message of {} bytes (says producer {p}, seq {s})",
            msg.len()
        ));
    }
    if p >= producers {
        return Err(format!("message from unknown producer {p} (seq {s})"));
    }
    let want = len_for(p, s, max);
    if msg.len() != want {
        return Err(format!(
            "producer {p} seq {s}: {} bytes, sent {want}",
            msg.len()
        ));
    }
    let mut expect = Vec::with_capacity(want);
    fill(&mut expect, p, s, want);
    if msg != &expect[..] {
        return Err(format!("producer {p} seq {s}: contents differ"));
    }
    Ok(Ident::Full { p, s })
}

/// Forks one child running `f` (exit 0, or 101 if it panics), tied to this thread.
pub fn spawn(f: impl Fn()) -> libc::pid_t {
    crate::common::fork_children(1, |_| f())[0]
}

/// SIGKILLs `pid`.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill of our own child.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill failed");
}

/// Reaps `pid` (blocking); its wait status.
pub fn reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
    status
}

/// Reaps `pid`, panicking unless it exited 0.
pub fn reap_ok(pid: libc::pid_t, what: &str) {
    let status = reap(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} (pid {pid}) failed: wait status {status:#x}"
    );
}

/// Polls `cond` (yielding) until it holds; panics after `limit`.
pub fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// In a process that cannot use the process-wide barrier (a real refusal or one a test
/// hook acts out): one thread holds `ch`'s send side between sends while this one closes
/// it. The close must be final at once (the holder keeps `busy` at its fencing idle
/// value, so the closer's fence suffices); a receive gets what was sent, then
/// `Disconnected`; the holder's next send is refused. The holder is let go before the
/// assertions, so that a failed one cannot leave it waiting.
pub fn close_while_a_side_is_held_idle_without_the_barrier(ch: &shmstate::Channel) {
    use shmstate::{SendError, TryRecvError};
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut side = ch.send_side().unwrap();
            side.send(b"before").unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            assert_eq!(side.send(b"x"), Err(SendError::Disconnected));
        });
        held_rx.recv().unwrap();
        ch.close();
        let final_at_once = ch.is_closed();
        let mut out = Vec::new();
        let first = ch.try_recv(&mut out);
        let second = ch.try_recv(&mut out);
        go_tx.send(()).unwrap();
        assert!(final_at_once, "not final without the barrier");
        assert_eq!(first, Ok(6));
        assert_eq!(out, b"before");
        assert_eq!(second, Err(TryRecvError::Disconnected));
    });
}

/// One side of a ping-pong of `rounds` 4-byte messages: sends `i` on `ping` and
/// receives it back on `pong`, in order; then closes `ping`.
pub fn ping_rounds(ping: &shmstate::Channel, pong: &shmstate::Channel, rounds: u32) {
    let mut out = Vec::new();
    for i in 0..rounds {
        ping.send(&i.to_le_bytes()).unwrap();
        assert_eq!(pong.recv(&mut out), Ok(4));
        assert_eq!(out, i.to_le_bytes());
    }
    ping.close();
}

/// The other side of [`ping_rounds`]: receives each message on `ping` and sends it back
/// on `pong`; then receives the close.
pub fn echo_rounds(ping: &shmstate::Channel, pong: &shmstate::Channel, rounds: u32) {
    let mut out = Vec::new();
    for i in 0..rounds {
        assert_eq!(ping.recv(&mut out), Ok(4));
        assert_eq!(out, i.to_le_bytes());
        pong.send(&out).unwrap();
    }
    assert_eq!(ping.recv(&mut out), Err(shmstate::RecvError::Disconnected));
}
