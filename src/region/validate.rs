//! The checks every open runs on a region's header and directory before anything in it is
//! used: each value is read once, checked, and only the checked copy is used afterwards.

use crate::sync::Ordering;

use super::error::OpenError;
use super::format::{
    ATTACH_SLOTS, EntrySnapshot, FINGERPRINT, Geometry, HEADER_SIZE, INIT_READY, MAGIC, MARKER,
    MAX_CAPACITY, OBJECT_ALIGN, Raw, VERSION, data_start_for, flags, life, state,
};

/// Checks the header of `raw` (which must cover at least the header) against `file`, the
/// file's length, and returns its geometry: `total` is `file` (what the open may touch),
/// `max` the recorded maximum size.
///
/// # Errors
///
/// [`OpenError::Truncated`], [`OpenError::BadMagic`], [`OpenError::LayoutMismatch`],
/// [`OpenError::VersionMismatch`], [`OpenError::WrongSize`], [`OpenError::Corrupt`].
pub(crate) fn validate_header(raw: Raw<'_>, file: u64) -> Result<Geometry, OpenError> {
    let Some(h) = raw.header().filter(|_| file >= HEADER_SIZE as u64) else {
        return Err(OpenError::Truncated {
            found: file,
            needed: HEADER_SIZE as u64,
        });
    };
    // Relaxed (all but `init_state` and `total_size`): the header is written before the
    // region is published by a syscall that orders it (see `write_header`); every value
    // is checked before use, so a concurrent hostile write can only make this open fail.
    let magic = h.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        if magic.swap_bytes() == MAGIC {
            return Err(OpenError::LayoutMismatch {
                what: "byte order",
                found: magic,
                expected: MAGIC,
            });
        }
        return Err(OpenError::BadMagic { found: magic });
    }
    let marker = h.marker.load(Ordering::Relaxed);
    if marker != MARKER {
        return Err(OpenError::LayoutMismatch {
            what: "word size marker",
            found: marker.into(),
            expected: MARKER.into(),
        });
    }
    let version = h.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(OpenError::VersionMismatch {
            found: version,
            expected: VERSION,
        });
    }
    let fingerprint = h.fingerprint.load(Ordering::Relaxed);
    if fingerprint != FINGERPRINT {
        return Err(OpenError::LayoutMismatch {
            what: "layout fingerprint",
            found: fingerprint,
            expected: FINGERPRINT,
        });
    }
    // Acquire: pairs with the release store in `write_header`.
    if h.init_state.load(Ordering::Acquire) != INIT_READY {
        return Err(OpenError::Corrupt("header was never completed".into()));
    }
    // Acquire: pairs with the release `fetch_max` of a grower (`Region::grow`), which
    // extended the file before it: a caller that finds `total` above the length it read
    // before this load reads the length again.
    let total = h.total_size.load(Ordering::Acquire);
    let max = h.max_size.load(Ordering::Relaxed);
    let Some(max_usize) = usize::try_from(max)
        .ok()
        .filter(|&m| isize::try_from(m).is_ok())
    else {
        return Err(OpenError::Corrupt(format!(
            "maximum size {max} cannot be mapped"
        )));
    };
    if max < total {
        return Err(OpenError::Corrupt(format!(
            "maximum size {max} below the size {total}"
        )));
    }
    if total > file {
        return Err(OpenError::Truncated {
            found: file,
            needed: total,
        });
    }
    // A region that grows may have a file longer than its size word (a grower stopped
    // between extending the file and raising the word), never longer than its maximum.
    if file > max {
        return Err(OpenError::WrongSize { header: max, file });
    }
    let capacity = h.capacity.load(Ordering::Relaxed);
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(OpenError::Corrupt(format!(
            "directory capacity {capacity} outside 1..={MAX_CAPACITY}"
        )));
    }
    let data_start = data_start_for(capacity);
    let recorded = h.data_start.load(Ordering::Relaxed);
    if recorded != data_start as u64 {
        return Err(OpenError::Corrupt(format!(
            "data start {recorded}, expected {data_start} for {capacity} entries"
        )));
    }
    if data_start as u64 > total {
        return Err(OpenError::Corrupt(format!(
            "directory of {capacity} entries does not fit in {total} bytes"
        )));
    }
    let slots = h.attach_slots.load(Ordering::Relaxed);
    if slots != ATTACH_SLOTS {
        return Err(OpenError::Corrupt(format!(
            "attach table of {slots} words, expected {ATTACH_SLOTS}"
        )));
    }
    let creation_flags = h.flags.load(Ordering::Relaxed);
    if creation_flags & !flags::KNOWN != 0 {
        return Err(OpenError::Corrupt(format!(
            "unknown creation flags {creation_flags:#x}"
        )));
    }
    // Relaxed: only checked for a valid phase here; the life-cycle protocol reads it
    // again with its own orderings (`lifecycle`).
    let life_word = h.life.load(Ordering::Relaxed);
    if life::phase(life_word) > life::RETIRED {
        return Err(OpenError::Corrupt(format!(
            "life-cycle word {life_word:#x} has no valid phase"
        )));
    }
    Ok(Geometry {
        // `file <= max`, a `usize`.
        total: file as usize,
        max: max_usize,
        capacity,
        data_start,
        flags: creation_flags,
    })
}

/// Checks every published entry of the directory: names terminated and unique, objects
/// within their extents, extents (of objects and of removed objects' free space) in
/// bounds, aligned, outside the header and directory, and not overlapping each other;
/// and the allocation pointer: inside the data area and past every object, so that the
/// next object allocated cannot overlap one.
///
/// # Errors
///
/// [`OpenError::Corrupt`] naming the first bad entry.
pub(crate) fn validate_directory(raw: Raw<'_>, geo: &Geometry) -> Result<(), OpenError> {
    // Entries change while this runs (objects are removed, and their space and entries
    // reused), so two entries read at different moments can look like an overlap or a
    // duplicate name that never existed at once. Such a finding counts only if the
    // entries' state words and generations are the same when read again (a removal
    // changes the state, a reuse the generation); otherwise the check runs anew
    // (a bounded number of times: a peer rewriting states forever gets its region
    // refused, never an endless loop).
    let mut last = Ok(());
    for _ in 0..64 {
        let mut states = Vec::new();
        match check_directory(raw, geo, &mut states) {
            Ok(()) => return Ok(()),
            Err((err, pair)) => {
                let unchanged = pair.iter().all(|&i| {
                    raw.entry(geo, i).is_some_and(|e| {
                        // Acquire: as the first loads of the entry's words.
                        let now = (
                            e.state.load(Ordering::Acquire),
                            e.generation.load(Ordering::Acquire),
                        );
                        states.get(i as usize) == Some(&now)
                    })
                });
                if unchanged {
                    return Err(err);
                }
                last = Err(err);
            }
        }
    }
    last
}

/// One pass of [`validate_directory`]; records each entry's state word in `states`. An
/// error comes with the entries it involves.
fn check_directory(
    raw: Raw<'_>,
    geo: &Geometry,
    states: &mut Vec<(u32, u64)>,
) -> Result<(), (OpenError, Vec<u32>)> {
    let mut spans: Vec<(usize, usize, u32)> = Vec::new();
    let mut names: Vec<(Vec<u8>, u32)> = Vec::new();
    for i in 0..geo.capacity {
        let Some(e) = raw.entry(geo, i) else {
            return Err((
                OpenError::Corrupt(format!("entry {i} outside the file")),
                Vec::new(),
            ));
        };
        // Acquire: pairs with the owner's release store that published the entry's fields.
        let s = e.state.load(Ordering::Acquire);
        // Acquire: as `read_consistent`'s first load of it.
        states.push((s, e.generation.load(Ordering::Acquire)));
        let phase = state::phase(s);
        let corrupt = |what: String| (OpenError::Corrupt(format!("entry {i}: {what}")), vec![i]);
        if phase > state::FREE {
            return Err(corrupt(format!("state {s:#x} has no valid phase")));
        }
        // A FREE entry owns nothing (its old extent is free space, maybe reused already).
        if !matches!(phase, state::INITIALISING | state::READY | state::REMOVING) {
            continue;
        }
        let Some(snap) = EntrySnapshot::read_consistent(e) else {
            return Err(corrupt("fields being rewritten".into()));
        };
        let name = snap
            .name_bytes()
            .ok_or_else(|| corrupt("name not terminated".into()))?;
        if name.is_empty() {
            return Err(corrupt("empty name".into()));
        }
        snap.placement(geo).map_err(corrupt)?;
        let (offset, extent) = snap.span(geo).map_err(corrupt)?;
        spans.push((offset, extent, i));
        names.push((name.to_vec(), i));
    }
    spans.sort_unstable();
    if let Some(&(off, size, i)) = spans.last() {
        // Every published object's space was allocated (the bump word advanced past it)
        // before its entry was published, and the acquire loads of the states above saw
        // those publications: a bump word read after them lies past every object.
        // Acquire: pairs with the Release `fetch_max` of the placement that raised it
        // (also of one whose entry is not published yet), for the size word below; the
        // acquire loads of the states above order it after the published ones.
        let bump = raw.header().map_or(0, |h| h.bump.load(Ordering::Acquire));
        // And below the size word: a placement lies below the size word it read, which
        // only rises, so an allocation pointer past the word is a peer's garbage (in one
        // or the other; objects past the size would lie outside the region's size).
        // Acquire: as in `validate_header`. Read after `bump`: the placement that raised
        // `bump` read a word at least as large before its Release. (Argued, not tested:
        // no test can show the window on x86.)
        let size_word = raw
            .header()
            .map_or(0, |h| h.total_size.load(Ordering::Acquire));
        // `off + size <= total` was checked, no overflow.
        if bump < (off + size) as u64
            || bump > geo.total as u64
            || !bump.is_multiple_of(OBJECT_ALIGN as u64)
        {
            return Err((
                OpenError::Corrupt(format!(
                    "allocation pointer {bump} inside or before the object of entry {i}, or \
                     outside the data area"
                )),
                vec![i],
            ));
        }
        if bump > size_word {
            return Err((
                OpenError::Corrupt(format!(
                    "size word {size_word} below the allocation pointer {bump} (entry {i}'s \
                     object ends at {})",
                    off + size
                )),
                vec![i],
            ));
        }
    }
    for w in spans.windows(2) {
        let ((a_off, a_size, a), (b_off, _, b)) = (w[0], w[1]);
        // `a_off + a_size <= total` was checked, no overflow.
        if a_off + a_size > b_off {
            return Err((
                OpenError::Corrupt(format!("objects of entries {a} and {b} overlap")),
                vec![a, b],
            ));
        }
    }
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0].0 == w[1].0 {
            return Err((
                OpenError::Corrupt(format!(
                    "entries {} and {} have the same name",
                    w[0].1, w[1].1
                )),
                vec![w[0].1, w[1].1],
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::format::testing::fresh;
    use super::super::format::{Header, round_up};
    use super::*;

    fn publish(raw: Raw<'_>, geo: &Geometry, i: u32, name: &str, offset: u64, size: u64) {
        let e = raw.entry(geo, i).unwrap();
        for (k, b) in name.bytes().enumerate() {
            e.name[k].store(b, Ordering::Relaxed);
        }
        e.offset.store(offset, Ordering::Relaxed);
        e.size.store(size, Ordering::Relaxed);
        e.len.store(1, Ordering::Relaxed);
        e.align.store(8, Ordering::Relaxed);
        // As an allocation would have: past the object.
        raw.header().unwrap().bump.fetch_max(
            round_up(offset.saturating_add(size)).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        e.state
            .store(state::make(1, state::READY), Ordering::Release);
    }

    #[test]
    fn fresh_header_validates() {
        let buf = fresh(4096, 4);
        let geo = validate_header(buf.raw(), 4096).unwrap();
        assert_eq!(
            geo,
            Geometry {
                total: 4096,
                max: 4096,
                capacity: 4,
                data_start: 128 + 4 * 128 + 1024,
                flags: 0,
            }
        );
        validate_directory(buf.raw(), &geo).unwrap();
    }

    #[test]
    fn a_file_between_its_size_and_its_maximum_is_a_grown_region() {
        let buf = fresh(8192, 4);
        let h = buf.raw().header().unwrap();
        h.total_size.store(4096, Ordering::Relaxed);
        h.max_size.store(16384, Ordering::Relaxed);
        // The file (8192) was extended, the size word (4096) not yet raised.
        let geo = validate_header(buf.raw(), 8192).unwrap();
        assert_eq!((geo.total, geo.max), (8192, 16384));
    }

    #[test]
    fn short_view_is_truncated() {
        let buf = fresh(4096, 4);
        let short = buf.prefix(64);
        assert!(matches!(
            validate_header(short, 64),
            Err(OpenError::Truncated { found: 64, .. })
        ));
    }

    #[test]
    fn each_header_field_is_checked() {
        type Poke = fn(&Header);
        type Expect = fn(&OpenError) -> bool;
        let cases: [(Poke, Expect); 14] = [
            (
                |h| h.magic.store(1, Ordering::Relaxed),
                |e| matches!(e, OpenError::BadMagic { found: 1 }),
            ),
            (
                |h| h.magic.store(MAGIC.swap_bytes(), Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        OpenError::LayoutMismatch {
                            what: "byte order",
                            ..
                        }
                    )
                },
            ),
            (
                |h| h.marker.store(0x0102_0304, Ordering::Relaxed),
                |e| matches!(e, OpenError::LayoutMismatch { .. }),
            ),
            (
                |h| h.version.store(VERSION + 1, Ordering::Relaxed),
                |e| {
                    matches!(
                        e,
                        OpenError::VersionMismatch {
                            found,
                            expected: VERSION,
                        } if *found == VERSION + 1
                    )
                },
            ),
            (
                |h| {
                    h.fingerprint.fetch_xor(1, Ordering::Relaxed);
                },
                |e| {
                    matches!(
                        e,
                        OpenError::LayoutMismatch {
                            what: "layout fingerprint",
                            ..
                        }
                    )
                },
            ),
            (
                |h| h.init_state.store(0, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(_)),
            ),
            (
                |h| {
                    h.total_size.store(8192, Ordering::Relaxed);
                    h.max_size.store(8192, Ordering::Relaxed);
                },
                |e| {
                    matches!(
                        e,
                        OpenError::Truncated {
                            found: 4096,
                            needed: 8192
                        }
                    )
                },
            ),
            (
                |h| {
                    h.total_size.store(1024, Ordering::Relaxed);
                    h.max_size.store(1024, Ordering::Relaxed);
                },
                |e| {
                    matches!(
                        e,
                        OpenError::WrongSize {
                            header: 1024,
                            file: 4096
                        }
                    )
                },
            ),
            (
                // Grown file, larger maximum: the file may be up to `max_size` long.
                |h| {
                    h.max_size.store(2048, Ordering::Relaxed);
                    h.total_size.store(1024, Ordering::Relaxed);
                },
                |e| {
                    matches!(
                        e,
                        OpenError::WrongSize {
                            header: 2048,
                            file: 4096
                        }
                    )
                },
            ),
            (
                |h| h.max_size.store(2048, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(m) if m.contains("maximum size")),
            ),
            (
                |h| h.capacity.store(MAX_CAPACITY + 1, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(_)),
            ),
            (
                |h| h.attach_slots.store(ATTACH_SLOTS + 1, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(m) if m.contains("attach table")),
            ),
            (
                |h| h.flags.store(1 << 31, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(m) if m.contains("flags")),
            ),
            (
                |h| h.life.store(3, Ordering::Relaxed),
                |e| matches!(e, OpenError::Corrupt(m) if m.contains("life-cycle")),
            ),
        ];
        for (i, (poke, expected)) in cases.iter().enumerate() {
            let buf = fresh(4096, 4);
            poke(buf.raw().header().unwrap());
            let err = validate_header(buf.raw(), 4096).unwrap_err();
            assert!(expected(&err), "case {i}: {err:?}");
        }
    }

    #[test]
    fn directory_that_does_not_fit_is_corrupt() {
        let buf = fresh(4096, 4);
        let h = buf.raw().header().unwrap();
        h.capacity.store(40, Ordering::Relaxed);
        h.data_start
            .store(data_start_for(40) as u64, Ordering::Relaxed);
        assert!(matches!(
            validate_header(buf.raw(), 4096),
            Err(OpenError::Corrupt(_))
        ));
    }

    #[test]
    fn entries_out_of_range_overlapping_or_unterminated_are_corrupt() {
        let geo = Geometry {
            total: 4096,
            max: 4096,
            capacity: 4,
            data_start: 640,
            flags: 0,
        };
        let check = |setup: &dyn Fn(Raw<'_>)| {
            let buf = fresh(4096, 4);
            setup(buf.raw());
            validate_directory(buf.raw(), &geo)
        };
        assert!(check(&|r| publish(r, &geo, 0, "a", 640, 8)).is_ok());
        assert!(
            check(&|r| {
                publish(r, &geo, 0, "a", 640, 8);
                publish(r, &geo, 1, "b", 704, 8);
            })
            .is_ok()
        );
        let bad: [&dyn Fn(Raw<'_>); 7] = [
            &|r| publish(r, &geo, 0, "a", 4096, 8),   // past the end
            &|r| publish(r, &geo, 0, "a", 4032, 128), // crosses the end
            &|r| publish(r, &geo, 0, "a", 128, 8),    // in the directory
            &|r| publish(r, &geo, 0, "a", 648, 8),    // misaligned
            &|r| publish(r, &geo, 0, "a", u64::MAX - 63, 128), // overflow
            &|r| {
                publish(r, &geo, 0, "a", 640, 128);
                publish(r, &geo, 1, "b", 704, 8); // overlaps a
            },
            &|r| {
                publish(r, &geo, 0, "a", 640, 8);
                publish(r, &geo, 1, "a", 704, 8); // duplicate name
            },
        ];
        for (i, setup) in bad.iter().enumerate() {
            assert!(
                matches!(check(*setup), Err(OpenError::Corrupt(_))),
                "case {i}"
            );
        }
        let unterminated = check(&|r| {
            publish(r, &geo, 0, "a", 640, 8);
            for b in &r.entry(&geo, 0).unwrap().name {
                b.store(b'x', Ordering::Relaxed);
            }
        });
        assert!(matches!(unterminated, Err(OpenError::Corrupt(m)) if m.contains("terminated")));
    }

    /// The directory of a 4 KiB region with objects `a` at 640 (8 bytes) and `b` at 704
    /// (128 bytes, ending at 832), its allocation pointer and size word set to `bump` and
    /// `size_word`, checked.
    fn two_objects(bump: u64, size_word: u64) -> Result<(), OpenError> {
        let geo = Geometry {
            total: 4096,
            max: 4096,
            capacity: 4,
            data_start: 640,
            flags: 0,
        };
        let buf = fresh(4096, 4);
        publish(buf.raw(), &geo, 0, "a", 640, 8);
        publish(buf.raw(), &geo, 1, "b", 704, 128);
        let h = buf.raw().header().unwrap();
        h.bump.store(bump, Ordering::Relaxed);
        h.total_size.store(size_word, Ordering::Relaxed);
        validate_directory(buf.raw(), &geo)
    }

    #[test]
    fn an_allocation_pointer_that_would_overlap_an_object_is_corrupt() {
        let check = |bump: u64| two_objects(bump, 4096);
        for ok in [832, 896, 4096] {
            assert!(check(ok).is_ok(), "bump {ok}");
        }
        // Inside b (the next object would overlap it), before it, misaligned, past the end.
        for bad in [768, 640, 0, 840, 4160, u64::MAX] {
            assert!(
                matches!(check(bad), Err(OpenError::Corrupt(m)) if m.contains("allocation")),
                "bump {bad}"
            );
        }
    }

    /// A size word below the allocation pointer (a peer's garbage: placements lie below
    /// the word, which only rises) is corrupt, even where the file covers the objects (a
    /// region that grows, its file longer than its size word): otherwise objects would be
    /// handed out past [`Region::size`](crate::Region::size). Found by the `open_region`
    /// fuzz target.
    #[test]
    fn a_size_word_below_the_allocation_pointer_is_corrupt() {
        let check = |size_word: u64| two_objects(832, size_word);
        for ok in [832, 896, 4096] {
            assert!(check(ok).is_ok(), "size word {ok}");
        }
        for bad in [768, 704, 0] {
            assert!(
                matches!(check(bad), Err(OpenError::Corrupt(m)) if m.contains("size word")),
                "size word {bad}"
            );
        }
    }
}
