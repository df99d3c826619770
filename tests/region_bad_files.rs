//! Files that are not valid regions: every one is refused with a typed error, never a
//! panic, an out-of-bounds access or a hang. Offsets below follow the documented format
//! (`src/region/format.rs`): header fields at 0..72 (allocation pointer at 48), entries of 128 bytes from 128 with
//! state at +0, len +24, size +32, offset +40, name +48..+96, element identity +96; the
//! attach table (1,024 bytes) after the directory, and the objects after it.

mod common;

use common::TempDir;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use shmstate::sync::{AtomicU64, Ordering};
use shmstate::{Elem, GetError, Kind, OpenError, Region, RegionOptions, SharedSized, TypeTag};

#[derive(Debug)]
#[repr(C)]
struct Word(AtomicU64);
// SAFETY: one `AtomicU64`: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Word {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 1), Elem::U64);
}

#[derive(Debug)]
#[repr(C, align(64))]
struct Line([AtomicU64; 8]);
// SAFETY: eight `AtomicU64`s: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Line {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 2), Elem::U64);
}

const SIZE: u64 = 4096;
const CAPACITY: u32 = 4;
const ENTRY0: u64 = 128;
/// The first object's offset: header, 4 entries, attach table.
const DATA: u64 = 128 + CAPACITY as u64 * 128 + 1024;

fn options() -> RegionOptions {
    RegionOptions::new()
        .capacity(CAPACITY)
        .timeout(Duration::from_millis(2))
}

/// A valid region with two objects, as bytes.
fn valid_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("template");
    let r = options().create(&path, SIZE).unwrap();
    r.get_or_init::<Word>("word", |w| w.0.store(5, Ordering::Relaxed))
        .unwrap();
    r.get_or_default::<Line>("line").unwrap();
    drop(r);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn open_bytes(dir: &Path, bytes: &[u8]) -> Result<Region, OpenError> {
    let path = dir.join("bad");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, bytes).unwrap();
    options().open(&path)
}

fn put(bytes: &mut [u8], at: u64, value: &[u8]) {
    bytes[at as usize..at as usize + value.len()].copy_from_slice(value);
}

#[test]
fn empty_short_and_random_files_are_refused() {
    common::watchdog(Duration::from_secs(60));
    let dir = TempDir::new("bad-basic");
    assert!(matches!(
        open_bytes(&dir.0, &[]),
        Err(OpenError::Truncated { found: 0, .. })
    ));
    let valid = valid_bytes(&dir.0);
    assert!(matches!(
        open_bytes(&dir.0, &valid[..100]),
        Err(OpenError::Truncated { found: 100, .. })
    ));
    // The header alone, without the directory its size field promises.
    assert!(matches!(
        open_bytes(&dir.0, &valid[..128]),
        Err(OpenError::Truncated {
            found: 128,
            needed: SIZE
        })
    ));
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let random: Vec<u8> = (0..SIZE).map(|_| rng.next() as u8).collect();
    assert!(matches!(
        open_bytes(&dir.0, &random),
        Err(OpenError::BadMagic { .. })
    ));
    assert!(open_bytes(&dir.0, &valid).is_ok());
}

#[test]
fn each_bad_header_field_gets_its_own_error() {
    common::watchdog(Duration::from_secs(60));
    let dir = TempDir::new("bad-header");
    let valid = valid_bytes(&dir.0);

    let mut b = valid.clone();
    put(&mut b, 0, b"NOTSHMST");
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::BadMagic { .. })
    ));

    let mut b = valid.clone();
    // A region of the previous format, version 2 (its entries do not record the element's
    // identity fingerprint), with that format's layout fingerprint.
    put(&mut b, 8, &2u32.to_ne_bytes());
    put(&mut b, 24, &0x3ec4_f59a_3cf0_af58u64.to_ne_bytes());
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::VersionMismatch {
            found: 2,
            expected: 14
        })
    ));
    // Version 1 (its RwLocks count readers differently), version 3 (its SeqLockArrays hold a
    // full seqlock per element), version 4 (no attach table: its objects start where
    // today's table is), version 5 (no maximum size: that word is zero), version 6 (two
    // phase bits in an entry's state word, no user bitmaps), version 7 (maps hashed with
    // SipHash-2-4, channels without the sleeper bit), version 8 (histograms whose stripes
    // every thread updates atomically, one sum per stripe), version 9 (`SeqLockArray`
    // headers 16 bytes apart, in shorter stripes), version 10 (channels published by
    // `tail`, not by each record's header), version 11 (channels whose `lost` word is a
    // plain count), version 12 (takers that set their user bit after the takeover),
    // version 13 (lock words without their holder's stamp), and a later version.
    for found in [1u32, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15] {
        put(&mut b, 8, &found.to_ne_bytes());
        assert!(matches!(
            open_bytes(&dir.0, &b),
            Err(OpenError::VersionMismatch { found: f, expected: 14 }) if f == found
        ));
    }

    let mut b = valid.clone();
    // Size and maximum size (a region that may grow) past the file.
    put(&mut b, 16, &(SIZE * 2).to_ne_bytes());
    put(&mut b, 80, &(SIZE * 2).to_ne_bytes());
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::Truncated { found: SIZE, needed }) if needed == SIZE * 2
    ));

    let mut b = valid.clone();
    b.extend_from_slice(&[0; 4096]);
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::WrongSize { .. })
    ));

    let mut b = valid.clone();
    // A size above the maximum size.
    put(&mut b, 80, &(SIZE / 2).to_ne_bytes());
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::Corrupt(m)) if m.contains("maximum size")
    ));

    let mut b = valid.clone();
    b[24] ^= 1; // layout fingerprint
    assert!(matches!(
        open_bytes(&dir.0, &b),
        Err(OpenError::LayoutMismatch {
            what: "layout fingerprint",
            ..
        })
    ));

    let mut b = valid.clone();
    put(&mut b, 36, &100_000u32.to_ne_bytes()); // capacity
    assert!(matches!(open_bytes(&dir.0, &b), Err(OpenError::Corrupt(_))));
}

#[test]
fn bad_directory_entries_are_corrupt() {
    common::watchdog(Duration::from_secs(60));
    let dir = TempDir::new("bad-dir");
    let valid = valid_bytes(&dir.0);
    let entry1 = ENTRY0 + 128;
    let cases: [(&str, u64, Vec<u8>); 7] = [
        (
            "offset past the end",
            ENTRY0 + 40,
            SIZE.to_ne_bytes().to_vec(),
        ),
        (
            "offset in the directory",
            ENTRY0 + 40,
            128u64.to_ne_bytes().to_vec(),
        ),
        (
            "misaligned offset",
            ENTRY0 + 40,
            (DATA + 8).to_ne_bytes().to_vec(),
        ),
        ("huge size", ENTRY0 + 32, u64::MAX.to_ne_bytes().to_vec()),
        // Entry 1's object moved onto entry 0's.
        (
            "overlapping objects",
            entry1 + 40,
            DATA.to_ne_bytes().to_vec(),
        ),
        ("unterminated name", ENTRY0 + 48, vec![b'x'; 48]),
        // The header's allocation pointer moved back onto entry 1's object: the next
        // object would overlap it.
        (
            "allocation pointer inside an object",
            48,
            (DATA + 64).to_ne_bytes().to_vec(),
        ),
    ];
    for (what, at, value) in cases {
        let mut b = valid.clone();
        put(&mut b, at, &value);
        let err = open_bytes(&dir.0, &b).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt(_)), "{what}: {err:?}");
    }
}

#[test]
fn a_name_asked_for_with_another_type_is_a_type_mismatch_in_another_process() {
    common::watchdog(Duration::from_secs(60));
    let dir = TempDir::new("bad-type");
    let path = dir.0.join("r");
    let r = Region::create(&path, 1 << 16).unwrap();
    r.get_or_default::<Word>("x").unwrap();
    let parent = std::process::id() as libc::pid_t;
    let pids = common::fork_children(1, |_| {
        common::die_with_parent(parent);
        let r = Region::open(&path).unwrap();
        let err = r.get::<Line>("x").unwrap_err();
        let GetError::TypeMismatch {
            name,
            recorded,
            recorded_len,
            requested,
            requested_len,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(name, "x");
        assert_eq!((recorded, recorded_len), (<Word as SharedSized>::TAG, 1));
        assert_eq!((requested, requested_len), (<Line as SharedSized>::TAG, 1));
    });
    common::wait_all(&pids, Duration::from_secs(30));
}

/// A small xorshift64 generator: reproducible, no dependencies.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Applies one random mutation, mostly to the header and the two used entries.
fn mutate(rng: &mut XorShift, b: &mut [u8]) {
    let hot = 128 + 2 * 128; // header + entries 0 and 1
    let at = if rng.below(4) == 0 {
        rng.below(b.len() as u64)
    } else {
        rng.below(hot)
    };
    let at = at as usize;
    match rng.below(5) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b[at] = rng.next() as u8,
        2 => {
            // An interesting 8-byte value at an 8-aligned field.
            let at = at & !7;
            let values = [
                0,
                1,
                63,
                64,
                DATA,
                DATA + 64,
                SIZE - 64,
                SIZE,
                SIZE + 64,
                u64::MAX,
                rng.next(),
            ];
            let v = values[rng.below(values.len() as u64) as usize];
            if at + 8 <= b.len() {
                b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        3 => {
            // A state word: any phase, with this process's pid, a dead pid or garbage.
            let entry = 128 + 128 * rng.below(CAPACITY as u64) as usize;
            let pid =
                [std::process::id(), 0, 1 << 22, rng.next() as u32 >> 3][rng.below(4) as usize];
            let word = (pid << 3) | rng.below(8) as u32;
            b[entry..entry + 4].copy_from_slice(&word.to_ne_bytes());
        }
        _ => {
            let at = at & !3;
            if at + 4 <= b.len() {
                b[at..at + 4].copy_from_slice(&(rng.next() as u32).to_ne_bytes());
            }
        }
    }
}

/// Everything a process may do with a region; each object it gets must lie inside it.
fn exercise(r: &Region) {
    let size = r.size();
    let inside = |offset: Option<usize>, len: usize| {
        let offset = offset.expect("object inside the region");
        assert!(
            offset + len <= size,
            "object [{offset}, +{len}) beyond {size}"
        );
        assert_eq!(offset % 64, 0);
    };
    for e in r.entries() {
        if let Ok(w) = r.get::<Word>(&e.name) {
            inside(r.offset_of(w), 8);
            w.0.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(l) = r.get::<Line>(&e.name) {
            inside(r.offset_of(l), 64);
        }
    }
    for name in ["word", "line", "new"] {
        if let Ok(w) = r.get_or_init::<Word>(name, |w| w.0.store(1, Ordering::Relaxed)) {
            inside(r.offset_of(w), 8);
        }
        if let Ok(l) = r.get_or_default::<Line>(name) {
            inside(r.offset_of(l), 64);
        }
    }
}

#[test]
fn thousands_of_random_header_mutations_never_panic_or_escape_the_region() {
    common::watchdog(Duration::from_secs(120));
    let dir = TempDir::new("bad-mutations");
    let valid = valid_bytes(&dir.0);
    let path = dir.0.join("mutant");
    std::fs::write(&path, &valid).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut errors) = (0, std::collections::BTreeMap::<String, u32>::new());
    for _ in 0..4000 {
        let mut b = valid.clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut b);
        }
        file.write_all_at(&b, 0).unwrap();
        match options().open(&path) {
            Ok(r) => {
                ok += 1;
                exercise(&r);
            }
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '(', '{']).next().unwrap_or("").to_owned();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    eprintln!("4000 mutants: {ok} opened, errors {errors:?}");
    assert!(ok > 0 && !errors.is_empty());
}
