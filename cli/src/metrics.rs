//! `shmstate metrics FILE…`: the Prometheus exposition of one or more region files, read
//! through read-only mappings (the command never writes a byte of a region).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use shmstate::metrics::{Exposition, SkipReason};
use shmstate::region::ReadOnlyRegion;

use crate::Failure;

/// The exposition of `paths` (all regions in one exposition, families grouped across
/// them), with the objects left out and why.
pub fn collect(paths: &[PathBuf]) -> Result<Exposition, Failure> {
    let mut e = Exposition::new();
    for path in paths {
        let view = open(path)?;
        e.add(&view);
    }
    Ok(e)
}

fn open(path: &Path) -> Result<ReadOnlyRegion, Failure> {
    ReadOnlyRegion::open(path).map_err(|err| match err {
        shmstate::OpenError::NotFound(_) => {
            Failure::usage(format!("{}: no such region file", path.display()))
        }
        err => Failure::runtime(format!("{}: {err}", path.display())),
    })
}

/// A line for stderr about an object left out of the exposition.
pub fn skip_note(object: &str, reason: &SkipReason) -> String {
    let why = match reason {
        SkipReason::InvalidName => "its name is not a metric name and cannot be sanitised",
        SkipReason::Duplicate => "a series of the same name and labels came first",
        SkipReason::KindConflict => "its metric name is taken by a metric of another kind",
        SkipReason::ReservedLabel => "a histogram may not have an `le` label",
        _ => "it cannot be written",
    };
    format!("shmstate: left out {object:?}: {why}")
}

/// Prints the exposition of `paths` to stdout; notes about left-out objects to stderr.
pub fn run(paths: &[PathBuf]) -> Result<u8, Failure> {
    let e = collect(paths)?;
    for s in e.skipped() {
        eprintln!("{}", skip_note(&s.object, &s.reason));
    }
    let mut out = std::io::stdout().lock();
    e.write(&mut out)
        .and_then(|()| out.flush())
        .map_err(|err| Failure::runtime(format!("writing the exposition: {err}")))?;
    Ok(0)
}
