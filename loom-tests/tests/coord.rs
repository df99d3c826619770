//! Model checks of the coordination primitives: the semaphore never over-admits and loses
//! no wakeup, the event loses no wakeup, the barrier lets nobody pass early over two
//! rounds, the queue hands items over in order without losing a wakeup, and a waker that
//! dies between its state change and its wake leaves the next waker able to wake.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{Barrier, Event, Queue, Semaphore};

fn semaphore_model(threads: usize, permits: u32) {
    loom::model(move || {
        let s = Arc::new(Semaphore::new(permits));
        let inside = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (s, inside) = (s.clone(), inside.clone());
                thread::spawn(move || {
                    s.acquire();
                    // Relaxed: only counts who is inside; admission is the semaphore's job.
                    let n = inside.fetch_add(1, Ordering::Relaxed) + 1;
                    assert!(n <= permits, "{n} inside with {permits} permits");
                    inside.fetch_sub(1, Ordering::Relaxed);
                    s.release().unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.value(), permits);
    });
}

#[test]
fn semaphore_of_1_admits_one_of_2_threads_and_wakes_the_other() {
    semaphore_model(2, 1);
}

#[test]
fn semaphore_of_1_admits_one_of_3_threads_and_wakes_the_others() {
    semaphore_model(3, 1);
}

#[test]
fn semaphore_of_2_admits_two_of_3_threads() {
    semaphore_model(3, 2);
}

#[test]
fn semaphore_release_wakes_a_waiter_that_found_no_permit() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(0));
        let s2 = s.clone();
        let h = thread::spawn(move || s2.acquire());
        s.release().unwrap();
        h.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

/// The same model with a release that lacks the SeqCst fence: loom must find the lost
/// wakeup (a deadlock), which proves the model can see one.
#[test]
#[ignore = "run by `semaphore_without_the_release_fence_loses_a_wakeup`"]
fn broken_semaphore_model() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(1));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    s.acquire();
                    s.release_without_fence();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn semaphore_without_the_release_fence_loses_a_wakeup() {
    loom_tests::expect_model_failure("broken_semaphore_model", "deadlock");
}

/// Bit 0 of a semaphore's sleepers word (`Semaphore::words().1`): someone may sleep, so a
/// release must wake.
const SLEEPERS: u32 = 1;

/// Two sleepers, two releases from a third thread: each release wakes one (a release whose
/// wake finds nobody may clear the "may have sleepers" bit, and must not strand the other
/// sleeper). Afterwards one release heals the word and the next takes the no-wake path.
#[test]
fn semaphore_two_releases_wake_two_sleepers_then_the_word_heals() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.acquire())
            })
            .collect();
        s.release().unwrap();
        s.release().unwrap();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.value(), 0);
        // Nobody waits now: this release's wake (if the bit is still set) finds nobody and
        // clears it; the next one reads it clear.
        s.release().unwrap();
        let sleepers = s.words().1;
        assert_eq!(sleepers.load(Ordering::Relaxed) & SLEEPERS, 0);
    });
}

/// A waiter that registers and leaves without a permit (a timed acquire times out at once
/// under loom: the stand-in for a waiter killed mid-wait) leaves the bit set; the release
/// that then wakes nobody and clears it must not lose the real waiter's wakeup.
#[test]
fn semaphore_clearing_a_dead_waiters_bit_never_loses_a_live_waiter() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(0));
        let s1 = s.clone();
        let gone = thread::spawn(move || {
            // An hour: under loom the timed wait times out at once whatever its length,
            // and a deadline the clock could reach mid-model would make runs differ.
            if s1
                .acquire_timeout(std::time::Duration::from_secs(3600))
                .is_ok()
            {
                s1.release().unwrap();
            }
        });
        let s2 = s.clone();
        let live = thread::spawn(move || s2.acquire());
        s.release().unwrap();
        gone.join().unwrap();
        live.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn event_set_wakes_every_waiter() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let data = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (e, data) = (e.clone(), data.clone());
                thread::spawn(move || {
                    e.wait();
                    // Relaxed: `set`'s Release / `wait`'s Acquire must order this.
                    assert_eq!(data.load(Ordering::Relaxed), 1);
                })
            })
            .collect();
        data.store(1, Ordering::Relaxed);
        e.set();
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn barrier_of_2_parties_lets_nobody_pass_early_over_2_rounds() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let arrived = Arc::new(AtomicU32::new(0));
        let party = |b: Arc<Barrier>, arrived: Arc<AtomicU32>| {
            let mut leaders = 0;
            for round in 1..=2 {
                // Relaxed: the barrier must order it before every party's return.
                arrived.fetch_add(1, Ordering::Relaxed);
                let r = b.wait().unwrap();
                assert!(arrived.load(Ordering::Relaxed) >= 2 * round);
                leaders += u32::from(r.is_leader());
            }
            leaders
        };
        let (b2, a2) = (b.clone(), arrived.clone());
        let h = thread::spawn(move || party(b2, a2));
        let mine = party(b, arrived);
        assert_eq!(mine + h.join().unwrap(), 2, "one leader per round");
    });
}

#[test]
fn queue_of_1_hands_2_items_from_producer_to_consumer_in_order() {
    loom::model(|| {
        let q = Arc::new(Queue::<u32, 1>::new());
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            q2.push(1);
            q2.push(2);
        });
        assert_eq!(q.pop(), 1);
        assert_eq!(q.pop(), 2);
        producer.join().unwrap();
        assert!(q.is_empty());
    });
}

/// `len` reads the indices without the lock while a push commits, and `try_pop` gives up
/// on a held lock instead of waiting: neither may lose the item or see a torn state.
/// (Both sides run on spawned threads: loom explores a main thread's steps before its
/// first blocking point in fewer orders.)
#[test]
fn queue_len_and_try_pop_race_a_push_without_losing_the_item() {
    loom::model(|| {
        let q = Arc::new(Queue::<u32, 2>::new());
        let (q2, q3) = (q.clone(), q.clone());
        let producer = thread::spawn(move || q2.push(1));
        let consumer = thread::spawn(move || {
            let len = q3.len();
            assert!(len <= 1, "len {len}");
            let got = q3.try_pop();
            if got.is_some() {
                // Seen committed by the pop, so by `len` unless it ran first.
                assert_eq!(got, Some(1));
            }
            got
        });
        producer.join().unwrap();
        match consumer.join().unwrap() {
            Some(_) => assert!(q.is_empty()),
            // The queue was empty, or its lock busy: the item is there now.
            None => {
                assert_eq!(q.len(), 1);
                assert_eq!(q.try_pop(), Some(1));
            }
        }
    });
}

/// With more threads than parties, a party of round 1 may look at the word only after
/// round 2 has completed too: its round still completed, so it must not read "broken".
#[test]
fn barrier_waiter_that_looks_late_after_two_rounds_still_passes() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let late = thread::spawn(move || b2.wait());
        // Round 1 is {late, main}; round 2 is {main, third}: `third` exists only after
        // round 1, so no other pairing (and no hang) is possible.
        b.wait().unwrap();
        let b3 = b.clone();
        let third = thread::spawn(move || b3.wait());
        b.wait().unwrap();
        third.join().unwrap().unwrap();
        late.join().unwrap().unwrap();
    });
}

// A waker that dies between its state change and its wake: the `*_without_wake` hooks make
// the change and skip the wake, as a process killed at that step does. Loom cannot model
// the bounded sleep slice that frees such a stranded sleeper on Linux (loom has no clock:
// its timed futex wait returns at once, and untimed waits stay unbounded here so that a
// lost wakeup shows as a deadlock), so these models check the other half of the repair:
// the dead waker leaves the "may sleep" bit set, and the next live waker wakes the
// stranded sleeper. On the protocol that cleared the bit before waking they deadlock.

/// An Event setter dies before waking; a later `set` of the already set event must wake
/// the waiter it stranded.
#[test]
fn event_set_after_a_setter_died_before_waking_wakes_its_stranded_waiter() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let (e1, e2) = (e.clone(), e.clone());
        let waiter = thread::spawn(move || e1.wait());
        let dead = thread::spawn(move || e2.set_without_wake());
        dead.join().unwrap();
        e.set();
        waiter.join().unwrap();
        assert!(e.is_set());
    });
}

/// The same with `clear` + `set` after the dead setter.
#[test]
fn event_clear_and_set_after_a_setter_died_before_waking_wake_its_stranded_waiter() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let (e1, e2) = (e.clone(), e.clone());
        let waiter = thread::spawn(move || e1.wait());
        let dead = thread::spawn(move || e2.set_without_wake());
        dead.join().unwrap();
        e.clear();
        e.set();
        waiter.join().unwrap();
    });
}

/// A Semaphore releaser dies between raising the count and waking; the next release must
/// wake the acquirer it stranded (one permit is left over). The sleepers word kept its
/// bit before the waits were sliced too: this model guards that it stays so.
#[test]
fn semaphore_release_after_a_releaser_died_before_waking_wakes_its_stranded_acquirer() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(0));
        let (s1, s2) = (s.clone(), s.clone());
        let acquirer = thread::spawn(move || s1.acquire());
        let dead = thread::spawn(move || s2.release_without_wake().unwrap());
        dead.join().unwrap();
        s.release().unwrap();
        acquirer.join().unwrap();
        assert_eq!(s.value(), 1);
    });
}

/// A Barrier leader dies between starting the next round and waking; the next waker
/// (here `abort`) must wake the party it stranded, which returns `Ok` (its round
/// completed).
#[test]
fn barrier_abort_after_a_leader_died_before_waking_wakes_its_stranded_party() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let (b1, b2) = (b.clone(), b.clone());
        let party = thread::spawn(move || b1.wait());
        let dead = thread::spawn(move || b2.wait_without_wake());
        let leaders = u32::from(dead.join().unwrap().unwrap().is_leader());
        b.abort();
        let leaders = leaders + u32::from(party.join().unwrap().unwrap().is_leader());
        assert_eq!(leaders, 1);
    });
}

/// A `set` whose wake finds nobody clears `WAITERS`; a waiter that registers meanwhile for
/// the next generation (after a `clear`) must still be woken by the next `set`.
#[test]
fn event_set_clearing_waiters_after_an_empty_wake_loses_no_later_waiter() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let e1 = e.clone();
        let waiter = thread::spawn(move || e1.wait());
        e.set();
        e.clear();
        e.set();
        waiter.join().unwrap();
        assert!(e.is_set());
    });
}
