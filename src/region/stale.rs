//! Recreating a region whose file has an older format than this build's, once no live
//! process uses it ([`RegionOptions::recreate_stale_format`]).
//!
//! # Who uses the old file
//!
//! An older format may have no attach table (and a newer build must not trust one whose
//! layout it does not know), so the kernel decides, twice:
//!
//! - Every process's `/proc/<pid>/maps` is searched for a mapping of the file. The
//!   file's identity is taken from this process's own `/proc/self/maps` line for a probe
//!   mapping of one page of it (the device and inode exactly as the kernel prints them,
//!   also on overlay filesystems, where `stat` and the mappings name different
//!   devices); the probe is unmapped before the search. This finds every mapper `/proc`
//!   lets this process read, read-only ones included. A process whose mappings cannot be
//!   read (another user's, or one that is not dumpable, such as a container's init)
//!   counts as a user (the call fails and names it), unless it cannot have opened the
//!   file (its owner, the owner of `/proc/<pid>`, is neither root nor the file's owner,
//!   and the file grants nothing to group and others).
//! - And, always, a read lease (`F_SETLEASE`, `F_RDLCK`) must be granted: the kernel
//!   grants it only while no open file description of the file is open for writing, and
//!   a region's user maps it writable, which keeps it open for writing (also after it
//!   closed its descriptor). This finds the writers `/proc` does not show (`/proc`
//!   mounted `hidepid=2` or `subset=pid`, another PID namespace). A region opener of
//!   this build holds the old file open for writing for the few syscalls it takes to
//!   find it stale, so the lease is tried a few times, for up to 100 ms. Only the file's
//!   owner (or a process with `CAP_LEASE`) gets a lease, on a filesystem that has them
//!   (tmpfs, ext4, xfs, btrfs, ...): anyone else fails with
//!   [`OpenError::StaleInUse`] (both lists empty).
//!
//! The lease is released at once. An open of the file for writing meanwhile (by any
//! process) waits for it: openers of this build (their descriptors are `O_NONBLOCK`)
//! retry every millisecond until their timeout, then fail with
//! [`OpenError::Timeout`]; a blocking open (another build, another tool) waits until
//! the lease is released, at most `/proc/sys/fs/lease-break-time` (45 s by default) if
//! the holder is stopped. Such an open makes the kernel send `SIGURG` to this process
//! (ignored by default; not the default `SIGIO`, which would end it): a program with
//! its own `SIGURG` handler sees a spurious one.
//!
//! # Races
//!
//! Recreators serialise on an exclusive `flock` of the old file (released by the kernel
//! if the holder dies; a holder stopped makes the others give up at their timeout).
//! Under the lock, a recreator checks that the path still names the old file, searches
//! for users, unlinks the path and creates the new region with `O_EXCL` semantics (a
//! `link` that fails if a file appeared meanwhile; then that one is opened). The next
//! recreator finds the path naming another file and opens it.
//!
//! # Crash windows
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | lock taken, users being searched | the old file, locked | the kernel releases the lock with the dead process; the next recreator goes on at once (failpoint test `a_recreator_killed_holding_the_lock_leaves_it_to_the_next`) |
//! | lease held (between `F_SETLEASE` and its release) | the old file, locked and leased | the kernel drops both with the dead process; openers waiting for the lease (of this build, and blocking ones) go on at once (failpoint test `a_recreator_stopped_holding_its_lease_makes_openers_time_out_and_killed_releases_it`) |
//! | old file unlinked, new region not yet created | no file at the path | nothing to repair: the next `open_or_create` creates the region, an `open` finds none (`NotFound`) until then (failpoint test `a_recreator_killed_after_unlinking_leaves_the_path_free`) |
//! | new region created (linked) | the new region, whole (it is built unnamed and linked at once) | — |
//!
//! A recreator stopped (SIGSTOP) holding the lock makes the other recreators fail with
//! [`OpenError::Timeout`] at their timeout; stopped holding the lease, it makes every
//! open of the file for writing wait: those of this build fail with
//! [`OpenError::Timeout`] at their timeout, a blocking open waits up to the kernel's
//! lease-break time (then the kernel breaks the lease). Stopped after the unlink, it
//! holds nothing. A recreator waiting for the lock re-checks the path each round, so a
//! lock that outlives its recreation (a child forked meanwhile inherited the
//! descriptor) does not keep it from opening the new region.
//!
//! # Limits
//!
//! A process of an older build that opens the old file between the search and the
//! unlink keeps using the unlinked file, unseen by the new region's users: stop the old
//! build's processes before upgrading. A process that maps the file only read-only (a
//! reader such as an old build's inspection tool) and that the search cannot see (in
//! another PID namespace, or hidden by `hidepid`) is not detected: the lease is granted
//! despite readers; it keeps reading the unlinked old file.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use memmap2::MmapOptions;
use rustix::fs::{AtFlags, CWD, FlockOperation};
use rustix::io::Errno;

use super::error::OpenError;
use super::format::{MAGIC, VERSION};

/// What the recreation found.
pub(super) enum Stale {
    /// The path names another file now (another recreator replaced it): open again.
    Replaced,
    /// Nobody uses the old file, which is unlinked: create the new region.
    Unlinked(Lock),
}

/// The exclusive `flock` on the old file, held until the new region is in place.
pub(super) struct Lock(#[allow(dead_code)] OwnedFd);

/// Checks that the region file `fd` (opened read-only from `path`) has an older format than this
/// build's and that no live process maps it, then unlinks `path`, under the recreators'
/// lock, which the caller holds until it has created the new region.
///
/// # Errors
///
/// [`OpenError::BadMagic`] or [`OpenError::VersionMismatch`] if the file is not a
/// region of an older format; [`OpenError::StaleInUse`] if a process may use it;
/// [`OpenError::Timeout`] if another recreator held the lock until `deadline`, or the search
/// of `/proc` did not finish by then;
/// [`OpenError::Io`].
pub(super) fn unlink_if_unused(
    path: &Path,
    fd: OwnedFd,
    deadline: Instant,
) -> Result<Stale, OpenError> {
    if !lock(path, &fd, deadline)? {
        return Ok(Stale::Replaced);
    }
    crate::failpoint::hit(crate::failpoint::Point::RegionStaleLocked);
    if !names(path, &fd)? {
        return Ok(Stale::Replaced);
    }
    let st = rustix::fs::fstat(&fd)?;
    let found = stale_version(&fd)?;
    let key = mapping_key(&fd)?;
    let (users, unreadable) =
        users(&key, (st.st_uid, st.st_mode), deadline).ok_or(OpenError::Timeout)?;
    // Both: the search finds read-only mappers (a read lease is granted despite them),
    // the lease finds writers `/proc` does not show (`hidepid`, another PID namespace).
    if !users.is_empty() || !no_writer(&fd, deadline) {
        return Err(OpenError::StaleInUse {
            found,
            users,
            unreadable,
        });
    }
    match rustix::fs::unlink(path) {
        Ok(()) | Err(Errno::NOENT) => {
            crate::failpoint::hit(crate::failpoint::Point::RegionStaleUnlinked);
            Ok(Stale::Unlinked(Lock(fd)))
        }
        Err(e) => Err(e.into()),
    }
}

/// `F_SETSIG` (`include/uapi/asm-generic/fcntl.h`: 10 on every Linux architecture; the
/// `libc` crate exports it for few targets).
const F_SETSIG: libc::c_int = 10;

/// Whether the kernel grants a read lease on `fd` (opened read-only), tried for up to
/// 100 ms (and no later than `deadline`): no open file description of the file is open
/// for writing, so no process maps it writable. `false` if one stays open, or if leases
/// are not available (not the file's owner, a filesystem without them, leases
/// disabled).
fn no_writer(fd: &OwnedFd, deadline: Instant) -> bool {
    let fd = fd.as_raw_fd();
    // SAFETY: `fcntl(F_SETSIG)` on a descriptor this process owns, with an integer
    // argument; it only chooses the signal a lease break sends to this process.
    if unsafe { libc::fcntl(fd, F_SETSIG, libc::SIGURG) } != 0 {
        return false;
    }
    let until = deadline.min(Instant::now() + Duration::from_millis(100));
    loop {
        // SAFETY: `fcntl(F_SETLEASE)` on a descriptor this process owns, integer argument.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0 {
            crate::failpoint::hit(crate::failpoint::Point::RegionStaleLeased);
            // SAFETY: as above; releases the lease just taken.
            unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
            return true;
        }
        let busy = std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
        if !busy || Instant::now() >= until {
            return false;
        }
        // A writer that is only passing (an opener finding the file stale) is gone
        // within a few syscalls.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the recreators' exclusive `flock` on `fd` (the file at `path`), polling until
/// `deadline`. `false` if the path names another file meanwhile: the lock's holder (or a
/// child that inherited its descriptor, in which the lock outlives the recreation)
/// replaced it.
fn lock(path: &Path, fd: &OwnedFd, deadline: Instant) -> Result<bool, OpenError> {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK | Errno::INTR) if Instant::now() < deadline => {
                if !names(path, fd)? {
                    return Ok(false);
                }
                // Another recreator holds it for a few syscalls (unless it is stopped).
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Errno::WOULDBLOCK) => return Err(OpenError::Timeout),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `path` still names the file of `fd`.
fn names(path: &Path, fd: &OwnedFd) -> Result<bool, OpenError> {
    let st = rustix::fs::fstat(fd)?;
    match rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(now.st_dev == st.st_dev && now.st_ino == st.st_ino),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The version of the file, if it is a shmstate region of an older format.
fn stale_version(fd: &OwnedFd) -> Result<u32, OpenError> {
    let file = std::fs::File::from(fd.try_clone()?);
    let mut head = [0u8; 12];
    // A copy through the kernel into a local buffer (nobody maps it: checked next, and
    // nothing is decided from these bytes but "stale or not").
    file.read_exact_at(&mut head, 0)?;
    let magic = u64::from_ne_bytes(head[..8].try_into().unwrap_or_default());
    let version = u32::from_ne_bytes(head[8..].try_into().unwrap_or_default());
    if magic != MAGIC {
        return Err(OpenError::BadMagic { found: magic });
    }
    if version >= VERSION {
        return Err(OpenError::VersionMismatch {
            found: version,
            expected: VERSION,
        });
    }
    Ok(version)
}

/// The device and inode of the file of `fd`, as `/proc/<pid>/maps` prints them: read
/// from this process's own line for a one-page probe mapping (unmapped on return).
fn mapping_key(fd: &OwnedFd) -> Result<(String, String), OpenError> {
    let probe = MmapOptions::new().len(1).map_raw_read_only(fd)?;
    let start = probe.as_ptr() as usize;
    let maps = std::fs::File::open("/proc/self/maps")?;
    for line in BufReader::new(maps).lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(_), Some(_), Some(dev), Some(ino)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let lo = range.split('-').next().unwrap_or("");
        if usize::from_str_radix(lo, 16) == Ok(start) {
            return Ok((dev.to_owned(), ino.to_owned()));
        }
    }
    Err(OpenError::Io(std::io::Error::other(
        "the probe mapping is missing from /proc/self/maps",
    )))
}

/// The processes mapping the file `key`, and those whose mappings cannot be read and
/// that may have opened the file (see the module docs). `None` if `deadline` passed
/// before every process was searched.
fn users(
    key: &(String, String),
    file: (u32, u32),
    deadline: Instant,
) -> Option<(Vec<u32>, Vec<u32>)> {
    let mut users = Vec::new();
    let mut unreadable = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        // No /proc: nobody's mappings can be read (listed as pid 0).
        return Some((users, vec![0]));
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if Instant::now() >= deadline {
            return None;
        }
        match std::fs::File::open(entry.path().join("maps")) {
            Ok(f) => {
                let maps = BufReader::new(f);
                let maps_it = maps.lines().map_while(Result::ok).any(|line| {
                    let mut fields = line.split_ascii_whitespace().skip(3);
                    fields.next() == Some(key.0.as_str()) && fields.next() == Some(key.1.as_str())
                });
                if maps_it {
                    users.push(pid);
                }
            }
            // Exited meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                if may_open(entry.path().as_path(), file) {
                    unreadable.push(pid);
                }
            }
        }
    }
    users.sort_unstable();
    unreadable.sort_unstable();
    Some((users, unreadable))
}

/// Whether the process at `/proc/<pid>` may have opened the file of owner and mode
/// `(uid, mode)`: unless its owner is neither root nor the file's owner and the file
/// grants nothing to group and others.
fn may_open(proc_dir: &Path, (uid, mode): (u32, u32)) -> bool {
    let Ok(p) = std::fs::metadata(proc_dir) else {
        return true;
    };
    p.uid() == 0 || p.uid() == uid || mode & 0o077 != 0
}
