//! Who holds a lock: the calling thread's kernel thread id, cached, and a liveness probe.
//!
//! Locks record their owner's thread id (TID) in the lock word. Reading it with `gettid`
//! on every lock would be a syscall on the fast path, so it is cached in a thread-local.
//! A forked child's only thread has a new TID but inherits the parent thread's
//! thread-local; a `pthread_atfork` child handler clears the cache, so the child looks its
//! TID up again. (A child made by a raw `clone` syscall that bypasses libc's `fork` does
//! not run the handler and is not supported.)
//!
//! [`probe`] asks the kernel whether a TID still names a live thread (`kill(tid, 0)`).
//! Its limits, which every robust primitive inherits:
//! - all processes sharing a region must be in the same PID namespace (a TID from another
//!   namespace is meaningless here and reads as dead or as someone else);
//! - TIDs are reused: if the owner died and the kernel has handed its TID to a new thread
//!   before anyone probed, the owner reads as alive until that thread exits too. Every
//!   wait therefore has a timed variant.
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

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;
    use std::sync::Once;

    use crate::sync::{AtomicU32, Ordering};

    use rustix::process::Pid;
    #[cfg(not(miri))]
    use rustix::{io::Errno, process::test_kill_process};

    thread_local! {
        /// This thread's TID, or 0 if not looked up yet (or reset in a forked child).
        static TID: Cell<u32> = const { Cell::new(0) };
    }

    /// [`proc_is_ours`]'s answer for this process: `pid << 1 | ours` for the PID it was
    /// worked out for, or 0 if not worked out yet (or reset in a forked child). PIDs are
    /// below 2²², so this fits, and a valid entry is never 0.
    static PROC_IS_OURS: AtomicU32 = AtomicU32::new(0);

    static ATFORK: Once = Once::new();

    extern "C" fn reset_in_child() {
        // The child's single thread is the one that called fork; its cached TID is the
        // parent's. `try_with` cannot fail here (the thread is alive), and ignoring a
        // failure only means we keep looking up lazily.
        let _ = TID.try_with(|t| t.set(0));
        // The parent's answer was for the parent's PID (and the child may be in another
        // PID namespace, e.g. after `unshare(CLONE_NEWPID)` in the parent): ask again.
        // Relaxed: the child has a single thread; the atomic is only for other threads
        // the child may start later, which a thread spawn orders after this store.
        PROC_IS_OURS.store(0, Ordering::Relaxed);
    }

    /// Registers [`reset_in_child`] once per process, before anything it resets is cached.
    fn register_atfork() {
        ATFORK.call_once(|| {
            // SAFETY: `pthread_atfork` has no preconditions beyond valid function pointers;
            // `reset_in_child` is an `extern "C" fn()` that only touches a thread-local
            // `Cell` and an atomic (async-signal-safe in practice: no allocation, no locks).
            unsafe {
                libc::pthread_atfork(None, None, Some(reset_in_child));
            }
        });
    }

    /// The calling thread's TID: one thread-local read after the first call.
    #[inline]
    pub(crate) fn current() -> u32 {
        let t = TID.with(Cell::get);
        if t != 0 { t } else { current_slow() }
    }

    #[cold]
    fn current_slow() -> u32 {
        register_atfork();
        // A TID is a positive `pid_t`, so it fits in u32 and is never 0.
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        TID.with(|t| t.set(tid));
        #[cfg(miri)]
        miri_threads::register(tid);
        tid
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

    /// Whether `/proc/<id>/stat` names a zombie (`Z`) or dead (`X`) task. Any failure to
    /// read or parse it answers `false` (trust `kill`). Only called on slow paths.
    #[cold]
    #[cfg(not(miri))]
    fn is_zombie(id: u32) -> bool {
        // A `/proc` of another PID namespace (e.g. after `unshare --pid --fork` without
        // `--mount-proc`) would describe some other task under this number, and a false
        // "zombie" would let a waiter take a lock its live owner still holds.
        if !proc_is_ours() {
            return false;
        }
        let Ok(stat) = std::fs::read(format!("/proc/{id}/stat")) else {
            return false;
        };
        // "pid (comm) S ...": comm may hold any bytes, including ')' and spaces, so the
        // state is the first non-space byte after the *last* ')'.
        let Some(close) = stat.iter().rposition(|&b| b == b')') else {
            return false;
        };
        let state = stat[close + 1..].iter().find(|&&b| b != b' ');
        matches!(state, Some(b'Z' | b'X'))
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
        // Before caching anything a forked child must not inherit.
        register_atfork();
        let pid = current_pid();
        let ours = std::fs::read_link("/proc/self").is_ok_and(|p| {
            p.to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|n| n == pid)
        });
        // A PID is positive and below 2²² (PID_MAX_LIMIT), so the entry is non-zero and
        // keeps every bit. Relaxed: as in `proc_is_ours`; racing threads store the same.
        PROC_IS_OURS.store(pid << 1 | u32::from(ours), Ordering::Relaxed);
        ours
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

/// The region (not built under loom) names its temporary files after the PID.
#[cfg(not(loom))]
pub(crate) use imp::current_pid;
pub(crate) use imp::{current, probe};
#[cfg(all(test, not(loom)))]
use imp::{proc_is_ours, proc_is_ours_cached};

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
    #[inline]
    pub(crate) fn get(self) -> u32 {
        self.0.get()
    }

    /// Whether no live thread has this TID now (a syscall: slow paths only). See
    /// [`probe`] for the limits (TID reuse, PID namespaces, zombies).
    pub(crate) fn is_dead(self) -> bool {
        probe(self.get()) == Liveness::Dead
    }
}

/// Watches one holder across the probes of one wait: once a full [`probe`] has found the
/// same TID alive twice, a pidfd for that thread (`pidfd_open` with `PIDFD_THREAD`, Linux
/// 6.9+) makes each further probe one `poll`, about 0.2 µs instead of a `kill` and a
/// `/proc` read (about 4 µs).
///
/// A readable pidfd only says that *the watched thread* exited: the kernel may already have
/// handed its TID to a new thread, which may hold the lock by now. So a readable pidfd is
/// dropped and the number is probed in full, as without a watch. An unreadable one says the
/// watched thread, and so the number, is alive. A pidfd does not report a thread-group
/// leader that called `pthread_exit` while its other threads run on (it stays a zombie
/// until they end), which the `/proc` check of [`probe`] does: so every tenth probe of a
/// watched holder is a full one too. Where the pidfd cannot be had (a kernel before 6.9,
/// which the process then remembers, no fds left, Miri, loom), every probe is a full one.
#[derive(Default)]
pub(crate) struct Watch {
    /// The watched TID and its pidfd.
    #[cfg(not(any(loom, miri)))]
    fd: Option<(u32, rustix::fd::OwnedFd)>,
    /// A TID a full probe found alive: the next alive probe of it opens its pidfd (a
    /// holder seen once only, under ordinary contention, costs no `pidfd_open`).
    #[cfg(not(any(loom, miri)))]
    seen: u32,
    /// No fds left for this wait (`EMFILE`, `ENFILE`): probe in full from now on.
    #[cfg(not(any(loom, miri)))]
    no_fd: bool,
    probes: u32,
}

/// Set once `pidfd_open` with `PIDFD_THREAD` has been refused for good (an older kernel,
/// a seccomp filter): watches then never try again in this process.
#[cfg(not(any(loom, miri)))]
static PIDFD_REFUSED: crate::sync::AtomicBool = crate::sync::AtomicBool::new(false);

impl Watch {
    /// One probe in this many of a watched holder is a full [`probe`].
    #[cfg(not(any(loom, miri)))]
    pub(crate) const FULL_PROBE_EVERY: u32 = 10;

    /// Whether probes of a watched holder can be cheap in this process (a pidfd per
    /// holder), as far as it knows yet.
    pub(crate) fn cheap_probes() -> bool {
        #[cfg(not(any(loom, miri)))]
        {
            // Relaxed: a hint; a stale `false` costs one more refused `pidfd_open`.
            !PIDFD_REFUSED.load(crate::sync::Ordering::Relaxed)
        }
        #[cfg(any(loom, miri))]
        false
    }

    /// Whether `tid` no longer names a live thread.
    pub(crate) fn is_dead(&mut self, tid: Tid) -> bool {
        self.probes = self.probes.wrapping_add(1);
        #[cfg(not(any(loom, miri)))]
        if let Some((watched, fd)) = &self.fd
            && *watched == tid.get()
        {
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&zero)) {
                Ok(0) if !self.probes.is_multiple_of(Self::FULL_PROBE_EVERY) => return false,
                // Readable: the watched thread exited, and its number may name a new
                // thread already. Drop the pidfd and probe the number in full.
                Ok(n) if n > 0 => self.fd = None,
                // A full probe is due, or poll failed: probe in full.
                _ => {}
            }
        }
        let dead = tid.is_dead();
        #[cfg(not(any(loom, miri)))]
        if !dead && self.fd.as_ref().is_none_or(|(w, _)| *w != tid.get()) {
            self.fd = None;
            if self.seen == tid.get() && !self.no_fd && Self::cheap_probes() {
                self.fd = self.open(tid).map(|fd| (tid.get(), fd));
            }
            self.seen = tid.get();
        }
        dead
    }

    /// A pidfd for thread `tid`, or `None` (and remembers why) where it cannot be had.
    #[cfg(not(any(loom, miri)))]
    fn open(&mut self, tid: Tid) -> Option<rustix::fd::OwnedFd> {
        use rustix::io::Errno;
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        let pid = Pid::from_raw(i32::try_from(tid.get()).ok()?)?;
        match pidfd_open(pid, PidfdFlags::from_bits_retain(libc::PIDFD_THREAD)) {
            Ok(fd) => Some(fd),
            Err(Errno::MFILE | Errno::NFILE | Errno::NOMEM) => {
                self.no_fd = true;
                None
            }
            // Gone meanwhile: the next probe says so.
            Err(Errno::SRCH) => None,
            Err(_) => {
                // EINVAL (no PIDFD_THREAD before Linux 6.9), ENOSYS, EPERM: for good.
                // Relaxed: a hint (see `cheap_probes`).
                PIDFD_REFUSED.store(true, crate::sync::Ordering::Relaxed);
                None
            }
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn tid_is_cached_and_matches_the_kernel() {
        let t = current();
        assert_eq!(t, rustix::thread::gettid().as_raw_nonzero().get() as u32);
        assert_eq!(current(), t);
        let other = std::thread::spawn(current).join().unwrap();
        assert_ne!(other, t);
    }

    #[test]
    fn tid_parse_refuses_words_that_name_no_thread() {
        assert_eq!(Tid::parse(0), None);
        assert_eq!(Tid::parse(Tid::MAX + 1), None);
        assert_eq!(Tid::parse(u32::MAX), None);
        assert_eq!(Tid::parse(1).map(Tid::get), Some(1));
        assert_eq!(Tid::parse(Tid::MAX).map(Tid::get), Some(Tid::MAX));
        let me = Tid::parse(current()).expect("this thread's TID parses");
        assert!(!me.is_dead());
        assert!(crate::wait::holder_is_dead(0));
        assert!(crate::wait::holder_is_dead(u32::MAX));
        assert!(!crate::wait::holder_is_dead(current()));
    }

    /// A watched holder that is killed reads dead at the next probe (through its pidfd,
    /// before it is reaped), and a watch keeps one pidfd for the holder it watches.
    #[test]
    #[cfg_attr(miri, ignore = "fork and pidfd")]
    fn watch_sees_a_killed_holder_dead_through_its_pidfd() {
        // SAFETY: the child only parks until it is killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            loop {
                // SAFETY: `pause` has no preconditions.
                unsafe { libc::pause() };
            }
        }
        let tid = Tid::parse(pid as u32).expect("a pid parses");
        let mut w = Watch::default();
        // Alive twice: the watch opens its pidfd.
        assert!(!w.is_dead(tid));
        assert!(!w.is_dead(tid));
        if w.fd.is_none() {
            eprintln!("skipped the pidfd check: this kernel has no PIDFD_THREAD");
        }
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !w.is_dead(tid) {
            assert!(std::time::Instant::now() < deadline, "never read dead");
            std::thread::yield_now();
        }
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }

    /// A watched holder that exits and whose number the kernel hands to a new process
    /// before the next probe: the old pidfd is readable, but the number names a live
    /// thread, so the watch must not report it dead (a waiter would take a lock from a live
    /// holder). Forces the reuse through `ns_last_pid` (root only; skipped elsewhere, or if
    /// another process takes the number first every time).
    #[test]
    #[cfg_attr(miri, ignore = "fork, pidfd and /proc/sys")]
    fn watch_does_not_report_a_reused_tid_dead() {
        fn fork_parked() -> libc::pid_t {
            // SAFETY: the child only parks until it is killed.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                loop {
                    // SAFETY: `pause` has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            pid
        }
        fn kill_and_reap(pid: libc::pid_t) {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        for _ in 0..20 {
            let old = fork_parked();
            let tid = Tid::parse(old as u32).expect("a pid parses");
            let mut w = Watch::default();
            assert!(!w.is_dead(tid));
            assert!(!w.is_dead(tid));
            if w.fd.is_none() {
                kill_and_reap(old);
                eprintln!("skipped: no PIDFD_THREAD here");
                return;
            }
            kill_and_reap(old);
            // The next pid the kernel hands out is `old` again.
            if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", old - 1)).is_err() {
                eprintln!("skipped: cannot set ns_last_pid (not root)");
                return;
            }
            let new = fork_parked();
            if new != old {
                kill_and_reap(new);
                continue;
            }
            let answers: Vec<bool> = (0..3).map(|_| w.is_dead(tid)).collect();
            kill_and_reap(new);
            assert_eq!(
                answers, [false; 3],
                "a reused TID read dead through the old thread's pidfd"
            );
            return;
        }
        eprintln!("skipped: another process took the reused pid every time");
    }

    /// A thread-group leader that exited while another thread runs on is what a pidfd does
    /// not report: the watch's periodic full probe still does, within
    /// `FULL_PROBE_EVERY` probes (as `probe` does).
    #[test]
    #[cfg_attr(miri, ignore = "fork and pidfd")]
    fn watch_agrees_with_probe_on_a_leader_that_exited_beside_running_threads() {
        let mut go = [0i32; 2];
        // SAFETY: `go` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
        // SAFETY: the child starts a thread that parks, waits for the parent's byte, then
        // ends its main thread only.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            std::thread::spawn(|| {
                loop {
                    std::thread::park();
                }
            });
            let mut b = 0u8;
            // SAFETY: reads one byte into `b` from the pipe's read end.
            unsafe { libc::read(go[0], (&mut b as *mut u8).cast(), 1) };
            // SAFETY: ends only the calling (main) thread; the spawned one runs on.
            unsafe { libc::pthread_exit(std::ptr::null_mut()) };
        }
        let tid = Tid::parse(pid as u32).expect("a pid parses");
        let mut w = Watch::default();
        // Alive twice: the watch opens its pidfd for the leader now.
        assert!(!w.is_dead(tid));
        assert!(!w.is_dead(tid));
        // SAFETY: writes one byte to the pipe's write end.
        assert_eq!(unsafe { libc::write(go[1], [1u8].as_ptr().cast(), 1) }, 1);
        // Wait until `probe` sees the leader gone (a zombie), as the watch must then too.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe(pid as u32) == Liveness::Alive {
            assert!(std::time::Instant::now() < deadline, "probe never saw it");
            std::thread::yield_now();
        }
        let dead = (0..=2 * Watch::FULL_PROBE_EVERY).any(|_| w.is_dead(tid));
        // SAFETY: killing and reaping our own child; closing our pipe ends.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(go[0]);
            libc::close(go[1]);
        }
        assert!(dead, "the watch never saw the exited leader as probe does");
    }

    #[test]
    fn probe_sees_this_process_alive_and_garbage_dead() {
        assert_eq!(probe(current_pid()), Liveness::Alive);
        assert_eq!(probe(0), Liveness::Dead);
        assert_eq!(probe(u32::MAX), Liveness::Dead);
        // Above the kernel's PID_MAX_LIMIT (2^22): never a live id.
        assert_eq!(probe((1 << 22) + 1), Liveness::Dead);
    }

    /// In a PID namespace whose `/proc` is still the parent namespace's, `/proc/<n>/stat`
    /// describes some other task. Here it describes a zombie of the outer namespace while
    /// `n` names a live process inside: the probe must say alive (trust `kill`), or a
    /// waiter would take a lock from its live owner. Skipped where namespaces are not
    /// permitted.
    #[test]
    #[cfg_attr(miri, ignore = "fork, unshare and /proc")]
    fn probe_ignores_a_proc_of_another_pid_namespace() {
        assert!(proc_is_ours());
        // SAFETY: each child below only makes raw libc calls and ends with `_exit`.
        unsafe {
            // An unreaped (zombie) child of ours, outer pid `z`.
            let z = libc::fork();
            assert!(z >= 0);
            if z == 0 {
                libc::_exit(0);
            }
            let c = libc::fork();
            assert!(c >= 0);
            if c == 0 {
                if libc::unshare(libc::CLONE_NEWPID) != 0 {
                    libc::_exit(77);
                }
                let g = libc::fork();
                if g < 0 {
                    libc::_exit(77);
                }
                if g == 0 {
                    // Pid 1 of the new namespace, with the old `/proc`. Make the next pid
                    // here `z` (the zombie's number outside), and fork a live process there.
                    let last = format!("{}", z - 1);
                    if std::fs::write("/proc/sys/kernel/ns_last_pid", last).is_err() {
                        libc::_exit(77);
                    }
                    let h = libc::fork();
                    if h == 0 {
                        loop {
                            libc::pause();
                        }
                    }
                    if h != z {
                        libc::_exit(77);
                    }
                    let alive = probe(h as u32) == Liveness::Alive;
                    libc::kill(h, libc::SIGKILL);
                    libc::_exit(if alive { 0 } else { 1 });
                }
                let mut st = 0;
                libc::waitpid(g, &mut st, 0);
                libc::_exit(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    2
                });
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(c, &mut st, 0), c);
            libc::waitpid(z, &mut 0, 0);
            assert!(libc::WIFEXITED(st));
            match libc::WEXITSTATUS(st) {
                0 => {}
                77 => eprintln!("skipped: PID namespaces not permitted here"),
                s => panic!("a live process inside read as dead (status {s})"),
            }
        }
    }

    /// The `/proc` identity check is worked out once per process, and a forked child works
    /// it out again for its own PID instead of trusting its parent's answer.
    #[test]
    #[cfg_attr(miri, ignore = "fork and /proc")]
    fn proc_identity_is_cached_per_process_and_reset_in_a_forked_child() {
        assert!(proc_is_ours());
        let parent = current_pid();
        assert_eq!(proc_is_ours_cached(), Some((parent, true)));
        // SAFETY: the child only checks the cache (a readlink, a getpid) and ends with
        // `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = if proc_is_ours_cached().is_some() {
                1 // inherited the parent's answer
            } else if !proc_is_ours() {
                2
            } else if proc_is_ours_cached() != Some((current_pid(), true)) {
                3
            } else {
                0
            };
            // SAFETY: ends the child at once, without running the parent's handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: the child kept the parent's answer"
        );
        assert_eq!(proc_is_ours_cached(), Some((parent, true)));
    }

    #[test]
    #[cfg_attr(miri, ignore = "fork and /proc")]
    fn probe_sees_an_unreaped_child_as_dead() {
        // SAFETY: the child only calls `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: ends the child at once, without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        let pid = pid as u32;
        // The child exits but stays a zombie until reaped: `kill(pid, 0)` still succeeds,
        // so only the `/proc` state check can see it is dead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe(pid) == Liveness::Alive {
            assert!(
                std::time::Instant::now() < deadline,
                "zombie never read as dead"
            );
            std::thread::yield_now();
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    }
}
