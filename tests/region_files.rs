//! Backings: path files (symlinks refused, mode 0600, space reserved at creation),
//! anonymous shared memory across fork, and sealed memfds opened from a descriptor.

mod common;

use common::TempDir;

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, symlink};
use std::time::Duration;

use shmstate::sync::{AtomicU64, Ordering};
use shmstate::{
    CreateError, Elem, Kind, OpenError, OpenOrCreateError, Region, RegionOptions, SharedSized,
    TypeTag,
};

#[repr(C)]
struct Word(AtomicU64);
// SAFETY: one `AtomicU64`: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Word {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 1), Elem::U64);
}

fn parent() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

#[test]
fn a_symlink_at_the_path_is_refused() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("symlink");
    let real = dir.0.join("real");
    Region::create(&real, 1 << 16).unwrap();
    let link = dir.0.join("link");
    symlink(&real, &link).unwrap();
    assert!(matches!(Region::open(&link), Err(OpenError::Refused(_))));
    assert!(matches!(
        Region::open_or_create(&link, 1 << 16),
        Err(OpenOrCreateError::Open(OpenError::Refused(_)))
    ));
    assert!(matches!(
        Region::create(&link, 1 << 16),
        Err(CreateError::AlreadyExists(_))
    ));
    // A dangling link is not followed either: nothing is created at its target.
    let dangling = dir.0.join("dangling");
    symlink(dir.0.join("target"), &dangling).unwrap();
    assert!(Region::open_or_create(&dangling, 1 << 16).is_err());
    assert!(!dir.0.join("target").exists());
    // Nor is a directory a region.
    assert!(matches!(Region::open(&dir.0), Err(OpenError::Refused(_))));
}

#[test]
fn devices_and_fifos_are_refused() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("special");
    // Not regular files: refused by type (`Region::open` looks with lstat before it
    // opens, so a device's open side effects never happen).
    let fifo = dir.0.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(Region::open(&fifo), Err(OpenError::Refused(_))));
    assert!(matches!(
        Region::open_or_create(&fifo, 1 << 16),
        Err(OpenOrCreateError::Open(OpenError::Refused(_)))
    ));
    assert!(matches!(
        Region::open("/dev/null"),
        Err(OpenError::Refused(_))
    ));
}

#[test]
fn new_files_have_mode_0600_or_the_mode_asked_for() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("mode");
    let a = dir.0.join("a");
    Region::create(&a, 1 << 16).unwrap();
    assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o7777, 0o600);
    let b = dir.0.join("b");
    RegionOptions::new()
        .mode(0o640)
        .create(&b, 1 << 16)
        .unwrap();
    assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o7777, 0o640);
    // No temporary files are left next to them.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
}

#[test]
fn a_region_larger_than_its_tmpfs_fails_at_creation_not_later() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("tmpfs");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir.0)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&dir.0);
    let err = Region::create(dir.0.join("big"), 4 << 20).unwrap_err();
    match &err {
        CreateError::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}"),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    // Nothing was left behind, and the space is free again for a region that fits.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
    let r = Region::create(dir.0.join("small"), 512 << 10).unwrap();
    let w = r.get_or_default::<Word>("w").unwrap();
    w.0.store(1, Ordering::Relaxed);
}

#[test]
fn an_anonymous_region_is_shared_with_forked_children() {
    common::watchdog(Duration::from_secs(30));
    let r = Region::anonymous(1 << 16).unwrap();
    let before = r.get_or_default::<Word>("before").unwrap();
    let p = parent();
    let pids = common::fork_children(4, |i| {
        common::die_with_parent(p);
        r.get::<Word>("before")
            .unwrap()
            .0
            .fetch_add(1, Ordering::Relaxed);
        // Objects created after the fork are shared too.
        let after = r.get_or_default::<Word>("after").unwrap();
        after.0.fetch_add(i as u64 + 1, Ordering::Relaxed);
    });
    common::wait_all(&pids, Duration::from_secs(20));
    assert_eq!(before.0.load(Ordering::Relaxed), 4);
    assert_eq!(
        r.get::<Word>("after").unwrap().0.load(Ordering::Relaxed),
        1 + 2 + 3 + 4
    );
    assert!(r.as_fd().is_none());
}

#[test]
fn a_memfd_region_is_sealed_and_opens_from_its_fd_in_another_process() {
    common::watchdog(Duration::from_secs(30));
    let r = Region::memfd("shmstate-test", 1 << 16).unwrap();
    let fd = r.as_fd().unwrap();
    for len in [1 << 15, 1 << 17] {
        assert_eq!(
            rustix::fs::ftruncate(fd, len),
            Err(rustix::io::Errno::PERM),
            "resize to {len} must be refused by the seals"
        );
    }
    r.get_or_init::<Word>("w", |w| w.0.store(10, Ordering::Relaxed))
        .unwrap();
    let p = parent();
    let pids = common::fork_children(2, |_| {
        common::die_with_parent(p);
        // As a process that received the descriptor would: open a region from it.
        let fd = r.as_fd().unwrap().try_clone_to_owned().unwrap();
        let mine = Region::from_fd(fd).unwrap();
        mine.get::<Word>("w")
            .unwrap()
            .0
            .fetch_add(1, Ordering::Relaxed);
        mine.get_or_default::<Word>("child")
            .unwrap()
            .0
            .fetch_add(1, Ordering::Relaxed);
    });
    common::wait_all(&pids, Duration::from_secs(20));
    assert_eq!(r.get::<Word>("w").unwrap().0.load(Ordering::Relaxed), 12);
    assert_eq!(r.get::<Word>("child").unwrap().0.load(Ordering::Relaxed), 2);
    // A descriptor of something else is refused.
    let dir = std::fs::File::open("/").unwrap();
    assert!(Region::from_fd(dir.as_fd().try_clone_to_owned().unwrap()).is_err());
}
