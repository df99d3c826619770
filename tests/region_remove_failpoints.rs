//! The crash windows of object removal and of creation under the creation lock
//! (`src/region/remove.rs`): a process is stopped at each step by a failpoint, killed
//! there, and the repair the table documents is checked. Compiled only with
//! `--cfg shmstate_test_hooks` (as `tests/failpoints.rs`):
//!
//! ```text
//! RUSTFLAGS="--cfg shmstate_test_hooks" CARGO_TARGET_DIR=target/hooks \
//!     cargo nextest run --test region_remove_failpoints
//! ```
#![cfg(shmstate_test_hooks)]

mod common;

use std::time::{Duration, Instant};

use common::{
    SharedMem, child_stopped_at, fork_children, kill_and_reap, wait_all, wait_until_stopped,
    watchdog,
};
use shmstate::failpoint::Point;
use shmstate::sync::Ordering;
use shmstate::{Counter, GetError, Region, RegionOptions, RemoveObjectError, ValueArray};

/// How long a repair may take: a few 10 ms probe slices, with room for a loaded machine.
const REPAIR: Duration = Duration::from_secs(5);

fn memfd() -> Region {
    RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_secs(20))
        .memfd("remove-fp", 1 << 16)
        .unwrap()
}

fn handle(r: &Region) -> Region {
    Region::from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap()).unwrap()
}

#[test]
fn a_getter_killed_after_setting_its_bit_does_not_block_removal() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    handle(&r).get_or_default::<Counter>("c").unwrap().add(1);
    let pid = child_stopped_at(Point::RegionUserBitSet, || {
        let h = handle(&r);
        let _ = h.get::<Counter>("c");
    });
    // Stopped: alive, its bit set: the object is in use.
    let mut admin = handle(&r);
    assert!(matches!(
        admin.remove("c"),
        Err(RemoveObjectError::InUse { ref pids, .. }) if pids == &[pid as u32]
    ));
    kill_and_reap(pid);
    admin.remove("c").unwrap();
    assert!(matches!(
        admin.get::<Counter>("c"),
        Err(GetError::NotFound { .. })
    ));
}

/// A remover killed at `point`: the object is never freed, and the next caller that
/// meets the name returns it to `READY` after probing the remover dead.
fn a_remover_killed_at_leaves_the_object_ready(point: Point) {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    handle(&r).get_or_default::<Counter>("c").unwrap().add(7);
    let pid = child_stopped_at(point, || {
        let _ = handle(&r).remove("c");
    });
    let entry = |r: &Region| r.entries().into_iter().find(|e| e.name == "c").unwrap();
    assert_eq!(entry(&r).state, shmstate::EntryState::Removing);
    let t_kill = Instant::now();
    kill_and_reap(pid);
    let user = handle(&r);
    assert_eq!(
        user.get::<Counter>("c").unwrap().get(),
        7,
        "the object is intact"
    );
    assert!(t_kill.elapsed() < REPAIR);
    assert_eq!(entry(&r).state, shmstate::EntryState::Ready);
    drop(user);
    // And it can be removed for good.
    handle(&r).remove("c").unwrap();
    assert!(handle(&r).entries().is_empty());
}

#[test]
fn a_remover_killed_while_removing_leaves_the_object_ready() {
    a_remover_killed_at_leaves_the_object_ready(Point::RegionObjectRemoving);
}

#[test]
fn a_remover_killed_after_clearing_the_bitmap_leaves_the_object_ready() {
    a_remover_killed_at_leaves_the_object_ready(Point::RegionObjectUsersCleared);
}

#[test]
fn a_remover_killed_while_removing_is_repaired_by_the_next_remover() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    handle(&r).get_or_default::<Counter>("c").unwrap();
    let pid = child_stopped_at(Point::RegionObjectRemoving, || {
        let _ = handle(&r).remove("c");
    });
    let t_kill = Instant::now();
    kill_and_reap(pid);
    handle(&r).remove("c").unwrap();
    assert!(t_kill.elapsed() < REPAIR);
}

#[test]
fn a_creator_killed_holding_the_creation_lock_is_taken_over() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = child_stopped_at(Point::RegionCreateLocked, || {
        let _ = handle(&r).get_or_default::<Counter>("a");
    });
    // Stopped with the lock: existing objects are still handed out, new ones wait.
    let h = handle(&r);
    let t_kill = Instant::now();
    kill_and_reap(pid);
    h.get_or_default::<Counter>("b").unwrap().add(1);
    assert!(t_kill.elapsed() < REPAIR);
    h.get_or_default::<Counter>("a").unwrap();
    let names: Vec<_> = h.entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["b", "a"]);
}

/// Resumes (`SIGCONT`) and reaps the stopped child `pid` of this test; its wait status.
fn resume_and_reap(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: resuming and reaping our own stopped child.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
        libc::waitpid(pid, &mut status, 0);
    }
    status
}

/// Reads the `u32` at `offset` of the region's file.
fn read_u32(r: &Region, offset: u64) -> u32 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(r.as_fd().unwrap().try_clone_to_owned().unwrap());
    let mut b = [0; 4];
    file.read_exact_at(&mut b, offset).unwrap();
    u32::from_ne_bytes(b)
}

/// Writes `v` at `offset` of the region's file.
fn write_u32(r: &Region, offset: u64, v: u32) {
    write_bytes(r, offset, &v.to_ne_bytes());
}

/// Reads the `u64` at `offset` of the region's file.
fn read_u64(r: &Region, offset: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(r.as_fd().unwrap().try_clone_to_owned().unwrap());
    let mut b = [0; 8];
    file.read_exact_at(&mut b, offset).unwrap();
    u64::from_ne_bytes(b)
}

/// Writes `bytes` at `offset` of the region's file.
fn write_bytes(r: &Region, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(r.as_fd().unwrap().try_clone_to_owned().unwrap());
    file.write_all_at(bytes, offset).unwrap();
}

/// A creator killed holding the creation lock and a claim, whose TID a live thread then
/// reused: forged by rewriting the TID in the lock word, the holder word and the claimed
/// entry's state word to 1 (init, always alive), keeping the start time the dead creator
/// recorded. The next creator takes the lock over (init's start time is not the
/// recorded one) and frees the claim though TID 1 reads alive, instead of timing out.
#[test]
fn a_creator_killed_after_claiming_whose_tid_was_reused_is_taken_over() {
    watchdog(Duration::from_secs(60));
    if !process_of_thread_readable(1) {
        return;
    }
    // Offsets (src/region/format.rs): the lock word at 88 (bits 22..1 the TID), the
    // holder word at 96 (its high half the lock word less bit 0, its low half the start
    // time), entry 0 at 128 (its state word first, owner in bits 31..4).
    const LOCK: u64 = 88;
    const HOLDER: u64 = 96;
    const ENTRY0: u64 = 128;
    const TID_MASK: u32 = ((1 << 22) - 1) << 1;
    let r = memfd();
    let pid = child_stopped_at(Point::RegionClaimed, || {
        let _ = handle(&r).get_or_default::<Counter>("a");
    });
    kill_and_reap(pid);
    let lock = read_u32(&r, LOCK);
    assert_eq!(
        (lock & TID_MASK) >> 1,
        pid as u32,
        "held by the dead creator"
    );
    let holder = read_u64(&r, HOLDER);
    assert_eq!((holder >> 32) as u32, lock & !1, "which recorded itself");
    let forged = (lock & !TID_MASK) | (1 << 1);
    let forged_holder = u64::from(forged & !1) << 32 | (holder & 0xFFFF_FFFF);
    write_bytes(&r, HOLDER, &forged_holder.to_ne_bytes());
    write_u32(&r, LOCK, forged);
    let state = read_u32(&r, ENTRY0);
    assert_eq!(state >> 4, pid as u32, "claimed by the dead creator");
    write_u32(&r, ENTRY0, (state & 0xF) | (1 << 4));
    let t = Instant::now();
    handle(&r).get_or_default::<Counter>("b").unwrap().add(1);
    assert!(t.elapsed() < REPAIR);
    let names: Vec<_> = handle(&r).entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["b"]);
}

/// A chain of two dead creators: one killed after its claim, then the one that took its
/// creation lock over killed before freeing that claim; then a live thread (init) reused
/// the first one's TID. Claims live only under the lock, so the next creator frees the
/// claim without probing the TID it names, instead of waiting for init.
#[test]
fn a_claim_left_by_a_chain_of_dead_creators_whose_tid_was_reused_is_freed() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let first = child_stopped_at(Point::RegionClaimed, || {
        let _ = handle(&r).get_or_default::<Counter>("a");
    });
    kill_and_reap(first);
    let second = child_stopped_at(Point::RegionCreateLocked, || {
        let _ = handle(&r).get_or_default::<Counter>("b");
    });
    kill_and_reap(second);
    let claimed = r.entries();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].state, shmstate::EntryState::Claimed);
    assert_eq!(claimed[0].owner, first as u32, "still the first creator's");
    forge_entry0_owner(&r, first, 1);
    let t = Instant::now();
    handle(&r).get_or_default::<Counter>("c").unwrap().add(1);
    assert!(t.elapsed() < REPAIR);
    let names: Vec<_> = handle(&r).entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["c"]);
}

/// A live creator stopped right after its claim keeps it: the next creator, which waits
/// for the creation lock the stopped one holds, times out without touching the claim
/// (holders free every claim they find, so this is what keeps a live claim safe); once
/// continued, the creator publishes its object.
#[test]
fn a_stopped_creators_claim_is_left_alone_and_published_when_it_continues() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = child_stopped_at(Point::RegionClaimed, || {
        let h = handle(&r);
        let c = h
            .get_or_init::<Counter>("a", |c| {
                c.add(5);
            })
            .unwrap();
        std::process::exit(if c.get() == 5 { 0 } else { 1 });
    });
    let impatient = RegionOptions::new()
        .timeout(Duration::from_millis(100))
        .from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap())
        .unwrap();
    assert!(matches!(
        impatient.get_or_default::<Counter>("b"),
        Err(GetError::Timeout)
    ));
    let claimed = r.entries();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].state, shmstate::EntryState::Claimed);
    assert_eq!(claimed[0].owner, pid as u32, "still the stopped creator's");
    let status = resume_and_reap(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_eq!(handle(&r).get::<Counter>("a").unwrap().get(), 5);
}

/// Whether `/proc` is this PID namespace's and shows thread `tid`'s process: else an
/// owner's process cannot be told, the TID alone decides, and the tests below skip.
fn process_of_thread_readable(tid: u32) -> bool {
    let ours = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok())
        == Some(std::process::id());
    let readable = std::fs::read(format!("/proc/{tid}/status")).is_ok();
    if !(ours && readable) {
        eprintln!("skipped: /proc does not show thread {tid}'s process here");
    }
    ours && readable
}

/// Rewrites entry 0's state word (offset 128; owner in bits 31..4), owned by the dead
/// process `dead`, to name thread `tid` instead, as if a new thread had reused the dead
/// owner's TID.
fn forge_entry0_owner(r: &Region, dead: libc::pid_t, tid: u32) {
    const ENTRY0: u64 = 128;
    let state = read_u32(r, ENTRY0);
    assert_eq!(state >> 4, dead as u32, "owned by the dead process");
    write_u32(r, ENTRY0, (state & 0xF) | (tid << 4));
}

/// [`forge_entry0_owner`] with init (PID 1: a live thread in a process that never opened
/// the region); `false` (skip) where its process cannot be told.
fn forge_entry0_owner_as_init(r: &Region, dead: libc::pid_t) -> bool {
    if !process_of_thread_readable(1) {
        return false;
    }
    forge_entry0_owner(r, dead, 1);
    true
}

/// Runs `f` with the TID of a live thread of this process, parked until `f` returns.
fn with_live_thread(f: impl FnOnce(u32)) {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = done_rx.recv();
        });
        f(tid_rx.recv().unwrap());
        drop(done_tx);
    });
}

/// Kills a process that has just published "a" in entry 0 (`INITIALISING`, its bit set),
/// before its `init` ran; returns its pid.
fn creator_killed_in_init(r: &Region) -> libc::pid_t {
    let pid = child_stopped_at(Point::RegionNamePublished, || {
        let _ = handle(r).get_or_init::<Counter>("a", |c| {
            c.add(7);
        });
    });
    kill_and_reap(pid);
    pid
}

#[test]
fn a_creator_killed_in_init_whose_tid_was_reused_is_taken_over() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = creator_killed_in_init(&r);
    assert_eq!(r.entries()[0].state, shmstate::EntryState::Initialising);
    if !forge_entry0_owner_as_init(&r, pid) {
        return;
    }
    // The owner reads alive by its TID (init), but its process holds no table word: a
    // new thread. Without that rule this waits out the 20 s timeout.
    let t = Instant::now();
    let h = handle(&r);
    assert!(matches!(
        h.get::<Counter>("a"),
        Err(GetError::NotFound { .. })
    ));
    let a = h
        .get_or_init::<Counter>("a", |c| {
            c.add(1);
        })
        .unwrap();
    assert_eq!(a.get(), 1, "initialised again from zero");
    assert!(t.elapsed() < REPAIR);
    assert_eq!(h.entries()[0].state, shmstate::EntryState::Ready);
}

/// The reused TID is a thread of a process that has the region open (this test's: `r`
/// holds a word) but never asked for the object: no bit of its in the entry.
#[test]
fn a_creator_killed_in_init_whose_tid_an_attached_process_reused_is_taken_over() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = creator_killed_in_init(&r);
    if !process_of_thread_readable(std::process::id()) {
        return;
    }
    with_live_thread(|tid| {
        forge_entry0_owner(&r, pid, tid);
        let t = Instant::now();
        let h = handle(&r);
        let a = h
            .get_or_init::<Counter>("a", |c| {
                c.add(1);
            })
            .unwrap();
        assert_eq!(a.get(), 1, "initialised again from zero");
        assert!(t.elapsed() < REPAIR);
    });
}

#[test]
fn a_remover_killed_while_removing_whose_tid_was_reused_leaves_the_object_ready() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    handle(&r).get_or_default::<Counter>("c").unwrap().add(3);
    let pid = child_stopped_at(Point::RegionObjectRemoving, || {
        let _ = handle(&r).remove("c");
    });
    kill_and_reap(pid);
    assert_eq!(r.entries()[0].state, shmstate::EntryState::Removing);
    if !forge_entry0_owner_as_init(&r, pid) {
        return;
    }
    // The remover reads alive by its TID (init), but its process holds no table word.
    let t = Instant::now();
    assert_eq!(handle(&r).get::<Counter>("c").unwrap().get(), 3);
    assert!(t.elapsed() < REPAIR);
    assert_eq!(r.entries()[0].state, shmstate::EntryState::Ready);
    handle(&r).remove("c").unwrap();
    assert!(r.entries().is_empty());
}

#[test]
fn a_creator_killed_in_init_whose_tid_was_reused_is_freed_by_a_removal() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = creator_killed_in_init(&r);
    if !forge_entry0_owner_as_init(&r, pid) {
        return;
    }
    let t = Instant::now();
    handle(&r).remove("a").unwrap();
    assert!(t.elapsed() < REPAIR);
    assert!(r.entries().is_empty());
}

/// Leaves "x" abandoned in `INITIALISING` (owner 0) by a handle whose `init` panicked,
/// dropped since (no bit of a live handle in the entry).
fn abandon_x(r: &Region) {
    let setup = handle(r);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = setup.get_or_init::<Counter>("x", |_| panic!("init of x fails"));
    }));
    assert!(panicked.is_err());
}

#[test]
fn a_taker_stopped_right_after_its_takeover_is_alive_to_other_creators() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    abandon_x(&r);
    // G takes the abandoned "x" over and stops right after the CAS that names it the
    // owner. Its user bit, which probers require of a live owner's process, must be set
    // by then.
    let g = child_stopped_at(Point::RegionTakenOver, || {
        let g = handle(&r);
        let x = g
            .get_or_init::<Counter>("x", |c| {
                c.add(1);
            })
            .unwrap();
        assert_eq!(x.get(), 1);
    });
    assert_eq!(r.entries()[0].owner, g as u32);
    let h = RegionOptions::new()
        .timeout(Duration::from_millis(300))
        .from_fd(r.as_fd().unwrap().try_clone_to_owned().unwrap())
        .unwrap();
    let stolen = h.get_or_init::<Counter>("x", |c| {
        c.add(100);
    });
    assert!(
        matches!(stolen, Err(GetError::Timeout)),
        "the stopped taker's object was taken over: {:?}",
        stolen.map(|c| c.get())
    );
    assert_eq!(r.entries()[0].owner, g as u32);
    let status = resume_and_reap(g);
    // `child_stopped_at` exits 3 once its closure has returned.
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3,
        "G failed: {status:#x}"
    );
    assert_eq!(handle(&r).get::<Counter>("x").unwrap().get(), 1);
}

#[test]
fn a_creator_killed_after_claiming_an_entry_leaves_it_reusable() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    // Entry 0 held "old", removed: a FREE entry whose space is free.
    handle(&r).get_or_default::<Counter>("old").unwrap();
    handle(&r).remove("old").unwrap();
    let free = r.space();
    let pid = child_stopped_at(Point::RegionClaimed, || {
        let _ = handle(&r).get_or_default::<Counter>("new");
    });
    let claimed = r.entries();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].state, shmstate::EntryState::Claimed);
    assert_eq!(claimed[0].index, 0, "the free entry was claimed");
    let t_kill = Instant::now();
    kill_and_reap(pid);
    let h = handle(&r);
    h.get_or_default::<Counter>("new").unwrap().add(1);
    assert!(t_kill.elapsed() < REPAIR);
    let entries = h.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].index, entries[0].name.as_str()), (0, "new"));
    // Nothing leaked: the dead claim's space went back with it.
    assert_eq!(h.space().used, 64);
    assert_eq!(h.space().free, free.free - 64);
}

#[test]
fn a_remover_killed_before_waking_leaves_waiters_to_their_slice() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    handle(&r).get_or_default::<Counter>("c").unwrap();
    let pid = child_stopped_at(Point::RegionObjectUsersCleared, || {
        shmstate::failpoint::arm(Point::RegionFreeUnwoken);
        let _ = handle(&r).remove("c");
    });
    // A getter waits on the REMOVING entry (asleep on its word).
    let getter = common::fork_children(1, |_| {
        let h = handle(&r);
        assert!(matches!(
            h.get::<Counter>("c"),
            Err(GetError::NotFound { .. })
        ));
    });
    common::wait_until_asleep_in_futex(getter[0]);
    // The remover publishes FREE and stops before waking anyone; then dies.
    // SAFETY: continuing our own stopped child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    common::wait_until_stopped(pid);
    let t_kill = Instant::now();
    kill_and_reap(pid);
    // It finds the name gone (exit 0) after its slice.
    common::wait_all(&getter, REPAIR);
    assert!(t_kill.elapsed() < REPAIR);
    // The entry is free for the next object.
    handle(&r).get_or_default::<Counter>("d").unwrap();
    assert_eq!(handle(&r).entries()[0].name, "d");
}

#[test]
fn a_creator_killed_after_publishing_the_name_is_taken_over() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let pid = child_stopped_at(Point::RegionNamePublished, || {
        let _ = handle(&r).get_or_init::<Counter>("a", |c| {
            c.add(1);
        });
    });
    let t_kill = Instant::now();
    kill_and_reap(pid);
    let h = handle(&r);
    // Another name: the lock is taken over from the dead creator.
    h.get_or_default::<Counter>("b").unwrap();
    // The name: its abandoned initialisation is taken over, from zero.
    let a = h
        .get_or_init::<Counter>("a", |c| {
            c.add(5);
        })
        .unwrap();
    assert_eq!(a.get(), 5);
    assert!(t_kill.elapsed() < REPAIR);
    let names: Vec<_> = h.entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b"]);
}

/// A handle that already holds an object is not stalled by a stopped remover of it (whose
/// removal that handle's bit refuses anyway): its next `get` answers at once.
#[test]
fn a_stopped_remover_does_not_stall_a_handle_that_holds_the_object() {
    watchdog(Duration::from_secs(60));
    let r = RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_secs(2))
        .memfd("remove-fp-pinned", 1 << 16)
        .unwrap();
    let user = handle(&r);
    let c = user.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    let pid = child_stopped_at(Point::RegionObjectRemoving, || {
        let _ = handle(&r).remove("c");
    });
    let again = user.get::<Counter>("c");
    let again_or = user.get_or_default::<Counter>("c");
    kill_and_reap(pid);
    let again = again.expect("a handle holding the object waited for a stopped remover");
    assert!(std::ptr::eq(again, c));
    assert!(std::ptr::eq(again_or.unwrap(), c));
    assert_eq!(again.get(), 1);
}

/// Entry 0's user bitmap (the documented layout, `src/region/format.rs`).
const ENTRY0_USERS: u64 = 128 + 112;

/// A refused removal clears no bit: a word it probed free may have been claimed since by
/// a fork child, whose inherited bit the fork handlers copied into the entry.
#[test]
fn a_refused_removal_keeps_the_bit_of_a_fork_child_that_took_a_word_it_probed_free() {
    use std::os::unix::fs::FileExt;
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let user = handle(&r);
    let c = user.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    // Bits of every word in "c"'s entry: those of free words are stale (left by dead
    // holders), whichever words the fork below claims.
    let file = std::fs::File::from(r.as_fd().unwrap().try_clone_to_owned().unwrap());
    file.write_all_at(&[0xff; 16], ENTRY0_USERS).unwrap();
    // 0: the remover's result; 1: the child may end; 2: the child runs.
    let ctl = SharedMem::<ValueArray<u64>>::new(3);
    let remover = fork_children(1, |_| {
        shmstate::failpoint::arm(Point::RegionObjectUsersProbed);
        let refused = matches!(handle(&r).remove("c"), Err(RemoveObjectError::InUse { .. }));
        ctl.get()
            .store(0, if refused { 1 } else { 2 }, Ordering::SeqCst);
    })[0];
    wait_until_stopped(remover);
    // The remover has read the bitmap and probed the free words free. A fork now takes
    // the lowest free words for its child, with the parent's uses copied to them.
    let child = fork_children(1, |_| {
        let ctl = ctl.get();
        // Its fork handler has run: the word claimed for it names it, not the parent.
        ctl.store(2, 1, Ordering::SeqCst);
        assert_eq!(c.get(), 1, "the inherited reference");
        while ctl.load(1, Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert_eq!(c.get(), 1, "not another object");
    })[0];
    // SAFETY: resuming and reaping our own stopped child.
    unsafe {
        libc::kill(remover, libc::SIGCONT);
    }
    wait_all(&[remover], Duration::from_secs(30));
    assert_eq!(
        ctl.get().load(0, Ordering::SeqCst),
        1,
        "refused: `user` is live"
    );
    // Until the child's fork handler swaps it, the word claimed for it names this
    // process (lifecycle's crash table): wait for the swap, so the pid below is the child's.
    while ctl.get().load(2, Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let mut admin = handle(&r);
    // This process's other handles go (`r` has a bit too: the stale-bit garbage above).
    drop(user);
    drop(r);
    match admin.remove("c") {
        Err(RemoveObjectError::InUse { pids, .. }) => assert_eq!(pids, [child as u32]),
        other => panic!("removed under the fork child's inherited reference: {other:?}"),
    }
    ctl.get().store(1, 1, Ordering::SeqCst);
    wait_all(&[child], Duration::from_secs(30));
    admin.remove("c").unwrap();
}

/// A creator killed after publishing the name (`INITIALISING`, dead owner): a removal of
/// the name frees the entry and its space.
#[test]
fn a_creator_killed_after_publishing_the_name_leaves_an_entry_removal_frees() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let free = r.space().free;
    let pid = child_stopped_at(Point::RegionNamePublished, || {
        let _ = handle(&r).get_or_default::<Counter>("half");
    });
    kill_and_reap(pid);
    assert_eq!(r.space().free, free - 64);
    let mut admin = handle(&r);
    let t = Instant::now();
    admin.remove("half").unwrap();
    assert!(t.elapsed() < REPAIR);
    assert_eq!(admin.space().free, free);
    assert!(admin.entries().is_empty());
    assert!(matches!(
        admin.get::<Counter>("half"),
        Err(GetError::NotFound { .. })
    ));
}

/// A fork child stopped in its handler before swapping its own word in: the word claimed
/// for it (naming the live parent) carries the parent's uses, so removals refuse.
#[test]
fn a_fork_child_stopped_before_its_handler_keeps_its_inherited_objects() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    let user = handle(&r);
    let c = user.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    // Only the fork child handler reaches this point: the child stops in it.
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| std::process::exit(3))[0];
    wait_until_stopped(child);
    let mut admin = handle(&r);
    drop(user);
    drop(r);
    assert!(matches!(
        admin.remove("c"),
        Err(RemoveObjectError::InUse { ref pids, .. }) if pids == &[std::process::id()]
    ));
    kill_and_reap(child);
}

/// Polls until process `pid` (not necessarily our child) is stopped; bounded by the
/// test's watchdog.
fn wait_until_stopped_anywhere(pid: libc::pid_t) {
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The state follows the parenthesised command name.
        if stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('T')
        {
            return;
        }
        std::thread::yield_now();
    }
}

/// A parent killed after `fork`, before its child's handler put the child's own word in:
/// the word claimed for the child names a dead process, so a removal meanwhile frees an
/// object the child inherited. The child's handler finds it so and aborts rather than
/// run on with a reference to another object.
#[test]
fn a_fork_child_whose_parent_died_and_whose_inherited_object_was_removed_aborts() {
    watchdog(Duration::from_secs(60));
    // Orphans come to this process, so that it can reap the grandchild.
    // SAFETY: prctl with integer arguments only.
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(subreaper, 0);
    let r = memfd();
    let ctl = SharedMem::<ValueArray<u64>>::new(2);
    let parent = fork_children(1, |_| {
        let ctl = ctl.get();
        let c = r.get_or_default::<Counter>("c").unwrap();
        c.add(1);
        // Only the fork child handler reaches this point: the grandchild stops in it.
        shmstate::failpoint::arm(Point::RegionForkChildEntered);
        let child = fork_children(1, |_| {
            // Reached only if the handler let the child go on.
            std::process::exit(if c.get() == 1 { 7 } else { 8 });
        })[0];
        ctl.store(0, child as u64, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    })[0];
    let child = loop {
        match ctl.get().load(0, Ordering::SeqCst) {
            0 => std::thread::yield_now(),
            pid => break pid as libc::pid_t,
        }
    };
    wait_until_stopped_anywhere(child);
    kill_and_reap(parent);
    // The child's word still names the dead parent: the removal goes through, and a new
    // object takes the space.
    let mut admin = handle(&r);
    drop(r);
    admin.remove("c").unwrap();
    admin.get_or_default::<Counter>("d").unwrap().add(5);
    // SAFETY: the orphaned grandchild is ours now (subreaper): resume and reap it.
    let status = unsafe {
        libc::kill(child, libc::SIGCONT);
        let mut status = 0;
        assert_eq!(libc::waitpid(child, &mut status, 0), child);
        status
    };
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "the child went on (status {status:#x}; exit 8: it read another object)"
    );
}

/// The parent killed during `fork` and the region retired before the child's handler
/// swapped its word in: the handler finds the region retired and keeps a handle without a
/// word, so it marks the region `UNLISTED` (should the unlink fail and the region go live
/// again, no removal may free what the child inherited), and the child runs on.
#[test]
fn a_fork_child_left_without_a_word_by_a_retirement_marks_the_region_unlisted() {
    watchdog(Duration::from_secs(60));
    // SAFETY: prctl with integer arguments only (orphans come to this process).
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(subreaper, 0);
    let dir = common::TempDir::new("fp-retired");
    let path = dir.0.join("r");
    let r = RegionOptions::new().create(&path, 1 << 16).unwrap();
    r.get_or_default::<Counter>("c").unwrap().add(1);
    let ctl = SharedMem::<ValueArray<u64>>::new(1);
    let parent = fork_children(1, |_| {
        let c = r.get_or_default::<Counter>("c").unwrap();
        // Only the fork child handler reaches this point: the grandchild stops in it.
        shmstate::failpoint::arm(Point::RegionForkChildEntered);
        // Not `fork_children`: its child exits once its parent is gone, and this one must
        // outlive its parent.
        // SAFETY: the child only reads the object and `_exit`s.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            // SAFETY: ends the child without unwinding into the harness.
            unsafe { libc::_exit(if c.get() == 1 { 7 } else { 8 }) };
        }
        ctl.get().store(0, child as u64, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    })[0];
    drop(r);
    let child = loop {
        match ctl.get().load(0, Ordering::SeqCst) {
            0 => std::thread::yield_now(),
            pid => break pid as libc::pid_t,
        }
    };
    // Killed if the test fails before it resumes it (an orphan, stopped: nothing else
    // would end it).
    struct KillOnPanic(libc::pid_t);
    impl Drop for KillOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // SAFETY: signalling our own (adopted) child.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
    }
    let _guard = KillOnPanic(child);
    wait_until_stopped_anywhere(child);
    kill_and_reap(parent);
    // The file itself, to read its life-cycle word (offset 60) after the unlink.
    let file = std::fs::File::open(&path).unwrap();
    // The word claimed for the child names the dead parent: pruned, and the region goes.
    Region::remove_unused(&path).unwrap();
    assert!(!path.exists());
    let life = || {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 4];
        file.read_exact_at(&mut b, 60).unwrap();
        u32::from_ne_bytes(b)
    };
    const UNLISTED: u32 = 0b100;
    assert_eq!(life() & UNLISTED, 0);
    // SAFETY: the orphaned grandchild is ours now (subreaper): resume and reap it.
    let status = unsafe {
        libc::kill(child, libc::SIGCONT);
        let mut status = 0;
        assert_eq!(libc::waitpid(child, &mut status, 0), child);
        status
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        "the child did not run on with its object (status {status:#x})"
    );
    assert_ne!(life() & UNLISTED, 0, "the child left the region listed");
}

/// Every abandoned initialisation leaves the same state word (owner 0): a getter stopped
/// just before taking one over, while the entry is freed, reused by another object's
/// creator whose `init` panics too, and the first object's space given to a new object,
/// must not take over the new abandoned entry with its old copy's offset (and so
/// initialise, and hand out, the new object's memory).
#[test]
fn a_stale_takeover_of_a_reused_abandoned_entry_leaves_the_new_objects_alone() {
    watchdog(Duration::from_secs(60));
    let r = memfd();
    abandon_x(&r);
    handle(&r).get_or_default::<Counter>("b").unwrap().add(1);
    let x_offset = r
        .entries()
        .into_iter()
        .find(|e| e.name == "x")
        .unwrap()
        .offset;
    let ctl = SharedMem::<ValueArray<u64>>::new(2);
    // G: about to take over the abandoned "x" (its copy names x's entry and offset).
    let g = child_stopped_at(Point::RegionTakingOver, || {
        let h = handle(&r);
        let x = h.get_or_default::<Counter>("x").unwrap();
        x.add(7);
        let ctl = ctl.get();
        ctl.store(0, h.offset_of(x).unwrap() as u64, Ordering::SeqCst);
        ctl.store(1, 1, Ordering::SeqCst);
    });
    // Meanwhile: "x" is removed, "y" (larger, so placed past "b") reuses x's entry and
    // its init panics too, and "w" takes x's old space.
    let mut admin = handle(&r);
    admin.remove("x").unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = admin.get_or_init_slice::<ValueArray<u64>>("y", 16, |_| panic!("init of y fails"));
    }));
    assert!(panicked.is_err());
    let entries = admin.entries();
    let y = entries.iter().find(|e| e.name == "y").unwrap();
    assert_eq!(y.index, 0, "y reuses x's entry");
    let w = admin.get_or_default::<Counter>("w").unwrap();
    w.add(42);
    assert_eq!(
        admin.offset_of(w),
        Some(x_offset as usize),
        "w in x's old space"
    );
    let status = resume_and_reap(g);
    // `child_stopped_at` exits 3 once its closure has returned.
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3,
        "G failed: {status:#x}"
    );
    assert_eq!(ctl.get().load(1, Ordering::SeqCst), 1);
    assert_eq!(w.get(), 42, "w was zeroed or written by G");
    assert_ne!(
        ctl.get().load(0, Ordering::SeqCst),
        x_offset,
        "G was handed w's memory as x"
    );
    // "y" is still an abandoned init (nobody published it uninitialised).
    assert!(admin.get::<ValueArray<u64>>("y").is_err());
}

/// Forks `r`'s process into a child stopped in its fork handler (before its own word is
/// swapped in) that, once continued, exits with what its inherited `c` reads; then drops
/// `r`, removes "c" through another handle and, if that succeeded, places "d" (100) where
/// "c" was. Returns the removal's result and the child's exit status.
fn fork_drop_and_remove(r: Region) -> (Result<(), RemoveObjectError>, i32) {
    let c = r.get::<Counter>("c").unwrap();
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| {
        // After the handler: what the inherited reference reads (1 if intact).
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(c.get() as i32) }
    })[0];
    wait_until_stopped(child);
    // The parent hands the region over to the child and drops its handle.
    let mut admin = handle(&r);
    drop(r);
    let removed = admin.remove("c");
    if removed.is_ok() {
        admin.get_or_default::<Counter>("d").unwrap().add(100);
    }
    let status = resume_and_reap(child);
    (removed, status)
}

fn small_timeout_memfd() -> Region {
    RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_secs(5))
        .memfd("full-table-fork", 1 << 16)
        .unwrap()
}

/// A fork while the attach table is full of dead processes' words (forked workers that
/// were killed, never pruned by a fork): the prepare handler frees them and claims a word
/// for the child, so the child's inherited object cannot be removed under it.
#[test]
fn a_fork_with_a_table_full_of_dead_words_protects_the_child() {
    watchdog(Duration::from_secs(60));
    let r = small_timeout_memfd();
    r.get_or_default::<Counter>("c").unwrap().add(1);
    // 127 children that exit without dropping: each leaves the word claimed for it,
    // naming a dead process. With `r`'s own word the table (128 words) is full.
    let dead = fork_children(127, |_| ());
    wait_all(&dead, Duration::from_secs(30));
    let (removed, status) = fork_drop_and_remove(r);
    assert!(
        matches!(removed, Err(RemoveObjectError::InUse { .. })),
        "an object a live fork child holds was removed: {removed:?}"
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "child: {status:#x}"
    );
}

/// The 128 attach-table words of `r`, whose table is at `table`.
fn table_words(r: &Region, table: u64) -> Vec<u64> {
    (0..128).map(|i| read_u64(r, table + 8 * i)).collect()
}

/// A forked process that holds its own word of `r`'s table (and no bit of any object
/// made later) until killed: its pid and that word, a live word to fill the table with.
fn live_holder(r: &Region) -> (libc::pid_t, u64) {
    let holder = fork_children(1, |_| {
        loop {
            // SAFETY: `pause` has no preconditions; the test SIGKILLs this child.
            unsafe { libc::pause() };
        }
    })[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = r.attached().iter().any(|a| a.pid == holder as u32);
        // Its own word, swapped in by its fork handler (capacity 8: table at 1152).
        let word = table_words(r, 128 + 8 * 128)
            .into_iter()
            .find(|w| w >> 32 == holder as u64);
        if let (true, Some(word)) = (listed, word) {
            return (holder, word);
        }
        assert!(Instant::now() < deadline, "the holder did not attach");
        std::thread::yield_now();
    }
}

/// The word claimed for a fork child is taken from it before its handler swaps in (here
/// zeroed, as a prune that misjudged the parent dead would), the object it inherited is
/// removed meanwhile, and its handler then finds the table full: its own `join` marks the
/// region `UNLISTED`, which protects only from then on, so the child must still check its
/// inherited objects, and abort.
#[test]
fn a_fork_child_whose_word_was_taken_and_that_finds_the_table_full_checks_its_objects() {
    watchdog(Duration::from_secs(60));
    // Capacity 8: the attach table's 128 words at 128 + 8 * 128.
    const TABLE: u64 = 128 + 8 * 128;
    let r = small_timeout_memfd();
    let words = |r: &Region| table_words(r, TABLE);
    // A live process whose word fills the table later (not this process's word: that is
    // the value the child's swap looks for), forked before "c" exists (not its user).
    let (holder, filler) = live_holder(&r);
    let c = r.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    let before = words(&r);
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| {
        // Reached only if the handler let the child go on.
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(c.get() as i32) }
    })[0];
    wait_until_stopped(child);
    let after = words(&r);
    let claimed: Vec<usize> = (0..128).filter(|&i| after[i] != before[i]).collect();
    assert_eq!(claimed.len(), 1, "one word claimed for the child");
    // Before the word goes: it would take that very slot, with the value the child's
    // swap looks for.
    let mut admin = handle(&r);
    write_bytes(&r, TABLE + 8 * claimed[0] as u64, &0u64.to_ne_bytes());
    drop(r);
    admin.remove("c").unwrap();
    // Every free word taken by a live one (the holder's).
    for (i, w) in words(&admin).into_iter().enumerate() {
        if w == 0 {
            write_bytes(&admin, TABLE + 8 * i as u64, &filler.to_ne_bytes());
        }
    }
    let status = resume_and_reap(child);
    kill_and_reap(holder);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "the child went on with a removed object (status {status:#x})"
    );
    // The life-cycle word (offset 60): `UNLISTED` (bit 2), set by the child's `join`.
    assert_ne!(
        read_u32(&admin, 60) & 0b100,
        0,
        "its join found the table full"
    );
}

/// A fork while the attach table is full: the prepare handler marks the region
/// `UNLISTED` before `fork`, so every removal since is refused, and the child has no
/// need to check its inherited objects. It must not abort on a refused removal's
/// transient `REMOVING` (forged here), even when its own `join` finds a word free by then.
#[test]
fn a_full_table_fork_child_does_not_abort_on_a_refused_removal_in_flight() {
    watchdog(Duration::from_secs(60));
    // Capacity 8: the attach table's 128 words at 128 + 8 * 128; entry 0's state at 128.
    const TABLE: u64 = 128 + 8 * 128;
    const ENTRY0: u64 = 128;
    let r = small_timeout_memfd();
    let words = |r: &Region| table_words(r, TABLE);
    let (holder, filler) = live_holder(&r);
    let c = r.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    // Every free word taken by a live one (the holder's): the table is full.
    for (i, w) in words(&r).into_iter().enumerate() {
        if w == 0 {
            write_bytes(&r, TABLE + 8 * i as u64, &filler.to_ne_bytes());
        }
    }
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| {
        // Reached only if the handler let the child go on.
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(c.get() as i32) }
    })[0];
    wait_until_stopped(child);
    // The life-cycle word (offset 60): `UNLISTED` (bit 2), set by the prepare handler.
    assert_ne!(read_u32(&r, 60) & 0b100, 0);
    // A word frees up (the child's `join` claims it), and a removal of "c" is in flight:
    // `READY -> REMOVING` (phase 4), as a remover's step 1 leaves it before its step 2
    // finds `UNLISTED` and cancels.
    let free = words(&r).into_iter().position(|w| w == filler).unwrap();
    write_bytes(&r, TABLE + 8 * free as u64, &0u64.to_ne_bytes());
    let ready = read_u32(&r, ENTRY0);
    assert_eq!(ready & 0b111, 3, "READY");
    write_u32(&r, ENTRY0, (ready & !0b111) | 4);
    let status = resume_and_reap(child);
    write_u32(&r, ENTRY0, ready);
    kill_and_reap(holder);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "the child aborted on a refused removal (status {status:#x})"
    );
    assert_eq!(c.get(), 1);
}

/// A fork while the attach table is full of live words: no word for the child, so the
/// prepare handler marks the region unlisted before `fork`; the table's holders then die
/// and the parent drops its handle, and still no removal frees the child's object.
#[test]
fn a_fork_with_a_table_full_of_live_words_leaves_the_region_unlisted() {
    watchdog(Duration::from_secs(60));
    let r = small_timeout_memfd();
    let c = r.get_or_default::<Counter>("c").unwrap();
    c.add(1);
    // 127 live children (each holding the word claimed for it) fill the table with `r`.
    let holders = fork_children(127, |_| {
        loop {
            // SAFETY: `pause` has no preconditions; the test SIGKILLs this child.
            unsafe { libc::pause() };
        }
    });
    // Wait until every holder has swapped its own word in (a word still naming this
    // process would stay live when the holder dies).
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.attached().iter().filter(|a| a.pid != me).count() < 127 {
        assert!(Instant::now() < deadline, "the holders did not attach");
        std::thread::yield_now();
    }
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| {
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(c.get() as i32) }
    })[0];
    wait_until_stopped(child);
    // The table's holders die (their words are dead, pruned by the next opener) and the
    // parent drops its handle: only the stopped child uses "c".
    for &pid in &holders {
        kill_and_reap(pid);
    }
    let mut admin = handle(&r);
    drop(r);
    let removed = admin.remove("c");
    assert!(
        matches!(removed, Err(RemoveObjectError::Unlisted)),
        "an object a live fork child holds was removed: {removed:?}"
    );
    let status = resume_and_reap(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "child: {status:#x}"
    );
}

/// A removal that read the life-cycle word before a fork that found the attach table
/// full (the fork sets `UNLISTED`; its child gets no word and no bits), and scans the
/// bitmap after the parent dropped its handle: it finds no live user, and must still not
/// free the child's object (it looks at the life-cycle word again after the scan).
#[test]
fn a_removal_in_flight_across_a_full_table_fork_leaves_the_childs_object() {
    watchdog(Duration::from_secs(60));
    let r = small_timeout_memfd();
    // Created through a handle that is dropped at once: `r` holds no bit for "c", so
    // neither does the remover, which inherits `r`.
    handle(&r).get_or_default::<Counter>("c").unwrap().add(1);
    // The remover, forked before this process uses "c" (so it inherits no bit for it):
    // once told, it removes "c" and stops after step 2 (no `UNLISTED` yet). Exit 0:
    // `Unlisted`; 1: removed.
    let go = SharedMem::<ValueArray<u64>>::new(1);
    let remover = fork_children(1, |_| {
        shmstate::failpoint::arm(Point::RegionObjectLifeChecked);
        while go.get().load(0, Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        let code = match handle(&r).remove("c") {
            Err(RemoveObjectError::Unlisted) => 0,
            Ok(()) => 1,
            _ => 2,
        };
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(code) }
    })[0];
    // This process now uses "c" through a second handle; then the remover starts.
    let user = handle(&r);
    let c = user.get::<Counter>("c").unwrap();
    go.get().store(0, 1, Ordering::Release);
    wait_until_stopped(remover);
    // Words so far: `r` and `user` here, the remover's inherited `r` and its own handle.
    // 62 holders inherit `r` and `user` (two words each): the table's 128 words are full.
    let holders = fork_children(62, |_| {
        loop {
            // SAFETY: `pause` has no preconditions; the test SIGKILLs this child.
            unsafe { libc::pause() };
        }
    });
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r
        .attached()
        .iter()
        .filter(|a| a.pid != me)
        .map(|a| a.handles)
        .sum::<u32>()
        < 126
    {
        assert!(Instant::now() < deadline, "the holders did not attach");
        std::thread::yield_now();
    }
    // A fork with the table full: `UNLISTED` before `fork`; the child stops in its
    // handler, holding "c" with no word of its own.
    shmstate::failpoint::arm(Point::RegionForkChildEntered);
    let child = fork_children(1, |_| {
        // SAFETY: `_exit` ends the child at once.
        unsafe { libc::_exit(c.get() as i32) }
    })[0];
    wait_until_stopped(child);
    // Every other user of "c" goes: the holders die, this process drops its handles.
    for &pid in &holders {
        kill_and_reap(pid);
    }
    drop(user);
    drop(r);
    let mut status = 0;
    // SAFETY: resuming and reaping our own stopped children.
    unsafe {
        libc::kill(remover, libc::SIGCONT);
        libc::waitpid(remover, &mut status, 0);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the remover: {status:#x} (exit 1: it freed an object a live fork child holds)"
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(child, libc::SIGCONT);
        libc::waitpid(child, &mut status, 0);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1,
        "child: {status:#x}"
    );
}
