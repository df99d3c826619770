//! The current state of one object, read from a [`ReadOnlyRegion`] by single word loads.
//!
//! Nothing here writes to the region, waits, or trusts a byte: each word is decoded with
//! the layout documented on the primitive's fields (the lock word of `RawMutex`, the state
//! word of `RawRwLock`, the sequence and writer words of `SeqLock`, ...), and a word that
//! no valid sequence of operations produces is reported as garbage rather than believed.
//! Every loop is bounded by a constant.

use std::collections::HashMap;

use serde_json::{Map, Value as Json, json};
use shmstate::region::ReadOnlyRegion;
use shmstate::{Elem, EntryInfo, EntryState, Kind};

/// How many elements of an array are shown (all of them with `--verbose`).
pub const SHOWN_ELEMENTS: u64 = 8;

/// What to read besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// `--verbose`: detail lines (stripes, reader slots, raw words in hex, waiter bits)
    /// and every element of an array.
    pub verbose: bool,
    /// `--json`: a `SeqLockArray` lists every element in the document.
    pub json: bool,
}

/// A number whose change per second `--watch` shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer, as its bits (sign-extended): the change is the wrapping difference
    /// read as an `i64`, exact for counters that wrap.
    Int(u64),
    /// A float: the change is the difference.
    Real(f64),
}

impl Num {
    /// The change from `old` to `self` per second over `secs`; `None` if the kinds
    /// differ, `secs` is not positive, or the result is not finite.
    pub fn rate(self, old: Num, secs: f64) -> Option<f64> {
        if secs <= 0.0 {
            return None;
        }
        let delta = match (self, old) {
            (Num::Int(n), Num::Int(o)) => n.wrapping_sub(o) as i64 as f64,
            (Num::Real(n), Num::Real(o)) => n - o,
            _ => return None,
        };
        Some(delta / secs).filter(|r| r.is_finite())
    }
}

// The word layouts, as documented on the fields of `RawMutex`, `RawRwLock` and `SeqLock`.
const TID_MASK_MUTEX: u32 = (1 << 22) - 1;
/// A `RawMutex` holder's stamp (from its start time; 0: unknown) above its TID.
const MUTEX_STAMP_SHIFT: u32 = 22;
const MUTEX_STAMP_MASK: u32 = 0xFF << MUTEX_STAMP_SHIFT;
const MUTEX_OWNER_DIED: u32 = 1 << 30;
const MUTEX_CONTENDED: u32 = 1 << 31;
const RW_COUNT_MASK: u32 = 0x00FF_FFFF;
const RW_WRITE_LOCKED: u32 = 1 << 27;
const RW_OWNER_DIED: u32 = 1 << 28;
const RW_KNOWN: u32 = RW_COUNT_MASK | (0x1F << 27);
const RW_READER_SLOTS: u64 = 14;
const RW_DRAINING: u32 = 1 << 29;
const RW_READERS_WAITING: u32 = 1 << 30;
const RW_WRITERS_WAITING: u32 = 1 << 31;
pub(crate) const SEQ_WAITERS: u32 = 1 << 31;
const EVENT_WAITERS: u32 = 1 << 1;
const BARRIER_SLEEPERS: u32 = 1 << 30;
const BARRIER_BROKEN: u32 = 1 << 31;

/// One object's state: a line for people, fields for `--json`, and whether it needs a
/// person's attention (a dead holder, a torn seqlock, a broken barrier).
#[derive(Debug, Default)]
pub struct Reading {
    /// The human-readable summary.
    pub text: String,
    /// The JSON fields (`value`, `holder`, ...).
    pub fields: Map<String, Json>,
    /// A lock held by a dead thread, a seqlock whose writer died mid-write, or a broken
    /// barrier: exit code 3.
    pub unhealthy: bool,
    /// Worth highlighting: unhealthy, or a histogram, map or channel whose header does not
    /// decode (not a reason for exit code 3: nothing waits on them).
    pub alert: bool,
    /// `--verbose` detail lines, shown under the object's row.
    pub details: Vec<String>,
    /// The number `--watch` shows a rate of (counters, numeric values).
    pub num: Option<Num>,
}

impl Reading {
    pub(crate) fn plain(text: impl Into<String>) -> Reading {
        Reading {
            text: text.into(),
            ..Reading::default()
        }
    }

    pub(crate) fn field(mut self, key: &str, value: Json) -> Reading {
        self.fields.insert(key.to_owned(), value);
        self
    }

    fn detail(mut self, opts: Opts, line: impl FnOnce() -> String) -> Reading {
        if opts.verbose {
            self.details.push(line());
        }
        self
    }
}

/// The state of the object `e` describes, or `None` for a kind this tool cannot read
/// (a user type, a condvar, an object not ready).
pub fn read(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    if e.state != EntryState::Ready {
        return None;
    }
    let mut r = read_kind(view, e, opts)?;
    r.alert |= r.unhealthy;
    Some(r)
}

fn read_kind(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    let at = e.offset;
    let tag = e.tag;
    match tag.kind {
        Kind::COUNTER => view.load_u64(at).map(|v| {
            let mut r = Reading::plain(v.to_string())
                .field("value", json!(v))
                .detail(opts, || format!("word {v:#018x}"));
            r.num = Some(Num::Int(v));
            r
        }),
        Kind::VALUE => {
            let bits = elem_bits(view, tag.elem, at)?;
            let (t, j, num) = decode(tag.elem, bits)?;
            let mut r = Reading::plain(t).field("value", j).detail(opts, || {
                format!("bits {bits:#0w$x}", w = 2 + 2 * tag.elem.size as usize)
            });
            r.num = num;
            Some(r)
        }
        Kind::STRIPED_COUNTER => striped_sum(view, e, opts),
        Kind::VALUE_ARRAY => value_array(view, e, opts),
        Kind::SEQLOCK_ARRAY => crate::seqarray::read(view, e, opts),
        // A lock's data follows its lock words: the lock word (`Mutex`), the lock word
        // and the depth (`ReentrantMutex`), the two state words and the 14 reader slots
        // (`RwLock`), each padded to the data's alignment.
        Kind::MUTEX => {
            let r = mutex(view.load_u32(at)?, None, opts);
            Some(locked_value(view, e, r, 4, tag.elem, opts))
        }
        Kind::REENTRANT_MUTEX => {
            let w = view.load_u32(at)?;
            // The word records the guards beyond the first.
            let raw_depth = view.load_u32(at.checked_add(4)?)?;
            let depth = raw_depth.saturating_add(1);
            let r = mutex(w, Some(depth), opts)
                .detail(opts, || format!("depth word {raw_depth:#010x}"));
            let (data, at) = reentrant_data(tag.elem).unwrap_or((Elem::NONE, 0));
            Some(locked_value(view, e, r, at, data, opts))
        }
        Kind::RWLOCK => {
            let r = rwlock(view, at, opts)?;
            Some(locked_value(view, e, r, 64, tag.elem, opts))
        }
        Kind::SEQLOCK => {
            // The sequence and the writer word as one pair (see `seqarray::read_stripe`).
            let mut seq = view.load_u32(at)?;
            let mut writer = view.load_u32(at.checked_add(4)?)?;
            for _ in 0..8 {
                let again = view.load_u32(at)?;
                if again == seq {
                    break;
                }
                seq = again;
                writer = view.load_u32(at.checked_add(4)?)?;
            }
            let mut holders = Probes::default();
            let mut r = seqlock(seq, writer, &mut holders, opts)?;
            // The value, for a primitive `T` (at offset 8): read between two equal, even
            // loads of the sequence word, as a reader does (every load is Acquire, so
            // the second sequence load comes after the value's).
            if let Some(bits) = elem_bits(view, tag.elem, at.checked_add(8)?)
                && let Some((t, j, num)) = decode(tag.elem, bits)
                && seq & 1 == 0
                && view.load_u32(at)? == seq
            {
                r.text = format!("{t}; {}", r.text);
                r = r.field("value", j);
                r.num = num;
            }
            Some(r)
        }
        Kind::SEMAPHORE => {
            let n = view.load_u32(at)?;
            let sleepers = view.load_u32(at.checked_add(4)?)?;
            Some(semaphore(
                Reading::plain(format!("{n} permits")),
                n,
                sleepers,
                opts,
            ))
        }
        Kind::BOUNDED_SEMAPHORE => {
            let n = view.load_u32(at)?;
            let sleepers = view.load_u32(at.checked_add(4)?)?;
            let bound = view.load_u32(at.checked_add(8)?)?;
            let r = Reading::plain(format!("{n} of {bound} permits")).field("bound", json!(bound));
            Some(
                semaphore(r, n, sleepers, opts)
                    .detail(opts, || format!("bound word {bound:#010x}")),
            )
        }
        Kind::EVENT => {
            let w = view.load_u32(at)?;
            let set = w & 1 != 0;
            let waiters = w & EVENT_WAITERS != 0;
            let generation = w >> 2;
            let text = if set { "set" } else { "clear" };
            Some(
                Reading::plain(text)
                    .field("set", json!(set))
                    .field("waiters", json!(waiters))
                    .field("generation", json!(generation))
                    .detail(opts, || {
                        format!(
                            "word {w:#010x}: waiters {}, generation {generation}",
                            yes_no(waiters)
                        )
                    }),
            )
        }
        Kind::BARRIER => {
            let w = view.load_u32(at)?;
            let parties = view.load_u32(at.checked_add(4)?)?;
            let (arrived, broken) = (w & 0xFFFF, w & BARRIER_BROKEN != 0);
            let sleepers = w & BARRIER_SLEEPERS != 0;
            let generation = (w >> 16) & 0x3FFF;
            let mut text = format!("{arrived} of {parties} arrived");
            if broken {
                text.push_str(", broken");
            }
            let mut r = Reading::plain(text)
                .field("parties", json!(parties))
                .field("arrived", json!(arrived))
                .field("broken", json!(broken))
                .field("waiters", json!(sleepers))
                .field("generation", json!(generation))
                .detail(opts, || {
                    format!(
                        "state word {w:#010x}: waiters {}, generation {generation}; parties word {parties:#010x}",
                        yes_no(sleepers)
                    )
                });
            // Every waiter and every later arrival fails until someone resets it: the
            // parties cannot meet again on their own.
            r.unhealthy = broken;
            Some(r)
        }
        Kind::QUEUE => queue(view, e, opts),
        Kind::HISTOGRAM => Some(histogram(view, e, opts)),
        Kind::CHANNEL => Some(channel(view, e)),
        Kind::MAP => Some(map(view, e, opts)),
        _ => None,
    }
}

/// `r` with the data of the lock it read, when that data is one primitive of type `elem`
/// at the first multiple of its alignment from `header` bytes into the object: the value
/// before the lock's state in the summary (`10000; free`), as `value` in the JSON, and as
/// the number `--watch` shows a rate of. `r` as it is for any other data (a struct, an
/// array) or data that does not fit in the object.
///
/// Read by one atomic load of its aligned word, like a `Value`'s, **without taking the
/// lock** (inspecting never waits or writes): a holder may be in the middle of an
/// update, so the value shown may be an intermediate one its critical section is about
/// to replace.
fn locked_value(
    view: &ReadOnlyRegion,
    e: &EntryInfo,
    mut r: Reading,
    header: u64,
    elem: Elem,
    opts: Opts,
) -> Reading {
    if !known(elem) {
        return r;
    }
    let size = u64::from(elem.size);
    let Some(offset) = header.checked_next_multiple_of(u64::from(elem.align.max(1))) else {
        return r;
    };
    if offset.checked_add(size).is_none_or(|end| end > e.size) {
        return r;
    }
    let Some(bits) = e
        .offset
        .checked_add(offset)
        .and_then(|at| elem_bits(view, elem, at))
    else {
        return r;
    };
    let Some((t, j, num)) = decode(elem, bits) else {
        return r;
    };
    r.text = format!("{t}; {}", r.text);
    r.num = num;
    r.field("value", j).detail(opts, || {
        format!("data bits {bits:#0w$x}", w = 2 + 2 * elem.size as usize)
    })
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A `Semaphore`'s count and sleepers word (bit 0: an acquirer may sleep; bits 2..: wake
/// ticks).
fn semaphore(r: Reading, n: u32, sleepers: u32, opts: Opts) -> Reading {
    let waiters = sleepers & 1 != 0;
    r.field("permits", json!(n))
        .field("waiters", json!(waiters))
        .detail(opts, || {
            format!(
                "count word {n:#010x}; sleepers word {sleepers:#010x}: waiters {}, wake ticks {}",
                yes_no(waiters),
                sleepers >> 2
            )
        })
}

/// A `Queue<T, N>`: its length and capacity, and its lock. `N` is recorded in the tag
/// when `T` is a primitive (an `[T; N]` element, code `ARRAY_OF + T`'s code, of
/// `N * size_of::<T>()` bytes); for other `T` it is unknown and only the lock is shown.
fn queue(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    let at = e.offset;
    let mut r = mutex(view.load_u32(at)?, None, opts);
    let lock_text = std::mem::take(&mut r.text);
    let elem = e.tag.elem;
    let inner_size: u32 = match elem.code.checked_sub(Elem::ARRAY_OF) {
        Some(1 | 5 | 9) => 1,
        Some(2 | 6) => 2,
        Some(3 | 7 | 10) => 4,
        Some(4 | 8 | 11) => 8,
        Some(12 | 13) => 16,
        Some(14 | 15) => size_of::<usize>() as u32,
        _ => 0,
    };
    let capacity = elem
        .size
        .checked_div(inner_size)
        .filter(|&n| (1..=1 << 30).contains(&n));
    let Some(n) = capacity else {
        r.text = format!("capacity unknown; lock {lock_text}");
        return Some(r);
    };
    // As `Queue::len`: `head` read on both sides of `tail`, a few tries; indices in
    // `0..2N`, the length `(tail - head) mod 2N` at most `N`.
    let wrap = 2 * n;
    let mut len = None;
    let (mut head, mut tail) = (0, 0);
    for _ in 0..4 {
        head = view.load_u32(at.checked_add(4)?)?;
        tail = view.load_u32(at.checked_add(8)?)?;
        let again = view.load_u32(at.checked_add(4)?)?;
        len = (head < wrap && tail < wrap)
            .then(|| (tail + wrap - head) % wrap)
            .filter(|&l| l <= n);
        if head == again && len.is_some() {
            break;
        }
    }
    r = r.detail(opts, || format!("head {head:#010x}, tail {tail:#010x}"));
    r.text = match len {
        Some(l) => format!("{l} of {n} items; lock {lock_text}"),
        None => format!("corrupt indices (capacity {n}); lock {lock_text}"),
    };
    r = r.field("length", json!(len)).field("capacity", json!(n));
    Some(r)
}

/// The primitive a `ReentrantMutex<Value<T>>` (or `ReentrantMutex<Counter>`, a `u64`)
/// holds (there is no `Value<usize>` or `Value<isize>`), and its offset in the object,
/// from the mutex's element: a fingerprint of its data's whole tag and offset (see
/// `ReentrantMutex`'s `SharedSized` impl), compared with the fingerprint of each `Value`
/// of a primitive this tool decodes, and of `Counter`. `None` for any other data.
fn reentrant_data(elem: Elem) -> Option<(Elem, u64)> {
    use shmstate::{Counter, ReentrantMutex, SharedSized, Value};
    // The data follows the lock word and the depth (8 bytes), at the first multiple of
    // its alignment (64 for a cache-padded `Counter`).
    macro_rules! holding {
        ($($data:ty => $inner:ident),* $(,)?) => {
            [$((
                <ReentrantMutex<$data> as SharedSized>::TAG.elem,
                Elem::$inner,
                8u64.next_multiple_of(align_of::<$data>() as u64),
            )),*]
        };
    }
    let candidates = holding! {
        Value<u8> => U8, Value<i8> => I8, Value<bool> => BOOL, Value<u16> => U16,
        Value<i16> => I16, Value<u32> => U32, Value<i32> => I32, Value<f32> => F32,
        Value<u64> => U64, Value<i64> => I64, Value<f64> => F64, Counter => U64,
    };
    candidates
        .iter()
        .find(|(outer, ..)| *outer == elem)
        .map(|&(_, inner, offset)| (inner, offset))
}

/// The primitive element types this tool decodes.
const KNOWN: [Elem; 13] = [
    Elem::U8,
    Elem::I8,
    Elem::BOOL,
    Elem::U16,
    Elem::I16,
    Elem::U32,
    Elem::I32,
    Elem::F32,
    Elem::U64,
    Elem::I64,
    Elem::F64,
    Elem::USIZE,
    Elem::ISIZE,
];

/// Whether [`decode`] knows `elem` (its size is then 1, 2, 4 or 8).
pub(crate) fn known(elem: Elem) -> bool {
    KNOWN.contains(&elem)
}

/// The bits of the element of type `elem` at `offset` (element types of `Value` and
/// `ValueArray`), zero-extended; `None` for an element this tool does not know or cannot
/// load.
fn elem_bits(view: &ReadOnlyRegion, elem: Elem, offset: u64) -> Option<u64> {
    if !known(elem) {
        return None;
    }
    let size = u64::from(elem.size);
    if size == 8 {
        return view.load_u64(offset);
    }
    // A narrower element: the aligned 32-bit word holding it.
    let word_at = offset & !3;
    let word = view.load_u32(word_at)?.to_ne_bytes();
    let start = usize::try_from(offset - word_at).ok()?;
    bits_of(word.get(start..start.checked_add(size as usize)?)?)
}

/// `bytes` (at most 8, in this machine's byte order: the region's header checked that
/// the machine that wrote them has the same) as a zero-extended `u64`.
pub(crate) fn bits_of(bytes: &[u8]) -> Option<u64> {
    let mut b = [0u8; 8];
    if cfg!(target_endian = "little") {
        b.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(u64::from_le_bytes(b))
    } else {
        b.get_mut(8usize.checked_sub(bytes.len())?..)?
            .copy_from_slice(bytes);
        Some(u64::from_be_bytes(b))
    }
}

/// An element of a known type `elem` from its zero-extended bits: text, JSON, and the
/// number `--watch` shows a rate of (`None` for a `bool`). `None` if `elem` is unknown.
pub(crate) fn decode(elem: Elem, bits: u64) -> Option<(String, Json, Option<Num>)> {
    if !known(elem) {
        return None;
    }
    let e = elem;
    let int = |v: i64| Some(Num::Int(v as u64));
    Some(if e == Elem::BOOL {
        // `Value<bool>` stores 0 or 1; anything else is shown as it is.
        match bits {
            0 => ("false".into(), json!(false), None),
            1 => ("true".into(), json!(true), None),
            n => (format!("bool byte {n}"), json!(n), None),
        }
    } else if e == Elem::F32 {
        let f = f32::from_bits(bits as u32);
        (
            format!("{f:?}"),
            float(f64::from(f)),
            Some(Num::Real(f64::from(f))),
        )
    } else if e == Elem::F64 {
        let f = f64::from_bits(bits);
        (format!("{f:?}"), float(f), Some(Num::Real(f)))
    } else if e == Elem::I8 {
        let v = bits as u8 as i8;
        (v.to_string(), json!(v), int(v.into()))
    } else if e == Elem::I16 {
        let v = bits as u16 as i16;
        (v.to_string(), json!(v), int(v.into()))
    } else if e == Elem::I32 || (e == Elem::ISIZE && e.size == 4) {
        let v = bits as u32 as i32;
        (v.to_string(), json!(v), int(v.into()))
    } else if e == Elem::I64 || e == Elem::ISIZE {
        let v = bits as i64;
        (v.to_string(), json!(v), int(v))
    } else {
        (bits.to_string(), json!(bits), Some(Num::Int(bits)))
    })
}

/// A float as JSON: a number when finite, else its name as a string (JSON has no NaN).
fn float(f: f64) -> Json {
    if f.is_finite() {
        json!(f)
    } else {
        json!(format!("{f:?}"))
    }
}

/// A `StripedCounter`: the wrapping sum of its stripes (one `u64` at the start of each);
/// with `--verbose`, each stripe's share.
fn striped_sum(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    let stride = e.size.checked_div(e.len)?;
    if stride < 8 {
        return None;
    }
    let mut sum = 0u64;
    let mut stripes = Vec::new();
    // Bounded: every stripe is at least 8 bytes further, and a load past the region's end
    // fails, so a hostile length stops at the region's size / 8 iterations.
    for i in 0..e.len {
        let at = i
            .checked_mul(stride)
            .and_then(|d| e.offset.checked_add(d))?;
        let v = view.load_u64(at)?;
        sum = sum.wrapping_add(v);
        stripes.push(v);
    }
    let mut r = Reading::plain(format!("{sum} (sum of {} stripes)", e.len))
        .field("value", json!(sum))
        .field("stripes", json!(e.len))
        .field("stripe_values", json!(stripes));
    if opts.verbose {
        let list: Vec<String> = stripes.iter().map(u64::to_string).collect();
        r.details.push(format!("stripes: {}", list.join(" + ")));
    }
    r.num = Some(Num::Int(sum));
    Some(r)
}

/// A `ValueArray`: its first [`SHOWN_ELEMENTS`] elements (all with `--verbose`).
fn value_array(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Option<Reading> {
    let width = u64::from(e.tag.elem.size);
    if width == 0 {
        return None;
    }
    // Bounded by the region's size: a load past its end fails.
    let shown = if opts.verbose {
        e.len
    } else {
        e.len.min(SHOWN_ELEMENTS)
    };
    let mut texts = Vec::new();
    let mut values = Vec::new();
    for i in 0..shown {
        let at = i.checked_mul(width).and_then(|d| e.offset.checked_add(d))?;
        let (t, j, _) = decode(e.tag.elem, elem_bits(view, e.tag.elem, at)?)?;
        texts.push(t);
        values.push(j);
    }
    let more = if e.len > shown { ", ..." } else { "" };
    Some(
        Reading::plain(format!("[{}{more}] (len {})", texts.join(", "), e.len))
            .field("values", Json::Array(values))
            .field("truncated", json!(e.len > shown)),
    )
}

/// A `Histogram`: its count and sum; its buckets (cumulative, as in Prometheus) in the
/// JSON and, with `--verbose`, under the row. Decoded by the crate's one histogram
/// decoder ([`ReadOnlyRegion::histogram`]); a header or bounds that do not decode are
/// shown as corrupt (highlighted, not a reason for exit code 3: nothing waits on a
/// histogram, and observers of a corrupt one do nothing).
fn histogram(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Reading {
    let Some(s) = view.histogram(e) else {
        let mut r = Reading::plain("corrupt histogram (header or bounds do not decode)")
            .field("count", Json::Null)
            .field("sum", Json::Null)
            .field("buckets", Json::Null);
        r.alert = true;
        return r;
    };
    let le = |b: f64| {
        if b == f64::INFINITY {
            "+Inf".to_owned()
        } else {
            b.to_string()
        }
    };
    let buckets: Vec<Json> = s
        .buckets()
        .map(|(b, c)| {
            let le = if b.is_finite() {
                json!(b)
            } else {
                json!(le(b))
            };
            json!({ "le": le, "cumulative": c })
        })
        .collect();
    let mut r = Reading::plain(format!("count {}, sum {:?}", s.count, s.sum))
        .field("count", json!(s.count))
        .field("sum", float(s.sum))
        .field("buckets", Json::Array(buckets));
    if opts.verbose {
        let list: Vec<String> = s
            .buckets()
            .map(|(b, c)| format!("le {}: {c}", le(b)))
            .collect();
        r.details
            .push(format!("buckets (cumulative): {}", list.join(", ")));
    }
    r.num = Some(Num::Int(s.count));
    r
}

/// A channel: messages waiting, bytes used of the capacity, closed (or closing: not final
/// yet), lost; a header that
/// is not a channel's is highlighted (the channel's own calls report `Corrupt`).
fn channel(view: &ReadOnlyRegion, e: &EntryInfo) -> Reading {
    let Some(s) = view.channel(e) else {
        let mut r = Reading::plain("unreadable channel");
        r.alert = true;
        return r;
    };
    let mut text = format!(
        "{} waiting, {} of {} bytes used",
        s.waiting, s.bytes_used, s.capacity
    );
    if s.close_final {
        text.push_str(", closed");
    } else if s.closed {
        // Sends are refused, but receivers wait at the close: a close in progress, or one
        // a sender stopped inside its commit holds up.
        text.push_str(", closing (not final yet)");
    }
    if s.lost > 0 {
        text.push_str(&format!(", {} lost", s.lost));
    }
    let mut r = Reading::plain(text);
    if s.max_message.is_none() {
        r.text.push_str(" (corrupt header)");
        r.alert = true;
    }
    r.field("waiting", json!(s.waiting))
        .field("bytes_used", json!(s.bytes_used))
        .field("capacity", json!(s.capacity))
        .field("max_message", json!(s.max_message))
        .field("closed", json!(s.closed))
        .field("close_final", json!(s.close_final))
        .field("lost", json!(s.lost))
}

/// A map (`ByteMap` or `Map<K, V>`): entries of the capacity and the load; its key and
/// value limits in the JSON; with `--json`, its keys (each a string if it is valid UTF-8,
/// else an array of its bytes); with `--verbose`, its stripes and slots. Decoded by the
/// crate's one map decoder ([`ReadOnlyRegion::map`]); a header that does not validate is
/// shown as corrupt (highlighted, not a reason for exit code 3, as a histogram's).
fn map(view: &ReadOnlyRegion, e: &EntryInfo, opts: Opts) -> Reading {
    let Some(s) = view.map(e, opts.json) else {
        let mut r = Reading::plain("corrupt map (header does not validate)")
            .field("len", Json::Null)
            .field("capacity", Json::Null)
            .field("load", Json::Null);
        r.alert = true;
        return r;
    };
    let load = s.load_percent();
    let mut r = Reading::plain(format!(
        "{} of {} entries ({load:.0}% load)",
        s.len, s.capacity
    ))
    .field("len", json!(s.len))
    .field("capacity", json!(s.capacity))
    .field("load", float(load / 100.0))
    .field("key_max", json!(s.key_max))
    .field("value_max", json!(s.value_max))
    .detail(opts, || {
        format!(
            "stripes: {}, slots: {} ({} per stripe), key_max {}, value_max {}",
            s.stripes,
            s.slots,
            s.slots / s.stripes.max(1),
            s.key_max,
            s.value_max
        )
    });
    if let Some(keys) = s.keys {
        let keys = keys
            .into_iter()
            .map(|k| match String::from_utf8(k) {
                Ok(text) => Json::String(text),
                Err(e) => json!(e.into_bytes()),
            })
            .collect();
        r = r.field("keys", Json::Array(keys));
    }
    r.num = Some(Num::Int(s.len as u64));
    r
}

/// What the system says about a thread named by a lock word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its TID.
    pub tid: u32,
    /// Alive: `/proc/<tid>` exists and is not a zombie.
    pub alive: bool,
    /// Its command name (`/proc/<tid>/comm`), if it is readable.
    pub comm: Option<String>,
}

impl Holder {
    /// Looks thread `tid` up in `/proc` (the same check the crate's liveness probe makes
    /// after `kill(tid, 0)`: a missing entry or a zombie is dead). `stamp`: the stamp a
    /// lock word records beside the TID (1 to 255, from its start time; 0: unknown, or a
    /// word without one): a live thread whose start time gives another stamp got the TID
    /// of the dead holder, which is dead (as the crate's probe reads it). Only if the
    /// thread is in this process's time namespace, as for the crate's probe: `/proc`
    /// shows start times shifted by the reader's namespace.
    ///
    /// Where `/proc` is another PID namespace's ([`proc_is_ours`]), its entries describe
    /// other tasks: `kill(tid, 0)` alone answers (a zombie reads alive, as in the crate's
    /// probe there), and no command name is shown.
    pub fn probe_stamped(tid: u32, stamp: u32) -> Holder {
        if !proc_is_ours() {
            let exists = i32::try_from(tid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|pid| {
                    rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH)
                });
            return Holder {
                tid,
                alive: exists,
                comm: None,
            };
        }
        let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok();
        // The state is the first field after the parenthesised command name, which may
        // itself hold spaces and parentheses: look after the last `)`. The start time is
        // field 22, the 20th after it.
        let alive = stat.as_deref().is_some_and(|s| {
            let rest = s.rsplit_once(')').map(|(_, r)| r.trim_start());
            let mut fields = rest.unwrap_or("").split_ascii_whitespace();
            let state = fields.next().and_then(|f| f.chars().next());
            let start = fields.nth(22 - 4).and_then(|f| f.parse::<u64>().ok());
            let reused =
                start.is_some_and(|t| !stamp_matches(stamp, t)) && same_time_namespace(tid);
            !matches!(state, Some('Z' | 'X' | 'x') | None) && !reused
        });
        let comm = std::fs::read_to_string(format!("/proc/{tid}/comm"))
            .ok()
            .map(|c| c.trim_end_matches('\n').to_owned());
        Holder { tid, alive, comm }
    }

    pub(crate) fn json(&self) -> Json {
        json!({ "tid": self.tid, "alive": self.alive, "comm": self.comm })
    }

    pub(crate) fn text(&self) -> String {
        let comm = self.comm.as_deref().map(crate::inspect::printable);
        format!(
            "tid {} ({}{})",
            self.tid,
            if self.alive { "alive" } else { "dead" },
            comm.map(|c| format!(", {c}")).unwrap_or_default()
        )
    }
}

/// Whether `/proc` is this process's PID namespace's: `/proc/self` names this process by
/// the PID it knows itself by. In a `/proc` of another namespace (after `unshare --pid
/// --fork` without `--mount-proc`) `/proc/<tid>` describes some other task, or none.
/// Worked out once.
pub(crate) fn proc_is_ours() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| {
        let named = std::fs::read_link("/proc/self").ok();
        named.and_then(|p| p.to_str()?.parse::<u32>().ok()) == Some(std::process::id())
    })
}

/// Whether thread `tid` is in this thread's time namespace, so that its start time in
/// `/proc` is comparable with the one its lock word recorded: the two `ns/time` links
/// name the same namespace. A kernel without time namespaces (no link of our own) has
/// one; a holder whose link cannot be read (another user's or a non-dumpable process)
/// counts as another, so its TID alone decides, as the crate's probe does.
fn same_time_namespace(tid: u32) -> bool {
    match std::fs::read_link("/proc/thread-self/ns/time") {
        Ok(own) => std::fs::read_link(format!("/proc/{tid}/ns/time")).is_ok_and(|t| t == own),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// A lock word's record of its holder's start time, against a live thread's start time
/// `start` (clock ticks since boot): 0 matches any; 1 to 255 is the 8-bit stamp of a
/// `RawMutex` word, seqlock writer or reader slot, `(start % 255) + 1`; with
/// [`STAMP5`] set, the 5-bit stamp of an `RwLock` writer, `(start % 255) % 31 + 1`.
fn stamp_matches(stamp: u32, start: u64) -> bool {
    let eight = (start % 255) as u32 + 1;
    match stamp {
        0 => true,
        s if s & STAMP5 != 0 => s & !STAMP5 == (eight - 1) % 31 + 1,
        s => s == eight,
    }
}

/// Marks a stamp passed to [`Holder::probe_stamped`] as an `RwLock` writer's 5-bit one.
const STAMP5: u32 = 1 << 8;

/// The threads probed while reading one object, by TID: a batch writer that died holds
/// every stripe of a `SeqLockArray`, which is then one probe, not one per stripe.
#[derive(Default)]
pub(crate) struct Probes(HashMap<(u32, u32), Holder>);

impl Probes {
    /// [`Holder::probe_stamped`], once per TID and stamp.
    pub(crate) fn probe_stamped(&mut self, tid: u32, stamp: u32) -> Holder {
        self.0
            .entry((tid, stamp))
            .or_insert_with(|| Holder::probe_stamped(tid, stamp))
            .clone()
    }
}

/// A `RawMutex` word (of a `Mutex`, or of a `ReentrantMutex` with its `depth`).
fn mutex(w: u32, depth: Option<u32>, opts: Opts) -> Reading {
    let tid = w & TID_MASK_MUTEX;
    let stamp = (w & MUTEX_STAMP_MASK) >> MUTEX_STAMP_SHIFT;
    let owner_died = w & MUTEX_OWNER_DIED != 0;
    // A stamp without a TID: no sequence of operations writes that.
    let garbage = tid == 0 && stamp != 0;
    let mut r = Reading::default()
        .field("word", json!(w))
        .field("owner_died", json!(owner_died));
    let mut text = if garbage {
        r = r.field("lock", json!("garbage"));
        // A waiter takes a garbage word over as from a dead owner.
        r.unhealthy = true;
        format!("garbage lock word {w:#010x}")
    } else if tid == 0 {
        r = r.field("lock", json!("free"));
        "free".to_owned()
    } else {
        let h = Holder::probe_stamped(tid, stamp);
        r.unhealthy = !h.alive;
        r = r.field("lock", json!("held")).field("holder", h.json());
        if let Some(d) = depth {
            r = r.field("depth", json!(d));
        }
        format!(
            "held by {}{}",
            h.text(),
            depth.map(|d| format!(", depth {d}")).unwrap_or_default()
        )
    };
    if owner_died {
        text.push_str(", owner died (not marked consistent)");
    }
    let contended = w & MUTEX_CONTENDED != 0;
    r.text = text;
    r.field("waiters", json!(contended)).detail(opts, || {
        format!("lock word {w:#010x}: waiters {}", yes_no(contended))
    })
}

/// The reader a `RawRwLock` reader slot names: its TID and the stamp of its start time,
/// as a `RawMutex` word keeps them; `None` for a free slot or garbage (bits 30 or 31, a
/// stamp without a TID).
fn slot_reader(v: u32) -> Option<(u32, u32)> {
    let tid = v & TID_MASK_MUTEX;
    (v >> 30 == 0 && tid != 0).then_some((tid, (v & MUTEX_STAMP_MASK) >> MUTEX_STAMP_SHIFT))
}

/// A `RawRwLock`: the state word and the reader slots.
fn rwlock(view: &ReadOnlyRegion, at: u64, opts: Opts) -> Option<Reading> {
    let w = view.load_u32(at)?;
    let notify = view.load_u32(at.checked_add(4)?)?;
    let mut probes = Probes::default();
    let mut slots = Vec::new();
    let owner_died = w & RW_OWNER_DIED != 0;
    let mut r = Reading::default()
        .field("word", json!(w))
        .field("owner_died", json!(owner_died));
    let mut readers = Vec::new();
    for slot in 0..RW_READER_SLOTS {
        let v = view.load_u32(at.checked_add(8 + 4 * slot)?)?;
        slots.push(v);
        if let Some((tid, stamp)) = slot_reader(v) {
            readers.push(probes.probe_stamped(tid, stamp));
        }
    }
    let overflow = w & RW_COUNT_MASK;
    // Beside `WRITE_LOCKED`, bits 22..27 are the writer's 5-bit stamp.
    let known = if w & RW_WRITE_LOCKED != 0 {
        RW_KNOWN | 0x7 << 24
    } else {
        RW_KNOWN
    };
    let mut text = if w & !known != 0 {
        r.unhealthy = true;
        r = r.field("lock", json!("garbage"));
        format!("garbage lock word {w:#010x}")
    } else if w & RW_WRITE_LOCKED != 0 {
        let tid = w & TID_MASK_MUTEX;
        if tid == 0 {
            r.unhealthy = true;
            r = r.field("lock", json!("garbage"));
            format!("write-locked by no thread ({w:#010x})")
        } else {
            let stamp = (w >> MUTEX_STAMP_SHIFT) & 0x1F;
            let h = probes.probe_stamped(tid, if stamp == 0 { 0 } else { stamp | STAMP5 });
            r.unhealthy = !h.alive;
            let t = format!("write-locked by {}", h.text());
            r = r.field("lock", json!("write")).field("holder", h.json());
            t
        }
    } else if readers.is_empty() && overflow == 0 {
        r = r.field("lock", json!("free"));
        "free".to_owned()
    } else {
        r = r.field("lock", json!("read"));
        let list: Vec<String> = readers.iter().map(Holder::text).collect();
        let mut t = format!("read-locked by {}", list.join(", "));
        if overflow != 0 {
            t.push_str(&format!(" and {overflow} unregistered readers"));
        }
        t
    };
    if readers.iter().any(|h| !h.alive) {
        r.unhealthy = true;
    }
    r = r
        .field(
            "readers",
            Json::Array(readers.iter().map(Holder::json).collect()),
        )
        .field("unregistered_readers", json!(overflow))
        .field("reader_slots", json!(slots))
        .field("readers_waiting", json!(w & RW_READERS_WAITING != 0))
        .field("writers_waiting", json!(w & RW_WRITERS_WAITING != 0))
        .field("draining", json!(w & RW_DRAINING != 0))
        .field("writer_notify", json!(notify));
    if owner_died {
        text.push_str(", owner died (not marked consistent)");
    }
    r.text = text;
    if opts.verbose {
        r.details.push(format!(
            "state word {w:#010x}: readers waiting {}, writers waiting {}, draining {}; writer_notify {notify:#010x}",
            yes_no(w & RW_READERS_WAITING != 0),
            yes_no(w & RW_WRITERS_WAITING != 0),
            yes_no(w & RW_DRAINING != 0),
        ));
        let list: Vec<String> = slots
            .iter()
            .enumerate()
            .map(|(i, &v)| match (v, slot_reader(v)) {
                (0, _) => format!("{i}: free"),
                (_, None) => format!("{i}: garbage {v:#010x}"),
                (_, Some((tid, stamp))) => {
                    format!("{i}: {}", probes.probe_stamped(tid, stamp).text())
                }
            })
            .collect();
        r.details.push(format!("reader slots: {}", list.join("; ")));
    }
    Some(r)
}

/// A `SeqLock` (or a stripe of a `SeqLockArray`): idle, being written, or torn (a writer
/// died mid-write).
pub(crate) fn seqlock(seq: u32, writer: u32, probes: &mut Probes, opts: Opts) -> Option<Reading> {
    // The owner bits: a TID, its stamp above it (as in a `RawMutex` word), bit 30 never.
    let owner = writer & !SEQ_WAITERS;
    let tid = owner & TID_MASK_MUTEX;
    let stamp = (owner & MUTEX_STAMP_MASK) >> MUTEX_STAMP_SHIFT;
    let garbage = owner & 1 << 30 != 0 || (tid == 0 && stamp != 0);
    let mut r = Reading::default()
        .field("sequence", json!(seq))
        .field("writer_word", json!(writer));
    let holder = (tid != 0 && !garbage).then(|| probes.probe_stamped(tid, stamp));
    let (status, text) = match (&holder, seq & 1 != 0) {
        (_, _) if garbage => {
            r.unhealthy = true;
            ("garbage", format!("garbage writer word {writer:#010x}"))
        }
        (None, false) => ("idle", format!("idle (sequence {seq})")),
        (None, true) => {
            r.unhealthy = true;
            ("torn", format!("torn: odd sequence {seq} and no writer"))
        }
        (Some(h), odd) if h.alive => {
            let what = if odd { "being written" } else { "write-locked" };
            ("writing", format!("{what} by {}", h.text()))
        }
        (Some(h), odd) => {
            r.unhealthy = true;
            let what = if odd {
                "torn: writer died mid-write"
            } else {
                "write lock held by a dead thread"
            };
            ("torn", format!("{what}, {}", h.text()))
        }
    };
    let waiters = writer & SEQ_WAITERS != 0;
    r = r
        .field("seqlock", json!(status))
        .field("waiters", json!(waiters));
    if let Some(h) = &holder {
        r = r.field("holder", h.json());
    }
    r.text = text;
    Some(r.detail(opts, || {
        format!(
            "sequence {seq:#010x}, writer word {writer:#010x}: waiters {}",
            yes_no(waiters)
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_words_decode_free_held_garbage_and_owner_died() {
        let o = Opts::default();
        assert_eq!(mutex(0, None, o).text, "free");
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let held = mutex(me | MUTEX_CONTENDED, None, o);
        assert!(
            held.text.starts_with(&format!("held by tid {me} (alive")),
            "{}",
            held.text
        );
        assert!(!held.unhealthy);
        let g = mutex(1 << 29, None, o);
        assert!(g.unhealthy && g.text.starts_with("garbage"));
        // A live TID with a stamp other than its start time's: a dead holder's.
        let start: u64 = std::fs::read_to_string(format!("/proc/{me}/stat"))
            .unwrap()
            .rsplit_once(')')
            .unwrap()
            .1
            .split_ascii_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        let own = (start % 255) as u32 + 1;
        let stamped = |stamp: u32| mutex(me | stamp << MUTEX_STAMP_SHIFT, None, o);
        assert!(!stamped(own).unhealthy, "{}", stamped(own).text);
        let other = stamped(own % 255 + 1);
        assert!(
            other.unhealthy && other.text.contains("(dead"),
            "{}",
            other.text
        );
        assert!(
            mutex(MUTEX_OWNER_DIED, None, o)
                .text
                .ends_with("not marked consistent)")
        );
        // TID 2^22 - 1 is possible but, with the default pid_max, unused.
        let p = &mut Probes::default();
        assert!(
            seqlock(3, 0, p, o).unwrap().unhealthy,
            "odd sequence, no writer"
        );
        assert!(!seqlock(4, 0, p, o).unwrap().unhealthy);
    }
}
