//! The `shmstate demo` command, run as users run it.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs the binary, killing it (and failing the test) if it runs longer than a minute:
/// a hung worker must fail the test, not hang CI.
fn shmstate(args: &[&str]) -> Output {
    run(args).1
}

/// Like [`shmstate`], and also returns the pid the binary ran as.
fn run(args: &[&str]) -> (u32, Output) {
    let child = Command::new(env!("CARGO_BIN_EXE_shmstate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmstate");
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // Killing the demo makes `wait_with_output` return; its workers give up on
            // their own once the demo is gone (they time out waiting to start, or finish).
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return true;
        }
        false
    });
    let out = child.wait_with_output().expect("wait for shmstate");
    let _ = done_tx.send(());
    assert!(
        !watchdog.join().unwrap(),
        "shmstate {args:?} ran over 60 s and was killed"
    );
    (pid, out)
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

#[test]
fn demo_uses_and_keeps_a_region_file_given_by_path() {
    let dir = std::env::temp_dir().join(format!("shmstate-cli-test-{}", std::process::id()));
    // A failed earlier run with the same pid (pids are reused) may have left a region
    // here, possibly a broken one: start empty, as the first run below assumes.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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
    let dir = std::env::temp_dir().join(format!("shmstate-cli-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("names.region");
    let region = shmstate::Region::create(&path, 1 << 16).unwrap();
    region
        .get_or_init::<shmstate::Counter>("evil\n\x1b[2Jrow", 1, |_| {})
        .unwrap();
    let out = shmstate(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "raw escape printed: {text:?}");
    assert_eq!(
        text.lines().count(),
        3,
        "summary, header, one row: {text:?}"
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

/// Without `--path` the demo works in a private temporary region, named
/// `shmstate-demo-<its pid>-<nanoseconds>` in /dev/shm (or the temporary directory; the
/// name is pinned by a unit test of the binary), and removes it when it is done.
#[test]
fn the_default_temporary_region_is_removed_afterwards() {
    let (pid, out) = run(&["demo", "-p", "2", "-n", "1000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("shmstate-demo-{pid}-");
    for dir in [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let left: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}
