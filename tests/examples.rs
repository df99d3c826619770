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
"#;
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
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
