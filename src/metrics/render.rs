//! The text exposition format 0.0.4: grouping series into families and writing them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io;

use super::name::SeriesName;
use super::source::{self, MetricSource, Number, Sample};

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyKind {
    fn type_name(self) -> &'static str {
        match self {
            FamilyKind::Counter => "counter",
            FamilyKind::Gauge => "gauge",
            FamilyKind::Histogram => "histogram",
        }
    }

    /// The sample names a family of this kind named `name` writes.
    fn sample_names(self, name: &str) -> Vec<String> {
        match self {
            FamilyKind::Histogram => vec![
                name.to_owned(),
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            _ => vec![name.to_owned()],
        }
    }
}

/// Why an object of a region was left out of an exposition.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its name holds a label set that does not parse (names without one are sanitised
    /// instead), or is empty.
    InvalidName,
    /// A series of the same name and labels came first (from this or an earlier region,
    /// or another object's name that sanitises to the same).
    Duplicate,
    /// Its family name is taken by a family of another kind (a counter and a gauge named
    /// alike, or a counter named like a histogram's `_count`).
    KindConflict,
    /// A histogram with an `le` label (reserved for its buckets).
    ReservedLabel,
}

/// An object left out of an exposition, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The object's name in its region.
    pub object: String,
    /// Why.
    pub reason: SkipReason,
}

struct Family {
    name: String,
    kind: FamilyKind,
    /// The shmstate type of the family's first series (`Counter`, `Value<f64>`, ...), for
    /// its HELP line.
    help: String,
    series: Vec<(SeriesName, Sample)>,
}

/// An exposition being collected from one or more regions, then written at once.
///
/// Series are grouped into families by metric name: one `# HELP` and one `# TYPE` line
/// per family, then its series, in the order their objects first appear (regions in the
/// order added, objects in directory order). Objects that are not metric-shaped (locks,
/// queues, arrays, ...) are not part of it; metric-shaped objects that cannot be written
/// without breaking the exposition are left out and listed by
/// [`skipped`](Self::skipped).
///
/// # Examples
///
/// ```
/// use shmstate::metrics::Exposition;
/// use shmstate::{Counter, Region};
///
/// let (a, b) = (Region::anonymous(1 << 16)?, Region::anonymous(1 << 16)?);
/// a.get_or_default::<Counter>(r#"jobs_total{worker="a"}"#)?.add(2);
/// b.get_or_default::<Counter>(r#"jobs_total{worker="b"}"#)?.add(3);
/// let mut e = Exposition::new();
/// e.add(&a);
/// e.add(&b);
/// let mut out = Vec::new();
/// e.write(&mut out)?;
/// assert_eq!(
///     String::from_utf8(out)?,
///     "# HELP jobs_total shmstate Counter\n# TYPE jobs_total counter\n\
///      jobs_total{worker=\"a\"} 2\njobs_total{worker=\"b\"} 3\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    /// Family name → index.
    by_name: HashMap<String, usize>,
    /// Sample name → the family that writes it.
    taken: HashMap<String, usize>,
    /// A hash of every series added so far (family and labels), for duplicates: a hit
    /// is confirmed by comparing with the family's series, so a collision costs a scan,
    /// never a wrongly skipped series.
    series: HashSet<u64>,
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("families", &self.families.len())
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Adds every metric-shaped object of `source`: reads each one now (word loads
    /// only).
    pub fn add<S: MetricSource + ?Sized>(&mut self, source: &S) {
        for e in source.entries() {
            let Some(sample) = source::read(source, &e) else {
                continue;
            };
            let series = match SeriesName::parse(&e.name) {
                Ok(s) => Some(s),
                Err(_) => SeriesName::sanitised(&e.name),
            };
            if let Err(reason) = self.push(series, sample, e.tag) {
                self.skipped.push(Skipped {
                    object: e.name,
                    reason,
                });
            }
        }
    }

    fn push(
        &mut self,
        series: Option<SeriesName>,
        sample: Sample,
        tag: crate::TypeTag,
    ) -> Result<(), SkipReason> {
        let series = series.ok_or(SkipReason::InvalidName)?;
        let kind = match sample {
            Sample::Counter(_) => FamilyKind::Counter,
            Sample::Gauge(_) => FamilyKind::Gauge,
            Sample::Histogram(_) => FamilyKind::Histogram,
        };
        if kind == FamilyKind::Histogram && series.labels().iter().any(|(k, _)| k == "le") {
            return Err(SkipReason::ReservedLabel);
        }
        let index = match self.by_name.get(series.name()) {
            Some(&i) => {
                let f = &self.families[i];
                if f.kind != kind {
                    return Err(SkipReason::KindConflict);
                }
                i
            }
            None => {
                let names = kind.sample_names(series.name());
                if names.iter().any(|n| self.taken.contains_key(n)) {
                    return Err(SkipReason::KindConflict);
                }
                let i = self.families.len();
                for n in names {
                    self.taken.insert(n, i);
                }
                // A later histogram `x` must not take `x_count` from this family either:
                // `taken` is checked for all of a new family's names above, and this
                // family's own name is taken now.
                self.by_name.insert(series.name().to_owned(), i);
                self.families.push(Family {
                    name: series.name().to_owned(),
                    kind,
                    help: tag.to_string(),
                    series: Vec::new(),
                });
                i
            }
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (index, series.labels()).hash(&mut hasher);
        if !self.series.insert(hasher.finish())
            && self.families[index]
                .series
                .iter()
                .any(|(s, _)| s.labels() == series.labels())
        {
            return Err(SkipReason::Duplicate);
        }
        self.families[index].series.push((series, sample));
        Ok(())
    }

    /// The objects left out so far, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Writes the exposition (text format 0.0.4) to `out`.
    ///
    /// # Errors
    ///
    /// The first error `out` returns.
    pub fn write(&self, out: &mut impl io::Write) -> io::Result<()> {
        let mut buf = String::new();
        for f in &self.families {
            buf.clear();
            let _ = write!(buf, "# HELP {} shmstate ", f.name);
            // HELP text escapes `\` and line feed (a type name has neither; escaped all
            // the same).
            for c in f.help.chars() {
                match c {
                    '\\' => buf.push_str("\\\\"),
                    '\n' => buf.push_str("\\n"),
                    c => buf.push(c),
                }
            }
            buf.push('\n');
            let _ = writeln!(buf, "# TYPE {} {}", f.name, f.kind.type_name());
            for (s, sample) in &f.series {
                let _ = write_series(&mut buf, s, sample);
            }
            out.write_all(buf.as_bytes())?;
        }
        Ok(())
    }
}

fn write_series(buf: &mut String, s: &SeriesName, sample: &Sample) -> std::fmt::Result {
    match sample {
        Sample::Counter(v) => {
            buf.push_str(s.name());
            s.write_labels(buf, None)?;
            writeln!(buf, " {v}")
        }
        Sample::Gauge(n) => {
            buf.push_str(s.name());
            s.write_labels(buf, None)?;
            buf.push(' ');
            match *n {
                Number::U(v) => write!(buf, "{v}")?,
                Number::I(v) => write!(buf, "{v}")?,
                Number::F(v) => write_float(buf, v)?,
            }
            buf.push('\n');
            Ok(())
        }
        Sample::Histogram(h) => {
            let mut le = String::new();
            for (bound, count) in h.buckets() {
                le.clear();
                write_float(&mut le, bound)?;
                write!(buf, "{}_bucket", s.name())?;
                s.write_labels(buf, Some(("le", &le)))?;
                writeln!(buf, " {count}")?;
            }
            write!(buf, "{}_sum", s.name())?;
            s.write_labels(buf, None)?;
            buf.push(' ');
            write_float(buf, h.sum)?;
            buf.push('\n');
            write!(buf, "{}_count", s.name())?;
            s.write_labels(buf, None)?;
            writeln!(buf, " {}", h.count)
        }
    }
}

/// A float as the text format writes it: `+Inf`, `-Inf`, `NaN`; integral values below
/// 2⁵³ without a fraction (`1`, as `le="1"` in the Go client); otherwise Rust's shortest
/// representation that reads back to the same `f64` (`0.005`, `1e-7`, `1.5e300`).
pub(crate) fn write_float(out: &mut impl std::fmt::Write, v: f64) -> std::fmt::Result {
    if v.is_nan() {
        out.write_str("NaN")
    } else if v.is_infinite() {
        out.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        if v == 0.0 && v.is_sign_negative() {
            out.write_str("-0")
        } else {
            write!(out, "{}", v as i64)
        }
    } else {
        write!(out, "{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_the_text_format_reads_them() {
        let f = |v: f64| {
            let mut s = String::new();
            write_float(&mut s, v).unwrap();
            s
        };
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(2.5), "2.5");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(1e300), "1e300");
        for v in [0.1, 1.0 / 3.0, 123456.789, 9.007199254740993e15, 1e300] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v);
        }
    }
}

#[cfg(test)]
mod exposition_tests {
    use super::*;
    use crate::{Counter, Region};

    fn render(r: &Region) -> (String, Vec<Skipped>) {
        let mut e = Exposition::new();
        e.add(r);
        let mut out = Vec::new();
        e.write(&mut out).unwrap();
        (String::from_utf8(out).unwrap(), e.skipped().to_vec())
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_histogram_and_a_counter_named_like_its_samples_do_not_both_render() {
        let skipped = |r: &Region| {
            render(r)
                .1
                .into_iter()
                .map(|s| s.reason)
                .collect::<Vec<_>>()
        };
        // Histogram first: the counter `x_sum` is left out.
        let r = Region::anonymous(1 << 16).unwrap();
        r.histogram("x", &[1.0]).unwrap();
        r.get_or_default::<Counter>("x_sum").unwrap();
        assert_eq!(skipped(&r), [SkipReason::KindConflict]);
        // Counter first: the histogram is left out.
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<Counter>("x_bucket").unwrap();
        r.histogram("x", &[1.0]).unwrap();
        assert_eq!(skipped(&r), [SkipReason::KindConflict]);
        assert!(!render(&r).0.contains("histogram"));
        // A histogram created outside the metrics API with an `le` label.
        let r = Region::anonymous(1 << 16).unwrap();
        r.histogram(r#"y{le="1"}"#, &[1.0]).unwrap();
        assert_eq!(skipped(&r), [SkipReason::ReservedLabel]);
        // Two objects whose names sanitise to the same series.
        let r = Region::anonymous(1 << 16).unwrap();
        r.get_or_default::<Counter>("a-b").unwrap();
        r.get_or_default::<Counter>("a.b").unwrap();
        assert_eq!(skipped(&r), [SkipReason::Duplicate]);
        assert_eq!(render(&r).0.matches("\na_b ").count(), 1);
    }
}
