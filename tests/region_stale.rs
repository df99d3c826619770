//! Regions of an older format (`RegionOptions::recreate_stale_format`): replaced by a new
//! region only when asked, only when older, and never while a live process maps the old
//! file; racing recreators make exactly one new region.
//!
//! The format version is the `u32` at byte 8 of the file (`src/region/format.rs`); the
//! tests write an older one there, as an older build's region would have.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use common::{SharedMem, TempDir, fork_children, wait_all, watchdog};
use shmstate::sync::Ordering;
use shmstate::{Counter, OpenError, OpenOrCreateError, Region, RegionOptions, Value};

const SIZE: u64 = 1 << 16;

fn write_version(path: &Path, version: u32) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&version.to_ne_bytes(), 8).unwrap();
}

fn version(path: &Path) -> u32 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 8).unwrap();
    u32::from_ne_bytes(b)
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// A region at `path` with one counter at 7, then marked as made by format version 5.
fn stale_region(path: &Path) {
    let r = Region::create(path, SIZE).unwrap();
    r.get_or_default::<Counter>("old").unwrap().add(7);
    drop(r);
    write_version(path, 5);
}

fn recreating() -> RegionOptions {
    RegionOptions::new().recreate_stale_format(true)
}

#[test]
fn an_older_format_fails_without_the_option_and_is_recreated_with_it() {
    let dir = TempDir::new("stale-basic");
    let path = dir.0.join("r");
    let current = {
        let fresh = dir.0.join("fresh");
        drop(Region::create(&fresh, SIZE).unwrap());
        version(&fresh)
    };
    stale_region(&path);
    let old_inode = inode(&path);
    let err = Region::open(&path).unwrap_err();
    assert!(
        matches!(err, OpenError::VersionMismatch { found: 5, expected } if expected == current),
        "{err:?}"
    );
    let err = Region::open_or_create(&path, SIZE).unwrap_err();
    assert!(
        matches!(
            err,
            OpenOrCreateError::Open(OpenError::VersionMismatch { found: 5, .. })
        ),
        "{err:?}"
    );
    assert_eq!(inode(&path), old_inode, "untouched without the option");
    // `open` recreates it with the old file's length.
    let r = recreating().open(&path).unwrap();
    assert_ne!(inode(&path), old_inode);
    assert_eq!(version(&path), current);
    assert_eq!(r.size() as u64, SIZE);
    assert!(
        r.entries().is_empty(),
        "a new region: the old objects are gone"
    );
    r.get_or_default::<Counter>("new").unwrap().add(1);
    drop(r);
    // A current region is opened as it is, option or not.
    let again = recreating().open_or_create(&path, 4 * SIZE).unwrap();
    assert_eq!(again.get::<Counter>("new").unwrap().get(), 1);
}

#[test]
fn open_or_create_recreates_with_the_size_and_options_given() {
    let dir = TempDir::new("stale-ooc");
    let path = dir.0.join("r");
    stale_region(&path);
    let r = recreating()
        .capacity(8)
        .max_size(4 * SIZE)
        .open_or_create(&path, 2 * SIZE)
        .unwrap();
    assert_eq!(
        (r.size() as u64, r.max_size() as u64, r.capacity()),
        (2 * SIZE, 4 * SIZE, 8)
    );
}

#[test]
fn a_newer_format_or_another_file_is_never_recreated() {
    let dir = TempDir::new("stale-newer");
    let path = dir.0.join("r");
    drop(Region::create(&path, SIZE).unwrap());
    let current = version(&path);
    write_version(&path, current + 1);
    let old_inode = inode(&path);
    let err = recreating().open(&path).unwrap_err();
    assert!(
        matches!(err, OpenError::VersionMismatch { found, .. } if found == current + 1),
        "{err:?}"
    );
    assert_eq!(inode(&path), old_inode);
    // Not a region at all.
    let other = dir.0.join("other");
    std::fs::write(&other, vec![0xabu8; 4096]).unwrap();
    let err = recreating().open(&other).unwrap_err();
    assert!(matches!(err, OpenError::BadMagic { .. }), "{err:?}");
    assert_eq!(std::fs::read(&other).unwrap(), vec![0xabu8; 4096]);
}

#[test]
fn a_stale_region_mapped_by_a_live_process_is_not_recreated() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("stale-live");
    let path = dir.0.join("r");
    drop(Region::create(&path, SIZE).unwrap());
    // 1: the child has the region mapped. 2: the parent is done with it.
    let step = SharedMem::<Value<u32>>::new(1);
    let pids = fork_children(1, |_| {
        let r = Region::open(&path).unwrap();
        r.get_or_default::<Counter>("old").unwrap().add(7);
        step.get().store(1, Ordering::Release);
        while step.get().load(Ordering::Acquire) != 2 {
            std::thread::yield_now();
        }
        drop(r);
    });
    while step.get().load(Ordering::Acquire) != 1 {
        std::thread::yield_now();
    }
    // The child (of the "old build") keeps the file mapped.
    write_version(&path, 5);
    let old_inode = inode(&path);
    let err = recreating().open_or_create(&path, SIZE).unwrap_err();
    match &err {
        OpenOrCreateError::Open(OpenError::StaleInUse {
            found: 5, users, ..
        }) => {
            assert_eq!(users, &vec![pids[0] as u32], "{err}");
        }
        other => panic!("expected StaleInUse, got {other:?}"),
    }
    assert_eq!(inode(&path), old_inode, "nothing changed");
    step.get().store(2, Ordering::Release);
    wait_all(&pids, Duration::from_secs(20));
    // The child is gone: now it is recreated.
    let r = recreating().open_or_create(&path, SIZE).unwrap();
    assert_ne!(inode(&path), old_inode);
    assert!(r.entries().is_empty());
}

#[test]
fn racing_recreators_make_exactly_one_new_region() {
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("stale-race");
    let path = dir.0.join("r");
    stale_region(&path);
    let old_inode = inode(&path);
    let pids = fork_children(4, |_| {
        let r = recreating().open_or_create(&path, SIZE).unwrap();
        r.get_or_default::<Counter>("n").unwrap().add(1);
    });
    wait_all(&pids, Duration::from_secs(40));
    assert_ne!(inode(&path), old_inode);
    let r = Region::open(&path).unwrap();
    assert_eq!(
        r.get::<Counter>("n").unwrap().get(),
        4,
        "all four used the one new region"
    );
    // Nothing else was left in the directory.
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("r")]);
}

/// Whether another descriptor of this process than `except`, opened read-only, names
/// the file at `path` (a recreator's descriptor of the old file).
fn read_only_descriptor_of(path: &Path, except: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    dir.flatten().any(|e| {
        let fd = e.file_name().to_string_lossy().parse::<i32>().unwrap_or(-1);
        fd != except
            && std::fs::read_link(e.path()).is_ok_and(|t| t == path)
            && std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).is_ok_and(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                    .is_some_and(|f| f & 3 == 0)
            })
    })
}

/// The recreators' lock held by an open file description that outlives the recreation
/// (a child forked by another thread while the lock was held keeps a copy): a recreator
/// waiting for it opens the region that replaced the old file, instead of waiting for
/// the lock until its timeout.
#[test]
fn a_recreator_waiting_for_a_lock_that_outlives_the_old_file_opens_the_new_region() {
    use std::os::fd::AsRawFd;
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("stale-lock-outlives");
    let path = dir.0.join("r");
    stale_region(&path);
    let held = std::fs::File::open(&path).unwrap();
    // SAFETY: `flock` on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            recreating()
                .timeout(Duration::from_secs(10))
                .open(&path)
                .map(|r| r.get::<Counter>("new").map(|c| c.get()).ok())
        })
    };
    // The waiter has opened the old file and polls its lock.
    while !read_only_descriptor_of(&path, held.as_raw_fd()) {
        std::thread::yield_now();
    }
    // The old file is replaced while the lock's copy lives on: by a rename, so that the
    // path never names nothing (a waiter that looked in such a gap would rightly report
    // `NotFound`: `open` does not create).
    let next = dir.0.join("next");
    let new = Region::create(&next, SIZE).unwrap();
    new.get_or_default::<Counter>("new").unwrap().add(3);
    std::fs::rename(&next, &path).unwrap();
    let started = std::time::Instant::now();
    let got = waiter.join().unwrap();
    assert!(
        matches!(got, Ok(Some(3))),
        "{got:?} after {:?}",
        started.elapsed()
    );
    drop(held);
}

/// `F_SETSIG` (10 on every Linux architecture).
const F_SETSIG: libc::c_int = 10;

/// Takes a read lease on `path` as a recreator does while it checks for writers.
fn lease(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: `fcntl` with integer arguments on a descriptor this test owns.
    unsafe {
        assert_eq!(libc::fcntl(f.as_raw_fd(), F_SETSIG, libc::SIGURG), 0);
        assert_eq!(
            libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK),
            0
        );
    }
    f
}

#[test]
fn an_open_racing_a_recreators_lease_waits_for_it_until_its_timeout() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("stale-lease");
    let path = dir.0.join("r");
    stale_region(&path);
    let held = lease(&path);
    // While the lease is held, opens for writing wait (never a raw `EWOULDBLOCK`).
    for options in [RegionOptions::new(), recreating()] {
        let err = options
            .timeout(Duration::from_millis(50))
            .open(&path)
            .unwrap_err();
        assert!(matches!(err, OpenError::Timeout), "{err:?}");
    }
    let err = recreating()
        .timeout(Duration::from_millis(50))
        .open_or_create(&path, SIZE)
        .unwrap_err();
    assert!(
        matches!(err, OpenOrCreateError::Open(OpenError::Timeout)),
        "{err:?}"
    );
    assert_eq!(version(&path), 5, "nothing changed");
    drop(held);
    assert!(matches!(
        Region::open(&path),
        Err(OpenError::VersionMismatch { found: 5, .. })
    ));
    let r = recreating().open(&path).unwrap();
    assert!(r.entries().is_empty());
}

/// The stale file at `path` made owned by uid and gid 65534 (`nobody`), as its directory.
fn stale_owned_by_nobody(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("r");
    let _ = std::fs::remove_file(&path);
    stale_region(&path);
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    path
}

/// Maps one page of `path` shared and writable, and closes the descriptor (the mapping
/// keeps the file open for writing); returns the address.
fn map_writable(path: &Path) -> *mut libc::c_void {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: a new shared mapping of one page of a file this test opened.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p
}

/// In a forked child running as uid 65534 (after remounting `/proc` with `hidepid=2` in
/// a private mount namespace if `hidepid`), recreates the stale region at `path`:
/// 0 `StaleInUse`, 1 recreated, 2 another error, 3 the setup failed. The child first
/// unmaps `inherited` (its copy of this process's mapping).
fn recreate_as_nobody(path: &Path, hidepid: bool, inherited: *mut libc::c_void) -> i32 {
    // SAFETY: fork in a test; the child makes plain syscalls and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain syscalls with valid C strings, in the child only.
        unsafe {
            if !inherited.is_null() {
                libc::munmap(inherited, 4096);
            }
            if hidepid
                && (libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        0,
                        c"hidepid=2".as_ptr().cast(),
                    ) != 0)
            {
                libc::_exit(3);
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(3);
            }
        }
        let code = match recreating()
            .timeout(Duration::from_secs(2))
            .open_or_create(path, SIZE)
        {
            Err(OpenOrCreateError::Open(OpenError::StaleInUse { .. })) => 0,
            Ok(_) => 1,
            Err(e) => {
                eprintln!("child: {e:?}");
                2
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    common::exit_code(pid).unwrap_or(-1)
}

/// The check's lease path: a recreator running as another user (uid 65534) cannot read
/// this (root) process's mappings, and must not replace the file while this process
/// maps it writable, also when `/proc` hides other users' processes (`hidepid=2`).
/// Needs root (to switch users and mount `/proc`).
#[test]
fn a_writer_hidden_from_the_recreator_keeps_the_stale_file() {
    watchdog(Duration::from_secs(60));
    // SAFETY: `geteuid` has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch users and remount /proc");
        return;
    }
    let dir = TempDir::new("stale-hidden-writer");
    let path = stale_owned_by_nobody(&dir.0);
    let old_inode = inode(&path);
    let p = map_writable(&path);
    assert_eq!(recreate_as_nobody(&path, false, p), 0, "unreadable writer");
    match recreate_as_nobody(&path, true, p) {
        3 => eprintln!("hidepid case skipped: cannot remount /proc here"),
        verdict => assert_eq!(verdict, 0, "writer hidden by hidepid=2"),
    }
    assert_eq!(inode(&path), old_inode, "never replaced");
    // SAFETY: unmapping this test's own mapping.
    unsafe { libc::munmap(p, 4096) };
    // Unmapped: the same user recreates it.
    assert_eq!(recreate_as_nobody(&path, false, std::ptr::null_mut()), 1);
    assert_ne!(inode(&path), old_inode);
}

/// Crash windows of the recreation (a build with `--cfg shmstate_test_hooks`).
#[cfg(shmstate_test_hooks)]
mod crash {
    use super::*;
    use common::{child_stopped_at, kill_and_reap};
    use shmstate::failpoint::Point;

    #[test]
    fn a_recreator_killed_holding_the_lock_leaves_it_to_the_next() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("stale-crash-locked");
        let path = dir.0.join("r");
        stale_region(&path);
        let old_inode = inode(&path);
        let pid = child_stopped_at(Point::RegionStaleLocked, || {
            let _ = recreating().open_or_create(&path, SIZE);
        });
        // Stopped holding the lock: another recreator gives up at its timeout.
        let err = recreating()
            .timeout(Duration::from_millis(50))
            .open_or_create(&path, SIZE)
            .unwrap_err();
        assert!(
            matches!(err, OpenOrCreateError::Open(OpenError::Timeout)),
            "{err:?}"
        );
        assert_eq!(inode(&path), old_inode, "nothing changed");
        kill_and_reap(pid);
        // The kernel released its lock with it.
        let r = recreating().open_or_create(&path, SIZE).unwrap();
        assert_ne!(inode(&path), old_inode);
        assert!(r.entries().is_empty());
    }

    #[test]
    fn a_recreator_killed_after_unlinking_leaves_the_path_free() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("stale-crash-unlinked");
        let path = dir.0.join("r");
        stale_region(&path);
        let pid = child_stopped_at(Point::RegionStaleUnlinked, || {
            let _ = recreating().open_or_create(&path, SIZE);
        });
        assert!(!path.exists(), "unlinked, not yet created");
        kill_and_reap(pid);
        assert!(matches!(Region::open(&path), Err(OpenError::NotFound(_))));
        let r = Region::open_or_create(&path, SIZE).unwrap();
        assert!(r.entries().is_empty());
        assert_eq!(version(&path), version_of_this_build());
    }

    #[test]
    fn a_recreator_stopped_holding_its_lease_makes_openers_time_out_and_killed_releases_it() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("stale-crash-leased");
        let path = dir.0.join("r");
        stale_region(&path);
        let old_inode = inode(&path);
        let pid = child_stopped_at(Point::RegionStaleLeased, || {
            let _ = recreating().open_or_create(&path, SIZE);
        });
        // Stopped holding the lease: opens for writing wait for it until their timeout.
        for options in [RegionOptions::new(), recreating()] {
            let err = options
                .timeout(Duration::from_millis(50))
                .open_or_create(&path, SIZE)
                .unwrap_err();
            assert!(
                matches!(err, OpenOrCreateError::Open(OpenError::Timeout)),
                "{err:?}"
            );
        }
        assert_eq!(inode(&path), old_inode, "nothing changed");
        kill_and_reap(pid);
        // The kernel dropped its lease (and lock) with it.
        let r = recreating().open_or_create(&path, SIZE).unwrap();
        assert_ne!(inode(&path), old_inode);
        assert!(r.entries().is_empty());
    }

    fn version_of_this_build() -> u32 {
        let dir = TempDir::new("stale-crash-version");
        let p = dir.0.join("v");
        drop(Region::create(&p, SIZE).unwrap());
        version(&p)
    }
}
