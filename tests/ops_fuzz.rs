//! Hostile shared memory, deterministically: the same operation scripts as the cargo-fuzz
//! targets in `fuzz/` (the driver is `tests/fuzz_ops/mod.rs`, shared with them), fed by a
//! seeded xorshift generator instead of libFuzzer, so that CI runs them on stable Rust.
//!
//! Each input is both the objects' raw bytes and a script of bounded operations interleaved
//! with more raw writes; no operation may panic or take longer than its bound, whatever the
//! bytes. A failing input prints its seed; rerun it alone with
//! `SHMSTATE_FUZZ_SEED=<seed> cargo test --test ops_fuzz` (add `SHMSTATE_FUZZ_TRACE=1` to
//! print each operation).

mod common;
mod fuzz_ops;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Base seeds; each runs `ITERATIONS` inputs.
const SEEDS: [u64; 4] = [
    0x5eed_0001,
    0x9e37_79b9_7f4a_7c15,
    0xdead_beef_cafe_f00d,
    0x0123_4567_89ab_cdef,
];

/// Inputs per base seed and family.
const ITERATIONS: u64 = 250;

/// Longest generated input, in bytes.
const MAX_LEN: usize = 512;

/// Per-test limit: the watchdog aborts a run that hangs.
const LIMIT: Duration = Duration::from_secs(60);

/// The input seed being run, for the hang report.
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// xorshift64*: small, deterministic, good enough to make bytes.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed: nearby seeds give unrelated streams, and never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// An input: the first byte (the length of the initial raw image) is mostly small, so
    /// that most inputs start from nearly fresh objects and spend their bytes on
    /// operations; one in four starts from a long garbage image.
    fn bytes(&mut self) -> Vec<u8> {
        let len = (self.next() % MAX_LEN as u64) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| (self.next() >> 56) as u8).collect();
        if let Some(first) = v.first_mut()
            && *first >= 64
        {
            *first %= 16;
        }
        v
    }
}

/// The seeds to run: `SHMSTATE_FUZZ_SEED` (decimal or `0x` hex) alone, if set.
fn input_seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SHMSTATE_FUZZ_SEED") {
        let s = s.trim();
        let seed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        }
        .expect("SHMSTATE_FUZZ_SEED: a decimal or 0x-hex u64");
        return vec![seed];
    }
    SEEDS
        .iter()
        .flat_map(|&base| (0..ITERATIONS).map(move |i| XorShift::new(base ^ i).next()))
        .collect()
}

/// Runs `family` on every input, printing the seed of one that panics (the panic then
/// fails the test) or hangs (the watchdog then aborts).
fn run(name: &str, family: fn(&[u8])) {
    common::watchdog(LIMIT);
    std::thread::spawn(|| {
        std::thread::sleep(LIMIT - Duration::from_millis(500));
        eprintln!(
            "ops_fuzz: still running input seed {:#x}: SHMSTATE_FUZZ_SEED={:#x}",
            CURRENT.load(Ordering::Relaxed),
            CURRENT.load(Ordering::Relaxed),
        );
    });
    let start = Instant::now();
    let seeds = input_seeds();
    for &seed in &seeds {
        CURRENT.store(seed, Ordering::Relaxed);
        let input = XorShift::new(seed).bytes();
        let r = std::panic::catch_unwind(|| family(&input));
        if let Err(e) = r {
            eprintln!("ops_fuzz {name}: input seed {seed:#x} failed: SHMSTATE_FUZZ_SEED={seed:#x}");
            std::panic::resume_unwind(e);
        }
    }
    let (slowest, op) = fuzz_ops::slowest();
    eprintln!(
        "ops_fuzz {name}: {} inputs in {:?}; slowest operation {op}: {slowest:?}",
        seeds.len(),
        start.elapsed()
    );
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_locks() {
    run("locks", fuzz_ops::locks);
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_seqlocks() {
    run("seqlocks", fuzz_ops::seqlocks);
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_coordination_primitives() {
    run("coord", fuzz_ops::coord);
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_values() {
    run("values", fuzz_ops::values);
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_map() {
    run("map", fuzz_ops::map);
}

#[test]
fn hostile_bytes_never_wedge_or_panic_the_channel() {
    run("channel", fuzz_ops::channel);
}
