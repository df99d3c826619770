//! Sixteen processes race `open_or_create` on one path and then `get_or_init` on the same
//! eight names, for 200 rounds (a new path each round): every object is initialised by
//! exactly one process per round, and all sixteen get the same objects.

mod common;

use std::time::{Duration, Instant};

use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{Elem, Kind, Region, SharedSized, TypeTag, futex};

const PROCS: usize = 16;
const ROUNDS: u32 = 200;
const NAMES: usize = 8;

/// The object every process asks for.
#[repr(C)]
struct Probe {
    /// Incremented by `init` (an object initialised twice would be zeroed in between, so
    /// this alone cannot catch a double init: see `Control::inits`).
    inits: AtomicU32,
    /// Pid of the initialiser.
    initialiser: AtomicU32,
    /// Incremented once by every process that got the object.
    hits: AtomicU64,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Probe {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 1), Elem::NONE);
}

/// Parent-child coordination, in anonymous shared memory.
#[repr(C)]
struct Control {
    /// The round children may run (1-based); the parent bumps it and wakes them.
    round: AtomicU32,
    /// Children that finished a round, cumulative.
    done: AtomicU32,
    /// Every `init` run by any child, cumulative.
    inits: AtomicU64,
    /// Children that hit an error.
    failures: AtomicU32,
    /// The offset child `i` got for name `n` this round.
    offsets: [[AtomicU64; NAMES]; PROCS],
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Control {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 2), Elem::NONE);
}

fn name(n: usize) -> String {
    format!("object-{n}")
}

fn child(ctl: &Control, dir: &std::path::Path, i: usize) {
    let pid = std::process::id();
    for round in 1..=ROUNDS {
        // Acquire: pairs with the parent's release store of the round (it cleaned up the
        // previous round's file before).
        while ctl.round.load(Ordering::Acquire) < round {
            futex::wait(&ctl.round, round - 1, Some(Duration::from_millis(50)));
        }
        let run = || -> Result<(), shmstate::RegionError> {
            let region = Region::open_or_create(dir.join(format!("round-{round}")), 64 * 1024)?;
            for k in 0..NAMES {
                // Half the children go forwards, half backwards: every name is contended
                // both first and last.
                let n = if i.is_multiple_of(2) {
                    k
                } else {
                    NAMES - 1 - k
                };
                let p = region.get_or_init::<Probe>(&name(n), |p| {
                    // Relaxed: counted, and published by the region's READY store.
                    p.inits.fetch_add(1, Ordering::Relaxed);
                    p.initialiser.store(pid, Ordering::Relaxed);
                    ctl.inits.fetch_add(1, Ordering::Relaxed);
                })?;
                p.hits.fetch_add(1, Ordering::Relaxed);
                let offset = region.offset_of(p).expect("object inside the region");
                ctl.offsets[i][n].store(offset as u64, Ordering::Relaxed);
            }
            Ok(())
        };
        if let Err(e) = run() {
            eprintln!("child {i} round {round}: {e}");
            ctl.failures.fetch_add(1, Ordering::Relaxed);
        }
        // Release: publishes this round's offsets and hits to the parent's acquire load.
        ctl.done.fetch_add(1, Ordering::Release);
        futex::wake_all(&ctl.done);
    }
}

#[test]
fn sixteen_processes_agree_on_every_object_for_200_rounds() {
    common::watchdog(Duration::from_secs(240));
    // Removed on drop, so also when an assertion below fails (the watchdog's abort is the
    // one exit that leaves it; the next run with the same pid clears it first).
    let tmp = common::TempDir::new("race");
    let dir = tmp.0.clone();
    let shared = common::SharedMem::<Control>::new(1);
    let ctl = shared.get();
    let started = Instant::now();
    let parent = std::process::id() as libc::pid_t;
    let pids = common::fork_children(PROCS, |i| {
        common::die_with_parent(parent);
        child(ctl, &dir, i)
    });

    for round in 1..=ROUNDS {
        // Release: pairs with the children's acquire load of the round.
        ctl.round.store(round, Ordering::Release);
        futex::wake_all(&ctl.round);
        let target = PROCS as u32 * round;
        loop {
            // Acquire: pairs with the children's release increments.
            let done = ctl.done.load(Ordering::Acquire);
            if done >= target {
                break;
            }
            futex::wait(&ctl.done, done, Some(Duration::from_millis(50)));
        }
        assert_eq!(ctl.failures.load(Ordering::Relaxed), 0, "round {round}");
        assert_eq!(
            ctl.inits.load(Ordering::Relaxed),
            (NAMES as u64) * u64::from(round),
            "round {round}: an object was initialised more than once"
        );
        let path = dir.join(format!("round-{round}"));
        let region = Region::open(&path).unwrap();
        assert_eq!(region.entries().len(), NAMES, "round {round}");
        for n in 0..NAMES {
            let p = region.get::<Probe>(&name(n)).unwrap();
            assert_eq!(
                p.inits.load(Ordering::Relaxed),
                1,
                "round {round} {}",
                name(n)
            );
            assert_eq!(
                p.hits.load(Ordering::Relaxed),
                PROCS as u64,
                "round {round}"
            );
            assert_ne!(p.initialiser.load(Ordering::Relaxed), 0);
            let offset = region.offset_of(p).unwrap() as u64;
            for (i, row) in ctl.offsets.iter().enumerate() {
                assert_eq!(
                    row[n].load(Ordering::Relaxed),
                    offset,
                    "round {round} child {i}"
                );
            }
        }
        drop(region);
        std::fs::remove_file(&path).unwrap();
    }
    common::wait_all(&pids, Duration::from_secs(60));
    eprintln!(
        "{PROCS} processes x {ROUNDS} rounds x {NAMES} names: {:?}",
        started.elapsed()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}
