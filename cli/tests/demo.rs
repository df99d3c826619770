//! The `shmstate demo` command, run as users run it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{KillOnDrop, kill};

/// Runs the binary, killing it (and failing the test) if it runs longer than a minute:
/// a hung worker must fail the test, not hang CI.
fn shmstate(args: &[&str]) -> Output {
    run(args).1
}

/// Like [`shmstate`], and also returns the pid the binary ran as.
fn run(args: &[&str]) -> (u32, Output) {
    let child = start(args);
    let pid = child.id();
    let watchdog = Watchdog::new(pid);
    let out = child.wait_with_output().expect("wait for shmstate");
    assert!(
        !watchdog.finish(),
        "shmstate {args:?} ran over 60 s and was killed"
    );
    (pid, out)
}

/// Starts the binary with its output piped.
fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shmstate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmstate")
}

/// SIGKILLs process `pid` if [`finish`](Watchdog::finish) is not called within 60 s.
/// Killing the demo makes a wait for it return; its workers are SIGKILLed with it (the
/// demo starts them with `PR_SET_PDEATHSIG`).
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    fn new(pid: u32) -> Watchdog {
        let (done, done_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                kill(pid);
                return true;
            }
            false
        });
        Watchdog { done, thread }
    }

    /// Stops the watchdog; returns whether it fired.
    fn finish(self) -> bool {
        let _ = self.done.send(());
        self.thread.join().unwrap()
    }
}

/// Pulls `"key": value` for each result object out of the demo's JSON line (the format is
/// fixed by the demo's documentation, so a small scanner is enough).
fn results(json: &str) -> Vec<(String, u64, u64, u64, f64)> {
    let field = |obj: &str, key: &str| -> String {
        let start = obj.find(&format!("\"{key}\": ")).expect(key) + key.len() + 4;
        obj[start..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    let list = &json[json.find("\"results\": [").expect("results") + 12..];
    list.split("}, {")
        .map(|obj| {
            (
                field(obj, "path"),
                field(obj, "expected").parse().unwrap(),
                field(obj, "final").parse().unwrap(),
                field(obj, "lost").parse().unwrap(),
                field(obj, "seconds").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn demo_json_reports_every_path_and_exact_paths_are_exact() {
    let out = shmstate(&[
        "demo",
        "--processes",
        "3",
        "--increments",
        "20000",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("{\"processes\": 3, \"increments\": 20000, \"results\": ["));
    assert!(
        text.ends_with("}]}\n") && text.lines().count() == 1,
        "one JSON object on one line:\n{text}"
    );
    let rows = results(&text);
    let paths: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(paths, ["naive", "locked", "atomic", "striped"]);
    for (path, expected, final_, lost, seconds) in &rows {
        assert_eq!(*expected, 60_000, "{path}");
        assert_eq!(*lost, expected - final_, "{path}");
        assert!(*seconds >= 0.0);
        if path != "naive" {
            assert_eq!(*final_, 60_000, "{path} must be exact");
        } else {
            assert!(*final_ <= 60_000);
        }
    }
}

#[test]
fn demo_table_has_a_row_per_path_and_a_conclusion() {
    let out = shmstate(&["demo", "-p", "2", "-n", "10000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for path in ["naive", "locked", "atomic", "striped"] {
        assert!(
            text.lines().any(|l| l.starts_with(path)),
            "no row for {path}:\n{text}"
        );
    }
    assert!(text.contains("were exact"), "{text}");
}

/// A fresh, empty directory for one test's region files. A failed earlier run with the
/// same pid (pids are reused) may have left a region there, possibly a broken one: it is
/// removed first, as the tests assume they start empty.
fn empty_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shmstate-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_uses_and_keeps_a_region_file_given_by_path() {
    let dir = empty_dir("test");
    let path = dir.join("demo.region");
    let p = path.to_str().unwrap();
    for _ in 0..2 {
        // The second run reuses the objects the first one made, after resetting them.
        let out = shmstate(&["demo", "-p", "2", "-n", "5000", "--json", "--path", p]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = results(&String::from_utf8(out.stdout).unwrap());
        assert!(
            rows.iter()
                .filter(|r| r.0 != "naive")
                .all(|r| r.2 == 10_000)
        );
    }
    assert!(path.exists());
    let listing = shmstate(&["inspect", p]);
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains("demo.atomic"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the demo's workers wrote is what `inspect --json` reads: each path's object
/// (a `Value<u64>`, a `Mutex<u64>`'s protected value, a `StripedCounter`'s sum) equals
/// that path's final count in the demo's own JSON, and nothing is unhealthy.
#[test]
fn inspect_json_shows_the_counts_the_demo_reported() {
    let dir = empty_dir("roundtrip");
    let path = dir.join("demo.region");
    let p = path.to_str().unwrap();
    let out = shmstate(&["demo", "-p", "2", "-n", "5000", "--json", "--path", p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = results(&String::from_utf8(out.stdout).unwrap());
    let listing = shmstate(&["inspect", "--json", p]);
    assert_eq!(
        listing.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let objects = doc["objects"].as_array().unwrap();
    let mut checked = Vec::new();
    for (which, _, final_, _, _) in &rows {
        let name = format!("demo.{which}");
        let o = objects
            .iter()
            .find(|o| o["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no object {name} in {doc}"));
        assert_eq!(o["value"], *final_, "{name}: {o}");
        assert_eq!(o["unhealthy"], false, "{name}: {o}");
        checked.push(o["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        checked,
        ["Value<u64>", "Mutex<u64>", "Value<u64>", "StripedCounter"],
        "naive, locked, atomic, striped"
    );
    assert_eq!(doc["unhealthy"], false);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_with_code_2_and_a_message() {
    for args in [
        &["demo", "--processes", "0"][..],
        &["demo", "--increments", "0"][..],
        &["demo", "--path", "/nonexistent-dir-for-shmstate/region"][..],
        &["demo", "--bogus"][..],
    ] {
        let out = shmstate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?} printed no message");
    }
    let out = shmstate(&["demo", "--path", "/nonexistent-dir-for-shmstate/region"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// Names come from shared memory: one holding a newline and a terminal escape sequence is
/// printed escaped, on its own row, without the raw control bytes.
#[test]
fn inspect_escapes_control_characters_in_names() {
    let dir = empty_dir("inspect");
    let path = dir.join("names.region");
    let region = shmstate::Region::create(&path, 1 << 16).unwrap();
    region
        .get_or_default::<shmstate::Counter>("evil\n\x1b[2Jrow")
        .unwrap();
    let out = shmstate(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "raw escape printed: {text:?}");
    assert_eq!(
        text.lines().count(),
        5,
        "summary, attached processes, space, header, one row: {text:?}"
    );
    assert!(text.contains(r"evil\n\u{1b}[2Jrow"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--help` lists the subcommands, and `demo --help` every flag of the demo with the
/// defaults it promises: 4 processes, 1,000,000 increments each.
#[test]
fn help_lists_the_subcommands_and_the_demo_defaults() {
    let out = shmstate(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["demo", "inspect"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "no {command} in:\n{text}"
        );
    }
    assert!(
        !text.contains("demo-worker"),
        "the worker is hidden:\n{text}"
    );

    let out = shmstate(&["demo", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |flag: &str| {
        text.lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("no {flag} in:\n{text}"))
            .to_owned()
    };
    assert!(line("--processes").contains("[default: 4]"), "{text}");
    assert!(
        line("--increments").contains("[default: 1000000]"),
        "{text}"
    );
    line("--path");
    line("--json");
}

/// What `dir` holds named `shmstate-demo*` with `pid` as one of its `-`/`.`-separated
/// fields (the old default region was `/dev/shm/shmstate-demo-<pid>-<nanoseconds>`).
fn leftovers(dir: &std::path::Path, pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let pid = pid.to_string();
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shmstate-demo") && n.split(['-', '.']).any(|f| f == pid))
        .collect()
}

/// The directories a default region could be left in: /dev/shm and the temp dir.
fn region_dirs() -> [PathBuf; 2] {
    [PathBuf::from("/dev/shm"), std::env::temp_dir()]
}

/// The children the demo's main thread started (`/proc/PID/task/PID/children`, or a
/// scan of every process's parent where the kernel lacks that file).
fn children_of(pid: u32) -> Vec<u32> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // `pid (comm) state ppid ...`: comm may hold spaces, so split after the ')'.
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
        })
        .collect()
}

/// Whether `pid` is (still) a running demo worker: its command line names `demo-worker`
/// (a zombie's is empty, and an ended one has none).
fn is_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"demo-worker"))
}

/// What process `pid`'s descriptors point at.
fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

/// A default run (no `--path`) leaves no region file behind.
#[test]
fn a_default_run_leaves_no_region_file() {
    let (pid, out) = run(&["demo", "-p", "2", "-n", "1000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in region_dirs() {
        let left = leftovers(&dir, pid);
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}

/// Without `--path` the region is a memfd that the workers hold, not a file: a demo
/// SIGKILLed mid-run (no destructor, no signal handler runs) leaves nothing named
/// `shmstate-demo*` after its pid in /dev/shm or the temp dir, and its workers end too.
#[test]
fn a_demo_killed_mid_run_leaves_no_file_and_no_workers() {
    // Enough increments that the demo is still running when it is killed.
    let mut demo = KillOnDrop(start(&["demo", "-p", "2", "-n", "1000000000000"]));
    let pid = demo.0.id();
    let watchdog = Watchdog::new(pid);
    // Wait (polling /proc, bounded by the watchdog) until both workers have started.
    let workers = loop {
        let workers: Vec<u32> = children_of(pid)
            .into_iter()
            .filter(|&c| is_worker(c))
            .collect();
        if workers.len() == 2 {
            break workers;
        }
        if let Ok(Some(status)) = demo.0.try_wait() {
            panic!("the demo ended ({status}) before its workers started");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // What the workers hold, read while they run.
    let held: Vec<Vec<String>> = workers.iter().map(|&w| fd_targets(w)).collect();

    let _ = demo.0.kill();
    let status = demo.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the demo was still running when killed: {status}"
    );
    for dir in region_dirs() {
        let left = leftovers(&dir, pid);
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
    for fds in &held {
        assert!(
            fds.iter().any(|t| t.starts_with("/memfd:shmstate-demo ")),
            "a worker holds no memfd region: {fds:?}"
        );
        assert!(
            !fds.iter().any(|t| t.contains("shmstate-demo-")),
            "a worker holds a region file: {fds:?}"
        );
    }
    // The workers are SIGKILLed with the demo (they would otherwise increment on, and
    // keep the memfd's memory, for hours); poll until they are gone, under the watchdog.
    assert!(!watchdog.finish(), "the demo ran over 60 s and was killed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while workers.iter().any(|&w| is_worker(w)) {
        if Instant::now() > deadline {
            workers.iter().for_each(|&w| kill(w));
            panic!("the workers outlived the demo by 60 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The hidden worker takes only a descriptor it may own: stdio is a usage error (exit 2),
/// a number that is not open a runtime error (exit 1), and `--path` with `--fd` is refused.
#[test]
fn the_worker_refuses_stdio_or_a_closed_descriptor_as_its_region() {
    let worker = |extra: &[&str]| {
        let mut args = vec!["demo-worker", "--which", "naive", "--increments", "1"];
        args.extend_from_slice(extra);
        shmstate(&args)
    };
    for extra in [
        &["--fd", "1"][..],
        &["--fd", "5", "--path", "x"][..],
        &[][..],
    ] {
        assert_eq!(worker(extra).status.code(), Some(2), "{extra:?}");
    }
    let out = worker(&["--fd", "1000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--fd 1000000 is not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
