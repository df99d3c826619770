//! `shmstate inspect`, run as users run it, on regions that real processes wrote.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value as Json;
use shmstate::sync::Ordering::Relaxed;
use shmstate::{
    Barrier, BoundedSemaphore, ChannelOptions, Counter, Event, Kind, MapOptions, Mutex, Queue,
    ReentrantMutex, Region, RegionOptions, RwLock, Semaphore, SeqLock, SeqLockArray, Shared,
    SharedSized, StripedCounter, Value, ValueArray,
};

use common::{KillOnDrop, TempRegion, shmstate};

/// `shmstate inspect --json PATH`: the exit code and the parsed document.
fn inspect_json(path: &Path) -> (i32, Json) {
    inspect_json_with(path, &[])
}

/// `shmstate inspect --json EXTRA.. PATH`: the exit code and the parsed document.
fn inspect_json_with(path: &Path, extra: &[&str]) -> (i32, Json) {
    let mut args = vec!["inspect", "--json"];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    let out = shmstate(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(doc["schema_version"], 1);
    (out.status.code().expect("exited"), doc)
}

fn object<'a>(doc: &'a Json, name: &str) -> &'a Json {
    doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no object {name} in {doc}"))
}

/// One object of every kind `inspect` reads, with known values.
fn populate(region: &Region) {
    region.get_or_default::<Counter>("hits").unwrap().add(42);
    region
        .get_or_default::<Value<u64>>("big")
        .unwrap()
        .store(u64::MAX - 1, Relaxed);
    region
        .get_or_default::<Value<f64>>("temp")
        .unwrap()
        .store(21.5, Relaxed);
    region
        .get_or_default::<Value<i16>>("small")
        .unwrap()
        .store(-3, Relaxed);
    region
        .get_or_default::<Value<bool>>("flag")
        .unwrap()
        .store(true, Relaxed);
    let s = region
        .get_or_default_slice::<StripedCounter>("requests", 4)
        .unwrap();
    s.add(10);
    s.add(5);
    let a = region
        .get_or_default_slice::<ValueArray<u32>>("array", 20)
        .unwrap();
    for (i, v) in a.iter().enumerate() {
        v.store(i as u32 * 3, Relaxed);
    }
    *region
        .get_or_default::<Mutex<u64>>("mutex")
        .unwrap()
        .lock()
        .unwrap() = 11;
    *region
        .get_or_default::<RwLock<u64>>("rwlock")
        .unwrap()
        .write()
        .unwrap() = 12;
    region
        .get_or_default::<ReentrantMutex<Value<u64>>>("rmutex")
        .unwrap()
        .lock()
        .unwrap()
        .store(13, Relaxed);
    region
        .get_or_default::<SeqLock<u64>>("seq")
        .unwrap()
        .write(7);
    region
        .get_or_init("sem", |s: &Semaphore| s.release_n(3).unwrap())
        .unwrap();
    region.get_or_default::<BoundedSemaphore>("bsem").unwrap();
    region.get_or_default::<Event>("event").unwrap().set();
    region.get_or_default::<Barrier>("barrier").unwrap();
    let q = region.get_or_default::<Queue<u32, 5>>("queue").unwrap();
    q.push(1);
    q.push(2);
    // 40 `u64`s: stripes of 32 elements, so two stripes, the second one short.
    let samples: Vec<u64> = (0..40).map(|i| i * 2).collect();
    region
        .get_or_init_slice("samples", 40, |a: &SeqLockArray<u64>| a.set_all(&samples))
        .unwrap();
    // 40 `f64`s: two stripes, as `samples`.
    let temps: Vec<f64> = (0..40).map(|i| f64::from(i) + 0.5).collect();
    region
        .get_or_init_slice("temps", 40, |a: &SeqLockArray<f64>| a.set_all(&temps))
        .unwrap();
    let h = region.histogram("latency", &HIST_BOUNDS).unwrap();
    for v in HIST_VALUES {
        h.observe(v);
    }
    let jobs = region
        .channel("jobs", ChannelOptions::new(1024).max_message(100))
        .unwrap();
    jobs.send(b"resize 1.png").unwrap();
    jobs.send(b"resize 2.png").unwrap();
    let done = region.channel("done", ChannelOptions::new(256)).unwrap();
    done.close();
    // A close begun and not yet final (its closer stopped after storing `closed`: the
    // config line's third word).
    let closing = region.channel("closing", ChannelOptions::new(256)).unwrap();
    closing.hostile_words().0[2].store(1, shmstate::sync::Ordering::Relaxed);
    let sessions = region
        .map("kv", MapOptions::new(16).key_max(16).value_max(8))
        .unwrap();
    for k in SESSION_KEYS {
        sessions.insert(k, b"1").unwrap();
    }
    // Expired at once: counted until a writer reclaims it, never listed.
    sessions
        .insert_ttl(b"expired", b"1", std::time::Duration::ZERO)
        .unwrap();
}

/// The live keys of `populate`'s map `kv` (one not UTF-8).
const SESSION_KEYS: [&[u8]; 3] = [b"alice", b"bob", &[0xFF, 0xFE]];

/// The bounds of `populate`'s histogram `latency`, and what it observes: sums of
/// multiples of 1/4, so the sum is exact whatever the stripes and their order.
const HIST_BOUNDS: [f64; 3] = [0.5, 1.0, 2.5];
const HIST_VALUES: [f64; 6] = [0.25, 0.5, 0.75, 2.0, 3.0, 10.0];

/// The table's line for `name` in `text`.
fn line(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name}: {text}"))
        .to_owned()
}

/// The lines after `name`'s row that belong to it (the indented `--verbose` details).
fn details(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with(&format!("{name} ")))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn inspect_json_shows_the_values_a_program_wrote() {
    let tmp = TempRegion::new("values");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(object(&doc, "hits")["value"], 42);
    assert_eq!(object(&doc, "big")["value"], u64::MAX - 1);
    assert_eq!(object(&doc, "temp")["value"], 21.5);
    assert_eq!(object(&doc, "small")["value"], -3);
    assert_eq!(object(&doc, "flag")["value"], true);
    assert_eq!(object(&doc, "requests")["value"], 15);
    let arr = object(&doc, "array");
    assert_eq!(arr["len"], 20);
    assert_eq!(arr["truncated"], true);
    let shown: Vec<u64> = arr["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(shown, [0, 3, 6, 9, 12, 15, 18, 21]);
    assert_eq!(object(&doc, "mutex")["lock"], "free");
    assert_eq!(object(&doc, "mutex")["value"], 11);
    assert_eq!(object(&doc, "rwlock")["lock"], "free");
    assert_eq!(object(&doc, "rwlock")["value"], 12);
    assert_eq!(object(&doc, "rmutex")["lock"], "free");
    assert_eq!(object(&doc, "rmutex")["value"], 13);
    assert_eq!(object(&doc, "seq")["seqlock"], "idle");
    assert_eq!(object(&doc, "seq")["value"], 7);
    assert_eq!(object(&doc, "sem")["permits"], 3);
    assert_eq!(object(&doc, "event")["set"], true);
    assert_eq!(object(&doc, "barrier")["broken"], false);
    let q = object(&doc, "queue");
    assert_eq!(
        (q["length"].clone(), q["capacity"].clone()),
        (2.into(), 5.into()),
        "{q}"
    );
    assert_eq!(q["lock"], "free");
    let jobs = object(&doc, "jobs");
    assert_eq!(jobs["waiting"], 2, "{jobs}");
    // Two records of 8 bytes of header and 12 of payload padded to 16.
    assert_eq!(jobs["bytes_used"], 48, "{jobs}");
    assert_eq!(jobs["capacity"], 1024, "{jobs}");
    assert_eq!(jobs["max_message"], 100, "{jobs}");
    assert_eq!(jobs["closed"], false, "{jobs}");
    assert_eq!(jobs["close_final"], false, "{jobs}");
    assert_eq!(object(&doc, "done")["closed"], true);
    assert_eq!(object(&doc, "done")["close_final"], true);
    assert_eq!(object(&doc, "closing")["closed"], true);
    assert_eq!(object(&doc, "closing")["close_final"], false);
    let kv = object(&doc, "kv");
    assert_eq!(kv["len"], 4, "{kv}");
    assert_eq!(kv["capacity"], 16, "{kv}");
    assert_eq!(kv["load"], 0.25, "{kv}");
    assert_eq!(kv["key_max"], 16, "{kv}");
    assert_eq!(kv["value_max"], 8, "{kv}");
    // Exactly the live keys, in slot order: strings when UTF-8, else byte arrays.
    let mut keys = kv["keys"].as_array().unwrap().clone();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(
        Json::Array(keys),
        serde_json::json!(["alice", "bob", [255, 254]]),
        "{kv}"
    );
    for o in doc["objects"].as_array().unwrap() {
        assert_eq!(o["readable"], true, "{o}");
        assert_eq!(o["unhealthy"], false, "{o}");
    }
    // The table shows the same values.
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| line(&text, name);
    assert!(line("hits").ends_with(" 42"), "{text}");
    assert!(line("requests").contains("15 (sum of 4 stripes)"), "{text}");
    assert!(line("mutex").ends_with("  11; free"), "{text}");
    assert!(
        line("jobs").ends_with("2 waiting, 48 of 1024 bytes used"),
        "{text}"
    );
    assert!(line("done").ends_with(", closed"), "{text}");
    assert!(
        line("closing").ends_with(", closing (not final yet)"),
        "{text}"
    );
    assert!(line("kv").ends_with("4 of 16 entries (25% load)"), "{text}");
    // Inspecting wrote nothing: the region opens and reads as before.
    assert_eq!(region.get::<Counter>("hits").unwrap().get(), 42);
}

#[test]
fn inspect_shows_the_value_a_lock_protects() {
    let tmp = TempRegion::new("lockvalues");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    // Data at offset 4 (narrow, in the lock word's neighbour), 8 (a `u64`-aligned one),
    // 64 (after an `RwLock`'s slots) and 8 (after a `ReentrantMutex`'s depth).
    *region
        .get_or_default::<Mutex<u8>>("m8")
        .unwrap()
        .lock()
        .unwrap() = 200;
    let m32 = region.get_or_default::<Mutex<i32>>("m32").unwrap();
    *m32.lock().unwrap() = -5;
    *region
        .get_or_default::<Mutex<f64>>("mf")
        .unwrap()
        .lock()
        .unwrap() = 2.5;
    *region
        .get_or_default::<RwLock<i16>>("r16")
        .unwrap()
        .write()
        .unwrap() = -7;
    *region
        .get_or_default::<RwLock<u64>>("r64")
        .unwrap()
        .write()
        .unwrap() = u64::MAX;
    region
        .get_or_default::<ReentrantMutex<Value<f32>>>("rf")
        .unwrap()
        .lock()
        .unwrap()
        .store(1.25, Relaxed);
    region
        .get_or_default::<ReentrantMutex<Value<bool>>>("rb")
        .unwrap()
        .lock()
        .unwrap()
        .store(true, Relaxed);
    region
        .get_or_default::<ReentrantMutex<Counter>>("rc")
        .unwrap()
        .lock()
        .unwrap()
        .add(9);
    // Data that is not one primitive: the lock alone.
    *region
        .get_or_default::<Mutex<[u64; 2]>>("pair")
        .unwrap()
        .lock()
        .unwrap() = [1, 2];
    *region
        .get_or_default::<Mutex<[u32; 3]>>("triple")
        .unwrap()
        .lock()
        .unwrap() = [1, 2, 3];
    region
        .get_or_default::<ReentrantMutex<Stats>>("rpair")
        .unwrap();

    // One held by this (live) thread: its value is read all the same, without waiting.
    let guard = m32.lock().unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    let m = object(&doc, "m32");
    assert_eq!(
        (m["lock"].clone(), m["value"].clone()),
        ("held".into(), (-5).into()),
        "{m}"
    );
    drop(guard);
    for (name, value) in [
        ("m8", serde_json::json!(200)),
        ("mf", serde_json::json!(2.5)),
        ("r16", serde_json::json!(-7)),
        ("r64", serde_json::json!(u64::MAX)),
        ("rf", serde_json::json!(1.25)),
        ("rb", serde_json::json!(true)),
        ("rc", serde_json::json!(9)),
    ] {
        let o = object(&doc, name);
        assert_eq!(o["value"], value, "{o}");
        assert_eq!(o["lock"], "free", "{o}");
    }
    for name in ["pair", "triple", "rpair"] {
        let o = object(&doc, name);
        assert_eq!(
            (o["readable"].clone(), o["lock"].clone()),
            (true.into(), "free".into()),
            "{o}"
        );
        assert!(o.get("value").is_none(), "{o}");
    }
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(line(&text, "m8").ends_with("  200; free"), "{text}");
    assert!(line(&text, "r16").ends_with("  -7; free"), "{text}");
    assert!(line(&text, "pair").ends_with("  free"), "{text}");
    let out = shmstate(&["inspect", "--verbose", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        details(&text, "m8")
            .iter()
            .any(|d| d.trim() == "data bits 0xc8"),
        "{text}"
    );
}

/// A `BoundedSemaphore` shows its bound beside its permits.
#[test]
fn inspect_shows_a_bounded_semaphore_s_bound() {
    let tmp = TempRegion::new("bsem");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    let s = region
        .get_or_init("pool", |s: &BoundedSemaphore| s.init(7))
        .unwrap();
    assert!(s.try_acquire() && s.try_acquire());
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    let o = object(&doc, "pool");
    assert_eq!(
        (o["permits"].clone(), o["bound"].clone()),
        (5.into(), 7.into()),
        "{o}"
    );
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(line(&text, "pool").ends_with("  5 of 7 permits"), "{text}");
}

/// A user's shared struct, made with `#[derive(Shared)]`.
#[derive(Shared)]
#[repr(C)]
struct Stats {
    requests: Counter,
    errors: Counter,
    ratio: Value<f64>,
}

/// An object of a user's type is listed with its type tag and size, and shown as not
/// readable (`-`): `inspect` knows only the crate's own layouts.
#[test]
fn inspect_lists_a_user_struct_as_unreadable() {
    let tmp = TempRegion::new("record");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    let stats = region.get_or_default::<Stats>("stats").unwrap();
    stats.requests.add(3);
    region.get_or_default::<Counter>("hits").unwrap().add(1);
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    let o = object(&doc, "stats");
    let tag = <Stats as SharedSized>::TAG;
    assert_eq!(tag.kind, Kind::RECORD);
    assert_eq!(o["type"], tag.to_string(), "{o}");
    let size = size_of::<Stats>();
    let prefix = format!(
        "struct<record(code 101, size {size}, align {}, id 0x",
        align_of::<Stats>()
    );
    assert!(o["type"].as_str().unwrap().starts_with(&prefix), "{o}");
    assert_eq!(o["size"], size_of::<Stats>(), "{o}");
    assert_eq!(o["len"], 1, "{o}");
    assert_eq!(o["state"], "ready", "{o}");
    assert_eq!(
        (
            o["readable"].clone(),
            o["unhealthy"].clone(),
            o["summary"].clone()
        ),
        (false.into(), false.into(), "".into()),
        "{o}"
    );
    assert_eq!(object(&doc, "hits")["readable"], true);
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let row = line(&text, "stats");
    assert!(
        row.contains(&tag.to_string()) && row.ends_with("  -"),
        "{text}"
    );
}

/// The child half of `inspect_reports_live_then_dead_lock_holders`: locks the mutex,
/// write-locks the rwlock and the seqlock, says so, and waits to be killed. Does nothing when run as an ordinary test.
#[test]
fn holder_child() {
    let Ok(path) = std::env::var("SHMSTATE_INSPECT_HOLDER") else {
        return;
    };
    let region = Region::open(&path).unwrap();
    let m = region.get::<Mutex<u64>>("mutex").unwrap();
    std::mem::forget(m.lock().unwrap());
    let rw = region.get::<RwLock<u64>>("rwlock").unwrap();
    std::mem::forget(rw.write().unwrap());
    let seq = region.get::<SeqLock<u64>>("seq").unwrap();
    std::mem::forget(seq.lock().unwrap());
    let rm = region.get::<ReentrantMutex<Value<u64>>>("rmutex").unwrap();
    std::mem::forget(rm.lock().unwrap());
    std::mem::forget(rm.lock().unwrap());
    let rr = region.get::<RwLock<u64>>("rwread").unwrap();
    std::mem::forget(rr.read().unwrap());
    // The lock word names this thread (the test harness runs tests on their own threads),
    // whose TID `/proc/thread-self` links to as `PID/task/TID`.
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    let tid = link.file_name().unwrap().to_str().unwrap();
    println!("locked {tid}");
    // Wait for the parent's SIGKILL (or for the parent to go away: stdin closes).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn inspect_reports_live_then_dead_lock_holders() {
    let tmp = TempRegion::new("holder");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    // Read-locked by the child (the others are write-locked).
    *region
        .get_or_default::<RwLock<u64>>("rwread")
        .unwrap()
        .write()
        .unwrap() = 21;
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["holder_child", "--exact", "--nocapture"])
            .env("SHMSTATE_INSPECT_HOLDER", &tmp.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Bounded: the child locks a free mutex (no wait) and prints "locked TID", or exits
    // (EOF).
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let mut tid = None;
    for line in out.lines() {
        if let Some(t) = line.unwrap().trim().strip_prefix("locked ") {
            tid = Some(t.parse::<u32>().unwrap());
            break;
        }
    }
    let tid = tid.expect("the child did not lock the mutex");

    let (code, doc) = inspect_json(&tmp.0);
    let m = object(&doc, "mutex");
    assert_eq!(m["lock"], "held", "{m}");
    assert_eq!(m["holder"]["tid"], tid);
    assert_eq!(m["holder"]["alive"], true);
    assert!(m["holder"]["comm"].is_string(), "{m}");
    assert_eq!((code, m["unhealthy"].clone()), (0, Json::Bool(false)));
    let rw = object(&doc, "rwlock");
    assert_eq!(rw["lock"], "write", "{rw}");
    assert_eq!(
        (rw["holder"]["tid"].clone(), rw["holder"]["alive"].clone()),
        (tid.into(), true.into())
    );
    let seq = object(&doc, "seq");
    assert_eq!(seq["seqlock"], "writing", "{seq}");
    assert_eq!(seq["holder"]["tid"], tid);
    let rm = object(&doc, "rmutex");
    assert_eq!(
        (rm["lock"].clone(), rm["depth"].clone()),
        ("held".into(), 2.into()),
        "{rm}"
    );
    assert_eq!(rm["holder"]["tid"], tid);
    // A live reader of another process: listed with its TID, alive; the data readable.
    let rr = object(&doc, "rwread");
    assert_eq!(rr["lock"], "read", "{rr}");
    let readers = rr["readers"].as_array().unwrap();
    assert_eq!(readers.len(), 1, "{rr}");
    assert_eq!(
        (readers[0]["tid"].clone(), readers[0]["alive"].clone()),
        (tid.into(), true.into()),
        "{rr}"
    );
    assert!(readers[0]["comm"].is_string(), "{rr}");
    let slots = rr["reader_slots"].as_array().unwrap();
    assert_eq!(
        slots
            .iter()
            .filter(|t| t.as_u64().unwrap() & 0x3F_FFFF == u64::from(tid))
            .count(),
        1,
        "one slot names the reader (its TID, its stamp above): {rr}"
    );
    assert_eq!(
        (rr["value"].clone(), rr["unhealthy"].clone()),
        (21.into(), false.into()),
        "{rr}"
    );
    // The locks' data while they are held (read without taking them).
    assert_eq!(m["value"], 11, "{m}");
    assert_eq!(rw["value"], 12, "{rw}");
    assert_eq!(rm["value"], 13, "{rm}");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    let m = object(&doc, "mutex");
    assert_eq!(m["lock"], "held", "{m}");
    assert_eq!(m["holder"]["tid"], tid);
    assert_eq!(m["holder"]["alive"], false);
    assert_eq!(m["unhealthy"], true);
    assert_eq!(doc["unhealthy"], true);
    assert_eq!(code, 3, "a dead holder is exit code 3");
    let rw = object(&doc, "rwlock");
    assert_eq!(
        (
            rw["lock"].clone(),
            rw["holder"]["alive"].clone(),
            rw["unhealthy"].clone()
        ),
        ("write".into(), false.into(), true.into())
    );
    let seq = object(&doc, "seq");
    assert_eq!(
        (seq["seqlock"].clone(), seq["unhealthy"].clone()),
        ("torn".into(), true.into())
    );
    assert_eq!(object(&doc, "hits")["unhealthy"], false);
    // A dead reader: listed as dead, and a reason for exit code 3.
    let rr = object(&doc, "rwread");
    assert_eq!(
        (
            rr["readers"][0]["tid"].clone(),
            rr["readers"][0]["alive"].clone(),
            rr["unhealthy"].clone()
        ),
        (tid.into(), false.into(), true.into()),
        "{rr}"
    );
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("held by tid {tid} (dead")), "{text}");
}

/// Whether the garbage test keeps the histogram's header and bounds with `pattern`.
fn keep_histogram_header(pattern: u32) -> bool {
    pattern == 1 || pattern == 2
}

#[test]
fn inspect_survives_garbage_in_every_object() {
    let tmp = TempRegion::new("garbage");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let entries = region.entries();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp.0)
        .unwrap();
    // The attach table (after the 128-byte header and the 128-byte directory entries: the
    // region's documented layout), 128 words of 8 bytes, and the life-cycle word (the
    // header's 32-bit word at offset 60).
    let attach_table = 128 + 128 * region.capacity() as u64;
    let original = std::fs::read(&tmp.0).unwrap();
    // A few patterns: all ones, a xorshift stream, alternating bytes, odd sequence words.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for pattern in 0..4 {
        // Hostile words in the attach table and the life-cycle word too.
        let hostile = |len: u64, x: &mut u64| -> Vec<u8> {
            (0..len)
                .map(|i| match pattern {
                    0 => 0xFF,
                    1 => {
                        *x ^= *x << 13;
                        *x ^= *x >> 7;
                        *x ^= *x << 17;
                        *x as u8
                    }
                    2 => [0x55, 0xAA][i as usize % 2],
                    _ => 1,
                })
                .collect()
        };
        file.write_at(&hostile(128 * 8, &mut x), attach_table)
            .unwrap();
        // Bit 0 cleared: phase 3 is not one, and every open refuses the region (as
        // corrupt) before inspect reads a word.
        let life = u32::from_ne_bytes(hostile(4, &mut x).try_into().unwrap()) & !1;
        file.write_at(&life.to_ne_bytes(), 60).unwrap();
        for e in &entries {
            let bytes: Vec<u8> = (0..e.size)
                .map(|i| match pattern {
                    0 => 0xFF,
                    1 => {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    }
                    2 => {
                        if i % 2 == 0 {
                            0x55
                        } else {
                            0xAA
                        }
                    }
                    _ => 1,
                })
                .collect();
            file.write_at(&bytes, e.offset).unwrap();
            // The histogram gets its header and bounds (two lines) back with patterns 1
            // and 2, so that its garbage bucket counts and sums are decoded too.
            if e.name == "latency" && keep_histogram_header(pattern) {
                let at = e.offset as usize;
                file.write_at(&original[at..at + 128], e.offset).unwrap();
            }
            // The map gets its header line back with the same patterns, so that its
            // garbage count and slots (keys) are decoded too.
            if e.name == "kv" && keep_histogram_header(pattern) {
                let at = e.offset as usize;
                file.write_at(&original[at..at + 64], e.offset).unwrap();
            }
        }
        let before = std::fs::read(&tmp.0).unwrap();
        let (code, doc) = inspect_json(&tmp.0);
        assert_eq!(
            std::fs::read(&tmp.0).unwrap(),
            before,
            "inspect wrote to the file"
        );
        if pattern == 0 {
            // An all-ones mutex word names TID 2^22 - 1 (stamped, which no thread here
            // has): held by a dead thread, reported as needing attention.
            let m = object(&doc, "mutex");
            assert_eq!(m["lock"], "held", "{m}");
            assert_eq!(m["holder"]["alive"], false, "{m}");
            assert_eq!(code, 3);
        }
        assert!(code == 0 || code == 3, "pattern {pattern}: exit {code}");
        let h = object(&doc, "latency");
        if keep_histogram_header(pattern) {
            assert!(h["count"].is_u64(), "pattern {pattern}: {h}");
            assert_eq!(h["buckets"].as_array().unwrap().len(), 4, "{h}");
        } else {
            assert!(h["count"].is_null(), "pattern {pattern}: {h}");
            assert!(h["summary"].as_str().unwrap().starts_with("corrupt"));
        }
        let m = object(&doc, "kv");
        if keep_histogram_header(pattern) {
            assert_eq!(m["capacity"], 16, "pattern {pattern}: {m}");
            assert!(m["len"].as_u64().unwrap() <= 16, "pattern {pattern}: {m}");
            assert!(m["keys"].is_array(), "pattern {pattern}: {m}");
        } else {
            assert!(m["len"].is_null(), "pattern {pattern}: {m}");
            assert!(m["summary"].as_str().unwrap().starts_with("corrupt"));
        }
        // Whatever the attach table's words (the test's own handle's among them), every
        // listed process has its fields, and dead ones do not change the status (checked
        // above: the same code as the objects give, with and without --verbose).
        for p in doc["attached"].as_array().unwrap() {
            assert!(p["pid"].is_u64() && p["handles"].is_u64(), "{p}");
            assert!(p["alive"].is_boolean(), "{p}");
        }
        assert!(doc["retired"].is_boolean() && doc["unlisted"].is_boolean());
        for e in &entries {
            let o = object(&doc, &e.name);
            assert!(o["summary"].is_string(), "{o}");
        }
        let (vcode, vdoc) = inspect_json_with(&tmp.0, &["--verbose"]);
        assert_eq!(vcode, code, "pattern {pattern}: {vdoc}");
        for args in [&["inspect"][..], &["inspect", "--verbose"]] {
            let mut args = args.to_vec();
            args.push(tmp.0.to_str().unwrap());
            let out = shmstate(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(out.status.code(), Some(code), "{out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            for e in &entries {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{} ", e.name))),
                    "pattern {pattern}: no line for {}: {text}",
                    e.name
                );
            }
        }
        assert_eq!(
            std::fs::read(&tmp.0).unwrap(),
            before,
            "inspect wrote to the file"
        );
    }
}

#[test]
fn inspect_verbose_shows_stripes_slots_and_raw_words() {
    let tmp = TempRegion::new("verbose");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let p = tmp.0.to_str().unwrap();

    // Without --verbose: summaries only.
    let out = shmstate(&["inspect", p]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(details(&text, "requests").is_empty(), "{text}");

    let out = shmstate(&["inspect", "--verbose", p]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    // The striped counter: its four stripes, which add up to the sum beside them.
    assert!(
        line(&text, "requests").contains("15 (sum of 4 stripes)"),
        "{text}"
    );
    let stripes = details(&text, "requests");
    let list = stripes[0]
        .trim()
        .strip_prefix("stripes: ")
        .unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<u64> = list.split(" + ").map(|n| n.parse().unwrap()).collect();
    assert_eq!((parts.len(), parts.iter().sum::<u64>()), (4, 15), "{text}");
    // The rwlock: its state word in hex, waiter bits and all 14 reader slots.
    let rw = details(&text, "rwlock").join("\n");
    assert!(rw.contains("state word 0x00000000"), "{rw}");
    assert!(rw.contains("readers waiting no"), "{rw}");
    assert!(
        rw.contains("reader slots: 0: free;") && rw.contains("13: free"),
        "{rw}"
    );
    // Raw words and waiter bits of the others.
    assert!(
        details(&text, "mutex")[0].contains("lock word 0x00000000: waiters no"),
        "{text}"
    );
    assert!(
        details(&text, "hits")[0].contains("word 0x000000000000002a"),
        "{text}"
    );
    assert!(
        details(&text, "sem")[0].contains("count word 0x00000003"),
        "{text}"
    );
    // A map: its geometry (16 entries: one stripe).
    let geometry = details(&text, "kv");
    assert!(
        geometry[0].contains("stripes: 1, slots: ")
            && geometry[0].ends_with("key_max 16, value_max 8"),
        "{text}"
    );
    // Every element of an array, not the first 8 and "...".
    let array = line(&text, "array");
    assert!(
        array.contains("0, 3, 6") && array.contains(", 57]"),
        "{array}"
    );
    assert!(!array.contains("..."), "{array}");
    // A seqlock array: one line per stripe, with its elements.
    let samples = details(&text, "samples");
    assert_eq!(samples.len(), 2, "{text}");
    assert!(samples[0].contains("stripe 0 [0..32): idle"), "{text}");
    assert!(samples[1].contains("stripe 1 [32..40): idle"), "{text}");
    assert!(
        samples[1].ends_with(": 64, 66, 68, 70, 72, 74, 76, 78"),
        "{text}"
    );

    // A broken barrier is highlighted (stdout is not a terminal: "!!") and is a reason
    // for exit code 3, in the table and in the JSON; repaired, it is neither.
    let gate = region.get_or_default::<Barrier>("gate").unwrap();
    gate.init(2);
    gate.abort();
    let out = shmstate(&["inspect", p]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        line(&text, "gate").ends_with("  !! 0 of 2 arrived, broken"),
        "{text}"
    );
    assert!(!line(&text, "barrier").contains("!!"), "{text}");
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 3, "{doc}");
    assert_eq!(doc["unhealthy"], true);
    let g = object(&doc, "gate");
    assert_eq!(
        (g["broken"].clone(), g["unhealthy"].clone()),
        (true.into(), true.into()),
        "{g}"
    );
    assert_eq!(object(&doc, "barrier")["unhealthy"], false);
    gate.reset();
    assert_eq!(shmstate(&["inspect", p]).status.code(), Some(0));

    // The JSON document has the stripes whatever the flags.
    let (_, doc) = inspect_json(&tmp.0);
    let req = object(&doc, "requests");
    let sv: Vec<u64> = req["stripe_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!((sv.len(), sv.iter().sum::<u64>()), (4, 15), "{req}");
    assert_eq!(
        object(&doc, "rwlock")["reader_slots"]
            .as_array()
            .unwrap()
            .len(),
        14
    );
    // --verbose lists every element of a value array in JSON too.
    let (_, doc) = inspect_json_with(&tmp.0, &["--verbose"]);
    let arr = object(&doc, "array");
    assert_eq!(arr["values"].as_array().unwrap().len(), 20, "{arr}");
    assert_eq!(arr["truncated"], false);
}

#[test]
fn inspect_shows_seqlock_array_values() {
    let tmp = TempRegion::new("seqarray");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    // Narrow elements: 256 `u8`s or 128 `i16`s to a stripe, several to a data word.
    let bytes: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
    region
        .get_or_init_slice("bytes", 300, |a: &SeqLockArray<u8>| a.set_all(&bytes))
        .unwrap();
    let shorts: Vec<i16> = (0..70).map(|i| -300 * i).collect();
    region
        .get_or_init_slice("shorts", 70, |a: &SeqLockArray<i16>| a.set_all(&shorts))
        .unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    let b = object(&doc, "bytes");
    assert_eq!(
        (
            b["stripe_len"].clone(),
            b["stripe_states"].as_array().unwrap().len()
        ),
        (256.into(), 2)
    );
    let got: Vec<u8> = b["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(got, bytes);
    let sh = object(&doc, "shorts");
    assert_eq!(sh["stripe_len"], 128);
    let got: Vec<i16> = sh["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap() as i16)
        .collect();
    assert_eq!(got, shorts);
    let s = object(&doc, "samples");
    assert_eq!(s["stripe_len"], 32, "{s}");
    let values: Vec<u64> = s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        values,
        (0..40).map(|i| i * 2).collect::<Vec<u64>>(),
        "all of them in JSON"
    );
    assert_eq!(s["truncated"], false);
    let states = s["stripe_states"].as_array().unwrap();
    assert_eq!(states.len(), 2);
    for st in states {
        assert_eq!(
            (st["seqlock"].clone(), st["consistent"].clone()),
            ("idle".into(), true.into()),
            "{st}"
        );
    }
    let t = object(&doc, "temps");
    assert_eq!(t["stripe_len"], 32);
    assert_eq!(t["values"][19], 19.5, "{t}");
    assert_eq!(t["stripe_states"].as_array().unwrap().len(), 2);

    // The table: the first 8 elements, and the stripes' states.
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let l = line(&text, "samples");
    assert!(
        l.contains("[0, 2, 4, 6, 8, 10, 12, 14, ...] (len 40; stripes: 2 idle)"),
        "{l}"
    );
    assert!(line(&text, "temps").contains("[0.5, 1.5, 2.5"), "{text}");
}

/// The child half of `inspect_reports_a_seqlock_array_stripe_torn_by_a_killed_writer`:
/// begins a write of element 35 (stripe 1) of `samples` and a batch write of `temps`
/// and stops there, as a writer killed mid-write, says so, and waits to be killed. Does nothing when run as an
/// ordinary test.
#[test]
fn array_writer_child() {
    let Ok(path) = std::env::var("SHMSTATE_INSPECT_ARRAY_WRITER") else {
        return;
    };
    let region = Region::open(&path).unwrap();
    let a = region.get::<SeqLockArray<u64>>("samples").unwrap();
    a.begin_write_for_test(35, 999);
    // And a whole-array write of `temps`, stopped after its data stores.
    let t = region.get::<SeqLockArray<f64>>("temps").unwrap();
    t.begin_batch_for_test(&[-1.0; 40]);
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    println!("writing {}", link.file_name().unwrap().to_str().unwrap());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Runs the test named `test` of this binary as a child with `env` set to `path`, and
/// returns it (killed on drop) with the TID after `prefix` on its first matching line.
fn child(test: &str, env: &str, path: &Path, prefix: &str) -> (KillOnDrop, u32) {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture"])
            .env(env, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Bounded: the child takes free locks (no wait) and prints its line, or exits (EOF).
    let out = BufReader::new(child.0.stdout.take().unwrap());
    for line in out.lines() {
        if let Some(t) = line.unwrap().trim().strip_prefix(prefix) {
            return (child, t.parse().unwrap());
        }
    }
    panic!("the child {test} did not get ready");
}

#[test]
fn inspect_reports_a_seqlock_array_stripe_torn_by_a_killed_writer() {
    let tmp = TempRegion::new("torn-array");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let (mut writer, tid) = child(
        "array_writer_child",
        "SHMSTATE_INSPECT_ARRAY_WRITER",
        &tmp.0,
        "writing ",
    );

    // Mid-write by a live writer: stripe 1 is being written (no stable copy: its
    // elements are null), stripe 0 is untouched.
    let (code, doc) = inspect_json(&tmp.0);
    let s = object(&doc, "samples");
    let states = s["stripe_states"].as_array().unwrap();
    assert_eq!(states[0]["seqlock"], "idle", "{s}");
    assert_eq!(states[1]["seqlock"], "writing", "{s}");
    assert_eq!(states[1]["holder"]["tid"], tid);
    assert_eq!(states[1]["consistent"], false);
    assert_eq!(states[1]["dirty"], 35 - 32 + 1, "element 3 of the stripe");
    assert_eq!(s["values"][31], 62);
    assert!(
        s["values"][32].is_null() && s["values"][39].is_null(),
        "{s}"
    );
    assert_eq!((code, s["unhealthy"].clone()), (0, false.into()));
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        line(&text, "samples").contains("stripes: 1 idle, 1 being written)"),
        "{text}"
    );

    writer.0.kill().unwrap();
    writer.0.wait().unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    let s = object(&doc, "samples");
    let states = s["stripe_states"].as_array().unwrap();
    assert_eq!(states[0]["seqlock"], "idle", "{s}");
    assert_eq!(states[1]["seqlock"], "torn", "{s}");
    assert_eq!(states[1]["holder"]["alive"], false);
    assert_eq!(s["unhealthy"], true);
    assert_eq!(code, 3, "a torn stripe is exit code 3");
    assert_eq!(s["values"][0], 0, "the other stripe still reads");
    // The dead batch writer left every stripe of `temps` torn.
    let t = object(&doc, "temps");
    for st in t["stripe_states"].as_array().unwrap() {
        assert_eq!(
            (
                st["seqlock"].clone(),
                st["holder"]["tid"].clone(),
                st["dirty"].clone()
            ),
            ("torn".into(), tid.into(), 0.into()),
            "{t}"
        );
    }
    assert!(
        t["values"].as_array().unwrap().iter().all(Json::is_null),
        "{t}"
    );
    assert_eq!(t["unhealthy"], true);

    // The table: the torn stripe named and highlighted (stdout is not a terminal: "!!").
    let out = shmstate(&["inspect", "--verbose", tmp.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    let l = line(&text, "samples");
    assert!(l.contains("!! [0, 2, 4"), "{l}");
    assert!(l.contains("stripes: 1 idle, 1 torn"), "{l}");
    assert!(
        l.contains(&format!(
            "stripe 1 torn: writer died mid-write, tid {tid} (dead"
        )),
        "{l}"
    );
    let d = details(&text, "samples");
    assert!(d[1].contains("stripe 1 [32..40): torn"), "{text}");
    assert!(d[1].ends_with(": ?, ?, ?, ?, ?, ?, ?, ?"), "{text}");
    assert!(!line(&text, "hits").contains("!!"), "{text}");

    // A filter that leaves the torn array out: healthy.
    let (code, doc) = inspect_json_with(&tmp.0, &["--filter", "hits"]);
    assert_eq!((code, doc["objects"].as_array().unwrap().len()), (0, 1));
}

#[test]
fn inspect_filter_selects_names_by_glob() {
    let tmp = TempRegion::new("filter");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let names = |glob: &str| -> Vec<String> {
        let (code, doc) = inspect_json_with(&tmp.0, &["--filter", glob]);
        assert_eq!(code, 0);
        doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("hits"), ["hits"]);
    assert_eq!(names("*mutex"), ["mutex", "rmutex"]);
    assert_eq!(names("?ig"), ["big"]);
    assert_eq!(names("[bf]*"), ["big", "flag", "bsem", "barrier"]);
    assert_eq!(
        names("[!a-r]*"),
        ["temp", "small", "seq", "sem", "samples", "temps"]
    );
    assert!(names("nothing*").is_empty());

    let out = shmstate(&["inspect", "--filter", "s*", tmp.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("4 shown by the filter"),
        "{text}"
    );
    // After the heading, the attached processes, the space line and the column names.
    let rows: Vec<&str> = text
        .lines()
        .skip(4)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(rows, ["small", "seq", "sem", "samples"], "{text}");

    // A malformed pattern is a usage error.
    let out = shmstate(&["inspect", "--filter", "[a", tmp.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_shows_a_histogram_as_observed() {
    let tmp = TempRegion::new("histogram");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let h = region.histogram("latency", &HIST_BOUNDS).unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    let o = object(&doc, "latency");
    assert_eq!(o["type"], "Histogram", "{o}");
    assert_eq!(o["count"], HIST_VALUES.len(), "{o}");
    assert_eq!(o["sum"], HIST_VALUES.iter().sum::<f64>(), "{o}");
    // Cumulative, as observed: 0.25 and 0.5 are <= 0.5; 0.75 <= 1; 2.0 <= 2.5; 3 and 10
    // only in +Inf.
    let buckets: Vec<(Json, u64)> = o["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["le"].clone(), b["cumulative"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(Json, u64)> = vec![
        (0.5.into(), 2),
        (1.0.into(), 3),
        (2.5.into(), 4),
        ("+Inf".into(), 6),
    ];
    assert_eq!(buckets, expected, "{o}");
    // The same as the histogram's own snapshot.
    let snap = h.snapshot();
    assert_eq!(snap.cumulative, [2, 3, 4, 6]);
    assert_eq!(o["sum"], snap.sum);
    assert_eq!(
        (o["readable"].clone(), o["unhealthy"].clone()),
        (true.into(), false.into())
    );

    let path = tmp.0.to_str().unwrap();
    let text = String::from_utf8(shmstate(&["inspect", path]).stdout).unwrap();
    assert!(
        line(&text, "latency").ends_with("count 6, sum 16.5"),
        "{text}"
    );
    assert!(
        details(&text, "latency").is_empty(),
        "buckets only with --verbose: {text}"
    );
    let text = String::from_utf8(shmstate(&["inspect", "--verbose", path]).stdout).unwrap();
    assert_eq!(
        details(&text, "latency"),
        ["    buckets (cumulative): le 0.5: 2, le 1: 3, le 2.5: 4, le +Inf: 6"],
        "{text}"
    );
}

/// The child half of `inspect_lists_attached_processes_live_then_dead`: opens the region
/// twice (two handles), says so, and waits to be killed. Does nothing when run as an
/// ordinary test.
#[test]
fn attach_child() {
    let Ok(path) = std::env::var("SHMSTATE_INSPECT_ATTACH") else {
        return;
    };
    let a = Region::open(&path).unwrap();
    let b = Region::open(&path).unwrap();
    println!("attached {}", std::process::id());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop((a, b));
}

#[test]
fn inspect_lists_attached_processes_live_then_dead() {
    let tmp = TempRegion::new("attached");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    populate(&region);
    let (mut child, pid) = child(
        "attach_child",
        "SHMSTATE_INSPECT_ATTACH",
        &tmp.0,
        "attached ",
    );
    assert_eq!(pid, child.0.id());
    let me = std::process::id();
    let find = |doc: &Json, pid: u32| -> Json {
        doc["attached"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not attached: {doc}"))
            .clone()
    };

    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    // This process (its one handle) and the child (two); inspect lists itself nowhere.
    assert_eq!(doc["attached"].as_array().unwrap().len(), 2, "{doc}");
    let c = find(&doc, pid);
    assert_eq!(
        (c["alive"].clone(), c["handles"].clone()),
        (true.into(), 2.into()),
        "{c}"
    );
    assert!(c["comm"].is_string() && c["start_time"].is_u64(), "{c}");
    let m = find(&doc, me);
    assert_eq!(
        (m["alive"].clone(), m["handles"].clone()),
        (true.into(), 1.into()),
        "{m}"
    );
    assert_eq!(
        (
            doc["remove_when_unused"].clone(),
            doc["retired"].clone(),
            doc["unlisted"].clone()
        ),
        (false.into(), false.into(), false.into())
    );
    let path = tmp.0.to_str().unwrap();
    let out = shmstate(&["inspect", path]);
    let text = String::from_utf8(out.stdout).unwrap();
    let attached = text.lines().nth(1).unwrap();
    assert!(attached.starts_with("attached: "), "{text}");
    assert!(attached.contains(&format!("{pid} ")), "{text}");
    assert!(attached.contains("(2 handles)"), "{text}");
    assert!(!attached.contains("dead"), "{text}");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "a dead attached process is not unhealthy: {doc}");
    assert_eq!(doc["unhealthy"], false);
    let c = find(&doc, pid);
    assert_eq!(
        (c["alive"].clone(), c["handles"].clone()),
        (false.into(), 2.into()),
        "{c}"
    );
    assert!(c["comm"].is_null(), "no name for a dead pid: {c}");
    assert_eq!(find(&doc, me)["alive"], true);
    let out = shmstate(&["inspect", path]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains(&format!("{pid} (dead, 2 handles)")),
        "{text}"
    );
}

#[test]
fn inspect_shows_the_life_cycle_flags() {
    let tmp = TempRegion::new("life-flags");
    let region = RegionOptions::new()
        .remove_when_unused(true)
        .create(&tmp.0, 1 << 16)
        .unwrap();
    let (_, doc) = inspect_json(&tmp.0);
    assert_eq!(doc["remove_when_unused"], true, "{doc}");
    let path = tmp.0.to_str().unwrap();
    let text = String::from_utf8(shmstate(&["inspect", path]).stdout).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .ends_with("; remove when unused"),
        "{text}"
    );
    drop(region);
    // The other flags, as a region's life-cycle word (the header's 32-bit word at offset
    // 60) holds them: phase RETIRED (2) and UNLISTED (bit 2), a removal whose file is
    // still in place and a table that overflowed.
    let tmp = TempRegion::new("life-flags-2");
    drop(Region::create(&tmp.0, 1 << 16).unwrap());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp.0)
        .unwrap();
    file.write_at(&(2u32 | 4).to_ne_bytes(), 60).unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        (
            doc["remove_when_unused"].clone(),
            doc["retired"].clone(),
            doc["unlisted"].clone()
        ),
        (false.into(), true.into(), true.into()),
        "{doc}"
    );
    assert_eq!(doc["attached"], Json::Array(vec![]), "{doc}");
    let path = tmp.0.to_str().unwrap();
    let text = String::from_utf8(shmstate(&["inspect", path]).stdout).unwrap();
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "attached: none; retired; unlisted (a handle had no table word)",
        "{text}"
    );
}

#[test]
fn inspect_shows_the_size_and_maximum_of_a_region_that_grew() {
    let t = TempRegion::new("inspect-grown");
    let region = RegionOptions::new()
        .max_size(1 << 22)
        .create(&t.0, 1 << 16)
        .unwrap();
    // 1 MiB does not fit in 64 KiB: the region grows to 2 MiB.
    region
        .get_or_default_slice::<ValueArray<u64>>("samples", 1 << 17)
        .unwrap()
        .store((1 << 17) - 1, 9, Relaxed);
    let (code, doc) = inspect_json(&t.0);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        (doc["size"].as_u64(), doc["max_size"].as_u64()),
        (Some(1 << 21), Some(1 << 22)),
        "{doc}"
    );
    assert_eq!(object(&doc, "samples")["len"], 1 << 17, "{doc}");
    let out = shmstate(&["inspect", t.0.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(": 2097152 bytes (grows up to 4194304), 1 of 64 directory entries used"),
        "{table}"
    );
    // A region that does not grow: "max_size" is its size, and the table says nothing.
    let fixed = TempRegion::new("inspect-fixed");
    drop(Region::create(&fixed.0, 1 << 16).unwrap());
    let (_, doc) = inspect_json(&fixed.0);
    assert_eq!(doc["max_size"], doc["size"], "{doc}");
    let out = shmstate(&["inspect", fixed.0.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("grows"));
}

#[test]
fn inspect_shows_the_free_space_of_removed_objects() {
    let tmp = TempRegion::new("space");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    for name in ["a", "b", "c"] {
        region
            .get_or_default_slice::<ValueArray<u64>>(name, 16)
            .unwrap();
    }
    drop(region);
    Region::remove_object(&tmp.0, "b").unwrap();
    let (code, doc) = inspect_json(&tmp.0);
    assert_eq!(code, 0);
    let space = &doc["space"];
    assert_eq!(space["used"], 256);
    assert_eq!(space["free_extents"], 2, "the hole of b, and the tail");
    let data = space["data"].as_u64().unwrap();
    assert_eq!(space["free"].as_u64().unwrap(), data - 256);
    assert_eq!(space["largest_free"].as_u64().unwrap(), data - 384);
    let frag = space["fragmentation"].as_f64().unwrap();
    assert!((frag - 128.0 / (data - 256) as f64).abs() < 1e-9, "{frag}");
    let out = shmstate(&["inspect", tmp.0.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("space: ")).unwrap();
    assert!(
        line.starts_with(&format!(
            "space: 256 of {data} data bytes used, {} free in 2 pieces",
            data - 256
        )),
        "{line}"
    );
}

/// `shmstate inspect --json PATH` run in a new time namespace with `offsets` (`unshare
/// --fork --time` and these options): the parsed document, or `None` (a skip printed)
/// where no time namespace can be made (util-linux, `CAP_SYS_ADMIN`, Linux 5.6).
fn inspect_json_in_time_namespace(offsets: &[&str], path: &Path) -> Option<Json> {
    let mut args = vec!["--fork", "--time"];
    args.extend_from_slice(offsets);
    let can = Command::new("unshare")
        .args(&args)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipped: no `unshare --time` here (util-linux, CAP_SYS_ADMIN, Linux 5.6)");
        return None;
    }
    args.extend([
        env!("CARGO_BIN_EXE_shmstate"),
        "inspect",
        "--json",
        path.to_str().unwrap(),
    ]);
    let out = common::run("unshare", &args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// `inspect` in a time namespace whose `CLOCK_MONOTONIC` runs a day ahead reads a map's
/// deadlines as the crate does, on the initial namespace's clock: a key an hour from its
/// deadline is listed, one due now is not. Needs `CAP_SYS_ADMIN`, `CAP_SYS_TIME`,
/// Linux 5.6 and util-linux's `unshare --time` (skipped elsewhere).
#[test]
fn inspect_in_another_time_namespace_lists_keys_by_their_deadlines() {
    let tmp = TempRegion::new("timens-ttl");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    let m = region.map("kv", MapOptions::new(16)).unwrap();
    m.insert_ttl(b"later", b"1", std::time::Duration::from_secs(3600))
        .unwrap();
    m.insert_ttl(b"due", b"2", std::time::Duration::ZERO)
        .unwrap();
    let Some(doc) = inspect_json_in_time_namespace(&["--monotonic", "86400"], &tmp.0) else {
        return;
    };
    let kv = object(&doc, "kv");
    assert_eq!(kv["keys"], serde_json::json!(["later"]), "{kv}");
}

/// `inspect` run in another time namespace (whose `/proc` shows every start time shifted
/// by its boot-time offset) reads a live holder, and a live attached process, as alive:
/// it does not compare their start times with what their words record across time
/// namespaces, as the crate does not, and judges them by their ids alone. Needs
/// `CAP_SYS_ADMIN`, `CAP_SYS_TIME`, Linux 5.6 and util-linux's `unshare --time` (skipped
/// elsewhere).
#[test]
fn inspect_in_another_time_namespace_reads_a_live_holder_alive() {
    let tmp = TempRegion::new("timens");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    let m = region.get_or_default::<Mutex<u64>>("mutex").unwrap();
    let (held_tx, held) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            // Until the test has looked (or failed: the sender is dropped then).
            let _ = release_rx.recv();
        });
        held.recv().unwrap();
        // In this namespace first: alive.
        let (_, doc) = inspect_json(&tmp.0);
        assert_eq!(object(&doc, "mutex")["holder"]["alive"], true, "{doc}");
        let Some(doc) = inspect_json_in_time_namespace(&["--boottime", "7"], &tmp.0) else {
            return;
        };
        let holder = &object(&doc, "mutex")["holder"];
        assert_eq!(holder["alive"], true, "{doc}");
        // And this process's attach-table word (a full start time: the crate's judgement).
        let me = doc["attached"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["pid"] == std::process::id())
            .unwrap_or_else(|| panic!("this process is not attached: {doc}"));
        assert_eq!(me["alive"], true, "{doc}");
        drop(release);
    });
}

/// Run by [`inspect_in_a_pid_namespace_without_its_own_proc_reads_a_live_holder_alive`]
/// as PID 1 of a new PID namespace (whose `/proc` is still the parent namespace's): takes
/// the mutex of the region `SHMSTATE_PIDNS_REGION` names, runs `inspect --json` on it
/// meanwhile, and prints the document on a line of its own after `INSPECT:`.
#[test]
#[ignore = "a helper, run in a new PID namespace by the test after it"]
fn pid_namespace_helper() {
    let Ok(path) = std::env::var("SHMSTATE_PIDNS_REGION") else {
        return;
    };
    let region = Region::open(&path).unwrap();
    let m = region.get::<Mutex<u64>>("mutex").unwrap();
    let _g = m.lock().unwrap();
    let out = shmstate(&["inspect", "--json", &path]);
    let doc = String::from_utf8(out.stdout).unwrap();
    let tid = rustix::thread::gettid().as_raw_nonzero();
    println!("\nTID:{tid}\nINSPECT:{}", doc.replace('\n', " "));
}

/// `inspect` run in a PID namespace whose `/proc` is another namespace's (`unshare --pid
/// --fork` without `--mount-proc`), where `/proc/<tid>` names some other task: it reads
/// a live holder of this namespace alive (by `kill`, as the crate does there) and shows
/// no command name (the entry's would be another task's). Needs `CAP_SYS_ADMIN` and
/// util-linux's `unshare` (skipped elsewhere).
#[test]
fn inspect_in_a_pid_namespace_without_its_own_proc_reads_a_live_holder_alive() {
    let tmp = TempRegion::new("pidns");
    let region = Region::create(&tmp.0, 1 << 16).unwrap();
    region.get_or_default::<Mutex<u64>>("mutex").unwrap();
    drop(region);
    let can = Command::new("unshare")
        .args(["--fork", "--pid", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipped: no `unshare --pid` here (util-linux, CAP_SYS_ADMIN)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--pid"])
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            "pid_namespace_helper",
            "--nocapture",
        ])
        .env("SHMSTATE_PIDNS_REGION", &tmp.0);
    let out = common::run_command(cmd, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("INSPECT:"))
        .unwrap_or_else(|| panic!("the helper printed no document: {stdout}"));
    let doc: Json = serde_json::from_str(line).unwrap();
    let tid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TID:"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the helper printed no TID: {stdout}"));
    let holder = &object(&doc, "mutex")["holder"];
    assert_eq!(holder["tid"], tid, "{doc}");
    assert_eq!(holder["alive"], true, "{doc}");
    assert_eq!(holder["comm"], Json::Null, "another task's name: {doc}");
    // The helper's process, PID 1 of the namespace, attached: no name either.
    let attached = doc["attached"].as_array().unwrap();
    assert!(
        attached.iter().all(|a| a["comm"].is_null()),
        "another task's name: {doc}"
    );
}
