//! Unit tests of the TID cache, the liveness probe and the pidfd watch.

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

/// A thread's process is read from `/proc/<tid>/status`: a spawned thread's is this
/// process, and a number that names no thread has none.
#[test]
#[cfg(not(miri))]
fn thread_group_names_the_process_of_a_thread() {
    let me = current_pid();
    if !proc_is_ours() || std::fs::read("/proc/self/status").is_err() {
        eprintln!("skipped: /proc of this PID namespace is not readable here");
        return;
    }
    assert_eq!(thread_group(current()), Some(me));
    assert_eq!(thread_group(me), Some(me));
    let other = std::thread::spawn(|| (current(), thread_group(current())))
        .join()
        .unwrap();
    assert_ne!(other.0, me);
    assert_eq!(other.1, Some(me));
    assert_eq!(thread_group(Tid::MAX + 1), None);
    assert_eq!(thread_group(0), None);
}

/// A watched holder that is killed reads dead at the next probe (through its pidfd,
/// before it is reaped), and a watch keeps one pidfd for the holder it watches.
#[test]
// Not built under Miri: `Watch` has no pidfd there (nor fork to test it with).
#[cfg(not(miri))]
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
// Not built under Miri: `Watch` has no pidfd there (nor fork to test it with).
#[cfg(not(miri))]
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
// Not built under Miri: `Watch` has no pidfd there (nor fork to test it with).
#[cfg(not(miri))]
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

/// With the registration flag reset (as in a process whose constructor's registration
/// failed or did not run), a thread's first lookup registers the child handler before it
/// caches its TID; a grandchild forked from a child then reads its own TID. (In this test
/// process the constructor's handler is registered too, so the fork half checks the
/// outcome, not which registration produced it.)
#[test]
#[cfg_attr(miri, ignore = "fork")]
fn a_missing_child_handler_is_registered_by_the_first_lookup() {
    imp::REGISTERED.store(0, crate::sync::Ordering::Relaxed);
    let status = std::thread::spawn(|| {
        let parent = current();
        assert_eq!(imp::REGISTERED.load(crate::sync::Ordering::Relaxed), 1);
        // SAFETY: the child calls only `current` (a thread-local and `gettid`), `fork`,
        // `waitpid` and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let gettid = || rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let child_ok = current() == gettid() && current() != parent;
            // SAFETY: as above.
            let g = unsafe { libc::fork() };
            if g == 0 {
                // SAFETY: `_exit` ends the grandchild without running the parent's
                // destructors.
                unsafe { libc::_exit(if current() == gettid() { 0 } else { 1 }) };
            }
            let mut st = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(g, &mut st, 0) };
            let ok = child_ok && g > 0 && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0;
            // SAFETY: as above.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut st = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        st
    })
    .join()
    .unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}
