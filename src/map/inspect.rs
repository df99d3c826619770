//! What a tool reads of a map without writing a byte: [`MapSnapshot`], decoded from the
//! words of a read-only mapping (`shmstate inspect`).

use core::mem::offset_of;

use super::clock::expiry_now_ns;
use super::layout::{ByteMap, Meta, StripeHead, boot_hash, expired};
use super::options::{Geometry, HEADER_LINES, SLOT_HEAD_WORDS};
use super::write::COUNT_MASK;

/// Attempts at a stripe whose structure sequence is odd or changes under the walk,
/// before the last attempt's slots are taken as they are.
const STRIPE_TRIES: u32 = 4;

/// Attempts at a slot whose sequence is odd or changes under the copy, before the slot is
/// skipped.
const SLOT_TRIES: u32 = 4;

/// A map's state as a tool sees it: the geometry its header records (validated exactly as
/// the map's own operations validate it), its entry count (a snapshot of one word,
/// clamped to the capacity), and, if asked for, its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSnapshot {
    /// The number of entries the map is sized for.
    pub capacity: usize,
    /// Entries (as [`ByteMap::len`]: expired entries count until a writer reclaims them).
    pub len: usize,
    /// The longest key, in bytes.
    pub key_max: usize,
    /// The longest value, in bytes.
    pub value_max: usize,
    /// Stripes (each with its own writers' lock).
    pub stripes: usize,
    /// Slots in all (`stripes` × slots per stripe).
    pub slots: usize,
    /// The keys of the entries not expired, in slot order, if asked for: each slot copied
    /// as a reader copies it (its sequence even and unchanged around the copy, its meta a
    /// valid full slot's); a slot without such a copy after a few tries (a writer busy on
    /// it, or killed there) is left out.
    pub keys: Option<Vec<Vec<u8>>>,
}

impl MapSnapshot {
    /// `len` as a share of `capacity`, in percent (0 to 100).
    pub fn load_percent(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            (self.len as f64 * 100.0 / self.capacity as f64).min(100.0)
        }
    }
}

/// Decodes a map of `lines` 64-byte lines (the object's length, as the region's directory
/// records it) from `load`, which returns the object's word `i`, or `None` if it cannot be
/// read. `load` must be at least an `Acquire` load (the sequence checks rely on it: a
/// word a writer stored after its odd sequence store makes the recheck see that store).
/// `None` if the header does not validate (the map's operations then report `Corrupt`)
/// or one of its words cannot be read. With `with_keys`, walks every slot: at most
/// `STRIPE_TRIES × SLOT_TRIES` copies of each, whatever the words hold.
pub(crate) fn decode(
    lines: usize,
    load: impl Fn(usize) -> Option<u64>,
    with_keys: bool,
) -> Option<MapSnapshot> {
    let mut h = [0u64; 8];
    for (i, w) in h.iter_mut().enumerate() {
        *w = load(i)?;
    }
    let h7: [u64; 7] = core::array::from_fn(|i| h[i]);
    let g = ByteMap::validate_header(h7, lines)?;
    // As `ByteMap::len`: the count word's low bits, clamped to the slots and the capacity.
    let count = (load(8)? & COUNT_MASK).min(g.slots() as u64) as usize;
    let keys = with_keys.then(|| {
        // Deadlines count on this boot's `CLOCK_MONOTONIC`: a map last opened in another
        // boot has every deadline passed (as its next opener will find).
        let now = if h[7] == boot_hash() {
            expiry_now_ns()
        } else {
            u64::MAX
        };
        let mut keys = Vec::new();
        for s in 0..g.stripes {
            stripe_keys(&g, s, &load, now, &mut keys);
        }
        keys
    });
    Some(MapSnapshot {
        capacity: g.options.capacity(),
        len: count.min(g.options.capacity()),
        key_max: g.options.key_max_len(),
        value_max: g.options.value_max_len(),
        stripes: g.stripes,
        slots: g.slots(),
        keys,
    })
}

/// Appends the keys of stripe `s` to `out`: the walk of `ByteMap::for_each`'s optimistic
/// copy, retried while the stripe's structure sequence is odd or changes; after
/// `STRIPE_TRIES`, the last walk's slots are kept (a stripe whose writer died mid-move
/// stays odd until the next writer repairs it, and its stable slots are still worth
/// showing).
fn stripe_keys(
    g: &Geometry,
    s: usize,
    load: &impl Fn(usize) -> Option<u64>,
    now: u64,
    out: &mut Vec<Vec<u8>>,
) {
    // Word indices: `validate_header` checked that the stripe heads and slots fit in the
    // object's `lines`, so none of these overflows; `load` checks each index again.
    let seq_word = (HEADER_LINES + s) * 8 + offset_of!(StripeHead, seq) / 8;
    let slots = (HEADER_LINES + g.stripes) * 8;
    let start = out.len();
    for attempt in 1..=STRIPE_TRIES {
        out.truncate(start);
        let ss = load(seq_word);
        for i in 0..g.sps {
            if let Some(k) = slot_key(g, slots + g.slot_base(s, i), load, now) {
                out.push(k);
            }
        }
        if attempt < STRIPE_TRIES && !ss.is_some_and(|ss| ss & 1 == 0 && load(seq_word) == Some(ss))
        {
            crate::sync::spin_loop();
            continue;
        }
        return;
    }
}

/// The key of the slot whose first word is `base`, if the slot holds an entry not expired
/// at `now` and a copy validated by its sequence succeeds within `SLOT_TRIES`.
fn slot_key(
    g: &Geometry,
    base: usize,
    load: &impl Fn(usize) -> Option<u64>,
    now: u64,
) -> Option<Vec<u8>> {
    for _ in 0..SLOT_TRIES {
        let q = load(base)?;
        if q & 1 != 0 {
            crate::sync::spin_loop();
            continue;
        }
        let m = Meta(load(base + 1)?);
        if !m.full_and_valid(g) {
            // Empty (or not an entry a reader would take): re-read only if it changed.
            if load(base)? == q {
                return None;
            }
            continue;
        }
        let expiry = load(base + 2)?;
        // `full_and_valid` bounds the key length by `key_max`, so the key's words are
        // within the slot's `key_words`.
        let mut key = vec![0u8; m.key_len()];
        for (j, chunk) in key.chunks_mut(8).enumerate() {
            let b = load(base + SLOT_HEAD_WORDS + j)?.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        // `load` is an Acquire load (see `decode`): a word of a later write makes this
        // load see that write's odd sequence or later.
        if load(base)? != q {
            continue;
        }
        return (!expired(expiry, now)).then_some(key);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ByteMap, MapOptions};
    use std::time::Duration;

    /// The object's word `i`, as a read-only mapping would load it.
    fn word(m: &ByteMap, i: usize) -> Option<u64> {
        let w = m.words();
        // Acquire: as the read-only mapping's loads (see `decode`).
        w.get(i).map(|w| w.load(crate::sync::Ordering::Acquire))
    }

    /// The decoder reads what the map's own accessors say: geometry, length, and exactly
    /// the keys of `snapshot`, expired entries left out.
    #[test]
    fn decode_agrees_with_the_map() {
        let m = ByteMap::new(MapOptions::new(300).key_max(40).value_max(16)).unwrap();
        for i in 0..200u32 {
            m.insert(format!("key-{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        m.remove(b"key-7").unwrap();
        m.insert(&[0xFF, 0, 1], b"bin").unwrap();
        let lines = m.line_count();
        let s = decode(lines, |i| word(&m, i), true).unwrap();
        let g = m.geometry().unwrap();
        assert_eq!(s.capacity, 300);
        assert_eq!(s.len, m.len());
        assert_eq!(s.len, 200);
        assert_eq!((s.key_max, s.value_max), (40, 16));
        assert_eq!((s.stripes, s.slots), (g.stripes, g.slots()));
        let keys: Vec<Vec<u8>> = m.snapshot().into_iter().map(|(k, _)| k).collect();
        assert_eq!(s.keys.as_deref(), Some(&keys[..]));
        assert!(!keys.contains(&b"key-7".to_vec()));
        assert!(keys.contains(&vec![0xFF, 0, 1]));
        assert_eq!(decode(lines, |i| word(&m, i), false).unwrap().keys, None);
        assert!((s.load_percent() - 200.0 * 100.0 / 300.0).abs() < 1e-9);

        // An expired entry counts in `len` (until reclaimed) but is not listed.
        let m = ByteMap::new(MapOptions::new(10)).unwrap();
        m.insert(b"live", b"1").unwrap();
        m.insert_ttl(b"gone", b"2", Duration::ZERO).unwrap();
        let s = decode(m.line_count(), |i| word(&m, i), true).unwrap();
        assert_eq!(s.keys, Some(vec![b"live".to_vec()]));
    }

    /// Garbage words: no panic, no read outside the object, numbers within bounds; a
    /// wrong length or magic is no map.
    #[test]
    fn decode_survives_garbage() {
        let m = ByteMap::new(MapOptions::new(100).key_max(24)).unwrap();
        m.insert(b"a", b"1").unwrap();
        let lines = m.line_count();
        let words = lines * 8;
        assert_eq!(decode(lines + 1, |i| word(&m, i), true), None);
        assert_eq!(decode(lines, |_| Some(0), true), None);
        assert_eq!(decode(lines, |_| Some(u64::MAX), true), None);
        // A valid header over garbage: every other word the same pattern, or
        // pseudo-random words.
        let mix = |i: usize| (i as u64 ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        for fill in [Some(u64::MAX), Some(0x5555_5555_5555_5555), Some(2), None] {
            let load = |i: usize| {
                assert!(i < words, "load outside the object: {i}");
                if i < 8 {
                    word(&m, i)
                } else {
                    Some(fill.unwrap_or_else(|| mix(i)))
                }
            };
            let s = decode(lines, load, true).unwrap();
            assert!(s.len <= s.capacity, "{s:?}");
            assert!(s.keys.as_ref().unwrap().len() <= s.slots);
            for k in s.keys.unwrap() {
                assert!(k.len() <= s.key_max);
            }
        }
        // Every slot a stable full entry with the longest key, never expiring: all listed.
        let g = m.geometry().unwrap();
        let first_slot = (HEADER_LINES + g.stripes) * 8;
        let full = Meta::full(24, 0, 0, 0).0;
        let s = decode(
            lines,
            |i| {
                if i < first_slot {
                    return word(&m, i);
                }
                Some(match (i - first_slot) % g.slot_words {
                    0 | 2 => 0,
                    1 => full,
                    _ => u64::MAX,
                })
            },
            true,
        )
        .unwrap();
        assert_eq!(s.keys.unwrap(), vec![vec![0xFF; 24]; g.slots()]);
        // Words that change on every load (a writer that never settles): bounded.
        let n = core::cell::Cell::new(0u64);
        let s = decode(
            lines,
            |i| {
                n.set(n.get() + 1);
                if i < 8 {
                    word(&m, i)
                } else {
                    Some(n.get() << 1)
                }
            },
            true,
        )
        .unwrap();
        assert!(s.keys.unwrap().is_empty());
    }
}
