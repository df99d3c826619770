//! `shmstate inspect --watch`, run as users run it: in a terminal (tmux) and piped, while
//! other processes write the region.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use shmstate::{Barrier, Counter, Region, SeqLockArray};

use common::{KillOnDrop, TempRegion, tool};

/// How long any one wait of these tests may take before it fails (generous: a loaded
/// 2-core machine).
const DEADLINE: Duration = Duration::from_secs(60);

/// `shmstate inspect PATH ARGS` (the file first, so that a bare `--watch` takes no
/// value from it) with its stdout's lines sent to the returned channel (a
/// reader thread, so that the test can wait for a line with a deadline).
fn watch(args: &[&str], path: &Path) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmstate"))
        .arg("inspect")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmstate");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// The next line, or a failure after [`DEADLINE`].
fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(DEADLINE)
        .expect("no output from shmstate inspect --watch")
}

/// Waits (polling, up to [`DEADLINE`]) for `child` to exit.
fn wait_exit(child: &mut KillOnDrop) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < DEADLINE, "shmstate did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn object<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no object {name} in {doc}"))
}

#[test]
fn watch_json_lines_carry_rates_and_consistent_stripes_while_a_writer_writes() {
    let tmp = TempRegion::new("json");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    let hits = region.get_or_default::<Counter>("hits").unwrap();
    // 128 `u64`s: four stripes of 32.
    let arr = region
        .get_or_default_slice::<SeqLockArray<u64>>("arr", 128)
        .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The writer: whole-array writes of one value, thousands a second, for as long
        // as the test reads; every stable copy of a stripe holds one value 32 times. The
        // pause paces it (it is no synchronisation): a writer rewriting every stripe
        // back to back on its own core leaves inspect's bounded tries no stable copy
        // for long stretches, and the test needs two stable copies of stripe 0.
        s.spawn(|| {
            let mut k = 0u64;
            while !stop.load(StdOrdering::Relaxed) {
                k += 1;
                arr.set_all(&[k; 128]);
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let (mut child, rx) = watch(&["--watch", "0.05", "--json"], &tmp.0);
        let check = |doc: &Json| {
            assert_eq!(doc["schema_version"], 1, "{doc}");
            assert_eq!(doc["interval"], 0.05, "{doc}");
            assert!(doc["time"].as_f64().unwrap() > 1.6e9, "{doc}");
            let a = object(doc, "arr");
            let values = a["values"].as_array().unwrap();
            assert_eq!(values.len(), 128, "{a}");
            let l = a["stripe_len"].as_u64().unwrap() as usize;
            assert_eq!(l, SeqLockArray::<u64>::STRIPE_LEN, "{a}");
            for (k, st) in a["stripe_states"].as_array().unwrap().iter().enumerate() {
                let stripe = &values[l * k..(l * (k + 1)).min(values.len())];
                if st["consistent"] == true {
                    assert!(
                        stripe.iter().all(|v| v.is_u64() && *v == stripe[0]),
                        "a torn copy of stripe {k}: {a}"
                    );
                } else {
                    assert!(stripe.iter().all(Json::is_null), "{a}");
                }
                assert!(
                    matches!(st["seqlock"].as_str(), Some("idle" | "writing")),
                    "{st}"
                );
            }
            assert_eq!(a["unhealthy"], false);
        };
        let first: Json = serde_json::from_str(&next_line(&rx)).unwrap();
        check(&first);
        assert!(
            object(&first, "hits")["rate"].is_null(),
            "no rate in the first frame"
        );
        assert!(
            object(&first, "arr").get("rate").is_none(),
            "no number, no rate"
        );
        // Count, then wait for a frame that saw it: its rate is positive. Read at
        // least 10 frames, and until the writer's value changed between two of them.
        hits.add(1000);
        let (mut frames, mut rated, mut seen) = (1, false, Vec::new());
        while frames < 10 || !rated || seen.len() < 2 {
            let doc: Json = serde_json::from_str(&next_line(&rx)).unwrap();
            check(&doc);
            frames += 1;
            let h = object(&doc, "hits");
            let rate = h["rate"].as_f64().expect("a rate from the second frame on");
            if h["value"] == 1000 {
                rated |= rate > 0.0;
            } else {
                assert_eq!((h["value"].clone(), rate), (0.into(), 0.0), "{h}");
            }
            let v = object(&doc, "arr")["values"][0].clone();
            if v.is_u64() && !seen.contains(&v) {
                seen.push(v);
            }
        }
        stop.store(true, StdOrdering::Relaxed);
        drop(rx);
        let _ = child.0.kill();
    });
}

#[test]
fn watch_stops_when_the_file_is_removed_and_on_sigint() {
    let tmp = TempRegion::new("removed");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    region.get_or_default::<Counter>("hits").unwrap().add(1);
    drop(region);

    // Piped (not a terminal): frames follow each other, each headed by the interval.
    let (mut child, rx) = watch(&["--watch", "0.05"], &tmp.0);
    assert!(next_line(&rx).starts_with("every 0.05s, "));
    std::fs::remove_file(&tmp.0).unwrap();
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the region file was removed; stopped watching"),
        "{stderr}"
    );

    // Ctrl-C: SIGINT's default action ends it.
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    region.get_or_default::<Counter>("hits").unwrap();
    let (mut child, rx) = watch(&["--watch"], &tmp.0);
    assert!(next_line(&rx).starts_with("every 1s, "));
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    assert_eq!(wait_exit(&mut child).signal(), Some(2));
}

/// The counting process of `watch_redraws_in_tmux_while_another_process_counts`: adds 1
/// to `hits` every millisecond until killed (or for 2 minutes). Does nothing when run as
/// an ordinary test.
#[test]
fn counter_child() {
    let Ok(path) = std::env::var("SHMSTATE_WATCH_COUNTER") else {
        return;
    };
    let region = Region::open(&path).unwrap();
    let hits = region.get::<Counter>("hits").unwrap();
    let start = Instant::now();
    // Paced, not synchronising: a steady count without spinning a core.
    while start.elapsed() < Duration::from_secs(120) {
        hits.add(1);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A tmux server on a socket of its own, killed on drop.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The value and rate columns of `hits`'s row in a screen capture.
fn hits_row(screen: &str) -> Option<(u64, Option<f64>)> {
    let row = screen.lines().find(|l| l.starts_with("hits "))?;
    // name, type, len, offset, size, state, creator, value, [rate]
    let cols: Vec<&str> = row.split_whitespace().collect();
    let value = cols.get(7)?.parse().ok()?;
    let rate = cols
        .get(8)
        .and_then(|r| r.strip_prefix('[')?.strip_suffix("/s]")?.parse().ok());
    Some((value, rate))
}

#[test]
fn watch_redraws_in_tmux_while_another_process_counts() {
    if !tool("tmux", "tmux") {
        return;
    }
    let tmp = TempRegion::new("tmux");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    region.get_or_default::<Counter>("hits").unwrap();
    region.get_or_default::<Counter>("other").unwrap();
    // A broken barrier: highlighted (bold red on a terminal).
    let gate = region.get_or_default::<Barrier>("gate").unwrap();
    gate.init(2);
    gate.abort();
    let tmux = Tmux(format!("shmstate-watch-{}", std::process::id()));
    // A detached session running the watch in a 160x24 terminal; the command's
    // arguments are passed as they are (tmux runs a multi-argument command without a
    // shell).
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "160",
        "-y",
        "24",
        env!("CARGO_BIN_EXE_shmstate"),
        "inspect",
        "--watch",
        "0.2",
        tmp.0.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "tmux: {out:?}");
    let _counter = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["counter_child", "--exact", "--nocapture"])
            .env("SHMSTATE_WATCH_COUNTER", &tmp.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Poll the screen until it shows two different values of the counter and a
    // non-zero rate, or the deadline passes.
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut rated = None;
    let mut screen = String::new();
    while start.elapsed() < DEADLINE {
        let cap = tmux.run(&["capture-pane", "-p", "-t", "watch"]);
        screen = String::from_utf8_lossy(&cap.stdout).into_owned();
        if let Some((value, rate)) = hits_row(&screen) {
            if !seen.contains(&value) {
                seen.push(value);
            }
            if let Some(r) = rate.filter(|&r| r > 0.0) {
                rated = Some(r);
            }
        }
        if seen.len() >= 2 && rated.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen.len() >= 2 && rated.is_some(),
        "values {seen:?}, rate {rated:?}; the last screen:\n{screen}"
    );
    // Redrawn in place: one header, one row per object, not a scroll of frames.
    assert!(screen.starts_with("every 0.2s, "), "{screen}");
    assert_eq!(screen.matches("every 0.2s").count(), 1, "{screen}");
    assert_eq!(
        screen.lines().filter(|l| l.starts_with("hits ")).count(),
        1,
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.starts_with("other ")), "{screen}");
}

/// The graphic renditions (SGR parameters: 1 bold, 31 red, ...) in force at the start of
/// `text` in `row`, a line of `tmux capture-pane -e` (which writes the attributes as
/// tmux keeps them, e.g. `ESC[1m ESC[31m` for the program's `ESC[1;31m`); a 0 (or an
/// empty list) resets them.
fn rendition_at(row: &str, text: &str) -> Vec<u32> {
    let before = &row[..row
        .find(text)
        .unwrap_or_else(|| panic!("no {text:?} in {row:?}"))];
    let mut on = Vec::new();
    for seq in before.split('\x1b').skip(1) {
        let Some(params) = seq.strip_prefix('[').and_then(|p| p.split_once('m')) else {
            continue;
        };
        for p in params.0.split(';') {
            match p.parse::<u32>().unwrap_or(0) {
                0 => on.clear(),
                n => on.push(n),
            }
        }
    }
    on
}

/// `line` without its escape sequences (`ESC [ params letter`).
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        let seq = &rest[at + 1..];
        let end = seq
            .strip_prefix('[')
            .and_then(|p| p.find(|c: char| c.is_ascii_alphabetic()).map(|i| i + 2))
            .unwrap_or(0);
        rest = &seq[end..];
    }
    out.push_str(rest);
    out
}

/// On a terminal, an unhealthy object's value is bold red, and `inspect` exits with
/// code 3; a healthy one is plain.
#[test]
fn inspect_highlights_an_unhealthy_row_in_bold_red_on_a_terminal() {
    if !tool("tmux", "tmux") {
        return;
    }
    let tmp = TempRegion::new("tmux-color");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    region.get_or_default::<Counter>("hits").unwrap().add(7);
    let gate = region.get_or_default::<Barrier>("gate").unwrap();
    gate.init(2);
    gate.abort();
    let tmux = Tmux(format!("shmstate-color-{}", std::process::id()));
    // One `inspect` in a 160x24 terminal, then its exit code; `cat` keeps the pane open
    // (reading the terminal) until the server is killed.
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "color",
        "-x",
        "160",
        "-y",
        "24",
        "sh",
        "-c",
        r#""$0" inspect "$1"; echo "exit $?"; exec cat"#,
        env!("CARGO_BIN_EXE_shmstate"),
        tmp.0.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "tmux: {out:?}");
    let start = Instant::now();
    let mut screen = String::new();
    while start.elapsed() < DEADLINE {
        let cap = tmux.run(&["capture-pane", "-e", "-p", "-t", "color"]);
        screen = String::from_utf8_lossy(&cap.stdout).into_owned();
        if screen.lines().any(|l| plain(l).starts_with("exit ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(screen.lines().any(|l| plain(l) == "exit 3"), "{screen:?}");
    let row = |name: &str| {
        screen
            .lines()
            .find(|l| plain(l).starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}: {screen:?}"))
    };
    let gate = rendition_at(row("gate"), "0 of 2 arrived, broken");
    assert!(
        gate.contains(&1) && gate.contains(&31),
        "gate is not bold red ({gate:?}): {:?}",
        row("gate")
    );
    assert!(!row("gate").contains("!!"), "{screen:?}");
    let hits = row("hits");
    assert!(!hits.contains('\x1b'), "hits is highlighted: {hits:?}");
}

/// The attached process of `watch_redraws_the_attached_processes`: opens the region, says
/// so, and waits to be killed (or for stdin to close). Does nothing when run as an
/// ordinary test.
#[test]
fn attached_child() {
    let Ok(path) = std::env::var("SHMSTATE_WATCH_ATTACHED") else {
        return;
    };
    let region = Region::open(&path).unwrap();
    println!("attached");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(region);
}

#[test]
fn watch_redraws_the_attached_processes() {
    let tmp = TempRegion::new("attached");
    drop(Region::create(&tmp.0, 1 << 16).unwrap());
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["attached_child", "--exact", "--nocapture"])
            .env("SHMSTATE_WATCH_ATTACHED", &tmp.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // Bounded: the child opens the region (no wait) and says so, or exits (EOF).
    let ready = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .any(|l| l.is_ok_and(|l| l.trim() == "attached"));
    assert!(ready, "the child did not open the region");

    let (mut json, rx) = watch(&["--watch", "0.05", "--json"], &tmp.0);
    let alive = |doc: &Json| -> Option<bool> {
        let list = doc["attached"].as_array().unwrap();
        let p = list.iter().find(|p| p["pid"] == pid)?;
        p["alive"].as_bool()
    };
    let first: Json = serde_json::from_str(&next_line(&rx)).unwrap();
    assert_eq!(alive(&first), Some(true), "{first}");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Every frame lists the child (its word stays: a read-only view prunes nothing),
    // alive until the kill, then dead in every later frame, with exit status 0 meanwhile.
    let mut dead = false;
    while !dead {
        let doc: Json = serde_json::from_str(&next_line(&rx)).unwrap();
        match alive(&doc) {
            Some(true) => {}
            Some(false) => dead = true,
            None => panic!("the child vanished from the table: {doc}"),
        }
        assert_eq!(doc["unhealthy"], false, "{doc}");
    }
    drop(rx);
    let _ = json.0.kill();

    // The table: the attached line of the first frame shows it dead.
    let (mut text, rx) = watch(&["--watch", "0.05"], &tmp.0);
    assert!(next_line(&rx).starts_with("every 0.05s, "));
    let _heading = next_line(&rx);
    let line = next_line(&rx);
    assert_eq!(line, format!("attached: {pid} (dead)"));
    drop(rx);
    let _ = text.0.kill();
}
