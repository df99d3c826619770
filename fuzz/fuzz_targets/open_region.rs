//! Opens arbitrary bytes as a region and uses whatever it finds: no input may panic, hang,
//! or yield an object outside the region.
//!
//! Input: a first byte choosing the mode, then either
//! - (even) the whole file, or
//! - (odd) patches `(offset: u16 le, len: u8 & 15, bytes)` applied to a valid region with
//!   three objects, so that the fuzzer explores past the header checks.

#![no_main]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmstate::sync::{AtomicU64, Ordering};
use shmstate::{Elem, Kind, Region, RegionOptions, Shared, SharedSized, TypeTag};

#[repr(C)]
struct Word(AtomicU64);
// SAFETY: one `AtomicU64`: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Word {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 1), Elem::U64);
}

/// A slice-shaped type, so that lengths read from the file matter.
#[repr(transparent)]
struct Words([AtomicU64]);
// SAFETY: a transparent slice of `AtomicU64`: zero and every bit pattern valid, no
// pointers, `Sync`; `from_raw_parts` only builds the slice pointer.
unsafe impl Shared for Words {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 2), Elem::U64);
    const ALIGN: usize = 8;
    fn size_for(len: usize) -> Option<usize> {
        shmstate::shared::slice_size::<AtomicU64>(len)
    }
    fn from_raw_parts(ptr: std::ptr::NonNull<u8>, len: usize) -> std::ptr::NonNull<Self> {
        let slice = std::ptr::NonNull::slice_from_raw_parts(ptr.cast::<AtomicU64>(), len);
        // SAFETY: non-null by construction; `Words` has the metadata of `[AtomicU64]`.
        unsafe { std::ptr::NonNull::new_unchecked(slice.as_ptr() as *mut Words) }
    }
}

const SIZE: u64 = 8192;

fn options() -> RegionOptions {
    RegionOptions::new()
        .capacity(8)
        .timeout(Duration::from_millis(1))
}

/// A valid region's bytes.
fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let r = options().memfd("template", SIZE).unwrap();
        r.get_or_default::<Word>("word").unwrap();
        r.get_or_default_slice::<Words>("words", 5).unwrap();
        r.get_or_default::<Word>("other").unwrap();
        let file = std::fs::File::from(r.as_fd().unwrap().try_clone_to_owned().unwrap());
        let mut bytes = vec![0; SIZE as usize];
        file.read_exact_at(&mut bytes, 0).unwrap();
        bytes
    })
}

/// One memfd per process, rewritten for each input.
fn memfd() -> &'static OwnedFd {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    FD.get_or_init(|| rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).unwrap())
}

fn exercise(r: &Region) {
    // The size now, after the call that handed the object out: a creation may have grown
    // the region (from a header whose size word a grower had not raised yet).
    let inside = |offset: Option<usize>, bytes: usize| {
        let offset = offset.expect("object inside the region");
        assert!(offset.is_multiple_of(64) && offset + bytes <= r.size());
    };
    for e in r.entries() {
        if let Ok(w) = r.get::<Word>(&e.name) {
            inside(r.offset_of(w), 8);
            w.0.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(w) = r.get::<Words>(&e.name) {
            inside(r.offset_of(w), 8 * w.0.len());
            if let Some(last) = w.0.last() {
                last.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for (name, len) in [("word", 1), ("words", 5), ("words", 6), ("new", 3)] {
        if let Ok(w) = r.get_or_default_slice::<Words>(name, len) {
            inside(r.offset_of(w), 8 * len);
        }
        if let Ok(w) = r.get_or_default::<Word>(name) {
            inside(r.offset_of(w), 8);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut b = template().to_vec();
        let mut p = rest;
        while p.len() >= 3 {
            let at = u16::from_le_bytes([p[0], p[1]]) as usize % b.len();
            let len = (p[2] & 15) as usize;
            p = &p[3..];
            let n = len.min(p.len()).min(b.len() - at);
            b[at..at + n].copy_from_slice(&p[..n]);
            p = &p[n..];
        }
        b
    };
    let fd = memfd();
    rustix::fs::ftruncate(fd, 0).unwrap();
    let file = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
    file.write_all_at(&bytes, 0).unwrap();
    if let Ok(r) = options().from_fd(file.into()) {
        exercise(&r);
    }
});
