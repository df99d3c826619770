//! Values and counters placed in a region by name: every process that opens the file gets
//! the same objects, their totals are exact across processes, and asking for a name with
//! another value type or stripe count is a `TypeMismatch`, never a reinterpretation.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use shmstate::sync::Ordering::Relaxed;
use shmstate::{Counter, GetError, Region, StripedCounter, Value};

const PROCS: usize = 3;
const PER_PROC: u64 = 20_000;

/// A region file in the temporary directory, removed on drop.
struct TempRegion(PathBuf);

impl TempRegion {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("shmstate-values-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempRegion(p)
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Children that open the file themselves (their own mapping, not one inherited from the
/// parent) find every object by name and add to it; nothing is lost.
#[test]
fn values_and_counters_in_a_region_file_are_shared_by_name() {
    common::watchdog(Duration::from_secs(60));
    let file = TempRegion::new("shared");
    let region = Region::create(&file.0, 1 << 16).unwrap();
    let flag = region.get_or_default::<Value<bool>>("flag").unwrap();
    let float = region
        .get_or_init::<Value<f64>>("float", |v| v.store(0.5, Relaxed))
        .unwrap();
    let int = region
        .get_or_init::<Value<i16>>("int", |v| v.store(-7, Relaxed))
        .unwrap();
    let counter = region.get_or_default::<Counter>("counter").unwrap();
    let striped = region
        .get_or_default_slice::<StripedCounter>("striped", 5)
        .unwrap();
    assert!(!flag.load(Relaxed), "zeroed memory is false");
    assert_eq!(striped.stripes(), 5);

    let path = file.0.clone();
    let pids = common::fork_children(PROCS, move |_| {
        let mine = Region::open(&path).unwrap();
        let float = mine.get::<Value<f64>>("float").unwrap();
        let int = mine.get::<Value<i16>>("int").unwrap();
        let counter = mine.get::<Counter>("counter").unwrap();
        let striped = mine.get::<StripedCounter>("striped").unwrap();
        assert_eq!(striped.stripes(), 5, "the length comes from the directory");
        for _ in 0..PER_PROC {
            float.fetch_add(1.0, Relaxed);
            int.fetch_add(1, Relaxed);
            counter.inc();
            striped.inc();
        }
        mine.get::<Value<bool>>("flag")
            .unwrap()
            .store(true, Relaxed);
    });
    common::wait_all(&pids, Duration::from_secs(50));

    let total = PROCS as u64 * PER_PROC;
    assert!(flag.load(Relaxed));
    assert_eq!(float.load(Relaxed), 0.5 + total as f64);
    assert_eq!(int.load(Relaxed), (-7i64 + total as i64) as i16);
    assert_eq!(counter.get(), total);
    assert_eq!(striped.sum(), total);

    // A second `get_or_init` returns the same objects and does not run `init` again.
    let again = region
        .get_or_init::<Value<f64>>("float", |_| unreachable!())
        .unwrap();
    assert!(std::ptr::eq(again, float));
}

/// The element type is part of the identity: a `Value<u64>` is not a `Value<i64>`, a
/// `Value<bool>` is not a `Value<u8>`, and a striped counter has one stripe count.
#[test]
fn another_value_type_or_stripe_count_is_a_type_mismatch() {
    common::watchdog(Duration::from_secs(30));
    let region = Region::anonymous(1 << 16).unwrap();
    region.get_or_default::<Value<u64>>("u").unwrap();
    region.get_or_default::<Value<bool>>("b").unwrap();
    region.get_or_default::<Value<f32>>("f").unwrap();
    region.get_or_default::<Counter>("c").unwrap();
    region
        .get_or_default_slice::<StripedCounter>("s", 4)
        .unwrap();

    fn mismatch<T>(r: Result<&T, GetError>) -> bool
    where
        T: ?Sized,
    {
        matches!(r, Err(GetError::TypeMismatch { .. }))
    }
    assert!(mismatch(region.get::<Value<i64>>("u")));
    assert!(mismatch(region.get::<Value<f64>>("u")));
    assert!(mismatch(region.get::<Value<u8>>("b")));
    assert!(mismatch(region.get::<Value<u32>>("f")));
    assert!(mismatch(region.get::<Value<u64>>("c")));
    assert!(mismatch(region.get::<Counter>("s")));
    assert!(mismatch(
        region.get_or_default_slice::<StripedCounter>("s", 8)
    ));
    assert_eq!(region.get::<StripedCounter>("s").unwrap().stripes(), 4);
    assert!(mismatch(region.get::<StripedCounter>("c")));
}
