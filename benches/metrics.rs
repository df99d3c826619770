//! Metrics: `Histogram::observe` in shared memory next to the in-process histograms of the
//! `prometheus-client` and `prometheus` crates, on one thread and on two workers; and a
//! render of 10,000 metrics (`metrics::Exposition` over three regions) next to
//! `prometheus-client`'s text encoder over a registry of as many series. Every observe
//! bench checks its final count.
//!
//! Targets (reported against, never asserted): an uncontended observation in at most
//! 10 ns; two processes no slower per observation than one; a scrape of 10,000 metrics in
//! at most 10 ms.
//!
//! Run: `cargo bench --bench metrics` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench metrics`).

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{Weight, Workers, concurrent, single, tune};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use prometheus_client::registry::Registry;
use shmstate::metrics::{self, Exposition};
use shmstate::{Histogram, Region, RegionOptions};

/// Prometheus' default buckets (the Go client's `DefBuckets`), as a service would use.
const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Observed values, cycled: spread over all buckets, +Inf included.
const VALUES: [f64; 16] = [
    0.001, 0.007, 0.02, 0.03, 0.07, 0.2, 0.3, 0.7, 2.0, 4.0, 8.0, 20.0, 0.004, 0.09, 0.6, 1.5,
];

/// A histogram with a count that a sample starts from: none of the three histograms
/// resets, so each sample checks the count it added.
struct Counted<H> {
    h: H,
    base: AtomicU64,
    /// The next value's index, for the single-thread loop.
    next: Cell<usize>,
}

impl<H> Counted<H> {
    fn new(h: H) -> Self {
        Counted {
            h,
            base: AtomicU64::new(0),
            next: Cell::new(0),
        }
    }

    fn value(&self) -> f64 {
        let i = self.next.get();
        self.next.set((i + 1) % VALUES.len());
        VALUES[i]
    }
}

/// The same without the cursor, shared by workers (each cycles through the values itself).
struct Shared<H> {
    h: H,
    base: AtomicU64,
}

trait Observe {
    fn observe(&self, v: f64);
    fn count(&self) -> u64;
}

impl Observe for &Histogram {
    #[inline]
    fn observe(&self, v: f64) {
        Histogram::observe(self, v)
    }
    fn count(&self) -> u64 {
        Histogram::count(self)
    }
}

impl Observe for PcHistogram {
    #[inline]
    fn observe(&self, v: f64) {
        PcHistogram::observe(self, v)
    }
    fn count(&self) -> u64 {
        PcHistogram::count(self)
    }
}

impl Observe for prometheus::Histogram {
    #[inline]
    fn observe(&self, v: f64) {
        prometheus::Histogram::observe(self, v)
    }
    fn count(&self) -> u64 {
        self.get_sample_count()
    }
}

fn prometheus_histogram() -> prometheus::Histogram {
    prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("latency_seconds", "latency").buckets(BOUNDS.to_vec()),
    )
    .expect("valid histogram options")
}

/// A histogram in an anonymous region (MAP_SHARED memory, inherited across fork).
fn shm_histogram(region: &Region) -> &Histogram {
    region
        .histogram("latency_seconds", &BOUNDS)
        .expect("histogram in the region")
}

fn single_row<H: Observe>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    h: H,
) {
    let state = Counted::new(h);
    single(
        g,
        id,
        &state,
        |s| s.base.store(s.h.count(), Relaxed),
        |s| s.h.observe(s.value()),
        |s| s.h.count() - s.base.load(Relaxed),
    );
}

/// One observation per iteration on one thread.
fn observe_1thread(c: &mut Criterion) {
    let mut g = common::group(c, "histogram_observe_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));
    let region = Region::anonymous(1 << 16).expect("anonymous region");
    single_row(&mut g, "shmstate_histogram", shm_histogram(&region));
    single_row(
        &mut g,
        "prometheus_client_histogram",
        PcHistogram::new(BOUNDS),
    );
    single_row(&mut g, "prometheus_histogram", prometheus_histogram());
    g.finish();
}

fn concurrent_row<H: Observe + Sync>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    w: Workers,
    h: H,
) {
    let state = Shared {
        h,
        base: AtomicU64::new(0),
    };
    concurrent(
        g,
        id,
        w,
        w.count() as u64,
        &state,
        |s| s.base.store(s.h.count(), Relaxed),
        |s, i, iters| {
            for k in 0..iters as usize {
                s.h.observe(VALUES[(i * 5 + k) % VALUES.len()]);
            }
        },
        |s| s.h.count() - s.base.load(Relaxed),
    );
}

/// One observation per iteration by each of two workers: shmstate's histogram from two
/// processes and two threads; the in-process histograms from two threads (they cannot
/// be shared between processes).
fn observe_2workers(c: &mut Criterion) {
    let mut g = common::group(c, "histogram_observe_2workers");
    tune(&mut g, Weight::Spawning);
    g.throughput(Throughput::Elements(2));
    let region = Region::anonymous(1 << 16).expect("anonymous region");
    let h = shm_histogram(&region);
    concurrent_row(
        &mut g,
        "shmstate_histogram_2procs",
        Workers::Processes(2),
        h,
    );
    concurrent_row(
        &mut g,
        "shmstate_histogram_2threads",
        Workers::Threads(2),
        h,
    );
    concurrent_row(
        &mut g,
        "prometheus_client_histogram_2threads",
        Workers::Threads(2),
        PcHistogram::new(BOUNDS),
    );
    concurrent_row(
        &mut g,
        "prometheus_histogram_2threads",
        Workers::Threads(2),
        prometheus_histogram(),
    );
    g.finish();
}

/// Metrics in the render bench (10,000 in a full run).
fn metric_count() -> usize {
    common::size(10_000, 1_000)
}

/// A scrape: every metric of three regions (a region's directory holds at most 4,096
/// objects) rendered into one exposition, vs prometheus-client encoding a registry of as
/// many labelled counters. Labelled counters, as a service with many routes has; a few
/// histograms among them.
fn render(c: &mut Criterion) {
    let n = metric_count();
    let mut g = common::group(c, format!("render_{n}_metrics"));
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(n as u64));

    let regions: Vec<Region> = (0..3)
        .map(|_| {
            RegionOptions::new()
                .capacity(4096)
                .anonymous(8 << 20)
                .expect("anonymous region")
        })
        .collect();
    for i in 0..n {
        let region = &regions[i % 3];
        if i % 1000 == 999 {
            let h = metrics::histogram(region, &format!("db_seconds{{shard=\"{i}\"}}"), &BOUNDS)
                .expect("histogram");
            h.observe(0.02);
        } else {
            metrics::counter(region, &format!("http_requests_total{{route=\"/r{i}\"}}"))
                .expect("counter")
                .add(i as u64);
        }
    }
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("shmstate_exposition", |b| {
        b.iter(|| {
            out.clear();
            let mut e = Exposition::new();
            for r in &regions {
                e.add(r);
            }
            e.write(&mut out).expect("write to a Vec");
            assert!(e.skipped().is_empty());
            out.len()
        })
    });

    let mut registry = Registry::default();
    let family = Family::<Vec<(String, String)>, PcCounter>::default();
    registry.register("http_requests", "requests", family.clone());
    for i in 0..n {
        family
            .get_or_create(&vec![("route".to_owned(), format!("/r{i}"))])
            .inc_by(i as u64);
    }
    let mut text = String::with_capacity(1 << 20);
    g.bench_function("prometheus_client_encode", |b| {
        b.iter(|| {
            text.clear();
            encode(&mut text, &registry).expect("encode to a String");
            text.len()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = observe_1thread, observe_2workers, render
}
criterion_main!(benches);
