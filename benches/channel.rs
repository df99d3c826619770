//! The byte-message channel: shmstate's `Channel` between 2 processes next to what a Rust
//! or C programmer would move byte messages with instead, in one run: a Unix stream
//! socket pair and a pipe inherited across `fork` (2 processes), `crossbeam-channel` of
//! `Vec<u8>` between 2 threads of one process (the in-process anchor: no process boundary
//! at all), and the crate's own fixed-size `Queue<[u8; S], N>` (2 processes; 8 B and 64 B
//! items only). Python's `multiprocessing.Queue` is timed by
//! `benches/python/channel_queue.py`, and `benches/report.py` pairs it with these rows.
//!
//! Two physical floors, in groups of their own: `channel_floor_2procs/cacheline_pingpong`
//! (two atomics on separate cache lines bounced between the 2 processes, both spinning:
//! the least a round trip between two cores can cost) and `channel_memcpy`: one 16 KiB copy
//! in one thread, buffers in cache (`memcpy_16KiB`), and 16 KiB at a time of a copy too
//! large for any cache (`memcpy_16KiB_of_256MiB`, memory bandwidth): the two readings of
//! the bandwidth a 16 KiB message is compared with. Beside
//! them, `channel_floor_2procs/spsc_ring_{64B,16KiB}`: the least a one-way stream costs
//! between the 2 processes (a bare single-producer single-consumer ring of fixed slots, no
//! lock, no crash safety), and `spsc_ring_cas_64B`, the same ring publishing each message
//! with a compare-exchange of its index instead of a store (what a locked publish costs).
//! And the same for the channel's packing (a header word, then the payload, records
//! packed back to back): `packed_ring_64B` (published by a store of `tail`) and
//! `stamped_ring_64B` (published by a store of the record's header, carrying its
//! position, which the consumer waits on instead of `tail`), one-way, with
//! `packed_ring_cas_64B` (`tail` published by a compare-exchange, as the channel's
//! commit), `packed_ring_fenced_64B` (the consumer fences after each release and loads a
//! wake flag, as the channel's receiver does for sleeping senders) and
//! `packed_ring_cas_fenced_64B` (both); and their round
//! trips, both sides spinning, through one such ring each way:
//! `packed_ring_pingpong_8B`, `packed_ring_cas_pingpong_8B` (`tail` published by a
//! compare-exchange, as the channel's commit) and `stamped_ring_pingpong_8B`.
//!
//! Message sizes: 8 B, 64 B, 1 KiB and 16 KiB. Every message carries its sequence number
//! in its first 8 bytes, and every receiver checks it (in order, none lost) and counts
//! what it received, so a fast wrong answer fails the run.
//!
//! Buffering is the same 64 KiB everywhere it can be chosen: the channel's capacity, a
//! default Linux pipe, and `crossbeam-channel` / `Queue` slots of 64 KiB / message size
//! (the Unix socket keeps its default buffer).
//!
//! - `channel_oneway_<size>_2procs`: worker 0 sends `1..=iters`, worker 1 receives each
//!   into a buffer of its own (`recv_into`; the socket and pipe: `read_exact`), checks it
//!   and counts them. One iteration is one message. `shmstate_channel_send_side`: the
//!   sender holds the send side for the whole sample (`Channel::send_side`), the receiver
//!   as before; `shmstate_channel_send_side_drain`: the receiver takes batches (`drain`),
//!   spinning while none is waiting; `shmstate_channel_held_sides`: the receiver also
//!   holds the receive side (`Channel::recv_side`, `recv_into` under it).
//! - `channel_pingpong_<size>_2procs`: worker 0 sends `k` and waits for it to come back;
//!   worker 1 receives each message and sends it back. One iteration is one round trip.
//!   `shmstate_channel` blocks in `recv_into`; `shmstate_channel_spin` polls
//!   `try_recv_into` (both sides spinning, as the cache-line floor does); `shmstate_channel_held_sides_spin`
//!   does so with each process holding the send side it sends on and the receive side it
//!   receives from; `shmstate_channel_held_sides` holds them too, and blocks in
//!   `RecvSide::recv_into` (which spins about 5 µs before it sleeps, far longer than a
//!   round trip: in this row, too, both sides spin).
//! - `channel_oneway_64B_1thread`: one thread sends a 64 B message and receives it back,
//!   over and over: the CPU's part of a message, with no line moving between cores
//!   (held sides, `send` + `recv_into`, the bare ring published per record, and
//!   `crossbeam-channel`).
//!
//! Run: `cargo bench --bench channel` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench
//! channel`).

mod common;

use std::cell::UnsafeCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
// Relaxed for the counts: they are reset before the workers start (fork or thread spawn
// synchronises) and read after the runner saw them done (Release/Acquire on its `done`
// word, or the threads' join).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::{Shm, Weight, Workers, concurrent, tune};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use shmstate::Queue;

/// The sizes benched: (bytes, label).
const SIZES: [(usize, &str); 4] = [(8, "8B"), (64, "64B"), (1024, "1KiB"), (16384, "16KiB")];

/// The bytes of buffering every alternative gets where it can be chosen (a default pipe's).
const BUFFER: usize = 64 * 1024;

/// Items of the fixed-size queue rows: 64 KiB of slots.
const Q8_CAP: usize = BUFFER / 8;
const Q64_CAP: usize = BUFFER / 64;

/// A value a receiver did not expect.
#[cold]
#[inline(never)]
fn wrong_message(got: u64, want: u64, len: usize, want_len: usize) -> ! {
    panic!("received message {got} of {len} bytes, expected {want} of {want_len} bytes")
}

/// Checks a received message: its length and its sequence number (first 8 bytes).
#[inline]
fn check(msg: &[u8], want: u64, want_len: usize) {
    let got = seq(msg);
    if got != want || msg.len() != want_len {
        wrong_message(got, want, msg.len(), want_len)
    }
}

/// The sequence number in a message's first 8 bytes (0 if it is shorter).
#[inline]
fn seq(msg: &[u8]) -> u64 {
    match msg.get(..8) {
        Some(b) => u64::from_le_bytes(b.try_into().unwrap()),
        None => 0,
    }
}

/// Writes `k` into a message's first 8 bytes (every benched size has them).
#[inline]
fn stamp(msg: &mut [u8], k: u64) {
    msg[..8].copy_from_slice(&k.to_le_bytes());
}

/// A message of `len` bytes: a pattern after the 8-byte sequence number.
fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// A pipe whose ends are plain `File`s (so `&File` reads and writes).
fn pipe() -> (File, File) {
    let (r, w) = std::io::pipe().expect("pipe");
    (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)))
}

/// A byte stream shared by reference: a pipe end or a Unix socket. One message is one
/// `write_all` of its bytes and one `read_exact` of as many (fixed sizes need no framing).
trait Stream: Sync {
    fn put(&self, msg: &[u8]);
    fn take(&self, buf: &mut [u8]);
}

impl Stream for File {
    #[inline]
    fn put(&self, msg: &[u8]) {
        (&*self).write_all(msg).unwrap();
    }
    #[inline]
    fn take(&self, buf: &mut [u8]) {
        (&*self).read_exact(buf).unwrap();
    }
}

impl Stream for UnixStream {
    #[inline]
    fn put(&self, msg: &[u8]) {
        (&*self).write_all(msg).unwrap();
    }
    #[inline]
    fn take(&self, buf: &mut [u8]) {
        (&*self).read_exact(buf).unwrap();
    }
}

/// A spinning wait that yields the core after a while: on a machine with as many busy
/// processes as cores, a pure spin would hold the core its partner needs for a whole
/// time slice. Both spinning rows (the channel's and the cache-line floor) use it.
#[derive(Default)]
struct Spin(u32);

impl Spin {
    #[inline]
    fn wait(&mut self) {
        self.0 += 1;
        if self.0.is_multiple_of(4096) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The 2 processes every cross-process row runs on.
const PROCS: Workers = Workers::Processes(2);

/// One-way rows of the streams: worker 0 writes `iters` messages, worker 1 reads and
/// checks them.
fn oneway_streams(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, got: &AtomicU64) {
    let (r, w) = pipe();
    let (a, b) = UnixStream::pair().expect("socketpair");
    for (name, tx, rx) in [
        ("pipe", &w as &dyn Stream, &r as &dyn Stream),
        ("unix_socket", &a, &b),
    ] {
        concurrent(
            g,
            name,
            PROCS,
            1,
            &(tx, rx, got),
            |s| s.2.store(0, Ordering::Relaxed),
            |s, i, iters| {
                let mut msg = message(len);
                if i == 0 {
                    for k in 1..=iters {
                        stamp(&mut msg, k);
                        s.0.put(&msg);
                    }
                } else {
                    for k in 1..=iters {
                        s.1.take(&mut msg);
                        check(&msg, k, len);
                    }
                    s.2.store(iters, Ordering::Relaxed);
                }
            },
            |s| s.2.load(Ordering::Relaxed),
        );
    }
}

/// Ping-pong rows of the streams: two pipes (one per direction), one socket pair.
fn pingpong_streams(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, rounds: &AtomicU64) {
    let (there_r, there_w) = pipe();
    let (back_r, back_w) = pipe();
    let (a, b) = UnixStream::pair().expect("socketpair");
    let cases: [(&str, [&dyn Stream; 4]); 2] = [
        ("pipe", [&there_w, &back_r, &there_r, &back_w]),
        ("unix_socket", [&a, &a, &b, &b]),
    ];
    for (name, ends) in cases {
        concurrent(
            g,
            name,
            PROCS,
            1,
            &(ends, rounds),
            |s| s.1.store(0, Ordering::Relaxed),
            |s, i, iters| {
                // Worker 0 sends on ends[0] and receives on ends[1]; worker 1 receives on
                // ends[2] and answers on ends[3].
                let [tx0, rx0, rx1, tx1] = s.0;
                let mut msg = message(len);
                for k in 1..=iters {
                    if i == 0 {
                        stamp(&mut msg, k);
                        tx0.put(&msg);
                        rx0.take(&mut msg);
                        check(&msg, k, len);
                        s.1.fetch_add(1, Ordering::Relaxed);
                    } else {
                        rx1.take(&mut msg);
                        tx1.put(&msg);
                    }
                }
            },
            |s| s.1.load(Ordering::Relaxed),
        );
    }
}

/// One-way row of `crossbeam-channel`: a bounded channel of `Vec<u8>` (64 KiB of messages)
/// between 2 threads; each message is a fresh `Vec` (what a producer of owned byte
/// messages sends), dropped by the receiver.
fn oneway_crossbeam(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, got: &AtomicU64) {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>((BUFFER / len).max(1));
    concurrent(
        g,
        "crossbeam_channel",
        Workers::Threads(2),
        1,
        &(tx, rx, got),
        |s| s.2.store(0, Ordering::Relaxed),
        |s, i, iters| {
            if i == 0 {
                let msg = message(len);
                for k in 1..=iters {
                    let mut m = msg.clone();
                    stamp(&mut m, k);
                    s.0.send(m).unwrap();
                }
            } else {
                for k in 1..=iters {
                    check(&s.1.recv().unwrap(), k, len);
                }
                s.2.store(iters, Ordering::Relaxed);
            }
        },
        |s| s.2.load(Ordering::Relaxed),
    );
}

/// Ping-pong row of `crossbeam-channel`: one channel each way; the echo sends the same
/// `Vec` back.
fn pingpong_crossbeam(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, rounds: &AtomicU64) {
    let (there_tx, there_rx) = crossbeam_channel::bounded::<Vec<u8>>((BUFFER / len).max(1));
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Vec<u8>>((BUFFER / len).max(1));
    concurrent(
        g,
        "crossbeam_channel",
        Workers::Threads(2),
        1,
        &(there_tx, there_rx, back_tx, back_rx, rounds),
        |s| s.4.store(0, Ordering::Relaxed),
        |s, i, iters| {
            let msg = message(len);
            for k in 1..=iters {
                if i == 0 {
                    let mut m = msg.clone();
                    stamp(&mut m, k);
                    s.0.send(m).unwrap();
                    check(&s.3.recv().unwrap(), k, len);
                    s.4.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.2.send(s.1.recv().unwrap()).unwrap();
                }
            }
        },
        |s| s.4.load(Ordering::Relaxed),
    );
}

/// Fixed-size items for the `Queue` rows: 8 or 64 bytes with the sequence number first.
trait Item: bytemuck::Pod + Send + Sync {
    const LEN: usize;
}
impl Item for [u8; 8] {
    const LEN: usize = 8;
}
impl Item for [u8; 64] {
    const LEN: usize = 64;
}

/// One-way row of the crate's `Queue<[u8; S], N>` (64 KiB of slots) between 2 processes.
fn oneway_queue<T: Item, const N: usize>(g: &mut BenchmarkGroup<'_, WallTime>, got: &AtomicU64)
where
    Queue<T, N>: shmstate::SharedSized,
{
    let q = Shm::<Queue<T, N>>::zeroed(1);
    concurrent(
        g,
        "crate_queue",
        PROCS,
        1,
        &(&*q, got),
        |s| s.1.store(0, Ordering::Relaxed),
        |s, i, iters| {
            let mut item = T::zeroed();
            if i == 0 {
                for k in 1..=iters {
                    stamp(bytemuck::bytes_of_mut(&mut item), k);
                    s.0.push(item);
                }
            } else {
                for k in 1..=iters {
                    item = s.0.pop();
                    check(bytemuck::bytes_of(&item), k, T::LEN);
                }
                s.1.store(iters, Ordering::Relaxed);
            }
        },
        |s| s.1.load(Ordering::Relaxed),
    );
}

/// Ping-pong row of the crate's `Queue<[u8; S], N>`: one queue each way.
fn pingpong_queue<T: Item, const N: usize>(g: &mut BenchmarkGroup<'_, WallTime>, rounds: &AtomicU64)
where
    Queue<T, N>: shmstate::SharedSized,
{
    let there = Shm::<Queue<T, N>>::zeroed(1);
    let back = Shm::<Queue<T, N>>::zeroed(1);
    concurrent(
        g,
        "crate_queue",
        PROCS,
        1,
        &(&*there, &*back, rounds),
        |s| s.2.store(0, Ordering::Relaxed),
        |s, i, iters| {
            let mut item = T::zeroed();
            for k in 1..=iters {
                if i == 0 {
                    stamp(bytemuck::bytes_of_mut(&mut item), k);
                    s.0.push(item);
                    check(bytemuck::bytes_of(&s.1.pop()), k, T::LEN);
                    s.2.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.1.push(s.0.pop());
                }
            }
        },
        |s| s.2.load(Ordering::Relaxed),
    );
}

fn oneway(c: &mut Criterion) {
    for (len, label) in SIZES {
        let mut g = common::group(c, format!("channel_oneway_{label}_{}", PROCS.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Bytes(len as u64));
        let got = Shm::new(AtomicU64::new(0));
        channel_rows::oneway(&mut g, len, &got);
        oneway_streams(&mut g, len, &got);
        oneway_crossbeam(&mut g, len, &got);
        match len {
            8 => oneway_queue::<[u8; 8], Q8_CAP>(&mut g, &got),
            64 => oneway_queue::<[u8; 64], Q64_CAP>(&mut g, &got),
            _ => {}
        }
        g.finish();
    }
}

fn pingpong(c: &mut Criterion) {
    for (len, label) in SIZES {
        let mut g = common::group(c, format!("channel_pingpong_{label}_{}", PROCS.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(1));
        let rounds = Shm::new(AtomicU64::new(0));
        channel_rows::pingpong(&mut g, len, &rounds);
        pingpong_streams(&mut g, len, &rounds);
        pingpong_crossbeam(&mut g, len, &rounds);
        match len {
            8 => pingpong_queue::<[u8; 8], Q8_CAP>(&mut g, &rounds),
            64 => pingpong_queue::<[u8; 64], Q64_CAP>(&mut g, &rounds),
            _ => {}
        }
        g.finish();
    }
}

/// The round-trip floor: two atomics on separate cache lines bounced between the 2
/// processes (worker 0 stores `k` in `ping` and spins until `pong` is `k`; worker 1 spins
/// until `ping` is `k` and stores it in `pong`). One iteration is one round trip: two
/// cache-line transfers each way, nothing else.
fn floor(c: &mut Criterion) {
    let mut g = common::group(c, format!("channel_floor_{}", PROCS.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));
    let lines = Shm::new([
        CachePadded::new(AtomicU64::new(0)),
        CachePadded::new(AtomicU64::new(0)),
    ]);
    let rounds = Shm::new(AtomicU64::new(0));
    concurrent(
        &mut g,
        "cacheline_pingpong",
        PROCS,
        1,
        &(&*lines, &*rounds),
        |s| {
            s.0[0].store(0, Ordering::Relaxed);
            s.0[1].store(0, Ordering::Relaxed);
            s.1.store(0, Ordering::Relaxed);
        },
        |s, i, iters| {
            let [ping, pong] = s.0;
            for k in 1..=iters {
                if i == 0 {
                    // Release/Acquire: the hand-off a message channel must also make (its
                    // payload written before the flag, read after it).
                    ping.store(k, Ordering::Release);
                    let mut spin = Spin::default();
                    while pong.load(Ordering::Acquire) != k {
                        spin.wait();
                    }
                    s.1.fetch_add(1, Ordering::Relaxed);
                } else {
                    let mut spin = Spin::default();
                    while ping.load(Ordering::Acquire) != k {
                        spin.wait();
                    }
                    pong.store(k, Ordering::Release);
                }
            }
        },
        |s| s.1.load(Ordering::Relaxed),
    );
    spsc_ring::<64, { BUFFER / 64 }, false>(&mut g, "spsc_ring_64B");
    spsc_ring::<16384, { BUFFER / 16384 }, false>(&mut g, "spsc_ring_16KiB");
    spsc_ring::<64, { BUFFER / 64 }, true>(&mut g, "spsc_ring_cas_64B");
    packed_oneway::<TAIL_STORE>(&mut g, "packed_ring_64B", 64);
    packed_oneway::<HEADER_STORE>(&mut g, "stamped_ring_64B", 64);
    packed_oneway::<TAIL_CAS>(&mut g, "packed_ring_cas_64B", 64);
    packed_oneway::<{ TAIL_STORE | RELEASE_FENCE }>(&mut g, "packed_ring_fenced_64B", 64);
    packed_oneway::<{ TAIL_CAS | RELEASE_FENCE }>(&mut g, "packed_ring_cas_fenced_64B", 64);
    packed_pingpong::<TAIL_STORE>(&mut g, "packed_ring_pingpong_8B", 8);
    packed_pingpong::<TAIL_CAS>(&mut g, "packed_ring_cas_pingpong_8B", 8);
    packed_pingpong::<HEADER_STORE>(&mut g, "stamped_ring_pingpong_8B", 8);
    g.finish();
}

/// The least a one-way stream of `S`-byte messages can cost between the two processes:
/// a ring of `N` fixed slots (`N * S` = the channel's 64 KiB) for one producer and one
/// consumer, each keeping a cached copy of the other's index (Lamport's ring, as the
/// fast single-producer single-consumer queues build it), with no framing, no lock, no
/// crash safety and no sleeping. Moving the slots' and the indices' lines between the
/// cores is all it does: the floor of the channel's one-way rows of the same size.
#[repr(C)]
struct SpscRing<const S: usize, const N: usize> {
    /// Messages taken (the consumer's).
    head: CachePadded<AtomicU64>,
    /// Messages put (the producer's).
    tail: CachePadded<AtomicU64>,
    /// Messages checked by the consumer, for the sample's count.
    got: CachePadded<AtomicU64>,
    slots: [Slot<S>; N],
}

/// One slot of [`SpscRing`], on lines of its own.
#[repr(C, align(64))]
struct Slot<const S: usize>(UnsafeCell<[u8; S]>);

// SAFETY: a slot is written only by the producer while the consumer cannot read it, and
// read only by the consumer while the producer cannot write it (the index protocol in
// `spsc_ring`); the indices are atomics.
unsafe impl<const S: usize, const N: usize> Sync for SpscRing<S, N> {}

fn spsc_ring<const S: usize, const N: usize, const CAS: bool>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
) {
    let ring: Shm<SpscRing<S, N>> = Shm::new(SpscRing {
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
        got: CachePadded::new(AtomicU64::new(0)),
        slots: [const { Slot(UnsafeCell::new([0; S])) }; N],
    });
    concurrent(
        g,
        id,
        PROCS,
        1,
        &*ring,
        |r| {
            r.head.store(0, Ordering::Relaxed);
            r.tail.store(0, Ordering::Relaxed);
            r.got.store(0, Ordering::Relaxed);
        },
        |r, i, iters| {
            let n = N as u64;
            if i == 0 {
                let mut src = message(S);
                // Acquire pairs with the consumer's Release store of `head`: its reads of
                // a slot happen before our next write of it.
                let mut head = r.head.load(Ordering::Acquire);
                for k in 1..=iters {
                    let mut spin = Spin::default();
                    while k - 1 - head >= n {
                        spin.wait();
                        // Acquire: as above.
                        head = r.head.load(Ordering::Acquire);
                    }
                    stamp(&mut src, k);
                    let slot = r.slots[((k - 1) % n) as usize].0.get();
                    // SAFETY: slot `k - 1` is free: the consumer took message `k - 1 - N`
                    // (`head` > that) and reads no slot beyond `tail` (= `k - 1`, ours).
                    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), slot.cast(), S) };
                    // Release pairs with the consumer's Acquire load: the slot's bytes
                    // happen before it sees the message.
                    if CAS {
                        // The only writer: the compare-exchange always succeeds; it is
                        // here for its cost (a locked instruction), as the channel's.
                        let cas =
                            r.tail
                                .compare_exchange(k - 1, k, Ordering::Release, Ordering::Relaxed);
                        debug_assert!(cas.is_ok());
                    } else {
                        r.tail.store(k, Ordering::Release);
                    }
                }
            } else {
                let mut dst = vec![0u8; S];
                let mut tail = 0;
                for k in 1..=iters {
                    let mut spin = Spin::default();
                    while tail < k {
                        spin.wait();
                        // Acquire: pairs with the producer's Release store of `tail`.
                        tail = r.tail.load(Ordering::Acquire);
                    }
                    let slot = r.slots[((k - 1) % n) as usize].0.get();
                    // SAFETY: message `k` is published (`tail` >= k) and the producer
                    // does not write its slot again until `head` passes it (below).
                    unsafe { core::ptr::copy_nonoverlapping(slot.cast(), dst.as_mut_ptr(), S) };
                    check(&dst, k, S);
                    // Release pairs with the producer's Acquire load of `head`.
                    r.head.store(k, Ordering::Release);
                }
                r.got.store(iters, Ordering::Relaxed);
            }
        },
        |r| r.got.load(Ordering::Relaxed),
    );
}

/// Words in a [`PackedRing`]: the channel's 64 KiB.
const PACKED_WORDS: usize = BUFFER / 8;

/// A header's bit marking a padding record (the rest of the ring is skipped).
const PACKED_PAD: u64 = 1 << 62;

/// How a [`PackedRing`] publishes a record: a Release store of `tail`, the channel's
/// compare-exchange of `tail`, or a Release store of the record's header.
const TAIL_STORE: u8 = 0;
const TAIL_CAS: u8 = 1;
const HEADER_STORE: u8 = 2;
/// Added to a [`PackedRing`]'s `PUBLISH`: the consumer's release of each message is
/// followed by a `SeqCst` fence and a load of a word the producer would flag if it slept
/// (the channel's receiver wakes sleeping senders so).
const RELEASE_FENCE: u8 = 4;

/// A bare single-producer single-consumer ring packed as the channel packs its ring: each
/// record a header word (the payload's length) and the payload in whole words, a padding
/// record where a record does not fit before the end. `PUBLISH` is [`TAIL_STORE`] (a
/// Release store of `tail`: the channel's way without its lock and its compare-exchange),
/// [`TAIL_CAS`] (a compare-exchange of `tail`, as the channel's commit), or
/// [`HEADER_STORE`] (a Release store of the record's header, which then carries its
/// position: the consumer waits on the header at its position and never reads `tail`, the
/// way of rings that publish per slot). No lock, no crash safety, no sleeping.
#[repr(C)]
struct PackedRing<const PUBLISH: u8> {
    /// Words consumed (the consumer's, stored after each message).
    head: CachePadded<AtomicU64>,
    /// Words published (the producer's; unused with [`HEADER_STORE`]).
    tail: CachePadded<AtomicU64>,
    /// Messages checked by the consumer, for the sample's count.
    got: CachePadded<AtomicU64>,
    words: [AtomicU64; PACKED_WORDS],
}

/// The producer's or the consumer's position in a [`PackedRing`] and its cached copy of
/// the other's.
#[derive(Default)]
struct PackedEnd {
    pos: u64,
    other: u64,
}

impl<const PUBLISH: u8> PackedRing<PUBLISH> {
    const STAMPED: bool = PUBLISH & 3 == HEADER_STORE;

    fn new() -> Self {
        Self {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            got: CachePadded::new(AtomicU64::new(0)),
            words: [const { AtomicU64::new(0) }; PACKED_WORDS],
        }
    }

    fn reset(&self) {
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
        self.got.store(0, Ordering::Relaxed);
        for w in &self.words {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// The header of a record at `pos` (words) with `len` bytes. Published by its own
    /// store, it carries the position (bit 63 set, so no zeroed word matches); else only
    /// the length.
    fn header(pos: u64, len: u64) -> u64 {
        if Self::STAMPED {
            1 << 63 | pos << 20 | len
        } else {
            len
        }
    }

    /// Sends `msg` (a multiple of 8 bytes) as the producer.
    fn put(&self, end: &mut PackedEnd, msg: &[u8]) {
        let n = PACKED_WORDS as u64;
        let rec = 1 + msg.len() as u64 / 8;
        let off = end.pos % n;
        let pad = if off + rec > n { n - off } else { 0 };
        let mut spin = Spin::default();
        while end.pos + pad + rec - end.other > n {
            spin.wait();
            // Acquire pairs with the consumer's Release store of `head`: its reads of the
            // words happen before our writes over them.
            end.other = self.head.load(Ordering::Acquire);
        }
        let at = ((end.pos + pad) % n) as usize;
        for (w, b) in self.words[at + 1..].iter().zip(msg.chunks_exact(8)) {
            w.store(u64::from_ne_bytes(b.try_into().unwrap()), Ordering::Relaxed);
        }
        // Release (every publishing store below): the payload happens before the consumer
        // sees the record (its Acquire load of the header or of `tail`).
        let header = Self::header(end.pos + pad, msg.len() as u64);
        if Self::STAMPED {
            self.words[at].store(header, Ordering::Release);
            if pad > 0 {
                // After the record: a consumer that passes the padding finds it.
                self.words[off as usize]
                    .store(Self::header(end.pos, 0) | PACKED_PAD, Ordering::Release);
            }
        } else {
            self.words[at].store(header, Ordering::Relaxed);
            if pad > 0 {
                self.words[off as usize].store(PACKED_PAD, Ordering::Relaxed);
            }
        }
        let from = end.pos;
        end.pos += pad + rec;
        if PUBLISH & 3 == TAIL_CAS {
            // The only writer: the compare-exchange always succeeds; it is here for its
            // cost (a locked instruction), as the channel's.
            let cas =
                self.tail
                    .compare_exchange(from, end.pos, Ordering::Release, Ordering::Relaxed);
            debug_assert!(cas.is_ok());
        } else if PUBLISH & 3 == TAIL_STORE {
            self.tail.store(end.pos, Ordering::Release);
        }
    }

    /// Receives the next message into `buf` as the consumer; returns its length.
    fn take(&self, end: &mut PackedEnd, buf: &mut [u8]) -> usize {
        let n = PACKED_WORDS as u64;
        let mut spin = Spin::default();
        let header = loop {
            let off = (end.pos % n) as usize;
            let h = if Self::STAMPED {
                // Acquire pairs with the producer's Release store of the header.
                let h = self.words[off].load(Ordering::Acquire);
                if h & !(PACKED_PAD | 0xf_ffff) != Self::header(end.pos, 0) {
                    spin.wait();
                    continue;
                }
                h
            } else {
                if end.other == end.pos {
                    // Acquire pairs with the producer's Release store of `tail`.
                    end.other = self.tail.load(Ordering::Acquire);
                    if end.other == end.pos {
                        spin.wait();
                        continue;
                    }
                }
                self.words[off].load(Ordering::Relaxed)
            };
            if h & PACKED_PAD != 0 {
                end.pos += n - off as u64;
                continue;
            }
            break h;
        };
        let len = (header & 0xf_ffff) as usize;
        let at = (end.pos % n) as usize + 1;
        for (w, b) in self.words[at..].iter().zip(buf[..len].chunks_exact_mut(8)) {
            b.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        end.pos += 1 + len as u64 / 8;
        // Release pairs with the producer's Acquire load of `head`.
        self.head.store(end.pos, Ordering::Release);
        if PUBLISH & RELEASE_FENCE != 0 {
            std::sync::atomic::fence(Ordering::SeqCst);
            // The flag a sleeping producer would set (`got`: never written meanwhile).
            std::hint::black_box(self.got.load(Ordering::Relaxed));
        }
        len
    }
}

/// One-way through a [`PackedRing`]: worker 0 sends `1..=iters` (`len` bytes each), worker
/// 1 receives and checks them.
fn packed_oneway<const PUBLISH: u8>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, len: usize) {
    let ring = Shm::new(PackedRing::<PUBLISH>::new());
    concurrent(
        g,
        id,
        PROCS,
        1,
        &*ring,
        |r| r.reset(),
        |r, i, iters| {
            let mut end = PackedEnd::default();
            let mut msg = message(len);
            for k in 1..=iters {
                if i == 0 {
                    stamp(&mut msg, k);
                    r.put(&mut end, &msg);
                } else {
                    let n = r.take(&mut end, &mut msg);
                    check(&msg[..n], k, len);
                }
            }
            if i == 1 {
                r.got.store(iters, Ordering::Relaxed);
            }
        },
        |r| r.got.load(Ordering::Relaxed),
    );
}

/// Ping-pong through two [`PackedRing`]s, both sides spinning, as the cache-line floor.
fn packed_pingpong<const PUBLISH: u8>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, len: usize) {
    let rings = Shm::new([PackedRing::<PUBLISH>::new(), PackedRing::<PUBLISH>::new()]);
    concurrent(
        g,
        id,
        PROCS,
        1,
        &*rings,
        |r| r.iter().for_each(PackedRing::reset),
        |r, i, iters| {
            let (out, inn) = if i == 0 {
                (&r[0], &r[1])
            } else {
                (&r[1], &r[0])
            };
            let (mut tx, mut rx) = (PackedEnd::default(), PackedEnd::default());
            let mut msg = message(len);
            for k in 1..=iters {
                if i == 0 {
                    stamp(&mut msg, k);
                    out.put(&mut tx, &msg);
                    let n = inn.take(&mut rx, &mut msg);
                    check(&msg[..n], k, len);
                } else {
                    let n = inn.take(&mut rx, &mut msg);
                    out.put(&mut tx, &msg[..n]);
                }
            }
            if i == 0 {
                r[0].got.store(iters, Ordering::Relaxed);
            }
        },
        |r| r[0].got.load(Ordering::Relaxed),
    );
}

/// Two 16 KiB buffers for the memcpy row (one thread; cells so a shared reference copies).
struct CopyBufs {
    src: UnsafeCell<Vec<u8>>,
    dst: UnsafeCell<Vec<u8>>,
}

/// The bandwidth floor: one 16 KiB `copy_from_slice` in one thread (buffers hot in cache),
/// the copy a 16 KiB message needs at least once. The copy is checked after each sample.
fn memcpy(c: &mut Criterion) {
    const LEN: usize = 16384;
    let mut g = common::group(c, "channel_memcpy");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Bytes(LEN as u64));
    let bufs = CopyBufs {
        src: UnsafeCell::new(message(LEN)),
        dst: UnsafeCell::new(vec![0; LEN]),
    };
    g.bench_function("memcpy_16KiB", |b| {
        b.iter_custom(|iters| {
            // SAFETY: `bufs` is used by this thread only; no other reference to either
            // buffer exists while these do.
            let (src, dst) = unsafe { (&mut *bufs.src.get(), &mut *bufs.dst.get()) };
            let t0 = Instant::now();
            for k in 1..=iters {
                stamp(src, k);
                std::hint::black_box(&mut *dst).copy_from_slice(std::hint::black_box(&*src));
            }
            let elapsed = t0.elapsed();
            if iters > 0 {
                check(dst, iters, LEN);
            }
            elapsed
        })
    });
    g.finish();
}

/// The other reading of "memcpy bandwidth": a copy too large for any cache (256 MiB, far
/// past this machine's 32 MiB L3), timed 16 KiB at a time: each iteration copies the next
/// 16 KiB of the source to the same place in the destination, so every copy reads and
/// writes memory (the sustained bandwidth `mbw` or STREAM's copy report). The 16 KiB
/// message rows are compared with both this and the in-cache row.
fn memcpy_memory(c: &mut Criterion) {
    const LEN: usize = 16384;
    const BIG: usize = 256 << 20;
    let mut g = common::group(c, "channel_memcpy");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Bytes(LEN as u64));
    let bufs = CopyBufs {
        src: UnsafeCell::new(message(BIG)),
        dst: UnsafeCell::new(vec![1; BIG]),
    };
    let chunks = BIG / LEN;
    g.bench_function("memcpy_16KiB_of_256MiB", |b| {
        b.iter_custom(|iters| {
            // SAFETY: `bufs` is used by this thread only; no other reference to either
            // buffer exists while these do.
            let (src, dst) = unsafe { (&mut *bufs.src.get(), &mut *bufs.dst.get()) };
            let t0 = Instant::now();
            for k in 0..iters {
                let at = (k as usize % chunks) * LEN;
                std::hint::black_box(&mut dst[at..at + LEN])
                    .copy_from_slice(std::hint::black_box(&src[at..at + LEN]));
            }
            let elapsed = t0.elapsed();
            if iters > 0 {
                let at = ((iters - 1) as usize % chunks) * LEN;
                assert_eq!(dst[at..at + LEN], src[at..at + LEN], "a chunk copied wrong");
            }
            elapsed
        })
    });
    g.finish();
}

/// The shmstate rows: one `Channel` (64 KiB ring, messages up to 16 KiB) in a region of
/// anonymous shared memory that the forked workers inherit; for 16 KiB one-way, also one
/// with a 1 MiB ring (`shmstate_channel_1MiB_ring`).
mod channel_rows {
    use super::*;
    use shmstate::{Channel, ChannelOptions, Region, TryRecvIntoError};

    /// A region for the benched channels.
    fn region() -> Region {
        Region::anonymous(4 << 20).expect("anonymous region")
    }

    /// 64 KiB of ring (a default pipe's buffer), messages up to the largest size benched.
    fn options() -> ChannelOptions {
        ChannelOptions::new(BUFFER).max_message(16384)
    }

    /// One-way: `send` a message from a buffer, `recv_into` one of the receiver's.
    /// `shmstate_channel_zerocopy`: the sender writes the message straight into a slot of
    /// the ring (`reserve`, `write_at`, `commit`) and the receiver checks it in place
    /// (`recv_with`).
    pub fn oneway(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, got: &AtomicU64) {
        let r = region();
        let ch: &Channel = r.channel("oneway", options()).expect("channel");
        // 16 KiB messages also through a 1 MiB ring: with 64 KiB, 3 messages fill the
        // ring, and sender and receiver take turns sleeping at almost every message.
        let big = (len == 16384).then(|| {
            r.channel(
                "oneway-1MiB",
                ChannelOptions::new(1 << 20).max_message(16384),
            )
            .expect("channel")
        });
        for (name, ch) in [
            ("shmstate_channel", Some(ch)),
            ("shmstate_channel_1MiB_ring", big),
        ] {
            let Some(ch) = ch else { continue };
            oneway_copy(g, name, ch, len, got, Tx::Send, Rx::Each);
        }
        oneway_zerocopy(g, ch, len, got);
        // The sender holds the send side for the whole sample (`Channel::send_side`); the
        // receiver takes each message (`recv_into`) or what is waiting in batches
        // (`drain`, spinning while there is none).
        oneway_copy(
            g,
            "shmstate_channel_send_side",
            ch,
            len,
            got,
            Tx::Side,
            Rx::Each,
        );
        oneway_copy(
            g,
            "shmstate_channel_send_side_drain",
            ch,
            len,
            got,
            Tx::Side,
            Rx::Batches,
        );
        // Both sides held: the sender's send side, the receiver's receive side
        // (`Channel::recv_side`, `recv_into` under it).
        oneway_copy(
            g,
            "shmstate_channel_held_sides",
            ch,
            len,
            got,
            Tx::Side,
            Rx::Side,
        );
    }

    /// How worker 0 of a one-way row sends.
    #[derive(Clone, Copy, PartialEq)]
    enum Tx {
        /// `Channel::send`, one message at a time.
        Send,
        /// Through a send side held for the whole sample.
        Side,
    }

    /// How worker 1 of a one-way row receives.
    #[derive(Clone, Copy, PartialEq)]
    enum Rx {
        /// `recv_into`, one message at a time.
        Each,
        /// `drain` of what is waiting, spinning while there is none.
        Batches,
        /// `recv_into` under a receive side held for the whole sample.
        Side,
    }

    /// `send` from a buffer (or a held side's), `recv_into` the receiver's (or `drain`).
    fn oneway_copy(
        g: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        ch: &Channel,
        len: usize,
        got: &AtomicU64,
        tx: Tx,
        rx: Rx,
    ) {
        concurrent(
            g,
            name,
            PROCS,
            1,
            &(ch, got),
            |s| s.1.store(0, Ordering::Relaxed),
            |s, i, iters| {
                let mut msg = message(len);
                if i == 0 {
                    let mut side = (tx == Tx::Side).then(|| s.0.send_side().unwrap());
                    for k in 1..=iters {
                        stamp(&mut msg, k);
                        match &mut side {
                            Some(side) => side.send(&msg).unwrap(),
                            None => s.0.send(&msg).unwrap(),
                        }
                    }
                    return;
                }
                let mut k = 1;
                let mut side = (rx == Rx::Side).then(|| s.0.recv_side().unwrap());
                while k <= iters {
                    if let Some(side) = &mut side {
                        let n = side.recv_into(&mut msg).unwrap();
                        check(&msg[..n], k, len);
                        k += 1;
                    } else if rx == Rx::Batches {
                        let n =
                            s.0.drain(usize::MAX, |m| {
                                check(m, k, len);
                                k += 1;
                            })
                            .unwrap();
                        if n == 0 {
                            core::hint::spin_loop();
                        }
                    } else {
                        let n = s.0.recv_into(&mut msg).unwrap();
                        check(&msg[..n], k, len);
                        k += 1;
                    }
                }
                s.1.store(iters, Ordering::Relaxed);
            },
            |s| s.1.load(Ordering::Relaxed),
        );
    }

    /// `reserve` + `write_at` + `commit`, checked in place by `recv_with`.
    fn oneway_zerocopy(
        g: &mut BenchmarkGroup<'_, WallTime>,
        ch: &Channel,
        len: usize,
        got: &AtomicU64,
    ) {
        concurrent(
            g,
            "shmstate_channel_zerocopy",
            PROCS,
            1,
            &(ch, got),
            |s| s.1.store(0, Ordering::Relaxed),
            |s, i, iters| {
                if i == 0 {
                    let msg = message(len);
                    for k in 1..=iters {
                        let mut slot = s.0.reserve(len).unwrap();
                        slot.write_at(0, &k.to_le_bytes());
                        slot.write_at(8, &msg[8..]);
                        slot.commit().unwrap();
                    }
                } else {
                    for k in 1..=iters {
                        s.0.recv_with(|m| check(m, k, len)).unwrap();
                    }
                    s.1.store(iters, Ordering::Relaxed);
                }
            },
            |s| s.1.load(Ordering::Relaxed),
        );
    }

    /// Ping-pong: one channel each way. `shmstate_channel` blocks in `recv_into`;
    /// `shmstate_channel_spin` polls `try_recv_into` (into the same buffer);
    /// `shmstate_channel_held_sides_spin` does so with each process holding the send side
    /// of the channel it sends on and the receive side of the one it receives from;
    /// `shmstate_channel_held_sides` holds both and blocks in `RecvSide::recv_into`.
    pub fn pingpong(g: &mut BenchmarkGroup<'_, WallTime>, len: usize, rounds: &AtomicU64) {
        let r = region();
        let there: &Channel = r.channel("there", options()).expect("channel");
        let back: &Channel = r.channel("back", options()).expect("channel");
        for (name, spin) in [("shmstate_channel", false), ("shmstate_channel_spin", true)] {
            concurrent(
                g,
                name,
                PROCS,
                1,
                &(there, back, rounds),
                |s| s.2.store(0, Ordering::Relaxed),
                |s, i, iters| {
                    let (out, inn) = if i == 0 { (s.0, s.1) } else { (s.1, s.0) };
                    round_trips(
                        i,
                        iters,
                        len,
                        s.2,
                        |m| out.send(m).unwrap(),
                        |buf| {
                            if spin {
                                spin_until(|| received(inn.try_recv_into(buf)))
                            } else {
                                inn.recv_into(buf).unwrap()
                            }
                        },
                    );
                },
                |s| s.2.load(Ordering::Relaxed),
            );
        }
        for (name, spin) in [
            ("shmstate_channel_held_sides", false),
            ("shmstate_channel_held_sides_spin", true),
        ] {
            concurrent(
                g,
                name,
                PROCS,
                1,
                &(there, back, rounds),
                |s| s.2.store(0, Ordering::Relaxed),
                |s, i, iters| {
                    let (out, inn) = if i == 0 { (s.0, s.1) } else { (s.1, s.0) };
                    let mut tx = out.send_side().unwrap();
                    let mut rx = inn.recv_side().unwrap();
                    round_trips(
                        i,
                        iters,
                        len,
                        s.2,
                        |m| tx.send(m).unwrap(),
                        |buf| {
                            if spin {
                                spin_until(|| received(rx.try_recv_into(buf)))
                            } else {
                                rx.recv_into(buf).unwrap()
                            }
                        },
                    );
                },
                |s| s.2.load(Ordering::Relaxed),
            );
        }
    }

    /// A `try_recv_into` result, `None` while the channel is empty.
    fn received(r: Result<usize, TryRecvIntoError>) -> Option<usize> {
        match r {
            Ok(n) => Some(n),
            Err(TryRecvIntoError::Empty) => None,
            Err(e) => panic!("try_recv_into: {e:?}"),
        }
    }

    /// Calls `attempt` until it returns a value, spinning between calls.
    fn spin_until<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
        let mut spin = Spin::default();
        loop {
            if let Some(v) = attempt() {
                return v;
            }
            spin.wait();
        }
    }

    /// Worker `i`'s side of `iters` round trips of `len`-byte messages: worker 0 sends
    /// `k` with `put`, takes the echo with `take` and checks it; worker 1 echoes.
    fn round_trips(
        i: usize,
        iters: u64,
        len: usize,
        count: &AtomicU64,
        mut put: impl FnMut(&[u8]),
        mut take: impl FnMut(&mut [u8]) -> usize,
    ) {
        let mut msg = message(len);
        for k in 1..=iters {
            if i == 0 {
                stamp(&mut msg, k);
                put(&msg);
                let n = take(&mut msg);
                check(&msg[..n], k, len);
                count.fetch_add(1, Ordering::Relaxed);
            } else {
                let n = take(&mut msg);
                put(&msg[..n]);
            }
        }
    }
}

/// `channel_oneway_64B_1thread`: one thread sends a 64 B message and receives it back,
/// over and over: what a message costs the CPU, with no line moving between cores (the
/// part of a one-way row that code can change; BENCHMARKS.md, "Fewer instructions per
/// held-side message"). `shmstate_channel_held_sides`: through a held send side and a
/// held receive side; `shmstate_channel`: `send` + `recv_into`. Beside them, the bare
/// ring published per record (`stamped_ring`, as `channel_floor_2procs/stamped_ring_64B`:
/// no lock, no crash safety, no sleeping) and `crossbeam_channel` of `Vec<u8>` (one
/// allocation per message, as in its two-thread rows).
fn one_thread(c: &mut Criterion) {
    const LEN: usize = 64;
    let mut g = common::group(c, "channel_oneway_64B_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));
    let r = shmstate::Region::anonymous(1 << 20).expect("anonymous region");
    let ch = r
        .channel(
            "one-thread",
            shmstate::ChannelOptions::new(BUFFER).max_message(16384),
        )
        .expect("channel");
    let mut msg = message(LEN);
    let mut buf = message(LEN);
    g.bench_function("shmstate_channel_held_sides", |b| {
        let mut tx = ch.send_side().unwrap();
        let mut rx = ch.recv_side().unwrap();
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for k in 1..=iters {
                stamp(&mut msg, k);
                tx.send(&msg).unwrap();
                let n = rx.recv_into(&mut buf).unwrap();
                check(&buf[..n], k, LEN);
            }
            t0.elapsed()
        })
    });
    g.bench_function("shmstate_channel", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for k in 1..=iters {
                stamp(&mut msg, k);
                ch.send(&msg).unwrap();
                let n = ch.recv_into(&mut buf).unwrap();
                check(&buf[..n], k, LEN);
            }
            t0.elapsed()
        })
    });
    let ring = Box::new(PackedRing::<HEADER_STORE>::new());
    g.bench_function("stamped_ring", |b| {
        ring.reset();
        let (mut tx, mut rx) = (PackedEnd::default(), PackedEnd::default());
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for k in 1..=iters {
                stamp(&mut msg, k);
                ring.put(&mut tx, &msg);
                let n = ring.take(&mut rx, &mut buf);
                check(&buf[..n], k, LEN);
            }
            t0.elapsed()
        })
    });
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(BUFFER / LEN);
    g.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for k in 1..=iters {
                let mut m = msg.clone();
                stamp(&mut m, k);
                tx.send(m).unwrap();
                check(&rx.recv().unwrap(), k, LEN);
            }
            t0.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = oneway, pingpong, floor, memcpy, memcpy_memory, one_thread
}
criterion_main!(benches);
