//! Where metrics are read from: a [`Region`] or a [`ReadOnlyRegion`], both through word
//! loads, so that one decoder serves a live process and a read-only tool alike.

use crate::region::ReadOnlyRegion;
use crate::values::histogram::{self, HistogramSnapshot};
use crate::{Elem, EntryInfo, Kind, Region};

mod sealed {
    pub trait Sealed {
        /// The region underneath, read by loads only.
        fn region(&self) -> &crate::Region;
    }
    impl Sealed for crate::Region {
        fn region(&self) -> &crate::Region {
            self
        }
    }
    impl Sealed for crate::region::ReadOnlyRegion {
        fn region(&self) -> &crate::Region {
            self.as_region()
        }
    }
}

/// Calls `f` with the name (as stored: bytes) and the sample of every ready
/// metric-shaped object of `source`, in directory order: one pass over the directory,
/// no allocation but the histograms' snapshots.
pub(crate) fn for_each_sample<S: MetricSource + ?Sized>(
    source: &S,
    mut f: impl FnMut(&[u8], crate::TypeTag, Sample),
) {
    let region = sealed::Sealed::region(source);
    region.for_each_ready_entry(|e| {
        let object = Object {
            tag: e.tag,
            len: e.len,
            offset: e.offset,
            size: e.size,
        };
        if let Some(sample) = read_object(region, &object) {
            f(e.name, e.tag, sample);
        }
    });
}

/// What a reader needs of a ready object's directory entry.
struct Object {
    tag: crate::TypeTag,
    len: u64,
    offset: u64,
    size: u64,
}

/// A region that metrics can be read from: [`Region`] (a process's own, writable mapping)
/// or [`ReadOnlyRegion`] (a tool's read-only one). Reading only loads words; it never
/// writes a byte, waits, or trusts a value from the file.
///
/// Sealed: implemented for those two types only.
pub trait MetricSource: sealed::Sealed {
    /// The directory, as [`Region::entries`] gives it.
    fn entries(&self) -> Vec<EntryInfo>;
    /// The `u64` at byte `offset` (8-aligned, in bounds), with an `Acquire` load.
    #[doc(hidden)]
    fn word64(&self, offset: u64) -> Option<u64>;
    /// The `u32` at byte `offset` (4-aligned, in bounds), with an `Acquire` load.
    #[doc(hidden)]
    fn word32(&self, offset: u64) -> Option<u32>;
}

impl MetricSource for Region {
    fn entries(&self) -> Vec<EntryInfo> {
        Region::entries(self)
    }
    fn word64(&self, offset: u64) -> Option<u64> {
        self.load_u64_at(offset)
    }
    fn word32(&self, offset: u64) -> Option<u32> {
        self.load_u32_at(offset)
    }
}

impl MetricSource for ReadOnlyRegion {
    fn entries(&self) -> Vec<EntryInfo> {
        ReadOnlyRegion::entries(self)
    }
    fn word64(&self, offset: u64) -> Option<u64> {
        self.load_u64(offset)
    }
    fn word32(&self, offset: u64) -> Option<u32> {
        self.load_u32(offset)
    }
}

/// A number as the exposition writes it: integers exactly, floats per the format.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    U(u64),
    I(i64),
    F(f64),
}

/// What one metric-shaped object holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Sample {
    Counter(u64),
    Gauge(Number),
    Histogram(HistogramSnapshot),
}

/// Reads the metric-shaped object `e` describes: `Counter` and `StripedCounter` as
/// counters, a numeric (or `bool`) `Value` as a gauge, a `Histogram`. `None` for other
/// kinds and objects whose words do not decode.
fn read_object(src: &Region, e: &Object) -> Option<Sample> {
    let at = e.offset;
    match e.tag.kind {
        Kind::COUNTER if e.len == 1 => src.word64(at).map(Sample::Counter),
        Kind::STRIPED_COUNTER => {
            // One u64 at the start of each 64-byte stripe.
            let lines = usize::try_from(e.len).ok()?;
            if e.size != e.len.checked_mul(64)? {
                return None;
            }
            let mut sum = 0u64;
            // Bounded: a load past the region's end fails, so a hostile length stops
            // after at most size / 64 stripes.
            for i in 0..lines as u64 {
                sum = sum.wrapping_add(src.word64(at.checked_add(i.checked_mul(64)?)?)?);
            }
            Some(Sample::Counter(sum))
        }
        Kind::VALUE if e.len == 1 => value(src, e.tag.elem, at).map(Sample::Gauge),
        Kind::HISTOGRAM => {
            let lines = usize::try_from(e.len).ok()?;
            if e.size != e.len.checked_mul(64)? {
                return None;
            }
            histogram::decode(lines, |w| {
                let off = u64::try_from(w).ok()?.checked_mul(8)?;
                // Only words of this object.
                if off >= e.size {
                    return None;
                }
                src.word64(at.checked_add(off)?)
            })
            .map(Sample::Histogram)
        }
        _ => None,
    }
}

/// A `Value<T>` of a numeric `T` (or `bool`) at `at`: the object starts 64-aligned, so
/// a narrow value is the first bytes (in memory order) of the word there.
fn value(src: &Region, elem: Elem, at: u64) -> Option<Number> {
    let narrow = |n: usize| -> Option<[u8; 8]> {
        let word = src.word32(at)?.to_ne_bytes();
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(word.get(..n)?);
        Some(b)
    };
    // Native-endian bytes of the value, zero-extended in memory order.
    let le = cfg!(target_endian = "little");
    let small = |n: usize| -> Option<u64> {
        let b = narrow(n)?;
        Some(if le {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b) >> (64 - 8 * n)
        })
    };
    Some(
        if elem == Elem::U64 || (elem == Elem::USIZE && elem.size == 8) {
            Number::U(src.word64(at)?)
        } else if elem == Elem::I64 || (elem == Elem::ISIZE && elem.size == 8) {
            Number::I(src.word64(at)? as i64)
        } else if elem == Elem::F64 {
            Number::F(f64::from_bits(src.word64(at)?))
        } else if elem == Elem::U32 || (elem == Elem::USIZE && elem.size == 4) {
            Number::U(u64::from(src.word32(at)?))
        } else if elem == Elem::I32 || (elem == Elem::ISIZE && elem.size == 4) {
            Number::I(i64::from(src.word32(at)? as i32))
        } else if elem == Elem::F32 {
            Number::F(f64::from(f32::from_bits(src.word32(at)?)))
        } else if elem == Elem::U16 {
            Number::U(small(2)?)
        } else if elem == Elem::I16 {
            Number::I(i64::from(small(2)? as u16 as i16))
        } else if elem == Elem::U8 {
            Number::U(small(1)?)
        } else if elem == Elem::I8 {
            Number::I(i64::from(small(1)? as u8 as i8))
        } else if elem == Elem::BOOL {
            // `Value<bool>` stores 0 or 1; any other byte reads as true, as `load` does.
            Number::U(u64::from(small(1)? != 0))
        } else {
            return None;
        },
    )
}
