//! `shmstate inspect FILE`: the named objects of a region and their current state, for
//! people and scripts.
//!
//! The file is opened read-only ([`ReadOnlyRegion`]): inspecting never writes a byte,
//! needs only read permission, and never waits for a holder. The state of each object is
//! read by single word loads ([`crate::state`]), so it is a snapshot that may be stale
//! when printed, and never a reason to panic or hang whatever the bytes are.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use shmstate::region::ReadOnlyRegion;
use shmstate::{EntryInfo, EntryState};

use crate::Failure;
use crate::state::{self, Num, Opts};

/// The exit code when an object needs attention: a lock held by a dead thread (or with a
/// garbage lock word), a seqlock (or a stripe of a seqlock array) torn by a writer that
/// died mid-write, or a broken barrier.
pub const UNHEALTHY: u8 = 3;

/// The `--json` document's schema version. Fields added since version 1 (`rate`,
/// `time`, `interval`, the `--verbose` details, the seqlock array's, `attached`,
/// `remove_when_unused`, `retired`, `unlisted`, the histogram's, a lock's `value`) are
/// additions that
/// a reader of version 1 may ignore, so the version stays 1; it changes only when an
/// existing field changes meaning or type.
pub const SCHEMA_VERSION: u32 = 1;

/// `shmstate inspect`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The region file.
    pub path: PathBuf,
    /// Print one JSON document instead of a table (with --watch: one per line and
    /// interval).
    ///
    /// The document: {"schema_version": 1, "path",
    /// "size", "max_size" (what it may grow to; "size" if it does not grow), "capacity",
    /// "unhealthy", "attached": [{"pid", "start_time", "alive",
    /// "handles", "comm"}], "remove_when_unused", "retired", "unlisted" (booleans),
    /// "space": {"data", "used", "free", "largest_free", "free_extents", "tail" (bytes,
    /// and a count), "fragmentation" (0 to 1)}, "objects": [{"name", "type", "len",
    /// "offset", "size", "state", "creator", "readable", "unhealthy", "summary", and
    /// the kind's fields: "value" (Value, Counter, StripedCounter, SeqLock; and the data
    /// of a Mutex, RwLock or ReentrantMutex holding a primitive, read without taking
    /// the lock, so a value its holder is updating may be shown mid-update), "values"
    /// and "truncated" (ValueArray; SeqLockArray, with null for an element of a stripe
    /// that had no stable copy), "stripe_values" (StripedCounter), "stripe_len" and
    /// "stripe_states" [{"index", "seqlock", "sequence", "writer_word", "dirty",
    /// "consistent", "holder"}] (SeqLockArray), "lock" ("free", "held", "read",
    /// "write", "garbage"), "holder" {"tid", "alive", "comm"}, "owner_died", "depth",
    /// "readers", "reader_slots", "readers_waiting", "writers_waiting", "draining",
    /// "writer_notify", "waiters", "seqlock" ("idle", "writing", "torn", "garbage"),
    /// "permits", "bound", "set", "generation", "parties", "arrived", "broken",
    /// "length", "capacity", "count", "sum" and "buckets" [{"le" (a number, or "+Inf"),
    /// "cumulative"}] (Histogram; null when it does not decode), "len" (entries),
    /// "capacity", "load" (len / capacity), "key_max", "value_max" and "keys" (each a
    /// string if valid UTF-8, else an array of bytes) (Map)}]}. With --watch: one such document per line and interval,
    /// with "time" (Unix seconds), "interval" (seconds) and, on objects with a number,
    /// "rate" (change per second since the previous document; null in the first).
    /// Fields are only ever added within a schema version.
    #[arg(long)]
    pub json: bool,
    /// Show the details behind each summary.
    ///
    /// Under each row: a StripedCounter's stripes, an RwLock's
    /// reader slots, every element of an array, each SeqLockArray stripe, a Histogram's
    /// cumulative buckets, raw words in hex and waiter bits.
    #[arg(long, short)]
    pub verbose: bool,
    /// Only the objects whose name matches GLOB.
    ///
    /// `*` matches any characters, `?` one, `[abc]` and `[a-z]` one of a set, `[!abc]`
    /// one not in it. The table, the JSON and the exit status then cover only those
    /// objects.
    #[arg(long, value_name = "GLOB", value_parser = parse_glob)]
    pub filter: Option<glob::Pattern>,
    /// Redraw every SECONDS (default 1) with rates, until Ctrl-C or the file's removal.
    ///
    /// On a terminal the table is redrawn in place (piped, frames follow one another),
    /// headed by the interval and the time, with the change per second of counters,
    /// striped counters, histogram counts and numeric values since the previous frame,
    /// and the attached processes as they are now. Give the interval
    /// when the file follows (`--watch 1 FILE`), or put the file first.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        default_missing_value = "1",
        value_parser = parse_interval
    )]
    pub watch: Option<Duration>,
}

fn parse_glob(s: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(s).map_err(|e| e.to_string())
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| {
        format!(
            "not a number of seconds: {s:?} (put the file before --watch, or give the interval)"
        )
    })?;
    if !(0.01..=86_400.0).contains(&secs) {
        return Err("the interval must be between 0.01 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `--json` document.
#[derive(Serialize)]
struct Document {
    schema_version: u32,
    path: String,
    size: usize,
    /// The size the region may grow to (`size` for one that does not grow).
    max_size: usize,
    capacity: usize,
    unhealthy: bool,
    /// The processes listed in the region's attach table.
    attached: Vec<Process>,
    /// The region's file is removed when its last process leaves.
    remove_when_unused: bool,
    /// The region has been removed or is being removed.
    retired: bool,
    /// A process had the region open without being listed (the table was full, or a
    /// handle lost its word), so
    /// `attached` may miss users.
    unlisted: bool,
    /// How the data area is used (free space left by removed objects, fragmentation).
    space: Space,
    /// `--watch`: when the objects were read (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<f64>,
    /// `--watch`: the interval (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<f64>,
    objects: Vec<Object>,
}

/// The `space` object of the document: [`shmstate::SpaceInfo`].
#[derive(Serialize, Debug)]
struct Space {
    data: u64,
    used: u64,
    free: u64,
    largest_free: u64,
    free_extents: u32,
    tail: u64,
    fragmentation: f64,
}

impl From<shmstate::SpaceInfo> for Space {
    fn from(s: shmstate::SpaceInfo) -> Self {
        Space {
            data: s.data,
            used: s.used,
            free: s.free,
            largest_free: s.largest_free,
            free_extents: s.free_extents,
            tail: s.tail,
            fragmentation: s.fragmentation(),
        }
    }
}

/// The table's `space:` line: `space: 1024 of 61440 data bytes used, 60416 free in 2
/// pieces (largest 59392, fragmentation 1.7%)`.
fn space_line(s: &shmstate::SpaceInfo) -> String {
    format!(
        "space: {} of {} data bytes used, {} free in {} piece{} (largest {}, fragmentation {:.1}%)",
        s.used,
        s.data,
        s.free,
        s.free_extents,
        if s.free_extents == 1 { "" } else { "s" },
        s.largest_free,
        100.0 * s.fragmentation()
    )
}

/// A process that has the region open, as its attach table lists it.
#[derive(Serialize, Debug)]
struct Process {
    pid: u32,
    /// The low 32 bits of its start time (clock ticks since boot); 0 if unknown.
    start_time: u32,
    /// Its pid names a live process with that start time (a dead one is not a reason for
    /// exit code 3: nothing waits on it, and a removal check or `Region::attached` prunes
    /// its word).
    alive: bool,
    /// How many of its handles are listed.
    handles: u32,
    /// Its command name, if alive and readable.
    comm: Option<String>,
}

/// The region's life cycle: who has it open and what becomes of its file.
struct Life {
    attached: Vec<Process>,
    remove_when_unused: bool,
    retired: bool,
    unlisted: bool,
}

/// Reads the attach table (each process probed for liveness) and the life-cycle flags.
fn life(region: &ReadOnlyRegion) -> Life {
    let attached = region
        .attached()
        .into_iter()
        .map(|a| Process {
            pid: a.pid,
            start_time: a.start_time,
            alive: a.alive,
            handles: a.handles,
            // Only for a live process (a dead one's pid may name another process now),
            // from a `/proc` of this PID namespace.
            comm: (a.alive && crate::state::proc_is_ours())
                .then(|| std::fs::read_to_string(format!("/proc/{}/comm", a.pid)).ok())
                .flatten()
                .map(|c| c.trim_end_matches('\n').to_owned()),
        })
        .collect();
    Life {
        attached,
        remove_when_unused: region.remove_when_unused(),
        retired: region.is_retired(),
        unlisted: region.has_unlisted(),
    }
}

/// The table's `attached:` line: `attached: 1234 worker (2 handles), 5678 (dead)`, then
/// the life-cycle flags that are set.
fn life_line(life: &Life) -> String {
    let list: Vec<String> = life
        .attached
        .iter()
        .map(|p| {
            let mut t = p.pid.to_string();
            if let Some(c) = &p.comm {
                t.push(' ');
                t.push_str(&printable(c));
            }
            let mut notes = Vec::new();
            if !p.alive {
                notes.push("dead".to_owned());
            }
            if p.handles != 1 {
                notes.push(format!("{} handles", p.handles));
            }
            if !notes.is_empty() {
                t.push_str(&format!(" ({})", notes.join(", ")));
            }
            t
        })
        .collect();
    let mut line = format!(
        "attached: {}",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    );
    for (set, what) in [
        (life.remove_when_unused, "remove when unused"),
        (life.retired, "retired"),
        (life.unlisted, "unlisted (a handle had no table word)"),
    ] {
        if set {
            line.push_str("; ");
            line.push_str(what);
        }
    }
    line
}

/// One object of the `--json` document.
#[derive(Serialize)]
struct Object {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    /// The directory's length; in the JSON as `len` unless the kind's fields have their
    /// own (a map's entries), so that no key appears twice.
    #[serde(skip)]
    len: u64,
    offset: u64,
    size: u64,
    state: &'static str,
    creator: u32,
    /// The object's state could be read (a known kind, ready).
    readable: bool,
    unhealthy: bool,
    /// The human-readable summary (as in the table).
    summary: String,
    #[serde(flatten)]
    fields: Map<String, Json>,
    /// Highlighted in the table (unhealthy, or a corrupt histogram, map or channel).
    #[serde(skip)]
    alert: bool,
    /// `--verbose` lines under the row.
    #[serde(skip)]
    details: Vec<String>,
    /// The number a rate is shown for.
    #[serde(skip)]
    num: Option<Num>,
    /// `--watch`: its change per second.
    #[serde(skip)]
    rate: Option<f64>,
}

/// Prints the objects of the region `args` names (a table, or one JSON document), or
/// redraws them every interval with `--watch`; returns the process's exit code: 0, or
/// [`UNHEALTHY`].
pub fn run(args: &Args) -> Result<u8, Failure> {
    let region = open(&args.path)?;
    if let Some(interval) = args.watch {
        return watch(args, region, interval);
    }
    let opts = Opts {
        verbose: args.verbose,
        json: args.json,
    };
    let objects = objects(&region, opts, args.filter.as_ref());
    let unhealthy = objects.iter().any(|o| o.unhealthy);
    let text = if args.json {
        let doc = document(&args.path, &region, objects, None);
        serde_json::to_string_pretty(&doc)
            .map_err(|e| Failure::runtime(format!("cannot write JSON: {e}")))?
            + "\n"
    } else {
        let color = std::io::stdout().is_terminal();
        table(&args.path, &region, &objects, color, args.filter.is_some())
    };
    // A closed stdout (`| head`) ends the output, not in a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(if unhealthy { UNHEALTHY } else { 0 })
}

fn open(path: &Path) -> Result<ReadOnlyRegion, Failure> {
    ReadOnlyRegion::open(path).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        match e {
            shmstate::OpenError::NotFound(_) => Failure::usage(msg),
            _ => Failure::runtime(msg),
        }
    })
}

/// The objects of `region` whose names match `filter`, read now.
fn objects(region: &ReadOnlyRegion, opts: Opts, filter: Option<&glob::Pattern>) -> Vec<Object> {
    region
        .entries()
        .iter()
        .filter(|e| filter.is_none_or(|f| f.matches(&e.name)))
        .map(|e| object(region, e, opts))
        .collect()
}

fn document(
    path: &Path,
    region: &ReadOnlyRegion,
    objects: Vec<Object>,
    watch: Option<(SystemTime, Duration)>,
) -> Document {
    let life = life(region);
    Document {
        schema_version: SCHEMA_VERSION,
        path: path.display().to_string(),
        size: region.size(),
        max_size: region.max_size(),
        capacity: region.capacity(),
        unhealthy: objects.iter().any(|o| o.unhealthy),
        attached: life.attached,
        remove_when_unused: life.remove_when_unused,
        retired: life.retired,
        unlisted: life.unlisted,
        space: region.space().into(),
        time: watch.map(|(t, _)| unix_secs(t)),
        interval: watch.map(|(_, i)| i.as_secs_f64()),
        objects,
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn object(region: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Object {
    let reading = state::read(region, e, opts);
    let (readable, reading) = match reading {
        Some(r) => (true, r),
        None => (false, state::Reading::default()),
    };
    Object {
        name: e.name.clone(),
        ty: e.tag.to_string(),
        len: e.len,
        offset: e.offset,
        size: e.size,
        state: match e.state {
            EntryState::Claimed => "claimed",
            EntryState::Initialising => "initialising",
            EntryState::Ready => "ready",
            EntryState::Removing => "removing",
        },
        creator: e.owner,
        readable,
        unhealthy: reading.unhealthy,
        summary: reading.text,
        fields: {
            let mut fields = reading.fields;
            fields.entry("len").or_insert(json!(e.len));
            fields
        },
        alert: reading.alert,
        details: reading.details,
        num: reading.num,
        rate: None,
    }
}

/// A highlighted value: bold red on a terminal, else marked `!! `.
fn highlight(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[1;31m{text}\x1b[0m")
    } else {
        format!("!! {text}")
    }
}

/// One line per directory entry: name, type, length, offset, size, entry state, creator,
/// and the object's state (with its rate under `--watch`); `--verbose` details under it.
fn table(
    path: &Path,
    region: &ReadOnlyRegion,
    objects: &[Object],
    color: bool,
    filtered: bool,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let used = region.entries().len();
    let (size, max) = (region.size(), region.max_size());
    let _ = write!(
        out,
        "{}: {size} bytes",
        printable(&path.display().to_string())
    );
    if max > size {
        let _ = write!(out, " (grows up to {max})");
    }
    let _ = write!(
        out,
        ", {used} of {} directory entries used",
        region.capacity()
    );
    if filtered {
        let _ = write!(out, ", {} shown by the filter", objects.len());
    }
    out.push('\n');
    let _ = writeln!(out, "{}", life_line(&life(region)));
    let _ = writeln!(out, "{}", space_line(&region.space()));
    let _ = writeln!(
        out,
        "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}  value",
        "name", "type", "len", "offset", "size", "state", "creator"
    );
    for o in objects {
        let mut value = if o.readable {
            o.summary.clone()
        } else {
            "-".to_owned()
        };
        if let Some(r) = o.rate {
            let _ = write!(value, "  [{}]", rate_text(r));
        }
        if o.alert {
            value = highlight(&value, color);
        }
        let _ = writeln!(
            out,
            "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}  {value}",
            printable(&o.name),
            o.ty,
            o.len,
            o.offset,
            o.size,
            o.state,
            o.creator,
        );
        for d in &o.details {
            let _ = writeln!(out, "    {d}");
        }
    }
    out
}

/// A rate per second for people: `+12.5/s`.
fn rate_text(r: f64) -> String {
    if r.abs() >= 1000.0 {
        format!("{r:+.0}/s")
    } else {
        format!("{r:+.1}/s")
    }
}

/// The identity of the file at `path` (device, inode), to notice its removal or
/// replacement; `None` if it is gone.
fn identity(path: &Path) -> Result<Option<(u64, u64)>, Failure> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::runtime(format!("{}: {e}", path.display()))),
    }
}

/// `--watch`: a frame every `interval` (a table redrawn in place on a terminal, or a
/// JSON line), with rates, until the file is removed or the process is interrupted
/// (SIGINT's default action ends it). A region replaced under the same path is reopened.
fn watch(args: &Args, mut region: ReadOnlyRegion, interval: Duration) -> Result<u8, Failure> {
    let path = &args.path;
    let opts = Opts {
        verbose: args.verbose,
        json: args.json,
    };
    let terminal = std::io::stdout().is_terminal();
    let mut ident = identity(path)?;
    let mut previous: HashMap<(String, u64), (Num, Instant)> = HashMap::new();
    let mut unhealthy = false;
    loop {
        let now_ident = identity(path)?;
        if now_ident.is_none() {
            eprintln!(
                "shmstate: {}: the region file was removed; stopped watching",
                path.display()
            );
            return Ok(if unhealthy { UNHEALTHY } else { 0 });
        }
        if now_ident != ident {
            // Replaced: watch the new file (its objects' rates start over).
            match ReadOnlyRegion::open(path) {
                Ok(r) => region = r,
                Err(shmstate::OpenError::NotFound(_)) => continue,
                Err(e) => return Err(Failure::runtime(format!("{}: {e}", path.display()))),
            }
            ident = now_ident;
            previous.clear();
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut objects = objects(&region, opts, args.filter.as_ref());
        for o in &mut objects {
            let Some(num) = o.num else { continue };
            let key = (o.name.clone(), o.offset);
            if let Some((old, then)) = previous.get(&key) {
                o.rate = num.rate(*old, now.duration_since(*then).as_secs_f64());
            }
            previous.insert(key, (num, now));
            if args.json {
                o.fields.insert("rate".into(), json!(o.rate));
            }
        }
        unhealthy = objects.iter().any(|o| o.unhealthy);
        let text = if args.json {
            let doc = document(path, &region, objects, Some((wall, interval)));
            serde_json::to_string(&doc)
                .map_err(|e| Failure::runtime(format!("cannot write JSON: {e}")))?
                + "\n"
        } else {
            let header = format!("every {}s, {}", interval.as_secs_f64(), utc_time(wall));
            let body = table(path, &region, &objects, terminal, args.filter.is_some());
            if terminal {
                // Cursor home, each line cleared to its end, the rest of the screen
                // cleared: a redraw in place without a blank flash.
                let mut s = String::from("\x1b[H");
                for line in std::iter::once(header.as_str()).chain(body.lines()) {
                    s.push_str(line);
                    s.push_str("\x1b[K\n");
                }
                s.push_str("\x1b[J");
                s
            } else {
                format!("{header}\n{body}\n")
            }
        };
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // Stdout closed (the reader of a pipe went away): nothing more to show.
            return Ok(if unhealthy { UNHEALTHY } else { 0 });
        }
        drop(out);
        std::thread::sleep(interval);
    }
}

/// `t` as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `name` as it is safe to print: names come from shared memory, which any process with
/// access may have written, so a name with control characters (a newline that fakes a
/// row, a terminal escape sequence) is shown escaped, Rust-style (`\n`, `\u{1b}`); other
/// names are shown as they are.
pub fn printable(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_civil_dates() {
        let at = |s| utc_time(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn rates_are_per_second_and_wrap_like_counters() {
        assert_eq!(Num::Int(30).rate(Num::Int(10), 2.0), Some(10.0));
        assert_eq!(Num::Int(1).rate(Num::Int(u64::MAX), 1.0), Some(2.0));
        assert_eq!(Num::Int(5).rate(Num::Int(7), 1.0), Some(-2.0));
        assert_eq!(Num::Real(1.5).rate(Num::Real(0.5), 0.5), Some(2.0));
        assert_eq!(Num::Real(f64::NAN).rate(Num::Real(0.5), 1.0), None);
        assert_eq!(Num::Int(1).rate(Num::Int(0), 0.0), None);
        assert_eq!(rate_text(12.34), "+12.3/s");
        assert_eq!(rate_text(-25_000.0), "-25000/s");
    }

    #[test]
    fn intervals_are_checked() {
        assert_eq!(parse_interval("0.2"), Ok(Duration::from_millis(200)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("nan").is_err());
        assert!(parse_interval("x").is_err());
    }

    #[test]
    fn the_space_line_counts_pieces_and_fragmentation() {
        let r = shmstate::Region::anonymous(1 << 16).unwrap();
        let line = space_line(&r.space());
        assert!(line.starts_with("space: 0 of "), "{line}");
        assert!(line.contains(" free in 1 piece (largest "), "{line}");
        assert!(line.ends_with("fragmentation 0.0%)"), "{line}");
    }

    #[test]
    fn the_attached_line_names_processes_and_flags() {
        let p = |pid, alive, handles, comm: Option<&str>| Process {
            pid,
            start_time: 7,
            alive,
            handles,
            comm: comm.map(str::to_owned),
        };
        let life = Life {
            attached: vec![
                p(1234, true, 2, Some("shmstate-worker")),
                p(5678, false, 1, None),
                p(9, true, 1, Some("a\x1b[2Jb")),
            ],
            remove_when_unused: true,
            retired: false,
            unlisted: true,
        };
        assert_eq!(
            life_line(&life),
            "attached: 1234 shmstate-worker (2 handles), 5678 (dead), 9 a\\u{1b}[2Jb; \
             remove when unused; unlisted (a handle had no table word)"
        );
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(printable("demo.atomic"), "demo.atomic");
        assert_eq!(printable("café \\ \""), "café \\ \"", "no control: as is");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("a\x1b[2Jb\t"), "a\\u{1b}[2Jb\\t");
    }
}
