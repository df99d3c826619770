//! Model checks of `Value<T>`: a naive load-then-store increment really loses updates
//! (so the model can see the bug the read-modify-writes avoid), and `fetch_add` on
//! integers, the float compare-and-swap loop and the bool byte loop never do; and of
//! `ValueArray<T>`: per-element adds into the same and into different elements.
#![cfg(loom)]

use std::collections::HashSet;
use std::sync::Mutex;

use loom::sync::Arc;
use loom::thread;
use shmstate::sync::Ordering::{AcqRel, Relaxed, SeqCst};
use shmstate::{Value, ValueArray};

/// Two threads each add one with a separate load and store. The test passes only if loom
/// explores an execution where one increment overwrites the other (final value 1) as
/// well as one where both count (final value 2): the bug `fetch_add` exists to avoid is
/// real and visible to the model.
#[test]
fn naive_increment_loses_updates() {
    let finals = std::sync::Arc::new(Mutex::new(HashSet::new()));
    let seen = finals.clone();
    loom::model(move || {
        let v = Arc::new(Value::new(0u64));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let v = v.clone();
                thread::spawn(move || {
                    let x = v.load(SeqCst);
                    v.store(x + 1, SeqCst);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        seen.lock().unwrap().insert(v.load(SeqCst));
    });
    let finals = finals.lock().unwrap();
    assert!(finals.contains(&1), "no lost update found: {finals:?}");
    assert!(finals.contains(&2), "no clean execution found: {finals:?}");
}

/// `fetch_add` (Relaxed: atomicity needs no ordering) never loses an increment.
#[test]
fn fetch_add_never_loses_updates() {
    loom::model(|| {
        let v = Arc::new(Value::new(0u64));
        let handles: Vec<_> = [3u64, 5]
            .into_iter()
            .map(|n| {
                let v = v.clone();
                thread::spawn(move || {
                    v.fetch_add(n, Relaxed);
                })
            })
            .collect();
        v.fetch_add(1, Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(v.load(Relaxed), 9);
    });
}

/// The float `fetch_add` is a compare-and-swap loop on the bits; racing loops retry
/// instead of overwriting each other.
#[test]
fn float_fetch_add_via_cas_never_loses_updates() {
    loom::model(|| {
        let v = Arc::new(Value::new(0.5f64));
        let handles: Vec<_> = [1.0f64, 2.0]
            .into_iter()
            .map(|x| {
                let v = v.clone();
                thread::spawn(move || {
                    v.fetch_add(x, AcqRel);
                })
            })
            .collect();
        v.fetch_sub(0.25, Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(v.load(Relaxed), 3.25);
    });
}

/// Racing float `fetch_max`es keep the largest value.
#[test]
fn float_fetch_max_keeps_the_largest() {
    loom::model(|| {
        let v = Arc::new(Value::new(f32::NAN));
        let v2 = v.clone();
        let t = thread::spawn(move || {
            v2.fetch_max(4.0, Relaxed);
        });
        v.fetch_max(-1.0, Relaxed);
        t.join().unwrap();
        assert_eq!(v.load(Relaxed), 4.0);
    });
}

/// Two racing `fetch_not`s (a CAS loop on the byte) flip twice: back to the start, and
/// each saw a different previous value.
#[test]
fn bool_fetch_not_never_loses_a_flip() {
    loom::model(|| {
        let v = Arc::new(Value::new(false));
        let v2 = v.clone();
        let t = thread::spawn(move || v2.fetch_not(AcqRel));
        let mine = v.fetch_not(AcqRel);
        let theirs = t.join().unwrap();
        assert_ne!(mine, theirs);
        assert!(!v.load(Relaxed));
    });
}

/// Two threads add into a `ValueArray`, into one shared element and into one element each:
/// every add lands, in its own element only.
#[test]
fn value_array_fetch_add_keeps_every_element_exact() {
    loom::model(|| {
        let a = Arc::new(ValueArray::<u64>::new(3));
        let a2 = a.clone();
        let t = thread::spawn(move || {
            a2.fetch_add(0, 1, Relaxed);
            a2.fetch_add(1, 10, Relaxed);
        });
        a.fetch_add(0, 2, Relaxed);
        a.fetch_add(2, 20, Relaxed);
        t.join().unwrap();
        assert_eq!(a.load_all(Relaxed), [3, 10, 20]);
    });
}

/// The float add (a compare-and-swap loop) on a shared element, next to another thread's
/// element: no add lost, none misplaced.
#[test]
fn value_array_float_adds_keep_every_element_exact() {
    loom::model(|| {
        let a = Arc::new(ValueArray::from_slice(&[0.5f64, 0.0]));
        let a2 = a.clone();
        let t = thread::spawn(move || {
            a2.fetch_add(0, 1.0, Relaxed);
            a2[1].fetch_add(4.0, Relaxed);
        });
        a.fetch_add(0, 2.0, Relaxed);
        t.join().unwrap();
        assert_eq!(a.load_all(Relaxed), [3.5, 4.0]);
    });
}
