//! `shmstate metrics` and `shmstate serve-metrics`, run as users run them: the exact
//! exposition of a region with counters, gauges, histograms and labels, checked by
//! `promtool` and scraped by a real Prometheus server when those are installed (Debian
//! package `prometheus`; the tests say so and skip that part when they are not, unless
//! `SHMSTATE_REQUIRE_TOOLS=1`, when they fail).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use shmstate::sync::Ordering::Relaxed;
use shmstate::{Counter, Mutex, Region, Value, ValueArray, metrics};

use common::{KillOnDrop, TempDir, run, shmstate, tool};

/// Counters, gauges, a histogram and labels, with objects the exposition must leave out
/// or sanitise.
fn populate(region: &Region) {
    metrics::counter(region, r#"jobs_total{queue="mail"}"#)
        .unwrap()
        .add(5);
    let h = metrics::histogram(region, r#"latency_seconds{method="GET"}"#, &[0.125, 1.0]).unwrap();
    for v in [0.0625, 0.125, 0.5, 2.0] {
        h.observe(v);
    }
    metrics::gauge::<i64>(region, r#"temperature_celsius{room="a\"b\\c\n"}"#)
        .unwrap()
        .store(-3, Relaxed);
    metrics::striped_counter(region, "requests_total")
        .unwrap()
        .add(7);
    metrics::counter(region, r#"jobs_total{queue="sms"}"#)
        .unwrap()
        .add(2);
    metrics::gauge::<f64>(region, "ratio")
        .unwrap()
        .store(0.5, Relaxed);
    metrics::gauge::<f64>(region, "unset_ratio")
        .unwrap()
        .store(f64::NAN, Relaxed);
    metrics::gauge::<f64>(region, "low_water")
        .unwrap()
        .store(f64::NEG_INFINITY, Relaxed);
    metrics::gauge::<u64>(region, "big")
        .unwrap()
        .store(u64::MAX, Relaxed);
    metrics::gauge::<f32>(region, "fill_ratio")
        .unwrap()
        .store(1.5, Relaxed);
    metrics::gauge::<i16>(region, "small")
        .unwrap()
        .store(-7, Relaxed);
    region
        .get_or_default::<Value<bool>>("up_flag")
        .unwrap()
        .store(true, Relaxed);
    // Not metric-shaped: left out silently.
    region.get_or_default::<Mutex<u64>>("lock").unwrap();
    region
        .get_or_default_slice::<ValueArray<u64>>("array", 4)
        .unwrap();
    // Created outside the metrics API under names that are not series names.
    region
        .get_or_default::<Counter>("cache-evictions.total")
        .unwrap()
        .add(9);
    region.get_or_default::<Counter>("bad{x").unwrap();
    // Names taken by a family of another kind.
    region.get_or_default::<Value<u64>>("jobs_total").unwrap();
    region
        .get_or_default::<Counter>("latency_seconds_count")
        .unwrap();
}

const EXPECTED: &str = r#"# HELP jobs_total shmstate Counter
# TYPE jobs_total counter
jobs_total{queue="mail"} 5
jobs_total{queue="sms"} 2
# HELP latency_seconds shmstate Histogram
# TYPE latency_seconds histogram
latency_seconds_bucket{method="GET",le="0.125"} 2
latency_seconds_bucket{method="GET",le="1"} 3
latency_seconds_bucket{method="GET",le="+Inf"} 4
latency_seconds_sum{method="GET"} 2.6875
latency_seconds_count{method="GET"} 4
# HELP temperature_celsius shmstate Value<i64>
# TYPE temperature_celsius gauge
temperature_celsius{room="a\"b\\c\n"} -3
# HELP requests_total shmstate StripedCounter
# TYPE requests_total counter
requests_total 7
# HELP ratio shmstate Value<f64>
# TYPE ratio gauge
ratio 0.5
# HELP unset_ratio shmstate Value<f64>
# TYPE unset_ratio gauge
unset_ratio NaN
# HELP low_water shmstate Value<f64>
# TYPE low_water gauge
low_water -Inf
# HELP big shmstate Value<u64>
# TYPE big gauge
big 18446744073709551615
# HELP fill_ratio shmstate Value<f32>
# TYPE fill_ratio gauge
fill_ratio 1.5
# HELP small shmstate Value<i16>
# TYPE small gauge
small -7
# HELP up_flag shmstate Value<bool>
# TYPE up_flag gauge
up_flag 1
# HELP cache_evictions_total shmstate Counter
# TYPE cache_evictions_total counter
cache_evictions_total 9
"#;

#[test]
fn metrics_prints_the_exact_exposition_and_leaves_the_file_untouched() {
    let dir = TempDir::new("exact");
    let path = dir.file("region");
    let region = Region::create(&path, 1 << 16).unwrap();
    populate(&region);
    let before = std::fs::read(&path).unwrap();

    let out = shmstate(&["metrics", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), EXPECTED);
    // The left-out objects are named on stderr, one line each, with the reason.
    let notes: Vec<&str> = stderr.lines().collect();
    assert_eq!(notes.len(), 3, "{stderr}");
    assert!(notes[0].contains(r#""bad{x""#) && notes[0].contains("not a metric name"));
    assert!(notes[1].contains(r#""jobs_total""#) && notes[1].contains("another kind"));
    assert!(notes[2].contains(r#""latency_seconds_count""#) && notes[2].contains("another kind"));
    // Read through a read-only mapping: not a byte of the region changed.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // One renderer: the library over the writable region and over a read-only view of
    // the file writes what the command printed.
    let mut live = Vec::new();
    metrics::render_prometheus(&region, &mut live).unwrap();
    assert_eq!(String::from_utf8_lossy(&live), EXPECTED);
    let view = shmstate::region::ReadOnlyRegion::open(&path).unwrap();
    let mut ro = Vec::new();
    metrics::render_prometheus(&view, &mut ro).unwrap();
    assert_eq!(String::from_utf8_lossy(&ro), EXPECTED);

    if tool("promtool", "prometheus") {
        let check = run("promtool", &["check", "metrics"], Some(&out.stdout));
        assert!(
            check.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn metrics_groups_the_families_of_several_regions_and_skips_duplicates() {
    let dir = TempDir::new("several");
    let (a, b) = (dir.file("a"), dir.file("b"));
    let ra = Region::create(&a, 1 << 16).unwrap();
    let rb = Region::create(&b, 1 << 16).unwrap();
    metrics::counter(&ra, r#"jobs_total{worker="a"}"#)
        .unwrap()
        .add(1);
    metrics::gauge::<i64>(&ra, "queue_length")
        .unwrap()
        .store(4, Relaxed);
    metrics::counter(&rb, r#"jobs_total{worker="b"}"#)
        .unwrap()
        .add(2);
    metrics::counter(&rb, r#"jobs_total{worker="a"}"#)
        .unwrap()
        .add(3);
    let out = shmstate(&["metrics", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "# HELP jobs_total shmstate Counter\n# TYPE jobs_total counter\n\
         jobs_total{worker=\"a\"} 1\njobs_total{worker=\"b\"} 2\n\
         # HELP queue_length shmstate Value<i64>\n# TYPE queue_length gauge\nqueue_length 4\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"jobs_total{worker=\"a\"}"#) && stderr.contains("came first"),
        "{stderr}"
    );
}

#[test]
fn metrics_of_a_missing_file_is_a_usage_error() {
    let dir = TempDir::new("missing");
    let out = shmstate(&["metrics", dir.file("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such region file"));
    assert!(out.stdout.is_empty());
}

/// Starts `shmstate serve-metrics --listen 127.0.0.1:0 PATH` and returns it with the
/// address it printed.
fn serve(path: &Path) -> (KillOnDrop, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmstate"))
        .args(["serve-metrics", "--listen", "127.0.0.1:0"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (server, addr.parse().unwrap())
}

/// `GET path` over HTTP/1.0: the status code, the headers (lower-cased) and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_lowercase(), body.to_owned())
}

#[test]
fn serve_metrics_answers_get_metrics_with_the_current_values() {
    let dir = TempDir::new("serve");
    let path = dir.file("region");
    let region = Region::create(&path, 1 << 16).unwrap();
    populate(&region);
    let (_server, addr) = serve(&path);

    let (code, head, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(body, EXPECTED);
    // The region is read at each scrape.
    metrics::counter(&region, r#"jobs_total{queue="mail"}"#)
        .unwrap()
        .add(10);
    let (_, _, body) = get(addr, "/metrics");
    assert!(body.contains("jobs_total{queue=\"mail\"} 15\n"), "{body}");
    assert_eq!(get(addr, "/other").0, 404);
    // A region that disappears makes the scrape fail, not the server.
    drop(region);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(get(addr, "/metrics").0, 500);
}

/// A free loopback port (bound and released; the small race with other programs taking
/// it meanwhile is acceptable in a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PromQL `query` against Prometheus' HTTP API; the `data.result` array.
fn query(prometheus: SocketAddr, query: &str) -> Option<Vec<Json>> {
    // The queries here need no escaping beyond these.
    let q = query
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
        .replace('=', "%3D");
    let s = TcpStream::connect_timeout(&prometheus, Duration::from_secs(2)).ok()?;
    drop(s);
    let (code, _, body) = get(prometheus, &format!("/api/v1/query?query={q}"));
    if code != 200 {
        return None;
    }
    let doc: Json = serde_json::from_str(&body).ok()?;
    doc["data"]["result"].as_array().cloned()
}

/// The value of the one sample in `result` whose labels include `label`=`value`.
fn sample_value(result: &[Json], label: &str, value: &str) -> Option<String> {
    result
        .iter()
        .find(|r| r["metric"][label] == value)
        .and_then(|r| r["value"][1].as_str().map(str::to_owned))
}

#[test]
fn a_real_prometheus_scrapes_serve_metrics() {
    if !tool("prometheus", "prometheus") {
        return;
    }
    // The watchdog: the whole test, Prometheus' start-up included, within 90 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let dir = TempDir::new("prometheus");
    let path = dir.file("region");
    let region = Region::create(&path, 1 << 16).unwrap();
    populate(&region);
    let (_server, target) = serve(&path);

    let config = dir.file("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: shmstate\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(dir.file("prometheus.log")).unwrap();
    let prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.file("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let mut up = None;
    let mut mail = None;
    while Instant::now() < deadline {
        if let Some(r) = query(web, r#"up{job="shmstate"}"#) {
            up = sample_value(&r, "job", "shmstate");
        }
        if up.as_deref() == Some("1")
            && let Some(r) = query(web, "jobs_total")
        {
            mail = sample_value(&r, "queue", "mail");
            if mail.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(dir.file("prometheus.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert_eq!(
        up.as_deref(),
        Some("1"),
        "target not up; prometheus log:\n{tail}"
    );
    assert_eq!(mail.as_deref(), Some("5"), "prometheus log:\n{tail}");
    drop(prometheus);
}
