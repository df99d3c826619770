//! Support for tests that run real processes: a watchdog, a shared anonymous mapping, and
//! forked workers.
#![allow(dead_code)]

use std::io::Write;
use std::ptr::NonNull;
use std::time::Duration;

use shmstate::Shared;

/// Aborts the whole test process (and so fails the test) if it is still running after
/// `limit`: a bug fails instead of hanging CI. Children are killed by the parent's
/// `wait_all` timeout or die with their parent's process group.
pub fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        // Not `eprintln!`: it panics if stderr is a pipe whose reader is gone (a child
        // whose test process died), which would end this thread instead of the process.
        let _ = writeln!(
            std::io::stderr(),
            "watchdog: test exceeded {limit:?}, aborting"
        );
        std::process::abort();
    });
}

/// One `T` (of length `len`) in anonymous `MAP_SHARED` memory: shared with children
/// forked after it is made, zero-filled like a fresh region object.
pub struct SharedMem<T: ?Sized + Shared> {
    ptr: NonNull<T>,
    size: usize,
}

impl<T: ?Sized + Shared> SharedMem<T> {
    pub fn new(len: usize) -> Self {
        let size = T::size_for(len).expect("valid length");
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                size,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
            )
        }
        .expect("mmap");
        let ptr = T::from_raw_parts(NonNull::new(raw.cast()).unwrap(), len);
        SharedMem { ptr, size }
    }

    pub fn get(&self) -> &T {
        // SAFETY: the mapping is page-aligned (≥ T::ALIGN), zero-filled (valid by the
        // `Shared` contract), lives as long as `self`, and is only shared by reference.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + Shared> Drop for SharedMem<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

/// Forks `n` children; child `i` runs `f(i)` and exits 0, or 101 if `f` panics. Returns
/// their pids. Run tests that fork under nextest (one process per test) or with
/// `--test-threads=1`: a fork copies only the calling thread.
///
/// Each child is SIGKILLed when the thread that forked it ends (`die_with_parent`), so a
/// test that fails (a panic, `wait_all`'s limit, the watchdog's abort) leaves no child
/// running on: a worker that loops until told to stop would otherwise spin for the rest
/// of the CI run and slow every later test.
pub fn fork_children(n: usize, f: impl Fn(usize)) -> Vec<libc::pid_t> {
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut pids = Vec::new();
    for i in 0..n {
        // SAFETY: the child only runs `f` and exits with `_exit`, never returning into the
        // test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            die_with_parent(parent);
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_ok();
            // SAFETY: `_exit` ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) };
        }
        pids.push(pid);
    }
    pids
}

/// Reaps child `pid` (a watchdog bounds the wait): its exit code, `None` if it did not
/// exit (a signal).
pub fn exit_code(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

/// Forks a child that makes a new time namespace with `offsets` (written to
/// `/proc/self/timens_offsets`: `"boottime 7 0"` puts boot time 7 s ahead, so that its
/// `/proc` shows every start time shifted; `"monotonic 86400 0"` puts `CLOCK_MONOTONIC` a
/// day ahead) and runs `f` in a grandchild there, which exits with `f`'s code; the child
/// exits with that code, 4 where no time namespace can be made (`CAP_SYS_ADMIN`,
/// `CAP_SYS_TIME`, Linux 5.6), 5 if the grandchild did not exit. A test that counts a
/// region's handles forks it before the region exists, so that it inherits none; reap it
/// with [`exit_code`].
pub fn in_new_time_namespace(offsets: &str, f: impl Fn() -> i32) -> libc::pid_t {
    fork_children(1, |_| {
        // SAFETY: `unshare` changes only this process's namespaces; the offsets file is
        // written before any process enters the new namespace, as the kernel requires.
        let code = if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0
            || std::fs::write("/proc/self/timens_offsets", offsets).is_err()
        {
            4
        } else {
            // The new time namespace is for children.
            let grandchild = fork_children(1, |_| {
                let code = f();
                // SAFETY: ends the forked child at once.
                unsafe { libc::_exit(code) };
            })[0];
            exit_code(grandchild).unwrap_or(5)
        };
        // SAFETY: ends the forked child at once.
        unsafe { libc::_exit(code) };
    })[0]
}

/// Waits for `pids`; panics if any did not exit 0, or if they are not all done within
/// `limit` (then kills the stragglers first).
pub fn wait_all(pids: &[libc::pid_t], limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let mut failed = Vec::new();
    for &pid in pids {
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    failed.push((pid, status));
                }
                break;
            }
            if std::time::Instant::now() > deadline {
                for &p in pids {
                    // SAFETY: killing our own children.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                panic!("children did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(failed.is_empty(), "children failed: {failed:?}");
}

/// In a forked child: have the kernel SIGKILL this process when the parent *thread* that
/// forked it ends (Linux ties `PR_SET_PDEATHSIG` to that thread, not to the whole parent
/// process), so that a failing test's children do not outlive it (and keep its output
/// pipe open). Fork from the thread that outlives the children. Exits at once if the
/// parent is already gone.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` only sets a flag of the calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: `getppid` has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: `_exit` ends the child without unwinding into the test harness.
        unsafe { libc::_exit(1) };
    }
}

/// A fresh directory for one test's files, removed with everything in it on drop: in
/// /dev/shm (RAM) where that exists, else the system temp directory.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("shmstate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One zero-filled `T` (of length `len`) on the heap: what [`SharedMem`] gives a test that
/// does not fork, for Miri, which cannot `mmap(MAP_SHARED)`. A single-process test file
/// uses it under Miri with `#[cfg(miri)] use common::HeapMem as SharedMem;`.
pub struct HeapMem<T: ?Sized + Shared> {
    ptr: NonNull<T>,
    layout: std::alloc::Layout,
}

impl<T: ?Sized + Shared> HeapMem<T> {
    pub fn new(len: usize) -> Self {
        let size = T::size_for(len).expect("valid length");
        let layout = std::alloc::Layout::from_size_align(size, T::ALIGN).expect("layout");
        // SAFETY: `layout` has a non-zero size (`size_for` refuses empty objects).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let raw = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        HeapMem {
            ptr: T::from_raw_parts(raw, len),
            layout,
        }
    }

    pub fn get(&self) -> &T {
        // SAFETY: the allocation is aligned to `T::ALIGN`, `size_for(len)` bytes long,
        // zero-filled (valid by the `Shared` contract), lives as long as `self`, and is only
        // shared by reference.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + Shared> Drop for HeapMem<T> {
    fn drop(&mut self) {
        // SAFETY: frees exactly the allocation made in `new`, with its layout; no reference
        // outlives `self`.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
    }
}

/// [`watchdog`], except under Miri: Miri runs every test of a file in one slow process
/// (so a per-test limit would fire) and reports a thread still sleeping when `main` ends.
/// Files whose thread-only tests run under Miri import it as `watchdog`.
pub fn watchdog_unless_miri(limit: Duration) {
    if !cfg!(miri) {
        watchdog(limit);
    }
}

/// Polls until process `pid` is blocked in `futex` (asleep), or its syscall state cannot
/// be read (then the caller goes on: a test that needs the child asleep or dead gets the
/// weaker "running" case at worst, never a hang). Bounded by the test's watchdog.
pub fn wait_until_asleep_in_futex(pid: libc::pid_t) {
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(s) if s.starts_with(&format!("{} ", libc::SYS_futex)) => return,
            Ok(_) => std::thread::yield_now(),
            Err(_) => return,
        }
    }
}

/// Returns once child `pid` has stopped itself (SIGSTOP, at a failpoint); panics if it
/// ends first or takes more than 20 s.
pub fn wait_until_stopped(pid: libc::pid_t) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if r == pid {
            assert!(
                libc::WIFSTOPPED(status),
                "the child ended before its failpoint (status {status:#x})"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never reached its failpoint"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Forks a child that arms failpoint `p` and runs `f`; returns once the child has
/// stopped at `p` (a child that returns from `f` without reaching it exits 3, which fails
/// the wait).
#[cfg(shmstate_test_hooks)]
pub fn child_stopped_at(p: shmstate::failpoint::Point, f: impl Fn()) -> libc::pid_t {
    let pid = fork_children(1, |_| {
        shmstate::failpoint::arm(p);
        f();
        std::process::exit(3);
    })[0];
    wait_until_stopped(pid);
    pid
}

/// Kills `pid` (SIGKILL) and reaps it: a child forked by the calling test.
pub fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signalling and reaping a process the calling test forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Starts a thread of this process that parks for good; returns its TID and the stamp of
/// its start time as lock words record it beside the TID (bits 22..30): `(start % 255) +
/// 1`, where the start time is field 22 of `/proc/<tid>/stat`. `None` where `/proc` does
/// not show it (the caller skips).
pub fn live_thread_with_stamp() -> Option<(u32, u32)> {
    live_thread_with_start().map(|(tid, start)| (tid, (start % 255) as u32 + 1))
}

/// Starts a thread of this process that parks for good; returns its TID and its start
/// time (field 22 of `/proc/<tid>/stat`, clock ticks since boot). `None` where `/proc`
/// does not show it (the caller skips).
pub fn live_thread_with_start() -> Option<(u32, u64)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: `gettid` has no preconditions.
        tx.send(unsafe { libc::gettid() } as u32).unwrap();
        loop {
            std::thread::park();
        }
    });
    let tid = rx.recv().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let start: u64 = rest.split_ascii_whitespace().nth(19)?.parse().ok()?;
    Some((tid, start))
}

/// Read syscalls the calling thread has made so far (`syscr` of
/// `/proc/thread-self/io`; this look's own reads included); `None` without I/O
/// accounting.
pub fn reads() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/thread-self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscr:"))?
        .trim()
        .parse()
        .ok()
}
