//! The shared map with real forked processes, placed in a region as users place it: a
//! model-based check of every operation (each process owns a key range and checks each
//! result against a `std::collections::HashMap`, while all of them race on shared keys
//! whose totals must add up exactly), exact `incr` totals under contention, TTL expiry and
//! eviction seen from another process, the full map's error handing back the entry, and
//! maps opened by path with their options and types checked.
//! Run under nextest (one process per test).
#![cfg(not(loom))]

mod common;
mod map_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TempDir, fork_children, wait_all, watchdog};
use map_support::{Rng, as_i64, seed};
use shmstate::sync::Ordering::Relaxed;
use shmstate::{
    ByteMap, Evicted, FixedStr, GetError, IncrError, InsertError, MapOpenError, MapOptions, Region,
    Update, ValueArray,
};

/// Worker processes of the model-based test.
const PROCS: usize = 4;

/// Operations per process in the model-based test (release builds run 5 times more).
const MODEL_OPS: usize = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};

/// Keys each process owns in the model-based test.
const OWNED: usize = 48;

/// The shared `incr` counters of the model-based test.
const SHARED_INCR: usize = 4;

/// Per-process result slots in the model-based test's result array.
const SLOTS: usize = 8;
const SLOT_CAS: usize = SHARED_INCR;
const SLOT_UPDATE: usize = SHARED_INCR + 1;
const SLOT_LEN: usize = SHARED_INCR + 2;

const CAS_KEY: &[u8] = b"shared/cas";
const UPDATE_KEY: &[u8] = b"shared/update";

fn shared_incr_key(j: usize) -> Vec<u8> {
    format!("shared/incr/{j}").into_bytes()
}

fn owned_key(p: usize, k: usize) -> Vec<u8> {
    // Lengths differ between keys (1 to 3 digits), as real keys do.
    format!("p{p}/{}", k * 37).into_bytes()
}

/// A random value: usually 0 to 64 bytes, often exactly 8 (an `incr` counter).
fn random_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => rng.bytes(8),
        _ => {
            let len = rng.below(65) as usize;
            rng.bytes(len)
        }
    }
}

/// One random operation of process `p` on a key it owns, checked against `model`.
fn owned_op(map: &ByteMap, model: &mut HashMap<Vec<u8>, Vec<u8>>, rng: &mut Rng, p: usize) {
    let key = owned_key(p, rng.below(OWNED as u64) as usize);
    let k = &key[..];
    let current = model.get(k).cloned();
    match rng.below(11) {
        0 | 1 => {
            let v = random_value(rng);
            let old = map.insert(k, &v).expect("insert");
            assert_eq!(old, model.insert(key.clone(), v), "insert {key:?}");
        }
        2 => {
            let mut out = vec![0xAA; 3];
            let found = map.get(k, &mut out).expect("get");
            assert_eq!(found, current.is_some(), "get {key:?}");
            assert_eq!(out, current.clone().unwrap_or_default(), "get {key:?}");
        }
        3 => {
            let seen = map.get_with(k, |v| v.to_vec()).expect("get_with");
            assert_eq!(seen, current, "get_with {key:?}");
            assert_eq!(map.contains(k).expect("contains"), current.is_some());
        }
        4 => {
            assert_eq!(
                map.remove(k).expect("remove"),
                model.remove(k),
                "remove {key:?}"
            );
        }
        5 => {
            let v = random_value(rng);
            let added = map.add(k, &v).expect("add");
            assert_eq!(added, current.is_none(), "add {key:?}");
            if added {
                model.insert(key.clone(), v);
            }
        }
        6 => {
            let v = random_value(rng);
            let old = map.replace(k, &v).expect("replace");
            assert_eq!(old, current, "replace {key:?}");
            if old.is_some() {
                model.insert(key.clone(), v);
            }
        }
        7 => {
            // Half the time the right current value (when there is one), else another.
            let expect = match (&current, rng.below(2)) {
                (Some(c), 0) => c.clone(),
                _ => random_value(rng),
            };
            let new = random_value(rng);
            let r = map
                .compare_exchange(k, &expect, &new)
                .expect("compare_exchange");
            if current.as_deref() == Some(&expect[..]) {
                assert_eq!(r, Ok(()), "compare_exchange {key:?}");
                model.insert(key.clone(), new);
            } else {
                assert_eq!(r, Err(current), "compare_exchange {key:?}");
            }
        }
        8 => {
            let by = rng.next() as i64;
            let init = rng.below(1000) as i64 - 500;
            let r = map.incr(k, by, init);
            match current.as_deref().map(as_i64) {
                None => {
                    assert_eq!(r, Ok(init.wrapping_add(by)), "incr of absent {key:?}");
                    model.insert(key.clone(), init.wrapping_add(by).to_le_bytes().to_vec());
                }
                Some(Some(old)) => {
                    assert_eq!(r, Ok(old.wrapping_add(by)), "incr {key:?}");
                    model.insert(key.clone(), old.wrapping_add(by).to_le_bytes().to_vec());
                }
                Some(None) => {
                    assert!(
                        matches!(r, Err(IncrError::NotAnInteger { len: _ })),
                        "incr of a non-counter {key:?}: {r:?}"
                    );
                }
            }
        }
        _ => {
            // `update`: the closure sees exactly the model's value, and its choice lands.
            let choice = rng.below(3);
            let v = random_value(rng);
            let seen_ok = map
                .update(k, |seen| {
                    let ok = seen.map(<[u8]>::to_vec) == current;
                    match choice {
                        0 => Update::Set(v.clone(), ok),
                        1 => Update::Remove(ok),
                        _ => Update::Keep(ok),
                    }
                })
                .expect("update");
            assert!(seen_ok, "update {key:?}: the closure saw another value");
            match choice {
                0 => {
                    model.insert(key.clone(), v);
                }
                1 => {
                    model.remove(k);
                }
                _ => {}
            }
        }
    }
}

/// Every operation from 4 processes at once, each checked exactly: keys a process owns
/// against its model; shared keys by totals (every increment, every successful
/// compare-exchange and every update counted exactly once, and a process never sees a
/// shared counter go backwards).
#[test]
fn model_based_random_operations_from_four_processes() {
    watchdog(Duration::from_secs(60));
    let seed = seed("model_based");
    let region = Region::anonymous(16 << 20).unwrap();
    let opts = MapOptions::new(1024).key_max(32).value_max(64);
    let map = region.map("m", opts).unwrap();
    let results = region
        .get_or_default_slice::<ValueArray<i64>>("results", PROCS * SLOTS)
        .unwrap();

    let pids = fork_children(PROCS, |p| {
        let mut rng = Rng::new(seed, p as u64);
        let mut model = HashMap::new();
        let mut incr_sums = [0i64; SHARED_INCR];
        let (mut cas_wins, mut updates) = (0i64, 0i64);
        let (mut last_cas, mut last_update) = (0i64, 0i64);
        for _ in 0..MODEL_OPS {
            match rng.below(8) {
                0 => {
                    let j = rng.below(SHARED_INCR as u64) as usize;
                    let by = rng.below(106) as i64 - 5;
                    map.incr(&shared_incr_key(j), by, 0).expect("shared incr");
                    incr_sums[j] += by;
                }
                1 => {
                    // A compare-exchange chain: read, then +1 unless someone got there
                    // first (then retry from the value they left).
                    let mut cur = map
                        .get_with(CAS_KEY, |v| as_i64(v).expect("cas counter is 8 bytes"))
                        .expect("get cas counter");
                    loop {
                        let Some(c) = cur else {
                            // Absent: create it (0) unless another process just did.
                            map.add(CAS_KEY, &0i64.to_le_bytes())
                                .expect("add cas counter");
                            cur = map.get_with(CAS_KEY, |v| as_i64(v).unwrap()).unwrap();
                            continue;
                        };
                        assert!(c >= last_cas, "the cas counter went back: {c} < {last_cas}");
                        last_cas = c;
                        let r = map
                            .compare_exchange(CAS_KEY, &c.to_le_bytes(), &(c + 1).to_le_bytes())
                            .expect("compare_exchange");
                        match r {
                            Ok(()) => {
                                cas_wins += 1;
                                last_cas = c + 1;
                                break;
                            }
                            Err(actual) => {
                                cur = Some(as_i64(&actual.expect("never removed")).unwrap());
                            }
                        }
                    }
                }
                2 => {
                    let seen = map
                        .update(UPDATE_KEY, |v| {
                            let n = v.map_or(0, |v| as_i64(v).expect("8 bytes"));
                            Update::Set((n + 1).to_le_bytes().to_vec(), n)
                        })
                        .expect("update");
                    assert!(seen >= last_update, "the update counter went back");
                    last_update = seen + 1;
                    updates += 1;
                }
                _ => owned_op(map, &mut model, &mut rng, p),
            }
        }
        // The owned range, exactly.
        for k in 0..OWNED {
            let key = owned_key(p, k);
            let mut out = Vec::new();
            let found = map.get(&key, &mut out).unwrap();
            assert_eq!(
                found.then_some(out),
                model.get(&key).cloned(),
                "final {key:?}"
            );
        }
        for (j, s) in incr_sums.iter().enumerate() {
            results.store(p * SLOTS + j, *s, Relaxed);
        }
        results.store(p * SLOTS + SLOT_CAS, cas_wins, Relaxed);
        results.store(p * SLOTS + SLOT_UPDATE, updates, Relaxed);
        results.store(p * SLOTS + SLOT_LEN, model.len() as i64, Relaxed);
    });
    wait_all(&pids, Duration::from_secs(50));

    // Relaxed loads: the children's stores happen before their exit, which `waitpid`
    // ordered before this.
    let total = |slot: usize| {
        (0..PROCS)
            .map(|p| results.load(p * SLOTS + slot, Relaxed))
            .sum()
    };
    let get = |k: &[u8]| map.get_with(k, |v| as_i64(v).unwrap()).unwrap();
    let mut shared_present = 0;
    for j in 0..SHARED_INCR {
        let v = get(&shared_incr_key(j));
        shared_present += usize::from(v.is_some());
        assert_eq!(v.unwrap_or(0), total(j), "shared incr counter {j}");
    }
    for (k, slot) in [(CAS_KEY, SLOT_CAS), (UPDATE_KEY, SLOT_UPDATE)] {
        let v = get(k);
        shared_present += usize::from(v.is_some());
        assert_eq!(
            v.unwrap_or(0),
            total(slot),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    // Quiescent: len is exact, and agrees with a snapshot and with the models.
    let owned: i64 = total(SLOT_LEN);
    assert_eq!(map.len(), owned as usize + shared_present);
    let snap = map.snapshot();
    assert_eq!(snap.len(), map.len());
    for p in 0..PROCS {
        let prefix = format!("p{p}/");
        let n = snap
            .iter()
            .filter(|(k, _)| k.starts_with(prefix.as_bytes()))
            .count();
        assert_eq!(
            n as i64,
            results.load(p * SLOTS + SLOT_LEN, Relaxed),
            "process {p}"
        );
    }
}

/// Shared keys of the `incr` stress test.
const INCR_KEYS: usize = 1000;

/// 4 processes each increment 1,000 shared keys `n` times in all (key `(step * 7 + 251 *
/// p) % 1000` at each step: every key gets `n / 1000` from each process, the processes
/// meet on the same keys at different moments); every total must be exact.
fn incr_totals_exact(n: usize) {
    let region = Region::anonymous(16 << 20).unwrap();
    let map = region
        .map(
            "counters",
            MapOptions::new(2 * INCR_KEYS).key_max(8).value_max(8),
        )
        .unwrap();
    // Process 0 increments through the map, process 1 through a handle made before the
    // fork (inherited), processes 2 and 3 through handles of their own.
    let inherited = map.handle().unwrap();
    let pids = fork_children(4, |p| {
        let own = map.handle().unwrap();
        for step in 0..n {
            let k = (step * 7 + 251 * p) % INCR_KEYS;
            let key = (k as u64).to_le_bytes();
            match p {
                0 => map.incr(&key, 1, 0),
                1 => inherited.incr(&key, 1, 0),
                _ => own.incr(&key, 1, 0),
            }
            .expect("incr");
        }
    });
    wait_all(&pids, Duration::from_secs(590));
    let each = (4 * n / INCR_KEYS) as i64;
    for k in 0..INCR_KEYS {
        let v = map
            .get_with(&(k as u64).to_le_bytes(), |v| as_i64(v).unwrap())
            .unwrap();
        assert_eq!(v, Some(each), "key {k}");
    }
    assert_eq!(map.len(), INCR_KEYS);
}

/// [`incr_totals_exact`] with the spec's 1,000,000 increments per process in release
/// builds; debug builds (CI's test run) do 100,000 per process, so that the file stays well
/// under 30 s. The full count in any build: the ignored test below.
#[test]
fn four_processes_incr_1000_shared_keys_and_every_total_is_exact() {
    watchdog(Duration::from_secs(120));
    incr_totals_exact(if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    });
}

/// The spec's 4 × 1,000,000 increments whatever the build:
/// `cargo nextest run --test map_processes --run-ignored only` (about 20 s in a debug build, 4 s
/// in a release build on 2 cores).
#[test]
#[ignore = "4 x 1,000,000 increments: about 20 s in a debug build; the test above runs them in release builds"]
fn four_processes_incr_1000_shared_keys_a_million_times_each() {
    watchdog(Duration::from_secs(600));
    incr_totals_exact(1_000_000);
}

/// An entry inserted with a TTL by one process is seen by another before its deadline and
/// by none after it; `purge_expired` removes it; entries without a TTL stay.
#[test]
fn a_ttl_set_by_one_process_expires_for_all() {
    watchdog(Duration::from_secs(30));
    let region = Region::anonymous(4 << 20).unwrap();
    let map = region.map("ttl", MapOptions::new(64)).unwrap();
    const TTL: Duration = Duration::from_millis(600);

    let before = Instant::now();
    let writer = fork_children(1, |_| {
        map.insert_ttl(b"short", b"lived", TTL).unwrap();
        map.insert_ttl(b"long", b"lived", Duration::from_secs(3600))
            .unwrap();
        map.insert(b"forever", b"x").unwrap();
    });
    wait_all(&writer, Duration::from_secs(10));
    let inserted = Instant::now();

    // Seen by another process while young (if this machine got here in time).
    let seen = map.get_with(b"short", <[u8]>::to_vec).unwrap();
    if before.elapsed() < TTL {
        assert_eq!(seen.as_deref(), Some(&b"lived"[..]));
    }
    // Waiting for time to pass is what a TTL is about (not a stand-in for a signal).
    std::thread::sleep(
        (inserted + TTL + Duration::from_millis(50)).saturating_duration_since(Instant::now()),
    );
    let reader = fork_children(1, |_| {
        assert_eq!(map.get_with(b"short", |_| ()).unwrap(), None);
        assert!(!map.contains(b"short").unwrap());
        assert_eq!(
            map.get_with(b"long", <[u8]>::to_vec).unwrap().as_deref(),
            Some(&b"lived"[..])
        );
        assert!(map.contains(b"forever").unwrap());
    });
    wait_all(&reader, Duration::from_secs(10));
    map.purge_expired();
    assert_eq!(map.len(), 2);
    let mut keys: Vec<Vec<u8>> = map.snapshot().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys, [b"forever".to_vec(), b"long".to_vec()]);
}

/// Runs `f` with no file descriptor free to open (`RLIMIT_NOFILE` 0), then restores the
/// limit: what the crate does when a read of `/proc` fails for a moment.
fn without_file_descriptors<T>(f: impl FnOnce() -> T) -> T {
    let mut saved = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` and `setrlimit` read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved);
        let none = libc::rlimit {
            rlim_cur: 0,
            ..saved
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &none);
    }
    let r = f();
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    r
}

/// A process in a time namespace whose `CLOCK_MONOTONIC` runs a day ahead reads the
/// deadlines other processes wrote as they meant them (an entry an hour from its deadline
/// is live to it, and its `purge_expired` leaves it), and the deadlines it writes mean the
/// same to them (due now is expired here, an hour ahead is not), also after a first clock
/// read that could not read its offset (no file descriptor free). Needs `CAP_SYS_ADMIN`,
/// `CAP_SYS_TIME` and Linux 5.6 (skipped elsewhere).
#[test]
fn deadlines_mean_the_same_in_another_time_namespace() {
    watchdog(Duration::from_secs(30));
    let region = Region::anonymous(1 << 20).unwrap();
    let map = region.map("ttl", MapOptions::new(64)).unwrap();
    let hour = Duration::from_secs(3600);
    map.insert_ttl(b"parent", b"1", hour).unwrap();
    // Exit codes: 0 right, 1 the parent's entry read expired, 2 purged, 6 either while
    // the offset could not be read.
    let child = common::in_new_time_namespace("monotonic 86400 0", || {
        // A first clock read that finds no file descriptor free (the offset cannot be
        // read then) is not kept as the answer, and judges no deadline passed.
        // Meanwhile no deadline counts as passed: the entry reads live, none is purged.
        let meanwhile = without_file_descriptors(|| (map.contains(b"parent"), map.purge_expired()));
        if meanwhile != (Ok(true), 0) {
            return 6;
        }
        if !map.contains(b"parent").unwrap() {
            return 1;
        }
        if map.purge_expired() != 0 {
            return 2;
        }
        // `later` first: a writer reclaims the expired entries it meets on its key's
        // probe run, so `due` written first could be reclaimed by `later`'s insert (the
        // region's hash keys are random), and the parent's purge below would count 0.
        map.insert_ttl(b"later", b"3", hour).unwrap();
        map.insert_ttl(b"due", b"2", Duration::ZERO).unwrap();
        0
    });
    match common::exit_code(child) {
        Some(4) => eprintln!("skipped: cannot make a time namespace here"),
        code => {
            assert_eq!(
                code,
                Some(0),
                "1: read expired, 2: purged the parent's entry, 6: either without the offset"
            );
            assert!(map.contains(b"parent").unwrap());
            assert!(
                map.contains(b"later").unwrap(),
                "an hour ahead there is ahead here"
            );
            assert!(!map.contains(b"due").unwrap(), "due there is due here");
            assert_eq!(map.purge_expired(), 1);
        }
    }
}

/// A process that has made a time namespace for its children (whose offsets its
/// `/proc/self/timens_offsets` then shows) writes deadlines on its own clock, not theirs.
/// Needs what [`deadlines_mean_the_same_in_another_time_namespace`] needs, and to run in
/// a namespace without a monotonic offset.
#[test]
fn a_process_that_made_a_time_namespace_for_its_children_keeps_its_own_clock() {
    watchdog(Duration::from_secs(30));
    // Such a process's own offset cannot be told (it counts as 0): the test holds where
    // that is the truth, in a namespace whose clock is the initial one's.
    let own = std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    let offset = |l: &str| l.split_whitespace().skip(1).any(|w| w != "0");
    if own.lines().any(|l| l.starts_with("monotonic") && offset(l)) {
        eprintln!("skipped: this test runs in a time namespace with a monotonic offset");
        return;
    }
    let region = Region::anonymous(1 << 20).unwrap();
    let map = region.map("ttl", MapOptions::new(64)).unwrap();
    let child = fork_children(1, |_| {
        // SAFETY: `unshare` changes only this process's namespaces (for its children).
        if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0
            || std::fs::write("/proc/self/timens_offsets", "monotonic 86400 0").is_err()
        {
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(4) };
        }
        map.insert_ttl(b"due", b"1", Duration::ZERO).unwrap();
        map.insert_ttl(b"later", b"2", Duration::from_secs(3600))
            .unwrap();
    });
    match common::exit_code(child[0]) {
        Some(4) => eprintln!("skipped: cannot make a time namespace here"),
        code => {
            assert_eq!(code, Some(0));
            assert!(
                !map.contains(b"due").unwrap(),
                "written on its children's clock"
            );
            assert!(map.contains(b"later").unwrap());
        }
    }
}

/// How [`a_thread_keeps_its_process_clock_after_another_unshares_or_the_main_thread_exits`]
/// hides the process's namespace from the thread that first reads the clock.
#[derive(Clone, Copy, Debug)]
enum Hidden {
    /// The main thread unshares; a thread made before writes.
    MainUnshares,
    /// The main thread exits; another thread writes.
    MainExits,
    /// A thread unshares, then writes itself.
    WriterUnshares,
}

/// In a process whose clock runs a day ahead (its own time namespace), a thread writes
/// deadlines on the initial clock although a thread's `timens_offsets` does not show the
/// process's namespace: after the main thread has made a time namespace for its children
/// (`unshare(CLONE_NEWTIME)`), or has exited (its `/proc/self` entries gone), the
/// writer's own `/proc/<tid>` entry shows it; after the writer's own `unshare`, the main
/// thread's. (A thread made after the main thread's `unshare` shares its view: where both
/// are hidden, the offset counts as 0.) Needs what
/// [`deadlines_mean_the_same_in_another_time_namespace`] needs.
#[test]
fn a_thread_keeps_its_process_clock_after_another_unshares_or_the_main_thread_exits() {
    watchdog(Duration::from_secs(30));
    for how in [
        Hidden::MainUnshares,
        Hidden::MainExits,
        Hidden::WriterUnshares,
    ] {
        let region = Region::anonymous(1 << 20).unwrap();
        let map = region.map("ttl", MapOptions::new(64)).unwrap();
        // Exit codes: 0 written, 4 no time namespace here, 7 the writer failed.
        let child = common::in_new_time_namespace("monotonic 86400 0", || {
            // SAFETY: the region outlives every thread of this process: it ends by
            // `_exit` or the last thread's exit, neither of which drops it.
            let map: &'static shmstate::ByteMap = unsafe { &*core::ptr::from_ref(&*map) };
            let write = move || {
                map.insert_ttl(b"due", b"1", Duration::ZERO).unwrap();
                map.insert_ttl(b"later", b"2", Duration::from_secs(3600))
                    .unwrap();
            };
            // SAFETY: `unshare` changes only the namespace the calling thread's children
            // get.
            let unshare = || unsafe { libc::unshare(libc::CLONE_NEWTIME) } == 0;
            match how {
                Hidden::MainUnshares => {
                    let (unshared, go) = std::sync::mpsc::channel();
                    let writer = std::thread::spawn(move || go.recv().map(|()| write()));
                    if !unshare() {
                        return 4;
                    }
                    unshared.send(()).unwrap();
                    writer.join().map_or(7, |r| if r.is_ok() { 0 } else { 7 })
                }
                Hidden::WriterUnshares => std::thread::spawn(move || {
                    if !unshare() {
                        return 4;
                    }
                    write();
                    0
                })
                .join()
                .unwrap_or(7),
                Hidden::MainExits => {
                    std::thread::spawn(move || {
                        // The main thread's exit shows as its state, `Z`, after the
                        // command's closing parenthesis.
                        let exited = || {
                            std::fs::read_to_string("/proc/self/stat").is_ok_and(|s| {
                                s.rsplit_once(')').is_some_and(|(_, r)| r.starts_with(" Z"))
                            })
                        };
                        while !exited() {
                            std::thread::yield_now();
                        }
                        let written = std::panic::catch_unwind(write).is_ok();
                        // SAFETY: ends the process at once.
                        unsafe { libc::_exit(if written { 0 } else { 7 }) };
                    });
                    // The main thread alone exits (`exit`, not `exit_group`), running
                    // nothing.
                    // SAFETY: the other thread holds no reference to this thread's state.
                    unsafe { libc::syscall(libc::SYS_exit, 0) };
                    unreachable!()
                }
            }
        });
        match common::exit_code(child) {
            Some(4) => eprintln!("skipped: cannot make a time namespace here"),
            code => {
                assert_eq!(code, Some(0), "{how:?}");
                assert!(
                    !map.contains(b"due").unwrap(),
                    "{how:?}: written on a clock a day ahead"
                );
                assert!(map.contains(b"later").unwrap(), "{how:?}");
            }
        }
    }
}

/// A process whose first read of the boot id fails for a moment (no file descriptor free)
/// does not keep "unknown" as its boot: a map it creates afterwards records this boot, so
/// the next process to open it keeps its deadlines (a map recording no boot has them
/// removed by its next opener, as one from another boot).
#[test]
fn a_boot_id_that_could_not_be_read_for_a_moment_is_read_again() {
    watchdog(Duration::from_secs(30));
    // Forked before this process reads the boot id (a map's creation or opening does),
    // so that the child's first read is the failing one.
    let region = Region::anonymous(1 << 20).unwrap();
    let opts = MapOptions::new(16);
    let child = fork_children(1, |_| {
        without_file_descriptors(|| region.map("while-failing", opts).unwrap());
        let m = region.map("after", opts).unwrap();
        m.insert_ttl(b"k", b"v", Duration::from_secs(3600)).unwrap();
    });
    wait_all(&child, Duration::from_secs(10));
    let m = region.map("after", opts).unwrap();
    assert!(
        m.contains(b"k").unwrap(),
        "the map recorded no boot, and opening it removed its deadlines"
    );
}

/// A full map refuses an insert and hands back its key and value; `insert_evicting` from
/// another process makes room by evicting the least recently written entry, which then
/// reads as absent everywhere, while the new entry is present and the size stays the same.
#[test]
fn a_full_map_hands_back_the_entry_and_insert_evicting_makes_room() {
    watchdog(Duration::from_secs(30));
    let region = Region::anonymous(4 << 20).unwrap();
    let map = region
        .map("small", MapOptions::new(16).key_max(16).value_max(16))
        .unwrap();
    // Fill it from a child until it says full; the error carries the entry back.
    let filler = fork_children(1, |_| {
        for i in 0u64.. {
            let (k, v) = (format!("key{i}"), format!("value{i}"));
            match map.insert(k.as_bytes(), v.as_bytes()) {
                Ok(None) => {}
                Ok(Some(old)) => panic!("fresh key {k} had a value {old:?}"),
                Err(InsertError::Full { key, value }) => {
                    assert_eq!((key, value), (k.into_bytes(), v.into_bytes()));
                    assert!(i as usize >= map.capacity().min(16) / 2, "full after {i}");
                    return;
                }
                Err(e) => panic!("insert {k}: {e}"),
            }
        }
    });
    wait_all(&filler, Duration::from_secs(10));
    let full = map.len();
    assert!(full >= 1 && full <= map.capacity(), "{full} entries");
    // Still full for this process too, and `add` says so the same way.
    assert!(matches!(
        map.insert(b"another", b"v"),
        Err(InsertError::Full { .. })
    ));
    assert!(matches!(
        map.add(b"another", b"v"),
        Err(InsertError::Full { .. })
    ));
    // An overwrite of a present key needs no room (and makes key0 the latest written).
    assert_eq!(
        map.insert(b"key0", b"value0").unwrap(),
        Some(b"value0".to_vec())
    );

    // The evictor reports its victim through a second map.
    let report = region
        .map("report", MapOptions::new(4).key_max(8).value_max(16))
        .unwrap();
    let evictor = fork_children(1, |_| {
        let victim = match map.insert_evicting(b"newcomer", b"v").unwrap() {
            Evicted::Entry { key, value } => {
                // Its value is the one the filler wrote for it.
                let n = &key[3..];
                assert_eq!(&value[5..], n, "evicted {key:?} with {value:?}");
                key
            }
            other => panic!("a full map must evict: {other:?}"),
        };
        assert_ne!(victim, b"newcomer");
        assert!(!map.contains(&victim).unwrap());
        report.insert(b"victim", &victim).unwrap();
    });
    wait_all(&evictor, Duration::from_secs(10));
    let victim = report.get_with(b"victim", <[u8]>::to_vec).unwrap().unwrap();
    // One stripe (capacity <= 128): the victim is its least recently written entry, key1
    // (key0 was written again since).
    assert_eq!(
        victim,
        b"key1",
        "evicted {}",
        String::from_utf8_lossy(&victim)
    );
    assert!(!map.contains(&victim).unwrap());
    assert_eq!(
        map.get_with(b"newcomer", <[u8]>::to_vec)
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(map.len(), full);
}

/// Processes that open a file-backed region by path (not children sharing a mapping):
/// `open_map` finds the map with the options it was created with, a typed map created by
/// one process is updated by others, and opening either with other options or other types
/// is a typed error, never a reinterpretation of the bytes.
#[test]
fn maps_in_a_file_region_are_opened_by_path_with_their_options_and_types() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("map-open");
    let path = dir.0.join("region");
    let opts = MapOptions::new(100).key_max(16).value_max(32);
    {
        let region = Region::create(&path, 4 << 20).unwrap();
        let m = region.map("sessions", opts).unwrap();
        m.insert(b"alice", b"admin").unwrap();
        let stock = region.typed_map::<FixedStr<15>, u64>("stock", 100).unwrap();
        stock.insert(FixedStr::new("apples").unwrap(), 12).unwrap();
    }
    // Each child opens the region by path, as an unrelated process would.
    let pids = fork_children(3, |i| {
        let region = Region::open(&path).unwrap();
        let m = region.open_map("sessions").unwrap();
        assert_eq!(m.options(), opts);
        assert_eq!(
            m.get_with(b"alice", <[u8]>::to_vec).unwrap().as_deref(),
            Some(&b"admin"[..])
        );
        m.insert(format!("user{i}").as_bytes(), b"guest").unwrap();
        let stock = region.typed_map::<FixedStr<15>, u64>("stock", 100).unwrap();
        // Every child takes one apple, atomically.
        stock
            .update(&FixedStr::new("apples").unwrap(), |n| {
                Update::Set(n.expect("apples are in stock") - 1, ())
            })
            .unwrap();
    });
    wait_all(&pids, Duration::from_secs(20));

    let region = Region::open(&path).unwrap();
    let m = region.map("sessions", opts).unwrap();
    assert_eq!(m.len(), 4);
    let stock = region.typed_map::<FixedStr<15>, u64>("stock", 100).unwrap();
    assert_eq!(stock.get(&FixedStr::new("apples").unwrap()), Some(9));
    // Other options for an existing map: a typed error naming both.
    match region.map("sessions", opts.value_max(64)) {
        Err(MapOpenError::OptionsMismatch {
            requested, found, ..
        }) => {
            assert_eq!(found, opts);
            assert_eq!(requested, opts.value_max(64));
        }
        other => panic!("expected OptionsMismatch, got {:?}", other.map(|_| ())),
    }
    // Another key type for a typed map: refused by its type tag.
    assert!(matches!(
        region.typed_map::<FixedStr<7>, u64>("stock", 100),
        Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        region.typed_map::<FixedStr<15>, i64>("stock", 100),
        Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
}

/// The first opener after a reboot sweeps every stripe under its lock; a stripe lock held
/// by a stopped process makes the opener fail `MapOpenError::Timeout` at the region's
/// timeout instead of waiting for as long as the stop lasts (and nothing is recorded, so
/// the next opener sweeps again); once the holder is killed, the next opener takes its
/// lock over and sweeps.
#[test]
fn the_first_open_after_a_reboot_gives_up_at_the_regions_timeout() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::RegionOptions::new()
        .timeout(Duration::from_millis(100))
        .anonymous(1 << 20)
        .unwrap();
    let region: &'static Region = Box::leak(Box::new(region));
    let m = region.map("m", MapOptions::new(100)).unwrap(); // one stripe
    m.insert_ttl(b"ttl", b"v", Duration::from_secs(3600))
        .unwrap();
    m.insert(b"k", b"v").unwrap();
    // A process stopped holding the stripe's lock.
    let holder = fork_children(1, |_| {
        let _ = m.update(b"k", |_| {
            // SAFETY: raising a signal has no preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
            Update::<(), Vec<u8>>::Keep(())
        });
    })[0];
    common::wait_until_stopped(holder);
    // Another boot recorded: the next opener sweeps.
    let boot = m.raw_words()[7];
    let ours = boot.load(Relaxed);
    boot.store(ours ^ 0x5555, Relaxed);
    assert!(matches!(region.open_map("m"), Err(MapOpenError::Timeout)));
    assert!(matches!(
        region.map("m", MapOptions::new(100)),
        Err(MapOpenError::Timeout)
    ));
    assert_eq!(boot.load(Relaxed), ours ^ 0x5555, "nothing recorded");
    // SAFETY: killing and reaping our own child has no preconditions.
    unsafe {
        libc::kill(holder, libc::SIGKILL);
        libc::waitpid(holder, std::ptr::null_mut(), 0);
    }
    let m = region.open_map("m").unwrap();
    assert_eq!(boot.load(Relaxed), ours, "this boot recorded");
    assert!(
        !m.contains(b"ttl").unwrap(),
        "the old boot's deadline was kept"
    );
    assert!(m.contains(b"k").unwrap());
}

/// A child forked inside `update`'s closure, returning `Set` there, must write nothing:
/// the stripe and its lock are its parent's, which still holds it (the parent reads the
/// key under that lock after the child has exited). The child's update returns
/// `ForkedInside`.
#[test]
fn a_child_forked_inside_an_update_writes_nothing() {
    watchdog(Duration::from_secs(60));
    let region = shmstate::Region::anonymous(1 << 20).unwrap();
    let m = region
        .map("m", shmstate::MapOptions::new(64).key_max(16).value_max(16))
        .unwrap();
    m.insert(b"k", b"parent").unwrap();
    let mut seen = Vec::new();
    let r = m.update(b"k", |_old| {
        // SAFETY: the child only returns from the closure and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            return shmstate::map::Update::Set(b"child".to_vec(), 0);
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        m.get(b"k", &mut seen).unwrap();
        shmstate::map::Update::Keep(libc::WEXITSTATUS(status) + 1)
    });
    match r {
        // The child: its update wrote nothing.
        Err(shmstate::map::UpdateError::ForkedInside) => {
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(0) }
        }
        Ok(0) => {
            // SAFETY: as above (the child's update claimed success).
            unsafe { libc::_exit(1) }
        }
        Ok(code) => assert_eq!(code - 1, 0, "the child's update did not say ForkedInside"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        seen, b"parent",
        "the child wrote the stripe under its parent's lock"
    );
    let mut now = Vec::new();
    m.get(b"k", &mut now).unwrap();
    assert_eq!(now, b"parent");
}
