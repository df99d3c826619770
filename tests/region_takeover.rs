//! A creator killed inside `init` does not wedge the others: one of them takes the
//! object over, initialises it again from zero, and everyone gets it in bounded time.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{
    Elem, EntryState, GetError, Kind, Region, RegionOptions, SharedSized, TypeTag, futex,
};

#[repr(C)]
struct Object {
    value: AtomicU64,
    users: AtomicU64,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Object {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 3), Elem::NONE);
}

/// Coordination between the test and its children, outside the region.
#[repr(C)]
struct Control {
    /// Set to 1 by the doomed child once it is inside `init`.
    inside_init: AtomicU32,
    /// `init` runs by the survivors.
    inits: AtomicU32,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Control {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 4), Elem::NONE);
}

#[test]
fn creator_killed_inside_init_is_taken_over_by_a_waiter() {
    common::watchdog(Duration::from_secs(60));
    let path = PathBuf::from(format!("/dev/shm/shmstate-takeover-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let region = RegionOptions::new()
        .timeout(Duration::from_secs(20))
        .create(&path, 1 << 16)
        .unwrap();
    let shared = common::SharedMem::<Control>::new(1);
    let ctl = shared.get();
    let parent = std::process::id() as libc::pid_t;

    // The doomed creator: writes garbage into the object, tells us it is inside `init`,
    // and blocks until killed.
    let doomed = common::fork_children(1, |_| {
        common::die_with_parent(parent);
        let r = Region::open(&path).unwrap();
        let _ = r.get_or_init::<Object>("obj", |o| {
            o.value.store(0xdead, Ordering::Relaxed);
            // Release: pairs with the test's acquire load; the entry is INITIALISING now.
            ctl.inside_init.store(1, Ordering::Release);
            futex::wake_all(&ctl.inside_init);
            loop {
                futex::wait(&ctl.inits, u32::MAX, None);
            }
        });
    })[0];
    while ctl.inside_init.load(Ordering::Acquire) == 0 {
        futex::wait(&ctl.inside_init, 0, Some(Duration::from_millis(100)));
    }
    assert_eq!(region.entries()[0].state, EntryState::Initialising);

    // Survivors start waiting on the object while its creator is still alive.
    let survivors = common::fork_children(3, |_| {
        common::die_with_parent(parent);
        let r = Region::open(&path).unwrap();
        let o = r
            .get_or_init::<Object>("obj", |o| {
                assert_eq!(o.value.load(Ordering::Relaxed), 0, "taken over from zero");
                o.value.store(42, Ordering::Relaxed);
                ctl.inits.fetch_add(1, Ordering::Relaxed);
                // A long `init` (not a synchronisation: the scenario's length): the other
                // survivors probe this live taker between their 10 ms slices meanwhile,
                // by its TID and by its process's table word and user bit, and must
                // never read it dead (a second `init` would count).
                std::thread::sleep(Duration::from_millis(200));
            })
            .unwrap();
        assert_eq!(o.value.load(Ordering::Relaxed), 42);
        o.users.fetch_add(1, Ordering::Relaxed);
    });

    let killed_at = Instant::now();
    // SAFETY: killing our own child.
    unsafe { libc::kill(doomed, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(doomed, &mut status, 0) };
    common::wait_all(&survivors, Duration::from_secs(30));
    eprintln!("taken over {:?} after the kill", killed_at.elapsed());

    assert_eq!(
        ctl.inits.load(Ordering::Relaxed),
        1,
        "exactly one survivor re-initialised"
    );
    let o = region.get::<Object>("obj").unwrap();
    assert_eq!(o.value.load(Ordering::Relaxed), 42);
    assert_eq!(o.users.load(Ordering::Relaxed), 3);
    assert_eq!(region.entries()[0].state, EntryState::Ready);
    std::fs::remove_file(&path).unwrap();
}

/// Coordination for the main-thread-exit test.
#[repr(C)]
struct Gate {
    /// Set to 1 by the creator once it is inside `init`.
    inside_init: AtomicU32,
    /// Set to 1 by the test to let `init` finish.
    release: AtomicU32,
    /// 1 if the creator's `get_or_init` returned the object, 2 if it failed.
    outcome: AtomicU32,
    /// `init` runs by the test process.
    stolen: AtomicU32,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Gate {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 5), Elem::NONE);
}

/// The state letter of `/proc/<pid>/stat` (after the last `)`).
fn proc_state(pid: libc::pid_t) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().copied().find(|&b| b != b' ')
}

/// A process whose main thread has exited lives on in its other threads, but its pid (the
/// main thread's) reads as a zombie in `/proc`. A creator running `init` on such a thread is
/// alive: nobody may take its object over (two initialisers) while it works.
#[test]
fn a_creator_whose_main_thread_exited_is_alive_and_not_taken_over() {
    common::watchdog(Duration::from_secs(60));
    let region = RegionOptions::new()
        .timeout(Duration::from_secs(1))
        .anonymous(1 << 16)
        .unwrap();
    let shared = common::SharedMem::<Gate>::new(1);
    let gate = shared.get();
    let parent = std::process::id() as libc::pid_t;

    let creator = common::fork_children(1, |_| {
        common::die_with_parent(parent);
        std::thread::scope(|s| {
            s.spawn(|| {
                common::die_with_parent(parent);
                let got = region.get_or_init::<Object>("obj", |o| {
                    // Release: pairs with the test's acquire load.
                    gate.inside_init.store(1, Ordering::Release);
                    futex::wake_all(&gate.inside_init);
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while gate.release.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                        futex::wait(&gate.release, 0, Some(Duration::from_millis(100)));
                    }
                    o.value.store(7, Ordering::Relaxed);
                });
                let outcome = if got.is_ok() { 1 } else { 2 };
                if let Err(e) = got {
                    eprintln!("creator: {e}");
                }
                gate.outcome.store(outcome, Ordering::Release);
                // SAFETY: ends the whole process (all threads) without unwinding.
                unsafe { libc::_exit(0) };
            });
            // The main thread alone exits (`SYS_exit`, not `exit_group`), without
            // unwinding: the process lives on in the thread above.
            // SAFETY: terminates only the calling thread; nothing on this stack is used
            // again (the other thread borrows only memory mapped before the fork).
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        });
    })[0];

    while gate.inside_init.load(Ordering::Acquire) == 0 {
        futex::wait(&gate.inside_init, 0, Some(Duration::from_millis(100)));
    }
    // Wait (bounded by the watchdog) until the creator's main thread is a zombie.
    while proc_state(creator) != Some(b'Z') {
        std::thread::yield_now();
    }
    assert_eq!(region.entries()[0].state, EntryState::Initialising);

    let err = region
        .get_or_init::<Object>("obj", |_| {
            gate.stolen.fetch_add(1, Ordering::Relaxed);
        })
        .err();
    assert!(
        matches!(err, Some(GetError::Timeout)),
        "the live creator's object was taken over: {err:?}"
    );
    assert!(matches!(
        region.get::<Object>("obj"),
        Err(GetError::Timeout)
    ));
    assert_eq!(gate.stolen.load(Ordering::Relaxed), 0);

    // Release: pairs with the creator's acquire load.
    gate.release.store(1, Ordering::Release);
    futex::wake_all(&gate.release);
    common::wait_all(&[creator], Duration::from_secs(30));
    assert_eq!(
        gate.outcome.load(Ordering::Acquire),
        1,
        "the creator finished"
    );
    let o = region.get::<Object>("obj").unwrap();
    assert_eq!(o.value.load(Ordering::Relaxed), 7);
}
