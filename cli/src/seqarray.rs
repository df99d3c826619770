//! A `SeqLockArray`'s state, read from a [`ReadOnlyRegion`]: each stripe idle, being
//! written or torn by a dead writer, and the values of a primitive element type.
//!
//! The layout is the one documented in the crate's `seqlock::array` module: the elements'
//! bytes, packed, in `⌈len · size / 8⌉` whole 8-byte words, then one 16-byte header per
//! stripe of `STRIPE_LEN` elements (`seq: u32 | writer: u32 | dirty: u32 | reserved`),
//! `STRIPE_LEN` bytes apart.
//! A stripe's values are copied as a reader copies them: an even `seq`, the stripe's
//! words, the same `seq` again, a bounded number of tries; a stripe with no stable copy
//! shows `?` for its elements, never a mix of two writes.

use std::ops::Range;

use serde_json::{Value as Json, json};
use shmstate::EntryInfo;
use shmstate::region::ReadOnlyRegion;

use crate::state::{self, Opts, Probes, Reading, SHOWN_ELEMENTS};

/// Tries at a stable copy of one stripe.
const ATTEMPTS: u32 = 8;
/// Spins between two tries (a live writer's write takes nanoseconds).
const SPINS: u32 = 64;

/// Elements per stripe for elements of `size` bytes, as `SeqLockArray::<T>::STRIPE_LEN`:
/// 32 × ⌊8 / size⌋ below 8 bytes, 32 from 8 to 15 bytes, 16 from 16 bytes on, 128 for
/// zero-sized elements.
pub fn stripe_len(size: u64) -> u64 {
    match size {
        0 => 128,
        1..8 => 32 * (8 / size),
        8..16 => 32,
        _ => 16,
    }
}

/// Where the parts of one array are, from its directory entry.
struct Layout {
    /// Element size in bytes.
    size: u64,
    stripe_len: u64,
    stripes: u64,
    /// The number of data words.
    data_words: u64,
    /// The first data word's offset in the region.
    data_at: u64,
    /// The first stripe header's offset in the region.
    headers_at: u64,
}

impl Layout {
    /// `None` if the entry's length, element size and size do not fit together (a
    /// hostile directory); every offset below is then within the object.
    fn of(e: &EntryInfo) -> Option<Layout> {
        let size = u64::from(e.tag.elem.size);
        let data_words = e.len.checked_mul(size)?.div_ceil(8);
        let stripe_len = stripe_len(size);
        let stripes = e.len.div_ceil(stripe_len);
        // The last header's end: headers are `stripe_len` bytes apart.
        let end = data_words
            .checked_mul(8)?
            .checked_add(stripes.checked_sub(1)?.checked_mul(stripe_len)?)?
            .checked_add(16)?;
        if e.len == 0 || end > e.size {
            return None;
        }
        Some(Layout {
            size,
            stripe_len,
            stripes,
            data_words,
            data_at: e.offset,
            headers_at: e.offset.checked_add(data_words * 8)?,
        })
    }

    /// Stripe `k`'s data words (indices), clipped to the array's last word.
    fn words(&self, k: u64) -> Range<u64> {
        let per = self.stripe_len * self.size / 8;
        let start = (k * per).min(self.data_words);
        start..((k + 1) * per).min(self.data_words)
    }
}

/// One stripe as read.
struct Stripe {
    seq: u32,
    writer: u32,
    dirty: u32,
    /// The stripe's data words, from one stable copy; `None` if not asked for or no try
    /// gave one.
    words: Option<Vec<u64>>,
}

/// Reads stripe `k`'s header and, if `copy`, its data between two equal even loads of
/// its sequence word. Every load is `Acquire`: the data loads come before the second
/// `seq` load, and a data load that sees a writer's store (made after its `Release`
/// fence) makes that writer's odd `seq` visible to the second load, as the crate's
/// reader's `Acquire` fence does.
fn read_stripe(view: &ReadOnlyRegion, l: &Layout, k: u64, copy: bool) -> Option<Stripe> {
    let header = l.headers_at.checked_add(k.checked_mul(l.stripe_len)?)?;
    let mut seq = view.load_u32(header)?;
    let mut words = None;
    if copy {
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                for _ in 0..SPINS {
                    std::hint::spin_loop();
                }
                seq = view.load_u32(header)?;
            }
            if seq & 1 != 0 {
                continue;
            }
            let mut copied = Vec::new();
            for w in l.words(k) {
                copied.push(view.load_u64(l.data_at.checked_add(w * 8)?)?);
            }
            if view.load_u32(header)? == seq {
                words = Some(copied);
                break;
            }
        }
    }
    // The writer word and the sequence as one pair: a writer closes the sequence before
    // it unlocks the word, so a sequence still equal after the word was read belongs with
    // it (an odd sequence read just before a writer finished would otherwise look torn:
    // odd, and no writer).
    let mut writer = view.load_u32(header.checked_add(4)?)?;
    for _ in 0..ATTEMPTS {
        let again = view.load_u32(header)?;
        if again == seq {
            break;
        }
        seq = again;
        writer = view.load_u32(header.checked_add(4)?)?;
    }
    Some(Stripe {
        seq,
        writer,
        dirty: view.load_u32(header.checked_add(8)?)?,
        words,
    })
}

/// A `SeqLockArray`'s stripes and values. The values of the first [`SHOWN_ELEMENTS`]
/// elements are read (every element with `--verbose` or `--json`); every stripe's header
/// is read, so a torn stripe anywhere is reported.
pub fn read(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    let l = Layout::of(e)?;
    let elem = e.tag.elem;
    let decodable = state::known(elem);
    let n_values = if !decodable {
        0
    } else if opts.verbose || opts.json {
        e.len
    } else {
        e.len.min(SHOWN_ELEMENTS)
    };
    let mut probes = Probes::default();
    let mut values: Vec<Option<(String, Json)>> = Vec::new();
    let mut states = Vec::new();
    let mut counts: Vec<(String, u64)> = Vec::new();
    let mut first_bad: Option<(u64, String)> = None;
    let mut unhealthy = false;
    let mut details = Vec::new();
    // Bounded by the object's size: `Layout::of` checked that `stripes` headers fit.
    for k in 0..l.stripes {
        let first = k * l.stripe_len;
        let end = (first + l.stripe_len).min(e.len);
        let s = read_stripe(view, &l, k, first < n_values)?;
        let mut r = state::seqlock(s.seq, s.writer, &mut probes, Opts::default())?;
        let status = r
            .fields
            .get("seqlock")
            .and_then(Json::as_str)
            .unwrap_or("?");
        let status = status.to_owned();
        match counts.iter_mut().find(|(st, _)| *st == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status.clone(), 1)),
        }
        if r.unhealthy {
            unhealthy = true;
            first_bad.get_or_insert((k, r.text.clone()));
        }
        let mut stripe_values = Vec::new();
        for i in first..end.min(n_values) {
            let v = s
                .words
                .as_deref()
                .and_then(|w| element(w, &l, i - first, elem));
            stripe_values.push(v.as_ref().map_or("?".to_owned(), |(t, _)| t.clone()));
            values.push(v);
        }
        if opts.verbose {
            let vals = if decodable {
                format!(": {}", stripe_values.join(", "))
            } else {
                String::new()
            };
            details.push(format!(
                "stripe {k} [{first}..{end}): {}; sequence {:#010x}, writer word {:#010x}, dirty {}{vals}",
                r.text, s.seq, s.writer, s.dirty
            ));
        }
        r.fields.insert("index".into(), json!(k));
        r.fields.insert("dirty".into(), json!(s.dirty));
        r.fields
            .insert("consistent".into(), json!(s.words.is_some()));
        states.push(Json::Object(r.fields));
    }
    // The row shows the first elements; `--verbose` lists them all, stripe by stripe.
    let shown = values.len().min(SHOWN_ELEMENTS as usize);
    let texts: Vec<&str> = values[..shown]
        .iter()
        .map(|v| v.as_ref().map_or("?", |(t, _)| t.as_str()))
        .collect();
    let more = if e.len > shown as u64 { ", ..." } else { "" };
    let list: Vec<String> = counts
        .iter()
        .map(|(st, n)| match st.as_str() {
            "writing" => format!("{n} being written"),
            _ => format!("{n} {st}"),
        })
        .collect();
    let mut text = if decodable {
        format!("[{}{more}] (len {}; ", texts.join(", "), e.len)
    } else {
        format!("(len {}; ", e.len)
    };
    text.push_str(&format!("stripes: {})", list.join(", ")));
    if let Some((k, why)) = &first_bad {
        text.push_str(&format!("; stripe {k} {why}"));
    }
    let mut r = Reading::plain(text)
        .field("stripe_len", json!(l.stripe_len))
        .field("stripe_states", Json::Array(states));
    if decodable {
        r = r
            .field(
                "values",
                Json::Array(
                    values
                        .into_iter()
                        .map(|v| v.map_or(Json::Null, |(_, j)| j))
                        .collect(),
                ),
            )
            .field("truncated", json!(e.len > n_values));
    }
    r.unhealthy = unhealthy;
    r.details = details;
    Some(r)
}

/// Element `rel` of a stripe whose data words are `words`, decoded; `None` if its bytes
/// are not all in `words` (a short last stripe) or the type is unknown.
fn element(words: &[u64], l: &Layout, rel: u64, elem: shmstate::Elem) -> Option<(String, Json)> {
    let start = usize::try_from(rel.checked_mul(l.size)?).ok()?;
    let size = usize::try_from(l.size).ok()?;
    let mut bytes = [0u8; 8];
    // The element's bytes, from the words that cover it (at most two: a known element
    // of 1, 2, 4 or 8 bytes never straddles a word, as words hold whole elements).
    for (j, b) in bytes.iter_mut().enumerate().take(size) {
        let at = start.checked_add(j)?;
        *b = words.get(at / 8)?.to_ne_bytes()[at % 8];
    }
    let bits = state::bits_of(bytes.get(..size)?)?;
    state::decode(elem, bits).map(|(t, j, _)| (t, j))
}

#[cfg(test)]
mod tests {
    use shmstate::SeqLockArray;

    #[test]
    fn stripe_len_is_the_arrays() {
        assert_eq!(super::stripe_len(1), SeqLockArray::<u8>::STRIPE_LEN as u64);
        assert_eq!(super::stripe_len(2), SeqLockArray::<u16>::STRIPE_LEN as u64);
        assert_eq!(super::stripe_len(4), SeqLockArray::<f32>::STRIPE_LEN as u64);
        assert_eq!(super::stripe_len(8), SeqLockArray::<u64>::STRIPE_LEN as u64);
        assert_eq!(
            super::stripe_len(16),
            SeqLockArray::<u128>::STRIPE_LEN as u64
        );
        assert_eq!(
            super::stripe_len(12),
            SeqLockArray::<[u32; 3]>::STRIPE_LEN as u64
        );
        assert_eq!(
            super::stripe_len(3),
            SeqLockArray::<[u8; 3]>::STRIPE_LEN as u64
        );
        assert_eq!(super::stripe_len(0), SeqLockArray::<()>::STRIPE_LEN as u64);
    }
}
