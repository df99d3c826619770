//! Who holds a lock: the calling thread's kernel thread id, cached, and a liveness probe.
//!
//! Locks record their owner's thread id (TID) in the lock word. Reading it with `gettid`
//! on every lock would be a syscall on the fast path, so it is cached in a thread-local.
//! A forked child's only thread has a new TID but inherits the parent thread's
//! thread-local; a `pthread_atfork` child handler clears the cache, so the child looks its
//! TID up again. The handler is registered as the program starts (an ELF constructor, which
//! also runs when `dlopen` loads a library linking the crate), never lazily: a registration
//! racing a fork on another thread could leave the child stuck at its first lock. (A child made by a raw `clone` syscall that bypasses libc's `fork`, or
//! by glibc's `_Fork`, which skips the fork handlers by design, does not run the handler
//! and is not supported: it would act under its parent thread's id.)
//!
//! [`probe`] asks the kernel whether a TID still names a live thread (`kill(tid, 0)`).
//! Its limits, which every robust primitive inherits:
//! - all processes sharing a region must be in the same PID namespace (a TID from another
//!   namespace is meaningless here and reads as dead or as someone else);
//! - TIDs are reused: if the owner died and the kernel has handed its TID to a new thread
//!   before anyone probed, the owner reads as alive until that thread exits too. Every
//!   wait therefore has a timed variant. A lock word that also records its holder's
//!   *stamp* ([`current_stamped`], [`stamp_of`]: 8 bits of the holder thread's start
//!   time) is probed with [`probe_stamped`], which reads a live thread with another stamp
//!   as dead, and so leaves 1 reuse in 255 undetected. `RawMutex` words (and everything
//!   built on them), seqlock writer words and `RwLock` reader slots are stamped; an
//!   `RwLock` writer carries 5 bits of the stamp (its state word has no room for more:
//!   [`probe_started`] takes any test of the start time); the histogram's owner words
//!   (which carry a nonce of their own) are not.
//!
//! A process that was killed but not yet reaped by its parent is a zombie: `kill(pid, 0)`
//! still succeeds for it. The same holds for a main thread that called `pthread_exit`
//! while the other threads of its process run on. So when `kill` says "exists", [`probe`]
//! also reads the state letter of `/proc/<id>/stat` and counts a zombie (`Z`) or dead
//! (`X`) task as dead. Without `/proc` (or if it belongs to another PID namespace) that
//! refinement is skipped and unreaped owners read as alive until reaped. `/proc` counts as
//! this namespace's when `/proc/self` names the caller's own PID; that answer is cached per
//! process (the child handler that resets the TID cache after `fork` resets it too, since
//! a child may have entered another PID namespace), so a probe costs the `kill` and one
//! read of `/proc/<id>/stat`, not also a `readlink` of `/proc/self` every time.
//!
//! # Crash windows
//!
//! None of its own: it keeps no state in shared memory (a [`Watch`]'s pidfd is local to the
//! waiting thread and closed when its wait ends, however it ends). What a lock word holds
//! after a death is in each primitive's table.

mod watch;

pub(crate) use watch::Watch;

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;

    use crate::sync::{AtomicU32, Ordering};

    use rustix::process::Pid;
    #[cfg(not(miri))]
    use rustix::{io::Errno, process::test_kill_process};

    thread_local! {
        /// This thread's TID, or 0 if not looked up yet (or reset in a forked child).
        static TID: Cell<u32> = const { Cell::new(0) };
        /// This thread's stamped id ([`current_stamped`]), or 0 if not worked out yet (or
        /// reset in a forked child).
        static STAMPED: Cell<u32> = const { Cell::new(0) };
    }

    /// [`proc_is_ours`]'s answer for this process: `pid << 1 | ours` for the PID it was
    /// worked out for, or 0 if not worked out yet (or reset in a forked child). PIDs are
    /// below 2²², so this fits, and a valid entry is never 0.
    static PROC_IS_OURS: AtomicU32 = AtomicU32::new(0);

    extern "C" fn reset_in_child() {
        // The child's single thread is the one that called fork; its cached TID is the
        // parent's. `try_with` cannot fail here (the thread is alive), and ignoring a
        // failure only means we keep looking up lazily.
        let _ = TID.try_with(|t| t.set(0));
        // The child's thread started now: its stamp is not its parent thread's.
        let _ = STAMPED.try_with(|t| t.set(0));
        // The parent's answer was for the parent's PID (and the child may be in another
        // PID namespace, e.g. after `unshare(CLONE_NEWPID)` in the parent): ask again.
        // Relaxed: the child has a single thread; the atomic is only for other threads
        // the child may start later, which a thread spawn orders after this store.
        PROC_IS_OURS.store(0, Ordering::Relaxed);
        // Relaxed: as for `PROC_IS_OURS`.
        FORKS.fetch_add(1, Ordering::Relaxed);
    }

    /// Forks this process's line of ancestors has made: bumped in every forked child, so
    /// that a thread-local keyed by a thread's id can tell a forked child (which may have
    /// the same id as its parent thread, in a new PID namespace) from the thread it was
    /// copied from.
    static FORKS: AtomicU32 = AtomicU32::new(0);

    /// The count of forks that made this process (see [`FORKS`]): changes in every
    /// forked child, never within one process, as long as [`fork_counted`] says so.
    #[inline]
    pub(crate) fn fork_generation() -> u32 {
        // Relaxed: see `reset_in_child`.
        FORKS.load(Ordering::Relaxed)
    }

    /// Whether forks of this process run [`reset_in_child`], so that
    /// [`fork_generation`] changes in every forked child: a thread-local keyed by it is
    /// cached only then (registering now if it was not, as [`current`] does).
    #[inline]
    pub(crate) fn fork_counted() -> bool {
        // Acquire: as in `current_slow`.
        REGISTERED.load(Ordering::Acquire) != 0 || register()
    }

    /// Registers [`reset_in_child`] as the program starts (or as `dlopen` loads the
    /// library that links this crate, e.g. the Python extension): an ELF constructor, run
    /// before `main` and before anything it resets can be cached.
    ///
    /// Not lazily, at the first lookup: glibc's `fork` holds the lock `pthread_atfork`
    /// takes, so a registration racing a fork on another thread waits for it, and a child
    /// forked then would inherit a once-guard left mid-run by a thread it does not have,
    /// and stop for good at its own first lookup. A constructor runs before any thread of
    /// this crate's making exists, and registers exactly once per process (a forked child
    /// inherits the registration, and exec'd programs run their constructors anew).
    ///
    /// If it fails (`ENOMEM`), or the constructor did not run in this process (a child
    /// forked while `dlopen` ran it on another thread inherits neither the handler nor
    /// a second run), [`REGISTERED`] stays 0 and the first lookup of each thread
    /// registers again ([`register`]) before it caches its TID.
    extern "C" fn register_atfork() {
        register();
    }

    /// Whether [`reset_in_child`] is registered in this process: 1 once a registration
    /// returned success (a child inherits both the handler and this value).
    pub(super) static REGISTERED: AtomicU32 = AtomicU32::new(0);

    /// Registers [`reset_in_child`]; whether it is registered now. No once-guard (see
    /// [`register_atfork`]): a registration racing another, or racing a fork, at worst
    /// registers the handler twice, which is harmless (it only resets).
    fn register() -> bool {
        #[cfg(not(miri))]
        {
            // SAFETY: `pthread_atfork` has no preconditions beyond valid function
            // pointers; `reset_in_child` is an `extern "C" fn()` that only touches a
            // thread-local `Cell` and an atomic (async-signal-safe in practice: no
            // allocation, no locks).
            if unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) } != 0 {
                return false;
            }
        }
        // Release: pairs with the Acquire load in `current_slow`: a thread that caches
        // its TID on seeing 1 is ordered after the registration, so its forks run the
        // handler.
        REGISTERED.store(1, Ordering::Release);
        true
    }

    // SAFETY: an `.init_array` entry is called once by the dynamic loader (or the static
    // start-up code) with `argc, argv, envp`, which an `extern "C" fn()` ignores (the C
    // calling convention lets a callee take fewer arguments than passed). It runs before
    // `main`, when only libc is initialised: `register_atfork` calls only libc.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static REGISTER_ATFORK: extern "C" fn() = register_atfork;

    /// The calling thread's TID: one thread-local read after the first call.
    #[inline]
    pub(crate) fn current() -> u32 {
        let t = TID.with(Cell::get);
        if t != 0 { t } else { current_slow() }
    }

    #[cold]
    fn current_slow() -> u32 {
        // Cached only with the child handler registered, so that a fork child never keeps
        // this TID (else looked up each time). Acquire: pairs with the Release store of
        // `register`.
        // A TID is a positive `pid_t`, so it fits in u32 and is never 0.
        let gettid = || rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let tid = if REGISTERED.load(Ordering::Acquire) != 0 || register() {
            cache_checked(&TID, gettid)
        } else {
            gettid()
        };
        #[cfg(miri)]
        miri_threads::register(tid);
        tid
    }

    /// 1 once [`current_stamped`] found the fork handler unregistered: every id is
    /// unstamped from then on (a forked child inherits it).
    static NO_STAMPS: AtomicU32 = AtomicU32::new(0);

    /// The calling thread's TID with its start stamp (see [`super::stamp_of`]) in the
    /// bits [`super::STAMP_MASK`]: what a stamped lock word records for its holder. One
    /// thread-local read after the first call, which reads `/proc/<tid>/stat` once (stamp
    /// 0, "unknown", where `/proc` cannot tell: then the word is probed by its TID alone).
    #[inline]
    pub(crate) fn current_stamped() -> u32 {
        let s = STAMPED.with(Cell::get);
        if s != 0 { s } else { current_stamped_slow() }
    }

    #[cold]
    fn current_stamped_slow() -> u32 {
        // Cached only where a fork child resets it (as the TID in `current_slow`). Without
        // that, stamp 0 ("unknown": probed by the TID alone): a `/proc` read at every
        // lock would be a syscall on the fast path, and one that failed now and then
        // would change the thread's id between a lock and its unlock.
        // Acquire: as in `current_slow`. Once a registration failed, stamps stay off for
        // the process (Relaxed: a flag alone), so that a thread whose unstamped id is in a
        // lock word never unlocks it under a stamped one after a later registration.
        if NO_STAMPS.load(Ordering::Relaxed) != 0
            || REGISTERED.load(Ordering::Acquire) == 0 && !register()
        {
            NO_STAMPS.store(1, Ordering::Relaxed);
            return current();
        }
        cache_checked(&STAMPED, || {
            let tid = current();
            // A failed read is cached too (stamp 0), for the same reasons.
            let stamp = match stat(Some(tid)) {
                super::ProcStat::Known { start, .. } => super::stamp_of(start),
                _ => 0,
            };
            tid | stamp << super::STAMP_SHIFT
        })
    }

    /// Works the calling thread's id out with `look_up` and caches it in `cell`: stored,
    /// then the fork generation checked. A fork (by a signal handler) anywhere before the
    /// check left its child with its parent's id stored after its own reset: the child
    /// looks again. A fork after the check resets the child's copy itself.
    fn cache_checked(
        cell: &'static std::thread::LocalKey<Cell<u32>>,
        look_up: impl Fn() -> u32,
    ) -> u32 {
        loop {
            let forks = fork_generation();
            let id = look_up();
            cell.with(|c| c.set(id));
            if fork_generation() == forks {
                return id;
            }
            cell.with(|c| c.set(0));
        }
    }

    /// Which threads are alive, for [`probe`] under Miri, which can neither send signals
    /// nor read `/proc`: every thread that looked its TID up (only those TIDs reach a lock
    /// word) holds a slot until its thread-local destructors run at exit, so a thread that
    /// ends holding a lock reads as dead, as on the kernel, and the owner-death paths run
    /// under Miri too.
    ///
    /// The slots are `Relaxed` atomics on purpose: `kill(tid, 0)` creates no
    /// happens-before edge with the dead thread, and neither may this stand-in, or Miri
    /// would miss a missing `Acquire` on a takeover path. (A `Relaxed` store of the exit
    /// may be seen late; every caller probes again on its next slice, as after a real
    /// exit, whose TID can stay visible to `kill` for a moment.)
    #[cfg(miri)]
    mod miri_threads {
        use crate::sync::{AtomicU32, Ordering};

        /// Live threads at once that a Miri test may have; a thread beyond that is not
        /// tracked and probes as dead.
        const SLOTS: usize = 256;
        static LIVE: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

        /// Frees its slot when the thread's thread-locals are destroyed (at its exit).
        struct Slot(usize);

        impl Drop for Slot {
            fn drop(&mut self) {
                // Relaxed: see the module docs (no happens-before with the prober).
                LIVE[self.0].store(0, Ordering::Relaxed);
            }
        }

        thread_local! {
            static SLOT: std::cell::RefCell<Option<Slot>> = const { std::cell::RefCell::new(None) };
        }

        /// Records `tid` (the calling thread's) as alive until the thread exits.
        pub(super) fn register(tid: u32) {
            let _ = SLOT.try_with(|slot| {
                let mut slot = slot.borrow_mut();
                if slot.is_some() {
                    return;
                }
                // Relaxed: see the module docs.
                *slot = LIVE
                    .iter()
                    .position(|s| {
                        s.compare_exchange(0, tid, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    })
                    .map(Slot);
            });
        }

        /// Whether `tid` is a thread of this process that has not exited.
        pub(super) fn is_alive(tid: u32) -> bool {
            // Relaxed: see the module docs.
            LIVE.iter().any(|s| s.load(Ordering::Relaxed) == tid)
        }
    }

    /// The calling process's PID.
    pub(crate) fn current_pid() -> u32 {
        rustix::process::getpid().as_raw_nonzero().get() as u32
    }

    /// Whether thread or process `id` is alive, asked of the kernel.
    pub(crate) fn probe(id: u32) -> super::Liveness {
        let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) else {
            // 0 or > i32::MAX: no thread ever had this id (garbage in a lock word).
            return super::Liveness::Dead;
        };
        #[cfg(miri)]
        {
            // Miri cannot send signals or read `/proc`: this process and its threads that
            // have not exited (see `miri_threads`) are alive, every other id is dead (there
            // is no other process under Miri).
            let _ = pid;
            return if id == current_pid() || miri_threads::is_alive(id) {
                super::Liveness::Alive
            } else {
                super::Liveness::Dead
            };
        }
        #[cfg(not(miri))]
        match test_kill_process(pid) {
            Ok(()) | Err(Errno::PERM) if is_zombie(id) => super::Liveness::Dead,
            Ok(()) | Err(Errno::PERM) => super::Liveness::Alive,
            Err(Errno::SRCH) => super::Liveness::Dead,
            Err(_) => super::Liveness::Alive,
        }
    }

    /// Whether the thread a stamped word names (TID in [`super::STAMPED_TID_MASK`], stamp
    /// in [`super::STAMP_MASK`]) is alive: as [`probe`], and a live TID whose start time
    /// does not give the word's stamp (a nonzero one) is a new thread that reused a dead
    /// one's TID: dead. The start time comes from the `/proc/<tid>/stat` read that the
    /// zombie check makes anyway, so a match costs nothing more; a mismatch counts only if
    /// the thread is in this process's time namespace (see [`probe_started`]).
    pub(crate) fn probe_stamped(bits: u32) -> super::Liveness {
        let stamp = (bits & super::STAMP_MASK) >> super::STAMP_SHIFT;
        probe_started(bits & super::STAMPED_TID_MASK, |start| {
            stamp == 0 || super::stamp_of(start) == stamp
        })
    }

    /// Whether thread `id` is alive, as [`probe`], and `started(start)` says that its
    /// start time (clock ticks since boot) is the holder's: a live thread for which it
    /// says no reused a dead holder's TID, and reads dead, if it is in this process's
    /// time namespace (else its start time is shown shifted, and a live holder would read
    /// dead). Where `/proc` cannot tell, the TID alone answers.
    pub(crate) fn probe_started(id: u32, started: impl FnOnce(u64) -> bool) -> super::Liveness {
        #[cfg(miri)]
        {
            let _ = started;
            return probe(id);
        }
        #[cfg(not(miri))]
        {
            let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) else {
                return super::Liveness::Dead;
            };
            match test_kill_process(pid) {
                Ok(()) | Err(Errno::PERM) => match stat(Some(id)) {
                    super::ProcStat::Known {
                        state: b'Z' | b'X', ..
                    } => super::Liveness::Dead,
                    super::ProcStat::Known { start, .. }
                        if !started(start) && same_time_namespace(id) =>
                    {
                        super::Liveness::Dead
                    }
                    _ => super::Liveness::Alive,
                },
                Err(Errno::SRCH) => super::Liveness::Dead,
                Err(_) => super::Liveness::Alive,
            }
        }
    }

    /// Whether thread or process `id` exists, by `kill(id, 0)` alone: `EPERM` (another
    /// user's) and any error but `ESRCH` read alive; a zombie reads alive too (the caller
    /// refines that with [`stat`]).
    pub(crate) fn kill_probe(id: u32) -> super::Liveness {
        let Some(pid) = i32::try_from(id).ok().and_then(Pid::from_raw) else {
            return super::Liveness::Dead;
        };
        #[cfg(miri)]
        {
            let _ = pid;
            return probe(id);
        }
        #[cfg(not(miri))]
        match test_kill_process(pid) {
            Err(Errno::SRCH) => super::Liveness::Dead,
            _ => super::Liveness::Alive,
        }
    }

    /// Whether `/proc/<id>/stat` names a zombie (`Z`) or dead (`X`) task. Any failure to
    /// read or parse it answers `false` (trust `kill`). Only called on slow paths.
    #[cold]
    #[cfg(not(miri))]
    fn is_zombie(id: u32) -> bool {
        // A `/proc` of another PID namespace (e.g. after `unshare --pid --fork` without
        // `--mount-proc`) would describe some other task under this number, and a false
        // "zombie" would let a waiter take a lock its live owner still holds.
        // `stat` answers `Unknown` for such a `/proc` (and reads without allocating: a
        // probe runs on the slow paths of every robust primitive).
        matches!(
            stat(Some(id)),
            super::ProcStat::Known {
                state: b'Z' | b'X',
                ..
            }
        )
    }

    /// Whether `/proc` is mounted for the calling process's PID namespace: `/proc/self`
    /// names the calling process by the PID it knows itself by. (`/proc/self` is missing or
    /// names another number in a `/proc` of an ancestor or unrelated namespace.)
    ///
    /// Worked out once per process (a `readlink` and a `getpid`), then one atomic load.
    /// (A process that mounts or unmounts `/proc` after asking is not noticed.)
    pub(crate) fn proc_is_ours() -> bool {
        // Relaxed: the cached word is self-contained (no other data is published with it).
        let cached = PROC_IS_OURS.load(Ordering::Relaxed);
        if cached != 0 {
            return cached & 1 != 0;
        }
        proc_is_ours_slow()
    }

    #[cold]
    fn proc_is_ours_slow() -> bool {
        let pid = current_pid();
        // Into a stack buffer, not `std::fs::read_link`: no allocation, because the
        // region's fork prepare handler can get here (probing attach-table words), and an
        // allocator that registered its own fork handlers after this crate (jemalloc with
        // some link orders) holds its locks by then.
        let mut buf = [0u8; 16];
        // SAFETY: a NUL-terminated path and a writable buffer of `buf.len()` bytes;
        // `readlink` writes at most that many and returns how many (or -1).
        let n =
            unsafe { libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        let ours = usize::try_from(n)
            .ok()
            .filter(|&n| n < buf.len())
            .and_then(|n| core::str::from_utf8(&buf[..n]).ok())
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|n| n == pid);
        // A PID is positive and below 2²² (PID_MAX_LIMIT), so the entry is non-zero and
        // keeps every bit. Relaxed: as in `proc_is_ours`; racing threads store the same.
        PROC_IS_OURS.store(pid << 1 | u32::from(ours), Ordering::Relaxed);
        ours
    }

    /// The start time of process `pid` (`None`: the calling process), in clock ticks
    /// since boot: field 22 of `/proc/<pid>/stat`. Makes no allocation (the region's
    /// fork child handler calls it for the new child).
    ///
    /// [`StartTime::Unknown`](super::StartTime::Unknown) without a `/proc` of this PID
    /// namespace (for the calling process: when `/proc/self/stat` does not name it), or
    /// when the file cannot be read or parsed.
    pub(crate) fn start_time(pid: Option<u32>) -> super::StartTime {
        match stat(pid) {
            super::ProcStat::Known { start, .. } => super::StartTime::Known(start),
            super::ProcStat::Gone => super::StartTime::Gone,
            super::ProcStat::Unknown => super::StartTime::Unknown,
        }
    }

    /// The state, thread count and start time of thread or process `pid` (`None`: the
    /// calling process): fields 3, 20 and 22 of `/proc/<pid>/stat`, with the same
    /// answers and limits as [`start_time`]. Makes no allocation.
    pub(crate) fn stat(pid: Option<u32>) -> super::ProcStat {
        #[cfg(miri)]
        {
            let _ = pid;
            super::ProcStat::Unknown
        }
        #[cfg(not(miri))]
        {
            use super::ProcStat;
            let me = current_pid();
            let fd = match open_proc(pid, b"/stat") {
                ProcFile::Open(fd) => fd,
                ProcFile::Gone => return ProcStat::Gone,
                ProcFile::Unknown => return ProcStat::Unknown,
            };
            // Fields 1 to 22 take well under 1 KiB (the command name is at most 16 bytes,
            // every other field a number).
            let mut buf = [0u8; 1024];
            let n = match rustix::io::read(&fd, &mut buf) {
                Ok(n) => n,
                Err(rustix::io::Errno::SRCH) => return ProcStat::Gone,
                Err(_) => return ProcStat::Unknown,
            };
            let stat = &buf[..n];
            // For the calling process, `/proc/self` must name it: otherwise this `/proc`
            // is another namespace's.
            if pid.is_none() {
                let first = stat.split(|&b| b == b' ').next().unwrap_or(&[]);
                if parse_u64(first) != Some(u64::from(me)) {
                    return ProcStat::Unknown;
                }
            }
            // "pid (comm) S f4 ... f22 ...": comm may hold any bytes, so count from the
            // last ')'. The state is field 3, the start time field 22.
            let Some(close) = stat.iter().rposition(|&b| b == b')') else {
                return ProcStat::Unknown;
            };
            let mut fields = stat[close + 1..]
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty());
            let state = fields.next().and_then(|f| f.first().copied());
            let threads = fields.nth(20 - 4).and_then(parse_u64);
            let start = fields.nth(22 - 21).and_then(parse_u64);
            match (state, threads, start) {
                (Some(state), Some(threads), Some(start)) => ProcStat::Known {
                    state,
                    threads,
                    start,
                },
                _ => ProcStat::Unknown,
            }
        }
    }

    /// The decimal number `digits` (ASCII only, no sign), or `None`.
    #[cfg(not(miri))]
    fn parse_u64(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(n)
    }

    /// What [`open_proc`] found.
    #[cfg(not(miri))]
    enum ProcFile {
        Open(rustix::fd::OwnedFd),
        /// No such file: no such thread (or, under `hidepid=2`, another user's).
        Gone,
        /// Cannot be told here (no `/proc` of this PID namespace, another error).
        Unknown,
    }

    /// Opens `/proc/<pid>/<file>` (`None`: `/proc/self/<file>`; `file` starts with `/`)
    /// for reading. Makes no allocation. A `/proc` of another PID namespace is refused for
    /// another process's file ([`proc_is_ours`]).
    #[cfg(not(miri))]
    fn open_proc(pid: Option<u32>, file: &[u8]) -> ProcFile {
        use rustix::fs::{Mode, OFlags};
        let mut path = [0u8; 32];
        let Some(cpath) = proc_path(pid, file, &mut path) else {
            return ProcFile::Unknown;
        };
        match rustix::fs::open(cpath, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => ProcFile::Open(fd),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::SRCH) => ProcFile::Gone,
            Err(_) => ProcFile::Unknown,
        }
    }

    /// `/proc/<pid>/<file>` (`None`: `/proc/self/<file>`; `file` starts with `/`) in
    /// `path`, without allocating; `None` for another process's file where `/proc` is
    /// another PID namespace's ([`proc_is_ours`]).
    #[cfg(not(miri))]
    fn proc_path<'a>(
        pid: Option<u32>,
        file: &[u8],
        path: &'a mut [u8; 32],
    ) -> Option<&'a core::ffi::CStr> {
        // "/proc/" + up to 10 digits + "/status" + NUL fits in 32 bytes.
        let mut digits = [0u8; 10];
        let name: &[u8] = match pid {
            None => b"self",
            Some(p) => {
                if !proc_is_ours() {
                    return None;
                }
                let mut n = p;
                let mut k = digits.len();
                loop {
                    k -= 1;
                    digits[k] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                &digits[k..]
            }
        };
        joined(&[b"/proc/", name, file], path)
    }

    /// `parts` one after another in `path`, NUL-terminated, without allocating; `None` if
    /// they do not fit or hold a NUL.
    #[cfg(not(miri))]
    fn joined<'a, const N: usize>(
        parts: &[&[u8]],
        path: &'a mut [u8; N],
    ) -> Option<&'a core::ffi::CStr> {
        let mut at = 0;
        for part in parts {
            path.get_mut(at..at + part.len())?.copy_from_slice(part);
            at += part.len();
        }
        *path.get_mut(at)? = 0;
        core::ffi::CStr::from_bytes_with_nul(&path[..=at]).ok()
    }

    /// The target of symbolic link `path` in `out` (its length), without allocating.
    #[cfg(not(miri))]
    fn link(path: &core::ffi::CStr, out: &mut [u8; 64]) -> Result<usize, rustix::io::Errno> {
        // SAFETY: a NUL-terminated path and a writable buffer of `out.len()` bytes;
        // `readlink` writes at most that many and returns how many (or -1).
        let n = unsafe { libc::readlink(path.as_ptr(), out.as_mut_ptr().cast(), out.len()) };
        match usize::try_from(n) {
            Ok(n) if n < out.len() => Ok(n),
            Ok(_) => Err(rustix::io::Errno::NAMETOOLONG),
            // `last_os_error` reads `errno`; it does not allocate.
            Err(_) => Err(rustix::io::Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            )),
        }
    }

    /// The calling thread's id as the mounted `/proc` numbers it: the last part of the
    /// target of `/proc/thread-self` (`<tgid>/task/<tid>`), read into `target`. A
    /// thread's entry directly under `/proc` (not the one under `task/`, which has no
    /// `timens_offsets`) shows that thread's own `ns/time_for_children` and
    /// `timens_offsets`, whichever thread of its process it is, and outlives the main
    /// thread's exit. `None` if the link does not end in a thread id; no allocation.
    #[cfg(not(miri))]
    fn own_proc_tid(target: &mut [u8; 64]) -> Result<Option<&[u8]>, rustix::io::Errno> {
        let n = link(c"/proc/thread-self", target)?;
        let tid = target[..n]
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or_default();
        let digits = (1..=10).contains(&tid.len()) && tid.iter().all(u8::is_ascii_digit);
        Ok(digits.then_some(tid))
    }

    /// The text of a `timens_offsets` file that shows the calling thread's own time
    /// namespace, in `buf`. A thread's file shows the namespace its children get (its
    /// `ns/time_for_children`), which is another than its own (`/proc/thread-self/ns/time`)
    /// after an `unshare(CLONE_NEWTIME)` by the thread, or by the thread that made it.
    /// Every thread of a process is in one time namespace, so any thread's file that shows
    /// it will do: the calling thread's own first (through its `/proc/<tid>` entry,
    /// [`own_proc_tid`], which another thread's `unshare` or exit does not change), then
    /// the main thread's (`/proc/self`, for a thread that unshared while the main thread
    /// did not). No allocation.
    ///
    /// `Err` if a call failed (the caller tells a failure that may pass from one that
    /// will not); [`TimensOffsets::Unknowable`](super::TimensOffsets::Unknowable) where
    /// neither file shows the thread's own namespace.
    #[cfg(not(miri))]
    pub(crate) fn timens_offsets(
        buf: &mut [u8; 256],
    ) -> Result<super::TimensOffsets, rustix::io::Errno> {
        use super::TimensOffsets;
        let mut own = [0u8; 64];
        let n = match link(c"/proc/thread-self/ns/time", &mut own) {
            Ok(n) => n,
            // No time namespaces on this kernel (before Linux 5.6): one clock for all.
            // (So reads a thread without a `/proc` that shows it: the offset cannot be
            // told then either way.)
            Err(rustix::io::Errno::NOENT) => return Ok(TimensOffsets::NoNamespaces),
            Err(e) => return Err(e),
        };
        let own = &own[..n];
        let (mut target, mut children, mut offsets) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        if let Some(tid) = own_proc_tid(&mut target)?
            && let (Some(children), Some(offsets)) = (
                joined(&[b"/proc/", tid, b"/ns/time_for_children"], &mut children),
                joined(&[b"/proc/", tid, b"/timens_offsets"], &mut offsets),
            )
            && let Some(len) = offsets_if_own(children, offsets, own, buf)?
        {
            return Ok(TimensOffsets::Text(len));
        }
        let main = offsets_if_own(
            c"/proc/self/ns/time_for_children",
            c"/proc/self/timens_offsets",
            own,
            buf,
        );
        match main {
            Ok(Some(len)) => Ok(TimensOffsets::Text(len)),
            // The main thread's entry shows another namespace, or is gone (it exited).
            Ok(None) | Err(rustix::io::Errno::NOENT) => Ok(TimensOffsets::Unknowable),
            Err(e) => Err(e),
        }
    }

    /// The text of the `timens_offsets` file at `offsets` in `buf` (its length), if the
    /// `ns/time_for_children` link at `children` (the same thread's) names `own` before
    /// and after the read (a thread may `unshare` meanwhile); `None` if not.
    #[cfg(not(miri))]
    fn offsets_if_own(
        children: &core::ffi::CStr,
        offsets: &core::ffi::CStr,
        own: &[u8],
        buf: &mut [u8; 256],
    ) -> Result<Option<usize>, rustix::io::Errno> {
        use rustix::fs::{Mode, OFlags};
        let mut shown = [0u8; 64];
        let m = link(children, &mut shown)?;
        if own != &shown[..m] {
            return Ok(None);
        }
        let fd = rustix::fs::open(offsets, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        // Two lines of at most 40 bytes each: one read takes them all.
        let len = rustix::io::read(&fd, &mut buf[..])?;
        let again = link(children, &mut shown)?;
        Ok((own == &shown[..again]).then_some(len))
    }

    /// Whether thread `id` sees start times as the calling process does, so that a stamp
    /// it worked out for itself can be checked against the start time `/proc` shows here:
    /// `/proc` shifts start times by the *reader's* time namespace, so two processes in
    /// different ones see different start times for one thread. True if both are in one
    /// time namespace, or if the kernel has no time namespaces; false where it cannot be
    /// told ([`shares_time_namespace`] says `None`).
    #[cfg(not(miri))]
    fn same_time_namespace(id: u32) -> bool {
        shares_time_namespace(id) == Some(true)
    }

    /// Whether thread `id` is in the calling thread's time namespace
    /// (`/proc/<id>/ns/time` against `/proc/thread-self/ns/time`): `Some(true)` if so, or
    /// if the kernel has no time namespaces; `Some(false)` if it is in another; `None`
    /// where it cannot be told (another user's or a non-dumpable thread, whose link needs
    /// ptrace access; no `/proc`). No allocation; two `readlink`s, for probe paths only
    /// where a start time does not match.
    #[cfg(not(miri))]
    pub(crate) fn shares_time_namespace(id: u32) -> Option<bool> {
        let (mut own, mut its) = ([0u8; 64], [0u8; 64]);
        // The calling thread's own: `/proc/self` is the main thread, whose entry is gone
        // once it has exited while other threads run on (`ENOENT`, which must not read as
        // "no time namespaces").
        match link(c"/proc/thread-self/ns/time", &mut own) {
            Ok(n) => {
                let mut path = [0u8; 32];
                let p = proc_path(Some(id), b"/ns/time", &mut path)?;
                let m = link(p, &mut its).ok()?;
                Some(own[..n] == its[..m])
            }
            // No time namespaces on this kernel (before Linux 5.6): one clock for all.
            Err(rustix::io::Errno::NOENT) => Some(true),
            Err(_) => None,
        }
    }

    /// Under Miri there is one clock (and no `/proc` to compare).
    #[cfg(miri)]
    pub(crate) fn shares_time_namespace(_id: u32) -> Option<bool> {
        Some(true)
    }

    /// The process (thread-group id) that thread `tid` belongs to: the `Tgid:` line of
    /// `/proc/<tid>/status`. `None` where it cannot be told: no `/proc` of this PID
    /// namespace, no such thread (gone, or another user's under `hidepid=2`), an
    /// unreadable or unparsable file. Slow paths only (an open and a read).
    pub(crate) fn thread_group(tid: u32) -> Option<u32> {
        #[cfg(miri)]
        {
            let _ = tid;
            None
        }
        #[cfg(not(miri))]
        {
            let ProcFile::Open(fd) = open_proc(Some(tid), b"/status") else {
                return None;
            };
            // `Tgid:` is the fourth line, after `Name:` (at most 64 bytes escaped),
            // `Umask:` and `State:`: well within 512 bytes.
            let mut buf = [0u8; 512];
            let n = rustix::io::read(&fd, &mut buf).ok()?;
            let line = buf[..n]
                .split(|&b| b == b'\n')
                .find_map(|l| l.strip_prefix(b"Tgid:"))?;
            let digits = line.trim_ascii();
            let tgid = u32::try_from(parse_u64(digits)?).ok()?;
            (tgid != 0).then_some(tgid)
        }
    }

    /// The cached answer of [`proc_is_ours`]: `Some((pid it was worked out for, answer))`.
    #[cfg(test)]
    pub(crate) fn proc_is_ours_cached() -> Option<(u32, bool)> {
        // Relaxed: a test's snapshot.
        let cached = PROC_IS_OURS.load(Ordering::Relaxed);
        (cached != 0).then_some((cached >> 1, cached & 1 != 0))
    }
}

#[cfg(loom)]
mod imp {
    use loom::sync::atomic::{AtomicU32, Ordering};

    loom::lazy_static! {
        static ref NEXT: AtomicU32 = AtomicU32::new(1);
    }
    loom::thread_local! {
        static TID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    /// A per-loom-thread id starting at 1.
    pub(crate) fn current() -> u32 {
        TID.with(|t| *t)
    }

    /// As [`current`]: loom threads have no start time (stamp 0, "unknown").
    pub(crate) fn current_stamped() -> u32 {
        current()
    }

    /// As [`probe`] for the TID bits (stamp 0 is all a loom model writes).
    pub(crate) fn probe_stamped(bits: u32) -> super::Liveness {
        probe(bits & super::STAMPED_TID_MASK)
    }

    /// As [`probe`] (loom threads have no start time).
    pub(crate) fn probe_started(id: u32, _started: impl FnOnce(u64) -> bool) -> super::Liveness {
        probe(id)
    }

    /// Loom threads of a model never die: every id reads alive, except
    /// [`DEAD_UNDER_LOOM`](super::DEAD_UNDER_LOOM) and above, which models write into lock
    /// state to stand for a thread that died holding a lock.
    pub(crate) fn probe(id: u32) -> super::Liveness {
        if id >= super::DEAD_UNDER_LOOM {
            super::Liveness::Dead
        } else {
            super::Liveness::Alive
        }
    }
}

/// Under loom, the first of the ids that [`probe`] reports dead (loom threads are numbered
/// from 1, so none reaches it; it is below `PID_MAX_LIMIT`, so locks treat it as a TID).
#[cfg(loom)]
pub const DEAD_UNDER_LOOM: u32 = 1 << 20;

/// A thread of this process that stays alive until dropped (then it ends and is joined):
/// a live holder for unit tests, with the id it worked out for itself.
#[cfg(all(test, not(loom)))]
pub(crate) struct LiveThread {
    id: u32,
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(all(test, not(loom)))]
impl LiveThread {
    /// Starts the thread; `id` runs on it (`current_stamped`, say).
    pub(crate) fn start(id: fn() -> u32) -> LiveThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tx.send(id()).unwrap();
            let _ = done_rx.recv();
        });
        LiveThread {
            id: rx.recv().unwrap(),
            done: Some(done),
            thread: Some(thread),
        }
    }

    /// What `id` gave on the thread.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

#[cfg(all(test, not(loom)))]
impl Drop for LiveThread {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// For tests that need `/proc` to show other threads' processes.
#[cfg(all(test, not(loom)))]
pub(crate) use imp::proc_is_ours;
#[cfg(all(test, not(loom)))]
use imp::proc_is_ours_cached;
pub(crate) use imp::{current, current_stamped, probe, probe_stamped, probe_started};

/// Where a stamped lock word keeps its holder's stamp: 8 bits above a 22-bit TID.
pub(crate) const STAMP_SHIFT: u32 = 22;
/// The TID bits of a stamped word: a TID is below the kernel's `PID_MAX_LIMIT` (2^22).
pub(crate) const STAMPED_TID_MASK: u32 = (1 << STAMP_SHIFT) - 1;
/// The stamp bits of a stamped word.
pub(crate) const STAMP_MASK: u32 = 0xFF << STAMP_SHIFT;

/// The stamp of a thread that started `start` clock ticks after boot (field 22 of
/// `/proc/<tid>/stat`): 1 to 255, never 0 (which a word carries when its holder's start
/// time was unknown). Threads that started in consecutive ticks get different stamps, and
/// a new thread that got a dead one's TID (which takes a wrap of the PID space, seconds to
/// days) gets the same stamp with a chance of 1 in 255.
#[cfg(not(loom))]
#[inline]
pub(crate) const fn stamp_of(start: u64) -> u32 {
    (start % 255) as u32 + 1
}
/// The map's clock reads its time namespace's offset (not under Miri, which has no `/proc`).
#[cfg(not(any(loom, miri)))]
pub(crate) use imp::timens_offsets;
/// The region (not built under loom) names its temporary files after the PID, and
/// records the PID and start time of the processes that have it open.
#[cfg(not(loom))]
pub(crate) use imp::{
    current_pid, kill_probe, shares_time_namespace, start_time, stat, thread_group,
};
/// Histograms key their owner words by it (not built under loom, whose models do not fork).
#[cfg(not(loom))]
pub(crate) use imp::{fork_counted, fork_generation};

/// What [`timens_offsets`] found.
#[cfg(not(any(loom, miri)))]
pub(crate) enum TimensOffsets {
    /// The kernel has no time namespaces: one clock for all.
    NoNamespaces,
    /// The file's text, this long, in the caller's buffer.
    Text(usize),
    /// Cannot be told, for good: the file shows another namespace than the thread's own.
    Unknowable,
}

/// A kernel thread id (TID) as lock words record it: never 0, never above the kernel's
/// `PID_MAX_LIMIT` (2^22). Parsing a word's bits is how every primitive reads "which thread
/// holds this" from shared memory, whatever bytes a peer wrote there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tid(core::num::NonZeroU32);

impl Tid {
    /// The kernel's `PID_MAX_LIMIT`: no TID is larger.
    pub(crate) const MAX: u32 = 1 << 22;

    /// The TID that `bits` name, or `None` for 0 or a value beyond [`Tid::MAX`] (garbage:
    /// no thread ever had it).
    #[inline]
    pub(crate) fn parse(bits: u32) -> Option<Tid> {
        if bits > Self::MAX {
            return None;
        }
        core::num::NonZeroU32::new(bits).map(Tid)
    }

    /// The raw value, for a lock word.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn get(self) -> u32 {
        self.0.get()
    }

    /// Whether no live thread has this TID now (a syscall: slow paths only). See
    /// [`probe`] for the limits (TID reuse, PID namespaces, zombies).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_dead(self) -> bool {
        probe(self.get()) == Liveness::Dead
    }
}

/// The answer of `start_time`.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartTime {
    /// Clock ticks since boot.
    Known(u64),
    /// No such process.
    Gone,
    /// Cannot be told here (no `/proc` of this PID namespace, an unreadable file).
    Unknown,
}

/// The answer of `stat`: fields of `/proc/<pid>/stat`.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcStat {
    /// The fields, read.
    Known {
        /// The state letter (field 3): `R`, `S`, `Z` (zombie), `X` (dead), ...
        state: u8,
        /// The number of threads of its process (field 20).
        threads: u64,
        /// The start time in clock ticks since boot (field 22).
        start: u64,
    },
    /// No such process (or, where `/proc` is mounted `hidepid=2`, one of another user).
    Gone,
    /// Cannot be told here (no `/proc` of this PID namespace, an unreadable file).
    Unknown,
}

/// The answer of [`probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The id names a live thread or process (possibly a newer one that reused it).
    Alive,
    /// No thread or process has this id now.
    Dead,
}

#[cfg(all(test, not(loom)))]
mod tests;
