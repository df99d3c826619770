//! The examples keep working: each is built by `cargo test`/`cargo nextest` (examples are
//! compiled with the tests) and run here as a user would run it, bounded by a watchdog.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>/examples/<name>`, next to this test binary's `deps/` directory.
///
/// A test-target filter (`cargo nextest run --test examples`) builds no example, so the
/// binary found may be an old one: refuse it if the example's source or the library's is
/// newer, rather than test stale code.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    let how = "run the tests with cargo test or cargo nextest, or cargo build --examples";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("example {name} not built at {} ({how})", path.display()));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = root.join("examples").join(format!("{name}.rs"));
    let newest = newest_mtime(&source).max(newest_mtime(&root.join("src")));
    assert!(
        newest <= built,
        "example {name} at {} is older than its sources ({how})",
        path.display()
    );
    path
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

/// Runs example `name` in a process group of its own, which is SIGKILLed (the example
/// and any process it forked) if it runs over `limit`: a hung example fails the test
/// instead of hanging it.
fn run(name: &str, limit: Duration) -> Output {
    let child = Command::new(example(name))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let group = rustix::process::Pid::from_child(&child);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            return true;
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    assert!(
        !watchdog.join().unwrap(),
        "example {name} ran over {limit:?} and was killed"
    );
    out
}

#[test]
fn value_array_example_prints_what_the_python_program_prints() {
    let out = run("value_array", Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n"
    );
}

#[test]
fn prefork_metrics_example_prints_the_workers_exposition() {
    let out = run("prefork_metrics", Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 4 workers x 10,000 requests, routes round-robin, latencies (i*37 + w*11) % 128 / 256
    // seconds: the counts and sum computed independently of the example.
    let expected = r#"# HELP http_request_duration_seconds shmstate Histogram
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.01"} 938
http_request_duration_seconds_bucket{le="0.05"} 4063
http_request_duration_seconds_bucket{le="0.1"} 8127
http_request_duration_seconds_bucket{le="0.25"} 20315
http_request_duration_seconds_bucket{le="0.5"} 40000
http_request_duration_seconds_bucket{le="+Inf"} 40000
http_request_duration_seconds_sum 9921
http_request_duration_seconds_count 40000
# HELP http_requests_total shmstate Counter
# TYPE http_requests_total counter
http_requests_total{route="/"} 13334
http_requests_total{route="/api/users"} 13333
http_requests_total{route="/static"} 13333
# HELP workers shmstate Value<u64>
# TYPE workers gauge
workers 4
# HELP workers_running shmstate Value<u64>
# TYPE workers_running gauge
workers_running 0
"#;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

/// The prefork example's final exposition after `requests` requests per worker, computed
/// independently of the example (from the simulated requests it documents): the sample
/// lines as (series, value).
fn prefork_expected(requests: u64) -> Vec<(String, f64)> {
    const BOUNDS: [f64; 5] = [0.01, 0.05, 0.1, 0.25, 0.5];
    let mut buckets = [0u64; 5];
    let mut routes = [0u64; 3];
    // In 1/256 s: every latency is a multiple of it, so the sum is exact.
    let mut sum_256 = 0u64;
    for w in 0..4u64 {
        for i in 0..requests {
            routes[((i + w) % 3) as usize] += 1;
            let n = (i * 37 + w * 11) % 128;
            sum_256 += n;
            for (b, bound) in buckets.iter_mut().zip(BOUNDS) {
                *b += u64::from(n as f64 / 256.0 <= bound);
            }
        }
    }
    let total = 4 * requests;
    let mut v: Vec<(String, f64)> = BOUNDS
        .iter()
        .zip(buckets)
        .map(|(le, n)| {
            (
                format!("http_request_duration_seconds_bucket{{le=\"{le}\"}}"),
                n as f64,
            )
        })
        .collect();
    v.push((
        "http_request_duration_seconds_bucket{le=\"+Inf\"}".into(),
        total as f64,
    ));
    v.push((
        "http_request_duration_seconds_sum".into(),
        sum_256 as f64 / 256.0,
    ));
    v.push(("http_request_duration_seconds_count".into(), total as f64));
    for (r, n) in ["/", "/api/users", "/static"].iter().zip(routes) {
        v.push((format!("http_requests_total{{route=\"{r}\"}}"), n as f64));
    }
    v.push(("workers".into(), 4.0));
    v.push(("workers_running".into(), 0.0));
    v
}

/// The sample lines of an exposition, as (series, value); the comment lines must be the
/// prefork example's `# HELP`/`# TYPE` lines.
fn prefork_samples(body: &str) -> Vec<(String, f64)> {
    let comments: Vec<&str> = body.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        comments,
        [
            "# HELP http_request_duration_seconds shmstate Histogram",
            "# TYPE http_request_duration_seconds histogram",
            "# HELP http_requests_total shmstate Counter",
            "# TYPE http_requests_total counter",
            "# HELP workers shmstate Value<u64>",
            "# TYPE workers gauge",
            "# HELP workers_running shmstate Value<u64>",
            "# TYPE workers_running gauge",
        ],
        "{body}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("{l:?}")),
            )
        })
        .collect()
}

/// A GET of `path` from `addr` over a fresh HTTP/1.1 connection (`Connection: close`):
/// the status line, the header lines (lowercased) and the body.
fn http_get(addr: &str, path: &str) -> (String, Vec<String>, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // A bound on a server that stops answering, besides the test's watchdog.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    // A small body comes with its length (no chunked encoding to undo here).
    assert!(
        headers.contains(&format!("content-length: {}", body.len())),
        "{headers:?}"
    );
    (status, headers, body.to_owned())
}

/// Kills the example's process group when dropped (a failed assertion must not leave a
/// server running), and reaps it.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let group = rustix::process::Pid::from_child(&self.0);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn prefork_metrics_example_serves_the_workers_metrics_over_http() {
    use std::io::BufRead as _;
    // Enough requests that the first scrape usually finds the workers running (nothing
    // depends on it: a scrape during the run is checked for consistency, not for counts).
    const REQUESTS: u64 = if cfg!(debug_assertions) {
        300_000
    } else {
        3_000_000
    };
    let expected = prefork_expected(REQUESTS);
    let limit = Duration::from_secs(60);
    let mut group = Group(
        Command::new(example("prefork_metrics"))
            .args(["--listen", "127.0.0.1:0", "--requests"])
            .arg(REQUESTS.to_string())
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pgid = rustix::process::Pid::from_child(&group.0);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            return true;
        }
        false
    });
    // The example's stdout, a line at a time; the watchdog's kill ends it.
    let stdout = group.0.stdout.take().unwrap();
    let (line_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv().expect("the example printed its address");
    let addr = first
        .strip_prefix("listening on http://")
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("first line {first:?}"))
        .to_owned();

    let (status, _, _) = http_get(&addr, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    let value =
        |samples: &[(String, f64)], name: &str| samples.iter().find(|(s, _)| s == name).unwrap().1;
    let mut scrapes = 0;
    let last = loop {
        let (status, headers, body) = http_get(&addr, "/metrics");
        scrapes += 1;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            headers.contains(&"content-type: text/plain; version=0.0.4; charset=utf-8".into()),
            "{headers:?}"
        );
        let samples = prefork_samples(&body);
        // The same series in the same order at every scrape, none above its final value.
        let names = |v: &[(String, f64)]| v.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        assert_eq!(names(&samples), names(&expected), "{body}");
        for ((series, got), (_, end)) in samples.iter().zip(&expected) {
            if series != "workers_running" {
                assert!(got <= end, "{series} {got} above its final {end}\n{body}");
            }
        }
        // A histogram is consistent at every scrape: cumulative buckets, +Inf = count.
        let buckets: Vec<f64> = samples[..6].iter().map(|(_, v)| *v).collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{body}");
        assert_eq!(
            buckets[5],
            value(&samples, "http_request_duration_seconds_count"),
            "{body}"
        );
        if value(&samples, "workers_running") == 0.0 {
            break samples;
        }
        // The workers were running: wait until they are done; the next scrape is final.
        assert_eq!(
            scrapes, 1,
            "a scrape after `workers done` shows workers_running 0"
        );
        assert_eq!(lines.recv().as_deref(), Ok("workers done"));
    };
    // The final scrape: every request counted, the histogram's count and sum exact.
    assert_eq!(last, expected);

    // The parent exits after the final scrape, successfully.
    let status = group.0.wait().unwrap();
    let _ = done_tx.send(());
    assert!(
        !watchdog.join().unwrap(),
        "example prefork_metrics ran over {limit:?} and was killed"
    );
    assert!(status.success(), "{status:?}");
}

#[test]
fn manager_dict_example_prints_the_python_programs_dict_and_list() {
    let out = run("manager_dict", Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Python prints `{1: '1', '2': 2, 0.25: None}`: the same entries; a hash map has no
    // insertion order, so the example sorts them by key.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{'2': 2, 0.25: None, 1: '1'}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
    );
}
