//! `shmstate inspect FILE`: the named objects of a region and their current state, for
//! people and scripts.
//!
//! The file is opened read-only ([`ReadOnlyRegion`]): inspecting never writes a byte,
//! needs only read permission, and never waits for a holder. The state of each object is
//! read by single word loads ([`crate::state`]), so it is a snapshot that may be stale
//! when printed, and never a reason to panic or hang whatever the bytes are.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value as Json};
use shmstate::region::ReadOnlyRegion;
use shmstate::{EntryInfo, EntryState};

use crate::Failure;
use crate::state;

/// The exit code when an object needs attention: a lock held by a dead thread (or with a
/// garbage lock word), or a seqlock torn by a writer that died mid-write.
pub const UNHEALTHY: u8 = 3;

/// The `--json` document's schema version.
pub const SCHEMA_VERSION: u32 = 1;

/// The `--json` document.
#[derive(Serialize)]
struct Document {
    schema_version: u32,
    path: String,
    size: usize,
    capacity: usize,
    unhealthy: bool,
    objects: Vec<Object>,
}

/// One object of the `--json` document.
#[derive(Serialize)]
struct Object {
    name: String,
    #[serde(rename = "type")]
    ty: String,
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
}

/// Prints the objects of the region at `path` (a table, or one JSON document if `json`);
/// returns the process's exit code: 0, or [`UNHEALTHY`].
pub fn run(path: &Path, json: bool) -> Result<u8, Failure> {
    let region = ReadOnlyRegion::open(path).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        match e {
            shmstate::OpenError::NotFound(_) => Failure::usage(msg),
            _ => Failure::runtime(msg),
        }
    })?;
    let objects: Vec<Object> = region
        .entries()
        .iter()
        .map(|e| object(&region, e))
        .collect();
    let unhealthy = objects.iter().any(|o| o.unhealthy);
    if json {
        let doc = Document {
            schema_version: SCHEMA_VERSION,
            path: path.display().to_string(),
            size: region.size(),
            capacity: region.capacity(),
            unhealthy,
            objects,
        };
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Failure::runtime(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        table(path, &region, &objects);
    }
    Ok(if unhealthy { UNHEALTHY } else { 0 })
}

fn object(region: &ReadOnlyRegion, e: &EntryInfo) -> Object {
    let reading = state::read(region, e);
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
        },
        creator: e.owner,
        readable,
        unhealthy: reading.unhealthy,
        summary: reading.text,
        fields: reading.fields,
    }
}

/// One line per directory entry: name, type, length, offset, size, entry state, creator,
/// and the object's state.
fn table(path: &Path, region: &ReadOnlyRegion, objects: &[Object]) {
    println!(
        "{}: {} bytes, {} of {} directory entries used",
        path.display(),
        region.size(),
        objects.len(),
        region.capacity()
    );
    println!(
        "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}  value",
        "name", "type", "len", "offset", "size", "state", "creator"
    );
    for o in objects {
        let mark = if o.unhealthy { "!! " } else { "" };
        let value = if o.readable { o.summary.as_str() } else { "-" };
        println!(
            "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}  {mark}{}",
            printable(&o.name),
            o.ty,
            o.len,
            o.offset,
            o.size,
            o.state,
            o.creator,
            value
        );
    }
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
    use super::printable;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(printable("demo.atomic"), "demo.atomic");
        assert_eq!(printable("café \\ \""), "café \\ \"", "no control: as is");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("a\x1b[2Jb\t"), "a\\u{1b}[2Jb\\t");
    }
}
