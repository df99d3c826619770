//! Creators SIGKILLed at random: four worker processes each create objects of new names in
//! one region, one after another, while the test kills a random worker after a random
//! delay and starts a replacement that goes on where it stopped. A kill can land while
//! the worker holds the creation lock, holds a claim, or runs `init`, and leaves that to
//! the next creator (the crash windows in `src/region/protocol.rs`). At the end every
//! name is listed once, every creation a worker recorded is there and ready, and the
//! test's own creation of a new name goes through (nothing is wedged).
//!
//! The kills use random delays (seeded: the seed is printed, and
//! `SHMSTATE_TEST_SEED=<seed>` repeats the schedule, not its timing).

mod channel_support;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use channel_support::Rng;
use common::{SharedMem, fork_children, kill_and_reap, wait_all, watchdog};
use shmstate::sync::{AtomicU32, Ordering};
use shmstate::{Counter, Elem, EntryState, Kind, Region, RegionOptions, SharedSized, TypeTag};

/// Worker slots: a replacement takes the slot (and the names) of the worker it replaces.
const WORKERS: usize = 4;
/// Names each slot creates.
const NAMES: u32 = if cfg!(debug_assertions) { 150 } else { 900 };
/// Kills per run (fewer if the workers finish first).
const KILLS: u32 = if cfg!(debug_assertions) { 30 } else { 100 };
/// The longest delay before a kill, in µs (an optimised build creates faster).
const DELAY_US: u64 = if cfg!(debug_assertions) { 3000 } else { 300 };

/// Parent-worker coordination, in anonymous shared memory.
#[repr(C)]
struct Control {
    /// How many names slot `i` has created (each recorded after its `get_or_default`
    /// returned).
    done: [AtomicU32; WORKERS],
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Control {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 21), Elem::NONE);
}

fn name(slot: usize, k: u32) -> String {
    format!("w{slot}-{k}")
}

/// Creates slot `slot`'s names from where it stopped, through a handle of its own.
fn work(region: &Region, ctl: &Control, slot: usize) {
    let handle =
        Region::from_fd(region.as_fd().unwrap().try_clone_to_owned().unwrap()).expect("a handle");
    // Relaxed: only this slot's worker writes it (the one it replaces is dead).
    let mut k = ctl.done[slot].load(Ordering::Relaxed);
    while k < NAMES {
        handle
            .get_or_default::<Counter>(&name(slot, k))
            .unwrap_or_else(|e| panic!("slot {slot}, name {k}: {e}"))
            .add(1);
        k += 1;
        // Relaxed: read by the parent after the worker is reaped or done.
        ctl.done[slot].store(k, Ordering::Relaxed);
    }
}

fn spawn(region: &Region, ctl: &Control, slot: usize) -> libc::pid_t {
    fork_children(1, |_| work(region, ctl, slot))[0]
}

#[test]
fn creators_killed_at_random_leave_no_name_twice_and_nothing_wedged() {
    watchdog(Duration::from_secs(240));
    let seed = channel_support::seed("creators_killed_at_random");
    let mut rng = Rng(seed);
    let region = RegionOptions::new()
        .capacity(4096)
        .timeout(Duration::from_secs(30))
        .memfd("creators-killed", 1 << 20)
        .unwrap();
    let ctl = SharedMem::<Control>::new(1);
    let ctl = ctl.get();
    let mut pids: Vec<libc::pid_t> = (0..WORKERS).map(|s| spawn(&region, ctl, s)).collect();
    let mut kills = 0;
    // Kills that left an entry of the dead worker claimed or initialising (not those that
    // left only the creation lock held): printed, to show where the kills landed.
    let mut mid_creation = 0;
    while kills < KILLS {
        // Relaxed: progress only.
        if (0..WORKERS).all(|s| ctl.done[s].load(Ordering::Relaxed) >= NAMES) {
            break;
        }
        // Not synchronisation: where in a creation the kill lands is the point.
        std::thread::sleep(Duration::from_micros(rng.range(0, DELAY_US)));
        let slot = rng.range(0, WORKERS as u64 - 1) as usize;
        kill_and_reap(pids[slot]);
        kills += 1;
        if region
            .entries()
            .iter()
            .any(|e| e.owner == pids[slot] as u32 && e.state != EntryState::Ready)
        {
            mid_creation += 1;
        }
        pids[slot] = spawn(&region, ctl, slot);
    }
    wait_all(&pids, Duration::from_secs(180));
    eprintln!("{kills} kills, {mid_creation} inside a creation");

    // The test's own creation goes through: whatever a kill left (the lock, a claim, an
    // initialisation) is repaired.
    region.get_or_default::<Counter>("after").unwrap().add(1);
    let entries = region.entries();
    let mut names = HashSet::new();
    for e in &entries {
        assert!(names.insert(e.name.clone()), "{} listed twice", e.name);
        assert_eq!(e.state, EntryState::Ready, "{} is {:?}", e.name, e.state);
    }
    for slot in 0..WORKERS {
        // Relaxed: every worker is reaped.
        assert_eq!(ctl.done[slot].load(Ordering::Relaxed), NAMES);
        for k in 0..NAMES {
            assert!(names.contains(&name(slot, k)), "{} missing", name(slot, k));
        }
    }
    assert!(names.contains("after"));
    assert_eq!(entries.len(), WORKERS * NAMES as usize + 1);
}
