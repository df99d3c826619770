//! The shared map with writers SIGKILLed at random points of `insert`, `remove` and
//! `incr`, while reader processes check every value they see. Values carry a self-check
//! (a key-derived pattern and a checksum, see `map_support::make_value`), so a reader can
//! tell a whole value some writer wrote for this key from a torn or foreign one. Afterwards
//! every key is absent or holds such a value, no counter holds more than every
//! acknowledged increment plus one per killed writer (and fewer only where a kill dropped
//! it), operations go on, and `len` agrees with a snapshot (up to the count window that
//! the map's repair leaves alone, see the test). Runs in the normal build (no failpoints needed: the kills
//! land where the writers happen to be). Run under nextest (one process per test).
#![cfg(not(loom))]

mod common;
mod map_support;

use std::time::Duration;

use common::{fork_children, wait_all, watchdog};
use map_support::{Rng, as_i64, check_value, kill, make_value, seed};
use shmstate::sync::Ordering::{Acquire, Relaxed, Release};
use shmstate::{ByteMap, MapOptions, Region, ValueArray};

/// Keys with self-checking values: `v0` .. `v63`.
const KEYS: usize = 64;
/// `incr` counters: `c0` .. `c15`.
const COUNTERS: usize = 16;
/// Writers alive at once; all are killed in each round.
const WRITERS: usize = 3;
/// Kill rounds (release builds run 4 times more).
const ROUNDS: usize = if cfg!(debug_assertions) { 100 } else { 400 };
/// Longest self-checking value: several lines of the map's slots, so a kill can land
/// between the words of one value copy.
const VALUE_MAX: usize = 240;

fn vkey(k: usize) -> Vec<u8> {
    format!("v{k}").into_bytes()
}

fn ckey(k: usize) -> Vec<u8> {
    format!("c{k}").into_bytes()
}

/// Slots of the shared bookkeeping array.
const ACKED: usize = 0; // .. ACKED + COUNTERS: increments acknowledged (incr returned Ok)
const PROGRESS: usize = COUNTERS; // operations completed by this round's writers
const STOP: usize = COUNTERS + 1; // set to 1 to stop the readers
const READS: usize = COUNTERS + 2; // values checked by the readers
const BOOK: usize = COUNTERS + 3;

/// A writer's endless loop of random operations (until it is killed): inserts of
/// self-checking values, removes, increments (acknowledged after `incr` returns).
fn writer(map: &ByteMap, book: &ValueArray<u64>, id: u64, seed: u64) -> ! {
    let mut rng = Rng::new(seed, id);
    let mut seq = 0;
    loop {
        match rng.below(4) {
            0 | 1 => {
                let k = rng.below(KEYS as u64) as usize;
                seq += 1;
                let len = 24 + rng.below((VALUE_MAX - 23) as u64) as usize;
                map.insert(&vkey(k), &make_value(&vkey(k), id, seq, len))
                    .expect("insert");
            }
            2 => {
                let k = rng.below(KEYS as u64) as usize;
                map.remove(&vkey(k)).expect("remove");
            }
            _ => {
                let k = rng.below(COUNTERS as u64) as usize;
                map.incr(&ckey(k), 1, 0).expect("incr");
                // Relaxed: read by the parent after this writer was killed and reaped.
                book.fetch_add(ACKED + k, 1, Relaxed);
            }
        }
        // Relaxed: a progress count only (the parent waits for it to pass a target).
        book.fetch_add(PROGRESS, 1, Relaxed);
    }
}

/// A reader's loop until told to stop: every value it sees is whole and for its key,
/// every counter 8 bytes; also through `for_each`.
fn reader(map: &ByteMap, book: &ValueArray<u64>, r: usize) {
    let mut out = Vec::new();
    let mut rounds = 0u64;
    // Acquire pairs with the parent's Release store of STOP (nothing else to see; it keeps
    // the flag's meaning plain).
    while book.load(STOP, Acquire) == 0 {
        for k in 0..KEYS {
            let key = vkey((k + r * 7) % KEYS);
            if map.get(&key, &mut out).expect("get") {
                assert!(
                    check_value(&key, &out).is_some(),
                    "torn or foreign value for {key:?}: {out:?}"
                );
            }
        }
        for k in 0..COUNTERS {
            let v = map.get_with(&ckey(k), |v| v.len()).expect("get counter");
            assert!(matches!(v, None | Some(8)), "counter c{k} of {v:?} bytes");
        }
        if rounds.is_multiple_of(8) {
            map.for_each(|k, v| {
                if k.starts_with(b"v") {
                    assert!(
                        check_value(k, v).is_some(),
                        "for_each: torn value for {k:?}"
                    );
                } else {
                    assert_eq!(v.len(), 8, "for_each: counter {k:?}");
                }
            });
        }
        rounds += 1;
        // Relaxed: a count for the final report only.
        book.fetch_add(READS, 1, Relaxed);
    }
}

#[test]
fn writers_killed_mid_operation_leave_whole_values_and_exact_counters() {
    watchdog(Duration::from_secs(90));
    let seed = seed("map_crash");
    let region = Region::anonymous(8 << 20).unwrap();
    let map = region
        .map(
            "crash",
            MapOptions::new(256).key_max(8).value_max(VALUE_MAX),
        )
        .unwrap();
    let book = region
        .get_or_default_slice::<ValueArray<u64>>("book", BOOK)
        .unwrap();

    let readers = fork_children(2, |r| reader(map, book, r));
    let mut rng = Rng::new(seed, 1000);
    let mut killed = 0u64;
    for round in 0..ROUNDS {
        book.store(PROGRESS, 0, Relaxed);
        let writers = fork_children(WRITERS, |w| {
            writer(map, book, (round * WRITERS + w) as u64, seed)
        });
        // Kill them once they have done a random number of operations: wherever they are.
        let target = 1 + rng.below(300);
        while book.load(PROGRESS, Relaxed) < target {
            std::thread::yield_now();
        }
        for &pid in &writers {
            for _ in 0..rng.below(2000) {
                std::hint::spin_loop();
            }
            kill(pid);
            killed += 1;
        }
    }
    // Release pairs with the readers' Acquire load.
    book.store(STOP, 1, Release);
    wait_all(&readers, Duration::from_secs(30));
    assert!(
        book.load(READS, Relaxed) > 0,
        "the readers never completed a pass"
    );

    // What the dead writers left: absent or whole, and counters within their bounds.
    let check = fork_children(1, |_| {
        let mut out = Vec::new();
        for k in 0..KEYS {
            if map.get(&vkey(k), &mut out).unwrap() {
                let (writer, _) = check_value(&vkey(k), &out).expect("a whole value");
                assert!(
                    writer < (ROUNDS * WRITERS) as u64,
                    "v{k} from writer {writer}"
                );
            }
        }
        // Counters: never more than every acknowledged increment plus one per killed
        // writer (the one it was doing). Fewer only where a kill cut an increment's write
        // short: the map then drops the key (its module docs: "an update in place that
        // was killed drops the key"), and later increments start it again from 0; a
        // killed writer cuts at most one write short.
        let mut dropped = 0;
        for k in 0..COUNTERS {
            let acked = book.load(ACKED + k, Relaxed) as i64;
            let v = map
                .get_with(&ckey(k), |v| as_i64(v).expect("8 bytes"))
                .unwrap();
            let v = v.unwrap_or(0);
            assert!(
                v <= acked + killed as i64,
                "c{k} = {v}, acknowledged {acked}, {killed} writers killed"
            );
            dropped += u64::from(v < acked);
        }
        assert!(dropped <= killed, "{dropped} counters lost increments");
        // Operations go on: every key written, read back, incremented, some removed.
        for k in 0..KEYS {
            let v = make_value(&vkey(k), 9999, 1, 40);
            map.insert(&vkey(k), &v).unwrap();
            assert!(map.get(&vkey(k), &mut out).unwrap());
            assert_eq!(out, v);
        }
        for k in 0..COUNTERS {
            let before = map
                .get_with(&ckey(k), |v| as_i64(v).unwrap())
                .unwrap()
                .unwrap_or(0);
            assert_eq!(map.incr(&ckey(k), 5, 0).unwrap(), before + 5);
        }
        for k in (0..KEYS).step_by(2) {
            assert!(map.remove(&vkey(k)).unwrap().is_some());
        }
    });
    wait_all(&check, Duration::from_secs(30));

    // Quiescent: the snapshot agrees with what get finds, and len with the snapshot up to
    // the count window that repair leaves alone: a writer killed between updating its
    // stripe's entry count and the map's leaves the map's count off by one for good (one
    // low after counting a new entry, one high after counting a removal): about one kill
    // in 1,000 to 2,000 here, in a debug build.
    let snap = map.snapshot();
    let len = map.len();
    assert!(
        len.abs_diff(snap.len()) <= killed as usize,
        "len {len}, snapshot {} entries, {killed} writers killed",
        snap.len()
    );
    if len != snap.len() {
        eprintln!(
            "map_crash: len {len}, but the snapshot has {} entries",
            snap.len()
        );
    }
    let found = (0..KEYS)
        .filter(|&k| map.contains(&vkey(k)).unwrap())
        .count()
        + (0..COUNTERS)
            .filter(|&k| map.contains(&ckey(k)).unwrap())
            .count();
    assert_eq!(found, KEYS / 2 + COUNTERS);
    assert_eq!(snap.len(), found);
    for (k, v) in &snap {
        if k.starts_with(b"v") {
            assert!(check_value(k, v).is_some());
        }
    }
    eprintln!(
        "map_crash: {ROUNDS} rounds, {killed} writers killed, {} reader passes",
        book.load(READS, Relaxed)
    );
}

/// The self-check itself: a value checks only for its key and only whole.
#[test]
fn a_self_checking_value_fails_when_torn_or_for_another_key() {
    let v = make_value(b"k1", 3, 9, 40);
    assert_eq!(check_value(b"k1", &v), Some((3, 9)));
    assert_eq!(check_value(b"k2", &v), None);
    let w = make_value(b"k1", 3, 10, 40);
    let mut torn = v[..20].to_vec();
    torn.extend_from_slice(&w[20..]);
    assert_eq!(check_value(b"k1", &torn), None);
    assert_eq!(check_value(b"k1", &v[..39]), None);
}
