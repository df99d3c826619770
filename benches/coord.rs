//! Coordination: shmstate's `Semaphore`, `Event`, `Barrier` and `Queue` next to what a C
//! or Rust programmer would use between processes instead, in one run: glibc's
//! process-shared `sem_t` and `pthread_barrier_t` placed in a `MAP_SHARED` mapping,
//! `eventfd`s, pipes and Unix sockets inherited across `fork`. Python's
//! `multiprocessing` equivalents are timed by `benches/python/compare.py`.
//!
//! `std` has no semaphore, event or process-shared queue, and its `Barrier` (like
//! `parking_lot`'s locks) works within one process only, so every alternative here is a
//! kernel or glibc object that works between processes.
//!
//! Every bench checks its result: the semaphore guards a plain count that must come out
//! exact, ping-pong partners count their round trips, the barrier's leaders are counted
//! (one per round), and queue consumers check every item they pop (in order, none lost).
//!
//! Run: `cargo bench --bench coord` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench coord`).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
// Relaxed throughout: the counts are reset before the workers start (fork synchronises)
// and read after the runner saw them done (Release/Acquire on its `done` word); the
// exclusion a count relies on comes from the primitive under test (see `bump`).
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{PosixSem, PthreadBarrier, Shm, Weight, Workers, concurrent, single, tune};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmstate::{Barrier, Event, Queue, Semaphore};

/// Capacity of the benched queue: 8 KiB of `u64`s, an eighth of a default pipe buffer.
const QUEUE_CAP: usize = 1024;

/// The benched queue type.
type Q = Queue<u64, QUEUE_CAP>;

/// Increments `c` with a plain load and store, not an atomic read-modify-write: only
/// correct while a semaphore of one permit (or a round-trip partner) excludes every other
/// writer, so a broken exclusion loses counts and fails the bench.
///
/// Relaxed is enough when the exclusion works: the semaphore's acquire/release (or the
/// hand-off of the round trip) orders the accesses; the final read happens after the
/// workers were counted done (Release/Acquire in the runner).
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}

/// A value a consumer did not expect.
#[cold]
#[inline(never)]
fn wrong_item(got: u64, want: u64) -> ! {
    panic!("queue delivered {got}, expected {want}")
}

/// Checks a received item against the one expected next.
#[inline]
fn expect(got: u64, want: u64) {
    if got != want {
        wrong_item(got, want)
    }
}

/// One permit, acquire + increment + release on one thread: the uncontended fast paths.
fn semaphore_uncontended(c: &mut Criterion) {
    let mut g = common::group(c, "semaphore_uncontended");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let sem = Shm::new(Semaphore::new(1));
    let count = Shm::new(AtomicU64::new(0));
    single(
        &mut g,
        "shmstate_semaphore",
        &(&*sem, &*count),
        |s| s.1.store(0, Relaxed),
        |s| {
            s.0.acquire();
            bump(s.1);
            s.0.release().unwrap();
        },
        |s| s.1.load(Relaxed),
    );

    let sem = PosixSem::new_shared(1);
    single(
        &mut g,
        "posix_sem",
        &(&*sem, &*count),
        |s| s.1.store(0, Relaxed),
        |s| {
            s.0.wait();
            bump(s.1);
            s.0.post();
        },
        |s| s.1.load(Relaxed),
    );
    g.finish();
}

/// One permit, 2 processes each looping acquire + increment + release: every hand-off
/// between the processes goes through the semaphore's wait and wake paths.
fn semaphore_contended(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("semaphore_contended_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(w.count() as u64));
    let n = w.count() as u64;
    let count = Shm::new(AtomicU64::new(0));

    let sem = Shm::new(Semaphore::new(1));
    concurrent(
        &mut g,
        "shmstate_semaphore",
        w,
        n,
        &(&*sem, &*count),
        |s| s.1.store(0, Relaxed),
        |s, _, iters| {
            for _ in 0..iters {
                s.0.acquire();
                bump(s.1);
                s.0.release().unwrap();
            }
        },
        |s| s.1.load(Relaxed),
    );

    let sem = PosixSem::new_shared(1);
    concurrent(
        &mut g,
        "posix_sem",
        w,
        n,
        &(&*sem, &*count),
        |s| s.1.store(0, Relaxed),
        |s, _, iters| {
            for _ in 0..iters {
                s.0.wait();
                bump(s.1);
                s.0.post();
            }
        },
        |s| s.1.load(Relaxed),
    );
    g.finish();
}

/// An eventfd (counter 0, blocking), made before the fork so both processes hold it.
fn eventfd() -> File {
    let fd: OwnedFd =
        rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).expect("eventfd");
    File::from(fd)
}

/// Ping-pong between 2 processes through two flags: worker 0 sets `ping` and waits for
/// `pong`; worker 1 waits for `ping`, counts the round, and sets `pong`. Each waiter
/// clears the flag it waited for before answering, so the next set finds it clear. One
/// iteration is one round trip (two set-to-wake hand-offs).
fn event_pingpong(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("event_pingpong_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));
    let rounds = Shm::new(AtomicU64::new(0));

    let ping = Shm::new(Event::new());
    let pong = Shm::new(Event::new());
    concurrent(
        &mut g,
        "shmstate_event",
        w,
        1,
        &(&*ping, &*pong, &*rounds),
        |s| {
            s.0.clear();
            s.1.clear();
            s.2.store(0, Relaxed);
        },
        |s, i, iters| {
            for _ in 0..iters {
                if i == 0 {
                    s.0.set();
                    s.1.wait();
                    s.1.clear();
                } else {
                    s.0.wait();
                    s.0.clear();
                    bump(s.2);
                    s.1.set();
                }
            }
        },
        |s| s.2.load(Relaxed),
    );

    // An eventfd is a kernel counter: `write` adds to it (waking a reader), a blocking
    // `read` waits until it is non-zero and takes it back to zero, the set-and-clear of
    // one flag in one call each.
    let (ping, pong) = (eventfd(), eventfd());
    concurrent(
        &mut g,
        "eventfd",
        w,
        1,
        &(&ping, &pong, &*rounds),
        |s| s.2.store(0, Relaxed),
        |s, i, iters| {
            let one = 1u64.to_ne_bytes();
            let mut buf = [0u8; 8];
            for _ in 0..iters {
                if i == 0 {
                    (&*s.0).write_all(&one).unwrap();
                    (&*s.1).read_exact(&mut buf).unwrap();
                    expect(u64::from_ne_bytes(buf), 1);
                } else {
                    (&*s.0).read_exact(&mut buf).unwrap();
                    expect(u64::from_ne_bytes(buf), 1);
                    bump(s.2);
                    (&*s.1).write_all(&one).unwrap();
                }
            }
        },
        |s| s.2.load(Relaxed),
    );
    g.finish();
}

/// A barrier of 2 parties, both processes waiting on it in a loop: one iteration is one
/// round (each process arrives once). The round's leader counts it.
fn barrier(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("barrier_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));
    // Leaders of successive rounds may be different processes; the barrier orders their
    // increments, but an atomic RMW does not rely on it (so a broken barrier shows as a
    // wrong number of leaders, not as lost counts).
    let leaders = Shm::new(AtomicU64::new(0));

    let b = Shm::new(Barrier::new(2));
    concurrent(
        &mut g,
        "shmstate_barrier",
        w,
        1,
        &(&*b, &*leaders),
        |s| s.1.store(0, Relaxed),
        |s, _, iters| {
            for _ in 0..iters {
                if s.0.wait().unwrap().is_leader() {
                    // Relaxed: a count read after the workers are done.
                    s.1.fetch_add(1, Relaxed);
                }
            }
        },
        |s| s.1.load(Relaxed),
    );

    let b = PthreadBarrier::new_shared(2);
    concurrent(
        &mut g,
        "pthread_barrier",
        w,
        1,
        &(&*b, &*leaders),
        |s| s.1.store(0, Relaxed),
        |s, _, iters| {
            for _ in 0..iters {
                if s.0.wait() {
                    // Relaxed: as above.
                    s.1.fetch_add(1, Relaxed);
                }
            }
        },
        |s| s.1.load(Relaxed),
    );
    g.finish();
}

/// A pipe whose ends are plain `File`s (so `&File` reads and writes).
fn pipe() -> (File, File) {
    let (r, w) = std::io::pipe().expect("pipe");
    (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)))
}

/// Sends one `u64` as 8 bytes.
#[inline]
fn send(mut to: impl Write, v: u64) {
    to.write_all(&v.to_ne_bytes()).unwrap();
}

/// Receives one `u64` sent by [`send`].
#[inline]
fn recv(mut from: impl Read) -> u64 {
    let mut buf = [0u8; 8];
    from.read_exact(&mut buf).unwrap();
    u64::from_ne_bytes(buf)
}

/// One-way throughput: worker 0 sends `1..=iters`, worker 1 receives them, checks each
/// (in order, none lost) and counts them. One iteration is one message (one send and one
/// receive). Stream alternatives move each message with its own `write` and `read`, as a
/// producer that hands over items one at a time must.
fn queue_oneway(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("queue_oneway_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));
    let got = Shm::new(AtomicU64::new(0));

    let q = Shm::<Q>::zeroed(1);
    concurrent(
        &mut g,
        "shmstate_queue",
        w,
        1,
        &(&*q, &*got),
        |s| s.1.store(0, Relaxed),
        |s, i, iters| {
            if i == 0 {
                for k in 1..=iters {
                    s.0.push(k);
                }
            } else {
                for k in 1..=iters {
                    expect(s.0.pop(), k);
                }
                // Relaxed: read after the workers are done.
                s.1.store(iters, Relaxed);
            }
        },
        |s| s.1.load(Relaxed),
    );

    let (r, wr) = pipe();
    let (a, b) = UnixStream::pair().expect("socketpair");
    for (name, tx, rx) in [
        ("pipe", &wr as &dyn WriteRead, &r as &dyn WriteRead),
        ("unix_socket", &a, &b),
    ] {
        concurrent(
            &mut g,
            name,
            w,
            1,
            &(tx, rx, &*got),
            |s| s.2.store(0, Relaxed),
            |s, i, iters| {
                if i == 0 {
                    for k in 1..=iters {
                        s.0.send(k);
                    }
                } else {
                    for k in 1..=iters {
                        expect(s.1.recv(), k);
                    }
                    // Relaxed: as above.
                    s.2.store(iters, Relaxed);
                }
            },
            |s| s.2.load(Relaxed),
        );
    }
    g.finish();
}

/// A byte stream shared by reference: a pipe end or a Unix socket.
trait WriteRead: Sync {
    fn send(&self, v: u64);
    fn recv(&self) -> u64;
}

impl WriteRead for File {
    #[inline]
    fn send(&self, v: u64) {
        send(self, v)
    }
    #[inline]
    fn recv(&self) -> u64 {
        recv(self)
    }
}

impl WriteRead for UnixStream {
    #[inline]
    fn send(&self, v: u64) {
        send(self, v)
    }
    #[inline]
    fn recv(&self) -> u64 {
        recv(self)
    }
}

/// Ping-pong: worker 0 sends `k` and waits for it to come back; worker 1 receives each
/// item and sends it back. One iteration is one round trip (two messages, each woken
/// across processes). Worker 0 checks and counts every echo.
fn queue_pingpong(c: &mut Criterion) {
    let w = Workers::Processes(2);
    let mut g = common::group(c, format!("queue_pingpong_{}", w.label()));
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(1));
    let rounds = Shm::new(AtomicU64::new(0));

    let there = Shm::<Q>::zeroed(1);
    let back = Shm::<Q>::zeroed(1);
    concurrent(
        &mut g,
        "shmstate_queue",
        w,
        1,
        &(&*there, &*back, &*rounds),
        |s| s.2.store(0, Relaxed),
        |s, i, iters| {
            for k in 1..=iters {
                if i == 0 {
                    s.0.push(k);
                    expect(s.1.pop(), k);
                    bump(s.2);
                } else {
                    let v = s.0.pop();
                    s.1.push(v);
                }
            }
        },
        |s| s.2.load(Relaxed),
    );

    // Two pipes (one per direction); one socket pair (a socket is both directions).
    let (there_r, there_w) = pipe();
    let (back_r, back_w) = pipe();
    let (a, b) = UnixStream::pair().expect("socketpair");
    let cases: [(&str, [&dyn WriteRead; 4]); 2] = [
        ("pipe", [&there_w, &back_r, &there_r, &back_w]),
        ("unix_socket", [&a, &a, &b, &b]),
    ];
    for (name, ends) in cases {
        concurrent(
            &mut g,
            name,
            w,
            1,
            &(ends, &*rounds),
            |s| s.1.store(0, Relaxed),
            |s, i, iters| {
                // Worker 0 sends on ends[0] and receives on ends[1]; worker 1 receives on
                // ends[2] and answers on ends[3].
                let [tx0, rx0, rx1, tx1] = s.0;
                for k in 1..=iters {
                    if i == 0 {
                        tx0.send(k);
                        expect(rx0.recv(), k);
                        bump(s.1);
                    } else {
                        tx1.send(rx1.recv());
                    }
                }
            },
            |s| s.1.load(Relaxed),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = semaphore_uncontended, semaphore_contended, event_pingpong, barrier,
        queue_oneway, queue_pingpong
}
criterion_main!(benches);
