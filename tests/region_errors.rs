//! Every error a caller can provoke, one test each, asserting on the error's typed fields;
//! and their conversion into `RegionError` for `?`.

mod common;

use common::TempDir;

use std::sync::mpsc;
use std::time::Duration;

use shmstate::sync::{AtomicU32, AtomicU64};
use shmstate::{
    Counter, CreateError, Elem, GetError, Kind, OpenError, OpenOrCreateError, Region, RegionError,
    RegionOptions, Shared, SharedSized, StripedCounter, Timeout, TypeTag, Value,
};

/// A user type and a second definition of it with the same tag but another size: what
/// two programs built from different versions of one type would hold.
#[repr(C)]
struct Config(AtomicU64);
// SAFETY: one `AtomicU64`: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Config {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 7), Elem::U64);
}

#[repr(C)]
struct ConfigV2(AtomicU64, AtomicU64);
// SAFETY: two `AtomicU64`s: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for ConfigV2 {
    const TAG: TypeTag = <Config as SharedSized>::TAG;
}

/// A type aligned beyond the region's 64-byte object alignment.
#[repr(C, align(128))]
struct Wide(AtomicU32);
// SAFETY: one `AtomicU32` (and padding that is never read): zero and every bit pattern
// valid, no pointers, `Sync`.
unsafe impl SharedSized for Wide {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 8), Elem::U32);
}

fn tag<T: Shared + ?Sized>() -> TypeTag {
    T::TAG
}

fn region() -> Region {
    RegionOptions::new()
        .capacity(4)
        .timeout(Duration::from_secs(30))
        .anonymous(4096)
        .unwrap()
}

#[test]
fn another_type_is_a_type_mismatch_carrying_both_tags() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    r.get_or_default::<Counter>("hits").unwrap();
    for err in [
        r.get_or_default::<Value<u64>>("hits").map(|_| ()),
        r.get::<Value<u64>>("hits").map(|_| ()),
    ] {
        match err {
            Err(GetError::TypeMismatch {
                name,
                recorded,
                recorded_len,
                requested,
                requested_len,
            }) => {
                assert_eq!(name, "hits");
                assert_eq!((recorded, recorded_len), (tag::<Counter>(), 1));
                assert_eq!((requested, requested_len), (tag::<Value<u64>>(), 1));
            }
            other => panic!("{:?}", other.err()),
        }
    }
    // The bytes were not reinterpreted, and the object is still there for its type.
    r.get::<Counter>("hits").unwrap();
}

#[test]
fn another_length_is_a_type_mismatch_carrying_both_lengths() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    r.get_or_default_slice::<StripedCounter>("c", 4).unwrap();
    let err = r
        .get_or_default_slice::<StripedCounter>("c", 8)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            GetError::TypeMismatch { name, recorded, recorded_len: 4, requested, requested_len: 8 }
                if name == "c" && *recorded == tag::<StripedCounter>() && recorded == requested
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "object `c` is a StripedCounter[4], not a StripedCounter[8]"
    );
    assert_eq!(r.get::<StripedCounter>("c").unwrap().stripes(), 4);
}

#[test]
fn another_definition_of_the_same_type_is_a_size_mismatch() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    r.get_or_default::<Config>("config").unwrap();
    for err in [
        r.get_or_default::<ConfigV2>("config").map(|_| ()),
        r.get::<ConfigV2>("config").map(|_| ()),
    ] {
        match err {
            Err(GetError::SizeMismatch {
                name,
                recorded_size,
                recorded_align,
                requested_size,
                requested_align,
            }) => {
                assert_eq!(name, "config");
                assert_eq!((recorded_size, recorded_align), (8, 8));
                assert_eq!((requested_size, requested_align), (16, 8));
            }
            other => panic!("{:?}", other.err()),
        }
    }
}

#[test]
fn a_type_aligned_beyond_64_bytes_is_a_bad_alignment() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    for err in [
        r.get_or_default::<Wide>("wide").map(|_| ()),
        r.get::<Wide>("wide").map(|_| ()),
    ] {
        assert!(
            matches!(
                &err,
                Err(GetError::BadAlignment { name, tag: t, align: 128 })
                    if name == "wide" && *t == tag::<Wide>()
            ),
            "{:?}",
            err.err()
        );
    }
    assert!(r.entries().is_empty(), "nothing was created");
}

#[test]
fn a_length_the_type_has_no_object_of_is_an_invalid_length() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    let err = r
        .get_or_default_slice::<StripedCounter>("c", 0)
        .unwrap_err();
    assert!(
        matches!(&err, GetError::InvalidLength { name, tag: t, len: 0 }
            if name == "c" && *t == tag::<StripedCounter>()),
        "{err:?}"
    );
    // A sized type has length 1 only.
    let err = r.get_or_default_slice::<Counter>("n", 2).unwrap_err();
    assert!(
        matches!(err, GetError::InvalidLength { len: 2, .. }),
        "{err:?}"
    );
    let err = r
        .get_or_init_with_len::<Counter>("n", 0, |_| {})
        .unwrap_err();
    assert!(
        matches!(err, GetError::InvalidLength { len: 0, .. }),
        "{err:?}"
    );
    assert!(r.entries().is_empty(), "nothing was created");
}

#[test]
fn get_of_a_missing_name_is_not_found_carrying_the_name() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    r.get_or_default::<Counter>("present").unwrap();
    let err = r.get::<Counter>("absent").unwrap_err();
    assert!(
        matches!(&err, GetError::NotFound { name } if name == "absent"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no object named `absent`");
}

#[test]
fn bad_names_are_an_invalid_name_with_the_reason() {
    common::watchdog(Duration::from_secs(30));
    let r = region();
    let long = "x".repeat(shmstate::region::MAX_NAME_LEN + 1);
    for (name, reason) in [
        ("", "empty"),
        ("a\0b", "contains a NUL byte"),
        (long.as_str(), "longer than 47 bytes"),
    ] {
        let err = r.get_or_default::<Counter>(name).unwrap_err();
        assert!(
            matches!(&err, GetError::InvalidName { name: n, reason: r } if n == name && *r == reason),
            "{err:?}"
        );
        let err = r.get::<Counter>(name).unwrap_err();
        assert!(matches!(err, GetError::InvalidName { .. }), "{err:?}");
    }
    r.get_or_default::<Counter>(&long[1..]).unwrap();
}

#[test]
fn no_data_space_is_region_full_and_no_entry_is_directory_full() {
    common::watchdog(Duration::from_secs(30));
    // 4 entries: 4096 - 128 - 4 * 128 - 1024 (attach table) = 2432 bytes of data
    let r = region();
    let err = r
        .get_or_default_slice::<StripedCounter>("big", 100)
        .unwrap_err();
    assert!(
        matches!(
            err,
            GetError::RegionFull {
                needed: 6400,
                available: 2432
            }
        ),
        "{err:?}"
    );
    for name in ["a", "b", "c", "d"] {
        r.get_or_default::<Counter>(name).unwrap();
    }
    let err = r.get_or_default::<Counter>("e").unwrap_err();
    assert!(
        matches!(err, GetError::DirectoryFull { capacity: 4 }),
        "{err:?}"
    );
}

#[test]
fn a_creator_still_in_init_makes_others_time_out() {
    common::watchdog(Duration::from_secs(30));
    let r = RegionOptions::new()
        .capacity(4)
        .timeout(Duration::from_millis(100))
        .anonymous(4096)
        .unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let r = &r;
        let creator = s.spawn(move || {
            r.get_or_init("slow", |c: &Counter| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                c.add(1);
            })
            .map(|c| c.get())
        });
        entered.recv().unwrap();
        // The creating thread is alive and inside `init`: both calls wait out the
        // region's timeout.
        let err = r.get::<Counter>("slow").unwrap_err();
        assert!(matches!(err, GetError::Timeout), "{err:?}");
        let err = r.get_or_default::<Counter>("slow").unwrap_err();
        assert!(matches!(err, GetError::Timeout), "{err:?}");
        release.send(()).unwrap();
        assert_eq!(creator.join().unwrap().unwrap(), 1);
    });
    assert_eq!(r.get::<Counter>("slow").unwrap().get(), 1);
    assert!(matches!(GetError::from(Timeout), GetError::Timeout));
}

#[test]
fn open_of_a_missing_file_is_not_found_carrying_the_path() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("errors-missing");
    let path = dir.0.join("absent");
    match Region::open(&path) {
        Err(OpenError::NotFound(p)) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists(), "open does not create");
}

#[test]
fn create_over_an_existing_file_is_already_exists_carrying_the_path() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("errors-exists");
    let path = dir.0.join("r");
    std::fs::write(&path, b"not a region").unwrap();
    match Region::create(&path, 1 << 16) {
        Err(CreateError::AlreadyExists(p)) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"not a region", "left alone");
}

#[test]
fn a_size_that_cannot_hold_the_directory_is_an_invalid_size() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("errors-size");
    let options = RegionOptions::new().capacity(4);
    let min = 128 + 4 * 128 + 1024; // header, directory, attach table
    assert!(matches!(
        options.anonymous(min - 1),
        Err(CreateError::InvalidSize { size, min: m }) if size == min - 1 && m == min
    ));
    assert!(matches!(
        options.create(dir.0.join("r"), 10),
        Err(CreateError::InvalidSize { size: 10, .. })
    ));
    assert!(!dir.0.join("r").exists());
    options.anonymous(min).unwrap();
}

#[test]
fn open_or_create_says_whether_opening_or_creating_failed() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("errors-ooc");
    // Something exists: opening it is what failed.
    let junk = dir.0.join("junk");
    std::fs::write(&junk, [0u8; 4096]).unwrap();
    let err = Region::open_or_create(&junk, 1 << 16).unwrap_err();
    assert!(
        matches!(
            err,
            OpenOrCreateError::Open(OpenError::BadMagic { found: 0 })
        ),
        "{err:?}"
    );
    // Nothing exists, and the directory does not either: creating is what failed.
    let err = Region::open_or_create(dir.0.join("no/such/dir"), 1 << 16).unwrap_err();
    assert!(
        matches!(&err, OpenOrCreateError::Create(CreateError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let err = Region::open_or_create(dir.0.join("small"), 1).unwrap_err();
    assert!(
        matches!(
            err,
            OpenOrCreateError::Create(CreateError::InvalidSize { size: 1, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn every_error_converts_into_region_error_keeping_the_operation_and_message() {
    common::watchdog(Duration::from_secs(30));
    let dir = TempDir::new("errors-umbrella");
    let path = dir.0.join("r");

    fn open_counter(path: &std::path::Path, name: &str) -> Result<u64, RegionError> {
        let r = Region::open(path)?;
        Ok(r.get::<Counter>(name)?.get())
    }
    fn create_twice(path: &std::path::Path) -> Result<(), RegionError> {
        Region::create(path, 1 << 16)?;
        Region::create(path, 1 << 16)?;
        Ok(())
    }
    fn open_or_create(path: &std::path::Path) -> Result<(), RegionError> {
        Region::open_or_create(path, 1)?;
        Ok(())
    }

    let err = open_counter(&path, "hits").unwrap_err();
    assert!(
        matches!(&err, RegionError::Open(OpenError::NotFound(p)) if *p == path),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("no region at {}", path.display()));
    let err = create_twice(&path).unwrap_err();
    assert!(
        matches!(&err, RegionError::Create(CreateError::AlreadyExists(p)) if *p == path),
        "{err:?}"
    );
    let err = open_counter(&path, "hits").unwrap_err();
    assert!(
        matches!(&err, RegionError::Get(GetError::NotFound { name }) if name == "hits"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no object named `hits`");
    // `open_or_create`'s two cases land on the umbrella's `Open` and `Create`.
    open_or_create(&path).unwrap();
    let err = open_or_create(&dir.0.join("other")).unwrap_err();
    assert!(
        matches!(
            err,
            RegionError::Create(CreateError::InvalidSize { size: 1, .. })
        ),
        "{err:?}"
    );
    std::fs::write(dir.0.join("junk"), [0u8; 4096]).unwrap();
    let err = open_or_create(&dir.0.join("junk")).unwrap_err();
    assert!(
        matches!(err, RegionError::Open(OpenError::BadMagic { .. })),
        "{err:?}"
    );
}
