//! Removing named objects with real processes: an object is removed only when no live
//! handle of any process has asked for it (killed processes and dropped handles do not
//! count; a fork child's inherited references do), its entry and space are reused, names
//! stay unique while creators race over reused entries, and no process ever reads another
//! object through a reference it holds.

mod common;

use std::time::Duration;

use common::{SharedMem, fork_children, wait_all, watchdog};
use shmstate::region::ReadOnlyRegion;
use shmstate::sync::Ordering;
use shmstate::{Counter, GetError, Region, RegionOptions, RemoveObjectError, ValueArray};

/// A new handle on `r` (a memfd region), as another process opening it would get.
fn handle(r: &Region) -> Region {
    Region::from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap()
}

fn memfd(capacity: u32, size: u64) -> Region {
    RegionOptions::new()
        .capacity(capacity)
        .timeout(Duration::from_secs(20))
        .memfd("remove", size)
        .unwrap()
}

/// Spins (yielding) until word `i` of `ctl` reads `v`; bounded by the test's watchdog.
fn wait_for(ctl: &ValueArray<u64>, i: usize, v: u64) {
    while ctl.load(i, Ordering::SeqCst) != v {
        std::thread::yield_now();
    }
}

/// Spins until word `i` of `ctl` reads at least `v`.
fn wait_at_least(ctl: &ValueArray<u64>, i: usize, v: u64) {
    while ctl.load(i, Ordering::SeqCst) < v {
        std::thread::yield_now();
    }
}

fn in_use_pids(err: RemoveObjectError) -> Vec<u32> {
    match err {
        RemoveObjectError::InUse { pids, .. } => pids,
        other => panic!("expected InUse, got {other:?}"),
    }
}

#[test]
fn remove_refuses_while_a_live_process_uses_the_object_and_succeeds_once_it_drops_its_handle() {
    watchdog(Duration::from_secs(60));
    let r = memfd(8, 1 << 16);
    let ctl = SharedMem::<ValueArray<u64>>::new(4);
    let child = fork_children(1, |_| {
        let ctl = ctl.get();
        let h = handle(&r);
        h.get_or_default::<Counter>("c").unwrap().add(1);
        ctl.store(0, 1, Ordering::SeqCst);
        wait_for(ctl, 0, 2);
        drop(h);
        ctl.store(0, 3, Ordering::SeqCst);
    });
    let ctl = ctl.get();
    wait_for(ctl, 0, 1);
    let mut admin = handle(&r);
    let pids = in_use_pids(admin.remove("c").unwrap_err());
    assert_eq!(pids, [child[0] as u32]);
    // Refused: nothing changed.
    assert_eq!(admin.get::<Counter>("c").unwrap().get(), 1);
    // `admin` asked for it too: a fresh handle, as a remover should be.
    drop(admin);
    let mut admin = handle(&r);
    ctl.store(0, 2, Ordering::SeqCst);
    wait_for(ctl, 0, 3);
    admin.remove("c").unwrap();
    assert!(matches!(
        admin.get::<Counter>("c"),
        Err(GetError::NotFound { .. })
    ));
    assert!(matches!(
        admin.remove("c"),
        Err(RemoveObjectError::NotFound { .. })
    ));
    wait_all(&child, Duration::from_secs(30));
}

#[test]
fn a_killed_user_does_not_block_removal() {
    watchdog(Duration::from_secs(60));
    let r = memfd(8, 1 << 16);
    let ctl = SharedMem::<ValueArray<u64>>::new(1);
    let child = fork_children(1, |_| {
        let h = handle(&r);
        h.get_or_default::<Counter>("c").unwrap().add(1);
        ctl.get().store(0, 1, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    });
    wait_for(ctl.get(), 0, 1);
    let mut admin = handle(&r);
    assert_eq!(
        in_use_pids(admin.remove("c").unwrap_err()),
        [child[0] as u32]
    );
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(child[0], libc::SIGKILL);
        libc::waitpid(child[0], std::ptr::null_mut(), 0);
    }
    admin.remove("c").unwrap();
    // The entry and its space are reused by the next object.
    let before = admin.space();
    admin.get_or_default::<Counter>("d").unwrap();
    assert_eq!(admin.entries().len(), 1);
    assert_eq!(admin.entries()[0].index, 0, "the freed entry is reused");
    assert_eq!(admin.space().used, before.used + 64);
}

#[test]
fn a_fork_child_keeps_the_objects_its_parent_handed_it() {
    watchdog(Duration::from_secs(60));
    let r = memfd(8, 1 << 16);
    // 0: the grandchild's pid; 1: its progress; 2: the test's go-ahead.
    let ctl = SharedMem::<ValueArray<u64>>::new(3);
    let parent = fork_children(1, |_| {
        let ctl = ctl.get();
        let h = handle(&r);
        let c = h.get_or_default::<Counter>("c").unwrap();
        // SAFETY: the grandchild only uses atomics and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The grandchild holds the reference it inherited.
            c.add(1);
            ctl.store(1, 1, Ordering::SeqCst);
            wait_for(ctl, 2, 1);
            c.add(1);
            // SAFETY: ends the grandchild without unwinding into the harness.
            unsafe { libc::_exit(if c.get() == 3 { 0 } else { 1 }) };
        }
        ctl.store(0, pid as u64, Ordering::SeqCst);
        c.add(1);
        // The parent is done with it: its bit goes with its handle.
        drop(h);
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    });
    let ctl = ctl.get();
    wait_for(ctl, 1, 1);
    wait_at_least(ctl, 0, 1);
    let grandchild = ctl.load(0, Ordering::SeqCst) as u32;
    // The parent may or may not have dropped its handle yet; the grandchild is listed.
    let mut admin = handle(&r);
    let pids = in_use_pids(admin.remove("c").unwrap_err());
    assert!(pids.contains(&grandchild), "{pids:?} lacks {grandchild}");
    ctl.store(2, 1, Ordering::SeqCst);
    wait_all(&parent, Duration::from_secs(30));
    let mut admin = handle(&r);
    admin.remove("c").unwrap();
}

/// Iterations of the remove/re-create test, over all processes: the specified 100,000
/// in release builds, 10,000 in debug builds (about ten times slower).
#[cfg_attr(debug_assertions, allow(dead_code))]
const CYCLES_RELEASE: u64 = 100_000;
#[cfg_attr(not(debug_assertions), allow(dead_code))]
const CYCLES_DEBUG: u64 = 10_000;
const CYCLES: u64 = if cfg!(debug_assertions) {
    CYCLES_DEBUG
} else {
    CYCLES_RELEASE
};
const WORKERS: usize = 4;
const NAMES: u64 = 8;

fn name(n: u64) -> String {
    format!("obj{n}")
}

/// Elements of object `n`: 64, 128 or 192 bytes.
fn len(n: u64) -> usize {
    8 * (1 + (n % 3) as usize)
}

fn stamp(n: u64, i: usize) -> u64 {
    0x5eed_0000_0000_0000 | (n << 16) | i as u64
}

fn stamp_all(a: &ValueArray<u64>, n: u64) {
    for i in 0..a.len() {
        a.store(i, stamp(n, i), Ordering::Relaxed);
    }
}

/// Whether `a` still holds object `n`'s stamps: a reference to memory reused for another
/// object would read that object's.
fn check(a: &ValueArray<u64>, n: u64) {
    assert_eq!(a.len(), len(n));
    for i in 0..a.len() {
        assert_eq!(
            a.load(i, Ordering::Relaxed),
            stamp(n, i),
            "object {n} reads another object's bytes"
        );
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn removing_and_recreating_names_from_several_processes_never_runs_out_or_reads_another_object() {
    watchdog(Duration::from_secs(600));
    // 8 KiB of data: every name alive at once takes at most 8 * 192 bytes, while the
    // objects created over the run take hundreds of times the region.
    let data = 8192;
    let r = memfd(16, 128 + 16 * 128 + 1024 + data);
    // Per worker: removals that succeeded, objects created.
    let ctl = SharedMem::<ValueArray<u64>>::new(2 * WORKERS);
    let pids = fork_children(WORKERS, |w| {
        let ctl = ctl.get();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((w as u64 + 1) * 0x1234_5678));
        let per = CYCLES / WORKERS as u64;
        for _ in 0..per {
            let h = handle(&r);
            let n1 = rng.next() % NAMES;
            let a = h
                .get_or_init_slice(&name(n1), len(n1), |a: &ValueArray<u64>| {
                    stamp_all(a, n1);
                    ctl.fetch_add(WORKERS + w, 1, Ordering::Relaxed);
                })
                .unwrap_or_else(|e| panic!("creating {n1}: {e}"));
            check(a, n1);
            let n2 = rng.next() % NAMES;
            let b = h
                .get_or_init_slice(&name(n2), len(n2), |b: &ValueArray<u64>| {
                    stamp_all(b, n2);
                    ctl.fetch_add(WORKERS + w, 1, Ordering::Relaxed);
                })
                .unwrap_or_else(|e| panic!("creating {n2}: {e}"));
            check(b, n2);
            // Other processes removed and created meanwhile: `a` is still object n1.
            check(a, n1);
            drop(h);
            let mut remover = handle(&r);
            match remover.remove(&name(rng.next() % NAMES)) {
                Ok(()) => {
                    ctl.fetch_add(w, 1, Ordering::Relaxed);
                }
                Err(RemoveObjectError::InUse { .. } | RemoveObjectError::NotFound { .. }) => {}
                Err(e) => panic!("remove: {e}"),
            }
        }
    });
    wait_all(&pids, Duration::from_secs(590));
    let ctl = ctl.get();
    let removed: u64 = (0..WORKERS).map(|w| ctl.load(w, Ordering::Relaxed)).sum();
    let created: u64 = (0..WORKERS)
        .map(|w| ctl.load(WORKERS + w, Ordering::Relaxed))
        .sum();
    eprintln!("{CYCLES} cycles: {removed} removals, {created} creations");
    // Every creation but the live ones followed a removal of its name.
    assert!(
        created <= removed + NAMES,
        "{created} created, {removed} removed"
    );
    // The removals reused the space many times over.
    assert!(
        created * 64 > 20 * data,
        "only {created} objects created: the test reused no space"
    );
    let space = r.space();
    assert!(space.used <= NAMES * 192, "{space:?}");
    assert_eq!(space.free, space.data - space.used);
}

#[test]
fn creators_racing_over_reused_entries_create_each_name_once() {
    watchdog(Duration::from_secs(120));
    let rounds: u64 = if cfg!(debug_assertions) { 300 } else { 2000 };
    let r = memfd(16, 1 << 16);
    // 0: arrivals (a barrier counter); 1: inits of the round's object; 2..2+WORKERS: the
    // offset each worker got.
    let ctl = SharedMem::<ValueArray<u64>>::new(2 + WORKERS);
    let barrier = |ctl: &ValueArray<u64>, epoch: u64| {
        ctl.fetch_add(0, 1, Ordering::SeqCst);
        wait_at_least(ctl, 0, epoch * WORKERS as u64);
    };
    let pids = fork_children(WORKERS, |w| {
        let ctl = ctl.get();
        let mut epoch = 0;
        let mut rng = XorShift(0xdead_beef ^ ((w as u64 + 7) * 0x9999));
        for round in 0..rounds {
            // Worker 0 shapes the directory: free entries before and after the name's.
            if w == 0 {
                let h = handle(&r);
                for k in 0..4 {
                    let f = format!("filler{k}");
                    if rng.next().is_multiple_of(2) {
                        h.get_or_default::<Counter>(&f).unwrap();
                    }
                }
                drop(h);
                let mut h = handle(&r);
                for k in 0..4 {
                    if rng.next().is_multiple_of(2) {
                        let _ = h.remove(&format!("filler{k}"));
                    }
                }
            }
            epoch += 1;
            barrier(ctl, epoch);
            let h = handle(&r);
            let x = h
                .get_or_init::<Counter>("x", |c| {
                    c.add(round + 1);
                    ctl.fetch_add(1, 1, Ordering::SeqCst);
                })
                .unwrap();
            assert_eq!(x.get(), round + 1, "another round's object");
            ctl.store(2 + w, h.offset_of(x).unwrap() as u64, Ordering::SeqCst);
            drop(h);
            epoch += 1;
            barrier(ctl, epoch);
            assert_eq!(
                ctl.load(1, Ordering::SeqCst),
                round + 1,
                "round {round}: `x` initialised more than once"
            );
            let first = ctl.load(2, Ordering::SeqCst);
            for k in 0..WORKERS {
                assert_eq!(ctl.load(2 + k, Ordering::SeqCst), first, "two objects `x`");
            }
            epoch += 1;
            barrier(ctl, epoch);
            if w == 0 {
                // Nobody holds it now.
                handle(&r).remove("x").unwrap();
            }
            epoch += 1;
            barrier(ctl, epoch);
        }
    });
    wait_all(&pids, Duration::from_secs(110));
}

#[test]
fn an_unlisted_region_never_has_an_object_removed() {
    watchdog(Duration::from_secs(60));
    let r = memfd(8, 1 << 16);
    r.get_or_default::<Counter>("c").unwrap();
    // Fill the attach table with this live process's handles, then one more: unlisted.
    let mut handles = Vec::new();
    while r.attached().iter().map(|a| a.handles).sum::<u32>() < shmstate::region::ATTACH_SLOTS {
        handles.push(handle(&r));
    }
    let extra = handle(&r);
    drop(handles);
    let mut admin = handle(&r);
    drop(extra);
    assert!(matches!(
        admin.remove("c"),
        Err(RemoveObjectError::Unlisted)
    ));
    assert!(admin.get::<Counter>("c").is_ok());
}

#[test]
fn inspect_sees_the_space_of_removed_objects() {
    watchdog(Duration::from_secs(60));
    let dir = common::TempDir::new("remove-space");
    let path = dir.0.join("r");
    let r = Region::create(&path, 1 << 16).unwrap();
    for k in 0..4 {
        r.get_or_default_slice::<ValueArray<u64>>(&format!("a{k}"), 16)
            .unwrap();
    }
    drop(r);
    let mut r = Region::open(&path).unwrap();
    r.remove("a1").unwrap();
    r.remove("a2").unwrap();
    let view = ReadOnlyRegion::open(&path).unwrap();
    let s = view.space();
    assert_eq!(s, r.space());
    assert_eq!(s.used, 2 * 128);
    // One hole of two objects (they coalesced), and the tail.
    assert_eq!(s.free_extents, 2);
    assert_eq!(s.free, s.data - 256);
    assert_eq!(s.largest_free, s.tail);
    // A 256-byte object fits the hole exactly: placed there, first fit.
    let hole = r.entries()[0].offset + 128;
    let big = r
        .get_or_default_slice::<ValueArray<u64>>("big", 32)
        .unwrap();
    assert_eq!(r.offset_of(big), Some(hole as usize));
    assert_eq!(r.space().free_extents, 1);
}

/// Bytes of entry `i`'s words (the documented layout, `src/region/format.rs`).
mod layout {
    pub const ENTRY0: u64 = 128;
    pub const ENTRY: u64 = 128;
    pub const STATE: u64 = 0;
    pub const SIZE: u64 = 32;
    pub const OFFSET: u64 = 40;
    pub const GENERATION: u64 = 104;
    pub const USERS: u64 = 112;
    pub const CREATE_LOCK: u64 = 80;
}

#[test]
fn garbage_in_bitmaps_generations_states_and_the_creation_lock_never_panics_or_overlaps_own_objects()
 {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(120));
    let dir = common::TempDir::new("remove-hostile");
    let path = dir.0.join("r");
    let options = RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_millis(30));
    let mut rng = XorShift(0x0bad_f00d_1234_5678);
    let rounds = if cfg!(debug_assertions) { 300 } else { 2000 };
    let mut refused = 0;
    let mut reset = true;
    for round in 0..rounds {
        if reset || round % 5 == 0 {
            reset = false;
            let _ = std::fs::remove_file(&path);
            let r = options.create(&path, 1 << 16).unwrap();
            for k in 0..4 {
                r.get_or_default::<Counter>(&format!("seed{k}")).unwrap();
            }
        }
        // A handle opened before the peer's garbage: validation at open cannot help it.
        let Ok(mut h) = options.open(&path) else {
            refused += 1;
            reset = true;
            continue;
        };
        // A peer writes a word of garbage.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let e = layout::ENTRY0 + layout::ENTRY * (rng.next() % 8);
        let (at, bytes): (u64, Vec<u8>) = match rng.next() % 6 {
            0 => (
                e + layout::USERS + 8 * (rng.next() % 2),
                rng.next().to_ne_bytes().to_vec(),
            ),
            1 => (e + layout::GENERATION, rng.next().to_ne_bytes().to_vec()),
            // Any phase (6 and 7 are none), any owner, any waiters bit.
            2 => (
                e + layout::STATE,
                (rng.next() as u32).to_ne_bytes().to_vec(),
            ),
            3 => (e + layout::SIZE, (rng.next() % 4096).to_ne_bytes().to_vec()),
            4 => (
                e + layout::OFFSET,
                (rng.next() % (1 << 16)).to_ne_bytes().to_vec(),
            ),
            // A creation lock naming nobody (a dead holder) or garbage bits.
            _ => (
                layout::CREATE_LOCK,
                ((rng.next() as u32) | 1 << 31).to_ne_bytes().to_vec(),
            ),
        };
        file.write_all_at(&bytes, at).unwrap();
        let _ = h.space();
        let _ = h.entries();
        let _ = h.remove(&format!("seed{}", rng.next() % 4));
        let _ = h.remove("new0");
        // Objects this handle creates (its `init` ran) never overlap one another.
        let mut mine: Vec<(usize, String)> = Vec::new();
        for k in 0..3 {
            let name = format!("new{k}");
            let mut ran = false;
            if let Ok(c) = h.get_or_init::<Counter>(&name, |_| ran = true)
                && ran
            {
                mine.push((h.offset_of(c).unwrap(), name));
            }
        }
        mine.sort();
        for w in mine.windows(2) {
            assert!(
                w[0].0 + 64 <= w[1].0,
                "round {round}: overlapping objects {mine:?}"
            );
        }
    }
    eprintln!("{rounds} rounds, {refused} opens refused");
}

#[test]
fn a_refused_removal_keeps_the_removers_own_use_of_the_object() {
    watchdog(Duration::from_secs(60));
    let r1 = memfd(8, 1 << 16);
    let r2 = handle(&r1);
    r2.get_or_default::<Counter>("c").unwrap();
    let mut r3 = handle(&r1);
    r3.get::<Counter>("c").unwrap();
    // Refused: r2 uses it. r3 still counts as a user afterwards.
    assert_eq!(
        in_use_pids(r3.remove("c").unwrap_err()),
        [std::process::id()]
    );
    let c3 = r3.get::<Counter>("c").unwrap();
    c3.add(5);
    drop(r2);
    let mut r4 = handle(&r1);
    assert_eq!(
        in_use_pids(r4.remove("c").unwrap_err()),
        [std::process::id()],
        "removed while r3 holds a reference to it"
    );
    assert_eq!(c3.get(), 5);
    drop(r3);
    r4.remove("c").unwrap();
}

#[test]
fn an_initialisation_that_panicked_can_be_removed_and_its_space_reused() {
    watchdog(Duration::from_secs(60));
    let r = memfd(8, 1 << 16);
    let free = r.space().free;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = r.get_or_init::<Counter>("half", |_| panic!("init fails"));
    }));
    assert!(res.is_err());
    assert_eq!(r.space().free, free - 64);
    let mut admin = handle(&r);
    admin.remove("half").unwrap();
    assert_eq!(admin.space().free, free);
    assert!(admin.entries().is_empty());
    assert!(matches!(
        admin.remove("half"),
        Err(RemoveObjectError::NotFound { .. })
    ));
    // The name can be created again, by the handle whose `init` panicked too.
    assert_eq!(r.get_or_default::<Counter>("half").unwrap().get(), 0);
}

#[test]
fn an_odd_generation_written_into_a_ready_entry_does_not_stall_lookups_of_other_names() {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(60));
    let dir = common::TempDir::new("remove-odd-generation");
    let path = dir.0.join("r");
    // A lookup that spun on the garbage entry would end in `Timeout` after 2 s.
    let options = RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_secs(2));
    let r = options.create(&path, 1 << 16).unwrap();
    r.get_or_default::<Counter>("first").unwrap();
    r.get_or_default::<Counter>("second").unwrap().add(2);
    let mut h = options.open(&path).unwrap();
    // A peer writes an odd generation into entry 0 (READY).
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&1u64.to_ne_bytes(), layout::ENTRY0 + layout::GENERATION)
        .unwrap();
    assert_eq!(h.get::<Counter>("second").unwrap().get(), 2);
    // Tools list only entries whose copy held: not the one being (seemingly) rewritten.
    let names: Vec<String> = h.entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["second"]);
    h.get_or_default::<Counter>("third").unwrap().add(3);
    assert!(matches!(
        h.get::<Counter>("absent"),
        Err(GetError::NotFound { .. })
    ));
    drop(r);
    h.remove("third").unwrap();
    assert!(matches!(
        h.remove("absent"),
        Err(RemoveObjectError::NotFound { .. })
    ));
}

#[test]
fn a_handle_whose_word_was_pruned_and_reclaimed_leaves_the_new_holders_bits_at_drop() {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(60));
    let r1 = memfd(8, 1 << 16);
    let file = std::fs::File::from(r1.as_fd().unwrap().try_clone_to_owned().unwrap());
    // r1's word (the first of the attach table, after the header and 8 entries) is
    // pruned, as if its process were misjudged dead.
    let table = layout::ENTRY0 + 8 * layout::ENTRY;
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, table).unwrap();
    assert_ne!(word, [0; 8]);
    file.write_all_at(&[0; 8], table).unwrap();
    let ctl = SharedMem::<ValueArray<u64>>::new(2);
    // The fork child's word goes into the freed word; it uses "w" through it.
    let child = fork_children(1, |_| {
        let ctl = ctl.get();
        r1.get_or_default::<Counter>("w").unwrap().add(1);
        ctl.store(0, 1, Ordering::SeqCst);
        wait_for(ctl, 1, 1);
    });
    wait_for(ctl.get(), 0, 1);
    let mut admin = handle(&r1);
    // r1's drop must not clear the bits of a word that is no longer its own.
    drop(r1);
    assert_eq!(
        in_use_pids(admin.remove("w").unwrap_err()),
        [child[0] as u32]
    );
    ctl.get().store(1, 1, Ordering::SeqCst);
    wait_all(&child, Duration::from_secs(30));
    admin.remove("w").unwrap();
}

#[test]
fn a_peer_writing_empty_into_a_middle_entry_does_not_hide_the_extents_after_it() {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(60));
    let dir = common::TempDir::new("remove-empty-middle");
    let path = dir.0.join("r");
    let options = RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_secs(2));
    let r = options.create(&path, 1 << 16).unwrap();
    let seeds: Vec<usize> = (0..4)
        .map(|k| {
            let c = r.get_or_default::<Counter>(&format!("seed{k}")).unwrap();
            r.offset_of(c).unwrap()
        })
        .collect();
    // A peer marks entry 1 EMPTY (state word 0): the seeds in entries 2 and 3 are still
    // held through `r`.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(
        &0u32.to_ne_bytes(),
        layout::ENTRY0 + layout::ENTRY + layout::STATE,
    )
    .unwrap();
    let h = options.open(&path).unwrap();
    // Larger than the hole seed1 seems to leave: first fit looks past it.
    for k in 0..3 {
        let Ok(a) = h.get_or_default_slice::<ValueArray<u64>>(&format!("new{k}"), 32) else {
            continue;
        };
        let at = h.offset_of(a).unwrap();
        for (s, &seed) in seeds.iter().enumerate().skip(2) {
            assert!(
                at + 256 <= seed || seed + 64 <= at,
                "new{k} at {at} placed over seed{s} at {seed}"
            );
        }
    }
}

/// An abandoned initialisation whose offset a peer moved past the end of the file (below
/// the maximum size): the getter that takes it over reports `Corrupt` and abandons the
/// entry again, so the next getter gets the same answer at once instead of waiting out
/// the region's timeout on an owner that is alive but never finishes.
#[test]
fn a_takeover_that_finds_a_garbage_offset_abandons_the_entry_again() {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(60));
    let dir = common::TempDir::new("remove-garbage-takeover");
    let path = dir.0.join("r");
    let options = RegionOptions::new()
        .capacity(8)
        .max_size(1 << 20)
        .timeout(Duration::from_secs(2));
    let r = options.create(&path, 1 << 16).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = r.get_or_init::<Counter>("x", |_| panic!("init of x fails"));
    }));
    assert!(panicked.is_err());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&(1u64 << 19).to_ne_bytes(), layout::ENTRY0 + layout::OFFSET)
        .unwrap();
    for attempt in 0..2 {
        let t = std::time::Instant::now();
        let got = r.get_or_default::<Counter>("x").map(|c| r.offset_of(c));
        assert!(
            matches!(got, Err(GetError::Corrupt(_))),
            "attempt {attempt}: {got:?} after {:?}",
            t.elapsed()
        );
    }
}
