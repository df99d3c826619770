//! `shmstate rm FILE` and `shmstate gc DIR`: removing region files that nobody uses.
//!
//! Both remove through the region's own protocol ([`Region::remove_unused`],
//! [`Region::remove_forced`]): the file is marked retired before it is unlinked, so a
//! process opening it at that moment gets a fresh region or a clear error, never the
//! removed file. Neither attaches to a region (they are not listed among its processes,
//! so they never keep a region alive nor make it look in use), and `gc` looks at each
//! file through a read-only mapping first.

use std::path::{Path, PathBuf};

use shmstate::region::ReadOnlyRegion;
use shmstate::{Attached, OpenError, Region, RemoveError, RemoveObjectError};

use crate::Failure;

/// The exit code when `rm` refuses: live (or unlisted) processes have the region open,
/// or another process is removing it.
pub const IN_USE: u8 = 3;

/// `shmstate rm [--force] FILE`: removes the region file unless a live process has it
/// open (with `force`, even then). Returns the exit code: 0, or [`IN_USE`].
pub fn rm(path: &Path, force: bool) -> Result<u8, Failure> {
    let result = if force {
        Region::remove_forced(path)
    } else {
        Region::remove_unused(path)
    };
    match result {
        Ok(()) => Ok(0),
        Err(RemoveError::InUse { attached }) => {
            eprintln!(
                "shmstate: {}: in use by {}; not removed (--force removes it anyway)",
                path.display(),
                describe(&attached)
            );
            Ok(IN_USE)
        }
        Err(RemoveError::Unlisted) => {
            eprintln!(
                "shmstate: {}: a process had it open without an attach-table word (usually: the \
                 table overflowed), so processes not listed may have it open; not removed (--force \
                 removes it anyway)",
                path.display()
            );
            Ok(IN_USE)
        }
        Err(RemoveError::Busy) => {
            eprintln!(
                "shmstate: {}: another process is removing it",
                path.display()
            );
            Ok(IN_USE)
        }
        Err(RemoveError::Open(e)) => Err(open_failure(path, e)),
        Err(e) => Err(Failure::runtime(format!("{}: {e}", path.display()))),
    }
}

/// `shmstate rm --object NAME FILE`: removes one object of the region (a handle of this
/// process's own, which holds no reference to it).
pub fn rm_object(path: &Path, name: &str) -> Result<u8, Failure> {
    match Region::remove_object(path, name) {
        Ok(()) => Ok(0),
        Err(RemoveObjectError::InUse { pids, .. }) => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            eprintln!(
                "shmstate: {}: object {name:?} is in use by process(es) {}; not removed",
                path.display(),
                pids.join(", ")
            );
            Ok(IN_USE)
        }
        Err(RemoveObjectError::Unlisted) => {
            eprintln!(
                "shmstate: {}: a process had it open without an attach-table word (usually: the \
                 table overflowed), so processes not listed may use {name:?}; not removed",
                path.display()
            );
            Ok(IN_USE)
        }
        Err(RemoveObjectError::Open(e)) => Err(open_failure(path, e)),
        Err(e @ (RemoveObjectError::NotFound { .. } | RemoveObjectError::InvalidName { .. })) => {
            Err(Failure::usage(format!("{}: {e}", path.display())))
        }
        Err(e) => Err(Failure::runtime(format!("{}: {e}", path.display()))),
    }
}

/// `shmstate gc [--dry-run] [--all] DIR`: removes every region file directly in `dir` that
/// no live process has open and that was created with `remove_when_unused` (its last
/// process was killed before it could remove it), or that a killed remover left
/// half-removed; with `all`, also regions created without `remove_when_unused`
/// (persistent state nobody has open now). Prints one line per file removed (or, with
/// `dry_run`, that would be). Files that are not regions of this format, and regions
/// that a process had open unlisted (usually: its attach table overflowed), are left
/// alone. A removal that fails (the file cannot be unlinked) is reported, the others go
/// on, and the exit code is 1.
pub fn gc(dir: &Path, dry_run: bool, all: bool) -> Result<u8, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let msg = format!("{}: {e}", dir.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::usage(msg)
        } else {
            Failure::runtime(msg)
        }
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        // Not symbolic links (regions refuse them), not dot files (a creator's temporary
        // files), regular files only.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    let mut failed = 0;
    for path in paths {
        // Not a region (or another format): not ours to remove.
        let Ok(view) = ReadOnlyRegion::open(&path) else {
            continue;
        };
        let retired = view.is_retired();
        let unused = !view.has_unlisted() && view.attached().iter().all(|a| !a.alive);
        let wanted = retired || (unused && (all || view.remove_when_unused()));
        if !wanted {
            continue;
        }
        if dry_run {
            println!("would remove {}", path.display());
            continue;
        }
        // The check again, race-free: a process may have opened it meanwhile. Only the
        // file viewed: another one put at the path since was not looked at.
        match view.remove_unused(&path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(
                RemoveError::InUse { .. }
                | RemoveError::Unlisted
                | RemoveError::Busy
                | RemoveError::Replaced,
            ) => {}
            // Gone meanwhile (another gc, its last user): nothing to do.
            Err(RemoveError::Open(OpenError::NotFound(_))) => {}
            Err(e) => {
                eprintln!("shmstate: {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::runtime(format!(
            "{}: {failed} region file(s) not removed",
            dir.display()
        )));
    }
    Ok(0)
}

/// "process 12 (2 handles), process 34".
fn describe(attached: &[Attached]) -> String {
    attached
        .iter()
        .map(|a| match a.handles {
            1 => format!("process {}", a.pid),
            n => format!("process {} ({n} handles)", a.pid),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn open_failure(path: &Path, e: OpenError) -> Failure {
    let msg = format!("{}: {e}", path.display());
    match e {
        OpenError::NotFound(_) => Failure::usage(msg),
        _ => Failure::runtime(msg),
    }
}
