//! Crash-window tests of the shared hash map: a process is stopped at a step of the map's
//! protocol (a failpoint), SIGKILLed there, and the repair the map's crash table documents
//! is checked: every key is present with a value some writer wrote, or absent, and the
//! counts are right. Built only with `--cfg shmstate_test_hooks` (see `src/failpoint.rs`);
//! `.ci/run` runs this file so:
//!
//! ```sh
//! RUSTFLAGS="--cfg shmstate_test_hooks" CARGO_TARGET_DIR=target/hooks \
//!   cargo nextest run --test map_failpoints
//! ```
//!
//! Without the cfg this file is empty.
#![cfg(shmstate_test_hooks)]

mod common;
mod locks_support;

use std::time::{Duration, Instant};

use common::{fork_children, watchdog};
use locks_support::{kill, reap};
use shmstate::failpoint::Point;
use shmstate::sync::Ordering;
use shmstate::{ByteMap, MapOptions, Region, Update, Value};

/// Keys in the map before each crash: 90 of a one-stripe map of capacity 100 (164 slots),
/// so probe runs are long enough for removals to move entries.
const KEYS: u32 = 90;

fn key(i: u32) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// A region with a one-stripe map holding `KEYS` keys, and a word for the children.
fn setup() -> (&'static ByteMap, &'static Value<u64>) {
    watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    // The region lives for the test (the test process ends with it).
    let region: &'static Region = Box::leak(Box::new(region));
    let m = region
        .map("m", MapOptions::new(100).key_max(16).value_max(16))
        .unwrap();
    assert_eq!(m.stripe_geometry().0, 1);
    for i in 0..KEYS {
        m.insert(&key(i), &value(i)).unwrap();
    }
    let word = region.get_or_default::<Value<u64>>("word").unwrap();
    (m, word)
}

fn kill_and_reap(pid: libc::pid_t) {
    kill(pid);
    reap(pid);
}

fn get(m: &ByteMap, k: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    m.get(k, &mut v).unwrap().then_some(v)
}

/// Every key `i` for which `present(i)` holds reads `value(i)`, every other is absent,
/// `len` agrees, and a full scan sees the same.
fn check(m: &ByteMap, present: impl Fn(u32) -> bool) {
    let n = check_entries(m, present);
    assert_eq!(m.len(), n);
}

/// [`check`] but for `len`; the number of entries.
fn check_entries(m: &ByteMap, present: impl Fn(u32) -> bool) -> usize {
    let mut n = 0;
    for i in 0..KEYS {
        let want = present(i).then(|| value(i));
        assert_eq!(get(m, &key(i)), want, "key {i}");
        n += usize::from(present(i));
    }
    assert_eq!(m.snapshot().len(), n);
    // No duplicate keys in the table.
    let mut keys: Vec<_> = m.raw_slots().into_iter().map(|(.., k)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    n
}

/// A writer killed holding the stripe lock (inside an `update` closure, nothing written):
/// the next writer takes the lock over and finds nothing to repair.
#[test]
fn map_writer_killed_holding_the_lock_is_taken_over() {
    let (m, _) = setup();
    let pid = fork_children(1, |_| {
        let _ = m.update(&key(0), |_| {
            // SAFETY: `raise` has no preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
            Update::Set(b"never".to_vec(), ())
        });
    })[0];
    common::wait_until_stopped(pid);
    kill_and_reap(pid);
    let t = Instant::now();
    m.insert(&key(1), &value(1)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    check(m, |_| true);
}

/// A new entry killed mid-write (`MapSlotWriting`): a reader finds the writer dead, takes
/// the lock, and the repair drops the torn slot.
#[test]
fn map_insert_killed_mid_write_drops_the_new_key() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        let _ = m.insert(b"new", b"torn");
    });
    kill_and_reap(pid);
    assert_eq!(get(m, b"new"), None);
    check(m, |_| true);
    m.insert(b"new", b"ok").unwrap();
    assert_eq!(get(m, b"new"), Some(b"ok".to_vec()));
}

/// An update in place killed mid-write (`MapSlotWriting`): the key is dropped (its old
/// value is partly overwritten), every other key stays.
#[test]
fn map_update_killed_mid_write_drops_the_key() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        let _ = m.insert(&key(5), b"torn value!");
    });
    kill_and_reap(pid);
    check(m, |i| i != 5);
}

/// A new entry written (`MapSlotWritten`; its place was counted before the write): the
/// entry reads present and counted at once; the next writer finds nothing to repair.
#[test]
fn map_insert_killed_after_writing_keeps_the_entry_counted() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapSlotWritten, || {
        let _ = m.insert(b"new", b"v");
    });
    kill_and_reap(pid);
    assert_eq!(get(m, b"new"), Some(b"v".to_vec()));
    assert_eq!(m.len(), KEYS as usize + 1);
    assert_eq!(m.remove(b"new").unwrap(), Some(b"v".to_vec()));
    check(m, |_| true);
}

/// A removal killed before it moved anything (`MapShiftStarted`): readers wait for the
/// dead writer's odd structure sequence, the repair closes it, the key stays present.
#[test]
fn map_remove_killed_at_its_start_keeps_the_key() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapShiftStarted, || {
        let _ = m.remove(&key(7));
    });
    kill_and_reap(pid);
    check(m, |_| true);
}

/// Which key a remover child is on: it stores `i` before removing key `i`, for keys in
/// table order from the start of the stripe until one of its removals stops at the
/// armed point. Returns the index it stopped in.
fn remove_until_stopped(m: &'static ByteMap, word: &'static Value<u64>, p: Point) -> u32 {
    let pid = common::child_stopped_at(p, || {
        for i in 0..KEYS {
            word.store(u64::from(i), Ordering::SeqCst);
            let _ = m.remove(&key(i));
        }
    });
    kill_and_reap(pid);
    word.load(Ordering::SeqCst) as u32
}

/// A removal killed after copying an entry back into the hole (`MapShiftCopied`): the
/// repair drops one of the two copies; the removed key is gone, every other key stays.
#[test]
fn map_remove_killed_mid_shift_leaves_one_copy() {
    let (m, word) = setup();
    let j = remove_until_stopped(m, word, Point::MapShiftCopied);
    check(m, |i| i > j);
}

/// A removal killed with its last hole emptied but the structure sequence odd
/// (`MapRemoveCleared`): the repair closes it and recounts.
#[test]
fn map_remove_killed_before_closing_is_recounted() {
    let (m, word) = setup();
    let j = remove_until_stopped(m, word, Point::MapRemoveCleared);
    check(m, |i| i > j);
}

/// A repair killed after copying an entry to its new slot (`MapRepairMoved`): the next
/// repair drops the second copy. The first crash drops a key that entries after it were
/// displaced over, so the repair has to re-home them.
#[test]
fn map_repair_killed_mid_move_is_finished_by_the_next() {
    let (m, _) = setup();
    // A key at slot `i` with the entry at slot `i + 1` displaced over it (home <= i).
    let slots = m.raw_slots();
    let (_, sps) = m.stripe_geometry();
    let home_of = |slot: usize| slots.iter().find(|e| e.1 == slot).map(|e| e.2);
    let victim = slots
        .iter()
        .find(|e| {
            let next = (e.1 + 1) % sps;
            home_of(next).is_some_and(|h| h != next)
        })
        .map(|e| e.3.clone())
        .expect("a key with a displaced successor");
    let v = (0..KEYS).find(|&i| key(i) == victim).unwrap();
    // 1. An update of it killed mid-write: a torn slot in the middle of a run.
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        let _ = m.insert(&key(v), b"torn");
    });
    kill_and_reap(pid);
    // 2. The repair that follows killed after its first re-homing copy.
    let pid = common::child_stopped_at(Point::MapRepairMoved, || {
        let _ = m.contains(&key(v));
    });
    kill_and_reap(pid);
    // 3. The next operation repairs again.
    check(m, |i| i != v);
}

/// A writer stopped (SIGSTOP) mid-write holds up the readers of that slot only while it
/// is stopped: continued, it finishes and they read its value.
#[test]
fn map_reader_waits_for_a_stopped_writer_then_reads_its_value() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        m.insert(&key(3), b"new value").unwrap();
    });
    // A key whose probe run does not cross the stopped slot reads at once.
    let slots = m.raw_slots();
    let (_, sps) = m.stripe_geometry();
    let at = |k: &[u8]| slots.iter().find(|e| e.3 == k).map(|e| (e.1, e.2)).unwrap();
    let (s3, _) = at(&key(3));
    let other = (0..KEYS)
        .find(|&i| {
            let (slot, home) = at(&key(i));
            (s3 + sps - home) % sps > (slot + sps - home) % sps
        })
        .unwrap();
    assert_eq!(get(m, &key(other)), Some(value(other)));
    // SAFETY: plain kill of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(get(m, &key(3)), Some(b"new value".to_vec()));
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// A `clear` killed after emptying the first slot of the stripe (`MapClearing`): the next
/// writer's repair closes the structure change and recounts; every key is present with
/// its value or absent, and counted right.
#[test]
fn map_clear_killed_midway_leaves_a_consistent_stripe() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapClearing, || m.clear());
    kill_and_reap(pid);
    m.insert(b"after", b"v").unwrap();
    m.remove(b"after").unwrap();
    let present: Vec<u32> = (0..KEYS).filter(|&i| get(m, &key(i)).is_some()).collect();
    assert_eq!(present.len(), KEYS as usize - 1, "one slot was cleared");
    check(m, |i| present.contains(&i));
}

/// An `insert_evicting` into a full map killed as its eviction starts (`MapShiftStarted`):
/// the repair closes the removal that moved nothing; the victim stays, the new key is
/// absent, the count is right.
#[test]
fn map_insert_evicting_killed_while_evicting_keeps_the_victim() {
    let (m, _) = setup();
    let extra = |i: u32| format!("extra-{i}").into_bytes();
    for i in 0..100 - KEYS {
        m.insert(&extra(i), b"x").unwrap();
    }
    assert_eq!(m.len(), 100);
    let pid = common::child_stopped_at(Point::MapShiftStarted, || {
        let _ = m.insert_evicting(b"new", b"v");
    });
    kill_and_reap(pid);
    m.insert(&key(0), &value(0)).unwrap();
    assert_eq!(get(m, b"new"), None);
    for i in 0..100 - KEYS {
        assert_eq!(get(m, &extra(i)), Some(b"x".to_vec()));
    }
    for i in 0..KEYS {
        assert_eq!(get(m, &key(i)), Some(value(i)), "key {i}");
    }
    assert_eq!(m.len(), 100);
    assert_eq!(m.snapshot().len(), 100);
}

/// A writer process stopped (SIGSTOP) mid-write: the bounded calls give up at their
/// deadlines (a reader of its slot, every writer of its stripe) and change nothing; once
/// it continues, everything goes through.
#[test]
fn map_timed_calls_give_up_behind_a_stopped_writer() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        m.insert(&key(3), b"new value").unwrap();
    });
    let mut out = Vec::new();
    assert_eq!(
        m.try_get(&key(3), &mut out),
        Err(shmstate::MapError::Timeout)
    );
    let t = Instant::now();
    assert_eq!(
        m.get_timeout(&key(3), &mut out, Duration::from_millis(50)),
        Err(shmstate::MapError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    let soon = Instant::now() + Duration::from_millis(20);
    assert_eq!(
        m.with_deadline(soon).insert(b"other", b"v"),
        Err(shmstate::InsertError::Timeout)
    );
    assert_eq!(
        m.with_deadline(soon).incr(b"n", 1, 0),
        Err(shmstate::IncrError::Timeout)
    );
    // SAFETY: plain kill of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let soon = Instant::now() + Duration::from_secs(5);
    assert_eq!(
        m.get_until(&key(3), &mut out, soon),
        Ok(true),
        "the continued writer finished"
    );
    assert_eq!(out, b"new value");
    assert_eq!(m.with_deadline(soon).insert(b"other", b"v"), Ok(None));
    assert_eq!(m.len(), KEYS as usize + 1);
}

/// A writer killed between its stripe's count update and the map's (`MapCountsHalf`):
/// the entries are right and the map's count is one high (never low: the map never holds
/// more than `capacity`) until the next writer of the stripe repairs it, which brings it
/// back; for an insert (its place reserved, nothing written) and a removal alike.
#[test]
fn map_count_update_killed_halfway_is_healed_by_the_next_repair() {
    let (m, _) = setup();
    let pid = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.insert(b"new", b"v");
    });
    kill_and_reap(pid);
    assert_eq!(get(m, b"new"), None);
    assert_eq!(m.len(), KEYS as usize + 1, "one high until a repair");
    // Any write to the (only) stripe repairs it.
    m.insert(&key(0), &value(0)).unwrap();
    check(m, |_| true);

    m.insert(b"new", b"v").unwrap();
    let pid = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.remove(b"new");
    });
    kill_and_reap(pid);
    assert_eq!(get(m, b"new"), None);
    assert_eq!(m.len(), KEYS as usize + 1, "one high until a repair");
    m.insert(&key(0), &value(0)).unwrap();
    check(m, |_| true);
}

/// A removal killed in the middle of copying an entry back into the hole (`MapCopying`:
/// the destination's sequence odd, the entry partly copied): the repair drops the torn
/// copy and keeps the intact source; the removed key is gone, every other key stays.
#[test]
fn map_remove_killed_mid_copy_keeps_the_source() {
    let (m, word) = setup();
    let j = remove_until_stopped(m, word, Point::MapCopying);
    check(m, |i| i > j);
}

/// Two inserts of new keys into different stripes of a map one entry short of its
/// capacity: the one stopped mid-write (`MapSlotWriting`) has reserved the last place, so
/// the other fails `Full`; killed, its repair gives the place back.
#[test]
fn map_concurrent_inserts_never_exceed_the_capacity() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(1 << 20).unwrap()));
    let cap = 256; // two stripes
    let options = MapOptions::new(cap).key_max(16).value_max(16);
    let m = region.map("m", options).unwrap();
    assert_eq!(m.stripe_geometry().0, 2);
    // Two keys of different stripes, found while the map is empty.
    let stripe = |k: &[u8]| stripe_of(m, k);
    let a = key(1000);
    let b = (1001..2000)
        .map(key)
        .find(|k| stripe(k) != stripe(&a))
        .unwrap();
    for i in 0..cap as u32 - 1 {
        m.insert(&key(i), &value(i)).unwrap();
    }
    let pid = common::child_stopped_at(Point::MapSlotWriting, || {
        let _ = m.insert(&a, b"a");
    });
    assert!(
        matches!(m.insert(&b, b"b"), Err(shmstate::InsertError::Full { .. })),
        "the map took capacity + 1 entries"
    );
    assert!(m.len() <= cap);
    kill_and_reap(pid);
    // A write to `a`'s stripe repairs it: the torn entry dropped, its place given back.
    assert_eq!(get(m, &a), None);
    assert_eq!(m.len(), cap - 1);
    m.insert(&b, b"b").unwrap();
    assert_eq!(m.len(), cap);
    assert_eq!(m.snapshot().len(), cap);
}

/// The stripe `k` lives in (found by inserting it into `m`, which has room, and removing
/// it).
fn stripe_of(m: &ByteMap, k: &[u8]) -> usize {
    m.insert(k, b"p").unwrap();
    let s = m.raw_slots().iter().find(|e| e.3 == k).unwrap().0;
    m.remove(k).unwrap();
    s
}

/// A `clear` stopped between a stripe's count and the map's (`MapCountsHalf`, several
/// entries cleared at once) while a repair of another stripe lowers the map's count to what
/// the stripes account for: the repair counts the clear's stripe at what it still owes the
/// map's count, so once the clear goes on, the count equals the entries (were it counted
/// at its new count plus one, the count would end below zero: the empty map would read
/// full and refuse every insert).
#[test]
fn map_repair_during_a_stopped_clear_keeps_the_count_exact() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(1 << 20).unwrap()));
    let m = region
        .map("m", MapOptions::new(256).key_max(16).value_max(16))
        .unwrap();
    assert_eq!(m.stripe_geometry().0, 2);
    let (s0, s1): (Vec<_>, Vec<_>) = (0..200).map(key).partition(|k| stripe_of(m, k) == 0);
    for k in &s0[..3] {
        m.insert(k, b"v").unwrap();
    }
    m.insert(&s1[0], b"v").unwrap();
    assert_eq!(m.len(), 4);
    // A clear stopped with stripe 0's count down from 3 to 0, the map's still 4.
    let clearer = common::child_stopped_at(Point::MapCountsHalf, || m.clear());
    // A writer of stripe 1 killed holding its lock: the next writer repairs stripe 1.
    let dead = fork_children(1, |_| {
        let _ = m.update(&s1[0], |_| {
            // SAFETY: raising a signal has no preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
            Update::<(), Vec<u8>>::Keep(())
        });
    })[0];
    common::wait_until_stopped(dead);
    kill_and_reap(dead);
    m.insert(&s1[1], b"v").unwrap();
    assert!(m.len() >= 2, "the count fell below the entries");
    // SAFETY: sending a signal to our own child has no preconditions.
    assert_eq!(unsafe { libc::kill(clearer, libc::SIGCONT) }, 0);
    reap(clearer);
    assert_eq!(m.snapshot().len(), 0);
    assert_eq!(m.len(), 0, "the count drifted from the entries");
    m.insert(&s1[2], b"v").unwrap();
    assert_eq!(m.len(), 1);
}

/// Writers killed at `MapCountsHalf` (an insert's place reserved, nothing written) while
/// two threads keep changing the count on other stripes, so that a repair's attempt to give
/// the place back may lose its race against them: no place is lost for good; once the
/// traffic stops, the map still takes exactly `capacity` entries.
#[test]
fn map_places_left_by_killed_inserts_are_never_lost_under_traffic() {
    watchdog(Duration::from_secs(120));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(64 << 20).unwrap()));
    let cap = 1 << 17; // 1024 stripes: a repair's scan of them is long enough to be raced
    let m = region
        .map("m", MapOptions::new(cap).key_max(16).value_max(8))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic: Vec<_> = (0..2u32)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("t{t}-{}", i % 64).into_bytes();
                    m.insert(&k, b"v").unwrap();
                    m.remove(&k).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..20 {
        let x = format!("victim-{round}").into_bytes();
        let pid = common::child_stopped_at(Point::MapCountsHalf, || {
            let _ = m.insert(&x, b"v");
        });
        kill_and_reap(pid);
        // Takes the dead lock over and repairs the stripe.
        m.insert(&x, b"v").unwrap();
        m.remove(&x).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        t.join().unwrap();
    }
    assert_eq!(m.snapshot().len(), 0);
    let mut n = 0;
    while m.insert(format!("f{n}").as_bytes(), b"v").is_ok() {
        n += 1;
        assert!(n <= cap, "the map took more than its capacity");
    }
    assert_eq!(
        n, cap,
        "places were lost: the map filled before its capacity"
    );
    assert_eq!(m.len(), cap);
}

/// An `insert_evicting` into a full map killed after its eviction, before it wrote the new
/// entry (`MapEvicted`: the victim's place kept for the new entry): the victim is gone,
/// the new key absent, and the repair gives the place back to the map.
#[test]
fn map_insert_evicting_killed_after_evicting_gives_the_place_back() {
    evicting_killed_at(Point::MapEvicted);
}

/// An `insert_evicting` into a full map killed writing the new entry into its victim's
/// place (`MapSlotWriting`: the slot's sequence odd): as for an insert, the torn entry is
/// dropped; the victim is gone, and the repair gives the place back to the map.
#[test]
fn map_insert_evicting_killed_writing_into_the_victims_place_gives_it_back() {
    evicting_killed_at(Point::MapSlotWriting);
}

/// A full one-stripe map, an `insert_evicting` of a new key killed at `p` (after its
/// eviction of key 0, the least recently written): the next writer's repair leaves the
/// victim and the new key absent, every other key present, and the count exact.
fn evicting_killed_at(p: Point) {
    let (m, _) = setup();
    let extra = |i: u32| format!("extra-{i}").into_bytes();
    for i in 0..100 - KEYS {
        m.insert(&extra(i), b"x").unwrap();
    }
    assert_eq!(m.len(), 100);
    let pid = common::child_stopped_at(p, || {
        let _ = m.insert_evicting(b"new", b"v");
    });
    kill_and_reap(pid);
    // A write to the (only) stripe repairs it.
    m.insert(&key(1), &value(1)).unwrap();
    assert_eq!(get(m, b"new"), None);
    for i in 0..KEYS {
        let want = (i != 0).then(|| value(i));
        assert_eq!(get(m, &key(i)), want, "key {i}");
    }
    for i in 0..100 - KEYS {
        assert_eq!(get(m, &extra(i)), Some(b"x".to_vec()));
    }
    assert_eq!(m.snapshot().len(), 99);
    assert_eq!(m.len(), 99);
    m.insert(b"new", b"v").unwrap();
    assert_eq!(m.len(), 100);
    assert!(matches!(
        m.insert(&key(0), b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
}

/// An `insert_evicting` into a full map whose key's stripe is empty, killed while it moves
/// the victim's place from the victim's stripe to its own (`MapPlaceMoving`, both locks
/// held): the victim is gone, the new key absent, every other key present; once each of
/// the two stripes is repaired by its next writer, the count is exact and the map takes
/// exactly `capacity` entries again.
#[test]
fn map_insert_evicting_killed_moving_a_place_between_stripes_loses_none() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(1 << 20).unwrap()));
    let cap = 512; // four stripes of 200 slots
    let options = MapOptions::new(cap).key_max(16).value_max(16);
    let m = region.map("m", options).unwrap();
    assert_eq!(m.stripe_geometry().0, 4);
    // The map's seed: header words 4 and 5.
    let words = m.raw_words();
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&words[4].load(Ordering::Relaxed).to_le_bytes());
    seed[8..].copy_from_slice(&words[5].load(Ordering::Relaxed).to_le_bytes());
    let stripe = |k: &[u8]| ByteMap::place_of(options, seed, k).unwrap().0;
    // Every place taken by keys of stripes 1 to 3 (skipping a key whose stripe is full:
    // the seed is random); stripe 0 empty.
    let mut kept = Vec::new();
    for i in (0..).filter(|&i| stripe(&key(i)) != 0) {
        if kept.len() == cap {
            break;
        }
        if m.insert(&key(i), &value(i)).is_ok() {
            kept.push(i);
        }
    }
    assert_eq!(m.len(), cap);
    let new = (0..)
        .map(|i| format!("new-{i}").into_bytes())
        .find(|k| stripe(k) == 0)
        .unwrap();
    let pid = common::child_stopped_at(Point::MapPlaceMoving, || {
        let _ = m.insert_evicting(&new, b"v");
    });
    kill_and_reap(pid);
    // The victim: stripe 1's least recently written entry, its first key.
    let ones: Vec<u32> = kept
        .iter()
        .copied()
        .filter(|&i| stripe(&key(i)) == 1)
        .collect();
    assert_eq!(get(m, &new), None);
    for &i in &kept {
        let want = (i != ones[0]).then(|| value(i));
        assert_eq!(get(m, &key(i)), want, "key {i}");
    }
    // Stripe 1's next writer repairs it; then stripe 0's (the new key has room again).
    m.insert(&key(ones[1]), &value(ones[1])).unwrap();
    m.insert(&new, b"v").unwrap();
    assert_eq!(m.snapshot().len(), cap);
    assert_eq!(m.len(), cap);
    assert!(matches!(
        m.insert(&key(ones[0]), b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
}

/// A repair run by a timed call whose deadline has passed (a `try_` form) stops its scan of
/// the stripe heads at the deadline (the first check, after 256 of them): a place left by
/// an insert killed at `MapCountsHalf` stays in the count, flagged, instead of making the
/// call scan the whole map; the first insert that finds the map full gives it back.
#[test]
fn map_timed_repair_leaves_the_count_scan_to_a_full_insert() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(32 << 20).unwrap()));
    let cap = 1 << 16; // 512 stripes
    let m = region
        .map("m", MapOptions::new(cap).key_max(16).value_max(8))
        .unwrap();
    assert_eq!(m.stripe_geometry().0, 512);
    let pid = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.insert(b"x", b"v");
    });
    kill_and_reap(pid);
    assert_eq!(m.len(), 1);
    // Takes the dead lock over (its last chance at the deadline) and repairs the stripe.
    let r = m.with_deadline(Instant::now()).insert(b"x", b"v");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(m.snapshot().len(), 1);
    assert_eq!(m.len(), 2, "the timed repair scanned past its deadline");
    let mut n = 1;
    while m.insert(format!("f{n}").as_bytes(), b"v").is_ok() {
        n += 1;
        assert!(n <= cap, "the map took more than its capacity");
    }
    assert_eq!(
        n, cap,
        "the place was lost: the map filled before its capacity"
    );
    assert_eq!(m.len(), cap);
}

/// The map's hash seed: header words 4 and 5.
fn seed_of(m: &ByteMap) -> [u8; 16] {
    let words = m.raw_words();
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&words[4].load(Ordering::Relaxed).to_le_bytes());
    seed[8..].copy_from_slice(&words[5].load(Ordering::Relaxed).to_le_bytes());
    seed
}

/// Inserts new keys until the map refuses one; how many it took.
fn fill(m: &ByteMap, cap: usize) -> usize {
    let mut n = 0;
    while m.insert(format!("f{n}").as_bytes(), b"v").is_ok() {
        n += 1;
        assert!(n <= cap, "the map took more than its capacity");
    }
    n
}

/// A repair killed after it set the slack flag for a dead insert's pending place, before
/// it dropped the place (`MapRepairFlagged`): the next repair (the lock still names a dead
/// thread) drops it, and the map takes exactly `capacity` entries.
#[test]
fn map_repair_killed_after_flagging_loses_no_place() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(4 << 20).unwrap()));
    let cap = 256;
    let m = region
        .map("m", MapOptions::new(cap).key_max(16).value_max(8))
        .unwrap();
    let pid = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.insert(b"x", b"v");
    });
    kill_and_reap(pid);
    // The next writer of the stripe repairs it; killed once it flagged the count.
    let pid = common::child_stopped_at(Point::MapRepairFlagged, || {
        let _ = m.insert(b"x", b"v");
    });
    kill_and_reap(pid);
    assert_ne!(
        m.raw_words()[9].load(Ordering::Relaxed),
        0,
        "the slack flag"
    );
    assert_eq!(get(m, b"x"), None);
    assert_eq!(fill(m, cap), cap, "a place was lost");
    assert_eq!(m.len(), cap);
}

/// An `insert_evicting` killed moving its victim's place between stripes
/// (`MapPlaceMoving`), then only the victim's stripe written again (its repair flags the
/// count): a full map's next insert takes the key's stripe over from the dead writer (its
/// place pending there), gives the place back and clears the flag, without any write to
/// that stripe.
#[test]
fn map_a_dead_writers_place_in_an_idle_stripe_is_given_back_by_a_full_insert() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(1 << 20).unwrap()));
    let cap = 512;
    let options = MapOptions::new(cap).key_max(16).value_max(16);
    let m = region.map("m", options).unwrap();
    assert_eq!(m.stripe_geometry().0, 4);
    let seed = seed_of(m);
    let stripe = |k: &[u8]| ByteMap::place_of(options, seed, k).unwrap().0;
    // Every place taken by keys of stripes 1 to 3 (skipping a key whose stripe is full:
    // the seed is random); stripe 0 empty.
    let mut kept = Vec::new();
    for i in (0..).filter(|&i| stripe(&key(i)) != 0) {
        if kept.len() == cap {
            break;
        }
        if m.insert(&key(i), &value(i)).is_ok() {
            kept.push(i);
        }
    }
    let new = (0..)
        .map(|i| format!("new-{i}").into_bytes())
        .find(|k| stripe(k) == 0)
        .unwrap();
    let pid = common::child_stopped_at(Point::MapPlaceMoving, || {
        let _ = m.insert_evicting(&new, b"v");
    });
    kill_and_reap(pid);
    let ones: Vec<u32> = kept
        .iter()
        .copied()
        .filter(|&i| stripe(&key(i)) == 1)
        .collect();
    // Stripe 1's next writer repairs it: drops its pending place, flags the count.
    m.insert(&key(ones[1]), &value(ones[1])).unwrap();
    let flag = m.raw_words()[9];
    let heads = m.raw_stripe_words();
    assert_eq!(
        heads[0].2.load(Ordering::Relaxed) >> 32,
        1,
        "stripe 0's place"
    );
    // A full insert into stripe 2: stripe 0 is taken over and repaired, the place given
    // back (the victim's), so this insert succeeds, and the flag clears.
    let extra = (0..)
        .map(|i| format!("extra-{i}").into_bytes())
        .find(|k| stripe(k) == 2)
        .unwrap();
    m.insert(&extra, b"v").unwrap();
    assert_eq!(heads[0].2.load(Ordering::Relaxed), 0, "stripe 0 repaired");
    assert_eq!(flag.load(Ordering::Relaxed), 0, "the slack flag stayed set");
    assert_eq!(m.snapshot().len(), cap);
    assert_eq!(m.len(), cap);
    assert!(matches!(
        m.insert(&new, b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
}

/// A garbage-high map count (a peer wrote `capacity` into it) makes inserts fail `Full`
/// only until the next repair of any stripe: a remove killed holding the lock before it
/// changed anything (`MapShiftStarted`, nothing to recount, no pending place) is repaired
/// by the next writer, whose scan lowers the count to the entries.
#[test]
fn map_a_garbage_high_count_is_lowered_by_the_next_repair() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(4 << 20).unwrap()));
    let cap = 256;
    let m = region
        .map("m", MapOptions::new(cap).key_max(16).value_max(8))
        .unwrap();
    m.insert(b"x", b"v").unwrap();
    let count = m.raw_words()[8];
    let w = count.load(Ordering::Relaxed);
    count.store((w & !((1 << 40) - 1)) | cap as u64, Ordering::Relaxed);
    assert!(matches!(
        m.insert(b"y", b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
    let pid = common::child_stopped_at(Point::MapShiftStarted, || {
        let _ = m.remove(b"x");
    });
    kill_and_reap(pid);
    // Repairs x's stripe (the lock names a dead thread).
    assert_eq!(get(m, b"x"), Some(b"v".to_vec()));
    m.insert(b"x", b"w").unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(fill(m, cap), cap - 1);
    assert_eq!(m.len(), cap);
}

/// A repair killed after dropping a dead insert's pending place, before it bumped the
/// count's version (`MapRepairDropped`): the flag is set and the count holds the place, so
/// the first full insert's scan lowers it; the map takes exactly `capacity` entries.
#[test]
fn map_repair_killed_after_dropping_a_place_loses_none() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(4 << 20).unwrap()));
    let cap = 256;
    let m = region
        .map("m", MapOptions::new(cap).key_max(16).value_max(8))
        .unwrap();
    let pid = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.insert(b"x", b"v");
    });
    kill_and_reap(pid);
    let pid = common::child_stopped_at(Point::MapRepairDropped, || {
        let _ = m.insert(b"x", b"v");
    });
    kill_and_reap(pid);
    assert_ne!(
        m.raw_words()[9].load(Ordering::Relaxed),
        0,
        "the slack flag"
    );
    assert_eq!(m.len(), 1, "the place is still counted");
    assert_eq!(fill(m, cap), cap, "a place was lost");
    assert_eq!(m.len(), cap);
}

/// A full map whose slack flag is set while a stopped (live) insert holds a pending place:
/// the first full insert scans, finds nothing to lower and no dead holder to take over,
/// and remembers the count word it scanned for (later full writers skip the scan while it
/// is unchanged); once the stopped insert continues and writes its entry, the map holds
/// exactly `capacity` entries and refuses another.
#[test]
fn map_a_fruitless_scan_is_remembered_until_the_count_changes() {
    watchdog(Duration::from_secs(60));
    let region: &'static Region = Box::leak(Box::new(Region::anonymous(4 << 20).unwrap()));
    let cap = 1024; // 8 stripes
    let options = MapOptions::new(cap).key_max(16).value_max(8);
    let m = region.map("m", options).unwrap();
    let seed = seed_of(m);
    let stripe = |k: &[u8]| ByteMap::place_of(options, seed, k).unwrap().0;
    let sa = stripe(b"xa");
    let xb = (0..)
        .map(|i| format!("xb-{i}").into_bytes())
        .find(|k| stripe(k) != sa)
        .unwrap();
    // An insert stopped holding a place in stripe sa (alive).
    let stopped = common::child_stopped_at(Point::MapCountsHalf, || {
        let _ = m.insert(b"xa", b"v");
    });
    // An insert killed holding a place in xb's stripe, whose next writer repairs it: the
    // flag is set, and stays set (the count holds the stopped insert's place, no entry).
    let xb2 = xb.clone();
    let pid = common::child_stopped_at(Point::MapCountsHalf, move || {
        let _ = m.insert(&xb2, b"v");
    });
    kill_and_reap(pid);
    m.insert(&xb, b"v").unwrap();
    let (count, flag, seen) = (m.raw_words()[8], m.raw_words()[9], m.raw_words()[10]);
    assert_ne!(flag.load(Ordering::Relaxed), 0);
    // Fill, never touching stripe sa.
    let mut n = 2;
    let mut i = 0;
    while n < cap {
        let k = format!("f{i}").into_bytes();
        i += 1;
        if stripe(&k) != sa && m.insert(&k, b"v").is_ok() {
            n += 1;
        }
    }
    assert_eq!(m.len(), cap);
    let k = (i..)
        .map(|i| format!("f{i}").into_bytes())
        .find(|k| stripe(k) != sa)
        .unwrap();
    assert!(matches!(
        m.insert(&k, b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
    assert_ne!(
        flag.load(Ordering::Relaxed),
        0,
        "the place is held, not slack"
    );
    assert_eq!(
        seen.load(Ordering::Relaxed),
        count.load(Ordering::Relaxed),
        "the fruitless scan is remembered"
    );
    // SAFETY: plain kill of our own child.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGCONT) }, 0);
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(stopped, &mut status, 0) };
    assert!(libc::WIFEXITED(status));
    assert_eq!(get(m, b"xa"), Some(b"v".to_vec()));
    assert_eq!(m.snapshot().len(), cap);
    assert!(matches!(
        m.insert(&k, b"v"),
        Err(shmstate::InsertError::Full { .. })
    ));
    assert_eq!(m.len(), cap);
}
