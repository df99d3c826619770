//! loom model checks of the crate's protocols: the correct versions pass every
//! interleaving loom tries, and loom finds the bug of each broken version (which proves the
//! models can fail). Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!   cargo test --release -p loom-example --tests
//! ```
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use loom_example::broken::{FlagOutsideTheLock, SplitWindow};
use loom_example::{Mailbox, Slot, Window};
use shmstate::{Condvar, Mutex, SeqLock, TimedLockError, Timeout};
use std::time::Duration;

/// Longer than any model runs: under loom only "would sleep" decides a timed wait.
const HOUR: Duration = Duration::from_secs(3600);

/// A mailbox's three shared objects, on the heap (regions do not exist under loom).
#[derive(Default)]
struct Parts {
    slot: Mutex<Slot>,
    not_empty: Condvar,
    not_full: Condvar,
}

impl Parts {
    fn mailbox(&self) -> Mailbox<'_> {
        Mailbox::new(&self.slot, &self.not_empty, &self.not_full)
    }
}

/// The example in the README's section on loom (keep the two the same).
#[test]
fn handoff_never_loses_the_wakeup() {
    loom::model(|| {
        let shared = Arc::new((Mutex::new(0u64), Condvar::new()));
        let producer = {
            let shared = shared.clone();
            thread::spawn(move || {
                *shared.0.lock().unwrap() = 7;
                shared.1.notify_one();
            })
        };
        let v = shared
            .1
            .wait_while(shared.0.lock().unwrap(), |v| *v == 0)
            .unwrap();
        assert_eq!(*v, 7);
        drop(v);
        producer.join().unwrap();
    });
}

/// One producer puts two messages, one consumer takes two: the second `put` must wait for
/// the first `take`, every wait must be woken, and the messages arrive in order.
#[test]
fn mailbox_hands_over_two_messages_in_order() {
    loom::model(|| {
        let parts = Arc::new(Parts::default());
        let producer = {
            let parts = parts.clone();
            thread::spawn(move || {
                let mailbox = parts.mailbox();
                mailbox.put(1);
                mailbox.put(2);
            })
        };
        let mailbox = parts.mailbox();
        assert_eq!(mailbox.take(), 1);
        assert_eq!(mailbox.take(), 2);
        producer.join().unwrap();
        assert_eq!(*parts.slot.lock().unwrap(), Slot::default());
    });
}

/// Two producers race for the one slot: the loser must wait for the consumer and be woken
/// by its `take`, and no message is lost or taken twice.
#[test]
fn mailbox_two_producers_one_consumer_lose_nothing() {
    loom::model(|| {
        let parts = Arc::new(Parts::default());
        let producers: Vec<_> = (1..=2)
            .map(|v| {
                let parts = parts.clone();
                thread::spawn(move || parts.mailbox().put(v))
            })
            .collect();
        let mailbox = parts.mailbox();
        let (a, b) = (mailbox.take(), mailbox.take());
        assert!((a, b) == (1, 2) || (a, b) == (2, 1), "took {a} then {b}");
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// A timed take beside a put: it gets the message, or times out and leaves the message in
/// the slot for the next take (never loses it, never wedges the producer).
#[test]
fn mailbox_take_timeout_gets_the_message_or_leaves_it() {
    loom::model(|| {
        let parts = Arc::new(Parts::default());
        let producer = {
            let parts = parts.clone();
            thread::spawn(move || parts.mailbox().put(7))
        };
        let mailbox = parts.mailbox();
        match mailbox.take_timeout(HOUR) {
            Ok(v) => assert_eq!(v, 7),
            Err(Timeout) => assert_eq!(mailbox.take(), 7),
        }
        producer.join().unwrap();
    });
}

/// What the README promises of timed calls under loom: one that would have to sleep
/// returns at once as timed out, however long its timeout (no model waits for a clock).
#[test]
fn under_loom_a_timed_call_that_would_sleep_times_out_at_once() {
    loom::model(|| {
        let parts = Arc::new(Parts::default());
        // Nobody puts: the timed take times out instead of sleeping for an hour.
        assert_eq!(parts.mailbox().take_timeout(HOUR), Err(Timeout));
        // Nobody notifies: the same for a condvar wait.
        let held = parts.slot.lock().unwrap();
        let (held, r) = parts.not_empty.wait_timeout(held, HOUR).unwrap();
        assert!(r.timed_out());
        // The lock is held throughout: a timed lock from another thread times out.
        let other = {
            let parts = parts.clone();
            thread::spawn(move || {
                let r = parts.slot.lock_timeout(HOUR);
                assert!(matches!(r, Err(TimedLockError::Timeout)));
            })
        };
        other.join().unwrap();
        drop(held);
    });
}

/// A reader beside a writer that moves the window twice: every read is a pair that was
/// published, and the reader never sees it move back.
#[test]
fn window_reader_sees_only_published_pairs() {
    loom::model(|| {
        let span = Arc::new(SeqLock::new([0, 1]));
        let writer = {
            let span = span.clone();
            thread::spawn(move || {
                let window = Window::new(&span);
                window.publish(2, 3);
                window.publish(4, 5);
            })
        };
        let window = Window::new(&span);
        let (lo1, hi1) = window.get();
        let (lo2, hi2) = window.get();
        assert_eq!(hi1, lo1 + 1, "a mixed pair {lo1}..={hi1}");
        assert_eq!(hi2, lo2 + 1, "a mixed pair {lo2}..={hi2}");
        assert!(lo2 >= lo1, "the window moved back");
        writer.join().unwrap();
        assert_eq!(window.get(), (4, 5));
    });
}

/// The handoff with its flag outside the lock. Loom finds the interleaving where the
/// notify falls between the consumer's check and its wait: the consumer then sleeps
/// forever and loom stops the model with "deadlock". Run (in a child process) by
/// `flag_outside_the_lock_is_caught_as_a_deadlock`.
#[test]
#[ignore = "fails by design; run by flag_outside_the_lock_is_caught_as_a_deadlock"]
fn model_of_flag_outside_the_lock() {
    loom::model(|| {
        let handoff = Arc::new(FlagOutsideTheLock::new());
        let producer = {
            let handoff = handoff.clone();
            thread::spawn(move || handoff.put(7))
        };
        assert_eq!(handoff.take(), 7);
        producer.join().unwrap();
    });
}

#[test]
fn flag_outside_the_lock_is_caught_as_a_deadlock() {
    expect_model_failure("model_of_flag_outside_the_lock", "deadlock");
}

/// The window split over two atomics. Loom finds the reader that loads the new `lo` and
/// the old `hi` and reports the failed assertion, so the model panics: an assertion
/// failure (unlike a deadlock) leaves no thread blocked, and `#[should_panic]` can expect
/// it.
#[test]
#[should_panic(expected = "an inverted window 2..=1")]
fn split_window_is_caught_reading_a_mixed_pair() {
    loom::model(|| {
        let window = Arc::new(SplitWindow::new(0, 1));
        let writer = {
            let window = window.clone();
            thread::spawn(move || window.publish(2, 3))
        };
        let (lo, hi) = window.get();
        assert!(lo <= hi, "an inverted window {lo}..={hi}");
        writer.join().unwrap();
    });
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process and asserts
/// that it fails with `expected` in its output.
///
/// A model that is *meant* to deadlock cannot simply be `#[should_panic]`: after loom
/// reports the deadlock it drops the threads still blocked, which panics again (a panic
/// while panicking) and aborts the whole test process. A child process turns that abort
/// into an assertion.
fn expect_model_failure(name: &str, expected: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the failing model");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "model `{name}` was expected to fail but passed"
    );
    assert!(
        stderr.contains(expected),
        "model `{name}` failed without `{expected}`:\n{stderr}"
    );
}
