//! `Histogram`: `le` bucket semantics, NaN and infinities, exact totals from several
//! processes, bounds validation, and its identity in a region.

mod common;

use std::time::Duration;

use common::{TempDir, fork_children, wait_all, watchdog};
use shmstate::values::histogram::{BoundsError, HistogramError, MAX_BOUNDS};
use shmstate::{Counter, GetError, Histogram, Kind, Region, RegionOptions};

/// Observations per process in the 4-process test: the spec's 1,000,000, in debug builds
/// too (about 1 s there on 2 cores: an unoptimised observation is still only a few
/// atomic operations, so no scaling is needed).
const PER_PROCESS: u64 = 1_000_000;

#[test]
fn a_value_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
    let h = Histogram::new(&[1.0, 2.0, 4.0]).unwrap();
    let cases: [(f64, usize); 9] = [
        (f64::NEG_INFINITY, 0),
        (-5.0, 0),
        (0.999, 0),
        (1.0, 0), // exactly on a bound: that bound's bucket (`v <= le`)
        (f64::from_bits(1.0f64.to_bits() + 1), 1), // the next double above 1.0
        (2.0, 1),
        (4.0, 2),
        (4.000001, 3), // above every bound: +Inf
        (f64::INFINITY, 3),
    ];
    for (v, bucket) in cases {
        let before = h.snapshot();
        h.observe(v);
        let after = h.snapshot();
        // Cumulative: every bucket from the value's own to +Inf went up by one.
        for i in 0..=3 {
            let grew = after.cumulative[i] - before.cumulative[i];
            assert_eq!(grew, u64::from(i >= bucket), "{v} in bucket {i}");
        }
        assert_eq!(after.count, before.count + 1);
    }
    let s = h.snapshot();
    assert_eq!(s.cumulative, [4, 6, 7, 9]);
    assert_eq!(s.count, 9);
    // -inf + inf: the sum is NaN, as f64 addition says.
    assert!(s.sum.is_nan());
}

#[test]
fn nan_counts_in_the_inf_bucket_and_makes_the_sum_nan() {
    let h = Histogram::new(&[0.5]).unwrap();
    h.observe(0.25);
    assert_eq!(h.sum(), 0.25);
    h.observe(f64::NAN);
    let s = h.snapshot();
    assert_eq!(s.cumulative, [1, 2], "NaN is in +Inf only");
    assert_eq!(s.count, 2, "the count still equals the +Inf bucket");
    assert!(s.sum.is_nan());
    // Infinities are ordinary observations: +Inf in the +Inf bucket, sum +Inf.
    let h = Histogram::new(&[0.5]).unwrap();
    h.observe(f64::INFINITY);
    assert_eq!(h.snapshot().cumulative, [0, 1]);
    assert_eq!(h.sum(), f64::INFINITY);
}

#[test]
fn a_histogram_without_bounds_has_only_the_inf_bucket() {
    let h = Histogram::new(&[]).unwrap();
    h.observe(-1.0);
    h.observe(1e300);
    let s = h.snapshot();
    assert_eq!(
        (s.bounds.len(), s.cumulative, s.count, s.sum),
        (0, vec![2], 2, 1e300 - 1.0)
    );
    // A histogram created zeroed by the generic call is the same: no bounds, one owned
    // stripe (and the shared one: 3 lines with the header).
    let region = Region::anonymous(1 << 16).unwrap();
    let z = region.get_or_default_slice::<Histogram>("z", 3).unwrap();
    z.observe(3.0);
    assert_eq!((z.count(), z.sum(), z.stripes()), (1, 3.0, 1));
    // Two lines hold no shared stripe: not a histogram, read as empty whatever is done.
    let short = region
        .get_or_default_slice::<Histogram>("short", 2)
        .unwrap();
    short.observe(3.0);
    assert_eq!((short.count(), short.sum()), (0, 0.0));
}

/// The value observation `i` of worker `w` makes: multiples of 0.25 from 0 to 15.75
/// (exact in binary), spread over all buckets and exactly on some bounds.
fn sample(w: u64, i: u64) -> f64 {
    ((i * 7 + w * 13) % 64) as f64 * 0.25
}

/// The cumulative counts and the sum of `workers` workers' `per_worker` samples each,
/// counted here.
fn expected(bounds: &[f64], workers: u64, per_worker: u64) -> (Vec<u64>, f64) {
    let mut counts = vec![0u64; bounds.len() + 1];
    let mut sum = 0.0f64;
    for w in 0..workers {
        for i in 0..per_worker {
            let v = sample(w, i);
            let b = bounds
                .iter()
                .position(|&le| v <= le)
                .unwrap_or(bounds.len());
            counts[b] += 1;
            sum += v;
        }
    }
    let cumulative = counts
        .iter()
        .scan(0, |acc, c| {
            *acc += c;
            Some(*acc)
        })
        .collect();
    (cumulative, sum)
}

/// Four processes observe `PER_PROCESS` values each into a histogram of `stripes` owned
/// stripes (`None`: the default): the count and sum are exact.
fn four_processes_count_and_sum_exactly_with(stripes: Option<usize>) {
    watchdog(Duration::from_secs(120));
    let bounds = [0.5, 1.0, 2.5, 5.0, 10.0];
    let region = Region::anonymous(1 << 16).unwrap();
    let h = match stripes {
        Some(n) => region
            .histogram_with_stripes("latency", &bounds, n)
            .unwrap(),
        None => region.histogram("latency", &bounds).unwrap(),
    };
    let pids = fork_children(4, |w| {
        let h = region.histogram("latency", &bounds).unwrap();
        for i in 0..PER_PROCESS {
            h.observe(sample(w as u64, i));
        }
    });
    wait_all(&pids, Duration::from_secs(100));

    let (cumulative, sum) = expected(&bounds, 4, PER_PROCESS);
    let s = h.snapshot();
    assert_eq!(s.count, 4 * PER_PROCESS);
    assert_eq!(s.cumulative, cumulative);
    // Every partial sum is a multiple of 0.25 below 2^30: exact in f64 in any order.
    assert_eq!(s.sum, sum);
    assert_eq!(h.count(), 4 * PER_PROCESS);
}

#[test]
fn four_processes_count_and_sum_exactly() {
    four_processes_count_and_sum_exactly_with(None);
}

/// One owned stripe: the first process to observe owns it, the three others add to the
/// shared stripe at the same time, with atomic updates.
#[test]
fn four_processes_on_one_owned_stripe_count_and_sum_exactly() {
    four_processes_count_and_sum_exactly_with(Some(1));
}

/// A child forked by a process that owns a stripe draws its own owner word (it inherits
/// the parent thread's thread-locals): parent and child observe at the same time into a
/// histogram of one owned stripe, the child on the shared path, and nothing is lost.
#[test]
fn a_forked_child_does_not_write_its_parents_stripe_as_its_own() {
    watchdog(Duration::from_secs(60));
    const N: u64 = 300_000;
    let bounds = [0.5, 1.0, 2.5, 5.0, 10.0];
    let region = Region::anonymous(1 << 16).unwrap();
    let h = region.histogram_with_stripes("h", &bounds, 1).unwrap();
    h.observe(sample(0, 0)); // this thread owns the stripe
    let child = fork_children(1, |_| {
        for i in 0..N {
            h.observe(sample(1, i));
        }
    });
    for i in 1..N {
        h.observe(sample(0, i));
    }
    wait_all(&child, Duration::from_secs(50));
    let (cumulative, sum) = expected(&bounds, 2, N);
    let s = h.snapshot();
    assert_eq!(s.cumulative, cumulative);
    assert_eq!(s.sum, sum);
}

/// Threads that come and go on a histogram of one owned stripe: each round's threads
/// find the stripe owned by a thread of the round before, gone by now, and one of them
/// takes it over (the others use the shared stripe), while they all observe. Nothing is
/// lost.
#[test]
fn threads_that_come_and_go_take_over_the_stripe_and_lose_nothing() {
    watchdog(Duration::from_secs(60));
    const ROUNDS: u64 = 8;
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 20_000;
    let bounds = [0.5, 1.0, 2.5, 5.0, 10.0];
    let h = Histogram::with_stripes(&bounds, 1).unwrap();
    for round in 0..ROUNDS {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let h = &h;
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        h.observe(sample(round * THREADS + t, i));
                    }
                });
            }
        });
    }
    let (cumulative, sum) = expected(&bounds, ROUNDS * THREADS, PER_THREAD);
    let s = h.snapshot();
    assert_eq!(s.count, ROUNDS * THREADS * PER_THREAD);
    assert_eq!(s.cumulative, cumulative);
    assert_eq!(s.sum, sum);
}

#[test]
fn bounds_must_be_strictly_increasing_and_finite() {
    let err = |b: &[f64]| Histogram::new(b).unwrap_err();
    assert!(matches!(
        err(&[1.0, f64::NAN]),
        BoundsError::NotFinite { index: 1, .. }
    ));
    assert!(matches!(
        err(&[f64::NEG_INFINITY, 1.0]),
        BoundsError::NotFinite { index: 0, .. }
    ));
    assert!(matches!(
        err(&[1.0, f64::INFINITY]),
        BoundsError::NotFinite { index: 1, .. }
    ));
    assert!(matches!(
        err(&[1.0, 2.0, 2.0]),
        BoundsError::NotIncreasing { index: 2, .. }
    ));
    assert!(matches!(
        err(&[3.0, 1.0]),
        BoundsError::NotIncreasing { index: 1, .. }
    ));
    assert!(matches!(
        err(&[-0.0, 0.0]),
        BoundsError::NotIncreasing { .. }
    ));
    let many: Vec<f64> = (0..=MAX_BOUNDS).map(|i| i as f64).collect();
    assert!(matches!(err(&many), BoundsError::TooMany { .. }));
    assert!(Histogram::new(&many[..MAX_BOUNDS]).is_ok());

    let region = Region::anonymous(1 << 20).unwrap();
    assert!(matches!(
        region.histogram("h", &[2.0, 1.0]),
        Err(HistogramError::Bounds(BoundsError::NotIncreasing { .. }))
    ));
    assert!(
        region.entries().is_empty(),
        "nothing is created for bad bounds"
    );
}

#[test]
fn an_existing_histogram_opens_only_with_its_own_bounds() {
    let region = Region::anonymous(1 << 16).unwrap();
    let h = region.histogram_with_stripes("h", &[1.0, 2.0], 4).unwrap();
    h.observe(1.5);
    assert_eq!(h.stripes(), 4);
    // Another stripe count asked for: the existing object is opened all the same.
    let again = region.histogram_with_stripes("h", &[1.0, 2.0], 1).unwrap();
    assert!(std::ptr::eq(h, again));
    assert_eq!(again.count(), 1);
    let err = region.histogram("h", &[1.0, 3.0]).unwrap_err();
    let HistogramError::BoundsMismatch {
        recorded,
        requested,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!((recorded, requested), (vec![1.0, 2.0], vec![1.0, 3.0]));
    assert!(matches!(
        region.histogram("h", &[1.0]),
        Err(HistogramError::BoundsMismatch { .. })
    ));
}

#[test]
fn a_histogram_keeps_its_type_across_opens_of_the_file() {
    let dir = TempDir::new("histogram-identity");
    let path = dir.0.join("region");
    {
        let region = Region::create(&path, 1 << 16).unwrap();
        region.histogram("h", &[0.1, 1.0]).unwrap().observe(0.5);
        region.get_or_default::<Counter>("c").unwrap();
    }
    let region = RegionOptions::new().open(&path).unwrap();
    let e = region
        .entries()
        .into_iter()
        .find(|e| e.name == "h")
        .unwrap();
    assert_eq!(e.tag.kind, Kind::HISTOGRAM);
    assert_eq!(e.tag.to_string(), "Histogram");
    let h = region.histogram("h", &[0.1, 1.0]).unwrap();
    assert_eq!(h.snapshot().cumulative, [0, 1, 1]);
    assert_eq!(region.get::<Histogram>("h").unwrap().bounds(), [0.1, 1.0]);
    // Not a counter, and a counter is not a histogram.
    assert!(matches!(
        region.get::<Counter>("h"),
        Err(GetError::TypeMismatch { .. })
    ));
    assert!(matches!(
        region.histogram("c", &[1.0]),
        Err(HistogramError::Get(GetError::TypeMismatch { .. }))
    ));
}
