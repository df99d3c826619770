//! Helpers shared by the criterion benches: settings (full or quick), a shared anonymous
//! mapping for any type, a fork-based multi-process runner with a start gate in shared
//! memory, a scoped-thread runner with a start barrier, and glibc's process-shared
//! `pthread_mutex_t` / `pthread_cond_t` / `pthread_barrier_t` and POSIX `sem_t` placed in
//! such a mapping (the alternatives a C programmer would use).
//!
//! Timing model for the concurrent benches: one criterion *iteration* is one operation by
//! *each* worker, so `iters` iterations are `workers * iters` operations, and the reported
//! time per iteration is wall time / `iters`. Throughputs are compared between benches with
//! the same number of workers only.
#![allow(dead_code)]

use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};

/// True when `SHMSTATE_BENCH_QUICK` is set (to anything but `0`): a smoke run with tiny
/// measurement times, to check that every bench runs and counts right.
pub fn quick() -> bool {
    std::env::var_os("SHMSTATE_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Criterion settings for the whole suite; groups tighten them with [`tune`].
pub fn criterion() -> Criterion {
    let c = Criterion::default().noise_threshold(0.03);
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c.sample_size(30)
            .warm_up_time(Duration::from_millis(700))
            .measurement_time(Duration::from_secs(2))
    }
}

/// The name of the group being measured, for warnings.
static CURRENT_GROUP: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// `c.benchmark_group(name)`, remembering the name for warnings.
pub fn group<'a>(c: &'a mut Criterion, name: impl Into<String>) -> BenchmarkGroup<'a, WallTime> {
    let name = name.into();
    *CURRENT_GROUP.lock().unwrap() = name.clone();
    c.benchmark_group(name)
}

/// How heavy a group's benches are: single-thread loops are cheap to sample; forked or
/// threaded ones pay a start-up per sample, so they take fewer, longer samples.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// A plain loop in this thread.
    Single,
    /// Threads or processes started per sample.
    Spawning,
    /// One point of a worker-count sweep ([`SWEEP`]): processes started per sample, with
    /// fewer, shorter samples than [`Weight::Spawning`], as a sweep has many points.
    Sweep,
}

/// The worker counts of the scaling sweeps: 1, 2, 4 and 8 processes. On a machine with
/// fewer cores than workers, the larger points measure oversubscription (time-slicing),
/// not contention between running cores.
pub const SWEEP: [Workers; 4] = [
    Workers::Processes(1),
    Workers::Processes(2),
    Workers::Processes(4),
    Workers::Processes(8),
];

/// Applies the suite's settings for a group of `weight` (unless in quick mode, where
/// [`criterion`]'s settings already apply).
pub fn tune(group: &mut BenchmarkGroup<'_, WallTime>, weight: Weight) {
    if quick() {
        return;
    }
    // Sized so that `benches/run_all.sh` (about 200 benches, then the Python comparisons)
    // stays within 15 minutes on 2 cores: criterion's medians of 30 (or 20, 10) samples
    // are as stable with these times as with the earlier 1 s + 3-4 s (the published
    // runs' single-thread rows repeat within a few percent either way), and every bench
    // is an operation of nanoseconds to tens of microseconds, so even 1.5 s holds tens
    // of thousands of iterations or more.
    match weight {
        Weight::Single => {
            group
                .sample_size(30)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_millis(1500));
        }
        Weight::Spawning => {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_millis(2500));
        }
        Weight::Sweep => {
            // Criterion's minimum sample size; about 1.8 s per bench with its warm-up.
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_millis(1500));
        }
    }
}

/// A size that shrinks in quick mode.
pub fn size(full: usize, quick_size: usize) -> usize {
    if quick() { quick_size } else { full }
}

// ---------------------------------------------------------------------------------------
// Shared anonymous memory.

/// One `T` in anonymous `MAP_SHARED` memory: children forked after it is made see the same
/// bytes. Unlike the crate's regions it takes any type, for the alternatives (a std atomic,
/// a glibc mutex) as well.
pub struct Shm<T: ?Sized> {
    ptr: NonNull<T>,
    size: usize,
}

// SAFETY: `Shm` only hands out `&T`; sharing it is as safe as sharing `&T`.
unsafe impl<T: ?Sized + Sync> Sync for Shm<T> {}
// SAFETY: as above; the mapping is not tied to a thread.
unsafe impl<T: ?Sized + Sync> Send for Shm<T> {}

fn map_shared(size: usize) -> NonNull<u8> {
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(raw != libc::MAP_FAILED, "mmap failed");
    NonNull::new(raw.cast()).expect("mmap returned null")
}

impl<T> Shm<T> {
    /// Moves `value` into a new shared mapping.
    pub fn new(value: T) -> Self {
        Self::new_in_place(|p| {
            // SAFETY: `p` is valid for a write of `T` and aligned (page-aligned mapping).
            unsafe { p.write(value) }
        })
    }

    /// A new shared mapping whose `T` is initialised in place by `init` (for types such as
    /// `pthread_mutex_t` that must not move after initialisation). `init` gets a pointer to
    /// zeroed, page-aligned memory for one `T` and must leave a valid `T` there.
    pub fn new_in_place(init: impl FnOnce(*mut T)) -> Self {
        assert!(align_of::<T>() <= 4096);
        let size = size_of::<T>().max(1);
        let ptr = map_shared(size).cast::<T>();
        init(ptr.as_ptr());
        Shm { ptr, size }
    }
}

impl<T: ?Sized + shmstate::Shared> Shm<T> {
    /// A zero-filled shmstate object of length `len` (1 for sized types), the state a
    /// region gives a fresh object.
    pub fn zeroed(len: usize) -> Self {
        let size = T::size_for(len).expect("valid length");
        let ptr = T::from_raw_parts(map_shared(size), len);
        Shm { ptr, size }
    }
}

impl<T: ?Sized> std::ops::Deref for Shm<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the mapping holds an initialised `T` (see the constructors), lives as
        // long as `self`, and is only shared by reference.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized> Drop for Shm<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made by the constructor; no reference
        // outlives `self`. The `T` is not dropped: every type placed here is plain data.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

// ---------------------------------------------------------------------------------------
// Runners.

/// The start gate in shared memory: children announce `ready`, wait for `go`, and count
/// `done`; the parent times from `go` to the last `done`, so neither fork nor exit is in
/// the measurement.
#[repr(C)]
struct Gate {
    ready: AtomicU32,
    go: AtomicU32,
    done: AtomicU32,
    failed: AtomicU32,
    stamps: Stamps,
}

/// Most workers a runner takes.
pub const MAX_WORKERS: usize = 8;

/// Each worker's start and end time (CLOCK_MONOTONIC nanoseconds, comparable between
/// processes), to check that the workers really ran at the same time.
#[repr(C)]
struct Stamps([[AtomicU64; 2]; MAX_WORKERS]);

impl Stamps {
    fn new() -> Self {
        Stamps(std::array::from_fn(|_| {
            [AtomicU64::new(0), AtomicU64::new(0)]
        }))
    }

    /// Runs `work` as worker `i`, recording its start and end.
    fn timed(&self, i: usize, work: impl FnOnce()) {
        // Relaxed: read only after the workers were joined or counted done (Release/Acquire).
        self.0[i][0].store(now_ns(), Ordering::Relaxed);
        work();
        self.0[i][1].store(now_ns(), Ordering::Relaxed);
    }

    /// The fraction of the span from the first start to the last end during which all `n`
    /// workers were running (1 = perfectly together, 0 = one after the other).
    fn overlap(&self, n: usize) -> f64 {
        let s = &self.0[..n];
        let first = s
            .iter()
            .map(|w| w[0].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let last_start = s
            .iter()
            .map(|w| w[0].load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let first_end = s
            .iter()
            .map(|w| w[1].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let last = s
            .iter()
            .map(|w| w[1].load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        if last <= first {
            return 1.0;
        }
        first_end.saturating_sub(last_start) as f64 / (last - first) as f64
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long one sample may take before the runner kills its children and panics.
const SAMPLE_LIMIT: Duration = Duration::from_secs(120);

fn wait_for(word: &AtomicU32, target: u32, deadline: Instant) -> bool {
    loop {
        // Acquire pairs with the workers' Release increments: what they wrote before
        // counting themselves is visible once the count is seen.
        let v = word.load(Ordering::Acquire);
        if v >= target {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        shmstate::futex::wait(word, v, Some(Duration::from_millis(50)));
    }
}

/// Forks `n` processes that each run `work(i)` once, starting together; returns the wall
/// time from the start signal until the last one finished its work. Panics if a child
/// panicked or exited badly, or after [`SAMPLE_LIMIT`].
///
/// Fork safety: call only from the bench's main thread while no other thread is running
/// (criterion measures on one thread; the thread runner joins its threads before
/// returning), so no lock the child needs can be held by a thread that is not copied.
/// Children end with `_exit`.
pub fn run_processes(n: usize, work: impl Fn(usize)) -> (Duration, f64) {
    assert!(n <= MAX_WORKERS);
    let gate = Shm::new(Gate {
        ready: AtomicU32::new(0),
        go: AtomicU32::new(0),
        done: AtomicU32::new(0),
        failed: AtomicU32::new(0),
        stamps: Stamps::new(),
    });
    let mut pids = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the child runs only `work` and the gate protocol, then leaves with
        // `_exit`; no other thread of this process holds a lock at this point (see above).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // Release pairs with the parent's Acquire in `wait_for`.
            gate.ready.fetch_add(1, Ordering::Release);
            shmstate::futex::wake_all(&gate.ready);
            // Acquire pairs with the parent's Release store of `go` (what it set up before
            // the start is visible).
            while gate.go.load(Ordering::Acquire) == 0 {
                shmstate::futex::wait(&gate.go, 0, Some(Duration::from_millis(50)));
            }
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gate.stamps.timed(i, || work(i))
            }))
            .is_ok();
            if !ok {
                // Relaxed: read by the parent only after `done`'s Release/Acquire.
                gate.failed.fetch_add(1, Ordering::Relaxed);
            }
            // Release pairs with the parent's Acquire: the child's writes to shared
            // memory are visible to the parent's final count check.
            gate.done.fetch_add(1, Ordering::Release);
            shmstate::futex::wake_all(&gate.done);
            // SAFETY: ends the child without unwinding into criterion or running the
            // parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        pids.push(pid);
    }
    let deadline = Instant::now() + SAMPLE_LIMIT;
    let n32 = n as u32;
    let started = wait_for(&gate.ready, n32, deadline);
    let t0 = Instant::now();
    // Release pairs with the children's Acquire load of `go`.
    gate.go.store(1, Ordering::Release);
    shmstate::futex::wake_all(&gate.go);
    let finished = started && wait_for(&gate.done, n32, deadline);
    let elapsed = t0.elapsed();
    if !finished {
        for &pid in &pids {
            // SAFETY: killing our own children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let mut bad = Vec::new();
    for &pid in &pids {
        let mut status = 0;
        // SAFETY: a blocking wait on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bad.push((pid, status));
        }
    }
    assert!(finished, "children did not finish within {SAMPLE_LIMIT:?}");
    assert!(bad.is_empty(), "children failed: {bad:?}");
    (elapsed, gate.stamps.overlap(n))
}

/// Runs `work(i)` on `n` scoped threads that start together (a barrier); returns the wall
/// time from the barrier until all have finished, and the workers' overlap.
pub fn run_threads(n: usize, work: impl Fn(usize) + Sync) -> (Duration, f64) {
    assert!(n <= MAX_WORKERS);
    let stamps = Stamps::new();
    let barrier = Barrier::new(n + 1);
    let t0 = std::thread::scope(|s| {
        for i in 0..n {
            let (barrier, work, stamps) = (&barrier, &work, &stamps);
            s.spawn(move || {
                barrier.wait();
                stamps.timed(i, || work(i));
            });
        }
        barrier.wait();
        Instant::now()
    });
    (t0.elapsed(), stamps.overlap(n))
}

/// Where a concurrent bench runs its workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Scoped threads of this process.
    Threads(usize),
    /// Forked processes sharing anonymous `MAP_SHARED` memory.
    Processes(usize),
}

impl Workers {
    /// The number of workers.
    pub fn count(self) -> usize {
        match self {
            Workers::Threads(n) | Workers::Processes(n) => n,
        }
    }

    /// Runs `work(i)` once on each worker; the wall time and overlap as for
    /// [`run_threads`] / [`run_processes`].
    ///
    /// With `SHMSTATE_BENCH_PIN` set in the environment, worker `i` first pins itself to
    /// CPU `i` modulo the CPUs this process may use (`sched_setaffinity`), so that the
    /// scheduler cannot move two communicating workers onto one core or between cores
    /// mid-sample: the pinned rows show the hardware's cost without the scheduler's.
    pub fn run(self, work: impl Fn(usize) + Sync) -> (Duration, f64) {
        let pin = std::env::var_os("SHMSTATE_BENCH_PIN").is_some();
        let work = |i: usize| {
            if pin {
                pin_to_cpu(i);
            }
            work(i)
        };
        match self {
            Workers::Threads(n) => run_threads(n, work),
            Workers::Processes(n) => run_processes(n, work),
        }
    }

    /// `"2threads"` / `"2procs"`, for group names.
    pub fn label(self) -> String {
        match self {
            Workers::Threads(1) => "1thread".to_string(),
            Workers::Threads(n) => format!("{n}threads"),
            Workers::Processes(1) => "1proc".to_string(),
            Workers::Processes(n) => format!("{n}procs"),
        }
    }
}

/// Pins the calling thread to the `i`-th CPU (modulo the count) of those it may run on.
fn pin_to_cpu(i: usize) {
    // SAFETY: `cpu_set_t` is plain data, valid zeroed; `sched_getaffinity` and
    // `sched_setaffinity` read and write exactly one set of its size, for the calling
    // thread (pid 0).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        let Some(&cpu) = cpus.get(i % cpus.len().max(1)) else {
            return;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        libc::sched_setaffinity(0, size, &one);
    }
}

// ---------------------------------------------------------------------------------------
// glibc process-shared locks.

fn check(what: &str, rc: libc::c_int) {
    assert_eq!(
        rc,
        0,
        "{what} failed: {}",
        std::io::Error::from_raw_os_error(rc)
    );
}

/// A glibc `pthread_mutex_t` set up `PTHREAD_PROCESS_SHARED` (optionally
/// `PTHREAD_MUTEX_ROBUST`) guarding a `u64`: what a C program shares between processes.
/// Place it with [`PthreadMutex::new_shared`]; it must not move once initialised.
#[repr(C)]
pub struct PthreadMutex {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    data: UnsafeCell<u64>,
}

// SAFETY: `data` is only accessed with `mutex` held; the mutex itself is made for sharing.
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    /// A process-shared mutex in a new shared mapping; `robust` adds
    /// `PTHREAD_MUTEX_ROBUST` (owner death reported as `EOWNERDEAD`).
    pub fn new_shared(robust: bool) -> Shm<PthreadMutex> {
        Shm::new_in_place(|p: *mut PthreadMutex| {
            // SAFETY: `p` points to zeroed memory for a `PthreadMutex` at its final address;
            // the attribute object is initialised before use and destroyed after.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                check("mutexattr_init", libc::pthread_mutexattr_init(&mut attr));
                check(
                    "setpshared",
                    libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                );
                if robust {
                    check(
                        "setrobust",
                        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                    );
                }
                check(
                    "mutex_init",
                    libc::pthread_mutex_init(UnsafeCell::raw_get(&raw const (*p).mutex), &attr),
                );
                libc::pthread_mutexattr_destroy(&mut attr);
            }
        })
    }

    /// Locks, runs `f` on the data, unlocks. An `EOWNERDEAD` (robust mode) is answered
    /// with `pthread_mutex_consistent`, as a careful C program would.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        // SAFETY: the mutex was initialised in place by `new_shared` and never moves.
        let rc = unsafe { libc::pthread_mutex_lock(self.mutex.get()) };
        if rc == libc::EOWNERDEAD {
            // SAFETY: we own the mutex (EOWNERDEAD still acquires it).
            check("consistent", unsafe {
                libc::pthread_mutex_consistent(self.mutex.get())
            });
        } else {
            check("mutex_lock", rc);
        }
        // SAFETY: the mutex is held, so no one else accesses `data`.
        let r = f(unsafe { &mut *self.data.get() });
        // SAFETY: we hold the mutex.
        check("mutex_unlock", unsafe {
            libc::pthread_mutex_unlock(self.mutex.get())
        });
        r
    }

    /// Reads the data under the lock.
    pub fn get(&self) -> u64 {
        self.with(|v| *v)
    }

    /// Sets the data under the lock.
    pub fn set(&self, v: u64) {
        self.with(|d| *d = v);
    }

    /// The raw mutex, for `pthread_cond_wait`.
    pub fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.mutex.get()
    }
}

/// A glibc `pthread_cond_t` set up `PTHREAD_PROCESS_SHARED`, used with a [`PthreadMutex`].
#[repr(C)]
pub struct PthreadCond {
    cond: UnsafeCell<libc::pthread_cond_t>,
}

// SAFETY: made for sharing between threads and processes.
unsafe impl Sync for PthreadCond {}

impl PthreadCond {
    /// A process-shared condition variable in a new shared mapping.
    pub fn new_shared() -> Shm<PthreadCond> {
        Shm::new_in_place(|p: *mut PthreadCond| {
            // SAFETY: `p` points to zeroed memory for a `PthreadCond` at its final address;
            // the attribute object is initialised before use and destroyed after.
            unsafe {
                let mut attr: libc::pthread_condattr_t = std::mem::zeroed();
                check("condattr_init", libc::pthread_condattr_init(&mut attr));
                check(
                    "cond setpshared",
                    libc::pthread_condattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                );
                check(
                    "cond_init",
                    libc::pthread_cond_init(UnsafeCell::raw_get(&raw const (*p).cond), &attr),
                );
                libc::pthread_condattr_destroy(&mut attr);
            }
        })
    }

    /// Waits until `pred(data)` is false, with `m` locked around the check; then runs
    /// `then(data)` under the lock and signals all waiters.
    pub fn wait_while_then(
        &self,
        m: &PthreadMutex,
        mut pred: impl FnMut(u64) -> bool,
        then: impl FnOnce(&mut u64),
    ) {
        // SAFETY: both objects were initialised in place and never move; the mutex is
        // locked by this thread around `pthread_cond_wait` and the data access, and is
        // never robust here (no EOWNERDEAD to handle).
        unsafe {
            check("mutex_lock", libc::pthread_mutex_lock(m.raw()));
            while pred(*m.data.get()) {
                check(
                    "cond_wait",
                    libc::pthread_cond_wait(self.cond.get(), m.raw()),
                );
            }
            then(&mut *m.data.get());
            check(
                "cond_broadcast",
                libc::pthread_cond_broadcast(self.cond.get()),
            );
            check("mutex_unlock", libc::pthread_mutex_unlock(m.raw()));
        }
    }
}

/// A glibc `pthread_rwlock_t` set up `PTHREAD_PROCESS_SHARED` guarding a `T`: the
/// process-shared readers-writer lock of C (glibc has no robust one). Place it with
/// [`PthreadRwLock::new_shared`]; it must not move once initialised.
#[repr(C)]
pub struct PthreadRwLock<T> {
    lock: UnsafeCell<libc::pthread_rwlock_t>,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is read only under a read lock and written only under the write lock
// (and at construction); the lock itself is made for sharing.
unsafe impl<T: Send + Sync> Sync for PthreadRwLock<T> {}

impl<T: Copy> PthreadRwLock<T> {
    /// A process-shared rwlock holding `value` in a new shared mapping.
    pub fn new_shared(value: T) -> Shm<PthreadRwLock<T>> {
        Shm::new_in_place(|p: *mut PthreadRwLock<T>| {
            // SAFETY: `p` points to zeroed memory for a `PthreadRwLock<T>` at its final
            // address; the attribute object is initialised before use and destroyed after;
            // `data` is written before anyone can read it.
            unsafe {
                let mut attr: libc::pthread_rwlockattr_t = std::mem::zeroed();
                check("rwlockattr_init", libc::pthread_rwlockattr_init(&mut attr));
                check(
                    "rwlock setpshared",
                    libc::pthread_rwlockattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                );
                check(
                    "rwlock_init",
                    libc::pthread_rwlock_init(UnsafeCell::raw_get(&raw const (*p).lock), &attr),
                );
                libc::pthread_rwlockattr_destroy(&mut attr);
                UnsafeCell::raw_get(&raw const (*p).data).write(value);
            }
        })
    }

    /// Read-locks, copies the data, unlocks.
    #[inline]
    pub fn read(&self) -> T {
        // SAFETY: the lock was initialised in place by `new_shared` and never moves.
        check("rwlock_rdlock", unsafe {
            libc::pthread_rwlock_rdlock(self.lock.get())
        });
        // SAFETY: a read lock is held and nobody writes `data` after construction.
        let v = unsafe { *self.data.get() };
        // SAFETY: we hold a read lock.
        check("rwlock_unlock", unsafe {
            libc::pthread_rwlock_unlock(self.lock.get())
        });
        v
    }

    /// Write-locks, runs `f` on the data, unlocks.
    #[inline]
    pub fn write_with(&self, f: impl FnOnce(&mut T)) {
        // SAFETY: the lock was initialised in place by `new_shared` and never moves.
        check("rwlock_wrlock", unsafe {
            libc::pthread_rwlock_wrlock(self.lock.get())
        });
        // SAFETY: the write lock is held: nobody else reads or writes `data`.
        f(unsafe { &mut *self.data.get() });
        // SAFETY: we hold the write lock.
        check("rwlock_unlock", unsafe {
            libc::pthread_rwlock_unlock(self.lock.get())
        });
    }
}

/// A POSIX unnamed semaphore (`sem_init` with `pshared = 1`) in shared memory: glibc's
/// process-shared counting semaphore (an atomic count, a futex when it must wait).
#[repr(C)]
pub struct PosixSem {
    sem: UnsafeCell<libc::sem_t>,
}

// SAFETY: a process-shared `sem_t` is made for concurrent use through its pointer.
unsafe impl Sync for PosixSem {}

impl PosixSem {
    /// A process-shared semaphore with `permits` permits in a new shared mapping.
    pub fn new_shared(permits: u32) -> Shm<PosixSem> {
        Shm::new_in_place(|p: *mut PosixSem| {
            // SAFETY: `p` points to zeroed memory for a `PosixSem` at its final address,
            // which it never leaves.
            let rc =
                unsafe { libc::sem_init(UnsafeCell::raw_get(&raw const (*p).sem), 1, permits) };
            assert_eq!(
                rc,
                0,
                "sem_init failed: {}",
                std::io::Error::last_os_error()
            );
        })
    }

    /// `sem_wait`: takes a permit, waiting for one (retried on `EINTR`).
    #[inline]
    pub fn wait(&self) {
        // SAFETY: the semaphore was initialised in place by `new_shared` and never moves.
        while unsafe { libc::sem_wait(self.sem.get()) } != 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::Interrupted,
                "sem_wait failed: {e}"
            );
        }
    }

    /// `sem_post`: gives a permit back, waking a waiter if any.
    #[inline]
    pub fn post(&self) {
        // SAFETY: as in `wait`.
        let rc = unsafe { libc::sem_post(self.sem.get()) };
        assert_eq!(
            rc,
            0,
            "sem_post failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A glibc `pthread_barrier_t` set up `PTHREAD_PROCESS_SHARED`, in shared memory.
#[repr(C)]
pub struct PthreadBarrier {
    barrier: UnsafeCell<libc::pthread_barrier_t>,
}

// SAFETY: a process-shared barrier is made for concurrent use through its pointer.
unsafe impl Sync for PthreadBarrier {}

impl PthreadBarrier {
    /// A process-shared barrier for `parties` parties in a new shared mapping.
    pub fn new_shared(parties: u32) -> Shm<PthreadBarrier> {
        Shm::new_in_place(|p: *mut PthreadBarrier| {
            // SAFETY: `p` points to zeroed memory for a `PthreadBarrier` at its final
            // address; the attribute object is initialised before use and destroyed after.
            unsafe {
                let mut attr: libc::pthread_barrierattr_t = std::mem::zeroed();
                check(
                    "barrierattr_init",
                    libc::pthread_barrierattr_init(&mut attr),
                );
                check(
                    "barrier setpshared",
                    libc::pthread_barrierattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                );
                check(
                    "barrier_init",
                    libc::pthread_barrier_init(
                        UnsafeCell::raw_get(&raw const (*p).barrier),
                        &attr,
                        parties,
                    ),
                );
                libc::pthread_barrierattr_destroy(&mut attr);
            }
        })
    }

    /// `pthread_barrier_wait`; true for the one party per round that gets
    /// `PTHREAD_BARRIER_SERIAL_THREAD`.
    #[inline]
    pub fn wait(&self) -> bool {
        // SAFETY: the barrier was initialised in place by `new_shared` and never moves.
        let rc = unsafe { libc::pthread_barrier_wait(self.barrier.get()) };
        if rc == libc::PTHREAD_BARRIER_SERIAL_THREAD {
            return true;
        }
        check("barrier_wait", rc);
        false
    }
}

// ---------------------------------------------------------------------------------------
// Bench shapes that check their own results.

/// A single-thread bench of `op` run `iters` times in this thread; `reset` before and
/// `total` after, which must equal `iters` (so a fast wrong answer fails the run).
pub fn single<S: ?Sized, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    state: &S,
    reset: impl Fn(&S),
    op: impl Fn(&S) -> R,
    total: impl Fn(&S) -> u64,
) {
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            reset(state);
            let t0 = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(op(std::hint::black_box(state)));
            }
            let elapsed = t0.elapsed();
            assert_eq!(total(state), iters, "{id}: wrong final count");
            elapsed
        })
    });
}

/// A concurrent bench: each of `workers` runs `work(state, i, iters)`; `reset` before the
/// sample and, after it, `total(state)` must equal `per_iter * iters` (e.g. the number of
/// workers that count, times `iters`).
#[allow(clippy::too_many_arguments)]
pub fn concurrent<S: ?Sized + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    workers: Workers,
    per_iter: u64,
    state: &S,
    reset: impl Fn(&S),
    work: impl Fn(&S, usize, u64) + Sync,
    total: impl Fn(&S) -> u64,
) {
    let (mut samples, mut apart) = (0u32, 0u32);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            reset(state);
            let (elapsed, overlap) = workers.run(|i| work(state, i, iters));
            assert_eq!(total(state), per_iter * iters, "{id}: wrong final count");
            // Criterion's warm-up starts with tiny samples (1, 2, 4 .. iterations) where
            // thread or process start-up skew dominates; judge only real-sized samples.
            if elapsed >= MIN_JUDGED_SAMPLE {
                samples += 1;
                apart += u32::from(overlap < MIN_OVERLAP);
            }
            elapsed
        })
    });
    if workers.count() > 1 && apart * 10 > samples {
        // Parsed by benches/report.py: the result is listed as unreliable.
        eprintln!(
            "OVERLAP WARNING {}/{id}: in {apart} of {samples} samples the workers ran together \
             for less than {:.0}% of the time (busy machine?); this result is not a \
             measurement of contention",
            CURRENT_GROUP.lock().unwrap(),
            MIN_OVERLAP * 100.0
        );
    }
}

/// Samples shorter than this are not checked for overlap.
pub const MIN_JUDGED_SAMPLE: Duration = Duration::from_millis(5);

/// A concurrent sample whose workers ran together for less than this fraction of its
/// time did not measure contention (the machine had no free core for one of them).
pub const MIN_OVERLAP: f64 = 0.8;
