//! The chaos suite: forked workers hammer one of every primitive with random operations
//! while a supervisor SIGKILLs them (and forks replacements) and SIGSTOPs/SIGCONTs them at
//! random. At the end every lock can still be taken, no counted update is lost beyond the
//! kills' windows, no queue item is popped twice or made up, and no call ran past its
//! bound. A second run adds a hostile process that writes garbage into the primitives'
//! state words (the histogram's too: header, owner words, counts): no worker may panic or
//! crash, and still no `try_` or timed call may run past its bound (an untimed call may
//! wait for good behind bytes that name a live holder or a read count no one holds: those
//! are recycled and counted, as the docs allow).
//! A third test measures how long after a holder's SIGKILL another process gets the lock.
//!
//! Seeds are printed; `SHMSTATE_CHAOS_SEED` replays one. `SHMSTATE_CHAOS_SECS` changes the
//! run length.
//!
//! A busy machine can stall a process for a second or more; the supervisor notices its
//! own stalls, and a bound overrun that overlaps one is reported but not counted.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
mod locks_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, watchdog};
use hostile::{Exclusive, Failures, Rng};
use locks_support::{park_forever, percentiles, raise, wait_for};
use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{
    Barrier, BoundedSemaphore, Condvar, Counter, Elem, Event, Histogram, Kind, Mutex, Queue,
    ReentrantMutex, RwLock, Semaphore, SeqLock, SeqLockArray, SharedSized, TimedLockError, Timeout,
    TryLockError, TypeTag, Value,
};

const WORKERS: usize = 5;
/// The timeout of every timed call.
const T: Duration = Duration::from_millis(200);
/// Bound of a timed call: its timeout ten times over plus a margin (generous: the
/// machine this runs on may be shared).
const TIMED_BOUND: Duration = Duration::from_millis(200 * 10 + 1000);
/// Bound of a `try_` call and of calls that never wait.
const TRY_BOUND: Duration = Duration::from_millis(1500);
/// The longest SIGSTOP the supervisor inflicts.
const MAX_STOP: Duration = Duration::from_millis(5000);
/// An untimed call still running this long (with its process running) counts as hung:
/// longer than any stop of a holder it may wait for.
const HUNG: Duration = Duration::from_millis(5000 + 5000);
/// The sum the seqlock array's elements keep.
const ARRAY_TOTAL: u64 = 1_000_000;
const ARRAY_LEN: usize = 4;
const POP_LOG: usize = 1 << 17;
const INCARNATIONS: usize = 4096;
const MAX_VIOLATIONS: usize = 256;
/// Observations (of 1.0) in one histogram operation: a burst, so that workers observe at
/// the same time often enough for two writers of one stripe to show as lost counts.
const BURST: u64 = 2000;

// ----- operations -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Never waits (or only briefly): `TRY_BOUND`.
    Try,
    /// Timed: `TIMED_BOUND`.
    Timed,
    /// Timed, but documented to re-lock a mutex without a deadline afterwards
    /// (`Condvar::wait_timeout`, as in std): `TIMED_BOUND` plus the longest stop of the
    /// mutex's holder.
    TimedThenRelock,
    /// Untimed: only a hang (`HUNG`) counts.
    Untimed,
}

impl Class {
    /// Whether a call of this class may wait for good behind hostile bytes: an untimed
    /// call, or a `TimedThenRelock` one, whose untimed re-lock waits for whatever live
    /// process a hostile lock word names (the peer writes pids that the kernel may have
    /// handed to any process by then).
    fn unbounded_behind_hostile_bytes(self) -> bool {
        matches!(self, Class::Untimed | Class::TimedThenRelock)
    }
}

macro_rules! ops {
    ($($name:ident: $class:ident,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        #[allow(clippy::enum_variant_names)]
        enum Op { Idle, $($name,)* }
        const ALL_OPS: &[Op] = &[$(Op::$name,)*];
        impl Op {
            fn class(self) -> Class {
                match self { Op::Idle => Class::Try, $(Op::$name => Class::$class,)* }
            }
            fn from_u32(v: u32) -> Op {
                ALL_OPS.iter().copied().find(|o| *o as u32 == v).unwrap_or(Op::Idle)
            }
        }
    };
}

ops! {
    MutexLockTimeout: Timed,
    MutexTryLock: Try,
    MutexLock: Untimed,
    RwReadTimeout: Timed,
    RwTryRead: Try,
    RwRead: Untimed,
    RwWriteTimeout: Timed,
    RwTryWrite: Try,
    RwWrite: Untimed,
    RmLockTimeout: Timed,
    RmTryLock: Try,
    RmLock: Untimed,
    CvMutexLockTimeout: Timed,
    CvWaitTimeout: TimedThenRelock,
    CvNotify: Try,
    SemAcquireTimeout: Timed,
    SemTryAcquire: Try,
    SemAcquire: Untimed,
    SemRelease: Try,
    BsemAcquireTimeout: Timed,
    BsemTryAcquire: Try,
    BsemRelease: Try,
    EventWaitTimeout: Timed,
    EventWait: Untimed,
    EventSet: Try,
    EventClear: Try,
    BarrierWaitTimeout: Timed,
    BarrierReset: Try,
    QueuePushTimeout: Timed,
    QueuePopTimeout: Timed,
    QueueTryPush: Try,
    QueueTryPop: Try,
    QueueHoldLock: Timed,
    SeqReadTimeout: Timed,
    SeqTryRead: Try,
    SeqLockTimeout: Timed,
    SeqWrite: Untimed,
    SeqUpdate: Untimed,
    SeqDieMidWrite: Untimed,
    ArrSnapshotTimeout: Timed,
    ArrTrySnapshot: Try,
    ArrBatchTimeout: Timed,
    CounterInc: Try,
    ValueAdd: Try,
    HistogramObserve: Try,
}

impl Op {
    fn bound(self) -> Duration {
        match self.class() {
            Class::Try => TRY_BOUND,
            Class::Timed => TIMED_BOUND,
            Class::TimedThenRelock => TIMED_BOUND + MAX_STOP,
            Class::Untimed => HUNG,
        }
    }
}

/// What a recorded violation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum What {
    /// A call returned past its bound (detail: elapsed µs).
    Overrun = 1,
    /// A call still ran past `HUNG` (seen by the supervisor; detail: elapsed µs).
    Hung,
    /// The mutex pair differed without `OwnerDied` (detail: the pair's difference).
    MutexPair,
    /// The rwlock pair differed without `OwnerDied`.
    RwPair,
    /// The reentrant mutex pair differed without `OwnerDied`.
    RmPair,
    /// A seqlock read returned a value whose words differ (detail: word 0 ^ word 3).
    SeqTorn,
    /// A seqlock-array snapshot did not add up (detail: the sum).
    ArraySum,
}

// ----- shared state -----

/// One worker slot: the running incarnation's pid and what it is doing.
#[repr(C)]
struct Slot {
    /// Counter increments this slot's workers made and recorded (after the increment).
    counted: AtomicU64,
    /// `Value` additions likewise.
    valued: AtomicU64,
    /// `Histogram` observations (of 1.0) likewise, recorded a burst at a time.
    observed: AtomicU64,
    /// Bumped by the supervisor before a SIGSTOP and after the SIGCONT: a worker whose
    /// call spans a change was stopped during it and does not judge its duration.
    stop_gen: AtomicU64,
    /// The current operation (`Op as u32`, 0 between operations) and when it started
    /// (`CLOCK_MONOTONIC` ns).
    op: AtomicU32,
    /// Set by a worker just before it kills itself on purpose.
    self_killed: AtomicU32,
    op_start: AtomicU64,
}

#[repr(C)]
struct Violation {
    what: AtomicU32,
    op: AtomicU32,
    worker: AtomicU32,
    _pad: AtomicU32,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    detail: AtomicU64,
}

#[repr(C)]
struct Arena {
    mutex: Mutex<[u64; 2]>,
    rw: RwLock<[u64; 2]>,
    rm: ReentrantMutex<[Value<u64>; 2]>,
    cv_mutex: Mutex<u64>,
    cv: Condvar,
    sem: Semaphore,
    bsem: BoundedSemaphore,
    event: Event,
    barrier: Barrier,
    queue: Queue<u64, 8>,
    seq: SeqLock<[u64; 4]>,
    counter: Counter,
    value: Value<u64>,
    /// 1: workers finish their current operation and exit.
    stop: AtomicU32,
    /// 1: a hostile process writes garbage: workers skip the exact checks.
    hostile: AtomicU32,
    next_incarnation: AtomicU32,
    _pad: AtomicU32,
    ops: AtomicU64,
    slots: [Slot; WORKERS],
    /// Per incarnation: items pushed and recorded (after the push).
    pushed: [AtomicU64; INCARNATIONS],
    pop_len: AtomicU64,
    pop_log: [AtomicU64; POP_LOG],
    n_violations: AtomicU64,
    violations: [Violation; MAX_VIOLATIONS],
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` primitives and atomics: all-zero is
// valid for each (fresh locks, empty queue, zero counters), every bit pattern is valid,
// no pointers, `Sync`.
unsafe impl SharedSized for Arena {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 40), Elem::NONE);
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes the `timespec` we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Arena {
    fn violation(&self, what: What, op: Op, worker: usize, start_ns: u64, detail: u64) {
        // Relaxed throughout the bookkeeping: each word is read by the parent only after
        // the writer exited or was reaped (which orders everything), or as a snapshot.
        let i = self.n_violations.fetch_add(1, Ordering::Relaxed) as usize;
        if let Some(v) = self.violations.get(i) {
            v.what.store(what as u32, Ordering::Relaxed);
            v.op.store(op as u32, Ordering::Relaxed);
            v.worker.store(worker as u32, Ordering::Relaxed);
            v.start_ns.store(start_ns, Ordering::Relaxed);
            v.end_ns.store(mono_ns(), Ordering::Relaxed);
            v.detail.store(detail, Ordering::Relaxed);
        }
    }

    fn is_hostile(&self) -> bool {
        // Relaxed: set before the workers are forked.
        self.hostile.load(Ordering::Relaxed) != 0
    }
}

// ----- workers -----

struct Worker<'a> {
    a: &'a Arena,
    arr: &'a SeqLockArray<u64>,
    /// Zeroed: no bounds, one owned stripe (and one shared), so that the workers contend
    /// for the one stripe: one owns it, the others share, a killed owner's is taken over.
    hist: &'a Histogram,
    slot: usize,
    inc: u32,
    seq: u32,
    rng: Rng,
}

impl Worker<'_> {
    fn s(&self) -> &Slot {
        &self.a.slots[self.slot]
    }

    /// Runs `f` as operation `op`: records it for the supervisor's hang check, and
    /// records an overrun of its bound unless this process was stopped meanwhile.
    fn run<R>(&mut self, op: Op, f: impl FnOnce(&mut Self) -> R) -> R {
        let s = self.s();
        // Relaxed: snapshots for the supervisor and for the comparison below.
        let gen0 = s.stop_gen.load(Ordering::Relaxed);
        let start = mono_ns();
        s.op_start.store(start, Ordering::Relaxed);
        s.op.store(op as u32, Ordering::Relaxed);
        let r = f(self);
        let end = mono_ns();
        let s = self.s();
        s.op.store(0, Ordering::Relaxed);
        let stopped = s.stop_gen.load(Ordering::Relaxed) != gen0 || gen0 % 2 == 1;
        let took = Duration::from_nanos(end.saturating_sub(start));
        let unbounded = op.class() == Class::Untimed
            || self.a.is_hostile() && op.class().unbounded_behind_hostile_bytes();
        if !unbounded && took > op.bound() && !stopped {
            self.a
                .violation(What::Overrun, op, self.slot, start, took.as_micros() as u64);
        }
        self.a.ops.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn check(&self, ok: bool, what: What, op: Op, detail: u64) {
        if !ok && !self.a.is_hostile() {
            self.a.violation(what, op, self.slot, mono_ns(), detail);
        }
    }

    /// A short critical section, so that kills and stops land inside some.
    fn dawdle(&mut self) {
        for _ in 0..self.rng.below(200) {
            std::hint::spin_loop();
        }
    }

    fn step(&mut self) {
        let a = self.a;
        let roll = self.rng.below(100);
        match roll {
            0..=9 => self.mutex_op(),
            10..=21 => self.rw_op(),
            22..=27 => self.rm_op(),
            28..=33 => self.cv_op(),
            34..=41 => self.sem_op(),
            42..=47 => self.event_op(),
            48..=51 => self.barrier_op(),
            52..=65 => self.queue_op(),
            66..=77 => self.seq_op(),
            78..=85 => self.array_op(),
            86..=90 => {
                self.run(Op::CounterInc, |_| a.counter.inc());
                // Recorded after the increment: a kill in between makes the counter one
                // ahead of the records, never behind.
                self.s().counted.fetch_add(1, Ordering::Relaxed);
            }
            91..=95 => {
                self.run(Op::ValueAdd, |_| a.value.fetch_add(1, Ordering::Relaxed));
                self.s().valued.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let hist = self.hist;
                self.run(Op::HistogramObserve, |_| {
                    for _ in 0..BURST {
                        hist.observe(1.0);
                    }
                });
                // As for the counter: a kill during the burst leaves up to a burst
                // counted and not recorded.
                self.s().observed.fetch_add(BURST, Ordering::Relaxed);
            }
        }
    }

    /// The pair protected by a lock: both halves move together; a consistent acquisition
    /// must find them equal.
    fn pair(&mut self, p: &mut [u64; 2], died: bool, what: What, op: Op) {
        if died {
            p[1] = p[0];
        } else {
            self.check(p[0] == p[1], what, op, p[0].wrapping_sub(p[1]));
        }
        p[0] = p[0].wrapping_add(1);
        self.dawdle();
        p[1] = p[1].wrapping_add(1);
    }

    fn mutex_op(&mut self) {
        let a = self.a;
        let op = *self.rng.pick(&[
            Op::MutexLockTimeout,
            Op::MutexLockTimeout,
            Op::MutexTryLock,
            Op::MutexLock,
        ]);
        let g = self.run(op, |_| match op {
            Op::MutexLockTimeout => match a.mutex.lock_timeout(T) {
                Ok(g) => Some((g, false)),
                Err(TimedLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                Err(TimedLockError::Timeout) => None,
            },
            Op::MutexTryLock => match a.mutex.try_lock() {
                Ok(g) => Some((g, false)),
                Err(TryLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                Err(TryLockError::WouldBlock) => None,
            },
            _ => Some(match a.mutex.lock() {
                Ok(g) => (g, false),
                Err(d) => (d.into_inner(), true),
            }),
        });
        if let Some((mut g, died)) = g {
            self.pair(&mut g, died, What::MutexPair, op);
            if died {
                g.mark_consistent();
            }
        }
    }

    fn rw_op(&mut self) {
        let a = self.a;
        let ops = [
            Op::RwReadTimeout,
            Op::RwReadTimeout,
            Op::RwTryRead,
            Op::RwRead,
            Op::RwWriteTimeout,
            Op::RwWriteTimeout,
            Op::RwTryWrite,
            Op::RwWrite,
        ];
        let op = *self.rng.pick(&ops);
        match op {
            Op::RwReadTimeout | Op::RwTryRead | Op::RwRead => {
                let g = self.run(op, |_| match op {
                    Op::RwReadTimeout => match a.rw.read_timeout(T) {
                        Ok(g) => Some((g, false)),
                        Err(TimedLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                        Err(TimedLockError::Timeout) => None,
                    },
                    Op::RwTryRead => match a.rw.try_read() {
                        Ok(g) => Some((g, false)),
                        Err(TryLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                        Err(TryLockError::WouldBlock) => None,
                    },
                    _ => Some(match a.rw.read() {
                        Ok(g) => (g, false),
                        Err(d) => (d.into_inner(), true),
                    }),
                });
                if let Some((g, died)) = g {
                    if !died {
                        self.check(g[0] == g[1], What::RwPair, op, g[0].wrapping_sub(g[1]));
                    }
                    self.dawdle();
                }
            }
            _ => {
                let g = self.run(op, |_| match op {
                    Op::RwWriteTimeout => match a.rw.write_timeout(T) {
                        Ok(g) => Some((g, false)),
                        Err(TimedLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                        Err(TimedLockError::Timeout) => None,
                    },
                    Op::RwTryWrite => match a.rw.try_write() {
                        Ok(g) => Some((g, false)),
                        Err(TryLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                        Err(TryLockError::WouldBlock) => None,
                    },
                    _ => Some(match a.rw.write() {
                        Ok(g) => (g, false),
                        Err(d) => (d.into_inner(), true),
                    }),
                });
                if let Some((mut g, died)) = g {
                    self.pair(&mut g, died, What::RwPair, op);
                    if died {
                        g.mark_consistent();
                    }
                }
            }
        }
    }

    fn rm_op(&mut self) {
        let a = self.a;
        let op = *self.rng.pick(&[
            Op::RmLockTimeout,
            Op::RmLockTimeout,
            Op::RmTryLock,
            Op::RmLock,
        ]);
        let g = self.run(op, |_| match op {
            Op::RmLockTimeout => match a.rm.lock_timeout(T) {
                Ok(g) => Some((g, false)),
                Err(TimedLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                Err(TimedLockError::Timeout) => None,
            },
            Op::RmTryLock => match a.rm.try_lock() {
                Ok(g) => Some((g, false)),
                Err(TryLockError::OwnerDied(d)) => Some((d.into_inner(), true)),
                Err(TryLockError::WouldBlock) => None,
            },
            _ => Some(match a.rm.lock() {
                Ok(g) => (g, false),
                Err(d) => (d.into_inner(), true),
            }),
        });
        if let Some((g, died)) = g {
            // Nested: the same thread locks again without waiting.
            let inner = match a.rm.lock() {
                Ok(g) => g,
                Err(d) => d.into_inner(),
            };
            // Relaxed: the lock orders the data; its exclusion is what `pair` checks.
            let mut p = [
                inner[0].load(Ordering::Relaxed),
                inner[1].load(Ordering::Relaxed),
            ];
            self.pair(&mut p, died, What::RmPair, op);
            inner[0].store(p[0], Ordering::Relaxed);
            inner[1].store(p[1], Ordering::Relaxed);
            if died {
                inner.mark_consistent();
            }
            drop(inner);
            drop(g);
        }
    }

    fn cv_op(&mut self) {
        let a = self.a;
        let g = self.run(Op::CvMutexLockTimeout, |_| {
            match a.cv_mutex.lock_timeout(T) {
                Ok(g) => Some(g),
                Err(TimedLockError::OwnerDied(d)) => {
                    let mut g = d.into_inner();
                    g.mark_consistent();
                    Some(g)
                }
                Err(TimedLockError::Timeout) => None,
            }
        });
        let Some(mut g) = g else { return };
        if self.rng.chance(50) {
            let start = *g;
            let r = self.run(Op::CvWaitTimeout, |_| {
                a.cv.wait_timeout_while(g, T, |v| *v == start)
            });
            if let Err(d) = r {
                d.into_inner().0.mark_consistent();
            }
        } else {
            *g = g.wrapping_add(1);
            let all = self.rng.chance(50);
            self.run(Op::CvNotify, |_| {
                if all {
                    a.cv.notify_all()
                } else {
                    a.cv.notify_one()
                }
            });
        }
    }

    fn sem_op(&mut self) {
        let a = self.a;
        let ops = [
            Op::SemAcquireTimeout,
            Op::SemTryAcquire,
            Op::SemAcquire,
            Op::BsemAcquireTimeout,
            Op::BsemTryAcquire,
        ];
        let op = *self.rng.pick(&ops);
        let got = self.run(op, |_| match op {
            Op::SemAcquireTimeout => a.sem.acquire_timeout(T).is_ok(),
            Op::SemTryAcquire => a.sem.try_acquire(),
            Op::SemAcquire => {
                a.sem.acquire();
                true
            }
            Op::BsemAcquireTimeout => a.bsem.acquire_timeout(T).is_ok(),
            _ => a.bsem.try_acquire(),
        });
        if got {
            self.dawdle();
            if matches!(op, Op::BsemAcquireTimeout | Op::BsemTryAcquire) {
                let _ = self.run(Op::BsemRelease, |_| a.bsem.release());
            } else {
                let _ = self.run(Op::SemRelease, |_| a.sem.release());
            }
        }
    }

    fn event_op(&mut self) {
        let a = self.a;
        match self.rng.below(10) {
            0..=2 => self.run(Op::EventSet, |_| a.event.set()),
            3..=4 => self.run(Op::EventClear, |_| a.event.clear()),
            5..=8 => {
                let _ = self.run(Op::EventWaitTimeout, |_| a.event.wait_timeout(T));
            }
            _ => self.run(Op::EventWait, |_| a.event.wait()),
        }
    }

    fn barrier_op(&mut self) {
        let a = self.a;
        if a.barrier.is_broken() || self.rng.chance(5) {
            self.run(Op::BarrierReset, |_| a.barrier.reset());
        } else {
            let _ = self.run(Op::BarrierWaitTimeout, |_| a.barrier.wait_timeout(T));
        }
    }

    fn queue_op(&mut self) {
        let a = self.a;
        if self.rng.chance(10) {
            // A slow queue operation: the queue's own lock held for a few milliseconds
            // (through the hook for tests of owner death), so that stops and kills land
            // while a queue operation holds it. Dropped `OwnerDied` is left for the queue's
            // next operation to repair, as a real operation would have.
            // The whole hold is one operation, so that the supervisor sees it and aims
            // some of its stops at it.
            let raw = a.queue.raw_lock();
            let hold = self.rng.millis(2, 30);
            self.run(Op::QueueHoldLock, |_| {
                if raw.lock_timeout(T).is_some() {
                    std::thread::sleep(hold);
                    // SAFETY: this thread took the lock just above and has not released it.
                    unsafe { raw.unlock() };
                }
            });
            return;
        }
        let op = *self.rng.pick(&[
            Op::QueuePushTimeout,
            Op::QueuePopTimeout,
            Op::QueueTryPush,
            Op::QueueTryPop,
        ]);
        match op {
            Op::QueuePushTimeout | Op::QueueTryPush => {
                if (self.inc as usize) >= INCARNATIONS {
                    return;
                }
                let item = (u64::from(self.inc) << 32) | u64::from(self.seq + 1);
                let ok = self.run(op, |_| match op {
                    Op::QueuePushTimeout => a.queue.push_timeout(item, T).is_ok(),
                    _ => a.queue.try_push(item).is_ok(),
                });
                if ok {
                    self.seq += 1;
                    // After the push: a kill in between leaves one item more than recorded.
                    a.pushed[self.inc as usize].store(u64::from(self.seq), Ordering::Relaxed);
                }
            }
            _ => {
                let item = self.run(op, |_| match op {
                    Op::QueuePopTimeout => a.queue.pop_timeout(T).ok(),
                    _ => a.queue.try_pop(),
                });
                if let Some(item) = item
                    && !a.is_hostile()
                {
                    let i = a.pop_len.fetch_add(1, Ordering::Relaxed) as usize;
                    if let Some(e) = a.pop_log.get(i) {
                        e.store(item, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn seq_op(&mut self) {
        let a = self.a;
        let torn = |v: &[u64; 4]| v.iter().any(|&w| w != v[0]);
        match self.rng.below(100) {
            0..=29 => {
                if let Ok(v) = self.run(Op::SeqReadTimeout, |_| a.seq.read_timeout(T)) {
                    self.check(!torn(&v), What::SeqTorn, Op::SeqReadTimeout, v[0] ^ v[3]);
                }
            }
            30..=49 => {
                if let Ok(v) = self.run(Op::SeqTryRead, |_| a.seq.try_read()) {
                    self.check(!torn(&v), What::SeqTorn, Op::SeqTryRead, v[0] ^ v[3]);
                }
            }
            50..=64 => {
                let g = self.run(Op::SeqLockTimeout, |_| match a.seq.lock_timeout(T) {
                    Ok(g) => Some(g),
                    Err(TimedLockError::OwnerDied(torn)) => {
                        // A writer died mid-write: start again from a whole value.
                        let mut g = torn.into_inner();
                        *g = [g[0]; 4];
                        g.mark_consistent();
                        Some(g)
                    }
                    Err(TimedLockError::Timeout) => None,
                });
                if let Some(mut g) = g {
                    let n = g[0].wrapping_add(1);
                    *g = [n; 4];
                    self.dawdle();
                }
            }
            65..=79 => {
                let n = self.rng.next_u64();
                self.run(Op::SeqWrite, |_| a.seq.write([n; 4]));
            }
            80..=98 => {
                let repair = self.rng.chance(50);
                self.run(Op::SeqUpdate, |_| {
                    let r = a.seq.update(|v| {
                        for w in v.iter_mut() {
                            *w = w.wrapping_add(1);
                        }
                    });
                    // Torn: `f` did not run. Repair it, or leave it torn (readers must
                    // then report the dead writer, never return the torn value).
                    if let Err(torn) = r
                        && repair
                    {
                        let mut g = torn.into_inner();
                        *g = [g[3]; 4];
                        g.mark_consistent();
                    }
                })
            }
            _ => {
                // Rarely: die in the middle of a write, as a SIGKILL between the two
                // sequence stores would leave it (the window is too short to hit by
                // chance): the next writer takes over a torn value.
                if self.rng.chance(20) {
                    self.s().self_killed.store(1, Ordering::Relaxed);
                    let half = self.rng.next_u64();
                    self.run(Op::SeqDieMidWrite, |_| {
                        a.seq.begin_write_for_test([half, half, !half, !half])
                    });
                    // SAFETY: kills this process, on purpose.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                    park_forever();
                }
            }
        }
    }

    fn array_op(&mut self) {
        let (a, arr) = (self.a, self.arr);
        let mut out = [0u64; ARRAY_LEN];
        let sum = |v: &[u64]| v.iter().fold(0u64, |s, &x| s.wrapping_add(x));
        match self.rng.below(3) {
            0 => {
                if self
                    .run(Op::ArrSnapshotTimeout, |_| {
                        arr.snapshot_timeout(&mut out, T)
                    })
                    .is_ok()
                {
                    let s = sum(&out);
                    self.check(s == ARRAY_TOTAL, What::ArraySum, Op::ArrSnapshotTimeout, s);
                }
            }
            1 => {
                if self
                    .run(Op::ArrTrySnapshot, |_| arr.try_snapshot(&mut out))
                    .is_ok()
                {
                    let s = sum(&out);
                    self.check(s == ARRAY_TOTAL, What::ArraySum, Op::ArrTrySnapshot, s);
                }
            }
            _ => {
                let (from, to) = (self.rng.below(4) as usize, self.rng.below(4) as usize);
                let amount = self.rng.below(1000);
                let hostile = a.is_hostile();
                let _ = self.run(Op::ArrBatchTimeout, |_| {
                    let transfer = |v: &mut [u64], torn: bool| {
                        if torn || (!hostile && sum(v) != ARRAY_TOTAL) {
                            // A batch writer died part-way: start again from a known sum.
                            v.fill(0);
                            v[0] = ARRAY_TOTAL;
                        }
                        let x = amount.min(v[from]);
                        v[from] -= x;
                        v[to] = v[to].wrapping_add(x);
                    };
                    match arr.write_batch_timeout(T, |v| transfer(v, false)) {
                        Err(TimedLockError::OwnerDied(torn)) => {
                            let mut batch = torn.into_inner();
                            transfer(&mut batch, true);
                            batch.mark_consistent();
                            Ok(())
                        }
                        r => r,
                    }
                });
            }
        }
    }
}

fn worker_main(a: &Arena, arr: &SeqLockArray<u64>, hist: &Histogram, slot: usize, seed: u64) {
    let inc = a.next_incarnation.fetch_add(1, Ordering::Relaxed) + 1;
    let mut w = Worker {
        a,
        arr,
        hist,
        slot,
        inc,
        seq: 0,
        rng: Rng::new(seed ^ (u64::from(inc) << 32)),
    };
    let mut n = 0u64;
    // Relaxed: a stop flag; the parent reaps us before it reads anything.
    while a.stop.load(Ordering::Relaxed) == 0 {
        w.step();
        n += 1;
        if n.is_multiple_of(16) {
            // Pace: leave the CPU to the others now and then (2 cores, many processes).
            std::thread::sleep(Duration::from_micros(w.rng.below(500)));
        }
    }
}

// ----- the supervisor -----

struct Sup<'a> {
    a: &'a Arena,
    arr: &'a SeqLockArray<u64>,
    hist: &'a Histogram,
    seed: u64,
    pids: Vec<libc::pid_t>,
    /// When each stopped worker is to be continued.
    stopped: Vec<Option<Instant>>,
    /// Workers whose current hang has been recorded (pid, op start).
    hang_seen: HashSet<(libc::pid_t, u64)>,
    /// With a hostile peer: untimed calls recycled after waiting past `HUNG`.
    untimed_blocked: u32,
    kills: u64,
    stops: u64,
    respawns: u64,
    crashes: Vec<String>,
    /// (start, end) `CLOCK_MONOTONIC` ns of supervisor stalls.
    stalls: Vec<(u64, u64)>,
}

impl<'a> Sup<'a> {
    fn spawn(&mut self, slot: usize) -> libc::pid_t {
        let (a, arr, hist, seed) = (self.a, self.arr, self.hist, self.seed);
        self.a.slots[slot].self_killed.store(0, Ordering::Relaxed);
        self.a.slots[slot].op.store(0, Ordering::Relaxed);
        fork_children(1, |_| worker_main(a, arr, hist, slot, seed))[0]
    }

    fn continue_worker(&mut self, i: usize) {
        if self.stopped[i].take().is_some() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pids[i], libc::SIGCONT) };
            self.a.slots[i].stop_gen.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stop_worker(&mut self, i: usize, d: Duration) {
        self.a.slots[i].stop_gen.fetch_add(1, Ordering::Relaxed);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pids[i], libc::SIGSTOP) };
        self.stopped[i] = Some(Instant::now() + d);
        self.stops += 1;
    }

    fn kill_and_respawn(&mut self, i: usize) {
        let pid = self.pids[i];
        // SAFETY: killing and reaping our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if self.stopped[i].take().is_some() {
            self.a.slots[i].stop_gen.fetch_add(1, Ordering::Relaxed);
        }
        self.kills += 1;
        self.respawns += 1;
        self.pids[i] = self.spawn(i);
    }

    /// Reaps workers that exited on their own: a self-kill (on purpose) is respawned; any
    /// other exit before the stop is a crash.
    fn reap_exits(&mut self) {
        for i in 0..self.pids.len() {
            let mut status = 0;
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(self.pids[i], &mut status, libc::WNOHANG) };
            if r != self.pids[i] {
                continue;
            }
            let on_purpose = libc::WIFSIGNALED(status)
                && libc::WTERMSIG(status) == libc::SIGKILL
                && self.a.slots[i].self_killed.load(Ordering::Relaxed) == 1;
            if on_purpose {
                self.kills += 1;
            } else {
                self.crashes.push(format!(
                    "worker {i} (pid {}) exited on its own: {}",
                    self.pids[i],
                    describe_status(status)
                ));
            }
            self.stopped[i] = None;
            self.respawns += 1;
            self.pids[i] = self.spawn(i);
        }
    }

    /// Records (once) a worker whose untimed call has run past `HUNG` while it was not
    /// stopped; a stuck timed call past its bound likewise. Kills and replaces it so the
    /// run goes on.
    fn check_hangs(&mut self) {
        let now = mono_ns();
        for i in 0..self.pids.len() {
            let s = &self.a.slots[i];
            let op = Op::from_u32(s.op.load(Ordering::Relaxed));
            let start = s.op_start.load(Ordering::Relaxed);
            if op == Op::Idle || self.stopped[i].is_some() {
                continue;
            }
            let limit = op.bound().max(HUNG) + MAX_STOP;
            let ran = Duration::from_nanos(now.saturating_sub(start));
            if op != Op::SeqDieMidWrite
                && ran > limit
                && self.hang_seen.insert((self.pids[i], start))
            {
                // With a hostile peer, an untimed call may wait for good on a word that
                // peer made name a live holder (its own pid, or any live process: a pid it
                // writes may be reused) or a read count no one holds: only timed calls are
                // bounded then (the lock module docs). Recycle it.
                if self.a.is_hostile() && op.class().unbounded_behind_hostile_bytes() {
                    self.untimed_blocked += 1;
                } else {
                    self.a
                        .violation(What::Hung, op, i, start, ran.as_micros() as u64);
                }
                self.kill_and_respawn(i);
            }
        }
    }

    /// One supervisor run of `run` length: random kills, stops and continues.
    fn run(&mut self, run: Duration) {
        let mut rng = Rng::new(self.seed ^ 0x5EED);
        let start = Instant::now();
        let mut last = mono_ns();
        while start.elapsed() < run {
            let nap = rng.millis(5, 30);
            std::thread::sleep(nap);
            let now = mono_ns();
            let gap = now - last;
            if gap > nap.as_nanos() as u64 + 250_000_000 {
                self.stalls.push((last, now));
            }
            last = now;
            for i in 0..self.pids.len() {
                if self.stopped[i].is_some_and(|t| Instant::now() >= t) {
                    self.continue_worker(i);
                }
            }
            self.reap_exits();
            self.check_hangs();
            // Now and then a long stop of a worker holding the queue's lock: the queue's
            // calls in the other workers must not wait for it.
            let holder = (0..self.pids.len()).find(|&h| {
                self.a.slots[h].op.load(Ordering::Relaxed) == Op::QueueHoldLock as u32
                    && self.stopped[h].is_none()
            });
            if let Some(h) = holder
                && rng.chance(20)
                && self.stopped.iter().all(Option::is_none)
            {
                let d = rng.millis(3500, MAX_STOP.as_millis() as u64);
                self.stop_worker(h, d);
                continue;
            }
            let i = rng.below(self.pids.len() as u64) as usize;
            match rng.below(100) {
                0..=7 => self.kill_and_respawn(i),
                8..=13
                    if self.stopped[i].is_none()
                        && self.stopped.iter().filter(|s| s.is_some()).count() < 2 =>
                {
                    let d = if rng.chance(75) {
                        rng.millis(20, 300)
                    } else {
                        rng.millis(3500, MAX_STOP.as_millis() as u64)
                    };
                    self.stop_worker(i, d);
                }
                14..=16 => {
                    // Keep permits around: killed holders take theirs with them.
                    if self.a.sem.value() < 2 {
                        let _ = self.a.sem.release();
                    }
                    let _ = self.a.bsem.release();
                }
                _ => {}
            }
        }
    }

    /// Stops the run: every worker finishes its call and exits. Waiters of untimed calls
    /// are released (event set, permits, the barrier aborted). Returns the workers that
    /// did not exit (then killed), with their current operation.
    fn quiesce(&mut self) -> Vec<(usize, Op, Duration)> {
        self.a.stop.store(1, Ordering::Relaxed);
        for i in 0..self.pids.len() {
            self.continue_worker(i);
        }
        let deadline = Instant::now() + HUNG + TIMED_BOUND;
        let mut left: Vec<usize> = (0..self.pids.len()).collect();
        while !left.is_empty() && Instant::now() < deadline {
            self.a.event.set();
            let _ = self.a.sem.release_n(WORKERS as u32);
            self.a.barrier.abort();
            left.retain(|&i| {
                let mut status = 0;
                // SAFETY: plain waitpid on our own child.
                let r = unsafe { libc::waitpid(self.pids[i], &mut status, libc::WNOHANG) };
                if r != self.pids[i] {
                    return true;
                }
                let on_purpose = libc::WIFSIGNALED(status)
                    && libc::WTERMSIG(status) == libc::SIGKILL
                    && self.a.slots[i].self_killed.load(Ordering::Relaxed) == 1;
                if !(on_purpose || libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    self.crashes.push(format!(
                        "worker {i} (pid {}) exited: {}",
                        self.pids[i],
                        describe_status(status)
                    ));
                }
                false
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = mono_ns();
        let stuck = left
            .iter()
            .map(|&i| {
                let s = &self.a.slots[i];
                let op = Op::from_u32(s.op.load(Ordering::Relaxed));
                let ran =
                    Duration::from_nanos(now.saturating_sub(s.op_start.load(Ordering::Relaxed)));
                (i, op, ran)
            })
            .collect();
        for &i in &left {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(self.pids[i], libc::SIGKILL);
                libc::waitpid(self.pids[i], std::ptr::null_mut(), 0);
            }
        }
        stuck
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// The hostile process: writes garbage into the primitives' state words until the stop.
fn hostile_main(a: &Arena, words: &[&AtomicU32], seed: u64, dead: u32) {
    let mut rng = Rng::new(seed ^ 0xBAD);
    // SAFETY: `getpid` has no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    // Relaxed: as in `worker_main`.
    while a.stop.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(rng.millis(1, 15));
        let w = *rng.pick(words);
        let flags = [0, 1 << 31, 1 << 30, 1 << 27, 1 << 28, 3, u32::MAX << 24];
        let v = match rng.below(100) {
            0..=24 => rng.next_u32(),
            25..=39 => u32::MAX,
            40..=64 => me | rng.pick(&flags),
            65..=79 => dead | rng.pick(&flags),
            _ => 0,
        };
        // Relaxed: hostile bytes, ordered with nothing.
        w.store(v, Ordering::Relaxed);
    }
}

/// Every state word of the arena's primitives and of the array, by their documented
/// `#[repr(C)]` layouts.
fn state_words<'a>(
    a: &'a Arena,
    arr: &'a SeqLockArray<u64>,
    hist: &'a Histogram,
) -> Vec<&'a AtomicU32> {
    /// # Safety
    /// `obj` is `#[repr(C)]` with an `AtomicU32` at `offset`.
    unsafe fn at<T: ?Sized>(obj: &T, offset: usize) -> &AtomicU32 {
        // SAFETY: by the caller's contract: an aligned atomic field of `obj`.
        unsafe {
            &*(obj as *const T)
                .cast::<u8>()
                .add(offset)
                .cast::<AtomicU32>()
        }
    }
    let mut w: Vec<&AtomicU32> = vec![
        a.mutex.raw().word(),
        a.rw.raw().state(),
        a.cv_mutex.raw().word(),
        a.cv.words().0,
        a.sem.words().0,
        a.sem.words().1,
        a.bsem.words().0,
        a.bsem.words().1,
        a.bsem.words().2,
        a.event.word(),
        a.barrier.words().0,
        a.barrier.words().1,
    ];
    w.extend(a.rw.raw().reader_slots());
    // SAFETY: the layouts their docs give: RawRwLock's writer-notify counter at 4; the
    // ReentrantMutex's lock word at 0 and depth at 4; the Queue's lock word, head and tail
    // at 0, 4, 8 and its condvars' words at 12 and 20; a SeqLock's sequence and writer
    // words at 0 and 4; a Histogram of 3 lines is 24 8-byte atomic words (`hist_mem`),
    // whose 4-byte halves are aligned.
    unsafe {
        w.push(at(a.rw.raw(), 4));
        w.push(at(&a.rm, 0));
        w.push(at(&a.rm, 4));
        for o in [0, 4, 8, 12, 20] {
            w.push(at(&a.queue, o));
        }
        w.push(at(&a.seq, 0));
        w.push(at(&a.seq, 4));
        for k in 0..arr.len().div_ceil(SeqLockArray::<u64>::STRIPE_LEN) {
            let [seq, writer, dirty] = arr.stripe_words_for_test(k);
            w.extend([seq, writer, dirty]);
        }
        // The histogram's header (bound count and stripe mask) and its stripes' owner
        // words, counts and sums: each 8-byte word as its two halves (its 3 lines are the
        // header and one stripe of each kind).
        for o in (0..3 * 64).step_by(4) {
            w.push(at(hist, o));
        }
    }
    w
}

fn op_name(op: Op) -> String {
    format!("{op:?}")
}

fn run_secs(default: u64) -> Duration {
    let secs = std::env::var("SHMSTATE_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// The whole chaos run; `hostile` adds the garbage writer and skips the exact checks.
fn chaos(test: &'static str, run: Duration, hostile: bool) {
    let _serial = Exclusive::take();
    watchdog(run + Duration::from_secs(90));
    let seed = hostile::seed(test);
    let mem = SharedMem::<Arena>::new(1);
    let arr_mem = SharedMem::<SeqLockArray<u64>>::new(ARRAY_LEN);
    // Three lines of zeros: the header, one owned stripe, one shared stripe.
    let hist_mem = SharedMem::<Histogram>::new(3);
    let (a, arr, hist) = (mem.get(), arr_mem.get(), hist_mem.get());
    a.sem.release_n(2).unwrap();
    a.bsem.init(2);
    a.barrier.init(2);
    arr.set_all(&[ARRAY_TOTAL, 0, 0, 0]);
    a.hostile.store(hostile as u32, Ordering::Relaxed);

    let mut sup = Sup {
        a,
        arr,
        hist,
        seed,
        pids: Vec::new(),
        stopped: vec![None; WORKERS],
        hang_seen: HashSet::new(),
        untimed_blocked: 0,
        kills: 0,
        stops: 0,
        respawns: 0,
        crashes: Vec::new(),
        stalls: Vec::new(),
    };
    for i in 0..WORKERS {
        let pid = sup.spawn(i);
        sup.pids.push(pid);
    }
    let hostile_pid = hostile.then(|| {
        let words = state_words(a, arr, hist);
        let dead = hostile::dead_pid();
        fork_children(1, |_| hostile_main(a, &words, seed, dead))[0]
    });

    let t0 = Instant::now();
    sup.run(run);
    let stuck = sup.quiesce();
    if let Some(pid) = hostile_pid {
        common::wait_all(&[pid], Duration::from_secs(10));
    }
    let elapsed = t0.elapsed();

    let mut f = Failures::default();
    // Crashes and panics: never acceptable.
    for c in &sup.crashes {
        f.add(c.clone());
    }
    for (i, op, ran) in &stuck {
        let what = format!(
            "worker {i} did not finish {} at the stop (running for {ran:?})",
            op_name(*op)
        );
        // As in `check_hangs`: with a hostile peer, untimed calls are not bounded.
        if hostile && op.class().unbounded_behind_hostile_bytes() {
            eprintln!(
                "{test}: {what} (untimed, behind hostile bytes: allowed; rwlock state {:#x}, slots {:?})",
                a.rw.raw().state().load(Ordering::Relaxed),
                a.rw.raw()
                    .reader_slots()
                    .iter()
                    .map(|s| s.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            );
        } else {
            f.add(what);
        }
    }
    if hostile {
        eprintln!(
            "{test}: {} untimed calls recycled after waiting past {HUNG:?} behind hostile bytes",
            sup.untimed_blocked
        );
    }

    // Violations the workers and the supervisor recorded.
    let n = (a.n_violations.load(Ordering::Relaxed) as usize).min(MAX_VIOLATIONS);
    let mut discounted = 0;
    for v in &a.violations[..n] {
        let what = v.what.load(Ordering::Relaxed);
        let op = Op::from_u32(v.op.load(Ordering::Relaxed));
        let (start, end) = (
            v.start_ns.load(Ordering::Relaxed),
            v.end_ns.load(Ordering::Relaxed),
        );
        let detail = v.detail.load(Ordering::Relaxed);
        let worker = v.worker.load(Ordering::Relaxed);
        let msg = match what {
            x if x == What::Overrun as u32 || x == What::Hung as u32 => {
                let stalled = sup.stalls.iter().any(|&(s, e)| s < end && e > start);
                if stalled {
                    discounted += 1;
                    eprintln!(
                        "{test}: overrun of {} by worker {worker} ({detail} µs) overlaps a stall of the machine: not counted",
                        op_name(op)
                    );
                    continue;
                }
                let kind = if x == What::Hung as u32 {
                    "hung"
                } else {
                    "overran"
                };
                format!(
                    "worker {worker}: {} {kind}: {:?} (bound {:?})",
                    op_name(op),
                    Duration::from_micros(detail),
                    op.bound()
                )
            }
            x if x == What::SeqTorn as u32 => format!(
                "worker {worker}: {} returned a torn value (word 0 ^ word 3 = {detail:#x})",
                op_name(op)
            ),
            x if x == What::ArraySum as u32 => format!(
                "worker {worker}: {} saw a sum of {detail}, not {ARRAY_TOTAL}",
                op_name(op)
            ),
            _ => format!(
                "worker {worker}: {} found the protected pair differing by {detail:#x} without OwnerDied",
                op_name(op)
            ),
        };
        f.add(msg);
    }
    if a.n_violations.load(Ordering::Relaxed) as usize > MAX_VIOLATIONS {
        eprintln!("{test}: more violations than recorded ({MAX_VIOLATIONS} kept)");
    }

    // After the stop: every lock can be taken within a bound (OwnerDied is fine), and the
    // exact invariants hold.
    let limit = Duration::from_secs(2);
    // With a hostile peer the locks may hold garbage that names a live holder (or a reader
    // count that names nobody): then only the calls' bounds are checked.
    let timed = |what: &str, f: &mut Failures, ok: bool, t: Instant| {
        let took = t.elapsed();
        if !ok && !hostile {
            f.add(format!("after the stop: {what} failed within {limit:?}"));
        } else if took > limit + TIMED_BOUND {
            f.add(format!("after the stop: {what} took {took:?}"));
        }
    };
    let t = Instant::now();
    let m = match a.mutex.lock_timeout(limit) {
        Ok(g) => Some((*g, false)),
        Err(TimedLockError::OwnerDied(d)) => Some((*d.into_inner(), true)),
        Err(TimedLockError::Timeout) => None,
    };
    timed("Mutex::lock_timeout", &mut f, m.is_some(), t);
    if let Some((p, false)) = m
        && !hostile
        && p[0] != p[1]
    {
        f.add(format!(
            "after the stop: the mutex pair is {p:?} without OwnerDied"
        ));
    }
    let t = Instant::now();
    let r = a.rw.write_timeout(limit);
    let rw_state = a.rw.raw().state().load(Ordering::Relaxed);
    timed(
        &format!("RwLock::write_timeout (state before: {rw_state:#x})"),
        &mut f,
        !matches!(r, Err(TimedLockError::Timeout)),
        t,
    );
    drop(r);
    let t = Instant::now();
    let rw_state = a.rw.raw().state().load(Ordering::Relaxed);
    let r = a.rw.read_timeout(limit);
    timed(
        &format!("RwLock::read_timeout (state before: {rw_state:#x})"),
        &mut f,
        !matches!(r, Err(TimedLockError::Timeout)),
        t,
    );
    drop(r);
    let t = Instant::now();
    let r = a.rm.lock_timeout(limit);
    timed(
        "ReentrantMutex::lock_timeout",
        &mut f,
        !matches!(r, Err(TimedLockError::Timeout)),
        t,
    );
    drop(r);
    let t = Instant::now();
    let r = a.cv_mutex.lock_timeout(limit);
    timed(
        "Condvar's Mutex::lock_timeout",
        &mut f,
        !matches!(r, Err(TimedLockError::Timeout)),
        t,
    );
    drop(r);
    if !hostile {
        // A value left torn (a writer died mid-write and nobody repaired it) is reported
        // as such; a value read must be whole.
        match a.seq.read_timeout(limit) {
            Ok(v) if v.iter().any(|&w| w != v[0]) => f.add(format!(
                "after the stop: the seqlock holds a torn value {v:x?}"
            )),
            Ok(_) | Err(shmstate::SeqLockError::WriterDied) => {}
            Err(e) => f.add(format!("after the stop: SeqLock::read_timeout: {e}")),
        }
    }
    let t = Instant::now();
    let r = a.seq.lock_timeout(limit);
    timed(
        "SeqLock::lock_timeout",
        &mut f,
        !matches!(r, Err(TimedLockError::Timeout)),
        t,
    );
    drop(r);
    let t = Instant::now();
    let r = arr.write_batch_timeout(limit, |_| ());
    timed("SeqLockArray::write_batch_timeout", &mut f, r.is_ok(), t);
    if !hostile {
        let mut out = [0u64; ARRAY_LEN];
        match arr.snapshot_timeout(&mut out, limit) {
            Ok(()) if out.iter().sum::<u64>() != ARRAY_TOTAL => f.add(format!(
                "after the stop: the array sums to {}",
                out.iter().sum::<u64>()
            )),
            Ok(()) => {}
            Err(e) => f.add(format!(
                "after the stop: SeqLockArray::snapshot_timeout: {e}"
            )),
        }
    }

    // Drain the queue (each pop bounded) and check the items.
    let mut drained = Vec::new();
    let t = Instant::now();
    while drained.len() <= 8 {
        match a.queue.pop_timeout(Duration::from_millis(50)) {
            Ok(item) => drained.push(item),
            Err(Timeout) => break,
        }
    }
    timed("draining the queue", &mut f, true, t);
    let kills = sup.kills;
    let ops = a.ops.load(Ordering::Relaxed);
    if !hostile {
        let logged = (a.pop_len.load(Ordering::Relaxed) as usize).min(POP_LOG);
        let mut seen = HashSet::new();
        let mut popped = 0;
        for item in a.pop_log[..logged]
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .filter(|&i| i != 0)
            .chain(drained.iter().copied())
        {
            popped += 1;
            if !seen.insert(item) {
                f.add(format!("queue item {item:#x} was popped twice"));
            }
            let (inc, seq) = ((item >> 32) as usize, item & 0xFFFF_FFFF);
            let pushed = a.pushed.get(inc).map(|p| p.load(Ordering::Relaxed));
            if seq == 0 || pushed.is_none_or(|p| seq > p + 1) {
                f.add(format!(
                    "queue item {item:#x} was never pushed (pushed: {pushed:?})"
                ));
            }
        }
        // The counters: every recorded increment is there; at most one per kill more.
        let counted: u64 = a
            .slots
            .iter()
            .map(|s| s.counted.load(Ordering::Relaxed))
            .sum();
        let valued: u64 = a
            .slots
            .iter()
            .map(|s| s.valued.load(Ordering::Relaxed))
            .sum();
        let c = a.counter.get();
        let v = a.value.load(Ordering::Relaxed);
        if c < counted || c > counted + kills {
            f.add(format!(
                "Counter is {c}; recorded increments {counted}, kills {kills}"
            ));
        }
        if v < valued || v > valued + kills {
            f.add(format!(
                "Value is {v}; recorded additions {valued}, kills {kills}"
            ));
        }
        // The histogram likewise, for its count and its sum (every value 1.0), but a burst
        // per kill: a stopped or killed owner, the shared stripe and the takeovers lose no
        // recorded observation, and two writers of one stripe would.
        let observed: u64 = a
            .slots
            .iter()
            .map(|s| s.observed.load(Ordering::Relaxed))
            .sum();
        let hs = hist.snapshot();
        if hs.count < observed
            || hs.count > observed + BURST * kills
            || hs.sum < observed as f64
            || hs.sum > (observed + BURST * kills) as f64
        {
            f.add(format!(
                "Histogram count {} and sum {}; recorded observations {observed}, kills {kills}",
                hs.count, hs.sum
            ));
        }
        eprintln!(
            "{test}: {popped} queue items popped, counter {c} (recorded {counted}), value {v} (recorded {valued}), histogram {} (recorded {observed})",
            hs.count
        );
    }
    eprintln!(
        "{test}: {elapsed:?}, {ops} operations, {kills} kills, {} stops, {} respawns, {} violations ({discounted} during machine stalls), {} stalls",
        sup.stops,
        sup.respawns,
        a.n_violations.load(Ordering::Relaxed),
        sup.stalls.len()
    );
    f.finish(test);
}

#[test]
fn chaos_of_kills_and_stops_breaks_no_invariant_and_no_bound() {
    chaos("chaos", run_secs(25), false);
}

#[test]
fn chaos_with_a_hostile_peer_crashes_no_worker_and_breaks_no_bound() {
    chaos("chaos_hostile", run_secs(20), true);
}

// ----- recovery latency -----

#[repr(C)]
struct Latency {
    m: Mutex<u64>,
    rw: RwLock<u64>,
    seq: SeqLock<[u64; 2]>,
    held: AtomicU32,
}

// SAFETY: a `#[repr(C)]` composition of `SharedSized` primitives and an atomic: all-zero
// valid, any bytes valid, no pointers, Sync.
unsafe impl SharedSized for Latency {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 41), Elem::NONE);
}

/// Takes a lock in a child and leaves it held.
type Hold = dyn Fn(&Latency);
/// Takes the lock in the parent (within a limit); whether it did.
type Acquire = dyn Fn(&Latency) -> bool + Sync;

#[test]
fn recovery_latency_after_a_holder_is_killed() {
    let _serial = Exclusive::take();
    watchdog(Duration::from_secs(120));
    const ROUNDS: u32 = 50;
    let mem = SharedMem::<Latency>::new(1);
    let l = mem.get();
    const LIMIT: Duration = Duration::from_secs(5);
    let limit = LIMIT;
    let kinds: [(&str, &Hold, &Acquire); 4] = [
        (
            "Mutex (holder killed)",
            &|l| std::mem::forget(l.m.lock()),
            &|l| !matches!(l.m.lock_timeout(LIMIT), Err(TimedLockError::Timeout)),
        ),
        (
            "RwLock write (writer killed)",
            &|l| std::mem::forget(l.rw.write()),
            &|l| !matches!(l.rw.write_timeout(LIMIT), Err(TimedLockError::Timeout)),
        ),
        (
            "RwLock write (reader killed)",
            &|l| std::mem::forget(l.rw.read()),
            &|l| !matches!(l.rw.write_timeout(LIMIT), Err(TimedLockError::Timeout)),
        ),
        (
            "SeqLock write (writer killed mid-write)",
            &|l| l.seq.begin_write_for_test([1, 2]),
            &|l| !matches!(l.seq.lock_timeout(LIMIT), Err(TimedLockError::Timeout)),
        ),
    ];
    let mut failures = Vec::new();
    let mut flag = 0;
    for (name, hold, acquire) in kinds {
        let mut samples = Vec::new();
        for round in 1..=ROUNDS {
            flag += 1;
            let pid = fork_children(1, |_| {
                hold(l);
                raise(&l.held, flag);
                park_forever();
            })[0];
            wait_for(&l.held, flag, Duration::from_secs(20));
            // Odd rounds: a thread already waits when the holder dies; even: it comes after.
            let (t_kill, got) = if round % 2 == 1 {
                std::thread::scope(|s| {
                    let waiter = s.spawn(|| {
                        let ok = acquire(l);
                        (Instant::now(), ok)
                    });
                    // Most likely lets the waiter reach its wait first (either order is a
                    // valid round: this only shifts the mix).
                    std::thread::sleep(Duration::from_millis(2));
                    let t_kill = Instant::now();
                    locks_support::kill(pid);
                    (t_kill, waiter.join().unwrap())
                })
            } else {
                let t_kill = Instant::now();
                locks_support::kill(pid);
                let ok = acquire(l);
                (t_kill, (Instant::now(), ok))
            };
            locks_support::reap(pid);
            if !got.1 {
                failures.push(format!(
                    "{name}: round {round}: not acquired within {limit:?}"
                ));
                continue;
            }
            samples.push(got.0.saturating_duration_since(t_kill));
            // Leave the lock free (and consistent) for the next round.
            match name {
                n if n.starts_with("Mutex") => {
                    if let Err(d) = l.m.lock() {
                        d.into_inner().mark_consistent();
                    }
                }
                n if n.starts_with("RwLock") => {
                    if let Err(d) = l.rw.write() {
                        d.into_inner().mark_consistent();
                    }
                }
                _ => l.seq.write([0, 0]),
            }
        }
        if !samples.is_empty() {
            let (median, p99, max) = percentiles(&mut samples);
            eprintln!(
                "recovery latency, {name}: {} rounds, SIGKILL -> next acquisition: median {median:?}, p99 {p99:?}, max {max:?}",
                samples.len()
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
