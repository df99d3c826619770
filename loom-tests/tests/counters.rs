//! Model checks of `Counter`, `StripedCounter` and `Histogram`: no add is lost, `take`
//! conserves the total, and a striped sum (or a histogram's totals) is exact once the
//! writers are joined.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::{Counter, Histogram, StripedCounter};

/// A `take` racing with adds: every add is either in what `take` returned or still in
/// the counter.
#[test]
fn counter_take_never_loses() {
    loom::model(|| {
        let c = Arc::new(Counter::new());
        let adder = {
            let c = c.clone();
            thread::spawn(move || {
                c.add(1);
                c.add(2);
            })
        };
        let taker = {
            let c = c.clone();
            thread::spawn(move || c.take())
        };
        c.inc();
        adder.join().unwrap();
        let taken = taker.join().unwrap();
        assert_eq!(taken + c.take(), 4);
        assert_eq!(c.get(), 0);
    });
}

/// Writers on (possibly) different stripes: after joining them the sum is exact; a sum
/// taken while they still run includes the caller's own add, counts nothing twice, and a
/// second sum is never smaller than the first.
#[test]
fn striped_counter_sum_is_exact_after_join() {
    loom::model(|| {
        let c: std::sync::Arc<StripedCounter> = StripedCounter::new(2).into();
        let handles: Vec<_> = [10u64, 20]
            .into_iter()
            .map(|n| {
                let c = c.clone();
                thread::spawn(move || {
                    c.add(n);
                    c.inc();
                })
            })
            .collect();
        c.add(100);
        let during = c.sum();
        assert!((100..=132).contains(&during), "sum while adding: {during}");
        let later = c.sum();
        assert!(
            (during..=132).contains(&later),
            "sums went {during} then {later}"
        );
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.sum(), 132);
    });
}

/// Adds racing on one stripe (a single-stripe counter) are not lost either.
#[test]
fn striped_counter_shared_stripe_never_loses() {
    loom::model(|| {
        let c: std::sync::Arc<StripedCounter> = StripedCounter::new(1).into();
        let c2 = c.clone();
        let t = thread::spawn(move || c2.add(2));
        c.add(5);
        t.join().unwrap();
        assert_eq!(c.sum(), 7);
        assert_eq!(c.take(), 7);
        assert_eq!(c.sum(), 0);
    });
}

/// Three threads observe into a histogram of one owned stripe: one claims it and adds
/// with plain loads and stores, the others find it owned and use the shared stripe's
/// atomic updates. Nothing is lost, whoever wins the claim.
#[test]
fn histogram_owner_and_shared_observers_lose_nothing() {
    loom::model(|| {
        let h: std::sync::Arc<Histogram> = Histogram::with_stripes(&[1.0], 1).unwrap().into();
        let handles: Vec<_> = [0.5f64, 2.0]
            .into_iter()
            .map(|v| {
                let h = h.clone();
                thread::spawn(move || h.observe(v))
            })
            .collect();
        h.observe(4.0);
        for t in handles {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!((s.cumulative.as_slice(), s.sum), (&[1, 3][..], 6.5));
    });
}

/// Two threads find the stripe owned by a dead thread: whichever takes it over adds
/// plainly, the other uses the shared stripe; nothing is lost, nothing counted twice.
#[test]
fn histogram_takeover_of_a_dead_owner_loses_nothing() {
    loom::model(|| {
        let h: std::sync::Arc<Histogram> = Histogram::with_stripes(&[1.0], 1).unwrap().into();
        h.set_owner_for_test(0, shmstate::lock::rwlock::DEAD_UNDER_LOOM);
        let other = {
            let h = h.clone();
            thread::spawn(move || {
                h.observe(0.5);
                h.observe(2.0);
            })
        };
        h.observe(4.0);
        other.join().unwrap();
        let s = h.snapshot();
        assert_eq!((s.cumulative.as_slice(), s.sum), (&[1, 3][..], 6.5));
    });
}

/// An owner that wrote, then "died" (its word replaced by a dead id once it is joined):
/// two threads race to take the stripe over while observing; its counts stay and nothing
/// is lost. A snapshot taken meanwhile is cumulative and never counts more than was
/// observed.
#[test]
fn histogram_takeover_after_an_owner_wrote_keeps_its_counts() {
    loom::model(|| {
        let h: std::sync::Arc<Histogram> = Histogram::with_stripes(&[1.0], 1).unwrap().into();
        {
            let h = h.clone();
            thread::spawn(move || h.observe(0.5)).join().unwrap();
        }
        h.set_owner_for_test(0, shmstate::lock::rwlock::DEAD_UNDER_LOOM);
        let takers: Vec<_> = [0.25f64, 2.0]
            .into_iter()
            .map(|v| {
                let h = h.clone();
                thread::spawn(move || h.observe(v))
            })
            .collect();
        let during = h.snapshot();
        assert!((1..=3).contains(&during.count), "{during:?}");
        assert_eq!(during.count, *during.cumulative.last().unwrap());
        for t in takers {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!((s.cumulative.as_slice(), s.sum), (&[2, 3][..], 2.75));
    });
}
