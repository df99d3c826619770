//! `shmstate inspect FILE`: the named objects of a region, for people and scripts.

use std::path::Path;

use shmstate::{EntryState, Region};

use crate::Failure;

/// Prints one line per directory entry: name, type, length, offset, size, state, creator.
pub fn run(path: &Path) -> Result<(), Failure> {
    let region = Region::open(path).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        match e {
            shmstate::OpenError::NotFound(_) => Failure::usage(msg),
            _ => Failure::runtime(msg),
        }
    })?;
    let entries = region.entries();
    println!(
        "{}: {} bytes, {} of {} directory entries used",
        path.display(),
        region.size(),
        entries.len(),
        region.capacity()
    );
    println!(
        "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}",
        "name", "type", "len", "offset", "size", "state", "creator"
    );
    for e in entries {
        let state = match e.state {
            EntryState::Claimed => "claimed",
            EntryState::Initialising => "initialising",
            EntryState::Ready => "ready",
        };
        println!(
            "{:<24} {:<28} {:>8} {:>10} {:>10}  {:<12} {:>8}",
            printable(&e.name),
            e.tag.to_string(),
            e.len,
            e.offset,
            e.size,
            state,
            e.owner
        );
    }
    Ok(())
}

/// `name` as it is safe to print: names come from shared memory, which any process with
/// access may have written, so a name with control characters (a newline that fakes a
/// row, a terminal escape sequence) is shown escaped, Rust-style (`\n`, `\u{1b}`); other
/// names are shown as they are.
fn printable(name: &str) -> String {
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
