//! `shmstate inspect FILE`: the named objects of a region, for people and scripts.

use std::path::Path;

use shmstate::{EntryState, Region};

use crate::Failure;

/// Prints one line per directory entry: name, type, length, offset, size, state, creator.
pub fn run(path: &Path) -> Result<(), Failure> {
    let region = Region::open(path).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        match e {
            shmstate::RegionError::NotFound(_) => Failure::usage(msg),
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
            e.name,
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
