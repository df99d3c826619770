//! Metrics: `Histogram::observe` in shared memory next to the in-process histograms of the
//! `prometheus-client` and `prometheus` crates, on one thread and on two workers; and a
//! scrape of 10,000 metrics over three regions (an in-process `metrics::Exposition`, the
//! region files opened read-only and rendered, and an HTTP GET from `shmstate
//! serve-metrics`) next to `prometheus-client`'s text encoder over a registry of as many
//! series. Every observe bench checks its final count; every scrape row checks its
//! exposition once against the in-process render.
//!
//! Targets (reported against, never asserted): an uncontended observation in at most
//! 10 ns; two processes no slower per observation than one; a scrape of 10,000 metrics in
//! at most 10 ms.
//!
//! Run: `cargo bench --bench metrics` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench metrics`);
//! the HTTP row needs the CLI built first: `cargo build --release -p shmstate-cli`.

mod common;

use std::cell::Cell;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::{Weight, Workers, concurrent, single, tune};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use prometheus_client::registry::Registry;
use shmstate::metrics::{self, Exposition};
use shmstate::region::ReadOnlyRegion;
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

/// Fills `regions` with `n` metrics, round-robin: labelled counters, as a service with
/// many routes has, and a histogram every 1,000 metrics.
fn populate(regions: &[Region], n: usize) {
    for i in 0..n {
        let region = &regions[i % regions.len()];
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
}

/// The exposition of `sources` into `out`, as one scrape writes it.
fn render_into<S: metrics::MetricSource>(sources: &[S], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut e = Exposition::new();
    for s in sources {
        e.add(s);
    }
    e.write(out).expect("write to a Vec");
    assert!(e.skipped().is_empty());
    out.len()
}

/// What `shmstate metrics` and `serve-metrics` do at each scrape: open every region file
/// read-only (`ReadOnlyRegion::open`: map, validate the header) and render them into one
/// exposition.
fn scrape_files(paths: &[PathBuf], out: &mut Vec<u8>) -> usize {
    let views: Vec<ReadOnlyRegion> = paths
        .iter()
        .map(|p| ReadOnlyRegion::open(p).expect("region file opens read-only"))
        .collect();
    render_into(&views, out)
}

/// Region files for the scrape rows: in /dev/shm (where a service keeps them), or the
/// temporary directory; removed when dropped.
struct RegionFiles {
    paths: Vec<PathBuf>,
    regions: Vec<Region>,
}

impl RegionFiles {
    fn create(count: usize) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let paths: Vec<PathBuf> = (0..count)
            .map(|k| dir.join(format!("shmstate-bench-metrics-{}-{k}", std::process::id())))
            .collect();
        let regions = paths
            .iter()
            .map(|p| {
                let _ = std::fs::remove_file(p);
                RegionOptions::new()
                    .capacity(4096)
                    .create(p, 8 << 20)
                    .expect("region file")
            })
            .collect();
        RegionFiles { paths, regions }
    }
}

impl Drop for RegionFiles {
    fn drop(&mut self) {
        self.regions.clear();
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `target/<profile>/shmstate`, the CLI built next to this bench (`cargo build --release
/// -p shmstate-cli`), if it is there; with a warning if it is older than its sources.
fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("shmstate");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if newest_mtime(&root.join("src")).max(newest_mtime(&root.join("cli/src"))) > built {
        eprintln!(
            "warning: {} is older than its sources; rebuild it with \
             `cargo build --release -p shmstate-cli`",
            bin.display()
        );
    }
    Some(bin)
}

/// The latest modification time of `path` or, for a directory, of anything under it.
fn newest_mtime(path: &std::path::Path) -> std::time::SystemTime {
    let mut newest = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            newest = newest.max(newest_mtime(&entry.path()));
        }
    }
    newest
}

/// A `shmstate serve-metrics` process, killed and reaped when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(bin: &std::path::Path, paths: &[PathBuf]) -> Server {
        let mut child = Command::new(bin)
            .args(["serve-metrics", "--listen", "127.0.0.1:0"])
            .args(paths)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shmstate serve-metrics");
        // The first line: `listening on http://ADDR/metrics` (a server that fails to start
        // closes stdout, which ends the read).
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the server's first line");
        let addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .and_then(|a| a.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("serve-metrics printed {line:?}"))
            .to_owned();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 client on one kept-alive connection, as Prometheus scrapes a target.
struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to serve-metrics");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("read timeout");
        Client {
            reader: BufReader::new(stream),
            request: format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
        }
    }

    /// One GET of /metrics: the body into `body` (de-chunked); its length.
    fn get(&mut self, body: &mut Vec<u8>) -> usize {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .expect("send the request");
        body.clear();
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        assert!(line.starts_with("HTTP/1.1 200"), "status {line:?}");
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header line");
            let h = line.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>().expect("a length"));
            } else if h.starts_with("transfer-encoding:") && h.contains("chunked") {
                chunked = true;
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).expect("chunk size");
                let size = usize::from_str_radix(line.trim_end(), 16).expect("hex chunk size");
                let at = body.len();
                body.resize(at + size + 2, 0);
                self.reader.read_exact(&mut body[at..]).expect("chunk");
                body.truncate(at + size); // the chunk's CRLF
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.expect("a Content-Length or chunks");
            body.resize(n, 0);
            self.reader.read_exact(body).expect("body");
        }
        body.len()
    }
}

/// A scrape of 10,000 metrics: every metric of three regions (a region's directory holds
/// at most 4,096 objects) in one exposition, three ways, vs prometheus-client encoding a
/// registry of as many labelled counters:
///
/// - `shmstate_exposition`: an in-process render of three anonymous regions the bench
///   holds open (a `/metrics` handler inside the service);
/// - `shmstate_files_read_only`: the same metrics in three region files, opened read-only
///   and rendered at each scrape, as `shmstate metrics` and `serve-metrics` do;
/// - `shmstate_serve_metrics_http`: one `GET /metrics` over a kept-alive HTTP/1.1
///   connection to a `shmstate serve-metrics` process serving those files (the CLI binary
///   next to this bench; the row is skipped, with a message, when it is not built).
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
    populate(&regions, n);
    let mut out = Vec::with_capacity(1 << 20);
    let expected = {
        render_into(&regions, &mut out);
        out.clone()
    };
    g.bench_function("shmstate_exposition", |b| {
        b.iter(|| render_into(&regions, &mut out))
    });

    let files = RegionFiles::create(3);
    populate(&files.regions, n);
    // The files hold the same metrics in the same order: the same exposition.
    scrape_files(&files.paths, &mut out);
    assert!(
        out == expected,
        "the files render as the anonymous regions do"
    );
    g.bench_function("shmstate_files_read_only", |b| {
        b.iter(|| scrape_files(&files.paths, &mut out))
    });

    match cli_binary() {
        None => eprintln!(
            "skipping shmstate_serve_metrics_http: no shmstate binary next to this bench \
             (build it with `cargo build --release -p shmstate-cli`)"
        ),
        Some(bin) => {
            let server = Server::start(&bin, &files.paths);
            let mut client = Client::connect(&server.addr);
            client.get(&mut out);
            assert!(out == expected, "serve-metrics sends the files' exposition");
            g.bench_function("shmstate_serve_metrics_http", |b| {
                b.iter(|| client.get(&mut out))
            });
        }
    }

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
