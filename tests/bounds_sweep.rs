//! Every `try_*` and timed call of every primitive returns within a small multiple of its
//! bound, never panics and never hangs, whatever bytes its state words hold: zero, all
//! ones, the id of a live, stopped, dead or the calling thread with flag bits, counts
//! and ids above anything valid. And the timed waits keep their deadline while a peer
//! calls `FUTEX_WAKE` on their words in a loop.
//!
//! Each case builds a fresh object, writes the garbage and makes one call, on a thread of
//! its own: a call still running long after its bound is reported as hung (then the words
//! are zeroed, which lets most such calls return) instead of hanging the test. A call that
//! overruns its bound or hangs is run again (up to three runs) before it counts, so a
//! scheduling stall of a busy machine is not reported as a bug; a real one repeats, since
//! the bytes are the same.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hostile::{Failures, IdleChild};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{
    Barrier, BoundedSemaphore, Condvar, Event, Mutex, Queue, ReentrantMutex, Region, RegionOptions,
    RwLock, Semaphore, SeqLock, SeqLockArray, TimedLockError, TryLockError, Value, futex,
};

/// The timeout every timed call gets.
const TIMEOUT: Duration = Duration::from_millis(20);
/// A timed call must return within this (its timeout, ten times over, plus a margin).
const TIMED_BOUND: Duration = Duration::from_millis(20 * 10 + 200);
/// A `try_` call (or any call that never waits: release, set, reset, ...) must return
/// within this.
const TRY_BOUND: Duration = Duration::from_millis(100);
/// How long past its bound a call may run before it counts as hung.
const HANG: Duration = Duration::from_secs(1);
/// Each test's own limit.
const LIMIT: Duration = Duration::from_secs(120);

// ----- ids and garbage values -----

/// Thread ids with a known liveness, written into state words.
#[derive(Clone, Copy, Debug)]
struct Ids {
    /// A thread of this process, parked forever.
    live: u32,
    /// A SIGSTOPped child process.
    stopped: u32,
    /// A reaped child: names nobody.
    dead: u32,
}

/// What a garbage value is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Zero,
    Live,
    Stopped,
    Dead,
    /// The thread that makes the call.
    Own,
    /// 2^23: where a word keeps its holder's stamp above a 22-bit TID (mutex, seqlock,
    /// reader slot, write-locked `RwLock` state), a stamp without a TID, which names no
    /// thread (as a bare `RwLock` state, an overflow count of 2^23 readers).
    AboveMax,
    /// All 24 low bits.
    LowOnes,
}

/// A garbage word: a base id with flag bits, or a raw value.
#[derive(Clone, Copy, Debug)]
enum Val {
    Id(Base, u32),
    Raw(u32),
}

impl Val {
    /// The value, resolved on the thread that makes the call (for `Base::Own`).
    fn resolve(self, ids: Ids) -> u32 {
        match self {
            Val::Raw(v) => v,
            Val::Id(b, flags) => {
                let id = match b {
                    Base::Zero => 0,
                    Base::Live => ids.live,
                    Base::Stopped => ids.stopped,
                    Base::Dead => ids.dead,
                    Base::Own => hostile::gettid(),
                    Base::AboveMax => 1 << 23,
                    Base::LowOnes => 0x00FF_FFFF,
                };
                id | flags
            }
        }
    }

    /// Whether the value names a thread that is alive (and never lets go).
    fn names_live(self) -> bool {
        matches!(self, Val::Id(Base::Live | Base::Stopped | Base::Own, _))
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Raw(v) => write!(f, "{v:#010x}"),
            Val::Id(b, 0) => write!(f, "{b:?}"),
            Val::Id(b, flags) => write!(f, "{b:?}|{flags:#010x}"),
        }
    }
}

/// The flag bits combined with each base: every primitive's flags live in these (mutex
/// `CONTENDED`/`OWNER_DIED` 31/30, rwlock `WRITE_LOCKED`/`OWNER_DIED`/waiting bits
/// 27/28/30/31, seqlock `WAITERS` 31, barrier `SLEEPERS`/`BROKEN` 30/31), and bits 27/28
/// are stamp bits to the mutex and the seqlock (a live base with them names a dead holder,
/// unless the stamp is by chance the live thread's own).
const FLAGS: [u32; 6] = [
    0,
    1 << 31,
    1 << 30,
    1 << 27,
    (1 << 27) | (1 << 28),
    (1 << 31) | (1 << 30) | (1 << 27),
];

fn values() -> Vec<Val> {
    let bases = [
        Base::Zero,
        Base::Live,
        Base::Stopped,
        Base::Dead,
        Base::Own,
        Base::AboveMax,
        Base::LowOnes,
    ];
    let mut v: Vec<Val> = bases
        .iter()
        .flat_map(|&b| FLAGS.iter().map(move |&f| Val::Id(b, f)))
        .collect();
    // Low bits: event SET/WAITERS, sleepers-word bits, small counts.
    for raw in [1, 2, 3, u32::MAX, 0x7FFF_FFFF, 0xAAAA_AAAA, 0x5555_5555] {
        v.push(Val::Raw(raw));
    }
    v
}

/// A few values for the second word of a pair, to keep cross products small.
fn some_values() -> Vec<Val> {
    vec![
        Val::Id(Base::Zero, 0),
        Val::Id(Base::Live, 0),
        Val::Id(Base::Dead, 1 << 31),
        Val::Id(Base::Own, 0),
        Val::Raw(u32::MAX),
        Val::Raw(1),
    ]
}

/// An `AtomicU32` at byte `offset` of `obj`.
///
/// # Safety
///
/// `obj`'s type is `#[repr(C)]` and holds an `AtomicU32` at `offset` (the layout its docs
/// give): the reference made here aliases that field, which is itself an atomic.
unsafe fn word_at<T: ?Sized>(obj: &T, offset: usize) -> &AtomicU32 {
    // SAFETY: by the caller's contract there is an `AtomicU32` at `offset` inside `obj`,
    // aligned (it is a field) and alive as long as `obj`; atomics may be shared.
    unsafe {
        &*(obj as *const T)
            .cast::<u8>()
            .add(offset)
            .cast::<AtomicU32>()
    }
}

fn set(w: &AtomicU32, v: u32) {
    // Relaxed: the call under test runs on this thread after the store.
    w.store(v, Ordering::Relaxed);
}

fn get(w: &AtomicU32) -> u32 {
    // Relaxed: a diagnostic snapshot.
    w.load(Ordering::Relaxed)
}

fn try_res<G>(r: Result<G, TryLockError<G>>) -> &'static str {
    match r {
        Ok(_) => "acquired",
        Err(TryLockError::WouldBlock) => "would block",
        Err(TryLockError::OwnerDied(_)) => "owner died",
    }
}

fn timed_res<G>(r: Result<G, TimedLockError<G>>) -> &'static str {
    match r {
        Ok(_) => "acquired",
        Err(TimedLockError::Timeout) => "timeout",
        Err(TimedLockError::OwnerDied(_)) => "owner died",
    }
}

fn deadline() -> Instant {
    Instant::now() + TIMEOUT
}

/// The bound of operation `op`: a timed bound for names with `timeout`/`until` in them.
fn bound_of(op: &str) -> Duration {
    if op.contains("timeout") || op.contains("until") || op.starts_with("get") {
        TIMED_BOUND
    } else {
        TRY_BOUND
    }
}

// ----- the harness -----

/// What one call does, on its own thread: write the garbage, make the call, describe.
/// Returns the call's duration and a description of its result and the words after it.
type Job = Box<dyn FnOnce() -> (Duration, String) + Send>;
/// Run from the test thread if the call hangs: zeroes the words so the call can return.
type Unstick = Box<dyn FnOnce() + Send>;

enum Outcome {
    InTime,
    Late(Duration, String),
    Panicked(String),
    /// Hung; whether it returned once unstuck.
    Hung(bool),
}

struct Sweep {
    test: &'static str,
    ids: Ids,
    failures: Failures,
    cases: usize,
    retried: usize,
    slowest: (Duration, String),
    _children: (IdleChild,),
}

impl Sweep {
    fn new(test: &'static str) -> Self {
        common::watchdog(LIMIT);
        let stopped = IdleChild::spawn(true);
        let ids = Ids {
            live: hostile::parked_thread_tid(),
            stopped: stopped.pid as u32,
            dead: hostile::dead_pid(),
        };
        eprintln!("{test}: ids {ids:?}");
        Sweep {
            test,
            ids,
            failures: Failures::default(),
            cases: 0,
            retried: 0,
            slowest: (Duration::ZERO, String::new()),
            _children: (stopped,),
        }
    }

    fn run_once(
        &mut self,
        bound: Duration,
        hang: Duration,
        make: &dyn Fn() -> (Job, Unstick),
    ) -> Outcome {
        let (job, unstick) = make();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = tx.send(r);
        });
        let got = match rx.recv_timeout(bound + hang) {
            Ok(r) => r,
            Err(_) => {
                unstick();
                return Outcome::Hung(rx.recv_timeout(HANG).is_ok());
            }
        };
        match got {
            Ok((took, what)) => {
                if took > self.slowest.0 {
                    self.slowest = (took, what.clone());
                }
                if took > bound {
                    Outcome::Late(took, what)
                } else {
                    Outcome::InTime
                }
            }
            Err(p) => Outcome::Panicked(
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default(),
            ),
        }
    }

    /// Runs one case (twice if the first run overran) and records a failure.
    fn check(&mut self, what: &str, bound: Duration, make: &dyn Fn() -> (Job, Unstick)) {
        self.cases += 1;
        let hang = HANG;
        let mut outcome = self.run_once(bound, hang, make);
        // A busy machine can stall a thread for seconds: re-run a case that overran or hung,
        // twice at most. A real bug repeats (the bytes are the same every time).
        for _ in 0..2 {
            let first = match &outcome {
                Outcome::Late(took, _) => format!("{took:?}"),
                Outcome::Hung(_) => "hung".to_string(),
                _ => break,
            };
            self.retried += 1;
            outcome = match self.run_once(bound, hang, make) {
                Outcome::Late(took, w) => {
                    Outcome::Late(took, format!("{w} (earlier run: {first})"))
                }
                o => o,
            };
        }
        let failure = match outcome {
            Outcome::InTime => return,
            Outcome::Late(took, w) => format!("{what}: took {took:?}, bound {bound:?}: {w}"),
            Outcome::Panicked(msg) => format!("{what}: panicked: {msg}"),
            Outcome::Hung(unstuck) => format!(
                "{what}: still running {hang:?} past its bound {bound:?}; {}",
                if unstuck {
                    "it returned once its words were zeroed"
                } else {
                    "it had not returned 1 s after that either (left running)"
                }
            ),
        };
        self.failures.add(failure);
    }

    fn finish(self) {
        eprintln!(
            "{}: {} cases ({} re-run after an overrun), slowest {:?}: {}",
            self.test, self.cases, self.retried, self.slowest.0, self.slowest.1
        );
        self.failures.finish(self.test);
    }
}

/// Builds a [`Job`]: `prep` writes the garbage, then `op` is timed; `words` describes the
/// state words after the call.
fn job<T: ?Sized + Send + Sync + 'static>(
    obj: &Arc<T>,
    prep: impl FnOnce(&T) + Send + 'static,
    op: impl FnOnce(&T) -> String + Send + 'static,
    words: impl FnOnce(&T) -> String + Send + 'static,
) -> Job {
    let obj = Arc::clone(obj);
    Box::new(move || {
        prep(&obj);
        let t = Instant::now();
        let r = op(&obj);
        let took = t.elapsed();
        (took, format!("{r}; words after: {}", words(&obj)))
    })
}

fn unstick<T: ?Sized + Send + Sync + 'static>(
    obj: &Arc<T>,
    zero: impl FnOnce(&T) + Send + 'static,
) -> Unstick {
    let obj = Arc::clone(obj);
    Box::new(move || zero(&obj))
}

/// A thread that calls `FUTEX_WAKE` on `word(obj)` in a loop until `stop` is set. Called
/// on the thread that makes the call, it also gives that thread a timer slack of 2 s (the
/// kernel may then fire its futex timeouts up to 2 s late, as it may for any process that
/// asks for slack): a wait that relies on the kernel's timeout instead of checking its
/// deadline after every wake keeps being woken early by the flood for that long.
fn spam_wakes<T: ?Sized + Send + Sync + 'static>(
    obj: &Arc<T>,
    stop: &Arc<AtomicBool>,
    word: impl Fn(&T) -> &AtomicU32 + Send + 'static,
) {
    // SAFETY: `prctl(PR_SET_TIMERSLACK, ns)` only sets an attribute of the calling thread
    // (which ends with the case).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 2_000_000_000u64) };
    let (obj, stop) = (Arc::clone(obj), Arc::clone(stop));
    std::thread::spawn(move || {
        // Relaxed: a stop flag; nothing is published through it.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            futex::wake_all(word(&obj));
        }
    });
}

fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// `j`, then stops the wake spammers of `stop`.
fn with_stop(j: Job, stop: &Arc<AtomicBool>) -> Job {
    let stop = Arc::clone(stop);
    Box::new(move || {
        let r = j();
        raise_stop(&stop);
        r
    })
}

fn raise_stop(stop: &AtomicBool) {
    // Relaxed: see `spam_wakes`.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

// ----- the locks -----

const MUTEX_OPS: [&str; 3] = ["try_lock", "lock_timeout", "lock_until"];

#[test]
fn mutex_calls_return_within_their_bounds_whatever_the_word() {
    let mut s = Sweep::new("mutex");
    let ids = s.ids;
    for v in values() {
        for op in MUTEX_OPS {
            s.check(&format!("Mutex::{op} word={v}"), bound_of(op), &|| {
                let m = Arc::new(Mutex::new(0u64));
                let j = job(
                    &m,
                    move |m| set(m.raw().word(), v.resolve(ids)),
                    move |m| {
                        match op {
                            "try_lock" => try_res(m.try_lock()),
                            "lock_timeout" => timed_res(m.lock_timeout(TIMEOUT)),
                            _ => timed_res(m.lock_until(deadline())),
                        }
                        .to_string()
                    },
                    |m| format!("{:#x}", get(m.raw().word())),
                );
                (j, unstick(&m, |m| set(m.raw().word(), 0)))
            });
        }
        for op in MUTEX_OPS {
            // ReentrantMutex: `#[repr(C)]`, the lock word at 0, the depth at 4.
            for depth in [0, 1, u32::MAX] {
                let what = format!("ReentrantMutex::{op} word={v} depth={depth:#x}");
                s.check(&what, bound_of(op), &|| {
                    let m = Arc::new(ReentrantMutex::new(0u64));
                    let j = job(
                        &m,
                        move |m| {
                            // SAFETY: the lock word and the depth are the `AtomicU32`s at
                            // offsets 0 and 4 of the `#[repr(C)]` ReentrantMutex.
                            unsafe {
                                set(word_at(m, 0), v.resolve(ids));
                                set(word_at(m, 4), depth);
                            }
                        },
                        move |m| {
                            match op {
                                "try_lock" => try_res(m.try_lock()),
                                "lock_timeout" => timed_res(m.lock_timeout(TIMEOUT)),
                                _ => timed_res(m.lock_until(deadline())),
                            }
                            .to_string()
                        },
                        // SAFETY: as above.
                        |m| unsafe {
                            format!("{:#x}/{:#x}", get(word_at(m, 0)), get(word_at(m, 4)))
                        },
                    );
                    // SAFETY: as above.
                    (j, unstick(&m, |m| unsafe { set(word_at(m, 0), 0) }))
                });
            }
        }
    }
    // Wake spam while the holder lives: the timed calls still end at their deadline.
    for op in ["lock_timeout", "lock_until"] {
        let what = format!("Mutex::{op} word=Live, FUTEX_WAKE spam");
        s.check(&what, bound_of(op), &|| {
            let m = Arc::new(Mutex::new(0u64));
            let stop = stop_flag();
            let stop2 = Arc::clone(&stop);
            let m2 = Arc::clone(&m);
            let j = job(
                &m,
                move |m| {
                    set(m.raw().word(), ids.live);
                    spam_wakes(&m2, &stop2, |m| m.raw().word());
                },
                move |m| {
                    let r = match op {
                        "lock_timeout" => timed_res(m.lock_timeout(TIMEOUT)),
                        _ => timed_res(m.lock_until(deadline())),
                    };
                    r.to_string()
                },
                |m| format!("{:#x}", get(m.raw().word())),
            );
            let wrapped = with_stop(j, &stop);
            (
                wrapped,
                unstick(&m, move |m| {
                    raise_stop(&stop);
                    set(m.raw().word(), 0)
                }),
            )
        });
    }
    s.finish();
}

const RW_OPS: [&str; 6] = [
    "try_read",
    "read_timeout",
    "read_until",
    "try_write",
    "write_timeout",
    "write_until",
];

fn rw_op(l: &RwLock<[u64; 2]>, op: &str) -> String {
    match op {
        "try_read" => try_res(l.try_read()),
        "read_timeout" => timed_res(l.read_timeout(TIMEOUT)),
        "read_until" => timed_res(l.read_until(deadline())),
        "try_write" => try_res(l.try_write()),
        "write_timeout" => timed_res(l.write_timeout(TIMEOUT)),
        _ => timed_res(l.write_until(deadline())),
    }
    .to_string()
}

fn rw_words(l: &RwLock<[u64; 2]>) -> String {
    let slots: Vec<String> = l
        .raw()
        .reader_slots()
        .iter()
        .map(|s| format!("{:x}", get(s)))
        .collect();
    format!(
        "state {:#x} slots [{}]",
        get(l.raw().state()),
        slots.join(" ")
    )
}

fn rw_zero(l: &RwLock<[u64; 2]>) {
    set(l.raw().state(), 0);
    for s in l.raw().reader_slots() {
        set(s, 0);
    }
}

#[test]
fn rwlock_calls_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("rwlock");
    let ids = s.ids;
    // The state word, and the writer-notify word (offset 4 of the `#[repr(C)]` raw lock).
    for v in values() {
        for notify in [Val::Raw(0), Val::Raw(u32::MAX)] {
            for op in RW_OPS {
                let what = format!("RwLock::{op} state={v} writer_notify={notify}");
                s.check(&what, bound_of(op), &|| {
                    let l = Arc::new(RwLock::new([0u64; 2]));
                    let j = job(
                        &l,
                        move |l| {
                            set(l.raw().state(), v.resolve(ids));
                            // SAFETY: `RawRwLock` is `#[repr(C)]`: state at 0, the writer
                            // notification counter at 4.
                            unsafe { set(word_at(l.raw(), 4), notify.resolve(ids)) };
                        },
                        move |l| rw_op(l, op),
                        rw_words,
                    );
                    (j, unstick(&l, rw_zero))
                });
            }
        }
    }
    // The reader slots, against reader counts that do or do not match them.
    const WW: u32 = 1 << 31;
    const RW: u32 = 1 << 30;
    let states = [0, 1, 14, 0x00FF_FFFF, WW | 1, WW | 14, RW | WW | 14, WW];
    let slot_fills: [(&str, &dyn Fn(usize) -> Val); 7] = [
        ("all Live", &|_| Val::Id(Base::Live, 0)),
        ("all Stopped", &|_| Val::Id(Base::Stopped, 0)),
        ("all Dead", &|_| Val::Id(Base::Dead, 0)),
        ("all Own", &|_| Val::Id(Base::Own, 0)),
        ("all above max", &|_| Val::Id(Base::AboveMax, 0)),
        ("all ones", &|_| Val::Raw(u32::MAX)),
        ("Dead and Live alternating", &|i| {
            if i % 2 == 0 {
                Val::Id(Base::Dead, 0)
            } else {
                Val::Id(Base::Live, 0)
            }
        }),
    ];
    for (fill_name, fill) in slot_fills {
        // More than there are slots: the zip below stops at the last slot.
        let fill: Vec<Val> = (0..64).map(fill).collect();
        for state in states {
            for op in RW_OPS {
                let what = format!("RwLock::{op} state={state:#x} slots={fill_name}");
                s.check(&what, bound_of(op), &|| {
                    let l = Arc::new(RwLock::new([0u64; 2]));
                    let fill = fill.clone();
                    let j = job(
                        &l,
                        move |l| {
                            set(l.raw().state(), state);
                            for (slot, v) in l.raw().reader_slots().iter().zip(&fill) {
                                set(slot, v.resolve(ids));
                            }
                        },
                        move |l| rw_op(l, op),
                        rw_words,
                    );
                    (j, unstick(&l, rw_zero))
                });
            }
        }
    }
    // Wake spam on both futex words while a live writer holds the lock.
    for op in ["read_timeout", "read_until", "write_timeout", "write_until"] {
        let what = format!("RwLock::{op} write-locked by Live, FUTEX_WAKE spam");
        s.check(&what, bound_of(op), &|| {
            let l = Arc::new(RwLock::new([0u64; 2]));
            let stop = stop_flag();
            let (l2, stop2) = (Arc::clone(&l), Arc::clone(&stop));
            let j = job(
                &l,
                move |l| {
                    set(l.raw().state(), (1 << 27) | ids.live);
                    spam_wakes(&l2, &stop2, |l| l.raw().state());
                    // SAFETY: as above (writer notification counter at offset 4).
                    spam_wakes(&l2, &stop2, |l| unsafe { word_at(l.raw(), 4) });
                },
                move |l| rw_op(l, op),
                rw_words,
            );
            let wrapped = with_stop(j, &stop);
            (
                wrapped,
                unstick(&l, move |l| {
                    raise_stop(&stop);
                    rw_zero(l)
                }),
            )
        });
    }
    s.finish();
}

#[test]
fn condvar_timed_waits_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("condvar");
    let ids = s.ids;
    struct Cv {
        m: Mutex<u64>,
        cv: Condvar,
    }
    for v in values() {
        for other in [Val::Raw(0), Val::Raw(u32::MAX)] {
            for op in ["wait_timeout", "wait_timeout_while"] {
                let what = format!("Condvar::{op} seq={v} reserved={other}");
                s.check(&what, TIMED_BOUND, &|| {
                    let c = Arc::new(Cv {
                        m: Mutex::new(0),
                        cv: Condvar::new(),
                    });
                    let j = job(
                        &c,
                        move |c| {
                            let (seq, reserved) = c.cv.words();
                            set(seq, v.resolve(ids));
                            set(reserved, other.resolve(ids));
                        },
                        move |c| {
                            let g = c.m.lock().expect("a fresh mutex");
                            let r = match op {
                                "wait_timeout" => c.cv.wait_timeout(g, TIMEOUT),
                                _ => c.cv.wait_timeout_while(g, TIMEOUT, |_| true),
                            };
                            match r {
                                Ok((_, t)) => format!("timed out: {}", t.timed_out()),
                                Err(_) => "owner died".to_string(),
                            }
                        },
                        |c| format!("seq {:#x}", get(c.cv.words().0)),
                    );
                    (j, unstick(&c, |c| set(c.cv.words().0, 0)))
                });
            }
        }
    }
    // Wake spam on the sequence word: `wait_timeout_while` keeps its total deadline.
    let what = "Condvar::wait_timeout_while, FUTEX_WAKE spam";
    s.check(what, TIMED_BOUND, &|| {
        let c = Arc::new(Cv {
            m: Mutex::new(0),
            cv: Condvar::new(),
        });
        let stop = stop_flag();
        let (c2, stop2) = (Arc::clone(&c), Arc::clone(&stop));
        let j = job(
            &c,
            move |_| spam_wakes(&c2, &stop2, |c| c.cv.words().0),
            |c| {
                let g = c.m.lock().expect("a fresh mutex");
                match c.cv.wait_timeout_while(g, TIMEOUT, |_| true) {
                    Ok((_, t)) => format!("timed out: {}", t.timed_out()),
                    Err(_) => "owner died".to_string(),
                }
            },
            |c| format!("seq {:#x}", get(c.cv.words().0)),
        );
        let wrapped = with_stop(j, &stop);
        (wrapped, unstick(&c, move |_| raise_stop(&stop)))
    });
    s.finish();
}

// ----- coordination -----

const SEM_OPS: [&str; 5] = [
    "try_acquire",
    "acquire_timeout",
    "acquire_until",
    "release",
    "release_n(3)",
];

fn sem_op(
    acquire: impl FnOnce(&str) -> bool,
    release: impl FnOnce(u32) -> String,
    op: &str,
) -> String {
    match op {
        "release" => release(1),
        "release_n(3)" => release(3),
        _ => format!("acquired: {}", acquire(op)),
    }
}

#[test]
fn semaphore_calls_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("semaphore");
    let ids = s.ids;
    // (count, sleepers): each word garbage while the other is 0.
    let mut pairs: Vec<(Val, Val)> = values().into_iter().map(|v| (Val::Raw(0), v)).collect();
    pairs.extend(values().into_iter().map(|v| (v, Val::Raw(0))));
    for &(count, sleepers) in &pairs {
        for op in SEM_OPS {
            let what = format!("Semaphore::{op} count={count} sleepers={sleepers}");
            s.check(&what, bound_of(op), &|| {
                let sem = Arc::new(Semaphore::new(0));
                let j = job(
                    &sem,
                    move |sem| {
                        set(sem.words().0, count.resolve(ids));
                        set(sem.words().1, sleepers.resolve(ids));
                    },
                    move |sem| {
                        sem_op(
                            |op| match op {
                                "try_acquire" => sem.try_acquire(),
                                "acquire_timeout" => sem.acquire_timeout(TIMEOUT).is_ok(),
                                _ => sem.acquire_until(deadline()).is_ok(),
                            },
                            |n| format!("{:?}", sem.release_n(n)),
                            op,
                        )
                    },
                    |sem| format!("{:#x}/{:#x}", get(sem.words().0), get(sem.words().1)),
                );
                (j, unstick(&sem, |sem| set(sem.words().0, 1)))
            });
        }
    }
    // (count, sleepers, bound) of a BoundedSemaphore: one garbage word at a time.
    let mut triples: Vec<(Val, Val, Val)> =
        pairs.iter().map(|&(c, sl)| (c, sl, Val::Raw(2))).collect();
    triples.extend(values().into_iter().map(|b| (Val::Raw(0), Val::Raw(0), b)));
    for &(count, sleepers, bound) in &triples {
        for op in SEM_OPS {
            let what =
                format!("BoundedSemaphore::{op} count={count} sleepers={sleepers} bound={bound}");
            s.check(&what, bound_of(op), &|| {
                let sem = Arc::new(BoundedSemaphore::new(2));
                let j = job(
                    &sem,
                    move |sem| {
                        let (c, sl, b) = sem.words();
                        set(c, count.resolve(ids));
                        set(sl, sleepers.resolve(ids));
                        set(b, bound.resolve(ids));
                    },
                    move |sem| {
                        sem_op(
                            |op| match op {
                                "try_acquire" => sem.try_acquire(),
                                "acquire_timeout" => sem.acquire_timeout(TIMEOUT).is_ok(),
                                _ => sem.acquire_until(deadline()).is_ok(),
                            },
                            |n| format!("{:?}", sem.release_n(n)),
                            op,
                        )
                    },
                    |sem| {
                        let (c, sl, b) = sem.words();
                        format!("{:#x}/{:#x}/{:#x}", get(c), get(sl), get(b))
                    },
                );
                (j, unstick(&sem, |sem| set(sem.words().0, 1)))
            });
        }
    }
    // Wake spam on the sleepers word of an empty semaphore.
    // (One form: `acquire_timeout` is `acquire_until` of now + timeout.)
    {
        let op = "acquire_timeout";
        let what = format!("Semaphore::{op} no permits, FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let sem = Arc::new(Semaphore::new(0));
            let stop = stop_flag();
            let (sem2, stop2) = (Arc::clone(&sem), Arc::clone(&stop));
            let j = job(
                &sem,
                move |_| spam_wakes(&sem2, &stop2, |sem| sem.words().1),
                move |sem| match op {
                    "acquire_timeout" => format!("acquired: {:?}", sem.acquire_timeout(TIMEOUT)),
                    _ => format!("acquired: {:?}", sem.acquire_until(deadline())),
                },
                |sem| format!("{:#x}/{:#x}", get(sem.words().0), get(sem.words().1)),
            );
            (
                with_stop(j, &stop),
                unstick(&sem, move |_| raise_stop(&stop)),
            )
        });
        let what = format!("BoundedSemaphore::{op} no permits, FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let sem = Arc::new(BoundedSemaphore::new(0));
            let stop = stop_flag();
            let (sem2, stop2) = (Arc::clone(&sem), Arc::clone(&stop));
            let j = job(
                &sem,
                move |_| spam_wakes(&sem2, &stop2, |sem| sem.words().1),
                move |sem| match op {
                    "acquire_timeout" => format!("acquired: {:?}", sem.acquire_timeout(TIMEOUT)),
                    _ => format!("acquired: {:?}", sem.acquire_until(deadline())),
                },
                |sem| format!("{:#x}/{:#x}", get(sem.words().0), get(sem.words().1)),
            );
            (
                with_stop(j, &stop),
                unstick(&sem, move |_| raise_stop(&stop)),
            )
        });
    }
    s.finish();
}

#[test]
fn event_and_barrier_calls_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("event_barrier");
    let ids = s.ids;
    for v in values() {
        for op in ["wait_timeout", "wait_until", "set", "clear", "is_set"] {
            s.check(&format!("Event::{op} word={v}"), bound_of(op), &|| {
                let e = Arc::new(Event::new());
                let j = job(
                    &e,
                    move |e| set(e.word(), v.resolve(ids)),
                    move |e| match op {
                        "wait_timeout" => format!("set: {:?}", e.wait_timeout(TIMEOUT)),
                        "wait_until" => format!("set: {:?}", e.wait_until(deadline())),
                        "set" => {
                            e.set();
                            "set".into()
                        }
                        "clear" => {
                            e.clear();
                            "cleared".into()
                        }
                        _ => format!("is_set: {}", e.is_set()),
                    },
                    |e| format!("{:#x}", get(e.word())),
                );
                (j, unstick(&e, |e| e.set()))
            });
        }
    }
    // (state, parties): state garbage with 2 parties; parties garbage with state 0; both.
    let mut pairs: Vec<(Val, Val)> = values().into_iter().map(|v| (v, Val::Raw(2))).collect();
    pairs.extend(values().into_iter().map(|v| (Val::Raw(0), v)));
    for a in some_values() {
        for b in some_values() {
            pairs.push((a, b));
        }
    }
    for &(state, parties) in &pairs {
        for op in ["wait_timeout", "wait_until", "reset", "abort"] {
            let what = format!("Barrier::{op} state={state} parties={parties}");
            s.check(&what, bound_of(op), &|| {
                let b = Arc::new(Barrier::new(2));
                let j = job(
                    &b,
                    move |b| {
                        set(b.words().0, state.resolve(ids));
                        set(b.words().1, parties.resolve(ids));
                    },
                    move |b| match op {
                        "wait_timeout" => format!("{:?}", b.wait_timeout(TIMEOUT)),
                        "wait_until" => format!("{:?}", b.wait_until(deadline())),
                        "reset" => {
                            b.reset();
                            "reset".into()
                        }
                        _ => {
                            b.abort();
                            "aborted".into()
                        }
                    },
                    |b| format!("{:#x}/{:#x}", get(b.words().0), get(b.words().1)),
                );
                (j, unstick(&b, |b| b.abort()))
            });
        }
    }
    // Wake spam on the words the timed waits sleep on. (One form each, as for the
    // semaphores.)
    {
        let op = "wait_timeout";
        let what = format!("Event::{op} clear, FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let e = Arc::new(Event::new());
            let stop = stop_flag();
            let (e2, stop2) = (Arc::clone(&e), Arc::clone(&stop));
            let j = job(
                &e,
                move |_| spam_wakes(&e2, &stop2, |e| e.word()),
                move |e| match op {
                    "wait_timeout" => format!("set: {:?}", e.wait_timeout(TIMEOUT)),
                    _ => format!("set: {:?}", e.wait_until(deadline())),
                },
                |e| format!("{:#x}", get(e.word())),
            );
            let wrapped = with_stop(j, &stop);
            (wrapped, unstick(&e, move |_| raise_stop(&stop)))
        });
        let what = format!("Barrier::{op} 2 parties, FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let b = Arc::new(Barrier::new(2));
            let stop = stop_flag();
            let (b2, stop2) = (Arc::clone(&b), Arc::clone(&stop));
            let j = job(
                &b,
                move |_| spam_wakes(&b2, &stop2, |b| b.words().0),
                move |b| match op {
                    "wait_timeout" => format!("{:?}", b.wait_timeout(TIMEOUT)),
                    _ => format!("{:?}", b.wait_until(deadline())),
                },
                |b| format!("{:#x}", get(b.words().0)),
            );
            let wrapped = with_stop(j, &stop);
            (wrapped, unstick(&b, move |_| raise_stop(&stop)))
        });
    }
    s.finish();
}

type Q = Queue<u64, 4>;

const QUEUE_OPS: [&str; 6] = [
    "try_push",
    "try_pop",
    "push_timeout",
    "pop_timeout",
    "push_until",
    "pop_until",
];

fn queue_op(q: &Q, op: &str) -> String {
    match op {
        "try_push" => format!("{:?}", q.try_push(7)),
        "try_pop" => format!("{:?}", q.try_pop()),
        "push_timeout" => format!("{:?}", q.push_timeout(7, TIMEOUT)),
        "pop_timeout" => format!("{:?}", q.pop_timeout(TIMEOUT)),
        "push_until" => format!("{:?}", q.push_until(7, deadline())),
        _ => format!("{:?}", q.pop_until(deadline())),
    }
}

/// The queue's words by byte offset (its documented `#[repr(C)]` layout): the lock word
/// at 0, `head` at 4, `tail` at 8, the `not_empty` condvar's sequence at 12, `not_full`'s
/// at 20.
fn q_word(q: &Q, offset: usize) -> &AtomicU32 {
    // SAFETY: `Queue` is `#[repr(C)]`: a `Mutex<Indices>` (lock word, head, tail: three
    // `u32`s) then two `Condvar`s (two `u32`s each); all of them are atomics or plain
    // `u32`s only ever accessed under the lock, which this test does not hold (it writes
    // hostile bytes, as a peer process could).
    unsafe { word_at(q, offset) }
}

fn q_words(q: &Q) -> String {
    let w: Vec<String> = [0, 4, 8, 12, 20]
        .iter()
        .map(|&o| format!("{:#x}", get(q_word(q, o))))
        .collect();
    format!("lock/head/tail/not_empty/not_full {}", w.join("/"))
}

fn q_zero(q: &Q) {
    for o in [0, 4, 8, 12, 20] {
        set(q_word(q, o), 0);
    }
}

#[test]
fn queue_calls_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("queue");
    let ids = s.ids;
    // The lock word, with the queue empty and full. A live holder only with the flags a
    // real lock word has: other bits are its stamp, which may match the live thread's own
    // by chance (a live holder) or not (a dead one's), left to the mutex sweep.
    // (Raw 1..=3 name pid 1 and kernel threads: live holders too, left to the mutex sweep.)
    let lock_values = values().into_iter().filter(|v| match v {
        Val::Id(_, f) if v.names_live() => *f == 0 || *f == 1 << 31,
        Val::Raw(r) => *r > 3,
        _ => true,
    });
    for v in lock_values {
        for (fill, tail) in [("empty", 0u32), ("full", 4)] {
            for op in QUEUE_OPS {
                // A `try_` call must not wait for a live lock holder.
                let what = format!("Queue::{op} {fill} lock={v}");
                s.check(&what, bound_of(op), &|| {
                    let q = Arc::new(Q::new());
                    let j = job(
                        &q,
                        move |q| {
                            set(q_word(q, 8), tail);
                            set(q_word(q, 0), v.resolve(ids));
                        },
                        move |q| queue_op(q, op),
                        q_words,
                    );
                    (j, unstick(&q, q_zero))
                });
            }
        }
    }
    // The indices and the condvar words (lock free).
    let idx = [0, 1, 3, 4, 7, 8, 9, u32::MAX, 0x8000_0000];
    for head in idx {
        for tail in idx {
            for op in QUEUE_OPS {
                let what = format!("Queue::{op} head={head:#x} tail={tail:#x}");
                s.check(&what, bound_of(op), &|| {
                    let q = Arc::new(Q::new());
                    let j = job(
                        &q,
                        move |q| {
                            set(q_word(q, 4), head);
                            set(q_word(q, 8), tail);
                        },
                        move |q| queue_op(q, op),
                        q_words,
                    );
                    (j, unstick(&q, q_zero))
                });
            }
        }
    }
    for v in values() {
        for op in QUEUE_OPS {
            let what = format!("Queue::{op} condvar words={v}");
            s.check(&what, bound_of(op), &|| {
                let q = Arc::new(Q::new());
                let j = job(
                    &q,
                    move |q| {
                        let w = v.resolve(ids);
                        for o in [12, 16, 20, 24] {
                            set(q_word(q, o), w);
                        }
                    },
                    move |q| queue_op(q, op),
                    q_words,
                );
                (j, unstick(&q, q_zero))
            });
        }
    }
    // A live thread takes the lock while a timed call waits for room or an item (written
    // into the lock word, then a wake): the call's re-lock must not outlast its deadline.
    for (op, tail, cv) in [("pop_timeout", 0u32, 12), ("push_timeout", 4, 20)] {
        let what = format!("Queue::{op} while a live thread takes the lock mid-wait");
        s.check(&what, TIMED_BOUND, &|| {
            let q = Arc::new(Q::new());
            let q2 = Arc::clone(&q);
            let j = job(
                &q,
                move |q| {
                    set(q_word(q, 8), tail);
                    std::thread::spawn(move || {
                        // Lets the call reach its wait (a race either way is a valid case).
                        std::thread::sleep(TIMEOUT / 4);
                        set(q_word(&q2, 0), ids.live);
                        futex::wake_all(q_word(&q2, cv));
                    });
                },
                move |q| queue_op(q, op),
                q_words,
            );
            (j, unstick(&q, q_zero))
        });
    }
    // Wake spam on the condvar a timed call waits on.
    for (op, tail, cv) in [("pop_timeout", 0u32, 12), ("push_timeout", 4, 20)] {
        let what = format!("Queue::{op} FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let q = Arc::new(Q::new());
            let stop = stop_flag();
            let (q2, stop2) = (Arc::clone(&q), Arc::clone(&stop));
            let j = job(
                &q,
                move |q| {
                    set(q_word(q, 8), tail);
                    spam_wakes(&q2, &stop2, move |q| q_word(q, cv));
                },
                move |q| queue_op(q, op),
                q_words,
            );
            let wrapped = with_stop(j, &stop);
            (wrapped, unstick(&q, move |_| raise_stop(&stop)))
        });
    }
    s.finish();
}

// ----- seqlocks -----

/// The seqlock's words: `#[repr(C)]`, the sequence word at 0, the writer word at 4.
fn sl_word<T: bytemuck::Pod>(l: &SeqLock<T>, offset: usize) -> &AtomicU32 {
    // SAFETY: `SeqLock` is `#[repr(C)]` with `seq: AtomicU32` at 0 and `writer: AtomicU32`
    // at 4 (its documented layout).
    unsafe { word_at(l, offset) }
}

const SEQ_VALUES: [u32; 5] = [0, 1, 2, u32::MAX, 0x8000_0001];

#[test]
fn seqlock_calls_return_within_their_bounds_whatever_the_words() {
    let mut s = Sweep::new("seqlock");
    let ids = s.ids;
    for seq in SEQ_VALUES {
        for v in values() {
            for op in ["try_read", "read_timeout", "lock_timeout"] {
                let what = format!("SeqLock::{op} seq={seq:#x} writer={v}");
                s.check(&what, bound_of(op), &|| {
                    let l = Arc::new(SeqLock::new([0u64; 4]));
                    let j = job(
                        &l,
                        move |l| {
                            set(sl_word(l, 0), seq);
                            set(sl_word(l, 4), v.resolve(ids));
                        },
                        move |l| match op {
                            "try_read" => format!("{:?}", l.try_read().map(|_| ())),
                            "read_timeout" => format!("{:?}", l.read_timeout(TIMEOUT).map(|_| ())),
                            _ => timed_res(l.lock_timeout(TIMEOUT)).to_string(),
                        },
                        |l| format!("{:#x}/{:#x}", get(sl_word(l, 0)), get(sl_word(l, 4))),
                    );
                    (
                        j,
                        unstick(&l, |l| {
                            set(sl_word(l, 4), 0);
                            set(sl_word(l, 0), 0);
                        }),
                    )
                });
            }
        }
    }
    // One element of an array (its stripe's words), through the whole-array and the
    // per-element calls.
    let ops = [
        "try_snapshot",
        "snapshot_timeout",
        "write_batch_timeout",
        "try_get",
        "get_timeout",
        "lock_timeout",
    ];
    for seq in [0, 1, u32::MAX] {
        for v in values() {
            for op in ops {
                let what = format!("SeqLockArray::{op} element 2 seq={seq:#x} writer={v}");
                s.check(&what, bound_of(op), &|| {
                    let a: Arc<SeqLockArray<u64>> = Arc::from(SeqLockArray::<u64>::new(4));
                    let j = job(
                        &a,
                        move |a| {
                            let [s, w, _] = a.stripe_words_for_test(0);
                            set(s, seq);
                            set(w, v.resolve(ids));
                        },
                        move |a| {
                            let mut out = [0u64; 4];
                            match op {
                                "try_snapshot" => format!("{:?}", a.try_snapshot(&mut out)),
                                "snapshot_timeout" => {
                                    format!("{:?}", a.snapshot_timeout(&mut out, TIMEOUT))
                                }
                                "write_batch_timeout" => {
                                    match a.write_batch_timeout(TIMEOUT, |v| v.fill(1)) {
                                        Ok(()) => "written",
                                        Err(TimedLockError::Timeout) => "timeout",
                                        Err(TimedLockError::OwnerDied(torn)) => {
                                            let mut batch = torn.into_inner();
                                            batch.fill(1);
                                            batch.mark_consistent();
                                            "owner died, repaired"
                                        }
                                    }
                                    .to_string()
                                }
                                "try_get" => format!("{:?}", a.try_get(2)),
                                "get_timeout" => format!("{:?}", a.get_timeout(2, TIMEOUT)),
                                _ => timed_res(a.lock_timeout(2, TIMEOUT)).to_string(),
                            }
                        },
                        |a| {
                            let [s, w, _] = a.stripe_words_for_test(0);
                            format!("{:#x}/{:#x}", get(s), get(w))
                        },
                    );
                    (
                        j,
                        unstick(&a, |a| {
                            let [s, w, _] = a.stripe_words_for_test(0);
                            set(w, 0);
                            set(s, 0);
                        }),
                    )
                });
            }
        }
    }
    // Wake spam on the writer word while a live writer is mid-write.
    for op in ["read_timeout", "lock_timeout"] {
        let what = format!("SeqLock::{op} Live writer mid-write, FUTEX_WAKE spam");
        s.check(&what, TIMED_BOUND, &|| {
            let l = Arc::new(SeqLock::new([0u64; 4]));
            let stop = stop_flag();
            let (l2, stop2) = (Arc::clone(&l), Arc::clone(&stop));
            let j = job(
                &l,
                move |l| {
                    set(sl_word(l, 0), 1);
                    set(sl_word(l, 4), ids.live);
                    spam_wakes(&l2, &stop2, |l| sl_word(l, 4));
                },
                move |l| match op {
                    "read_timeout" => format!("{:?}", l.read_timeout(TIMEOUT).map(|_| ())),
                    _ => timed_res(l.lock_timeout(TIMEOUT)).to_string(),
                },
                |l| format!("{:#x}/{:#x}", get(sl_word(l, 0)), get(sl_word(l, 4))),
            );
            let wrapped = with_stop(j, &stop);
            (
                wrapped,
                unstick(&l, move |l| {
                    raise_stop(&stop);
                    set(sl_word(l, 4), 0);
                }),
            )
        });
    }
    s.finish();
}

// ----- region lookups -----

/// The state word of directory entry `i`: the directory starts after the 128-byte
/// header, 128 bytes per entry, the state word first (the documented file format).
fn entry_state<'a>(r: &'a Region, object: &'a Value<u64>, i: usize) -> &'a AtomicU32 {
    let offset = r.offset_of(object).expect("the object is in the region");
    let base = (object as *const Value<u64>)
        .cast::<u8>()
        .wrapping_sub(offset);
    // SAFETY: `base` is the start of the region's mapping (an object's address minus its
    // offset); the region is far larger than the header and the first entries, whose
    // state words are 4-aligned `AtomicU32`s at `128 + 128 * i`. The mapping outlives
    // every use: each case keeps its `Arc<Region>` alive until its call returned (or
    // leaks it if the call hangs).
    unsafe { &*base.add(128 + 128 * i).cast::<AtomicU32>() }
}

/// A directory entry's state word, built from the ids.
type EntryWord = dyn Fn(Ids) -> u32 + Send + Sync;

#[test]
fn region_lookups_return_within_the_region_timeout_whatever_the_entry_state() {
    let mut s = Sweep::new("region");
    let ids = s.ids;
    // Generic garbage, and entries claimed or being initialised by each kind of owner
    // (the owner's id sits above the 3 low bits: phase and WAITERS).
    let mut vals: Vec<(String, Box<EntryWord>)> = values()
        .into_iter()
        .map(|v| {
            let f: Box<EntryWord> = Box::new(move |ids| v.resolve(ids));
            (v.to_string(), f)
        })
        .collect();
    for b in [Base::Live, Base::Stopped, Base::Dead, Base::Own, Base::Zero] {
        for phase in 0..4u32 {
            for waiters in [0, 4] {
                let f: Box<EntryWord> =
                    Box::new(move |ids| (Val::Id(b, 0).resolve(ids) << 3) | phase | waiters);
                vals.push((format!("owner {b:?} phase {phase} waiters {waiters}"), f));
            }
        }
    }
    let vals: Vec<(String, Arc<EntryWord>)> =
        vals.into_iter().map(|(n, f)| (n, Arc::from(f))).collect();
    for (v, entry_word) in &vals {
        for op in [
            "get(x)",
            "get_or_default(x)",
            "get_or_default(fresh)",
            "get(fresh)",
        ] {
            let what = format!("Region::{op} entry 0 state={v}");
            s.check(&what, TIMED_BOUND, &|| {
                let r = Arc::new(
                    RegionOptions::new()
                        .timeout(TIMEOUT)
                        .anonymous(1 << 16)
                        .expect("anonymous region"),
                );
                r.get_or_default::<Value<u64>>("x").expect("create x");
                let entry_word = Arc::clone(entry_word);
                let j = job(
                    &r,
                    move |r| {
                        let x = r.get::<Value<u64>>("x").expect("x");
                        entry_state(r, x, 0).store(entry_word(ids), Ordering::Relaxed);
                    },
                    move |r| {
                        let res = match op {
                            "get(x)" => r.get::<Value<u64>>("x").map(|_| ()),
                            "get_or_default(x)" => r.get_or_default::<Value<u64>>("x").map(|_| ()),
                            "get_or_default(fresh)" => {
                                r.get_or_default::<Value<u64>>("fresh").map(|_| ())
                            }
                            _ => r.get::<Value<u64>>("fresh").map(|_| ()),
                        };
                        format!("{res:?}")
                    },
                    |_| String::new(),
                );
                (j, Box::new(|| {}))
            });
        }
    }
    s.finish();
}
