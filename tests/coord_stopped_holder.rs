//! Queue operations while another process holds the queue's lock and is stopped
//! (SIGSTOP): a stopped process is alive, so nobody may take its lock over, but no `try_`
//! call may wait for it, and no timed call may outlive its deadline (relocking included).
//! Also: a process killed between a push's slot write and its commit.
//!
//! Each case forks a child that takes the queue's lock and stops itself; the parent makes
//! its call, then resumes the child (at the latest [`STOPPED_FOR`] after it stopped), which
//! unlocks and exits. A call that waited for the holder takes about `STOPPED_FOR`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{SharedMem, fork_children, wait_all, watchdog};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{
    Elem, Full, Kind, PushTimeoutError, Queue, RawMutex, SharedSized, Timeout, TypeTag,
};

const LIMIT: Duration = Duration::from_secs(60);
/// How long a holder stays stopped unless the call under test returned earlier.
const STOPPED_FOR: Duration = Duration::from_secs(2);
/// What "returns at once" may take on a loaded machine: a brief spin, far below
/// `STOPPED_FOR`.
const PROMPT: Duration = Duration::from_millis(300);
/// What a timed call may take beyond its timeout: generous, and far below `STOPPED_FOR`.
const MARGIN: Duration = Duration::from_millis(480);

type Q = Queue<u64, 4>;

#[repr(C)]
struct Test {
    q: Q,
    /// Set by the child once it holds the lock.
    locked: AtomicU32,
}
// SAFETY: a `Queue` (itself `SharedSized`) and an atomic: zero and every bit pattern
// valid, no pointers, `Sync`.
unsafe impl SharedSized for Test {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 40), Elem::NONE);
}

/// Forks a child that takes `lock`, raises `locked` and stops itself holding the lock;
/// returns its pid once it is stopped. Resumed (SIGCONT), it unlocks and exits 0.
fn fork_stopped_holder(lock: &RawMutex, locked: &AtomicU32) -> libc::pid_t {
    // Relaxed: reset before the fork, which orders it for the child.
    locked.store(0, Ordering::Relaxed);
    let pids = fork_children(1, |_| {
        let _ = lock.lock();
        // Release: pairs with the parent's Acquire load in `holder_locked`.
        locked.store(1, Ordering::Release);
        // SAFETY: `raise` has no preconditions; SIGSTOP stops this process until SIGCONT.
        unsafe { libc::raise(libc::SIGSTOP) };
        // SAFETY: this thread took the lock above and has not unlocked it.
        unsafe { lock.unlock() };
    });
    let mut status = 0;
    // SAFETY: waitpid on our own child; WUNTRACED also reports it stopping.
    let r = unsafe { libc::waitpid(pids[0], &mut status, libc::WUNTRACED) };
    assert_eq!(r, pids[0], "waitpid");
    assert!(
        libc::WIFSTOPPED(status),
        "the holder did not stop: {status:#x}"
    );
    assert!(holder_locked(locked));
    pids[0]
}

fn holder_locked(locked: &AtomicU32) -> bool {
    // Acquire: pairs with the child's Release store after it took the lock.
    locked.load(Ordering::Acquire) == 1
}

/// Runs `f` while a stopped child holds `t.q`'s lock; returns what `f` returned and how
/// long it took. The child is resumed when `f` returns, or `STOPPED_FOR` after it
/// stopped if `f` has not returned by then, and is reaped before this returns.
fn with_stopped_holder<R: Send>(t: &Test, f: impl FnOnce() -> R + Send) -> (R, Duration) {
    let pid = fork_stopped_holder(t.q.raw_lock(), &t.locked);
    let (tx, rx) = mpsc::channel::<()>();
    let r = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = rx.recv_timeout(STOPPED_FOR);
            // SAFETY: resuming our own child.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        });
        let t0 = Instant::now();
        let r = f();
        let took = t0.elapsed();
        let _ = tx.send(());
        (r, took)
    });
    wait_all(&[pid], LIMIT);
    r
}

fn queue_with(items: &[u64]) -> SharedMem<Test> {
    let mem = SharedMem::<Test>::new(1);
    for &i in items {
        mem.get().q.push(i);
    }
    mem
}

#[test]
fn try_push_returns_at_once_while_a_stopped_process_holds_the_lock() {
    watchdog(LIMIT);
    let mem = queue_with(&[]);
    let t = mem.get();
    let (r, took) = with_stopped_holder(t, || t.q.try_push(1));
    assert!(
        took < PROMPT,
        "try_push waited {took:?} for a stopped holder"
    );
    assert_eq!(
        r,
        Err(Full(1)),
        "the push could not happen without the lock"
    );
    // Once the holder is gone the queue works as before.
    assert_eq!(t.q.try_push(1), Ok(()));
    assert_eq!(t.q.try_pop(), Some(1));
}

#[test]
fn try_pop_returns_at_once_while_a_stopped_process_holds_the_lock() {
    watchdog(LIMIT);
    let mem = queue_with(&[5]);
    let t = mem.get();
    let (r, took) = with_stopped_holder(t, || t.q.try_pop());
    assert!(
        took < PROMPT,
        "try_pop waited {took:?} for a stopped holder"
    );
    assert_eq!(r, None, "the pop could not happen without the lock");
    assert_eq!(t.q.try_pop(), Some(5));
}

#[test]
fn len_returns_at_once_while_a_stopped_process_holds_the_lock() {
    watchdog(LIMIT);
    let mem = queue_with(&[1, 2]);
    let t = mem.get();
    let ((len, empty), took) = with_stopped_holder(t, || (t.q.len(), t.q.is_empty()));
    assert!(took < PROMPT, "len waited {took:?} for a stopped holder");
    assert_eq!((len, empty), (2, false), "the committed length");
}

/// Polls until thread `tid` of this process is blocked in `futex` (asleep).
fn wait_until_asleep(tid: u32) {
    let path = format!("/proc/self/task/{tid}/syscall");
    let futex = format!("{} ", libc::SYS_futex);
    while !std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(&futex)) {
        std::thread::yield_now();
    }
}

/// A timed call that is asleep waiting for room or items when a child takes the lock and
/// stops: its wait ends at the timeout, and its relock meets the stopped holder. It must
/// still return by its deadline (plus `MARGIN`), without the lock.
///
/// The child must hold the lock before the call's deadline; if forking it took longer
/// than the timeout (a loaded machine), the case is repeated with a longer timeout.
fn timed_call_ends_at_its_deadline_despite_a_stopped_holder<R>(
    items: &[u64],
    call: impl Fn(&Q, Duration) -> R + Sync,
    expected: R,
) where
    R: Send + PartialEq + core::fmt::Debug,
{
    watchdog(LIMIT);
    let mem = queue_with(items);
    let t = mem.get();
    for ms in [20, 50, 100, 250, 500, 1000] {
        let timeout = Duration::from_millis(ms);
        let tid = AtomicU32::new(0);
        let (tx, rx) = mpsc::channel();
        let (r, took, ordered) = std::thread::scope(|s| {
            let caller = s.spawn(|| {
                // SAFETY: gettid has no preconditions.
                tid.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
                let t0 = Instant::now();
                let r = call(&t.q, timeout);
                (r, t0.elapsed(), t0)
            });
            while tid.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            wait_until_asleep(tid.load(Ordering::Relaxed));
            let pid = fork_stopped_holder(t.q.raw_lock(), &t.locked);
            let seen = Instant::now();
            s.spawn(move || {
                let _ = rx.recv_timeout(STOPPED_FOR);
                // SAFETY: resuming our own child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            });
            let (r, took, t0) = caller.join().unwrap();
            let _ = tx.send(());
            wait_all(&[pid], LIMIT);
            // The child held the lock before `seen`; if that is before the call's
            // deadline, the call's relock (after its deadline) met the held lock.
            (r, took, seen < t0 + timeout)
        });
        if !ordered {
            eprintln!("the holder stopped after the {timeout:?} deadline; retrying");
            continue;
        }
        assert!(
            took < timeout + MARGIN,
            "a {timeout:?} timed call took {took:?}: its relock waited for a stopped holder"
        );
        assert_eq!(r, expected);
        return;
    }
    panic!("the holder never stopped before the caller's deadline");
}

#[test]
fn pop_timeout_ends_at_its_deadline_when_its_relock_meets_a_stopped_holder() {
    timed_call_ends_at_its_deadline_despite_a_stopped_holder(
        &[],
        |q, d| q.pop_timeout(d),
        Err(Timeout),
    );
}

#[test]
fn push_timeout_ends_at_its_deadline_when_its_relock_meets_a_stopped_holder() {
    timed_call_ends_at_its_deadline_despite_a_stopped_holder(
        &[1, 2, 3, 4],
        |q, d| q.push_timeout(9, d),
        Err(PushTimeoutError(9)),
    );
}

/// A `try_` call does not give up on a lock whose holder is dead: it recovers it (it
/// probes the holder only after its brief spin found the lock held).
#[test]
fn try_pop_recovers_the_lock_of_a_killed_holder() {
    watchdog(LIMIT);
    let mem = queue_with(&[3]);
    let t = mem.get();
    let pid = fork_stopped_holder(t.q.raw_lock(), &t.locked);
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let t0 = Instant::now();
    assert_eq!(t.q.try_pop(), Some(3));
    assert!(t0.elapsed() < PROMPT, "took {:?}", t0.elapsed());
    assert!(
        !t.q.raw_lock().mark_is_set(),
        "recovered and marked consistent"
    );
}
