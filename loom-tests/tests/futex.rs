//! Model checks of the futex emulation itself: a waiter is woken, a wait on a changed
//! value returns at once, and a waker that forgets to wake is caught as a deadlock.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::futex;
use shmstate::sync::{AtomicU32, Ordering};

/// Waits until `flag` is 1, futex-style.
fn wait_for_flag(flag: &AtomicU32) {
    // Acquire pairs with the Release store in the waker.
    while flag.load(Ordering::Acquire) == 0 {
        futex::wait(flag, 0, None);
    }
}

#[test]
fn waiter_is_woken() {
    loom::model(|| {
        let flag = Arc::new(AtomicU32::new(0));
        let f2 = flag.clone();
        let waiter = thread::spawn(move || wait_for_flag(&f2));
        flag.store(1, Ordering::Release);
        futex::wake_one(&flag);
        waiter.join().unwrap();
    });
}

#[test]
fn wait_on_changed_value_returns_at_once() {
    loom::model(|| {
        let word = AtomicU32::new(5);
        // No other thread exists: if this blocked, loom would report a deadlock.
        assert!(futex::wait(&word, 4, None));
    });
}

#[test]
fn wake_all_wakes_every_waiter() {
    loom::model(|| {
        let flag = Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let f = flag.clone();
                thread::spawn(move || wait_for_flag(&f))
            })
            .collect();
        flag.store(1, Ordering::Release);
        futex::wake_all(&flag);
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// A deliberately broken waker: it sets the flag but never wakes. Some interleavings let
/// the waiter see the flag before sleeping, but in the one where it sleeps first nothing
/// wakes it, and loom must report that as a deadlock. This proves the emulation catches
/// lost wakeups instead of hiding them behind a spin.
#[test]
fn missing_wake_is_reported_as_deadlock() {
    loom_tests::expect_model_failure("model_of_a_waker_that_never_wakes", "deadlock");
}

/// The broken model run by `missing_wake_is_reported_as_deadlock` (in a child process).
#[test]
#[ignore = "fails by design; run by missing_wake_is_reported_as_deadlock"]
fn model_of_a_waker_that_never_wakes() {
    loom::model(|| {
        let flag = Arc::new(AtomicU32::new(0));
        let f2 = flag.clone();
        let waiter = thread::spawn(move || wait_for_flag(&f2));
        flag.store(1, Ordering::Release);
        // Bug under test: no futex::wake_one(&flag).
        waiter.join().unwrap();
    });
}
