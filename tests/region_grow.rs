//! Regions that grow (`RegionOptions::max_size`) with real processes: objects created by
//! several processes past the size every one of them first mapped, old objects still
//! valid, and growth the filesystem cannot back (a file size limit, a full tmpfs) an
//! error at the creating call, never a `SIGBUS` later.
//!
//! Offsets follow the documented format (`src/region/format.rs`): the header's size word
//! is at byte 16, its maximum size at byte 80.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::{TempDir, fork_children, wait_all, watchdog};
use shmstate::region::ReadOnlyRegion;
use shmstate::sync::Ordering;
use shmstate::{
    Counter, CreateError, EntryState, GetError, OpenError, Region, RegionOptions, ValueArray,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Byte offset of the header's size word.
const SIZE_WORD: u64 = 16;

/// Elements of each object of the four-process test: 512 KiB.
const LEN: usize = 64 * 1024;
/// Objects each of the four processes creates: 4 * 24 * 512 KiB = 48 MiB, more than
/// 32 MiB, so the region ends at its 64 MiB maximum.
const PER_CHILD: usize = 24;

fn marker(child: usize, k: usize) -> u64 {
    ((child as u64 + 1) << 32) | (k as u64 + 1)
}

fn size_word(path: &Path) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, SIZE_WORD).unwrap();
    u64::from_ne_bytes(b)
}

/// A region of 64 KiB at `path` that may grow to 4 MiB, with 4 directory entries.
fn small_growing(path: &Path) -> Region {
    RegionOptions::new()
        .capacity(4)
        .max_size(4 * MIB)
        .create(path, 64 * KIB)
        .unwrap()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_region_grows_from_64_kib_to_64_mib_while_four_processes_create_and_use_objects() {
    watchdog(Duration::from_secs(120));
    let dir = TempDir::new("grow-4");
    let path = dir.0.join("r");
    let options = RegionOptions::new().capacity(128).max_size(64 * MIB);
    let region = options.create(&path, 64 * KIB).unwrap();
    let first = region.get_or_default::<Counter>("first").unwrap();
    assert_eq!(region.size() as u64, 64 * KIB);
    let pids = fork_children(4, |child| {
        // A handle of its own, mapped while the region was 64 KiB (or a little more).
        let r = Region::open(&path).unwrap();
        let first = r.get::<Counter>("first").unwrap();
        let mut mine: Vec<&ValueArray<u64>> = Vec::new();
        for k in 0..PER_CHILD {
            let a = r
                .get_or_default_slice::<ValueArray<u64>>(&format!("c{child}-{k}"), LEN)
                .unwrap();
            // Its first and last words: the object's first and last pages are backed.
            a.store(0, marker(child, k), Ordering::Relaxed);
            a.store(LEN - 1, marker(child, k), Ordering::Relaxed);
            first.add(1);
            // The old objects, created before the region grew, are still valid.
            for (j, old) in mine.iter().enumerate() {
                assert_eq!(old.load(0, Ordering::Relaxed), marker(child, j));
                assert_eq!(old.load(LEN - 1, Ordering::Relaxed), marker(child, j));
            }
            mine.push(a);
            // A peer's object, possibly past anything this handle has seen yet.
            let peer = (child + 1) % 4;
            if let Ok(p) = r.get::<ValueArray<u64>>(&format!("c{peer}-{k}")) {
                let v = p.load(LEN - 1, Ordering::Relaxed);
                assert!(v == 0 || v == marker(peer, k), "peer word {v:#x}");
            }
        }
    });
    wait_all(&pids, Duration::from_secs(100));
    assert_eq!(
        first.get(),
        4 * PER_CHILD as u64,
        "the first object, used by all"
    );
    // The parent's handle, mapped at 64 KiB, reaches every object created since.
    for child in 0..4 {
        for k in 0..PER_CHILD {
            let a = region
                .get::<ValueArray<u64>>(&format!("c{child}-{k}"))
                .unwrap();
            assert_eq!(a.load(0, Ordering::Relaxed), marker(child, k));
            assert_eq!(a.load(LEN - 1, Ordering::Relaxed), marker(child, k));
        }
    }
    assert_eq!(region.size() as u64, 64 * MIB);
    assert_eq!(region.max_size() as u64, 64 * MIB);
    assert_eq!(size_word(&path), 64 * MIB);
    assert_eq!(file_len(&path), 64 * MIB);
    // Full at the maximum: 32 MiB more does not fit below it.
    let err = region
        .get_or_default_slice::<ValueArray<u64>>("too-much", 64 * LEN)
        .err();
    assert!(matches!(err, Some(GetError::RegionFull { .. })), "{err:?}");
    // A fresh opener sees the grown region whole.
    let again = Region::open(&path).unwrap();
    assert_eq!(again.size() as u64, 64 * MIB);
    assert_eq!(again.entries().len(), 1 + 4 * PER_CHILD);
}

#[test]
fn openers_racing_a_growing_region_always_open_it() {
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("grow-race-open");
    let path = dir.0.join("r");
    let region = RegionOptions::new()
        .capacity(256)
        .max_size(64 * MIB)
        .create(&path, 64 * KIB)
        .unwrap();
    drop(region);
    // Set by the grower when it is done.
    let done = common::SharedMem::<shmstate::Value<u32>>::new(1);
    let pids = fork_children(3, |child| {
        if child == 0 {
            let r = Region::open(&path).unwrap();
            // Objects of 64 KiB to 1 MiB: the region doubles from 64 KiB to 32 MiB
            // while the others open it.
            for k in 0..40 {
                let len = 8 * 1024 * (1 + k % 16);
                r.get_or_default_slice::<ValueArray<u64>>(&format!("o{k}"), len)
                    .unwrap()
                    .store(len - 1, k as u64 + 1, Ordering::Relaxed);
            }
            done.get().store(1, Ordering::Release);
            return;
        }
        let mut opens = 0;
        while done.get().load(Ordering::Acquire) == 0 || opens < 10 {
            // An object published past the length an opener read first must not make
            // the directory look corrupt.
            if child == 1 {
                let r = Region::open(&path).unwrap();
                for e in r.entries() {
                    if let Ok(a) = r.get::<ValueArray<u64>>(&e.name) {
                        let v = a.load(a.len() - 1, Ordering::Relaxed);
                        assert!(v == 0 || e.name == format!("o{}", v - 1), "{} {v}", e.name);
                    }
                }
            } else {
                let v = ReadOnlyRegion::open(&path).unwrap();
                // Only ready entries: a claim's fields are listed as they are, its size
                // possibly still 0 (`Region::entries`).
                for e in v
                    .entries()
                    .into_iter()
                    .filter(|e| e.state == EntryState::Ready)
                {
                    let _ = v.load_u64(e.offset + e.size - 8);
                }
            }
            opens += 1;
        }
    });
    wait_all(&pids, Duration::from_secs(50));
    assert_eq!(Region::open(&path).unwrap().size() as u64, 32 * MIB);
}

#[test]
fn growth_doubles_capped_at_the_maximum() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-double");
    let path = dir.0.join("r");
    let region = RegionOptions::new()
        .capacity(4)
        .max_size(200 * KIB)
        .create(&path, 64 * KIB)
        .unwrap();
    // 80 KiB does not fit in 64 KiB: doubled once, to 128 KiB.
    region
        .get_or_default_slice::<ValueArray<u64>>("a", 10 * 1024)
        .unwrap();
    assert_eq!(region.size() as u64, 128 * KIB);
    assert_eq!(file_len(&path), 128 * KIB);
    // Another 80 KiB: doubled to 256 KiB, capped at 200 KiB.
    region
        .get_or_default_slice::<ValueArray<u64>>("b", 10 * 1024)
        .unwrap();
    assert_eq!(region.size() as u64, 200 * KIB);
    assert_eq!(file_len(&path), 200 * KIB);
    let err = region
        .get_or_default_slice::<ValueArray<u64>>("c", 10 * 1024)
        .err();
    assert!(
        matches!(err, Some(GetError::RegionFull { needed, available }) if needed == 80 * KIB && available < needed),
        "{err:?}"
    );
}

#[test]
fn a_region_without_a_larger_maximum_does_not_grow() {
    let region = RegionOptions::new()
        .capacity(4)
        .anonymous(64 * KIB)
        .unwrap();
    assert_eq!(region.max_size() as u64, 64 * KIB);
    let err = region
        .get_or_default_slice::<ValueArray<u64>>("big", 16 * 1024)
        .err();
    assert!(matches!(err, Some(GetError::RegionFull { .. })), "{err:?}");
    assert_eq!(region.size() as u64, 64 * KIB);
    let err = RegionOptions::new()
        .max_size(32 * KIB)
        .anonymous(64 * KIB)
        .unwrap_err();
    assert!(
        matches!(err, CreateError::InvalidMaxSize { size, max_size } if size == 64 * KIB && max_size == 32 * KIB),
        "{err:?}"
    );
}

#[test]
fn memfd_and_anonymous_regions_grow_for_forked_children() {
    watchdog(Duration::from_secs(30));
    for memfd in [false, true] {
        let options = RegionOptions::new().capacity(4).max_size(4 * MIB);
        let region = if memfd {
            options.memfd("grow", 64 * KIB).unwrap()
        } else {
            options.anonymous(64 * KIB).unwrap()
        };
        let old = region.get_or_default::<Counter>("old").unwrap();
        // The child grows the region; the parent's mapping (made before the fork, at the
        // maximum) sees the object in the new part.
        let pids = fork_children(1, |_| {
            let a = region
                .get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024)
                .unwrap();
            a.store(128 * 1024 - 1, 7, Ordering::Relaxed);
            region.get::<Counter>("old").unwrap().add(1);
        });
        wait_all(&pids, Duration::from_secs(20));
        assert_eq!(region.size() as u64, 2 * MIB, "memfd: {memfd}");
        let a = region.get::<ValueArray<u64>>("big").unwrap();
        assert_eq!(a.load(128 * 1024 - 1, Ordering::Relaxed), 7);
        assert_eq!(old.get(), 1);
        if memfd {
            // Another process receiving the descriptor maps it grown.
            let fd = region.as_fd().unwrap().try_clone_to_owned().unwrap();
            let other = Region::from_fd(fd).unwrap();
            assert_eq!(other.size() as u64, 2 * MIB);
            assert_eq!(
                other
                    .get::<ValueArray<u64>>("big")
                    .unwrap()
                    .load(128 * 1024 - 1, Ordering::Relaxed),
                7
            );
        }
    }
}

#[test]
fn a_read_only_view_follows_a_region_that_grew_after_it_mapped() {
    let dir = TempDir::new("grow-ro");
    let path = dir.0.join("r");
    let region = small_growing(&path);
    let view = ReadOnlyRegion::open(&path).unwrap();
    assert_eq!(
        (view.size() as u64, view.max_size() as u64),
        (64 * KIB, 4 * MIB)
    );
    let a = region
        .get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024)
        .unwrap();
    a.store(128 * 1024 - 1, 42, Ordering::Relaxed);
    assert_eq!(view.size() as u64, 2 * MIB);
    let e = view
        .entries()
        .into_iter()
        .find(|e| e.name == "big")
        .unwrap();
    let last = e.offset + e.size - 8;
    assert!(last >= 64 * KIB, "the object lies in the new part");
    assert_eq!(view.load_u64(last), Some(42));
    // Past the end of the file, nothing is read.
    assert_eq!(view.load_u64(2 * MIB), None);
    assert_eq!(view.load_u64(4 * MIB - 8), None);
}

#[test]
fn a_size_word_raised_by_a_peer_never_makes_a_process_touch_past_the_file() {
    let dir = TempDir::new("grow-hostile");
    let path = dir.0.join("r");
    let region = small_growing(&path);
    region.get_or_default::<Counter>("c").unwrap().add(1);
    // A hostile peer claims the region is 4 MiB; the file stays 64 KiB.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&(4 * MIB).to_ne_bytes(), SIZE_WORD).unwrap();
    // An object past the end of the file is refused, not touched (a SIGBUS would end
    // this test process).
    let err = region
        .get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024)
        .err();
    assert!(matches!(err, Some(GetError::Corrupt(_))), "{err:?}");
    assert_eq!(region.size() as u64, 64 * KIB, "what the file covers");
    assert_eq!(file_len(&path), 64 * KIB);
    // An opener finds the file shorter than the size word.
    let err = Region::open(&path).unwrap_err();
    assert!(
        matches!(err, OpenError::Truncated { found, needed } if found == 64 * KIB && needed == 4 * MIB),
        "{err:?}"
    );
    let view_err = ReadOnlyRegion::open(&path).unwrap_err();
    assert!(matches!(view_err, OpenError::Truncated { .. }));
    assert_eq!(region.get::<Counter>("c").unwrap().get(), 1);
}

/// A size word lowered by a peer, below where the objects end and below the start of
/// the data area: the open region reports no size below the data area and its space
/// report does not underflow (it panicked in debug builds), its objects still work, and
/// an opener refuses the header (the word below the allocation pointer).
#[test]
fn a_size_word_lowered_by_a_peer_breaks_no_report_and_fails_an_open() {
    let dir = TempDir::new("shrink-hostile");
    let path = dir.0.join("r");
    let region = small_growing(&path);
    region.get_or_default::<Counter>("c").unwrap().add(1);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for word in [128, 0] {
        f.write_all_at(&u64::to_ne_bytes(word), SIZE_WORD).unwrap();
        let size = region.size() as u64;
        assert!(
            size > word && size <= 64 * KIB,
            "size {size} for a word of {word}"
        );
        let space = region.space();
        assert!(space.data <= 64 * KIB, "{space:?}");
        assert_eq!(region.get::<Counter>("c").unwrap().get(), 1);
        let err = Region::open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt(_)), "word {word}: {err:?}");
    }
}

#[test]
fn a_file_size_limit_fails_growth_with_an_error_not_a_sigbus() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-fsize");
    let path = dir.0.join("r");
    let region = RegionOptions::new()
        .capacity(4)
        .max_size(64 * MIB)
        .create(&path, 64 * KIB)
        .unwrap();
    region.get_or_default::<Counter>("c").unwrap().add(1);
    let pids = fork_children(1, |_| {
        // SAFETY: ignoring SIGXFSZ (raised with EFBIG) in this child only; no handler.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let limit = libc::rlimit {
            rlim_cur: MIB,
            rlim_max: MIB,
        };
        // SAFETY: `setrlimit` reads the struct passed; it lowers this child's limit only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
        let r = Region::open(&path).unwrap();
        // 2 MiB cannot be backed under a 1 MiB file size limit.
        let err = r
            .get_or_default_slice::<ValueArray<u64>>("big", 256 * 1024)
            .err();
        match &err {
            Some(GetError::GrowFailed { size, source }) => {
                // The exact fit (2 MiB and the bytes before the object) is past the
                // limit: no `fallocate` at all.
                assert!(*size > 2 * MIB && *size < 2 * MIB + 64 * KIB, "{size}");
                assert_eq!(source.raw_os_error(), Some(libc::EFBIG));
            }
            other => panic!("expected GrowFailed, got {other:?}"),
        }
        // Nothing changed: the old object works, a small one still fits.
        r.get::<Counter>("c").unwrap().add(1);
        r.get_or_default::<Counter>("small").unwrap().add(1);
        assert_eq!(r.size() as u64, 64 * KIB);
    });
    wait_all(&pids, Duration::from_secs(20));
    assert_eq!(region.get::<Counter>("c").unwrap().get(), 2);
    assert_eq!(size_word(&path), 64 * KIB);
    // Without the limit, the same object makes it grow.
    region
        .get_or_default_slice::<ValueArray<u64>>("big", 256 * 1024)
        .unwrap();
    assert_eq!(region.size() as u64, 4 * MIB);
}

#[test]
fn growth_under_a_file_size_limit_stops_at_the_limit() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-exact");
    let path = dir.0.join("r");
    drop(
        RegionOptions::new()
            .capacity(4)
            .max_size(64 * MIB)
            .create(&path, 64 * KIB)
            .unwrap(),
    );
    let pids = fork_children(1, |_| {
        // SAFETY: ignoring SIGXFSZ (raised with EFBIG) in this child only; no handler.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let limit = libc::rlimit {
            rlim_cur: 3 * MIB / 2,
            rlim_max: 3 * MIB / 2,
        };
        // SAFETY: `setrlimit` reads the struct passed; it lowers this child's limit only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
        let r = Region::open(&path).unwrap();
        // 1 MiB: doubling to 2 MiB passes the 1.5 MiB limit; the region grows to the
        // limit instead.
        let a = r
            .get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024)
            .unwrap();
        a.store(128 * 1024 - 1, 3, Ordering::Relaxed);
        assert_eq!(r.size() as u64, 3 * MIB / 2);
    });
    wait_all(&pids, Duration::from_secs(20));
    let r = Region::open(&path).unwrap();
    assert_eq!(
        r.get::<ValueArray<u64>>("big")
            .unwrap()
            .load(128 * 1024 - 1, Ordering::Relaxed),
        3
    );
    assert_eq!(file_len(&path), r.size() as u64);
}

/// Mounts a 1 MiB tmpfs at `dir`, or says why not (not root, no mount namespace
/// permission).
fn mount_small_tmpfs(dir: &Path) -> Result<(), std::io::Error> {
    use std::ffi::CString;
    let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let fs = CString::new("tmpfs").unwrap();
    let data = CString::new("size=1m").unwrap();
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn unmount(dir: &Path) {
    use std::ffi::CString;
    let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that outlives the call.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
}

#[test]
fn a_full_tmpfs_fails_growth_with_an_error_not_a_sigbus() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-tmpfs");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if let Err(e) = mount_small_tmpfs(&mnt) {
        eprintln!(
            "skipped: cannot mount a 1 MiB tmpfs ({e}); the file size limit test covers \
             a failing extension"
        );
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            unmount(self.0);
        }
    }
    let _unmount = Unmount(&mnt);
    let path = mnt.join("r");
    let region = RegionOptions::new()
        .capacity(64)
        .max_size(16 * MIB)
        .create(&path, 64 * KIB)
        .unwrap();
    // Objects of 128 KiB until the 1 MiB filesystem cannot back the next growth.
    let mut made = Vec::new();
    let err = loop {
        match region.get_or_default_slice::<ValueArray<u64>>(&format!("o{}", made.len()), 16 * 1024)
        {
            Ok(a) => made.push(a),
            Err(e) => break e,
        }
        assert!(made.len() < 64, "a 1 MiB tmpfs held 8 MiB");
    };
    match &err {
        GetError::GrowFailed { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err:?}")
        }
        other => panic!("expected GrowFailed, got {other:?}"),
    }
    assert!(!made.is_empty());
    // Every byte of every object handed out is backed: writing them all raises no
    // SIGBUS (which would end this test process).
    for (k, a) in made.iter().enumerate() {
        for i in 0..a.len() {
            a.store(i, k as u64, Ordering::Relaxed);
        }
    }
    for (k, a) in made.iter().enumerate() {
        assert_eq!(a.load(a.len() - 1, Ordering::Relaxed), k as u64);
    }
    assert!(region.size() as u64 <= MIB);
    drop(made);
    drop(region);
}

/// A grower killed after extending the file to the maximum, before raising the size
/// word (the state made here by hand): a process that opens the region afterwards sees
/// a file as long as the maximum, and still allocates in it (it raises the word).
#[test]
fn an_opener_after_an_extension_to_the_maximum_still_allocates() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-to-max-unraised");
    let path = dir.0.join("r");
    drop(
        RegionOptions::new()
            .capacity(4)
            .max_size(128 * KIB)
            .create(&path, 64 * KIB)
            .unwrap(),
    );
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // SAFETY: `fallocate` on a descriptor this test owns, as a grower extends the file.
    let extended = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, (128 * KIB) as libc::off_t) };
    assert_eq!(extended, 0);
    drop(f);
    assert_eq!(size_word(&path), 64 * KIB);
    let r = Region::open(&path).unwrap();
    let big = r
        .get_or_default_slice::<ValueArray<u64>>("big", 8 * 1024)
        .unwrap();
    big.store(8 * 1024 - 1, 3, Ordering::Relaxed);
    assert_eq!(size_word(&path), 128 * KIB);
    assert_eq!(r.size() as u64, 128 * KIB);
    // Another process that opens it now finds the object.
    let again = Region::open(&path).unwrap();
    assert_eq!(
        again
            .get::<ValueArray<u64>>("big")
            .unwrap()
            .load(8 * 1024 - 1, Ordering::Relaxed),
        3
    );
}

/// A process with a file size limit that keeps `SIGXFSZ`'s default action (which ends
/// it): growth past the limit fails with `GrowFailed` (`EFBIG`) without the signal, and
/// growth capped at the limit succeeds.
#[test]
fn a_file_size_limit_never_raises_sigxfsz() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-fsize-default");
    let path = dir.0.join("r");
    let _region = RegionOptions::new()
        .capacity(4)
        .max_size(64 * MIB)
        .create(&path, 64 * KIB)
        .unwrap();
    let pids = fork_children(1, |_| {
        // SAFETY: restores the default action (the test harness may not have it).
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_DFL) };
        let limit = libc::rlimit {
            rlim_cur: 1536 * KIB,
            rlim_max: 1536 * KIB,
        };
        // SAFETY: `setrlimit` reads the struct passed; it lowers this child's limit only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
        let r = Region::open(&path).unwrap();
        // 1 MiB: the doubling (2 MiB) is past the limit, the object is not.
        r.get_or_default_slice::<ValueArray<u64>>("fits", 128 * 1024)
            .unwrap();
        assert!(r.size() as u64 <= 1536 * KIB, "{}", r.size());
        // 1 MiB more is past the limit: an error, not the signal.
        match r.get_or_default_slice::<ValueArray<u64>>("past", 128 * 1024) {
            Err(GetError::GrowFailed { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EFBIG));
            }
            other => panic!("expected GrowFailed, got {:?}", other.err()),
        }
        r.get_or_default::<Counter>("small").unwrap().add(1);
    });
    wait_all(&pids, Duration::from_secs(20));
}

/// Creating a region larger than the file size limit, with `SIGXFSZ`'s default action:
/// `CreateError::Io(EFBIG)`, not the signal.
#[test]
fn creating_past_the_file_size_limit_fails_without_sigxfsz() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("grow-fsize-create");
    let path = dir.0.join("r");
    let pids = fork_children(1, |_| {
        // SAFETY: restores the default action (the test harness may not have it).
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_DFL) };
        let limit = libc::rlimit {
            rlim_cur: 256 * KIB,
            rlim_max: 256 * KIB,
        };
        // SAFETY: `setrlimit` reads the struct passed; it lowers this child's limit only.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
        match RegionOptions::new().max_size(4 * MIB).create(&path, MIB) {
            Err(CreateError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EFBIG)),
            other => panic!("expected Io(EFBIG), got {:?}", other.err()),
        }
        assert!(!path.exists());
    });
    wait_all(&pids, Duration::from_secs(20));
}

/// Crash windows of growth (a build with `--cfg shmstate_test_hooks`).
#[cfg(shmstate_test_hooks)]
mod crash {
    use super::*;
    use common::{child_stopped_at, kill_and_reap};
    use shmstate::failpoint::Point;

    fn growable(path: &Path) -> Region {
        RegionOptions::new()
            .capacity(4)
            .max_size(4 * MIB)
            .create(path, 64 * KIB)
            .unwrap()
    }

    #[test]
    fn a_grower_killed_before_extending_leaves_nothing_to_repair() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("grow-crash-before");
        let path = dir.0.join("r");
        let region = growable(&path);
        let pid = child_stopped_at(Point::RegionGrowing, || {
            let r = Region::open(&path).unwrap();
            let _ = r.get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024);
        });
        // Stopped before extending: nothing of the growth happened.
        assert_eq!(file_len(&path), 64 * KIB);
        assert_eq!(size_word(&path), 64 * KIB);
        kill_and_reap(pid);
        // The next creator takes over the dead creator's entry and grows the region.
        let other = region
            .get_or_default_slice::<ValueArray<u64>>("other", 128 * 1024)
            .unwrap();
        other.store(128 * 1024 - 1, 1, Ordering::Relaxed);
        assert_eq!(region.size() as u64, 2 * MIB);
        assert_eq!(file_len(&path), 2 * MIB);
    }

    /// A live grower stopped mid-growth keeps its claim: another creator times out on
    /// the creation lock without freeing it, and the grower, continued, publishes.
    #[test]
    fn a_stopped_growers_claim_is_left_alone_and_published_when_it_continues() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("grow-stopped");
        let path = dir.0.join("r");
        let region = growable(&path);
        let pid = child_stopped_at(Point::RegionGrowing, || {
            let r = Region::open(&path).unwrap();
            let a = r
                .get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024)
                .unwrap();
            a.store(128 * 1024 - 1, 7, Ordering::Relaxed);
            std::process::exit(0);
        });
        let impatient = RegionOptions::new()
            .timeout(Duration::from_millis(100))
            .open(&path)
            .unwrap();
        assert!(matches!(
            impatient.get_or_default::<Counter>("other"),
            Err(GetError::Timeout)
        ));
        let claimed = region.entries();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].state, shmstate::EntryState::Claimed);
        assert_eq!(claimed[0].owner, pid as u32, "still the stopped grower's");
        let mut status = 0;
        // SAFETY: resuming and reaping our own stopped child.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::waitpid(pid, &mut status, 0);
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let big = region.get::<ValueArray<u64>>("big").unwrap();
        assert_eq!(big.load(128 * 1024 - 1, Ordering::Relaxed), 7);
    }

    #[test]
    fn a_grower_killed_after_extending_is_finished_by_the_next() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("grow-crash-after");
        let path = dir.0.join("r");
        let region = growable(&path);
        let pid = child_stopped_at(Point::RegionGrown, || {
            let r = Region::open(&path).unwrap();
            let _ = r.get_or_default_slice::<ValueArray<u64>>("big", 128 * 1024);
        });
        // The file is extended, the size word not raised.
        assert_eq!(file_len(&path), 2 * MIB);
        assert_eq!(size_word(&path), 64 * KIB);
        assert_eq!(region.size() as u64, 64 * KIB);
        // An opener accepts the longer file.
        let opener = Region::open(&path).unwrap();
        assert_eq!(opener.size() as u64, 64 * KIB);
        kill_and_reap(pid);
        // The next grower's fallocate finds the space reserved and raises the word.
        let a = opener
            .get_or_default_slice::<ValueArray<u64>>("next", 128 * 1024)
            .unwrap();
        a.store(0, 5, Ordering::Relaxed);
        assert_eq!(size_word(&path), 2 * MIB);
        assert_eq!(region.size() as u64, 2 * MIB);
        assert_eq!(
            region
                .get::<ValueArray<u64>>("next")
                .unwrap()
                .load(0, Ordering::Relaxed),
            5
        );
    }
}
